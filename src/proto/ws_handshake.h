/* The WebSocket opening handshake (RFC 6455 section 4) and the permessage-deflate
 * negotiation (RFC 7692 section 7), on parsed HTTP heads: what a server checks in
 * an upgrade request and answers, and what a client sends and checks in the
 * answer. Pure apart from OpenSSL's SHA-1, base64 and random bytes. */
#ifndef TT_WS_HANDSHAKE_H
#define TT_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/http.h"

#define TT__WS_KEY_LEN 24    /* base64 of 16 bytes */
#define TT__WS_ACCEPT_LEN 28 /* base64 of a SHA-1 */

/* Sec-WebSocket-Accept for `key`: base64(SHA-1(key + the RFC's GUID)), written
 * NUL-terminated into out[TT__WS_ACCEPT_LEN + 1]. */
void tt__ws_accept_for(const char *key, size_t len, char *out);
/* Is `key` the base64 form of 16 bytes (4.2.1 point 5)? */
bool tt__ws_key_ok(tt__str_t key);
/* A fresh random key, NUL-terminated into out[TT__WS_KEY_LEN + 1]. 0 or -EIO. */
int tt__ws_key_new(char *out);

/* permessage-deflate parameters, as agreed. */
typedef struct tt__ws_pmd {
    bool on;
    bool server_no_takeover; /* the server resets its compressor after each message */
    bool client_no_takeover; /* the client does */
    uint8_t server_bits;     /* LZ77 window of the server's compressor, 9..15 */
    uint8_t client_bits;     /* of the client's, 8..15 */
} tt__ws_pmd_t;

/* What the server checks in an upgrade request (4.2.1): GET, HTTP/1.1, Upgrade:
 * websocket, Connection: upgrade, a valid key, version 13. Returns 0, or the status
 * to refuse with: 400 (not a valid upgrade), 426 (another version: answer with
 * Sec-WebSocket-Version: 13), 405 (not GET). */
int tt__ws_check_upgrade(const tt__http_req_t *req);
/* Is this request an attempt at an upgrade at all (Upgrade: websocket present)? */
bool tt__ws_is_upgrade(const tt__http_req_t *req);

/* The first subprotocol of the server's list (comma-separated, in its order of
 * preference) that the client offered in Sec-WebSocket-Protocol, copied into out
 * NUL-terminated; "" when none matches or none was offered. */
void tt__ws_pick_protocol(const tt__http_req_t *req, const char *server_list, char *out, size_t cap);

/* The server's choice among the client's permessage-deflate offers: the first
 * it can honour (zlib cannot compress with an 8-bit window, so an offer that asks
 * server_max_window_bits=8 is passed over; an offer with a parameter it does not
 * know, or one given twice, is not valid and is passed over too). The server
 * always asks for no context takeover both ways, so one compressed broadcast
 * serves every recipient and an idle connection holds no zlib state. out->on is false when no offer fits. */
void tt__ws_pmd_accept(const tt__http_req_t *req, tt__ws_pmd_t *out);
/* The Sec-WebSocket-Extensions value for `p` ("permessage-deflate; ..."),
 * NUL-terminated; its length, or 0 if it does not fit in cap. */
size_t tt__ws_pmd_format(const tt__ws_pmd_t *p, bool response, char *out, size_t cap);
/* A client reads the server's answer to its offer (client_max_window_bits offered
 * without a value, nothing else asked). Returns 0 with *out (out->on false when
 * the server declined), or -1010 for an answer it may not give (a parameter not
 * in RFC 7692, a value out of range, two extensions). */
int tt__ws_pmd_answer(tt__str_t value, tt__ws_pmd_t *out);

/* ---- the client side ------------------------------------------------------------- */

/* A ws:// or wss:// URL (RFC 6455 3), split in place into a caller's copy. */
#define TT__WS_HOST_MAX 254
typedef struct tt__ws_url {
    bool secure;                       /* wss */
    char host[TT__WS_HOST_MAX + 1];    /* a name, IPv4, or IPv6 without brackets */
    bool ipv6;                         /* host was [bracketed] */
    uint16_t port;                     /* given, else 80 (ws) or 443 (wss) */
    bool port_given;
    const char *resource;              /* path and query, pointing into the URL */
    size_t resource_len;               /* 0: none; the request puts "/" before it */
} tt__ws_url_t;

/* Split `url` (NUL-terminated). The scheme is case-insensitive; the host is a
 * name of letters, digits, '-', '.', '_' or a [bracketed IPv6]; the port 1..65535;
 * no user info, no fragment (3: "MUST NOT"), nothing but printable ASCII. 0 or
 * -EINVAL. out->resource points into url. */
int tt__ws_url_parse(const char *url, tt__ws_url_t *out);

/* Whether `headers` (extra request fields, each "Name: value\r\n") is well formed
 * and sets none of the fields the handshake writes itself (Host, Upgrade,
 * Connection, Sec-WebSocket-*). NULL is fine. */
bool tt__ws_headers_ok(const char *headers);
/* Whether `list` is a comma-separated list of subprotocol tokens (RFC 6455
 * 4.1: tokens, no duplicates). */
bool tt__ws_protocols_ok(const char *list);

/* The upgrade request for `url` with `key`: protocols (may be NULL), the
 * permessage-deflate offer when `deflate`, then `headers` (may be NULL).
 * Returns a malloc'd NUL-terminated request with its length in *len, or NULL
 * (ENOMEM). */
char *tt__ws_request(const tt__ws_url_t *url, const char *key, const char *protocols,
                     bool deflate, const char *headers, size_t *len);

/* What a client checks in the answer to its upgrade (4.1, 4.2.2; RFC 7692 7.1):
 * status 101, Upgrade: websocket, Connection: upgrade, Sec-WebSocket-Accept for
 * our key, a protocol only among those offered (copied into proto[cap], "" for
 * none), and permessage-deflate only if offered, with parameters we can honour
 * (into *pmd). Returns 0, or -1 with *why set to a static sentence. */
int tt__ws_check_answer(const tt__http_req_t *resp, const char *key, const char *protocols,
                        bool deflate, tt__ws_pmd_t *pmd, char *proto, size_t cap,
                        const char **why);

/* A fresh masking key for a client frame (RFC 6455 5.3: unpredictable, from a
 * strong source): OpenSSL's generator, drawn in batches. */
void tt__ws_mask_key(uint8_t key[4]);

#endif
