// Node ws server for the WebSocket section of bench/run.sh, written the way the ws
// documentation shows it (no per-message deflate: the load generator offers none).
//
// usage: node ws_server.js PORT echo     every message comes back with its kind
//        node ws_server.js PORT fanout   every message goes to all the other clients
//                                        (the documented broadcast loop over wss.clients)
// Listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it (exit 0).
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2]);
const mode = process.argv[3];
if (!(port > 0 && port < 65536) || (mode !== 'echo' && mode !== 'fanout')) {
  console.error('usage: node ws_server.js PORT echo|fanout');
  process.exit(2);
}
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('error', () => ws.terminate());
  if (mode === 'echo') {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  } else {
    ws.on('message', (data, isBinary) => {
      for (const client of wss.clients) {
        if (client !== ws && client.readyState === WebSocket.OPEN) {
          client.send(data, { binary: isBinary });
        }
      }
    });
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
