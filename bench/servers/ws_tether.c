/* tether WebSocket server for the WebSocket section of the benchmark, public header
 * only: the WebSocket server layer (tt_server_opts_t.websocket) and a group.
 *
 * usage: ws_tether PORT fanout   every message a connection sends goes to all the
 *                                other connections: tt_group_broadcast, which frames
 *                                the message once and shares the bytes
 *        ws_tether PORT echo     every message comes back with its kind (tt_ws_send),
 *                                as `tether echo --ws` does
 *   listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it. No permessage-deflate (the
 *   load generator offers none, so no server compresses). */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tether.h"

static tt_loop_t *loop;
static tt_group_t *room;
static bool fanout;

static void on_open(tt_conn_t *conn)
{
    if (fanout && tt_group_join(room, conn) < 0)
        tt_destroy(conn, 0);
}

static void on_message(tt_conn_t *conn, const void *msg, size_t len)
{
    if (fanout) {
        /* Each recipient's own high-water mark and cap apply: a slow receiver is
         * closed alone rather than stalling the sender. */
        if (tt_group_broadcast(room, msg, len, conn) < 0)
            tt_destroy(conn, 0);
        return;
    }
    if (tt_ws_send(conn, tt_conn_message_kind(conn), msg, len) < 0)
        tt_destroy(conn, 0);
}

static void on_signal(int sig)
{
    (void)sig;
    tt_loop_stop(loop);
}

struct conn_list {
    tt_conn_t **v;
    size_t n, cap;
};

static int collect(tt_conn_t *conn, void *arg)
{
    struct conn_list *l = arg;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        tt_conn_t **v = realloc(l->v, cap * sizeof(*v));

        if (v == NULL)
            return 1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = conn;
    return 0;
}

int main(int argc, char **argv)
{
    tt_conn_handlers_t h = {.on_open = on_open, .on_message = on_message};
    tt_ws_opts_t wso = {.default_kind = TT_WS_BINARY};
    struct conn_list conns = {0};
    tt_server_opts_t opts;
    struct sigaction sa;
    tt_server_t *srv;
    tt_addr_t addr;
    int port, err;

    if (argc != 3 || (port = atoi(argv[1])) <= 0 || port > 65535 ||
        (strcmp(argv[2], "fanout") != 0 && strcmp(argv[2], "echo") != 0)) {
        fprintf(stderr, "usage: %s PORT fanout|echo\n", argv[0]);
        return 2;
    }
    fanout = strcmp(argv[2], "fanout") == 0;
    memset(&opts, 0, sizeof(opts));
    opts.websocket = &wso;
    signal(SIGPIPE, SIG_IGN);
    err = tt_loop_init(&loop);
    if (err == 0)
        err = tt_group_init(loop, "bench", &room);
    if (err == 0)
        err = tt_addr_parse(&addr, "127.0.0.1", (uint16_t)port);
    if (err == 0)
        err = tt_server_listen(loop, &addr, &opts, &h, NULL, &srv);
    if (err < 0) {
        fprintf(stderr, "ws_tether: %s\n", tt_strerror(err));
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    tt_loop_run(loop, TT_RUN_DEFAULT);

    tt_server_foreach(srv, collect, &conns);
    for (size_t i = 0; i < conns.n; i++)
        tt_destroy(conns.v[i], 0);
    free(conns.v);
    tt_server_close(srv);
    tt_loop_run(loop, TT_RUN_DEFAULT);
    tt_group_close(room);
    err = tt_loop_close(loop);
    if (err < 0) {
        fprintf(stderr, "ws_tether: close: %s\n", tt_strerror(err));
        return 1;
    }
    return 0;
}
