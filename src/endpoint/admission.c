/* Admission control. Everything here is small and synchronous: it runs on the
 * accept path, so no allocation happens per accepted client except when the
 * per-address table grows. */
#include "endpoint/admission.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"

/* ---- CIDR ------------------------------------------------------------------- */

int tt__cidr_parse(const char *text, tt__cidr_t *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    const char *slash;
    long bits;
    tt__cidr_t c;

    if (text == NULL || out == NULL || strlen(text) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, text);
    memset(&c, 0, sizeof(c));
    slash = strchr(buf, '/');
    if (slash != NULL)
        buf[slash - buf] = '\0';
    if (inet_pton(AF_INET, buf, c.addr) == 1) {
        c.family = AF_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, buf, c.addr) == 1) {
        c.family = AF_INET6;
        bits = 128;
    } else {
        return -EINVAL;
    }
    if (slash != NULL) {
        char *end;
        const char *num = text + (slash - buf) + 1;
        long b = strtol(num, &end, 10);
        if (*num == '\0' || *end != '\0' || b < 0 || b > bits)
            return -EINVAL;
        bits = b;
    }
    c.bits = (uint8_t)bits;
    *out = c;
    return 0;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool tt__cidr_match(const tt__cidr_t *c, const tt_addr_t *a)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (a->u.sa.sa_family == AF_INET) {
        if (c->family != AF_INET)
            return false;
        return prefix_equal(c->addr, (const uint8_t *)&a->u.in4.sin_addr, c->bits);
    }
    if (a->u.sa.sa_family != AF_INET6)
        return false;
    const uint8_t *b = a->u.in6.sin6_addr.s6_addr;
    if (c->family == AF_INET6)
        return prefix_equal(c->addr, b, c->bits);
    if (memcmp(b, v4mapped, sizeof(v4mapped)) == 0)
        return prefix_equal(c->addr, b + 12, c->bits);
    return false;
}

int tt__acl_add(tt__acl_t *acl, bool allow, const char *cidr)
{
    tt__cidr_t c, *list;
    size_t *n = allow ? &acl->nallow : &acl->ndeny;
    int err = tt__cidr_parse(cidr, &c);

    if (err < 0)
        return err;
    list = realloc(allow ? acl->allow : acl->deny, (*n + 1) * sizeof(*list));
    if (list == NULL)
        return -ENOMEM;
    list[(*n)++] = c;
    if (allow)
        acl->allow = list;
    else
        acl->deny = list;
    return 0;
}

int tt__acl_check(const tt__acl_t *acl, const tt_addr_t *a)
{
    for (size_t i = 0; i < acl->ndeny; i++)
        if (tt__cidr_match(&acl->deny[i], a))
            return -EACCES;
    if (acl->nallow == 0)
        return 0;
    for (size_t i = 0; i < acl->nallow; i++)
        if (tt__cidr_match(&acl->allow[i], a))
            return 0;
    return -EACCES;
}

void tt__acl_free(tt__acl_t *acl)
{
    free(acl->allow);
    free(acl->deny);
    memset(acl, 0, sizeof(*acl));
}

/* ---- token bucket ------------------------------------------------------------ */

void tt__bucket_init(tt__bucket_t *b, uint32_t rate, uint32_t burst, uint64_t now)
{
    b->rate = rate;
    b->burst = burst != 0 ? burst : rate;
    b->mtokens = (uint64_t)b->burst * 1000;
    b->last_ms = now;
}

static void refill(tt__bucket_t *b, uint64_t now)
{
    if (now > b->last_ms) {
        /* rate tokens per 1000 ms = rate milli-tokens per ms */
        uint64_t add = (now - b->last_ms) * b->rate;
        uint64_t cap = (uint64_t)b->burst * 1000;
        b->mtokens = b->mtokens + add > cap ? cap : b->mtokens + add;
        b->last_ms = now;
    }
}

bool tt__bucket_take(tt__bucket_t *b, uint64_t now)
{
    if (b->rate == 0)
        return true;
    refill(b, now);
    if (b->mtokens < 1000)
        return false;
    b->mtokens -= 1000;
    return true;
}

bool tt__bucket_ready(tt__bucket_t *b, uint64_t now)
{
    if (b->rate == 0)
        return true;
    refill(b, now);
    return b->mtokens >= 1000;
}

uint64_t tt__bucket_wait(const tt__bucket_t *b, uint64_t now)
{
    tt__bucket_t copy = *b;
    if (b->rate == 0)
        return 0;
    refill(&copy, now);
    if (copy.mtokens >= 1000)
        return 0;
    return (1000 - copy.mtokens + copy.rate - 1) / copy.rate;
}

/* ---- per-address counts --------------------------------------------------------- */

struct tt__ipslot {
    uint8_t key[16]; /* IPv4 stored as IPv4-mapped IPv6, so both families share keys */
    uint32_t count;  /* 0: empty; tombstones are not needed (see dec) */
};

void tt__ipcount_key(const tt_addr_t *a, uint8_t key[16])
{
    if (a->u.sa.sa_family == AF_INET) {
        memset(key, 0, 10);
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &a->u.in4.sin_addr, 4);
    } else {
        memcpy(key, a->u.in6.sin6_addr.s6_addr, 16);
    }
}

static size_t hash_key(const uint8_t key[16])
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return (size_t)h;
}

static struct tt__ipslot *find(const tt__ipcount_t *t, const uint8_t key[16], bool for_insert)
{
    if (t->cap == 0)
        return NULL;
    for (size_t i = hash_key(key) & (t->cap - 1), n = 0; n < t->cap; i = (i + 1) & (t->cap - 1), n++) {
        struct tt__ipslot *s = &t->slots[i];
        if (s->count == 0)
            return for_insert ? s : NULL;
        if (memcmp(s->key, key, 16) == 0)
            return s;
    }
    return NULL;
}

static int grow(tt__ipcount_t *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    tt__ipcount_t bigger = {calloc(cap, sizeof(struct tt__ipslot)), cap, 0};
    if (bigger.slots == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].count == 0)
            continue;
        struct tt__ipslot *s = find(&bigger, t->slots[i].key, true);
        *s = t->slots[i];
        bigger.used++;
    }
    free(t->slots);
    *t = bigger;
    return 0;
}

long tt__ipcount_inc(tt__ipcount_t *t, const tt_addr_t *a, size_t limit)
{
    uint8_t key[16];
    struct tt__ipslot *s;

    tt__ipcount_key(a, key);
    s = find(t, key, false);
    if (s == NULL) {
        if ((t->used + 1) * 2 > t->cap && grow(t) < 0) /* keep the load under 1/2 */
            return -ENOMEM;
        s = find(t, key, true);
        memcpy(s->key, key, 16);
        s->count = 0;
        t->used++;
    }
    if (limit != 0 && s->count >= limit) {
        if (s->count == 0)
            t->used--;
        return 0;
    }
    return ++s->count;
}

void tt__ipcount_dec(tt__ipcount_t *t, const tt_addr_t *a)
{
    uint8_t key[16];

    tt__ipcount_key(a, key);
    tt__ipcount_dec_key(t, key);
}

void tt__ipcount_dec_key(tt__ipcount_t *t, const uint8_t key[16])
{
    struct tt__ipslot *s = find(t, key, false);
    if (s == NULL || --s->count > 0)
        return;
    /* Emptied: re-insert the rest of its probe run so lookups never stop early at
     * the hole (deletion without tombstones, Knuth 6.4 algorithm R in spirit). */
    t->used--;
    size_t i = (size_t)(s - t->slots);
    for (size_t j = (i + 1) & (t->cap - 1); t->slots[j].count != 0; j = (j + 1) & (t->cap - 1)) {
        struct tt__ipslot moved = t->slots[j];
        t->slots[j].count = 0;
        struct tt__ipslot *dst = find(t, moved.key, true);
        *dst = moved;
    }
}

size_t tt__ipcount_get(const tt__ipcount_t *t, const tt_addr_t *a)
{
    uint8_t key[16];
    tt__ipcount_key(a, key);
    struct tt__ipslot *s = find(t, key, false);
    return s != NULL ? s->count : 0;
}

void tt__ipcount_free(tt__ipcount_t *t)
{
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* ---- audit hook ----------------------------------------------------------------- */
