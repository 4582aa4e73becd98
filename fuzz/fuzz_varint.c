/* libFuzzer target: protobuf varint length prefix (TT_FRAME_VARINT), with and
 * without control frames. Invariants: fuzz_common.h; plus, without control
 * frames, the count and the error must match a naive varint reader. */
#include "fuzz_common.h"

static int naive(const uint8_t *d, size_t n, size_t max, size_t *count)
{
    size_t at = 0;
    *count = 0;
    for (;;) {
        uint64_t v = 0;
        size_t i = 0;
        bool done = false;
        while (at + i < n) {
            uint8_t b = d[at + i];
            if (i == 9 && (b & 0x7f) > 1)
                return TT_EPROTOCOL;
            v |= (uint64_t)(b & 0x7f) << (7 * i);
            i++;
            if (!(b & 0x80)) {
                done = true;
                break;
            }
            if (i == 10)
                return TT_EPROTOCOL;
            if (v > max)
                return TT_EFRAMESIZE; /* the value can only grow */
        }
        if (!done)
            return 0;
        if (v > max)
            return TT_EFRAMESIZE;
        if (n - at - i < v)
            return 0;
        at += i + (size_t)v;
        (*count)++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FZ_HDR)
        return 0;
    size_t max = data[1] == 255 ? 0 : (size_t)data[1] * 8;
    tt_frame_opts_t o = tt_frame_varint(max);
    o.control = data[0] & 1;
    size_t n;
    int err = fz_check(&o, data + 2, FZ_HDR - 2, data + FZ_HDR, size - FZ_HDR, &n);
    if (!o.control) {
        size_t want;
        size_t lim = max == 0 ? TT_FRAME_DEFAULT_MAX : max;
        int werr = naive(data + FZ_HDR, size - FZ_HDR, lim, &want);
        FZ_CHECK(err == werr);
        FZ_CHECK(n == want);
    }
    return 0;
}
