#!/usr/bin/env bash
# Demo: a client vanishes without FIN or RST, and the server notices within the
# deadline it was given, saying how it noticed.
#
#   bash scripts/demo_vanish.sh [BUILD_DIR]      (DEADLINE_MS=2000 by default)
#
# As root with ip(8) and nft(8): the server and the client live in two network
# namespaces joined by a veth pair, and the client's namespace starts dropping every
# packet (a pulled cable). Otherwise (or with DEMO_NO_NETNS=1) the client process
# is stopped with SIGSTOP: alive for TCP, silent for the application. Everything
# made here is removed.
set -u

BUILD=${1:-build}
TETHER=$BUILD/tether
DEADLINE=${DEADLINE_MS:-2000}
TMP=$(mktemp -d)
NS_A="ttdemo$$a"
NS_B="ttdemo$$b"
SRV_PID=""
CLI_PID=""
NETNS=0

cleanup() {
    [ -n "$CLI_PID" ] && kill -CONT "$CLI_PID" 2>/dev/null
    [ -n "$CLI_PID" ] && kill "$CLI_PID" 2>/dev/null
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null
    [ -n "$CLI_PID" ] && wait "$CLI_PID" 2>/dev/null
    [ -n "$SRV_PID" ] && wait "$SRV_PID" 2>/dev/null
    exec 3>&- 2>/dev/null
    if [ "$NETNS" = 1 ]; then
        ip netns del "$NS_A" 2>/dev/null
        ip netns del "$NS_B" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

# Wait up to $2 ms for pattern $1 in the server's log.
wait_log() {
    local end=$(( $(now_ms) + $2 ))
    while [ "$(now_ms)" -lt "$end" ]; do
        grep -q "$1" "$TMP/server.log" 2>/dev/null && return 0
        sleep 0.02
    done
    return 1
}

if [ ! -x "$TETHER" ]; then
    echo "demo_vanish: $TETHER not built" >&2
    exit 1
fi

if [ -z "${DEMO_NO_NETNS:-}" ] && [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v nft >/dev/null &&
    ip netns add "$NS_A" 2>/dev/null; then
    NETNS=1
    ip netns add "$NS_B" &&
        ip link add ttdv0 netns "$NS_A" type veth peer name ttdv1 netns "$NS_B" &&
        ip -n "$NS_A" addr add 10.78.0.1/24 dev ttdv0 &&
        ip -n "$NS_B" addr add 10.78.0.2/24 dev ttdv1 &&
        ip -n "$NS_A" link set ttdv0 up && ip -n "$NS_B" link set ttdv1 up &&
        ip -n "$NS_A" link set lo up && ip -n "$NS_B" link set lo up || exit 1
    IN_A="ip netns exec $NS_A"
    IN_B="ip netns exec $NS_B"
    ADDR=10.78.0.1:7000
    HOW="client's namespace drops every packet (no FIN, no RST)"
else
    IN_A=""
    IN_B=""
    ADDR=127.0.0.1:0
    HOW="client process stopped with SIGSTOP (not root or no ip/nft)"
fi

echo "== liveness: a client vanishes; the server must notice within $DEADLINE ms"
$IN_A "$TETHER" echo --detect-within "$DEADLINE" --verbose --listen "$ADDR" \
    >"$TMP/server.out" 2>"$TMP/server.log" &
SRV_PID=$!
end=$(( $(now_ms) + 3000 ))
until grep -q "listening on" "$TMP/server.out" 2>/dev/null || [ "$(now_ms)" -gt "$end" ]; do
    sleep 0.02
done
ADDR=$(sed -n 's/^tether echo: listening on //p' "$TMP/server.out")
[ -n "$ADDR" ] || { echo "demo_vanish: the server did not start" >&2; exit 1; }

# The client's stdin is a FIFO held open here: it never ends, and sends nothing.
mkfifo "$TMP/in"
exec 3<>"$TMP/in"
$IN_B "$TETHER" cat --detect-within "$DEADLINE" "$ADDR" <"$TMP/in" >/dev/null \
    2>"$TMP/client.log" &
CLI_PID=$!
wait_log "open from" 3000 || { echo "demo_vanish: the client did not connect" >&2; exit 1; }
sed 's/^/   /' "$TMP/server.log"
sleep 1 # heartbeats flow both ways: the connection is healthy

echo "   fault: $HOW"
T0=$(now_ms)
if [ "$NETNS" = 1 ]; then
    $IN_B nft "add table inet ttdemo; $(
        echo "add chain inet ttdemo in { type filter hook input priority 0; policy drop; };"
        echo "add chain inet ttdemo out { type filter hook output priority 0; policy drop; }")"
else
    kill -STOP "$CLI_PID"
fi
if wait_log "closed" $(( DEADLINE * 3 )); then
    T1=$(now_ms)
    grep "closed" "$TMP/server.log" | sed 's/^/   /'
    echo "   detected after $(( T1 - T0 )) ms (deadline $DEADLINE ms)"
    [ $(( T1 - T0 )) -le $(( DEADLINE + DEADLINE / 10 )) ] || exit 1
else
    echo "   NOT detected within $(( DEADLINE * 3 )) ms" >&2
    exit 1
fi
