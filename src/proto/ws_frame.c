/* WebSocket frames, masking, fragmentation rules, UTF-8 and close payloads (see
 * ws_frame.h). RFC 6455 section numbers are given where a rule comes from. */
#include "proto/ws_frame.h"

#include <string.h>

static bool is_control(uint8_t op) { return (op & 0x8) != 0; }

static bool known_opcode(uint8_t op)
{
    return op == TT__WS_CONT || op == TT__WS_TEXT || op == TT__WS_BINARY || op == TT__WS_CLOSE ||
           op == TT__WS_PING || op == TT__WS_PONG;
}

int tt__ws_hdr_parse(const uint8_t *buf, size_t len, const tt__ws_rules_t *rules, tt__ws_hdr_t *h)
{
    size_t need = 2;
    uint64_t plen;

    if (len < 2)
        return 0;
    h->fin = (buf[0] & 0x80) != 0;
    h->rsv1 = (buf[0] & 0x40) != 0;
    h->opcode = buf[0] & 0x0f;
    h->masked = (buf[1] & 0x80) != 0;
    plen = buf[1] & 0x7f;
    /* 5.2: RSV2/RSV3 need an extension we never negotiate; RSV1 only with
     * permessage-deflate (RFC 7692 6). */
    if ((buf[0] & 0x30) != 0 || (h->rsv1 && !rules->allow_rsv1))
        return -TT__WS_PROTOCOL_ERROR;
    if (!known_opcode(h->opcode))
        return -TT__WS_PROTOCOL_ERROR;
    /* 5.5: control frames are never fragmented and carry at most 125 bytes. */
    if (is_control(h->opcode) && (!h->fin || plen > TT__WS_MAX_CONTROL))
        return -TT__WS_PROTOCOL_ERROR;
    /* 5.1: a client masks every frame, a server none. */
    if (h->masked != rules->server)
        return -TT__WS_PROTOCOL_ERROR;
    if (plen == 126)
        need += 2;
    else if (plen == 127)
        need += 8;
    if (h->masked)
        need += 4;
    if (len < need)
        return 0;
    if (plen == 126) {
        plen = ((uint64_t)buf[2] << 8) | buf[3];
        if (plen < 126) /* 5.2: "the minimal number of bytes MUST be used" */
            return -TT__WS_PROTOCOL_ERROR;
    } else if (plen == 127) {
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | buf[2 + i];
        if ((plen >> 63) != 0 || plen <= 0xffff) /* top bit 0; shortest form */
            return -TT__WS_PROTOCOL_ERROR;
    }
    h->len = plen;
    if (h->masked)
        memcpy(h->mask, buf + need - 4, 4);
    else
        memset(h->mask, 0, 4);
    h->hdr_len = (uint8_t)need;
    return (int)need;
}

size_t tt__ws_hdr_write(uint8_t *out, bool fin, uint8_t opcode, bool rsv1, uint64_t len,
                        const uint8_t *mask)
{
    size_t n = 2;

    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
    } else if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask != NULL) {
        out[1] |= 0x80;
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void tt__ws_mask(uint8_t *data, size_t len, const uint8_t key[4], uint64_t offset)
{
    uint8_t k[8];
    size_t i = 0;

    /* The key rotated to this offset, twice over, so eight bytes go per step. */
    for (int j = 0; j < 8; j++)
        k[j] = key[(offset + (uint64_t)j) & 3];
    if (len >= 8) {
        uint64_t w, kw;
        memcpy(&kw, k, 8);
        for (; i + 8 <= len; i += 8) {
            memcpy(&w, data + i, 8);
            w ^= kw;
            memcpy(data + i, &w, 8);
        }
    }
    for (; i < len; i++)
        data[i] ^= k[i & 7];
}

/* ---- UTF-8 -------------------------------------------------------------------------- */

bool tt__utf8_feed(tt__utf8_t *u, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];

        if (u->need > 0) {
            if (c < u->lo || c > u->hi)
                return false;
            u->need--;
            u->lo = 0x80, u->hi = 0xbf; /* only the first continuation is narrowed */
            continue;
        }
        if (c < 0x80)
            continue;
        u->lo = 0x80, u->hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            u->need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            u->need = 2;
            if (c == 0xe0)
                u->lo = 0xa0; /* overlong below U+0800 */
            else if (c == 0xed)
                u->hi = 0x9f; /* surrogates U+D800..U+DFFF */
        } else if (c >= 0xf0 && c <= 0xf4) {
            u->need = 3;
            if (c == 0xf0)
                u->lo = 0x90; /* overlong below U+10000 */
            else if (c == 0xf4)
                u->hi = 0x8f; /* past U+10FFFF */
        } else {
            return false; /* a continuation byte first, C0/C1 (overlong), F5..FF */
        }
    }
    return true;
}

/* ---- messages ------------------------------------------------------------------------ */

int tt__ws_seq_frame(tt__ws_seq_t *seq, const tt__ws_hdr_t *h, uint64_t max)
{
    if (is_control(h->opcode))
        return h->rsv1 ? -TT__WS_PROTOCOL_ERROR : 0; /* RFC 7692 6.1 */
    if (h->opcode == TT__WS_CONT) {
        if (seq->opcode == 0 || h->rsv1) /* 5.4; RFC 7692 6.1: RSV1 on the first only */
            return -TT__WS_PROTOCOL_ERROR;
    } else {
        if (seq->opcode != 0) /* 5.4: no new message inside another */
            return -TT__WS_PROTOCOL_ERROR;
        seq->opcode = h->opcode;
        seq->compressed = h->rsv1;
        seq->size = 0;
    }
    if (max > 0 && (h->len > max || seq->size > max - h->len))
        return -TT__WS_TOO_BIG;
    seq->size += h->len;
    if (h->fin)
        seq->opcode = 0;
    return 0;
}

/* ---- closing ------------------------------------------------------------------------- */

bool tt__ws_close_code_ok(unsigned code)
{
    /* 7.4.1 and the IANA registry: 1000-1003 and 1007-1014 are defined for the
     * wire (1004 reserved; 1005, 1006 and 1015 are never sent), 3000-4999 belong
     * to libraries and applications. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int tt__ws_close_parse(const uint8_t *p, size_t n, uint16_t *code)
{
    tt__utf8_t u = {0};

    if (n == 0) {
        *code = TT__WS_NO_STATUS;
        return 0;
    }
    if (n == 1)
        return -TT__WS_PROTOCOL_ERROR;
    *code = (uint16_t)((p[0] << 8) | p[1]);
    if (!tt__ws_close_code_ok(*code))
        return -TT__WS_PROTOCOL_ERROR;
    if (!tt__utf8_feed(&u, p + 2, n - 2) || !tt__utf8_done(&u))
        return -TT__WS_INVALID_DATA;
    return 0;
}
