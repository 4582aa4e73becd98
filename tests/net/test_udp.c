/* UDP on loopback: binding, boundaries, truncation, connected sockets and the
 * refused error that arrives later, backpressure, kernel drops, batching. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define MAXD 64

typedef struct {
    tt_loop_t *loop;
    int listening, closes, drains, errors;
    int listening_inside_open; /* on_listening seen before tt_udp_open returned */
    bool opening;
    int last_err;
    tt_udp_error_info_t last_info;
    int n;                  /* datagrams received */
    size_t len[MAXD], full[MAXD];
    unsigned flags[MAXD];
    char data[MAXD][256];
    tt_addr_t from;
    int want;               /* stop the loop after this many datagrams */
    bool done;
    tt_udp_t *close_on_datagram;
} rx_t;

static void on_listening(tt_udp_t *u)
{
    rx_t *r = tt_udp_get_data(u);
    r->listening++;
    if (r->opening)
        r->listening_inside_open++;
}

static void on_datagram(tt_udp_t *u, const void *d, size_t len, const tt_addr_t *from,
                        unsigned flags, size_t full)
{
    rx_t *r = tt_udp_get_data(u);
    if (r->n < MAXD) {
        r->len[r->n] = len;
        r->full[r->n] = full;
        r->flags[r->n] = flags;
        memcpy(r->data[r->n], d, len < 256 ? len : 256);
    }
    r->from = *from;
    r->n++;
    if (r->want > 0 && r->n >= r->want)
        r->done = true;
    if (r->close_on_datagram == u)
        cr_assert_eq(tt_udp_close(u), 0);
}

static void on_error(tt_udp_t *u, int err, const tt_udp_error_info_t *info)
{
    rx_t *r = tt_udp_get_data(u);
    r->errors++;
    r->last_err = err;
    r->last_info = *info;
    r->done = true;
}

static void on_drain(tt_udp_t *u)
{
    rx_t *r = tt_udp_get_data(u);
    r->drains++;
}

static void on_close(tt_udp_t *u)
{
    rx_t *r = tt_udp_get_data(u);
    r->closes++;
}

static const tt_udp_handlers_t H = {.on_listening = on_listening, .on_datagram = on_datagram,
                                    .on_error = on_error, .on_drain = on_drain,
                                    .on_close = on_close};

static tt_udp_t *open_on(tt_loop_t *loop, const char *host, const tt_udp_opts_t *o, rx_t *r)
{
    tt_addr_t a;
    tt_udp_t *u = NULL;
    cr_assert_eq(tt_addr_parse(&a, host, 0), 0);
    r->loop = loop;
    r->opening = true;
    int err = tt_udp_open(loop, &a, o, &H, r, &u);
    r->opening = false;
    cr_assert_eq(err, 0, "tt_udp_open(%s): %s", host, tt_strerror(err));
    return u;
}

static tt_addr_t addr_of(tt_udp_t *u)
{
    tt_addr_t a;
    cr_assert_eq(tt_udp_addr(u, &a), 0);
    return a;
}

/* A port on 127.0.0.1 with nothing bound to it (bound, read, then released). */
static uint16_t closed_port(void)
{
    tt_addr_t a = th_loopback(0);
    socklen_t len = sizeof(a.u.in4);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, &a.u.sa, a.len), 0);
    cr_assert_eq(getsockname(fd, &a.u.sa, &len), 0);
    close(fd);
    return tt_addr_port(&a);
}

static void close_and_finish(tt_loop_t *loop, tt_udp_t **socks, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(tt_udp_close(socks[i]), 0);
    th_run(loop, 5000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(udp, bind_port_zero_reports_port_and_listening_comes_from_the_loop)
{
    tt_loop_t *loop;
    rx_t r = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *u = open_on(loop, "127.0.0.1", NULL, &r);
    tt_addr_t a = addr_of(u);
    cr_expect_neq(tt_addr_port(&a), 0, "the kernel's port is reported");
    cr_expect_eq(r.listening, 0, "listening %d before the loop ran", r.listening);
    cr_assert_eq(tt_loop_close(loop), -EBUSY, "an open UDP socket keeps the loop busy");
    tt_loop_run(loop, TT_RUN_NOWAIT);
    cr_expect_eq(r.listening, 1, "listening %d", r.listening);
    cr_expect_eq(r.listening_inside_open, 0);
    cr_assert_eq(tt_udp_close(u), 0);
    cr_assert_eq(tt_udp_close(u), -EINVAL, "second close refused");
    cr_expect_eq(r.closes, 0, "on_close comes from the loop");
    th_run(loop, 2000);
    cr_expect_eq(r.closes, 1, "closes %d", r.closes);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(udp, invalid_calls_change_nothing)
{
    tt_loop_t *loop;
    rx_t r = {0};
    tt_udp_t *u = NULL;
    tt_addr_t a = th_loopback(0), bad = {0};
    tt_udp_opts_t big = {.recv_size = TT_UDP_MAX_RECV_SIZE + 1};
    tt_udp_opts_t caps = {.high_water = 100, .queue_cap = 50};

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_expect_eq(tt_udp_open(NULL, &a, NULL, &H, &r, &u), -EINVAL);
    cr_expect_eq(tt_udp_open(loop, &bad, NULL, &H, &r, &u), -EINVAL);
    cr_expect_eq(tt_udp_open(loop, &a, &big, &H, &r, &u), -EINVAL);
    cr_expect_eq(tt_udp_open(loop, &a, &caps, &H, &r, &u), -EINVAL);
    cr_expect_eq(tt_loop_handle_count(loop), 0);
    u = open_on(loop, "127.0.0.1", NULL, &r);
    cr_expect_eq(tt_udp_send(u, "x", 1, NULL), -EDESTADDRREQ);
    cr_expect_eq(tt_udp_send(u, NULL, 1, &a), -EINVAL);
    tt_addr_t v6;
    cr_assert_eq(tt_addr_parse(&v6, "::1", 9), 0);
    cr_expect_eq(tt_udp_send(u, "x", 1, &v6), -EAFNOSUPPORT);
    cr_expect_eq(tt_udp_join(u, &a, NULL), -EINVAL, "127.0.0.1 is not a group");
    cr_expect_eq(tt_udp_set_ttl(u, 0), -EINVAL);
    cr_expect_eq(tt_udp_set_tos(u, 256), -EINVAL);
    cr_expect_eq(tt_udp_disconnect(u), -ENOTCONN);
    cr_expect_eq(tt_udp_path_mtu(u, NULL, &(int){0}), -ENOTCONN);
    tt_addr_t grp;
    cr_assert_eq(tt_addr_parse(&grp, "239.1.2.3", 0), 0);
    cr_expect_eq(tt_udp_join(u, &grp, "no-such-if0"), -ENODEV);
    tt_udp_stats_t st;
    cr_assert_eq(tt_udp_get_stats(u, &st), 0);
    cr_expect_eq(st.send_errors, 0, "refused arguments are not send errors");
    cr_expect_eq(st.datagrams_out, 0);
    close_and_finish(loop, &u, 1);
}

Test(udp, datagrams_keep_boundaries_and_sender_address_in_any_order)
{
    tt_loop_t *loop;
    rx_t rr = {0}, sr = {0};
    static const size_t sizes[] = {0, 1, 7, 100, 1400, 2048};
    const int n = (int)(sizeof(sizes) / sizeof(sizes[0]));
    char buf[2048];

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *rx = open_on(loop, "127.0.0.1", NULL, &rr);
    tt_udp_t *tx = open_on(loop, "127.0.0.1", NULL, &sr);
    tt_addr_t to = addr_of(rx), txa = addr_of(tx);
    for (int i = 0; i < n; i++) {
        memset(buf, 'a' + i, sizes[i]);
        cr_assert_eq(tt_udp_send(tx, buf, sizes[i], &to), 0);
    }
    rr.want = n;
    cr_assert(th_run_until(loop, &rr.done, 5000), "got %d of %d datagrams", rr.n, n);
    cr_expect_eq(rr.n, n, "got %d datagrams, sent %d", rr.n, n);
    /* Loopback keeps order in practice; UDP does not promise it, so match by size. */
    for (int i = 0; i < n; i++) {
        int k = -1;
        for (int j = 0; j < rr.n; j++)
            if (rr.len[j] == sizes[i])
                k = j;
        cr_assert_geq(k, 0, "no datagram of %zu bytes arrived", sizes[i]);
        cr_expect_eq(rr.full[k], sizes[i], "full_len %zu != %zu", rr.full[k], sizes[i]);
        cr_expect_eq(rr.flags[k], 0u, "flags %u", rr.flags[k]);
        size_t cmp = sizes[i] < 256 ? sizes[i] : 256;
        for (size_t b = 0; b < cmp; b++)
            cr_assert_eq(rr.data[k][b], 'a' + i, "byte %zu of datagram %d", b, i);
    }
    cr_expect_eq(tt_addr_port(&rr.from), tt_addr_port(&txa), "from port %u, sender %u",
                 tt_addr_port(&rr.from), tt_addr_port(&txa));
    tt_udp_stats_t st;
    cr_assert_eq(tt_udp_get_stats(rx, &st), 0);
    cr_expect_eq(st.datagrams_in, (uint64_t)n, "datagrams_in %llu",
                 (unsigned long long)st.datagrams_in);
    cr_expect_eq(st.bytes_in, 0 + 1 + 7 + 100 + 1400 + 2048, "bytes_in %llu",
                 (unsigned long long)st.bytes_in);
    cr_assert_eq(tt_udp_get_stats(tx, &st), 0);
    cr_expect_eq(st.datagrams_out, (uint64_t)n);
    tt_udp_t *s[] = {rx, tx};
    close_and_finish(loop, s, 2);
}

Test(udp, datagram_longer_than_slot_is_reported_truncated_with_real_length)
{
    tt_loop_t *loop;
    rx_t rr = {0}, sr = {0};
    tt_udp_opts_t o = {.recv_size = 512};
    char buf[1000];

    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)(i % 251);
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *rx = open_on(loop, "127.0.0.1", &o, &rr);
    tt_udp_t *tx = open_on(loop, "127.0.0.1", NULL, &sr);
    tt_addr_t to = addr_of(rx);
    cr_assert_eq(tt_udp_send(tx, buf, sizeof(buf), &to), 0);
    cr_assert_eq(tt_udp_send(tx, buf, 512, &to), 0);
    rr.want = 2;
    cr_assert(th_run_until(loop, &rr.done, 5000), "got %d datagrams", rr.n);
    int cut = rr.full[0] == 1000 ? 0 : 1;
    cr_expect_eq(rr.len[cut], 512, "delivered %zu", rr.len[cut]);
    cr_expect_eq(rr.full[cut], 1000, "real length %zu", rr.full[cut]);
    cr_expect_eq(rr.flags[cut], TT_UDP_TRUNCATED, "flags %u", rr.flags[cut]);
    cr_expect_eq(memcmp(rr.data[cut], buf, 256), 0);
    cr_expect_eq(rr.len[1 - cut], 512);
    cr_expect_eq(rr.full[1 - cut], 512);
    cr_expect_eq(rr.flags[1 - cut], 0u, "exactly the slot size is not truncated");
    tt_udp_stats_t st;
    cr_assert_eq(tt_udp_get_stats(rx, &st), 0);
    cr_expect_eq(st.truncated, 1, "truncated %llu", (unsigned long long)st.truncated);
    tt_udp_t *s[] = {rx, tx};
    close_and_finish(loop, s, 2);
}

Test(udp, connected_send_to_closed_port_reports_refused_later_with_the_peer)
{
    tt_loop_t *loop;
    rx_t r = {0};
    uint16_t port = closed_port();
    tt_addr_t peer = th_loopback(port);

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *u = open_on(loop, "127.0.0.1", NULL, &r);
    cr_assert_eq(tt_udp_connect(u, &peer), 0, "connect sends nothing and cannot be refused");
    tt_addr_t got;
    cr_assert_eq(tt_udp_peer_addr(u, &got), 0);
    cr_expect_eq(tt_addr_port(&got), port);
    cr_assert_eq(tt_udp_send(u, "ping", 4, NULL), 0, "the refusal is not known yet");
    cr_assert(th_run_until(loop, &r.done, 5000), "no error event");
    cr_expect_eq(r.last_err, -ECONNREFUSED, "error %s", tt_err_name(r.last_err));
    cr_expect_eq(tt_addr_port(&r.last_info.peer), port, "peer port %u, want %u",
                 tt_addr_port(&r.last_info.peer), port);
    char host[TT_ADDR_STRLEN];
    cr_assert_geq(tt_addr_format_host(&r.last_info.offender, host, sizeof(host)), 0);
    cr_expect_str_eq(host, "127.0.0.1", "offender %s", host);
    cr_expect_eq(r.last_info.origin, 2 /* SO_EE_ORIGIN_ICMP */, "origin %u", r.last_info.origin);
    cr_expect_eq(r.last_info.type, 3, "ICMP destination unreachable");
    cr_expect_eq(r.last_info.code, 3, "ICMP port unreachable");
    cr_expect_eq(r.errors, 1, "errors %d", r.errors);
    /* The socket stays usable: nothing here is fatal for a datagram socket. */
    cr_expect_eq(tt_udp_send(u, "ping", 4, NULL), 0);
    tt_udp_stats_t st;
    cr_assert_eq(tt_udp_get_stats(u, &st), 0);
    cr_expect_eq(st.async_errors, 1, "async_errors %llu", (unsigned long long)st.async_errors);
    cr_expect_eq(st.datagrams_out, 2, "datagrams_out %llu", (unsigned long long)st.datagrams_out);
    close_and_finish(loop, &u, 1);
}

/* The kernel hands the pending ICMP error to the next send, whatever it is about;
 * tether must not make that unrelated datagram fail. */
Test(udp, send_after_refusal_is_not_failed_by_the_earlier_error)
{
    tt_loop_t *loop;
    rx_t r = {0}, rr = {0};
    tt_addr_t dead = th_loopback(closed_port());

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *u = open_on(loop, "127.0.0.1", NULL, &r);
    tt_udp_t *rx = open_on(loop, "127.0.0.1", NULL, &rr);
    tt_addr_t live = addr_of(rx);
    cr_assert_eq(tt_udp_send(u, "a", 1, &dead), 0);
    /* On loopback the ICMP reply is queued before sendmsg returns. */
    cr_assert_eq(tt_udp_send(u, "b", 1, &live), 0, "stale error leaked into a send");
    rr.want = 1;
    cr_assert(th_run_until(loop, &rr.done, 5000), "datagram to the live port lost");
    if (r.errors == 0)
        cr_assert(th_run_until(loop, &r.done, 5000), "no error event");
    cr_expect_eq(rr.n, 1);
    cr_expect_eq(rr.data[0][0], 'b');
    cr_expect_eq(r.errors, 1, "errors %d", r.errors);
    cr_expect_eq(r.last_err, -ECONNREFUSED, "error %s", tt_err_name(r.last_err));
    cr_expect_eq(tt_addr_port(&r.last_info.peer), tt_addr_port(&dead));
    tt_udp_t *s[] = {u, rx};
    close_and_finish(loop, s, 2);
}

Test(udp, disconnect_keeps_the_chosen_port)
{
    tt_loop_t *loop;
    rx_t r = {0}, sr = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *rx = open_on(loop, "127.0.0.1", NULL, &r);
    tt_udp_t *tx = open_on(loop, "127.0.0.1", NULL, &sr);
    tt_addr_t before = addr_of(rx), txa = addr_of(tx);
    cr_assert_eq(tt_udp_connect(rx, &txa), 0);
    cr_assert_eq(tt_udp_disconnect(rx), 0);
    cr_expect_eq(tt_udp_peer_addr(rx, &(tt_addr_t){0}), -ENOTCONN);
    cr_assert_eq(tt_udp_send(tx, "z", 1, &before), 0);
    r.want = 1;
    cr_assert(th_run_until(loop, &r.done, 5000), "nothing arrived on the old port");
    cr_expect_eq(r.n, 1);
    tt_udp_t *s[] = {rx, tx};
    close_and_finish(loop, s, 2);
}

Test(udp, ipv6_and_ipv4_on_a_dual_stack_socket)
{
    tt_loop_t *loop;
    rx_t rr = {0}, r4 = {0}, r6 = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *rx = open_on(loop, "::", NULL, &rr);
    tt_udp_t *tx4 = open_on(loop, "127.0.0.1", NULL, &r4);
    tt_udp_t *tx6 = open_on(loop, "::1", NULL, &r6);
    tt_addr_t ra = addr_of(rx);
    uint16_t port = tt_addr_port(&ra);
    tt_addr_t to4 = th_loopback(port), to6;
    cr_assert_eq(tt_addr_parse(&to6, "::1", port), 0);
    cr_assert_eq(tt_udp_send(tx4, "four", 4, &to4), 0);
    rr.want = 1;
    cr_assert(th_run_until(loop, &rr.done, 5000), "IPv4 datagram lost");
    cr_expect_eq(rr.from.u.sa.sa_family, AF_INET, "an IPv4 sender is reported as IPv4");
    /* A reply to `from` goes back over IPv4 through the dual-stack socket. */
    cr_assert_eq(tt_udp_send(rx, "back", 4, &rr.from), 0);
    r4.want = 1;
    cr_assert(th_run_until(loop, &r4.done, 5000), "reply to the IPv4 sender lost");
    cr_expect_eq(memcmp(r4.data[0], "back", 4), 0);
    rr.done = false;
    rr.want = 2;
    cr_assert_eq(tt_udp_send(tx6, "six", 3, &to6), 0);
    cr_assert(th_run_until(loop, &rr.done, 5000), "IPv6 datagram lost");
    cr_expect_eq(rr.from.u.sa.sa_family, AF_INET6);
    cr_expect_eq(rr.len[1], 3);
    tt_udp_t *s[] = {rx, tx4, tx6};
    close_and_finish(loop, s, 3);
}

Test(udp, oversize_datagram_returns_emsgsize_and_path_mtu_is_known)
{
    tt_loop_t *loop;
    rx_t r = {0}, rr = {0};
    size_t big = TT_UDP_MAX_DATAGRAM + 1;
    char *buf = calloc(1, big);

    cr_assert_not_null(buf);
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *u = open_on(loop, "127.0.0.1", NULL, &r);
    tt_udp_t *rx = open_on(loop, "127.0.0.1", NULL, &rr);
    tt_addr_t to = addr_of(rx);
    cr_expect_eq(tt_udp_send(u, buf, big, &to), -EMSGSIZE);
    /* IPv4's own limit is 65535 - 20 - 8: the kernel refuses 65508. */
    cr_expect_eq(tt_udp_send(u, buf, 65508, &to), -EMSGSIZE);
    cr_assert_eq(tt_udp_set_pmtu_mode(u, TT_UDP_PMTU_DO), 0);
    int mtu = 0, mtu2 = 0;
    cr_assert_eq(tt_udp_path_mtu(u, &to, &mtu), 0);
    cr_assert_eq(tt_udp_connect(u, &to), 0);
    cr_assert_eq(tt_udp_path_mtu(u, NULL, &mtu2), 0);
    cr_expect_eq(mtu, mtu2, "the two ways disagree: %d vs %d", mtu, mtu2);
    cr_expect_gt(mtu, 1279, "loopback MTU %d", mtu);
    /* With DF set, a datagram over the path MTU fails locally with EMSGSIZE. */
    if (mtu < 65508) {
        cr_expect_eq(tt_udp_send(u, buf, (size_t)mtu, NULL), -EMSGSIZE);
    }
    cr_expect_eq(tt_udp_send(u, buf, 1000, NULL), 0);
    rr.want = 1;
    cr_assert(th_run_until(loop, &rr.done, 5000));
    th_run_until(loop, &(bool){false}, 50); /* a local error report would show here */
    cr_expect_eq(r.errors, 0, "a failed send is not reported twice (errors %d)", r.errors);
    free(buf);
    tt_udp_t *s[] = {u, rx};
    close_and_finish(loop, s, 2);
}

/* ---- queue and backpressure ---------------------------------------------------- */

typedef struct {
    tt_udp_t *tx;
    tt_addr_t to;
    int burst;
    int full_at;    /* index of the first send that returned TT_SEND_FULL, or -1 */
    int refused_at; /* index of the first -ENOBUFS, or -1 */
    int sent_ok;
} burst_t;

static burst_t g_burst;

/* Sends made inside the socket's own on_datagram are queued: the burst fills the
 * queue without the kernel ever being full. */
static void burst_on_datagram(tt_udp_t *u, const void *d, size_t len, const tt_addr_t *from,
                              unsigned flags, size_t full)
{
    char payload[1000];
    (void)d, (void)len, (void)from, (void)flags, (void)full;
    memset(payload, 'q', sizeof(payload));
    for (int i = 0; i < g_burst.burst; i++) {
        int r = tt_udp_send(u, payload, sizeof(payload), &g_burst.to);
        if (r == TT_SEND_FULL && g_burst.full_at < 0)
            g_burst.full_at = i;
        if (r == -ENOBUFS && g_burst.refused_at < 0)
            g_burst.refused_at = i;
        if (r >= 0)
            g_burst.sent_ok++;
    }
}

Test(udp, queue_past_high_water_says_full_then_drains_and_cap_refuses_one_datagram)
{
    tt_loop_t *loop;
    rx_t sr = {0}, rr = {0}, tr = {0};
    tt_udp_opts_t o = {.high_water = 4000, .queue_cap = 10000, .rcvbuf = 1 << 20};
    tt_udp_handlers_t bh = H;
    tt_udp_t *tx;
    tt_addr_t any = th_loopback(0);

    bh.on_datagram = burst_on_datagram;
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *sink = open_on(loop, "127.0.0.1", &o, &rr);
    sr.loop = loop;
    cr_assert_eq(tt_udp_open(loop, &any, &o, &bh, &sr, &tx), 0);
    tt_udp_t *trig = open_on(loop, "127.0.0.1", NULL, &tr);
    g_burst = (burst_t){.tx = tx, .to = addr_of(sink), .burst = 12, .full_at = -1,
                        .refused_at = -1};
    tt_addr_t txa = addr_of(tx);
    cr_assert_eq(tt_udp_send(trig, "go", 2, &txa), 0);
    rr.want = 9;
    cr_assert(th_run_until(loop, &rr.done, 5000), "sink got %d", rr.n);
    th_run_until(loop, &(bool){false}, 50);
    /* Each entry holds 1000 bytes plus its header: the 4th reaches 4000. */
    cr_expect_eq(g_burst.full_at, 3, "first TT_SEND_FULL at %d", g_burst.full_at);
    cr_expect_eq(g_burst.refused_at, 9, "first -ENOBUFS at %d", g_burst.refused_at);
    cr_expect_eq(g_burst.sent_ok, 9, "accepted %d", g_burst.sent_ok);
    cr_expect_eq(rr.n, 9, "sink got %d", rr.n);
    cr_expect_eq(sr.drains, 1, "drains %d", sr.drains);
    cr_expect_eq(sr.closes, 0, "a refused datagram does not close the socket");
    tt_udp_stats_t st;
    cr_assert_eq(tt_udp_get_stats(tx, &st), 0);
    cr_expect_eq(st.refused, 3, "refused %llu", (unsigned long long)st.refused);
    cr_expect_eq(st.datagrams_out, 9);
    cr_expect_eq(st.send_calls, 1, "one sendmmsg for the queued burst, got %llu",
                 (unsigned long long)st.send_calls);
    cr_expect_eq(st.queued_datagrams, 0);
    cr_expect_eq(tt_udp_send(tx, "after", 5, &g_burst.to), 0, "the socket still sends");
    tt_udp_t *s[] = {sink, tx, trig};
    close_and_finish(loop, s, 3);
}

Test(udp, kernel_drops_are_counted_from_rxq_ovfl)
{
    tt_loop_t *loop;
    rx_t rr = {0};
    tt_udp_opts_t o = {.rcvbuf = 4096};
    const int blast = 200;
    char buf[1000];

    memset(buf, 'd', sizeof(buf));
    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *rx = open_on(loop, "127.0.0.1", &o, &rr);
    tt_addr_t to = addr_of(rx);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    for (int i = 0; i < blast; i++)
        cr_assert_eq(sendto(fd, buf, sizeof(buf), 0, &to.u.sa, to.len), (ssize_t)sizeof(buf));
    th_run_until(loop, &(bool){false}, 100);
    /* The drop count rides on the next datagram queued after the drops. */
    cr_assert_eq(sendto(fd, buf, 10, 0, &to.u.sa, to.len), 10);
    rr.want = rr.n + 1;
    cr_assert(th_run_until(loop, &rr.done, 5000), "last datagram lost");
    close(fd);
    tt_udp_stats_t st;
    cr_assert_eq(tt_udp_get_stats(rx, &st), 0);
    cr_expect_gt(st.kernel_drops, 0, "a 4 KiB buffer cannot hold 200 KB");
    cr_expect_eq(st.datagrams_in + st.kernel_drops, (uint64_t)blast + 1,
                 "received %llu + dropped %llu != sent %d", (unsigned long long)st.datagrams_in,
                 (unsigned long long)st.kernel_drops, blast + 1);
    close_and_finish(loop, &rx, 1);
}

Test(udp, close_inside_on_datagram_delivers_one_close_and_frees)
{
    tt_loop_t *loop;
    rx_t rr = {0}, sr = {0};

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_udp_t *rx = open_on(loop, "127.0.0.1", NULL, &rr);
    tt_udp_t *tx = open_on(loop, "127.0.0.1", NULL, &sr);
    tt_addr_t to = addr_of(rx);
    rr.close_on_datagram = rx;
    for (int i = 0; i < 5; i++)
        cr_assert_eq(tt_udp_send(tx, "x", 1, &to), 0);
    cr_assert_eq(tt_udp_close(tx), 0);
    th_run(loop, 5000);
    cr_expect_eq(rr.n, 1, "no datagram after close: got %d", rr.n);
    cr_expect_eq(rr.closes, 1);
    cr_expect_eq(sr.closes, 1);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- batching: system calls for 10 000 datagrams --------------------------------- */

#define ECHO_TOTAL 10000
#define ECHO_WINDOW 256

typedef struct {
    tt_udp_t *cli, *srv;
    tt_addr_t srv_addr;
    int sent, echoed, bad;
    bool done;
} echo_t;

static echo_t g_echo;

static void echo_srv(tt_udp_t *u, const void *d, size_t len, const tt_addr_t *from,
                     unsigned flags, size_t full)
{
    (void)flags, (void)full;
    cr_assert_geq(tt_udp_send(u, d, len, from), 0);
}

static void echo_send_more(tt_udp_t *u, int n)
{
    for (int i = 0; i < n && g_echo.sent < ECHO_TOTAL; i++) {
        uint32_t seq = (uint32_t)g_echo.sent++;
        char msg[64];
        memset(msg, 0, sizeof(msg));
        memcpy(msg, &seq, sizeof(seq));
        cr_assert_geq(tt_udp_send(u, msg, sizeof(msg), &g_echo.srv_addr), 0);
    }
}

static void echo_cli(tt_udp_t *u, const void *d, size_t len, const tt_addr_t *from,
                     unsigned flags, size_t full)
{
    (void)d, (void)from, (void)flags, (void)full;
    if (len != 64)
        g_echo.bad++;
    if (++g_echo.echoed == ECHO_TOTAL)
        g_echo.done = true;
    echo_send_more(u, 1); /* keep the window full */
}

static void echo_start(tt_udp_t *u) { echo_send_more(u, ECHO_WINDOW); }

Test(udp, ten_thousand_datagrams_take_far_fewer_system_calls)
{
    tt_loop_t *loop;
    tt_addr_t a = th_loopback(0);
    tt_udp_opts_t o = {.rcvbuf = 1 << 20};
    tt_udp_handlers_t sh = {.on_datagram = echo_srv};
    tt_udp_handlers_t ch = {.on_datagram = echo_cli, .on_listening = echo_start};
    tt_udp_stats_t cs, ss;

    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_udp_open(loop, &a, &o, &sh, NULL, &g_echo.srv), 0);
    g_echo.srv_addr = addr_of(g_echo.srv);
    cr_assert_eq(tt_udp_open(loop, &a, &o, &ch, NULL, &g_echo.cli), 0);
    cr_assert(th_run_until(loop, &g_echo.done, 20000), "echoed %d of %d", g_echo.echoed,
              ECHO_TOTAL);
    cr_assert_eq(tt_udp_get_stats(g_echo.cli, &cs), 0);
    cr_assert_eq(tt_udp_get_stats(g_echo.srv, &ss), 0);
    fprintf(stderr,
            "udp batching, %d datagrams each way: server recvmmsg %llu sendmmsg %llu, "
            "client recvmmsg %llu send calls %llu, kernel drops %llu/%llu\n",
            ECHO_TOTAL, (unsigned long long)ss.recv_calls, (unsigned long long)ss.send_calls,
            (unsigned long long)cs.recv_calls, (unsigned long long)cs.send_calls,
            (unsigned long long)ss.kernel_drops, (unsigned long long)cs.kernel_drops);
    cr_expect_eq(g_echo.bad, 0);
    cr_expect_eq(ss.datagrams_in, ECHO_TOTAL, "server got %llu",
                 (unsigned long long)ss.datagrams_in);
    cr_expect_eq(ss.datagrams_out, ECHO_TOTAL);
    cr_expect_lt(ss.recv_calls, ECHO_TOTAL / 10, "server recvmmsg calls %llu",
                 (unsigned long long)ss.recv_calls);
    cr_expect_lt(ss.send_calls, ECHO_TOTAL / 10, "server send calls %llu",
                 (unsigned long long)ss.send_calls);
    cr_expect_lt(cs.recv_calls, ECHO_TOTAL / 10, "client recvmmsg calls %llu",
                 (unsigned long long)cs.recv_calls);
    cr_expect_lt(cs.send_calls, ECHO_TOTAL / 10, "client send calls %llu",
                 (unsigned long long)cs.send_calls);
    tt_udp_t *s[] = {g_echo.srv, g_echo.cli};
    close_and_finish(loop, s, 2);
}
