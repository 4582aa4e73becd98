/* `tether cat`: stdin to a TCP socket, the socket to stdout, like nc.
 *
 * Client (`tether cat ADDR:PORT`) or server for one connection (`--listen`: the
 * listener is closed as soon as one client is accepted). Stdin goes with
 * tt_send_file(fd 0, TT_FILE_TO_EOF, TT_FILE_THEN_END): a regular file is sent with
 * sendfile(2), a pipe/terminal/socket is read as it becomes readable, and at its
 * end our side is half-closed (FIN). Bytes from the peer go to stdout through a
 * writer thread (writer.h), so a slow stdout pauses reading from the socket
 * (tt_conn_read_stop) instead of blocking the loop. The tool exits when both
 * directions are finished: our FIN sent and the peer's FIN received.
 *
 * WebSocket (`tether cat ws://HOST:PORT/PATH`): stdin is read line by line on a
 * thread of its own (any kind of stdin, blocking reads) and each line goes as a
 * text message (binary when it is not UTF-8); each message received goes to
 * stdout followed by a newline. At the end of stdin a close frame with 1000 is
 * sent, and the tool exits once the server has answered it. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cli_framing.h"
#include "cli_liveness.h"
#include "cli_tls.h"
#include "writer.h"

#define DEFAULT_TIMEOUT_MS 10000
/* Socket bytes waiting for stdout before reading pauses. */
#define STDOUT_HIGH_WATER ((size_t)1 << 20)
/* How long to wait at exit for a stdout reader that stopped reading. */
#define STDOUT_GIVE_UP_MS 2000

typedef struct cat {
    tt_loop_t *loop;
    tt_server_t *srv;  /* --listen, until the first client is accepted */
    tt_conn_t *conn;   /* the one connection, until its on_close */
    cli_writer_t *out; /* stdout */
    const char *where; /* the address as the user typed it, for messages */
    bool listening;
    bool verbose;
    bool ws;         /* a ws:// URL */
    bool ws_full;    /* the send queue passed its high-water mark: wait for on_drain */
    bool ws_closing; /* stdin ended: our close frame is sent */
    int status; /* exit status so far */
} cat_t;

static cat_t g_cat;
static cli_liveness_t g_cat_live; /* --idle-timeout, --heartbeat, --detect-within */
static cli_framing_t g_cat_frame; /* --framing, --max-frame */
static cli_tls_t g_cat_tls;       /* --tls, --tls-* */

static void usage(FILE *f)
{
    fprintf(f, "usage: tether cat [options] ADDR:PORT\n"
               "       tether cat [options] --listen ADDR:PORT\n"
               "       tether cat [options] ws://HOST[:PORT][/PATH]\n"
               "\n"
               "Copy stdin to a TCP connection and the connection to stdout. At the end of\n"
               "stdin our side is half-closed (FIN); the tool exits once the peer has\n"
               "closed its side too and everything it sent is on stdout.\n"
               "\n"
               "With a ws:// URL, a WebSocket client: each stdin line is a text message\n"
               "(binary if it is not UTF-8), each message received is written to stdout\n"
               "with a newline; at the end of stdin a close (1000) is sent and the tool\n"
               "exits once the server has answered it. wss:// is the same over TLS.\n"
               "\n"
               "  -l, --listen ADDR:PORT  accept one connection there instead of\n"
               "                          connecting (then stop listening); port 0 picks\n"
               "                          a free port. 'tether cat: listening on ADDR'\n"
               "                          goes to stderr\n"
               "  -w, --timeout SECONDS   connect timeout (default %d; 0: the kernel's)\n"
               "  -v, --verbose           connection events on stderr\n"
               CLI_LIVENESS_USAGE
               CLI_FRAMING_USAGE_CAT
               "      --send-proxy V      send a PROXY protocol header of version V (v1\n"
               "                          or v2) first, as a load balancer would\n"
               "      --proxy-source ADDR:PORT  the client the header names (default:\n"
               "                          our own address); the destination is always\n"
               "                          the address connected to\n"
               CLI_TLS_USAGE_CAT
               "      --udp               datagrams instead (see 'tether cat --udp --help')\n"
               "  -h, --help              this text\n"
               "\n"
               "To connect, ADDR is IPv4, [IPv6] or a host name (resolved without blocking);\n"
               "with --listen it is numeric, localhost, or empty (:PORT) for all addresses.\n"
               "A regular file on stdin is sent with sendfile(2). Over TLS the end of stdin\n"
               "sends close_notify, and the peer's close_notify is its clean end (a FIN\n"
               "without it is 'tls truncated', exit 1).\n"
               "\n"
               "Exit status: 0 both sides closed cleanly, 1 connection or I/O error (a\n"
               "one-line message on stderr), 2 bad usage, 128+N stopped by signal N.\n",
            DEFAULT_TIMEOUT_MS / 1000);
}

/* ---- stdout ------------------------------------------------------------------- */

static void out_low(void *arg)
{
    cat_t *st = arg;
    if (st->conn != NULL)
        tt_conn_read_start(st->conn);
}

static void out_error(void *arg, int err)
{
    cat_t *st = arg;
    cli_error("write stdout: %s", tt_strerror(err));
    st->status = CLI_EXIT_FAIL;
    if (st->conn != NULL)
        tt_destroy(st->conn, 0);
}

/* ---- the connection ----------------------------------------------------------- */

/* Queue all of stdin, then our FIN. */
static int send_stdin(tt_conn_t *c)
{
    struct stat sb;
    uint64_t off = 0;

    if (fstat(STDIN_FILENO, &sb) < 0)
        return -errno;
    if (S_ISREG(sb.st_mode)) {
        /* Start where the file position is, as cat(1) does for `(head -1; cat) <f`. */
        off_t pos = lseek(STDIN_FILENO, 0, SEEK_CUR);
        off = pos > 0 ? (uint64_t)pos : 0;
    }
    int r = tt_send_file(c, STDIN_FILENO, off, TT_FILE_TO_EOF, TT_FILE_THEN_END);
    return r < 0 ? r : 0;
}

static void on_open(tt_conn_t *c)
{
    cat_t *st = &g_cat;
    char buf[TT_ADDR_STRLEN];
    tt_addr_t peer;
    int err;

    if (st->conn != NULL && st->conn != c) {
        /* --listen over TLS: another client finished its handshake first. */
        tt_destroy(c, 0);
        return;
    }
    st->conn = c;
    if (st->srv != NULL) {
        /* One connection only: stop listening now (pending clients are refused). */
        tt_server_close(st->srv);
        st->srv = NULL;
    }
    if (st->verbose && tt_conn_peer_addr(c, &peer) == 0) {
        char cred[CLI_CRED_LEN], tls[CLI_TLS_DESC_LEN];
        fprintf(stderr, "tether cat: %s %s%s%s\n",
                st->listening ? "connection from" : "connected to", cli_addr_str(&peer, buf),
                cli_cred_str(c, cred), cli_tls_desc(c, tls));
    }
    /* The peer may take as long as it likes to answer after our FIN. */
    tt_conn_set_linger(c, 0);
    /* Before any byte is read: on_open comes first. */
    if (cli_framing_opts(&g_cat_frame) != NULL &&
        (err = tt_conn_set_framing(c, cli_framing_opts(&g_cat_frame))) < 0) {
        cli_error("framing: %s", tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
        tt_destroy(c, 0);
        return;
    }
    if (cli_liveness_opts(&g_cat_live) != NULL &&
        (err = tt_conn_set_liveness(c, cli_liveness_opts(&g_cat_live))) < 0)
        cli_error("liveness: %s", tt_strerror(err)); /* carry on without it */
    err = send_stdin(c);
    if (err < 0) {
        cli_error("stdin: %s", tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
        tt_destroy(c, 0);
    }
}

static void on_data(tt_conn_t *c, const void *data, size_t len, size_t pending)
{
    int r = cli_writer_push(g_cat.out, data, len);
    (void)pending;
    if (r == 1)
        tt_conn_read_stop(c); /* stdout is behind: out_low resumes */
    else if (r < 0 && r != -ENOMEM)
        tt_conn_read_stop(c); /* stdout failed: out_error destroys the connection */
    else if (r == -ENOMEM)
        out_error(&g_cat, r);
}

/* --framing: one line of output per message, whatever ended it on the wire. */
static void on_message(tt_conn_t *c, const void *msg, size_t len)
{
    on_data(c, msg, len, 0);
    if (tt_conn_state(c) < TT_STATE_CLOSING) /* stdout may have failed meanwhile */
        on_data(c, "\n", 1, 0);
}

static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    cat_t *st = &g_cat;
    char why[CLI_REASON_LEN];

    if (c != st->conn) {
        /* --listen over TLS: a client that never finished its handshake, or one that
         * came second. Said, but it is not the connection the command is about. */
        if (info->kind != TT_CLOSE_LOCAL_DESTROY) /* its address is gone with its socket */
            fprintf(stderr, "tether cat: client #%llu: %s%s\n",
                    (unsigned long long)tt_conn_id(c), cli_close_reason(info, why),
                    st->srv != NULL ? " (still listening)" : "");
        return;
    }
    st->conn = NULL;
    switch (info->kind) {
    case TT_CLOSE_PEER_CLOSED:
    case TT_CLOSE_LOCAL_END:
        break;
    case TT_CLOSE_LOCAL_DESTROY:
        break; /* we destroyed it, and said why then */
    case TT_CLOSE_CONNECT_FAILED:
        cli_error("connect %s: %s", st->where, tt_strerror(info->error));
        st->status = CLI_EXIT_FAIL;
        break;
    case TT_CLOSE_CONNECT_TIMEOUT:
        cli_error("connect %s: %s", st->where, tt_strerror(-ETIMEDOUT));
        st->status = CLI_EXIT_FAIL;
        break;
    default:
        /* Over TLS the name verified is part of the story ("hostname mismatch"). */
        if (g_cat_tls.servername != NULL && !st->listening)
            cli_error("%s (as %s): %s", st->where, g_cat_tls.servername,
                      cli_close_reason(info, why));
        else
            cli_error("%s: %s", st->where, cli_close_reason(info, why));
        st->status = CLI_EXIT_FAIL;
        break;
    }
    if (st->verbose) {
        char cred[CLI_CRED_LEN];
        fprintf(stderr, "tether cat: closed (%s), %llu bytes sent%s\n",
                cli_close_reason(info, why), (unsigned long long)info->bytes_written,
                cli_cred_str(c, cred));
    }
}

/* ---- ws:// ------------------------------------------------------------------------ */

/* stdin lines, from the reading thread to the loop. The thread blocks while more
 * than IN_HIGH_WATER bytes wait here; the loop stops taking them while the
 * connection's send queue is over its high-water mark (until on_drain). */
#define IN_HIGH_WATER ((size_t)1 << 20)

typedef struct line {
    struct line *next;
    size_t len;
    char text[];
} line_t;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    line_t *head, *tail;
    size_t bytes;
    bool eof, posted, stop;
    int err;
} g_in = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0, false, false,
          false, 0};

static void ws_drain(cat_t *st);

static void in_ready(tt_loop_t *loop, void *arg)
{
    (void)loop, (void)arg;
    pthread_mutex_lock(&g_in.mu);
    g_in.posted = false;
    pthread_mutex_unlock(&g_in.mu);
    ws_drain(&g_cat);
}

/* Under g_in.mu: tell the loop, once per batch (never after stop: the loop may be
 * gone). */
static void in_wake(void)
{
    if (!g_in.posted && !g_in.stop && tt_loop_post(g_cat.loop, in_ready, NULL) == 0)
        g_in.posted = true;
}

static void *stdin_main(void *arg)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    int err = 0;

    (void)arg;
    while ((n = getline(&buf, &cap, stdin)) >= 0) {
        if (n > 0 && buf[n - 1] == '\n')
            n--;
        line_t *l = malloc(sizeof(*l) + (size_t)n);
        if (l == NULL) {
            err = -ENOMEM;
            break;
        }
        l->next = NULL;
        l->len = (size_t)n;
        memcpy(l->text, buf, (size_t)n);
        pthread_mutex_lock(&g_in.mu);
        while (g_in.bytes > IN_HIGH_WATER && !g_in.stop)
            pthread_cond_wait(&g_in.cv, &g_in.mu);
        if (g_in.stop) {
            pthread_mutex_unlock(&g_in.mu);
            free(l);
            break;
        }
        if (g_in.tail != NULL)
            g_in.tail->next = l;
        else
            g_in.head = l;
        g_in.tail = l;
        g_in.bytes += l->len;
        in_wake();
        pthread_mutex_unlock(&g_in.mu);
    }
    if (err == 0 && ferror(stdin))
        err = -errno;
    free(buf);
    pthread_mutex_lock(&g_in.mu);
    g_in.eof = true;
    g_in.err = err;
    in_wake();
    pthread_mutex_unlock(&g_in.mu);
    return NULL;
}

/* Send the lines that wait, as long as the queue takes them; at the end of stdin,
 * the close frame. */
static void ws_drain(cat_t *st)
{
    while (st->conn != NULL && tt_conn_is_websocket(st->conn) && !st->ws_full &&
           !st->ws_closing) {
        pthread_mutex_lock(&g_in.mu);
        line_t *l = g_in.head;
        if (l != NULL) {
            g_in.head = l->next;
            if (g_in.head == NULL)
                g_in.tail = NULL;
            g_in.bytes -= l->len;
            pthread_cond_signal(&g_in.cv);
        }
        bool eof = g_in.eof;
        int err = g_in.err;
        pthread_mutex_unlock(&g_in.mu);
        if (l == NULL) {
            if (!eof)
                return;
            if (err < 0) {
                cli_error("read stdin: %s", tt_strerror(err));
                st->status = CLI_EXIT_FAIL;
            }
            st->ws_closing = true;
            err = tt_ws_close(st->conn, TT_WS_NORMAL, NULL);
            if (err < 0 && err != -EPIPE) /* -EPIPE: the server's close came first */
                tt_destroy(st->conn, 0);
            return;
        }
        int r = tt_ws_send(st->conn, TT_WS_TEXT, l->text, l->len);
        if (r == -EINVAL) /* not UTF-8: the bytes as they are */
            r = tt_ws_send(st->conn, TT_WS_BINARY, l->text, l->len);
        free(l);
        if (r == -EPIPE)
            return; /* the server closed first: on_close follows */
        if (r < 0) {
            cli_error("%s: send: %s", st->where, tt_strerror(r));
            st->status = CLI_EXIT_FAIL;
            tt_destroy(st->conn, 0);
            return;
        }
        if (r == TT_SEND_FULL)
            st->ws_full = true;
    }
}

static void ws_open(tt_conn_t *c)
{
    cat_t *st = &g_cat;
    char buf[TT_ADDR_STRLEN];
    tt_addr_t peer;
    int err;

    st->conn = c;
    if (st->verbose && tt_conn_peer_addr(c, &peer) == 0)
        fprintf(stderr, "tether cat: connected to %s (websocket%s%s%s)\n", cli_addr_str(&peer, buf),
                *tt_ws_protocol(c) ? ", protocol " : "", tt_ws_protocol(c),
                tt_ws_deflated(c) ? ", deflate" : "");
    if (cli_liveness_opts(&g_cat_live) != NULL &&
        (err = tt_conn_set_liveness(c, cli_liveness_opts(&g_cat_live))) < 0)
        cli_error("liveness: %s", tt_strerror(err)); /* carry on without it */
    ws_drain(st);
}

static void ws_on_drain(tt_conn_t *c)
{
    (void)c;
    g_cat.ws_full = false;
    ws_drain(&g_cat);
}

/* Errors of a WebSocket client, one line each. */
static void ws_close(tt_conn_t *c, const tt_close_info_t *info)
{
    cat_t *st = &g_cat;
    char why[CLI_REASON_LEN];

    st->conn = NULL;
    switch (info->kind) {
    case TT_CLOSE_WS_CLOSED:
        /* The server closing first with a code other than normal or going away
         * is its error to report. */
        if (!st->ws_closing && info->ws_code != TT_WS_NORMAL && info->ws_code != TT_WS_GOING_AWAY &&
            info->ws_code != TT_WS_NO_STATUS) {
            cli_error("%s: closed by the server: %d%s%s", st->where, info->ws_code,
                      *info->ws_reason ? " " : "", info->ws_reason);
            st->status = CLI_EXIT_FAIL;
        }
        break;
    case TT_CLOSE_LOCAL_DESTROY:
        break; /* we destroyed it, and said why then */
    case TT_CLOSE_CONNECT_FAILED:
        cli_error("connect %s: %s", st->where, tt_strerror(info->error));
        st->status = CLI_EXIT_FAIL;
        break;
    default:
        if (*info->reason != '\0' && info->detail > 0 && info->detail != 101)
            cli_error("connect %s: %s (HTTP %d)", st->where, info->reason, info->detail);
        else if (*info->reason != '\0')
            cli_error("connect %s: %s", st->where, info->reason);
        else if (info->kind == TT_CLOSE_CONNECT_TIMEOUT)
            cli_error("connect %s: %s", st->where, tt_strerror(-ETIMEDOUT));
        else if (info->ws_local_code != 0 && info->kind != TT_CLOSE_LINGER_TIMEOUT)
            cli_error("%s: %s (we closed with %d)", st->where, cli_close_reason(info, why),
                      info->ws_local_code);
        else
            cli_error("%s: %s", st->where, cli_close_reason(info, why));
        st->status = CLI_EXIT_FAIL;
        break;
    }
    if (st->verbose)
        fprintf(stderr, "tether cat: closed (%s), code %d from the server, %d from us\n",
                tt_close_kind_name(info->kind), info->ws_code, info->ws_local_code);
    (void)c;
}

static int ws_start(cat_t *st, const tt_connect_opts_t *copts)
{
    const tt_conn_handlers_t h = {.on_open = ws_open, .on_message = on_message,
                                  .on_drain = ws_on_drain, .on_close = ws_close};
    tt_ws_client_opts_t wo = {.connect = *copts, .default_kind = TT_WS_TEXT,
                              .read_after_close = true}; /* the answers to our last lines */
    pthread_t th;
    tt_conn_t *c;
    int err;

    /* The whole opening (lookup, connect, upgrade) within the connect timeout. */
    if (copts->timeout_ms > 0)
        wo.handshake_timeout_ms = copts->timeout_ms > UINT32_MAX ? UINT32_MAX
                                                                : (uint32_t)copts->timeout_ms;
    err = tt_ws_connect(st->loop, st->where, &wo, &h, NULL, &c);
    if (err == -EINVAL) {
        cli_usage_error("cat", "bad WebSocket URL '%s': expected ws://HOST[:PORT][/PATH]",
                        st->where);
        return err;
    }
    if (err < 0) {
        cli_error("connect %s: %s", st->where, tt_strerror(err));
        return err;
    }
    err = pthread_create(&th, NULL, stdin_main, NULL);
    if (err != 0) {
        cli_error("stdin reader: %s", strerror(err));
        tt_destroy(c, 0);
        return -err;
    }
    /* Never joined: it may sit in a read of a terminal when the server goes away. */
    pthread_detach(th);
    return 0;
}

/* The loop is about to go: the reader thread may no longer post to it. */
static void ws_stop(void)
{
    pthread_mutex_lock(&g_in.mu);
    g_in.stop = true;
    while (g_in.head != NULL) {
        line_t *l = g_in.head;
        g_in.head = l->next;
        free(l);
    }
    g_in.tail = NULL;
    g_in.bytes = 0;
    pthread_cond_broadcast(&g_in.cv);
    pthread_mutex_unlock(&g_in.mu);
}

/* ---- the command -------------------------------------------------------------- */

static void stop_all(cat_t *st)
{
    if (st->srv != NULL) {
        tt_server_close(st->srv);
        st->srv = NULL;
    }
    if (st->conn != NULL)
        tt_destroy(st->conn, 0);
}

int cmd_cat(int argc, char **argv)
{
    static const struct option longopts[] = {{"listen", required_argument, NULL, 'l'},
                                             {"timeout", required_argument, NULL, 'w'},
                                             {"verbose", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"send-proxy", required_argument, NULL, 'X'},
                                             {"proxy-source", required_argument, NULL, 'S'},
                                             CLI_LIVENESS_LONGOPTS,
                                             CLI_FRAMING_LONGOPTS,
                                             CLI_TLS_LONGOPTS_CLIENT,
                                             {NULL, 0, NULL, 0}};
    const tt_conn_handlers_t h = {.on_open = on_open, .on_data = on_data, .on_close = on_close,
                                  .on_message = on_message};
    const cli_writer_cbs_t wcbs = {.on_low = out_low, .on_error = out_error, .arg = &g_cat};
    cat_t *st = &g_cat;
    tt_connect_opts_t copts = {.timeout_ms = DEFAULT_TIMEOUT_MS};
    tt_server_opts_t so = {0};
    tt_tls_ctx_t *tls = NULL;
    tt_addr_t addr, proxy_src;
    char host[256];
    uint16_t port = 0;
    bool first = true;
    int ch, err, in_flags;

    /* Datagrams have their own options and loop (udp_cat.c). */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--udp") == 0)
            return cli_udp_cat(argc, argv);
    while ((ch = cli_getopt("cat", argc, argv, ":l:w:vh", longopts, &first)) != -1) {
        switch (ch) {
        case 'l':
            st->where = optarg;
            st->listening = true;
            break;
        case 'w':
            if (cli_parse_seconds(optarg, &copts.timeout_ms) < 0)
                return cli_usage_error("cat", "bad timeout '%s': expected seconds", optarg);
            break;
        case 'v':
            st->verbose = true;
            break;
        case 'X':
            if (strcmp(optarg, "v1") == 0)
                copts.send_proxy = 1;
            else if (strcmp(optarg, "v2") == 0)
                copts.send_proxy = 2;
            else
                return cli_usage_error("cat", "bad --send-proxy '%s': expected v1 or v2", optarg);
            break;
        case 'S':
            if (tt_addr_parse_hostport(&proxy_src, optarg) < 0 || tt_addr_is_unix(&proxy_src))
                return cli_usage_error("cat", "bad --proxy-source '%s': expected numeric "
                                       "IPv4:PORT or [IPv6]:PORT", optarg);
            copts.proxy_source = &proxy_src;
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        case CLI_OPT_IDLE_TIMEOUT:
        case CLI_OPT_HEARTBEAT:
        case CLI_OPT_DETECT_WITHIN:
            if (cli_liveness_option("cat", ch, optarg, &g_cat_live) != 0)
                return CLI_EXIT_USAGE;
            break;
        case CLI_OPT_FRAMING:
        case CLI_OPT_MAX_FRAME:
            if (cli_framing_option("cat", ch, optarg, true, &g_cat_frame) != 0)
                return CLI_EXIT_USAGE;
            break;
        default:
            if (CLI_IS_TLS_OPT(ch)) {
                cli_tls_option(ch, optarg, &g_cat_tls);
                break;
            }
            return CLI_EXIT_USAGE;
        }
    }
    if (!st->listening) {
        if (optind >= argc)
            return cli_usage_error("cat", "missing ADDR:PORT");
        st->where = argv[optind++];
        st->ws = strncasecmp(st->where, "ws://", 5) == 0 || strncasecmp(st->where, "wss://", 6) == 0;
    }
    if (optind < argc)
        return cli_usage_error("cat", "unexpected argument '%s'", argv[optind]);
    if (st->ws && cli_framing_opts(&g_cat_frame) != NULL)
        return cli_usage_error("cat", "--framing does not apply to a ws:// URL (WebSocket "
                                      "has its own)");
    if (copts.proxy_source != NULL && copts.send_proxy == 0)
        return cli_usage_error("cat", "--proxy-source needs --send-proxy");
    if (copts.send_proxy != 0 && st->listening)
        return cli_usage_error("cat", "--send-proxy is for connecting, not --listen");
    if (st->ws ? false
               : st->listening ? cli_parse_addr("cat", st->where, false, &addr) < 0
                               : cli_parse_host("cat", st->where, host, sizeof(host), &port) < 0)
        return CLI_EXIT_USAGE;
    if (cli_tls_check("cat", st->listening, &g_cat_tls) != 0)
        return CLI_EXIT_USAGE;
    if (cli_tls_make(&g_cat_tls, &tls) < 0)
        return CLI_EXIT_FAIL;
    so.tls = tls;
    copts.tls = tls;
    copts.tls_servername = g_cat_tls.servername; /* else the host name, as typed */

    /* tt_send_file makes a stream stdin non-blocking, and O_NONBLOCK belongs to the
     * open file description, which the shell or other processes may share: put the
     * flags back before exit. */
    in_flags = fcntl(STDIN_FILENO, F_GETFL);

    err = tt_loop_init(&st->loop);
    if (err < 0) {
        cli_error("%s", tt_strerror(err));
        tt_tls_ctx_free(tls);
        return CLI_EXIT_FAIL;
    }
    err = cli_writer_start(&st->out, st->loop, STDOUT_FILENO, STDOUT_HIGH_WATER, &wcbs);
    if (err < 0) {
        cli_error("stdout writer: %s", tt_strerror(err));
        tt_loop_close(st->loop);
        tt_tls_ctx_free(tls);
        return CLI_EXIT_FAIL;
    }
    if (st->listening) {
        err = tt_server_listen(st->loop, &addr, &so, &h, NULL, &st->srv);
        if (err < 0) {
            cli_listen_error(st->where, &addr, err);
            st->status = CLI_EXIT_FAIL;
        } else {
            tt_server_addr(st->srv, &addr);
            if (cli_print_listening(stderr, &addr, tls != NULL ? " (tls)" : NULL) < 0) {
                st->status = CLI_EXIT_FAIL;
                stop_all(st);
            }
        }
    } else if (st->ws) {
        err = ws_start(st, &copts);
        if (err < 0)
            st->status = err == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
    } else {
        tt_conn_t *c;
        err = tt_connect_host(st->loop, host, port, &copts, &h, NULL, &c); /* by name */
        if (err < 0) {
            cli_error("connect %s: %s", st->where, tt_strerror(err));
            st->status = CLI_EXIT_FAIL;
        } else {
            st->conn = c; /* so a signal during the connect or handshake ends it */
        }
    }
    err = cli_signals_install(st->loop);
    if (err < 0) {
        cli_error("signals: %s", tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
        stop_all(st);
    }

    /* Ends by itself once the connection has closed; a signal stops it early. */
    while (tt_loop_run(st->loop, TT_RUN_DEFAULT) == 1) {
        if (cli_signal_caught())
            stop_all(st);
    }
    cli_signals_restore();
    /* After a signal, do not wait for a stdout nobody reads. */
    err = cli_writer_finish(st->out, cli_signal_caught() != 0,
                            cli_signal_caught() ? STDOUT_GIVE_UP_MS : 0);
    if (err < 0 && err != -ETIMEDOUT && st->status == CLI_EXIT_OK) {
        cli_error("write stdout: %s", tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
    }
    if (in_flags >= 0)
        fcntl(STDIN_FILENO, F_SETFL, in_flags);
    if (st->ws)
        ws_stop();
    err = tt_loop_close(st->loop);
    tt_tls_ctx_free(tls);
    if (err < 0 && st->status == CLI_EXIT_OK) {
        cli_error("closing the loop: %s", tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
    }
    if (cli_signal_caught())
        return 128 + cli_signal_caught();
    return st->status;
}
