/* --handoff SOCKET and --takeover SOCKET for the server commands: a restart that
 * refuses no connection (docs/scaling.md). */
#include "cli_handoff.h"

#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define STEP_MS 5000

int cli_takeover(const char *cmd, const char *path, int *fds, size_t max, size_t *n, int *link)
{
    int err = tt_handoff_take(path, STEP_MS, fds, max, n, link);
    if (err < 0) {
        cli_error("%s: --takeover %s: %s", cmd, path, tt_strerror(err));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int cli_takeover_ready(const char *cmd, const char *path, int link)
{
    int err = tt_handoff_ready(link, STEP_MS);
    if (err < 0) {
        /* We serve; the predecessor may still too. Both hold the same sockets, so
         * nothing is lost: say so and go on. */
        cli_error("%s: --takeover %s: the predecessor did not let go: %s", cmd, path,
                  tt_strerror(err));
    }
    return 0;
}

static void taken(tt_handoff_t *h, int status, void *arg)
{
    cli_offer_t *o = arg;

    if (status < 0) {
        cli_error("%s: --handoff: a successor went away before it served (%s); still serving",
                  o->cmd, tt_strerror(status));
        return;
    }
    fprintf(stderr, "tether %s: handed over to a successor; finishing the open connections\n",
            o->cmd);
    tt_handoff_close(h);
    o->h = NULL;
    o->on_taken(o->arg);
}

int cli_offer_start(cli_offer_t *o, tt_loop_t *loop, const char *path, const int *fds, size_t n)
{
    int err = tt_handoff_offer(loop, path, fds, n, taken, o, &o->h);
    if (err < 0) {
        o->h = NULL;
        cli_error("%s: --handoff %s: %s", o->cmd, path, tt_strerror(err));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

void cli_offer_close(cli_offer_t *o)
{
    if (o->h != NULL)
        tt_handoff_close(o->h);
    o->h = NULL;
}

/* ---- worker sets: the offer lives on worker 0's loop ------------------------------- */

typedef struct wctx {
    cli_offer_t offer;
    const char *path;
    pthread_t main;
    int err;
    atomic_bool taken;
} wctx_t;

static wctx_t g_w;

/* Taken: the main thread stops the set gracefully, as on SIGTERM. */
static void wake_main(void *arg)
{
    (void)arg;
    atomic_store(&g_w.taken, true);
    pthread_kill(g_w.main, SIGTERM);
}

static void stop_accepting(tt_workers_t *set, unsigned index, tt_loop_t *loop, tt_server_t *srv,
                           void *arg)
{
    (void)set, (void)index, (void)loop, (void)arg;
    if (srv != NULL)
        tt_server_stop_accepting(srv);
}

void cli_offer_workers_drain(tt_workers_t *set)
{
    if (!atomic_load(&g_w.taken))
        return;
    tt_workers_visit(set, stop_accepting, NULL);
    usleep(CLI_HANDOFF_DRAIN_MS * 1000); /* this thread only waits for signals */
}

static void offer_on_worker(tt_workers_t *set, unsigned index, tt_loop_t *loop, tt_server_t *srv,
                            void *arg)
{
    int fds[64];
    int n;

    (void)srv, (void)arg;
    if (index != 0)
        return;
    n = tt_workers_listen_fds(set, fds, 64);
    g_w.err = n > 0 ? cli_offer_start(&g_w.offer, loop, g_w.path, fds, (size_t)n) : CLI_EXIT_FAIL;
}

static void close_on_worker(tt_workers_t *set, unsigned index, tt_loop_t *loop, tt_server_t *srv,
                            void *arg)
{
    (void)set, (void)loop, (void)srv, (void)arg;
    if (index == 0)
        cli_offer_close(&g_w.offer);
}

int cli_offer_workers(const char *cmd, tt_workers_t *set, const char *path)
{
    g_w.offer = (cli_offer_t){.cmd = cmd, .on_taken = wake_main};
    g_w.path = path;
    g_w.main = pthread_self();
    g_w.err = CLI_EXIT_OK;
    if (tt_workers_visit(set, offer_on_worker, NULL) < 0)
        return CLI_EXIT_FAIL;
    return g_w.err;
}

void cli_offer_workers_close(tt_workers_t *set)
{
    tt_workers_visit(set, close_on_worker, NULL);
}
