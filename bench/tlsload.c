/* tlsload: a TLS load generator for the bench's TLS echo servers. OpenSSL on
 * non-blocking sockets under one level-triggered epoll loop, any number of
 * connections on one thread, so it measures the server and not a client library.
 *
 * usage: tlsload [options] ADDR PORT
 *   -m MODE   full     connect, full handshake, echo 64 B once, close_notify, close,
 *                      again (handshakes/s)
 *             resume   the same, each slot offering the session ticket its last
 *                      connection received (resumed handshakes/s; the first one
 *                      of a slot is full and falls in the warmup)
 *             echo     handshake once, then closed-loop round trips of SIZE bytes,
 *                      one message in flight per connection (round trips/s)
 *             idle     open N connections, handshake, echo 64 B once each, print
 *                      "established N failed F", hold until SIGTERM/SIGINT or -H
 *   -c N      concurrent connections (full, resume, echo; default 1)
 *   -n N      connections to hold (idle)
 *   -s BYTES  message size (echo; default 64, at most 1 MiB)
 *   -d SECS   measured seconds (default 3)   -w SECS  warmup (default 0.5)
 *   -H SECS   idle: hold at most this long (default 120)
 *   -p PID    read the server's CPU time (/proc/PID/stat utime + stime) at the
 *             start and the end of the measured window: "server_cpu_s" (and
 *             always its own over the window, "client_cpu_s": near the window's
 *             length, the client was the limit)
 *
 * Pinned for every server alike: TLS 1.3 only, the one cipher suite
 * TLS_AES_128_GCM_SHA256, the one group X25519 (a TLS 1.3 server can only choose
 * among what the client offers); SNI "localhost"; no certificate verification
 * (the client's cost only: the server's work is the same either way). The run
 * reports what was actually negotiated, and how many session tickets each
 * connection received.
 *
 * Every echoed byte is checked against what was sent; a difference is an error.
 * Prints one JSON object on stdout. Exit status 0 when nothing failed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_INFLIGHT 200 /* idle: handshakes under way at once */
#define SRC_FIRST 0x7f000002u /* 127.0.0.2 ... */
#define SRC_COUNT 253u        /* ... 127.0.0.254: ports per source address */

enum mode { M_FULL, M_RESUME, M_ECHO, M_IDLE };
enum phase { P_NONE, P_CONNECTING, P_HANDSHAKE, P_WRITE, P_READ, P_HELD };

struct slot {
    int fd;
    enum phase phase;
    uint32_t events; /* registered with epoll */
    SSL *ssl;
    SSL_SESSION *sess; /* resume: the newest ticket this slot received */
    size_t off;        /* bytes written / read of the current message */
    double t0;         /* start of the current operation */
    unsigned tickets;  /* received on the current connection */
    int reused;        /* the current connection resumed a session */
};

static struct {
    enum mode mode;
    long conns, size;
    double duration, warmup, hold;
    int server_pid;
    struct sockaddr_in dst;
    SSL_CTX *ctx;
    int ep;
    struct slot *slots;
    unsigned char *out, *in;
    uint32_t next_src;
    /* results */
    double win_start, win_end;
    long ops, resumed, errors, conn_errors, handshakes_total, tickets_total;
    unsigned *lat;
    size_t nlat, caplat;
    char version[32], cipher[64], group[32];
    const char *last_error;
} g = {.conns = 1, .size = 64, .duration = 3, .warmup = 0.5, .hold = 120};

static int ssl_slot_idx;
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

static double server_cpu(void)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    int field;

    if (g.server_pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", g.server_pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    if (fgets(buf, sizeof(buf), f) == NULL) {
        fclose(f);
        return -1;
    }
    fclose(f);
    /* the command name may hold spaces: count fields after its closing ')' */
    p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    field = 2;
    for (char *tok = strtok(p + 1, " "); tok != NULL; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14)
            ut = strtoull(tok, NULL, 10);
        else if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int in_window(double t)
{
    return g.mode == M_IDLE || (t >= g.win_start && t < g.win_end);
}

static void record(double t0, double t1)
{
    if (!in_window(t1))
        return;
    g.ops++;
    if (g.nlat == g.caplat) {
        size_t cap = g.caplat ? g.caplat * 2 : 65536;
        unsigned *v = realloc(g.lat, cap * sizeof(*v));

        if (v == NULL)
            return;
        g.lat = v;
        g.caplat = cap;
    }
    g.lat[g.nlat++] = (unsigned)((t1 - t0) * 1e6);
}

/* TLS 1.3 tickets arrive after the handshake; keep the newest one for the slot. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct slot *s = SSL_get_ex_data(ssl, ssl_slot_idx);

    if (s == NULL)
        return 0;
    s->tickets++;
    if (g.mode != M_RESUME)
        return 0; /* not kept: OpenSSL frees it */
    SSL_SESSION_free(s->sess);
    s->sess = sess;
    return 1; /* the reference is ours now */
}

static void set_events(struct slot *s, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = s};

    if (s->events == ev)
        return;
    epoll_ctl(g.ep, EPOLL_CTL_MOD, s->fd, &e);
    s->events = ev;
}

static void drop(struct slot *s, int orderly)
{
    if (s->ssl != NULL) {
        if (orderly)
            SSL_shutdown(s->ssl); /* close_notify; the answer is not awaited */
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    s->phase = P_NONE;
    ERR_clear_error();
}

static int start(struct slot *s)
{
    struct sockaddr_in src = {.sin_family = AF_INET};
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = s};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        g.last_error = "socket";
        return -1;
    }
    /* Rotating source addresses, the port chosen at connect() by the whole
     * 4-tuple: thousands of handshakes a second leave no port shortage behind. */
    src.sin_addr.s_addr = htonl(SRC_FIRST + g.next_src++ % SRC_COUNT);
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        (connect(fd, (struct sockaddr *)&g.dst, sizeof(g.dst)) < 0 && errno != EINPROGRESS) ||
        epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &e) < 0) {
        g.last_error = "connect";
        close(fd);
        return -1;
    }
    s->fd = fd;
    s->events = EPOLLOUT;
    s->phase = P_CONNECTING;
    s->t0 = now_s();
    s->off = 0;
    s->tickets = 0;
    return 0;
}

static void fail(struct slot *s, const char *why)
{
    g.last_error = why;
    if (s->phase == P_CONNECTING)
        g.conn_errors++;
    else
        g.errors++;
    drop(s, 0);
}

static void note_session(SSL *ssl)
{
    const char *v = SSL_get_version(ssl), *c = SSL_get_cipher_name(ssl);
    int nid = SSL_get_negotiated_group(ssl);
    const char *gr = nid != NID_undef ? OBJ_nid2sn(nid) : "?";

    snprintf(g.version, sizeof(g.version), "%s", v ? v : "?");
    snprintf(g.cipher, sizeof(g.cipher), "%s", c ? c : "?");
    snprintf(g.group, sizeof(g.group), "%s", gr ? gr : "?");
}

/* Drive one slot as far as it goes without blocking. */
static void step(struct slot *s)
{
    for (;;) {
        int r, err;

        switch (s->phase) {
        case P_CONNECTING: {
            int soerr = 0;
            socklen_t len = sizeof(soerr);

            getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
            if (soerr != 0) {
                fail(s, "connect refused");
                return;
            }
            s->ssl = SSL_new(g.ctx);
            if (s->ssl == NULL) {
                fail(s, "SSL_new");
                return;
            }
            SSL_set_ex_data(s->ssl, ssl_slot_idx, s);
            SSL_set_fd(s->ssl, s->fd);
            SSL_set_tlsext_host_name(s->ssl, "localhost");
            if (g.mode == M_RESUME && s->sess != NULL) {
                /* A copy: OpenSSL's client offers a TLS 1.3 session only once, and
                 * a server need not send a new ticket on resumption (Node sends
                 * none), so the newest ticket may have to serve again. */
                SSL_SESSION *copy = SSL_SESSION_dup(s->sess);

                if (copy != NULL) {
                    SSL_set_session(s->ssl, copy);
                    SSL_SESSION_free(copy); /* the SSL holds its own reference */
                }
            }
            s->phase = P_HANDSHAKE;
            break;
        }
        case P_HANDSHAKE:
            r = SSL_connect(s->ssl);
            if (r == 1) {
                g.handshakes_total++;
                s->reused = SSL_session_reused(s->ssl);
                if (g.version[0] == '\0')
                    note_session(s->ssl);
                s->phase = P_WRITE;
                s->off = 0;
                if (g.mode == M_ECHO)
                    s->t0 = now_s();
                break;
            }
            err = SSL_get_error(s->ssl, r);
            if (err == SSL_ERROR_WANT_READ) {
                set_events(s, EPOLLIN);
                return;
            }
            if (err == SSL_ERROR_WANT_WRITE) {
                set_events(s, EPOLLOUT);
                return;
            }
            fail(s, "handshake");
            return;
        case P_WRITE: {
            size_t len = g.mode == M_ECHO ? (size_t)g.size : 64;

            r = SSL_write(s->ssl, g.out, (int)len);
            if (r > 0) {
                s->phase = P_READ;
                s->off = 0;
                break;
            }
            err = SSL_get_error(s->ssl, r);
            if (err == SSL_ERROR_WANT_WRITE) {
                set_events(s, EPOLLOUT);
                return;
            }
            if (err == SSL_ERROR_WANT_READ) {
                set_events(s, EPOLLIN);
                return;
            }
            fail(s, "write");
            return;
        }
        case P_READ: {
            size_t want = g.mode == M_ECHO ? (size_t)g.size : 64;

            r = SSL_read(s->ssl, g.in, (int)(want - s->off));
            if (r > 0) {
                if (memcmp(g.in, g.out + s->off, (size_t)r) != 0) {
                    fail(s, "echo differs from what was sent");
                    return;
                }
                s->off += (size_t)r;
                if (s->off < want)
                    break;
                /* the message is back whole */
                double t = now_s();

                if (g.mode == M_ECHO) {
                    record(s->t0, t);
                    s->t0 = t;
                    s->phase = P_WRITE;
                    s->off = 0;
                    break;
                }
                if (g.mode == M_IDLE) {
                    g.ops++;
                    g.tickets_total += s->tickets;
                    s->phase = P_HELD;
                    set_events(s, EPOLLIN);
                    return;
                }
                /* full / resume: one handshake done; tickets came before the echo */
                record(s->t0, t);
                if (in_window(t)) {
                    g.tickets_total += s->tickets;
                    g.resumed += s->reused;
                }
                drop(s, 1);
                if (!stop && t < g.win_end && start(s) < 0)
                    g.conn_errors++; /* the main loop tries again */
                return;
            }
            err = SSL_get_error(s->ssl, r);
            if (err == SSL_ERROR_WANT_READ) {
                set_events(s, EPOLLIN);
                return;
            }
            if (err == SSL_ERROR_WANT_WRITE) {
                set_events(s, EPOLLOUT);
                return;
            }
            fail(s, err == SSL_ERROR_ZERO_RETURN ? "server closed" : "read");
            return;
        }
        case P_HELD:
            r = SSL_read(s->ssl, g.in, 4096); /* late tickets, or the server's close */
            if (r > 0)
                break;
            err = SSL_get_error(s->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                return;
            fail(s, "held connection lost");
            return;
        case P_NONE:
            return;
        }
    }
}

static int cmp_u(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

    return x < y ? -1 : x > y;
}

static unsigned pct(double p)
{
    if (g.nlat == 0)
        return 0;
    return g.lat[(size_t)(p * (double)(g.nlat - 1))];
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [-m full|resume|echo|idle] [-c CONNS] [-n N] [-s BYTES] [-d SECS]"
            " [-w SECS] [-H SECS] [-p SERVER_PID] ADDR PORT\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    static const char *names[] = {"full", "resume", "echo", "idle"};
    struct epoll_event evs[256];
    double t_start, cpu0 = 0, cpu1 = 0, self0 = 0, self1 = 0, deadline;
    long nslots, started = 0, done_setup = 0;
    int opt;

    while ((opt = getopt(argc, argv, "m:c:n:s:d:w:H:p:")) != -1) {
        switch (opt) {
        case 'm':
            if (strcmp(optarg, "full") == 0)
                g.mode = M_FULL;
            else if (strcmp(optarg, "resume") == 0)
                g.mode = M_RESUME;
            else if (strcmp(optarg, "echo") == 0)
                g.mode = M_ECHO;
            else if (strcmp(optarg, "idle") == 0)
                g.mode = M_IDLE;
            else
                usage(argv[0]);
            break;
        case 'c':
        case 'n':
            g.conns = atol(optarg);
            break;
        case 's':
            g.size = atol(optarg);
            break;
        case 'd':
            g.duration = atof(optarg);
            break;
        case 'w':
            g.warmup = atof(optarg);
            break;
        case 'H':
            g.hold = atof(optarg);
            break;
        case 'p':
            g.server_pid = atoi(optarg);
            break;
        default:
            usage(argv[0]);
        }
    }
    if (argc - optind != 2 || g.conns <= 0 || g.conns > 1000000 || g.size <= 0 ||
        g.size > (1 << 20) || g.duration <= 0 || g.warmup < 0)
        usage(argv[0]);
    g.dst.sin_family = AF_INET;
    g.dst.sin_port = htons((uint16_t)atoi(argv[optind + 1]));
    if (inet_pton(AF_INET, argv[optind], &g.dst.sin_addr) != 1)
        usage(argv[0]);

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    g.ctx = SSL_CTX_new(TLS_client_method());
    if (g.ctx == NULL || !SSL_CTX_set_min_proto_version(g.ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(g.ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(g.ctx, "TLS_AES_128_GCM_SHA256") ||
        !SSL_CTX_set1_groups_list(g.ctx, "X25519")) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_verify(g.ctx, SSL_VERIFY_NONE, NULL);
    /* Sessions live in the slots, not in OpenSSL's cache. */
    SSL_CTX_set_session_cache_mode(g.ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(g.ctx, on_new_session);
    ssl_slot_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    /* the handshake modes send 64 bytes whatever -s says */
    size_t bufsize = g.size > 64 ? (size_t)g.size : 64;

    g.out = malloc(bufsize);
    g.in = malloc(bufsize + 4096);
    g.slots = calloc((size_t)g.conns, sizeof(*g.slots));
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (g.out == NULL || g.in == NULL || g.slots == NULL || g.ep < 0)
        return 1;
    for (size_t i = 0; i < bufsize; i++) /* not periodic in a record: a misplaced byte shows */
        g.out[i] = (unsigned char)('a' + (i * 7 + i / 26) % 26);
    nslots = g.conns;
    for (long i = 0; i < nslots; i++)
        g.slots[i].fd = -1;

    t_start = now_s();
    g.win_start = t_start + g.warmup;
    g.win_end = g.win_start + g.duration;
    deadline = g.mode == M_IDLE ? t_start + g.hold : g.win_end;
    if (g.mode != M_IDLE) {
        for (long i = 0; i < nslots; i++)
            if (start(&g.slots[i]) < 0)
                g.conn_errors++;
        started = nslots;
    }
    int measuring = 0, announced = 0;

    while (!stop) {
        double t = now_s();
        int n, timeout_ms;

        if (g.mode == M_IDLE) {
            /* open connections MAX_INFLIGHT at a time */
            while (started < nslots && started - done_setup < MAX_INFLIGHT) {
                struct slot *s = &g.slots[started++];

                if (start(s) < 0)
                    g.conn_errors++;
            }
            done_setup = 0;
            for (long i = 0; i < started; i++)
                if (g.slots[i].phase == P_HELD || g.slots[i].phase == P_NONE)
                    done_setup++;
            if (!announced && started == nslots && done_setup == nslots) {
                printf("established %ld failed %ld\n", g.ops, nslots - g.ops);
                fflush(stdout);
                announced = 1;
            }
        } else if (!measuring && t >= g.win_start) {
            cpu0 = server_cpu();
            self0 = self_cpu();
            measuring = 1;
        }
        if (t >= deadline)
            break;
        timeout_ms = (int)((deadline - t) * 1000) + 1;
        if (!measuring && g.mode != M_IDLE && (g.win_start - t) * 1000 < timeout_ms)
            timeout_ms = (int)((g.win_start - t) * 1000) + 1;
        if (timeout_ms > 100)
            timeout_ms = 100;
        n = epoll_wait(g.ep, evs, 256, timeout_ms);
        for (int i = 0; i < n; i++)
            step(evs[i].data.ptr);
        if (g.mode != M_IDLE && now_s() < g.win_end) {
            /* a slot dropped by an error starts over */
            for (long i = 0; i < nslots; i++)
                if (g.slots[i].phase == P_NONE && start(&g.slots[i]) < 0)
                    g.conn_errors++;
        }
    }
    if (g.mode != M_IDLE) {
        cpu1 = server_cpu();
        self1 = self_cpu();
    }

    for (long i = 0; i < nslots; i++) {
        if (g.slots[i].phase != P_NONE)
            drop(&g.slots[i], 1);
        SSL_SESSION_free(g.slots[i].sess);
    }
    if (g.mode == M_IDLE) {
        fprintf(stderr, "tlsload: held %ld, errors %ld, connect errors %ld%s%s\n", g.ops,
                g.errors, g.conn_errors, g.last_error ? ", last: " : "",
                g.last_error ? g.last_error : "");
        return g.errors || g.conn_errors ? 1 : 0;
    }
    qsort(g.lat, g.nlat, sizeof(*g.lat), cmp_u);
    printf("{\"mode\":\"%s\",\"connections\":%ld,\"size\":%ld,\"duration\":%.3f,"
           "\"ops\":%ld,\"ops_per_s\":%.1f,\"bytes_per_s\":%.1f,\"resumed\":%ld,"
           "\"tickets_per_conn\":%.2f,\"errors\":%ld,\"connect_errors\":%ld,"
           "\"version\":\"%s\",\"cipher\":\"%s\",\"group\":\"%s\","
           "\"latency_us\":{\"p50\":%u,\"p99\":%u},\"server_cpu_s\":%.3f,\"client_cpu_s\":%.3f%s%s%s}\n",
           names[g.mode], g.conns, g.mode == M_ECHO ? g.size : 64, g.duration, g.ops,
           (double)g.ops / g.duration,
           g.mode == M_ECHO ? (double)g.ops * (double)g.size / g.duration : 0.0, g.resumed,
           g.ops ? (double)g.tickets_total / (double)g.ops : 0.0, g.errors, g.conn_errors,
           g.version, g.cipher, g.group, pct(0.5), pct(0.99),
           g.server_pid > 0 ? cpu1 - cpu0 : 0.0, self1 - self0, g.last_error ? ",\"last_error\":\"" : "",
           g.last_error ? g.last_error : "", g.last_error ? "\"" : "");
    return g.errors || g.conn_errors ? 1 : 0;
}
