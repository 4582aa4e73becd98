/* TCP servers: listen, accept while continuing to listen, and the list of live
 * connections each server keeps. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "sock.h"

/* Accepts per wake-up: enough to drain a burst, few enough that one busy listener
 * cannot starve the connections already open. */
#define ACCEPT_BATCH 128

struct tt_server {
    tt__io_t io;
    tt_loop_t *loop;
    tt__handlers_t *hs;
    void *data;
    tt_addr_t addr;
    tt_conn_t *head, *tail;
    size_t count;
    uint64_t accepted;
    size_t high_water, queue_cap;
    bool half_open;
    bool closed;
    int reserve_fd; /* spent to accept-and-close when out of descriptors */
    tt__zombie_t zombie;
};

static void link_conn(tt_server_t *s, tt_conn_t *c)
{
    c->server = s;
    c->srv_next = NULL;
    c->srv_prev = s->tail;
    if (s->tail != NULL)
        s->tail->srv_next = c;
    else
        s->head = c;
    s->tail = c;
    s->count++;
}

void tt__server_unlink(tt_conn_t *c)
{
    tt_server_t *s = c->server;
    if (c->srv_prev != NULL)
        c->srv_prev->srv_next = c->srv_next;
    else
        s->head = c->srv_next;
    if (c->srv_next != NULL)
        c->srv_next->srv_prev = c->srv_prev;
    else
        s->tail = c->srv_prev;
    c->srv_prev = c->srv_next = NULL;
    c->server = NULL;
    s->count--;
}

/* Out of descriptors: a level-triggered listener would wake us forever. Spend the
 * reserve descriptor to accept and close one pending client, then take it back
 * (the technique libev and nginx document for EMFILE). */
static void shed_one(tt_server_t *s)
{
    if (s->reserve_fd < 0)
        return;
    close(s->reserve_fd);
    int fd = accept4(s->io.fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
    s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void accept_cb(tt__io_t *io, int ev, const char *buf, ssize_t n, size_t pending)
{
    tt_server_t *s = tt__container_of(io, tt_server_t, io);

    (void)ev, (void)buf, (void)n, (void)pending;
    for (int i = 0; i < ACCEPT_BATCH && !s->closed; i++) {
        int fd = accept4(s->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                shed_one(s);
            break; /* EAGAIN, or an error the next wake-up will show again */
        }
        tt__sock_set_bool(fd, IPPROTO_TCP, TCP_NODELAY, true);
        tt_conn_t *c = tt__conn_new(s->loop, fd, s->hs);
        if (c == NULL) {
            close(fd);
            continue;
        }
        tt_conn_set_high_water(c, s->high_water);
        tt_conn_set_queue_cap(c, s->queue_cap);
        tt_conn_set_half_open(c, s->half_open);
        link_conn(s, c);
        s->accepted++;
        tt__conn_opened(c); /* on_open: may close the connection or the server */
    }
}

static int listen_on(const tt_addr_t *addr, const tt_server_opts_t *o, int *out_fd)
{
    int fd, err;

    fd = tt__sock_open(addr->u.sa.sa_family, SOCK_STREAM);
    if (fd < 0)
        return fd;
    if (!o->no_reuseaddr && (err = tt__sock_set_bool(fd, SOL_SOCKET, SO_REUSEADDR, true)) < 0)
        goto fail_err;
    if (addr->u.sa.sa_family == AF_INET6 &&
        (err = tt__sock_set_bool(fd, IPPROTO_IPV6, IPV6_V6ONLY, o->v6only)) < 0)
        goto fail_err;
    if (bind(fd, &addr->u.sa, addr->len) < 0)
        goto fail;
    if (listen(fd, o->backlog > 0 ? o->backlog : SOMAXCONN) < 0)
        goto fail;
    *out_fd = fd;
    return 0;

fail:
    err = -errno; /* before close() can overwrite it */
fail_err:
    close(fd);
    return err;
}

static void server_free(tt__zombie_t *z)
{
    free(tt__container_of(z, tt_server_t, zombie));
}

int tt_server_listen(tt_loop_t *loop, const tt_addr_t *addr, const tt_server_opts_t *opts,
                     const tt_conn_handlers_t *h, void *data, tt_server_t **out)
{
    tt_server_opts_t o = {0};
    tt_server_t *s;
    int fd = -1, err;

    if (loop == NULL || addr == NULL || out == NULL || addr->len == 0 ||
        (addr->u.sa.sa_family != AF_INET && addr->u.sa.sa_family != AF_INET6))
        return -EINVAL;
    if (opts != NULL)
        o = *opts;
    if (o.backlog < 0 || (o.queue_cap != 0 && o.queue_cap != SIZE_MAX && o.high_water != 0 &&
                          o.queue_cap < o.high_water))
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->hs = tt__handlers_new(h);
    if (s->hs == NULL) {
        err = -ENOMEM;
        goto fail_handlers;
    }
    err = listen_on(addr, &o, &fd);
    if (err < 0)
        goto fail_listen;
    tt__io_init(&s->io, fd, TT__IO_RAW, accept_cb);
    err = tt__poller_set(&loop->poller, &s->io, TT__POLL_IN);
    if (err < 0)
        goto fail_register;
    tt__sock_local(fd, &s->addr);
    s->loop = loop;
    s->data = data;
    s->high_water = o.high_water ? o.high_water : TT_DEFAULT_HIGH_WATER;
    s->queue_cap = o.queue_cap ? o.queue_cap : TT_DEFAULT_QUEUE_CAP;
    s->half_open = o.half_open;
    s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->zombie.free_fn = server_free;
    loop->handles++;
    loop->active++;
    *out = s;
    return 0;

fail_register:
    close(fd);
fail_listen:
    tt__handlers_unref(s->hs);
fail_handlers:
    free(s);
    return err;
}

int tt_server_close(tt_server_t *s)
{
    if (s == NULL || s->closed)
        return -EINVAL;
    s->closed = true;
    tt__poller_remove(&s->loop->poller, &s->io);
    close(s->io.fd);
    s->io.fd = -1;
    if (s->reserve_fd >= 0)
        close(s->reserve_fd);
    while (s->head != NULL)
        tt__server_unlink(s->head); /* the connections live on, serverless */
    tt__handlers_unref(s->hs);      /* connections hold their own references */
    s->loop->handles--;
    s->loop->active--;
    /* Freed at the end of the round: an accept event may still be in flight. */
    tt__loop_defer_free(s->loop, &s->zombie);
    return 0;
}

int tt_server_addr(const tt_server_t *s, tt_addr_t *out)
{
    if (s == NULL || out == NULL || s->closed)
        return -EINVAL;
    *out = s->addr;
    return 0;
}

void *tt_server_get_data(const tt_server_t *s) { return s != NULL ? s->data : NULL; }

void tt_server_set_data(tt_server_t *s, void *data)
{
    if (s != NULL)
        s->data = data;
}

size_t tt_server_conn_count(const tt_server_t *s) { return s != NULL ? s->count : 0; }

uint64_t tt_server_accepted_total(const tt_server_t *s) { return s != NULL ? s->accepted : 0; }

int tt_server_foreach(tt_server_t *s, int (*fn)(tt_conn_t *c, void *arg), void *arg)
{
    int visited = 0;

    if (s == NULL || fn == NULL)
        return -EINVAL;
    for (tt_conn_t *c = s->head; c != NULL; c = c->srv_next) {
        visited++;
        if (fn(c, arg) != 0)
            break;
    }
    return visited;
}
