/* TLS interop both ways with peers that are not tether: Python's ssl module
 * (tests/tls/peer.py), Node's tls (tests/tls/peer.js), and the openssl command
 * (s_client, s_server). Each peer is a child process on a free loopback port,
 * stopped by its PID; its verdict is its RESULT line and exit status. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"
#include "tls_env.h"

TestSuite(tls_interop, .init = te_setup, .fini = te_teardown, .timeout = 90);

static th_proc_t P, Q;

#define CA TE.certs.ca.cert
#define OPT(flag, v) ((v) != NULL ? (flag) : ""), ((v) != NULL ? (v) : "")

/* Run the loop until the peer is done, and require its success. */
static void peer_done(th_proc_t *p, uint64_t ms)
{
    cr_assert(te_run_proc(p, ms), "peer still running after %llu ms: %s %s",
              (unsigned long long)ms, th_proc_output(p), th_proc_stderr(p));
    cr_assert_eq(p->status, 0, "peer exit %d: %s %s", p->status, th_proc_output(p),
                 th_proc_stderr(p));
    cr_assert_str_eq(te_result(p, "ok"), "1", "%s", th_proc_output(p));
}

static const char *num(uint64_t n)
{
    static char buf[4][32];
    static int i;
    char *b = buf[i++ % 4];
    snprintf(b, 32, "%llu", (unsigned long long)n);
    return b;
}

/* ---- python -------------------------------------------------------------------------- */

/* A Python client sends n random bytes in uneven pieces; tether echoes. */
static te_rec_t *py_client_echo(const char *version, uint64_t n, uint64_t ms)
{
    te_echo_server(te_srv_ctx(), NULL);
    te_peer(&P, TE_PY, "py", "client", "--port", te_srv_port(), "--ca", CA, "--bytes", num(n),
            OPT("--tls", version), NULL);
    peer_done(&P, ms);
    cr_assert(te_run_srv_closes(1, 5000));
    te_rec_t *s = te_srv_rec(0);
    cr_expect_eq(s->got, n);
    cr_expect_str_eq(s->sha_hex, te_result(&P, "sent_sha"), "what tether got is what was sent");
    cr_expect(s->ended, "python's close_notify is on_end");
    cr_expect_eq(s->close.kind, TT_CLOSE_PEER_CLOSED, "%s (%s)", TE_KIND(s), s->reason);
    cr_expect_str_eq(te_result(&P, "eof"), "clean", "tether answered with its close_notify");
    return s;
}

Test(tls_interop, python_client_tls12)
{
    te_rec_t *s = py_client_echo("1.2", 2 * 1024 * 1024 + 5, 30000);
    cr_expect_str_eq(s->info.version, "TLSv1.2");
    cr_expect_str_eq(te_result(&P, "version"), "TLSv1.2");
}

Test(tls_interop, python_client_tls13)
{
    te_rec_t *s = py_client_echo("1.3", 2 * 1024 * 1024 + 5, 30000);
    cr_expect_str_eq(s->info.version, "TLSv1.3");
}

Test(tls_interop, python_client_100mib, .timeout = 150)
{
    uint64_t t0 = th_now_ms();
    py_client_echo(NULL, 100ull << 20, 120000);
    cr_log_info("python: 100 MiB echoed in %llu ms", (unsigned long long)(th_now_ms() - t0));
}

/* tether's client against Python's server, each version forced on the peer. */
static te_rec_t *py_server_round_trip(const char *version, tt_tls_ctx_t *cctx, uint64_t n)
{
    char port[16];
    te_port(port, sizeof(port));
    te_peer(&P, TE_PY, "pysrv", "server", "--port", port, "--cert", TE.certs.server.cert,
            "--key", TE.certs.server.key, OPT("--tls", version), NULL);
    cr_assert(th_proc_wait_output(&P, "READY", 5000), "%s", th_proc_stderr(&P));
    te_rec_t *c = te_round_trip((uint16_t)atoi(port), cctx, "localhost", n, 30000);
    peer_done(&P, 10000);
    cr_expect(strstr(th_proc_output(&P), "eof=clean") != NULL,
              "tether's tt_end is a close_notify: %s", th_proc_output(&P));
    return c;
}

Test(tls_interop, tether_client_python_server_tls12)
{
    te_rec_t *c = py_server_round_trip("1.2", te_cli_ctx(), 1024 * 1024 + 3);
    cr_expect_str_eq(c->info.version, "TLSv1.2");
}

Test(tls_interop, tether_client_python_server_tls13)
{
    te_rec_t *c = py_server_round_trip("1.3", te_cli_ctx(), 1024 * 1024 + 3);
    cr_expect_str_eq(c->info.version, "TLSv1.3");
}

Test(tls_interop, tether_client_needs_13_python_offers_12)
{
    char port[16];
    te_port(port, sizeof(port));
    te_peer(&P, TE_PY, "pysrv", "server", "--port", port, "--cert", TE.certs.server.cert,
            "--key", TE.certs.server.key, "--tls", "1.2", NULL);
    cr_assert(th_proc_wait_output(&P, "READY", 5000));
    te_rec_t *c = te_connect((uint16_t)atoi(port),
                             te_client_ctx(CA, NULL, NULL, TT_TLS_1_3), "localhost", NULL, 0);
    cr_assert(te_run_cli_closes(1, 5000));
    cr_expect(!c->opened);
    cr_expect_eq(c->close.kind, TT_CLOSE_TLS_HANDSHAKE_FAILED, "%s (%s)", TE_KIND(c), c->reason);
    cr_expect_neq(c->reason[0], '\0');
}

Test(tls_interop, python_alpn_agreed_and_none)
{
    te_echo_server(te_server_ctx(&TE.certs.server, NULL, false, "h2,http/1.1", 0), NULL);
    te_peer(&P, TE_PY, "py1", "client", "--port", te_srv_port(), "--ca", CA, "--bytes", "100",
            "--alpn", "spdy/1,http/1.1", NULL);
    peer_done(&P, 10000);
    cr_expect_str_eq(te_result(&P, "alpn"), "http/1.1");
    te_peer(&Q, TE_PY, "py2", "client", "--port", te_srv_port(), "--ca", CA, "--bytes", "100", NULL);
    peer_done(&Q, 10000);
    cr_expect_str_eq(te_result(&Q, "alpn"), "-");
    cr_assert(te_run_srv_closes(2, 5000));
    cr_expect_str_eq(te_srv_rec(0)->info.alpn, "http/1.1");
    cr_expect_str_eq(te_srv_rec(1)->info.alpn, "");
}

Test(tls_interop, tether_client_alpn_with_python_server)
{
    char port[16];
    te_port(port, sizeof(port));
    te_peer(&P, TE_PY, "pysrv", "server", "--port", port, "--cert", TE.certs.server.cert,
            "--key", TE.certs.server.key, "--alpn", "h2,x-tether", NULL);
    cr_assert(th_proc_wait_output(&P, "READY", 5000));
    te_rec_t *c = te_round_trip((uint16_t)atoi(port), te_client_ctx(CA, NULL, "x-tether", 0),
                                "localhost", 1000, 10000);
    cr_expect_str_eq(c->info.alpn, "x-tether");
    peer_done(&P, 5000);
    cr_expect(strstr(th_proc_output(&P), "alpn=x-tether") != NULL, "%s", th_proc_output(&P));
}

Test(tls_interop, python_sni_chooses_the_certificate)
{
    tt_tls_ctx_t *sc = te_srv_ctx();
    cr_assert_eq(tt_tls_ctx_add_cert(sc, TE.certs.other.cert, TE.certs.other.key), 0);
    te_echo_server(sc, NULL);
    te_peer(&P, TE_PY, "py1", "client", "--port", te_srv_port(), "--ca", CA, "--bytes", "10",
            "--servername", "other.test", NULL);
    peer_done(&P, 10000);
    cr_expect_str_eq(te_result(&P, "peer_cn"), "other.test");
    te_peer(&Q, TE_PY, "py2", "client", "--port", te_srv_port(), "--ca", CA, "--bytes", "10",
            "--servername", "localhost", NULL);
    peer_done(&Q, 10000);
    cr_expect_str_eq(te_result(&Q, "peer_cn"), "localhost");
    cr_assert(te_run_srv_closes(2, 5000));
    cr_expect_str_eq(te_srv_rec(0)->info.sni, "other.test");
    cr_expect_str_eq(te_srv_rec(1)->info.sni, "localhost");
}

static void py_resume(const char *version)
{
    te_echo_server(te_srv_ctx(), NULL);
    te_peer(&P, TE_PY, "py", "client", "--port", te_srv_port(), "--ca", CA, "--bytes", "5000",
            "--resume", OPT("--tls", version), NULL);
    peer_done(&P, 10000);
    cr_expect_str_eq(te_result(&P, "resumed"), "1", "python resumed its session");
    cr_assert(te_run_srv_closes(2, 5000));
    cr_expect(!te_srv_rec(0)->info.resumed);
    cr_expect(te_srv_rec(1)->info.resumed, "tether saw the resumption");
}

Test(tls_interop, python_resumption_tls12) { py_resume("1.2"); }
Test(tls_interop, python_resumption_tls13) { py_resume("1.3"); }

Test(tls_interop, tether_client_resumes_with_python_server)
{
    char port[16];
    te_port(port, sizeof(port));
    te_peer(&P, TE_PY, "pysrv", "server", "--port", port, "--cert", TE.certs.server.cert,
            "--key", TE.certs.server.key, "--count", "2", NULL);
    cr_assert(th_proc_wait_output(&P, "READY", 5000));
    tt_tls_ctx_t *cc = te_cli_ctx();
    te_rec_t *a = te_round_trip((uint16_t)atoi(port), cc, "localhost", 1000, 10000);
    te_rec_t *b = te_round_trip((uint16_t)atoi(port), cc, "localhost", 1000, 10000);
    cr_expect(!a->info.resumed);
    cr_expect(b->info.resumed, "the reconnect resumed");
    peer_done(&P, 5000);
}

Test(tls_interop, python_mutual_tls_accepted)
{
    te_echo_server(te_server_ctx(&TE.certs.server, CA, true, NULL, 0), NULL);
    te_peer(&P, TE_PY, "py", "client", "--port", te_srv_port(), "--ca", CA, "--bytes", "1000",
            "--cert", TE.certs.client.cert, "--key", TE.certs.client.key, NULL);
    peer_done(&P, 10000);
    cr_assert(te_run_srv_closes(1, 5000));
    te_rec_t *s = te_srv_rec(0);
    cr_expect(strstr(s->info.peer_subject, "CN=client.test") != NULL, "%s", s->info.peer_subject);
}

/* TLS 1.2: the client's certificate is judged inside the handshake. */
Test(tls_interop, python_mutual_tls_refused_tls12)
{
    te_echo_server(te_server_ctx(&TE.certs.server, CA, true, NULL, 0), NULL);
    te_peer(&P, TE_PY, "py", "client", "--port", te_srv_port(), "--ca", CA, "--bytes", "1000",
            "--cert", TE.certs.client2.cert, "--key", TE.certs.client2.key, "--tls", "1.2", NULL);
    cr_assert(te_run_proc(&P, 10000));
    cr_expect_str_eq(te_result(&P, "handshake"), "failed", "%s", th_proc_output(&P));
    cr_assert(te_run_srv_closes(1, 5000));
    te_rec_t *s = te_srv_rec(0);
    cr_expect(!s->opened);
    cr_expect_eq(s->close.kind, TT_CLOSE_TLS_HANDSHAKE_FAILED, "%s (%s)", TE_KIND(s), s->reason);
    cr_expect(strstr(s->reason, "unknown CA") != NULL, "reason: %s", s->reason);
}

Test(tls_interop, tether_client_refused_by_python_mtls_tls12)
{
    char port[16];
    te_port(port, sizeof(port));
    te_peer(&P, TE_PY, "pysrv", "server", "--port", port, "--cert", TE.certs.server.cert,
            "--key", TE.certs.server.key, "--ca", CA, "--tls", "1.2", NULL);
    cr_assert(th_proc_wait_output(&P, "READY", 5000));
    te_rec_t *c = te_connect((uint16_t)atoi(port), te_client_ctx(CA, &TE.certs.client2, NULL, 0),
                             "localhost", NULL, 0);
    cr_assert(te_run_cli_closes(1, 5000));
    cr_expect(!c->opened);
    cr_expect_eq(c->close.kind, TT_CLOSE_TLS_HANDSHAKE_FAILED, "%s (%s)", TE_KIND(c), c->reason);
    cr_expect(strstr(c->reason, "unknown CA") != NULL || strstr(c->reason, "alert") != NULL,
              "the server's alert: %s", c->reason);
    th_proc_stop(&P);
}

Test(tls_interop, python_starttls_client)
{
    TE.starttls_ctx = te_srv_ctx();
    TE.srv_plan = (te_plan_t){.starttls = true};
    te_listen(NULL, NULL);
    te_peer(&P, TE_PY, "py", "client", "--port", te_srv_port(), "--ca", CA, "--bytes", "300000",
            "--starttls", NULL);
    peer_done(&P, 20000);
    cr_expect_str_eq(te_result(&P, "first"), "server_secret_1",
                     "what tether queued right after tt_conn_start_tls comes first, encrypted");
    cr_assert(te_run_srv_closes(1, 5000));
    te_rec_t *s = te_srv_rec(0);
    cr_expect(s->upgraded);
    cr_expect_eq(s->got, strlen("hello plain\nSTARTTLS\n") + 300000);
    cr_expect_eq(s->close.kind, TT_CLOSE_PEER_CLOSED, "%s (%s)", TE_KIND(s), s->reason);
}

/* STARTTLS while the plain answer is still a send request in the kernel: on
 * io_uring a broadcast to a connection with nothing queued goes out as a request
 * that the loop submits as its run ends, and its completion is read in the next
 * run. The upgrade comes in between. The answer's bytes are written plain, so the
 * handshake starts once they have gone, as it does when they went by a write: if
 * their completion were not counted as the plain bytes written, the server would
 * wait for them for ever and the client's handshake would time out. */
Test(tls_interop, python_starttls_client_answer_in_flight)
{
    bool in_flight = false;
    TE.starttls_ctx = te_srv_ctx();
    TE.srv_plan = (te_plan_t){.starttls = true, .starttls_late = true};
    te_listen(NULL, NULL);
    te_peer(&P, TE_PY, "py", "client", "--port", te_srv_port(), "--ca", CA, "--bytes", "300000",
            "--starttls", NULL);
    uint64_t end = th_now_ms() + 10000;
    while (TE.late_conn == NULL && th_now_ms() < end) {
        tt_loop_run(TE.loop, TT_RUN_NOWAIT);
        if (TE.late_conn == NULL)
            usleep(1000);
    }
    cr_assert(TE.late_conn != NULL, "the client never asked for STARTTLS: %s",
              th_proc_stderr(&P));
    cr_assert_eq(te_start_tls_late(&in_flight), 0);
    if (strcmp(tt_loop_backend(TE.loop), "io_uring") == 0)
        cr_expect(in_flight, "the answer was a send request in the kernel at the upgrade");
    else
        cr_expect(!in_flight, "epoll writes the answer at once");
    peer_done(&P, 20000);
    cr_expect_str_eq(te_result(&P, "first"), "server_secret_1");
    cr_assert(te_run_srv_closes(1, 5000));
    te_rec_t *s = te_srv_rec(0);
    cr_expect(s->upgraded);
    cr_expect_eq(s->got, strlen("hello plain\nSTARTTLS\n") + 300000);
    cr_expect_eq(s->close.kind, TT_CLOSE_PEER_CLOSED, "%s (%s)", TE_KIND(s), s->reason);
    cr_expect_eq(s->stats.bytes_out, strlen("plain too\nGO\nserver secret 1\n") + 300000,
                 "every byte out counted once, plain and encrypted");
}

Test(tls_interop, tether_starttls_client_python_server)
{
    char port[16];
    te_port(port, sizeof(port));
    te_peer(&P, TE_PY, "pysrv", "server", "--port", port, "--cert", TE.certs.server.cert,
            "--key", TE.certs.server.key, "--starttls", NULL);
    cr_assert(th_proc_wait_output(&P, "READY", 5000));
    TE.starttls_cctx = te_cli_ctx();
    const char *want = "plain too\nGO\npython secret\nclient secret 1\n";
    te_plan_t p = {.starttls = true, .end_after_got = strlen(want)};
    te_rec_t *c = te_connect((uint16_t)atoi(port), NULL, NULL, &p, 0);
    bool done = te_run_cli_closes(1, 10000);
    cr_assert(done, "got [%s], queued %zu", c->head, c->conn ? tt_conn_queued_bytes(c->conn) : 0);
    cr_expect(c->upgraded);
    cr_expect_str_eq(c->head, want);
    cr_expect_eq(c->close.kind, TT_CLOSE_LOCAL_END, "%s (%s)", TE_KIND(c), c->reason);
    peer_done(&P, 5000);
}

/* ---- node ------------------------------------------------------------------------------ */

static void node_client(const char *version, const char *alpn)
{
    te_echo_server(te_server_ctx(&TE.certs.server, NULL, false, "h2,http/1.1", 0), NULL);
    te_peer(&P, TE_NODE, "node", "client", "--port", te_srv_port(), "--ca", CA, "--bytes",
            "3000001", OPT("--tls", version), OPT("--alpn", alpn), NULL);
    peer_done(&P, 30000);
    cr_assert(te_run_srv_closes(1, 5000));
    te_rec_t *s = te_srv_rec(0);
    cr_expect_str_eq(s->sha_hex, te_result(&P, "sent_sha"));
    cr_expect_eq(s->close.kind, TT_CLOSE_PEER_CLOSED, "%s (%s)", TE_KIND(s), s->reason);
    cr_expect_str_eq(s->info.version, te_result(&P, "version"));
    cr_expect_str_eq(s->info.alpn, alpn != NULL ? "http/1.1" : "");
}

Test(tls_interop, node_client_tls12) { node_client("1.2", NULL); }
Test(tls_interop, node_client_tls13_alpn) { node_client("1.3", "http/1.1"); }

static void node_server(const char *version)
{
    char port[16];
    te_port(port, sizeof(port));
    te_peer(&P, TE_NODE, "nodesrv", "server", "--port", port, "--cert", TE.certs.server.cert,
            "--key", TE.certs.server.key, "--alpn", "x-tether", OPT("--tls", version), NULL);
    cr_assert(th_proc_wait_output(&P, "READY", 5000), "%s", th_proc_stderr(&P));
    te_rec_t *c = te_round_trip((uint16_t)atoi(port), te_client_ctx(CA, NULL, "x-tether", 0),
                                "localhost", 2 * 1024 * 1024 + 1, 30000);
    cr_expect_str_eq(c->info.version, strcmp(version, "1.2") == 0 ? "TLSv1.2" : "TLSv1.3");
    cr_expect_str_eq(c->info.alpn, "x-tether");
    peer_done(&P, 5000);
}

Test(tls_interop, tether_client_node_server_tls12) { node_server("1.2"); }
Test(tls_interop, tether_client_node_server_tls13) { node_server("1.3"); }

/* ---- openssl s_client / s_server ---------------------------------------------------------- */

/* s_client -> tether: tether sends `down` pattern bytes at open, s_client's stdin
 * carries `up` pattern bytes; closing its stdin makes it send close_notify. */
static void s_client_exchange(const char *vflag)
{
    const size_t up = 40000, down = 30000;
    TE.srv_plan = (te_plan_t){.send = down, .check_pattern = true};
    te_listen(te_srv_ctx(), NULL);
    char connect[32];
    snprintf(connect, sizeof(connect), "127.0.0.1:%u", TE.port);
    te_peer(&P, TE_OPENSSL, "s_client", "s_client", "-connect", connect, "-CAfile", CA,
            "-servername", "localhost", "-verify_return_error", "-quiet", "-no_ign_eof",
            "-nocommands", vflag, NULL);
    unsigned char *buf = malloc(up);
    th_pattern(buf, up, 0);
    cr_assert(te_run_srv_closes(0, 1)); /* nothing yet */
    te_rec_t *s = NULL;
    uint64_t end = th_now_ms() + 10000;
    while ((s = te_srv_rec(0)) == NULL || !s->opened) {
        cr_assert_lt(th_now_ms(), end, "s_client never connected: %s", th_proc_stderr(&P));
        te_run_idle(10);
    }
    th_proc_write(&P, buf, up); /* the pipe holds 64 KiB: this does not block */
    free(buf);
    cr_assert(te_run_got(s, up, 10000), "got %llu of %zu", (unsigned long long)s->got, up);
    size_t len = 0;
    end = th_now_ms() + 10000;
    while (th_proc_output_len(&P, &len), len < down) {
        cr_assert_lt(th_now_ms(), end, "s_client printed %zu of %zu", len, down);
        te_run_idle(10);
    }
    const char *out = th_proc_output_len(&P, &len);
    cr_expect_eq(len, down);
    cr_expect_eq(th_pattern_check(out, len, 0), -1, "what s_client got is the pattern");
    th_proc_close_stdin(&P);
    cr_assert(te_run_srv_closes(1, 10000));
    cr_expect_eq(s->bad_at, -1);
    cr_expect(s->ended, "s_client's close_notify is on_end");
    cr_expect_eq(s->close.kind, TT_CLOSE_PEER_CLOSED, "%s (%s)", TE_KIND(s), s->reason);
    cr_assert(te_run_proc(&P, 5000));
    cr_expect_str_eq(s->info.version, strcmp(vflag, "-tls1_2") == 0 ? "TLSv1.2" : "TLSv1.3");
}

Test(tls_interop, s_client_tls12) { s_client_exchange("-tls1_2"); }
Test(tls_interop, s_client_tls13) { s_client_exchange("-tls1_3"); }

Test(tls_interop, s_client_alpn)
{
    TE.srv_plan = (te_plan_t){.send = 10};
    te_listen(te_server_ctx(&TE.certs.server, NULL, false, "h2,http/1.1", 0), NULL);
    char connect[32];
    snprintf(connect, sizeof(connect), "127.0.0.1:%u", TE.port);
    te_peer(&P, TE_OPENSSL, "s_client", "s_client", "-connect", connect, "-CAfile", CA,
            "-servername", "localhost", "-alpn", "h2", NULL);
    cr_assert(te_run_srv_closes(0, 1));
    uint64_t end = th_now_ms() + 10000;
    while (strstr(th_proc_output(&P), "ALPN protocol") == NULL) {
        cr_assert_lt(th_now_ms(), end, "%s", th_proc_output(&P));
        te_run_idle(10);
    }
    th_proc_close_stdin(&P);
    cr_assert(te_run_srv_closes(1, 10000));
    cr_expect(strstr(th_proc_output(&P), "ALPN protocol: h2") != NULL, "%s", th_proc_output(&P));
    cr_expect_str_eq(te_srv_rec(0)->info.alpn, "h2");
}

/* -sess_out, then -sess_in: s_client says "Reused", tether says resumed. */
static void s_client_resume(const char *vflag)
{
    char connect[32], sess[512];
    TE.srv_plan = (te_plan_t){.send = 6};
    te_listen(te_srv_ctx(), NULL);
    snprintf(connect, sizeof(connect), "127.0.0.1:%u", TE.port);
    snprintf(sess, sizeof(sess), "%s/session.pem", TE.certs.dir);
    th_proc_t *ps[2] = {&P, &Q};
    for (int i = 0; i < 2; i++) {
        te_peer(ps[i], TE_OPENSSL, i == 0 ? "s_client1" : "s_client2", "s_client", "-connect",
                connect, "-CAfile", CA, "-servername", "localhost", vflag,
                i == 0 ? "-sess_out" : "-sess_in", sess, NULL);
        /* The data comes after the TLS 1.3 ticket: once it is here, so is the ticket. */
        uint64_t end = th_now_ms() + 10000;
        while (te_srv_rec(i) == NULL || te_srv_rec(i)->sent < 6 ||
               strstr(th_proc_output(ps[i]), "---") == NULL) {
            cr_assert_lt(th_now_ms(), end, "%s", th_proc_output(ps[i]));
            te_run_idle(20);
        }
        te_run_idle(200);
        th_proc_close_stdin(ps[i]);
        cr_assert(te_run_srv_closes(i + 1, 10000));
        cr_assert(te_run_proc(ps[i], 5000));
    }
    cr_expect(strstr(th_proc_output(&Q), "Reused,") != NULL, "s_client: %s", th_proc_output(&Q));
    cr_expect(!te_srv_rec(0)->info.resumed);
    cr_expect(te_srv_rec(1)->info.resumed, "tether saw s_client resume");
}

Test(tls_interop, s_client_resumption_tls12) { s_client_resume("-tls1_2"); }
Test(tls_interop, s_client_resumption_tls13) { s_client_resume("-tls1_3"); }

/* tether -> s_server: what tether sends comes out of s_server's stdout; what
 * goes into s_server's stdin reaches tether. */
static void s_server_exchange(const char *vflag)
{
    const size_t up = 50000, down = 30000;
    char port[16], accept[32];
    te_port(port, sizeof(port));
    snprintf(accept, sizeof(accept), "127.0.0.1:%s", port);
    te_peer(&P, TE_OPENSSL, "s_server", "s_server", "-accept", accept, "-cert",
            TE.certs.server.cert, "-key", TE.certs.server.key, "-naccept", "1", "-quiet",
            vflag, NULL);
    cr_assert(th_wait_listening((uint16_t)atoi(port), 5000), "%s", th_proc_stderr(&P));
    te_plan_t p = {.send = up, .check_pattern = true, .end_after_got = down};
    te_rec_t *c = te_connect((uint16_t)atoi(port), te_cli_ctx(), "localhost", &p, 0);
    cr_assert(te_run_open(c, 5000), "%s (%s)", TE_KIND(c), c->reason);
    unsigned char *buf = malloc(down);
    th_pattern(buf, down, 0);
    th_proc_write(&P, buf, down);
    free(buf);
    cr_assert(te_run_got(c, down, 10000), "got %llu", (unsigned long long)c->got);
    cr_expect_eq(c->bad_at, -1);
    size_t len = 0;
    uint64_t end = th_now_ms() + 10000;
    while (th_proc_output_len(&P, &len), len < up) {
        cr_assert_lt(th_now_ms(), end, "s_server printed %zu of %zu", len, up);
        te_run_idle(10);
    }
    const char *out = th_proc_output_len(&P, &len);
    cr_expect_eq(th_pattern_check(out, up, 0), -1, "s_server got the pattern");
    /* tether's close_notify ends s_server's session; it answers with its own. */
    cr_assert(te_run_cli_closes(1, 10000));
    cr_expect_eq(c->close.kind, TT_CLOSE_LOCAL_END, "%s (%s)", TE_KIND(c), c->reason);
    cr_expect_str_eq(c->info.version, strcmp(vflag, "-tls1_2") == 0 ? "TLSv1.2" : "TLSv1.3");
    th_proc_stop(&P);
}

Test(tls_interop, s_server_tls12) { s_server_exchange("-tls1_2"); }
Test(tls_interop, s_server_tls13) { s_server_exchange("-tls1_3"); }
