/* Invariants every framing fuzz target checks (included by fuzz_*.c, which compile
 * src/proto/frame_codec.c directly: no loop, no sockets).
 *
 * Input layout: byte 0 picks the codec variant (each target decides), byte 1 the
 * size limit, bytes 2..9 the sizes of the pieces the stream is fed in, the rest is
 * the stream. For each input:
 *  1. Fed whole, frames are contiguous from offset 0, every message lies inside
 *     its frame, is delivered in place (a pointer into the input) and is never
 *     over the limit.
 *  2. Fed in pieces, the same messages with the same bytes come out, then the
 *     same error (or none); the partial buffer never passes the codec's cap and
 *     is released whenever it empties.
 *  3. Re-encoding the decoded messages with the codec's own encoder and decoding
 *     that gives the same messages back (when the codec can encode them). */
#ifndef TT_FUZZ_COMMON_H
#define TT_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "proto/frame_codec.h"

#define FZ_MAX_MSGS 4096

typedef struct fz_msg {
    int type;
    size_t off, len; /* position of the message in the stream */
} fz_msg_t;

typedef struct fz_run {
    const uint8_t *stream; /* the whole stream */
    size_t pos;            /* stream offset of the next frame (whole-feed run) */
    const char *piece;     /* the piece being fed */
    size_t piece_len, piece_at;
    size_t max;
    fz_msg_t *msgs;
    size_t n;
    bool whole; /* first run: record; later runs: compare */
    const fz_msg_t *ref;
    size_t nref;
    int stop_after; /* emit stops after this many (0: never) */
} fz_run_t;

static int fz_emit(void *ctx, int type, const char *msg, size_t len, const tt__frame_t *fr)
{
    fz_run_t *r = ctx;

    FZ_CHECK(fr->msg_off + fr->msg_len <= fr->frame_len);
    FZ_CHECK(fr->msg_len == len);
    FZ_CHECK(fr->frame_len > 0);
    if (type == TT__FR_MSG)
        FZ_CHECK(len <= r->max);
    else
        FZ_CHECK(type == TT__FR_PING || type == TT__FR_PONG);
    if (r->whole) {
        /* In place, at the next frame's offset. */
        FZ_CHECK(msg == (const char *)r->stream + r->pos + fr->msg_off);
        FZ_CHECK(r->n < FZ_MAX_MSGS);
        r->msgs[r->n].type = type;
        r->msgs[r->n].off = r->pos + fr->msg_off;
        r->msgs[r->n].len = len;
        r->pos += fr->frame_len;
    } else {
        FZ_CHECK(r->n < r->nref);
        FZ_CHECK(r->ref[r->n].type == type);
        FZ_CHECK(r->ref[r->n].len == len);
        FZ_CHECK(len == 0 || memcmp(msg, r->stream + r->ref[r->n].off, len) == 0);
    }
    r->n++;
    return r->stop_after != 0 && (int)r->n >= r->stop_after;
}

/* Feed `data` in pieces of the sizes in `sizes` (cycled; 0 means one piece).
 * Returns the error or 0, with *consumed the bytes accepted. */
static int fz_feed(const tt__codec_t *fc, const uint8_t *data, size_t size, const uint8_t *sizes,
                   size_t nsizes, fz_run_t *r)
{
    tt__fstream_t st;
    size_t at = 0, k = 0;
    int err = 0;

    tt__fstream_init(&st, fc);
    while (at < size) {
        size_t step = size - at;
        if (nsizes > 0) {
            size_t s = sizes[k++ % nsizes];
            if (s != 0 && s < step)
                step = s;
        }
        r->piece = (const char *)data + at;
        r->piece_len = step;
        r->piece_at = at;
        ssize_t got = tt__fstream_feed(&st, (const char *)data + at, step, fz_emit, r);
        FZ_CHECK(st.cap <= fc->cap);
        FZ_CHECK(st.len <= st.cap);
        FZ_CHECK((st.len == 0) == (st.buf == NULL));
        if (got < 0) {
            FZ_CHECK(got == TT_EFRAMESIZE || got == TT_EPROTOCOL);
            err = (int)got;
            break;
        }
        FZ_CHECK((size_t)got == step);
        at += step;
    }
    tt__fstream_free(&st);
    return err;
}

/* The whole check for one codec and one stream. Returns the error the stream
 * ends with (0 if none, 1 if the options were refused) and sets *nmsgs, so a
 * target can compare against its own naive reading of the stream. */
static int fz_check(const tt_frame_opts_t *o, const uint8_t *sizes, size_t nsizes,
                    const uint8_t *data, size_t size, size_t *nmsgs)
{
    static fz_msg_t ref[FZ_MAX_MSGS];
    tt__codec_t fc;
    fz_run_t whole, part;
    int err_whole, err_part;

    *nmsgs = 0;
    if (tt__codec_init(&fc, o) != 0)
        return 1;
    memset(&whole, 0, sizeof(whole));
    whole.stream = data;
    whole.max = fc.max;
    whole.msgs = ref;
    whole.whole = true;
    err_whole = fz_feed(&fc, data, size, NULL, 0, &whole);
    /* Without an error every byte is in a frame or in the trailing partial. */
    FZ_CHECK(whole.pos <= size);

    memset(&part, 0, sizeof(part));
    part.stream = data;
    part.max = fc.max;
    part.ref = ref;
    part.nref = whole.n;
    err_part = fz_feed(&fc, data, size, sizes, nsizes, &part);
    FZ_CHECK(part.n == whole.n);
    FZ_CHECK(err_part == err_whole);

    /* Byte by byte, for short streams (it is quadratic only in the callbacks). */
    if (size <= 512) {
        uint8_t one = 1;
        memset(&part, 0, sizeof(part));
        part.stream = data;
        part.max = fc.max;
        part.ref = ref;
        part.nref = whole.n;
        FZ_CHECK(fz_feed(&fc, data, size, &one, 1, &part) == err_whole);
        FZ_CHECK(part.n == whole.n);
    }

    *nmsgs = whole.n;
    /* Round trip through the encoder. */
    if (fc.kind == TT_FRAME_CUSTOM || whole.n == 0)
        return err_whole;
    size_t cap = 0;
    for (size_t i = 0; i < whole.n; i++)
        cap += TT__HDR_MAX + ref[i].len + TT_FRAME_DELIM_MAX + 2;
    uint8_t *enc = malloc(cap);
    fz_msg_t *back = malloc(sizeof(*back) * whole.n);
    size_t at = 0, kept = 0;
    FZ_CHECK(enc != NULL && back != NULL);
    for (size_t i = 0; i < whole.n; i++) {
        int h = tt__codec_header(&fc, ref[i].type, ref[i].len, enc + at);
        if (h < 0)
            continue; /* not encodable as is (e.g. a header the strip kept) */
        at += (size_t)h;
        back[kept].type = ref[i].type;
        back[kept].len = ref[i].len;
        back[kept].off = at;
        memcpy(enc + at, data + ref[i].off, ref[i].len);
        at += ref[i].len;
        if (fc.kind == TT_FRAME_DELIMITER) {
            const char *t = fc.strip_cr ? "\r\n" : (const char *)fc.delim;
            size_t tl = fc.strip_cr ? 2 : fc.dlen;
            memcpy(enc + at, t, tl);
            at += tl;
        }
        kept++;
    }
    /* Only codecs whose encoder output decodes to exactly the message: length
     * fields that strip their whole header, varints, fixed; delimiters when
     * the message cannot contain the delimiter (decoded ones never do). */
    bool exact = fc.kind != TT_FRAME_LENGTH || (fc.strip == fc.hdr_end);
    if (exact) {
        memset(&part, 0, sizeof(part));
        part.stream = enc;
        part.max = fc.max;
        part.ref = back;
        part.nref = kept;
        FZ_CHECK(fz_feed(&fc, enc, at, sizes, nsizes, &part) == 0);
        FZ_CHECK(part.n == kept);
    }
    free(back);
    free(enc);
    return err_whole;
}

/* Split the fuzzer's input into the header bytes and the stream. */
#define FZ_HDR 10

#endif
