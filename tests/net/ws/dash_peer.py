# The feed of `tether echo --dashboard` read by Python's websockets (Debian
# python3-websockets), driven by tests/net/test_dashboard.c:
# `dash_peer.py ECHO_PORT DASH_PORT TOKEN` (TOKEN "-" for none). Prints "ok NAME"
# or "bad NAME: why" per check, "done" at the end. Every wait is bounded.
import asyncio
import json
import socket
import sys

import websockets

ECHO_PORT, DASH_PORT, TOKEN = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
WAIT = 5


def say(*a):
    print(*a, flush=True)


def check(name, cond, why=""):
    say("ok " + name if cond else "bad %s: %s" % (name, why))


async def next_of(ws, kind, pred=lambda m: True):
    """The next message of this kind that pred accepts (others are skipped)."""
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if m.get("t") == kind and pred(m):
            return m


async def main():
    q = "" if TOKEN == "-" else "?token=" + TOKEN
    if TOKEN != "-":
        try:
            async with websockets.connect("ws://127.0.0.1:%d/feed" % DASH_PORT):
                check("no-token-refused", False, "accepted without the token")
        except websockets.exceptions.InvalidStatusCode as e:
            check("no-token-refused", e.status_code == 403, "status %d" % e.status_code)
        try:
            async with websockets.connect("ws://127.0.0.1:%d/feed?token=x%s" % (DASH_PORT, TOKEN)):
                check("wrong-token-refused", False, "accepted with a wrong token")
        except websockets.exceptions.InvalidStatusCode as e:
            check("wrong-token-refused", e.status_code == 403, "status %d" % e.status_code)
    async with websockets.connect("ws://127.0.0.1:%d/feed%s" % (DASH_PORT, q)) as ws:
        first = await next_of(ws, "tick")
        check("first-tick", first["rows"] == [] and first["totals"]["open"] == 0, str(first))
        s = socket.create_connection(("127.0.0.1", ECHO_PORT), timeout=WAIT)
        me = "127.0.0.1:%d" % s.getsockname()[1]
        opened = await next_of(ws, "open")
        row = opened["row"]
        check("open-row", row["peer"] == me, "%s, want peer %s" % (opened, me))
        s.sendall(b"hello dashboard\n")
        got = b""
        while len(got) < 16:
            got += s.recv(100)
        tick = await next_of(ws, "tick", lambda m: any(r["id"] == row["id"] for r in m["rows"]))
        r = [r for r in tick["rows"] if r["id"] == row["id"]][0]
        check("tick-row", r["bytes_in"] == 16 and r["bytes_out"] == 16 and r["state"] == "open"
              and r["pkts_in"] >= 1, str(r))
        check("tick-totals", tick["totals"]["open"] == 1 and tick["totals"]["accepted"] == 1,
              str(tick["totals"]))
        s.close()
        closed = await next_of(ws, "close")
        check("close", closed["id"] == row["id"] and closed["bytes_in"] == 16
              and closed["kind"] == "peer closed", str(closed))
        tick = await next_of(ws, "tick")
        check("row-gone", tick["rows"] == [] and tick["totals"]["open"] == 0, str(tick))
    say("done")


asyncio.run(main())
