/* Connecting: refused, sends queued while connecting, IPv6, a bound local address,
 * destroy while connecting, argument checks, and no callback inside tt_connect. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

typedef struct rec {
    int opens, ends, errors, closes;
    int error_arg;
    char log[8];
    size_t nlog;
    tt_close_info_t info;
    uint64_t got;
    long bad_at;
    bool check_pattern;
    tt_addr_t peer_at_open;
    tt_conn_t *conn;
} rec_t;

static rec_t cli = {.bad_at = -1}, srv = {.bad_at = -1};
static tt_loop_t *loop;
static tt_server_t *server;

static void note(rec_t *r, char ev)
{
    if (r->nlog < sizeof(r->log) - 1)
        r->log[r->nlog++] = ev;
}

static void on_open(tt_conn_t *c)
{
    rec_t *r = tt_conn_get_data(c);
    if (r == NULL) { /* accepted: user data starts NULL */
        r = &srv;
        tt_conn_set_data(c, r);
        tt_conn_peer_addr(c, &r->peer_at_open);
    }
    r->opens++;
    r->conn = c;
    note(r, 'O');
}
static void on_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    rec_t *r = tt_conn_get_data(c);
    (void)pending;
    if (r->check_pattern && r->bad_at < 0) {
        long bad = th_pattern_check(d, n, r->got);
        if (bad >= 0)
            r->bad_at = (long)r->got + bad;
    }
    r->got += n;
}
static void on_end(tt_conn_t *c)
{
    rec_t *r = tt_conn_get_data(c);
    r->ends++;
    note(r, 'N');
}
static void on_error(tt_conn_t *c, int err)
{
    rec_t *r = tt_conn_get_data(c);
    r->errors++;
    r->error_arg = err;
    note(r, 'E');
}
static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    rec_t *r = tt_conn_get_data(c);
    r->closes++;
    r->info = *info;
    r->conn = NULL;
    note(r, 'C');
    if (r == &srv && server != NULL) {
        tt_server_close(server);
        server = NULL;
    }
}

static const tt_conn_handlers_t H = {.on_open = on_open, .on_data = on_data, .on_end = on_end,
                                     .on_error = on_error, .on_close = on_close};

static tt_addr_t start_server(const char *host)
{
    tt_addr_t any, addr;
    cr_assert_eq(tt_addr_parse(&any, host, 0), 0);
    int r = tt_server_listen(loop, &any, NULL, &H, NULL, &server);
    cr_assert_eq(r, 0, "listen on %s: %s", host, tt_strerror(r));
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    return addr;
}

/* ---- refused -------------------------------------------------------------------- */

Test(connect, refused_closes_once_with_connect_failed_and_never_opens)
{
    tt_conn_t *c;
    tt_addr_t addr = th_loopback(th_unused_port());
    cr_assert_neq(tt_addr_port(&addr), 0);
    cr_assert_eq(tt_loop_init(&loop), 0);

    cr_assert_eq(tt_connect(loop, &addr, NULL, &H, &cli, &c), 0);
    cr_expect_eq(cli.nlog, 0, "a callback ran inside tt_connect: %s", cli.log);
    cr_expect_eq(tt_conn_state(c), TT_STATE_CONNECTING, "state %s",
                 tt_conn_state_name(tt_conn_state(c)));
    cr_expect_eq(tt_send(c, "queued", 6), 0, "send while connecting");
    th_run(loop, 5000);

    cr_expect_eq(cli.opens, 0);
    cr_expect_eq(cli.closes, 1, "closes %d", cli.closes);
    cr_expect_eq(cli.info.kind, TT_CLOSE_CONNECT_FAILED, "kind '%s'",
                 tt_close_kind_name(cli.info.kind));
    cr_expect_eq(cli.info.error, -ECONNREFUSED, "error %s", tt_err_name(cli.info.error));
    cr_expect_str_eq(cli.log, "EC", "events %s", cli.log);
    cr_expect_eq(cli.error_arg, -ECONNREFUSED);
    cr_expect_eq(cli.info.bytes_queued, 6);
    cr_expect_eq(cli.info.bytes_written, 0);
    cr_expect_eq(cli.info.bytes_unsent, 6);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- sends while connecting --------------------------------------------------- */

#define BULK ((size_t)1 << 20)

static void free_counted(void *buf, void *arg)
{
    (*(int *)arg)++;
    free(buf);
}

Test(connect, sends_queued_while_connecting_are_delivered_after_open)
{
    tt_conn_t *c;
    static char big[BULK];
    int frees = 0;
    size_t hdr = 3 + 4 + 5;

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_addr_t addr = start_server("127.0.0.1");
    srv.check_pattern = true;

    cr_assert_eq(tt_connect(loop, &addr, NULL, &H, &cli, &c), 0);
    cr_assert_eq(tt_conn_state(c), TT_STATE_CONNECTING);
    /* The pattern's first 12 bytes in three different kinds of send. */
    th_pattern(big, BULK, 0);
    char *owned = malloc(5);
    memcpy(owned, big + 7, 5);
    struct iovec iov[2] = {{big + 3, 2}, {big + 5, 2}};
    cr_assert_eq(tt_send(c, big, 3), 0);
    cr_assert_eq(tt_sendv(c, iov, 2), 0);
    cr_assert_eq(tt_send_owned(c, owned, 5, free_counted, &frees), 0);
    th_pattern(big, BULK, hdr);
    cr_assert_eq(tt_send(c, big, BULK), TT_SEND_FULL);
    cr_assert_eq(tt_end(c, NULL, 0), 0);
    cr_expect_eq(tt_conn_queued_bytes(c), hdr + BULK);
    cr_expect_eq(tt_conn_written_bytes(c), 0);
    cr_expect_eq(cli.nlog, 0, "callback inside an API call: %s", cli.log);
    th_run(loop, 10000);

    cr_expect_eq(srv.got, hdr + BULK, "server got %llu", (unsigned long long)srv.got);
    cr_expect_eq(srv.bad_at, -1, "stream broken at %ld", srv.bad_at);
    cr_expect_eq(frees, 1);
    cr_expect_str_eq(cli.log, "ONC", "client events %s", cli.log);
    cr_expect_eq(cli.info.kind, TT_CLOSE_LOCAL_END, "kind '%s'",
                 tt_close_kind_name(cli.info.kind));
    cr_expect_eq(cli.info.bytes_written, hdr + BULK);
    cr_expect_eq(srv.info.kind, TT_CLOSE_PEER_CLOSED);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- IPv6, bound local address --------------------------------------------------- */

static void end_at_open(tt_conn_t *c)
{
    on_open(c);
    cr_assert_eq(tt_end(c, "v6", 2), 0);
}

Test(connect, ipv6_loopback_connects_and_exchanges_data)
{
    tt_conn_t *c;
    tt_conn_handlers_t ch = H;
    char text[TT_ADDR_STRLEN];
    ch.on_open = end_at_open;

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_addr_t addr = start_server("::1");
    cr_assert_eq(addr.u.sa.sa_family, AF_INET6);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, &cli, &c), 0);
    th_run(loop, 5000);

    cr_expect_eq(cli.opens, 1);
    cr_expect_eq(srv.got, 2);
    cr_expect_eq(srv.peer_at_open.u.sa.sa_family, AF_INET6);
    cr_assert_gt(tt_addr_format_host(&srv.peer_at_open, text, sizeof(text)), 0);
    cr_expect_str_eq(text, "::1");
    cr_expect_eq(cli.info.kind, TT_CLOSE_LOCAL_END);
    cr_expect_eq(srv.info.kind, TT_CLOSE_PEER_CLOSED);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(connect, bind_addr_sets_the_local_address_the_server_sees)
{
    tt_conn_t *c;
    tt_conn_handlers_t ch = H;
    tt_addr_t local = th_loopback(th_unused_port());
    tt_addr_t seen;
    ch.on_open = end_at_open;

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_addr_t addr = start_server("127.0.0.1");
    tt_connect_opts_t o = {.bind_addr = &local};
    cr_assert_eq(tt_connect(loop, &addr, &o, &ch, &cli, &c), 0);
    cr_assert_eq(tt_conn_local_addr(c, &seen), 0);
    cr_expect_eq(tt_addr_port(&seen), tt_addr_port(&local));
    th_run(loop, 5000);

    cr_expect_eq(cli.opens, 1);
    cr_expect_eq(tt_addr_port(&srv.peer_at_open), tt_addr_port(&local),
                 "server saw port %u, bound %u", tt_addr_port(&srv.peer_at_open),
                 tt_addr_port(&local));
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- destroy while connecting; bad arguments ------------------------------------ */

Test(connect, destroy_while_connecting_closes_once_without_open)
{
    tt_conn_t *c;
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_addr_t addr = start_server("127.0.0.1");

    cr_assert_eq(tt_connect(loop, &addr, NULL, &H, &cli, &c), 0);
    cr_assert_eq(tt_send(c, "never", 5), 0);
    cr_assert_eq(tt_destroy(c, 0), 0);
    cr_assert_eq(tt_destroy(c, 0), 0);
    cr_expect_eq(cli.nlog, 0, "callback inside tt_destroy: %s", cli.log);
    cr_assert_eq(tt_server_close(server), 0);
    server = NULL;
    th_run(loop, 5000);

    cr_expect_str_eq(cli.log, "C", "client events %s", cli.log);
    cr_expect_eq(cli.info.kind, TT_CLOSE_LOCAL_DESTROY, "kind '%s'",
                 tt_close_kind_name(cli.info.kind));
    cr_expect_eq(cli.info.error, 0);
    cr_expect_eq(cli.info.bytes_unsent, 5);
    cr_expect_eq(cli.info.bytes_written, 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(connect, bad_arguments_are_refused_and_create_nothing)
{
    tt_conn_t *c = (tt_conn_t *)0x1;
    tt_addr_t addr = th_loopback(9), unspec = {0}, v6;
    tt_connect_opts_t too_long = {.timeout_ms = TT_TIMEOUT_MAX + 1};
    tt_connect_opts_t wrong_family = {.bind_addr = &v6};
    cr_assert_eq(tt_addr_parse(&v6, "::1", 0), 0);
    cr_assert_eq(tt_loop_init(&loop), 0);

    cr_expect_eq(tt_connect(NULL, &addr, NULL, &H, NULL, &c), -EINVAL);
    cr_expect_eq(tt_connect(loop, NULL, NULL, &H, NULL, &c), -EINVAL);
    cr_expect_eq(tt_connect(loop, &addr, NULL, &H, NULL, NULL), -EINVAL);
    cr_expect_eq(tt_connect(loop, &unspec, NULL, &H, NULL, &c), -EINVAL);
    unspec.len = sizeof(unspec.u.sa);
    unspec.u.sa.sa_family = AF_PACKET;
    cr_expect_eq(tt_connect(loop, &unspec, NULL, &H, NULL, &c), -EAFNOSUPPORT);
    cr_expect_eq(tt_connect(loop, &addr, &too_long, &H, NULL, &c), -EINVAL);
    cr_expect_eq(tt_connect(loop, &addr, &wrong_family, &H, NULL, &c), -EINVAL);
    cr_expect_eq(c, (tt_conn_t *)0x1, "*out written by a failed call");
    cr_expect_eq(tt_loop_handle_count(loop), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}
