/* Pure framing codecs (see frame_codec.h). Nothing here knows about sockets or
 * the loop: the fuzz targets compile this file alone.
 *
 * Hostile input is the normal case here. Every length read from the wire is
 * checked against the limit before anything is allocated for it, arithmetic on it
 * is done in a width that cannot overflow, and the partial-frame buffer grows with
 * the bytes actually received (never with the length a header claims). */
#include "proto/frame_codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Protobuf varints carry at most 64 bits: 10 bytes of 7 bits
 * (https://protobuf.dev/programming-guides/encoding/#varints). */
#define VARINT_MAX 10

/* ---- options ------------------------------------------------------------------ */

static size_t limit_of(size_t max_frame)
{
    return max_frame == 0 ? TT_FRAME_DEFAULT_MAX : max_frame;
}

int tt__codec_init(tt__codec_t *fc, const tt_frame_opts_t *o)
{
    tt__codec_t c;

    if (fc == NULL || o == NULL)
        return -EINVAL;
    memset(&c, 0, sizeof(c));
    c.kind = (uint8_t)o->kind;
    c.max = limit_of(o->max_frame);
    if (c.max > TT_FRAME_MAX_LIMIT)
        return -EINVAL;
    if (o->control && o->kind != TT_FRAME_LENGTH && o->kind != TT_FRAME_VARINT)
        return -EINVAL;
    c.control = o->control;

    switch (o->kind) {
    case TT_FRAME_LENGTH: {
        uint8_t sz = o->length.size;
        if (sz != 1 && sz != 2 && sz != 4 && sz != 8)
            return -EINVAL;
        if ((unsigned)o->length.offset + sz > TT__HDR_MAX)
            return -EINVAL;
        /* Bounded so the frame-length arithmetic below stays far from overflow. */
        if (o->length.adjust < -(int32_t)TT_FRAME_MAX_LIMIT ||
            o->length.adjust > (int32_t)TT_FRAME_MAX_LIMIT ||
            o->length.strip > TT_FRAME_MAX_LIMIT)
            return -EINVAL;
        c.len_off = o->length.offset;
        c.len_size = sz;
        c.hdr_end = (uint8_t)(c.len_off + sz);
        c.little_endian = o->length.little_endian;
        c.adjust = o->length.adjust;
        c.strip = o->length.strip;
        /* A valid frame is at most strip + max bytes (the message is what is
         * left after stripping); the header alone may be longer than that. */
        c.cap = (size_t)c.strip + c.max;
        if (c.cap < c.hdr_end)
            c.cap = c.hdr_end;
        break;
    }
    case TT_FRAME_VARINT:
        c.cap = c.max + VARINT_MAX;
        break;
    case TT_FRAME_DELIMITER:
        if (o->delim.bytes == NULL || o->delim.len == 0 || o->delim.len > TT_FRAME_DELIM_MAX)
            return -EINVAL;
        memcpy(c.delim, o->delim.bytes, o->delim.len);
        c.dlen = (uint8_t)o->delim.len;
        if (o->delim.accept_lf) {
            /* Lenient CRLF: search for "\n" alone and drop a '\r' before it. */
            if (c.dlen != 2 || memcmp(c.delim, "\r\n", 2) != 0)
                return -EINVAL;
            c.delim[0] = '\n';
            c.dlen = 1;
            c.strip_cr = true;
        }
        c.cap = c.max + c.dlen + (c.strip_cr ? 1 : 0);
        break;
    case TT_FRAME_FIXED:
        if (o->fixed_size == 0 || o->fixed_size > TT_FRAME_MAX_LIMIT)
            return -EINVAL;
        if (o->max_frame != 0 && o->fixed_size > o->max_frame)
            return -EINVAL;
        c.fixed = o->fixed_size;
        c.max = c.fixed;
        c.cap = c.fixed;
        break;
    case TT_FRAME_CUSTOM:
        if (o->custom.decode == NULL)
            return -EINVAL;
        c.fn = o->custom.decode;
        c.arg = o->custom.arg;
        c.cap = c.max;
        break;
    default:
        return -EINVAL;
    }
    /* Limits the connection layer (frame.c) enforces; the codec ignores them. */
    c.asm_ms = o->assembly_timeout_ms != 0 ? o->assembly_timeout_ms : TT_FRAME_DEFAULT_ASSEMBLY_MS;
    if (o->budget != 0)
        c.budget = o->budget;
    else
        c.budget = c.cap <= TT_FRAME_DEFAULT_BUDGET / 2 ? TT_FRAME_DEFAULT_BUDGET : 2 * c.cap;
    *fc = c;
    return 0;
}

/* ---- presets (public: tether.h) ----------------------------------------------- */

tt_frame_opts_t tt_frame_length(uint8_t size, bool little_endian, size_t max_frame)
{
    tt_frame_opts_t o;
    memset(&o, 0, sizeof(o));
    o.kind = TT_FRAME_LENGTH;
    o.max_frame = max_frame;
    o.length.size = size;
    o.length.little_endian = little_endian;
    o.length.strip = size; /* deliver the body only */
    return o;
}

tt_frame_opts_t tt_frame_u16be(size_t max_frame) { return tt_frame_length(2, false, max_frame); }
tt_frame_opts_t tt_frame_u32be(size_t max_frame) { return tt_frame_length(4, false, max_frame); }
tt_frame_opts_t tt_frame_u32le(size_t max_frame) { return tt_frame_length(4, true, max_frame); }

tt_frame_opts_t tt_frame_varint(size_t max_frame)
{
    tt_frame_opts_t o;
    memset(&o, 0, sizeof(o));
    o.kind = TT_FRAME_VARINT;
    o.max_frame = max_frame;
    return o;
}

tt_frame_opts_t tt_frame_delimiter(const void *bytes, size_t len, size_t max_frame)
{
    tt_frame_opts_t o;
    memset(&o, 0, sizeof(o));
    o.kind = TT_FRAME_DELIMITER;
    o.max_frame = max_frame;
    o.delim.bytes = bytes;
    o.delim.len = len;
    return o;
}

tt_frame_opts_t tt_frame_line(size_t max_frame) { return tt_frame_delimiter("\n", 1, max_frame); }

tt_frame_opts_t tt_frame_crlf(bool accept_lf, size_t max_frame)
{
    tt_frame_opts_t o = tt_frame_delimiter("\r\n", 2, max_frame);
    o.delim.accept_lf = accept_lf;
    return o;
}

tt_frame_opts_t tt_frame_fixed(size_t size)
{
    tt_frame_opts_t o;
    memset(&o, 0, sizeof(o));
    o.kind = TT_FRAME_FIXED;
    o.fixed_size = size;
    return o;
}

tt_frame_opts_t tt_frame_custom(tt_frame_decode_cb decode, void *arg, size_t max_frame)
{
    tt_frame_opts_t o;
    memset(&o, 0, sizeof(o));
    o.kind = TT_FRAME_CUSTOM;
    o.max_frame = max_frame;
    o.custom.decode = decode;
    o.custom.arg = arg;
    return o;
}

/* ---- decoding ----------------------------------------------------------------- */

static uint64_t all_ones(unsigned bytes)
{
    return bytes >= 8 ? UINT64_MAX : ((uint64_t)1 << (8 * bytes)) - 1;
}

static uint64_t read_uint(const unsigned char *p, unsigned size, bool le)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v = (v << 8) | p[le ? size - 1 - i : i];
    return v;
}

/* The field value `v` says the frame has `v + adjust` bytes after the field.
 * Returns the message, or an error; `after` is where the field ends. */
static int length_frame(const tt__codec_t *fc, uint64_t v, size_t after, size_t len,
                        tt__frame_t *out)
{
    /* v can be up to 2^64 - 1; anything over the cap is too large whatever the
     * adjustment (|adjust| and after are both far below 2^62). */
    if (v > (uint64_t)fc->cap + TT_FRAME_MAX_LIMIT + TT__HDR_MAX)
        return TT_EFRAMESIZE;
    int64_t total = (int64_t)after + (int64_t)v + fc->adjust;
    if (total < (int64_t)after)
        return TT_EPROTOCOL; /* the length says the frame ends inside its header */
    if ((uint64_t)total < fc->strip)
        return TT_EPROTOCOL; /* more to strip than the frame has (Netty agrees) */
    if ((uint64_t)total - fc->strip > fc->max)
        return TT_EFRAMESIZE;
    out->frame_len = (size_t)total;
    out->msg_off = fc->strip;
    out->msg_len = (size_t)total - fc->strip;
    if (len < out->frame_len) {
        out->need = out->frame_len;
        return TT__FR_NEED;
    }
    return TT__FR_MSG;
}

static int control_frame(uint64_t v, uint64_t ones, size_t after, tt__frame_t *out)
{
    out->frame_len = after;
    out->msg_off = after;
    out->msg_len = 0;
    return v == ones ? TT__FR_PING : TT__FR_PONG;
}

static int decode_length(const tt__codec_t *fc, const char *buf, size_t len, tt__frame_t *out)
{
    if (len < fc->hdr_end) {
        out->need = fc->hdr_end;
        return TT__FR_NEED;
    }
    uint64_t v = read_uint((const unsigned char *)buf + fc->len_off, fc->len_size,
                           fc->little_endian);
    uint64_t ones = all_ones(fc->len_size);
    if (fc->control && (v == ones || v == ones - 1))
        return control_frame(v, ones, fc->hdr_end, out);
    return length_frame(fc, v, fc->hdr_end, len, out);
}

static int decode_varint(const tt__codec_t *fc, const char *buf, size_t len, tt__frame_t *out)
{
    const unsigned char *p = (const unsigned char *)buf;
    uint64_t v = 0;
    size_t i;

    /* Decided byte by byte, so the outcome depends only on the bytes seen and
     * not on how the network split them. */
    for (i = 0; i < len; i++) {
        uint64_t b = p[i] & 0x7f;
        /* The tenth byte may only hold the 64th bit. */
        if (i == VARINT_MAX - 1 && b > 1)
            return TT_EPROTOCOL;
        v |= b << (7 * i);
        if (!(p[i] & 0x80))
            break;
        if (i == VARINT_MAX - 1)
            return TT_EPROTOCOL; /* continuation bit set on the tenth byte */
        /* The value only grows with more bytes: a hostile 0xff 0xff ... is
         * refused before the ten bytes are in. Control values are all-ones,
         * so with control frames on only the complete value is judged. */
        if (!fc->control && v > fc->max)
            return TT_EFRAMESIZE;
    }
    if (i == len) {
        out->need = len + 1;
        return TT__FR_NEED;
    }
    if (fc->control && (v == UINT64_MAX || v == UINT64_MAX - 1))
        return control_frame(v, UINT64_MAX, i + 1, out);
    if (v > fc->max)
        return TT_EFRAMESIZE;
    out->frame_len = i + 1 + (size_t)v;
    out->msg_off = i + 1;
    out->msg_len = (size_t)v;
    if (len < out->frame_len) {
        out->need = out->frame_len;
        return TT__FR_NEED;
    }
    return TT__FR_MSG;
}

static const char *find_delim(const tt__codec_t *fc, const char *buf, size_t len)
{
    if (fc->dlen == 1)
        return memchr(buf, fc->delim[0], len);
    return memmem(buf, len, fc->delim, fc->dlen);
}

/* How many bytes at the end of buf may still turn out not to be message: the
 * longest proper prefix of the delimiter they form, or a '\r' that lenient CRLF
 * would drop. */
static size_t delim_tail(const tt__codec_t *fc, const char *buf, size_t len)
{
    if (fc->strip_cr)
        return len > 0 && buf[len - 1] == '\r' ? 1 : 0;
    for (size_t k = len < fc->dlen ? len : (size_t)fc->dlen - 1; k > 0; k--)
        if (memcmp(buf + len - k, fc->delim, k) == 0)
            return k;
    return 0;
}

static int decode_delim(const tt__codec_t *fc, const char *buf, size_t len, size_t scan_from,
                        tt__frame_t *out)
{
    /* A delimiter ending at or after scan_from starts at most dlen - 1 before. */
    size_t from = scan_from >= fc->dlen ? scan_from - (fc->dlen - 1) : 0;
    if (from > len)
        from = len;
    const char *d = find_delim(fc, buf + from, len - from);
    if (d == NULL) {
        /* Every byte but a delimiter prefix at the very end (or a '\r' to
         * drop) is message: past the limit already, no delimiter can save it. */
        if (len - delim_tail(fc, buf, len) > fc->max)
            return TT_EFRAMESIZE;
        out->need = len + 1;
        return TT__FR_NEED;
    }
    size_t at = (size_t)(d - buf);
    size_t mlen = at;
    if (fc->strip_cr && at > 0 && buf[at - 1] == '\r')
        mlen--;
    if (mlen > fc->max)
        return TT_EFRAMESIZE;
    out->frame_len = at + fc->dlen;
    out->msg_off = 0;
    out->msg_len = mlen;
    return TT__FR_MSG;
}

static int decode_custom(const tt__codec_t *fc, const char *buf, size_t len, tt__frame_t *out)
{
    size_t skip = 0;
    /* The decoder never sees more than the limit: a frame can be no longer, and
     * its answer then depends on the same bytes however they arrived. */
    if (len > fc->max)
        len = fc->max;
    ssize_t r = fc->fn(buf, len, &skip, fc->arg);

    if (r == 0) {
        if (len >= fc->max)
            return TT_EFRAMESIZE; /* a whole buffer of limit size and still no frame */
        out->need = len + 1;
        return TT__FR_NEED;
    }
    if (r == TT_EFRAMESIZE)
        return TT_EFRAMESIZE;
    if (r < 0)
        return TT_EPROTOCOL;
    if ((size_t)r > fc->max)
        return TT_EFRAMESIZE;
    if ((size_t)r > len || skip > (size_t)r)
        return TT_EPROTOCOL; /* a frame beyond the bytes it was shown */
    out->frame_len = (size_t)r;
    out->msg_off = skip;
    out->msg_len = (size_t)r - skip;
    return TT__FR_MSG;
}

int tt__codec_decode(const tt__codec_t *fc, const char *buf, size_t len, size_t scan_from,
                     tt__frame_t *out)
{
    memset(out, 0, sizeof(*out));
    switch (fc->kind) {
    case TT_FRAME_LENGTH:
        return decode_length(fc, buf, len, out);
    case TT_FRAME_VARINT:
        return decode_varint(fc, buf, len, out);
    case TT_FRAME_DELIMITER:
        return decode_delim(fc, buf, len, scan_from, out);
    case TT_FRAME_FIXED:
        out->frame_len = out->msg_len = fc->fixed;
        if (len < fc->fixed) {
            out->need = fc->fixed;
            return TT__FR_NEED;
        }
        return TT__FR_MSG;
    case TT_FRAME_CUSTOM:
        if (len == 0) {
            out->need = 1;
            return TT__FR_NEED;
        }
        return decode_custom(fc, buf, len, out);
    default:
        return TT_EPROTOCOL;
    }
}

size_t tt__codec_delim_take(const tt__codec_t *fc, const char *p, size_t plen, const char *buf,
                            size_t n)
{
    /* A delimiter straddling the boundary ends within the first dlen - 1 bytes
     * of buf, before any delimiter lying wholly inside buf can end: look at the
     * seam first. */
    size_t k = (size_t)fc->dlen - 1;
    if (k > 0 && plen > 0) {
        char seam[2 * TT_FRAME_DELIM_MAX];
        size_t a = plen < k ? plen : k;
        size_t b = n < k ? n : k;
        memcpy(seam, p + plen - a, a);
        memcpy(seam + a, buf, b);
        const char *d = memmem(seam, a + b, fc->delim, fc->dlen);
        if (d != NULL)
            return (size_t)(d - seam) + fc->dlen - a;
    }
    const char *d = find_delim(fc, buf, n);
    return d != NULL ? (size_t)(d - buf) + fc->dlen : n;
}

/* ---- encoding ----------------------------------------------------------------- */

static size_t put_varint(unsigned char *hdr, uint64_t v)
{
    size_t i = 0;
    while (v >= 0x80) {
        hdr[i++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    hdr[i++] = (unsigned char)v;
    return i;
}

int tt__codec_header(const tt__codec_t *fc, int type, size_t len, unsigned char *hdr)
{
    bool control = type == TT__FR_PING || type == TT__FR_PONG;

    if (control && !fc->control)
        return -ENOTSUP;
    /* LENGTH checks what the receiver will deliver, which the strip decides. */
    if (!control && fc->kind != TT_FRAME_LENGTH &&
        (len > fc->max || (fc->kind == TT_FRAME_FIXED && len != fc->fixed)))
        return -EMSGSIZE;
    switch (fc->kind) {
    case TT_FRAME_LENGTH: {
        uint64_t ones = all_ones(fc->len_size);
        uint64_t v;
        if (control) {
            v = type == TT__FR_PING ? ones : ones - 1;
        } else {
            /* The receiver computes hdr_end + v + adjust = hdr_end + len. */
            int64_t sv = (int64_t)len - fc->adjust;
            /* What the receiver will deliver: the frame minus its stripped part. */
            int64_t got = (int64_t)fc->hdr_end + (int64_t)len - (int64_t)fc->strip;
            if (got < 0 || (uint64_t)got > fc->max)
                return -EMSGSIZE;
            if (sv < 0 || (uint64_t)sv > ones || (fc->control && (uint64_t)sv >= ones - 1))
                return -EMSGSIZE;
            v = (uint64_t)sv;
        }
        memset(hdr, 0, fc->len_off);
        for (unsigned i = 0; i < fc->len_size; i++) {
            unsigned shift = 8 * (fc->little_endian ? i : fc->len_size - 1 - i);
            hdr[fc->len_off + i] = (unsigned char)(v >> shift);
        }
        return fc->hdr_end;
    }
    case TT_FRAME_VARINT:
        if (control)
            return (int)put_varint(hdr, type == TT__FR_PING ? UINT64_MAX : UINT64_MAX - 1);
        return (int)put_varint(hdr, len);
    default:
        return 0;
    }
}

/* ---- the stream decoder ------------------------------------------------------- */

void tt__fstream_init(tt__fstream_t *s, const tt__codec_t *fc)
{
    memset(s, 0, sizeof(*s));
    s->codec = *fc;
}

void tt__fstream_free(tt__fstream_t *s)
{
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}

/* Make room for `want` bytes in all: double (from 256), bounded by what the frame
 * can need, so a peer that claims a large frame and trickles it in is charged for
 * what it sent, not what it claimed. */
static int reserve(tt__fstream_t *s, size_t want, size_t bound)
{
    if (want <= s->cap)
        return 0;
    size_t ncap = s->cap != 0 ? s->cap : 256;
    while (ncap < want)
        ncap *= 2;
    if (ncap > bound)
        ncap = bound;
    if (ncap > s->codec.cap)
        ncap = s->codec.cap;
    if (ncap < want)
        return TT_EFRAMESIZE; /* callers check the cap first: cannot happen */
    char *nb = realloc(s->buf, ncap);
    if (nb == NULL)
        return -ENOMEM;
    s->buf = nb;
    s->cap = ncap;
    return 0;
}

static int emit_frame(int r, const char *base, const tt__frame_t *fr, tt__frame_emit_cb emit,
                      void *ctx)
{
    return emit(ctx, r, base + fr->msg_off, fr->msg_len, fr);
}

/* Complete the partial frame from buf. Returns the bytes of buf used, which is all
 * of n while the frame is still incomplete; *done says a frame was emitted and
 * *stop that emit asked to stop. */
static ssize_t continue_partial(tt__fstream_t *s, const char *buf, size_t n,
                                tt__frame_emit_cb emit, void *ctx, bool *stop)
{
    const tt__codec_t *fc = &s->codec;
    size_t used = 0;

    while (used < n) {
        size_t old = s->len, take, bound;
        tt__frame_t fr;
        int r;

        /* How much of buf to copy: up to the end of the frame when the codec
         * knows it; for delimiters up to the next delimiter; else what fits. */
        r = tt__codec_decode(fc, s->buf, s->len, s->len, &fr);
        if (r < 0)
            return r;
        if (r != TT__FR_NEED)
            return TT_EPROTOCOL; /* the buffer held a whole frame: a codec bug */
        if (fc->kind == TT_FRAME_DELIMITER)
            take = tt__codec_delim_take(fc, s->buf, s->len, buf + used, n - used);
        else if (fc->kind == TT_FRAME_CUSTOM)
            take = n - used;
        else
            take = fr.need - s->len;
        if (take > n - used)
            take = n - used;
        if (take > fc->cap - s->len) {
            /* More bytes than any valid frame holds and the codec has not
             * complained yet (delimiter or custom): copy what fits; the decode
             * below reports the frame as too large. */
            take = fc->cap - s->len;
            if (take == 0)
                return TT_EFRAMESIZE;
        }
        bound = fc->kind == TT_FRAME_CUSTOM || fc->kind == TT_FRAME_DELIMITER ? fc->cap
                                                                               : fr.need;
        r = reserve(s, s->len + take, bound > s->len + take ? bound : s->len + take);
        if (r < 0)
            return r;
        memcpy(s->buf + s->len, buf + used, take);
        s->len += take;
        used += take;

        r = tt__codec_decode(fc, s->buf, s->len, old, &fr);
        if (r < 0)
            return r;
        if (r == TT__FR_NEED)
            continue;
        /* The frame must end in the bytes just copied: `old` bytes alone were
         * incomplete. A custom decoder that says otherwise is inconsistent. */
        if (fr.frame_len <= old)
            return TT_EPROTOCOL;
        /* Bytes copied past the frame's end belong to what follows: give them
         * back, and decode the rest in place. */
        used -= s->len - fr.frame_len;
        s->len = 0; /* logically empty from here: emit may switch framing */
        s->after = n - used;
        *stop = emit_frame(r, s->buf, &fr, emit, ctx) != 0;
        /* Released as soon as it empties: idle connections hold no buffer. */
        tt__fstream_free(s);
        return (ssize_t)used;
    }
    return (ssize_t)used;
}

ssize_t tt__fstream_feed(tt__fstream_t *s, const char *buf, size_t n, tt__frame_emit_cb emit,
                         void *ctx)
{
    const tt__codec_t *fc = &s->codec;
    size_t pos = 0;

    if (s->len > 0) {
        bool stop = false;
        ssize_t r = continue_partial(s, buf, n, emit, ctx, &stop);
        if (r < 0)
            return r;
        pos = (size_t)r;
        if (stop || s->len > 0)
            return stop ? (ssize_t)pos : (ssize_t)n;
    }
    while (pos < n) {
        tt__frame_t fr;
        int r = tt__codec_decode(fc, buf + pos, n - pos, 0, &fr);
        if (r < 0)
            return r;
        if (r == TT__FR_NEED) {
            /* A partial frame: keep a copy. The codec has already refused it if
             * it cannot fit the cap. */
            size_t rest = n - pos;
            if (rest > fc->cap)
                return TT_EFRAMESIZE;
            size_t bound = fc->kind == TT_FRAME_CUSTOM || fc->kind == TT_FRAME_DELIMITER
                               ? fc->cap
                               : fr.need;
            int err = reserve(s, rest, bound > rest ? bound : rest);
            if (err < 0)
                return err;
            memcpy(s->buf, buf + pos, rest);
            s->len = rest;
            return (ssize_t)n;
        }
        pos += fr.frame_len;
        s->after = n - pos;
        if (emit_frame(r, buf + pos - fr.frame_len, &fr, emit, ctx) != 0)
            return (ssize_t)pos;
    }
    return (ssize_t)n;
}
