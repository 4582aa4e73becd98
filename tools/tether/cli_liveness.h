/* --idle-timeout, --heartbeat and --detect-within, shared by `tether echo` and
 * `tether cat` (cli_liveness.c). */
#ifndef TT_CLI_LIVENESS_H
#define TT_CLI_LIVENESS_H

#include <getopt.h>
#include <stdbool.h>

#include "tether.h"

/* Option codes above any short option character. */
#define CLI_OPT_IDLE_TIMEOUT 0x1100
#define CLI_OPT_HEARTBEAT 0x1101
#define CLI_OPT_DETECT_WITHIN 0x1102

/* The three entries for a struct option array. */
#define CLI_LIVENESS_LONGOPTS                                                                   \
    {"idle-timeout", required_argument, NULL, CLI_OPT_IDLE_TIMEOUT},                            \
        {"heartbeat", required_argument, NULL, CLI_OPT_HEARTBEAT},                              \
        {"detect-within", required_argument, NULL, CLI_OPT_DETECT_WITHIN}

/* Usage lines, in the style of the commands' help. */
#define CLI_LIVENESS_USAGE                                                                      \
    "      --idle-timeout MS   close a connection with no traffic either way for MS\n"         \
    "                          milliseconds ('idle timeout')\n"                                \
    "      --heartbeat MS      send a heartbeat after MS ms without sending; close when\n"    \
    "                          nothing came for 3.6 x MS ('heartbeat timeout')\n"              \
    "      --detect-within MS  notice a vanished peer within MS ms: sets heartbeat,\n"        \
    "                          keepalive and TCP user timeout (docs/liveness.md); a peer\n"   \
    "                          that answers heartbeats must keep answering (so a stopped\n"   \
    "                          tether peer is noticed too), others are judged by TCP.\n"      \
    "                          Heartbeats are the lines 'tether: ping' / 'tether: pong';\n"    \
    "                          tether answers and hides them\n"

typedef struct cli_liveness {
    tt_liveness_opts_t o;
    bool any; /* an option was given */
} cli_liveness_t;

/* Parse one of the three options (`ch` is its code) into *lv. Returns 0, or
 * CLI_EXIT_USAGE after printing why. */
int cli_liveness_option(const char *cmd, int ch, const char *arg, cli_liveness_t *lv);
/* The settings to apply, or NULL when no option was given. */
const tt_liveness_opts_t *cli_liveness_opts(const cli_liveness_t *lv);

#endif
