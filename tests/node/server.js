// A WebSocket server built on Node's ws (tests/node/package.json), for
// tests/net/test_ws_client.c: `node server.js [deflate|plain]`. Prints "port N"
// once listening, then serves until killed. Echoes each message with its kind,
// except "frag" (a text message in two fragments), "ping me" (a ping, then the
// text "pong came" once the pong is back), "close me" (close 4002 "bye from node")
// and "proto?" (the subprotocol agreed, as text).
'use strict';
const WebSocket = require('ws');

const deflate = process.argv[2] !== 'plain';
const wss = new WebSocket.WebSocketServer({
  host: '127.0.0.1', port: 0, perMessageDeflate: deflate, maxPayload: 0,
  handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false),
});
wss.on('listening', () => process.stdout.write(`port ${wss.address().port}\n`));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? null : data.toString();
    if (text === 'frag') {
      ws.send('frag', { fin: false });
      ws.send('mented ✓', { fin: true });
    } else if (text === 'ping me') {
      ws.once('pong', () => ws.send('pong came'));
      ws.ping('node ping');
    } else if (text === 'close me') {
      ws.close(4002, 'bye from node');
    } else if (text === 'proto?') {
      ws.send(ws.protocol);
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});
