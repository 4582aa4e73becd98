#!/usr/bin/env bash
# Hold N idle connections with heartbeats and dead-peer detection on, for WINDOW
# seconds, and report whether every one survived, what the server spent, and its
# memory per connection.
#
# One process may hold no more descriptors than the hard RLIMIT_NOFILE (20 000 on
# some machines, and only root with CAP_SYS_RESOURCE can raise it), so the server
# is PROCS processes of bin/echo_tether sharing the port with SO_REUSEPORT, each one
# tether loop, the way a server outgrows one process's limit; the kernel spreads
# the connections over them. The clients are as many bin/idleconns processes,
# from 127.0.0.2-254 (each source address has its own ephemeral ports), answering
# every heartbeat ('P') with a pong ('Q'). Servers on CPU 0, clients on CPU 1.
#
# Every connection heartbeats every HB_MS and is declared dead after DEAD_MS
# without an answer, so a heartbeat or answer lost anywhere closes a connection
# and shows in the result: the test fails unless all N are still established at
# the end on both sides.
#
# Environment: N=100000 HB_MS=5000 DEAD_MS=3*HB_MS WINDOW=60 (seconds held after
# setup) PER_PROC=(3/4 of the hard descriptor limit) PORT=(random). ANSWER=0 makes
# the clients ignore the heartbeats: every connection must then be declared dead
# and the run must report NO (the check that this benchmark can fail).
# Prints a markdown table; exits 1 if a connection was lost or never made.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
N=${N:-100000}
HB_MS=${HB_MS:-5000}
DEAD_MS=${DEAD_MS:-$((3 * HB_MS))}
WINDOW=${WINDOW:-60}
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] && hard=1048576
ulimit -n "$hard"
PER_PROC=${PER_PROC:-$((hard * 3 / 4))}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
procs=$(((N + PER_PROC - 1) / PER_PROC))
tick=$(getconf CLK_TCK)
work=$(mktemp -d /tmp/tether-hold.XXXXXX)
srv=() cli=()

cleanup() {
    kill -TERM "${cli[@]}" "${srv[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
log() { printf '%s\n' "$*" >&2; }
sum_servers() { # awk program over each server's file in /proc; prints the sum
    local total=0 v
    for p in "${srv[@]}"; do
        v=$("$@" "$p")
        total=$((total + v))
    done
    echo "$total"
}
private_kb() { awk '/^Private_(Clean|Dirty):/ { kb += $2 } END { print kb }' "/proc/$1/smaps_rollup"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
established() { # server side: sockets on PORT in ESTABLISHED
    ss -tnH state established "( sport = :$PORT )" | wc -l
}

make -s -C "$here" bin/echo_tether bin/idleconns >&2
log "hold: $N connections, $procs server processes and $procs clients, heartbeat ${HB_MS} ms, dead after ${DEAD_MS} ms, ${WINDOW} s"
for _ in $(seq "$procs"); do
    taskset -c 0 "$here/bin/echo_tether" "$PORT" "$HB_MS" "$DEAD_MS" reuseport &
    srv+=($!)
done
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
sleep 0.5
mem_before=$(sum_servers private_kb)

answer_opt=-a
[[ ${ANSWER:-1} == 0 ]] && answer_opt=
hold_s=$((WINDOW + 180)) # setup may take a while; SIGTERM ends it sooner
for i in $(seq "$procs"); do
    n=$((N / procs + (i <= N % procs ? 1 : 0)))
    taskset -c 1 "$here/bin/idleconns" -e $answer_opt -H "$hold_s" 127.0.0.1 "$PORT" "$n" >"$work/cli.$i" &
    cli+=($!)
done
started=$(date +%s.%N)
for i in $(seq "$procs"); do
    for _ in $(seq 1800); do
        [[ -s $work/cli.$i ]] && break
        sleep 0.1
    done
done
setup_s=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
made=$(cat "$work"/cli.* | awk '/^established/ { s += $2 } END { print s + 0 }')
sleep 1
est_start=$(established)
mem_after=$(sum_servers private_kb)
cpu0=$(sum_servers cpu_ticks)
log "hold: $made made in ${setup_s} s; server side established $est_start; holding ${WINDOW} s"
low=$est_start
for _ in $(seq $((WINDOW / 10))); do
    sleep 10
    e=$(established)
    ((e < low)) && low=$e
    log "hold: established $e"
done
sleep $((WINDOW % 10))
cpu1=$(sum_servers cpu_ticks)
est_end=$(established)
((est_end < low)) && low=$est_end
kill -TERM "${cli[@]}" 2>/dev/null || true
wait "${cli[@]}" 2>/dev/null || true
cli=()
answered=$(cat "$work"/cli.* | awk '/^answered/ { s += $2 } END { print s + 0 }')
lost=$(cat "$work"/cli.* | awk '/^answered/ { s += $4 } END { print s + 0 }')
[[ -z $answer_opt ]] && lost=$((made - est_end)) # silent clients do not count

python3 - "$N" "$made" "$est_start" "$low" "$est_end" "$lost" "$answered" "$HB_MS" "$DEAD_MS" \
    "$WINDOW" "$procs" "$((cpu1 - cpu0))" "$tick" "$mem_before" "$mem_after" "$setup_s" <<'PY'
import sys
(n, made, est0, low, est1, lost, answered, hb, dead, window, procs, ticks, tick, kb0, kb1,
 setup) = sys.argv[1:]
n, made, est0, low, est1, lost, answered = map(int, (n, made, est0, low, est1, lost, answered))
hb, dead, window, procs, ticks, tick, kb0, kb1 = map(int, (hb, dead, window, procs, ticks, tick, kb0, kb1))
cpu = 100.0 * ticks / tick / window
print("| connections | server | heartbeat / dead after | made (setup) | established: start, lowest, end | lost | pongs | server CPU | server memory per connection |")
print("|---|---|---|---|---|---|---|---|---|")
print("| %d | %d × echo_tether (SO_REUSEPORT) | %d ms / %d ms | %d (%.1f s) | %d, %d, %d | %d | %d | %.1f %% of a core | %d B |" % (
    n, procs, hb, dead, made, float(setup), est0, low, est1, lost, answered, cpu,
    (kb1 - kb0) * 1024 // max(made, 1)))
# Heartbeats really flowed: each connection answered at least 90 % of the pings
# the window alone must have carried.
beats_min = int(0.9 * n * (window * 1000 // hb))
ok = made == n and est0 == n and low == n and est1 == n and lost == 0 and answered >= beats_min
print()
print("held: %s (pongs expected at least %d)" % (
    "yes, every connection for %d s" % window if ok else "NO", beats_min))
sys.exit(0 if ok else 1)
PY
