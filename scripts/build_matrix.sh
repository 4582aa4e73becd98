#!/usr/bin/env bash
# The builds a packager or CI runs: Release, RelWithDebInfo and Debug, each with gcc
# and with clang, warnings as errors, everything (library, CLI, examples, tests:
# TT_TESTS=ON), each in its own build directory under $1 (default build-matrix).
# Build only: the suite itself runs elsewhere. One line per combination, then
# "matrix: N passed, N failed"; exit 1 if any failed.
#
#   bash scripts/build_matrix.sh [DIR] [SKIP...]
#
# SKIP names combinations already built elsewhere (make test passes
# gcc-RelWithDebInfo: its plain build is that one), counted as passed without
# building them again. MATRIX_JOBS sets the parallelism (default: nproc).
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
top=${1:-build-matrix}
shift || true
skip=" $* "
jobs=${MATRIX_JOBS:-$(nproc 2>/dev/null || echo 2)}
passed=0
failed=0
t_all=$(date +%s)

for cc in gcc clang; do
    for type in Release RelWithDebInfo Debug; do
        name="$cc-$type"
        if [[ "$skip" == *" $name "* ]]; then
            echo "ok   $name (built by an earlier stage)"
            passed=$((passed + 1))
            continue
        fi
        if ! command -v "$cc" >/dev/null; then
            echo "FAIL $name: no $cc (scripts/deps.sh installs it)"
            failed=$((failed + 1))
            continue
        fi
        dir="$top/$name"
        log="$dir.log"
        mkdir -p "$top"
        t0=$(date +%s)
        if cmake -S "$src" -B "$dir" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE="$type" \
            -DTT_TESTS=ON -DTT_WERROR=ON >"$log" 2>&1 &&
            cmake --build "$dir" -j "$jobs" >>"$log" 2>&1; then
            echo "ok   $name ($(($(date +%s) - t0)) s)"
            passed=$((passed + 1))
        else
            echo "FAIL $name ($(($(date +%s) - t0)) s), from $log:"
            grep -E 'error|warning' "$log" | sort -u | head -20
            failed=$((failed + 1))
        fi
    done
done
echo "matrix: $passed passed, $failed failed ($(($(date +%s) - t_all)) s)"
[ "$failed" -eq 0 ]
