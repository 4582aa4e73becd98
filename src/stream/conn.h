/* The connection object and the calls the server, client, liveness and framing
 * layers make on it. */
#ifndef TT_CONN_H
#define TT_CONN_H

#include "core/loop.h"
#include "stream/sendq.h"

/* Send limits: the high-water mark, the hard cap of queued memory (KiB, 0: none)
 * and the linger after an end. */
typedef struct tt__limits {
    uint32_t high_water;
    uint32_t queue_cap_kib;
    uint32_t linger_ms;
} tt__limits_t;

/* Handlers shared by every connection of a server, reference-counted so a server
 * may close while its connections live on; with the limits its connections
 * start with (a connection that sets its own keeps them in its send state). */
typedef struct tt__handlers {
    tt_conn_handlers_t h;
    uint32_t refs;
    tt__limits_t lim;
    tt_server_t *server; /* whose connections these are (see tt__conn_server) */
} tt__handlers_t;

tt__handlers_t *tt__handlers_new(const tt_conn_handlers_t *h);
void tt__handlers_unref(tt__handlers_t *hs);

/* Optional per-connection extensions, allocated on first use so plain connections
 * stay small: framing, liveness, message counters. The layers above install their
 * hooks here; conn.c calls them without knowing what they are. */
typedef struct tt__conn_ext {
    uint64_t msgs_in, msgs_out;
    /* Bytes queued through tt__conn_send_control (heartbeats, pongs, framing
     * pings and pongs): not the app's data. Liveness subtracts them from what was
     * written when it asks whether the app wrote. */
    uint64_t ctl_bytes;
    int close_detail;
    /* Framing: when set, received bytes go here instead of on_data. */
    void *framer;
    void (*frame_input)(tt_conn_t *c, const char *buf, size_t n);
    void (*frame_free)(tt_conn_t *c);
    /* Framing: reading restarted after tt_conn_read_stop(); deliver what was held
     * back. Called from the loop's pending phase, never inside the API call. */
    void (*read_resumed)(tt_conn_t *c);
    /* Framing: the peer ended the stream; TT_EPROTOCOL if it did so inside a
     * frame (bytes that can never become a message), 1 when input held back by
     * tt_conn_read_stop() is still to be delivered (the framer calls
     * tt__conn_peer_ended again once it has been), else 0. Held input is fed here
     * first when reading is on. */
    int (*frame_eof)(tt_conn_t *c);
    /* Framing: queue a ping control frame (used by liveness); 0 or -errno. */
    int (*frame_ping)(tt_conn_t *c);
    /* WebSocket (proto/ws.c): its state; it uses the framing hooks above. */
    void *ws;
    /* At close, before on_error/on_close: a layer fills its part of the reasons
     * (and may say what the close really was, as the WebSocket close code does). */
    void (*close_info)(tt_conn_t *c, tt_close_info_t *info);
    /* tt_end: a layer that ends its own way first (the WebSocket close frame).
     * Returns 1 when it queued `buf` itself, 0 when tt_end should, or -errno. */
    int (*end_hook)(tt_conn_t *c, const void *buf, size_t len);
    /* on_open waits for each layer's own opening (the TLS handshake, the
     * WebSocket upgrade, a PROXY header): how many are still under way. Each
     * layer counts itself in when applied and calls tt__conn_layer_opened when
     * done; the last one brings on_open. */
    uint8_t open_waits;
    /* A header read before any layer sees a byte (the PROXY protocol): gets the
     * socket's bytes first (n > 0 data, 0 end of stream, < 0 -errno) and returns
     * how many it consumed; the rest go on up at once. Returns -1 when it closed
     * the connection. It removes itself (sets this NULL) once the header is done. */
    ssize_t (*pre_input)(tt_conn_t *c, const char *buf, ssize_t n);
    /* PROXY protocol (proto/proxy_conn.c): its state, freed after on_close (the
     * addresses and TLVs stay readable until then); the client address that
     * replaces the socket's peer everywhere (NULL: the socket's); a client's
     * header, written raw by tt__conn_opened before anything else (0 or -errno). */
    void *proxy;
    void (*proxy_free)(tt_conn_t *c);
    const tt_addr_t *peer_override;
    int (*proxy_send)(tt_conn_t *c);
    /* A layer's words for the close when it has no close_info hook of its own
     * (static text; "" when none), copied to tt_close_info_t.reason. */
    const char *close_reason;
    /* A transform between the socket and everything above it (TLS). */
    void *wire;
    const struct tt__wire_ops *wire_ops;
    /* Bytes on the wire while a transform is on (application bytes are
     * bytes_in and written): for the stats. */
    uint64_t wire_in, wire_out;
    /* Liveness: told of every read and write; freed at close. */
    void *live;
    void (*live_on_io)(tt_conn_t *c, int dir); /* TT__IO_DIR_* */
    void (*live_free)(tt_conn_t *c);
    /* Liveness: offered every unframed read before on_data; returns true when the
     * read was heartbeat traffic it consumed (answered ping, or pong). */
    bool (*live_input)(tt_conn_t *c, const char *buf, size_t n);
    /* Groups (broadcast.c): the memberships of this connection, left at close. */
    void *groups;
    void (*groups_free)(tt_conn_t *c);
    /* Connecting by name (connector.c): the lookup and attempts in progress while
     * the connection has no socket; cancelled by tt__conn_close. */
    void *connector;
    void (*connect_cancel)(tt_conn_t *c);
    /* Reconnecting client (reconnect.c): the owner, and, when it keeps unsent bytes,
     * the hook that takes the queue at close instead of dropping it (returns the
     * bytes taken; the queue is left empty). */
    void *client;
    uint64_t (*take_unsent)(tt_conn_t *c);
    /* Server (server.c): the per-address key this connection was counted under at
     * accept, released at close (the peer's address may be unreadable by then). */
    uint8_t ip_key[16];
    bool ip_counted;
    /* Unix domain: the peer's SO_PEERCRED, read when the connection was made. */
    bool has_cred;
    tt_peer_cred_t cred;
} tt__conn_ext_t;

/* A transform below framing and liveness (TLS, proto/tls.c). The connection
 * hands it what the socket gave and what the app queued; it hands plaintext up
 * through tt__conn_plain_input and writes its own records to the socket. */
typedef struct tt__wire_ops {
    /* The socket is connected (a client's connect finished, a server's accept):
     * the transform starts its handshake. */
    void (*opened)(tt_conn_t *c);
    /* The socket's read: n > 0 bytes, 0 end of stream, < 0 -errno. */
    void (*input)(tt_conn_t *c, const char *buf, ssize_t n, size_t pending);
    /* Take application bytes: how many were taken (records wholly handed to
     * the kernel), -EAGAIN when the socket is full, -EINPROGRESS when the
     * transform is not ready (it held the queue: tt__conn_wire_hold), or -errno.
     * Bytes not taken are offered again, from the same first byte. */
    ssize_t (*writev)(tt_conn_t *c, const struct iovec *iov, int iovcnt);
    /* The socket can take more: true when the transform used it (its own
     * handshake or a read that had to write), false to let the queue flush. */
    bool (*writable)(tt_conn_t *c);
    /* Everything queued is written and our FIN is due: end the transform's own
     * way first (close_notify). 0 done, -EAGAIN (call again when writable), -errno. */
    int (*end)(tt_conn_t *c);
    /* Reading restarted: input held back while it was stopped goes up now. */
    void (*resumed)(tt_conn_t *c);
    /* At close: fill the transform's part of the reasons, then free its state. */
    void (*close_info)(tt_conn_t *c, tt_close_info_t *info);
    void (*free)(tt_conn_t *c);
    /* Bytes queued before the transform came on went out plain, by a send that
     * was in flight when it did (io_uring): NULL if it keeps no count of them. */
    void (*plain_sent)(tt_conn_t *c, uint64_t n);
} tt__wire_ops_t;

#define TT__IO_DIR_READ 0
#define TT__IO_DIR_WRITE 1

/* What a connection needs only while it has something queued or a deadline
 * armed: taken from the loop's pool on first need, given back when the queue is
 * empty and no deadline runs, so an idle connection carries none of it. */
typedef struct tt__conn_out {
    tt__sendq_t sq; /* first: holds the pool's link while the state is free */
    tt__wnode_t deadline; /* connect timeout, or linger after end */
    tt_conn_t *conn;
    tt__limits_t lim; /* the connection's own limits, when it set them (kept then) */
    uint64_t dropped; /* at close: the bytes that were never sent */
} tt__conn_out_t;

/* What every connection carries, idle or not: 128 bytes (tests/unit/test_sizes.c).
 * Its loop is its slab's (tt__conn_loop), its server its handlers'
 * (tt__conn_server), its callback for socket events the poller's stream_cb. */
struct tt_conn {
    tt__io_t io;
    tt__handlers_t *h;
    void *data;
    tt_conn_t *srv_prev, *srv_next; /* the server's list of live connections */
    tt_conn_t *pend_next;           /* the loop's list of deferred work */
    tt__conn_out_t *out;            /* NULL while nothing is queued and no deadline runs */
    /* Bytes handed to the kernel. Every byte ever queued (or written at once)
     * is written, still queued, or dropped at close: their sum is the total. */
    uint64_t written;
    uint64_t bytes_in;
    uint64_t packets_in, packets_out;
    uint64_t id;
    uint64_t created_ms;
    uint32_t flags;
    uint8_t state; /* TT_STATE_CONNECTING / OPEN / CLOSING / CLOSED; the rest derived */
    uint8_t close_kind;
    int close_err;
    tt__conn_ext_t *ext;
};

/* Connections are allocated in slabs of this many bytes, aligned to it, each
 * with this head first (conn.c's pool). */
#define TT__CONN_SLAB_BYTES 65536
typedef struct tt__conn_slab_head {
    void *next; /* the loop's next slab */
    tt_loop_t *loop;
    size_t used; /* connections carved from it so far */
} tt__conn_slab_head_t;

/* The loop a connection belongs to: its slab's. */
static inline tt_loop_t *tt__conn_loop(const tt_conn_t *c)
{
    uintptr_t slab = (uintptr_t)c & ~(uintptr_t)(TT__CONN_SLAB_BYTES - 1);
    return ((const tt__conn_slab_head_t *)slab)->loop;
}

/* On its server's list (server.c): its server is its handlers' (c->flags bit,
 * beside conn.c's own). */
#define TT__F_SERVED 0x800000u
static inline tt_server_t *tt__conn_server(const tt_conn_t *c)
{
    return (c->flags & TT__F_SERVED) ? c->h->server : NULL;
}

/* The send queue, made on first use: NULL on ENOMEM. */
tt__sendq_t *tt__conn_queue(tt_conn_t *c);
static inline bool tt__conn_queue_empty(const tt_conn_t *c)
{
    return c->out == NULL || tt__sendq_empty(&c->out->sq);
}
/* Known bytes waiting in the queue. */
static inline uint64_t tt__conn_queue_bytes(const tt_conn_t *c)
{
    return c->out != NULL ? c->out->sq.bytes : 0;
}
/* Bytes ever queued or written at once. */
static inline uint64_t tt__conn_queued_total(const tt_conn_t *c)
{
    return c->written + (c->out != NULL ? c->out->sq.bytes + c->out->dropped : 0);
}

/* Arm the connection's deadline, `ms` from now: the connect timeout while
 * connecting, the linger after an end. 0, or -ENOMEM. */
int tt__conn_deadline_start(tt_conn_t *c, uint64_t ms);

/* Set the limits new connections of `hs` start with (a server's options);
 * 0 or -EINVAL (a mark above the cap, or out of range). */
int tt__handlers_set_limits(tt__handlers_t *hs, size_t high_water, size_t queue_cap);

/* Allocate a connection on fd (already non-blocking). Returns NULL on ENOMEM. */
tt_conn_t *tt__conn_new(tt_loop_t *loop, int fd, tt__handlers_t *hs);
/* The socket is connected: start reading, fire on_open, send what was queued. */
void tt__conn_opened(tt_conn_t *c);
/* Begin closing: the socket leaves the poller now; on_error/on_close are
 * delivered by the loop at the end of the round. Idempotent. */
void tt__conn_close(tt_conn_t *c, tt_close_kind_t kind, int err);
/* Client: the connect is in progress (EINPROGRESS) or done at once. */
void tt__conn_connecting(tt_conn_t *c, bool done, uint64_t timeout_ms);
/* The peer's FIN was read (or, when it came behind held framed input, that input
 * has now been delivered): end the read side, close or end ours as the options say. */
void tt__conn_peer_ended(tt_conn_t *c);
/* Plaintext for the layers above (framing, liveness, on_data): what a plain
 * connection does with a read, called by a transform below them. */
void tt__conn_plain_input(tt_conn_t *c, const char *buf, size_t n, size_t pending);
/* Close with the reason a socket error `err` (-errno) means. */
void tt__conn_fail(tt_conn_t *c, int err);
/* One layer's opening is done (see open_waits): the last one calls on_open and
 * writes what was queued meanwhile. */
void tt__conn_layer_opened(tt_conn_t *c);
/* A transform not yet ready for application bytes (its handshake): while held
 * the queue is not written (nothing is lost: sends queue), reading stays on
 * whatever the app asked, and the transform says when by releasing it. */
void tt__conn_wire_hold(tt_conn_t *c, bool hold);
/* The transform's own bytes to the socket, as tt__io_writev: bytes written,
 * -EAGAIN, -errno; never SIGPIPE. */
ssize_t tt__conn_wire_write(tt_conn_t *c, const void *buf, size_t len);
/* The transform wants WRITABLE (its own write hit a full socket), or no more. */
void tt__conn_want_write(tt_conn_t *c, bool on);
/* Reading as the app asked (read_start/stop), and whether the read side is done. */
bool tt__conn_wants_input(const tt_conn_t *c);
/* The peer's FIN was read but waits behind held framed input. */
bool tt__conn_eof_held(const tt_conn_t *c);
/* Deferred work for the loop: run every connection on the pending list. */
void tt__conn_run_pending(tt_loop_t *loop);
void tt__conn_pool_release(tt_loop_t *loop);
tt__conn_ext_t *tt__conn_ext(tt_conn_t *c);
static inline bool tt__conn_is_closing(const tt_conn_t *c)
{
    return c->state >= TT_STATE_CLOSING;
}
/* Liveness: queue heartbeat bytes at the next boundary, ahead of a stream source
 * waiting for input (0 or -errno); and whether nothing but such a source is
 * queued (a heartbeat now would not wait behind application data). */
int tt__conn_send_control(tt_conn_t *c, const void *buf, size_t len);
bool tt__conn_control_idle(const tt_conn_t *c);
/* The hard cap: would queueing `add` more payload bytes pass it? Then the
 * connection is closed (TT_CLOSE_SEND_OVERFLOW) and -ENOBUFS returned, else 0. */
int tt__conn_over_cap(tt_conn_t *c, uint64_t add);
/* The bytes just queued for `c` by a broadcast have more of the sender's read
 * behind them: write them one poll later than the end of this round (a poll that
 * does not wait), so that the sender's next lines, if they have arrived, go in
 * the same write. A delayed flush is never delayed again. */
void tt__conn_flush_late(tt_conn_t *c);
/* Copy `len` bytes into the queue (never written inside the call), as tt_send
 * otherwise: small broadcasts are packed into the tail chunk this way, `hint`
 * the bytes, these included, known to be queued soon (0: not known;
 * tt__sendq_push_copy_hint). */
int tt__conn_send_queued(tt_conn_t *c, const void *buf, size_t len, size_t hint);
/* tt_send_owned of part of a shared buffer (a broadcast's payload): `pin` is what
 * else of it the queue entry keeps alive, charged against the hard cap with it,
 * so a slow reader holding a small part of many payloads is stopped by what it
 * really pins. */
int tt__conn_send_shared(tt_conn_t *c, void *buf, size_t len, uint32_t pin, tt_free_cb free_cb,
                         void *arg);
/* Send `len` bytes that continue, in the same buffer, the owned send queued last
 * (tt_send_owned with the same free_cb and arg, ending at `buf`): that entry grows,
 * no node and no new reference. tt_send's result, or -EAGAIN when the queue's
 * last entry is not that send (the caller sends otherwise). */
int tt__conn_extend_owned(tt_conn_t *c, const void *buf, size_t len, tt_free_cb free_cb,
                          void *arg);
/* Shared bytes (a broadcast's payload) written at once from the caller's buffer
 * when nothing is queued and the socket is not known to be full, as tt_send does,
 * with the same accounting (queue cap, bytes written and queued in total, socket
 * full: waiting for WRITABLE). Returns how many bytes the kernel took (0..len;
 * the caller queues the rest, which always goes behind them), -ENOBUFS when the
 * hard cap closed the connection, or -EAGAIN when it was not written (queued
 * already, corked, ending, a transform on, or io_uring, whose flush sends it as
 * a request with the round's others): the caller queues it all. No user
 * callback runs inside. */
ssize_t tt__conn_write_shared(tt_conn_t *c, const void *buf, size_t len);
/* A Unix domain connection (marked by the server or client that made it, on a
 * connected socket): TCP-only options are refused, and the peer's credentials
 * (`cred`, or read from the socket when NULL) are kept for tt_conn_peer_cred.
 * Returns 0 or -ENOMEM (no extension for the credentials; the mark holds). */
int tt__conn_mark_unix(tt_conn_t *c, const tt_peer_cred_t *cred);
bool tt__conn_is_unix(const tt_conn_t *c);
/* Server bookkeeping (server.c). */
void tt__server_unlink(tt_conn_t *c);

#endif
