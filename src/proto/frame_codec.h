/* Pure framing codecs: bytes <-> messages, with no loop, socket or connection.
 *
 * Two levels. tt__codec_decode() looks at one contiguous buffer and says what its
 * first frame is (or that more bytes are needed, or that the input is malformed).
 * tt__fstream_feed() is the stream decoder built on it: it takes the stream in
 * whatever pieces the network delivers, hands out whole frames in place from each
 * piece, and copies only a partial frame into its own buffer, which is released
 * when it empties. The fuzz targets and unit tests drive both directly; frame.c
 * plugs the stream decoder into a connection. */
#ifndef TT_FRAME_CODEC_H
#define TT_FRAME_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tether.h"

/* A compiled, validated copy of tt_frame_opts_t. Self-contained: the delimiter
 * bytes are copied in. */
typedef struct tt__codec {
    uint8_t kind;      /* tt_frame_kind_t */
    uint8_t len_off;   /* LENGTH: bytes before the length field */
    uint8_t len_size;  /* LENGTH: 1, 2, 4 or 8 */
    uint8_t hdr_end;   /* LENGTH: len_off + len_size; VARINT: 0 (variable) */
    bool little_endian;
    bool control;      /* LENGTH/VARINT: reserved field values are ping/pong */
    bool strip_cr;     /* DELIMITER "\n": also drop one '\r' before it */
    uint8_t dlen;      /* DELIMITER: delimiter length */
    int32_t adjust;    /* LENGTH: added to the field value */
    uint32_t strip;    /* LENGTH: bytes dropped from the front of each frame */
    size_t max;        /* largest message delivered */
    size_t fixed;      /* FIXED: the frame size */
    size_t cap;        /* most bytes one partial frame can need to hold */
    tt_frame_decode_cb fn; /* CUSTOM */
    void *arg;
    uint32_t asm_ms;   /* partial-frame deadline (frame.c); UINT32_MAX: none */
    size_t budget;     /* server-wide partial-frame memory (frame.c); SIZE_MAX: none */
    unsigned char delim[TT_FRAME_DELIM_MAX];
} tt__codec_t;

/* Validate `o` and compile it into `fc`. Returns 0 or -EINVAL. */
int tt__codec_init(tt__codec_t *fc, const tt_frame_opts_t *o);

/* What the front of a buffer holds. */
enum {
    TT__FR_NEED = 0, /* an incomplete frame */
    TT__FR_MSG = 1,  /* a message */
    TT__FR_PING = 2, /* control frame: ping */
    TT__FR_PONG = 3  /* control frame: pong */
};

typedef struct tt__frame {
    size_t frame_len; /* bytes of the stream the frame takes */
    size_t msg_off;   /* the message: buf[msg_off, msg_off + msg_len) */
    size_t msg_len;
    size_t need;      /* TT__FR_NEED: total bytes known to be needed (> len) */
} tt__frame_t;

/* Decode the first frame of buf[0, len). `scan_from` is how many leading bytes
 * are already known not to end a delimiter (0 when unsure): the delimiter search
 * resumes there, so feeding a long line byte by byte stays linear.
 * Returns TT__FR_*, TT_EFRAMESIZE (the frame is, or must become, larger than the
 * limit: decided as soon as the header or the bytes seen prove it) or TT_EPROTOCOL
 * (malformed header, or the custom decoder said so). */
int tt__codec_decode(const tt__codec_t *fc, const char *buf, size_t len, size_t scan_from,
                     tt__frame_t *out);

/* DELIMITER: `p` (plen bytes, holding no whole delimiter) is continued by `buf`.
 * Returns how many bytes of buf complete the first delimiter, or n if none does. */
size_t tt__codec_delim_take(const tt__codec_t *fc, const char *p, size_t plen, const char *buf,
                            size_t n);

/* Longest header the encoder writes (8-byte field after a 255-byte offset is
 * refused by init; varint: 10 bytes). */
#define TT__HDR_MAX 64

/* Encode the bytes that go before a message of `len` bytes (`type` TT__FR_MSG,
 * PING or PONG) into hdr. Delimiter and fixed frames have no header (0). Returns
 * the header length, -EMSGSIZE (len over the limit, not representable, or not the
 * fixed size) or -ENOTSUP (a control frame the codec does not have). */
int tt__codec_header(const tt__codec_t *fc, int type, size_t len, unsigned char *hdr);

/* Stream decoder: the partial-frame buffer and where the delimiter scan stopped. */
typedef struct tt__fstream {
    tt__codec_t codec;
    char *buf;  /* partial frame; NULL while empty */
    size_t len; /* bytes held */
    size_t cap; /* bytes allocated: grows geometrically, never beyond codec.cap */
    /* While a frame is emitted: how many bytes of the input being fed follow it
     * (0: it was the last of this read, or all that is left is a partial frame
     * already held). */
    size_t after;
} tt__fstream_t;

/* Called for each frame: `msg` is lent until it returns (it points into the input
 * or the partial buffer). Return 0 to go on, non-zero to stop decoding (the
 * connection closed, or its framing changed). */
typedef int (*tt__frame_emit_cb)(void *ctx, int type, const char *msg, size_t len,
                                 const tt__frame_t *fr);

void tt__fstream_init(tt__fstream_t *s, const tt__codec_t *fc);
/* Decode `n` bytes that continue the stream. Whole frames found in `buf` are
 * emitted in place; a partial frame at the end is copied into the stream's
 * buffer. Returns the bytes of buf consumed (n unless emit asked to stop: the
 * rest, buf + result, was not looked at and the partial buffer is empty then),
 * TT_EFRAMESIZE / TT_EPROTOCOL (the stream is broken; stop feeding it), or
 * -ENOMEM. */
ssize_t tt__fstream_feed(tt__fstream_t *s, const char *buf, size_t n, tt__frame_emit_cb emit,
                         void *ctx);
/* Release the partial buffer. */
void tt__fstream_free(tt__fstream_t *s);

#endif
