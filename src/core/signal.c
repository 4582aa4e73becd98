/* Signal watches: signals delivered as ordinary callbacks on a loop's thread.
 *
 * The self-pipe way, as libuv does it, not signalfd: signalfd needs the signal
 * blocked in every thread of the process, which a library cannot promise for
 * threads it did not make (one thread left unblocked takes the default action
 * and may kill the process). Instead one handler per signal, installed for the
 * process while any watch wants that signal, writes the signal's number into a
 * pipe of every loop that watches it; the loop reads the pipe like any descriptor
 * and calls the watches of that signal from its own thread.
 *
 * Signal dispositions are the process's, so this file keeps the one piece of
 * process-wide state in the library: a table of the loops that watch signals
 * (fixed size, so the handler walks it without locks) and, per signal, how many
 * loops want it and the disposition it had before. Changes to the tables are made
 * under a mutex; the handler only reads atomics and calls write(2), which is
 * async-signal-safe. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/loop.h"

#define LOOP_SLOTS 64
#define MASK_WORDS ((NSIG + 31) / 32)

/* A loop that watches signals, as the handler sees it. */
typedef struct slot {
    atomic_int busy;                /* handlers inside this slot right now */
    atomic_int wfd;                 /* the loop's pipe, write end; -1 when free */
    atomic_uint mask[MASK_WORDS];   /* the signals the loop wants */
} slot_t;

static slot_t slots[LOOP_SLOTS] = {[0 ... LOOP_SLOTS - 1] = {.wfd = -1}};
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static int users[NSIG];            /* loops watching each signal (under table_mu) */
static struct sigaction before[NSIG]; /* its disposition before the first of them */

/* A loop's side: the pipe, the watches, how many of them want each signal. */
typedef struct signals {
    int rfd, wfd, slot;
    tt__io_own_t io;
    tt_signal_t *list;
    int count[NSIG];
} signals_t;

struct tt_signal {
    tt_signal_t *next; /* on the loop's list; kept when unlinked (see dispatch) */
    tt_loop_t *loop;
    tt_signal_cb cb;
    void *data;
    uint32_t mask[MASK_WORDS]; /* the signals this watch delivers */
    int nsignals;
    bool ref, closed;
    tt__zombie_t zombie;
};

static bool bit(const uint32_t *m, int sig) { return (m[sig / 32] >> (sig % 32)) & 1u; }

/* ---- the process-wide part ----------------------------------------------------------- */

static void handler(int sig)
{
    int saved = errno;

    for (int i = 0; i < LOOP_SLOTS; i++) {
        slot_t *s = &slots[i];
        atomic_fetch_add(&s->busy, 1);
        if ((atomic_load(&s->mask[sig / 32]) >> (sig % 32)) & 1u) {
            int fd = atomic_load(&s->wfd);
            unsigned char b = (unsigned char)sig;
            if (fd >= 0) {
                ssize_t r = write(fd, &b, 1);
                (void)r; /* EAGAIN: the pipe is full, the loop will run anyway */
            }
        }
        atomic_fetch_sub(&s->busy, 1);
    }
    errno = saved;
}

/* First loop to want `sig`: install the handler, keeping what was there. */
static int process_want(int sig)
{
    struct sigaction sa;

    if (users[sig]++ > 0)
        return 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask); /* one handler at a time per thread: nothing nests */
    if (sigaction(sig, &sa, &before[sig]) < 0) {
        users[sig]--;
        return -errno;
    }
    return 0;
}

/* Last loop to give up `sig`: put the old disposition back. */
static void process_drop(int sig)
{
    if (--users[sig] == 0)
        sigaction(sig, &before[sig], NULL);
}

/* ---- a loop's part ----------------------------------------------------------------- */

static void pipe_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending);

static void signals_free(tt_loop_t *loop)
{
    signals_t *ss = loop->signals;
    slot_t *s = &slots[ss->slot];

    pthread_mutex_lock(&table_mu);
    for (int sig = 1; sig < NSIG; sig++)
        if (ss->count[sig] > 0)
            process_drop(sig);
    for (int w = 0; w < MASK_WORDS; w++)
        atomic_store(&s->mask[w], 0);
    atomic_store(&s->wfd, -1);
    /* A handler that read the old descriptor may still be writing to it. */
    while (atomic_load(&s->busy) > 0)
        sched_yield();
    pthread_mutex_unlock(&table_mu);
    tt__poller_remove(&loop->poller, &ss->io.io);
    close(ss->rfd);
    close(ss->wfd);
    free(ss);
    loop->signals = NULL;
    loop->signals_free = NULL;
}

static int signals_get(tt_loop_t *loop, signals_t **out)
{
    signals_t *ss = loop->signals;
    int fds[2], err, slot = -1;

    if (ss != NULL) {
        *out = ss;
        return 0;
    }
    ss = calloc(1, sizeof(*ss));
    if (ss == NULL)
        return -ENOMEM;
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        err = -errno;
        goto fail_pipe;
    }
    ss->rfd = fds[0];
    ss->wfd = fds[1];
    tt__io_init(&ss->io, ss->rfd, TT__IO_RAW, pipe_cb);
    err = tt__poller_set(&loop->poller, &ss->io.io, TT__POLL_IN);
    if (err < 0)
        goto fail_watch;
    pthread_mutex_lock(&table_mu);
    for (int i = 0; i < LOOP_SLOTS && slot < 0; i++)
        if (atomic_load(&slots[i].wfd) < 0)
            slot = i;
    if (slot >= 0)
        atomic_store(&slots[slot].wfd, ss->wfd);
    pthread_mutex_unlock(&table_mu);
    if (slot < 0) {
        err = -ENOSPC;
        goto fail_slot;
    }
    ss->slot = slot;
    loop->signals = ss;
    loop->signals_free = signals_free;
    *out = ss;
    return 0;

fail_slot:
    tt__poller_remove(&loop->poller, &ss->io.io);
fail_watch:
    close(fds[0]);
    close(fds[1]);
fail_pipe:
    free(ss);
    return err;
}

/* Deliver `sig` to every live watch of it. A callback may close any watch: a
 * closed one stays readable until the end of the round (its next pointer too),
 * so the walk goes on safely and skips it. */
static void dispatch(signals_t *ss, int sig)
{
    for (tt_signal_t *w = ss->list, *next; w != NULL; w = next) {
        next = w->next;
        if (!w->closed && bit(w->mask, sig))
            w->cb(w, sig, w->data);
    }
}

static void pipe_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending)
{
    signals_t *ss = tt__container_of(io, signals_t, io.io);
    unsigned char sigs[64];
    ssize_t got;

    (void)ev, (void)buf, (void)n, (void)pending;
    /* One read a round: a flood of signals cannot keep the loop here. */
    got = read(ss->rfd, sigs, sizeof(sigs));
    for (ssize_t i = 0; i < got; i++) {
        bool seen = false;
        for (ssize_t j = 0; j < i && !seen; j++)
            seen = sigs[j] == sigs[i]; /* once per signal per read: they merge anyway */
        if (!seen && sigs[i] > 0 && sigs[i] < NSIG)
            dispatch(ss, sigs[i]);
    }
}

/* ---- the watch ---------------------------------------------------------------------- */

static void free_watch(tt__zombie_t *z) { free(tt__container_of(z, tt_signal_t, zombie)); }

int tt_signal_init(tt_loop_t *loop, tt_signal_t **out, tt_signal_cb cb, void *data)
{
    tt_signal_t *w;

    if (loop == NULL || out == NULL || cb == NULL)
        return -EINVAL;
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->loop = loop;
    w->cb = cb;
    w->data = data;
    w->ref = true;
    loop->handles++;
    *out = w;
    return 0;
}

static bool watchable(int sig)
{
    return sig > 0 && sig < NSIG && sig != SIGKILL && sig != SIGSTOP && sig != SIGSEGV &&
           sig != SIGBUS && sig != SIGFPE && sig != SIGILL;
}

static void set_active(tt_signal_t *w, int nsignals, bool ref)
{
    tt__loop_keepalive(w->loop, w->nsignals > 0 && w->ref, nsignals > 0 && ref);
    w->nsignals = nsignals;
    w->ref = ref;
}

int tt_signal_start(tt_signal_t *w, int sig)
{
    signals_t *ss = NULL;
    int err;

    if (w == NULL || w->closed || !watchable(sig))
        return -EINVAL;
    if (bit(w->mask, sig))
        return 0;
    err = signals_get(w->loop, &ss);
    if (err < 0)
        return err;
    if (ss->count[sig] == 0) {
        pthread_mutex_lock(&table_mu);
        err = process_want(sig);
        if (err == 0)
            atomic_fetch_or(&slots[ss->slot].mask[sig / 32], 1u << (sig % 32));
        pthread_mutex_unlock(&table_mu);
        if (err < 0)
            return err;
    }
    ss->count[sig]++;
    if (w->nsignals == 0) { /* onto the loop's list with its first signal */
        w->next = ss->list;
        ss->list = w;
    }
    w->mask[sig / 32] |= 1u << (sig % 32);
    set_active(w, w->nsignals + 1, w->ref);
    return 0;
}

static void unlink_watch(signals_t *ss, tt_signal_t *w)
{
    for (tt_signal_t **p = &ss->list; *p != NULL; p = &(*p)->next)
        if (*p == w) {
            *p = w->next; /* w->next itself stays: a walk standing on w goes on */
            return;
        }
}

static void drop_one(tt_signal_t *w, int sig)
{
    signals_t *ss = w->loop->signals;

    w->mask[sig / 32] &= ~(1u << (sig % 32));
    if (--ss->count[sig] == 0) {
        pthread_mutex_lock(&table_mu);
        atomic_fetch_and(&slots[ss->slot].mask[sig / 32], ~(1u << (sig % 32)));
        process_drop(sig);
        pthread_mutex_unlock(&table_mu);
    }
    if (w->nsignals == 1)
        unlink_watch(ss, w);
    set_active(w, w->nsignals - 1, w->ref);
}

int tt_signal_stop(tt_signal_t *w, int sig)
{
    if (w == NULL || w->closed || sig < 0 || sig >= NSIG)
        return -EINVAL;
    if (sig != 0) {
        if (bit(w->mask, sig))
            drop_one(w, sig);
        return 0;
    }
    for (int s = 1; s < NSIG && w->nsignals > 0; s++)
        if (bit(w->mask, s))
            drop_one(w, s);
    return 0;
}

int tt_signal_close(tt_signal_t *w)
{
    if (w == NULL || w->closed)
        return -EINVAL;
    tt_signal_stop(w, 0);
    w->closed = true;
    w->loop->handles--;
    w->zombie.free_fn = free_watch;
    tt__loop_defer_free(w->loop, &w->zombie);
    return 0;
}

int tt_signal_set_ref(tt_signal_t *w, bool ref)
{
    if (w == NULL || w->closed)
        return -EINVAL;
    set_active(w, w->nsignals, ref);
    return 0;
}

void *tt_signal_get_data(const tt_signal_t *w) { return w != NULL ? w->data : NULL; }
