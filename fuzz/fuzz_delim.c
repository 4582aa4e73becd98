/* libFuzzer target: delimiter decoder (TT_FRAME_DELIMITER): "\n", strict and
 * lenient "\r\n", and a delimiter of 1..8 bytes taken from the input (so
 * self-overlapping ones like "aab" come up). Invariants: fuzz_common.h; plus the
 * count and error must match a naive memmem reading of the stream. */
#include "fuzz_common.h"

static int naive(const uint8_t *d, size_t n, const char *delim, size_t dlen, bool strip_cr,
                 size_t max, size_t *count)
{
    size_t at = 0;
    *count = 0;
    for (;;) {
        const uint8_t *p = memmem(d + at, n - at, delim, dlen);
        if (p == NULL) {
            /* The tail: over the limit once the bytes that cannot be part of
             * a delimiter (or a dropped '\r') pass it. */
            size_t rest = n - at, tail = 0;
            if (strip_cr)
                tail = rest > 0 && d[n - 1] == '\r';
            else
                for (size_t k = rest < dlen ? rest : dlen - 1; k > 0; k--)
                    if (memcmp(d + n - k, delim, k) == 0) {
                        tail = k;
                        break;
                    }
            return rest - tail > max ? TT_EFRAMESIZE : 0;
        }
        size_t m = (size_t)(p - (d + at));
        if (strip_cr && m > 0 && p[-1] == '\r')
            m--;
        if (m > max)
            return TT_EFRAMESIZE;
        at = (size_t)(p - d) + dlen;
        (*count)++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FZ_HDR)
        return 0;
    size_t max = data[1] == 255 ? 0 : (size_t)data[1];
    const uint8_t *s = data + FZ_HDR;
    size_t n = size - FZ_HDR;
    tt_frame_opts_t o;
    const char *nd; /* the delimiter the naive reader looks for */
    size_t ndl;
    bool strip_cr = false;
    switch (data[0] & 3) {
    case 0:
        o = tt_frame_line(max);
        nd = "\n", ndl = 1;
        break;
    case 1:
        o = tt_frame_crlf(false, max);
        nd = "\r\n", ndl = 2;
        break;
    case 2:
        o = tt_frame_crlf(true, max);
        nd = "\n", ndl = 1, strip_cr = true;
        break;
    default: {
        size_t dl = ((data[0] >> 2) & 7) + 1;
        if (n < dl)
            return 0;
        o = tt_frame_delimiter(s, dl, max);
        nd = (const char *)s, ndl = dl;
        s += dl, n -= dl;
        break;
    }
    }
    size_t got, want;
    int err = fz_check(&o, data + 2, FZ_HDR - 2, s, n, &got);
    int werr = naive(s, n, nd, ndl, strip_cr, max == 0 ? TT_FRAME_DEFAULT_MAX : max, &want);
    FZ_CHECK(err == werr);
    FZ_CHECK(got == want);
    return 0;
}
