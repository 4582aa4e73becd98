/* A complete echo server: every byte a client sends comes back to it.
 *
 *   ./echo_server [ADDR:PORT]      (default 127.0.0.1:7000; Ctrl-C stops it)
 *
 * Shows: listening, echoing with backpressure (stop reading a client whose send
 * queue is full until it drains), and a clean stop from a signal. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "tether.h"

static tt_loop_t *loop;

static void on_data(tt_conn_t *conn, const void *data, size_t len, size_t pending)
{
    (void)pending;
    /* `data` is lent for this call only; tt_send copies it. */
    if (tt_send(conn, data, len) == TT_SEND_FULL)
        tt_conn_read_stop(conn); /* the client is not reading: pause until on_drain */
}

static void on_drain(tt_conn_t *conn) { tt_conn_read_start(conn); }

static void on_close(tt_conn_t *conn, const tt_close_info_t *info)
{
    printf("connection %llu closed: %s\n", (unsigned long long)tt_conn_id(conn),
           tt_close_kind_name(info->kind));
}

/* tt_server_foreach may not close connections: collect them, destroy after. */
static int collect(tt_conn_t *conn, void *arg)
{
    tt_conn_t ***end = arg;
    *(*end)++ = conn;
    return 0;
}

/* tt_loop_stop is async-signal-safe: the one tether call a handler may make. */
static void on_signal(int sig) { (void)sig; tt_loop_stop(loop); }

int main(int argc, char **argv)
{
    const char *where = argc > 1 ? argv[1] : "127.0.0.1:7000";
    tt_conn_handlers_t h = {.on_data = on_data, .on_drain = on_drain, .on_close = on_close};
    char text[TT_ADDR_STRLEN];
    tt_server_t *srv;
    tt_addr_t addr;
    int err;

    if (tt_addr_parse_hostport(&addr, where) < 0) {
        fprintf(stderr, "usage: %s [ADDR:PORT]\n", argv[0]);
        return 2;
    }
    if ((err = tt_loop_init(&loop)) < 0 ||
        (err = tt_server_listen(loop, &addr, NULL, &h, NULL, &srv)) < 0) {
        fprintf(stderr, "listen %s: %s\n", where, tt_strerror(err));
        return 1;
    }
    tt_server_addr(srv, &addr); /* the real port, if 0 was asked */
    tt_addr_format(&addr, text, sizeof(text));
    printf("echo server listening on %s\n", text);
    fflush(stdout);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    tt_loop_run(loop, TT_RUN_DEFAULT); /* until a signal: the server keeps it alive */

    /* Stop listening and close every connection (FIN), then run once more so each
     * gets its on_close; the loop returns when nothing is left. */
    tt_conn_t **all = calloc(tt_server_conn_count(srv) + 1, sizeof(*all)), **end = all;
    if (all != NULL)
        tt_server_foreach(srv, collect, &end);
    tt_server_close(srv);
    for (tt_conn_t **p = all; p < end; p++)
        tt_destroy(*p, 0);
    free(all);
    tt_loop_run(loop, TT_RUN_DEFAULT);
    return tt_loop_close(loop) == 0 ? 0 : 1;
}
