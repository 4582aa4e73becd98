/* Framing codecs, pure: every decoder is fed each input whole, split in two at
 * every byte position, split in three at every pair of positions (small inputs),
 * and one byte at a time; all must yield the same messages and the same error. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame_codec.h"

#define MAX_MSGS 64
#define MAX_MSG 1024

typedef struct {
    int n;
    int type[MAX_MSGS];
    size_t len[MAX_MSGS];
    char msg[MAX_MSGS][MAX_MSG];
    int err;           /* the feed's error, 0 if none */
    size_t max_cap;    /* largest partial buffer seen */
    int not_in_place;  /* messages not pointing into the piece fed (one-shot runs) */
    const char *piece; /* the piece being fed */
    size_t piece_len;
    int stop_after; /* emit returns 1 after this many messages (0: never) */
} sink_t;

static int collect(void *ctx, int type, const char *msg, size_t len, const tt__frame_t *fr)
{
    sink_t *s = ctx;
    (void)fr;
    cr_assert_lt(s->n, MAX_MSGS);
    cr_assert_leq(len, MAX_MSG);
    s->type[s->n] = type;
    s->len[s->n] = len;
    memcpy(s->msg[s->n], msg, len);
    if (len > 0 && (msg < s->piece || msg + len > s->piece + s->piece_len))
        s->not_in_place++;
    s->n++;
    return s->stop_after != 0 && s->n >= s->stop_after;
}

/* Feed `in` cut at the `ncuts` positions in `cuts` (ascending). */
static void run(const tt__codec_t *fc, const char *in, size_t n, const size_t *cuts, int ncuts,
                sink_t *out)
{
    tt__fstream_t st;
    size_t at = 0;

    memset(out, 0, sizeof(*out));
    tt__fstream_init(&st, fc);
    for (int i = 0; i <= ncuts && out->err == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        out->piece = in + at;
        out->piece_len = end - at;
        ssize_t r = tt__fstream_feed(&st, in + at, end - at, collect, out);
        if (r < 0)
            out->err = (int)r;
        else
            cr_assert_eq((size_t)r, end - at, "feed consumed %zd of %zu", r, end - at);
        if (st.cap > out->max_cap)
            out->max_cap = st.cap;
        cr_assert_leq(st.cap, fc->cap, "buffer %zu over the cap %zu", st.cap, fc->cap);
        if (st.len == 0)
            cr_assert_null(st.buf, "an empty partial buffer must be released");
        at = end;
    }
    tt__fstream_free(&st);
}

static void same(const sink_t *a, const sink_t *b, const char *how)
{
    cr_assert_eq(a->err, b->err, "%s: error %d vs %d", how, a->err, b->err);
    cr_assert_eq(a->n, b->n, "%s: %d messages vs %d", how, a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        cr_assert_eq(a->type[i], b->type[i], "%s: message %d type %d vs %d", how, i, a->type[i],
                     b->type[i]);
        cr_assert_eq(a->len[i], b->len[i], "%s: message %d len %zu vs %zu", how, i, a->len[i],
                     b->len[i]);
        cr_assert_eq(memcmp(a->msg[i], b->msg[i], a->len[i]), 0, "%s: message %d differs", how,
                     i);
    }
}

/* Every split of `in` must give exactly what the one-shot feed gives; the
 * one-shot result is returned for the test's own expectations. */
static sink_t *every_split(const tt_frame_opts_t *o, const char *in, size_t n)
{
    static sink_t whole, part;
    tt__codec_t fc;
    size_t cuts[2];
    char how[64];

    cr_assert_eq(tt__codec_init(&fc, o), 0);
    run(&fc, in, n, NULL, 0, &whole);
    cr_assert_eq(whole.not_in_place, 0, "one-shot: %d messages were copied", whole.not_in_place);
    for (size_t i = 0; i <= n; i++) {
        cuts[0] = i;
        run(&fc, in, n, cuts, 1, &part);
        snprintf(how, sizeof(how), "split at %zu", i);
        same(&whole, &part, how);
        if (n > 64)
            continue;
        for (size_t j = i; j <= n; j++) {
            cuts[1] = j;
            run(&fc, in, n, cuts, 2, &part);
            snprintf(how, sizeof(how), "split at %zu and %zu", i, j);
            same(&whole, &part, how);
        }
    }
    /* One byte at a time. */
    size_t *all = malloc(sizeof(size_t) * (n + 1));
    for (size_t i = 0; i < n; i++)
        all[i] = i + 1;
    run(&fc, in, n, all, (int)n, &part);
    free(all);
    same(&whole, &part, "byte by byte");
    return &whole;
}

static void expect_msgs(const sink_t *s, int err, int n, const char *const *msgs,
                        const size_t *lens)
{
    cr_assert_eq(s->err, err, "error %d (%s), expected %d (%s)", s->err, tt_err_name(s->err),
                 err, tt_err_name(err));
    cr_assert_eq(s->n, n, "%d messages, expected %d", s->n, n);
    for (int i = 0; i < n; i++) {
        size_t l = lens != NULL ? lens[i] : strlen(msgs[i]);
        cr_assert_eq(s->type[i], TT__FR_MSG, "message %d type %d", i, s->type[i]);
        cr_assert_eq(s->len[i], l, "message %d: %zu bytes, expected %zu", i, s->len[i], l);
        cr_assert_eq(memcmp(s->msg[i], msgs[i], l), 0, "message %d: \"%.*s\" vs \"%.*s\"", i,
                     (int)l, s->msg[i], (int)l, msgs[i]);
    }
}

/* Build header+message frames with the codec's own encoder. */
static size_t encode(const tt_frame_opts_t *o, const char *const *msgs, const size_t *lens,
                     int n, char *out)
{
    tt__codec_t fc;
    size_t at = 0;

    cr_assert_eq(tt__codec_init(&fc, o), 0);
    for (int i = 0; i < n; i++) {
        size_t l = lens != NULL ? lens[i] : strlen(msgs[i]);
        int h = tt__codec_header(&fc, TT__FR_MSG, l, (unsigned char *)out + at);
        cr_assert_geq(h, 0, "header for %zu bytes: %d", l, h);
        at += (size_t)h;
        memcpy(out + at, msgs[i], l);
        at += l;
    }
    return at;
}

/* ---- length prefix ------------------------------------------------------------- */

Test(frame_length, u32be_splits_hello_sfml_at_every_byte)
{
    const char in[] = "\0\0\0\5Hello\0\0\0\4SFML";
    tt_frame_opts_t o = tt_frame_u32be(0);
    const char *want[] = {"Hello", "SFML"};
    expect_msgs(every_split(&o, in, sizeof(in) - 1), 0, 2, want, NULL);
}

Test(frame_length, every_preset_round_trips_empty_small_and_long_messages)
{
    static char big[700], in[4096];
    memset(big, 'x', sizeof(big));
    big[0] = 'A', big[699] = 'Z';
    const char *msgs[] = {"", "a", big, "tail"};
    size_t lens[] = {0, 1, sizeof(big), 4};
    tt_frame_opts_t presets[] = {tt_frame_u16be(0), tt_frame_u32be(0), tt_frame_u32le(0),
                                 tt_frame_length(8, false, 0), tt_frame_length(8, true, 0),
                                 tt_frame_varint(0)};
    for (size_t p = 0; p < sizeof(presets) / sizeof(presets[0]); p++) {
        size_t n = encode(&presets[p], msgs, lens, 4, in);
        expect_msgs(every_split(&presets[p], in, n), 0, 4, msgs, lens);
    }
}

Test(frame_length, one_byte_field_and_little_endian_bytes_are_read_as_specified)
{
    tt_frame_opts_t o = tt_frame_length(1, false, 0);
    const char *want[] = {"abc"};
    expect_msgs(every_split(&o, "\3abc", 4), 0, 1, want, NULL);

    o = tt_frame_u32le(0);
    const char *want2[] = {"0123456789"};
    expect_msgs(every_split(&o, "\12\0\0\0" "0123456789", 14), 0, 1, want2, NULL);
}

Test(frame_length, netty_length_includes_header_and_nothing_stripped)
{
    /* Netty's example: lengthAdjustment = -2, strip 0: the 0x000E field counts
     * itself, and the delivered frame still starts with the header. */
    tt_frame_opts_t o = tt_frame_length(2, false, 0);
    o.length.adjust = -2;
    o.length.strip = 0;
    const char *want[] = {"\0\16HELLO, WORLD"};
    size_t lens[] = {14};
    expect_msgs(every_split(&o, "\0\16HELLO, WORLD", 14), 0, 1, want, lens);
}

Test(frame_length, netty_offset_header_before_field_then_partial_strip)
{
    /* HDR1 LEN(2) HDR2 body: offset 1, adjust 1 (HDR2 is not counted), strip 3. */
    tt_frame_opts_t o = tt_frame_length(2, false, 0);
    o.length.offset = 1;
    o.length.adjust = 1;
    o.length.strip = 3;
    const char in[] = "\xCA\0\14\xFEHELLO, WORLD" "\xCA\0\2\xFEok";
    const char *want[] = {"\xFEHELLO, WORLD", "\xFEok"};
    size_t lens[] = {13, 3};
    expect_msgs(every_split(&o, in, sizeof(in) - 1), 0, 2, want, lens);
}

Test(frame_length, claimed_length_over_limit_fails_at_the_header_without_buffering_it)
{
    tt_frame_opts_t o = tt_frame_u32be(1024);
    sink_t *s = every_split(&o, "\0\0\4\1" "abcdef", 10); /* 1025 > 1024 */
    expect_msgs(s, TT_EFRAMESIZE, 0, NULL, NULL);

    o = tt_frame_length(8, false, 1024);
    s = every_split(&o, "\xff\xff\xff\xff\xff\xff\xff\xff" "x", 9);
    expect_msgs(s, TT_EFRAMESIZE, 0, NULL, NULL);
}

Test(frame_length, exactly_max_frame_is_accepted)
{
    static char in[4 + 1024];
    tt_frame_opts_t o = tt_frame_u32be(1024);
    memcpy(in, "\0\0\4\0", 4);
    memset(in + 4, 'm', 1024);
    sink_t *s = every_split(&o, in, sizeof(in));
    cr_assert_eq(s->err, 0);
    cr_assert_eq(s->n, 1);
    cr_assert_eq(s->len[0], 1024u, "len %zu", s->len[0]);
}

Test(frame_length, buffer_grows_with_bytes_received_not_with_the_claimed_length)
{
    /* Claims 1 MiB, sends 10 bytes: the partial buffer stays small. */
    tt__codec_t fc;
    sink_t s;
    tt_frame_opts_t o = tt_frame_u32be(2 << 20);
    cr_assert_eq(tt__codec_init(&fc, &o), 0);
    run(&fc, "\0\x10\0\0" "0123456789", 14, (size_t[]){4}, 1, &s);
    cr_assert_eq(s.err, 0);
    cr_assert_eq(s.n, 0);
    cr_assert_leq(s.max_cap, 256u, "buffer of %zu bytes for 10 received", s.max_cap);
}

Test(frame_length, adjustment_that_ends_the_frame_inside_its_header_is_a_protocol_error)
{
    tt_frame_opts_t o = tt_frame_length(2, false, 0);
    o.length.adjust = -2;
    o.length.strip = 0;
    expect_msgs(every_split(&o, "\0\1zz", 4), TT_EPROTOCOL, 0, NULL, NULL);
    /* More to strip than the frame holds. */
    o = tt_frame_length(2, false, 0);
    o.length.strip = 5;
    expect_msgs(every_split(&o, "\0\1z", 3), TT_EPROTOCOL, 0, NULL, NULL);
}

Test(frame_length, control_frames_are_ping_and_pong_and_carry_no_body)
{
    tt_frame_opts_t o = tt_frame_u32be(0);
    o.control = true;
    const char in[] = "\xff\xff\xff\xff" "\0\0\0\2hi" "\xff\xff\xff\xfe";
    sink_t *s = every_split(&o, in, sizeof(in) - 1);
    cr_assert_eq(s->err, 0);
    cr_assert_eq(s->n, 3, "n %d", s->n);
    cr_assert_eq(s->type[0], TT__FR_PING);
    cr_assert_eq(s->type[1], TT__FR_MSG);
    cr_assert_eq(s->len[1], 2u);
    cr_assert_eq(s->type[2], TT__FR_PONG);

    /* Without the convention those lengths are simply too large. */
    o.control = false;
    expect_msgs(every_split(&o, in, sizeof(in) - 1), TT_EFRAMESIZE, 0, NULL, NULL);
}

Test(frame_length, encoder_refuses_what_the_receiver_would_refuse)
{
    tt__codec_t fc;
    unsigned char h[TT__HDR_MAX];
    tt_frame_opts_t o = tt_frame_length(1, false, 0);
    o.control = true;
    cr_assert_eq(tt__codec_init(&fc, &o), 0);
    cr_assert_eq(tt__codec_header(&fc, TT__FR_MSG, 253, h), 1);
    cr_assert_eq(tt__codec_header(&fc, TT__FR_MSG, 254, h), -EMSGSIZE); /* the pong value */
    cr_assert_eq(tt__codec_header(&fc, TT__FR_PING, 0, h), 1);
    cr_assert_eq(h[0], 0xff);
    o = tt_frame_u32be(100);
    cr_assert_eq(tt__codec_init(&fc, &o), 0);
    cr_assert_eq(tt__codec_header(&fc, TT__FR_MSG, 101, h), -EMSGSIZE);
    cr_assert_eq(tt__codec_header(&fc, TT__FR_PING, 0, h), -ENOTSUP);
    o = tt_frame_fixed(8);
    cr_assert_eq(tt__codec_init(&fc, &o), 0);
    cr_assert_eq(tt__codec_header(&fc, TT__FR_MSG, 7, h), -EMSGSIZE);
    cr_assert_eq(tt__codec_header(&fc, TT__FR_MSG, 8, h), 0);
}

/* ---- varint ------------------------------------------------------------------- */

Test(frame_varint, two_byte_lengths_split_everywhere)
{
    static char body[300], in[400];
    memset(body, 'v', sizeof(body));
    memcpy(in, "\xac\x02", 2); /* 300, as in the protobuf encoding guide */
    memcpy(in + 2, body, 300);
    tt_frame_opts_t o = tt_frame_varint(0);
    const char *want[] = {body};
    size_t lens[] = {300};
    expect_msgs(every_split(&o, in, 302), 0, 1, want, lens);
}

Test(frame_varint, eleven_byte_or_overflowing_varints_are_protocol_errors)
{
    tt_frame_opts_t o = tt_frame_varint(0);
    o.control = true; /* so the value alone cannot fail it early */
    expect_msgs(every_split(&o, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11),
                TT_EPROTOCOL, 0, NULL, NULL);
    expect_msgs(every_split(&o, "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02", 10), TT_EPROTOCOL,
                0, NULL, NULL);
}

Test(frame_varint, a_partial_varint_already_over_the_limit_fails_early)
{
    tt__codec_t fc;
    sink_t s;
    tt_frame_opts_t o = tt_frame_varint(100);
    cr_assert_eq(tt__codec_init(&fc, &o), 0);
    run(&fc, "\xff\xff", 2, NULL, 0, &s); /* at least 16383 */
    cr_assert_eq(s.err, TT_EFRAMESIZE, "err %d", s.err);
}

Test(frame_varint, control_frames_use_the_all_ones_value)
{
    tt_frame_opts_t o = tt_frame_varint(0);
    o.control = true;
    const char in[] = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01" "\1x";
    sink_t *s = every_split(&o, in, sizeof(in) - 1);
    cr_assert_eq(s->err, 0);
    cr_assert_eq(s->n, 2);
    cr_assert_eq(s->type[0], TT__FR_PING);
    cr_assert_eq(s->type[1], TT__FR_MSG);
}

/* ---- delimiters --------------------------------------------------------------- */

Test(frame_delim, lines_split_everywhere_including_empty_lines)
{
    tt_frame_opts_t o = tt_frame_line(0);
    const char *want[] = {"Hello", "", "SFML"};
    expect_msgs(every_split(&o, "Hello\n\nSFML\npartial", 19), 0, 3, want, NULL);
}

Test(frame_delim, strict_crlf_keeps_bare_lf_as_data)
{
    tt_frame_opts_t o = tt_frame_crlf(false, 0);
    const char *want[] = {"a\nb", "c\r"};
    expect_msgs(every_split(&o, "a\nb\r\nc\r\r\n", 10), 0, 2, want, NULL);
}

Test(frame_delim, lenient_crlf_accepts_bare_lf_and_drops_one_cr)
{
    tt_frame_opts_t o = tt_frame_crlf(true, 0);
    const char *want[] = {"a", "b", "c\r", ""};
    expect_msgs(every_split(&o, "a\nb\r\nc\r\r\n\n", 11), 0, 4, want, NULL);
}

Test(frame_delim, multi_byte_delimiter_across_every_boundary)
{
    tt_frame_opts_t o = tt_frame_delimiter("--END--", 7, 0);
    const char in[] = "one--EN--END--two---END----END--three--END--";
    const char *want[] = {"one--EN", "two-", "", "three"};
    expect_msgs(every_split(&o, in, sizeof(in) - 1), 0, 4, want, NULL);
}

Test(frame_delim, self_overlapping_delimiter_ends_at_its_first_occurrence)
{
    tt_frame_opts_t o = tt_frame_delimiter("aab", 3, 0);
    const char *want[] = {"a", "x"};
    expect_msgs(every_split(&o, "aaabxaab", 8), 0, 2, want, NULL);
}

Test(frame_delim, line_over_the_limit_fails_as_soon_as_the_limit_is_passed)
{
    tt_frame_opts_t o = tt_frame_line(5);
    const char *want[] = {"12345"};
    expect_msgs(every_split(&o, "12345\n12345", 11), 0, 1, want, NULL);
    expect_msgs(every_split(&o, "12345\n123456", 12), TT_EFRAMESIZE, 1, want, NULL);
    expect_msgs(every_split(&o, "123456\n", 7), TT_EFRAMESIZE, 0, NULL, NULL);
    o = tt_frame_crlf(true, 5);
    expect_msgs(every_split(&o, "12345\r\n12345\r", 13), 0, 1, want, NULL);
    o = tt_frame_delimiter("<>", 2, 3);
    const char *want3[] = {"abc"};
    expect_msgs(every_split(&o, "abc<>abc<", 9), 0, 1, want3, NULL);
    expect_msgs(every_split(&o, "abc<>abcd", 9), TT_EFRAMESIZE, 1, want3, NULL);
    /* A trailing delimiter prefix might still be the delimiter: not yet over. */
    expect_msgs(every_split(&o, "abc<>abc<", 9), 0, 1, want3, NULL);
    expect_msgs(every_split(&o, "abc<>abc<<", 10), TT_EFRAMESIZE, 1, want3, NULL);
}

Test(frame_delim, buffer_is_bounded_by_the_limit_on_an_endless_line)
{
    static char in[10000];
    tt__codec_t fc;
    sink_t s;
    tt_frame_opts_t o = tt_frame_line(1000);
    memset(in, 'z', sizeof(in));
    cr_assert_eq(tt__codec_init(&fc, &o), 0);
    size_t cuts[99];
    for (int i = 0; i < 99; i++)
        cuts[i] = (size_t)(i + 1) * 100;
    run(&fc, in, sizeof(in), cuts, 99, &s);
    cr_assert_eq(s.err, TT_EFRAMESIZE);
    cr_assert_leq(s.max_cap, 1001u, "cap %zu", s.max_cap);
}

/* ---- fixed -------------------------------------------------------------------- */

Test(frame_fixed, four_byte_records_split_everywhere)
{
    tt_frame_opts_t o = tt_frame_fixed(4);
    const char *want[] = {"abcd", "efgh"};
    expect_msgs(every_split(&o, "abcdefghij", 10), 0, 2, want, NULL);
}

/* ---- custom: netstrings ("5:hello,") ------------------------------------------ */

static ssize_t netstring(const void *buf, size_t len, size_t *skip, void *arg)
{
    const char *p = buf;
    size_t n = 0, i;
    (void)arg;
    for (i = 0; i < len && p[i] != ':'; i++) {
        if (p[i] < '0' || p[i] > '9' || i >= 9)
            return TT_EPROTOCOL;
        n = n * 10 + (size_t)(p[i] - '0');
    }
    if (i == len)
        return 0;
    if (i == 0)
        return TT_EPROTOCOL;
    if (len < i + 1 + n + 1)
        return 0;
    if (p[i + 1 + n] != ',')
        return TT_EPROTOCOL;
    *skip = i + 1;
    return (ssize_t)(i + 1 + n + 1);
}

Test(frame_custom, netstrings_split_everywhere)
{
    /* The skip drops the "N:" prefix; the ',' is part of what is delivered. */
    tt_frame_opts_t o = tt_frame_custom(netstring, NULL, 0);
    const char *want[] = {"hello,", ",", "SFML,"};
    size_t lens[] = {6, 1, 5};
    expect_msgs(every_split(&o, "5:hello,0:,4:SFML,", 18), 0, 3, want, lens);
}

Test(frame_custom, malformed_and_never_ending_and_inconsistent_decoders_close)
{
    tt_frame_opts_t o = tt_frame_custom(netstring, NULL, 0);
    const char *want[] = {"a,"};
    size_t l[] = {2};
    expect_msgs(every_split(&o, "1:a,x:", 6), TT_EPROTOCOL, 1, want, l);
    expect_msgs(every_split(&o, "3:abcX", 6), TT_EPROTOCOL, 0, NULL, NULL);
    o.max_frame = 8; /* "9:" needs 12 bytes */
    expect_msgs(every_split(&o, "9:abcdefghi,", 12), TT_EFRAMESIZE, 0, NULL, NULL);
}

static ssize_t claims_too_much(const void *buf, size_t len, size_t *skip, void *arg)
{
    (void)buf, (void)skip, (void)arg;
    return (ssize_t)len + 1; /* a frame beyond the bytes it was shown */
}

Test(frame_custom, a_frame_longer_than_the_bytes_shown_is_a_protocol_error)
{
    tt_frame_opts_t o = tt_frame_custom(claims_too_much, NULL, 0);
    expect_msgs(every_split(&o, "abc", 3), TT_EPROTOCOL, 0, NULL, NULL);
}

/* ---- the stream decoder ------------------------------------------------------- */

Test(frame_stream, emit_can_stop_decoding_and_the_rest_is_left_unread)
{
    tt__codec_t fc;
    tt__fstream_t st;
    sink_t s;
    tt_frame_opts_t o = tt_frame_line(0);
    cr_assert_eq(tt__codec_init(&fc, &o), 0);
    memset(&s, 0, sizeof(s));
    s.stop_after = 1;
    tt__fstream_init(&st, &fc);
    s.piece = "ab";
    s.piece_len = 2;
    cr_assert_eq(tt__fstream_feed(&st, "ab", 2, collect, &s), 2);
    s.piece = "c\nrest\n";
    s.piece_len = 7;
    ssize_t r = tt__fstream_feed(&st, "c\nrest\n", 7, collect, &s);
    cr_assert_eq(r, 2, "consumed %zd", r);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(memcmp(s.msg[0], "abc", 3), 0);
    cr_assert_eq(st.len, 0u);
    cr_assert_null(st.buf);
    tt__fstream_free(&st);
}

Test(frame_opts, invalid_options_are_refused)
{
    tt__codec_t fc;
    tt_frame_opts_t o = tt_frame_length(3, false, 0);
    cr_assert_eq(tt__codec_init(&fc, &o), -EINVAL);
    o = tt_frame_u32be(TT_FRAME_MAX_LIMIT + 1);
    cr_assert_eq(tt__codec_init(&fc, &o), -EINVAL);
    o = tt_frame_delimiter("", 0, 0);
    cr_assert_eq(tt__codec_init(&fc, &o), -EINVAL);
    o = tt_frame_delimiter("0123456789abcdefg", 17, 0);
    cr_assert_eq(tt__codec_init(&fc, &o), -EINVAL);
    o = tt_frame_line(0);
    o.delim.accept_lf = true; /* only meaningful with "\r\n" */
    cr_assert_eq(tt__codec_init(&fc, &o), -EINVAL);
    o.delim.accept_lf = false;
    o.control = true;
    cr_assert_eq(tt__codec_init(&fc, &o), -EINVAL);
    o = tt_frame_fixed(0);
    cr_assert_eq(tt__codec_init(&fc, &o), -EINVAL);
    o = tt_frame_custom(NULL, NULL, 0);
    cr_assert_eq(tt__codec_init(&fc, &o), -EINVAL);
    memset(&o, 0, sizeof(o));
    cr_assert_eq(tt__codec_init(&fc, &o), -EINVAL);
}
