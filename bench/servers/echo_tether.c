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
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tether.h"

static tt_loop_t *loop;
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

static void on_signal(int sig)
{
    (void)sig;
    tt_loop_stop(loop); /* async-signal-safe: a flag and an eventfd write */
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
    tt_conn_handlers_t h = {.on_open = on_open, .on_data = on_data};
    struct conn_list conns = {0};
    tt_server_opts_t opts;
    struct sigaction sa;
    tt_server_t *srv;
    tt_addr_t addr;
    int port = 0, err;
    bool is_unix;

    is_unix = argc >= 2 && strncmp(argv[1], TT_UNIX_PREFIX, strlen(TT_UNIX_PREFIX)) == 0;
    if (argc < 2 || argc > 5 || (!is_unix && ((port = atoi(argv[1])) <= 0 || port > 65535)) ||
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
    signal(SIGPIPE, SIG_IGN);
    err = tt_loop_init(&loop);
    if (err == 0)
        err = is_unix ? tt_addr_parse(&addr, argv[1], 0)
                      : tt_addr_parse(&addr, "127.0.0.1", (uint16_t)port);
    if (err == 0)
        err = tt_server_listen(loop, &addr, &opts, &h, NULL, &srv);
    if (err < 0) {
        fprintf(stderr, "echo_tether: %s\n", tt_strerror(err));
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    tt_loop_run(loop, TT_RUN_DEFAULT);

    /* Orderly shutdown: drop every connection, then let the loop deliver their
     * on_close and release them, so tt_loop_close() finds nothing open. */
    tt_server_foreach(srv, collect, &conns);
    for (size_t i = 0; i < conns.n; i++)
        tt_destroy(conns.v[i], 0);
    free(conns.v);
    tt_server_close(srv);
    tt_loop_run(loop, TT_RUN_DEFAULT);
    err = tt_loop_close(loop);
    if (err < 0) {
        fprintf(stderr, "echo_tether: close: %s\n", tt_strerror(err));
        return 1;
    }
    return 0;
}
