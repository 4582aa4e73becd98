/* Server internals shared with the multi-loop layer (workers.c). */
#ifndef TT_SERVER_H
#define TT_SERVER_H

#include "tether.h"

/* Acceptor mode: called with each accepted, admitted socket instead of making a
 * connection on this loop. The callee owns fd. */
typedef void (*tt__handoff_cb)(tt_server_t *srv, int fd, const tt_addr_t *peer, void *arg);
void tt__server_set_handoff(tt_server_t *srv, tt__handoff_cb cb, void *arg);
/* A server with no listener of its own, reporting `addr` as its address. */
int tt__server_new_adopting(tt_loop_t *loop, const tt_addr_t *addr, const tt_server_opts_t *o,
                            const tt_conn_handlers_t *h, void *data, tt_server_t **out);
/* Make a connection of `srv` from a socket accepted on another loop. Takes fd.
 * 0, -ESHUTDOWN, -ENOMEM. Must run on srv's loop. */
int tt__server_adopt(tt_server_t *srv, int fd, const tt_addr_t *peer);

#endif
