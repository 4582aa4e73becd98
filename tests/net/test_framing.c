/* Framing over real loopback sockets: python3 peers that send one byte per segment
 * (TCP_NODELAY), hostile peers that close only their own connection, control
 * frames, header-plus-payload sends, switching framing mid-stream. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/frame.h"
#include "harness.h"

/* ---- a python3 peer ------------------------------------------------------------- */

/* Connects, sends `send` one byte per segment (TCP_NODELAY, a short pause between
 * bytes), reads until it has len(expect) bytes, then (mode "echo") checks them and
 * ends, or (mode "closed") waits for the server to close the connection.
 * Exit 0 on success. Every wait is bounded (10 s socket timeout). */
static const char *peer_py =
    "import socket,sys,time\n"
    "port=int(sys.argv[1]); data=bytes.fromhex(sys.argv[2]); expect=bytes.fromhex(sys.argv[3])\n"
    "mode=sys.argv[4]\n"
    "s=socket.create_connection(('127.0.0.1',port),timeout=10)\n"
    "s.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)\n"
    "try:\n"
    "    for b in data:\n"
    "        s.send(bytes([b])); time.sleep(0.0005)\n"
    "except OSError:\n"
    "    sys.exit(0 if mode=='closed' else 3)\n"
    "got=b''\n"
    "try:\n"
    "    while True:\n"
    "        c=s.recv(65536)\n"
    "        if not c: break\n"
    "        got+=c\n"
    "        if mode=='echo' and len(got)>=len(expect): break\n"
    "except ConnectionResetError:\n"
    "    sys.exit(0 if mode=='closed' else 4)\n"
    "if mode=='closed': sys.exit(0 if got==expect else 5)\n"
    "if got!=expect:\n"
    "    sys.stderr.write('got %r\\nexpected %r\\n'%(got,expect)); sys.exit(1)\n"
    "s.shutdown(socket.SHUT_WR)\n"
    "while s.recv(65536): pass\n"
    "sys.exit(0)\n";

static void hex(const void *buf, size_t n, char *out)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
    out[2 * n] = 0;
}

static pid_t spawn_peer(uint16_t port, const void *send, size_t sn, const void *expect,
                        size_t en, const char *mode)
{
    static char hs[8192], he[8192];
    char ps[16];
    cr_assert_lt(2 * sn, sizeof(hs));
    cr_assert_lt(2 * en, sizeof(he));
    hex(send, sn, hs);
    hex(expect, en, he);
    snprintf(ps, sizeof(ps), "%u", port);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execlp("python3", "python3", "-c", peer_py, ps, hs, he, mode, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The peer's exit status, waiting at most `ms` (then it is killed: failure). */
static int reap(pid_t pid, uint64_t ms)
{
    int st = 0;
    uint64_t end = th_now_ms() + ms;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (th_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(5000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -2;
}

/* ---- an echo server that frames ------------------------------------------------- */

typedef struct {
    tt_frame_opts_t opts;
    int opens, closes, msgs, errors;
    int last_error;
    tt_close_kind_t kinds[8];
    int nkinds;
    size_t buffered_in_msg; /* tt_conn_frame_buffered() seen inside on_message */
    size_t cap_at_end;      /* partial buffer allocated when the peer's FIN came */
    tt_conn_stats_t stats;  /* of the last connection closed */
    bool done;
    int want_closes;
    void (*on_msg)(tt_conn_t *c, const void *m, size_t n);
} srv_t;

static srv_t srv;

static bool use_server_opt; /* framing from tt_server_opts_t.frame, not on_open */

static void s_open(tt_conn_t *c)
{
    srv.opens++;
    if (use_server_opt)
        cr_assert(tt_conn_is_framed(c), "framing must be on before on_open");
    else
        cr_assert_eq(tt_conn_set_framing(c, &srv.opts), 0);
}
static void s_message(tt_conn_t *c, const void *m, size_t n)
{
    srv.msgs++;
    srv.buffered_in_msg += tt_conn_frame_buffered(c);
    if (srv.on_msg != NULL) {
        srv.on_msg(c, m, n);
        return;
    }
    cr_assert_geq(tt_send_message(c, m, n), 0);
}
static void s_end(tt_conn_t *c) { srv.cap_at_end += tt__frame_buf_cap(c); }
static void s_error(tt_conn_t *c, int err)
{
    (void)c;
    srv.errors++;
    srv.last_error = err;
}
static void s_close(tt_conn_t *c, const tt_close_info_t *info)
{
    tt_conn_get_stats(c, &srv.stats);
    if (srv.nkinds < 8)
        srv.kinds[srv.nkinds++] = info->kind;
    if (++srv.closes >= srv.want_closes)
        srv.done = true;
}

static const tt_conn_handlers_t srv_h = {.on_open = s_open, .on_message = s_message,
                                         .on_end = s_end, .on_error = s_error,
                                         .on_close = s_close};

static void srv_reset(tt_frame_opts_t opts)
{
    memset(&srv, 0, sizeof(srv));
    srv.opts = opts;
    srv.want_closes = 1;
}

/* Run a byte-by-byte python peer against the framing echo server. */
static void byte_by_byte_echo(tt_frame_opts_t opts, const void *in, size_t n, const void *out,
                              size_t on, int want_msgs)
{
    tt_loop_t *loop;
    tt_addr_t addr;

    srv_reset(opts);
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s;
    if (use_server_opt) {
        tt_addr_t any = th_loopback(0);
        tt_server_opts_t so = {.frame = &opts};
        cr_assert_eq(tt_server_listen(loop, &any, &so, &srv_h, NULL, &s), 0);
        cr_assert_eq(tt_server_addr(s, &addr), 0);
    } else {
        s = th_listen(loop, &srv_h, NULL, &addr);
    }
    pid_t pid = spawn_peer(tt_addr_port(&addr), in, n, out, on, "echo");
    cr_assert(th_run_until(loop, &srv.done, 15000), "no close within 15 s");
    int rc = reap(pid, 5000);
    tt_server_close(s);
    th_run(loop, 2000);

    cr_expect_eq(rc, 0, "python peer exit %d", rc);
    cr_expect_eq(srv.msgs, want_msgs, "messages %d, expected %d", srv.msgs, want_msgs);
    cr_expect_eq(srv.stats.messages_in, (uint64_t)want_msgs, "stats messages_in %llu",
                 (unsigned long long)srv.stats.messages_in);
    cr_expect_eq(srv.stats.messages_out, (uint64_t)want_msgs, "stats messages_out %llu",
                 (unsigned long long)srv.stats.messages_out);
    cr_expect_eq(srv.stats.bytes_in, (uint64_t)n, "bytes_in %llu of %zu",
                 (unsigned long long)srv.stats.bytes_in, n);
    /* The pauses make most reads one byte; at the very least frames were split. */
    cr_expect_gt(srv.stats.packets_in, (uint64_t)want_msgs, "only %llu reads for %zu bytes",
                 (unsigned long long)srv.stats.packets_in, n);
    cr_expect_eq(srv.buffered_in_msg, 0u, "partial bytes held during on_message: %zu",
                 srv.buffered_in_msg);
    cr_expect_eq(srv.cap_at_end, 0u, "partial buffer still allocated at the end: %zu",
                 srv.cap_at_end);
    cr_expect_eq(srv.errors, 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(framing, u32be_messages_sent_one_byte_per_segment_are_reassembled_and_echoed)
{
    static char in[1024];
    size_t n = 0;
    const char *msgs[] = {"Hello", "SFML", ""};
    for (int i = 0; i < 3; i++) {
        uint32_t l = (uint32_t)strlen(msgs[i]);
        in[n++] = 0, in[n++] = 0, in[n++] = (char)(l >> 8), in[n++] = (char)l;
        memcpy(in + n, msgs[i], l);
        n += l;
    }
    /* And one longer than the partial buffer's first allocation (256). */
    in[n++] = 0, in[n++] = 0, in[n++] = 1, in[n++] = 44; /* 300 */
    for (int i = 0; i < 300; i++)
        in[n++] = (char)('a' + i % 26);
    byte_by_byte_echo(tt_frame_u32be(0), in, n, in, n, 4);
}

Test(framing, crlf_lines_with_bare_lf_sent_one_byte_per_segment)
{
    const char in[] = "GET / HTTP/1.0\r\nHost: x\n\r\n";
    const char out[] = "GET / HTTP/1.0\r\nHost: x\r\n\r\n";
    byte_by_byte_echo(tt_frame_crlf(true, 64), in, sizeof(in) - 1, out, sizeof(out) - 1, 3);
}

Test(framing, varint_messages_sent_one_byte_per_segment)
{
    static char in[400];
    size_t n = 0;
    in[n++] = 5;
    memcpy(in + n, "hello", 5), n += 5;
    in[n++] = (char)0xac, in[n++] = 0x02; /* 300 */
    memset(in + n, 'v', 300), n += 300;
    byte_by_byte_echo(tt_frame_varint(0), in, n, in, n, 2);
}

Test(framing, ping_is_answered_with_pong_and_never_reaches_on_message)
{
    const char in[] = "\xff\xff\xff\xff" "\0\0\0\2hi";
    const char out[] = "\xff\xff\xff\xfe" "\0\0\0\2hi";
    tt_frame_opts_t o = tt_frame_u32be(0);
    o.control = true;
    byte_by_byte_echo(o, in, sizeof(in) - 1, out, sizeof(out) - 1, 1);
}

Test(framing, server_frame_option_frames_every_accepted_connection_before_on_open)
{
    const char in[] = "\0\5Hello\0\4SFML";
    use_server_opt = true;
    byte_by_byte_echo(tt_frame_u16be(0), in, sizeof(in) - 1, in, sizeof(in) - 1, 2);
    use_server_opt = false;
}

Test(framing, server_refuses_invalid_frame_options_and_creates_nothing)
{
    tt_loop_t *loop;
    tt_server_t *s = NULL;
    tt_addr_t any = th_loopback(0);
    tt_frame_opts_t bad = tt_frame_length(3, false, 0);
    tt_server_opts_t so = {.frame = &bad};
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &so, &srv_h, NULL, &s), -EINVAL);
    cr_assert_null(s);
    cr_assert_eq(tt_loop_handle_count(loop), 0u);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- hostile peers close only their own connection ----------------------------- */

static tt_conn_t *good;
static int good_msgs;
static bool good_sent_after;
static const char *msg_before = "before", *msg_after = "after";

static void g_open(tt_conn_t *c)
{
    cr_assert_eq(tt_send_message(c, msg_before, strlen(msg_before)), 0);
}
static void g_message(tt_conn_t *c, const void *m, size_t n)
{
    const char *want = ++good_msgs == 1 ? msg_before : msg_after;
    cr_assert_eq(n, strlen(want), "echo %d: %zu bytes, expected %zu", good_msgs, n, strlen(want));
    cr_assert_eq(memcmp(m, want, n), 0, "echo %d: \"%.*s\"", good_msgs, (int)n, (const char *)m);
    if (good_msgs == 2)
        tt_end(c, NULL, 0);
}
static void g_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    cr_expect_eq(info->kind, TT_CLOSE_LOCAL_END, "good client closed: %s",
                 tt_close_kind_name(info->kind));
    good = NULL;
}

/* When the hostile connection has been closed, the good one still works. */
static void s_close_then_poke(tt_conn_t *c, const tt_close_info_t *info)
{
    s_close(c, info);
    if (info->kind != TT_CLOSE_PEER_CLOSED && good != NULL && !good_sent_after) {
        good_sent_after = true;
        cr_assert_eq(tt_send_message(good, msg_after, strlen(msg_after)), 0);
    }
}

static void hostile(tt_frame_opts_t opts, const void *bad, size_t n, tt_close_kind_t kind,
                    int err)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_conn_handlers_t sh = srv_h, gh = {.on_open = g_open, .on_message = g_message,
                                         .on_close = g_close};

    srv_reset(opts);
    srv.want_closes = 2;
    good = NULL, good_msgs = 0, good_sent_after = false;
    sh.on_close = s_close_then_poke;
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = th_listen(loop, &sh, NULL, &addr);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &gh, NULL, &good), 0);
    cr_assert_eq(tt_conn_set_framing(good, &opts), 0); /* before on_open: allowed */
    pid_t pid = spawn_peer(tt_addr_port(&addr), bad, n, "", 0, "closed");
    cr_assert(th_run_until(loop, &srv.done, 15000), "closes %d of 2 within 15 s", srv.closes);
    int rc = reap(pid, 5000);
    tt_server_close(s);
    th_run(loop, 2000);

    cr_expect_eq(rc, 0, "hostile peer exit %d (it must see its connection closed)", rc);
    cr_expect_eq(good_msgs, 2, "good client got %d echoes, expected 2", good_msgs);
    cr_expect_eq(srv.errors, 1, "on_error %d times", srv.errors);
    cr_expect_eq(srv.last_error, err, "error %s, expected %s", tt_err_name(srv.last_error),
                 tt_err_name(err));
    cr_expect_eq(srv.nkinds, 2);
    cr_expect_eq(srv.kinds[0], kind, "hostile closed with \"%s\", expected \"%s\"",
                 tt_close_kind_name(srv.kinds[0]), tt_close_kind_name(kind));
    cr_expect_eq(srv.kinds[1], TT_CLOSE_PEER_CLOSED, "good closed with \"%s\"",
                 tt_close_kind_name(srv.kinds[1]));
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(framing, oversized_length_closes_only_that_connection_with_frame_too_large)
{
    /* Claims 1 GiB - 1 against a 1 KiB limit, then starts sending it. */
    hostile(tt_frame_u32be(1024), "\x3f\xff\xff\xff" "xxxxxxxx", 12, TT_CLOSE_FRAME_TOO_LARGE,
            TT_EFRAMESIZE);
}

Test(framing, endless_line_closes_only_that_connection_with_frame_too_large)
{
    static char line[200];
    memset(line, 'z', sizeof(line));
    hostile(tt_frame_line(100), line, sizeof(line), TT_CLOSE_FRAME_TOO_LARGE, TT_EFRAMESIZE);
}

Test(framing, malformed_varint_closes_only_that_connection_with_protocol_error)
{
    tt_frame_opts_t o = tt_frame_varint(0);
    o.control = true; /* the value alone cannot refuse it: the eleventh byte does */
    hostile(o, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11, TT_CLOSE_PROTOCOL_ERROR,
            TT_EPROTOCOL);
}

/* Frames are lowercase words ending in ';' (delivered with the ';'). */
static ssize_t words(const void *buf, size_t len, size_t *skip, void *arg)
{
    const char *p = buf;
    (void)skip, (void)arg;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == ';')
            return (ssize_t)i + 1;
        if (p[i] < 'a' || p[i] > 'z')
            return TT_EPROTOCOL;
    }
    return 0;
}

Test(framing, custom_decoder_saying_malformed_closes_with_protocol_error)
{
    msg_before = "before;", msg_after = "after;";
    hostile(tt_frame_custom(words, NULL, 64), "ok;Bad;", 7, TT_CLOSE_PROTOCOL_ERROR,
            TT_EPROTOCOL);
}

/* ---- tether on both ends ---------------------------------------------------------- */

typedef struct {
    int msgs, frees, closes;
    size_t got;
    char buf[8192];
    tt_conn_stats_t before, after;
    int send_rc;
    tt_conn_t *conn;
    tt_timer_t *timer;
    int step;
    size_t seen_buffered, seen_cap;
} cli_t;

static cli_t cli;

static void c_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c, (void)info;
    cli.closes++;
}

static void c_open_one_writev(tt_conn_t *c)
{
    tt_conn_get_stats(c, &cli.before);
    cli.send_rc = tt_send_message(c, "header and payload", 18);
    tt_conn_get_stats(c, &cli.after);
}

static void c_message_end(tt_conn_t *c, const void *m, size_t n)
{
    cli.msgs++;
    memcpy(cli.buf + cli.got, m, n);
    cli.got += n;
    tt_end(c, NULL, 0);
}

Test(framing, send_message_writes_header_and_payload_with_one_writev)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_conn_t *c;
    tt_conn_handlers_t ch = {.on_open = c_open_one_writev, .on_message = c_message_end,
                             .on_close = c_close};
    tt_frame_opts_t o = tt_frame_u32be(0);

    srv_reset(o);
    memset(&cli, 0, sizeof(cli));
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = th_listen(loop, &srv_h, NULL, &addr);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, NULL, &c), 0);
    cr_assert_eq(tt_conn_set_framing(c, &o), 0);
    cr_assert(th_run_until(loop, &srv.done, 5000));
    tt_server_close(s);
    th_run(loop, 2000);

    cr_expect_eq(cli.send_rc, 0);
    cr_expect_eq(cli.after.packets_out - cli.before.packets_out, 1u, "%llu writes",
                 (unsigned long long)(cli.after.packets_out - cli.before.packets_out));
    cr_expect_eq(cli.after.bytes_out - cli.before.bytes_out, 22u, "%llu bytes",
                 (unsigned long long)(cli.after.bytes_out - cli.before.bytes_out));
    cr_expect_eq(cli.after.queued_bytes, 0u, "nothing copied into the queue");
    cr_expect_eq(cli.after.messages_out, 1u);
    cr_expect_eq(cli.msgs, 1);
    cr_expect_eq(cli.got, 18u);
    cr_expect_eq(memcmp(cli.buf, "header and payload", 18), 0);
    cr_expect_eq(cli.closes, 1);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- owned payloads ----------------------------------------------------------------- */

#define OWNED_N 8
#define OWNED_LEN (256 * 1024)
static char *owned_bufs[OWNED_N];

static void owned_free(void *buf, void *arg)
{
    (void)arg;
    for (int i = 0; i < OWNED_N; i++)
        if (owned_bufs[i] == buf) {
            free(buf);
            owned_bufs[i] = NULL;
            cli.frees++;
        }
}

static void c_open_owned(tt_conn_t *c)
{
    for (int i = 0; i < OWNED_N; i++) {
        owned_bufs[i] = malloc(OWNED_LEN);
        memset(owned_bufs[i], 'A' + i, OWNED_LEN);
        int r = tt_send_message_owned(c, owned_bufs[i], OWNED_LEN, owned_free, NULL);
        cr_assert_geq(r, 0, "owned send %d: %s", i, tt_strerror(r));
    }
    /* Not called back inside the API call, even for what the kernel took. */
    cr_assert_eq(cli.frees, 0);
    tt_end(c, NULL, 0);
}

static int owned_seen;
static void s_msg_check_owned(tt_conn_t *c, const void *m, size_t n)
{
    (void)c;
    const char *p = m;
    cr_assert_eq(n, (size_t)OWNED_LEN, "message %d: %zu bytes", owned_seen, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(p[i], 'A' + owned_seen, "message %d byte %zu", owned_seen, i);
    owned_seen++;
}

Test(framing, owned_messages_arrive_whole_and_each_buffer_is_freed_once)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_conn_t *c;
    tt_conn_handlers_t ch = {.on_open = c_open_owned, .on_close = c_close};
    tt_frame_opts_t o = tt_frame_u32be(0);

    srv_reset(o);
    srv.on_msg = s_msg_check_owned;
    owned_seen = 0;
    memset(&cli, 0, sizeof(cli));
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = th_listen(loop, &srv_h, NULL, &addr);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, NULL, &c), 0);
    cr_assert_eq(tt_conn_set_framing(c, &o), 0);
    cr_assert(th_run_until(loop, &srv.done, 10000));
    tt_server_close(s);
    th_run(loop, 2000);

    cr_expect_eq(owned_seen, OWNED_N, "server got %d messages", owned_seen);
    cr_expect_eq(cli.frees, OWNED_N, "%d frees", cli.frees);
    cr_expect_eq(srv.stats.messages_in, (uint64_t)OWNED_N);
    cr_expect_eq(srv.stats.bytes_in, (uint64_t)OWNED_N * (OWNED_LEN + 4));
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- ping from a tether client ---------------------------------------------------- */

static void c_open_ping(tt_conn_t *c) { cli.send_rc = tt_send_ping(c); }
static void c_msg_count(tt_conn_t *c, const void *m, size_t n)
{
    (void)c, (void)m, (void)n;
    cli.msgs++;
}
static void c_ping_timer(tt_timer_t *t, void *data)
{
    tt_conn_t *c = data;
    tt_conn_get_stats(c, &cli.after);
    if (cli.after.bytes_in >= 4 || ++cli.step > 400) {
        tt_timer_close(t);
        tt_end(c, NULL, 0);
    }
}

Test(framing, tether_ping_gets_a_pong_that_is_not_a_message)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_conn_t *c;
    tt_conn_handlers_t ch = {.on_open = c_open_ping, .on_message = c_msg_count,
                             .on_close = c_close};
    tt_frame_opts_t o = tt_frame_u16be(0);
    o.control = true;

    srv_reset(o);
    memset(&cli, 0, sizeof(cli));
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = th_listen(loop, &srv_h, NULL, &addr);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, NULL, &c), 0);
    cr_assert_eq(tt_conn_set_framing(c, &o), 0);
    cr_assert_eq(tt_timer_init(loop, &cli.timer, c_ping_timer, c), 0);
    cr_assert_eq(tt_timer_start(cli.timer, 5, 5), 0);
    cr_assert(th_run_until(loop, &srv.done, 5000));
    tt_server_close(s);
    th_run(loop, 2000);

    cr_expect_eq(cli.send_rc, 0);
    cr_expect_eq(cli.after.bytes_in, 2u, "client read %llu bytes (a pong is 2)",
                 (unsigned long long)cli.after.bytes_in);
    cr_expect_eq(cli.msgs, 0);
    cr_expect_eq(srv.msgs, 0);
    cr_expect_eq(srv.stats.bytes_in, 2u);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(framing, ping_without_control_frames_is_refused)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_conn_t *c;
    tt_conn_handlers_t ch = {.on_close = c_close};
    tt_frame_opts_t o = tt_frame_u16be(0);

    srv_reset(o);
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = th_listen(loop, &srv_h, NULL, &addr);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, NULL, &c), 0);
    cr_assert_eq(tt_send_ping(c), -ENOTCONN);
    cr_assert_eq(tt_send_message(c, "x", 1), -ENOTCONN);
    cr_assert_eq(tt_conn_set_framing(c, &o), 0);
    cr_assert_eq(tt_send_ping(c), -ENOTSUP);
    cr_assert_eq(tt_send_message(c, NULL, 1), -EINVAL);
    o = tt_frame_line(0);
    cr_assert_eq(tt_conn_set_framing(c, &o), 0);
    cr_assert_eq(tt_send_message(c, "a\nb", 3), -EINVAL);
    o = tt_frame_u16be(10);
    cr_assert_eq(tt_conn_set_framing(c, &o), 0);
    cr_assert_eq(tt_send_message(c, "01234567890", 11), -EMSGSIZE);
    o.max_frame = TT_FRAME_MAX_LIMIT + 1;
    cr_assert_eq(tt_conn_set_framing(c, &o), -EINVAL);
    cr_assert(tt_conn_is_framed(c));
    cr_assert_eq(tt_conn_set_framing(c, NULL), 0);
    cr_assert(!tt_conn_is_framed(c));
    tt_destroy(c, 0);
    tt_server_close(s);
    th_run(loop, 2000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- switching framing mid-stream, and stopping inside on_message ------------------- */

static int sw_lines, sw_bins;
static char sw_last[64];

static void s_msg_switch(tt_conn_t *c, const void *m, size_t n)
{
    if (!tt_conn_is_framed(c))
        return;
    memcpy(sw_last, m, n < 63 ? n : 63);
    sw_last[n < 63 ? n : 63] = 0;
    if (n == 6 && memcmp(m, "BINARY", 6) == 0) {
        sw_lines++;
        tt_frame_opts_t o = tt_frame_u32be(0);
        cr_assert_eq(tt_conn_set_framing(c, &o), 0);
    } else {
        sw_bins++;
    }
}

static void c_open_switch(tt_conn_t *c)
{
    /* One write: the line, then two binary frames: the switch happens in the
     * middle of one read. */
    cr_assert_eq(tt_send(c, "BINARY\n\0\0\0\3abc\0\0\0\2de", 20), 0);
    tt_end(c, NULL, 0);
}

Test(framing, changing_framing_inside_on_message_applies_to_the_rest_of_the_read)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_conn_t *c;
    tt_conn_handlers_t ch = {.on_open = c_open_switch, .on_close = c_close};

    srv_reset(tt_frame_line(0));
    srv.on_msg = s_msg_switch;
    sw_lines = sw_bins = 0;
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = th_listen(loop, &srv_h, NULL, &addr);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, NULL, &c), 0);
    cr_assert(th_run_until(loop, &srv.done, 5000));
    tt_server_close(s);
    th_run(loop, 2000);

    cr_expect_eq(sw_lines, 1);
    cr_expect_eq(sw_bins, 2, "binary messages %d", sw_bins);
    cr_expect_str_eq(sw_last, "de");
    cr_expect_eq(srv.errors, 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

static void s_msg_destroy(tt_conn_t *c, const void *m, size_t n)
{
    (void)m, (void)n;
    tt_destroy(c, 0);
}

static void c_open_three(tt_conn_t *c) { cr_assert_eq(tt_send(c, "a\nb\nc\n", 6), 0); }

Test(framing, destroy_inside_on_message_stops_delivery)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_conn_t *c;
    tt_conn_handlers_t ch = {.on_open = c_open_three, .on_close = c_close};

    srv_reset(tt_frame_line(0));
    srv.on_msg = s_msg_destroy;
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = th_listen(loop, &srv_h, NULL, &addr);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, NULL, &c), 0);
    cr_assert(th_run_until(loop, &srv.done, 5000));
    tt_server_close(s);
    th_run(loop, 2000);

    cr_expect_eq(srv.msgs, 1, "messages after destroy: %d", srv.msgs);
    cr_expect_eq(srv.kinds[0], TT_CLOSE_LOCAL_DESTROY);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- the partial-frame buffer: held while a frame is incomplete, then freed ------- */

static tt_conn_t *srv_conn;
static void s_open_keep(tt_conn_t *c)
{
    s_open(c);
    srv_conn = c;
}

static void c_open_half(tt_conn_t *c)
{
    /* 1000-byte frame: the header and 400 bytes now, the rest later. */
    static char half[404];
    memcpy(half, "\0\0\3\xe8", 4);
    memset(half + 4, 'h', 400);
    cr_assert_eq(tt_send(c, half, sizeof(half)), 0);
}

static void half_timer(tt_timer_t *t, void *data)
{
    static char rest[600];
    tt_conn_t *c = data;
    cli.step++;
    if (cli.step > 400) { /* 2 s: give up, the assertions below report it */
        tt_timer_close(t);
        tt_destroy(c, 0);
        return;
    }
    if (srv_conn == NULL || srv.msgs > 0 || tt_conn_frame_buffered(srv_conn) < 404)
        return;
    /* The first part is in: a partial buffer sized by what arrived. */
    cli.seen_buffered = tt_conn_frame_buffered(srv_conn);
    cli.seen_cap = tt__frame_buf_cap(srv_conn);
    cr_assert_eq(tt_conn_set_framing(srv_conn, NULL), -EBUSY);
    memset(rest, 'h', sizeof(rest));
    cr_assert_eq(tt_send(c, rest, sizeof(rest)), 0);
    tt_timer_close(t);
    tt_end(c, NULL, 0);
}

static void s_end_check(tt_conn_t *c)
{
    srv.cap_at_end = tt__frame_buf_cap(c) + tt_conn_frame_buffered(c);
}

Test(framing, partial_frame_buffer_follows_received_bytes_and_is_freed_when_complete)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_conn_t *c;
    tt_conn_handlers_t ch = {.on_open = c_open_half, .on_close = c_close};
    tt_conn_handlers_t sh = srv_h;

    srv_reset(tt_frame_u32be(0));
    srv.on_msg = c_msg_count;
    srv.cap_at_end = 1;
    sh.on_open = s_open_keep;
    sh.on_end = s_end_check;
    memset(&cli, 0, sizeof(cli));
    srv_conn = NULL;
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = th_listen(loop, &sh, NULL, &addr);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, NULL, &c), 0);
    cr_assert_eq(tt_timer_init(loop, &cli.timer, half_timer, c), 0);
    cr_assert_eq(tt_timer_start(cli.timer, 5, 5), 0);
    cr_assert(th_run_until(loop, &srv.done, 5000));
    tt_server_close(s);
    th_run(loop, 2000);

    cr_expect_eq(cli.seen_buffered, 404u, "buffered %zu", cli.seen_buffered);
    cr_expect_geq(cli.seen_cap, 404u);
    cr_expect_leq(cli.seen_cap, 1004u, "a buffer of %zu for a 1004-byte frame", cli.seen_cap);
    cr_expect_eq(srv.msgs, 1);
    cr_expect_eq(srv.cap_at_end, 0u, "buffer left after the frame completed: %zu",
                 srv.cap_at_end);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- liveness: the heartbeat of a framed connection is a ping frame ---------------- */

static tt_close_kind_t hb_kind;
static void c_open_heartbeat(tt_conn_t *c)
{
    tt_liveness_opts_t lo = {.heartbeat_ms = 40, .dead_after_ms = 300};
    cr_assert_eq(tt_conn_set_liveness(c, &lo), 0);
}
static void c_close_kind(tt_conn_t *c, const tt_close_info_t *info)
{
    tt_conn_get_stats(c, &cli.after); /* every pong has arrived: the server's FIN did */
    hb_kind = info->kind;
    cli.closes++;
}
static void hb_timer(tt_timer_t *t, void *data)
{
    tt_conn_t *c = data;
    tt_timer_close(t);
    if (cli.closes == 0)
        tt_end(c, NULL, 0);
}

Test(framing, liveness_heartbeat_is_a_ping_frame_and_the_pong_keeps_the_peer_alive)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_conn_t *c;
    tt_conn_handlers_t ch = {.on_open = c_open_heartbeat, .on_message = c_msg_count,
                             .on_close = c_close_kind};
    tt_frame_opts_t o = tt_frame_u16be(0);
    o.control = true;

    srv_reset(o);
    memset(&cli, 0, sizeof(cli));
    hb_kind = TT_CLOSE_IO_ERROR;
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = th_listen(loop, &srv_h, NULL, &addr);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, NULL, &c), 0);
    cr_assert_eq(tt_conn_set_framing(c, &o), 0);
    /* 800 ms of silence from the app: past the 300 ms dead-after time twice over. */
    cr_assert_eq(tt_timer_init(loop, &cli.timer, hb_timer, c), 0);
    cr_assert_eq(tt_timer_start(cli.timer, 800, 0), 0);
    cr_assert(th_run_until(loop, &srv.done, 5000));
    tt_server_close(s);
    th_run(loop, 2000);

    cr_expect_eq(hb_kind, TT_CLOSE_LOCAL_END, "client closed with \"%s\"",
                 tt_close_kind_name(hb_kind));
    cr_expect_eq(srv.msgs, 0, "pings reached on_message %d times", srv.msgs);
    cr_expect_eq(cli.msgs, 0, "pongs reached on_message %d times", cli.msgs);
    /* At least a few 2-byte pings went out, each answered by a 2-byte pong. */
    cr_expect_geq(srv.stats.bytes_in, 6u, "server read %llu bytes of pings",
                  (unsigned long long)srv.stats.bytes_in);
    cr_expect_eq(srv.stats.bytes_in % 2, 0u);
    cr_expect_eq(cli.after.bytes_in, srv.stats.bytes_out, "pongs %llu vs %llu",
                 (unsigned long long)cli.after.bytes_in,
                 (unsigned long long)srv.stats.bytes_out);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- the tool: tether echo --framing, tether cat --framing ------------------------- */

/* The whole scenario in python3 (bounded by socket timeouts and a kill in
 * `finally`); exit 0 when every check holds, else a message on stderr. */
static const char *cli_py =
    "import socket,struct,subprocess,sys,signal,time\n"
    "tether=sys.argv[1]\n"
    "def fail(m):\n"
    "    sys.stderr.write(m+'\\n'); sys.exit(1)\n"
    "p=subprocess.Popen([tether,'echo','--listen','127.0.0.1:0','--framing','u32be',\n"
    "    '--max-frame','16','--verbose'],stdout=subprocess.PIPE,stderr=subprocess.PIPE)\n"
    "try:\n"
    "    line=p.stdout.readline().decode()\n"
    "    if 'listening on' not in line: fail('no listening line: %r'%line)\n"
    "    port=int(line.rsplit(':',1)[1])\n"
    "    a=socket.create_connection(('127.0.0.1',port),timeout=5)\n"
    "    b=socket.create_connection(('127.0.0.1',port),timeout=5)\n"
    "    a.sendall(struct.pack('>I',5)+b'hello')\n"
    "    got=b''\n"
    "    while len(got)<9: got+=a.recv(100)\n"
    "    if got!=struct.pack('>I',5)+b'hello': fail('echo %r'%got)\n"
    "    b.sendall(struct.pack('>I',17)+b'x'*17)\n"
    "    if b.recv(100)!=b'': fail('oversized client not closed')\n"
    "    a.sendall(struct.pack('>I',2)+b'ok')\n"
    "    got=b''\n"
    "    while len(got)<6: got+=a.recv(100)\n"
    "    if got!=struct.pack('>I',2)+b'ok': fail('after: %r'%got)\n"
    "    a.close()\n"
    "    time.sleep(0.2)\n"
    "    p.send_signal(signal.SIGINT)\n"
    "    out,err=p.communicate(timeout=5)\n"
    "    if p.returncode!=0: fail('echo exit %d'%p.returncode)\n"
    "    if b'frame too large' not in err: fail('stderr %r'%err)\n"
    "    # cat --framing line: lines out, one per message, lenient of nothing else\n"
    "    s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(1)\n"
    "    q=subprocess.Popen([tether,'cat','--framing','line','--max-frame','8',\n"
    "        '127.0.0.1:%d'%s.getsockname()[1]],stdin=subprocess.DEVNULL,\n"
    "        stdout=subprocess.PIPE,stderr=subprocess.PIPE)\n"
    "    s.settimeout(5); c,_=s.accept()\n"
    "    for ch in b'one\\ntwo\\n': c.send(bytes([ch])); time.sleep(0.001)\n"
    "    c.sendall(b'much too long\\n'); c.settimeout(5)\n"
    "    while c.recv(100): pass\n"
    "    out,err=q.communicate(timeout=5)\n"
    "    if out!=b'one\\ntwo\\n': fail('cat out %r'%out)\n"
    "    if q.returncode!=1 or b'frame too large' not in err: fail('cat %d %r'%(q.returncode,err))\n"
    "finally:\n"
    "    for x in ('p','q'):\n"
    "        if x in dir() and eval(x).poll() is None: eval(x).kill()\n";

Test(framing, tool_echo_and_cat_use_the_codecs_and_close_only_the_bad_client)
{
    const char *bin = th_build_path("tether");
    if (access(bin, X_OK) != 0)
        cr_skip_test("no %s (the tool was not built)", bin);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execlp("python3", "python3", "-c", cli_py, bin, (char *)NULL);
        _exit(127);
    }
    int rc = reap(pid, 30000);
    cr_assert_eq(rc, 0, "tool scenario exit %d (stderr above)", rc);
}

/* ---- flow control between messages: read_stop inside on_message holds the rest ---- */

static struct {
    int msgs, at_pause, order_bad;
    bool done;
    tt_timer_t *resume;
} fc;

static void fc_resume(tt_timer_t *t, void *data)
{
    fc.at_pause = fc.msgs; /* nothing may have been delivered while paused */
    cr_assert_eq(tt_conn_read_start(data), 0);
    cr_expect_eq(fc.msgs, fc.at_pause, "no message inside tt_conn_read_start");
    tt_timer_close(t);
}

static void fc_msg(tt_conn_t *c, const void *msg, size_t len)
{
    char want[8];
    int n = snprintf(want, sizeof(want), "m%d", fc.msgs);
    if ((size_t)n != len || memcmp(msg, want, len) != 0)
        fc.order_bad++;
    if (++fc.msgs == 3) {
        cr_assert_eq(tt_conn_read_stop(c), 0);
        cr_assert_eq(tt_timer_init(tt_conn_loop(c), &fc.resume, fc_resume, c), 0);
        cr_assert_eq(tt_timer_start(fc.resume, 100, 0), 0);
    }
    if (fc.msgs == 10)
        fc.done = true;
}

static void fc_client_open(tt_conn_t *c)
{
    const char *all = "m0\nm1\nm2\nm3\nm4\nm5\nm6\nm7\nm8\nm9\n";
    cr_assert_eq(tt_send(c, all, strlen(all)), 0); /* one write: one read, ten messages */
}

Test(framing, read_stop_inside_on_message_holds_the_rest_until_read_start)
{
    tt_loop_t *loop;
    tt_addr_t addr, any = th_loopback(0);
    tt_conn_t *c;
    tt_server_t *s;
    tt_frame_opts_t line = tt_frame_line(0);
    tt_server_opts_t so = {.frame = &line};
    tt_conn_handlers_t sh = {.on_message = fc_msg};
    tt_conn_handlers_t ch = {.on_open = fc_client_open};

    memset(&fc, 0, sizeof(fc));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &so, &sh, NULL, &s), 0);
    cr_assert_eq(tt_server_addr(s, &addr), 0);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, NULL, &c), 0);
    bool never = false;
    th_run_until(loop, &never, 60);
    cr_expect_eq(fc.msgs, 3, "delivered while paused: %d", fc.msgs);
    cr_assert(th_run_until(loop, &fc.done, 3000));
    cr_expect_eq(fc.at_pause, 3, "paused at %d", fc.at_pause);
    cr_expect_eq(fc.msgs, 10);
    cr_expect_eq(fc.order_bad, 0, "messages out of order: %d", fc.order_bad);
    tt_destroy(c, 0);
    tt_server_close(s);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- a stream that ends inside a frame is a protocol error, not a clean close ---- */

static struct {
    int msgs, closes;
    tt_close_kind_t kind;
    int error;
    bool done;
} eof;

static void eof_msg(tt_conn_t *c, const void *m, size_t n)
{
    (void)c;
    cr_expect(n == 3 && memcmp(m, "abc", 3) == 0, "the whole line arrives");
    eof.msgs++;
}

static void eof_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    eof.closes++;
    eof.kind = info->kind;
    eof.error = info->error;
    eof.done = true;
}

static void eof_client_open(tt_conn_t *c)
{
    cr_assert_eq(tt_end(c, "abc\ndef", 7), 0); /* "def" never gets its newline */
}

Test(framing, peer_ending_inside_a_frame_closes_with_protocol_error)
{
    tt_loop_t *loop;
    tt_addr_t addr, any = th_loopback(0);
    tt_conn_t *c;
    tt_server_t *s;
    tt_frame_opts_t line = tt_frame_line(0);
    tt_server_opts_t so = {.frame = &line};
    tt_conn_handlers_t sh = {.on_message = eof_msg, .on_close = eof_close};
    tt_conn_handlers_t ch = {.on_open = eof_client_open};

    memset(&eof, 0, sizeof(eof));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &so, &sh, NULL, &s), 0);
    cr_assert_eq(tt_server_addr(s, &addr), 0);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, NULL, &c), 0);
    cr_assert(th_run_until(loop, &eof.done, 3000));
    cr_expect_eq(eof.msgs, 1);
    cr_expect_eq(eof.closes, 1);
    cr_expect_eq(eof.kind, TT_CLOSE_PROTOCOL_ERROR, "kind %s", tt_close_kind_name(eof.kind));
    cr_expect_eq(eof.error, TT_EPROTOCOL, "error %s", tt_err_name(eof.error));
    tt_server_close(s);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- reading restarted late in a round: held messages go before the peer's FIN ---- */

static struct {
    tt_conn_t *conns[2]; /* in accept order: [0] the one that closes, [1] the sender */
    int opens, msgs, order_bad;
    tt_close_kind_t kind;
    int error;
    bool done;
} late;

static void late_open(tt_conn_t *c)
{
    cr_assert_lt(late.opens, 2);
    late.conns[late.opens++] = c;
}

static void late_msg(tt_conn_t *c, const void *m, size_t n)
{
    const char *want = late.msgs == 0 ? "m1" : "m2";
    if (n != 2 || memcmp(m, want, 2) != 0)
        late.order_bad++;
    if (++late.msgs == 1) {
        /* Pause, and resume only from the other connection's on_close: that runs
         * in the pending phase, after this round's reads, so the FIN that is already
         * waiting is read before the held "m2\n" is fed again. */
        cr_assert_eq(tt_conn_read_stop(c), 0);
        cr_assert_eq(tt_destroy(late.conns[0], 0), 0);
    }
}

static void late_close(tt_conn_t *c, const tt_close_info_t *info)
{
    if (c == late.conns[0]) {
        cr_assert_eq(tt_conn_read_start(late.conns[1]), 0);
        return;
    }
    late.kind = info->kind;
    late.error = info->error;
    late.done = true;
}

Test(framing, read_start_late_in_a_round_delivers_held_messages_before_the_fin)
{
    tt_loop_t *loop;
    tt_addr_t addr, any = th_loopback(0);
    tt_server_t *s;
    tt_frame_opts_t line = tt_frame_line(0);
    tt_server_opts_t so = {.frame = &line};
    tt_conn_handlers_t sh = {.on_open = late_open, .on_message = late_msg, .on_close = late_close};
    char buf[64];

    memset(&late, 0, sizeof(late));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &so, &sh, NULL, &s), 0);
    cr_assert_eq(tt_server_addr(s, &addr), 0);
    int b = th_tcp_connect_blocking(&addr);
    int a = th_tcp_connect_blocking(&addr);
    /* Both messages and the FIN are in the server's receive queue before it reads. */
    cr_assert_eq(send(a, "m1\nm2\n", 6, 0), 6);
    cr_assert_eq(shutdown(a, SHUT_WR), 0);
    usleep(20 * 1000);
    cr_assert(th_run_until(loop, &late.done, 3000));
    cr_expect_eq(late.opens, 2);
    cr_expect_eq(late.msgs, 2, "messages delivered: %d (m2 lost)", late.msgs);
    cr_expect_eq(late.order_bad, 0);
    cr_expect_eq(late.kind, TT_CLOSE_PEER_CLOSED, "kind %s (%s)", tt_close_kind_name(late.kind),
                 tt_err_name(late.error));
    cr_expect_eq(late.error, 0, "error %s", tt_err_name(late.error));
    struct timeval tv = {.tv_sec = 3};
    setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_expect_eq(recv(a, buf, sizeof(buf), 0), 0, "the server ends its side cleanly");
    close(a);
    close(b);
    tt_server_close(s);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- the replies to the messages of one read leave in one write ------------------ */

#define BATCH_MSGS 2000

static struct {
    int msgs;
    tt_conn_stats_t st;
    bool done;
} batch;

static void batch_msg(tt_conn_t *c, const void *m, size_t n)
{
    cr_assert_eq(n, 0u);
    (void)m;
    cr_assert_geq(tt_send_message(c, NULL, 0), 0); /* echo: a 4-byte empty frame */
    if (++batch.msgs == BATCH_MSGS) {
        cr_assert_eq(tt_conn_get_stats(c, &batch.st), 0);
        batch.done = true;
    }
}

Test(framing, echo_of_many_frames_in_one_read_costs_a_write_per_read_not_per_frame)
{
    tt_loop_t *loop;
    tt_addr_t addr, any = th_loopback(0);
    tt_server_t *s;
    tt_frame_opts_t u32 = tt_frame_u32be(0);
    tt_server_opts_t so = {.frame = &u32};
    tt_conn_handlers_t sh = {.on_message = batch_msg};
    static char frames[4 * BATCH_MSGS]; /* BATCH_MSGS empty u32be frames: all zeros */
    static char back[4 * BATCH_MSGS];

    memset(&batch, 0, sizeof(batch));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &so, &sh, NULL, &s), 0);
    cr_assert_eq(tt_server_addr(s, &addr), 0);
    int fd = th_tcp_connect_blocking(&addr);
    cr_assert_eq(send(fd, frames, sizeof(frames), 0), (ssize_t)sizeof(frames));
    cr_assert(th_run_until(loop, &batch.done, 5000));
    bool never = false;
    th_run_until(loop, &never, 50); /* let the last write go */

    /* 8000 bytes come in one read or a few; each read's replies are one sendmsg. */
    cr_expect_leq(batch.st.packets_out, batch.st.packets_in + 1,
                  "%llu writes for %d messages in %llu reads",
                  (unsigned long long)batch.st.packets_out, BATCH_MSGS,
                  (unsigned long long)batch.st.packets_in);
    cr_expect_eq(batch.st.messages_out, BATCH_MSGS);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t got = 0;
    ssize_t r;
    while (got < sizeof(back) && (r = recv(fd, back + got, sizeof(back) - got, 0)) > 0)
        got += (size_t)r;
    cr_expect_eq(got, sizeof(back), "echoed %zu of %zu bytes", got, sizeof(back));
    close(fd);
    tt_server_close(s);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- limits on partial frames: assembly time, and a server-wide budget ------------ */

/* Connects, sends a u32be header announcing `announce` bytes and `send` of them,
 * then stalls until the server closes the connection (exit 0) or 10 s pass (2). */
static const char *stall_py =
    "import socket,struct,sys,time\n"
    "port=int(sys.argv[1]); announce=int(sys.argv[2]); n=int(sys.argv[3])\n"
    "s=socket.create_connection(('127.0.0.1',port),timeout=10)\n"
    "s.sendall(struct.pack('>I',announce)+b'p'*n)\n"
    "try:\n"
    "    while s.recv(4096): pass\n"
    "except socket.timeout: sys.exit(2)\n"
    "except OSError: pass\n"
    "sys.exit(0)\n";

static pid_t spawn_stall(uint16_t port, size_t announce, size_t n)
{
    char ps[16], as[24], ns[24];
    snprintf(ps, sizeof(ps), "%u", port);
    snprintf(as, sizeof(as), "%zu", announce);
    snprintf(ns, sizeof(ns), "%zu", n);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execlp("python3", "python3", "-c", stall_py, ps, as, ns, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static struct {
    int opens, closes, by_timeout, by_budget, other;
    tt_conn_t *conns[8];
    tt_close_info_t info;
    uint64_t opened_ms, closed_ms;
} lim;

static void lim_open(tt_conn_t *c)
{
    cr_assert_lt(lim.opens, 8);
    lim.conns[lim.opens++] = c;
    lim.opened_ms = th_now_ms();
}

static void lim_close(tt_conn_t *c, const tt_close_info_t *info)
{
    for (int i = 0; i < lim.opens; i++)
        if (lim.conns[i] == c)
            lim.conns[i] = NULL;
    lim.closes++;
    lim.info = *info;
    lim.closed_ms = th_now_ms();
    if (info->kind == TT_CLOSE_PROTOCOL_ERROR && info->error == -ETIMEDOUT &&
        info->detail == TT_FRAME_DETAIL_TIMEOUT)
        lim.by_timeout++;
    else if (info->kind == TT_CLOSE_FRAME_TOO_LARGE && info->error == -ENOBUFS &&
             info->detail == TT_FRAME_DETAIL_BUDGET)
        lim.by_budget++;
    else
        lim.other++;
}

Test(framing, a_partial_frame_that_stalls_is_closed_after_the_assembly_timeout)
{
    tt_loop_t *loop;
    tt_addr_t addr, any = th_loopback(0);
    tt_server_t *s;
    tt_frame_opts_t fo = tt_frame_u32be(0);
    fo.assembly_timeout_ms = 300;
    tt_server_opts_t so = {.frame = &fo};
    tt_conn_handlers_t sh = {.on_open = lim_open, .on_close = lim_close};

    memset(&lim, 0, sizeof(lim));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &so, &sh, NULL, &s), 0);
    cr_assert_eq(tt_server_addr(s, &addr), 0);
    pid_t pid = spawn_stall(ntohs(addr.u.in4.sin_port), 1000, 10);
    volatile bool closed = false;
    uint64_t end = th_now_ms() + 5000;
    while (lim.closes == 0 && th_now_ms() < end)
        th_run_until(loop, &closed, 20);
    cr_expect_eq(lim.closes, 1, "no close 5 s after a 300 ms assembly timeout");
    cr_expect_eq(lim.by_timeout, 1, "kind %s error %s detail %d",
                 tt_close_kind_name(lim.info.kind), tt_err_name(lim.info.error), lim.info.detail);
    if (lim.closes == 1)
        cr_expect_lt(lim.closed_ms - lim.opened_ms, 3000, "closed after %llu ms",
                     (unsigned long long)(lim.closed_ms - lim.opened_ms));
    cr_expect_eq(reap(pid, 10000), 0, "the peer did not see the close");
    tt_server_close(s);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(framing, partial_frames_of_a_server_are_bounded_by_its_budget)
{
    tt_loop_t *loop;
    tt_addr_t addr, any = th_loopback(0);
    tt_server_t *s;
    tt_frame_opts_t fo = tt_frame_u32be(256 * 1024);
    fo.budget = 256 * 1024;
    tt_server_opts_t so = {.frame = &fo};
    tt_conn_handlers_t sh = {.on_open = lim_open, .on_close = lim_close};
    pid_t pid[3];

    memset(&lim, 0, sizeof(lim));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &so, &sh, NULL, &s), 0);
    cr_assert_eq(tt_server_addr(s, &addr), 0);
    /* Each holds 100 KB of a 200 KB frame: a 128 KiB buffer each, 384 KiB for
     * three, over the 256 KiB budget; no one of them can pass it alone. */
    for (int i = 0; i < 3; i++)
        pid[i] = spawn_stall(ntohs(addr.u.in4.sin_port), 200000, 100000);
    volatile bool never = false;
    uint64_t end = th_now_ms() + 3000;
    while (lim.by_budget == 0 && th_now_ms() < end)
        th_run_until(loop, &never, 20);
    th_run_until(loop, &never, 200); /* the others have all their bytes by now */
    cr_expect_geq(lim.by_budget, 1, "no connection closed for the budget (closes %d)",
                  lim.closes);
    cr_expect_lt(lim.closes, 3, "every connection was closed: one alone fits the budget");
    cr_expect_eq(lim.other, 0, "other close: kind %s error %s", tt_close_kind_name(lim.info.kind),
                 tt_err_name(lim.info.error));
    for (int i = 0; i < lim.opens; i++)
        if (lim.conns[i] != NULL)
            tt_destroy(lim.conns[i], 0); /* the stalled survivors */
    tt_server_close(s);
    th_run(loop, 3000);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(reap(pid[i], 10000), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* The same, measured from outside: strace counts the system calls `tether echo
 * --framing u32be` makes to write, for 200 000 empty frames from one client. */
static const char *strace_py =
    "import socket,subprocess,sys,threading,time,re,os,signal\n"
    "tether=sys.argv[1]; out=sys.argv[2]\n"
    "def fail(m): sys.stderr.write(m+'\\n'); sys.exit(1)\n"
    "p=subprocess.Popen(['strace','-f','-c','-o',out,'-e','trace=sendmsg,writev,write,sendto',\n"
    "    tether,'echo','--listen','127.0.0.1:0','--framing','u32be'],\n"
    "    stdout=subprocess.PIPE,stderr=subprocess.PIPE)\n"
    "try:\n"
    "    line=p.stdout.readline().decode()\n"
    "    m=re.search(r':(\\d+)\\s*$',line)\n"
    "    if not m: fail('no port in %r'%line)\n"
    "    s=socket.create_connection(('127.0.0.1',int(m.group(1))),timeout=10)\n"
    "    n=200000; data=b'\\0'*(4*n); got=[0]\n"
    "    def rd():\n"
    "        while got[0]<len(data):\n"
    "            c=s.recv(1<<20)\n"
    "            if not c: break\n"
    "            got[0]+=len(c)\n"
    "    t=threading.Thread(target=rd); t.start(); s.sendall(data); t.join(20)\n"
    "    if got[0]!=len(data): fail('echoed %d of %d'%(got[0],len(data)))\n"
    "    s.close(); time.sleep(0.1)\n"
    "    kids=open('/proc/%d/task/%d/children'%(p.pid,p.pid)).read().split()\n"
    "    for k in kids: os.kill(int(k),signal.SIGINT)  # the tool, traced by strace\n"
    "    p.communicate(timeout=10)\n"
    "    calls=0\n"
    "    for l in open(out):\n"
    "        f=l.split()\n"
    "        if len(f)>=5 and f[-1] in ('sendmsg','writev','write','sendto'): calls+=int(f[3])\n"
    "    if calls>20000: fail('%d write calls for %d frames'%(calls,n))\n"
    "    if calls==0: fail('strace counted no writes: %r'%open(out).read())\n"
    "finally:\n"
    "    if p.poll() is None:\n"
    "        try:\n"
    "            for k in open('/proc/%d/task/%d/children'%(p.pid,p.pid)).read().split():\n"
    "                os.kill(int(k),signal.SIGKILL)\n"
    "        except OSError: pass\n"
    "        p.kill()\n";

Test(framing, tool_echo_of_many_frames_makes_few_write_calls_under_strace, .timeout = 60)
{
    const char *bin = th_build_path("tether");
    char out[] = "/tmp/tt-strace-XXXXXX";
    if (access(bin, X_OK) != 0)
        cr_skip_test("no %s (the tool was not built)", bin);
    if (system("strace -V >/dev/null 2>&1") != 0)
        cr_skip_test("no strace");
    int ofd = mkstemp(out);
    cr_assert_geq(ofd, 0);
    close(ofd);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execlp("python3", "python3", "-c", strace_py, bin, out, (char *)NULL);
        _exit(127);
    }
    int rc = reap(pid, 40000);
    unlink(out);
    cr_assert_eq(rc, 0, "strace scenario exit %d (stderr above)", rc);
}

/* The same, and a held message pauses reading again: the FIN waits until the
 * rest has been delivered after the next tt_conn_read_start. */
static struct {
    tt_conn_t *conns[2];
    int opens, msgs, order_bad;
    tt_close_kind_t kind;
    int error, msgs_at_close;
    bool done;
} late2;

static void late2_open(tt_conn_t *c)
{
    cr_assert_lt(late2.opens, 2);
    late2.conns[late2.opens++] = c;
}

static void late2_resume(tt_timer_t *t, void *data)
{
    cr_assert_eq(tt_conn_read_start(data), 0);
    tt_timer_close(t);
}

static void late2_msg(tt_conn_t *c, const void *m, size_t n)
{
    char want[16];
    snprintf(want, sizeof(want), "m%d", late2.msgs + 1);
    if (n != 2 || memcmp(m, want, 2) != 0)
        late2.order_bad++;
    late2.msgs++;
    if (late2.msgs == 1) {
        cr_assert_eq(tt_conn_read_stop(c), 0);
        cr_assert_eq(tt_destroy(late2.conns[0], 0), 0);
    } else if (late2.msgs == 2) {
        tt_timer_t *t;
        cr_assert_eq(tt_conn_read_stop(c), 0); /* again, with the FIN already read */
        cr_assert_eq(tt_timer_init(tt_conn_loop(c), &t, late2_resume, c), 0);
        cr_assert_eq(tt_timer_start(t, 50, 0), 0);
    }
}

static void late2_close(tt_conn_t *c, const tt_close_info_t *info)
{
    if (c == late2.conns[0]) {
        cr_assert_eq(tt_conn_read_start(late2.conns[1]), 0);
        return;
    }
    late2.kind = info->kind;
    late2.error = info->error;
    late2.msgs_at_close = late2.msgs;
    late2.done = true;
}

Test(framing, fin_behind_held_messages_waits_when_reading_pauses_again)
{
    tt_loop_t *loop;
    tt_addr_t addr, any = th_loopback(0);
    tt_server_t *s;
    tt_frame_opts_t line = tt_frame_line(0);
    tt_server_opts_t so = {.frame = &line};
    tt_conn_handlers_t sh = {
        .on_open = late2_open, .on_message = late2_msg, .on_close = late2_close};
    char buf[64];

    memset(&late2, 0, sizeof(late2));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &so, &sh, NULL, &s), 0);
    cr_assert_eq(tt_server_addr(s, &addr), 0);
    int b = th_tcp_connect_blocking(&addr);
    int a = th_tcp_connect_blocking(&addr);
    cr_assert_eq(send(a, "m1\nm2\nm3\n", 9, 0), 9);
    cr_assert_eq(shutdown(a, SHUT_WR), 0);
    usleep(20 * 1000);
    cr_assert(th_run_until(loop, &late2.done, 3000));
    cr_expect_eq(late2.msgs, 3, "messages delivered: %d", late2.msgs);
    cr_expect_eq(late2.msgs_at_close, 3, "closed after %d messages", late2.msgs_at_close);
    cr_expect_eq(late2.order_bad, 0);
    cr_expect_eq(late2.kind, TT_CLOSE_PEER_CLOSED, "kind %s (%s)", tt_close_kind_name(late2.kind),
                 tt_err_name(late2.error));
    struct timeval tv = {.tv_sec = 3};
    setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_expect_eq(recv(a, buf, sizeof(buf), 0), 0, "the server ends its side cleanly");
    close(a);
    close(b);
    tt_server_close(s);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}
