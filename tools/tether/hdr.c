/* Log-linear histogram; see hdr.h for the bucket layout and its error bound. */
#include "hdr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Layout, with S = 2^sub_bits and H = S/2:
 *   value v < S:  bucket v (exact).
 *   value v >= S: m = floor(log2 v) >= sub_bits, shift = m - sub_bits + 1 >= 1 and
 *                 top = v >> shift, which keeps v's sub_bits leading bits, so
 *                 H <= top < S. Bucket S + (shift - 1) * H + (top - H).
 * Consecutive ranges join without a gap: v = S lands in bucket S. The largest shift
 * is 64 - sub_bits, hence S + (64 - sub_bits) * H buckets in all. */

size_t hdr_bucket_count(unsigned sub_bits)
{
    if (sub_bits < HDR_SUB_BITS_MIN || sub_bits > HDR_SUB_BITS_MAX)
        return 0;
    return ((size_t)1 << sub_bits) + (size_t)(64 - sub_bits) * ((size_t)1 << (sub_bits - 1));
}

size_t hdr_bucket_index(unsigned sub_bits, uint64_t value)
{
    uint64_t sub = (uint64_t)1 << sub_bits;
    uint64_t half = sub >> 1;
    unsigned m, shift;

    if (value < sub)
        return (size_t)value;
    m = 63u - (unsigned)__builtin_clzll(value);
    shift = m - sub_bits + 1;
    return (size_t)(sub + (uint64_t)(shift - 1) * half + ((value >> shift) - half));
}

uint64_t hdr_bucket_low(unsigned sub_bits, size_t index)
{
    uint64_t sub = (uint64_t)1 << sub_bits;
    uint64_t half = sub >> 1;
    uint64_t k, shift;

    if (index < sub)
        return index;
    k = index - sub;
    shift = k / half + 1;
    return (k % half + half) << shift;
}

uint64_t hdr_bucket_high(unsigned sub_bits, size_t index)
{
    uint64_t sub = (uint64_t)1 << sub_bits;
    uint64_t half = sub >> 1;
    uint64_t k, shift, top;

    if (index < sub)
        return index;
    k = index - sub;
    shift = k / half + 1;
    top = k % half + half;
    /* The last bucket ends at UINT64_MAX: (top + 1) << 64 - sub_bits wraps to 0. */
    return ((top + 1) << shift) - 1;
}

int hdr_init(hdr_hist_t *h, unsigned sub_bits)
{
    size_t n = hdr_bucket_count(sub_bits);

    if (h == NULL || n == 0)
        return -EINVAL;
    h->counts = calloc(n, sizeof(*h->counts));
    if (h->counts == NULL)
        return -ENOMEM;
    h->sub_bits = sub_bits;
    h->nbuckets = n;
    h->total = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->sum = 0;
    return 0;
}

void hdr_free(hdr_hist_t *h)
{
    if (h == NULL)
        return;
    free(h->counts);
    h->counts = NULL;
    h->nbuckets = 0;
}

void hdr_reset(hdr_hist_t *h)
{
    memset(h->counts, 0, h->nbuckets * sizeof(*h->counts));
    h->total = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->sum = 0;
}

void hdr_record_n(hdr_hist_t *h, uint64_t value, uint64_t n)
{
    if (n == 0)
        return;
    h->counts[hdr_bucket_index(h->sub_bits, value)] += n;
    h->total += n;
    h->sum += (double)value * (double)n;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

void hdr_record(hdr_hist_t *h, uint64_t value)
{
    hdr_record_n(h, value, 1);
}

int hdr_merge(hdr_hist_t *dst, const hdr_hist_t *src)
{
    if (dst == NULL || src == NULL || dst->sub_bits != src->sub_bits)
        return -EINVAL;
    for (size_t i = 0; i < src->nbuckets; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    return 0;
}

uint64_t hdr_percentile(const hdr_hist_t *h, double pct)
{
    uint64_t target, seen = 0;

    if (h->total == 0)
        return 0;
    if (!(pct > 0)) /* also catches NaN */
        return h->min;
    if (pct >= 100)
        return h->max;
    /* The rank of the value asked for, counted from 1; rounded up so that p50 of
     * {1, 2} is 1 and p99.9 of 1000 values is the 999th. */
    target = (uint64_t)((pct / 100.0) * (double)h->total);
    if ((double)target < (pct / 100.0) * (double)h->total)
        target++;
    if (target == 0)
        target = 1;
    for (size_t i = 0; i < h->nbuckets; i++) {
        seen += h->counts[i];
        if (seen >= target) {
            uint64_t v = hdr_bucket_high(h->sub_bits, i);

            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double hdr_mean(const hdr_hist_t *h)
{
    return h->total ? h->sum / (double)h->total : 0;
}
