/* libev echo server: one ev_io watcher per connection, switched between reading and
 * writing the way libev intends (ev_io_set on a stopped watcher). Same policy as the
 * hand-written epoll loop: echo at once, buffer only a partial write, and stop
 * reading until that remainder is out.
 *
 * usage: echo_libev PORT      listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it. */
#define _GNU_SOURCE
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF_SIZE (64 * 1024)

struct conn {
    ev_io io; /* first, so the watcher pointer is the connection pointer */
    char *buf;
    size_t len;
};

static char rbuf[READ_BUF_SIZE];

static void conn_free(struct ev_loop *loop, struct conn *c)
{
    ev_io_stop(loop, &c->io);
    close(c->io.fd);
    free(c->buf);
    free(c);
}

static void conn_switch(struct ev_loop *loop, struct conn *c, int events)
{
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->io.fd, events);
    ev_io_start(loop, &c->io);
}

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = (struct conn *)w;
    ssize_t n, wr;

    if (revents & EV_WRITE) {
        wr = write(w->fd, c->buf, c->len);
        if (wr < 0) {
            if (errno != EAGAIN && errno != EINTR)
                conn_free(loop, c);
            return;
        }
        memmove(c->buf, c->buf + wr, c->len - (size_t)wr);
        c->len -= (size_t)wr;
        if (c->len == 0) {
            free(c->buf);
            c->buf = NULL;
            conn_switch(loop, c, EV_READ);
        }
        return;
    }
    n = read(w->fd, rbuf, sizeof(rbuf));
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_free(loop, c);
        return;
    }
    wr = write(w->fd, rbuf, (size_t)n);
    if (wr == n)
        return;
    if (wr < 0) {
        if (errno != EAGAIN) {
            conn_free(loop, c);
            return;
        }
        wr = 0;
    }
    c->len = (size_t)(n - wr);
    c->buf = malloc(c->len);
    if (c->buf == NULL) {
        conn_free(loop, c);
        return;
    }
    memcpy(c->buf, rbuf + wr, c->len);
    conn_switch(loop, c, EV_WRITE);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    for (;;) {
        struct conn *c;
        int one = 1;
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0)
            return;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        ev_io_init(&c->io, conn_cb, fd, EV_READ);
        ev_io_start(loop, &c->io);
    }
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct ev_loop *loop = EV_DEFAULT;
    ev_io accept_w;
    ev_signal si, st;
    int one = 1;
    int port, fd;

    if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, SOMAXCONN) < 0) {
        perror("echo_libev: listen");
        close(fd);
        return 1;
    }
    ev_io_init(&accept_w, accept_cb, fd, EV_READ);
    ev_io_start(loop, &accept_w);
    ev_signal_init(&si, signal_cb, SIGINT);
    ev_signal_start(loop, &si);
    ev_signal_init(&st, signal_cb, SIGTERM);
    ev_signal_start(loop, &st);
    ev_run(loop, 0);
    /* Connections still open at shutdown are reclaimed with the process. */
    close(fd);
    ev_loop_destroy(loop);
    return 0;
}
