/* Every core: N worker loops, one thread each, each with its own server.
 *
 * With SO_REUSEPORT (the default) every worker listens on the same port and the
 * kernel spreads incoming connections over the listeners. Without it, worker 0
 * also accepts for everyone and hands each socket to the next worker round-robin
 * by tt_loop_post(). Either way a connection lives on one loop for life, and
 * every cross-loop operation (broadcast, gathering, shutdown) is a post: nothing
 * here locks a handle. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ops/broadcast.h"
#include "endpoint/server.h"
#include "tether.h"

typedef struct worker {
    tt_workers_t *set;
    unsigned index;
    tt_loop_t *loop;
    tt_server_t *srv;
    pthread_t thread;
    bool started;
    int start_err;
} worker_t;

struct tt_workers {
    unsigned count;
    worker_t *w;
    tt_workers_opts_t wo;
    tt_server_opts_t so;
    tt_conn_handlers_t h;
    void *data;
    tt_addr_t addr;
    unsigned next; /* acceptor mode: round-robin cursor (worker 0's thread only) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned ready; /* workers that finished starting */
    int *fds;       /* listen_fds not yet taken by a worker (-1: taken) */
    uint64_t deadline_ms;
};

/* ---- acceptor mode: sockets travel to their worker by post ------------------------- */

typedef struct handoff {
    worker_t *to;
    int fd;
    tt_addr_t peer;
} handoff_t;

static void adopt_on_worker(tt_loop_t *loop, void *arg)
{
    handoff_t *h = arg;
    (void)loop;
    /* The stop may have come first on this worker (its server is shutting down or
     * gone, srv NULL): the socket arrived too late and is closed. */
    if (h->to->srv != NULL)
        tt__server_adopt(h->to->srv, h->fd, &h->peer);
    else
        close(h->fd);
    free(h);
}

static void hand_off(tt_server_t *srv, int fd, const tt_addr_t *peer, void *arg)
{
    tt_workers_t *set = arg;
    worker_t *to = &set->w[set->next++ % set->count];
    handoff_t *h;

    if (to->index == 0) { /* our own share: no trip through the post queue */
        tt__server_adopt(srv, fd, peer);
        return;
    }
    h = malloc(sizeof(*h));
    if (h == NULL) {
        close(fd);
        return;
    }
    h->to = to;
    h->fd = fd;
    h->peer = *peer;
    if (tt_loop_post(to->loop, adopt_on_worker, h) < 0) {
        free(h);
        close(fd);
    }
}

/* ---- threads ------------------------------------------------------------------------ */

static void signal_ready(tt_workers_t *set)
{
    pthread_mutex_lock(&set->mu);
    set->ready++;
    pthread_cond_broadcast(&set->cv);
    pthread_mutex_unlock(&set->mu);
}

/* The inherited listener for worker i, now the worker's (or -1). */
static int take_fd(tt_workers_t *set, unsigned i)
{
    int fd = -1;
    if (set->fds != NULL && i < set->wo.nfds) {
        fd = set->fds[i];
        set->fds[i] = -1;
    }
    return fd;
}

static int make_server(tt_workers_t *set, worker_t *w)
{
    tt_server_opts_t so = set->so;
    int fd;

    /* A Unix path has no SO_REUSEPORT group: one listener hands sockets over. */
    if (!set->wo.no_reuseport && !tt_addr_is_unix(&set->addr)) {
        so.reuseport = true;
        if ((fd = take_fd(set, w->index)) >= 0)
            return tt_server_listen_fd(w->loop, fd, &so, &set->h, set->data, &w->srv);
        return tt_server_listen(w->loop, &set->addr, &so, &set->h, set->data, &w->srv);
    }
    if (w->index == 0) {
        int err = (fd = take_fd(set, 0)) >= 0
                      ? tt_server_listen_fd(w->loop, fd, &so, &set->h, set->data, &w->srv)
                      : tt_server_listen(w->loop, &set->addr, &so, &set->h, set->data, &w->srv);
        if (err == 0)
            tt__server_set_handoff(w->srv, hand_off, set);
        return err;
    }
    return tt__server_new_adopting(w->loop, &set->addr, &so, &set->h, set->data, &w->srv);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    tt_workers_t *set = w->set;

    w->start_err = make_server(set, w);
    if (w->start_err == 0 && w->index == 0) {
        /* Port 0: the first listener learned the port; the others must share it. */
        tt_server_addr(w->srv, &set->addr);
    }
    if (w->start_err == 0 && set->wo.on_start != NULL)
        set->wo.on_start(set, w->index, w->loop, w->srv, set->wo.arg);
    signal_ready(set);
    if (w->start_err == 0)
        tt_loop_run(w->loop, TT_RUN_DEFAULT);
    return NULL;
}

static void wait_ready(tt_workers_t *set, unsigned n)
{
    pthread_mutex_lock(&set->mu);
    while (set->ready < n)
        pthread_cond_wait(&set->cv, &set->mu);
    pthread_mutex_unlock(&set->mu);
}

static void stop_cb(tt_server_t *srv, size_t ended, size_t destroyed, void *arg)
{
    (void)ended, (void)destroyed, (void)arg;
    tt_loop_stop(tt_server_loop(srv));
}

static void stop_on_worker(tt_loop_t *loop, void *arg)
{
    worker_t *w = arg;
    if (w->srv == NULL || tt_server_shutdown(w->srv, w->set->deadline_ms, stop_cb, w) < 0)
        tt_loop_stop(loop);
    w->srv = NULL; /* freed by the shutdown */
}

static void free_set(tt_workers_t *set)
{
    for (unsigned i = 0; i < set->count; i++)
        if (set->w[i].loop != NULL)
            tt_loop_close(set->w[i].loop);
    pthread_cond_destroy(&set->cv);
    pthread_mutex_destroy(&set->mu);
    for (unsigned i = 0; set->fds != NULL && i < set->wo.nfds; i++)
        if (set->fds[i] >= 0)
            close(set->fds[i]); /* never taken: a worker failed before */
    free(set->fds);
    free(set->w);
    free(set);
}

int tt_workers_start(const tt_addr_t *addr, const tt_workers_opts_t *wopts,
                     const tt_server_opts_t *sopts, const tt_conn_handlers_t *h, void *data,
                     tt_workers_t **out)
{
    tt_workers_t *set;
    unsigned n;
    int err = 0;

    unsigned nfds = wopts != NULL && wopts->listen_fds != NULL ? wopts->nfds : 0;
    tt_addr_t inherited;

    if (out == NULL || (wopts != NULL && wopts->listen_fds == NULL && wopts->nfds > 0) ||
        nfds > 1024) {
        err = -EINVAL;
        goto fail_fds;
    }
    if (nfds > 0) {
        /* The address is the inherited listeners' own. */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getsockname(wopts->listen_fds[0], (struct sockaddr *)&ss, &sl) < 0) {
            err = -errno;
            goto fail_fds;
        }
        if ((err = tt_addr_from_sockaddr(&inherited, (struct sockaddr *)&ss, sl)) < 0)
            goto fail_fds;
        addr = &inherited;
    }
    if (addr == NULL) {
        err = -EINVAL;
        goto fail_fds;
    }
    n = wopts != NULL && wopts->count > 0 ? wopts->count : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    if (nfds > 0 && (wopts->count == 0 || (wopts->no_reuseport ? 1 : n) < nfds))
        n = wopts->no_reuseport ? n : nfds; /* every inherited listener needs a worker */
    if (n == 0 || n > 1024) {
        err = -EINVAL;
        goto fail_fds;
    }
    set = calloc(1, sizeof(*set));
    if (set == NULL) {
        err = -ENOMEM;
        goto fail_fds;
    }
    set->w = calloc(n, sizeof(worker_t));
    if (nfds > 0 && set->w != NULL && (set->fds = malloc(nfds * sizeof(int))) != NULL)
        memcpy(set->fds, wopts->listen_fds, nfds * sizeof(int));
    if (set->w == NULL || (nfds > 0 && set->fds == NULL)) {
        free(set->w);
        free(set);
        err = -ENOMEM;
        goto fail_fds;
    }
    set->count = n;
    if (wopts != NULL)
        set->wo = *wopts;
    if (sopts != NULL)
        set->so = *sopts;
    if (h != NULL)
        set->h = *h;
    set->data = data;
    set->addr = *addr;
    pthread_mutex_init(&set->mu, NULL);
    pthread_cond_init(&set->cv, NULL);

    for (unsigned i = 0; i < n && err == 0; i++) {
        worker_t *w = &set->w[i];
        w->set = set;
        w->index = i;
        err = tt_loop_init(&w->loop);
        if (err < 0)
            break;
        /* Start one at a time: worker 0 settles the port before the others bind. */
        err = -pthread_create(&w->thread, NULL, worker_main, w);
        if (err < 0)
            break;
        w->started = true;
        wait_ready(set, i + 1);
        err = w->start_err;
    }
    if (err < 0) {
        tt_workers_stop(set, 0); /* closes the inherited listeners no worker took */
        return err;
    }
    *out = set;
    return 0;

fail_fds:
    for (unsigned i = 0; i < nfds; i++)
        close(wopts->listen_fds[i]); /* ours from the call on, as documented */
    return err;
}

int tt_workers_listen_fds(const tt_workers_t *set, int *fds, size_t max)
{
    size_t n = 0;

    if (set == NULL || (fds == NULL && max > 0))
        return -EINVAL;
    for (unsigned i = 0; i < set->count && n < max; i++) {
        int fd = set->w[i].srv != NULL ? tt_server_fd(set->w[i].srv) : -1;
        if (fd >= 0)
            fds[n++] = fd;
    }
    return (int)n;
}

int tt_workers_stop(tt_workers_t *set, uint64_t deadline_ms)
{
    if (set == NULL || deadline_ms > TT_TIMEOUT_MAX)
        return -EINVAL;
    set->deadline_ms = deadline_ms;
    for (unsigned i = 0; i < set->count; i++) {
        worker_t *w = &set->w[i];
        if (!w->started)
            continue;
        if (tt_loop_post(w->loop, stop_on_worker, w) < 0)
            tt_loop_stop(w->loop);
    }
    for (unsigned i = 0; i < set->count; i++)
        if (set->w[i].started)
            pthread_join(set->w[i].thread, NULL);
    /* Connections destroyed at the deadline deliver their closes on one more round. */
    for (unsigned i = 0; i < set->count; i++)
        if (set->w[i].loop != NULL)
            tt_loop_run(set->w[i].loop, TT_RUN_NOWAIT);
    free_set(set);
    return 0;
}

unsigned tt_workers_count(const tt_workers_t *set) { return set != NULL ? set->count : 0; }

tt_loop_t *tt_workers_loop(const tt_workers_t *set, unsigned i)
{
    return set != NULL && i < set->count ? set->w[i].loop : NULL;
}

int tt_workers_addr(const tt_workers_t *set, tt_addr_t *out)
{
    if (set == NULL || out == NULL)
        return -EINVAL;
    *out = set->addr;
    return 0;
}

/* ---- cross-loop operations ------------------------------------------------------------ */

/* The sender to skip is named by id, not pointer: by the time a worker runs the
 * post, the sender may have closed and its memory gone to a new connection. */
typedef struct bcast_post {
    worker_t *w;
    tt__payload_t *p;
    uint64_t except_id; /* 0: nobody */
} bcast_post_t;

static void bcast_on_worker(tt_loop_t *loop, void *arg)
{
    bcast_post_t *b = arg;
    (void)loop;
    if (b->w->srv != NULL)
        tt__payload_send_server(b->p, b->w->srv, b->except_id);
    tt__payload_unref(b->p);
    free(b);
}

int tt_workers_broadcast(tt_workers_t *set, const void *buf, size_t len, const tt_conn_t *except)
{
    tt__payload_t *p;
    int err = 0;

    if (set == NULL || (buf == NULL && len > 0))
        return -EINVAL;
    p = tt__payload_new(buf, len);
    if (p == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < set->count; i++) {
        bcast_post_t *b = malloc(sizeof(*b));
        if (b == NULL) {
            err = -ENOMEM;
            break;
        }
        b->w = &set->w[i];
        b->p = p;
        b->except_id = except != NULL ? tt_conn_id(except) : 0;
        tt__payload_ref(p);
        if (tt_loop_post(set->w[i].loop, bcast_on_worker, b) < 0) {
            tt__payload_unref(p);
            free(b);
            err = -ENOMEM;
            break;
        }
    }
    tt__payload_unref(p);
    return err;
}

typedef struct gather {
    tt_workers_t *set;
    tt_workers_visit_cb fn;
    void *arg;
    unsigned left;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} gather_t;

typedef struct gather_post {
    gather_t *g;
    worker_t *w;
} gather_post_t;

static void gather_on_worker(tt_loop_t *loop, void *arg)
{
    gather_post_t *gp = arg;
    gather_t *g = gp->g;

    g->fn(g->set, gp->w->index, loop, gp->w->srv, g->arg);
    pthread_mutex_lock(&g->mu);
    g->left--;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    free(gp);
}

int tt_workers_visit(tt_workers_t *set, tt_workers_visit_cb fn, void *arg)
{
    gather_t g = {set, fn, arg, 0, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};
    int err = 0;

    if (set == NULL || fn == NULL)
        return -EINVAL;
    for (unsigned i = 0; i < set->count; i++)
        if (pthread_equal(pthread_self(), set->w[i].thread))
            return -EDEADLK; /* it would wait for its own loop */
    for (unsigned i = 0; i < set->count; i++) {
        gather_post_t *gp = malloc(sizeof(*gp));
        if (gp == NULL) {
            err = -ENOMEM;
            break;
        }
        gp->g = &g;
        gp->w = &set->w[i];
        pthread_mutex_lock(&g.mu);
        g.left++;
        pthread_mutex_unlock(&g.mu);
        if (tt_loop_post(set->w[i].loop, gather_on_worker, gp) < 0) {
            free(gp);
            pthread_mutex_lock(&g.mu);
            g.left--;
            pthread_mutex_unlock(&g.mu);
            err = -ENOMEM;
            break;
        }
    }
    pthread_mutex_lock(&g.mu);
    while (g.left > 0)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
    return err;
}
