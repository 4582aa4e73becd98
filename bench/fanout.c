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
#include <inttypes.h>
#include <stdio.h>

#include "loadgen.h"

#define LINE_MAX_LEN 8192
#define CONNECTS_AT_ONCE 64
#define PER_SOURCE 5000 /* receivers per source address */
#define SEQ_RING 4096 /* outstanding messages tracked; the window must be less */
#define HDR_LEN 35    /* "M" seq " " time " " */

struct conn {
    struct lg_sock s; /* first: epoll's data.ptr is both */
    bool sender;
    bool probed; /* a probe line arrived: the server has registered this one */
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
} o = {.receivers = 1000, .window = 16, .size = 64, .duration = 3, .warmup = 0.5};

static struct conn *conns;
static unsigned nconns, next_to_open, nprobed;
static uint64_t completed, lost, sent_total, notices;
static bool loading;
static uint32_t missing[SEQ_RING];
static uint64_t next_seq, oldest_seq;
static uint64_t probe_seen; /* the highest probe any receiver has had */
static char *msg_line;
/* server CPU in clock ticks at the window's start and end */
static long srv_u0, srv_s0, srv_u1, srv_s1;
static bool srv_start_read, srv_end_read;

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
    if (!srv_start_read && now >= lg.win_start) {
        srv_start_read = server_cpu(&srv_u0, &srv_s0);
    } else if (srv_start_read && !srv_end_read && now >= lg.win_end) {
        srv_end_read = server_cpu(&srv_u1, &srv_s1);
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

    while (s->s.fd >= 0 && next_seq - oldest_seq < o.window &&
           (o.max_msgs == 0 || next_seq < o.max_msgs) && lg_now_ns() < lg.win_end) {
        missing[next_seq % SEQ_RING] = o.receivers;
        put_hex16(msg_line + 1, next_seq);
        put_hex16(msg_line + 18, lg_now_ns());
        lg_write(&s->s, msg_line, o.size);
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
    lg_write(&conns[0].s, line, 18);
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
            lg_drop(&c->s, "bad prefix");
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
        lg_drop(&c->s, "unexpected line");
        return;
    }
    if (seq != c->expect_seq) {
        lost++;
        lg_fail("message lost or out of order");
    }
    c->expect_seq = seq + 1;
    lg_record(t, now);
    if (seq >= oldest_seq && seq < next_seq && --missing[seq % SEQ_RING] == 0) {
        if (now >= lg.win_start && now < lg.win_end)
            completed++;
        while (oldest_seq < next_seq && missing[oldest_seq % SEQ_RING] == 0)
            oldest_seq++;
        if (loading)
            send_more();
    }
}

/* One read on c: whole lines to on_line, the start of an unfinished one kept. */
static void on_bytes(struct lg_sock *s, const uint8_t *bytes, size_t len, uint64_t now)
{
    struct conn *c = (struct conn *)s;
    const char *p = (const char *)bytes;

    while (len > 0 && s->fd >= 0) {
        const char *nl = memchr(p, '\n', len);
        size_t k = nl != NULL ? (size_t)(nl - p) : len;

        if (c->part_len + k > LINE_MAX_LEN) {
            lg_drop(s, "line too long");
            return;
        }
        if (nl == NULL) { /* keep the start for the next read */
            if (c->part == NULL && (c->part = malloc(LINE_MAX_LEN)) == NULL) {
                lg_drop(s, "out of memory");
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

static void handle(struct lg_sock *s, uint32_t events)
{
    if (s->fd < 0)
        return;
    if (!s->open) {
        if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && lg_connected(s))
            lg_opened(s);
        return;
    }
    lg_on_events(s, events, on_bytes);
}

enum until { CONNECTED, PROBED, DONE };

static void run_until(uint64_t deadline, enum until what)
{
    uint64_t probe_at = 0, probe_n = 0;

    for (;;) {
        uint64_t now = lg_now_ns();

        sample_server(now);
        if (now >= deadline)
            return;
        if (what == CONNECTED) {
            /* The sender from 127.0.0.1, the receivers spread over 127.0.0.2 and up. */
            while (next_to_open < nconns && lg.nsetup < CONNECTS_AT_ONCE) {
                unsigned i = next_to_open++;

                lg_connect(&conns[i].s, 0x7f000001u + (i == 0 ? 0 : 1 + (i - 1) / PER_SOURCE));
            }
            if (next_to_open == nconns && lg.nsetup == 0)
                return;
        } else if (what == PROBED) {
            if (nprobed == o.receivers || conns[0].s.fd < 0)
                return;
            if (now >= probe_at && probe_seen == probe_n) {
                send_probe(++probe_n);
                probe_at = now + 20000000u;
            }
        } else if (oldest_seq == next_seq && o.max_msgs != 0 && next_seq >= o.max_msgs) {
            return; /* every message sent was had by everyone */
        }
        lg_poll(now, deadline, 20, handle);
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: fanout [-c RECEIVERS] [-s SIZE] [-W WINDOW] [-d SECONDS] "
                    "[-w WARMUP] [-n MESSAGES] [-P SERVER_PID] HOST:PORT\n");
    return 2;
}

int main(int argc, char **argv)
{
    int ch;
    uint64_t t0, setup_ns = 0, start = 0;
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
    if (!lg_parse_target(argv[optind]) || (ntohl(lg.addr.sin_addr.s_addr) >> 24) != 127)
        return usage(); /* loopback only */
    if (!lg_init())
        return 1;
    msg_line = malloc(o.size);
    nconns = o.receivers + 1;
    conns = calloc(nconns, sizeof(*conns));
    if (conns == NULL || msg_line == NULL)
        return 1;
    memset(msg_line, 'x', o.size);
    msg_line[0] = 'M';
    msg_line[17] = ' ';
    msg_line[34] = ' ';
    msg_line[o.size - 1] = '\n';
    for (unsigned i = 0; i < nconns; i++)
        conns[i].s.fd = -1;
    conns[0].sender = true;

    /* Connect everything, at most CONNECTS_AT_ONCE at a time, within 60 s; the
     * sender first. Then probe until the server has registered every receiver. */
    lg.win_start = lg.win_end = UINT64_MAX;
    t0 = lg_now_ns();
    run_until(t0 + 60000000000ull, CONNECTED);
    if (lg.nopen == nconns)
        run_until(lg_now_ns() + 60000000000ull, PROBED);
    setup_ns = lg_now_ns() - t0;
    if (lg.nopen != nconns) {
        lg_fail("not every connection was made");
    } else if (nprobed != o.receivers) {
        lg_fail("not every receiver was registered by the server");
    } else {
        double cpu0;

        /* Probes still in flight are skipped by the receivers. */
        start = lg_now_ns();
        lg.win_start = start + (uint64_t)(o.warmup * 1e9);
        lg.win_end = lg.win_start + (uint64_t)(o.duration * 1e9);
        loading = true;
        cpu0 = lg_cpu_s();
        send_more();
        run_until(lg.win_end + 1000000u, DONE);
        client_cpu = (lg_cpu_s() - cpu0) / ((double)(lg_now_ns() - start) / 1e9);
    }
    wall = o.duration;
    if (o.max_msgs != 0 && lg.win_end != UINT64_MAX && lg_now_ns() < lg.win_end) /* by count */
        wall = (double)(lg_now_ns() - lg.win_start) / 1e9;
    if (o.server_pid > 0 && srv_start_read && !srv_end_read)
        srv_end_read = server_cpu(&srv_u1, &srv_s1);
    {
        double rate = wall > 0 ? (double)lg.counted / wall : 0;
        double su = srv_end_read ? (double)(srv_u1 - srv_u0) / (double)hz : 0;
        double ss = srv_end_read ? (double)(srv_s1 - srv_s0) / (double)hz : 0;
        double per = lg.counted > 0 ? 1e9 / (double)lg.counted : 0;

        printf("{\"mode\":\"fanout\",\"target\":\"%s:%d\",\"receivers\":%u,\"size\":%zu,"
               "\"window\":%u,\"duration_s\":%.3f,\"warmup_s\":%.3f,\"setup_s\":%.3f,"
               "\"deliveries\":%" PRIu64 ",\"deliveries_per_s\":%.1f,\"messages_per_s\":%.1f,"
               "\"sent\":%" PRIu64 ",\"latency_us\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
               "\"max\":%.3f},\"client_cpu\":%.3f,\"server_user_s\":%.3f,\"server_sys_s\":%.3f,"
               "\"server_ns_per_delivery\":{\"user\":%.1f,\"sys\":%.1f},\"notices\":%" PRIu64
               ",\"opened\":%u,\"errors\":%" PRIu64 ",\"lost\":%" PRIu64
               ",\"first_error\":\"%s\"}\n",
               lg.host, lg.port, o.receivers, o.size, o.window, wall, o.warmup,
               (double)setup_ns / 1e9, lg.counted, rate, wall > 0 ? (double)completed / wall : 0,
               sent_total, lg_percentile_us(50), lg_percentile_us(90), lg_percentile_us(99),
               lg_percentile_us(100), client_cpu, su, ss, su * per, ss * per, notices, lg.nopen,
               lg.errors, lost, lg.first_error ? lg.first_error : "");
    }
    for (unsigned i = 0; i < nconns; i++) {
        if (conns[i].s.fd >= 0)
            close(conns[i].s.fd);
        free(conns[i].s.out);
        free(conns[i].part);
    }
    free(conns);
    free(msg_line);
    return lg.errors != 0 || lg.counted == 0 ? 1 : 0;
}
