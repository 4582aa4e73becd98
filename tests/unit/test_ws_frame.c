/* WebSocket frames on their own (src/proto/ws_frame.c): the examples of RFC 6455
 * 5.7 byte for byte, every header the RFC forbids with its close code, the rules
 * of fragmentation, UTF-8 across fragments, close payloads, masking in pieces. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/ws_frame.h"

static const tt__ws_rules_t as_client = {.server = false};
static const tt__ws_rules_t as_server = {.server = true};

Test(ws_frame, the_rfc_examples)
{
    tt__ws_hdr_t h;
    /* 5.7: a single-frame unmasked text message "Hello". */
    static const uint8_t hello[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    cr_assert_eq(tt__ws_hdr_parse(hello, sizeof(hello), &as_client, &h), 2);
    cr_assert(h.fin);
    cr_assert_eq(h.opcode, TT__WS_TEXT);
    cr_assert_eq(h.len, 5);
    cr_assert(!h.masked);

    /* A single-frame masked text message "Hello". */
    uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    cr_assert_eq(tt__ws_hdr_parse(masked, sizeof(masked), &as_server, &h), 6);
    cr_assert(h.masked);
    tt__ws_mask(masked + 6, 5, h.mask, 0);
    cr_assert_eq(memcmp(masked + 6, "Hello", 5), 0);

    /* A fragmented unmasked text message: "Hel", then "lo". */
    static const uint8_t f1[] = {0x01, 0x03, 'H', 'e', 'l'}, f2[] = {0x80, 0x02, 'l', 'o'};
    tt__ws_seq_t seq = {0};
    cr_assert_eq(tt__ws_hdr_parse(f1, sizeof(f1), &as_client, &h), 2);
    cr_assert(!h.fin);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 0), 0);
    cr_assert_eq(seq.opcode, TT__WS_TEXT, "a message is open");
    cr_assert_eq(tt__ws_hdr_parse(f2, sizeof(f2), &as_client, &h), 2);
    cr_assert_eq(h.opcode, TT__WS_CONT);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 0), 0);
    cr_assert_eq(seq.opcode, 0, "the final frame closed it");
    cr_assert_eq(seq.size, 5);

    /* Unmasked ping with "Hello"; 256 bytes and 64 KiB binary. */
    static const uint8_t ping[] = {0x89, 0x05, 'H', 'e', 'l', 'l', 'o'};
    cr_assert_eq(tt__ws_hdr_parse(ping, sizeof(ping), &as_client, &h), 2);
    cr_assert_eq(h.opcode, TT__WS_PING);
    static const uint8_t b256[] = {0x82, 0x7e, 0x01, 0x00};
    cr_assert_eq(tt__ws_hdr_parse(b256, sizeof(b256), &as_client, &h), 4);
    cr_assert_eq(h.len, 256);
    static const uint8_t b64k[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};
    cr_assert_eq(tt__ws_hdr_parse(b64k, sizeof(b64k), &as_client, &h), 10);
    cr_assert_eq(h.len, 65536);
}

Test(ws_frame, a_header_in_pieces_waits)
{
    static const uint8_t b64k[] = {0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4};
    tt__ws_hdr_t h;

    for (size_t n = 0; n < sizeof(b64k); n++)
        cr_assert_eq(tt__ws_hdr_parse(b64k, n, &as_server, &h), 0, "at %zu bytes", n);
    cr_assert_eq(tt__ws_hdr_parse(b64k, sizeof(b64k), &as_server, &h), 14);
    cr_assert_eq(memcmp(h.mask, "\x01\x02\x03\x04", 4), 0);
}

Test(ws_frame, forbidden_headers_are_protocol_errors)
{
    static const struct {
        uint8_t b[10];
        size_t n;
        bool server;
        const char *why;
    } cases[] = {
        {{0xa1, 0x80, 1, 2, 3, 4}, 6, true, "RSV2"},
        {{0x91, 0x80, 1, 2, 3, 4}, 6, true, "RSV3"},
        {{0xc1, 0x80, 1, 2, 3, 4}, 6, true, "RSV1 without permessage-deflate"},
        {{0x83, 0x80, 1, 2, 3, 4}, 6, true, "opcode 3"},
        {{0x8b, 0x80, 1, 2, 3, 4}, 6, true, "opcode 0xB"},
        {{0x09, 0x80, 1, 2, 3, 4}, 6, true, "a fragmented ping"},
        {{0x89, 0xfe, 0, 126, 1, 2, 3, 4}, 8, true, "a ping of 126 bytes"},
        {{0x81, 0x05}, 2, true, "an unmasked frame to a server"},
        {{0x81, 0x85, 1, 2, 3, 4}, 6, false, "a masked frame to a client"},
        {{0x82, 0x7e, 0, 100}, 4, false, "a 16-bit length for 100 bytes"},
        {{0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 10, false, "a 64-bit length for 65535"},
        {{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0}, 10, false, "the top bit of a 64-bit length"},
    };
    tt__ws_hdr_t h;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tt__ws_rules_t r = {.server = cases[i].server};
        cr_expect_eq(tt__ws_hdr_parse(cases[i].b, cases[i].n, &r, &h), -TT__WS_PROTOCOL_ERROR, "%s",
                     cases[i].why);
    }
    /* RSV1 is fine once permessage-deflate is on. */
    tt__ws_rules_t pmd = {.server = true, .allow_rsv1 = true};
    static const uint8_t c1[] = {0xc1, 0x80, 1, 2, 3, 4};
    cr_assert_eq(tt__ws_hdr_parse(c1, sizeof(c1), &pmd, &h), 6);
    cr_assert(h.rsv1);
}

static tt__ws_hdr_t frame(bool fin, uint8_t op, bool rsv1, uint64_t len)
{
    return (tt__ws_hdr_t){.fin = fin, .opcode = op, .rsv1 = rsv1, .len = len};
}

Test(ws_frame, the_rules_of_fragmentation)
{
    tt__ws_seq_t seq = {0};
    tt__ws_hdr_t h;

    h = frame(true, TT__WS_CONT, false, 1);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 0), -TT__WS_PROTOCOL_ERROR, "a continuation of nothing");

    memset(&seq, 0, sizeof(seq));
    h = frame(false, TT__WS_TEXT, true, 10);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 0), 0);
    cr_assert(seq.compressed);
    h = frame(true, TT__WS_PING, false, 3);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 0), 0, "a control frame between fragments is fine");
    cr_assert_eq(seq.opcode, TT__WS_TEXT);
    h = frame(true, TT__WS_BINARY, false, 1);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 0), -TT__WS_PROTOCOL_ERROR, "a message inside a message");

    memset(&seq, 0, sizeof(seq));
    h = frame(false, TT__WS_TEXT, true, 10);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 0), 0);
    h = frame(true, TT__WS_CONT, true, 10);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 0), -TT__WS_PROTOCOL_ERROR, "RSV1 on a continuation");
    h = frame(true, TT__WS_PONG, true, 0);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 0), -TT__WS_PROTOCOL_ERROR, "RSV1 on a control frame");

    /* The size limit counts the whole message, across fragments. */
    memset(&seq, 0, sizeof(seq));
    h = frame(false, TT__WS_BINARY, false, 600);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 1000), 0);
    h = frame(false, TT__WS_CONT, false, 400);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 1000), 0, "exactly at the limit");
    h = frame(true, TT__WS_CONT, false, 1);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 1000), -TT__WS_TOO_BIG);
    memset(&seq, 0, sizeof(seq));
    h = frame(true, TT__WS_BINARY, false, UINT64_MAX >> 1);
    cr_assert_eq(tt__ws_seq_frame(&seq, &h, 1000), -TT__WS_TOO_BIG, "a huge length, no overflow");
}

static bool utf8_ok(const char *s, size_t n)
{
    tt__utf8_t u = {0};
    return tt__utf8_feed(&u, (const uint8_t *)s, n) && tt__utf8_done(&u);
}

Test(ws_frame, utf8_valid_and_not)
{
    static const char *good[] = {"", "plain ascii", "caf\xc3\xa9", "\xe2\x82\xac", "\xed\x9f\xbf",
                                 "\xee\x80\x80", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
                                 "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"};
    static const char *bad[] = {"\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80",
                                "\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x80\x80\x80",
                                "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff",
                                "\xc3", "\xe2\x82", "\xf0\x90\x80", "a\xc3(b"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_expect(utf8_ok(good[i], strlen(good[i])), "good[%zu] refused", i);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect(!utf8_ok(bad[i], strlen(bad[i])), "bad[%zu] accepted", i);
}

Test(ws_frame, utf8_across_fragments_and_failing_fast)
{
    static const char text[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9f\x98\x80!";
    tt__utf8_t u = {0};

    /* Byte by byte (a fragment boundary inside every sequence) is the same. */
    for (size_t i = 0; i < sizeof(text) - 1; i++)
        cr_assert(tt__utf8_feed(&u, (const uint8_t *)text + i, 1), "byte %zu", i);
    cr_assert(tt__utf8_done(&u));
    /* Cut inside a sequence at the end of a fragment: not done, but not wrong yet. */
    memset(&u, 0, sizeof(u));
    cr_assert(tt__utf8_feed(&u, (const uint8_t *)"ab\xf0\x9f", 4));
    cr_assert(!tt__utf8_done(&u));
    /* An invalid byte fails where it stands, before the rest of the message. */
    memset(&u, 0, sizeof(u));
    cr_assert(!tt__utf8_feed(&u, (const uint8_t *)"\xce\xba\xed\xa0", 4), "a surrogate's start");
}

Test(ws_frame, close_payloads)
{
    uint16_t code;

    cr_assert_eq(tt__ws_close_parse(NULL, 0, &code), 0);
    cr_assert_eq(code, TT__WS_NO_STATUS);
    cr_assert_eq(tt__ws_close_parse((const uint8_t *)"\x03", 1, &code), -TT__WS_PROTOCOL_ERROR);
    cr_assert_eq(tt__ws_close_parse((const uint8_t *)"\x03\xe8" "bye", 5, &code), 0);
    cr_assert_eq(code, 1000);
    static const unsigned refused[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        uint8_t p[2] = {(uint8_t)(refused[i] >> 8), (uint8_t)refused[i]};
        cr_expect_eq(tt__ws_close_parse(p, 2, &code), -TT__WS_PROTOCOL_ERROR, "code %u", refused[i]);
    }
    static const unsigned accepted[] = {1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999};
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        uint8_t p[2] = {(uint8_t)(accepted[i] >> 8), (uint8_t)accepted[i]};
        cr_expect_eq(tt__ws_close_parse(p, 2, &code), 0, "code %u", accepted[i]);
        cr_expect_eq(code, accepted[i]);
    }
    cr_assert_eq(tt__ws_close_parse((const uint8_t *)"\x03\xe8\xff", 3, &code), -TT__WS_INVALID_DATA);
}

Test(ws_frame, headers_written_are_read_back)
{
    static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, (uint64_t)1 << 40};
    static const uint8_t key[4] = {9, 8, 7, 6};
    uint8_t buf[TT__WS_MAX_HEADER];
    tt__ws_hdr_t h;

    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (int m = 0; m < 2; m++) {
            size_t n = tt__ws_hdr_write(buf, i % 2 == 0, TT__WS_BINARY, false, lens[i], m ? key : NULL);
            tt__ws_rules_t r = {.server = m == 1};
            cr_assert_eq(tt__ws_hdr_parse(buf, n, &r, &h), (int)n, "len %llu",
                         (unsigned long long)lens[i]);
            cr_assert_eq(h.len, lens[i]);
            cr_assert_eq(h.fin, i % 2 == 0);
            cr_assert_eq(h.masked, m == 1);
            if (m)
                cr_assert_eq(memcmp(h.mask, key, 4), 0);
        }
    }
}

Test(ws_frame, masking_in_pieces_equals_masking_whole)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t whole[1000], pieces[1000];

    for (size_t i = 0; i < sizeof(whole); i++)
        whole[i] = pieces[i] = (uint8_t)(i * 7 + 3);
    tt__ws_mask(whole, sizeof(whole), key, 0);
    for (size_t off = 0, step = 1; off < sizeof(pieces); off += step, step = step % 13 + 1) {
        size_t n = off + step > sizeof(pieces) ? sizeof(pieces) - off : step;
        tt__ws_mask(pieces + off, n, key, off);
    }
    cr_assert_eq(memcmp(whole, pieces, sizeof(whole)), 0);
    /* And it is its own inverse. */
    tt__ws_mask(whole, sizeof(whole), key, 0);
    for (size_t i = 0; i < sizeof(whole); i++)
        cr_assert_eq(whole[i], (uint8_t)(i * 7 + 3));
}
