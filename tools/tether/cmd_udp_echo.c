/* `tether udp-echo`: a UDP echo server. Every datagram goes back to its sender,
 * whole (the receive slot is the largest datagram). Replies to one receive batch
 * leave together with sendmmsg(2); a reply refused for lack of buffer space is
 * dropped and counted, as a datagram service may. --join makes it a member of
 * multicast groups, so one echo answers every client of a group. SIGINT/SIGTERM
 * close the socket and print the totals with --verbose. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

#define DEFAULT_LISTEN "127.0.0.1:7000"
#define MAX_JOINS 16

typedef struct uecho {
    tt_udp_t *u;
    bool verbose;
    int status;
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
               "  -v, --verbose               one line per datagram, totals at exit\n"
               "  -h, --help                  this text\n"
               "\n"
               "Prints 'tether udp-echo: listening on ADDR:PORT' on stdout once bound.\n"
               "\n"
               "Exit status: 0 stopped by a signal, 1 could not bind or join, 2 bad usage.\n");
}

static void on_listening(tt_udp_t *u)
{
    char buf[TT_ADDR_STRLEN];
    tt_addr_t a;
    if (tt_udp_addr(u, &a) == 0) {
        printf("tether udp-echo: listening on %s\n", cli_addr_str(&a, buf));
        fflush(stdout);
    }
}

static void on_datagram(tt_udp_t *u, const void *data, size_t len, const tt_addr_t *from,
                        unsigned flags, size_t full)
{
    char buf[TT_ADDR_STRLEN];
    int r = tt_udp_send(u, data, len, from);

    if (g_uecho.verbose)
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

    while ((ch = cli_getopt("udp-echo", argc, argv, ":l:j:i:bvh", longopts, &first)) != -1) {
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
    o.reuseaddr = njoins > 0;

    err = tt_loop_init(&loop);
    if (err < 0) {
        cli_error("udp-echo: %s", tt_strerror(err));
        return CLI_EXIT_FAIL;
    }
    err = tt_udp_open(loop, &addr, &o, &h, st, &st->u);
    if (err < 0) {
        cli_error("udp-echo: bind %s: %s", where, tt_strerror(err));
        tt_loop_close(loop);
        return CLI_EXIT_FAIL;
    }
    for (int i = 0; i < njoins && st->status == CLI_EXIT_OK; i++) {
        err = cli_udp_join_spec("udp-echo", st->u, joins[i], iface);
        if (err < 0)
            st->status = err == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
    }
    if (st->status == CLI_EXIT_OK && (err = cli_signals_install(loop)) < 0) {
        cli_error("udp-echo: signals: %s", tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
    }
    if (st->status == CLI_EXIT_OK) {
        while (tt_loop_run(loop, TT_RUN_DEFAULT) == 1 && !cli_signal_caught())
            ;
        cli_signals_restore();
    }
    if (st->verbose) {
        tt_udp_stats_t s;
        if (tt_udp_get_stats(st->u, &s) == 0)
            fprintf(stderr,
                    "tether udp-echo: %" PRIu64 " datagrams in (%" PRIu64 " bytes, %" PRIu64
                    " truncated, %" PRIu64 " dropped by the kernel), %" PRIu64
                    " out, %" PRIu64 " refused, %" PRIu64 " recvmmsg, %" PRIu64 " send calls\n",
                    s.datagrams_in, s.bytes_in, s.truncated, s.kernel_drops, s.datagrams_out,
                    s.send_errors + s.refused, s.recv_calls, s.send_calls);
    }
    tt_udp_close(st->u);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    err = tt_loop_close(loop);
    if (err < 0 && st->status == CLI_EXIT_OK) {
        cli_error("udp-echo: closing the loop: %s", tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
    }
    return st->status;
}
