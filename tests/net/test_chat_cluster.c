/* `tether chat --cluster`: three chat processes bound to one Redis channel of a
 * real redis-server the test starts. Thirty line clients spread over the nodes
 * each say one line: every client sees every other client's line exactly once and
 * never its own. Redis killed: each node's own clients still hear each other, the
 * metrics count the loss and show the links down; Redis back: lines cross nodes
 * again. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "redis.h"

#define NODES 3
#define PER_NODE 10
#define CLIENTS (NODES * PER_NODE)

typedef struct {
    pid_t pid;
    FILE *out;
    tt_addr_t addr, metrics;
} node_t;

static th_redis_t redis;
static node_t nodes[NODES];

static void parse_line(FILE *out, const char *what, tt_addr_t *a)
{
    char line[256], hp[128];
    struct pollfd pfd = {fileno(out), POLLIN, 0};
    cr_assert_eq(poll(&pfd, 1, 5000), 1, "no '%s' line", what);
    cr_assert_not_null(fgets(line, sizeof(line), out));
    char *at = strstr(line, what);
    cr_assert_not_null(at, "line: %s", line);
    cr_assert_eq(sscanf(at + strlen(what), "%127s", hp), 1);
    cr_assert_eq(tt_addr_parse_hostport(a, hp), 0, "%s", hp);
}

static void start_node(node_t *n)
{
    char cmd[512];
    int p[2];
    cr_assert_eq(pipe(p), 0);
    snprintf(cmd, sizeof(cmd),
             "exec %s chat --listen 127.0.0.1:0 --quiet --metrics 127.0.0.1:0 "
             "--cluster redis://127.0.0.1:%u/tether-test",
             th_build_path("tether"), redis.port);
    n->pid = fork();
    cr_assert_geq(n->pid, 0);
    if (n->pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        close(p[0]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    n->out = fdopen(p[0], "r");
    setvbuf(n->out, NULL, _IONBF, 0); /* poll() must see what fgets has not read */
    parse_line(n->out, "listening on ", &n->addr);
    parse_line(n->out, "metrics on ", &n->metrics);
}

/* GET /metrics; the value of the sample named `name` (full name with labels), or -1. */
static long metric(const node_t *n, const char *name)
{
    char buf[8192];
    size_t len = 0;
    int fd = th_tcp_connect_blocking(&n->metrics);
    static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    cr_assert_eq(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(req) - 1);
    ssize_t r;
    while (len + 1 < sizeof(buf) && (r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0)
        len += (size_t)r;
    close(fd);
    buf[len] = '\0';
    char key[128];
    snprintf(key, sizeof(key), "\n%s ", name);
    char *at = strstr(buf, key);
    return at != NULL ? strtol(at + strlen(key), NULL, 10) : -1;
}

static bool links(long up, uint64_t ms)
{
    uint64_t end = th_now_ms() + ms;
    while (th_now_ms() < end) {
        bool ok = true;
        for (int i = 0; i < NODES; i++)
            ok &= metric(&nodes[i], "tether_cluster_link_up{link=\"publish\"}") == up &&
                  metric(&nodes[i], "tether_cluster_link_up{link=\"subscribe\"}") == up;
        if (ok)
            return true;
        usleep(20000);
    }
    return false;
}

static void setup(void)
{
    cr_assert_eq(th_redis_start(&redis, 0), 0, "redis-server did not start");
    for (int i = 0; i < NODES; i++)
        start_node(&nodes[i]);
    cr_assert(links(1, 5000), "the nodes never linked to Redis");
    usleep(200000);
}

static void teardown(void)
{
    for (int i = 0; i < NODES; i++) {
        int status = -1;
        kill(nodes[i].pid, SIGTERM);
        for (int k = 0; k < 100 && waitpid(nodes[i].pid, &status, WNOHANG) == 0; k++)
            usleep(50000);
        if (waitpid(nodes[i].pid, &status, WNOHANG) == 0) {
            kill(nodes[i].pid, SIGKILL);
            waitpid(nodes[i].pid, &status, 0);
        }
        fclose(nodes[i].out);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "node %d: status %d", i,
                  status);
    }
    th_redis_stop(&redis);
}

TestSuite(chat_cluster, .init = setup, .fini = teardown, .timeout = 90);

/* Read what comes on each fd for up to `ms` (until `lines` "said-" lines in all);
 * got[i][j]: times client i saw "said-<j>". */
static void gather(const int *fds, int n, int got[][CLIENTS], int lines, uint64_t ms)
{
    static char buf[CLIENTS][8192];
    size_t have[CLIENTS] = {0};
    int total = 0;
    uint64_t end = th_now_ms() + ms;
    bool extra = false;

    memset(got, 0, sizeof(int) * CLIENTS * (size_t)n);
    for (;;) {
        if (!extra && (total >= lines || th_now_ms() >= end)) {
            extra = true; /* 150 ms more: a duplicate would come now */
            end = th_now_ms() + 150;
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
            cr_assert_gt(r, 0, "client %d cut off", i);
            have[i] += (size_t)r;
            char *nl;
            while ((nl = memchr(buf[i], '\n', have[i])) != NULL) {
                *nl = '\0';
                char *s = strstr(buf[i], "said-");
                int who;
                if (s != NULL && sscanf(s, "said-%d", &who) == 1 && who >= 0 && who < CLIENTS) {
                    got[i][who]++;
                    total++;
                }
                size_t used = (size_t)(nl - buf[i]) + 1;
                memmove(buf[i], nl + 1, have[i] - used);
                have[i] -= used;
            }
        }
    }
}

static void say(int fd, int who)
{
    char line[32];
    int len = snprintf(line, sizeof(line), "said-%d\n", who);
    cr_assert_eq(send(fd, line, (size_t)len, MSG_NOSIGNAL), len);
    usleep(5000);
}

Test(chat_cluster, thirty_clients_on_three_nodes_each_line_once_never_to_its_sender)
{
    int fds[CLIENTS];
    static int got[CLIENTS][CLIENTS];

    for (int i = 0; i < CLIENTS; i++)
        fds[i] = th_tcp_connect_blocking(&nodes[i % NODES].addr);
    usleep(300000); /* joined (the join notices cross nodes too) */
    for (int i = 0; i < CLIENTS; i++)
        say(fds[i], i);
    gather(fds, CLIENTS, got, CLIENTS * (CLIENTS - 1), 8000);
    int bad = 0;
    for (int i = 0; i < CLIENTS; i++)
        for (int j = 0; j < CLIENTS; j++)
            if (got[i][j] != (i == j ? 0 : 1) && bad++ < 10)
                cr_expect_fail("client %d (node %d) saw said-%d %d times", i, i % NODES, j,
                               got[i][j]);
    cr_expect_eq(bad, 0, "%d wrong counts", bad);
    long pub = 0;
    for (int i = 0; i < NODES; i++)
        pub += metric(&nodes[i], "tether_cluster_published_total");
    cr_expect_geq(pub, CLIENTS, "published %ld", pub);
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);
}

Test(chat_cluster, redis_killed_and_back)
{
    int fds[NODES + 1];
    static int got[CLIENTS][CLIENTS];

    for (int i = 0; i < NODES; i++)
        fds[i] = th_tcp_connect_blocking(&nodes[i].addr);
    fds[NODES] = th_tcp_connect_blocking(&nodes[0].addr); /* a second client on node 0 */
    usleep(300000);
    th_redis_kill(&redis);
    cr_assert(links(0, 5000), "the metrics never showed the links down");
    long lost0 = metric(&nodes[0], "tether_cluster_lost_total");
    say(fds[0], 0);
    gather(fds, NODES + 1, got, 1, 1000);
    cr_expect_eq(got[NODES][0], 1, "node 0's own clients stopped hearing each other");
    cr_expect_eq(got[1][0] + got[2][0], 0, "a line crossed nodes with Redis gone");
    cr_expect_gt(metric(&nodes[0], "tether_cluster_lost_total"), lost0, "no loss counted");

    cr_assert_eq(th_redis_start(&redis, redis.port), 0, "redis-server did not come back");
    cr_assert(links(1, 10000), "the nodes did not reconnect");
    usleep(300000);
    say(fds[1], 1);
    gather(fds, NODES + 1, got, NODES, 3000);
    cr_expect_eq(got[0][1], 1, "node 0 did not resubscribe");
    cr_expect_eq(got[2][1], 1, "node 2 did not resubscribe");
    cr_expect_eq(got[NODES][1], 1);
    cr_expect_eq(got[1][1], 0, "the sender heard itself");
    for (int i = 0; i <= NODES; i++)
        close(fds[i]);
}
