/* Admission control: CIDR allow/deny lists, an accept rate limit, per-address
 * connection counts, and the loop's audit hook. Pure logic plus the hook call. */
#ifndef TT_ADMISSION_H
#define TT_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tether.h"

typedef struct tt__cidr {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t bits;
    uint8_t addr[16];
} tt__cidr_t;

/* "10.0.0.0/8", "::1/128", "192.168.1.7" (a host). 0 or -EINVAL. */
int tt__cidr_parse(const char *text, tt__cidr_t *out);
/* Does `a` fall in the block? An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a
 * dual-stack listener sees) matches IPv4 blocks. */
bool tt__cidr_match(const tt__cidr_t *c, const tt_addr_t *a);

typedef struct tt__acl {
    tt__cidr_t *allow, *deny;
    size_t nallow, ndeny;
} tt__acl_t;

/* 0 if admitted; -EACCES if denied, or if an allow list exists and misses. */
int tt__acl_check(const tt__acl_t *acl, const tt_addr_t *a);
int tt__acl_add(tt__acl_t *acl, bool allow, const char *cidr);
void tt__acl_free(tt__acl_t *acl);

/* Token bucket in milli-tokens so integer math stays exact. */
typedef struct tt__bucket {
    uint64_t mtokens, last_ms;
    uint32_t rate, burst;
} tt__bucket_t;

void tt__bucket_init(tt__bucket_t *b, uint32_t rate, uint32_t burst, uint64_t now);
bool tt__bucket_take(tt__bucket_t *b, uint64_t now);
/* Is a token there (refilled to `now`)? Spends nothing. */
bool tt__bucket_ready(tt__bucket_t *b, uint64_t now);
/* Milliseconds until the next token (0 if one is available). */
uint64_t tt__bucket_wait(const tt__bucket_t *b, uint64_t now);

/* Live connections per peer address: open addressing, grows as needed. */
typedef struct tt__ipcount {
    struct tt__ipslot *slots;
    size_t cap, used;
} tt__ipcount_t;

/* Add one for `a` unless it is at `limit` already; returns the new count, 0 when
 * refused, -ENOMEM. */
long tt__ipcount_inc(tt__ipcount_t *t, const tt_addr_t *a, size_t limit);
void tt__ipcount_dec(tt__ipcount_t *t, const tt_addr_t *a);
/* The table's key for `a` (IPv4 as IPv4-mapped IPv6), and release by key: a
 * connection keeps the key it was counted under, so its release needs no socket. */
void tt__ipcount_key(const tt_addr_t *a, uint8_t key[16]);
void tt__ipcount_dec_key(tt__ipcount_t *t, const uint8_t key[16]);
size_t tt__ipcount_get(const tt__ipcount_t *t, const tt_addr_t *a);
void tt__ipcount_free(tt__ipcount_t *t);

#endif
