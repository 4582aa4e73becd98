/* The WebSocket opening handshake and permessage-deflate negotiation on their own
 * (src/proto/ws_handshake.c): the RFC's accept example, what a server checks,
 * subprotocol choice, and which extension offers and answers are taken. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ws_frame.h"
#include "proto/ws_handshake.h"

static tt__http_req_t req;

static void parse(const char *fields)
{
    static char buf[2048];
    snprintf(buf, sizeof(buf), "GET /chat HTTP/1.1\r\nHost: a\r\n%s\r\n", fields);
    cr_assert_eq(tt__http_parse(buf, strlen(buf), NULL, &req), TT__HTTP_OK, "%s", buf);
}

static tt__str_t S(const char *s) { return (tt__str_t){s, strlen(s)}; }

#define GOOD "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

Test(ws_handshake, the_rfc_accept_example)
{
    char out[TT__WS_ACCEPT_LEN + 1];
    tt__ws_accept_for("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(ws_handshake, keys)
{
    char a[TT__WS_KEY_LEN + 1], b[TT__WS_KEY_LEN + 1];

    cr_assert(tt__ws_key_ok(S("dGhlIHNhbXBsZSBub25jZQ==")));
    cr_assert(!tt__ws_key_ok(S("dGhlIHNhbXBsZSBub25jZQ=")), "23 characters");
    cr_assert(!tt__ws_key_ok(S("dGhlIHNhbXBsZSBub25jZR==")), "bits past the 16 bytes");
    cr_assert(!tt__ws_key_ok(S("dGhlIHNhbXBsZSBub2*jZQ==")), "not base64");
    cr_assert(!tt__ws_key_ok(S("dGhlIHNhbXBsZSBub25jZQAA")), "no padding: 18 bytes");
    cr_assert_eq(tt__ws_key_new(a), 0);
    cr_assert_eq(tt__ws_key_new(b), 0);
    cr_assert_eq(strlen(a), TT__WS_KEY_LEN);
    cr_assert(tt__ws_key_ok(S(a)), "%s", a);
    cr_assert_str_neq(a, b, "two random keys alike");
}

Test(ws_handshake, what_a_server_checks)
{
    parse(GOOD "Sec-WebSocket-Version: 13\r\n");
    cr_assert_eq(tt__ws_check_upgrade(&req), 0);
    cr_assert(tt__ws_is_upgrade(&req));
    parse("Upgrade: WebSocket\r\nConnection: keep-alive, upgrade\r\nSec-WebSocket-Key: "
          "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
    cr_assert_eq(tt__ws_check_upgrade(&req), 0, "tokens are case-insensitive and listed");
    parse(GOOD "Sec-WebSocket-Version: 8\r\n");
    cr_assert_eq(tt__ws_check_upgrade(&req), 426);
    parse(GOOD);
    cr_assert_eq(tt__ws_check_upgrade(&req), 426, "no version");
    parse("Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
    cr_assert_eq(tt__ws_check_upgrade(&req), 400, "no Upgrade");
    cr_assert(!tt__ws_is_upgrade(&req));
    parse("Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
    cr_assert_eq(tt__ws_check_upgrade(&req), 400, "no Connection: upgrade");
    parse("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n");
    cr_assert_eq(tt__ws_check_upgrade(&req), 400, "a bad key");
    static const char post[] = "POST /chat HTTP/1.1\r\nHost: a\r\n" GOOD "Sec-WebSocket-Version: 13\r\n\r\n";
    cr_assert_eq(tt__http_parse(post, sizeof(post) - 1, NULL, &req), TT__HTTP_OK);
    cr_assert_eq(tt__ws_check_upgrade(&req), 405);
}

Test(ws_handshake, subprotocols_in_the_servers_order)
{
    char out[64];

    parse(GOOD "Sec-WebSocket-Protocol: chat, superchat\r\n");
    tt__ws_pick_protocol(&req, "superchat, chat", out, sizeof(out));
    cr_assert_str_eq(out, "superchat");
    tt__ws_pick_protocol(&req, "mqtt", out, sizeof(out));
    cr_assert_str_eq(out, "");
    tt__ws_pick_protocol(&req, "Chat", out, sizeof(out));
    cr_assert_str_eq(out, "", "names are case-sensitive");
    parse(GOOD "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n");
    tt__ws_pick_protocol(&req, "b", out, sizeof(out));
    cr_assert_str_eq(out, "b", "across header lines");
    parse(GOOD);
    tt__ws_pick_protocol(&req, "chat", out, sizeof(out));
    cr_assert_str_eq(out, "", "none offered");
}

Test(ws_handshake, which_deflate_offer_is_taken)
{
    tt__ws_pmd_t p;

    parse(GOOD "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
    tt__ws_pmd_accept(&req, &p);
    cr_assert(p.on);
    cr_assert(p.server_no_takeover, "always asked, so one compressed broadcast serves all");
    cr_assert(p.client_no_takeover, "always asked, so an idle connection holds no window");
    cr_assert_eq(p.server_bits, 15);
    parse(GOOD "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, "
               "permessage-deflate; server_max_window_bits=\"10\"\r\n");
    tt__ws_pmd_accept(&req, &p);
    cr_assert(p.on);
    cr_assert_eq(p.server_bits, 10, "the first offer zlib cannot honour is passed over");
    parse(GOOD "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"
               "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n");
    tt__ws_pmd_accept(&req, &p);
    cr_assert(p.on);
    cr_assert(p.client_no_takeover);
    static const char *declined[] = {
        "permessage-deflate; foo",                                  /* unknown parameter */
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits",               /* needs a value */
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_no_context_takeover=1",         /* takes no value */
        "permessage-deflate; server_max_window_bits=\"10",          /* malformed list */
        "x-webkit-deflate-frame",
    };
    for (size_t i = 0; i < sizeof(declined) / sizeof(declined[0]); i++) {
        char f[256];
        snprintf(f, sizeof(f), GOOD "Sec-WebSocket-Extensions: %s\r\n", declined[i]);
        parse(f);
        tt__ws_pmd_accept(&req, &p);
        cr_expect(!p.on, "accepted: %s", declined[i]);
    }
}

Test(ws_handshake, what_is_written)
{
    tt__ws_pmd_t p = {.on = true, .server_no_takeover = true, .server_bits = 10, .client_bits = 15};
    char out[128];

    cr_assert_gt(tt__ws_pmd_format(&p, true, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "permessage-deflate; server_no_context_takeover; server_max_window_bits=10");
    cr_assert_gt(tt__ws_pmd_format(&p, false, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "permessage-deflate; server_no_context_takeover; client_max_window_bits");
    cr_assert_eq(tt__ws_pmd_format(&p, true, out, 20), 0, "does not fit");
}

Test(ws_handshake, what_a_client_takes_as_an_answer)
{
    tt__ws_pmd_t p;

    cr_assert_eq(tt__ws_pmd_answer(S("permessage-deflate; server_no_context_takeover; client_max_window_bits=12"), &p), 0);
    cr_assert(p.on && p.server_no_takeover);
    cr_assert_eq(p.client_bits, 12);
    cr_assert_eq(tt__ws_pmd_answer(S(""), &p), 0);
    cr_assert(!p.on, "declined");
    static const char *bad[] = {"permessage-deflate; client_max_window_bits",
                                "permessage-deflate; client_max_window_bits=8", "foo",
                                "permessage-deflate, permessage-deflate", "permessage-deflate; bar"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(tt__ws_pmd_answer(S(bad[i]), &p), -TT__WS_MANDATORY_EXT, "%s", bad[i]);
}

/* ---- the client side ------------------------------------------------------------- */

Test(ws_handshake, urls)
{
    tt__ws_url_t u;
    cr_assert_eq(tt__ws_url_parse("ws://example.test/chat?a=1", &u), 0);
    cr_assert_str_eq(u.host, "example.test");
    cr_assert_eq(u.port, 80);
    cr_assert(!u.secure && !u.port_given && !u.ipv6);
    cr_assert_eq(u.resource_len, 9);
    cr_assert_eq(tt__ws_url_parse("WSS://[::1]:8443", &u), 0);
    cr_assert(u.secure && u.ipv6 && u.port_given);
    cr_assert_str_eq(u.host, "::1");
    cr_assert_eq(u.port, 8443);
    cr_assert_eq(u.resource_len, 0);
    cr_assert_eq(tt__ws_url_parse("ws://h?q", &u), 0);
    size_t len;
    char *rq = tt__ws_request(&u, "dGhlIHNhbXBsZSBub25jZQ==", NULL, false, NULL, &len);
    cr_assert_not_null(rq);
    cr_assert(strncmp(rq, "GET /?q HTTP/1.1\r\nHost: h\r\n", 27) == 0, "%s", rq);
    cr_assert_eq(len, strlen(rq));
    free(rq);
    static const char *const bad[] = {"ws:/h", "ws://", "ws://h:", "ws://h:123456", "ws://h:0",
                                      "ws://a@h", "ws://h/#x", "ws://h/ x", "ws://[::1", "ws://[g::]/",
                                      "wsx://h", "http://h", "ws://h\x7f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(tt__ws_url_parse(bad[i], &u), -EINVAL, "%s", bad[i]);
}

Test(ws_handshake, headers_and_protocols_a_client_may_send)
{
    cr_assert(tt__ws_headers_ok(NULL));
    cr_assert(tt__ws_headers_ok("Origin: http://x\r\nX-A:\r\n"));
    cr_assert_not(tt__ws_headers_ok("Origin: x"), "no CRLF");
    cr_assert_not(tt__ws_headers_ok("HOST: x\r\n"));
    cr_assert_not(tt__ws_headers_ok("sec-websocket-protocol: x\r\n"));
    cr_assert_not(tt__ws_headers_ok("X: a\rb\r\n"));
    cr_assert(tt__ws_protocols_ok("chat, v2,v3"));
    cr_assert_not(tt__ws_protocols_ok("chat, chat"));
    cr_assert_not(tt__ws_protocols_ok("chat,"));
    cr_assert_not(tt__ws_protocols_ok("a/b"));
}

static tt__http_req_t resp;

static int answer(const char *fields, const char *protos, bool deflate, tt__ws_pmd_t *pmd,
                  char *proto, const char **why)
{
    static char buf[2048];
    snprintf(buf, sizeof(buf), "HTTP/1.1 101 Switching Protocols\r\n%s\r\n", fields);
    cr_assert_eq(tt__http_parse_response(buf, strlen(buf), NULL, &resp), TT__HTTP_OK, "%s", buf);
    return tt__ws_check_answer(&resp, "dGhlIHNhbXBsZSBub25jZQ==", protos, deflate, pmd, proto, 64,
                               why);
}

#define ANSWER "Upgrade: WebSocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"

Test(ws_handshake, what_a_client_checks_in_the_101)
{
    tt__ws_pmd_t p;
    char proto[64];
    const char *why = NULL;

    cr_assert_eq(answer(ANSWER, NULL, false, &p, proto, &why), 0, "%s", why);
    cr_assert_str_eq(proto, "");
    cr_assert_not(p.on);
    cr_assert_eq(answer(ANSWER "Sec-WebSocket-Protocol: v2\r\n", "v1, v2", false, &p, proto, &why), 0);
    cr_assert_str_eq(proto, "v2");
    cr_assert_eq(answer(ANSWER "Sec-WebSocket-Extensions: permessage-deflate; "
                               "server_no_context_takeover; client_max_window_bits=10\r\n",
                        NULL, true, &p, proto, &why),
                 0, "%s", why);
    cr_assert(p.on && p.client_bits == 10);
    static const struct {
        const char *fields, *protos;
        bool deflate;
        const char *why;
    } bad[] = {
        {"Connection: upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", NULL, false, "Upgrade"},
        {"Upgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", NULL, false, "Connection"},
        {"Upgrade: websocket\r\nConnection: upgrade\r\n", NULL, false, "Accept"},
        {"Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n", NULL, false, "Accept"},
        {ANSWER "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", NULL, false, "Accept"},
        {ANSWER "Sec-WebSocket-Protocol: v2\r\n", NULL, false, "subprotocol"},
        {ANSWER "Sec-WebSocket-Protocol: V2\r\n", "v2", false, "subprotocol"},
        {ANSWER "Sec-WebSocket-Protocol: v1, v2\r\n", "v1, v2", false, "subprotocol"},
        {ANSWER "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n", NULL, false, "extension"},
        {ANSWER "Sec-WebSocket-Extensions: permessage-deflate\r\n", NULL, true, "permessage-deflate"},
        {ANSWER "Sec-WebSocket-Extensions: x-other\r\n", NULL, true, "permessage-deflate"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        cr_expect_eq(answer(bad[i].fields, bad[i].protos, bad[i].deflate, &p, proto, &why), -1,
                     "%zu accepted", i);
        cr_expect(why != NULL && strstr(why, bad[i].why) != NULL, "%zu: %s", i, why);
    }
    static char buf[256];
    snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\n" ANSWER "\r\n");
    cr_assert_eq(tt__http_parse_response(buf, strlen(buf), NULL, &resp), TT__HTTP_OK);
    cr_expect_eq(tt__ws_check_answer(&resp, "dGhlIHNhbXBsZSBub25jZQ==", NULL, false, &p, proto, 64, &why), -1);
}

Test(ws_handshake, mask_keys_differ)
{
    uint8_t k[200][4];
    int same = 0;
    for (int i = 0; i < 200; i++)
        tt__ws_mask_key(k[i]);
    for (int i = 1; i < 200; i++)
        same += memcmp(k[i], k[i - 1], 4) == 0;
    cr_expect_lt(same, 2);
}
