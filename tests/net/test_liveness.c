/* Liveness on loopback: idle timeouts of each kind, on_idle keeping a connection,
 * heartbeats sent when write-idle, dead-after with its close reason, ping/pong
 * answering, the derivation of the one knob and the socket options it sets, and
 * the cases that must NOT look dead (paused reading, a bulk send to a silent
 * reader, two tether peers idling). Faults on real links are in
 * tests/fault/test_dead_peer.c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

typedef struct side {
    int opens, closes, datas, idles;
    int idle_kind[8];
    uint64_t got;
    char head[64];
    size_t head_len;
    tt_close_info_t info;
    uint64_t opened_at, closed_at;
    tt_conn_t *conn;
    bool closed;
} side_t;

static side_t srv, cli;
static tt_loop_t *loop;
static tt_server_t *server;
static void (*on_open_hook)(tt_conn_t *c);
static bool (*on_idle_hook)(tt_conn_t *c, int kind);

static side_t *side_of(tt_conn_t *c) { return tt_conn_server(c) != NULL ? &srv : &cli; }

static void rec_open(tt_conn_t *c)
{
    side_t *s = side_of(c);
    s->opens++;
    s->conn = c;
    s->opened_at = th_now_ms();
    if (on_open_hook != NULL && s == &srv)
        on_open_hook(c);
}

static void rec_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    side_t *s = side_of(c);
    (void)pending;
    s->datas++;
    if (s->head_len + n <= sizeof(s->head)) {
        memcpy(s->head + s->head_len, d, n);
        s->head_len += n;
    }
    s->got += n;
}

static void rec_close(tt_conn_t *c, const tt_close_info_t *info)
{
    /* tt_conn_server() is already NULL here: the close unlinked it. */
    side_t *s = c == srv.conn ? &srv : &cli;
    s->closes++;
    s->info = *info;
    s->closed_at = th_now_ms();
    s->closed = true;
    s->conn = NULL;
}

static bool rec_idle(tt_conn_t *c, int kind)
{
    side_t *s = side_of(c);
    if (s->idles < 8)
        s->idle_kind[s->idles] = kind;
    s->idles++;
    return on_idle_hook != NULL ? on_idle_hook(c, kind) : false;
}

static const tt_conn_handlers_t handlers = {.on_open = rec_open, .on_data = rec_data,
                                            .on_close = rec_close, .on_idle = rec_idle};

/* A tether server on 127.0.0.1 and a plain blocking client socket connected to it,
 * accepted and opened. Returns the client fd. */
static int setup_plain_peer(const tt_server_opts_t *opts)
{
    tt_addr_t any = th_loopback(0), addr;
    bool opened = false;
    int fd, r;

    cr_assert_eq(tt_loop_init(&loop), 0);
    r = tt_server_listen(loop, &any, opts, &handlers, NULL, &server);
    cr_assert_eq(r, 0, "listen: %s", tt_strerror(r));
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    fd = th_tcp_connect_blocking(&addr);
    for (uint64_t end = th_now_ms() + 2000; srv.opens == 0 && th_now_ms() < end;)
        tt_loop_run(loop, TT_RUN_ONCE);
    opened = srv.opens == 1;
    cr_assert(opened, "server never opened the connection");
    return fd;
}

static void run_until_closed(side_t *s, uint64_t ms)
{
    th_run_until(loop, &s->closed, ms);
}

static void run_for(uint64_t ms)
{
    bool never = false;
    th_run_until(loop, &never, ms);
}

static void teardown_loop(void)
{
    if (server != NULL)
        tt_server_close(server);
    server = NULL;
    if (srv.conn != NULL)
        tt_destroy(srv.conn, 0);
    if (cli.conn != NULL)
        tt_destroy(cli.conn, 0);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- a peer that writes on a timer ------------------------------------------------ */

typedef struct ticker {
    int fd;
    int left; /* writes still to do */
    tt_timer_t *t;
} ticker_t;

static void tick_cb(tt_timer_t *t, void *data)
{
    ticker_t *k = data;
    cr_assert_eq(send(k->fd, "x", 1, MSG_NOSIGNAL), 1);
    if (--k->left == 0)
        tt_timer_close(t);
}

static void start_ticker(ticker_t *k, int fd, uint64_t every_ms, int count)
{
    k->fd = fd;
    k->left = count;
    cr_assert_eq(tt_timer_init(loop, &k->t, tick_cb, k), 0);
    cr_assert_eq(tt_timer_start(k->t, every_ms, every_ms), 0);
}

/* Bytes readable on a plain socket within `ms`, appended to buf. */
static size_t drain_plain(int fd, char *buf, size_t cap, uint64_t ms)
{
    size_t got = 0;
    uint64_t end = th_now_ms() + ms;
    while (got < cap && th_now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        ssize_t n = recv(fd, buf + got, cap - got, MSG_DONTWAIT);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* ---- idle timeouts ----------------------------------------------------------------- */

static void set_read_idle_200(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_set_idle_timeout(c, TT_IDLE_READ, 200), 0);
}

Test(liveness, read_idle_timeout_closes_with_reason_error_and_kind)
{
    on_open_hook = set_read_idle_200;
    int fd = setup_plain_peer(NULL);

    run_until_closed(&srv, 2000);
    uint64_t took = srv.closed_at - srv.opened_at;
    cr_assert_eq(srv.closes, 1, "closes %d", srv.closes);
    cr_expect_eq(srv.info.kind, TT_CLOSE_IDLE_TIMEOUT, "kind %s",
                 tt_close_kind_name(srv.info.kind));
    cr_expect_eq(srv.info.error, TT_EIDLE, "error %s", tt_err_name(srv.info.error));
    cr_expect_eq(srv.info.detail, TT_IDLE_READ, "detail %d", srv.info.detail);
    cr_expect_eq(srv.idles, 1, "on_idle calls %d", srv.idles);
    cr_expect_eq(srv.idle_kind[0], TT_IDLE_READ, "on_idle kind %d", srv.idle_kind[0]);
    cr_expect(took >= 195 && took < 400, "closed after %llu ms, want ~200",
              (unsigned long long)took);
    close(fd);
    teardown_loop();
}

static void set_write_idle_300(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_set_idle_timeout(c, TT_IDLE_WRITE, 300), 0);
}

Test(liveness, write_idle_timeout_fires_although_reads_keep_arriving)
{
    ticker_t k;
    on_open_hook = set_write_idle_300;
    int fd = setup_plain_peer(NULL);

    start_ticker(&k, fd, 50, 100);
    run_until_closed(&srv, 2000);
    uint64_t took = srv.closed_at - srv.opened_at;
    cr_assert_eq(srv.closes, 1, "closes %d", srv.closes);
    cr_expect_eq(srv.info.kind, TT_CLOSE_IDLE_TIMEOUT, "kind %s",
                 tt_close_kind_name(srv.info.kind));
    cr_expect_eq(srv.info.detail, TT_IDLE_WRITE, "detail %d", srv.info.detail);
    cr_expect_geq(srv.got, 3, "reads before the close: %llu", (unsigned long long)srv.got);
    cr_expect(took >= 295 && took < 500, "closed after %llu ms, want ~300",
              (unsigned long long)took);
    tt_timer_close(k.t);
    close(fd);
    teardown_loop();
}

static void set_all_idle_300(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_set_idle_timeout(c, TT_IDLE_ALL, 300), 0);
}

Test(liveness, all_idle_waits_until_reads_stop_too)
{
    ticker_t k;
    on_open_hook = set_all_idle_300;
    int fd = setup_plain_peer(NULL);

    start_ticker(&k, fd, 50, 12); /* reads for 600 ms, then silence */
    run_until_closed(&srv, 3000);
    uint64_t took = srv.closed_at - srv.opened_at;
    cr_assert_eq(srv.closes, 1, "closes %d", srv.closes);
    cr_expect_eq(srv.info.kind, TT_CLOSE_IDLE_TIMEOUT, "kind %s",
                 tt_close_kind_name(srv.info.kind));
    cr_expect_eq(srv.info.detail, TT_IDLE_ALL, "detail %d", srv.info.detail);
    cr_expect_eq(srv.got, 12, "bytes read %llu", (unsigned long long)srv.got);
    cr_expect(took >= 880 && took < 1200, "closed after %llu ms, want ~900 (600 + 300)",
              (unsigned long long)took);
    close(fd);
    teardown_loop();
}

static bool keep_and_poke(tt_conn_t *c, int kind)
{
    (void)kind;
    cr_assert_eq(tt_send(c, "poke", 4), 0);
    return true;
}

static void set_read_idle_100(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_set_idle_timeout(c, TT_IDLE_READ, 100), 0);
}

Test(liveness, on_idle_returning_true_keeps_the_connection_and_may_send)
{
    char buf[256];
    on_open_hook = set_read_idle_100;
    on_idle_hook = keep_and_poke;
    int fd = setup_plain_peer(NULL);

    run_for(550);
    cr_expect_eq(srv.closes, 0, "closed: %s", tt_close_kind_name(srv.info.kind));
    cr_expect(srv.idles >= 4 && srv.idles <= 5, "on_idle calls %d in 550 ms at 100 ms",
              srv.idles);
    size_t got = drain_plain(fd, buf, sizeof(buf), 200);
    cr_expect_eq(got, (size_t)srv.idles * 4, "peer got %zu bytes for %d pokes", got,
                 srv.idles);
    for (size_t i = 0; i + 4 <= got; i += 4)
        cr_expect_eq(memcmp(buf + i, "poke", 4), 0, "poke %zu corrupted", i / 4);
    close(fd);
    teardown_loop();
}

Test(liveness, reads_restart_the_read_idle_timer)
{
    ticker_t k;
    on_open_hook = set_read_idle_200;
    int fd = setup_plain_peer(NULL);

    start_ticker(&k, fd, 50, 16); /* 800 ms of reads, far past one 200 ms period */
    run_until_closed(&srv, 3000);
    uint64_t took = srv.closed_at - srv.opened_at;
    cr_assert_eq(srv.closes, 1, "closes %d", srv.closes);
    cr_expect_eq(srv.info.detail, TT_IDLE_READ, "detail %d", srv.info.detail);
    cr_expect(took >= 980 && took < 1300, "closed after %llu ms, want ~1000 (800 + 200)",
              (unsigned long long)took);
    close(fd);
    teardown_loop();
}

/* ---- heartbeat and dead-after --------------------------------------------------------- */

static void heartbeat_100(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_set_heartbeat_bytes(c, "HB", 2, NULL, 0), 0);
    cr_assert_eq(tt_conn_set_heartbeat(c, 100, 0), 0);
}

Test(liveness, heartbeat_sends_the_ping_each_write_idle_interval)
{
    char buf[256];
    on_open_hook = heartbeat_100;
    int fd = setup_plain_peer(NULL);

    run_for(550);
    size_t got = drain_plain(fd, buf, sizeof(buf), 100);
    cr_expect_eq(got % 2, 0, "odd byte count %zu", got);
    cr_expect(got >= 8 && got <= 10, "got %zu bytes = %zu pings in 550 ms at 100 ms", got,
              got / 2);
    for (size_t i = 0; i + 2 <= got; i += 2)
        cr_expect_eq(memcmp(buf + i, "HB", 2), 0, "ping %zu corrupted", i / 2);
    cr_expect_eq(srv.closes, 0, "closed: %s", tt_close_kind_name(srv.info.kind));
    close(fd);
    teardown_loop();
}

static void dead_after_300(tt_conn_t *c) { cr_assert_eq(tt_conn_set_heartbeat(c, 0, 300), 0); }

Test(liveness, silent_peer_is_closed_after_dead_after_with_a_reset)
{
    char b;
    on_open_hook = dead_after_300;
    int fd = setup_plain_peer(NULL);

    run_until_closed(&srv, 2000);
    uint64_t took = srv.closed_at - srv.opened_at;
    cr_assert_eq(srv.closes, 1, "closes %d", srv.closes);
    cr_expect_eq(srv.info.kind, TT_CLOSE_HEARTBEAT_TIMEOUT, "kind %s",
                 tt_close_kind_name(srv.info.kind));
    cr_expect_eq(srv.info.error, TT_EHEARTBEAT, "error %s", tt_err_name(srv.info.error));
    cr_expect(took >= 295 && took < 500, "closed after %llu ms, want ~300",
              (unsigned long long)took);
    /* The peer is presumed gone: tether resets rather than leaving an orphan. */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_expect_eq(poll(&p, 1, 1000), 1);
    ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT);
    int e = errno;
    cr_expect(n < 0 && e == ECONNRESET, "recv %zd errno %s, want ECONNRESET", n, strerror(e));
    close(fd);
    teardown_loop();
}

Test(liveness, pong_answers_ping_and_heartbeats_never_reach_on_data)
{
    tt_liveness_opts_t lv = {.ping = "PING", .ping_len = 4, .pong = "PONG", .pong_len = 4};
    tt_server_opts_t o = {.liveness = &lv};
    char buf[16];
    int fd = setup_plain_peer(&o);

    cr_assert_eq(send(fd, "PING", 4, 0), 4);
    for (uint64_t end = th_now_ms() + 500; th_now_ms() < end;)
        tt_loop_run(loop, TT_RUN_NOWAIT);
    size_t got = drain_plain(fd, buf, 4, 500);
    cr_expect_eq(got, 4, "pong bytes %zu", got);
    cr_expect_eq(memcmp(buf, "PONG", 4), 0, "answer was %.4s", buf);
    cr_assert_eq(send(fd, "PONG", 4, 0), 4); /* an answer to a ping of ours: hidden */
    run_for(100);
    cr_assert_eq(send(fd, "hello", 5, 0), 5);
    run_for(100);
    cr_expect_eq(srv.got, 5, "on_data got %llu bytes, want only the 5 of hello",
                 (unsigned long long)srv.got);
    cr_expect_eq(memcmp(srv.head, "hello", 5), 0);
    close(fd);
    teardown_loop();
}

static void client_open_liveness(tt_conn_t *c)
{
    tt_liveness_opts_t lv = {.detect_within_ms = 400, .ping = "PING", .ping_len = 4,
                             .pong = "PONG", .pong_len = 4};
    cr_assert_eq(tt_conn_set_liveness(c, &lv), 0);
}

Test(liveness, two_tether_peers_with_detect_within_stay_alive_while_idle)
{
    tt_liveness_opts_t lv = {.ping = "PING", .ping_len = 4, .pong = "PONG", .pong_len = 4};
    tt_server_opts_t o = {.detect_within_ms = 400, .liveness = &lv};
    tt_conn_handlers_t ch = handlers;
    tt_addr_t any = th_loopback(0), addr;
    tt_conn_t *c;

    ch.on_open = client_open_liveness;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &o, &handlers, NULL, &server), 0);
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, NULL, &c), 0);
    cli.conn = c;
    run_for(2000); /* five detection periods without a byte of application data */
    cr_expect_eq(srv.closes, 0, "server closed: %s", tt_close_kind_name(srv.info.kind));
    cr_expect_eq(cli.closes, 0, "client closed: %s", tt_close_kind_name(cli.info.kind));
    cr_expect_eq(srv.got + cli.got, 0, "heartbeats leaked into on_data: %llu bytes",
                 (unsigned long long)(srv.got + cli.got));
    tt_conn_stats_t st;
    cr_assert_eq(tt_conn_get_stats(c, &st), 0);
    cr_expect_geq(st.bytes_in, 4 * 4, "client saw %llu heartbeat bytes",
                  (unsigned long long)st.bytes_in);
    teardown_loop();
}

static void paused_dead_after_300(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_read_stop(c), 0);
    cr_assert_eq(tt_conn_set_heartbeat(c, 0, 300), 0);
}

Test(liveness, paused_reading_counts_bytes_the_kernel_received)
{
    ticker_t k;
    on_open_hook = paused_dead_after_300;
    int fd = setup_plain_peer(NULL);

    start_ticker(&k, fd, 50, 20); /* 1000 ms of bytes nobody reads */
    run_until_closed(&srv, 3000);
    uint64_t took = srv.closed_at - srv.opened_at;
    cr_assert_eq(srv.closes, 1, "closes %d", srv.closes);
    cr_expect_eq(srv.info.kind, TT_CLOSE_HEARTBEAT_TIMEOUT, "kind %s",
                 tt_close_kind_name(srv.info.kind));
    cr_expect_eq(srv.got, 0, "read %llu bytes while paused", (unsigned long long)srv.got);
    /* Last byte at ~1000 ms; sampled every 75 ms: dead at most 300 ms after the
     * sample before it. */
    cr_expect(took >= 1000 && took < 1450, "closed after %llu ms, want 1000..1300",
              (unsigned long long)took);
    close(fd);
    teardown_loop();
}

static char bulk[64 * 1024];

static void pump(tt_conn_t *c)
{
    while (tt_send(c, bulk, sizeof(bulk)) == 0)
        ;
}

static void bulk_dead_after_300(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_set_heartbeat(c, 0, 300), 0);
    pump(c);
}

Test(liveness, bulk_send_to_a_reader_that_never_talks_is_not_dead)
{
    tt_conn_handlers_t h = handlers;
    tt_addr_t any = th_loopback(0), addr;
    th_sink_t sink = {0};
    int fd;

    h.on_drain = pump;
    on_open_hook = bulk_dead_after_300;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, NULL, &h, NULL, &server), 0);
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 5000);
    run_for(1500); /* five dead-after periods of only acknowledgements coming back */
    cr_expect_eq(srv.closes, 0, "closed: %s", tt_close_kind_name(srv.info.kind));
    cr_expect_gt(tt_conn_written_bytes(srv.conn), 1024 * 1024, "wrote only %llu bytes",
                 (unsigned long long)tt_conn_written_bytes(srv.conn));
    tt_destroy(srv.conn, 0);
    run_for(50);
    th_sink_join(&sink);
    close(fd);
    teardown_loop();
}

/* ---- heartbeats are not the app's traffic ----------------------------------------------- */

static void heartbeat_100_write_idle_350(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_set_heartbeat_bytes(c, "HB", 2, NULL, 0), 0);
    cr_assert_eq(tt_conn_set_heartbeat(c, 100, 0), 0);
    cr_assert_eq(tt_conn_set_idle_timeout(c, TT_IDLE_WRITE, 350), 0);
}

/* The heartbeat writes every 100 ms, the app never: write-idle must still fire. */
Test(liveness, heartbeats_do_not_count_as_the_apps_writes_for_write_idle)
{
    char buf[256];
    on_open_hook = heartbeat_100_write_idle_350;
    int fd = setup_plain_peer(NULL);

    run_until_closed(&srv, 1500);
    uint64_t took = srv.closed_at - srv.opened_at;
    cr_assert(srv.closed, "write-idle never fired while heartbeats ran");
    cr_expect_eq(srv.info.kind, TT_CLOSE_IDLE_TIMEOUT, "kind %s",
                 tt_close_kind_name(srv.info.kind));
    cr_expect_eq(srv.info.detail, TT_IDLE_WRITE, "detail %d", srv.info.detail);
    cr_expect(took >= 345 && took < 600, "closed after %llu ms, want ~350",
              (unsigned long long)took);
    size_t got = drain_plain(fd, buf, sizeof(buf), 100);
    cr_expect_geq(got, 4, "only %zu heartbeat bytes before the close", got);
    for (size_t i = 0; i + 2 <= got; i += 2)
        cr_expect_eq(memcmp(buf + i, "HB", 2), 0, "byte %zu is not a heartbeat", i);
    close(fd);
    teardown_loop();
}

static void pongs_only(tt_timer_t *t, void *data)
{
    int *fd = data;
    (void)t;
    cr_assert_eq(send(*fd, "PONG", 4, MSG_NOSIGNAL), 4);
}

/* The peer sends heartbeat answers every 50 ms and nothing else: they are hidden
 * from on_data, and they do not keep read-idle (nor all-idle) from firing. */
Test(liveness, heartbeat_answers_received_do_not_count_as_the_apps_reads_for_read_idle)
{
    tt_liveness_opts_t lv = {.ping = "PING", .ping_len = 4, .pong = "PONG", .pong_len = 4,
                             .idle_read_ms = 350};
    tt_server_opts_t o = {.liveness = &lv};
    tt_timer_t *t;
    int fd = setup_plain_peer(&o);

    cr_assert_eq(tt_timer_init(loop, &t, pongs_only, &fd), 0);
    cr_assert_eq(tt_timer_start(t, 50, 50), 0);
    run_until_closed(&srv, 1500);
    tt_timer_close(t);
    uint64_t took = srv.closed_at - srv.opened_at;
    cr_assert(srv.closed, "read-idle never fired while only heartbeat answers came");
    cr_expect_eq(srv.info.detail, TT_IDLE_READ, "detail %d", srv.info.detail);
    cr_expect(took >= 345 && took < 600, "closed after %llu ms, want ~350",
              (unsigned long long)took);
    cr_expect_eq(srv.got, 0, "heartbeats reached on_data: %llu bytes",
                 (unsigned long long)srv.got);
    close(fd);
    teardown_loop();
}

static void framed_with_control_write_idle_350(tt_conn_t *c)
{
    tt_frame_opts_t fo = tt_frame_u32be(0);
    fo.control = true;
    cr_assert_eq(tt_conn_set_framing(c, &fo), 0);
    cr_assert_eq(tt_conn_set_idle_timeout(c, TT_IDLE_WRITE, 350), 0);
}

static void framing_pings(tt_timer_t *t, void *data)
{
    int *fd = data;
    (void)t;
    cr_assert_eq(send(*fd, "\xff\xff\xff\xff", 4, MSG_NOSIGNAL), 4);
}

/* The peer sends framing pings every 50 ms; the framing layer answers each with a
 * pong. Those pongs are not the app's writes: write-idle still fires. */
Test(liveness, framing_pongs_do_not_count_as_the_apps_writes_for_write_idle)
{
    char buf[256];
    tt_timer_t *t;
    on_open_hook = framed_with_control_write_idle_350;
    int fd = setup_plain_peer(NULL);

    cr_assert_eq(tt_timer_init(loop, &t, framing_pings, &fd), 0);
    cr_assert_eq(tt_timer_start(t, 50, 50), 0);
    run_until_closed(&srv, 1500);
    tt_timer_close(t);
    uint64_t took = srv.closed_at - srv.opened_at;
    cr_assert(srv.closed, "write-idle never fired while the framing layer answered pings");
    cr_expect_eq(srv.info.detail, TT_IDLE_WRITE, "detail %d", srv.info.detail);
    cr_expect(took >= 345 && took < 600, "closed after %llu ms, want ~350",
              (unsigned long long)took);
    size_t got = drain_plain(fd, buf, sizeof(buf), 100);
    cr_expect_geq(got, 8, "only %zu bytes of pongs came back", got);
    for (size_t i = 0; i + 4 <= got; i += 4)
        cr_expect_eq(memcmp(buf + i, "\xff\xff\xff\xfe", 4), 0, "byte %zu is not a pong", i);
    close(fd);
    teardown_loop();
}

/* ---- which proof of life counts ---------------------------------------------------------- */

/* tether's answering (ping and pong set) with the knob: a peer that never answers
 * is judged by its kernel, so a silent plain socket lives; once it has answered,
 * the heartbeat applies, and silence past dead-after closes it. */
Test(liveness, answering_applies_the_heartbeat_only_once_the_peer_has_answered)
{
    tt_liveness_opts_t lv = {.ping = "PING", .ping_len = 4, .pong = "PONG", .pong_len = 4};
    tt_server_opts_t o = {.detect_within_ms = 400, .liveness = &lv};
    int fd = setup_plain_peer(&o);

    run_for(2000); /* five windows: dead-after (360 ms) would have closed it */
    cr_assert_eq(srv.closes, 0, "a silent live peer was closed: %s",
                 tt_close_kind_name(srv.info.kind));
    cr_assert_eq(send(fd, "PONG", 4, 0), 4); /* it speaks the heartbeat now */
    uint64_t t0 = th_now_ms();
    run_until_closed(&srv, 3000);
    uint64_t took = srv.closed_at - t0;
    cr_assert(srv.closed, "a peer that answered once, then fell silent, was not closed");
    cr_expect_eq(srv.info.kind, TT_CLOSE_HEARTBEAT_TIMEOUT, "kind %s",
                 tt_close_kind_name(srv.info.kind));
    cr_expect(took >= 340 && took < 700, "closed %llu ms after its answer, want ~360",
              (unsigned long long)took);
    close(fd);
    teardown_loop();
}

/* A dead-after time the app set itself is a promise that the peer talks: a
 * silent peer is closed, whatever its kernel says (see the reset test above);
 * the knob alone makes no such promise. */
Test(liveness, the_knob_alone_keeps_a_silent_peer_whose_kernel_answers)
{
    tt_server_opts_t o = {.detect_within_ms = 400};
    int fd = setup_plain_peer(&o);

    run_for(2500); /* keepalive answers every 1 s; the kernel deadline is 1.5 s */
    cr_expect_eq(srv.closes, 0, "a silent live peer was closed: %s (%s)",
                 tt_close_kind_name(srv.info.kind), tt_strerror(srv.info.error));
    tt_tcp_info_t ti;
    cr_assert_eq(tt_conn_get_tcp_info(srv.conn, &ti), 0);
    cr_expect_eq(ti.bytes_received, 0, "the peer sent %llu bytes",
                 (unsigned long long)ti.bytes_received);
    close(fd);
    teardown_loop();
}

/* ---- a failing TCP_INFO ------------------------------------------------------------------- */

static void paused_dead_after_400(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_read_stop(c), 0);
    cr_assert_eq(tt_conn_set_heartbeat(c, 0, 400), 0);
}

/* With reading paused, liveness samples TCP_INFO every 100 ms. When that fails
 * (here the descriptor is made to name a UDP socket: TCP_INFO is refused, SO_ERROR
 * reads 0), the next sample must still be a step away, not in the past: the loop
 * waits for it instead of spinning until the dead-after time. */
Test(liveness, a_failing_tcp_info_does_not_spin_the_loop)
{
    on_open_hook = paused_dead_after_400;
    int fd = setup_plain_peer(NULL);
    int sfd = tt_conn_fd(srv.conn), u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    int rounds = 0;

    cr_assert_geq(u, 0);
    cr_assert_eq(dup2(u, sfd), sfd);
    close(u);
    cr_assert_neq(getsockopt(sfd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
    for (uint64_t end = th_now_ms() + 2000; !srv.closed && th_now_ms() < end; rounds++)
        tt_loop_run(loop, TT_RUN_ONCE);
    uint64_t took = srv.closed_at - srv.opened_at;
    cr_assert(srv.closed, "not closed within 2 s");
    cr_expect_eq(srv.info.kind, TT_CLOSE_HEARTBEAT_TIMEOUT, "kind %s",
                 tt_close_kind_name(srv.info.kind));
    cr_expect(took >= 395 && took < 700, "closed after %llu ms, want ~400",
              (unsigned long long)took);
    cr_expect_lt(rounds, 40, "%d loop rounds in %llu ms: the timer spun", rounds,
                 (unsigned long long)took);
    close(fd);
    teardown_loop();
}

/* ---- the one knob ---------------------------------------------------------------------- */

Test(liveness, derive_follows_the_documented_formula)
{
    static const uint64_t ns[] = {100, 1000, 2222, 3000, 8000, 36000, 600000, TT_TIMEOUT_MAX};
    tt_liveness_opts_t d;

    for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        uint64_t n = ns[i], total_s = n * 9 / 10 / 1000;
        cr_assert_eq(tt_liveness_derive(n, &d), 0, "N=%llu", (unsigned long long)n);
        cr_expect_eq(d.detect_within_ms, n);
        cr_expect_eq(d.heartbeat_ms, n / 4, "N=%llu hb %llu", (unsigned long long)n,
                     (unsigned long long)d.heartbeat_ms);
        cr_expect_eq(d.dead_after_ms, n * 9 / 10);
        cr_expect_eq(d.user_timeout_ms, n * 3 / 5 > INT_MAX ? INT_MAX : n * 3 / 5);
        cr_expect_lt(d.heartbeat_ms * 3, d.dead_after_ms, "N=%llu: a healthy peer could "
                     "look dead", (unsigned long long)n);
        cr_expect_lt(d.user_timeout_ms, d.dead_after_ms - d.dead_after_ms / 4,
                     "N=%llu: the user timeout must win while data is acknowledged",
                     (unsigned long long)n);
        cr_expect(d.keepalive_idle_s >= 1 && d.keepalive_intvl_s >= 1 && d.keepalive_cnt >= 1,
                  "N=%llu keepalive %d/%d/%d", (unsigned long long)n, d.keepalive_idle_s,
                  d.keepalive_intvl_s, d.keepalive_cnt);
        uint64_t ka = (uint64_t)d.keepalive_idle_s +
                      (uint64_t)d.keepalive_cnt * (uint64_t)d.keepalive_intvl_s;
        if (total_s >= 2)
            cr_expect_leq(ka, total_s, "N=%llu: keepalive ends at %llu s, past %llu s",
                          (unsigned long long)n, (unsigned long long)ka,
                          (unsigned long long)total_s);
        else
            cr_expect_eq(ka, 2, "N=%llu: the floor is 1 s idle + 1 probe of 1 s",
                         (unsigned long long)n);
    }
    /* The presets from the guide. */
    cr_assert_eq(tt_liveness_derive(TT_DETECT_STRICT_MS, &d), 0);
    cr_expect(d.keepalive_idle_s == 2 && d.keepalive_intvl_s == 1 && d.keepalive_cnt == 5,
              "strict keepalive %d/%d/%d", d.keepalive_idle_s, d.keepalive_intvl_s,
              d.keepalive_cnt);
    cr_assert_eq(tt_liveness_derive(TT_DETECT_RELAXED_MS, &d), 0);
    cr_expect(d.keepalive_idle_s == 10 && d.keepalive_intvl_s == 7 && d.keepalive_cnt == 3,
              "relaxed keepalive %d/%d/%d", d.keepalive_idle_s, d.keepalive_intvl_s,
              d.keepalive_cnt);
    cr_expect_eq(tt_liveness_derive(TT_DETECT_MIN_MS - 1, &d), -EINVAL);
    cr_expect_eq(tt_liveness_derive(TT_TIMEOUT_MAX + 1, &d), -EINVAL);
    cr_expect_eq(tt_liveness_derive(1000, NULL), -EINVAL);
}

static int get_opt(int fd, int level, int opt)
{
    int v = -1;
    socklen_t len = sizeof(v);
    cr_assert_eq(getsockopt(fd, level, opt, &v, &len), 0, "getsockopt %d: %s", opt,
                 strerror(errno));
    return v;
}

Test(liveness, server_detect_within_sets_keepalive_and_user_timeout_on_accepted_sockets)
{
    tt_server_opts_t o = {.detect_within_ms = TT_DETECT_STRICT_MS};
    int fd = setup_plain_peer(&o);
    int sfd = tt_conn_fd(srv.conn);

    cr_assert_geq(sfd, 0);
    cr_expect_eq(get_opt(sfd, SOL_SOCKET, SO_KEEPALIVE), 1);
    cr_expect_eq(get_opt(sfd, IPPROTO_TCP, TCP_KEEPIDLE), 2);
    cr_expect_eq(get_opt(sfd, IPPROTO_TCP, TCP_KEEPINTVL), 1);
    cr_expect_eq(get_opt(sfd, IPPROTO_TCP, TCP_KEEPCNT), 5);
    cr_expect_eq(get_opt(sfd, IPPROTO_TCP, TCP_USER_TIMEOUT), 4800);
    /* Per connection, the knob can be changed. */
    cr_assert_eq(tt_conn_set_detect_within(srv.conn, 3000), 0);
    cr_expect_eq(get_opt(sfd, IPPROTO_TCP, TCP_USER_TIMEOUT), 1800);
    cr_expect_eq(get_opt(sfd, IPPROTO_TCP, TCP_KEEPIDLE), 1);
    close(fd);
    teardown_loop();
}

Test(liveness, invalid_settings_return_einval_and_change_nothing)
{
    tt_liveness_opts_t bad_ka = {.keepalive_idle_s = 1, .keepalive_intvl_s = 0,
                                 .keepalive_cnt = 3};
    tt_liveness_opts_t same = {.ping = "HB", .ping_len = 2, .pong = "HB", .pong_len = 2};
    tt_liveness_opts_t null_len = {.ping = NULL, .ping_len = 3};
    tt_liveness_opts_t short_knob = {.detect_within_ms = 50, .user_timeout_ms = 10};
    tt_server_opts_t so = {.detect_within_ms = 5};
    tt_addr_t any = th_loopback(0);
    tt_server_t *s2 = NULL;
    int fd = setup_plain_peer(NULL);
    tt_conn_t *c = srv.conn;
    int sfd = tt_conn_fd(c);

    cr_expect_eq(tt_conn_set_idle_timeout(c, 0, 100), -EINVAL);
    cr_expect_eq(tt_conn_set_idle_timeout(c, 4, 100), -EINVAL);
    cr_expect_eq(tt_conn_set_idle_timeout(c, TT_IDLE_READ, TT_TIMEOUT_MAX + 1), -EINVAL);
    cr_expect_eq(tt_conn_set_idle_timeout(NULL, TT_IDLE_READ, 100), -EINVAL);
    cr_expect_eq(tt_conn_set_heartbeat(c, TT_TIMEOUT_MAX + 1, 0), -EINVAL);
    cr_expect_eq(tt_conn_set_heartbeat_bytes(c, "HB", 2, "HB", 2), -EINVAL);
    cr_expect_eq(tt_conn_set_heartbeat_bytes(c, NULL, 2, NULL, 0), -EINVAL);
    cr_expect_eq(tt_conn_set_keepalive_params(c, 0, 1, 1), -EINVAL);
    cr_expect_eq(tt_conn_set_keepalive_params(c, 1, 1, 128), -EINVAL);
    cr_expect_eq(tt_conn_set_keepalive_params(c, 32768, 1, 1), -EINVAL);
    cr_expect_eq(tt_conn_set_user_timeout(c, (uint64_t)INT_MAX + 1), -EINVAL);
    cr_expect_eq(tt_conn_set_detect_within(c, TT_DETECT_MIN_MS - 1), -EINVAL);
    cr_expect_eq(tt_conn_set_liveness(c, &bad_ka), -EINVAL);
    cr_expect_eq(tt_conn_set_liveness(c, &same), -EINVAL);
    cr_expect_eq(tt_conn_set_liveness(c, &null_len), -EINVAL);
    cr_expect_eq(tt_conn_set_liveness(c, &short_knob), -EINVAL);
    cr_expect_eq(tt_server_listen(loop, &any, &so, &handlers, NULL, &s2), -EINVAL);
    cr_expect_null(s2);
    /* Nothing reached the socket, and no timer was armed. */
    cr_expect_eq(get_opt(sfd, SOL_SOCKET, SO_KEEPALIVE), 0);
    cr_expect_eq(get_opt(sfd, IPPROTO_TCP, TCP_USER_TIMEOUT), 0);
    run_for(300);
    cr_expect_eq(srv.closes, 0, "closed: %s", tt_close_kind_name(srv.info.kind));
    cr_expect_eq(srv.idles, 0);
    /* And the valid forms do what they say. */
    cr_expect_eq(tt_conn_set_keepalive_params(c, 7, 3, 4), 0);
    cr_expect_eq(get_opt(sfd, SOL_SOCKET, SO_KEEPALIVE), 1);
    cr_expect_eq(get_opt(sfd, IPPROTO_TCP, TCP_KEEPIDLE), 7);
    cr_expect_eq(get_opt(sfd, IPPROTO_TCP, TCP_KEEPINTVL), 3);
    cr_expect_eq(get_opt(sfd, IPPROTO_TCP, TCP_KEEPCNT), 4);
    cr_expect_eq(tt_conn_set_user_timeout(c, 1234), 0);
    cr_expect_eq(get_opt(sfd, IPPROTO_TCP, TCP_USER_TIMEOUT), 1234);
    cr_expect_eq(tt_conn_set_liveness(c, NULL), 0);
    close(fd);
    teardown_loop();
}

Test(liveness, settings_on_a_closing_connection_return_enotconn)
{
    int fd = setup_plain_peer(NULL);
    tt_conn_t *c = srv.conn;

    cr_assert_eq(tt_destroy(c, 0), 0);
    cr_expect_eq(tt_conn_set_idle_timeout(c, TT_IDLE_READ, 100), -ENOTCONN);
    cr_expect_eq(tt_conn_set_heartbeat(c, 100, 300), -ENOTCONN);
    cr_expect_eq(tt_conn_set_detect_within(c, 1000), -ENOTCONN);
    cr_expect_eq(tt_conn_set_keepalive_params(c, 1, 1, 1), -ENOTCONN);
    cr_expect_eq(tt_conn_set_user_timeout(c, 100), -ENOTCONN);
    run_for(100);
    cr_expect_eq(srv.closes, 1);
    cr_expect_eq(srv.info.kind, TT_CLOSE_LOCAL_DESTROY, "kind %s",
                 tt_close_kind_name(srv.info.kind));
    close(fd);
    teardown_loop();
}
