/* TCP servers: listen, accept while continuing to listen, the list of live
 * connections, and the limits that hold under pressure (connection caps, accept
 * rate, descriptor exhaustion, admission lists), plus graceful shutdown. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "endpoint/admission.h"
#include "endpoint/server.h"
#include "stream/conn.h"
#include "proto/frame.h"
#include "proto/proxy_conn.h"
#include "proto/ws.h"
#include "proto/tls.h"
#include "stream/liveness.h"
#include "sys/sock.h"

/* Accepts per wake-up: enough to drain a burst, few enough that one busy listener
 * cannot starve the connections already open. */
#define ACCEPT_BATCH 128
/* Out of descriptors and nothing of ours closed: look again after this long. */
#define NOFILE_RETRY_MS 100

struct tt_server {
    tt__io_own_t io;
    tt_loop_t *loop;
    tt__handlers_t *hs;
    void *data;
    tt_addr_t addr;
    tt_conn_t *head, *tail;
    size_t count;
    uint64_t accepted;
    tt_server_opts_t o;  /* limits and defaults for accepted connections */
    char *limit_message; /* o.limit_message points here */
    bool closed;
    bool paused;         /* listener out of the poller (limit, rate or EMFILE) */
    bool shutting_down;
    int reserve_fd;      /* spent to accept-and-close when out of descriptors */
    tt__acl_t acl;
    tt__bucket_t bucket;
    tt__ipcount_t per_ip;
    tt__wnode_t retry;   /* resume accepting after a rate-limit or EMFILE pause */
    tt__wnode_t deadline; /* shutdown: destroy what is left */
    size_t shut_total, shut_destroyed; /* open at shutdown; destroyed at the deadline */
    tt_shutdown_cb shut_cb;
    void *shut_arg;
    tt_server_totals_t closed_totals; /* what connections that already closed did */
    uint64_t refused;
    tt__handoff_cb handoff; /* acceptor mode: accepted sockets go to other loops */
    void *handoff_arg;
    tt__live_cfg_t *live; /* liveness for accepted connections; NULL: none */
    struct tt__codec *frame; /* framing for accepted connections; NULL: none */
    struct tt__ws_cfg *ws;   /* WebSocket for accepted connections; NULL: none */
    tt__zombie_t zombie;
    /* Unix domain (docs/local.md): the socket file we bound (removed when we stop
     * listening, if still ours), and the uids admitted (none listed: all). */
    bool is_unix;
    tt__unix_file_t ufile;
    uint32_t *uids;
    size_t nuids;
    tt__srv_obs_t *obs; /* observers of opens and closes (server.h) */
};

void tt__server_observe(tt_server_t *s, tt__srv_obs_t *o)
{
    o->next = s->obs;
    s->obs = o;
}

void tt__server_unobserve(tt_server_t *s, tt__srv_obs_t *o)
{
    for (tt__srv_obs_t **p = &s->obs; *p != NULL; p = &(*p)->next)
        if (*p == o) {
            *p = o->next;
            return;
        }
}

static void event(tt_server_t *s, int ev, int err, const tt_addr_t *peer)
{
    if (s->o.on_event != NULL)
        s->o.on_event(s, ev, err, peer);
}

static void set_accepting(tt_server_t *s, bool on)
{
    if (s->closed || s->shutting_down || s->paused == !on)
        return;
    s->paused = !on;
    tt__poller_set(&s->loop->poller, &s->io.io, on ? TT__POLL_IN : 0);
}

static bool at_limit(const tt_server_t *s)
{
    return s->o.max_conns != 0 && s->count >= s->o.max_conns;
}

static void link_conn(tt_server_t *s, tt_conn_t *c)
{
    c->flags |= TT__F_SERVED; /* c->h is s->hs: the server is found there */
    c->srv_next = NULL;
    c->srv_prev = s->tail;
    if (s->tail != NULL)
        s->tail->srv_next = c;
    else
        s->head = c;
    s->tail = c;
    s->count++;
}

static void shutdown_done(tt_server_t *s);

static void add_conn_totals(tt_server_totals_t *t, const tt_conn_t *c)
{
    t->bytes_in += c->bytes_in;
    t->bytes_out += c->written;
    t->packets_in += c->packets_in;
    t->packets_out += c->packets_out;
    if (c->ext != NULL) {
        t->messages_in += c->ext->msgs_in;
        t->messages_out += c->ext->msgs_out;
    }
}

int tt_server_get_totals(const tt_server_t *s, tt_server_totals_t *out)
{
    if (s == NULL || out == NULL)
        return -EINVAL;
    *out = s->closed_totals;
    for (const tt_conn_t *c = s->head; c != NULL; c = c->srv_next)
        add_conn_totals(out, c);
    out->open = s->count;
    out->accepted = s->accepted;
    out->refused = s->refused;
    return 0;
}

void tt__server_unlink(tt_conn_t *c)
{
    tt_server_t *s = tt__conn_server(c);

    if (!s->closed)
        for (tt__srv_obs_t *o = s->obs; o != NULL; o = o->next)
            o->closed(o, c);
    /* The key counted at accept: asking the socket now would fail after a reset
     * (getpeername gives ENOTCONN), and the address would be locked out for good. */
    if (c->ext != NULL && c->ext->ip_counted) {
        c->ext->ip_counted = false;
        tt__ipcount_dec_key(&s->per_ip, c->ext->ip_key);
    }
    add_conn_totals(&s->closed_totals, c);
    if (c->srv_prev != NULL)
        c->srv_prev->srv_next = c->srv_next;
    else
        s->head = c->srv_next;
    if (c->srv_next != NULL)
        c->srv_next->srv_prev = c->srv_prev;
    else
        s->tail = c->srv_prev;
    c->srv_prev = c->srv_next = NULL;
    c->flags &= ~TT__F_SERVED;
    s->count--;
    if (s->closed)
        return;
    if (s->shutting_down) {
        /* We are at the start of this connection's close: its on_close has not run
         * yet. Report from the next round, so the shutdown callback comes after
         * the last on_close and may free what that on_close still uses. */
        if (s->count == 0)
            tt__wheel_start(&s->loop->wheel, &s->deadline, tt__loop_deadline(s->loop, 0));
        return;
    }
    /* A descriptor and a slot just freed up: accept again if that is what held
     * us (the rate limit resumes through its own timer). */
    if (s->paused && !at_limit(s) && !tt__wnode_active(&s->retry)) {
        set_accepting(s, true);
        event(s, TT_SERVER_RESUMED, 0, NULL);
    }
}

/* Out of descriptors: a level-triggered listener would wake us forever. Spend the
 * reserve descriptor to accept and close one pending client, take the reserve
 * back, and stop accepting until one of our connections closes or a short retry
 * timer runs out (the reserve-descriptor technique libev and nginx describe). */
static void out_of_descriptors(tt_server_t *s, int err)
{
    if (s->reserve_fd >= 0) {
        close(s->reserve_fd);
        int fd = accept4(s->io.io.fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            close(fd);
            s->refused++; /* shed: it counts like any other refused client */
        }
        s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    set_accepting(s, false);
    tt__wheel_start(&s->loop->wheel, &s->retry, tt__loop_deadline(s->loop, NOFILE_RETRY_MS));
    event(s, TT_SERVER_NOFILE, err, NULL);
}

static void retry_cb(tt__wnode_t *node)
{
    tt_server_t *s = tt__container_of(node, tt_server_t, retry);
    if (at_limit(s))
        return; /* the next close resumes */
    set_accepting(s, true);
    event(s, TT_SERVER_RESUMED, 0, NULL);
}

/* Refuse one accepted client: optional short message, then close. A vetoed client
 * gets RST (it was never welcome); a limit gets the message and a FIN. */
static void refuse(tt_server_t *s, int fd, int err, const tt_addr_t *peer, bool reset)
{
    if (s->o.limit_message != NULL && !reset) {
        ssize_t r = send(fd, s->o.limit_message, strlen(s->o.limit_message),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)r; /* best effort: a fresh socket's buffer takes a short line */
    }
    if (reset)
        tt__sock_set_reset_on_close(fd);
    close(fd);
    s->refused++;
    event(s, TT_SERVER_REFUSED, err, peer);
}

/* Unix domain: CIDR blocks do not apply; the peer's uid does, once listed. */
static int admit_uid(const tt_server_t *s, int fd)
{
    tt_peer_cred_t cred;

    if (s->nuids == 0)
        return 0;
    if (tt__sock_peer_cred(fd, &cred) < 0)
        return -EACCES;
    for (size_t i = 0; i < s->nuids; i++)
        if (s->uids[i] == cred.uid)
            return 0;
    return -EACCES;
}

/* Admission for one accepted client. 0 to keep it; else it was refused. Behind
 * a balancer (PROXY protocol on) the lists and the audit hook wait for the
 * header: the address here is the balancer's (proxy_admit). */
static int admit(tt_server_t *s, int fd, const tt_addr_t *peer)
{
    int err = 0;
    if (s->o.proxy == TT_PROXY_OFF) {
        err = s->is_unix ? admit_uid(s, fd) : tt__acl_check(&s->acl, peer);
        if (err == 0)
            err = tt__audit(s->loop, TT_AUDIT_ACCEPT, peer);
    }
    if (err < 0) {
        refuse(s, fd, err, peer, true);
        return err;
    }
    if (at_limit(s)) { /* only in limit_close mode: otherwise we paused before */
        refuse(s, fd, -EBUSY, peer, false);
        return -EBUSY;
    }
    return 0;
}

/* The per-address cap, counted on the server that will own the connection (in
 * acceptor mode the adopting worker, not the acceptor: one count, one release). */
static int admit_per_ip(tt_server_t *s, int fd, const tt_addr_t *peer)
{
    if (s->o.max_conns_per_ip == 0 || s->o.proxy != TT_PROXY_OFF)
        return 0; /* behind a balancer: counted on the client's address (proxy_admit) */
    long n = tt__ipcount_inc(&s->per_ip, peer, s->o.max_conns_per_ip);
    if (n <= 0) {
        int err = n < 0 ? (int)n : -EBUSY;
        refuse(s, fd, err, peer, false);
        return err;
    }
    return 0;
}

static void adopt(tt_server_t *s, int fd, const tt_addr_t *peer);

/* PROXY protocol: what admit and admit_per_ip did at accept, now for the client
 * the header named (or, when it named none, the socket's peer). A refusal is
 * counted and reported like one at accept; the caller resets the connection. */
static int proxy_admit(tt_conn_t *c, const tt_addr_t *peer)
{
    tt_server_t *s = tt__conn_server(c);
    int err;

    if (s == NULL) /* the server was closed meanwhile: only the loop's hook is left */
        return tt__audit(tt__conn_loop(c), TT_AUDIT_ACCEPT, peer);
    err = tt__acl_check(&s->acl, peer);
    if (err == 0)
        err = tt__audit(s->loop, TT_AUDIT_ACCEPT, peer);
    if (err == 0 && s->o.max_conns_per_ip != 0) {
        long n = tt__ipcount_inc(&s->per_ip, peer, s->o.max_conns_per_ip);
        if (n <= 0) {
            err = n < 0 ? (int)n : -EBUSY;
        } else {
            tt__ipcount_key(peer, c->ext->ip_key); /* ext exists: the proxy state is in it */
            c->ext->ip_counted = true;
        }
    }
    if (err < 0) {
        s->refused++;
        event(s, TT_SERVER_REFUSED, err, peer);
    }
    return err;
}

static void accept_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending)
{
    tt_server_t *s = tt__container_of(io, tt_server_t, io.io);

    (void)ev, (void)buf, (void)n, (void)pending;
    for (int i = 0; i < ACCEPT_BATCH && !s->closed && !s->paused && !s->shutting_down; i++) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof(ss);
        tt_addr_t peer;

        /* Look for a token, spend it only on a client: the accept that finds the
         * backlog empty (EAGAIN) must not cost one. */
        if (!tt__bucket_ready(&s->bucket, s->loop->now)) {
            /* Over the accept rate: leave clients in the backlog until a token. */
            set_accepting(s, false);
            tt__wheel_start(&s->loop->wheel, &s->retry,
                            tt__loop_deadline(s->loop, tt__bucket_wait(&s->bucket, s->loop->now)));
            break;
        }
        int fd = accept4(s->io.io.fd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = -errno;
            if (err == -EINTR || err == -ECONNABORTED)
                continue;
            if (err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM)
                out_of_descriptors(s, err);
            break; /* EAGAIN: drained */
        }
        tt__bucket_take(&s->bucket, s->loop->now);
        memset(&peer, 0, sizeof(peer));
        tt_addr_from_sockaddr(&peer, (struct sockaddr *)&ss, sslen);
        if (admit(s, fd, &peer) < 0)
            continue;
        if (s->handoff != NULL) {
            s->accepted++;
            s->handoff(s, fd, &peer, s->handoff_arg); /* another loop adopts it */
            continue;
        }
        if (admit_per_ip(s, fd, &peer) < 0)
            continue;
        adopt(s, fd, &peer);
    }
}

/* Turn an accepted, admitted socket into a connection of this server. */
static void adopt(tt_server_t *s, int fd, const tt_addr_t *peer)
{
    if (!s->is_unix)
        tt__sock_set_bool(fd, IPPROTO_TCP, TCP_NODELAY, true);
    tt_conn_t *c = tt__conn_new(s->loop, fd, s->hs);
    if (c == NULL) {
        if (s->o.max_conns_per_ip != 0 && s->o.proxy == TT_PROXY_OFF)
            tt__ipcount_dec(&s->per_ip, peer);
        refuse(s, fd, -ENOMEM, peer, true);
        return;
    }
    int err = s->is_unix ? tt__conn_mark_unix(c, NULL) : 0;
    if (s->o.max_conns_per_ip != 0 && s->o.proxy == TT_PROXY_OFF) {
        /* Released by tt__server_unlink from this key, whatever the socket says
         * by then. */
        tt__conn_ext_t *ext = tt__conn_ext(c);
        if (ext != NULL) {
            tt__ipcount_key(peer, ext->ip_key);
            ext->ip_counted = true;
        } else {
            tt__ipcount_dec(&s->per_ip, peer);
            err = -ENOMEM;
        }
    }
    /* The mark and the cap come with the server's handlers (tt__handlers_set_limits). */
    tt_conn_set_half_open(c, s->o.half_open);
    /* The PROXY header is read before any other layer sees a byte; TLS under
     * everything else; framing before liveness, which looks at it to decide how
     * to ping. */
    if (err == 0 && s->o.proxy != TT_PROXY_OFF)
        err = tt__proxy_apply(c, s->o.proxy, s->o.proxy_timeout_ms, proxy_admit);
    if (err == 0 && s->o.tls != NULL)
        err = tt__tls_apply(c, s->o.tls, NULL, NULL, s->o.tls_handshake_timeout_ms);
    if (err == 0 && s->frame != NULL)
        err = tt__frame_apply(c, s->frame);
    else if (err == 0 && s->ws != NULL)
        err = tt__ws_apply(c, s->ws);
    if (err == 0 && s->live != NULL)
        tt__live_apply(c, s->live); /* best effort, like the options above */
    link_conn(s, c);
    s->accepted++;
    for (tt__srv_obs_t *o = s->obs; o != NULL; o = o->next)
        o->opened(o, c);
    if (at_limit(s) && !s->o.limit_close && s->io.io.fd >= 0) {
        set_accepting(s, false);
        event(s, TT_SERVER_PAUSED, 0, NULL);
    }
    if (err < 0) { /* unframed, the stream would be misparsed; uncounted, leaked */
        tt__conn_close(c, TT_CLOSE_IO_ERROR, err);
        return;
    }
    tt__conn_opened(c); /* on_open: may close the connection or the server */
}

int tt__server_adopt(tt_server_t *s, int fd, const tt_addr_t *peer)
{
    if (s->closed || s->shutting_down) {
        close(fd);
        return -ESHUTDOWN;
    }
    int err = admit_per_ip(s, fd, peer); /* refused (fd closed, event sent) if over */
    if (err < 0)
        return err;
    adopt(s, fd, peer);
    return 0;
}

void tt__server_set_handoff(tt_server_t *s, tt__handoff_cb cb, void *arg)
{
    s->handoff = cb;
    s->handoff_arg = arg;
}

static int listen_on(const tt_addr_t *addr, const tt_server_opts_t *o, int *out_fd)
{
    int fd, err;

    fd = tt__sock_open(addr->u.sa.sa_family, SOCK_STREAM);
    if (fd < 0)
        return fd;
    if (!o->no_reuseaddr && (err = tt__sock_set_bool(fd, SOL_SOCKET, SO_REUSEADDR, true)) < 0)
        goto fail_err;
    /* SO_REUSEPORT: the kernel only lets sockets of the same effective user share
     * the port (socket(7)), so another user's process cannot hijack it. */
    if (o->reuseport && (err = tt__sock_set_bool(fd, SOL_SOCKET, SO_REUSEPORT, true)) < 0)
        goto fail_err;
    if (addr->u.sa.sa_family == AF_INET6 &&
        (err = tt__sock_set_bool(fd, IPPROTO_IPV6, IPV6_V6ONLY, o->v6only)) < 0)
        goto fail_err;
    if (bind(fd, &addr->u.sa, addr->len) < 0)
        goto fail;
    if (listen(fd, o->backlog > 0 ? o->backlog : SOMAXCONN) < 0)
        goto fail;
    *out_fd = fd;
    return 0;

fail:
    err = -errno; /* before close() can overwrite it */
fail_err:
    close(fd);
    return err;
}

/* Options that apply to a listening socket however it was made. */
static int listener_options(int fd, const tt_server_opts_t *o)
{
    int err;
    /* TCP_DEFER_ACCEPT: accept() only returns once the client sent data (tcp(7)),
     * so protocols where the client speaks first cost no wake-up per idle connect. */
    if (o->defer_accept_s > 0 &&
        (err = tt__sock_set_int(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, o->defer_accept_s)) < 0)
        return err;
    if (o->fastopen_qlen > 0 &&
        (err = tt__sock_set_int(fd, IPPROTO_TCP, TCP_FASTOPEN, o->fastopen_qlen)) < 0)
        return err;
    return 0;
}

static void server_free(tt__zombie_t *z)
{
    tt_server_t *s = tt__container_of(z, tt_server_t, zombie);
    free(s->limit_message);
    tt__live_cfg_free(s->live);
    tt__frame_cfg_free(s->frame);
    tt__ws_cfg_free(s->ws);
    tt_tls_ctx_free(s->o.tls);
    tt__acl_free(&s->acl);
    tt__ipcount_free(&s->per_ip);
    free(s->uids);
    free(s);
}

static int check_opts(const tt_server_opts_t *o)
{
    if (o->backlog < 0 || o->defer_accept_s < 0 || o->fastopen_qlen < 0)
        return -EINVAL;
    /* The values accepted connections get (0: the defaults): a high-water mark
     * above the cap could never be set on them, so it is refused here, not
     * dropped silently per connection. */
    size_t hw = o->high_water != 0 ? o->high_water : TT_DEFAULT_HIGH_WATER;
    size_t cap = o->queue_cap != 0 ? o->queue_cap : TT_DEFAULT_QUEUE_CAP;
    if (hw > UINT32_MAX || (cap != SIZE_MAX && cap < hw))
        return -EINVAL;
    if (tt__live_check(o->liveness, o->detect_within_ms) < 0)
        return -EINVAL;
    if (tt__proxy_check_mode(o->proxy) < 0 || o->proxy_timeout_ms > TT_TIMEOUT_MAX)
        return -EINVAL;
    if (tt__frame_check(o->frame) < 0 || tt__ws_check(o->websocket) < 0 ||
        (o->frame != NULL && o->websocket != NULL))
        return -EINVAL;
    if (o->tls != NULL && !tt__tls_ctx_is_server(o->tls))
        return -EINVAL;
    if (o->tls_handshake_timeout_ms > TT_TIMEOUT_MAX)
        return -EINVAL;
    return 0;
}

/* What a Unix domain listener cannot do: refused, not silently dropped. */
static int check_unix_opts(const tt_server_opts_t *o)
{
    if (o->defer_accept_s != 0 || o->fastopen_qlen != 0 || o->max_conns_per_ip != 0 ||
        o->proxy != TT_PROXY_OFF)
        return -EOPNOTSUPP;
    return tt__live_check_unix(o->liveness);
}

static void retry_cb(tt__wnode_t *node);
static void deadline_cb(tt__wnode_t *node);

int tt_server_fd(const tt_server_t *s)
{
    return s != NULL && !s->closed ? s->io.io.fd : -1;
}

int tt_server_set_tls(tt_server_t *s, tt_tls_ctx_t *ctx)
{
    if (s == NULL || ctx == NULL || !tt__tls_ctx_is_server(ctx) || s->o.tls == NULL || s->closed)
        return -EINVAL;
    tt__tls_ctx_ref(ctx);
    tt_tls_ctx_free(s->o.tls); /* open connections hold their own references */
    s->o.tls = ctx;
    return 0;
}

/* Common tail of both ways to make a server: fd is a listening socket. */
static int server_start(tt_loop_t *loop, int fd, const tt_server_opts_t *o,
                        const tt_conn_handlers_t *h, void *data, tt_server_t **out)
{
    tt_server_t *s;
    int err;

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        err = -ENOMEM;
        goto fail_alloc;
    }
    s->o = *o;
    tt__tls_ctx_ref(s->o.tls); /* the server's own reference: tt_server_set_tls swaps it */
    if (o->limit_message != NULL) {
        s->limit_message = strdup(o->limit_message);
        if (s->limit_message == NULL) {
            err = -ENOMEM;
            goto fail_message;
        }
    }
    s->o.limit_message = s->limit_message;
    err = tt__live_cfg_new(&s->live, o->liveness, o->detect_within_ms);
    if (err < 0)
        goto fail_message;
    s->o.liveness = NULL; /* copied into s->live: the caller's memory is not kept */
    err = tt__frame_cfg_new(&s->frame, o->frame);
    if (err < 0)
        goto fail_message;
    s->o.frame = NULL; /* compiled into s->frame */
    err = tt__ws_cfg_new(&s->ws, o->websocket);
    if (err < 0)
        goto fail_message;
    s->o.websocket = NULL; /* compiled into s->ws */
    s->hs = tt__handlers_new(h);
    if (s->hs == NULL) {
        err = -ENOMEM;
        goto fail_message;
    }
    s->hs->server = s;
    /* check_opts made sure the cap is not below the mark. */
    tt__handlers_set_limits(s->hs, o->high_water != 0 ? o->high_water : TT_DEFAULT_HIGH_WATER,
                            o->queue_cap != 0 ? o->queue_cap : TT_DEFAULT_QUEUE_CAP);
    tt__io_init(&s->io, fd, TT__IO_RAW, accept_cb);
    if (fd >= 0) { /* fd -1: a server that only adopts sockets accepted elsewhere */
        err = listener_options(fd, o);
        if (err < 0)
            goto fail_register;
        err = tt__poller_set(&loop->poller, &s->io.io, TT__POLL_IN);
        if (err < 0)
            goto fail_register;
        tt__sock_local(fd, &s->addr);
        s->is_unix = tt_addr_is_unix(&s->addr);
    }
    s->loop = loop;
    s->data = data;
    if (s->o.high_water == 0)
        s->o.high_water = TT_DEFAULT_HIGH_WATER;
    if (s->o.queue_cap == 0)
        s->o.queue_cap = TT_DEFAULT_QUEUE_CAP;
    tt__bucket_init(&s->bucket, o->accept_rate, o->accept_burst, loop->now);
    tt__wnode_init(&s->retry, retry_cb);
    tt__wnode_init(&s->deadline, deadline_cb);
    s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->zombie.free_fn = server_free;
    loop->handles++;
    loop->active++;
    *out = s;
    return 0;

fail_register:
    tt__handlers_unref(s->hs);
fail_message:
    tt_tls_ctx_free(s->o.tls);
    tt__ws_cfg_free(s->ws);
    tt__frame_cfg_free(s->frame);
    tt__live_cfg_free(s->live);
    free(s->limit_message);
    free(s);
fail_alloc:
    if (fd >= 0)
        close(fd);
    return err;
}

int tt__server_new_adopting(tt_loop_t *loop, const tt_addr_t *addr, const tt_server_opts_t *o,
                            const tt_conn_handlers_t *h, void *data, tt_server_t **out)
{
    int err = server_start(loop, -1, o, h, data, out);
    if (err == 0 && addr != NULL) {
        (*out)->addr = *addr;
        (*out)->is_unix = tt_addr_is_unix(addr);
    }
    return err;
}

int tt_server_listen(tt_loop_t *loop, const tt_addr_t *addr, const tt_server_opts_t *opts,
                     const tt_conn_handlers_t *h, void *data, tt_server_t **out)
{
    tt_server_opts_t o = {0};
    int fd = -1, err;

    if (loop == NULL || addr == NULL || out == NULL || addr->len == 0 ||
        (addr->u.sa.sa_family != AF_INET && addr->u.sa.sa_family != AF_INET6 &&
         addr->u.sa.sa_family != AF_UNIX))
        return -EINVAL;
    if (opts != NULL)
        o = *opts;
    err = check_opts(&o);
    if (err < 0)
        return err;
    if (tt_addr_is_unix(addr) && (o.reuseport || o.v6only))
        return -EOPNOTSUPP;
    if (tt_addr_is_unix(addr) && (err = check_unix_opts(&o)) < 0)
        return err;
    err = tt__audit(loop, TT_AUDIT_BIND, addr);
    if (err < 0)
        return err;
    if (tt_addr_is_unix(addr)) {
        tt__unix_file_t file;
        fd = tt__unix_listen(addr, o.unix_mode, o.backlog, &file);
        if (fd < 0)
            return fd;
        err = server_start(loop, fd, &o, h, data, out);
        if (err < 0)
            tt__unix_unlink_ours(tt_addr_unix_path(addr), &file);
        else
            (*out)->ufile = file;
        return err;
    }
    err = listen_on(addr, &o, &fd);
    if (err < 0)
        return err;
    return server_start(loop, fd, &o, h, data, out);
}

int tt_server_listen_fd(tt_loop_t *loop, int fd, const tt_server_opts_t *opts,
                        const tt_conn_handlers_t *h, void *data, tt_server_t **out)
{
    tt_server_opts_t o = {0};
    int type = 0, listening = 0, fl, err;
    socklen_t len = sizeof(int);

    if (fd < 0)
        return -EINVAL;
    if (loop == NULL || out == NULL) {
        err = -EINVAL;
        goto fail;
    }
    if (opts != NULL)
        o = *opts;
    err = check_opts(&o);
    if (err < 0)
        goto fail;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
        err = -errno;
        goto fail;
    }
    len = sizeof(int);
    if (type != SOCK_STREAM ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening) {
        err = -EINVAL;
        goto fail;
    }
    tt_addr_t local;
    if (tt__sock_local(fd, &local) == 0 && tt_addr_is_unix(&local) &&
        (err = check_unix_opts(&o)) < 0)
        goto fail;
    /* Inherited descriptors may be blocking: accept must never block the loop. */
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        err = -errno;
        goto fail;
    }
    return server_start(loop, fd, &o, h, data, out);

fail:
    close(fd);
    return err;
}

/* Stop listening: out of the poller, closed, our socket file removed. */
static void close_listener(tt_server_t *s)
{
    if (s->io.io.fd >= 0) {
        tt__poller_remove(&s->loop->poller, &s->io.io);
        close(s->io.io.fd);
        s->io.io.fd = -1;
    }
    tt__unix_unlink_ours(tt_addr_unix_path(&s->addr), &s->ufile);
}

int tt_server_stop_accepting(tt_server_t *s)
{
    if (s == NULL || s->closed)
        return -EINVAL;
    tt__wheel_stop(&s->loop->wheel, &s->retry); /* no resume after a pause either */
    close_listener(s);
    return 0;
}

int tt_server_close(tt_server_t *s)
{
    if (s == NULL || s->closed)
        return -EINVAL;
    s->closed = true;
    tt__wheel_stop(&s->loop->wheel, &s->retry);
    tt__wheel_stop(&s->loop->wheel, &s->deadline);
    close_listener(s);
    if (s->reserve_fd >= 0)
        close(s->reserve_fd);
    while (s->head != NULL)
        tt__server_unlink(s->head); /* the connections live on, serverless */
    tt__handlers_unref(s->hs);      /* connections hold their own references */
    s->loop->handles--;
    s->loop->active--;
    /* Freed at the end of the round: an accept event may still be in flight. */
    tt__loop_defer_free(s->loop, &s->zombie);
    return 0;
}

/* ---- graceful shutdown --------------------------------------------------------- */

static void shutdown_done(tt_server_t *s)
{
    tt_shutdown_cb cb = s->shut_cb;
    void *arg = s->shut_arg;
    size_t destroyed = s->shut_destroyed, ended = s->shut_total - destroyed;

    tt__wheel_stop(&s->loop->wheel, &s->deadline);
    if (cb != NULL)
        cb(s, ended, destroyed, arg);
    if (!s->closed)
        tt_server_close(s);
}

static void deadline_cb(tt__wnode_t *node)
{
    tt_server_t *s = tt__container_of(node, tt_server_t, deadline);

    if (s->count == 0) { /* nothing was open: report from the loop, as promised */
        shutdown_done(s);
        return;
    }
    /* What did not finish its graceful end in time is destroyed; the closes
     * arrive this round and the last one completes the shutdown. */
    for (tt_conn_t *c = s->head; c != NULL; c = c->srv_next) {
        if (!tt__conn_is_closing(c)) {
            s->shut_destroyed++;
            tt__conn_close(c, TT_CLOSE_SHUTDOWN, TT_ESHUTDOWN);
        }
    }
}

int tt_server_shutdown(tt_server_t *s, uint64_t deadline_ms, tt_shutdown_cb cb, void *arg)
{
    if (s == NULL || s->closed || s->shutting_down || deadline_ms > TT_TIMEOUT_MAX)
        return -EINVAL;
    s->shutting_down = true;
    s->shut_total = s->count;
    s->shut_cb = cb;
    s->shut_arg = arg;
    tt__wheel_stop(&s->loop->wheel, &s->retry);
    /* Stop accepting: clients still in the backlog are refused by the kernel. */
    close_listener(s);
    for (tt_conn_t *c = s->head; c != NULL; c = c->srv_next) {
        if (tt__conn_is_closing(c))
            continue;
        (void)tt_ws_close(c, TT_WS_GOING_AWAY, NULL); /* WebSocket: says why first */
        tt_end(c, NULL, 0); /* -EPIPE: already ending, which is fine */
    }
    /* With no connection the deadline fires at once and reports (0, 0). */
    tt__wheel_start(&s->loop->wheel, &s->deadline,
                    tt__loop_deadline(s->loop, s->count == 0 ? 0 : deadline_ms));
    return 0;
}

bool tt_server_is_shutting_down(const tt_server_t *s) { return s != NULL && s->shutting_down; }

/* ---- accessors ------------------------------------------------------------------ */

int tt_server_addr(const tt_server_t *s, tt_addr_t *out)
{
    if (s == NULL || out == NULL || s->closed)
        return -EINVAL;
    *out = s->addr;
    return 0;
}

void *tt_server_get_data(const tt_server_t *s) { return s != NULL ? s->data : NULL; }

void tt_server_set_data(tt_server_t *s, void *data)
{
    if (s != NULL)
        s->data = data;
}

tt_loop_t *tt_server_loop(const tt_server_t *s) { return s != NULL ? s->loop : NULL; }

size_t tt_server_conn_count(const tt_server_t *s) { return s != NULL ? s->count : 0; }

uint64_t tt_server_accepted_total(const tt_server_t *s) { return s != NULL ? s->accepted : 0; }

bool tt_server_is_paused(const tt_server_t *s) { return s != NULL && s->paused; }

const char *tt_server_event_name(int event)
{
    switch (event) {
    case TT_SERVER_PAUSED:
        return "paused";
    case TT_SERVER_RESUMED:
        return "resumed";
    case TT_SERVER_REFUSED:
        return "refused";
    case TT_SERVER_NOFILE:
        return "out of descriptors";
    default:
        return "unknown";
    }
}

int tt_server_foreach(tt_server_t *s, int (*fn)(tt_conn_t *c, void *arg), void *arg)
{
    int visited = 0;

    if (s == NULL || fn == NULL)
        return -EINVAL;
    for (tt_conn_t *c = s->head; c != NULL;) {
        tt_conn_t *next = c->srv_next;
        visited++;
        if (fn(c, arg) != 0)
            break;
        c = next;
    }
    return visited;
}

int tt_server_allow(tt_server_t *s, const char *cidr)
{
    if (s == NULL || cidr == NULL)
        return -EINVAL;
    if (s->is_unix)
        return -EOPNOTSUPP; /* Unix peers have no IP: tt_server_allow_uid */
    return tt__acl_add(&s->acl, true, cidr);
}

int tt_server_deny(tt_server_t *s, const char *cidr)
{
    if (s == NULL || cidr == NULL)
        return -EINVAL;
    if (s->is_unix)
        return -EOPNOTSUPP;
    return tt__acl_add(&s->acl, false, cidr);
}

int tt_server_allow_uid(tt_server_t *s, uint32_t uid)
{
    uint32_t *list;

    if (s == NULL || s->closed)
        return -EINVAL;
    if (!s->is_unix)
        return -EOPNOTSUPP;
    list = realloc(s->uids, (s->nuids + 1) * sizeof(*list));
    if (list == NULL)
        return -ENOMEM;
    list[s->nuids++] = uid;
    s->uids = list;
    return 0;
}
