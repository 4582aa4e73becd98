/* TCP connection: state machine, read path, write path and close reasons.
 *
 * Lifecycle: CONNECTING (clients) -> OPEN -> [READ_CLOSED | WRITE_CLOSING |
 * WRITE_CLOSED] -> CLOSING -> CLOSED. The half-close states are derived from
 * flags (which FIN went which way); only CONNECTING, OPEN, CLOSING and CLOSED are
 * stored. Closing is two-step: tt__conn_close() takes the socket out of the poller
 * at once, and the loop's pending phase reads the kernel's delivery figures,
 * closes the fd, releases the queue and delivers on_error/on_close exactly once.
 * That keeps every user callback out of API calls and lets any callback destroy
 * the connection it is called about.
 *
 * On io_uring a broadcast to a connection with nothing queued is not written in
 * the call: it is queued, and the pending phase's flush makes it a send request
 * (tt__io_send_async) instead of a write, so that the requests of all the
 * receivers reach the kernel in the loop's one submission: a broadcast to N
 * receivers costs a system call, not N. The bytes stay queued until the
 * completion says how many went (c->io.send_out meanwhile: nothing else writes,
 * the flush waits, and a close is finished only once the kernel is done with the
 * bytes). Other flushes (a backlog, the replies to a read of many messages) stay
 * direct writes: made requests too, they measured slower in the fan-out bench
 * (bench/run.sh, window 16: the sender's lines came in smaller reads, so more
 * sends of fewer lines each). */
#include "stream/conn.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

#include "sys/sock.h"

#define F_READING 0x0001      /* the app wants data (read_start) */
#define F_HWM 0x0002          /* queue reached the high-water mark: drain owed */
#define F_WANT_END 0x0004     /* tt_end: shutdown(SHUT_WR) once the queue is empty */
#define F_WR_SHUT 0x0008      /* our FIN is sent */
#define F_RD_EOF 0x0010       /* the peer's FIN arrived */
#define F_DESTROY_SOON 0x0020 /* close once the queue is empty */
#define F_HALF_OPEN 0x0040    /* the app ends its side itself after the peer's FIN */
#define F_WAIT_WRITE 0x0080   /* the socket is full: waiting for WRITABLE */
#define F_LISTED 0x0100       /* on the loop's pending list */
#define F_PEND_FLUSH 0x0200   /* pending: write what was queued this round */
#define F_PEND_CLOSE 0x0400   /* pending: deliver the close */
#define F_PEND_OPEN 0x0800    /* pending: connect succeeded at once */
#define F_RESET 0x1000        /* close with RST */
#define F_ENDED_FIRST 0x2000  /* tt_end came before the peer's FIN */
#define F_STREAM_WAIT 0x4000  /* the head stream source has no data yet */
#define F_FLUSHING 0x8000     /* inside flush(): no re-entry */
#define F_PEND_READ 0x10000   /* pending: reading restarted, held input to deliver */
#define F_EOF_HELD 0x20000    /* the peer's FIN came behind held input: not yet acted on */
#define F_CORK 0x40000        /* delivering one read's messages: sends queue, one write after */
#define F_UNIX 0x80000        /* a Unix domain socket: no TCP options */
#define F_WIRE_HOLD 0x100000  /* the transform's handshake: app bytes wait queued */
#define F_WIRE_ENDED 0x200000 /* the transform's own end (close_notify) is written */
#define F_OWN_LIMITS 0x400000 /* limits of its own, in c->out->lim (which stays) */
/* 0x800000: TT__F_SERVED (conn.h) */
#define F_SEND_BATCH 0x1000000 /* io_uring: a broadcast queued on an empty queue: the next
                                  flush is a send request, submitted with the others */
#define F_FLUSH_LATE 0x2000000 /* a broadcast queued behind more input: flush after one
                                  more poll (tt__conn_flush_late) */
#define F_FLUSH_WAITED 0x4000000 /* ... that poll is being waited for: no second delay */

/* While corked, a send at least this large with nothing queued is still written at
 * once: copying it would cost more than the system call it saves. */
#define CORK_DIRECT_MIN 16384

#define IOV_BATCH 64
#define FILE_CHUNK ((size_t)1 << 30)

static atomic_uint_fast64_t next_id = 1;

/* ---- handlers -------------------------------------------------------------- */

tt__handlers_t *tt__handlers_new(const tt_conn_handlers_t *h)
{
    tt__handlers_t *hs = malloc(sizeof(*hs));
    if (hs == NULL)
        return NULL;
    if (h != NULL)
        hs->h = *h;
    else
        memset(&hs->h, 0, sizeof(hs->h));
    hs->refs = 1;
    hs->lim.high_water = TT_DEFAULT_HIGH_WATER;
    hs->lim.queue_cap_kib = TT_DEFAULT_QUEUE_CAP / 1024;
    hs->lim.linger_ms = TT_DEFAULT_LINGER_MS;
    hs->server = NULL;
    return hs;
}

/* A mark and a cap (in bytes; 0 or SIZE_MAX: no cap) as stored, checked. */
static int limits_make(tt__limits_t *l, size_t high_water, size_t queue_cap)
{
    size_t kib = (queue_cap == 0 || queue_cap == SIZE_MAX) ? 0 : (queue_cap + 1023) / 1024;
    if (high_water == 0 || high_water > UINT32_MAX || kib > UINT32_MAX ||
        (kib != 0 && high_water > queue_cap))
        return -EINVAL;
    l->high_water = (uint32_t)high_water;
    l->queue_cap_kib = (uint32_t)kib; /* in KiB, rounded up: a small handle */
    return 0;
}

int tt__handlers_set_limits(tt__handlers_t *hs, size_t high_water, size_t queue_cap)
{
    tt__limits_t l = hs->lim;
    int err = limits_make(&l, high_water, queue_cap);
    if (err == 0)
        hs->lim = l;
    return err;
}

void tt__handlers_unref(tt__handlers_t *hs)
{
    if (hs != NULL && --hs->refs == 0)
        free(hs);
}

/* ---- pool: connections come from per-loop slabs ---------------------------- */

/* Send states come from a per-loop free list, kept short: a burst of busy
 * connections does not pin its memory after it is over. */
#define OUT_FREE_MAX 256
/* Send-queue entry nodes (56 bytes) kept for reuse: a broadcast takes one per
 * recipient per message and gives it back when that recipient's write took it.
 * 1024 of them (64 KiB) stay in cache, where a reused node is cheaper than
 * malloc's; a pool that grew with the connections was slower at 1000 receivers
 * (bench/ANALYSIS.md), its nodes reused cold and scattered over a megabyte. */
#define SQE_FREE_MAX 1024

typedef union pool_item {
    union pool_item *next_free;
    tt_conn_t conn;
} pool_item_t;

/* A slab is TT__CONN_SLAB_BYTES long and as aligned, its head first: a
 * connection finds its loop there (tt__conn_loop) instead of keeping a pointer.
 * Connections are carved from the newest slab as they are needed, so a slab's
 * pages are touched (and resident) only as far as it has been used. */
#define SLAB_CONNS ((TT__CONN_SLAB_BYTES - sizeof(tt__conn_slab_head_t)) / sizeof(pool_item_t))

typedef struct slab {
    tt__conn_slab_head_t head;
    pool_item_t items[SLAB_CONNS];
} slab_t;

_Static_assert(sizeof(slab_t) <= TT__CONN_SLAB_BYTES, "a slab fits its alignment");

static void io_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending);

static tt_conn_t *pool_get(tt_loop_t *loop)
{
    pool_item_t *it = loop->conn_free;
    if (it != NULL) {
        loop->conn_free = it->next_free;
        return &it->conn;
    }
    slab_t *s = loop->conn_slabs;
    if (s == NULL || s->head.used == SLAB_CONNS) {
        s = aligned_alloc(TT__CONN_SLAB_BYTES, TT__CONN_SLAB_BYTES);
        if (s == NULL)
            return NULL;
        s->head.next = loop->conn_slabs;
        s->head.loop = loop;
        s->head.used = 0;
        loop->conn_slabs = s;
        loop->conns_run_pending = tt__conn_run_pending;
        loop->conns_release = tt__conn_pool_release;
        loop->out_free.max = OUT_FREE_MAX;
        loop->sqe_free.max = SQE_FREE_MAX;
        loop->poller.stream_cb = io_cb; /* every connection's events */
    }
    return &s->items[s->head.used++].conn;
}

static void pool_put(tt_loop_t *loop, tt_conn_t *c)
{
    pool_item_t *it = (pool_item_t *)c;
    it->next_free = loop->conn_free;
    loop->conn_free = it;
}

void tt__conn_pool_release(tt_loop_t *loop)
{
    slab_t *s = loop->conn_slabs;
    while (s != NULL) {
        slab_t *next = s->head.next;
        free(s);
        s = next;
    }
    loop->conn_slabs = loop->conn_free = NULL;
    tt__freelist_drain(&loop->out_free);
    tt__freelist_drain(&loop->sqe_free);
}

static void deadline_cb(tt__wnode_t *node);

tt__sendq_t *tt__conn_queue(tt_conn_t *c)
{
    tt__conn_out_t *o = c->out;
    tt_loop_t *loop;

    if (o != NULL)
        return &o->sq;
    loop = tt__conn_loop(c);
    if ((o = tt__freelist_get(&loop->out_free, sizeof(*o))) == NULL)
        return NULL;
    tt__sendq_init(&o->sq, &loop->sqe_free);
    tt__wnode_init(&o->deadline, deadline_cb);
    o->conn = c;
    o->dropped = 0;
    c->out = o;
    return &o->sq;
}

/* The send state once nothing needs it. */
static void out_drop(tt_conn_t *c)
{
    tt__conn_out_t *o = c->out;
    tt_loop_t *loop = tt__conn_loop(c);

    c->out = NULL;
    tt__freelist_put(&loop->out_free, o);
}

/* Give the send state back when the queue is empty and no deadline runs (nor
 * can start: an end asked for restarts the linger on each write), unless it
 * holds the connection's own limits. */
static void out_release(tt_conn_t *c)
{
    if (c->out != NULL && tt__sendq_empty(&c->out->sq) && !tt__wnode_active(&c->out->deadline) &&
        c->state == TT_STATE_OPEN && !(c->flags & (F_WANT_END | F_FLUSHING | F_OWN_LIMITS)))
        out_drop(c);
}

static inline const tt__limits_t *limits(const tt_conn_t *c)
{
    return (c->flags & F_OWN_LIMITS) ? &c->out->lim : &c->h->lim;
}

/* The connection's own limits from now on: 0, or -ENOMEM. */
static int limits_own(tt_conn_t *c, const tt__limits_t *l)
{
    if (tt__conn_queue(c) == NULL)
        return -ENOMEM;
    c->out->lim = *l;
    c->flags |= F_OWN_LIMITS;
    return 0;
}

int tt__conn_deadline_start(tt_conn_t *c, uint64_t ms)
{
    tt_loop_t *loop = tt__conn_loop(c);

    if (tt__conn_queue(c) == NULL)
        return -ENOMEM;
    tt__wheel_start(&loop->wheel, &c->out->deadline, tt__loop_deadline(loop, ms));
    return 0;
}

static void deadline_stop(tt_conn_t *c)
{
    if (c->out != NULL)
        tt__wheel_stop(&tt__conn_loop(c)->wheel, &c->out->deadline);
}

/* ---- small helpers ---------------------------------------------------------- */

static void io_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending);
static void sent(tt_conn_t *c, ssize_t r, size_t want);
static void flush(tt_conn_t *c, bool from_loop);
static void linger_restart(tt_conn_t *c);
static bool cork(tt_conn_t *c);
static void uncork(tt_conn_t *c, bool corked);

tt__conn_ext_t *tt__conn_ext(tt_conn_t *c)
{
    if (c->ext == NULL)
        c->ext = calloc(1, sizeof(*c->ext));
    return c->ext;
}

static void schedule(tt_conn_t *c, uint32_t what)
{
    c->flags |= what;
    if (c->flags & F_LISTED)
        return;
    c->flags |= F_LISTED;
    c->pend_next = NULL;
    if (tt__conn_loop(c)->pend_tail != NULL)
        tt__conn_loop(c)->pend_tail->pend_next = c;
    else
        tt__conn_loop(c)->pend_head = c;
    tt__conn_loop(c)->pend_tail = c;
}

void tt__conn_flush_late(tt_conn_t *c)
{
    if (!(c->flags & F_FLUSH_WAITED))
        c->flags |= F_FLUSH_LATE;
}

/* Write what is queued at the end of this round, unless the socket is full (then
 * WRITABLE brings us back) or the connect has not finished (on_open flushes). */
static void flush_soon(tt_conn_t *c)
{
    if (c->state == TT_STATE_OPEN && !(c->flags & F_WAIT_WRITE) && !c->io.send_out)
        schedule(c, F_PEND_FLUSH);
}

static void update_interest(tt_conn_t *c)
{
    unsigned ev = 0;
    int err;

    if (tt__conn_is_closing(c))
        return;
    if (c->state == TT_STATE_CONNECTING) {
        ev = TT__POLL_OUT;
    } else {
        /* A transform's handshake reads whatever the app asked. */
        if ((c->flags & (F_READING | F_WIRE_HOLD)) && !(c->flags & (F_RD_EOF | F_EOF_HELD)))
            ev |= TT__POLL_IN;
        if (c->flags & F_WAIT_WRITE)
            ev |= TT__POLL_OUT;
    }
    err = tt__poller_set(&tt__conn_loop(c)->poller, &c->io, ev);
    if (err < 0)
        tt__conn_close(c, TT_CLOSE_IO_ERROR, err);
}

/* Map a socket error to the reason the connection ended. */
static tt_close_kind_t kind_of(int err)
{
    switch (err) {
    case -ECONNRESET:
    case -EPIPE:
        return TT_CLOSE_PEER_RESET;
    case -ETIMEDOUT:
        return TT_CLOSE_KERNEL_TIMEOUT; /* keepalive or TCP_USER_TIMEOUT (tcp(7)) */
    default:
        return TT_CLOSE_IO_ERROR;
    }
}

void tt__conn_fail(tt_conn_t *c, int err) { tt__conn_close(c, kind_of(err), err); }

static void live_io(tt_conn_t *c, int dir)
{
    if (c->ext != NULL && c->ext->live_on_io != NULL)
        c->ext->live_on_io(c, dir);
}

/* ---- creation --------------------------------------------------------------- */

tt_conn_t *tt__conn_new(tt_loop_t *loop, int fd, tt__handlers_t *hs)
{
    tt_conn_t *c = pool_get(loop);
    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof(*c));
    tt__io_init_stream(&c->io, fd);
    c->h = hs;
    hs->refs++;
    c->id = atomic_fetch_add(&next_id, 1);
    c->created_ms = loop->now;
    c->flags = F_READING;
    c->state = TT_STATE_OPEN;
    loop->handles++;
    loop->active++;
    return c;
}

/* Every layer is open: on_open, then what was queued meanwhile (and an end or a
 * destroy asked for already). */
static void open_now(tt_conn_t *c)
{
    if (c->h->h.on_open != NULL)
        c->h->h.on_open(c);
    if (tt__conn_is_closing(c))
        return;
    if (!tt__conn_queue_empty(c) || (c->flags & (F_WANT_END | F_DESTROY_SOON)))
        flush(c, true);
}

void tt__conn_opened(tt_conn_t *c)
{
    if (c->ext != NULL && c->ext->proxy_send != NULL) {
        /* A client's PROXY header: the first bytes on the wire, under TLS too. */
        int err = c->ext->proxy_send(c);
        c->ext->proxy_send = NULL;
        if (err < 0) {
            tt__conn_fail(c, err);
            return;
        }
    }
    c->state = TT_STATE_OPEN;
    deadline_stop(c);
    if (c->flags & F_WANT_END)
        linger_restart(c); /* tt_end came while connecting */
    else
        out_release(c);
    update_interest(c);
    if (tt__conn_is_closing(c))
        return;
    if (c->ext != NULL && c->ext->wire_ops != NULL) {
        c->ext->wire_ops->opened(c); /* the handshake begins */
        if (tt__conn_is_closing(c))
            return;
    }
    if (c->ext != NULL && c->ext->open_waits > 0) {
        /* A layer's own opening first (tt__conn_layer_opened); what it queued to
         * open with (a WebSocket client's upgrade request) goes now. */
        if (!tt__conn_queue_empty(c))
            flush(c, true);
        return;
    }
    open_now(c);
}

void tt__conn_layer_opened(tt_conn_t *c)
{
    if (tt__conn_is_closing(c) || c->ext == NULL || c->ext->open_waits == 0)
        return;
    if (--c->ext->open_waits == 0)
        open_now(c);
}

void tt__conn_wire_hold(tt_conn_t *c, bool hold)
{
    if (hold) {
        c->flags |= F_WIRE_HOLD;
    } else if (c->flags & F_WIRE_HOLD) {
        c->flags &= ~F_WIRE_HOLD;
        update_interest(c); /* reading as the app asked from now on */
        if (!tt__conn_is_closing(c) &&
            (!tt__conn_queue_empty(c) || (c->flags & (F_WANT_END | F_DESTROY_SOON))))
            flush_soon(c);
    }
}

void tt__conn_want_write(tt_conn_t *c, bool on)
{
    if (on)
        c->flags |= F_WAIT_WRITE;
    else
        c->flags &= ~F_WAIT_WRITE;
    update_interest(c);
}

bool tt__conn_wants_input(const tt_conn_t *c)
{
    return (c->flags & F_READING) && !(c->flags & (F_RD_EOF | F_EOF_HELD)) &&
           !tt__conn_is_closing(c);
}

void tt__conn_connecting(tt_conn_t *c, bool done, uint64_t timeout_ms)
{
    c->state = TT_STATE_CONNECTING;
    if (done) {
        /* Connected inside tt_connect(): on_open still comes from the loop. */
        schedule(c, F_PEND_OPEN);
        return;
    }
    /* tt__loop_deadline reads the clock, not the loop's cached time: tt_connect may
     * be called long after the round began (or before the loop ever ran). */
    if (timeout_ms > 0 && tt__conn_deadline_start(c, timeout_ms) < 0) {
        tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM);
        return;
    }
    update_interest(c);
}

static void connect_done(tt_conn_t *c)
{
    int err = tt__sock_error(c->io.fd);
    if (err < 0) {
        tt__conn_close(c, TT_CLOSE_CONNECT_FAILED, err);
        return;
    }
    tt__conn_opened(c);
}

static void deadline_cb(tt__wnode_t *node)
{
    tt_conn_t *c = tt__container_of(node, tt__conn_out_t, deadline)->conn;
    if (c->state == TT_STATE_CONNECTING)
        tt__conn_close(c, TT_CLOSE_CONNECT_TIMEOUT, -ETIMEDOUT);
    else
        tt__conn_close(c, TT_CLOSE_LINGER_TIMEOUT, -ETIMEDOUT);
}

/* ---- closing ---------------------------------------------------------------- */

void tt__conn_close(tt_conn_t *c, tt_close_kind_t kind, int err)
{
    if (tt__conn_is_closing(c))
        return;
    c->state = TT_STATE_CLOSING;
    c->close_kind = (uint8_t)kind;
    c->close_err = err;
    deadline_stop(c);
    /* Out of the poller now; the fd itself stays open until the pending phase so
     * the kernel's delivery figures can still be read. */
    tt__poller_remove(&tt__conn_loop(c)->poller, &c->io);
    if (c->ext != NULL && c->ext->connect_cancel != NULL)
        c->ext->connect_cancel(c); /* by name, no socket yet: stop lookup and attempts */
    schedule(c, F_PEND_CLOSE);
}

static void stream_watch_dispose(tt_conn_t *c);

static void finish_close(tt_conn_t *c)
{
    tt_loop_t *loop = tt__conn_loop(c);
    tt_close_info_t info;
    int fd = c->io.fd;

    memset(&info, 0, sizeof(info));
    info.kind = (tt_close_kind_t)c->close_kind;
    info.error = c->close_err;
    info.detail = c->ext != NULL ? c->ext->close_detail : 0;
    info.bytes_written = c->written;
    if (tt__conn_server(c) != NULL)
        tt__server_unlink(c); /* first: per-address accounting reads the peer */
    if (fd >= 0) {
        uint32_t outq = 0;
        /* Only a connection that wrote can have unacknowledged bytes: skip the
         * ioctl on the rest (this runs for every connection that ever closes). */
        if (c->written > 0 && tt__sock_outq(fd, &outq) == 0) {
            /* SIOCOUTQ counts sequence space, not data: it includes a FIN not yet
             * acknowledged (tcp(7), RFC 793 3.3); so does tcpi_bytes_acked, with the
             * SYN too. Report data bytes: written minus what the kernel still holds. */
            uint64_t unacked = outq;
            if ((c->flags & F_WR_SHUT) && unacked > 0)
                unacked--;
            info.bytes_unacked = unacked < c->written ? unacked : c->written;
            info.bytes_acked = c->written - info.bytes_unacked;
        }
        if (c->flags & F_RESET)
            tt__sock_set_reset_on_close(fd);
        close(fd);
        c->io.fd = -1;
    }
    stream_watch_dispose(c);
    if (c->ext != NULL && c->ext->take_unsent != NULL)
        info.bytes_unsent = c->ext->take_unsent(c); /* kept for the next connection */
    else
        info.bytes_unsent = c->out != NULL ? tt__sendq_clear(&c->out->sq, NULL, NULL) : 0;
    /* The watch was disposed above; the emptied send state goes after on_close
     * and remembers what it dropped, so the total still counts it. */
    if (c->out != NULL)
        c->out->dropped = info.bytes_unsent;
    info.bytes_queued = tt__conn_queued_total(c);
    info.ws_reason = "";
    info.reason = "";
    if (c->ext != NULL && c->ext->close_reason != NULL)
        info.reason = c->ext->close_reason;
    if (c->ext != NULL && c->ext->close_info != NULL)
        c->ext->close_info(c, &info); /* before frame_free: the layer's state is gone then */
    if (c->ext != NULL && c->ext->wire_ops != NULL)
        c->ext->wire_ops->close_info(c, &info);
    if (c->ext != NULL) {
        if (c->ext->groups_free != NULL)
            c->ext->groups_free(c);
        if (c->ext->live_free != NULL)
            c->ext->live_free(c);
        if (c->ext->frame_free != NULL)
            c->ext->frame_free(c);
    }

    bool graceful = info.kind == TT_CLOSE_PEER_CLOSED || info.kind == TT_CLOSE_LOCAL_END ||
                    info.kind == TT_CLOSE_LOCAL_DESTROY || info.kind == TT_CLOSE_WS_CLOSED;
    if (!graceful && c->h->h.on_error != NULL)
        c->h->h.on_error(c, info.error);
    if (c->h->h.on_close != NULL)
        c->h->h.on_close(c, &info);

    c->state = TT_STATE_CLOSED;
    if (c->ext != NULL && c->ext->wire_ops != NULL)
        c->ext->wire_ops->free(c); /* after on_close: info.reason is the transform's text */
    if (c->ext != NULL && c->ext->proxy_free != NULL)
        c->ext->proxy_free(c); /* after on_close, which may still read the header */
    free(c->ext);
    if (c->out != NULL)
        out_drop(c);
    tt__handlers_unref(c->h);
    loop->handles--;
    loop->active--;
    pool_put(loop, c);
}

/* ---- the pending phase ------------------------------------------------------ */

void tt__conn_run_pending(tt_loop_t *loop)
{
    /* Only the connections listed now: work scheduled while we run goes to the
     * next round, so a callback that keeps sending cannot pin us here. */
    tt_conn_t *c = loop->pend_head;
    loop->pend_head = loop->pend_tail = NULL;
    while (c != NULL) {
        tt_conn_t *next = c->pend_next;
        uint32_t what = c->flags & (F_PEND_OPEN | F_PEND_FLUSH | F_PEND_CLOSE | F_PEND_READ);
        c->flags &= ~(F_LISTED | F_PEND_OPEN | F_PEND_FLUSH | F_PEND_CLOSE | F_PEND_READ);
        if (c->state == TT_STATE_CLOSING) {
            if ((c->flags & F_LISTED) || c->io.send_out) {
                /* Re-listed meanwhile: keep one entry. Or the kernel still has a
                 * send of queued bytes: their completion lists it again. */
                c = next;
                continue;
            }
            finish_close(c); /* c is gone */
        } else if (what & F_PEND_OPEN) {
            tt__conn_opened(c);
        } else if (what & F_PEND_FLUSH) {
            if ((c->flags & (F_FLUSH_LATE | F_FLUSH_WAITED)) == F_FLUSH_LATE) {
                /* Listed again, so for the next round, after a poll that does not
                 * wait: the sender's next lines, if already here, join this write. */
                c->flags = (c->flags & ~F_FLUSH_LATE) | F_FLUSH_WAITED;
                flush_soon(c);
            } else {
                flush(c, true);
            }
        }
        if ((what & F_PEND_READ) && !tt__conn_is_closing(c) && c->ext != NULL) {
            bool corked = cork(c);
            /* The framer's held messages are older than a transform's held input. */
            if (c->ext->read_resumed != NULL)
                c->ext->read_resumed(c);
            if (c->ext->wire_ops != NULL && tt__conn_wants_input(c))
                c->ext->wire_ops->resumed(c);
            uncork(c, corked);
        }
        c = next;
    }
}

/* ---- reading ------------------------------------------------------------------ */

bool tt__conn_eof_held(const tt_conn_t *c) { return (c->flags & F_EOF_HELD) != 0; }

void tt__conn_peer_ended(tt_conn_t *c)
{
    /* A framed stream that ends inside a frame lost those bytes: say so rather
     * than report a clean close. Input the framer still holds (reading was paused
     * in on_message) comes first: the end waits until it has been delivered. */
    int err = 0;
    if (c->ext != NULL && c->ext->frame_eof != NULL) {
        bool corked = cork(c);
        err = c->ext->frame_eof(c);
        uncork(c, corked);
    }
    if (tt__conn_is_closing(c))
        return;
    if (err > 0) {
        c->flags |= F_EOF_HELD;
        update_interest(c);
        return;
    }
    c->flags &= ~F_EOF_HELD;
    c->flags |= F_RD_EOF;
    update_interest(c);
    if (err < 0) {
        tt__conn_close(c, TT_CLOSE_PROTOCOL_ERROR, err);
        return;
    }
    if (c->h->h.on_end != NULL)
        c->h->h.on_end(c);
    if (tt__conn_is_closing(c))
        return;
    if (c->flags & F_WR_SHUT) {
        tt__conn_close(c, TT_CLOSE_LOCAL_END, 0); /* our FIN went first */
    } else if (!(c->flags & (F_HALF_OPEN | F_WANT_END))) {
        c->flags |= F_WANT_END; /* end our side once the queue is flushed */
        linger_restart(c);
        schedule(c, F_PEND_FLUSH);
    }
}

/* The messages of one read are delivered together: what on_message sends is
 * queued (not written per message) and goes out in one write when delivery ends.
 * An echo of many small frames then costs a system call per read, not per frame. */
static bool cork(tt_conn_t *c)
{
    if (c->flags & F_CORK)
        return false; /* nested: the outer one flushes */
    c->flags |= F_CORK;
    return true;
}

static void uncork(tt_conn_t *c, bool corked)
{
    if (!corked)
        return;
    c->flags &= ~F_CORK;
    if (!tt__conn_is_closing(c) && !tt__conn_queue_empty(c) && !(c->flags & F_WAIT_WRITE))
        flush(c, true);
}

void tt__conn_plain_input(tt_conn_t *c, const char *buf, size_t n, size_t pending)
{
    c->bytes_in += (uint64_t)n;
    c->packets_in++;
    live_io(c, TT__IO_DIR_READ);
    if (tt__conn_is_closing(c))
        return;
    if (c->ext != NULL && c->ext->frame_input != NULL) {
        bool corked = cork(c);
        c->ext->frame_input(c, buf, n);
        uncork(c, corked);
    } else if (c->ext != NULL && c->ext->live_input != NULL && c->ext->live_input(c, buf, n))
        return; /* a heartbeat, answered or noted: not application data */
    else if (c->h->h.on_data != NULL)
        c->h->h.on_data(c, buf, n, pending);
}

static void on_read(tt_conn_t *c, const char *buf, ssize_t n, size_t pending)
{
    if (n > 0)
        tt__conn_plain_input(c, buf, (size_t)n, pending);
    else if (n == 0)
        tt__conn_peer_ended(c);
    else
        tt__conn_close(c, kind_of((int)n), (int)n);
}

/* Received descriptors: the app's, or closed here. Every one ends up in exactly
 * one of the two places. */
static void deliver_fds(tt_conn_t *c, const int *fds, size_t n)
{
    if (!tt__conn_is_closing(c) && c->h->h.on_fds != NULL) {
        c->h->h.on_fds(c, fds, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

/* Every event but the bytes of a connection with no layer. */
static __attribute__((noinline)) void io_event(tt_conn_t *c, int ev, const char *buf, ssize_t n,
                                               size_t pending)
{
    if (ev == TT__EV_FDS) {
        deliver_fds(c, (const int *)(const void *)buf, (size_t)n);
        return;
    }
    if (ev == TT__EV_SENT) {
        sent(c, n, pending);
        return;
    }
    if (tt__conn_is_closing(c))
        return; /* closed by an earlier callback of this round */
    if (ev == TT__EV_WRITABLE) {
        if (c->state == TT_STATE_CONNECTING)
            connect_done(c);
        else if (c->ext == NULL || c->ext->wire_ops == NULL || !c->ext->wire_ops->writable(c))
            flush(c, true);
    } else if (ev == TT__EV_DATA) {
        if (c->ext != NULL && c->ext->pre_input != NULL) {
            ssize_t k = c->ext->pre_input(c, buf, n);
            if (k < 0 || tt__conn_is_closing(c) || (n > 0 && k == n) || n <= 0)
                return;
            buf += k;
            n -= k;
        }
        if (c->ext != NULL && c->ext->wire_ops != NULL)
            c->ext->wire_ops->input(c, buf, n, pending);
        else
            on_read(c, buf, n, pending);
    }
}

static void io_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending)
{
    tt_conn_t *c = tt__container_of(io, tt_conn_t, io);

    /* A connection with no layer (no extension) takes its bytes straight to
     * on_data: the read path of most messages. */
    if (ev == TT__EV_DATA && c->ext == NULL && n > 0 && !tt__conn_is_closing(c) &&
        c->h->h.on_data != NULL) {
        c->bytes_in += (uint64_t)n;
        c->packets_in++;
        c->h->h.on_data(c, buf, (size_t)n, pending);
        return;
    }
    io_event(c, ev, buf, n, pending);
}

/* ---- writing ------------------------------------------------------------------ */

/* Stream sources (pipes, sockets, ttys) are watched for readability while the
 * queue waits on them; the watch lives in its own small object. */
typedef struct stream_watch {
    tt__io_own_t io;
    tt_conn_t *conn;
    tt__zombie_t zombie;
} stream_watch_t;

static void stream_watch_free(tt__zombie_t *z)
{
    free(tt__container_of(z, stream_watch_t, zombie));
}

static void stream_watch_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending)
{
    stream_watch_t *w = tt__container_of(io, stream_watch_t, io.io);
    tt_conn_t *c = w->conn;

    (void)ev, (void)buf, (void)n, (void)pending;
    tt__poller_set(&tt__conn_loop(c)->poller, io, 0);
    c->flags &= ~F_STREAM_WAIT;
    flush(c, true);
}

/* Release the readiness watch of the stream entry that has one, wherever it is: at
 * the head while its source is read, or just behind control bytes a heartbeat
 * pushed in front of it (tt__conn_send_control). At most one entry has a watch.
 * Before the queue is dropped, popped, or handed to a next connection (whose
 * watch must not point back at this one). */
static void stream_watch_dispose(tt_conn_t *c)
{
    for (tt__sqe_t *e = c->out != NULL ? c->out->sq.head : NULL; e != NULL; e = e->next) {
        if (e->kind != TT__SQ_STREAM || e->u.file.watch == NULL)
            continue;
        stream_watch_t *w = e->u.file.watch;
        tt__poller_remove(&tt__conn_loop(c)->poller, &w->io.io);
        w->io.io.fd = -1; /* an event for it already fetched this round is skipped */
        e->u.file.watch = NULL;
        tt__loop_defer_free(tt__conn_loop(c), &w->zombie);
        return;
    }
}

static int stream_wait(tt_conn_t *c, tt__sqe_t *e)
{
    stream_watch_t *w = e->u.file.watch;
    if (w == NULL) {
        w = calloc(1, sizeof(*w));
        if (w == NULL)
            return -ENOMEM;
        tt__io_init(&w->io, e->u.file.fd, TT__IO_RAW, stream_watch_cb);
        w->conn = c;
        w->zombie.free_fn = stream_watch_free;
        e->u.file.watch = w;
    }
    c->flags |= F_STREAM_WAIT;
    return tt__poller_set(&tt__conn_loop(c)->poller, &w->io.io, TT__POLL_IN);
}

/* Pull the next piece of a stream into the queue's front. Returns > 0 when bytes
 * were queued, 0 at end of stream (entry popped), -EAGAIN (watch armed), -errno. */
static int stream_pull(tt_conn_t *c, tt__sqe_t *e)
{
    tt__poller_t *p = &tt__conn_loop(c)->poller;
    size_t want = p->rbuf_size;
    ssize_t n;

    if (e->u.file.remain != TT_FILE_TO_EOF && e->u.file.remain < want)
        want = (size_t)e->u.file.remain;
    if (want == 0)
        goto eof;
    do
        n = read(e->u.file.fd, p->rbuf, want);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int err = errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (err == -EAGAIN) {
            int werr = stream_wait(c, e);
            return werr < 0 ? werr : -EAGAIN;
        }
        return err;
    }
    if (n == 0)
        goto eof;
    tt__sendq_stream_took(&c->out->sq, (uint64_t)n);
    if (tt__sendq_push_front_copy(&c->out->sq, p->rbuf, (size_t)n) < 0)
        return -ENOMEM;
    return (int)n;

eof:
    stream_watch_dispose(c);
    tt__sendq_pop(&c->out->sq);
    return 0;
}

/* A file sendfile(2) cannot send: read its next piece into the queue's front.
 * Returns > 0 when bytes were queued, 0 at end of file (entry released), -errno
 * (-EIO: the file ended before the length it was given). */
static int file_pull(tt_conn_t *c, tt__sqe_t *e)
{
    tt__poller_t *p = &tt__conn_loop(c)->poller;
    size_t want = p->rbuf_size;
    ssize_t n;

    if (e->u.file.remain < want)
        want = (size_t)e->u.file.remain;
    if (want == 0) {
        tt__sendq_file_ended(&c->out->sq);
        return 0;
    }
    do
        n = pread(e->u.file.fd, p->rbuf, want, (off_t)e->u.file.off);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0) {
        if (!(e->flags & TT__SQE_TO_EOF) && e->u.file.remain != TT_FILE_TO_EOF)
            return -EIO;
        tt__sendq_file_ended(&c->out->sq);
        return 0;
    }
    tt__sendq_file_took(&c->out->sq, (uint64_t)n);
    if (tt__sendq_push_front_copy(&c->out->sq, p->rbuf, (size_t)n) < 0)
        return -ENOMEM;
    return (int)n;
}

/* The linger deadline runs from tt_end (or the automatic end after the peer's
 * FIN): a peer that never reads must not keep the queue, and the connection, for
 * ever. Each write that makes progress while the queue drains restarts it, so a
 * slow reader that keeps reading is not cut off; after our FIN it bounds the wait
 * for the peer's. Not while connecting: the deadline is the connect timeout then
 * (tt__conn_opened starts the linger). */
static void linger_restart(tt_conn_t *c)
{
    uint32_t ms = limits(c)->linger_ms;
    if (ms > 0 && c->state == TT_STATE_OPEN && tt__conn_deadline_start(c, ms) < 0)
        tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM); /* no bound on the wait: give up now */
}

ssize_t tt__conn_wire_write(tt_conn_t *c, const void *buf, size_t len)
{
    return tt__io_write(&tt__conn_loop(c)->poller, &c->io, buf, len);
}

/* Application bytes to the socket: through the transform when one is on. */
static ssize_t wire_writev(tt_conn_t *c, const struct iovec *iov, int iovcnt)
{
    if (c->ext != NULL && c->ext->wire_ops != NULL)
        return c->ext->wire_ops->writev(c, iov, iovcnt);
    return tt__io_writev(&tt__conn_loop(c)->poller, &c->io, iov, iovcnt);
}

static void note_written(tt_conn_t *c, size_t n)
{
    c->written += n;
    c->packets_out++;
    if (c->flags & F_WANT_END)
        linger_restart(c);
    live_io(c, TT__IO_DIR_WRITE);
}

/* The queue is empty: owed drain, then the half-close or close it was waiting for. */
static void queue_emptied(tt_conn_t *c, bool from_loop)
{
    if ((c->flags & F_HWM) && from_loop) {
        c->flags &= ~F_HWM;
        if (c->h->h.on_drain != NULL)
            c->h->h.on_drain(c);
        if (tt__conn_is_closing(c) || !tt__conn_queue_empty(c))
            return;
    }
    if (c->flags & F_DESTROY_SOON) {
        tt__conn_close(c, TT_CLOSE_LOCAL_DESTROY, 0);
        return;
    }
    if ((c->flags & F_WANT_END) && !(c->flags & F_WR_SHUT)) {
        if (c->ext != NULL && c->ext->wire_ops != NULL && !(c->flags & F_WIRE_ENDED)) {
            int err = c->ext->wire_ops->end(c); /* close_notify before our FIN */
            if (err == -EAGAIN) {
                c->flags |= F_WAIT_WRITE; /* flush comes back here when writable */
                return;
            }
            if (err < 0) {
                tt__conn_fail(c, err);
                return;
            }
            c->flags |= F_WIRE_ENDED;
        }
        if (c->flags & F_RD_EOF) {
            /* Both sides are done: close() sends what the kernel still holds, then
             * the FIN (nothing unread, so no RST); a shutdown() first would only
             * cost a system call on every short-lived connection. */
            tt__conn_close(c, (c->flags & F_ENDED_FIRST) ? TT_CLOSE_LOCAL_END
                                                         : TT_CLOSE_PEER_CLOSED, 0);
            return;
        }
        if (shutdown(c->io.fd, SHUT_WR) < 0 && errno != ENOTCONN) {
            int err = -errno;
            tt__conn_close(c, kind_of(err), err);
            return;
        }
        c->flags |= F_WR_SHUT;
        linger_restart(c); /* now: the wait for the peer's FIN */
    }
}

/* Write as much of the queue as the socket takes. `from_loop` is false when called
 * from inside an API call: then no user callback may run (drain waits). */
static void flush(tt_conn_t *c, bool from_loop)
{
    tt__poller_t *p = &tt__conn_loop(c)->poller;
    struct iovec iov[IOV_BATCH];
    ssize_t r = 0;

    if (c->flags & (F_FLUSHING | F_STREAM_WAIT | F_WIRE_HOLD) || c->state != TT_STATE_OPEN ||
        c->io.send_out)
        return; /* a send in flight: its completion flushes again */
    c->flags |= F_FLUSHING;
    c->flags &= ~(F_WAIT_WRITE | F_FLUSH_LATE | F_FLUSH_WAITED); /* written now, whoever asked */
    while (!tt__conn_queue_empty(c)) {
        tt__sendq_t *q = &c->out->sq;
        tt__sqe_t *e = q->head;
        size_t want;

        if (e->kind == TT__SQ_STREAM) {
            r = stream_pull(c, e);
            if (r == -EAGAIN) {
                r = 0;
                break;
            }
            if (r < 0)
                break;
            continue;
        }
        if (e->kind == TT__SQ_FILE) {
            want = e->u.file.remain < FILE_CHUNK ? (size_t)e->u.file.remain : FILE_CHUNK;
            /* A transform encrypts what it sends: the file is read into copies. */
            if (c->ext != NULL && c->ext->wire_ops != NULL)
                e->flags |= TT__SQE_NO_SENDFILE;
            if (!(e->flags & TT__SQE_NO_SENDFILE)) {
                uint64_t off = e->u.file.off;
                r = tt__io_sendfile(p, &c->io, e->u.file.fd, &off, want);
                /* EINVAL: this file has no splice support (procfs seq files,
                 * sendfile(2)); from now on it is read into copies. */
                if (r == -EINVAL)
                    e->flags |= TT__SQE_NO_SENDFILE;
            }
            if (e->flags & TT__SQE_NO_SENDFILE) {
                r = file_pull(c, e);
                if (r < 0)
                    break;
                continue; /* a copy is at the head now, or the entry is gone */
            }
            if (r == 0) {
                if (!(e->flags & TT__SQE_TO_EOF) && e->u.file.remain != TT_FILE_TO_EOF) {
                    r = -EIO; /* the file ended before the length we were given */
                } else {
                    tt__sendq_file_ended(q); /* sent to its end: done */
                    continue;
                }
            }
        } else if (e->kind == TT__SQ_FDS) {
            /* The descriptors ride on the bytes queued behind them, and on them
             * alone: the iovecs stop at the next boundary of this kind. */
            tt__sendq_t rest = *q;
            rest.head = e->next;
            int cnt = tt__sendq_fill_iov(&rest, iov, IOV_BATCH, &want);
            r = tt__io_writev_fds(p, &c->io, iov, cnt, e->u.fds.fds, e->u.fds.n);
            if (r > 0)
                tt__sendq_pop(q); /* sent: the kernel holds its own references */
        } else {
            int cnt = tt__sendq_fill_iov(q, iov, IOV_BATCH, &want);
            if ((c->flags & F_SEND_BATCH) && (c->ext == NULL || c->ext->wire_ops == NULL) &&
                tt__io_send_async(p, &c->io, iov, cnt, want) == 0) {
                c->flags &= ~F_SEND_BATCH;
                r = 0; /* sent() takes it from here */
                break;
            }
            r = wire_writev(c, iov, cnt);
        }
        if (r == -EINPROGRESS) { /* the transform holds the queue until it is ready */
            r = 0;
            break;
        }
        if (r == -EAGAIN) {
            c->flags |= F_WAIT_WRITE;
            r = 0;
            break;
        }
        if (r < 0)
            break;
        /* Count first: consuming runs free callbacks, which may look at the count. */
        note_written(c, (size_t)r);
        tt__sendq_consume(q, (uint64_t)r);
        if (tt__conn_is_closing(c))
            break; /* a free callback destroyed the connection: nothing more goes */
        if ((size_t)r < want) { /* the socket is full: the next try would EAGAIN */
            c->flags |= F_WAIT_WRITE;
            break;
        }
    }
    c->flags &= ~F_FLUSHING;
    if (tt__conn_is_closing(c))
        return;
    if (r < 0) {
        tt__conn_close(c, r == -EIO ? TT_CLOSE_IO_ERROR : kind_of((int)r), (int)r);
        return;
    }
    if (c->io.send_out) {
        update_interest(c);
        return;
    }
    if (tt__conn_queue_empty(c)) {
        if (!from_loop && (c->flags & F_HWM))
            schedule(c, F_PEND_FLUSH); /* drain is delivered from the loop */
        else
            queue_emptied(c, from_loop);
        if (tt__conn_is_closing(c))
            return;
        out_release(c);
    }
    update_interest(c);
}

/* A send request of the flush finished (io_uring): `r` bytes of the `want` at the
 * head of the queue went, or -errno. What went is counted and consumed as a write
 * would be (the references it held are dropped); then the flush goes on, or waits
 * for room, or the connection closes with the error's reason. A connection closed
 * meanwhile only counts what went and finishes its close now. */
static void sent(tt_conn_t *c, ssize_t r, size_t want)
{
    if (r > 0) {
        note_written(c, (size_t)r);
        if (c->ext != NULL && c->ext->wire_ops != NULL && c->ext->wire_ops->plain_sent != NULL)
            c->ext->wire_ops->plain_sent(c, (uint64_t)r); /* STARTTLS came meanwhile */
        tt__sendq_consume(&c->out->sq, (uint64_t)r); /* in flight: c->out holds the bytes */
    }
    if (tt__conn_is_closing(c)) {
        if (c->state == TT_STATE_CLOSING)
            schedule(c, F_PEND_CLOSE); /* run_pending waited for this */
        return;
    }
    if (r == -EAGAIN || (r >= 0 && (size_t)r < want)) {
        c->flags |= F_WAIT_WRITE; /* the socket is full: WRITABLE flushes the rest */
        update_interest(c);
        return;
    }
    if (r < 0 && r != -EINTR && r != -ECANCELED) {
        tt__conn_close(c, kind_of((int)r), (int)r);
        return;
    }
    flush(c, true);
}

/* Control bytes (heartbeats) go at once when nothing is queued, or in front of a
 * stream source that waits for input: such a head holds no partly written bytes,
 * so this is a boundary, and a pipe or terminal that stays quiet must not hold a
 * heartbeat back. Otherwise they queue like any send. */
static int send_control(tt_conn_t *c, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

    if ((c->flags & F_STREAM_WAIT) && !tt__conn_queue_empty(c) &&
        c->out->sq.head->kind == TT__SQ_STREAM) {
        if (tt__sendq_push_front_copy(&c->out->sq, buf, len) < 0)
            return -ENOMEM;
        c->flags &= ~F_STREAM_WAIT; /* the watch stays armed; flush re-waits after */
        schedule(c, F_PEND_FLUSH);
        return 0;
    }
    if (!(c->flags & F_WANT_END))
        return tt_send(c, buf, len);
    /* After tt_end() but before our FIN: still in time, ahead of the FIN. */
    tt__sendq_t *q = tt__conn_queue(c);
    if (q == NULL || tt__sendq_push_copy(q, &iov, 1, len) < 0)
        return -ENOMEM;
    flush_soon(c);
    return 0;
}

int tt__conn_send_control(tt_conn_t *c, const void *buf, size_t len)
{
    tt__conn_ext_t *x;
    int r;

    if (tt__conn_is_closing(c) || (c->flags & (F_WR_SHUT | F_DESTROY_SOON)))
        return -EPIPE;
    if ((x = tt__conn_ext(c)) == NULL)
        return -ENOMEM;
    x->ctl_bytes += len; /* first: the bytes may be written inside the call */
    r = send_control(c, buf, len);
    if (r < 0 && c->ext != NULL)
        c->ext->ctl_bytes -= len;
    return r;
}

bool tt__conn_control_idle(const tt_conn_t *c)
{
    return tt__conn_queue_empty(c) ||
           ((c->flags & F_STREAM_WAIT) && c->out->sq.head->kind == TT__SQ_STREAM);
}

/* ---- public: sending ---------------------------------------------------------- */

static int send_status(tt_conn_t *c)
{
    if (tt__conn_queue_bytes(c) >= limits(c)->high_water) {
        c->flags |= F_HWM;
        return TT_SEND_FULL;
    }
    return 0;
}

static int check_sendable(const tt_conn_t *c)
{
    if (tt__conn_is_closing(c) || (c->flags & (F_WANT_END | F_DESTROY_SOON)))
        return -EPIPE;
    return 0;
}

/* The hard cap: a peer that will not read must not exhaust our memory. It limits
 * what the queue really holds (sq.alloc: nodes and chunks, not just payload), so a
 * flood of tiny sends is stopped as soon as one of large ones; `add` is the payload
 * about to be queued, charged with one node. */
static inline bool would_pass_cap(const tt_conn_t *c, uint64_t add)
{
    uint32_t cap_kib = limits(c)->queue_cap_kib;
    return cap_kib != 0 && (c->out != NULL ? c->out->sq.alloc : 0) + add + TT__SQ_NODE_COST >
                               (uint64_t)cap_kib * 1024;
}

int tt__conn_over_cap(tt_conn_t *c, uint64_t add)
{
    if (would_pass_cap(c, add)) {
        tt__conn_close(c, TT_CLOSE_SEND_OVERFLOW, TT_EOVERFLOW);
        return -ENOBUFS;
    }
    return 0;
}

/* Nothing queued and the socket not known to be full: write straight from the
 * caller's buffers, and queue only what the kernel did not take. */
static int sent_in_part(tt_conn_t *c, const struct iovec *iov, int iovcnt, size_t len, ssize_t r);

static bool can_write_now(const tt_conn_t *c)
{
    return c->state == TT_STATE_OPEN && tt__conn_queue_empty(c) && !c->io.send_out &&
           !(c->flags & (F_WAIT_WRITE | F_FLUSHING | F_WIRE_HOLD));
}

int tt_sendv(tt_conn_t *c, const struct iovec *iov, int iovcnt)
{
    size_t len = 0;
    int err;

    if (c == NULL || iovcnt < 0 || iovcnt > IOV_MAX || (iov == NULL && iovcnt > 0))
        return -EINVAL;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_base == NULL && iov[i].iov_len > 0)
            return -EINVAL;
        if (len + iov[i].iov_len < len)
            return -EINVAL;
        len += iov[i].iov_len;
    }
    err = check_sendable(c);
    if (err < 0)
        return err;
    if (len == 0)
        return send_status(c);
    err = tt__conn_over_cap(c, len);
    if (err < 0)
        return err;

    if (!can_write_now(c) || ((c->flags & F_CORK) && len < CORK_DIRECT_MIN)) {
        tt__sendq_t *q = tt__conn_queue(c);
        err = q != NULL ? tt__sendq_push_copy(q, iov, iovcnt, len) : -ENOMEM;
        if (err < 0)
            return err;
        flush_soon(c); /* coalesced with the rest of this round */
        return send_status(c);
    }

    ssize_t r = wire_writev(c, iov, iovcnt);
    if (r == (ssize_t)len) {
        note_written(c, len);
        return 0;
    }
    return sent_in_part(c, iov, iovcnt, len, r);
}

/* A direct write that the kernel did not take whole (`r`: bytes it took, or
 * -errno). Queue a copy of the whole send and drop what the kernel took: simpler
 * than slicing the vector, and only a full socket gets here. After an error the
 * bytes stay queued so the close report counts them as never sent. */
static int sent_in_part(tt_conn_t *c, const struct iovec *iov, int iovcnt, size_t len, ssize_t r)
{
    tt__sendq_t *q = tt__conn_queue(c);
    int err = q != NULL ? tt__sendq_push_copy(q, iov, iovcnt, len) : -ENOMEM;
    if (err < 0) {
        if (r > 0) /* what went is counted; the rest is lost with the connection */
            note_written(c, (size_t)r);
        tt__conn_close(c, TT_CLOSE_IO_ERROR, err);
        return err;
    }
    if (r > 0) {
        tt__sendq_consume(q, (uint64_t)r);
        note_written(c, (size_t)r);
    } else if (r == -EINPROGRESS) {
        return send_status(c); /* the transform writes it once it is ready */
    } else if (r != -EAGAIN) {
        tt__conn_close(c, kind_of((int)r), (int)r);
        return 0; /* the failure is reported by on_error/on_close, from the loop */
    }
    c->flags |= F_WAIT_WRITE;
    update_interest(c);
    return send_status(c);
}

int tt__conn_send_queued(tt_conn_t *c, const void *buf, size_t len, size_t hint)
{
    int err = check_sendable(c);

    if (err < 0)
        return err;
    if (len == 0)
        return send_status(c);
    err = tt__conn_over_cap(c, len);
    if (err < 0)
        return err;
    tt__sendq_t *q = tt__conn_queue(c);
    err = q != NULL ? tt__sendq_push_bytes(q, buf, len, hint) : -ENOMEM;
    if (err < 0)
        return err;
    flush_soon(c);
    return send_status(c);
}

ssize_t tt__conn_write_shared(tt_conn_t *c, const void *buf, size_t len)
{
    ssize_t r;

    /* Corked (the connection's own read is being delivered) or a transform on:
     * queued as before, written once at the end of the delivery or by the flush. */
    if (len == 0 || !can_write_now(c) ||
        (c->flags & (F_CORK | F_WANT_END | F_DESTROY_SOON)) ||
        (c->ext != NULL && c->ext->wire_ops != NULL))
        return -EAGAIN;
    tt__poller_t *p = &tt__conn_loop(c)->poller;
    /* io_uring: queued, and sent by the flush at the end of the round as a request
     * that goes to the kernel with every other receiver's in one system call. */
    if (tt__poller_async_send(p)) {
        c->flags |= F_SEND_BATCH;
        return -EAGAIN;
    }
    if (would_pass_cap(c, len)) {
        tt__conn_close(c, TT_CLOSE_SEND_OVERFLOW, TT_EOVERFLOW);
        return -ENOBUFS;
    }
    /* One buffer: send(2), no message header to build; counted, as a broadcast's
     * direct writes are what batching on io_uring saves. */
    p->n_writes++;
    r = tt__io_write(p, &c->io, buf, len);
    if (r < 0 && r != -EAGAIN) {
        /* An error: the caller queues it all and the flush at the end of the round
         * meets the error again and closes with its reason, the bytes counted as
         * never sent. */
        return 0;
    }
    if (r > 0) {
        note_written(c, (size_t)r);
    } else {
        r = 0;
    }
    if ((size_t)r < len)
        tt__conn_want_write(c, true); /* the socket is full */
    return r;
}

/* tt_send when the lean path below does not apply. */
static __attribute__((noinline)) int send_other(tt_conn_t *c, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    if (c == NULL || (buf == NULL && len > 0))
        return -EINVAL;
    return tt_sendv(c, &iov, 1);
}

/* tt_send's bytes went straight to the socket but not all of them (`r`: what the
 * kernel took, or -errno): the rest is queued as tt_sendv does. */
static __attribute__((noinline)) int send_rest(tt_conn_t *c, const void *buf, size_t len,
                                               ssize_t r)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return sent_in_part(c, &iov, 1, len, r);
}

int tt_send(tt_conn_t *c, const void *buf, size_t len)
{
    /* The common case, with no layer to consult: nothing queued, the socket not
     * known to be full, not corked or ending, within the cap as tt_sendv counts
     * it: one send(2) and the totals. */
    if (c != NULL && buf != NULL && len > 0 && c->ext == NULL && can_write_now(c) &&
        !(c->flags & (F_CORK | F_WANT_END | F_DESTROY_SOON)) && !would_pass_cap(c, len)) {
        ssize_t r = tt__io_write(&tt__conn_loop(c)->poller, &c->io, buf, len);
        if (r != (ssize_t)len)
            return send_rest(c, buf, len, r);
        c->written += len;
        c->packets_out++;
        return 0;
    }
    return send_other(c, buf, len);
}

int tt_send_fds(tt_conn_t *c, const int *fds, size_t n, const void *buf, size_t len)
{
    int *own, err;

    if (c == NULL || fds == NULL || buf == NULL || n == 0 || n > TT_SEND_FDS_MAX || len == 0)
        return -EINVAL;
    if (!(c->flags & F_UNIX) || (c->ext != NULL && c->ext->wire_ops != NULL))
        return -EOPNOTSUPP; /* descriptors ride beside the bytes: not inside TLS */
    err = check_sendable(c);
    if (err < 0)
        return err;
    err = tt__conn_over_cap(c, len + n * sizeof(int));
    if (err < 0)
        return err;
    own = malloc(n * sizeof(int));
    if (own == NULL)
        return -ENOMEM;
    /* Our own copies: the caller may close its descriptors at once. */
    for (size_t i = 0; i < n; i++) {
        own[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
        if (own[i] < 0) {
            err = -errno;
            while (i-- > 0)
                close(own[i]);
            free(own);
            return err;
        }
    }
    /* Always queued, written by the flush at the end of the round, in order. */
    tt__sendq_t *q = tt__conn_queue(c);
    if (q == NULL) {
        for (size_t i = 0; i < n; i++)
            close(own[i]);
        free(own);
        return -ENOMEM;
    }
    err = tt__sendq_push_fds(q, own, (uint32_t)n, buf, len);
    if (err < 0)
        return err;
    flush_soon(c);
    return send_status(c);
}

int tt_send_text(tt_conn_t *c, const char *text)
{
    if (c == NULL || text == NULL)
        return -EINVAL;
    return tt_send(c, text, strlen(text));
}

int tt__conn_send_shared(tt_conn_t *c, void *buf, size_t len, uint32_t pin, tt_free_cb free_cb,
                         void *arg)
{
    int err = check_sendable(c);

    if (err < 0)
        return err;
    err = tt__conn_over_cap(c, (uint64_t)len + pin);
    if (err < 0)
        return err;
    /* Always queued, never written inside the call: the free callback must not
     * run inside an API call. */
    tt__sendq_t *q = tt__conn_queue(c);
    err = q != NULL ? tt__sendq_push_shared(q, buf, len, pin, free_cb, arg) : -ENOMEM;
    if (err < 0)
        return err;
    flush_soon(c);
    return send_status(c);
}

int tt_send_owned(tt_conn_t *c, void *buf, size_t len, tt_free_cb free_cb, void *arg)
{
    if (c == NULL || (buf == NULL && len > 0))
        return -EINVAL;
    return tt__conn_send_shared(c, buf, len, 0, free_cb, arg);
}

int tt__conn_extend_owned(tt_conn_t *c, const void *buf, size_t len, tt_free_cb free_cb,
                          void *arg)
{
    int err = check_sendable(c);

    if (err < 0)
        return err;
    if (c->out == NULL)
        return -EAGAIN;
    err = tt__conn_over_cap(c, len);
    if (err < 0)
        return err;
    if (!tt__sendq_extend_owned(&c->out->sq, buf, len, free_cb, arg))
        return -EAGAIN;
    flush_soon(c);
    return send_status(c);
}

int tt_send_file(tt_conn_t *c, int fd, uint64_t offset, uint64_t len, unsigned flags)
{
    struct stat st;
    int err, kind;
    uint8_t qflags = 0;
    bool own = (flags & TT_FILE_CLOSE_FD) != 0;

    if (c == NULL || fd < 0 || (flags & ~(unsigned)(TT_FILE_CLOSE_FD | TT_FILE_THEN_END))) {
        err = -EINVAL;
        goto fail;
    }
    err = check_sendable(c);
    if (err < 0)
        goto fail;
    if (fstat(fd, &st) < 0) {
        err = -errno;
        goto fail;
    }
    if (S_ISREG(st.st_mode)) {
        kind = TT__SQ_FILE;
        if (len == TT_FILE_TO_EOF && st.st_size == 0) {
            /* procfs and the like say 0 and still have contents: send until read
             * says end of file, however long that is. */
        } else if (offset > (uint64_t)st.st_size) {
            err = -EINVAL;
            goto fail;
        } else if (len == TT_FILE_TO_EOF) {
            /* st_size is what the file holds now, or (sysfs: 4096) an upper bound:
             * an earlier end of file ends the send, it is not an error. */
            len = (uint64_t)st.st_size - offset;
            qflags = TT__SQE_TO_EOF;
        } /* a len past st_size fails at EOF */
    } else {
        kind = TT__SQ_STREAM;
        if (offset != 0) {
            err = -ESPIPE;
            goto fail;
        }
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            err = -errno;
            goto fail;
        }
    }
    if (len == 0 && kind == TT__SQ_FILE) {
        if (own)
            close(fd);
    } else {
        tt__sendq_t *q = tt__conn_queue(c);
        err = q != NULL ? tt__sendq_push_file(q, kind, fd, offset, len, own) : -ENOMEM;
        if (err < 0)
            goto fail;
        q->tail->flags = qflags;
        flush_soon(c);
    }
    if (flags & TT_FILE_THEN_END)
        return tt_end(c, NULL, 0);
    return send_status(c);

fail:
    if (own && fd >= 0)
        close(fd);
    return err;
}

/* ---- public: closing ---------------------------------------------------------- */

int tt_end(tt_conn_t *c, const void *buf, size_t len)
{
    int err;

    if (c == NULL || (buf == NULL && len > 0))
        return -EINVAL;
    err = check_sendable(c);
    if (err < 0)
        return err;
    if (c->ext != NULL && c->ext->end_hook != NULL) {
        err = c->ext->end_hook(c, buf, len);
        if (err < 0)
            return err;
        if (tt__conn_is_closing(c))
            return 0;
        if (err > 0)
            len = 0; /* the layer sent it */
    }
    if (len > 0) {
        err = tt_send(c, buf, len);
        if (err < 0)
            return err;
        if (tt__conn_is_closing(c))
            return 0;
    }
    c->flags |= F_WANT_END;
    if (!(c->flags & F_RD_EOF))
        c->flags |= F_ENDED_FIRST;
    linger_restart(c);
    flush_soon(c); /* shutdown() once flushed, from the loop */
    return 0;
}

int tt_destroy(tt_conn_t *c, unsigned flags)
{
    if (c == NULL || (flags & ~(unsigned)TT_DESTROY_RESET))
        return -EINVAL;
    if (tt__conn_is_closing(c))
        return 0;
    if (flags & TT_DESTROY_RESET)
        c->flags |= F_RESET;
    tt__conn_close(c, TT_CLOSE_LOCAL_DESTROY, 0);
    return 0;
}

int tt_destroy_soon(tt_conn_t *c)
{
    if (c == NULL)
        return -EINVAL;
    if (tt__conn_is_closing(c))
        return 0;
    c->flags |= F_DESTROY_SOON;
    flush_soon(c);
    return 0;
}

/* ---- public: reading flow control ------------------------------------------- */

int tt_conn_read_stop(tt_conn_t *c)
{
    if (c == NULL)
        return -EINVAL;
    if (tt__conn_is_closing(c))
        return -ENOTCONN;
    c->flags &= ~F_READING;
    if (c->state == TT_STATE_OPEN)
        update_interest(c);
    return 0;
}

int tt_conn_read_start(tt_conn_t *c)
{
    if (c == NULL)
        return -EINVAL;
    if (tt__conn_is_closing(c))
        return -ENOTCONN;
    c->flags |= F_READING;
    if (c->state == TT_STATE_OPEN)
        update_interest(c);
    /* Input a layer held back while reading was stopped (framed messages of the
     * read that was under way, ciphertext a transform had not decrypted yet)
     * goes first, from the loop. */
    if (c->ext != NULL && (c->ext->read_resumed != NULL || c->ext->wire_ops != NULL))
        schedule(c, F_PEND_READ);
    return 0;
}

bool tt_conn_is_reading(const tt_conn_t *c)
{
    return c != NULL && (c->flags & F_READING) && !(c->flags & F_RD_EOF) &&
           !tt__conn_is_closing(c);
}

/* ---- public: accessors and options -------------------------------------------- */

void tt_conn_set_data(tt_conn_t *c, void *data)
{
    if (c != NULL)
        c->data = data;
}

void *tt_conn_get_data(const tt_conn_t *c) { return c != NULL ? c->data : NULL; }

tt_loop_t *tt_conn_loop(const tt_conn_t *c) { return c != NULL ? tt__conn_loop(c) : NULL; }

tt_server_t *tt_conn_server(const tt_conn_t *c) { return c != NULL ? tt__conn_server(c) : NULL; }

int tt_conn_set_handlers(tt_conn_t *c, const tt_conn_handlers_t *h)
{
    if (c == NULL || h == NULL)
        return -EINVAL;
    tt__handlers_t *hs = tt__handlers_new(h);
    if (hs == NULL)
        return -ENOMEM;
    hs->lim = c->h->lim; /* the limits and the server stay the connection's */
    hs->server = c->h->server;
    tt__handlers_unref(c->h);
    c->h = hs;
    return 0;
}

uint64_t tt_conn_id(const tt_conn_t *c) { return c != NULL ? c->id : 0; }

tt_conn_state_t tt_conn_state(const tt_conn_t *c)
{
    if (c == NULL)
        return TT_STATE_CLOSED;
    if (c->state != TT_STATE_OPEN)
        return (tt_conn_state_t)c->state;
    if (c->flags & F_WR_SHUT)
        return TT_STATE_WRITE_CLOSED;
    if (c->flags & F_WANT_END)
        return TT_STATE_WRITE_CLOSING;
    if (c->flags & F_RD_EOF)
        return TT_STATE_READ_CLOSED;
    return TT_STATE_OPEN;
}

const char *tt_conn_state_name(tt_conn_state_t s)
{
    static const char *const names[] = {"connecting",   "open",   "read-closed", "write-closing",
                                        "write-closed", "closing", "closed"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

const char *tt_close_kind_name(tt_close_kind_t k)
{
    static const char *const names[] = {
        "peer closed",     "local end",         "local destroy",       "peer reset",
        "connect failed",  "connect timeout",   "linger timeout",      "send queue overflow",
        "I/O error",       "idle timeout",      "heartbeat timeout",   "kernel timeout",
        "frame too large", "protocol error",    "server shutdown",     "websocket closed",
        "abnormal websocket close", "tls truncated",     "tls handshake failed",
        "tls handshake timeout", "tls error", "proxy protocol error"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

size_t tt_conn_queued_bytes(const tt_conn_t *c) { return c != NULL ? tt__conn_queue_bytes(c) : 0; }

uint64_t tt_conn_written_bytes(const tt_conn_t *c) { return c != NULL ? c->written : 0; }

/* A connection's limits change: kept in its send state unless they are the ones
 * it has already (a server's, usually). */
static int limits_set(tt_conn_t *c, const tt__limits_t *l)
{
    const tt__limits_t *cur = limits(c);
    if (l->high_water == cur->high_water && l->queue_cap_kib == cur->queue_cap_kib &&
        l->linger_ms == cur->linger_ms)
        return 0;
    return limits_own(c, l);
}

int tt_conn_set_high_water(tt_conn_t *c, size_t bytes)
{
    if (c == NULL)
        return -EINVAL;
    tt__limits_t l = *limits(c);
    size_t cap = l.queue_cap_kib != 0 ? (size_t)l.queue_cap_kib * 1024 : 0;
    if (limits_make(&l, bytes, cap) < 0)
        return -EINVAL;
    return limits_set(c, &l);
}

int tt_conn_set_queue_cap(tt_conn_t *c, size_t bytes)
{
    if (c == NULL)
        return -EINVAL;
    tt__limits_t l = *limits(c);
    if (limits_make(&l, l.high_water, bytes) < 0)
        return -EINVAL;
    return limits_set(c, &l);
}

int tt_conn_set_half_open(tt_conn_t *c, bool on)
{
    if (c == NULL)
        return -EINVAL;
    if (on)
        c->flags |= F_HALF_OPEN;
    else
        c->flags &= ~F_HALF_OPEN;
    return 0;
}

int tt_conn_set_linger(tt_conn_t *c, uint64_t ms)
{
    if (c == NULL || ms > UINT32_MAX)
        return -EINVAL;
    tt__limits_t l = *limits(c);
    l.linger_ms = (uint32_t)ms;
    return limits_set(c, &l);
}

static int conn_fd_or_err(const tt_conn_t *c)
{
    if (c == NULL)
        return -EINVAL;
    if (tt__conn_is_closing(c) || c->io.fd < 0)
        return -ENOTCONN;
    return c->io.fd;
}

int tt__conn_mark_unix(tt_conn_t *c, const tt_peer_cred_t *cred)
{
    tt_peer_cred_t got;
    tt__conn_ext_t *ext;

    c->flags |= F_UNIX;
    /* Before the socket is registered (it is not yet open): the io_uring backend
     * must never start a provided-buffer recv, which would drop descriptors. */
    if (c->h->h.on_fds != NULL)
        c->io.fdpass = 1;
    if (cred == NULL) {
        if (c->io.fd < 0 || tt__sock_peer_cred(c->io.fd, &got) < 0)
            return 0; /* none to keep: tt_conn_peer_cred says -ENOTCONN */
        cred = &got;
    }
    ext = tt__conn_ext(c);
    if (ext == NULL)
        return -ENOMEM;
    ext->cred = *cred;
    ext->has_cred = true;
    return 0;
}

bool tt__conn_is_unix(const tt_conn_t *c) { return (c->flags & F_UNIX) != 0; }

int tt_conn_peer_cred(const tt_conn_t *c, tt_peer_cred_t *out)
{
    if (c == NULL || out == NULL)
        return -EINVAL;
    if (!(c->flags & F_UNIX))
        return -EOPNOTSUPP;
    if (c->ext == NULL || !c->ext->has_cred)
        return -ENOTCONN;
    *out = c->ext->cred;
    return 0;
}

int tt_conn_set_nodelay(tt_conn_t *c, bool on)
{
    int fd = conn_fd_or_err(c);
    if (fd >= 0 && (c->flags & F_UNIX))
        return -EOPNOTSUPP; /* no Nagle on a Unix socket: every write goes at once */
    return fd < 0 ? fd : tt__sock_set_bool(fd, IPPROTO_TCP, TCP_NODELAY, on);
}

int tt_conn_set_keepalive(tt_conn_t *c, bool on)
{
    int fd = conn_fd_or_err(c);
    /* The kernel takes SO_KEEPALIVE on a Unix socket and does nothing with it. */
    if (fd >= 0 && (c->flags & F_UNIX))
        return -EOPNOTSUPP;
    return fd < 0 ? fd : tt__sock_set_bool(fd, SOL_SOCKET, SO_KEEPALIVE, on);
}

int tt_conn_set_sndbuf(tt_conn_t *c, int bytes)
{
    int fd = conn_fd_or_err(c);
    if (fd >= 0 && bytes <= 0)
        return -EINVAL;
    return fd < 0 ? fd : tt__sock_set_int(fd, SOL_SOCKET, SO_SNDBUF, bytes);
}

int tt_conn_set_rcvbuf(tt_conn_t *c, int bytes)
{
    int fd = conn_fd_or_err(c);
    if (fd >= 0 && bytes <= 0)
        return -EINVAL;
    return fd < 0 ? fd : tt__sock_set_int(fd, SOL_SOCKET, SO_RCVBUF, bytes);
}

int tt_conn_fd(const tt_conn_t *c)
{
    int fd = conn_fd_or_err(c);
    return fd < 0 ? -1 : fd;
}

int tt_conn_peer_addr(const tt_conn_t *c, tt_addr_t *out)
{
    int fd = conn_fd_or_err(c);
    if (out == NULL)
        return -EINVAL;
    if (fd >= 0 && c->ext != NULL && c->ext->peer_override != NULL) {
        *out = *c->ext->peer_override; /* the client a PROXY header named */
        return 0;
    }
    return fd < 0 ? fd : tt__sock_peer(fd, out);
}

int tt_conn_local_addr(const tt_conn_t *c, tt_addr_t *out)
{
    int fd = conn_fd_or_err(c);
    if (out == NULL)
        return -EINVAL;
    return fd < 0 ? fd : tt__sock_local(fd, out);
}

int tt_conn_get_stats(const tt_conn_t *c, tt_conn_stats_t *out)
{
    if (c == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->id = c->id;
    out->state = tt_conn_state(c);
    if (c->io.fd >= 0 && !tt__conn_is_closing(c)) {
        tt__sock_local(c->io.fd, &out->local);
        if (c->ext != NULL && c->ext->peer_override != NULL)
            out->peer = *c->ext->peer_override;
        else
            tt__sock_peer(c->io.fd, &out->peer);
    }
    out->age_ms = tt__conn_loop(c)->now - c->created_ms;
    out->bytes_in = c->bytes_in;
    out->bytes_out = c->written;
    if (c->ext != NULL && c->ext->wire_ops != NULL) {
        out->wire_bytes_in = c->ext->wire_in;
        out->wire_bytes_out = c->ext->wire_out;
    } else {
        out->wire_bytes_in = c->bytes_in;
        out->wire_bytes_out = c->written;
    }
    out->packets_in = c->packets_in;
    out->packets_out = c->packets_out;
    if (c->ext != NULL) {
        out->messages_in = c->ext->msgs_in;
        out->messages_out = c->ext->msgs_out;
    }
    out->queued_bytes = tt__conn_queue_bytes(c);
    out->bytes_queued_total = tt__conn_queued_total(c);
    if (c->ext != NULL && c->ext->has_cred) {
        out->has_cred = true;
        out->cred = c->ext->cred;
    }
    return 0;
}

int tt_conn_get_tcp_info(const tt_conn_t *c, tt_tcp_info_t *out)
{
    int fd = conn_fd_or_err(c);

    if (out == NULL)
        return -EINVAL;
    return fd < 0 ? fd : tt__sock_tcp_info(fd, out);
}
