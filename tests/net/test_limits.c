/* Limits that hold under pressure: max connections (waiting in the backlog, or
 * accept-and-close), per-address caps, the accept rate, and running out of
 * descriptors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

typedef struct {
    int opens, closes, paused, resumed, refused, nofile;
    int last_refused_err;
    tt_conn_t *first;
    tt_server_t *srv;
    size_t max_seen;
} srv_state_t;

static srv_state_t S;

static void on_event(tt_server_t *srv, int ev, int err, const tt_addr_t *peer)
{
    (void)srv, (void)peer;
    if (ev == TT_SERVER_PAUSED)
        S.paused++;
    else if (ev == TT_SERVER_RESUMED)
        S.resumed++;
    else if (ev == TT_SERVER_REFUSED) {
        S.refused++;
        S.last_refused_err = err;
    } else if (ev == TT_SERVER_NOFILE)
        S.nofile++;
}

static void srv_open(tt_conn_t *c)
{
    S.opens++;
    if (S.first == NULL)
        S.first = c;
    size_t n = tt_server_conn_count(tt_conn_server(c));
    if (n > S.max_seen)
        S.max_seen = n;
}

static void srv_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c, (void)info;
    S.closes++;
}

/* ---- a client side that counts ---------------------------------------------- */

typedef struct {
    int opened, closed, got_bytes;
    char msg[128];
    size_t msg_len;
} cli_t;

static void cli_open(tt_conn_t *c) { ((cli_t *)tt_conn_get_data(c))->opened++; }
static void cli_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    cli_t *k = tt_conn_get_data(c);
    (void)pending;
    if (k->msg_len + n < sizeof(k->msg)) {
        memcpy(k->msg + k->msg_len, d, n);
        k->msg_len += n;
    }
    k->got_bytes += (int)n;
}
static void cli_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)info;
    ((cli_t *)tt_conn_get_data(c))->closed++;
}

static const tt_conn_handlers_t cli_h = {
    .on_open = cli_open, .on_data = cli_data, .on_close = cli_close};

static tt_server_t *listen_with(tt_loop_t *loop, tt_server_opts_t *o, tt_addr_t *addr)
{
    tt_conn_handlers_t h = {.on_open = srv_open, .on_close = srv_close};
    tt_addr_t any = th_loopback(0);
    tt_server_t *s;
    o->on_event = on_event;
    cr_assert_eq(tt_server_listen(loop, &any, o, &h, NULL, &s), 0);
    cr_assert_eq(tt_server_addr(s, addr), 0);
    return s;
}

static void destroy_first(tt_timer_t *t, void *arg)
{
    (void)arg;
    tt_destroy(S.first, 0);
    tt_timer_close(t);
}

typedef struct {
    tt_conn_t **c;
    cli_t *k;
    int n;
} clients_t;

/* Destroy the clients still open (a closed one's handle is gone) and the server. */
static void close_all(tt_timer_t *t, void *arg)
{
    clients_t *cs = arg;
    for (int i = 0; i < cs->n; i++)
        if (cs->k[i].closed == 0)
            tt_destroy(cs->c[i], 0);
    tt_server_close(S.srv);
    tt_timer_close(t);
}

Test(limits, client_over_max_conns_waits_in_backlog_and_is_served_when_one_leaves)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t o = {.max_conns = 2};
    cli_t k[3] = {0};
    tt_conn_t *c[3];
    tt_timer_t *t1, *t2;

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    S.srv = listen_with(loop, &o, &addr);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tt_connect(loop, &addr, NULL, &cli_h, &k[i], &c[i]), 0);
    /* All three clients complete the TCP handshake (the kernel's backlog), but the
     * server only accepts two until one leaves at 300 ms. */
    cr_assert_eq(tt_timer_init(loop, &t1, destroy_first, NULL), 0);
    cr_assert_eq(tt_timer_start(t1, 300, 0), 0);
    clients_t cs = {c, k, 3};
    cr_assert_eq(tt_timer_init(loop, &t2, close_all, &cs), 0);
    cr_assert_eq(tt_timer_start(t2, 600, 0), 0);

    bool never = false;
    th_run_until(loop, &never, 250);
    cr_expect_eq(S.opens, 2, "accepted before anyone left: %d", S.opens);
    cr_expect_eq(S.paused, 1, "paused events: %d", S.paused);
    cr_expect(tt_server_is_paused(S.srv));

    th_run(loop, 5000);
    cr_expect_eq(S.opens, 3, "the waiting client was served: opens %d", S.opens);
    cr_expect_eq(S.resumed, 1, "resumed events: %d", S.resumed);
    cr_expect_eq(S.max_seen, 2, "never more than max_conns at once: %zu", S.max_seen);
    cr_expect_eq(S.refused, 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(limits, limit_close_mode_sends_the_message_and_closes_the_extra_client)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t o = {.max_conns = 1, .limit_close = true, .limit_message = "busy\n"};
    cli_t k[2] = {0};
    tt_conn_t *c[2] = {0};
    tt_timer_t *t;

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    S.srv = listen_with(loop, &o, &addr);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &cli_h, &k[0], &c[0]), 0);
    bool never = false;
    th_run_until(loop, &never, 150);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &cli_h, &k[1], &c[1]), 0);
    th_run_until(loop, &never, 300);
    cr_expect_eq(S.opens, 1);
    cr_expect_eq(S.refused, 1, "refused: %d", S.refused);
    cr_expect_eq(S.last_refused_err, -EBUSY, "err %d", S.last_refused_err);
    cr_expect_eq(k[1].msg_len, 5, "message bytes: %zu", k[1].msg_len);
    cr_expect_eq(memcmp(k[1].msg, "busy\n", 5), 0);
    cr_expect_eq(k[1].closed, 1, "the extra client was closed");
    cr_expect_eq(k[0].closed, 0, "the first client is untouched");
    clients_t cs = {c, k, 2};
    cr_assert_eq(tt_timer_init(loop, &t, close_all, &cs), 0);
    cr_assert_eq(tt_timer_start(t, 0, 0), 0);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(limits, per_address_cap_refuses_the_client_over_it)
{
    tt_loop_t *loop;
    tt_addr_t addr, other;
    tt_server_opts_t o = {.max_conns_per_ip = 2};
    cli_t k[4] = {0};
    tt_conn_t *c[4];
    tt_connect_opts_t co = {0};

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    S.srv = listen_with(loop, &o, &addr);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tt_connect(loop, &addr, NULL, &cli_h, &k[i], &c[i]), 0);
    /* A different source address has its own count. */
    cr_assert_eq(tt_addr_parse(&other, "127.0.0.2", 0), 0);
    co.bind_addr = &other;
    cr_assert_eq(tt_connect(loop, &addr, &co, &cli_h, &k[3], &c[3]), 0);
    bool never = false;
    th_run_until(loop, &never, 300);
    cr_expect_eq(S.opens, 3, "two from 127.0.0.1 and one from 127.0.0.2: %d", S.opens);
    cr_expect_eq(S.refused, 1, "refused: %d", S.refused);
    int closed = k[0].closed + k[1].closed + k[2].closed;
    cr_expect_eq(closed, 1, "exactly one 127.0.0.1 client closed: %d", closed);
    cr_expect_eq(k[3].closed, 0);
    for (int i = 0; i < 4; i++)
        if (k[i].closed == 0)
            tt_destroy(c[i], 0);
    tt_server_close(S.srv);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

static int destroy_each(tt_conn_t *c, void *arg)
{
    (void)arg;
    tt_destroy(c, 0);
    return 0;
}

/* Run the loop until `*count` reaches `want` or `ms` pass. */
static void run_until_count(tt_loop_t *loop, int *count, int want, uint64_t ms)
{
    for (uint64_t t0 = th_now_ms(); *count < want && th_now_ms() - t0 < ms;) {
        bool never = false;
        th_run_until(loop, &never, 5); /* bounded even when nothing happens */
    }
}

/* A client that resets its connection still gives its slot back: the count is
 * released from the address taken at accept, not asked of a socket that (after
 * the RST) no longer has a peer. */
Test(limits, per_address_slot_comes_back_when_a_client_resets)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t o = {.max_conns_per_ip = 1};

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    S.srv = listen_with(loop, &o, &addr);
    for (int i = 0; i < 3; i++) {
        int fd = th_tcp_connect_blocking(&addr);
        run_until_count(loop, &S.opens, i + 1, 2000);
        cr_assert_eq(S.opens, i + 1, "client %d admitted: opens %d, refused %d", i, S.opens,
                     S.refused);
        struct linger lg = {1, 0}; /* close() sends RST */
        cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        close(fd);
        run_until_count(loop, &S.closes, i + 1, 2000);
        cr_assert_eq(S.closes, i + 1, "the reset reached the server");
    }
    cr_expect_eq(S.refused, 0, "refused: %d", S.refused);
    tt_server_close(S.srv);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* The accept that finds the backlog empty (EAGAIN) costs no token: a burst of 10
 * admits 10 clients that come one after the other, at once. */
Test(limits, accept_burst_admits_as_many_sequential_clients_as_it_holds)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t o = {.accept_rate = 1, .accept_burst = 10};

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    S.srv = listen_with(loop, &o, &addr);
    int fds[10];
    for (int i = 0; i < 10; i++) {
        fds[i] = th_tcp_connect_blocking(&addr);
        /* Well under the 1 s a new token takes at 1/s. */
        run_until_count(loop, &S.opens, i + 1, 400);
    }
    cr_expect_eq(S.opens, 10, "accepted at once: %d of 10", S.opens);
    for (int i = 0; i < 10; i++)
        close(fds[i]);
    tt_server_foreach(S.srv, destroy_each, NULL);
    tt_server_close(S.srv);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- a high-water mark above the default cap -------------------------------------- */

static int big_send_result = -100;
static void send_big_on_open(tt_conn_t *c)
{
    static char block[32 << 20]; /* more than the kernel's buffers can take */
    S.opens++;
    big_send_result = tt_send(c, block, sizeof(block));
    tt_destroy(c, 0);
}

Test(limits, high_water_above_64_mib_reaches_accepted_connections)
{
    tt_loop_t *loop;
    tt_server_t *srv;
    tt_addr_t any = th_loopback(0), addr;
    tt_conn_handlers_t h = {.on_open = send_big_on_open, .on_close = srv_close};
    /* 32 MiB is far over the default mark (64 KiB), well under this one. */
    tt_server_opts_t o = {.high_water = (size_t)100 << 20, .queue_cap = (size_t)200 << 20};

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &o, &h, NULL, &srv), 0);
    cr_assert_eq(tt_server_addr(srv, &addr), 0);
    int fd = th_tcp_connect_blocking(&addr);
    run_until_count(loop, &S.opens, 1, 2000);
    cr_assert_eq(S.opens, 1);
    cr_expect_eq(big_send_result, 0, "32 MiB under a 100 MiB mark: %d (TT_SEND_FULL is 1)",
                 big_send_result);
    close(fd);
    tt_server_close(srv);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(limits, a_high_water_mark_the_cap_would_refuse_is_refused_at_listen)
{
    tt_loop_t *loop;
    tt_server_t *srv = NULL;
    tt_addr_t any = th_loopback(0);
    /* Above the default cap (64 MiB) with no cap given; above UINT32_MAX. */
    tt_server_opts_t o1 = {.high_water = (size_t)100 << 20};
    tt_server_opts_t o2 = {.high_water = (size_t)UINT32_MAX + 1, .queue_cap = SIZE_MAX};

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_expect_eq(tt_server_listen(loop, &any, &o1, NULL, NULL, &srv), -EINVAL);
    cr_expect_eq(tt_server_listen(loop, &any, &o2, NULL, NULL, &srv), -EINVAL);
    cr_expect_null(srv);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(limits, accept_rate_leaves_clients_in_the_backlog_until_a_token_comes)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t o = {.accept_rate = 10, .accept_burst = 2};
    cli_t k[5] = {0};
    tt_conn_t *c[5];

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    S.srv = listen_with(loop, &o, &addr);
    uint64_t t0 = th_now_ms();
    for (int i = 0; i < 5; i++)
        cr_assert_eq(tt_connect(loop, &addr, NULL, &cli_h, &k[i], &c[i]), 0);
    bool never = false;
    th_run_until(loop, &never, 50);
    cr_expect_eq(S.opens, 2, "the burst only: %d", S.opens);
    while (S.opens < 5 && th_now_ms() - t0 < 3000)
        tt_loop_run(loop, TT_RUN_ONCE);
    uint64_t took = th_now_ms() - t0;
    cr_expect_eq(S.opens, 5, "all served eventually: %d", S.opens);
    /* 3 more tokens at 10/s: about 300 ms; none refused. */
    cr_expect(took >= 250 && took < 1500, "took %llu ms", (unsigned long long)took);
    cr_expect_eq(S.refused, 0);
    for (int i = 0; i < 5; i++)
        if (k[i].closed == 0)
            tt_destroy(c[i], 0);
    tt_server_close(S.srv);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* Out of descriptors: the listener must not spin, a client is shed, and accepting
 * recovers once descriptors are free again. */
Test(limits, out_of_descriptors_sheds_a_client_without_spinning_and_recovers)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t o = {0};
    struct rlimit rl;
    int fds[64], nfd = 0;

    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_loop_init(&loop), 0);
    S.srv = listen_with(loop, &o, &addr);

    /* Use up every descriptor under a low limit. */
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    struct rlimit low = {64, rl.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    int fd;
    while (nfd < 64 && (fd = dup(0)) >= 0)
        fds[nfd++] = fd;
    cr_assert_eq(errno, EMFILE);

    /* A raw client (its socket made before the limit bit: free one slot for it). */
    close(fds[--nfd]);
    int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(client, 0);
    cr_assert_eq(connect(client, &addr.u.sa, addr.len), 0);

    uint64_t t0 = th_now_ms();
    int rounds = 0;
    while (S.nofile == 0 && th_now_ms() - t0 < 1000) {
        tt_loop_run(loop, TT_RUN_ONCE);
        rounds++;
    }
    cr_expect_eq(S.nofile, 1, "NOFILE events: %d", S.nofile);
    cr_expect(tt_server_is_paused(S.srv));
    /* While paused the loop sleeps instead of spinning on the readable listener. */
    t0 = th_now_ms();
    rounds = 0;
    while (th_now_ms() - t0 < 50) {
        tt_loop_run(loop, TT_RUN_ONCE);
        rounds++;
    }
    cr_expect_lt(rounds, 10, "rounds in 50 ms while out of descriptors: %d", rounds);
    char b;
    cr_expect_eq(recv(client, &b, 1, 0), 0, "the shed client sees EOF");
    tt_server_totals_t tot;
    cr_assert_eq(tt_server_get_totals(S.srv, &tot), 0);
    cr_expect_eq(tot.refused, 1, "the shed client counts as refused: %llu",
                 (unsigned long long)tot.refused);
    close(client);

    /* Free descriptors: the next client is accepted (retry timer resumes). */
    for (int i = 0; i < nfd; i++)
        close(fds[i]);
    setrlimit(RLIMIT_NOFILE, &rl);
    client = th_tcp_connect_blocking(&addr);
    t0 = th_now_ms();
    while (S.opens == 0 && th_now_ms() - t0 < 2000)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_expect_eq(S.opens, 1, "accepting recovered: opens %d", S.opens);
    cr_expect_geq(S.resumed, 1);
    close(client);
    tt_server_close(S.srv);
    if (S.first != NULL)
        tt_destroy(S.first, 0);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(limits, every_server_event_has_a_name)
{
    cr_expect_str_eq(tt_server_event_name(TT_SERVER_PAUSED), "paused");
    cr_expect_str_eq(tt_server_event_name(TT_SERVER_RESUMED), "resumed");
    cr_expect_str_eq(tt_server_event_name(TT_SERVER_REFUSED), "refused");
    cr_expect_str_eq(tt_server_event_name(TT_SERVER_NOFILE), "out of descriptors");
    cr_expect_str_eq(tt_server_event_name(0), "unknown");
    cr_expect_str_eq(tt_server_event_name(-1), "unknown");
}
