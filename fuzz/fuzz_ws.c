/* WebSocket frames (src/proto/ws_frame.c) on any bytes. Byte 0 picks the reading
 * side (server: frames must be masked) and whether permessage-deflate is on, byte 1
 * where text payloads are split in two; the rest is a stream of frames. For each
 * frame until the first error or the end:
 *  1. The header is at most 14 bytes, its length field in the shortest form: so
 *     writing the parsed header back gives the same bytes exactly.
 *  2. The fragmentation rules hold (via tt__ws_seq_frame), a control frame is
 *     final and short, and masking a payload twice gives it back.
 *  3. UTF-8 validation of a text message gives the same verdict whether its
 *     payload is fed whole or in two pieces; close payloads parse or fail with a
 *     documented code. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "proto/ws_frame.h"

static uint8_t scratch[1 << 16];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tt__ws_rules_t rules;
    tt__ws_seq_t seq = {0};
    tt__utf8_t whole = {0}, split = {0};
    bool whole_ok = true, split_ok = true;
    size_t pos = 2, cut;

    if (size < 2)
        return 0;
    rules.server = data[0] & 1;
    rules.allow_rsv1 = (data[0] & 2) != 0;
    cut = data[1];
    while (pos < size) {
        tt__ws_hdr_t h;
        uint8_t back[TT__WS_MAX_HEADER];
        int n = tt__ws_hdr_parse(data + pos, size - pos, &rules, &h);

        if (n <= 0) {
            FZ_CHECK(n == 0 || n == -TT__WS_PROTOCOL_ERROR);
            break;
        }
        FZ_CHECK(n <= TT__WS_MAX_HEADER && n == h.hdr_len);
        FZ_CHECK(tt__ws_hdr_write(back, h.fin, h.opcode, h.rsv1, h.len, h.masked ? h.mask : NULL) ==
              (size_t)n);
        FZ_CHECK(memcmp(back, data + pos, (size_t)n) == 0);
        if (h.opcode & 0x8)
            FZ_CHECK(h.fin && h.len <= TT__WS_MAX_CONTROL);
        int s = tt__ws_seq_frame(&seq, &h, 1 << 20);
        FZ_CHECK(s == 0 || s == -TT__WS_PROTOCOL_ERROR || s == -TT__WS_TOO_BIG);
        if (s != 0)
            break;
        pos += (size_t)n;
        size_t avail = size - pos < h.len ? size - pos : (size_t)h.len;
        if (avail > sizeof(scratch))
            avail = sizeof(scratch);
        memcpy(scratch, data + pos, avail);
        if (h.masked) {
            tt__ws_mask(scratch, avail, h.mask, 0);
            tt__ws_mask(scratch, avail, h.mask, 0);
            FZ_CHECK(memcmp(scratch, data + pos, avail) == 0);
            tt__ws_mask(scratch, avail, h.mask, 0);
        }
        if (h.opcode == TT__WS_CLOSE) {
            uint16_t code;
            int c = tt__ws_close_parse(scratch, avail, &code);
            FZ_CHECK(c == 0 || c == -TT__WS_PROTOCOL_ERROR || c == -TT__WS_INVALID_DATA);
            if (c == 0)
                FZ_CHECK(code == TT__WS_NO_STATUS || tt__ws_close_code_ok(code));
        } else if (!(h.opcode & 0x8) && !seq.compressed) {
            size_t k = cut < avail ? cut : avail;
            whole_ok = whole_ok && tt__utf8_feed(&whole, scratch, avail);
            split_ok = split_ok && tt__utf8_feed(&split, scratch, k) &&
                       tt__utf8_feed(&split, scratch + k, avail - k);
            FZ_CHECK(whole_ok == split_ok);
            if (whole_ok)
                FZ_CHECK(tt__utf8_done(&whole) == tt__utf8_done(&split));
        }
        if (h.len > size - pos)
            break;
        pos += (size_t)h.len;
    }
    return 0;
}
