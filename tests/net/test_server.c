/* Servers: IPv6 and dual-stack listening, port 0, SO_REUSEADDR after close, bind
 * errors, argument checks, and closing the server under live connections. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

typedef struct rec {
    int opens, ends, closes;
    uint64_t got;
    char head[64];
    tt_addr_t peer;
    tt_close_info_t info;
} rec_t;

#define MAXC 4
static rec_t conns[MAXC];
static int nconns, closes_total, close_server_after = 1;
static tt_loop_t *loop;
static tt_server_t *server;
static bool echo;

static void on_open(tt_conn_t *c)
{
    rec_t *r = &conns[nconns < MAXC ? nconns : MAXC - 1];
    nconns++;
    tt_conn_set_data(c, r);
    r->opens++;
    tt_conn_peer_addr(c, &r->peer);
}
static void on_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    rec_t *r = tt_conn_get_data(c);
    (void)pending;
    if (r->got < sizeof(r->head))
        memcpy(r->head + r->got, d,
               n < sizeof(r->head) - r->got ? n : sizeof(r->head) - (size_t)r->got);
    r->got += n;
    if (echo)
        cr_assert_eq(tt_send(c, d, n), 0);
}
static void on_end(tt_conn_t *c)
{
    rec_t *r = tt_conn_get_data(c);
    r->ends++;
}
static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    rec_t *r = tt_conn_get_data(c);
    r->closes++;
    r->info = *info;
    closes_total++;
    if (closes_total == close_server_after && server != NULL) {
        tt_server_close(server);
        server = NULL;
    }
}

static const tt_conn_handlers_t H = {.on_open = on_open, .on_data = on_data, .on_end = on_end,
                                     .on_close = on_close};

static int listen_on(const char *hostport, const tt_server_opts_t *o, tt_addr_t *bound)
{
    tt_addr_t a;
    cr_assert_eq(tt_addr_parse_hostport(&a, hostport), 0, "parse %s", hostport);
    int r = tt_server_listen(loop, &a, o, &H, NULL, &server);
    if (r == 0 && bound != NULL)
        cr_assert_eq(tt_server_addr(server, bound), 0);
    return r;
}

/* A blocking client: connect, send `msg`, shut down writing, read to EOF, close.
 * Returns what it read back (the servers here echo or send nothing). */
static int plain_client(const char *host, uint16_t port, const char *msg)
{
    tt_addr_t a;
    cr_assert_eq(tt_addr_parse(&a, host, port), 0);
    int fd = socket(a.u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    if (connect(fd, &a.u.sa, a.len) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    cr_assert_eq(send(fd, msg, strlen(msg), 0), (ssize_t)strlen(msg));
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    return fd;
}

static const char *host_of(const tt_addr_t *a, char *buf)
{
    if (tt_addr_format_host(a, buf, TT_ADDR_STRLEN) < 0)
        strcpy(buf, "?");
    return buf;
}

/* ---- IPv6 and dual stack ------------------------------------------------------ */

Test(server, ipv6_loopback_listens_and_accepts)
{
    tt_addr_t bound;
    char h[TT_ADDR_STRLEN];
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(listen_on("[::1]:0", NULL, &bound), 0);
    cr_expect_eq(bound.u.sa.sa_family, AF_INET6);
    cr_expect_str_eq(host_of(&bound, h), "::1");
    cr_assert_neq(tt_addr_port(&bound), 0, "port 0 was not replaced by the chosen port");

    int fd = plain_client("::1", tt_addr_port(&bound), "six");
    cr_assert_geq(fd, 0, "connect to [::1]: %s", tt_strerror(fd));
    th_run(loop, 5000);
    close(fd);

    cr_expect_eq(nconns, 1);
    cr_expect_eq(conns[0].got, 3);
    cr_expect_eq(memcmp(conns[0].head, "six", 3), 0);
    cr_expect_str_eq(host_of(&conns[0].peer, h), "::1");
    cr_expect_eq(conns[0].info.kind, TT_CLOSE_PEER_CLOSED);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(server, dual_stack_wildcard_accepts_ipv4_and_ipv6_clients)
{
    tt_addr_t bound;
    char h[TT_ADDR_STRLEN];
    close_server_after = 2;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(listen_on(":0", NULL, &bound), 0);
    cr_expect_eq(bound.u.sa.sa_family, AF_INET6);
    uint16_t port = tt_addr_port(&bound);
    cr_assert_neq(port, 0);

    int fd4 = plain_client("127.0.0.1", port, "four");
    cr_assert_geq(fd4, 0, "IPv4 client refused by a dual-stack listener: %s",
                  tt_strerror(fd4));
    int fd6 = plain_client("::1", port, "six");
    cr_assert_geq(fd6, 0, "IPv6 client: %s", tt_strerror(fd6));
    th_run(loop, 5000);
    close(fd4);
    close(fd6);

    cr_expect_eq(nconns, 2);
    /* Accept order follows connect order on loopback. */
    cr_expect_eq(conns[0].got, 4);
    cr_expect_eq(memcmp(conns[0].head, "four", 4), 0);
    cr_expect_str_eq(host_of(&conns[0].peer, h), "::ffff:127.0.0.1");
    cr_expect_eq(conns[1].got, 3);
    cr_expect_str_eq(host_of(&conns[1].peer, h), "::1");
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(server, v6only_wildcard_refuses_ipv4_clients)
{
    tt_addr_t bound;
    tt_server_opts_t o = {.v6only = true};
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(listen_on(":0", &o, &bound), 0);
    uint16_t port = tt_addr_port(&bound);

    int fd4 = plain_client("127.0.0.1", port, "four");
    cr_expect_eq(fd4, -ECONNREFUSED, "IPv4 client to a v6-only listener: %d", fd4);
    if (fd4 >= 0)
        close(fd4);
    int fd6 = plain_client("::1", port, "six");
    cr_assert_geq(fd6, 0);
    th_run(loop, 5000);
    close(fd6);
    cr_expect_eq(nconns, 1);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- port reuse ---------------------------------------------------------------- */

/* The server closes first, so its side of the connection sits in TIME_WAIT on the
 * listening port when the server is closed and listens again at once. */
static void destroy_at_open(tt_conn_t *c)
{
    on_open(c);
    cr_assert_eq(tt_destroy(c, 0), 0);
}

static int relisten_after_time_wait(bool no_reuseaddr)
{
    tt_addr_t bound;
    tt_server_opts_t o = {.no_reuseaddr = no_reuseaddr};
    tt_conn_handlers_t h = H;
    char hp[32];
    char buf[8];
    h.on_open = destroy_at_open;

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_addr_t a = th_loopback(0);
    cr_assert_eq(tt_server_listen(loop, &a, &o, &h, NULL, &server), 0);
    cr_assert_eq(tt_server_addr(server, &bound), 0);
    /* The client neither sends (unread bytes would turn the server's FIN into a
     * RST, which skips TIME_WAIT) nor ends first (then TIME_WAIT is its own). */
    int fd = th_tcp_connect_blocking(&bound);
    th_run(loop, 5000); /* the server's connection is gone, the server too */
    cr_assert_eq(recv(fd, buf, sizeof(buf), 0), 0, "client saw no FIN");
    close(fd);
    cr_assert_eq(conns[0].closes, 1);
    cr_assert_null(server);

    snprintf(hp, sizeof(hp), "127.0.0.1:%u", tt_addr_port(&bound));
    int r = listen_on(hp, &o, NULL);
    if (r == 0) {
        cr_assert_eq(tt_server_close(server), 0);
        server = NULL;
    }
    th_run(loop, 1000);
    cr_assert_eq(tt_loop_close(loop), 0);
    return r;
}

Test(server, reuseaddr_by_default_allows_listening_again_at_once)
{
    int r = relisten_after_time_wait(false);
    cr_expect_eq(r, 0, "listen again on the same port: %s", tt_strerror(r));
}

Test(server, without_reuseaddr_time_wait_blocks_the_port)
{
    /* The control for the test above: the TIME_WAIT really is there. */
    int r = relisten_after_time_wait(true);
    cr_expect_eq(r, -EADDRINUSE, "listen again without SO_REUSEADDR: %s", tt_strerror(r));
}

/* ---- errors ---------------------------------------------------------------------- */

Test(server, port_held_by_another_listener_gives_eaddrinuse_and_no_server)
{
    tt_addr_t taken;
    tt_server_t *s = (tt_server_t *)0x1;
    int fd = th_tcp_listen_blocking(&taken);
    cr_assert_eq(tt_loop_init(&loop), 0);

    int r = tt_server_listen(loop, &taken, NULL, &H, NULL, &s);
    cr_expect_eq(r, -EADDRINUSE, "listen on a taken port: %s", tt_strerror(r));
    cr_expect_eq(s, (tt_server_t *)0x1, "*out written by a failed listen");
    cr_expect_eq(tt_loop_handle_count(loop), 0);
    close(fd);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(server, bad_arguments_return_einval_and_change_nothing)
{
    tt_addr_t a = th_loopback(0), unspec = {0}, other_addr = {0};
    tt_server_t *s = (tt_server_t *)0x1;
    tt_server_opts_t neg_backlog = {.backlog = -1};
    tt_server_opts_t cap_below_hwm = {.high_water = 1 << 20, .queue_cap = 1 << 10};
    other_addr.len = sizeof(other_addr.u.sa);
    other_addr.u.sa.sa_family = AF_PACKET;
    cr_assert_eq(tt_loop_init(&loop), 0);
    int fds_before = th_fd_count();

    cr_expect_eq(tt_server_listen(NULL, &a, NULL, &H, NULL, &s), -EINVAL);
    cr_expect_eq(tt_server_listen(loop, NULL, NULL, &H, NULL, &s), -EINVAL);
    cr_expect_eq(tt_server_listen(loop, &a, NULL, &H, NULL, NULL), -EINVAL);
    cr_expect_eq(tt_server_listen(loop, &unspec, NULL, &H, NULL, &s), -EINVAL);
    cr_expect_eq(tt_server_listen(loop, &other_addr, NULL, &H, NULL, &s), -EINVAL);
    cr_expect_eq(tt_server_listen(loop, &a, &neg_backlog, &H, NULL, &s), -EINVAL);
    cr_expect_eq(tt_server_listen(loop, &a, &cap_below_hwm, &H, NULL, &s), -EINVAL);
    cr_expect_eq(s, (tt_server_t *)0x1, "*out written by a failed listen");
    cr_expect_eq(tt_loop_handle_count(loop), 0);
    cr_expect_eq(th_fd_count(), fds_before, "a failed listen leaked a descriptor");
    cr_expect_eq(tt_server_close(NULL), -EINVAL);
    cr_expect_eq(tt_server_addr(NULL, &a), -EINVAL);
    cr_expect_eq(tt_server_conn_count(NULL), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- closing the server under live connections ------------------------------- */

typedef struct cli {
    int opens, closes;
    uint64_t got;
    tt_close_info_t info;
} cli_t;

static cli_t cl[2];
static tt_conn_t *clc[2];
static int closed_server_r = 1;
static int server_of_after_close = 0;

/* Once both connections are accepted and open on both sides, close the server
 * under them and only then send through them. */
static void maybe_close_server(void)
{
    if (server == NULL || cl[0].opens + cl[1].opens < 2 || nconns < 2)
        return;
    closed_server_r = tt_server_close(server);
    server = NULL;
    for (int i = 0; i < 2; i++)
        cr_assert_eq(tt_send(clc[i], "after close", 11), 0);
}

static void cli_open(tt_conn_t *c)
{
    cli_t *r = tt_conn_get_data(c);
    r->opens++;
    maybe_close_server();
}
static void cli_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    cli_t *r = tt_conn_get_data(c);
    (void)d, (void)pending;
    r->got += n;
    if (r->got == 11)
        cr_assert_eq(tt_end(c, NULL, 0), 0);
}
static void cli_close(tt_conn_t *c, const tt_close_info_t *info)
{
    cli_t *r = tt_conn_get_data(c);
    r->closes++;
    r->info = *info;
}

static tt_conn_t *srv_conns[2];
static void srv_open_keep(tt_conn_t *c)
{
    srv_conns[nconns] = c;
    on_open(c);
    maybe_close_server();
}
static void srv_data_check(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    if (tt_conn_server(c) != NULL)
        server_of_after_close++;
    on_data(c, d, n, pending);
}

Test(server, close_with_live_connections_leaves_them_working)
{
    tt_addr_t bound;
    tt_conn_handlers_t sh = H, ch = {.on_open = cli_open, .on_data = cli_data,
                                     .on_close = cli_close};
    sh.on_open = srv_open_keep;
    sh.on_data = srv_data_check;
    echo = true;
    close_server_after = 0; /* the test closes it */
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_addr_t a = th_loopback(0);
    cr_assert_eq(tt_server_listen(loop, &a, NULL, &sh, NULL, &server), 0);
    cr_assert_eq(tt_server_addr(server, &bound), 0);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(tt_connect(loop, &bound, NULL, &ch, &cl[i], &clc[i]), 0);
    th_run(loop, 5000);

    cr_expect_eq(closed_server_r, 0, "tt_server_close: %d", closed_server_r);
    cr_expect_eq(server_of_after_close, 0, "a connection still points at its closed server");
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(cl[i].got, 11, "client %d got %llu after the server closed", i,
                     (unsigned long long)cl[i].got);
        cr_expect_eq(cl[i].closes, 1);
        cr_expect_eq(cl[i].info.kind, TT_CLOSE_LOCAL_END, "client %d kind '%s'", i,
                     tt_close_kind_name(cl[i].info.kind));
        cr_expect_eq(conns[i].got, 11);
        cr_expect_eq(conns[i].info.kind, TT_CLOSE_PEER_CLOSED);
    }
    /* The port is free again: nothing listens there any more. */
    int fd = plain_client("127.0.0.1", tt_addr_port(&bound), "late");
    cr_expect_eq(fd, -ECONNREFUSED, "connect after server close: %d", fd);
    cr_assert_eq(tt_loop_close(loop), 0);
}
