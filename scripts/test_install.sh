#!/usr/bin/env bash
# Install the library to a scratch prefix and build a user program against it both
# ways a user would: pkg-config, and CMake's find_package(tether). Then run it.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cp "$src/examples/echo_client.c" "$tmp/app.c"

export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cc "$tmp/app.c" $(pkg-config --cflags --libs tether) -o "$tmp/app_pc"
# Static: the archive itself, with the private dependencies pkg-config lists.
cc "$tmp/app.c" $(pkg-config --cflags tether) "$tmp/prefix/lib/libtether.a" \
    $(pkg-config --static --libs-only-l tether | sed 's/-ltether//') -o "$tmp/app_static"

mkdir -p "$tmp/cm"
cat >"$tmp/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(app C)
find_package(tether 0.1 REQUIRED)
add_executable(app ../app.c)
target_link_libraries(app PRIVATE tether::tether)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm/b" >/dev/null

# Each program connects to a port nobody listens on and must report the refusal
# through on_close (exit status 1, "connect failed"): proof it links and runs.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fails=0
for app in "$tmp/app_pc" "$tmp/app_static" "$tmp/cm/b/app"; do
    out=$(LD_LIBRARY_PATH="$tmp/prefix/lib" "$app" "127.0.0.1:$port" 2>&1) && st=0 || st=$?
    if [ "$st" -eq 1 ] && grep -q "connect failed" <<<"$out"; then
        echo "ok   $(basename "$app"): $out"
    else
        echo "FAIL $(basename "$app") exit $st: $out"
        fails=$((fails + 1))
    fi
done
echo "$((3 - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
