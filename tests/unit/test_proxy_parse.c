/* The PROXY protocol header parser and builder (src/proto/proxy.c), on bytes. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "proto/proxy.h"

static ssize_t parse(const void *buf, size_t n, tt__proxy_hdr_t *h, const char **why)
{
    return tt__proxy_parse(buf, n, h, why);
}

static const char *fmt(const tt_addr_t *a)
{
    static char buf[4][TT_ADDR_STRLEN];
    static int i;
    i = (i + 1) % 4;
    tt_addr_format(a, buf[i], sizeof(buf[i]));
    return buf[i];
}

Test(proxy_parse, detect_by_first_bytes)
{
    cr_assert_eq(tt__proxy_detect((const uint8_t *)"", 0), TT__PROXY_MORE);
    cr_assert_eq(tt__proxy_detect((const uint8_t *)"PRO", 3), TT__PROXY_MORE);
    cr_assert_eq(tt__proxy_detect((const uint8_t *)"PROXY ", 6), 1);
    cr_assert_eq(tt__proxy_detect((const uint8_t *)"PROBE", 5), TT__PROXY_NONE);
    cr_assert_eq(tt__proxy_detect((const uint8_t *)"\r\n\r\n\0\r\n", 7), TT__PROXY_MORE);
    cr_assert_eq(tt__proxy_detect((const uint8_t *)"\r\n\r\n\0\r\nQUIT\n", 12), 2);
    cr_assert_eq(tt__proxy_detect((const uint8_t *)"\r\n\r\n\0\r\nQUIX\n", 12), TT__PROXY_NONE);
    cr_assert_eq(tt__proxy_detect((const uint8_t *)"GET /", 5), TT__PROXY_NONE);
}

Test(proxy_parse, v1_tcp4_and_what_follows_is_not_taken)
{
    const char *h = "PROXY TCP4 192.0.2.1 198.51.100.2 4321 443\r\nhello";
    tt__proxy_hdr_t out;
    const char *why;
    ssize_t r = parse(h, strlen(h), &out, &why);
    cr_assert_eq(r, (ssize_t)strlen(h) - 5);
    cr_assert_eq(out.version, 1);
    cr_assert(out.has_addr);
    cr_assert_str_eq(fmt(&out.src), "192.0.2.1:4321");
    cr_assert_str_eq(fmt(&out.dst), "198.51.100.2:443");
    /* Every shorter prefix waits for more. */
    for (size_t n = 0; n < (size_t)r; n++)
        cr_assert_eq(parse(h, n, &out, &why), 0, "prefix %zu", n);
}

Test(proxy_parse, v1_limits)
{
    char line[200];
    tt__proxy_hdr_t out;
    const char *why;
    /* "PROXY UNKNOWN " and filler up to exactly 107 bytes with the CRLF. */
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + 105, "\r\n", 2);
    cr_assert_eq(parse(line, 107, &out, &why), 107);
    cr_assert(!out.has_addr);
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + 106, "\r\n", 2);
    cr_assert_eq(parse(line, 108, &out, &why), TT_EPROTOCOL);
    cr_assert_str_eq(why, "v1 line too long");
    cr_assert_eq(parse(line, 107, &out, &why), TT_EPROTOCOL); /* known at byte 107 */
    cr_assert_eq(parse(line, 106, &out, &why), 0);
}

Test(proxy_parse, v1_refusals)
{
    static const struct {
        const char *h, *why;
    } cases[] = {
        {"PROXY TCP4 192.0.2.1 198.51.100.2 4321 443\n", "v1: bad character"},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 4321 443\rX", "v1: CR without LF"},
        {"PROXY TCP5 192.0.2.1 198.51.100.2 4321 443\r\n", "v1: unknown protocol"},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 4321\r\n", "v1: too few fields"},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 4321 443 9\r\n", "v1: too many fields"},
        {"PROXY TCP4 192.0.2.1  198.51.100.2 4321 443\r\n", "v1: empty field"},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n", "v1: bad port"},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 -1 443\r\n", "v1: bad port"},
        {"PROXY TCP4 ::1 198.51.100.2 1 443\r\n", "v1: bad address"},
        {"PROXY TCP6 192.0.2.1 ::1 1 443\r\n", "v1: bad address"},
        {"PROXY\tTCP4\r\n", "bad signature"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tt__proxy_hdr_t out;
        const char *why = NULL;
        cr_assert_eq(parse(cases[i].h, strlen(cases[i].h), &out, &why), TT_EPROTOCOL, "%s",
                     cases[i].h);
        cr_assert_str_eq(why, cases[i].why, "%s", cases[i].h);
    }
}

Test(proxy_parse, build_and_parse_round_trip)
{
    tt_addr_t s4, d4, s6, d6;
    uint8_t buf[TT__PROXY_V1_MAX + 1];
    tt__proxy_hdr_t out;
    const char *why;
    cr_assert_eq(tt_addr_parse_hostport(&s4, "10.1.2.3:5555"), 0);
    cr_assert_eq(tt_addr_parse_hostport(&d4, "10.0.0.1:80"), 0);
    cr_assert_eq(tt_addr_parse_hostport(&s6, "[2001:db8::ffff:1]:65535"), 0);
    cr_assert_eq(tt_addr_parse_hostport(&d6, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:0"), 0);
    for (int v = 1; v <= 2; v++) {
        ssize_t n = tt__proxy_build(v, &s4, &d4, buf, sizeof(buf));
        cr_assert_gt(n, 0);
        cr_assert_eq(parse(buf, (size_t)n, &out, &why), n);
        cr_assert_eq(out.version, v);
        cr_assert_str_eq(fmt(&out.src), "10.1.2.3:5555");
        cr_assert_str_eq(fmt(&out.dst), "10.0.0.1:80");
        n = tt__proxy_build(v, &s6, &d6, buf, sizeof(buf));
        cr_assert_gt(n, 0);
        cr_assert_leq(n, TT__PROXY_V1_MAX);
        cr_assert_eq(parse(buf, (size_t)n, &out, &why), n);
        cr_assert_str_eq(fmt(&out.src), "[2001:db8::ffff:1]:65535");
        cr_assert_str_eq(fmt(&out.dst), "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:0");
        cr_assert_eq(tt__proxy_build(v, &s4, &d6, buf, sizeof(buf)), -EAFNOSUPPORT);
        cr_assert_eq(tt__proxy_build(v, &s4, &d4, buf, 10), -ENOBUFS);
    }
    const char *v1 = "PROXY TCP4 10.1.2.3 10.0.0.1 5555 80\r\n";
    cr_assert_eq(tt__proxy_build(1, &s4, &d4, buf, sizeof(buf)), (ssize_t)strlen(v1));
    cr_assert(memcmp(buf, v1, strlen(v1)) == 0);
    ssize_t n = tt__proxy_build(2, NULL, NULL, buf, sizeof(buf));
    cr_assert_eq(n, 16);
    cr_assert_eq(parse(buf, 16, &out, &why), 16);
    cr_assert_eq(out.command, TT__PROXY_CMD_LOCAL);
    cr_assert(!out.has_addr);
}

static size_t v2_header(uint8_t *out, uint8_t cmd, uint8_t fam, const uint8_t *body, size_t len)
{
    memcpy(out, "\r\n\r\n\0\r\nQUIT\n", 12);
    out[12] = cmd;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    memcpy(out + 16, body, len);
    return 16 + len;
}

Test(proxy_parse, v2_tlvs_walked_and_bounded)
{
    uint8_t body[64] = {192, 0, 2, 1, 198, 51, 100, 2, 0x10, 0xe1, 0x01, 0xbb};
    size_t blen = 12;
    const uint8_t tlvs[] = {0x01, 0, 2, 'h', '2', 0x02, 0, 3, 'a', '.', 'b', 0x04, 0, 0};
    memcpy(body + blen, tlvs, sizeof(tlvs));
    blen += sizeof(tlvs);
    uint8_t hdr[128];
    size_t n = v2_header(hdr, 0x21, 0x11, body, blen);
    tt__proxy_hdr_t out;
    const char *why;
    cr_assert_eq(parse(hdr, n, &out, &why), (ssize_t)n);
    cr_assert_str_eq(fmt(&out.src), "192.0.2.1:4321");
    cr_assert_eq(out.tlv_len, sizeof(tlvs));
    size_t off = 0, vlen;
    const uint8_t *v;
    uint8_t type;
    cr_assert_eq(tt__proxy_tlv_next(hdr + out.tlv_off, out.tlv_len, &off, &type, &v, &vlen), 1);
    cr_assert_eq(type, 0x01);
    cr_assert_eq(vlen, 2);
    cr_assert(memcmp(v, "h2", 2) == 0);
    cr_assert_eq(tt__proxy_tlv_next(hdr + out.tlv_off, out.tlv_len, &off, &type, &v, &vlen), 1);
    cr_assert_eq(tt__proxy_tlv_next(hdr + out.tlv_off, out.tlv_len, &off, &type, &v, &vlen), 1);
    cr_assert_eq(type, 0x04);
    cr_assert_eq(tt__proxy_tlv_next(hdr + out.tlv_off, out.tlv_len, &off, &type, &v, &vlen), 0);
    for (size_t k = 0; k < n; k++)
        cr_assert_eq(parse(hdr, k, &out, &why), 0, "prefix %zu", k);

    /* A TLV whose length runs past the block; a block too short for its family. */
    body[12 + 2] = 9;
    n = v2_header(hdr, 0x21, 0x11, body, blen);
    cr_assert_eq(parse(hdr, n, &out, &why), TT_EPROTOCOL);
    cr_assert_str_eq(why, "v2: TLV past the end");
    n = v2_header(hdr, 0x21, 0x21, body, 20);
    cr_assert_eq(parse(hdr, n, &out, &why), TT_EPROTOCOL);
    cr_assert_str_eq(why, "v2: address block too short");
    cr_assert_eq(parse(hdr, 16, &out, &why), TT_EPROTOCOL); /* known from the fixed part */
    n = v2_header(hdr, 0x22, 0x11, body, 12);
    cr_assert_eq(parse(hdr, 13, &out, &why), TT_EPROTOCOL);
    cr_assert_str_eq(why, "v2: bad command");
    n = v2_header(hdr, 0x21, 0x41, body, 12);
    cr_assert_eq(parse(hdr, 14, &out, &why), TT_EPROTOCOL);
    cr_assert_str_eq(why, "v2: bad address family");
    hdr[13] = 0x11;
    hdr[14] = 0x08; /* 2048 + 16 */
    hdr[15] = 0x00;
    cr_assert_eq(parse(hdr, 16, &out, &why), TT_EPROTOCOL);
    cr_assert_str_eq(why, "v2 header too long");
}

Test(proxy_parse, v2_local_unspec_and_unix_keep_no_address)
{
    uint8_t body[216] = {0};
    uint8_t hdr[256];
    tt__proxy_hdr_t out;
    const char *why;
    size_t n = v2_header(hdr, 0x20, 0x11, body, 12); /* LOCAL: the family is ignored */
    cr_assert_eq(parse(hdr, n, &out, &why), (ssize_t)n);
    cr_assert(!out.has_addr);
    n = v2_header(hdr, 0x21, 0x00, body, 0);
    cr_assert_eq(parse(hdr, n, &out, &why), (ssize_t)n);
    cr_assert(!out.has_addr);
    n = v2_header(hdr, 0x21, 0x31, body, 216);
    cr_assert_eq(parse(hdr, n, &out, &why), (ssize_t)n);
    cr_assert(!out.has_addr);
    cr_assert_eq(out.family, AF_UNIX);
}

Test(proxy_parse, crc32c)
{
    /* The check value of CRC-32C (RFC 3720, B.4). */
    cr_assert_eq(tt__proxy_crc32c(0, (const uint8_t *)"123456789", 9), 0xE3069283u);
    uint8_t body[12 + 7] = {127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2, 0x03, 0, 4, 0, 0, 0, 0};
    uint8_t hdr[64];
    size_t n = v2_header(hdr, 0x21, 0x11, body, sizeof(body));
    uint32_t crc = tt__proxy_crc32c(0, hdr, n);
    hdr[n - 4] = (uint8_t)(crc >> 24);
    hdr[n - 3] = (uint8_t)(crc >> 16);
    hdr[n - 2] = (uint8_t)(crc >> 8);
    hdr[n - 1] = (uint8_t)crc;
    tt__proxy_hdr_t out;
    const char *why;
    cr_assert_eq(parse(hdr, n, &out, &why), (ssize_t)n);
    hdr[n - 1] ^= 1;
    cr_assert_eq(parse(hdr, n, &out, &why), TT_EPROTOCOL);
    cr_assert_str_eq(why, "v2: CRC32c mismatch");
}
