/* A WebSocket client: connect to a ws:// URL, send each argument as a text
 * message, print what comes back, close with 1000 after the last answer.
 *
 *   tether echo --ws --listen 127.0.0.1:8080 &
 *   ./ws_client ws://127.0.0.1:8080/ hello "grüße"
 *
 * Exit status 0 when every message was answered and the closing handshake
 * completed, 1 otherwise. */
#include <stdio.h>
#include <string.h>

#include "tether.h"

static char **words;
static int left, next_word, status = 1;

static void send_next(tt_conn_t *c)
{
    if (next_word < left)
        tt_ws_send_text(c, words[next_word++]);
    else
        tt_ws_close(c, TT_WS_NORMAL, "done");
}

static void on_open(tt_conn_t *c)
{
    printf("connected (protocol \"%s\", deflate %s)\n", tt_ws_protocol(c),
           tt_ws_deflated(c) ? "on" : "off");
    send_next(c);
}

static void on_message(tt_conn_t *c, const void *msg, size_t len)
{
    printf("%s: %.*s\n", tt_conn_message_kind(c) == TT_WS_TEXT ? "text" : "binary", (int)len,
           (const char *)msg);
    send_next(c);
}

static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    if (info->kind == TT_CLOSE_WS_CLOSED) {
        printf("closed: %d %s\n", info->ws_code, info->ws_reason);
        status = next_word == left ? 0 : 1;
    } else {
        fprintf(stderr, "ws_client: %s: %s%s%s\n", tt_close_kind_name(info->kind),
                tt_strerror(info->error), *info->reason ? ": " : "", info->reason);
    }
}

int main(int argc, char **argv)
{
    tt_loop_t *loop;
    tt_conn_t *conn;
    tt_conn_handlers_t h = {.on_open = on_open, .on_message = on_message, .on_close = on_close};
    tt_ws_client_opts_t o = {.deflate = true, .connect = {.timeout_ms = 5000}};
    int err;

    if (argc < 2) {
        fprintf(stderr, "usage: ws_client ws://HOST:PORT/PATH [MESSAGE...]\n");
        return 2;
    }
    words = argv + 2;
    left = argc - 2;
    if ((err = tt_loop_init(&loop)) < 0 ||
        (err = tt_ws_connect(loop, argv[1], &o, &h, NULL, &conn)) < 0) {
        fprintf(stderr, "ws_client: %s\n", tt_strerror(err));
        return 1;
    }
    tt_loop_run(loop, TT_RUN_DEFAULT); /* until the connection has closed */
    tt_loop_close(loop);
    return status;
}
