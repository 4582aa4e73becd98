/* Admission and audit: CIDR allow/deny lists, and hooks that observe or veto
 * connect, bind and accept. Graceful shutdown. systemd socket activation. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

typedef struct {
    int opens, closes, refused, last_err;
} srv_t;

static srv_t S;

static void s_open(tt_conn_t *c) { (void)c; S.opens++; }
static void s_close(tt_conn_t *c, const tt_close_info_t *i) { (void)c, (void)i; S.closes++; }
static void s_event(tt_server_t *srv, int ev, int err, const tt_addr_t *peer)
{
    (void)srv, (void)peer;
    if (ev == TT_SERVER_REFUSED) {
        S.refused++;
        S.last_err = err;
    }
}

typedef struct {
    int opened, closed;
    tt_close_kind_t kind;
    int err;
} cli_t;

static void c_open(tt_conn_t *c) { ((cli_t *)tt_conn_get_data(c))->opened++; }
static void c_close(tt_conn_t *c, const tt_close_info_t *i)
{
    cli_t *k = tt_conn_get_data(c);
    k->closed++;
    k->kind = i->kind;
    k->err = i->error;
}

static const tt_conn_handlers_t srv_h = {.on_open = s_open, .on_close = s_close};
static const tt_conn_handlers_t cli_h = {.on_open = c_open, .on_close = c_close};

static tt_server_t *listen_any(tt_loop_t *loop, const char *host, tt_addr_t *addr)
{
    tt_server_opts_t o = {.on_event = s_event};
    tt_addr_t a;
    tt_server_t *s;
    cr_assert_eq(tt_addr_parse(&a, host, 0), 0);
    cr_assert_eq(tt_server_listen(loop, &a, &o, &srv_h, NULL, &s), 0);
    cr_assert_eq(tt_server_addr(s, addr), 0);
    return s;
}

static void connect_from(tt_loop_t *loop, const tt_addr_t *to, const char *from, cli_t *k,
                         tt_conn_t **c)
{
    tt_addr_t src;
    tt_connect_opts_t o = {.bind_addr = &src};
    cr_assert_eq(tt_addr_parse(&src, from, 0), 0);
    cr_assert_eq(tt_connect(loop, to, &o, &cli_h, k, c), 0);
}

Test(admission, deny_list_refuses_matching_clients_and_admits_others)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    cli_t k[2] = {0};
    tt_conn_t *c[2];
    bool never = false;

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = listen_any(loop, "127.0.0.1", &addr);
    cr_assert_eq(tt_server_deny(s, "127.0.0.2/32"), 0);
    cr_assert_eq(tt_server_deny(s, "not-a-cidr"), -EINVAL);
    cr_assert_eq(tt_server_deny(s, "127.0.0.0/33"), -EINVAL);
    connect_from(loop, &addr, "127.0.0.2", &k[0], &c[0]);
    connect_from(loop, &addr, "127.0.0.3", &k[1], &c[1]);
    th_run_until(loop, &never, 200);
    cr_expect_eq(S.opens, 1, "admitted: %d", S.opens);
    cr_expect_eq(S.refused, 1);
    cr_expect_eq(S.last_err, -EACCES);
    cr_expect_eq(k[0].closed, 1, "the denied client was closed");
    /* Denied clients get RST. Whether the client saw its connect complete first
     * decides the kind (peer reset, or connect failed); the error is the reset. */
    cr_expect_eq(k[0].err, -ECONNRESET, "denied clients get RST: %s (%s)",
                 tt_err_name(k[0].err), tt_close_kind_name(k[0].kind));
    cr_expect_eq(k[1].closed, 0);
    tt_destroy(c[1], 0);
    tt_server_close(s);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(admission, allow_list_admits_only_its_blocks_including_mapped_ipv4_on_dual_stack)
{
    tt_loop_t *loop;
    tt_addr_t addr, to;
    cli_t k[2] = {0};
    tt_conn_t *c[2];
    bool never = false;

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    /* Dual stack: IPv4 clients appear as ::ffff:127.0.0.x; the IPv4 block must match. */
    tt_server_t *s = listen_any(loop, "::", &addr);
    cr_assert_eq(tt_server_allow(s, "127.0.0.4/32"), 0);
    cr_assert_eq(tt_addr_parse(&to, "127.0.0.1", tt_addr_port(&addr)), 0);
    connect_from(loop, &to, "127.0.0.4", &k[0], &c[0]);
    connect_from(loop, &to, "127.0.0.5", &k[1], &c[1]);
    th_run_until(loop, &never, 200);
    cr_expect_eq(S.opens, 1, "admitted: %d", S.opens);
    cr_expect_eq(k[0].closed, 0, "the allowed client stays");
    cr_expect_eq(k[1].closed, 1, "the other is refused");
    tt_destroy(c[0], 0);
    tt_server_close(s);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- audit hooks -------------------------------------------------------------------- */

typedef struct {
    int calls[5];
    uint16_t veto_port; /* connects/binds/accepts involving this port are refused */
    char last[TT_ADDR_STRLEN];
} audit_t;

static int audit(tt_loop_t *loop, tt_audit_event_t ev, const tt_addr_t *a, void *arg)
{
    audit_t *au = arg;
    (void)loop;
    au->calls[ev]++;
    tt_addr_format(a, au->last, sizeof(au->last));
    if (ev == TT_AUDIT_CONNECT && tt_addr_port(a) == au->veto_port)
        return -EPERM;
    if (ev == TT_AUDIT_ACCEPT && strncmp(au->last, "127.0.0.9:", 10) == 0)
        return -EPERM;
    return 0;
}

Test(admission, audit_hook_sees_bind_connect_accept_and_its_veto_refuses)
{
    tt_loop_t *loop;
    tt_addr_t addr, blocked = th_loopback(9);
    audit_t au = {.veto_port = 9};
    cli_t k[2] = {0};
    tt_conn_t *c[2], *none = NULL;
    bool never = false;

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_loop_set_audit(loop, audit, &au), 0);
    tt_server_t *s = listen_any(loop, "127.0.0.1", &addr);
    cr_expect_eq(au.calls[TT_AUDIT_BIND], 1);

    /* A vetoed connect returns the hook's errno and creates nothing. */
    cr_expect_eq(tt_connect(loop, &blocked, NULL, &cli_h, &k[0], &none), -EPERM);
    cr_expect_null(none);
    cr_expect_eq(au.calls[TT_AUDIT_CONNECT], 1);

    connect_from(loop, &addr, "127.0.0.8", &k[0], &c[0]);
    connect_from(loop, &addr, "127.0.0.9", &k[1], &c[1]); /* accept vetoed */
    cr_expect_eq(au.calls[TT_AUDIT_CONNECT], 3);
    cr_expect_eq(au.calls[TT_AUDIT_BIND], 3, "client binds are audited too");
    th_run_until(loop, &never, 200);
    cr_expect_eq(au.calls[TT_AUDIT_ACCEPT], 2);
    cr_expect_eq(S.opens, 1);
    cr_expect_eq(S.refused, 1);
    cr_expect_eq(S.last_err, -EPERM);
    cr_expect_eq(k[1].closed, 1);

    cr_assert_eq(tt_loop_set_audit(loop, NULL, NULL), 0);
    tt_destroy(c[0], 0);
    tt_server_close(s);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- graceful shutdown ------------------------------------------------------------ */

typedef struct {
    int calls;
    size_t ended, destroyed;
} shut_t;

static void on_shut(tt_server_t *srv, size_t ended, size_t destroyed, void *arg)
{
    shut_t *sh = arg;
    (void)srv;
    sh->calls++;
    sh->ended = ended;
    sh->destroyed = destroyed;
}

static void end_on_end(tt_conn_t *c) { (void)c; } /* half-open client: keeps its side */

Test(admission, shutdown_ends_connections_destroys_stragglers_at_the_deadline_and_reports)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    cli_t k[3] = {0};
    tt_conn_t *c[3];
    shut_t sh = {0};
    bool never = false;
    tt_conn_handlers_t polite = cli_h, stubborn = cli_h;

    stubborn.on_end = end_on_end;
    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = listen_any(loop, "127.0.0.1", &addr);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &polite, &k[0], &c[0]), 0);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &polite, &k[1], &c[1]), 0);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &stubborn, &k[2], &c[2]), 0);
    th_run_until(loop, &never, 100);
    /* The third client never answers the server's FIN with its own. */
    cr_assert_eq(tt_conn_set_half_open(c[2], true), 0);
    cr_assert_eq(S.opens, 3);

    uint64_t t0 = th_now_ms();
    cr_assert_eq(tt_server_shutdown(s, 300, on_shut, &sh), 0);
    cr_expect_eq(tt_server_shutdown(s, 300, on_shut, &sh), -EINVAL, "only once");
    cr_expect_eq(sh.calls, 0, "reported from the loop, not inside the call");
    /* New clients are refused by the kernel now. */
    cli_t late = {0};
    tt_conn_t *lc;
    cr_assert_eq(tt_connect(loop, &addr, NULL, &cli_h, &late, &lc), 0);
    while (sh.calls == 0 && th_now_ms() - t0 < 3000)
        th_run_until(loop, &never, 20);
    uint64_t took = th_now_ms() - t0;
    cr_expect_eq(sh.calls, 1);
    cr_expect_eq(sh.ended, 2, "ended gracefully: %zu", sh.ended);
    cr_expect_eq(sh.destroyed, 1, "destroyed at the deadline: %zu", sh.destroyed);
    cr_expect(took >= 300 && took < 1500, "took %llu ms", (unsigned long long)took);
    cr_expect_eq(late.closed, 1);
    cr_expect_eq(late.kind, TT_CLOSE_CONNECT_FAILED, "late client: %s",
                 tt_close_kind_name(late.kind));
    if (!k[2].closed)
        tt_destroy(c[2], 0);
    th_run(loop, 3000);
    cr_expect_eq(S.closes, 3);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(admission, shutdown_with_no_connections_reports_zero_from_the_loop)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    shut_t sh = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = listen_any(loop, "127.0.0.1", &addr);
    cr_assert_eq(tt_server_shutdown(s, 5000, on_shut, &sh), 0);
    cr_expect_eq(sh.calls, 0);
    th_run(loop, 1000);
    cr_expect_eq(sh.calls, 1);
    cr_expect_eq(sh.ended + sh.destroyed, 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* The shutdown callback is the last word: it comes after the last connection's
 * on_close, so state it frees is no longer needed by any on_close. */
static int closes_at_report = -1;
static void shut_order(tt_server_t *srv, size_t ended, size_t destroyed, void *arg)
{
    (void)srv, (void)ended, (void)destroyed;
    closes_at_report = S.closes;
    ((shut_t *)arg)->calls++;
}

Test(admission, shutdown_reports_after_the_last_connections_on_close)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    cli_t k[2] = {0};
    tt_conn_t *c[2];
    shut_t sh = {0};
    bool never = false;

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *s = listen_any(loop, "127.0.0.1", &addr);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(tt_connect(loop, &addr, NULL, &cli_h, &k[i], &c[i]), 0);
    for (uint64_t t0 = th_now_ms(); S.opens < 2 && th_now_ms() - t0 < 2000;)
        th_run_until(loop, &never, 10);
    cr_assert_eq(S.opens, 2);
    cr_assert_eq(tt_server_shutdown(s, 2000, shut_order, &sh), 0);
    for (uint64_t t0 = th_now_ms(); sh.calls == 0 && th_now_ms() - t0 < 3000;)
        th_run_until(loop, &never, 10);
    cr_assert_eq(sh.calls, 1);
    cr_expect_eq(closes_at_report, 2, "on_close calls before the report: %d of 2",
                 closes_at_report);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- systemd socket activation ---------------------------------------------------- */

/* The child plays the activated service: it finds the listener at fd 3 through the
 * environment systemd would set, serves one client, and exits 0 on success. */
static int activated_child(void)
{
    char names[64];
    tt_loop_t *loop;
    tt_server_t *s;
    int n = tt_listen_fds(true, names, sizeof(names));
    if (n != 1 || strcmp(names, "web") != 0 || getenv("LISTEN_FDS") != NULL)
        return 10;
    if (tt_loop_init(&loop) < 0)
        return 11;
    if (tt_server_listen_fd(loop, TT_LISTEN_FDS_START, NULL, &srv_h, NULL, &s) < 0)
        return 12;
    memset(&S, 0, sizeof(S));
    while (S.opens == 0)
        tt_loop_run(loop, TT_RUN_ONCE);
    tt_server_close(s);
    while (S.closes == 0)
        tt_loop_run(loop, TT_RUN_ONCE);
    return tt_loop_close(loop) == 0 ? 0 : 13;
}

Test(admission, socket_activation_takes_the_listener_from_listen_fds)
{
    tt_addr_t addr;
    int lfd = th_tcp_listen_blocking(&addr);

    cr_assert_eq(tt_listen_fds(false, NULL, 0), 0, "no variables: nothing inherited");
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char buf[32];
        if (dup2(lfd, TT_LISTEN_FDS_START) < 0)
            _exit(20);
        snprintf(buf, sizeof(buf), "%d", (int)getpid());
        setenv("LISTEN_PID", buf, 1);
        setenv("LISTEN_FDS", "1", 1);
        setenv("LISTEN_FDNAMES", "web", 1);
        _exit(activated_child());
    }
    close(lfd);
    int fd = th_tcp_connect_blocking(&addr);
    close(fd);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);

    /* Variables meant for another process are ignored; malformed ones are errors. */
    setenv("LISTEN_PID", "1", 1);
    setenv("LISTEN_FDS", "1", 1);
    cr_expect_eq(tt_listen_fds(false, NULL, 0), 0);
    setenv("LISTEN_PID", "12x", 1);
    cr_expect_eq(tt_listen_fds(false, NULL, 0), -EINVAL);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
}

/* ---- listener options ------------------------------------------------------------ */

Test(admission, defer_accept_wakes_the_server_only_once_the_client_has_sent_data)
{
    tt_loop_t *loop;
    tt_addr_t any = th_loopback(0), addr;
    tt_server_opts_t o = {.defer_accept_s = 2, .fastopen_qlen = 16};
    tt_server_t *s;
    bool never = false;

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &o, &srv_h, NULL, &s), 0);
    cr_assert_eq(tt_server_addr(s, &addr), 0);
    int fd = th_tcp_connect_blocking(&addr); /* handshake done, nothing sent */
    th_run_until(loop, &never, 300);
    cr_expect_eq(S.opens, 0, "accepted before any data: %d", S.opens);
    cr_assert_eq(write(fd, "GET /\r\n", 7), 7);
    for (uint64_t t0 = th_now_ms(); S.opens == 0 && th_now_ms() - t0 < 2000;)
        th_run_until(loop, &never, 20);
    cr_expect_eq(S.opens, 1, "accepted once data came: %d", S.opens);

    /* The control: without the option the same client is accepted at once. */
    tt_server_t *plain;
    tt_addr_t paddr;
    cr_assert_eq(tt_server_listen(loop, &any, NULL, &srv_h, NULL, &plain), 0);
    cr_assert_eq(tt_server_addr(plain, &paddr), 0);
    int fd2 = th_tcp_connect_blocking(&paddr);
    th_run_until(loop, &never, 100);
    cr_expect_eq(S.opens, 2, "plain listener accepts without data: %d", S.opens);

    close(fd);
    close(fd2);
    tt_server_close(s);
    tt_server_close(plain);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(admission, bad_listener_options_are_refused_before_anything_happens)
{
    tt_loop_t *loop;
    tt_addr_t any = th_loopback(0);
    tt_server_t *s = NULL;
    tt_server_opts_t bad1 = {.defer_accept_s = -1}, bad2 = {.high_water = 1024, .queue_cap = 512};

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_expect_eq(tt_server_listen(loop, &any, &bad1, &srv_h, NULL, &s), -EINVAL);
    cr_expect_eq(tt_server_listen(loop, &any, &bad2, &srv_h, NULL, &s), -EINVAL);
    cr_expect_null(s);
    cr_expect_eq(tt_loop_handle_count(loop), 0);
    cr_expect_eq(tt_server_listen_fd(loop, -1, NULL, &srv_h, NULL, &s), -EINVAL);
    int notlistening = socket(AF_INET, SOCK_STREAM, 0);
    cr_expect_eq(tt_server_listen_fd(loop, notlistening, NULL, &srv_h, NULL, &s), -EINVAL);
    cr_assert_eq(tt_loop_close(loop), 0);
}
