#!/usr/bin/env bash
# CPU cost of heartbeating idle connections: N idle connections (default 10 000)
# held by bin/idleconns against bin/echo_tether, once without heartbeats and once
# with a heartbeat every HB_MS (default 1000) on every connection; the server's
# CPU time (utime + stime, /proc/PID/stat) over WINDOW seconds (default 10) is
# read for each. Prints a markdown table. Loopback only, bounded in time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
N=${N:-10000}
HB_MS=${HB_MS:-1000}
WINDOW=${WINDOW:-10}
tick=$(getconf CLK_TCK)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

measure() { # $1: heartbeat ms (0: none). Prints "ticks established".
    local port=$((20000 + RANDOM % 20000)) srv cli out t0 t1
    taskset -c 0 "$here/bin/echo_tether" "$port" "$1" &
    srv=$!
    sleep 0.3
    out=$(mktemp)
    taskset -c 1 "$here/bin/idleconns" -e -H $((WINDOW + 30)) 127.0.0.1 "$port" "$N" >"$out" &
    cli=$!
    for _ in $(seq 1 300); do [ -s "$out" ] && break; sleep 0.1; done
    sleep 2 # let every connection's first heartbeat period start
    t0=$(cpu_ticks "$srv")
    sleep "$WINDOW"
    t1=$(cpu_ticks "$srv")
    kill "$cli" "$srv" 2>/dev/null || true
    wait "$cli" "$srv" 2>/dev/null || true
    echo "$((t1 - t0)) $(awk '{ print $2 }' "$out")"
    rm -f "$out"
}

read -r idle_ticks idle_est < <(measure 0)
read -r hb_ticks hb_est < <(measure "$HB_MS")
python3 - "$idle_ticks" "$hb_ticks" "$tick" "$WINDOW" "$N" "$HB_MS" "$idle_est" "$hb_est" <<'PY'
import sys
idle, hb, tick, window, n, hb_ms, e0, e1 = map(float, sys.argv[1:])
cpu = lambda t: 100.0 * t / tick / window
beats = n * window * 1000.0 / hb_ms
extra_s = (hb - idle) / tick
print("| connections | heartbeat | server CPU | CPU per 10 000 connections | per heartbeat |")
print("|---|---|---|---|---|")
print("| %d | none | %.1f %% | %.1f %% | – |" % (e0, cpu(idle), cpu(idle) * 10000 / max(e0, 1)))
print("| %d | every %d ms | %.1f %% | %.1f %% | %.1f µs |" % (
    e1, hb_ms, cpu(hb), cpu(hb) * 10000 / max(e1, 1), 1e6 * extra_s / beats if beats else 0))
PY
