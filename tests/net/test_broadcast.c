/* Broadcast and groups: every line reaches every other client exactly once, in order
 * per sender, and a slow reader hits its own cap without stalling the others. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"
#include "stream/conn.h"

#define N_CLIENTS 1000
#define SENDERS 4
#define LINES 50
#define PAD 500 /* bytes of padding per line: enough traffic to overflow the slow one */

/* ---- server: relays every received chunk to everyone but the sender ----------- */

static tt_server_t *srv;

static void relay_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)pending;
    /* The test's senders write whole lines with no pauses between them; a chunk
     * may hold several lines, never a partial one split across chunks in a way
     * that matters here, because receivers reassemble by '\n' per sender. */
    cr_assert_geq(tt_server_broadcast(tt_conn_server(c), d, n, c), 0);
}

static void relay_open(tt_conn_t *c)
{
    /* Small kernel buffers, so a reader that stops shows up in tether's queue soon. */
    cr_assert_eq(tt_conn_set_sndbuf(c, 4096), 0);
}

static int overflow_closes, other_abnormal_closes;

static void relay_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    if (info->kind == TT_CLOSE_SEND_OVERFLOW)
        overflow_closes++;
    else if (info->kind != TT_CLOSE_PEER_CLOSED && info->kind != TT_CLOSE_LOCAL_DESTROY)
        other_abnormal_closes++;
}

static const tt_conn_handlers_t relay_h = {
    .on_open = relay_open, .on_data = relay_data, .on_close = relay_close};

/* ---- clients ---------------------------------------------------------------------- */

typedef struct client {
    tt_conn_t *conn;
    int index;
    bool slow;    /* stops reading: must overflow alone */
    char partial[PAD + 64];
    size_t plen;
    int next_seq[SENDERS]; /* next line number expected from each sender */
    int lines, dup_or_gap, closed;
    tt_close_kind_t kind;
} client_t;

static client_t *clients;
static int opened;

static void cli_open(tt_conn_t *c)
{
    client_t *k = tt_conn_get_data(c);
    opened++;
    if (k->slow) {
        tt_conn_set_rcvbuf(c, 4096);
        tt_conn_read_stop(c);
    }
}

static void take_line(client_t *k, const char *line)
{
    int sender, seq;
    if (sscanf(line, "s%d l%d", &sender, &seq) != 2 || sender < 0 || sender >= SENDERS) {
        k->dup_or_gap++;
        return;
    }
    if (seq != k->next_seq[sender])
        k->dup_or_gap++;
    k->next_seq[sender] = seq + 1;
    k->lines++;
}

static void cli_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    client_t *k = tt_conn_get_data(c);
    const char *p = d;
    (void)pending;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            k->partial[k->plen] = '\0';
            take_line(k, k->partial);
            k->plen = 0;
        } else if (k->plen + 1 < sizeof(k->partial)) {
            k->partial[k->plen++] = p[i];
        }
    }
}

static void cli_close(tt_conn_t *c, const tt_close_info_t *info)
{
    client_t *k = tt_conn_get_data(c);
    k->closed++;
    k->kind = info->kind;
}

static const tt_conn_handlers_t cli_h = {
    .on_open = cli_open, .on_data = cli_data, .on_close = cli_close};

static void raise_nofile(void)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 4 * N_CLIENTS + 64) {
        rl.rlim_cur = rl.rlim_max;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    cr_assert_geq(rl.rlim_cur, 2 * N_CLIENTS + 64, "need %d descriptors, have %llu",
                  2 * N_CLIENTS + 64, (unsigned long long)rl.rlim_cur);
}

static bool all_open(void) { return opened == N_CLIENTS; }

Test(broadcast, every_line_reaches_every_other_client_once_in_order_with_a_slow_reader)
{
    tt_loop_t *loop;
    tt_addr_t addr, any = th_loopback(0);
    tt_server_opts_t so = {.high_water = 4 * 1024, .queue_cap = 16 * 1024};

    raise_nofile();
    clients = calloc(N_CLIENTS, sizeof(client_t));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &so, &relay_h, NULL, &srv), 0);
    cr_assert_eq(tt_server_addr(srv, &addr), 0);
    for (int i = 0; i < N_CLIENTS; i++) {
        clients[i].index = i;
        clients[i].slow = i == N_CLIENTS - 1;
        cr_assert_eq(tt_connect(loop, &addr, NULL, &cli_h, &clients[i], &clients[i].conn), 0);
    }
    volatile bool done = false;
    for (int spins = 0; !all_open() && spins < 2000; spins++)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_assert_eq(opened, N_CLIENTS, "opened %d", opened);
    /* Let the server's accept side catch up too. */
    while (tt_server_conn_count(srv) < N_CLIENTS && !done)
        tt_loop_run(loop, TT_RUN_ONCE);

    /* Senders 0..3 each send LINES padded lines, a round at a time. The slow
     * client never reads: the relayed bytes fill its small kernel buffers, then its
     * server-side queue, until the 16 KiB cap closes that one connection. */
    char pad[PAD + 1];
    memset(pad, '.', PAD);
    pad[PAD] = '\0';
    for (int l = 0; l < LINES; l++) {
        for (int s = 0; s < SENDERS; s++) {
            char line[PAD + 32];
            int n = snprintf(line, sizeof(line), "s%d l%d %s\n", s, l, pad);
            cr_assert_geq(tt_send(clients[s].conn, line, (size_t)n), 0);
        }
        for (int r = 0; r < 3; r++)
            tt_loop_run(loop, TT_RUN_NOWAIT);
    }

    /* Expected per receiver: every line of every sender other than itself. */
    uint64_t t0 = th_now_ms();
    for (;;) {
        int complete = 0;
        for (int i = 0; i < N_CLIENTS - 1; i++) {
            int want = (i < SENDERS ? SENDERS - 1 : SENDERS) * LINES;
            complete += clients[i].next_seq[0] + clients[i].next_seq[1] + clients[i].next_seq[2] +
                                clients[i].next_seq[3] ==
                            want;
        }
        if (complete == N_CLIENTS - 1 || th_now_ms() - t0 > 20000)
            break;
        bool never = false;
        th_run_until(loop, &never, 20); /* bounded: ONCE would block when all is quiet */
    }

    int bad = 0, missing = 0, closed_early = 0;
    for (int i = 0; i < N_CLIENTS - 1; i++)
        closed_early += clients[i].closed;
    cr_expect_eq(closed_early, 0, "normal readers closed: %d (first kind %s)", closed_early,
                 tt_close_kind_name(clients[0].kind));
    for (int i = 0; i < N_CLIENTS - 1; i++) {
        int want = (i < SENDERS ? SENDERS - 1 : SENDERS) * LINES;
        if (clients[i].dup_or_gap != 0)
            bad++;
        if (clients[i].lines != want)
            missing++;
        if (i < SENDERS)
            cr_expect_eq(clients[i].next_seq[i], 0, "client %d got its own lines", i);
    }
    cr_expect_eq(bad, 0, "receivers with duplicated or out-of-order lines: %d", bad);
    cr_expect_eq(missing, 0, "receivers missing lines: %d", missing);
    /* The slow reader's server side overflowed its cap and was closed, alone. (The
     * slow client itself cannot tell: it stopped reading.) */
    cr_expect_eq(overflow_closes, 1, "server-side overflow closes: %d", overflow_closes);
    cr_expect_eq(other_abnormal_closes, 0);
    for (int i = 0; i < N_CLIENTS; i++)
        if (!clients[i].closed)
            tt_destroy(clients[i].conn, 0);
    tt_server_close(srv);
    th_run(loop, 10000);
    cr_assert_eq(tt_loop_close(loop), 0);
    free(clients);
}

/* ---- groups ----------------------------------------------------------------------- */

typedef struct {
    int got, closed;
    char buf[64];
} gcli_t;

static tt_group_t *room;
static tt_conn_t *members[3];
static int accepted;

static void g_srv_open(tt_conn_t *c)
{
    /* the first two clients join the room; the third does not */
    if (accepted < 2)
        cr_assert_eq(tt_group_join(room, c), 0);
    members[accepted++] = c;
}

static void g_cli_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)info;
    ((gcli_t *)tt_conn_get_data(c))->closed++;
}

static void g_cli_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    gcli_t *k = tt_conn_get_data(c);
    (void)pending;
    memcpy(k->buf + k->got, d, n);
    k->got += (int)n;
}

Test(broadcast, group_members_receive_and_others_do_not_and_close_leaves_the_group)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_conn_handlers_t sh = {.on_open = g_srv_open};
    tt_conn_handlers_t ch = {.on_data = g_cli_data, .on_close = g_cli_close};
    gcli_t k[3] = {0};
    tt_conn_t *c[3];

    accepted = 0;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_group_init(loop, "room", &room), 0);
    cr_assert_str_eq(tt_group_name(room), "room");
    srv = th_listen(loop, &sh, NULL, &addr);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, &k[i], &c[i]), 0);
        bool never = false;
        th_run_until(loop, &never, 50); /* accept in order */
    }
    cr_assert_eq(accepted, 3);
    cr_expect_eq(tt_group_count(room), 2);
    cr_expect_eq(tt_group_join(room, members[0]), -EEXIST);
    cr_expect_eq(tt_group_leave(room, members[2]), -ENOENT);
    cr_expect_eq(tt_group_broadcast(room, "hi\n", 3, NULL), 2);
    cr_expect_eq(tt_group_broadcast(room, "x\n", 2, members[0]), 1);
    bool never = false;
    th_run_until(loop, &never, 100);
    cr_expect_eq(k[0].got, 3, "member 0 got %d", k[0].got);
    cr_expect_eq(k[1].got, 5, "member 1 got %d", k[1].got);
    cr_expect_eq(k[2].got, 0, "non-member got %d", k[2].got);
    cr_expect_eq(memcmp(k[1].buf, "hi\nx\n", 5), 0);

    /* A member that closes leaves the group by itself. */
    tt_destroy(members[1], 0);
    th_run_until(loop, &never, 50);
    cr_expect_eq(tt_group_count(room), 1, "count after close: %zu", tt_group_count(room));
    cr_expect(tt_group_has(room, members[0]));
    cr_expect_eq(k[1].closed, 1, "the client of the closed member saw the end");

    cr_assert_eq(tt_group_close(room), 0);
    for (int i = 0; i < 3; i++)
        if (!k[i].closed)
            tt_destroy(c[i], 0); /* their server sides end by themselves */
    tt_server_close(srv);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- small broadcasts to a slow reader are packed, and cost real memory ---------- */

#define SMALL_LINES 20000
static tt_conn_t *slow_conn;

static void slow_srv_open(tt_conn_t *c)
{
    cr_assert_eq(tt_conn_set_sndbuf(c, 4096), 0);
    slow_conn = c;
}

static int queue_entries(const tt_conn_t *c)
{
    int n = 0;
    for (const tt__sqe_t *e = c->out != NULL ? c->out->sq.head : NULL; e != NULL; e = e->next)
        n++;
    return n;
}

Test(broadcast, small_lines_to_a_slow_reader_are_packed_not_a_node_each)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_conn_handlers_t sh = {.on_open = slow_srv_open};
    int small = 4096;
    char line[16];

    slow_conn = NULL;
    cr_assert_eq(tt_loop_init(&loop), 0);
    srv = th_listen(loop, &sh, NULL, &addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    cr_assert_eq(connect(fd, &addr.u.sa, addr.len), 0);
    bool never = false;
    th_run_until(loop, &never, 50);
    cr_assert_not_null(slow_conn);

    /* The reader never reads: after the first few lines fill the kernel's buffers,
     * everything waits in tether's queue. */
    for (int i = 0; i < SMALL_LINES; i++) {
        int n = snprintf(line, sizeof(line), "line %09d\n", i);
        cr_assert_eq(tt_server_broadcast(srv, line, (size_t)n, NULL), 1);
        if (i % 1000 == 0)
            th_run_until(loop, &never, 1);
    }
    th_run_until(loop, &never, 20);
    size_t queued = tt_conn_queued_bytes(slow_conn);
    int entries = queue_entries(slow_conn);
    uint64_t alloc = slow_conn->out != NULL ? slow_conn->out->sq.alloc : 0;
    cr_assert_gt(queued, 100000u, "only %zu bytes queued: the reader was not slow", queued);
    /* A node per line would be ~20000 entries and 64 bytes of overhead per 15-byte line. */
    cr_expect_lt(entries, 100, "%d queue entries for %zu bytes", entries, queued);
    cr_expect_lt(alloc, 2 * queued + 65536, "queue holds %llu bytes of heap for %zu queued",
                 (unsigned long long)alloc, queued);
    close(fd);
    tt_server_close(srv);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- a framed broadcast frames the message for each connection's framing --------- */

static tt_conn_t *fb_conns[4];
static int fb_opens;

static void fb_open(tt_conn_t *c)
{
    cr_assert_lt(fb_opens, 4);
    if (fb_opens == 2) { /* the third switches to lines before anything is read */
        tt_frame_opts_t line = tt_frame_line(0);
        cr_assert_eq(tt_conn_set_framing(c, &line), 0);
    }
    if (fb_opens == 3)
        cr_assert_eq(tt_conn_set_framing(c, NULL), 0); /* the fourth: no framing */
    fb_conns[fb_opens++] = c;
}

static size_t read_for(int fd, char *buf, size_t want)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200 * 1000};
    size_t got = 0;
    ssize_t r;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (got < want && (r = recv(fd, buf + got, want - got, 0)) > 0)
        got += (size_t)r;
    return got;
}

Test(broadcast, broadcast_message_frames_once_per_framing_and_skips_unframed)
{
    tt_loop_t *loop;
    tt_addr_t addr, any = th_loopback(0);
    tt_frame_opts_t u32 = tt_frame_u32be(0);
    tt_server_opts_t so = {.frame = &u32};
    tt_conn_handlers_t sh = {.on_open = fb_open};
    tt_server_t *s;
    int fd[4];
    char buf[64];

    fb_opens = 0;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &so, &sh, NULL, &s), 0);
    cr_assert_eq(tt_server_addr(s, &addr), 0);
    for (int i = 0; i < 4; i++) {
        fd[i] = th_tcp_connect_blocking(&addr);
        bool never = false;
        th_run_until(loop, &never, 30); /* accepted in order */
    }
    cr_assert_eq(fb_opens, 4);

    cr_expect_eq(tt_server_broadcast_message(NULL, "x", 1, NULL), -EINVAL);
    /* [0] and [1] share the server's u32be copy; [1] is excepted; [2] gets a line;
     * [3] is not framed and gets nothing. */
    int r = tt_server_broadcast_message(s, "hello", 5, fb_conns[1]);
    cr_expect_eq(r, 2, "queued for %d", r);
    /* A line holding "\n" cannot be framed for [2]: the others still get it. */
    r = tt_server_broadcast_message(s, "a\nb", 3, fb_conns[1]);
    cr_expect_eq(r, 1, "queued for %d", r);
    bool never = false;
    th_run_until(loop, &never, 50);

    size_t n = read_for(fd[0], buf, sizeof(buf));
    cr_expect_eq(n, 9 + 7, "u32be client got %zu bytes", n);
    cr_expect_eq(memcmp(buf, "\0\0\0\5hello\0\0\0\3a\nb", 16), 0);
    cr_expect_eq(read_for(fd[1], buf, sizeof(buf)), 0, "the excepted one got bytes");
    n = read_for(fd[2], buf, sizeof(buf));
    cr_expect_eq(n, 6, "line client got %zu bytes", n);
    cr_expect_eq(memcmp(buf, "hello\n", 6), 0);
    cr_expect_eq(read_for(fd[3], buf, sizeof(buf)), 0, "the unframed one got bytes");
    tt_conn_stats_t st;
    cr_assert_eq(tt_conn_get_stats(fb_conns[0], &st), 0);
    cr_expect_eq(st.messages_out, 2, "messages_out %llu", (unsigned long long)st.messages_out);

    for (int i = 0; i < 4; i++) {
        close(fd[i]);
    }
    tt_server_close(s);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}
