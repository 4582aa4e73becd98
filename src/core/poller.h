/* The readiness/completion backend behind the loop.
 *
 * Above this interface nothing assumes readiness semantics: reading is "the poller
 * hands the owner a filled buffer" (TT__EV_DATA), writing is "the owner hands the
 * poller an iovec list and learns how much went" (tt__io_writev), with
 * TT__EV_WRITABLE when more can go. Two backends implement it: epoll
 * (poller_epoll.c, the default) and io_uring (poller_uring.c: recv into provided
 * buffers, one system call per round), chosen per loop at init (TETHER_BACKEND).
 * Only raw watches (TT__EV_READABLE: listeners, eventfds, UDP, stream sources) see
 * readiness. Writes are direct system calls in both (poller.c); io_uring can also
 * take a write as a request (tt__io_send_async), handed to the kernel with the
 * round's other requests, so that writes to many sockets cost one system call. */
#ifndef TT_POLLER_H
#define TT_POLLER_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

/* Interest bits. */
#define TT__POLL_IN 0x1  /* data: deliver reads (or READABLE for raw watches) */
#define TT__POLL_OUT 0x2 /* deliver WRITABLE */
#define TT__POLL_ERR 0x4 /* watch kind only: report an error or hang-up on its own */

/* Events delivered to a watch's callback. */
#define TT__EV_DATA 1     /* buf/n: n > 0 bytes read, 0 end of stream, < 0 -errno */
#define TT__EV_WRITABLE 2 /* the socket can take more (or connect finished) */
#define TT__EV_READABLE 3 /* raw watch: the fd is readable (or has an error) */
#define TT__EV_POLL 4     /* watch kind: `n` holds what is ready, TT__POLL_* bits */
#define TT__EV_FDS 5      /* fd-passing stream: buf holds `n` received descriptors (int),
                             close-on-exec, now the owner's; the TT__EV_DATA with the
                             bytes they came with follows */
#define TT__EV_SENT 6     /* a tt__io_send_async finished: n bytes the kernel took or
                             -errno, `pending` the bytes it was offered */

/* Watch kinds. */
#define TT__IO_STREAM 0 /* the poller reads into the shared buffer */
#define TT__IO_RAW 1    /* the owner does its own syscalls */
#define TT__IO_WATCH 2  /* a foreign descriptor: one TT__EV_POLL per readiness, with the
                           ready bits (an error or hang-up adds TT__POLL_ERR and the
                           asked-for IN/OUT, so the owner's read or write sees it) */

typedef struct tt__io tt__io_t;
/* `pending`: bytes the kernel still holds for this socket after the read. */
typedef void (*tt__io_cb)(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending);

/* A descriptor in the poller. Streams (connections: a million of them may be
 * idle) all share one callback, the poller's stream_cb; a descriptor of any
 * other kind is a tt__io_own_t, with its own. */
struct tt__io {
    int fd;
    uint8_t events;     /* interest currently registered */
    uint8_t kind;       /* TT__IO_STREAM, TT__IO_RAW or TT__IO_WATCH */
    uint8_t registered; /* known to the backend */
    uint8_t inq : 1;    /* TCP_INQ is on: a read learns from the kernel what is left */
    uint8_t fdpass : 1; /* Unix stream that takes descriptors: every read is a recvmsg
                           with room for SCM_RIGHTS, on both backends */
    uint8_t send_out : 1; /* a tt__io_send_async is in flight: its TT__EV_SENT is still
                             to come (set and cleared by the poller) */
};

/* A raw or watch descriptor and its callback. */
typedef struct tt__io_own {
    tt__io_t io;
    tt__io_cb cb;
} tt__io_own_t;

#define TT__BACKEND_EPOLL 0
#define TT__BACKEND_URING 1

typedef struct tt__poller {
    int backend; /* TT__BACKEND_* */
    char *rbuf;  /* the loop's one read buffer (DESIGN.md: no per-connection buffer) */
    size_t rbuf_size;
    /* epoll */
    int epfd;
    int nevents;
    void *events; /* struct epoll_event[nevents] */
    /* io_uring */
    struct tt__uring *uring;
    /* The loop's cached time (ms), refreshed by the backend the moment the wait
     * returns and before any callback, so a callback sees the time of its event. */
    uint64_t *clock;
    /* Every stream's callback, set by the layer that owns them (stream/conn.c). */
    tt__io_cb stream_cb;
    /* System calls made for the loop's sockets, for tests and measurements: direct
     * writes through tt__io_writev* (the queue's flushes) and a broadcast's
     * direct write (counted by its caller; tt__io_write itself, the echo path's
     * one buffer, is kept free of it), and io_uring
     * submissions and waits (calls that may enter the kernel: an upper bound on
     * io_uring_enter). */
    uint64_t n_writes;
    uint64_t n_enters;
} tt__poller_t;

/* CLOCK_MONOTONIC in milliseconds. */
static inline uint64_t tt__clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
/* Called by each backend right after its wait returns, before dispatching. */
static inline void tt__poller_woke(tt__poller_t *p)
{
    if (p->clock != NULL)
        *p->clock = tt__clock_ms();
}

#define TT__READ_BUF_SIZE (64 * 1024)

/* Pick the backend: io_uring when the environment says TETHER_BACKEND=io_uring and
 * the kernel allows it, else epoll. 0 or -errno. */
int tt__poller_init(tt__poller_t *p);
void tt__poller_close(tt__poller_t *p);
const char *tt__poller_name(const tt__poller_t *p);
/* A stream (TT__IO_STREAM): its events go to the poller's stream_cb. */
static inline void tt__io_init_stream(tt__io_t *io, int fd)
{
    io->fd = fd;
    io->events = 0;
    io->kind = TT__IO_STREAM;
    io->registered = 0;
    io->inq = 0;
    io->fdpass = 0;
    io->send_out = 0;
}
/* A raw or watch descriptor (TT__IO_RAW, TT__IO_WATCH) with its callback. */
static inline void tt__io_init(tt__io_own_t *o, int fd, int kind, tt__io_cb cb)
{
    tt__io_init_stream(&o->io, fd);
    o->io.kind = (uint8_t)kind;
    o->cb = cb;
}
/* Hand an event to the descriptor's owner. */
static inline void tt__io_event(tt__poller_t *p, tt__io_t *io, int ev, const char *buf, ssize_t n,
                                size_t pending)
{
    if (io->kind == TT__IO_STREAM)
        p->stream_cb(io, ev, buf, n, pending);
    else
        ((tt__io_own_t *)io)->cb(io, ev, buf, n, pending);
}
/* The backends; tt__poller_set/remove/wait below pick one. */
int tt__epoll_init(tt__poller_t *p);
void tt__epoll_close(tt__poller_t *p);
int tt__epoll_set(tt__poller_t *p, tt__io_t *io, unsigned events);
void tt__epoll_remove(tt__poller_t *p, tt__io_t *io);
int tt__epoll_wait(tt__poller_t *p, int timeout_ms);
int tt__uring_init(tt__poller_t *p);
void tt__uring_close(tt__poller_t *p);
int tt__uring_set(tt__poller_t *p, tt__io_t *io, unsigned events);
void tt__uring_remove(tt__poller_t *p, tt__io_t *io);
int tt__uring_wait(tt__poller_t *p, int timeout_ms);

/* Set the interest of `io` (0: no events; bytes a completion backend had already
 * taken are kept for when reading resumes). 0 or -errno (-EEXIST: a watch-kind io
 * on an fd the loop already watches). */
static inline int tt__poller_set(tt__poller_t *p, tt__io_t *io, unsigned events)
{
    return p->backend == TT__BACKEND_URING ? tt__uring_set(p, io, events)
                                           : tt__epoll_set(p, io, events);
}
/* Forget `io` before its fd is closed: no event reaches it afterwards, and the
 * backend holds no reference to the socket once this returns. */
static inline void tt__poller_remove(tt__poller_t *p, tt__io_t *io)
{
    if (p->backend == TT__BACKEND_URING)
        tt__uring_remove(p, io);
    else
        tt__epoll_remove(p, io);
}
/* Wait up to timeout_ms (-1 forever), refresh *p->clock, and dispatch events. A
 * callback may close any
 * watch: a watch whose fd is -1 gets no further events in this round, and its
 * memory must stay valid until the round ends (the loop defers frees).
 * Returns the number of events or -errno (-EINTR is not an error: 0). */
static inline int tt__poller_wait(tt__poller_t *p, int timeout_ms)
{
    return p->backend == TT__BACKEND_URING ? tt__uring_wait(p, timeout_ms)
                                           : tt__epoll_wait(p, timeout_ms);
}
/* For a loop driven from another loop: the descriptor that becomes readable when
 * the backend has events (the epoll instance, the ring), whether work is waiting
 * in user space (held data: do not sleep), and handing queued requests to the
 * kernel now, so the other loop's sleep on the descriptor can be woken by them. */
int tt__poller_fd(const tt__poller_t *p);
bool tt__poller_has_ready(const tt__poller_t *p);
void tt__poller_flush(tt__poller_t *p);
int tt__uring_fd(const tt__poller_t *p);
bool tt__uring_has_ready(const tt__poller_t *p);
void tt__uring_flush(tt__poller_t *p);
/* The reads that are not a plain recv: descriptors, TCP_INQ, an error, a buffer
 * filled (`n` is what the plain recv returned, or 0 when it was not made). */
void tt__io_read_other(tt__poller_t *p, tt__io_t *io, ssize_t n);
/* Read a stream once into the loop's buffer and hand the bytes to the stream
 * callback (TT__EV_DATA; nothing on EAGAIN): every epoll read, and io_uring's reads
 * while its buffer pool is dry. */
static inline void tt__io_read(tt__poller_t *p, tt__io_t *io)
{
    ssize_t n;

    if (io->fdpass | io->inq) {
        tt__io_read_other(p, io, 0);
        return;
    }
    /* The common read: short of the buffer, so nothing is left behind. */
    n = recv(io->fd, p->rbuf, p->rbuf_size, 0);
    if (n < 0 || (size_t)n == p->rbuf_size)
        tt__io_read_other(p, io, n);
    else
        p->stream_cb(io, TT__EV_DATA, p->rbuf, n, 0);
}
/* Bytes the kernel holds unread for fd (FIONREAD), 0 if it cannot tell. */
size_t tt__io_unread(int fd);
/* Write as much of iov as the socket takes now: bytes written, or -EAGAIN (the
 * owner will get TT__EV_WRITABLE once it arms TT__POLL_OUT), or -errno. Never
 * raises SIGPIPE. */
ssize_t tt__io_writev(tt__poller_t *p, tt__io_t *io, const struct iovec *iov, int iovcnt);
/* The same for one buffer: send(2), with no message header to build. */
static inline ssize_t tt__io_write(tt__poller_t *p, tt__io_t *io, const void *buf, size_t len)
{
    ssize_t n;

    (void)p;
    do
        n = send(io->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}
/* The same with `nfds` (1..253) descriptors attached (SCM_RIGHTS, Unix sockets):
 * they go with the first byte; a return > 0 means they went. */
ssize_t tt__io_writev_fds(tt__poller_t *p, tt__io_t *io, const struct iovec *iov, int iovcnt,
                          const int *fds, unsigned nfds);
/* Most buffers one tt__io_send_async takes. */
#define TT__SEND_IOV_MAX 64
/* Queue a send of iov (1..TT__SEND_IOV_MAX buffers, `len` bytes in all) without
 * writing now: the backend hands it to the kernel with the round's other requests
 * at its next wait, where one system call carries the sends of every socket, and
 * reports it with TT__EV_SENT (n: bytes the kernel took, like a non-blocking
 * write, or -EAGAIN, -errno; never SIGPIPE). The bytes must stay where they are
 * until then; the iovec array need not. One send at a time per io: io->send_out
 * is set until TT__EV_SENT, which comes even after tt__poller_remove (the owner
 * keeps io, and its fd open, until then), unless the remove found the send still
 * queued here: then it is dropped, send_out is cleared and no event comes.
 * 0, or -EOPNOTSUPP (epoll: write directly instead), -ENOMEM, -EINVAL. */
static inline bool tt__poller_async_send(const tt__poller_t *p)
{
    return p->backend == TT__BACKEND_URING;
}
int tt__io_send_async(tt__poller_t *p, tt__io_t *io, const struct iovec *iov, int iovcnt,
                      size_t len);
int tt__uring_send(tt__poller_t *p, tt__io_t *io, const struct iovec *iov, int iovcnt, size_t len);
/* sendfile(2) from a regular file: bytes sent (offset advanced), -EAGAIN, -errno. */
ssize_t tt__io_sendfile(tt__poller_t *p, tt__io_t *io, int in_fd, uint64_t *offset, size_t len);

#endif
