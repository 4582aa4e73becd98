/* The HTTP request-head parser (src/proto/http.c) on any bytes. Invariants:
 *  1. The result is OK, MORE, or one of the statuses it documents.
 *  2. OK: the head ends with the blank line and every view lies inside it, in
 *     order; no prefix of the head is OK, and the head alone parses the same.
 *  3. A prefix of a refused input is refused the same way or still waits (what
 *     is refused stays refused as more bytes come: no verdict flips to OK). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "proto/http.h"

static int known(int r) { return r == TT__HTTP_OK || r == TT__HTTP_MORE || r == 400 || r == 431 || r == 501 || r == 505; }

static void inside(const char *buf, size_t head, tt__str_t s)
{
    FZ_CHECK(s.len == 0 || (s.p >= buf && s.p + s.len <= buf + head));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tt__http_limits_t lim = {.max_head = size > 0 ? 64 + data[0] * 32 : 0, .max_fields = 0};
    const char *buf = (const char *)data;
    static tt__http_req_t req, again;
    int r;

    if (size > 0) {
        buf++, size--;
    }
    r = tt__http_parse(buf, size, &lim, &req);
    FZ_CHECK(known(r));
    if (r == TT__HTTP_OK) {
        FZ_CHECK(req.head_len >= 4 && req.head_len <= size && req.head_len <= lim.max_head);
        FZ_CHECK(memcmp(buf + req.head_len - 4, "\r\n\r\n", 4) == 0);
        inside(buf, req.head_len, req.method);
        inside(buf, req.head_len, req.target);
        inside(buf, req.head_len, req.path);
        inside(buf, req.head_len, req.query);
        FZ_CHECK(req.method.len > 0 && req.target.len > 0);
        FZ_CHECK(req.nfields <= TT__HTTP_MAX_FIELDS);
        for (size_t i = 0; i < req.nfields; i++) {
            inside(buf, req.head_len, req.fields[i].name);
            inside(buf, req.head_len, req.fields[i].value);
            FZ_CHECK(req.fields[i].name.len > 0);
            FZ_CHECK(tt__http_get(&req, "x") == NULL || 1);
        }
        FZ_CHECK(tt__http_parse(buf, req.head_len, &lim, &again) == TT__HTTP_OK);
        FZ_CHECK(again.nfields == req.nfields && again.head_len == req.head_len);
        for (size_t cut = 0; cut < req.head_len; cut += 1 + cut / 8)
            FZ_CHECK(tt__http_parse(buf, cut, &lim, &again) == TT__HTTP_MORE);
    } else if (r != TT__HTTP_MORE) {
        for (size_t cut = 0; cut < size; cut += 1 + cut / 8) {
            int p = tt__http_parse(buf, cut, &lim, &again);
            FZ_CHECK(p == TT__HTTP_MORE || p == r || p == 431);
        }
    }
    return 0;
}
