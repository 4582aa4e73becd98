/* Broadcast writes: a recipient with nothing queued is written at once, inside the
 * call (epoll; on io_uring it is queued and sent by a request at the end of the
 * round, see test_broadcast_batch.c); one with a queue gets the bytes behind it;
 * the lines of one read reach each recipient in one write, and so do the
 * WebSocket messages of one read; one whose peer is gone closes with the right
 * reason; the byte counts stay exact (a slow recipient's cap:
 * test_broadcast_batch.c). Real sockets; the receivers are plain sockets. */
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

/* The lines "b%05d\n" 0..n-1, in order, after `skip` other bytes. */
static void expect_lines(const relay_sink_t *s, size_t skip, int n, const char *who)
{
    char want[16];
    cr_assert_eq(s->len, skip + (size_t)n * 7, "%s: %zu bytes, want %zu", who, s->len,
                 skip + (size_t)n * 7);
    for (int i = 0; i < n; i++) {
        snprintf(want, sizeof(want), "b%05d\n", i);
        cr_assert_eq(memcmp(s->buf + skip + (size_t)i * 7, want, 7), 0, "%s: line %d", who, i);
    }
}

/* Run the loop and read fds[from..n) until they have `want` bytes between them
 * (`ms` at most: the caller checks what came). */
static void receive_all(tt_loop_t *loop, const int *fds, relay_sink_t *sink, int from, int n,
                        size_t want, uint64_t ms)
{
    uint64_t t0 = th_now_ms();
    bool never = false;
    for (;;) {
        size_t got = 0;
        for (int i = from; i < n; i++) {
            relay_drain(fds[i], &sink[i]);
            got += sink[i].len;
        }
        if (got == want || th_now_ms() - t0 > ms)
            return;
        th_run_until(loop, &never, 2);
    }
}

Test(broadcast_direct, empty_queues_are_written_in_the_call_others_queue_behind_in_order)
{
    enum { N = 8, BUSY = 4, LINES = 200, FILL = 256 * 1024 };
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t so = {0};
    int fds[N];
    relay_sink_t sink[N] = {{0}};
    char line[16];

    relay_reset();
    cr_assert_eq(tt_loop_init(&loop), 0);
    /* io_uring sends from the loop, in one submission for every receiver. */
    bool direct = strcmp(tt_loop_backend(loop), "epoll") == 0;
    relay.srv = relay_listen(loop, &so, &addr);
    relay_connect(loop, &addr, fds, N, 4096, NULL);
    /* The first BUSY get more than their sockets hold: their queues stay non-empty. */
    char *fill = malloc(FILL);
    memset(fill, 'f', FILL);
    for (int i = 0; i < BUSY; i++) {
        cr_assert_eq(tt_conn_set_sndbuf(relay.peers[i], 4096), 0);
        cr_assert_geq(tt_send(relay.peers[i], fill, FILL), 0);
        cr_assert_gt(tt_conn_queued_bytes(relay.peers[i]), 0);
    }
    for (int l = 0; l < LINES; l++) {
        snprintf(line, sizeof(line), "b%05d\n", l);
        cr_assert_eq(tt_server_broadcast(relay.srv, line, 7, NULL), N);
        if (l == 0 && direct) {
            /* Inside the call: the idle ones have the line in their kernel buffer
             * already, nothing queued; the busy ones queued it behind the rest. */
            for (int i = BUSY; i < N; i++) {
                cr_expect_eq(tt_conn_written_bytes(relay.peers[i]), 7, "idle %d wrote %llu", i,
                             (unsigned long long)tt_conn_written_bytes(relay.peers[i]));
                cr_expect_eq(tt_conn_queued_bytes(relay.peers[i]), 0);
                cr_expect(tt__conn_queue_empty(relay.peers[i]));
            }
            for (int i = 0; i < BUSY; i++)
                cr_expect_gt(tt_conn_queued_bytes(relay.peers[i]), 0);
        } else if (l == 0) {
            for (int i = BUSY; i < N; i++) {
                cr_expect_eq(tt_conn_written_bytes(relay.peers[i]), 0);
                cr_expect_eq(tt_conn_queued_bytes(relay.peers[i]), 7);
            }
        }
    }
    for (int i = BUSY; i < N && direct; i++) {
        relay_drain(fds[i], &sink[i]);
        cr_expect_eq(sink[i].len, (size_t)LINES * 7, "idle %d had %zu bytes before any loop run",
                     i, sink[i].len);
    }
    receive_all(loop, fds, sink, 0, N, (size_t)BUSY * FILL + (size_t)N * LINES * 7, 10000);
    for (int i = 0; i < N; i++) {
        char who[16];
        snprintf(who, sizeof(who), "receiver %d", i);
        size_t skip = i < BUSY ? FILL : 0;
        expect_lines(&sink[i], skip, LINES, who);
        for (size_t k = 0; k < skip; k++)
            cr_assert_eq(sink[i].buf[k], 'f');
        tt_conn_stats_t st;
        cr_assert_eq(tt_conn_get_stats(relay.peers[i], &st), 0);
        cr_expect_eq(st.bytes_out, skip + (uint64_t)LINES * 7, "%s: bytes_out %llu", who,
                     (unsigned long long)st.bytes_out);
        cr_expect_eq(st.bytes_queued_total, skip + (uint64_t)LINES * 7);
        cr_expect_eq(st.queued_bytes, 0);
    }
    cr_expect_eq(relay.closes_other + relay.closes_overflow, 0);
    free(fill);
    relay_finish(loop, fds, sink, N);
}

Test(broadcast_direct, the_lines_of_one_read_reach_each_recipient_in_one_write)
{
    enum { N = 5, LINES = 16 };
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_frame_opts_t fl = tt_frame_line(0);
    tt_server_opts_t so = {.frame = &fl};
    int fds[N];
    relay_sink_t sink[N] = {{0}};
    char burst[LINES * 7 + 1];

    relay_reset();
    cr_assert_eq(tt_loop_init(&loop), 0);
    relay.srv = relay_listen(loop, &so, &addr);
    relay_connect(loop, &addr, fds, N, 0, NULL);
    for (int l = 0; l < LINES; l++)
        snprintf(burst + l * 7, 8, "b%05d\n", l);
    /* fds[0] sends; one send, so the server reads all the lines at once. */
    cr_assert_eq(send(fds[0], burst, LINES * 7, 0), LINES * 7);
    receive_all(loop, fds, sink, 1, N, (size_t)(N - 1) * LINES * 7, 5000);
    tt_conn_stats_t st;
    for (int i = 1; i < N; i++) {
        expect_lines(&sink[i], 0, LINES, "receiver");
        cr_assert_eq(tt_conn_get_stats(relay.peers[i], &st), 0);
        cr_expect_eq(st.bytes_out, LINES * 7);
        /* A write per line per recipient would be 16. */
        cr_expect_leq(st.packets_out, 2, "receiver %d: %llu writes for one read of %d lines", i,
                      (unsigned long long)st.packets_out, LINES);
    }
    relay_drain(fds[0], &sink[0]);
    cr_expect_eq(sink[0].len, 0, "the sender got its own lines back");
    relay_finish(loop, fds, sink, N);
}

/* The sender's second read, sent once the first read's last line is queued. */
enum { LATE_N = 5, LATE_LINES = 8 };
static int late_fd = -1, late_sent;
static char late_burst[2 * LATE_LINES * 7 + 1];

static void send_second_read(tt_conn_t *from)
{
    if (tt__conn_loop(from)->more_input != 0 || late_sent++ > 0)
        return;
    cr_assert_eq(send(late_fd, late_burst + LATE_LINES * 7, LATE_LINES * 7, 0), LATE_LINES * 7);
}

/* Lines queued behind more input are written one poll later than the end of
 * their round: a read of the sender that has arrived by then goes into the same
 * write. Two reads reach each recipient in one write, in order (two writes if
 * the queued lines were written at the end of the first round). */
Test(broadcast_direct, a_read_that_arrives_before_the_queued_lines_go_joins_their_write)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_frame_opts_t fl = tt_frame_line(0);
    tt_server_opts_t so = {.frame = &fl};
    int fds[LATE_N];
    relay_sink_t sink[LATE_N] = {{0}};

    relay_reset();
    late_sent = 0;
    relay.after_broadcast = send_second_read;
    cr_assert_eq(tt_loop_init(&loop), 0);
    relay.srv = relay_listen(loop, &so, &addr);
    relay_connect(loop, &addr, fds, LATE_N, 0, NULL);
    late_fd = fds[0];
    for (int l = 0; l < 2 * LATE_LINES; l++)
        snprintf(late_burst + l * 7, 8, "b%05d\n", l);
    cr_assert_eq(send(fds[0], late_burst, LATE_LINES * 7, 0), LATE_LINES * 7);
    receive_all(loop, fds, sink, 1, LATE_N, (size_t)(LATE_N - 1) * 2 * LATE_LINES * 7, 5000);
    cr_assert_eq(late_sent, 2, "the second read was not delivered as a read of its own");
    tt_conn_stats_t st;
    for (int i = 1; i < LATE_N; i++) {
        expect_lines(&sink[i], 0, 2 * LATE_LINES, "receiver");
        cr_assert_eq(tt_conn_get_stats(relay.peers[i], &st), 0);
        cr_expect_eq(st.bytes_out, 2 * LATE_LINES * 7);
        cr_expect_eq(st.packets_out, 1, "receiver %d: %llu writes for two reads", i,
                     (unsigned long long)st.packets_out);
    }
    relay_drain(fds[0], &sink[0]);
    cr_expect_eq(sink[0].len, 0, "the sender got its own lines back");
    relay_finish(loop, fds, sink, LATE_N);
}

/* After the read's last line: each receiver's queue, as entries and kinds. */
enum { SHARE_N = 5 };
static int share_entries[SHARE_N], share_owned[SHARE_N], share_checks;
static size_t share_bytes[SHARE_N];

static void count_entries(tt_conn_t *from)
{
    if (tt__conn_loop(from)->more_input != 0)
        return; /* not the read's last line yet */
    share_checks++;
    for (int i = 1; i < SHARE_N; i++) {
        tt_conn_t *c = relay.peers[i];
        share_entries[i] = share_owned[i] = 0;
        share_bytes[i] = 0;
        for (tt__sqe_t *e = c->out != NULL ? c->out->sq.head : NULL; e != NULL; e = e->next) {
            share_entries[i]++;
            if (e->kind == TT__SQ_OWNED) {
                share_owned[i]++;
                share_bytes[i] += e->u.owned.len - e->u.owned.off;
            }
        }
    }
}

/* The lines of one read, of mixed lengths, share one payload: each receiver holds
 * one queue entry for all of them (one reference, one iovec), not one per line,
 * and gets every byte in order, on both backends. */
Test(broadcast_direct, the_lines_of_one_read_are_one_queue_entry_per_recipient)
{
    enum { LINES = 16 };
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_frame_opts_t fl = tt_frame_line(0);
    tt_server_opts_t so = {.frame = &fl};
    int fds[SHARE_N];
    relay_sink_t sink[SHARE_N] = {{0}};
    char burst[LINES * 1100];
    size_t blen = 0;

    relay_reset();
    relay.after_broadcast = count_entries;
    cr_assert_eq(tt_loop_init(&loop), 0);
    relay.srv = relay_listen(loop, &so, &addr);
    relay_connect(loop, &addr, fds, SHARE_N, 0, NULL);
    for (int l = 0; l < LINES; l++) { /* 7 bytes to 1 KiB: copied and referenced sizes */
        size_t n = l % 3 == 0 ? 7 : (size_t)(l * 64);
        memset(burst + blen, 'a' + l, n - 1);
        burst[blen + n - 1] = '\n';
        blen += n;
    }
    cr_assert_eq(send(fds[0], burst, blen, 0), (ssize_t)blen);
    receive_all(loop, fds, sink, 1, SHARE_N, (size_t)(SHARE_N - 1) * blen, 5000);
    cr_assert_eq(share_checks, 1, "the read's last line was seen %d times", share_checks);
    for (int i = 1; i < SHARE_N; i++) {
        cr_expect_eq(share_entries[i], 1, "receiver %d: %d queue entries for one read", i,
                     share_entries[i]);
        cr_expect_eq(share_owned[i], 1);
        cr_expect_eq(share_bytes[i], blen, "receiver %d: %zu of %zu bytes in the entry", i,
                     share_bytes[i], blen);
        cr_assert_eq(sink[i].len, blen, "receiver %d: %zu of %zu bytes", i, sink[i].len, blen);
        cr_assert_eq(memcmp(sink[i].buf, burst, blen), 0, "receiver %d: bytes out of order", i);
    }
    relay_drain(fds[0], &sink[0]);
    cr_expect_eq(sink[0].len, 0, "the sender got its own lines back");
    relay_finish(loop, fds, sink, SHARE_N);
}

static bool only_b_lines(const void *msg, size_t len) { return len > 0 && *(const char *)msg == 'B'; }

/* A recipient that holds part of a read's payload keeps all of it alive, the
 * room kept for the read's other messages included: its queue is charged for
 * that. The app here relays the first and the last line of each 30 KB read and
 * drops the rest, so each read's payload holds 600 bytes in room for 60 KB: a
 * slow reader is closed at its cap after a few reads, not after 2.4 MB of
 * payloads charged as 600 bytes each. The reader that keeps up gets every line. */
Test(broadcast_direct, a_slow_reader_is_charged_for_the_payloads_it_keeps_alive)
{
    enum { READS = 40, BLINE = 300, XLINES = 100, XLINE = 300, CAP = 256 * 1024 };
    enum { BURST = 2 * BLINE + XLINES * XLINE };
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_frame_opts_t fl = tt_frame_line(0);
    tt_server_opts_t so = {.frame = &fl, .high_water = 16 * 1024, .queue_cap = CAP};
    int fds[3];
    relay_sink_t sink[3] = {{0}};
    static char burst[BURST], want[READS * 2 * BLINE], fill[64 * 1024];
    bool never = false;

    relay_reset();
    relay.keep = only_b_lines;
    cr_assert_eq(tt_loop_init(&loop), 0);
    relay.srv = relay_listen(loop, &so, &addr);
    relay_connect(loop, &addr, fds, 3, 4096, NULL);
    tt_conn_t *slow = relay.peers[1];
    cr_assert_eq(tt_conn_set_sndbuf(slow, 4096), 0);
    memset(fill, 'f', sizeof(fill));
    cr_assert_geq(tt_send(slow, fill, sizeof(fill)), 0); /* its queue stays non-empty */
    memset(burst, 'x', sizeof(burst));
    for (int l = 1; l <= XLINES; l++)
        burst[BLINE + l * XLINE - 1] = '\n';
    int closed_at = -1;
    for (int r = 0; r < READS; r++) {
        for (int k = 0; k < 2; k++) { /* the read's first and last lines */
            char *b = burst + (k == 0 ? 0 : BURST - BLINE);
            memset(b, 'B', BLINE - 1);
            snprintf(b + 1, 8, "%06d", 2 * r + k);
            b[7] = 'B';
            b[BLINE - 1] = '\n';
            memcpy(want + (2 * r + k) * BLINE, b, BLINE);
        }
        cr_assert_eq(send(fds[0], burst, BURST, 0), (ssize_t)BURST);
        uint64_t t0 = th_now_ms();
        while (sink[2].len < (size_t)(r + 1) * 2 * BLINE && th_now_ms() - t0 < 5000) {
            th_run_until(loop, &never, 2);
            relay_drain(fds[2], &sink[2]);
        }
        if (closed_at < 0 && relay.close_count[1] > 0)
            closed_at = r;
    }
    cr_assert_eq(relay.close_count[1], 1, "the slow reader was not closed: charged %llu",
                 relay.peers[1] != NULL && slow->out != NULL
                     ? (unsigned long long)slow->out->sq.alloc
                     : 0ull);
    cr_expect_eq(relay.last_close[1].kind, TT_CLOSE_SEND_OVERFLOW, "closed as %s",
                 tt_close_kind_name(relay.last_close[1].kind));
    /* 64 KiB of fill, then about 60 KB kept alive per read: a handful of reads. */
    cr_expect_leq(closed_at, 8, "closed after %d reads", closed_at);
    cr_assert_eq(sink[2].len, sizeof(want), "the reader got %zu of %zu bytes", sink[2].len,
                 sizeof(want));
    cr_assert_eq(memcmp(sink[2].buf, want, sizeof(want)), 0);
    cr_expect_eq(relay.close_count[2], 0);
    relay_finish(loop, fds, sink, 3);
}

/* The same over WebSocket: the client frames of one read, each relayed to the
 * others as one server frame, reach each recipient in one write. */
Test(broadcast_direct, the_websocket_messages_of_one_read_reach_each_recipient_in_one_write)
{
    enum { N = 5, MSGS = 16, IN = 2 + 4 + 6, OUT = 2 + 7 };
    static const char upgrade[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Version: 13\r\n\r\n";
    static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_ws_opts_t wo = {0};
    tt_server_opts_t so = {.websocket = &wo};
    int fds[N];
    relay_sink_t sink[N] = {{0}};
    uint64_t packets0[N];
    uint8_t burst[MSGS * IN];
    char text[8];
    tt_conn_stats_t st;
    bool never = false;

    relay_reset();
    cr_assert_eq(tt_loop_init(&loop), 0);
    relay.srv = relay_listen(loop, &so, &addr);
    relay_connect(loop, &addr, fds, N, 0, upgrade);
    /* Every client has its 101 whole before anything is sent. */
    uint64_t t0 = th_now_ms();
    for (int i = 0; i < N; i++) {
        while (sink[i].len < 4 || memmem(sink[i].buf, sink[i].len, "\r\n\r\n", 4) == NULL) {
            cr_assert_lt(th_now_ms() - t0, 5000, "client %d: no whole answer", i);
            th_run_until(loop, &never, 2);
            relay_drain(fds[i], &sink[i]);
        }
        cr_assert_eq(memcmp(sink[i].buf, "HTTP/1.1 101", 12), 0);
        cr_assert_eq((char *)memmem(sink[i].buf, sink[i].len, "\r\n\r\n", 4) + 4,
                     sink[i].buf + sink[i].len, "client %d: bytes after the 101", i);
        sink[i].len = 0;
        cr_assert_eq(tt_conn_get_stats(relay.peers[i], &st), 0);
        packets0[i] = st.packets_out;
    }
    /* MSGS masked binary frames "b%05d", in one send from fds[0]. */
    for (int m = 0; m < MSGS; m++) {
        uint8_t *f = burst + m * IN;
        f[0] = 0x82;
        f[1] = 0x80 | 6;
        memcpy(f + 2, key, 4);
        snprintf(text, sizeof(text), "b%05d", m);
        for (int k = 0; k < 6; k++)
            f[6 + k] = (uint8_t)text[k] ^ key[k & 3];
    }
    cr_assert_eq(send(fds[0], burst, sizeof(burst), 0), (ssize_t)sizeof(burst));
    receive_all(loop, fds, sink, 1, N, (size_t)(N - 1) * MSGS * OUT, 5000);
    for (int i = 1; i < N; i++) {
        /* s_message relays each message with a newline: one unmasked binary frame. */
        cr_assert_eq(sink[i].len, (size_t)MSGS * OUT, "receiver %d: %zu bytes", i, sink[i].len);
        for (int m = 0; m < MSGS; m++) {
            const char *f = sink[i].buf + m * OUT;
            snprintf(text, sizeof(text), "b%05d", m);
            cr_assert(f[0] == (char)0x82 && f[1] == 7, "receiver %d: frame %d header", i, m);
            cr_assert(memcmp(f + 2, text, 6) == 0 && f[8] == '\n', "receiver %d: frame %d", i, m);
        }
        cr_assert_eq(tt_conn_get_stats(relay.peers[i], &st), 0);
        /* A write per message per recipient would be 16. */
        cr_expect_leq(st.packets_out - packets0[i], 2,
                      "receiver %d: %llu writes for one read of %d messages", i,
                      (unsigned long long)(st.packets_out - packets0[i]), MSGS);
    }
    relay_drain(fds[0], &sink[0]);
    cr_expect_eq(sink[0].len, 0, "the sender got its own messages back");
    relay_finish(loop, fds, sink, N);
}

Test(broadcast_direct, a_receiver_gone_during_the_broadcast_closes_with_its_reason)
{
    enum { N = 3, GONE = 1 };
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_server_opts_t so = {0};
    int fds[N];
    relay_sink_t sink[N] = {{0}};
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    relay_reset();
    cr_assert_eq(tt_loop_init(&loop), 0);
    relay.srv = relay_listen(loop, &so, &addr);
    relay_connect(loop, &addr, fds, N, 0, NULL);
    /* Reset by the peer, the server not told yet (its loop has not run). */
    cr_assert_eq(setsockopt(fds[GONE], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fds[GONE]);
    fds[GONE] = -1;
    usleep(20 * 1000);
    cr_expect_eq(tt_server_broadcast(relay.srv, "hello\n", 6, NULL), N);
    bool never = false;
    uint64_t t0 = th_now_ms();
    while (!(relay.close_count[GONE] > 0) && th_now_ms() - t0 < 5000)
        th_run_until(loop, &never, 5);
    cr_assert((relay.close_count[GONE] > 0));
    cr_expect(relay.last_close[GONE].kind == TT_CLOSE_PEER_RESET, "closed as %s",
              tt_close_kind_name(relay.last_close[GONE].kind));
    cr_expect_eq(relay.last_close[GONE].bytes_written, 0);
    cr_expect_eq(relay.last_close[GONE].bytes_unsent, 6, "unsent %llu",
                 (unsigned long long)relay.last_close[GONE].bytes_unsent);
    for (int i = 0; i < N; i++) {
        if (i == GONE)
            continue;
        relay_drain(fds[i], &sink[i]);
        cr_expect_eq(sink[i].len, 6);
        cr_expect_eq(memcmp(sink[i].buf, "hello\n", 6), 0);
    }
    relay_finish(loop, fds, sink, N);
}
