/* The loop's clock seen from callbacks: after a quiet spell the time an I/O
 * callback reads is the time of its event, not of the moment the loop went to
 * sleep. Each case lets the loop block in its wait for longer than the timeout it
 * checks, with no timer to wake it (the harness's 5 ms guard would keep the clock
 * fresh and hide the defect), so each fails when the time is refreshed only after
 * the I/O callbacks. Also: a backend whose wait fails ends tt_loop_run with the
 * error instead of spinning. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* The peer: a plain blocking client on a thread. It connects after `connect_after`
 * ms (or at once), then sends each of `nsend` one-line messages `gap` ms apart, the
 * first `first_after` ms after connecting, reads the echo when asked, and closes. */
typedef struct script {
    tt_addr_t addr;
    uint64_t connect_after, first_after, gap;
    int nsend;
    bool read_echo;
    pthread_t th;
    int echoed; /* bytes read back */
} script_t;

static void sleep_ms(uint64_t ms) { usleep((useconds_t)(ms * 1000)); }

static void *script_main(void *arg)
{
    script_t *s = arg;
    sleep_ms(s->connect_after);
    int fd = th_tcp_connect_blocking(&s->addr);
    if (fd < 0)
        return NULL;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (int i = 0; i < s->nsend; i++) {
        sleep_ms(i == 0 ? s->first_after : s->gap);
        if (send(fd, "ping\n", 5, MSG_NOSIGNAL) != 5)
            break;
        if (s->read_echo) {
            char buf[16];
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            if (n <= 0)
                break;
            s->echoed += (int)n;
        }
    }
    close(fd);
    return NULL;
}

static void script_start(script_t *s) { cr_assert_eq(pthread_create(&s->th, NULL, script_main, s), 0); }

/* What the server side saw. */
static struct {
    tt_loop_t *loop;
    tt_server_t *srv;
    tt_timer_t *timer;
    uint64_t data_at, fired_at;
    uint64_t age_at_data;
    int datas, closes;
    uint64_t bytes_in;
    tt_close_kind_t kind;
    bool closed;
} S;

/* A long safety stop: it never fires in a passing run, so the loop truly sleeps. */
static void safety_cb(tt_timer_t *t, void *data)
{
    (void)t, (void)data;
    tt_loop_stop(S.loop);
}

static void stop_all(void)
{
    if (S.srv != NULL) {
        tt_server_close(S.srv);
        S.srv = NULL;
    }
    tt_loop_stop(S.loop);
}

static void on_data_echo(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)pending;
    S.datas++;
    S.bytes_in += n;
    tt_send(c, d, n);
}

/* The age the first read sees: the read comes in a later wake-up than the accept. */
static void on_data_age(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    tt_conn_stats_t st;
    if (S.datas == 0) {
        cr_assert_eq(tt_conn_get_stats(c, &st), 0);
        S.age_at_data = st.age_ms;
    }
    on_data_echo(c, d, n, pending);
}


static void on_close_rec(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    S.closes++;
    S.kind = info->kind;
    S.closed = true;
    stop_all();
}

static tt_timer_t *safety;

static void setup(void)
{
    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&S.loop), 0);
    cr_assert_eq(tt_timer_init(S.loop, &safety, safety_cb, NULL), 0);
    cr_assert_eq(tt_timer_start(safety, 15000, 0), 0);
}

static void teardown(void)
{
    tt_timer_close(safety);
    if (S.timer != NULL)
        tt_timer_close(S.timer);
    if (S.srv != NULL)
        tt_server_close(S.srv);
    for (int i = 0; i < 100 && tt_loop_run(S.loop, TT_RUN_NOWAIT) != 0; i++)
        ;
    cr_assert_eq(tt_loop_close(S.loop), 0);
}

static void listen_on(const tt_conn_handlers_t *h, const tt_server_opts_t *o, script_t *s)
{
    tt_addr_t a = th_loopback(0);
    cr_assert_eq(tt_server_listen(S.loop, &a, o, h, NULL, &S.srv), 0);
    cr_assert_eq(tt_server_addr(S.srv, &s->addr), 0);
}

TestSuite(loop_clock, .init = setup, .fini = teardown, .timeout = 60);

/* ---- a timer started in on_data counts from the data's arrival ------------------ */

static void timer_fired(tt_timer_t *t, void *data)
{
    (void)t, (void)data;
    S.fired_at = th_now_ms();
    stop_all();
}

static void on_data_start_timer(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)c, (void)d, (void)n, (void)pending;
    if (S.datas++ > 0)
        return;
    S.data_at = th_now_ms();
    cr_assert_eq(tt_timer_init(S.loop, &S.timer, timer_fired, NULL), 0);
    cr_assert_eq(tt_timer_start(S.timer, 1000, 0), 0);
}

Test(loop_clock, timer_started_in_on_data_after_quiet_waits_its_timeout)
{
    tt_conn_handlers_t h = {.on_data = on_data_start_timer};
    /* Connected at once, then 1.5 s of silence: the loop sleeps in its wait. */
    script_t s = {.first_after = 1500, .nsend = 1};
    listen_on(&h, NULL, &s);
    script_start(&s);
    tt_loop_run(S.loop, TT_RUN_DEFAULT);
    pthread_join(s.th, NULL);
    cr_assert_gt(S.data_at, 0, "no data arrived");
    cr_assert_gt(S.fired_at, 0, "the timer never fired");
    uint64_t waited = S.fired_at - S.data_at;
    /* The wheel counts whole milliseconds: allow one tick early, never more. */
    cr_assert_geq(waited, 999, "a 1000 ms timer fired after %llu ms", (unsigned long long)waited);
    cr_assert_lt(waited, 5000, "fired after %llu ms", (unsigned long long)waited);
}

/* ---- a server idle longer than its idle timeout keeps its first client ---------- */

Test(loop_clock, idle_server_does_not_close_its_first_client)
{
    tt_liveness_opts_t lv = {.idle_read_ms = 1000};
    tt_server_opts_t o = {.liveness = &lv};
    tt_conn_handlers_t h = {.on_data = on_data_echo, .on_close = on_close_rec};
    /* Nobody for 1.5 s (longer than the idle timeout), then a client that sends
     * after 300 ms and reads the echo. */
    script_t s = {.connect_after = 1500, .first_after = 300, .nsend = 1, .read_echo = true};
    listen_on(&h, &o, &s);
    script_start(&s);
    tt_loop_run(S.loop, TT_RUN_DEFAULT);
    pthread_join(s.th, NULL);
    cr_assert_eq(S.bytes_in, 5, "the server got %llu of 5 bytes (closed as %s)",
                 (unsigned long long)S.bytes_in, tt_close_kind_name(S.kind));
    cr_assert_eq(s.echoed, 5);
    cr_assert(S.closed);
    cr_assert_eq(S.kind, TT_CLOSE_PEER_CLOSED, "closed as %s", tt_close_kind_name(S.kind));
}

/* ---- each read stamps its own time ---------------------------------------------- */

Test(loop_clock, a_client_speaking_inside_the_idle_time_is_kept)
{
    tt_liveness_opts_t lv = {.idle_read_ms = 1000};
    tt_server_opts_t o = {.liveness = &lv};
    tt_conn_handlers_t h = {.on_data = on_data_echo, .on_close = on_close_rec};
    /* A line every 700 ms under a 1000 ms read-idle rule, five times. Stamped with
     * the previous wake-up's time, each read would leave only 300 ms. */
    script_t s = {.first_after = 700, .gap = 700, .nsend = 5, .read_echo = true};
    listen_on(&h, &o, &s);
    script_start(&s);
    tt_loop_run(S.loop, TT_RUN_DEFAULT);
    pthread_join(s.th, NULL);
    cr_assert_eq(S.bytes_in, 25, "the server got %llu of 25 bytes (closed as %s)",
                 (unsigned long long)S.bytes_in, tt_close_kind_name(S.kind));
    cr_assert_eq(S.kind, TT_CLOSE_PEER_CLOSED, "closed as %s", tt_close_kind_name(S.kind));
}

/* ---- a connection's age starts at its accept ------------------------------------ */

Test(loop_clock, age_of_a_new_connection_counts_from_its_accept)
{
    tt_conn_handlers_t h = {.on_data = on_data_age, .on_close = on_close_rec};
    /* Nobody for 1.5 s, then a client that speaks 300 ms after connecting: its
     * age then is about 300 ms, whatever the loop did before it came. */
    script_t s = {.connect_after = 1500, .first_after = 300, .nsend = 1, .read_echo = true};
    listen_on(&h, NULL, &s);
    script_start(&s);
    tt_loop_run(S.loop, TT_RUN_DEFAULT);
    pthread_join(s.th, NULL);
    cr_assert(S.closed);
    cr_assert_lt(S.age_at_data, 1000, "a connection accepted 300 ms ago is %llu ms old",
                 (unsigned long long)S.age_at_data);
    cr_assert_geq(S.age_at_data, 250, "age %llu ms", (unsigned long long)S.age_at_data);
}

/* ---- a failing backend ends the run ---------------------------------------------- */

/* The descriptor of this process's epoll instance or io_uring ring, or -1. */
static int backend_fd(const char *backend)
{
    const char *want = strcmp(backend, "io_uring") == 0 ? "anon_inode:[io_uring]"
                                                         : "anon_inode:[eventpoll]";
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int found = -1;

    cr_assert_not_null(d);
    while ((e = readdir(d)) != NULL) {
        char path[300], target[64];
        ssize_t n;
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = 0;
        if (strcmp(target, want) == 0)
            found = atoi(e->d_name);
    }
    closedir(d);
    return found;
}

static void keep_busy(tt_timer_t *t, void *data)
{
    int *fired = data;
    (void)t;
    (*fired)++;
}

Test(loop_backend, a_failing_backend_wait_ends_the_run_with_its_error, .timeout = 30)
{
    tt_loop_t *loop;
    tt_timer_t *t;
    int fired = 0, fd, devnull, r;

    cr_assert_eq(tt_loop_init(&loop), 0);
    fd = backend_fd(tt_loop_backend(loop));
    cr_assert_geq(fd, 0, "no %s descriptor found", tt_loop_backend(loop));
    cr_assert_eq(tt_timer_init(loop, &t, keep_busy, &fired), 0);
    cr_assert_eq(tt_timer_start(t, 10, 10), 0);
    /* Put a file that is no epoll instance or ring where the backend's was. */
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    cr_assert_geq(devnull, 0);
    cr_assert_eq(dup2(devnull, fd), fd);
    close(devnull);
    r = tt_loop_run(loop, TT_RUN_DEFAULT);
    cr_assert_lt(r, 0, "tt_loop_run returned %d with a broken backend", r);
    cr_assert_leq(fired, 2, "the loop went on %d rounds after its backend broke", fired);
    /* The handles are intact: the timer closes and the loop frees. */
    cr_assert_eq(tt_timer_close(t), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}
