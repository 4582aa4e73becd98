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
# Kernel limits that silently drop connections at this scale are raised for the run
# only, when below what N needs, and restored on exit: fs.file-max (both ends'
# sockets), net.ipv4.tcp_mem (each socket that recently moved data may hold a page),
# net.netfilter.nf_conntrack_max (when conntrack is loaded). The kernel's memory per
# connection is read from /proc/meminfo (Slab) and /proc/net/sockstat (TCP mem
# pages); both ends of every connection live on this machine, so it covers two
# sockets.
#
# Environment: N=100000 HB_MS=5000 DEAD_MS=3*HB_MS WINDOW=60 (seconds held after
# setup) PER_PROC=(3/4 of the hard descriptor limit) PORT=(random) RATE=0 (connects
# per second per client process; 0: as fast as 256 in flight allow) SETUP_S=600
# (setup given up after) CHECK_S=10 (seconds between counts of the established
# connections). ANSWER=0 makes
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
RATE=${RATE:-0}
SETUP_S=${SETUP_S:-600}
CHECK_S=${CHECK_S:-10}
srv=() cli=() restore=()

cleanup() {
    kill -TERM "${cli[@]}" "${srv[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    local kv
    for kv in "${restore[@]}"; do
        sysctl -qw "$kv" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
log() { printf '%s\n' "$*" >&2; }
sum_of() { # sum_of FUNCTION PID...: FUNCTION's number for each PID, summed (0 if gone)
    local fn=$1 total=0 v p
    shift
    for p in "$@"; do
        v=$("$fn" "$p" 2>/dev/null || echo 0)
        total=$((total + v))
    done
    echo "$total"
}
private_kb() { awk '/^Private_(Clean|Dirty):/ { kb += $2 } END { print kb }' "/proc/$1/smaps_rollup"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
established() { # server side: sockets on PORT in ESTABLISHED
    ss -tnH state established "( sport = :$PORT )" | wc -l
}

# Raise sysctl $1 to at least $2 (a value of one or more numbers: the last one is
# compared) for this run; the old value is put back by cleanup.
raise() {
    local key=$1 want=$2 old
    old=$(sysctl -n "$key" 2>/dev/null) || return 0
    old=$(tr -s ' \t' ' ' <<<"$old")
    [[ ${old##* } -ge ${want##* } ]] && return 0
    if sysctl -qw "$key=$want" >/dev/null 2>&1; then
        restore+=("$key=$old")
        log "hold: $key $old -> $want (restored on exit)"
    else
        log "hold: could not raise $key ($old); the run may lose connections"
    fi
}
raise fs.file-max $((2 * N + 500000))
pages=$((2 * N + 262144)) # a page per socket, and room
raise net.ipv4.tcp_mem "$((pages / 2)) $((pages * 3 / 4)) $pages"
raise net.netfilter.nf_conntrack_max $((2 * N + 65536))
slab_kb() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }
tcp_pages() { awk '/^TCP:/ { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
tcp_inuse() { awk '/^TCP:/ { print $3 }' /proc/net/sockstat; }

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
mem_before=$(sum_of private_kb "${srv[@]}")
slab_before=$(slab_kb) pages_before=$(tcp_pages) inuse_before=$(tcp_inuse)

answer_opt=-a
[[ ${ANSWER:-1} == 0 ]] && answer_opt=
hold_s=$((WINDOW + SETUP_S + 60)) # SIGTERM ends it sooner
for i in $(seq "$procs"); do
    n=$((N / procs + (i <= N % procs ? 1 : 0)))
    taskset -c 1 "$here/bin/idleconns" -e $answer_opt -H "$hold_s" -T "$SETUP_S" -r "$RATE" 127.0.0.1 "$PORT" "$n" >"$work/cli.$i" &
    cli+=($!)
done
started=$(date +%s.%N)
for i in $(seq "$procs"); do
    for _ in $(seq $((SETUP_S * 10 + 100))); do
        [[ -s $work/cli.$i ]] && break
        sleep 0.1
    done
done
setup_s=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
made=$(cat "$work"/cli.* | awk '/^established/ { s += $2 } END { print s + 0 }')
sleep 1
est_start=$(established)
mem_after=$(sum_of private_kb "${srv[@]}")
cmem_kb=$(sum_of private_kb "${cli[@]}")
slab_after=$(slab_kb) pages_after=$(tcp_pages) inuse_after=$(tcp_inuse)
cpu0=$(sum_of cpu_ticks "${srv[@]}") ccpu0=$(sum_of cpu_ticks "${cli[@]}")
cpu_t0=$(date +%s.%N)
log "hold: $made made in ${setup_s} s; server side established $est_start; TCP sockets in use $inuse_after; holding ${WINDOW} s"
low=$est_start
peak_pages=$pages_after
for _ in $(seq $((WINDOW / CHECK_S))); do
    sleep "$CHECK_S"
    e=$(established)
    ((e < low)) && low=$e
    p=$(tcp_pages)
    ((p > peak_pages)) && peak_pages=$p
    log "hold: established $e, TCP mem $p pages"
done
sleep $((WINDOW % CHECK_S))
cpu1=$(sum_of cpu_ticks "${srv[@]}") ccpu1=$(sum_of cpu_ticks "${cli[@]}")
# The CPU shares are over the time between the two readings: WINDOW and the counts
# of established sockets in between, each of which takes long with many sockets.
cpu_s=$(awk -v a="$cpu_t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
est_end=$(established)
((est_end < low)) && low=$est_end
kill -TERM "${cli[@]}" 2>/dev/null || true
wait "${cli[@]}" 2>/dev/null || true
cli=()
answered=$(cat "$work"/cli.* | awk '/^answered/ { s += $2 } END { print s + 0 }')
lost=$(cat "$work"/cli.* | awk '/^answered/ { s += $4 } END { print s + 0 }')
[[ -z $answer_opt ]] && lost=$((made - est_end)) # silent clients do not count

python3 - "$N" "$made" "$est_start" "$low" "$est_end" "$lost" "$answered" "$HB_MS" "$DEAD_MS" \
    "$WINDOW" "$procs" "$((cpu1 - cpu0))" "$tick" "$mem_before" "$mem_after" "$setup_s" \
    "$((ccpu1 - ccpu0))" "$cmem_kb" "$((slab_after - slab_before))" \
    "$((pages_after - pages_before))" "$peak_pages" "$(getconf PAGESIZE)" "$cpu_s" <<'PY'
import sys
(n, made, est0, low, est1, lost, answered, hb, dead, window, procs, ticks, tick, kb0, kb1,
 setup, cticks, ckb, slab_kb, pages, peak, pagesize, cpu_s) = sys.argv[1:]
n, made, est0, low, est1, lost, answered = map(int, (n, made, est0, low, est1, lost, answered))
hb, dead, window, procs, ticks, tick, kb0, kb1 = map(int, (hb, dead, window, procs, ticks, tick, kb0, kb1))
cticks, ckb, slab_kb, pages, peak, pagesize = map(int, (cticks, ckb, slab_kb, pages, peak, pagesize))
cpu_s = max(float(cpu_s), 0.1)
cpu = 100.0 * ticks / tick / cpu_s
ccpu = 100.0 * cticks / tick / cpu_s
per = lambda v: v // max(made, 1)
print("| connections | server | heartbeat / dead after | made (setup) | established: start, lowest, end | lost | pongs | server CPU | client CPU | server memory per connection | kernel memory per connection (both ends) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
print("| %d | %d × echo_tether (SO_REUSEPORT) | %d ms / %d ms | %d (%.1f s) | %d, %d, %d | %d | %d | %.1f %% of a core | %.1f %% of a core | %d B | %d B slab + %d B socket buffers (peak %d pages) |" % (
    n, procs, hb, dead, made, float(setup), est0, low, est1, lost, answered, cpu, ccpu,
    per((kb1 - kb0) * 1024), per(slab_kb * 1024), per(max(pages, 0) * pagesize), peak))
print()
print("Clients' private memory: %d B per connection (bin/idleconns keeps a small record "
      "per socket)." % per(ckb * 1024))
print()
print("CPU is over the %.1f s between the two CPU readings: the %d s window and the "
      "counts of established sockets in it." % (cpu_s, window))
# Heartbeats really flowed: each connection answered at least 90 % of the pings
# the window alone must have carried.
beats_min = int(0.9 * n * (window * 1000 // hb))
ok = made == n and est0 == n and low == n and est1 == n and lost == 0 and answered >= beats_min
print()
print("held: %s (pongs expected at least %d)" % (
    "yes, every connection for %d s" % window if ok else "NO", beats_min))
sys.exit(0 if ok else 1)
PY
