/* The reconnecting client: one host and port, successive connections, backoff.
 *
 * A tt_client_t owns at most one connection at a time, made with
 * tt_connect_host(). Each connection is an ordinary one with its own exactly-once
 * on_close; the client installs wrappers around the application's on_open and
 * on_close to learn of opens and losses, and finds itself from the connection
 * through the connection's extension (ext->client), so the connection's user data
 * stays the application's.
 *
 * Timing: every attempt starts from the client's wheel node, the first one at the
 * current tick (so on_attempt, like every callback, comes from the loop). After a
 * loss or a failed attempt the wait is min_delay doubled once per wait since the
 * last successful connect, capped at max_delay, less a random part (jitter) so
 * that many clients cut off together do not come back in step.
 *
 * Keeping unsent bytes: at close, conn.c offers the queue to ext->take_unsent
 * before dropping it; the client moves the entries, as they are (borrowed buffers
 * keep their free callbacks, file segments their offsets), into its held queue,
 * and hands the held queue to the next connection as soon as it exists. Only
 * whole sends move: the send the kernel had taken part of is dropped, with the
 * rest of its chunk (copies are packed, so later sends in that chunk go too) and
 * any entry that continues it, because on the new stream its remainder would be
 * half a message. Bytes the kernel had taken but the peer never acknowledged are
 * not recoverable here: they are reported in bytes_unacked. */
#include <errno.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "stream/conn.h"
#include "endpoint/connector.h"
#include "proto/tls.h"
#include "proto/ws.h"

#define DEFAULT_MIN_DELAY 100
#define DEFAULT_MAX_DELAY 30000
#define MAX_NAME 254

struct tt_client {
    tt_loop_t *loop;
    char *host;
    uint16_t port;
    bool closed;  /* tt_client_close was called */
    bool freeing; /* the free is queued */
    tt_client_opts_t o; /* connect.bind_addr / bind_device point into this object */
    tt_addr_t bind_addr;
    char bind_device[IF_NAMESIZE];
    tt_client_handlers_t ch;
    tt_conn_handlers_t h;       /* the application's, for every connection */
    tt_conn_handlers_t wrapped; /* the same with our on_open/on_close */
    void *data;
    tt_conn_t *conn;      /* current connection, connecting or open */
    bool conn_opened;     /* it got on_open */
    tt__wnode_t timer;    /* the wait before the next attempt */
    uint64_t wait_ms;     /* how long that wait is */
    unsigned attempt;     /* attempts since the last successful connect */
    unsigned doublings;   /* waits since the last successful connect */
    int last_err;
    uint64_t rng;         /* xorshift64 state for the jitter */
    tt__sendq_t held;     /* keep_unsent: bytes for the next connection */
    struct tt__ws_cfg *ws; /* WebSocket: the URL and options, compiled once */
    tt__zombie_t zombie;
};

/* ---- lifetime ------------------------------------------------------------------- */

static void client_free(tt__zombie_t *z)
{
    tt_client_t *cl = tt__container_of(z, tt_client_t, zombie);
    tt__sendq_clear(&cl->held, NULL, NULL); /* free callbacks run from the loop */
    tt_tls_ctx_free(cl->o.connect.tls);
    free((char *)cl->o.connect.tls_servername);
    tt__ws_cfg_free(cl->ws);
    free(cl->host);
    free(cl);
}

/* Free once closed and no connection refers to us any more; at the end of the
 * round, so the callback we may be inside can still read the object. */
static void release(tt_client_t *cl)
{
    if (!cl->closed || cl->conn != NULL || cl->freeing)
        return;
    cl->freeing = true;
    tt__loop_defer_free(cl->loop, &cl->zombie);
}

static tt_client_t *client_of(const tt_conn_t *c)
{
    return c->ext != NULL ? c->ext->client : NULL;
}

/* ---- the held queue ---------------------------------------------------------------- */

/* Append src's entries to dst (src left empty). Pure list surgery: the entries keep
 * their partial offsets, free callbacks and fds. */
static void sq_append(tt__sendq_t *dst, tt__sendq_t *src)
{
    if (src->head == NULL)
        return;
    if (dst->head == NULL)
        dst->head = src->head;
    else
        dst->tail->next = src->head;
    dst->tail = src->tail;
    dst->bytes += src->bytes;
    dst->mem += src->mem;
    dst->alloc += src->alloc;
    dst->total += src->bytes;
    src->head = src->tail = NULL;
    src->bytes = src->mem = src->alloc = 0;
}

/* ext->take_unsent: the connection closes; its unsent bytes go first, then what
 * was sent to the client after the connection had begun closing. */
static uint64_t take_unsent(tt_conn_t *c)
{
    tt_client_t *cl = client_of(c);
    uint64_t n = tt__conn_queue_bytes(c);
    tt__sendq_t q, none, *sq = c->out != NULL ? &c->out->sq : &none;

    tt__sendq_init(&none, NULL);
    if (cl == NULL || cl->closed)
        return tt__sendq_clear(sq, NULL, NULL);
    /* Whole sends only: the kernel took part of the head send (or the head
     * continues a send that went), and the next connection is a new stream, so
     * its remainder would be half a message there. Drop up to the first entry
     * that starts a send; the dropped bytes are reported as unsent like the rest. */
    while (sq->head != NULL && (sq->head->flags & (TT__SQE_STARTED | TT__SQE_CONT)))
        tt__sendq_pop(sq);
    tt__sendq_init(&q, NULL);
    sq_append(&q, sq);
    sq_append(&q, &cl->held);
    cl->held = q;
    return n;
}

/* ---- scheduling -------------------------------------------------------------------- */

static uint64_t next_random(tt_client_t *cl)
{
    uint64_t x = cl->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return cl->rng = x;
}

static uint64_t backoff(tt_client_t *cl)
{
    uint64_t d = cl->o.min_delay_ms;

    for (unsigned i = 0; i < cl->doublings && d < cl->o.max_delay_ms; i++)
        d *= 2;
    if (d > cl->o.max_delay_ms)
        d = cl->o.max_delay_ms;
    if (cl->o.jitter_pct > 0 && d > 0)
        d -= next_random(cl) % (d * cl->o.jitter_pct / 100 + 1);
    return d;
}

static void schedule(tt_client_t *cl, uint64_t ms)
{
    cl->wait_ms = ms;
    tt__wheel_start(&cl->loop->wheel, &cl->timer, tt__loop_deadline(cl->loop, ms));
}

static void retry_later(tt_client_t *cl)
{
    uint64_t d = backoff(cl);
    cl->doublings++;
    schedule(cl, d);
}

/* An attempt failed (never opened): give up at the cap, else wait and retry. */
static void after_failure(tt_client_t *cl)
{
    if (cl->o.max_attempts > 0 && cl->attempt >= cl->o.max_attempts) {
        if (cl->ch.on_give_up != NULL)
            cl->ch.on_give_up(cl, cl->last_err);
        return;
    }
    retry_later(cl);
}

/* ---- connection wrappers ------------------------------------------------------------- */

static void w_open(tt_conn_t *c)
{
    tt_client_t *cl = client_of(c);

    if (cl == NULL)
        return;
    cl->conn_opened = true;
    if (cl->h.on_open != NULL)
        cl->h.on_open(c);
    if (cl->closed || tt__conn_is_closing(c))
        return;
    cl->attempt = 0;
    cl->doublings = 0;
    if (cl->ch.on_connected != NULL)
        cl->ch.on_connected(cl, c);
}

static void w_close(tt_conn_t *c, const tt_close_info_t *info)
{
    tt_client_t *cl = client_of(c);
    bool opened;

    if (cl == NULL)
        return;
    opened = cl->conn == c && cl->conn_opened;
    if (cl->conn == c)
        cl->conn = NULL;
    if (cl->h.on_close != NULL)
        cl->h.on_close(c, info);
    if (cl->closed) {
        release(cl);
        return;
    }
    if (cl->ch.on_disconnected != NULL)
        cl->ch.on_disconnected(cl, info);
    if (cl->closed) {
        release(cl);
        return;
    }
    if (opened) {
        retry_later(cl); /* lost after it worked: the first wait is min_delay */
        return;
    }
    cl->last_err = info->error;
    after_failure(cl);
}

/* ---- attempts ------------------------------------------------------------------------ */

static void attempt_cb(tt__wnode_t *node)
{
    tt_client_t *cl = tt__container_of(node, tt_client_t, timer);
    tt__conn_ext_t *ext;
    tt_conn_t *c;
    int err;

    cl->attempt++;
    if (cl->ch.on_attempt != NULL)
        cl->ch.on_attempt(cl, cl->attempt, cl->wait_ms);
    if (cl->closed || tt__wnode_active(&cl->timer))
        return; /* closed, or (odd but allowed) something re-armed us */
    if (cl->ws != NULL) /* the upgrade again, with a fresh key */
        err = tt__ws_connect_cfg(cl->loop, cl->ws, &cl->o.connect, &cl->wrapped, cl->data, &c);
    else
        err = tt_connect_host(cl->loop, cl->host, cl->port, &cl->o.connect, &cl->wrapped,
                              cl->data, &c);
    if (err < 0) {
        cl->last_err = err;
        after_failure(cl);
        return;
    }
    ext = c->ext;
    if (ext == NULL || tt__conn_is_closing(c)) {
        /* Out of memory inside tt_connect_host: that connection closes on its own
         * (with no client to tell); count a failed attempt. */
        cl->last_err = -ENOMEM;
        after_failure(cl);
        return;
    }
    cl->conn = c;
    cl->conn_opened = false;
    ext->client = cl;
    if (cl->o.keep_unsent) {
        ext->take_unsent = take_unsent;
        if (!tt__sendq_empty(&cl->held)) {
            tt__sendq_t *q = tt__conn_queue(c);
            if (q == NULL) { /* kept for the next attempt: take_unsent gives them back */
                tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM);
                return;
            }
            sq_append(q, &cl->held); /* the new connection's queue is still empty */
        }
    }
}

/* ---- public ----------------------------------------------------------------------- */

int tt_client_start(tt_loop_t *loop, const char *host, uint16_t port,
                    const tt_client_opts_t *opts, const tt_client_handlers_t *ch,
                    const tt_conn_handlers_t *h, void *data, tt_client_t **out)
{
    tt_client_opts_t o = {0};
    tt_client_t *cl;
    const tt_connect_opts_t *co;
    int err;

    if (loop == NULL || host == NULL || out == NULL)
        return -EINVAL;
    if (opts != NULL)
        o = *opts;
    bool ws = o.websocket != NULL || strncasecmp(host, "ws://", 5) == 0 ||
              strncasecmp(host, "wss://", 6) == 0;
    if ((!ws && strlen(host) > MAX_NAME) || (ws && o.keep_unsent))
        return -EINVAL; /* held raw frames would precede the next upgrade */
    co = &o.connect;
    if (o.min_delay_ms == 0)
        o.min_delay_ms = DEFAULT_MIN_DELAY;
    if (o.max_delay_ms == 0)
        o.max_delay_ms = o.min_delay_ms > DEFAULT_MAX_DELAY ? o.min_delay_ms : DEFAULT_MAX_DELAY;
    if (o.min_delay_ms > o.max_delay_ms || o.max_delay_ms > TT_TIMEOUT_MAX ||
        o.jitter_pct > 100 || co->timeout_ms > TT_TIMEOUT_MAX ||
        co->attempt_delay_ms > TT_TIMEOUT_MAX ||
        (co->family != AF_UNSPEC && co->family != AF_INET && co->family != AF_INET6))
        return -EINVAL;
    err = tt__connect_check_local(co, co->family);
    if (err == 0 && !ws) /* a URL's TLS is its scheme's: tt__ws_transport below */
        err = tt__connect_tls_check(co, host, NULL);
    if (err < 0)
        return err;

    cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return -ENOMEM;
    tt_tls_ctx_t *made = NULL; /* wss:// without a context: one for every attempt */
    if (ws) {
        tt_connect_opts_t co2 = o.connect;
        err = tt__ws_client_cfg_new(&cl->ws, host, o.websocket);
        if (err == 0)
            err = tt__ws_transport(cl->ws, &co2, &made); /* checked now, not per attempt */
        if (err < 0) {
            tt__ws_cfg_free(cl->ws);
            free(cl);
            return err;
        }
        o.connect.tls = co2.tls; /* kept (and resumed) across reconnects */
        o.websocket = NULL; /* compiled: the caller's struct is not kept */
        cl->o.websocket = NULL;
    }
    cl->host = strdup(host);
    char *sn = co->tls_servername != NULL ? strdup(co->tls_servername) : NULL;
    if (cl->host == NULL || (co->tls_servername != NULL && sn == NULL)) {
        free(sn);
        free(cl->host);
        tt__ws_cfg_free(cl->ws);
        tt_tls_ctx_free(made);
        free(cl);
        return -ENOMEM;
    }
    cl->loop = loop;
    cl->port = port;
    cl->o = o;
    cl->o.connect.tls = tt__tls_ctx_ref(co->tls); /* every reconnect shakes hands again */
    tt_tls_ctx_free(made);
    cl->o.connect.tls_servername = sn;
    if (co->bind_addr != NULL) {
        cl->bind_addr = *co->bind_addr;
        cl->o.connect.bind_addr = &cl->bind_addr;
    }
    if (co->bind_device != NULL) {
        strcpy(cl->bind_device, co->bind_device); /* length checked above */
        cl->o.connect.bind_device = cl->bind_device;
    }
    if (ch != NULL)
        cl->ch = *ch;
    if (h != NULL)
        cl->h = *h;
    cl->wrapped = cl->h;
    cl->wrapped.on_open = w_open;
    cl->wrapped.on_close = w_close;
    cl->data = data;
    tt__sendq_init(&cl->held, NULL);
    tt__wnode_init(&cl->timer, attempt_cb);
    cl->zombie.free_fn = client_free;
    /* The jitter needs no strong randomness, only clients that differ. */
    if (getrandom(&cl->rng, sizeof(cl->rng), GRND_NONBLOCK) != sizeof(cl->rng))
        cl->rng = (uint64_t)(uintptr_t)cl ^ ((uint64_t)time(NULL) << 20);
    cl->rng |= 1; /* xorshift must not start at 0 */
    loop->handles++;
    schedule(cl, 0); /* the first attempt, from the loop's next round */
    *out = cl;
    return 0;
}

int tt_client_close(tt_client_t *cl)
{
    if (cl == NULL || cl->closed)
        return -EINVAL;
    cl->closed = true;
    cl->loop->handles--;
    tt__wheel_stop(&cl->loop->wheel, &cl->timer);
    if (cl->conn != NULL)
        tt_destroy(cl->conn, 0); /* its on_close comes from the loop, then release() */
    release(cl);
    return 0;
}

tt_conn_t *tt_client_conn(const tt_client_t *cl) { return cl != NULL ? cl->conn : NULL; }

int tt_client_send(tt_client_t *cl, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    int err;

    if (cl == NULL || cl->closed || (buf == NULL && len > 0))
        return -EINVAL;
    if (cl->conn != NULL && !tt__conn_is_closing(cl->conn))
        return tt_send(cl->conn, buf, len);
    if (!cl->o.keep_unsent)
        return cl->conn != NULL ? -EPIPE : -ENOTCONN;
    /* Between connections: held, under the same cap a connection would apply. */
    if (cl->held.alloc + len + TT__SQ_NODE_COST > TT_DEFAULT_QUEUE_CAP)
        return -ENOBUFS;
    if (len == 0)
        return 0;
    err = tt__sendq_push_copy(&cl->held, &iov, 1, len);
    if (err < 0)
        return err;
    return cl->held.bytes >= TT_DEFAULT_HIGH_WATER ? TT_SEND_FULL : 0;
}

tt_client_t *tt_conn_client(const tt_conn_t *c) { return c != NULL ? client_of(c) : NULL; }

void *tt_client_get_data(const tt_client_t *cl) { return cl != NULL ? cl->data : NULL; }

void tt_client_set_data(tt_client_t *cl, void *data)
{
    if (cl != NULL)
        cl->data = data;
}

unsigned tt_client_attempts(const tt_client_t *cl) { return cl != NULL ? cl->attempt : 0; }
