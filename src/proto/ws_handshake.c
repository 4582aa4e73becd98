/* The WebSocket opening handshake and permessage-deflate negotiation (see
 * ws_handshake.h). */
#include "proto/ws_handshake.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

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

    /* Our offer as a client: the server resets its compressor after each message
     * (so, as on the server side, an inflater lives for one message and an idle
     * connection holds no zlib window), any window for it, and we accept a limit
     * on ours. The server's answer: what it agreed, windows only where below 15. */
    if (!response)
        ok = append(out, cap, &n,
                    "permessage-deflate; server_no_context_takeover; client_max_window_bits", 0);
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

/* ---- the client side ------------------------------------------------------------- */

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

static bool ipv6_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
           c == ':' || c == '.';
}

static bool prefix_ieq(const char *s, const char *prefix)
{
    for (; *prefix != '\0'; s++, prefix++) {
        char a = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;
        if (a != *prefix)
            return false;
    }
    return true;
}

int tt__ws_url_parse(const char *url, tt__ws_url_t *out)
{
    const char *p, *end, *hs, *he, *after;

    memset(out, 0, sizeof(*out));
    for (p = url; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '#')
            return -EINVAL; /* no fragment (RFC 6455 3), no spaces or controls */
    if (prefix_ieq(url, "ws://")) {
        p = url + 5;
    } else if (prefix_ieq(url, "wss://")) {
        p = url + 6;
        out->secure = true;
    } else {
        return -EINVAL;
    }
    end = p + strcspn(p, "/?");
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (he == NULL)
            return -EINVAL;
        for (const char *q = hs; q < he; q++)
            if (!ipv6_char(*q))
                return -EINVAL;
        out->ipv6 = true;
        after = he + 1;
    } else {
        hs = p;
        he = memchr(p, ':', (size_t)(end - p));
        if (he == NULL)
            he = end;
        for (const char *q = hs; q < he; q++)
            if (!host_char(*q))
                return -EINVAL; /* user info ('@') among them */
        after = he;
    }
    if (he == hs || (size_t)(he - hs) > TT__WS_HOST_MAX)
        return -EINVAL;
    memcpy(out->host, hs, (size_t)(he - hs));
    out->host[he - hs] = '\0';
    out->port = out->secure ? 443 : 80;
    if (after < end) {
        unsigned v = 0;
        if (*after != ':' || end - after < 2 || end - after > 6)
            return -EINVAL;
        for (const char *q = after + 1; q < end; q++) {
            if (*q < '0' || *q > '9')
                return -EINVAL;
            v = v * 10 + (unsigned)(*q - '0');
        }
        if (v == 0 || v > 65535)
            return -EINVAL;
        out->port = (uint16_t)v;
        out->port_given = true;
    }
    out->resource = end;
    out->resource_len = strlen(end);
    return 0;
}

/* A token (RFC 9110 5.6.2) of n bytes at p. */
static bool is_token(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ext_tchar(p[i]))
            return false;
    return true;
}

static bool reserved_field(const char *p, size_t n)
{
    static const char *const names[] = {"host", "upgrade", "connection", "content-length",
                                        "transfer-encoding"};
    tt__str_t s = {p, n};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (tt__str_ieq(s, names[i]))
            return true;
    return n >= 14 && tt__str_ieq((tt__str_t){p, 14}, "sec-websocket-");
}

bool tt__ws_headers_ok(const char *h)
{
    if (h == NULL)
        return true;
    while (*h != '\0') {
        const char *colon = strchr(h, ':'), *eol = strstr(h, "\r\n");
        if (colon == NULL || eol == NULL || colon > eol || !is_token(h, (size_t)(colon - h)) ||
            reserved_field(h, (size_t)(colon - h)))
            return false;
        for (const char *q = colon + 1; q < eol; q++)
            if (*q != '\t' && ((unsigned char)*q < 0x20 || *q == 0x7f))
                return false; /* a bare CR or LF would start a field of its own */
        h = eol + 2;
    }
    return true;
}

bool tt__ws_protocols_ok(const char *list)
{
    const char *p = list;

    if (list == NULL)
        return true;
    for (;;) {
        size_t n;
        while (*p == ' ')
            p++;
        n = strcspn(p, ", ");
        if (!is_token(p, n))
            return false;
        /* No name twice: the server's answer must name exactly one we offered. */
        for (const char *q = list; q < p;) {
            while (*q == ' ' || *q == ',')
                q++;
            size_t m = strcspn(q, ", ");
            if (q < p && m == n && memcmp(q, p, n) == 0)
                return false;
            q += m;
        }
        p += n;
        while (*p == ' ')
            p++;
        if (*p == '\0')
            return true;
        if (*p++ != ',')
            return false;
    }
}

char *tt__ws_request(const tt__ws_url_t *url, const char *key, const char *protocols,
                     bool deflate, const char *headers, size_t *len)
{
    char port[8] = "", ext[96] = "";
    bool slash = url->resource_len == 0 || url->resource[0] != '/';
    tt__ws_pmd_t none = {0};
    int n;

    /* Host carries the port unless it is the scheme's (RFC 6455 4.1 point 4). */
    if (url->port_given && url->port != (url->secure ? 443 : 80))
        snprintf(port, sizeof(port), ":%u", url->port);
    if (deflate)
        tt__ws_pmd_format(&none, false, ext, sizeof(ext));
    char *out;
    n = asprintf(&out,
                 "GET %s%.*s HTTP/1.1\r\nHost: %s%s%s%s\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                 "%s%s%s%s%s%s%s\r\n",
                 slash ? "/" : "", (int)url->resource_len, url->resource, url->ipv6 ? "[" : "",
                 url->host, url->ipv6 ? "]" : "", port, key,
                 protocols != NULL ? "Sec-WebSocket-Protocol: " : "",
                 protocols != NULL ? protocols : "", protocols != NULL ? "\r\n" : "",
                 deflate ? "Sec-WebSocket-Extensions: " : "", ext, deflate ? "\r\n" : "",
                 headers != NULL ? headers : "");
    if (n < 0)
        return NULL;
    *len = (size_t)n;
    return out;
}

/* Is `name` (n bytes) one of the comma-separated `list`? Exact: subprotocol
 * names are case-sensitive. */
static bool in_list(const char *list, const char *name, size_t n)
{
    const char *p = list;
    while (p != NULL && *p != '\0') {
        while (*p == ' ' || *p == ',')
            p++;
        size_t m = strcspn(p, ", ");
        if (m == n && n > 0 && memcmp(p, name, n) == 0)
            return true;
        p += m;
    }
    return false;
}

static size_t count_fields(const tt__http_req_t *r, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < r->nfields; i++)
        k += tt__str_ieq(r->fields[i].name, name);
    return k;
}

int tt__ws_check_answer(const tt__http_req_t *resp, const char *key, const char *protocols,
                        bool deflate, tt__ws_pmd_t *pmd, char *proto, size_t cap,
                        const char **why)
{
    char accept[TT__WS_ACCEPT_LEN + 1];
    const tt__str_t *v;

    memset(pmd, 0, sizeof(*pmd));
    proto[0] = '\0';
    if (resp->status != 101) {
        *why = "the server answered without switching protocols (status is not 101)";
        return -1;
    }
    if (resp->minor != 1) {
        *why = "the upgrade answer is not HTTP/1.1";
        return -1;
    }
    if (!tt__http_has_token(resp, "upgrade", "websocket")) {
        *why = "the upgrade answer lacks Upgrade: websocket";
        return -1;
    }
    if (!tt__http_has_token(resp, "connection", "upgrade")) {
        *why = "the upgrade answer lacks Connection: Upgrade";
        return -1;
    }
    tt__ws_accept_for(key, strlen(key), accept);
    v = tt__http_get(resp, "sec-websocket-accept");
    if (v == NULL || count_fields(resp, "sec-websocket-accept") != 1 ||
        v->len != TT__WS_ACCEPT_LEN || accept[0] == '\0' ||
        memcmp(v->p, accept, TT__WS_ACCEPT_LEN) != 0) {
        *why = "wrong or missing Sec-WebSocket-Accept";
        return -1;
    }
    v = tt__http_get(resp, "sec-websocket-protocol");
    if (v != NULL) {
        /* One name, one we offered (4.1 point 6). */
        if (count_fields(resp, "sec-websocket-protocol") != 1 || protocols == NULL ||
            !in_list(protocols, v->p, v->len) || v->len >= cap) {
            *why = "the server chose a subprotocol we did not offer";
            return -1;
        }
        memcpy(proto, v->p, v->len);
        proto[v->len] = '\0';
    }
    v = tt__http_get(resp, "sec-websocket-extensions");
    if (v != NULL && v->len > 0) {
        if (!deflate || count_fields(resp, "sec-websocket-extensions") != 1) {
            *why = "the server chose an extension we did not offer";
            return -1;
        }
        /* It must grant the server_no_context_takeover we asked for (RFC 7692
         * 7.1.1.1): our inflater does not outlive a message. */
        if (tt__ws_pmd_answer(*v, pmd) < 0 || !pmd->server_no_takeover) {
            memset(pmd, 0, sizeof(*pmd));
            *why = "the server's permessage-deflate parameters cannot be honoured";
            return -1;
        }
    }
    return 0;
}

/* Masks come 64 at a time: one call into the generator per 64 frames. Per thread,
 * like a loop. */
static _Thread_local uint8_t mask_pool[256];
static _Thread_local unsigned mask_left;

void tt__ws_mask_key(uint8_t key[4])
{
    if (mask_left == 0) {
        if (RAND_bytes(mask_pool, sizeof(mask_pool)) != 1) {
            /* The generator failed: a key still has to go out. getrandom(2) is
             * the same kernel source OpenSSL seeds from. */
            for (size_t i = 0; i < sizeof(mask_pool);) {
                ssize_t n = getrandom(mask_pool + i, sizeof(mask_pool) - i, 0);
                if (n > 0)
                    i += (size_t)n;
                else if (errno != EINTR)
                    break;
            }
        }
        mask_left = sizeof(mask_pool) / 4;
    }
    mask_left--;
    memcpy(key, mask_pool + mask_left * 4, 4);
    memset(mask_pool + mask_left * 4, 0, 4); /* a key is used once */
}
