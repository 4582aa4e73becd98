/* WebSocket on a connection (ws.c): what the server, framing and broadcast layers
 * ask beyond the public API. The pure pieces it is built from are ws_frame.h,
 * ws_handshake.h, ws_deflate.h and http.h. */
#ifndef TT_WS_H
#define TT_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "stream/conn.h"
#include "tether.h"

struct tt__ws_cfg;

/* Servers keep compiled options and apply them to every accepted connection. */
/* 0 when `o` is NULL or valid; -EINVAL otherwise. */
int tt__ws_check(const tt_ws_opts_t *o);
/* Compile `o` into *out (NULL when o is NULL). 0, -EINVAL or -ENOMEM. */
int tt__ws_cfg_new(struct tt__ws_cfg **out, const tt_ws_opts_t *o);
void tt__ws_cfg_free(struct tt__ws_cfg *cfg);
/* Make an accepted connection read its HTTP request first (before on_open,
 * which then waits for the 101). 0 or -ENOMEM. */
int tt__ws_apply(tt_conn_t *c, struct tt__ws_cfg *cfg);

/* Clients (endpoint/ws_client.c): options compiled once per tt_ws_connect or
 * per reconnecting client, applied to each connection. */
/* Compile `url` and `o` (NULL: defaults). 0, -EINVAL (a bad URL or option),
 * -ENOMEM. wss:// URLs compile (secure is then set): the caller decides. */
int tt__ws_client_cfg_new(struct tt__ws_cfg **out, const char *url, const tt_ws_client_opts_t *o);
/* The URL's host (a name or a numeric address, lent), port, and scheme. */
const char *tt__ws_cfg_host(const struct tt__ws_cfg *cfg, uint16_t *port, bool *secure);
/* Make a connection just returned by tt_connect_host a WebSocket client: the
 * upgrade request (a fresh key) is queued, to go out when the stream opens;
 * on_open waits for a valid 101; the handshake timer runs from now. 0, -ENOMEM,
 * -EIO (no random key), or tt_send's error. */
int tt__ws_client_apply(tt_conn_t *c, struct tt__ws_cfg *cfg);

/* Is WebSocket on for `c` (handshake done or not)? */
static inline bool tt__ws_on(const tt_conn_t *c)
{
    return c != NULL && c->ext != NULL && c->ext->ws != NULL; /* a broadcast asks per recipient */
}
/* Framing's message calls on a WebSocket connection: a message of the default
 * kind, gathered from iov; a ping. As tt_send_messagev / tt_send_ping. */
int tt__ws_send_messagev(tt_conn_t *c, const struct iovec *iov, int iovcnt);
int tt__ws_send_ping(tt_conn_t *c);
/* For broadcasts: the frame header of an uncompressed message of `len` bytes of
 * the default kind, the same for every connection with the same key (a
 * server-to-client frame is not masked). -ENOTCONN before the 101 or after our
 * close frame. The key tells the kind and whether (and with which window) the
 * connection compresses. */
const void *tt__ws_shared_key(const tt_conn_t *c);
int tt__ws_wrap(const tt_conn_t *c, size_t len, unsigned char *hdr, size_t *hlen);
/* The same, compressed when deflate was agreed and it pays: *zout (malloc'd, the
 * caller frees it) then holds the payload to send instead of msg, *zlen bytes;
 * NULL when msg goes as it is. Connections with the same key get the same bytes
 * (no context takeover: each message is compressed on its own). */
int tt__ws_wrap_msg(const tt_conn_t *c, const void *msg, size_t len, unsigned char *hdr,
                    size_t *hlen, void **zout, size_t *zlen);

#endif
