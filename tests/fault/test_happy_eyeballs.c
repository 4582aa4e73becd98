/* Happy Eyeballs (RFC 8305) against a real black hole.
 *
 * Two namespaces joined by a veth pair, each end with an IPv4 and an IPv6 address.
 * The test thread works from namespace A, where dnsmasq serves "he.test" with both
 * of B's addresses; the listener lives in B (made while the thread was in B), and
 * nft in B drops the SYNs sent to its IPv6 address. So the IPv6 attempt hangs and
 * the IPv4 one, started after the connection attempt delay, must win. The control
 * test is the same without the drop: there IPv6 wins at once, which is also what
 * makes the fault test fail when the fault is absent. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "dnsmasq.h"
#include "harness.h"
#include "netns.h"

#define V6_A "fd77::1"
#define V6_B "fd77::2"

static th_netns_t ns;
static th_dns_t dns;
static int home = -1; /* the namespace the test started in */

static void teardown(void)
{
    th_dns_stop(&dns);
    if (home >= 0)
        th_netns_leave(home);
    home = -1;
    th_netns_destroy(&ns);
}

TestSuite(happy_eyeballs, .fini = teardown);

typedef struct {
    int opens, closes, accepted;
    tt_close_info_t info;
    tt_addr_t peer;
    uint64_t opened_at, closed_at;
} counts_t;

static counts_t n;

static void cli_open(tt_conn_t *c)
{
    n.opens++;
    n.opened_at = th_now_ms();
    cr_assert_eq(tt_conn_peer_addr(c, &n.peer), 0);
    tt_destroy(c, 0);
}
static void cli_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    n.closes++;
    n.info = *info;
    n.closed_at = th_now_ms();
}
static void srv_open(tt_conn_t *c)
{
    (void)c;
    n.accepted++;
}

static const tt_conn_handlers_t ch = {.on_open = cli_open, .on_close = cli_close};
static const tt_conn_handlers_t sh = {.on_open = srv_open};

/* Namespaces, addresses, dnsmasq in A, a dual-stack listener in B (port in *port).
 * The calling thread is left in A. */
static tt_server_t *setup(tt_loop_t *loop, uint16_t *port)
{
    static const char *const records[] = {"--host-record=he.test,10.77.0.2," V6_B, NULL};
    tt_server_t *srv;
    tt_addr_t any, bound;
    int r, saved;

    r = th_netns_create(&ns);
    if (r < 0)
        cr_skip_test("network namespaces cannot be created here (%s)", strerror(-r));
    /* nodad: usable at once instead of after duplicate address detection. */
    cr_assert_eq(th_netns_exec(ns.ns_a, "ip -6 addr add " V6_A "/64 dev %s nodad", ns.dev_a), 0);
    cr_assert_eq(th_netns_exec(ns.ns_b, "ip -6 addr add " V6_B "/64 dev %s nodad", ns.dev_b), 0);

    saved = th_netns_enter(ns.ns_b);
    cr_assert_geq(saved, 0, "enter B: %s", strerror(-saved));
    cr_assert_eq(tt_addr_parse(&any, "::", 0), 0);
    r = tt_server_listen(loop, &any, NULL, &sh, NULL, &srv); /* its socket stays in B */
    cr_assert_eq(th_netns_leave(saved), 0);
    cr_assert_eq(r, 0, "listen in B: %s", tt_strerror(r));
    cr_assert_eq(tt_server_addr(srv, &bound), 0);
    *port = tt_addr_port(&bound);

    home = th_netns_enter(ns.ns_a);
    cr_assert_geq(home, 0, "enter A: %s", strerror(-home));
    r = th_dns_start(&dns, records); /* forked from this thread: it runs in A */
    if (r == -ENOENT)
        cr_skip_test("dnsmasq is not installed (/usr/sbin/dnsmasq)");
    cr_assert_eq(r, 0, "dnsmasq in A: %s", strerror(-r));
    tt_resolver_opts_t o = {.servers = dns.servers, .timeout_ms = 1000, .tries = 2};
    cr_assert_eq(tt_loop_set_resolver(loop, &o), 0);
    return srv;
}

/* nft in B: drop connection requests (SYN without ACK) to `daddr` on `port`. */
static void drop_syn(const char *family, const char *daddr, uint16_t port)
{
    /* One command per exec: each runs inside B on its own. */
    int r = th_netns_exec(ns.ns_b, "nft add table inet tthe");
    if (r == 0)
        r = th_netns_exec(ns.ns_b, "nft add chain inet tthe input "
                                   "'{ type filter hook input priority 0; policy accept; }'");
    if (r == 0)
        r = th_netns_exec(ns.ns_b,
                          "nft add rule inet tthe input %s daddr %s tcp dport %u "
                          "'tcp flags & (syn | ack) == syn' drop",
                          family, daddr, (unsigned)port);
    cr_assert_eq(r, 0, "nft rule in %s failed (%d)", ns.ns_b, r);
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int count = 0;
    cr_assert_not_null(d);
    while (readdir(d) != NULL)
        count++;
    closedir(d);
    return count;
}

static uint64_t connect_and_time(tt_loop_t *loop, uint16_t port, uint64_t delay_ms)
{
    tt_conn_t *c;
    tt_connect_opts_t o = {.attempt_delay_ms = delay_ms, .timeout_ms = 5000};
    uint64_t t0 = th_now_ms();

    cr_assert_eq(tt_connect_host(loop, "he.test", port, &o, &ch, NULL, &c), 0);
    while (n.closes == 0 && th_now_ms() - t0 < 6000)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_assert_eq(n.opens, 1, "opens %d (close: %s, %s)", n.opens,
                 tt_close_kind_name(n.info.kind), tt_err_name(n.info.error));
    return n.opened_at - t0;
}

static void finish(tt_loop_t *loop, tt_server_t *srv)
{
    tt_server_close(srv);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(happy_eyeballs, blackholed_ipv6_falls_back_to_ipv4_after_the_attempt_delay)
{
    tt_loop_t *loop;
    uint16_t port;

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *srv = setup(loop, &port);
    drop_syn("ip6", V6_B, port);

    uint64_t took = connect_and_time(loop, port, 250);
    cr_log_info("IPv6 black-holed, delay 250 ms: connected over IPv4 after %llu ms",
                (unsigned long long)took);
    cr_assert_eq(n.peer.u.sa.sa_family, AF_INET, "connected over family %d",
                 n.peer.u.sa.sa_family);
    cr_assert_geq(took, 250, "connected after %llu ms", (unsigned long long)took);
    cr_assert_lt(took, 450, "connected after %llu ms", (unsigned long long)took);
    cr_assert_eq(n.closes, 1);
    finish(loop, srv);
}

Test(happy_eyeballs, working_ipv6_wins_at_once)
{
    tt_loop_t *loop;
    uint16_t port;

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *srv = setup(loop, &port);

    uint64_t took = connect_and_time(loop, port, 250);
    cr_log_info("control, IPv6 working: connected over IPv6 after %llu ms",
                (unsigned long long)took);
    cr_assert_eq(n.peer.u.sa.sa_family, AF_INET6, "connected over family %d",
                 n.peer.u.sa.sa_family);
    cr_assert_lt(took, 100, "connected after %llu ms", (unsigned long long)took);
    finish(loop, srv);
}

Test(happy_eyeballs, attempt_delay_is_configurable)
{
    tt_loop_t *loop;
    uint16_t port;

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *srv = setup(loop, &port);
    drop_syn("ip6", V6_B, port);

    uint64_t took = connect_and_time(loop, port, 100);
    cr_assert_eq(n.peer.u.sa.sa_family, AF_INET);
    cr_assert_geq(took, 100, "connected after %llu ms", (unsigned long long)took);
    cr_assert_lt(took, 300, "connected after %llu ms", (unsigned long long)took);
    finish(loop, srv);
}

Test(happy_eyeballs, no_answer_anywhere_ends_at_the_overall_timeout_with_no_socket_left)
{
    tt_loop_t *loop;
    tt_conn_t *c;
    uint16_t port;

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *srv = setup(loop, &port);
    drop_syn("ip6", V6_B, port);
    drop_syn("ip", "10.77.0.2", port);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    int fds = open_fds();

    tt_connect_opts_t o = {.timeout_ms = 600};
    uint64_t t0 = th_now_ms();
    cr_assert_eq(tt_connect_host(loop, "he.test", port, &o, &ch, NULL, &c), 0);
    while (n.closes == 0 && th_now_ms() - t0 < 3000)
        tt_loop_run(loop, TT_RUN_ONCE);
    uint64_t took = n.closed_at - t0;
    cr_assert_eq(n.opens, 0);
    cr_assert_eq(n.closes, 1);
    cr_assert_eq(n.accepted, 0);
    cr_assert_eq(n.info.kind, TT_CLOSE_CONNECT_TIMEOUT, "kind %s", tt_close_kind_name(n.info.kind));
    cr_assert_geq(took, 600, "closed after %llu ms", (unsigned long long)took);
    cr_assert_lt(took, 750, "closed after %llu ms", (unsigned long long)took);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    cr_assert_eq(open_fds(), fds, "descriptors: %d before, %d after", fds, open_fds());
    finish(loop, srv);
}

Test(happy_eyeballs, destroy_during_attempts_closes_once_and_every_socket)
{
    tt_loop_t *loop;
    tt_conn_t *c;
    uint16_t port;

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *srv = setup(loop, &port);
    drop_syn("ip6", V6_B, port);
    drop_syn("ip", "10.77.0.2", port);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    int fds = open_fds();

    tt_connect_opts_t o = {.attempt_delay_ms = 50};
    uint64_t t0 = th_now_ms();
    cr_assert_eq(tt_connect_host(loop, "he.test", port, &o, &ch, NULL, &c), 0);
    while (th_now_ms() - t0 < 200) /* both attempts are in flight by now */
        tt_loop_run(loop, TT_RUN_NOWAIT);
    cr_assert_geq(open_fds(), fds + 2, "attempt sockets: %d", open_fds() - fds);
    cr_assert_eq(tt_destroy(c, 0), 0);
    for (uint64_t t1 = th_now_ms(); n.closes == 0 && th_now_ms() - t1 < 1000;)
        tt_loop_run(loop, TT_RUN_NOWAIT);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    cr_assert_eq(n.closes, 1);
    cr_assert_eq(n.info.kind, TT_CLOSE_LOCAL_DESTROY);
    cr_assert_eq(open_fds(), fds, "descriptors: %d before, %d after", fds, open_fds());
    finish(loop, srv);
}
