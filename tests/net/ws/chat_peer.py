# Line clients (plain sockets) and WebSocket clients (Python's websockets, Debian
# python3-websockets) in one `tether chat --ws` room, driven by
# tests/net/test_chat_ws.c: `chat_peer.py TCP_PORT WS_PORT PID SCENARIO`.
# Prints "ok NAME" or "bad NAME: why" per check, "done" at the end. Every wait is
# bounded; the whole run is cut at 30 s.
import asyncio
import os
import signal
import socket
import sys
import time

import websockets

TCP_PORT, WS_PORT, PID = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
SCENARIO = sys.argv[4]
WAIT = 5


def say(*a):
    print(*a, flush=True)


def check(name, cond, why=""):
    say("ok " + name if cond else "bad %s: %s" % (name, why))


def name_of(addr):
    return "%s:%d" % (addr[0], addr[1])


class Line:
    """A plain TCP chat client reading on a thread of the event loop's executor."""

    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", TCP_PORT), timeout=WAIT)
        self.name = name_of(self.s.getsockname())
        self.buf = b""

    async def line(self):
        loop = asyncio.get_running_loop()
        while b"\n" not in self.buf:
            chunk = await loop.run_in_executor(None, self.s.recv, 65536)
            if not chunk:
                raise EOFError("the server closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    async def eof(self):
        loop = asyncio.get_running_loop()
        rest = self.buf
        while True:
            chunk = await loop.run_in_executor(None, self.s.recv, 65536)
            if not chunk:
                return rest
            rest += chunk

    def send(self, data):
        self.s.sendall(data)


async def ws_client(path="/"):
    ws = await websockets.connect("ws://127.0.0.1:%d%s" % (WS_PORT, path), open_timeout=WAIT,
                                  close_timeout=WAIT)
    return ws, name_of(ws.local_address)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), WAIT)


async def expect(name, ws, want):
    got = await recv(ws)
    check(name, got == want, "got %r, want %r" % (got, want))


async def expect_line(name, t, want):
    got = await asyncio.wait_for(t.line(), WAIT)
    check(name, got == want, "got %r, want %r" % (got, want))


async def room():
    # Two WebSocket clients, the second on another path (an upgrade works on any).
    w1, n1 = await ws_client("/")
    w2, n2 = await ws_client("/room/any?x=1")
    await expect("ws-join-notice", w1, "* %s joined" % n2)
    t = Line()
    await expect("tcp-join-notice-to-ws1", w1, "* %s joined" % t.name)
    await expect("tcp-join-notice-to-ws2", w2, "* %s joined" % t.name)

    # A line (telnet's "\r\n") reaches both WebSocket clients as one text message.
    t.send(b"hello from tcp\r\n")
    await expect("tcp-line-to-ws1", w1, "[%s] hello from tcp" % t.name)
    await expect("tcp-line-to-ws2", w2, "[%s] hello from tcp" % t.name)

    # A text message reaches the line client as a line and the other WebSocket client.
    await w1.send("hello from ws1")
    await expect_line("ws-message-to-tcp", t, ("[%s] hello from ws1" % n1).encode())
    await expect("ws-message-to-ws2", w2, "[%s] hello from ws1" % n1)

    # Nobody hears itself: the next thing each gets is the other's marker.
    await w2.send("marker from ws2")
    await expect("ws1-not-its-own", w1, "[%s] marker from ws2" % n2)
    await expect_line("ws2-marker-to-tcp", t, ("[%s] marker from ws2" % n2).encode())
    t.send(b"marker from tcp\n")
    await expect("ws2-not-its-own", w2, "[%s] marker from tcp" % t.name)
    await expect("ws1-gets-tcp-marker", w1, "[%s] marker from tcp" % t.name)
    await w1.send("second from ws1")
    await expect_line("tcp-not-its-own", t, ("[%s] second from ws1" % n1).encode())
    await expect("ws2-gets-second", w2, "[%s] second from ws1" % n1)

    # A message with newlines is one line for line clients (no forged lines).
    await w1.send("one\n[9.9.9.9:9] forged\r\nline")
    await expect_line("newlines-blanked", t,
                      ("[%s] one [9.9.9.9:9] forged  line" % n1).encode())
    await expect("newlines-blanked-for-ws", w2, "[%s] one [9.9.9.9:9] forged  line" % n1)

    # Bytes that are not UTF-8 from a line client reach WebSocket clients as '?'
    # (the connection survives), and the line clients as they were.
    t.send(b"caf\xc3\xa9 \xff\xfe ok\n")
    await expect("bad-utf8-replaced", w1, "[%s] café ?? ok" % t.name)
    await expect("bad-utf8-replaced-ws2", w2, "[%s] café ?? ok" % t.name)

    # Leaving is announced, to both kinds.
    await w2.close()
    await expect("ws-leave-notice-to-ws1", w1, "* %s left" % n2)
    await expect_line("ws-leave-notice-to-tcp", t, ("* %s left" % n2).encode())
    t2 = Line()
    await expect("tcp2-join", w1, "* %s joined" % t2.name)
    await expect_line("tcp2-join-to-tcp", t, ("* %s joined" % t2.name).encode())
    t2.s.close()
    await expect("tcp-leave-notice-to-ws", w1, "* %s left" % t2.name)
    await expect_line("tcp-leave-notice-to-tcp", t, ("* %s left" % t2.name).encode())

    # A message over --max-line (64) closes that client with 1009, and only it.
    w3, n3 = await ws_client("/")
    await expect("ws3-join", w1, "* %s joined" % n3)
    await expect_line("ws3-join-to-tcp", t, ("* %s joined" % n3).encode())
    await w3.send("y" * 64)  # at the limit: relayed
    await expect_line("at-the-limit", t, ("[%s] %s" % (n3, "y" * 64)).encode())
    await expect("at-the-limit-ws", w1, "[%s] %s" % (n3, "y" * 64))
    await w3.send("z" * 65)
    try:
        await recv(w3)
        say("bad oversized: a message came")
    except websockets.ConnectionClosed:
        pass
    check("oversized-1009", w3.close_code == 1009, "close code %r" % w3.close_code)
    await expect("oversized-left", w1, "* %s left" % n3)
    await expect_line("oversized-left-tcp", t, ("* %s left" % n3).encode())
    t.send(b"still here\n")
    await expect("others-unaffected", w1, "[%s] still here" % t.name)

    # SIGTERM: everyone is told, WebSocket clients get 1001, line clients EOF.
    os.kill(PID, signal.SIGTERM)
    await expect("shutdown-notice-ws", w1, "* server shutting down")
    try:
        await recv(w1)
        say("bad shutdown: another message")
    except websockets.ConnectionClosed:
        pass
    check("shutdown-1001", w1.close_code == 1001, "close code %r" % w1.close_code)
    rest = await asyncio.wait_for(t.eof(), WAIT)
    check("shutdown-notice-tcp", rest == b"* server shutting down\n", "got %r" % rest)


async def slow():
    # A WebSocket client that stops reading after the 101 (a raw socket with a
    # small receive buffer) is dropped alone once --max-queue is passed; a line
    # client that reads gets every line and sees it leave.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(WAIT)
    slow.connect(("127.0.0.1", WS_PORT))
    slow_name = name_of(slow.getsockname())
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += slow.recv(1)  # byte by byte: nothing after the head is read
    check("slow-upgraded", head.startswith(b"HTTP/1.1 101"), "got %r" % head[:40])
    good = Line()
    flood = Line()
    loop = asyncio.get_running_loop()
    count = 80000  # ~10 MB to each recipient: more than the kernel buffers hold

    def read_good():
        lines, left, buf = 0, False, b""
        want_left = ("* %s left" % slow_name).encode()
        while True:
            chunk = good.s.recv(1 << 20)
            if not chunk:
                return lines, left, "eof"
            buf += chunk
            *done, buf = buf.split(b"\n")
            for line in done:
                lines += line.endswith(b"] the end") or line.endswith(b"x" * 100)
                left = left or line == want_left
                if line.endswith(b"] the end"):
                    return lines, left, ""

    good.s.settimeout(20)
    reader = loop.run_in_executor(None, read_good)
    await asyncio.sleep(0.2)

    def do_flood():
        for _ in range(count // 1000):  # in bursts a reader keeps up with
            flood.send((b"x" * 100 + b"\n") * 1000)
            time.sleep(0.005)
        flood.send(b"the end\n")

    await loop.run_in_executor(None, do_flood)
    lines, left, why = await asyncio.wait_for(reader, 25)
    check("reader-got-every-line", lines == count + 1, "%d of %d lines %s" % (lines, count + 1, why))
    check("slow-dropped", left, "no '* %s left' line" % slow_name)
    slow.close()


async def main():
    if SCENARIO == "room":
        await room()
    elif SCENARIO == "slow":
        await slow()
    else:
        say("bad scenario: unknown", SCENARIO)
    say("done")


asyncio.run(asyncio.wait_for(main(), 30))
