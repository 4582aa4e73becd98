#!/usr/bin/env bash
# Build every fuzz target (clang, libFuzzer + ASan + UBSan, the pure parsers
# compiled alone) and run each for SECONDS (default 10). Seeds come from fuzz/corpus/<t>;
# what the fuzzer adds, and any crash, goes under fuzz/out/ (not committed).
# Exits non-zero if any target finds a failure.
set -euo pipefail
secs=${1:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/fuzz/out"
mkdir -p "$out/bin"
CC=${FUZZ_CC:-clang}
status=0
# The pure parsers of the transform layer: no loop, no socket, nothing else linked
# (OpenSSL only for the handshake's SHA-1, base64 and random keys).
pure=("$root/src/proto/frame_codec.c" "$root/src/proto/http.c" "$root/src/proto/ws_frame.c"
      "$root/src/proto/ws_deflate.c" "$root/src/proto/ws_handshake.c" "$root/src/proto/proxy.c")
# Targets marked FUZZ_WHOLE_LIBRARY (the TLS glue needs a loop, sockets and the
# stream layer) get every source of src/ and the test certificate factory.
whole=($(find "$root/src" -name '*.c' | sort) "$root/tests/support/certs.c")
for src in "$root"/fuzz/fuzz_*.c; do
    t=$(basename "$src" .c)
    if grep -q FUZZ_WHOLE_LIBRARY "$src"; then
        srcs=("${whole[@]}")
        libs=(-lssl -lcrypto -lcares -luring -lz -lhiredis -lpthread)
    else
        srcs=("${pure[@]}")
        libs=(-lz -lcrypto)
    fi
    "$CC" -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -I"$root/include" -I"$root/src" -I"$root/fuzz" "$src" "${srcs[@]}" "${libs[@]}" \
        -o "$out/bin/$t"
    mkdir -p "$out/corpus/$t" "$root/fuzz/corpus/$t"
    log="$out/$t.log"
    if "$out/bin/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$out/$t-" "$out/corpus/$t" "$root/fuzz/corpus/$t" >"$log" 2>&1; then
        echo "fuzz $t: $(grep -E '^Done [0-9]+ runs' "$log" | tail -1)"
    else
        echo "fuzz $t: FAILED (see $log)"
        tail -30 "$log"
        status=1
    fi
done
exit $status
