#!/usr/bin/env python3
"""A client behind an imaginary load balancer: sends a hand-made PROXY protocol
header (built here from HAProxy's proxy-protocol.txt, independently of tether's
own builder), then a line, and prints what came back.

usage: peer.py PORT SCENARIO [--bind IP] [--each-byte] [--pause MS] [--split N]
                              [--hold MS]

Prints "GOT <hex>" with the bytes received and "END eof|reset|timeout"."""
import socket
import struct
import sys
import time

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def tlv(t, value):
    return struct.pack("!BH", t, len(value)) + value


def v2(cmd=0x21, fam=0x11, addrs=None, tlvs=b"", length=None):
    if addrs is None:
        addrs = socket.inet_aton("192.0.2.1") + socket.inet_aton("198.51.100.2") + \
            struct.pack("!HH", 4321, 443)
    body = addrs + tlvs
    n = len(body) if length is None else length
    return SIG + bytes([cmd, fam]) + struct.pack("!H", n) + body


def v2_tlvs():
    ssl = bytes([0x07]) + struct.pack("!I", 0) + tlv(0x21, b"TLSv1.3") + \
        tlv(0x22, b"client.example") + tlv(0x23, b"TLS_AES_128_GCM_SHA256")
    tlvs = tlv(0x01, b"h2") + tlv(0x02, b"example.com") + tlv(0x05, b"req-42") + \
        tlv(0x20, ssl) + tlv(0xEA, b"\x01vpce-0abc") + tlv(0xEE, b"\x01linkid") + \
        tlv(0xE0, b"pscid") + tlv(0xF0, b"custom")
    # The CRC32c TLV last: computed over the whole header with its value zeroed.
    hdr = v2(tlvs=tlvs + tlv(0x03, b"\0\0\0\0"))
    return hdr[:-4] + struct.pack("!I", crc32c(hdr))


def v6():
    a = socket.inet_pton(socket.AF_INET6, "2001:db8::7") + \
        socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 6000, 80)
    return v2(fam=0x21, addrs=a)


LINE = b"ping\n"
SCENARIOS = {
    "v1": b"PROXY TCP4 192.0.2.1 198.51.100.2 4321 443\r\n" + LINE,
    "v1-v6": b"PROXY TCP6 2001:db8::7 2001:db8::1 6000 80\r\n" + LINE,
    "v1-unknown": b"PROXY UNKNOWN whatever follows\r\n" + LINE,
    "v1-deny": b"PROXY TCP4 203.0.113.9 198.51.100.2 4321 443\r\n" + LINE,
    "v2": v2() + LINE,
    "v2-v6": v6() + LINE,
    "v2-tlvs": v2_tlvs() + LINE,
    "v2-local": v2(cmd=0x20, fam=0x00, addrs=b"") + LINE,
    "v2-bad-crc": v2(tlvs=tlv(0x03, b"\1\2\3\4")) + LINE,
    "bad-signature": b"\r\n\r\n\x00\r\nQUIX\n" + b"\x21\x11\x00\x0c" + b"x" * 12 + LINE,
    "v1-no-crlf": b"PROXY TCP4 192.0.2.1 198.51.100.2 4321 443\n" + LINE,
    "v1-oversized": b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n" + LINE,
    "v1-bad-address": b"PROXY TCP4 192.0.2.300 198.51.100.2 4321 443\r\n" + LINE,
    "v2-tlv-past-end": v2(tlvs=b"\x01\x00\x40ab") + LINE,
    "v2-too-long": v2(length=4000) + b"x" * 4000 + LINE,
    "v2-short-block": v2(addrs=b"\0" * 6) + LINE,
    "v2-bad-version": SIG + b"\x31\x11\x00\x0c" + b"\0" * 12 + LINE,
    "missing": LINE,
    "plain": b"hello\n",
    "probe": b"PROBE\n",
    "nothing": b"",
}


def main():
    port, name = int(sys.argv[1]), sys.argv[2]
    args = sys.argv[3:]
    bind = args[args.index("--bind") + 1] if "--bind" in args else None
    pause = int(args[args.index("--pause") + 1]) / 1000 if "--pause" in args else 0
    split = int(args[args.index("--split") + 1]) if "--split" in args else 0
    hold = int(args[args.index("--hold") + 1]) / 1000 if "--hold" in args else 0
    each = "--each-byte" in args
    data = SCENARIOS[name]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if bind:
        s.bind((bind, 0))
    s.connect(("127.0.0.1", port))
    s.settimeout(4)
    try:
        if each:
            for i in range(len(data)):
                s.send(data[i:i + 1])
                time.sleep(0.002)
        elif split:
            s.sendall(data[:split])
            time.sleep(pause)
            s.sendall(data[split:])
        else:
            time.sleep(pause)
            s.sendall(data)
    except OSError:
        pass
    got, end = b"", "eof"
    try:
        while not got.endswith(b"\n"):
            b = s.recv(4096)
            if not b:
                break
            got += b
    except ConnectionResetError:
        end = "reset"
    except socket.timeout:
        end = "timeout"
    print("GOT " + got.hex())
    print("END " + end)
    sys.stdout.flush()
    time.sleep(hold)
    s.close()


if __name__ == "__main__":
    main()
