/* WebSocket frames (RFC 6455 section 5) and what a message must satisfy, as pure
 * functions: frame headers read and written, masking, the rules of fragmentation,
 * UTF-8 validation that carries across fragments, close payloads. No loop, no
 * socket; the WebSocket layer and the fuzz targets drive these directly.
 *
 * Every violation is reported as the close code the RFC prescribes for it, so the
 * layer above only has to send that code and close. */
#ifndef TT_WS_FRAME_H
#define TT_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Opcodes. */
#define TT__WS_CONT 0x0
#define TT__WS_TEXT 0x1
#define TT__WS_BINARY 0x2
#define TT__WS_CLOSE 0x8
#define TT__WS_PING 0x9
#define TT__WS_PONG 0xA

/* Close codes (RFC 6455 7.4.1). */
#define TT__WS_NORMAL 1000
#define TT__WS_GOING_AWAY 1001
#define TT__WS_PROTOCOL_ERROR 1002
#define TT__WS_UNSUPPORTED 1003
#define TT__WS_NO_STATUS 1005 /* never on the wire: a close frame without a code */
#define TT__WS_ABNORMAL 1006  /* never on the wire: the connection ended without one */
#define TT__WS_INVALID_DATA 1007
#define TT__WS_POLICY 1008
#define TT__WS_TOO_BIG 1009
#define TT__WS_MANDATORY_EXT 1010
#define TT__WS_INTERNAL_ERROR 1011

#define TT__WS_MAX_HEADER 14     /* 2 + 8 (length) + 4 (mask) */
#define TT__WS_MAX_CONTROL 125   /* payload of a control frame */

typedef struct tt__ws_hdr {
    bool fin, rsv1, masked;
    uint8_t opcode;
    uint8_t mask[4];
    uint8_t hdr_len;     /* bytes of the header */
    uint64_t len;        /* payload bytes */
} tt__ws_hdr_t;

/* Who reads: a server reads masked frames from clients, a client unmasked ones. */
typedef struct tt__ws_rules {
    bool server;     /* frames must be masked (a server receiving) or must not be */
    bool allow_rsv1; /* permessage-deflate was negotiated */
} tt__ws_rules_t;

/* Read the frame header at the front of buf[0, len). Returns the header length
 * (> 0, *h filled), 0 when more bytes are needed, or -code: -1002 for a frame the
 * RFC forbids (reserved bits or opcodes, a fragmented or oversized control frame,
 * a length not in its shortest form or with its top bit set, the wrong masking). */
int tt__ws_hdr_parse(const uint8_t *buf, size_t len, const tt__ws_rules_t *rules, tt__ws_hdr_t *h);

/* Write a header into out (at most TT__WS_MAX_HEADER bytes): the length in its
 * shortest form, the mask key after it when `mask` is not NULL. Returns its size. */
size_t tt__ws_hdr_write(uint8_t *out, bool fin, uint8_t opcode, bool rsv1, uint64_t len,
                        const uint8_t *mask);

/* XOR data with the mask key, the first byte being byte `offset` of the payload
 * (so a payload that arrives in pieces is unmasked piece by piece). */
void tt__ws_mask(uint8_t *data, size_t len, const uint8_t key[4], uint64_t offset);

/* ---- UTF-8, across fragments ------------------------------------------------------- */

/* Incremental validation (RFC 3629: no overlong forms, no surrogates, nothing past
 * U+10FFFF), failing at the first byte that can no longer start or continue a
 * valid sequence, as RFC 6455 8.1 asks ("fail fast"). Zero-initialised is ready. */
typedef struct tt__utf8 {
    uint8_t need;   /* continuation bytes still expected */
    uint8_t lo, hi; /* the range the next continuation byte must fall in */
} tt__utf8_t;

/* Feed bytes; false at the first invalid one (the state is then meaningless). */
bool tt__utf8_feed(tt__utf8_t *u, const uint8_t *p, size_t n);
/* At the end of a message: false if a sequence was cut off. */
static inline bool tt__utf8_done(const tt__utf8_t *u) { return u->need == 0; }

/* ---- messages out of frames ------------------------------------------------------------ */

/* Where a reader is between frames: which data message is being put together. */
typedef struct tt__ws_seq {
    uint8_t opcode;     /* TT__WS_TEXT or TT__WS_BINARY while a message is open, else 0 */
    bool compressed;    /* its first frame had RSV1 */
    uint64_t size;      /* payload bytes of the message so far */
} tt__ws_seq_t;

/* Check frame `h` against the message in progress and the size limit, and advance
 * `seq` (a control frame leaves it alone; a final data frame closes the message).
 * Returns 0 or -code: -1002 (a continuation with no message open, a new message
 * while one is open, RSV1 on a continuation or a control frame) or -1009 (the
 * message would pass `max` payload bytes; 0: no limit). */
int tt__ws_seq_frame(tt__ws_seq_t *seq, const tt__ws_hdr_t *h, uint64_t max);

/* ---- closing ----------------------------------------------------------------------- */

/* Read a close frame's payload: *code (TT__WS_NO_STATUS when empty) and the reason
 * text at p + 2. Returns 0 or -code: -1002 for a one-byte payload or a code that
 * may not be sent (below 1000, 1004-1006, 1015, 1016-2999, 5000 and up), -1007 for
 * a reason that is not UTF-8. */
int tt__ws_close_parse(const uint8_t *p, size_t n, uint16_t *code);
/* Whether `code` may be sent in a close frame (by us, or by an application). */
bool tt__ws_close_code_ok(unsigned code);

#endif
