/* io_uring backend: completions instead of readiness.
 *
 * Reading a stream: one recv in flight per socket, into a buffer the kernel picks
 * from a ring of provided buffers (the loop's read buffers: none belongs to a
 * connection, so idle sockets hold none). The filled buffer goes to the owner as
 * TT__EV_DATA and back to the ring when the callback returns; the next recv is
 * queued then. Everything queued in a round reaches the kernel in the one
 * io_uring_enter that also waits, so a round costs one system call however many
 * sockets it reads. Writing is a direct sendmsg (poller.c), or a send request
 * (tt__uring_send) queued the same way: the sends to every socket written in a
 * round (a broadcast's receivers) go to the kernel in that one io_uring_enter,
 * not a sendmsg each. They carry MSG_DONTWAIT, so each completes inside the
 * submission, with what the socket took or -EAGAIN, as a direct write would.
 * The owner keeps the socket and the bytes until the completion; removing the
 * watch drops a send still queued here (the kernel never saw it), and one the
 * kernel has is still reported to its owner, whatever the watch's generation.
 *
 * Raw watches and POLL_OUT use one-shot polls, re-armed after each event: a poll
 * armed on a ready fd completes at once, which is level-triggered behaviour, as
 * the owners expect from epoll.
 *
 * Requests name their watch by fd and generation, never by pointer: when a watch
 * is removed (and perhaps freed) with requests in flight, its generation moves on
 * and their completions are dropped (buffers returned). Removal cancels them at
 * once, so the socket is no longer referenced by the ring when its owner closes
 * it. Stopping reads cancels the recv in flight; if it had already taken bytes,
 * they are held and delivered when reading resumes: nothing is lost. */
#include "core/poller.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define URING_ENTRIES 1024
#define BUF_COUNT 256 /* power of two */
#define BUF_SIZE (16 * 1024)
#define BUF_GROUP 0
#define NO_BUF 0xffff

/* user_data: op (4 bits) | poll sequence (8) | generation (20) | fd (32). */
enum { OP_NONE = 0, OP_RECV = 1, OP_POLL = 2, OP_SEND = 3 };
#define GEN_MASK 0xfffffu

/* A send request: what its completion needs, and the message it points the kernel
 * at, which must stay put until the submission (the kernel copies it then). Small
 * ones (most sends are one or two buffers) are kept on a free list for reuse. */
#define SEND_SMALL 4
typedef struct usend {
    struct usend *next_free;
    tt__io_t *io; /* the owner, valid until the completion is delivered */
    size_t len;   /* bytes offered */
    int cap;      /* iovecs it has room for */
    struct msghdr msg;
    struct iovec iov[];
} usend_t;

typedef struct uslot {
    tt__io_t *io; /* NULL: no watch on this fd */
    usend_t *send; /* the send in flight on this fd (kept across a remove) */
    uint32_t gen; /* moves on with every registration and removal */
    uint8_t recv_out;    /* a recv is in flight */
    uint8_t recv_cancel; /* ... and its cancellation was asked for */
    uint8_t poll_out;    /* a poll is in flight, waiting for poll_mask */
    uint8_t poll_mask;   /* TT__POLL_* */
    uint8_t poll_seq;    /* tells the poll in flight from cancelled ones */
    uint8_t poll_first;  /* the socket was drained: next recv waits before trying */
    uint8_t held;        /* a recv result kept while reading is stopped */
    uint8_t on_ready;    /* on the ready list */
    uint8_t poll_read;   /* no buffer was free: read once on readiness, directly */
    uint16_t held_bid;
    int32_t held_res;
    uint32_t held_flags;
} uslot_t;

struct tt__uring {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    char *bufs;
    tt__poller_t *poller; /* its read buffer serves direct reads when the ring ran dry */
    uslot_t *slots; /* indexed by fd */
    size_t nslots;
    int *ready; /* fds with work outside a completion: held data, a recv to retry */
    size_t nready, ready_cap;
    usend_t *send_free; /* small send requests for reuse */
};

/* Every call that may enter the kernel goes through one of these, counted. */
static int submit(struct tt__uring *u)
{
    u->poller->n_enters++;
    return io_uring_submit(&u->ring);
}

static int submit_and_get_events(struct tt__uring *u)
{
    u->poller->n_enters++;
    return io_uring_submit_and_get_events(&u->ring);
}

static uint64_t tag(int op, uint8_t seq, uint32_t gen, int fd)
{
    return ((uint64_t)op << 60) | ((uint64_t)seq << 52) | ((uint64_t)(gen & GEN_MASK) << 32) |
           (uint32_t)fd;
}

/* ---- ring plumbing ---------------------------------------------------------------- */

static struct io_uring_sqe *sqe_get(struct tt__uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

    if (sqe == NULL) { /* queue full: hand it over, retry */
        submit(u);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

/* A request not yet handed to the kernel is turned into a no-op in place. */
static bool nop_unsubmitted(struct tt__uring *u, uint64_t ud)
{
    struct io_uring_sq *sq = &u->ring.sq;

    for (unsigned i = sq->sqe_head; i != sq->sqe_tail; i++) {
        struct io_uring_sqe *e = &sq->sqes[i & *sq->kring_mask];

        if (e->user_data == ud) {
            io_uring_prep_nop(e);
            e->flags = IOSQE_CQE_SKIP_SUCCESS;
            io_uring_sqe_set_data64(e, 0);
            return true;
        }
    }
    return false;
}

/* Cancel request `ud`. Returns true if it was still queued here (then it is
 * gone without a completion), false if the kernel has it (its completion, with
 * -ECANCELED or a result that beat the cancellation, is still to come). */
static bool cancel(struct tt__uring *u, uint64_t ud, bool is_poll)
{
    struct io_uring_sqe *sqe;

    if (nop_unsubmitted(u, ud))
        return true;
    sqe = sqe_get(u);
    if (sqe == NULL)
        return false; /* cannot happen after a submit; the completion is ignored */
    if (is_poll)
        io_uring_prep_poll_remove(sqe, ud);
    else
        io_uring_prep_cancel64(sqe, ud, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, 0);
    return false;
}

static char *buf_addr(struct tt__uring *u, unsigned bid) { return u->bufs + (size_t)bid * BUF_SIZE; }

static void buf_return(struct tt__uring *u, unsigned bid)
{
    io_uring_buf_ring_add(u->br, buf_addr(u, bid), BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(u->br, 1);
}

static uslot_t *slot_at(struct tt__uring *u, int fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= u->nslots) {
        size_t n = u->nslots ? u->nslots : 256;
        uslot_t *s;

        while (n <= (size_t)fd)
            n *= 2;
        s = realloc(u->slots, n * sizeof(*s));
        if (s == NULL)
            return NULL;
        memset(s + u->nslots, 0, (n - u->nslots) * sizeof(*s));
        u->slots = s;
        u->nslots = n;
    }
    return &u->slots[fd];
}

static void ready_add(struct tt__uring *u, int fd, uslot_t *s)
{
    if (s->on_ready)
        return;
    if (u->nready == u->ready_cap) {
        size_t cap = u->ready_cap ? u->ready_cap * 2 : 64;
        int *r = realloc(u->ready, cap * sizeof(*r));

        if (r == NULL)
            return; /* retried at the next set() or completion */
        u->ready = r;
        u->ready_cap = cap;
    }
    u->ready[u->nready++] = fd;
    s->on_ready = 1;
}

/* ---- arming ------------------------------------------------------------------------ */

static void submit_recv(struct tt__uring *u, int fd, uslot_t *s)
{
    struct io_uring_sqe *sqe = sqe_get(u);

    if (sqe == NULL) {
        ready_add(u, fd, s);
        return;
    }
    io_uring_prep_recv(sqe, fd, NULL, BUF_SIZE, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    if (s->poll_first)
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST; /* skip a read sure to find nothing */
    io_uring_sqe_set_data64(sqe, tag(OP_RECV, 0, s->gen, fd));
    s->recv_out = 1;
}

static void submit_poll(struct tt__uring *u, int fd, uslot_t *s, unsigned want)
{
    struct io_uring_sqe *sqe = sqe_get(u);

    if (sqe == NULL) {
        ready_add(u, fd, s);
        return;
    }
    io_uring_prep_poll_add(sqe, fd, ((want & TT__POLL_IN) ? POLLIN : 0) |
                                        ((want & TT__POLL_OUT) ? POLLOUT : 0));
    io_uring_sqe_set_data64(sqe, tag(OP_POLL, s->poll_seq, s->gen, fd));
    s->poll_out = 1;
    s->poll_mask = (uint8_t)want;
}

/* Bring the requests in flight for `fd` in line with its watch's interest. */
static void arm(struct tt__uring *u, int fd, uslot_t *s)
{
    unsigned ev = s->io->events, poll_want = ev;

    if (s->io->kind == TT__IO_STREAM) {
        poll_want = ev & TT__POLL_OUT;
        if (ev & TT__POLL_IN) {
            if (s->held)
                ready_add(u, fd, s); /* deliver what was held, from the loop */
            else if (s->poll_read || s->io->fdpass) /* provided buffers carry no fds */
                poll_want |= TT__POLL_IN;
            else if (!s->recv_out)
                submit_recv(u, fd, s);
        } else if (s->recv_out && !s->recv_cancel) {
            if (cancel(u, tag(OP_RECV, 0, s->gen, fd), false))
                s->recv_out = 0;
            else
                s->recv_cancel = 1;
        }
    }
    if (s->poll_out && s->poll_mask != poll_want) {
        cancel(u, tag(OP_POLL, s->poll_seq, s->gen, fd), true);
        s->poll_out = 0;
        s->poll_seq++; /* whatever that poll still reports is stale */
    }
    if (!s->poll_out && poll_want != 0)
        submit_poll(u, fd, s, poll_want);
}

/* ---- sends ------------------------------------------------------------------------- */

static usend_t *send_get(struct tt__uring *u, int iovcnt)
{
    usend_t *o;

    if (iovcnt <= SEND_SMALL && u->send_free != NULL) {
        o = u->send_free;
        u->send_free = o->next_free;
        return o;
    }
    if (iovcnt < SEND_SMALL)
        iovcnt = SEND_SMALL;
    o = malloc(sizeof(*o) + (size_t)iovcnt * sizeof(struct iovec));
    if (o != NULL)
        o->cap = iovcnt;
    return o;
}

static void send_release(struct tt__uring *u, usend_t *o)
{
    if (o->cap == SEND_SMALL) {
        o->next_free = u->send_free;
        u->send_free = o;
    } else {
        free(o);
    }
}

int tt__uring_send(tt__poller_t *p, tt__io_t *io, const struct iovec *iov, int iovcnt, size_t len)
{
    struct tt__uring *u = p->uring;
    struct io_uring_sqe *sqe;
    uslot_t *s;
    usend_t *o;

    if (iovcnt < 1 || iovcnt > TT__SEND_IOV_MAX || io->send_out || io->fd < 0)
        return -EINVAL;
    s = slot_at(u, io->fd);
    if (s == NULL)
        return -ENOMEM;
    if (s->send != NULL)
        return -EBUSY; /* an earlier owner of this fd still has one in flight */
    o = send_get(u, iovcnt);
    if (o == NULL)
        return -ENOMEM;
    sqe = sqe_get(u);
    if (sqe == NULL) {
        send_release(u, o);
        return -ENOMEM;
    }
    o->io = io;
    o->len = len;
    memcpy(o->iov, iov, (size_t)iovcnt * sizeof(*iov));
    /* MSG_DONTWAIT: a full socket answers -EAGAIN at once, as a direct write does,
     * instead of the request waiting in the kernel for room. */
    if (iovcnt == 1) {
        io_uring_prep_send(sqe, io->fd, o->iov[0].iov_base, o->iov[0].iov_len,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
        memset(&o->msg, 0, sizeof(o->msg));
        o->msg.msg_iov = o->iov;
        o->msg.msg_iovlen = (size_t)iovcnt;
        io_uring_prep_sendmsg(sqe, io->fd, &o->msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    io_uring_sqe_set_data64(sqe, tag(OP_SEND, 0, 0, io->fd));
    s->send = o;
    io->send_out = 1;
    return 0;
}

static void on_send(struct tt__uring *u, uslot_t *s, int res)
{
    usend_t *o = s->send;
    tt__io_t *io = o->io;
    size_t len = o->len;

    s->send = NULL;
    send_release(u, o);
    io->send_out = 0;
    tt__io_event(u->poller, io, TT__EV_SENT, NULL, res, len);
}

/* ---- interface ------------------------------------------------------------------- */

int tt__uring_init(tt__poller_t *p)
{
    struct io_uring_params params;
    struct io_uring_buf_reg reg;
    struct tt__uring *u = calloc(1, sizeof(*u));
    int err;

    if (u == NULL)
        return -ENOMEM;
    /* Not single-issuer: a loop may be run by one thread and later by another (the
     * documented rule is only one at a time). Cooperative task running: completion
     * work waits for our next system call instead of interrupting us. */
    memset(&params, 0, sizeof(params));
    params.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_CQSIZE;
    params.cq_entries = URING_ENTRIES * 8;
    err = io_uring_queue_init_params(URING_ENTRIES, &u->ring, &params);
    if (err == -EINVAL) { /* before Linux 5.19 */
        params.flags = IORING_SETUP_CQSIZE;
        err = io_uring_queue_init_params(URING_ENTRIES, &u->ring, &params);
    }
    if (err < 0)
        goto fail_free;
    u->poller = p;
    if (!(params.features & IORING_FEAT_NODROP)) { /* completions must never be lost */
        err = -ENOSYS;
        goto fail_ring;
    }
    if (posix_memalign((void **)&u->br, 4096, BUF_COUNT * sizeof(struct io_uring_buf)) != 0 ||
        (u->bufs = malloc((size_t)BUF_COUNT * BUF_SIZE)) == NULL) {
        err = -ENOMEM;
        goto fail_ring;
    }
    io_uring_buf_ring_init(u->br);
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)u->br;
    reg.ring_entries = BUF_COUNT;
    reg.bgid = BUF_GROUP;
    err = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (err < 0)
        goto fail_ring;
    for (unsigned i = 0; i < BUF_COUNT; i++)
        buf_return(u, i);
    p->uring = u;
    return 0;

fail_ring:
    io_uring_queue_exit(&u->ring);
fail_free:
    free(u->bufs);
    free(u->br);
    free(u);
    return err;
}

void tt__uring_close(tt__poller_t *p)
{
    struct tt__uring *u = p->uring;

    io_uring_queue_exit(&u->ring); /* cancels what is in flight */
    while (u->send_free != NULL) {
        usend_t *o = u->send_free;
        u->send_free = o->next_free;
        free(o);
    }
    free(u->bufs);
    free(u->br);
    free(u->slots);
    free(u->ready);
    free(u);
    p->uring = NULL;
}

int tt__uring_set(tt__poller_t *p, tt__io_t *io, unsigned events)
{
    struct tt__uring *u = p->uring;
    uslot_t *s;

    if (io->registered && io->events == events)
        return 0;
    s = slot_at(u, io->fd);
    if (s == NULL)
        return io->fd < 0 ? -EBADF : -ENOMEM;
    if (!io->registered && io->kind == TT__IO_WATCH && s->io != NULL)
        return -EEXIST; /* as epoll_ctl(EPOLL_CTL_ADD) says for an fd already watched */
    if (!io->registered) {
        /* A new watch on this fd: anything still in flight for an earlier one (its
         * fd closed without a remove) is stale from here on. */
        if (s->held && s->held_bid != NO_BUF)
            buf_return(u, s->held_bid);
        *s = (uslot_t){.io = io, .send = s->send, .gen = s->gen + 1, .on_ready = s->on_ready};
        io->registered = 1;
    }
    io->events = (uint8_t)events;
    arm(u, io->fd, s);
    return 0;
}

void tt__uring_remove(tt__poller_t *p, tt__io_t *io)
{
    struct tt__uring *u = p->uring;
    uslot_t *s;
    bool in_kernel = false;

    if (!io->registered || io->fd < 0 || (size_t)io->fd >= u->nslots)
        goto out;
    s = &u->slots[io->fd];
    if (s->io != io)
        goto out;
    if (s->recv_out && !s->recv_cancel)
        in_kernel |= !cancel(u, tag(OP_RECV, 0, s->gen, io->fd), false);
    else if (s->recv_out)
        in_kernel = true; /* its cancellation is queued already */
    if (s->poll_out)
        in_kernel |= !cancel(u, tag(OP_POLL, s->poll_seq, s->gen, io->fd), true);
    if (s->held && s->held_bid != NO_BUF)
        buf_return(u, s->held_bid);
    if (s->send != NULL && s->send->io == io &&
        nop_unsubmitted(u, tag(OP_SEND, 0, 0, io->fd))) {
        send_release(u, s->send); /* never seen by the kernel: no completion */
        s->send = NULL;
        io->send_out = 0;
    }
    *s = (uslot_t){.send = s->send, .gen = s->gen + 1, .on_ready = s->on_ready};
    /* The kernel holds the socket while a request on it is in flight: run the
     * cancellations now, so that closing the fd really closes the socket (FIN or
     * RST at once, not at the next round). Their completions are stale. */
    if (in_kernel)
        submit_and_get_events(u);
out:
    io->registered = 0;
    io->events = 0;
}

/* Hand a recv result to the watch; the buffer goes back to the ring afterwards. */
static void deliver(struct tt__uring *u, int fd, uslot_t *s, int res, unsigned bid,
                    uint32_t flags)
{
    tt__io_t *io = s->io;
    uint32_t gen = s->gen;
    size_t pending = 0;

    if (res == BUF_SIZE || (res > 0 && (flags & IORING_CQE_F_SOCK_NONEMPTY)))
        pending = tt__io_unread(fd); /* only then can bytes be left behind */
    u->poller->stream_cb(io, TT__EV_DATA, res > 0 ? buf_addr(u, bid) : NULL, res, pending);
    if (bid != NO_BUF)
        buf_return(u, bid);
    s = &u->slots[fd]; /* the callback may have grown the table */
    if (s->io == io && s->gen == gen)
        arm(u, fd, s);
}

static void on_recv(struct tt__uring *u, int fd, uslot_t *s, struct io_uring_cqe *cqe)
{
    unsigned bid = (cqe->flags & IORING_CQE_F_BUFFER) ? cqe->flags >> IORING_CQE_BUFFER_SHIFT
                                                      : NO_BUF;
    int res = cqe->res;

    s->recv_out = 0;
    s->recv_cancel = 0;
    if (res == -ECANCELED) {
        arm(u, fd, s); /* reading may have resumed since */
        return;
    }
    if (res == -ENOBUFS) {
        /* Every buffer is in use (more sockets read at once than the ring has
         * buffers). Retrying the recv could lose the race for buffers again and
         * again; instead wait for readiness, which needs no buffer, and read once
         * into the loop's read buffer, as the epoll backend does. */
        s->poll_read = 1;
        arm(u, fd, s);
        return;
    }
    s->poll_first = res > 0 && res < BUF_SIZE && !(cqe->flags & IORING_CQE_F_SOCK_NONEMPTY);
    if (!(s->io->events & TT__POLL_IN)) {
        /* Reading stopped after this recv took its bytes: keep them for later. */
        s->held = 1;
        s->held_res = res;
        s->held_bid = (uint16_t)bid;
        s->held_flags = cqe->flags;
        return;
    }
    deliver(u, fd, s, res, bid, cqe->flags);
}

static void on_poll(struct tt__uring *u, int fd, uslot_t *s, int res)
{
    tt__io_t *io = s->io;
    uint32_t gen = s->gen;
    unsigned revents = res < 0 ? POLLERR : (unsigned)res;
    bool err_or_hup = (revents & (POLLERR | POLLHUP)) != 0;

    s->poll_out = 0;
    /* A socket error wakes the poll and the recv alike, and the first system call
     * on the socket takes the error (ETIMEDOUT, ECONNRESET); a later one sees only
     * EPIPE. With a recv in flight, let its completion report the error rather
     * than a write from the WRITABLE callback; the poll is re-armed after it. */
    if (io->kind == TT__IO_STREAM && (revents & POLLERR) && s->recv_out && !s->recv_cancel)
        return;
    if (io->kind == TT__IO_WATCH) {
        unsigned ready = ((revents & POLLIN) ? TT__POLL_IN : 0) | ((revents & POLLOUT) ? TT__POLL_OUT : 0);
        if (err_or_hup)
            ready |= TT__POLL_ERR | (io->events & (TT__POLL_IN | TT__POLL_OUT));
        ready &= io->events | TT__POLL_ERR;
        if (ready != 0)
            ((tt__io_own_t *)io)->cb(io, TT__EV_POLL, NULL, (ssize_t)ready, 0);
        s = &u->slots[fd];
        if (s->io != io || s->gen != gen)
            return; /* removed by the callback */
        arm(u, fd, s);
        return;
    }
    if (io->kind == TT__IO_RAW && (io->events & TT__POLL_IN) &&
        ((revents & POLLIN) || err_or_hup))
        ((tt__io_own_t *)io)->cb(io, TT__EV_READABLE, NULL, 0, 0);
    s = &u->slots[fd];
    if (s->io != io || s->gen != gen)
        return; /* removed by the callback */
    if ((io->events & TT__POLL_OUT) && ((revents & POLLOUT) || err_or_hup))
        tt__io_event(u->poller, io, TT__EV_WRITABLE, NULL, 0, 0);
    s = &u->slots[fd];
    if (s->io != io || s->gen != gen)
        return;
    if (io->kind == TT__IO_STREAM && (s->poll_read || io->fdpass) && (io->events & TT__POLL_IN) &&
        ((revents & POLLIN) || err_or_hup)) {
        s->poll_read = 0; /* once: the next read goes through the ring again */
        tt__io_read(u->poller, io);
        s = &u->slots[fd];
        if (s->io != io || s->gen != gen)
            return;
    }
    arm(u, fd, s); /* again, if still wanted: level-triggered */
}

static void on_cqe(struct tt__uring *u, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    int op = (int)(ud >> 60), fd = (int)(uint32_t)ud;
    uint32_t gen = (uint32_t)(ud >> 32) & GEN_MASK;
    uslot_t *s = (size_t)fd < u->nslots ? &u->slots[fd] : NULL;
    bool live = s != NULL && s->io != NULL && (s->gen & GEN_MASK) == gen;

    if (op == OP_RECV) {
        if (live)
            on_recv(u, fd, s, cqe);
        else if (cqe->flags & IORING_CQE_F_BUFFER) /* a stale read: give the buffer back */
            buf_return(u, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    } else if (op == OP_POLL) {
        if (live && s->poll_out && s->poll_seq == (uint8_t)(ud >> 52))
            on_poll(u, fd, s, cqe->res);
    } else if (op == OP_SEND) {
        if (s != NULL && s->send != NULL) /* its owner waits for it, watch or not */
            on_send(u, s, cqe->res);
    }
}

/* Work found outside a completion: held bytes to deliver, recvs to retry. */
static int run_ready(struct tt__uring *u)
{
    size_t n = u->nready;
    int done = 0;

    for (size_t i = 0; i < n; i++) {
        int fd = u->ready[i];
        uslot_t *s = &u->slots[fd];

        s->on_ready = 0;
        if (s->io == NULL)
            continue;
        if (s->held && (s->io->events & TT__POLL_IN)) {
            s->held = 0;
            deliver(u, fd, s, s->held_res, s->held_bid, s->held_flags);
            done++;
        } else {
            arm(u, fd, s);
        }
    }
    /* Entries added while running stay for the next round. */
    if (n > 0) {
        memmove(u->ready, u->ready + n, (u->nready - n) * sizeof(*u->ready));
        u->nready -= n;
    }
    return done;
}

int tt__uring_fd(const tt__poller_t *p) { return p->uring->ring.ring_fd; }

/* Held data, or requests not yet handed to the kernel (queued by a call made
 * outside the loop's run, say before its first one): the kernel cannot report on
 * what it has not been given, so the next wait must not sleep. */
bool tt__uring_has_ready(const tt__poller_t *p)
{
    return p->uring->nready > 0 || io_uring_sq_ready(&p->uring->ring) > 0;
}

void tt__uring_flush(tt__poller_t *p)
{
    if (io_uring_sq_ready(&p->uring->ring) > 0)
        submit(p->uring);
}

int tt__uring_wait(tt__poller_t *p, int timeout_ms)
{
    struct tt__uring *u = p->uring;
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    int err;

    if (u->nready > 0)
        timeout_ms = 0; /* held data waits in user space: do not sleep on it */
    p->n_enters++;
    if (timeout_ms == 0) {
        err = io_uring_submit_and_get_events(&u->ring);
    } else if (timeout_ms < 0) {
        err = io_uring_submit_and_wait(&u->ring, 1);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                       .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
        err = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
    }
    tt__poller_woke(p);
    if (err < 0 && err != -ETIME && err != -EINTR && err != -EBUSY)
        return err;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
        on_cqe(u, cqe);
        seen++;
    }
    io_uring_cq_advance(&u->ring, seen);
    return (int)seen + run_ready(u);
}
