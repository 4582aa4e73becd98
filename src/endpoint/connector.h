/* Connecting by name: Happy Eyeballs attempts behind one connection (connector.c). */
#ifndef TT_CONNECTOR_H
#define TT_CONNECTOR_H

#include "tether.h"

/* Check the local-side options of `o` against the family the connection will use
 * (AF_UNSPEC: any). Returns 0, -EINVAL, or -ENODEV (no such bind_device). */
int tt__connect_check_local(const tt_connect_opts_t *o, int family);
/* A client socket ready for connect() to `to`: the audit hook asked (connect, and
 * bind when o->bind_addr is set), non-blocking, TCP_NODELAY, SO_BINDTODEVICE and
 * bind() applied. Returns the fd, or the hook's veto / -errno (nothing left open). */
int tt__connect_socket(tt_loop_t *loop, const tt_addr_t *to, const tt_connect_opts_t *o);

/* TLS options of `o` that can be checked before a connection exists: 0 or -EINVAL
 * (a server context; nothing to verify against: no name, no numeric address,
 * and verification on). `host` is the name connected to, or NULL. */
int tt__connect_tls_check(const tt_connect_opts_t *o, const char *host, const tt_addr_t *addr);
/* Put TLS on a client connection not yet connected (when o->tls is set): the
 * name is tls_servername, else `host`; without either, `addr` is verified.
 * 0 or -errno. */
struct tt_conn;
int tt__connect_tls(struct tt_conn *c, const tt_connect_opts_t *o, const char *host,
                    const tt_addr_t *addr);

struct tt__ws_cfg;
/* The connect options cfg's scheme needs (ws_client.c): for ws:// none (-EINVAL
 * when `co` asks for TLS); for wss:// TLS, with co->tls set to a context made
 * here (*made, the caller's to free) when the caller gave none. 0 or -errno. */
int tt__ws_transport(const struct tt__ws_cfg *cfg, tt_connect_opts_t *co, tt_tls_ctx_t **made);
/* A WebSocket client connection to cfg's URL (ws_client.c): tt_connect_host with
 * `copts` (NULL: defaults), then the upgrade. Returns as tt_ws_connect. */
int tt__ws_connect_cfg(tt_loop_t *loop, struct tt__ws_cfg *cfg, const tt_connect_opts_t *copts,
                       const tt_conn_handlers_t *h, void *data, tt_conn_t **out);

#endif
