/* Listener hand-over: a restart that refuses no connection.
 *
 * The predecessor offers its listening sockets on a Unix stream socket. The
 * conversation is three lines:
 *
 *   successor  -> "TAKE\n"
 *   offerer    -> "FDS <n>\n" with the n listening sockets attached (SCM_RIGHTS)
 *   successor  -> "READY\n"   once it accepts on them
 *   offerer    -> end of stream, after it stopped accepting and removed its file
 *
 * Until READY nothing changes on the offering side: a successor that dies or
 * fails to start leaves the old process serving. After READY both processes hold
 * the same sockets (the same kernel accept queues) until the old one closes its
 * copies, so no connection attempt meets a closed port at any moment. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tether.h"

#define LINE_MAX_LEN 32
#define STEP_MS 10000 /* each successor gets this long for the whole exchange */

struct tt_handoff {
    tt_loop_t *loop;
    tt_server_t *srv;
    int *fds;
    size_t n;
    tt_handoff_cb cb;
    void *arg;
    tt_conn_t *peer; /* the successor being served, one at a time */
    size_t conns;    /* connections that point at us (freed when 0 and closed) */
    bool sent, ready, closed;
    char line[LINE_MAX_LEN];
    size_t line_len;
};

static void peer_failed(tt_handoff_t *h, int status)
{
    h->peer = NULL;
    h->sent = false;
    h->line_len = 0;
    if (h->cb != NULL && !h->ready && !h->closed)
        h->cb(h, status, h->arg);
}

static void on_line(tt_handoff_t *h, tt_conn_t *c)
{
    char hdr[32];
    int len;

    if (!h->sent && strcmp(h->line, "TAKE") == 0) {
        len = snprintf(hdr, sizeof(hdr), "FDS %zu\n", h->n);
        if (tt_send_fds(c, h->fds, h->n, hdr, (size_t)len) < 0) {
            tt_destroy(c, 0);
            return;
        }
        h->sent = true;
    } else if (h->sent && strcmp(h->line, "READY") == 0) {
        h->ready = true;
        /* The successor serves: the app stops accepting, our file goes, and the
         * end of the link tells the successor it may take the path. */
        if (h->cb != NULL)
            h->cb(h, 0, h->arg);
        if (h->srv != NULL) {
            tt_server_close(h->srv);
            h->srv = NULL;
        }
        tt_end(c, NULL, 0);
    } else {
        tt_destroy(c, TT_DESTROY_RESET);
        h->peer = NULL;
        if (h->cb != NULL && !h->closed)
            h->cb(h, -EPROTO, h->arg);
    }
}

static void on_data(tt_conn_t *c, const void *data, size_t len, size_t pending)
{
    tt_handoff_t *h = tt_conn_get_data(c);
    const char *p = data;

    (void)pending;
    for (size_t i = 0; i < len && h->peer == c && !h->ready; i++) {
        if (p[i] == '\n') {
            h->line[h->line_len] = '\0';
            h->line_len = 0;
            on_line(h, c);
        } else if (h->line_len + 1 < sizeof(h->line)) {
            h->line[h->line_len++] = p[i];
        } else { /* no line of ours is this long */
            tt_destroy(c, TT_DESTROY_RESET);
            peer_failed(h, -EPROTO);
            return;
        }
    }
}

static void on_open(tt_conn_t *c)
{
    tt_handoff_t *h = tt_conn_get_data(c);

    if (h->peer != NULL || h->ready || h->closed) {
        tt_destroy(c, 0); /* one successor at a time */
        return;
    }
    h->peer = c;
}

static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    tt_handoff_t *h = tt_conn_get_data(c);

    (void)info;
    if (h == NULL)
        return;
    if (h->peer == c) {
        if (!h->ready)
            peer_failed(h, -ECONNRESET);
        h->peer = NULL;
    }
    if (--h->conns == 0 && h->closed) { /* the last reference */
        free(h->fds);
        free(h);
    }
}

/* The accepted connection's user data is the offer: tt_server_get_data. */
static void srv_open(tt_conn_t *c)
{
    tt_handoff_t *h = tt_server_get_data(tt_conn_server(c));
    tt_conn_set_data(c, h);
    h->conns++;
    on_open(c);
}

static bool listening_tcp(int fd)
{
    int acc = 0;
    socklen_t len = sizeof(acc);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == 0 && acc &&
           getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
           (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
}

static int parse_path(const char *path, tt_addr_t *a)
{
    char buf[TT_ADDR_STRLEN + 8];

    if (strncmp(path, TT_UNIX_PREFIX, sizeof(TT_UNIX_PREFIX) - 1) == 0)
        return tt_addr_parse(a, path, 0);
    if (snprintf(buf, sizeof(buf), "%s%s", TT_UNIX_PREFIX, path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    return tt_addr_parse(a, buf, 0);
}

int tt_handoff_offer(tt_loop_t *loop, const char *path, const int *fds, size_t n,
                     tt_handoff_cb cb, void *arg, tt_handoff_t **out)
{
    tt_handoff_t *h;
    tt_addr_t a;
    int err;

    if (loop == NULL || path == NULL || fds == NULL || n == 0 || n > TT_SEND_FDS_MAX ||
        out == NULL)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!listening_tcp(fds[i]))
            return -EOPNOTSUPP;
    if ((err = parse_path(path, &a)) < 0)
        return err;
    h = calloc(1, sizeof(*h));
    if (h == NULL || (h->fds = malloc(n * sizeof(int))) == NULL) {
        free(h);
        return -ENOMEM;
    }
    memcpy(h->fds, fds, n * sizeof(int));
    h->n = n;
    h->loop = loop;
    h->cb = cb;
    h->arg = arg;

    tt_liveness_opts_t lv = {.idle_all_ms = STEP_MS};
    tt_server_opts_t so = {.max_conns = 2, .limit_close = true, .unix_mode = 0600,
                           .liveness = &lv, .queue_cap = 64 * 1024, .high_water = 64 * 1024};
    tt_conn_handlers_t ch = {.on_open = srv_open, .on_data = on_data, .on_close = on_close};
    err = tt_server_listen(loop, &a, &so, &ch, h, &h->srv);
    if (err < 0) {
        free(h->fds);
        free(h);
        return err;
    }
    *out = h;
    return 0;
}

int tt_handoff_close(tt_handoff_t *h)
{
    if (h == NULL || h->closed)
        return -EINVAL;
    h->closed = true;
    if (h->srv != NULL) {
        tt_server_close(h->srv);
        h->srv = NULL;
    }
    if (h->peer != NULL)
        tt_destroy(h->peer, 0);
    if (h->conns > 0)
        return 0; /* the last on_close frees us */
    free(h->fds);
    free(h);
    return 0;
}

/* ---- the successor's side: blocking, before its loop runs ------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait for `ev` on fd until `deadline`: 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short ev, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ms();
        struct pollfd p = {.fd = fd, .events = ev};
        if (now >= deadline)
            return -ETIMEDOUT;
        int r = poll(&p, 1, (int)(deadline - now));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

static int send_line(int fd, const char *line, uint64_t deadline)
{
    size_t len = strlen(line), off = 0;
    while (off < len) {
        int err = wait_fd(fd, POLLOUT, deadline);
        if (err < 0)
            return err;
        ssize_t r = send(fd, line + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        if (r > 0)
            off += (size_t)r;
    }
    return 0;
}

int tt_handoff_take(const char *path, uint64_t timeout_ms, int *fds, size_t max, size_t *n,
                    int *link)
{
    uint64_t deadline = now_ms() + timeout_ms;
    char line[LINE_MAX_LEN];
    size_t got = 0, nfds = 0;
    tt_addr_t a;
    int fd, err;

    if (path == NULL || fds == NULL || max == 0 || n == NULL || link == NULL || timeout_ms == 0)
        return -EINVAL;
    if ((err = parse_path(path, &a)) < 0)
        return err;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, &a.u.sa, a.len) < 0) { /* a Unix connect is done at once */
        err = errno == EAGAIN ? -ECONNREFUSED : -errno;
        goto fail;
    }
    if ((err = send_line(fd, "TAKE\n", deadline)) < 0)
        goto fail;
    /* "FDS <n>\n", the descriptors riding on its first byte. */
    while (got == 0 || line[got - 1] != '\n') {
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(TT_SEND_FDS_MAX * sizeof(int))];
        } cm;
        struct iovec iov = {.iov_base = line + got, .iov_len = sizeof(line) - 1 - got};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                            .msg_controllen = sizeof(cm.buf)};
        if (iov.iov_len == 0) {
            err = -EPROTO;
            goto fail;
        }
        if ((err = wait_fd(fd, POLLIN, deadline)) < 0)
            goto fail;
        ssize_t r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0) {
            err = r == 0 ? -ECONNRESET : -errno;
            goto fail;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            const int *in = (const int *)(void *)CMSG_DATA(c);
            for (size_t i = 0; i < k; i++) {
                if (nfds < max)
                    fds[nfds++] = in[i];
                else
                    close(in[i]), err = -ENOSPC;
            }
        }
        got += (size_t)r;
        if (err < 0)
            goto fail;
    }
    line[got - 1] = '\0';
    unsigned long want;
    char *end;
    if (strncmp(line, "FDS ", 4) != 0 || (want = strtoul(line + 4, &end, 10)) != nfds ||
        *end != '\0' || nfds == 0) {
        err = -EPROTO;
        goto fail;
    }
    *n = nfds;
    *link = fd;
    return 0;

fail:
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    close(fd);
    return err;
}

int tt_handoff_ready(int link, uint64_t timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    char buf[64];
    int err;

    if (link < 0 || timeout_ms == 0)
        return -EINVAL;
    err = send_line(link, "READY\n", deadline);
    /* The predecessor ends the link once it has let go. */
    while (err == 0) {
        if ((err = wait_fd(link, POLLIN, deadline)) < 0)
            break;
        ssize_t r = recv(link, buf, sizeof(buf), MSG_DONTWAIT);
        if (r == 0)
            break;
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            err = -errno;
    }
    close(link);
    return err;
}
