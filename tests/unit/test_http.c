/* The HTTP/1.1 request-head parser (src/proto/http.c) on its own: what it accepts,
 * byte-by-byte arrival, and each thing it must refuse with the status the RFC
 * names. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "proto/http.h"

static int parse(const char *s, tt__http_req_t *req)
{
    return tt__http_parse(s, strlen(s), NULL, req);
}

static bool str_is(tt__str_t s, const char *c) { return s.len == strlen(c) && memcmp(s.p, c, s.len) == 0; }

static const char upgrade[] = "GET /chat?room=7&x=1 HTTP/1.1\r\n"
                              "Host: example.test:8080\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: keep-alive, Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n"
                              "Origin:   http://example.test  \r\n"
                              "\r\n"
                              "after the head";

Test(http, an_upgrade_request)
{
    tt__http_req_t r;

    cr_assert_eq(parse(upgrade, &r), TT__HTTP_OK);
    cr_assert(str_is(r.method, "GET"));
    cr_assert(str_is(r.target, "/chat?room=7&x=1"));
    cr_assert(str_is(r.path, "/chat"));
    cr_assert(str_is(r.query, "room=7&x=1"));
    cr_assert_eq(r.minor, 1);
    cr_assert_eq(r.nfields, 6);
    cr_assert_eq(r.head_len, strlen(upgrade) - strlen("after the head"));
    cr_assert(str_is(*tt__http_get(&r, "sec-websocket-key"), "dGhlIHNhbXBsZSBub25jZQ=="));
    cr_assert(str_is(*tt__http_get(&r, "ORIGIN"), "http://example.test"), "value trimmed");
    cr_assert_null(tt__http_get(&r, "Cookie"));
    cr_assert(tt__http_has_token(&r, "connection", "upgrade"));
    cr_assert(tt__http_has_token(&r, "Connection", "keep-alive"));
    cr_assert(!tt__http_has_token(&r, "Connection", "close"));
    cr_assert(tt__http_has_token(&r, "Upgrade", "WebSocket"));
    cr_assert(!r.has_content_length);
}

Test(http, byte_by_byte_it_waits_then_parses_the_same)
{
    tt__http_req_t r, whole;
    size_t head = strlen(upgrade) - strlen("after the head");

    cr_assert_eq(parse(upgrade, &whole), TT__HTTP_OK);
    for (size_t n = 0; n < head; n++)
        cr_assert_eq(tt__http_parse(upgrade, n, NULL, &r), TT__HTTP_MORE, "at %zu bytes", n);
    cr_assert_eq(tt__http_parse(upgrade, head, NULL, &r), TT__HTTP_OK);
    cr_assert_eq(r.nfields, whole.nfields);
    cr_assert_eq(r.head_len, head);
}

Test(http, what_it_accepts)
{
    tt__http_req_t r;

    cr_assert_eq(parse("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &r), TT__HTTP_OK,
                 "empty lines before the request line are ignored");
    cr_assert_eq(parse("GET / HTTP/1.0\r\n\r\n", &r), TT__HTTP_OK, "1.0 needs no Host");
    cr_assert_eq(r.minor, 0);
    cr_assert_eq(parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &r), TT__HTTP_OK);
    cr_assert(str_is(r.target, "*"));
    cr_assert_eq(parse("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n"
                       "content-length: 12\r\n\r\n",
                       &r),
                 TT__HTTP_OK, "the same length twice is one length");
    cr_assert_eq(r.content_length, 12);
    cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Bin: caf\xc3\xa9\r\n\r\n", &r),
                 TT__HTTP_OK, "an empty value, obs-text");
    cr_assert_eq(tt__http_get(&r, "x-empty")->len, 0);
}

Test(http, what_it_refuses_and_with_which_status)
{
    static const struct {
        const char *req;
        int status;
        const char *why;
    } cases[] = {
        {"GET / HTTP/1.1\nHost: a\n\n", 400, "bare LF"},
        {"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400, "bare CR"},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n", 400, "obsolete line folding"},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "whitespace before the colon"},
        {"GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", 400, "no field name"},
        {"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", 400, "a name that is no token"},
        {"GET / HTTP/1.1\r\nHost: a\x01z\r\n\r\n", 400, "a control character in a value"},
        {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "a method that is no token"},
        {" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "no method"},
        {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "two spaces"},
        {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "trailing space"},
        {"GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400, "junk after the version"},
        {"GET / FTP/1.1\r\nHost: a\r\n\r\n", 400, "not HTTP"},
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HTTP/2 in an HTTP/1 head"},
        {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "HTTP/1.2"},
        {"GET / HTTP/1.1\r\n\r\n", 400, "no Host"},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "two Hosts"},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "chunked body"},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
         "two lengths"},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400, "a length list"},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, "a sign"},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400,
         "past 64 bits"},
    };
    tt__http_req_t r;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_expect_eq(parse(cases[i].req, &r), cases[i].status, "%s: got %d, want %d", cases[i].why,
                     parse(cases[i].req, &r), cases[i].status);
}

Test(http, a_bad_line_is_refused_before_the_head_is_complete)
{
    tt__http_req_t r;

    /* No blank line yet: a patient parser would wait for the size limit. */
    cr_assert_eq(parse("GET / HTTP/1.1\r\nBad Field\r\n", &r), 400);
    static const char hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    cr_assert_eq(tt__http_parse(hello, sizeof(hello) - 1, NULL, &r), 400,
                 "a TLS hello on a plaintext port, refused at its first byte");
    cr_assert_eq(parse("GE", &r), TT__HTTP_MORE, "a method still arriving waits");
    cr_assert_eq(parse("\r", &r), TT__HTTP_MORE, "the start of an empty line before the request");
    cr_assert_eq(parse("\r\n\r", &r), TT__HTTP_MORE);
    cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a", &r), TT__HTTP_MORE, "a good partial line waits");
}

Test(http, limits_on_size_and_field_count)
{
    tt__http_limits_t lim = {.max_head = 64, .max_fields = 3};
    tt__http_req_t r;
    char big[256];

    /* The head never ends within the limit: refused at the limit, not waited for. */
    snprintf(big, sizeof(big), "GET /%0100d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
    cr_assert_eq(tt__http_parse(big, 40, &lim, &r), TT__HTTP_MORE);
    cr_assert_eq(tt__http_parse(big, strlen(big), &lim, &r), 431);
    static const char four[] = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    cr_assert_eq(tt__http_parse(four, sizeof(four) - 1, &lim, &r), 431,
                 "four fields where three are allowed");
    cr_assert_eq(tt__http_parse("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\n\r\n", 33, &lim, &r),
                 TT__HTTP_OK);
    /* The default limits: 8192 bytes. */
    static char huge[9000];
    memset(huge, 'a', sizeof(huge));
    memcpy(huge, "GET /", 5);
    cr_assert_eq(tt__http_parse(huge, sizeof(huge), NULL, &r), 431);
}

Test(http, reasons)
{
    cr_assert_str_eq(tt__http_reason(101), "Switching Protocols");
    cr_assert_str_eq(tt__http_reason(404), "Not Found");
    cr_assert_str_eq(tt__http_reason(431), "Request Header Fields Too Large");
    cr_assert_str_eq(tt__http_reason(999), "");
}

/* ---- response heads (the answer a WebSocket client reads) ---------------------------- */

static int parse_resp(const char *s, tt__http_req_t *r)
{
    return tt__http_parse_response(s, strlen(s), NULL, r);
}

Test(http, a_switching_protocols_answer)
{
    static const char a[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nTransfer-Encoding: chunked\r\n\r\n\x81\x00";
    tt__http_req_t r;
    cr_assert_eq(parse_resp(a, &r), TT__HTTP_OK);
    cr_assert_eq(r.status, 101);
    cr_assert_eq(r.minor, 1);
    cr_assert(str_is(r.reason, "Switching Protocols"));
    cr_assert_eq(r.nfields, 3, "no Host needed; Transfer-Encoding is only a field here");
    cr_assert_eq(r.head_len, sizeof(a) - 1 - 2, "the frame after the head is not part of it");
    for (size_t cut = 0; cut < r.head_len; cut++)
        cr_assert_eq(tt__http_parse_response(a, cut, NULL, &r), TT__HTTP_MORE, "cut at %zu", cut);
}

Test(http, answers_with_an_empty_reason)
{
    tt__http_req_t r;
    cr_assert_eq(parse_resp("HTTP/1.1 404 \r\n\r\n", &r), TT__HTTP_OK);
    cr_assert_eq(r.status, 404);
    cr_assert_eq(r.reason.len, 0);
    cr_assert_eq(parse_resp("HTTP/1.0 200\r\n\r\n", &r), TT__HTTP_OK, "no SP: tolerated");
    cr_assert_eq(r.minor, 0);
}

Test(http, bad_answers)
{
    static const char *const bad[] = {
        "HTTP/1.1 10 Short\r\n\r\n", "HTTP/1.1 1010 Long\r\n\r\n", "HTTP/1.1 abc x\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",  "HTTP/11 101 x\r\n\r\n",       "SSH-2.0-OpenSSH_9.2\r\n\r\n",
        "HTTP/1.1 101 ok\r\nBad Name: x\r\n\r\n", "HTTP/1.1 101 ok\r\n folded\r\n\r\n",
        "HTTP/1.1 101 ok\nUpgrade: websocket\r\n\r\n", "HTTP/1.1 101 a\x01z\r\n\r\n"};
    tt__http_req_t r;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(parse_resp(bad[i], &r), 400, "%s", bad[i]);
    cr_expect_eq(parse_resp("HTTP/2.0 101 x\r\n\r\n", &r), 505);
    tt__http_limits_t lim = {.max_head = 32};
    static const char big[] = "HTTP/1.1 101 ok\r\nX-Long: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    cr_expect_eq(tt__http_parse_response(big, strlen(big), &lim, &r), 431);
}
