/* epoll backend: level-triggered, one read per readiness per round.
 *
 * Level-triggered keeps fairness simple (a busy socket cannot starve the others)
 * and costs no extra syscall: a read that fills less than the buffer has drained
 * the socket, so we stop there instead of reading again to see EAGAIN. */
#include "poller.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256

int tt__epoll_init(tt__poller_t *p)
{
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0)
        return -errno;
    p->nevents = MAX_EVENTS;
    p->events = calloc(MAX_EVENTS, sizeof(struct epoll_event));
    if (p->events == NULL) {
        close(p->epfd);
        return -ENOMEM;
    }
    return 0;
}

void tt__epoll_close(tt__poller_t *p)
{
    free(p->events);
    close(p->epfd);
}

int tt__epoll_set(tt__poller_t *p, tt__io_t *io, unsigned events)
{
    struct epoll_event ev = {0};
    int op;

    if (io->registered && io->events == events)
        return 0;
    if (events == 0) {
        /* Removing instead of registering an empty mask: epoll reports EPOLLHUP and
         * EPOLLERR even for an empty mask, and level-triggered that would spin. */
        if (io->registered && epoll_ctl(p->epfd, EPOLL_CTL_DEL, io->fd, NULL) < 0)
            return -errno;
        io->registered = 0;
        io->events = 0;
        return 0;
    }
    ev.events = ((events & TT__POLL_IN) ? EPOLLIN : 0) | ((events & TT__POLL_OUT) ? EPOLLOUT : 0);
    ev.data.ptr = io;
    op = io->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(p->epfd, op, io->fd, &ev) < 0)
        return -errno;
    io->registered = 1;
    io->events = (uint8_t)events;
    return 0;
}

void tt__epoll_remove(tt__poller_t *p, tt__io_t *io)
{
    if (io->registered && io->fd >= 0)
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->registered = 0;
    io->events = 0;
}

/* `pending` costs nothing while reads come back short (the socket was drained).
 * The first read that fills the buffer asks FIONREAD and turns on TCP_INQ, after
 * which every read returns the count itself: a bulk stream that fills the buffer
 * on every read pays no extra system call for it. */
static void deliver_read(tt__poller_t *p, tt__io_t *io)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {p->rbuf, p->rbuf_size};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    size_t pending = 0;
    ssize_t n;

    if (io->inq) {
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof(cbuf);
        n = recvmsg(io->fd, &msg, 0);
    } else {
        n = recv(io->fd, p->rbuf, p->rbuf_size, 0);
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        n = -errno;
    } else if (io->inq) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ) {
                int left;
                memcpy(&left, CMSG_DATA(c), sizeof(left));
                pending = left > 0 ? (size_t)left : 0;
            }
        /* After the peer's FIN the kernel reports 1 so that the reader goes on
         * to see the end of stream; FIONREAD tells that apart from one real byte. */
        if (pending == 1) {
            int avail = 0;
            pending = ioctl(io->fd, FIONREAD, &avail) == 0 && avail > 0 ? (size_t)avail : 0;
        }
    } else if ((size_t)n == p->rbuf_size) {
        /* Only a full buffer can leave bytes behind; ask the kernel how many. */
        int avail = 0, one = 1;
        if (ioctl(io->fd, FIONREAD, &avail) == 0 && avail > 0)
            pending = (size_t)avail;
        if (setsockopt(io->fd, SOL_TCP, TCP_INQ, &one, sizeof(one)) == 0)
            io->inq = 1; /* not TCP (a Unix socket): FIONREAD stays */
    }
    io->cb(io, TT__EV_DATA, p->rbuf, n, pending);
}

int tt__epoll_wait(tt__poller_t *p, int timeout_ms)
{
    struct epoll_event *evs = p->events;
    int n = epoll_wait(p->epfd, evs, p->nevents, timeout_ms);

    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        tt__io_t *io = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        int err_or_hup = (e & (EPOLLERR | EPOLLHUP)) != 0;

        if (io->fd < 0)
            continue; /* closed by an earlier callback in this round */
        if (io->kind == TT__IO_RAW) {
            if ((e & EPOLLIN) || (err_or_hup && (io->events & TT__POLL_IN)))
                io->cb(io, TT__EV_READABLE, NULL, 0, 0);
            if (io->fd >= 0 && ((e & EPOLLOUT) || (err_or_hup && (io->events & TT__POLL_OUT))))
                io->cb(io, TT__EV_WRITABLE, NULL, 0, 0);
            continue;
        }
        /* Writable first: a connect completes, or queued bytes go before we read
         * (and possibly queue more). An error is reported through whichever
         * direction is armed; the read or write then returns it. */
        if ((e & EPOLLOUT) || (err_or_hup && (io->events & TT__POLL_OUT)))
            io->cb(io, TT__EV_WRITABLE, NULL, 0, 0);
        if (io->fd >= 0 && (io->events & TT__POLL_IN) && ((e & EPOLLIN) || err_or_hup))
            deliver_read(p, io);
    }
    return n;
}
