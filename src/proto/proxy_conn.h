/* The PROXY protocol on a connection (proxy_conn.c): a server's connections read
 * the header before any layer sees a byte; a client's write one first. The
 * header itself is parsed and built by proxy.c. */
#ifndef TT_PROXY_CONN_H
#define TT_PROXY_CONN_H

#include "tether.h"

/* Admission of the client a header named (or of the socket's own peer when it
 * named none): the server's allow/deny lists, audit hook and per-address cap.
 * 0 to keep it; else the connection is reset and closed with that error. */
typedef int (*tt__proxy_admit_fn)(tt_conn_t *c, const tt_addr_t *peer);

/* 0 for a known mode, -EINVAL otherwise. */
int tt__proxy_check_mode(tt_proxy_mode_t mode);
/* Read a header on an accepted connection before on_open (which then waits for
 * it), within timeout_ms (0: the default). 0 or -ENOMEM. */
int tt__proxy_apply(tt_conn_t *c, tt_proxy_mode_t mode, uint64_t timeout_ms,
                    tt__proxy_admit_fn admit);
/* Check a client's options: 0, -EINVAL, -EOPNOTSUPP (to a Unix address). */
int tt__proxy_client_check(const tt_connect_opts_t *o, const tt_addr_t *to);
/* Make a client connection send its header once connected (o->send_proxy set).
 * 0 or -ENOMEM. */
int tt__proxy_client_apply(tt_conn_t *c, const tt_connect_opts_t *o);

#endif
