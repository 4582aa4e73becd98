/* Line broadcast load generator for the fan-out benchmark: one sender, N receivers,
 * the same client for every chat server (tether's library broadcast, `tether chat`,
 * a hand-written epoll floor, libuv, libevent, Node's net), so all of them are
 * measured alike. One thread, one epoll loop, as wsload.c.
 *
 * usage: fanout [-c RECEIVERS] [-s SIZE] [-W WINDOW] [-d SECONDS] [-w WARMUP]
 *               [-n MESSAGES] [-P SERVER_PID] HOST:PORT
 *
 * The sender (connected first, from 127.0.0.1) sends lines of SIZE bytes, newline
 * included (at least 40): "M<seq, 16 hex> <send time, 16 hex> xxx...\n". The server
 * is expected to pass each line to every other connection; a prefix before the
 * line ("[ADDR:PORT] ", as `tether chat` writes) is skipped and lines that are
 * notices ("* ... joined") are ignored. The RECEIVERS connections come from
 * 127.0.0.2, 127.0.0.3, ... (5000 per address) and only read.
 *
 * Before any load the sender sends probe lines ("P<n>") until every receiver has
 * had one: then the server has registered them all (within 60 s). The next probe
 * goes only once the last one has reached some receiver (and 20 ms have passed),
 * so a server slow to broadcast to many receivers is not buried under probes.
 * The sender then keeps at most WINDOW messages outstanding; a message stops being
 * outstanding when every receiver has it. At most MESSAGES messages are sent
 * (0: no limit), and the run ends after WARMUP + SECONDS.
 *
 * Reported for the measured window (after WARMUP): deliveries/s (lines received,
 * over all receivers), messages/s (lines every receiver had), the latency from the
 * send time inside the line to its arrival at each receiver (p50, p90, p99, max),
 * this process's CPU over the load divided by the wall time (client_cpu: near 1.0,
 * the client's own core was the limit) and, with -P, the server's user and system
 * CPU over the window (/proc/PID/stat) per delivery in nanoseconds.
 * Output: one line of JSON on stdout. Exit 1 on a connection error, a lost or
 * reordered line, or when not every receiver registered (the JSON still says what
 * was measured). Only the address given is contacted, from 127.0.0.0/8. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE (256 * 1024)
#define LINE_MAX_LEN 8192
#define CONNECTS_AT_ONCE 64
#define PER_SOURCE 5000 /* receivers per source address */
#define HIST_SUB 64     /* sub-buckets per power of two: about 1.6 % resolution */
#define HIST_BUCKETS (64 * HIST_SUB)
#define SEQ_RING 4096 /* outstanding messages tracked; the window must be less */
#define HDR_LEN 35    /* "M" seq " " time " " */

struct conn {
    int fd;
    bool open;
    bool sender;
    bool want_out; /* EPOLLOUT armed */
    bool probed;   /* a probe line arrived: the server has registered this one */
    /* outgoing bytes the socket did not take (the sender) */
    char *out;
    size_t out_len, out_off, out_cap;
    /* the start of a line that has not ended yet */
    char *part;
    size_t part_len;
    uint64_t expect_seq;
};

static struct {
    unsigned receivers, window;
    size_t size;
    double duration, warmup;
    uint64_t max_msgs;
    int server_pid;
    struct sockaddr_in addr;
    char host[64];
    int port;
} o = {.receivers = 1000, .window = 16, .size = 64, .duration = 3, .warmup = 0.5};

static int epfd;
static struct conn *conns;
static unsigned nconns, nopen, nconnecting, next_to_open, nprobed;
static uint64_t win_start, win_end;
static uint64_t hist[HIST_BUCKETS], hist_n;
static uint64_t counted, completed, errors, lost, sent_total, notices;
static const char *first_error;
static bool loading;
static uint32_t missing[SEQ_RING];
static uint64_t next_seq, oldest_seq;
static uint64_t probe_seen; /* the highest probe any receiver has had */
static char rbuf[RBUF_SIZE];
static char *msg_line;
/* server CPU in clock ticks at the window's start and end */
static long srv_u0, srv_s0, srv_u1, srv_s1;
static bool srv_start_read, srv_end_read;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail(const char *what)
{
    errors++;
    if (first_error == NULL)
        first_error = what;
}

/* ---- latency histogram: log buckets with HIST_SUB steps per power of two ---- */

static unsigned bucket_of(uint64_t v)
{
    unsigned msb;

    if (v < HIST_SUB)
        return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    return (msb - 5) * HIST_SUB + (unsigned)((v >> (msb - 6)) & (HIST_SUB - 1));
}

static uint64_t bucket_value(unsigned b)
{
    unsigned msb;

    if (b < HIST_SUB)
        return b;
    msb = b / HIST_SUB + 5;
    return ((uint64_t)(HIST_SUB + b % HIST_SUB) << (msb - 6)) + ((uint64_t)1 << (msb - 6)) / 2;
}

static void record(uint64_t sent, uint64_t now)
{
    if (now < win_start || now >= win_end)
        return;
    counted++;
    hist[bucket_of(now > sent ? now - sent : 0)]++;
    hist_n++;
}

static double percentile_us(double pct)
{
    uint64_t want = (uint64_t)ceil((double)hist_n * pct / 100.0), seen = 0;

    if (hist_n == 0)
        return 0;
    if (want == 0)
        want = 1;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += hist[b];
        if (seen >= want)
            return (double)bucket_value(b) / 1e3;
    }
    return 0;
}

/* ---- the server's CPU ---------------------------------------------------------- */

/* utime and stime (fields 14 and 15 of /proc/PID/stat), in clock ticks. */
static bool server_cpu(long *u, long *s)
{
    char path[64], buf[1024], *p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", o.server_pid);
    if ((f = fopen(path, "r")) == NULL)
        return false;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the name may hold spaces */
    if (p == NULL)
        return false;
    /* after ") ": field 3 (state) ... field 14 (utime), field 15 (stime) */
    return sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", u, s) == 2;
}

static void sample_server(uint64_t now)
{
    if (o.server_pid <= 0)
        return;
    if (!srv_start_read && now >= win_start) {
        srv_start_read = server_cpu(&srv_u0, &srv_s0);
    } else if (srv_start_read && !srv_end_read && now >= win_end) {
        srv_end_read = server_cpu(&srv_u1, &srv_s1);
    }
}

/* ---- sockets ------------------------------------------------------------------ */

static void arm(struct conn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};

    if (c->want_out == out)
        return;
    c->want_out = out;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_drop(struct conn *c, const char *why)
{
    if (c->fd < 0)
        return;
    fail(why);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (c->open)
        nopen--;
    else
        nconnecting--;
}

/* Write what can go now; keep the rest for EPOLLOUT. */
static void conn_write(struct conn *c, const void *buf, size_t len)
{
    ssize_t w = 0;

    if (c->fd < 0)
        return;
    if (c->out_len == c->out_off) {
        w = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN) {
                conn_drop(c, "send");
                return;
            }
            w = 0;
        }
        if ((size_t)w == len)
            return;
        c->out_len = c->out_off = 0;
    }
    if (c->out_len + len - (size_t)w > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        char *b;

        while (cap < c->out_len + len - (size_t)w)
            cap *= 2;
        b = realloc(c->out, cap);
        if (b == NULL) {
            conn_drop(c, "out of memory");
            return;
        }
        c->out = b;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, (const char *)buf + w, len - (size_t)w);
    c->out_len += len - (size_t)w;
    arm(c, true);
}

static void conn_flush(struct conn *c)
{
    ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

    if (w < 0) {
        if (errno != EAGAIN)
            conn_drop(c, "send");
        return;
    }
    c->out_off += (size_t)w;
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        arm(c, false);
    }
}

static void put_hex16(char *p, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";

    for (int i = 15; i >= 0; i--, v >>= 4)
        p[i] = digits[v & 15];
}

static bool get_hex16(const char *p, uint64_t *v)
{
    uint64_t x = 0;

    for (int i = 0; i < 16; i++) {
        char ch = p[i];
        unsigned d;

        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else
            return false;
        x = x << 4 | d;
    }
    *v = x;
    return true;
}

static void send_more(void)
{
    struct conn *s = &conns[0];

    while (s->fd >= 0 && next_seq - oldest_seq < o.window &&
           (o.max_msgs == 0 || next_seq < o.max_msgs) && now_ns() < win_end) {
        missing[next_seq % SEQ_RING] = o.receivers;
        put_hex16(msg_line + 1, next_seq);
        put_hex16(msg_line + 18, now_ns());
        conn_write(s, msg_line, o.size);
        next_seq++;
        sent_total++;
    }
}

static void send_probe(uint64_t n)
{
    char line[32];

    line[0] = 'P';
    put_hex16(line + 1, n);
    line[17] = '\n';
    conn_write(&conns[0], line, 18);
}

/* One whole line (without its newline) on c. */
static void on_line(struct conn *c, const char *p, size_t len, uint64_t now)
{
    uint64_t seq, t;

    if (c->sender)
        return; /* notices, or a server that echoes to the sender: not counted */
    if (len >= 2 && p[0] == '*' && p[1] == ' ') {
        notices++;
        return;
    }
    if (len > 0 && p[0] == '[') { /* "[ADDR:PORT] " */
        const char *e = memchr(p, ']', len);
        if (e == NULL || (size_t)(e - p) + 2 > len) {
            conn_drop(c, "bad prefix");
            return;
        }
        len -= (size_t)(e + 2 - p);
        p = e + 2;
    }
    if (len >= 17 && p[0] == 'P') {
        uint64_t n;
        if (get_hex16(p + 1, &n) && n > probe_seen)
            probe_seen = n;
        if (!c->probed) {
            c->probed = true;
            nprobed++;
        }
        return;
    }
    if (len + 1 != o.size || p[0] != 'M' || !get_hex16(p + 1, &seq) || !get_hex16(p + 18, &t)) {
        conn_drop(c, "unexpected line");
        return;
    }
    if (seq != c->expect_seq) {
        lost++;
        fail("message lost or out of order");
    }
    c->expect_seq = seq + 1;
    record(t, now);
    if (seq >= oldest_seq && seq < next_seq && --missing[seq % SEQ_RING] == 0) {
        if (now >= win_start && now < win_end)
            completed++;
        while (oldest_seq < next_seq && missing[oldest_seq % SEQ_RING] == 0)
            oldest_seq++;
        if (loading)
            send_more();
    }
}

static void parse_lines(struct conn *c, const char *p, size_t len, uint64_t now)
{
    while (len > 0 && c->fd >= 0) {
        const char *nl = memchr(p, '\n', len);
        size_t k = nl != NULL ? (size_t)(nl - p) : len;

        if (c->part_len + k > LINE_MAX_LEN) {
            conn_drop(c, "line too long");
            return;
        }
        if (nl == NULL) { /* keep the start for the next read */
            if (c->part == NULL && (c->part = malloc(LINE_MAX_LEN)) == NULL) {
                conn_drop(c, "out of memory");
                return;
            }
            memcpy(c->part + c->part_len, p, k);
            c->part_len += k;
            return;
        }
        if (c->part_len > 0) {
            memcpy(c->part + c->part_len, p, k);
            on_line(c, c->part, c->part_len + k, now);
            c->part_len = 0;
        } else {
            on_line(c, p, k, now);
        }
        p += k + 1;
        len -= k + 1;
    }
}

static void start_connect(struct conn *c, unsigned i)
{
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in src = {.sin_family = AF_INET};

    c->fd = fd;
    c->want_out = true;
    nconnecting++;
    if (fd < 0) {
        fail("socket");
        nconnecting--;
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* The sender from 127.0.0.1, the receivers spread over 127.0.0.2 and up; the
     * port is picked at connect, per destination (IP_BIND_ADDRESS_NO_PORT). */
    src.sin_addr.s_addr = htonl(0x7f000001u + (i == 0 ? 0 : 1 + (i - 1) / PER_SOURCE));
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
        conn_drop(c, "bind");
        return;
    }
    if (connect(fd, (struct sockaddr *)&o.addr, sizeof(o.addr)) < 0 && errno != EINPROGRESS) {
        conn_drop(c, "connect");
        return;
    }
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void connected(struct conn *c)
{
    int err = 0;
    socklen_t el = sizeof(err);

    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
        conn_drop(c, "connect refused");
        return;
    }
    c->open = true;
    nconnecting--;
    nopen++;
    arm(c, false);
}

static void on_readable(struct conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, rbuf, sizeof(rbuf), 0);
        uint64_t now = now_ns();

        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                conn_drop(c, "recv");
            return;
        }
        if (n == 0) {
            conn_drop(c, "connection closed by the server");
            return;
        }
        parse_lines(c, rbuf, (size_t)n, now);
        if (c->fd < 0 || (size_t)n < sizeof(rbuf))
            return;
    }
}

static void handle(struct conn *c, uint32_t events)
{
    if (c->fd < 0)
        return;
    if (!c->open) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            connected(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c);
    if (c->fd >= 0 && (events & EPOLLOUT) && c->out_len > c->out_off)
        conn_flush(c);
}

enum until { CONNECTED, PROBED, DONE };

static void run_until(uint64_t deadline, enum until what)
{
    struct epoll_event evs[512];
    uint64_t probe_at = 0, probe_n = 0;

    for (;;) {
        uint64_t now = now_ns();
        int ms, n;

        sample_server(now);
        if (now >= deadline)
            return;
        if (what == CONNECTED) {
            while (next_to_open < nconns && nconnecting < CONNECTS_AT_ONCE)
                start_connect(&conns[next_to_open], next_to_open), next_to_open++;
            if (next_to_open == nconns && nconnecting == 0)
                return;
        } else if (what == PROBED) {
            if (nprobed == o.receivers || conns[0].fd < 0)
                return;
            if (now >= probe_at && probe_seen == probe_n) {
                send_probe(++probe_n);
                probe_at = now + 20000000u;
            }
        } else if (oldest_seq == next_seq && o.max_msgs != 0 && next_seq >= o.max_msgs) {
            return; /* every message sent was had by everyone */
        }
        ms = (int)((deadline - now) / 1000000u) + 1;
        n = epoll_wait(epfd, evs, 512, ms > 20 ? 20 : ms);
        for (int i = 0; i < n; i++)
            handle(evs[i].data.ptr, evs[i].events);
    }
}

static double tv_s(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static int usage(void)
{
    fprintf(stderr, "usage: fanout [-c RECEIVERS] [-s SIZE] [-W WINDOW] [-d SECONDS] "
                    "[-w WARMUP] [-n MESSAGES] [-P SERVER_PID] HOST:PORT\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct rlimit rl;
    char *colon;
    int ch;
    uint64_t t0, setup_ns = 0, start = 0;
    struct rusage ru0, ru1;
    double client_cpu = 0, wall;
    long hz = sysconf(_SC_CLK_TCK);

    while ((ch = getopt(argc, argv, "c:s:W:d:w:n:P:")) != -1) {
        switch (ch) {
        case 'c': o.receivers = (unsigned)atoi(optarg); break;
        case 's': o.size = (size_t)atol(optarg); break;
        case 'W': o.window = (unsigned)atoi(optarg); break;
        case 'd': o.duration = atof(optarg); break;
        case 'w': o.warmup = atof(optarg); break;
        case 'n': o.max_msgs = (uint64_t)atoll(optarg); break;
        case 'P': o.server_pid = atoi(optarg); break;
        default: return usage();
        }
    }
    if (optind != argc - 1 || o.receivers == 0 || o.receivers > 200000 || o.size < 40 ||
        o.size > LINE_MAX_LEN || o.window == 0 || o.window >= SEQ_RING || o.duration <= 0 ||
        o.duration > 600 || o.warmup < 0 || o.warmup > 60)
        return usage();
    colon = strrchr(argv[optind], ':');
    if (colon == NULL || (size_t)(colon - argv[optind]) >= sizeof(o.host))
        return usage();
    memcpy(o.host, argv[optind], (size_t)(colon - argv[optind]));
    o.port = atoi(colon + 1);
    o.addr.sin_family = AF_INET;
    o.addr.sin_port = htons((uint16_t)o.port);
    if (inet_pton(AF_INET, o.host, &o.addr.sin_addr) != 1 || o.port <= 0 || o.port > 65535 ||
        (ntohl(o.addr.sin_addr.s_addr) >> 24) != 127)
        return usage(); /* loopback only */
    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    msg_line = malloc(o.size);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    nconns = o.receivers + 1;
    conns = calloc(nconns, sizeof(*conns));
    if (conns == NULL || msg_line == NULL || epfd < 0)
        return 1;
    memset(msg_line, 'x', o.size);
    msg_line[0] = 'M';
    msg_line[17] = ' ';
    msg_line[34] = ' ';
    msg_line[o.size - 1] = '\n';
    for (unsigned i = 0; i < nconns; i++)
        conns[i].fd = -1;
    conns[0].sender = true;

    /* Connect everything, at most CONNECTS_AT_ONCE at a time, within 60 s; the
     * sender first. Then probe until the server has registered every receiver. */
    win_start = win_end = UINT64_MAX;
    t0 = now_ns();
    run_until(t0 + 60000000000ull, CONNECTED);
    if (nopen == nconns)
        run_until(now_ns() + 60000000000ull, PROBED);
    setup_ns = now_ns() - t0;
    if (nopen != nconns) {
        fail("not every connection was made");
    } else if (nprobed != o.receivers) {
        fail("not every receiver was registered by the server");
    } else {
        /* Probes still in flight are skipped by the receivers. */
        start = now_ns();
        win_start = start + (uint64_t)(o.warmup * 1e9);
        win_end = win_start + (uint64_t)(o.duration * 1e9);
        loading = true;
        getrusage(RUSAGE_SELF, &ru0);
        send_more();
        run_until(win_end + 1000000u, DONE);
        getrusage(RUSAGE_SELF, &ru1);
        client_cpu = (tv_s(&ru1.ru_utime) + tv_s(&ru1.ru_stime) - tv_s(&ru0.ru_utime) -
                      tv_s(&ru0.ru_stime)) /
                     ((double)(now_ns() - start) / 1e9);
    }
    wall = o.duration;
    if (o.max_msgs != 0 && win_end != UINT64_MAX && now_ns() < win_end) /* ended by count */
        wall = (double)(now_ns() - win_start) / 1e9;
    if (o.server_pid > 0 && srv_start_read && !srv_end_read)
        srv_end_read = server_cpu(&srv_u1, &srv_s1);
    {
        double rate = wall > 0 ? (double)counted / wall : 0;
        double su = srv_end_read ? (double)(srv_u1 - srv_u0) / (double)hz : 0;
        double ss = srv_end_read ? (double)(srv_s1 - srv_s0) / (double)hz : 0;
        double per = counted > 0 ? 1e9 / (double)counted : 0;

        printf("{\"mode\":\"fanout\",\"target\":\"%s:%d\",\"receivers\":%u,\"size\":%zu,"
               "\"window\":%u,\"duration_s\":%.3f,\"warmup_s\":%.3f,\"setup_s\":%.3f,"
               "\"deliveries\":%" PRIu64 ",\"deliveries_per_s\":%.1f,\"messages_per_s\":%.1f,"
               "\"sent\":%" PRIu64 ",\"latency_us\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
               "\"max\":%.3f},\"client_cpu\":%.3f,\"server_user_s\":%.3f,\"server_sys_s\":%.3f,"
               "\"server_ns_per_delivery\":{\"user\":%.1f,\"sys\":%.1f},\"notices\":%" PRIu64
               ",\"opened\":%u,\"errors\":%" PRIu64 ",\"lost\":%" PRIu64
               ",\"first_error\":\"%s\"}\n",
               o.host, o.port, o.receivers, o.size, o.window, wall, o.warmup,
               (double)setup_ns / 1e9, counted, rate, wall > 0 ? (double)completed / wall : 0,
               sent_total, percentile_us(50), percentile_us(90), percentile_us(99),
               percentile_us(100), client_cpu, su, ss, su * per, ss * per, notices, nopen,
               errors, lost, first_error ? first_error : "");
    }
    for (unsigned i = 0; i < nconns; i++) {
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        free(conns[i].out);
        free(conns[i].part);
    }
    free(conns);
    free(msg_line);
    return errors != 0 || counted == 0 ? 1 : 0;
}
