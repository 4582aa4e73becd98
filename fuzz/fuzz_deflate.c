/* permessage-deflate inflation (src/proto/ws_deflate.c) on any bytes, as a hostile
 * peer would send them. Byte 0 sets the size limit (1 KiB steps), byte 1 the size
 * of the pieces the message arrives in; the rest is the compressed message.
 *  1. The output never passes the limit by more than one byte, and memory stays
 *     within twice the limit plus one step, however the input inflates.
 *  2. Fed in pieces, the verdict and (when it succeeds) the bytes are those of the
 *     whole message fed at once.
 *  3. What inflates without error re-deflates and inflates back to the same. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "proto/ws_deflate.h"
#include "proto/ws_frame.h"

static int run(const uint8_t *in, size_t n, size_t piece, size_t max, tt__zbuf_t *out)
{
    z_stream z;
    int r = 0;

    FZ_CHECK(tt__ws_inflate_init(&z) == 0);
    for (size_t off = 0;;) {
        size_t k = n - off < piece ? n - off : piece;
        bool fin = off + k >= n;
        r = tt__ws_inflate_feed(&z, in + off, k, fin, max, true, out);
        FZ_CHECK(r == 0 || r == -TT__WS_TOO_BIG || r == -TT__WS_INVALID_DATA);
        FZ_CHECK(out->len <= max + 1);
        FZ_CHECK(out->cap <= 2 * max + 16384 + 256);
        off += k;
        if (r != 0 || fin)
            break;
    }
    tt__ws_inflate_end(&z);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tt__zbuf_t whole = {0}, pieces = {0};
    size_t max, piece;
    int a, b;

    if (size < 2)
        return 0;
    max = ((size_t)data[0] + 1) * 1024;
    piece = (size_t)data[1] + 1;
    a = run(data + 2, size - 2, size, max, &whole);
    b = run(data + 2, size - 2, piece, max, &pieces);
    FZ_CHECK(a == b || (a != 0 && b != 0)); /* which error may differ by where it is seen */
    if (a == 0) {
        FZ_CHECK(whole.len == pieces.len && (whole.len == 0 || memcmp(whole.p, pieces.p, whole.len) == 0));
        z_stream d;
        tt__zbuf_t wire = {0}, back = {0};
        FZ_CHECK(tt__ws_deflate_init(&d, 15) == 0);
        FZ_CHECK(tt__ws_deflate_msg(&d, whole.p, whole.len, true, &wire) == 0);
        tt__ws_deflate_end(&d);
        FZ_CHECK(run(wire.p, wire.len, wire.len + 1, max, &back) == 0);
        FZ_CHECK(back.len == whole.len && (whole.len == 0 || memcmp(back.p, whole.p, whole.len) == 0));
        free(wire.p);
        free(back.p);
    }
    free(whole.p);
    free(pieces.p);
    return 0;
}
