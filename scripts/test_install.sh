#!/usr/bin/env bash
# Install the library to a scratch prefix and build a user program against it both
# ways a user would: pkg-config, and CMake's find_package(tether). Then run it: with
# LD_LIBRARY_PATH, and built with -Wl,-rpath without it (README's custom prefix).
# As root, also install to /usr/local inside a private mount namespace (a tmpfs
# there, and a copy of /etc for ldconfig's cache) and check that a plain pkg-config
# build runs with nothing set: `make install` ran ldconfig.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cp "$src/examples/echo_client.c" "$tmp/app.c"

export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cc "$tmp/app.c" $(pkg-config --cflags --libs tether) -o "$tmp/app_pc"
libdir=$(pkg-config --variable=libdir tether)
cc "$tmp/app.c" $(pkg-config --cflags --libs tether) -Wl,-rpath,"$libdir" -o "$tmp/app_rpath"
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
runs=0
check() { # NAME COMMAND...: run it, expect the refusal
    local name=$1 out st
    shift
    runs=$((runs + 1))
    out=$("$@" "127.0.0.1:$port" 2>&1) && st=0 || st=$?
    if [ "$st" -eq 1 ] && grep -q "connect failed" <<<"$out"; then
        echo "ok   $name: $out"
    else
        echo "FAIL $name exit $st: $out"
        fails=$((fails + 1))
    fi
}
for app in "$tmp/app_pc" "$tmp/app_static" "$tmp/cm/b/app"; do
    check "$(basename "$app")" env LD_LIBRARY_PATH="$tmp/prefix/lib" "$app"
done
check "app_rpath (no LD_LIBRARY_PATH)" env -u LD_LIBRARY_PATH "$tmp/app_rpath"

# A two-level LIBDIR (Debian's lib/x86_64-linux-gnu under /usr): tether.pc must
# still find the prefix from where it lies.
runs=$((runs + 1))
cmake -S "$src" -B "$tmp/ma" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR=lib/x86_64-linux-gnu \
    -DTT_TESTS=OFF >/dev/null
mkdir -p "$tmp/usr/lib/x86_64-linux-gnu/pkgconfig" "$tmp/usr/include"
cp "$tmp/ma/tether.pc" "$tmp/usr/lib/x86_64-linux-gnu/pkgconfig/"
ma_lib=$(PKG_CONFIG_PATH="$tmp/usr/lib/x86_64-linux-gnu/pkgconfig" pkg-config --variable=libdir tether)
ma_inc=$(PKG_CONFIG_PATH="$tmp/usr/lib/x86_64-linux-gnu/pkgconfig" pkg-config --variable=includedir tether)
if [ "$(realpath -m "$ma_lib")" = "$tmp/usr/lib/x86_64-linux-gnu" ] &&
    [ "$(realpath -m "$ma_inc")" = "$tmp/usr/include" ]; then
    echo "ok   tether.pc under lib/x86_64-linux-gnu: libdir and includedir found"
else
    echo "FAIL tether.pc under lib/x86_64-linux-gnu: libdir $ma_lib, includedir $ma_inc"
    fails=$((fails + 1))
fi

# /usr/local, as `sudo make install` does it, without touching the real one.
if [ "$(id -u)" -eq 0 ] &&
    unshare --mount sh -c 'mount -t tmpfs tmpfs /usr/local' >/dev/null 2>&1; then
    cat >"$tmp/system.sh" <<'SYS'
set -euo pipefail
build=$1 tmp=$2
mount -t tmpfs tmpfs /usr/local
cp -a /etc "$tmp/etc"
mount --bind "$tmp/etc" /etc
cmake --install "$build" --prefix /usr/local >"$tmp/system-install.log"
unset PKG_CONFIG_PATH LD_LIBRARY_PATH
cc "$tmp/app.c" $(pkg-config --cflags --libs tether) -o "$tmp/app_system"
exec "$tmp/app_system" "$3"
SYS
    check "app_system (/usr/local, pkg-config's and ld.so's defaults)" \
        unshare --mount bash "$tmp/system.sh" "$build" "$tmp"
    grep -q "Running ldconfig" "$tmp/system-install.log" 2>/dev/null ||
        echo "     (the install did not say it ran ldconfig: $(tail -1 "$tmp/system-install.log" 2>/dev/null))"
else
    echo "skip app_system: installing to /usr/local in a mount namespace needs root, unshare"
    echo "     and the right to mount"
fi
echo "$((runs - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
