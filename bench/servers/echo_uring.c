/* Hand-written io_uring echo server: the floor for a completion-based design,
 * beside echo_epoll's floor for a readiness one. It answers "how much faster could
 * a library get here by leaving readiness behind?".
 *
 * One ring (single issuer, deferred task work), a multishot accept, one multishot
 * recv per connection into a ring of provided buffers, and the received buffer sent
 * back as it is (no copy). Sends on one socket go one at a time, in order: a second
 * send in flight could be reordered behind the first if that one had to wait for
 * space. The buffer returns to the ring once all of it has been sent. System calls:
 * one io_uring_enter per round, whatever the number of sockets and messages.
 *
 * usage: echo_uring PORT      listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it. */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RING_ENTRIES 4096
#define BUF_COUNT 4096 /* power of two */
#define BUF_SIZE (16 * 1024)
#define BUF_GROUP 0

enum { OP_ACCEPT, OP_RECV, OP_SEND };

/* A received buffer waiting to go back out. */
struct out {
    uint16_t bid;
    uint32_t off, len;
};

/* Per-descriptor state, indexed by fd. */
struct conn {
    struct out *q; /* FIFO of buffers to send; q[head] is in flight when sending */
    uint32_t head, count, cap;
    uint8_t sending, recv_armed, closing, used;
};

static struct io_uring ring;
static struct io_uring_buf_ring *bufs;
static char *buf_mem;
static struct conn *conns;
static size_t nconns;
static int listen_fd = -1;
static volatile sig_atomic_t stopping;

static uint64_t tag(int op, int fd) { return ((uint64_t)(uint32_t)fd << 8) | (uint64_t)op; }

static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

    if (sqe == NULL) { /* submission queue full: hand it to the kernel and retry */
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    if (sqe == NULL) {
        fprintf(stderr, "echo_uring: no submission entry\n");
        exit(1);
    }
    return sqe;
}

static void buf_return(uint16_t bid)
{
    io_uring_buf_ring_add(bufs, buf_mem + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
                          io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(bufs, 1);
}

static int conn_reserve(int fd)
{
    size_t n;
    struct conn *c;

    if ((size_t)fd < nconns)
        return 0;
    n = nconns ? nconns : 1024;
    while (n <= (size_t)fd)
        n *= 2;
    c = realloc(conns, n * sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    memset(c + nconns, 0, (n - nconns) * sizeof(*c));
    conns = c;
    nconns = n;
    return 0;
}

static void arm_recv(int fd)
{
    struct io_uring_sqe *sqe = get_sqe();

    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, tag(OP_RECV, fd));
    conns[fd].recv_armed = 1;
}

static void send_head(int fd)
{
    struct conn *c = &conns[fd];
    struct out *o = &c->q[c->head];
    struct io_uring_sqe *sqe = get_sqe();

    io_uring_prep_send(sqe, fd, buf_mem + (size_t)o->bid * BUF_SIZE + o->off, o->len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(OP_SEND, fd));
    c->sending = 1;
}

/* Close once nothing in flight refers to the socket. */
static void conn_maybe_close(int fd)
{
    struct conn *c = &conns[fd];

    if (!c->closing || c->sending || c->recv_armed)
        return;
    for (uint32_t i = 0; i < c->count; i++)
        buf_return(c->q[(c->head + i) % c->cap].bid);
    free(c->q);
    *c = (struct conn){0};
    close(fd);
}

static int enqueue(int fd, uint16_t bid, uint32_t len)
{
    struct conn *c = &conns[fd];

    if (c->count == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 8;
        struct out *q = malloc(cap * sizeof(*q));

        if (q == NULL)
            return -ENOMEM;
        for (uint32_t i = 0; i < c->count; i++)
            q[i] = c->q[(c->head + i) % c->cap];
        free(c->q);
        c->q = q;
        c->cap = cap;
        c->head = 0;
    }
    c->q[(c->head + c->count) % c->cap] = (struct out){bid, 0, len};
    c->count++;
    return 0;
}

static void on_accept(struct io_uring_cqe *cqe)
{
    int fd = cqe->res, one = 1;

    if (!(cqe->flags & IORING_CQE_F_MORE) && !stopping) { /* the multishot ended: rearm */
        struct io_uring_sqe *sqe = get_sqe();
        io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, tag(OP_ACCEPT, listen_fd));
    }
    if (fd < 0)
        return;
    if (conn_reserve(fd) < 0) {
        close(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conns[fd].used = 1;
    arm_recv(fd);
}

static void on_recv(int fd, struct io_uring_cqe *cqe)
{
    struct conn *c = &conns[fd];

    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->recv_armed = 0;
    if (cqe->res > 0) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);

        if (c->closing || enqueue(fd, bid, (uint32_t)cqe->res) < 0) {
            buf_return(bid);
            c->closing = 1;
        } else if (!c->sending) {
            send_head(fd);
        }
        if (!c->recv_armed && !c->closing)
            arm_recv(fd); /* stopped for want of buffers; they come back as sends finish */
    } else if (cqe->res == -ENOBUFS) {
        if (!c->recv_armed && !c->closing)
            arm_recv(fd);
    } else {
        c->closing = 1; /* 0: the peer closed; < 0: an error */
    }
    conn_maybe_close(fd);
}

static void on_send(int fd, struct io_uring_cqe *cqe)
{
    struct conn *c = &conns[fd];
    struct out *o = &c->q[c->head];

    c->sending = 0;
    if (cqe->res < 0) {
        c->closing = 1;
    } else if ((uint32_t)cqe->res < o->len) {
        o->off += (uint32_t)cqe->res;
        o->len -= (uint32_t)cqe->res;
    } else {
        buf_return(o->bid);
        c->head = (c->head + 1) % c->cap;
        c->count--;
    }
    if (!c->closing && c->count > 0)
        send_head(fd);
    conn_maybe_close(fd);
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    struct io_uring_params params = {0};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sigaction act = {.sa_handler = on_signal};
    struct io_uring_sqe *sqe;
    int one = 1, err;

    if (argc != 2) {
        fprintf(stderr, "usage: echo_uring PORT\n");
        return 2;
    }
    sa.sin_port = htons((uint16_t)atoi(argv[1]));
    sigaction(SIGINT, &act, NULL); /* no SA_RESTART: the wait returns -EINTR */
    sigaction(SIGTERM, &act, NULL);

    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    params.flags |= IORING_SETUP_CQSIZE;
    params.cq_entries = RING_ENTRIES * 4;
    err = io_uring_queue_init_params(RING_ENTRIES, &ring, &params);
    if (err < 0) {
        fprintf(stderr, "echo_uring: io_uring_queue_init: %s\n", strerror(-err));
        return 1;
    }

    /* The provided-buffer ring: BUF_COUNT buffers of BUF_SIZE bytes. */
    if (posix_memalign((void **)&bufs, 4096, BUF_COUNT * sizeof(struct io_uring_buf)) != 0 ||
        (buf_mem = malloc((size_t)BUF_COUNT * BUF_SIZE)) == NULL) {
        fprintf(stderr, "echo_uring: out of memory\n");
        return 1;
    }
    /* Touch the whole pool now: the ring hands buffers out in turn, so otherwise
     * the memory-per-idle-connection test would charge its pages to connections. */
    memset(buf_mem, 0, (size_t)BUF_COUNT * BUF_SIZE);
    io_uring_buf_ring_init(bufs);
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)bufs,
                                   .ring_entries = BUF_COUNT, .bgid = BUF_GROUP};
    err = io_uring_register_buf_ring(&ring, &reg, 0);
    if (err < 0) {
        fprintf(stderr, "echo_uring: io_uring_register_buf_ring: %s\n", strerror(-err));
        return 1;
    }
    for (int i = 0; i < BUF_COUNT; i++)
        buf_return((uint16_t)i);

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(listen_fd, 4096) < 0) {
        perror("echo_uring: listen");
        return 1;
    }
    sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag(OP_ACCEPT, listen_fd));

    while (!stopping) {
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;

        err = io_uring_submit_and_wait(&ring, 1);
        if (err < 0 && err != -EINTR) {
            fprintf(stderr, "echo_uring: io_uring_enter: %s\n", strerror(-err));
            return 1;
        }
        io_uring_for_each_cqe(&ring, head, cqe) {
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            int fd = (int)(ud >> 8);

            switch ((int)(ud & 0xff)) {
            case OP_ACCEPT: on_accept(cqe); break;
            case OP_RECV: on_recv(fd, cqe); break;
            case OP_SEND: on_send(fd, cqe); break;
            }
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
    }
    /* The multishot accept holds the listener until the ring is torn down, which
     * the kernel finishes after we exit; shut it now so the port is free at once. */
    shutdown(listen_fd, SHUT_RDWR);
    io_uring_queue_exit(&ring);
    close(listen_fd);
    return 0;
}
