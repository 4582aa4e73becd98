/* The WebSocket opening handshake and permessage-deflate negotiation (see
 * ws_handshake.h). */
#include "proto/ws_handshake.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "proto/ws_frame.h"

/* RFC 6455 1.3. */
static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void tt__ws_accept_for(const char *key, size_t len, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    /* SHA-1 is what the RFC fixes here; it is a handshake check, not a secret. */
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, key, len) != 1 || EVP_DigestUpdate(ctx, GUID, sizeof(GUID) - 1) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 20) {
        out[0] = 0; /* no answer can match: the handshake fails */
    } else {
        EVP_EncodeBlock((unsigned char *)out, md, 20);
    }
    EVP_MD_CTX_free(ctx);
}

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

bool tt__ws_key_ok(tt__str_t key)
{
    /* 16 bytes: 21 full characters, one that carries 2 bits (its low 4 bits
     * zero), then "==". */
    if (key.len != TT__WS_KEY_LEN || key.p[22] != '=' || key.p[23] != '=')
        return false;
    for (int i = 0; i < 22; i++)
        if (!is_b64(key.p[i]))
            return false;
    return strchr("AQgw", key.p[21]) != NULL;
}

int tt__ws_key_new(char *out)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -EIO;
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
    return 0;
}

bool tt__ws_is_upgrade(const tt__http_req_t *req) { return tt__http_has_token(req, "upgrade", "websocket"); }

int tt__ws_check_upgrade(const tt__http_req_t *req)
{
    const tt__str_t *key = tt__http_get(req, "sec-websocket-key");
    const tt__str_t *ver = tt__http_get(req, "sec-websocket-version");

    if (!tt__str_ieq(req->method, "GET"))
        return 405;
    if (req->minor != 1 || !tt__ws_is_upgrade(req) ||
        !tt__http_has_token(req, "connection", "upgrade") || key == NULL || !tt__ws_key_ok(*key))
        return 400;
    if (ver == NULL || ver->len != 2 || memcmp(ver->p, "13", 2) != 0)
        return 426;
    return 0;
}

void tt__ws_pick_protocol(const tt__http_req_t *req, const char *server_list, char *out, size_t cap)
{
    const char *p = server_list;

    out[0] = 0;
    while (p != NULL && *p != 0) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        char one[128];

        while (n > 0 && (*p == ' ' || *p == '\t'))
            p++, n--;
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n > 0 && n < sizeof(one) && n < cap) {
            memcpy(one, p, n);
            one[n] = 0;
            /* Subprotocol names are compared exactly (4.1: case-sensitive). */
            for (size_t i = 0; i < req->nfields; i++) {
                const tt__http_field_t *f = &req->fields[i];
                size_t k = 0;
                if (!tt__str_ieq(f->name, "sec-websocket-protocol"))
                    continue;
                while (k < f->value.len) {
                    size_t s, e;
                    while (k < f->value.len && (f->value.p[k] == ' ' || f->value.p[k] == ','))
                        k++;
                    s = k;
                    while (k < f->value.len && f->value.p[k] != ',')
                        k++;
                    e = k;
                    while (e > s && f->value.p[e - 1] == ' ')
                        e--;
                    if (e - s == n && memcmp(f->value.p + s, one, n) == 0) {
                        memcpy(out, one, n + 1);
                        return;
                    }
                }
            }
        }
        p = end != NULL ? end + 1 : NULL;
    }
}

/* ---- extension lists: 1#( token *( ";" token [ "=" ( token / quoted-string ) ] ) ) ---- */

typedef struct cursor {
    const char *p, *end;
} cursor_t;

static void skip_ws(cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

static bool ext_tchar(char c) { return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?={}", c) == NULL; }

static tt__str_t take_token(cursor_t *c)
{
    const char *s = c->p;
    while (c->p < c->end && ext_tchar(*c->p))
        c->p++;
    return (tt__str_t){s, (size_t)(c->p - s)};
}

/* A parameter value, unquoted; false if malformed. */
static bool take_value(cursor_t *c, char *out, size_t cap)
{
    size_t n = 0;
    if (c->p < c->end && *c->p == '"') {
        c->p++;
        while (c->p < c->end && *c->p != '"') {
            if (*c->p == '\\' && c->p + 1 < c->end)
                c->p++;
            if (n + 1 >= cap)
                return false;
            out[n++] = *c->p++;
        }
        if (c->p == c->end)
            return false;
        c->p++;
    } else {
        tt__str_t t = take_token(c);
        if (t.len == 0 || t.len >= cap)
            return false;
        memcpy(out, t.p, t.len);
        n = t.len;
    }
    out[n] = 0;
    return true;
}

static int window_bits(const char *v)
{
    if (strlen(v) == 1 && v[0] == '8')
        return 8;
    if (strlen(v) == 1 && v[0] == '9')
        return 9;
    if (strlen(v) == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + (v[1] - '0');
    return -1;
}

enum { P_SNT = 1, P_CNT = 2, P_SBITS = 4, P_CBITS = 8 };

/* One extension at c: its name and the permessage-deflate parameters. Returns 1
 * for a valid permessage-deflate entry, 0 for another extension or an invalid
 * one (skipped), -1 when the list itself is malformed. `cbits_bare`: a
 * client_max_window_bits without value was seen (valid only in an offer). */
static int take_extension(cursor_t *c, tt__ws_pmd_t *p, bool *cbits_bare)
{
    unsigned seen = 0;
    bool valid = true;
    tt__str_t name;

    memset(p, 0, sizeof(*p));
    p->server_bits = p->client_bits = 15;
    *cbits_bare = false;
    skip_ws(c);
    name = take_token(c);
    if (name.len == 0)
        return -1;
    skip_ws(c);
    while (c->p < c->end && *c->p == ';') {
        char val[16] = "";
        unsigned bit = 0;
        bool has_val = false;
        c->p++;
        skip_ws(c);
        tt__str_t pn = take_token(c);
        if (pn.len == 0)
            return -1;
        skip_ws(c);
        if (c->p < c->end && *c->p == '=') {
            c->p++;
            skip_ws(c);
            if (!take_value(c, val, sizeof(val)))
                return -1;
            has_val = true;
            skip_ws(c);
        }
        if (tt__str_ieq(pn, "server_no_context_takeover") && !has_val)
            bit = P_SNT, p->server_no_takeover = true;
        else if (tt__str_ieq(pn, "client_no_context_takeover") && !has_val)
            bit = P_CNT, p->client_no_takeover = true;
        else if (tt__str_ieq(pn, "server_max_window_bits") && has_val && window_bits(val) > 0)
            bit = P_SBITS, p->server_bits = (uint8_t)window_bits(val);
        else if (tt__str_ieq(pn, "client_max_window_bits") && (!has_val || window_bits(val) > 0)) {
            bit = P_CBITS;
            if (has_val)
                p->client_bits = (uint8_t)window_bits(val);
            else
                *cbits_bare = true;
        } else
            valid = false; /* unknown, or a value where none belongs (RFC 7692 7.1) */
        if (bit & seen)
            valid = false; /* a parameter twice */
        seen |= bit;
    }
    if (c->p < c->end && *c->p != ',')
        return -1;
    if (c->p < c->end)
        c->p++;
    return valid && tt__str_ieq(name, "permessage-deflate") ? 1 : 0;
}

void tt__ws_pmd_accept(const tt__http_req_t *req, tt__ws_pmd_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < req->nfields; i++) {
        const tt__http_field_t *f = &req->fields[i];
        cursor_t c = {f->value.p, f->value.p + f->value.len};
        if (!tt__str_ieq(f->name, "sec-websocket-extensions"))
            continue;
        while (c.p < c.end) {
            tt__ws_pmd_t p;
            bool bare;
            int r = take_extension(&c, &p, &bare);
            if (r < 0)
                return; /* a malformed list: decline compression rather than guess */
            if (r == 0 || p.server_bits < 9)
                continue;
            /* The client's compressor is not limited: inflating with a 15-bit
             * window reads whatever window it chose. */
            p.client_bits = 15;
            /* No context takeover either way: nothing of a message outlives it,
             * so an idle connection holds no zlib window (32 KiB and more), and
             * one compressed broadcast is right for every recipient. The server
             * may ask for both even when they were not offered (RFC 7692 7.1.1). */
            p.server_no_takeover = true;
            p.client_no_takeover = true;
            p.on = true;
            *out = p;
            return;
        }
    }
}

/* printf at out + *n; false (and *n past cap) once something did not fit. */
static bool append(char *out, size_t cap, size_t *n, const char *fmt, unsigned v)
{
    int m;
    if (*n >= cap)
        return false;
    m = snprintf(out + *n, cap - *n, fmt, v);
    *n = m < 0 ? cap : *n + (size_t)m;
    return *n < cap;
}

size_t tt__ws_pmd_format(const tt__ws_pmd_t *p, bool response, char *out, size_t cap)
{
    size_t n = 0;
    bool ok;

    /* Our offer as a client: any window for the server, and we accept a limit on
     * ours. The server's answer: what it agreed, windows only where below 15. */
    if (!response)
        ok = append(out, cap, &n, "permessage-deflate; client_max_window_bits", 0);
    else
        ok = append(out, cap, &n, "permessage-deflate", 0) &&
             (!p->server_no_takeover || append(out, cap, &n, "; server_no_context_takeover", 0)) &&
             (!p->client_no_takeover || append(out, cap, &n, "; client_no_context_takeover", 0)) &&
             (p->server_bits >= 15 || append(out, cap, &n, "; server_max_window_bits=%u", p->server_bits)) &&
             (p->client_bits >= 15 || append(out, cap, &n, "; client_max_window_bits=%u", p->client_bits));
    return ok ? n : 0;
}

int tt__ws_pmd_answer(tt__str_t value, tt__ws_pmd_t *out)
{
    cursor_t c = {value.p, value.p + value.len};
    bool bare;
    int r;

    memset(out, 0, sizeof(*out));
    if (value.len == 0)
        return 0; /* declined */
    r = take_extension(&c, out, &bare);
    /* One extension, ours, valid, and nothing after it (we offered only it). */
    /* zlib cannot compress with an 8-bit window: a limit of 8 on ours cannot be kept. */
    if (r != 1 || bare || c.p != c.end || out->client_bits < 9) {
        memset(out, 0, sizeof(*out));
        return -TT__WS_MANDATORY_EXT;
    }
    out->on = true;
    return 0;
}
