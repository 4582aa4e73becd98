// TLS peers for tests/net/test_tls*.c, on Node's tls module. One line
// "RESULT key=value ..." on stdout at the end (exit 0 when the checks passed).
//   node peer.js server --port P --cert F --key F [--tls 1.2|1.3] [--alpn a,b]
//                [--count N]      echo; print READY once listening
//   node peer.js client --port P --ca F [--servername N] [--tls ..] [--alpn ..]
//                [--bytes N]      send N random bytes in uneven pieces, check the echo
'use strict';
const tls = require('tls');
const fs = require('fs');
const crypto = require('crypto');

const PIECES = [1, 5, 300, 16384, 16385, 7, 70000, 2, 4095, 1000];
const argv = process.argv.slice(2);
const mode = argv[0];
const opt = {};
for (let i = 1; i < argv.length; i += 2) opt[argv[i].replace(/^--/, '')] = argv[i + 1];
const bytes = parseInt(opt.bytes || '100000', 10);

function result(kv) {
  console.log('RESULT ' + Object.entries(kv).map(([k, v]) => `${k}=${String(v).replace(/ /g, '_')}`).join(' '));
}

function versions(o) {
  if (opt.tls === '1.2') { o.minVersion = 'TLSv1.2'; o.maxVersion = 'TLSv1.2'; }
  if (opt.tls === '1.3') { o.minVersion = 'TLSv1.3'; o.maxVersion = 'TLSv1.3'; }
  if (opt.alpn) o.ALPNProtocols = opt.alpn.split(',');
  return o;
}

if (mode === 'server') {
  const o = versions({ cert: fs.readFileSync(opt.cert), key: fs.readFileSync(opt.key) });
  let left = parseInt(opt.count || '1', 10);
  const srv = tls.createServer(o, (s) => {
    let got = 0;
    console.log(`OPEN version=${s.getProtocol()} alpn=${s.alpnProtocol || '-'}`);
    s.on('data', (d) => { got += d.length; s.write(d); });
    s.on('end', () => { s.end(); });
    s.on('error', (e) => { console.log('ERROR ' + e.code); });
    s.on('close', () => {
      console.log(`CLOSED got=${got}`);
      if (--left === 0) { srv.close(); result({ ok: 1 }); }
    });
  });
  srv.listen(parseInt(opt.port, 10), '127.0.0.1', () => console.log('READY'));
} else if (mode === 'client') {
  const o = versions({ host: '127.0.0.1', port: parseInt(opt.port, 10),
                       servername: opt.servername || 'localhost' });
  if (opt.ca) o.ca = fs.readFileSync(opt.ca); else o.rejectUnauthorized = false;
  const data = crypto.randomBytes(bytes);
  const back = crypto.createHash('sha256');
  let got = 0, version = '-';
  const s = tls.connect(o, () => {
    version = s.getProtocol();
    let off = 0, i = 0;
    const pump = () => {
      while (off < bytes) {
        const n = PIECES[i++ % PIECES.length];
        const ok = s.write(data.subarray(off, off + n));
        off += n;
        if (!ok) { s.once('drain', pump); return; }
      }
    };
    pump();
  });
  s.on('data', (d) => {
    back.update(d);
    got += d.length;
    if (got >= bytes) s.end();
  });
  s.on('error', (e) => { result({ ok: 0, err: e.code || e.message }); process.exit(2); });
  s.on('close', () => {
    const sent = crypto.createHash('sha256').update(data).digest('hex');
    const ok = got === bytes && back.digest('hex') === sent;
    result({ ok: ok ? 1 : 0, got, version, alpn: s.alpnProtocol || '-',
             sent_sha: sent });
    process.exit(ok ? 0 : 1);
  });
}
