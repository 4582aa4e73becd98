#!/usr/bin/env bash
# HAProxy -> three tether chat nodes -> Redis, on loopback: clients that the
# balancer spreads over different nodes talk to each other, and each node sees
# the clients' own addresses through the PROXY protocol.
#
#   bash scripts/cluster-demo.sh [BUILD_DIR]      (default: build; make demo runs it)
#
# Needs redis-server and haproxy (scripts/deps.sh installs both). Every process is
# started here on free ports and stopped by its PID; everything is bounded in time.
set -uo pipefail

BUILD=${1:-build}
TETHER=$BUILD/tether
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tether-cluster.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    sleep 0.2
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

die() {
    echo "cluster-demo: $*" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_line() { # FILE PATTERN: up to 10 s
    local i
    for ((i = 0; i < 200; i++)); do
        grep -m1 -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

for tool in redis-server haproxy python3 "$TETHER"; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "$tool" ] || die "$tool is missing (scripts/deps.sh)"
done

echo "-- Redis on a free port"
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait_line "$TMP/redis.log" "Ready to accept" >/dev/null || die "redis-server did not start"
echo "   redis-server on 127.0.0.1:$RPORT"

echo "-- three chat nodes behind the balancer, one room through Redis"
NODE_PORTS=()
for i in 1 2 3; do
    "$TETHER" chat --listen 127.0.0.1:0 --proxy-protocol any \
        --cluster "redis://127.0.0.1:$RPORT/demo-room" </dev/null >"$TMP/node$i.out" 2>"$TMP/node$i.err" &
    PIDS+=($!)
    line=$(wait_line "$TMP/node$i.out" "listening on") || die "node $i did not start"
    NODE_PORTS+=("${line##*:}")
    echo "   node $i: $line"
done

echo "-- HAProxy in front (tcp mode, round robin; PROXY v1 to nodes 1 and 3, v2 to node 2)"
HPORT=$(free_port)
{
    printf 'global\n    maxconn 100\ndefaults\n    mode tcp\n    timeout connect 2s\n'
    printf '    timeout client 30s\n    timeout server 30s\n'
    printf 'frontend chat\n    bind 127.0.0.1:%s\n    default_backend nodes\n' "$HPORT"
    printf 'backend nodes\n    balance roundrobin\n'
    for i in 0 1 2; do
        send=send-proxy
        [ "$i" -eq 1 ] && send=send-proxy-v2
        printf '    server node%d 127.0.0.1:%s %s\n' "$i" "${NODE_PORTS[$i]}" "$send"
    done
} >"$TMP/haproxy.cfg"
haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
PIDS+=($!)
for ((i = 0; i < 100; i++)); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $HPORT), 0.2).close()" \
        2>/dev/null && break
    sleep 0.05
done
echo "   haproxy on 127.0.0.1:$HPORT"
sleep 0.5 # the nodes' Redis links and subscriptions

echo "-- three clients through the balancer (one per node), each says a line"
python3 - "$HPORT" "$TMP/clients" <<'EOF' || die "the clients did not all hear each other"
import socket, sys, time
port = int(sys.argv[1])
names = ["alice", "bob", "carol"]
socks = []
for n in names:  # round robin: one client per node
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.settimeout(0.2)
    with open(sys.argv[2], "a") as f:  # the address each node must name
        f.write("127.0.0.1:%d\n" % s.getsockname()[1])
    socks.append(s)
    time.sleep(0.1)
time.sleep(0.5)
for n, s in zip(names, socks):
    s.sendall(f"hi, I am {n}\n".encode())
    time.sleep(0.1)
heard = {n: b"" for n in names}
end = time.time() + 5
while time.time() < end and not all(sum(f"I am {o}".encode() in heard[n] for o in names if o != n) == 2 for n in names):
    for n, s in zip(names, socks):
        try:
            heard[n] += s.recv(4096)
        except socket.timeout:
            pass
ok = True
for n in names:
    lines = [l for l in heard[n].decode().splitlines() if "I am" in l]
    for l in lines:
        print(f"   {n} heard: {l}")
    if f"I am {n}".encode() in heard[n]:
        print(f"   {n} heard its own line"); ok = False
    if sum(f"I am {o}".encode() in heard[n] for o in names if o != n) != 2:
        print(f"   {n} did not hear both others"); ok = False
sys.exit(0 if ok else 1)
EOF
echo "-- what the nodes logged: the clients' own addresses, through the PROXY header"
sleep 0.2
for i in 1 2 3; do
    grep "joined" "$TMP/node$i.err" | sed "s/^/   node $i: /"
done
while read -r addr; do
    grep -q "$addr joined" "$TMP"/node*.err || die "no node named the client $addr (it saw the balancer)"
done <"$TMP/clients"
echo "cluster-demo: ok"
