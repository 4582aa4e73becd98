/* tether chat server for the fan-out benchmark, public header only: the library's
 * broadcast without the CLI's names and notices. Lines are framed by the library
 * (tt_frame_line); each line goes back out with its newline to every other
 * connection through tt_server_broadcast (except = the sender), which stores the
 * bytes once and writes them at once to each receiver with nothing queued (on
 * io_uring: as send requests, all in the loop's next submission). A
 * receiver whose queue would pass 4 MiB is closed (TT_CLOSE_SEND_OVERFLOW), as
 * `tether chat` does.
 *
 * usage: chat_tether PORT   listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it.
 *   TETHER_BACKEND=io_uring picks the io_uring backend. */
#include "tether_main.h"

#define LINE_MAX_LEN 8192

static void on_message(tt_conn_t *conn, const void *msg, size_t len)
{
    char line[LINE_MAX_LEN + 1];

    memcpy(line, msg, len); /* the framer took the newline off */
    line[len] = '\n';
    tt_server_broadcast(srv, line, len + 1, conn);
}

int main(int argc, char **argv)
{
    tt_conn_handlers_t h = {.on_message = on_message};
    tt_frame_opts_t frame = tt_frame_line(LINE_MAX_LEN);
    tt_server_opts_t opts;

    if (argc != 2 || serve_port(argv[1]) == 0) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    memset(&opts, 0, sizeof(opts));
    opts.frame = &frame;
    opts.queue_cap = (size_t)4 << 20;
    if (serve_start("chat_tether", argv[1], &opts, &h) < 0)
        return 1;
    serve_run();
    return serve_close("chat_tether");
}
