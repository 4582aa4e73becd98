/* An echo client: connect, send one line, print the reply, end gracefully and
 * print why the connection closed.
 *
 *   ./echo_client [ADDR:PORT] [TEXT]     (default 127.0.0.1:7000 "hello, tether")
 *
 * Shows: connecting with a timeout, sending, reading a reply that may arrive in
 * pieces, tt_end (our FIN, then wait for the server's), and the close report. */
#include <stdio.h>
#include <string.h>

#include "tether.h"

typedef struct client {
    char line[512];   /* what we send, newline included */
    size_t want, got; /* the reply is complete when got == want */
    char reply[512];
    int status;       /* exit status */
} client_t;

static void on_open(tt_conn_t *conn)
{
    client_t *cl = tt_conn_get_data(conn);
    printf("connected; sending: %s", cl->line);
    tt_send_text(conn, cl->line); /* copied: cl->line could change at once */
}

static void on_data(tt_conn_t *conn, const void *data, size_t len, size_t pending)
{
    client_t *cl = tt_conn_get_data(conn);
    (void)pending;
    /* TCP is a byte stream: the reply may come in several reads. */
    if (len > cl->want - cl->got)
        len = cl->want - cl->got;
    memcpy(cl->reply + cl->got, data, len);
    cl->got += len;
    if (cl->got == cl->want) {
        printf("reply: %.*s", (int)cl->got, cl->reply);
        tt_end(conn, NULL, 0); /* graceful: FIN now, on_close once the server's FIN comes */
    }
}

static void on_close(tt_conn_t *conn, const tt_close_info_t *info)
{
    client_t *cl = tt_conn_get_data(conn);
    printf("closed: %s", tt_close_kind_name(info->kind));
    if (info->error != 0)
        printf(" (%s)", tt_strerror(info->error));
    printf(", %llu bytes written\n", (unsigned long long)info->bytes_written);
    cl->status = info->kind == TT_CLOSE_LOCAL_END && cl->got == cl->want ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *where = argc > 1 ? argv[1] : "127.0.0.1:7000";
    const char *text = argc > 2 ? argv[2] : "hello, tether";
    tt_conn_handlers_t h = {.on_open = on_open, .on_data = on_data, .on_close = on_close};
    tt_connect_opts_t opts = {.timeout_ms = 5000};
    client_t cl = {.status = 1};
    tt_loop_t *loop;
    tt_conn_t *conn;
    tt_addr_t addr;
    int err;

    if (tt_addr_parse_hostport(&addr, where) < 0 || strlen(text) + 2 > sizeof(cl.line)) {
        fprintf(stderr, "usage: %s [ADDR:PORT] [TEXT]\n", argv[0]);
        return 2;
    }
    cl.want = (size_t)snprintf(cl.line, sizeof(cl.line), "%s\n", text);
    if ((err = tt_loop_init(&loop)) < 0)
        return 1;
    /* on_open or on_close comes from the loop, never from inside tt_connect. */
    err = tt_connect(loop, &addr, &opts, &h, &cl, &conn);
    if (err < 0)
        fprintf(stderr, "connect %s: %s\n", where, tt_strerror(err));
    tt_loop_run(loop, TT_RUN_DEFAULT); /* returns once the connection has closed */
    tt_loop_close(loop);
    return cl.status;
}
