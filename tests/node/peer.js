// A WebSocket client built on Node's ws (tests/node/package.json), driven by
// tests/net/test_ws.c: `node peer.js PORT SCENARIO`. Prints one line per check
// ("ok NAME" or "bad NAME: why"), then "close CODE REASON". Bounded in time.
'use strict';
const crypto = require('crypto');
const WebSocket = require('ws');

const port = Number(process.argv[2]);
const scenario = process.argv[3];
const say = (...a) => process.stdout.write(a.join(' ') + '\n');
setTimeout(() => { say('bad timeout'); process.exit(1); }, 60000).unref();

const ws = new WebSocket(`ws://127.0.0.1:${port}/node`, {
  perMessageDeflate: scenario === 'interop',
  maxPayload: 0,
});
const queue = [];
let waiter = null;
ws.on('message', (data, isBinary) => {
  const m = { data, isBinary };
  if (waiter) { const w = waiter; waiter = null; w(m); } else queue.push(m);
});
const next = () => new Promise((res) => {
  if (queue.length) res(queue.shift()); else waiter = res;
});

async function expect(name, sent, binary) {
  const m = await next();
  const want = Buffer.isBuffer(sent) ? sent : Buffer.from(sent, 'utf8');
  if (m.isBinary === binary && Buffer.compare(m.data, want) === 0) say('ok', name);
  else say('bad', name + ':', m.isBinary, m.data.length);
}

ws.on('close', (code, reason) => { say('close', code, reason.toString()); process.exit(0); });
ws.on('error', (e) => { say('bad error', e.message); process.exit(1); });
ws.on('open', async () => {
  say(ws.extensions ? 'ok deflate=' + (ws.extensions.length > 0) : 'ok deflate=false');
  ws.send('grüße aus node');
  await expect('text', 'grüße aus node', false);
  const bin = crypto.randomBytes(300);
  ws.send(bin);
  await expect('binary', bin, true);
  ws.send(Buffer.alloc(0), { binary: true });
  await expect('empty-binary', Buffer.alloc(0), true);
  const big = Buffer.concat([crypto.randomBytes(8 << 20), Buffer.alloc(8 << 20, 0x61)]);
  ws.send(big);
  await expect('binary-16MiB', big, true);
  ws.send('frag', { fin: false });
  ws.send('mented ✓', { fin: true });
  await expect('fragmented-text', 'fragmented ✓', false);
  ws.once('pong', (d) => say(d.toString() === 'node ping' ? 'ok ping' : 'bad ping'));
  ws.ping('node ping');
  await new Promise((r) => setTimeout(r, 200));
  ws.close(4001, 'bye from node');
});
