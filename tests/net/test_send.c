/* Sending: owned buffers and their free callbacks, coalescing of small sends,
 * vectors, argument checks, sends after end, and no SIGPIPE from a reset peer. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

typedef struct rec {
    int opens, ends, errors, closes;
    int error_arg;
    tt_close_info_t info;
    tt_conn_stats_t stats_at_close;
    tt_conn_t *conn;
} rec_t;

static rec_t srv;
static tt_loop_t *loop;
static tt_server_t *server;
static void (*on_open_hook)(tt_conn_t *c);
static void (*on_end_hook)(tt_conn_t *c);

static void s_open(tt_conn_t *c)
{
    srv.opens++;
    srv.conn = c;
    if (on_open_hook)
        on_open_hook(c);
}
static void s_end(tt_conn_t *c)
{
    srv.ends++;
    if (on_end_hook)
        on_end_hook(c);
}
static void s_error(tt_conn_t *c, int err)
{
    (void)c;
    srv.errors++;
    srv.error_arg = err;
}
static void s_close(tt_conn_t *c, const tt_close_info_t *info)
{
    srv.closes++;
    srv.info = *info;
    cr_assert_eq(tt_conn_get_stats(c, &srv.stats_at_close), 0);
    srv.conn = NULL;
    if (server != NULL) { /* one connection per test: let the loop run dry */
        tt_server_close(server);
        server = NULL;
    }
}

static tt_addr_t start_server(bool half_open)
{
    tt_server_opts_t o = {.half_open = half_open};
    tt_conn_handlers_t h = {.on_open = s_open, .on_end = s_end, .on_error = s_error,
                            .on_close = s_close};
    tt_addr_t any = th_loopback(0), addr;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &o, &h, NULL, &server), 0);
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    return addr;
}

/* ---- owned sends --------------------------------------------------------------- */

#define OWNED_LEN ((size_t)256 * 1024)

static struct {
    int frees;
    void *freed_buf;
    uint64_t written_at_free;
    int frees_after_call;
    void *buf;
} own;

static void owned_free(void *buf, void *arg)
{
    (void)arg;
    own.frees++;
    own.freed_buf = buf;
    own.written_at_free = srv.conn != NULL ? tt_conn_written_bytes(srv.conn) : UINT64_MAX;
    free(buf);
}

static void send_owned_then_end(tt_conn_t *c)
{
    own.buf = malloc(OWNED_LEN);
    cr_assert_not_null(own.buf);
    th_pattern(own.buf, OWNED_LEN, 0);
    int r = tt_send_owned(c, own.buf, OWNED_LEN, owned_free, NULL);
    cr_assert_eq(r, TT_SEND_FULL, "256 KiB over a 64 KiB high-water mark: %d", r);
    own.frees_after_call = own.frees;
    cr_assert_eq(tt_end(c, NULL, 0), 0);
}

Test(send, owned_free_runs_once_after_the_bytes_are_written)
{
    tt_addr_t addr = start_server(false);
    th_sink_t sink = {.check_pattern = true};
    on_open_hook = send_owned_then_end;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 10000);
    th_run(loop, 10000);
    th_sink_join(&sink);
    close(fd);

    cr_expect_eq(own.frees_after_call, 0, "free callback ran inside tt_send_owned");
    cr_expect_eq(own.frees, 1, "free callback ran %d times", own.frees);
    cr_expect_eq(own.freed_buf, own.buf);
    cr_expect_eq(own.written_at_free, OWNED_LEN, "freed when %llu of %zu bytes were written",
                 (unsigned long long)own.written_at_free, OWNED_LEN);
    cr_expect_eq(sink.got, OWNED_LEN, "peer got %llu", (unsigned long long)sink.got);
    cr_expect_eq(sink.bad_at, -1, "stream broken at %ld", sink.bad_at);
    cr_expect_eq(srv.info.kind, TT_CLOSE_LOCAL_END, "kind '%s'",
                 tt_close_kind_name(srv.info.kind));
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* The peer never reads: 8 MiB of copies fill the kernel, the owned buffer waits
 * behind them, and the connection is destroyed with it still queued. */
#define FILL ((size_t)8 << 20)
#define OWNED_BIG ((size_t)1 << 20)
static struct {
    uint64_t queued;
    int frees_after_destroy;
} at_destroy;

static void fill_then_send_owned(tt_conn_t *c)
{
    static char chunk[64 * 1024];
    memset(chunk, 'f', sizeof(chunk));
    for (size_t off = 0; off < FILL; off += sizeof(chunk))
        cr_assert_geq(tt_send(c, chunk, sizeof(chunk)), 0);
    own.buf = malloc(OWNED_BIG);
    cr_assert_not_null(own.buf);
    memset(own.buf, 'o', OWNED_BIG);
    cr_assert_eq(tt_send_owned(c, own.buf, OWNED_BIG, owned_free, NULL), TT_SEND_FULL);
}

static void destroy_later(tt_timer_t *t, void *data)
{
    (void)data;
    cr_assert_not_null(srv.conn);
    at_destroy.queued = tt_conn_queued_bytes(srv.conn);
    cr_assert_eq(tt_destroy(srv.conn, 0), 0);
    at_destroy.frees_after_destroy = own.frees;
    tt_timer_close(t);
}

Test(send, owned_free_runs_once_when_destroyed_with_the_buffer_queued)
{
    tt_addr_t addr = start_server(false);
    th_sink_t sink = {0};
    tt_timer_t *t;
    on_open_hook = fill_then_send_owned;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, true, 10000);
    cr_assert_eq(tt_timer_init(loop, &t, destroy_later, NULL), 0);
    cr_assert_eq(tt_timer_start(t, 200, 0), 0);
    th_run(loop, 5000);
    th_sink_go(&sink);
    th_sink_join(&sink);
    close(fd);

    cr_assert_geq(at_destroy.queued, OWNED_BIG, "the owned buffer was already written: "
                  "queued %llu at destroy", (unsigned long long)at_destroy.queued);
    cr_expect_eq(at_destroy.frees_after_destroy, 0, "free callback ran inside tt_destroy");
    cr_expect_eq(own.frees, 1, "free callback ran %d times", own.frees);
    cr_expect_eq(own.freed_buf, own.buf);
    cr_expect_eq(srv.closes, 1);
    cr_expect_eq(srv.info.kind, TT_CLOSE_LOCAL_DESTROY);
    cr_expect_eq(srv.info.bytes_unsent, at_destroy.queued, "bytes_unsent %llu, queued %llu",
                 (unsigned long long)srv.info.bytes_unsent,
                 (unsigned long long)at_destroy.queued);
    cr_expect_eq(srv.info.bytes_queued, FILL + OWNED_BIG);
    cr_expect_eq(srv.info.bytes_written + srv.info.bytes_unsent, FILL + OWNED_BIG);
    cr_expect_eq(sink.got, srv.info.bytes_written, "peer got %llu, written %llu",
                 (unsigned long long)sink.got, (unsigned long long)srv.info.bytes_written);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- coalescing ---------------------------------------------------------------- */

#define NSENDS 1000
#define RECLEN 10

static char first_rec[RECLEN + 1];

static void many_small_sends(tt_conn_t *c)
{
    char rec[RECLEN + 1];
    /* An owned send is always queued, so the queue is non-empty from here on and
     * every following send is appended to it. */
    snprintf(first_rec, sizeof(first_rec), "%09d\n", 0);
    cr_assert_eq(tt_send_owned(c, first_rec, RECLEN, NULL, NULL), 0);
    for (int i = 1; i < NSENDS; i++) {
        snprintf(rec, sizeof(rec), "%09d\n", i);
        cr_assert_eq(tt_send(c, rec, RECLEN), 0, "send %d", i);
    }
    cr_assert_eq(tt_conn_queued_bytes(c), (size_t)NSENDS * RECLEN);
    cr_assert_eq(tt_end(c, NULL, 0), 0);
}

Test(send, many_small_sends_in_one_callback_go_out_in_few_writes)
{
    tt_addr_t addr = start_server(false);
    th_sink_t sink = {0};
    on_open_hook = many_small_sends;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 5000);
    th_run(loop, 5000);
    th_sink_join(&sink);
    close(fd);
    const char *got = sink.head;
    size_t n = (size_t)sink.got;

    cr_expect_eq(n, NSENDS * RECLEN, "peer got %zu", n);
    for (int i = 0; i < NSENDS && (size_t)(i + 1) * RECLEN <= n; i++) {
        char want[RECLEN + 1];
        snprintf(want, sizeof(want), "%09d\n", i);
        cr_assert_eq(memcmp(got + (size_t)i * RECLEN, want, RECLEN), 0, "record %d: %.9s", i,
                     got + (size_t)i * RECLEN);
    }
    cr_expect_eq(srv.stats_at_close.bytes_out, NSENDS * RECLEN);
    cr_expect_leq(srv.stats_at_close.packets_out, 4, "%d sends took %llu writes", NSENDS,
                  (unsigned long long)srv.stats_at_close.packets_out);
    cr_expect_geq(srv.stats_at_close.packets_out, 1);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- vectors, text, argument checks, after end --------------------------------- */

static void sendv_then_end(tt_conn_t *c)
{
    struct iovec iov[4] = {{"alpha-", 6}, {NULL, 0}, {"beta-", 5}, {"gamma", 5}};
    cr_assert_eq(tt_sendv(c, iov, 4), 0);
    cr_assert_eq(tt_send_text(c, "|text"), 0);
    cr_assert_eq(tt_end(c, "|last", 5), 0);
}

Test(send, sendv_text_and_end_bytes_arrive_in_call_order)
{
    tt_addr_t addr = start_server(false);
    on_open_hook = sendv_then_end;
    th_sink_t sink = {0};

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 5000);
    th_run(loop, 5000);
    th_sink_join(&sink);
    close(fd);

    cr_expect_eq(sink.got, 26, "peer got %llu", (unsigned long long)sink.got);
    cr_expect_eq(memcmp(sink.head, "alpha-beta-gamma|text|last", 26), 0, "peer got '%.26s'",
                 sink.head);
    /* The vector went in one writev: nothing was queued when it was sent. */
    cr_expect_eq(srv.stats_at_close.bytes_out, 26);
    cr_expect_eq(srv.stats_at_close.packets_out, 3, "writes %llu",
                 (unsigned long long)srv.stats_at_close.packets_out);
    cr_assert_eq(tt_loop_close(loop), 0);
}

static struct {
    int r[12];
    uint64_t total_before, total_after;
    size_t queued_after;
    int frees;
} chk;

static void never_free(void *buf, void *arg)
{
    (void)buf, (void)arg;
    chk.frees++;
}

static void bad_arguments(tt_conn_t *c)
{
    tt_conn_stats_t st;
    struct iovec bad_iov[2] = {{"ok", 2}, {NULL, 3}};
    char owned[4] = "abc";

    cr_assert_eq(tt_conn_get_stats(c, &st), 0);
    chk.total_before = st.bytes_queued_total;
    chk.r[0] = tt_send(NULL, "x", 1);
    chk.r[1] = tt_send(c, NULL, 5);
    chk.r[2] = tt_sendv(c, NULL, 1);
    chk.r[3] = tt_sendv(c, bad_iov, -1);
    chk.r[4] = tt_sendv(c, bad_iov, 2);
    chk.r[5] = tt_send_owned(c, NULL, 5, never_free, NULL);
    chk.r[6] = tt_send_text(c, NULL);
    chk.r[7] = tt_end(c, NULL, 3);
    chk.r[8] = tt_destroy(c, 0x80);
    chk.r[9] = tt_send(c, NULL, 0); /* an empty send is fine */
    cr_assert_eq(tt_conn_get_stats(c, &st), 0);
    chk.total_after = st.bytes_queued_total;
    chk.queued_after = tt_conn_queued_bytes(c);
    /* After end: every send is refused and the owned buffer stays the caller's. */
    cr_assert_eq(tt_end(c, "end", 3), 0);
    chk.r[10] = tt_send(c, "late", 4);
    chk.r[11] = tt_send_owned(c, owned, 3, never_free, NULL);
    cr_assert_eq(tt_end(c, NULL, 0), -EPIPE);
}

Test(send, bad_arguments_return_einval_and_sends_after_end_epipe)
{
    tt_addr_t addr = start_server(false);
    on_open_hook = bad_arguments;
    th_sink_t sink = {0};

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 5000);
    th_run(loop, 5000);
    th_sink_join(&sink);
    close(fd);

    for (int i = 0; i <= 8; i++)
        cr_expect_eq(chk.r[i], -EINVAL, "check %d returned %d", i, chk.r[i]);
    cr_expect_eq(chk.r[9], 0);
    cr_expect_eq(chk.total_after, chk.total_before, "a refused send queued bytes");
    cr_expect_eq(chk.queued_after, 0);
    cr_expect_eq(chk.r[10], -EPIPE, "send after end: %d", chk.r[10]);
    cr_expect_eq(chk.r[11], -EPIPE, "owned send after end: %d", chk.r[11]);
    cr_expect_eq(chk.frees, 0, "free callback ran for a refused owned send");
    cr_expect_eq(sink.got, 3, "peer got %llu bytes", (unsigned long long)sink.got);
    cr_expect_eq(memcmp(sink.head, "end", 3), 0, "peer got '%.3s'", sink.head);
    cr_expect_eq(srv.errors, 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- SIGPIPE ------------------------------------------------------------------- */

/* The peer closes at once. Half-open keeps our side writable: the first send
 * reaches a closed socket, which answers with RST, and since we were in
 * CLOSE_WAIT the kernel fails the next send with EPIPE (tcp_reset sets EPIPE
 * there) and raises SIGPIPE unless the send said MSG_NOSIGNAL. */
static struct {
    int sends;
    int results[64];
} sp;

static void send_every_20ms(tt_timer_t *t, void *data)
{
    (void)data;
    if (srv.conn == NULL || sp.sends >= 64) {
        tt_timer_close(t);
        return;
    }
    sp.results[sp.sends++] = tt_send(srv.conn, "more data", 9);
}

static void start_sending(tt_conn_t *c)
{
    tt_timer_t *t;
    cr_assert_eq(tt_send(c, "data after the peer's FIN", 25), 0);
    cr_assert_eq(tt_timer_init(loop, &t, send_every_20ms, NULL), 0);
    cr_assert_eq(tt_timer_start(t, 20, 20), 0);
}

Test(send, send_to_a_peer_that_reset_fails_with_epipe_and_raises_no_sigpipe)
{
    /* A SIGPIPE must kill this process: make sure nobody ignores it for us. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    cr_assert_eq(sigaction(SIGPIPE, &dfl, NULL), 0);
    tt_addr_t addr = start_server(true);
    on_end_hook = start_sending;

    int fd = th_tcp_connect_blocking(&addr);
    close(fd);
    th_run(loop, 5000);

    cr_expect_eq(srv.ends, 1);
    cr_expect_eq(srv.closes, 1);
    cr_expect_geq(sp.sends, 1);
    cr_expect_eq(srv.info.kind, TT_CLOSE_PEER_RESET, "kind '%s'",
                 tt_close_kind_name(srv.info.kind));
    /* EPIPE is exactly the error that comes with SIGPIPE (send(2)). */
    cr_expect_eq(srv.info.error, -EPIPE, "error %s", tt_err_name(srv.info.error));
    cr_expect_eq(srv.errors, 1);
    for (int i = 0; i < sp.sends; i++)
        cr_expect(sp.results[i] == 0 || sp.results[i] == -EPIPE, "send %d returned %d", i,
                  sp.results[i]);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- the hard cap counts what the queue really holds ----------------------------- */

static struct {
    int accepted, last;
} tiny;
static char tiny_byte = 't';

static void send_tiny_owned_until_refused(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_set_queue_cap(c, 64 * 1024), 0);
    for (tiny.accepted = 0; tiny.accepted < 100000; tiny.accepted++) {
        tiny.last = tt_send_owned(c, &tiny_byte, 1, NULL, NULL);
        if (tiny.last < 0)
            break;
    }
}

Test(send, hard_cap_charges_each_queued_buffer_its_node_not_just_its_bytes)
{
    tt_conn_handlers_t h = {.on_open = s_open, .on_close = s_close};
    tt_addr_t any = th_loopback(0), addr;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, NULL, &h, NULL, &server), 0);
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    on_open_hook = send_tiny_owned_until_refused;

    int fd = th_tcp_connect_blocking(&addr);
    th_run(loop, 5000);
    close(fd);

    /* Counting payload only, 65536 one-byte buffers (4 MiB of nodes) fit a 64 KiB
     * cap; counting the node each costs, about a thousand. */
    cr_expect_eq(tiny.last, -ENOBUFS, "last %d after %d sends", tiny.last, tiny.accepted);
    cr_expect_lt(tiny.accepted, 2048, "%d one-byte buffers accepted under a 64 KiB cap",
                 tiny.accepted);
    cr_expect_gt(tiny.accepted, 256, "only %d accepted", tiny.accepted);
    cr_expect_eq(srv.info.kind, TT_CLOSE_SEND_OVERFLOW, "kind '%s'",
                 tt_close_kind_name(srv.info.kind));
    cr_assert_eq(tt_loop_close(loop), 0);
}
