#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The guard is a 5 ms repeating timer: it stops the loop once the awaited condition
 * holds (only the guard itself left open, or a flag set) or the time is up. */
typedef struct {
    tt_loop_t *loop;
    uint64_t end;
    volatile bool *flag; /* NULL: wait for "only the guard is left" */
    bool fired, done;
} guard_t;

static void guard_cb(tt_timer_t *t, void *data)
{
    guard_t *g = data;
    (void)t;
    if (g->flag != NULL ? *g->flag : tt_loop_handle_count(g->loop) <= 1) {
        g->done = true;
        tt_loop_stop(g->loop);
    } else if (th_now_ms() >= g->end) {
        g->fired = true;
        tt_loop_stop(g->loop);
    }
}

static int run_guarded(tt_loop_t *loop, guard_t *g, uint64_t ms)
{
    tt_timer_t *t;
    int r = 0;

    g->loop = loop;
    g->end = th_now_ms() + ms;
    cr_assert_eq(tt_timer_init(loop, &t, guard_cb, g), 0);
    cr_assert_eq(tt_timer_start(t, 0, 5), 0);
    while (!g->done && !g->fired)
        r = tt_loop_run(loop, TT_RUN_DEFAULT);
    tt_timer_close(t);
    /* Deliver whatever the last round deferred. */
    tt_loop_run(loop, TT_RUN_NOWAIT);
    return r;
}

int th_run(tt_loop_t *loop, uint64_t ms)
{
    guard_t g = {0};
    int r = run_guarded(loop, &g, ms);
    cr_assert(!g.fired, "loop still busy after %llu ms (%zu handles open)",
              (unsigned long long)ms, tt_loop_handle_count(loop));
    return r;
}

bool th_run_until(tt_loop_t *loop, volatile bool *flag, uint64_t ms)
{
    guard_t g = {0};
    g.flag = flag;
    run_guarded(loop, &g, ms);
    return *flag;
}

tt_addr_t th_loopback(uint16_t port)
{
    tt_addr_t a;
    cr_assert_eq(tt_addr_parse(&a, "127.0.0.1", port), 0);
    return a;
}

tt_server_t *th_listen(tt_loop_t *loop, const tt_conn_handlers_t *h, void *data, tt_addr_t *addr)
{
    tt_addr_t any = th_loopback(0);
    tt_server_t *s = NULL;
    int r = tt_server_listen(loop, &any, NULL, h, data, &s);
    cr_assert_eq(r, 0, "listen: %s", tt_strerror(r));
    cr_assert_eq(tt_server_addr(s, addr), 0);
    cr_assert_neq(tt_addr_port(addr), 0);
    return s;
}

int th_tcp_connect_blocking(const tt_addr_t *addr)
{
    int fd = socket(addr->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, &addr->u.sa, addr->len), 0, "connect: %s", strerror(errno));
    return fd;
}

int th_tcp_listen_blocking(tt_addr_t *addr_out)
{
    tt_addr_t a = th_loopback(0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof(a.u.in4);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, &a.u.sa, a.len), 0);
    cr_assert_eq(listen(fd, 16), 0);
    cr_assert_eq(getsockname(fd, &a.u.sa, &len), 0);
    a.len = len;
    *addr_out = a;
    return fd;
}

const char *th_build_path(const char *rel)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf), "%s/%s", TT_BUILD_DIR, rel);
    return buf;
}
