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

/* Observers of a server's connections (the operations layer's follow feed): told
 * when an accepted connection joins the server and when it leaves it (at the
 * start of its close, before on_close, while its figures and close kind can
 * still be read; not when the server closes and its connections live on). The
 * server holds the node, not a copy; unregister before the server closes.
 * Callbacks must not close the server, nor register or unregister observers. */
typedef struct tt__srv_obs {
    void (*opened)(struct tt__srv_obs *o, tt_conn_t *c);
    void (*closed)(struct tt__srv_obs *o, tt_conn_t *c);
    struct tt__srv_obs *next;
} tt__srv_obs_t;
void tt__server_observe(tt_server_t *srv, tt__srv_obs_t *o);
void tt__server_unobserve(tt_server_t *srv, tt__srv_obs_t *o);

#endif
