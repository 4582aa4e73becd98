/* Hand-written epoll echo server: the floor a readiness-based library is measured
 * against. Level-triggered, one read per readiness, the bytes written back at once;
 * only the remainder of a partial write is buffered, and only then is EPOLLOUT armed
 * (and EPOLLIN dropped, so a slow reader pushes back on its writer through TCP
 * instead of growing our buffer).
 *
 * usage: echo_epoll PORT        listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it.
 *        echo_epoll unix:PATH   listens on a Unix stream socket at PATH instead
 *                               (unix:@NAME: the abstract name NAME); the file is
 *                               replaced if it exists and removed on exit. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define READ_BUF_SIZE (64 * 1024)
#define MAX_EVENTS 256

/* Per-descriptor state, indexed by fd: 16 bytes, and no buffer unless a write was
 * partial. This is the least any server must keep per connection. */
struct pending {
    char *buf;
    uint32_t len;
    uint32_t cap;
};

static struct pending *pend;
static size_t npend;
static int epfd = -1;
static const char *unix_path; /* "unix:..." argument without the prefix, or NULL */
static char rbuf[READ_BUF_SIZE];

static int pend_reserve(int fd)
{
    size_t n;
    struct pending *p;

    if ((size_t)fd < npend)
        return 0;
    n = npend ? npend : 1024;
    while (n <= (size_t)fd)
        n *= 2;
    p = realloc(pend, n * sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    memset(p + npend, 0, (n - npend) * sizeof(*p));
    pend = p;
    npend = n;
    return 0;
}

static void conn_close(int fd)
{
    free(pend[fd].buf);
    pend[fd] = (struct pending){0};
    close(fd); /* also removes it from the epoll set: we never dup() it */
}

static int set_events(int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};

    return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

/* Keep bytes the socket did not take. Returns 0 or -ENOMEM. */
static int pend_append(int fd, const char *data, size_t len)
{
    struct pending *p = &pend[fd];
    size_t need = (size_t)p->len + len;

    if (need > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        char *b;

        while (cap < need)
            cap *= 2;
        b = realloc(p->buf, cap);
        if (b == NULL)
            return -ENOMEM;
        p->buf = b;
        p->cap = (uint32_t)cap;
    }
    memcpy(p->buf + p->len, data, len);
    p->len = (uint32_t)need;
    return 0;
}

static void on_readable(int fd)
{
    ssize_t n, w;

    n = read(fd, rbuf, sizeof(rbuf));
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(fd); /* EOF or error: nothing more to echo */
        return;
    }
    w = write(fd, rbuf, (size_t)n);
    if (w == n)
        return;
    if (w < 0) {
        if (errno != EAGAIN) {
            conn_close(fd);
            return;
        }
        w = 0;
    }
    if (pend_append(fd, rbuf + w, (size_t)(n - w)) < 0 || set_events(fd, EPOLLOUT) < 0)
        conn_close(fd);
}

static void on_writable(int fd)
{
    struct pending *p = &pend[fd];
    ssize_t w;

    w = write(fd, p->buf, p->len);
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_close(fd);
        return;
    }
    memmove(p->buf, p->buf + w, p->len - (size_t)w);
    p->len -= (uint32_t)w;
    if (p->len > 0)
        return;
    /* Drained: release the buffer so an idle connection holds none. */
    free(p->buf);
    p->buf = NULL;
    p->cap = 0;
    if (set_events(fd, EPOLLIN) < 0)
        conn_close(fd);
}

static void on_accept(int lfd)
{
    for (;;) {
        struct epoll_event ev = {.events = EPOLLIN};
        int one = 1;
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0)
            return; /* EAGAIN, or EMFILE etc.: level-triggered, we will be back */
        if (unix_path == NULL)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        ev.data.fd = fd;
        if (pend_reserve(fd) < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            close(fd);
    }
}

static int listen_on(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, SOMAXCONN) < 0)
        goto fail;
    return fd;

fail:
    close(fd);
    return -1;
}

/* A Unix stream listener at `path` ("@name": abstract). */
static int listen_unix(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    socklen_t len;
    int fd;

    if (n == 0 || n >= sizeof(sun.sun_path))
        return -1;
    memcpy(sun.sun_path, path, n);
    if (path[0] == '@')
        sun.sun_path[0] = '\0';
    else
        unlink(path);
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sun, len) < 0 || listen(fd, SOMAXCONN) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    struct epoll_event evs[MAX_EVENTS];
    struct epoll_event ev = {.events = EPOLLIN};
    sigset_t mask;
    int lfd, sfd, port = 0;
    int running = 1;

    if (argc == 2 && strncmp(argv[1], "unix:", 5) == 0)
        unix_path = argv[1] + 5;
    else if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT | unix:PATH\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Signals arrive as readable events, so shutdown happens between iterations. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    lfd = unix_path != NULL ? listen_unix(unix_path) : listen_on(port);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || lfd < 0 || epfd < 0) {
        perror("echo_epoll");
        return 1;
    }
    ev.data.fd = lfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = sfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);

    while (running) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);

        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;

            if (fd == lfd)
                on_accept(lfd);
            else if (fd == sfd)
                running = 0;
            else if (evs[i].events & EPOLLOUT)
                on_writable(fd);
            else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(fd); /* errors surface as a failed read */
        }
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
    }
    for (size_t fd = 0; fd < npend; fd++)
        free(pend[fd].buf);
    free(pend);
    close(lfd);
    if (unix_path != NULL && unix_path[0] != '@')
        unlink(unix_path);
    close(sfd);
    close(epfd);
    return 0;
}
