/* Hand-written epoll chat server: the floor for the fan-out benchmark. Every line a
 * client sends goes to every other client as it is (no prefix, no notices): one
 * write per receiver, straight from the read buffer; only what a receiver's socket
 * did not take is buffered for it (EPOLLOUT then), and a receiver whose buffer
 * would pass QUEUE_CAP is dropped, as a server must do with one that stops reading.
 * The complete lines of one read go out together, one write per receiver per
 * read: the fewest system calls a readiness server can make (a server that writes
 * each line on its own pays a write per line per receiver). A partial line at the
 * end of a read waits for the rest.
 *
 * usage: chat_epoll PORT   listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF_SIZE (64 * 1024)
#define MAX_EVENTS 256
#define LINE_MAX_LEN 8192
#define QUEUE_CAP (4u << 20)

struct client {
    bool live;
    int idx;        /* place in the list of live clients */
    char *out;      /* bytes the socket did not take */
    size_t out_len, out_cap;
    char *part;     /* the start of a line not ended yet */
    size_t part_len;
};

static struct client *cl; /* by fd */
static size_t ncl;
static int *live; /* the live fds, for the broadcast loop */
static size_t nlive;
static int epfd = -1;
static char rbuf[READ_BUF_SIZE + LINE_MAX_LEN];

static int reserve(int fd)
{
    size_t n;
    struct client *p;
    int *l;

    if ((size_t)fd < ncl)
        return 0;
    n = ncl ? ncl : 1024;
    while (n <= (size_t)fd)
        n *= 2;
    p = realloc(cl, n * sizeof(*p));
    if (p == NULL)
        return -1;
    memset(p + ncl, 0, (n - ncl) * sizeof(*p));
    cl = p;
    l = realloc(live, n * sizeof(*l));
    if (l == NULL)
        return -1;
    live = l;
    ncl = n;
    return 0;
}

static void drop(int fd)
{
    struct client *c = &cl[fd];

    if (!c->live)
        return;
    live[c->idx] = live[--nlive];
    cl[live[c->idx]].idx = c->idx;
    free(c->out);
    free(c->part);
    *c = (struct client){0};
    close(fd);
}

static void set_out(int fd, bool on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.fd = fd};

    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

/* One receiver: write at once when nothing waits, buffer the rest. */
static void deliver(int fd, const char *buf, size_t len)
{
    struct client *c = &cl[fd];
    ssize_t w = 0;

    if (c->out_len == 0) {
        w = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w == (ssize_t)len)
            return;
        if (w < 0) {
            if (errno != EAGAIN) {
                drop(fd);
                return;
            }
            w = 0;
        }
        set_out(fd, true);
    }
    size_t rest = len - (size_t)w;
    if (c->out_len + rest > QUEUE_CAP) {
        drop(fd);
        return;
    }
    if (c->out_len + rest > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + rest)
            cap *= 2;
        char *b = realloc(c->out, cap);
        if (b == NULL) {
            drop(fd);
            return;
        }
        c->out = b;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, buf + w, rest);
    c->out_len += rest;
}

static void flush_out(int fd)
{
    struct client *c = &cl[fd];
    ssize_t w = send(fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

    if (w < 0) {
        if (errno != EAGAIN)
            drop(fd);
        return;
    }
    memmove(c->out, c->out + w, c->out_len - (size_t)w);
    c->out_len -= (size_t)w;
    if (c->out_len == 0)
        set_out(fd, false);
}

static void broadcast(int from, const char *buf, size_t len)
{
    for (size_t i = 0; i < nlive; i++) {
        int fd = live[i];
        if (fd != from)
            deliver(fd, buf, len);
        if (i < nlive && live[i] != fd)
            i--; /* fd was dropped: another one took its place */
    }
}

static void on_readable(int fd)
{
    struct client *c = &cl[fd];
    size_t have = c->part_len;
    ssize_t n;

    /* The held start of a line, then the new bytes behind it. */
    if (have > 0)
        memcpy(rbuf, c->part, have);
    n = recv(fd, rbuf + have, READ_BUF_SIZE, 0);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            drop(fd);
        return;
    }
    size_t total = have + (size_t)n;
    char *last = memrchr(rbuf, '\n', total);
    size_t whole = last != NULL ? (size_t)(last - rbuf) + 1 : 0;
    if (total - whole > LINE_MAX_LEN) {
        drop(fd);
        return;
    }
    if (c->part == NULL && total > whole && (c->part = malloc(LINE_MAX_LEN)) == NULL) {
        drop(fd);
        return;
    }
    memcpy(c->part, rbuf + whole, total - whole);
    c->part_len = total - whole;
    if (whole > 0)
        broadcast(fd, rbuf, whole);
}

static int listen_on(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
        if (fd < 0)
            return;
        if (reserve(fd) < 0) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            continue;
        }
        cl[fd] = (struct client){.live = true, .idx = (int)nlive};
        live[nlive++] = fd;
    }
}

int main(int argc, char **argv)
{
    struct epoll_event evs[MAX_EVENTS];
    sigset_t mask;
    int lfd, sfd;

    if (argc != 2) {
        fprintf(stderr, "usage: chat_epoll PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    lfd = listen_on(atoi(argv[1]));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (lfd < 0 || sfd < 0 || epfd < 0) {
        perror("chat_epoll");
        return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = sfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);
    for (;;) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == sfd)
                return 0;
            if (fd == lfd) {
                accept_all(lfd);
                continue;
            }
            if ((size_t)fd >= ncl || !cl[fd].live)
                continue;
            if (evs[i].events & EPOLLOUT)
                flush_out(fd);
            if ((size_t)fd < ncl && cl[fd].live && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                on_readable(fd);
        }
    }
}
