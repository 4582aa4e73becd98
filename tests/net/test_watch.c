/* Watches of descriptors tether did not make (pipes, socketpairs, plain sockets),
 * and a tether loop driven from another loop through its backend descriptor.
 * Every case runs on the backend the environment picks (make test runs both). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static tt_loop_t *loop;

static void setup(void) { cr_assert_eq(tt_loop_init(&loop), 0); }

static void teardown(void)
{
    for (int i = 0; i < 100 && tt_loop_run(loop, TT_RUN_NOWAIT) != 0; i++)
        ;
    cr_assert_eq(tt_loop_close(loop), 0, "handles left: %zu", tt_loop_handle_count(loop));
}

TestSuite(watch, .init = setup, .fini = teardown, .timeout = 30);

typedef struct rec {
    int calls;
    unsigned last, seen; /* the last events, and every bit seen */
    int fd;
    /* what the callback does */
    bool drain;          /* read what is there */
    bool close_self;     /* tt_watch_close(w) */
    tt_watch_t *close_other;
    unsigned switch_to;  /* tt_watch_start(w, switch_to) on the first call */
    int stop_after;      /* tt_watch_stop after this many calls (0: never) */
} rec_t;

static void rec_cb(tt_watch_t *w, int fd, unsigned events, void *data)
{
    rec_t *r = data;
    r->calls++;
    r->last = events;
    r->seen |= events;
    r->fd = fd;
    if (r->drain) {
        char buf[256];
        while (read(fd, buf, sizeof(buf)) > 0)
            ;
    }
    if (r->switch_to != 0 && r->calls == 1)
        cr_assert_eq(tt_watch_start(w, r->switch_to), 0);
    if (r->close_other != NULL) {
        cr_assert_eq(tt_watch_close(r->close_other), 0);
        r->close_other = NULL;
    }
    if (r->stop_after > 0 && r->calls >= r->stop_after)
        cr_assert_eq(tt_watch_stop(w), 0);
    if (r->close_self)
        cr_assert_eq(tt_watch_close(w), 0);
}

static void run_rounds(int n)
{
    for (int i = 0; i < n; i++)
        tt_loop_run(loop, TT_RUN_NOWAIT);
}

static void make_pipe(int p[2]) { cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0); }

Test(watch, readable_is_level_triggered_until_read)
{
    int p[2];
    tt_watch_t *w;
    rec_t r = {0};

    make_pipe(p);
    cr_assert_eq(tt_watch_init(loop, &w, p[0], rec_cb, &r), 0);
    cr_assert_eq(tt_watch_fd(w), p[0]);
    cr_assert_eq(tt_watch_get_data(w), &r);
    cr_assert_eq(tt_watch_start(w, TT_WATCH_READ), 0);
    run_rounds(3);
    cr_assert_eq(r.calls, 0, "nothing to read, yet %d calls", r.calls);
    cr_assert_eq(write(p[1], "x", 1), 1);
    run_rounds(3);
    /* Not read: it stays readable, so it is reported round after round. */
    cr_assert_geq(r.calls, 2, "level-triggered: %d calls in 3 rounds", r.calls);
    cr_assert_eq(r.last, TT_WATCH_READ);
    cr_assert_eq(r.fd, p[0]);
    r.drain = true;
    run_rounds(2);
    int after_drain = r.calls;
    run_rounds(3);
    cr_assert_eq(r.calls, after_drain, "reported again after it was read");
    /* The descriptor is still the caller's and still open. */
    cr_assert_eq(write(p[1], "y", 1), 1);
    char c;
    cr_assert_eq(read(p[0], &c, 1), 1);
    cr_assert_eq(tt_watch_close(w), 0);
    close(p[0]);
    close(p[1]);
}

Test(watch, an_eventfd_wakes_a_blocking_run)
{
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    tt_watch_t *w;
    rec_t r = {.drain = true, .close_self = true};
    uint64_t one = 1;

    cr_assert_geq(efd, 0);
    cr_assert_eq(tt_watch_init(loop, &w, efd, rec_cb, &r), 0);
    cr_assert_eq(tt_watch_start(w, TT_WATCH_READ), 0);
    cr_assert_eq(write(efd, &one, sizeof(one)), (ssize_t)sizeof(one));
    /* A blocking run returns once the watch closed itself: nothing else is open. */
    cr_assert_eq(tt_loop_run(loop, TT_RUN_DEFAULT), 0);
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.last, TT_WATCH_READ);
    close(efd);
}

Test(watch, interest_changes_inside_the_callback)
{
    int sv[2];
    tt_watch_t *w;
    rec_t r = {.switch_to = TT_WATCH_READ, .drain = true};

    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(tt_watch_init(loop, &w, sv[0], rec_cb, &r), 0);
    cr_assert_eq(tt_watch_start(w, TT_WATCH_WRITE), 0);
    run_rounds(3);
    /* Writable at once; the first call switched to read, and nothing came. */
    cr_assert_eq(r.calls, 1, "%d calls", r.calls);
    cr_assert_eq(r.last, TT_WATCH_WRITE);
    cr_assert_eq(send(sv[1], "hi", 2, 0), 2);
    run_rounds(3);
    cr_assert_eq(r.calls, 2, "%d calls", r.calls);
    cr_assert_eq(r.last, TT_WATCH_READ);
    /* Both at once. */
    cr_assert_eq(tt_watch_start(w, TT_WATCH_READ | TT_WATCH_WRITE), 0);
    cr_assert_eq(send(sv[1], "hi", 2, 0), 2);
    run_rounds(1);
    cr_assert_eq(r.last, TT_WATCH_READ | TT_WATCH_WRITE, "events %#x", r.last);
    cr_assert_eq(tt_watch_close(w), 0);
    close(sv[0]);
    close(sv[1]);
}

Test(watch, hangup_is_reported_with_the_interest_asked)
{
    int p[2], q[2];
    tt_watch_t *wr, *we;
    rec_t rr = {.stop_after = 1}, re = {.stop_after = 1};

    make_pipe(p);
    make_pipe(q);
    cr_assert_eq(tt_watch_init(loop, &wr, p[0], rec_cb, &rr), 0);
    cr_assert_eq(tt_watch_init(loop, &we, q[0], rec_cb, &re), 0);
    cr_assert_eq(tt_watch_start(wr, TT_WATCH_READ), 0);
    cr_assert_eq(tt_watch_start(we, TT_WATCH_ERROR), 0); /* only the hang-up */
    run_rounds(2);
    cr_assert_eq(rr.calls + re.calls, 0);
    close(p[1]); /* the writers go away */
    close(q[1]);
    run_rounds(2);
    cr_assert_eq(rr.calls, 1);
    cr_assert_eq(rr.last, TT_WATCH_READ | TT_WATCH_ERROR, "events %#x", rr.last);
    cr_assert_eq(re.calls, 1);
    cr_assert_eq(re.last, TT_WATCH_ERROR, "events %#x", re.last);
    char c;
    cr_assert_eq(read(p[0], &c, 1), 0, "the read tells: end of file");
    tt_watch_close(wr);
    tt_watch_close(we);
    close(p[0]);
    close(q[0]);
}

Test(watch, close_from_callbacks_own_and_other)
{
    int p[2], q[2];
    tt_watch_t *a, *b;
    rec_t ra = {0}, rb = {0};

    make_pipe(p);
    make_pipe(q);
    cr_assert_eq(tt_watch_init(loop, &a, p[0], rec_cb, &ra), 0);
    cr_assert_eq(tt_watch_init(loop, &b, q[0], rec_cb, &rb), 0);
    /* Whichever comes first in the round closes the other, then itself. */
    ra.close_other = b, ra.close_self = true;
    rb.close_other = a, rb.close_self = true;
    cr_assert_eq(tt_watch_start(a, TT_WATCH_READ), 0);
    cr_assert_eq(tt_watch_start(b, TT_WATCH_READ), 0);
    cr_assert_eq(write(p[1], "x", 1), 1);
    cr_assert_eq(write(q[1], "x", 1), 1);
    /* Both are ready in the same round: exactly one callback runs. */
    run_rounds(3);
    cr_assert_eq(ra.calls + rb.calls, 1, "a %d, b %d", ra.calls, rb.calls);
    cr_assert_eq(tt_loop_handle_count(loop), 0);
    for (int i = 0; i < 2; i++)
        close(p[i]), close(q[i]);
}

Test(watch, one_watch_per_descriptor)
{
    int p[2];
    tt_watch_t *a, *b;
    rec_t r = {0};

    make_pipe(p);
    cr_assert_eq(tt_watch_init(loop, &a, p[0], rec_cb, &r), 0);
    cr_assert_eq(tt_watch_init(loop, &b, p[0], rec_cb, &r), 0);
    cr_assert_eq(tt_watch_start(a, TT_WATCH_READ), 0);
    cr_assert_eq(tt_watch_start(b, TT_WATCH_READ), -EEXIST);
    /* Once the first is stopped, the second may take the descriptor. */
    cr_assert_eq(tt_watch_stop(a), 0);
    cr_assert_eq(tt_watch_start(b, TT_WATCH_READ), 0);
    cr_assert_eq(write(p[1], "x", 1), 1);
    r.drain = true;
    run_rounds(2);
    cr_assert_eq(r.calls, 1);
    tt_watch_close(a);
    tt_watch_close(b);
    close(p[0]);
    close(p[1]);
}

static tt_conn_t *accepted;
static void on_open_keep(tt_conn_t *c) { accepted = c; }

Test(watch, a_descriptor_tether_owns_is_refused)
{
    tt_conn_handlers_t h = {.on_open = on_open_keep};
    tt_server_t *srv;
    tt_addr_t addr;
    tt_watch_t *w;
    rec_t r = {0};
    int fd;

    srv = th_listen(loop, &h, NULL, &addr);
    fd = th_tcp_connect_blocking(&addr);
    cr_assert_geq(fd, 0);
    for (int i = 0; i < 200 && accepted == NULL; i++)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_assert_not_null(accepted);
    cr_assert_eq(tt_watch_init(loop, &w, tt_conn_fd(accepted), rec_cb, &r), 0);
    cr_assert_eq(tt_watch_start(w, TT_WATCH_READ), -EEXIST);
    tt_watch_close(w);
    tt_destroy(accepted, 0);
    tt_server_close(srv);
    close(fd);
}

Test(watch, arguments_are_checked)
{
    tt_watch_t *w;
    rec_t r = {0};
    int p[2], dir;
    char path[] = "/tmp/tether-watch-XXXXXX";
    int file = mkstemp(path);

    cr_assert_geq(file, 0);
    unlink(path);
    make_pipe(p);
    cr_assert_eq(tt_watch_init(NULL, &w, p[0], rec_cb, &r), -EINVAL);
    cr_assert_eq(tt_watch_init(loop, NULL, p[0], rec_cb, &r), -EINVAL);
    cr_assert_eq(tt_watch_init(loop, &w, p[0], NULL, &r), -EINVAL);
    cr_assert_eq(tt_watch_init(loop, &w, -1, rec_cb, &r), -EINVAL);
    cr_assert_eq(tt_watch_init(loop, &w, file, rec_cb, &r), -EPERM);
    dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_eq(tt_watch_init(loop, &w, dir, rec_cb, &r), -EPERM);
    close(dir);
    close(file);
    cr_assert_eq(tt_watch_init(loop, &w, file, rec_cb, &r), -EBADF); /* closed now */
    cr_assert_eq(tt_loop_handle_count(loop), 0, "a refused init made a handle");
    cr_assert_eq(tt_watch_init(loop, &w, p[0], rec_cb, &r), 0);
    cr_assert_eq(tt_watch_start(w, 0x80), -EINVAL);
    cr_assert_eq(tt_watch_start(NULL, TT_WATCH_READ), -EINVAL);
    cr_assert_eq(tt_watch_stop(NULL), -EINVAL);
    cr_assert_eq(tt_watch_set_ref(NULL, true), -EINVAL);
    cr_assert_eq(tt_watch_close(w), 0);
    cr_assert_eq(tt_watch_fd(NULL), -EINVAL);
    close(p[0]);
    close(p[1]);
}

Test(watch, an_active_watch_keeps_the_loop_running_unless_unreferenced)
{
    int p[2];
    tt_watch_t *w;
    rec_t r = {0};

    make_pipe(p);
    cr_assert_eq(tt_watch_init(loop, &w, p[0], rec_cb, &r), 0);
    cr_assert_eq(tt_watch_start(w, TT_WATCH_READ), 0);
    cr_assert_eq(tt_loop_run(loop, TT_RUN_NOWAIT), 1, "an active watch is work");
    cr_assert_eq(tt_watch_set_ref(w, false), 0);
    /* Would block forever if the watch still counted: it returns at once. */
    uint64_t t0 = th_now_ms();
    cr_assert_eq(tt_loop_run(loop, TT_RUN_DEFAULT), 0);
    cr_assert_lt(th_now_ms() - t0, 1000);
    cr_assert_eq(tt_watch_set_ref(w, true), 0);
    cr_assert_eq(tt_watch_stop(w), 0);
    cr_assert_eq(tt_loop_run(loop, TT_RUN_DEFAULT), 0, "a stopped watch is not work");
    tt_watch_close(w);
    close(p[0]);
    close(p[1]);
}

/* ---- a plain client socket driven by a watch, against a tether server ------------ */

static void echo_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)pending;
    tt_send(c, d, n);
}

typedef struct plain {
    int fd;
    size_t sent, got;
    char buf[4096];
    tt_server_t *srv;
} plain_t;

static void plain_cb(tt_watch_t *w, int fd, unsigned events, void *data)
{
    plain_t *p = data;
    if (events & TT_WATCH_WRITE) {
        static const char msg[] = "hello from a socket tether did not make\n";
        ssize_t n = send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL);
        cr_assert_eq(n, (ssize_t)sizeof(msg) - 1);
        p->sent = (size_t)n;
        cr_assert_eq(tt_watch_start(w, TT_WATCH_READ), 0);
    }
    if (events & TT_WATCH_READ) {
        ssize_t n = recv(fd, p->buf + p->got, sizeof(p->buf) - p->got, 0);
        if (n > 0)
            p->got += (size_t)n;
        if (p->got >= p->sent || n <= 0) {
            /* Done: our FIN ends the server's connection, and so the run. */
            tt_watch_close(w);
            shutdown(fd, SHUT_WR);
            tt_server_close(p->srv);
        }
    }
}

static void drive_plain_client(bool embedded)
{
    tt_conn_handlers_t h = {.on_data = echo_data};
    plain_t p = {0};
    tt_addr_t addr;
    tt_watch_t *w;

    p.srv = th_listen(loop, &h, NULL, &addr);
    p.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert_geq(p.fd, 0);
    int r = connect(p.fd, &addr.u.sa, addr.len);
    cr_assert(r == 0 || errno == EINPROGRESS);
    cr_assert_eq(tt_watch_init(loop, &w, p.fd, plain_cb, &p), 0);
    cr_assert_eq(tt_watch_start(w, TT_WATCH_WRITE), 0);
    if (!embedded) {
        th_run(loop, 5000);
    } else {
        /* Another loop (here plain poll(2)) waits on tether's backend descriptor and
         * lets tether run whenever it is readable or its timeout passes. The wait is as long as tether says (capped, so that a missed wake-up
         * fails the time check below instead of hanging the test). */
        uint64_t t0 = th_now_ms();
        int ret = 1;
        while (ret != 0 && th_now_ms() - t0 < 5000) {
            struct pollfd pfd = {.fd = tt_loop_backend_fd(loop), .events = POLLIN};
            int timeout = tt_loop_backend_timeout(loop);
            cr_assert_geq(pfd.fd, 0);
            poll(&pfd, 1, timeout < 0 || timeout > 3000 ? 3000 : timeout);
            ret = tt_loop_run(loop, TT_RUN_NOWAIT);
        }
        cr_assert_eq(ret, 0, "the embedded loop did not finish");
        cr_assert_lt(th_now_ms() - t0, 2000, "a loopback echo took %llu ms: a wake-up was missed",
                     (unsigned long long)(th_now_ms() - t0));
    }
    cr_assert_gt(p.sent, 0);
    cr_assert_eq(p.got, p.sent, "echoed %zu of %zu", p.got, p.sent);
    close(p.fd);
}

Test(watch, a_plain_client_socket_talks_to_a_tether_server) { drive_plain_client(false); }

Test(watch, the_loop_runs_inside_another_loop) { drive_plain_client(true); }

static void timer_cb(tt_timer_t *t, void *data)
{
    uint64_t *at = data;
    *at = th_now_ms();
    tt_timer_close(t);
}

Test(watch, backend_timeout_says_when_the_next_timer_is_due)
{
    tt_timer_t *t;
    uint64_t fired = 0, t0;
    int timeout;

    /* A new io_uring loop has requests to hand to the kernel: one run does it. */
    tt_loop_run(loop, TT_RUN_NOWAIT);
    cr_assert_eq(tt_loop_backend_timeout(loop), -1, "nothing to wait for: forever");
    cr_assert_eq(tt_timer_init(loop, &t, timer_cb, &fired), 0);
    cr_assert_eq(tt_timer_start(t, 300, 0), 0);
    timeout = tt_loop_backend_timeout(loop);
    cr_assert(timeout > 0 && timeout <= 301, "timeout %d for a 300 ms timer", timeout);
    t0 = th_now_ms();
    /* Sleep exactly as long as tether says, on its descriptor, then let it run. */
    while (fired == 0 && th_now_ms() - t0 < 3000) {
        struct pollfd pfd = {.fd = tt_loop_backend_fd(loop), .events = POLLIN};
        poll(&pfd, 1, tt_loop_backend_timeout(loop));
        tt_loop_run(loop, TT_RUN_NOWAIT);
    }
    cr_assert_gt(fired, 0, "the timer never fired");
    cr_assert_geq(fired - t0, 299, "fired after %llu ms", (unsigned long long)(fired - t0));
    cr_assert_lt(fired - t0, 2000);
    cr_assert_eq(tt_loop_backend_fd(NULL), -EINVAL);
}
