/* libwebsockets server for the WebSocket section of the benchmark, written the way
 * the library's own minimal examples are: lws_write() only from
 * LWS_CALLBACK_SERVER_WRITEABLE, one message per writeable callback, and for
 * fan-out a shared ring of messages that each connection drains at its own pace
 * (lws_callback_on_writable_all_protocol after each new message). Default event
 * loop (poll), no extensions (no permessage-deflate), one service thread.
 *
 * usage: ws_lws PORT echo     every message comes back with its kind
 *        ws_lws PORT fanout   every message goes to all the other connections
 *   listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it. */
#include <libwebsockets.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 1024 /* fan-out messages kept; a connection further behind is closed */
#define MAX_QUEUE 64

struct msg {
    unsigned char *buf; /* LWS_PRE bytes of room, then the payload */
    size_t len;
    bool binary;
};

struct session {
    /* echo: whole messages waiting to go back, oldest first */
    struct msg q[MAX_QUEUE];
    unsigned qhead, qlen;
    /* the message being received, until its last fragment */
    unsigned char *rx;
    size_t rx_len, rx_cap;
    /* fan-out: the next ring entry to send */
    uint64_t next;
    bool sender;
};

static bool fanout;
static volatile sig_atomic_t stop;
static struct lws_context *context;
static struct msg ring[RING];
static uint64_t ring_head; /* entries ever added */

static int append_rx(struct session *s, const void *in, size_t len)
{
    if (s->rx_len + len > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 4096;
        unsigned char *b;

        while (cap < s->rx_len + len)
            cap *= 2;
        b = realloc(s->rx, LWS_PRE + cap);
        if (b == NULL)
            return -1;
        s->rx = b;
        s->rx_cap = cap;
    }
    memcpy(s->rx + LWS_PRE + s->rx_len, in, len);
    s->rx_len += len;
    return 0;
}

/* Take the received message out of the session as a buffer with LWS_PRE room. */
static struct msg take_rx(struct session *s, bool binary)
{
    struct msg m = {.buf = s->rx, .len = s->rx_len, .binary = binary};

    s->rx = NULL;
    s->rx_len = s->rx_cap = 0;
    if (m.buf == NULL)
        m.buf = malloc(LWS_PRE + 1);
    return m;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct session *s = user;

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof(*s));
        s->next = ring_head;
        break;
    case LWS_CALLBACK_CLOSED:
        free(s->rx);
        for (unsigned i = 0; i < s->qlen; i++)
            free(s->q[(s->qhead + i) % MAX_QUEUE].buf);
        s->qlen = 0;
        break;
    case LWS_CALLBACK_RECEIVE:
        if (append_rx(s, in, len) < 0)
            return -1;
        if (!lws_is_final_fragment(wsi))
            break;
        if (fanout) {
            struct msg *slot = &ring[ring_head % RING];

            free(slot->buf);
            *slot = take_rx(s, lws_frame_is_binary(wsi));
            ring_head++;
            s->sender = true;
            s->next = ring_head; /* not back to the sender */
            lws_callback_on_writable_all_protocol(context, lws_get_protocol(wsi));
        } else {
            if (s->qlen == MAX_QUEUE)
                return -1; /* a client that sends but does not read */
            s->q[(s->qhead + s->qlen++) % MAX_QUEUE] = take_rx(s, lws_frame_is_binary(wsi));
            lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        struct msg *m;

        if (fanout) {
            if (s->sender)
                s->next = ring_head;
            if (s->next == ring_head)
                break;
            if (ring_head - s->next > RING)
                return -1; /* fell behind the ring: closed */
            m = &ring[s->next % RING];
            if (lws_write(wsi, m->buf + LWS_PRE, m->len,
                          m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int)m->len)
                return -1;
            if (++s->next != ring_head)
                lws_callback_on_writable(wsi);
            break;
        }
        if (s->qlen == 0)
            break;
        m = &s->q[s->qhead];
        if (lws_write(wsi, m->buf + LWS_PRE, m->len,
                      m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int)m->len)
            return -1;
        free(m->buf);
        s->qhead = (s->qhead + 1) % MAX_QUEUE;
        if (--s->qlen > 0)
            lws_callback_on_writable(wsi);
        break;
    }
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    /* rx_buffer_size 64 KiB: a 16 KiB message arrives in one RECEIVE callback */
    {"bench", callback, sizeof(struct session), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
    if (context != NULL)
        lws_cancel_service(context);
}

int main(int argc, char **argv)
{
    struct lws_context_creation_info info;
    struct sigaction sa;
    int port;

    if (argc != 3 || (port = atoi(argv[1])) <= 0 || port > 65535 ||
        (strcmp(argv[2], "fanout") != 0 && strcmp(argv[2], "echo") != 0)) {
        fprintf(stderr, "usage: %s PORT fanout|echo\n", argv[0]);
        return 2;
    }
    fanout = strcmp(argv[2], "fanout") == 0;
    lws_set_log_level(LLL_ERR, NULL);
    memset(&info, 0, sizeof(info));
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.fd_limit_per_thread = 0; /* the process limit */
    context = lws_create_context(&info);
    if (context == NULL) {
        fprintf(stderr, "ws_lws: lws_create_context failed\n");
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!stop && lws_service(context, 0) >= 0)
        ;
    lws_context_destroy(context);
    for (unsigned i = 0; i < RING; i++)
        free(ring[i].buf);
    return 0;
}
