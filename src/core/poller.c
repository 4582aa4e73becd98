/* What both backends share: choosing one, the loop's read buffer, reading into it,
 * and writing.
 *
 * Writes are direct system calls whichever backend waits: the connection learns at
 * once how much the kernel took, which its send queue, backpressure and close
 * figures are built on. io_uring also takes sends as requests (tt__io_send_async,
 * poller_uring.c), reported when they complete. */
#include "core/poller.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>

int tt__poller_init(tt__poller_t *p)
{
    const char *want = getenv("TETHER_BACKEND");
    int err;

    memset(p, 0, sizeof(*p));
    p->epfd = -1;
    p->rbuf_size = TT__READ_BUF_SIZE;
    p->rbuf = malloc(p->rbuf_size);
    if (p->rbuf == NULL)
        return -ENOMEM;
    /* io_uring only when asked: a kernel or sandbox without it (or with it
     * disabled, kernel.io_uring_disabled) falls back to epoll;
     * tt_loop_backend() tells which one a loop got. */
    if (want != NULL && strcmp(want, "io_uring") == 0 && tt__uring_init(p) == 0) {
        p->backend = TT__BACKEND_URING;
        return 0;
    }
    p->backend = TT__BACKEND_EPOLL;
    err = tt__epoll_init(p);
    if (err < 0)
        free(p->rbuf);
    return err;
}

void tt__poller_close(tt__poller_t *p)
{
    if (p->backend == TT__BACKEND_URING)
        tt__uring_close(p);
    else
        tt__epoll_close(p);
    free(p->rbuf);
}

const char *tt__poller_name(const tt__poller_t *p)
{
    return p->backend == TT__BACKEND_URING ? "io_uring" : "epoll";
}

int tt__poller_fd(const tt__poller_t *p)
{
    return p->backend == TT__BACKEND_URING ? tt__uring_fd(p) : p->epfd;
}

bool tt__poller_has_ready(const tt__poller_t *p)
{
    return p->backend == TT__BACKEND_URING && tt__uring_has_ready(p);
}

void tt__poller_flush(tt__poller_t *p)
{
    if (p->backend == TT__BACKEND_URING)
        tt__uring_flush(p);
}

size_t tt__io_unread(int fd)
{
    int avail = 0;

    return ioctl(fd, FIONREAD, &avail) == 0 && avail > 0 ? (size_t)avail : 0;
}

/* `pending` costs nothing while reads come back short (the socket was drained).
 * The first read that fills the buffer asks FIONREAD and turns on TCP_INQ, after
 * which every read returns the count itself: a bulk stream that fills the buffer
 * on every read pays no extra system call for it. */
/* SCM_MAX_FD (net/scm.h): the most descriptors one message can carry. */
#define FDS_MAX 253

/* A read that can carry descriptors (SCM_RIGHTS). A Unix stream never merges a
 * message with descriptors into a read with earlier bytes, so the descriptors go
 * with the first byte of this read: they are delivered first, then the bytes. */
static void read_fds(tt__poller_t *p, tt__io_t *io)
{
    union {
        char buf[CMSG_SPACE(FDS_MAX * sizeof(int))];
        struct cmsghdr align;
    } cbuf;
    struct iovec iov = {p->rbuf, p->rbuf_size};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
                         .msg_controllen = sizeof(cbuf.buf)};
    int fds[FDS_MAX];
    size_t nfds = 0;
    ssize_t n;

    n = recvmsg(io->fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        n = -errno;
    }
    if (n >= 0) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k && nfds < FDS_MAX; i++)
                memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
    }
    if (nfds > 0) {
        int fd = io->fd;
        p->stream_cb(io, TT__EV_FDS, (const char *)fds, (ssize_t)nfds, 0);
        if (io->fd != fd)
            return; /* the owner let go of the socket: the bytes have nobody */
    }
    p->stream_cb(io, TT__EV_DATA, p->rbuf, n, n > 0 ? tt__io_unread(io->fd) : 0);
}

/* A read once TCP_INQ is on: recvmsg, the count of what is left comes with the data. */
static ssize_t read_inq(tt__poller_t *p, tt__io_t *io, size_t *pending)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {p->rbuf, p->rbuf_size};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = sizeof(cbuf)};
    ssize_t n = recvmsg(io->fd, &msg, 0);

    if (n < 0)
        return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ) {
            int left;
            memcpy(&left, CMSG_DATA(c), sizeof(left));
            *pending = left > 0 ? (size_t)left : 0;
        }
    /* After the peer's FIN the kernel reports 1 so that the reader goes on to see
     * the end of stream; FIONREAD tells that apart from one real byte. */
    if (*pending == 1)
        *pending = tt__io_unread(io->fd);
    return n;
}

void tt__io_read_other(tt__poller_t *p, tt__io_t *io, ssize_t n)
{
    size_t pending = 0;

    if (io->fdpass) {
        read_fds(p, io);
        return;
    }
    if (io->inq)
        n = read_inq(p, io, &pending);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        n = -errno;
    } else if ((size_t)n == p->rbuf_size && !io->inq) {
        /* Only a full buffer can leave bytes behind; ask the kernel how many. */
        int one = 1;
        pending = tt__io_unread(io->fd);
        if (setsockopt(io->fd, SOL_TCP, TCP_INQ, &one, sizeof(one)) == 0)
            io->inq = 1; /* not TCP (a Unix socket): FIONREAD stays */
    }
    p->stream_cb(io, TT__EV_DATA, p->rbuf, n, pending);
}

ssize_t tt__io_writev(tt__poller_t *p, tt__io_t *io, const struct iovec *iov, int iovcnt)
{
    struct msghdr msg = {0};
    ssize_t n;

    p->n_writes++;
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)iovcnt;
    /* sendmsg rather than writev: MSG_NOSIGNAL, so a closed peer gives EPIPE and
     * never SIGPIPE (socket(7), send(2)). */
    do
        n = sendmsg(io->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}

int tt__io_send_async(tt__poller_t *p, tt__io_t *io, const struct iovec *iov, int iovcnt,
                      size_t len)
{
    if (p->backend != TT__BACKEND_URING)
        return -EOPNOTSUPP;
    return tt__uring_send(p, io, iov, iovcnt, len);
}

ssize_t tt__io_writev_fds(tt__poller_t *p, tt__io_t *io, const struct iovec *iov, int iovcnt,
                          const int *fds, unsigned nfds)
{
    union {
        char buf[CMSG_SPACE(FDS_MAX * sizeof(int))];
        struct cmsghdr align;
    } cbuf;
    struct msghdr msg = {0};
    struct cmsghdr *c;
    ssize_t n;

    if (nfds == 0 || nfds > FDS_MAX)
        return -EINVAL;
    p->n_writes++;
    memset(&cbuf, 0, sizeof(cbuf));
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)iovcnt;
    msg.msg_control = cbuf.buf;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    do
        n = sendmsg(io->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}

ssize_t tt__io_sendfile(tt__poller_t *p, tt__io_t *io, int in_fd, uint64_t *offset, size_t len)
{
    off_t off = (off_t)*offset;
    sigset_t pipe_set, old_set, pending;
    ssize_t n;
    int err = 0, was_pending;

    p->n_writes++;
    /* sendfile(2) has no MSG_NOSIGNAL: a reset peer raises SIGPIPE. Block it on this
     * thread for the call and swallow the one we caused, leaving one that was
     * already pending alone. The library never changes process-wide dispositions. */
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE);
    do
        n = sendfile(io->fd, in_fd, &off, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        err = errno;
    if (err == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    if (n < 0)
        return err == EWOULDBLOCK ? -EAGAIN : -err;
    *offset = (uint64_t)off;
    return n;
}
