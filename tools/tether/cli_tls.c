/* The TLS options shared by every command (see cli_tls.h). The library says
 * -EINVAL for any unusable certificate, key or CA file without naming it, so the
 * files are looked at here first: a message that names the wrong file saves the
 * user from guessing which of three it was. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_tls.h"

#define WHY_LEN 512
/* PEM files this large are not certificates: do not read them whole. */
#define PEM_MAX ((size_t)1 << 20)

static const char *opt_name(int ch)
{
    switch (ch) {
    case CLI_OPT_TLS:
        return "--tls";
    case CLI_OPT_TLS_CERT:
        return "--tls-cert";
    case CLI_OPT_TLS_KEY:
        return "--tls-key";
    case CLI_OPT_TLS_CA:
        return "--tls-ca";
    case CLI_OPT_TLS_VERIFY_CLIENT:
        return "--tls-verify-client";
    case CLI_OPT_TLS_ALPN:
        return "--tls-alpn";
    case CLI_OPT_TLS_SERVERNAME:
        return "--tls-servername";
    case CLI_OPT_TLS_INSECURE:
        return "--tls-insecure";
    default:
        return "?";
    }
}

static bool given(const cli_tls_t *t, int ch) { return (t->given >> (ch - CLI_OPT_TLS)) & 1u; }

int cli_tls_option(int ch, const char *arg, cli_tls_t *t)
{
    if (t->given == 0)
        t->first_opt = ch;
    t->given |= 1u << (ch - CLI_OPT_TLS);
    switch (ch) {
    case CLI_OPT_TLS:
        t->on = true;
        break;
    case CLI_OPT_TLS_CERT:
        t->cert = arg;
        break;
    case CLI_OPT_TLS_KEY:
        t->key = arg;
        break;
    case CLI_OPT_TLS_CA:
        t->ca = arg;
        break;
    case CLI_OPT_TLS_VERIFY_CLIENT:
        t->verify_client = true;
        break;
    case CLI_OPT_TLS_ALPN:
        t->alpn = arg;
        break;
    case CLI_OPT_TLS_SERVERNAME:
        t->servername = arg;
        break;
    case CLI_OPT_TLS_INSECURE:
        t->insecure = true;
        break;
    default:
        break;
    }
    return 0;
}

/* ALPN: "h2,http/1.1": names of 1..255 bytes, no empty one. */
static bool alpn_ok(const char *list)
{
    size_t n = 0;

    for (const char *p = list;; p++) {
        if (*p == ',' || *p == '\0') {
            if (n == 0 || n > 255)
                return false;
            if (*p == '\0')
                return true;
            n = 0;
        } else {
            n++;
        }
    }
}

int cli_tls_check(const char *cmd, bool server, cli_tls_t *t)
{
    t->server = server;
    if (t->given == 0)
        return 0;
    if (t->cert != NULL && t->key == NULL)
        return cli_usage_error(cmd, "--tls-cert needs --tls-key");
    if (t->key != NULL && t->cert == NULL)
        return cli_usage_error(cmd, "--tls-key needs --tls-cert");
    if (t->alpn != NULL && !alpn_ok(t->alpn))
        return cli_usage_error(cmd, "bad --tls-alpn '%s': expected names separated by commas "
                                    "(h2,http/1.1)", t->alpn);
    if (t->servername != NULL && (t->servername[0] == '\0' || strlen(t->servername) > 253))
        return cli_usage_error(cmd, "bad --tls-servername '%s': expected a host name",
                               t->servername);
    if (server) {
        if (given(t, CLI_OPT_TLS_SERVERNAME) || given(t, CLI_OPT_TLS_INSECURE))
            return cli_usage_error(cmd, "%s is for connecting, not for a server",
                                   opt_name(given(t, CLI_OPT_TLS_SERVERNAME)
                                                ? CLI_OPT_TLS_SERVERNAME
                                                : CLI_OPT_TLS_INSECURE));
        if (t->cert == NULL)
            return cli_usage_error(cmd, "%s needs --tls-cert FILE --tls-key FILE (a server's "
                                        "certificate)", opt_name(t->first_opt));
        if (t->verify_client && t->ca == NULL)
            return cli_usage_error(cmd, "--tls-verify-client needs --tls-ca FILE (the CAs "
                                        "that sign client certificates)");
        t->on = true;
        return 0;
    }
    if (t->verify_client)
        return cli_usage_error(cmd, "--tls-verify-client is for a server");
    if (!t->on)
        return cli_usage_error(cmd, "%s needs --tls", opt_name(t->first_opt));
    return 0;
}

/* ---- making contexts ----------------------------------------------------------- */

/* Read a PEM file to look at (up to PEM_MAX). Returns 0 and a malloc'd text, or
 * -errno. */
static int slurp(const char *path, char **out)
{
    char *buf;
    size_t len = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC), err;

    if (fd < 0)
        return -errno;
    if ((buf = malloc(PEM_MAX + 1)) == NULL) {
        close(fd);
        return -ENOMEM;
    }
    while (len < PEM_MAX && (n = read(fd, buf + len, PEM_MAX - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = -errno;
            free(buf);
            close(fd);
            return err;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    *out = buf;
    return 0;
}

/* Check `path` is readable and holds `marker` ("CERTIFICATE-----"); say what is
 * wrong in `why` otherwise. */
static int check_pem(const char *what, const char *path, const char *marker, char *why)
{
    char *text = NULL;
    int err = slurp(path, &text);

    if (err < 0) {
        snprintf(why, WHY_LEN, "%s %s: %s", what, path, tt_strerror(err));
        return err;
    }
    if (strstr(text, "-----BEGIN ") == NULL || strstr(text, marker) == NULL) {
        snprintf(why, WHY_LEN, "%s %s: no PEM %s in it", what, path,
                 strstr(marker, "KEY") ? "private key" : "certificate");
        err = -EINVAL;
    }
    free(text);
    return err;
}

static int make_ctx(const cli_tls_t *t, tt_tls_ctx_t **out, char *why)
{
    int err;

    *out = NULL;
    if (!t->on)
        return 0;
    if (t->cert != NULL &&
        ((err = check_pem("certificate", t->cert, "CERTIFICATE-----", why)) < 0 ||
         (err = check_pem("key", t->key, "PRIVATE KEY-----", why)) < 0))
        return err;
    if (t->ca != NULL && (err = check_pem("CA file", t->ca, "CERTIFICATE-----", why)) < 0)
        return err;
    if (t->server) {
        tt_tls_server_opts_t so = {.cert_file = t->cert, .key_file = t->key, .ca_file = t->ca,
                                   .verify_client = t->verify_client, .alpn = t->alpn};
        err = tt_tls_server_ctx(&so, out);
    } else {
        tt_tls_client_opts_t co = {.ca_file = t->ca, .cert_file = t->cert, .key_file = t->key,
                                   .alpn = t->alpn, .insecure = t->insecure};
        err = tt_tls_client_ctx(&co, out);
    }
    if (err == -EINVAL && t->cert != NULL)
        snprintf(why, WHY_LEN, "certificate %s and key %s: not a certificate and its key "
                 "(they do not match, or one cannot be used)%s%s", t->cert, t->key,
                 t->ca != NULL ? "; or the CAs in " : "", t->ca != NULL ? t->ca : "");
    else if (err == -EINVAL && t->ca != NULL)
        snprintf(why, WHY_LEN, "CA file %s: no usable certificate in it", t->ca);
    else if (err < 0)
        snprintf(why, WHY_LEN, "%s", tt_strerror(err));
    if (err < 0)
        *out = NULL;
    return err;
}

int cli_tls_make(const cli_tls_t *t, tt_tls_ctx_t **out)
{
    char why[WHY_LEN];
    int err = make_ctx(t, out, why);

    if (err < 0)
        cli_error("tls: %s", why);
    return err;
}

/* A failed reload is no failure of the command (it serves on with the old
 * certificate): said on stderr without counting as an error for the exit status. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    const char *cmd = cli_command();
    va_list ap;

    fprintf(stderr, "tether %s: ", cmd != NULL ? cmd : "?");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void report_reload(const cli_tls_t *t, int err, const char *why)
{
    if (err < 0)
        say("tls reload: %s; still using the previous certificate", why);
    else
        say("tls reload: new connections get the certificate in %s", t->cert);
}

int cli_tls_reload(const cli_tls_t *t, tt_server_t *const *srvs, size_t n)
{
    char why[WHY_LEN];
    tt_tls_ctx_t *ctx;
    int err = make_ctx(t, &ctx, why);

    if (err == 0) {
        for (size_t i = 0; i < n && err == 0; i++)
            err = tt_server_set_tls(srvs[i], ctx);
        tt_tls_ctx_free(ctx); /* each server holds its own reference */
        if (err < 0)
            snprintf(why, WHY_LEN, "%s", tt_strerror(err));
    }
    report_reload(t, err, why);
    return err;
}

typedef struct reload_visit {
    tt_tls_ctx_t *ctx;
    atomic_int err;
} reload_visit_t;

static void set_on_worker(tt_workers_t *set, unsigned index, tt_loop_t *loop, tt_server_t *srv,
                          void *arg)
{
    reload_visit_t *rv = arg;
    int err;

    (void)set, (void)index, (void)loop;
    if (srv != NULL && (err = tt_server_set_tls(srv, rv->ctx)) < 0)
        atomic_store(&rv->err, err);
}

int cli_tls_reload_workers(const cli_tls_t *t, tt_workers_t *set)
{
    char why[WHY_LEN];
    reload_visit_t rv;
    int err = make_ctx(t, &rv.ctx, why);

    if (err == 0) {
        atomic_init(&rv.err, 0);
        err = tt_workers_visit(set, set_on_worker, &rv);
        if (err == 0)
            err = atomic_load(&rv.err);
        tt_tls_ctx_free(rv.ctx);
        if (err < 0)
            snprintf(why, WHY_LEN, "%s", tt_strerror(err));
    }
    report_reload(t, err, why);
    return err;
}

/* ---- describing ---------------------------------------------------------------- */

const char *cli_tls_desc(const tt_conn_t *c, char *buf)
{
    tt_tls_info_t ti;

    buf[0] = '\0';
    if (tt_conn_tls_info(c, &ti) == 0 && ti.done)
        snprintf(buf, CLI_TLS_DESC_LEN, " (%s %s%s%s%s)", ti.version, ti.cipher,
                 ti.alpn[0] != '\0' ? ", alpn " : "", ti.alpn, ti.resumed ? ", resumed" : "");
    return buf;
}

const char *cli_tls_name_for(const cli_tls_t *t, const char *host)
{
    unsigned char a[16];

    if (t->servername != NULL)
        return t->servername;
    if (strncmp(host, TT_UNIX_PREFIX, sizeof(TT_UNIX_PREFIX) - 1) == 0 ||
        inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1)
        return NULL;
    return host;
}
