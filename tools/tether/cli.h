/* Shared by the subcommands of the tether tool. */
#ifndef TT_CLI_H
#define TT_CLI_H

#include <stdio.h>

#include "tether.h"

int cmd_echo(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_udp_echo(int argc, char **argv);
/* `tether cat --udp ...` (udp_cat.c); cmd_cat hands the whole command line over. */
int cli_udp_cat(int argc, char **argv);
/* Check the text of a --join, "GROUP" or "GROUP,SOURCE": numeric, and a multicast
 * group. Returns 0, or -EINVAL after a usage message: call it before binding. */
int cli_udp_check_join(const char *cmd, const char *spec);
/* Join "GROUP" or "GROUP,SOURCE" on `iface` (NULL: by route), saying why on failure.
 * Returns 0, -EINVAL (bad text or not a group: a usage error) or the join's error
 * (never -EINVAL: the system's refusal is a failure, exit 1). */
int cli_udp_join_spec(const char *cmd, tt_udp_t *u, const char *spec, const char *iface);

/* ---- helpers shared by the subcommands (cli_util.c) ---------------------------- */

#include <getopt.h>
#include <stdint.h>

/* Exit statuses: 0 success, 1 the network or a file said no, 2 bad command line.
 * A command stopped by SIGINT/SIGTERM (other than `echo`) exits 128 + the signal. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

/* Every line a command prints about itself starts "tether CMD: " (main.c names the
 * command before running it; "tether: " before that). */
void cli_set_command(const char *cmd);
const char *cli_command(void);

/* "tether CMD: " + message + "\n" on stderr, the one shape of an error line:
 * "tether CMD: WHAT ADDR: ERROR". A message that starts with "CMD: " itself is not
 * prefixed twice. Every call is counted: main.c turns a status of 0 into 1 when an
 * error was reported, so a reported error always means exit 1. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* How many errors cli_error reported so far. */
unsigned cli_errors_reported(void);
/* "tether CMD: listening on ADDR" + suffix + "\n" on `f`, flushed at once (a script
 * waits for it). Returns 0, or -errno after reporting "write stdout: ..." (a
 * closed pipe: the server then exits 1 rather than run unseen). */
int cli_print_listening(FILE *f, const tt_addr_t *addr, const char *suffix);
/* The same with another verb: "tether CMD: WHAT ADDR" + suffix. */
int cli_print_line(FILE *f, const char *what, const tt_addr_t *addr, const char *suffix);
/* "tether CMD: " + message, then "Try 'tether CMD --help'." on stderr. Returns
 * CLI_EXIT_USAGE so a command can `return cli_usage_error(...)`. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parse "HOST:PORT", "[V6]:PORT", ":PORT", "unix:/path" or "unix:@name" into *out;
 * "localhost" means 127.0.0.1 (name lookup comes later). With connect set, port 0
 * is refused. On failure prints why (naming the text) with a usage hint and
 * returns -EINVAL. */
int cli_parse_addr(const char *cmd, const char *text, bool connect, tt_addr_t *out);
/* Split "HOST:PORT" or "[V6]:PORT" for connecting by name (tt_connect_host): HOST
 * may be a name, a numeric address or localhost; the port must be 1..65535. A
 * Unix address ("unix:/path", "unix:@name") is checked and copied whole into host,
 * port 0 (tt_connect_host takes it as it is). On failure prints why with a usage
 * hint and returns -EINVAL. */
int cli_parse_host(const char *cmd, const char *text, char *host, size_t size, uint16_t *port);
/* The address as "1.2.3.4:80" / "[::1]:80" in buf (TT_ADDR_STRLEN bytes); returns buf. */
const char *cli_addr_str(const tt_addr_t *addr, char *buf);
/* " (pid P, uid U, gid G)" for a Unix domain connection whose peer credentials
 * are known, "" otherwise; works in on_close too. Returns buf. */
#define CLI_CRED_LEN 64
const char *cli_cred_str(const tt_conn_t *c, char *buf);
/* "listen ADDR: why" on stderr, naming the address; for a Unix path it also says
 * what is in the way (a live server, a file that is not a socket: left alone). */
void cli_listen_error(const char *where, const tt_addr_t *addr, int err);
/* Why a connection ended, for a message: "peer reset: Connection reset by peer",
 * the kind and the layer's reason when it gives one ("tls handshake failed:
 * hostname mismatch"), or the kind alone when there is no error ("peer closed").
 * Returns buf. */
#define CLI_REASON_LEN 384
const char *cli_close_reason(const tt_close_info_t *info, char *buf);
/* A listener that serves one page on "/": answer any other path (404) or a method
 * other than GET and HEAD (405) in plain text, and return true; false when the
 * request is for the page (res then holds plain-text defaults to overwrite). */
bool cli_http_one_page(const tt_http_request_t *req, tt_http_response_t *res);
/* --proxy-protocol v1|v2|any|optional. 0, or a usage error printed and -EINVAL. */
int cli_parse_proxy_mode(const char *cmd, const char *text, tt_proxy_mode_t *out);
#define CLI_PROXY_USAGE                                                                           \
    "      --proxy-protocol M  behind a load balancer: read its PROXY header first\n"              \
    "                          (v1, v2, any: that version / either required;\n"                   \
    "                          optional: one if it comes); the client it names is\n"             \
    "                          the peer address everywhere\n"
/* Seconds ("10", "0.5") to milliseconds, at most TT_TIMEOUT_MAX. 0 or -EINVAL. */
int cli_parse_seconds(const char *text, uint64_t *ms);
/* "4096", "64K", "4M", "1G" (powers of 1024): bytes into *out. 0 or -EINVAL (no
 * digits, a sign, another suffix, past 2^62). Callers check their own range. */
int cli_parse_size(const char *text, uint64_t *out);

/* getopt_long with tether's messages: returns the option character, -1 after the
 * last option, or '?' after printing "tether CMD: unknown option ..." or "... needs
 * a value". `shortopts` must start with ':'. Call with *first = true once per
 * command (it resets getopt's state). */
int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts, bool *first);

/* SIGINT and SIGTERM, through a signal watch on `loop`, are recorded and stop the
 * loop; SIGPIPE is ignored so a closed stdout gives EPIPE. Returns 0 or -errno. */
int cli_signals_install(tt_loop_t *loop);
/* SIGHUP through the same watch: fn(arg) runs on the loop's thread for each one,
 * and the loop goes on. Call after cli_signals_install. Returns 0 or -errno. */
int cli_signals_on_hup(void (*fn)(void *arg), void *arg);
/* Close the watch (before tt_loop_close): the dispositions from before return. */
void cli_signals_restore(void);
/* The last SIGINT/SIGTERM received since install, or 0. */
int cli_signal_caught(void);

/* Monotonic seconds, for rates. */
double cli_now_s(void);

/* A whole number 1..max for option `opt` ("--workers"). On failure prints why with
 * a usage hint and returns -EINVAL. */
int cli_parse_count(const char *cmd, const char *opt, const char *text, unsigned long max,
                    unsigned long *out);

/* The admin endpoint failed to start: say so naming what it was asked to serve
 * ("CMD: admin endpoint (socket PATH, metrics ADDR): error text"). */
void cli_admin_error(const char *cmd, const tt_admin_opts_t *ao, int err);
/* After the listening line: "tether CMD: metrics on ADDR" (the port chosen for
 * port 0) when the endpoint serves metrics (nothing otherwise). 0 or -errno, as
 * cli_print_listening. */
int cli_print_metrics(const tt_admin_t *admin);

/* --workers N for a server command: start the set (SO_REUSEPORT), the admin
 * endpoint if asked, print "tether CMD: listening on ADDR (N workers)", wait for
 * SIGINT/SIGTERM on this thread (the workers never see them; SIGHUP runs on_hup
 * and waits on), run before_stop,
 * then stop gracefully within shutdown_ms. */
typedef struct cli_workers {
    const char *cmd;              /* for messages: "echo", "chat" */
    unsigned count;
    uint64_t shutdown_ms;
    const tt_admin_opts_t *admin; /* NULL: no endpoint */
    void (*on_start)(tt_workers_t *set, unsigned index, tt_loop_t *loop, tt_server_t *srv,
                     void *arg);
    void (*before_stop)(tt_workers_t *set); /* after the signal, before the stop */
    void (*on_hup)(tt_workers_t *set); /* SIGHUP, on the waiting thread; NULL: not
                                          caught */
    const char *suffix;           /* appended to the listening line (" (websocket)"); NULL */
    const char *handoff;          /* --handoff SOCKET: offer the listeners; NULL: none */
    const int *listen_fds;        /* --takeover: the predecessor's listeners (count: nfds) */
    unsigned nfds;
    const char *takeover;         /* --takeover SOCKET (NULL: none), and the link to tell */
    int link;                     /* once serving */
} cli_workers_t;
/* Returns CLI_EXIT_OK with the signal in *sig, or CLI_EXIT_FAIL after saying why. */
int cli_serve_workers(const cli_workers_t *w, const tt_addr_t *addr, const tt_server_opts_t *so,
                      const tt_conn_handlers_t *h, int *sig);

#endif
