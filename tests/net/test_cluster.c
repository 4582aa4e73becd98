/* Rooms across nodes: three nodes (one loop and thread each, a line server whose
 * clients share a group bound to a Redis channel) and a real redis-server the test
 * starts on a free port. Thirty clients, ten per node, each send one line: every
 * client must get every other client's line exactly once and never its own.
 * Then redis-server is killed: local delivery goes on, cross-node messages are
 * counted lost; it comes back on the same port and the nodes recover. */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "redis.h"

#define NODES 3
#define PER_NODE 10
#define CLIENTS (NODES * PER_NODE)

typedef struct node {
    tt_loop_t *loop;
    tt_server_t *srv;
    tt_group_t *room;
    tt_cluster_t *cl;
    tt_timer_t *tick;
    uint16_t port;
    pthread_t th;
    pthread_mutex_t mu;
    tt_cluster_stats_t st; /* copied under mu by the node's own thread */
    atomic_bool stop;
} node_t;

static node_t nodes[NODES];
static th_redis_t redis;

static void on_open(tt_conn_t *c)
{
    node_t *n = tt_server_get_data(tt_conn_server(c));
    tt_group_join(n->room, c);
}

static void on_data(tt_conn_t *c, const void *d, size_t len, size_t pending)
{
    node_t *n = tt_server_get_data(tt_conn_server(c));
    (void)pending;
    tt_group_broadcast(n->room, d, len, c); /* all but the sender, on every node */
}

static void tick(tt_timer_t *t, void *data)
{
    node_t *n = data;
    (void)t;
    pthread_mutex_lock(&n->mu);
    tt_cluster_get_stats(n->cl, &n->st);
    pthread_mutex_unlock(&n->mu);
    if (atomic_load(&n->stop)) {
        tt_timer_close(n->tick);
        tt_cluster_close(n->cl);
        tt_group_close(n->room);
        tt_server_close(n->srv);
    }
}

static void *node_main(void *arg)
{
    node_t *n = arg;
    tt_loop_run(n->loop, TT_RUN_DEFAULT);
    return NULL;
}

static void node_start(node_t *n)
{
    tt_conn_handlers_t h = {.on_open = on_open, .on_data = on_data};
    tt_cluster_opts_t co = {.port = redis.port, .min_delay_ms = 50, .max_delay_ms = 200};
    tt_addr_t a;

    memset(n, 0, sizeof(*n));
    pthread_mutex_init(&n->mu, NULL);
    cr_assert_eq(tt_loop_init(&n->loop), 0);
    n->srv = th_listen(n->loop, &h, n, &a);
    n->port = tt_addr_port(&a);
    cr_assert_eq(tt_group_init(n->loop, "room", &n->room), 0);
    cr_assert_eq(tt_cluster_start(n->loop, &co, &n->cl), 0);
    cr_assert_eq(tt_group_bind(n->room, n->cl, "tether-test-room"), 0);
    cr_assert_eq(tt_group_bind(n->room, n->cl, "again"), -EBUSY);
    cr_assert_eq(tt_timer_init(n->loop, &n->tick, tick, n), 0);
    cr_assert_eq(tt_timer_start(n->tick, 10, 10), 0);
    cr_assert_eq(pthread_create(&n->th, NULL, node_main, n), 0);
}

static tt_cluster_stats_t stats(node_t *n)
{
    tt_cluster_stats_t s;
    pthread_mutex_lock(&n->mu);
    s = n->st;
    pthread_mutex_unlock(&n->mu);
    return s;
}

static bool all_linked(bool up, uint64_t ms)
{
    uint64_t end = th_now_ms() + ms;
    while (th_now_ms() < end) {
        bool ok = true;
        for (int i = 0; i < NODES; i++) {
            tt_cluster_stats_t s = stats(&nodes[i]);
            ok &= s.pub_up == up && s.sub_up == up;
        }
        if (ok)
            return true;
        usleep(10000);
    }
    return false;
}

static void setup(void)
{
    cr_assert_eq(th_redis_start(&redis, 0), 0, "redis-server did not start");
    for (int i = 0; i < NODES; i++)
        node_start(&nodes[i]);
    cr_assert(all_linked(true, 5000), "the nodes never linked to Redis");
    usleep(200000); /* the SUBSCRIBE went with the link: give Redis its turn */
}

static void teardown(void)
{
    for (int i = 0; i < NODES; i++) {
        atomic_store(&nodes[i].stop, true);
        pthread_join(nodes[i].th, NULL);
        cr_expect_eq(tt_loop_close(nodes[i].loop), 0, "node %d left handles", i);
        pthread_mutex_destroy(&nodes[i].mu);
    }
    th_redis_stop(&redis);
}

TestSuite(cluster, .init = setup, .fini = teardown, .timeout = 60);

static int client(uint16_t port)
{
    tt_addr_t a = th_loopback(port);
    int fd = th_tcp_connect_blocking(&a);
    cr_assert_geq(fd, 0);
    return fd;
}

/* Read lines from every client until `expect` lines came in all or `ms` passed,
 * then 100 ms more (a duplicate would show then); count[i][j]: lines "c<j>" that
 * client i got. */
static void collect(const int *fds, int n, int count[][CLIENTS], int expect, uint64_t ms)
{
    static char buf[CLIENTS][256];
    size_t have[CLIENTS] = {0};
    int total = 0;
    uint64_t end = th_now_ms() + ms;
    bool extra = false;

    for (;;) {
        if (!extra && (total >= expect || th_now_ms() >= end)) {
            extra = true;
            end = th_now_ms() + 100;
        }
        if (extra && th_now_ms() >= end)
            break;
        struct pollfd pf[CLIENTS];
        for (int i = 0; i < n; i++)
            pf[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        if (poll(pf, (nfds_t)n, 20) <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            if (!(pf[i].revents & POLLIN))
                continue;
            ssize_t r = recv(fds[i], buf[i] + have[i], sizeof(buf[i]) - 1 - have[i], 0);
            cr_assert_gt(r, 0, "client %d lost its connection", i);
            have[i] += (size_t)r;
            char *nl;
            while ((nl = memchr(buf[i], '\n', have[i])) != NULL) {
                int who;
                if (sscanf(buf[i], "c%d", &who) == 1 && who >= 0 && who < CLIENTS)
                    count[i][who]++;
                total++;
                size_t used = (size_t)(nl - buf[i]) + 1;
                memmove(buf[i], nl + 1, have[i] - used);
                have[i] -= used;
            }
        }
    }
}

static void say(int fd, int who)
{
    char line[16];
    int len = snprintf(line, sizeof(line), "c%d\n", who);
    cr_assert_eq(send(fd, line, (size_t)len, MSG_NOSIGNAL), len);
    usleep(3000); /* one line per read on the node */
}

Test(cluster, every_line_reaches_every_other_client_once_and_never_its_sender)
{
    int fds[CLIENTS];
    static int count[CLIENTS][CLIENTS];

    for (int i = 0; i < CLIENTS; i++)
        fds[i] = client(nodes[i % NODES].port);
    usleep(100000); /* every client joined its room */
    for (int i = 0; i < CLIENTS; i++)
        say(fds[i], i);
    collect(fds, CLIENTS, count, CLIENTS * (CLIENTS - 1), 5000);
    for (int i = 0; i < CLIENTS; i++)
        for (int j = 0; j < CLIENTS; j++)
            cr_expect_eq(count[i][j], i == j ? 0 : 1, "client %d (node %d) got c%d %d times",
                         i, i % NODES, j, count[i][j]);
    uint64_t pub = 0, rcv = 0;
    for (int i = 0; i < NODES; i++) {
        tt_cluster_stats_t s = stats(&nodes[i]);
        pub += s.published;
        rcv += s.received;
        cr_expect_eq(s.lost, 0);
        cr_expect_eq(strlen(s.node), 16);
    }
    cr_expect_eq(pub, CLIENTS, "published %llu", (unsigned long long)pub);
    cr_expect_eq(rcv, CLIENTS * (NODES - 1), "received %llu", (unsigned long long)rcv);
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);
}

Test(cluster, redis_killed_local_delivery_goes_on_losses_counted_then_recovers)
{
    int fds[4], count[4][CLIENTS];

    /* Clients 0 and 3 on node 0, 1 on node 1, 2 on node 2. */
    fds[0] = client(nodes[0].port);
    fds[1] = client(nodes[1].port);
    fds[2] = client(nodes[2].port);
    fds[3] = client(nodes[0].port);
    usleep(100000);
    th_redis_kill(&redis);
    cr_assert(all_linked(false, 5000), "the nodes never noticed Redis was gone");
    memset(count, 0, sizeof(count));
    say(fds[0], 0);
    collect(fds, 4, count, 1, 1000);
    cr_expect_eq(count[3][0], 1, "local delivery stopped with Redis away");
    cr_expect_eq(count[1][0] + count[2][0], 0, "a message crossed nodes without Redis");
    cr_expect_eq(stats(&nodes[0]).lost, 1, "the cross-node message was not counted lost");

    cr_assert_eq(th_redis_start(&redis, redis.port), 0, "redis-server did not come back");
    cr_assert(all_linked(true, 5000), "the nodes did not reconnect");
    usleep(200000);
    memset(count, 0, sizeof(count));
    say(fds[1], 1);
    collect(fds, 4, count, 3, 3000);
    cr_expect_eq(count[0][1], 1, "not resubscribed after the reconnect");
    cr_expect_eq(count[2][1], 1);
    cr_expect_eq(count[3][1], 1);
    cr_expect_eq(count[1][1], 0);
    cr_expect_geq(stats(&nodes[1]).reconnects, 4, "two links, connected twice");
    for (int i = 0; i < 4; i++)
        close(fds[i]);
}

Test(cluster_api, bad_arguments)
{
    tt_loop_t *loop;
    tt_cluster_t *cl;
    tt_group_t *g;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_cluster_start(NULL, NULL, &cl), -EINVAL);
    cr_assert_eq(tt_cluster_start(loop, NULL, NULL), -EINVAL);
    tt_cluster_opts_t co = {.port = 1}; /* nobody there: retried, never fatal */
    cr_assert_eq(tt_cluster_start(loop, &co, &cl), 0);
    cr_assert_eq(tt_group_init(loop, "g", &g), 0);
    cr_assert_eq(tt_group_bind(g, cl, ""), -EINVAL);
    cr_assert_eq(tt_group_bind(g, NULL, "x"), -EINVAL);
    cr_assert_eq(tt_group_bind(g, cl, "x"), 0);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    cr_assert_eq(tt_group_broadcast(g, "hi", 2, NULL), 0);
    tt_cluster_stats_t s;
    cr_assert_eq(tt_cluster_get_stats(cl, &s), 0);
    cr_assert_eq(s.lost, 1, "a broadcast with Redis away is lost, not queued");
    cr_assert_eq(tt_group_close(g), 0); /* unbinds */
    cr_assert_eq(tt_cluster_close(cl), 0);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    cr_assert_eq(tt_loop_close(loop), 0);
}
