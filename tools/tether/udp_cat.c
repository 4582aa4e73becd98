/* `tether cat --udp`: stdin to UDP datagrams, datagrams to stdout, like nc -u.
 *
 * Each read(2) of stdin becomes one datagram, as nc does: at most 65507 bytes to
 * an IPv4 peer (65535 less the IPv4 and UDP headers) and 65527 to an IPv6 one
 * (TT_UDP_MAX_DATAGRAM; the IPv6 header is not counted in its length field). Stdin is read by its own thread, which hands each chunk to the loop
 * with tt_loop_post (the only thread-safe call), so the tool uses nothing but the
 * public API. Datagrams received go to stdout through the writer thread.
 *
 * Client: the socket is connected to ADDR:PORT (nothing is sent by that), so an
 * ICMP "port unreachable" comes back as on_error and ends the tool with status 1.
 * With --broadcast, or to a multicast group, the socket stays unconnected so that
 * answers from any host are shown. After stdin ends, replies are awaited for
 * --timeout seconds (default 1), then the tool exits.
 * Listener: bound to ADDR:PORT (after --join, the group's port); stdin goes to
 * whoever sent the last datagram. It runs until SIGINT/SIGTERM. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "writer.h"

#define DEFAULT_WAIT_MS 1000
#define STDOUT_HIGH_WATER ((size_t)1 << 20)
#define STDOUT_GIVE_UP_MS 2000
#define MAX_JOINS 16
/* The largest UDP payload by family: 65535 - 20 (IPv4 header) - 8 (UDP header);
 * IPv6's 16-bit payload length leaves 65535 - 8. */
#define MAX_DATAGRAM_IPV4 65507
#define MAX_DATAGRAM_IPV6 TT_UDP_MAX_DATAGRAM

typedef struct chunk {
    size_t len; /* (size_t)-1: end of stdin; (size_t)-2: read error (errno in err) */
    int err;
    char data[];
} chunk_t;

typedef struct ucat {
    tt_loop_t *loop;
    tt_udp_t *u;
    tt_timer_t *wait_timer;
    cli_writer_t *out;
    tt_addr_t target;    /* client: where stdin goes */
    tt_addr_t last_from; /* listener: who to answer */
    bool listening, verbose, connected, stdin_done;
    uint64_t wait_ms;
    size_t chunk_max; /* bytes per read of stdin: the largest datagram to the peer */
    int status;
    pthread_mutex_t mu; /* orders the reader's posts before tt_loop_close */
    bool closing;
} ucat_t;

static ucat_t g_ucat = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void usage(FILE *f)
{
    fprintf(f, "usage: tether cat --udp [options] ADDR:PORT\n"
               "       tether cat --udp [options] --listen ADDR:PORT\n"
               "\n"
               "Each read of stdin is sent as one datagram; datagrams received go to\n"
               "stdout. A client is connected to ADDR:PORT (an ICMP 'port unreachable'\n"
               "ends it with status 1) and waits --timeout seconds for replies after\n"
               "stdin ends. A listener answers the last sender and runs until SIGINT.\n"
               "\n"
               "  -l, --listen ADDR:PORT      bind there and receive\n"
               "  -j, --join GROUP[,SOURCE]   join a multicast group (source-specific with\n"
               "                              SOURCE); repeatable\n"
               "  -i, --iface NAME|INDEX      interface for --join and multicast sends\n"
               "  -b, --broadcast             allow sending to broadcast addresses\n"
               "  -w, --timeout SECONDS       client: wait for replies after stdin ends\n"
               "                              (default %d)\n"
               "  -v, --verbose               datagram sources and errors on stderr\n"
               "  -h, --help                  this text\n"
               "\n"
               "Exit status: 0 done, 1 network error, 2 bad usage, 128+N signal N.\n",
            DEFAULT_WAIT_MS / 1000);
}

/* ---- stdin, on its own thread ------------------------------------------------- */

static void on_chunk(tt_loop_t *loop, void *arg);

static void post_chunk(ucat_t *st, chunk_t *c)
{
    pthread_mutex_lock(&st->mu);
    if (st->closing || tt_loop_post(st->loop, on_chunk, c) < 0)
        free(c);
    pthread_mutex_unlock(&st->mu);
}

static void *stdin_reader(void *arg)
{
    ucat_t *st = arg;
    for (;;) {
        chunk_t *c = malloc(sizeof(*c) + st->chunk_max);
        if (c == NULL)
            return NULL;
        ssize_t n = read(STDIN_FILENO, c->data, st->chunk_max);
        if (n < 0 && errno == EINTR) {
            free(c);
            continue;
        }
        c->err = n < 0 ? -errno : 0;
        c->len = n > 0 ? (size_t)n : (n == 0 ? (size_t)-1 : (size_t)-2);
        bool last = n <= 0;
        post_chunk(st, c);
        if (last)
            return NULL;
    }
}

static void wait_done(tt_timer_t *t, void *data)
{
    ucat_t *st = data;
    (void)t;
    if (st->u != NULL) {
        tt_udp_close(st->u);
        st->u = NULL;
    }
}

static void on_chunk(tt_loop_t *loop, void *arg)
{
    ucat_t *st = &g_ucat;
    chunk_t *c = arg;
    (void)loop;

    if (st->u == NULL) {
        free(c);
        return;
    }
    if (c->len == (size_t)-1 || c->len == (size_t)-2) {
        if (c->len == (size_t)-2) {
            cli_error("read stdin: %s", tt_strerror(c->err));
            st->status = CLI_EXIT_FAIL;
        }
        st->stdin_done = true;
        if (!st->listening && tt_timer_init(st->loop, &st->wait_timer, wait_done, st) == 0)
            tt_timer_start(st->wait_timer, st->wait_ms, 0);
        free(c);
        return;
    }
    const tt_addr_t *to = NULL;
    if (st->listening)
        to = st->last_from.len ? &st->last_from : NULL;
    else if (!st->connected)
        to = &st->target;
    if (st->listening && to == NULL) {
        if (st->verbose)
            fprintf(stderr, "tether cat: no sender yet: %zu bytes dropped\n", c->len);
        free(c);
        return;
    }
    int r = tt_udp_send(st->u, c->data, c->len, to);
    if (r < 0) {
        /* Lost bytes are an error: said, and the exit status is 1. */
        char buf[TT_ADDR_STRLEN];
        cli_error("send %s: %s (%zu bytes)", cli_addr_str(to != NULL ? to : &st->target, buf),
                  tt_strerror(r), c->len);
        st->status = CLI_EXIT_FAIL;
    }
    free(c);
}

/* ---- the socket ------------------------------------------------------------------ */

static void on_datagram(tt_udp_t *u, const void *data, size_t len, const tt_addr_t *from,
                        unsigned flags, size_t full)
{
    ucat_t *st = &g_ucat;
    char buf[TT_ADDR_STRLEN];
    (void)u;

    st->last_from = *from;
    if (st->verbose)
        fprintf(stderr, "tether cat: %zu bytes from %s%s\n", full, cli_addr_str(from, buf),
                (flags & TT_UDP_TRUNCATED) ? " (truncated)" : "");
    if (cli_writer_push(st->out, data, len) == -ENOMEM)
        cli_error("stdout: %s", tt_strerror(-ENOMEM));
}

static void on_error(tt_udp_t *u, int err, const tt_udp_error_info_t *info)
{
    ucat_t *st = &g_ucat;
    char buf[TT_ADDR_STRLEN];

    cli_error("%s: %s", info->peer.len ? cli_addr_str(&info->peer, buf) : "udp",
              tt_strerror(err));
    if (!st->listening && st->connected) {
        /* The one peer is not there: nothing more to do. */
        st->status = CLI_EXIT_FAIL;
        tt_udp_close(u);
        st->u = NULL;
    }
}

static void stop_all(ucat_t *st);

static void on_listening(tt_udp_t *u)
{
    ucat_t *st = &g_ucat;
    tt_addr_t a;
    if (st->listening && tt_udp_addr(u, &a) == 0 && cli_print_listening(stderr, &a, " (udp)") < 0) {
        st->status = CLI_EXIT_FAIL;
        stop_all(st);
    }
}

static void out_error(void *arg, int err)
{
    ucat_t *st = arg;
    cli_error("write stdout: %s", tt_strerror(err));
    st->status = CLI_EXIT_FAIL;
}

static void stop_all(ucat_t *st)
{
    if (st->u != NULL) {
        tt_udp_close(st->u);
        st->u = NULL;
    }
    if (st->wait_timer != NULL) {
        tt_timer_close(st->wait_timer);
        st->wait_timer = NULL;
    }
}

int cli_udp_cat(int argc, char **argv)
{
    static const struct option longopts[] = {{"udp", no_argument, NULL, 'u'},
                                             {"listen", required_argument, NULL, 'l'},
                                             {"join", required_argument, NULL, 'j'},
                                             {"iface", required_argument, NULL, 'i'},
                                             {"broadcast", no_argument, NULL, 'b'},
                                             {"timeout", required_argument, NULL, 'w'},
                                             {"verbose", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const tt_udp_handlers_t h = {.on_listening = on_listening, .on_datagram = on_datagram,
                                 .on_error = on_error};
    const cli_writer_cbs_t wcbs = {.on_error = out_error, .arg = &g_ucat};
    ucat_t *st = &g_ucat;
    const char *joins[MAX_JOINS], *iface = NULL, *where = NULL;
    int njoins = 0, ch, err;
    bool first = true, broadcast = false;
    tt_udp_opts_t o = {0};
    tt_addr_t bind_addr;
    pthread_t reader;
    sigset_t all, old;

    st->wait_ms = DEFAULT_WAIT_MS;
    while ((ch = cli_getopt("cat", argc, argv, ":ul:j:i:bw:vh", longopts, &first)) != -1) {
        switch (ch) {
        case 'u':
            break;
        case 'l':
            where = optarg;
            st->listening = true;
            break;
        case 'j':
            if (njoins == MAX_JOINS)
                return cli_usage_error("cat", "at most %d --join", MAX_JOINS);
            joins[njoins++] = optarg;
            break;
        case 'i':
            iface = optarg;
            break;
        case 'b':
            broadcast = true;
            break;
        case 'w':
            if (cli_parse_seconds(optarg, &st->wait_ms) < 0)
                return cli_usage_error("cat", "bad timeout '%s': expected seconds", optarg);
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
    for (int i = 0; i < njoins; i++)
        if (cli_udp_check_join("cat", joins[i]) < 0)
            return CLI_EXIT_USAGE;
    if (!st->listening) {
        if (optind >= argc)
            return cli_usage_error("cat", "missing ADDR:PORT");
        where = argv[optind++];
    }
    if (optind < argc)
        return cli_usage_error("cat", "unexpected argument '%s'", argv[optind]);
    if (cli_parse_addr("cat", where, !st->listening, st->listening ? &bind_addr : &st->target) <
        0)
        return CLI_EXIT_USAGE;
    if (tt_addr_is_unix(st->listening ? &bind_addr : &st->target))
        return cli_usage_error("cat", "bad address '%s': UDP takes an IP address", where);
    if (!st->listening) {
        /* Any local address of the target's family, a port chosen by the kernel. */
        if (tt_addr_parse(&bind_addr, st->target.u.sa.sa_family == AF_INET ? "0.0.0.0" : "::",
                          0) < 0)
            return CLI_EXIT_USAGE;
    }
    /* A listener answers whoever wrote last: an IPv4 peer, unless it is bound to an
     * IPv6 address other than the wildcard (which takes IPv4 peers too, mapped). */
    if (st->listening)
        st->chunk_max = bind_addr.u.sa.sa_family == AF_INET6 &&
                                !IN6_IS_ADDR_UNSPECIFIED(&bind_addr.u.in6.sin6_addr)
                            ? MAX_DATAGRAM_IPV6
                            : MAX_DATAGRAM_IPV4;
    else
        st->chunk_max = st->target.u.sa.sa_family == AF_INET6 &&
                                !IN6_IS_ADDR_V4MAPPED(&st->target.u.in6.sin6_addr)
                            ? MAX_DATAGRAM_IPV6
                            : MAX_DATAGRAM_IPV4;
    o.broadcast = broadcast;
    o.reuseaddr = njoins > 0; /* several listeners on one group port */
    o.recv_size = TT_UDP_MAX_RECV_SIZE; /* a tool shows whole datagrams */

    err = tt_loop_init(&st->loop);
    if (err < 0) {
        cli_error("%s", tt_strerror(err));
        return CLI_EXIT_FAIL;
    }
    err = cli_writer_start(&st->out, st->loop, STDOUT_FILENO, STDOUT_HIGH_WATER, &wcbs);
    if (err < 0) {
        cli_error("stdout writer: %s", tt_strerror(err));
        tt_loop_close(st->loop);
        return CLI_EXIT_FAIL;
    }
    err = tt_udp_open(st->loop, &bind_addr, &o, &h, st, &st->u);
    if (err < 0) {
        cli_error("bind %s: %s", where, tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
    }
    for (int i = 0; st->u != NULL && i < njoins; i++) {
        err = cli_udp_join_spec("cat", st->u, joins[i], iface);
        if (err < 0) {
            st->status = err == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
            stop_all(st);
        }
    }
    if (st->u != NULL && iface != NULL &&
        (err = tt_udp_set_multicast_interface(st->u, iface)) < 0) {
        cli_error("interface %s: %s", iface, tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
        stop_all(st);
    }
    if (st->u != NULL && !st->listening && !broadcast && njoins == 0) {
        char sbuf[TT_ADDR_STRLEN];
        bool mcast = st->target.u.sa.sa_family == AF_INET
                         ? IN_MULTICAST(ntohl(st->target.u.in4.sin_addr.s_addr))
                         : IN6_IS_ADDR_MULTICAST(&st->target.u.in6.sin6_addr);
        if (!mcast) {
            err = tt_udp_connect(st->u, &st->target);
            if (err < 0) {
                cli_error("connect %s: %s", cli_addr_str(&st->target, sbuf), tt_strerror(err));
                st->status = CLI_EXIT_FAIL;
                stop_all(st);
            }
            st->connected = err == 0;
        }
    }
    err = cli_signals_install(st->loop);
    if (err < 0) {
        cli_error("signals: %s", tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
        stop_all(st);
    }
    /* The reader thread must not take SIGINT/SIGTERM: the loop's thread handles
     * them. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    err = st->u != NULL ? pthread_create(&reader, NULL, stdin_reader, st) : -1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err == 0)
        pthread_detach(reader); /* may stay blocked in read(2) until exit */
    else if (st->u != NULL) {
        cli_error("stdin thread: %s", tt_strerror(-err));
        st->status = CLI_EXIT_FAIL;
        stop_all(st);
    }

    while (tt_loop_run(st->loop, TT_RUN_DEFAULT) == 1) {
        if (cli_signal_caught())
            stop_all(st);
    }
    /* The reader posts nothing from now on; a chunk it posted before this is still
     * queued, and the last round below runs it (on_chunk frees it, the socket
     * being gone). tt_loop_close would drop it uncalled: a leak. */
    pthread_mutex_lock(&st->mu);
    st->closing = true;
    pthread_mutex_unlock(&st->mu);
    stop_all(st);
    tt_loop_run(st->loop, TT_RUN_NOWAIT);
    cli_signals_restore();
    err = cli_writer_finish(st->out, cli_signal_caught() != 0,
                            cli_signal_caught() ? STDOUT_GIVE_UP_MS : 0);
    if (err < 0 && err != -ETIMEDOUT && st->status == CLI_EXIT_OK)
        st->status = CLI_EXIT_FAIL;
    tt_loop_close(st->loop);
    if (cli_signal_caught())
        return 128 + cli_signal_caught();
    return st->status;
}

/* ---- shared with udp-echo ---------------------------------------------------------- */

/* Split "GROUP" or "GROUP,SOURCE" and check it names a multicast group. Returns 0
 * or -EINVAL after a usage message (with the Try line). */
static int parse_join(const char *cmd, const char *spec, tt_addr_t *g, tt_addr_t *s,
                      bool *has_source)
{
    char group[128], *source;

    if (strlen(spec) >= sizeof(group)) {
        cli_usage_error(cmd, "bad --join '%s': too long", spec);
        return -EINVAL;
    }
    strcpy(group, spec);
    source = strchr(group, ',');
    if (source != NULL)
        *source++ = '\0';
    if (tt_addr_parse(g, group, 0) < 0 || (source != NULL && tt_addr_parse(s, source, 0) < 0)) {
        cli_usage_error(cmd, "bad --join '%s': expected GROUP or GROUP,SOURCE (numeric)", spec);
        return -EINVAL;
    }
    bool mcast = g->u.sa.sa_family == AF_INET ? IN_MULTICAST(ntohl(g->u.in4.sin_addr.s_addr))
                                              : IN6_IS_ADDR_MULTICAST(&g->u.in6.sin6_addr);
    if (!mcast) {
        cli_usage_error(cmd, "bad --join '%s': %s is not a multicast group (224.0.0.0/4, "
                             "ff00::/8)", spec, group);
        return -EINVAL;
    }
    if (source != NULL && s->u.sa.sa_family != g->u.sa.sa_family) {
        cli_usage_error(cmd, "bad --join '%s': the group and the source are of different "
                             "families", spec);
        return -EINVAL;
    }
    *has_source = source != NULL;
    return 0;
}

int cli_udp_check_join(const char *cmd, const char *spec)
{
    tt_addr_t g, s;
    bool has_source;

    return parse_join(cmd, spec, &g, &s, &has_source);
}

int cli_udp_join_spec(const char *cmd, tt_udp_t *u, const char *spec, const char *iface)
{
    tt_addr_t g, s;
    bool has_source;
    int err;

    if (parse_join(cmd, spec, &g, &s, &has_source) < 0)
        return -EINVAL;
    err = has_source ? tt_udp_join_source(u, &g, &s, iface) : tt_udp_join(u, &g, iface);
    if (err < 0) {
        cli_error("join %s: %s", spec, tt_strerror(err));
        if (err == -EINVAL)
            err = -EIO; /* the text was good: the system said no (exit 1) */
    }
    return err;
}
