/* A thread that writes to a blocking descriptor on the loop's behalf (see writer.h).
 *
 * Why a thread: tether has no public "watch this fd for writability" call, and
 * making stdout non-blocking would change the file description it shares with
 * other processes (the shell's terminal, the other end of a pipeline: fcntl(2)
 * O_NONBLOCK is per open file description, not per process). A blocking write on
 * a thread of our own touches nothing shared and keeps the loop free.
 *
 * Two buffers: the loop appends to `pend` under the lock; the thread swaps it for
 * its empty `work` buffer and writes `work` with the lock released. */
#include "writer.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct buf {
    char *data;
    size_t len, cap;
} buf_t;

struct cli_writer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* work arrived, finish requested, or the thread is done */
    tt_loop_t *loop;
    cli_writer_cbs_t cbs;
    int fd;
    size_t high, low;
    buf_t pend;      /* appended by the loop thread */
    buf_t work;      /* owned by the writer thread while `writing` */
    size_t inflight; /* bytes of `work` not yet written */
    bool writing;
    bool owe_low;   /* push reported "full": post on_low at the low mark */
    bool finishing; /* finish() called: write what is left, then exit */
    bool discard;
    bool done;      /* the thread has left its loop */
    int err;        /* first write error */
};

static void post_low(tt_loop_t *loop, void *arg)
{
    cli_writer_t *w = arg;
    (void)loop;
    if (w->cbs.on_low != NULL)
        w->cbs.on_low(w->cbs.arg);
}

static void post_error(tt_loop_t *loop, void *arg)
{
    cli_writer_t *w = arg;
    int err;
    (void)loop;
    pthread_mutex_lock(&w->mu);
    err = w->err;
    pthread_mutex_unlock(&w->mu);
    if (w->cbs.on_error != NULL)
        w->cbs.on_error(w->cbs.arg, err);
}

/* Write all of buf; returns 0 or -errno. write(2) to a pipe or terminal may take
 * only part; EINTR is retried (signals are blocked here, but be safe). */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void *writer_main(void *arg)
{
    cli_writer_t *w = arg;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->pend.len == 0 && !w->finishing)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->pend.len == 0 || (w->finishing && w->discard))
            break;
        buf_t take = w->pend;
        w->pend = w->work; /* the empty spare becomes the append buffer */
        w->pend.len = 0;
        w->work = take;
        w->inflight = take.len;
        w->writing = true;
        bool skip = w->err != 0;
        pthread_mutex_unlock(&w->mu);

        int err = skip ? 0 : write_all(w->fd, take.data, take.len);

        pthread_mutex_lock(&w->mu);
        w->writing = false;
        w->inflight = 0;
        w->work.len = 0;
        /* Once finish() has begun, the loop may be about to close: post nothing. */
        if (err < 0 && w->err == 0) {
            w->err = err;
            if (!w->finishing)
                tt_loop_post(w->loop, post_error, w);
        }
        if (w->owe_low && w->pend.len <= w->low && w->err == 0 && !w->finishing) {
            w->owe_low = false;
            tt_loop_post(w->loop, post_low, w);
        }
    }
    w->done = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int cli_writer_start(cli_writer_t **out, tt_loop_t *loop, int fd, size_t high,
                     const cli_writer_cbs_t *cbs)
{
    pthread_condattr_t ca;
    sigset_t all, old;
    cli_writer_t *w;
    int err;

    if (out == NULL || loop == NULL || fd < 0 || high == 0 || cbs == NULL)
        return -EINVAL;
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->loop = loop;
    w->cbs = *cbs;
    w->fd = fd;
    w->high = high;
    w->low = high / 4;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* finish()'s timeout */
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);

    /* The thread inherits the mask: block everything so signals go to the loop. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&w->thread, NULL, writer_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0)
        goto fail;
    *out = w;
    return 0;

fail:
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return -err;
}

static int buf_append(buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return 0; /* an empty message: nothing to copy (and maybe no buffer yet) */
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        while (cap < b->len + n)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return -ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int cli_writer_push(cli_writer_t *w, const void *buf, size_t len)
{
    int r;

    if (w == NULL || (buf == NULL && len > 0))
        return -EINVAL;
    pthread_mutex_lock(&w->mu);
    if (w->err != 0) {
        r = w->err;
        goto out;
    }
    r = buf_append(&w->pend, buf, len);
    if (r < 0)
        goto out;
    pthread_cond_signal(&w->cv);
    if (w->pend.len + w->inflight > w->high) {
        w->owe_low = true;
        r = 1;
    }
out:
    pthread_mutex_unlock(&w->mu);
    return r;
}

int cli_writer_finish(cli_writer_t *w, bool discard, unsigned timeout_ms)
{
    struct timespec until;
    int err = 0;

    if (w == NULL)
        return -EINVAL;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    w->finishing = true;
    w->discard = discard;
    pthread_cond_broadcast(&w->cv);
    while (!w->done && err == 0) {
        if (timeout_ms == 0)
            pthread_cond_wait(&w->cv, &w->mu);
        else
            err = pthread_cond_timedwait(&w->cv, &w->mu, &until);
    }
    if (!w->done) {
        /* Stuck in write(2) on a reader that does not read: leave the thread (and the
         * writer it uses) to process exit rather than hang. */
        pthread_mutex_unlock(&w->mu);
        pthread_detach(w->thread);
        return -ETIMEDOUT;
    }
    err = w->err;
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->pend.data);
    free(w->work.data);
    free(w);
    return err;
}
