/* The TLS options of every command (cli_tls.c): one parser, one place that makes
 * the contexts and says which file is wrong, one reload for SIGHUP.
 *
 * Servers (`echo`, `chat`): --tls-cert FILE --tls-key FILE turn TLS on;
 * --tls-ca FILE [--tls-verify-client], --tls-alpn LIST.
 * Clients (`cat`, `send`, `bench`): --tls turns it on; --tls-ca, --tls-servername,
 * --tls-insecure, --tls-alpn, --tls-cert/--tls-key (a client certificate).
 * `cat --listen --tls` is a server for its one connection. */
#ifndef TT_CLI_TLS_H
#define TT_CLI_TLS_H

#include <getopt.h>
#include <stdbool.h>

#include "tether.h"

/* Option codes above any short option character. */
#define CLI_OPT_TLS 0x1300
#define CLI_OPT_TLS_CERT 0x1301
#define CLI_OPT_TLS_KEY 0x1302
#define CLI_OPT_TLS_CA 0x1303
#define CLI_OPT_TLS_VERIFY_CLIENT 0x1304
#define CLI_OPT_TLS_ALPN 0x1305
#define CLI_OPT_TLS_SERVERNAME 0x1306
#define CLI_OPT_TLS_INSECURE 0x1307

/* True for the option codes above: `case` them all into cli_tls_option. */
#define CLI_IS_TLS_OPT(ch) ((ch) >= CLI_OPT_TLS && (ch) <= CLI_OPT_TLS_INSECURE)

/* The struct option entries: a server's, and a client's (a superset). */
#define CLI_TLS_LONGOPTS_SERVER                                                                 \
    {"tls-cert", required_argument, NULL, CLI_OPT_TLS_CERT},                                    \
        {"tls-key", required_argument, NULL, CLI_OPT_TLS_KEY},                                  \
        {"tls-ca", required_argument, NULL, CLI_OPT_TLS_CA},                                    \
        {"tls-verify-client", no_argument, NULL, CLI_OPT_TLS_VERIFY_CLIENT},                    \
        {"tls-alpn", required_argument, NULL, CLI_OPT_TLS_ALPN}
#define CLI_TLS_LONGOPTS_CLIENT                                                                 \
    CLI_TLS_LONGOPTS_SERVER, {"tls", no_argument, NULL, CLI_OPT_TLS},                           \
        {"tls-servername", required_argument, NULL, CLI_OPT_TLS_SERVERNAME},                    \
        {"tls-insecure", no_argument, NULL, CLI_OPT_TLS_INSECURE}

/* Usage lines, in the style of the commands' help. */
#define CLI_TLS_USAGE_SERVER                                                                    \
    "      --tls-cert FILE     speak TLS: this PEM certificate (then its chain)...\n"          \
    "      --tls-key FILE      ... and its PEM private key. SIGHUP reads both again:\n"        \
    "                          new clients get the new certificate, open ones keep\n"          \
    "                          theirs; a bad pair keeps the old one (one line on stderr)\n"    \
    "      --tls-ca FILE       PEM CAs for client certificates (mutual TLS)\n"                 \
    "      --tls-verify-client require a client certificate signed by --tls-ca\n"            \
    "      --tls-alpn LIST     ALPN protocols by preference: h2,http/1.1\n"
#define CLI_TLS_USAGE_CLIENT                                                                    \
    "      --tls               speak TLS; the server's certificate must verify against\n"      \
    "                          the system's CAs (or --tls-ca) and name the host\n"              \
    "      --tls-ca FILE       trust these PEM CAs instead of the system's\n"                   \
    "      --tls-servername NAME  the name sent (SNI) and verified, instead of the host\n"     \
    "      --tls-insecure      verify nothing (tests only)\n"                                    \
    "      --tls-alpn LIST     ALPN protocols to offer: h2,http/1.1\n"                         \
    "      --tls-cert FILE     a client certificate (mutual TLS), with --tls-key FILE\n"
/* `cat` takes both: the client's, and with --listen the server's meaning. */
#define CLI_TLS_USAGE_CAT                                                                       \
    CLI_TLS_USAGE_CLIENT                                                                        \
    "                          (with --listen: the server's certificate and key; --tls-ca\n"   \
    "                          and --tls-verify-client then check the client's)\n"

typedef struct cli_tls {
    bool on;             /* --tls, or a server's --tls-cert */
    const char *cert, *key, *ca, *alpn, *servername;
    bool verify_client, insecure;
    bool server;         /* set by cli_tls_check */
    int first_opt;       /* the first TLS option given (its code), for messages */
    unsigned given;      /* which were given: 1 << (code - CLI_OPT_TLS) */
} cli_tls_t;

/* Take one TLS option (`ch` is its code, `arg` its value). Returns 0 (never fails:
 * cli_tls_check judges the whole). */
int cli_tls_option(int ch, const char *arg, cli_tls_t *t);
/* After the options: check they fit together for a server (`server`) or a client
 * and remember the role. Returns 0, or CLI_EXIT_USAGE after printing why. */
int cli_tls_check(const char *cmd, bool server, cli_tls_t *t);
/* Make the context the options ask for (*out NULL when TLS is off). A file that is
 * missing or unreadable is named, as is a certificate and key that do not match.
 * Returns 0, or the error after one line on stderr. */
int cli_tls_make(const cli_tls_t *t, tt_tls_ctx_t **out);
/* SIGHUP: make a new server context from the same files and give it to each of
 * the `n` servers (tt_server_set_tls: new handshakes use it). On failure they keep
 * the one they have and one line on stderr says why. Returns 0 or the error. */
int cli_tls_reload(const cli_tls_t *t, tt_server_t *const *srvs, size_t n);
/* The same for every worker of `set` (from the main thread). */
int cli_tls_reload_workers(const cli_tls_t *t, tt_workers_t *set);

/* " (TLSv1.3 TLS_AES_256_GCM_SHA384)" for an open TLS connection (with ", alpn
 * h2" when agreed), "" otherwise. Returns buf. */
#define CLI_TLS_DESC_LEN 200
const char *cli_tls_desc(const tt_conn_t *c, char *buf);

/* The name a client sends (SNI) and verifies when it connects to `host` (as the
 * user typed it): --tls-servername when given, else the host when it is a name,
 * else NULL (a numeric address: the library verifies the address itself). */
const char *cli_tls_name_for(const cli_tls_t *t, const char *host);

#endif
