/* The loop's private state, shared by the files of the layers above it. */
#ifndef TT_LOOP_H
#define TT_LOOP_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/freelist.h"
#include "core/poller.h"
#include "tether.h"
#include "core/timer_wheel.h"

#define tt__container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Something freed at the end of the round, after every event of the round that
 * might still point at it has been dispatched. */
typedef struct tt__zombie tt__zombie_t;
struct tt__zombie {
    tt__zombie_t *next;
    void (*free_fn)(tt__zombie_t *z);
};

typedef struct tt__post tt__post_t;

/* Deferred work of handles other than connections (UDP sockets): the owner embeds
 * the task, queues it, and the loop calls fn in the next round's pending phase. */
typedef struct tt__task tt__task_t;
struct tt__task {
    tt__task_t *next;
    void (*fn)(tt__task_t *t);
    int queued; /* on the loop's list: queueing again does nothing */
};

struct tt_loop {
    tt__poller_t poller;
    uint64_t now;        /* cached CLOCK_MONOTONIC ms */
    int running;
    atomic_int stop;     /* set by tt_loop_stop(), from any thread or a signal */
    int wake_fd;         /* eventfd: posts and stop wake the poller */
    tt__io_own_t wake_io;
    atomic_int wake_pending; /* a wake-up write is outstanding: skip further writes */

    pthread_mutex_t post_mu;
    tt__post_t *post_head, *post_tail;
    atomic_size_t posts; /* queued posts: they keep the loop alive */

    size_t handles; /* open handles: timers, connections, servers */
    size_t active;  /* connections and servers that keep the loop running */

    tt_conn_t *pend_head, *pend_tail; /* connections with deferred work */
    /* While a message is delivered: the bytes behind it in the same read (0: none;
     * proto/frame.c, proto/ws.c). A broadcast then queues on every recipient, so
     * that the read's messages reach each one in a single write at the end of the
     * round, instead of a write per message per recipient, and sizes a small
     * message's copy for the rest to join it (ops/broadcast.c). */
    size_t more_input;
    tt__zombie_t *zombies;
    tt__task_t *task_head, *task_tail; /* deferred work of other handles */

    tt_audit_cb audit; /* admission hook: called before connect/bind/accept/send-to */
    void *audit_arg;

    void *signals;                         /* signal.c: created by the first signal watch */
    void (*signals_free)(tt_loop_t *loop); /* set with it; called by tt_loop_close */

    void *resolver;                         /* resolver.c: created by the first lookup */
    void (*resolver_free)(tt_loop_t *loop); /* set with it; called by tt_loop_close */

    void *tls;                         /* tls.c: its buffers, made by the first TLS connection */
    void (*tls_free)(tt_loop_t *loop); /* set with it; called by tt_loop_close */

    void *bcast_open;                    /* broadcast.c: the payload a read's broadcasts share */
    void (*bcast_free)(tt_loop_t *loop); /* set with it; called by tt_loop_close */

    void *conn_free;  /* pool: free connection objects */
    void *conn_slabs; /* pool: slabs to release at close */
    tt__freelist_t out_free; /* pool: free send states of connections (stream/conn.c) */
    tt__freelist_t sqe_free; /* pool: free send-queue entry nodes (stream/sendq.c) */
    /* Set by the stream layer with its first connection: the loop calls down to
     * nothing above it, it runs what was registered. */
    void (*conns_run_pending)(tt_loop_t *loop); /* the pending phase of connections */
    void (*conns_release)(tt_loop_t *loop);     /* frees the connection pool at close */

    tt__wheel_t wheel; /* last: it is large (16 KiB of list heads) */
};

/* Deadline for a library timeout (connect, linger, shutdown, ...): from a fresh
 * clock rather than the round's cached time, plus one tick for the truncation to
 * whole milliseconds, so such a timeout never fires early. */
static inline uint64_t tt__loop_deadline(const tt_loop_t *loop, uint64_t ms)
{
    (void)loop;
    return tt__clock_ms() + ms + 1;
}
/* Run the loop's audit hook, if any: 0 to go on, or the hook's negative errno. */
int tt__audit(tt_loop_t *loop, int event, const tt_addr_t *addr);
void tt__loop_defer_free(tt_loop_t *loop, tt__zombie_t *z);
/* A handle that keeps the loop running while it is both active and referenced
 * (watches, signal watches: uv_ref semantics) went from `was` to `now`. */
static inline void tt__loop_keepalive(tt_loop_t *loop, bool was, bool now)
{
    if (was && !now)
        loop->active--;
    else if (!was && now)
        loop->active++;
}
/* Queue `t` for the next pending phase (once, however often it is queued). */
void tt__loop_defer(tt_loop_t *loop, tt__task_t *t);

#endif
