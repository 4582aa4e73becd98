/* TLS under a stream connection (OpenSSL 3): the transform between the socket
 * and framing, liveness and the app. See tls.c and docs/tls.md. */
#ifndef TT_TLS_H
#define TT_TLS_H

#include "stream/conn.h"

/* Put TLS on `c` (not yet open: an accepted or connecting socket) with `ctx`'s
 * role. `servername`: a client's SNI and verified name (NULL: none); `ip`: a
 * client's numeric peer address, verified against the certificate's IP
 * addresses when there is no name. on_open waits for the handshake. 0 or -errno. */
int tt__tls_apply(tt_conn_t *c, tt_tls_ctx_t *ctx, const char *servername, const char *ip,
                  uint64_t handshake_timeout_ms);
/* References for the holders of a context (servers, clients, connections). */
tt_tls_ctx_t *tt__tls_ctx_ref(tt_tls_ctx_t *ctx);
bool tt__tls_ctx_is_server(const tt_tls_ctx_t *ctx);
bool tt__tls_ctx_insecure(const tt_tls_ctx_t *ctx);

#endif
