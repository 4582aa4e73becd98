/* tether chat --listen ADDR:PORT: a line-based chat server.
 *
 * Every line a client sends reaches every other client, prefixed with the sender's
 * address, and never the sender; joins and leaves are announced. Lines are framed
 * by tether's line codec (a bare "\n" or "\r\n", so nc, telnet and tether cat all
 * work), capped by --max-line. With --workers N the clients are spread over N
 * loops and lines cross loops through tt_workers_broadcast. SIGINT/SIGTERM shut
 * down gracefully: clients are told, ended, and the counts are printed.
 *
 * --ws ADDR adds a WebSocket listener to the same room: each text message from a
 * WebSocket client is a line for the others, each line reaches the WebSocket
 * clients as one text message without its newline. They are members of one group,
 * so a line is framed once for all of them. GET / without the upgrade headers
 * answers with the built-in page (chat_page.c), any other path 404. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_page.h"
#include "cli.h"
#include "cli_handoff.h"
#include "cli_tls.h"
#include "dashboard.h"

#define NAME_MAX_LEN (TT_ADDR_STRLEN + 2)
#define SHUTDOWN_MS 2000 /* graceful end for every client, then destroy */
#define CHAT_DEFAULT_LISTEN "127.0.0.1:7001"
#define CHAT_DEFAULT_MAX_LINE 4096UL
/* Slow-reader policy: a client whose send queue would hold more than this is
 * dropped (TT_CLOSE_SEND_OVERFLOW) instead of making the server hold every line
 * for it. A few MiB is minutes of ordinary chat. */
#define DEFAULT_MAX_QUEUE ((size_t)4 << 20)

/* --workers > 1. Each worker thread learns the set from on_start, before it
 * accepts anyone: tt_workers_start() only hands it to the main thread once every
 * worker is already listening, so a global written there would race with (and be
 * NULL for) the first clients' join notices. */
static __thread tt_workers_t *workers;
static cli_dash_t *dash;     /* --dashboard (single loop) */
static const char *dash_text, *dash_token;
static tt_addr_t dash_addr;
static tt_server_t *server;   /* single loop */
static tt_server_t *ws_server; /* --ws: the WebSocket listener */
static tt_group_t *ws_room;    /* --ws: its open clients, one frame for all */
static bool quiet;
static cli_tls_t tls; /* --tls-*: read again on SIGHUP */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tether chat [--listen ADDR:PORT] [OPTIONS]\n\n"
            "A line-based chat server: each line a client sends goes to every other\n"
            "client as \"[ADDR:PORT] line\"; joins and leaves are announced.\n\n"
            "  -l, --listen ADDR:PORT  where to listen (default %s); port 0 picks\n"
            "                          a free port\n"
            "      --max-line BYTES    longest line accepted (default %lu); a longer one\n"
            "                          closes that client (protocol limit)\n"
            "      --workers N         N loops on N threads (SO_REUSEPORT) (default 1)\n"
            "      --max-conns N       accept at most N clients at once; more wait\n"
            "                          (default: no limit)\n"
            "      --max-queue BYTES   drop a client that stops reading once the lines\n"
            "                          waiting for it hold this much memory (default 4M;\n"
            "                          suffixes K, M, G; 0: the library's 64M)\n"
            "      --admin SOCKET      serve the connection table for `tether stat`\n"
            "                          (default: none)\n"
            "      --metrics ADDR:PORT serve Prometheus metrics over HTTP (default: none)\n"
            "      --cluster redis://HOST:PORT[/CHANNEL]  one room across every node bound to\n"
            "                        the channel (default tether-chat), through Redis pub/sub\n"
            "      --ws ADDR:PORT      also listen for WebSocket clients there, in the same\n"
            "                          room (text messages, no newline); GET / without\n"
            "                          the upgrade serves a chat page (default: none;\n"
            "                          not with --workers). With the TLS options below it\n"
            "                          is wss:// too\n"
            CLI_PROXY_USAGE
            CLI_TLS_USAGE_SERVER
            CLI_HANDOFF_USAGE
            CLI_DASHBOARD_USAGE
            "  -q, --quiet             do not log joins and leaves on stderr (default:\n"
            "                          log them)\n"
            "  -h, --help              this text\n\n"
            "Prints 'tether chat: listening on ADDR:PORT' on stdout once listening, then\n"
            "with --ws 'tether chat: listening on ADDR:PORT (websocket)'.\n"
            "SIGINT or SIGTERM tells every client, ends the connections (destroying\n"
            "what is left after %d s) and exits 0.\n\n"
            "Exit status: 0 stopped by a signal, 1 could not listen (or stdout is\n"
            "closed), 2 bad usage.\n",
            CHAT_DEFAULT_LISTEN, CHAT_DEFAULT_MAX_LINE, SHUTDOWN_MS / 1000);
}

/* --max-queue: "4M", "512K", "0" (0: the library's default cap, 64 MiB). */
/* redis://HOST:PORT[/CHANNEL]; HOST numeric (IPv6 in brackets), CHANNEL default
 * tether-chat. */
static int parse_redis_url(const char *url, char *host, size_t hsize, uint16_t *port, char *chan,
                           size_t csize)
{
    static const char scheme[] = "redis://";
    char hp[128];
    tt_addr_t a;
    const char *rest, *slash;

    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return -EINVAL;
    rest = url + sizeof(scheme) - 1;
    slash = strchr(rest, '/');
    size_t hl = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
    if (hl == 0 || hl >= sizeof(hp))
        return -EINVAL;
    memcpy(hp, rest, hl);
    hp[hl] = '\0';
    if (tt_addr_parse_hostport(&a, hp) < 0 || tt_addr_is_unix(&a) || tt_addr_port(&a) == 0 ||
        tt_addr_format_host(&a, host, hsize) < 0)
        return -EINVAL;
    *port = tt_addr_port(&a);
    const char *ch = slash != NULL && slash[1] != '\0' ? slash + 1 : "tether-chat";
    if (strlen(ch) >= csize)
        return -EINVAL;
    snprintf(chan, csize, "%s", ch);
    return 0;
}

static int parse_queue_cap(const char *text, size_t *out)
{
    uint64_t v;
    if (cli_parse_size(text, &v) < 0 || (v != 0 && (v < TT_DEFAULT_HIGH_WATER || v > (1ULL << 40))))
        return -EINVAL;
    *out = (size_t)v;
    return 0;
}

/* Length of the well-formed UTF-8 sequence (RFC 3629) at s[0..n), 0 if it is not
 * one (overlong, surrogate, past U+10FFFF, cut short). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp, min;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1fu, min = 0x80;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, cp = s[0] & 0x0fu, min = 0x800;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07u, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : len;
}

static bool utf8_valid(const char *text, size_t len)
{
    for (size_t i = 0, n; i < len; i += n)
        if ((n = utf8_seq((const unsigned char *)text + i, len - i)) == 0)
            return false;
    return true;
}

/* Each byte that starts no well-formed sequence becomes '?'. */
static void utf8_fix(char *text, size_t len)
{
    for (size_t i = 0, n; i < len; i += n)
        if ((n = utf8_seq((const unsigned char *)text + i, len - i)) == 0) {
            text[i] = '?';
            n = 1;
        }
}

/* Send a line (ending in "\n") to everyone but `except`, on this loop or across all
 * workers. WebSocket clients get it as one text message without the newline, framed
 * once for the whole group. A text message must be UTF-8 (a browser drops the
 * connection on anything else) while a line client may send any bytes, so their
 * copy has each bad byte replaced with '?'. */
static void say_here(tt_conn_t *except, const char *text, size_t len);

/* --cluster: the other nodes' lines come through Redis to this node's clients. */
static tt_cluster_t *cluster;
static tt_group_t *cluster_room; /* no members: its broadcasts only publish */

static void from_other_node(tt_group_t *g, const void *buf, size_t len, void *arg)
{
    (void)g, (void)arg;
    if (len > 0 && ((const char *)buf)[len - 1] == '\n')
        say_here(NULL, buf, len);
}

static void say(tt_conn_t *except, const char *text, size_t len)
{
    say_here(except, text, len);
    if (cluster_room != NULL)
        tt_group_broadcast(cluster_room, text, len, except); /* published once */
}

static void say_here(tt_conn_t *except, const char *text, size_t len)
{
    if (workers != NULL) {
        tt_workers_broadcast(workers, text, len, except);
        return;
    }
    tt_server_broadcast(server, text, len, except);
    if (ws_room == NULL || tt_group_count(ws_room) == 0)
        return;
    len--; /* the newline */
    if (utf8_valid(text, len)) {
        tt_group_broadcast(ws_room, text, len, except);
        return;
    }
    char *fixed = malloc(len);
    if (fixed == NULL)
        return;
    memcpy(fixed, text, len);
    utf8_fix(fixed, len);
    tt_group_broadcast(ws_room, fixed, len, except);
    free(fixed);
}

static void on_open(tt_conn_t *c)
{
    tt_addr_t peer;
    char *name = malloc(NAME_MAX_LEN), line[NAME_MAX_LEN + 32];

    tt_peer_cred_t cred;

    if (name == NULL || tt_conn_peer_addr(c, &peer) < 0 ||
        tt_addr_format(&peer, name, NAME_MAX_LEN) < 0) {
        free(name);
        tt_destroy(c, 0);
        return;
    }
    /* Unix clients rarely bind a name: tell them apart by process. */
    if (strcmp(name, TT_UNIX_PREFIX) == 0 && tt_conn_peer_cred(c, &cred) == 0)
        snprintf(name, NAME_MAX_LEN, "unix:pid%d", (int)cred.pid);
    bool ws = tt_conn_is_websocket(c); /* on_open of the WebSocket listener: after the 101 */
    if (ws && tt_group_join(ws_room, c) < 0) {
        free(name);
        tt_destroy(c, 0);
        return;
    }
    tt_conn_set_data(c, name);
    int n = snprintf(line, sizeof(line), "* %s joined\n", name);
    say(c, line, (size_t)n);
    if (!quiet) {
        char desc[CLI_TLS_DESC_LEN];
        fprintf(stderr, "tether chat: %s joined%s%s\n", name, ws ? " (websocket)" : "",
                cli_tls_desc(c, desc));
    }
}

static void on_message(tt_conn_t *c, const void *msg, size_t len)
{
    const char *name = tt_conn_get_data(c);
    char stack[8192];
    char *buf = stack;

    bool ws = tt_conn_is_websocket(c);
    size_t nlen = strlen(name);

    /* telnet ends lines with "\r\n": the codec took the "\n", drop the "\r". */
    if (!ws && len > 0 && ((const char *)msg)[len - 1] == '\r')
        len--;
    size_t need = nlen + len + 4; /* "[" name "] " msg "\n" */
    if (need > sizeof(stack) && (buf = malloc(need)) == NULL)
        return;
    char *body = buf + nlen + 3;
    buf[0] = '[';
    memcpy(buf + 1, name, nlen);
    memcpy(buf + 1 + nlen, "] ", 2);
    if (len > 0)
        memcpy(body, msg, len);
    /* A WebSocket message is one line for the line clients, whatever it holds: a
     * newline inside would let its sender write a line that looks like another's. */
    for (size_t i = 0; ws && i < len; i++)
        if (body[i] == '\n' || body[i] == '\r')
            body[i] = ' ';
    body[len] = '\n';
    say(c, buf, need);
    if (buf != stack)
        free(buf);
}

static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    char *name = tt_conn_get_data(c);
    char line[NAME_MAX_LEN + 64];

    if (name == NULL) {
        /* Never joined: a balancer's header that was missing or bad. */
        if (!quiet && info->kind == TT_CLOSE_PROXY_ERROR) {
            char why[CLI_REASON_LEN];
            fprintf(stderr, "tether chat: #%" PRIu64 " refused: %s\n", tt_conn_id(c),
                    cli_close_reason(info, why));
        }
        return;
    }
    int n = snprintf(line, sizeof(line), "* %s left\n", name);
    say(NULL, line, (size_t)n); /* a closing connection takes no more sends anyway */
    if (!quiet) {
        const char *r = info->reason != NULL ? info->reason : "";
        fprintf(stderr, "tether chat: %s left (%s%s%s)\n", name, tt_close_kind_name(info->kind),
                r[0] != '\0' ? ": " : "", r);
    }
    free(name);
}

static const tt_conn_handlers_t handlers = {
    .on_open = on_open, .on_message = on_message, .on_close = on_close};

static void on_shutdown(tt_server_t *srv, size_t ended, size_t destroyed, void *arg)
{
    (void)arg;
    bool ws = srv == ws_server;
    fprintf(stderr, "tether chat: shut down%s: %zu ended, %zu destroyed\n",
            ws ? " (websocket)" : "", ended, destroyed);
    if (ws && ws_room != NULL) { /* every member has closed: the group goes last */
        tt_group_close(ws_room);
        ws_room = NULL;
    }
}

/* --ws: a request without the upgrade headers. The page on "/", nothing else. */
static void serve_http(tt_conn_t *c, const tt_http_request_t *req, tt_http_response_t *res,
                       void *arg)
{
    (void)c, (void)arg;
    if (!cli_http_one_page(req, res)) {
        /* Everything is inline and the script talks only to where the page came
         * from: the policy says so, so nothing else can be loaded into it. */
        res->status = 200;
        res->content_type = "text/html; charset=utf-8";
        res->headers = "Cache-Control: no-store\r\n"
                       "X-Content-Type-Options: nosniff\r\n"
                       "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
                       "style-src 'unsafe-inline'; connect-src 'self'; img-src data:\r\n";
        res->body = cli_chat_page;
        res->body_len = cli_chat_page_len;
    }
}

static const tt_addr_t *metrics_addr; /* --metrics */

static tt_admin_opts_t admin_opts(const char *admin_path)
{
    tt_admin_opts_t ao = {.unix_path = admin_path, .metrics_addr = metrics_addr};
    return ao;
}

/* Close what run_single opened, before anything ran. */
static bool stopping; /* single loop: the servers are shutting down */

/* SIGHUP: read the certificate files again, for both listeners. */
static void reload_single(void *arg)
{
    tt_server_t *srvs[2] = {server, ws_server};
    (void)arg;
    if (!stopping)
        cli_tls_reload(&tls, srvs, ws_server != NULL ? 2 : 1);
}

static void reload_workers(tt_workers_t *set) { cli_tls_reload_workers(&tls, set); }

static void close_early(tt_loop_t *loop, tt_admin_t *admin)
{
    cli_dash_close(dash);
    dash = NULL;
    if (admin != NULL)
        tt_admin_close(admin);
    if (ws_server != NULL)
        tt_server_close(ws_server);
    if (ws_room != NULL)
        tt_group_close(ws_room);
    ws_server = NULL;
    ws_room = NULL;
    if (cluster != NULL)
        tt_cluster_close(cluster);
    if (cluster_room != NULL)
        tt_group_close(cluster_room);
    cluster = NULL;
    cluster_room = NULL;
    tt_server_close(server);
    tt_loop_run(loop, TT_RUN_NOWAIT);
}

static const tt_cluster_opts_t *cluster_opts; /* --cluster */
static const char *cluster_channel;

/* --handoff / --takeover (the line listener first, then the WebSocket one). */
static const char *handoff_path, *takeover_path;
static int taken_fds[CLI_HANDOFF_MAX], takeover_link = -1;
static size_t taken_n;
static tt_loop_t *single_loop;

static void drained(tt_timer_t *t, void *arg)
{
    (void)arg;
    tt_timer_close(t);
    tt_loop_stop(single_loop); /* on to the graceful shutdown, as on SIGTERM */
}

/* Accept no more, give what is in flight a moment, then shut down. */
static void handed_over(void *arg)
{
    tt_timer_t *t;
    (void)arg;
    tt_server_stop_accepting(server);
    if (ws_server != NULL)
        tt_server_stop_accepting(ws_server);
    if (tt_timer_init(single_loop, &t, drained, NULL) < 0 ||
        tt_timer_start(t, CLI_HANDOFF_DRAIN_MS, 0) < 0)
        tt_loop_stop(single_loop);
}

static int listen_on(tt_loop_t *loop, size_t i, tt_addr_t *addr, const tt_server_opts_t *so,
                     tt_server_t **out)
{
    char text[TT_ADDR_STRLEN];
    int err = i < taken_n ? tt_server_listen_fd(loop, taken_fds[i], so, &handlers, NULL, out)
                          : tt_server_listen(loop, addr, so, &handlers, NULL, out);
    if (err < 0 && i < taken_n)
        cli_error("chat: --takeover %s: %s", takeover_path, tt_strerror(err));
    else if (err < 0)
        cli_listen_error(cli_addr_str(addr, text), addr, err);
    if (i < taken_n)
        taken_fds[i] = -1; /* the server's now, even on failure */
    return err;
}

static int run_single(tt_addr_t *addr, tt_server_opts_t *so, tt_addr_t *ws_addr,
                      const tt_server_opts_t *ws_so, const char *admin_path)
{
    cli_offer_t offer = {.cmd = "chat", .on_taken = handed_over};
    tt_loop_t *loop;
    tt_admin_t *admin = NULL;
    tt_addr_t bound;
    int err;

    err = tt_loop_init(&loop);
    if (err < 0) {
        cli_error("chat: %s", tt_strerror(err));
        return CLI_EXIT_FAIL;
    }
    single_loop = loop;
    err = listen_on(loop, 0, addr, so, &server);
    if (err < 0) {
        tt_loop_close(loop);
        return CLI_EXIT_FAIL;
    }
    if (ws_addr != NULL) {
        if ((err = tt_group_init(loop, "websocket", &ws_room)) < 0) {
            cli_error("chat: %s", tt_strerror(err));
            goto fail;
        }
        err = listen_on(loop, 1, ws_addr, ws_so, &ws_server);
        if (err < 0) {
            ws_server = NULL;
            goto fail;
        }
    }
    if (cluster_opts != NULL) {
        if ((err = tt_group_init(loop, "cluster", &cluster_room)) < 0 ||
            (err = tt_cluster_start(loop, cluster_opts, &cluster)) < 0 ||
            (err = tt_group_bind_cb(cluster_room, cluster, cluster_channel, from_other_node,
                                    NULL)) < 0) {
            cli_error("chat: --cluster: %s", tt_strerror(err));
            goto fail;
        }
    }
    if (admin_path != NULL || metrics_addr != NULL) {
        tt_admin_opts_t ao = admin_opts(admin_path);
        ao.cluster = cluster;
        err = tt_admin_start(server, &ao, &admin);
        if (err < 0) {
            admin = NULL;
            cli_admin_error("chat", &ao, err);
            goto fail;
        }
    }
    /* Signals first: SIGPIPE is ignored before the first line is printed. */
    err = cli_signals_install(loop);
    if (err == 0 && tls.on)
        err = cli_signals_on_hup(reload_single, NULL);
    if (err < 0) {
        cli_error("signals: %s", tt_strerror(err));
        goto fail;
    }
    tt_server_addr(server, &bound);
    if (cli_print_listening(stdout, &bound, tls.on ? " (tls)" : NULL) < 0)
        goto fail;
    if (ws_server != NULL) {
        tt_server_addr(ws_server, &bound);
        if (cli_print_listening(stdout, &bound, tls.on ? " (websocket, tls)" : " (websocket)") < 0)
            goto fail;
    }
    if (cli_print_metrics(admin) < 0)
        goto fail;
    if (dash_text != NULL &&
        cli_dash_start(loop, server, "chat", &dash_addr, dash_token, &dash) < 0)
        goto fail;
    if (takeover_link >= 0) {
        cli_takeover_ready("chat", takeover_path, takeover_link);
        takeover_link = -1;
    }
    int lfds[2] = {tt_server_fd(server), ws_server != NULL ? tt_server_fd(ws_server) : -1};
    if (handoff_path != NULL &&
        cli_offer_start(&offer, loop, handoff_path, lfds, ws_server != NULL ? 2 : 1) != 0)
        goto fail;
    tt_loop_run(loop, TT_RUN_DEFAULT); /* until SIGINT/SIGTERM, or handed over */
    cli_offer_close(&offer);

    say_here(NULL, "* server shutting down\n", 23); /* this node's clients only */
    if (cluster != NULL) {
        tt_cluster_close(cluster); /* unbinds the room */
        tt_group_close(cluster_room);
        cluster = NULL;
        cluster_room = NULL;
    }
    cli_dash_close(dash); /* it follows server: before server goes */
    dash = NULL;
    if (admin != NULL)
        tt_admin_close(admin);
    stopping = true;
    tt_server_shutdown(server, SHUTDOWN_MS, on_shutdown, NULL);
    if (ws_server != NULL) /* WebSocket clients get a close frame with 1001 */
        tt_server_shutdown(ws_server, SHUTDOWN_MS, on_shutdown, NULL);
    /* A second signal (timeout(1) sends one on) stops this run too: the shutdown
     * is under way and ends by its own deadline, so run on until it has. */
    while (tt_loop_run(loop, TT_RUN_DEFAULT) == 1)
        ;
    cli_signals_restore();
    err = tt_loop_close(loop);
    return err == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;

fail:
    cli_offer_close(&offer);
    if (takeover_link >= 0)
        close(takeover_link); /* the predecessor serves on */
    takeover_link = -1;
    for (size_t i = 0; i < taken_n; i++)
        if (taken_fds[i] >= 0)
            close(taken_fds[i]);
    taken_n = 0;
    close_early(loop, admin);
    cli_signals_restore(); /* nothing when it was not installed */
    tt_loop_close(loop);
    return CLI_EXIT_FAIL;
}

static void on_worker_start(tt_workers_t *set, unsigned index, tt_loop_t *loop, tt_server_t *srv,
                            void *arg)
{
    (void)index, (void)loop, (void)srv, (void)arg;
    workers = set; /* this worker thread's copy */
}

static void announce_shutdown(tt_workers_t *set)
{
    tt_workers_broadcast(set, "* server shutting down\n", 23, NULL);
}

int cmd_chat(int argc, char **argv)
{
    static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                         {"max-line", required_argument, NULL, 'L'},
                                         {"workers", required_argument, NULL, 'W'},
                                         {"max-conns", required_argument, NULL, 'M'},
                                         {"max-queue", required_argument, NULL, 'Q'},
                                         {"admin", required_argument, NULL, 'A'},
                                         {"metrics", required_argument, NULL, 'P'},
                                         {"ws", required_argument, NULL, 'w'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"cluster", required_argument, NULL, 'C'},
                                         {"handoff", required_argument, NULL, 'H'},
                                         {"takeover", required_argument, NULL, 'T'},
                                         {"proxy-protocol", required_argument, NULL, 'X'},
                                         {"help", no_argument, NULL, 'h'},
                                         CLI_TLS_LONGOPTS_SERVER,
                                         CLI_DASHBOARD_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    const char *listen_text = CHAT_DEFAULT_LISTEN, *admin_path = NULL, *ws_text = NULL;
    tt_server_opts_t so = {0};
    tt_frame_opts_t frame;
    unsigned long max_line = CHAT_DEFAULT_MAX_LINE, nworkers = 1, max_conns = 0;
    size_t max_queue = DEFAULT_MAX_QUEUE;
    tt_addr_t addr, maddr, ws_addr;
    tt_cluster_opts_t copts = {0};
    char chost[64], cchan[201];
    bool first = true, listen_given = false;
    int c;

    while ((c = cli_getopt("chat", argc, argv, ":l:qh", opts, &first)) != -1) {
        switch (c) {
        case 'l':
            listen_text = optarg;
            listen_given = true;
            break;
        case 'L':
            if (cli_parse_count("chat", "--max-line", optarg, TT_FRAME_MAX_LIMIT, &max_line) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'W':
            if (cli_parse_count("chat", "--workers", optarg, 256, &nworkers) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'M':
            if (cli_parse_count("chat", "--max-conns", optarg, 1UL << 30, &max_conns) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'Q':
            if (parse_queue_cap(optarg, &max_queue) < 0)
                return cli_usage_error("chat", "bad --max-queue '%s': expected 0 or %zu..%zu "
                                       "bytes (suffixes K, M, G)", optarg,
                                       (size_t)TT_DEFAULT_HIGH_WATER, (size_t)1 << 40);
            break;
        case 'A':
            admin_path = optarg;
            break;
        case 'P':
            if (cli_parse_addr("chat", optarg, false, &maddr) < 0)
                return CLI_EXIT_USAGE;
            metrics_addr = &maddr;
            break;
        case 'w':
            ws_text = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'H':
            handoff_path = optarg;
            break;
        case 'T':
            takeover_path = optarg;
            break;
        case 'C':
            if (parse_redis_url(optarg, chost, sizeof(chost), &copts.port, cchan,
                                sizeof(cchan)) < 0)
                return cli_usage_error("chat", "bad --cluster '%s': expected "
                                       "redis://HOST:PORT[/CHANNEL] (HOST numeric)", optarg);
            copts.host = chost;
            cluster_opts = &copts;
            cluster_channel = cchan;
            break;
        case 'X':
            if (cli_parse_proxy_mode("chat", optarg, &so.proxy) < 0)
                return CLI_EXIT_USAGE;
            break;
        case CLI_OPT_DASHBOARD:
            if (cli_dash_parse("chat", optarg, &dash_addr) < 0)
                return CLI_EXIT_USAGE;
            dash_text = optarg;
            break;
        case CLI_OPT_DASHBOARD_TOKEN:
            if (optarg[0] == '\0' || strpbrk(optarg, "&=#%+ ") != NULL)
                return cli_usage_error("chat", "--dashboard-token: letters, digits, '-', '_', '.'");
            dash_token = optarg;
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        default:
            if (CLI_IS_TLS_OPT(c)) {
                cli_tls_option(c, optarg, &tls);
                break;
            }
            return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc)
        return cli_usage_error("chat", "unexpected argument '%s'", argv[optind]);
    if (cli_parse_addr("chat", listen_text, false, &addr) < 0)
        return CLI_EXIT_USAGE;
    if (cli_tls_check("chat", true, &tls) != 0)
        return CLI_EXIT_USAGE;
    frame = tt_frame_line(max_line);
    so.frame = &frame;
    so.max_conns = max_conns;
    so.queue_cap = max_queue;
    /* The WebSocket listener: the same limits; a message is at most a line. */
    tt_ws_opts_t wso = {.max_message = max_line,
                        .deflate = true,
                        .default_kind = TT_WS_TEXT,
                        .http = serve_http};
    tt_server_opts_t ws_so = so;
    ws_so.frame = NULL;
    ws_so.websocket = &wso;
    if (ws_text != NULL) {
        if (nworkers > 1)
            return cli_usage_error("chat", "--ws works with one loop only (not with --workers)");
        if (cli_parse_addr("chat", ws_text, false, &ws_addr) < 0)
            return CLI_EXIT_USAGE;
    }
    if (dash_token != NULL && dash_text == NULL)
        return cli_usage_error("chat", "--dashboard-token needs --dashboard");
    if (nworkers > 1 && dash_text != NULL)
        return cli_usage_error("chat", "--dashboard works with one loop only (not with --workers)");
    if (nworkers > 1 && cluster_opts != NULL)
        return cli_usage_error("chat", "--cluster works with one loop only (not with --workers)");
    if (takeover_path != NULL && listen_given)
        return cli_usage_error("chat", "--takeover starts from a predecessor's listeners: "
                                       "no --listen");
    /* One context for both listeners (the WebSocket one is wss:// then). */
    if (cli_tls_make(&tls, &so.tls) < 0)
        return CLI_EXIT_FAIL;
    if (takeover_path != NULL &&
        cli_takeover("chat", takeover_path, taken_fds, CLI_HANDOFF_MAX, &taken_n,
                     &takeover_link) != CLI_EXIT_OK) {
        tt_tls_ctx_free(so.tls);
        return CLI_EXIT_FAIL;
    }
    /* A predecessor with --ws handed over two listeners (lines, then WebSocket):
     * its successor says --ws too (the address is then the inherited one). */
    if (takeover_path != NULL && ws_text != NULL && taken_n != 2) {
        cli_error("chat: --takeover %s: %zu listener(s) offered, --ws needs the line and the "
                  "WebSocket one", takeover_path, taken_n);
        close(takeover_link);
        for (size_t i = 0; i < taken_n; i++)
            close(taken_fds[i]);
        tt_tls_ctx_free(so.tls);
        return CLI_EXIT_FAIL;
    }
    if (takeover_path != NULL && ws_text == NULL && taken_n > 1)
        nworkers = taken_n; /* one worker for each of the predecessor's listeners */
    ws_so.tls = so.tls;
    if (nworkers > 1) {
        tt_admin_opts_t ao = admin_opts(admin_path);
        cli_workers_t w = {.cmd = "chat",
                           .count = (unsigned)nworkers,
                           .shutdown_ms = SHUTDOWN_MS,
                           .admin = admin_path != NULL || metrics_addr != NULL ? &ao : NULL,
                           .on_start = on_worker_start,
                           .before_stop = announce_shutdown,
                           .on_hup = tls.on ? reload_workers : NULL,
                           .suffix = tls.on ? " (tls)" : NULL,
                           .handoff = handoff_path,
                           .listen_fds = taken_n > 0 ? taken_fds : NULL,
                           .nfds = (unsigned)taken_n,
                           .takeover = takeover_path,
                           .link = takeover_link};
        int sig, status = cli_serve_workers(&w, &addr, &so, &handlers, &sig);
        if (status == CLI_EXIT_OK)
            fprintf(stderr, "tether chat: shut down (signal %d)\n", sig);
        tt_tls_ctx_free(so.tls);
        return status;
    }
    int status = run_single(&addr, &so, ws_text != NULL ? &ws_addr : NULL, &ws_so, admin_path);
    tt_tls_ctx_free(so.tls); /* after every connection that used it */
    return status;
}
