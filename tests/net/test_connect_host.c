/* Connecting to a host name: lookup errors in the close reason, queued sends,
 * destroy while resolving, the overall timeout, and binding the local side. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "dnsmasq.h"
#include "harness.h"
#include "core/loop.h"

static th_dns_t dns;
static int silent_fd = -1;

static void stop_servers(void)
{
    th_dns_stop(&dns);
    if (silent_fd >= 0)
        close(silent_fd);
    silent_fd = -1;
}

TestSuite(connect_host, .fini = stop_servers);

static void start_dns(tt_loop_t *loop)
{
    static const char *const records[] = {"--host-record=v4.test,127.0.0.1",
                                          "--host-record=both.test,127.0.0.1,::1", NULL};
    int r = th_dns_start(&dns, records);
    if (r == -ENOENT)
        cr_skip_test("dnsmasq is not installed (/usr/sbin/dnsmasq)");
    cr_assert_eq(r, 0, "dnsmasq did not start: %s", strerror(-r));
    tt_resolver_opts_t o = {.servers = dns.servers, .timeout_ms = 1000, .tries = 2};
    cr_assert_eq(tt_loop_set_resolver(loop, &o), 0);
}

typedef struct {
    int opens, closes, errors;
    tt_close_info_t info;
    char got[64];
    size_t ngot;
    tt_addr_t peer;
    uint64_t closed_at;
} side_t;

static side_t cli, srv;
static tt_server_t *server;

static void cli_open(tt_conn_t *c)
{
    cli.opens++;
    cr_assert_eq(tt_conn_peer_addr(c, &cli.peer), 0);
    cr_assert_geq(tt_conn_fd(c), 0);
}
static void cli_error(tt_conn_t *c, int err)
{
    (void)c, (void)err;
    cli.errors++;
}
static void cli_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    cli.closes++;
    cli.info = *info;
    cli.closed_at = th_now_ms();
}
static void srv_open(tt_conn_t *c)
{
    srv.opens++;
    cr_assert_eq(tt_conn_peer_addr(c, &srv.peer), 0);
}
static void srv_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)pending;
    memcpy(srv.got + srv.ngot, d, n);
    srv.ngot += n;
    if (srv.ngot == 5) {
        tt_destroy(c, 0);
        tt_server_close(server);
    }
}

static const tt_conn_handlers_t ch = {.on_open = cli_open, .on_error = cli_error,
                                      .on_close = cli_close};
static const tt_conn_handlers_t sh = {.on_open = srv_open, .on_data = srv_data};

Test(connect_host, name_connects_and_sends_what_was_queued_before_open)
{
    tt_loop_t *loop;
    tt_conn_t *c;
    tt_addr_t addr;

    cr_assert_eq(tt_loop_init(&loop), 0);
    start_dns(loop);
    server = th_listen(loop, &sh, NULL, &addr);
    cr_assert_eq(tt_connect_host(loop, "v4.test", tt_addr_port(&addr), NULL, &ch, NULL, &c), 0);
    cr_assert_eq(tt_conn_state(c), TT_STATE_CONNECTING);
    cr_assert_eq(tt_conn_fd(c), -1, "no socket before an attempt wins");
    cr_assert_eq(tt_send_text(c, "hello"), 0);
    th_run(loop, 5000);
    cr_assert_eq(cli.opens, 1);
    cr_assert_eq(srv.ngot, 5, "server got %zu bytes", srv.ngot);
    cr_assert_eq(memcmp(srv.got, "hello", 5), 0);
    cr_assert_eq(cli.closes, 1, "closes %d", cli.closes);
    cr_assert_eq(cli.info.kind, TT_CLOSE_PEER_CLOSED, "kind %s", tt_close_kind_name(cli.info.kind));
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(connect_host, unknown_name_closes_once_with_not_found)
{
    tt_loop_t *loop;
    tt_conn_t *c;

    cr_assert_eq(tt_loop_init(&loop), 0);
    start_dns(loop);
    cr_assert_eq(tt_connect_host(loop, "missing.test", 80, NULL, &ch, NULL, &c), 0);
    cr_assert_eq(tt_send_text(c, "queued"), 0);
    th_run(loop, 5000);
    cr_assert_eq(cli.opens, 0);
    cr_assert_eq(cli.errors, 1);
    cr_assert_eq(cli.closes, 1, "closes %d", cli.closes);
    cr_assert_eq(cli.info.kind, TT_CLOSE_CONNECT_FAILED, "kind %s",
                 tt_close_kind_name(cli.info.kind));
    cr_assert_eq(cli.info.error, TT_ENOTFOUND, "error %s", tt_err_name(cli.info.error));
    cr_assert_eq(cli.info.bytes_unsent, 6, "unsent %llu", (unsigned long long)cli.info.bytes_unsent);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(connect_host, silent_dns_closes_with_dns_timeout)
{
    tt_loop_t *loop;
    tt_conn_t *c;
    uint16_t port;
    char servers[32];

    silent_fd = th_dns_silent(&port, servers, sizeof(servers));
    cr_assert_geq(silent_fd, 0);
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_resolver_opts_t o = {.servers = servers, .timeout_ms = 100, .tries = 1};
    cr_assert_eq(tt_loop_set_resolver(loop, &o), 0);
    cr_assert_eq(tt_connect_host(loop, "slow.test", 80, NULL, &ch, NULL, &c), 0);
    th_run(loop, 5000);
    cr_assert_eq(cli.closes, 1);
    cr_assert_eq(cli.info.kind, TT_CLOSE_CONNECT_FAILED);
    cr_assert_eq(cli.info.error, TT_EDNSTIMEOUT, "error %s", tt_err_name(cli.info.error));
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(connect_host, overall_timeout_covers_the_lookup)
{
    tt_loop_t *loop;
    tt_conn_t *c;
    uint16_t port;
    char servers[32];

    silent_fd = th_dns_silent(&port, servers, sizeof(servers));
    cr_assert_geq(silent_fd, 0);
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_resolver_opts_t o = {.servers = servers, .timeout_ms = 5000, .tries = 3};
    cr_assert_eq(tt_loop_set_resolver(loop, &o), 0);
    tt_connect_opts_t co = {.timeout_ms = 300};
    uint64_t t0 = th_now_ms();
    cr_assert_eq(tt_connect_host(loop, "slow.test", 80, &co, &ch, NULL, &c), 0);
    th_run(loop, 3000);
    uint64_t took = cli.closed_at - t0;
    cr_assert_eq(cli.closes, 1);
    cr_assert_eq(cli.info.kind, TT_CLOSE_CONNECT_TIMEOUT, "kind %s",
                 tt_close_kind_name(cli.info.kind));
    cr_assert_geq(took, 300, "closed after %llu ms", (unsigned long long)took);
    cr_assert_lt(took, 450, "closed after %llu ms", (unsigned long long)took);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(connect_host, destroy_while_resolving_cancels_the_lookup)
{
    tt_loop_t *loop;
    tt_conn_t *c;
    uint16_t port;
    char servers[32];

    silent_fd = th_dns_silent(&port, servers, sizeof(servers));
    cr_assert_geq(silent_fd, 0);
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_resolver_opts_t o = {.servers = servers, .timeout_ms = 5000, .tries = 3};
    cr_assert_eq(tt_loop_set_resolver(loop, &o), 0);
    cr_assert_eq(tt_connect_host(loop, "slow.test", 80, NULL, &ch, NULL, &c), 0);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    cr_assert_eq(tt_destroy(c, 0), 0);
    uint64_t t0 = th_now_ms();
    th_run(loop, 2000);
    cr_assert_lt(th_now_ms() - t0, 100, "the loop stayed busy %llu ms",
                 (unsigned long long)(th_now_ms() - t0));
    cr_assert_eq(cli.closes, 1);
    cr_assert_eq(cli.errors, 0);
    cr_assert_eq(cli.info.kind, TT_CLOSE_LOCAL_DESTROY);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(connect_host, every_address_refused_reports_the_errno)
{
    tt_loop_t *loop;
    tt_conn_t *c;
    tt_addr_t addr;

    cr_assert_eq(tt_loop_init(&loop), 0);
    start_dns(loop);
    /* A port that was free a moment ago: nobody listens on either family. */
    server = th_listen(loop, &sh, NULL, &addr);
    tt_server_close(server);
    cr_assert_eq(tt_connect_host(loop, "both.test", tt_addr_port(&addr), NULL, &ch, NULL, &c),
                 0);
    th_run(loop, 5000);
    cr_assert_eq(cli.opens, 0);
    cr_assert_eq(cli.closes, 1);
    cr_assert_eq(cli.info.kind, TT_CLOSE_CONNECT_FAILED);
    cr_assert_eq(cli.info.error, -ECONNREFUSED, "error %s", tt_err_name(cli.info.error));
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(connect_host, numeric_host_needs_no_resolver)
{
    tt_loop_t *loop;
    tt_conn_t *c;
    tt_addr_t addr;

    cr_assert_eq(tt_loop_init(&loop), 0);
    server = th_listen(loop, &sh, NULL, &addr);
    cr_assert_eq(tt_connect_host(loop, "127.0.0.1", tt_addr_port(&addr), NULL, &ch, NULL, &c),
                 0);
    cr_assert_eq(tt_send_text(c, "hello"), 0);
    th_run(loop, 5000);
    cr_assert_eq(cli.opens, 1);
    cr_assert_eq(srv.ngot, 5);
    cr_assert_null(loop->resolver);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(connect_host, local_side_bound_to_an_address_and_a_device)
{
    tt_loop_t *loop;
    tt_conn_t *c;
    tt_addr_t addr, local;
    char text[TT_ADDR_STRLEN];

    cr_assert_eq(tt_loop_init(&loop), 0);
    server = th_listen(loop, &sh, NULL, &addr);
    cr_assert_eq(tt_addr_parse(&local, "127.0.0.2", 0), 0);
    tt_connect_opts_t co = {.bind_addr = &local, .bind_device = "lo"};
    cr_assert_eq(tt_connect_host(loop, "localhost", tt_addr_port(&addr), &co, &ch, NULL, &c), 0);
    cr_assert_eq(tt_send_text(c, "hello"), 0);
    th_run(loop, 5000);
    cr_assert_eq(cli.opens, 1);
    cr_assert_eq(srv.opens, 1);
    tt_addr_format_host(&srv.peer, text, sizeof(text));
    cr_assert_str_eq(text, "127.0.0.2", "the server saw %s", text);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(connect_host, bad_local_options_are_refused_at_once)
{
    tt_loop_t *loop;
    tt_conn_t *c = NULL;
    tt_addr_t local;

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_addr_parse(&local, "127.0.0.2", 0), 0);
    tt_connect_opts_t dev = {.bind_device = "nosuchdev0"};
    cr_assert_eq(tt_connect_host(loop, "localhost", 80, &dev, &ch, NULL, &c), -ENODEV);
    tt_connect_opts_t fam = {.bind_addr = &local, .family = AF_INET6};
    cr_assert_eq(tt_connect_host(loop, "localhost", 80, &fam, &ch, NULL, &c), -EINVAL);
    tt_connect_opts_t badfam = {.family = AF_UNIX};
    cr_assert_eq(tt_connect_host(loop, "localhost", 80, &badfam, &ch, NULL, &c), -EINVAL);
    tt_addr_t any;
    cr_assert_eq(tt_addr_parse(&any, "127.0.0.1", 80), 0);
    cr_assert_eq(tt_connect(loop, &any, &dev, &ch, NULL, &c), -ENODEV);
    cr_assert_null(c);
    cr_assert_eq(tt_loop_handle_count(loop), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}
