/* Signal watches: delivery on the loop's thread whoever the kernel interrupted,
 * several signals per watch, several watches and several loops per signal, the
 * disposition from before put back when the last watch goes, callbacks that close
 * watches. Each test runs in its own process (Criterion, or the TSan stand-in:
 * files named test_thread_* also run under ThreadSanitizer). */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* A handler that was there before tether: counts what reaches it. */
static atomic_int before_got[NSIG];
static void before_handler(int sig) { atomic_fetch_add(&before_got[sig], 1); }

static void install_before(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = before_handler;
    cr_assert_eq(sigaction(sig, &sa, NULL), 0);
}

static bool handler_is_before(int sig)
{
    struct sigaction sa;
    cr_assert_eq(sigaction(sig, NULL, &sa), 0);
    return sa.sa_handler == before_handler;
}

typedef struct got {
    int calls[NSIG];
    pthread_t thread;
    bool wrong_thread;
    tt_signal_t *close_other; /* closed by the first callback */
    bool close_self;
    tt_loop_t *stop; /* stopped by the callback */
} got_t;

static void on_signal(tt_signal_t *s, int sig, void *data)
{
    got_t *g = data;
    g->calls[sig]++;
    if (!pthread_equal(pthread_self(), g->thread))
        g->wrong_thread = true;
    if (g->close_other != NULL) {
        tt_signal_close(g->close_other);
        g->close_other = NULL;
    }
    if (g->close_self)
        tt_signal_close(s);
    if (g->stop != NULL)
        tt_loop_stop(g->stop);
}

/* Run until *count reaches `want` or 3 s pass. */
static void run_until(tt_loop_t *loop, int *count, int want)
{
    uint64_t end = th_now_ms() + 3000;
    while (*count < want && th_now_ms() < end)
        tt_loop_run(loop, TT_RUN_ONCE);
}

/* Give a signal sent to the process a moment to land, running the loop. */
static void settle(tt_loop_t *loop)
{
    for (int i = 0; i < 20; i++) {
        usleep(2000);
        tt_loop_run(loop, TT_RUN_NOWAIT);
    }
}

static void *kill_from_thread(void *arg)
{
    int sig = (int)(intptr_t)arg;
    usleep(50 * 1000);
    kill(getpid(), sig);
    return NULL;
}

Test(signal, delivered_on_the_loop_thread_whoever_was_interrupted)
{
    tt_loop_t *loop;
    tt_signal_t *s;
    got_t g = {.thread = pthread_self()};
    pthread_t th;

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_signal_init(loop, &s, on_signal, &g), 0);
    cr_assert_eq(tt_signal_get_data(s), &g);
    cr_assert_eq(tt_signal_start(s, SIGUSR1), 0);
    /* Another thread (it does not block the signal) sends it to the process. */
    cr_assert_eq(pthread_create(&th, NULL, kill_from_thread, (void *)(intptr_t)SIGUSR1), 0);
    run_until(loop, &g.calls[SIGUSR1], 1);
    pthread_join(th, NULL);
    cr_assert_eq(g.calls[SIGUSR1], 1);
    cr_assert(!g.wrong_thread, "the callback ran on another thread");
    cr_assert_eq(tt_signal_close(s), 0);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(signal, several_signals_on_one_watch_and_stopping_one)
{
    tt_loop_t *loop;
    tt_signal_t *s;
    got_t g = {.thread = pthread_self()};

    install_before(SIGUSR2);
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_signal_init(loop, &s, on_signal, &g), 0);
    cr_assert_eq(tt_signal_start(s, SIGUSR1), 0);
    cr_assert_eq(tt_signal_start(s, SIGUSR2), 0);
    cr_assert_eq(tt_signal_start(s, SIGUSR2), 0, "starting twice is harmless");
    cr_assert(!handler_is_before(SIGUSR2));
    raise(SIGUSR1);
    raise(SIGUSR2);
    settle(loop);
    cr_assert_eq(g.calls[SIGUSR1], 1);
    cr_assert_eq(g.calls[SIGUSR2], 1);
    cr_assert_eq(atomic_load(&before_got[SIGUSR2]), 0, "the old handler ran while watched");
    /* Stop one: it goes back to the handler it had. */
    cr_assert_eq(tt_signal_stop(s, SIGUSR2), 0);
    cr_assert(handler_is_before(SIGUSR2));
    raise(SIGUSR2);
    raise(SIGUSR1);
    settle(loop);
    cr_assert_eq(g.calls[SIGUSR2], 1, "delivered after stop");
    cr_assert_eq(atomic_load(&before_got[SIGUSR2]), 1);
    cr_assert_eq(g.calls[SIGUSR1], 2);
    cr_assert_eq(tt_signal_close(s), 0);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(signal, the_old_disposition_returns_when_the_last_watch_goes)
{
    tt_loop_t *loop;
    tt_signal_t *a, *b;
    got_t ga = {.thread = pthread_self()}, gb = {.thread = pthread_self()};

    install_before(SIGUSR1);
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_signal_init(loop, &a, on_signal, &ga), 0);
    cr_assert_eq(tt_signal_init(loop, &b, on_signal, &gb), 0);
    cr_assert_eq(tt_signal_start(a, SIGUSR1), 0);
    cr_assert_eq(tt_signal_start(b, SIGUSR1), 0);
    raise(SIGUSR1);
    settle(loop);
    cr_assert_eq(ga.calls[SIGUSR1], 1, "each watch gets it");
    cr_assert_eq(gb.calls[SIGUSR1], 1);
    cr_assert_eq(tt_signal_close(a), 0);
    cr_assert(!handler_is_before(SIGUSR1), "restored while a watch remains");
    raise(SIGUSR1);
    settle(loop);
    cr_assert_eq(gb.calls[SIGUSR1], 2);
    cr_assert_eq(atomic_load(&before_got[SIGUSR1]), 0);
    cr_assert_eq(tt_signal_close(b), 0);
    cr_assert(handler_is_before(SIGUSR1), "not restored after the last watch");
    raise(SIGUSR1);
    settle(loop);
    cr_assert_eq(atomic_load(&before_got[SIGUSR1]), 1);
    cr_assert_eq(gb.calls[SIGUSR1], 2);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- several loops, one per thread -------------------------------------------------- */

typedef struct worker {
    pthread_t th;
    tt_loop_t *loop;
    got_t g;
    atomic_bool ready;
} worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    tt_signal_t *s;

    w->g.thread = pthread_self();
    cr_assert_eq(tt_loop_init(&w->loop), 0);
    cr_assert_eq(tt_signal_init(w->loop, &s, on_signal, &w->g), 0);
    cr_assert_eq(tt_signal_start(s, SIGUSR1), 0);
    w->g.close_self = true; /* the first signal ends the watch, and so the run */
    atomic_store(&w->ready, true);
    th_run(w->loop, 5000);
    cr_assert_eq(tt_loop_close(w->loop), 0);
    return NULL;
}

Test(signal, every_loop_watching_a_signal_gets_it)
{
    worker_t w[3];

    install_before(SIGUSR1);
    memset(w, 0, sizeof(w));
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
    for (int i = 0; i < 3; i++)
        while (!atomic_load(&w[i].ready))
            usleep(1000);
    kill(getpid(), SIGUSR1);
    for (int i = 0; i < 3; i++)
        pthread_join(w[i].th, NULL);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(w[i].g.calls[SIGUSR1], 1, "loop %d got %d", i, w[i].g.calls[SIGUSR1]);
        cr_assert(!w[i].g.wrong_thread);
    }
    cr_assert(handler_is_before(SIGUSR1), "the last loop gone, tether's handler is still installed");
    cr_assert_eq(atomic_load(&before_got[SIGUSR1]), 0);
}

Test(signal, a_callback_may_close_watches)
{
    tt_loop_t *loop;
    tt_signal_t *a, *b;
    got_t ga = {.thread = pthread_self()}, gb = {.thread = pthread_self()};

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_signal_init(loop, &a, on_signal, &ga), 0);
    cr_assert_eq(tt_signal_init(loop, &b, on_signal, &gb), 0);
    cr_assert_eq(tt_signal_start(a, SIGUSR1), 0);
    cr_assert_eq(tt_signal_start(b, SIGUSR1), 0);
    /* Whichever is called first closes the other and itself. */
    ga.close_other = b, ga.close_self = true;
    gb.close_other = a, gb.close_self = true;
    raise(SIGUSR1);
    settle(loop);
    cr_assert_eq(ga.calls[SIGUSR1] + gb.calls[SIGUSR1], 1);
    cr_assert_eq(tt_loop_handle_count(loop), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(signal, a_watch_keeps_the_loop_running_unless_unreferenced)
{
    tt_loop_t *loop;
    tt_signal_t *s;
    got_t g = {.thread = pthread_self()};
    uint64_t t0;

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_signal_init(loop, &s, on_signal, &g), 0);
    cr_assert_eq(tt_loop_run(loop, TT_RUN_NOWAIT), 0, "watching nothing is no work");
    cr_assert_eq(tt_signal_start(s, SIGUSR1), 0);
    cr_assert_eq(tt_loop_run(loop, TT_RUN_NOWAIT), 1, "a watched signal is work");
    cr_assert_eq(tt_signal_set_ref(s, false), 0);
    t0 = th_now_ms();
    cr_assert_eq(tt_loop_run(loop, TT_RUN_DEFAULT), 0);
    cr_assert_lt(th_now_ms() - t0, 1000);
    cr_assert_eq(tt_signal_close(s), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(signal, arguments_are_checked)
{
    tt_loop_t *loop;
    tt_signal_t *s;
    got_t g = {0};
    const int refused[] = {0, -1, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, NSIG};

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_signal_init(NULL, &s, on_signal, &g), -EINVAL);
    cr_assert_eq(tt_signal_init(loop, NULL, on_signal, &g), -EINVAL);
    cr_assert_eq(tt_signal_init(loop, &s, NULL, &g), -EINVAL);
    cr_assert_eq(tt_signal_init(loop, &s, on_signal, &g), 0);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        cr_assert_eq(tt_signal_start(s, refused[i]), -EINVAL, "signal %d accepted", refused[i]);
    cr_assert_eq(tt_signal_start(NULL, SIGUSR1), -EINVAL);
    cr_assert_eq(tt_signal_stop(NULL, 0), -EINVAL);
    cr_assert_eq(tt_signal_stop(s, NSIG), -EINVAL);
    cr_assert_eq(tt_signal_stop(s, SIGUSR1), 0, "stopping what was never started is harmless");
    cr_assert_eq(tt_signal_close(s), 0);
    cr_assert_eq(tt_signal_close(NULL), -EINVAL);
    cr_assert_eq(tt_loop_close(loop), 0);
}
