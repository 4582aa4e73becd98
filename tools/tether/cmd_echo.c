/* `tether echo`: an echo server. Every byte a client sends comes back to it; when a
 * client finishes sending (FIN), the server finishes too once the echo is flushed.
 * SIGINT/SIGTERM shut down gracefully: the listener closes, every connection is
 * ended (FIN after what is queued), those still open after 2 s are destroyed, and
 * it exits 0. --workers spreads clients over several loops. */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_handoff.h"
#include "cli_framing.h"
#include "cli_liveness.h"
#include "cli_tls.h"
#include "dashboard.h"

#define DEFAULT_LISTEN "127.0.0.1:7000"
#define SHUTDOWN_MS 2000

typedef struct echo {
    tt_server_t *srv;
    tt_admin_t *admin;
    cli_dash_t *dash;
    bool verbose;
    atomic_uint_fast64_t closed, abnormal; /* counted on every worker's thread */
} echo_t;

/* One process, one server: the handlers find the state here (accepted connections
 * start with user data NULL, and outlive the server's own pointer at shutdown). */
static echo_t g_echo;
static cli_tls_t g_tls; /* --tls-*: read again on SIGHUP */

static void usage(FILE *f)
{
    fprintf(f, "usage: tether echo [--listen ADDR:PORT] [--verbose] [--framing F] [--workers N]\n"
               "                   [--max-conns N] [--admin SOCKET] [--metrics ADDR:PORT] [--ws]\n"
               "                   [--tls-cert FILE --tls-key FILE [--tls-ca FILE]\n"
               "                    [--tls-verify-client] [--tls-alpn LIST]]\n"
               "                   [--handoff SOCKET] [--takeover SOCKET]\n"
               "                   [--dashboard ADDR [--dashboard-token T]]\n"
               "\n"
               "Echo server: sends back every byte it receives. When a client ends its\n"
               "side, the server ends its side after the echo is flushed.\n"
               "\n"
               "  -l, --listen ADDR:PORT  where to listen (default " DEFAULT_LISTEN ");\n"
               "                          port 0 picks a free port. ADDR is numeric IPv4,\n"
               "                          [IPv6], localhost, or empty (:PORT) for all\n"
               "                          addresses, IPv4 and IPv6\n"
               "  -v, --verbose           one line on stderr per connection opened/closed\n"
               "      --workers N         N loops on N threads sharing the port (SO_REUSEPORT)\n"
               "      --max-conns N       at most N clients at once (per worker); more wait\n"
               "                          in the kernel's backlog until one leaves\n"
               "      --admin SOCKET      serve the connection table for `tether stat`\n"
               "      --metrics ADDR:PORT serve Prometheus metrics over HTTP\n"
               CLI_PROXY_USAGE
               "      --ws                speak WebSocket (RFC 6455, permessage-deflate): each\n"
               "                          message comes back with its kind (text or binary);\n"
               "                          the listening line ends with ' (websocket)'\n"
               CLI_TLS_USAGE_SERVER
               CLI_HANDOFF_USAGE
               CLI_DASHBOARD_USAGE
               CLI_LIVENESS_USAGE
               CLI_FRAMING_USAGE_ECHO
               "  -h, --help              this text\n"
               "\n"
               "Prints 'tether echo: listening on ADDR:PORT' on stdout once listening (the\n"
               "actual port when 0 was asked). SIGINT or SIGTERM closes the listener, ends\n"
               "every connection, destroys what is still open after 2 s, then exits 0.\n"
               "\n"
               "Exit status: 0 stopped by a signal, 1 could not listen, 2 bad usage.\n");
}

static void on_open(tt_conn_t *c)
{
    if (g_echo.verbose) {
        char buf[TT_ADDR_STRLEN], cred[CLI_CRED_LEN], tls[CLI_TLS_DESC_LEN];
        tt_addr_t peer;
        if (tt_conn_peer_addr(c, &peer) < 0)
            peer.len = 0;
        fprintf(stderr, "tether echo: #%" PRIu64 " open from %s%s%s\n", tt_conn_id(c),
                peer.len ? cli_addr_str(&peer, buf) : "?", cli_cred_str(c, cred),
                cli_tls_desc(c, tls));
    }
}

static void on_data(tt_conn_t *c, const void *data, size_t len, size_t pending)
{
    (void)pending;
    /* Backpressure: a client that sends but does not read must not grow our queue
     * without bound; stop reading it until its queue drains. */
    if (tt_send(c, data, len) == TT_SEND_FULL)
        tt_conn_read_stop(c);
}

/* --framing: each whole message goes back with its own header or delimiter;
 * --ws: with its kind. */
static void on_message(tt_conn_t *c, const void *msg, size_t len)
{
    tt_ws_kind_t kind = tt_conn_message_kind(c);
    int r = kind != 0 ? tt_ws_send(c, kind, msg, len) : tt_send_message(c, msg, len);
    if (r == TT_SEND_FULL)
        tt_conn_read_stop(c);
}

static void on_drain(tt_conn_t *c) { tt_conn_read_start(c); }

static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    bool graceful = info->kind == TT_CLOSE_PEER_CLOSED || info->kind == TT_CLOSE_LOCAL_END ||
                    info->kind == TT_CLOSE_LOCAL_DESTROY || info->kind == TT_CLOSE_WS_CLOSED;

    atomic_fetch_add(&g_echo.closed, 1);
    if (!graceful)
        atomic_fetch_add(&g_echo.abnormal, 1);
    if (g_echo.verbose) {
        tt_conn_stats_t st;
        char why[CLI_REASON_LEN], cred[CLI_CRED_LEN];
        tt_conn_get_stats(c, &st);
        char code[48] = "";
        if (info->ws_code != 0) /* WebSocket: the peer's close code */
            snprintf(code, sizeof(code), " (code %d)", info->ws_code);
        fprintf(stderr, "tether echo: #%" PRIu64 " closed: %s%s, %" PRIu64 " bytes in, %" PRIu64
                " out%s\n", st.id, cli_close_reason(info, why), code, st.bytes_in,
                info->bytes_written, cli_cred_str(c, cred));
    }
}

static void on_shutdown(tt_server_t *srv, size_t ended, size_t destroyed, void *arg)
{
    (void)srv, (void)arg;
    if (g_echo.verbose)
        fprintf(stderr, "tether echo: shut down: %zu ended, %zu destroyed\n", ended, destroyed);
}

/* SIGHUP: read the certificate files again. */
static void reload_single(void *arg)
{
    (void)arg;
    if (g_echo.srv != NULL)
        cli_tls_reload(&g_tls, &g_echo.srv, 1);
}

static void reload_workers(tt_workers_t *set) { cli_tls_reload_workers(&g_tls, set); }

static void shutdown_all(void);

static void drained(tt_timer_t *t, void *arg)
{
    (void)arg;
    tt_timer_close(t);
    if (g_echo.admin != NULL) {
        tt_admin_close(g_echo.admin);
        g_echo.admin = NULL;
    }
    shutdown_all();
}

/* --handoff: a successor serves on our listeners. Accept no more, give what is
 * in flight a moment, then finish what is open and go. */
static void handed_over(void *arg)
{
    tt_timer_t *t;
    (void)arg;
    if (g_echo.srv == NULL)
        return;
    tt_server_stop_accepting(g_echo.srv);
    if (tt_timer_init(tt_server_loop(g_echo.srv), &t, drained, NULL) < 0 ||
        tt_timer_start(t, CLI_HANDOFF_DRAIN_MS, 0) < 0)
        drained(t, NULL);
}

/* Graceful shutdown of the single-loop server. Idempotent: a second signal during
 * shutdown finds nothing left to do (the deadline destroys stragglers). */
static void shutdown_all(void)
{
    tt_server_t *srv = g_echo.srv;

    cli_dash_close(g_echo.dash); /* it follows srv: before srv goes */
    g_echo.dash = NULL;
    if (srv == NULL)
        return;
    g_echo.srv = NULL;
    if (tt_server_shutdown(srv, SHUTDOWN_MS, on_shutdown, NULL) < 0)
        tt_server_close(srv);
}

int cmd_echo(int argc, char **argv)
{
    static const struct option longopts[] = {{"listen", required_argument, NULL, 'l'},
                                             {"verbose", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"workers", required_argument, NULL, 'W'},
                                             {"max-conns", required_argument, NULL, 'M'},
                                             {"admin", required_argument, NULL, 'A'},
                                             {"metrics", required_argument, NULL, 'P'},
                                             {"ws", no_argument, NULL, 'w'},
                                             {"proxy-protocol", required_argument, NULL, 'X'},
                                             {"handoff", required_argument, NULL, 'H'},
                                             {"takeover", required_argument, NULL, 'T'},
                                             CLI_LIVENESS_LONGOPTS,
                                             CLI_FRAMING_LONGOPTS,
                                             CLI_TLS_LONGOPTS_SERVER,
                                             CLI_DASHBOARD_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    cli_liveness_t lv = {0};
    cli_framing_t fr = {0};
    const tt_conn_handlers_t h = {
        .on_open = on_open, .on_data = on_data, .on_drain = on_drain, .on_close = on_close,
        .on_message = on_message};
    const char *listen = DEFAULT_LISTEN, *handoff = NULL, *takeover = NULL;
    bool listen_given = false;
    int fds[CLI_HANDOFF_MAX], link = -1;
    size_t nfds = 0;
    cli_offer_t offer = {.cmd = "echo", .on_taken = handed_over};
    tt_loop_t *loop;
    tt_addr_t addr, maddr, daddr;
    const char *dash_text = NULL, *dash_token = NULL;
    tt_admin_opts_t ao = {0};
    tt_admin_t *admin = NULL;
    unsigned long workers = 1, max_conns = 0;
    bool first = true, ws = false;
    tt_proxy_mode_t proxy = TT_PROXY_OFF;
    int ch, err, status = CLI_EXIT_OK;

    while ((ch = cli_getopt("echo", argc, argv, ":l:vh", longopts, &first)) != -1) {
        switch (ch) {
        case 'l':
            listen = optarg;
            listen_given = true;
            break;
        case 'H':
            handoff = optarg;
            break;
        case 'T':
            takeover = optarg;
            break;
        case 'v':
            g_echo.verbose = true;
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        case 'W':
            if (cli_parse_count("echo", "--workers", optarg, 256, &workers) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'M':
            if (cli_parse_count("echo", "--max-conns", optarg, 1UL << 30, &max_conns) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'A':
            ao.unix_path = optarg;
            break;
        case 'w':
            ws = true;
            break;
        case 'X':
            if (cli_parse_proxy_mode("echo", optarg, &proxy) < 0)
                return CLI_EXIT_USAGE;
            break;
        case 'P':
            if (cli_parse_addr("echo", optarg, false, &maddr) < 0)
                return CLI_EXIT_USAGE;
            ao.metrics_addr = &maddr;
            break;
        case CLI_OPT_DASHBOARD:
            if (cli_dash_parse("echo", optarg, &daddr) < 0)
                return CLI_EXIT_USAGE;
            dash_text = optarg;
            break;
        case CLI_OPT_DASHBOARD_TOKEN:
            if (optarg[0] == '\0' || strpbrk(optarg, "&=#%+ ") != NULL)
                return cli_usage_error("echo", "--dashboard-token: letters, digits, '-', '_', '.'");
            dash_token = optarg;
            break;
        case CLI_OPT_IDLE_TIMEOUT:
        case CLI_OPT_HEARTBEAT:
        case CLI_OPT_DETECT_WITHIN:
            if (cli_liveness_option("echo", ch, optarg, &lv) != 0)
                return CLI_EXIT_USAGE;
            break;
        case CLI_OPT_FRAMING:
        case CLI_OPT_MAX_FRAME:
            if (cli_framing_option("echo", ch, optarg, false, &fr) != 0)
                return CLI_EXIT_USAGE;
            break;
        default:
            if (CLI_IS_TLS_OPT(ch)) {
                cli_tls_option(ch, optarg, &g_tls);
                break;
            }
            return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return cli_usage_error("echo", "unexpected argument '%s'", argv[optind]);
    if (cli_parse_addr("echo", listen, false, &addr) < 0)
        return CLI_EXIT_USAGE;
    if (cli_tls_check("echo", true, &g_tls) != 0)
        return CLI_EXIT_USAGE;
    if (dash_token != NULL && dash_text == NULL)
        return cli_usage_error("echo", "--dashboard-token needs --dashboard");
    if (dash_text != NULL && workers > 1)
        return cli_usage_error("echo", "--dashboard works with one loop only (not with --workers)");

    tt_ws_opts_t wso = {.deflate = true};
    tt_server_opts_t so = {.liveness = cli_liveness_opts(&lv),
                           .frame = cli_framing_opts(&fr),
                           .max_conns = max_conns,
                           .websocket = ws ? &wso : NULL,
                           .proxy = proxy};
    if (ws && so.frame != NULL)
        return cli_usage_error("echo", "--ws and --framing exclude each other");
    if (takeover != NULL && listen_given)
        return cli_usage_error("echo", "--takeover starts from a predecessor's listeners: "
                                       "no --listen");
    if (cli_tls_make(&g_tls, &so.tls) < 0)
        return CLI_EXIT_FAIL;
    /* From here on the predecessor serves until we tell it we do. */
    if (takeover != NULL &&
        cli_takeover("echo", takeover, fds, CLI_HANDOFF_MAX, &nfds, &link) != CLI_EXIT_OK) {
        tt_tls_ctx_free(so.tls);
        return CLI_EXIT_FAIL;
    }
    if (nfds > 1)
        workers = nfds; /* one worker for each of the predecessor's listeners */
    const char *suffix = ws ? (g_tls.on ? " (websocket, tls)" : " (websocket)")
                            : (g_tls.on ? " (tls)" : NULL);
    bool serve_admin = ao.unix_path != NULL || ao.metrics_addr != NULL;
    if (workers > 1) {
        cli_workers_t w = {.cmd = "echo", .count = (unsigned)workers,
                           .shutdown_ms = SHUTDOWN_MS, .admin = serve_admin ? &ao : NULL,
                           .suffix = suffix, .on_hup = g_tls.on ? reload_workers : NULL,
                           .handoff = handoff, .listen_fds = nfds > 0 ? fds : NULL,
                           .nfds = (unsigned)nfds, .takeover = takeover, .link = link};
        int sig;
        status = cli_serve_workers(&w, &addr, &so, &h, &sig);
        tt_tls_ctx_free(so.tls);
        if (status == CLI_EXIT_OK && g_echo.verbose)
            fprintf(stderr, "tether echo: stopped by signal %d; %" PRIu64 " connections closed\n",
                    sig, (uint64_t)atomic_load(&g_echo.closed));
        return status;
    }

    err = tt_loop_init(&loop);
    if (err < 0) {
        cli_error("echo: %s", tt_strerror(err));
        tt_tls_ctx_free(so.tls);
        return CLI_EXIT_FAIL;
    }
    err = nfds > 0 ? tt_server_listen_fd(loop, fds[0], &so, &h, NULL, &g_echo.srv)
                   : tt_server_listen(loop, &addr, &so, &h, NULL, &g_echo.srv);
    if (err < 0) {
        if (nfds > 0)
            cli_error("echo: --takeover %s: %s", takeover, tt_strerror(err));
        else
            cli_listen_error(listen, &addr, err);
        if (link >= 0)
            close(link); /* the predecessor serves on */
        tt_loop_close(loop);
        tt_tls_ctx_free(so.tls);
        return CLI_EXIT_FAIL;
    }
    if (serve_admin && (err = tt_admin_start(g_echo.srv, &ao, &admin)) < 0) {
        cli_admin_error("echo", &ao, err);
        tt_server_close(g_echo.srv);
        tt_loop_run(loop, TT_RUN_NOWAIT);
        tt_loop_close(loop);
        tt_tls_ctx_free(so.tls);
        return CLI_EXIT_FAIL;
    }
    err = cli_signals_install(loop);
    if (err == 0 && g_tls.on)
        err = cli_signals_on_hup(reload_single, NULL);
    if (err < 0) {
        cli_error("echo: signals: %s", tt_strerror(err));
        shutdown_all();
        status = CLI_EXIT_FAIL;
    } else {
        tt_server_addr(g_echo.srv, &addr);
        /* stdout is gone (or the dashboard could not start, said already): exit 1 */
        if (cli_print_listening(stdout, &addr, suffix) < 0 || cli_print_metrics(admin) < 0 ||
            (dash_text != NULL &&
             cli_dash_start(loop, g_echo.srv, "echo", &daddr, dash_token, &g_echo.dash) < 0)) {
            if (admin != NULL) {
                tt_admin_close(admin);
                admin = NULL;
            }
            if (link >= 0)
                close(link);
            shutdown_all();
            status = CLI_EXIT_FAIL;
        } else {
            if (link >= 0)
                cli_takeover_ready("echo", takeover, link);
            int lfd = tt_server_fd(g_echo.srv);
            g_echo.admin = admin;
            if (handoff != NULL && cli_offer_start(&offer, loop, handoff, &lfd, 1) != CLI_EXIT_OK) {
                if (admin != NULL)
                    tt_admin_close(admin);
                g_echo.admin = admin = NULL;
                shutdown_all();
                status = CLI_EXIT_FAIL;
            }
        }
    }

    /* Runs until a signal stops it (the server keeps the loop alive); then shut
     * down and run again to deliver every on_close. */
    while (tt_loop_run(loop, TT_RUN_DEFAULT) == 1) {
        if (g_echo.admin != NULL) {
            tt_admin_close(g_echo.admin);
            g_echo.admin = NULL;
        }
        cli_offer_close(&offer);
        shutdown_all();
    }
    cli_offer_close(&offer);
    cli_signals_restore();
    err = tt_loop_close(loop);
    tt_tls_ctx_free(so.tls); /* after every connection that used it */
    if (err < 0) {
        cli_error("echo: closing the loop: %s", tt_strerror(err));
        return CLI_EXIT_FAIL;
    }
    if (g_echo.verbose)
        fprintf(stderr, "tether echo: stopped by signal %d; %" PRIu64 " connections closed\n",
                cli_signal_caught(), (uint64_t)atomic_load(&g_echo.closed));
    return status;
}
