/* The PROXY protocol against real peers: HAProxy itself (send-proxy and
 * send-proxy-v2) in front of a tether server, a Python client sending hand-made
 * headers (good ones with TLVs, LOCAL, malformed, oversized, split byte by byte,
 * too slow, missing), and a tether client sending v1 and v2 to a tether server. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"
#include "tether.h"

/* ---- the server under test: records what one connection saw ---------------------- */

typedef struct rec {
    int opens, closes, refused;
    char peer[TT_ADDR_STRLEN], stats_peer[TT_ADDR_STRLEN];
    int info_rc;
    tt_proxy_info_t info;
    char source[TT_ADDR_STRLEN], dest[TT_ADDR_STRLEN], balancer[TT_ADDR_STRLEN];
    char alpn[32], authority[64], unique_id[32], ssl_version[32], ssl_cn[64], ssl_cipher[64];
    char aws[32], azure[32], gcp[32], custom[32];
    int kind, err;
    char reason[80];
} rec_t;

static rec_t R;
static tt_loop_t *L;
static tt_server_t *SRV;
static tt_addr_t ADDR;
static bool GREET; /* on_open says "hi\n" (for clients that send nothing) */
static volatile bool CLOSED; /* a server-side connection closed */
static volatile bool OPENED; /* a server-side connection opened */

static void copy_bytes(char *dst, size_t cap, tt_proxy_bytes_t b)
{
    size_t n = b.len < cap - 1 ? b.len : cap - 1;
    if (n > 0)
        memcpy(dst, b.data, n);
    dst[n] = '\0';
}

static void s_open(tt_conn_t *c)
{
    tt_addr_t a;
    tt_conn_stats_t st;

    R.opens++;
    OPENED = true;
    if (tt_conn_peer_addr(c, &a) == 0)
        tt_addr_format(&a, R.peer, sizeof(R.peer));
    if (tt_conn_get_stats(c, &st) == 0 && st.peer.len > 0)
        tt_addr_format(&st.peer, R.stats_peer, sizeof(R.stats_peer));
    R.info_rc = tt_conn_proxy_info(c, &R.info);
    if (R.info_rc == 0) {
        tt_addr_format(&R.info.source, R.source, sizeof(R.source));
        tt_addr_format(&R.info.dest, R.dest, sizeof(R.dest));
        tt_addr_format(&R.info.balancer, R.balancer, sizeof(R.balancer));
        copy_bytes(R.alpn, sizeof(R.alpn), R.info.alpn);
        copy_bytes(R.authority, sizeof(R.authority), R.info.authority);
        copy_bytes(R.unique_id, sizeof(R.unique_id), R.info.unique_id);
        copy_bytes(R.ssl_version, sizeof(R.ssl_version), R.info.ssl_version);
        copy_bytes(R.ssl_cn, sizeof(R.ssl_cn), R.info.ssl_cn);
        copy_bytes(R.ssl_cipher, sizeof(R.ssl_cipher), R.info.ssl_cipher);
        copy_bytes(R.aws, sizeof(R.aws), R.info.aws);
        copy_bytes(R.azure, sizeof(R.azure), R.info.azure);
        copy_bytes(R.gcp, sizeof(R.gcp), R.info.gcp);
        tt_proxy_bytes_t custom = {0};
        tt_proxy_tlv_find(&R.info, 0xF0, &custom);
        copy_bytes(R.custom, sizeof(R.custom), custom);
    }
    if (GREET)
        tt_send(c, "hi\n", 3);
}

static void s_data(tt_conn_t *c, const void *buf, size_t len, size_t pending)
{
    (void)pending;
    tt_send(c, buf, len);
}

static void s_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    R.closes++;
    CLOSED = true;
    R.kind = info->kind;
    R.err = info->error;
    snprintf(R.reason, sizeof(R.reason), "%s", info->reason);
}

static void s_event(tt_server_t *s, int ev, int err, const tt_addr_t *peer)
{
    (void)s, (void)err, (void)peer;
    if (ev == TT_SERVER_REFUSED)
        R.refused++;
}

static const tt_conn_handlers_t H = {.on_open = s_open, .on_data = s_data, .on_close = s_close};

static void setup(void)
{
    memset(&R, 0, sizeof(R));
    R.kind = -1;
    GREET = false;
    CLOSED = false;
    cr_assert_eq(tt_loop_init(&L), 0);
}

static void teardown(void)
{
    if (SRV != NULL)
        tt_server_close(SRV);
    SRV = NULL;
    th_run(L, 5000);
    cr_assert_eq(tt_loop_close(L), 0);
}

TestSuite(proxy, .init = setup, .fini = teardown, .timeout = 30);

static void serve(tt_proxy_mode_t mode, uint64_t timeout_ms)
{
    tt_addr_t any = th_loopback(0);
    tt_server_opts_t o = {.proxy = mode, .proxy_timeout_ms = timeout_ms, .on_event = s_event};
    int r = tt_server_listen(L, &any, &o, &H, NULL, &SRV);
    cr_assert_eq(r, 0, "listen: %s", tt_strerror(r));
    tt_server_addr(SRV, &ADDR);
}

/* Run the loop until the connection closed (or ms passed: a connection refused
 * at accept never exists, and the assertions that follow say so). */
static void until_closed(uint64_t ms)
{
    if (R.closes == 0)
        th_run_until(L, &CLOSED, ms);
}

/* ---- a child process whose stdout is collected, on a thread ------------------------ */

typedef struct child {
    pthread_t th;
    volatile bool done;
    char cmd[1024];
    char out[8192];
} child_t;

static void *child_main(void *arg)
{
    child_t *p = arg;
    size_t n = 0;
    FILE *f = popen(p->cmd, "r");
    if (f != NULL) {
        n = fread(p->out, 1, sizeof(p->out) - 1, f);
        pclose(f);
    }
    p->out[n] = '\0';
    p->done = true;
    return NULL;
}

/* peer.py against `port` (the server, or HAProxy in front of it), the loop
 * running meanwhile; its output in p->out. */
static void python_peer(child_t *p, unsigned port, const char *scenario, const char *extra)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->cmd, sizeof(p->cmd), "/usr/bin/python3 %s/tests/net/proxy/peer.py %u %s %s 2>&1",
             TT_SOURCE_DIR, port, scenario, extra != NULL ? extra : "");
    pthread_create(&p->th, NULL, child_main, p);
    bool ok = th_run_until(L, &p->done, 15000);
    cr_assert(ok, "the peer did not finish");
    pthread_join(p->th, NULL);
    until_closed(3000);
}

static unsigned srv_port(void) { return ntohs(ADDR.u.in4.sin_port); }

/* "GOT <hex>" of the peer's output, decoded into buf. */
static const char *got_of(const child_t *p, char *buf, size_t cap)
{
    const char *g = strstr(p->out, "GOT ");
    size_t n = 0;
    cr_assert_not_null(g, "peer output: %s", p->out);
    for (g += 4; g[0] != '\n' && g[0] != '\0' && g[1] != '\0' && n + 1 < cap; g += 2) {
        unsigned v;
        sscanf(g, "%2x", &v);
        buf[n++] = (char)v;
    }
    buf[n] = '\0';
    return buf;
}

static void expect_echo(const child_t *p, const char *line)
{
    char got[256];
    cr_assert_str_eq(got_of(p, got, sizeof(got)), line, "peer output: %s", p->out);
}

/* Refused: never opened, closed as a PROXY error with this reason (a prefix). */
static void expect_refused(const child_t *p, const char *reason)
{
    char got[256];
    cr_assert_str_eq(got_of(p, got, sizeof(got)), "", "peer output: %s", p->out);
    cr_assert_eq(R.opens, 0);
    cr_assert_eq(R.closes, 1);
    cr_assert_eq(R.kind, TT_CLOSE_PROXY_ERROR, "kind %s", tt_close_kind_name(R.kind));
    cr_assert(strncmp(R.reason, reason, strlen(reason)) == 0, "reason '%s', want '%s'", R.reason,
              reason);
}

/* ---- good headers ------------------------------------------------------------------ */

Test(proxy, v1_names_the_client)
{
    child_t p;
    serve(TT_PROXY_V1, 0);
    python_peer(&p, srv_port(), "v1", NULL);
    expect_echo(&p, "ping\n");
    cr_assert_eq(R.opens, 1);
    cr_assert_str_eq(R.peer, "192.0.2.1:4321");
    cr_assert_str_eq(R.stats_peer, "192.0.2.1:4321");
    cr_assert_eq(R.info_rc, 0);
    cr_assert_eq(R.info.version, 1);
    cr_assert(!R.info.local);
    cr_assert_str_eq(R.dest, "198.51.100.2:443");
    cr_assert(strncmp(R.balancer, "127.0.0.1:", 10) == 0, "balancer %s", R.balancer);
    cr_assert_eq(R.kind, TT_CLOSE_PEER_CLOSED);
}

Test(proxy, v1_ipv6)
{
    child_t p;
    serve(TT_PROXY_ANY, 0);
    python_peer(&p, srv_port(), "v1-v6", NULL);
    expect_echo(&p, "ping\n");
    cr_assert_str_eq(R.peer, "[2001:db8::7]:6000");
}

Test(proxy, v1_unknown_keeps_the_socket_addresses)
{
    child_t p;
    serve(TT_PROXY_V1, 0);
    python_peer(&p, srv_port(), "v1-unknown", NULL);
    expect_echo(&p, "ping\n");
    cr_assert(R.info.local);
    cr_assert(strncmp(R.peer, "127.0.0.1:", 10) == 0, "peer %s", R.peer);
}

Test(proxy, v2_names_the_client)
{
    child_t p;
    serve(TT_PROXY_V2, 0);
    python_peer(&p, srv_port(), "v2", NULL);
    expect_echo(&p, "ping\n");
    cr_assert_str_eq(R.peer, "192.0.2.1:4321");
    cr_assert_eq(R.info.version, 2);
    cr_assert_str_eq(R.dest, "198.51.100.2:443");
}

Test(proxy, v2_ipv6)
{
    child_t p;
    serve(TT_PROXY_V2, 0);
    python_peer(&p, srv_port(), "v2-v6", NULL);
    expect_echo(&p, "ping\n");
    cr_assert_str_eq(R.peer, "[2001:db8::7]:6000");
    cr_assert_str_eq(R.dest, "[2001:db8::1]:80");
}

Test(proxy, v2_tlvs_are_exposed)
{
    child_t p;
    serve(TT_PROXY_V2, 0);
    python_peer(&p, srv_port(), "v2-tlvs", NULL);
    expect_echo(&p, "ping\n");
    cr_assert_str_eq(R.alpn, "h2");
    cr_assert_str_eq(R.authority, "example.com");
    cr_assert_str_eq(R.unique_id, "req-42");
    cr_assert(R.info.ssl);
    cr_assert_eq(R.info.ssl_client, 0x07);
    cr_assert_eq(R.info.ssl_verify, 0);
    cr_assert_str_eq(R.ssl_version, "TLSv1.3");
    cr_assert_str_eq(R.ssl_cn, "client.example");
    cr_assert_str_eq(R.ssl_cipher, "TLS_AES_128_GCM_SHA256");
    cr_assert_str_eq(R.aws, "\x01vpce-0abc");
    cr_assert_str_eq(R.azure, "\x01linkid");
    cr_assert_str_eq(R.gcp, "pscid");
    cr_assert_str_eq(R.custom, "custom");
}

Test(proxy, v2_local_is_a_health_check_with_real_addresses)
{
    child_t p;
    serve(TT_PROXY_V2, 0);
    python_peer(&p, srv_port(), "v2-local", NULL);
    expect_echo(&p, "ping\n");
    cr_assert_eq(R.info_rc, 0);
    cr_assert(R.info.local);
    cr_assert(strncmp(R.peer, "127.0.0.1:", 10) == 0, "peer %s", R.peer);
    cr_assert_str_eq(R.peer, R.balancer);
}

Test(proxy, header_split_into_single_bytes)
{
    child_t p;
    serve(TT_PROXY_ANY, 0);
    python_peer(&p, srv_port(), "v1", "--each-byte");
    expect_echo(&p, "ping\n");
    cr_assert_str_eq(R.peer, "192.0.2.1:4321");
}

Test(proxy, v2_header_with_tlvs_split_into_single_bytes)
{
    child_t p;
    serve(TT_PROXY_ANY, 0);
    python_peer(&p, srv_port(), "v2-tlvs", "--each-byte");
    expect_echo(&p, "ping\n");
    cr_assert_str_eq(R.peer, "192.0.2.1:4321");
    cr_assert_str_eq(R.authority, "example.com");
}

/* ---- hostile or missing headers: that connection only, never on_open ------------------ */

Test(proxy, bad_signature)
{
    child_t p;
    serve(TT_PROXY_ANY, 0);
    python_peer(&p, srv_port(), "bad-signature", NULL);
    expect_refused(&p, "bad signature");
}

Test(proxy, v1_without_crlf)
{
    child_t p;
    serve(TT_PROXY_ANY, 0);
    python_peer(&p, srv_port(), "v1-no-crlf", NULL);
    expect_refused(&p, "v1: bad character");
}

Test(proxy, v1_oversized)
{
    child_t p;
    serve(TT_PROXY_V1, 0);
    python_peer(&p, srv_port(), "v1-oversized", NULL);
    expect_refused(&p, "v1 line too long");
}

Test(proxy, v1_bad_address)
{
    child_t p;
    serve(TT_PROXY_V1, 0);
    python_peer(&p, srv_port(), "v1-bad-address", NULL);
    expect_refused(&p, "v1: bad address");
}

Test(proxy, v2_tlv_length_past_the_end)
{
    child_t p;
    serve(TT_PROXY_V2, 0);
    python_peer(&p, srv_port(), "v2-tlv-past-end", NULL);
    expect_refused(&p, "v2: TLV past the end");
}

Test(proxy, v2_over_the_size_limit)
{
    child_t p;
    serve(TT_PROXY_V2, 0);
    python_peer(&p, srv_port(), "v2-too-long", NULL);
    expect_refused(&p, "v2 header too long");
}

Test(proxy, v2_address_block_too_short)
{
    child_t p;
    serve(TT_PROXY_V2, 0);
    python_peer(&p, srv_port(), "v2-short-block", NULL);
    expect_refused(&p, "v2: address block too short");
}

Test(proxy, v2_bad_version)
{
    child_t p;
    serve(TT_PROXY_V2, 0);
    python_peer(&p, srv_port(), "v2-bad-version", NULL);
    expect_refused(&p, "v2: bad version");
}

Test(proxy, v2_crc_mismatch)
{
    child_t p;
    serve(TT_PROXY_V2, 0);
    python_peer(&p, srv_port(), "v2-bad-crc", NULL);
    expect_refused(&p, "v2: CRC32c mismatch");
}

Test(proxy, version_not_accepted)
{
    child_t p;
    serve(TT_PROXY_V1, 0);
    python_peer(&p, srv_port(), "v2", NULL);
    expect_refused(&p, "v2 header, v1 required");
}

Test(proxy, missing_header_when_required)
{
    child_t p;
    serve(TT_PROXY_ANY, 0);
    python_peer(&p, srv_port(), "missing", NULL);
    expect_refused(&p, "bad signature");
}

Test(proxy, slow_header_times_out)
{
    child_t p;
    serve(TT_PROXY_ANY, 300);
    uint64_t t0 = th_now_ms();
    python_peer(&p, srv_port(), "v1", "--split 11 --pause 1500");
    expect_refused(&p, "header not complete in time");
    cr_assert_eq(R.err, -ETIMEDOUT);
    cr_assert_lt(th_now_ms() - t0, 3000);
}

Test(proxy, silent_client_times_out)
{
    child_t p;
    serve(TT_PROXY_V2, 300);
    python_peer(&p, srv_port(), "nothing", NULL);
    expect_refused(&p, "no header in time");
}

/* ---- optional: detected by the first bytes --------------------------------------------- */

Test(proxy, optional_with_a_header)
{
    child_t p;
    serve(TT_PROXY_OPTIONAL, 0);
    python_peer(&p, srv_port(), "v2", NULL);
    expect_echo(&p, "ping\n");
    cr_assert_str_eq(R.peer, "192.0.2.1:4321");
}

Test(proxy, optional_without_a_header)
{
    child_t p;
    serve(TT_PROXY_OPTIONAL, 0);
    python_peer(&p, srv_port(), "plain", NULL);
    expect_echo(&p, "hello\n");
    cr_assert_eq(R.info_rc, -ENOENT);
    cr_assert(strncmp(R.peer, "127.0.0.1:", 10) == 0, "peer %s", R.peer);
}

/* "PRO" could start a v1 header: held until "BE\n" says it does not, then handed
 * up whole and in order. */
Test(proxy, optional_prefix_that_is_not_a_header)
{
    child_t p;
    serve(TT_PROXY_OPTIONAL, 0);
    python_peer(&p, srv_port(), "probe", "--split 3 --pause 100");
    expect_echo(&p, "PROBE\n");
    cr_assert_eq(R.info_rc, -ENOENT);
}

Test(proxy, optional_silent_client_opens_at_the_timeout)
{
    child_t p;
    GREET = true;
    serve(TT_PROXY_OPTIONAL, 200);
    python_peer(&p, srv_port(), "nothing", NULL);
    expect_echo(&p, "hi\n");
    cr_assert_eq(R.opens, 1);
}

Test(proxy, optional_stalled_header_is_still_a_slow_header)
{
    child_t p;
    serve(TT_PROXY_OPTIONAL, 300);
    python_peer(&p, srv_port(), "v1", "--split 11 --pause 1500");
    expect_refused(&p, "header not complete in time");
}

/* ---- admission applies to the client the header names ----------------------------------- */

Test(proxy, deny_list_applies_to_the_real_client)
{
    child_t p;
    serve(TT_PROXY_V1, 0);
    cr_assert_eq(tt_server_deny(SRV, "203.0.113.0/24"), 0);
    cr_assert_eq(tt_server_deny(SRV, "192.0.2.128/25"), 0);
    python_peer(&p, srv_port(), "v1-deny", NULL);
    char got[64];
    cr_assert_str_eq(got_of(&p, got, sizeof(got)), "");
    cr_assert(strstr(p.out, "END reset") != NULL || strstr(p.out, "END eof") != NULL, "%s", p.out);
    cr_assert_eq(R.opens, 0);
    cr_assert_eq(R.closes, 1);
    cr_assert_eq(R.err, -EACCES);
    cr_assert_eq(R.refused, 1);

    /* 192.0.2.1 is outside both blocks: admitted through the same balancer. */
    memset(&R, 0, sizeof(R));
    CLOSED = false;
    python_peer(&p, srv_port(), "v1", NULL);
    expect_echo(&p, "ping\n");
    cr_assert_eq(R.opens, 1);
}

Test(proxy, deny_list_is_not_applied_to_the_balancer)
{
    child_t p;
    serve(TT_PROXY_V2, 0);
    cr_assert_eq(tt_server_deny(SRV, "127.0.0.0/8"), 0);
    python_peer(&p, srv_port(), "v2", NULL);
    expect_echo(&p, "ping\n");
    cr_assert_str_eq(R.peer, "192.0.2.1:4321");
}

static char AUDITED[4][TT_ADDR_STRLEN];
static int NAUDITED;
static int audit_cb(tt_loop_t *loop, tt_audit_event_t ev, const tt_addr_t *addr, void *arg)
{
    (void)loop, (void)arg;
    if (ev == TT_AUDIT_ACCEPT && NAUDITED < 4)
        tt_addr_format(addr, AUDITED[NAUDITED++], TT_ADDR_STRLEN);
    return 0;
}

Test(proxy, audit_hook_sees_the_real_client_once)
{
    child_t p;
    NAUDITED = 0;
    serve(TT_PROXY_V2, 0);
    cr_assert_eq(tt_loop_set_audit(L, audit_cb, NULL), 0);
    python_peer(&p, srv_port(), "v2", NULL);
    expect_echo(&p, "ping\n");
    cr_assert_eq(NAUDITED, 1);
    cr_assert_str_eq(AUDITED[0], "192.0.2.1:4321");
}

/* max_conns_per_ip counts clients, not the balancer they all come through. */
Test(proxy, per_address_cap_counts_the_real_client)
{
    child_t p;
    tt_addr_t any = th_loopback(0);
    tt_server_opts_t o = {.proxy = TT_PROXY_V1, .max_conns_per_ip = 1, .on_event = s_event};
    cr_assert_eq(tt_server_listen(L, &any, &o, &H, NULL, &SRV), 0);
    tt_server_addr(SRV, &ADDR);
    /* The first client stays connected while the second comes. */
    child_t first;
    memset(&first, 0, sizeof(first));
    snprintf(first.cmd, sizeof(first.cmd),
             "/usr/bin/python3 %s/tests/net/proxy/peer.py %u v1 --hold 1500 2>&1", TT_SOURCE_DIR,
             srv_port());
    OPENED = false;
    pthread_create(&first.th, NULL, child_main, &first);
    cr_assert(th_run_until(L, &OPENED, 5000));
    python_peer(&p, srv_port(), "v1-deny", NULL); /* another client, same balancer */
    expect_echo(&p, "ping\n");
    cr_assert_eq(R.opens, 2);
    cr_assert_eq(R.refused, 0);
    cr_assert(th_run_until(L, &first.done, 5000));
    pthread_join(first.th, NULL);
    expect_echo(&first, "ping\n");
}

/* ---- a tether client sending the header ------------------------------------------------- */

static tt_conn_t *CL;
static char CL_GOT[64];
static bool CL_DONE;
static void c_open(tt_conn_t *c) { tt_send(c, "ping\n", 5); }
static void c_data(tt_conn_t *c, const void *buf, size_t len, size_t pending)
{
    (void)pending;
    strncat(CL_GOT, buf, len < sizeof(CL_GOT) - strlen(CL_GOT) - 1 ? len : 0);
    if (strchr(CL_GOT, '\n') != NULL)
        tt_end(c, NULL, 0);
}
static void c_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c, (void)info;
    CL_DONE = true;
}

static void tether_client(int version, const char *source)
{
    const tt_conn_handlers_t ch = {.on_open = c_open, .on_data = c_data, .on_close = c_close};
    tt_addr_t src;
    tt_connect_opts_t o = {.send_proxy = version};
    if (source != NULL) {
        cr_assert_eq(tt_addr_parse_hostport(&src, source), 0);
        o.proxy_source = &src;
    }
    CL_GOT[0] = '\0';
    CL_DONE = false;
    cr_assert_eq(tt_connect(L, &ADDR, &o, &ch, NULL, &CL), 0);
    cr_assert(th_run_until(L, &CL_DONE, 5000));
    until_closed(3000);
    cr_assert_str_eq(CL_GOT, "ping\n");
}

Test(proxy, tether_client_sends_v1)
{
    serve(TT_PROXY_V1, 0);
    tether_client(1, "10.9.8.7:1234");
    cr_assert_str_eq(R.peer, "10.9.8.7:1234");
    cr_assert_eq(R.info.version, 1);
}

Test(proxy, tether_client_sends_v2_with_its_own_address)
{
    serve(TT_PROXY_V2, 0);
    tether_client(2, NULL);
    cr_assert_eq(R.info.version, 2);
    cr_assert(!R.info.local);
    cr_assert(strncmp(R.peer, "127.0.0.1:", 10) == 0, "peer %s", R.peer);
    cr_assert_str_eq(R.peer, R.balancer); /* no balancer between: the same socket */
}

Test(proxy, client_options_are_checked)
{
    const tt_conn_handlers_t ch = {0};
    tt_addr_t v4, v6, un;
    tt_conn_t *c;
    serve(TT_PROXY_V2, 0);
    cr_assert_eq(tt_addr_parse_hostport(&v4, "10.0.0.1:1"), 0);
    cr_assert_eq(tt_addr_parse_hostport(&v6, "[::1]:1"), 0);
    cr_assert_eq(tt_addr_parse(&un, "unix:@tt-proxy-test", 0), 0);
    tt_connect_opts_t bad_version = {.send_proxy = 3};
    cr_assert_eq(tt_connect(L, &ADDR, &bad_version, &ch, NULL, &c), -EINVAL);
    tt_connect_opts_t mixed = {.send_proxy = 1, .proxy_source = &v4, .proxy_dest = &v6};
    cr_assert_eq(tt_connect(L, &ADDR, &mixed, &ch, NULL, &c), -EINVAL);
    tt_connect_opts_t without = {.proxy_source = &v4};
    cr_assert_eq(tt_connect(L, &ADDR, &without, &ch, NULL, &c), -EINVAL);
    tt_connect_opts_t to_unix = {.send_proxy = 2};
    cr_assert_eq(tt_connect(L, &un, &to_unix, &ch, NULL, &c), -EOPNOTSUPP);
}

Test(proxy, server_options_are_checked)
{
    tt_addr_t any = th_loopback(0), un;
    tt_server_t *s;
    tt_server_opts_t bad = {.proxy = (tt_proxy_mode_t)9};
    cr_assert_eq(tt_server_listen(L, &any, &bad, &H, NULL, &s), -EINVAL);
    cr_assert_eq(tt_addr_parse(&un, "unix:@tt-proxy-test-srv", 0), 0);
    tt_server_opts_t on_unix = {.proxy = TT_PROXY_V1};
    cr_assert_eq(tt_server_listen(L, &un, &on_unix, &H, NULL, &s), -EOPNOTSUPP);
    cr_assert_str_eq(tt_close_kind_name(TT_CLOSE_PROXY_ERROR), "proxy protocol error");
    cr_assert_str_eq(tt_proxy_mode_name(TT_PROXY_OPTIONAL), "optional");
}

/* ---- HAProxy in front ---------------------------------------------------------------------- */

/* Is something listening on 127.0.0.1:port? (/proc/net/tcp, so that asking opens
 * no connection HAProxy would forward.) */
static bool listening(unsigned port)
{
    char line[512], want[32];
    bool found = false;
    FILE *f = fopen("/proc/net/tcp", "r");
    if (f == NULL)
        return false;
    snprintf(want, sizeof(want), "0100007F:%04X", port);
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, want) != NULL && strstr(line, " 0A ") != NULL)
            found = true;
    fclose(f);
    return found;
}

typedef struct haproxy {
    pid_t pid;
    unsigned port;
    char cfg[64];
} haproxy_t;

/* HAProxy on a free loopback port, forwarding to backend_port with `send` (the
 * server line's send-proxy or send-proxy-v2). */
static void haproxy_start(haproxy_t *h, unsigned backend_port, const char *send)
{
    cr_assert_eq(access("/usr/sbin/haproxy", X_OK), 0, "haproxy is missing (scripts/deps.sh)");
    h->port = th_unused_port();
    snprintf(h->cfg, sizeof(h->cfg), "/tmp/tt-haproxy-%d.cfg", (int)getpid());
    FILE *f = fopen(h->cfg, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "global\n  maxconn 64\n"
            "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n"
            "  timeout server 10s\n"
            "frontend front\n  bind 127.0.0.1:%u\n  default_backend back\n"
            "backend back\n  server s1 127.0.0.1:%u %s\n",
            h->port, backend_port, send);
    fclose(f);
    h->pid = fork();
    cr_assert_geq(h->pid, 0);
    if (h->pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execl("/usr/sbin/haproxy", "haproxy", "-db", "-f", h->cfg, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300 && !listening(h->port); i++)
        usleep(10 * 1000);
    cr_assert(listening(h->port), "haproxy did not start listening on %u", h->port);
}

static void haproxy_stop(haproxy_t *h)
{
    int st;
    kill(h->pid, SIGTERM);
    waitpid(h->pid, &st, 0);
    unlink(h->cfg);
}

static void behind_haproxy(const char *send, tt_proxy_mode_t mode, int version)
{
    haproxy_t hp;
    child_t p;
    serve(mode, 0);
    haproxy_start(&hp, srv_port(), send);
    python_peer(&p, hp.port, "plain", "--bind 127.0.0.5");
    haproxy_stop(&hp);
    expect_echo(&p, "hello\n");
    cr_assert_eq(R.opens, 1);
    cr_assert(strncmp(R.peer, "127.0.0.5:", 10) == 0, "peer %s", R.peer);
    cr_assert(strncmp(R.stats_peer, "127.0.0.5:", 10) == 0, "stats peer %s", R.stats_peer);
    cr_assert_eq(R.info.version, version);
    char front[32];
    snprintf(front, sizeof(front), "127.0.0.1:%u", hp.port);
    cr_assert_str_eq(R.dest, front);
    cr_assert(strncmp(R.balancer, "127.0.0.1:", 10) == 0, "balancer %s", R.balancer);
}

Test(proxy, haproxy_send_proxy) { behind_haproxy("send-proxy", TT_PROXY_V1, 1); }
Test(proxy, haproxy_send_proxy_v2) { behind_haproxy("send-proxy-v2", TT_PROXY_V2, 2); }
Test(proxy, haproxy_either_version) { behind_haproxy("send-proxy-v2", TT_PROXY_ANY, 2); }

/* The CLI behind HAProxy: `tether echo --verbose` says the client's own address,
 * and so does `tether stat` while it is connected. */
Test(proxy, cli_echo_and_stat_show_the_client)
{
    char sock[64], line[256], errpath[64];
    snprintf(sock, sizeof(sock), "/tmp/tt-proxy-admin-%d.sock", (int)getpid());
    snprintf(errpath, sizeof(errpath), "/tmp/tt-proxy-echo-%d.err", (int)getpid());
    int out[2];
    cr_assert_eq(pipe(out), 0);
    pid_t echo = fork();
    cr_assert_geq(echo, 0);
    if (echo == 0) {
        int err = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(out[1], STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        close(out[0]);
        execl(th_build_path("tether"), "tether", "echo", "--listen", "127.0.0.1:0", "--verbose",
              "--proxy-protocol", "v2", "--admin", sock, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    cr_assert_not_null(fgets(line, sizeof(line), f), "no listening line");
    const char *colon = strrchr(line, ':');
    cr_assert_not_null(colon, "%s", line);
    unsigned port = (unsigned)atoi(colon + 1);

    haproxy_t hp;
    haproxy_start(&hp, port, "send-proxy-v2");
    child_t p;
    memset(&p, 0, sizeof(p));
    snprintf(p.cmd, sizeof(p.cmd),
             "/usr/bin/python3 %s/tests/net/proxy/peer.py %u plain --bind 127.0.0.5 --hold 1500 2>&1",
             TT_SOURCE_DIR, hp.port);
    pthread_create(&p.th, NULL, child_main, &p);
    usleep(700 * 1000); /* connected and echoed; holding the connection open */
    char cmd[256], table[8192];
    snprintf(cmd, sizeof(cmd), "%s stat %s", th_build_path("tether"), sock);
    FILE *st = popen(cmd, "r");
    cr_assert_not_null(st);
    size_t n = fread(table, 1, sizeof(table) - 1, st);
    table[n] = '\0';
    pclose(st);
    pthread_join(p.th, NULL);
    haproxy_stop(&hp);
    kill(echo, SIGTERM);
    int status;
    waitpid(echo, &status, 0);
    fclose(f);

    expect_echo(&p, "hello\n");
    cr_assert(strstr(table, "127.0.0.5:") != NULL, "tether stat:\n%s", table);
    size_t elen;
    FILE *ef = fopen(errpath, "r");
    cr_assert_not_null(ef);
    char err[4096];
    elen = fread(err, 1, sizeof(err) - 1, ef);
    err[elen] = '\0';
    fclose(ef);
    unlink(errpath);
    cr_assert(strstr(err, "open from 127.0.0.5:") != NULL, "echo's stderr:\n%s", err);
}

/* A hostile header through the CLI: the --verbose close line names the kind. */
Test(proxy, cli_echo_says_proxy_protocol_error)
{
    char line[256], errpath[64];
    snprintf(errpath, sizeof(errpath), "/tmp/tt-proxy-echo2-%d.err", (int)getpid());
    int out[2];
    cr_assert_eq(pipe(out), 0);
    pid_t echo = fork();
    cr_assert_geq(echo, 0);
    if (echo == 0) {
        int err = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(out[1], STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        close(out[0]);
        execl(th_build_path("tether"), "tether", "echo", "--listen", "127.0.0.1:0", "--verbose",
              "--proxy-protocol", "any", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    cr_assert_not_null(fgets(line, sizeof(line), f), "no listening line");
    unsigned port = (unsigned)atoi(strrchr(line, ':') + 1);
    child_t p;
    memset(&p, 0, sizeof(p));
    snprintf(p.cmd, sizeof(p.cmd), "/usr/bin/python3 %s/tests/net/proxy/peer.py %u v1-oversized 2>&1",
             TT_SOURCE_DIR, port);
    child_main(&p);
    usleep(100 * 1000);
    kill(echo, SIGTERM);
    int status;
    waitpid(echo, &status, 0);
    fclose(f);
    char err[4096];
    FILE *ef = fopen(errpath, "r");
    cr_assert_not_null(ef);
    size_t elen = fread(err, 1, sizeof(err) - 1, ef);
    err[elen] = '\0';
    fclose(ef);
    unlink(errpath);
    cr_assert(strstr(err, "closed: proxy protocol error: v1 line too long") != NULL,
              "echo's stderr:\n%s", err);
    cr_assert(strstr(err, "open from") == NULL, "echo's stderr:\n%s", err);
}
