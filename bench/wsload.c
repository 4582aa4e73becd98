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
#include <inttypes.h>
#include <stdio.h>

#include "loadgen.h"

#define MAX_PIPELINE 64
#define HANDSHAKES_AT_ONCE 64
#define SEQ_RING 4096 /* outstanding fan-out messages tracked; the window must be less */

enum phase { CONNECTING, HANDSHAKE, OPEN };

struct conn {
    struct lg_sock s; /* first: epoll's data.ptr is both */
    enum phase phase;
    bool sender;
    /* handshake response, until the blank line */
    char hs[1024];
    size_t hs_len;
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
} o = {.conns = 100, .pipeline = 1, .window = 16, .size = 64, .duration = 3, .warmup = 0.5};

static struct conn *conns;
static unsigned nconns, next_to_open;
static uint64_t lost, sent_total;
static uint8_t *msg_template; /* one masked client frame of the message, to copy */
static size_t frame_len, frame_hdr;
static uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};
/* fanout: deliveries still missing per outstanding message, by seq % SEQ_RING */
static uint32_t missing[SEQ_RING];
static uint64_t next_seq, oldest_seq;

/* One client frame of the message: the template with the timestamp and the
 * sequence number (fanout) masked into its first 16 payload bytes. */
static void send_message(struct conn *c, uint64_t seq)
{
    uint8_t frame[64 + 14];
    uint8_t *f = msg_template;
    uint64_t t = lg_now_ns();
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
    lg_write(&c->s, f, frame_len);
}

static void fanout_send_more(void)
{
    struct conn *s = &conns[0];

    while (s->s.fd >= 0 && next_seq - oldest_seq < o.window) {
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
            lg_drop(&c->s, "unexpected message");
            return;
        }
        lg_record(c->sent_ns[c->head], now);
        c->head = (c->head + 1) % MAX_PIPELINE;
        c->inflight--;
        send_message(c, 0);
        return;
    }
    if (c->sender)
        return; /* a server that sends back to the sender too: not counted */
    if (seq != c->expect_seq) {
        lost++;
        lg_fail("message lost or out of order");
    }
    c->expect_seq = seq + 1;
    lg_record(t, now);
    if (seq >= oldest_seq && seq < next_seq && --missing[seq % SEQ_RING] == 0) {
        while (oldest_seq < next_seq && missing[oldest_seq % SEQ_RING] == 0)
            oldest_seq++;
        fanout_send_more();
    }
}

/* Parse server frames (unmasked) out of `len` bytes. */
static void parse_frames(struct conn *c, const uint8_t *p, size_t len, uint64_t now)
{
    while (len > 0 && c->s.fd >= 0) {
        if (!c->in_frame) {
            c->hdr[c->hdr_have++] = *p++;
            len--;
            if (c->hdr_have == 2) {
                uint8_t l7 = c->hdr[1] & 0x7f;

                if (c->hdr[1] & 0x80) {
                    lg_drop(&c->s, "masked server frame");
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
                lg_drop(&c->s, "fragmented message (not expected)");
                return;
            }
            if (c->opcode == 8) {
                lg_drop(&c->s, "close frame from the server");
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

static void send_request(struct conn *c)
{
    char req[512];
    int n;

    if (!lg_connected(&c->s))
        return;
    /* A fixed key is fine: the answer is not checked beyond its status. */
    n = snprintf(req, sizeof(req),
                 "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n",
                 lg.host, lg.port);
    c->phase = HANDSHAKE;
    lg_write(&c->s, req, (size_t)n);
}

/* One read on c: the handshake's answer until it is whole, then frames. */
static void on_bytes(struct lg_sock *s, const uint8_t *p, size_t n, uint64_t now)
{
    struct conn *c = (struct conn *)s;

    if (c->phase == HANDSHAKE) {
        size_t room = sizeof(c->hs) - 1 - c->hs_len, k = n < room ? n : room;
        char *end;

        memcpy(c->hs + c->hs_len, p, k);
        c->hs_len += k;
        c->hs[c->hs_len] = '\0';
        end = strstr(c->hs, "\r\n\r\n");
        if (end == NULL) {
            if (c->hs_len == sizeof(c->hs) - 1)
                lg_drop(s, "handshake answer too long");
            return;
        }
        if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
            lg_drop(s, "handshake refused");
            return;
        }
        size_t used = (size_t)(end + 4 - c->hs) - (c->hs_len - k);

        c->phase = OPEN;
        lg_opened(s);
        if (n > used)
            parse_frames(c, p + used, n - used, now);
    } else {
        parse_frames(c, p, n, now);
    }
}

static void handle(struct lg_sock *s, uint32_t events)
{
    struct conn *c = (struct conn *)s;

    if (s->fd < 0)
        return;
    if (c->phase == CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            send_request(c);
        return;
    }
    lg_on_events(s, events, on_bytes);
}

static void run_until(uint64_t deadline, bool connecting)
{
    for (;;) {
        uint64_t now = lg_now_ns();

        if (now >= deadline)
            return;
        if (connecting) {
            while (next_to_open < nconns && lg.nsetup < HANDSHAKES_AT_ONCE) {
                conns[next_to_open].phase = CONNECTING;
                lg_connect(&conns[next_to_open++].s, 0);
            }
            if (next_to_open == nconns && lg.nsetup == 0)
                return;
        }
        lg_poll(now, deadline, 100, handle);
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

static int usage(void)
{
    fprintf(stderr, "usage: wsload echo|fanout [-c CONNS] [-s SIZE] [-p PIPELINE] [-W WINDOW] "
                    "[-d SECONDS] [-w WARMUP] HOST:PORT\n");
    return 2;
}

int main(int argc, char **argv)
{
    int ch;
    uint64_t t0, setup_ns;
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
    if (!lg_parse_target(argv[optind]))
        return usage();
    if (!lg_init())
        return 1;
    build_template();
    nconns = o.conns + (o.fanout ? 1 : 0);
    conns = calloc(nconns, sizeof(*conns));
    if (conns == NULL)
        return 1;
    /* Connect and upgrade everything first, at most HANDSHAKES_AT_ONCE at a time
     * (a listen backlog of 511 is common), within 30 s. The fan-out sender is
     * conns[0]; it opens first, so it is no receiver of its own messages. */
    lg.win_start = lg.win_end = 0;
    t0 = lg_now_ns();
    run_until(t0 + 30000000000ull, true);
    setup_ns = lg_now_ns() - t0;
    if (lg.nopen != nconns) {
        lg_fail("not every connection was upgraded");
    } else {
        uint64_t start;
        double cpu0;

        /* Let the server finish registering the last ones before load starts. */
        run_until(lg_now_ns() + 100000000ull, false);
        start = lg_now_ns();
        lg.win_start = start + (uint64_t)(o.warmup * 1e9);
        lg.win_end = lg.win_start + (uint64_t)(o.duration * 1e9);
        if (o.fanout) {
            conns[0].sender = true;
            fanout_send_more();
        } else {
            for (unsigned i = 0; i < nconns; i++)
                for (unsigned k = 0; k < o.pipeline; k++)
                    send_message(&conns[i], 0);
        }
        cpu0 = lg_cpu_s();
        run_until(lg.win_end, false);
        client_cpu = (lg_cpu_s() - cpu0) / ((double)(lg_now_ns() - start) / 1e9);
    }
    {
        double rate = (double)lg.counted / o.duration;

        printf("{\"mode\":\"%s\",\"target\":\"%s:%d\",\"connections\":%u,\"size\":%zu,"
               "\"pipeline\":%u,\"window\":%u,\"duration_s\":%.3f,\"warmup_s\":%.3f,"
               "\"setup_s\":%.3f,\"messages\":%" PRIu64 ",\"%s\":%.1f,\"sent\":%" PRIu64
               ",\"latency_us\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
               "\"max\":%.3f},\"client_cpu\":%.3f,\"opened\":%u,\"errors\":%" PRIu64
               ",\"lost\":%" PRIu64 ",\"first_error\":\"%s\"}\n",
               o.fanout ? "fanout" : "echo", lg.host, lg.port, o.conns, o.size,
               o.fanout ? 1 : o.pipeline, o.fanout ? o.window : 0, o.duration, o.warmup,
               (double)setup_ns / 1e9, lg.counted, o.fanout ? "deliveries_per_s" : "msgs_per_s",
               rate, sent_total, lg_percentile_us(50), lg_percentile_us(90),
               lg_percentile_us(99), lg_percentile_us(99.9), lg_percentile_us(100), client_cpu,
               lg.nopen, lg.errors, lost, lg.first_error ? lg.first_error : "");
    }
    for (unsigned i = 0; i < nconns; i++) {
        if (conns[i].s.fd >= 0)
            close(conns[i].s.fd);
        free(conns[i].s.out);
    }
    free(conns);
    free(msg_template);
    return lg.errors != 0 || lg.counted == 0 ? 1 : 0;
}
