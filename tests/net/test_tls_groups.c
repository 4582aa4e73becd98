/* TLS with the other pieces: a group broadcast reaches every TLS member once (one
 * plaintext payload, encrypted per connection), tt_server_broadcast likewise; and
 * a PROXY protocol header goes before the TLS handshake (a tether client sending
 * v2 over TLS to a server reading it), the address it names being the peer's. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "harness.h"

#define MEMBERS 4

static th_certs_t certs;
static tt_loop_t *loop;
static tt_tls_ctx_t *sctx, *cctx;
static tt_server_t *srv;
static tt_group_t *room;
static tt_addr_t saddr;

static struct {
    size_t got[MEMBERS];   /* bytes received by each client */
    int opened, closed, server_open;
    char peer[TT_ADDR_STRLEN];
    bool resumed_seen;
} S;

static void setup(void)
{
    memset(&S, 0, sizeof(S));
    cr_assert_eq(th_certs_make(&certs), 0);
    tt_tls_server_opts_t so = {.cert_file = certs.server.cert, .key_file = certs.server.key};
    cr_assert_eq(tt_tls_server_ctx(&so, &sctx), 0);
    cr_assert_eq(tt_tls_client_ctx(&(tt_tls_client_opts_t){.ca_file = certs.ca.cert}, &cctx), 0);
    cr_assert_eq(tt_loop_init(&loop), 0);
}

static void teardown(void)
{
    tt_tls_ctx_free(sctx);
    tt_tls_ctx_free(cctx);
    th_run(loop, 5000);
    cr_expect_eq(tt_loop_close(loop), 0);
    th_certs_remove(&certs);
}

TestSuite(tls_groups, .init = setup, .fini = teardown, .timeout = 30);

/* ---- broadcast ------------------------------------------------------------------ */

static void s_open(tt_conn_t *c)
{
    tt_tls_info_t ti;
    cr_assert_eq(tt_conn_tls_info(c, &ti), 0);
    cr_assert(ti.done, "on_open before the handshake");
    if (room != NULL)
        tt_group_join(room, c);
    S.server_open++;
    tt_addr_t a;
    if (tt_conn_peer_addr(c, &a) == 0)
        tt_addr_format_host(&a, S.peer, sizeof(S.peer));
}

static void c_open(tt_conn_t *c)
{
    (void)c;
    S.opened++;
}

static void c_data(tt_conn_t *c, const void *d, size_t n, size_t p)
{
    (void)d, (void)p;
    S.got[(uintptr_t)tt_conn_get_data(c)] += n;
}

static void c_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c, (void)info;
    S.closed++;
}

static const tt_conn_handlers_t CH = {.on_open = c_open, .on_data = c_data, .on_close = c_close};

static void start_server(const tt_server_opts_t *extra)
{
    tt_server_opts_t so = extra != NULL ? *extra : (tt_server_opts_t){0};
    so.tls = sctx;
    tt_conn_handlers_t h = {.on_open = s_open};
    saddr = th_loopback(0);
    cr_assert_eq(tt_group_init(loop, "room", &room), 0);
    cr_assert_eq(tt_server_listen(loop, &saddr, &so, &h, NULL, &srv), 0);
    cr_assert_eq(tt_server_addr(srv, &saddr), 0);
}

static bool all_open(void) { return S.opened == MEMBERS && S.server_open == MEMBERS; }

Test(tls_groups, group_and_server_broadcast_reach_every_tls_member_once)
{
    tt_conn_t *c[MEMBERS];
    start_server(NULL);
    for (uintptr_t i = 0; i < MEMBERS; i++) {
        tt_connect_opts_t o = {.tls = cctx, .tls_servername = "localhost"};
        cr_assert_eq(tt_connect(loop, &saddr, &o, &CH, (void *)i, &c[i]), 0);
    }
    uint64_t end = th_now_ms() + 5000;
    while (!all_open() && th_now_ms() < end)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_assert(all_open(), "opened %d / %d", S.opened, S.server_open);

    /* 100 KiB: several records per member, all from one shared payload. */
    size_t len = 100 * 1024;
    char *big = malloc(len);
    memset(big, 'b', len);
    cr_assert_eq(tt_group_broadcast(room, big, len, NULL), MEMBERS);
    cr_assert_eq(tt_server_broadcast(srv, "tail", 4, NULL), MEMBERS);
    free(big);
    end = th_now_ms() + 5000;
    for (bool done = false; !done && th_now_ms() < end;) {
        tt_loop_run(loop, TT_RUN_ONCE);
        done = true;
        for (int i = 0; i < MEMBERS; i++)
            done &= S.got[i] >= len + 4;
    }
    for (int i = 0; i < MEMBERS; i++)
        cr_expect_eq(S.got[i], len + 4, "member %d got %zu", i, S.got[i]);
    for (int i = 0; i < MEMBERS; i++) {
        tt_conn_stats_t st;
        cr_assert_eq(tt_conn_get_stats(c[i], &st), 0);
        cr_expect_eq(st.bytes_in, len + 4);
        cr_expect_gt(st.wire_bytes_in, st.bytes_in, "records cost bytes on the wire");
        tt_destroy(c[i], 0);
    }
    tt_group_close(room);
    room = NULL;
    tt_server_close(srv);
}

/* ---- PROXY header, then TLS --------------------------------------------------------- */

Test(tls_groups, proxy_header_goes_before_the_handshake)
{
    tt_conn_t *c;
    tt_addr_t src;
    start_server(&(tt_server_opts_t){.proxy = TT_PROXY_V2});
    cr_assert_eq(tt_addr_parse(&src, "192.0.2.7", 4242), 0);
    tt_connect_opts_t o = {.tls = cctx, .tls_servername = "localhost", .send_proxy = 2,
                           .proxy_source = &src};
    cr_assert_eq(tt_connect(loop, &saddr, &o, &CH, (void *)0, &c), 0);
    uint64_t end = th_now_ms() + 5000;
    while ((S.opened < 1 || S.server_open < 1) && th_now_ms() < end)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_assert_eq(S.opened, 1, "the TLS handshake did not finish behind the header");
    cr_assert_eq(S.server_open, 1);
    cr_expect_str_eq(S.peer, "192.0.2.7", "the peer is the header's client");
    cr_assert_eq(tt_group_broadcast(room, "hello", 5, NULL), 1);
    end = th_now_ms() + 5000;
    while (S.got[0] < 5 && th_now_ms() < end)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_expect_eq(S.got[0], 5);
    tt_destroy(c, 0);
    tt_group_close(room);
    room = NULL;
    tt_server_close(srv);
}

/* ---- algorithms a deployment restricts ------------------------------------------- */

static char g_cipher[64];

static void cipher_open(tt_conn_t *c)
{
    tt_tls_info_t ti;
    if (tt_conn_tls_info(c, &ti) == 0)
        snprintf(g_cipher, sizeof(g_cipher), "%s", ti.cipher);
    S.opened++;
    tt_destroy(c, 0);
}

Test(tls_groups, ciphersuites_and_groups_are_honoured_and_checked)
{
    tt_tls_ctx_t *bad;
    tt_tls_server_opts_t so = {.cert_file = certs.server.cert, .key_file = certs.server.key,
                               .ciphersuites = "TLS_CHACHA20_POLY1305_SHA256",
                               .groups = "P-256"};
    tt_tls_ctx_free(sctx);
    cr_assert_eq(tt_tls_server_ctx(&so, &sctx), 0);
    so.ciphersuites = "NOT_A_SUITE";
    cr_assert_eq(tt_tls_server_ctx(&so, &bad), -EINVAL);
    cr_assert_eq(tt_tls_client_ctx(&(tt_tls_client_opts_t){.groups = "nonsense"}, &bad), -EINVAL);
    start_server(NULL);
    tt_conn_t *c;
    tt_conn_handlers_t h = {.on_open = cipher_open};
    tt_connect_opts_t o = {.tls = cctx, .tls_servername = "localhost"};
    cr_assert_eq(tt_connect(loop, &saddr, &o, &h, NULL, &c), 0);
    uint64_t end = th_now_ms() + 5000;
    while ((S.opened < 1 || S.server_open < 1) && th_now_ms() < end)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_expect_str_eq(g_cipher, "TLS_CHACHA20_POLY1305_SHA256");
    tt_group_close(room);
    room = NULL;
    tt_server_close(srv);
}

/* ---- reading stopped in the middle of a read ---------------------------------------- */

static struct {
    size_t got;
    int pauses;
    tt_timer_t *t;
    tt_conn_t *c;
    bool closed;
    tt_close_kind_t kind;
} R;

static void stop_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    R.closed = true;
    R.kind = info->kind;
}

static void resume_cb(tt_timer_t *t, void *arg)
{
    (void)t, (void)arg;
    if (!R.closed)
        tt_conn_read_start(R.c);
}

/* Each delivery stops reading and a timer starts it again: every byte comes, in
 * order, and the close_notify at the end is still the orderly end. (One read's
 * records are decrypted into one delivery, so ciphertext is held back only when
 * a read's plaintext overflows the loop's buffer; this covers the pauses around
 * it, not that rare case itself.) */
static void stop_data(tt_conn_t *c, const void *d, size_t n, size_t p)
{
    (void)p;
    const unsigned char *b = d;
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(b[i], (unsigned char)((R.got + i) % 251), "byte %zu out of order", R.got + i);
    R.got += n;
    R.pauses++;
    tt_conn_read_stop(c);
    tt_timer_start(R.t, 2, 0);
}

static void big_open(tt_conn_t *c)
{
    size_t len = 512 * 1024;
    unsigned char *buf = malloc(len);
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(i % 251);
    tt_send(c, buf, len);
    free(buf);
    tt_end(c, NULL, 0);
}

Test(tls_groups, read_stop_inside_a_read_holds_the_rest_and_read_start_delivers_it)
{
    tt_conn_handlers_t sh = {.on_open = big_open};
    tt_server_opts_t so = {.tls = sctx};
    saddr = th_loopback(0);
    cr_assert_eq(tt_server_listen(loop, &saddr, &so, &sh, NULL, &srv), 0);
    cr_assert_eq(tt_server_addr(srv, &saddr), 0);
    memset(&R, 0, sizeof(R));
    cr_assert_eq(tt_timer_init(loop, &R.t, resume_cb, NULL), 0);
    tt_conn_handlers_t ch = {.on_data = stop_data, .on_close = stop_close};
    tt_connect_opts_t o = {.tls = cctx, .tls_servername = "localhost"};
    cr_assert_eq(tt_connect(loop, &saddr, &o, &ch, NULL, &R.c), 0);
    uint64_t end = th_now_ms() + 10000;
    while (!R.closed && th_now_ms() < end)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_expect_eq(R.got, 512 * 1024, "got %zu after %d pauses", R.got, R.pauses);
    cr_expect(R.closed, "no close after %zu bytes", R.got);
    /* The close_notify was behind held ciphertext: still an orderly end. */
    cr_expect_eq(R.kind, TT_CLOSE_PEER_CLOSED, "closed as %s", tt_close_kind_name(R.kind));
    tt_timer_close(R.t);
    tt_server_close(srv);
}
