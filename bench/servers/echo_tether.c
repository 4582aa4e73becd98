/* tether echo server, using only the public header: on_data hands the lent bytes
 * straight to tt_send(), which writes them at once when nothing is queued and
 * copies only what the socket did not take. TCP_NODELAY is tether's default.
 *
 * usage: echo_tether PORT|unix:PATH [HEARTBEAT_MS [DEAD_AFTER_MS [reuseport]]]
 *   listens on 127.0.0.1:PORT, or on a Unix stream socket at PATH (unix:@NAME:
 *   abstract; a stale socket file is replaced, the file removed on exit);
 *   SIGINT/SIGTERM end it. With HEARTBEAT_MS every
 *   connection sends a 1-byte heartbeat after that long without writing, which is
 *   how bench/heartbeat_cpu.sh measures the CPU cost of heartbeating idle
 *   connections. DEAD_AFTER_MS (default 0: never) closes a connection whose peer
 *   showed no sign of life for that long; the heartbeat is then the byte 'P' and
 *   the peer must answer 'Q' (bench/idleconns -a does).
 *   "reuseport" listens with SO_REUSEPORT, so several processes share the port
 *   (bench/hold.sh: more connections than one process may hold descriptors). */
#include "tether_main.h"

static uint64_t heartbeat_ms, dead_after_ms;

static void on_open(tt_conn_t *conn)
{
    /* With a dead-after time the peer must answer: ping 'P', pong 'Q' (bench/idleconns
     * -a answers). Without one, the heartbeat is a bare newline nobody answers. */
    int err;

    if (heartbeat_ms == 0)
        return; /* no liveness state at all: the idle-memory figure is a plain connection */
    err = dead_after_ms > 0 ? tt_conn_set_heartbeat_bytes(conn, "P", 1, "Q", 1)
                            : tt_conn_set_heartbeat_bytes(conn, "\n", 1, NULL, 0);
    if (err < 0 || tt_conn_set_heartbeat(conn, heartbeat_ms, dead_after_ms) < 0)
        tt_destroy(conn, 0);
}

static void on_data(tt_conn_t *conn, const void *data, size_t len, size_t pending)
{
    (void)pending;
    /* TT_SEND_FULL is fine for an echo: the peer bounds what it has in flight. */
    if (tt_send(conn, data, len) < 0)
        tt_destroy(conn, 0);
}

int main(int argc, char **argv)
{
    tt_conn_handlers_t h = {.on_open = on_open, .on_data = on_data};
    tt_server_opts_t opts;

    if (argc < 2 || argc > 5 || (!serve_is_unix(argv[1]) && serve_port(argv[1]) == 0) ||
        (argc == 5 && strcmp(argv[4], "reuseport") != 0)) {
        fprintf(stderr, "usage: %s PORT|unix:PATH [HEARTBEAT_MS [DEAD_AFTER_MS [reuseport]]]\n",
                argv[0]);
        return 2;
    }
    if (argc >= 3)
        heartbeat_ms = strtoull(argv[2], NULL, 10);
    if (argc >= 4)
        dead_after_ms = strtoull(argv[3], NULL, 10);
    memset(&opts, 0, sizeof(opts));
    opts.reuseport = argc == 5;
    if (serve_start("echo_tether", argv[1], &opts, &h) < 0)
        return 1;
    serve_run();
    return serve_close("echo_tether");
}
