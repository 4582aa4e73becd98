/* idleconns: open N TCP connections to a server and hold them idle, so the
 * server's memory per idle connection can be read from /proc while they stand.
 *
 * usage: idleconns [-e] [-a] [-b FIRST-LAST] [-H SECONDS] [-r RATE] [-T SECONDS] ADDR PORT N
 *   -e    echo once on each connection (1 byte out, 1 byte back) before idling,
 *         so lazily allocated per-connection state is counted too
 *   -a    answer heartbeats while holding: every 'P' received is answered with a
 *         'Q' (echo_tether's ping and pong when it runs with a dead-after time);
 *         on exit prints "answered P lost L" (L: connections the server closed)
 *   -b    source addresses to bind, rotating (default 127.0.0.2-127.0.0.254):
 *         each has its own ephemeral ports, so N may exceed one address' range
 *   -H    hold at most this many seconds (default 60, max 3600); SIGTERM/SIGINT
 *         release earlier
 *   -r    start at most RATE connects a second (default 0: only the 256 in flight
 *         at once bound it), so many clients together stay under what the
 *         servers' accept queues take
 *   -T    give up setting up after this many seconds (default 120, max 3600)
 *
 * Prints "established N failed F" once every connection is up (or has failed),
 * then holds. Plain sockets and epoll, so it measures the server, not a client
 * library. Exit status 0 if all N were established. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_INFLIGHT 256 /* connects outstanding at once: keeps the accept queue short */

enum phase { IDLE_NONE, IDLE_CONNECTING, IDLE_ECHO, IDLE_DONE };

struct conn {
    int fd;
    enum phase phase;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_range(const char *s, uint32_t *first, uint32_t *count)
{
    char buf[32];
    const char *dash = strchr(s, '-');
    struct in_addr a, b;
    size_t n;

    if (dash == NULL || (n = (size_t)(dash - s)) >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, &a) != 1 || inet_pton(AF_INET, dash + 1, &b) != 1 ||
        ntohl(b.s_addr) < ntohl(a.s_addr))
        return -1;
    *first = ntohl(a.s_addr);
    *count = ntohl(b.s_addr) - ntohl(a.s_addr) + 1;
    return 0;
}

static int start_connect(int ep, const struct sockaddr_in *dst, uint32_t src_ip, struct conn *c,
                         long idx)
{
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(src_ip)};
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)idx};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    /* Pick the port at connect() time, by the full 4-tuple, not at bind(). */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
        goto fail;
    if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 && errno != EINPROGRESS)
        goto fail;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        goto fail;
    c->fd = fd;
    c->phase = IDLE_CONNECTING;
    return 0;

fail:
    one = -errno;
    close(fd);
    return one;
}

/* -a: read what arrived on a held connection and answer each ping with a pong. */
static void answer_pings(struct conn *c, long *answered, long *lost)
{
    char in[256], out[256];
    ssize_t r = read(c->fd, in, sizeof(in));
    size_t q = 0;

    if (r <= 0) {
        if (r < 0 && errno == EAGAIN)
            return;
        close(c->fd); /* the server closed it (or reset it) */
        c->phase = IDLE_NONE;
        (*lost)++;
        return;
    }
    for (ssize_t j = 0; j < r; j++)
        if (in[j] == 'P')
            out[q++] = 'Q';
    if (q > 0 && write(c->fd, out, q) == (ssize_t)q)
        *answered += (long)q;
}

int main(int argc, char **argv)
{
    struct sockaddr_in dst = {.sin_family = AF_INET};
    struct epoll_event evs[256];
    struct rlimit rl;
    struct conn *conns;
    uint32_t src_first = 0x7f000002, src_count = 253;
    long n, next = 0, inflight = 0, done = 0, failed = 0;
    double hold = 60, deadline, setup_timeout = 120, rate = 0, t0;
    long answered = 0, lost = 0;
    int echo = 0, answer = 0, ep, ch, first_err = 0;

    while ((ch = getopt(argc, argv, "eab:H:r:T:")) != -1) {
        switch (ch) {
        case 'e':
            echo = 1;
            break;
        case 'a':
            answer = 1;
            break;
        case 'b':
            if (parse_range(optarg, &src_first, &src_count) < 0)
                goto usage;
            break;
        case 'H':
            hold = atof(optarg);
            if (!(hold > 0 && hold <= 3600))
                goto usage;
            break;
        case 'r':
            rate = atof(optarg);
            if (!(rate >= 0))
                goto usage;
            break;
        case 'T':
            setup_timeout = atof(optarg);
            if (!(setup_timeout > 0 && setup_timeout <= 3600))
                goto usage;
            break;
        default:
            goto usage;
        }
    }
    if (argc - optind != 3 || inet_pton(AF_INET, argv[optind], &dst.sin_addr) != 1)
        goto usage;
    dst.sin_port = htons((uint16_t)atoi(argv[optind + 1]));
    n = atol(argv[optind + 2]);
    if (n <= 0 || n > 10000000 || dst.sin_port == 0)
        goto usage;

    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 16) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)n + 16) {
            fprintf(stderr, "idleconns: %ld connections need ulimit -n %ld (hard limit %lu)\n", n,
                    n + 16, (unsigned long)rl.rlim_max);
            return 1;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    conns = calloc((size_t)n, sizeof(*conns));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || ep < 0) {
        perror("idleconns");
        return 1;
    }

    t0 = now_s();
    deadline = t0 + setup_timeout;
    while (done + failed < n && !stop && now_s() < deadline) {
        /* -r: no more connects started by now than the rate allows */
        long allowed = rate > 0 ? (long)((now_s() - t0) * rate) + 1 : n;
        int k;

        while (next < n && next < allowed && inflight < MAX_INFLIGHT) {
            int err = start_connect(ep, &dst, src_first + (uint32_t)(next % src_count),
                                    &conns[next], next);

            if (err < 0) {
                failed++;
                if (!first_err)
                    first_err = -err;
            } else {
                inflight++;
            }
            next++;
        }
        k = epoll_wait(ep, evs, 256, rate > 0 ? 5 : 100);
        for (int i = 0; i < k; i++) {
            struct conn *c = &conns[evs[i].data.u64];
            int err = 0;
            socklen_t len = sizeof(err);
            char b = 'x';

            if (c->phase == IDLE_DONE) { /* -a: a heartbeat came while others connect */
                answer_pings(c, &answered, &lost);
                continue;
            }
            if (c->phase == IDLE_CONNECTING) {
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err == 0 && echo) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = evs[i].data.u64};

                    if (write(c->fd, &b, 1) == 1 && epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) {
                        c->phase = IDLE_ECHO;
                        continue;
                    }
                    err = errno;
                }
            } else if (c->phase == IDLE_ECHO) {
                if (read(c->fd, &b, 1) != 1)
                    err = errno ? errno : ECONNRESET;
            }
            /* Connected (and echoed): keep the socket, out of the epoll set unless
             * it has heartbeats to answer. */
            if (answer && !err) {
                struct epoll_event ev = {.events = EPOLLIN, .data.u64 = evs[i].data.u64};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            } else {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            }
            inflight--;
            if (err) {
                close(c->fd);
                c->phase = IDLE_NONE;
                failed++;
                if (!first_err)
                    first_err = err;
            } else {
                c->phase = IDLE_DONE;
                done++;
            }
        }
    }
    printf("established %ld failed %ld setup_s %.2f%s%s\n", done, n - done, now_s() - t0,
           first_err ? " first error " : "", first_err ? strerror(first_err) : "");
    fflush(stdout);

    /* Hold until told or the hold time runs out. */
    deadline = now_s() + hold;
    while (!stop && now_s() < deadline) {
        int k;

        if (!answer) {
            usleep(20000);
            continue;
        }
        k = epoll_wait(ep, evs, 256, 20);
        for (int i = 0; i < k; i++)
            answer_pings(&conns[evs[i].data.u64], &answered, &lost);
    }
    if (answer) {
        printf("answered %ld lost %ld\n", answered, lost);
        fflush(stdout);
    }
    for (long i = 0; i < n; i++)
        if (conns[i].phase != IDLE_NONE)
            close(conns[i].fd);
    free(conns);
    close(ep);
    return done == n ? 0 : 1;

usage:
    fprintf(stderr, "usage: %s [-e] [-a] [-b FIRST-LAST] [-H SECONDS] [-r RATE] [-T SECONDS] ADDR PORT N\n", argv[0]);
    return 2;
}
