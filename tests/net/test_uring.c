/* The io_uring backend where it differs from epoll inside: choosing it, reads that
 * are stopped while a recv is in flight (no byte may be lost or reordered),
 * closing a socket the ring still has a request on (the peer must see FIN or RST
 * at once, without another loop round), and more sockets reading at once than the
 * ring has buffers. The whole suite also runs with TETHER_BACKEND=io_uring (make
 * test); these are the cases it would not single out. */
#include <criterion/criterion.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

static tt_loop_t *loop;

/* io_uring where this kernel allows it: else the backend tests cannot run here. */
static bool uring_available(void)
{
    struct io_uring ring;

    if (io_uring_queue_init(4, &ring, 0) < 0)
        return false;
    io_uring_queue_exit(&ring);
    return true;
}

static void use_uring(void)
{
    if (!uring_available())
        cr_skip_test("io_uring is not available on this kernel");
    setenv("TETHER_BACKEND", "io_uring", 1);
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_str_eq(tt_loop_backend(loop), "io_uring");
}

Test(uring, backend_is_chosen_by_the_environment)
{
    tt_loop_t *l;

    unsetenv("TETHER_BACKEND");
    cr_assert_eq(tt_loop_init(&l), 0);
    cr_assert_str_eq(tt_loop_backend(l), "epoll");
    cr_assert_eq(tt_loop_close(l), 0);
    setenv("TETHER_BACKEND", "kqueue", 1); /* not ours: the default */
    cr_assert_eq(tt_loop_init(&l), 0);
    cr_assert_str_eq(tt_loop_backend(l), "epoll");
    cr_assert_eq(tt_loop_close(l), 0);
    cr_assert_null(tt_loop_backend(NULL));
    if (uring_available()) {
        setenv("TETHER_BACKEND", "io_uring", 1);
        cr_assert_eq(tt_loop_init(&l), 0);
        cr_assert_str_eq(tt_loop_backend(l), "io_uring");
        cr_assert_eq(tt_loop_close(l), 0);
    }
}

/* ---- reading paused and resumed while bytes keep coming --------------------------- */

#define STREAM_BYTES (2u << 20)

typedef struct pause_rec {
    tt_conn_t *conn;
    uint64_t got;
    long bad_at;
    int pauses, closes;
    bool paused, ended;
    tt_timer_t *timer;
} pause_rec_t;

static pause_rec_t prec = {.bad_at = -1};

static tt_server_t *psrv;

static void p_open(tt_conn_t *c)
{
    prec.conn = c;
    tt_server_close(psrv); /* one connection: nothing else keeps the loop waiting */
    psrv = NULL;
}
static void p_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)c;
    (void)pending;
    cr_assert_not(prec.paused, "data arrived while reading was stopped");
    if (prec.bad_at < 0) {
        long bad = th_pattern_check(d, n, prec.got);
        if (bad >= 0)
            prec.bad_at = (long)prec.got + bad;
    }
    prec.got += n;
}
static void p_end(tt_conn_t *c)
{
    prec.ended = true;
    tt_end(c, NULL, 0);
}
static void p_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    (void)info;
    prec.closes++;
    prec.conn = NULL;
    tt_timer_stop(prec.timer);
}

/* Every 2 ms, flip reading off or on: often while a recv is in flight. */
static void flip(tt_timer_t *t, void *arg)
{
    (void)t;
    (void)arg;
    if (prec.conn == NULL)
        return;
    if (prec.paused) {
        prec.paused = false;
        cr_assert_eq(tt_conn_read_start(prec.conn), 0);
    } else {
        prec.paused = true;
        prec.pauses++;
        cr_assert_eq(tt_conn_read_stop(prec.conn), 0);
    }
}

static void *send_stream(void *arg)
{
    int fd = *(int *)arg;
    static char buf[2048];

    /* About 0.4 s in all, in small pieces: reading flips many times meanwhile, and
     * finds a recv waiting in the kernel each time. */
    for (uint64_t off = 0; off < STREAM_BYTES; off += sizeof(buf)) {
        size_t n = sizeof(buf), done = 0;
        th_pattern(buf, n, off);
        while (done < n) {
            ssize_t w = send(fd, buf + done, n - done, MSG_NOSIGNAL);
            if (w <= 0)
                return NULL;
            done += (size_t)w;
        }
        usleep(300);
    }
    shutdown(fd, SHUT_WR);
    return NULL;
}

Test(uring, reads_stopped_with_a_recv_in_flight_lose_nothing)
{
    tt_conn_handlers_t h = {.on_open = p_open, .on_data = p_data, .on_end = p_end,
                            .on_close = p_close};
    tt_addr_t addr;
    pthread_t th;
    int fd;

    use_uring();
    psrv = th_listen(loop, &h, NULL, &addr);
    cr_assert_eq(tt_timer_init(loop, &prec.timer, flip, NULL), 0);
    cr_assert_eq(tt_timer_start(prec.timer, 2, 2), 0);
    fd = th_tcp_connect_blocking(&addr);
    cr_assert_geq(fd, 0);
    pthread_create(&th, NULL, send_stream, &fd);
    /* The timer flips reading every 2 ms until the connection closes. */
    uint64_t deadline = th_now_ms() + 30000;
    while (prec.closes == 0 && th_now_ms() < deadline)
        tt_loop_run(loop, TT_RUN_ONCE);
    pthread_join(th, NULL);
    tt_timer_close(prec.timer);
    th_run(loop, 5000);
    close(fd);
    cr_assert(prec.ended, "the stream did not end (got %llu)", (unsigned long long)prec.got);
    cr_assert_eq(prec.got, STREAM_BYTES);
    cr_assert_eq(prec.bad_at, -1, "byte %ld out of order", prec.bad_at);
    cr_assert_gt(prec.pauses, 20, "only %d pauses: the test did not exercise stopping", prec.pauses);
    cr_assert_eq(prec.closes, 1);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* Two connections whose bytes arrive in the same round: whichever is delivered
 * first stops the other's reading. The other's recv has then already completed
 * with its bytes (it is later in the same batch of completions): they must be
 * held, not delivered while stopped, and delivered once reading resumes. */
typedef struct pair_rec {
    tt_conn_t *conn;
    struct pair_rec *other;
    bool stopped;
    uint64_t got;
    long bad_at;
} pair_rec_t;

static pair_rec_t pa = {.bad_at = -1}, pb = {.bad_at = -1};
static int pair_opens;

static void q_open(tt_conn_t *c)
{
    pair_rec_t *r = pair_opens++ == 0 ? &pa : &pb;
    r->conn = c;
    tt_conn_set_data(c, r);
}
static void q_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    pair_rec_t *r = tt_conn_get_data(c);

    (void)pending;
    cr_assert_not(r->stopped, "data delivered to a connection whose reading is stopped");
    if (r->bad_at < 0) {
        long bad = th_pattern_check(d, n, r->got);
        if (bad >= 0)
            r->bad_at = (long)r->got + bad;
    }
    r->got += n;
    if (!r->other->stopped && r->other->got == 0) {
        r->other->stopped = true;
        cr_assert_eq(tt_conn_read_stop(r->other->conn), 0);
    }
}

Test(uring, reads_stopped_by_an_earlier_completion_of_the_same_round)
{
    tt_conn_handlers_t h = {.on_open = q_open, .on_data = q_data};
    tt_server_t *srv;
    tt_addr_t addr;
    char buf[3000];
    int fa, fb;

    use_uring();
    pa.other = &pb;
    pb.other = &pa;
    srv = th_listen(loop, &h, NULL, &addr);
    fa = th_tcp_connect_blocking(&addr);
    fb = th_tcp_connect_blocking(&addr);
    uint64_t deadline = th_now_ms() + 5000;
    while (pair_opens < 2 && th_now_ms() < deadline)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_assert_eq(pair_opens, 2);
    tt_loop_run(loop, TT_RUN_NOWAIT); /* both recvs are in the kernel now */
    /* Both arrive before the loop looks again: one round completes both recvs. */
    th_pattern(buf, sizeof(buf), 0);
    cr_assert_eq(send(fa, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    cr_assert_eq(send(fb, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    usleep(50000);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    pair_rec_t *first = pa.got > 0 ? &pa : &pb, *second = first->other;
    cr_assert_eq(first->got, sizeof(buf));
    cr_assert(second->stopped);
    cr_assert_eq(second->got, 0);
    /* Resume: the held bytes come, then what follows them, in order. */
    second->stopped = false;
    cr_assert_eq(tt_conn_read_start(second->conn), 0);
    th_pattern(buf, sizeof(buf), sizeof(buf));
    cr_assert_eq(send(second == &pa ? fa : fb, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    deadline = th_now_ms() + 5000;
    while (second->got < 2 * sizeof(buf) && th_now_ms() < deadline)
        tt_loop_run(loop, TT_RUN_NOWAIT);
    cr_assert_eq(second->got, 2 * sizeof(buf));
    cr_assert_eq(second->bad_at, -1, "byte %ld out of order", second->bad_at);
    cr_assert_eq(first->bad_at, -1);
    close(fa);
    close(fb);
    tt_server_close(srv);
    th_run(loop, 5000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- closing while the ring holds a request on the socket ------------------------ */

static tt_conn_t *victim;
static tt_server_t *vsrv;
static void v_open(tt_conn_t *c)
{
    victim = c;
    tt_server_close(vsrv);
    vsrv = NULL;
}
static void v_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    (void)info;
    victim = NULL;
}

/* The connection is the loop's last handle: the round that closes its fd is the
 * loop's last, with no wait after it to hand the ring anything. The peer must see
 * the close anyway, because removal cancels the ring's recv at once (otherwise the
 * ring would keep the socket open until tt_loop_close). */
static void close_with_recv_in_flight(bool rst)
{
    tt_conn_handlers_t h = {.on_open = v_open, .on_close = v_close};
    tt_addr_t addr;
    struct pollfd pfd;
    char b;
    int fd;

    use_uring();
    vsrv = th_listen(loop, &h, NULL, &addr);
    fd = th_tcp_connect_blocking(&addr);
    cr_assert_geq(fd, 0);
    uint64_t deadline = th_now_ms() + 5000;
    while (victim == NULL && th_now_ms() < deadline)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_assert_not_null(victim);
    tt_loop_run(loop, TT_RUN_NOWAIT); /* the recv is in the kernel now */
    cr_assert_eq(tt_destroy(victim, rst ? TT_DESTROY_RESET : 0), 0);
    cr_assert_eq(tt_loop_run(loop, TT_RUN_NOWAIT), 0); /* on_close, fd closed: no work left */
    cr_assert_null(victim);

    pfd.fd = fd;
    pfd.events = POLLIN;
    cr_assert_eq(poll(&pfd, 1, 1000), 1, "the peer saw nothing within 1 s");
    ssize_t r = recv(fd, &b, 1, 0);
    if (rst)
        cr_assert(r < 0 && errno == ECONNRESET, "expected a reset, got %zd (%s)", r,
                  r < 0 ? strerror(errno) : "");
    else
        cr_assert_eq(r, 0, "expected end of stream, got %zd", r);
    close(fd);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(uring, destroy_with_a_recv_in_flight_closes_the_socket_at_once)
{
    close_with_recv_in_flight(false);
}

Test(uring, destroy_rst_with_a_recv_in_flight_resets_at_once)
{
    close_with_recv_in_flight(true);
}

/* ---- more readers at once than the ring has buffers --------------------------------- */

#define MANY 600
static int echoed_conns;

static void e_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)pending;
    cr_assert_geq(tt_send(c, d, n), 0);
}

Test(uring, more_sockets_reading_than_buffers)
{
    tt_conn_handlers_t h = {.on_data = e_data};
    tt_server_t *srv;
    tt_addr_t addr;
    static int fds[MANY];
    char msg[1000], back[1000];

    use_uring();
    srv = th_listen(loop, &h, NULL, &addr);
    for (int i = 0; i < MANY; i++) {
        fds[i] = th_tcp_connect_blocking(&addr);
        cr_assert_geq(fds[i], 0);
    }
    for (int round = 0; round < 3; round++) {
        /* Every client writes before the loop runs: one round finds them all. */
        for (int i = 0; i < MANY; i++) {
            th_pattern(msg, sizeof(msg), (uint64_t)(i + round * MANY));
            cr_assert_eq(send(fds[i], msg, sizeof(msg), 0), (ssize_t)sizeof(msg));
        }
        for (int i = 0; i < MANY; i++) {
            size_t got = 0;
            uint64_t deadline = th_now_ms() + 10000;
            while (got < sizeof(back) && th_now_ms() < deadline) {
                ssize_t r = recv(fds[i], back + got, sizeof(back) - got, MSG_DONTWAIT);
                if (r > 0)
                    got += (size_t)r;
                else
                    tt_loop_run(loop, TT_RUN_NOWAIT);
            }
            cr_assert_eq(got, sizeof(back), "connection %d: %zu bytes back", i, got);
            cr_assert_eq(th_pattern_check(back, sizeof(back), (uint64_t)(i + round * MANY)), -1);
            echoed_conns++;
        }
    }
    cr_assert_eq(echoed_conns, 3 * MANY);
    for (int i = 0; i < MANY; i++)
        close(fds[i]);
    tt_server_close(srv);
    th_run(loop, 10000);
    cr_assert_eq(tt_loop_close(loop), 0);
}
