/* libFuzzer target: fixed-size frames (TT_FRAME_FIXED) and, through the same
 * bytes, the custom decoder driven by a netstring parser ("5:hello,").
 * Invariants: fuzz_common.h; fixed frames must number exactly size / N. */
#include "fuzz_common.h"

/* A strict netstring decoder, as a user would write one for TT_FRAME_CUSTOM. */
static ssize_t netstring(const void *buf, size_t len, size_t *skip, void *arg)
{
    const char *p = buf;
    size_t n = 0, i;
    (void)arg;
    for (i = 0; i < len && p[i] != ':'; i++) {
        if (p[i] < '0' || p[i] > '9' || i >= 6)
            return TT_EPROTOCOL;
        n = n * 10 + (size_t)(p[i] - '0');
    }
    if (i == len)
        return 0;
    if (i == 0)
        return TT_EPROTOCOL;
    if (len - i - 1 < n + 1)
        return 0;
    if (p[i + 1 + n] != ',')
        return TT_EPROTOCOL;
    *skip = i + 1;
    return (ssize_t)(i + 2 + n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FZ_HDR)
        return 0;
    const uint8_t *s = data + FZ_HDR;
    size_t n = size - FZ_HDR, got;
    if (data[0] & 1) {
        tt_frame_opts_t o = tt_frame_custom(netstring, NULL, data[1] == 255 ? 0 : data[1]);
        fz_check(&o, data + 2, FZ_HDR - 2, s, n, &got);
        return 0;
    }
    size_t fixed = (size_t)data[1] + 1;
    tt_frame_opts_t o = tt_frame_fixed(fixed);
    int err = fz_check(&o, data + 2, FZ_HDR - 2, s, n, &got);
    FZ_CHECK(err == 0);
    FZ_CHECK(got == n / fixed);
    return 0;
}
