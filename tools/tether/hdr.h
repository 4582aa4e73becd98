/* A small HDR-style histogram: log-linear buckets over the whole uint64_t range.
 *
 * Values below 2^sub_bits are counted exactly. Above that, every power-of-two range
 * [2^m, 2^(m+1)) is split into 2^(sub_bits-1) equal buckets, so any recorded value is
 * known to within a relative error of 2^-(sub_bits-1) (sub_bits 8: 0.78 %). Recording
 * is O(1) with no allocation; memory is (sub_bits + 2) * 2^(sub_bits-1) counters,
 * fixed at init (sub_bits 8: 59 KiB). Not thread-safe: keep one per thread and merge. */
#ifndef TT_TOOL_HDR_H
#define TT_TOOL_HDR_H

#include <stddef.h>
#include <stdint.h>

#define HDR_SUB_BITS_MIN 1
#define HDR_SUB_BITS_MAX 16

typedef struct hdr_hist {
    unsigned sub_bits;
    size_t nbuckets;
    uint64_t *counts; /* owned; freed by hdr_free() */
    uint64_t total;   /* number of values recorded */
    uint64_t min;     /* UINT64_MAX while empty */
    uint64_t max;     /* 0 while empty */
    double sum;       /* for the mean; a double cannot overflow here */
} hdr_hist_t;

/* Set up an empty histogram with 2^(sub_bits-1) buckets per power of two.
 * Returns 0, -EINVAL (sub_bits outside HDR_SUB_BITS_MIN..MAX), or -ENOMEM. */
int hdr_init(hdr_hist_t *h, unsigned sub_bits);
/* Release the counters; the struct may be hdr_init()ed again. NULL is a no-op. */
void hdr_free(hdr_hist_t *h);
/* Forget every recorded value, keeping the memory. */
void hdr_reset(hdr_hist_t *h);

/* Record `value` once, or `n` times. O(1). */
void hdr_record(hdr_hist_t *h, uint64_t value);
void hdr_record_n(hdr_hist_t *h, uint64_t value, uint64_t n);

/* Add every count of `src` to `dst`. Returns 0 or -EINVAL (different sub_bits). */
int hdr_merge(hdr_hist_t *dst, const hdr_hist_t *src);

/* The smallest value v such that at least `pct` percent of the recorded values are
 * <= v, reported as the highest value of v's bucket (never above the recorded max,
 * never below the min). pct is clamped to 0..100; 0 gives the min, 100 the max.
 * Returns 0 for an empty histogram. */
uint64_t hdr_percentile(const hdr_hist_t *h, double pct);
/* Mean of the recorded values (exact, not bucketed); 0 when empty. */
double hdr_mean(const hdr_hist_t *h);

/* Bucket arithmetic, exposed for tests: the bucket of a value, and the lowest and
 * highest value a bucket holds. hdr_bucket_low(b, hdr_bucket_index(b, v)) <= v <=
 * hdr_bucket_high(b, hdr_bucket_index(b, v)) for every v. */
size_t hdr_bucket_index(unsigned sub_bits, uint64_t value);
uint64_t hdr_bucket_low(unsigned sub_bits, size_t index);
uint64_t hdr_bucket_high(unsigned sub_bits, size_t index);
/* Number of buckets for sub_bits (0 if sub_bits is out of range). */
size_t hdr_bucket_count(unsigned sub_bits);

#endif /* TT_TOOL_HDR_H */
