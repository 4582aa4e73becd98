/* The one HTTP/1.1 request parser of the project: a request head (request line and
 * header fields, RFC 9112) parsed in place from one contiguous buffer, with hard
 * limits. Pure: no loop, no socket. The WebSocket upgrade, the page handler and
 * the metrics endpoint all take their requests from it.
 *
 * The caller collects bytes until tt__http_parse() stops saying TT__HTTP_MORE (at
 * most `max_head` bytes: past that it is an error, not a wait), then reads the
 * request from `tt__http_req_t`, whose strings point into the caller's buffer.
 * Anything the RFC says a server must reject, or that a strict server should not
 * guess about, is rejected with the status the RFC names: obsolete line folding,
 * whitespace before a colon, a bare CR or LF inside a line, control characters,
 * a field name that is not a token, two Content-Length fields that differ, a
 * Transfer-Encoding (no request body is read through one here). */
#ifndef TT_HTTP_H
#define TT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A view into the parsed buffer; not NUL-terminated. */
typedef struct tt__str {
    const char *p;
    size_t len;
} tt__str_t;

typedef struct tt__http_field {
    tt__str_t name, value; /* value without leading and trailing whitespace */
} tt__http_field_t;

#define TT__HTTP_MAX_FIELDS 64 /* the most header fields the struct can hold */

/* A request head; tt__http_parse_response fills the same struct from a response
 * head (status and reason instead of method and target). */
typedef struct tt__http_req {
    tt__str_t method;
    tt__str_t target;   /* as sent: origin-form "/path?query" (or "*", or absolute) */
    tt__str_t path;     /* target up to '?' */
    tt__str_t query;    /* after '?', without it; len 0 when none */
    int minor;          /* HTTP/1.<minor>: 0 or 1 */
    size_t head_len;    /* bytes of the head, the blank line included */
    uint64_t content_length; /* 0 when no Content-Length was sent */
    bool has_content_length;
    int status;         /* a response's status code, 100..999 */
    tt__str_t reason;   /* a response's reason phrase (may be empty) */
    size_t nfields;
    tt__http_field_t fields[TT__HTTP_MAX_FIELDS];
} tt__http_req_t;

typedef struct tt__http_limits {
    size_t max_head;   /* bytes of request line + fields; 0: 8192 */
    size_t max_fields; /* 0: 64 (never more than TT__HTTP_MAX_FIELDS) */
} tt__http_limits_t;

/* Results of tt__http_parse (a positive HTTP status is the error to answer with). */
#define TT__HTTP_OK 0
#define TT__HTTP_MORE (-1) /* the head is not complete yet and still under the limit */

/* Parse the head at the start of buf[0, len). Returns TT__HTTP_OK (req filled),
 * TT__HTTP_MORE, or the status to refuse with: 400 (malformed), 431 (head or field
 * count over the limit), 501 (Transfer-Encoding), 505 (not HTTP/1.0 or 1.1). */
int tt__http_parse(const char *buf, size_t len, const tt__http_limits_t *lim, tt__http_req_t *req);

/* Parse a response head (RFC 9112 4: "HTTP/1.x SP 3DIGIT SP [reason]", a
 * missing SP before an empty reason tolerated) with the same rules for fields,
 * except that no Host is required and Transfer-Encoding is only a field. Returns
 * TT__HTTP_OK (resp filled), TT__HTTP_MORE, 400 (malformed), 431 (over the
 * limits) or 505 (not HTTP/1.x): what a client that reads the answer to its
 * request (the WebSocket upgrade) refuses. */
int tt__http_parse_response(const char *buf, size_t len, const tt__http_limits_t *lim,
                            tt__http_req_t *resp);

/* The value of the first field named `name` (case-insensitive), or NULL. */
const tt__str_t *tt__http_get(const tt__http_req_t *req, const char *name);
/* Does any field named `name` hold `token` in its comma-separated list
 * (case-insensitive, as Connection: keep-alive, Upgrade)? */
bool tt__http_has_token(const tt__http_req_t *req, const char *name, const char *token);
/* Case-insensitive comparison of a view with a C string. */
bool tt__str_ieq(tt__str_t s, const char *c);
/* The reason phrase of a status (RFC 9110), "" for one it does not know. */
const char *tt__http_reason(int status);

#endif
