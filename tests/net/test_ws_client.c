/* WebSocket client side (tt_ws_connect, tt_client_start with a ws:// URL) against
 * real servers: tether's own, Python's websockets (tests/net/ws/server.py) and
 * Node's ws (tests/node/server.js), each echoing; then a plain socket on a thread
 * for every bad answer to the upgrade and for a masked server frame; then the
 * reconnecting client and `tether cat ws://`.
 *
 * One driver for all of them: the client sends a plan of messages one at a time,
 * checks each echo (kind and bytes), then ends as the test says. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "certs.h"
#include "harness.h"
#include "peer.h"
#include "proto/ws_handshake.h"
#include "tether.h"

/* ---- the client under test ------------------------------------------------------ */

typedef struct msg {
    tt_ws_kind_t kind;
    const char *text; /* or: */
    size_t size;      /* binary of the test pattern, this many bytes */
    const char *want; /* the answer when it is not the echo (NULL: the echo) */
} msg_t;

typedef struct cl {
    const msg_t *plan;
    size_t nplan, step;
    int close_code;          /* after the plan: tt_ws_close with this (0: none) */
    const char *close_reason;
    int opens, closes, messages, bad;
    char bad_what[160];
    tt_close_info_t info;
    char ws_reason[128], reason[200];
    char proto[64];
    bool deflated, was_open;
    uint8_t *buf; /* the pattern, up to the largest binary */
    bool done;
} cl_t;

static cl_t C;
static tt_loop_t *L;

static void send_step(tt_conn_t *c)
{
    if (C.step == C.nplan) {
        if (C.close_code != 0)
            cr_expect_eq(tt_ws_close(c, C.close_code, C.close_reason), 0);
        return;
    }
    const msg_t *m = &C.plan[C.step];
    int r = m->text != NULL ? tt_ws_send(c, m->kind, m->text, strlen(m->text))
                            : tt_ws_send(c, m->kind, C.buf, m->size);
    cr_expect_geq(r, 0, "send step %zu: %s", C.step, tt_strerror(r));
}

static void c_open(tt_conn_t *c)
{
    C.opens++;
    cr_expect(tt_conn_is_websocket(c), "on_open before the 101");
    snprintf(C.proto, sizeof(C.proto), "%s", tt_ws_protocol(c));
    C.deflated = tt_ws_deflated(c);
    send_step(c);
}

static void c_message(tt_conn_t *c, const void *data, size_t len)
{
    C.messages++;
    if (C.step >= C.nplan) {
        C.bad++;
        snprintf(C.bad_what, sizeof(C.bad_what), "a message after the plan (%zu bytes)", len);
        return;
    }
    const msg_t *m = &C.plan[C.step];
    const char *want = m->want != NULL ? m->want : m->text;
    tt_ws_kind_t kind = m->want != NULL ? TT_WS_TEXT : m->kind;
    size_t wlen = want != NULL ? strlen(want) : m->size;
    const void *wdata = want != NULL ? (const void *)want : C.buf;
    if (tt_conn_message_kind(c) != kind || len != wlen || (len > 0 && memcmp(data, wdata, len))) {
        C.bad++;
        snprintf(C.bad_what, sizeof(C.bad_what), "step %zu: kind %d len %zu, want kind %d len %zu",
                 C.step, tt_conn_message_kind(c), len, kind, wlen);
    }
    C.step++;
    send_step(c);
}

static void c_close(tt_conn_t *c, const tt_close_info_t *info)
{
    C.closes++;
    C.info = *info;
    C.was_open = tt_conn_is_websocket(c);
    snprintf(C.ws_reason, sizeof(C.ws_reason), "%s", info->ws_reason ? info->ws_reason : "(null)");
    snprintf(C.reason, sizeof(C.reason), "%s", info->reason ? info->reason : "(null)");
    C.info.ws_reason = C.info.reason = NULL;
    C.done = true;
}

static const tt_conn_handlers_t CH = {
    .on_open = c_open, .on_message = c_message, .on_close = c_close};

static void reset(const msg_t *plan, size_t n, int close_code, const char *reason)
{
    size_t big = 0;
    free(C.buf);
    memset(&C, 0, sizeof(C));
    C.plan = plan;
    C.nplan = n;
    C.close_code = close_code;
    C.close_reason = reason;
    for (size_t i = 0; i < n; i++)
        if (plan[i].text == NULL && plan[i].size > big)
            big = plan[i].size;
    C.buf = malloc(big + 1);
    th_pattern(C.buf, big, 0);
}

/* Connect to url with opts, run until the client's on_close (at most ms). */
static void run_client(const char *url, const tt_ws_client_opts_t *o, uint64_t ms)
{
    tt_conn_t *c;
    int r = tt_ws_connect(L, url, o, &CH, NULL, &c);
    cr_assert_eq(r, 0, "tt_ws_connect %s: %s", url, tt_strerror(r));
    cr_assert(th_run_until(L, &C.done, ms), "the client did not close within %llu ms",
              (unsigned long long)ms);
}

static void expect_plan_done(void)
{
    cr_expect_eq(C.bad, 0, "%s", C.bad_what);
    cr_expect_eq(C.opens, 1);
    cr_expect_eq(C.step, C.nplan, "%zu of %zu echoes", C.step, C.nplan);
    cr_expect_eq(C.closes, 1);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB ((size_t)1 << 20)

/* Echo from 0 B to 16 MiB, both kinds, compressible and not (the pattern has no
 * short period: deflate pays little on it; the 64 KiB text compresses well). */
static const msg_t ECHO[] = {
    {TT_WS_TEXT, "héllo wörld", 0, NULL},
    {TT_WS_BINARY, NULL, 256, NULL},
    {TT_WS_TEXT, "", 0, NULL},
    {TT_WS_BINARY, NULL, 0, NULL},
    {TT_WS_BINARY, NULL, 125, NULL},
    {TT_WS_BINARY, NULL, 126, NULL},
    {TT_WS_BINARY, NULL, 65536, NULL},
    {TT_WS_TEXT, NULL, 0, NULL}, /* filled below: 64 KiB of compressible text */
    {TT_WS_BINARY, NULL, 16 * MIB, NULL},
};

static char TEXT64K[65537];
static msg_t echo_plan[N(ECHO)];

static const msg_t *echo(void)
{
    for (size_t i = 0; i < sizeof(TEXT64K) - 1; i++)
        TEXT64K[i] = "compressible "[i % 13];
    memcpy(echo_plan, ECHO, sizeof(ECHO));
    echo_plan[7].text = TEXT64K;
    return echo_plan;
}

/* ---- tether's own server ---------------------------------------------------------- */

static tt_server_t *SRV;
static tt_addr_t SADDR;
static int S_closes, S_code;

static void s_message(tt_conn_t *c, const void *msg, size_t len)
{
    if (len == 8 && memcmp(msg, "close me", 8) == 0) {
        tt_ws_close(c, 4003, "bye from tether");
        return;
    }
    if (len == 6 && memcmp(msg, "proto?", 6) == 0) {
        tt_ws_send_text(c, tt_ws_protocol(c));
        return;
    }
    cr_expect_geq(tt_ws_send(c, tt_conn_message_kind(c), msg, len), 0);
}

static void s_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    S_closes++;
    S_code = info->ws_code;
}

static const tt_conn_handlers_t SH = {.on_message = s_message, .on_close = s_close};

static tt_tls_ctx_t *SRV_TLS; /* wss:// tests: the server's TLS */

static void tether_server(const tt_ws_opts_t *wo)
{
    tt_server_opts_t so = {.websocket = wo, .tls = SRV_TLS};
    tt_addr_t any = th_loopback(0);
    S_closes = S_code = 0;
    cr_assert_eq(tt_loop_init(&L), 0);
    cr_assert_eq(tt_server_listen(L, &any, &so, &SH, NULL, &SRV), 0);
    cr_assert_eq(tt_server_addr(SRV, &SADDR), 0);
}

static void finish(void)
{
    if (SRV != NULL)
        tt_server_close(SRV);
    SRV = NULL;
    th_run(L, 10000);
    cr_assert_eq(tt_loop_close(L), 0);
    free(C.buf);
    C.buf = NULL;
}

static const char *url_of(const char *path, uint16_t port)
{
    static char u[128];
    snprintf(u, sizeof(u), "ws://127.0.0.1:%u%s", port, path);
    return u;
}

/* ---- wss:// ------------------------------------------------------------------------ */

static void wss_echo(bool other_cert, tt_close_kind_t want_kind, const char *want_reason)
{
    th_certs_t certs;
    tt_tls_ctx_t *cctx;
    char url[128];

    cr_assert_eq(th_certs_make(&certs), 0);
    /* other.test's certificate does not cover the URL's host, localhost. */
    const th_pair_t *pair = other_cert ? &certs.other : &certs.server;
    tt_tls_server_opts_t so = {.cert_file = pair->cert, .key_file = pair->key};
    cr_assert_eq(tt_tls_server_ctx(&so, &SRV_TLS), 0);
    cr_assert_eq(tt_tls_client_ctx(&(tt_tls_client_opts_t){.ca_file = certs.ca.cert}, &cctx), 0);
    tether_server(&(tt_ws_opts_t){.deflate = true});
    tt_tls_ctx_free(SRV_TLS); /* the server holds its own reference */
    SRV_TLS = NULL;
    reset(echo(), N(ECHO), 4000, "bye from the client");
    snprintf(url, sizeof(url), "wss://localhost:%u/echo", tt_addr_port(&SADDR));
    tt_ws_client_opts_t o = {.deflate = true, .connect = {.tls = cctx}};
    run_client(url, &o, 30000);
    tt_tls_ctx_free(cctx);
    if (want_reason == NULL) {
        expect_plan_done();
        cr_expect_eq(C.info.kind, TT_CLOSE_WS_CLOSED, "kind %s: %s",
                     tt_close_kind_name(C.info.kind), C.reason);
        cr_expect_eq(C.info.ws_code, 4000);
    } else {
        cr_expect_eq(C.info.kind, want_kind, "kind %s: %s", tt_close_kind_name(C.info.kind),
                     C.reason);
        cr_expect_not_null(strstr(C.reason, want_reason), "reason '%s'", C.reason);
    }
    finish();
    th_certs_remove(&certs);
}

Test(ws_client, wss_echo_over_tls) { wss_echo(false, TT_CLOSE_WS_CLOSED, NULL); }
Test(ws_client, wss_verifies_the_host_of_the_url)
{
    wss_echo(true, TT_CLOSE_TLS_HANDSHAKE_FAILED, "hostname mismatch");
}

static void tether_echo(bool server_deflate, bool client_deflate)
{
    tether_server(&(tt_ws_opts_t){.deflate = server_deflate});
    reset(echo(), N(ECHO), 4000, "bye from the client");
    tt_ws_client_opts_t o = {.deflate = client_deflate};
    run_client(url_of("/echo?x=1", tt_addr_port(&SADDR)), &o, 30000);
    expect_plan_done();
    cr_expect_eq(C.deflated, server_deflate && client_deflate);
    cr_expect_eq(C.info.kind, TT_CLOSE_WS_CLOSED, "kind %s: %s", tt_close_kind_name(C.info.kind),
                 C.reason);
    cr_expect_eq(C.info.ws_code, 4000, "the server echoes our code");
    cr_expect_eq(C.info.ws_local_code, 4000);
    finish();
    cr_expect_eq(S_closes, 1);
    cr_expect_eq(S_code, 4000);
}

Test(ws_client, tether_echo_compressed) { tether_echo(true, true); }
Test(ws_client, tether_echo_uncompressed) { tether_echo(true, false); }
Test(ws_client, tether_echo_server_without_deflate) { tether_echo(false, true); }

Test(ws_client, tether_server_closes_with_a_code)
{
    static const msg_t plan[] = {{TT_WS_TEXT, "close me", 0, NULL}};
    tether_server(&(tt_ws_opts_t){0});
    reset(plan, 1, 0, NULL);
    run_client(url_of("/", tt_addr_port(&SADDR)), NULL, 10000);
    cr_expect_eq(C.opens, 1);
    cr_expect_eq(C.messages, 0);
    cr_expect_eq(C.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(C.info.kind));
    cr_expect_eq(C.info.ws_code, 4003);
    cr_expect_str_eq(C.ws_reason, "bye from tether");
    cr_expect_eq(C.info.ws_local_code, 4003, "we echo the server's code");
    finish();
}

Test(ws_client, subprotocol_chosen_by_the_server)
{
    static const msg_t plan[] = {{TT_WS_TEXT, "proto?", 0, "v2"}};
    tether_server(&(tt_ws_opts_t){.subprotocols = "v3, v2"});
    reset(plan, 1, 1000, NULL);
    tt_ws_client_opts_t o = {.subprotocols = "v1, v2", .headers = "X-Test: 1\r\n"};
    run_client(url_of("/", tt_addr_port(&SADDR)), &o, 10000);
    expect_plan_done();
    cr_expect_str_eq(C.proto, "v2");
    finish();
}

Test(ws_client, tt_end_on_a_client_sends_close_1000)
{
    tether_server(&(tt_ws_opts_t){0});
    reset(NULL, 0, 0, NULL);
    static const tt_conn_handlers_t h = {.on_open = NULL, .on_close = c_close};
    tt_conn_t *c;
    cr_assert_eq(tt_ws_connect(L, url_of("/", tt_addr_port(&SADDR)), NULL, &h, NULL, &c), 0);
    cr_expect_eq(tt_ws_send_text(c, "early"), -ENOTCONN, "not before the 101");
    for (int i = 0; i < 200 && !tt_conn_is_websocket(c); i++)
        tt_loop_run(L, TT_RUN_ONCE);
    cr_assert(tt_conn_is_websocket(c));
    static char owned[4];
    cr_expect_eq(tt_send_message_owned(c, owned, 4, NULL, NULL), -EOPNOTSUPP,
                 "a client's frames are masked: no zero-copy send");
    cr_expect_eq(tt_end(c, "last", 4), 0);
    cr_assert(th_run_until(L, &C.done, 10000));
    cr_expect_eq(C.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(C.info.kind));
    cr_expect_eq(C.info.ws_local_code, 1000);
    cr_expect_eq(C.info.ws_code, 1000);
    finish();
}

Test(ws_client, bad_arguments)
{
    tt_conn_t *c;
    cr_assert_eq(tt_loop_init(&L), 0);
    static const char *const bad[] = {
        "http://127.0.0.1/", "ws://", "ws://:80/", "ws://host:0/", "ws://host:65536/",
        "ws://user@host/", "ws://host/#frag", "ws://ho st/", "ws://[::1/", "ws://host:8x/",
        "ws://[zz::1]/"};
    for (size_t i = 0; i < N(bad); i++)
        cr_expect_eq(tt_ws_connect(L, bad[i], NULL, &CH, NULL, &c), -EINVAL, "%s", bad[i]);
    cr_expect_eq(tt_ws_connect(NULL, "ws://127.0.0.1/", NULL, &CH, NULL, &c), -EINVAL);
    cr_expect_eq(tt_ws_connect(L, NULL, NULL, &CH, NULL, &c), -EINVAL);
    cr_expect_eq(tt_ws_connect(L, "ws://127.0.0.1/", NULL, &CH, NULL, NULL), -EINVAL);
    static const char *const hdrs[] = {"X-A: 1", "Host: x\r\n", "Sec-WebSocket-Key: x\r\n",
                                       "X-A: 1\nX-B: 2\r\n", ": v\r\n", "Upgrade: h2c\r\n"};
    for (size_t i = 0; i < N(hdrs); i++)
        cr_expect_eq(tt_ws_connect(L, "ws://127.0.0.1/", &(tt_ws_client_opts_t){.headers = hdrs[i]},
                                   &CH, NULL, &c),
                     -EINVAL, "%s", hdrs[i]);
    static const char *const protos[] = {"", "a,,b", "a, a", "a b", "a;b"};
    for (size_t i = 0; i < N(protos); i++)
        cr_expect_eq(tt_ws_connect(L, "ws://127.0.0.1/",
                                   &(tt_ws_client_opts_t){.subprotocols = protos[i]}, &CH, NULL, &c),
                     -EINVAL, "'%s'", protos[i]);
    tt_client_t *cl;
    cr_expect_eq(tt_client_start(L, "ws://127.0.0.1/", 0, &(tt_client_opts_t){.keep_unsent = true},
                                 NULL, &CH, NULL, &cl),
                 -EINVAL);
    cr_expect_eq(tt_client_start(L, "ws://u@h/", 0, NULL, NULL, &CH, NULL, &cl), -EINVAL);
    cr_expect_eq(tt_loop_close(L), 0);
}

Test(ws_client, refused_connect_is_a_connect_failure)
{
    cr_assert_eq(tt_loop_init(&L), 0);
    reset(NULL, 0, 0, NULL);
    run_client(url_of("/", th_unused_port()), NULL, 10000);
    cr_expect_eq(C.opens, 0);
    cr_expect_eq(C.info.kind, TT_CLOSE_CONNECT_FAILED, "kind %s", tt_close_kind_name(C.info.kind));
    cr_expect_eq(C.info.error, -ECONNREFUSED);
    cr_expect_eq(C.info.ws_code, 0, "never WebSocket: no codes");
    finish();
}

/* ---- Python's websockets and Node's ws as servers ------------------------------------- */

static pid_t PEER_PID;

/* Start `cmd` (a server that prints "port N" first); returns N. */
static uint16_t spawn_server(const char *cmd)
{
    int fds[2];
    char line[128];
    unsigned port = 0;
    cr_assert_eq(pipe(fds), 0);
    PEER_PID = fork();
    cr_assert_geq(PEER_PID, 0);
    if (PEER_PID == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    const char *colon;
    bool got = fgets(line, sizeof(line), f) != NULL &&
               (sscanf(line, "port %u", &port) == 1 || /* or tether's "listening on ADDR:PORT" */
                ((colon = strrchr(line, ':')) != NULL && sscanf(colon, ":%u", &port) == 1));
    fclose(f);
    if (!got) {
        kill(PEER_PID, SIGKILL);
        waitpid(PEER_PID, NULL, 0);
    }
    cr_assert(got && port > 0, "the server did not say its port: %s", cmd);
    return (uint16_t)port;
}

static void stop_server(void)
{
    kill(PEER_PID, SIGTERM);
    waitpid(PEER_PID, NULL, 0);
}

static uint16_t python_server(bool deflate)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "exec /usr/bin/python3 %s/tests/net/ws/server.py %s",
             TT_SOURCE_DIR, deflate ? "deflate" : "plain");
    return spawn_server(cmd);
}

static uint16_t node_server(bool deflate)
{
    char nm[1024], cmd[1200];
    struct stat st;
    snprintf(nm, sizeof(nm), "%s/tests/node/node_modules/ws", TT_SOURCE_DIR);
    if (stat(nm, &st) != 0) { /* scripts/deps.sh installs it; do it here if it did not */
        snprintf(cmd, sizeof(cmd), "cd %s/tests/node && npm ci --no-audit --no-fund >/dev/null 2>&1",
                 TT_SOURCE_DIR);
        cr_assert_eq(system(cmd), 0, "npm ci in tests/node failed");
    }
    snprintf(cmd, sizeof(cmd), "exec node %s/tests/node/server.js %s", TT_SOURCE_DIR,
             deflate ? "deflate" : "plain");
    return spawn_server(cmd);
}

static void peer_echo(uint16_t (*server)(bool), bool deflate, int code, const char *reason)
{
    cr_assert_eq(tt_loop_init(&L), 0);
    uint16_t port = server(deflate);
    reset(echo(), N(ECHO), 4000, "bye");
    tt_ws_client_opts_t o = {.deflate = true};
    run_client(url_of("/x", port), &o, 60000);
    expect_plan_done();
    cr_expect_eq(C.deflated, deflate);
    cr_expect_eq(C.info.kind, TT_CLOSE_WS_CLOSED, "kind %s: %s", tt_close_kind_name(C.info.kind),
                 C.reason);
    cr_expect_eq(C.info.ws_code, 4000);
    /* The same server: fragments, its ping, the subprotocol, its close. */
    static msg_t plan[] = {{TT_WS_TEXT, "frag", 0, NULL},
                           {TT_WS_TEXT, "ping me", 0, "pong came"},
                           {TT_WS_TEXT, "proto?", 0, "chat"},
                           {TT_WS_TEXT, "close me", 0, NULL}};
    plan[0].want = server == python_server ? "fragmént€!" : "fragmented ✓";
    reset(plan, N(plan), 0, NULL);
    o.subprotocols = "chat";
    run_client(url_of("/y", port), &o, 30000);
    cr_expect_eq(C.bad, 0, "%s", C.bad_what);
    cr_expect_eq(C.step, 3, "the answers before the close: %zu", C.step);
    cr_expect_str_eq(C.proto, "chat");
    cr_expect_eq(C.info.kind, TT_CLOSE_WS_CLOSED, "kind %s: %s", tt_close_kind_name(C.info.kind),
                 C.reason);
    cr_expect_eq(C.info.ws_code, code);
    cr_expect_str_eq(C.ws_reason, reason);
    stop_server();
    finish();
}

Test(ws_client, python_server_compressed, .timeout = 90)
{
    peer_echo(python_server, true, 4001, "bye from python");
}
Test(ws_client, python_server_uncompressed, .timeout = 90)
{
    peer_echo(python_server, false, 4001, "bye from python");
}
Test(ws_client, node_server_compressed, .timeout = 90)
{
    peer_echo(node_server, true, 4002, "bye from node");
}
Test(ws_client, node_server_uncompressed, .timeout = 90)
{
    peer_echo(node_server, false, 4002, "bye from node");
}

Test(ws_client, python_binary_fragments)
{
    static char want[71001];
    cr_assert_eq(tt_loop_init(&L), 0);
    uint16_t port = python_server(true);
    /* The answer is binary: checked by hand in on_message through the pattern
     * buffer, which is made the expected bytes. */
    static const msg_t plan[] = {{TT_WS_TEXT, "frag-bin", 0, NULL}};
    reset(plan, 1, 1000, NULL);
    memset(want, 0, 1000);
    memset(want + 1000, 1, 70000);
    want[71000] = 2;
    static msg_t p2[1];
    p2[0] = (msg_t){TT_WS_BINARY, NULL, sizeof(want), NULL};
    C.plan = p2; /* on_message compares with C.buf: make it the fragments' bytes */
    free(C.buf);
    C.buf = malloc(sizeof(want));
    memcpy(C.buf, want, sizeof(want));
    tt_conn_t *c;
    static const tt_conn_handlers_t h = {.on_message = c_message, .on_close = c_close};
    cr_assert_eq(tt_ws_connect(L, url_of("/", port), NULL, &h, NULL, &c), 0);
    for (int i = 0; i < 500 && !tt_conn_is_websocket(c); i++)
        tt_loop_run(L, TT_RUN_ONCE);
    cr_assert(tt_conn_is_websocket(c));
    cr_assert_geq(tt_ws_send_text(c, "frag-bin"), 0);
    cr_assert(th_run_until(L, &C.done, 20000));
    cr_expect_eq(C.bad, 0, "%s", C.bad_what);
    cr_expect_eq(C.messages, 1);
    cr_expect_eq(C.info.kind, TT_CLOSE_WS_CLOSED, "kind %s", tt_close_kind_name(C.info.kind));
    stop_server();
    finish();
}

/* ---- a raw server on a thread: bad answers ---------------------------------------------- */

typedef enum { A_GOOD, A_BAD_ACCEPT, A_404, A_NO_UPGRADE, A_SILENT, A_MASKED, A_BAD_PROTO,
               A_BAD_EXT, A_GARBAGE, A_CLOSE } answer_t;

typedef struct raw {
    int lfd;
    answer_t mode;
    pthread_t th;
    char req[4096];
    size_t req_len;
    uint8_t got[4096]; /* the client's bytes after its request */
    size_t got_len;
} raw_t;

static void *raw_main(void *arg)
{
    raw_t *r = arg;
    int fd = accept(r->lfd, NULL, NULL);
    struct timeval tv = {.tv_sec = 5};
    char resp[1024], accept_v[TT__WS_ACCEPT_LEN + 1];
    if (fd < 0)
        return NULL;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (r->req_len < sizeof(r->req) - 1 && strstr(r->req, "\r\n\r\n") == NULL) {
        ssize_t n = read(fd, r->req + r->req_len, sizeof(r->req) - 1 - r->req_len);
        if (n <= 0)
            break;
        r->req_len += (size_t)n;
        r->req[r->req_len] = '\0';
    }
    const char *k = strstr(r->req, "Sec-WebSocket-Key: ");
    if (k != NULL)
        tt__ws_accept_for(k + 19, TT__WS_KEY_LEN, accept_v);
    else
        strcpy(accept_v, "none");
    const char *fmt = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n";
    const char *extra = "";
    switch (r->mode) {
    case A_BAD_ACCEPT:
        strcpy(accept_v, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        break;
    case A_404:
        fmt = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n%.0s%s\r\n";
        break;
    case A_NO_UPGRADE:
        fmt = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: %s\r\n%s\r\n";
        break;
    case A_BAD_PROTO:
        extra = "Sec-WebSocket-Protocol: other\r\n";
        break;
    case A_BAD_EXT:
        extra = "Sec-WebSocket-Extensions: permessage-deflate\r\n"; /* never offered */
        break;
    case A_GARBAGE:
        fmt = "SSH-2.0-OpenSSH_9.2\r\n%.0s%s\r\n";
        break;
    default:
        break;
    }
    int n = snprintf(resp, sizeof(resp), fmt, accept_v, extra);
    if (r->mode == A_CLOSE) {
        close(fd);
        return NULL;
    }
    if (r->mode != A_SILENT && write(fd, resp, (size_t)n) != n)
        goto out;
    if (r->mode == A_MASKED) {
        /* A masked text frame "hi": a server must not mask (5.1). */
        static const uint8_t f[] = {0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2};
        if (write(fd, f, sizeof(f)) != (ssize_t)sizeof(f))
            goto out;
    }
    for (;;) { /* what the client sends back, until it closes (or 5 s) */
        ssize_t m = read(fd, r->got + r->got_len, sizeof(r->got) - r->got_len);
        if (m <= 0)
            break;
        r->got_len += (size_t)m;
    }
out:
    close(fd);
    return NULL;
}

static raw_t RAW;

static void raw_server(answer_t mode)
{
    tt_addr_t a;
    memset(&RAW, 0, sizeof(RAW));
    RAW.mode = mode;
    cr_assert_eq(tt_loop_init(&L), 0);
    RAW.lfd = th_tcp_listen_blocking(&a);
    SADDR = a;
    pthread_create(&RAW.th, NULL, raw_main, &RAW);
}

static void raw_done(void)
{
    pthread_join(RAW.th, NULL);
    close(RAW.lfd);
    finish();
}

static void refused(answer_t mode, int status, const char *why)
{
    raw_server(mode);
    reset(NULL, 0, 0, NULL);
    tt_ws_client_opts_t o = {.subprotocols = "chat"};
    run_client(url_of("/", tt_addr_port(&SADDR)), &o, 10000);
    cr_expect_eq(C.opens, 0, "never on_open");
    cr_expect_not(C.was_open);
    cr_expect_eq(C.info.kind, TT_CLOSE_PROTOCOL_ERROR, "kind %s", tt_close_kind_name(C.info.kind));
    cr_expect_eq(C.info.error, TT_EPROTOCOL);
    cr_expect_eq(C.info.detail, status);
    cr_expect_not_null(strstr(C.reason, why), "reason '%s', want '%s'", C.reason, why);
    cr_expect_eq(C.info.ws_code, 0);
    raw_done();
    cr_expect_eq(RAW.got_len, 0, "no frame after a failed handshake");
}

Test(ws_client, bad_accept_is_refused) { refused(A_BAD_ACCEPT, 101, "Sec-WebSocket-Accept"); }
Test(ws_client, status_404_is_refused) { refused(A_404, 404, "status is not 101"); }
Test(ws_client, missing_upgrade_is_refused) { refused(A_NO_UPGRADE, 101, "Upgrade: websocket"); }
Test(ws_client, unoffered_protocol_is_refused) { refused(A_BAD_PROTO, 101, "did not offer"); }
Test(ws_client, unoffered_extension_is_refused) { refused(A_BAD_EXT, 101, "extension"); }
Test(ws_client, not_http_is_refused) { refused(A_GARBAGE, 0, "malformed"); }
Test(ws_client, close_without_answer_is_refused) { refused(A_CLOSE, 0, "without answering"); }

Test(ws_client, the_request_is_what_the_rfc_asks)
{
    raw_server(A_GOOD);
    static const msg_t plan[] = {{TT_WS_TEXT, "x", 0, NULL}};
    reset(plan, 1, 0, NULL);
    tt_ws_client_opts_t o = {.deflate = true, .subprotocols = "chat, v2",
                             .headers = "Origin: http://example.test\r\n"};
    tt_conn_t *c;
    cr_assert_eq(tt_ws_connect(L, url_of("/p/a?q=1&r", tt_addr_port(&SADDR)), &o, &CH, NULL, &c),
                 0);
    /* The raw server answers 101 then reads: our "x" frame arrives masked. */
    for (int i = 0; i < 1000 && RAW.got_len < 7; i++)
        tt_loop_run(L, TT_RUN_NOWAIT), usleep(1000);
    tt_destroy(c, 0);
    th_run(L, 5000); /* the socket closes: the raw server's read ends */
    raw_done();
    char want_host[64];
    snprintf(want_host, sizeof(want_host), "Host: 127.0.0.1:%u\r\n", tt_addr_port(&SADDR));
    cr_expect(strncmp(RAW.req, "GET /p/a?q=1&r HTTP/1.1\r\n", 25) == 0, "%s", RAW.req);
    static const char *const lines[] = {"Upgrade: websocket\r\n", "Connection: Upgrade\r\n",
                                        "Sec-WebSocket-Version: 13\r\n",
                                        "Sec-WebSocket-Protocol: chat, v2\r\n",
                                        ("Sec-WebSocket-Extensions: permessage-deflate; "
                                         "server_no_context_takeover; client_max_window_bits\r\n"),
                                        "Origin: http://example.test\r\n"};
    for (size_t i = 0; i < N(lines); i++)
        cr_expect_not_null(strstr(RAW.req, lines[i]), "missing %s in:\n%s", lines[i], RAW.req);
    cr_expect_not_null(strstr(RAW.req, want_host), "%s", RAW.req);
    const char *k = strstr(RAW.req, "Sec-WebSocket-Key: ");
    cr_assert_not_null(k);
    cr_expect(tt__ws_key_ok((tt__str_t){k + 19, TT__WS_KEY_LEN}), "a valid key");
    cr_assert_geq(RAW.got_len, 7);
    cr_expect_eq(RAW.got[0], 0x81);
    cr_expect_eq(RAW.got[1], 0x81, "masked, 1 byte");
    cr_expect_eq(RAW.got[6] ^ RAW.got[2], 'x');
}

Test(ws_client, masks_are_fresh_per_frame)
{
    raw_server(A_GOOD);
    static const msg_t plan[] = {{TT_WS_TEXT, "x", 0, NULL}};
    reset(plan, 1, 0, NULL);
    tt_conn_t *c;
    cr_assert_eq(tt_ws_connect(L, url_of("/", tt_addr_port(&SADDR)), NULL, &CH, NULL, &c), 0);
    for (int i = 0; i < 1000 && !tt_conn_is_websocket(c); i++)
        tt_loop_run(L, TT_RUN_NOWAIT), usleep(1000);
    for (int i = 0; i < 8; i++)
        cr_assert_geq(tt_ws_send_text(c, "same"), 0);
    for (int i = 0; i < 1000 && RAW.got_len < 7 + 8 * 10; i++)
        tt_loop_run(L, TT_RUN_NOWAIT), usleep(1000);
    tt_destroy(c, 0);
    th_run(L, 5000); /* the socket closes: the raw server's read ends */
    raw_done();
    cr_assert_geq(RAW.got_len, 7 + 8 * 10);
    int same = 0;
    for (int i = 0; i < 8; i++) {
        const uint8_t *f = RAW.got + 7 + i * 10, *prev = f - 10;
        cr_expect_eq(f[1], 0x84);
        if (i > 0 && memcmp(f + 2, prev + 2, 4) == 0)
            same++;
    }
    cr_expect_lt(same, 2, "the same mask key again and again");
}

Test(ws_client, masked_server_frame_is_1002)
{
    raw_server(A_MASKED);
    reset(NULL, 0, 0, NULL);
    run_client(url_of("/", tt_addr_port(&SADDR)), NULL, 10000);
    cr_expect_eq(C.opens, 1);
    cr_expect_eq(C.messages, 0, "the masked frame never reaches the app");
    cr_expect_eq(C.info.kind, TT_CLOSE_PROTOCOL_ERROR, "kind %s", tt_close_kind_name(C.info.kind));
    cr_expect_eq(C.info.ws_local_code, 1002);
    raw_done();
    /* Our close frame: masked, code 1002. */
    cr_assert_geq(RAW.got_len, 8, "no close frame came");
    cr_expect_eq(RAW.got[0], 0x88);
    cr_expect_eq(RAW.got[1], 0x82);
    cr_expect_eq(((RAW.got[6] ^ RAW.got[2]) << 8 | (RAW.got[7] ^ RAW.got[3])), 1002);
}

Test(ws_client, handshake_timeout_when_the_server_never_answers)
{
    raw_server(A_SILENT);
    reset(NULL, 0, 0, NULL);
    uint64_t t0 = th_now_ms();
    run_client(url_of("/", tt_addr_port(&SADDR)), &(tt_ws_client_opts_t){.handshake_timeout_ms = 300},
               5000);
    uint64_t took = th_now_ms() - t0;
    cr_expect_eq(C.opens, 0);
    cr_expect_eq(C.info.kind, TT_CLOSE_CONNECT_TIMEOUT, "kind %s", tt_close_kind_name(C.info.kind));
    cr_expect_eq(C.info.error, -ETIMEDOUT);
    cr_expect_not_null(strstr(C.reason, "handshake timeout"), "%s", C.reason);
    cr_expect(took >= 290 && took < 2000, "took %llu ms", (unsigned long long)took);
    raw_done();
}

Test(ws_client, closing_handshake_deadline)
{
    raw_server(A_GOOD); /* answers 101, then never answers our close frame */
    reset(NULL, 0, 4000, "going");
    uint64_t t0 = th_now_ms();
    run_client(url_of("/", tt_addr_port(&SADDR)), &(tt_ws_client_opts_t){.close_timeout_ms = 300},
               5000);
    uint64_t took = th_now_ms() - t0;
    cr_expect_eq(C.opens, 1);
    cr_expect_eq(C.info.kind, TT_CLOSE_LINGER_TIMEOUT, "kind %s", tt_close_kind_name(C.info.kind));
    cr_expect_eq(C.info.ws_code, 1006, "no close frame came");
    cr_expect_eq(C.info.ws_local_code, 4000);
    cr_expect(took >= 290 && took < 2000, "took %llu ms", (unsigned long long)took);
    raw_done();
    cr_assert_geq(RAW.got_len, 6 + 7, "our close frame");
    cr_expect_eq(RAW.got[0], 0x88);
    cr_expect_eq(RAW.got[1], 0x80 | 7, "masked, code + \"going\"");
}

/* ---- reconnecting ----------------------------------------------------------------------- */

static int R_connects, R_attempts;
static tt_conn_t *R_srv_conn;
static bool R_echoed;

static void r_connected(tt_client_t *cl, tt_conn_t *c)
{
    (void)cl;
    R_connects++;
    cr_expect(tt_conn_is_websocket(c), "on_connected after the 101");
    cr_expect_geq(tt_ws_send_text(c, R_connects == 1 ? "one" : "two"), 0);
}
static void r_attempt(tt_client_t *cl, unsigned attempt, uint64_t delay)
{
    (void)cl, (void)attempt, (void)delay;
    R_attempts++;
}
static void r_message(tt_conn_t *c, const void *m, size_t len)
{
    (void)c;
    if (len == 3 && memcmp(m, "two", 3) == 0)
        R_echoed = true;
}
static void rs_open(tt_conn_t *c) { R_srv_conn = c; }

static void restart_cb(tt_timer_t *t, void *data)
{
    (void)data;
    tt_server_opts_t so = {.websocket = &(tt_ws_opts_t){0}};
    static const tt_conn_handlers_t sh = {.on_open = rs_open, .on_message = s_message};
    cr_assert_eq(tt_server_listen(L, &SADDR, &so, &sh, NULL, &SRV), 0, "listen again");
    tt_timer_close(t);
}

Test(ws_client, reconnects_after_the_server_restarts)
{
    tt_server_opts_t so = {.websocket = &(tt_ws_opts_t){0}};
    static const tt_conn_handlers_t sh = {.on_open = rs_open, .on_message = s_message};
    tt_addr_t any = th_loopback(0);
    cr_assert_eq(tt_loop_init(&L), 0);
    cr_assert_eq(tt_server_listen(L, &any, &so, &sh, NULL, &SRV), 0);
    cr_assert_eq(tt_server_addr(SRV, &SADDR), 0);
    R_connects = R_attempts = 0;
    R_echoed = false;
    tt_client_t *cl;
    tt_client_handlers_t ch = {.on_attempt = r_attempt, .on_connected = r_connected};
    tt_conn_handlers_t h = {.on_message = r_message};
    tt_client_opts_t co = {.min_delay_ms = 50, .max_delay_ms = 100,
                           .websocket = &(tt_ws_client_opts_t){.deflate = true}};
    cr_assert_eq(tt_client_start(L, url_of("/r", tt_addr_port(&SADDR)), 0, &co, &ch, &h, NULL, &cl),
                 0);
    for (int i = 0; i < 2000 && R_connects == 0; i++)
        tt_loop_run(L, TT_RUN_ONCE);
    cr_assert_eq(R_connects, 1);
    /* The server goes away (its connection with it) and comes back 300 ms later. */
    tt_server_close(SRV);
    SRV = NULL;
    tt_destroy(R_srv_conn, 0);
    tt_timer_t *t;
    cr_assert_eq(tt_timer_init(L, &t, restart_cb, NULL), 0);
    cr_assert_eq(tt_timer_start(t, 300, 0), 0);
    cr_assert(th_run_until(L, &R_echoed, 10000), "no echo on the second connection");
    cr_expect_eq(R_connects, 2);
    cr_expect_geq(R_attempts, 3, "refused attempts while the server was away: %d", R_attempts);
    tt_client_close(cl);
    finish();
}

/* ---- the CLI ------------------------------------------------------------------------------ */

/* What a command prints on stdout (stderr too with `both`), and its exit status
 * as a last line "exit=N". */
static void run_cmd(const char *cmd, char *out, size_t cap)
{
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    pclose(f);
}

/* `tether echo --ws` as the server: it answers every message before it handles
 * the close frame that follows, so every line comes back. */
Test(ws_client, cli_cat_ws_against_tether_echo, .timeout = 60)
{
    char cmd[1024], out[512];
    cr_assert_eq(tt_loop_init(&L), 0);
    snprintf(cmd, sizeof(cmd), "exec %s echo --ws --listen 127.0.0.1:0", th_build_path("tether"));
    uint16_t port = spawn_server(cmd);
    snprintf(cmd, sizeof(cmd),
             "printf 'one\\nh\\303\\251llo\\n\\n\\377bin\\nlast' | %s cat ws://127.0.0.1:%u/cat; "
             "echo exit=$?",
             th_build_path("tether"), port);
    run_cmd(cmd, out, sizeof(out));
    cr_expect_str_eq(out, "one\nhéllo\n\n\377bin\nlast\nexit=0\n",
                     "each line a message, each message a line; exit 0 after the close");
    stop_server();
    finish();
}

Test(ws_client, cli_cat_ws_against_python, .timeout = 60)
{
    char cmd[1024], out[512];
    cr_assert_eq(tt_loop_init(&L), 0);
    uint16_t port = python_server(true);
    /* The server closes with 4001 while stdin is still open: one line, exit 1. */
    snprintf(cmd, sizeof(cmd), "(echo proto?; echo close me; sleep 2) | %s cat ws://127.0.0.1:%u/cat 2>&1; echo exit=$?",
             th_build_path("tether"), port);
    run_cmd(cmd, out, sizeof(out));
    char want[256];
    snprintf(want, sizeof(want),
             "tether cat: ws://127.0.0.1:%u/cat: closed by the server: 4001 bye from python\n", port);
    /* stdout (the empty protocol line) and stderr share the pipe: either order. */
    cr_expect_not_null(strstr(out, want), "%s", out);
    cr_expect_eq(strlen(out), strlen(want) + 1 + strlen("exit=1\n"), "%s", out);
    cr_expect_not_null(strstr(out, "\nexit=1\n"), "%s", out);
    stop_server();
    finish();
}

Test(ws_client, cli_cat_ws_errors_exit_1, .timeout = 30)
{
    char cmd[1024], out[512], want[256];
    uint16_t port = th_unused_port();
    snprintf(cmd, sizeof(cmd), "%s cat ws://127.0.0.1:%u/ </dev/null 2>&1; echo exit=$?",
             th_build_path("tether"), port);
    run_cmd(cmd, out, sizeof(out));
    snprintf(want, sizeof(want), "tether cat: connect ws://127.0.0.1:%u/: %s\nexit=1\n", port,
             tt_strerror(-ECONNREFUSED));
    cr_expect_str_eq(out, want);
    snprintf(cmd, sizeof(cmd), "%s cat wss://127.0.0.1:%u/ </dev/null 2>&1; echo exit=$?",
             th_build_path("tether"), port);
    run_cmd(cmd, out, sizeof(out));
    snprintf(want, sizeof(want), "tether cat: connect wss://127.0.0.1:%u/: %s\nexit=1\n", port,
             tt_strerror(-ECONNREFUSED));
    cr_expect_str_eq(out, want);
    snprintf(cmd, sizeof(cmd), "%s cat ws://u@h/ </dev/null 2>&1; echo exit=$?",
             th_build_path("tether"));
    run_cmd(cmd, out, sizeof(out));
    cr_expect_not_null(strstr(out, "bad WebSocket URL"), "%s", out);
    cr_expect_not_null(strstr(out, "exit=2\n"), "%s", out);
    /* A server that answers 404: the reason, in one line. */
    raw_server(A_404);
    snprintf(cmd, sizeof(cmd), "%s cat ws://127.0.0.1:%u/ </dev/null 2>&1; echo exit=$?",
             th_build_path("tether"), tt_addr_port(&SADDR));
    run_cmd(cmd, out, sizeof(out));
    snprintf(want, sizeof(want),
             "tether cat: connect ws://127.0.0.1:%u/: the server answered without switching "
             "protocols (status is not 101) (HTTP 404)\nexit=1\n",
             tt_addr_port(&SADDR));
    cr_expect_str_eq(out, want);
    raw_done();
}
