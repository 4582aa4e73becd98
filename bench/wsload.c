/* WebSocket load generator for the comparative benchmark: the same client for every
 * server (tether, Node's ws, libwebsockets), so all of them are measured alike.
 * One thread, one epoll loop, plain RFC 6455 client frames (masked, binary, no
 * extension offered, so no server compresses).
 *
 * usage: wsload echo   [-c CONNS] [-s SIZE] [-p PIPELINE] [-d SECONDS] [-w WARMUP] HOST:PORT
 *        wsload fanout [-c RECEIVERS] [-s SIZE] [-W WINDOW] [-d SECONDS] [-w WARMUP] HOST:PORT
 *
 * echo: CONNS connections each keep PIPELINE binary messages of SIZE bytes in
 *   flight and send the next when one comes back whole (closed loop). Reports
 *   messages/s and the latency from send to the echo's last byte.
 * fanout: RECEIVERS connections that only read, and one more, the sender, which
 *   sends binary messages of SIZE bytes (at least 16: a send timestamp and a
 *   sequence number lead the payload). The server is expected to pass every
 *   message from a connection to all the others. The sender keeps at most WINDOW
 *   messages outstanding: a message stops being outstanding when every receiver
 *   has it whole. Reports deliveries/s (messages received, over all receivers) and
 *   the latency from the send to each receiver's last byte of it.
 *
 * Everything is counted only inside the measured window (after WARMUP seconds).
 * client_cpu is this process's CPU time over the load (warmup and window) divided
 * by the wall time: near 1.0, the client's own core was the limit.
 * Output: one line of JSON on stdout. Exit 1 on a connection error, a lost or
 * reordered message, or a failed handshake (the JSON still says what was
 * measured). Only the address given is contacted (the benchmark gives 127.0.0.1). */
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

#define MAX_PIPELINE 64
#define RBUF_SIZE (256 * 1024)
#define HANDSHAKES_AT_ONCE 64
#define HIST_SUB 64 /* sub-buckets per power of two: about 1.6 % resolution */
#define HIST_BUCKETS (64 * HIST_SUB)
#define SEQ_RING 4096 /* outstanding fan-out messages tracked; the window must be less */

enum phase { CONNECTING, HANDSHAKE, OPEN };

struct conn {
    int fd;
    enum phase phase;
    bool sender;
    bool want_out; /* EPOLLOUT armed */
    /* handshake response, until the blank line */
    char hs[1024];
    size_t hs_len;
    /* outgoing bytes the socket did not take */
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    /* incoming frame parse */
    uint8_t hdr[14];
    size_t hdr_have, hdr_need;
    uint64_t payload_left;
    uint8_t prefix[16];
    size_t prefix_have;
    bool in_frame;
    uint8_t opcode;
    /* echo: send times of the messages in flight, oldest first */
    uint64_t sent_ns[MAX_PIPELINE];
    unsigned head, inflight;
    /* fanout: the next sequence number expected */
    uint64_t expect_seq;
};

static struct {
    bool fanout;
    unsigned conns, pipeline, window;
    size_t size;
    double duration, warmup;
    struct sockaddr_in addr;
    char host[64];
    int port;
} o = {.conns = 100, .pipeline = 1, .window = 16, .size = 64, .duration = 3, .warmup = 0.5};

static int epfd;
static struct conn *conns;
static unsigned nconns, nopen, nhandshaking, next_to_open;
static uint64_t win_start, win_end;
static uint64_t hist[HIST_BUCKETS], hist_n;
static uint64_t counted, errors, lost, sent_total;
static const char *first_error;
static uint8_t *msg_template; /* one masked client frame of the message, to copy */
static size_t frame_len, frame_hdr;
static uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};
/* fanout: deliveries still missing per outstanding message, by seq % SEQ_RING */
static uint32_t missing[SEQ_RING];
static uint64_t next_seq, oldest_seq;
static uint8_t rbuf[RBUF_SIZE];

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
    if (c->phase == OPEN)
        nopen--;
    else
        nhandshaking--;
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
        uint8_t *b;

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
    memcpy(c->out + c->out_len, (const uint8_t *)buf + w, len - (size_t)w);
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

/* One client frame of the message: the template with the timestamp and the
 * sequence number (fanout) masked into its first 16 payload bytes. */
static void send_message(struct conn *c, uint64_t seq)
{
    uint8_t frame[64 + 14];
    uint8_t *f = msg_template;
    uint64_t t = now_ns();
    uint8_t plain[16];

    if (frame_len <= sizeof(frame)) {
        memcpy(frame, msg_template, frame_len);
        f = frame;
    }
    memcpy(plain, &t, 8);
    memcpy(plain + 8, &seq, 8);
    for (size_t i = 0; i < 16 && i < o.size; i++)
        f[frame_hdr + i] = plain[i] ^ mask_key[i & 3];
    if (!o.fanout) {
        c->sent_ns[(c->head + c->inflight) % MAX_PIPELINE] = t;
        c->inflight++;
    }
    conn_write(c, f, frame_len);
}

static void fanout_send_more(void)
{
    struct conn *s = &conns[0];

    while (s->fd >= 0 && next_seq - oldest_seq < o.window) {
        missing[next_seq % SEQ_RING] = o.conns;
        send_message(s, next_seq);
        next_seq++;
        sent_total++;
    }
}

/* A whole message arrived on c; `prefix` holds its first 16 payload bytes. */
static void on_message(struct conn *c, const uint8_t *prefix, uint64_t now)
{
    uint64_t t, seq;

    memcpy(&t, prefix, 8);
    memcpy(&seq, prefix + 8, 8);
    if (!o.fanout) {
        if (c->inflight == 0) {
            conn_drop(c, "unexpected message");
            return;
        }
        record(c->sent_ns[c->head], now);
        c->head = (c->head + 1) % MAX_PIPELINE;
        c->inflight--;
        send_message(c, 0);
        return;
    }
    if (c->sender)
        return; /* a server that sends back to the sender too: not counted */
    if (seq != c->expect_seq) {
        lost++;
        fail("message lost or out of order");
    }
    c->expect_seq = seq + 1;
    record(t, now);
    if (seq >= oldest_seq && seq < next_seq && --missing[seq % SEQ_RING] == 0) {
        while (oldest_seq < next_seq && missing[oldest_seq % SEQ_RING] == 0)
            oldest_seq++;
        fanout_send_more();
    }
}

/* Parse server frames (unmasked) out of `len` bytes. */
static void parse_frames(struct conn *c, const uint8_t *p, size_t len, uint64_t now)
{
    while (len > 0 && c->fd >= 0) {
        if (!c->in_frame) {
            c->hdr[c->hdr_have++] = *p++;
            len--;
            if (c->hdr_have == 2) {
                uint8_t l7 = c->hdr[1] & 0x7f;

                if (c->hdr[1] & 0x80) {
                    conn_drop(c, "masked server frame");
                    return;
                }
                c->hdr_need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
            }
            if (c->hdr_have < 2 || c->hdr_have < c->hdr_need)
                continue;
            uint8_t l7 = c->hdr[1] & 0x7f;
            uint64_t plen = l7;

            if (l7 == 126)
                plen = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            else if (l7 == 127) {
                plen = 0;
                for (int i = 0; i < 8; i++)
                    plen = plen << 8 | c->hdr[2 + i];
            }
            c->opcode = c->hdr[0] & 0x0f;
            if (!(c->hdr[0] & 0x80) || c->opcode == 0) {
                conn_drop(c, "fragmented message (not expected)");
                return;
            }
            if (c->opcode == 8) {
                conn_drop(c, "close frame from the server");
                return;
            }
            c->payload_left = plen;
            c->prefix_have = 0;
            c->in_frame = true;
            c->hdr_have = 0;
        }
        size_t take = c->payload_left < len ? (size_t)c->payload_left : len;

        if (c->prefix_have < 16) {
            size_t k = 16 - c->prefix_have < take ? 16 - c->prefix_have : take;

            memcpy(c->prefix + c->prefix_have, p, k);
            c->prefix_have += k;
        }
        p += take;
        len -= take;
        c->payload_left -= take;
        if (c->payload_left == 0) {
            c->in_frame = false;
            if (c->opcode == 2 || c->opcode == 1)
                on_message(c, c->prefix, now);
            /* ping/pong: none expected from these servers; ignored */
        }
    }
}

static void start_connect(struct conn *c)
{
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

    c->fd = fd;
    c->phase = CONNECTING;
    c->want_out = true;
    nhandshaking++;
    if (fd < 0) {
        fail("socket");
        nhandshaking--;
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&o.addr, sizeof(o.addr)) < 0 && errno != EINPROGRESS) {
        conn_drop(c, "connect");
        return;
    }
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void send_request(struct conn *c)
{
    char req[512];
    int n, err = 0;
    socklen_t el = sizeof(err);

    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
        conn_drop(c, "connect refused");
        return;
    }
    /* A fixed key is fine: the answer is not checked beyond its status. */
    n = snprintf(req, sizeof(req),
                 "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n",
                 o.host, o.port);
    c->phase = HANDSHAKE;
    arm(c, false);
    conn_write(c, req, (size_t)n);
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
        if (c->phase == HANDSHAKE) {
            size_t room = sizeof(c->hs) - 1 - c->hs_len, k = (size_t)n < room ? (size_t)n : room;
            char *end;

            memcpy(c->hs + c->hs_len, rbuf, k);
            c->hs_len += k;
            c->hs[c->hs_len] = '\0';
            end = strstr(c->hs, "\r\n\r\n");
            if (end == NULL) {
                if (c->hs_len == sizeof(c->hs) - 1)
                    conn_drop(c, "handshake answer too long");
                continue;
            }
            if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
                conn_drop(c, "handshake refused");
                return;
            }
            size_t used = (size_t)(end + 4 - c->hs) - (c->hs_len - k);

            c->phase = OPEN;
            nhandshaking--;
            nopen++;
            if ((size_t)n > used)
                parse_frames(c, rbuf + used, (size_t)n - used, now);
        } else {
            parse_frames(c, rbuf, (size_t)n, now);
        }
        if (c->fd < 0 || (size_t)n < sizeof(rbuf))
            return;
    }
}

static void handle(struct conn *c, uint32_t events)
{
    if (c->fd < 0)
        return;
    if (c->phase == CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            send_request(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c);
    if (c->fd >= 0 && (events & EPOLLOUT) && c->out_len > c->out_off)
        conn_flush(c);
}

static void run_until(uint64_t deadline, bool connecting)
{
    struct epoll_event evs[512];

    for (;;) {
        uint64_t now = now_ns();
        int ms, n;

        if (now >= deadline)
            return;
        if (connecting) {
            while (next_to_open < nconns && nhandshaking < HANDSHAKES_AT_ONCE)
                start_connect(&conns[next_to_open++]);
            if (next_to_open == nconns && nhandshaking == 0)
                return;
        }
        ms = (int)((deadline - now) / 1000000u) + 1;
        n = epoll_wait(epfd, evs, 512, ms > 100 ? 100 : ms);
        for (int i = 0; i < n; i++)
            handle(evs[i].data.ptr, evs[i].events);
    }
}

static void build_template(void)
{
    size_t h = 2;
    uint8_t *f;

    if (o.size >= 65536)
        h += 8;
    else if (o.size >= 126)
        h += 2;
    frame_hdr = h + 4;
    frame_len = frame_hdr + o.size;
    f = msg_template = calloc(1, frame_len);
    if (f == NULL)
        exit(1);
    f[0] = 0x82; /* FIN, binary */
    if (o.size >= 65536) {
        f[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            f[2 + i] = (uint8_t)(o.size >> (56 - 8 * i));
    } else if (o.size >= 126) {
        f[1] = 0x80 | 126;
        f[2] = (uint8_t)(o.size >> 8);
        f[3] = (uint8_t)o.size;
    } else {
        f[1] = (uint8_t)(0x80 | o.size);
    }
    memcpy(f + h, mask_key, 4);
    for (size_t i = 0; i < o.size; i++)
        f[frame_hdr + i] = (uint8_t)('a' + i % 26) ^ mask_key[i & 3];
}

static double tv_s(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static int usage(void)
{
    fprintf(stderr, "usage: wsload echo|fanout [-c CONNS] [-s SIZE] [-p PIPELINE] [-W WINDOW] "
                    "[-d SECONDS] [-w WARMUP] HOST:PORT\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct rlimit rl;
    char *colon;
    int ch;
    uint64_t t0, setup_ns;
    struct rusage ru0, ru1;
    double client_cpu = 0;

    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "fanout") == 0) {
        o.fanout = true;
        o.conns = 1000;
    } else if (strcmp(argv[1], "echo") != 0) {
        return usage();
    }
    optind = 2;
    while ((ch = getopt(argc, argv, "c:s:p:W:d:w:")) != -1) {
        switch (ch) {
        case 'c': o.conns = (unsigned)atoi(optarg); break;
        case 's': o.size = (size_t)atol(optarg); break;
        case 'p': o.pipeline = (unsigned)atoi(optarg); break;
        case 'W': o.window = (unsigned)atoi(optarg); break;
        case 'd': o.duration = atof(optarg); break;
        case 'w': o.warmup = atof(optarg); break;
        default: return usage();
        }
    }
    if (optind != argc - 1 || o.conns == 0 || o.size < 16 || o.size > (64u << 20) ||
        o.pipeline == 0 || o.pipeline > MAX_PIPELINE || o.window == 0 ||
        o.window >= SEQ_RING || o.duration <= 0 || o.warmup < 0)
        return usage();
    colon = strrchr(argv[optind], ':');
    if (colon == NULL || (size_t)(colon - argv[optind]) >= sizeof(o.host))
        return usage();
    memcpy(o.host, argv[optind], (size_t)(colon - argv[optind]));
    o.port = atoi(colon + 1);
    o.addr.sin_family = AF_INET;
    o.addr.sin_port = htons((uint16_t)o.port);
    if (inet_pton(AF_INET, o.host, &o.addr.sin_addr) != 1 || o.port <= 0 || o.port > 65535)
        return usage();
    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    build_template();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    nconns = o.conns + (o.fanout ? 1 : 0);
    conns = calloc(nconns, sizeof(*conns));
    if (conns == NULL || epfd < 0)
        return 1;
    /* Connect and upgrade everything first, at most HANDSHAKES_AT_ONCE at a time
     * (a listen backlog of 511 is common), within 30 s. The fan-out sender is
     * conns[0]; it opens first, so it is no receiver of its own messages. */
    win_start = win_end = 0;
    t0 = now_ns();
    run_until(t0 + 30000000000ull, true);
    setup_ns = now_ns() - t0;
    if (nopen != nconns) {
        fail("not every connection was upgraded");
    } else {
        uint64_t start;

        /* Let the server finish registering the last ones before load starts. */
        run_until(now_ns() + 100000000ull, false);
        start = now_ns();
        win_start = start + (uint64_t)(o.warmup * 1e9);
        win_end = win_start + (uint64_t)(o.duration * 1e9);
        if (o.fanout) {
            conns[0].sender = true;
            fanout_send_more();
        } else {
            for (unsigned i = 0; i < nconns; i++)
                for (unsigned k = 0; k < o.pipeline; k++)
                    send_message(&conns[i], 0);
        }
        getrusage(RUSAGE_SELF, &ru0);
        run_until(win_end, false);
        getrusage(RUSAGE_SELF, &ru1);
        client_cpu = (tv_s(&ru1.ru_utime) + tv_s(&ru1.ru_stime) - tv_s(&ru0.ru_utime) -
                      tv_s(&ru0.ru_stime)) /
                     ((double)(now_ns() - start) / 1e9);
    }
    {
        double rate = (double)counted / o.duration;

        printf("{\"mode\":\"%s\",\"target\":\"%s:%d\",\"connections\":%u,\"size\":%zu,"
               "\"pipeline\":%u,\"window\":%u,\"duration_s\":%.3f,\"warmup_s\":%.3f,"
               "\"setup_s\":%.3f,\"messages\":%" PRIu64 ",\"%s\":%.1f,\"sent\":%" PRIu64
               ",\"latency_us\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
               "\"max\":%.3f},\"client_cpu\":%.3f,\"opened\":%u,\"errors\":%" PRIu64
               ",\"lost\":%" PRIu64 ",\"first_error\":\"%s\"}\n",
               o.fanout ? "fanout" : "echo", o.host, o.port, o.conns, o.size,
               o.fanout ? 1 : o.pipeline, o.fanout ? o.window : 0, o.duration, o.warmup,
               (double)setup_ns / 1e9, counted, o.fanout ? "deliveries_per_s" : "msgs_per_s", rate,
               sent_total, percentile_us(50), percentile_us(90), percentile_us(99),
               percentile_us(99.9), percentile_us(100), client_cpu, nopen, errors, lost,
               first_error ? first_error : "");
    }
    for (unsigned i = 0; i < nconns; i++) {
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        free(conns[i].out);
    }
    free(conns);
    free(msg_template);
    return errors != 0 || counted == 0 ? 1 : 0;
}
