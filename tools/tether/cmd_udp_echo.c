/* `tether udp-echo`: a UDP echo server. Every datagram goes back to its sender,
 * whole (the receive slot is the largest datagram). Replies to one receive batch
 * leave together with sendmmsg(2); a reply refused for lack of buffer space is
 * dropped and counted, as a datagram service may. --join makes it a member of
 * multicast groups, so one echo answers every client of a group. SIGINT/SIGTERM
 * close the socket and print the totals with --verbose.
 *
 * A UDP source address is not proof of anything: a forged datagram "from" a
 * victim makes an echo server a reflector, and one "from" the server itself, or
 * from another echo server, starts a loop that never ends (each answer is the next
 * question). So a datagram is not answered when
 *  - its source port is 0 (no one can receive there);
 *  - its source port is our own port: it is ourselves (a forged datagram from our
 *    own address would loop inside this process), or a peer echo service on the
 *    same port, as inetd's built-in services refuse (check_loop);
 *  - its source has used up its budget: each source address:port may have
 *    --rate-limit answers a second (a token bucket as deep as one second's worth).
 *    Two echo servers on different ports that were set against each other pass
 *    the first datagram back and forth as fast as the loopback allows; the first
 *    time one of them drops it for lack of budget, the loop is over. It also
 *    bounds what a forged source can make us send to one victim.
 * An answer is never larger than what came in (an echo is the same bytes), so
 * there is no amplification. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define DEFAULT_LISTEN "127.0.0.1:7000"
#define MAX_JOINS 16
#define DEFAULT_RATE_LIMIT 1000 /* answers per second per source */
#define MAX_RATE_LIMIT 100000000UL
/* Sources remembered for the budget; a new source takes the slot of whichever one
 * hashes to it (starting with a full bucket), so memory stays fixed whatever a
 * sender of forged addresses does. */
#define BUCKETS 4096

typedef struct bucket {
    tt_addr_t who; /* len 0: free */
    double tokens;
    uint64_t last_ns;
} bucket_t;

typedef struct uecho {
    tt_udp_t *u;
    bool verbose;
    int status;
    uint16_t own_port;
    unsigned long rate; /* 0: no budget */
    bucket_t *buckets;
    uint64_t refused_port0, refused_own_port, refused_rate;
} uecho_t;

static uecho_t g_uecho;

static void usage(FILE *f)
{
    fprintf(f, "usage: tether udp-echo [--listen ADDR:PORT] [--join GROUP[,SOURCE]]...\n"
               "                       [--iface NAME|INDEX] [--broadcast] [--verbose]\n"
               "\n"
               "UDP echo server: sends every datagram back to its sender.\n"
               "\n"
               "  -l, --listen ADDR:PORT      where to bind (default " DEFAULT_LISTEN ");\n"
               "                              port 0 picks a free port; :PORT is every\n"
               "                              address, IPv4 and IPv6\n"
               "  -j, --join GROUP[,SOURCE]   join a multicast group, source-specific with\n"
               "                              SOURCE; repeatable (bind the wildcard\n"
               "                              address and the group's port)\n"
               "  -i, --iface NAME|INDEX      the interface for --join\n"
               "  -b, --broadcast             SO_BROADCAST (answer to broadcast senders)\n"
               "  -r, --rate-limit N          answers per second to any one source\n"
               "                              address:port (default %d; 0: no limit)\n"
               "  -v, --verbose               one line per datagram, totals at exit\n"
               "  -h, --help                  this text\n"
               "\n"
               "Prints 'tether udp-echo: listening on ADDR:PORT' on stdout once bound.\n"
               "\n"
               "Not answered, so that it is never a reflector nor one end of a loop:\n"
               "datagrams from port 0, from its own port (itself, or another echo service\n"
               "on that port), and from a source past its --rate-limit budget (two echo\n"
               "servers set against each other stop within a second's budget).\n"
               "\n"
               "Exit status: 0 stopped by a signal, 1 could not bind or join, 2 bad usage\n"
               "(a malformed --join, or a group that is not multicast).\n",
            DEFAULT_RATE_LIMIT);
}

static void on_listening(tt_udp_t *u)
{
    tt_addr_t a;
    if (tt_udp_addr(u, &a) == 0 && cli_print_listening(stdout, &a, NULL) < 0) {
        g_uecho.status = CLI_EXIT_FAIL; /* stdout is gone: said, and stop */
        tt_loop_stop(tt_udp_loop(u));
    }
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool same_source(const tt_addr_t *a, const tt_addr_t *b)
{
    if (a->len != b->len || a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in4.sin_port == b->u.in4.sin_port &&
               a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
    return a->u.in6.sin6_port == b->u.in6.sin6_port &&
           memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, sizeof(a->u.in6.sin6_addr)) == 0;
}

/* FNV-1a over the address and port. */
static unsigned source_slot(const tt_addr_t *a)
{
    const unsigned char *p;
    size_t n;
    uint32_t h = 2166136261u;

    if (a->u.sa.sa_family == AF_INET) {
        p = (const unsigned char *)&a->u.in4.sin_addr;
        n = sizeof(a->u.in4.sin_addr);
    } else {
        p = (const unsigned char *)&a->u.in6.sin6_addr;
        n = sizeof(a->u.in6.sin6_addr);
    }
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    h = (h ^ (tt_addr_port(a) & 0xff)) * 16777619u;
    h = (h ^ (tt_addr_port(a) >> 8)) * 16777619u;
    return h % BUCKETS;
}

/* Take one answer from the source's budget; false when it has none left. */
static bool take_budget(uecho_t *st, const tt_addr_t *from)
{
    bucket_t *b = &st->buckets[source_slot(from)];
    uint64_t now = now_ns();
    double burst = (double)st->rate;

    if (!same_source(&b->who, from)) {
        b->who = *from;
        b->tokens = burst;
    } else {
        b->tokens += (double)(now - b->last_ns) * (double)st->rate / 1e9;
        if (b->tokens > burst)
            b->tokens = burst;
    }
    b->last_ns = now;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

/* NULL when the datagram is to be answered, else why not. */
static const char *refuse(uecho_t *st, const tt_addr_t *from)
{
    uint16_t port = tt_addr_port(from);

    if (port == 0) {
        st->refused_port0++;
        return "from port 0";
    }
    if (port == st->own_port) {
        st->refused_own_port++;
        return "from our own port";
    }
    if (st->rate > 0 && !take_budget(st, from)) {
        st->refused_rate++;
        return "over the source's rate limit";
    }
    return NULL;
}

static void on_datagram(tt_udp_t *u, const void *data, size_t len, const tt_addr_t *from,
                        unsigned flags, size_t full)
{
    char buf[TT_ADDR_STRLEN];
    const char *why = refuse(&g_uecho, from);
    int r = why == NULL ? tt_udp_send(u, data, len, from) : 0;

    if (!g_uecho.verbose)
        return;
    if (why != NULL)
        fprintf(stderr, "tether udp-echo: %zu bytes from %s: not answered (%s)\n", full,
                cli_addr_str(from, buf), why);
    else
        fprintf(stderr, "tether udp-echo: %zu bytes from %s%s%s%s\n", full,
                cli_addr_str(from, buf), (flags & TT_UDP_TRUNCATED) ? " (truncated)" : "",
                r < 0 ? ": " : "", r < 0 ? tt_strerror(r) : "");
}

static void on_error(tt_udp_t *u, int err, const tt_udp_error_info_t *info)
{
    char buf[TT_ADDR_STRLEN];
    (void)u;
    if (g_uecho.verbose)
        fprintf(stderr, "tether udp-echo: %s: %s\n",
                info->peer.len ? cli_addr_str(&info->peer, buf) : "?", tt_strerror(err));
}

int cmd_udp_echo(int argc, char **argv)
{
    static const struct option longopts[] = {{"listen", required_argument, NULL, 'l'},
                                             {"join", required_argument, NULL, 'j'},
                                             {"iface", required_argument, NULL, 'i'},
                                             {"broadcast", no_argument, NULL, 'b'},
                                             {"rate-limit", required_argument, NULL, 'r'},
                                             {"verbose", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const tt_udp_handlers_t h = {.on_listening = on_listening, .on_datagram = on_datagram,
                                 .on_error = on_error};
    const char *where = DEFAULT_LISTEN, *iface = NULL, *joins[MAX_JOINS];
    uecho_t *st = &g_uecho;
    tt_udp_opts_t o = {.recv_size = TT_UDP_MAX_RECV_SIZE};
    tt_loop_t *loop;
    tt_addr_t addr;
    bool first = true;
    int ch, err, njoins = 0;

    st->rate = DEFAULT_RATE_LIMIT;
    while ((ch = cli_getopt("udp-echo", argc, argv, ":l:j:i:br:vh", longopts, &first)) != -1) {
        switch (ch) {
        case 'l':
            where = optarg;
            break;
        case 'j':
            if (njoins == MAX_JOINS)
                return cli_usage_error("udp-echo", "at most %d --join", MAX_JOINS);
            joins[njoins++] = optarg;
            break;
        case 'i':
            iface = optarg;
            break;
        case 'b':
            o.broadcast = true;
            break;
        case 'r':
            if (strcmp(optarg, "0") == 0)
                st->rate = 0;
            else if (cli_parse_count("udp-echo", "--rate-limit", optarg, MAX_RATE_LIMIT,
                                     &st->rate) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'v':
            st->verbose = true;
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return cli_usage_error("udp-echo", "unexpected argument '%s'", argv[optind]);
    if (cli_parse_addr("udp-echo", where, false, &addr) < 0)
        return CLI_EXIT_USAGE;
    if (tt_addr_is_unix(&addr))
        return cli_usage_error("udp-echo", "bad address '%s': UDP takes an IP address", where);
    for (int i = 0; i < njoins; i++) /* a usage error is said before anything is bound */
        if (cli_udp_check_join("udp-echo", joins[i]) < 0)
            return CLI_EXIT_USAGE;
    o.reuseaddr = njoins > 0;

    err = tt_loop_init(&loop);
    if (err < 0) {
        cli_error("%s", tt_strerror(err));
        return CLI_EXIT_FAIL;
    }
    st->buckets = st->rate > 0 ? calloc(BUCKETS, sizeof(*st->buckets)) : NULL;
    if (st->rate > 0 && st->buckets == NULL) {
        cli_error("%s", tt_strerror(-ENOMEM));
        tt_loop_close(loop);
        return CLI_EXIT_FAIL;
    }
    err = tt_udp_open(loop, &addr, &o, &h, st, &st->u);
    if (err < 0) {
        cli_error("bind %s: %s", where, tt_strerror(err));
        free(st->buckets);
        tt_loop_close(loop);
        return CLI_EXIT_FAIL;
    }
    tt_addr_t bound;
    st->own_port = tt_udp_addr(st->u, &bound) == 0 ? tt_addr_port(&bound) : tt_addr_port(&addr);
    for (int i = 0; i < njoins && st->status == CLI_EXIT_OK; i++) {
        err = cli_udp_join_spec("udp-echo", st->u, joins[i], iface);
        if (err < 0)
            st->status = err == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
    }
    if (st->status == CLI_EXIT_OK && (err = cli_signals_install(loop)) < 0) {
        cli_error("signals: %s", tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
    }
    if (st->status == CLI_EXIT_OK) {
        while (tt_loop_run(loop, TT_RUN_DEFAULT) == 1 && !cli_signal_caught() &&
               st->status == CLI_EXIT_OK)
            ;
        cli_signals_restore();
    }
    if (st->verbose) {
        tt_udp_stats_t s;
        if (tt_udp_get_stats(st->u, &s) == 0)
            fprintf(stderr,
                    "tether udp-echo: %" PRIu64 " datagrams in (%" PRIu64 " bytes, %" PRIu64
                    " truncated, %" PRIu64 " dropped by the kernel), %" PRIu64
                    " out, %" PRIu64 " refused, %" PRIu64 " recvmmsg, %" PRIu64
                    " send calls; not answered: %" PRIu64 " from port 0, %" PRIu64
                    " from our own port, %" PRIu64 " over the rate limit\n",
                    s.datagrams_in, s.bytes_in, s.truncated, s.kernel_drops, s.datagrams_out,
                    s.send_errors + s.refused, s.recv_calls, s.send_calls, st->refused_port0,
                    st->refused_own_port, st->refused_rate);
    }
    free(st->buckets);
    tt_udp_close(st->u);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    err = tt_loop_close(loop);
    if (err < 0 && st->status == CLI_EXIT_OK) {
        cli_error("closing the loop: %s", tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
    }
    return st->status;
}
