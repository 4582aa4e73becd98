#!/usr/bin/env bash
# make test: the whole suite, again on the io_uring backend, again under ASan+UBSan,
# the cross-thread tests under TSan, a short fuzz run of every framing decoder, and
# the build matrix (Release, RelWithDebInfo, Debug with gcc and clang, warnings as
# errors, build only).
# Every stage runs even when an earlier one failed, so one run shows everything;
# the last line adds them up.
set -uo pipefail
build=${1:-build}
asan=${2:-build-asan}
tsan=${3:-build-tsan}
matrix=${4:-build-matrix}
jobs=$(nproc 2>/dev/null || echo 2)
fuzz_secs=${FUZZ_SHORT:-10}
passed=0
failed=0
status=0

# Run ctest in a build tree; add its counts ("N% tests passed, F tests failed out of T").
run_ctest() {
    local dir=$1 label=$2
    shift 2
    local log
    log=$(mktemp)
    (cd "$dir" && ctest --output-on-failure -j 1 "$@") 2>&1 | tee "$log"
    local line total bad
    line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1)
    if [ -z "$line" ]; then
        echo "$label: ctest reported no result"
        failed=$((failed + 1))
        status=1
    else
        bad=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
        total=$(sed -E 's/.* tests failed out of ([0-9]+).*/\1/' <<<"$line")
        passed=$((passed + total - bad))
        failed=$((failed + bad))
        [ "$bad" -eq 0 ] || status=1
        echo "== $label: $((total - bad)) of $total test programs passed"
    fi
    rm -f "$log"
}

echo "== plain build"
run_ctest "$build" "plain"

echo "== the same suite on the io_uring backend (TETHER_BACKEND=io_uring)"
TETHER_BACKEND=io_uring run_ctest "$build" "io_uring" -E 'install/consumers|docs/api_reference'

echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
if cmake -S . -B "$asan" -DCMAKE_BUILD_TYPE=Debug -DTT_SANITIZE=ON >/dev/null &&
    cmake --build "$asan" -j "$jobs"; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_ctest "$asan" "asan+ubsan"
else
    echo "asan+ubsan: build failed"
    failed=$((failed + 1))
    status=1
fi

echo "== ThreadSanitizer (cross-thread tests)"
if cmake -S . -B "$tsan" -DCMAKE_BUILD_TYPE=Debug -DTT_TSAN=ON >/dev/null &&
    cmake --build "$tsan" -j "$jobs"; then
    TSAN_OPTIONS=halt_on_error=1 run_ctest "$tsan" "tsan" -L tsan
else
    echo "tsan: build failed"
    failed=$((failed + 1))
    status=1
fi

echo "== fuzzing each decoder for ${fuzz_secs}s"
if bash fuzz/run.sh "$fuzz_secs"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    status=1
fi

echo "== build matrix: gcc and clang, Release, RelWithDebInfo, Debug (build only)"
# The plain build above is gcc RelWithDebInfo with the tests: not built twice.
# Each combination counts as one test, passed or failed.
mlog=$(mktemp)
bash scripts/build_matrix.sh "$matrix" gcc-RelWithDebInfo 2>&1 | tee "$mlog"
mline=$(grep -E '^matrix: [0-9]+ passed, [0-9]+ failed' "$mlog" | tail -1)
if [ -z "$mline" ]; then
    echo "build matrix: no result"
    failed=$((failed + 1))
    status=1
else
    mpassed=$(sed -E 's/^matrix: ([0-9]+) passed.*/\1/' <<<"$mline")
    mfailed=$(sed -E 's/^matrix: [0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$mline")
    passed=$((passed + mpassed))
    failed=$((failed + mfailed))
    [ "$mfailed" -eq 0 ] || status=1
fi
rm -f "$mlog"

echo "(counted per test program, per sanitizer build, plus the fuzz stage and one per"
echo " build of the matrix)"
echo "total: $passed passed, $failed failed"
exit $status
