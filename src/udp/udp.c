/* UDP sockets: datagrams in batches, a send queue with backpressure, the error
 * queue, connected sockets, broadcast and multicast.
 *
 * Receiving: on readiness, recvmmsg(2) fills up to RECV_BATCH_MAX slots of
 * recv_size bytes cut from the loop's shared read buffer (DESIGN.md: no
 * per-socket read buffer, so an idle socket holds no buffer at all). MSG_TRUNC
 * in the flags argument makes msg_len the datagram's real length (udp(7)), and
 * MSG_TRUNC in msg_flags tells us the slot cut it.
 *
 * Sending: a send goes straight to sendmsg(2) when nothing is queued. While the
 * socket is delivering a receive batch, or waits for buffer space, sends are
 * copied into a queue of datagrams (each keeps its boundary and destination) and
 * written with sendmmsg(2): an echo server answering 32 datagrams does one call
 * in and one call out (the strategy libuv uses in uv__udp_sendmsg).
 *
 * Errors: IP_RECVERR / IPV6_RECVERR are always on, so every ICMP error is queued
 * on the socket's error queue with the failed datagram's destination and the
 * reporting node (ip(7), ipv6(7)). The kernel also stores it in sk_err, which the
 * next sendmsg or recvmsg returns (and clears) whatever datagram it is about; we
 * never pass that stale error on. The datagram is tried once more and the error
 * itself is read from the error queue (MSG_ERRQUEUE) and delivered by on_error.
 * Reading the error queue also clears sk_err (sock_dequeue_err_skb). */
#include <errno.h>
#include <time.h> /* before linux/errqueue.h, which uses struct timespec */
#include <linux/errqueue.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "sys/sock.h"

#define F_CLOSED 0x0001      /* tt_udp_close called: on_close pending */
#define F_CONNECTED 0x0002   /* a default peer is set */
#define F_HWM 0x0004         /* a send returned TT_SEND_FULL: drain owed */
#define F_WAIT_WRITE 0x0008  /* the socket is full: waiting for WRITABLE */
#define F_IN_RECV 0x0010     /* delivering a receive batch: sends are queued */
#define F_FLUSHING 0x0020    /* inside flush(): no re-entry */
#define F_PEND_LISTEN 0x0040 /* task: deliver on_listening */
#define F_PEND_FLUSH 0x0080  /* task: write the queue */
#define F_PORT_CHOSEN 0x0100 /* bound to port 0: re-bind after disconnect */
#define F_DUAL 0x0200        /* IPv6 socket that also carries IPv4 */

/* 64 KiB read buffer / 2 KiB default slots = 32 datagrams per call. */
#define RECV_BATCH_MAX 64
#define SEND_BATCH 64
/* recvmmsg calls per readiness: a busy socket cannot starve the others. */
#define RECV_CALLS_PER_WAKE 8
/* Error reports read per readiness (the queue is bounded by the rcvbuf anyway). */
#define ERRQ_PER_WAKE 64
/* Room for one SO_RXQ_OVFL control message per received datagram. */
#define RECV_CTRL 32

typedef union sockname {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} sockname_t;

/* A queued datagram: its own boundary and destination (len 0: the default peer at
 * the time it is written). */
typedef struct dgram {
    struct dgram *next;
    sockname_t to; /* an IP address only: not a whole tt_addr_t, which a Unix
                      address makes four times larger, on every queued datagram */
    socklen_t to_len;
    size_t len;
    char data[];
} dgram_t;

struct tt_udp {
    tt__io_own_t io;
    tt_loop_t *loop;
    tt_udp_handlers_t h;
    void *data;
    tt_addr_t bound; /* as bound (with the chosen port): re-bound after disconnect */
    tt_addr_t peer;  /* the default peer, as connected (mapped on a dual socket) */
    dgram_t *qhead, *qtail;
    size_t qmem; /* payload + entry overhead: what the hard cap limits */
    size_t qcount, qbytes;
    size_t high_water, queue_cap;
    uint32_t recv_size;
    uint32_t flags;
    uint32_t ovfl; /* last SO_RXQ_OVFL counter seen (the kernel's sk_drops) */
    int family;
    int fail_err; /* the poller refused the socket: reported before on_close */
    tt_udp_stats_t st;
    tt__task_t task;
    tt__zombie_t zombie;
};

static void io_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending);
static void run_task(tt__task_t *t);
static void flush(tt_udp_t *u);

static bool is_closed(const tt_udp_t *u) { return (u->flags & F_CLOSED) != 0; }

/* ---- addresses ------------------------------------------------------------------ */

/* A destination in the socket's family: an IPv4 address on a dual-stack IPv6
 * socket becomes ::ffff:a.b.c.d (ipv6(7), "IPv4-mapped"). */
static int to_sock_family(const tt_udp_t *u, const tt_addr_t *in, tt_addr_t *out)
{
    int fam = in->u.sa.sa_family;

    if ((fam != AF_INET && fam != AF_INET6) || in->len < sizeof(struct sockaddr_in))
        return -EINVAL;
    if (fam == u->family) {
        *out = *in;
        return 0;
    }
    if (fam == AF_INET6 || !(u->flags & F_DUAL))
        return -EAFNOSUPPORT;
    memset(out, 0, sizeof(*out));
    out->u.in6.sin6_family = AF_INET6;
    out->u.in6.sin6_port = in->u.in4.sin_port;
    out->u.in6.sin6_addr.s6_addr[10] = 0xff;
    out->u.in6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&out->u.in6.sin6_addr.s6_addr[12], &in->u.in4.sin_addr, 4);
    out->len = sizeof(struct sockaddr_in6);
    return 0;
}

/* The reverse for what we report: ::ffff:a.b.c.d back to a plain IPv4 address, so
 * a reply to `from` works on any socket and prints as the user expects. */
static void from_sockname(tt_addr_t *out, const struct sockaddr *sa, socklen_t len)
{
    if (tt_addr_from_sockaddr(out, sa, len) < 0) {
        memset(out, 0, sizeof(*out));
        return;
    }
    if (out->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&out->u.in6.sin6_addr)) {
        struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = out->u.in6.sin6_port};
        memcpy(&v4.sin_addr, &out->u.in6.sin6_addr.s6_addr[12], 4);
        memset(out, 0, sizeof(*out));
        out->u.in4 = v4;
        out->len = sizeof(v4);
    }
}

/* An interface by name, or by index in decimal; NULL or "" is 0 (the kernel
 * chooses by route). 0 and *index, or -ENODEV. */
static int iface_index(const char *iface, unsigned *index)
{
    char *end;
    unsigned long v;

    *index = 0;
    if (iface == NULL || iface[0] == '\0')
        return 0;
    *index = if_nametoindex(iface);
    if (*index != 0)
        return 0;
    errno = 0;
    v = strtoul(iface, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 || v > UINT32_MAX || iface[0] < '0' ||
        iface[0] > '9')
        return -ENODEV;
    *index = (unsigned)v;
    return 0;
}

static bool is_multicast(const tt_addr_t *a)
{
    if (a->u.sa.sa_family == AF_INET && a->len >= sizeof(struct sockaddr_in))
        return IN_MULTICAST(ntohl(a->u.in4.sin_addr.s_addr));
    if (a->u.sa.sa_family == AF_INET6 && a->len >= sizeof(struct sockaddr_in6))
        return IN6_IS_ADDR_MULTICAST(&a->u.in6.sin6_addr);
    return false;
}

/* ---- opening and closing ---------------------------------------------------------- */

static void udp_free(tt__zombie_t *z) { free(tt__container_of(z, tt_udp_t, zombie)); }

static int set_opt(int fd, int level, int opt, int v)
{
    return tt__sock_set_int(fd, level, opt, v);
}

static int open_socket(const tt_addr_t *addr, const tt_udp_opts_t *o, int *out_fd)
{
    int fam = addr->u.sa.sa_family;
    int fd, err;

    fd = tt__sock_open(fam, SOCK_DGRAM);
    if (fd < 0)
        return fd;
    if ((o->reuseaddr && (err = set_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1)) < 0) ||
        (o->reuseport && (err = set_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1)) < 0) ||
        (o->broadcast && (err = set_opt(fd, SOL_SOCKET, SO_BROADCAST, 1)) < 0) ||
        (o->sndbuf > 0 && (err = set_opt(fd, SOL_SOCKET, SO_SNDBUF, o->sndbuf)) < 0) ||
        (o->rcvbuf > 0 && (err = set_opt(fd, SOL_SOCKET, SO_RCVBUF, o->rcvbuf)) < 0) ||
        (err = set_opt(fd, SOL_SOCKET, SO_RXQ_OVFL, 1)) < 0)
        goto fail_err;
    if (fam == AF_INET6) {
        if ((err = set_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, o->v6only)) < 0 ||
            (err = set_opt(fd, IPPROTO_IPV6, IPV6_RECVERR, 1)) < 0)
            goto fail_err;
        /* IPv4 peers of a dual-stack socket report through the IPv4 flag. */
        if (!o->v6only && (err = set_opt(fd, IPPROTO_IP, IP_RECVERR, 1)) < 0)
            goto fail_err;
    } else if ((err = set_opt(fd, IPPROTO_IP, IP_RECVERR, 1)) < 0) {
        goto fail_err;
    }
    if (bind(fd, &addr->u.sa, addr->len) < 0)
        goto fail;
    *out_fd = fd;
    return 0;

fail:
    err = -errno; /* before close() can overwrite it */
fail_err:
    close(fd);
    return err;
}

int tt_udp_open(tt_loop_t *loop, const tt_addr_t *bind_addr, const tt_udp_opts_t *opts,
                const tt_udp_handlers_t *h, void *data, tt_udp_t **out)
{
    tt_udp_opts_t o = {0};
    tt_udp_t *u;
    int fd = -1, err, fam;

    if (loop == NULL || bind_addr == NULL || out == NULL)
        return -EINVAL;
    fam = bind_addr->u.sa.sa_family;
    if (!(fam == AF_INET && bind_addr->len >= sizeof(struct sockaddr_in)) &&
        !(fam == AF_INET6 && bind_addr->len >= sizeof(struct sockaddr_in6)))
        return -EINVAL;
    if (opts != NULL)
        o = *opts;
    if (o.recv_size == 0)
        o.recv_size = TT_UDP_DEFAULT_RECV_SIZE;
    if (o.high_water == 0)
        o.high_water = TT_DEFAULT_HIGH_WATER;
    if (o.queue_cap == 0)
        o.queue_cap = TT_DEFAULT_QUEUE_CAP;
    if (o.recv_size > TT_UDP_MAX_RECV_SIZE || o.recv_size > loop->poller.rbuf_size ||
        o.queue_cap < o.high_water || o.sndbuf < 0 || o.rcvbuf < 0)
        return -EINVAL;
    err = tt__audit(loop, TT_AUDIT_BIND, bind_addr);
    if (err < 0)
        return err; /* vetoed: nothing was created */

    u = calloc(1, sizeof(*u));
    if (u == NULL)
        return -ENOMEM;
    err = open_socket(bind_addr, &o, &fd);
    if (err < 0)
        goto fail_open;
    err = tt__sock_local(fd, &u->bound);
    if (err < 0)
        goto fail_register;
    tt__io_init(&u->io, fd, TT__IO_RAW, io_cb);
    err = tt__poller_set(&loop->poller, &u->io.io, TT__POLL_IN);
    if (err < 0)
        goto fail_register;

    u->loop = loop;
    if (h != NULL)
        u->h = *h;
    u->data = data;
    u->family = fam;
    u->recv_size = (uint32_t)o.recv_size;
    u->high_water = o.high_water;
    u->queue_cap = o.queue_cap;
    if (tt_addr_port(bind_addr) == 0)
        u->flags |= F_PORT_CHOSEN;
    if (fam == AF_INET6 && !o.v6only)
        u->flags |= F_DUAL;
    u->task.fn = run_task;
    u->zombie.free_fn = udp_free;
    loop->handles++;
    loop->active++;
    /* on_listening comes from the loop, never from inside this call. */
    u->flags |= F_PEND_LISTEN;
    tt__loop_defer(loop, &u->task);
    *out = u;
    return 0;

fail_register:
    close(fd);
fail_open:
    free(u);
    return err;
}

static void drop_queue(tt_udp_t *u)
{
    while (u->qhead != NULL) {
        dgram_t *d = u->qhead;
        u->qhead = d->next;
        u->st.dropped++;
        free(d);
    }
    u->qtail = NULL;
    u->qmem = u->qcount = u->qbytes = 0;
}

/* Take the socket out of the poller and close it; on_close follows from the task. */
static void begin_close(tt_udp_t *u)
{
    u->flags |= F_CLOSED;
    tt__poller_remove(&u->loop->poller, &u->io.io);
    close(u->io.io.fd);
    u->io.io.fd = -1; /* an event already fetched this round is skipped */
    drop_queue(u);
    tt__loop_defer(u->loop, &u->task);
}

int tt_udp_close(tt_udp_t *u)
{
    if (u == NULL || is_closed(u))
        return -EINVAL;
    begin_close(u);
    return 0;
}

static void finish_close(tt_udp_t *u)
{
    tt_loop_t *loop = u->loop;

    if (u->fail_err != 0 && u->h.on_error != NULL) {
        tt_udp_error_info_t info;
        memset(&info, 0, sizeof(info));
        u->h.on_error(u, u->fail_err, &info);
    }
    if (u->h.on_close != NULL)
        u->h.on_close(u);
    loop->handles--;
    loop->active--;
    /* Freed at the end of the round, like every handle (loop.h: zombies). */
    tt__loop_defer_free(loop, &u->zombie);
}

static void run_task(tt__task_t *t)
{
    tt_udp_t *u = tt__container_of(t, tt_udp_t, task);

    if (is_closed(u)) {
        finish_close(u);
        return;
    }
    if (u->flags & F_PEND_LISTEN) {
        u->flags &= ~F_PEND_LISTEN;
        if (u->h.on_listening != NULL)
            u->h.on_listening(u);
        if (is_closed(u))
            return; /* closed inside on_listening: the task is queued again */
    }
    if (u->flags & F_PEND_FLUSH) {
        u->flags &= ~F_PEND_FLUSH;
        flush(u);
    }
}

static void update_interest(tt_udp_t *u)
{
    unsigned ev = TT__POLL_IN | ((u->flags & F_WAIT_WRITE) ? TT__POLL_OUT : 0);
    int err;

    if (is_closed(u))
        return;
    err = tt__poller_set(&u->loop->poller, &u->io.io, ev);
    if (err < 0) {
        /* A socket the poller will not watch would hang silently: close it and
         * say why (on_error, then on_close). */
        u->fail_err = err;
        begin_close(u);
    }
}

/* ---- receiving ---------------------------------------------------------------------- */

static void deliver(tt_udp_t *u, struct mmsghdr *m, const char *buf)
{
    struct msghdr *mh = &m->msg_hdr;
    size_t full = m->msg_len;
    size_t len = full < u->recv_size ? full : u->recv_size;
    unsigned flags = 0;
    tt_addr_t from;

    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            uint32_t v;
            memcpy(&v, CMSG_DATA(c), sizeof(v));
            /* The kernel's drop counter for this socket, sent only once non-zero;
             * unsigned subtraction survives its wrap-around. */
            u->st.kernel_drops += (uint32_t)(v - u->ovfl);
            u->ovfl = v;
        }
    }
    if (mh->msg_flags & MSG_TRUNC) {
        flags |= TT_UDP_TRUNCATED;
        u->st.truncated++;
    }
    from_sockname(&from, mh->msg_name, mh->msg_namelen);
    u->st.datagrams_in++;
    u->st.bytes_in += len;
    if (u->h.on_datagram != NULL)
        u->h.on_datagram(u, buf, len, &from, flags, full);
}

/* Read and deliver the error queue. Returns the number of reports read. */
static int read_errq(tt_udp_t *u)
{
    int got = 0;

    for (int i = 0; i < ERRQ_PER_WAKE && !is_closed(u); i++) {
        union {
            char buf[512];
            struct cmsghdr align;
        } ctrl;
        char payload[1]; /* the failed datagram comes back too: we only need its header */
        struct iovec iov = {.iov_base = payload, .iov_len = sizeof(payload)};
        sockname_t name;
        struct msghdr msg = {.msg_name = &name, .msg_namelen = sizeof(name), .msg_iov = &iov,
                             .msg_iovlen = 1, .msg_control = ctrl.buf,
                             .msg_controllen = sizeof(ctrl.buf)};
        struct sock_extended_err *ee = NULL;
        tt_udp_error_info_t info;

        if (recvmsg(u->io.io.fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) {
            if (errno == EINTR)
                continue;
            break; /* EAGAIN: the queue is empty */
        }
        got++;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR) ||
                (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR))
                ee = (struct sock_extended_err *)CMSG_DATA(c);
        }
        /* A LOCAL report mirrors a send that already failed and returned its errno
         * (ip_local_error for EMSGSIZE): reporting it again would count it twice. */
        if (ee == NULL || ee->ee_errno == 0 ||
            (ee->ee_origin != SO_EE_ORIGIN_ICMP && ee->ee_origin != SO_EE_ORIGIN_ICMP6))
            continue;
        memset(&info, 0, sizeof(info));
        from_sockname(&info.peer, &name.sa, msg.msg_namelen);
        struct sockaddr *off = SO_EE_OFFENDER(ee);
        if (off->sa_family == AF_INET)
            from_sockname(&info.offender, off, sizeof(struct sockaddr_in));
        else if (off->sa_family == AF_INET6)
            from_sockname(&info.offender, off, sizeof(struct sockaddr_in6));
        info.mtu = ee->ee_errno == EMSGSIZE ? ee->ee_info : 0;
        info.origin = ee->ee_origin;
        info.type = ee->ee_type;
        info.code = ee->ee_code;
        u->st.async_errors++;
        if (u->h.on_error != NULL)
            u->h.on_error(u, -(int)ee->ee_errno, &info);
    }
    return got;
}

static void on_readable(tt_udp_t *u)
{
    tt__poller_t *p = &u->loop->poller;
    struct mmsghdr msgs[RECV_BATCH_MAX];
    struct iovec iov[RECV_BATCH_MAX];
    sockname_t names[RECV_BATCH_MAX];
    union {
        char buf[RECV_CTRL];
        struct cmsghdr align;
    } ctrl[RECV_BATCH_MAX];
    size_t slot = u->recv_size;
    unsigned batch = (unsigned)(p->rbuf_size / slot);
    bool errq_read = false;

    if (batch > RECV_BATCH_MAX)
        batch = RECV_BATCH_MAX;
    u->flags |= F_IN_RECV;
    for (int call = 0; call < RECV_CALLS_PER_WAKE && !is_closed(u); call++) {
        for (unsigned i = 0; i < batch; i++) {
            iov[i].iov_base = p->rbuf + i * slot;
            iov[i].iov_len = slot;
            memset(&msgs[i], 0, sizeof(msgs[i]));
            msgs[i].msg_hdr.msg_name = &names[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(names[i]);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = ctrl[i].buf;
            msgs[i].msg_hdr.msg_controllen = sizeof(ctrl[i].buf);
        }
        int n = recvmmsg(u->io.io.fd, msgs, batch, MSG_TRUNC | MSG_DONTWAIT, NULL);
        if (n < 0) {
            int err = errno;
            if (err == EINTR)
                continue;
            if (err == EAGAIN || err == EWOULDBLOCK) {
                /* Woken with no data: an error report is what is waiting. */
                if (!errq_read)
                    read_errq(u);
                break;
            }
            /* sk_err, returned before the data (__skb_recv_udp): the report itself
             * is on the error queue; then go on reading the data. */
            errq_read = true;
            if (read_errq(u) > 0)
                continue;
            if (u->h.on_error != NULL) { /* an error with no report: pass it on once */
                tt_udp_error_info_t info;
                memset(&info, 0, sizeof(info));
                u->h.on_error(u, -err, &info);
            }
            break;
        }
        u->st.recv_calls++;
        for (int i = 0; i < n && !is_closed(u); i++)
            deliver(u, &msgs[i], (const char *)iov[i].iov_base);
        if ((unsigned)n < batch)
            break; /* drained: level-triggered epoll wakes us for more */
    }
    u->flags &= ~F_IN_RECV;
    /* Replies queued by the callbacks go out together. */
    if (!is_closed(u) && u->qhead != NULL && !(u->flags & F_WAIT_WRITE))
        flush(u);
}

static void io_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending)
{
    tt_udp_t *u = tt__container_of(io, tt_udp_t, io.io);

    (void)buf, (void)n, (void)pending;
    if (is_closed(u))
        return;
    if (ev == TT__EV_WRITABLE)
        flush(u);
    else if (ev == TT__EV_READABLE)
        on_readable(u);
}

/* ---- sending -------------------------------------------------------------------------- */

/* Errors the kernel may hand to an unrelated send because an ICMP report left
 * them in sk_err (icmp_err_convert, icmpv6_err_convert). */
static bool maybe_stale(int err)
{
    switch (err) {
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENOPROTOOPT:
    case EMSGSIZE:
    case EOPNOTSUPP:
    case EACCES:
    case EPROTO:
        return true;
    default:
        return false;
    }
}

static void note_sent(tt_udp_t *u, size_t len)
{
    u->st.datagrams_out++;
    u->st.bytes_out += len;
}

/* One datagram now: 0, -EAGAIN, or -errno. */
static int send_one(tt_udp_t *u, const void *buf, size_t len, const tt_addr_t *to)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    bool retried = false;

    if (to->len != 0) {
        msg.msg_name = (void *)&to->u;
        msg.msg_namelen = to->len;
    }
    for (;;) {
        if (sendmsg(u->io.io.fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
            u->st.send_calls++;
            note_sent(u, len);
            return 0;
        }
        int err = errno;
        if (err == EINTR)
            continue;
        if (err == EAGAIN || err == EWOULDBLOCK)
            return -EAGAIN;
        if (!retried && maybe_stale(err)) {
            retried = true; /* sk_err is now clear; its report waits on the queue */
            continue;
        }
        return -err;
    }
}

static void queue_emptied(tt_udp_t *u)
{
    if (u->flags & F_HWM) {
        u->flags &= ~F_HWM;
        if (u->h.on_drain != NULL)
            u->h.on_drain(u);
    }
}

static void pop_head(tt_udp_t *u)
{
    dgram_t *d = u->qhead;
    u->qhead = d->next;
    if (u->qhead == NULL)
        u->qtail = NULL;
    u->qmem -= sizeof(*d) + d->len;
    u->qcount--;
    u->qbytes -= d->len;
    free(d);
}

/* Write the queue with sendmmsg(2), from the loop only (it may call on_error and
 * on_drain). */
static void flush(tt_udp_t *u)
{
    struct mmsghdr msgs[SEND_BATCH];
    struct iovec iov[SEND_BATCH];
    bool retried = false;

    if (u->flags & F_FLUSHING || is_closed(u))
        return;
    u->flags |= F_FLUSHING;
    u->flags &= ~F_WAIT_WRITE;
    while (u->qhead != NULL && !is_closed(u)) {
        unsigned cnt = 0;
        for (dgram_t *d = u->qhead; d != NULL && cnt < SEND_BATCH; d = d->next, cnt++) {
            iov[cnt].iov_base = d->data;
            iov[cnt].iov_len = d->len;
            memset(&msgs[cnt], 0, sizeof(msgs[cnt]));
            msgs[cnt].msg_hdr.msg_iov = &iov[cnt];
            msgs[cnt].msg_hdr.msg_iovlen = 1;
            if (d->to_len != 0) {
                msgs[cnt].msg_hdr.msg_name = &d->to;
                msgs[cnt].msg_hdr.msg_namelen = d->to_len;
            }
        }
        int n = sendmmsg(u->io.io.fd, msgs, cnt, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            int err = errno;
            if (err == EINTR)
                continue;
            if (err == EAGAIN || err == EWOULDBLOCK) {
                u->flags |= F_WAIT_WRITE;
                break;
            }
            if (!retried && maybe_stale(err)) {
                retried = true;
                continue;
            }
            /* The head datagram itself is refused: drop it, say so, go on. */
            tt_udp_error_info_t info;
            memset(&info, 0, sizeof(info));
            if (u->qhead->to_len != 0)
                from_sockname(&info.peer, &u->qhead->to.sa, u->qhead->to_len);
            else if (u->flags & F_CONNECTED)
                from_sockname(&info.peer, &u->peer.u.sa, u->peer.len);
            pop_head(u);
            u->st.send_errors++;
            retried = false;
            if (u->h.on_error != NULL)
                u->h.on_error(u, -err, &info);
            continue;
        }
        retried = false;
        u->st.send_calls++;
        /* A short count: the next call returns the error or EAGAIN for the rest. */
        for (int i = 0; i < n; i++) {
            note_sent(u, u->qhead->len);
            pop_head(u);
        }
    }
    u->flags &= ~F_FLUSHING;
    if (is_closed(u))
        return;
    update_interest(u);
    if (u->qhead == NULL && !is_closed(u))
        queue_emptied(u);
}

static int send_status(tt_udp_t *u)
{
    if (u->qmem >= u->high_water) {
        u->flags |= F_HWM;
        return TT_SEND_FULL;
    }
    return 0;
}

static int enqueue(tt_udp_t *u, const void *buf, size_t len, const tt_addr_t *to)
{
    size_t need = sizeof(dgram_t) + len;
    dgram_t *d;

    /* The hard cap: a full path must not exhaust our memory. Only this datagram is
     * refused; unlike a TCP stream, losing one datagram breaks nothing else. */
    if (u->queue_cap != SIZE_MAX && u->qmem + need > u->queue_cap) {
        u->st.refused++;
        return -ENOBUFS;
    }
    d = malloc(need);
    if (d == NULL)
        return -ENOMEM;
    d->next = NULL;
    /* IP only (to_sock_family checked it): at most a sockaddr_in6. */
    d->to_len = to->len < sizeof(d->to) ? to->len : (socklen_t)sizeof(d->to);
    memcpy(&d->to, &to->u, d->to_len);
    d->len = len;
    if (len > 0)
        memcpy(d->data, buf, len);
    if (u->qtail != NULL)
        u->qtail->next = d;
    else
        u->qhead = d;
    u->qtail = d;
    u->qmem += need;
    u->qcount++;
    u->qbytes += len;
    /* Written at the end of the receive batch, on WRITABLE, by the running flush,
     * or else in the loop's pending phase. */
    if (!(u->flags & (F_WAIT_WRITE | F_IN_RECV | F_FLUSHING))) {
        u->flags |= F_PEND_FLUSH;
        tt__loop_defer(u->loop, &u->task);
    }
    return send_status(u);
}

int tt_udp_send(tt_udp_t *u, const void *buf, size_t len, const tt_addr_t *to)
{
    tt_addr_t dst;
    int err;

    if (u == NULL || (buf == NULL && len > 0) || is_closed(u))
        return -EINVAL;
    if (to != NULL) {
        err = to_sock_family(u, to, &dst);
        if (err < 0)
            return err;
        err = tt__audit(u->loop, TT_AUDIT_SENDTO, to);
        if (err < 0)
            return err; /* vetoed: not sent, not counted as a send error */
    } else if (!(u->flags & F_CONNECTED)) {
        return -EDESTADDRREQ;
    } else {
        memset(&dst, 0, sizeof(dst)); /* len 0: the connected peer */
    }
    if (len > TT_UDP_MAX_DATAGRAM)
        return -EMSGSIZE;

    if (u->qhead == NULL && !(u->flags & (F_WAIT_WRITE | F_IN_RECV | F_FLUSHING))) {
        err = send_one(u, buf, len, &dst);
        if (err == 0)
            return 0;
        if (err != -EAGAIN) {
            u->st.send_errors++;
            return err;
        }
        /* The socket buffer is full: queue, and wait for WRITABLE. */
        err = enqueue(u, buf, len, &dst);
        if (err < 0)
            return err;
        u->flags |= F_WAIT_WRITE;
        update_interest(u);
        return err;
    }
    return enqueue(u, buf, len, &dst);
}

/* ---- connected sockets ---------------------------------------------------------------- */

int tt_udp_connect(tt_udp_t *u, const tt_addr_t *peer)
{
    tt_addr_t dst;
    int err;

    if (u == NULL || peer == NULL || is_closed(u))
        return -EINVAL;
    err = to_sock_family(u, peer, &dst);
    if (err < 0)
        return err;
    err = tt__audit(u->loop, TT_AUDIT_CONNECT, peer);
    if (err < 0)
        return err;
    /* udp(7): connect on a datagram socket sends nothing; it sets the default
     * destination and filters incoming datagrams to that peer. */
    if (connect(u->io.io.fd, &dst.u.sa, dst.len) < 0)
        return -errno;
    u->peer = dst;
    u->flags |= F_CONNECTED;
    return 0;
}

int tt_udp_disconnect(tt_udp_t *u)
{
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};

    if (u == NULL || is_closed(u))
        return -EINVAL;
    if (!(u->flags & F_CONNECTED))
        return -ENOTCONN;
    if (connect(u->io.io.fd, &unspec, sizeof(unspec)) < 0)
        return -errno;
    u->flags &= ~F_CONNECTED;
    memset(&u->peer, 0, sizeof(u->peer));
    /* A socket bound to port 0 loses its port on disconnect (__udp_disconnect:
     * no SOCK_BINDPORT_LOCK) and would receive nothing until its next send picks
     * a new one. Bind the same address and port again. */
    if ((u->flags & F_PORT_CHOSEN) && bind(u->io.io.fd, &u->bound.u.sa, u->bound.len) < 0)
        return -errno;
    return 0;
}

int tt_udp_peer_addr(const tt_udp_t *u, tt_addr_t *out)
{
    if (u == NULL || out == NULL || is_closed(u))
        return -EINVAL;
    if (!(u->flags & F_CONNECTED))
        return -ENOTCONN;
    from_sockname(out, &u->peer.u.sa, u->peer.len);
    return 0;
}

int tt_udp_addr(const tt_udp_t *u, tt_addr_t *out)
{
    if (u == NULL || out == NULL || is_closed(u))
        return -EINVAL;
    *out = u->bound;
    return 0;
}

/* ---- multicast ------------------------------------------------------------------------- */

static int membership(tt_udp_t *u, bool join, const tt_addr_t *group, const tt_addr_t *source,
                      const char *iface)
{
    unsigned index;
    int level, err;

    if (u == NULL || group == NULL || is_closed(u) || !is_multicast(group))
        return -EINVAL;
    if (source != NULL &&
        (source->u.sa.sa_family != group->u.sa.sa_family || source->len < group->len))
        return -EINVAL;
    if (group->u.sa.sa_family == AF_INET6 && u->family == AF_INET)
        return -EAFNOSUPPORT;
    if (group->u.sa.sa_family == AF_INET && u->family == AF_INET6 && !(u->flags & F_DUAL))
        return -EAFNOSUPPORT;
    err = iface_index(iface, &index);
    if (err < 0)
        return err;
    /* The protocol-independent requests (RFC 3678) take the interface by index;
     * the level names the group's family (an IPv4 group on a dual-stack socket is
     * handled by the IPv4 code, which ipv6_setsockopt passes SOL_IP on to). */
    level = group->u.sa.sa_family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
    if (source == NULL) {
        struct group_req gr;
        memset(&gr, 0, sizeof(gr));
        gr.gr_interface = index;
        memcpy(&gr.gr_group, &group->u, group->len);
        if (setsockopt(u->io.io.fd, level, join ? MCAST_JOIN_GROUP : MCAST_LEAVE_GROUP, &gr,
                       sizeof(gr)) < 0)
            return -errno;
    } else {
        struct group_source_req gsr;
        memset(&gsr, 0, sizeof(gsr));
        gsr.gsr_interface = index;
        memcpy(&gsr.gsr_group, &group->u, group->len);
        memcpy(&gsr.gsr_source, &source->u, source->len);
        int opt = join ? MCAST_JOIN_SOURCE_GROUP : MCAST_LEAVE_SOURCE_GROUP;
        if (setsockopt(u->io.io.fd, level, opt, &gsr, sizeof(gsr)) < 0)
            return -errno;
    }
    return 0;
}

int tt_udp_join(tt_udp_t *u, const tt_addr_t *group, const char *iface)
{
    return membership(u, true, group, NULL, iface);
}

int tt_udp_leave(tt_udp_t *u, const tt_addr_t *group, const char *iface)
{
    return membership(u, false, group, NULL, iface);
}

int tt_udp_join_source(tt_udp_t *u, const tt_addr_t *group, const tt_addr_t *source,
                       const char *iface)
{
    if (source == NULL)
        return -EINVAL;
    return membership(u, true, group, source, iface);
}

int tt_udp_leave_source(tt_udp_t *u, const tt_addr_t *group, const tt_addr_t *source,
                        const char *iface)
{
    if (source == NULL)
        return -EINVAL;
    return membership(u, false, group, source, iface);
}

/* ---- options ------------------------------------------------------------------------------ */

/* An IP-level option: the IPv6 one on an IPv6 socket, plus the IPv4 twin when the
 * socket is dual-stack (IPv4 peers use the IPv4 setting). */
static int set_ip_opt(tt_udp_t *u, int v4opt, int v6opt, int value)
{
    int err;

    if (u->family == AF_INET)
        return set_opt(u->io.io.fd, IPPROTO_IP, v4opt, value);
    err = set_opt(u->io.io.fd, IPPROTO_IPV6, v6opt, value);
    if (err == 0 && (u->flags & F_DUAL))
        err = set_opt(u->io.io.fd, IPPROTO_IP, v4opt, value);
    return err;
}

int tt_udp_set_broadcast(tt_udp_t *u, bool on)
{
    if (u == NULL || is_closed(u))
        return -EINVAL;
    return tt__sock_set_bool(u->io.io.fd, SOL_SOCKET, SO_BROADCAST, on);
}

int tt_udp_set_ttl(tt_udp_t *u, int ttl)
{
    if (u == NULL || is_closed(u) || ttl < 1 || ttl > 255)
        return -EINVAL;
    return set_ip_opt(u, IP_TTL, IPV6_UNICAST_HOPS, ttl);
}

int tt_udp_set_multicast_ttl(tt_udp_t *u, int ttl)
{
    if (u == NULL || is_closed(u) || ttl < 0 || ttl > 255)
        return -EINVAL;
    return set_ip_opt(u, IP_MULTICAST_TTL, IPV6_MULTICAST_HOPS, ttl);
}

int tt_udp_set_multicast_loop(tt_udp_t *u, bool on)
{
    if (u == NULL || is_closed(u))
        return -EINVAL;
    return set_ip_opt(u, IP_MULTICAST_LOOP, IPV6_MULTICAST_LOOP, on ? 1 : 0);
}

int tt_udp_set_multicast_interface(tt_udp_t *u, const char *iface)
{
    struct ip_mreqn mreq;
    unsigned index;
    int err;

    if (u == NULL || is_closed(u))
        return -EINVAL;
    err = iface_index(iface, &index);
    if (err < 0)
        return err;
    if (u->family == AF_INET6) {
        err = set_opt(u->io.io.fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, (int)index);
        if (err < 0 || !(u->flags & F_DUAL))
            return err;
    }
    /* ip(7): struct ip_mreqn selects the interface by index. */
    memset(&mreq, 0, sizeof(mreq));
    mreq.imr_ifindex = (int)index;
    if (setsockopt(u->io.io.fd, IPPROTO_IP, IP_MULTICAST_IF, &mreq, sizeof(mreq)) < 0)
        return -errno;
    return 0;
}

int tt_udp_set_tos(tt_udp_t *u, int tos)
{
    if (u == NULL || is_closed(u) || tos < 0 || tos > 255)
        return -EINVAL;
    return set_ip_opt(u, IP_TOS, IPV6_TCLASS, tos);
}

int tt_udp_set_pmtu_mode(tt_udp_t *u, tt_udp_pmtu_t mode)
{
    static const int v4[] = {IP_PMTUDISC_WANT, IP_PMTUDISC_DONT, IP_PMTUDISC_DO,
                             IP_PMTUDISC_PROBE};
    static const int v6[] = {IPV6_PMTUDISC_WANT, IPV6_PMTUDISC_DONT, IPV6_PMTUDISC_DO,
                             IPV6_PMTUDISC_PROBE};
    int err;

    if (u == NULL || is_closed(u) || (unsigned)mode > TT_UDP_PMTU_PROBE)
        return -EINVAL;
    if (u->family == AF_INET)
        return set_opt(u->io.io.fd, IPPROTO_IP, IP_MTU_DISCOVER, v4[mode]);
    err = set_opt(u->io.io.fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, v6[mode]);
    if (err == 0 && (u->flags & F_DUAL))
        err = set_opt(u->io.io.fd, IPPROTO_IP, IP_MTU_DISCOVER, v4[mode]);
    return err;
}

int tt_udp_set_sndbuf(tt_udp_t *u, int bytes)
{
    if (u == NULL || is_closed(u) || bytes <= 0)
        return -EINVAL;
    return set_opt(u->io.io.fd, SOL_SOCKET, SO_SNDBUF, bytes);
}

int tt_udp_set_rcvbuf(tt_udp_t *u, int bytes)
{
    if (u == NULL || is_closed(u) || bytes <= 0)
        return -EINVAL;
    return set_opt(u->io.io.fd, SOL_SOCKET, SO_RCVBUF, bytes);
}

int tt_udp_set_high_water(tt_udp_t *u, size_t bytes)
{
    if (u == NULL || is_closed(u) || bytes == 0 || bytes > u->queue_cap)
        return -EINVAL;
    u->high_water = bytes;
    return 0;
}

int tt_udp_set_queue_cap(tt_udp_t *u, size_t bytes)
{
    if (u == NULL || is_closed(u))
        return -EINVAL;
    if (bytes == 0)
        bytes = TT_DEFAULT_QUEUE_CAP;
    if (bytes < u->high_water)
        return -EINVAL;
    u->queue_cap = bytes;
    return 0;
}

/* ---- path MTU ------------------------------------------------------------------------------ */

static int mtu_of(int fd, int family, int *mtu)
{
    int v = 0;
    socklen_t len = sizeof(v);
    int r = family == AF_INET ? getsockopt(fd, IPPROTO_IP, IP_MTU, &v, &len)
                              : getsockopt(fd, IPPROTO_IPV6, IPV6_MTU, &v, &len);
    if (r < 0)
        return -errno;
    *mtu = v;
    return 0;
}

int tt_udp_path_mtu(tt_udp_t *u, const tt_addr_t *to, int *mtu)
{
    tt_addr_t dst;
    int fd, err;

    if (u == NULL || mtu == NULL || is_closed(u))
        return -EINVAL;
    if (to == NULL) {
        if (!(u->flags & F_CONNECTED))
            return -ENOTCONN;
        /* ip(7) IP_MTU: the MTU of the connected route, path MTU included. */
        return mtu_of(u->io.io.fd, u->family, mtu);
    }
    if ((to->u.sa.sa_family != AF_INET && to->u.sa.sa_family != AF_INET6) ||
        to->len < sizeof(struct sockaddr_in))
        return -EINVAL;
    dst = *to;
    /* IP_MTU needs a connected socket; connecting a datagram socket sends nothing,
     * and the route lookup sees the path MTU the kernel cached for `to`. */
    fd = tt__sock_open(dst.u.sa.sa_family, SOCK_DGRAM);
    if (fd < 0)
        return fd;
    if (connect(fd, &dst.u.sa, dst.len) < 0) {
        err = -errno;
        close(fd);
        return err;
    }
    err = mtu_of(fd, dst.u.sa.sa_family, mtu);
    close(fd);
    return err;
}

/* ---- accessors ------------------------------------------------------------------------------- */

void tt_udp_set_data(tt_udp_t *u, void *data)
{
    if (u != NULL)
        u->data = data;
}

void *tt_udp_get_data(const tt_udp_t *u) { return u != NULL ? u->data : NULL; }

tt_loop_t *tt_udp_loop(const tt_udp_t *u) { return u != NULL ? u->loop : NULL; }

int tt_udp_fd(const tt_udp_t *u) { return u != NULL ? u->io.io.fd : -1; }

int tt_udp_get_stats(const tt_udp_t *u, tt_udp_stats_t *out)
{
    if (u == NULL || out == NULL)
        return -EINVAL;
    *out = u->st;
    out->queued_datagrams = u->qcount;
    out->queued_bytes = u->qbytes;
    return 0;
}
