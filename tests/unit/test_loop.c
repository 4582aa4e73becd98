/* The event loop on its own: lifetime, run modes, stop (from a callback, from a
 * signal handler), re-entrancy and argument checks. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "harness.h"

#define U(x) ((unsigned long long)(x))

/* A watchdog thread: if the loop is still blocked after `ms`, it stops it (stop is
 * thread-safe), so a test of "returns at once" fails instead of hanging. */
typedef struct {
    tt_loop_t *loop;
    uint64_t ms;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    bool fired;
} watchdog_t;

static void *watchdog_main(void *arg)
{
    watchdog_t *w = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(w->ms / 1000);
    until.tv_nsec += (long)(w->ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT)
            break;
    if (!w->done) {
        w->fired = true;
        tt_loop_stop(w->loop);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void watchdog_start(watchdog_t *w, tt_loop_t *loop, uint64_t ms)
{
    memset(w, 0, sizeof(*w));
    w->loop = loop;
    w->ms = ms;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    cr_assert_eq(pthread_create(&w->th, NULL, watchdog_main, w), 0);
}

/* Returns true if the watchdog had to stop the loop. */
static bool watchdog_end(watchdog_t *w)
{
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    return w->fired;
}

/* Run in DEFAULT mode until no work is left, failing if that takes over `ms`. */
static int run_bounded(tt_loop_t *loop, uint64_t ms)
{
    watchdog_t w;
    watchdog_start(&w, loop, ms);
    int r = tt_loop_run(loop, TT_RUN_DEFAULT);
    cr_assert(!watchdog_end(&w), "loop still busy after %llu ms", U(ms));
    return r;
}

static void count_timer(tt_timer_t *t, void *data)
{
    (void)t;
    (*(int *)data)++;
}

static void noop_post(tt_loop_t *loop, void *arg) { (void)loop, (void)arg; }

Test(loop, init_and_close_with_nothing_open)
{
    tt_loop_t *loop = NULL;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_not_null(loop);
    cr_assert_eq(tt_loop_handle_count(loop), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(loop, argument_checks_return_einval)
{
    tt_loop_t *loop;
    cr_assert_eq(tt_loop_init(NULL), -EINVAL);
    cr_assert_eq(tt_loop_close(NULL), -EINVAL);
    cr_assert_eq(tt_loop_run(NULL, TT_RUN_DEFAULT), -EINVAL);
    cr_assert_eq(tt_loop_stop(NULL), -EINVAL);
    cr_assert_eq(tt_loop_now(NULL), 0);
    cr_assert_eq(tt_loop_handle_count(NULL), 0);
    tt_loop_update_time(NULL); /* ignored, must not crash */

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_loop_run(loop, (tt_run_mode_t)3), -EINVAL);
    cr_assert_eq(tt_loop_run(loop, (tt_run_mode_t)99), -EINVAL);
    cr_assert_eq(tt_loop_post(NULL, noop_post, NULL), -EINVAL);
    cr_assert_eq(tt_loop_post(loop, NULL, NULL), -EINVAL);
    /* The rejected calls changed nothing: the loop still runs and closes. */
    cr_assert_eq(tt_loop_run(loop, TT_RUN_DEFAULT), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(loop, close_is_ebusy_while_a_timer_is_open_even_if_stopped)
{
    tt_loop_t *loop;
    tt_timer_t *t;
    int fired = 0;

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_timer_init(loop, &t, count_timer, &fired), 0);
    cr_assert_eq(tt_loop_handle_count(loop), 1);
    cr_assert_eq(tt_loop_close(loop), -EBUSY);
    cr_assert_eq(tt_timer_start(t, 10000, 0), 0);
    cr_assert_eq(tt_loop_close(loop), -EBUSY);
    cr_assert_eq(tt_timer_stop(t), 0);
    cr_assert_eq(tt_loop_close(loop), -EBUSY);
    /* The refused close freed nothing: the loop still works. */
    cr_assert_eq(tt_loop_run(loop, TT_RUN_NOWAIT), 0);
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_handle_count(loop), 0);
    cr_assert_eq(fired, 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(loop, close_is_ebusy_while_a_server_is_open)
{
    tt_loop_t *loop;
    tt_server_t *srv;
    tt_addr_t addr;
    tt_conn_handlers_t h = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_addr_parse(&addr, "127.0.0.1", 0), 0);
    cr_assert_eq(tt_server_listen(loop, &addr, NULL, &h, NULL, &srv), 0);
    cr_assert_eq(tt_loop_close(loop), -EBUSY);
    cr_assert_eq(tt_loop_run(loop, TT_RUN_NOWAIT), 1, "an open server is work");
    cr_assert_eq(tt_server_close(srv), 0);
    cr_assert_eq(tt_loop_run(loop, TT_RUN_NOWAIT), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

static void check_returns_at_once(tt_run_mode_t mode)
{
    tt_loop_t *loop;
    watchdog_t w;

    cr_assert_eq(tt_loop_init(&loop), 0);
    watchdog_start(&w, loop, 2000);
    uint64_t t0 = th_now_ms();
    int r = tt_loop_run(loop, mode);
    uint64_t took = th_now_ms() - t0;
    bool stuck = watchdog_end(&w);
    cr_assert(!stuck, "mode %d blocked with nothing to do until the watchdog stopped it", mode);
    cr_assert_eq(r, 0, "mode %d returned %d", mode, r);
    cr_assert_lt(took, 100, "mode %d took %llu ms", mode, U(took));
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(loop, run_default_with_nothing_to_do_returns_0_at_once)
{
    check_returns_at_once(TT_RUN_DEFAULT);
}

Test(loop, run_once_with_nothing_to_do_returns_0_at_once)
{
    check_returns_at_once(TT_RUN_ONCE);
}

Test(loop, run_nowait_with_nothing_to_do_returns_0_at_once)
{
    check_returns_at_once(TT_RUN_NOWAIT);
}

Test(loop, run_nowait_never_blocks_on_a_pending_timer)
{
    tt_loop_t *loop;
    tt_timer_t *t;
    int fired = 0;

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_timer_init(loop, &t, count_timer, &fired), 0);
    cr_assert_eq(tt_timer_start(t, 10000, 0), 0);
    uint64_t t0 = th_now_ms();
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tt_loop_run(loop, TT_RUN_NOWAIT), 1, "pending timer is work");
    uint64_t took = th_now_ms() - t0;
    cr_assert_lt(took, 100, "three NOWAIT runs took %llu ms", U(took));
    cr_assert_eq(fired, 0);
    cr_assert(tt_timer_is_active(t));
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(loop, run_once_waits_for_the_next_timer_without_firing_later_ones)
{
    tt_loop_t *loop;
    tt_timer_t *soon, *late;
    int fired_soon = 0, fired_late = 0, rounds = 0, r;

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_timer_init(loop, &soon, count_timer, &fired_soon), 0);
    cr_assert_eq(tt_timer_init(loop, &late, count_timer, &fired_late), 0);
    tt_loop_update_time(loop);
    uint64_t start = tt_loop_now(loop);
    cr_assert_eq(tt_timer_start(soon, 30, 0), 0);
    cr_assert_eq(tt_timer_start(late, 10000, 0), 0);
    /* One ONCE run waits once; the wheel may wake it early at a cascade point (a
     * round with no event), so allow a couple of rounds but never a busy spin. */
    do {
        r = tt_loop_run(loop, TT_RUN_ONCE);
        rounds++;
    } while (fired_soon == 0 && rounds < 4);
    cr_assert_eq(fired_soon, 1, "after %d ONCE runs", rounds);
    cr_assert_eq(r, 1, "the late timer is still work");
    cr_assert_leq(rounds, 3, "%d ONCE runs to reach a 30 ms timer", rounds);
    cr_assert_geq(tt_loop_now(loop) - start, 30, "fired after %llu ms",
                  U(tt_loop_now(loop) - start));
    cr_assert_eq(fired_late, 0);
    cr_assert_eq(tt_timer_close(soon), 0);
    cr_assert_eq(tt_timer_close(late), 0);
    cr_assert_eq(tt_loop_run(loop, TT_RUN_ONCE), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- re-entrancy ----------------------------------------------------------------- */

typedef struct {
    tt_loop_t *loop;
    int calls;
    int run_ret, close_ret;
} reenter_t;

static void reenter_cb(tt_timer_t *t, void *data)
{
    reenter_t *r = data;
    (void)t;
    r->calls++;
    r->run_ret = tt_loop_run(r->loop, TT_RUN_DEFAULT);
    r->close_ret = tt_loop_close(r->loop);
}

Test(loop, run_or_close_from_inside_a_callback_is_ebusy)
{
    tt_loop_t *loop;
    tt_timer_t *t;
    reenter_t r = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    r.loop = loop;
    cr_assert_eq(tt_timer_init(loop, &t, reenter_cb, &r), 0);
    cr_assert_eq(tt_timer_start(t, 1, 0), 0);
    cr_assert_eq(run_bounded(loop, 2000), 0);
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.run_ret, -EBUSY, "nested run returned %d", r.run_ret);
    cr_assert_eq(r.close_ret, -EBUSY, "close inside run returned %d", r.close_ret);
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- stop ----------------------------------------------------------------------- */

typedef struct {
    tt_loop_t *loop;
    int fires;
    int stop_at;
} stopper_t;

static void stop_after_n(tt_timer_t *t, void *data)
{
    stopper_t *s = data;
    (void)t;
    if (++s->fires == s->stop_at)
        cr_assert_eq(tt_loop_stop(s->loop), 0);
}

Test(loop, stop_from_a_callback_makes_run_return_1_with_work_left)
{
    tt_loop_t *loop;
    tt_timer_t *t;
    stopper_t s = {0};
    watchdog_t w;

    cr_assert_eq(tt_loop_init(&loop), 0);
    s.loop = loop;
    s.stop_at = 3;
    cr_assert_eq(tt_timer_init(loop, &t, stop_after_n, &s), 0);
    cr_assert_eq(tt_timer_start(t, 5, 5), 0);
    watchdog_start(&w, loop, 5000);
    int r = tt_loop_run(loop, TT_RUN_DEFAULT);
    cr_assert(!watchdog_end(&w), "the loop did not stop by itself");
    cr_assert_eq(r, 1, "run returned %d", r);
    cr_assert_eq(s.fires, 3, "fires %d", s.fires);
    cr_assert(tt_timer_is_active(t));

    /* The stop was consumed: the next run goes on until the work is done. */
    s.stop_at = 5;
    watchdog_start(&w, loop, 5000);
    r = tt_loop_run(loop, TT_RUN_DEFAULT);
    cr_assert(!watchdog_end(&w));
    cr_assert_eq(r, 1);
    cr_assert_eq(s.fires, 5, "fires %d", s.fires);
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_run(loop, TT_RUN_DEFAULT), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

static tt_loop_t *volatile signal_loop;
static volatile sig_atomic_t signal_count;

static void on_alarm(int sig)
{
    (void)sig;
    signal_count++;
    tt_loop_stop(signal_loop); /* documented async-signal-safe */
}

Test(loop, stop_from_a_signal_handler_ends_a_blocked_run)
{
    tt_loop_t *loop;
    tt_timer_t *t;
    int fired = 0;
    struct sigaction sa, old;
    struct itimerval it = {.it_value = {.tv_sec = 0, .tv_usec = 50000}};
    struct itimerval off = {0};
    watchdog_t w;

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_timer_init(loop, &t, count_timer, &fired), 0);
    cr_assert_eq(tt_timer_start(t, 10000, 0), 0);
    signal_loop = loop;
    signal_count = 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGALRM, &sa, &old), 0);

    watchdog_start(&w, loop, 3000);
    uint64_t t0 = th_now_ms();
    cr_assert_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
    int r = tt_loop_run(loop, TT_RUN_DEFAULT);
    uint64_t took = th_now_ms() - t0;
    bool stuck = watchdog_end(&w);
    setitimer(ITIMER_REAL, &off, NULL);
    sigaction(SIGALRM, &old, NULL);

    cr_assert(!stuck, "the signal did not stop the loop");
    cr_assert_eq(signal_count, 1, "signals %d", (int)signal_count);
    cr_assert_eq(r, 1, "run returned %d", r);
    cr_assert_geq(took, 40, "returned after %llu ms, before the signal", U(took));
    cr_assert_lt(took, 2000, "returned after %llu ms", U(took));
    cr_assert_eq(fired, 0);
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- posts and time -------------------------------------------------------------- */

typedef struct {
    int runs;
    int chain; /* posts still to make from inside a post */
} post_t;

static void post_cb(tt_loop_t *loop, void *arg)
{
    post_t *p = arg;
    p->runs++;
    if (p->chain > 0) {
        p->chain--;
        cr_assert_eq(tt_loop_post(loop, post_cb, p), 0);
    }
}

Test(loop, a_queued_post_is_work_and_posts_made_by_posts_run_in_the_same_run)
{
    tt_loop_t *loop;
    post_t p = {.runs = 0, .chain = 3};

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_loop_post(loop, post_cb, &p), 0);
    cr_assert_eq(p.runs, 0, "a post ran inside tt_loop_post");
    cr_assert_eq(run_bounded(loop, 2000), 0);
    cr_assert_eq(p.runs, 4, "runs %d", p.runs);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(loop, now_advances_with_update_time_and_with_rounds)
{
    tt_loop_t *loop;
    tt_timer_t *t;
    int fired = 0;
    struct timespec nap = {0, 20 * 1000000L};

    cr_assert_eq(tt_loop_init(&loop), 0);
    uint64_t a = tt_loop_now(loop);
    cr_assert_gt(a, 0);
    nanosleep(&nap, NULL);
    cr_assert_eq(tt_loop_now(loop), a, "the cached time moved by itself");
    tt_loop_update_time(loop);
    uint64_t b = tt_loop_now(loop);
    cr_assert(b - a >= 20 && b - a < 1000, "update_time moved %llu ms over a 20 ms nap",
              U(b - a));

    cr_assert_eq(tt_timer_init(loop, &t, count_timer, &fired), 0);
    cr_assert_eq(tt_timer_start(t, 30, 0), 0);
    cr_assert_eq(run_bounded(loop, 2000), 0);
    uint64_t c = tt_loop_now(loop);
    cr_assert(c - b >= 30 && c - b < 1000, "a 30 ms run moved the time %llu ms", U(c - b));
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}
