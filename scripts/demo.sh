#!/usr/bin/env bash
# A short narrated demonstration of tether on loopback; `make demo` runs it.
#
#   bash scripts/demo.sh [BUILD_DIR]        (default: build)
#
# Each section is a shell function named demo_<something>; SECTIONS below lists them
# in order with their headings. To add a section: write the function (return 0 on
# success, non-zero on failure; use the helpers: start_bg, wait_for_line, port_of,
# stop_bg, step, ok, fail) and add one line to SECTIONS. Every wait is bounded; the
# whole demo exits non-zero if any section fails, and is killed after DEMO_TIMEOUT.
set -uo pipefail

BUILD=${1:-build}
TETHER=$BUILD/tether
EXAMPLES=$BUILD/examples
DEMO_TIMEOUT=${DEMO_TIMEOUT:-60} # seconds, for everything
STEP_TIMEOUT=10                  # seconds, for any one command

SECTIONS=(
    "demo_library|The library: a server, clients both ways, graceful end, reset, send-then-close, the connection table"
    "demo_cli_echo|The CLI: tether echo, with tether cat piping lines through it"
    "demo_cli_send|The CLI: tether send into tether cat --listen, checked with sha256sum"
    "demo_websocket|WebSocket: tether echo --ws and a Python websockets client, text and binary"
    "demo_tls|TLS: tether echo with a throwaway certificate; tether cat, openssl s_client"
    "demo_liveness|Liveness: a client vanishes (no FIN, no RST); the server notices within its deadline"
    "demo_chat|Servers at scale: tether chat, three clients, and the live table from tether stat"
    "demo_cluster|Beyond one machine: HAProxy, three tether chat nodes, one room through Redis"
)

# ---- helpers ----------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tether-demo.XXXXXX")
BG_PIDS=()

cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ -t 1 ]; then
    B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' N=$'\e[0m'
else
    B='' G='' R='' N=''
fi

heading() { printf '\n%s== %s%s\n' "$B" "$1" "$N"; }
step() { printf '%s-- %s%s\n' "$B" "$*" "$N"; }
ok() { printf '  %sok%s   %s\n' "$G" "$N" "$*"; }
fail() {
    printf '  %sFAIL%s %s\n' "$R" "$N" "$*"
    return 1
}
# Show a command, then run it.
show() {
    printf '  $ %s\n' "$*"
    "$@"
}

# start_bg NAME CMD...: run CMD in the background, stdout/stderr to $TMP/NAME.out/.err.
# Sets BG_PID. stdin is /dev/null unless the caller redirects start_bg's.
start_bg() {
    local name=$1
    shift
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    BG_PID=$!
    BG_PIDS+=("$BG_PID")
}

# wait_for_line FILE PATTERN: wait (up to STEP_TIMEOUT) for a line matching PATTERN
# in FILE and print it.
wait_for_line() {
    local file=$1 pattern=$2 i
    for ((i = 0; i < STEP_TIMEOUT * 20; i++)); do
        if grep -m1 -- "$pattern" "$file" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# port_of LINE: the port at the end of "... listening on 127.0.0.1:PORT".
port_of() { sed -n 's/.*:\([0-9][0-9]*\)$/\1/p' <<<"$1"; }

# wait_bg PID: wait up to STEP_TIMEOUT for PID to exit; its status goes in
# BG_STATUS (137 if it had to be killed). Not in $(...): only this shell can wait.
wait_bg() {
    local pid=$1 i
    for ((i = 0; i < STEP_TIMEOUT * 20; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"
            BG_STATUS=$?
            return 0
        fi
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    BG_STATUS=137
}

# stop_bg PID SIGNAL: send SIGNAL, then wait_bg.
stop_bg() {
    kill "-$2" "$1" 2>/dev/null
    wait_bg "$1"
}

# ---- sections -----------------------------------------------------------------------

demo_library() {
    step "examples/demo.c: one loop, one server, five clients (source: examples/demo.c)"
    timeout "$STEP_TIMEOUT" "$EXAMPLES/demo" || fail "examples/demo exited with status $?"
}

demo_cli_echo() {
    local line port out st

    step "start an echo server on a free port"
    printf '  $ tether echo --listen 127.0.0.1:0 --verbose &\n'
    start_bg echo "$TETHER" echo --listen 127.0.0.1:0 --verbose </dev/null
    local echo_pid=$BG_PID
    line=$(wait_for_line "$TMP/echo.out" "listening on") || {
        fail "tether echo did not report its address"
        return 1
    }
    echo "  $line"
    port=$(port_of "$line")

    step "pipe two lines through it with tether cat (stdin EOF half-closes; cat exits once the server has closed too)"
    printf '  $ printf '"'"'hello, tether\\nsecond line\\n'"'"' | tether cat 127.0.0.1:%s\n' "$port"
    out=$(printf 'hello, tether\nsecond line\n' | timeout "$STEP_TIMEOUT" "$TETHER" cat "127.0.0.1:$port")
    st=$?
    printf '%s\n' "$out" | sed 's/^/  | /'
    [ "$st" -eq 0 ] || fail "tether cat exited with status $st" || return 1
    [ "$out" = $'hello, tether\nsecond line' ] || fail "the echo differs from what was sent" || return 1
    ok "both lines came back; tether cat exited 0"

    step "a megabyte of random bytes, round trip, compared with sha256sum"
    head -c 1048576 /dev/urandom >"$TMP/mb.bin"
    local want got
    want=$(sha256sum <"$TMP/mb.bin" | cut -d' ' -f1)
    got=$(timeout "$STEP_TIMEOUT" "$TETHER" cat "127.0.0.1:$port" <"$TMP/mb.bin" | sha256sum | cut -d' ' -f1)
    echo "  sent     $want"
    echo "  received $got"
    [ "$want" = "$got" ] || fail "checksums differ" || return 1
    ok "identical"

    step "stop the server with SIGINT: it closes the listener and its connections, exits 0"
    stop_bg "$echo_pid" INT
    st=$BG_STATUS
    sed 's/^/  | /' "$TMP/echo.err"
    [ "$st" -eq 0 ] || fail "tether echo exited with status $st" || return 1
    ok "tether echo exited 0"
}

demo_websocket() {
    local line port st py=/usr/bin/python3

    if ! "$py" -c 'import websockets' 2>/dev/null; then
        fail "python3-websockets is missing (scripts/deps.sh installs it)"
        return 1
    fi
    step "start a WebSocket echo server on a free port"
    printf '  $ tether echo --ws --listen 127.0.0.1:0 --verbose &\n'
    start_bg wsecho "$TETHER" echo --ws --listen 127.0.0.1:0 --verbose </dev/null
    local ws_pid=$BG_PID
    line=$(wait_for_line "$TMP/wsecho.out" "listening on") || {
        fail "tether echo --ws did not report its address"
        return 1
    }
    echo "  $line"
    port=$(sed -n 's/.*:\([0-9][0-9]*\) (websocket)$/\1/p' <<<"$line")

    step "a Python client sends a text and a binary message; each comes back with its kind (source: scripts/demo_ws.py)"
    timeout "$STEP_TIMEOUT" "$py" "$(dirname "$0")/demo_ws.py" "$port"
    st=$?
    [ "$st" -eq 0 ] || fail "the WebSocket exchange failed (status $st)" || return 1
    ok "both messages came back unchanged, text as text and binary as binary"

    step "stop the server with SIGINT"
    stop_bg "$ws_pid" INT
    st=$BG_STATUS
    sed 's/^/  | /' "$TMP/wsecho.err"
    [ "$st" -eq 0 ] || fail "tether echo --ws exited with status $st" || return 1
    ok "tether echo --ws exited 0"
}

# make_certs DIR: a throwaway CA and a certificate for localhost and 127.0.0.1 that it
# signed, made with the openssl CLI now (never kept: DIR is under $TMP).
make_certs() {
    local d=$1
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' \
        >"$d/leaf.ext"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" &&
        openssl req -x509 -new -key "$d/ca.key" -subj "/CN=tether demo CA" -days 1 \
            -out "$d/ca.pem" &&
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/server.key" &&
        openssl req -new -key "$d/server.key" -subj /CN=localhost -out "$d/server.csr" &&
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
            -CAcreateserial -days 1 -extfile "$d/leaf.ext" -out "$d/server.pem"
}

demo_tls() {
    local d=$TMP/tls line port out st

    if ! command -v openssl >/dev/null; then
        fail "the openssl command is missing (scripts/deps.sh installs it)"
        return 1
    fi
    step "a throwaway CA and a certificate for localhost, made with openssl in a temp dir"
    mkdir -p "$d"
    make_certs "$d" >"$TMP/certs.log" 2>&1 || {
        sed 's/^/  | /' "$TMP/certs.log"
        fail "openssl could not make the certificates"
        return 1
    }
    openssl x509 -in "$d/server.pem" -noout -subject -issuer | sed 's/^/  | /'

    step "start a TLS echo server with that certificate"
    printf '  $ tether echo --listen 127.0.0.1:0 --verbose \\\n'
    printf '        --tls-cert server.pem --tls-key server.key &\n'
    start_bg tlsecho "$TETHER" echo --listen 127.0.0.1:0 --verbose \
        --tls-cert "$d/server.pem" --tls-key "$d/server.key" </dev/null
    local echo_pid=$BG_PID
    line=$(wait_for_line "$TMP/tlsecho.out" "listening on") || {
        fail "tether echo did not report its address: $(cat "$TMP/tlsecho.err")"
        return 1
    }
    echo "  $line"
    port=$(sed -n 's/.*:\([0-9][0-9]*\) (tls)$/\1/p' <<<"$line")

    step "tether cat --tls, verifying the server against our CA; at the end of stdin it" \
        "sends close_notify and waits for the server's"
    printf '  $ printf '"'"'hello over TLS\\nsecond line\\n'"'"' |\n'
    printf '      tether cat --tls --tls-ca ca.pem localhost:%s\n' "$port"
    out=$(printf 'hello over TLS\nsecond line\n' |
        timeout "$STEP_TIMEOUT" "$TETHER" cat --tls --tls-ca "$d/ca.pem" "localhost:$port")
    st=$?
    printf '%s\n' "$out" | sed 's/^/  | /'
    [ "$st" -eq 0 ] || fail "tether cat --tls exited with status $st" || return 1
    [ "$out" = $'hello over TLS\nsecond line' ] ||
        fail "the echo differs from what was sent" || return 1
    ok "both lines came back; tether cat exited 0 after the close_notify exchange"

    step "openssl s_client as a second client"
    printf '  $ openssl s_client -quiet -connect 127.0.0.1:%s \\\n' "$port"
    printf '        -servername localhost -CAfile ca.pem\n'
    out=$( (printf 'from openssl s_client\n'; sleep 0.5) |
        timeout "$STEP_TIMEOUT" openssl s_client -quiet -connect "127.0.0.1:$port" \
            -servername localhost -CAfile "$d/ca.pem" -verify_return_error 2>"$TMP/s_client.err")
    printf '%s\n' "$out" | sed 's/^/  | /'
    [ "$out" = 'from openssl s_client' ] ||
        fail "s_client got '$out': $(cat "$TMP/s_client.err")" || return 1
    ok "s_client verified the certificate and got its line back"

    step "a client that does not trust our CA is refused, and says why in one line"
    printf '  $ echo x | tether cat --tls localhost:%s\n' "$port"
    echo x | timeout "$STEP_TIMEOUT" "$TETHER" cat --tls "localhost:$port" \
        >/dev/null 2>"$TMP/refused.err"
    st=$?
    sed 's/^/  | /' "$TMP/refused.err"
    [ "$st" -eq 1 ] || fail "expected exit 1, got $st" || return 1
    grep -q 'tls handshake failed: .' "$TMP/refused.err" || fail "no reason given" || return 1
    ok "exit 1, the host and the reason named"

    step "stop the server with SIGINT; its log shows each connection's TLS version and" \
        "cipher, and how it ended (a peer gone without close_notify: 'tls truncated')"
    stop_bg "$echo_pid" INT
    st=$BG_STATUS
    sed 's/^/  | /' "$TMP/tlsecho.err"
    [ "$st" -eq 0 ] || fail "tether echo exited with status $st" || return 1
    ok "tether echo exited 0"
}

demo_cli_send() {
    local line port st want got

    head -c $((5 * 1024 * 1024)) /dev/urandom >"$TMP/file.bin"
    want=$(sha256sum <"$TMP/file.bin" | cut -d' ' -f1)

    step "a receiver: tether cat --listen, stdout to a file (stdin is /dev/null: it sends nothing)"
    printf '  $ tether cat --listen 127.0.0.1:0 </dev/null >received &\n'
    start_bg recv "$TETHER" cat --listen 127.0.0.1:0 </dev/null
    local recv_pid=$BG_PID
    line=$(wait_for_line "$TMP/recv.err" "listening on") || {
        fail "tether cat --listen did not report its address"
        return 1
    }
    echo "  $line"
    port=$(port_of "$line")

    step "send 5 MiB with tether send (sendfile, then FIN)"
    printf '  $ tether send 127.0.0.1:%s file.bin\n' "$port"
    timeout "$STEP_TIMEOUT" "$TETHER" send "127.0.0.1:$port" "$TMP/file.bin" | sed 's/^/  | /'
    st=${PIPESTATUS[0]}
    [ "$st" -eq 0 ] || fail "tether send exited with status $st" || return 1

    wait_bg "$recv_pid"
    st=$BG_STATUS
    [ "$st" -eq 0 ] || fail "tether cat --listen exited with status $st" || return 1
    got=$(sha256sum <"$TMP/recv.out" | cut -d' ' -f1)
    echo "  sent     $want"
    echo "  received $got"
    [ "$want" = "$got" ] || fail "checksums differ" || return 1
    ok "identical; both tools exited 0"
}

demo_liveness() {
    step "tether echo --detect-within 2000 and a tether cat client; then the client vanishes (source: scripts/demo_vanish.sh)"
    timeout "$STEP_TIMEOUT" bash "$(dirname "$0")/demo_vanish.sh" "$BUILD" | sed 's/^/  /'
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail "not detected within the deadline" || return 1
    ok "detected within the deadline, with its reason"
}

# ---- main -------------------------------------------------------------------------

# Three chatters on plain sockets: each says one line, prints what it heard, then
# stays connected until its stdin closes (so the table can be looked at).
CHATTERS_PY='
import socket, sys, time
port = int(sys.argv[1])
names = ["alice", "bob", "carol"]
socks = []
for n in names:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    socks.append(s)
    time.sleep(0.1)
for n, s in zip(names, socks):
    s.sendall(("hi, I am %s\n" % n).encode())
    time.sleep(0.1)
time.sleep(0.3)
for n, s in zip(names, socks):
    s.settimeout(0.5)
    got = b""
    try:
        while True:
            b = s.recv(4096)
            if not b: break
            got += b
    except socket.timeout:
        pass
    for line in got.decode().splitlines():
        print("%-5s heard: %s" % (n, line))
print("ready", flush=True)
sys.stdin.read()  # until the demo closes our stdin
'

demo_chat() {
    local line port st

    step "start a chat server with an admin socket"
    printf '  $ tether chat --listen 127.0.0.1:0 --admin %s &\n' "$TMP/chat.sock"
    start_bg chat "$TETHER" chat --listen 127.0.0.1:0 --admin "$TMP/chat.sock" </dev/null
    local chat_pid=$BG_PID
    line=$(wait_for_line "$TMP/chat.out" "listening on") || {
        fail "tether chat did not report its address"
        return 1
    }
    echo "  $line"
    port=$(port_of "$line")

    step "three clients join and each sends a line: everyone else hears it, the sender does not"
    mkfifo "$TMP/chatters.in"
    python3 -c "$CHATTERS_PY" "$port" <"$TMP/chatters.in" >"$TMP/chatters.out" 2>&1 &
    local py_pid=$!
    BG_PIDS+=("$py_pid")
    exec 7>"$TMP/chatters.in" # hold the chatters' stdin open
    wait_for_line "$TMP/chatters.out" "^ready" >/dev/null || {
        exec 7>&-
        fail "the chatters did not finish talking"
        return 1
    }
    grep -v '^ready' "$TMP/chatters.out" | sed 's/^/  | /'
    [ "$(grep -c 'heard: \[' "$TMP/chatters.out")" -eq 6 ] ||
        fail "expected 6 relayed lines (each of 3 lines to 2 others)" || { exec 7>&-; return 1; }
    grep -q 'alice heard: \[.*\] hi, I am alice' "$TMP/chatters.out" &&
        { exec 7>&-; fail "alice heard her own line"; return 1; }
    ok "each line reached the two others, never its sender"

    step "the server's live connection table, read from its admin socket"
    printf '  $ tether stat %s --sort bytes_in --reverse\n' "$TMP/chat.sock"
    timeout "$STEP_TIMEOUT" "$TETHER" stat "$TMP/chat.sock" --sort bytes_in --reverse | sed 's/^/  | /'
    st=${PIPESTATUS[0]}
    [ "$st" -eq 0 ] || { exec 7>&-; fail "tether stat exited with status $st"; return 1; }
    ok "three rows and the totals"

    step "the clients leave; SIGTERM shuts the server down gracefully"
    exec 7>&-
    wait_bg "$py_pid"
    stop_bg "$chat_pid" TERM
    st=$BG_STATUS
    sed 's/^/  | /' "$TMP/chat.err"
    [ "$st" -eq 0 ] || fail "tether chat exited with status $st" || return 1
    ok "tether chat exited 0"
}

demo_cluster() {
    printf '  $ bash scripts/cluster-demo.sh\n'
    timeout 30 bash "$(dirname "$0")/cluster-demo.sh" "$BUILD" 2>&1 | sed 's/^/  | /'
    local st=${PIPESTATUS[0]}
    [ "$st" -eq 0 ] || fail "scripts/cluster-demo.sh exited with status $st" || return 1
    ok "clients on three different nodes heard each other, never themselves"
}

main() {
    local entry fn title failed=()

    for f in "$TETHER" "$EXAMPLES/demo"; do
        if [ ! -x "$f" ]; then
            echo "demo: $f is missing; build first (make build)" >&2
            exit 1
        fi
    done
    for entry in "${SECTIONS[@]}"; do
        fn=${entry%%|*}
        title=${entry#*|}
        heading "$title"
        if ! "$fn"; then
            failed+=("$title")
        fi
    done
    echo
    if [ ${#failed[@]} -eq 0 ]; then
        printf '%sdemo: all %d sections passed%s\n' "$B" "${#SECTIONS[@]}" "$N"
        return 0
    fi
    printf '%sdemo: %d of %d sections FAILED:%s\n' "$R" "${#failed[@]}" "${#SECTIONS[@]}" "$N"
    printf '  %s\n' "${failed[@]}"
    return 1
}

# The whole demo has a deadline: a watchdog stops this shell if it is passed (each
# command has its own, shorter, timeout, so the TERM is handled promptly).
trap 'echo "demo: still running after ${DEMO_TIMEOUT}s, giving up" >&2; exit 124' TERM
(
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$DEMO_TIMEOUT" &
    sleeper=$!
    wait "$sleeper" && kill -TERM $$
) >/dev/null 2>&1 &
WATCHDOG=$!
main
status=$?
kill "$WATCHDOG" 2>/dev/null
wait "$WATCHDOG" 2>/dev/null
exit $status
