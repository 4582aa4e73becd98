/* Name resolution on the loop, against a real dnsmasq on loopback with its own
 * records, a server that never answers, and a private /etc/hosts. */
#include <errno.h>
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
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

static void start_dns(void)
{
    static const char *const records[] = {
        "--host-record=v4.test,127.0.0.1",
        "--host-record=v6.test,::1",
        "--host-record=both.test,127.0.0.1,::1",
        "--host-record=rev.test,127.1.2.3",
        "--host-record=filesfirst.test,127.0.0.8",
        NULL};
    int r = th_dns_start(&dns, records);
    if (r == -ENOENT)
        cr_skip_test("dnsmasq is not installed (/usr/sbin/dnsmasq)");
    cr_assert_eq(r, 0, "dnsmasq did not start: %s", strerror(-r));
}

TestSuite(resolve, .fini = stop_servers);

typedef struct {
    int calls;
    int status;
    size_t count;
    tt_addr_t addrs[8];
    char name[256];
    uint64_t at_ms;
} answer_t;

static void on_addrs(tt_resolve_t *req, int status, const tt_addr_t *addrs, size_t count,
                     void *data)
{
    answer_t *a = data;
    (void)req;
    a->calls++;
    a->status = status;
    a->count = count;
    a->at_ms = th_now_ms();
    for (size_t i = 0; i < count && i < 8; i++)
        a->addrs[i] = addrs[i];
}

static void on_name(tt_resolve_t *req, int status, const char *name, void *data)
{
    answer_t *a = data;
    (void)req;
    a->calls++;
    a->status = status;
    snprintf(a->name, sizeof(a->name), "%s", name != NULL ? name : "(null)");
}

static void use_servers(tt_loop_t *loop, const char *servers, uint64_t timeout_ms, unsigned tries)
{
    tt_resolver_opts_t o = {.servers = servers, .timeout_ms = timeout_ms, .tries = tries};
    cr_assert_eq(tt_loop_set_resolver(loop, &o), 0);
}

static const char *fmt(const tt_addr_t *a)
{
    static char buf[4][TT_ADDR_STRLEN];
    static int i;
    i = (i + 1) % 4;
    tt_addr_format(a, buf[i], sizeof(buf[i]));
    return buf[i];
}

/* Resolve and run the loop until the answer came. */
static answer_t lookup(tt_loop_t *loop, const char *host, int family)
{
    answer_t a = {0};
    cr_assert_eq(tt_resolve(loop, host, 8080, family, on_addrs, &a, NULL), 0);
    cr_assert_eq(a.calls, 0, "the callback ran inside tt_resolve");
    th_run(loop, 5000);
    cr_assert_eq(a.calls, 1, "%s: %d callbacks", host, a.calls);
    return a;
}

Test(resolve, a_record_from_the_dns_server)
{
    tt_loop_t *loop;
    start_dns();
    cr_assert_eq(tt_loop_init(&loop), 0);
    use_servers(loop, dns.servers, 1000, 2);

    answer_t a = lookup(loop, "v4.test", AF_UNSPEC);
    cr_assert_eq(a.status, 0, "status %s", tt_err_name(a.status));
    cr_assert_eq(a.count, 1, "count %zu", a.count);
    cr_assert_str_eq(fmt(&a.addrs[0]), "127.0.0.1:8080");
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(resolve, aaaa_record_from_the_dns_server)
{
    tt_loop_t *loop;
    start_dns();
    cr_assert_eq(tt_loop_init(&loop), 0);
    use_servers(loop, dns.servers, 1000, 2);

    answer_t a = lookup(loop, "v6.test", AF_INET6);
    cr_assert_eq(a.status, 0, "status %s", tt_err_name(a.status));
    cr_assert_eq(a.count, 1, "count %zu", a.count);
    cr_assert_str_eq(fmt(&a.addrs[0]), "[::1]:8080");
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(resolve, both_families_or_only_the_one_asked_for)
{
    tt_loop_t *loop;
    start_dns();
    cr_assert_eq(tt_loop_init(&loop), 0);
    use_servers(loop, dns.servers, 1000, 2);

    answer_t a = lookup(loop, "both.test", AF_UNSPEC);
    cr_assert_eq(a.status, 0, "status %s", tt_err_name(a.status));
    cr_assert_eq(a.count, 2, "count %zu", a.count);
    int v4 = 0, v6 = 0;
    for (size_t i = 0; i < a.count; i++) {
        v4 += strcmp(fmt(&a.addrs[i]), "127.0.0.1:8080") == 0;
        v6 += strcmp(fmt(&a.addrs[i]), "[::1]:8080") == 0;
    }
    cr_assert_eq(v4, 1, "IPv4 answers %d", v4);
    cr_assert_eq(v6, 1, "IPv6 answers %d", v6);

    a = lookup(loop, "both.test", AF_INET);
    cr_assert_eq(a.status, 0);
    cr_assert_eq(a.count, 1, "count %zu", a.count);
    cr_assert_str_eq(fmt(&a.addrs[0]), "127.0.0.1:8080");
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(resolve, nxdomain_is_not_found)
{
    tt_loop_t *loop;
    start_dns();
    cr_assert_eq(tt_loop_init(&loop), 0);
    use_servers(loop, dns.servers, 1000, 2);

    answer_t a = lookup(loop, "missing.test", AF_UNSPEC);
    cr_assert_eq(a.status, TT_ENOTFOUND, "status %s", tt_err_name(a.status));
    cr_assert_eq(a.count, 0);
    /* A name that exists without an address of the family asked: also not found. */
    a = lookup(loop, "v4.test", AF_INET6);
    cr_assert_eq(a.status, TT_ENOTFOUND, "status %s", tt_err_name(a.status));
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(resolve, silent_server_times_out_after_the_configured_tries)
{
    tt_loop_t *loop;
    uint16_t port;
    char servers[32];

    silent_fd = th_dns_silent(&port, servers, sizeof(servers));
    cr_assert_geq(silent_fd, 0);
    cr_assert_eq(tt_loop_init(&loop), 0);
    /* c-ares waits 200 ms for the first try, then doubles: 200 + 400 = 600 ms. */
    use_servers(loop, servers, 200, 2);

    uint64_t t0 = th_now_ms();
    answer_t a = lookup(loop, "slow.test", AF_INET);
    uint64_t took = a.at_ms - t0;
    cr_assert_eq(a.status, TT_EDNSTIMEOUT, "status %s", tt_err_name(a.status));
    cr_assert_geq(took, 550, "timed out after %llu ms", (unsigned long long)took);
    cr_assert_leq(took, 900, "timed out after %llu ms", (unsigned long long)took);
    int queries = th_dns_silent_count(silent_fd);
    cr_assert_eq(queries, 2, "the server got %d queries, expected one per try", queries);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(resolve, local_names_are_answered_without_dns_and_from_the_loop)
{
    tt_loop_t *loop;
    uint16_t port;
    char servers[32];

    silent_fd = th_dns_silent(&port, servers, sizeof(servers));
    cr_assert_geq(silent_fd, 0);
    cr_assert_eq(tt_loop_init(&loop), 0);

    static const struct {
        const char *host;
        int family;
        size_t count;
        const char *first, *second;
    } cases[] = {
        {"localhost", AF_UNSPEC, 2, "[::1]:8080", "127.0.0.1:8080"},
        {"LocalHost.", AF_INET, 1, "127.0.0.1:8080", NULL},
        {"db.localhost", AF_INET6, 1, "[::1]:8080", NULL},
        {"192.0.2.7", AF_UNSPEC, 1, "192.0.2.7:8080", NULL},
        {"2001:db8::5", AF_UNSPEC, 1, "[2001:db8::5]:8080", NULL},
        {"[2001:db8::6]", AF_INET6, 1, "[2001:db8::6]:8080", NULL},
        {"", AF_UNSPEC, 1, "[::]:8080", NULL},
        {"", AF_INET, 1, "0.0.0.0:8080", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t t0 = th_now_ms();
        answer_t a = lookup(loop, cases[i].host, cases[i].family);
        cr_assert_eq(a.status, 0, "'%s': %s", cases[i].host, tt_err_name(a.status));
        cr_assert_eq(a.count, cases[i].count, "'%s': %zu answers", cases[i].host, a.count);
        cr_assert_str_eq(fmt(&a.addrs[0]), cases[i].first, "'%s'", cases[i].host);
        if (cases[i].second != NULL)
            cr_assert_str_eq(fmt(&a.addrs[1]), cases[i].second, "'%s'", cases[i].host);
        cr_assert_lt(a.at_ms - t0, 50, "'%s' took %llu ms", cases[i].host,
                     (unsigned long long)(a.at_ms - t0));
    }
    /* A numeric address of the other family: not found, still without DNS. */
    answer_t a = lookup(loop, "192.0.2.7", AF_INET6);
    cr_assert_eq(a.status, TT_ENOTFOUND, "status %s", tt_err_name(a.status));
    /* A Unix address is no host name: no IP address, and no query for it. */
    a = lookup(loop, "unix:/run/x.sock", AF_UNSPEC);
    cr_assert_eq(a.status, TT_ENOTFOUND, "unix: status %s, %zu answers", tt_err_name(a.status),
                 a.count);
    /* The resolver was never even created, so nothing can have been sent. */
    cr_assert_null(loop->resolver);
    cr_assert_eq(th_dns_silent_count(silent_fd), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(resolve, reverse_lookup_finds_the_ptr_record)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    answer_t a = {0};

    start_dns();
    cr_assert_eq(tt_loop_init(&loop), 0);
    use_servers(loop, dns.servers, 1000, 2);
    cr_assert_eq(tt_addr_parse(&addr, "127.1.2.3", 0), 0);
    cr_assert_eq(tt_resolve_reverse(loop, &addr, on_name, &a, NULL), 0);
    cr_assert_eq(a.calls, 0);
    th_run(loop, 5000);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.status, 0, "status %s", tt_err_name(a.status));
    cr_assert_str_eq(a.name, "rev.test");

    memset(&a, 0, sizeof(a));
    cr_assert_eq(tt_addr_parse(&addr, "127.1.2.4", 0), 0);
    cr_assert_eq(tt_resolve_reverse(loop, &addr, on_name, &a, NULL), 0);
    th_run(loop, 5000);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.status, TT_ENOTFOUND, "status %s name %s", tt_err_name(a.status), a.name);
    cr_assert_eq(tt_loop_close(loop), 0);
}

static void never(tt_resolve_t *req, int status, const tt_addr_t *addrs, size_t count,
                  void *data)
{
    (void)req, (void)status, (void)addrs, (void)count, (void)data;
    cr_assert_fail("a cancelled lookup called back");
}

Test(resolve, cancel_stops_the_callback_and_does_not_hold_the_loop)
{
    tt_loop_t *loop;
    tt_resolve_t *req;
    uint16_t port;
    char servers[32];

    silent_fd = th_dns_silent(&port, servers, sizeof(servers));
    cr_assert_geq(silent_fd, 0);
    cr_assert_eq(tt_loop_init(&loop), 0);
    use_servers(loop, servers, 5000, 3); /* would take 35 s to time out */
    cr_assert_eq(tt_resolve(loop, "slow.test", 80, AF_UNSPEC, never, NULL, &req), 0);
    tt_loop_run(loop, TT_RUN_NOWAIT); /* the queries go out */
    cr_assert_eq(tt_resolve_cancel(req), 0);
    uint64_t t0 = th_now_ms();
    th_run(loop, 2000);
    cr_assert_lt(th_now_ms() - t0, 100, "the loop ran %llu ms after the cancel",
                 (unsigned long long)(th_now_ms() - t0));
    /* And a local answer cancelled before the loop delivered it. */
    cr_assert_eq(tt_resolve(loop, "localhost", 80, AF_UNSPEC, never, NULL, &req), 0);
    cr_assert_eq(tt_resolve_cancel(req), 0);
    th_run(loop, 1000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(resolve, bad_arguments_change_nothing)
{
    tt_loop_t *loop;
    char longname[300];
    tt_resolver_opts_t bad = {.servers = "not a server list"};
    answer_t a = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    cr_assert_eq(tt_resolve(loop, longname, 80, AF_UNSPEC, on_addrs, &a, NULL), -EINVAL);
    cr_assert_eq(tt_resolve(loop, "x.test", 80, AF_UNIX, on_addrs, &a, NULL), -EINVAL);
    cr_assert_eq(tt_resolve(loop, NULL, 80, AF_UNSPEC, on_addrs, &a, NULL), -EINVAL);
    cr_assert_eq(tt_resolve(loop, "x.test", 80, AF_UNSPEC, NULL, &a, NULL), -EINVAL);
    cr_assert_eq(tt_loop_set_resolver(loop, &bad), -EINVAL);
    cr_assert_eq(tt_loop_handle_count(loop), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(resolve, reconfiguring_with_lookups_in_flight_is_refused)
{
    tt_loop_t *loop;
    uint16_t port;
    char servers[32];
    answer_t a = {0};

    silent_fd = th_dns_silent(&port, servers, sizeof(servers));
    cr_assert_geq(silent_fd, 0);
    cr_assert_eq(tt_loop_init(&loop), 0);
    use_servers(loop, servers, 100, 1);
    cr_assert_eq(tt_resolve(loop, "slow.test", 80, AF_INET, on_addrs, &a, NULL), 0);
    tt_resolver_opts_t o = {.servers = servers};
    cr_assert_eq(tt_loop_set_resolver(loop, &o), -EBUSY);
    th_run(loop, 2000);
    cr_assert_eq(a.status, TT_EDNSTIMEOUT, "status %s", tt_err_name(a.status));
    cr_assert_eq(tt_loop_set_resolver(loop, &o), 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* /etc/hosts, private to this test: a mount namespace of its own (the test runs in
 * its own process) with a file bind-mounted over /etc/hosts. */
static void private_hosts(const char *content)
{
    char path[] = "/tmp/tt-hosts-XXXXXX";
    int fd;

    if (unshare(CLONE_NEWNS) != 0)
        cr_skip_test("cannot make a mount namespace here (%s)", strerror(errno));
    cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "%s", strerror(errno));
    fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    cr_assert_eq(mount(path, "/etc/hosts", NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
    unlink(path); /* the mount keeps it alive; gone with this process's namespace */
}

Test(resolve, etc_hosts_is_read_before_dns)
{
    tt_loop_t *loop;

    start_dns();
    private_hosts("127.0.0.9 hostsonly.test\n127.0.0.7 filesfirst.test\n");
    cr_assert_eq(tt_loop_init(&loop), 0);
    use_servers(loop, dns.servers, 1000, 2);

    answer_t a = lookup(loop, "hostsonly.test", AF_INET);
    cr_assert_eq(a.status, 0, "status %s", tt_err_name(a.status));
    cr_assert_str_eq(fmt(&a.addrs[0]), "127.0.0.9:8080");
    /* In both: the file wins (dnsmasq says 127.0.0.8). */
    a = lookup(loop, "filesfirst.test", AF_INET);
    cr_assert_eq(a.status, 0);
    cr_assert_str_eq(fmt(&a.addrs[0]), "127.0.0.7:8080");
    cr_assert_eq(tt_loop_close(loop), 0);

    /* And with no_hosts, DNS alone answers. */
    tt_resolver_opts_t o = {.servers = dns.servers, .timeout_ms = 1000, .no_hosts = true};
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_loop_set_resolver(loop, &o), 0);
    a = lookup(loop, "filesfirst.test", AF_INET);
    cr_assert_eq(a.status, 0);
    cr_assert_str_eq(fmt(&a.addrs[0]), "127.0.0.8:8080");
    a = lookup(loop, "hostsonly.test", AF_INET);
    cr_assert_eq(a.status, TT_ENOTFOUND, "status %s", tt_err_name(a.status));
    cr_assert_eq(tt_loop_close(loop), 0);
}
