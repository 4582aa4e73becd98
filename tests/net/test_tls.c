/* TLS between tether ends: round trips, versions, ALPN, SNI, resumption, mutual
 * TLS, certificate swap, STARTTLS, framing and liveness inside TLS, tt_send_file,
 * stats, the orderly ends, and the API's argument checks. The set-up lives in
 * tests/support/tls_env.c; each test is its scenario. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"
#include "tls_env.h"

TestSuite(tls, .init = te_setup, .fini = te_teardown, .timeout = 60);

#define srv_ctx te_srv_ctx
#define cli_ctx te_cli_ctx
#define echo_server te_echo_server
#define round_trip(cctx, name, n, ms) te_round_trip(TE.port, cctx, name, n, ms)

Test(tls, round_trip_uneven_chunks_and_stats)
{
    echo_server(srv_ctx(), NULL);
    te_rec_t *c = round_trip(cli_ctx(), "localhost", 3 * 1024 * 1024 + 17, 20000);
    cr_assert(te_run_srv_closes(1, 5000));
    te_rec_t *s = te_srv_rec(0);
    cr_expect_eq(s->close.kind, TT_CLOSE_PEER_CLOSED, "server close: %s (%s)", TE_KIND(s), s->reason);
    cr_expect(s->ended, "the client's close_notify is the server's on_end");
    cr_expect_str_eq(s->sha_hex, c->sha_hex, "what the server got is what came back");
    cr_expect_eq(c->info_rc, 0);
    cr_expect(c->info.done && !c->info.server && s->info.server);
    cr_expect_str_eq(c->info.version, "TLSv1.3");
    cr_expect_neq(c->info.cipher[0], '\0');
    cr_expect_str_eq(s->info.sni, "localhost");
    cr_expect(strstr(c->info.peer_subject, "CN=localhost") != NULL, "%s", c->info.peer_subject);
    cr_expect_str_eq(s->info.peer_subject, "", "no client certificate");
    /* Application bytes, and more on the wire. */
    cr_expect_eq(c->stats.bytes_out, c->got);
    cr_expect_eq(c->stats.bytes_in, c->got);
    cr_expect_gt(c->stats.wire_bytes_out, c->stats.bytes_out);
    cr_expect_gt(c->stats.wire_bytes_in, c->stats.bytes_in);
    cr_expect_gt(s->stats.wire_bytes_in, s->stats.bytes_in);
    cr_expect_eq(c->close.bytes_queued, c->got, "close figures count application bytes");
    cr_expect_eq(c->close.bytes_written, c->got);
    cr_expect_eq(c->close.bytes_unsent, 0);
}

Test(tls, hundred_mib_checksum, .timeout = 120)
{
    const uint64_t n = 100ull * 1024 * 1024;
    echo_server(srv_ctx(), NULL);
    uint64_t t0 = th_now_ms();
    te_rec_t *c = round_trip(cli_ctx(), "localhost", n, 100000);
    cr_assert(te_run_srv_closes(1, 5000));
    cr_expect_str_eq(te_srv_rec(0)->sha_hex, c->sha_hex);
    cr_log_info("100 MiB echoed over TLS in %llu ms", (unsigned long long)(th_now_ms() - t0));
}

Test(tls, versions_forced)
{
    echo_server(te_server_ctx(&TE.certs.server, NULL, false, NULL, TT_TLS_1_3), NULL);
    te_rec_t *c = round_trip(te_client_ctx(TE.certs.ca.cert, NULL, NULL, TT_TLS_1_3),
                             "localhost", 1000, 5000);
    cr_expect_str_eq(c->info.version, "TLSv1.3");
    cr_expect_eq(tt_tls_server_ctx(&(tt_tls_server_opts_t){.cert_file = TE.certs.server.cert,
                                                            .key_file = TE.certs.server.key,
                                                            .min_version = 0x0301},
                                   &(tt_tls_ctx_t *){NULL}),
                 -EINVAL, "below TLS 1.2 is refused");
}

Test(tls, alpn_agreed_and_none)
{
    echo_server(te_server_ctx(&TE.certs.server, NULL, false, "h2,http/1.1", 0), NULL);
    te_rec_t *c = round_trip(te_client_ctx(TE.certs.ca.cert, NULL, "foo,http/1.1", 0),
                             "localhost", 100, 5000);
    cr_expect_str_eq(c->info.alpn, "http/1.1");
    te_rec_t *c2 = round_trip(cli_ctx(), "localhost", 100, 5000);
    cr_expect_str_eq(c2->info.alpn, "", "no ALPN offered: none agreed");
    cr_assert(te_run_srv_closes(2, 5000));
    cr_expect_str_eq(te_srv_rec(0)->info.alpn, "http/1.1");
    cr_expect_str_eq(te_srv_rec(1)->info.alpn, "");
}

Test(tls, sni_chooses_the_certificate)
{
    tt_tls_ctx_t *sc = srv_ctx();
    cr_assert_eq(tt_tls_ctx_add_cert(sc, TE.certs.other.cert, TE.certs.other.key), 0);
    cr_expect_eq(tt_tls_ctx_add_cert(cli_ctx(), TE.certs.other.cert, TE.certs.other.key),
                 -EINVAL, "a client context takes no extra certificate");
    cr_expect_eq(tt_tls_ctx_add_cert(sc, "/nonexistent.pem", TE.certs.other.key), -ENOENT);
    cr_expect_eq(tt_tls_ctx_add_cert(sc, TE.certs.other.cert, TE.certs.server.key), -EINVAL,
                 "a key that is not the certificate's");
    echo_server(sc, NULL);
    te_rec_t *a = round_trip(cli_ctx(), "localhost", 100, 5000);
    te_rec_t *b = round_trip(cli_ctx(), "other.test", 100, 5000);
    te_rec_t *w = round_trip(cli_ctx(), "x.wild.test", 100, 5000);
    cr_expect(strstr(a->info.peer_subject, "CN=localhost") != NULL, "%s", a->info.peer_subject);
    cr_expect(strstr(b->info.peer_subject, "CN=other.test") != NULL, "%s", b->info.peer_subject);
    cr_expect(strstr(w->info.peer_subject, "CN=other.test") != NULL, "wildcard: %s",
              w->info.peer_subject);
    cr_assert(te_run_srv_closes(3, 5000));
    cr_expect_str_eq(te_srv_rec(1)->info.sni, "other.test");
    cr_expect_str_eq(te_srv_rec(2)->info.sni, "x.wild.test");
}

Test(tls, resumption_on_reconnect)
{
    echo_server(srv_ctx(), NULL);
    tt_tls_ctx_t *cc = cli_ctx();
    te_rec_t *a = round_trip(cc, "localhost", 5000, 5000);
    te_rec_t *b = round_trip(cc, "localhost", 5000, 5000);
    cr_expect(!a->info.resumed, "the first is a full handshake");
    cr_expect(b->info.resumed, "the second resumes the first's session");
    cr_assert(te_run_srv_closes(2, 5000));
    cr_expect(!te_srv_rec(0)->info.resumed);
    cr_expect(te_srv_rec(1)->info.resumed);
    /* Another name is another session. */
    te_rec_t *c = round_trip(cc, "127.0.0.1", 10, 5000);
    cr_expect(!c->info.resumed, "sessions are kept per server name");
}

Test(tls, resumption_off_without_tickets)
{
    tt_tls_server_opts_t o = {.cert_file = TE.certs.server.cert, .key_file = TE.certs.server.key,
                              .no_tickets = true};
    tt_tls_ctx_t *sc = NULL;
    cr_assert_eq(tt_tls_server_ctx(&o, &sc), 0);
    echo_server(sc, NULL);
    TE.sctx = sc;
    tt_tls_ctx_t *cc = cli_ctx();
    round_trip(cc, "localhost", 100, 5000);
    te_rec_t *b = round_trip(cc, "localhost", 100, 5000);
    cr_expect(!b->info.resumed, "no tickets: no resumption");
}

static void mtls_refused(int version, const th_pair_t *cert)
{
    echo_server(te_server_ctx(&TE.certs.server, TE.certs.ca.cert, true, NULL, version), NULL);
    te_plan_t p = {.send = 100};
    te_rec_t *c = te_connect(TE.port, te_client_ctx(TE.certs.ca.cert, cert, NULL, version),
                             "localhost", &p, 0);
    cr_assert(te_run_srv_closes(1, 5000) && te_run_cli_closes(1, 5000));
    te_rec_t *s = te_srv_rec(0);
    cr_log_info("server: %s \"%s\"; client: %s \"%s\"", TE_KIND(s), s->reason, TE_KIND(c),
                c->reason);
    cr_expect(!s->opened, "no on_open on the server for a refused client");
    cr_expect_eq(s->close.kind, TT_CLOSE_TLS_HANDSHAKE_FAILED, "server: %s (%s)", TE_KIND(s),
                 s->reason);
    cr_expect_eq(s->close.error, TT_ETLS);
    cr_expect_eq(s->errors, 1, "on_error before on_close");
    if (cert != NULL)
        cr_expect(strstr(s->reason, "unknown CA") != NULL, "server reason: %s", s->reason);
    else
        cr_expect_neq(s->reason[0], '\0');
    cr_expect_eq(c->close.kind, TT_CLOSE_TLS_HANDSHAKE_FAILED, "client: %s (%s)%s", TE_KIND(c),
                 c->reason, c->opened ? ", after its on_open" : "");
    cr_expect_neq(c->reason[0], '\0', "the client says why");
    cr_expect_eq(c->got, 0);
}

Test(tls, mutual_tls_accepted)
{
    echo_server(te_server_ctx(&TE.certs.server, TE.certs.ca.cert, true, NULL, 0), NULL);
    round_trip(te_client_ctx(TE.certs.ca.cert, &TE.certs.client, NULL, 0), "localhost", 20000, 5000);
    cr_assert(te_run_srv_closes(1, 5000));
    te_rec_t *s = te_srv_rec(0);
    cr_expect(strstr(s->info.peer_subject, "CN=client.test") != NULL, "%s", s->info.peer_subject);
    cr_expect_eq(s->close.kind, TT_CLOSE_PEER_CLOSED);
}

/* TLS 1.3 (two tether ends always agree on it): the client finishes its handshake
 * before the server has judged its certificate; the refusal still has to be a
 * handshake failure on both sides. TLS 1.2 is forced against Python's server in
 * test_tls_interop.c. */
Test(tls, mutual_tls_refused_untrusted_client) { mtls_refused(0, &TE.certs.client2); }
Test(tls, mutual_tls_refused_no_client_cert) { mtls_refused(0, NULL); }

Test(tls, mutual_tls_needs_ca)
{
    tt_tls_server_opts_t o = {.cert_file = TE.certs.server.cert, .key_file = TE.certs.server.key,
                              .verify_client = true};
    tt_tls_ctx_t *c = NULL;
    cr_expect_eq(tt_tls_server_ctx(&o, &c), -EINVAL);
}


Test(tls, set_tls_swaps_for_new_handshakes_only)
{
    echo_server(srv_ctx(), NULL);
    tt_tls_ctx_t *cc = cli_ctx();
    te_rec_t *a = te_connect(TE.port, cc, "localhost", NULL, 0);
    cr_assert(te_run_open(a, 5000), "%s", a->reason);
    cr_expect(strstr(a->info.peer_subject, "CN=localhost") != NULL, "%s", a->info.peer_subject);

    tt_tls_ctx_t *renewed = te_server_ctx(&TE.certs.server2, NULL, false, NULL, 0);
    cr_assert_eq(tt_server_set_tls(TE.srv, renewed), 0);
    cr_expect_eq(tt_server_set_tls(TE.srv, cc), -EINVAL, "a client context");
    cr_expect_eq(tt_server_set_tls(NULL, renewed), -EINVAL);
    te_rec_t *b = te_connect(TE.port, cc, "localhost", NULL, 0);
    cr_assert(te_run_open(b, 5000), "second: %s (%s); server: %s (%s)",
              TE_KIND(b), b->reason, te_srv_rec(1) ? TE_KIND(te_srv_rec(1)) : "-",
              te_srv_rec(1) ? te_srv_rec(1)->reason : "-");
    cr_expect(strstr(b->info.peer_subject, "CN=renewed.localhost") != NULL,
              "new handshakes see the new certificate: %s", b->info.peer_subject);

    /* The open one keeps working on its own context. */
    cr_assert_eq(tt_send(a->conn, "still\n", 6), 0);
    cr_assert(te_run_got(a, 6, 5000));
    cr_expect_str_eq(a->head, "still\n");
    tt_end(a->conn, NULL, 0);
    tt_end(b->conn, NULL, 0);
    cr_assert(te_run_cli_closes(2, 5000));
    cr_expect_eq(a->close.kind, TT_CLOSE_LOCAL_END, "%s (%s)", TE_KIND(a), a->reason);
}

Test(tls, set_tls_needs_a_tls_server)
{
    TE.srv_plan = (te_plan_t){.echo = true};
    te_listen(NULL, NULL);
    cr_expect_eq(tt_server_set_tls(TE.srv, srv_ctx()), -EINVAL);
}

Test(tls, starttls_nothing_lost_or_reordered)
{
    TE.starttls_ctx = srv_ctx();
    TE.starttls_cctx = cli_ctx();
    TE.srv_plan = (te_plan_t){.starttls = true};
    te_listen(NULL, NULL);
    const char *want = "plain too\nGO\nserver secret 1\nclient secret 1\n";
    te_plan_t p = {.starttls = true, .end_after_got = strlen(want)};
    te_rec_t *c = te_connect(TE.port, NULL, NULL, &p, 0);
    bool done = te_run_cli_closes(1, 5000) && te_run_srv_closes(1, 5000);
    te_rec_t *s = te_srv_rec(0);
    cr_assert(done, "client: upgraded %d closed %d got [%s] (%s) queued %zu; server: upgraded %d got [%s]",
              c->upgraded, c->closed, c->head, c->reason, c->conn ? tt_conn_queued_bytes(c->conn) : 0,
              s ? s->upgraded : -1, s ? s->head : "-");
    cr_expect(c->upgraded && s->upgraded, "on_done on both sides");
    cr_expect_str_eq(c->head, want);
    cr_expect_str_eq(s->head, "hello plain\nSTARTTLS\nclient secret 1\n");
    cr_expect_eq(c->close.kind, TT_CLOSE_LOCAL_END, "%s (%s)", TE_KIND(c), c->reason);
    cr_expect_eq(s->close.kind, TT_CLOSE_PEER_CLOSED, "%s (%s)", TE_KIND(s), s->reason);
    cr_expect_eq(c->info_rc, 0);
    cr_expect_str_eq(c->info.version, "TLSv1.3");
    cr_expect(s->info.server);
}

Test(tls, start_tls_argument_checks)
{
    echo_server(srv_ctx(), NULL);
    te_rec_t *a = te_connect(TE.port, cli_ctx(), "localhost", NULL, 0);
    cr_assert(te_run_open(a, 5000));
    tt_tls_start_opts_t so = {.ctx = cli_ctx(), .servername = "localhost"};
    cr_expect_eq(tt_conn_start_tls(a->conn, &so), -EINVAL, "TLS already on");
    cr_expect_eq(tt_conn_start_tls(NULL, &so), -EINVAL);
    cr_expect_eq(tt_conn_start_tls(a->conn, NULL), -EINVAL);
    tt_tls_info_t info;
    cr_expect_eq(tt_conn_tls_info(NULL, &info), -EINVAL);
    cr_expect_eq(tt_conn_tls_info(a->conn, NULL), -EINVAL);
    cr_expect_eq(tt_tls_server_ctx(NULL, &(tt_tls_ctx_t *){NULL}), -EINVAL);
    cr_expect_eq(tt_tls_client_ctx(&(tt_tls_client_opts_t){0}, NULL), -EINVAL);
    cr_expect_eq(tt_tls_server_ctx(&(tt_tls_server_opts_t){.cert_file = "/nonexistent",
                                                            .key_file = "/nonexistent"},
                                   &(tt_tls_ctx_t *){NULL}),
                 -ENOENT);
    tt_tls_ctx_free(NULL);
    tt_end(a->conn, NULL, 0);
}

Test(tls, tls_info_on_a_plain_connection)
{
    TE.srv_plan = (te_plan_t){.echo = true};
    te_listen(NULL, NULL);
    te_rec_t *a = te_connect(TE.port, NULL, NULL, NULL, 0);
    cr_assert(te_run_open(a, 5000));
    cr_expect_eq(a->info_rc, -EOPNOTSUPP);
    tt_end(a->conn, NULL, 0);
}

Test(tls, server_context_from_memory)
{
    char *pem[2];
    const char *files[2] = {TE.certs.server.cert, TE.certs.server.key};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "r");
        cr_assert(f != NULL);
        pem[i] = calloc(1, 8192);
        cr_assert_gt(fread(pem[i], 1, 8191, f), 0);
        fclose(f);
    }
    tt_tls_server_opts_t o = {.cert_pem = pem[0], .key_pem = pem[1]};
    cr_assert_eq(tt_tls_server_ctx(&o, &TE.sctx), 0);
    free(pem[0]);
    free(pem[1]);
    echo_server(TE.sctx, NULL);
    round_trip(cli_ctx(), "localhost", 1000, 5000);
}

Test(tls, framed_echo)
{
    tt_frame_opts_t fr = tt_frame_u32be(1 << 20);
    tt_server_opts_t so = {.frame = &fr};
    echo_server(srv_ctx(), &so);
    te_plan_t p = {.frame = &fr, .send_msgs = 60, .end_after_msgs = 60};
    te_rec_t *c = te_connect(TE.port, cli_ctx(), "localhost", &p, 0);
    cr_assert(te_run_cli_closes(1, 10000), "messages echoed: %d", c->msgs);
    cr_expect_eq(c->msgs, 60);
    cr_expect_eq(c->bad_msg, -1, "message %ld differs", c->bad_msg);
    cr_expect_eq(c->close.kind, TT_CLOSE_LOCAL_END, "%s (%s)", TE_KIND(c), c->reason);
    cr_expect_eq(c->stats.messages_in, 60);
    cr_expect_gt(c->stats.wire_bytes_in, c->stats.bytes_in);
}


Test(tls, heartbeats_inside_tls_keep_it_alive)
{
    tt_frame_opts_t fr = tt_frame_u32be(1 << 16);
    fr.control = true; /* ping and pong frames */
    tt_server_opts_t so = {.frame = &fr, .detect_within_ms = 400};
    echo_server(srv_ctx(), &so);
    te_plan_t p = {.frame = &fr, .detect_within_ms = 400};
    te_rec_t *c = te_connect(TE.port, cli_ctx(), "localhost", &p, 0);
    cr_assert(te_run_open(c, 5000));
    tt_conn_stats_t st0, st1;
    cr_assert_eq(tt_conn_get_stats(c->conn, &st0), 0);
    cr_assert(te_run_idle(1500), "idle but alive for 1.5 s: %s (%s)",
                 c->closed ? TE_KIND(c) : "-", c->reason);
    cr_assert_eq(tt_conn_get_stats(c->conn, &st1), 0);
    cr_expect_gt(st1.wire_bytes_in, st0.wire_bytes_in, "pings/pongs came, as TLS records");
    cr_expect_eq(st1.messages_in, 0, "no message reached the app");
    tt_end(c->conn, NULL, 0);
    cr_assert(te_run_cli_closes(1, 5000));
    cr_expect_eq(c->close.kind, TT_CLOSE_LOCAL_END, "%s (%s)", TE_KIND(c), c->reason);
}

static void make_file(const char *path, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL);
    unsigned char buf[65536];
    for (size_t off = 0; off < n; off += sizeof(buf)) {
        size_t k = n - off < sizeof(buf) ? n - off : sizeof(buf);
        th_pattern(buf, k, off);
        cr_assert_eq(fwrite(buf, 1, k, f), k);
    }
    cr_assert_eq(fclose(f), 0);
}

Test(tls, send_file_over_tls)
{
    char path[512], want[65];
    const size_t n = 4 * 1024 * 1024 + 333;
    snprintf(path, sizeof(path), "%s/payload.bin", TE.certs.dir);
    make_file(path, n);
    te_sha256_file(path, want);
    TE.srv_plan = (te_plan_t){.file = path};
    te_listen(srv_ctx(), NULL);
    te_plan_t p = {.check_pattern = true};
    te_rec_t *c = te_connect(TE.port, cli_ctx(), "localhost", &p, 0);
    cr_assert(te_run_cli_closes(1, 20000) && te_run_srv_closes(1, 5000));
    cr_expect_eq(c->got, n);
    cr_expect_eq(c->bad_at, -1);
    cr_expect_str_eq(c->sha_hex, want);
    cr_expect(c->ended, "the server's tt_end after the file is its close_notify");
    cr_expect_eq(c->close.kind, TT_CLOSE_PEER_CLOSED, "%s (%s)", TE_KIND(c), c->reason);
    te_rec_t *s = te_srv_rec(0);
    cr_expect_eq(s->close.kind, TT_CLOSE_LOCAL_END, "%s (%s)", TE_KIND(s), s->reason);
    cr_expect_eq(s->stats.bytes_out, n, "the file counts as application bytes");
    cr_expect_gt(s->stats.wire_bytes_out, n);
    cr_log_info("send_file over TLS: kernel TLS tx %s", s->info.ktls_tx ? "on" : "off");
}

Test(tls, reconnecting_client_keeps_tls)
{
    echo_server(srv_ctx(), NULL);
    /* Covered through tt_client_start below: two connections, both TLS. */
    tt_client_opts_t co = {.connect = {.tls = cli_ctx(), .tls_servername = "localhost"},
                           .min_delay_ms = 20, .max_delay_ms = 20};
    tt_client_t *cl = NULL;
    tt_conn_handlers_t h = {0};
    cr_assert_eq(tt_client_start(TE.loop, "127.0.0.1", TE.port, &co, NULL, &h, NULL, &cl), 0);
    /* The server ends the first connection; the client comes back over TLS. */
    uint64_t end = th_now_ms() + 5000;
    while (TE.srv_opens < 1 && th_now_ms() < end)
        tt_loop_run(TE.loop, TT_RUN_ONCE);
    cr_assert_eq(TE.srv_opens, 1);
    /* Let the client read the session tickets (TLS 1.3 sends them after the
     * handshake) before the connection goes. */
    te_run_idle(200);
    /* An orderly end: OpenSSL does not resume a session whose connection broke. */
    tt_end(te_srv_rec(0)->conn, NULL, 0);
    while (TE.srv_opens < 2 && th_now_ms() < end)
        tt_loop_run(TE.loop, TT_RUN_ONCE);
    cr_assert_eq(TE.srv_opens, 2, "reconnected");
    te_rec_t *s2 = te_srv_rec(1);
    cr_expect_eq(s2->info_rc, 0);
    cr_expect(s2->info.done, "the second connection is TLS too");
    cr_expect(s2->info.resumed, "and resumes the first one's session");
    tt_client_close(cl);
}

/* Idle TLS connections keep no record buffer of their own: the heap that 100
 * open, idle connection pairs hold (both ends in this process, after a small
 * exchange) stays far below the 2 x 16 KiB+ per end that kept buffers would cost. */
#if defined(__SANITIZE_ADDRESS__)
#define TT_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TT_TEST_ASAN 1
#endif
#endif
#include <malloc.h>

static bool all_got(void)
{
    for (int i = 0; i < TE.nrecs; i++)
        if (TE.recs[i].client && TE.recs[i].got < 100 && !TE.recs[i].closed)
            return false;
    return true;
}

/* Heap per idle connection pair (both ends here) after a 100-byte exchange. */
static long idle_pair_heap(tt_tls_ctx_t *sc, tt_tls_ctx_t *cc, int n)
{
    te_echo_server(sc, NULL);
    /* One first, so OpenSSL's and the loop's one-time allocations are made. */
    te_plan_t p = {.send = 100};
    te_rec_t *first = te_connect(TE.port, cc, "localhost", &p, 0);
    cr_assert(te_run_got(first, 100, 5000));
    te_run_idle(50);
    struct mallinfo2 m0 = mallinfo2();
    for (int i = 0; i < n; i++)
        te_connect(TE.port, cc, "localhost", &p, 0);
    cr_assert(te_run_until(all_got, 10000));
    te_run_idle(100); /* tickets read, queues empty */
    struct mallinfo2 m1 = mallinfo2();
    cr_assert_eq(TE.srv_closes + TE.cli_closes, 0);
    for (int i = 0; i < TE.nrecs; i++)
        if (TE.recs[i].client && TE.recs[i].conn != NULL)
            tt_end(TE.recs[i].conn, NULL, 0);
    cr_assert(te_run_cli_closes(n + 1, 10000));
    return ((long)m1.uordblks - (long)m0.uordblks) / n;
}

Test(tls, idle_plain_connection_heap)
{
    cr_log_info("idle plain connection pair: %ld bytes of heap", idle_pair_heap(NULL, NULL, 30));
}

Test(tls, idle_connections_hold_no_record_buffers)
{
    long per_pair = idle_pair_heap(srv_ctx(), cli_ctx(), 30);
    cr_log_info("idle TLS connection pair (client + server end): %ld bytes of heap", per_pair);
#ifndef TT_TEST_ASAN
    /* Two kept 16 KiB+ record buffers per end would be 64 KiB+ on their own. */
    cr_expect_lt(per_pair, 56 * 1024, "%ld bytes per idle pair", per_pair);
#endif
}
