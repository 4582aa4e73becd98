/* permessage-deflate on its own (src/proto/ws_deflate.c): RFC 7692's examples,
 * round trips with and without context takeover, pieces equal to the whole, a
 * decompression bomb stopped at the limit, invalid data. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ws_deflate.h"
#include "proto/ws_frame.h"

static void inflate_all(const uint8_t *in, size_t n, size_t max, int want, tt__zbuf_t *out)
{
    z_stream z;
    cr_assert_eq(tt__ws_inflate_init(&z), 0);
    cr_assert_eq(tt__ws_inflate_feed(&z, in, n, true, max, true, out), want);
    tt__ws_inflate_end(&z);
}

Test(ws_deflate, the_rfc_examples)
{
    /* 7.2.3.1: "Hello" in one compressed message. */
    static const uint8_t hello[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    /* 7.2.3.2: the same, with the second message referring back to the first. */
    static const uint8_t again[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    /* 7.2.3.3: "Hello" in a stored (uncompressed) block. */
    static const uint8_t stored[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00};
    /* 7.2.3.4: "Hello" with BFINAL set. */
    static const uint8_t final[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    tt__zbuf_t out = {0};
    z_stream z;

    inflate_all(hello, sizeof(hello), 0, 0, &out);
    cr_assert_eq(out.len, 5);
    cr_assert_eq(memcmp(out.p, "Hello", 5), 0);
    out.len = 0;
    inflate_all(stored, sizeof(stored), 0, 0, &out);
    cr_assert_eq(out.len, 5);
    out.len = 0;
    inflate_all(final, sizeof(final), 0, 0, &out);
    cr_assert_eq(out.len, 5, "a block with BFINAL, then our tail: %zu bytes", out.len);
    /* Context takeover: the second message needs the first. */
    cr_assert_eq(tt__ws_inflate_init(&z), 0);
    out.len = 0;
    cr_assert_eq(tt__ws_inflate_feed(&z, hello, sizeof(hello), true, 0, false, &out), 0);
    out.len = 0;
    cr_assert_eq(tt__ws_inflate_feed(&z, again, sizeof(again), true, 0, false, &out), 0);
    cr_assert_eq(out.len, 5);
    cr_assert_eq(memcmp(out.p, "Hello", 5), 0);
    tt__ws_inflate_end(&z);
    free(out.p);
}

static void round_trip(const uint8_t *msg, size_t n, int bits, bool reset, int times)
{
    z_stream d, i;
    tt__zbuf_t wire = {0}, back = {0};

    cr_assert_eq(tt__ws_deflate_init(&d, bits), 0);
    cr_assert_eq(tt__ws_inflate_init(&i), 0);
    for (int t = 0; t < times; t++) {
        wire.len = back.len = 0;
        cr_assert_eq(tt__ws_deflate_msg(&d, msg, n, reset, &wire), 0);
        /* Fed in pieces of 7 bytes: fragments of one message. */
        for (size_t off = 0; off < wire.len || off == 0; off += 7) {
            size_t k = wire.len - off < 7 ? wire.len - off : 7;
            bool fin = off + k >= wire.len;
            cr_assert_eq(tt__ws_inflate_feed(&i, wire.p + off, k, fin, n, reset, &back), 0);
            if (fin)
                break;
        }
        cr_assert_eq(back.len, n, "round %d: %zu of %zu bytes", t, back.len, n);
        cr_assert(n == 0 || memcmp(back.p, msg, n) == 0);
    }
    tt__ws_deflate_end(&d);
    tt__ws_inflate_end(&i);
    free(wire.p);
    free(back.p);
}

Test(ws_deflate, round_trips)
{
    static uint8_t text[100000], noise[70000];
    for (size_t k = 0; k < sizeof(text); k++)
        text[k] = (uint8_t)("the quick brown fox jumps over the lazy dog "[k % 44]);
    srand(7);
    for (size_t k = 0; k < sizeof(noise); k++)
        noise[k] = (uint8_t)rand();
    round_trip(text, 0, 15, true, 2);
    round_trip(text, 5, 15, true, 3);
    round_trip(text, sizeof(text), 15, true, 3);
    round_trip(text, sizeof(text), 9, false, 3); /* context kept across messages */
    round_trip(noise, sizeof(noise), 12, true, 2);
}

Test(ws_deflate, a_small_message_without_takeover_is_small)
{
    z_stream d;
    tt__zbuf_t wire = {0};
    static const char line[] = "{\"room\":\"lobby\",\"text\":\"hello everyone, hello everyone\"}";

    cr_assert_eq(tt__ws_deflate_init(&d, 15), 0);
    cr_assert_eq(tt__ws_deflate_msg(&d, (const uint8_t *)line, sizeof(line) - 1, true, &wire), 0);
    cr_assert_lt(wire.len, sizeof(line) - 1, "compressed %zu -> %zu", sizeof(line) - 1, wire.len);
    size_t first = wire.len;
    wire.len = 0;
    cr_assert_eq(tt__ws_deflate_msg(&d, (const uint8_t *)line, sizeof(line) - 1, true, &wire), 0);
    cr_assert_eq(wire.len, first, "reset: the second message does not refer to the first");
    tt__ws_deflate_end(&d);
    free(wire.p);
}

Test(ws_deflate, a_bomb_stops_at_the_limit)
{
    static uint8_t zeros[8 << 20];
    z_stream d, i;
    tt__zbuf_t wire = {0}, out = {0};
    size_t max = 1 << 20;

    cr_assert_eq(tt__ws_deflate_init(&d, 15), 0);
    cr_assert_eq(tt__ws_deflate_msg(&d, zeros, sizeof(zeros), true, &wire), 0);
    cr_assert_lt(wire.len, 16384, "8 MiB of zeros take %zu bytes", wire.len);
    cr_assert_eq(tt__ws_inflate_init(&i), 0);
    cr_assert_eq(tt__ws_inflate_feed(&i, wire.p, wire.len, true, max, true, &out), -TT__WS_TOO_BIG);
    /* Memory stays near the limit, not the 8 MiB the bytes would inflate to. */
    cr_assert_leq(out.len, max + 1);
    cr_assert_leq(out.cap, 2 * max + 16384, "grew to %zu for a %zu limit", out.cap, max);
    tt__ws_deflate_end(&d);
    tt__ws_inflate_end(&i);
    free(wire.p);
    free(out.p);
}

Test(ws_deflate, invalid_data)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    tt__zbuf_t out = {0};
    inflate_all(junk, sizeof(junk), 0, -TT__WS_INVALID_DATA, &out);
    free(out.p);
}
