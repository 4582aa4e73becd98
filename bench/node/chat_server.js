// Node `net` chat server for the fan-out benchmark: every line a client sends goes
// to every other client as it is, one Buffer per line shared by every socket.write;
// a receiver whose queue (writableLength) would pass 4 MiB is destroyed.
//
// usage: node chat_server.js PORT   listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it.
'use strict';
const net = require('net');

const QUEUE_CAP = 4 << 20;
const LINE_MAX = 8192;
const clients = new Set();

function broadcast(from, line) {
  for (const c of clients) {
    if (c === from) continue;
    if (c.writableLength + line.length > QUEUE_CAP) {
      clients.delete(c);
      c.destroy();
      continue;
    }
    c.write(line);
  }
}

const server = net.createServer({ noDelay: true }, (sock) => {
  let part = null;
  sock.setNoDelay(true);
  clients.add(sock);
  sock.on('data', (chunk) => {
    let buf = part ? Buffer.concat([part, chunk]) : chunk;
    let at = 0;
    for (;;) {
      const nl = buf.indexOf(10, at);
      if (nl < 0) break;
      // a view: each read is a fresh Buffer, never reused by Node
      broadcast(sock, buf.subarray(at, nl + 1));
      at = nl + 1;
    }
    part = at < buf.length ? Buffer.from(buf.subarray(at)) : null;
    if (part && part.length > LINE_MAX) sock.destroy();
  });
  const gone = () => clients.delete(sock);
  sock.on('close', gone);
  sock.on('error', gone);
});

server.listen(Number(process.argv[2]), '127.0.0.1');
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(0));
