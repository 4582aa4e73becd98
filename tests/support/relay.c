#include "relay.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

relay_t relay;

static int index_of(tt_conn_t *c)
{
    for (int i = 0; i < relay.npeers; i++)
        if (relay.peers[i] == c)
            return i;
    return -1;
}

static void r_open(tt_conn_t *c)
{
    cr_assert_lt(relay.npeers, RELAY_MAX);
    relay.peers[relay.npeers++] = c;
}

static void r_close(tt_conn_t *c, const tt_close_info_t *info)
{
    int i = index_of(c);
    if (i >= 0) { /* not a client that closed before its on_open */
        relay.last_close[i] = *info;
        relay.close_count[i]++;
        relay.peers[i] = NULL; /* gone after on_close */
    }
    relay.closes_total++;
    if (info->kind == TT_CLOSE_SEND_OVERFLOW)
        relay.closes_overflow++;
    else if (info->kind != TT_CLOSE_PEER_CLOSED && info->kind != TT_CLOSE_LOCAL_DESTROY)
        relay.closes_other++;
}

/* Every message to every other connection, with a newline. */
static void r_message(tt_conn_t *c, const void *msg, size_t len)
{
    char line[4096];
    if (relay.keep != NULL && !relay.keep(msg, len))
        return;
    cr_assert_lt(len, sizeof(line));
    memcpy(line, msg, len);
    line[len] = '\n';
    cr_assert_geq(tt_server_broadcast(relay.srv, line, len + 1, c), 0);
    if (relay.after_broadcast != NULL)
        relay.after_broadcast(c);
}

const tt_conn_handlers_t relay_handlers = {
    .on_open = r_open, .on_close = r_close, .on_message = r_message};

void relay_reset(void) { memset(&relay, 0, sizeof(relay)); }

tt_server_t *relay_listen(tt_loop_t *loop, tt_server_opts_t *so, tt_addr_t *addr)
{
    tt_addr_t any = th_loopback(0);
    cr_assert_eq(tt_server_listen(loop, &any, so, &relay_handlers, NULL, &relay.srv), 0);
    cr_assert_eq(tt_server_addr(relay.srv, addr), 0);
    return relay.srv;
}

void relay_connect(tt_loop_t *loop, const tt_addr_t *addr, int *fds, int n, int rcvbuf,
                   const char *hello)
{
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_geq(fds[i], 0);
        if (rcvbuf > 0)
            cr_assert_eq(setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
        cr_assert_eq(connect(fds[i], &addr->u.sa, addr->len), 0);
        if (hello != NULL)
            cr_assert_eq(send(fds[i], hello, strlen(hello), 0), (ssize_t)strlen(hello));
        bool never = false;
        for (int k = 0; k < 200 && relay.npeers <= i; k++)
            th_run_until(loop, &never, 5);
        cr_assert_eq(relay.npeers, i + 1);
    }
}

void relay_drain(int fd, relay_sink_t *s)
{
    for (;;) {
        if (s->cap - s->len < 65536) {
            s->cap = s->cap ? s->cap * 2 : 131072;
            s->buf = realloc(s->buf, s->cap);
            cr_assert_not_null(s->buf);
        }
        ssize_t r = recv(fd, s->buf + s->len, s->cap - s->len, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            s->eof = true;
        if (r <= 0)
            return;
        s->len += (size_t)r;
    }
}

void relay_expect_msgs(const relay_sink_t *s, int who, int msgs, size_t size)
{
    tt_conn_stats_t st;

    cr_assert_eq(s->len, (size_t)msgs * size, "receiver %d: %zu bytes", who, s->len);
    for (int m = 0; m < msgs; m++) {
        char want[16];
        snprintf(want, sizeof(want), "m%06d", m);
        cr_assert_eq(memcmp(s->buf + (size_t)m * size, want, 7), 0, "%d: msg %d", who, m);
    }
    cr_assert_not_null(relay.peers[who], "receiver %d closed", who);
    cr_assert_eq(tt_conn_get_stats(relay.peers[who], &st), 0);
    cr_expect_eq(st.bytes_out, (uint64_t)msgs * size);
}

void relay_finish(tt_loop_t *loop, const int *fds, relay_sink_t *sink, int n)
{
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        free(sink[i].buf);
    }
    tt_server_close(relay.srv);
    th_run(loop, 5000);
    cr_assert_eq(tt_loop_close(loop), 0);
}
