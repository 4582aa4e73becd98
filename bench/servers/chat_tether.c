/* tether chat server for the fan-out benchmark, public header only: the library's
 * broadcast without the CLI's names and notices. Lines are framed by the library
 * (tt_frame_line); each line goes back out with its newline to every other
 * connection through tt_server_broadcast (except = the sender), which stores the
 * bytes once and writes them at once to each receiver with nothing queued. A
 * receiver whose queue would pass 4 MiB is closed (TT_CLOSE_SEND_OVERFLOW), as
 * `tether chat` does.
 *
 * usage: chat_tether PORT   listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it.
 *   TETHER_BACKEND=io_uring picks the io_uring backend. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tether.h"

#define LINE_MAX_LEN 8192

static tt_loop_t *loop;
static tt_server_t *srv;

static void on_message(tt_conn_t *conn, const void *msg, size_t len)
{
    char line[LINE_MAX_LEN + 1];

    memcpy(line, msg, len); /* the framer took the newline off */
    line[len] = '\n';
    tt_server_broadcast(srv, line, len + 1, conn);
}

static void on_signal(int sig)
{
    (void)sig;
    tt_loop_stop(loop);
}

static int destroy_one(tt_conn_t *conn, void *arg)
{
    (void)arg;
    tt_destroy(conn, 0);
    return 0;
}

int main(int argc, char **argv)
{
    tt_conn_handlers_t h = {.on_message = on_message};
    tt_frame_opts_t frame = tt_frame_line(LINE_MAX_LEN);
    tt_server_opts_t opts;
    struct sigaction sa;
    tt_addr_t addr;
    int port, err;

    if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    memset(&opts, 0, sizeof(opts));
    opts.frame = &frame;
    opts.queue_cap = (size_t)4 << 20;
    signal(SIGPIPE, SIG_IGN);
    err = tt_loop_init(&loop);
    if (err == 0)
        err = tt_addr_parse(&addr, "127.0.0.1", (uint16_t)port);
    if (err == 0)
        err = tt_server_listen(loop, &addr, &opts, &h, NULL, &srv);
    if (err < 0) {
        fprintf(stderr, "chat_tether: %s\n", tt_strerror(err));
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    tt_loop_run(loop, TT_RUN_DEFAULT);

    /* Destroying inside foreach is allowed: the close completes from the loop. */
    tt_server_foreach(srv, destroy_one, NULL);
    tt_server_close(srv);
    tt_loop_run(loop, TT_RUN_DEFAULT);
    err = tt_loop_close(loop);
    if (err < 0) {
        fprintf(stderr, "chat_tether: close: %s\n", tt_strerror(err));
        return 1;
    }
    return 0;
}
