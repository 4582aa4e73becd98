/* epoll backend: level-triggered, one read per readiness per round.
 *
 * Level-triggered keeps fairness simple (a busy socket cannot starve the others)
 * and costs no extra syscall: a read that fills less than the buffer has drained
 * the socket, so we stop there instead of reading again to see EAGAIN. */
#include "core/poller.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
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

int tt__epoll_wait(tt__poller_t *p, int timeout_ms)
{
    struct epoll_event *evs = p->events;
    int n = epoll_wait(p->epfd, evs, p->nevents, timeout_ms);

    tt__poller_woke(p);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        tt__io_t *io = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        int err_or_hup = (e & (EPOLLERR | EPOLLHUP)) != 0;

        if (io->fd < 0)
            continue; /* closed by an earlier callback in this round */
        if (e == EPOLLIN && io->kind == TT__IO_STREAM) {
            /* Most events: a stream with bytes to read, nothing else. */
            if (io->events & TT__POLL_IN)
                tt__io_read(p, io);
            continue;
        }
        if (io->kind == TT__IO_WATCH) {
            unsigned ready = ((e & EPOLLIN) ? TT__POLL_IN : 0) | ((e & EPOLLOUT) ? TT__POLL_OUT : 0);
            if (err_or_hup)
                ready |= TT__POLL_ERR | (io->events & (TT__POLL_IN | TT__POLL_OUT));
            ready &= io->events | TT__POLL_ERR;
            if (ready != 0)
                ((tt__io_own_t *)io)->cb(io, TT__EV_POLL, NULL, (ssize_t)ready, 0);
            continue;
        }
        if (io->kind == TT__IO_RAW) {
            if ((e & EPOLLIN) || (err_or_hup && (io->events & TT__POLL_IN)))
                ((tt__io_own_t *)io)->cb(io, TT__EV_READABLE, NULL, 0, 0);
            if (io->fd >= 0 && ((e & EPOLLOUT) || (err_or_hup && (io->events & TT__POLL_OUT))))
                ((tt__io_own_t *)io)->cb(io, TT__EV_WRITABLE, NULL, 0, 0);
            continue;
        }
        /* Writable first: a connect completes, or queued bytes go before we read
         * (and possibly queue more). An error is reported through whichever
         * direction is armed; the read or write then returns it. */
        if ((e & EPOLLOUT) || (err_or_hup && (io->events & TT__POLL_OUT)))
            p->stream_cb(io, TT__EV_WRITABLE, NULL, 0, 0);
        if (io->fd >= 0 && (io->events & TT__POLL_IN) && ((e & EPOLLIN) || err_or_hup))
            tt__io_read(p, io);
    }
    return n;
}
