# The WebSocket section of scripts/demo.sh: a Python websockets client (Debian
# python3-websockets) talks to `tether echo --ws`. Usage: demo_ws.py PORT.
# Prints what it sends and gets; exits non-zero if an echo differs.
import asyncio
import hashlib
import os
import sys

import websockets


async def main(port):
    url = "ws://127.0.0.1:%d/" % port
    async with websockets.connect(url, max_size=None, open_timeout=5, close_timeout=5) as ws:
        print("  connected to %s, permessage-deflate: %s" % (url, "on" if ws.extensions else "off"))
        await ws.send("hello, tether")
        got = await asyncio.wait_for(ws.recv(), 5)
        print("  text   sent 'hello, tether', got back %s %r" % (type(got).__name__, got))
        ok = got == "hello, tether"
        blob = os.urandom(1 << 19) + b"tether " * 75000
        await ws.send(blob)
        got = await asyncio.wait_for(ws.recv(), 5)
        digest = lambda b: hashlib.sha256(b).hexdigest()[:16]
        print("  binary sent %d bytes sha256 %s" % (len(blob), digest(blob)))
        print("         got  %d bytes sha256 %s (%s)" % (len(got), digest(got), type(got).__name__))
        ok = ok and got == blob
        await ws.close(1000, "done")
        print("  closed: code %d" % ws.close_code)
    return 0 if ok else 1


sys.exit(asyncio.run(main(int(sys.argv[1]))))
