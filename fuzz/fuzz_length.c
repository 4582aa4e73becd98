/* libFuzzer target: length-field decoder (TT_FRAME_LENGTH), Netty's parameter
 * space: field width, byte order, offset, adjustment, strip, control frames.
 * Invariants: fuzz_common.h; plus, for the plain big/little-endian presets, the
 * frame count and the error must match a naive reading of the stream. */
#include "fuzz_common.h"

static size_t limit_of(uint8_t b)
{
    return b == 255 ? 0 : (size_t)b * 8; /* small limits hit often; 255: default */
}

/* Naive reading of a preset stream: header, then body, until the bytes run out. */
static int naive(const uint8_t *d, size_t n, unsigned width, bool le, size_t max, size_t *count)
{
    size_t at = 0;
    *count = 0;
    if (max == 0)
        max = TT_FRAME_DEFAULT_MAX;
    while (n - at >= width) {
        uint64_t v = 0;
        for (unsigned i = 0; i < width; i++)
            v |= (uint64_t)d[at + i] << (8 * (le ? i : width - 1 - i));
        if (v > max)
            return TT_EFRAMESIZE;
        if (n - at - width < v)
            return 0;
        at += width + (size_t)v;
        (*count)++;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t widths[] = {1, 2, 4, 8};
    if (size < FZ_HDR)
        return 0;
    uint8_t sel = data[0];
    uint8_t width = widths[sel & 3];
    bool le = (sel >> 2) & 1, control = (sel >> 3) & 1;
    tt_frame_opts_t o = tt_frame_length(width, le, limit_of(data[1]));
    o.control = control;
    switch ((sel >> 4) & 3) {
    case 0: /* the presets: body length, header stripped */
        break;
    case 1: /* the length counts the whole frame; nothing stripped */
        o.length.adjust = -(int32_t)width;
        o.length.strip = 0;
        break;
    case 2: /* HDR1 LEN HDR2 BODY: offset 1, one uncounted byte after the field */
        o.length.offset = 1;
        o.length.adjust = 1;
        o.length.strip = (uint32_t)width + 2;
        break;
    default: /* offset 2, length counts the whole frame, header stripped */
        o.length.offset = 2;
        o.length.adjust = -(int32_t)(width + 2);
        o.length.strip = (uint32_t)width + 2;
        break;
    }
    if (sel & 0x40)
        o.length.strip = 0; /* keep the header in the message */
    size_t n;
    int err = fz_check(&o, data + 2, FZ_HDR - 2, data + FZ_HDR, size - FZ_HDR, &n);
    if (((sel >> 4) & 3) == 0 && !control && !(sel & 0x40)) {
        size_t want;
        int werr = naive(data + FZ_HDR, size - FZ_HDR, width, le, limit_of(data[1]), &want);
        FZ_CHECK(err == werr);
        FZ_CHECK(n == want);
    }
    return 0;
}
