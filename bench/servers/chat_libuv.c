/* libuv chat server for the fan-out benchmark, written the way a performance-aware
 * libuv user would: every line a client sends goes to every other client as it is;
 * to a receiver with nothing queued uv_try_write() first, and only what the socket
 * did not take goes through uv_write() of the line's one shared, reference-counted
 * copy. A receiver whose queue would pass 4 MiB is closed.
 *
 * usage: chat_libuv PORT   listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define READ_BUF_SIZE (64 * 1024)
#define LINE_MAX_LEN 8192
#define QUEUE_CAP ((size_t)4 << 20)

struct client {
    uv_tcp_t tcp;
    struct client *prev, *next;
    char part[LINE_MAX_LEN];
    size_t part_len;
    int closing;
};

struct shared {
    unsigned refs;
    size_t len;
    char data[];
};

struct write_req {
    uv_write_t req;
    struct shared *s;
};

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sig_int, sig_term;
static char rbuf[READ_BUF_SIZE];
static struct client *clients;

static void on_close(uv_handle_t *h) { free(h); }

static void drop(struct client *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void shared_unref(struct shared *s)
{
    if (--s->refs == 0)
        free(s);
}

static void write_cb(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    (void)status; /* an error closes the client on its next read */
    shared_unref(w->s);
    free(w);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h, (void)suggested;
    buf->base = rbuf;
    buf->len = sizeof(rbuf);
}

static void broadcast(struct client *from, const char *line, size_t len)
{
    struct shared *s = NULL;
    struct client *c, *next;

    for (c = clients; c != NULL; c = next) {
        next = c->next;
        if (c == from)
            continue;
        uv_stream_t *st = (uv_stream_t *)&c->tcp;
        size_t off = 0;
        if (uv_stream_get_write_queue_size(st) == 0) {
            uv_buf_t b = uv_buf_init((char *)line, (unsigned)len);
            int r = uv_try_write(st, &b, 1);
            if (r == (int)len)
                continue;
            if (r > 0)
                off = (size_t)r;
            else if (r != UV_EAGAIN) {
                drop(c);
                continue;
            }
        }
        if (uv_stream_get_write_queue_size(st) + len - off > QUEUE_CAP) {
            drop(c);
            continue;
        }
        if (s == NULL) { /* one copy for every receiver that queues it */
            s = malloc(sizeof(*s) + len);
            if (s == NULL)
                return;
            s->refs = 1;
            s->len = len;
            memcpy(s->data, line, len);
        }
        struct write_req *w = malloc(sizeof(*w));
        if (w == NULL) {
            drop(c);
            continue;
        }
        w->s = s;
        s->refs++;
        uv_buf_t b = uv_buf_init(s->data + off, (unsigned)(len - off));
        if (uv_write(&w->req, st, &b, 1, write_cb) < 0) {
            shared_unref(s);
            free(w);
            drop(c);
        }
    }
    if (s != NULL)
        shared_unref(s);
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct client *c = (struct client *)st;
    const char *p = buf->base;
    size_t len;

    if (n < 0) {
        drop(c);
        return;
    }
    len = (size_t)n;
    while (len > 0 && !c->closing) {
        const char *nl = memchr(p, '\n', len);
        size_t k = nl != NULL ? (size_t)(nl - p) + 1 : len;
        if (c->part_len + k > LINE_MAX_LEN) {
            drop(c);
            return;
        }
        if (nl == NULL) {
            memcpy(c->part + c->part_len, p, k);
            c->part_len += k;
            return;
        }
        if (c->part_len > 0) {
            memcpy(c->part + c->part_len, p, k);
            broadcast(c, c->part, c->part_len + k);
            c->part_len = 0;
        } else {
            broadcast(c, p, k);
        }
        p += k;
        len -= k;
    }
}

static void on_connection(uv_stream_t *srv, int status)
{
    struct client *c;

    if (status < 0 || (c = calloc(1, sizeof(*c))) == NULL)
        return;
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->next = clients;
    if (clients != NULL)
        clients->prev = c;
    clients = c;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void on_signal(uv_signal_t *h, int sig)
{
    (void)h, (void)sig;
    uv_stop(loop);
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr;
    int err;

    if (argc != 2) {
        fprintf(stderr, "usage: chat_libuv PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    uv_tcp_init(loop, &server);
    err = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    if (err < 0) {
        fprintf(stderr, "chat_libuv: %s\n", uv_strerror(err));
        return 1;
    }
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
