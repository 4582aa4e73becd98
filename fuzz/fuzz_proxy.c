/* The PROXY protocol header parser (src/proto/proxy.c) on any bytes. Invariants:
 *  1. The result is a length (> 0), 0 (more needed) or TT_EPROTOCOL with a reason.
 *  2. A header is at most 107 bytes (v1) or TT__PROXY_V2_MAX (v2), lies inside the
 *     input, and its TLV block lies inside it; every shorter prefix waits, and the
 *     header alone parses the same.
 *  3. A wait never comes past the limits: at 107 (v1) or 2048 (v2) bytes it is
 *     decided.
 *  4. A refusal stays a refusal or a wait on every prefix: no verdict flips.
 *  5. The addresses of a header, built again by tt__proxy_build, parse the same. */
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "proto/proxy.h"

static bool same_addr(const tt_addr_t *a, const tt_addr_t *b)
{
    return a->len == b->len && memcmp(&a->u, &b->u, a->len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tt__proxy_hdr_t h, again;
    const char *why;
    ssize_t r = tt__proxy_parse(data, size, &h, &why);

    FZ_CHECK(r >= 0 || r == TT_EPROTOCOL);
    if (r < 0)
        FZ_CHECK(why != NULL && why[0] != '\0');
    if (r > 0) {
        size_t len = (size_t)r;
        FZ_CHECK(len <= size && len == h.len);
        FZ_CHECK(h.version == 1 || h.version == 2);
        FZ_CHECK(len <= (h.version == 1 ? TT__PROXY_V1_MAX : TT__PROXY_V2_MAX));
        FZ_CHECK(h.tlv_off + h.tlv_len <= len);
        FZ_CHECK(tt__proxy_parse(data, len, &again, &why) == r);
        for (size_t cut = 0; cut < len; cut += 1 + cut / 16)
            FZ_CHECK(tt__proxy_parse(data, cut, &again, &why) == 0);
        if (h.has_addr) {
            int fam = h.src.u.sa.sa_family;
            FZ_CHECK((fam == AF_INET || fam == AF_INET6) && h.dst.u.sa.sa_family == fam);
            uint8_t buf[TT__PROXY_V1_MAX + 1];
            ssize_t n = tt__proxy_build(h.version, &h.src, &h.dst, buf, sizeof(buf));
            FZ_CHECK(n > 0);
            FZ_CHECK(tt__proxy_parse(buf, (size_t)n, &again, &why) == n);
            FZ_CHECK(same_addr(&again.src, &h.src) && same_addr(&again.dst, &h.dst));
        }
    } else if (r == 0) {
        int v = tt__proxy_detect(data, size);
        FZ_CHECK(v != TT__PROXY_NONE);
        FZ_CHECK(size < (v == 1 ? TT__PROXY_V1_MAX : TT__PROXY_V2_MAX));
    } else {
        for (size_t cut = 0; cut < size; cut += 1 + cut / 16) {
            ssize_t p = tt__proxy_parse(data, cut, &again, &why);
            FZ_CHECK(p == 0 || p == TT_EPROTOCOL);
        }
    }
    return 0;
}
