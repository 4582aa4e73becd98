/* Broadcast sends on both backends, and io_uring's batching of them: on io_uring a
 * broadcast to receivers with nothing queued is sent by requests that reach the
 * kernel in the loop's one submission, not a sendmsg per receiver. Every receiver
 * gets every byte in order with many receivers; a receiver closed while its send is still queued, or while
 * the kernel has it and the completion is not yet handled, is closed cleanly with
 * exact counts (run under ASan too); a slow receiver fills its own queue up to the
 * cap without holding the others back; and the system calls one broadcast costs
 * are counted: none per receiver on io_uring. Real sockets on loopback; the
 * receivers are plain sockets. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "relay.h"
#include "stream/conn.h"

static bool on_uring(tt_loop_t *loop) { return strcmp(tt_loop_backend(loop), "io_uring") == 0; }

/* Line l of the relay test: "L%05d " then filler to a length that varies from 16
 * to about 3000 bytes (some copied into the queue, some shared references, some
 * larger than what a small socket takes at once), then the newline. */
static size_t make_line(char *buf, unsigned l)
{
    size_t len = 16 + (size_t)((l * 7919u) % 2990u);
    snprintf(buf, 8, "L%05u", l % 100000);
    buf[6] = ' ';
    for (size_t k = 7; k < len - 1; k++)
        buf[k] = (char)('a' + (l + k) % 26);
    buf[len - 1] = '\n';
    return len;
}

Test(broadcast_batch, many_receivers_get_every_byte_in_order)
{
    enum { N = 200, LINES = 600, BURST = 12 };
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_frame_opts_t fl = tt_frame_line(4000);
    tt_server_opts_t so = {.frame = &fl};
    static int fds[N + 1];
    static relay_sink_t sink[N + 1];
    char *want = malloc((size_t)LINES * 3100), *burst = malloc((size_t)BURST * 3100);
    size_t want_len = 0;

    relay_reset();
    memset(sink, 0, sizeof(sink));
    cr_assert_eq(tt_loop_init(&loop), 0);
    relay.srv = relay_listen(loop, &so, &addr);
    /* fds[0] sends; the receivers have small buffers, so sends are often partial
     * and some of them wait for room. */
    relay_connect(loop, &addr, fds, N + 1, 16384, NULL);
    for (int l = 0; l < LINES; l++)
        want_len += make_line(want + want_len, (unsigned)l);

    bool never = false;
    size_t sent = 0;
    uint64_t t0 = th_now_ms();
    for (int l = 0; l < LINES || th_now_ms() - t0 < 20000;) {
        if (l < LINES) { /* a burst of lines in one send: many messages per read */
            size_t blen = 0;
            for (int k = 0; k < BURST && l < LINES; k++, l++)
                blen += make_line(burst + blen, (unsigned)l);
            cr_assert_eq(send(fds[0], burst, blen, 0), (ssize_t)blen);
            sent += blen;
        }
        th_run_until(loop, &never, 1);
        size_t got = 0;
        for (int i = 1; i <= N; i++) {
            /* Receivers read at different paces: some only every fourth turn. */
            if (i % 4 != 0 || l % 4 == 0)
                relay_drain(fds[i], &sink[i]);
            got += sink[i].len;
        }
        if (l >= LINES && got == (size_t)N * want_len)
            break;
    }
    cr_assert_eq(sent, want_len);
    for (int i = 1; i <= N; i++) {
        cr_assert_eq(sink[i].len, want_len, "receiver %d: %zu bytes of %zu", i, sink[i].len,
                     want_len);
        cr_assert_eq(memcmp(sink[i].buf, want, want_len), 0, "receiver %d: bytes out of order", i);
        tt_conn_stats_t st;
        cr_assert_eq(tt_conn_get_stats(relay.peers[i], &st), 0);
        cr_expect_eq(st.bytes_out, want_len, "receiver %d: bytes_out %llu", i,
                     (unsigned long long)st.bytes_out);
        cr_expect_eq(st.queued_bytes, 0);
        cr_expect_geq(st.packets_out, 1);
        cr_expect_leq(st.packets_out, st.bytes_out);
    }
    cr_expect_eq(relay.closes_total, 0);
    free(want);
    free(burst);
    relay_finish(loop, fds, sink, N + 1);
}

/* ---- closes racing the sends ------------------------------------------------------ */

static int frees;

static void count_free(void *buf, void *arg)
{
    (void)arg;
    frees++;
    free(buf);
}

Test(broadcast_batch, receivers_closed_with_sends_queued_or_in_the_kernel_close_cleanly)
{
    enum { N = 24, SIZE = 2000 };
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t so = {0};
    int fds[N];
    relay_sink_t sink[N] = {{0}};
    char msg[SIZE];

    relay_reset();
    frees = 0;
    cr_assert_eq(tt_loop_init(&loop), 0);
    bool uring = on_uring(loop);
    relay.srv = relay_listen(loop, &so, &addr);
    relay_connect(loop, &addr, fds, N, 0, NULL);
    memset(msg, 'x', SIZE);
    /* A shared payload, and behind it on each receiver an owned buffer whose free
     * callback counts: every one must be released exactly once. */
    cr_assert_eq(tt_server_broadcast(relay.srv, msg, SIZE, NULL), N);
    for (int i = 0; i < N; i++) {
        char *own = malloc(100);
        memset(own, 'o', 100);
        cr_assert_geq(tt_send_owned(relay.peers[i], own, 100, count_free, NULL), 0);
    }
    /* The pending phase: the flushes. On io_uring each receiver now has a send
     * request queued, not yet handed to the kernel. */
    tt__conn_run_pending(loop);
    for (int i = 0; i < N; i++)
        cr_assert_eq(relay.peers[i]->io.send_out, uring);
    /* The first third closed now. The first one's request is dropped unseen; its
     * close cancels its read, which hands the requests queued so far (the others')
     * to the kernel at once, so those are closed with their sends in flight. */
    for (int i = 0; i < N / 3; i++) {
        cr_assert_eq(tt_destroy(relay.peers[i], i % 2 ? TT_DESTROY_RESET : 0), 0);
        if (i == 0)
            cr_assert_eq(relay.peers[i]->io.send_out, 0);
    }
    /* The rest handed to the kernel, their completions not yet seen; the second
     * third closed in that window, the last third left open. */
    tt__poller_flush(&loop->poller);
    for (int i = N / 3; i < 2 * N / 3; i++) {
        cr_assert_eq(relay.peers[i]->io.send_out, uring);
        cr_assert_eq(tt_destroy(relay.peers[i], 0), 0);
    }
    /* The closes of the second third wait for the completions. */
    tt__conn_run_pending(loop);
    for (int i = N / 3; i < 2 * N / 3; i++)
        cr_assert_eq(relay.close_count[i], uring ? 0 : 1, "receiver %d closed before its send ended", i);
    bool never = false;
    uint64_t t0 = th_now_ms();
    while (relay.closes_total < 2 * N / 3 && th_now_ms() - t0 < 5000)
        th_run_until(loop, &never, 5);
    cr_assert_eq(relay.closes_total, 2 * N / 3);
    t0 = th_now_ms();
    for (;;) {
        bool done = true;
        for (int i = 0; i < N; i++) {
            relay_drain(fds[i], &sink[i]);
            if (i < 2 * N / 3 && !sink[i].eof)
                done = false;
            if (i >= 2 * N / 3 && sink[i].len < SIZE + 100)
                done = false;
        }
        if (done || th_now_ms() - t0 > 5000)
            break;
        th_run_until(loop, &never, 2);
    }
    for (int i = 0; i < N; i++) {
        if (i < 2 * N / 3) {
            const tt_close_info_t *ci = &relay.last_close[i];
            cr_assert_eq(relay.close_count[i], 1, "receiver %d: %d closes", i, relay.close_count[i]);
            cr_expect_eq(ci->kind, TT_CLOSE_LOCAL_DESTROY);
            /* What the peer got is what the close says was written, and the rest
             * is counted as never sent. */
            cr_expect_eq(ci->bytes_written, sink[i].len, "receiver %d: written %llu, got %zu", i,
                         (unsigned long long)ci->bytes_written, sink[i].len);
            cr_expect_eq(ci->bytes_written + ci->bytes_unsent, SIZE + 100);
            if (i == 0)
                cr_expect_eq(ci->bytes_written, uring ? 0 : SIZE + 100, "receiver %d", i);
            else
                cr_expect_eq(ci->bytes_written, SIZE + 100, "receiver %d: the kernel had it", i);
            cr_expect(sink[i].eof, "receiver %d: no FIN or RST", i);
        } else {
            cr_assert_eq(relay.close_count[i], 0);
            cr_assert_eq(sink[i].len, SIZE + 100, "receiver %d: %zu bytes", i, sink[i].len);
            cr_expect_eq(memcmp(sink[i].buf, msg, SIZE), 0);
            cr_expect_eq(tt_conn_written_bytes(relay.peers[i]), SIZE + 100);
        }
    }
    cr_expect_eq(frees, N, "%d of %d owned buffers released", frees, N);
    relay_finish(loop, fds, sink, N);
    cr_expect_eq(frees, N);
}

/* Peers that reset while the broadcast's sends are in the kernel: the send fails
 * (or the read sees the reset first, the send still in flight); either way the
 * close says peer reset, once, with the bytes counted as never sent. */
Test(broadcast_batch, receivers_reset_by_the_peer_with_a_send_in_flight_close_as_reset)
{
    enum { N = 12, GONE = 2, SIZE = 1500 };
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t so = {0};
    int fds[N];
    relay_sink_t sink[N] = {{0}};
    char msg[SIZE];
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    relay_reset();
    cr_assert_eq(tt_loop_init(&loop), 0);
    bool uring = on_uring(loop);
    relay.srv = relay_listen(loop, &so, &addr);
    relay_connect(loop, &addr, fds, N, 0, NULL);
    memset(msg, 'r', SIZE);
    /* Every GONE-th peer resets; the server has not run since. */
    for (int i = 0; i < N; i += GONE) {
        cr_assert_eq(setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        close(fds[i]);
        fds[i] = -1;
    }
    usleep(20 * 1000);
    cr_assert_eq(tt_server_broadcast(relay.srv, msg, SIZE, NULL), N);
    tt__conn_run_pending(loop);  /* the requests, queued */
    tt__poller_flush(&loop->poller); /* and in the kernel, completions not yet seen */
    for (int i = 0; i < N; i++)
        cr_assert_eq(relay.peers[i]->io.send_out, uring);
    bool never = false;
    uint64_t t0 = th_now_ms();
    while (relay.closes_total < N / GONE && th_now_ms() - t0 < 5000)
        th_run_until(loop, &never, 5);
    cr_assert_eq(relay.closes_total, N / GONE);
    for (int i = 0; i < N; i++) {
        if (i % GONE == 0) {
            cr_expect_eq(relay.close_count[i], 1);
            cr_expect_eq(relay.last_close[i].kind, TT_CLOSE_PEER_RESET, "receiver %d closed as %s", i,
                         tt_close_kind_name(relay.last_close[i].kind));
            cr_expect_eq(relay.last_close[i].bytes_written, 0);
            cr_expect_eq(relay.last_close[i].bytes_unsent, SIZE);
            fds[i] = socket(AF_INET, SOCK_STREAM, 0); /* for close_all */
        } else {
            relay_drain(fds[i], &sink[i]);
            cr_expect_eq(relay.close_count[i], 0);
            cr_expect_eq(sink[i].len, SIZE, "receiver %d: %zu bytes", i, sink[i].len);
            cr_expect_eq(tt_conn_written_bytes(relay.peers[i]), SIZE);
        }
    }
    cr_expect_eq(relay.closes_other, N / GONE);
    relay_finish(loop, fds, sink, N);
}

/* A free callback run by a completion closes every other receiver: some of them
 * have their own completion right behind in the same batch. */
static tt_conn_t *race_peers[32];
static int race_n, race_closed;
static bool race_fired;

static void close_others(void *buf, void *arg)
{
    (void)buf;
    frees++;
    if (race_fired)
        return;
    race_fired = true;
    for (int i = 0; i < race_n; i++)
        if (race_peers[i] != NULL && race_peers[i] != arg) {
            tt_destroy(race_peers[i], TT_DESTROY_RESET);
            race_peers[i] = NULL;
            race_closed++;
        }
}

Test(broadcast_batch, a_completion_that_closes_the_others_leaves_no_dangling_send)
{
    enum { N = 32, SIZE = 3000 };
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t so = {0};
    int fds[N];
    relay_sink_t sink[N] = {{0}};
    static char bufs[N][SIZE];

    relay_reset();
    frees = race_closed = 0;
    race_fired = false;
    cr_assert_eq(tt_loop_init(&loop), 0);
    relay.srv = relay_listen(loop, &so, &addr);
    relay_connect(loop, &addr, fds, N, 0, NULL);
    race_n = N;
    /* The broadcast first: on io_uring it makes each flush a send request. */
    cr_assert_eq(tt_server_broadcast(relay.srv, "head\n", 5, NULL), N);
    for (int i = 0; i < N; i++) {
        race_peers[i] = relay.peers[i];
        memset(bufs[i], 'a' + i % 26, SIZE);
        cr_assert_geq(tt_send_owned(relay.peers[i], bufs[i], SIZE, close_others, relay.peers[i]), 0);
    }
    bool never = false;
    uint64_t t0 = th_now_ms();
    while (relay.closes_total < N - 1 && th_now_ms() - t0 < 5000)
        th_run_until(loop, &never, 5);
    cr_assert_eq(relay.closes_total, N - 1);
    cr_assert_eq(race_closed, N - 1);
    for (int i = 0; i < N; i++) {
        if (relay.close_count[i] == 0)
            continue;
        const tt_close_info_t *ci = &relay.last_close[i];
        cr_expect_eq(relay.close_count[i], 1);
        cr_expect_eq(ci->bytes_written + ci->bytes_unsent, SIZE + 5, "receiver %d", i);
        /* io_uring: every send was in the kernel when the first completion closed
         * the others, and went whole; epoll wrote the broadcast in the call, then
         * the first owned buffer alone before the others were closed. */
        cr_expect_eq(ci->bytes_written, on_uring(loop) ? SIZE + 5 : 5, "receiver %d: %llu", i,
                     (unsigned long long)ci->bytes_written);
    }
    relay_finish(loop, fds, sink, N);
    cr_expect_eq(frees, N, "%d of %d owned buffers released", frees, N);
}

/* ---- a slow receiver ---------------------------------------------------------------- */

Test(broadcast_batch, a_slow_receiver_fills_its_own_queue_to_the_cap_and_the_others_keep_up)
{
    enum { N = 40, SLOW = 7, MSGS = 400, SIZE = 1024 };
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t so = {.high_water = 16 * 1024, .queue_cap = 96 * 1024};
    int fds[N];
    relay_sink_t sink[N] = {{0}};
    char msg[SIZE];
    size_t slow_max_queue = 0;
    int slow_closed_at = -1;

    relay_reset();
    cr_assert_eq(tt_loop_init(&loop), 0);
    relay.srv = relay_listen(loop, &so, &addr);
    relay_connect(loop, &addr, fds, N, 8192, NULL);
    cr_assert_eq(tt_conn_set_sndbuf(relay.peers[SLOW], 4096), 0);
    tt_conn_t *slow = relay.peers[SLOW];
    bool never = false;
    for (int m = 0; m < MSGS; m++) {
        memset(msg, 'a' + m % 26, SIZE);
        snprintf(msg, 16, "m%06d", m);
        int sent = tt_server_broadcast(relay.srv, msg, SIZE, NULL);
        cr_assert_geq(sent, N - 1);
        th_run_until(loop, &never, 1);
        if (relay.close_count[SLOW] == 0) {
            size_t q = tt_conn_queued_bytes(slow);
            if (q > slow_max_queue)
                slow_max_queue = q;
        } else if (slow_closed_at < 0) {
            slow_closed_at = m;
        }
        /* The others read as they go; each is never more than a few messages
         * behind while the slow one's queue grows. */
        for (int i = 0; i < N; i++)
            if (i != SLOW) {
                relay_drain(fds[i], &sink[i]);
                if (m > 32 && relay.close_count[SLOW] == 0)
                    cr_assert_geq(sink[i].len + 32 * SIZE, (size_t)m * SIZE,
                                  "receiver %d fell behind at %d (%zu bytes)", i, m, sink[i].len);
            }
    }
    uint64_t t0 = th_now_ms();
    for (;;) {
        size_t got = 0;
        for (int i = 0; i < N; i++)
            if (i != SLOW) {
                relay_drain(fds[i], &sink[i]);
                got += sink[i].len;
            }
        if (got == (size_t)(N - 1) * MSGS * SIZE || th_now_ms() - t0 > 10000)
            break;
        th_run_until(loop, &never, 2);
    }
    cr_assert_eq(relay.close_count[SLOW], 1, "the slow receiver was not closed");
    cr_expect_eq(relay.last_close[SLOW].kind, TT_CLOSE_SEND_OVERFLOW, "slow closed as %s",
                 tt_close_kind_name(relay.last_close[SLOW].kind));
    cr_expect_gt(slow_closed_at, 0);
    cr_expect_leq(slow_max_queue, 96 * 1024);
    cr_expect_gt(slow_max_queue, 32 * 1024, "the slow queue only reached %zu", slow_max_queue);
    cr_expect_eq(relay.closes_overflow, 1);
    cr_expect_eq(relay.closes_other, 0);
    for (int i = 0; i < N; i++) {
        if (i == SLOW)
            continue;
        cr_expect_eq(relay.close_count[i], 0);
        relay_expect_msgs(&sink[i], i, MSGS, SIZE);
    }
    relay_finish(loop, fds, sink, N);
}

/* ---- system calls per broadcast ------------------------------------------------------ */

Test(broadcast_batch, one_broadcast_to_many_receivers_costs_no_write_per_receiver_on_io_uring)
{
    enum { N = 64 };
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t so = {0};
    int fds[N];
    relay_sink_t sink[N] = {{0}};

    relay_reset();
    cr_assert_eq(tt_loop_init(&loop), 0);
    bool uring = on_uring(loop);
    relay.srv = relay_listen(loop, &so, &addr);
    relay_connect(loop, &addr, fds, N, 0, NULL);
    /* Settle: nothing left over from the accepts. */
    for (int k = 0; k < 3; k++)
        tt_loop_run(loop, TT_RUN_NOWAIT);

    size_t total = 0;
    for (int round = 0; round < 3; round++) {
        uint64_t w0 = loop->poller.n_writes, e0 = loop->poller.n_enters;
        char line[32];
        int len = snprintf(line, sizeof(line), "broadcast %d\n", round);
        tt_conn_stats_t st0;
        cr_assert_eq(tt_conn_get_stats(relay.peers[N - 1], &st0), 0);
        /* Two broadcasts in the same round: on io_uring the second rides in the
         * first's send. */
        cr_assert_eq(tt_server_broadcast(relay.srv, line, (size_t)len, NULL), N);
        cr_assert_eq(tt_server_broadcast(relay.srv, line, (size_t)len, NULL), N);
        /* One round of the loop, which does not wait: the flushes, then the wait
         * that hands every request to the kernel and reaps the completions. */
        tt_loop_run(loop, TT_RUN_NOWAIT);
        uint64_t writes = loop->poller.n_writes - w0, enters = loop->poller.n_enters - e0;
        tt_conn_stats_t st1;
        cr_assert_eq(tt_conn_get_stats(relay.peers[N - 1], &st1), 0);
        total += 2 * (size_t)len;
        for (int i = 0; i < N; i++) {
            relay_drain(fds[i], &sink[i]);
            cr_assert_eq(sink[i].len, total, "receiver %d: %zu bytes after round %d", i,
                         sink[i].len, round);
        }
        if (uring) {
            cr_expect_eq(writes, 0, "round %d: %llu direct writes for %d receivers", round,
                         (unsigned long long)writes, N);
            cr_expect_leq(enters, 2, "round %d: %llu io_uring_enter for %d receivers", round,
                          (unsigned long long)enters, N);
            cr_expect_eq(st1.packets_out - st0.packets_out, 1, "round %d: %llu sends", round,
                         (unsigned long long)(st1.packets_out - st0.packets_out));
        } else { /* written in the calls, one write each */
            cr_expect_eq(writes, 2 * N, "round %d: %llu writes", round, (unsigned long long)writes);
            cr_expect_eq(enters, 0);
            cr_expect_eq(st1.packets_out - st0.packets_out, 2);
        }
    }
    relay_finish(loop, fds, sink, N);
}
