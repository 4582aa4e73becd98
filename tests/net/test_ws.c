/* WebSocket server side against real peers: Python's websockets and Node's ws for
 * interop, and a plain socket on a thread for every protocol violation and bad
 * handshake, one test each. The server runs on the test's loop; the peer runs on
 * a thread (a child process for Python and Node) and its verdict is read back. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>

#include "harness.h"
#include "tether.h"

/* ---- the server under test ------------------------------------------------------ */

typedef struct srv_state {
    int opens;
    int messages;
    tt_ws_kind_t last_kind;
    size_t last_len;
    int closes;
    tt_close_info_t info; /* of the last close */
    char reason[128];
    bool was_ws;
    int accept_calls;
    char origin[64], path[64], query[64], header[64];
    char order[256];
    size_t order_len;
    uint64_t msgs_in, msgs_out; /* the connection's stats at close */
    bool resumed, early;        /* reading restarted; a message came before that */
} srv_state_t;

static srv_state_t S;
static tt_server_t *SRV;

static void resume_cb(tt_timer_t *t, void *data)
{
    S.resumed = true;
    cr_expect_eq(tt_conn_read_start(data), 0);
    tt_timer_close(t);
}

static void s_open(tt_conn_t *c)
{
    S.opens++;
    cr_expect(tt_conn_is_websocket(c), "on_open before the 101");
}

static void s_message(tt_conn_t *c, const void *msg, size_t len)
{
    S.messages++;
    S.last_kind = tt_conn_message_kind(c);
    S.last_len = len;
    if (S.last_kind == TT_WS_TEXT && len == 8 && memcmp(msg, "close me", 8) == 0) {
        cr_expect_eq(tt_ws_close(c, TT_WS_POLICY, "policy says no"), 0);
        return;
    }
    if (len == 6 && memcmp(msg, "end me", 6) == 0) {
        cr_expect_eq(tt_end(c, "last words", 10), 0);
        return;
    }
    if (len == 9 && memcmp(msg, "shut down", 9) == 0) {
        cr_expect_eq(tt_server_shutdown(tt_conn_server(c), 5000, NULL, NULL), 0);
        SRV = NULL; /* closed by the shutdown */
        return;
    }
    if (len == 5 && memcmp(msg, "pause", 5) == 0) {
        tt_timer_t *t;
        cr_assert_eq(tt_timer_init(tt_conn_loop(c), &t, resume_cb, c), 0);
        cr_assert_eq(tt_timer_start(t, 100, 0), 0);
        cr_expect_eq(tt_conn_read_stop(c), 0);
    }
    if (len == 6 && memcmp(msg, "checks", 6) == 0) {
        char reason[130];
        memset(reason, 'r', sizeof(reason) - 1);
        reason[sizeof(reason) - 1] = '\0';
        cr_expect_eq(tt_ws_send(c, TT_WS_TEXT, "\xff", 1), -EINVAL, "text must be UTF-8");
        cr_expect_eq(tt_ws_send(c, (tt_ws_kind_t)3, "x", 1), -EINVAL);
        cr_expect_eq(tt_ws_close(c, 1005, NULL), -EINVAL, "1005 is never sent");
        cr_expect_eq(tt_ws_close(c, 1000, reason), -EINVAL, "reason over 123 bytes");
        cr_expect_eq(tt_conn_set_framing(c, &(tt_frame_opts_t){.kind = TT_FRAME_FIXED,
                                                                .fixed_size = 4}),
                     -EBUSY);
        cr_expect(tt_conn_is_framed(c));
        cr_expect_str_eq(tt_ws_protocol(c), "");
        cr_expect_geq(tt_send_message(c, "default", 7), 0); /* the default kind: binary */
        cr_expect_eq(tt_ws_close(c, 4999, "done"), 0);
        cr_expect_eq(tt_ws_close(c, 1000, NULL), -EPIPE, "once");
        cr_expect_eq(tt_ws_send_text(c, "late"), -EPIPE);
        cr_expect_eq(tt_end(c, "raw", 3), -EPIPE, "no raw bytes after a close frame");
        return;
    }
    if (S.order_len + len + 1 < sizeof(S.order)) {
        memcpy(S.order + S.order_len, msg, len);
        S.order_len += len;
        S.order[S.order_len++] = ',';
    }
    if (len == 7 && memcmp(msg, "bcast-z", 7) == 0) {
        static char text[4000];
        for (size_t i = 0; i < sizeof(text); i++)
            text[i] = "tether "[i % 7];
        tt_server_broadcast_message(tt_conn_server(c), text, sizeof(text), NULL);
        return;
    }
    if (len == 9 && memcmp(msg, "broadcast", 9) == 0) {
        tt_server_broadcast_message(tt_conn_server(c), "to all", 6, NULL);
        tt_server_broadcast(tt_conn_server(c), "raw to all", 10, NULL); /* framed too */
        return;
    }
    int r = tt_ws_send(c, S.last_kind, msg, len);
    cr_expect_geq(r, 0, "echo: %s", tt_strerror(r));
}

static void s_close(tt_conn_t *c, const tt_close_info_t *info)
{
    tt_conn_stats_t st;
    cr_assert_eq(tt_conn_get_stats(c, &st), 0);
    S.msgs_in = st.messages_in;
    S.msgs_out = st.messages_out;
    S.closes++;
    S.info = *info;
    snprintf(S.reason, sizeof(S.reason), "%s",
             info->ws_reason != NULL ? info->ws_reason : "(null)");
    S.info.ws_reason = NULL;
    S.was_ws = tt_conn_is_websocket(c);
}

static const tt_conn_handlers_t H = {
    .on_open = s_open, .on_message = s_message, .on_close = s_close};

static tt_loop_t *L;
static tt_addr_t ADDR;

static void start(const tt_ws_opts_t *wo, const tt_server_opts_t *base)
{
    tt_server_opts_t so = base != NULL ? *base : (tt_server_opts_t){0};
    tt_addr_t any = th_loopback(0);
    memset(&S, 0, sizeof(S));
    so.websocket = wo;
    cr_assert_eq(tt_loop_init(&L), 0);
    int r = tt_server_listen(L, &any, &so, &H, NULL, &SRV);
    cr_assert_eq(r, 0, "listen: %s", tt_strerror(r));
    cr_assert_eq(tt_server_addr(SRV, &ADDR), 0);
}

static void stop(void)
{
    if (SRV != NULL)
        tt_server_close(SRV);
    th_run(L, 10000);
    cr_assert_eq(tt_loop_close(L), 0);
}

/* ---- a peer on a thread ------------------------------------------------------------ */

typedef struct peer {
    pthread_t th;
    atomic_bool done_a;
    volatile bool done;
    /* a child process */
    char cmd[1024];
    /* or a plain socket: send `out` (in `parts` pieces `gap_ms` apart), read until EOF */
    const char *out;
    size_t out_len;
    size_t split;      /* nonzero: send out[0, split), wait gap_ms, then the rest */
    int gap_ms;
    bool close_early;  /* after the answer and the frames: close without a close frame */
    bool hold_open;    /* never close, only read (until the server ends) */
    int read_ms;       /* SO_RCVTIMEO; 0: 10 s */
    char got[1 << 16];
    size_t got_len;
} peer_t;

static void *child_main(void *arg)
{
    peer_t *p = arg;
    FILE *f = popen(p->cmd, "r");
    if (f != NULL) {
        p->got_len = fread(p->got, 1, sizeof(p->got) - 1, f);
        pclose(f);
    }
    p->got[p->got_len] = '\0';
    p->done = true;
    return NULL;
}

static void *raw_main(void *arg)
{
    peer_t *p = arg;
    int fd = th_tcp_connect_blocking(&ADDR);
    struct timeval tv = {.tv_sec = p->read_ms > 0 ? p->read_ms / 1000 : 10,
                         .tv_usec = p->read_ms > 0 ? (p->read_ms % 1000) * 1000 : 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t first = p->split > 0 ? p->split : p->out_len;
    if (first > 0 && write(fd, p->out, first) != (ssize_t)first)
        goto out;
    if (p->split > 0) {
        usleep((useconds_t)p->gap_ms * 1000);
        if (write(fd, p->out + first, p->out_len - first) < 0)
            goto out;
    }
    if (p->close_early) {
        usleep(200 * 1000); /* let the answer come */
        ssize_t n = read(fd, p->got, sizeof(p->got) - 1);
        p->got_len = n > 0 ? (size_t)n : 0;
        goto out;
    }
    uint64_t t0 = th_now_ms();
    for (;;) {
        if (p->read_ms > 0 && th_now_ms() - t0 >= (uint64_t)p->read_ms)
            break; /* read_ms bounds the whole read, however often bytes come */
        ssize_t n = read(fd, p->got + p->got_len, sizeof(p->got) - 1 - p->got_len);
        if (n <= 0)
            break;
        p->got_len += (size_t)n;
    }
out:
    p->got[p->got_len] = '\0';
    close(fd);
    p->done = true;
    return NULL;
}

static void peer_run(peer_t *p, bool child, uint64_t ms)
{
    pthread_create(&p->th, NULL, child ? child_main : raw_main, p);
    bool ok = th_run_until(L, &p->done, ms);
    cr_assert(ok, "the peer did not finish within %llu ms", (unsigned long long)ms);
    pthread_join(p->th, NULL);
    /* Let the server side see its end. */
    for (int i = 0; i < 100 && S.closes == 0; i++)
        tt_loop_run(L, TT_RUN_ONCE);
}

/* ---- building client traffic ----------------------------------------------------------- */

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

static size_t request(char *out, const char *extra)
{
    return (size_t)sprintf(out,
                           "GET /chat?room=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n"
                           "Sec-WebSocket-Version: 13\r\n%s\r\n",
                           extra != NULL ? extra : "");
}

/* A client frame: masked unless told; `b0` is the first byte (FIN, RSV, opcode). */
static size_t frame(char *out, uint8_t b0, const void *payload, size_t len, bool masked)
{
    static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    size_t n = 0;
    out[n++] = (char)b0;
    if (len < 126) {
        out[n++] = (char)((masked ? 0x80 : 0) | len);
    } else {
        out[n++] = (char)((masked ? 0x80 : 0) | 126);
        out[n++] = (char)(len >> 8);
        out[n++] = (char)len;
    }
    if (masked) {
        memcpy(out + n, key, 4);
        n += 4;
    }
    for (size_t i = 0; i < len; i++)
        out[n + i] = (char)(((const uint8_t *)payload)[i] ^ (masked ? key[i % 4] : 0));
    return n + len;
}

/* What the raw peer got: the HTTP status, and the first close frame's code after
 * the head (0: none). */
static int status_of(const peer_t *p)
{
    int st = 0;
    sscanf(p->got, "HTTP/1.1 %d", &st);
    return st;
}

static const uint8_t *body_of(const peer_t *p, size_t *len)
{
    const char *e = strstr(p->got, "\r\n\r\n");
    if (e == NULL) {
        *len = 0;
        return NULL;
    }
    *len = p->got_len - (size_t)(e + 4 - p->got);
    return (const uint8_t *)e + 4;
}

/* The code of the first close frame among the server's frames; 0 when none. */
static int close_code_of(const peer_t *p)
{
    size_t len;
    const uint8_t *b = body_of(p, &len);
    while (b != NULL && len >= 2) {
        size_t plen = b[1] & 0x7f, h = 2;
        if (plen == 126) {
            plen = (size_t)b[2] << 8 | b[3];
            h = 4;
        } else if (plen == 127) {
            return -1;
        }
        if (len < h + plen)
            return -1;
        if ((b[0] & 0x0f) == 0x8)
            return plen >= 2 ? (b[h] << 8 | b[h + 1]) : 1005;
        b += h + plen;
        len -= h + plen;
    }
    return 0;
}

static bool has_frame(const peer_t *p, uint8_t b0, const char *payload, size_t plen)
{
    size_t len;
    const uint8_t *b = body_of(p, &len);
    while (b != NULL && len >= 2) {
        size_t n = b[1] & 0x7f, h = 2;
        if (n == 126) {
            n = (size_t)b[2] << 8 | b[3];
            h = 4;
        }
        if (len < h + n)
            return false;
        if (b[0] == b0 && n == plen && memcmp(b + h, payload, plen) == 0)
            return true;
        b += h + n;
        len -= h + n;
    }
    return false;
}

static const uint8_t *first_frame(const peer_t *p, uint8_t b0, size_t *plen);

/* Send `out` as the whole client side, run until the peer is done. */
static void raw(peer_t *p, const char *out, size_t len)
{
    p->out = out;
    p->out_len = len;
    peer_run(p, false, 20000);
}

/* A handshake followed by one frame; the server's answer is read until it ends. */
static void violation(uint8_t b0, const void *payload, size_t len, bool masked, int want_code,
                      tt_close_kind_t want_kind, size_t max_message)
{
    tt_ws_opts_t wo = {.max_message = max_message};
    static char out[1 << 16];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&wo, NULL);
    size_t n = request(out, NULL);
    n += frame(out + n, b0, payload, len, masked);
    raw(&p, out, n);
    cr_expect_eq(status_of(&p), 101);
    cr_expect_eq(close_code_of(&p), want_code, "close code %d, want %d", close_code_of(&p),
                 want_code);
    cr_expect_eq(S.closes, 1);
    cr_expect_eq(S.messages, 0, "no message reaches the app");
    cr_expect_eq(S.info.kind, want_kind, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.info.ws_local_code, want_code);
    stop();
}

/* ---- interop ------------------------------------------------------------------------ */

static void python(const char *scenario, peer_t *p)
{
    snprintf(p->cmd, sizeof(p->cmd), "/usr/bin/python3 %s/tests/net/ws/peer.py %u %s 2>&1",
             TT_SOURCE_DIR, tt_addr_port(&ADDR), scenario);
    peer_run(p, true, 90000);
}

static void expect_lines(const peer_t *p, const char *const *lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_expect_not_null(strstr(p->got, lines[i]), "missing \"%s\" in:\n%s", lines[i], p->got);
    cr_expect_null(strstr(p->got, "bad"), "a failed check:\n%s", p->got);
    cr_expect_null(strstr(p->got, "Traceback"), "the peer failed:\n%s", p->got);
}

static const char *const PY_LINES[] = {
    "ok deflate",       "ok text",          "ok binary",          "ok empty-text",
    "ok empty-binary",  "ok text-64k",      "ok binary-16MiB",    "ok fragmented-text",
    "ok fragmented-binary", "ok ping",      "close 4000 "};

static void python_interop(const char *scenario)
{
    tt_ws_opts_t wo = {.deflate = true};
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&wo, NULL);
    python(scenario, &p);
    expect_lines(&p, PY_LINES, sizeof(PY_LINES) / sizeof(PY_LINES[0]));
    cr_expect_eq(S.opens, 1);
    cr_expect_eq(S.messages, 8);
    cr_expect_eq(S.msgs_in, 8, "stats count messages");
    cr_expect_eq(S.msgs_out, 8);
    cr_expect_eq(S.closes, 1);
    cr_expect_eq(S.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.info.error, 0);
    cr_expect_eq(S.info.ws_code, 4000);
    cr_expect_str_eq(S.reason, "bye from python");
    cr_expect_eq(S.info.ws_local_code, 4000, "the code is echoed");
    stop();
}

Test(ws, python_echo_compressed) { python_interop("interop"); }
Test(ws, python_echo_uncompressed) { python_interop("interop-plain"); }

Test(ws, node_echo_compressed_and_not)
{
    static const char *const lines[] = {"ok text", "ok binary", "ok empty-binary",
                                        "ok binary-16MiB", "ok fragmented-text", "ok ping",
                                        "close 4001 "};
    char nm[1024];
    snprintf(nm, sizeof(nm), "%s/tests/node/node_modules/ws", TT_SOURCE_DIR);
    struct stat st;
    if (stat(nm, &st) != 0) { /* scripts/deps.sh installs it; do it here if it did not */
        char cmd[1200];
        snprintf(cmd, sizeof(cmd),
                 "cd %s/tests/node && npm ci --no-audit --no-fund >/dev/null 2>&1", TT_SOURCE_DIR);
        cr_assert_eq(system(cmd), 0, "npm ci in tests/node failed");
    }
    for (int deflate = 0; deflate < 2; deflate++) {
        tt_ws_opts_t wo = {.deflate = true};
        static peer_t p;
        memset(&p, 0, sizeof(p));
        start(&wo, NULL);
        snprintf(p.cmd, sizeof(p.cmd), "node %s/tests/node/peer.js %u %s 2>&1", TT_SOURCE_DIR,
                 tt_addr_port(&ADDR), deflate ? "interop" : "interop-plain");
        peer_run(&p, true, 90000);
        expect_lines(&p, lines, sizeof(lines) / sizeof(lines[0]));
        cr_expect_not_null(strstr(p.got, deflate ? "deflate=true" : "deflate=false"), "%s", p.got);
        cr_expect_eq(S.messages, 5);
        cr_expect_eq(S.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(S.info.kind));
        cr_expect_eq(S.info.ws_code, 4001);
        cr_expect_str_eq(S.reason, "bye from node");
        stop();
    }
}

Test(ws, deflate_honours_the_clients_window_for_the_server)
{
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){.deflate = true}, NULL);
    python("window10", &p);
    static const char *const lines[] = {"ok window", "ok window10-echo", "close 1000"};
    expect_lines(&p, lines, 3);
    stop();
}

Test(ws, server_initiated_close_reaches_python)
{
    tt_ws_opts_t wo = {0};
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&wo, NULL);
    python("server-close", &p);
    cr_expect_not_null(strstr(p.got, "close 1008 policy says no"), "%s", p.got);
    cr_expect_eq(S.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.info.ws_local_code, 1008);
    cr_expect_eq(S.info.ws_code, 1008, "python echoes the code");
    stop();
}

Test(ws, tt_end_sends_its_bytes_then_close_1000)
{
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){.default_kind = TT_WS_TEXT}, NULL);
    python("server-end", &p);
    cr_expect_not_null(strstr(p.got, "ok last-words"), "%s", p.got);
    cr_expect_not_null(strstr(p.got, "close 1000"), "%s", p.got);
    cr_expect_eq(S.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.info.ws_local_code, 1000);
    stop();
}

Test(ws, server_shutdown_says_going_away)
{
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){0}, NULL);
    python("shutdown", &p);
    cr_expect_not_null(strstr(p.got, "close 1001"), "%s", p.got);
    cr_expect_eq(S.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.info.ws_local_code, 1001);
    stop();
}

Test(ws, reading_paused_in_on_message_keeps_the_order)
{
    static char out[4096];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){0}, NULL);
    size_t n = request(out, NULL);
    n += frame(out + n, 0x81, "pause", 5, true);
    n += frame(out + n, 0x81, "a", 1, true);
    n += frame(out + n, 0x82, "b", 1, true);
    n += frame(out + n, 0x88, "\x03\xe8", 2, true);
    raw(&p, out, n); /* all in one read: two messages and the close wait behind the pause */
    cr_expect_str_eq(S.order, "pause,a,b,");
    cr_expect(has_frame(&p, 0x81, "a", 1));
    cr_expect(has_frame(&p, 0x82, "b", 1));
    cr_expect_eq(S.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(S.info.kind));
    stop();
}

static void paused_open(tt_conn_t *c)
{
    tt_timer_t *t;
    S.opens++;
    cr_assert_eq(tt_timer_init(tt_conn_loop(c), &t, resume_cb, c), 0);
    cr_assert_eq(tt_timer_start(t, 150, 0), 0);
    cr_expect_eq(tt_conn_read_stop(c), 0);
}

static void paused_message(tt_conn_t *c, const void *msg, size_t len)
{
    if (!S.resumed)
        S.early = true;
    s_message(c, msg, len);
}

Test(ws, reading_paused_in_on_open_holds_pipelined_frames)
{
    static char out[4096];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    tt_conn_handlers_t h = H;
    h.on_open = paused_open;
    h.on_message = paused_message;
    tt_server_opts_t so = {.websocket = &(tt_ws_opts_t){0}};
    tt_addr_t any = th_loopback(0);
    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&L), 0);
    cr_assert_eq(tt_server_listen(L, &any, &so, &h, NULL, &SRV), 0);
    cr_assert_eq(tt_server_addr(SRV, &ADDR), 0);
    size_t n = request(out, NULL);
    n += frame(out + n, 0x81, "held", 4, true);
    n += frame(out + n, 0x88, "\x03\xe8", 2, true);
    raw(&p, out, n);
    cr_expect(has_frame(&p, 0x81, "held", 4));
    cr_expect_eq(S.messages, 1);
    cr_expect_not(S.early, "a message came while reading was paused");
    cr_expect_eq(S.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(S.info.kind));
    stop();
}

static void late_open(tt_conn_t *c)
{
    if (!tt_conn_is_websocket(c)) {
        cr_expect_eq(tt_conn_set_websocket(c, &(tt_ws_opts_t){0}), 0);
        cr_expect_eq(tt_conn_set_websocket(c, &(tt_ws_opts_t){0}), -EBUSY, "once");
        return;
    }
    S.opens++;
}

Test(ws, set_websocket_on_an_accepted_connection)
{
    static char out[4096];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    tt_conn_handlers_t h = H;
    h.on_open = late_open;
    tt_addr_t any = th_loopback(0);
    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&L), 0);
    cr_assert_eq(tt_server_listen(L, &any, NULL, &h, NULL, &SRV), 0);
    cr_assert_eq(tt_server_addr(SRV, &ADDR), 0);
    size_t n = request(out, NULL);
    n += frame(out + n, 0x81, "late", 4, true);
    n += frame(out + n, 0x88, "\x03\xe8", 2, true);
    raw(&p, out, n);
    cr_expect_eq(status_of(&p), 101);
    cr_expect_eq(S.opens, 1, "on_open again after the 101");
    cr_expect(has_frame(&p, 0x81, "late", 4));
    cr_expect_eq(S.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(S.info.kind));
    stop();
}

Test(ws, subprotocol_chosen_in_server_order)
{
    tt_ws_opts_t wo = {.subprotocols = "v2.chat, v1.chat"};
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&wo, NULL);
    python("protocol:v1.chat,v2.chat", &p);
    cr_expect_not_null(strstr(p.got, "protocol v2.chat"), "%s", p.got);
    stop();
}

/* ---- protocol violations: one test each ---------------------------------------------------- */

Test(ws, unmasked_client_frame_is_1002)
{
    violation(0x81, "hi", 2, false, 1002, TT_CLOSE_PROTOCOL_ERROR, 0);
}
Test(ws, reserved_bit_2_is_1002)
{
    violation(0xA1, "hi", 2, true, 1002, TT_CLOSE_PROTOCOL_ERROR, 0);
}
Test(ws, reserved_bit_3_is_1002)
{
    violation(0x91, "hi", 2, true, 1002, TT_CLOSE_PROTOCOL_ERROR, 0);
}
Test(ws, bad_opcode_is_1002) { violation(0x83, "hi", 2, true, 1002, TT_CLOSE_PROTOCOL_ERROR, 0); }
Test(ws, fragmented_control_frame_is_1002)
{
    violation(0x09, "hi", 2, true, 1002, TT_CLOSE_PROTOCOL_ERROR, 0); /* ping without FIN */
}
Test(ws, continuation_without_start_is_1002)
{
    violation(0x80, "hi", 2, true, 1002, TT_CLOSE_PROTOCOL_ERROR, 0);
}
Test(ws, invalid_utf8_text_is_1007)
{
    violation(0x81, "a\xc3\x28", 3, true, 1007, TT_CLOSE_PROTOCOL_ERROR, 0);
}
Test(ws, message_too_big_is_1009)
{
    static char big[2000];
    memset(big, 'x', sizeof(big));
    violation(0x82, big, sizeof(big), true, 1009, TT_CLOSE_FRAME_TOO_LARGE, 1024);
}

Test(ws, invalid_utf8_across_fragments_is_1007)
{
    static char out[4096];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){0}, NULL);
    size_t n = request(out, NULL);
    n += frame(out + n, 0x01, "ok \xe2\x82", 5, true); /* the euro sign cut after 2 bytes */
    n += frame(out + n, 0x80, "\x41", 1, true);       /* ... and not continued */
    raw(&p, out, n);
    cr_expect_eq(close_code_of(&p), 1007);
    cr_expect_eq(S.messages, 0);
    stop();
}

Test(ws, fragments_reassembled_with_control_frames_between)
{
    static char out[4096];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){0}, NULL);
    size_t n = request(out, NULL);
    n += frame(out + n, 0x01, "ok \xe2\x82", 5, true);
    n += frame(out + n, 0x89, "pp", 2, true); /* a ping between fragments */
    n += frame(out + n, 0x80, "\xac!", 2, true);
    n += frame(out + n, 0x88, "\x03\xe8", 2, true);
    raw(&p, out, n);
    cr_expect(has_frame(&p, 0x8A, "pp", 2), "the pong carries the ping's payload");
    cr_expect(has_frame(&p, 0x81, "ok \xe2\x82\xac!", 7), "the message comes back whole");
    cr_expect_eq(close_code_of(&p), 1000);
    cr_expect_eq(S.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.info.ws_code, 1000);
    stop();
}

Test(ws, fragments_past_the_limit_are_1009)
{
    static char out[8192], part[600];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    memset(part, 'y', sizeof(part));
    start(&(tt_ws_opts_t){.max_message = 1024}, NULL);
    size_t n = request(out, NULL);
    n += frame(out + n, 0x02, part, sizeof(part), true);
    n += frame(out + n, 0x00, part, sizeof(part), true); /* 1200 bytes so far */
    n += frame(out + n, 0x80, part, sizeof(part), true);
    raw(&p, out, n);
    cr_expect_eq(close_code_of(&p), 1009);
    cr_expect_eq(S.info.kind, TT_CLOSE_FRAME_TOO_LARGE, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.info.error, TT_EFRAMESIZE);
    cr_expect_eq(S.messages, 0);
    stop();
}

static void flag_cb(tt_timer_t *t, void *data)
{
    *(volatile bool *)data = true;
    tt_timer_close(t);
}

static void run_for(uint64_t ms)
{
    static volatile bool flag;
    tt_timer_t *t;
    flag = false;
    cr_assert_eq(tt_timer_init(L, &t, flag_cb, (void *)&flag), 0);
    cr_assert_eq(tt_timer_start(t, ms, 0), 0);
    th_run_until(L, &flag, ms + 10000);
}

/* Two connections' incomplete messages against the server-wide budget: the one
 * whose growth would pass it is closed with 1009, the other completes. */
Test(ws, partial_messages_share_a_budget)
{
    static char out_a[16384], out_b[4096], big[5000], tail[100];
    static peer_t a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(big, 'A', sizeof(big));
    memset(tail, 'Z', sizeof(tail));
    start(&(tt_ws_opts_t){.max_message = 8000, .budget = 10000}, NULL);
    size_t n = request(out_a, NULL);
    n += frame(out_a + n, 0x02, big, sizeof(big), true); /* held: about 8000 bytes */
    a.split = n;
    a.gap_ms = 1000;
    n += frame(out_a + n, 0x80, tail, sizeof(tail), true);
    n += frame(out_a + n, 0x88, "\x03\xe8", 2, true);
    a.out = out_a;
    a.out_len = n;
    pthread_create(&a.th, NULL, raw_main, &a);
    run_for(300);
    size_t m = request(out_b, NULL);
    m += frame(out_b + m, 0x02, tail, sizeof(tail), true); /* a new buffer: past the budget */
    b.out = out_b;
    b.out_len = m;
    pthread_create(&b.th, NULL, raw_main, &b);
    cr_assert(th_run_until(L, &b.done, 20000));
    pthread_join(b.th, NULL);
    cr_expect_eq(close_code_of(&b), 1009, "%s", b.got);
    cr_expect_eq(S.closes, 1);
    cr_expect_eq(S.info.kind, TT_CLOSE_FRAME_TOO_LARGE, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.info.error, -ENOBUFS);
    cr_assert(th_run_until(L, &a.done, 20000));
    pthread_join(a.th, NULL);
    size_t plen = 0;
    const uint8_t *pa = first_frame(&a, 0x82, &plen);
    cr_expect_not_null(pa, "the first connection's message completes");
    cr_expect_eq(plen, sizeof(big) + sizeof(tail));
    stop();
}

/* A few kilobytes that inflate to 64 MiB: stopped at the limit with 1009. */
Test(ws, deflate_bomb_is_1009)
{
    static uint8_t zeros[1 << 20], z[1 << 16];
    static char out[1 << 16];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    z_stream d = {0};
    cr_assert_eq(deflateInit2(&d, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
    d.next_out = z;
    d.avail_out = sizeof(z);
    for (int i = 0; i < 64; i++) {
        d.next_in = zeros;
        d.avail_in = sizeof(zeros);
        cr_assert_eq(deflate(&d, i == 63 ? Z_SYNC_FLUSH : Z_NO_FLUSH), Z_OK);
    }
    size_t zlen = sizeof(z) - d.avail_out - 4; /* without the 00 00 ff ff tail */
    deflateEnd(&d);
    cr_assert_lt(zlen, 65535);
    start(&(tt_ws_opts_t){.deflate = true, .max_message = 1 << 20}, NULL);
    size_t n = request(out, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    n += frame(out + n, 0xC2, z, zlen, true); /* FIN, RSV1, binary */
    raw(&p, out, n);
    cr_expect_not_null(strstr(p.got, "Sec-WebSocket-Extensions: permessage-deflate"), "%s", p.got);
    cr_expect_eq(close_code_of(&p), 1009);
    cr_expect_eq(S.info.kind, TT_CLOSE_FRAME_TOO_LARGE, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.messages, 0);
    stop();
}

Test(ws, compressed_frame_without_negotiation_is_1002)
{
    violation(0xC1, "hi", 2, true, 1002, TT_CLOSE_PROTOCOL_ERROR, 0);
}

/* ---- handshake: bad inputs and limits ---------------------------------------------------- */

static void bad_handshake(const char *req, const tt_ws_opts_t *wo, int want_status,
                          const char *want_header)
{
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(wo, NULL);
    raw(&p, req, strlen(req));
    cr_expect_eq(status_of(&p), want_status, "status %d, want %d:\n%s", status_of(&p),
                 want_status, p.got);
    if (want_header != NULL)
        cr_expect_not_null(strstr(p.got, want_header), "%s", p.got);
    cr_expect_eq(S.opens, 0);
    cr_expect_eq(S.closes, 1, "one on_close even without on_open");
    cr_expect_eq(S.info.kind, TT_CLOSE_PROTOCOL_ERROR, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.info.detail, want_status);
    cr_expect_not(S.was_ws);
    stop();
}

Test(ws, upgrade_with_post_is_405)
{
    bad_handshake("POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                  &(tt_ws_opts_t){0}, 405, NULL);
}

Test(ws, missing_key_is_400)
{
    bad_handshake("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n",
                  &(tt_ws_opts_t){0}, 400, NULL);
}

Test(ws, invalid_key_is_400)
{
    bad_handshake("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
                  &(tt_ws_opts_t){0}, 400, NULL);
}

Test(ws, wrong_version_is_426_with_version_13)
{
    bad_handshake("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n",
                  &(tt_ws_opts_t){0}, 426, "Sec-WebSocket-Version: 13\r\n");
}

Test(ws, oversized_headers_are_431)
{
    static char req[8192];
    char pad[3000];
    memset(pad, 'a', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-Pad: %s\r\n\r\n", pad);
    bad_handshake(req, &(tt_ws_opts_t){.max_header_bytes = 1024}, 431, NULL);
}

Test(ws, too_many_headers_are_431)
{
    static char req[8192];
    size_t n = (size_t)sprintf(req, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 20; i++)
        n += (size_t)sprintf(req + n, "X-H%d: v\r\n", i);
    sprintf(req + n, "\r\n");
    bad_handshake(req, &(tt_ws_opts_t){.max_headers = 8}, 431, NULL);
}

Test(ws, get_without_upgrade_is_404)
{
    bad_handshake("GET /page HTTP/1.1\r\nHost: x\r\n\r\n", &(tt_ws_opts_t){0}, 404, NULL);
}

static int refuse_foreign(tt_conn_t *c, const tt_http_request_t *req, void *arg)
{
    (void)c, (void)arg;
    S.accept_calls++;
    snprintf(S.origin, sizeof(S.origin), "%s", req->origin != NULL ? req->origin : "");
    snprintf(S.path, sizeof(S.path), "%s", req->path);
    snprintf(S.query, sizeof(S.query), "%s", req->query);
    const char *h = tt_http_header(req, "x-token");
    snprintf(S.header, sizeof(S.header), "%s", h != NULL ? h : "");
    cr_expect_eq(tt_addr_port(&req->peer) != 0, true);
    return req->origin != NULL && strcmp(req->origin, "http://good.example") == 0 ? 0 : 403;
}

Test(ws, accept_hook_sees_the_request_and_refuses)
{
    static char out[2048];
    request(out, "Origin: http://evil.example\r\nX-Token: abc  \r\n");
    bad_handshake(out, &(tt_ws_opts_t){.accept = refuse_foreign}, 403, NULL);
}

Test(ws, accept_hook_accepts)
{
    static char out[2048];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){.accept = refuse_foreign}, NULL);
    size_t n = request(out, "Origin: http://good.example\r\nX-Token: abc  \r\n");
    n += frame(out + n, 0x88, "\x03\xe8", 2, true);
    raw(&p, out, n);
    cr_expect_eq(status_of(&p), 101);
    cr_expect_eq(S.accept_calls, 1);
    cr_expect_str_eq(S.origin, "http://good.example");
    cr_expect_str_eq(S.path, "/chat");
    cr_expect_str_eq(S.query, "room=1");
    cr_expect_str_eq(S.header, "abc");
    cr_expect_eq(S.opens, 1);
    stop();
}

Test(ws, slow_request_gets_408_and_is_closed)
{
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){.handshake_timeout_ms = 300}, NULL);
    p.out = "GET / HTTP/1.1\r\nHost: x\r\n"; /* and never the blank line */
    p.out_len = strlen(p.out);
    uint64_t t0 = th_now_ms();
    peer_run(&p, false, 20000);
    uint64_t took = th_now_ms() - t0;
    cr_expect_eq(status_of(&p), 408, "%s", p.got);
    cr_expect_geq(took, 250, "closed after %llu ms", (unsigned long long)took);
    cr_expect_lt(took, 8000, "closed after %llu ms", (unsigned long long)took);
    cr_expect_eq(S.info.kind, TT_CLOSE_PROTOCOL_ERROR);
    cr_expect_eq(S.info.error, -ETIMEDOUT);
    cr_expect_eq(S.info.detail, 408);
    stop();
}

Test(ws, pipelined_frames_after_the_request_are_kept)
{
    static char out[4096];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){0}, NULL);
    size_t n = request(out, NULL);
    n += frame(out + n, 0x81, "first", 5, true);
    n += frame(out + n, 0x82, "second", 6, true);
    n += frame(out + n, 0x88, "\x03\xe8", 2, true);
    raw(&p, out, n); /* one write: head and frames together */
    cr_expect(has_frame(&p, 0x81, "first", 5));
    cr_expect(has_frame(&p, 0x82, "second", 6), "the kind comes back too");
    cr_expect_eq(S.messages, 2);
    cr_expect_eq(S.last_kind, TT_WS_BINARY);
    stop();
}

Test(ws, header_split_across_reads)
{
    static char out[4096];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){0}, NULL);
    size_t n = request(out, NULL);
    size_t head = n;
    n += frame(out + n, 0x81, "split", 5, true);
    n += frame(out + n, 0x88, "\x03\xe8", 2, true);
    p.split = head + 3; /* inside the frame header (after its length byte and one mask byte) */
    p.gap_ms = 100;
    raw(&p, out, n);
    cr_expect(has_frame(&p, 0x81, "split", 5));
    stop();
}

/* ---- the end of a connection ------------------------------------------------------------ */

Test(ws, tcp_loss_without_close_frame_is_abnormal)
{
    static char out[4096];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){0}, NULL);
    size_t n = request(out, NULL);
    n += frame(out + n, 0x81, "hi", 2, true);
    p.close_early = true;
    raw(&p, out, n);
    cr_expect_eq(S.opens, 1);
    cr_expect_eq(S.info.kind, TT_CLOSE_WS_ABNORMAL, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.info.ws_code, 1006);
    cr_expect_eq(S.info.error, TT_EOF);
    stop();
}

Test(ws, closing_handshake_deadline)
{
    static char out[4096];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){.close_timeout_ms = 300}, NULL);
    size_t n = request(out, NULL);
    n += frame(out + n, 0x81, "close me", 8, true); /* the server answers with tt_ws_close */
    raw(&p, out, n); /* reads until the server ends; never answers the close */
    cr_expect_eq(close_code_of(&p), 1008);
    cr_expect_eq(S.info.kind, TT_CLOSE_LINGER_TIMEOUT, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.info.ws_code, 1006, "no close frame came");
    cr_expect_eq(S.info.ws_local_code, 1008);
    stop();
}

/* ---- HTTP pages --------------------------------------------------------------------------- */

static void page(tt_conn_t *c, const tt_http_request_t *req, tt_http_response_t *res, void *arg)
{
    (void)c, (void)arg;
    if (strcmp(req->path, "/") == 0) {
        res->content_type = "text/html; charset=utf-8";
        res->body = "<html>hi</html>";
        res->body_len = 15;
    } else if (strcmp(req->path, "/stats.json") == 0) {
        res->content_type = "application/json";
        res->headers = "Cache-Control: no-store\r\n";
        res->body = "{\"open\":1}";
        res->body_len = 10;
    } else {
        res->status = 404;
    }
}

Test(ws, http_handler_serves_a_page_and_json)
{
    static peer_t p, q;
    memset(&p, 0, sizeof(p));
    memset(&q, 0, sizeof(q));
    start(&(tt_ws_opts_t){.http = page}, NULL);
    static const char r1[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    raw(&p, r1, sizeof(r1) - 1);
    cr_expect_eq(status_of(&p), 200);
    cr_expect_not_null(strstr(p.got, "Content-Type: text/html; charset=utf-8\r\n"));
    cr_expect_not_null(strstr(p.got, "Content-Length: 15\r\n"));
    cr_expect_not_null(strstr(p.got, "\r\n\r\n<html>hi</html>"));
    cr_expect_eq(S.info.kind, TT_CLOSE_LOCAL_END, "kind %s", tt_close_kind_name(S.info.kind));
    S.closes = 0;
    static const char r2[] = "GET /stats.json HTTP/1.1\r\nHost: x\r\n\r\n";
    raw(&q, r2, sizeof(r2) - 1);
    cr_expect_eq(status_of(&q), 200);
    cr_expect_not_null(strstr(q.got, "Cache-Control: no-store\r\n"));
    cr_expect_not_null(strstr(q.got, "\r\n\r\n{\"open\":1}"));
    cr_expect_eq(S.opens, 0);
    stop();
}

/* ---- liveness and broadcast --------------------------------------------------------------- */

Test(ws, heartbeat_is_a_websocket_ping)
{
    static char out[4096];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    tt_liveness_opts_t lo = {.heartbeat_ms = 100};
    tt_server_opts_t so = {.liveness = &lo};
    start(&(tt_ws_opts_t){0}, &so);
    size_t n = request(out, NULL);
    p.read_ms = 600; /* read for a while, then give up: the server keeps it open */
    raw(&p, out, n);
    cr_expect_eq(status_of(&p), 101);
    cr_expect(has_frame(&p, 0x89, "", 0), "a ping frame came:\n%s", p.got);
    stop();
}

/* --detect-within: a peer that answers WebSocket pings stays, one that does not
 * is found dead. */
Test(ws, detect_within_uses_websocket_ping_pong)
{
    static char out[4096];
    static peer_t p, q;
    memset(&p, 0, sizeof(p));
    memset(&q, 0, sizeof(q));
    tt_server_opts_t so = {.detect_within_ms = 1000};
    start(&(tt_ws_opts_t){0}, &so);
    python("idle", &p); /* silent for 3 s, answering pings */
    cr_expect_not_null(strstr(p.got, "ok idle"), "%s", p.got);
    cr_expect_eq(S.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(S.info.kind));
    S.closes = 0;
    size_t n = request(out, NULL);
    q.read_ms = 15000; /* reads, never answers a ping */
    uint64_t t0 = th_now_ms();
    raw(&q, out, n);
    uint64_t took = th_now_ms() - t0;
    cr_expect_eq(S.info.kind, TT_CLOSE_HEARTBEAT_TIMEOUT, "kind %s",
                 tt_close_kind_name(S.info.kind));
    cr_expect_lt(took, 10000, "found dead after %llu ms", (unsigned long long)took);
    cr_expect(has_frame(&q, 0x89, "", 0), "it was pinged");
    stop();
}

Test(ws, broadcast_shares_one_frame)
{
    static char out[4096];
    static peer_t a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    start(&(tt_ws_opts_t){.default_kind = TT_WS_TEXT}, NULL);
    size_t n = request(out, NULL);
    b.out = out;
    b.out_len = n;
    b.read_ms = 1500;
    pthread_create(&b.th, NULL, raw_main, &b); /* a listener only */
    for (int i = 0; i < 200 && S.opens == 0; i++)
        tt_loop_run(L, TT_RUN_ONCE);
    static char out2[4096];
    size_t m = request(out2, NULL);
    m += frame(out2 + m, 0x82, "broadcast", 9, true);
    a.read_ms = 1500;
    a.out = out2;
    a.out_len = m;
    pthread_create(&a.th, NULL, raw_main, &a);
    cr_assert(th_run_until(L, &a.done, 20000));
    cr_assert(th_run_until(L, &b.done, 20000));
    pthread_join(a.th, NULL);
    pthread_join(b.th, NULL);
    cr_expect(has_frame(&a, 0x81, "to all", 6), "sender got it:\n%s", a.got);
    cr_expect(has_frame(&b, 0x81, "to all", 6), "listener got it:\n%s", b.got);
    cr_expect(has_frame(&a, 0x81, "raw to all", 10), "raw broadcast framed:\n%s", a.got);
    cr_expect(has_frame(&b, 0x81, "raw to all", 10), "raw broadcast framed:\n%s", b.got);
    stop();
}

/* The payload of the first frame whose first byte is b0; NULL when none. */
static const uint8_t *first_frame(const peer_t *p, uint8_t b0, size_t *plen)
{
    size_t len;
    const uint8_t *b = body_of(p, &len);
    while (b != NULL && len >= 2) {
        size_t n = b[1] & 0x7f, h = 2;
        if (n == 126) {
            n = (size_t)b[2] << 8 | b[3];
            h = 4;
        }
        if (len < h + n)
            return NULL;
        if (b[0] == b0) {
            *plen = n;
            return b + h;
        }
        b += h + n;
        len -= h + n;
    }
    return NULL;
}

static size_t inflate_msg(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    static uint8_t buf[1 << 16];
    z_stream z = {0};
    memcpy(buf, in, n);
    memcpy(buf + n, "\x00\x00\xff\xff", 4);
    cr_assert_eq(inflateInit2(&z, -15), Z_OK);
    z.next_in = buf;
    z.avail_in = (uInt)(n + 4);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    inflate(&z, Z_SYNC_FLUSH);
    size_t got = cap - z.avail_out;
    inflateEnd(&z);
    return got;
}

Test(ws, broadcast_compressed_once_for_deflate_peers)
{
    static char out[4096], out2[4096];
    static peer_t a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    start(&(tt_ws_opts_t){.default_kind = TT_WS_TEXT, .deflate = true}, NULL);
    size_t n = request(out, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    b.out = out;
    b.out_len = n;
    b.read_ms = 1500;
    pthread_create(&b.th, NULL, raw_main, &b);
    for (int i = 0; i < 200 && S.opens == 0; i++)
        tt_loop_run(L, TT_RUN_ONCE);
    size_t m = request(out2, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    m += frame(out2 + m, 0x82, "bcast-z", 7, true);
    a.read_ms = 1500;
    a.out = out2;
    a.out_len = m;
    pthread_create(&a.th, NULL, raw_main, &a);
    cr_assert(th_run_until(L, &a.done, 20000));
    cr_assert(th_run_until(L, &b.done, 20000));
    pthread_join(a.th, NULL);
    pthread_join(b.th, NULL);
    size_t la = 0, lb = 0;
    const uint8_t *pa = first_frame(&a, 0xC1, &la), *pb = first_frame(&b, 0xC1, &lb);
    cr_assert_not_null(pa, "a compressed text frame reached the sender:\n%s", a.got);
    cr_assert_not_null(pb, "and the listener");
    cr_expect_lt(la, 1000, "compressed: %zu bytes", la);
    cr_expect(la == lb && memcmp(pa, pb, la) == 0, "the same bytes for both");
    static uint8_t plain[8192];
    size_t got = inflate_msg(pa, la, plain, sizeof(plain));
    cr_expect_eq(got, 4000);
    cr_expect(memcmp(plain, "tether tether ", 14) == 0);
    stop();
}

Test(ws, calls_on_an_open_connection)
{
    static char out[4096];
    static peer_t p;
    memset(&p, 0, sizeof(p));
    start(&(tt_ws_opts_t){0}, NULL);
    size_t n = request(out, NULL);
    n += frame(out + n, 0x81, "checks", 6, true);
    n += frame(out + n, 0x88, "\x0f\xa0", 2, true); /* the answer to our close: 4000 */
    raw(&p, out, n);
    cr_expect(has_frame(&p, 0x82, "default", 7));
    cr_expect_eq(close_code_of(&p), 4999);
    cr_expect_eq(S.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(S.info.kind));
    cr_expect_eq(S.info.ws_code, 4000);
    cr_expect_eq(S.info.ws_local_code, 4999);
    stop();
}

/* ---- options and calls ---------------------------------------------------------------------- */

Test(ws, bad_arguments)
{
    tt_loop_t *loop;
    tt_server_t *s;
    tt_addr_t any = th_loopback(0);
    tt_frame_opts_t fo = tt_frame_line(0);
    tt_ws_opts_t bad = {.max_headers = 1000};
    tt_server_opts_t so = {.websocket = &bad};
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_expect_eq(tt_server_listen(loop, &any, &so, &H, NULL, &s), -EINVAL);
    so.websocket = &(tt_ws_opts_t){0};
    so.frame = &fo;
    cr_expect_eq(tt_server_listen(loop, &any, &so, &H, NULL, &s), -EINVAL, "not both");
    cr_expect_eq(tt_ws_send(NULL, TT_WS_TEXT, "x", 1), -EINVAL);
    cr_expect_eq(tt_ws_close(NULL, 1000, NULL), -EINVAL);
    cr_expect_eq(tt_conn_set_websocket(NULL, &(tt_ws_opts_t){0}), -EINVAL);
    cr_expect_eq(tt_ws_close(NULL, 999, NULL), -EINVAL);
    cr_expect_eq(tt_ws_send_text(NULL, NULL), -EINVAL);
    cr_expect_null(tt_ws_protocol(NULL));
    cr_expect_not(tt_ws_deflated(NULL));
    cr_expect_eq(tt_conn_message_kind(NULL), 0);
    cr_expect_not(tt_conn_is_websocket(NULL));
    cr_expect_null(tt_http_header(NULL, "x"));
    cr_expect_eq(tt_loop_close(loop), 0);
}

/* ---- the CLI ------------------------------------------------------------------------------ */

Test(ws, cli_echo_ws_against_python)
{
    char cmd[1024], line[256];
    snprintf(cmd, sizeof(cmd), "exec %s echo --ws --listen 127.0.0.1:0", th_build_path("tether"));
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *out = fdopen(fds[0], "r");
    cr_assert_not_null(fgets(line, sizeof(line), out), "no listening line");
    unsigned port = 0;
    cr_expect_not_null(strstr(line, " (websocket)\n"), "%s", line);
    cr_assert_eq(sscanf(line, "tether echo: listening on 127.0.0.1:%u", &port), 1, "%s", line);
    static peer_t p;
    memset(&p, 0, sizeof(p));
    snprintf(p.cmd, sizeof(p.cmd), "/usr/bin/python3 %s/tests/net/ws/peer.py %u interop 2>&1",
             TT_SOURCE_DIR, port);
    child_main(&p);
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    fclose(out);
    expect_lines(&p, PY_LINES, sizeof(PY_LINES) / sizeof(PY_LINES[0]));
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tether echo exit status %d", st);
}
