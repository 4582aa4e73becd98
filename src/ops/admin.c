/* Operations endpoints: the live connection table on a Unix socket (read by
 * `tether stat`) and a Prometheus text exposition of server totals over HTTP.
 *
 * Both reply to each client and end the connection; they use tether's own
 * connections for the writing, so a slow reader of a large table costs queue
 * memory under the usual cap, never a blocked loop. For a worker set the
 * endpoint runs on its own thread and loop and gathers from every worker with
 * tt_workers_visit(): blocking there is harmless, and no handle is shared. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "stream/conn.h"
#include "sys/sock.h"

/* ---- a growable text buffer ----------------------------------------------------- */

typedef struct text {
    char *buf;
    size_t len, cap;
    int err;
} text_t;

static void text_printf(text_t *t, const char *fmt, ...)
{
    va_list ap;
    if (t->err)
        return;
    for (;;) {
        size_t room = t->cap - t->len;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf ? t->buf + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->err = -EINVAL;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap - t->len <= (size_t)n)
            cap *= 2;
        char *nb = realloc(t->buf, cap);
        if (nb == NULL) {
            t->err = -ENOMEM;
            return;
        }
        t->buf = nb;
        t->cap = cap;
    }
}

/* ---- the table ------------------------------------------------------------------- */

#define TABLE_HEADER                                                                            \
    "id\tworker\tlocal\tpeer\tstate\tage_ms\tbytes_in\tbytes_out\tpkts_in\tpkts_out\tmsgs_in\t" \
    "msgs_out\tqueued\trtt_us\tretrans\n"

typedef struct row_ctx {
    text_t *t;
    unsigned worker;
} row_ctx_t;

static int add_row(tt_conn_t *c, void *arg)
{
    row_ctx_t *r = arg;
    tt_conn_stats_t st;
    tt_tcp_info_t ti;
    char local[TT_ADDR_STRLEN] = "-", peer[TT_ADDR_STRLEN] = "-";

    tt_conn_get_stats(c, &st);
    if (tt_conn_get_tcp_info(c, &ti) < 0)
        memset(&ti, 0, sizeof(ti));
    if (st.local.len > 0)
        tt_addr_format(&st.local, local, sizeof(local));
    if (st.peer.len > 0)
        tt_addr_format(&st.peer, peer, sizeof(peer));
    text_printf(r->t,
                "%" PRIu64 "\t%u\t%s\t%s\t%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64
                "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%u\t%u\n",
                st.id, r->worker, local, peer, tt_conn_state_name(st.state), st.age_ms,
                st.bytes_in, st.bytes_out, st.packets_in, st.packets_out, st.messages_in,
                st.messages_out, st.queued_bytes, ti.rtt_us, ti.retransmits_total);
    return 0;
}

/* Prometheus text format: one HELP/TYPE pair per family, then one sample per
 * server (labelled by worker when there are several). */
static void metrics(text_t *t, const tt_server_totals_t *tot, unsigned n, bool labelled)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } m[] = {
        {"tether_connections_open", "gauge", "Live connections.",
         offsetof(tt_server_totals_t, open)},
        {"tether_connections_accepted_total", "counter", "Connections accepted.",
         offsetof(tt_server_totals_t, accepted)},
        {"tether_connections_refused_total", "counter", "Clients refused by limits or vetoes.",
         offsetof(tt_server_totals_t, refused)},
        {"tether_received_bytes_total", "counter", "Bytes received.",
         offsetof(tt_server_totals_t, bytes_in)},
        {"tether_sent_bytes_total", "counter", "Bytes handed to the kernel.",
         offsetof(tt_server_totals_t, bytes_out)},
        {"tether_received_packets_total", "counter", "Read calls that returned data.",
         offsetof(tt_server_totals_t, packets_in)},
        {"tether_sent_packets_total", "counter", "Write calls that moved data.",
         offsetof(tt_server_totals_t, packets_out)},
        {"tether_received_messages_total", "counter", "Framed messages received.",
         offsetof(tt_server_totals_t, messages_in)},
        {"tether_sent_messages_total", "counter", "Framed messages sent.",
         offsetof(tt_server_totals_t, messages_out)},
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", m[i].name, m[i].help, m[i].name,
                    m[i].type);
        for (unsigned w = 0; w < n; w++) {
            uint64_t v = *(const uint64_t *)((const char *)&tot[w] + m[i].off);
            if (labelled)
                text_printf(t, "%s{worker=\"%u\"} %" PRIu64 "\n", m[i].name, w, v);
            else
                text_printf(t, "%s %" PRIu64 "\n", m[i].name, v);
        }
    }
}

int tt_server_format_table(tt_server_t *srv, char **out, size_t *len)
{
    text_t t = {0};
    row_ctx_t r = {&t, 0};

    if (srv == NULL || out == NULL || len == NULL)
        return -EINVAL;
    text_printf(&t, "%s", TABLE_HEADER);
    tt_server_foreach(srv, add_row, &r);
    if (t.err) {
        free(t.buf);
        return t.err;
    }
    *out = t.buf;
    *len = t.len;
    return 0;
}

/* ---- the endpoint ------------------------------------------------------------------- */

struct tt_admin {
    tt_loop_t *loop;
    tt_server_t *srv;    /* single-server mode */
    tt_workers_t *set;   /* worker mode: own thread and loop */
    pthread_t thread;
    bool threaded;
    tt__io_t unix_io;
    char *unix_path;
    tt_server_t *metrics; /* HTTP exposition */
    tt__handlers_t *reply_hs;
};

typedef struct visit_ctx {
    pthread_mutex_t mu;
    text_t *t;
    tt_server_totals_t *totals; /* metrics: one slot per worker, no lock needed */
} visit_ctx_t;

static void visit_worker(tt_workers_t *set, unsigned index, tt_loop_t *loop, tt_server_t *srv,
                         void *arg)
{
    visit_ctx_t *v = arg;
    (void)set, (void)loop;

    if (srv == NULL)
        return;
    if (v->totals != NULL) {
        tt_server_get_totals(srv, &v->totals[index]);
        return;
    }
    /* Rows are formatted on the worker's own thread, then appended under the lock. */
    text_t local = {0};
    row_ctx_t r = {&local, index};
    tt_server_foreach(srv, add_row, &r);
    pthread_mutex_lock(&v->mu);
    if (local.err)
        v->t->err = local.err;
    else if (local.len > 0)
        text_printf(v->t, "%.*s", (int)local.len, local.buf);
    pthread_mutex_unlock(&v->mu);
    free(local.buf);
}

static int render(tt_admin_t *a, bool table, text_t *t)
{
    if (a->set == NULL) {
        if (table) {
            row_ctx_t r = {t, 0};
            text_printf(t, "%s", TABLE_HEADER);
            tt_server_foreach(a->srv, add_row, &r);
        } else {
            tt_server_totals_t tot;
            tt_server_get_totals(a->srv, &tot);
            metrics(t, &tot, 1, false);
        }
        return t->err;
    }
    unsigned n = tt_workers_count(a->set);
    visit_ctx_t v = {PTHREAD_MUTEX_INITIALIZER, t, NULL};
    if (!table && (v.totals = calloc(n, sizeof(tt_server_totals_t))) == NULL)
        return t->err = -ENOMEM;
    if (table)
        text_printf(t, "%s", TABLE_HEADER);
    int err = tt_workers_visit(a->set, visit_worker, &v);
    if (err == 0 && !table)
        metrics(t, v.totals, n, true);
    free(v.totals);
    pthread_mutex_destroy(&v.mu);
    return err < 0 ? (t->err = err) : t->err;
}

static void free_text_cb(void *buf, void *arg)
{
    (void)arg;
    free(buf);
}

/* Queue the response and end: the peer gets it all, then EOF. */
static void reply(tt_conn_t *c, text_t *t, const char *http_head)
{
    if (http_head != NULL)
        tt_send_text(c, http_head);
    if (t->err == 0 && t->len > 0 && tt_send_owned(c, t->buf, t->len, free_text_cb, NULL) >= 0)
        t->buf = NULL;
    free(t->buf);
    tt_conn_set_linger(c, 2000); /* a reader that never closes does not hold us long */
    tt_end(c, NULL, 0);
}

static void unix_accept_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending)
{
    tt_admin_t *a = tt__container_of(io, tt_admin_t, unix_io);
    (void)ev, (void)buf, (void)n, (void)pending;

    for (int i = 0; i < 16; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        tt_conn_t *c = tt__conn_new(a->loop, fd, a->reply_hs);
        if (c == NULL) {
            close(fd);
            continue;
        }
        tt__conn_opened(c);
        text_t t = {0};
        render(a, true, &t);
        reply(c, &t, NULL);
    }
}

static void metrics_data(tt_conn_t *c, const void *data, size_t len, size_t pending)
{
    tt_admin_t *a = tt_server_get_data(tt_conn_server(c));
    text_t t = {0};
    (void)data, (void)len, (void)pending;

    if (a == NULL || tt_conn_state(c) != TT_STATE_OPEN)
        return; /* answered already; the rest of the request is ignored */
    render(a, false, &t);
    reply(c, &t,
          t.err ? "HTTP/1.0 500 Internal Server Error\r\n\r\n"
                : "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                  "Connection: close\r\n\r\n");
}

static int open_unix(tt_admin_t *a, const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct stat st;
    int fd, err;

    if (strlen(path) >= sizeof(sun.sun_path))
        return -ENAMETOOLONG;
    strcpy(sun.sun_path, path);
    /* A socket left by an earlier run is replaced; any other file is not touched. */
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        unlink(path);
    }
    fd = tt__sock_open(AF_UNIX, SOCK_STREAM);
    if (fd < 0)
        return fd;
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
        goto fail;
    /* 0600 before listen(): until then no client can connect, so there is no window
     * in which other users could read the table. */
    if (chmod(path, 0600) < 0 || listen(fd, 16) < 0)
        goto fail_unlink;
    tt__io_init(&a->unix_io, fd, TT__IO_RAW, unix_accept_cb);
    err = tt__poller_set(&a->loop->poller, &a->unix_io, TT__POLL_IN);
    if (err < 0) {
        unlink(path);
        close(fd);
        return err;
    }
    a->unix_path = strdup(path);
    return 0;

fail_unlink:
    err = -errno;
    unlink(path);
    close(fd);
    return err;
fail:
    err = -errno;
    close(fd);
    return err;
}

static int endpoints_open(tt_admin_t *a, const tt_admin_opts_t *o)
{
    tt_conn_handlers_t none = {0};
    tt_conn_handlers_t mh = {.on_data = metrics_data};
    int err;

    tt__io_init(&a->unix_io, -1, TT__IO_RAW, unix_accept_cb);
    a->reply_hs = tt__handlers_new(&none);
    if (a->reply_hs == NULL)
        return -ENOMEM;
    if (o->unix_path != NULL && (err = open_unix(a, o->unix_path)) < 0)
        return err;
    if (o->metrics_addr != NULL &&
        (err = tt_server_listen(a->loop, o->metrics_addr, NULL, &mh, a, &a->metrics)) < 0)
        return err;
    return 0;
}

static void endpoints_close(tt_admin_t *a)
{
    if (a->unix_io.fd >= 0) {
        tt__poller_remove(&a->loop->poller, &a->unix_io);
        close(a->unix_io.fd);
        a->unix_io.fd = -1;
        unlink(a->unix_path);
    }
    if (a->metrics != NULL)
        tt_server_close(a->metrics);
    a->metrics = NULL;
    tt__handlers_unref(a->reply_hs);
    a->reply_hs = NULL;
    free(a->unix_path);
    a->unix_path = NULL;
}

int tt_admin_start(tt_server_t *srv, const tt_admin_opts_t *o, tt_admin_t **out)
{
    tt_admin_t *a;
    int err;

    if (srv == NULL || o == NULL || out == NULL || (o->unix_path == NULL && o->metrics_addr == NULL))
        return -EINVAL;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->srv = srv;
    a->loop = tt_server_loop(srv);
    err = endpoints_open(a, o);
    if (err < 0) {
        endpoints_close(a);
        free(a);
        return err;
    }
    a->loop->handles++;
    a->loop->active++;
    *out = a;
    return 0;
}

static void *admin_thread(void *arg)
{
    tt_admin_t *a = arg;
    tt_loop_run(a->loop, TT_RUN_DEFAULT);
    return NULL;
}

int tt_admin_start_workers(tt_workers_t *set, const tt_admin_opts_t *o, tt_admin_t **out)
{
    tt_admin_t *a;
    int err;

    if (set == NULL || o == NULL || out == NULL || (o->unix_path == NULL && o->metrics_addr == NULL))
        return -EINVAL;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->set = set;
    err = tt_loop_init(&a->loop);
    if (err < 0)
        goto fail_loop;
    err = endpoints_open(a, o);
    if (err < 0)
        goto fail_open;
    a->loop->handles++;
    a->loop->active++;
    err = -pthread_create(&a->thread, NULL, admin_thread, a);
    if (err < 0) {
        a->loop->handles--;
        a->loop->active--;
        goto fail_open;
    }
    a->threaded = true;
    *out = a;
    return 0;

fail_open:
    endpoints_close(a);
    tt_loop_run(a->loop, TT_RUN_NOWAIT);
    tt_loop_close(a->loop);
fail_loop:
    free(a);
    return err;
}

static void close_on_loop(tt_loop_t *loop, void *arg)
{
    tt_admin_t *a = arg;
    endpoints_close(a);
    loop->handles--;
    loop->active--;
}

int tt_admin_close(tt_admin_t *a)
{
    if (a == NULL)
        return -EINVAL;
    if (!a->threaded) {
        close_on_loop(a->loop, a);
        free(a);
        return 0;
    }
    /* The endpoint's own loop: close there, let replies in flight finish, join. */
    tt_loop_post(a->loop, close_on_loop, a);
    pthread_join(a->thread, NULL);
    tt_loop_run(a->loop, TT_RUN_NOWAIT);
    tt_loop_close(a->loop);
    free(a);
    return 0;
}
