/* Connecting by name: Happy Eyeballs attempts behind one connection (connector.c). */
#ifndef TT_CONNECTOR_H
#define TT_CONNECTOR_H

#include "tether.h"

/* Check the local-side options of `o` against the family the connection will use
 * (AF_UNSPEC: any). Returns 0, -EINVAL, or -ENODEV (no such bind_device). */
int tt__connect_check_local(const tt_connect_opts_t *o, int family);
/* Apply them to a fresh socket: SO_BINDTODEVICE, then bind(). 0 or -errno. */
int tt__connect_bind_local(int fd, const tt_connect_opts_t *o);

#endif
