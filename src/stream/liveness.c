/* Liveness: idle timeouts, heartbeats, TCP keepalive and user timeout, and the one
 * knob ("detect a vanished peer within N ms") that sets them all.
 *
 * One wheel timer per connection, lazily: every read and write only stores the
 * loop's cached time (conn.c calls live_on_io), and the timer, when it fires,
 * compares the stored times with the deadlines and re-arms for the earliest one
 * still ahead. Restarting a wheel node on every I/O would also be O(1), but it is
 * an unlink and a relink (four pointer writes plus a slot bit) on the hottest path;
 * a store is one write, and the timer fires at most once per deadline period
 * instead of never being allowed to. docs/liveness.md has the measurement.
 *
 * Which proof of life counts depends on what the peer is known to speak:
 *
 * - The application heartbeat (framing pings, ping bytes without a pong that the
 *   app's own protocol answers, ping/pong once the peer has sent one of them, or a
 *   dead-after time the app set itself): proof is a byte from the peer. Two kernel
 *   counters stand in for reads when the application cannot see them, sampled with
 *   TCP_INFO only when needed: bytes the kernel received that the app has not read
 *   (reading paused), and the app's own data being acknowledged (a bulk sender
 *   whose peer never talks back). The peer's kernel acknowledging our heartbeats
 *   proves nothing here (a SIGSTOPped process still has a kernel), so heartbeat
 *   bytes are excluded.
 * - Nothing of that (a dead-after time derived by the knob, on a stream where the
 *   peer never showed it answers pings): a peer whose TCP stack answers is alive.
 *   Proof is any segment from the peer's kernel (TCP_INFO last_data_recv /
 *   last_ack_recv: data, acknowledgements, answers to keepalive probes), sampled
 *   only when the dead-after time would run out. Keepalive makes an idle peer
 *   answer every TCP_KEEPIDLE, so the deadline is never shorter than that plus a
 *   grace for the answer; TCP_USER_TIMEOUT fails data left unacknowledged. */
#include "stream/liveness.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "stream/conn.h"
#include "sys/sock.h"

#define MAX_HB_BYTES 4096
/* tcp(7): TCP_KEEPIDLE and TCP_KEEPINTVL 1..MAX_TCP_KEEPIDLE(32767), TCP_KEEPCNT
 * 1..MAX_TCP_KEEPCNT(127). */
#define KA_MAX_S 32767
#define KA_MAX_CNT 127
/* Kernel proof: an idle peer answers a keepalive probe every TCP_KEEPIDLE; this is
 * the time its answer may take (round trip, the kernel's timer slack) before the
 * silence counts. */
#define KA_GRACE_MS 500

enum { K_READ = 0, K_WRITE = 1, K_ALL = 2 }; /* index of TT_IDLE_READ/WRITE/ALL - 1 */

typedef struct live {
    tt__wnode_t timer;
    tt_conn_t *conn;
    uint64_t last_io[2];   /* loop time of the last read / write (TT__IO_DIR_*) */
    uint64_t idle_base[3]; /* an idle period kept open by on_idle restarts here */
    uint64_t hb_base;      /* the last heartbeat went (or was due) here */
    uint64_t alive_base;   /* the last proof of life seen through kernel counters */
    uint64_t idle_ms[3];
    uint64_t heartbeat_ms, dead_after_ms;
    /* Kernel sample (TCP_INFO) and what the app had done at that moment. */
    uint64_t sample_at;
    uint64_t k_rcvd, k_acked, app_written;
    /* The app's own traffic, for the idle timeouts: heartbeat bytes are not it. */
    uint64_t app_read_at, prev_read_at; /* the last read that was not heartbeat traffic */
    uint64_t app_write_at;              /* the last write that carried app bytes */
    uint64_t app_wmark;                 /* the most app bytes seen written */
    uint64_t ka_idle_ms;                /* TCP_KEEPIDLE as last set or read; 0: unknown */
    char *bytes;                        /* ping then pong, one allocation */
    uint16_t ping_len, pong_len;
    bool dead_set;    /* dead-after given by the app itself: it vouches the peer talks */
    bool peer_speaks; /* a ping or pong came from the peer */
} live_t;

struct tt__live_cfg {
    tt_liveness_opts_t o; /* derived; ping/pong point into bytes */
    bool dead_set;        /* o.dead_after_ms was given, not derived */
    char bytes[];
};

static void timer_cb(tt__wnode_t *node);

static inline uint64_t max64(uint64_t a, uint64_t b) { return a > b ? a : b; }
static inline uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* ---- derivation ----------------------------------------------------------------- */

int tt_liveness_derive(uint64_t n, tt_liveness_opts_t *out)
{
    uint64_t total, idle, rem, intvl, cnt;

    if (out == NULL || n < TT_DETECT_MIN_MS || n > TT_TIMEOUT_MAX)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->detect_within_ms = n;
    /* Dead-after leaves a tenth of the deadline for timer and scheduling latency.
     * The heartbeat goes 3.6 times per dead-after period, so a healthy peer that
     * answers it can miss two answers (or take an RTO or two) and still live. */
    out->heartbeat_ms = n / 4;
    out->dead_after_ms = n * 9 / 10;
    /* Unacknowledged data (a peer gone while we send into it, or its window
     * stuck at zero) fails in the kernel, with ETIMEDOUT (tcp(7)), even where no
     * heartbeat can be sent. 3N/5 is below the earliest dead-after close while the
     * app's data is being acknowledged (9N/10 less a sampling step of 9N/40); the
     * kernel checks it only when its retransmission timer fires (clamped to this
     * deadline), measured 100-300 ms late under load, so either may report first. */
    out->user_timeout_ms = min64(n * 3 / 5, INT_MAX);
    /* Keepalive is in whole seconds: idle + cnt * intvl <= 9N/10, with at least
     * one second of each, so it only meets the deadline from about 2.2 s up. It is
     * the backstop for a peer that answers no heartbeat. */
    total = n * 9 / 10 / 1000;
    idle = min64(max64(total / 3, 1), KA_MAX_S);
    rem = total > idle ? total - idle : 0;
    intvl = min64(max64(rem / 3, 1), KA_MAX_S);
    cnt = min64(max64(rem / intvl, 1), KA_MAX_CNT);
    out->keepalive_idle_s = (int)idle;
    out->keepalive_intvl_s = (int)intvl;
    out->keepalive_cnt = (int)cnt;
    return 0;
}

/* Validate `o` and return its derived form in *d (pointers still borrowed). */
static int resolve(const tt_liveness_opts_t *o, uint64_t detect_ms, tt_liveness_opts_t *d,
                   bool *dead_set)
{
    tt_liveness_opts_t dv;

    memset(d, 0, sizeof(*d));
    if (o != NULL)
        *d = *o;
    *dead_set = d->dead_after_ms != 0;
    if (detect_ms != 0)
        d->detect_within_ms = detect_ms;
    if (d->idle_read_ms > TT_TIMEOUT_MAX || d->idle_write_ms > TT_TIMEOUT_MAX ||
        d->idle_all_ms > TT_TIMEOUT_MAX || d->heartbeat_ms > TT_TIMEOUT_MAX ||
        d->dead_after_ms > TT_TIMEOUT_MAX || d->user_timeout_ms > INT_MAX)
        return -EINVAL;
    if ((d->ping == NULL && d->ping_len > 0) || (d->pong == NULL && d->pong_len > 0) ||
        d->ping_len > MAX_HB_BYTES || d->pong_len > MAX_HB_BYTES)
        return -EINVAL;
    /* Equal ping and pong would make two answering peers answer each other forever. */
    if (d->ping_len > 0 && d->ping_len == d->pong_len && memcmp(d->ping, d->pong, d->ping_len) == 0)
        return -EINVAL;
    if (d->keepalive_idle_s != 0 || d->keepalive_intvl_s != 0 || d->keepalive_cnt != 0) {
        if (d->keepalive_idle_s < 1 || d->keepalive_idle_s > KA_MAX_S ||
            d->keepalive_intvl_s < 1 || d->keepalive_intvl_s > KA_MAX_S ||
            d->keepalive_cnt < 1 || d->keepalive_cnt > KA_MAX_CNT)
            return -EINVAL;
    }
    if (d->detect_within_ms != 0) {
        int err = tt_liveness_derive(d->detect_within_ms, &dv);
        if (err < 0)
            return err;
        if (d->heartbeat_ms == 0)
            d->heartbeat_ms = dv.heartbeat_ms;
        if (d->dead_after_ms == 0)
            d->dead_after_ms = dv.dead_after_ms;
        if (d->user_timeout_ms == 0)
            d->user_timeout_ms = dv.user_timeout_ms;
        if (d->keepalive_idle_s == 0) {
            d->keepalive_idle_s = dv.keepalive_idle_s;
            d->keepalive_intvl_s = dv.keepalive_intvl_s;
            d->keepalive_cnt = dv.keepalive_cnt;
        }
    }
    return 0;
}

/* ---- per-connection state --------------------------------------------------------- */

static live_t *live_of(tt_conn_t *c)
{
    return c->ext != NULL ? c->ext->live : NULL;
}

/* App bytes written so far: what was written less the control bytes queued
 * (heartbeats, pongs, the framing layer's pings and pongs: every one goes through
 * tt__conn_send_control, which counts it). It can run behind while a control
 * frame is queued but not yet written, never ahead. */
static uint64_t app_written(const live_t *l)
{
    uint64_t w = l->conn->written, ctl = l->conn->ext->ctl_bytes;
    return w > ctl ? w - ctl : 0;
}

/* The whole cost of liveness on the I/O path: a few stores. */
static void live_on_io(tt_conn_t *c, int dir)
{
    live_t *l = c->ext->live;
    uint64_t now = tt__conn_loop(c)->now;

    l->last_io[dir] = now;
    if (dir == TT__IO_DIR_READ) {
        l->prev_read_at = l->app_read_at; /* restored if it was only a heartbeat */
        l->app_read_at = now;
    } else if (app_written(l) > l->app_wmark) {
        l->app_wmark = app_written(l);
        l->app_write_at = now;
    }
}

static void live_free(tt_conn_t *c)
{
    live_t *l = c->ext->live;
    tt__wheel_stop(&tt__conn_loop(c)->wheel, &l->timer);
    free(l->bytes);
    free(l);
    c->ext->live = NULL;
    c->ext->live_on_io = NULL;
    c->ext->live_free = NULL;
    c->ext->live_input = NULL;
}

static bool live_input(tt_conn_t *c, const char *buf, size_t n);

/* The connection's liveness state, made on first use. NULL on ENOMEM. */
static live_t *live_get(tt_conn_t *c)
{
    tt__conn_ext_t *ext;
    live_t *l = live_of(c);

    if (l != NULL)
        return l;
    ext = tt__conn_ext(c);
    if (ext == NULL)
        return NULL;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    tt__wnode_init(&l->timer, timer_cb);
    l->conn = c;
    l->last_io[0] = l->last_io[1] = tt__conn_loop(c)->now;
    l->app_read_at = l->prev_read_at = l->app_write_at = tt__conn_loop(c)->now;
    l->app_wmark = c->written;
    l->sample_at = tt__conn_loop(c)->now;
    l->k_rcvd = c->bytes_in;
    l->app_written = c->written;
    ext->live = l;
    ext->live_on_io = live_on_io;
    ext->live_free = live_free;
    ext->live_input = live_input;
    return l;
}

/* Everything counts from now: a setting made mid-connection gives a full period. */
static void reset_bases(live_t *l, uint64_t now)
{
    for (int k = 0; k < 3; k++)
        l->idle_base[k] = now;
    l->hb_base = now;
    l->alive_base = now;
}

static bool can_ping(const live_t *l)
{
    const tt__conn_ext_t *ext = l->conn->ext;
    return l->ping_len > 0 || (ext->frame_input != NULL && ext->frame_ping != NULL);
}

/* Idle timeouts count the app's traffic: heartbeats we send and heartbeat reads
 * we consume are not it, or a running heartbeat would keep write-idle (and
 * all-idle) from ever firing. */
static uint64_t idle_due(const live_t *l, int k)
{
    uint64_t ref = k == K_READ    ? l->app_read_at
                   : k == K_WRITE ? l->app_write_at
                                  : max64(l->app_read_at, l->app_write_at);
    return max64(ref, l->idle_base[k]) + l->idle_ms[k];
}

/* The application heartbeat applies: the peer is known to answer pings (or to
 * talk: the app set the dead-after time itself). Otherwise a live TCP stack is a
 * live peer, and proof comes from the kernel. */
static bool app_proof(const live_t *l)
{
    const tt__conn_ext_t *ext = l->conn->ext;

    if (l->dead_set)
        return true;
    if (l->ping_len > 0)
        return l->pong_len == 0 || l->peer_speaks; /* our answering: once it answered */
    return ext->frame_input != NULL && ext->frame_ping != NULL;
}

static uint64_t dead_due(const live_t *l)
{
    return max64(l->last_io[TT__IO_DIR_READ], l->alive_base) + l->dead_after_ms;
}

/* Kernel proof: an idle live peer is heard from only every keepalive idle time. */
static uint64_t kernel_dead_due(const live_t *l)
{
    return max64(l->last_io[TT__IO_DIR_READ], l->alive_base) +
           max64(l->dead_after_ms, l->ka_idle_ms + KA_GRACE_MS);
}

/* Sampling step while proof of life comes from kernel counters: a quarter of the
 * dead-after time bounds how stale that proof can be. */
static uint64_t sample_step(const live_t *l)
{
    return max64(l->dead_after_ms / 4, 1);
}

/* Proof may have to come from the kernel: reading is paused, the app has written
 * since the last sample, or the last proof already came from the kernel. */
static bool kernel_mode(const live_t *l)
{
    const tt_conn_t *c = l->conn;
    return !tt_conn_is_reading(c) || app_written(l) > l->app_written ||
           l->alive_base > l->last_io[TT__IO_DIR_READ];
}

static void arm(live_t *l)
{
    tt_conn_t *c = l->conn;
    uint64_t due = UINT64_MAX;

    for (int k = 0; k < 3; k++)
        if (l->idle_ms[k] > 0)
            due = min64(due, idle_due(l, k));
    if (l->heartbeat_ms > 0 && can_ping(l))
        due = min64(due, max64(l->last_io[TT__IO_DIR_WRITE], l->hb_base) + l->heartbeat_ms);
    if (l->dead_after_ms > 0 && app_proof(l)) {
        due = min64(due, dead_due(l));
        if (kernel_mode(l))
            due = min64(due, l->sample_at + sample_step(l));
    } else if (l->dead_after_ms > 0) {
        due = min64(due, kernel_dead_due(l));
    }
    if (due == UINT64_MAX)
        tt__wheel_stop(&tt__conn_loop(c)->wheel, &l->timer);
    else
        tt__wheel_start(&tt__conn_loop(c)->wheel, &l->timer, due);
}

/* Read the kernel counters; true when they show the peer alive since the last
 * sample. The proof is dated no earlier than the previous sample (conservative)
 * and no earlier than one sampling step ago (samples may be sparse). */
static bool kernel_sample(live_t *l, uint64_t now)
{
    tt_conn_t *c = l->conn;
    tt_tcp_info_t ti;
    uint64_t app = app_written(l);
    bool alive = false;

    if (tt__sock_tcp_info(c->io.fd, &ti) < 0) {
        /* No counters (not TCP): no proof from them, and no new sample due before
         * another step, or the timer would be re-armed in the past. */
        l->sample_at = now;
        return false;
    }
    /* Bytes past both the last sample and what the app has read: new data sitting
     * unread in the kernel (the stream is in order, so they are the newest). */
    if (ti.bytes_received > max64(l->k_rcvd, c->bytes_in))
        alive = true;
    /* The app's own data acknowledged: only if the app wrote since the last
     * sample, so acknowledgements of heartbeats alone never count. */
    if (ti.bytes_acked > l->k_acked && app > l->app_written)
        alive = true;
    if (alive)
        l->alive_base = max64(l->alive_base, max64(l->sample_at, now - sample_step(l)));
    l->k_rcvd = ti.bytes_received;
    l->k_acked = ti.bytes_acked;
    l->app_written = app;
    l->sample_at = now;
    return alive;
}

/* Kernel proof, at the kernel deadline: true when the peer's kernel has been
 * silent that long, with keepalive on to make an idle peer speak. */
static bool kernel_silent(live_t *l, uint64_t now)
{
    int fd = l->conn->io.fd, on = 0, idle_s = 0;
    uint32_t ago;

    if (tt__sock_tcp_heard(fd, &ago) < 0) {
        l->alive_base = now; /* not TCP: nothing to judge by; look again a period on */
        return false;
    }
    l->alive_base = max64(l->alive_base, now > ago ? now - ago : 0);
    if (now < kernel_dead_due(l))
        return false;
    /* Without keepalive an idle live peer sends nothing: its silence proves nothing
     * (data we send is TCP_USER_TIMEOUT's business). The app may have changed the
     * keepalive settings since we set them: read them back. */
    if (tt__sock_get_int(fd, SOL_SOCKET, SO_KEEPALIVE, &on) < 0 || !on) {
        l->alive_base = now;
        return false;
    }
    if (tt__sock_get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s) == 0 && idle_s > 0)
        l->ka_idle_ms = (uint64_t)idle_s * 1000;
    return now >= kernel_dead_due(l);
}

static tt_close_kind_t kind_of(int err)
{
    if (err == -ETIMEDOUT)
        return TT_CLOSE_KERNEL_TIMEOUT; /* keepalive or TCP_USER_TIMEOUT (tcp(7)) */
    if (err == -ECONNRESET || err == -EPIPE)
        return TT_CLOSE_PEER_RESET;
    return TT_CLOSE_IO_ERROR;
}

static void send_ping(live_t *l)
{
    tt_conn_t *c = l->conn;

    /* A ping behind queued data would leave after it anyway: skip it. The queue
     * not draining is the user timeout's and the dead-after time's business. */
    if (!tt__conn_control_idle(c))
        return;
    if (l->ping_len > 0)
        (void)tt__conn_send_control(c, l->bytes, l->ping_len);
    else if (c->ext->frame_input != NULL && c->ext->frame_ping != NULL)
        (void)c->ext->frame_ping(c); /* through tt__conn_send_control as well */
}

/* Close for a liveness reason. A peer presumed dead gets a reset instead of a FIN
 * (SO_LINGER 0, socket(7)): no orphan socket retransmits into the void. */
static void live_close(tt_conn_t *c, tt_close_kind_t kind, int err, int detail, bool reset)
{
    tt__conn_ext_t *ext = c->ext;
    ext->close_detail = detail;
    if (reset && c->io.fd >= 0)
        tt__sock_set_reset_on_close(c->io.fd);
    tt__conn_close(c, kind, err);
}

static void timer_cb(tt__wnode_t *node)
{
    live_t *l = tt__container_of(node, live_t, timer);
    tt_conn_t *c = l->conn;
    uint64_t now = tt__conn_loop(c)->now;

    if (tt__conn_is_closing(c))
        return;
    if (c->state == TT_STATE_CONNECTING) {
        reset_bases(l, now); /* the connect timeout covers this phase */
        l->last_io[0] = l->last_io[1] = now;
        arm(l);
        return;
    }
    /* With reading paused and nothing to write the socket is not in the poller, so
     * an error the kernel recorded (keepalive, user timeout) would wait for the
     * next read_start: look for it here. */
    if (!tt_conn_is_reading(c) && c->io.fd >= 0) {
        int err = tt__sock_error(c->io.fd);
        if (err < 0) {
            live_close(c, kind_of(err), err, 0, false);
            return;
        }
    }
    if (l->dead_after_ms > 0 && app_proof(l)) {
        bool due = now >= dead_due(l);
        if ((due || (kernel_mode(l) && now >= l->sample_at + sample_step(l))) &&
            kernel_sample(l, now))
            due = now >= dead_due(l);
        if (due) {
            live_close(c, TT_CLOSE_HEARTBEAT_TIMEOUT, TT_EHEARTBEAT, 0, true);
            return;
        }
    } else if (l->dead_after_ms > 0 && now >= kernel_dead_due(l) && kernel_silent(l, now)) {
        live_close(c, TT_CLOSE_HEARTBEAT_TIMEOUT, TT_EHEARTBEAT, 0, true);
        return;
    }
    for (int k = 0; k < 3; k++) {
        if (l->idle_ms[k] == 0 || now < idle_due(l, k))
            continue;
        l->idle_base[k] = now; /* a kept connection gets a new full period */
        bool keep = c->h->h.on_idle != NULL && c->h->h.on_idle(c, k + 1);
        if (tt__conn_is_closing(c))
            return; /* the callback closed it */
        if (!keep) {
            live_close(c, TT_CLOSE_IDLE_TIMEOUT, TT_EIDLE, k + 1, false);
            return;
        }
    }
    if (l->heartbeat_ms > 0 && can_ping(l) &&
        now >= max64(l->last_io[TT__IO_DIR_WRITE], l->hb_base) + l->heartbeat_ms) {
        l->hb_base = now;
        send_ping(l);
        if (tt__conn_is_closing(c))
            return; /* the write failed: conn.c closed with the reason */
    }
    arm(l);
}

/* Heartbeat answering, best-effort for unframed streams: a read made only of whole
 * pings and pongs (two peers' heartbeats often arrive glued together) is
 * heartbeat traffic; a read with anything else in it is data, delivered whole. */
static bool live_input(tt_conn_t *c, const char *buf, size_t n)
{
    live_t *l = c->ext->live;
    const char *ping = l->bytes, *pong = l->bytes + l->ping_len;
    size_t pos = 0, pings = 0;

    if (l->pong_len == 0)
        return false;
    if (n == 0)
        return false;
    while (pos < n) {
        if (l->ping_len > 0 && n - pos >= l->ping_len &&
            memcmp(buf + pos, ping, l->ping_len) == 0) {
            pings++;
            pos += l->ping_len;
        } else if (n - pos >= l->pong_len && memcmp(buf + pos, pong, l->pong_len) == 0) {
            pos += l->pong_len;
        } else {
            return false;
        }
    }
    /* Heartbeat traffic: the peer answers pings (from now on the application
     * heartbeat applies to it), and this read is not the app's. */
    l->peer_speaks = true;
    l->app_read_at = l->prev_read_at;
    while (pings-- > 0)
        if (tt__conn_send_control(c, pong, l->pong_len) < 0)
            break;
    return true;
}

/* ---- applying settings -------------------------------------------------------------- */

static int check_conn(const tt_conn_t *c)
{
    if (c == NULL)
        return -EINVAL;
    if (tt__conn_is_closing(c) || c->io.fd < 0)
        return -ENOTCONN;
    return 0;
}

static int set_keepalive(tt_conn_t *c, int idle_s, int intvl_s, int cnt)
{
    int fd = c->io.fd, err;

    if ((err = tt__sock_set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_s)) < 0 ||
        (err = tt__sock_set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, intvl_s)) < 0 ||
        (err = tt__sock_set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, cnt)) < 0 ||
        (err = tt__sock_set_bool(fd, SOL_SOCKET, SO_KEEPALIVE, true)) < 0)
        return err;
    return 0;
}

/* Copy ping/pong into one new buffer; *out NULL when both are empty. */
static int copy_bytes(const void *ping, size_t ping_len, const void *pong, size_t pong_len,
                      char **out)
{
    *out = NULL;
    if (ping_len + pong_len == 0)
        return 0;
    *out = malloc(ping_len + pong_len);
    if (*out == NULL)
        return -ENOMEM;
    if (ping_len > 0)
        memcpy(*out, ping, ping_len);
    if (pong_len > 0)
        memcpy(*out + ping_len, pong, pong_len);
    return 0;
}

static void set_bytes(live_t *l, char *bytes, size_t ping_len, size_t pong_len)
{
    free(l->bytes);
    l->bytes = bytes;
    l->ping_len = (uint16_t)ping_len;
    l->pong_len = (uint16_t)pong_len;
}

/* Timers and bytes from an already resolved `d`; then the socket options.
 * `dead_set`: d->dead_after_ms was given by the app, not derived. */
static int apply(tt_conn_t *c, const tt_liveness_opts_t *d, bool with_bytes, bool dead_set)
{
    char *bytes = NULL;
    live_t *l;
    int err;

    if (with_bytes) {
        err = copy_bytes(d->ping, d->ping_len, d->pong, d->pong_len, &bytes);
        if (err < 0)
            return err;
    }
    l = live_get(c);
    if (l == NULL) {
        free(bytes);
        return -ENOMEM;
    }
    if (with_bytes)
        set_bytes(l, bytes, d->ping_len, d->pong_len);
    l->idle_ms[K_READ] = d->idle_read_ms;
    l->idle_ms[K_WRITE] = d->idle_write_ms;
    l->idle_ms[K_ALL] = d->idle_all_ms;
    l->heartbeat_ms = d->heartbeat_ms;
    l->dead_after_ms = d->dead_after_ms;
    l->dead_set = dead_set && d->dead_after_ms > 0;
    if (d->keepalive_idle_s > 0)
        l->ka_idle_ms = (uint64_t)d->keepalive_idle_s * 1000;
    reset_bases(l, tt__conn_loop(c)->now);
    arm(l);
    /* A Unix socket has no keepalive and no user timeout: a peer process that dies
     * is closed by the kernel at once (end of stream), and a stopped one is the
     * heartbeat's business. Only what applies is derived from the knob. */
    if (tt__conn_is_unix(c))
        return 0;
    if (d->keepalive_idle_s > 0 &&
        (err = set_keepalive(c, d->keepalive_idle_s, d->keepalive_intvl_s, d->keepalive_cnt)) < 0)
        return err;
    if (d->user_timeout_ms > 0 &&
        (err = tt__sock_set_int(c->io.fd, IPPROTO_TCP, TCP_USER_TIMEOUT,
                                (int)d->user_timeout_ms)) < 0)
        return err;
    return 0;
}

int tt_conn_set_liveness(tt_conn_t *c, const tt_liveness_opts_t *o)
{
    tt_liveness_opts_t d;
    bool dead_set;
    int err = check_conn(c);

    if (err < 0)
        return err;
    if (tt__conn_is_unix(c) && (err = tt__live_check_unix(o)) < 0)
        return err;
    if (o == NULL) {
        live_t *l = live_of(c);
        if (l != NULL) {
            memset(l->idle_ms, 0, sizeof(l->idle_ms));
            l->heartbeat_ms = l->dead_after_ms = 0;
            arm(l); /* stops the timer; the state itself is freed at close */
        }
        return 0;
    }
    err = resolve(o, 0, &d, &dead_set);
    if (err < 0)
        return err;
    return apply(c, &d, true, dead_set);
}

int tt_conn_set_detect_within(tt_conn_t *c, uint64_t ms)
{
    tt_liveness_opts_t d;
    live_t *l;
    int err = check_conn(c);

    if (err < 0)
        return err;
    if (ms != 0) {
        err = tt_liveness_derive(ms, &d);
        if (err < 0)
            return err;
    } else {
        memset(&d, 0, sizeof(d));
    }
    l = live_get(c);
    if (l == NULL)
        return -ENOMEM;
    d.idle_read_ms = l->idle_ms[K_READ]; /* idle timeouts are app policy: kept */
    d.idle_write_ms = l->idle_ms[K_WRITE];
    d.idle_all_ms = l->idle_ms[K_ALL];
    return apply(c, &d, false, false);
}

int tt_conn_set_idle_timeout(tt_conn_t *c, int kind, uint64_t ms)
{
    live_t *l;
    int err = check_conn(c);

    if (err < 0 && err != -ENOTCONN)
        return err;
    if (kind < TT_IDLE_READ || kind > TT_IDLE_ALL || ms > TT_TIMEOUT_MAX)
        return -EINVAL;
    if (err < 0)
        return err;
    l = live_get(c);
    if (l == NULL)
        return -ENOMEM;
    l->idle_ms[kind - 1] = ms;
    l->idle_base[kind - 1] = tt__conn_loop(c)->now;
    arm(l);
    return 0;
}

int tt_conn_set_heartbeat(tt_conn_t *c, uint64_t interval_ms, uint64_t dead_after_ms)
{
    live_t *l;
    int err = check_conn(c);

    if (err < 0 && err != -ENOTCONN)
        return err;
    if (interval_ms > TT_TIMEOUT_MAX || dead_after_ms > TT_TIMEOUT_MAX)
        return -EINVAL;
    if (err < 0)
        return err;
    l = live_get(c);
    if (l == NULL)
        return -ENOMEM;
    l->heartbeat_ms = interval_ms;
    l->dead_after_ms = dead_after_ms;
    l->dead_set = dead_after_ms > 0; /* the app says its peer talks this often */
    l->hb_base = l->alive_base = tt__conn_loop(c)->now;
    arm(l);
    return 0;
}

int tt_conn_set_heartbeat_bytes(tt_conn_t *c, const void *ping, size_t ping_len,
                                const void *pong, size_t pong_len)
{
    tt_liveness_opts_t o = {.ping = ping, .ping_len = ping_len, .pong = pong,
                            .pong_len = pong_len};
    tt_liveness_opts_t d;
    bool dead_set;
    char *bytes;
    live_t *l;
    int err = check_conn(c);

    if (err < 0 && err != -ENOTCONN)
        return err;
    if (resolve(&o, 0, &d, &dead_set) < 0)
        return -EINVAL;
    if (err < 0)
        return err;
    err = copy_bytes(ping, ping_len, pong, pong_len, &bytes);
    if (err < 0)
        return err;
    l = live_get(c);
    if (l == NULL) {
        free(bytes);
        return -ENOMEM;
    }
    set_bytes(l, bytes, ping_len, pong_len);
    arm(l); /* a ping source may have appeared */
    return 0;
}

int tt_conn_set_keepalive_params(tt_conn_t *c, int idle_s, int intvl_s, int cnt)
{
    int err = check_conn(c);

    if (err < 0 && err != -ENOTCONN)
        return err;
    if (idle_s < 1 || idle_s > KA_MAX_S || intvl_s < 1 || intvl_s > KA_MAX_S || cnt < 1 ||
        cnt > KA_MAX_CNT)
        return -EINVAL;
    if (err < 0)
        return err;
    if (tt__conn_is_unix(c))
        return -EOPNOTSUPP; /* TCP keepalive; a Unix peer's death is seen at once */
    err = set_keepalive(c, idle_s, intvl_s, cnt);
    if (err == 0 && live_of(c) != NULL)
        live_of(c)->ka_idle_ms = (uint64_t)idle_s * 1000;
    return err;
}

int tt_conn_set_user_timeout(tt_conn_t *c, uint64_t ms)
{
    int err = check_conn(c);

    if (err < 0 && err != -ENOTCONN)
        return err;
    if (ms > INT_MAX)
        return -EINVAL;
    if (err < 0)
        return err;
    if (tt__conn_is_unix(c))
        return -EOPNOTSUPP; /* TCP_USER_TIMEOUT: there are no acknowledgements */
    return tt__sock_set_int(c->io.fd, IPPROTO_TCP, TCP_USER_TIMEOUT, (int)ms);
}

/* ---- server-wide settings ------------------------------------------------------------- */

int tt__live_check_unix(const tt_liveness_opts_t *o)
{
    if (o != NULL && (o->keepalive_idle_s != 0 || o->keepalive_intvl_s != 0 ||
                      o->keepalive_cnt != 0 || o->user_timeout_ms != 0))
        return -EOPNOTSUPP;
    return 0;
}

int tt__live_check(const tt_liveness_opts_t *o, uint64_t detect_within_ms)
{
    tt_liveness_opts_t d;
    bool dead_set;
    return resolve(o, detect_within_ms, &d, &dead_set);
}

int tt__live_cfg_new(tt__live_cfg_t **out, const tt_liveness_opts_t *o,
                     uint64_t detect_within_ms)
{
    tt_liveness_opts_t d;
    tt__live_cfg_t *cfg;
    bool dead_set;
    int err;

    *out = NULL;
    err = resolve(o, detect_within_ms, &d, &dead_set);
    if (err < 0)
        return err;
    if (o == NULL && detect_within_ms == 0)
        return 0;
    cfg = malloc(sizeof(*cfg) + d.ping_len + d.pong_len);
    if (cfg == NULL)
        return -ENOMEM;
    cfg->o = d;
    cfg->dead_set = dead_set;
    if (d.ping_len > 0)
        memcpy(cfg->bytes, d.ping, d.ping_len);
    if (d.pong_len > 0)
        memcpy(cfg->bytes + d.ping_len, d.pong, d.pong_len);
    cfg->o.ping = d.ping_len > 0 ? cfg->bytes : NULL;
    cfg->o.pong = d.pong_len > 0 ? cfg->bytes + d.ping_len : NULL;
    *out = cfg;
    return 0;
}

void tt__live_cfg_free(tt__live_cfg_t *cfg) { free(cfg); }

int tt__live_apply(tt_conn_t *c, const tt__live_cfg_t *cfg)
{
    int err = check_conn(c);
    return err < 0 ? err : apply(c, &cfg->o, true, cfg->dead_set);
}
