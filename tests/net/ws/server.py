# A WebSocket server built on Python's websockets (Debian python3-websockets),
# for tests/net/test_ws_client.c: `server.py [deflate|plain]`. Prints
# "port N" once listening, then serves until killed. Every connection echoes
# each message with its kind, except:
#   "frag"       -> a text message sent in four fragments ("fragmént€!")
#   "frag-bin"   -> a binary message in three fragments (1000 + 70000 + 1 bytes)
#   "ping me"    -> a ping; once its pong is back, the text "pong came"
#   "close me"   -> close 4001 "bye from python"
#   "proto?"     -> the subprotocol agreed, as text ("" for none)
import asyncio
import sys

import websockets

COMPRESSION = "deflate" if len(sys.argv) < 2 or sys.argv[1] == "deflate" else None


async def parts(items):
    for p in items:
        yield p


async def handler(ws, path=None):
    try:
        await serve_one(ws)
    except websockets.ConnectionClosed:
        pass  # a close with a code other than 1000 ends the loop this way


async def serve_one(ws):
    async for msg in ws:
        if msg == "frag":
            await ws.send(parts(["fr", "ag", "mént", "€!"]))
        elif msg == "frag-bin":
            await ws.send(parts([b"\x00" * 1000, b"\x01" * 70000, b"\x02"]))
        elif msg == "ping me":
            pong = await ws.ping(b"python ping")
            await asyncio.wait_for(pong, 10)
            await ws.send("pong came")
        elif msg == "close me":
            await ws.close(4001, "bye from python")
        elif msg == "proto?":
            await ws.send(ws.subprotocol or "")
        else:
            await ws.send(msg)


async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, compression=COMPRESSION,
                                max_size=None, subprotocols=["superchat", "chat"]) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        print("port", port, flush=True)
        await asyncio.Future()


asyncio.run(main())
