/* The PROXY protocol header, both versions: see proxy.h. Written from HAProxy's
 * proxy-protocol.txt; every length is checked against what was received before
 * a byte is read, and a v1 line is scanned only within its 107 bytes. */
#include "proto/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v2_sig[TT__PROXY_SIG_LEN] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";
#define V1_SIG_LEN 6

int tt__proxy_detect(const uint8_t *buf, size_t n)
{
    size_t k;

    if (n == 0)
        return TT__PROXY_MORE;
    k = n < V1_SIG_LEN ? n : V1_SIG_LEN;
    if (memcmp(buf, v1_sig, k) == 0)
        return n >= V1_SIG_LEN ? 1 : TT__PROXY_MORE;
    k = n < TT__PROXY_SIG_LEN ? n : TT__PROXY_SIG_LEN;
    if (memcmp(buf, v2_sig, k) == 0)
        return n >= TT__PROXY_SIG_LEN ? 2 : TT__PROXY_MORE;
    return TT__PROXY_NONE;
}

static ssize_t refuse(const char **why, const char *text)
{
    *why = text;
    return TT_EPROTOCOL;
}

/* ---- version 1 ------------------------------------------------------------------ */

/* "0".."65535", digits only. */
static bool parse_port(const char *s, size_t len, uint16_t *out)
{
    unsigned v = 0;

    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static bool parse_ip(int family, const char *s, size_t len, uint16_t port, tt_addr_t *out)
{
    char text[INET6_ADDRSTRLEN];

    if (len == 0 || len >= sizeof(text))
        return false;
    memcpy(text, s, len);
    text[len] = '\0';
    memset(out, 0, sizeof(*out));
    if (family == AF_INET) {
        if (inet_pton(AF_INET, text, &out->u.in4.sin_addr) != 1)
            return false;
        out->u.in4.sin_family = AF_INET;
        out->u.in4.sin_port = htons(port);
        out->len = sizeof(struct sockaddr_in);
    } else {
        if (inet_pton(AF_INET6, text, &out->u.in6.sin6_addr) != 1)
            return false;
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons(port);
        out->len = sizeof(struct sockaddr_in6);
    }
    return true;
}

/* The line without "PROXY " and CRLF: "TCP4 src dst sport dport", or "UNKNOWN"
 * and anything up to the CRLF (the receiver ignores it). */
static ssize_t parse_v1_fields(const char *p, size_t len, tt__proxy_hdr_t *out, const char **why)
{
    const char *f[5];
    size_t flen[5], nf = 0, start = 0;
    int family;

    if (len >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (len == 7 || p[7] == ' '))
        return 0;
    /* Exactly five fields, one space apart. */
    for (size_t i = 0; i <= len; i++) {
        if (i == len || p[i] == ' ') {
            if (nf == 5)
                return refuse(why, "v1: too many fields");
            f[nf] = p + start;
            flen[nf] = i - start;
            if (flen[nf] == 0)
                return refuse(why, "v1: empty field");
            nf++;
            start = i + 1;
        }
    }
    if (nf != 5)
        return refuse(why, "v1: too few fields");
    if (flen[0] == 4 && memcmp(f[0], "TCP4", 4) == 0)
        family = AF_INET;
    else if (flen[0] == 4 && memcmp(f[0], "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return refuse(why, "v1: unknown protocol");
    uint16_t sport, dport;
    if (!parse_port(f[3], flen[3], &sport) || !parse_port(f[4], flen[4], &dport))
        return refuse(why, "v1: bad port");
    if (!parse_ip(family, f[1], flen[1], sport, &out->src) ||
        !parse_ip(family, f[2], flen[2], dport, &out->dst))
        return refuse(why, "v1: bad address");
    out->has_addr = true;
    out->family = family;
    out->transport = 1;
    return 0;
}

static ssize_t parse_v1(const uint8_t *buf, size_t n, tt__proxy_hdr_t *out, const char **why)
{
    size_t lim = n < TT__PROXY_V1_MAX ? n : TT__PROXY_V1_MAX;

    for (size_t i = V1_SIG_LEN; i < lim; i++) {
        uint8_t ch = buf[i];
        if (ch == '\r') {
            if (i + 2 > TT__PROXY_V1_MAX)
                return refuse(why, "v1 line too long");
            if (i + 1 == n)
                return 0; /* the LF may come next */
            if (buf[i + 1] != '\n')
                return refuse(why, "v1: CR without LF");
            out->len = i + 2;
            ssize_t r = parse_v1_fields((const char *)buf + V1_SIG_LEN, i - V1_SIG_LEN, out, why);
            return r < 0 ? r : (ssize_t)out->len;
        }
        /* Printable ASCII only: a byte no line may hold is refused at once. */
        if (ch < 0x20 || ch > 0x7e)
            return refuse(why, "v1: bad character");
    }
    if (n >= TT__PROXY_V1_MAX)
        return refuse(why, "v1 line too long");
    return 0;
}

/* ---- version 2 ------------------------------------------------------------------ */

static size_t addr_block_len(int fam)
{
    switch (fam) {
    case 1:
        return 12; /* IPv4: two addresses, two ports */
    case 2:
        return 36; /* IPv6 */
    case 3:
        return 216; /* two 108-byte Unix paths */
    default:
        return 0;
    }
}

int tt__proxy_tlv_next(const uint8_t *tlv, size_t len, size_t *off, uint8_t *type,
                       const uint8_t **val, size_t *vlen)
{
    size_t o = *off;

    if (o >= len)
        return 0;
    if (len - o < 3)
        return TT_EPROTOCOL;
    size_t l = ((size_t)tlv[o + 1] << 8) | tlv[o + 2];
    if (len - o - 3 < l)
        return TT_EPROTOCOL;
    *type = tlv[o];
    *val = tlv + o + 3;
    *vlen = l;
    *off = o + 3 + l;
    return 1;
}

int tt__proxy_tlv_check(const uint8_t *hdr, size_t hdr_len, const tt__proxy_hdr_t *h,
                        const char **why)
{
    const uint8_t *tlv = hdr + h->tlv_off, *val;
    size_t off = 0, vlen;
    uint8_t type;
    int r;

    while ((r = tt__proxy_tlv_next(tlv, h->tlv_len, &off, &type, &val, &vlen)) == 1) {
        if (type == TT__PP2_SSL) {
            /* client (1 byte), verify (4 bytes), then sub-TLVs. */
            if (vlen < 5)
                return (int)refuse(why, "v2: SSL TLV too short");
            size_t soff = 0, sl;
            const uint8_t *sv;
            uint8_t st;
            int sr;
            while ((sr = tt__proxy_tlv_next(val + 5, vlen - 5, &soff, &st, &sv, &sl)) == 1)
                ;
            if (sr < 0)
                return (int)refuse(why, "v2: SSL sub-TLV past its end");
        } else if (type == TT__PP2_CRC32C) {
            if (vlen != 4)
                return (int)refuse(why, "v2: CRC32c TLV not 4 bytes");
            /* The checksum of the whole header with this field as zeros. */
            size_t at = (size_t)(val - hdr);
            static const uint8_t zero[4];
            uint32_t crc = tt__proxy_crc32c(0, hdr, at);
            crc = tt__proxy_crc32c(crc, zero, 4);
            crc = tt__proxy_crc32c(crc, hdr + at + 4, hdr_len - at - 4);
            uint32_t sent = ((uint32_t)val[0] << 24) | ((uint32_t)val[1] << 16) |
                            ((uint32_t)val[2] << 8) | val[3];
            if (crc != sent)
                return (int)refuse(why, "v2: CRC32c mismatch");
        }
    }
    if (r < 0)
        return (int)refuse(why, "v2: TLV past the end");
    return 0;
}

static void v2_addrs(const uint8_t *a, int fam, tt__proxy_hdr_t *out)
{
    memset(&out->src, 0, sizeof(out->src));
    memset(&out->dst, 0, sizeof(out->dst));
    if (fam == 1) {
        out->src.u.in4.sin_family = out->dst.u.in4.sin_family = AF_INET;
        memcpy(&out->src.u.in4.sin_addr, a, 4);
        memcpy(&out->dst.u.in4.sin_addr, a + 4, 4);
        memcpy(&out->src.u.in4.sin_port, a + 8, 2); /* both in network order */
        memcpy(&out->dst.u.in4.sin_port, a + 10, 2);
        out->src.len = out->dst.len = sizeof(struct sockaddr_in);
    } else {
        out->src.u.in6.sin6_family = out->dst.u.in6.sin6_family = AF_INET6;
        memcpy(&out->src.u.in6.sin6_addr, a, 16);
        memcpy(&out->dst.u.in6.sin6_addr, a + 16, 16);
        memcpy(&out->src.u.in6.sin6_port, a + 32, 2);
        memcpy(&out->dst.u.in6.sin6_port, a + 34, 2);
        out->src.len = out->dst.len = sizeof(struct sockaddr_in6);
    }
}

static ssize_t parse_v2(const uint8_t *buf, size_t n, tt__proxy_hdr_t *out, const char **why)
{
    if (n > 12) {
        if ((buf[12] >> 4) != 2)
            return refuse(why, "v2: bad version");
        if ((buf[12] & 0x0f) > TT__PROXY_CMD_PROXY)
            return refuse(why, "v2: bad command");
    }
    if (n > 13 && ((buf[13] >> 4) > 3 || (buf[13] & 0x0f) > 2))
        return refuse(why, "v2: bad address family");
    if (n < TT__PROXY_V2_FIXED)
        return 0;
    size_t len = ((size_t)buf[14] << 8) | buf[15];
    size_t total = TT__PROXY_V2_FIXED + len;
    int cmd = buf[12] & 0x0f, fam = buf[13] >> 4;
    size_t alen = addr_block_len(fam);
    if (total > TT__PROXY_V2_MAX)
        return refuse(why, "v2 header too long");
    /* LOCAL ignores the family (the spec: discard the block), but a block that
     * names one and is shorter than it is still no header of ours to trust. */
    if (len < alen)
        return refuse(why, "v2: address block too short");
    if (n < total)
        return 0;
    out->version = 2;
    out->command = cmd;
    out->family = fam == 1 ? AF_INET : fam == 2 ? AF_INET6 : fam == 3 ? AF_UNIX : AF_UNSPEC;
    out->transport = buf[13] & 0x0f;
    out->len = total;
    out->tlv_off = TT__PROXY_V2_FIXED + alen;
    out->tlv_len = len - alen;
    if (cmd == TT__PROXY_CMD_PROXY && (fam == 1 || fam == 2)) {
        v2_addrs(buf + TT__PROXY_V2_FIXED, fam, out);
        out->has_addr = true;
    }
    if (tt__proxy_tlv_check(buf, total, out, why) < 0)
        return TT_EPROTOCOL;
    return (ssize_t)total;
}

ssize_t tt__proxy_parse(const uint8_t *buf, size_t n, tt__proxy_hdr_t *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    *why = "";
    switch (tt__proxy_detect(buf, n)) {
    case 1:
        out->version = 1;
        out->command = TT__PROXY_CMD_PROXY;
        return parse_v1(buf, n, out, why);
    case 2:
        return parse_v2(buf, n, out, why);
    case TT__PROXY_MORE:
        return 0;
    default:
        return refuse(why, "bad signature");
    }
}

/* ---- building ------------------------------------------------------------------- */

ssize_t tt__proxy_build(int version, const tt_addr_t *src, const tt_addr_t *dst, uint8_t *out,
                        size_t cap)
{
    int fam;

    if (version != 1 && version != 2)
        return -EINVAL;
    if (src == NULL || dst == NULL) {
        if (version != 2 || src != dst)
            return -EINVAL;
        if (cap < TT__PROXY_V2_FIXED)
            return -ENOBUFS;
        memcpy(out, v2_sig, TT__PROXY_SIG_LEN);
        out[12] = 0x20; /* version 2, LOCAL */
        out[13] = 0x00; /* UNSPEC */
        out[14] = out[15] = 0;
        return TT__PROXY_V2_FIXED;
    }
    fam = src->u.sa.sa_family;
    if ((fam != AF_INET && fam != AF_INET6) || dst->u.sa.sa_family != fam)
        return -EAFNOSUPPORT;
    if (version == 1) {
        char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
        const void *sa = fam == AF_INET ? (const void *)&src->u.in4.sin_addr
                                        : (const void *)&src->u.in6.sin6_addr;
        const void *da = fam == AF_INET ? (const void *)&dst->u.in4.sin_addr
                                        : (const void *)&dst->u.in6.sin6_addr;
        unsigned sp = ntohs(fam == AF_INET ? src->u.in4.sin_port : src->u.in6.sin6_port);
        unsigned dp = ntohs(fam == AF_INET ? dst->u.in4.sin_port : dst->u.in6.sin6_port);
        if (inet_ntop(fam, sa, s, sizeof(s)) == NULL || inet_ntop(fam, da, d, sizeof(d)) == NULL)
            return -EINVAL;
        int k = snprintf((char *)out, cap, "PROXY %s %s %s %u %u\r\n",
                         fam == AF_INET ? "TCP4" : "TCP6", s, d, sp, dp);
        if (k < 0 || (size_t)k >= cap)
            return -ENOBUFS;
        return k;
    }
    size_t alen = fam == AF_INET ? 12 : 36;
    if (cap < TT__PROXY_V2_FIXED + alen)
        return -ENOBUFS;
    memcpy(out, v2_sig, TT__PROXY_SIG_LEN);
    out[12] = 0x21;                      /* version 2, PROXY */
    out[13] = fam == AF_INET ? 0x11 : 0x21; /* TCP over IPv4 / IPv6 */
    out[14] = 0;
    out[15] = (uint8_t)alen;
    uint8_t *a = out + TT__PROXY_V2_FIXED;
    if (fam == AF_INET) {
        memcpy(a, &src->u.in4.sin_addr, 4);
        memcpy(a + 4, &dst->u.in4.sin_addr, 4);
        memcpy(a + 8, &src->u.in4.sin_port, 2);
        memcpy(a + 10, &dst->u.in4.sin_port, 2);
    } else {
        memcpy(a, &src->u.in6.sin6_addr, 16);
        memcpy(a + 16, &dst->u.in6.sin6_addr, 16);
        memcpy(a + 32, &src->u.in6.sin6_port, 2);
        memcpy(a + 34, &dst->u.in6.sin6_port, 2);
    }
    return (ssize_t)(TT__PROXY_V2_FIXED + alen);
}

uint32_t tt__proxy_crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
    /* Bit by bit: headers are small and this runs only when a CRC is sent. */
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}
