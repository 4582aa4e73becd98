/* Shared, reference-counted payloads for one-to-many sends. */
#ifndef TT_BROADCAST_H
#define TT_BROADCAST_H

#include <stdatomic.h>
#include <stddef.h>

#include "tether.h"

typedef struct tt__payload {
    atomic_size_t refs; /* atomic: worker loops on other threads share one payload */
    size_t len;         /* bytes held */
    size_t cap;         /* room for: more than len only in a loop's open payload */
    char data[];
} tt__payload_t;

/* A payload holding a copy of buf (buf NULL: `len` bytes for the caller to fill),
 * with one reference. NULL on ENOMEM. */
tt__payload_t *tt__payload_new(const void *buf, size_t len);
void tt__payload_ref(tt__payload_t *p);
void tt__payload_unref(tt__payload_t *p);
/* Send the payload on one connection: written at once when nothing is queued
 * there, the rest queued (a copy, or a reference taken on the payload). Returns
 * tt_send's result (0, TT_SEND_FULL or -errno). */
int tt__payload_send(tt__payload_t *p, tt_conn_t *c);
/* Queue it on every live connection of `srv` but the one with id except_id (0:
 * none; an id, not a pointer, so a caller on another thread can name it). Returns
 * how many connections took it. Runs on srv's loop. */
int tt__payload_send_server(tt__payload_t *p, tt_server_t *srv, uint64_t except_id);

/* Rooms across nodes (cluster.c): a group bound to a channel publishes each of its
 * broadcasts through `publish` after the local delivery; `unbind` is told when
 * the group closes. */
typedef struct tt__group_remote {
    void (*publish)(void *arg, const void *buf, size_t len, const tt_conn_t *except);
    void (*unbind)(void *arg);
    void *arg;
} tt__group_remote_t;
/* 0, or -EBUSY (bound already). NULL unbinds. */
int tt__group_set_remote(tt_group_t *g, const tt__group_remote_t *r);
/* The local half of tt_group_broadcast: what came from another node. */
int tt__group_deliver(tt_group_t *g, const void *buf, size_t len, const tt_conn_t *except);

#endif
