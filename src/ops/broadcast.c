/* Broadcast to a server's connections or to a group, with the payload stored once.
 *
 * A recipient with nothing queued gets the shared bytes written at once, inside
 * the call (one write, no queue node, no reference), as a hand-written server
 * does; only what its kernel did not take is queued. Queued bytes are a handed-over
 * send of the shared payload whose free callback drops one reference (the last
 * one frees it), or, when small (see PAYLOAD_COPY_MAX), a copy into the
 * recipient's tail chunk. One broadcast to N connections costs one copy of the
 * payload and one write per connection; a recipient that is behind only grows
 * its own queue, up to its cap. When the message being delivered has more behind
 * it in the same read (loop->more_input, set by the framer and by the WebSocket
 * reader), every recipient queues instead, and the read's messages reach each
 * one in one write, in the pending phase: a write per recipient per read, not
 * per message.
 *
 * On io_uring a recipient with nothing queued queues too (a reference, as
 * above) and the pending phase's flush makes its write a send request: the
 * loop's next submission carries the sends to all of them, one system call for
 * the whole broadcast instead of a sendmsg per recipient (stream/conn.c,
 * core/poller_uring.c). */
#include "ops/broadcast.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/frame_codec.h"
#include "proto/ws.h"
#include "stream/conn.h"

static tt__payload_t *payload_alloc(size_t len, size_t cap)
{
    tt__payload_t *p = malloc(sizeof(*p) + cap);
    if (p == NULL)
        return NULL;
    atomic_init(&p->refs, 1);
    p->len = len;
    p->cap = cap;
    return p;
}

tt__payload_t *tt__payload_new(const void *buf, size_t len)
{
    tt__payload_t *p = payload_alloc(len, len);
    if (p == NULL)
        return NULL;
    if (buf != NULL && len > 0)
        memcpy(p->data, buf, len); /* buf NULL: the caller fills it */
    return p;
}

void tt__payload_ref(tt__payload_t *p) { atomic_fetch_add(&p->refs, 1); }

void tt__payload_unref(tt__payload_t *p)
{
    if (atomic_fetch_sub(&p->refs, 1) == 1)
        free(p);
}

static void payload_free_cb(void *buf, void *arg)
{
    (void)buf;
    tt__payload_unref(arg);
}

/* A payload this small is copied into a recipient's queue when something is
 * queued there already: the copy lands in the tail chunk and costs its bytes,
 * where a reference costs a queue node (64 bytes) per recipient and keeps the
 * shared payload alive. A slow reader flooded with short lines then holds about
 * the lines' bytes, not a node per line. The remainder of a write the kernel took
 * part of is copied the same way when this small.
 *
 * When more messages of the same read follow, the chunk the copies start is
 * sized for the rest of that read (loop->more_input), not the 16 KiB default:
 * twice its bytes, so that lines the app lengthens (a chat's sender prefix:
 * 64 B read, 82 B sent) still fit one chunk, and a chunk that fills anyway is
 * followed by one twice its size. A broadcast of a read's short lines to N
 * recipients then allocates a few times the read's bytes per recipient, not
 * 16 KiB each (at 100 recipients, 64 B lines queued 16 deep: 1.65 -> 1.99 M
 * deliveries/s, and the page faults of those 16 KiB blocks, 208 k per 2 M
 * deliveries, are gone). The first message of the read stays a reference:
 * copying it too makes a single buffer but moves every byte through a
 * per-recipient copy, which measured slower at 1000 recipients (their copies no
 * longer fit the cache before the flush writes them). */
#define PAYLOAD_COPY_MAX 256

/* The bytes [start, start + len) of `p` to one connection. */
static int payload_put(tt__payload_t *p, size_t start, size_t len, tt_conn_t *c)
{
    const char *data = p->data + start;
    size_t off = 0, more = tt__conn_loop(c)->more_input;
    bool empty = tt__conn_queue_empty(c);
    if (empty && more == 0) {
        /* Nothing queued and no more messages behind this one in the sender's
         * read: straight from the shared bytes, one write, no node (epoll; on
         * io_uring this says -EAGAIN and the bytes are queued for the flush). */
        ssize_t w = tt__conn_write_shared(c, data, len);
        if (w == (ssize_t)len)
            return 0;
        if (w == -ENOBUFS)
            return (int)w;
        if (w > 0)
            off = (size_t)w;
    } else if (!empty) {
        /* The message before this one in the same open payload is the last thing
         * queued here: one longer reference, one iovec (see message_payload). */
        int r = tt__conn_extend_owned(c, data, len, payload_free_cb, p);
        if (r != -EAGAIN)
            return r;
    }
    /* Small and behind other bytes: copied, into a chunk sized for the rest of
     * the read (twice it, see above) when more messages follow. */
    if (len - off <= PAYLOAD_COPY_MAX && (off > 0 || !empty))
        return tt__conn_send_queued(c, data + off, len - off, len - off + 2 * more);
    /* The entry keeps the whole payload alive: the rest of it is charged too. */
    size_t rest = p->cap - (len - off);
    tt__payload_ref(p);
    int r = tt__conn_send_shared(c, (char *)data + off, len - off,
                                 rest < UINT32_MAX ? (uint32_t)rest : UINT32_MAX,
                                 payload_free_cb, p);
    if (r < 0)
        tt__payload_unref(p); /* refused: the free callback will not run */
    return r;
}

/* As payload_put. Bytes queued while the sender's read holds more messages are
 * written one poll later than the end of the round: by then the sender's next
 * lines have often arrived, and one write carries both reads. A message with
 * nothing behind it in its read is written as before. */
static int payload_send_part(tt__payload_t *p, size_t start, size_t len, tt_conn_t *c)
{
    bool late = tt__conn_loop(c)->more_input > 0;
    int r = payload_put(p, start, len, c);

    if (late && r >= 0 && !tt__conn_queue_empty(c))
        tt__conn_flush_late(c);
    return r;
}

int tt__payload_send(tt__payload_t *p, tt_conn_t *c) { return payload_send_part(p, 0, p->len, c); }

/* ---- a read's messages in one payload ---------------------------------------------- */

/* The most room an open payload keeps beyond its first message. */
#define OPEN_ROOM_MAX (64 * 1024)

static void open_payload_free(tt_loop_t *loop)
{
    if (loop->bcast_open != NULL)
        tt__payload_unref(loop->bcast_open);
    loop->bcast_open = NULL;
}

/* The payload for one broadcast message, holding a reference for the caller, and
 * where in it the message starts (*start).
 *
 * While the message being delivered has more behind it in the same read
 * (loop->more_input), the payload is made with room for the rest of that read
 * (twice it, for what the app adds, at most OPEN_ROOM_MAX) and stays open on the
 * loop: the read's next broadcasts append to it. A recipient whose last queued
 * entry is the previous message of that payload then gets its bytes by
 * lengthening that entry, so a read of 16 lines reaches it as one reference and
 * one iovec, as the hand-written server writes its read buffer, instead of 16
 * queue nodes and 16 iovecs. Bytes already in the payload never change (only
 * the room behind them is written), so what is queued or being written stays
 * valid. A broadcast with nothing behind it in its read (the read's last
 * message) closes it after appending; one with more behind it that finds no
 * room opens a new one in its place; otherwise it stays open, and a later
 * read's broadcasts may append to it too. An open payload is only ever this
 * loop's: a worker set's broadcast shares its own payload across threads. */
static tt__payload_t *message_payload(tt_loop_t *loop, const void *buf, size_t len,
                                      size_t *start)
{
    tt__payload_t *p = loop->bcast_open;
    size_t more = loop->more_input;

    if (p != NULL && p->cap - p->len >= len) {
        *start = p->len;
        if (len > 0)
            memcpy(p->data + p->len, buf, len);
        p->len += len;
        tt__payload_ref(p);
        if (more == 0)
            open_payload_free(loop); /* the read's last message */
        return p;
    }
    *start = 0;
    size_t room = more < OPEN_ROOM_MAX / 2 ? 2 * more : OPEN_ROOM_MAX;
    p = payload_alloc(len, len + room);
    if (p == NULL)
        return NULL;
    if (len > 0)
        memcpy(p->data, buf, len);
    if (more > 0) {
        open_payload_free(loop);
        tt__payload_ref(p);
        loop->bcast_open = p;
        loop->bcast_free = open_payload_free;
    }
    return p;
}

/* ---- server-wide ------------------------------------------------------------------ */

typedef struct {
    const void *msg;
    size_t len;
    uint64_t except_id;
    const void *key;  /* the framing `p` was framed for */
    tt__payload_t *p; /* header + message + trailer for that framing */
    int sent;
    int err; /* the first refusal, reported when nobody got the message */
} bcast_msg_t;

static int bcast_msg_one(tt_conn_t *c, void *arg);

typedef struct {
    tt__payload_t *p;
    size_t start, len; /* the message's bytes in p */
    uint64_t except_id;
    int sent;
    bcast_msg_t ws; /* WebSocket recipients: the bytes as one message, framed once */
} bcast_t;

/* Raw bytes to a stream; to a WebSocket connection they go as one message of its
 * default kind (raw bytes would break its framing), the frame shared as for
 * tt_server_broadcast_message. */
static int raw_send(tt__payload_t *p, size_t start, size_t len, tt_conn_t *c, bcast_msg_t *ws)
{
    if (!tt__ws_on(c))
        return payload_send_part(p, start, len, c);
    int before = ws->sent;
    ws->msg = p->data + start;
    ws->len = len;
    bcast_msg_one(c, ws);
    return ws->sent > before ? 0 : -ENOTCONN;
}

static int bcast_one(tt_conn_t *c, void *arg)
{
    bcast_t *b = arg;
    if (c->id != b->except_id && !tt__conn_is_closing(c) &&
        raw_send(b->p, b->start, b->len, c, &b->ws) >= 0)
        b->sent++;
    return 0;
}

static int send_server_part(tt__payload_t *p, size_t start, size_t len, tt_server_t *srv,
                            uint64_t except_id)
{
    bcast_t b = {p, start, len, except_id, 0, {0}};
    tt_server_foreach(srv, bcast_one, &b);
    if (b.ws.p != NULL)
        tt__payload_unref(b.ws.p);
    return b.sent;
}

int tt__payload_send_server(tt__payload_t *p, tt_server_t *srv, uint64_t except_id)
{
    return send_server_part(p, 0, p->len, srv, except_id);
}

int tt_server_broadcast(tt_server_t *srv, const void *buf, size_t len, const tt_conn_t *except)
{
    tt__payload_t *p;
    size_t start;
    int sent;

    if (srv == NULL || (buf == NULL && len > 0))
        return -EINVAL;
    p = message_payload(tt_server_loop(srv), buf, len, &start);
    if (p == NULL)
        return -ENOMEM;
    sent = send_server_part(p, start, len, srv, except != NULL ? tt_conn_id(except) : 0);
    tt__payload_unref(p);
    return sent;
}

/* ---- server-wide, framed ------------------------------------------------------------ */

/* One framed copy for `c`'s framing: header, message, trailer. 0 or -errno. */
static int frame_payload(bcast_msg_t *b, tt_conn_t *c, tt__payload_t **out)
{
    unsigned char hdr[TT__HDR_MAX];
    const void *trailer;
    size_t hlen, tlen;
    int err;
    if (tt__ws_on(c)) { /* WebSocket: compressed once, when the key says so */
        void *z;
        size_t zlen;
        if ((err = tt__ws_wrap_msg(c, b->msg, b->len, hdr, &hlen, &z, &zlen)) < 0)
            return err;
        tt__payload_t *p = tt__payload_new(NULL, hlen + (z != NULL ? zlen : b->len));
        if (p != NULL) {
            memcpy(p->data, hdr, hlen);
            if (z != NULL)
                memcpy(p->data + hlen, z, zlen);
            else if (b->len > 0)
                memcpy(p->data + hlen, b->msg, b->len);
        }
        free(z);
        if (p == NULL)
            return -ENOMEM;
        *out = p;
        return 0;
    }
    err = tt__frame_wrap(c, b->msg, b->len, hdr, &hlen, &trailer, &tlen);
    if (err < 0)
        return err;
    tt__payload_t *p = tt__payload_new(NULL, hlen + b->len + tlen);
    if (p == NULL)
        return -ENOMEM;
    memcpy(p->data, hdr, hlen);
    if (b->len > 0)
        memcpy(p->data + hlen, b->msg, b->len);
    if (tlen > 0)
        memcpy(p->data + hlen + b->len, trailer, tlen);
    *out = p;
    return 0;
}

static int bcast_msg_one(tt_conn_t *c, void *arg)
{
    bcast_msg_t *b = arg;
    int r;

    if (tt_conn_id(c) == b->except_id || tt__conn_is_closing(c) || !tt_conn_is_framed(c))
        return 0;
    const void *key = tt__frame_shared_key(c);
    if (key == NULL) { /* framed on its own: frame it for this connection alone */
        r = tt_send_message(c, b->msg, b->len);
    } else {
        if (key != b->key) { /* the server's options: framed once, shared */
            if (b->p != NULL)
                tt__payload_unref(b->p);
            b->p = NULL;
            b->key = key;
            r = frame_payload(b, c, &b->p);
            if (r < 0) {
                b->key = NULL;
                goto done;
            }
        }
        r = tt__payload_send(b->p, c);
        if (r >= 0)
            tt__frame_count_out(c);
    }
done:
    if (r >= 0)
        b->sent++;
    else if (b->err == 0)
        b->err = r;
    return 0;
}

int tt_server_broadcast_message(tt_server_t *srv, const void *msg, size_t len,
                                const tt_conn_t *except)
{
    bcast_msg_t b = {msg, len, except != NULL ? tt_conn_id(except) : 0, NULL, NULL, 0, 0};

    if (srv == NULL || (msg == NULL && len > 0))
        return -EINVAL;
    tt_server_foreach(srv, bcast_msg_one, &b);
    if (b.p != NULL)
        tt__payload_unref(b.p);
    if (b.sent == 0 && (b.err == -EINVAL || b.err == -EMSGSIZE || b.err == -ENOMEM))
        return b.err; /* the message cannot be framed (or stored) at all */
    return b.sent;
}

/* ---- groups ------------------------------------------------------------------------ */

/* One membership: in the group's doubly-linked list and the connection's list. */
typedef struct member {
    tt_group_t *group;
    tt_conn_t *conn;
    struct member *g_prev, *g_next;
    struct member *c_next;
} member_t;

struct tt_group {
    tt_loop_t *loop;
    char *name;
    member_t *head;
    size_t count;
    tt__group_remote_t remote; /* bound to a channel: publish is set */
};

static member_t *find_member(const tt_group_t *g, const tt_conn_t *c)
{
    if (c->ext == NULL)
        return NULL;
    for (member_t *m = c->ext->groups; m != NULL; m = m->c_next)
        if (m->group == g)
            return m;
    return NULL;
}

static void unlink_member(member_t *m)
{
    tt_group_t *g = m->group;
    if (m->g_prev != NULL)
        m->g_prev->g_next = m->g_next;
    else
        g->head = m->g_next;
    if (m->g_next != NULL)
        m->g_next->g_prev = m->g_prev;
    g->count--;
    /* and out of the connection's list */
    member_t **pp = (member_t **)&m->conn->ext->groups;
    while (*pp != m)
        pp = &(*pp)->c_next;
    *pp = m->c_next;
    free(m);
}

static void conn_leave_all(tt_conn_t *c)
{
    while (c->ext->groups != NULL)
        unlink_member(c->ext->groups);
}

int tt_group_init(tt_loop_t *loop, const char *name, tt_group_t **out)
{
    tt_group_t *g;

    if (loop == NULL || out == NULL)
        return -EINVAL;
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return -ENOMEM;
    if (name != NULL && (g->name = strdup(name)) == NULL) {
        free(g);
        return -ENOMEM;
    }
    g->loop = loop;
    loop->handles++;
    *out = g;
    return 0;
}

int tt_group_close(tt_group_t *g)
{
    if (g == NULL)
        return -EINVAL;
    while (g->head != NULL)
        unlink_member(g->head);
    if (g->remote.unbind != NULL)
        g->remote.unbind(g->remote.arg);
    g->loop->handles--;
    free(g->name);
    free(g);
    return 0;
}

int tt_group_join(tt_group_t *g, tt_conn_t *c)
{
    tt__conn_ext_t *ext;
    member_t *m;

    if (g == NULL || c == NULL || tt__conn_loop(c) != g->loop || tt__conn_is_closing(c))
        return -EINVAL;
    if (find_member(g, c) != NULL)
        return -EEXIST;
    ext = tt__conn_ext(c);
    m = calloc(1, sizeof(*m));
    if (ext == NULL || m == NULL) {
        free(m);
        return -ENOMEM;
    }
    m->group = g;
    m->conn = c;
    m->g_next = g->head;
    if (g->head != NULL)
        g->head->g_prev = m;
    g->head = m;
    g->count++;
    m->c_next = ext->groups;
    ext->groups = m;
    ext->groups_free = conn_leave_all;
    return 0;
}

int tt_group_leave(tt_group_t *g, tt_conn_t *c)
{
    if (g == NULL || c == NULL)
        return -EINVAL;
    member_t *m = find_member(g, c);
    if (m == NULL)
        return -ENOENT;
    unlink_member(m);
    return 0;
}

bool tt_group_has(const tt_group_t *g, const tt_conn_t *c)
{
    return g != NULL && c != NULL && find_member(g, c) != NULL;
}

size_t tt_group_count(const tt_group_t *g) { return g != NULL ? g->count : 0; }

const char *tt_group_name(const tt_group_t *g) { return g != NULL ? g->name : NULL; }

int tt__group_set_remote(tt_group_t *g, const tt__group_remote_t *r)
{
    if (r != NULL && g->remote.publish != NULL)
        return -EBUSY;
    if (r != NULL)
        g->remote = *r;
    else
        memset(&g->remote, 0, sizeof(g->remote));
    return 0;
}

int tt_group_broadcast(tt_group_t *g, const void *buf, size_t len, const tt_conn_t *except)
{
    int sent;

    if (g == NULL || (buf == NULL && len > 0))
        return -EINVAL;
    sent = tt__group_deliver(g, buf, len, except);
    if (sent >= 0 && g->remote.publish != NULL)
        g->remote.publish(g->remote.arg, buf, len, except); /* once, whatever the members */
    return sent;
}

int tt__group_deliver(tt_group_t *g, const void *buf, size_t len, const tt_conn_t *except)
{
    tt__payload_t *p;
    size_t start;
    int sent = 0;

    p = message_payload(g->loop, buf, len, &start);
    if (p == NULL)
        return -ENOMEM;
    bcast_msg_t ws = {0};
    for (member_t *m = g->head; m != NULL; m = m->g_next)
        if (m->conn != except && !tt__conn_is_closing(m->conn) &&
            raw_send(p, start, len, m->conn, &ws) >= 0)
            sent++;
    if (ws.p != NULL)
        tt__payload_unref(ws.p);
    tt__payload_unref(p);
    return sent;
}
