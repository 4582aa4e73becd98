/* Reading: a peer that dribbles one byte at a time, a tiny receive buffer, reading
 * flow control (read_stop/read_start) and the `pending` figure of on_data. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

typedef struct rec {
    int opens, ends, errors, closes, datas;
    tt_close_info_t info;
    uint64_t got;
    long bad_at;
    size_t first_len, first_pending, last_pending, max_len;
    int datas_with_pending;
    tt_conn_t *conn;
} rec_t;

static rec_t cli = {.bad_at = -1}, srv = {.bad_at = -1};
static tt_loop_t *loop;
static tt_server_t *server;
static void (*srv_open_hook)(tt_conn_t *c);
static void (*cli_open_hook)(tt_conn_t *c);
static void (*srv_close_hook)(tt_conn_t *c);
/* Expected bytes: the shared pattern, or the python peer's own sequence. */
static bool python_bytes;

static unsigned char py_byte(uint64_t i) { return (unsigned char)((i * 31 + 7) % 251); }

static void on_open(tt_conn_t *c)
{
    rec_t *r = tt_conn_get_data(c);
    if (r == NULL) {
        r = &srv;
        tt_conn_set_data(c, r);
    }
    r->opens++;
    r->conn = c;
    if (r == &srv && srv_open_hook)
        srv_open_hook(c);
    if (r == &cli && cli_open_hook)
        cli_open_hook(c);
}
static void on_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    rec_t *r = tt_conn_get_data(c);
    const unsigned char *p = d;
    if (r->datas == 0) {
        r->first_len = n;
        r->first_pending = pending;
    }
    r->datas++;
    r->last_pending = pending;
    if (pending > 0)
        r->datas_with_pending++;
    if (n > r->max_len)
        r->max_len = n;
    if (r->bad_at < 0) {
        long bad = -1;
        if (python_bytes) {
            for (size_t i = 0; i < n && bad < 0; i++)
                if (p[i] != py_byte(r->got + i))
                    bad = (long)i;
        } else {
            bad = th_pattern_check(d, n, r->got);
        }
        if (bad >= 0)
            r->bad_at = (long)r->got + bad;
    }
    r->got += n;
}
static void on_end(tt_conn_t *c)
{
    rec_t *r = tt_conn_get_data(c);
    r->ends++;
}
static void on_error(tt_conn_t *c, int err)
{
    rec_t *r = tt_conn_get_data(c);
    (void)err;
    r->errors++;
}
static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    rec_t *r = tt_conn_get_data(c);
    r->closes++;
    r->info = *info;
    if (r == &srv && srv_close_hook)
        srv_close_hook(c);
    r->conn = NULL;
    if (r == &srv && server != NULL) {
        tt_server_close(server);
        server = NULL;
    }
}

static const tt_conn_handlers_t H = {.on_open = on_open, .on_data = on_data, .on_end = on_end,
                                     .on_error = on_error, .on_close = on_close};

static tt_addr_t start_server(void)
{
    tt_addr_t any = th_loopback(0), addr;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, NULL, &H, NULL, &server), 0);
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    return addr;
}

static void send_pattern(tt_conn_t *c, uint64_t off, uint64_t len)
{
    static char buf[64 * 1024];
    while (len > 0) {
        size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
        th_pattern(buf, n, off);
        int r = tt_send(c, buf, n);
        cr_assert(r == 0 || r == TT_SEND_FULL, "send: %s", tt_strerror(r));
        off += n;
        len -= n;
    }
}

/* ---- one byte at a time ------------------------------------------------------- */

#define DRIBBLE 1500

Test(read, one_byte_writes_arrive_complete_and_in_order)
{
    tt_addr_t addr = start_server();
    char cmd[1024], line[128] = {0};
    python_bytes = true;

    /* TCP_NODELAY and a pause after every byte: each byte is its own segment. */
    snprintf(cmd, sizeof(cmd),
             "timeout 30 python3 -c '\n"
             "import socket, sys, time\n"
             "s = socket.create_connection((\"127.0.0.1\", %u), timeout=10)\n"
             "s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n"
             "for i in range(%d):\n"
             "    s.sendall(bytes([(i * 31 + 7) %% 251]))\n"
             "    time.sleep(0.0005)\n"
             "s.shutdown(socket.SHUT_WR)\n"
             "while s.recv(4096): pass\n"
             "print(\"sent\", %d)\n"
             "'",
             tt_addr_port(&addr), DRIBBLE, DRIBBLE);
    FILE *py = popen(cmd, "r");
    cr_assert_not_null(py);
    th_run(loop, 30000);
    char *ok = fgets(line, sizeof(line), py);
    int st = pclose(py);

    cr_expect_not_null(ok, "python peer printed nothing (status %d)", st);
    cr_expect_eq(st, 0, "python peer exit status %d", st);
    cr_expect_eq(srv.got, DRIBBLE, "got %llu of %d", (unsigned long long)srv.got, DRIBBLE);
    cr_expect_eq(srv.bad_at, -1, "stream broken at %ld", srv.bad_at);
    /* The reads really were small: otherwise this proves nothing about them. */
    cr_expect_gt(srv.datas, DRIBBLE / 4, "only %d reads for %d one-byte writes", srv.datas,
                 DRIBBLE);
    cr_expect_eq(srv.ends, 1);
    cr_expect_eq(srv.info.kind, TT_CLOSE_PEER_CLOSED, "kind '%s'",
                 tt_close_kind_name(srv.info.kind));
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- a tiny receive buffer ------------------------------------------------------ */

/* 16 KiB, set after the handshake. Much smaller stalls loopback TCP itself: with a
 * 64 KiB MSS the window stays below one segment and only persist probes move data. */

#define SMALL_TOTAL ((uint64_t)2 << 20)
static int rcvbuf_set, rcvbuf_now;

static void shrink_rcvbuf(tt_conn_t *c)
{
    socklen_t len = sizeof(rcvbuf_now);
    rcvbuf_set = tt_conn_set_rcvbuf(c, 16384);
    getsockopt(tt_conn_fd(c), SOL_SOCKET, SO_RCVBUF, &rcvbuf_now, &len);
}

static void send_small_total(tt_conn_t *c)
{
    send_pattern(c, 0, SMALL_TOTAL);
    cr_assert_eq(tt_end(c, NULL, 0), 0);
}

Test(read, small_receive_buffer_still_delivers_everything_in_order)
{
    tt_conn_t *c;
    tt_addr_t addr = start_server();
    srv_open_hook = shrink_rcvbuf;
    cli_open_hook = send_small_total;
    cr_assert_eq(tt_connect(loop, &addr, NULL, &H, &cli, &c), 0);
    th_run(loop, 20000);

    cr_expect_eq(rcvbuf_set, 0);
    cr_expect_leq(rcvbuf_now, 32768, "SO_RCVBUF is %d (16 KiB asked, the kernel doubles)",
                  rcvbuf_now);
    cr_expect_eq(srv.got, SMALL_TOTAL, "got %llu", (unsigned long long)srv.got);
    cr_expect_eq(srv.bad_at, -1, "stream broken at %ld", srv.bad_at);
    cr_expect_gt(srv.datas, 64, "only %d reads through a 16 KiB buffer", srv.datas);
    cr_expect_eq(cli.info.kind, TT_CLOSE_LOCAL_END);
    cr_expect_eq(srv.info.kind, TT_CLOSE_PEER_CLOSED);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- read_stop / read_start ---------------------------------------------------- */

#define TICK_BYTES ((size_t)64 * 1024)
#define PAUSE_TICKS 30

static struct {
    int ticks;
    uint64_t sent;
    size_t queued_at_10, queued_at_29;
    uint64_t written_at_10, written_at_29;
    int srv_datas_paused;
    bool reading_paused, reading_resumed;
    int stop_r, start_r, closing_stop, closing_start;
} fc;

/* Small kernel buffers on both sides, so they fill within the first ticks and the
 * rest of what is sent while paused must stay in tether's queue. */
static void pause_reading(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_set_rcvbuf(c, 64 * 1024), 0);
    fc.stop_r = tt_conn_read_stop(c);
    fc.reading_paused = tt_conn_is_reading(c);
}

static void small_sndbuf(tt_conn_t *c) { cr_assert_eq(tt_conn_set_sndbuf(c, 64 * 1024), 0); }

static void read_calls_when_closing(tt_conn_t *c)
{
    fc.closing_stop = tt_conn_read_stop(c);
    fc.closing_start = tt_conn_read_start(c);
}

static void tick(tt_timer_t *t, void *data)
{
    (void)data;
    tt_conn_t *c = cli.conn;
    cr_assert_not_null(c);
    fc.ticks++;
    if (fc.ticks <= PAUSE_TICKS) {
        send_pattern(c, fc.sent, TICK_BYTES);
        fc.sent += TICK_BYTES;
    }
    if (fc.ticks == 10) {
        fc.queued_at_10 = tt_conn_queued_bytes(c);
        fc.written_at_10 = tt_conn_written_bytes(c);
    }
    if (fc.ticks == PAUSE_TICKS - 1) {
        fc.queued_at_29 = tt_conn_queued_bytes(c);
        fc.written_at_29 = tt_conn_written_bytes(c);
    }
    if (fc.ticks == PAUSE_TICKS) {
        fc.srv_datas_paused = srv.datas;
        cr_assert_not_null(srv.conn);
        fc.start_r = tt_conn_read_start(srv.conn);
        fc.reading_resumed = tt_conn_is_reading(srv.conn);
        cr_assert_eq(tt_end(c, NULL, 0), 0);
        tt_timer_close(t);
    }
}

Test(read, read_stop_pauses_on_data_until_read_start_and_everything_arrives)
{
    tt_conn_t *c;
    tt_timer_t *t;
    tt_addr_t addr = start_server();
    srv_open_hook = pause_reading;
    cli_open_hook = small_sndbuf;
    srv_close_hook = read_calls_when_closing;
    cr_assert_eq(tt_connect(loop, &addr, NULL, &H, &cli, &c), 0);
    cr_assert_eq(tt_timer_init(loop, &t, tick, NULL), 0);
    cr_assert_eq(tt_timer_start(t, 10, 10), 0);
    th_run(loop, 20000);

    cr_expect_eq(fc.stop_r, 0);
    cr_expect(!fc.reading_paused, "is_reading true after read_stop");
    cr_expect_eq(fc.srv_datas_paused, 0, "%d on_data calls while reading was stopped",
                 fc.srv_datas_paused);
    cr_expect_gt(fc.queued_at_29, fc.queued_at_10, "sender's queue did not grow: %zu -> %zu",
                 fc.queued_at_10, fc.queued_at_29);
    cr_expect_eq(fc.written_at_29, fc.written_at_10,
                 "the kernel kept taking bytes (%llu -> %llu): the peer is not pushing back",
                 (unsigned long long)fc.written_at_10, (unsigned long long)fc.written_at_29);
    cr_expect_eq(fc.start_r, 0);
    cr_expect(fc.reading_resumed);
    cr_expect_eq(srv.got, fc.sent, "server got %llu of %llu", (unsigned long long)srv.got,
                 (unsigned long long)fc.sent);
    cr_expect_eq(srv.bad_at, -1, "stream broken at %ld", srv.bad_at);
    cr_expect_eq(fc.closing_stop, -ENOTCONN, "read_stop on a closing connection: %d",
                 fc.closing_stop);
    cr_expect_eq(fc.closing_start, -ENOTCONN);
    cr_expect_eq(tt_conn_read_stop(NULL), -EINVAL);
    cr_expect_eq(tt_conn_read_start(NULL), -EINVAL);
    cr_expect_eq(cli.info.kind, TT_CLOSE_LOCAL_END);
    cr_expect_eq(srv.info.kind, TT_CLOSE_PEER_CLOSED);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- pending --------------------------------------------------------------------- */

#define MEG ((uint64_t)1 << 20)
static int avail_at_resume;

static void pause_with_big_rcvbuf(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_set_rcvbuf(c, 1 << 20), 0);
    cr_assert_eq(tt_conn_read_stop(c), 0);
}

static void send_meg(tt_conn_t *c)
{
    send_pattern(c, 0, MEG);
    cr_assert_eq(tt_end(c, NULL, 0), 0);
}

static void resume(tt_timer_t *t, void *data)
{
    (void)data;
    cr_assert_not_null(srv.conn);
    cr_assert_eq(ioctl(tt_conn_fd(srv.conn), FIONREAD, &avail_at_resume), 0);
    cr_assert_eq(tt_conn_read_start(srv.conn), 0);
    tt_timer_close(t);
}

Test(read, pending_is_positive_when_more_than_a_buffer_is_waiting)
{
    tt_conn_t *c;
    tt_timer_t *t;
    tt_addr_t addr = start_server();
    srv_open_hook = pause_with_big_rcvbuf;
    cli_open_hook = send_meg;
    cr_assert_eq(tt_connect(loop, &addr, NULL, &H, &cli, &c), 0);
    cr_assert_eq(tt_timer_init(loop, &t, resume, NULL), 0);
    cr_assert_eq(tt_timer_start(t, 300, 0), 0);
    th_run(loop, 10000);

    cr_assert_gt(avail_at_resume, 64 * 1024,
                 "only %d bytes waited at resume: the scenario did not happen", avail_at_resume);
    /* A full read buffer: 64 KiB with epoll, 16 KiB with io_uring. */
    size_t read_size = strcmp(tt_loop_backend(loop), "io_uring") == 0 ? 16 * 1024 : 64 * 1024;
    cr_expect_eq(srv.first_len, read_size, "first read %zu", srv.first_len);
    cr_expect_gt(srv.first_pending, 0, "pending 0 with %d bytes waiting", avail_at_resume);
    cr_expect_leq(srv.first_pending, 2 * MEG);
    cr_expect_eq(srv.last_pending, 0, "last read still reported %zu pending", srv.last_pending);
    cr_expect_eq(srv.got, MEG);
    cr_expect_eq(srv.bad_at, -1);
    cr_assert_eq(tt_loop_close(loop), 0);
}
