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

#endif
