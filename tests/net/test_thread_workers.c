/* Every core: worker loops on their own threads, SO_REUSEPORT or one acceptor,
 * cross-loop broadcast and gathering, the admin endpoint over a worker set.
 * Runs under ThreadSanitizer too (file name test_thread_*). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

#define CLIENTS 64

/* ---- the workers' side: echo, and count on which thread connections land ------- */

static atomic_int opens_per_worker[8];
static pthread_t worker_threads[8];

static void on_start(tt_workers_t *set, unsigned index, tt_loop_t *loop, tt_server_t *srv,
                     void *arg)
{
    (void)set, (void)loop, (void)arg;
    worker_threads[index] = pthread_self();
    tt_server_set_data(srv, (void *)(uintptr_t)(index + 1));
}

static void w_open(tt_conn_t *c)
{
    unsigned index = (unsigned)(uintptr_t)tt_server_get_data(tt_conn_server(c)) - 1;
    cr_assert(pthread_equal(pthread_self(), worker_threads[index]),
              "connection callbacks run on their worker's thread");
    atomic_fetch_add(&opens_per_worker[index], 1);
}

static void w_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)pending;
    tt_send(c, d, n);
}

static const tt_conn_handlers_t worker_h = {.on_open = w_open, .on_data = w_data};

/* ---- the clients' side, on the test thread's own loop ------------------------------ */

typedef struct {
    int opened, closed;
    size_t got;
    char buf[64];
} cli_t;

static cli_t cli[CLIENTS];
static tt_conn_t *conns[CLIENTS];
static int total_opened;

static void c_open(tt_conn_t *c)
{
    ((cli_t *)tt_conn_get_data(c))->opened++;
    total_opened++;
}
static void c_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    cli_t *k = tt_conn_get_data(c);
    (void)pending;
    if (k->got + n <= sizeof(k->buf))
        memcpy(k->buf + k->got, d, n);
    k->got += n;
}
static void c_close(tt_conn_t *c, const tt_close_info_t *i)
{
    (void)i;
    ((cli_t *)tt_conn_get_data(c))->closed++;
}
static const tt_conn_handlers_t cli_h = {.on_open = c_open, .on_data = c_data, .on_close = c_close};

static void connect_all(tt_loop_t *loop, const tt_addr_t *addr)
{
    memset(cli, 0, sizeof(cli));
    total_opened = 0;
    for (int i = 0; i < CLIENTS; i++)
        cr_assert_eq(tt_connect(loop, addr, NULL, &cli_h, &cli[i], &conns[i]), 0);
    for (uint64_t t0 = th_now_ms(); total_opened < CLIENTS && th_now_ms() - t0 < 5000;) {
        bool never = false;
        th_run_until(loop, &never, 10);
    }
    cr_assert_eq(total_opened, CLIENTS, "opened %d", total_opened);
}

static size_t received_total(void)
{
    size_t sum = 0;
    for (int i = 0; i < CLIENTS; i++)
        sum += cli[i].got;
    return sum;
}

static void wait_received(tt_loop_t *loop, size_t want)
{
    for (uint64_t t0 = th_now_ms(); received_total() < want && th_now_ms() - t0 < 5000;) {
        bool never = false;
        th_run_until(loop, &never, 10);
    }
}

typedef struct {
    pthread_mutex_t mu;
    size_t conns[8];
    int visits;
} gather_t;

static void count_conns(tt_workers_t *set, unsigned index, tt_loop_t *loop, tt_server_t *srv,
                        void *arg)
{
    gather_t *g = arg;
    (void)set, (void)loop;
    cr_assert(pthread_equal(pthread_self(), worker_threads[index]));
    size_t n = srv != NULL ? tt_server_conn_count(srv) : 0;
    pthread_mutex_lock(&g->mu);
    g->conns[index] = n;
    g->visits++;
    pthread_mutex_unlock(&g->mu);
}

static void run_set(bool no_reuseport)
{
    tt_loop_t *loop;
    tt_workers_t *set;
    tt_workers_opts_t wo = {.count = 2, .no_reuseport = no_reuseport, .on_start = on_start};
    tt_addr_t any = th_loopback(0), addr;

    for (int i = 0; i < 8; i++)
        atomic_store(&opens_per_worker[i], 0);
    cr_assert_eq(tt_workers_start(&any, &wo, NULL, &worker_h, NULL, &set), 0);
    cr_assert_eq(tt_workers_count(set), 2);
    cr_assert_eq(tt_workers_addr(set, &addr), 0);
    cr_assert_neq(tt_addr_port(&addr), 0, "port 0 resolved once and shared");
    cr_assert_eq(tt_loop_init(&loop), 0);
    connect_all(loop, &addr);

    /* Every connection is on exactly one worker; the load spreads over both. */
    gather_t g = {PTHREAD_MUTEX_INITIALIZER, {0}, 0};
    for (uint64_t t0 = th_now_ms(); th_now_ms() - t0 < 3000;) {
        g.visits = 0;
        cr_assert_eq(tt_workers_visit(set, count_conns, &g), 0);
        if (g.conns[0] + g.conns[1] == CLIENTS)
            break;
        usleep(10000);
    }
    cr_expect_eq(g.visits, 2);
    cr_expect_eq(g.conns[0] + g.conns[1], CLIENTS, "%zu + %zu", g.conns[0], g.conns[1]);
    int w0 = atomic_load(&opens_per_worker[0]), w1 = atomic_load(&opens_per_worker[1]);
    cr_expect_gt(w0, 0, "worker 0 got %d", w0);
    cr_expect_gt(w1, 0, "worker 1 got %d", w1);
    if (no_reuseport) /* round-robin by the acceptor: exact */
        cr_expect_eq(w0, CLIENTS / 2, "acceptor hands out evenly: %d/%d", w0, w1);
    cr_log_info("%s: worker 0 %d, worker 1 %d connections", no_reuseport ? "acceptor" : "reuseport",
                w0, w1);

    /* Echo works on every worker. */
    for (int i = 0; i < CLIENTS; i++)
        tt_send(conns[i], "ping", 4);
    wait_received(loop, 4 * CLIENTS);
    cr_expect_eq(received_total(), 4 * CLIENTS);

    /* Broadcast from another thread reaches every connection of every worker once. */
    cr_assert_eq(tt_workers_broadcast(set, "all!", 4, NULL), 0);
    wait_received(loop, 8 * CLIENTS);
    cr_expect_eq(received_total(), 8 * CLIENTS, "received %zu", received_total());
    for (int i = 0; i < CLIENTS; i++)
        cr_expect_eq(memcmp(cli[i].buf, "pingall!", 8), 0, "client %d", i);

    /* Stop: the workers end their connections gracefully; the clients see it. */
    cr_assert_eq(tt_workers_stop(set, 2000), 0);
    th_run(loop, 5000);
    int closed = 0;
    for (int i = 0; i < CLIENTS; i++)
        closed += cli[i].closed;
    cr_expect_eq(closed, CLIENTS);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(workers, reuseport_spreads_connections_over_every_loop)
{
    run_set(false);
}

Test(workers, acceptor_hands_connections_round_robin_without_reuseport)
{
    run_set(true);
}

/* ---- acceptor mode under pressure --------------------------------------------------- */

/* Per-address limits in acceptor mode count once, on the worker that owns the
 * connection, and are released there: sequential graceful clients are never
 * refused, however many come. */
static void total_conns(tt_workers_t *set, unsigned index, tt_loop_t *loop, tt_server_t *srv,
                        void *arg)
{
    (void)set, (void)index, (void)loop;
    if (srv != NULL)
        atomic_fetch_add((atomic_size_t *)arg, tt_server_conn_count(srv));
}

Test(workers, acceptor_mode_per_address_limit_counts_each_client_once)
{
    tt_workers_t *set;
    tt_workers_opts_t wo = {.count = 2, .no_reuseport = true, .on_start = on_start};
    tt_server_opts_t so = {.max_conns_per_ip = 3};
    tt_addr_t any = th_loopback(0), addr;

    cr_assert_eq(tt_workers_start(&any, &wo, &so, &worker_h, NULL, &set), 0);
    cr_assert_eq(tt_workers_addr(set, &addr), 0);
    for (int i = 0; i < 8; i++) {
        int fd = th_tcp_connect_blocking(&addr);
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char b = 0;
        cr_assert_eq(write(fd, "x", 1), 1);
        ssize_t n = read(fd, &b, 1);
        cr_assert_eq(n, 1, "client %d of 8 under a limit of 3 was refused (read %zd)", i, n);
        cr_assert_eq(b, 'x');
        close(fd);
        /* Gracefully gone on its worker before the next one comes. */
        atomic_size_t open = 1;
        for (uint64_t t0 = th_now_ms(); open != 0 && th_now_ms() - t0 < 3000;) {
            atomic_store(&open, 0);
            cr_assert_eq(tt_workers_visit(set, total_conns, &open), 0);
            if (open != 0)
                usleep(2000);
        }
        cr_assert_eq(atomic_load(&open), 0, "client %d still open on the server", i);
    }
    cr_assert_eq(tt_workers_stop(set, 1000), 0);
}

/* Clients that connect as fast as they can while the set stops: worker 0 keeps
 * handing sockets over to workers that already stopped. Each such socket is closed
 * (nothing leaks, nothing crashes). */
typedef struct flood {
    tt_addr_t addr;
    atomic_bool stop;
    atomic_int connected;
    pthread_t th;
} flood_t;

static void *flood_main(void *arg)
{
    flood_t *f = arg;
    while (!atomic_load(&f->stop)) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            break;
        if (connect(fd, &f->addr.u.sa, f->addr.len) == 0 || errno == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            int err = 0;
            socklen_t len = sizeof(err);
            if (poll(&p, 1, 100) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
                err == 0)
                atomic_fetch_add(&f->connected, 1);
        }
        close(fd);
    }
    return NULL;
}

Test(workers, stop_during_a_connect_flood_in_acceptor_mode_drops_late_hand_offs_cleanly)
{
    int fds_before = th_fd_count();
    int connected = 0;

    for (int round = 0; round < 30; round++) {
        tt_workers_t *set;
        tt_workers_opts_t wo = {.count = 3, .no_reuseport = true, .on_start = on_start};
        tt_addr_t any = th_loopback(0);
        flood_t f[2];

        cr_assert_eq(tt_workers_start(&any, &wo, NULL, &worker_h, NULL, &set), 0);
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(tt_workers_addr(set, &f[i].addr), 0);
            atomic_store(&f[i].stop, false);
            atomic_store(&f[i].connected, 0);
            cr_assert_eq(pthread_create(&f[i].th, NULL, flood_main, &f[i]), 0);
        }
        usleep(5000); /* let the flood get going */
        cr_assert_eq(tt_workers_stop(set, 0), 0, "round %d", round);
        for (int i = 0; i < 2; i++) {
            atomic_store(&f[i].stop, true);
            pthread_join(f[i].th, NULL);
            connected += atomic_load(&f[i].connected);
        }
    }
    cr_expect_gt(connected, 0, "the flood reached the servers");
    int fds_after = th_fd_count();
    cr_expect_eq(fds_after, fds_before, "descriptors: %d before, %d after", fds_before, fds_after);
}

/* ---- the admin endpoint over a worker set -------------------------------------------- */

static char *read_all_unix(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    static char buf[1 << 16];
    size_t len = 0;
    ssize_t n;

    strcpy(sun.sun_path, path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0, "connect %s", path);
    while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    close(fd);
    return buf;
}

static char *http_get(const tt_addr_t *addr)
{
    static char buf[1 << 14];
    size_t len = 0;
    ssize_t n;
    int fd = th_tcp_connect_blocking(addr);
    const char *req = "GET /metrics HTTP/1.0\r\n\r\n";
    cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    close(fd);
    return buf;
}

Test(workers, admin_endpoint_lists_every_connection_and_serves_metrics)
{
    tt_loop_t *loop;
    tt_workers_t *set;
    tt_admin_t *admin;
    tt_workers_opts_t wo = {.count = 2, .on_start = on_start};
    tt_addr_t any = th_loopback(0), addr, maddr = th_loopback(0);
    char path[64];
    struct stat st;

    snprintf(path, sizeof(path), "/tmp/tether-admin-%d.sock", (int)getpid());
    cr_assert_eq(tt_workers_start(&any, &wo, NULL, &worker_h, NULL, &set), 0);
    cr_assert_eq(tt_workers_addr(set, &addr), 0);
    /* Find a free port for the metrics listener by binding one and letting it go. */
    int probe = th_tcp_listen_blocking(&maddr);
    close(probe);
    tt_admin_opts_t ao = {.unix_path = path, .metrics_addr = &maddr};
    cr_assert_eq(tt_admin_start_workers(set, &ao, &admin), 0);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);

    cr_assert_eq(tt_loop_init(&loop), 0);
    connect_all(loop, &addr);
    for (int i = 0; i < CLIENTS; i++)
        tt_send(conns[i], "abc", 3);
    wait_received(loop, 3 * CLIENTS);

    /* The table: a header and one row per connection, each with a worker column. */
    char *table = read_all_unix(path);
    int lines = 0;
    for (char *p = table; *p; p++)
        lines += *p == '\n';
    cr_expect_eq(strncmp(table, "id\tworker\tlocal\tpeer\tstate", 26), 0);
    cr_expect_eq(lines, CLIENTS + 1, "rows: %d", lines - 1);
    cr_expect_neq(strstr(table, "\t0\t127.0.0.1:"), NULL, "rows of worker 0");
    cr_expect_neq(strstr(table, "\t1\t127.0.0.1:"), NULL, "rows of worker 1");
    cr_expect_neq(strstr(table, "\topen\t"), NULL);

    /* Metrics: per worker samples that add up to what the clients did. */
    char *m = http_get(&maddr);
    cr_expect_eq(strncmp(m, "HTTP/1.0 200 OK", 15), 0);
    unsigned long long a = 0, b = 0, in0 = 0, in1 = 0;
    char *p = strstr(m, "tether_connections_open{worker=\"0\"} ");
    cr_assert_not_null(p);
    sscanf(p, "tether_connections_open{worker=\"0\"} %llu", &a);
    p = strstr(m, "tether_connections_open{worker=\"1\"} ");
    cr_assert_not_null(p);
    sscanf(p, "tether_connections_open{worker=\"1\"} %llu", &b);
    cr_expect_eq(a + b, CLIENTS, "open: %llu + %llu", a, b);
    p = strstr(m, "tether_received_bytes_total{worker=\"0\"} ");
    cr_assert_not_null(p);
    sscanf(p, "tether_received_bytes_total{worker=\"0\"} %llu", &in0);
    p = strstr(m, "tether_received_bytes_total{worker=\"1\"} ");
    cr_assert_not_null(p);
    sscanf(p, "tether_received_bytes_total{worker=\"1\"} %llu", &in1);
    cr_expect_eq(in0 + in1, 3 * CLIENTS, "bytes in: %llu", in0 + in1);
    cr_expect_neq(strstr(m, "# TYPE tether_sent_bytes_total counter"), NULL);

    cr_assert_eq(tt_admin_close(admin), 0);
    cr_expect_neq(stat(path, &st), 0, "socket file removed");
    cr_assert_eq(tt_workers_stop(set, 2000), 0);
    th_run(loop, 5000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* A metrics client that connects and sends nothing must not hold up the close:
 * tt_admin_close destroys it and the join comes at once. */
typedef struct closer {
    tt_admin_t *admin;
    atomic_bool done;
} closer_t;

static void *close_admin_main(void *arg)
{
    closer_t *c = arg;
    tt_admin_close(c->admin);
    atomic_store(&c->done, true);
    return NULL;
}

Test(workers, admin_close_is_not_held_up_by_a_silent_metrics_client)
{
    tt_workers_t *set;
    tt_workers_opts_t wo = {.count = 2, .on_start = on_start};
    tt_addr_t any = th_loopback(0), mreq = th_loopback(0), maddr;
    closer_t c = {0};
    pthread_t th;

    cr_assert_eq(tt_workers_start(&any, &wo, NULL, &worker_h, NULL, &set), 0);
    tt_admin_opts_t ao = {.metrics_addr = &mreq};
    cr_assert_eq(tt_admin_start_workers(set, &ao, &c.admin), 0);
    cr_assert_eq(tt_admin_metrics_addr(c.admin, &maddr), 0);
    cr_assert_neq(tt_addr_port(&maddr), 0);
    int silent = th_tcp_connect_blocking(&maddr);
    usleep(50000); /* accepted by the endpoint's loop */
    uint64_t t0 = th_now_ms();
    cr_assert_eq(pthread_create(&th, NULL, close_admin_main, &c), 0);
    while (!atomic_load(&c.done) && th_now_ms() - t0 < 3000)
        usleep(5000);
    /* Fatal: a close still stuck in pthread_join cannot be cleaned up after. */
    cr_assert(atomic_load(&c.done), "tt_admin_close still waiting after 3 s");
    pthread_join(th, NULL);
    cr_expect_lt(th_now_ms() - t0, 1000, "close took %llu ms",
                 (unsigned long long)(th_now_ms() - t0));
    close(silent);
    cr_assert_eq(tt_workers_stop(set, 1000), 0);
}
