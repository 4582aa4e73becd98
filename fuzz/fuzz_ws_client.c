/* What a WebSocket client reads before WebSocket begins: the URL it is given and
 * the server's answer to its upgrade (src/proto/http.c response heads, then
 * src/proto/ws_handshake.c's checks). The first byte picks which. Invariants:
 *  1. URL: accepted only with a host of 1..254 bytes, a port 1..65535, a resource
 *     inside the input that is empty or starts with '/' or '?'; the request built
 *     from it is one head (a single blank line, at its end).
 *  2. Answer: the parser says OK, MORE, 400, 431 or 505; OK puts every view inside
 *     the head, and no prefix of the head is OK. An answer the checks accept has
 *     status 101, and the protocol it names is one of those offered; deflate is
 *     on only when offered. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "proto/http.h"
#include "proto/ws_handshake.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

static void url(const char *s, size_t n)
{
    char *u = malloc(n + 1);
    tt__ws_url_t p;
    memcpy(u, s, n);
    u[n] = '\0';
    if (tt__ws_url_parse(u, &p) == 0) {
        size_t hl = strlen(p.host), len;
        FZ_CHECK(hl > 0 && hl <= TT__WS_HOST_MAX && p.port > 0);
        FZ_CHECK(p.resource >= u && p.resource + p.resource_len <= u + strlen(u));
        FZ_CHECK(p.resource_len == 0 || p.resource[0] == '/' || p.resource[0] == '?');
        char *req = tt__ws_request(&p, KEY, "chat", true, NULL, &len);
        FZ_CHECK(req != NULL && len == strlen(req));
        char *blank = strstr(req, "\r\n\r\n");
        FZ_CHECK(blank != NULL && (size_t)(blank - req) + 4 == len);
        tt__http_req_t r;
        FZ_CHECK(tt__http_parse(req, len, NULL, &r) == TT__HTTP_OK && r.head_len == len);
        free(req);
    }
    free(u);
}

static void inside(const char *buf, size_t head, tt__str_t s)
{
    FZ_CHECK(s.len == 0 || (s.p >= buf && s.p + s.len <= buf + head));
}

static void answer(const char *buf, size_t size)
{
    static tt__http_req_t r, again;
    int st = tt__http_parse_response(buf, size, NULL, &r);
    FZ_CHECK(st == TT__HTTP_OK || st == TT__HTTP_MORE || st == 400 || st == 431 || st == 505);
    if (st != TT__HTTP_OK)
        return;
    FZ_CHECK(r.head_len >= 4 && r.head_len <= size);
    inside(buf, r.head_len, r.reason);
    for (size_t i = 0; i < r.nfields; i++) {
        inside(buf, r.head_len, r.fields[i].name);
        inside(buf, r.head_len, r.fields[i].value);
    }
    for (size_t cut = 0; cut < r.head_len; cut += 1 + cut / 8)
        FZ_CHECK(tt__http_parse_response(buf, cut, NULL, &again) == TT__HTTP_MORE);
    static const char *const offers[] = {NULL, "chat", "chat, v2"};
    for (int o = 0; o < 3; o++) {
        for (int d = 0; d < 2; d++) {
            tt__ws_pmd_t pmd;
            char proto[64];
            const char *why = NULL;
            if (tt__ws_check_answer(&r, KEY, offers[o], d, &pmd, proto, sizeof(proto), &why) == 0) {
                FZ_CHECK(r.status == 101);
                FZ_CHECK(proto[0] == '\0' || (offers[o] != NULL && strstr(offers[o], proto)));
                FZ_CHECK(!pmd.on || (d && pmd.server_no_takeover && pmd.client_bits >= 9));
            } else {
                FZ_CHECK(why != NULL && !pmd.on);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        url((const char *)data + 1, size - 1);
    else
        answer((const char *)data + 1, size - 1);
    return 0;
}
