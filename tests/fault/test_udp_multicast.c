/* Broadcast and multicast between network namespaces this test creates:
 *
 *     ns S (senders: 10.77.0.1 and .2, fd77::1 and ::2) --+
 *     ns R1 (10.77.0.3, fd77::3) ------------------------ br0 (in ns B)
 *     ns R2 (10.77.0.4, fd77::4) ------------------------+
 *
 * The test thread enters a namespace (setns) to create the sockets that belong
 * there, then returns to its own; one loop drives them all. Nothing touches the
 * host's namespace, and every namespace is deleted again, also when a test fails.
 * Needs root (CI runs as root); skipped with a message where namespaces cannot be
 * created. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define PORT 47000
#define QUIET_MS 300 /* how long "nothing arrives" is watched */

enum { NS_B, NS_S, NS_R1, NS_R2, NS_COUNT };
static char ns_name[NS_COUNT][32];
static bool ns_made[NS_COUNT];
static int home_fd = -1;
static bool topo_ok;

static int sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof(cmd) - 24, fmt, ap);
    va_end(ap);
    cr_assert(n > 0 && (size_t)n < sizeof(cmd) - 24);
    strcat(cmd, " >/dev/null 2>&1");
    return system(cmd);
}

static void teardown(void)
{
    if (home_fd >= 0) {
        setns(home_fd, CLONE_NEWNET);
        close(home_fd);
        home_fd = -1;
    }
    for (int i = 0; i < NS_COUNT; i++)
        if (ns_made[i]) {
            sh("ip netns del %s", ns_name[i]); /* its veth ends go with it */
            ns_made[i] = false;
        }
}

static void setup(void)
{
    static const char *tag[NS_COUNT] = {"b", "s", "r1", "r2"};
    static const char *v4[NS_COUNT] = {NULL, "10.77.0.1", "10.77.0.3", "10.77.0.4"};
    static const char *v6[NS_COUNT] = {NULL, "fd77::1", "fd77::3", "fd77::4"};

    topo_ok = false;
    for (int i = 0; i < NS_COUNT; i++) {
        snprintf(ns_name[i], sizeof(ns_name[i]), "ttudp%d%s", (int)getpid(), tag[i]);
        sh("ip netns del %s", ns_name[i]); /* left over from a crashed run */
        if (sh("ip netns add %s", ns_name[i]) != 0)
            return;
        ns_made[i] = true;
    }
    home_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    cr_assert_geq(home_fd, 0);
    const char *b = ns_name[NS_B];
    /* Snooping off: the bridge floods multicast, so only the hosts' own
     * membership decides who receives. */
    cr_assert_eq(sh("ip -n %s link add br0 type bridge mcast_snooping 0", b), 0);
    cr_assert_eq(sh("ip -n %s link set br0 up", b), 0);
    for (int i = NS_S; i < NS_COUNT; i++) {
        const char *n = ns_name[i];
        cr_assert_eq(sh("ip -n %s link add p%d type veth peer name e0 netns %s", b, i, n), 0);
        cr_assert_eq(sh("ip -n %s link set p%d master br0 up", b, i), 0);
        cr_assert_eq(sh("ip -n %s link set lo up", n), 0);
        cr_assert_eq(sh("ip -n %s addr add %s/24 brd + dev e0", n, v4[i]), 0);
        cr_assert_eq(sh("ip -n %s addr add %s/64 dev e0 nodad", n, v6[i]), 0);
        cr_assert_eq(sh("ip -n %s link set e0 up", n), 0);
    }
    /* The second sender address. */
    cr_assert_eq(sh("ip -n %s addr add 10.77.0.2/24 dev e0", ns_name[NS_S]), 0);
    cr_assert_eq(sh("ip -n %s addr add fd77::2/64 dev e0 nodad", ns_name[NS_S]), 0);
    topo_ok = true;
}

static void need_topology(void)
{
    if (!topo_ok)
        cr_skip_test("cannot create network namespaces here (needs root and ip netns)");
}

static void enter(int ns)
{
    char path[64];
    snprintf(path, sizeof(path), "/run/netns/%s", ns_name[ns]);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(setns(fd, CLONE_NEWNET), 0, "setns: %s", strerror(errno));
    close(fd);
}

static void leave_ns(void) { cr_assert_eq(setns(home_fd, CLONE_NEWNET), 0); }

/* ---- receivers ---------------------------------------------------------------- */

typedef struct {
    int n;
    int from1, from2, from_other; /* by sender address: .1/::1, .2/::2 */
    int want;
    bool done;
} rx_t;

static void on_datagram(tt_udp_t *u, const void *d, size_t len, const tt_addr_t *from,
                        unsigned flags, size_t full)
{
    rx_t *r = tt_udp_get_data(u);
    char host[TT_ADDR_STRLEN];
    (void)d, (void)len, (void)flags, (void)full;
    r->n++;
    cr_assert_geq(tt_addr_format_host(from, host, sizeof(host)), 0);
    if (strcmp(host, "10.77.0.1") == 0 || strcmp(host, "fd77::1") == 0)
        r->from1++;
    else if (strcmp(host, "10.77.0.2") == 0 || strcmp(host, "fd77::2") == 0)
        r->from2++;
    else
        r->from_other++;
    if (r->want > 0 && r->n >= r->want)
        r->done = true;
}

static const tt_udp_handlers_t H = {.on_datagram = on_datagram};

static tt_udp_t *open_in(tt_loop_t *loop, int ns, const char *host, uint16_t port, rx_t *r,
                         const tt_udp_opts_t *o)
{
    tt_addr_t a;
    tt_udp_t *u = NULL;
    enter(ns);
    cr_assert_eq(tt_addr_parse(&a, host, port), 0);
    int err = tt_udp_open(loop, &a, o, &H, r, &u);
    leave_ns();
    cr_assert_eq(err, 0, "open %s port %u: %s", host, port, tt_strerror(err));
    return u;
}

/* A sender in ns S bound to `host`, multicasting out of e0. */
static tt_udp_t *sender(tt_loop_t *loop, const char *host, rx_t *r)
{
    tt_udp_t *u = open_in(loop, NS_S, host, 0, r, NULL);
    enter(NS_S);
    int err = tt_udp_set_multicast_interface(u, "e0");
    leave_ns();
    cr_assert_eq(err, 0, "multicast interface: %s", tt_strerror(err));
    cr_assert_eq(tt_udp_set_multicast_ttl(u, 1), 0);
    return u;
}

static void send_n(tt_udp_t *u, const char *group, int n)
{
    tt_addr_t to;
    cr_assert_eq(tt_addr_parse(&to, group, PORT), 0);
    for (int i = 0; i < n; i++) {
        int r = tt_udp_send(u, "mc", 2, &to);
        cr_assert_eq(r, 0, "send to %s: %s", group, tt_strerror(r));
    }
}

static int join_in(int ns, tt_udp_t *u, const char *group, const char *source, bool join)
{
    tt_addr_t g, s;
    int err;
    cr_assert_eq(tt_addr_parse(&g, group, 0), 0);
    if (source != NULL)
        cr_assert_eq(tt_addr_parse(&s, source, 0), 0);
    enter(ns); /* the interface name is looked up in the caller's namespace */
    if (source == NULL)
        err = join ? tt_udp_join(u, &g, "e0") : tt_udp_leave(u, &g, "e0");
    else
        err = join ? tt_udp_join_source(u, &g, &s, "e0") : tt_udp_leave_source(u, &g, &s, "e0");
    leave_ns();
    return err;
}

static void quiet(tt_loop_t *loop) { th_run_until(loop, &(bool){false}, QUIET_MS); }

static void finish(tt_loop_t *loop, tt_udp_t **s, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(tt_udp_close(s[i]), 0);
    th_run(loop, 5000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* Members get the group's datagrams, a host that did not join gets none until it
 * joins, and a member that left gets no more. */
static void any_source(const char *group, const char *wild, const char *src)
{
    tt_loop_t *loop;
    rx_t r1 = {0}, r2 = {0}, s1 = {0};

    need_topology();
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *a = open_in(loop, NS_R1, wild, PORT, &r1, NULL);
    tt_udp_t *b = open_in(loop, NS_R2, wild, PORT, &r2, NULL);
    tt_udp_t *tx = sender(loop, src, &s1);
    cr_assert_eq(join_in(NS_R1, a, group, NULL, true), 0);

    send_n(tx, group, 5);
    r1.want = 5;
    cr_assert(th_run_until(loop, &r1.done, 5000), "member got %d of 5", r1.n);
    quiet(loop);
    cr_expect_eq(r1.n, 5, "member got %d", r1.n);
    cr_expect_eq(r1.from1, 5, "from the sender: %d", r1.from1);
    cr_expect_eq(r2.n, 0, "a host that did not join got %d", r2.n);

    /* The same receiver gets them once it joins: the silence above was the
     * membership, not the network. */
    cr_assert_eq(join_in(NS_R2, b, group, NULL, true), 0);
    cr_assert_eq(join_in(NS_R1, a, group, NULL, false), 0);
    cr_expect_eq(join_in(NS_R1, a, group, NULL, false), -EADDRNOTAVAIL, "not a member now");
    send_n(tx, group, 3);
    r2.want = 3;
    cr_assert(th_run_until(loop, &r2.done, 5000), "new member got %d of 3", r2.n);
    quiet(loop);
    cr_expect_eq(r2.n, 3, "new member got %d", r2.n);
    cr_expect_eq(r1.n, 5, "a member that left got %d more", r1.n - 5);
    tt_udp_t *s[] = {a, b, tx};
    finish(loop, s, 3);
}

/* Source-specific membership: only the allowed source gets through, while an
 * any-source member on another host shows that both senders reach the wire. */
static void source_specific(const char *group, const char *wild, const char *src1,
                            const char *src2)
{
    tt_loop_t *loop;
    rx_t r1 = {0}, r2 = {0}, s1 = {0}, s2 = {0};

    need_topology();
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *a = open_in(loop, NS_R1, wild, PORT, &r1, NULL);
    tt_udp_t *b = open_in(loop, NS_R2, wild, PORT, &r2, NULL);
    tt_udp_t *tx1 = sender(loop, src1, &s1);
    tt_udp_t *tx2 = sender(loop, src2, &s2);
    int err = join_in(NS_R1, a, group, src1, true);
    cr_assert_eq(err, 0, "source join: %s", tt_strerror(err));
    cr_assert_eq(join_in(NS_R2, b, group, NULL, true), 0);

    send_n(tx1, group, 4);
    send_n(tx2, group, 6);
    r2.want = 10;
    cr_assert(th_run_until(loop, &r2.done, 5000), "any-source member got %d of 10", r2.n);
    quiet(loop);
    cr_expect_eq(r2.from1, 4, "any-source from the allowed sender: %d", r2.from1);
    cr_expect_eq(r2.from2, 6, "any-source from the other sender: %d", r2.from2);
    cr_expect_eq(r1.from1, 4, "source-specific member from the allowed sender: %d", r1.from1);
    cr_expect_eq(r1.from2, 0, "source-specific member from the other sender: %d", r1.from2);
    cr_expect_eq(r1.from_other, 0);

    cr_assert_eq(join_in(NS_R1, a, group, src1, false), 0);
    send_n(tx1, group, 2);
    r2.done = false;
    r2.want = 12;
    cr_assert(th_run_until(loop, &r2.done, 5000), "any-source member got %d of 12", r2.n);
    quiet(loop);
    cr_expect_eq(r1.n, 4, "after leave_source the member got %d more", r1.n - 4);
    tt_udp_t *s[] = {a, b, tx1, tx2};
    finish(loop, s, 4);
}

TestSuite(udp_multicast, .init = setup, .fini = teardown, .timeout = 60);

Test(udp_multicast, ipv4_member_receives_non_member_does_not)
{
    any_source("239.77.0.1", "0.0.0.0", "10.77.0.1");
}

Test(udp_multicast, ipv6_member_receives_non_member_does_not)
{
    any_source("ff15::77", "::", "fd77::1");
}

Test(udp_multicast, ipv4_source_specific_member_hears_only_the_allowed_source)
{
    source_specific("232.7.7.7", "0.0.0.0", "10.77.0.1", "10.77.0.2");
}

Test(udp_multicast, ipv6_source_specific_member_hears_only_the_allowed_source)
{
    source_specific("ff35::7777", "::", "fd77::1", "fd77::2");
}

Test(udp_multicast, multicast_loop_option_decides_local_copies)
{
    tt_loop_t *loop;
    rx_t local = {0}, r1 = {0}, s1 = {0};

    need_topology();
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_opts_t o = {.reuseaddr = true};
    tt_udp_t *l = open_in(loop, NS_S, "0.0.0.0", PORT, &local, &o);
    tt_udp_t *a = open_in(loop, NS_R1, "0.0.0.0", PORT, &r1, NULL);
    tt_udp_t *tx = sender(loop, "10.77.0.1", &s1);
    cr_assert_eq(join_in(NS_S, l, "239.77.0.9", NULL, true), 0);
    cr_assert_eq(join_in(NS_R1, a, "239.77.0.9", NULL, true), 0);

    cr_assert_eq(tt_udp_set_multicast_loop(tx, false), 0);
    send_n(tx, "239.77.0.9", 3);
    r1.want = 3;
    cr_assert(th_run_until(loop, &r1.done, 5000), "remote member got %d", r1.n);
    quiet(loop);
    cr_expect_eq(local.n, 0, "loop off: the sender's host got %d copies", local.n);

    cr_assert_eq(tt_udp_set_multicast_loop(tx, true), 0);
    send_n(tx, "239.77.0.9", 2);
    local.want = 2;
    cr_assert(th_run_until(loop, &local.done, 5000), "loop on: local copies %d", local.n);
    tt_udp_t *s[] = {l, a, tx};
    finish(loop, s, 3);
}

Test(udp_multicast, broadcast_needs_so_broadcast_and_reaches_every_host)
{
    tt_loop_t *loop;
    rx_t r1 = {0}, r2 = {0}, s1 = {0};
    tt_addr_t bcast;

    need_topology();
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *a = open_in(loop, NS_R1, "0.0.0.0", PORT, &r1, NULL);
    tt_udp_t *b = open_in(loop, NS_R2, "0.0.0.0", PORT, &r2, NULL);
    tt_udp_t *tx = open_in(loop, NS_S, "10.77.0.1", 0, &s1, NULL);
    cr_assert_eq(tt_addr_parse(&bcast, "10.77.0.255", PORT), 0);
    cr_expect_eq(tt_udp_send(tx, "b", 1, &bcast), -EACCES, "broadcast without SO_BROADCAST");
    cr_assert_eq(tt_udp_set_broadcast(tx, true), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(tt_udp_send(tx, "b", 1, &bcast), 0);
    r1.want = 4;
    r2.want = 4;
    cr_assert(th_run_until(loop, &r1.done, 5000), "host 1 got %d", r1.n);
    cr_assert(th_run_until(loop, &r2.done, 5000), "host 2 got %d", r2.n);
    quiet(loop);
    cr_expect_eq(r1.n, 4, "host 1 got %d", r1.n);
    cr_expect_eq(r2.n, 4, "host 2 got %d", r2.n);
    cr_expect_eq(r1.from1, 4);
    tt_udp_stats_t st;
    cr_assert_eq(tt_udp_get_stats(tx, &st), 0);
    cr_expect_eq(st.send_errors, 1, "the refused broadcast counts: %llu",
                 (unsigned long long)st.send_errors);
    tt_udp_t *s[] = {a, b, tx};
    finish(loop, s, 3);
}

/* A small link MTU: with DF set the kernel refuses a larger datagram at once, and
 * the path MTU it knows is what tether reports. */
Test(udp_multicast, pmtu_do_refuses_datagram_over_link_mtu_and_reports_it)
{
    tt_loop_t *loop;
    rx_t r1 = {0}, s1 = {0};
    tt_addr_t to;
    char buf[1400];
    int mtu = 0;

    need_topology();
    cr_assert_eq(sh("ip -n %s link set e0 mtu 1280", ns_name[NS_S]), 0);
    memset(buf, 'm', sizeof(buf));
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *a = open_in(loop, NS_R1, "10.77.0.3", PORT, &r1, NULL);
    tt_udp_t *tx = open_in(loop, NS_S, "10.77.0.1", 0, &s1, NULL);
    cr_assert_eq(tt_addr_parse(&to, "10.77.0.3", PORT), 0);
    cr_assert_eq(tt_udp_set_pmtu_mode(tx, TT_UDP_PMTU_DO), 0);
    cr_expect_eq(tt_udp_send(tx, buf, sizeof(buf), &to), -EMSGSIZE);
    enter(NS_S); /* the probe socket lives in the caller's namespace */
    int err = tt_udp_path_mtu(tx, &to, &mtu);
    leave_ns();
    cr_assert_eq(err, 0, "path mtu: %s", tt_strerror(err));
    cr_expect_eq(mtu, 1280, "path MTU %d", mtu);
    cr_assert_eq(tt_udp_connect(tx, &to), 0);
    cr_assert_eq(tt_udp_path_mtu(tx, NULL, &mtu), 0);
    cr_expect_eq(mtu, 1280, "connected path MTU %d", mtu);
    /* What fits goes; in WANT mode the big one is fragmented and arrives whole. */
    cr_assert_eq(tt_udp_send(tx, buf, 1280 - 28, NULL), 0);
    cr_assert_eq(tt_udp_set_pmtu_mode(tx, TT_UDP_PMTU_WANT), 0);
    cr_assert_eq(tt_udp_send(tx, buf, sizeof(buf), NULL), 0);
    r1.want = 2;
    cr_assert(th_run_until(loop, &r1.done, 5000), "got %d of 2", r1.n);
    tt_udp_t *s[] = {a, tx};
    finish(loop, s, 2);
}
