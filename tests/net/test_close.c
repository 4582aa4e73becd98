/* Closing: half-close both ways, half-open, RST versus FIN, destroy_soon, one
 * on_close in every path, on_error only before abnormal ones, and the figures the
 * close report carries. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

typedef struct side {
    int opens, ends, errors, closes, datas;
    int error_arg;
    char log[16]; /* event order: O open, N end, E error, C close */
    size_t nlog;
    tt_close_info_t info;
    tt_conn_state_t state_at_end;
    uint64_t got;
    long bad_at; /* first byte off the pattern (check_pattern), -1 if none */
    bool check_pattern;
    char head[64];
    size_t head_len;
    tt_conn_t *conn;
} side_t;

/* Per-test behaviour on top of the recording handlers. */
typedef struct hooks {
    void (*open)(tt_conn_t *c);
    void (*data)(tt_conn_t *c, const void *d, size_t n);
    void (*end)(tt_conn_t *c);
    void (*close)(tt_conn_t *c, const tt_close_info_t *info);
} hooks_t;

static side_t srv = {.bad_at = -1}, cli = {.bad_at = -1};
static hooks_t srv_hook, cli_hook;
static tt_server_t *server;
static tt_loop_t *loop;

static void note(side_t *s, char ev)
{
    if (s->nlog < sizeof(s->log) - 1)
        s->log[s->nlog++] = ev;
}

static void rec_open(side_t *s, tt_conn_t *c)
{
    s->opens++;
    s->conn = c;
    note(s, 'O');
}

static void rec_data(side_t *s, const void *d, size_t n)
{
    size_t room = sizeof(s->head) - s->head_len;
    memcpy(s->head + s->head_len, d, n < room ? n : room);
    s->head_len += n < room ? n : room;
    if (s->check_pattern && s->bad_at < 0) {
        long bad = th_pattern_check(d, n, s->got);
        if (bad >= 0)
            s->bad_at = (long)s->got + bad;
    }
    s->got += n;
    s->datas++;
}

static void rec_end(side_t *s, tt_conn_t *c)
{
    s->ends++;
    s->state_at_end = tt_conn_state(c);
    note(s, 'N');
}

static void rec_error(side_t *s, int err)
{
    s->errors++;
    s->error_arg = err;
    note(s, 'E');
}

static void rec_close(side_t *s, const tt_close_info_t *info)
{
    s->closes++;
    s->info = *info;
    s->conn = NULL;
    note(s, 'C');
}

static void s_open(tt_conn_t *c)
{
    rec_open(&srv, c);
    if (srv_hook.open)
        srv_hook.open(c);
}
static void s_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)pending;
    rec_data(&srv, d, n);
    if (srv_hook.data)
        srv_hook.data(c, d, n);
}
static void s_end(tt_conn_t *c)
{
    rec_end(&srv, c);
    if (srv_hook.end)
        srv_hook.end(c);
}
static void s_error(tt_conn_t *c, int err)
{
    (void)c;
    rec_error(&srv, err);
}
static void close_server(void);
static void s_close(tt_conn_t *c, const tt_close_info_t *info)
{
    rec_close(&srv, info);
    if (srv_hook.close)
        srv_hook.close(c, info);
    close_server(); /* one connection per test: then the loop may run dry */
}
static void c_open(tt_conn_t *c)
{
    rec_open(&cli, c);
    if (cli_hook.open)
        cli_hook.open(c);
}
static void c_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)pending;
    rec_data(&cli, d, n);
    if (cli_hook.data)
        cli_hook.data(c, d, n);
}
static void c_end(tt_conn_t *c)
{
    rec_end(&cli, c);
    if (cli_hook.end)
        cli_hook.end(c);
}
static void c_error(tt_conn_t *c, int err)
{
    (void)c;
    rec_error(&cli, err);
}
static void c_close(tt_conn_t *c, const tt_close_info_t *info)
{
    rec_close(&cli, info);
    if (cli_hook.close)
        cli_hook.close(c, info);
}

static const tt_conn_handlers_t srv_h = {.on_open = s_open, .on_data = s_data, .on_end = s_end,
                                         .on_error = s_error, .on_close = s_close};
static const tt_conn_handlers_t cli_h = {.on_open = c_open, .on_data = c_data, .on_end = c_end,
                                         .on_error = c_error, .on_close = c_close};

static tt_addr_t start_server(const tt_server_opts_t *opts)
{
    tt_addr_t any = th_loopback(0), addr;
    cr_assert_eq(tt_loop_init(&loop), 0);
    int r = tt_server_listen(loop, &any, opts, &srv_h, NULL, &server);
    cr_assert_eq(r, 0, "listen: %s", tt_strerror(r));
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    return addr;
}

static tt_conn_t *start_client(const tt_addr_t *addr)
{
    tt_conn_t *c = NULL;
    int r = tt_connect(loop, addr, NULL, &cli_h, NULL, &c);
    cr_assert_eq(r, 0, "connect: %s", tt_strerror(r));
    return c;
}

static void close_server(void)
{
    if (server != NULL) {
        cr_assert_eq(tt_server_close(server), 0);
        server = NULL;
    }
}

/* Queue `len` bytes of the pattern from stream offset `off`, in 64 KiB sends. */
static void send_pattern(tt_conn_t *c, uint64_t off, uint64_t len)
{
    static char buf[64 * 1024];
    while (len > 0) {
        size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
        th_pattern(buf, n, off);
        int r = tt_send(c, buf, n);
        cr_assert(r == 0 || r == TT_SEND_FULL, "send: %d %s", r, tt_strerror(r));
        off += n;
        len -= n;
    }
}

static void assert_graceful(const side_t *s, const char *who, tt_close_kind_t kind)
{
    cr_expect_eq(s->closes, 1, "%s closes %d", who, s->closes);
    cr_expect_eq(s->errors, 0, "%s on_error ran %d times (%s) for a graceful end", who,
                 s->errors, tt_err_name(s->error_arg));
    cr_expect_eq(s->info.kind, kind, "%s kind '%s', expected '%s'", who,
                 tt_close_kind_name(s->info.kind), tt_close_kind_name(kind));
    cr_expect_eq(s->info.error, 0, "%s close error %s", who, tt_err_name(s->info.error));
}

/* ---- half-close ---------------------------------------------------------------- */

#define BIG ((uint64_t)1 << 20)

static void srv_sends_after_peer_end(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_state(c), TT_STATE_READ_CLOSED, "state %s",
                 tt_conn_state_name(tt_conn_state(c)));
    send_pattern(c, 0, BIG);
    cr_assert_eq(tt_end(c, NULL, 0), 0);
}

static void cli_ends_at_once(tt_conn_t *c)
{
    cr_assert_eq(tt_end(c, "hello", 5), 0);
    cr_assert_eq(tt_conn_state(c), TT_STATE_WRITE_CLOSING, "state %s",
                 tt_conn_state_name(tt_conn_state(c)));
}

Test(close, client_end_lets_server_keep_sending_until_server_ends)
{
    tt_server_opts_t o = {.half_open = true};
    tt_addr_t addr = start_server(&o);
    srv_hook.end = srv_sends_after_peer_end;
    cli_hook.open = cli_ends_at_once;
    cli.check_pattern = true;
    start_client(&addr);
    th_run(loop, 10000);

    cr_expect_eq(srv.got, 5, "server got %llu", (unsigned long long)srv.got);
    cr_expect_eq(memcmp(srv.head, "hello", 5), 0);
    cr_expect_eq(srv.ends, 1);
    cr_expect_eq(cli.got, BIG, "client got %llu of %llu after its own end",
                 (unsigned long long)cli.got, (unsigned long long)BIG);
    cr_expect_eq(cli.bad_at, -1, "client stream broken at %ld", cli.bad_at);
    cr_expect_eq(cli.ends, 1);
    cr_expect_eq(cli.state_at_end, TT_STATE_WRITE_CLOSED, "client state at end %s",
                 tt_conn_state_name(cli.state_at_end));
    assert_graceful(&cli, "client", TT_CLOSE_LOCAL_END);
    assert_graceful(&srv, "server", TT_CLOSE_PEER_CLOSED);
    cr_expect_eq(srv.info.bytes_written, BIG, "server wrote %llu",
                 (unsigned long long)srv.info.bytes_written);
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

static void srv_ends_at_once(tt_conn_t *c) { cr_assert_eq(tt_end(c, "srv-bye", 7), 0); }

static void cli_sends_after_peer_end(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_state(c), TT_STATE_READ_CLOSED, "state %s",
                 tt_conn_state_name(tt_conn_state(c)));
    send_pattern(c, 0, BIG);
    cr_assert_eq(tt_end(c, NULL, 0), 0);
}

Test(close, server_end_lets_client_keep_sending_until_client_ends)
{
    tt_addr_t addr = start_server(NULL);
    srv_hook.open = srv_ends_at_once;
    srv.check_pattern = true;
    cli_hook.end = cli_sends_after_peer_end;
    tt_conn_t *c = start_client(&addr);
    cr_assert_eq(tt_conn_set_half_open(c, true), 0);
    th_run(loop, 10000);

    cr_expect_eq(cli.got, 7, "client got %llu", (unsigned long long)cli.got);
    cr_expect_eq(memcmp(cli.head, "srv-bye", 7), 0);
    cr_expect_eq(srv.got, BIG, "server got %llu of %llu after its own end",
                 (unsigned long long)srv.got, (unsigned long long)BIG);
    cr_expect_eq(srv.bad_at, -1, "server stream broken at %ld", srv.bad_at);
    cr_expect_eq(srv.state_at_end, TT_STATE_WRITE_CLOSED, "server state at end %s",
                 tt_conn_state_name(srv.state_at_end));
    assert_graceful(&srv, "server", TT_CLOSE_LOCAL_END);
    assert_graceful(&cli, "client", TT_CLOSE_PEER_CLOSED);
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* Half-open: after the peer's FIN the connection waits for the app. A timer looks
 * 300 ms later, then ends the server side itself. */
static struct {
    uint64_t t0, client_end_at;
    tt_conn_state_t srv_state;
    int cli_ends, srv_closes;
} ho;

static void cli_end_time(tt_conn_t *c)
{
    (void)c;
    ho.client_end_at = th_now_ms();
}

static void half_open_check(tt_timer_t *t, void *data)
{
    (void)data;
    cr_assert_not_null(srv.conn, "server connection already gone");
    ho.srv_state = tt_conn_state(srv.conn);
    ho.cli_ends = cli.ends;
    ho.srv_closes = srv.closes;
    cr_assert_eq(tt_end(srv.conn, NULL, 0), 0);
    tt_timer_close(t);
}

Test(close, half_open_peer_fin_only_fires_on_end)
{
    tt_server_opts_t o = {.half_open = true};
    tt_addr_t addr = start_server(&o);
    tt_timer_t *t;
    cli_hook.open = cli_ends_at_once;
    cli_hook.end = cli_end_time;
    start_client(&addr);
    ho.t0 = th_now_ms();
    tt_loop_update_time(loop);
    cr_assert_eq(tt_timer_init(loop, &t, half_open_check, NULL), 0);
    cr_assert_eq(tt_timer_start(t, 300, 0), 0);
    th_run(loop, 5000);

    cr_expect_eq(srv.ends, 1);
    cr_expect_eq(ho.srv_state, TT_STATE_READ_CLOSED, "server state 300 ms after FIN: %s",
                 tt_conn_state_name(ho.srv_state));
    cr_expect_eq(ho.cli_ends, 0, "client saw %d ends before the server ended", ho.cli_ends);
    cr_expect_eq(ho.srv_closes, 0);
    cr_expect_geq(ho.client_end_at - ho.t0, 290, "client's on_end after %llu ms",
                  (unsigned long long)(ho.client_end_at - ho.t0));
    assert_graceful(&cli, "client", TT_CLOSE_LOCAL_END);
    assert_graceful(&srv, "server", TT_CLOSE_PEER_CLOSED);
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* Without half-open: the server answers inside on_end and tether ends its side by
 * itself, after that answer is flushed. The peer is a plain socket. */
#define ANSWER ((uint64_t)2 << 20)

static void srv_answers_in_end(tt_conn_t *c) { send_pattern(c, 0, ANSWER); }

Test(close, peer_fin_without_half_open_ends_our_side_after_flush)
{
    tt_addr_t addr = start_server(NULL);
    th_sink_t sink = {.check_pattern = true};
    srv_hook.end = srv_answers_in_end;

    int fd = th_tcp_connect_blocking(&addr);
    cr_assert_eq(send(fd, "req", 3, 0), 3);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    th_sink_start(&sink, fd, false, 10000);
    th_run(loop, 10000);
    th_sink_join(&sink);
    close(fd);

    cr_expect_eq(srv.got, 3);
    cr_expect_eq(srv.ends, 1);
    cr_expect_eq(sink.got, ANSWER, "peer got %llu of %llu", (unsigned long long)sink.got,
                 (unsigned long long)ANSWER);
    cr_expect_eq(sink.bad_at, -1, "stream broken at %ld", sink.bad_at);
    cr_expect(sink.eof, "peer saw no FIN (recv error %s)", strerror(sink.err));
    assert_graceful(&srv, "server", TT_CLOSE_PEER_CLOSED);
    cr_expect_eq(srv.info.bytes_written, ANSWER);
    cr_expect_eq(srv.info.bytes_unsent, 0);
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- RST versus FIN ------------------------------------------------------------ */

static void srv_reset_at_open(tt_conn_t *c) { cr_assert_eq(tt_destroy(c, TT_DESTROY_RESET), 0); }

Test(close, destroy_reset_makes_plain_peer_recv_fail_with_econnreset)
{
    tt_addr_t addr = start_server(NULL);
    th_sink_t sink = {0};
    srv_hook.open = srv_reset_at_open;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 5000);
    th_run(loop, 5000);
    th_sink_join(&sink);
    close(fd);

    cr_expect(!sink.eof, "peer saw a FIN, not a reset");
    cr_expect_eq(sink.err, ECONNRESET, "peer recv error %d (%s)", sink.err, strerror(sink.err));
    cr_expect_eq(sink.got, 0);
    assert_graceful(&srv, "server", TT_CLOSE_LOCAL_DESTROY);
    cr_expect_str_eq(srv.log, "OC");
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

static void srv_reset_on_data(tt_conn_t *c, const void *d, size_t n)
{
    (void)d, (void)n;
    cr_assert_eq(tt_destroy(c, TT_DESTROY_RESET), 0);
}

static void srv_fin_on_data(tt_conn_t *c, const void *d, size_t n)
{
    (void)d, (void)n;
    cr_assert_eq(tt_destroy(c, 0), 0);
}

static void cli_pings(tt_conn_t *c) { cr_assert_eq(tt_send(c, "ping", 4), 0); }

Test(close, destroy_reset_closes_tether_peer_with_peer_reset)
{
    tt_addr_t addr = start_server(NULL);
    srv_hook.data = srv_reset_on_data;
    cli_hook.open = cli_pings;
    start_client(&addr);
    th_run(loop, 5000);

    cr_expect_eq(cli.closes, 1, "client closes %d", cli.closes);
    cr_expect_eq(cli.info.kind, TT_CLOSE_PEER_RESET, "client kind '%s'",
                 tt_close_kind_name(cli.info.kind));
    cr_expect_eq(cli.info.error, -ECONNRESET, "client error %s", tt_err_name(cli.info.error));
    cr_expect_str_eq(cli.log, "OEC", "client events %s: on_error must precede on_close",
                     cli.log);
    cr_expect_eq(cli.error_arg, cli.info.error);
    cr_expect_eq(cli.ends, 0);
    assert_graceful(&srv, "server", TT_CLOSE_LOCAL_DESTROY);
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

static void srv_bye_then_destroy(tt_conn_t *c)
{
    cr_assert_eq(tt_send(c, "bye", 3), 0);
    cr_assert_eq(tt_destroy(c, 0), 0);
}

Test(close, plain_destroy_gives_plain_peer_eof_after_written_bytes)
{
    tt_addr_t addr = start_server(NULL);
    th_sink_t sink = {0};
    srv_hook.open = srv_bye_then_destroy;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 5000);
    th_run(loop, 5000);
    th_sink_join(&sink);
    close(fd);

    cr_expect(sink.eof, "peer saw no FIN (recv error %s)", strerror(sink.err));
    cr_expect_eq(sink.got, 3, "peer got %llu bytes", (unsigned long long)sink.got);
    assert_graceful(&srv, "server", TT_CLOSE_LOCAL_DESTROY);
    cr_expect_eq(srv.info.bytes_written, 3);
    cr_expect_eq(srv.info.bytes_unsent, 0);
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(close, plain_destroy_closes_tether_peer_with_peer_closed)
{
    tt_addr_t addr = start_server(NULL);
    srv_hook.data = srv_fin_on_data;
    cli_hook.open = cli_pings;
    start_client(&addr);
    th_run(loop, 5000);

    cr_expect_eq(cli.ends, 1);
    assert_graceful(&cli, "client", TT_CLOSE_PEER_CLOSED);
    cr_expect_str_eq(cli.log, "ONC");
    assert_graceful(&srv, "server", TT_CLOSE_LOCAL_DESTROY);
    cr_expect_str_eq(srv.log, "OC");
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- destroy_soon -------------------------------------------------------------- */

#define SOON ((uint64_t)4 << 20)

static void srv_sends_then_destroy_soon(tt_conn_t *c)
{
    send_pattern(c, 0, SOON);
    cr_assert_eq(tt_destroy_soon(c), 0);
    cr_assert_eq(tt_send(c, "x", 1), -EPIPE, "a send after destroy_soon was accepted");
    cr_assert_eq(tt_destroy_soon(c), 0);
}

Test(close, destroy_soon_closes_after_queue_flushed_and_all_bytes_arrive)
{
    tt_addr_t addr = start_server(NULL);
    th_sink_t sink = {.check_pattern = true};
    srv_hook.open = srv_sends_then_destroy_soon;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 10000);
    th_run(loop, 10000);
    th_sink_join(&sink);
    close(fd);

    cr_expect_eq(sink.got, SOON, "peer got %llu of %llu", (unsigned long long)sink.got,
                 (unsigned long long)SOON);
    cr_expect_eq(sink.bad_at, -1, "stream broken at %ld", sink.bad_at);
    cr_expect(sink.eof, "peer saw no FIN (recv error %s)", strerror(sink.err));
    assert_graceful(&srv, "server", TT_CLOSE_LOCAL_DESTROY);
    cr_expect_eq(srv.info.bytes_queued, SOON);
    cr_expect_eq(srv.info.bytes_written, SOON);
    cr_expect_eq(srv.info.bytes_unsent, 0);
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- one close in every path --------------------------------------------------- */

static void srv_destroy_at_open(tt_conn_t *c) { cr_assert_eq(tt_destroy(c, 0), 0); }

Test(close, destroy_inside_on_open_closes_once)
{
    tt_addr_t addr = start_server(NULL);
    srv_hook.open = srv_destroy_at_open;
    start_client(&addr);
    th_run(loop, 5000);

    cr_expect_str_eq(srv.log, "OC");
    assert_graceful(&srv, "server", TT_CLOSE_LOCAL_DESTROY);
    assert_graceful(&cli, "client", TT_CLOSE_PEER_CLOSED);
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

static int destroy_results[3];

static void srv_destroy_twice_on_data(tt_conn_t *c, const void *d, size_t n)
{
    (void)d, (void)n;
    destroy_results[0] = tt_destroy(c, 0);
    destroy_results[1] = tt_destroy(c, TT_DESTROY_RESET);
    destroy_results[2] = tt_destroy_soon(c);
}

Test(close, destroy_twice_inside_on_data_returns_zero_and_closes_once)
{
    tt_addr_t addr = start_server(NULL);
    srv_hook.data = srv_destroy_twice_on_data;
    cli_hook.open = cli_pings;
    start_client(&addr);
    th_run(loop, 5000);

    cr_expect_eq(destroy_results[0], 0);
    cr_expect_eq(destroy_results[1], 0, "second destroy: %d", destroy_results[1]);
    cr_expect_eq(destroy_results[2], 0, "destroy_soon after destroy: %d", destroy_results[2]);
    cr_expect_eq(srv.datas, 1);
    cr_expect_str_eq(srv.log, "OC");
    assert_graceful(&srv, "server", TT_CLOSE_LOCAL_DESTROY);
    /* The second call asked for a reset; the first (a FIN) stands. */
    assert_graceful(&cli, "client", TT_CLOSE_PEER_CLOSED);
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

static int in_close[5];

static void srv_calls_inside_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)info;
    in_close[0] = tt_destroy(c, 0);
    in_close[1] = tt_destroy(c, TT_DESTROY_RESET);
    in_close[2] = tt_destroy_soon(c);
    in_close[3] = tt_send(c, "x", 1);
    in_close[4] = tt_end(c, NULL, 0);
}

Test(close, destroy_inside_on_close_is_a_noop_returning_zero)
{
    tt_addr_t addr = start_server(NULL);
    srv_hook.open = srv_destroy_at_open;
    srv_hook.close = srv_calls_inside_close;
    start_client(&addr);
    th_run(loop, 5000);

    cr_expect_eq(in_close[0], 0, "destroy in on_close: %d", in_close[0]);
    cr_expect_eq(in_close[1], 0, "reset destroy in on_close: %d", in_close[1]);
    cr_expect_eq(in_close[2], 0, "destroy_soon in on_close: %d", in_close[2]);
    cr_expect_eq(in_close[3], -EPIPE, "send in on_close: %d", in_close[3]);
    cr_expect_eq(in_close[4], -EPIPE, "end in on_close: %d", in_close[4]);
    cr_expect_str_eq(srv.log, "OC");
    assert_graceful(&srv, "server", TT_CLOSE_LOCAL_DESTROY);
    /* No reset escaped from the no-op calls: the peer saw a FIN. */
    assert_graceful(&cli, "client", TT_CLOSE_PEER_CLOSED);
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* The server closes inside the first on_open; that connection keeps working (an
 * echo round trip) and a later connect is refused. */
static tt_server_t *closed_server_of;

static void srv_close_server_at_open(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_server(c), server);
    cr_assert_eq(tt_server_close(server), 0);
    server = NULL;
    closed_server_of = tt_conn_server(c);
}

static void srv_echo(tt_conn_t *c, const void *d, size_t n)
{
    cr_assert_geq(tt_send(c, d, n), 0);
}

static void cli_end_after_echo(tt_conn_t *c, const void *d, size_t n)
{
    (void)d, (void)n;
    if (cli.got == 4)
        cr_assert_eq(tt_end(c, NULL, 0), 0);
}

static side_t late = {.bad_at = -1};
static void late_error(tt_conn_t *c, int err)
{
    (void)c;
    rec_error(&late, err);
}
static void late_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    rec_close(&late, info);
}
static void late_open(tt_conn_t *c) { rec_open(&late, c); }

Test(close, server_close_inside_on_open_leaves_the_connection_working)
{
    tt_addr_t addr = start_server(NULL);
    srv_hook.open = srv_close_server_at_open;
    srv_hook.data = srv_echo;
    cli_hook.open = cli_pings;
    cli_hook.data = cli_end_after_echo;
    start_client(&addr);
    th_run(loop, 5000);

    cr_expect_null(closed_server_of, "connection still points at its closed server");
    cr_expect_eq(cli.got, 4, "echo after server close: got %llu", (unsigned long long)cli.got);
    cr_expect_eq(memcmp(cli.head, "ping", 4), 0);
    assert_graceful(&cli, "client", TT_CLOSE_LOCAL_END);
    assert_graceful(&srv, "server", TT_CLOSE_PEER_CLOSED);

    /* The listener is gone: a new connect is refused. */
    tt_conn_handlers_t lh = {.on_open = late_open, .on_error = late_error,
                             .on_close = late_close};
    tt_conn_t *c2;
    cr_assert_eq(tt_connect(loop, &addr, NULL, &lh, NULL, &c2), 0);
    th_run(loop, 5000);
    cr_expect_eq(late.opens, 0);
    cr_expect_eq(late.closes, 1);
    cr_expect_eq(late.info.kind, TT_CLOSE_CONNECT_FAILED, "kind '%s'",
                 tt_close_kind_name(late.info.kind));
    cr_expect_eq(late.info.error, -ECONNREFUSED, "error %s", tt_err_name(late.info.error));
    cr_expect_str_eq(late.log, "EC");
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- the close report ---------------------------------------------------------- */

/* The peer does not read. 8 MiB is queued; 200 ms later, with the kernel buffers
 * full, the connection is destroyed: what was written plus what was dropped is
 * everything queued, and the peer then reads exactly what was written. */
#define QUEUED ((uint64_t)8 << 20)
static struct {
    uint64_t written, queued;
} at_destroy;

static void srv_fill(tt_conn_t *c) { send_pattern(c, 0, QUEUED); }

static void destroy_later(tt_timer_t *t, void *data)
{
    (void)data;
    cr_assert_not_null(srv.conn);
    at_destroy.written = tt_conn_written_bytes(srv.conn);
    at_destroy.queued = tt_conn_queued_bytes(srv.conn);
    cr_assert_eq(tt_destroy(srv.conn, 0), 0);
    tt_timer_close(t);
}

Test(close, destroy_with_queued_data_reports_exact_figures)
{
    tt_addr_t addr = start_server(NULL);
    th_sink_t sink = {.check_pattern = true};
    tt_timer_t *t;
    srv_hook.open = srv_fill;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, true, 10000);
    cr_assert_eq(tt_timer_init(loop, &t, destroy_later, NULL), 0);
    cr_assert_eq(tt_timer_start(t, 200, 0), 0);
    th_run(loop, 5000);
    th_sink_go(&sink);
    th_sink_join(&sink);
    close(fd);

    cr_assert_gt(at_destroy.queued, 0, "nothing left queued at destroy: the test proves nothing");
    cr_expect_eq(at_destroy.written + at_destroy.queued, QUEUED, "written %llu + queued %llu",
                 (unsigned long long)at_destroy.written, (unsigned long long)at_destroy.queued);
    assert_graceful(&srv, "server", TT_CLOSE_LOCAL_DESTROY);
    cr_expect_eq(srv.info.bytes_queued, QUEUED, "bytes_queued %llu",
                 (unsigned long long)srv.info.bytes_queued);
    cr_expect_eq(srv.info.bytes_written, at_destroy.written, "bytes_written %llu, expected %llu",
                 (unsigned long long)srv.info.bytes_written,
                 (unsigned long long)at_destroy.written);
    cr_expect_eq(srv.info.bytes_unsent, at_destroy.queued, "bytes_unsent %llu, expected %llu",
                 (unsigned long long)srv.info.bytes_unsent,
                 (unsigned long long)at_destroy.queued);
    cr_expect_gt(srv.info.bytes_unacked, 0, "the unread peer acknowledged everything?");
    cr_expect_eq(srv.info.bytes_acked + srv.info.bytes_unacked, srv.info.bytes_written,
                 "acked %llu + unacked %llu != written %llu",
                 (unsigned long long)srv.info.bytes_acked,
                 (unsigned long long)srv.info.bytes_unacked,
                 (unsigned long long)srv.info.bytes_written);
    cr_expect_eq(sink.got, at_destroy.written, "peer got %llu, tether wrote %llu",
                 (unsigned long long)sink.got, (unsigned long long)at_destroy.written);
    cr_expect_eq(sink.bad_at, -1, "stream broken at %ld", sink.bad_at);
    cr_expect(sink.eof, "peer saw no FIN (recv error %s)", strerror(sink.err));
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

static void cli_sends_big_then_ends(tt_conn_t *c)
{
    send_pattern(c, 0, BIG);
    cr_assert_eq(tt_end(c, NULL, 0), 0);
}

Test(close, completed_transfer_reports_bytes_acked)
{
    tt_addr_t addr = start_server(NULL);
    cli_hook.open = cli_sends_big_then_ends;
    srv.check_pattern = true;
    start_client(&addr);
    th_run(loop, 10000);

    cr_expect_eq(srv.got, BIG);
    cr_expect_eq(srv.bad_at, -1);
    assert_graceful(&cli, "client", TT_CLOSE_LOCAL_END);
    cr_expect_eq(cli.info.bytes_queued, BIG);
    cr_expect_eq(cli.info.bytes_written, BIG);
    cr_expect_eq(cli.info.bytes_unsent, 0);
    cr_expect_eq(cli.info.bytes_unacked, 0, "unacked %llu",
                 (unsigned long long)cli.info.bytes_unacked);
    /* Data bytes only: the kernel's count also holds the SYN and the FIN. */
    cr_expect_eq(cli.info.bytes_acked, BIG, "bytes_acked %llu after a %llu-byte transfer",
                 (unsigned long long)cli.info.bytes_acked, (unsigned long long)BIG);
    close_server();
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- the linger deadline starts at tt_end --------------------------------------- */

static uint64_t linger_end_ms, linger_close_ms;
static volatile bool linger_closed;

static void srv_fills_then_ends_with_short_linger(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_set_sndbuf(c, 4096), 0);
    cr_assert_eq(tt_conn_set_linger(c, 300), 0);
    send_pattern(c, 0, BIG); /* far more than the peer's buffers hold */
    cr_assert_eq(tt_end(c, NULL, 0), 0);
    linger_end_ms = th_now_ms();
}

static void note_linger_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c, (void)info;
    linger_close_ms = th_now_ms();
    linger_closed = true;
}

Test(close, end_to_a_peer_that_never_reads_times_out_after_the_linger)
{
    tt_addr_t addr = start_server(NULL);
    srv_hook.open = srv_fills_then_ends_with_short_linger;
    srv_hook.close = note_linger_close;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    cr_assert_geq(fd, 0);
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    cr_assert_eq(connect(fd, &addr.u.sa, addr.len), 0, "connect: %s", strerror(errno));

    th_run_until(loop, &linger_closed, 5000); /* the peer reads nothing, ever */

    cr_expect_eq(srv.closes, 1, "no close 5 s after tt_end with a 300 ms linger");
    cr_expect_eq(srv.info.kind, TT_CLOSE_LINGER_TIMEOUT, "kind '%s'",
                 tt_close_kind_name(srv.info.kind));
    cr_expect_eq(srv.info.error, -ETIMEDOUT, "error %s", tt_err_name(srv.info.error));
    cr_expect_gt(srv.info.bytes_unsent, 0);
    cr_expect_eq(srv.info.bytes_written + srv.info.bytes_unsent, BIG);
    if (srv.closes == 1)
        cr_expect_lt(linger_close_ms - linger_end_ms, 3000, "closed %llu ms after tt_end",
                     (unsigned long long)(linger_close_ms - linger_end_ms));
    close(fd);
    close_server();
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}
