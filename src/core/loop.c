/* The event loop: run/stop/post, the one place that calls the poller.
 *
 * One round: refresh the time, fire due timers, run posted functions, do deferred
 * connection work (coalesced writes, close delivery), then wait for I/O with a
 * timeout that ends at the next timer, dispatch, and do the same again. Frees are
 * deferred to the end of the round so a callback may destroy anything. */
#include "core/loop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct tt__post {
    tt__post_t *next;
    tt_post_cb fn;
    void *arg;
};

static void wake_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending)
{
    tt_loop_t *loop = tt__container_of(io, tt_loop_t, wake_io.io);
    uint64_t v;

    (void)ev, (void)buf, (void)n, (void)pending;
    /* Read first, then clear the flag. Cleared first, a wake() landing in between
     * would have its write eaten by this read and leave the flag set with the
     * eventfd empty: every later post or stop from another thread would skip its
     * write and the loop would sleep through them. A wake() that sees the flag
     * still set queued its work before the clear, and this round runs it. */
    while (read(loop->wake_fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    atomic_store(&loop->wake_pending, 0);
}

int tt_loop_init(tt_loop_t **out)
{
    tt_loop_t *loop;
    int err;

    if (out == NULL)
        return -EINVAL;
    loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return -ENOMEM;
    err = tt__poller_init(&loop->poller);
    if (err < 0)
        goto fail_poller;
    loop->poller.clock = &loop->now;
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_fd < 0) {
        err = -errno;
        goto fail_eventfd;
    }
    tt__io_init(&loop->wake_io, loop->wake_fd, TT__IO_RAW, wake_cb);
    err = tt__poller_set(&loop->poller, &loop->wake_io.io, TT__POLL_IN);
    if (err < 0)
        goto fail_register;
    err = -pthread_mutex_init(&loop->post_mu, NULL);
    if (err < 0)
        goto fail_register;
    loop->now = tt__clock_ms();
    tt__wheel_init(&loop->wheel, loop->now);
    *out = loop;
    return 0;

fail_register:
    close(loop->wake_fd);
fail_eventfd:
    tt__poller_close(&loop->poller);
fail_poller:
    free(loop);
    return err;
}

static void run_zombies(tt_loop_t *loop)
{
    while (loop->zombies != NULL) {
        tt__zombie_t *z = loop->zombies;
        loop->zombies = z->next;
        z->free_fn(z);
    }
}

int tt_loop_close(tt_loop_t *loop)
{
    if (loop == NULL)
        return -EINVAL;
    if (loop->running)
        return -EBUSY;
    if (loop->handles > 0 || loop->pend_head != NULL)
        return -EBUSY;
    if (loop->resolver_free != NULL)
        loop->resolver_free(loop); /* its watches go to the zombie list just below */
    if (loop->signals_free != NULL)
        loop->signals_free(loop);
    if (loop->tls_free != NULL)
        loop->tls_free(loop);
    if (loop->bcast_free != NULL)
        loop->bcast_free(loop);
    run_zombies(loop);
    while (loop->post_head != NULL) { /* dropped, as documented */
        tt__post_t *p = loop->post_head;
        loop->post_head = p->next;
        free(p);
    }
    if (loop->conns_release != NULL)
        loop->conns_release(loop);
    pthread_mutex_destroy(&loop->post_mu);
    close(loop->wake_fd);
    tt__poller_close(&loop->poller);
    free(loop);
    return 0;
}

void tt__loop_defer_free(tt_loop_t *loop, tt__zombie_t *z)
{
    z->next = loop->zombies;
    loop->zombies = z;
}

void tt__loop_defer(tt_loop_t *loop, tt__task_t *t)
{
    if (t->queued)
        return;
    t->queued = 1;
    t->next = NULL;
    if (loop->task_tail != NULL)
        loop->task_tail->next = t;
    else
        loop->task_head = t;
    loop->task_tail = t;
}

static void run_tasks(tt_loop_t *loop)
{
    /* Only the tasks queued now: one queued while we run waits for the next round.
     * A task stays marked queued until it runs, so it is never linked twice. */
    tt__task_t *t = loop->task_head;
    loop->task_head = loop->task_tail = NULL;
    while (t != NULL) {
        tt__task_t *next = t->next;
        t->queued = 0;
        t->fn(t);
        t = next;
    }
}

static void wake(tt_loop_t *loop)
{
    uint64_t one = 1;
    /* write(2) is async-signal-safe; the flag only saves redundant syscalls. */
    if (atomic_exchange(&loop->wake_pending, 1) == 0) {
        ssize_t r = write(loop->wake_fd, &one, sizeof(one));
        (void)r; /* EAGAIN: the counter is saturated, the loop is awake anyway */
    }
}

int tt_loop_stop(tt_loop_t *loop)
{
    if (loop == NULL)
        return -EINVAL;
    atomic_store(&loop->stop, 1);
    wake(loop);
    return 0;
}

int tt_loop_post(tt_loop_t *loop, tt_post_cb fn, void *arg)
{
    tt__post_t *p;

    if (loop == NULL || fn == NULL)
        return -EINVAL;
    p = malloc(sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&loop->post_mu);
    if (loop->post_tail != NULL)
        loop->post_tail->next = p;
    else
        loop->post_head = p;
    loop->post_tail = p;
    atomic_fetch_add(&loop->posts, 1);
    pthread_mutex_unlock(&loop->post_mu);
    wake(loop);
    return 0;
}

static void run_posts(tt_loop_t *loop)
{
    tt__post_t *p;

    if (atomic_load(&loop->posts) == 0)
        return;
    /* Take the whole list under the lock, run it outside: a post may post again. */
    pthread_mutex_lock(&loop->post_mu);
    p = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_mu);
    while (p != NULL) {
        tt__post_t *next = p->next;
        p->fn(loop, p->arg);
        free(p);
        atomic_fetch_sub(&loop->posts, 1);
        p = next;
    }
}

uint64_t tt_loop_now(const tt_loop_t *loop) { return loop != NULL ? loop->now : 0; }

const char *tt_loop_backend(const tt_loop_t *loop)
{
    return loop != NULL ? tt__poller_name(&loop->poller) : NULL;
}

void tt_loop_update_time(tt_loop_t *loop)
{
    if (loop != NULL)
        loop->now = tt__clock_ms();
}

int tt_loop_set_audit(tt_loop_t *loop, tt_audit_cb cb, void *arg)
{
    if (loop == NULL)
        return -EINVAL;
    loop->audit = cb;
    loop->audit_arg = arg;
    return 0;
}

int tt__audit(tt_loop_t *loop, int event, const tt_addr_t *addr)
{
    if (loop->audit == NULL)
        return 0;
    int r = loop->audit(loop, (tt_audit_event_t)event, addr, loop->audit_arg);
    return r < 0 ? r : 0;
}

size_t tt_loop_handle_count(const tt_loop_t *loop) { return loop != NULL ? loop->handles : 0; }

static bool alive(const tt_loop_t *loop)
{
    return loop->active > 0 || loop->wheel.count > 0 || atomic_load(&loop->posts) > 0 ||
           loop->pend_head != NULL || loop->task_head != NULL;
}

/* How long the wait may last, counted from `now`. */
static int poll_timeout(tt_loop_t *loop, tt_run_mode_t mode, uint64_t now)
{
    if (mode == TT_RUN_NOWAIT || loop->pend_head != NULL || loop->task_head != NULL ||
        atomic_load(&loop->posts) > 0 ||
        atomic_load(&loop->stop))
        return 0;
    uint64_t next = tt__wheel_next_expiry(&loop->wheel);
    if (next == UINT64_MAX)
        return -1;
    if (next <= now)
        return 0;
    return next - now > INT_MAX ? INT_MAX : (int)(next - now);
}

/* The phases after the wait. The time was refreshed when the wait returned (the
 * poller does it before the I/O callbacks); refreshed again here, it is the time
 * the timers of this round are due against, after however long the I/O took. */
int tt_loop_backend_fd(const tt_loop_t *loop)
{
    return loop != NULL ? tt__poller_fd(&loop->poller) : -EINVAL;
}

int tt_loop_backend_timeout(const tt_loop_t *loop)
{
    if (loop == NULL)
        return -1;
    if (tt__poller_has_ready(&loop->poller))
        return 0;
    /* Asked between runs, maybe long after the last one: count from the clock. The
     * wheel's scan only clears hint bits, so the loop is not changed in substance. */
    return poll_timeout((tt_loop_t *)loop, TT_RUN_DEFAULT, tt__clock_ms());
}

static void round_work(tt_loop_t *loop)
{
    loop->now = tt__clock_ms();
    tt__wheel_advance(&loop->wheel, loop->now);
    run_posts(loop);
    if (loop->conns_run_pending != NULL)
        loop->conns_run_pending(loop);
    run_tasks(loop);
    run_zombies(loop);
}

int tt_loop_run(tt_loop_t *loop, tt_run_mode_t mode)
{
    int err = 0;

    if (loop == NULL || mode > TT_RUN_NOWAIT)
        return -EINVAL;
    if (loop->running)
        return -EBUSY;
    loop->running = 1;
    round_work(loop);
    /* As in every mode of libuv's uv_run: with no work left, never block. */
    while (!atomic_load(&loop->stop) && alive(loop)) {
        int n = tt__poller_wait(&loop->poller, poll_timeout(loop, mode, loop->now));
        if (n < 0) {
            /* The backend itself failed (its descriptor closed under it, out of
             * memory): waiting again would fail again at once and spin. Stop and
             * say why; the handles are intact and the caller may run again. */
            err = n;
            break;
        }
        round_work(loop);
        if (mode != TT_RUN_DEFAULT)
            break;
    }
    /* Requests queued by this round's callbacks go to the kernel now: whoever waits
     * next (this loop, or another loop on tt_loop_backend_fd) must be woken by them. */
    tt__poller_flush(&loop->poller);
    atomic_store(&loop->stop, 0);
    loop->running = 0;
    if (err < 0)
        return err;
    return alive(loop) ? 1 : 0;
}
