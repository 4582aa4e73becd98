/* Helpers shared by the subcommands: messages, address and option parsing, signals.
 * Like the rest of the tool, this uses only the public header. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_handoff.h"

/* ---- messages ----------------------------------------------------------------- */

static const char *cur_cmd; /* NULL before main.c has found the command */
static atomic_uint n_errors; /* bench's worker threads report too */

void cli_set_command(const char *cmd) { cur_cmd = cmd; }

const char *cli_command(void) { return cur_cmd; }

unsigned cli_errors_reported(void) { return atomic_load(&n_errors); }

void cli_error(const char *fmt, ...)
{
    va_list ap;

    atomic_fetch_add(&n_errors, 1);
    if (cur_cmd != NULL) {
        size_t n = strlen(cur_cmd);
        /* cli_error("echo: signals: ...") from inside echo says the name once. */
        if (strncmp(fmt, cur_cmd, n) == 0 && fmt[n] == ':' && fmt[n + 1] == ' ')
            fmt += n + 2;
        fprintf(stderr, "tether %s: ", cur_cmd);
    } else {
        fputs("tether: ", stderr);
    }
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_print_listening(FILE *f, const tt_addr_t *addr, const char *suffix)
{
    return cli_print_line(f, "listening on", addr, suffix);
}

int cli_print_line(FILE *f, const char *what, const tt_addr_t *addr, const char *suffix)
{
    char buf[TT_ADDR_STRLEN];
    int err = 0;

    errno = 0;
    if (fprintf(f, "tether %s: %s %s%s\n", cur_cmd != NULL ? cur_cmd : "?", what,
                cli_addr_str(addr, buf), suffix != NULL ? suffix : "") < 0 ||
        fflush(f) != 0 || ferror(f))
        err = errno != 0 ? -errno : -EIO;
    if (err < 0) {
        clearerr(f); /* said once here, not again when main.c flushes at exit */
        cli_error("write %s: %s", f == stderr ? "stderr" : "stdout", tt_strerror(err));
    }
    return err;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "tether %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'tether %s --help'.\n", cmd);
    return CLI_EXIT_USAGE;
}

/* ---- addresses ---------------------------------------------------------------- */

/* Say which part of "HOST:PORT" is wrong: a bare "bad address" makes the user guess. */
static void explain_bad_addr(const char *cmd, const char *text)
{
    const char *colon = strrchr(text, ':');
    const char *port;
    char *end;
    unsigned long v;

    if (colon == NULL) {
        cli_usage_error(cmd, "bad address '%s': expected HOST:PORT (e.g. 127.0.0.1:7000, "
                             "[::1]:7000, localhost:7000)", text);
        return;
    }
    port = colon + 1;
    errno = 0;
    v = strtoul(port, &end, 10);
    if (*port == '\0' || *port == '-' || *port == '+' || *end != '\0' || errno != 0 ||
        v > 65535) {
        cli_usage_error(cmd, "bad port '%s' in '%s': expected a number from 0 to 65535", port,
                        text);
        return;
    }
    cli_usage_error(cmd, "bad host in '%s': expected a numeric IPv4 address, [IPv6] in "
                         "brackets, or localhost", text);
}

/* A Unix address: parsed whole, with a message that names what is wrong. */
static int parse_unix(const char *cmd, const char *text, tt_addr_t *out)
{
    int err = tt_addr_parse_hostport(out, text);
    if (err == -ENAMETOOLONG)
        cli_usage_error(cmd, "bad address '%s': a Unix socket path or name is at most 107 "
                             "bytes", text);
    else if (err < 0)
        cli_usage_error(cmd, "bad address '%s': expected unix:/path or unix:@name", text);
    return err < 0 ? -EINVAL : 0;
}

static bool is_unix_text(const char *text)
{
    return strncmp(text, TT_UNIX_PREFIX, sizeof(TT_UNIX_PREFIX) - 1) == 0;
}

int cli_parse_addr(const char *cmd, const char *text, bool connect, tt_addr_t *out)
{
    static const char local[] = "localhost:";
    char buf[TT_ADDR_STRLEN + 16];
    const char *p = text;

    if (is_unix_text(text))
        return parse_unix(cmd, text, out);
    if (strncmp(text, local, sizeof(local) - 1) == 0) {
        /* Until name lookup exists, localhost is the IPv4 loopback, as in /etc/hosts. */
        if (strlen(text) - (sizeof(local) - 1) + sizeof("127.0.0.1:") > sizeof(buf)) {
            explain_bad_addr(cmd, text);
            return -EINVAL;
        }
        snprintf(buf, sizeof(buf), "127.0.0.1:%s", text + sizeof(local) - 1);
        p = buf;
    }
    if (tt_addr_parse_hostport(out, p) < 0) {
        explain_bad_addr(cmd, text);
        return -EINVAL;
    }
    if (connect && tt_addr_port(out) == 0) {
        cli_usage_error(cmd, "bad port in '%s': port 0 can be listened on, not connected to",
                        text);
        return -EINVAL;
    }
    return 0;
}

const char *cli_addr_str(const tt_addr_t *addr, char *buf)
{
    if (tt_addr_format(addr, buf, TT_ADDR_STRLEN) < 0)
        strcpy(buf, "?");
    return buf;
}

int cli_parse_size(const char *text, uint64_t *out)
{
    unsigned long long v;
    unsigned shift = 0;
    char *end;

    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || text[0] == '-' || text[0] == '+')
        return -EINVAL;
    if (*end == 'K' || *end == 'k')
        shift = 10, end++;
    else if (*end == 'M' || *end == 'm')
        shift = 20, end++;
    else if (*end == 'G' || *end == 'g')
        shift = 30, end++;
    if (*end != 0 || v > (1ULL << (62 - shift)))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

const char *cli_cred_str(const tt_conn_t *c, char *buf)
{
    tt_peer_cred_t cr;

    buf[0] = '\0';
    if (tt_conn_peer_cred(c, &cr) == 0)
        snprintf(buf, CLI_CRED_LEN, " (pid %d, uid %u, gid %u)", (int)cr.pid, (unsigned)cr.uid,
                 (unsigned)cr.gid);
    return buf;
}

void cli_listen_error(const char *where, const tt_addr_t *addr, int err)
{
    const char *why = "";

    if (tt_addr_unix_path(addr) != NULL) {
        if (err == -EEXIST)
            why = " (the path is not a socket: left as it is)";
        else if (err == -EADDRINUSE)
            why = " (a server is answering on this socket)";
    }
    cli_error("listen %s: %s%s", where, tt_strerror(err), why);
}

bool cli_http_one_page(const tt_http_request_t *req, tt_http_response_t *res)
{
    static const char not_found[] = "not found\n", not_allowed[] = "method not allowed\n";

    res->content_type = "text/plain; charset=utf-8";
    res->headers = "Cache-Control: no-store\r\n";
    if (strcmp(req->path, "/") != 0) {
        res->status = 404;
        res->body = not_found;
        res->body_len = sizeof(not_found) - 1;
        return true;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        res->status = 405;
        res->headers = "Allow: GET, HEAD\r\nCache-Control: no-store\r\n";
        res->body = not_allowed;
        res->body_len = sizeof(not_allowed) - 1;
        return true;
    }
    return false;
}

const char *cli_close_reason(const tt_close_info_t *info, char *buf)
{
    /* A layer's own words (TLS: "hostname mismatch"; PROXY: "bad signature") say
     * more than the errno. */
    if (info->reason != NULL && info->reason[0] != '\0')
        snprintf(buf, CLI_REASON_LEN, "%s: %s", tt_close_kind_name(info->kind), info->reason);
    else if (info->error != 0)
        snprintf(buf, CLI_REASON_LEN, "%s: %s", tt_close_kind_name(info->kind),
                 tt_strerror(info->error));
    else
        snprintf(buf, CLI_REASON_LEN, "%s", tt_close_kind_name(info->kind));
    return buf;
}

int cli_parse_proxy_mode(const char *cmd, const char *text, tt_proxy_mode_t *out)
{
    static const tt_proxy_mode_t modes[] = {TT_PROXY_V1, TT_PROXY_V2, TT_PROXY_ANY,
                                            TT_PROXY_OPTIONAL};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(text, tt_proxy_mode_name(modes[i])) == 0) {
            *out = modes[i];
            return 0;
        }
    }
    cli_usage_error(cmd, "bad --proxy-protocol '%s': expected v1, v2, any or optional", text);
    return -EINVAL;
}

int cli_parse_seconds(const char *text, uint64_t *ms)
{
    char *end;
    double s;

    if (text == NULL || *text == '\0')
        return -EINVAL;
    errno = 0;
    s = strtod(text, &end);
    if (errno != 0 || *end != '\0' || !isfinite(s) || s < 0 ||
        s * 1000.0 > (double)TT_TIMEOUT_MAX)
        return -EINVAL;
    *ms = (uint64_t)llround(s * 1000.0);
    return 0;
}

/* ---- options ------------------------------------------------------------------ */

int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts, bool *first)
{
    int ch;

    if (*first) {
        optind = 0; /* glibc: full re-initialisation */
        *first = false;
    }
    opterr = 0; /* our own messages, naming the command */
    ch = getopt_long(argc, argv, shortopts, longopts, NULL);
    if (ch == '?' || ch == ':') {
        const char *what = argv[optind - 1];
        char shortname[3] = {'-', (char)optopt, '\0'};

        /* For a short option glibc sets optopt; argv[optind-1] may be a cluster. */
        if (optopt != 0 && strncmp(what, "--", 2) != 0)
            what = shortname;
        if (ch == '?')
            cli_usage_error(cmd, "unknown option '%s'", what);
        else
            cli_usage_error(cmd, "option '%s' needs a value", what);
        return '?';
    }
    return ch;
}

/* ---- signals ------------------------------------------------------------------ */

/* SIGINT and SIGTERM come as a signal watch on the command's loop (the library's
 * own, so every CLI run exercises it): the callback runs on the loop's thread and
 * only records the signal and stops the loop; the command then shuts down from
 * the loop as usual. The watch does not keep the loop running by itself. */
static tt_signal_t *sig_watch;
static int sig_caught;
static void (*hup_fn)(void *arg); /* cli_signals_on_hup */
static void *hup_arg;

static void on_signal(tt_signal_t *s, int signo, void *data)
{
    (void)s;
    if (signo == SIGHUP) {
        if (hup_fn != NULL)
            hup_fn(hup_arg);
        return;
    }
    sig_caught = signo;
    tt_loop_stop(data);
}

int cli_signals_on_hup(void (*fn)(void *arg), void *arg)
{
    if (sig_watch == NULL || fn == NULL)
        return -EINVAL;
    hup_fn = fn;
    hup_arg = arg;
    return tt_signal_start(sig_watch, SIGHUP);
}

int cli_signals_install(tt_loop_t *loop)
{
    struct sigaction sa;
    int err;

    sig_caught = 0;
    if ((err = tt_signal_init(loop, &sig_watch, on_signal, loop)) < 0)
        return err;
    if ((err = tt_signal_set_ref(sig_watch, false)) < 0 ||
        (err = tt_signal_start(sig_watch, SIGINT)) < 0 ||
        (err = tt_signal_start(sig_watch, SIGTERM)) < 0) {
        cli_signals_restore();
        return err;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) < 0)
        return -errno;
    return 0;
}

void cli_signals_restore(void)
{
    if (sig_watch != NULL)
        tt_signal_close(sig_watch); /* the dispositions from before come back */
    sig_watch = NULL;
    hup_fn = NULL;
}

int cli_signal_caught(void) { return sig_caught; }

double cli_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cli_parse_host(const char *cmd, const char *text, char *host, size_t size, uint16_t *port)
{
    const char *colon = strrchr(text, ':');
    const char *h = text;
    unsigned long v;
    size_t len;
    char *end;

    if (is_unix_text(text)) {
        tt_addr_t a;
        if (parse_unix(cmd, text, &a) < 0)
            return -EINVAL;
        if (strlen(text) >= size) {
            cli_usage_error(cmd, "bad address '%s': longer than %zu characters", text, size - 1);
            return -EINVAL;
        }
        strcpy(host, text);
        *port = 0;
        return 0;
    }
    if (colon == NULL || colon == text) {
        explain_bad_addr(cmd, text);
        return -EINVAL;
    }
    errno = 0;
    v = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || colon[1] == '-' || colon[1] == '+' || *end != '\0' || errno != 0 ||
        v > 65535) {
        explain_bad_addr(cmd, text);
        return -EINVAL;
    }
    if (v == 0) {
        cli_usage_error(cmd, "bad port in '%s': port 0 can be listened on, not connected to",
                        text);
        return -EINVAL;
    }
    len = (size_t)(colon - text);
    if (text[0] == '[') { /* "[::1]:80": the brackets only keep the colons apart */
        if (len < 3 || text[len - 1] != ']') {
            explain_bad_addr(cmd, text);
            return -EINVAL;
        }
        h = text + 1;
        len -= 2;
    }
    if (len >= size) {
        cli_usage_error(cmd, "bad host in '%s': longer than %zu characters", text, size - 1);
        return -EINVAL;
    }
    memcpy(host, h, len);
    host[len] = '\0';
    *port = (uint16_t)v;
    return 0;
}

int cli_parse_count(const char *cmd, const char *opt, const char *text, unsigned long max,
                    unsigned long *out)
{
    unsigned long v;
    char *end;

    errno = 0;
    v = strtoul(text, &end, 10);
    if (*text < '0' || *text > '9' || *end != '\0' || errno != 0 || v == 0 || v > max) {
        cli_usage_error(cmd, "bad %s '%s' (1..%lu)", opt, text, max);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

void cli_admin_error(const char *cmd, const tt_admin_opts_t *ao, int err)
{
    char buf[TT_ADDR_STRLEN];
    const char *path = ao->unix_path, *sep = path != NULL && ao->metrics_addr != NULL ? ", " : "";

    cli_error("%s: admin endpoint (%s%s%s%s%s): %s", cmd, path != NULL ? "socket " : "",
              path != NULL ? path : "", sep, ao->metrics_addr != NULL ? "metrics " : "",
              ao->metrics_addr != NULL ? cli_addr_str(ao->metrics_addr, buf) : "",
              tt_strerror(err));
}

int cli_print_metrics(const tt_admin_t *admin)
{
    tt_addr_t a;

    if (admin == NULL || tt_admin_metrics_addr(admin, &a) < 0)
        return 0;
    return cli_print_line(stdout, "metrics on", &a, NULL);
}

int cli_serve_workers(const cli_workers_t *w, const tt_addr_t *addr, const tt_server_opts_t *so,
                      const tt_conn_handlers_t *h, int *sig)
{
    tt_workers_opts_t wo = {.count = w->count, .on_start = w->on_start,
                            .listen_fds = w->listen_fds, .nfds = w->nfds};
    tt_workers_t *set;
    tt_admin_t *admin = NULL;
    tt_addr_t bound;
    char buf[TT_ADDR_STRLEN];
    sigset_t sigs;
    int err;

    /* Worker threads inherit this mask: the signals come to sigwait() below. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    if (w->on_hup != NULL)
        sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout gives EPIPE, not death */
    err = tt_workers_start(w->nfds > 0 ? NULL : addr, &wo, so, h, NULL, &set);
    if (err < 0) {
        if (w->nfds > 0)
            cli_error("%s: --takeover %s: %s", w->cmd, w->takeover, tt_strerror(err));
        else
            cli_listen_error(cli_addr_str(addr, buf), addr, err);
        return CLI_EXIT_FAIL;
    }
    if (w->admin != NULL && (err = tt_admin_start_workers(set, w->admin, &admin)) < 0) {
        cli_admin_error(w->cmd, w->admin, err);
        tt_workers_stop(set, 0);
        return CLI_EXIT_FAIL;
    }
    tt_workers_addr(set, &bound);
    snprintf(buf, sizeof(buf), " (%u workers)%s", tt_workers_count(set),
             w->suffix != NULL ? w->suffix : "");
    if (cli_print_listening(stdout, &bound, buf) < 0 || cli_print_metrics(admin) < 0) {
        if (admin != NULL)
            tt_admin_close(admin);
        tt_workers_stop(set, 0);
        return CLI_EXIT_FAIL;
    }
    if (w->takeover != NULL)
        cli_takeover_ready(w->cmd, w->takeover, w->link);
    if (w->handoff != NULL && cli_offer_workers(w->cmd, set, w->handoff) != CLI_EXIT_OK) {
        if (admin != NULL)
            tt_admin_close(admin);
        cli_offer_workers_close(set);
        tt_workers_stop(set, 0);
        return CLI_EXIT_FAIL;
    }
    do {
        *sig = 0;
        sigwait(&sigs, sig);
        if (*sig == SIGHUP)
            w->on_hup(set); /* on this thread; the workers serve on meanwhile */
    } while (*sig == SIGHUP);
    if (w->handoff != NULL) {
        cli_offer_workers_close(set);
        cli_offer_workers_drain(set);
    }
    if (w->before_stop != NULL)
        w->before_stop(set);
    if (admin != NULL)
        tt_admin_close(admin);
    tt_workers_stop(set, w->shutdown_ms);
    return CLI_EXIT_OK;
}
