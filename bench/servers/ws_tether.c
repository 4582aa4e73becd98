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
#include "tether_main.h"

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

int main(int argc, char **argv)
{
    tt_conn_handlers_t h = {.on_open = on_open, .on_message = on_message};
    tt_ws_opts_t wso = {.default_kind = TT_WS_BINARY};
    tt_server_opts_t opts;
    int err;

    if (argc != 3 || serve_port(argv[1]) == 0 ||
        (strcmp(argv[2], "fanout") != 0 && strcmp(argv[2], "echo") != 0)) {
        fprintf(stderr, "usage: %s PORT fanout|echo\n", argv[0]);
        return 2;
    }
    fanout = strcmp(argv[2], "fanout") == 0;
    memset(&opts, 0, sizeof(opts));
    opts.websocket = &wso;
    if (serve_start("ws_tether", argv[1], &opts, &h) < 0)
        return 1;
    /* Before the loop runs, so before any on_open. */
    err = tt_group_init(loop, "bench", &room);
    if (err < 0) {
        fprintf(stderr, "ws_tether: %s\n", tt_strerror(err));
        return 1;
    }
    serve_run();
    tt_group_close(room);
    return serve_close("ws_tether");
}
