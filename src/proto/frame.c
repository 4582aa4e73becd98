/* Framing on a connection: the stream decoder of frame_codec.c fed from the read
 * path, messages delivered to on_message, headers written in front of sends, and
 * ping/pong control frames.
 *
 * The connection layer knows none of this: it calls the hooks in tt__conn_ext_t
 * (frame_input for every read, frame_free at close, frame_ping for liveness).
 *
 * Delivery is in place: a whole frame inside the read buffer is passed to
 * on_message as a pointer into that buffer. Only the tail of a read that holds
 * part of a frame is copied, into a buffer owned by the framer, freed as soon as
 * the frame completes (DESIGN.md: no per-connection buffer while idle). */
#include "proto/frame.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "stream/conn.h"
#include "proto/frame_codec.h"
#include "proto/ws.h"

/* Compiled options a server applies to every connection it accepts, with the
 * partial-frame memory all those connections hold (the budget). Reference-counted:
 * the server's reference, and one per framer, so a server may close while its
 * connections live on. */
typedef struct frame_cfg {
    tt__codec_t codec; /* what tt__frame_cfg_new hands out */
    size_t used;       /* partial-frame buffer bytes its framers hold */
    unsigned refs;
} frame_cfg_t;

static void cfg_unref(frame_cfg_t *cfg)
{
    if (cfg != NULL && --cfg->refs == 0)
        free(cfg);
}

typedef struct framer {
    tt__fstream_t s;
    tt_conn_t *conn;
    frame_cfg_t *cfg;  /* framed by a server's options: the budget; else NULL */
    size_t charged;    /* partial-buffer bytes counted in cfg->used */
    tt__wnode_t asm_timer; /* the partial frame's deadline */
    uint64_t frames;   /* frames decoded so far */
    uint64_t frames_at_arm; /* ... when asm_timer was started */
    /* Nesting depth of frame_input on this framer. While it is non-zero the
     * framer must not be freed: on_message may turn framing off or change it,
     * and the decoder still runs on this object until the callback returns. */
    unsigned delivering;
    bool retired; /* replaced while delivering: free when delivery unwinds */
    /* The rest of a read whose delivery stopped because on_message paused
     * reading: handed to the decoder again once reading restarts. Any bytes that
     * arrive meanwhile go behind it, so order is kept. */
    char *held;
    size_t held_len;
} framer_t;

static framer_t *framer_of(const tt_conn_t *c)
{
    return c != NULL && c->ext != NULL ? c->ext->framer : NULL;
}

static void framer_release(framer_t *f)
{
    /* Replaced or gone: no deadline. */
    tt__wheel_stop(&tt__conn_loop(f->conn)->wheel, &f->asm_timer);
    if (f->delivering > 0) {
        f->retired = true;
        return;
    }
    if (f->cfg != NULL)
        f->cfg->used -= f->charged;
    cfg_unref(f->cfg);
    tt__fstream_free(&f->s);
    free(f->held);
    free(f);
}

/* ---- limits on partial frames: time and the server-wide budget ------------------- */

static void asm_timeout_cb(tt__wnode_t *node)
{
    framer_t *f = tt__container_of(node, framer_t, asm_timer);
    tt_conn_t *c = f->conn;

    /* A peer that starts a frame and stalls holds its buffer for as long as it
     * likes otherwise. */
    c->ext->close_detail = TT_FRAME_DETAIL_TIMEOUT;
    tt__conn_close(c, TT_CLOSE_PROTOCOL_ERROR, -ETIMEDOUT);
}

/* After a feed: charge the partial buffer's growth to the budget (closing the
 * connection that would pass it) and keep the deadline of the frame in progress:
 * started when a partial frame appears, restarted when a new one does (frames
 * completed in between), stopped when none is held. */
static void partial_check(tt_conn_t *c, framer_t *f)
{
    const tt__codec_t *fc = &f->s.codec;

    if (f->cfg != NULL) {
        size_t before = f->charged;
        f->cfg->used = f->cfg->used - before + f->s.cap;
        f->charged = f->s.cap;
        if (f->s.cap > before && fc->budget != SIZE_MAX && f->cfg->used > fc->budget) {
            c->ext->close_detail = TT_FRAME_DETAIL_BUDGET;
            tt__conn_close(c, TT_CLOSE_FRAME_TOO_LARGE, -ENOBUFS);
            return;
        }
    }
    if (f->s.len == 0) {
        tt__wheel_stop(&tt__conn_loop(c)->wheel, &f->asm_timer);
    } else if (fc->asm_ms != UINT32_MAX &&
               (!tt__wnode_active(&f->asm_timer) || f->frames != f->frames_at_arm)) {
        f->frames_at_arm = f->frames;
        tt__wheel_start(&tt__conn_loop(c)->wheel, &f->asm_timer,
                        tt__loop_deadline(tt__conn_loop(c), fc->asm_ms));
    }
}

/* ---- receiving ---------------------------------------------------------------- */

/* Ping and pong go the way liveness heartbeats go: at once when nothing is
 * queued, and still after tt_end() as long as our FIN has not left. A control
 * frame is a header only, so it can never split a message. */
static int send_control(tt_conn_t *c, framer_t *f, int type)
{
    unsigned char hdr[TT__HDR_MAX];
    int hlen = tt__codec_header(&f->s.codec, type, 0, hdr);
    if (hlen < 0)
        return hlen;
    return tt__conn_send_control(c, hdr, (size_t)hlen);
}

static int emit(void *ctx, int type, const char *msg, size_t len, const tt__frame_t *fr)
{
    framer_t *f = ctx;
    tt_conn_t *c = f->conn;

    (void)fr;
    f->frames++;
    switch (type) {
    case TT__FR_PING:
        /* Answered from the read path (not an API call). A connection that has
         * ended its side cannot answer: that is not an error of the peer's. */
        (void)send_control(c, f, TT__FR_PONG);
        break;
    case TT__FR_PONG:
        break; /* its bytes already counted as a sign of life in conn.c */
    default:
        c->ext->msgs_in++;
        if (c->h->h.on_message != NULL) {
            size_t outer = tt__conn_loop(c)->more_input;
            tt__conn_loop(c)->more_input = f->s.after;
            c->h->h.on_message(c, msg, len);
            tt__conn_loop(c)->more_input = outer;
        }
        break;
    }
    /* Stop when the callback closed the connection, changed its framing, or
     * stopped reading (flow control must hold between messages too). */
    return tt__conn_is_closing(c) || c->ext->framer != f || !tt_conn_is_reading(c);
}

/* Keep buf[0, n) for later, behind whatever is held already. 0 or -ENOMEM. */
static int hold(framer_t *f, const char *buf, size_t n)
{
    char *nb = realloc(f->held, f->held_len + n);
    if (nb == NULL)
        return -ENOMEM;
    memcpy(nb + f->held_len, buf, n);
    f->held = nb;
    f->held_len += n;
    return 0;
}

static void frame_input(tt_conn_t *c, const char *buf, size_t n)
{
    framer_t *f = c->ext->framer;
    ssize_t r;

    if (f->held != NULL) { /* earlier input still waits: keep the order */
        if (hold(f, buf, n) < 0)
            tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM);
        return;
    }
    f->delivering++;
    r = tt__fstream_feed(&f->s, buf, n, emit, f);
    f->delivering--;
    if (f->retired) {
        if (f->delivering == 0)
            framer_release(f);
    } else if (r < 0 && !tt__conn_is_closing(c)) {
        /* Only this connection ends; its partial buffer goes with the framer. */
        tt__conn_close(c, r == TT_EFRAMESIZE ? TT_CLOSE_FRAME_TOO_LARGE
                          : r == -ENOMEM     ? TT_CLOSE_IO_ERROR
                                             : TT_CLOSE_PROTOCOL_ERROR,
                       (int)r);
        return;
    } else if (r >= 0 && !tt__conn_is_closing(c)) {
        partial_check(c, f);
    }
    if (r < 0 || (size_t)r >= n || tt__conn_is_closing(c))
        return;
    if (c->ext->framer == f && !tt_conn_is_reading(c)) {
        if (hold(f, buf + r, n - (size_t)r) < 0)
            tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM);
        return;
    }
    /* on_message switched framing: the rest of this read belongs to the new
     * framing, or to on_data if framing is now off. */
    if (c->ext->frame_input != NULL)
        c->ext->frame_input(c, buf + r, n - (size_t)r);
    else if (c->h->h.on_data != NULL)
        c->h->h.on_data(c, buf + r, n - (size_t)r, 0);
}

/* Feed what was held, if reading is on. */
static void feed_held(tt_conn_t *c, framer_t *f)
{
    char *buf;
    size_t len;

    if (f->held == NULL || !tt_conn_is_reading(c))
        return;
    buf = f->held;
    len = f->held_len;
    f->held = NULL;
    f->held_len = 0;
    frame_input(c, buf, len); /* may hold a new remainder if paused again */
    free(buf);
}

/* Reading restarted (from the loop's pending phase): feed what was held, then
 * the end of stream that waited behind it. */
static void read_resumed(tt_conn_t *c)
{
    framer_t *f = framer_of(c);

    if (f == NULL)
        return;
    feed_held(c, f);
    if (tt__conn_is_closing(c) || !tt__conn_eof_held(c))
        return;
    /* on_message may have changed the framing (or turned it off) meanwhile: what
     * counts is whether the framer now in place still holds input. */
    framer_t *now = framer_of(c);
    if (now != NULL && now->held != NULL)
        return; /* paused again: the next tt_conn_read_start comes back here */
    tt__conn_peer_ended(c);
}

static int frame_eof(tt_conn_t *c)
{
    framer_t *f = framer_of(c);

    if (f == NULL)
        return 0;
    /* Reading may have restarted after this round's reads were polled (from
     * another connection's callback): the held input precedes the FIN. */
    f->delivering++; /* feeding may change the framing: keep f until we are done */
    feed_held(c, f);
    f->delivering--;
    if (f->retired) {
        framer_release(f);
        return 0; /* framing changed or went: it is no longer this framer's end */
    }
    if (tt__conn_is_closing(c))
        return 0;
    if (f->held != NULL)
        return 1; /* paused again: the end waits for tt_conn_read_start */
    return f->s.len > 0 ? TT_EPROTOCOL : 0;
}

static void frame_free(tt_conn_t *c)
{
    framer_t *f = c->ext->framer;
    c->ext->framer = NULL;
    c->ext->frame_input = NULL;
    c->ext->frame_free = NULL;
    c->ext->frame_ping = NULL;
    c->ext->read_resumed = NULL;
    c->ext->frame_eof = NULL;
    if (f != NULL)
        framer_release(f);
}

static int frame_ping(tt_conn_t *c)
{
    framer_t *f = framer_of(c);
    if (f == NULL)
        return -ENOTCONN;
    return send_control(c, f, TT__FR_PING);
}

/* ---- public: options ---------------------------------------------------------- */

/* Replace the connection's framer with one for `fc` (NULL: off). The caller has
 * checked that nothing is buffered. 0 or -ENOMEM (nothing changed). */
static int install(tt_conn_t *c, const tt__codec_t *fc, frame_cfg_t *cfg)
{
    framer_t *cur = framer_of(c), *nf = NULL;

    if (fc == NULL && cur == NULL)
        return 0;
    if (fc != NULL) {
        nf = calloc(1, sizeof(*nf));
        if (nf == NULL)
            return -ENOMEM;
        tt__fstream_init(&nf->s, fc);
        nf->conn = c;
        tt__wnode_init(&nf->asm_timer, asm_timeout_cb);
    }
    if (tt__conn_ext(c) == NULL) {
        free(nf);
        return -ENOMEM;
    }
    if (cur != NULL)
        framer_release(cur);
    if (nf != NULL && cfg != NULL) {
        nf->cfg = cfg;
        cfg->refs++;
    }
    c->ext->framer = nf;
    c->ext->frame_input = nf != NULL ? frame_input : NULL;
    c->ext->frame_free = nf != NULL ? frame_free : NULL;
    c->ext->read_resumed = nf != NULL ? read_resumed : NULL;
    c->ext->frame_eof = nf != NULL ? frame_eof : NULL;
    /* Liveness sends a ping frame instead of its own probe only when the codec
     * has control frames (docs/framing.md). */
    c->ext->frame_ping = nf != NULL && fc->control ? frame_ping : NULL;
    return 0;
}

int tt_conn_set_framing(tt_conn_t *c, const tt_frame_opts_t *opts)
{
    tt__codec_t fc;
    framer_t *cur;
    int err;

    if (c == NULL)
        return -EINVAL;
    if (opts != NULL && (err = tt__codec_init(&fc, opts)) < 0)
        return err;
    if (tt__conn_is_closing(c))
        return -ENOTCONN;
    if (tt__ws_on(c))
        return -EBUSY; /* WebSocket is this connection's framing */
    cur = framer_of(c);
    if (cur != NULL && (cur->s.len > 0 || cur->held != NULL))
        return -EBUSY; /* switching now would misparse the buffered bytes */
    return install(c, opts != NULL ? &fc : NULL, NULL);
}

int tt__frame_check(const tt_frame_opts_t *o)
{
    tt__codec_t fc;
    return o == NULL ? 0 : tt__codec_init(&fc, o);
}

int tt__frame_cfg_new(struct tt__codec **out, const tt_frame_opts_t *o)
{
    frame_cfg_t *cfg;
    tt__codec_t fc;
    int err;

    *out = NULL;
    if (o == NULL)
        return 0;
    if ((err = tt__codec_init(&fc, o)) < 0)
        return err;
    if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
        return -ENOMEM;
    cfg->codec = fc;
    cfg->refs = 1;
    *out = &cfg->codec;
    return 0;
}

void tt__frame_cfg_free(struct tt__codec *fc)
{
    if (fc != NULL)
        cfg_unref(tt__container_of(fc, frame_cfg_t, codec));
}

int tt__frame_apply(tt_conn_t *c, const struct tt__codec *fc)
{
    frame_cfg_t *cfg = fc != NULL ? tt__container_of(fc, frame_cfg_t, codec) : NULL;
    return install(c, fc, cfg);
}

bool tt_conn_is_framed(const tt_conn_t *c)
{
    return framer_of(c) != NULL || tt_conn_is_websocket(c);
}

size_t tt_conn_frame_buffered(const tt_conn_t *c)
{
    framer_t *f = framer_of(c);
    return f != NULL ? f->s.len + f->held_len : 0;
}

size_t tt__frame_buf_cap(const tt_conn_t *c)
{
    framer_t *f = framer_of(c);
    return f != NULL ? f->s.cap : 0;
}

/* ---- public: sending ---------------------------------------------------------- */

/* Does the message (the pieces, then the delimiter's first dlen - 1 bytes, which
 * are what follows it on the wire) hold the delimiter anywhere? A match that only
 * starts in those trailing bytes is fine: that is the real delimiter. */
static bool holds_delim(const tt__codec_t *fc, const struct iovec *iov, int iovcnt)
{
    size_t k = (size_t)fc->dlen - 1;
    char tail[TT_FRAME_DELIM_MAX]; /* the last k bytes seen */
    size_t tl = 0;

    for (int i = 0; i <= iovcnt; i++) {
        const char *p = i < iovcnt ? iov[i].iov_base : (const char *)fc->delim;
        size_t n = i < iovcnt ? iov[i].iov_len : k;
        if (n == 0)
            continue;
        if (tl > 0) {
            char seam[2 * TT_FRAME_DELIM_MAX];
            size_t b = n < k ? n : k;
            memcpy(seam, tail, tl);
            memcpy(seam + tl, p, b);
            if (memmem(seam, tl + b, fc->delim, fc->dlen) != NULL)
                return true;
        }
        if (i < iovcnt && memmem(p, n, fc->delim, fc->dlen) != NULL)
            return true;
        /* Keep the last k bytes of everything so far. */
        if (n >= k) {
            memcpy(tail, p + n - k, k);
            tl = k;
        } else {
            size_t keep = tl + n > k ? k - n : tl;
            memmove(tail, tail + tl - keep, keep);
            memcpy(tail + keep, p, n);
            tl = keep + n;
        }
    }
    return false;
}

/* The header and trailer a message of `len` bytes needs. 0 or -errno. */
static int frame_parts(tt_conn_t *c, const struct iovec *iov, int iovcnt, size_t len,
                       unsigned char *hdr, size_t *hlen, const void **trailer, size_t *tlen)
{
    framer_t *f = framer_of(c);
    const tt__codec_t *fc;
    int r;

    if (tt__ws_on(c)) { /* WebSocket: a header, no trailer */
        *trailer = NULL;
        *tlen = 0;
        return tt__ws_wrap(c, len, hdr, hlen);
    }
    if (f == NULL)
        return -ENOTCONN;
    fc = &f->s.codec;
    r = tt__codec_header(fc, TT__FR_MSG, len, hdr);
    if (r < 0)
        return r;
    *hlen = (size_t)r;
    *trailer = NULL;
    *tlen = 0;
    if (fc->kind == TT_FRAME_DELIMITER) {
        if (holds_delim(fc, iov, iovcnt))
            return -EINVAL;
        /* Lenient CRLF decodes "\n" and drops the '\r': send the full "\r\n". */
        *trailer = fc->strip_cr ? "\r\n" : (const char *)fc->delim;
        *tlen = fc->strip_cr ? 2 : fc->dlen;
    }
    return 0;
}

const void *tt__frame_shared_key(const tt_conn_t *c)
{
    if (tt__ws_on(c))
        return tt__ws_shared_key(c);
    framer_t *f = framer_of(c);
    return f != NULL ? (const void *)f->cfg : NULL;
}

int tt__frame_wrap(const tt_conn_t *c, const void *msg, size_t len, unsigned char *hdr,
                   size_t *hlen, const void **trailer, size_t *tlen)
{
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    return frame_parts((tt_conn_t *)c, &iov, 1, len, hdr, hlen, trailer, tlen);
}

void tt__frame_count_out(tt_conn_t *c)
{
    if (c->ext != NULL)
        c->ext->msgs_out++;
}

static int sum_iov(const struct iovec *iov, int iovcnt, size_t *len)
{
    *len = 0;
    if (iovcnt < 0 || iovcnt > IOV_MAX - 2 || (iov == NULL && iovcnt > 0))
        return -EINVAL;
    for (int i = 0; i < iovcnt; i++) {
        if ((iov[i].iov_base == NULL && iov[i].iov_len > 0) || *len + iov[i].iov_len < *len)
            return -EINVAL;
        *len += iov[i].iov_len;
    }
    return 0;
}

#define IOV_STACK 16

int tt_send_messagev(tt_conn_t *c, const struct iovec *iov, int iovcnt)
{
    unsigned char hdr[TT__HDR_MAX];
    struct iovec stack[IOV_STACK + 2], *v = stack;
    const void *trailer;
    size_t len, hlen, tlen;
    int err, n = 0;

    if (c == NULL || (err = sum_iov(iov, iovcnt, &len)) < 0)
        return -EINVAL;
    if (tt__ws_on(c))
        return tt__ws_send_messagev(c, iov, iovcnt);
    err = frame_parts(c, iov, iovcnt, len, hdr, &hlen, &trailer, &tlen);
    if (err < 0)
        return err;
    if (iovcnt > IOV_STACK && (v = malloc(sizeof(*v) * ((size_t)iovcnt + 2))) == NULL)
        return -ENOMEM;
    /* Header, payload and trailer as one vector: tt_sendv writes it with one
     * writev from the caller's memory when the queue is empty, and copies only
     * what the socket does not take. */
    if (hlen > 0)
        v[n++] = (struct iovec){.iov_base = hdr, .iov_len = hlen};
    for (int i = 0; i < iovcnt; i++)
        v[n++] = iov[i];
    if (tlen > 0)
        v[n++] = (struct iovec){.iov_base = (void *)trailer, .iov_len = tlen};
    err = tt_sendv(c, v, n);
    if (v != stack)
        free(v);
    if (err >= 0)
        c->ext->msgs_out++;
    return err;
}

int tt_send_message(tt_conn_t *c, const void *msg, size_t len)
{
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    if (c == NULL || (msg == NULL && len > 0))
        return -EINVAL;
    return tt_send_messagev(c, &iov, 1);
}

int tt_send_message_owned(tt_conn_t *c, void *buf, size_t len, tt_free_cb free_cb, void *arg)
{
    unsigned char hdr[TT__HDR_MAX];
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    const void *trailer;
    size_t hlen, tlen;
    int err;

    if (c == NULL || (buf == NULL && len > 0))
        return -EINVAL;
    err = frame_parts(c, &iov, 1, len, hdr, &hlen, &trailer, &tlen);
    if (err < 0)
        return err;
    /* A zero-length send changes nothing and says whether sending is allowed
     * (-EPIPE after tt_end or while closing). */
    err = tt_sendv(c, NULL, 0);
    if (err < 0)
        return err;
    /* The whole frame against the hard cap, before any of it is queued: a
     * header without its payload would corrupt the stream. Same rule and same
     * outcome as conn.c's cap check. */
    err = tt__conn_over_cap(c, (uint64_t)hlen + len + tlen);
    if (err < 0)
        return err;
    /* The header goes straight into the queue (tt_send would write it at once
     * and split the frame over two writes); tt_send_owned then queues the
     * payload and schedules one flush for both. */
    if (hlen > 0) {
        struct iovec h = {.iov_base = hdr, .iov_len = hlen};
        tt__sendq_t *q = tt__conn_queue(c);
        err = q != NULL ? tt__sendq_push_copy(q, &h, 1, hlen) : -ENOMEM;
        if (err < 0)
            return err;
    }
    /* From here the queue holds the header or the owned payload: c->out is set. */
    err = tt_send_owned(c, buf, len, free_cb, arg);
    if (err >= 0 && hlen > 0)
        c->out->sq.tail->flags |= TT__SQE_CONT; /* the payload continues the header */
    if (err >= 0 && tlen > 0) {
        int terr = tt_send(c, trailer, tlen); /* queued behind the payload */
        if (terr >= 0 && c->out->sq.tail != NULL && c->out->sq.tail->kind == TT__SQ_COPY)
            c->out->sq.tail->flags |= TT__SQE_CONT; /* a fresh chunk after the owned entry */
        if (terr < 0) {
            /* The payload is queued and now belongs to the connection (its
             * free_cb runs at close); the frame cannot be completed. */
            tt__conn_close(c, TT_CLOSE_IO_ERROR, terr);
            return 0;
        }
        err = terr > err ? terr : err;
    }
    if (err < 0) {
        if (hlen > 0)
            tt__conn_close(c, TT_CLOSE_IO_ERROR, err); /* a lone header is queued */
        return err;
    }
    c->ext->msgs_out++;
    return err;
}

int tt_send_ping(tt_conn_t *c)
{
    framer_t *f = framer_of(c);
    if (c == NULL)
        return -EINVAL;
    if (tt__ws_on(c))
        return tt__ws_send_ping(c);
    if (f == NULL)
        return -ENOTCONN;
    return send_control(c, f, TT__FR_PING);
}
