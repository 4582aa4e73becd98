/* The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2):
 * recognising, parsing and building it. Pure: no loop, no socket, nothing but
 * libc, so the fuzz target links it alone. The connection layer that reads the
 * header off a socket is proxy_conn.c.
 *
 * Limits (the header is read before anything is known about the client, so it
 * must be small): a v1 line is at most 107 bytes, CRLF included, as the
 * specification says; a v2 header at most TT__PROXY_V2_MAX bytes, its 16-byte
 * fixed part included (the address block is at most 216 bytes, so about 1.8 KiB
 * remain for TLVs: HAProxy's own, with a unique id and the TLS ones, take a few
 * hundred). A longer one is refused, not read. */
#ifndef TT_PROXY_H
#define TT_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tether.h"

#define TT__PROXY_V1_MAX 107
#define TT__PROXY_V2_MAX 2048
#define TT__PROXY_V2_FIXED 16
#define TT__PROXY_SIG_LEN 12

/* v2 commands (the low nibble of byte 13). */
#define TT__PROXY_CMD_LOCAL 0
#define TT__PROXY_CMD_PROXY 1

/* TLV types of the specification (section 2.2). */
#define TT__PP2_ALPN 0x01
#define TT__PP2_AUTHORITY 0x02
#define TT__PP2_CRC32C 0x03
#define TT__PP2_NOOP 0x04
#define TT__PP2_UNIQUE_ID 0x05
#define TT__PP2_SSL 0x20
#define TT__PP2_SSL_VERSION 0x21
#define TT__PP2_SSL_CN 0x22
#define TT__PP2_SSL_CIPHER 0x23
#define TT__PP2_SSL_SIG_ALG 0x24
#define TT__PP2_SSL_KEY_ALG 0x25
#define TT__PP2_NETNS 0x30
#define TT__PP2_GCP 0xE0
#define TT__PP2_AWS 0xEA
#define TT__PP2_AZURE 0xEE

/* What tt__proxy_detect says about the first bytes of a stream. */
#define TT__PROXY_NONE 0 /* not a PROXY header */
#define TT__PROXY_MORE (-1) /* a prefix of a signature: more bytes decide */

/* Which version the first n bytes start: 1 ("PROXY "), 2 (the 12-byte binary
 * signature), TT__PROXY_MORE (all n bytes agree with a signature so far, n
 * shorter than it), TT__PROXY_NONE. */
int tt__proxy_detect(const uint8_t *buf, size_t n);

typedef struct tt__proxy_hdr {
    int version;   /* 1 or 2 */
    int command;   /* TT__PROXY_CMD_*: v1 is always PROXY */
    bool has_addr; /* src/dst hold the client's addresses (TCP over IPv4 or IPv6);
                      false for LOCAL, v1 UNKNOWN, v2 UNSPEC or UNIX: the
                      connection keeps its own */
    tt_addr_t src, dst;
    int family;    /* v2: AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX as sent */
    int transport; /* v2: 0 unspecified, 1 stream, 2 datagram */
    size_t len;    /* bytes of the whole header */
    size_t tlv_off, tlv_len; /* v2: the TLV block inside the header (0 when none) */
} tt__proxy_hdr_t;

/* Parse a header from the first n bytes of buf (which must start with one: see
 * tt__proxy_detect). Returns the header's length (> 0, also in out->len), 0 when
 * the bytes so far are a valid beginning and more are needed, or TT_EPROTOCOL
 * with *why set to a short static text ("bad signature", "v1 line too long",
 * ...). A verdict never changes as bytes are added: a refused prefix stays
 * refused, and a complete header parses the same whatever follows it. */
ssize_t tt__proxy_parse(const uint8_t *buf, size_t n, tt__proxy_hdr_t *out, const char **why);

/* Walk a TLV block: from *off, the next TLV's type, value and length; *off moves
 * past it. Returns 1 (one TLV), 0 (the end), TT_EPROTOCOL (a TLV runs past the
 * block). */
int tt__proxy_tlv_next(const uint8_t *tlv, size_t len, size_t *off, uint8_t *type,
                       const uint8_t **val, size_t *vlen);
/* Check a TLV block whole, the sub-TLVs of PP2_TYPE_SSL too, and the CRC32c when
 * one is sent (over the whole header `hdr` of hdr_len bytes). 0 or TT_EPROTOCOL
 * with *why. */
int tt__proxy_tlv_check(const uint8_t *hdr, size_t hdr_len, const tt__proxy_hdr_t *h,
                        const char **why);

/* Build a header of `version` (1 or 2) saying the client is src and it connected
 * to dst (both TCP over IPv4 or both over IPv6: -EAFNOSUPPORT otherwise; for v2,
 * NULL src and dst make a LOCAL header). Returns its length, or -ENOBUFS when cap
 * is too small (TT__PROXY_V1_MAX bytes always do, as do 52 for v2). */
ssize_t tt__proxy_build(int version, const tt_addr_t *src, const tt_addr_t *dst, uint8_t *out,
                        size_t cap);

/* CRC-32C (Castagnoli), as PP2_TYPE_CRC32C carries it. */
uint32_t tt__proxy_crc32c(uint32_t crc, const uint8_t *p, size_t n);

#endif
