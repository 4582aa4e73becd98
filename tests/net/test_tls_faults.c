/* TLS faults, each closing only its own connection with the kind and reason that
 * say what happened: truncation (FIN without close_notify), garbage instead of a
 * ClientHello, a silent client (handshake timeout), certificate verification
 * failures, a renegotiation attempt, ciphertext in 1-byte TCP segments, a slow or
 * stopped reader (the queue cap in application bytes), an RST inside a record, a
 * silent peer under heartbeats. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "harness.h"
#include "peer.h"
#include "tls_env.h"

TestSuite(tls_faults, .init = te_setup, .fini = te_teardown, .timeout = 60);

static th_proc_t P;

#define CA TE.certs.ca.cert

static void peer_ok(th_proc_t *p, uint64_t ms)
{
    cr_assert(te_run_proc(p, ms), "peer still running: %s %s", th_proc_output(p),
              th_proc_stderr(p));
    cr_assert_eq(p->status, 0, "peer exit %d: %s %s", p->status, th_proc_output(p),
                 th_proc_stderr(p));
    cr_assert_str_eq(te_result(p, "ok"), "1", "%s", th_proc_output(p));
}

/* Expect an abnormal close of `kind` with `err`, on_error first, and a reason
 * containing `why` (any, when NULL). */
static void expect_close(const te_rec_t *r, tt_close_kind_t kind, int err, const char *why)
{
    cr_log_info("%s: %s, %s, \"%s\"", r->client ? "client" : "server", TE_KIND(r),
                tt_err_name(r->close.error), r->reason);
    cr_expect_eq(r->close.kind, kind, "close: %s (%s), wanted %s", TE_KIND(r), r->reason,
                 tt_close_kind_name(kind));
    cr_expect_eq(r->close.error, err, "error %s, wanted %s", tt_err_name(r->close.error),
                 tt_err_name(err));
    cr_expect_eq(r->errors, 1, "on_error once before on_close");
    if (why != NULL)
        cr_expect(strstr(r->reason, why) != NULL, "reason \"%s\" should say \"%s\"", r->reason, why);
    else
        cr_expect_neq(r->reason[0], '\0', "a reason");
}

/* ---- truncation ---------------------------------------------------------------------- */

Test(tls_faults, peer_fin_without_close_notify_server_side)
{
    te_echo_server(te_srv_ctx(), NULL);
    te_peer(&P, TE_PY, "py", "client", "--port", te_srv_port(), "--ca", CA, "--bytes", "5000",
            "--ragged", NULL);
    peer_ok(&P, 10000);
    cr_assert(te_run_srv_closes(1, 5000));
    te_rec_t *s = te_srv_rec(0);
    expect_close(s, TT_CLOSE_TLS_TRUNCATED, TT_ETRUNCATED, NULL);
    cr_expect_eq(s->last_error, TT_ETRUNCATED);
    cr_expect(!s->ended, "a bare FIN is not the orderly end");
    cr_expect_eq(s->got, 5000);
    cr_expect_str_eq(s->sha_hex, te_result(&P, "sent_sha"));
    /* The bytes figures: what was echoed is queued and written, in application bytes. */
    cr_expect_eq(s->close.bytes_queued, 5000);
    cr_expect_eq(s->close.bytes_written + s->close.bytes_unsent, 5000);
    cr_expect_eq(s->stats.bytes_in, 5000);
    cr_expect_gt(s->stats.wire_bytes_in, 5000);
}

Test(tls_faults, peer_fin_without_close_notify_client_side)
{
    char port[16];
    te_port(port, sizeof(port));
    te_peer(&P, TE_PY, "pysrv", "server", "--port", port, "--cert", TE.certs.server.cert,
            "--key", TE.certs.server.key, "--ragged", "--bytes", "7000", NULL);
    cr_assert(th_proc_wait_output(&P, "READY", 5000));
    te_plan_t p = {.send = 7000, .check_pattern = true};
    te_rec_t *c = te_connect((uint16_t)atoi(port), te_cli_ctx(), "localhost", &p, 0);
    cr_assert(te_run_cli_closes(1, 10000));
    expect_close(c, TT_CLOSE_TLS_TRUNCATED, TT_ETRUNCATED, NULL);
    cr_expect_eq(c->got, 7000, "everything before the FIN was delivered");
    cr_expect_eq(c->bad_at, -1);
    cr_expect_eq(c->close.bytes_queued, 7000);
    cr_expect_eq(c->close.bytes_written, 7000);
    th_proc_stop(&P);
}

/* ---- garbage, silence ------------------------------------------------------------------ */

static int raw_connect(void)
{
    return th_tcp_connect_blocking(&TE.addr);
}

/* The server closed this socket (EOF, reset, or an alert then EOF) within ms. */
static bool raw_closed(int fd, uint64_t ms)
{
    uint64_t end = th_now_ms() + ms;
    char buf[4096];
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while (th_now_ms() < end) {
        te_run_idle(5);
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return true;
    }
    return false;
}

Test(tls_faults, garbage_instead_of_client_hello_closes_only_that_connection)
{
    static const struct {
        const char *b;
        size_t len;
    } garbage[] = {
        {"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", 35},
        {"\x16\x03\x01\x00\x20 garbage in a handshake record..", 37},
        {"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", 10}, /* a ClientHello of nothing */
        {"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" "0123456789abcdef0123456789abcdef"
         "0123456789abcdef", 59}, /* an SSLv2-style hello */
        {"\x17\x03\x03\x00\x10" "0123456789abcdef", 21}, /* application data first */
    };
    const int n = (int)(sizeof(garbage) / sizeof(garbage[0]));
    te_echo_server(te_srv_ctx(), NULL);
    /* A healthy client runs meanwhile: the bad ones must not touch it. */
    te_peer(&P, TE_PY, "py", "client", "--port", te_srv_port(), "--ca", CA, "--bytes",
            "8000000", NULL);
    for (int i = 0; i < n; i++) {
        int fd = raw_connect();
        cr_assert_eq(send(fd, garbage[i].b, garbage[i].len, MSG_NOSIGNAL), (ssize_t)garbage[i].len);
        cr_expect(raw_closed(fd, 5000), "garbage %d: the server closed the socket", i);
        close(fd);
    }
    peer_ok(&P, 30000);
    cr_assert(te_run_srv_closes(n + 1, 5000));
    int failed = 0, clean = 0;
    for (int i = 0; i <= n; i++) {
        te_rec_t *s = te_srv_rec(i);
        if (s->opened) {
            clean++;
            cr_expect_eq(s->close.kind, TT_CLOSE_PEER_CLOSED, "the healthy one: %s (%s)",
                         TE_KIND(s), s->reason);
            cr_expect_str_eq(s->sha_hex, te_result(&P, "sent_sha"));
        } else {
            failed++;
            expect_close(s, TT_CLOSE_TLS_HANDSHAKE_FAILED, TT_ETLS, NULL);
        }
    }
    cr_expect_eq(failed, n);
    cr_expect_eq(clean, 1);
}

Test(tls_faults, fin_in_the_middle_of_the_handshake)
{
    te_echo_server(te_srv_ctx(), NULL);
    int fd = raw_connect();
    /* The first bytes of a ClientHello record, then FIN. */
    cr_assert_eq(send(fd, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, MSG_NOSIGNAL), 11);
    shutdown(fd, SHUT_WR);
    cr_assert(te_run_srv_closes(1, 5000));
    close(fd);
    expect_close(te_srv_rec(0), TT_CLOSE_TLS_HANDSHAKE_FAILED, TT_ETLS, NULL);
}

Test(tls_faults, silent_client_handshake_timeout)
{
    tt_server_opts_t so = {.tls_handshake_timeout_ms = 300};
    te_echo_server(te_srv_ctx(), &so);
    uint64_t t0 = th_now_ms();
    int fd = raw_connect();
    cr_assert(te_run_srv_closes(1, 5000));
    uint64_t took = te_srv_rec(0)->close_ms - t0;
    cr_expect(raw_closed(fd, 1000));
    close(fd);
    expect_close(te_srv_rec(0), TT_CLOSE_TLS_HANDSHAKE_TIMEOUT, te_srv_rec(0)->close.error, NULL);
    cr_expect_lt(te_srv_rec(0)->close.error, 0, "an error code");
    cr_expect_geq(took, 280, "not before the timeout: %llu ms", (unsigned long long)took);
    cr_expect_leq(took, 1500, "soon after it: %llu ms", (unsigned long long)took);
    cr_expect_str_eq(tt_close_kind_name(TT_CLOSE_TLS_HANDSHAKE_TIMEOUT), "tls handshake timeout");
    cr_expect_str_eq(tt_close_kind_name(TT_CLOSE_TLS_HANDSHAKE_FAILED), "tls handshake failed");
    cr_expect_str_eq(tt_close_kind_name(TT_CLOSE_TLS_TRUNCATED), "tls truncated");
}

Test(tls_faults, silent_server_handshake_timeout_client_side)
{
    tt_addr_t a;
    int lfd = th_tcp_listen_blocking(&a); /* the kernel accepts; nobody speaks */
    uint64_t t0 = th_now_ms();
    te_rec_t *c = te_connect(tt_addr_port(&a), te_cli_ctx(), "localhost", NULL, 300);
    cr_assert(te_run_cli_closes(1, 5000));
    close(lfd);
    uint64_t took = c->close_ms - t0;
    cr_expect(!c->opened);
    expect_close(c, TT_CLOSE_TLS_HANDSHAKE_TIMEOUT, c->close.error, NULL);
    cr_expect_geq(took, 280, "%llu ms", (unsigned long long)took);
    cr_expect_leq(took, 1500, "%llu ms", (unsigned long long)took);
}

/* ---- verification -------------------------------------------------------------------------- */

/* tether's client against a tether server presenting `cert`. */
static void refused(const th_pair_t *cert, const char *name, const char *why)
{
    te_echo_server(te_server_ctx(cert, NULL, false, NULL, 0), NULL);
    te_plan_t p = {.send = 10};
    te_rec_t *c = te_connect(TE.port, te_cli_ctx(), name, &p, 0);
    cr_assert(te_run_cli_closes(1, 5000) && te_run_srv_closes(1, 5000));
    cr_expect(!c->opened, "no on_open for a refused server");
    expect_close(c, TT_CLOSE_TLS_HANDSHAKE_FAILED, TT_ETLS, why);
    te_rec_t *s = te_srv_rec(0);
    cr_expect(!s->opened);
    expect_close(s, TT_CLOSE_TLS_HANDSHAKE_FAILED, TT_ETLS, NULL);
    cr_expect_eq(s->got, 0, "not one byte of the client's data");
}

Test(tls_faults, wrong_host_name) { refused(&TE.certs.server, "wrong.test", "hostname mismatch"); }
Test(tls_faults, wrong_ip_address) { refused(&TE.certs.other, NULL, "IP address mismatch"); }
Test(tls_faults, unknown_ca) { refused(&TE.certs.rogue, "localhost", "unknown CA"); }
Test(tls_faults, expired_certificate) { refused(&TE.certs.expired, "localhost", "expired"); }
Test(tls_faults, not_yet_valid_certificate) { refused(&TE.certs.future, "localhost", "not yet valid"); }

Test(tls_faults, expired_certificate_from_python)
{
    char port[16];
    te_port(port, sizeof(port));
    te_peer(&P, TE_PY, "pysrv", "server", "--port", port, "--cert", TE.certs.expired.cert,
            "--key", TE.certs.expired.key, NULL);
    cr_assert(th_proc_wait_output(&P, "READY", 5000));
    te_rec_t *c = te_connect((uint16_t)atoi(port), te_cli_ctx(), "localhost", NULL, 0);
    cr_assert(te_run_cli_closes(1, 5000));
    expect_close(c, TT_CLOSE_TLS_HANDSHAKE_FAILED, TT_ETLS, "expired");
    cr_assert(te_run_proc(&P, 5000));
    cr_expect(strstr(th_proc_output(&P), "handshake failed") != NULL, "%s", th_proc_output(&P));
}

Test(tls_faults, insecure_client_accepts_anything)
{
    te_echo_server(te_server_ctx(&TE.certs.rogue, NULL, false, NULL, 0), NULL);
    tt_tls_client_opts_t o = {.insecure = true};
    tt_tls_ctx_t *cc = NULL;
    cr_assert_eq(tt_tls_client_ctx(&o, &cc), 0);
    te_round_trip(TE.port, cc, "wrong.test", 1000, 5000);
    tt_tls_ctx_free(cc); /* the connection held its own reference */
}

/* ---- renegotiation ---------------------------------------------------------------------------- */

Test(tls_faults, renegotiation_attempt_is_refused)
{
    TE.srv_plan = (te_plan_t){.send = 6};
    te_listen(te_srv_ctx(), NULL);
    char connect[32];
    snprintf(connect, sizeof(connect), "127.0.0.1:%u", TE.port);
    te_peer(&P, TE_OPENSSL, "s_client", "s_client", "-connect", connect, "-CAfile", CA,
            "-servername", "localhost", "-tls1_2", NULL);
    uint64_t end = th_now_ms() + 10000;
    while (te_srv_rec(0) == NULL || !te_srv_rec(0)->opened) {
        cr_assert_lt(th_now_ms(), end, "s_client never connected: %s", th_proc_stderr(&P));
        te_run_idle(10);
    }
    te_run_idle(100);
    th_proc_write(&P, "R\n", 2); /* s_client: renegotiate */
    cr_assert(te_run_srv_closes(1, 5000), "still open after a renegotiation attempt: %s",
              th_proc_stderr(&P));
    expect_close(te_srv_rec(0), TT_CLOSE_TLS_ERROR, TT_ETLS, "renegotiation");
    th_proc_stop(&P);
}

/* ---- 1-byte segments ---------------------------------------------------------------------------- */

Test(tls_faults, ciphertext_in_one_byte_segments)
{
    te_echo_server(te_srv_ctx(), NULL);
    char port[16], to[16];
    te_port(port, sizeof(port));
    snprintf(to, sizeof(to), "%u", TE.port);
    te_peer(&P, TE_PY, "proxy", "proxy", "--port", port, "--to", to, NULL);
    cr_assert(th_proc_wait_output(&P, "READY", 5000));
    te_rec_t *c = te_round_trip((uint16_t)atoi(port), te_cli_ctx(), "localhost", 60000, 30000);
    cr_expect_str_eq(c->info.version, "TLSv1.3");
    peer_ok(&P, 10000);
    long sends = atol(te_result(&P, "sends"));
    cr_expect_gt(sends, 120000, "every byte of both directions was its own send: %ld", sends);
    cr_assert(te_run_srv_closes(1, 5000));
    cr_expect_eq(te_srv_rec(0)->close.kind, TT_CLOSE_PEER_CLOSED, "%s (%s)",
                 TE_KIND(te_srv_rec(0)), te_srv_rec(0)->reason);
}

/* ---- slow and stopped readers ---------------------------------------------------------------------- */

static void pattern_sha(uint64_t n, char out[65])
{
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    unsigned char buf[65536], d[32];
    unsigned len = 0;
    EVP_DigestInit_ex(x, EVP_sha256(), NULL);
    for (uint64_t off = 0; off < n; off += sizeof(buf)) {
        size_t k = n - off < sizeof(buf) ? (size_t)(n - off) : sizeof(buf);
        th_pattern(buf, k, off);
        EVP_DigestUpdate(x, buf, k);
    }
    EVP_DigestFinal_ex(x, d, &len);
    EVP_MD_CTX_free(x);
    for (unsigned i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

Test(tls_faults, slow_reader_backpressure_in_application_bytes)
{
    const uint64_t n = 3 * 1024 * 1024;
    char want[65];
    pattern_sha(n, want);
    TE.srv_plan = (te_plan_t){.send = n, .end_after_send = true};
    te_listen(te_srv_ctx(), NULL);
    long rss0 = te_rss_kib();
    te_peer(&P, TE_PY, "py", "client", "--port", te_srv_port(), "--ca", CA, "--recv-only",
            "--slow", "0.0005", NULL);
    peer_ok(&P, 40000);
    cr_assert(te_run_srv_closes(1, 5000));
    te_rec_t *s = te_srv_rec(0);
    cr_expect_str_eq(te_result(&P, "sha"), want, "every byte, in order");
    cr_expect_str_eq(te_result(&P, "eof"), "clean");
    cr_expect_eq(s->close.kind, TT_CLOSE_LOCAL_END, "%s (%s)", TE_KIND(s), s->reason);
    /* The queue never held more than the high-water mark plus one send. */
    cr_expect_leq(s->max_queued, TT_DEFAULT_HIGH_WATER + 200000, "max queued %zu", s->max_queued);
    long grew = te_rss_kib() - rss0;
    cr_expect_lt(grew, 16 * 1024, "memory grew by %ld KiB", grew);
}

Test(tls_faults, stopped_reader_hits_the_queue_cap)
{
    const size_t cap = 1 << 20;
    tt_server_opts_t so = {.high_water = 256 * 1024, .queue_cap = cap};
    TE.srv_plan = (te_plan_t){.flood = true};
    te_listen(te_srv_ctx(), &so);
    long rss0 = te_rss_kib();
    te_peer(&P, TE_PY, "py", "client", "--port", te_srv_port(), "--ca", CA, "--silent",
            "--hold", "3", NULL);
    cr_assert(te_run_srv_closes(1, 10000));
    te_rec_t *s = te_srv_rec(0);
    cr_expect_eq(s->flood_rc, -ENOBUFS, "the send past the cap is refused: %s",
                 tt_strerror(s->flood_rc));
    expect_close(s, TT_CLOSE_SEND_OVERFLOW, s->close.error, "");
    cr_expect_leq(s->max_queued, cap, "queued %zu application bytes, cap %zu", s->max_queued, cap);
    cr_expect_lt(s->sent, 64u << 20, "the kernel and the cap took %llu bytes, not everything",
                 (unsigned long long)s->sent);
    cr_expect_eq(s->close.bytes_queued, s->sent);
    cr_expect_eq(s->close.bytes_written + s->close.bytes_unsent, s->sent);
    long grew = te_rss_kib() - rss0;
    cr_expect_lt(grew, 24 * 1024, "memory grew by %ld KiB", grew);
    th_proc_stop(&P);
}

/* ---- RST, silent peer --------------------------------------------------------------------------- */

Test(tls_faults, rst_in_the_middle_of_a_record)
{
    te_echo_server(te_srv_ctx(), NULL);
    te_peer(&P, TE_PY, "py", "client", "--port", te_srv_port(), "--ca", CA, "--rst-mid-record",
            NULL);
    peer_ok(&P, 10000);
    cr_assert(te_run_srv_closes(1, 5000));
    te_rec_t *s = te_srv_rec(0);
    expect_close(s, TT_CLOSE_PEER_RESET, -ECONNRESET, "");
    cr_expect_eq(s->got, 0, "half a record is nothing");
}

Test(tls_faults, silent_peer_heartbeat_timeout_inside_tls)
{
    tt_frame_opts_t fr = tt_frame_u32be(1 << 16);
    fr.control = true;
    tt_server_opts_t so = {.frame = &fr, .detect_within_ms = 500};
    te_echo_server(te_srv_ctx(), &so);
    te_peer(&P, TE_PY, "py", "client", "--port", te_srv_port(), "--ca", CA, "--silent",
            "--hold", "4", NULL);
    cr_assert(te_run_srv_closes(1, 5000), "a peer that never answers a ping stays open");
    te_rec_t *s = te_srv_rec(0);
    cr_assert(s->opened);
    expect_close(s, TT_CLOSE_HEARTBEAT_TIMEOUT, TT_EHEARTBEAT, "");
    uint64_t took = s->close_ms - s->open_ms;
    cr_expect_leq(took, 1500, "detected in %llu ms (detect within 500)", (unsigned long long)took);
    cr_expect_gt(s->stats.wire_bytes_out, 0);
    th_proc_stop(&P);
}
