/* What the tether benchmark servers (echo_tether, echo_tls_tether, ws_tether,
 * chat_tether) share around their handlers: the port argument, the loop (its
 * backend is the library's choice: TETHER_BACKEND=io_uring picks io_uring), a
 * listener on 127.0.0.1:PORT or a Unix socket, SIGINT/SIGTERM ending the run, and
 * the orderly shutdown that lets tt_loop_close() find nothing open. Each server is
 * one file that includes this once; `loop` and `srv` are its own. */
#ifndef TETHER_MAIN_H
#define TETHER_MAIN_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tether.h"

static tt_loop_t *loop;
static tt_server_t *srv;

/* A PORT argument: 1 to 65535, or 0 when it is none. */
static inline int serve_port(const char *arg)
{
    int port = atoi(arg);

    return port > 0 && port <= 65535 ? port : 0;
}

static inline bool serve_is_unix(const char *where)
{
    return strncmp(where, TT_UNIX_PREFIX, strlen(TT_UNIX_PREFIX)) == 0;
}

static inline void serve_on_signal(int sig)
{
    (void)sig;
    tt_loop_stop(loop); /* async-signal-safe: a flag and an eventfd write */
}

/* SIGPIPE ignored, the loop, and the server on `where`: a PORT on 127.0.0.1, or
 * unix:PATH. Returns 0, or -1 after saying why on stderr as `name`. */
static inline int serve_start(const char *name, const char *where, const tt_server_opts_t *opts,
                              const tt_conn_handlers_t *h)
{
    tt_addr_t addr;
    int err;

    signal(SIGPIPE, SIG_IGN);
    err = tt_loop_init(&loop);
    if (err == 0)
        err = serve_is_unix(where) ? tt_addr_parse(&addr, where, 0)
                                   : tt_addr_parse(&addr, "127.0.0.1", (uint16_t)atoi(where));
    if (err == 0)
        err = tt_server_listen(loop, &addr, opts, h, NULL, &srv);
    if (err < 0) {
        fprintf(stderr, "%s: %s\n", name, tt_strerror(err));
        return -1;
    }
    return 0;
}

static inline int serve_destroy_one(tt_conn_t *conn, void *arg)
{
    (void)arg;
    tt_destroy(conn, 0); /* allowed inside foreach: the close completes from the loop */
    return 0;
}

/* Run until SIGINT or SIGTERM; then drop every connection and close the server,
 * and let the loop deliver their on_close and release them. */
static inline void serve_run(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = serve_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    tt_loop_run(loop, TT_RUN_DEFAULT);

    tt_server_foreach(srv, serve_destroy_one, NULL);
    tt_server_close(srv);
    tt_loop_run(loop, TT_RUN_DEFAULT);
}

/* Close the loop: the exit status, 1 (said on stderr as `name`) if it failed. */
static inline int serve_close(const char *name)
{
    int err = tt_loop_close(loop);

    if (err < 0) {
        fprintf(stderr, "%s: close: %s\n", name, tt_strerror(err));
        return 1;
    }
    return 0;
}

#endif
