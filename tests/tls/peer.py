#!/usr/bin/env python3
"""TLS peers for tests/net/test_tls*.c, on Python's ssl module.

Every mode prints one line "RESULT key=value ..." on stdout before it exits
(exit 0 when the mode's own checks passed). Modes:
  server   listen on 127.0.0.1:--port, print READY, serve --count connections:
           echo (default), or --starttls (plain "STARTTLS\\n" -> "GO\\n", then TLS),
           or --ragged (echo --bytes bytes back, then close TCP without close_notify)
  client   connect, send --bytes random bytes in uneven pieces while reading the
           echo, compare SHA-256; --resume: connect twice, the second time with the
           first session; --recv-only: send nothing, read to the end (--slow: a
           little at a time); --ragged: send, then FIN without close_notify;
           --rst-mid-record: send half a record, then RST; --silent: handshake,
           then neither read nor write for --hold seconds; --starttls.
  proxy    accept one connection on --port, connect to --to, forward both ways
           one byte per send (TCP_NODELAY), print READY.
"""
import argparse
import hashlib
import os
import select
import socket
import ssl
import struct
import sys
import time

PIECES = [1, 5, 300, 16384, 16385, 7, 70000, 2, 4095, 1000]


def result(**kv):
    print("RESULT " + " ".join("%s=%s" % (k, str(v).replace(" ", "_")) for k, v in kv.items()),
          flush=True)


def versions(ctx, v):
    if v == "1.2":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif v == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3


def client_ctx(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if a.ca:
        ctx.load_verify_locations(a.ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if a.cert:
        ctx.load_cert_chain(a.cert, a.key)
    if a.alpn:
        ctx.set_alpn_protocols(a.alpn.split(","))
    versions(ctx, a.tls)
    return ctx


def server_ctx(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    if a.ca:
        ctx.load_verify_locations(a.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    if a.alpn:
        ctx.set_alpn_protocols(a.alpn.split(","))
    versions(ctx, a.tls)
    return ctx


def describe(s):
    cert = s.getpeercert() if s.getpeercert(binary_form=True) else None
    cn = ""
    if cert:
        for rdn in cert.get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    cn = v
    return dict(version=s.version(), alpn=s.selected_alpn_protocol() or "-",
                cipher=s.cipher()[0], peer_cn=cn or "-")


def read_to_end(s, sha, slow=0.0, limit=None):
    """Read until the peer's close_notify ('clean') or a bare FIN ('ragged')."""
    got = 0
    while True:
        try:
            d = s.recv(4096 if slow else 1 << 17)
        except ssl.SSLEOFError:
            return got, "ragged"
        except ConnectionResetError:
            return got, "reset"
        if not d:
            return got, "clean"
        sha.update(d)
        got += len(d)
        if slow:
            time.sleep(slow)
        if limit is not None and got >= limit:
            return got, "limit"


def send_pieces(s, data):
    off, i = 0, 0
    while off < len(data):
        n = PIECES[i % len(PIECES)]
        s.sendall(data[off:off + n])
        off += n
        i += 1


def round_trip(s, n):
    """Send n random bytes in uneven pieces while reading the echo (one thread,
    non-blocking: an SSL object is not for two threads at once)."""
    data = os.urandom(n)
    sent_sha = hashlib.sha256(data).hexdigest()
    back = hashlib.sha256()
    off, i, got = 0, 0, 0
    s.setblocking(False)
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        moved = False
        if off < n:
            chunk = data[off:off + PIECES[i % len(PIECES)]]
            try:
                k = s.send(chunk)
                off += k
                if k == len(chunk):
                    i += 1
                moved = True
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        try:
            d = s.recv(1 << 17)
            if not d:
                break
            back.update(d)
            got += len(d)
            moved = True
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        if not moved:
            select.select([s], [s] if off < n else [], [], 0.05)
    s.settimeout(20)
    return sent_sha, back.hexdigest(), got


def connect_tls(a, ctx, session=None):
    raw = socket.create_connection(("127.0.0.1", a.port), timeout=a.timeout)
    s = ctx.wrap_socket(raw, server_hostname=a.servername or None, session=session,
                        suppress_ragged_eofs=False)
    return s


def mode_client(a):
    ctx = client_ctx(a)
    if a.starttls:
        raw = socket.create_connection(("127.0.0.1", a.port), timeout=a.timeout)
        raw.sendall(b"hello plain\n")
        buf = b""
        while not buf.endswith(b"plain too\n"):
            d = raw.recv(1)
            if not d:
                result(ok=0, err="eof-before-plain-answer")
                return 1
            buf += d
        raw.sendall(b"STARTTLS\n")
        buf = b""
        while not buf.endswith(b"GO\n"):  # byte by byte: nothing of TLS read here
            d = raw.recv(1)
            if not d:
                result(ok=0, err="eof-before-GO")
                return 1
            buf += d
        s = ctx.wrap_socket(raw, server_hostname=a.servername or None,
                            suppress_ragged_eofs=False)
        first = b""
        while not first.endswith(b"\n"):
            first += s.recv(1)
        sent, back, got = round_trip(s, a.bytes)
        info = describe(s)
        s.unwrap()
        s.close()
        result(ok=int(sent == back and got == a.bytes), first=first.decode().strip(),
               got=got, **info)
        return 0 if sent == back else 1
    try:
        s = connect_tls(a, ctx)
    except (ssl.SSLError, OSError) as e:
        result(ok=0, handshake="failed", err=type(e).__name__, why=str(e)[:120])
        return 2
    info = describe(s)
    if a.silent:
        time.sleep(a.hold)
        result(ok=1, **info)
        return 0
    if a.rst_mid_record:
        # Write one application record by hand: wrap it in a MemoryBIO object
        # sharing nothing with s? Simpler: send a record header announcing 1000
        # bytes and only half of them, then reset.
        raw = socket.socket(fileno=s.detach())
        raw.sendall(bytes([23, 3, 3]) + struct.pack(">H", 1000) + os.urandom(500))
        time.sleep(0.2)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
        result(ok=1, **info)
        return 0
    if a.recv_only:
        sha = hashlib.sha256()
        got, how = read_to_end(s, sha, a.slow)
        if how == "clean":
            s.unwrap()
        s.close()
        result(ok=1, got=got, eof=how, sha=sha.hexdigest(), **info)
        return 0
    if a.ragged:
        data = os.urandom(a.bytes)
        s.sendall(data)
        time.sleep(0.1)
        s.shutdown(socket.SHUT_WR)  # a FIN, no close_notify
        sha = hashlib.sha256()
        got, how = read_to_end(s, sha)
        result(ok=1, sent_sha=hashlib.sha256(data).hexdigest(), got=got, eof=how, **info)
        return 0
    sent, back, got = round_trip(s, a.bytes)
    resumed = 0
    if a.resume:
        # TLS 1.3 tickets come after the handshake: the round trip read them.
        sess = s.session
        s.unwrap()
        s.close()
        s2 = connect_tls(a, ctx, session=sess)
        resumed = int(s2.session_reused)
        round_trip(s2, 1000)
        s = s2
    if a.no_close:
        time.sleep(a.hold)
        s.close()
    else:
        # Our close_notify; then wait for the other's (the peer's tt_end).
        try:
            s.unwrap()
            eof = "clean"
        except (ssl.SSLError, OSError) as e:
            eof = "error:" + type(e).__name__
        s.close()
    ok = sent == back and got == a.bytes
    result(ok=int(ok), sent_sha=sent, got=got, resumed=resumed,
           eof=(eof if not a.no_close else "-"), **info)
    return 0 if ok else 1


def serve_one(a, ctx, conn):
    if a.starttls:
        buf = b""
        while not buf.endswith(b"\n"):
            buf += conn.recv(1)
        conn.sendall(b"plain too\n")
        buf = b""
        while not buf.endswith(b"STARTTLS\n"):
            d = conn.recv(1)
            if not d:
                return "eof-plain"
            buf += d
        conn.sendall(b"GO\n")
    try:
        s = ctx.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
    except (ssl.SSLError, OSError) as e:
        print("handshake failed: %s" % e, flush=True)
        return "handshake-failed"
    info = describe(s)
    print("OPEN " + " ".join("%s=%s" % kv for kv in info.items()), flush=True)
    if a.starttls:
        s.sendall(b"python secret\n")
    if a.ragged:
        got = 0
        while got < a.bytes:
            d = s.recv(65536)
            if not d:
                break
            s.sendall(d)
            got += len(d)
        time.sleep(0.1)
        s.shutdown(socket.SHUT_RDWR)  # FIN without close_notify
        s.close()
        return "ragged"
    got = 0
    how = "clean"
    while True:
        try:
            d = s.recv(1 << 17)
        except ssl.SSLEOFError:
            how = "ragged"
            break
        except (ssl.SSLError, OSError) as e:
            how = "error:" + type(e).__name__
            break
        if not d:
            break
        s.sendall(d)
        got += len(d)
    if how == "clean":
        try:
            s.unwrap()
        except (ssl.SSLError, OSError):
            pass
    s.close()
    print("CLOSED got=%d eof=%s" % (got, how), flush=True)
    return how


def mode_server(a):
    ctx = server_ctx(a)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(8)
    print("READY", flush=True)
    hows = []
    for _ in range(a.count):
        conn, _ = ls.accept()
        conn.settimeout(a.timeout)
        hows.append(serve_one(a, ctx, conn))
    result(ok=1, eofs=",".join(hows))
    return 0


def mode_proxy(a):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(1)
    print("READY", flush=True)
    c, _ = ls.accept()
    u = socket.create_connection(("127.0.0.1", a.to))
    for x in (c, u):
        x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    moved = {c: 0, u: 0}
    other = {c: u, u: c}
    open_ = {c, u}
    sends = 0
    while open_:
        r, _, _ = select.select(list(open_), [], [], a.timeout)
        if not r:
            break
        for x in r:
            d = x.recv(65536)
            if not d:
                open_.discard(x)
                try:
                    other[x].shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                continue
            for i in range(len(d)):  # one byte per segment
                other[x].send(d[i:i + 1])
                sends += 1
            moved[x] += len(d)
    result(ok=1, up=moved[c], down=moved[u], sends=sends)
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["client", "server", "proxy"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--to", type=int)
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--alpn")
    p.add_argument("--tls", choices=["1.2", "1.3"])
    p.add_argument("--servername", default="localhost")
    p.add_argument("--bytes", type=int, default=100000)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--hold", type=float, default=5)
    p.add_argument("--slow", type=float, default=0.0)
    for f in ("resume", "recv-only", "ragged", "rst-mid-record", "silent", "starttls",
              "no-close"):
        p.add_argument("--" + f, action="store_true")
    a = p.parse_args()
    if a.servername == "-":
        a.servername = None
    return {"client": mode_client, "server": mode_server, "proxy": mode_proxy}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
