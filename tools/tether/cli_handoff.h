/* --handoff SOCKET / --takeover SOCKET: listener hand-over for the server
 * commands (docs/scaling.md). */
#ifndef TT_CLI_HANDOFF_H
#define TT_CLI_HANDOFF_H

#include <stddef.h>

#include "tether.h"

#define CLI_HANDOFF_MAX 64 /* listeners one process may take over */
/* After a hand-over: the old process stops accepting at once and gives requests
 * already in flight on its newest connections this long before it ends them. */
#define CLI_HANDOFF_DRAIN_MS 250

#define CLI_HANDOFF_USAGE                                                                  \
    "      --handoff SOCKET    offer the listening sockets to a successor on this Unix\n"   \
    "                          socket (mode 0600); once it serves, stop accepting, finish\n" \
    "                          the open connections and exit 0\n"                          \
    "      --takeover SOCKET   start from a predecessor's listening sockets (no\n"          \
    "                          --listen): no connection is refused or reset meanwhile\n"

/* The successor: the predecessor's listeners into fds (at most max) and the link to
 * it. CLI_EXIT_OK, or CLI_EXIT_FAIL after one line on stderr. */
int cli_takeover(const char *cmd, const char *path, int *fds, size_t max, size_t *n, int *link);
/* Serving now: tell the predecessor and wait until it let go (a failure is only said). */
int cli_takeover_ready(const char *cmd, const char *path, int link);

/* The predecessor, one loop: on_taken(arg) runs on the loop once a successor serves. */
typedef struct cli_offer {
    const char *cmd;
    tt_handoff_t *h;
    void (*on_taken)(void *arg);
    void *arg;
} cli_offer_t;
int cli_offer_start(cli_offer_t *o, tt_loop_t *loop, const char *path, const int *fds, size_t n);
void cli_offer_close(cli_offer_t *o);
/* The predecessor, a worker set: the offer on worker 0's loop; once taken, SIGTERM
 * comes to the calling thread (the one that waits for signals), which stops the set
 * as on any SIGTERM. Close it before stopping the set. */
int cli_offer_workers(const char *cmd, tt_workers_t *set, const char *path);
void cli_offer_workers_close(tt_workers_t *set);
/* After the wake-up: when it was the hand-over, stop every worker accepting and
 * wait CLI_HANDOFF_DRAIN_MS (then stop the set as usual); else nothing. */
void cli_offer_workers_drain(tt_workers_t *set);

#endif
