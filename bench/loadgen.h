/* What the load generators wsload.c and fanout.c share: one thread, one epoll loop,
 * nonblocking client sockets to one target (optionally bound to a 127.0.0.x source
 * address) with a buffer for what the socket did not take, a latency histogram
 * counted only inside the measured window, and the process setup. Each tool is one
 * file that includes this once, so the state `lg` below is that tool's own.
 *
 * A tool's struct conn starts with a struct lg_sock: epoll's data.ptr points to
 * the conn, and is both. */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LG_RBUF_SIZE (256 * 1024)
#define LG_HIST_SUB 64 /* sub-buckets per power of two: about 1.6 % resolution */
#define LG_HIST_BUCKETS (64 * LG_HIST_SUB)

struct lg_sock {
    int fd;
    bool open;     /* counted in lg.nopen; until then in lg.nsetup */
    bool want_out; /* EPOLLOUT armed */
    /* outgoing bytes the socket did not take */
    uint8_t *out;
    size_t out_len, out_off, out_cap;
};

/* Called with the bytes of one recv on s, and the time they were read. */
typedef void lg_bytes_fn(struct lg_sock *s, const uint8_t *p, size_t len, uint64_t now);
/* Called with the events epoll reported for s. */
typedef void lg_event_fn(struct lg_sock *s, uint32_t events);

static struct {
    int epfd;
    struct sockaddr_in addr; /* the target */
    char host[64];
    int port;
    unsigned nopen, nsetup; /* sockets open, and still connecting or upgrading */
    uint64_t win_start, win_end; /* the measured window */
    uint64_t hist[LG_HIST_BUCKETS], counted; /* latencies inside the window */
    uint64_t errors;
    const char *first_error;
    uint8_t rbuf[LG_RBUF_SIZE];
} lg;

static inline uint64_t lg_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void lg_fail(const char *what)
{
    lg.errors++;
    if (lg.first_error == NULL)
        lg.first_error = what;
}

/* This process's user and system CPU so far, in seconds. */
static inline double lg_cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- latency histogram: log buckets with LG_HIST_SUB steps per power of two ---- */

static inline unsigned lg_bucket_of(uint64_t v)
{
    unsigned msb;

    if (v < LG_HIST_SUB)
        return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    return (msb - 5) * LG_HIST_SUB + (unsigned)((v >> (msb - 6)) & (LG_HIST_SUB - 1));
}

static inline uint64_t lg_bucket_value(unsigned b)
{
    unsigned msb;

    if (b < LG_HIST_SUB)
        return b;
    msb = b / LG_HIST_SUB + 5;
    return ((uint64_t)(LG_HIST_SUB + b % LG_HIST_SUB) << (msb - 6)) +
           ((uint64_t)1 << (msb - 6)) / 2;
}

/* Count a message sent at `sent` and had at `now`, if `now` is inside the window. */
static inline void lg_record(uint64_t sent, uint64_t now)
{
    if (now < lg.win_start || now >= lg.win_end)
        return;
    lg.counted++;
    lg.hist[lg_bucket_of(now > sent ? now - sent : 0)]++;
}

static inline double lg_percentile_us(double pct)
{
    uint64_t want = (uint64_t)ceil((double)lg.counted * pct / 100.0), seen = 0;

    if (lg.counted == 0)
        return 0;
    if (want == 0)
        want = 1;
    for (unsigned b = 0; b < LG_HIST_BUCKETS; b++) {
        seen += lg.hist[b];
        if (seen >= want)
            return (double)lg_bucket_value(b) / 1e3;
    }
    return 0;
}

/* ---- sockets ------------------------------------------------------------------ */

static inline void lg_arm(struct lg_sock *s, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = s};

    if (s->want_out == out)
        return;
    s->want_out = out;
    epoll_ctl(lg.epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

/* Close s and count `why` as an error. */
static inline void lg_drop(struct lg_sock *s, const char *why)
{
    if (s->fd < 0)
        return;
    lg_fail(why);
    epoll_ctl(lg.epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
    if (s->open)
        lg.nopen--;
    else
        lg.nsetup--;
}

/* s has finished setting up (connected, or upgraded). */
static inline void lg_opened(struct lg_sock *s)
{
    s->open = true;
    lg.nsetup--;
    lg.nopen++;
}

/* Write what can go now; keep the rest for EPOLLOUT. */
static inline void lg_write(struct lg_sock *s, const void *buf, size_t len)
{
    ssize_t w = 0;

    if (s->fd < 0)
        return;
    if (s->out_len == s->out_off) {
        w = send(s->fd, buf, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN) {
                lg_drop(s, "send");
                return;
            }
            w = 0;
        }
        if ((size_t)w == len)
            return;
        s->out_len = s->out_off = 0;
    }
    if (s->out_len + len - (size_t)w > s->out_cap) {
        size_t cap = s->out_cap ? s->out_cap : 4096;
        uint8_t *b;

        while (cap < s->out_len + len - (size_t)w)
            cap *= 2;
        b = realloc(s->out, cap);
        if (b == NULL) {
            lg_drop(s, "out of memory");
            return;
        }
        s->out = b;
        s->out_cap = cap;
    }
    memcpy(s->out + s->out_len, (const uint8_t *)buf + w, len - (size_t)w);
    s->out_len += len - (size_t)w;
    lg_arm(s, true);
}

static inline void lg_flush(struct lg_sock *s)
{
    ssize_t w = send(s->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);

    if (w < 0) {
        if (errno != EAGAIN)
            lg_drop(s, "send");
        return;
    }
    s->out_off += (size_t)w;
    if (s->out_off == s->out_len) {
        s->out_off = s->out_len = 0;
        lg_arm(s, false);
    }
}

/* Start a nonblocking connect of s to the target, from source address `src` (host
 * order; 0: the kernel's choice). Its end comes as EPOLLOUT: see lg_connected. */
static inline void lg_connect(struct lg_sock *s, uint32_t src)
{
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

    s->fd = fd;
    s->want_out = true;
    lg.nsetup++;
    if (fd < 0) {
        lg_fail("socket");
        lg.nsetup--;
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (src != 0) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(src)};

        /* The port is picked at connect, per destination (IP_BIND_ADDRESS_NO_PORT),
         * so each source address has a whole ephemeral range for this target. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            lg_drop(s, "bind");
            return;
        }
    }
    if (connect(fd, (struct sockaddr *)&lg.addr, sizeof(lg.addr)) < 0 &&
        errno != EINPROGRESS) {
        lg_drop(s, "connect");
        return;
    }
    epoll_ctl(lg.epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* After EPOLLOUT on a connecting s: whether the connect succeeded (if not, s is
 * dropped). s then waits for input only. */
static inline bool lg_connected(struct lg_sock *s)
{
    int err = 0;
    socklen_t el = sizeof(err);

    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
        lg_drop(s, "connect refused");
        return false;
    }
    lg_arm(s, false);
    return true;
}

/* Read s until the socket is empty (a read that does not fill lg.rbuf), passing
 * each read to `got`; drops s on an error or the server's close. */
static inline void lg_read(struct lg_sock *s, lg_bytes_fn *got)
{
    for (;;) {
        ssize_t n = recv(s->fd, lg.rbuf, sizeof(lg.rbuf), 0);
        uint64_t now = lg_now_ns();

        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                lg_drop(s, "recv");
            return;
        }
        if (n == 0) {
            lg_drop(s, "connection closed by the server");
            return;
        }
        got(s, lg.rbuf, (size_t)n, now);
        if (s->fd < 0 || (size_t)n < sizeof(lg.rbuf))
            return;
    }
}

/* The events of a set-up socket: input to `got`, then what is left to write. */
static inline void lg_on_events(struct lg_sock *s, uint32_t events, lg_bytes_fn *got)
{
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        lg_read(s, got);
    if (s->fd >= 0 && (events & EPOLLOUT) && s->out_len > s->out_off)
        lg_flush(s);
}

/* Wait for events until `deadline` (at most `cap_ms`) and pass each to `handle`. */
static inline void lg_poll(uint64_t now, uint64_t deadline, int cap_ms, lg_event_fn *handle)
{
    struct epoll_event evs[512];
    int ms = (int)((deadline - now) / 1000000u) + 1, n;

    n = epoll_wait(lg.epfd, evs, 512, ms > cap_ms ? cap_ms : ms);
    for (int i = 0; i < n; i++)
        handle(evs[i].data.ptr, evs[i].events);
}

/* ---- the process ---------------------------------------------------------------- */

/* HOST:PORT, a numeric IPv4 address, into lg.addr, lg.host and lg.port. */
static inline bool lg_parse_target(const char *arg)
{
    const char *colon = strrchr(arg, ':');

    if (colon == NULL || (size_t)(colon - arg) >= sizeof(lg.host))
        return false;
    memcpy(lg.host, arg, (size_t)(colon - arg));
    lg.port = atoi(colon + 1);
    lg.addr.sin_family = AF_INET;
    lg.addr.sin_port = htons((uint16_t)lg.port);
    return inet_pton(AF_INET, lg.host, &lg.addr.sin_addr) == 1 && lg.port > 0 &&
           lg.port <= 65535;
}

/* No SIGPIPE, as many descriptors as the hard limit allows, the epoll instance. */
static inline bool lg_init(void)
{
    struct rlimit rl;

    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    lg.epfd = epoll_create1(EPOLL_CLOEXEC);
    return lg.epfd >= 0;
}

#endif
