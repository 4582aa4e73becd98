#!/usr/bin/env bash
# Install the Debian packages the build, the tests and the demo need, if missing.
set -euo pipefail
# clang + libclang-rt-14-dev: the libFuzzer runtime for the fuzz stage of make test;
# libuv/libevent/libev: the comparison servers of make bench, liburing its io_uring
# floor; util-linux: taskset; libhiredis-dev + redis-server: the hiredis adapter's
# example and test, against a real Redis; libssl-dev: OpenSSL 3 (WebSocket hashes); zlib1g-dev: permessage-deflate;
# python3-websockets: a WebSocket peer of the tests (Node's ws comes from npm, below);
# chromium + chromium-driver + python3-selenium: the browser tests (tests/browser),
# headless Chromium through WebDriver, the driver from the same Debian source as the
# browser so their versions always match.
# libwebsockets-dev: the libwebsockets server of make bench's WebSocket section.
# haproxy: the load balancer in front of a tether server in the PROXY protocol tests.
# python3-matplotlib: bench/report.py's charts (run by /usr/bin/python3, Debian's).
pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev libcriterion-dev
      libc-ares-dev iproute2 nftables netcat-openbsd socat python3 strace procps
      dnsmasq-base util-linux libuv1-dev libevent-dev libev-dev liburing-dev
      libhiredis-dev redis-server libssl-dev zlib1g-dev python3-websockets
      chromium chromium-driver python3-selenium libwebsockets-dev haproxy
      python3-matplotlib)
# Node.js runs the WebSocket interop peer (and the unix-socket peer): Debian's when
# the machine has none of its own.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm)
root=$(cd "$(dirname "$0")/.." && pwd)

# Node's ws for the WebSocket interop tests, at the version tests/node/package-lock.json
# pins (node_modules is not committed; tests/net/test_ws.c runs the same when missing).
node_modules() {
    if command -v npm >/dev/null 2>&1 && [ ! -d "$root/tests/node/node_modules/ws" ]; then
        (cd "$root/tests/node" && npm ci --no-audit --no-fund >/dev/null) ||
            echo "npm ci in tests/node failed: the Node interop test will try again" >&2
    fi
    return 0
}
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    node_modules
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
node_modules
