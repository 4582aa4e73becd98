/* `tether bench ADDR:PORT`: a load generator for echo servers, written against the
 * public API like any user program.
 *
 * Each message is --size bytes; the server echoes bytes, so a message is complete
 * when --size more bytes have come back on its connection (stream reassembly by byte
 * count: a read may hold part of a message or several). Three ways to load:
 *  - closed loop (default): every connection keeps --pipeline messages in flight and
 *    sends a new one for each that completes; latency is from send to completion.
 *  - open loop (--rate R): R messages/s in total, sent on a fixed schedule whatever
 *    the replies do; latency is from the *scheduled* send time, so a stalled server
 *    is charged for every message it delayed (no coordinated omission). Slots of the
 *    schedule that could not be sent on time (every connection blocked) are counted
 *    as late; slots of the window not answered by its end as missed.
 *  - churn (--churn): each connection slot connects, does one exchange, closes and
 *    starts over; the rate is connections per second, latency covers the whole
 *    connect + exchange.
 * Connections are split over --threads loops, one per thread. All connections are
 * opened before the clock starts; --warmup seconds are run but not counted.
 * Only what completes inside the measured window counts. Times are CLOCK_MONOTONIC
 * nanoseconds; latencies go to a log-linear histogram (hdr.h), merged per thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_tls.h"
#include "hdr.h"
#include "tether.h"

#define NS_PER_S UINT64_C(1000000000)
#define NS_PER_MS UINT64_C(1000000)
#define MAX_DURATION_S 600.0
#define MAX_SIZE ((size_t)16 << 20)
#define MAX_PIPELINE 4096u
#define MAX_BATCH_BYTES ((size_t)64 << 20) /* size * pipeline: one send buffer */
#define MAX_CONNECTIONS 1000000u
#define MAX_THREADS 256u
#define CONNECT_TIMEOUT_MS 5000
/* How long the coordinator waits for every connection to open (or fail) before it
 * starts the clock anyway; each worker keeps its loop alive at least this long. */
#define CONNECT_PHASE_MS 15000
/* Open loop: in-flight messages one connection may owe before it counts as
 * saturated and is skipped (its schedule slots go to other connections). */
#define RING_MAX (1u << 20)
/* Open loop: below this gap to the next scheduled send the worker polls instead of
 * sleeping, because the loop's timers tick in whole milliseconds. */
#define SPIN_NS (2 * NS_PER_MS)
/* Open loop: a message sent more than this after its scheduled time counts as late
 * (the generator could not keep its schedule: every connection was blocked or
 * saturated, or the client itself fell behind). */
#define LATE_NS NS_PER_MS
#define HDR_BITS 8 /* 0.78 % worst-case bucket error */

enum mode { MODE_CLOSED, MODE_RATE, MODE_CHURN };

struct opts {
    tt_addr_t addr;     /* where the probe connection went (the name resolved once) */
    const char *target; /* as typed: HOST:PORT, HOST may be a name */
    char host[256];
    uint16_t port;
    bool progress;
    unsigned connections;
    size_t size;
    double duration;
    double warmup;
    unsigned pipeline;
    double rate;
    unsigned threads;
    uint64_t messages; /* stop after this many counted messages; 0: no limit */
    bool json;
    enum mode mode;
    uint32_t bind_first; /* host order; bind_count 0: no binding */
    uint32_t bind_count;
    cli_tls_t tls;       /* --tls, --tls-* */
    tt_tls_ctx_t *tls_ctx; /* shared by every connection of every thread */
    const char *tls_name;  /* sent and verified: --tls-servername, or the host name */
};

/* State every worker reads; written by the coordinator before it posts "go" (the
 * post's mutex orders these writes before the worker's reads). */
struct shared {
    const struct opts *o;
    uint64_t t0;                  /* clock start */
    uint64_t win_start;           /* t0 + warmup */
    uint64_t win_end;             /* win_start + duration */
    atomic_uint_fast64_t counted; /* for --messages */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned ready; /* workers whose connections have all opened or failed */
    /* Under mu: */
    unsigned connect_failed; /* connections that did not open in the connect phase */
    int connect_error;       /* the first such failure */
    bool abort;              /* a worker found the target refusing: stop everyone */
    unsigned done;           /* workers whose loop has returned */
};

struct worker;

struct client {
    struct worker *w;
    tt_conn_t *conn; /* NULL when not connected */
    bool open;
    bool blocked;                     /* TT_SEND_FULL seen; waiting for on_drain */
    size_t rx_got;                    /* bytes of the oldest in-flight message received */
    uint64_t *ts;                     /* send (or scheduled) time of each in-flight message */
    uint32_t ts_head, ts_len, ts_cap; /* ring; ts_cap is a power of two */
    uint64_t cycle_start;             /* churn: when this connect began */
};

struct worker {
    struct shared *sh;
    const struct opts *o;
    pthread_t tid;
    tt_loop_t *loop;
    struct client *clients;
    unsigned nclients;
    unsigned settled; /* connect phase: opened or failed */
    unsigned open_now;
    tt_timer_t *end_timer;
    tt_timer_t *tick_timer; /* open loop wake-ups; churn retries */
    char *txbuf;
    size_t txcap;
    bool running;  /* "go" received */
    bool stopping; /* finish() ran */
    /* open loop schedule: one per worker, messages dealt round-robin */
    uint64_t next_due;
    uint64_t interval;
    unsigned rr;
    uint32_t bind_next;
    /* results */
    hdr_hist_t hist;
    uint64_t counted;
    uint64_t opened;
    uint64_t connect_errors;
    uint64_t errors;
    /* open loop, counting only slots scheduled inside the measured window: */
    uint64_t scheduled; /* slots of the schedule */
    uint64_t late;      /* sent more than LATE_NS after their slot, or not at all */
    uint64_t missed;    /* not completed before the window ended (or never sent) */
    int first_error;
    uint64_t t_finish;
    int init_err;
    bool loop_done;                /* under sh->mu: the loop returned; post nothing more */
    atomic_uint_fast64_t progress; /* `counted`, published for the progress line */
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void note_error(struct worker *w, int err)
{
    if (w->first_error == 0)
        w->first_error = err;
}

/* ---- in-flight ring ---------------------------------------------------------- */

static int ring_push(struct client *c, uint64_t t)
{
    if (c->ts_len == c->ts_cap) {
        uint32_t cap = c->ts_cap ? c->ts_cap * 2 : 16;
        uint64_t *ts;

        if (cap > RING_MAX)
            return -ENOBUFS;
        ts = malloc(cap * sizeof(*ts));
        if (ts == NULL)
            return -ENOMEM;
        /* Unroll the old ring so the head is at 0. */
        for (uint32_t i = 0; i < c->ts_len; i++)
            ts[i] = c->ts[(c->ts_head + i) & (c->ts_cap - 1)];
        free(c->ts);
        c->ts = ts;
        c->ts_cap = cap;
        c->ts_head = 0;
    }
    c->ts[(c->ts_head + c->ts_len) & (c->ts_cap - 1)] = t;
    c->ts_len++;
    return 0;
}

static uint64_t ring_pop(struct client *c)
{
    uint64_t t = c->ts[c->ts_head];

    c->ts_head = (c->ts_head + 1) & (c->ts_cap - 1);
    c->ts_len--;
    return t;
}

/* ---- measuring --------------------------------------------------------------- */

static void finish(struct worker *w);

static bool in_window(const struct shared *sh, uint64_t t)
{
    return t >= sh->win_start && t < sh->win_end;
}

/* A message (or churn cycle) that began at `start` completed at `now`. */
static void complete(struct worker *w, uint64_t start, uint64_t now)
{
    struct shared *sh = w->sh;

    if (now < sh->win_start || now >= sh->win_end) {
        if (w->o->mode == MODE_RATE && now >= sh->win_end && in_window(sh, start))
            w->missed++; /* its slot was in the window, its answer came after it */
        return;
    }
    w->counted++;
    atomic_store_explicit(&w->progress, w->counted, memory_order_relaxed);
    hdr_record(&w->hist, now - start);
    if (w->o->messages && atomic_fetch_add(&sh->counted, 1) + 1 >= w->o->messages)
        finish(w);
}

/* ---- sending ----------------------------------------------------------------- */

/* Queue `n` messages on `c` as one send, stamped t, t + step, t + 2 * step, ...
 * Returns 0 or the error (the connection is then being destroyed). */
static int send_messages(struct client *c, unsigned n, uint64_t t, uint64_t step)
{
    struct worker *w = c->w;
    size_t len = (size_t)n * w->o->size;
    int err;

    /* Destroyed already (its on_close is on the way, and counts it): not again. */
    if (tt_conn_state(c->conn) >= TT_STATE_CLOSING)
        return -EPIPE;
    for (unsigned i = 0; i < n; i++) {
        err = ring_push(c, t + i * step);
        if (err < 0)
            goto fail;
    }
    err = tt_send(c->conn, w->txbuf, len);
    if (err == TT_SEND_FULL)
        c->blocked = true;
    else if (err < 0)
        goto fail;
    return 0;

fail:
    w->errors++;
    note_error(w, err);
    tt_destroy(c->conn, 0);
    return err;
}

/* Open loop: send the messages whose scheduled time has come, dealt round-robin to
 * the connections able to take them. A message that finds none stays due and keeps
 * its scheduled time, so a backlog shows in the latencies. When several are due,
 * a connection takes up to a send buffer's worth in one send (a real client with a
 * write buffer would, too), and one call makes at most one pass over the
 * connections, so reading is never starved by a runaway schedule. */
static void pump(struct worker *w)
{
    uint64_t now = now_ns();
    unsigned batch_max = (unsigned)(w->txcap / w->o->size);

    for (unsigned pass = 0; pass < w->nclients && !w->stopping; pass++) {
        struct client *c = NULL;
        uint64_t due;
        unsigned n;

        if (w->next_due > now)
            return;
        for (unsigned k = 0; k < w->nclients; k++) {
            struct client *cand = &w->clients[(w->rr + k) % w->nclients];

            if (cand->open && !cand->blocked && cand->ts_len + batch_max <= RING_MAX) {
                c = cand;
                w->rr = (w->rr + k + 1) % w->nclients;
                break;
            }
        }
        if (c == NULL)
            return;
        due = (now - w->next_due) / w->interval + 1;
        n = due < batch_max ? (unsigned)due : batch_max;
        if (send_messages(c, n, w->next_due, w->interval) < 0)
            continue;
        for (unsigned i = 0; i < n; i++) {
            uint64_t slot = w->next_due + i * w->interval;

            if (now - slot > LATE_NS && in_window(w->sh, slot))
                w->late++;
        }
        w->next_due += n * w->interval;
    }
}

/* ---- connection callbacks ---------------------------------------------------- */

static void start_cycle(struct client *c);

/* For the coordinator: a connection that never opened. With `abort`, every worker
 * is to stop (the coordinator posts it). */
static void record_connect_failure(struct worker *w, int err, bool abort)
{
    pthread_mutex_lock(&w->sh->mu);
    if (w->sh->connect_failed++ == 0)
        w->sh->connect_error = err;
    if (abort) {
        w->sh->abort = true;
        pthread_cond_signal(&w->sh->cv);
    }
    pthread_mutex_unlock(&w->sh->mu);
}

/* No connection of this worker is open or still connecting. */
static bool nothing_left(const struct worker *w)
{
    for (unsigned i = 0; i < w->nclients; i++)
        if (w->clients[i].conn != NULL && tt_conn_state(w->clients[i].conn) < TT_STATE_CLOSING)
            return false;
    return true;
}

static void connect_settled(struct worker *w)
{
    if (++w->settled != w->nclients)
        return;
    pthread_mutex_lock(&w->sh->mu);
    w->sh->ready++;
    pthread_cond_signal(&w->sh->cv);
    pthread_mutex_unlock(&w->sh->mu);
}

static void on_open(tt_conn_t *conn)
{
    struct client *c = tt_conn_get_data(conn);
    struct worker *w = c->w;

    c->open = true;
    w->opened++;
    w->open_now++;
    switch (w->o->mode) {
    case MODE_CLOSED:
        if (!w->running)
            connect_settled(w);
        else if (!w->stopping) /* opened late: join in at once */
            send_messages(c, w->o->pipeline, now_ns(), 0);
        break;
    case MODE_RATE:
        if (!w->running)
            connect_settled(w);
        break;
    case MODE_CHURN:
        send_messages(c, 1, c->cycle_start, 0);
        break;
    }
}

static void on_data(tt_conn_t *conn, const void *data, size_t len, size_t pending)
{
    struct client *c = tt_conn_get_data(conn);
    struct worker *w = c->w;
    size_t size = w->o->size;
    unsigned done = 0;
    uint64_t now;

    (void)data;
    (void)pending;
    c->rx_got += len;
    if (c->rx_got < size)
        return;
    now = now_ns();
    while (c->rx_got >= size) {
        if (c->ts_len == 0) {
            /* More came back than was sent: not an echo server. */
            w->errors++;
            note_error(w, TT_EPROTOCOL);
            tt_destroy(conn, 0);
            return;
        }
        c->rx_got -= size;
        complete(w, ring_pop(c), now);
        done++;
    }
    if (w->stopping || c->conn == NULL)
        return;
    if (w->o->mode == MODE_CLOSED)
        send_messages(c, done, now, 0);
    else if (w->o->mode == MODE_CHURN)
        tt_destroy(conn, 0); /* one exchange per connection; on_close starts the next */
}

static void on_drain(tt_conn_t *conn)
{
    struct client *c = tt_conn_get_data(conn);

    c->blocked = false;
    if (c->w->o->mode == MODE_RATE && c->w->running)
        pump(c->w);
}

static void on_close(tt_conn_t *conn, const tt_close_info_t *info)
{
    struct client *c = tt_conn_get_data(conn);
    struct worker *w = c->w;
    bool was_open = c->open;

    c->conn = NULL;
    c->open = false;
    c->blocked = false;
    c->rx_got = 0;
    c->ts_len = 0;
    c->ts_head = 0;
    if (was_open)
        w->open_now--;
    if (!was_open && w->stopping && info->kind == TT_CLOSE_LOCAL_DESTROY) {
        /* Churn: a slot still connecting (over TLS, still shaking hands) when the
         * run ended was stopped by finish(), not refused. */
    } else if (!was_open) {
        int err = info->error ? info->error : -ECONNABORTED;

        w->connect_errors++;
        note_error(w, err);
        if (w->o->mode != MODE_CHURN && !w->running) {
            record_connect_failure(w, err, false);
            connect_settled(w);
        } else if (w->o->mode == MODE_CHURN && w->opened == 0 && !w->stopping) {
            /* Not one churn connect has worked: the target refuses, stop now
             * rather than retry for the whole duration. */
            record_connect_failure(w, err, true);
            finish(w);
        }
    } else if (info->kind != TT_CLOSE_LOCAL_DESTROY && !w->stopping) {
        w->errors++; /* the server dropped a connection in the middle of the run */
        note_error(w, info->error ? info->error : TT_EOF);
    }
    if (w->o->mode == MODE_CHURN && w->running && !w->stopping && was_open)
        start_cycle(c);
    else if (w->o->mode != MODE_CHURN && w->running && !w->stopping && nothing_left(w))
        finish(w); /* every connection is gone: nothing more to measure here */
    /* A failed churn connect is retried by the tick timer, not here, so a refusing
     * server is not hammered in a tight loop. */
}

static const tt_conn_handlers_t handlers = {
    .on_open = on_open,
    .on_data = on_data,
    .on_drain = on_drain,
    .on_close = on_close,
};

static int client_connect(struct client *c)
{
    struct worker *w = c->w;
    tt_connect_opts_t co = {.timeout_ms = CONNECT_TIMEOUT_MS,
                            .tls = w->o->tls_ctx,
                            .tls_servername = w->o->tls_name};
    tt_addr_t bind_addr;
    int err;

    if (w->o->bind_count) {
        /* Spread source addresses over 127.x so each has its own ephemeral ports. */
        memset(&bind_addr, 0, sizeof(bind_addr));
        bind_addr.u.in4.sin_family = AF_INET;
        bind_addr.u.in4.sin_addr.s_addr = htonl(w->o->bind_first + w->bind_next);
        bind_addr.len = sizeof(bind_addr.u.in4);
        w->bind_next = (w->bind_next + 1) % w->o->bind_count;
        co.bind_addr = &bind_addr;
    }
    err = tt_connect(w->loop, &w->o->addr, &co, &handlers, c, &c->conn);
    if (err < 0) {
        c->conn = NULL;
        w->connect_errors++;
        note_error(w, err);
    }
    return err;
}

static void start_cycle(struct client *c)
{
    c->cycle_start = now_ns();
    client_connect(c);
}

/* ---- worker ------------------------------------------------------------------ */

/* Slots t0 + k * interval (k >= 0) in [a, b). */
static uint64_t slots_between(uint64_t t0, uint64_t interval, uint64_t a, uint64_t b)
{
    uint64_t first, end;

    if (b <= a)
        return 0;
    first = a <= t0 ? 0 : (a - t0 + interval - 1) / interval;
    end = b <= t0 ? 0 : (b - t0 + interval - 1) / interval;
    return end > first ? end - first : 0;
}

/* Open loop, at the end: the window's slots, and those of them still owed now
 * (in flight, or never sent because no connection could take them). */
static void count_schedule(struct worker *w)
{
    const struct shared *sh = w->sh;
    uint64_t end = w->t_finish < sh->win_end ? w->t_finish : sh->win_end;

    w->scheduled = slots_between(sh->t0, w->interval, sh->win_start, end);
    if (w->next_due < end) {
        uint64_t from = w->next_due > sh->win_start ? w->next_due : sh->win_start;

        /* Never sent: missed, and late too once their time is LATE_NS past. */
        w->missed += slots_between(sh->t0, w->interval, from, end);
        if (end > LATE_NS)
            w->late += slots_between(sh->t0, w->interval, from, end - LATE_NS);
    }
    for (unsigned i = 0; i < w->nclients; i++) {
        const struct client *c = &w->clients[i];

        for (uint32_t k = 0; k < c->ts_len; k++) {
            uint64_t t = c->ts[(c->ts_head + k) & (c->ts_cap - 1)];

            if (t >= sh->win_start && t < end)
                w->missed++;
        }
    }
}

static void finish(struct worker *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    w->t_finish = now_ns();
    if (w->o->mode == MODE_RATE && w->running && w->interval > 0)
        count_schedule(w);
    tt_timer_close(w->end_timer);
    tt_timer_close(w->tick_timer);
    for (unsigned i = 0; i < w->nclients; i++)
        if (w->clients[i].conn)
            tt_destroy(w->clients[i].conn, 0);
}

static void on_end_timer(tt_timer_t *t, void *data)
{
    (void)t;
    finish(data);
}

static void on_tick(tt_timer_t *t, void *data)
{
    struct worker *w = data;

    (void)t;
    if (w->o->mode != MODE_CHURN || !w->running || w->stopping)
        return;
    for (unsigned i = 0; i < w->nclients; i++)
        if (w->clients[i].conn == NULL)
            start_cycle(&w->clients[i]);
}

static uint64_t ms_until(uint64_t deadline)
{
    uint64_t now = now_ns();

    return deadline > now ? (deadline - now + NS_PER_MS - 1) / NS_PER_MS : 0;
}

/* Posted by the coordinator once every worker is connected: start the clock. */
static void go(tt_loop_t *loop, void *arg)
{
    struct worker *w = arg;
    const struct opts *o = w->o;
    uint64_t now = now_ns();

    (void)loop;
    w->running = true;
    if (w->stopping)
        return;
    if (o->mode != MODE_CHURN && nothing_left(w)) {
        finish(w); /* the server closed them all before the clock started */
        return;
    }
    tt_timer_start(w->end_timer, ms_until(w->sh->win_end), 0);
    switch (o->mode) {
    case MODE_CLOSED:
        for (unsigned i = 0; i < w->nclients; i++)
            if (w->clients[i].open)
                send_messages(&w->clients[i], o->pipeline, now, 0);
        break;
    case MODE_RATE:
        /* This worker's share of the rate, proportional to its connections. */
        w->interval = (uint64_t)((double)NS_PER_S * o->connections / (o->rate * w->nclients));
        if (w->interval == 0)
            w->interval = 1;
        w->next_due = w->sh->t0;
        tt_timer_start(w->tick_timer, 1, 1);
        pump(w);
        break;
    case MODE_CHURN:
        tt_timer_start(w->tick_timer, 10, 10);
        for (unsigned i = 0; i < w->nclients; i++)
            start_cycle(&w->clients[i]);
        break;
    }
}

/* Posted by the coordinator instead of (or after) "go": stop now. */
static void quit(tt_loop_t *loop, void *arg)
{
    struct worker *w = arg;

    (void)loop;
    finish(w);
}

static void run_loop(struct worker *w)
{
    if (w->o->mode != MODE_RATE) {
        tt_loop_run(w->loop, TT_RUN_DEFAULT);
        return;
    }
    /* Open loop: the schedule is finer than the loop's millisecond timers, so when
     * the next send is near, poll rather than sleep. */
    while (!w->stopping) {
        tt_run_mode_t mode = TT_RUN_ONCE;

        if (w->running) {
            pump(w);
            if (w->next_due < now_ns() + SPIN_NS)
                mode = TT_RUN_NOWAIT;
        }
        if (tt_loop_run(w->loop, mode) <= 0)
            break;
    }
    tt_loop_run(w->loop, TT_RUN_DEFAULT); /* deliver the remaining on_close */
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct opts *o = w->o;
    /* Closed loop refills up to `pipeline` messages in one send; the open loop
     * batches a backlog, up to 64 messages or 1 MiB. */
    size_t batch = o->mode == MODE_CLOSED ? o->pipeline : 1;

    if (o->mode == MODE_RATE) {
        batch = ((size_t)1 << 20) / o->size;
        batch = batch > 64 ? 64 : batch < 1 ? 1 : batch;
    }
    int err;

    w->txcap = batch * o->size;
    w->txbuf = malloc(w->txcap);
    if (w->txbuf == NULL) {
        err = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < w->txcap; i++)
        w->txbuf[i] = (char)('a' + i % 26);
    err = hdr_init(&w->hist, HDR_BITS);
    if (err < 0)
        goto fail_buf;
    err = tt_loop_init(&w->loop);
    if (err < 0)
        goto fail_hist;
    err = tt_timer_init(w->loop, &w->end_timer, on_end_timer, w);
    if (err < 0)
        goto fail_loop;
    err = tt_timer_init(w->loop, &w->tick_timer, on_tick, w);
    if (err < 0)
        goto fail_end_timer;
    /* Keeps the loop alive (and bounds it) until "go" restarts it with the real
     * deadline, even if every connect fails early. */
    tt_timer_start(w->end_timer,
                   CONNECT_PHASE_MS + (uint64_t)((o->warmup + o->duration) * 1000) + 10000, 0);

    if (o->mode == MODE_CHURN) {
        /* Churn opens nothing before the clock starts. */
        w->settled = w->nclients - 1;
        connect_settled(w);
    } else {
        for (unsigned i = 0; i < w->nclients; i++)
            if (client_connect(&w->clients[i]) < 0)
                connect_settled(w);
    }
    run_loop(w);
    pthread_mutex_lock(&w->sh->mu);
    w->loop_done = true; /* the coordinator posts nothing to this loop from now on */
    w->sh->done++;
    pthread_cond_signal(&w->sh->cv);
    pthread_mutex_unlock(&w->sh->mu);
    err = tt_loop_close(w->loop);
    if (err < 0)
        cli_error("closing a worker's loop: %s", tt_strerror(err));
    w->loop = NULL;
    free(w->txbuf);
    w->txbuf = NULL;
    return NULL;

fail_end_timer:
    tt_timer_close(w->end_timer);
fail_loop:
    tt_loop_run(w->loop, TT_RUN_NOWAIT); /* let the timer's close complete */
    tt_loop_close(w->loop);
    w->loop = NULL;
fail_hist:
    hdr_free(&w->hist);
fail_buf:
    free(w->txbuf);
    w->txbuf = NULL;
fail:
    w->init_err = err;
    /* Count as ready and done, so the coordinator does not wait for this worker. */
    pthread_mutex_lock(&w->sh->mu);
    w->sh->ready++;
    w->sh->done++;
    w->loop_done = true;
    pthread_cond_signal(&w->sh->cv);
    pthread_mutex_unlock(&w->sh->mu);
    return NULL;
}

/* ---- options ----------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: tether bench [options] HOST:PORT\n"
               "\n"
               "Load an echo server and report messages/s, MiB/s and latency percentiles.\n"
               "A message is SIZE bytes; it completes when SIZE bytes have come back.\n"
               "HOST is IPv4, [IPv6] or a name: it is resolved once, by a first probe\n"
               "connection (Happy Eyeballs), and every connection goes where that one went.\n"
               "\n"
               "  -c, --connections N  connections (default 1)\n"
               "  -s, --size BYTES     message size (default 64, max 16 MiB)\n"
               "  -d, --duration S     measured seconds (default 5, max 600)\n"
               "  -p, --pipeline K     messages in flight per connection, closed loop\n"
               "                       (default 1: ping-pong)\n"
               "  -r, --rate R         open loop: R messages/s in total (0.001 to 1e9) on a\n"
               "                       fixed schedule, dealt over the connections; latency\n"
               "                       counts from the scheduled send time, so a stall is\n"
               "                       charged to every message it delayed; reports the\n"
               "                       slots due, those sent late and those missed\n"
               "  -w, --warmup S       seconds run before measuring (default 0)\n"
               "  -t, --threads T      loops on T threads, connections split (default 1)\n"
               "  -n, --messages N     stop once N messages were counted\n"
               "      --churn          connect, one exchange, close, repeat: measures\n"
               "                       connections/s (latency: connect to echo)\n"
               "      --bind-range A-B bind each connection to the next IPv4 source\n"
               "                       address in A..B (e.g. 127.0.0.2-127.0.0.254)\n"
               "      --json           one line of JSON instead of text\n"
               CLI_TLS_USAGE_CLIENT
               "      --progress       one line a second on stderr while it runs (the\n"
               "                       default when stderr is a terminal)\n"
               "  -h, --help           this text\n"
               "\n"
               "Latencies go to a log-linear histogram (under 0.8 %% error, fixed memory):\n"
               "p50, p90, p99, p99.9, max. With --rate a message sent over 1 ms after its\n"
               "slot, or never, is late (no connection could take it: the server is not\n"
               "reading, or the client fell behind);\n"
               "one due in the measured window but not answered by its end is missed.\n"
               "MiB/s counts payload one way. Over TLS every connection shakes hands before\n"
               "the clock starts (with --churn each cycle does a full handshake: the rate is\n"
               "handshakes/s). This is a load generator: point it only at servers you run.\n"
               "\n"
               "Exit status: 0 the run completed without an error; 1 the target could not\n"
               "be reached (reported at once, before any load), a connection failed or\n"
               "was dropped, the server is not an echo server, or nothing completed (the\n"
               "report is still printed, and one line on stderr says what went wrong);\n"
               "2 bad usage.\n");
}

static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    v = strtoull(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_bind_range(const char *s, struct opts *o)
{
    char buf[64];
    const char *dash = strchr(s, '-');
    struct in_addr a, b;
    size_t n;

    if (dash == NULL || (n = (size_t)(dash - s)) >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, &a) != 1 || inet_pton(AF_INET, dash + 1, &b) != 1)
        return -EINVAL;
    if (ntohl(b.s_addr) < ntohl(a.s_addr))
        return -EINVAL;
    o->bind_first = ntohl(a.s_addr);
    o->bind_count = ntohl(b.s_addr) - ntohl(a.s_addr) + 1;
    return 0;
}

enum { OPT_CHURN = 256, OPT_BIND_RANGE, OPT_JSON, OPT_PROGRESS };

/* A whole number min..max for option `name`; says which option and why on failure. */
static int opt_uint(const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
    if (parse_uint(optarg, min, max, out) == 0)
        return 0;
    cli_usage_error("bench", "bad %s '%s': expected a whole number from %" PRIu64 " to %" PRIu64,
                    name, optarg, min, max);
    return -EINVAL;
}

static int opt_seconds(const char *name, double min, double max, double *out)
{
    if (parse_double(optarg, min, max, out) == 0)
        return 0;
    cli_usage_error("bench", "bad %s '%s': expected seconds from %g to %g", name, optarg, min,
                    max);
    return -EINVAL;
}

/* Returns 0, 1 for --help (done), or -EINVAL after printing why. */
static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"connections", required_argument, NULL, 'c'},
        {"size", required_argument, NULL, 's'},
        {"duration", required_argument, NULL, 'd'},
        {"pipeline", required_argument, NULL, 'p'},
        {"rate", required_argument, NULL, 'r'},
        {"warmup", required_argument, NULL, 'w'},
        {"threads", required_argument, NULL, 't'},
        {"messages", required_argument, NULL, 'n'},
        {"churn", no_argument, NULL, OPT_CHURN},
        {"bind-range", required_argument, NULL, OPT_BIND_RANGE},
        {"json", no_argument, NULL, OPT_JSON},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {"help", no_argument, NULL, 'h'},
        CLI_TLS_LONGOPTS_CLIENT,
        {NULL, 0, NULL, 0},
    };
    bool pipeline_set = false, first = true;
    uint64_t v = 0;
    int ch, err = 0;

    *o = (struct opts){.connections = 1,
                       .size = 64,
                       .duration = 5,
                       .pipeline = 1,
                       .threads = 1,
                       .mode = MODE_CLOSED,
                       .progress = isatty(STDERR_FILENO) == 1};
    while ((ch = cli_getopt("bench", argc, argv, ":c:s:d:p:r:w:t:n:h", longopts, &first)) != -1) {
        switch (ch) {
        case 'c':
            err = opt_uint("--connections", 1, MAX_CONNECTIONS, &v);
            o->connections = (unsigned)v;
            break;
        case 's':
            err = opt_uint("--size", 1, MAX_SIZE, &v);
            o->size = (size_t)v;
            break;
        case 'd':
            err = opt_seconds("--duration", 0.001, MAX_DURATION_S, &o->duration);
            break;
        case 'p':
            err = opt_uint("--pipeline", 1, MAX_PIPELINE, &v);
            o->pipeline = (unsigned)v;
            pipeline_set = true;
            break;
        case 'r':
            if (parse_double(optarg, 0.001, 1e9, &o->rate) < 0) {
                cli_usage_error("bench", "bad --rate '%s': expected messages/s from 0.001 to 1e9",
                                optarg);
                err = -EINVAL;
            }
            break;
        case 'w':
            err = opt_seconds("--warmup", 0, MAX_DURATION_S, &o->warmup);
            break;
        case 't':
            err = opt_uint("--threads", 1, MAX_THREADS, &v);
            o->threads = (unsigned)v;
            break;
        case 'n':
            err = opt_uint("--messages", 1, UINT64_C(1) << 50, &o->messages);
            break;
        case OPT_CHURN:
            o->mode = MODE_CHURN;
            break;
        case OPT_BIND_RANGE:
            if (parse_bind_range(optarg, o) < 0) {
                cli_usage_error("bench", "bad --bind-range '%s': expected A-B, two IPv4 "
                                         "addresses, A <= B", optarg);
                err = -EINVAL;
            }
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_PROGRESS:
            o->progress = true;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            if (CLI_IS_TLS_OPT(ch)) {
                cli_tls_option(ch, optarg, &o->tls);
                break;
            }
            return -EINVAL; /* cli_getopt said why */
        }
        if (err < 0)
            return -EINVAL;
    }
    if (o->rate > 0) {
        if (o->mode == MODE_CHURN) {
            cli_usage_error("bench", "--churn and --rate do not mix");
            return -EINVAL;
        }
        o->mode = MODE_RATE;
    }
    if (optind >= argc) {
        cli_usage_error("bench", "missing HOST:PORT");
        return -EINVAL;
    }
    if (optind < argc - 1) {
        cli_usage_error("bench", "unexpected argument '%s'", argv[optind + 1]);
        return -EINVAL;
    }
    o->target = argv[optind];
    if (cli_parse_host("bench", o->target, o->host, sizeof(o->host), &o->port) < 0)
        return -EINVAL;
    if (cli_tls_check("bench", false, &o->tls) != 0)
        return -EINVAL;
    /* Every connection but the probe goes to the address the probe found: name the
     * host for each of them, as tt_connect_host does for the probe. */
    o->tls_name = cli_tls_name_for(&o->tls, o->host);
    if (o->mode != MODE_CLOSED && pipeline_set) {
        cli_usage_error("bench", "--pipeline is for the closed loop only (not with --rate or "
                                 "--churn)");
        return -EINVAL;
    }
    if (o->mode == MODE_CLOSED && (size_t)o->pipeline * o->size > MAX_BATCH_BYTES) {
        cli_usage_error("bench", "--size times --pipeline over 64 MiB");
        return -EINVAL;
    }
    if (o->threads > o->connections)
        o->threads = o->connections;
    return 0;
}

/* ---- the probe: resolve the target once ---------------------------------------- */

struct probe {
    tt_addr_t addr;
    int err; /* 1 while pending */
    char why[CLI_REASON_LEN]; /* a TLS failure's kind and reason, else "" */
};

static void probe_open(tt_conn_t *conn)
{
    struct probe *p = tt_conn_get_data(conn);

    if (tt_conn_peer_addr(conn, &p->addr) == 0)
        p->err = 0;
    else
        p->err = -ENOTCONN;
    tt_destroy(conn, 0);
}

static void probe_close(tt_conn_t *conn, const tt_close_info_t *info)
{
    struct probe *p = tt_conn_get_data(conn);

    if (p->err == 1) {
        p->err = info->kind == TT_CLOSE_CONNECT_TIMEOUT ? -ETIMEDOUT
                 : info->error != 0                     ? info->error
                                                        : -ECONNABORTED;
        if (info->kind >= TT_CLOSE_TLS_TRUNCATED && info->kind <= TT_CLOSE_TLS_ERROR)
            cli_close_reason(info, p->why);
    }
}

/* Connect once to HOST:PORT by the library's name lookup (tt_connect_host: every
 * address the name has, IPv6 and IPv4 raced), keep the address that answered and
 * close. A refused or unreachable target is reported here, before any thread or
 * load. Returns 0 or the error, said on stderr. */
static int probe_target(struct opts *o)
{
    const tt_conn_handlers_t h = {.on_open = probe_open, .on_close = probe_close};
    tt_connect_opts_t co = {.timeout_ms = CONNECT_TIMEOUT_MS,
                            .tls = o->tls_ctx,
                            .tls_servername = o->tls.servername};
    struct probe p = {.err = 1};
    tt_loop_t *loop;
    tt_conn_t *conn;
    int err;

    err = tt_loop_init(&loop);
    if (err < 0) {
        cli_error("%s", tt_strerror(err));
        return err;
    }
    err = tt_connect_host(loop, o->host, o->port, &co, &h, &p, &conn);
    if (err == 0)
        tt_loop_run(loop, TT_RUN_DEFAULT); /* until the probe has closed */
    else
        p.err = err;
    tt_loop_close(loop);
    if (p.err != 0) {
        if (p.why[0] != '\0' && o->tls.servername != NULL)
            cli_error("connect %s (as %s): %s", o->target, o->tls.servername, p.why);
        else if (p.why[0] != '\0')
            cli_error("connect %s: %s", o->target, p.why);
        else
            cli_error("connect %s: %s", o->target, tt_strerror(p.err));
        return p.err;
    }
    o->addr = p.addr;
    return 0;
}

/* ---- progress ------------------------------------------------------------------ */

static void print_progress(const struct shared *sh, const struct worker *ws, unsigned n,
                           uint64_t *last_count, uint64_t *last_t)
{
    uint64_t now = now_ns(), count = 0;
    double since = (double)(now - sh->t0) / 1e9, dt = (double)(now - *last_t) / 1e9;

    for (unsigned i = 0; i < n; i++)
        count += atomic_load_explicit(&ws[i].progress, memory_order_relaxed);
    if (now < sh->win_start)
        fprintf(stderr, "tether bench: %.0f s: warming up\n", since);
    else
        fprintf(stderr, "tether bench: %.0f s: %.0f %s/s, %" PRIu64 " in all\n", since,
                dt > 0 ? (double)(count - *last_count) / dt : 0.0,
                sh->o->mode == MODE_CHURN ? "connections" : "messages", count);
    *last_count = count;
    *last_t = now;
}

/* Each connection needs a descriptor; take the soft limit up to the hard one. */
static int raise_nofile(unsigned connections)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)connections + 64;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    if (rl.rlim_cur >= need)
        return 0;
    rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    return rl.rlim_cur >= need ? 0 : -EMFILE;
}

/* ---- report ------------------------------------------------------------------ */

struct totals {
    hdr_hist_t hist;
    uint64_t counted, opened, connect_errors, errors;
    uint64_t scheduled, late, missed; /* open loop */
    int first_error;
    double elapsed; /* seconds of measured window actually run */
};

static void report(const struct opts *o, const struct totals *t)
{
    static const char *mode_names[] = {"closed", "rate", "churn"};
    double rate = t->elapsed > 0 ? (double)t->counted / t->elapsed : 0;
    double mib = rate * (double)o->size / (1024.0 * 1024.0);
    double us[6];
    static const double pcts[5] = {50, 90, 99, 99.9, 100};

    for (int i = 0; i < 5; i++)
        us[i] = (double)hdr_percentile(&t->hist, pcts[i]) / 1e3;
    us[5] = hdr_mean(&t->hist) / 1e3;
    if (o->json) {
        printf("{\"target\":\"%s\",\"mode\":\"%s\",\"connections\":%u,\"size\":%zu,"
               "\"pipeline\":%u,\"rate\":%.3f,\"threads\":%u,\"duration_s\":%.3f,"
               "\"warmup_s\":%.3f,\"messages\":%" PRIu64 ",\"msgs_per_s\":%.1f,"
               "\"mib_per_s\":%.3f,\"latency_us\":{\"p50\":%.3f,\"p90\":%.3f,"
               "\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f},"
               "\"scheduled\":%" PRIu64 ",\"late\":%" PRIu64 ",\"missed\":%" PRIu64 ","
               "\"opened\":%" PRIu64 ",\"connect_errors\":%" PRIu64 ",\"errors\":%" PRIu64
               ",\"first_error\":\"%s\",\"tls\":%s}\n",
               o->target, mode_names[o->mode], o->connections, o->size,
               o->mode == MODE_CLOSED ? o->pipeline : 1, o->rate, o->threads, t->elapsed, o->warmup,
               t->counted, rate, mib, us[0], us[1], us[2], us[3], us[4], us[5], t->scheduled,
               t->late, t->missed, t->opened,
               t->connect_errors, t->errors, t->first_error ? tt_err_name(t->first_error) : "",
               o->tls.on ? "true" : "false");
        return;
    }
    printf("tether bench %s: %s loop, %u connection%s, %zu-byte messages", o->target,
           mode_names[o->mode], o->connections, o->connections == 1 ? "" : "s", o->size);
    if (o->mode == MODE_CLOSED)
        printf(", pipeline %u", o->pipeline);
    if (o->mode == MODE_RATE)
        printf(", %.0f msg/s scheduled", o->rate);
    printf(", %u thread%s%s\n", o->threads, o->threads == 1 ? "" : "s", o->tls.on ? ", TLS" : "");
    printf("  measured    %.3f s (after %.3f s warmup)\n", t->elapsed, o->warmup);
    printf("  %-11s %" PRIu64 " (%.1f/s)\n", o->mode == MODE_CHURN ? "connections" : "messages",
           t->counted, rate);
    printf("  throughput  %.3f MiB/s each way\n", mib);
    printf("  latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f%s\n",
           us[0], us[1], us[2], us[3], us[4], us[5],
           o->mode == MODE_RATE ? " (from the scheduled send times)" : "");
    if (o->mode == MODE_RATE)
        printf("  schedule    %" PRIu64 " due (%.1f/s), %" PRIu64 " sent late (over 1 ms after "
               "their time or never), %" PRIu64 " missed (not answered by the end)\n",
               t->scheduled, t->elapsed > 0 ? (double)t->scheduled / t->elapsed : 0.0, t->late,
               t->missed);
    printf("  opened      %" PRIu64 ", connect errors %" PRIu64 ", errors %" PRIu64 "%s%s\n",
           t->opened, t->connect_errors, t->errors, t->first_error ? ", first: " : "",
           t->first_error ? tt_err_name(t->first_error) : "");
}

/* ---- entry point ------------------------------------------------------------- */

int cmd_bench(int argc, char **argv)
{
    struct shared sh = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct worker *ws = NULL;
    struct client *clients = NULL;
    struct totals t = {0};
    struct opts o;
    struct timespec deadline;
    unsigned started = 0, next = 0;
    uint64_t last_finish = 0, last_count = 0, last_t;
    bool aborted = false;
    int err, rc = 1;

    err = parse_opts(argc, argv, &o);
    if (err != 0)
        return err > 0 ? 0 : 2;
    err = raise_nofile(o.connections);
    if (err < 0) {
        cli_error("%u connections need more descriptors than RLIMIT_NOFILE allows (ulimit -n)",
                  o.connections);
        return 1;
    }
    if (cli_tls_make(&o.tls, &o.tls_ctx) < 0)
        return 1;
    if (probe_target(&o) < 0)
        goto out;
    if (o.bind_count && o.addr.u.sa.sa_family != AF_INET) {
        cli_error("--bind-range: %s is not an IPv4 target", o.target);
        goto out;
    }
    sh.o = &o;
    atomic_init(&sh.counted, 0);
    ws = calloc(o.threads, sizeof(*ws));
    clients = calloc(o.connections, sizeof(*clients));
    if (ws == NULL || clients == NULL || hdr_init(&t.hist, HDR_BITS) < 0) {
        cli_error("%s", tt_strerror(-ENOMEM));
        goto out;
    }

    for (unsigned i = 0; i < o.threads; i++) {
        struct worker *w = &ws[i];
        /* Split as evenly as possible: the first (connections % threads) get one more. */
        unsigned n = o.connections / o.threads + (i < o.connections % o.threads);

        w->sh = &sh;
        w->o = &o;
        w->clients = &clients[next];
        w->nclients = n;
        atomic_init(&w->progress, 0);
        for (unsigned k = 0; k < n; k++)
            clients[next + k].w = w;
        next += n;
        err = pthread_create(&w->tid, NULL, worker_main, w);
        if (err != 0) {
            cli_error("pthread_create: %s", strerror(err));
            break;
        }
        started++;
    }

    /* Wait for every connection to open or fail, but not forever. */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += CONNECT_PHASE_MS / 1000;
    pthread_mutex_lock(&sh.mu);
    while (sh.ready < started)
        if (pthread_cond_timedwait(&sh.cv, &sh.mu, &deadline) == ETIMEDOUT)
            break;
    /* A connection that did not open means the run would not be the one asked for
     * (fewer connections): stop now and say why, rather than measure it. */
    aborted = sh.connect_failed > 0 || started < o.threads;
    pthread_mutex_unlock(&sh.mu);

    sh.t0 = now_ns();
    last_t = sh.t0;
    sh.win_start = sh.t0 + (uint64_t)(o.warmup * (double)NS_PER_S);
    sh.win_end = sh.win_start + (uint64_t)(o.duration * (double)NS_PER_S);
    for (unsigned i = 0; i < started; i++)
        if (ws[i].init_err == 0 && ws[i].loop)
            tt_loop_post(ws[i].loop, aborted ? quit : go, &ws[i]);

    /* Until every worker is done: a progress line a second if asked (on a fixed
     * cadence, whatever wakes this thread meanwhile), and a stop for all when one
     * of them finds the target refusing. */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 1;
    pthread_mutex_lock(&sh.mu);
    while (sh.done < started) {
        struct timespec now;

        if (sh.abort && !aborted) {
            aborted = true;
            for (unsigned i = 0; i < started; i++)
                if (!ws[i].loop_done)
                    tt_loop_post(ws[i].loop, quit, &ws[i]);
        }
        pthread_cond_timedwait(&sh.cv, &sh.mu, &deadline);
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec > deadline.tv_sec ||
            (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec)) {
            while (deadline.tv_sec <= now.tv_sec) /* a late wake-up skips, not bunches */
                deadline.tv_sec += 1;
            if (o.progress && !aborted && sh.done < started) {
                pthread_mutex_unlock(&sh.mu);
                print_progress(&sh, ws, started, &last_count, &last_t);
                pthread_mutex_lock(&sh.mu);
            }
        }
    }
    pthread_mutex_unlock(&sh.mu);

    for (unsigned i = 0; i < started; i++) {
        struct worker *w = &ws[i];

        pthread_join(w->tid, NULL);
        if (w->init_err < 0) {
            cli_error("worker: %s", tt_strerror(w->init_err));
            continue;
        }
        hdr_merge(&t.hist, &w->hist);
        hdr_free(&w->hist);
        t.counted += w->counted;
        t.opened += w->opened;
        t.connect_errors += w->connect_errors;
        t.errors += w->errors;
        t.scheduled += w->scheduled;
        t.late += w->late;
        t.missed += w->missed;
        if (t.first_error == 0)
            t.first_error = w->first_error;
        if (w->t_finish > last_finish)
            last_finish = w->t_finish;
    }
    if (aborted && sh.connect_failed > 0) {
        /* Nothing was measured: no report of zeros, just why. */
        cli_error("connect %s: %s (%u of %u connections failed)", o.target,
                  tt_strerror(sh.connect_error), sh.connect_failed, o.connections);
        goto out;
    }
    if (aborted)
        goto out; /* a worker could not start: said above */
    /* The window ends at win_end, or earlier when --messages stopped the run. */
    if (last_finish > sh.win_end || last_finish == 0)
        last_finish = sh.win_end;
    t.elapsed = last_finish > sh.win_start ? (double)(last_finish - sh.win_start) / 1e9 : 0;
    report(&o, &t);
    rc = 0;
    if (t.errors > 0 || t.connect_errors > 0) {
        cli_error("%s: %" PRIu64 " error%s, the first: %s%s", o.target,
                  t.errors + t.connect_errors, t.errors + t.connect_errors == 1 ? "" : "s",
                  tt_strerror(t.first_error),
                  t.first_error == TT_EPROTOCOL
                      ? " (more bytes came back than were sent: not an echo server?)"
                      : "");
        rc = 1;
    } else if (t.counted == 0) {
        cli_error("%s: no message completed in the measured window", o.target);
        rc = 1;
    }

out:
    for (unsigned i = 0; i < o.connections && clients; i++)
        free(clients[i].ts);
    free(clients);
    free(ws);
    hdr_free(&t.hist);
    tt_tls_ctx_free(o.tls_ctx); /* every loop is closed: no connection holds it */
    return rc;
}
