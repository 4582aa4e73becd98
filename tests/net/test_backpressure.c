/* Backpressure against a reader that stops: TT_SEND_FULL at the high-water mark,
 * one on_drain after the reader resumes, and the hard cap that closes the
 * connection instead of letting the queue grow without bound. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

typedef struct rec {
    int opens, drains, errors, closes;
    int error_arg;
    char log[8];
    size_t nlog;
    tt_close_info_t info;
    tt_conn_t *conn;
} rec_t;

static rec_t srv;
static tt_loop_t *loop;
static tt_server_t *server;
static void (*on_open_hook)(tt_conn_t *c);
static void (*on_drain_hook)(tt_conn_t *c);

static void s_open(tt_conn_t *c)
{
    srv.opens++;
    srv.conn = c;
    if (on_open_hook)
        on_open_hook(c);
}
static void s_drain(tt_conn_t *c)
{
    srv.drains++;
    if (on_drain_hook)
        on_drain_hook(c);
}
static void s_error(tt_conn_t *c, int err)
{
    (void)c;
    srv.errors++;
    srv.error_arg = err;
    srv.log[srv.nlog++] = 'E';
}
static void s_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    srv.closes++;
    srv.info = *info;
    srv.log[srv.nlog++] = 'C';
    srv.conn = NULL;
    if (server != NULL) {
        tt_server_close(server);
        server = NULL;
    }
}

static tt_addr_t start_server(size_t high_water)
{
    tt_server_opts_t o = {.high_water = high_water};
    tt_conn_handlers_t h = {.on_open = s_open, .on_drain = s_drain, .on_error = s_error,
                            .on_close = s_close};
    tt_addr_t any = th_loopback(0), addr;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &o, &h, NULL, &server), 0);
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    return addr;
}

/* ---- high water and drain -------------------------------------------------------- */

#define HWM ((size_t)256 * 1024)
#define CHUNK ((size_t)16 * 1024)

static struct {
    uint64_t sent;
    int sends_ok, sends_full, other;
    size_t queued_before_full, queued_at_full;
    int drains_while_stopped;
    size_t queued_while_stopped;
    size_t queued_at_drain;
    uint64_t resumed_at, drained_at;
} bp;

static th_sink_t sink = {.check_pattern = true};

static void send_until_full(tt_conn_t *c)
{
    static char buf[CHUNK];
    /* Small kernel buffers on both ends (see the test), so the kernel cannot absorb
     * the high-water mark's worth while the reader is stopped. */
    cr_assert_eq(tt_conn_set_sndbuf(c, 16 * 1024), 0);
    for (int i = 0; i < 4096; i++) {
        size_t before = tt_conn_queued_bytes(c);
        th_pattern(buf, CHUNK, bp.sent);
        int r = tt_send(c, buf, CHUNK);
        if (r == 0) {
            bp.sends_ok++;
        } else if (r == TT_SEND_FULL) {
            bp.sends_full++;
            if (bp.sends_full == 1) {
                bp.queued_before_full = before;
                bp.queued_at_full = tt_conn_queued_bytes(c);
            }
        } else {
            bp.other++;
            break;
        }
        bp.sent += CHUNK;
        if (bp.sends_full == 3) /* the app ignores the first two FULLs */
            break;
    }
}

static void drained(tt_conn_t *c)
{
    bp.queued_at_drain = tt_conn_queued_bytes(c);
    bp.drained_at = th_now_ms();
    cr_assert_eq(tt_end(c, NULL, 0), 0);
}

static void resume_reader(tt_timer_t *t, void *data)
{
    (void)data;
    bp.drains_while_stopped = srv.drains;
    bp.queued_while_stopped = srv.conn != NULL ? tt_conn_queued_bytes(srv.conn) : 0;
    bp.resumed_at = th_now_ms();
    th_sink_go(&sink);
    tt_timer_close(t);
}

Test(backpressure, send_full_at_high_water_then_one_drain_after_reader_resumes)
{
    tt_addr_t addr = start_server(HWM);
    tt_timer_t *t;
    on_open_hook = send_until_full;
    on_drain_hook = drained;

    int fd = th_tcp_connect_blocking(&addr);
    int small = 16 * 1024;
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    th_sink_start(&sink, fd, true, 10000);
    cr_assert_eq(tt_timer_init(loop, &t, resume_reader, NULL), 0);
    cr_assert_eq(tt_timer_start(t, 300, 0), 0);
    th_run(loop, 10000);
    th_sink_join(&sink);
    close(fd);

    cr_expect_eq(bp.other, 0, "a send failed");
    cr_expect_eq(bp.sends_full, 3, "FULL returned %d times", bp.sends_full);
    cr_expect_lt(bp.queued_before_full, HWM, "queue %zu before the first FULL",
                 bp.queued_before_full);
    cr_expect_geq(bp.queued_at_full, HWM, "FULL with only %zu queued", bp.queued_at_full);
    cr_expect_eq(bp.drains_while_stopped, 0, "on_drain while the reader was stopped");
    cr_expect_geq(bp.queued_while_stopped, HWM, "queue drained to %zu with the reader stopped",
                  bp.queued_while_stopped);
    cr_expect_eq(srv.drains, 1, "on_drain ran %d times", srv.drains);
    cr_expect_eq(bp.queued_at_drain, 0, "on_drain with %zu still queued", bp.queued_at_drain);
    cr_expect_geq(bp.drained_at, bp.resumed_at);
    cr_expect_eq(sink.got, bp.sent, "peer got %llu of %llu", (unsigned long long)sink.got,
                 (unsigned long long)bp.sent);
    cr_expect_eq(sink.bad_at, -1, "stream broken at %ld", sink.bad_at);
    cr_expect_eq(srv.info.kind, TT_CLOSE_LOCAL_END);
    cr_expect_eq(srv.errors, 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

static void small_send_then_end(tt_conn_t *c)
{
    cr_assert_eq(tt_send(c, "small", 5), 0);
    cr_assert_eq(tt_end(c, NULL, 0), 0);
}

Test(backpressure, no_drain_when_high_water_was_never_reached)
{
    tt_addr_t addr = start_server(0);
    th_sink_t s = {0};
    on_open_hook = small_send_then_end;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&s, fd, false, 5000);
    th_run(loop, 5000);
    th_sink_join(&s);
    close(fd);

    cr_expect_eq(s.got, 5);
    cr_expect_eq(srv.drains, 0, "on_drain ran %d times without backpressure", srv.drains);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- the hard cap --------------------------------------------------------------- */

#define CAP ((size_t)1 << 20)

static struct {
    int set_cap_low, set_cap, set_hwm_zero;
    int last, after;
    uint64_t accepted;
    size_t max_queued;
    size_t queued_before_fail;
    int iterations;
    int errors_inside_call;
} cap;

static void send_past_cap(tt_conn_t *c)
{
    static char buf[64 * 1024];
    memset(buf, 'c', sizeof(buf));
    cap.set_cap_low = tt_conn_set_queue_cap(c, 1024); /* below the high-water mark */
    cap.set_hwm_zero = tt_conn_set_high_water(c, 0);
    cap.set_cap = tt_conn_set_queue_cap(c, CAP);
    for (cap.iterations = 0; cap.iterations < 10000; cap.iterations++) {
        size_t before = tt_conn_queued_bytes(c);
        int r = tt_send(c, buf, sizeof(buf));
        cap.last = r;
        if (r < 0) {
            cap.queued_before_fail = before;
            break;
        }
        cap.accepted += sizeof(buf);
        if (tt_conn_queued_bytes(c) > cap.max_queued)
            cap.max_queued = tt_conn_queued_bytes(c);
    }
    cap.errors_inside_call = srv.errors;
    cap.after = tt_send(c, "x", 1);
}

Test(backpressure, hard_cap_closes_with_send_overflow_and_enobufs)
{
    tt_addr_t addr = start_server(0);
    th_sink_t s = {0};
    on_open_hook = send_past_cap;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&s, fd, true, 5000);
    th_run(loop, 5000);
    th_sink_go(&s);
    th_sink_join(&s);
    close(fd);

    cr_expect_eq(cap.set_cap_low, -EINVAL, "cap below high water: %d", cap.set_cap_low);
    cr_expect_eq(cap.set_hwm_zero, -EINVAL);
    cr_expect_eq(cap.set_cap, 0);
    cr_expect_eq(cap.last, -ENOBUFS, "last send: %d after %d sends", cap.last, cap.iterations);
    cr_expect_leq(cap.max_queued, CAP, "queue reached %zu over a cap of %zu", cap.max_queued,
                  CAP);
    /* The cap limits the heap the queue holds: besides the queued bytes, the
     * written part of the head chunk, which is freed only when the chunk is done,
     * and the node or chunk header of each entry. That slack is under two sends. */
    cr_expect_gt(cap.queued_before_fail + 3 * 64 * 1024, CAP,
                 "refused with room left (%zu queued)", cap.queued_before_fail);
    cr_expect_eq(cap.errors_inside_call, 0, "on_error ran inside tt_send");
    cr_expect_eq(cap.after, -EPIPE, "send after overflow: %d", cap.after);
    cr_expect_eq(srv.closes, 1);
    cr_expect_eq(srv.info.kind, TT_CLOSE_SEND_OVERFLOW, "kind '%s'",
                 tt_close_kind_name(srv.info.kind));
    cr_expect_eq(srv.info.error, TT_EOVERFLOW, "error %s", tt_err_name(srv.info.error));
    cr_expect_str_eq(srv.log, "EC");
    cr_expect_eq(srv.error_arg, TT_EOVERFLOW);
    /* The refused send was not queued. */
    cr_expect_eq(srv.info.bytes_queued, cap.accepted, "bytes_queued %llu, accepted %llu",
                 (unsigned long long)srv.info.bytes_queued, (unsigned long long)cap.accepted);
    cr_expect_eq(srv.info.bytes_unsent, cap.queued_before_fail);
    cr_expect_eq(s.got, srv.info.bytes_written, "peer got %llu, written %llu",
                 (unsigned long long)s.got, (unsigned long long)srv.info.bytes_written);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* With the default cap, an app that ignores TT_SEND_FULL and pushes 1 MiB sends at a
 * peer that never reads is stopped at 64 MiB, and the process grew by about that. */
static long rss_kib(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = -1;
    fclose(f);
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static struct {
    long rss_before, rss_after;
    int last, sends;
    size_t max_queued;
} dflt;

static void ignore_full(tt_conn_t *c)
{
    static char buf[1 << 20];
    memset(buf, 'm', sizeof(buf));
    dflt.rss_before = rss_kib();
    for (dflt.sends = 0; dflt.sends < 200; dflt.sends++) {
        dflt.last = tt_send(c, buf, sizeof(buf));
        if (dflt.last < 0)
            break;
        if (tt_conn_queued_bytes(c) > dflt.max_queued)
            dflt.max_queued = tt_conn_queued_bytes(c);
    }
    dflt.rss_after = rss_kib();
}

Test(backpressure, default_cap_bounds_memory_of_an_app_that_ignores_full)
{
    tt_addr_t addr = start_server(0);
    th_sink_t s = {0};
    on_open_hook = ignore_full;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&s, fd, true, 5000);
    th_run(loop, 5000);
    th_sink_go(&s);
    th_sink_join(&s);
    close(fd);

    cr_expect_eq(dflt.last, -ENOBUFS, "last send %d after %d sends", dflt.last, dflt.sends);
    cr_expect_lt(dflt.sends, 200);
    cr_expect_leq(dflt.max_queued, TT_DEFAULT_QUEUE_CAP, "queued %zu", dflt.max_queued);
    cr_expect_lt(dflt.rss_after - dflt.rss_before, 80L * 1024, "RSS grew by %ld KiB",
                 dflt.rss_after - dflt.rss_before);
    cr_expect_eq(srv.info.kind, TT_CLOSE_SEND_OVERFLOW);
    cr_assert_eq(tt_loop_close(loop), 0);
}
