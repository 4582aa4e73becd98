/* Connect timeout against a firewall that drops SYNs: two namespaces joined by a
 * veth pair, a listener in B, the client socket made in A. Without the drop rule the
 * same connect succeeds, so the timeout is the fault's doing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "netns.h"

static th_netns_t ns;

static void teardown(void) { th_netns_destroy(&ns); }

typedef struct rec {
    int opens, errors, closes;
    int error_arg;
    char log[8];
    size_t nlog;
    tt_close_info_t info;
    uint64_t closed_at;
} rec_t;

static void r_open(tt_conn_t *c)
{
    rec_t *r = tt_conn_get_data(c);
    r->opens++;
    r->log[r->nlog++] = 'O';
    tt_destroy(c, 0); /* connected: that is all the control needs */
}
static void r_error(tt_conn_t *c, int err)
{
    rec_t *r = tt_conn_get_data(c);
    r->errors++;
    r->error_arg = err;
    r->log[r->nlog++] = 'E';
}
static void r_close(tt_conn_t *c, const tt_close_info_t *info)
{
    rec_t *r = tt_conn_get_data(c);
    r->closes++;
    r->info = *info;
    r->closed_at = th_now_ms();
    r->log[r->nlog++] = 'C';
}

static const tt_conn_handlers_t H = {.on_open = r_open, .on_error = r_error,
                                     .on_close = r_close};

/* A listening plain socket inside namespace B, on an ephemeral port. */
static int listen_in_b(uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    tt_addr_t a;
    int saved = th_netns_enter(ns.ns_b);
    cr_assert_geq(saved, 0, "enter %s: %s", ns.ns_b, tt_strerror(saved));
    cr_assert_eq(tt_addr_parse(&a, ns.addr_b, 0), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, &a.u.sa, a.len), 0);
    cr_assert_eq(listen(fd, 8), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    cr_assert_eq(th_netns_leave(saved), 0);
    cr_assert_eq(tt_addr_from_sockaddr(&a, (struct sockaddr *)&ss, len), 0);
    *port = tt_addr_port(&a);
    return fd;
}

/* tt_connect with the socket created inside namespace A. */
static uint64_t connect_from_a(tt_loop_t *loop, uint16_t port, uint64_t timeout_ms, rec_t *r,
                               tt_conn_t **c)
{
    tt_addr_t to;
    tt_connect_opts_t o = {.timeout_ms = timeout_ms};
    cr_assert_eq(tt_addr_parse(&to, ns.addr_b, port), 0);
    int saved = th_netns_enter(ns.ns_a);
    cr_assert_geq(saved, 0);
    uint64_t t0 = th_now_ms();
    int err = tt_connect(loop, &to, &o, &H, r, c);
    cr_assert_eq(th_netns_leave(saved), 0);
    cr_assert_eq(err, 0, "tt_connect: %s", tt_strerror(err));
    return t0;
}

Test(connect_timeout, syn_dropped_by_firewall_times_out_in_300ms, .fini = teardown)
{
    tt_loop_t *loop;
    tt_conn_t *c;
    rec_t ctl = {0}, dropped = {0};
    uint16_t port;

    int err = th_netns_create(&ns);
    if (err < 0)
        cr_skip("cannot create network namespaces here (%s)", tt_strerror(err));
    cr_assert_eq(tt_loop_init(&loop), 0);
    int lfd = listen_in_b(&port);

    /* Control: no rule, the same connect succeeds (a longer timeout: this one only
     * has to show the path works). */
    connect_from_a(loop, port, 2000, &ctl, &c);
    th_run(loop, 3000);
    cr_assert_eq(ctl.opens, 1, "control connect did not open (events %s, %s): the namespaces "
                 "are broken, not the connect", ctl.log, tt_err_name(ctl.info.error));
    cr_assert_eq(ctl.info.kind, TT_CLOSE_LOCAL_DESTROY);

    /* Fault: SYNs to the port are dropped, nothing answers. */
    cr_assert_eq(th_netns_drop_tcp_port(ns.ns_b, port), 0, "nft rule failed");
    uint64_t t0 = connect_from_a(loop, port, 300, &dropped, &c);
    cr_assert_eq(tt_send(c, "queued while connecting", 23), 0);
    th_run(loop, 3000);
    uint64_t took = dropped.closed_at - t0;

    cr_expect_eq(dropped.opens, 0);
    cr_expect_eq(dropped.closes, 1);
    cr_expect_eq(dropped.info.kind, TT_CLOSE_CONNECT_TIMEOUT, "kind '%s' (%s)",
                 tt_close_kind_name(dropped.info.kind), tt_err_name(dropped.info.error));
    cr_expect_eq(dropped.info.error, -ETIMEDOUT, "error %s", tt_err_name(dropped.info.error));
    cr_expect_str_eq(dropped.log, "EC");
    cr_expect_eq(dropped.error_arg, -ETIMEDOUT);
    cr_expect(took >= 300 && took < 600, "timed out after %llu ms, expected [300, 600)",
              (unsigned long long)took);
    cr_expect_eq(dropped.info.bytes_unsent, 23);
    cr_expect_eq(dropped.info.bytes_written, 0);

    close(lfd);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* The same with the whole peer gone quiet (every packet dropped), and a loop whose
 * cached time has gone stale: the timeout still counts from the connect. */
Test(connect_timeout, peer_dropping_everything_times_out_from_the_connect_call,
     .fini = teardown)
{
    tt_loop_t *loop;
    tt_conn_t *c;
    rec_t dropped = {0};
    uint16_t port;

    int err = th_netns_create(&ns);
    if (err < 0)
        cr_skip("cannot create network namespaces here (%s)", tt_strerror(err));
    cr_assert_eq(tt_loop_init(&loop), 0);
    int lfd = listen_in_b(&port);
    cr_assert_eq(th_netns_drop_all(ns.ns_b), 0, "nft rule failed");
    usleep(150 * 1000); /* the loop has not run since init: its time is 150 ms old */

    uint64_t t0 = connect_from_a(loop, port, 300, &dropped, &c);
    th_run(loop, 3000);
    uint64_t took = dropped.closed_at - t0;

    cr_expect_eq(dropped.info.kind, TT_CLOSE_CONNECT_TIMEOUT, "kind '%s'",
                 tt_close_kind_name(dropped.info.kind));
    cr_expect(took >= 300 && took < 600, "timed out after %llu ms, expected [300, 600)",
              (unsigned long long)took);
    close(lfd);
    cr_assert_eq(tt_loop_close(loop), 0);
}
