/* Public timers on a real loop: timing bounds, repeats, stop/close/restart from
 * inside callbacks, ordering, zero and maximum timeouts. Time bounds are loose
 * upper limits (a loaded machine may be slow), never benchmarks. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define U(x) ((unsigned long long)(x))
#define SLACK_MS 200 /* how late a timer may be on a busy test machine */

/* Run in DEFAULT mode until no work is left; a guard thread stops the loop (stop is
 * thread-safe) and fails the test if that takes longer than `ms`. */
typedef struct {
    tt_loop_t *loop;
    uint64_t ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done, fired;
} guard_t;

static void *guard_main(void *arg)
{
    guard_t *g = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(g->ms / 1000);
    until.tv_nsec += (long)(g->ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&g->mu);
    while (!g->done)
        if (pthread_cond_timedwait(&g->cv, &g->mu, &until) == ETIMEDOUT)
            break;
    if (!g->done) {
        g->fired = true;
        tt_loop_stop(g->loop);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

static int run_bounded(tt_loop_t *loop, uint64_t ms)
{
    guard_t g = {.loop = loop, .ms = ms};
    pthread_t th;
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    cr_assert_eq(pthread_create(&th, NULL, guard_main, &g), 0);
    int r = tt_loop_run(loop, TT_RUN_DEFAULT);
    pthread_mutex_lock(&g.mu);
    g.done = true;
    pthread_cond_signal(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(th, NULL);
    pthread_mutex_destroy(&g.mu);
    pthread_cond_destroy(&g.cv);
    cr_assert(!g.fired, "loop still busy after %llu ms", U(ms));
    return r;
}

/* What a timer callback saw. */
typedef struct {
    tt_loop_t *loop;
    tt_timer_t *self;
    int fires;
    uint64_t at[16];        /* tt_loop_now() at each fire */
    bool active_in_cb[16];  /* tt_timer_is_active() inside the callback */
    int stop_at;            /* stop from inside the callback on this fire */
    int close_at;           /* close from inside the callback on this fire */
    int after_close[3];     /* start/stop/close results after closing in the callback */
    tt_timer_t *victim;     /* another timer to close from inside the callback */
    int *order;             /* shared fire order log */
    int *norder;
    int id;
} rec_t;

static void rec_cb(tt_timer_t *t, void *data)
{
    rec_t *r = data;
    cr_assert_eq(t, r->self, "callback got another timer");
    if (r->fires < 16) {
        r->at[r->fires] = tt_loop_now(r->loop);
        r->active_in_cb[r->fires] = tt_timer_is_active(t);
    }
    r->fires++;
    if (r->order != NULL)
        r->order[(*r->norder)++] = r->id;
    if (r->victim != NULL) {
        cr_assert_eq(tt_timer_close(r->victim), 0);
        r->victim = NULL;
    }
    if (r->fires == r->stop_at)
        cr_assert_eq(tt_timer_stop(t), 0);
    if (r->fires == r->close_at) {
        cr_assert_eq(tt_timer_close(t), 0);
        /* Still valid memory until the callback returns, but closed. */
        r->after_close[0] = tt_timer_start(t, 10, 0);
        r->after_close[1] = tt_timer_stop(t);
        r->after_close[2] = tt_timer_close(t);
    }
}

static tt_timer_t *new_timer(tt_loop_t *loop, rec_t *r)
{
    tt_timer_t *t;
    r->loop = loop;
    cr_assert_eq(tt_timer_init(loop, &t, rec_cb, r), 0);
    r->self = t;
    return t;
}

Test(timer, one_shot_fires_once_not_before_its_timeout)
{
    tt_loop_t *loop;
    rec_t r = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_timer_t *t = new_timer(loop, &r);
    tt_loop_update_time(loop);
    uint64_t start = tt_loop_now(loop), wall = th_now_ms();
    cr_assert_eq(tt_timer_start(t, 50, 0), 0);
    cr_assert(tt_timer_is_active(t));
    cr_assert_eq(run_bounded(loop, 5000), 0);
    uint64_t took = th_now_ms() - wall;

    cr_assert_eq(r.fires, 1, "fires %d", r.fires);
    cr_assert_geq(r.at[0] - start, 50, "fired after %llu ms", U(r.at[0] - start));
    cr_assert_leq(r.at[0] - start, 50 + SLACK_MS, "fired after %llu ms", U(r.at[0] - start));
    cr_assert_leq(took, 50 + SLACK_MS, "run took %llu ms", U(took));
    cr_assert(!r.active_in_cb[0], "a one-shot is inactive in its own callback");
    cr_assert(!tt_timer_is_active(t));
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(timer, repeat_fires_every_interval_until_stopped)
{
    tt_loop_t *loop;
    rec_t r = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_timer_t *t = new_timer(loop, &r);
    r.stop_at = 5;
    tt_loop_update_time(loop);
    uint64_t start = tt_loop_now(loop);
    cr_assert_eq(tt_timer_start(t, 20, 10), 0);
    cr_assert_eq(run_bounded(loop, 5000), 0);

    cr_assert_eq(r.fires, 5, "fires %d", r.fires);
    cr_assert_geq(r.at[0] - start, 20, "first after %llu ms", U(r.at[0] - start));
    for (int i = 1; i < 5; i++) {
        cr_assert_geq(r.at[i] - r.at[i - 1], 10, "fire %d came %llu ms after the last", i,
                      U(r.at[i] - r.at[i - 1]));
        cr_assert(r.active_in_cb[i], "a repeating timer is re-armed before its callback");
    }
    cr_assert_leq(r.at[4] - start, 60 + SLACK_MS, "five fires took %llu ms",
                  U(r.at[4] - start));
    cr_assert(!tt_timer_is_active(t));
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(timer, stop_inside_own_callback_ends_a_repeating_timer)
{
    tt_loop_t *loop;
    rec_t r = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_timer_t *t = new_timer(loop, &r);
    r.stop_at = 1;
    cr_assert_eq(tt_timer_start(t, 1, 1), 0);
    cr_assert_eq(run_bounded(loop, 2000), 0);
    cr_assert_eq(r.fires, 1, "fires %d", r.fires);
    cr_assert(!tt_timer_is_active(t));
    /* A stopped timer can be started again. */
    r.stop_at = 2;
    cr_assert_eq(tt_timer_start(t, 1, 1), 0);
    cr_assert_eq(run_bounded(loop, 2000), 0);
    cr_assert_eq(r.fires, 2, "fires %d", r.fires);
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(timer, close_inside_own_callback_releases_it_after_the_callback)
{
    tt_loop_t *loop;
    rec_t r = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_timer_t *t = new_timer(loop, &r);
    r.close_at = 2;
    cr_assert_eq(tt_timer_start(t, 1, 1), 0);
    cr_assert_eq(tt_loop_handle_count(loop), 1);
    cr_assert_eq(run_bounded(loop, 2000), 0);
    cr_assert_eq(r.fires, 2, "fires %d", r.fires);
    cr_assert_eq(r.after_close[0], -EINVAL, "start after close: %d", r.after_close[0]);
    cr_assert_eq(r.after_close[1], -EINVAL, "stop after close: %d", r.after_close[1]);
    cr_assert_eq(r.after_close[2], -EINVAL, "second close: %d", r.after_close[2]);
    cr_assert_eq(tt_loop_handle_count(loop), 0);
    cr_assert_eq(tt_loop_close(loop), 0); /* ASan: the timer was freed exactly once */
}

Test(timer, closing_another_timer_due_in_the_same_round_prevents_its_callback)
{
    tt_loop_t *loop;
    rec_t a = {0}, b = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_timer_t *ta = new_timer(loop, &a);
    tt_timer_t *tb = new_timer(loop, &b);
    a.victim = tb;
    /* Same base time and timeout: same slot, a first. */
    cr_assert_eq(tt_timer_start(ta, 5, 0), 0);
    cr_assert_eq(tt_timer_start(tb, 5, 0), 0);
    cr_assert_eq(run_bounded(loop, 2000), 0);
    cr_assert_eq(a.fires, 1);
    cr_assert_eq(b.fires, 0, "a closed timer fired %d times", b.fires);
    cr_assert_eq(tt_loop_handle_count(loop), 1);
    cr_assert_eq(tt_timer_close(ta), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

typedef struct {
    tt_timer_t *target;
} restarter_t;

static void restart_target(tt_timer_t *t, void *data)
{
    restarter_t *r = data;
    (void)t;
    cr_assert_eq(tt_timer_start(r->target, 50, 0), 0);
}

Test(timer, restart_moves_the_deadline_later)
{
    tt_loop_t *loop;
    rec_t r = {0};
    restarter_t rs = {0};
    tt_timer_t *kick;

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_timer_t *t = new_timer(loop, &r);
    rs.target = t;
    cr_assert_eq(tt_timer_init(loop, &kick, restart_target, &rs), 0);
    tt_loop_update_time(loop);
    uint64_t start = tt_loop_now(loop);
    cr_assert_eq(tt_timer_start(t, 50, 0), 0);
    cr_assert_eq(tt_timer_start(kick, 20, 0), 0); /* at 20 ms: restart t with 50 ms */
    cr_assert_eq(run_bounded(loop, 5000), 0);

    cr_assert_eq(r.fires, 1, "fires %d", r.fires);
    cr_assert_geq(r.at[0] - start, 70, "fired %llu ms after start; restart at 20 ms + 50",
                  U(r.at[0] - start));
    cr_assert_leq(r.at[0] - start, 70 + SLACK_MS, "fired %llu ms after start",
                  U(r.at[0] - start));
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_timer_close(kick), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(timer, timers_fire_in_timeout_order_whatever_the_start_order)
{
    static const uint64_t timeouts[] = {40, 10, 30, 1, 20};
    static const int want[] = {3, 1, 4, 2, 0}; /* indexes sorted by timeout */
    tt_loop_t *loop;
    rec_t r[5];
    tt_timer_t *t[5];
    int order[8], n = 0;

    cr_assert_eq(tt_loop_init(&loop), 0);
    for (int i = 0; i < 5; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        r[i].id = i;
        r[i].order = order;
        r[i].norder = &n;
        t[i] = new_timer(loop, &r[i]);
        cr_assert_eq(tt_timer_start(t[i], timeouts[i], 0), 0);
    }
    cr_assert_eq(run_bounded(loop, 5000), 0);
    cr_assert_eq(n, 5, "fired %d", n);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(order[i], want[i], "position %d: timer %d (timeout %llu), want %d", i,
                     order[i], U(timeouts[order[i]]), want[i]);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(tt_timer_close(t[i]), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(timer, zero_timeout_fires_on_the_next_round)
{
    tt_loop_t *loop;
    rec_t r = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_timer_t *t = new_timer(loop, &r);
    cr_assert_eq(tt_timer_start(t, 0, 0), 0);
    cr_assert_eq(r.fires, 0, "fired inside tt_timer_start");
    uint64_t wall = th_now_ms();
    int ret = tt_loop_run(loop, TT_RUN_ONCE);
    cr_assert_eq(r.fires, 1, "fires %d after one ONCE run", r.fires);
    cr_assert_eq(ret, 0);
    cr_assert_lt(th_now_ms() - wall, 100);
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(timer, timeout_above_max_is_einval_and_changes_nothing)
{
    tt_loop_t *loop;
    rec_t r = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_timer_t *t = new_timer(loop, &r);
    cr_assert_eq(tt_timer_start(t, TT_TIMEOUT_MAX + 1, 0), -EINVAL);
    cr_assert_eq(tt_timer_start(t, UINT64_MAX, 0), -EINVAL);
    cr_assert_eq(tt_timer_start(t, 10, TT_TIMEOUT_MAX + 1), -EINVAL);
    cr_assert(!tt_timer_is_active(t));
    cr_assert_eq(tt_timer_start(t, TT_TIMEOUT_MAX, TT_TIMEOUT_MAX), 0);
    cr_assert(tt_timer_is_active(t));
    /* A refused restart leaves the running timer as it was. */
    cr_assert_eq(tt_timer_start(t, TT_TIMEOUT_MAX + 1, 0), -EINVAL);
    cr_assert(tt_timer_is_active(t));
    cr_assert_eq(tt_loop_run(loop, TT_RUN_NOWAIT), 1);
    cr_assert_eq(r.fires, 0);
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(timer, active_flag_and_user_data)
{
    tt_loop_t *loop;
    rec_t r = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_timer_t *t = new_timer(loop, &r);
    cr_assert_eq(tt_timer_get_data(t), &r);
    cr_assert(!tt_timer_is_active(t));
    cr_assert_eq(tt_timer_start(t, 1000, 0), 0);
    cr_assert(tt_timer_is_active(t));
    cr_assert_eq(tt_timer_stop(t), 0);
    cr_assert(!tt_timer_is_active(t));
    cr_assert_eq(tt_timer_stop(t), 0); /* stopping a stopped timer is fine */
    cr_assert(!tt_timer_is_active(NULL));
    cr_assert_null(tt_timer_get_data(NULL));
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(timer, argument_checks_return_einval_and_open_nothing)
{
    tt_loop_t *loop;
    tt_timer_t *t = NULL;
    int x;

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_timer_init(NULL, &t, rec_cb, &x), -EINVAL);
    cr_assert_eq(tt_timer_init(loop, NULL, rec_cb, &x), -EINVAL);
    cr_assert_eq(tt_timer_init(loop, &t, NULL, &x), -EINVAL);
    cr_assert_null(t);
    cr_assert_eq(tt_loop_handle_count(loop), 0);
    cr_assert_eq(tt_timer_start(NULL, 1, 0), -EINVAL);
    cr_assert_eq(tt_timer_stop(NULL), -EINVAL);
    cr_assert_eq(tt_timer_close(NULL), -EINVAL);
    cr_assert_eq(tt_loop_close(loop), 0);
}
