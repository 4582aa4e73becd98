// Node.js TLS echo server: tls.createServer, each socket piped back into itself
// (pipe() is Node's own backpressure: reading pauses while a write is pending).
// Pinned as the bench pins every server: TLS 1.3 only, the cipher suite
// TLS_AES_128_GCM_SHA256, the group X25519; Node's default session tickets.
//
// usage: node echo_tls_node.js PORT CERT KEY   listens on 127.0.0.1:PORT;
// SIGINT/SIGTERM end it (exit 0).
'use strict';
const fs = require('fs');
const tls = require('tls');

const [port, certFile, keyFile] = process.argv.slice(2);
if (!port || !certFile || !keyFile) {
    process.stderr.write('usage: node echo_tls_node.js PORT CERT KEY\n');
    process.exit(2);
}

const server = tls.createServer({
    cert: fs.readFileSync(certFile),
    key: fs.readFileSync(keyFile),
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ciphersuites: 'TLS_AES_128_GCM_SHA256',
    ecdhCurve: 'X25519',
}, (sock) => {
    sock.setNoDelay(true);
    sock.on('error', () => sock.destroy());
    sock.pipe(sock);
});
// A handshake that fails closes that socket only.
server.on('tlsClientError', () => {});
server.listen(Number(port), '127.0.0.1');

for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => process.exit(0));
}
