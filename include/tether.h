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
#include <sys/un.h>
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
#define TT_ETLS (-4012)         /* TLS: handshake or record failure (the close info's
                                   reason says which) */
#define TT_ETRUNCATED (-4013)   /* TLS: the stream ended without close_notify */

/* Text for an error code; never NULL (unknown codes give "unknown error"). */
TT_EXTERN const char *tt_strerror(int err);
/* The symbolic name: "ECONNREFUSED", "TT_EOF", ...; never NULL. */
TT_EXTERN const char *tt_err_name(int err);

/* ---- opaque handles ---------------------------------------------------------- */

typedef struct tt_loop tt_loop_t;
typedef struct tt_timer tt_timer_t;
typedef struct tt_watch tt_watch_t;
typedef struct tt_signal tt_signal_t;
typedef struct tt_conn tt_conn_t;
typedef struct tt_tls_ctx tt_tls_ctx_t;
typedef struct tt_server tt_server_t;
typedef struct tt_udp tt_udp_t;

/* ---- addresses ----------------------------------------------------------------
 * A plain value type: an IPv4, IPv6 or Unix domain socket address and its length.
 * A Unix address is a path ("unix:/run/x.sock", "unix:x.sock") or, on Linux, an
 * abstract name ("unix:@name": no file, the name lives in the network namespace).
 * An unnamed Unix socket (an accepted peer that never bound) has len
 * sizeof(sa_family_t) and is written "unix:". docs/local.md has the details. */

typedef struct tt_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
    } u;
    socklen_t len;
} tt_addr_t;

/* Longest text tt_addr_format() writes, with the terminating NUL: "unix:" and a
 * path of up to 107 bytes ("[ffff:...:ffff%ifname]:65535" is shorter). An abstract
 * name with bytes outside printable ASCII is written with \xHH escapes and may
 * need more: tt_addr_format then returns -ENOSPC for a buffer of this size. */
#define TT_ADDR_STRLEN 128
/* The text form's prefix for Unix addresses. */
#define TT_UNIX_PREFIX "unix:"

/* Parse a numeric host ("127.0.0.1", "::1", "fe80::1%eth0", "" or "*" for the IPv6
 * wildcard, "0.0.0.0") and a port; or a Unix address "unix:/path", "unix:@name"
 * (the port is ignored then). No name lookup is done. In an abstract name, \xHH
 * stands for the byte HH (the way tt_addr_format writes unprintable bytes).
 * Returns 0, -EINVAL (NULL argument, not a numeric address, an empty path or
 * name), or -ENAMETOOLONG (a path over 107 bytes, a name over 107). */
TT_EXTERN int tt_addr_parse(tt_addr_t *out, const char *host, uint16_t port);
/* Parse "HOST:PORT", "[V6]:PORT", ":PORT" (IPv6 wildcard, dual stack), or a Unix
 * address "unix:/path" / "unix:@name" (no port). Returns 0, -EINVAL (malformed
 * text, port out of 0..65535) or -ENAMETOOLONG. */
TT_EXTERN int tt_addr_parse_hostport(tt_addr_t *out, const char *text);
/* Write "1.2.3.4:80", "[::1]:80", "unix:/path" or "unix:@name" into buf. Returns the
 * length written (excluding the NUL), -EINVAL, or -ENOSPC (buf too small; buf holds
 * "" then). */
TT_EXTERN int tt_addr_format(const tt_addr_t *addr, char *buf, size_t size);
/* Write just the host part ("1.2.3.4", "::1"; a Unix address as tt_addr_format
 * writes it). Same returns as tt_addr_format. */
TT_EXTERN int tt_addr_format_host(const tt_addr_t *addr, char *buf, size_t size);
/* The port in host byte order; 0 for NULL, a Unix address or an unknown family. */
TT_EXTERN uint16_t tt_addr_port(const tt_addr_t *addr);
/* Fill `out` from a sockaddr of `len` bytes (AF_INET, AF_INET6, or AF_UNIX: `len`
 * as the kernel gave it, from sizeof(sa_family_t) for an unnamed socket up to
 * sizeof(struct sockaddr_un)). Returns 0 or -EINVAL (another family, bad length). */
TT_EXTERN int tt_addr_from_sockaddr(tt_addr_t *out, const struct sockaddr *sa, socklen_t len);
/* True when `addr` is a Unix domain address (path, abstract or unnamed). */
TT_EXTERN bool tt_addr_is_unix(const tt_addr_t *addr);
/* The file system path of a Unix address (lent, NUL-terminated, inside *addr), or
 * NULL for an abstract name, an unnamed socket or an IP address. */
TT_EXTERN const char *tt_addr_unix_path(const tt_addr_t *addr);

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
 * epoll_create1/eventfd (-EMFILE, ...). The loop waits with epoll, or with io_uring
 * when the environment variable TETHER_BACKEND is "io_uring" and the kernel allows
 * it (else epoll, silently: tt_loop_backend tells). Behaviour is the same with
 * both; with io_uring, reads need no system call of their own (the round's one
 * io_uring_enter covers them), while writes are direct system calls on both. */
TT_EXTERN int tt_loop_init(tt_loop_t **out);
/* "epoll" or "io_uring": what the loop waits with. NULL for NULL. */
TT_EXTERN const char *tt_loop_backend(const tt_loop_t *loop);
/* Free the loop. Returns 0, or -EBUSY while any handle (timer, connection, server)
 * is still open; then nothing was freed. Not from inside tt_loop_run(). */
TT_EXTERN int tt_loop_close(tt_loop_t *loop);
/* Run the loop in the given mode. Returns 0 when no work is left (no open server,
 * connection, active timer or pending post), 1 when work remains (after a stop, or
 * in ONCE/NOWAIT mode), -EINVAL, -EBUSY when called re-entrantly, or the -errno of
 * the backend's wait when it fails (say its descriptor was closed under it): the
 * loop stops instead of spinning, and every handle is still open.
 * One iteration: refresh the time; run due timers; run posts; run the pending
 * phase (coalesced writes, close delivery); free what was closed; wait for I/O
 * (no longer than the next timer); refresh the time as the wait returns; run the
 * I/O callbacks. docs/loop.md describes it. */
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
/* The loop's cached time in milliseconds (CLOCK_MONOTONIC): refreshed when the
 * wait for I/O returns, before any I/O callback (so in a callback it is the time of
 * the event), and again before the timers run. */
TT_EXTERN uint64_t tt_loop_now(const tt_loop_t *loop);
/* Refresh the cached time now. */
TT_EXTERN void tt_loop_update_time(tt_loop_t *loop);
/* Driving this loop from another one (GLib, Qt, a hand-written poll loop), as
 * libuv's uv_backend_fd/uv_backend_timeout: the other loop waits until this
 * descriptor is readable, or for tt_loop_backend_timeout() ms, then calls
 * tt_loop_run(loop, TT_RUN_NOWAIT). The descriptor is the loop's own: do not read,
 * write or close it. Returns the descriptor, or -EINVAL. */
TT_EXTERN int tt_loop_backend_fd(const tt_loop_t *loop);
/* How long the other loop may sleep before calling tt_loop_run(TT_RUN_NOWAIT): ms
 * until the next timer, 0 when work is already waiting (posts, deferred writes,
 * closes; on io_uring also data it holds and requests not yet handed to the
 * kernel, as after calls made outside tt_loop_run), -1 when only I/O can make work.
 * -EINVAL for NULL is not distinguishable from "forever": pass a loop. */
TT_EXTERN int tt_loop_backend_timeout(const tt_loop_t *loop);
/* Number of open handles (timers, connections, servers) on the loop. */
TT_EXTERN size_t tt_loop_handle_count(const tt_loop_t *loop);

/* ---- timer --------------------------------------------------------------------
 * A timer lives from tt_timer_init() until tt_timer_close(); the memory is released
 * by the loop after the current callback returns. */

typedef void (*tt_timer_cb)(tt_timer_t *timer, void *data);

/* Create a stopped timer. Returns 0 and *out, -EINVAL, or -ENOMEM. */
TT_EXTERN int tt_timer_init(tt_loop_t *loop, tt_timer_t **out, tt_timer_cb cb, void *data);
/* (Re)start: fire after timeout_ms, then every repeat_ms if repeat_ms > 0.
 * A running timer is restarted. O(1). The timeout counts from the loop's cached
 * time (tt_loop_now: the time the current event arrived, as in libuv): after a
 * long computation in a callback, call tt_loop_update_time() first. Returns 0 or -EINVAL (closed timer, or a
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

/* ---- descriptor watch ---------------------------------------------------------
 * A watch lives from tt_watch_init() until tt_watch_close(); the memory is released
 * by the loop after the current round. It reports readiness of a descriptor the
 * caller owns (a hiredis or libpq socket, a pipe, a serial port, inotify, stdin):
 * the loop never reads, writes or closes it. Level-triggered, as poll(2): while
 * the descriptor stays readable the callback comes every round. */

#define TT_WATCH_READ 0x1  /* readable (or at end of file, or in error: read tells) */
#define TT_WATCH_WRITE 0x2 /* writable */
#define TT_WATCH_ERROR 0x4 /* error or hang-up (POLLERR, POLLHUP): always reported
                              with the others; on its own when it is the only interest */

/* `events`: what is ready, TT_WATCH_* bits. An error or hang-up sets
 * TT_WATCH_ERROR and also the READ/WRITE bits asked for, so the caller's read or
 * write returns the error or the end of file. */
typedef void (*tt_watch_cb)(tt_watch_t *w, int fd, unsigned events, void *data);

/* Make a stopped watch of `fd` (which stays the caller's). Returns 0 and *out,
 * -EINVAL, -EBADF (fd not open), -EPERM (a regular file or a directory: always
 * ready, nothing to wait for; epoll refuses them), or -ENOMEM. */
TT_EXTERN int tt_watch_init(tt_loop_t *loop, tt_watch_t **out, int fd, tt_watch_cb cb,
                            void *data);
/* Watch for `events` (TT_WATCH_* bits), replacing the interest set before; 0 is
 * tt_watch_stop. May be called at any time, from any callback, the watch's own
 * included. An active watch keeps tt_loop_run running (see tt_watch_set_ref).
 * Returns 0, -EINVAL (closed, or unknown bits), -EEXIST (the loop already watches
 * this fd: one watch per descriptor, and not one tether itself uses), or the
 * backend's errno. */
TT_EXTERN int tt_watch_start(tt_watch_t *w, unsigned events);
/* No more callbacks until the next start. Returns 0 or -EINVAL. */
TT_EXTERN int tt_watch_stop(tt_watch_t *w);
/* Stop and free the watch (after this round; safe inside its own callback). Close
 * the descriptor only after this: a descriptor closed while watched may stay in the
 * kernel's interest list. Returns 0 or -EINVAL. */
TT_EXTERN int tt_watch_close(tt_watch_t *w);
/* Whether an active watch keeps tt_loop_run running (the default, true), as
 * uv_ref/uv_unref. Returns 0 or -EINVAL. */
TT_EXTERN int tt_watch_set_ref(tt_watch_t *w, bool ref);
TT_EXTERN int tt_watch_fd(const tt_watch_t *w);
TT_EXTERN void *tt_watch_get_data(const tt_watch_t *w);

/* ---- signal watch -------------------------------------------------------------
 * A signal watch lives from tt_signal_init() until tt_signal_close(). It delivers
 * one or more signals on its loop's thread, as an ordinary callback (any call may
 * be made from it), whichever thread the kernel interrupted. Several watches, on
 * several loops of one process, may watch the same signal: each gets it. The first
 * watch of a signal in the process installs tether's handler; when the last stops,
 * the disposition that was there before is restored. Signals that arrive close
 * together may be delivered once (as the kernel itself merges them). */

typedef void (*tt_signal_cb)(tt_signal_t *sig, int signum, void *data);

/* Make a signal watch watching nothing yet. Returns 0 and *out, -EINVAL or -ENOMEM. */
TT_EXTERN int tt_signal_init(tt_loop_t *loop, tt_signal_t **out, tt_signal_cb cb, void *data);
/* Add `signum` to what the watch delivers (call again for more signals). Returns
 * 0, -EINVAL (closed; or SIGKILL, SIGSTOP, or a fault signal, SIGSEGV, SIGBUS,
 * SIGFPE, SIGILL, that no handler can return from), -ENOSPC (more than 64 loops of
 * the process watch signals), -ENOMEM, or the errno of pipe/sigaction. */
TT_EXTERN int tt_signal_start(tt_signal_t *sig, int signum);
/* Stop delivering `signum`, or every signal with 0. Returns 0 or -EINVAL. */
TT_EXTERN int tt_signal_stop(tt_signal_t *sig, int signum);
/* Stop everything and free the watch (after this round; safe inside its own
 * callback). Returns 0 or -EINVAL. */
TT_EXTERN int tt_signal_close(tt_signal_t *sig);
/* Whether a watch that watches some signal keeps tt_loop_run running (default
 * true: a server that waits for SIGTERM keeps running). Returns 0 or -EINVAL. */
TT_EXTERN int tt_signal_set_ref(tt_signal_t *sig, bool ref);
TT_EXTERN void *tt_signal_get_data(const tt_signal_t *sig);

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
    TT_CLOSE_SHUTDOWN,          /* server shutdown deadline passed */
    TT_CLOSE_WS_CLOSED,         /* WebSocket: the closing handshake completed (either
                                   side first); ws_code holds the peer's code */
    TT_CLOSE_WS_ABNORMAL,       /* WebSocket: the stream ended without a close frame
                                   (1006 semantics; error TT_EOF) */
    TT_CLOSE_TLS_TRUNCATED,     /* TLS: the peer's FIN came without its close_notify:
                                   what it sent may be cut short (TT_ETRUNCATED) */
    TT_CLOSE_TLS_HANDSHAKE_FAILED, /* TLS: no handshake (TT_ETLS); reason says why:
                                   "hostname mismatch", "unknown CA", an alert... */
    TT_CLOSE_TLS_HANDSHAKE_TIMEOUT, /* TLS: the handshake did not finish in time */
    TT_CLOSE_TLS_ERROR,         /* TLS: a record or protocol failure after the
                                   handshake (bad record, renegotiation refused);
                                   reason says which (TT_ETLS) */
    TT_CLOSE_PROXY_ERROR        /* PROXY protocol: the header was missing, malformed,
                                   of a version not accepted, or too slow; reason
                                   says which (-EPROTO, TT_EOF, -ETIMEDOUT) */
} tt_close_kind_t;

/* What a connection had done when it closed: enough to tell what may not have
 * arrived and resume from there. */
typedef struct tt_close_info {
    tt_close_kind_t kind;
    int error;              /* negative errno or TT_E* code; 0 for graceful ends */
    int detail;             /* kind-specific (idle: TT_IDLE_READ/WRITE/ALL; framing:
                               TT_FRAME_DETAIL_*), else 0 */
    uint64_t bytes_queued;  /* all bytes the app ever queued */
    uint64_t bytes_written; /* bytes handed to the kernel */
    uint64_t bytes_unsent;  /* queued but never handed to the kernel (dropped) */
    uint64_t bytes_unacked; /* handed to the kernel, not acknowledged by the peer
                               (SIOCOUTQ at close, our FIN not counted) */
    uint64_t bytes_acked;   /* acknowledged by the peer: bytes_written - bytes_unacked */
    /* WebSocket (0 and "" on other connections, and on one that never got past
     * its opening handshake): the code of the close frame the peer sent (1005
     * when it had none; 1006 when no close frame came), its reason text (lent,
     * NUL-terminated), and the code we sent (0 when we sent none). */
    int ws_code;
    const char *ws_reason;
    int ws_local_code;
    /* A layer's own words for an abnormal end (TLS: "hostname mismatch",
     * "unknown CA", "certificate expired", the alert or record error); lent,
     * never NULL ("" when there are none). Over TLS the byte figures above count
     * application bytes, except bytes_unacked and bytes_acked, which are the
     * kernel's, in bytes on the wire. */
    const char *reason;
} tt_close_info_t;

/* Per-connection event handlers. Any member may be NULL. The struct is copied. */
typedef struct tt_conn_handlers {
    /* The connection is established (accepted, or connect succeeded). */
    void (*on_open)(tt_conn_t *conn);
    /* `len` bytes arrived (one read: at most 64 KiB; 16 KiB with io_uring while
     * its buffer pool lasts); `pending` is how many more the kernel holds for this
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
    /* Liveness: an idle timeout ran out; `kind` is TT_IDLE_READ, TT_IDLE_WRITE or
     * TT_IDLE_ALL. Return true to keep the connection open (the timeout starts a
     * new full period; the callback may send), false to close it with
     * TT_CLOSE_IDLE_TIMEOUT. NULL: close. */
    bool (*on_idle)(tt_conn_t *conn, int kind);
    /* Unix domain connections only: the peer passed `n` descriptors (SCM_RIGHTS).
     * They are close-on-exec and the callee's to close; `fds` is lent until the
     * callback returns. They come just before the on_data (or on_message) that
     * holds the bytes they were sent with. Setting this makes every read a
     * recvmsg with room for them, on both backends; without it the kernel closes
     * descriptors that arrive, so none leak. docs/local.md. */
    void (*on_fds)(tt_conn_t *conn, const int *fds, size_t n);
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

/* Most descriptors one tt_send_fds carries (SCM_MAX_FD). */
#define TT_SEND_FDS_MAX 253
/* Unix domain connections: send the descriptors fds[0..n) (1..TT_SEND_FDS_MAX)
 * with the `len` >= 1 bytes of buf, in order with everything queued before and
 * after: the peer's on_fds receives them just before those bytes. tether sends
 * duplicates (the caller keeps, and may close, its own); queued ones are closed
 * if the connection closes first. Always queued, written at the end of the round.
 * Returns as tt_send, plus -EOPNOTSUPP (not a Unix connection), -EINVAL (n or len
 * 0, n over the maximum, NULL), -EBADF (a descriptor is not open) or -EMFILE. */
TT_EXTERN int tt_send_fds(tt_conn_t *conn, const int *fds, size_t n, const void *buf,
                          size_t len);

/* Flags for tt_send_file. */
#define TT_FILE_CLOSE_FD 0x1 /* the connection owns fd and closes it when done */
#define TT_FILE_THEN_END 0x2 /* tt_end() once the file is sent ("send then close") */
/* Length meaning "until end of file / end of stream". */
#define TT_FILE_TO_EOF UINT64_MAX

/* Queue `len` bytes of `fd` from `offset`. Regular files go with sendfile(2) (no
 * copy through user space; the file is read when its turn comes, so it should not
 * shrink meanwhile), or with pread(2) through the loop's buffer when sendfile
 * refuses the file (EINVAL: procfs seq files); pipes, sockets and other pollable
 * fds are read as they become readable (offset must be 0) and the fd is switched
 * to non-blocking mode. With TT_FILE_TO_EOF a regular file is sent to the end of
 * file its reads find: st_size only bounds it (procfs says 0, sysfs 4096), and an
 * earlier end is the end, not an error; a given `len` past the end of file closes
 * the connection with TT_CLOSE_IO_ERROR once the real bytes are sent.
 * With TT_FILE_CLOSE_FD the fd belongs to the connection from this call on, even on
 * failure (it is closed then). Returns as tt_send, plus -EBADF (fd not open) and
 * -ESPIPE (offset on a non-seekable fd). */
TT_EXTERN int tt_send_file(tt_conn_t *conn, int fd, uint64_t offset, uint64_t len,
                           unsigned flags);

/* Graceful close: queue `len` last bytes (copied; buf may be NULL when len is 0),
 * flush the queue, then shutdown(SHUT_WR). Reading continues until the peer's FIN
 * closes the connection. The linger time (default 30 s, see tt_conn_set_linger)
 * starts at this call: while the queue drains it is restarted by every write that
 * makes progress, after our FIN it bounds the wait for the peer's; when it runs
 * out (a peer that stops reading, or never closes) the connection is destroyed
 * with TT_CLOSE_LINGER_TIMEOUT, the unwritten bytes counted in bytes_unsent.
 * Returns 0, -EINVAL, -EPIPE (already ended/closing), or the send errors. */
TT_EXTERN int tt_end(tt_conn_t *conn, const void *buf, size_t len);

#define TT_DESTROY_RESET 0x1 /* abort with RST (SO_LINGER 0) instead of FIN; a Unix
                                socket has no RST: closed at once (docs/local.md) */
/* Close now, dropping what is queued (reported in bytes_unsent). on_close follows
 * from the loop. Calling it on a connection already closing does nothing and
 * returns 0. Returns 0 or -EINVAL. */
TT_EXTERN int tt_destroy(tt_conn_t *conn, unsigned flags);
/* Close as soon as the queue is flushed (no half-close wait for the peer).
 * Returns 0, -EINVAL, or 0 if already closing. */
TT_EXTERN int tt_destroy_soon(tt_conn_t *conn);

/* Reading flow control: stop delivering on_data (the kernel buffer fills and TCP
 * pushes back on the peer) and resume. On a framed connection a stop inside
 * on_message takes effect before the next message: the rest of that read is held
 * and delivered after tt_conn_read_start(), from the loop. Return 0, -EINVAL, or -ENOTCONN (closing). */
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

/* Defaults: high-water 64 KiB; hard cap 64 MiB of queued memory; linger 30 s;
 * TCP_NODELAY on; half-open off. The high-water mark counts queued bytes; the hard
 * cap counts the heap the queue really holds: copied bytes in their chunks as
 * allocated, handed-over buffers until they are released, and about 64 bytes of
 * bookkeeping per queued send that is not packed into a chunk (file segments hold
 * only that: their bytes stay in the file). */
#define TT_DEFAULT_HIGH_WATER ((size_t)64 * 1024)
#define TT_DEFAULT_QUEUE_CAP ((size_t)64 * 1024 * 1024)
#define TT_DEFAULT_LINGER_MS 30000

/* A server's connections start with its options' mark and cap; a connection
 * given values of its own keeps them in a small state of its own (so the three
 * calls below may return -ENOMEM).
 * High-water mark in bytes (> 0). Returns 0, -EINVAL or -ENOMEM. */
TT_EXTERN int tt_conn_set_high_water(tt_conn_t *conn, size_t bytes);
/* Hard cap on queued memory (see the defaults above for what counts); 0 means no
 * cap. A send that would pass it is refused with -ENOBUFS and the connection closes
 * with TT_CLOSE_SEND_OVERFLOW. Returns 0, -EINVAL (below the high-water mark) or
 * -ENOMEM. */
TT_EXTERN int tt_conn_set_queue_cap(tt_conn_t *conn, size_t bytes);
/* Half-open: with it on, the peer's FIN only fires on_end and the app decides when
 * to end its side. Returns 0 or -EINVAL. */
TT_EXTERN int tt_conn_set_half_open(tt_conn_t *conn, bool on);
/* Linger deadline from tt_end (0: wait forever): how long the queue may go without
 * progress while it drains, then how long the peer's FIN may take after ours. Set
 * it before tt_end. Returns 0, -EINVAL or -ENOMEM. */
TT_EXTERN int tt_conn_set_linger(tt_conn_t *conn, uint64_t ms);
/* Socket options. Return 0, -EINVAL, or the setsockopt errno. On a Unix domain
 * connection the TCP-only ones (nodelay, keepalive) return -EOPNOTSUPP. */
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

/* The process at the other end of a Unix domain connection (SO_PEERCRED: as it
 * was when it connected, or, for a client, when the server called listen). */
typedef struct tt_peer_cred {
    int32_t pid;
    uint32_t uid, gid;
} tt_peer_cred_t;

/* Fill `out` with the peer's credentials, read once when the connection opened
 * and kept, so they are there in on_close too. Returns 0, -EINVAL, -EOPNOTSUPP
 * (not a Unix domain connection) or -ENOTCONN (not open yet). */
TT_EXTERN int tt_conn_peer_cred(const tt_conn_t *conn, tt_peer_cred_t *out);

/* Totals since the connection was created. Packets count read and write calls
 * that moved data (one recv or writev or sendfile is one packet). */
typedef struct tt_conn_stats {
    uint64_t id;
    tt_conn_state_t state;
    tt_addr_t local;
    tt_addr_t peer;
    uint64_t age_ms;
    uint64_t bytes_in, bytes_out;       /* application bytes (plaintext over TLS) */
    uint64_t wire_bytes_in, wire_bytes_out; /* bytes on the wire (TLS records); the
                                           same as bytes_in/out on a plain stream */
    uint64_t packets_in, packets_out;
    uint64_t messages_in, messages_out; /* framing */
    uint64_t queued_bytes;              /* in the send queue now */
    uint64_t bytes_queued_total;        /* all bytes ever queued */
    bool has_cred;                      /* Unix domain: cred is the peer's */
    tt_peer_cred_t cred;
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

/* ---- liveness -----------------------------------------------------------------
 * Liveness settings live as long as their connection; they are off until set.
 * A peer that loses power, whose cable is pulled or whose NAT entry expires sends
 * no FIN and no RST: these mechanisms notice it, and the close reason says which
 * one did (docs/liveness.md). Every timer is one lazy wheel timer per connection:
 * reads and writes only store a timestamp. */

/* Idle kinds: tt_close_info_t.detail of a TT_CLOSE_IDLE_TIMEOUT and on_idle's
 * argument. */
#define TT_IDLE_READ 1  /* nothing received for the read-idle time */
#define TT_IDLE_WRITE 2 /* nothing written for the write-idle time */
#define TT_IDLE_ALL 3   /* neither received nor written for the all-idle time */

/* Bounds and presets for the one knob, "detect a vanished peer within N ms". */
#define TT_DETECT_MIN_MS 100
#define TT_DETECT_RELAXED_MS 36000 /* tolerant of long stalls; ~36 s to notice */
#define TT_DETECT_STRICT_MS 8000   /* interactive services; ~8 s to notice */

/* Every liveness setting at once. Zero means "off" ("leave the socket option
 * alone" for keepalive and user timeout), except where detect_within_ms derives
 * a value: fields marked (derived) that are 0 are filled from it. */
typedef struct tt_liveness_opts {
    uint64_t detect_within_ms; /* the one knob; 0: derive nothing */
    uint64_t idle_read_ms;     /* TT_IDLE_READ timeout */
    uint64_t idle_write_ms;    /* TT_IDLE_WRITE timeout */
    uint64_t idle_all_ms;      /* TT_IDLE_ALL timeout */
    uint64_t heartbeat_ms;     /* (derived) write-idle time after which a ping is sent */
    uint64_t dead_after_ms;    /* (derived) silence after which the peer is dead; given
                                * here, it says the peer talks (docs/liveness.md) */
    const void *ping;          /* heartbeat bytes (copied); NULL: the framing ping */
    size_t ping_len;
    const void *pong;          /* answer to a received ping (copied); NULL: no answering */
    size_t pong_len;
    int keepalive_idle_s;      /* (derived) TCP_KEEPIDLE; all three 0: keepalive untouched */
    int keepalive_intvl_s;     /* (derived) TCP_KEEPINTVL */
    int keepalive_cnt;         /* (derived) TCP_KEEPCNT */
    uint64_t user_timeout_ms;  /* (derived) TCP_USER_TIMEOUT */
} tt_liveness_opts_t;

/* Fill `out` (zeroed first) with the values derived from `detect_within_ms`:
 * heartbeat N/4, dead-after 9N/10, user timeout 3N/5, and keepalive probes that
 * end within 9N/10 in whole seconds (at least 1 s idle + 1 probe of 1 s, so below
 * ~2.2 s the heartbeat and user timeout carry the deadline). Returns 0 or -EINVAL
 * (out NULL, or N outside TT_DETECT_MIN_MS..TT_TIMEOUT_MAX). */
TT_EXTERN int tt_liveness_derive(uint64_t detect_within_ms, tt_liveness_opts_t *out);

/* Apply every setting of `o` (ping/pong bytes are copied); NULL turns the idle
 * timeouts and heartbeat off (socket options stay as they are). Timers count from
 * this call. Returns 0, -EINVAL (bad value; nothing changed), -ENOMEM, -ENOTCONN
 * (closing), or the setsockopt errno (timers are then set, options partly). */
TT_EXTERN int tt_conn_set_liveness(tt_conn_t *conn, const tt_liveness_opts_t *o);

/* The one knob: notice a vanished peer (no FIN, no RST) or a peer not
 * acknowledging data within `ms`, whether the connection is idle, receiving, or
 * blocked sending. Sets heartbeat, dead-after, keepalive and user timeout as
 * tt_liveness_derive() says; idle timeouts and heartbeat bytes are kept. A peer
 * whose TCP stack answers is alive: the dead-after time holds it to the
 * application heartbeat (bytes from the peer, so a stopped process is noticed
 * too) only when it is known to speak one (framing pings; ping bytes without a
 * pong; ping and pong once the peer has sent either). Otherwise any segment from
 * the peer's kernel proves it alive, keepalive answers included, and the deadline
 * is at least the keepalive idle time + 500 ms (docs/liveness.md has the rule and
 * the floor of each mechanism). 0 turns heartbeat and dead-after off. Returns as
 * tt_conn_set_liveness. */
TT_EXTERN int tt_conn_set_detect_within(tt_conn_t *conn, uint64_t ms);

/* Idle timeout of `kind` (TT_IDLE_READ/WRITE/ALL); 0 turns it off. It counts the
 * application's traffic: heartbeat bytes tether sends, and reads it consumes as
 * heartbeat traffic, are not reads or writes. When it runs out, on_idle decides;
 * without on_idle the connection closes with TT_CLOSE_IDLE_TIMEOUT, error
 * TT_EIDLE, detail `kind`. Returns 0, -EINVAL (bad
 * kind, ms above TT_TIMEOUT_MAX), -ENOMEM or -ENOTCONN. */
TT_EXTERN int tt_conn_set_idle_timeout(tt_conn_t *conn, int kind, uint64_t ms);

/* Heartbeat: after `interval_ms` without writing, send the ping (see
 * tt_conn_set_heartbeat_bytes; with framing on and no bytes set, the framing
 * layer's ping; with neither, nothing is sent). After `dead_after_ms` without
 * receiving a byte, close with TT_CLOSE_HEARTBEAT_TIMEOUT, error TT_EHEARTBEAT (the
 * socket is reset: the peer is presumed gone). Setting it here says the peer
 * talks: a silent peer is closed whatever its kernel answers. While reading is paused, bytes the
 * kernel received count; while the app's own data is being acknowledged, that
 * counts too (checked when the dead-after time runs out). 0 turns either off.
 * Returns 0, -EINVAL, -ENOMEM or -ENOTCONN. */
TT_EXTERN int tt_conn_set_heartbeat(tt_conn_t *conn, uint64_t interval_ms,
                                    uint64_t dead_after_ms);
/* The heartbeat bytes, copied. `ping` is what the heartbeat sends. With `pong`
 * set, answering is on: a read made only of whole pings and pongs is heartbeat
 * traffic, not passed to on_data, and each ping in it is answered with the pong.
 * This is best-effort for unframed streams (a ping that arrives glued to other
 * bytes is data); with framing, pings are the framing layer's job. NULL/0 clears either.
 * Returns 0, -EINVAL (NULL with a length, or over 4096 bytes), -ENOMEM, -ENOTCONN. */
TT_EXTERN int tt_conn_set_heartbeat_bytes(tt_conn_t *conn, const void *ping, size_t ping_len,
                                          const void *pong, size_t pong_len);
/* SO_KEEPALIVE on with TCP_KEEPIDLE, TCP_KEEPINTVL (seconds, 1..32767) and
 * TCP_KEEPCNT (1..127): an idle peer that does not answer `cnt` probes fails the
 * connection with ETIMEDOUT (TT_CLOSE_KERNEL_TIMEOUT). Keepalive never fires while
 * data is unacknowledged: see tt_conn_set_user_timeout. Returns 0, -EINVAL,
 * -ENOTCONN, or the setsockopt errno. */
TT_EXTERN int tt_conn_set_keepalive_params(tt_conn_t *conn, int idle_s, int intvl_s, int cnt);
/* TCP_USER_TIMEOUT: data left unacknowledged this long fails the connection with
 * ETIMEDOUT (tcp(7), RFC 5482); 0 restores the kernel default. Returns 0, -EINVAL
 * (above INT_MAX), -ENOTCONN, or the setsockopt errno. */
TT_EXTERN int tt_conn_set_user_timeout(tt_conn_t *conn, uint64_t ms);

/* ---- framing ------------------------------------------------------------------
 * Framing lives on a connection from tt_conn_set_framing() until it is turned off
 * or the connection closes. It turns TCP's byte stream into messages: received
 * bytes go to on_message (one call per whole message) instead of on_data, and
 * tt_send_message*() write the header each message needs. A frame over the limit,
 * or malformed input, closes only that connection (TT_CLOSE_FRAME_TOO_LARGE with
 * TT_EFRAMESIZE, TT_CLOSE_PROTOCOL_ERROR with TT_EPROTOCOL; on_error then
 * on_close). Memory never follows a length the peer claims: a partial frame is
 * held in a buffer that grows with the bytes actually received, up to the limit
 * plus the header, and is freed as soon as the frame completes. See
 * docs/framing.md. */

typedef enum tt_frame_kind {
    TT_FRAME_LENGTH = 1, /* a length field (Netty's LengthFieldBasedFrameDecoder) */
    TT_FRAME_VARINT,     /* a base-128 varint length (protobuf length-delimited) */
    TT_FRAME_DELIMITER,  /* messages end with a byte string ("\n", "\r\n", ...) */
    TT_FRAME_FIXED,      /* every message has the same size */
    TT_FRAME_CUSTOM      /* a user callback finds the frames */
} tt_frame_kind_t;

/* Largest delimiter, in bytes. */
#define TT_FRAME_DELIM_MAX 16
/* max_frame 0 means this (1 MiB); no codec accepts more than TT_FRAME_MAX_LIMIT. */
#define TT_FRAME_DEFAULT_MAX ((size_t)1 << 20)
#define TT_FRAME_MAX_LIMIT ((size_t)1 << 30)

/* Custom decoder: look at the `len` buffered bytes of the stream, starting at a
 * frame boundary, and return
 *   0            need more bytes;
 *   N > 0        the first N bytes are one frame; on_message gets them without the
 *                first *skip bytes (*skip is 0 on entry and must stay <= N);
 *   TT_EPROTOCOL malformed (any other negative value is treated the same);
 *   TT_EFRAMESIZE the frame will be larger than the limit.
 * It runs on the loop's thread, may be called again on the same bytes after more
 * arrive, and must answer the same for the same bytes; it must not call tether.
 * tether enforces the limit itself: N over max_frame, or max_frame bytes buffered
 * with the answer still 0, closes the connection with TT_EFRAMESIZE. */
typedef ssize_t (*tt_frame_decode_cb)(const void *buf, size_t len, size_t *skip, void *arg);

/* Framing options; tt_conn_set_framing() copies them (delimiter bytes included).
 * Start from a preset below and adjust. */
typedef struct tt_frame_opts {
    tt_frame_kind_t kind;
    /* Largest message delivered to on_message (header and delimiter not
     * counted; CUSTOM: the largest frame N); 0: TT_FRAME_DEFAULT_MAX. */
    size_t max_frame;
    /* LENGTH and VARINT only: the length fields all-ones (ping) and all-ones
     * minus one (pong) are control frames with no body; a ping is answered with
     * a pong, neither reaches on_message. Off by default: both ends must agree. */
    bool control;
    struct {
        uint8_t offset;     /* bytes before the length field (sent as zeros) */
        uint8_t size;       /* width of the field: 1, 2, 4 or 8 */
        bool little_endian; /* byte order of the field (default big-endian) */
        int32_t adjust;     /* added to the field to get the bytes that follow
                               the field: -(offset + size) when the length
                               counts the whole frame, 0 when only the body */
        uint32_t strip;     /* bytes dropped from the front of each frame before
                               delivery: offset + size to deliver just the body */
    } length;
    struct {
        const void *bytes; /* the delimiter (1..TT_FRAME_DELIM_MAX bytes) */
        size_t len;
        bool accept_lf;    /* with "\r\n": a bare "\n" ends a message too */
    } delim;
    size_t fixed_size; /* FIXED: every message is this many bytes (1..max_frame) */
    struct {
        tt_frame_decode_cb decode;
        void *arg;
    } custom;
    /* Longest a partial frame may take to complete, from its first byte: a peer
     * that starts a frame and stalls is closed with TT_CLOSE_PROTOCOL_ERROR,
     * error -ETIMEDOUT, detail TT_FRAME_DETAIL_TIMEOUT. Bytes held back because
     * the app paused reading do not count. 0: TT_FRAME_DEFAULT_ASSEMBLY_MS;
     * UINT32_MAX: no limit. */
    uint32_t assembly_timeout_ms;
    /* Given in tt_server_opts_t.frame: memory that the partial-frame buffers of
     * all the server's connections may hold together. A connection whose buffer
     * growth would pass it is closed with TT_CLOSE_FRAME_TOO_LARGE, error
     * -ENOBUFS, detail TT_FRAME_DETAIL_BUDGET. 0: TT_FRAME_DEFAULT_BUDGET, or
     * twice the largest partial frame if that is more; SIZE_MAX: no limit.
     * Not used by tt_conn_set_framing (one connection: max_frame bounds it). */
    size_t budget;
} tt_frame_opts_t;

#define TT_FRAME_DEFAULT_ASSEMBLY_MS 30000u
#define TT_FRAME_DEFAULT_BUDGET ((size_t)64 << 20)
/* tt_close_info_t.detail for the framing limits above. */
#define TT_FRAME_DETAIL_TIMEOUT 1 /* a partial frame outlived assembly_timeout_ms */
#define TT_FRAME_DETAIL_BUDGET 2  /* the server's partial frames reached their budget */

/* Presets (max_frame 0: the default limit). Length prefixes deliver only the
 * body; delimiters deliver the message without its delimiter. */
TT_EXTERN tt_frame_opts_t tt_frame_u16be(size_t max_frame);
TT_EXTERN tt_frame_opts_t tt_frame_u32be(size_t max_frame);
TT_EXTERN tt_frame_opts_t tt_frame_u32le(size_t max_frame);
/* A field of `size` bytes (1, 2, 4, 8) holding the body length, body follows. */
TT_EXTERN tt_frame_opts_t tt_frame_length(uint8_t size, bool little_endian, size_t max_frame);
TT_EXTERN tt_frame_opts_t tt_frame_varint(size_t max_frame);
/* Lines ending in "\n". Only the "\n" is taken off: a line that ended in "\r\n"
 * (telnet, HTTP, most text protocols) keeps its "\r". For those use
 * tt_frame_crlf(true, max), which ends lines at "\r\n" or a bare "\n" and drops
 * the "\r". */
TT_EXTERN tt_frame_opts_t tt_frame_line(size_t max_frame);
/* Lines ending in "\r\n"; with accept_lf a bare "\n" ends a line too. Either way
 * the "\r\n" or "\n" is not part of the message. */
TT_EXTERN tt_frame_opts_t tt_frame_crlf(bool accept_lf, size_t max_frame);
/* Messages ending in the `len` bytes at `bytes` (copied when the options are
 * applied, so they must stay valid until then). */
TT_EXTERN tt_frame_opts_t tt_frame_delimiter(const void *bytes, size_t len, size_t max_frame);
TT_EXTERN tt_frame_opts_t tt_frame_fixed(size_t size);
TT_EXTERN tt_frame_opts_t tt_frame_custom(tt_frame_decode_cb decode, void *arg,
                                          size_t max_frame);

/* Turn framing on (or change it) with a copy of `opts`, or off with NULL (bytes
 * then go to on_data again). From inside on_message the switch applies from the
 * next byte of the stream, so a protocol may change framing mid-stream (a line
 * handshake, then length-prefixed messages); from on_data, from the next read.
 * No callback runs inside this call. For every connection of a server use
 * tt_server_opts_t.frame (or call this in on_open: no byte has been read yet).
 * Returns 0, -EINVAL (conn NULL, invalid options), -ENOTCONN (closing), -EBUSY
 * (part of a frame is buffered and would be lost; nothing changed), or -ENOMEM. */
TT_EXTERN int tt_conn_set_framing(tt_conn_t *conn, const tt_frame_opts_t *opts);
/* Whether framing is on (false for NULL). */
TT_EXTERN bool tt_conn_is_framed(const tt_conn_t *conn);
/* Bytes of a partial frame held for the connection (0 between frames: then no
 * buffer is allocated; also 0 with framing off or conn NULL). */
TT_EXTERN size_t tt_conn_frame_buffered(const tt_conn_t *conn);

/* Send one message: tether writes the header and the message with one writev
 * when the queue is empty, and copies only what the socket did not take (as
 * tt_sendv). LENGTH/VARINT: header = offset zero bytes then the length field;
 * DELIMITER: the message must not contain the delimiter (a bare "\n" with
 * accept_lf), which is appended ("\r\n" for crlf); FIXED: len must be the size;
 * CUSTOM: the message must already be one whole frame and is sent as it is.
 * Counted in messages_out. Returns as tt_send, plus -EMSGSIZE (len over
 * max_frame, or not representable in the length field, or not the fixed size),
 * -EINVAL (delimiter inside the message) and -ENOTCONN (framing is off). */
TT_EXTERN int tt_send_message(tt_conn_t *conn, const void *msg, size_t len);
/* The same for a message gathered from `iovcnt` buffers (copied as needed). */
TT_EXTERN int tt_send_messagev(tt_conn_t *conn, const struct iovec *iov, int iovcnt);
/* Hand `buf` over: the payload is never copied (the small header is) and
 * free_cb(buf, arg) runs once it is written or dropped, from the loop. On an
 * error return free_cb is NOT called and the caller still owns buf; if the
 * connection had to be closed for lack of memory after the header was queued, it
 * is closed with TT_CLOSE_IO_ERROR and -ENOMEM is returned. Returns as
 * tt_send_message, plus -EOPNOTSUPP on a WebSocket client (its frames are masked,
 * so the payload must be copied: use tt_ws_send). */
TT_EXTERN int tt_send_message_owned(tt_conn_t *conn, void *buf, size_t len, tt_free_cb free_cb,
                                    void *arg);
/* Queue a ping control frame (options with control on). The peer's pong is
 * consumed by tether; any bytes received count as a sign of life. Returns as
 * tt_send, plus -ENOTCONN (framing off) and -ENOTSUP (control frames off). */
TT_EXTERN int tt_send_ping(tt_conn_t *conn);

/* ---- websocket ----------------------------------------------------------------
 * RFC 6455 over TCP, with permessage-deflate (RFC 7692); the server side here, the
 * client side (tt_ws_connect) in the websocket client section. A WebSocket
 * connection is a tether connection whose framing is WebSocket: it first reads
 * one HTTP/1.1 request (bounded in bytes, header count and time); an upgrade
 * request that passes the checks and the accept hook is answered with 101, then
 * on_open is called and on_message gets whole messages (fragments reassembled,
 * text validated as UTF-8, ping answered with pong). A request that is not an
 * upgrade goes to the http handler, or is answered 404; an upgrade with another
 * version 426, a malformed one 400; either way the connection then ends.
 *
 * A connection that never became WebSocket (refused, served as HTTP, timed out)
 * gets no on_open but still its one on_close (tt_conn_is_websocket false; a
 * refusal is TT_CLOSE_PROTOCOL_ERROR with the status in info.detail).
 * Close reasons: the peer's close frame ends the connection with
 * TT_CLOSE_WS_CLOSED (its code and reason in info.ws_code / ws_reason); our
 * refusal of its frames sends the code the RFC names and closes with
 * TT_CLOSE_PROTOCOL_ERROR (1002, 1007; error TT_EPROTOCOL) or
 * TT_CLOSE_FRAME_TOO_LARGE (1009; TT_EFRAMESIZE); a stream that ends without a
 * close frame is TT_CLOSE_WS_ABNORMAL (ws_code 1006). tt_end on an open WebSocket
 * sends its bytes as a message, then a close frame with 1000; tt_server_shutdown
 * sends 1001. docs/websocket.md. */

/* Message kinds (the opcodes). */
typedef enum tt_ws_kind {
    TT_WS_TEXT = 1,
    TT_WS_BINARY = 2
} tt_ws_kind_t;

/* Close codes an application commonly sends (RFC 6455 7.4.1). */
#define TT_WS_NORMAL 1000
#define TT_WS_GOING_AWAY 1001
#define TT_WS_PROTOCOL_ERROR 1002
#define TT_WS_UNSUPPORTED 1003
#define TT_WS_NO_STATUS 1005 /* never sent: a close frame without a code */
#define TT_WS_ABNORMAL 1006  /* never sent: no close frame at all */
#define TT_WS_INVALID_DATA 1007
#define TT_WS_POLICY 1008
#define TT_WS_TOO_BIG 1009
#define TT_WS_INTERNAL_ERROR 1011

#define TT_WS_DEFAULT_MAX_MESSAGE ((size_t)16 << 20)
#define TT_WS_DEFAULT_MAX_HEADER_BYTES 8192
#define TT_WS_DEFAULT_MAX_HEADERS 64 /* also the most the parser holds */
#define TT_WS_DEFAULT_HANDSHAKE_MS 10000u
#define TT_WS_DEFAULT_CLOSE_MS 5000u

/* An HTTP request as the hooks see it: every string lent (valid during the
 * callback), NUL-terminated. */
typedef struct tt_http_request {
    const char *method;
    const char *path;   /* the target up to '?' */
    const char *query;  /* after '?', "" when none */
    const char *origin; /* the Origin field, NULL when none */
    tt_addr_t peer;     /* the client's address */
    const void *impl;   /* for tt_http_header */
} tt_http_request_t;

/* The value of the first header field `name` (case-insensitive), or NULL. */
TT_EXTERN const char *tt_http_header(const tt_http_request_t *req, const char *name);
/* Header field i (0 up): 0 with *name and *value set, or -ENOENT past the last. */
TT_EXTERN int tt_http_header_at(const tt_http_request_t *req, size_t i, const char **name,
                                const char **value);

/* What the http handler answers with. The connection ends after it (one request
 * per connection: Connection: close). */
typedef struct tt_http_response {
    int status;               /* 200..599 (anything else: 500); 0: 200 */
    const char *content_type; /* NULL: none sent */
    const char *headers;      /* extra fields, each "Name: value\r\n"; NULL: none */
    const void *body;         /* copied; not sent for HEAD */
    size_t body_len;
} tt_http_response_t;

typedef struct tt_ws_opts {
    /* Subprotocols in order of preference, comma-separated ("chat, superchat"):
     * the first the client also offers is answered in Sec-WebSocket-Protocol
     * (tt_ws_protocol tells which). NULL: none. Copied. */
    const char *subprotocols;
    size_t max_message;       /* bytes of a message (inflated); bigger: closed with
                                 1009. 0: TT_WS_DEFAULT_MAX_MESSAGE */
    /* Memory the incomplete messages of all the server's connections may hold
     * together: the connection whose growth would pass it is closed with 1009
     * (TT_CLOSE_FRAME_TOO_LARGE, error -ENOBUFS). 0: 64 MiB, or twice
     * max_message if that is more; SIZE_MAX: no limit. */
    size_t budget;
    size_t max_header_bytes;  /* request line + fields; more: 431. 0: default */
    size_t max_headers;       /* header fields, 1..64; more: 431. 0: 64 */
    uint32_t handshake_timeout_ms; /* the whole request; a slower one gets 408 and is
                                      closed. 0: TT_WS_DEFAULT_HANDSHAKE_MS */
    uint32_t close_timeout_ms;     /* from our close frame (or a refusal) to the end of
                                      the TCP connection. 0: TT_WS_DEFAULT_CLOSE_MS */
    bool deflate;             /* accept permessage-deflate when offered (no context
                                 takeover either way) */
    tt_ws_kind_t default_kind; /* what tt_send_message sends; 0: TT_WS_BINARY */
    /* Called for a valid upgrade request before the 101: return 0 to accept, or
     * an HTTP status (400..599) to refuse with. NULL: accept all. */
    int (*accept)(tt_conn_t *conn, const tt_http_request_t *req, void *arg);
    /* Called for a request that is not an upgrade: fill *res (zeroed; a 200 with
     * no body unless changed). NULL: 404. */
    void (*http)(tt_conn_t *conn, const tt_http_request_t *req, tt_http_response_t *res,
                 void *arg);
    void *arg;
} tt_ws_opts_t;

/* Make an accepted connection speak WebSocket (opts copied) before it read
 * anything, e.g. from on_open of a plain server: on_open is then called again
 * after the 101, with tt_conn_is_websocket true. Returns 0, -EINVAL (also for a
 * client's connection), -EBUSY
 * (bytes already read, or framing or WebSocket already on), -ENOTCONN (closing)
 * or -ENOMEM. */
TT_EXTERN int tt_conn_set_websocket(tt_conn_t *conn, const tt_ws_opts_t *opts);
/* Whether the opening handshake completed (false for NULL). */
TT_EXTERN bool tt_conn_is_websocket(const tt_conn_t *conn);
/* The kind of the message being delivered: valid inside on_message of a
 * WebSocket connection; 0 elsewhere. */
TT_EXTERN tt_ws_kind_t tt_conn_message_kind(const tt_conn_t *conn);
/* The subprotocol agreed, "" when none, NULL when not WebSocket. */
TT_EXTERN const char *tt_ws_protocol(const tt_conn_t *conn);
/* Whether permessage-deflate was agreed. */
TT_EXTERN bool tt_ws_deflated(const tt_conn_t *conn);

/* Send one message of `kind` (compressed when deflate was agreed and it pays).
 * Text must be valid UTF-8 (-EINVAL otherwise). Returns as tt_send, plus
 * -ENOTCONN (not WebSocket) and -EPIPE (a close frame was sent). tt_send_message
 * sends the default kind; tt_send_ping a ping frame. */
TT_EXTERN int tt_ws_send(tt_conn_t *conn, tt_ws_kind_t kind, const void *buf, size_t len);
TT_EXTERN int tt_ws_send_text(tt_conn_t *conn, const char *text);
/* Start the closing handshake: send a close frame with `code` (1000..4999, one
 * the RFC lets an endpoint send) and `reason` (UTF-8, at most 123 bytes; NULL:
 * none). Messages that arrive afterwards are dropped (a client with
 * read_after_close still gets them); the connection ends when
 * the peer answers (TT_CLOSE_WS_CLOSED) or after close_timeout_ms
 * (TT_CLOSE_LINGER_TIMEOUT). Returns 0, -EINVAL, -ENOTCONN, or -EPIPE (a close
 * frame was already sent). */
TT_EXTERN int tt_ws_close(tt_conn_t *conn, int code, const char *reason);

/* ---- TLS ----------------------------------------------------------------------
 * TLS (OpenSSL 3) under any stream connection: servers (tt_server_opts_t.tls),
 * clients (tt_connect_opts_t.tls), reconnecting clients (through their connect
 * options), and an open plain connection upgraded in place (tt_conn_start_tls).
 * on_open comes after the handshake; everything else (framing, liveness, queues,
 * tt_send_file, groups) works as on a plain connection, in application bytes.
 * Close kinds TT_CLOSE_TLS_* tell truncation and handshake failures apart, with
 * the reason text in tt_close_info_t.reason. A context is made once and shared;
 * every connection holds a reference, so tt_tls_ctx_free may come at any time.
 * See docs/tls.md. */

#define TT_TLS_1_2 0x0303
#define TT_TLS_1_3 0x0304
#define TT_DEFAULT_TLS_HANDSHAKE_MS 10000 /* handshake timeout when none is given */

typedef struct tt_tls_server_opts {
    const char *cert_file; /* PEM: the certificate, then its chain */
    const char *key_file;  /* PEM: its private key */
    const char *cert_pem;  /* or both in memory (NUL-terminated PEM text) */
    const char *key_pem;
    const char *ca_file;   /* PEM CAs that client certificates are checked against */
    bool verify_client;    /* mutual TLS: a client must present a certificate that
                              ca_file's CAs signed (needs ca_file) */
    const char *alpn;      /* protocols we speak, by preference: "h2,http/1.1";
                              NULL: no ALPN */
    int min_version;       /* TT_TLS_1_2 (0) or TT_TLS_1_3 */
    bool no_tickets;       /* session tickets (resumption) are on unless set */
    const char *ciphers;   /* TLS 1.2 cipher list (OpenSSL syntax); NULL: OpenSSL's */
    const char *ciphersuites; /* TLS 1.3 suites, "TLS_AES_128_GCM_SHA256:..."; NULL: OpenSSL's */
    const char *groups;    /* key exchange groups, "X25519:P-256"; NULL: OpenSSL's */
} tt_tls_server_opts_t;

typedef struct tt_tls_client_opts {
    const char *ca_file;   /* trust these PEM CAs; with neither this nor ca_dir,
                              the system's store */
    const char *ca_dir;
    const char *cert_file; /* a client certificate for mutual TLS, with key_file */
    const char *key_file;
    const char *alpn;      /* protocols offered, in order: "h2,http/1.1" */
    int min_version;       /* TT_TLS_1_2 (0) or TT_TLS_1_3 */
    bool insecure;         /* verify nothing: neither the chain nor the name
                              (tests only) */
    const char *ciphers;   /* as for servers */
    const char *ciphersuites;
    const char *groups;
} tt_tls_client_opts_t;

/* Make a context. Returns 0, -EINVAL (bad options; an unreadable or mismatched
 * certificate and key give -EINVAL too, with the file named nowhere: check the
 * files first if you need to say which), -ENOENT (a file that does not exist),
 * -ENOMEM. */
TT_EXTERN int tt_tls_server_ctx(const tt_tls_server_opts_t *opts, tt_tls_ctx_t **out);
TT_EXTERN int tt_tls_client_ctx(const tt_tls_client_opts_t *opts, tt_tls_ctx_t **out);
/* A further certificate on a server context, chosen by SNI: a client asking for
 * a name it covers (its subjectAltNames, or its common name when it has none;
 * wildcards as RFC 6125 allows) gets it, any other client the context's own.
 * Returns 0, -EINVAL (a client context, a bad pair), -ENOENT, -ENOMEM. */
TT_EXTERN int tt_tls_ctx_add_cert(tt_tls_ctx_t *ctx, const char *cert_file, const char *key_file);
/* Drop the caller's reference. NULL is ignored. */
TT_EXTERN void tt_tls_ctx_free(tt_tls_ctx_t *ctx);

typedef struct tt_tls_info {
    bool done;              /* the handshake finished */
    bool resumed;           /* ... by resuming an earlier session */
    bool server;            /* we are the server side */
    char version[16];       /* "TLSv1.3" */
    char cipher[64];        /* "TLS_AES_256_GCM_SHA384" */
    char alpn[64];          /* the protocol agreed, "" when none */
    char sni[256];          /* the name the client asked for (sent, on a client) */
    char peer_subject[256]; /* the peer certificate's subject, one line; "" if none */
    bool ktls_tx, ktls_rx;  /* kernel TLS does the records in that direction */
} tt_tls_info_t;

/* Returns 0, -EINVAL, -EOPNOTSUPP (no TLS on this connection). */
TT_EXTERN int tt_conn_tls_info(const tt_conn_t *conn, tt_tls_info_t *out);

/* STARTTLS: upgrade an open plain connection (SMTP/IMAP style). What was queued
 * before the call is written in plain first; what is sent afterwards waits and
 * goes encrypted once the handshake is done (on_done, when set, says so). Bytes
 * read from now on are TLS. The role follows the context (server or client);
 * `servername` is the client's SNI and verified name (NULL: none sent, and then
 * verification needs `insecure`). Returns 0, -EINVAL (bad arguments, TLS already
 * on, a framed or WebSocket connection, or a Unix one passing descriptors),
 * -ENOTCONN (not open), -ENOMEM. */
typedef struct tt_tls_start_opts {
    tt_tls_ctx_t *ctx;
    const char *servername;
    uint64_t handshake_timeout_ms; /* 0: TT_DEFAULT_TLS_HANDSHAKE_MS */
    void (*on_done)(tt_conn_t *conn);
} tt_tls_start_opts_t;
TT_EXTERN int tt_conn_start_tls(tt_conn_t *conn, const tt_tls_start_opts_t *opts);

/* ---- PROXY protocol -----------------------------------------------------------
 * HAProxy's PROXY protocol, versions 1 (text) and 2 (binary, with TLVs): a load
 * balancer in front of a server sends one header with the client's addresses
 * before the client's bytes. Servers read it (tt_server_opts_t.proxy), clients
 * send it (tt_connect_opts_t.send_proxy). The header's source is the
 * connection's peer address from then on (tt_conn_peer_addr, the stats, the live
 * table); the rest is in tt_conn_proxy_info. Limits: a v1 line is at most 107
 * bytes, a v2 header at most TT_PROXY_V2_MAX bytes (TLVs included); longer ones
 * are refused. See docs/proxy.md. */

typedef enum tt_proxy_mode {
    TT_PROXY_OFF = 0,  /* no header is read */
    TT_PROXY_V1,       /* a v1 header is required */
    TT_PROXY_V2,       /* a v2 header is required */
    TT_PROXY_ANY,      /* a header of either version is required */
    TT_PROXY_OPTIONAL  /* a header of either version if the first bytes are one,
                          else the bytes are the client's own; a client that
                          sends nothing opens at the timeout, headerless (one
                          that sent the start of a signature and stalled is
                          closed as a slow header) */
} tt_proxy_mode_t;

#define TT_DEFAULT_PROXY_TIMEOUT_MS 3000 /* the header's deadline when none is given */
#define TT_PROXY_V2_MAX 2048             /* the longest v2 header read, in bytes */

/* A TLV's value, lent: valid until on_close returns; len 0 when absent. */
typedef struct tt_proxy_bytes {
    const uint8_t *data;
    size_t len;
} tt_proxy_bytes_t;

typedef struct tt_proxy_info {
    int version;         /* 1 or 2 */
    bool local;          /* no client address in it: a v2 LOCAL header (health
                            checks), v1 UNKNOWN, or a v2 UNSPEC or UNIX family; the
                            connection keeps its own addresses */
    tt_addr_t source;    /* the client, as the header says (the socket's peer when
                            local) */
    tt_addr_t dest;      /* where the client connected to (the socket's local
                            address when local) */
    tt_addr_t balancer;  /* the socket's real peer: the balancer */
    /* v2 TLVs (all zero for v1). */
    tt_proxy_bytes_t alpn;      /* PP2_TYPE_ALPN: "h2", "http/1.1" */
    tt_proxy_bytes_t authority; /* PP2_TYPE_AUTHORITY: the SNI host name */
    tt_proxy_bytes_t unique_id; /* PP2_TYPE_UNIQUE_ID */
    bool ssl;                   /* a PP2_TYPE_SSL TLV came */
    uint8_t ssl_client;         /* its client bits: PP2_CLIENT_SSL 0x01, _CERT_CONN
                                   0x02, _CERT_SESS 0x04 */
    uint32_t ssl_verify;        /* 0: the client's certificate was verified */
    tt_proxy_bytes_t ssl_version, ssl_cn, ssl_cipher, ssl_sig_alg, ssl_key_alg;
    tt_proxy_bytes_t aws;       /* PP2_TYPE_AWS (0xEA), raw: subtype and value */
    tt_proxy_bytes_t azure;     /* PP2_TYPE_AZURE (0xEE), raw */
    tt_proxy_bytes_t gcp;       /* PP2_TYPE_GCP (0xE0), raw */
    tt_proxy_bytes_t tlvs;      /* the whole TLV block, for any other type (see
                                   tt_proxy_tlv_find) */
} tt_proxy_info_t;

/* What the header said, for a connection of a server with `proxy` on, from
 * on_open until on_close returns. Returns 0, -EINVAL, -ENOENT (no header: PROXY
 * off, or TT_PROXY_OPTIONAL and the client sent none). */
TT_EXTERN int tt_conn_proxy_info(const tt_conn_t *conn, tt_proxy_info_t *out);
/* The first TLV of `type` in info->tlvs (any type, vendors' too): *out lent as
 * above. Returns 0, -EINVAL, -ENOENT (none). */
TT_EXTERN int tt_proxy_tlv_find(const tt_proxy_info_t *info, uint8_t type, tt_proxy_bytes_t *out);
/* "off", "v1", "v2", "any", "optional"; "unknown" otherwise. Never NULL. */
TT_EXTERN const char *tt_proxy_mode_name(tt_proxy_mode_t mode);

/* ---- client -------------------------------------------------------------------
 * A client connection is created by tt_connect() and lives until its on_close. */

typedef struct tt_connect_opts {
    uint64_t timeout_ms;        /* connect timeout; 0 means none (by name: lookup included) */
    const tt_addr_t *bind_addr; /* bind the local side first; NULL for any */
    const char *bind_device;    /* SO_BINDTODEVICE: only via this interface ("eth0");
                                   NULL for any */
    /* Used by tt_connect_host() only: */
    int family;                /* AF_UNSPEC (both), AF_INET or AF_INET6 */
    uint64_t attempt_delay_ms; /* Happy Eyeballs: start the next address after this
                                  long; 0: TT_DEFAULT_ATTEMPT_DELAY */
    /* TLS (a client context, see the TLS section): on_open after the handshake.
     * The name sent (SNI) and verified is tls_servername, else the host name
     * given to tt_connect_host, else (a numeric address) the address itself,
     * verified against the certificate's IP addresses and not sent. */
    tt_tls_ctx_t *tls;
    const char *tls_servername;
    uint64_t tls_handshake_timeout_ms; /* 0: TT_DEFAULT_TLS_HANDSHAKE_MS */
    /* PROXY protocol (see its section): send a header of this version (1 or 2;
     * 0: none) as the very first bytes once connected, before anything queued
     * and before TLS. It says the client is proxy_source and it connected to
     * proxy_dest (copied at the call); NULL: the socket's own local and peer
     * address. Both must be TCP over the same IP family (-EINVAL at the call
     * when both are given and differ; a default that differs closes the
     * connection with -EAFNOSUPPORT). Not on Unix sockets (-EOPNOTSUPP). */
    int send_proxy;
    const tt_addr_t *proxy_source;
    const tt_addr_t *proxy_dest;
} tt_connect_opts_t;

/* Start a non-blocking connect to a numeric address. On 0, *out is a connection in
 * TT_STATE_CONNECTING; on_open or on_close (TT_CLOSE_CONNECT_FAILED with the errno,
 * or TT_CLOSE_CONNECT_TIMEOUT) follows from the loop, never from inside this call.
 * Sends made before on_open are queued. `h` is copied; `data` is the user pointer;
 * `opts` may be NULL. Returns 0, -EINVAL, -EAFNOSUPPORT, -ENOMEM, or the errno of
 * socket()/bind() (-EMFILE, -EADDRINUSE, ...); then no connection exists.
 * A Unix address connects a Unix stream socket, which succeeds or fails at once
 * (still reported from the loop: -ENOENT, -ECONNREFUSED, -EAGAIN for a full
 * backlog, -EACCES); bind_addr and bind_device give -EOPNOTSUPP there. */
TT_EXTERN int tt_connect(tt_loop_t *loop, const tt_addr_t *addr, const tt_connect_opts_t *opts,
                         const tt_conn_handlers_t *h, void *data, tt_conn_t **out);

/* ---- names ----------------------------------------------------------------------
 * A lookup lives from tt_resolve() (or tt_resolve_reverse()) until its callback
 * returns or it is cancelled. The resolver belongs to the loop: created by the first
 * lookup that needs DNS (or by tt_loop_set_resolver) and freed by tt_loop_close.
 *
 * Lookups run on the loop with c-ares: no thread, no blocking call. /etc/hosts is
 * read before DNS. "localhost" (and names under it, RFC 6761), numeric addresses
 * ("10.0.0.1", "::1", "[::1]", "fe80::1%eth0") and the empty host or "*" (the
 * wildcard, for listeners) are answered without any DNS traffic. Results are always
 * delivered by the loop, never inside the call. */

typedef struct tt_resolve tt_resolve_t;

typedef struct tt_resolver_opts {
    const char *servers; /* "127.0.0.1:5353,[::1]:53" (copied); NULL: /etc/resolv.conf */
    uint64_t timeout_ms; /* first try's timeout per server; c-ares doubles it on every
                            round of retries. 0: resolv.conf, else 5000 */
    unsigned tries;      /* tries per server; 0: resolv.conf, else 4 */
    bool no_hosts;       /* do not read /etc/hosts (DNS only) */
} tt_resolver_opts_t;

/* Answer of a forward lookup: `status` is 0 with `count` > 0 addresses (port set,
 * in the order of RFC 6724 preference; lent until the callback returns), or
 * TT_ENOTFOUND (no such name, or no address of the asked family), TT_ETEMPFAIL
 * (server failure or refusal: retrying later may work), TT_EDNSTIMEOUT (no answer
 * after every try), -ENOMEM, or -EINVAL (malformed name); addrs is NULL then. The
 * request handle is freed when the callback returns. */
typedef void (*tt_resolve_cb)(tt_resolve_t *req, int status, const tt_addr_t *addrs,
                              size_t count, void *data);
/* Answer of a reverse lookup: `name` (lent) is the host name of the address, or NULL
 * with the same errors as above. */
typedef void (*tt_resolve_name_cb)(tt_resolve_t *req, int status, const char *name,
                                   void *data);

/* Configure the loop's resolver: its servers, timeout and tries. Replaces the
 * configuration of an existing resolver. `opts` is copied. Returns 0, -EINVAL (bad
 * argument or unparsable server list), -EBUSY (lookups in flight), -ENOMEM, or -EIO
 * (the system configuration could not be read). */
TT_EXTERN int tt_loop_set_resolver(tt_loop_t *loop, const tt_resolver_opts_t *opts);

/* Resolve `host` for `port` and the given family (AF_UNSPEC for both, AF_INET,
 * AF_INET6). cb fires once, from the loop, unless the lookup is cancelled first.
 * `*out` (may be NULL) is valid until then. Returns 0, -EINVAL (NULL argument, bad
 * family, name over 254 characters), -ENOMEM, or the errors of creating the
 * resolver (see tt_loop_set_resolver). A Unix address ("unix:/path") is no host
 * name: it answers TT_ENOTFOUND, without a query. */
TT_EXTERN int tt_resolve(tt_loop_t *loop, const char *host, uint16_t port, int family,
                         tt_resolve_cb cb, void *data, tt_resolve_t **out);
/* Find the name of an address (the PTR record, or /etc/hosts). cb fires once from
 * the loop. Returns as tt_resolve. */
TT_EXTERN int tt_resolve_reverse(tt_loop_t *loop, const tt_addr_t *addr, tt_resolve_name_cb cb,
                                 void *data, tt_resolve_t **out);
/* Cancel a pending lookup: its callback will not be called and the handle is gone.
 * Returns 0, or -EINVAL (NULL, or called from the lookup's own callback). */
TT_EXTERN int tt_resolve_cancel(tt_resolve_t *req);
/* The user pointer given to tt_resolve. */
TT_EXTERN void *tt_resolve_get_data(const tt_resolve_t *req);

/* ---- connecting to a name ---------------------------------------------------------
 * A connection made by tt_connect_host() lives, like any client connection, until
 * its on_close; it gets exactly one on_close even if no address was ever tried. */

/* RFC 8305 section 8: the recommended connection attempt delay. */
#define TT_DEFAULT_ATTEMPT_DELAY 250

/* Connect to `host` (a name, or any text tt_resolve takes) and `port` with Happy
 * Eyeballs (RFC 8305): the addresses are ordered IPv6 first, alternating families;
 * the first attempt starts, and each next one starts when the previous fails or
 * after opts->attempt_delay_ms while earlier ones are still pending. The first to
 * connect wins and becomes the connection; the others are closed. timeout_ms bounds
 * everything from the call (lookup included).
 *
 * On 0, *out is a connection in TT_STATE_CONNECTING with no socket yet
 * (tt_conn_fd() is -1 until it opens); sends are queued. on_open, or on_close
 * follows from the loop: TT_CLOSE_CONNECT_FAILED with TT_ENOTFOUND, TT_ETEMPFAIL,
 * TT_EDNSTIMEOUT or the last attempt's errno (-ECONNREFUSED, ...), or
 * TT_CLOSE_CONNECT_TIMEOUT. tt_destroy() while connecting cancels the lookup and
 * every attempt. bind_addr restricts the attempts to its family (use port 0: the
 * attempts overlap). Returns 0, -EINVAL (NULL argument, bad option, bind_addr of
 * the wrong family), -ENODEV (no such bind_device), -ENOMEM, or the resolver's
 * creation errors; then no connection exists. A host "unix:/path" or "unix:@name"
 * is no name: it is tt_connect to that Unix address (the port is ignored). */
TT_EXTERN int tt_connect_host(tt_loop_t *loop, const char *host, uint16_t port,
                              const tt_connect_opts_t *opts, const tt_conn_handlers_t *h,
                              void *data, tt_conn_t **out);

/* ---- websocket client -------------------------------------------------------------
 * A connection made by tt_ws_connect() lives, like any client connection, until
 * its on_close; it gets exactly one on_close even if it never became WebSocket.
 *
 * RFC 6455 client side, with permessage-deflate. The connection is made as by
 * tt_connect_host (name lookup, Happy Eyeballs), then the upgrade request goes out
 * (a random key, version 13, the subprotocols and the deflate offer, the extra
 * headers) and the answer is checked strictly: status 101, Upgrade, Connection,
 * Sec-WebSocket-Accept, a subprotocol only among those offered, deflate
 * parameters we can honour. on_open comes after that; from then on the
 * connection is a WebSocket connection as on the server side (the websocket
 * section: on_message with tt_conn_message_kind, tt_ws_send, tt_ws_close, close
 * codes in tt_close_info_t), except that every frame we send is masked with a
 * fresh key and a masked frame from the server is refused with 1002.
 *
 * A connection that never became WebSocket gets no on_open: the connect's own
 * failures (TT_CLOSE_CONNECT_FAILED, TT_CLOSE_CONNECT_TIMEOUT) as for
 * tt_connect_host; an answer that is not a valid 101 closes with
 * TT_CLOSE_PROTOCOL_ERROR (error TT_EPROTOCOL, the HTTP status in info.detail,
 * 0 when there was none, and the reason in info.reason: "wrong or missing
 * Sec-WebSocket-Accept", ...); no valid 101 within handshake_timeout_ms is
 * TT_CLOSE_CONNECT_TIMEOUT (-ETIMEDOUT) with a reason that says so.
 * docs/websocket.md. */

#define TT_WS_MAX_URL 4096 /* bytes of a ws:// URL */

typedef struct tt_ws_client_opts {
    tt_connect_opts_t connect; /* as tt_connect_host's (lookup, attempts, timeout) */
    /* Subprotocols offered, in order of preference, comma-separated ("chat, v2"):
     * tokens, none twice. The server may pick one (tt_ws_protocol) or none. NULL:
     * none offered. Copied. */
    const char *subprotocols;
    /* Extra request header fields, each "Name: value\r\n" (Origin, Authorization,
     * Cookie...); not Host, Upgrade, Connection, Content-Length,
     * Transfer-Encoding or Sec-WebSocket-*, which the handshake writes. NULL: none.
     * Copied. */
    const char *headers;
    bool deflate;             /* offer permessage-deflate (the server resets its
                                 compressor after each message) */
    size_t max_message;       /* bytes of a message (inflated); bigger: closed with
                                 1009. 0: TT_WS_DEFAULT_MAX_MESSAGE */
    size_t max_header_bytes;  /* the answer's status line + fields; more: refused.
                                 0: TT_WS_DEFAULT_MAX_HEADER_BYTES */
    size_t max_headers;       /* the answer's header fields, 1..64. 0: 64 */
    uint32_t handshake_timeout_ms; /* from the call to a valid 101, the lookup and
                                      the connect included. 0: TT_WS_DEFAULT_HANDSHAKE_MS */
    uint32_t close_timeout_ms;     /* from our close frame to the end of the TCP
                                      connection. 0: TT_WS_DEFAULT_CLOSE_MS */
    tt_ws_kind_t default_kind;     /* what tt_send_message sends; 0: TT_WS_BINARY */
    /* After our close frame (tt_ws_close, tt_end), keep delivering the messages
     * the server sends until its own close frame, as reading goes on after
     * tt_end on a plain stream (what an echo server sent back before it saw our
     * close still arrives). Off: they are dropped, as on the server side. */
    bool read_after_close;
} tt_ws_client_opts_t;

/* Connect to `url`, "ws://HOST[:PORT][/PATH][?QUERY]" (HOST a name, IPv4 or
 * [IPv6]; PORT 80 when not given; no user info, no fragment), and upgrade;
 * "wss://..." (port 443) the same over TLS: opts->connect.tls, or a context made
 * for it that trusts the system's CAs; the URL's host is verified. On 0,
 * *out is a connection in TT_STATE_CONNECTING; on_open or on_close follows from
 * the loop. tt_ws_send before on_open gives -ENOTCONN. `h` is copied; `opts`
 * (may be NULL) and its strings are copied. Returns 0, -EINVAL (NULL argument,
 * a malformed URL or header list, a bad option, TLS asked for on a ws:// URL),
 * -ENOMEM, or tt_connect_host's errors; then no connection
 * exists. */
TT_EXTERN int tt_ws_connect(tt_loop_t *loop, const char *url, const tt_ws_client_opts_t *opts,
                            const tt_conn_handlers_t *h, void *data, tt_conn_t **out);

/* ---- reconnecting client ----------------------------------------------------------
 * A client lives from tt_client_start() until tt_client_close(); it owns the
 * successive connections it makes to one host and port, each of which still gets
 * its own exactly-once on_close. */

typedef struct tt_client tt_client_t;

/* Client events; any member may be NULL. The struct is copied. */
typedef struct tt_client_handlers {
    /* Connection attempt `attempt` (1, 2, ... since the last successful connect)
     * starts now, after waiting `delay_ms`. */
    void (*on_attempt)(tt_client_t *cl, unsigned attempt, uint64_t delay_ms);
    /* A connection opened (after its own on_open). */
    void (*on_connected)(tt_client_t *cl, tt_conn_t *conn);
    /* A connection ended, or an attempt failed (after the connection's on_close;
     * info->kind tells which). The next attempt is scheduled when this returns. */
    void (*on_disconnected)(tt_client_t *cl, const tt_close_info_t *info);
    /* max_attempts consecutive attempts failed; `error` is the last one's. The
     * client makes no more attempts; it still has to be closed. */
    void (*on_give_up)(tt_client_t *cl, int error);
} tt_client_handlers_t;

typedef struct tt_client_opts {
    tt_connect_opts_t connect; /* for every connection (see tt_connect_host) */
    uint64_t min_delay_ms;     /* delay before the first retry; 0: 100 */
    uint64_t max_delay_ms;     /* the doubling stops here; 0: 30000 */
    unsigned jitter_pct;       /* 0..100: each delay is drawn from [d - d*pct/100, d];
                                  0: exact delays */
    unsigned max_attempts;     /* give up after this many consecutive failed attempts;
                                  0: never */
    bool keep_unsent;          /* carry sends not yet written to the kernel over to
                                  the next connection (else they are dropped). Whole
                                  sends only: a send the kernel had taken part of is
                                  dropped (its remainder would be half a message on
                                  the new stream), and with it the later sends packed
                                  into the same queue chunk (up to 16 KiB, or that
                                  send's size); all dropped bytes are counted in the
                                  lost connection's bytes_unsent */
    /* WebSocket: every connection is made as by tt_ws_connect with these options
     * (their `connect` is not used: the one above is), redoing the upgrade each
     * time; host is then the ws:// URL and port is ignored. A host that is a
     * ws:// URL is WebSocket with default options when this is NULL. The
     * connection counts as made (on_connected, the backoff reset) after the 101.
     * Not with keep_unsent. */
    const struct tt_ws_client_opts *websocket;
} tt_client_opts_t;

/* Start a client: the first attempt is made at once (from the loop). After a
 * connection is lost or an attempt fails, the next attempt waits min_delay_ms,
 * then twice as long each time, up to max_delay_ms, less the jitter; a successful
 * connect resets the doubling. Every connection gets a copy of `h` and starts with
 * user data `data`. `opts` may be NULL. Returns 0 and *out, -EINVAL (NULL argument,
 * bad option, min above max), -ENODEV (no such bind_device), or -ENOMEM. */
TT_EXTERN int tt_client_start(tt_loop_t *loop, const char *host, uint16_t port,
                              const tt_client_opts_t *opts, const tt_client_handlers_t *ch,
                              const tt_conn_handlers_t *h, void *data, tt_client_t **out);
/* Stop reconnecting and destroy the current connection (its on_close still comes,
 * from the loop; no client event does). The client is freed once that has been
 * delivered. Safe inside any callback. Returns 0 or -EINVAL. */
TT_EXTERN int tt_client_close(tt_client_t *cl);
/* The current connection (connecting or open), or NULL between attempts. */
TT_EXTERN tt_conn_t *tt_client_conn(const tt_client_t *cl);
/* Copy `len` bytes and send them on the current connection (queued while it is
 * connecting); with keep_unsent they are also held between connections and go out
 * on the next one. Returns as tt_send, plus -ENOTCONN (no connection and
 * keep_unsent off). */
TT_EXTERN int tt_client_send(tt_client_t *cl, const void *buf, size_t len);
/* The client that owns `conn`, or NULL. */
TT_EXTERN tt_client_t *tt_conn_client(const tt_conn_t *conn);
TT_EXTERN void *tt_client_get_data(const tt_client_t *cl);
TT_EXTERN void tt_client_set_data(tt_client_t *cl, void *data);
/* Attempts made since the last successful connect (0 while connected). */
TT_EXTERN unsigned tt_client_attempts(const tt_client_t *cl);

/* ---- server -------------------------------------------------------------------
 * A server lives from tt_server_listen() until tt_server_close(); connections it
 * accepted live on independently until their own on_close. */

typedef struct tt_server_opts {
    int backlog;          /* 0: SOMAXCONN */
    bool no_reuseaddr;    /* SO_REUSEADDR is on unless this is set */
    bool v6only;          /* IPv6 only (default: dual stack on an IPv6 wildcard) */
    bool half_open;       /* default for accepted connections */
    size_t high_water;    /* 0: TT_DEFAULT_HIGH_WATER; at most UINT32_MAX */
    size_t queue_cap;     /* 0: TT_DEFAULT_QUEUE_CAP; SIZE_MAX: no cap; not below
                             high_water (so a mark above 64 MiB needs a cap too) */
    /* Limits. At max_conns the listener leaves the poller, so further clients wait
     * in the kernel's backlog, and returns when a connection closes; with
     * limit_close set they are accepted, sent limit_message (if any) and closed. */
    size_t max_conns;           /* 0: no limit */
    size_t max_conns_per_ip;    /* 0: no limit; over it a client is accepted and closed */
    bool limit_close;           /* accept-and-close at max_conns instead of pausing */
    const char *limit_message;  /* sent before an over-limit close; copied */
    uint32_t accept_rate;       /* accepts per second (token bucket); 0: unlimited */
    uint32_t accept_burst;      /* bucket size; 0: accept_rate */
    /* Listener options. */
    bool reuseport;             /* SO_REUSEPORT: several listeners share the port */
    int defer_accept_s;         /* TCP_DEFER_ACCEPT seconds: wake only once data came */
    int fastopen_qlen;          /* TCP_FASTOPEN queue length; 0: off */
    /* Server events (limits reached, descriptors exhausted, refusals); may be NULL. */
    void (*on_event)(tt_server_t *srv, int event, int error, const tt_addr_t *peer);
    /* Liveness for accepted connections (see the liveness section): the one knob,
     * and/or the full settings (copied at listen, ping/pong bytes included). When
     * both are set, detect_within_ms wins over liveness->detect_within_ms. */
    uint64_t detect_within_ms;                /* 0: none */
    const struct tt_liveness_opts *liveness; /* NULL: none */
    /* Framing for accepted connections (see the framing section): on before
     * on_open, so not one byte reaches on_data. Copied at listen. NULL: none. */
    const struct tt_frame_opts *frame;
    /* WebSocket for accepted connections (see the websocket section): each one
     * reads an HTTP request first; on_open comes after the 101 answer. Copied at
     * listen. NULL: none. Not together with `frame` (-EINVAL). */
    const struct tt_ws_opts *websocket;
    /* Unix domain listeners on a path: the socket file's permission bits (0600:
     * only this user may connect), set before any client can connect, the umask
     * notwithstanding. 0: as the kernel makes it (0777 less the umask). */
    unsigned unix_mode;
    /* TLS for accepted connections (a server context): each one shakes hands
     * first, on_open after; a failure or timeout closes it with its TT_CLOSE_TLS_*
     * kind (no on_open, on_close as always). Swap with tt_server_set_tls. */
    tt_tls_ctx_t *tls;
    uint64_t tls_handshake_timeout_ms; /* 0: TT_DEFAULT_TLS_HANDSHAKE_MS */
    /* PROXY protocol (see its section): each accepted connection reads the
     * balancer's header first, before any layer (TLS included) sees a byte; the
     * client it names becomes the peer address, and allow/deny lists, the audit
     * hook and max_conns_per_ip apply to it then, not to the balancer at accept.
     * A missing, malformed or too slow header closes the connection with
     * TT_CLOSE_PROXY_ERROR, before on_open. TCP listeners only (-EOPNOTSUPP on a
     * Unix one). */
    tt_proxy_mode_t proxy;
    uint64_t proxy_timeout_ms; /* 0: TT_DEFAULT_PROXY_TIMEOUT_MS */
} tt_server_opts_t;

/* Server events passed to tt_server_opts_t.on_event (see docs/servers.md). */
#define TT_SERVER_PAUSED 1   /* max_conns reached: not accepting (error 0) */
#define TT_SERVER_RESUMED 2  /* accepting again after a max_conns, accept-rate or
                                out-of-descriptor pause (error 0) */
/* A client was accepted and closed at once; `peer` is its address and `error` says
 * why: -EACCES (allow/deny lists) or the audit hook's errno, both closed with RST;
 * -EBUSY (max_conns in limit_close mode, or max_conns_per_ip), sent limit_message
 * and a FIN; -ENOMEM (no memory for the connection or the per-address table). */
#define TT_SERVER_REFUSED 3
#define TT_SERVER_NOFILE 4   /* out of descriptors (error -EMFILE/-ENFILE/-ENOBUFS/
                                -ENOMEM): one client shed with the reserve descriptor
                                (counted in refused), accepting paused until a
                                descriptor frees or 100 ms pass; peer NULL */

/* A short name for a server event ("paused", "refused", ...); "unknown" for any
 * other value. Never NULL. */
TT_EXTERN const char *tt_server_event_name(int event);

/* Listen on `addr` (port 0 picks a free port; see tt_server_addr). Every accepted
 * connection gets a copy of `h`, starts with user data NULL and receives on_open.
 * `opts` may be NULL. `data` is the server's user pointer. Returns 0 and *out,
 * -EINVAL, -ENOMEM, or the errno of socket/bind/listen (-EADDRINUSE, -EACCES, ...).
 * A Unix address ("unix:/path", "unix:@name") listens on a Unix stream socket: a
 * socket file nothing answers on (left by a dead process) is replaced; a live one
 * gives -EADDRINUSE, any other file at the path (regular file, directory, symlink,
 * never followed) -EEXIST, and is left untouched. The file is removed at close (or
 * shutdown) if it is still the one this server made. TCP-only options (reuseport,
 * v6only, defer_accept_s, fastopen_qlen, max_conns_per_ip, keepalive or user
 * timeout in liveness) give -EOPNOTSUPP there. docs/local.md. */
TT_EXTERN int tt_server_listen(tt_loop_t *loop, const tt_addr_t *addr,
                               const tt_server_opts_t *opts, const tt_conn_handlers_t *h,
                               void *data, tt_server_t **out);
/* Stop listening and free the server. Accepted connections stay open (their
 * tt_conn_server() becomes NULL). Safe inside any callback. Returns 0 or -EINVAL. */
TT_EXTERN int tt_server_close(tt_server_t *srv);
/* Certificate renewal without a restart: connections accepted from now on use
 * `ctx` (a server context; the server takes a reference and drops the old one),
 * those already open keep theirs. Returns 0, -EINVAL (NULL, a client context, or a
 * server made without TLS). */
TT_EXTERN int tt_server_set_tls(tt_server_t *srv, tt_tls_ctx_t *ctx);
/* The bound address, with the port the kernel chose. Returns 0 or -EINVAL. */
TT_EXTERN int tt_server_addr(const tt_server_t *srv, tt_addr_t *out);
TT_EXTERN void *tt_server_get_data(const tt_server_t *srv);
TT_EXTERN void tt_server_set_data(tt_server_t *srv, void *data);
/* Live connections accepted by this server. */
TT_EXTERN size_t tt_server_conn_count(const tt_server_t *srv);
/* Total accepted since listen. */
TT_EXTERN uint64_t tt_server_accepted_total(const tt_server_t *srv);
/* Server-wide figures: live connections plus everything closed ones did. */
typedef struct tt_server_totals {
    uint64_t open, accepted, refused;
    uint64_t bytes_in, bytes_out;
    uint64_t packets_in, packets_out;
    uint64_t messages_in, messages_out;
} tt_server_totals_t;
/* Fill `out` (walks the live connections). Returns 0 or -EINVAL. */
TT_EXTERN int tt_server_get_totals(const tt_server_t *srv, tt_server_totals_t *out);
/* The loop the server runs on. */
TT_EXTERN tt_loop_t *tt_server_loop(const tt_server_t *srv);
/* True while the listener is out of the poller (max_conns, accept rate, or out of
 * descriptors). */
TT_EXTERN bool tt_server_is_paused(const tt_server_t *srv);

/* Close the listener now and accept nothing more; the connections go on (a
 * graceful shutdown may follow). After a hand-over the successor holds the same
 * socket, so nothing is refused: then give the connections accepted last a moment
 * for what they have in flight before tt_server_shutdown ends them. Returns 0 or
 * -EINVAL (NULL or closed). */
TT_EXTERN int tt_server_stop_accepting(tt_server_t *srv);

/* Reported once a graceful shutdown has finished: how many connections ended
 * gracefully within the deadline and how many were destroyed at it. The server is
 * freed when this returns. */
typedef void (*tt_shutdown_cb)(tt_server_t *srv, size_t ended, size_t destroyed, void *arg);
/* Graceful shutdown: stop accepting (the listener closes now), tt_end() every
 * connection, and destroy those still open after deadline_ms with
 * TT_CLOSE_SHUTDOWN (error TT_ESHUTDOWN). cb (may be NULL) runs from the loop when
 * the last connection has closed, then the server is closed. Returns 0 or -EINVAL
 * (NULL, closed, already shutting down, deadline above TT_TIMEOUT_MAX). */
TT_EXTERN int tt_server_shutdown(tt_server_t *srv, uint64_t deadline_ms, tt_shutdown_cb cb,
                                 void *arg);
TT_EXTERN bool tt_server_is_shutting_down(const tt_server_t *srv);
/* Call fn for every live connection (oldest first). fn may destroy the connection
 * it is given (the close is delivered later); return non-zero to stop early. Returns the number visited or -EINVAL. */
TT_EXTERN int tt_server_foreach(tt_server_t *srv, int (*fn)(tt_conn_t *conn, void *arg),
                                void *arg);

/* ---- admission and audit ------------------------------------------------------
 * Hooks live as long as the loop they are set on; lists as long as their server. */

typedef enum tt_audit_event {
    TT_AUDIT_CONNECT = 1, /* before a TCP or UDP socket connects (addr: the peer) */
    TT_AUDIT_BIND,        /* before a listener or UDP socket binds (addr: local) */
    TT_AUDIT_ACCEPT,      /* after accept, before on_open (addr: the peer; with the
                             PROXY protocol on, the client the header named, once
                             it is read) */
    TT_AUDIT_SENDTO       /* before a datagram goes to an explicit address */
} tt_audit_event_t;

/* Observe or veto: return 0 to let the operation go on, or a negative errno to
 * refuse it (a refused connect/bind call returns that errno; a refused accept
 * closes the client with RST and reports TT_SERVER_REFUSED; a refused send-to
 * returns the errno). Audit hooks are the one kind of callback that runs inside
 * API calls: they decide the call's outcome, so they must not call back into the
 * loop's handles. */
typedef int (*tt_audit_cb)(tt_loop_t *loop, tt_audit_event_t event, const tt_addr_t *addr,
                           void *arg);

/* Set (or with cb NULL clear) the loop's audit hook. Returns 0 or -EINVAL. */
TT_EXTERN int tt_loop_set_audit(tt_loop_t *loop, tt_audit_cb cb, void *arg);

/* Allow or deny clients by CIDR block ("10.0.0.0/8", "2001:db8::/32", a bare
 * address). Deny wins; once any allow entry exists, only matching clients are
 * admitted. IPv4 blocks match IPv4-mapped peers of a dual-stack listener. Refused
 * clients are closed at once with TT_SERVER_REFUSED (-EACCES). Returns 0, -EINVAL
 * (malformed block), or -ENOMEM. */
TT_EXTERN int tt_server_allow(tt_server_t *srv, const char *cidr);
TT_EXTERN int tt_server_deny(tt_server_t *srv, const char *cidr);
/* Unix domain servers admit by peer credentials instead (CIDR blocks give
 * -EOPNOTSUPP there): once any uid is allowed, only clients whose SO_PEERCRED uid
 * is on the list are admitted; the others are closed at once with
 * TT_SERVER_REFUSED (-EACCES). Returns 0, -EINVAL, -EOPNOTSUPP (not a Unix
 * server) or -ENOMEM. */
TT_EXTERN int tt_server_allow_uid(tt_server_t *srv, uint32_t uid);

/* Listen on an already-bound, listening TCP socket (inherited, e.g. from systemd).
 * The server owns fd from then on (also on failure). Listener options in opts that
 * need a fresh socket (backlog, reuseaddr, v6only, reuseport) are ignored.
 * Returns as tt_server_listen, plus -ENOTSOCK / -EINVAL (not a listening stream
 * socket). */
TT_EXTERN int tt_server_listen_fd(tt_loop_t *loop, int fd, const tt_server_opts_t *opts,
                                  const tt_conn_handlers_t *h, void *data, tt_server_t **out);

/* systemd socket activation (the sd_listen_fds(3) protocol): when LISTEN_PID is
 * this process, returns the number of inherited descriptors (they start at fd
 * TT_LISTEN_FDS_START) and marks them close-on-exec; returns 0 when the variables
 * are absent or meant for another process. If `names` is not NULL, LISTEN_FDNAMES
 * (colon-separated) is copied into it ("" when unset). With unset_env the
 * variables are removed so children do not inherit them. Returns -EINVAL for
 * malformed values, -ENOSPC when names_size is too small (nothing unset then). */
#define TT_LISTEN_FDS_START 3
TT_EXTERN int tt_listen_fds(bool unset_env, char *names, size_t names_size);

/* ---- broadcast and groups -------------------------------------------------------
 * A group (a "room") lives from tt_group_init() to tt_group_close() on one loop;
 * a connection leaves every group by itself when it closes. */

typedef struct tt_group tt_group_t;

/* Send `len` bytes to every live connection of the server except `except` (NULL:
 * to all). The payload is copied once and shared, reference-counted, by all
 * recipients; a small payload (256 bytes at most) going to a connection that
 * already has bytes queued is copied into that queue instead, which costs less
 * than a reference. Called from `on_message` with more messages of the same read
 * still to come, a broadcast queues on every recipient (the read's messages then
 * reach each one in one write), and the read's messages
 * are stored one after another in one shared payload: a recipient that queued
 * the previous one holds them all as one reference, however many there are.
 * Copies go into a buffer sized for the rest of that read, not a fixed 16 KiB.
 * Bytes queued this way are written one poll after the end of the round (a
 * poll that does not wait), so that a read of the sender that has arrived by
 * then joins the same write: about half the writes when the sender keeps lines
 * in flight. A broadcast with nothing behind it in its read is not delayed.
 * A recipient is charged against its hard cap for all of a payload it keeps
 * alive, not only for its own part of it. Each recipient's own high-water mark
 * and hard cap apply, so a slow reader overflows (and is closed) alone without
 * stalling the others.
 * The bytes go out as they are: a connection's framing is not applied (for
 * framed connections use tt_server_broadcast_message). Returns the number of
 * connections the bytes were queued for, -EINVAL, or -ENOMEM. */
TT_EXTERN int tt_server_broadcast(tt_server_t *srv, const void *buf, size_t len,
                                  const tt_conn_t *except);
/* Send one message to every live framed connection of the server except `except`,
 * each framed as tt_send_message would frame it: the connections framed by the
 * server's options (tt_server_opts_t.frame) share one framed copy, made once; a
 * connection whose framing was set with tt_conn_set_framing gets its own copy;
 * connections without framing are skipped. `msg` is copied. Returns the number
 * of connections the message was queued for, -EINVAL (bad arguments, or the
 * message holds the delimiter and so reached no one), -EMSGSIZE (over a limit,
 * reached no one) or -ENOMEM. */
TT_EXTERN int tt_server_broadcast_message(tt_server_t *srv, const void *msg, size_t len,
                                          const tt_conn_t *except);

/* Create an empty group; `name` (may be NULL) is copied. Returns 0, -EINVAL, or
 * -ENOMEM. */
TT_EXTERN int tt_group_init(tt_loop_t *loop, const char *name, tt_group_t **out);
/* Remove every member and free the group. Returns 0 or -EINVAL. */
TT_EXTERN int tt_group_close(tt_group_t *g);
/* Join / leave. Returns 0, -EINVAL (NULL, other loop, closing connection),
 * -EEXIST (already a member) / -ENOENT (not a member), -ENOMEM. */
TT_EXTERN int tt_group_join(tt_group_t *g, tt_conn_t *conn);
TT_EXTERN int tt_group_leave(tt_group_t *g, tt_conn_t *conn);
TT_EXTERN bool tt_group_has(const tt_group_t *g, const tt_conn_t *conn);
TT_EXTERN size_t tt_group_count(const tt_group_t *g);
TT_EXTERN const char *tt_group_name(const tt_group_t *g);
/* Like tt_server_broadcast, to the members of the group. */
TT_EXTERN int tt_group_broadcast(tt_group_t *g, const void *buf, size_t len,
                                 const tt_conn_t *except);

/* ---- rooms across nodes (Redis pub/sub) -----------------------------------------
 * A cluster link (one per loop) connects to Redis; a group bound to a channel
 * delivers each broadcast locally and publishes it once, and delivers to its
 * local members what the other nodes published there. "All but the sender" holds
 * across nodes (each message carries its node and sender), and each message
 * reaches each member once. While Redis is away local delivery goes on and
 * cross-node messages are counted as lost, never queued; the link reconnects
 * with backoff and subscribes again. See docs/scaling.md. */

typedef struct tt_cluster tt_cluster_t;

typedef struct tt_cluster_opts {
    const char *host;       /* Redis' address (numeric); NULL: 127.0.0.1 */
    uint16_t port;          /* 0: 6379 */
    uint64_t min_delay_ms;  /* reconnect backoff, doubling from here; 0: 100 */
    uint64_t max_delay_ms;  /* ... up to here; 0: 5000 */
    size_t max_in_flight;   /* publishes Redis has not answered yet: beyond this a
                               broadcast is counted lost, not queued; 0: 10000 */
} tt_cluster_opts_t;

typedef struct tt_cluster_stats {
    uint64_t published;   /* broadcasts handed to Redis */
    uint64_t received;    /* messages from other nodes delivered here */
    uint64_t lost;        /* broadcasts not published (Redis away, or too many in flight) */
    uint64_t reconnects;  /* links re-established */
    bool pub_up, sub_up;  /* the publishing and the subscribed link are connected */
    char node[17];        /* this node's id (random, hex) */
} tt_cluster_stats_t;

/* Returns 0, -EINVAL, -ENOMEM. The links connect from the loop (a Redis that is
 * not there yet is retried with backoff). The cluster keeps the loop alive until
 * tt_cluster_close. */
TT_EXTERN int tt_cluster_start(tt_loop_t *loop, const tt_cluster_opts_t *opts,
                               tt_cluster_t **out);
/* Unbind every group and close the links. Returns 0 or -EINVAL. */
TT_EXTERN int tt_cluster_close(tt_cluster_t *cl);
/* Bind `g` (same loop) to `channel` (copied, 1..200 bytes). Returns 0, -EINVAL,
 * -EBUSY (already bound), -ENOMEM. */
TT_EXTERN int tt_group_bind(tt_group_t *g, tt_cluster_t *cl, const char *channel);
/* The same, but what other nodes publish goes to on_remote (with the payload as
 * the broadcasting node gave it) instead of to the group's members: for an app
 * that delivers in its own way (the CLI's chat turns lines into WebSocket text).
 * The group's own broadcasts still publish. */
typedef void (*tt_cluster_remote_cb)(tt_group_t *g, const void *buf, size_t len, void *arg);
TT_EXTERN int tt_group_bind_cb(tt_group_t *g, tt_cluster_t *cl, const char *channel,
                               tt_cluster_remote_cb on_remote, void *arg);
TT_EXTERN int tt_cluster_get_stats(const tt_cluster_t *cl, tt_cluster_stats_t *out);

/* ---- workers: one loop per core ---------------------------------------------------
 * A worker set lives from tt_workers_start() to tt_workers_stop(): N threads, each
 * running its own loop with its own server on the same address. A connection
 * lives on one worker's loop for life; its callbacks run on that thread. */

typedef struct tt_workers tt_workers_t;

typedef struct tt_workers_opts {
    unsigned count;    /* threads; 0: the number of online CPUs */
    /* Default: every worker listens with SO_REUSEPORT and the kernel balances new
     * connections (only sockets of the same effective user may share a port, so
     * another user's process cannot take connections away). With no_reuseport,
     * worker 0 accepts for all and hands sockets round-robin to the others; a
     * Unix address always works that way (no reuseport group on a path). */
    bool no_reuseport;
    /* Runs on each worker's thread once its server exists, before it accepts: the
     * place to set per-loop state (audit hooks, groups, timers). */
    void (*on_start)(tt_workers_t *set, unsigned index, tt_loop_t *loop, tt_server_t *srv,
                     void *arg);
    void *arg;
    /* Start from listening sockets already open (a predecessor's, from
     * tt_handoff_take): worker i takes listen_fds[i] (with SO_REUSEPORT; a worker
     * without one joins the port's group with a new socket), or worker 0 takes
     * listen_fds[0] and accepts for all. The set owns them from then on (also on
     * failure). `addr` of tt_workers_start may then be NULL. */
    const int *listen_fds;
    unsigned nfds;
} tt_workers_opts_t;

/* Start the workers (sopts, h and data as for tt_server_listen, applied to every
 * worker; port 0 is resolved once and shared). Limits in sopts (max_conns,
 * max_conns_per_ip, accept_rate) hold per worker, not for the set. Blocks until every worker listens.
 * Returns 0 and *out, -EINVAL, -ENOMEM, or the first worker's listen error (then
 * every started worker was stopped again). */
TT_EXTERN int tt_workers_start(const tt_addr_t *addr, const tt_workers_opts_t *wopts,
                               const tt_server_opts_t *sopts, const tt_conn_handlers_t *h,
                               void *data, tt_workers_t **out);
/* Graceful stop: each worker runs tt_server_shutdown(deadline_ms), then its loop
 * ends; joins the threads and frees everything. Blocking; call it from a thread
 * that is not a worker. Returns 0 or -EINVAL. */
TT_EXTERN int tt_workers_stop(tt_workers_t *set, uint64_t deadline_ms);
TT_EXTERN unsigned tt_workers_count(const tt_workers_t *set);
/* Worker i's loop (for tt_loop_post), or NULL. */
TT_EXTERN tt_loop_t *tt_workers_loop(const tt_workers_t *set, unsigned i);
/* The address every worker listens on (with the port chosen). 0 or -EINVAL. */
TT_EXTERN int tt_workers_addr(const tt_workers_t *set, tt_addr_t *out);
/* Broadcast to every connection of every worker except `except`. Thread-safe: the
 * payload is copied once and each worker queues it on its own thread. `except` is
 * only read (its id) during the call, so call it on the thread that owns `except`
 * (typically from that connection's callback), or pass NULL. Returns 0,
 * -EINVAL, or -ENOMEM. */
TT_EXTERN int tt_workers_broadcast(tt_workers_t *set, const void *buf, size_t len,
                                   const tt_conn_t *except);

typedef void (*tt_workers_visit_cb)(tt_workers_t *set, unsigned index, tt_loop_t *loop,
                                    tt_server_t *srv, void *arg);
/* Run fn on every worker's thread (srv may be NULL once stopping) and wait until
 * all have run: how to list connections or gather figures across loops. fn runs
 * concurrently on different threads, so it must guard what it shares. Blocking;
 * returns 0, -EINVAL, -ENOMEM, or -EDEADLK when called from a worker thread. */
TT_EXTERN int tt_workers_visit(tt_workers_t *set, tt_workers_visit_cb fn, void *arg);

/* ---- listener hand-over (restarts that refuse nothing) ----------------------------
 * A running server offers its listening sockets on a Unix socket; a new process
 * takes them (SCM_RIGHTS), serves on them, and says so; only then does the old
 * one stop accepting. Both hold the same sockets meanwhile, so the kernel's
 * accept queue is never dropped and no connection attempt is refused or reset.
 * See docs/scaling.md. */

typedef struct tt_handoff tt_handoff_t;
/* status 0: a successor holds the sockets and serves: stop accepting now (close
 * the servers or shut them down; the sockets stay open in the successor), and
 * the offer is over (its socket file is removed; call tt_handoff_close).
 * status < 0: a successor took them and went away before it served (-ECONNRESET)
 * or spoke nonsense (-EPROTO): nothing changed, the offer stands. */
typedef void (*tt_handoff_cb)(tt_handoff_t *h, int status, void *arg);

/* Offer the listening TCP sockets `fds` (n of them, at most TT_SEND_FDS_MAX; they
 * stay the caller's, each successor gets its own copies) on the Unix socket at
 * `path` ("unix:/path", "unix:@name", or a plain path), mode 0600, one successor
 * at a time, 10 s for each to finish. Returns 0, -EINVAL, -EOPNOTSUPP (a fd that
 * is not a listening TCP socket), or tt_server_listen's errors for the path. */
TT_EXTERN int tt_handoff_offer(tt_loop_t *loop, const char *path, const int *fds, size_t n,
                               tt_handoff_cb cb, void *arg, tt_handoff_t **out);
/* Withdraw the offer (safe in its own callback); the socket file is removed. */
TT_EXTERN int tt_handoff_close(tt_handoff_t *h);
/* The successor, before its loop runs (blocking, at most timeout_ms): connect to
 * `path`, receive the predecessor's listening sockets into fds[0..*n) (at most
 * `max`, close-on-exec, now the caller's) and the link to the predecessor in
 * *link. Then listen on them (tt_server_listen_fd, or tt_workers_opts_t.listen_fds)
 * and call tt_handoff_ready. Returns 0, -EINVAL, -ENOENT / -ECONNREFUSED (nobody
 * offers), -ETIMEDOUT, -EPROTO, -ENOSPC (more than `max`). */
TT_EXTERN int tt_handoff_take(const char *path, uint64_t timeout_ms, int *fds, size_t max,
                              size_t *n, int *link);
/* Tell the predecessor we serve, and wait (at most timeout_ms) until it has let
 * go (stopped accepting, removed its offer's socket file); closes `link`. A
 * successor that fails before this leaves the predecessor running: just close
 * the link. Returns 0, -EINVAL, -ETIMEDOUT, or the socket's errno. */
TT_EXTERN int tt_handoff_ready(int link, uint64_t timeout_ms);
/* The listening descriptor of a server (still the server's), or -1. */
TT_EXTERN int tt_server_fd(const tt_server_t *srv);
/* The listening descriptors of a worker set (one per worker with SO_REUSEPORT,
 * one in all otherwise), still the set's: up to `max` into fds. Returns the count
 * or -EINVAL. Thread-safe. */
TT_EXTERN int tt_workers_listen_fds(const tt_workers_t *set, int *fds, size_t max);

/* ---- operations endpoints ----------------------------------------------------------
 * An admin endpoint lives from tt_admin_start*() to tt_admin_close(); it serves
 * the live connection table (for `tether stat`) and/or Prometheus metrics. */

typedef struct tt_admin tt_admin_t;

typedef struct tt_admin_opts {
    /* Unix socket serving the connection table, created with permission 0600. A
     * stale socket at the path (nothing answers on it) is replaced; a live one
     * (another server's) gives -EADDRINUSE, another kind of file -EEXIST. At close
     * the file is removed only if it is still the one this endpoint made. */
    const char *unix_path;
    /* TCP address serving the Prometheus text exposition of server totals over
     * HTTP/1.0: GET /metrics answers 200; another path 404, another method 405,
     * a malformed request 400, a request head over 2 KiB 431. Port 0 picks a free
     * port (see tt_admin_metrics_addr). */
    const tt_addr_t *metrics_addr;
    /* Every connection of either endpoint is destroyed this long after it was
     * accepted, whatever it is doing (a client that sends nothing, a reader that
     * does not read); 0: 5000 ms. */
    uint64_t timeout_ms;
    /* Connections open at once on each endpoint; 0: 16. Over it, table clients
     * wait in the backlog and metrics clients get 503 and a close. */
    size_t max_conns;
    /* Single-server mode: the metrics also show this cluster link's figures
     * (published, received, lost, reconnects, and whether each link is up). */
    const tt_cluster_t *cluster;
} tt_admin_opts_t;

/* The table format: a header line of tab-separated column names (id, worker, local,
 * peer, state, age_ms, bytes_in, bytes_out, pkts_in, pkts_out, msgs_in, msgs_out,
 * queued, rtt_us, retrans, tls, cipher, pid, uid, gid), then one tab-separated row
 * per connection. tls and cipher are the TLS version and cipher ("TLSv1.3",
 * "TLS_AES_256_GCM_SHA384"), pid, uid and gid a Unix peer's credentials; "-" when
 * there are none. */

/* Serve `srv` (on its loop). Returns 0, -EINVAL (nothing to serve, timeout above
 * TT_TIMEOUT_MAX), -ENAMETOOLONG, -EEXIST (a non-socket file at unix_path),
 * -EADDRINUSE (a server answers on unix_path, or the metrics port is taken),
 * -ENOMEM, or the errno of bind/listen. The errno does not say which endpoint
 * failed: a message should name the path and the address. */
TT_EXTERN int tt_admin_start(tt_server_t *srv, const tt_admin_opts_t *opts, tt_admin_t **out);
/* Serve every worker of `set`, from a thread and loop of the endpoint's own (rows
 * are gathered with tt_workers_visit). Same returns. */
TT_EXTERN int tt_admin_start_workers(tt_workers_t *set, const tt_admin_opts_t *opts,
                                     tt_admin_t **out);
/* The address the metrics endpoint listens on, with the port the kernel chose.
 * Any thread. Returns 0, -EINVAL, or -ENOENT (no metrics endpoint). */
TT_EXTERN int tt_admin_metrics_addr(const tt_admin_t *admin, tt_addr_t *out);
/* Stop serving, destroy the endpoint's open connections and remove the socket
 * file. Single-server mode: call on the server's loop thread (safe inside a
 * callback); worker mode: from any thread but the endpoint's. Returns 0 or
 * -EINVAL. */
TT_EXTERN int tt_admin_close(tt_admin_t *admin);
/* The table for `srv` as text in a malloc'd buffer the caller frees. Returns 0,
 * -EINVAL, or -ENOMEM. */
TT_EXTERN int tt_server_format_table(tt_server_t *srv, char **out, size_t *len);

/* The follow feed: every open and close of a server's accepted connections as it
 * happens (`tether stat --follow`, the dashboard). The table socket answers a
 * client that sends "FOLLOW\n" with "following" (from then on nothing is
 * missed), then one line per event instead of the table:
 *   open <TAB> id <TAB> peer
 *   close <TAB> id <TAB> peer <TAB> kind <TAB> reason ("-" if none) <TAB> bytes_in <TAB> bytes_out
 * A follower whose queue passes 64 KiB is dropped; at most 8 follow at once
 * (more are told "error\ttoo many followers"); single-server mode only. A
 * client that sends "TABLE\n", sends nothing for 100 ms, or ends, gets the table. */
typedef struct tt_follow tt_follow_t;
typedef struct tt_follow_event {
    bool open;            /* true: accepted; false: closing */
    tt_conn_t *conn;      /* lent; its figures (tt_conn_get_stats) are still readable */
    tt_addr_t peer;       /* the client (a PROXY header's when there is one); len 0
                             when the socket no longer knows it (after a reset) */
    tt_close_kind_t kind; /* close only */
    int error;            /* close only: negative errno or 0 */
    const char *reason;   /* close only: a layer's words, "" if none; lent */
} tt_follow_event_t;
typedef void (*tt_follow_cb)(const tt_follow_event_t *ev, void *arg);
/* Call `cb` on srv's loop for each open and close from now on, until
 * tt_follow_stop() (which must come before the server closes). The callback must
 * not close the server or start or stop a follow; it may send on other
 * connections. Returns 0, -EINVAL or -ENOMEM. */
TT_EXTERN int tt_follow_start(tt_server_t *srv, tt_follow_cb cb, void *arg, tt_follow_t **out);
/* Stop and free. Returns 0 or -EINVAL. */
TT_EXTERN int tt_follow_stop(tt_follow_t *f);

/* ---- udp ----------------------------------------------------------------------
 * A UDP socket lives from tt_udp_open() until the on_close that follows
 * tt_udp_close(); it gets exactly one on_close, and the handle is freed when that
 * callback returns. An open UDP socket keeps the loop running and counts as a
 * handle (tt_loop_close() returns -EBUSY while one is open).
 *
 * Datagrams keep their boundaries. Received datagrams are read in batches
 * (recvmmsg(2)) into slots of the loop's shared read buffer; a datagram longer than
 * its slot (tt_udp_opts_t.recv_size) is delivered cut, with TT_UDP_TRUNCATED and its
 * real length, never silently. Sends go out at once when they can; sends made
 * while the socket is busy (inside its own on_datagram, or while earlier datagrams
 * wait for buffer space) are copied into a queue and written in batches
 * (sendmmsg(2)).
 *
 * Errors that the network reports later (ICMP "port unreachable", "fragmentation
 * needed", ...) are read from the socket's error queue (IP_RECVERR/IPV6_RECVERR)
 * and delivered by on_error with the address the datagram was going to and the
 * node that reported it. They never come back as the result of a later
 * tt_udp_send(): the kernel would fail (and drop) that unrelated datagram with the
 * old error, so tether sends it again once. See docs/udp.md. */

/* on_datagram flags. */
#define TT_UDP_TRUNCATED 0x1 /* longer than the receive slot: `len` < `full_len` */

/* Longest datagram tt_udp_send() accepts (IPv6's 65535 - 8; IPv4's limit, 65507,
 * is enforced by the kernel). */
#define TT_UDP_MAX_DATAGRAM 65527
/* Default receive slot: a datagram up to this size is delivered whole. */
#define TT_UDP_DEFAULT_RECV_SIZE 2048
/* Largest receive slot (one slot then fills the loop's read buffer: no batching). */
#define TT_UDP_MAX_RECV_SIZE 65536

/* What on_error reports about a failed datagram. */
typedef struct tt_udp_error_info {
    tt_addr_t peer;     /* where the failed datagram was going; len 0 if unknown */
    tt_addr_t offender; /* who reported it (SO_EE_OFFENDER: a router or the peer's
                           host); len 0 if the report names nobody */
    uint32_t mtu;       /* -EMSGSIZE: the path MTU the report carries; else 0 */
    uint8_t origin;     /* SO_EE_ORIGIN_ICMP / _ICMP6 (linux/errqueue.h); 0 when a
                           queued datagram was refused by sendmmsg(2) */
    uint8_t type, code; /* the ICMP type and code; 0 otherwise */
} tt_udp_error_info_t;

/* Per-socket event handlers. Any member may be NULL. The struct is copied. */
typedef struct tt_udp_handlers {
    /* The socket is bound and receiving (tt_udp_addr() gives the port). Delivered
     * by the loop after tt_udp_open() returned, never inside it. */
    void (*on_listening)(tt_udp_t *u);
    /* One datagram from `from`. `data` (len bytes) and `from` are lent until the
     * callback returns. With TT_UDP_TRUNCATED in flags, `full_len` is the real
     * length and only the first `len` bytes are in `data`; otherwise full_len ==
     * len. Empty datagrams are delivered with len 0. */
    void (*on_datagram)(tt_udp_t *u, const void *data, size_t len, const tt_addr_t *from,
                        unsigned flags, size_t full_len);
    /* A datagram failed after its send returned: an ICMP error read from the error
     * queue (-ECONNREFUSED, -EHOSTUNREACH, -ENETUNREACH, -EMSGSIZE with info->mtu,
     * ...), or a queued datagram the kernel refused when it was written. The
     * socket stays open. `info` is lent until the callback returns. */
    void (*on_error)(tt_udp_t *u, int err, const tt_udp_error_info_t *info);
    /* The send queue emptied after a send had returned TT_SEND_FULL. */
    void (*on_drain)(tt_udp_t *u);
    /* The socket is closed: exactly once. The handle is freed when this returns. */
    void (*on_close)(tt_udp_t *u);
} tt_udp_handlers_t;

/* Options for tt_udp_open(); all zero means the defaults. */
typedef struct tt_udp_opts {
    bool reuseaddr;    /* SO_REUSEADDR: several sockets on one multicast port */
    bool reuseport;    /* SO_REUSEPORT: the kernel spreads datagrams over sockets */
    bool broadcast;    /* SO_BROADCAST: may send to broadcast addresses */
    bool v6only;       /* IPv6 only (default: dual stack on an IPv6 address) */
    size_t recv_size;  /* receive slot in bytes, 1..TT_UDP_MAX_RECV_SIZE;
                          0: TT_UDP_DEFAULT_RECV_SIZE */
    size_t high_water; /* queued bytes at which sends return TT_SEND_FULL;
                          0: TT_DEFAULT_HIGH_WATER */
    size_t queue_cap;  /* queued bytes a send may not pass (it is refused with
                          -ENOBUFS); 0: TT_DEFAULT_QUEUE_CAP; SIZE_MAX: no cap */
    int sndbuf;        /* SO_SNDBUF; 0: the kernel's default */
    int rcvbuf;        /* SO_RCVBUF; 0: the kernel's default */
} tt_udp_opts_t;

/* Open a UDP socket bound to `bind_addr` (IPv4 or IPv6; port 0 lets the kernel
 * choose, see tt_udp_addr()). Receiving starts at once; on_listening follows from
 * the loop. `opts` may be NULL; `h` is copied; `data` is the user pointer.
 * Returns 0 and *out, -EINVAL (NULL argument, family not IPv4/IPv6, bad option),
 * -ENOMEM, or the errno of socket/setsockopt/bind (-EADDRINUSE, -EACCES, ...);
 * then no socket exists and no callback will come. */
TT_EXTERN int tt_udp_open(tt_loop_t *loop, const tt_addr_t *bind_addr, const tt_udp_opts_t *opts,
                          const tt_udp_handlers_t *h, void *data, tt_udp_t **out);
/* Close: queued datagrams are dropped (counted in stats.dropped), no more events
 * except on_close, which follows from the loop. Safe inside any callback of this
 * socket. Returns 0, or -EINVAL (NULL, or already closed). */
TT_EXTERN int tt_udp_close(tt_udp_t *u);

/* Set the default peer: connect(2) on a datagram socket only records the address
 * (nothing is sent). Sends with a NULL address then go there, and the kernel
 * delivers only datagrams from that peer. ICMP errors for it come as on_error.
 * Returns 0, -EINVAL, -EAFNOSUPPORT (IPv6 peer on an IPv4 socket), or the errno of
 * connect(2) (-ENETUNREACH, ...). */
TT_EXTERN int tt_udp_connect(tt_udp_t *u, const tt_addr_t *peer);
/* Forget the default peer (connect with AF_UNSPEC); the bound address stays.
 * Returns 0, -EINVAL, -ENOTCONN (not connected), or the errno of connect(2). */
TT_EXTERN int tt_udp_disconnect(tt_udp_t *u);
/* The default peer. Returns 0, -EINVAL, or -ENOTCONN. */
TT_EXTERN int tt_udp_peer_addr(const tt_udp_t *u, tt_addr_t *out);
/* The bound address with the port the kernel chose. Returns 0 or -EINVAL. */
TT_EXTERN int tt_udp_addr(const tt_udp_t *u, tt_addr_t *out);

/* Send one datagram of `len` bytes (0 allowed) to `to`, or to the default peer when
 * `to` is NULL. The bytes are copied when queued, so `buf` may be reused at once.
 * An IPv4 `to` on a dual-stack IPv6 socket is sent as ::ffff:a.b.c.d. Returns:
 *   0             sent, or queued below the high-water mark;
 *   TT_SEND_FULL  queued, and the queue is at or above the high-water mark: stop
 *                 sending until on_drain;
 *   -EINVAL       bad argument, or the socket is closing;
 *   -EDESTADDRREQ `to` NULL on a socket that is not connected;
 *   -EAFNOSUPPORT an IPv6 `to` on an IPv4 socket;
 *   -EMSGSIZE     longer than TT_UDP_MAX_DATAGRAM, or (path MTU discovery in
 *                 TT_UDP_PMTU_DO/PROBE mode) than the path MTU the kernel knows:
 *                 tt_udp_path_mtu() tells it;
 *   -ENOBUFS      refused for lack of buffer space: the queue's hard cap would be
 *                 passed, or the kernel's device queue is full. Unlike TCP the
 *                 socket stays open: only this datagram is lost;
 *   -ENOMEM       out of memory; nothing was queued;
 *   or the errno of sendmsg(2) for this datagram (-EACCES: broadcast without
 *   SO_BROADCAST, -ENETUNREACH: no route, ...).
 * A queued datagram that fails when it is written is reported by on_error. */
TT_EXTERN int tt_udp_send(tt_udp_t *u, const void *buf, size_t len, const tt_addr_t *to);

/* Multicast membership, any-source (RFC 1112, RFC 2710). `group` is an IPv4 or
 * IPv6 multicast address (port ignored); `iface` an interface name ("eth0"), an
 * index in decimal ("3"), or NULL for the kernel's choice (by route). An IPv4
 * group needs an IPv4 socket or a dual-stack IPv6 one. Return 0, -EINVAL (not a
 * multicast address, closed socket), -ENODEV (no such interface), or the errno of
 * setsockopt MCAST_JOIN_GROUP/MCAST_LEAVE_GROUP (-EADDRINUSE: already joined,
 * -EADDRNOTAVAIL: not joined, ...). */
TT_EXTERN int tt_udp_join(tt_udp_t *u, const tt_addr_t *group, const char *iface);
TT_EXTERN int tt_udp_leave(tt_udp_t *u, const tt_addr_t *group, const char *iface);
/* Source-specific membership (RFC 4607): receive `group` only from `source`
 * (MCAST_JOIN_SOURCE_GROUP / MCAST_LEAVE_SOURCE_GROUP, the IP_ADD_SOURCE_MEMBERSHIP
 * family). Same arguments and returns as tt_udp_join, `source` of the group's
 * family. */
TT_EXTERN int tt_udp_join_source(tt_udp_t *u, const tt_addr_t *group, const tt_addr_t *source,
                                 const char *iface);
TT_EXTERN int tt_udp_leave_source(tt_udp_t *u, const tt_addr_t *group, const tt_addr_t *source,
                                  const char *iface);

/* Path MTU discovery modes (IP_MTU_DISCOVER / IPV6_MTU_DISCOVER, ip(7)). */
typedef enum tt_udp_pmtu {
    TT_UDP_PMTU_WANT = 0, /* kernel default: DF set, but fragment when too large */
    TT_UDP_PMTU_DONT,     /* never set DF; fragment as the interface MTU needs */
    TT_UDP_PMTU_DO,       /* set DF; a datagram over the known path MTU fails with
                             -EMSGSIZE */
    TT_UDP_PMTU_PROBE     /* set DF, ignore the known path MTU (for probing) */
} tt_udp_pmtu_t;

/* Socket options. Each returns 0, -EINVAL (closed socket or value out of range),
 * or the setsockopt errno. On a dual-stack IPv6 socket the IPv4 twin of an option
 * (IP_TTL beside IPV6_UNICAST_HOPS, ...) is set too, for IPv4 peers. */
TT_EXTERN int tt_udp_set_broadcast(tt_udp_t *u, bool on);      /* SO_BROADCAST */
TT_EXTERN int tt_udp_set_ttl(tt_udp_t *u, int ttl);            /* 1..255, unicast */
TT_EXTERN int tt_udp_set_multicast_ttl(tt_udp_t *u, int ttl);  /* 0..255 */
TT_EXTERN int tt_udp_set_multicast_loop(tt_udp_t *u, bool on); /* local copies */
/* The interface multicast is sent from: a name, a decimal index, or NULL for the
 * kernel's choice. -ENODEV when there is no such interface. */
TT_EXTERN int tt_udp_set_multicast_interface(tt_udp_t *u, const char *iface);
/* The traffic class byte (DSCP << 2 | ECN): IP_TOS / IPV6_TCLASS, 0..255. */
TT_EXTERN int tt_udp_set_tos(tt_udp_t *u, int tos);
TT_EXTERN int tt_udp_set_pmtu_mode(tt_udp_t *u, tt_udp_pmtu_t mode);
TT_EXTERN int tt_udp_set_sndbuf(tt_udp_t *u, int bytes);
TT_EXTERN int tt_udp_set_rcvbuf(tt_udp_t *u, int bytes);
/* Send queue limits, as in tt_udp_opts_t. Return 0 or -EINVAL (0 high-water, or a
 * cap below the high-water mark). */
TT_EXTERN int tt_udp_set_high_water(tt_udp_t *u, size_t bytes);
TT_EXTERN int tt_udp_set_queue_cap(tt_udp_t *u, size_t bytes);

/* The path MTU the kernel knows towards `to` (NULL: the default peer): IP_MTU /
 * IPV6_MTU on a connected socket (for another address, on a short-lived socket
 * connected there; no packet is sent). Learned from ICMP "fragmentation needed"
 * in TT_UDP_PMTU_DO/WANT modes. Returns 0 and *mtu, -EINVAL, -ENOTCONN (`to` NULL
 * and no default peer), or the errno of socket/connect/getsockopt. */
TT_EXTERN int tt_udp_path_mtu(tt_udp_t *u, const tt_addr_t *to, int *mtu);

TT_EXTERN void tt_udp_set_data(tt_udp_t *u, void *data);
TT_EXTERN void *tt_udp_get_data(const tt_udp_t *u);
TT_EXTERN tt_loop_t *tt_udp_loop(const tt_udp_t *u);
/* The socket descriptor, for options tether does not wrap; -1 once closed. Do not
 * read, write or close it. */
TT_EXTERN int tt_udp_fd(const tt_udp_t *u);

/* Totals since the socket was opened. */
typedef struct tt_udp_stats {
    uint64_t datagrams_in, bytes_in;   /* delivered; bytes as delivered (cut if
                                          truncated) */
    uint64_t datagrams_out, bytes_out; /* handed to the kernel */
    uint64_t truncated;                /* delivered with TT_UDP_TRUNCATED */
    uint64_t send_errors;    /* datagrams the kernel refused (returned or on_error) */
    uint64_t async_errors;   /* error reports read from the error queue */
    uint64_t refused;        /* sends refused at the queue's hard cap (-ENOBUFS) */
    uint64_t dropped;        /* queued datagrams dropped at close */
    uint64_t kernel_drops;   /* datagrams the kernel dropped for a full receive buffer
                                (SO_RXQ_OVFL; known when a later datagram arrives) */
    uint64_t recv_calls;     /* recvmmsg(2) calls that returned datagrams */
    uint64_t send_calls;     /* sendmsg(2)/sendmmsg(2) calls that sent datagrams */
    uint64_t queued_datagrams, queued_bytes; /* in the send queue now */
} tt_udp_stats_t;

/* Fill `out`. Returns 0 or -EINVAL. */
TT_EXTERN int tt_udp_get_stats(const tt_udp_t *u, tt_udp_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif /* TETHER_H */
