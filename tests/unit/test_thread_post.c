/* The two thread-safe calls, tt_loop_post and tt_loop_stop, from other threads.
 * Also built with ThreadSanitizer (file name test_thread_*). Every run is bounded
 * by a guard timer on the loop itself. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define U(x) ((unsigned long long)(x))
#define THREADS 4
#define POSTS 1000

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- many posters ---------------------------------------------------------------- */

typedef struct {
    int thread;
    int seq;
} item_t;

typedef struct {
    tt_loop_t *loop;
    pthread_t loop_thread;
    tt_timer_t *guard;
    bool guard_fired;
    /* Touched only on the loop thread. */
    int received;
    int per_thread[THREADS];
    int out_of_order;
    int wrong_thread;
    int last_seq[THREADS];
} sink_t;

static sink_t sink;
static item_t items[THREADS][POSTS];

static void guard_cb(tt_timer_t *t, void *data)
{
    sink_t *s = data;
    (void)t;
    s->guard_fired = true;
    tt_loop_stop(s->loop);
}

static void item_cb(tt_loop_t *loop, void *arg)
{
    item_t *it = arg;
    cr_assert_eq(loop, sink.loop);
    if (!pthread_equal(pthread_self(), sink.loop_thread))
        sink.wrong_thread++;
    if (it->seq != sink.last_seq[it->thread] + 1)
        sink.out_of_order++;
    sink.last_seq[it->thread] = it->seq;
    sink.per_thread[it->thread]++;
    if (++sink.received == THREADS * POSTS)
        tt_timer_close(sink.guard); /* the last one: nothing keeps the loop running */
}

typedef struct {
    tt_loop_t *loop;
    int thread;
    int failures;
} poster_t;

static void *poster_main(void *arg)
{
    poster_t *p = arg;
    for (int i = 0; i < POSTS; i++) {
        items[p->thread][i].thread = p->thread;
        items[p->thread][i].seq = i;
        if (tt_loop_post(p->loop, item_cb, &items[p->thread][i]) != 0)
            p->failures++;
        if (i % 64 == 0)
            sched_yield(); /* let the loop catch up, so it sleeps and wakes often */
    }
    return NULL;
}

static void start_guard(tt_loop_t *loop, uint64_t ms)
{
    sink.loop = loop;
    sink.guard_fired = false;
    cr_assert_eq(tt_timer_init(loop, &sink.guard, guard_cb, &sink), 0);
    cr_assert_eq(tt_timer_start(sink.guard, ms, 0), 0);
}

Test(thread_post, posts_from_four_threads_each_run_once_on_the_loop_thread_in_order)
{
    tt_loop_t *loop;
    pthread_t th[THREADS];
    poster_t p[THREADS];

    memset(&sink, 0, sizeof(sink));
    for (int i = 0; i < THREADS; i++)
        sink.last_seq[i] = -1;
    cr_assert_eq(tt_loop_init(&loop), 0);
    sink.loop_thread = pthread_self();
    /* The guard keeps the loop running while posters start; the last post closes it. */
    start_guard(loop, 20000);
    for (int i = 0; i < THREADS; i++) {
        p[i] = (poster_t){.loop = loop, .thread = i};
        cr_assert_eq(pthread_create(&th[i], NULL, poster_main, &p[i]), 0);
    }
    int r = tt_loop_run(loop, TT_RUN_DEFAULT);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);

    cr_assert(!sink.guard_fired, "only %d of %d posts ran within 20 s", sink.received,
              THREADS * POSTS);
    if (sink.guard_fired)
        tt_timer_close(sink.guard);
    cr_assert_eq(r, 0, "run returned %d", r);
    cr_assert_eq(sink.received, THREADS * POSTS, "received %d", sink.received);
    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(p[i].failures, 0, "thread %d: %d posts failed", i, p[i].failures);
        cr_assert_eq(sink.per_thread[i], POSTS, "thread %d: %d posts ran", i,
                     sink.per_thread[i]);
    }
    cr_assert_eq(sink.out_of_order, 0, "%d posts out of order", sink.out_of_order);
    cr_assert_eq(sink.wrong_thread, 0, "%d posts ran on another thread", sink.wrong_thread);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- ping-pong: every post must wake a sleeping loop ------------------------------ */

typedef struct {
    tt_loop_t *loop;
    int thread;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *done;     /* per thread: posts run so far (guarded by mu) */
    int rounds;
    int timeouts;  /* waits for a post to run that took over 5 s */
    int failures;  /* tt_loop_post errors */
} pinger_t;

static pthread_mutex_t pp_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pp_cv = PTHREAD_COND_INITIALIZER;
static int pp_done[THREADS];
static atomic_int pp_finished;

static void pong_cb(tt_loop_t *loop, void *arg)
{
    pinger_t *p = arg;
    (void)loop;
    pthread_mutex_lock(&pp_mu);
    pp_done[p->thread]++;
    pthread_cond_broadcast(&pp_cv);
    pthread_mutex_unlock(&pp_mu);
}

static void *pinger_main(void *arg)
{
    pinger_t *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        if (tt_loop_post(p->loop, pong_cb, p) != 0) {
            p->failures++;
            break;
        }
        /* Wait until the loop ran it: the loop is then likely asleep again, so the
         * next post has to wake it. A lost wake-up shows as a timeout here. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        pthread_mutex_lock(&pp_mu);
        while (pp_done[p->thread] <= i)
            if (pthread_cond_timedwait(&pp_cv, &pp_mu, &until) == ETIMEDOUT)
                break;
        if (pp_done[p->thread] <= i)
            p->timeouts++;
        pthread_mutex_unlock(&pp_mu);
        if (p->timeouts > 0)
            break;
    }
    if (atomic_fetch_add(&pp_finished, 1) + 1 == THREADS)
        tt_loop_stop(p->loop); /* the last pinger ends the run */
    return NULL;
}

Test(thread_post, every_post_wakes_a_loop_sleeping_on_a_long_timer)
{
    tt_loop_t *loop;
    pthread_t th[THREADS];
    pinger_t p[THREADS];

    memset(&sink, 0, sizeof(sink));
    memset(pp_done, 0, sizeof(pp_done));
    atomic_store(&pp_finished, 0);
    cr_assert_eq(tt_loop_init(&loop), 0);
    start_guard(loop, 30000);
    for (int i = 0; i < THREADS; i++) {
        p[i] = (pinger_t){.loop = loop, .thread = i, .rounds = 2000};
        cr_assert_eq(pthread_create(&th[i], NULL, pinger_main, &p[i]), 0);
    }
    int r = tt_loop_run(loop, TT_RUN_DEFAULT);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    /* A post can race the final stop; let any stragglers run. */
    tt_loop_run(loop, TT_RUN_NOWAIT);

    cr_assert_eq(r, 1, "run returned %d", r);
    cr_assert(!sink.guard_fired, "the loop slept through posts until the guard");
    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(p[i].failures, 0, "thread %d: tt_loop_post failed", i);
        cr_assert_eq(p[i].timeouts, 0, "thread %d: a post was not run within 5 s", i);
        cr_assert_eq(pp_done[i], 2000, "thread %d: %d of 2000 ran", i, pp_done[i]);
    }
    cr_assert_eq(tt_timer_close(sink.guard), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- a post is work until it ran ------------------------------------------------- */

static atomic_int simple_runs;
static pthread_t simple_thread;
static atomic_int simple_wrong_thread;

static void simple_cb(tt_loop_t *loop, void *arg)
{
    (void)loop, (void)arg;
    if (!pthread_equal(pthread_self(), simple_thread))
        atomic_fetch_add(&simple_wrong_thread, 1);
    atomic_fetch_add(&simple_runs, 1);
}

static int post_once_ret = 1;

static void *post_once_main(void *arg)
{
    tt_loop_t *loop = arg;
    post_once_ret = tt_loop_post(loop, simple_cb, NULL);
    return NULL;
}

Test(thread_post, a_post_from_another_thread_keeps_the_loop_alive_until_it_ran)
{
    tt_loop_t *loop;
    pthread_t th;

    atomic_store(&simple_runs, 0);
    atomic_store(&simple_wrong_thread, 0);
    simple_thread = pthread_self();
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(pthread_create(&th, NULL, post_once_main, loop), 0);
    pthread_join(th, NULL);
    cr_assert_eq(post_once_ret, 0, "tt_loop_post returned %d", post_once_ret);
    /* Nothing else is open: the queued post alone is the work. */
    cr_assert_eq(atomic_load(&simple_runs), 0);
    uint64_t t0 = th_now_ms();
    int r = tt_loop_run(loop, TT_RUN_DEFAULT);
    cr_assert_eq(r, 0, "run returned %d", r);
    cr_assert_eq(atomic_load(&simple_runs), 1, "runs %d", atomic_load(&simple_runs));
    cr_assert_eq(atomic_load(&simple_wrong_thread), 0);
    cr_assert_lt(th_now_ms() - t0, 1000);
    /* Ran once: a second run has nothing to do. */
    cr_assert_eq(tt_loop_run(loop, TT_RUN_DEFAULT), 0);
    cr_assert_eq(atomic_load(&simple_runs), 1);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- stop from another thread ----------------------------------------------------- */

static int stop_later_ret = 1;

static void *stop_later_main(void *arg)
{
    tt_loop_t *loop = arg;
    sleep_ms(50); /* long enough for the loop to be asleep in epoll_wait */
    stop_later_ret = tt_loop_stop(loop);
    return NULL;
}

Test(thread_post, stop_from_another_thread_ends_a_run_blocked_on_a_long_timer)
{
    tt_loop_t *loop;
    pthread_t th;

    memset(&sink, 0, sizeof(sink));
    cr_assert_eq(tt_loop_init(&loop), 0);
    start_guard(loop, 10000); /* the long timer: it also bounds the test */
    uint64_t t0 = th_now_ms();
    cr_assert_eq(pthread_create(&th, NULL, stop_later_main, loop), 0);
    int r = tt_loop_run(loop, TT_RUN_DEFAULT);
    uint64_t took = th_now_ms() - t0;
    pthread_join(th, NULL);

    cr_assert_eq(stop_later_ret, 0);
    cr_assert(!sink.guard_fired, "the stop did not end the run; the 10 s timer did");
    cr_assert_eq(r, 1, "run returned %d with the timer still pending", r);
    cr_assert_lt(took, 5000, "run returned after %llu ms", U(took));
    cr_assert(tt_timer_is_active(sink.guard));
    cr_assert_eq(tt_timer_close(sink.guard), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- posts left at close ---------------------------------------------------------- */

static void must_not_run(tt_loop_t *loop, void *arg)
{
    (void)loop;
    atomic_fetch_add((atomic_int *)arg, 1);
}

typedef struct {
    tt_loop_t *loop;
    atomic_int *ran;
    int failures;
} dropper_t;

static void *post_many_main(void *arg)
{
    dropper_t *d = arg;
    for (int i = 0; i < 100; i++)
        if (tt_loop_post(d->loop, must_not_run, d->ran) != 0)
            d->failures++;
    return NULL;
}

Test(thread_post, posts_still_queued_at_close_are_dropped_uncalled)
{
    tt_loop_t *loop;
    pthread_t th[2];
    atomic_int ran;
    dropper_t d[2];

    atomic_store(&ran, 0);
    cr_assert_eq(tt_loop_init(&loop), 0);
    for (int i = 0; i < 2; i++) {
        d[i] = (dropper_t){.loop = loop, .ran = &ran};
        cr_assert_eq(pthread_create(&th[i], NULL, post_many_main, &d[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(tt_loop_post(loop, must_not_run, &ran), 0);
    cr_assert_eq(d[0].failures + d[1].failures, 0);
    /* Posts are not handles: close succeeds and frees them (LeakSanitizer checks). */
    cr_assert_eq(tt_loop_close(loop), 0);
    cr_assert_eq(atomic_load(&ran), 0, "%d dropped posts were called", atomic_load(&ran));
}
