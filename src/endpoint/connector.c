/* Connecting to a name: resolve, then race the addresses (Happy Eyeballs, RFC 8305).
 *
 * tt_connect_host() returns a connection at once, in TT_STATE_CONNECTING and with
 * no socket (fd -1): the application may queue sends and destroy it like any other.
 * Behind it a connector owns the lookup and one raw socket per attempt. The
 * addresses are ordered IPv6 first, alternating families (RFC 8305 section 4); an
 * attempt starts, and the next one starts when it fails or when the connection
 * attempt delay passes with it still pending (section 5). The first attempt whose
 * connect completes wins: its fd is adopted by the connection (c->io.fd, then
 * tt__conn_opened) and every other attempt is closed.
 *
 * The connection's own deadline node is the overall timeout, so conn.c reports
 * TT_CLOSE_CONNECT_TIMEOUT as for a numeric connect; every close of the
 * connection while connecting (timeout, tt_destroy, failure) goes through
 * tt__conn_close, which calls back here (ext->connect_cancel) to stop the lookup
 * and the attempts. The connection therefore closes exactly once, socket or not.
 *
 * Deviation from RFC 8305 section 3: c-ares' getaddrinfo answers once both the A
 * and the AAAA query are done, so attempts start after the slower of the two,
 * not 50 ms after the first answer. */
#include "endpoint/connector.h"

#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "endpoint/admission.h"
#include "proto/proxy_conn.h"
#include "stream/conn.h"
#include "sys/sock.h"

typedef struct connector connector_t;

typedef struct attempt {
    tt__io_own_t io; /* raw watch for the connect's completion; fd -1 when not running */
    connector_t *cn;
    tt_addr_t addr;
} attempt_t;

struct connector {
    tt_loop_t *loop;
    tt_conn_t *conn;
    tt_resolve_t *req;   /* the lookup, until it answers */
    tt__wnode_t delay;   /* connection attempt delay */
    uint64_t delay_ms;
    tt_connect_opts_t o; /* bind_addr and bind_device point into this object */
    tt_addr_t bind_addr;
    char bind_device[IF_NAMESIZE];
    attempt_t *att;
    size_t n, next, pending; /* addresses, next to start, attempts in flight */
    int last_err;
    tt__zombie_t zombie;
};

/* ---- local side --------------------------------------------------------------- */

int tt__connect_check_local(const tt_connect_opts_t *o, int family)
{
    const tt_addr_t *b = o->bind_addr;

    if (b != NULL) {
        if (b->u.sa.sa_family != AF_INET && b->u.sa.sa_family != AF_INET6)
            return -EINVAL;
        if (family != AF_UNSPEC && b->u.sa.sa_family != family)
            return -EINVAL;
    }
    if (o->bind_device != NULL) {
        size_t len = strlen(o->bind_device);
        if (len == 0 || len >= IF_NAMESIZE)
            return -EINVAL;
        if (if_nametoindex(o->bind_device) == 0)
            return -ENODEV; /* caught here rather than as an attempt failing later */
    }
    return 0;
}

int tt__connect_socket(tt_loop_t *loop, const tt_addr_t *to, const tt_connect_opts_t *o)
{
    int fd, err;

    err = tt__audit(loop, TT_AUDIT_CONNECT, to);
    if (err == 0 && o->bind_addr != NULL)
        err = tt__audit(loop, TT_AUDIT_BIND, o->bind_addr);
    if (err < 0)
        return err; /* vetoed: no socket was made */
    fd = tt__sock_open(to->u.sa.sa_family, SOCK_STREAM);
    if (fd < 0)
        return fd;
    /* TCP_NODELAY by default: tether coalesces writes itself (one writev per
     * round), so Nagle would only add latency. */
    if (!tt_addr_is_unix(to))
        tt__sock_set_bool(fd, IPPROTO_TCP, TCP_NODELAY, true);
    if (o->bind_device != NULL &&
        setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, o->bind_device,
                   (socklen_t)strlen(o->bind_device) + 1) < 0)
        goto fail; /* EPERM without CAP_NET_RAW on kernels before 5.7 (socket(7)) */
    if (o->bind_addr != NULL && bind(fd, &o->bind_addr->u.sa, o->bind_addr->len) < 0)
        goto fail;
    return fd;

fail:
    err = -errno; /* before close() can overwrite it */
    close(fd);
    return err;
}

/* ---- the connector's end -------------------------------------------------------- */

static void connector_free(tt__zombie_t *z)
{
    connector_t *cn = tt__container_of(z, connector_t, zombie);
    free(cn->att);
    free(cn);
}

static void attempt_close(connector_t *cn, attempt_t *a)
{
    if (a->io.io.fd < 0)
        return;
    tt__poller_remove(&cn->loop->poller, &a->io.io);
    close(a->io.io.fd);
    a->io.io.fd = -1; /* an event already fetched this round is skipped */
    cn->pending--;
}

/* Stop everything and detach from the connection. The memory goes at the end of
 * the round: an attempt's event may still be queued in it. */
static void dispose(connector_t *cn)
{
    tt__conn_ext_t *ext = cn->conn->ext;

    tt__wheel_stop(&cn->loop->wheel, &cn->delay);
    if (cn->req != NULL) {
        tt_resolve_cancel(cn->req);
        cn->req = NULL;
    }
    for (size_t i = 0; i < cn->n; i++)
        attempt_close(cn, &cn->att[i]);
    ext->connector = NULL;
    ext->connect_cancel = NULL;
    tt__loop_defer_free(cn->loop, &cn->zombie);
}

static void cancel_hook(tt_conn_t *c) { dispose(c->ext->connector); }

static void fail(connector_t *cn, int err)
{
    tt_conn_t *c = cn->conn;
    dispose(cn);
    tt__conn_close(c, TT_CLOSE_CONNECT_FAILED, err);
}

static void win(connector_t *cn, attempt_t *a)
{
    tt_conn_t *c = cn->conn;
    int fd = a->io.io.fd;

    tt__poller_remove(&cn->loop->poller, &a->io.io);
    a->io.io.fd = -1; /* the fd is the connection's now */
    cn->pending--;
    dispose(cn); /* the losers are closed */
    c->io.fd = fd;
    tt__conn_opened(c);
}

/* ---- attempts ------------------------------------------------------------------ */

static void attempt_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending);

/* 1: connected at once; 0: in progress; -errno: failed at once. */
static int attempt_start(connector_t *cn, attempt_t *a)
{
    int fd, err;

    fd = tt__connect_socket(cn->loop, &a->addr, &cn->o);
    if (fd < 0)
        return fd; /* vetoed or failed: this attempt fails, the next address is tried */
    tt__io_init(&a->io, fd, TT__IO_RAW, attempt_cb);
    if (connect(fd, &a->addr.u.sa, a->addr.len) == 0) {
        cn->pending++;
        return 1;
    }
    if (errno != EINPROGRESS) {
        err = -errno; /* ENETUNREACH for a family without a route, ECONNREFUSED, ... */
        goto fail;
    }
    /* connect(2): "select for writing; once writable, read SO_ERROR". */
    err = tt__poller_set(&cn->loop->poller, &a->io.io, TT__POLL_OUT);
    if (err < 0)
        goto fail;
    cn->pending++;
    return 0;

fail:
    a->io.io.fd = -1;
    close(fd);
    return err;
}

static void delay_cb(tt__wnode_t *node);

/* Start attempts until one is in flight (or wins), then wait for it, for the
 * delay, or, when every address has been tried, for the last ones pending. */
static void advance(connector_t *cn)
{
    tt__wheel_stop(&cn->loop->wheel, &cn->delay);
    while (cn->next < cn->n) {
        attempt_t *a = &cn->att[cn->next++];
        int r = attempt_start(cn, a);
        if (r == 1) {
            win(cn, a);
            return;
        }
        if (r == 0) {
            if (cn->next < cn->n)
                tt__wheel_start(&cn->loop->wheel, &cn->delay,
                                tt__loop_deadline(cn->loop, cn->delay_ms));
            return;
        }
        cn->last_err = r; /* failed at once: the next address starts now */
    }
    if (cn->pending == 0)
        fail(cn, cn->last_err);
}

static void delay_cb(tt__wnode_t *node)
{
    advance(tt__container_of(node, connector_t, delay));
}

static void attempt_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending)
{
    attempt_t *a = tt__container_of(io, attempt_t, io.io);
    connector_t *cn = a->cn;
    int err;

    (void)ev, (void)buf, (void)n, (void)pending;
    err = tt__sock_error(io->fd);
    if (err == 0) {
        win(cn, a);
        return;
    }
    attempt_close(cn, a);
    cn->last_err = err;
    /* RFC 8305 section 5: a failed attempt does not wait out the delay. */
    advance(cn);
}

/* ---- ordering ------------------------------------------------------------------ */

static bool seen(const attempt_t *att, size_t n, const tt_addr_t *a)
{
    for (size_t i = 0; i < n; i++)
        if (att[i].addr.len == a->len && memcmp(&att[i].addr.u, &a->u, a->len) == 0)
            return true;
    return false;
}

/* RFC 8305 section 4: keep the resolver's (RFC 6724) order within each family,
 * alternate the families, IPv6 first. Duplicates are dropped. */
static size_t order(attempt_t *att, const tt_addr_t *addrs, size_t count)
{
    size_t n = 0, i6 = 0, i4 = 0;
    int turn = AF_INET6;

    while (i6 < count || i4 < count) {
        size_t *ip = turn == AF_INET6 ? &i6 : &i4;
        while (*ip < count && addrs[*ip].u.sa.sa_family != turn)
            (*ip)++;
        if (*ip < count) {
            const tt_addr_t *a = &addrs[(*ip)++];
            if (!seen(att, n, a))
                att[n++].addr = *a;
        }
        turn = turn == AF_INET6 ? AF_INET : AF_INET6;
    }
    return n;
}

static void resolved(tt_resolve_t *req, int status, const tt_addr_t *addrs, size_t count,
                     void *data)
{
    connector_t *cn = data;

    (void)req;
    cn->req = NULL; /* freed by the resolver when this returns */
    if (status < 0) {
        fail(cn, status);
        return;
    }
    cn->att = calloc(count, sizeof(*cn->att));
    if (cn->att == NULL) {
        fail(cn, -ENOMEM);
        return;
    }
    cn->n = order(cn->att, addrs, count);
    for (size_t i = 0; i < cn->n; i++) {
        cn->att[i].io.io.fd = -1;
        cn->att[i].cn = cn;
    }
    cn->last_err = TT_ENOTFOUND;
    advance(cn);
}

/* ---- public ------------------------------------------------------------------- */

int tt_connect_host(tt_loop_t *loop, const char *host, uint16_t port,
                    const tt_connect_opts_t *opts, const tt_conn_handlers_t *h, void *data,
                    tt_conn_t **out)
{
    tt_connect_opts_t o = {0};
    connector_t *cn;
    tt__handlers_t *hs;
    tt__conn_ext_t *ext;
    tt_conn_t *c;
    int family, err;

    if (loop == NULL || host == NULL || out == NULL)
        return -EINVAL;
    if (strncmp(host, TT_UNIX_PREFIX, sizeof(TT_UNIX_PREFIX) - 1) == 0) {
        /* A Unix address is no name to look up: the port is ignored. */
        tt_addr_t ua;
        err = tt_addr_parse(&ua, host, 0);
        return err < 0 ? err : tt_connect(loop, &ua, opts, h, data, out);
    }
    if (opts != NULL)
        o = *opts;
    family = o.family;
    if (o.timeout_ms > TT_TIMEOUT_MAX || o.attempt_delay_ms > TT_TIMEOUT_MAX ||
        (family != AF_UNSPEC && family != AF_INET && family != AF_INET6))
        return -EINVAL;
    err = tt__connect_check_local(&o, family);
    if (err == 0)
        err = tt__connect_tls_check(&o, host, NULL);
    if (err == 0)
        err = tt__proxy_client_check(&o, NULL);
    if (err < 0)
        return err;
    if (o.bind_addr != NULL)
        family = o.bind_addr->u.sa.sa_family; /* a bound socket has one family */

    cn = calloc(1, sizeof(*cn));
    if (cn == NULL)
        return -ENOMEM;
    cn->loop = loop;
    cn->delay_ms = o.attempt_delay_ms > 0 ? o.attempt_delay_ms : TT_DEFAULT_ATTEMPT_DELAY;
    tt__wnode_init(&cn->delay, delay_cb);
    cn->zombie.free_fn = connector_free;
    cn->o = o;
    if (o.bind_addr != NULL) {
        cn->bind_addr = *o.bind_addr;
        cn->o.bind_addr = &cn->bind_addr;
    }
    if (o.bind_device != NULL) {
        strcpy(cn->bind_device, o.bind_device); /* length checked above */
        cn->o.bind_device = cn->bind_device;
    }
    hs = tt__handlers_new(h);
    if (hs == NULL) {
        err = -ENOMEM;
        goto fail_cn;
    }
    err = tt_resolve(loop, host, port, family, resolved, cn, &cn->req);
    if (err < 0)
        goto fail_hs;
    c = tt__conn_new(loop, -1, hs);
    if (c == NULL) {
        err = -ENOMEM;
        goto fail_req;
    }
    tt__handlers_unref(hs); /* the connection holds the only reference now */
    c->data = data;
    c->state = TT_STATE_CONNECTING;
    cn->conn = c;
    *out = c;
    ext = tt__conn_ext(c);
    if (ext == NULL) {
        /* The connection exists: it must close through the loop like any other. */
        tt_resolve_cancel(cn->req);
        free(cn);
        tt__conn_close(c, TT_CLOSE_CONNECT_FAILED, -ENOMEM);
        return 0;
    }
    ext->connector = cn;
    ext->connect_cancel = cancel_hook;
    err = tt__connect_tls(c, &o, host, NULL);
    if (err == 0 && tt__proxy_client_apply(c, &o) < 0)
        err = -ENOMEM;
    if (err < 0) { /* -ENOMEM: closes through the loop, like any failed connect */
        tt__conn_close(c, TT_CLOSE_CONNECT_FAILED, err);
        return 0;
    }
    if (o.timeout_ms > 0 && tt__conn_deadline_start(c, o.timeout_ms) < 0)
        tt__conn_close(c, TT_CLOSE_CONNECT_FAILED, -ENOMEM);
    return 0;

fail_req:
    tt_resolve_cancel(cn->req);
fail_hs:
    tt__handlers_unref(hs);
fail_cn:
    free(cn);
    return err;
}
