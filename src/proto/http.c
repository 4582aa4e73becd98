/* HTTP/1.1 request heads (see http.h). One pass over complete lines: a line that
 * is complete is judged at once, so a malformed request is refused as soon as its
 * first bad line is in, not when the size limit runs out. */
#include "proto/http.h"

#include <string.h>

#define DEFAULT_MAX_HEAD 8192

/* tchar (RFC 9110 5.6.2): what a method or field name is made of. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar, SP, HTAB, obs-text: what a field value may hold. */
static bool is_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

bool tt__str_ieq(tt__str_t s, const char *c)
{
    size_t n = strlen(c);
    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(s.p[i]) != lower(c[i]))
            return false;
    return true;
}

/* The end of the line starting at `p`: the offset of its CR, or -1 when the line is
 * not complete yet; -2 for a bare CR or LF inside it (never valid). */
static long line_end(const char *buf, size_t from, size_t len)
{
    for (size_t i = from; i < len; i++) {
        if (buf[i] == '\n')
            return -2;
        if (buf[i] == '\r') {
            if (i + 1 == len)
                return -1;
            return buf[i + 1] == '\n' ? (long)i : -2;
        }
    }
    return -1;
}

static int parse_request_line(const char *p, size_t n, tt__http_req_t *req)
{
    size_t i = 0, start;

    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ' ')
        return 400;
    req->method = (tt__str_t){p, i};
    start = ++i;
    while (i < n && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f)
        i++;
    if (i == start || i == n || p[i] != ' ')
        return 400;
    req->target = (tt__str_t){p + start, i - start};
    i++;
    if (n - i != 8 || memcmp(p + i, "HTTP/", 5) != 0 || p[i + 6] != '.' ||
        p[i + 5] < '0' || p[i + 5] > '9' || p[i + 7] < '0' || p[i + 7] > '9')
        return 400;
    if (p[i + 5] != '1' || (p[i + 7] != '0' && p[i + 7] != '1'))
        return 505;
    req->minor = p[i + 7] - '0';
    req->path = req->target;
    req->query = (tt__str_t){NULL, 0};
    const char *q = memchr(req->target.p, '?', req->target.len);
    if (q != NULL) {
        req->path.len = (size_t)(q - req->target.p);
        req->query = (tt__str_t){q + 1, req->target.len - req->path.len - 1};
    }
    return 0;
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 4). */
static int parse_status_line(const char *p, size_t n, tt__http_req_t *resp)
{
    if (n < 12 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[5] < '0' || p[5] > '9' ||
        p[7] < '0' || p[7] > '9' || p[8] != ' ')
        return 400;
    if (p[5] != '1')
        return 505;
    resp->minor = p[7] - '0';
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9')
            return 400;
    resp->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (resp->status < 100)
        return 400;
    if (n > 12 && p[12] != ' ')
        return 400; /* "HTTP/1.1 1010": the code is three digits */
    size_t r = n > 12 ? 13 : 12;
    for (size_t k = r; k < n; k++)
        if (!is_value_char((unsigned char)p[k]))
            return 400;
    resp->reason = (tt__str_t){p + r, n - r};
    return 0;
}

static int parse_content_length(tt__str_t v, tt__http_req_t *req)
{
    uint64_t n = 0;

    if (v.len == 0 || v.len > 19) /* 19 digits always fit in 64 bits */
        return 400;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return 400; /* a list ("5, 5") or a sign: refused, never guessed */
        n = n * 10 + (uint64_t)(v.p[i] - '0');
    }
    if (req->has_content_length && req->content_length != n)
        return 400;
    req->content_length = n;
    req->has_content_length = true;
    return 0;
}

static int parse_field(const char *p, size_t n, tt__http_req_t *req, size_t max_fields,
                       bool response)
{
    size_t i = 0, vs, ve;

    if (n > 0 && (p[0] == ' ' || p[0] == '\t'))
        return 400; /* obsolete line folding (RFC 9112 5.2) */
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ':')
        return 400; /* no name, or whitespace before the colon (RFC 9112 5.1) */
    vs = i + 1;
    while (vs < n && (p[vs] == ' ' || p[vs] == '\t'))
        vs++;
    ve = n;
    while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
        ve--;
    for (size_t k = vs; k < ve; k++)
        if (!is_value_char((unsigned char)p[k]))
            return 400;
    if (req->nfields >= max_fields)
        return 431;
    tt__http_field_t *f = &req->fields[req->nfields++];
    f->name = (tt__str_t){p, i};
    f->value = (tt__str_t){p + vs, ve - vs};
    if (response)
        return 0; /* the body is not read here: its framing does not matter */
    if (tt__str_ieq(f->name, "content-length"))
        return parse_content_length(f->value, req);
    if (tt__str_ieq(f->name, "transfer-encoding"))
        return 501;
    return 0;
}

static int parse_head(const char *buf, size_t len, const tt__http_limits_t *lim,
                      tt__http_req_t *req, bool response)
{
    size_t max_head = lim != NULL && lim->max_head > 0 ? lim->max_head : DEFAULT_MAX_HEAD;
    size_t max_fields = lim != NULL && lim->max_fields > 0 ? lim->max_fields : TT__HTTP_MAX_FIELDS;
    size_t pos = 0, hosts = 0;
    bool have_line = false;

    if (max_fields > TT__HTTP_MAX_FIELDS)
        max_fields = TT__HTTP_MAX_FIELDS;
    memset(req, 0, sizeof(*req));
    /* Bytes past the limit are not looked at: judged on what the limit allows. */
    if (len > max_head)
        len = max_head;
    /* Empty lines before the request line are ignored (RFC 9112 2.2). */
    while (pos + 1 < len && buf[pos] == '\r' && buf[pos + 1] == '\n')
        pos += 2;
    for (;;) {
        long end = line_end(buf, pos, len);
        int st;

        if (end == -2)
            return 400;
        if (end == -1) {
            /* The request line still arriving: its method can already be wrong
             * (a TLS hello or a binary PROXY header on a plain HTTP port). */
            if (!have_line && !response) {
                size_t i = pos;
                while (i < len && is_tchar((unsigned char)buf[i]))
                    i++;
                /* (A CR last is the start of a line end: an empty line before the
                 * request, or one that ends here; the next byte tells.) */
                if (i < len && buf[i] != '\r' && (buf[i] != ' ' || i == pos))
                    return 400;
            }
            return len >= max_head ? 431 : TT__HTTP_MORE;
        }
        size_t n = (size_t)end - pos;
        if (!have_line) {
            st = response ? parse_status_line(buf + pos, n, req)
                          : parse_request_line(buf + pos, n, req);
            if (st != 0)
                return st;
            have_line = true;
        } else if (n == 0) {
            req->head_len = pos + 2;
            break;
        } else {
            if ((st = parse_field(buf + pos, n, req, max_fields, response)) != 0)
                return st;
            if (tt__str_ieq(req->fields[req->nfields - 1].name, "host"))
                hosts++;
        }
        pos = (size_t)end + 2;
    }
    if (response)
        return TT__HTTP_OK;
    /* HTTP/1.1 needs exactly one Host (RFC 9112 3.2). */
    if (req->minor == 1 && hosts != 1)
        return 400;
    if (hosts > 1)
        return 400;
    return TT__HTTP_OK;
}

int tt__http_parse(const char *buf, size_t len, const tt__http_limits_t *lim, tt__http_req_t *req)
{
    return parse_head(buf, len, lim, req, false);
}

int tt__http_parse_response(const char *buf, size_t len, const tt__http_limits_t *lim,
                            tt__http_req_t *resp)
{
    return parse_head(buf, len, lim, resp, true);
}

const tt__str_t *tt__http_get(const tt__http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->nfields; i++)
        if (tt__str_ieq(req->fields[i].name, name))
            return &req->fields[i].value;
    return NULL;
}

bool tt__http_has_token(const tt__http_req_t *req, const char *name, const char *token)
{
    for (size_t i = 0; i < req->nfields; i++) {
        const tt__http_field_t *f = &req->fields[i];
        if (!tt__str_ieq(f->name, name))
            continue;
        size_t k = 0;
        while (k < f->value.len) {
            size_t s, e;
            while (k < f->value.len && (f->value.p[k] == ' ' || f->value.p[k] == '\t' ||
                                        f->value.p[k] == ','))
                k++;
            s = k;
            while (k < f->value.len && f->value.p[k] != ',')
                k++;
            e = k;
            while (e > s && (f->value.p[e - 1] == ' ' || f->value.p[e - 1] == '\t'))
                e--;
            if (e > s && tt__str_ieq((tt__str_t){f->value.p + s, e - s}, token))
                return true;
        }
    }
    return false;
}

const char *tt__http_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}
