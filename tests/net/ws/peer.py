# A WebSocket client built on Python's websockets (Debian python3-websockets),
# driven by tests/net/test_ws.c: `peer.py PORT SCENARIO`. Prints one line per
# check ("ok NAME" or "bad NAME: why"), then "close CODE REASON" as the client
# saw the end. Every wait is bounded.
import asyncio
import os
import sys

import websockets

PORT = int(sys.argv[1])
SCENARIO = sys.argv[2]


def say(*a):
    print(*a, flush=True)


async def expect(ws, name, sent):
    got = await asyncio.wait_for(ws.recv(), 20)
    if type(got) is type(sent) and got == sent:
        say("ok", name)
    else:
        say("bad", name + ":", type(got).__name__, len(got))


async def frags(parts):
    for p in parts:
        yield p


async def interop(compression):
    url = "ws://127.0.0.1:%d/echo?x=1" % PORT
    async with websockets.connect(url, compression=compression, max_size=None,
                                  open_timeout=10, close_timeout=10) as ws:
        say("ok deflate" if (ws.extensions != []) == (compression is not None) else "bad deflate")
        await ws.send("héllo wörld")
        await expect(ws, "text", "héllo wörld")
        await ws.send(bytes(range(256)))
        await expect(ws, "binary", bytes(range(256)))
        await ws.send("")
        await expect(ws, "empty-text", "")
        await ws.send(b"")
        await expect(ws, "empty-binary", b"")
        await ws.send("compressible " * 5000)
        await expect(ws, "text-64k", "compressible " * 5000)
        big = os.urandom(8 << 20) + b"z" * (8 << 20)  # 16 MiB: the default limit
        await ws.send(big)
        await expect(ws, "binary-16MiB", big)
        await ws.send(frags(["fr", "ag", "mént", "€"]))
        await expect(ws, "fragmented-text", "fragmént€")
        await ws.send(frags([b"\x00" * 1000, b"\x01" * 70000, b"\x02"]))
        await expect(ws, "fragmented-binary", b"\x00" * 1000 + b"\x01" * 70000 + b"\x02")
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 10)
        say("ok ping")
        await ws.close(4000, "bye from python")
        say("close", ws.close_code, ws.close_reason)


async def server_close():
    async with websockets.connect("ws://127.0.0.1:%d/" % PORT, open_timeout=10) as ws:
        await ws.send("close me")
        try:
            await asyncio.wait_for(ws.recv(), 10)
            say("bad server-close: a message came")
        except websockets.ConnectionClosed:
            pass
        say("close", ws.close_code, ws.close_reason)


async def server_end():
    async with websockets.connect("ws://127.0.0.1:%d/" % PORT, open_timeout=10) as ws:
        await ws.send("end me")
        got = await asyncio.wait_for(ws.recv(), 10)
        say("ok last-words" if got == "last words" else "bad last-words: %r" % got)
        try:
            await asyncio.wait_for(ws.recv(), 10)
            say("bad server-end: another message")
        except websockets.ConnectionClosed:
            pass
        say("close", ws.close_code, ws.close_reason)


async def shutdown():
    async with websockets.connect("ws://127.0.0.1:%d/" % PORT, open_timeout=10) as ws:
        await ws.send("shut down")
        try:
            await asyncio.wait_for(ws.recv(), 10)
            say("bad shutdown: a message came")
        except websockets.ConnectionClosed:
            pass
        say("close", ws.close_code, ws.close_reason)


async def idle():
    # websockets answers the server's pings by itself: it stays alive while silent.
    async with websockets.connect("ws://127.0.0.1:%d/" % PORT, open_timeout=10,
                                  ping_interval=None) as ws:
        await asyncio.sleep(3)
        await ws.send("still here")
        got = await asyncio.wait_for(ws.recv(), 10)
        say("ok idle" if got == "still here" else "bad idle: %r" % got)
        await ws.close(1000)
        say("close", ws.close_code, ws.close_reason)


async def window10():
    # The client asks the server to compress with a 1 KiB window: repeats 5000
    # bytes apart must then be sent as literals, or this inflater fails.
    from websockets.extensions import permessage_deflate as pmd
    ext = pmd.ClientPerMessageDeflateFactory(server_max_window_bits=10)
    async with websockets.connect("ws://127.0.0.1:%d/" % PORT, extensions=[ext],
                                  compression=None, open_timeout=10, max_size=None) as ws:
        params = [e for e in ws.extensions]
        say("ok window" if params and params[0].remote_max_window_bits == 10 else "bad window")
        unit = os.urandom(2500).hex()  # 5000 characters
        text = unit * 20
        await ws.send(text)
        await expect(ws, "window10-echo", text)
        await ws.close(1000)
        say("close", ws.close_code, ws.close_reason)


async def protocol(offer):
    try:
        async with websockets.connect("ws://127.0.0.1:%d/" % PORT, subprotocols=offer.split(","),
                                      open_timeout=10) as ws:
            say("protocol", ws.subprotocol)
    except websockets.InvalidStatusCode as e:
        say("status", e.status_code)


async def main():
    if SCENARIO == "interop":
        await interop("deflate")
    elif SCENARIO == "interop-plain":
        await interop(None)
    elif SCENARIO == "server-close":
        await server_close()
    elif SCENARIO == "server-end":
        await server_end()
    elif SCENARIO == "window10":
        await window10()
    elif SCENARIO == "idle":
        await idle()
    elif SCENARIO == "shutdown":
        await shutdown()
    elif SCENARIO.startswith("protocol:"):
        await protocol(SCENARIO.split(":", 1)[1])
    else:
        say("bad scenario")


asyncio.run(asyncio.wait_for(main(), 60))
