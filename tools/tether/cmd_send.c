/* `tether send ADDR:PORT FILE`: send a file with sendfile(2), then close
 * ("send then close": tt_send_file with TT_FILE_CLOSE_FD | TT_FILE_THEN_END).
 * Success means every byte of the file was handed to the kernel and the close was
 * graceful: our FIN went after the data and the peer answered with its own FIN
 * (so it read to the end). Anything the peer sends back is read and discarded.
 * FILE "-" is stdin: a regular file from its current position, or a pipe, terminal
 * or socket read to its end as it becomes readable. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cli_tls.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_LINGER_MS 30000

typedef struct send_state {
    const char *where;
    const char *path;
    tt_conn_t *conn;    /* until its on_close */
    int fd;             /* the file, until the connection owns it */
    bool regular;
    uint64_t offset;    /* where sending starts: 0, or stdin's file position */
    uint64_t size;      /* regular files: bytes to send */
    uint64_t linger_ms;
    double t_open;
    bool opened;
    int status;
} send_t;

static send_t g_send;
static cli_tls_t g_send_tls; /* --tls, --tls-* */

static void usage(FILE *f)
{
    fprintf(f, "usage: tether send [options] ADDR:PORT FILE|-\n"
               "\n"
               "Send FILE over a new TCP connection with sendfile(2), then close: FIN after\n"
               "the last byte, and wait for the peer's FIN. Prints on stdout:\n"
               "  N bytes sent to ADDR:PORT in T s (R MiB/s)\n"
               "where N is the bytes handed to the kernel. Bytes the peer sends are\n"
               "discarded. ADDR is IPv4, [IPv6] or a host name. FILE '-' is stdin (a\n"
               "regular file from its current position, or a pipe read to its end).\n"
               "\n"
               "  -w, --timeout SECONDS   connect timeout (default %d; 0: the kernel's)\n"
               "      --linger SECONDS    how long to wait for the peer's FIN after ours\n"
               "                          (default %d; 0: forever)\n"
               CLI_TLS_USAGE_CLIENT
               "  -h, --help              this text\n"
               "\n"
               "Over TLS the file is read and encrypted in bounded chunks, N counts the\n"
               "file's bytes, and the graceful end is close_notify both ways.\n"
               "\n"
               "Exit status: 0 the whole file was written and both sides closed cleanly,\n"
               "1 the file could not be read or the connection failed or ended early (a\n"
               "one-line message on stderr), 2 bad usage, 128+N stopped by signal N.\n",
            DEFAULT_TIMEOUT_MS / 1000, DEFAULT_LINGER_MS / 1000);
}

static void on_open(tt_conn_t *c)
{
    send_t *st = &g_send;
    int fd = st->fd, err;

    st->opened = true;
    st->t_open = cli_now_s();
    st->fd = -1; /* the connection owns it from the call on, even on failure */
    tt_conn_set_linger(c, st->linger_ms);
    err = tt_send_file(c, fd, st->offset, TT_FILE_TO_EOF, TT_FILE_CLOSE_FD | TT_FILE_THEN_END);
    if (err < 0) {
        cli_error("send %s: %s", st->path, tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
        tt_destroy(c, 0);
    }
}

static void on_data(tt_conn_t *c, const void *data, size_t len, size_t pending)
{
    (void)c, (void)data, (void)len, (void)pending; /* discarded, as documented */
}

static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    send_t *st = &g_send;
    bool graceful = info->kind == TT_CLOSE_PEER_CLOSED || info->kind == TT_CLOSE_LOCAL_END;
    bool complete = info->bytes_unsent == 0 && info->bytes_written == info->bytes_queued &&
                    (!st->regular || info->bytes_written == st->size);
    (void)c;

    st->conn = NULL;
    if (info->kind == TT_CLOSE_CONNECT_FAILED || info->kind == TT_CLOSE_CONNECT_TIMEOUT) {
        cli_error("connect %s: %s", st->where,
                  tt_strerror(info->error ? info->error : -ETIMEDOUT));
        st->status = CLI_EXIT_FAIL;
        return;
    }
    if (st->status != CLI_EXIT_OK)
        return; /* already explained */
    if (!st->opened) { /* the TLS handshake failed: say so, naming the host */
        char why[CLI_REASON_LEN];
        if (g_send_tls.servername != NULL)
            cli_error("connect %s (as %s): %s", st->where, g_send_tls.servername,
                      cli_close_reason(info, why));
        else
            cli_error("connect %s: %s", st->where, cli_close_reason(info, why));
        st->status = CLI_EXIT_FAIL;
        return;
    }
    if (graceful && complete) {
        double dt = cli_now_s() - st->t_open;
        printf("%" PRIu64 " bytes sent to %s in %.3f s (%.1f MiB/s)\n", info->bytes_written,
               st->where, dt, dt > 0 ? (double)info->bytes_written / dt / (1 << 20) : 0.0);
        return;
    }
    st->status = CLI_EXIT_FAIL;
    if (graceful) /* the file shrank while it was being sent */
        cli_error("send %s: only %" PRIu64 " of %" PRIu64 " bytes written", st->where,
                  info->bytes_written, st->regular ? st->size : info->bytes_queued);
    else {
        char why[CLI_REASON_LEN];
        cli_error("send %s: %s (%" PRIu64 " of %" PRIu64 " bytes written)", st->where,
                  cli_close_reason(info, why), info->bytes_written,
                  st->regular ? st->size : info->bytes_queued);
    }
}

int cmd_send(int argc, char **argv)
{
    enum { OPT_LINGER = 256 };
    static const struct option longopts[] = {{"timeout", required_argument, NULL, 'w'},
                                             {"linger", required_argument, NULL, OPT_LINGER},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_TLS_LONGOPTS_CLIENT,
                                             {NULL, 0, NULL, 0}};
    const tt_conn_handlers_t h = {.on_open = on_open, .on_data = on_data, .on_close = on_close};
    cli_tls_t *tls = &g_send_tls;
    tt_connect_opts_t copts = {.timeout_ms = DEFAULT_TIMEOUT_MS};
    send_t *st = &g_send;
    struct stat sb;
    tt_loop_t *loop;
    char host[256];
    uint16_t port;
    tt_conn_t *c;
    bool first = true, from_stdin;
    int ch, err, in_flags = -1;

    st->linger_ms = DEFAULT_LINGER_MS;
    st->fd = -1;
    while ((ch = cli_getopt("send", argc, argv, ":w:h", longopts, &first)) != -1) {
        switch (ch) {
        case 'w':
            if (cli_parse_seconds(optarg, &copts.timeout_ms) < 0)
                return cli_usage_error("send", "bad timeout '%s': expected seconds", optarg);
            break;
        case OPT_LINGER:
            if (cli_parse_seconds(optarg, &st->linger_ms) < 0 || st->linger_ms > UINT32_MAX)
                return cli_usage_error("send", "bad linger '%s': expected seconds", optarg);
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        default:
            if (CLI_IS_TLS_OPT(ch)) {
                cli_tls_option(ch, optarg, tls);
                break;
            }
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind == 0)
        return cli_usage_error("send", "missing ADDR:PORT and FILE");
    if (argc - optind == 1)
        return cli_usage_error("send", "missing FILE");
    if (argc - optind > 2)
        return cli_usage_error("send", "unexpected argument '%s'", argv[optind + 2]);
    st->where = argv[optind];
    st->path = argv[optind + 1];
    if (cli_parse_host("send", st->where, host, sizeof(host), &port) < 0)
        return CLI_EXIT_USAGE;
    if (cli_tls_check("send", false, tls) != 0)
        return CLI_EXIT_USAGE;

    /* Open the file first: a missing file is reported before touching the network.
     * Stdin is a copy of descriptor 0, which the connection closes when done. */
    from_stdin = strcmp(st->path, "-") == 0;
    if (from_stdin) {
        st->path = "stdin";
        /* tt_send_file makes a stream non-blocking, a flag of the open file
         * description that the shell may share: put it back before exit. */
        in_flags = fcntl(STDIN_FILENO, F_GETFL);
        st->fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
    } else {
        st->fd = open(st->path, O_RDONLY | O_CLOEXEC);
    }
    if (st->fd < 0 || fstat(st->fd, &sb) < 0) {
        cli_error("%s: %s", st->path, tt_strerror(-errno));
        if (st->fd >= 0)
            close(st->fd);
        return CLI_EXIT_FAIL;
    }
    if (S_ISDIR(sb.st_mode)) {
        cli_error("%s: %s", st->path, tt_strerror(-EISDIR));
        close(st->fd);
        return CLI_EXIT_FAIL;
    }
    st->regular = S_ISREG(sb.st_mode);
    if (from_stdin && st->regular) {
        /* As cat(1) does for `(head -1; tether send ADDR -) <f`. */
        off_t pos = lseek(st->fd, 0, SEEK_CUR);
        st->offset = pos > 0 ? (uint64_t)pos : 0;
    }
    st->size = st->regular && (uint64_t)sb.st_size > st->offset
                   ? (uint64_t)sb.st_size - st->offset
                   : 0;

    if (cli_tls_make(tls, &copts.tls) < 0) {
        close(st->fd);
        return CLI_EXIT_FAIL;
    }
    copts.tls_servername = tls->servername; /* else the host name, as typed */
    err = tt_loop_init(&loop);
    if (err < 0) {
        cli_error("%s", tt_strerror(err));
        close(st->fd);
        tt_tls_ctx_free(copts.tls);
        return CLI_EXIT_FAIL;
    }
    err = tt_connect_host(loop, host, port, &copts, &h, NULL, &c); /* names resolve on the loop */
    if (err < 0) {
        cli_error("connect %s: %s", st->where, tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
    } else if ((err = cli_signals_install(loop)) < 0) {
        cli_error("signals: %s", tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
        tt_destroy(c, 0);
    } else {
        st->conn = c;
    }
    while (tt_loop_run(loop, TT_RUN_DEFAULT) == 1) {
        if (cli_signal_caught()) {
            st->status = 128 + cli_signal_caught();
            if (st->conn != NULL)
                tt_destroy(st->conn, 0);
        }
    }
    cli_signals_restore();
    if (st->fd >= 0) /* never handed over: the connect failed */
        close(st->fd);
    if (in_flags >= 0)
        fcntl(STDIN_FILENO, F_SETFL, in_flags);
    fflush(stdout);
    err = tt_loop_close(loop);
    tt_tls_ctx_free(copts.tls);
    if (err < 0 && st->status == CLI_EXIT_OK) {
        cli_error("closing the loop: %s", tt_strerror(err));
        st->status = CLI_EXIT_FAIL;
    }
    return st->status;
}
