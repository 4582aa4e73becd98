#!/usr/bin/env bash
# Comparative echo benchmark: tether against a hand-written epoll loop, libuv,
# libevent (bufferevent) and libev. Writes bench/RESULTS.md.
#
# Each server runs on CPU 0 and the load generator (`tether bench`) on CPU 1, so
# neither steals the other's core. Servers take turns run by run (A B C D E, A B C D E,
# ...) for ROUNDS rounds, so slow drift of the machine hits all of them alike, and
# the median of the rounds is reported.
#
# Environment (defaults keep a full run near 12 minutes on 2 cores):
#   ROUNDS=3            rounds per configuration
#   DURATION=3          seconds measured per run
#   WARMUP=0.5          seconds run before measuring
#   CONNS="1 100 1000"  SIZES="64 4096"  PIPELINES="1 16"
#   SERVERS="epoll uring libuv libevent libev tether tether_uring"
#                       (tether_uring: echo_tether with TETHER_BACKEND=io_uring)
#   CHURN_CONNS=50      concurrent connect/exchange/close loops for the accept rate
#   rate: latency at fixed rates (open loop, `tether bench --rate`): each server's
#   closed-loop maximum at RATE_CONNS connections, 64 B, pipeline 1 (this run's
#   throughput row when it has one, else measured), then RATE_LEVELS percent of it
#   RATE_CONNS=100  RATE_LEVELS="25 50 75"
#   RATE_BASE=own       own: each server at its own maximum's levels; slowest: every
#                       server at the same rates, levels of the lowest maximum
#   IDLE_COUNTS="10000 100000"   idle connections for memory per connection
#   STRACE_MSGS=20000   echoed messages counted under strace -c
#   SECTIONS="throughput rate churn idle syscalls instructions hold unix ws tls fanout"
#   CG_MSGS=20000       echoed messages counted under callgrind (instructions)
#   unix: echo over AF_UNIX stream sockets (throughput, system calls, instructions)
#   UNIX_SERVERS="epoll libuv tether tether_uring"
#   UNIX_CONNS="1 100"  UNIX_SIZES="64 4096"  UNIX_PIPELINES="1 16"
#   ws: WebSocket echo and broadcast fan-out, load from bin/wsload
#   WS_SERVERS="tether tether_uring node lws"  (node: Node's ws from node/; lws:
#                       libwebsockets; tether: `tether echo --ws` for echo and
#                       bin/ws_tether for fan-out)
#   WS_CONNS=100 WS_SIZES="64 16384"            echo
#   FANOUT_RECEIVERS=1000 FANOUT_SIZES="64 1024" FANOUT_WINDOWS="1 16"   fan-out
#   fanout: line broadcast, one sender and N receivers, load from bin/fanout
#   FO_SERVERS="epoll tether tether_uring chat chat_uring libuv libevent node"
#                       (epoll: bin/chat_epoll; tether: bin/chat_tether, the library's
#                       tt_server_broadcast; chat: `tether chat`; *_uring: io_uring)
#   FO_RECEIVERS="100 1000 19000"  FO_SIZES="64 1024"  FO_WINDOWS="1 16"
#   FO_CHAT_MAX=1000    `tether chat` announces every join to everyone (N^2/2 lines
#                       before the load): its rows stop at this many receivers
#   FO_COST_RECEIVERS=100 FO_COST_MSGS="300 1500"   exact cost per delivery: system
#                       calls (strace) and user-space instructions (callgrind, not
#                       node) over two loads of that many messages; 0 receivers: none
#   TLS_SERVERS="tether tether_uring libevent node"   the tls section's servers
#                       (tether_uring: echo_tls_tether on io_uring); load from bin/tlsload
#   TLS_HS_CONNS=32     handshakes under way at once (full and resumed rows)
#   TLS_CONNS="1 100"  TLS_SIZES="64 16384"   the TLS echo rows
#   TLS_IDLE_N=2000     idle TLS connections for memory per connection
#   KEEP=1              sections not run this time keep their runs from the last
#                       ${OUT%.md}.jsonl (KEEP=0: the report holds this run only)
#   HOLD_N=100000 HOLD_HB_MS=5000 HOLD_WINDOW=60   the hold section (bench/hold.sh)
#   SERVER_CPU=0 CLIENT_CPU=1  BASE_PORT=19100  SKIP_BUILD=1 (use bin/ as it is)
#   OUT=RESULTS.md
#   CHARTS=charts       PNG charts (report.py --charts), a folder next to OUT, linked from it
#   PYTHON=/usr/bin/python3   runs report.py: Debian's, which has python3-matplotlib
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cd "$here"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-0.5}
CONNS=${CONNS:-"1 100 1000"}
SIZES=${SIZES:-"64 4096"}
PIPELINES=${PIPELINES:-"1 16"}
SERVERS=${SERVERS:-"epoll uring libuv libevent libev tether tether_uring"}
CHURN_CONNS=${CHURN_CONNS:-50}
IDLE_COUNTS=${IDLE_COUNTS:-"10000 100000"}
STRACE_MSGS=${STRACE_MSGS:-20000}
SECTIONS=${SECTIONS:-"throughput rate churn idle syscalls instructions hold unix ws tls fanout"}
RATE_CONNS=${RATE_CONNS:-100}
RATE_LEVELS=${RATE_LEVELS:-"25 50 75"}
RATE_BASE=${RATE_BASE:-own}
FO_SERVERS=${FO_SERVERS:-"epoll tether tether_uring chat chat_uring libuv libevent node"}
FO_RECEIVERS=${FO_RECEIVERS:-"100 1000 19000"}
FO_SIZES=${FO_SIZES:-"64 1024"}
FO_WINDOWS=${FO_WINDOWS:-"1 16"}
FO_CHAT_MAX=${FO_CHAT_MAX:-1000}
FO_COST_RECEIVERS=${FO_COST_RECEIVERS:-100}
FO_COST_MSGS=${FO_COST_MSGS:-"300 1500"}
TLS_SERVERS=${TLS_SERVERS:-"tether tether_uring libevent node"}
TLS_HS_CONNS=${TLS_HS_CONNS:-32}
TLS_CONNS=${TLS_CONNS:-"1 100"}
TLS_SIZES=${TLS_SIZES:-"64 16384"}
TLS_IDLE_N=${TLS_IDLE_N:-2000}
UNIX_SERVERS=${UNIX_SERVERS:-"epoll libuv tether tether_uring"}
UNIX_CONNS=${UNIX_CONNS:-"1 100"}
UNIX_SIZES=${UNIX_SIZES:-"64 4096"}
UNIX_PIPELINES=${UNIX_PIPELINES:-"1 16"}
WS_SERVERS=${WS_SERVERS:-"tether tether_uring node lws"}
WS_CONNS=${WS_CONNS:-100}
WS_SIZES=${WS_SIZES:-"64 16384"}
FANOUT_RECEIVERS=${FANOUT_RECEIVERS:-1000}
FANOUT_SIZES=${FANOUT_SIZES:-"64 1024"}
FANOUT_WINDOWS=${FANOUT_WINDOWS:-"1 16"}
KEEP=${KEEP:-1}
CG_MSGS=${CG_MSGS:-20000}
HOLD_N=${HOLD_N:-100000}
HOLD_HB_MS=${HOLD_HB_MS:-5000}
HOLD_WINDOW=${HOLD_WINDOW:-60}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BASE_PORT=${BASE_PORT:-19100}
OUT=${OUT:-RESULTS.md}
CHARTS=${CHARTS:-charts}
if [[ -z ${PYTHON:-} ]]; then
    PYTHON=python3
    [[ -x /usr/bin/python3 ]] && PYTHON=/usr/bin/python3
fi
"$PYTHON" -c 'import matplotlib' 2>/dev/null ||
    { printf 'run.sh: %s has no matplotlib, needed for the charts: install python3-matplotlib (scripts/deps.sh) or set PYTHON\n' "$PYTHON" >&2; exit 1; }
bench_override=${BENCH:-}
BENCH=${BENCH:-$top/build/tether}

work=$(mktemp -d /tmp/tether-bench.XXXXXX)
raw="$work/raw.jsonl"
tls_dir="$work/tls"
: >"$raw"
declare -A pid port target label
nports=0

log() { printf '%s\n' "$*" >&2; }

cleanup() {
    for s in "${!pid[@]}"; do
        kill -TERM "${pid[$s]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

[[ $RATE_BASE == own || $RATE_BASE == slowest ]] ||
    { log "RATE_BASE=$RATE_BASE: expected own or slowest"; exit 1; }

has_section() { [[ " $SECTIONS " == *" $1 "* ]]; }

# ---- build ---------------------------------------------------------------------
if [[ -z ${SKIP_BUILD:-} ]]; then
    make -s all >&2
    if [[ " $SERVERS $UNIX_SERVERS $WS_SERVERS " == *" tether"* ]]; then
        make -s bin/echo_tether bin/ws_tether >&2
    fi
    if [[ " $SECTIONS " == *" ws "* && " $WS_SERVERS " == *" node "* ]]; then
        if ! make -s node >&2; then
            log "npm ci in bench/node failed: the WebSocket section runs without Node's ws"
            WS_SERVERS=$(tr ' ' '\n' <<<"$WS_SERVERS" | grep -vx node | tr '\n' ' ')
        fi
    fi
    if has_section fanout && [[ " $FO_SERVERS " == *" tether"* ]]; then
        make -s bin/chat_tether >&2 || { log "could not build chat_tether"; exit 1; }
    fi
    if has_section tls && [[ " $TLS_SERVERS " == *" tether"* ]]; then
        make -s bin/echo_tls_tether >&2 || { log "could not build echo_tls_tether"; exit 1; }
    fi
    if [[ -z $bench_override ]]; then
        make -s ../build/tether >&2 || { log "could not build the tether tool"; exit 1; }
    fi
fi
[[ -x $BENCH ]] || { log "no load generator at $BENCH (build the tether tool first)"; exit 1; }

# ---- descriptors ----------------------------------------------------------------
# 1000 connections per run, and the idle test wants N per process; the soft limit
# can go up to the hard one without privileges.
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] && hard=1048576
ulimit -n "$hard"

# ---- servers --------------------------------------------------------------------
launch() { # name port [wrapper...]: start the server on SERVER_CPU, in the background
    # (tls_NAME: the TLS server NAME, with the certificate of the tls section)
    local s=$1 p=$2 backend=epoll exe="$here/bin/echo_$1"
    local -a tail=()
    shift 2
    if [[ $s == tls_* ]]; then
        tail=("$tls_dir/cert.pem" "$tls_dir/key.pem")
        case $s in
        tls_node) exe=node; tail=("$here/servers/echo_tls_node.js" "$p" "${tail[@]}"); p="" ;;
        tls_tether_uring) backend=io_uring; exe="$here/bin/echo_tls_tether" ;;
        esac
    elif [[ $s == tether_uring ]]; then
        backend=io_uring
        exe="$here/bin/echo_tether"
    fi
    # shellcheck disable=SC2086 # $p is empty for node, whose port is in tail
    TETHER_BACKEND=$backend taskset -c "$SERVER_CPU" "$@" "$exe" $p "${tail[@]}" >/dev/null &
}

port_up() { # port tries: true once something accepts on 127.0.0.1:port
    for _ in $(seq "$2"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

port_free() { # port: wait (up to 5 s) until nothing listens on it, so that
    # port_up cannot reach an old listener that is still closing
    for _ in $(seq 50); do
        [[ -z $(ss -ltnH "( sport = :$1 )") ]] && return 0
        sleep 0.1
    done
}

# The next port from BASE_PORT up that nothing listens on (another benchmark may
# hold some), in the variable free_port (not a subshell: nports moves on).
next_port() {
    while :; do
        free_port=$((BASE_PORT + nports))
        nports=$((nports + 1))
        [[ -z $(ss -ltnH "( sport = :$free_port )") ]] && return 0
    done
}

start_server() { # name
    local s=$1 p
    next_port
    p=$free_port
    launch "$s" "$p"
    pid[$s]=$!
    port[$s]=$p
    port_up "$p" 50 && return 0
    log "echo_$s did not come up on port $p"
    exit 1
}

stop_server() { # name: TERM, and KILL if it is still there after 20 s
    local s=$1 p=${pid[$1]} i st
    kill -TERM "$p" 2>/dev/null || true
    # A server under valgrind waiting in io_uring_enter never sees the TERM:
    # valgrind keeps signals blocked across a system call it does not know to
    # be blocking, so waiting for it alone would hang the run.
    for ((i = 0; i < 200; i++)); do
        st=$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null) || break
        [[ -z $st || $st == Z ]] && break
        sleep 0.1
    done
    ((i < 200)) || kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "pid[$s]"
}

restart_server() { # name: a fresh process, for the memory and syscall tests
    local s=$1 p=${port[$1]}
    stop_server "$s"
    port_free "$p"
    launch "$s" "$p"
    pid[$s]=$!
    port_up "$p" 50 && return 0
    log "echo_$s did not come back on port $p"
    exit 1
}

# The TCP servers, when a section wants them.
for sec in throughput rate churn idle syscalls instructions; do
    if has_section "$sec"; then
        for s in $SERVERS; do
            start_server "$s"
        done
        break
    fi
done

# Server CPU time in clock ticks, user and system (/proc/PID/stat fields 14, 15).
cpu_of() { awk '{ print $14, $15 }' "/proc/$1/stat"; }

# One load run; appends {"section":..,"server":..,"round":..,"result":{...},
# "cpu":{"user":ticks,"sys":ticks,"hz":..}} (the server's CPU over the whole run,
# warmup included), and the fields in $rec_extra (,"key":value...) if any.
rec_extra=""
bench() { # section server round args...
    local sec=$1 s=$2 r=$3 out u0 s0 u1 s1
    shift 3
    read -r u0 s0 < <(cpu_of "${pid[$s]}")
    out=$(taskset -c "$CLIENT_CPU" "$BENCH" bench --json "$@" "${target[$s]:-127.0.0.1:${port[$s]}}" 2>/dev/null) || true
    read -r u1 s1 < <(cpu_of "${pid[$s]}")
    if [[ -z $out ]]; then
        out='{"msgs_per_s":0,"failed":true}'
    fi
    printf '{"section":"%s","server":"%s","round":%s,"args":"%s"%s,"result":%s,"cpu":{"user":%s,"sys":%s,"hz":%s}}\n' \
        "$sec" "${label[$s]:-$s}" "$r" "$*" "$rec_extra" "$out" $((u1 - u0)) $((s1 - s0)) "$(getconf CLK_TCK)" >>"$raw"
}

started=$(date +%s)
# Other work on the machine skews every number; keep a record of how busy it was.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- throughput and latency -----------------------------------------------------
if has_section throughput; then
    for c in $CONNS; do
        for sz in $SIZES; do
            for p in $PIPELINES; do
                for r in $(seq "$ROUNDS"); do
                    for s in $SERVERS; do
                        log "throughput c=$c size=$sz pipeline=$p round $r: $s"
                        bench throughput "$s" "$r" --connections "$c" --size "$sz" \
                            --pipeline "$p" --duration "$DURATION" --warmup "$WARMUP"
                    done
                done
            done
        done
    done
fi

# ---- latency at fixed rates (open loop) ------------------------------------------
# Each server's maximum first: the median messages/s of the closed loop at
# RATE_CONNS connections, 64 B, pipeline 1 (this run's throughput rows when there
# are some, else ROUNDS runs here, servers alternating, recorded as rate_max). Then
# `tether bench --rate` at RATE_LEVELS percent of it, same connections and size:
# messages on a fixed schedule, latency from the scheduled send time.
median_max() { # server section: median msgs_per_s of its 64 B pipeline-1 closed-loop runs
    python3 - "$raw" "$1" "$2" "$RATE_CONNS" <<'PY'
import json, statistics, sys
path, server, section, conns = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
v = []
for line in open(path):
    r = json.loads(line)
    res = r.get("result", {})
    if (r.get("section") == section and r.get("server") == server
            and res.get("connections") == conns and res.get("size") == 64
            and res.get("pipeline") == 1 and res.get("messages")):
        v.append(res["msgs_per_s"])
print("%.0f" % statistics.median(v) if v else 0)
PY
}

if has_section rate; then
    declare -A rmax
    need=()
    for s in $SERVERS; do
        rmax[$s]=$(median_max "$s" throughput)
        if [[ ${rmax[$s]} == 0 ]]; then
            need+=("$s")
        fi
    done
    if ((${#need[@]})); then
        for r in $(seq "$ROUNDS"); do
            for s in "${need[@]}"; do
                log "rate: maximum c=$RATE_CONNS size=64 pipeline=1 round $r: $s"
                bench rate_max "$s" "$r" --connections "$RATE_CONNS" --size 64 --pipeline 1 \
                    --duration "$DURATION" --warmup "$WARMUP"
            done
        done
        for s in "${need[@]}"; do
            rmax[$s]=$(median_max "$s" rate_max)
        done
    fi
    lowest=""
    for s in $SERVERS; do
        if [[ ${rmax[$s]} != 0 ]] && [[ -z $lowest || ${rmax[$s]} -lt $lowest ]]; then
            lowest=${rmax[$s]}
        fi
    done
    for lvl in $RATE_LEVELS; do
        for r in $(seq "$ROUNDS"); do
            for s in $SERVERS; do
                base=${rmax[$s]}
                [[ $RATE_BASE == slowest ]] && base=${lowest:-0}
                if [[ $base == 0 ]]; then
                    log "rate $lvl %: $s has no maximum (its closed-loop runs failed), skipped"
                    continue
                fi
                rate=$((base * lvl / 100))
                ((rate > 0)) || rate=1
                log "rate $lvl % of $base = $rate msg/s c=$RATE_CONNS round $r: $s"
                rec_extra=$(printf ',"level":%s,"max":%s,"base":"%s"' "$lvl" "$base" "$RATE_BASE")
                bench rate "$s" "$r" --rate "$rate" --connections "$RATE_CONNS" --size 64 \
                    --duration "$DURATION" --warmup "$WARMUP"
                rec_extra=""
            done
        done
    done
fi

# ---- connections per second -----------------------------------------------------
if has_section churn; then
    for r in $(seq "$ROUNDS"); do
        for s in $SERVERS; do
            log "churn c=$CHURN_CONNS round $r: $s"
            bench churn "$s" "$r" --churn --connections "$CHURN_CONNS" --size 64 \
                --duration "$DURATION" --warmup "$WARMUP"
            sleep 1 # let the client's TIME_WAIT sockets age past tcp_tw_reuse's 1 s
        done
    done
fi

# ---- memory per idle connection -------------------------------------------------
private_kb() { # pid: private memory (clean + dirty) from smaps_rollup
    awk '/^Private_(Clean|Dirty):/ { kb += $2 } END { print kb }' "/proc/$1/smaps_rollup"
}

if has_section idle; then
    for n in $IDLE_COUNTS; do
        if ((hard < n + 100)); then
            log "idle $n: skipped, RLIMIT_NOFILE hard limit $hard is below $((n + 100))"
            for s in $SERVERS; do
                printf '{"section":"idle","server":"%s","round":1,"args":"%s","result":{"skipped":"RLIMIT_NOFILE hard limit %s"}}\n' \
                    "$s" "$n" "$hard" >>"$raw"
            done
            continue
        fi
        for s in $SERVERS; do
            log "idle $n: $s"
            restart_server "$s"
            # Warm the code paths first, so page faults of first use are not
            # charged to the connections (500: more than tether_uring's 256 read
            # buffers, which are handed out in turn).
            taskset -c "$CLIENT_CPU" "$here/bin/idleconns" -e -H 1 127.0.0.1 "${port[$s]}" 500 \
                >/dev/null || true
            sleep 0.3
            before=$(private_kb "${pid[$s]}")
            taskset -c "$CLIENT_CPU" "$here/bin/idleconns" -e -H 120 127.0.0.1 "${port[$s]}" "$n" \
                >"$work/idle.out" &
            ipid=$!
            for _ in $(seq 1200); do
                [[ -s $work/idle.out ]] && break
                sleep 0.1
            done
            sleep 0.5 # the server has echoed every connection; let it settle
            after=$(private_kb "${pid[$s]}")
            fds=$(ls "/proc/${pid[$s]}/fd" | wc -l)
            kill -TERM "$ipid" 2>/dev/null || true
            wait "$ipid" 2>/dev/null || true
            est=$(awk '{ print $2 }' "$work/idle.out")
            note=$(tr -d '"\\\n' <"$work/idle.out")
            printf '{"section":"idle","server":"%s","round":1,"args":"%s","result":{"before_kb":%s,"after_kb":%s,"established":%s,"server_fds":%s,"client":"%s"}}\n' \
                "$s" "$n" "$before" "$after" "${est:-0}" "$fds" "$note" >>"$raw"
        done
    done
fi

# One raw record from the table of `strace -c`: the calls by name, and the count the
# load generator reported (its JSON field `key`) to divide them by.
strace_record() { # file section server args json key
    python3 - "$@" <<'PY'
import json, sys
path, section, server, args, out, key = sys.argv[1:]
calls = {}
for line in open(path):
    f = line.split()
    # "% time seconds usecs/call calls [errors] syscall"
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        try:
            calls[f[-1]] = int(f[3])
        except ValueError:
            pass
try:
    msgs = json.loads(out).get(key, 0)
except ValueError:
    msgs = 0
print(json.dumps({"section": section, "server": server, "round": 1, "args": args,
                  "result": {"messages": msgs, "calls": calls}}))
PY
}

# ---- system calls per echoed message --------------------------------------------
if has_section syscalls; then
    if command -v strace >/dev/null; then
        for cfg in "1 1" "100 1" "100 16"; do
            read -r c p <<<"$cfg"
            for s in $SERVERS; do
                log "syscalls c=$c pipeline=$p: $s"
                restart_server "$s"
                strace -c -f -o "$work/strace.txt" -p "${pid[$s]}" 2>/dev/null &
                spid=$!
                sleep 0.5 # attached
                out=$(taskset -c "$CLIENT_CPU" "$BENCH" bench --json --connections "$c" \
                    --pipeline "$p" --size 64 --messages "$STRACE_MSGS" --duration 120 \
                    "127.0.0.1:${port[$s]}" 2>/dev/null) || out='{}'
                sleep 0.2
                kill -INT "$spid" 2>/dev/null || true
                wait "$spid" 2>/dev/null || true
                strace_record "$work/strace.txt" syscalls "$s" "c=$c p=$p" "$out" messages >>"$raw"
            done
        done
    else
        log "syscalls: skipped, no strace"
    fi
fi

# ---- user-space instructions per echoed message -----------------------------------
# callgrind counts the instructions a server executes in user space (its library,
# the echo code, libc) exactly, whatever else the machine is doing: the library's
# own cost per message, with the kernel's left out. Counters are zeroed after a
# warmup, so start-up and accepting do not count.
if has_section instructions; then
    if command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
        for s in $SERVERS; do
            log "instructions c=100 pipeline=1: $s"
            stop_server "$s"
            p=${port[$s]}
            port_free "$p"
            launch "$s" "$p" valgrind -q --tool=callgrind --callgrind-out-file="$work/cg.$s.%p"
            vpid=$!
            port_up "$p" 100 || log "echo_$s under valgrind did not come up on port $p"
            taskset -c "$CLIENT_CPU" "$BENCH" bench --connections 100 --size 64 \
                --messages 2000 --duration 60 "127.0.0.1:$p" >/dev/null 2>&1 || true
            callgrind_control -z "$vpid" >/dev/null 2>&1
            out=$(taskset -c "$CLIENT_CPU" "$BENCH" bench --json --connections 100 --size 64 \
                --messages "$CG_MSGS" --duration 120 "127.0.0.1:$p" 2>/dev/null) || out='{}'
            callgrind_control -d "$vpid" >/dev/null 2>&1
            kill -TERM "$vpid" 2>/dev/null || true
            for _ in $(seq 50); do # the dump is written; do not wait forever for an exit
                kill -0 "$vpid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$vpid" 2>/dev/null || true
            wait "$vpid" 2>/dev/null || true
            # The dump taken after zeroing holds the measured part only.
            dump=$(ls "$work"/cg."$s".*.1 2>/dev/null | head -1)
            ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump" 2>/dev/null)
            msgs=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("messages", 0))' "$out" 2>/dev/null || echo 0)
            printf '{"section":"instructions","server":"%s","round":1,"args":"c=100 p=1","result":{"ir":%s,"messages":%s}}\n' \
                "$s" "${ir:-0}" "${msgs:-0}" >>"$raw"
            unset "pid[$s]"
        done
    else
        log "instructions: skipped, no valgrind"
    fi
fi

# ---- echo over Unix domain sockets ------------------------------------------------
# The same load (`tether bench` takes unix:PATH) against the servers listening on a
# Unix stream socket in the work directory: tether on both backends, libuv with
# uv_pipe_t, and the hand-written epoll loop over AF_UNIX. Throughput runs, then
# system calls under strace and user-space instructions under callgrind per
# echoed message, as for TCP.
unix_up() { # path tries: true once something listens on the socket file
    for _ in $(seq "$2"); do
        [[ -S $1 ]] && ss -xlnH | grep -qF -- " $1 " && return 0
        sleep 0.1
    done
    return 1
}

start_unix() { # name [wrapper...]: key unix_NAME, listening on $work/unix_NAME.sock
    local s=$1 k="unix_$1" path="$work/unix_$1.sock"
    shift
    launch "$s" "unix:$path" "$@"
    pid[$k]=$!
    target[$k]="unix:$path"
    label[$k]=$s
    unix_up "$path" 100 && return 0
    log "echo_$s did not come up on $path"
    exit 1
}

if has_section unix; then
    for s in $UNIX_SERVERS; do
        start_unix "$s"
    done
    for c in $UNIX_CONNS; do
        for sz in $UNIX_SIZES; do
            for p in $UNIX_PIPELINES; do
                for r in $(seq "$ROUNDS"); do
                    for s in $UNIX_SERVERS; do
                        log "unix c=$c size=$sz pipeline=$p round $r: $s"
                        bench unix "unix_$s" "$r" --connections "$c" --size "$sz" \
                            --pipeline "$p" --duration "$DURATION" --warmup "$WARMUP"
                    done
                done
            done
        done
    done
    if command -v strace >/dev/null; then
        for cfg in "1 1" "100 1" "100 16"; do
            read -r c p <<<"$cfg"
            for s in $UNIX_SERVERS; do
                log "unix syscalls c=$c pipeline=$p: $s"
                stop_server "unix_$s"
                start_unix "$s"
                strace -c -f -o "$work/strace.txt" -p "${pid[unix_$s]}" 2>/dev/null &
                spid=$!
                sleep 0.5 # attached
                out=$(taskset -c "$CLIENT_CPU" "$BENCH" bench --json --connections "$c" \
                    --pipeline "$p" --size 64 --messages "$STRACE_MSGS" --duration 120 \
                    "${target[unix_$s]}" 2>/dev/null) || out='{}'
                sleep 0.2
                kill -INT "$spid" 2>/dev/null || true
                wait "$spid" 2>/dev/null || true
                strace_record "$work/strace.txt" unix_syscalls "$s" "c=$c p=$p" "$out" messages >>"$raw"
            done
        done
    else
        log "unix syscalls: skipped, no strace"
    fi
    if command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
        for s in $UNIX_SERVERS; do
            log "unix instructions c=100 pipeline=1: $s"
            stop_server "unix_$s"
            start_unix "$s" valgrind -q --tool=callgrind --callgrind-out-file="$work/cgu.$s.%p"
            vpid=${pid[unix_$s]}
            taskset -c "$CLIENT_CPU" "$BENCH" bench --connections 100 --size 64 \
                --messages 2000 --duration 60 "${target[unix_$s]}" >/dev/null 2>&1 || true
            callgrind_control -z "$vpid" >/dev/null 2>&1
            out=$(taskset -c "$CLIENT_CPU" "$BENCH" bench --json --connections 100 --size 64 \
                --messages "$CG_MSGS" --duration 120 "${target[unix_$s]}" 2>/dev/null) || out='{}'
            callgrind_control -d "$vpid" >/dev/null 2>&1
            kill -TERM "$vpid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$vpid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$vpid" 2>/dev/null || true
            wait "$vpid" 2>/dev/null || true
            unset "pid[unix_$s]"
            dump=$(ls "$work"/cgu."$s".*.1 2>/dev/null | head -1)
            ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump" 2>/dev/null)
            msgs=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("messages", 0))' "$out" 2>/dev/null || echo 0)
            printf '{"section":"unix_instructions","server":"%s","round":1,"args":"c=100 p=1","result":{"ir":%s,"messages":%s}}\n' \
                "$s" "${ir:-0}" "${msgs:-0}" >>"$raw"
        done
    else
        log "unix instructions: skipped, no valgrind"
    fi
    for s in $UNIX_SERVERS; do
        [[ -n ${pid[unix_$s]:-} ]] && stop_server "unix_$s"
    done
fi

# ---- WebSocket echo and broadcast fan-out -------------------------------------------
# bin/wsload is the client for every server (masked binary frames, no extension
# offered). Echo: WS_CONNS connections in ping-pong. Fan-out: one sender and
# FANOUT_RECEIVERS receivers; the server passes each message to all but its sender;
# the sender keeps WINDOW messages outstanding (until every receiver has them).
ws_launch() { # name mode port [wrapper...]
    local s=$1 mode=$2 p=$3 backend=epoll
    shift 3
    [[ $s == tether_uring ]] && backend=io_uring
    case $s in
    tether | tether_uring)
        if [[ $mode == echo ]]; then
            set -- "$@" "$BENCH" echo --ws --listen "127.0.0.1:$p"
        else
            set -- "$@" "$here/bin/ws_tether" "$p" fanout
        fi
        ;;
    node) set -- "$@" node "$here/node/ws_server.js" "$p" "$mode" ;;
    lws) set -- "$@" "$here/bin/ws_lws" "$p" "$mode" ;;
    *)
        log "unknown WebSocket server $s"
        exit 1
        ;;
    esac
    TETHER_BACKEND=$backend taskset -c "$SERVER_CPU" "$@" >/dev/null 2>&1 &
}

start_ws() { # name mode [wrapper...]: key ws_NAME on a fresh port
    local s=$1 mode=$2 k="ws_$1" p
    shift 2
    next_port
    p=$free_port
    ws_launch "$s" "$mode" "$p" "$@"
    pid[$k]=$!
    port[$k]=$p
    label[$k]=$s
    port_up "$p" 100 && return 0
    log "WebSocket server $s ($mode) did not come up on port $p"
    exit 1
}

wsbench() { # section name round wsload-args...: one run, as bench() does
    local sec=$1 s=$2 k="ws_$2" r=$3 out u0 s0 u1 s1
    shift 3
    read -r u0 s0 < <(cpu_of "${pid[$k]}")
    out=$(taskset -c "$CLIENT_CPU" "$here/bin/wsload" "$@" "127.0.0.1:${port[$k]}" 2>/dev/null) || true
    read -r u1 s1 < <(cpu_of "${pid[$k]}")
    [[ -n $out ]] || out='{"messages":0,"failed":true}'
    printf '{"section":"%s","server":"%s","round":%s,"args":"%s","result":%s,"cpu":{"user":%s,"sys":%s,"hz":%s}}\n' \
        "$sec" "$s" "$r" "$*" "$out" $((u1 - u0)) $((s1 - s0)) "$(getconf CLK_TCK)" >>"$raw"
    sleep 0.3 # the server closes the last run's connections
}

ws_strace() { # mode label wsload-args...: system calls per message under strace
    local mode=$1 what=$2 s out spid
    shift 2
    for s in $WS_SERVERS; do
        log "ws syscalls $what: $s"
        stop_server "ws_$s"
        start_ws "$s" "$mode"
        strace -c -f -o "$work/strace.txt" -p "${pid[ws_$s]}" 2>/dev/null &
        spid=$!
        sleep 0.5
        out=$(taskset -c "$CLIENT_CPU" "$here/bin/wsload" "$@" "127.0.0.1:${port[ws_$s]}" 2>/dev/null) || true
        sleep 0.2
        kill -INT "$spid" 2>/dev/null || true
        wait "$spid" 2>/dev/null || true
        [[ -n $out ]] || out='{}'
        strace_record "$work/strace.txt" ws_syscalls "$s" "$what" "$out" messages >>"$raw"
    done
}

if has_section ws; then
    for s in $WS_SERVERS; do
        start_ws "$s" echo
    done
    for sz in $WS_SIZES; do
        for r in $(seq "$ROUNDS"); do
            for s in $WS_SERVERS; do
                log "ws echo c=$WS_CONNS size=$sz round $r: $s"
                wsbench ws_echo "$s" "$r" echo -c "$WS_CONNS" -s "$sz" -d "$DURATION" -w "$WARMUP"
            done
        done
    done
    command -v strace >/dev/null &&
        ws_strace echo "echo c=$WS_CONNS size=64" echo -c "$WS_CONNS" -s 64 -d 2 -w 0
    for s in $WS_SERVERS; do
        stop_server "ws_$s"
        start_ws "$s" fanout
    done
    for sz in $FANOUT_SIZES; do
        for w in $FANOUT_WINDOWS; do
            for r in $(seq "$ROUNDS"); do
                for s in $WS_SERVERS; do
                    log "ws fanout receivers=$FANOUT_RECEIVERS size=$sz window=$w round $r: $s"
                    wsbench ws_fanout "$s" "$r" fanout -c "$FANOUT_RECEIVERS" -s "$sz" -W "$w" \
                        -d "$DURATION" -w "$WARMUP"
                done
            done
        done
    done
    command -v strace >/dev/null &&
        ws_strace fanout "fanout receivers=$FANOUT_RECEIVERS size=64 window=16" \
            fanout -c "$FANOUT_RECEIVERS" -s 64 -W 16 -d 2 -w 0
    for s in $WS_SERVERS; do
        stop_server "ws_$s"
    done
fi

# ---- line broadcast fan-out ----------------------------------------------------------
# bin/fanout is the client for every server: one sender and N receivers (from
# 127.0.0.2 and up), each line of the sender to every receiver; the sender keeps
# WINDOW lines outstanding (until every receiver has them). It waits until the
# server has registered every receiver, and reads the server's CPU over the
# measured window itself (-P). Servers are started fresh for each N and take turns
# run by run.
fo_launch() { # name port [wrapper...]
    local s=$1 p=$2 backend=epoll
    shift 2
    [[ $s == *_uring ]] && backend=io_uring
    case $s in
    epoll) set -- "$@" "$here/bin/chat_epoll" "$p" ;;
    tether | tether_uring) set -- "$@" "$here/bin/chat_tether" "$p" ;;
    chat | chat_uring) set -- "$@" "$BENCH" chat --quiet --listen "127.0.0.1:$p" ;;
    libuv) set -- "$@" "$here/bin/chat_libuv" "$p" ;;
    libevent) set -- "$@" "$here/bin/chat_libevent" "$p" ;;
    node) set -- "$@" node "$here/node/chat_server.js" "$p" ;;
    *)
        log "unknown fan-out server $s"
        exit 1
        ;;
    esac
    TETHER_BACKEND=$backend taskset -c "$SERVER_CPU" "$@" >/dev/null 2>&1 &
}

start_fo() { # name [wrapper...]: key fo_NAME on a fresh port
    local s=$1 k="fo_$1" p
    shift
    next_port
    p=$free_port
    fo_launch "$s" "$p" "$@"
    pid[$k]=$!
    port[$k]=$p
    label[$k]=$s
    port_up "$p" 100 && return 0
    log "fan-out server $s did not come up on port $p"
    exit 1
}

fobench() { # name round fanout-args...: one run, as bench() does
    local s=$1 k="fo_$1" r=$2 out u0 s0 u1 s1
    shift 2
    read -r u0 s0 < <(cpu_of "${pid[$k]}")
    out=$(taskset -c "$CLIENT_CPU" timeout 180 "$here/bin/fanout" "$@" -P "${pid[$k]}" \
        "127.0.0.1:${port[$k]}" 2>/dev/null) || true
    read -r u1 s1 < <(cpu_of "${pid[$k]}")
    [[ -n $out ]] || out='{"deliveries":0,"failed":true}'
    printf '{"section":"fanout","server":"%s","round":%s,"args":"%s","result":%s,"cpu":{"user":%s,"sys":%s,"hz":%s}}\n' \
        "$s" "$r" "$*" "$out" $((u1 - u0)) $((s1 - s0)) "$(getconf CLK_TCK)" >>"$raw"
    sleep 0.5 # the server closes the last run's connections
}

strace_calls() { # strace -c output file: its calls by name, as JSON
    python3 - "$1" <<'PY'
import json, sys
calls = {}
for line in open(sys.argv[1]):
    f = line.split()
    # "% time seconds usecs/call calls [errors] syscall"
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        try:
            calls[f[-1]] = int(f[3])
        except ValueError:
            pass
print(json.dumps(calls))
PY
}

# Exact costs per delivery, free of the machine's noise: the user-space
# instructions (callgrind) and the system calls (strace -c) of one server process
# over two loads of FO_COST_MSGS messages each; the report divides the difference
# of the counts by the difference of the deliveries, so that what both loads share
# (the receivers' connects and closes, the probe lines, the start) cancels out.
fo_cost() { # tool server fanout-args...: one record of the two loads' counts
    local tool=$1 s=$2 k="fo_$2" n i=0 out runs="" spid ir
    shift 2
    if [[ $tool == callgrind ]]; then
        start_fo "$s" valgrind -q --tool=callgrind --callgrind-out-file="$work/cgf.$s.%p"
    else
        start_fo "$s"
    fi
    for n in $FO_COST_MSGS; do
        i=$((i + 1))
        sleep 1 # the last load's connections are closed
        if [[ $tool == callgrind ]]; then
            callgrind_control -z "${pid[$k]}" >/dev/null 2>&1
        else
            strace -c -f -o "$work/strace.txt" -p "${pid[$k]}" 2>/dev/null &
            spid=$!
            sleep 0.5 # attached
        fi
        out=$(taskset -c "$CLIENT_CPU" timeout 300 "$here/bin/fanout" "$@" -n "$n" -d 600 -w 0 \
            "127.0.0.1:${port[$k]}" 2>/dev/null) || true
        [[ -n $out ]] || out='{"deliveries":0,"failed":true}'
        if [[ $tool == callgrind ]]; then
            callgrind_control -d "${pid[$k]}" >/dev/null 2>&1
            ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$work/cgf.$s.${pid[$k]}.$i" 2>/dev/null)
            runs+="${runs:+,}{\"messages\":$n,\"ir\":${ir:-0},\"load\":$out}"
        else
            sleep 0.2
            kill -INT "$spid" 2>/dev/null || true
            wait "$spid" 2>/dev/null || true
            runs+="${runs:+,}{\"messages\":$n,\"calls\":$(strace_calls "$work/strace.txt"),\"load\":$out}"
        fi
    done
    stop_server "$k"
    printf '{"section":"fanout_cost","server":"%s","round":1,"args":"%s","result":{"tool":"%s","runs":[%s]}}\n' \
        "$s" "$*" "$tool" "$runs" >>"$raw"
}

if has_section fanout; then
    [[ -f $here/node/chat_server.js ]] && command -v node >/dev/null ||
        FO_SERVERS=$(tr ' ' '\n' <<<"$FO_SERVERS" | grep -vx node | tr '\n' ' ')
    for n in $FO_RECEIVERS; do
        if ((n + 64 > hard)); then
            log "fanout: $n receivers need more than the $hard descriptors allowed; skipped"
            continue
        fi
        here_servers=""
        for s in $FO_SERVERS; do
            [[ $s == chat* ]] && ((n > FO_CHAT_MAX)) && continue
            here_servers+="$s "
            start_fo "$s"
        done
        for sz in $FO_SIZES; do
            for w in $FO_WINDOWS; do
                for r in $(seq "$ROUNDS"); do
                    for s in $here_servers; do
                        log "fanout receivers=$n size=$sz window=$w round $r: $s"
                        fobench "$s" "$r" -c "$n" -s "$sz" -W "$w" -d "$DURATION" -w "$WARMUP"
                    done
                done
            done
        done
        for s in $here_servers; do
            stop_server "fo_$s"
        done
    done
    if ((FO_COST_RECEIVERS > 0)); then
        for sz in $FO_SIZES; do
            for w in $FO_WINDOWS; do
                for s in $FO_SERVERS; do
                    args=(-c "$FO_COST_RECEIVERS" -s "$sz" -W "$w")
                    if command -v strace >/dev/null; then
                        log "fanout syscalls receivers=$FO_COST_RECEIVERS size=$sz window=$w: $s"
                        fo_cost strace "$s" "${args[@]}"
                    fi
                    # callgrind cannot say what a JIT's instructions are for: not node
                    if [[ $s != node ]] && command -v callgrind_control >/dev/null; then
                        log "fanout instructions receivers=$FO_COST_RECEIVERS size=$sz window=$w: $s"
                        fo_cost callgrind "$s" "${args[@]}"
                    fi
                done
            done
        done
    fi
fi

# ---- TLS: handshakes, echo, CPU per MiB, idle memory ------------------------------
# Every server gets the same throwaway EC P-256 certificate, made here and deleted
# with $work. bin/tlsload offers TLS 1.3 with TLS_AES_128_GCM_SHA256 and X25519
# only, so whatever a server would allow, they all agree on the same; each run
# records what was negotiated. Servers take turns run by run, as above.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

tlsrun() { # row server round tlsload-args...: one measured tlsload run
    local row=$1 s=$2 r=$3 out
    shift 3
    out=$(taskset -c "$CLIENT_CPU" "$here/bin/tlsload" -p "${pid[tls_$s]}" "$@" \
        127.0.0.1 "${port[tls_$s]}" 2>/dev/null) || true
    [[ -n $out ]] || out='{"ops_per_s":0,"failed":true}'
    printf '{"section":"tls","server":"%s","round":%s,"row":"%s","args":"%s","result":%s}\n' \
        "$s" "$r" "$row" "$*" "$out" >>"$raw"
}

if has_section tls; then
    command -v openssl >/dev/null || { log "tls: no openssl command"; exit 1; }
    mkdir -p "$tls_dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
    for s in $TLS_SERVERS; do
        start_server "tls_$s"
    done
    rows=("full -m full -c $TLS_HS_CONNS" "resume -m resume -c $TLS_HS_CONNS")
    for c in $TLS_CONNS; do
        for sz in $TLS_SIZES; do
            rows+=("echo-c$c-s$sz -m echo -c $c -s $sz")
        done
    done
    for row in "${rows[@]}"; do
        read -r name args <<<"$row"
        for r in $(seq "$ROUNDS"); do
            for s in $TLS_SERVERS; do
                log "tls $name round $r: $s"
                # shellcheck disable=SC2086 # args are words
                tlsrun "$name" "$s" "$r" $args -d "$DURATION" -w "$WARMUP"
            done
        done
    done
    # System calls per handshake and per round trip: exact counts, whatever else
    # the machine is doing (strace slows the server, so read them per operation).
    if command -v strace >/dev/null; then
        for row in "full -m full -c 8" "echo-c1-s64 -m echo -c 1 -s 64" \
            "echo-c100-s64 -m echo -c 100 -s 64" "echo-c100-s16384 -m echo -c 100 -s 16384"; do
            read -r name args <<<"$row"
            for s in $TLS_SERVERS; do
                log "tls syscalls $name: $s"
                strace -c -f -o "$work/strace.txt" -p "${pid[tls_$s]}" 2>/dev/null &
                spid=$!
                sleep 0.5 # attached
                # shellcheck disable=SC2086 # args are words
                out=$(taskset -c "$CLIENT_CPU" "$here/bin/tlsload" $args -d 2 -w 0 127.0.0.1 \
                    "${port[tls_$s]}" 2>/dev/null) || out='{}'
                sleep 0.2
                kill -INT "$spid" 2>/dev/null || true
                wait "$spid" 2>/dev/null || true
                python3 - "$work/strace.txt" "$s" "$name" "$out" >>"$raw" <<'PY'
import json, sys
path, server, row, out = sys.argv[1:]
calls = {}
for line in open(path):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        try:
            calls[f[-1]] = int(f[3])
        except ValueError:
            pass
try:
    ops = json.loads(out).get("ops", 0)
except ValueError:
    ops = 0
print(json.dumps({"section": "tls_syscalls", "server": server, "round": 1, "row": row,
                  "args": row, "result": {"ops": ops, "calls": calls}}))
PY
            done
        done
    fi
    if ((hard < TLS_IDLE_N + 100)); then
        log "tls idle $TLS_IDLE_N: skipped, RLIMIT_NOFILE hard limit $hard"
    else
        for s in $TLS_SERVERS; do
            log "tls idle $TLS_IDLE_N: $s"
            restart_server "tls_$s"
            # Warm the code paths and the per-loop buffers first; only a few
            # connections, or the allocator hands their freed memory to the
            # measured ones and the figure comes out too small.
            taskset -c "$CLIENT_CPU" "$here/bin/tlsload" -m idle -n 20 -H 1 127.0.0.1 \
                "${port[tls_$s]}" >/dev/null 2>&1 || true
            sleep 0.5
            rss0=$(rss_kb "${pid[tls_$s]}")
            priv0=$(private_kb "${pid[tls_$s]}")
            taskset -c "$CLIENT_CPU" "$here/bin/tlsload" -m idle -n "$TLS_IDLE_N" -H 120 \
                127.0.0.1 "${port[tls_$s]}" >"$work/tlsidle.out" 2>/dev/null &
            ipid=$!
            for _ in $(seq 600); do
                [[ -s $work/tlsidle.out ]] && break
                sleep 0.1
            done
            sleep 1 # every connection has echoed; let the server settle
            rss1=$(rss_kb "${pid[tls_$s]}")
            priv1=$(private_kb "${pid[tls_$s]}")
            kill -TERM "$ipid" 2>/dev/null || true
            wait "$ipid" 2>/dev/null || true
            est=$(awk '{ print $2 }' "$work/tlsidle.out")
            printf '{"section":"tls_idle","server":"%s","round":1,"args":"%s","result":{"rss_before_kb":%s,"rss_after_kb":%s,"private_before_kb":%s,"private_after_kb":%s,"established":%s}}\n' \
                "$s" "$TLS_IDLE_N" "$rss0" "$rss1" "$priv0" "$priv1" "${est:-0}" >>"$raw"
        done
    fi
    for s in $TLS_SERVERS; do
        stop_server "tls_$s"
    done
fi

# ---- 100 000 connections held with heartbeats -------------------------------------
# Servers of the comparison are stopped first: hold.sh wants both cores.
if has_section hold; then
    for s in "${!pid[@]}"; do
        stop_server "$s"
    done
    log "hold: $HOLD_N connections, heartbeat $HOLD_HB_MS ms, $HOLD_WINDOW s"
    held=0
    N=$HOLD_N HB_MS=$HOLD_HB_MS WINDOW=$HOLD_WINDOW bash "$here/hold.sh" >"$work/hold.md" || held=$?
    python3 -c 'import json, sys; print(json.dumps({"section": "hold", "server": "tether",
        "round": 1, "args": sys.argv[2], "result": {"md": open(sys.argv[1]).read(),
        "status": int(sys.argv[3])}}))' "$work/hold.md" "N=$HOLD_N HB_MS=$HOLD_HB_MS WINDOW=$HOLD_WINDOW" "$held" >>"$raw"
fi

elapsed=$(($(date +%s) - started))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ---------------------------------------------------------------------
cmd=""
for v in ROUNDS DURATION WARMUP CONNS SIZES PIPELINES SERVERS RATE_CONNS RATE_LEVELS RATE_BASE CHURN_CONNS IDLE_COUNTS \
    STRACE_MSGS CG_MSGS SECTIONS HOLD_N HOLD_HB_MS HOLD_WINDOW UNIX_SERVERS UNIX_CONNS \
    UNIX_SIZES UNIX_PIPELINES WS_SERVERS WS_CONNS WS_SIZES FANOUT_RECEIVERS FANOUT_SIZES \
    FANOUT_WINDOWS FO_SERVERS FO_RECEIVERS FO_SIZES FO_WINDOWS FO_CHAT_MAX TLS_SERVERS \
    TLS_HS_CONNS TLS_CONNS TLS_SIZES TLS_IDLE_N KEEP BENCH; do
    if env | grep -q "^$v="; then
        cmd+="$v=\"${!v}\" "
    fi
done
cmd+="bench/run.sh"
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
versions="liburing $(pkg-config --modversion liburing), libuv $(pkg-config --modversion libuv), libevent $(pkg-config --modversion libevent), libev $(awk '/define EV_VERSION_MAJOR/ {a=$3} /define EV_VERSION_MINOR/ {b=$3} END {print a"."b}' /usr/include/ev.h)"
if has_section ws; then
    versions+=", libwebsockets $(pkg-config --modversion libwebsockets 2>/dev/null || echo '?')"
    versions+=", Node $(node --version 2>/dev/null || echo '?') with ws $(node -p 'require("./node/node_modules/ws/package.json").version' 2>/dev/null || echo '?')"
fi
if has_section tls; then
    versions+=", OpenSSL $(openssl version | awk '{ print $2 }')"
    has_section ws || versions+=", Node $(node --version 2>/dev/null || echo '?')"
fi
versions+=", $(${CC:-cc} --version | head -1)"
# Sections not run this time keep their runs (and the description of the run that
# made them) from the last raw file, so one section can be run again on its own.
keep=()
if [[ $KEEP == 1 && -f $here/${OUT%.md}.jsonl ]]; then
    keep=(--keep "$here/${OUT%.md}.jsonl")
fi
charts_link=$(realpath -m --relative-to="$(dirname "$here/$OUT")" "$here/$CHARTS")
"$PYTHON" "$here/report.py" "$raw" "${keep[@]}" --merged "$work/merged.jsonl" \
    --charts "$here/$CHARTS" --charts-link "$charts_link" \
    --sections "$SECTIONS" --unix-servers "$UNIX_SERVERS" --ws-servers "$WS_SERVERS" \
    --tls-servers "$TLS_SERVERS" --fo-servers "$FO_SERVERS" \
    --command "$cmd" --date "$(date -u '+%Y-%m-%d %H:%M UTC')" --kernel "$(uname -r)" \
    --cpu "$cpu ($(nproc) cores)" --servers "$SERVERS" --rounds "$ROUNDS" \
    --duration "$DURATION" --warmup "$WARMUP" --elapsed "$elapsed" \
    --load "before: $load_before; after: $load_after" --versions "$versions" \
    >"$work/report.md"
mv "$work/report.md" "$here/$OUT"
cp "$work/merged.jsonl" "$here/${OUT%.md}.jsonl"
log "wrote $here/$OUT (raw runs: ${OUT%.md}.jsonl) in ${elapsed}s"
