/* Watches of descriptors the caller owns: readiness reported as poll(2) would,
 * level-triggered, through the poller's watch kind (one callback per readiness,
 * with the ready bits). The loop never reads, writes or closes the descriptor. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "core/loop.h"

struct tt_watch {
    tt__io_own_t io;
    tt_loop_t *loop;
    tt_watch_cb cb;
    void *data;
    int fd;
    unsigned events; /* TT_WATCH_* asked for; 0 when stopped */
    bool ref;        /* an active watch keeps the loop running */
    bool closed;
    tt__zombie_t zombie;
};

#define ALL_EVENTS (TT_WATCH_READ | TT_WATCH_WRITE | TT_WATCH_ERROR)

static unsigned to_poll(unsigned ev)
{
    return ((ev & TT_WATCH_READ) ? TT__POLL_IN : 0) | ((ev & TT_WATCH_WRITE) ? TT__POLL_OUT : 0) |
           ((ev & TT_WATCH_ERROR) ? TT__POLL_ERR : 0);
}

static void io_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending)
{
    tt_watch_t *w = tt__container_of(io, tt_watch_t, io.io);
    unsigned ready = (unsigned)n, out;

    (void)buf, (void)pending;
    if (ev != TT__EV_POLL || w->closed || w->events == 0)
        return;
    out = ((ready & TT__POLL_IN) ? TT_WATCH_READ : 0) | ((ready & TT__POLL_OUT) ? TT_WATCH_WRITE : 0) |
          ((ready & TT__POLL_ERR) ? TT_WATCH_ERROR : 0);
    if (out != 0)
        w->cb(w, w->fd, out, w->data);
}

static void free_watch(tt__zombie_t *z) { free(tt__container_of(z, tt_watch_t, zombie)); }

int tt_watch_init(tt_loop_t *loop, tt_watch_t **out, int fd, tt_watch_cb cb, void *data)
{
    struct stat st;
    tt_watch_t *w;

    if (loop == NULL || out == NULL || cb == NULL || fd < 0)
        return -EINVAL;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
        return -EPERM;
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    tt__io_init(&w->io, fd, TT__IO_WATCH, io_cb);
    w->loop = loop;
    w->cb = cb;
    w->data = data;
    w->fd = fd;
    w->ref = true;
    loop->handles++;
    *out = w;
    return 0;
}

static void set_active(tt_watch_t *w, unsigned events, bool ref)
{
    tt__loop_keepalive(w->loop, w->events != 0 && w->ref, events != 0 && ref);
    w->events = events;
    w->ref = ref;
}

int tt_watch_start(tt_watch_t *w, unsigned events)
{
    int err;

    if (w == NULL || w->closed || (events & ~(unsigned)ALL_EVENTS) != 0)
        return -EINVAL;
    if (events == 0)
        return tt_watch_stop(w);
    err = tt__poller_set(&w->loop->poller, &w->io.io, to_poll(events));
    if (err < 0)
        return err;
    set_active(w, events, w->ref);
    return 0;
}

int tt_watch_stop(tt_watch_t *w)
{
    if (w == NULL || w->closed)
        return -EINVAL;
    if (w->io.io.registered)
        tt__poller_remove(&w->loop->poller, &w->io.io);
    set_active(w, 0, w->ref);
    return 0;
}

int tt_watch_close(tt_watch_t *w)
{
    if (w == NULL || w->closed)
        return -EINVAL;
    tt_watch_stop(w);
    w->closed = true;
    w->io.io.fd = -1; /* an event of this round already fetched skips it */
    w->loop->handles--;
    w->zombie.free_fn = free_watch;
    tt__loop_defer_free(w->loop, &w->zombie);
    return 0;
}

int tt_watch_set_ref(tt_watch_t *w, bool ref)
{
    if (w == NULL || w->closed)
        return -EINVAL;
    set_active(w, w->events, ref);
    return 0;
}

int tt_watch_fd(const tt_watch_t *w) { return w != NULL ? w->fd : -EINVAL; }

void *tt_watch_get_data(const tt_watch_t *w) { return w != NULL ? w->data : NULL; }
