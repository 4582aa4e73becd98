/* What an idle connection carries: no send state (queue, deadline, limits of its
 * own) until something is queued, and none again once the queue has drained; the
 * server's mark applies without one; limits set on the connection itself keep it;
 * the bytes-queued total stays exact through all of it. Real sockets: the peer is
 * a plain socket that reads only when the test says so. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "stream/conn.h"

#define CHUNK 10000
#define SERVER_MARK 200000

static tt_loop_t *loop;
static tt_server_t *server;
static tt_conn_t *conn;
static bool opened, drained, closed;
static tt_close_info_t close_info;
static char chunk[CHUNK];
static volatile bool never;

static void s_open(tt_conn_t *c)
{
    conn = c;
    opened = true;
    /* A small send buffer: the queue fills after a little, not after megabytes. */
    cr_assert_eq(tt_conn_set_sndbuf(c, 4096), 0);
}

static void s_drain(tt_conn_t *c)
{
    (void)c;
    drained = true;
}

static void s_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    close_info = *info;
    closed = true;
    conn = NULL;
}

static const tt_conn_handlers_t handlers = {
    .on_open = s_open, .on_drain = s_drain, .on_close = s_close};

/* A server with the given high-water mark (0: the default) and a plain client
 * that does not read until asked; returns the client's socket. */
static int start(size_t high_water)
{
    tt_server_opts_t o = {.high_water = high_water};
    tt_addr_t any = th_loopback(0), addr;
    int fd, small = 4096;

    opened = drained = closed = false;
    conn = NULL;
    memset(chunk, 'x', sizeof(chunk));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &o, &handlers, NULL, &server), 0);
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    cr_assert_eq(connect(fd, &addr.u.sa, addr.len), 0, "connect: %s", strerror(errno));
    cr_assert(th_run_until(loop, &opened, 5000), "no on_open");
    return fd;
}

static void stop(int fd)
{
    if (fd >= 0)
        close(fd);
    if (conn != NULL) {
        tt_destroy(conn, 0);
        th_run_until(loop, &closed, 5000);
    }
    tt_server_close(server);
    th_run_until(loop, &never, 50);
    tt_loop_close(loop);
}

/* Send chunks until tt_send says the mark is reached; returns the bytes sent. */
static uint64_t fill_to_mark(void)
{
    uint64_t sent = 0;
    for (int i = 0; i < 10000; i++) {
        int r = tt_send(conn, chunk, sizeof(chunk));
        cr_assert_geq(r, 0, "tt_send: %d", r);
        sent += sizeof(chunk);
        if (r == TT_SEND_FULL)
            return sent;
    }
    cr_assert_fail("100 MB sent and the mark never reached");
    return sent;
}

/* Read everything the server sends until `want` bytes came. */
static void read_all(int fd, uint64_t want)
{
    char buf[65536];
    uint64_t got = 0;
    uint64_t deadline = th_now_ms() + 10000;

    while (got < want && th_now_ms() < deadline) {
        th_run_until(loop, &never, 1); /* a round or so: the server writes what it can */
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0)
            got += (uint64_t)n;
        else if (n == 0)
            break;
    }
    cr_assert_eq(got, want, "read %llu of %llu bytes", (unsigned long long)got,
                 (unsigned long long)want);
}

Test(conn_state, an_idle_connection_has_no_send_state_and_the_server_mark_applies_without_one)
{
    int fd = start(SERVER_MARK);

    cr_assert_null(conn->out, "a new connection holds a send state");
    uint64_t sent = fill_to_mark();
    cr_assert_not_null(conn->out, "bytes are queued, so there is a send state");
    size_t queued = tt_conn_queued_bytes(conn);
    /* The server's mark, not the 64 KiB default: TT_SEND_FULL came with the chunk
     * that took the queue to the mark or past it. */
    cr_assert_geq(queued, SERVER_MARK, "TT_SEND_FULL at %zu queued", queued);
    cr_assert_lt(queued, SERVER_MARK + CHUNK, "TT_SEND_FULL only at %zu queued", queued);

    read_all(fd, sent);
    cr_assert(th_run_until(loop, &drained, 5000), "no on_drain");
    cr_assert_null(conn->out, "the queue drained and the send state stayed");
    tt_conn_stats_t st;
    cr_assert_eq(tt_conn_get_stats(conn, &st), 0);
    cr_assert_eq(st.bytes_queued_total, sent);
    cr_assert_eq(tt_conn_written_bytes(conn), sent);
    stop(fd);
}

Test(conn_state, limits_of_its_own_keep_the_send_state_and_apply)
{
    int fd = start(0);

    cr_assert_null(conn->out);
    cr_assert_eq(tt_conn_set_high_water(conn, 4096), 0);
    cr_assert_not_null(conn->out, "the connection's own mark lives in its send state");
    /* Setting what it has already changes nothing. */
    cr_assert_eq(tt_conn_set_high_water(conn, 4096), 0);
    cr_assert_eq(tt_conn_set_high_water(conn, 0), -EINVAL);

    uint64_t sent = fill_to_mark();
    size_t queued = tt_conn_queued_bytes(conn);
    cr_assert_geq(queued, 4096u);
    cr_assert_lt(queued, 4096u + CHUNK, "the own mark of 4096 did not apply: %zu", queued);
    read_all(fd, sent);
    cr_assert(th_run_until(loop, &drained, 5000), "no on_drain");
    cr_assert_not_null(conn->out, "the own limits went with the drained queue");
    cr_assert_eq(tt_conn_queued_bytes(conn), 0u);
    stop(fd);
}

Test(conn_state, bytes_never_sent_count_in_the_total_at_close)
{
    int fd = start(SERVER_MARK);
    uint64_t sent = fill_to_mark();
    size_t queued = tt_conn_queued_bytes(conn);

    tt_destroy(conn, 0);
    cr_assert(th_run_until(loop, &closed, 5000), "no on_close");
    cr_assert_eq(close_info.bytes_queued, sent, "queued %llu, sent %llu",
                 (unsigned long long)close_info.bytes_queued, (unsigned long long)sent);
    cr_assert_eq(close_info.bytes_unsent, queued);
    cr_assert_eq(close_info.bytes_written + close_info.bytes_unsent, sent);
    stop(fd);
}

Test(conn_state, send_states_return_to_a_bounded_pool)
{
    int fd = start(SERVER_MARK);

    for (int round = 0; round < 3; round++) {
        drained = false;
        uint64_t sent = fill_to_mark();
        read_all(fd, sent);
        cr_assert(th_run_until(loop, &drained, 5000), "no on_drain in round %d", round);
        cr_assert_null(conn->out);
        /* The one send state went back and is the one taken next time. */
        cr_assert_eq(loop->out_free.n, 1u, "round %d: %u in the pool", round, loop->out_free.n);
    }
    stop(fd);
}

static int owned_freed;

static void count_free(void *buf, void *arg)
{
    (void)buf;
    (void)arg;
    owned_freed++;
}

/* Queue `k` owned buffers behind a full queue, let the peer read everything, and
 * return the entry nodes the loop keeps afterwards. */
static uint32_t owned_round(int fd, int k)
{
    static char word[] = "0123456789";
    drained = false;
    owned_freed = 0;
    uint64_t sent = fill_to_mark();
    for (int i = 0; i < k; i++)
        cr_assert_geq(tt_send_owned(conn, word, 10, count_free, NULL), 0);
    read_all(fd, sent + 10u * (uint64_t)k);
    cr_assert(th_run_until(loop, &drained, 5000), "no on_drain");
    cr_assert_eq(owned_freed, k, "%d of %d buffers released", owned_freed, k);
    return loop->sqe_free.n;
}

Test(conn_state, queue_entry_nodes_return_to_a_bounded_pool_and_are_reused)
{
    int fd = start(SERVER_MARK);
    uint32_t max = loop->sqe_free.max;

    cr_assert_gt(max, 300u);
    cr_assert_eq(loop->sqe_free.n, 0u);
    /* Each owned send took a node; each came back when its bytes were written. */
    cr_assert_eq(owned_round(fd, 300), 300u);
    /* The same number again is served from the pool: it does not grow. */
    cr_assert_eq(owned_round(fd, 300), 300u);
    /* More than the pool keeps: the rest go back to malloc. */
    cr_assert_eq(owned_round(fd, (int)max + 500), max);
    stop(fd);
}
