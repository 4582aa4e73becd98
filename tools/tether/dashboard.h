/* --dashboard ADDR on tether echo and chat: a web page of the live connection
 * table and the server totals, pushed over a WebSocket (docs/cli.md). */
#ifndef TT_CLI_DASHBOARD_H
#define TT_CLI_DASHBOARD_H

#include "tether.h"

#define CLI_OPT_DASHBOARD 0x1400
#define CLI_OPT_DASHBOARD_TOKEN 0x1401
#define CLI_DASHBOARD_LONGOPTS                                               \
    {"dashboard", required_argument, NULL, CLI_OPT_DASHBOARD},               \
    {                                                                        \
        "dashboard-token", required_argument, NULL, CLI_OPT_DASHBOARD_TOKEN  \
    }
#define CLI_DASHBOARD_USAGE                                                                  \
    "      --dashboard ADDR    a live web page of the connections on ADDR (PORT or :PORT:\n"  \
    "                          loopback); one loop only (not with --workers)\n"              \
    "      --dashboard-token T the page and its feed want ?token=T in the URL\n"

typedef struct cli_dash cli_dash_t;

/* Parse ADDR for --dashboard: ":PORT" or "PORT" bind to loopback (127.0.0.1);
 * "HOST:PORT" as given. Prints why and returns -EINVAL on a bad address. */
int cli_dash_parse(const char *cmd, const char *text, tt_addr_t *out);
/* Serve the dashboard of `watched` (a single-loop server) on `addr`; `token`
 * (NULL: none) must be given as ?token=T on the page and the WebSocket URL. On
 * success prints "tether CMD: listening on ADDR (dashboard)" on stdout. 0 or
 * -errno (said on stderr). */
int cli_dash_start(tt_loop_t *loop, tt_server_t *watched, const char *cmd, const tt_addr_t *addr,
                   const char *token, cli_dash_t **out);
/* Stop: before `watched` closes. NULL is fine. */
void cli_dash_close(cli_dash_t *d);

#endif
