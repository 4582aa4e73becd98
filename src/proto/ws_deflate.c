/* permessage-deflate with zlib (see ws_deflate.h). */
#include "proto/ws_deflate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ws_frame.h"

/* Output grows by at most this much per zlib call: the overshoot past a limit. */
#define STEP 16384

static const uint8_t TAIL[4] = {0x00, 0x00, 0xff, 0xff};

int tt__ws_deflate_init(z_stream *z, int bits)
{
    memset(z, 0, sizeof(*z));
    /* Negative window bits: raw DEFLATE, no zlib header (RFC 7692 7.2.1). memLevel
     * 8 is zlib's default; level 6 its default trade-off. */
    return deflateInit2(z, 6, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) == Z_OK ? 0 : -ENOMEM;
}

int tt__ws_inflate_init(z_stream *z)
{
    memset(z, 0, sizeof(*z));
    return inflateInit2(z, -15) == Z_OK ? 0 : -ENOMEM;
}

void tt__ws_deflate_end(z_stream *z) { deflateEnd(z); }

void tt__ws_inflate_end(z_stream *z) { inflateEnd(z); }

/* Room for `more` bytes past len, growing by doubling. */
static int reserve(tt__zbuf_t *b, size_t more)
{
    size_t want = b->len + more, cap = b->cap ? b->cap : 256;
    uint8_t *p;

    if (want <= b->cap)
        return 0;
    while (cap < want)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tt__ws_deflate_msg(z_stream *z, const uint8_t *in, size_t n, bool reset, tt__zbuf_t *out)
{
    int err, zr;

    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)n;
    /* Z_SYNC_FLUSH ends the message on a byte boundary with an empty stored block
     * (00 00 ff ff), which the wire form leaves off. Loop until zlib has room to
     * spare after flushing: then the flush is complete. */
    do {
        if ((err = reserve(out, STEP)) < 0)
            return err;
        z->next_out = out->p + out->len;
        z->avail_out = (uInt)(out->cap - out->len);
        zr = deflate(z, Z_SYNC_FLUSH);
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return -EIO;
        out->len = out->cap - z->avail_out;
    } while (z->avail_out == 0 || z->avail_in > 0);
    if (out->len < 4 || memcmp(out->p + out->len - 4, TAIL, 4) != 0)
        return -EIO;
    out->len -= 4;
    if (reset && deflateReset(z) != Z_OK)
        return -EIO;
    return 0;
}

static int inflate_some(z_stream *z, const uint8_t *in, size_t n, size_t max, size_t base,
                        tt__zbuf_t *out)
{
    int err, zr;

    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)n;
    for (;;) {
        /* Never let one call write past the limit by more than a byte: passing
         * it is then seen at once, before zlib fills more memory, and the buffer
         * never grows for room the limit would not let it use. */
        size_t room = STEP;
        if (max > 0 && room > max - (out->len - base) + 1)
            room = max - (out->len - base) + 1;
        if ((err = reserve(out, room)) < 0)
            return err;
        z->next_out = out->p + out->len;
        z->avail_out = (uInt)room;
        zr = inflate(z, Z_SYNC_FLUSH);
        out->len += room - z->avail_out;
        if (max > 0 && out->len - base > max)
            return -TT__WS_TOO_BIG;
        if (zr == Z_STREAM_END) {
            /* A block with BFINAL set: the sender starts afresh (RFC 7692
             * 7.2.3.3); what follows, our own tail included, is a new stream. */
            if (inflateReset(z) != Z_OK)
                return -ENOMEM;
        } else if (zr != Z_OK && zr != Z_BUF_ERROR) {
            return zr == Z_MEM_ERROR ? -ENOMEM : -TT__WS_INVALID_DATA;
        }
        /* Done with this piece once the input is used up and zlib had room to
         * spare (so nothing is left waiting inside it); or no progress is
         * possible without more input. */
        if ((z->avail_in == 0 && z->avail_out > 0) || (zr == Z_BUF_ERROR && z->avail_out > 0))
            return 0;
    }
}

int tt__ws_inflate_feed(z_stream *z, const uint8_t *in, size_t n, bool fin, size_t max, bool reset,
                        tt__zbuf_t *out)
{
    size_t base = 0; /* `out` holds this message alone */
    int err = inflate_some(z, in, n, max, base, out);

    if (err == 0 && fin)
        err = inflate_some(z, TAIL, sizeof(TAIL), max, base, out);
    if (fin && reset && inflateReset(z) != Z_OK && err == 0)
        err = -ENOMEM;
    return err;
}
