/* Operations endpoints: the live connection table on a Unix socket (read by
 * `tether stat`) and a Prometheus text exposition of server totals over HTTP.
 *
 * A table client may instead ask to follow ("FOLLOW\n"): it stays and gets a line
 * per open and close of the server's connections (tt_follow_start, below, on the
 * server's observer list), dropped at a queue cap so it never holds the server.
 *
 * Otherwise both reply to each client and end the connection; they use tether's own
 * connections for the writing, so a slow reader of a large table costs queue
 * memory under the usual cap, never a blocked loop. For a worker set the
 * endpoint runs on its own thread and loop and gathers from every worker with
 * tt_workers_visit(): blocking there is harmless, and no handle is shared. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "endpoint/server.h"
#include "proto/http.h"
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
    "msgs_out\tqueued\trtt_us\tretrans\ttls\tcipher\tpid\tuid\tgid\n"

typedef struct row_ctx {
    text_t *t;
    unsigned worker;
} row_ctx_t;

static int add_row(tt_conn_t *c, void *arg)
{
    row_ctx_t *r = arg;
    tt_conn_stats_t st;
    tt_tcp_info_t ti;
    tt_tls_info_t tls;
    char local[TT_ADDR_STRLEN] = "-", peer[TT_ADDR_STRLEN] = "-";
    char cred[48] = "-\t-\t-"; /* a Unix peer's SO_PEERCRED; "-" for TCP */

    tt_conn_get_stats(c, &st);
    if (tt_conn_get_tcp_info(c, &ti) < 0)
        memset(&ti, 0, sizeof(ti));
    if (st.local.len > 0)
        tt_addr_format(&st.local, local, sizeof(local));
    if (st.peer.len > 0)
        tt_addr_format(&st.peer, peer, sizeof(peer));
    if (st.has_cred)
        snprintf(cred, sizeof(cred), "%" PRId32 "\t%" PRIu32 "\t%" PRIu32, st.cred.pid,
                 st.cred.uid, st.cred.gid);
    /* TLS version and cipher once the handshake is done; "-" for a plain connection
     * and one still shaking hands (the names have no tab or space in them). */
    if (tt_conn_tls_info(c, &tls) < 0 || !tls.done || tls.version[0] == '\0')
        strcpy(tls.version, "-");
    if (strcmp(tls.version, "-") == 0 || tls.cipher[0] == '\0')
        strcpy(tls.cipher, "-");
    text_printf(r->t,
                "%" PRIu64 "\t%u\t%s\t%s\t%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64
                "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%u\t%u\t%s\t%s\t%s\n",
                st.id, r->worker, local, peer, tt_conn_state_name(st.state), st.age_ms,
                st.bytes_in, st.bytes_out, st.packets_in, st.packets_out, st.messages_in,
                st.messages_out, st.queued_bytes, ti.rtt_us, ti.retransmits_total, tls.version,
                tls.cipher, cred);
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

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_MAX_CONNS 16
/* Longest HTTP request head we read: a scraper sends one short line and a few
 * headers; more than this is not a metrics request. */
#define REQUEST_MAX 2048
/* The table socket: a client that has not said what it wants by then gets the
 * table (a plain reader that connects and reads, as before the follow mode). */
#define GRACE_MS 100
#define FOLLOW_CAP ((size_t)64 << 10) /* a follower further behind is dropped */
#define MAX_FOLLOWERS 8
#define LINE_MAX_REQ 16 /* "FOLLOW\n", "TABLE\n" */

/* ---- the follow feed ---------------------------------------------------------------- */

struct tt_follow {
    tt__srv_obs_t obs;
    tt_server_t *srv;
    tt_follow_cb cb;
    void *arg;
};

/* The peer while the socket is still open: tt_conn_get_stats gives none for a
 * closing connection, but at the start of its close the socket still knows it
 * (unless it was reset). */
static void peer_of(const tt_conn_t *c, tt_addr_t *out)
{
    memset(out, 0, sizeof(*out));
    if (c->ext != NULL && c->ext->peer_override != NULL)
        *out = *c->ext->peer_override;
    else if (c->io.fd >= 0 && tt__sock_peer(c->io.fd, out) < 0)
        out->len = 0;
}

static void follow_opened(tt__srv_obs_t *o, tt_conn_t *c)
{
    tt_follow_t *f = tt__container_of(o, tt_follow_t, obs);
    tt_follow_event_t ev = {.open = true, .conn = c, .reason = ""};
    peer_of(c, &ev.peer);
    f->cb(&ev, f->arg);
}

static void follow_closed(tt__srv_obs_t *o, tt_conn_t *c)
{
    tt_follow_t *f = tt__container_of(o, tt_follow_t, obs);
    tt_follow_event_t ev = {.open = false,
                            .conn = c,
                            .kind = (tt_close_kind_t)c->close_kind,
                            .error = c->close_err,
                            .reason = ""};
    if (c->ext != NULL && c->ext->close_reason != NULL)
        ev.reason = c->ext->close_reason;
    peer_of(c, &ev.peer);
    f->cb(&ev, f->arg);
}

int tt_follow_start(tt_server_t *srv, tt_follow_cb cb, void *arg, tt_follow_t **out)
{
    tt_follow_t *f;

    if (srv == NULL || cb == NULL || out == NULL)
        return -EINVAL;
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    f->obs.opened = follow_opened;
    f->obs.closed = follow_closed;
    f->srv = srv;
    f->cb = cb;
    f->arg = arg;
    tt__server_observe(srv, &f->obs);
    *out = f;
    return 0;
}

int tt_follow_stop(tt_follow_t *f)
{
    if (f == NULL)
        return -EINVAL;
    tt__server_unobserve(f->srv, &f->obs);
    free(f);
    return 0;
}

struct tt_admin {
    tt_loop_t *loop;
    tt_server_t *srv;    /* single-server mode */
    tt_workers_t *set;   /* worker mode: own thread and loop */
    pthread_t thread;
    bool threaded;
    tt_server_t *table;  /* the Unix socket serving the table */
    tt_server_t *metrics; /* HTTP exposition */
    tt_addr_t metrics_addr;
    uint64_t timeout_ms;
    tt__wnode_t sweep;   /* destroys connections older than timeout_ms */
    tt__zombie_t zombie;
    const tt_cluster_t *cluster; /* its figures join the metrics */
    tt__wnode_t grace;   /* answers table clients that said nothing */
    tt_follow_t *follow; /* while anyone follows */
    size_t nfollowers;
};

/* A client of the table socket: undecided, answered, or following. */
enum { TC_PENDING, TC_ANSWERED, TC_FOLLOW };
typedef struct table_client {
    tt_admin_t *a; /* NULL once the endpoint closed */
    int mode;
    size_t len;
    char buf[LINE_MAX_REQ];
} table_client_t;

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

static void cluster_metrics(text_t *t, const tt_cluster_t *cl)
{
    tt_cluster_stats_t st;
    static const struct {
        const char *name, *help;
    } m[] = {
        {"tether_cluster_published_total", "Broadcasts published to Redis."},
        {"tether_cluster_received_total", "Messages from other nodes delivered here."},
        {"tether_cluster_lost_total", "Broadcasts not published (Redis away or too slow)."},
        {"tether_cluster_reconnects_total", "Redis links established."},
    };
    uint64_t v[4];

    if (tt_cluster_get_stats(cl, &st) < 0)
        return;
    v[0] = st.published, v[1] = st.received, v[2] = st.lost, v[3] = st.reconnects;
    for (size_t i = 0; i < 4; i++)
        text_printf(t, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", m[i].name, m[i].help,
                    m[i].name, m[i].name, v[i]);
    text_printf(t, "# HELP tether_cluster_link_up Whether the Redis link is connected.\n"
                   "# TYPE tether_cluster_link_up gauge\n"
                   "tether_cluster_link_up{link=\"publish\"} %d\n"
                   "tether_cluster_link_up{link=\"subscribe\"} %d\n",
                st.pub_up ? 1 : 0, st.sub_up ? 1 : 0);
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
            if (a->cluster != NULL)
                cluster_metrics(t, a->cluster);
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
    t->buf = NULL;
    tt_conn_set_linger(c, 2000); /* a reader that never closes does not hold us long */
    tt_end(c, NULL, 0);
}

/* ---- timeouts: no admin connection outlives timeout_ms ------------------------------ */

typedef struct sweep_ctx {
    uint64_t now, timeout_ms;
    size_t left;
    bool table; /* the table socket: followers stay as long as they read */
} sweep_ctx_t;

static int sweep_conn(tt_conn_t *c, void *arg)
{
    sweep_ctx_t *sc = arg;
    table_client_t *tc = sc->table ? tt_conn_get_data(c) : NULL;

    if (tt__conn_is_closing(c) || (tc != NULL && tc->mode == TC_FOLLOW))
        return 0;
    if (sc->now - c->created_ms >= sc->timeout_ms)
        tt_destroy(c, 0); /* silent, slow or stuck: the endpoint owes it nothing */
    else
        sc->left++;
    return 0;
}

static void sweep_cb(tt__wnode_t *node)
{
    tt_admin_t *a = tt__container_of(node, tt_admin_t, sweep);
    sweep_ctx_t sc = {a->loop->now, a->timeout_ms, 0, true};

    if (a->table != NULL)
        tt_server_foreach(a->table, sweep_conn, &sc);
    sc.table = false;
    if (a->metrics != NULL)
        tt_server_foreach(a->metrics, sweep_conn, &sc);
    if (sc.left > 0)
        tt__wheel_start(&a->loop->wheel, &a->sweep, tt__loop_deadline(a->loop, a->timeout_ms / 4));
}

/* A connection arrived: make sure the sweep runs (a quarter of the timeout: each
 * connection goes between timeout and 1.25 timeout after it came). */
static void sweep_arm(tt_admin_t *a)
{
    if (!tt__wnode_active(&a->sweep))
        tt__wheel_start(&a->loop->wheel, &a->sweep, tt__loop_deadline(a->loop, a->timeout_ms / 4));
}

/* ---- the table on the Unix socket ----------------------------------------------------- */

static void send_table(tt_conn_t *c, table_client_t *tc)
{
    tt_admin_t *a = tt_server_get_data(tt_conn_server(c));
    text_t t = {0};

    tc->mode = TC_ANSWERED;
    render(a, true, &t);
    reply(c, &t, NULL);
}

static int follow_send_one(tt_conn_t *c, void *arg)
{
    const text_t *line = arg;
    table_client_t *tc = tt_conn_get_data(c);
    tt_conn_stats_t st;

    if (tc == NULL || tc->mode != TC_FOLLOW || tt__conn_is_closing(c))
        return 0;
    tt_conn_get_stats(c, &st);
    /* Never wait for a follower: one that fell this far behind goes. */
    if (st.queued_bytes + line->len > FOLLOW_CAP ||
        tt_send(c, line->buf, line->len) < 0)
        tt_destroy(c, 0);
    return 0;
}

static void follow_event(const tt_follow_event_t *ev, void *arg)
{
    tt_admin_t *a = arg;
    tt_conn_stats_t st;
    char peer[TT_ADDR_STRLEN] = "-";
    char buf[512];
    text_t line = {buf, 0, sizeof(buf), 0};
    int n;

    if (a->table == NULL)
        return;
    tt_conn_get_stats(ev->conn, &st);
    if (ev->peer.len > 0)
        tt_addr_format(&ev->peer, peer, sizeof(peer));
    if (ev->open)
        n = snprintf(buf, sizeof(buf), "open\t%" PRIu64 "\t%s\n", st.id, peer);
    else
        n = snprintf(buf, sizeof(buf),
                     "close\t%" PRIu64 "\t%s\t%s\t%.200s\t%" PRIu64 "\t%" PRIu64 "\n",
                     st.id, peer, tt_close_kind_name(ev->kind),
                     ev->reason[0] != '\0' ? ev->reason : "-", st.bytes_in, st.bytes_out);
    if (n <= 0)
        return;
    line.len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
    tt_server_foreach(a->table, follow_send_one, &line);
}

static void follow_begin(tt_conn_t *c, table_client_t *tc)
{
    tt_admin_t *a = tt_server_get_data(tt_conn_server(c));

    tc->mode = TC_ANSWERED;
    if (a->set != NULL) {
        tt_send_text(c, "error\tfollow needs a single-loop server\n");
        tt_end(c, NULL, 0);
        return;
    }
    if (a->nfollowers >= MAX_FOLLOWERS) {
        tt_send_text(c, "error\ttoo many followers\n");
        tt_end(c, NULL, 0);
        return;
    }
    if (a->follow == NULL && tt_follow_start(a->srv, follow_event, a, &a->follow) < 0) {
        tt_send_text(c, "error\tout of memory\n");
        tt_end(c, NULL, 0);
        return;
    }
    tc->mode = TC_FOLLOW;
    a->nfollowers++;
    tt_send_text(c, "following\n"); /* from here on, no event is missed */
}

static int grace_conn(tt_conn_t *c, void *arg)
{
    tt_admin_t *a = arg;
    table_client_t *tc = tt_conn_get_data(c);

    if (tc == NULL || tc->mode != TC_PENDING || tt__conn_is_closing(c))
        return 0;
    if (a->loop->now - c->created_ms >= GRACE_MS)
        send_table(c, tc);
    else if (!tt__wnode_active(&a->grace))
        tt__wheel_start(&a->loop->wheel, &a->grace, tt__loop_deadline(a->loop, GRACE_MS / 4));
    return 0;
}

static void grace_cb(tt__wnode_t *node)
{
    tt_admin_t *a = tt__container_of(node, tt_admin_t, grace);
    if (a->table != NULL)
        tt_server_foreach(a->table, grace_conn, a);
}

static void table_open(tt_conn_t *c)
{
    tt_admin_t *a = tt_server_get_data(tt_conn_server(c));
    table_client_t *tc = calloc(1, sizeof(*tc));

    sweep_arm(a);
    if (tc == NULL) {
        tt_destroy(c, 0);
        return;
    }
    tc->mode = TC_PENDING;
    tc->a = a;
    tt_conn_set_data(c, tc);
    if (!tt__wnode_active(&a->grace))
        tt__wheel_start(&a->loop->wheel, &a->grace, tt__loop_deadline(a->loop, GRACE_MS / 4));
}

static void table_data(tt_conn_t *c, const void *data, size_t len, size_t pending)
{
    table_client_t *tc = tt_conn_get_data(c);
    (void)pending;

    if (tc == NULL || tc->mode != TC_PENDING || tt_conn_server(c) == NULL)
        return; /* decided already: what else comes is ignored */
    size_t take = len < sizeof(tc->buf) - tc->len ? len : sizeof(tc->buf) - tc->len;
    memcpy(tc->buf + tc->len, data, take);
    tc->len += take;
    char *nl = memchr(tc->buf, '\n', tc->len);
    if (nl == NULL && tc->len < sizeof(tc->buf))
        return;
    size_t n = nl != NULL ? (size_t)(nl - tc->buf) : tc->len;
    if (n > 0 && tc->buf[n - 1] == '\r')
        n--;
    if (n == 6 && memcmp(tc->buf, "FOLLOW", 6) == 0)
        follow_begin(c, tc);
    else
        send_table(c, tc); /* "TABLE", or anything else */
}

static void table_end(tt_conn_t *c)
{
    table_client_t *tc = tt_conn_get_data(c);
    if (tc != NULL && tc->mode == TC_PENDING && tt_conn_server(c) != NULL)
        send_table(c, tc);
    else
        tt_end(c, NULL, 0); /* a follower that hung up its side */
}

static void table_close(tt_conn_t *c, const tt_close_info_t *info)
{
    table_client_t *tc = tt_conn_get_data(c);
    tt_admin_t *a = tc != NULL ? tc->a : NULL; /* unlinked from the server by now */
    (void)info;

    if (tc != NULL && tc->mode == TC_FOLLOW && a != NULL && a->nfollowers > 0 &&
        --a->nfollowers == 0 && a->follow != NULL) {
        tt_follow_stop(a->follow);
        a->follow = NULL;
    }
    tt_conn_set_data(c, NULL);
    free(tc);
}

/* ---- metrics over HTTP ---------------------------------------------------------------- */

typedef struct request {
    bool answered;
    size_t len;
    char buf[REQUEST_MAX];
} request_t;

/* The status for a request head (parsed by the project's HTTP parser, which has
 * already refused what is malformed or too large): 200 for GET /metrics (a query
 * string is ignored), 405 for another method, 404 for another path. */
static int route(const tt__http_req_t *req)
{
    if (req->method.len != 3 || memcmp(req->method.p, "GET", 3) != 0)
        return 405; /* methods are case-sensitive (RFC 9110 9.1): "get" is not GET */
    if (req->path.len != 8 || memcmp(req->path.p, "/metrics", 8) != 0)
        return 404;
    return 200;
}

static void answer(tt_conn_t *c, request_t *r, int status)
{
    tt_admin_t *a = tt_server_get_data(tt_conn_server(c));
    text_t t = {0};
    const char *head;
    char other[96];

    r->answered = true;
    switch (status) {
    case 200:
        render(a, false, &t);
        head = t.err ? "HTTP/1.0 500 Internal Server Error\r\nConnection: close\r\n\r\n"
                     : "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                       "Connection: close\r\n\r\n";
        break;
    case 404:
        head = "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
               "not found: the metrics are at /metrics\n";
        break;
    case 405:
        head = "HTTP/1.0 405 Method Not Allowed\r\nAllow: GET\r\nContent-Type: text/plain\r\n"
               "Connection: close\r\n\r\nmethod not allowed\n";
        break;
    case 431:
        head = "HTTP/1.0 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n";
        break;
    default: /* what the parser refused: 400, 501, 505 */
        snprintf(other, sizeof(other), "HTTP/1.0 %d %s\r\nConnection: close\r\n\r\n", status,
                 tt__http_reason(status));
        head = other;
        break;
    }
    reply(c, &t, head);
}

static void metrics_open(tt_conn_t *c)
{
    tt_admin_t *a = tt_server_get_data(tt_conn_server(c));
    request_t *r = malloc(sizeof(*r));

    sweep_arm(a);
    if (r == NULL) {
        tt_destroy(c, 0);
        return;
    }
    r->answered = false;
    r->len = 0;
    tt_conn_set_data(c, r);
}

static void metrics_data(tt_conn_t *c, const void *data, size_t len, size_t pending)
{
    request_t *r = tt_conn_get_data(c);
    (void)pending;

    if (r == NULL || r->answered || tt_conn_server(c) == NULL)
        return; /* answered already (the rest is ignored), or the endpoint is closing */
    size_t take = len < REQUEST_MAX - r->len ? len : REQUEST_MAX - r->len;
    tt__http_limits_t lim = {.max_head = REQUEST_MAX, .max_fields = 32};
    tt__http_req_t req;
    int st;

    memcpy(r->buf + r->len, data, take);
    r->len += take;
    st = tt__http_parse(r->buf, r->len, &lim, &req); /* 431 once REQUEST_MAX is reached */
    if (st != TT__HTTP_MORE)
        answer(c, r, st == TT__HTTP_OK ? route(&req) : st);
}

static void metrics_end(tt_conn_t *c)
{
    request_t *r = tt_conn_get_data(c);
    if (r != NULL && !r->answered && tt_conn_server(c) != NULL)
        answer(c, r, 400); /* the client finished sending before its request did */
    else
        tt_end(c, NULL, 0);
}

static void metrics_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)info;
    free(tt_conn_get_data(c));
}

/* ---- opening and closing ----------------------------------------------------------------- */

/* The table's socket: a server on the path like any other (the stale-file, mode
 * and removal rules live in sys/unixpath.c), only this user may connect. */
static int open_unix(tt_admin_t *a, const char *path, tt_server_opts_t *so,
                     const tt_conn_handlers_t *h)
{
    tt_addr_t ua;
    size_t n = strlen(path);

    /* Built directly, not parsed: a path that starts with '@' is still a path. */
    if (n == 0)
        return -EINVAL;
    if (n >= sizeof(ua.u.un.sun_path))
        return -ENAMETOOLONG;
    memset(&ua, 0, sizeof(ua));
    ua.u.un.sun_family = AF_UNIX;
    memcpy(ua.u.un.sun_path, path, n);
    ua.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    so->unix_mode = 0600;
    so->backlog = 16;
    return tt_server_listen(a->loop, &ua, so, h, a, &a->table);
}

static int endpoints_open(tt_admin_t *a, const tt_admin_opts_t *o)
{
    tt_conn_handlers_t th = {.on_open = table_open,
                             .on_data = table_data,
                             .on_end = table_end,
                             .on_close = table_close};
    tt_conn_handlers_t mh = {.on_open = metrics_open,
                             .on_data = metrics_data,
                             .on_end = metrics_end,
                             .on_close = metrics_close};
    size_t max = o->max_conns != 0 ? o->max_conns : DEFAULT_MAX_CONNS;
    /* The table: over the limit, clients wait in the backlog (tether stat has a
     * timeout of its own). Metrics: over it, a scraper is told at once. */
    tt_server_opts_t tso = {.max_conns = max, .half_open = true};
    tt_server_opts_t mso = {.max_conns = max,
                            .limit_close = true,
                            .limit_message = "HTTP/1.0 503 Service Unavailable\r\n"
                                             "Connection: close\r\n\r\n",
                            .half_open = true}; /* answer a client that sent its FIN */
    int err;

    a->timeout_ms = o->timeout_ms != 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    a->cluster = o->cluster;
    tt__wnode_init(&a->sweep, sweep_cb);
    tt__wnode_init(&a->grace, grace_cb);
    if (o->unix_path != NULL && (err = open_unix(a, o->unix_path, &tso, &th)) < 0)
        return err;
    if (o->metrics_addr != NULL) {
        err = tt_server_listen(a->loop, o->metrics_addr, &mso, &mh, a, &a->metrics);
        if (err < 0)
            return err;
        tt_server_addr(a->metrics, &a->metrics_addr);
    }
    return 0;
}

static int destroy_conn(tt_conn_t *c, void *arg)
{
    if (arg != NULL) { /* the table socket's: their on_close must not find us */
        table_client_t *tc = tt_conn_get_data(c);
        if (tc != NULL)
            tc->a = NULL;
    }
    tt_destroy(c, 0);
    return 0;
}

/* Every connection of the endpoint goes now: a reader that never reads or a
 * client that never sends must not keep the process (or the join) waiting. */
static void endpoints_close(tt_admin_t *a)
{
    tt__wheel_stop(&a->loop->wheel, &a->sweep);
    tt__wheel_stop(&a->loop->wheel, &a->grace);
    if (a->follow != NULL) {
        tt_follow_stop(a->follow);
        a->follow = NULL;
    }
    if (a->table != NULL) {
        tt_server_foreach(a->table, destroy_conn, a);
        /* Removes the socket file if it is still ours; freed at the end of the
         * round, like any server. */
        tt_server_close(a->table);
        a->table = NULL;
    }
    if (a->metrics != NULL) {
        tt_server_foreach(a->metrics, destroy_conn, NULL);
        tt_server_close(a->metrics);
        a->metrics = NULL;
    }
}

static bool opts_ok(const tt_admin_opts_t *o)
{
    return o != NULL && (o->unix_path != NULL || o->metrics_addr != NULL) &&
           o->timeout_ms <= TT_TIMEOUT_MAX && o->max_conns <= 1u << 20;
}

static void admin_free(tt__zombie_t *z) { free(tt__container_of(z, tt_admin_t, zombie)); }

int tt_admin_start(tt_server_t *srv, const tt_admin_opts_t *o, tt_admin_t **out)
{
    tt_admin_t *a;
    int err;

    if (srv == NULL || out == NULL || !opts_ok(o))
        return -EINVAL;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->srv = srv;
    a->loop = tt_server_loop(srv);
    a->zombie.free_fn = admin_free;
    err = endpoints_open(a, o);
    if (err < 0) {
        endpoints_close(a);
        tt__loop_defer_free(a->loop, &a->zombie);
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

    if (set == NULL || out == NULL || !opts_ok(o))
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

int tt_admin_metrics_addr(const tt_admin_t *a, tt_addr_t *out)
{
    if (a == NULL || out == NULL)
        return -EINVAL;
    if (a->metrics_addr.len == 0)
        return -ENOENT;
    *out = a->metrics_addr; /* written before start returned, read-only since */
    return 0;
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
        /* Freed at the end of the round: this round's events may still name it. */
        tt__loop_defer_free(a->loop, &a->zombie);
        return 0;
    }
    /* The endpoint's own loop: close there (its connections are destroyed, so the
     * loop runs out of work at once), then join. */
    tt_loop_post(a->loop, close_on_loop, a);
    pthread_join(a->thread, NULL);
    tt_loop_run(a->loop, TT_RUN_NOWAIT);
    tt_loop_close(a->loop);
    free(a);
    return 0;
}
