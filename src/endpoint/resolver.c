/* Name resolution on the loop: c-ares driven by the poller and the timing wheel.
 *
 * No thread per lookup and no blocking getaddrinfo(3) on the loop thread. c-ares
 * tells us which sockets it wants watched (ARES_OPT_SOCK_STATE_CB); each becomes a
 * raw watch whose readiness is handed back with ares_process_fd(). One wheel node
 * is kept at ares_timeout(), the earliest retransmission or expiry of any query.
 *
 * The channel is per loop and created on the first lookup that needs it (or by
 * tt_loop_set_resolver): names that need no DNS ("localhost", numeric addresses,
 * the empty host) are answered without ever creating it, so they cause no traffic
 * and no read of /etc/resolv.conf.
 *
 * Every result, even one known at once, is delivered from the loop: a request
 * stores its answer and arms its own wheel node at the current tick, which fires
 * on the loop's next round (tt__wheel_start: "a tick not after the current one
 * fires on the next advance"). So no user callback ever runs inside tt_resolve()
 * nor inside ares_process_fd(), where re-entering c-ares would not be safe. */
#include "endpoint/resolver.h"

#include <ares.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/loop.h"

/* RFC 1035 2.3.4: 255 octets on the wire, so at most 253 characters of text (254
 * with the root's trailing dot). */
#define MAX_NAME 254

typedef struct resolver resolver_t;

/* One socket c-ares asked us to watch. */
typedef struct rwatch {
    tt__io_own_t io;
    struct rwatch *next;
    resolver_t *r;
    tt__zombie_t zombie;
} rwatch_t;

struct resolver {
    tt_loop_t *loop;
    ares_channel ch;
    rwatch_t *watches;
    tt__wnode_t timer; /* at ares_timeout() while queries are outstanding */
    size_t live;       /* lookups whose caller still wants the answer */
};

#define REQ_FORWARD 0
#define REQ_REVERSE 1

struct tt_resolve {
    tt_loop_t *loop;
    tt__wnode_t deliver; /* fires on the next round to hand over the result */
    uint8_t kind;
    uint8_t cancelled; /* the caller gave up: the c-ares callback only frees */
    uint8_t in_ares;   /* c-ares still owns a query for this request */
    uint16_t port;
    int status;
    tt_resolve_cb cb;
    tt_resolve_name_cb name_cb;
    void *data;
    tt_addr_t *addrs;
    size_t naddrs;
    char *name;
};

/* ---- library and channel ------------------------------------------------------ */

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_status;

/* ares_library_init is not thread-safe and, on Linux, only counts references; once
 * per process is enough and it is never undone (there is nothing to release). */
static void lib_init(void) { lib_status = ares_library_init(ARES_LIB_INIT_ALL); }

static int map_status(int st)
{
    switch (st) {
    case ARES_SUCCESS:
        return 0;
    case ARES_ENOTFOUND:
    case ARES_ENODATA: /* the name exists but has no address of the asked family */
    case ARES_ENONAME:
        return TT_ENOTFOUND;
    case ARES_ETIMEOUT:
        return TT_EDNSTIMEOUT;
    case ARES_ENOMEM:
        return -ENOMEM;
    case ARES_EBADNAME:
    case ARES_EBADFAMILY:
    case ARES_EBADFLAGS:
    case ARES_EBADSTR:
        return -EINVAL;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return -ECANCELED;
    default:
        /* ESERVFAIL, EREFUSED, ECONNREFUSED, EFORMERR, EBADRESP, ...: the name may
         * well resolve later, so the caller may retry. */
        return TT_ETEMPFAIL;
    }
}

static void timer_cb(tt__wnode_t *node);

/* Keep the wheel node at c-ares' next deadline, or stopped when nothing waits. */
static void rearm(resolver_t *r)
{
    struct timeval tv, *tvp = ares_timeout(r->ch, NULL, &tv);
    if (tvp == NULL) {
        tt__wheel_stop(&r->loop->wheel, &r->timer);
        return;
    }
    /* Round up: a timer that fires a tick early only finds nothing expired and
     * re-arms, but one that rounds down to "now" would spin. */
    uint64_t ms = (uint64_t)tvp->tv_sec * 1000 + ((uint64_t)tvp->tv_usec + 999) / 1000;
    tt__wheel_start(&r->loop->wheel, &r->timer, tt__loop_deadline(r->loop, ms + 1));
}

static void timer_cb(tt__wnode_t *node)
{
    resolver_t *r = tt__container_of(node, resolver_t, timer);
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* retransmit or expire */
    rearm(r);
}

static void rwatch_free(tt__zombie_t *z) { free(tt__container_of(z, rwatch_t, zombie)); }

static void rwatch_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending)
{
    rwatch_t *w = tt__container_of(io, rwatch_t, io.io);
    resolver_t *r = w->r;
    int fd = io->fd;

    (void)buf, (void)n, (void)pending;
    /* c-ares may close this socket (and so free the watch) inside the call: use
     * only what was copied out before it. */
    ares_process_fd(r->ch, ev == TT__EV_READABLE ? fd : ARES_SOCKET_BAD,
                    ev == TT__EV_WRITABLE ? fd : ARES_SOCKET_BAD);
    rearm(r);
}

/* ares_sock_state_cb: c-ares opened, re-aimed or is about to close a socket. It
 * calls this before close(), so the fd is still valid for epoll_ctl(DEL). */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    resolver_t *r = data;
    rwatch_t **pp = &r->watches, *w;

    while (*pp != NULL && (*pp)->io.io.fd != fd)
        pp = &(*pp)->next;
    w = *pp;
    if (!readable && !writable) {
        if (w == NULL)
            return;
        *pp = w->next;
        tt__poller_remove(&r->loop->poller, &w->io.io);
        w->io.io.fd = -1; /* an event already fetched this round is skipped */
        tt__loop_defer_free(r->loop, &w->zombie);
        return;
    }
    if (w == NULL) {
        w = calloc(1, sizeof(*w));
        if (w == NULL)
            return; /* the query then times out: reported as TT_EDNSTIMEOUT */
        tt__io_init(&w->io, fd, TT__IO_RAW, rwatch_cb);
        w->r = r;
        w->zombie.free_fn = rwatch_free;
        w->next = r->watches;
        r->watches = w;
    }
    tt__poller_set(&r->loop->poller, &w->io.io,
                   (readable ? TT__POLL_IN : 0) | (writable ? TT__POLL_OUT : 0));
}

void tt__resolver_free(tt_loop_t *loop)
{
    resolver_t *r = loop->resolver;

    if (r == NULL)
        return;
    /* Abandoned queries end here with ARES_EDESTRUCTION: their callbacks only free
     * the requests. Sockets are closed through sock_state_cb. */
    ares_destroy(r->ch);
    tt__wheel_stop(&loop->wheel, &r->timer);
    while (r->watches != NULL) { /* normally none are left */
        rwatch_t *w = r->watches;
        r->watches = w->next;
        tt__poller_remove(&loop->poller, &w->io.io);
        w->io.io.fd = -1;
        tt__loop_defer_free(loop, &w->zombie);
    }
    free(r);
    loop->resolver = NULL;
    loop->resolver_free = NULL;
}

/* Build a channel from `o` (NULL: system configuration). 0 or -errno. */
static int channel_new(resolver_t *r, const tt_resolver_opts_t *o, ares_channel *out)
{
    struct ares_options ao;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS, st;
    char lookups[3] = "fb"; /* /etc/hosts first, then DNS: what nsswitch usually says */

    memset(&ao, 0, sizeof(ao));
    ao.sock_state_cb = sock_state_cb;
    ao.sock_state_cb_data = r;
    if (o != NULL && o->no_hosts)
        strcpy(lookups, "b");
    ao.lookups = lookups;
    if (o != NULL && o->timeout_ms > 0) {
        ao.timeout = (int)o->timeout_ms;
        mask |= ARES_OPT_TIMEOUTMS;
    }
    if (o != NULL && o->tries > 0) {
        ao.tries = (int)o->tries;
        mask |= ARES_OPT_TRIES;
    }
    pthread_once(&lib_once, lib_init);
    if (lib_status != ARES_SUCCESS)
        return map_status(lib_status);
    st = ares_init_options(out, &ao, mask);
    if (st != ARES_SUCCESS)
        return st == ARES_ENOMEM ? -ENOMEM : -EIO; /* EFILE: resolv.conf unreadable */
    if (o != NULL && o->servers != NULL) {
        /* Set before any query exists, so nothing ever goes to the system's
         * servers when the caller names its own. */
        st = ares_set_servers_ports_csv(*out, o->servers);
        if (st != ARES_SUCCESS) {
            ares_destroy(*out);
            return st == ARES_ENOMEM ? -ENOMEM : -EINVAL;
        }
    }
    return 0;
}

static int resolver_get(tt_loop_t *loop, const tt_resolver_opts_t *o, resolver_t **out)
{
    resolver_t *r = loop->resolver;
    int err;

    if (r != NULL) {
        *out = r;
        return 0;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->loop = loop;
    tt__wnode_init(&r->timer, timer_cb);
    err = channel_new(r, o, &r->ch);
    if (err < 0) {
        free(r);
        return err;
    }
    loop->resolver = r;
    loop->resolver_free = tt__resolver_free;
    *out = r;
    return 0;
}

int tt_loop_set_resolver(tt_loop_t *loop, const tt_resolver_opts_t *opts)
{
    resolver_t *r;
    ares_channel ch;
    int err;

    if (loop == NULL || opts == NULL || opts->timeout_ms > INT32_MAX || opts->tries > 1000)
        return -EINVAL;
    r = loop->resolver;
    if (r == NULL)
        return resolver_get(loop, opts, &r);
    if (r->live > 0 || ares_timeout(r->ch, NULL, &(struct timeval){0}) != NULL)
        return -EBUSY; /* queries in flight would be cancelled */
    err = channel_new(r, opts, &ch); /* the old channel stays if this fails */
    if (err < 0)
        return err;
    ares_destroy(r->ch);
    r->ch = ch;
    return 0;
}

/* ---- requests ----------------------------------------------------------------- */

static void req_free(tt_resolve_t *q)
{
    free(q->addrs);
    free(q->name);
    free(q);
}

static void deliver_cb(tt__wnode_t *node)
{
    tt_resolve_t *q = tt__container_of(node, tt_resolve_t, deliver);

    q->loop->handles--;
    q->loop->active--;
    q->cancelled = 1; /* a cancel from inside the callback is refused, not a double free */
    if (q->kind == REQ_FORWARD)
        q->cb(q, q->status, q->naddrs > 0 ? q->addrs : NULL, q->naddrs, q->data);
    else
        q->name_cb(q, q->status, q->name, q->data);
    req_free(q); /* c-ares is done with it: results are only stored once it is */
}

/* Store the result and hand it over on the next round. */
static void finish(tt_resolve_t *q, int status)
{
    q->status = status;
    tt__wheel_start(&q->loop->wheel, &q->deliver, q->loop->now);
}

static void gai_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    tt_resolve_t *q = arg;
    resolver_t *r = q->loop->resolver;
    size_t n = 0;

    (void)timeouts;
    q->in_ares = 0;
    if (q->cancelled) {
        if (res != NULL)
            ares_freeaddrinfo(res);
        req_free(q);
        return;
    }
    if (r != NULL)
        r->live--;
    if (status == ARES_SUCCESS && res != NULL) {
        for (struct ares_addrinfo_node *ai = res->nodes; ai != NULL; ai = ai->ai_next)
            n++;
        q->addrs = n > 0 ? calloc(n, sizeof(*q->addrs)) : NULL;
        if (n > 0 && q->addrs == NULL)
            status = ARES_ENOMEM;
        n = 0;
        for (struct ares_addrinfo_node *ai = res->nodes; q->addrs != NULL && ai != NULL;
             ai = ai->ai_next) {
            if (tt_addr_from_sockaddr(&q->addrs[n], ai->ai_addr, ai->ai_addrlen) < 0)
                continue;
            if (q->addrs[n].u.sa.sa_family == AF_INET)
                q->addrs[n].u.in4.sin_port = htons(q->port);
            else
                q->addrs[n].u.in6.sin6_port = htons(q->port);
            n++;
        }
        q->naddrs = n;
        if (n == 0 && status == ARES_SUCCESS)
            status = ARES_ENODATA;
    }
    if (res != NULL)
        ares_freeaddrinfo(res);
    finish(q, map_status(status));
}

static void gni_cb(void *arg, int status, int timeouts, char *node, char *service)
{
    tt_resolve_t *q = arg;
    resolver_t *r = q->loop->resolver;

    (void)timeouts, (void)service;
    q->in_ares = 0;
    if (q->cancelled) {
        req_free(q);
        return;
    }
    if (r != NULL)
        r->live--;
    if (status == ARES_SUCCESS) {
        q->name = node != NULL ? strdup(node) : NULL;
        if (q->name == NULL)
            status = node != NULL ? ARES_ENOMEM : ARES_ENOTFOUND;
    }
    finish(q, map_status(status));
}

static tt_resolve_t *req_new(tt_loop_t *loop, int kind, void *data)
{
    tt_resolve_t *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->loop = loop;
    q->kind = (uint8_t)kind;
    q->data = data;
    tt__wnode_init(&q->deliver, deliver_cb);
    return q;
}

/* Add `a` (port set) to the answer if the family is wanted. */
static void add_addr(tt_resolve_t *q, int family, const char *numeric)
{
    tt_addr_t a;
    if (tt_addr_parse(&a, numeric, q->port) < 0)
        return;
    if (family != AF_UNSPEC && a.u.sa.sa_family != family)
        return;
    q->addrs[q->naddrs++] = a;
}

static bool is_localhost(const char *h, size_t len)
{
    static const char lh[] = "localhost";
    const size_t n = sizeof(lh) - 1;

    if (len > 0 && h[len - 1] == '.')
        len--; /* the root's dot: "localhost." is the same name */
    if (len < n || strncasecmp(h + len - n, lh, n) != 0)
        return false;
    /* "localhost" itself or any name under it (RFC 6761 6.3). */
    return len == n || h[len - n - 1] == '.';
}

/* Names answered without DNS. Returns 1 when `q` now holds the answer, 0 when the
 * name needs c-ares, -ENOMEM. */
static int answer_locally(tt_resolve_t *q, const char *host, int family)
{
    char buf[MAX_NAME + 1];
    size_t len = strlen(host);
    tt_addr_t a;

    q->addrs = calloc(2, sizeof(*q->addrs));
    if (q->addrs == NULL)
        return -ENOMEM;
    if (len == 0 || strcmp(host, "*") == 0) {
        /* The wildcard, for listeners: "::" is dual stack (see tt_addr_parse). */
        add_addr(q, family, family == AF_INET ? "0.0.0.0" : "::");
    } else if (is_localhost(host, len)) {
        add_addr(q, family, "::1");
        add_addr(q, family, "127.0.0.1");
    } else {
        if (host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(buf)) {
            memcpy(buf, host + 1, len - 2); /* "[::1]" as people write it in URLs */
            buf[len - 2] = '\0';
            host = buf;
        }
        if (tt_addr_parse(&a, host, q->port) < 0) {
            free(q->addrs);
            q->addrs = NULL;
            return 0;
        }
        /* "unix:/path" parses, but is no host: it has no IP address (not found,
         * and no DNS query for it). tt_connect_host takes it before this. */
        if (!tt_addr_is_unix(&a) && (family == AF_UNSPEC || a.u.sa.sa_family == family))
            q->addrs[q->naddrs++] = a;
    }
    return 1;
}

int tt_resolve(tt_loop_t *loop, const char *host, uint16_t port, int family, tt_resolve_cb cb,
               void *data, tt_resolve_t **out)
{
    struct ares_addrinfo_hints hints;
    tt_resolve_t *q;
    resolver_t *r;
    int err;

    if (loop == NULL || host == NULL || cb == NULL || strlen(host) > MAX_NAME ||
        (family != AF_UNSPEC && family != AF_INET && family != AF_INET6))
        return -EINVAL;
    q = req_new(loop, REQ_FORWARD, data);
    if (q == NULL)
        return -ENOMEM;
    q->cb = cb;
    q->port = port;
    err = answer_locally(q, host, family);
    if (err < 0)
        goto fail;
    if (err == 1) {
        finish(q, q->naddrs > 0 ? 0 : TT_ENOTFOUND);
    } else {
        err = resolver_get(loop, NULL, &r);
        if (err < 0)
            goto fail;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = family;
        hints.ai_socktype = SOCK_STREAM; /* one node per address, not one per type */
        q->in_ares = 1;
        r->live++;
        /* May call gai_cb at once (/etc/hosts hit, bad name): it only stores. */
        ares_getaddrinfo(r->ch, host, NULL, &hints, gai_cb, q);
        if (q->in_ares)
            rearm(r);
    }
    loop->handles++;
    loop->active++;
    if (out != NULL)
        *out = q;
    return 0;

fail:
    req_free(q);
    return err;
}

int tt_resolve_reverse(tt_loop_t *loop, const tt_addr_t *addr, tt_resolve_name_cb cb,
                       void *data, tt_resolve_t **out)
{
    tt_resolve_t *q;
    resolver_t *r;
    int err;

    if (loop == NULL || addr == NULL || cb == NULL ||
        (addr->u.sa.sa_family != AF_INET && addr->u.sa.sa_family != AF_INET6))
        return -EINVAL;
    err = resolver_get(loop, NULL, &r);
    if (err < 0)
        return err;
    q = req_new(loop, REQ_REVERSE, data);
    if (q == NULL)
        return -ENOMEM;
    q->name_cb = cb;
    q->in_ares = 1;
    r->live++;
    /* NAMEREQD: a missing PTR record is an error, not the numeric text. */
    ares_getnameinfo(r->ch, &addr->u.sa, addr->len, ARES_NI_LOOKUPHOST | ARES_NI_NAMEREQD,
                     gni_cb, q);
    if (q->in_ares)
        rearm(r);
    loop->handles++;
    loop->active++;
    if (out != NULL)
        *out = q;
    return 0;
}

int tt_resolve_cancel(tt_resolve_t *q)
{
    resolver_t *r;

    if (q == NULL || q->cancelled)
        return -EINVAL;
    r = q->loop->resolver;
    q->loop->handles--;
    q->loop->active--;
    if (!q->in_ares) {
        /* Answered already (or never asked): the result waits on the wheel. */
        tt__wheel_stop(&q->loop->wheel, &q->deliver);
        req_free(q);
        return 0;
    }
    /* c-ares 1.18 cannot cancel one query: the request stays as an orphan that its
     * c-ares callback frees. When no lookup anyone waits for is left, cancel them
     * all, so abandoned retransmissions do not keep the loop running. The
     * callbacks that ares_cancel() makes only free orphans. */
    q->cancelled = 1;
    if (r != NULL && --r->live == 0) {
        ares_cancel(r->ch);
        rearm(r);
    }
    return 0;
}

void *tt_resolve_get_data(const tt_resolve_t *q) { return q != NULL ? q->data : NULL; }
