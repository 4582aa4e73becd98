/* tether: event-driven, non-blocking TCP and UDP networking for Linux.
 *
 * One public header. Conventions used throughout:
 *  - Every call that can fail returns 0 (or a documented non-negative value) on
 *    success and a negative errno on failure; library-only codes are below -4000.
 *    An invalid call returns -EINVAL and has changed nothing.
 *  - Handles belong to one loop, and so to one thread, for life. The only calls that
 *    may be made from another thread are tt_loop_post() and tt_loop_stop().
 *  - No user callback runs inside an API call: results are delivered by the loop.
 *    Any API may be called from inside a callback, including destroying the handle
 *    the callback is about; the free is deferred until the callback returns.
 *  - Read data is lent to the callback and valid only until it returns.
 */
#ifndef TETHER_H
#define TETHER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- version and export ------------------------------------------------------ */

#define TETHER_VERSION_MAJOR 0
#define TETHER_VERSION_MINOR 1
#define TETHER_VERSION_PATCH 0
#define TETHER_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define TT_EXTERN __attribute__((visibility("default")))
#else
#define TT_EXTERN
#endif

/* ---- error codes --------------------------------------------------------------
 * System errors are returned as -errno (-ECONNREFUSED, -ETIMEDOUT, ...). Codes that
 * have no errno equivalent sit below -4000. */

#define TT_EOF (-4001)          /* end of stream */
#define TT_EFRAMESIZE (-4002)   /* a frame over the decoder's size limit */
#define TT_EPROTOCOL (-4003)    /* malformed frame or protocol violation */
#define TT_EOVERFLOW (-4004)    /* send queue passed its hard cap */
#define TT_EIDLE (-4005)        /* idle timeout */
#define TT_EHEARTBEAT (-4006)   /* no sign of life within the dead-after time */
#define TT_ENOTFOUND (-4007)    /* no such host name */
#define TT_ETEMPFAIL (-4008)    /* temporary name resolution failure */
#define TT_EDNSTIMEOUT (-4009)  /* name resolution timed out */
#define TT_ESHUTDOWN (-4010)    /* the server is shutting down */
#define TT_EVETO (-4011)        /* refused by an admission hook (hooks may return their own) */

/* Text for an error code; never NULL (unknown codes give "unknown error"). */
TT_EXTERN const char *tt_strerror(int err);
/* The symbolic name: "ECONNREFUSED", "TT_EOF", ...; never NULL. */
TT_EXTERN const char *tt_err_name(int err);

/* ---- opaque handles ---------------------------------------------------------- */

typedef struct tt_loop tt_loop_t;
typedef struct tt_timer tt_timer_t;
typedef struct tt_conn tt_conn_t;
typedef struct tt_server tt_server_t;

/* ---- addresses ----------------------------------------------------------------
 * A plain value type: IPv4 or IPv6 socket address and its length. */

typedef struct tt_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len;
} tt_addr_t;

/* Longest text tt_addr_format() writes, with the terminating NUL:
 * "[ffff:...:ffff%ifname]:65535". */
#define TT_ADDR_STRLEN 64

/* Parse a numeric host ("127.0.0.1", "::1", "fe80::1%eth0", "" or "*" for the IPv6
 * wildcard, "0.0.0.0") and a port. No name lookup is done.
 * Returns 0 or -EINVAL (NULL argument or not a numeric address). */
TT_EXTERN int tt_addr_parse(tt_addr_t *out, const char *host, uint16_t port);
/* Parse "HOST:PORT", "[V6]:PORT" or ":PORT" (IPv6 wildcard, dual stack).
 * Returns 0 or -EINVAL (malformed text, port out of 0..65535). */
TT_EXTERN int tt_addr_parse_hostport(tt_addr_t *out, const char *text);
/* Write "1.2.3.4:80" or "[::1]:80" into buf. Returns the length written (excluding
 * the NUL), -EINVAL, or -ENOSPC (buf too small; buf holds "" then). */
TT_EXTERN int tt_addr_format(const tt_addr_t *addr, char *buf, size_t size);
/* Write just the host part ("1.2.3.4", "::1"). Same returns as tt_addr_format. */
TT_EXTERN int tt_addr_format_host(const tt_addr_t *addr, char *buf, size_t size);
/* The port in host byte order; 0 for NULL or an unknown family. */
TT_EXTERN uint16_t tt_addr_port(const tt_addr_t *addr);
/* Fill `out` from a sockaddr of `len` bytes. Returns 0 or -EINVAL (not AF_INET/6). */
TT_EXTERN int tt_addr_from_sockaddr(tt_addr_t *out, const struct sockaddr *sa, socklen_t len);

/* ---- loop ---------------------------------------------------------------------
 * A loop lives from tt_loop_init() to a tt_loop_close() that returned 0; it runs on
 * the thread that calls tt_loop_run(). */

typedef enum tt_run_mode {
    TT_RUN_DEFAULT = 0, /* until there is no more work or tt_loop_stop() */
    TT_RUN_ONCE,        /* wait for and process one round of events */
    TT_RUN_NOWAIT       /* process what is ready, never block */
} tt_run_mode_t;

typedef void (*tt_post_cb)(tt_loop_t *loop, void *arg);

/* Create a loop. Returns 0 and *out, -EINVAL, -ENOMEM, or the errno of
 * epoll_create1/eventfd (-EMFILE, ...). */
TT_EXTERN int tt_loop_init(tt_loop_t **out);
/* Free the loop. Returns 0, or -EBUSY while any handle (timer, connection, server)
 * is still open; then nothing was freed. Not from inside tt_loop_run(). */
TT_EXTERN int tt_loop_close(tt_loop_t *loop);
/* Run the loop in the given mode. Returns 0 when no work is left (no open server,
 * connection, active timer or pending post), 1 when work remains (after a stop, or
 * in ONCE/NOWAIT mode), -EINVAL, or -EBUSY when called re-entrantly. */
TT_EXTERN int tt_loop_run(tt_loop_t *loop, tt_run_mode_t mode);
/* Make tt_loop_run() return after the current iteration. Thread-safe and
 * async-signal-safe (it only stores a flag and writes to an eventfd).
 * Returns 0 or -EINVAL. */
TT_EXTERN int tt_loop_stop(tt_loop_t *loop);
/* Run fn(loop, arg) on the loop's thread during its next iteration. Thread-safe
 * (not async-signal-safe: it takes a mutex and may allocate). Posts run in order.
 * Returns 0, -EINVAL, or -ENOMEM. A post keeps the loop alive until it has run;
 * posts still queued at tt_loop_close() are dropped without being called. */
TT_EXTERN int tt_loop_post(tt_loop_t *loop, tt_post_cb fn, void *arg);
/* The loop's cached time in milliseconds (CLOCK_MONOTONIC), refreshed once per
 * iteration. */
TT_EXTERN uint64_t tt_loop_now(const tt_loop_t *loop);
/* Refresh the cached time now. */
TT_EXTERN void tt_loop_update_time(tt_loop_t *loop);
/* Number of open handles (timers, connections, servers) on the loop. */
TT_EXTERN size_t tt_loop_handle_count(const tt_loop_t *loop);

/* ---- timer --------------------------------------------------------------------
 * A timer lives from tt_timer_init() until tt_timer_close(); the memory is released
 * by the loop after the current callback returns. */

typedef void (*tt_timer_cb)(tt_timer_t *timer, void *data);

/* Create a stopped timer. Returns 0 and *out, -EINVAL, or -ENOMEM. */
TT_EXTERN int tt_timer_init(tt_loop_t *loop, tt_timer_t **out, tt_timer_cb cb, void *data);
/* (Re)start: fire after timeout_ms, then every repeat_ms if repeat_ms > 0.
 * A running timer is restarted. O(1). Returns 0 or -EINVAL (closed timer, or a
 * timeout above TT_TIMEOUT_MAX). */
TT_EXTERN int tt_timer_start(tt_timer_t *timer, uint64_t timeout_ms, uint64_t repeat_ms);
/* Stop; a stopped timer does not keep the loop alive. O(1). Returns 0 or -EINVAL. */
TT_EXTERN int tt_timer_stop(tt_timer_t *timer);
/* Stop and release. Safe inside the timer's own callback. Returns 0 or -EINVAL. */
TT_EXTERN int tt_timer_close(tt_timer_t *timer);
TT_EXTERN bool tt_timer_is_active(const tt_timer_t *timer);
TT_EXTERN void *tt_timer_get_data(const tt_timer_t *timer);

/* Longest timeout any call accepts: about 49 days, the span of the timing wheel. */
#define TT_TIMEOUT_MAX ((uint64_t)1 << 32)

/* ---- connection ---------------------------------------------------------------
 * A connection lives from tt_connect() (or its acceptance by a server) until its
 * on_close callback returns; it gets exactly one on_close, whatever happened. */

typedef enum tt_conn_state {
    TT_STATE_CONNECTING = 0, /* client: connect in progress */
    TT_STATE_OPEN,           /* both directions open */
    TT_STATE_READ_CLOSED,    /* peer sent FIN; we may still send */
    TT_STATE_WRITE_CLOSING,  /* tt_end() called: flushing the queue, then FIN */
    TT_STATE_WRITE_CLOSED,   /* our FIN sent; still reading until the peer's FIN */
    TT_STATE_CLOSING,        /* closed; on_close pending */
    TT_STATE_CLOSED          /* on_close delivered */
} tt_conn_state_t;

/* Why a connection ended. Graceful endings: PEER_CLOSED, LOCAL_END, LOCAL_DESTROY.
 * Everything else is abnormal and is preceded by on_error. */
typedef enum tt_close_kind {
    TT_CLOSE_PEER_CLOSED = 0,   /* peer sent FIN first; both sides then closed */
    TT_CLOSE_LOCAL_END,         /* tt_end() first, then the peer's FIN arrived */
    TT_CLOSE_LOCAL_DESTROY,     /* tt_destroy() or tt_destroy_soon() */
    TT_CLOSE_PEER_RESET,        /* ECONNRESET / EPIPE: the peer reset the connection */
    TT_CLOSE_CONNECT_FAILED,    /* refused, unreachable, name not found, ... (error) */
    TT_CLOSE_CONNECT_TIMEOUT,   /* the connect timeout ran out */
    TT_CLOSE_LINGER_TIMEOUT,    /* after tt_end(), the peer never closed in time */
    TT_CLOSE_SEND_OVERFLOW,     /* the send queue passed its hard cap */
    TT_CLOSE_IO_ERROR,          /* any other socket error (error holds it) */
    TT_CLOSE_IDLE_TIMEOUT,      /* liveness: idle (detail says read/write/all) */
    TT_CLOSE_HEARTBEAT_TIMEOUT, /* liveness: peer silent past the dead-after time */
    TT_CLOSE_KERNEL_TIMEOUT,    /* ETIMEDOUT from the kernel: keepalive/user timeout */
    TT_CLOSE_FRAME_TOO_LARGE,   /* framing: a frame over the size limit */
    TT_CLOSE_PROTOCOL_ERROR,    /* framing: malformed input */
    TT_CLOSE_SHUTDOWN           /* server shutdown deadline passed */
} tt_close_kind_t;

/* What a connection had done when it closed: enough to tell what may not have
 * arrived and resume from there. */
typedef struct tt_close_info {
    tt_close_kind_t kind;
    int error;              /* negative errno or TT_E* code; 0 for graceful ends */
    int detail;             /* kind-specific (idle: TT_IDLE_READ/WRITE/ALL), else 0 */
    uint64_t bytes_queued;  /* all bytes the app ever queued */
    uint64_t bytes_written; /* bytes handed to the kernel */
    uint64_t bytes_unsent;  /* queued but never handed to the kernel (dropped) */
    uint64_t bytes_unacked; /* handed to the kernel, not acknowledged by the peer
                               (SIOCOUTQ at close; 0 if unknown) */
    uint64_t bytes_acked;   /* acknowledged by the peer (TCP_INFO tcpi_bytes_acked) */
} tt_close_info_t;

/* Per-connection event handlers. Any member may be NULL. The struct is copied. */
typedef struct tt_conn_handlers {
    /* The connection is established (accepted, or connect succeeded). */
    void (*on_open)(tt_conn_t *conn);
    /* `len` bytes arrived; `pending` is how many more the kernel holds for this
     * socket at this moment. `data` is lent until the callback returns. Not called
     * for a framed connection (see on_message). */
    void (*on_data)(tt_conn_t *conn, const void *data, size_t len, size_t pending);
    /* The send queue dropped to zero after it had reached the high-water mark. */
    void (*on_drain)(tt_conn_t *conn);
    /* The peer finished sending (read returned 0). Unless half-open is on, tether
     * ends its side too once the queue is flushed. */
    void (*on_end)(tt_conn_t *conn);
    /* An abnormal ending; on_close follows with the same error. */
    void (*on_error)(tt_conn_t *conn, int error);
    /* The connection is gone: exactly once. The handle is freed when this returns. */
    void (*on_close)(tt_conn_t *conn, const tt_close_info_t *info);
    /* Framing: one whole message, lent until the callback returns. */
    void (*on_message)(tt_conn_t *conn, const void *msg, size_t len);
} tt_conn_handlers_t;

/* Free function for tt_send_owned: called once the bytes are no longer needed
 * (written, or dropped at close), on the loop's thread. */
typedef void (*tt_free_cb)(void *buf, void *arg);

/* Sending. All sends are queued in call order and written as fast as the socket
 * allows; a send when nothing is queued is written at once. Return value:
 *   0              queued (or written), queue below the high-water mark;
 *   TT_SEND_FULL   queued, but the queue is at or above the high-water mark: stop
 *                  sending until on_drain;
 *   -EINVAL        bad argument;
 *   -EPIPE         tt_end() was already called or the connection is closing
 *                  (sends made while still connecting are queued);
 *   -ENOBUFS       the hard cap would be passed: nothing was queued and the
 *                  connection is closed with TT_CLOSE_SEND_OVERFLOW;
 *   -ENOMEM        out of memory; nothing was queued. */
#define TT_SEND_FULL 1

/* Copy `len` bytes and queue them; `buf` may be reused at once. */
TT_EXTERN int tt_send(tt_conn_t *conn, const void *buf, size_t len);
/* Copy a NUL-terminated string (without the NUL). */
TT_EXTERN int tt_send_text(tt_conn_t *conn, const char *text);
/* Copy `iovcnt` buffers as one send (written with one writev when possible). */
TT_EXTERN int tt_sendv(tt_conn_t *conn, const struct iovec *iov, int iovcnt);
/* Hand `buf` over: tether reads it in place (no copy) and calls free_cb(buf, arg)
 * once it is written or dropped. On an error return free_cb is NOT called and the
 * caller still owns buf. */
TT_EXTERN int tt_send_owned(tt_conn_t *conn, void *buf, size_t len, tt_free_cb free_cb,
                            void *arg);

/* Flags for tt_send_file. */
#define TT_FILE_CLOSE_FD 0x1 /* the connection owns fd and closes it when done */
#define TT_FILE_THEN_END 0x2 /* tt_end() once the file is sent ("send then close") */
/* Length meaning "until end of file / end of stream". */
#define TT_FILE_TO_EOF UINT64_MAX

/* Queue `len` bytes of `fd` from `offset`. Regular files go with sendfile(2) (no
 * copy through user space; the file is read when its turn comes, so it should not
 * shrink meanwhile); pipes, sockets and other pollable fds are read as they become
 * readable (offset must be 0) and the fd is switched to non-blocking mode.
 * With TT_FILE_CLOSE_FD the fd belongs to the connection from this call on, even on
 * failure (it is closed then). Returns as tt_send, plus -EBADF (fd not open) and
 * -ESPIPE (offset on a non-seekable fd). */
TT_EXTERN int tt_send_file(tt_conn_t *conn, int fd, uint64_t offset, uint64_t len,
                           unsigned flags);

/* Graceful close: queue `len` last bytes (copied; buf may be NULL when len is 0),
 * flush the queue, then shutdown(SHUT_WR). Reading continues until the peer's FIN
 * closes the connection; if it has not come within the linger time (default 30 s,
 * see tt_conn_set_linger), the connection is destroyed with
 * TT_CLOSE_LINGER_TIMEOUT. Returns 0, -EINVAL, -EPIPE (already ended/closing), or
 * the send errors. */
TT_EXTERN int tt_end(tt_conn_t *conn, const void *buf, size_t len);

#define TT_DESTROY_RESET 0x1 /* abort with RST (SO_LINGER 0) instead of FIN */
/* Close now, dropping what is queued (reported in bytes_unsent). on_close follows
 * from the loop. Calling it on a connection already closing does nothing and
 * returns 0. Returns 0 or -EINVAL. */
TT_EXTERN int tt_destroy(tt_conn_t *conn, unsigned flags);
/* Close as soon as the queue is flushed (no half-close wait for the peer).
 * Returns 0, -EINVAL, or 0 if already closing. */
TT_EXTERN int tt_destroy_soon(tt_conn_t *conn);

/* Reading flow control: stop delivering on_data (the kernel buffer fills and TCP
 * pushes back on the peer) and resume. Return 0, -EINVAL, or -ENOTCONN (closing). */
TT_EXTERN int tt_conn_read_stop(tt_conn_t *conn);
TT_EXTERN int tt_conn_read_start(tt_conn_t *conn);
TT_EXTERN bool tt_conn_is_reading(const tt_conn_t *conn);

TT_EXTERN void tt_conn_set_data(tt_conn_t *conn, void *data);
TT_EXTERN void *tt_conn_get_data(const tt_conn_t *conn);
TT_EXTERN tt_loop_t *tt_conn_loop(const tt_conn_t *conn);
/* The server that accepted this connection, or NULL for a client. */
TT_EXTERN tt_server_t *tt_conn_server(const tt_conn_t *conn);
/* Replace the handlers (copied). Returns 0 or -EINVAL. */
TT_EXTERN int tt_conn_set_handlers(tt_conn_t *conn, const tt_conn_handlers_t *h);
/* A number unique among the connections of this process. */
TT_EXTERN uint64_t tt_conn_id(const tt_conn_t *conn);
TT_EXTERN tt_conn_state_t tt_conn_state(const tt_conn_t *conn);
/* "connecting", "open", "read-closed", "write-closing", "write-closed", "closing",
 * "closed". */
TT_EXTERN const char *tt_conn_state_name(tt_conn_state_t state);
/* "peer closed", "peer reset", ..., as the kind's one-line description. */
TT_EXTERN const char *tt_close_kind_name(tt_close_kind_t kind);

/* Queue accounting. */
TT_EXTERN size_t tt_conn_queued_bytes(const tt_conn_t *conn);
TT_EXTERN uint64_t tt_conn_written_bytes(const tt_conn_t *conn);

/* Defaults: high-water 64 KiB; hard cap 64 MiB of queued memory (file segments do
 * not count, they hold no memory); linger 30 s; TCP_NODELAY on; half-open off. */
#define TT_DEFAULT_HIGH_WATER ((size_t)64 * 1024)
#define TT_DEFAULT_QUEUE_CAP ((size_t)64 * 1024 * 1024)
#define TT_DEFAULT_LINGER_MS 30000

/* High-water mark in bytes (> 0). Returns 0 or -EINVAL. */
TT_EXTERN int tt_conn_set_high_water(tt_conn_t *conn, size_t bytes);
/* Hard cap on queued memory; 0 means no cap. Returns 0 or -EINVAL (below the
 * high-water mark). */
TT_EXTERN int tt_conn_set_queue_cap(tt_conn_t *conn, size_t bytes);
/* Half-open: with it on, the peer's FIN only fires on_end and the app decides when
 * to end its side. Returns 0 or -EINVAL. */
TT_EXTERN int tt_conn_set_half_open(tt_conn_t *conn, bool on);
/* Linger deadline after tt_end (0: wait forever). Returns 0 or -EINVAL. */
TT_EXTERN int tt_conn_set_linger(tt_conn_t *conn, uint64_t ms);
/* Socket options. Return 0, -EINVAL, or the setsockopt errno. */
TT_EXTERN int tt_conn_set_nodelay(tt_conn_t *conn, bool on);
TT_EXTERN int tt_conn_set_keepalive(tt_conn_t *conn, bool on);
TT_EXTERN int tt_conn_set_sndbuf(tt_conn_t *conn, int bytes);
TT_EXTERN int tt_conn_set_rcvbuf(tt_conn_t *conn, int bytes);
/* The socket descriptor (for options tether does not wrap), or -1 once closed.
 * Do not read, write or close it. */
TT_EXTERN int tt_conn_fd(const tt_conn_t *conn);

/* Addresses. Return 0, -EINVAL, or -ENOTCONN (no address yet / closed). */
TT_EXTERN int tt_conn_peer_addr(const tt_conn_t *conn, tt_addr_t *out);
TT_EXTERN int tt_conn_local_addr(const tt_conn_t *conn, tt_addr_t *out);

/* Totals since the connection was created. Packets count read and write calls
 * that moved data (one recv or writev or sendfile is one packet). */
typedef struct tt_conn_stats {
    uint64_t id;
    tt_conn_state_t state;
    tt_addr_t local;
    tt_addr_t peer;
    uint64_t age_ms;
    uint64_t bytes_in, bytes_out;
    uint64_t packets_in, packets_out;
    uint64_t messages_in, messages_out; /* framing */
    uint64_t queued_bytes;              /* in the send queue now */
    uint64_t bytes_queued_total;        /* all bytes ever queued */
} tt_conn_stats_t;

/* Fill `out`. Returns 0 or -EINVAL. Addresses are zero (len 0) when unknown. */
TT_EXTERN int tt_conn_get_stats(const tt_conn_t *conn, tt_conn_stats_t *out);

/* The kernel's view (TCP_INFO and SIOCOUTQ/SIOCOUTQNSD). */
typedef struct tt_tcp_info {
    uint32_t rtt_us, rttvar_us;
    uint32_t retransmits_total; /* tcpi_total_retrans */
    uint32_t unacked_segs;      /* tcpi_unacked */
    uint64_t segs_in, segs_out;
    uint64_t bytes_acked, bytes_received;
    uint32_t snd_cwnd;
    uint32_t outq_bytes;   /* SIOCOUTQ: sent or unsent, not yet acknowledged */
    uint32_t notsent_bytes; /* SIOCOUTQNSD: in the kernel, not yet sent */
} tt_tcp_info_t;

/* Returns 0, -EINVAL, -ENOTCONN (closed), or the getsockopt errno. */
TT_EXTERN int tt_conn_get_tcp_info(const tt_conn_t *conn, tt_tcp_info_t *out);

/* ---- client -------------------------------------------------------------------
 * A client connection is created by tt_connect() and lives until its on_close. */

typedef struct tt_connect_opts {
    uint64_t timeout_ms;        /* connect timeout; 0 means none */
    const tt_addr_t *bind_addr; /* bind the local side first; NULL for any */
} tt_connect_opts_t;

/* Start a non-blocking connect to a numeric address. On 0, *out is a connection in
 * TT_STATE_CONNECTING; on_open or on_close (TT_CLOSE_CONNECT_FAILED with the errno,
 * or TT_CLOSE_CONNECT_TIMEOUT) follows from the loop, never from inside this call.
 * Sends made before on_open are queued. `h` is copied; `data` is the user pointer;
 * `opts` may be NULL. Returns 0, -EINVAL, -EAFNOSUPPORT, -ENOMEM, or the errno of
 * socket()/bind() (-EMFILE, -EADDRINUSE, ...); then no connection exists. */
TT_EXTERN int tt_connect(tt_loop_t *loop, const tt_addr_t *addr, const tt_connect_opts_t *opts,
                         const tt_conn_handlers_t *h, void *data, tt_conn_t **out);

/* ---- server -------------------------------------------------------------------
 * A server lives from tt_server_listen() until tt_server_close(); connections it
 * accepted live on independently until their own on_close. */

typedef struct tt_server_opts {
    int backlog;          /* 0: SOMAXCONN */
    bool no_reuseaddr;    /* SO_REUSEADDR is on unless this is set */
    bool v6only;          /* IPv6 only (default: dual stack on an IPv6 wildcard) */
    bool half_open;       /* default for accepted connections */
    size_t high_water;    /* 0: TT_DEFAULT_HIGH_WATER */
    size_t queue_cap;     /* 0: TT_DEFAULT_QUEUE_CAP; SIZE_MAX: no cap */
} tt_server_opts_t;

/* Listen on `addr` (port 0 picks a free port; see tt_server_addr). Every accepted
 * connection gets a copy of `h`, starts with user data NULL and receives on_open.
 * `opts` may be NULL. `data` is the server's user pointer. Returns 0 and *out,
 * -EINVAL, -ENOMEM, or the errno of socket/bind/listen (-EADDRINUSE, -EACCES, ...). */
TT_EXTERN int tt_server_listen(tt_loop_t *loop, const tt_addr_t *addr,
                               const tt_server_opts_t *opts, const tt_conn_handlers_t *h,
                               void *data, tt_server_t **out);
/* Stop listening and free the server. Accepted connections stay open (their
 * tt_conn_server() becomes NULL). Safe inside any callback. Returns 0 or -EINVAL. */
TT_EXTERN int tt_server_close(tt_server_t *srv);
/* The bound address, with the port the kernel chose. Returns 0 or -EINVAL. */
TT_EXTERN int tt_server_addr(const tt_server_t *srv, tt_addr_t *out);
TT_EXTERN void *tt_server_get_data(const tt_server_t *srv);
TT_EXTERN void tt_server_set_data(tt_server_t *srv, void *data);
/* Live connections accepted by this server. */
TT_EXTERN size_t tt_server_conn_count(const tt_server_t *srv);
/* Total accepted since listen. */
TT_EXTERN uint64_t tt_server_accepted_total(const tt_server_t *srv);
/* Call fn for every live connection (oldest first). fn may not close connections;
 * return non-zero from fn to stop early. Returns the number visited or -EINVAL. */
TT_EXTERN int tt_server_foreach(tt_server_t *srv, int (*fn)(tt_conn_t *conn, void *arg),
                                void *arg);

#ifdef __cplusplus
}
#endif
#endif /* TETHER_H */
