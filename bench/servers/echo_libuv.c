/* libuv echo server, written the way a performance-aware libuv user would: one
 * shared read buffer (the loop reads one stream at a time, and read_cb consumes it
 * before the next alloc_cb), uv_try_write() first, and a uv_write() of a copy only
 * for the part the socket did not take.
 *
 * usage: echo_libuv PORT        listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it.
 *        echo_libuv unix:PATH   listens on a Unix stream socket at PATH instead, with
 *                               uv_pipe_t for the listener and the connections (the
 *                               read and write paths are the same uv_stream_t calls);
 *                               the file is replaced if it exists. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define READ_BUF_SIZE (64 * 1024)

struct write_req {
    uv_write_t req;
    uv_buf_t buf;
};

static uv_loop_t *loop;
static union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} server;
static int use_pipe;
static uv_signal_t sig_int, sig_term;
static char rbuf[READ_BUF_SIZE];

static void on_close(uv_handle_t *h)
{
    free(h);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void write_cb(uv_write_t *req, int status)
{
    struct write_req *wr = (struct write_req *)req;

    if (status < 0 && !uv_is_closing((uv_handle_t *)req->handle))
        uv_close((uv_handle_t *)req->handle, on_close);
    free(wr->buf.base);
    free(wr);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct write_req *wr;
    uv_buf_t b;
    int n;

    if (nread == 0)
        return; /* EAGAIN */
    if (nread < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    b = uv_buf_init(buf->base, (unsigned)nread);
    /* uv_try_write() refuses while earlier writes are queued, which keeps order. */
    n = uv_try_write(s, &b, 1);
    if (n == nread)
        return;
    if (n < 0 && n != UV_EAGAIN) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (n < 0)
        n = 0;
    wr = malloc(sizeof(*wr));
    if (wr == NULL)
        goto fail;
    wr->buf = uv_buf_init(malloc((size_t)nread - (size_t)n), (unsigned)(nread - n));
    if (wr->buf.base == NULL)
        goto fail_req;
    memcpy(wr->buf.base, buf->base + n, wr->buf.len);
    if (uv_write(&wr->req, s, &wr->buf, 1, write_cb) < 0)
        goto fail_buf;
    return;

fail_buf:
    free(wr->buf.base);
fail_req:
    free(wr);
fail:
    uv_close((uv_handle_t *)s, on_close);
}

static void on_connection(uv_stream_t *srv, int status)
{
    uv_stream_t *c;
    int err;

    if (status < 0)
        return;
    c = malloc(use_pipe ? sizeof(uv_pipe_t) : sizeof(uv_tcp_t));
    if (c == NULL)
        return;
    err = use_pipe ? uv_pipe_init(loop, (uv_pipe_t *)c, 0) : uv_tcp_init(loop, (uv_tcp_t *)c);
    if (err < 0) {
        free(c);
        return;
    }
    if (uv_accept(srv, c) < 0) {
        uv_close((uv_handle_t *)c, on_close);
        return;
    }
    if (!use_pipe)
        uv_tcp_nodelay((uv_tcp_t *)c, 1);
    uv_read_start(c, alloc_cb, read_cb);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    /* Connections were malloc'ed; the server and signal handles are static. */
    if (h == (uv_handle_t *)&server || h == (uv_handle_t *)&sig_int ||
        h == (uv_handle_t *)&sig_term)
        uv_close(h, NULL);
    else
        uv_close(h, on_close);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    uv_walk(s->loop, close_walk, NULL);
}

int main(int argc, char **argv)
{
    struct sockaddr_in sin;
    int port = 0, err;

    if (argc == 2 && strncmp(argv[1], "unix:", 5) == 0 && argv[1][5] != '\0') {
        use_pipe = 1;
    } else if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT | unix:PATH\n", argv[0]);
        return 2;
    }
    /* A write to a peer that has gone raises SIGPIPE on a Unix socket (libuv does not
     * send with MSG_NOSIGNAL there); Node ignores it the same way. */
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    if (use_pipe) {
        const char *path = argv[1] + 5;

        uv_pipe_init(loop, &server.pipe, 0);
        if (path[0] != '@')
            unlink(path);
        /* libuv takes a leading NUL byte as the abstract namespace only through
         * uv_pipe_bind2; a path is what this benchmark uses. */
        err = uv_pipe_bind(&server.pipe, path);
    } else {
        uv_ip4_addr("127.0.0.1", port, &sin);
        uv_tcp_init(loop, &server.tcp);
        err = uv_tcp_bind(&server.tcp, (const struct sockaddr *)&sin, 0);
    }
    if (err == 0)
        err = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection);
    if (err < 0) {
        fprintf(stderr, "echo_libuv: %s\n", uv_strerror(err));
        return 1;
    }
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
