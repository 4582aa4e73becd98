/* WebSocket on a connection (RFC 6455, RFC 7692), either role. A server reads
 * the HTTP request and answers it; a client sends its upgrade request when the
 * stream opens and checks the 101. Then, the same code for both: frames cut from
 * the read path, messages reassembled and delivered to on_message, control
 * frames answered, the closing handshake done both ways with a deadline, and the
 * close codes handed to on_close. The role flag decides only what the RFC makes
 * differ: who masks (a client masks every frame with a fresh key, a server
 * none, and each refuses the other's kind with 1002) and who speaks first.
 *
 * The connection layer knows none of this: it calls the hooks in tt__conn_ext_t
 * (frame_input for every read, frame_eof at the peer's FIN, frame_ping for
 * liveness, close_info and frame_free at close). The pure rules live in
 * http.c, ws_handshake.c, ws_frame.c and ws_deflate.c.
 *
 * Memory: the request head is held only until it is answered; a message is held
 * only while it is incomplete (at most max_message bytes, inflated ones too);
 * a frame header cut by a read costs 14 bytes inside the object. Between
 * messages a connection holds no buffer and no zlib state (the server asks for
 * no context takeover both ways, so an inflater lives for one message and the
 * deflater is shared by every connection of the options, one message at a
 * time). */
#include "proto/ws.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http.h"
#include "proto/ws_deflate.h"
#include "proto/ws_frame.h"
#include "proto/ws_handshake.h"
#include "stream/conn.h"

/* Compiled options, shared by a server's connections: reference-counted (the
 * server's reference and one per connection), with the deflaters they share. */
typedef struct tt__ws_cfg {
    tt_ws_opts_t o;
    char *subprotocols; /* o.subprotocols points here (a client: its offer) */
    /* A client's: what every upgrade request (one per connection) carries. */
    bool client;
    char *url_text;    /* url.resource points into it */
    tt__ws_url_t url;
    char *headers;     /* extra request fields; NULL: none */
    bool read_after_close; /* messages after our close frame still go up */
    unsigned refs;
    size_t used;        /* message buffer bytes its connections hold (the budget) */
    z_stream *defl[16]; /* by window bits (9..15), made on first use */
} ws_cfg_t;

enum {
    S_HTTP,      /* reading the request head */
    S_ANSWER,    /* a client: the request is sent (or queued), reading the answer */
    S_HTTP_DONE, /* answered without an upgrade: input is dropped, the stream ends */
    S_OPEN,      /* WebSocket */
    S_CLOSED     /* the closing handshake is done, or we failed the connection */
};

/* Messages smaller than this go uncompressed: deflate would not pay. */
#define DEFLATE_MIN 64
#define UNMASK_CHUNK 4096
#define PROTO_MAX 64

typedef struct ws {
    tt_conn_t *conn;
    ws_cfg_t *cfg;
    bool client;                      /* the role: we mask, the peer must not */
    uint8_t state;
    bool close_sent, close_rcvd;
    bool in_frame;
    uint8_t hlen;                     /* bytes of a frame header cut by a read */
    uint8_t hbuf[TT__WS_MAX_HEADER];
    uint8_t kind;                     /* of the message on_message is given */
    tt__ws_pmd_t pmd;
    tt__wnode_t timer;                /* the request, then the closing handshake */
    /* the request head (S_HTTP) */
    char *head;
    size_t head_len;
    /* the frame in progress */
    tt__ws_hdr_t fh;
    uint64_t fpos; /* payload bytes of fh read so far */
    /* the message in progress */
    tt__ws_seq_t seq;
    tt__utf8_t utf8;
    tt__zbuf_t msg;    /* payload so far (inflated when compressed) */
    size_t checked;    /* bytes of msg validated as UTF-8 */
    size_t charged;    /* msg.cap as counted in cfg->used */
    bool over_budget;  /* the 1009 is the budget's */
    z_stream *infl;    /* while a compressed message is open */
    uint8_t ctl[TT__WS_MAX_CONTROL];
    /* closing */
    uint16_t peer_code, local_code;
    uint8_t reason_len;
    char reason[TT__WS_MAX_CONTROL - 2 + 1];
    uint8_t fail_kind; /* our refusal: the close kind on_close reports (0: none) */
    int fail_err;
    const char *why;   /* a client's handshake failure, for info.reason */
    char key[TT__WS_KEY_LEN + 1]; /* a client's Sec-WebSocket-Key */
    /* input held while the application paused reading */
    char *held;
    size_t held_len;
    char proto[PROTO_MAX];
} ws_t;

static ws_t *ws_of(const tt_conn_t *c)
{
    return c != NULL && c->ext != NULL ? c->ext->ws : NULL;
}

/* ---- options ---------------------------------------------------------------------- */

static void cfg_unref(ws_cfg_t *cfg)
{
    if (cfg == NULL || --cfg->refs > 0)
        return;
    for (size_t i = 0; i < sizeof(cfg->defl) / sizeof(cfg->defl[0]); i++) {
        if (cfg->defl[i] != NULL) {
            tt__ws_deflate_end(cfg->defl[i]);
            free(cfg->defl[i]);
        }
    }
    free(cfg->subprotocols);
    free(cfg->url_text);
    free(cfg->headers);
    free(cfg);
}

int tt__ws_check(const tt_ws_opts_t *o)
{
    if (o == NULL)
        return 0;
    if (o->max_headers > TT__HTTP_MAX_FIELDS || o->max_message > TT_FRAME_MAX_LIMIT * 4 ||
        (o->max_header_bytes != 0 && o->max_header_bytes < 16) ||
        (o->default_kind != 0 && o->default_kind != TT_WS_TEXT && o->default_kind != TT_WS_BINARY))
        return -EINVAL;
    if (o->subprotocols != NULL && strlen(o->subprotocols) >= 1024)
        return -EINVAL;
    return 0;
}

int tt__ws_cfg_new(struct tt__ws_cfg **out, const tt_ws_opts_t *o)
{
    ws_cfg_t *cfg;

    *out = NULL;
    if (o == NULL)
        return 0;
    if (tt__ws_check(o) < 0)
        return -EINVAL;
    if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
        return -ENOMEM;
    cfg->o = *o;
    if (o->subprotocols != NULL && (cfg->subprotocols = strdup(o->subprotocols)) == NULL) {
        free(cfg);
        return -ENOMEM;
    }
    cfg->o.subprotocols = cfg->subprotocols;
    if (cfg->o.max_message == 0)
        cfg->o.max_message = TT_WS_DEFAULT_MAX_MESSAGE;
    if (cfg->o.budget == 0)
        cfg->o.budget = cfg->o.max_message > TT_FRAME_DEFAULT_BUDGET / 2 ? 2 * cfg->o.max_message
                                                                          : TT_FRAME_DEFAULT_BUDGET;
    if (cfg->o.max_header_bytes == 0)
        cfg->o.max_header_bytes = TT_WS_DEFAULT_MAX_HEADER_BYTES;
    if (cfg->o.max_headers == 0)
        cfg->o.max_headers = TT_WS_DEFAULT_MAX_HEADERS;
    if (cfg->o.handshake_timeout_ms == 0)
        cfg->o.handshake_timeout_ms = TT_WS_DEFAULT_HANDSHAKE_MS;
    if (cfg->o.close_timeout_ms == 0)
        cfg->o.close_timeout_ms = TT_WS_DEFAULT_CLOSE_MS;
    if (cfg->o.default_kind == 0)
        cfg->o.default_kind = TT_WS_BINARY;
    cfg->refs = 1;
    *out = cfg;
    return 0;
}

void tt__ws_cfg_free(struct tt__ws_cfg *cfg) { cfg_unref(cfg); }

/* ---- sending frames ----------------------------------------------------------------- */

/* A control frame (header and payload, at most 127 bytes) goes the way framing's
 * pings go: ahead of a stream source, and still after tt_end. */
static int send_control(tt_conn_t *c, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t f[TT__WS_MAX_HEADER + TT__WS_MAX_CONTROL], key[4];
    bool masked = c->ext->ws != NULL && ((ws_t *)c->ext->ws)->client;
    if (masked)
        tt__ws_mask_key(key);
    size_t h = tt__ws_hdr_write(f, true, opcode, false, len, masked ? key : NULL);
    if (len > 0) {
        memcpy(f + h, payload, len);
        if (masked)
            tt__ws_mask(f + h, len, key, 0);
    }
    return tt__conn_send_control(c, f, h + len);
}

static void timer_start(ws_t *w, uint32_t ms)
{
    tt_loop_t *loop = tt__conn_loop(w->conn);
    tt__wheel_stop(&loop->wheel, &w->timer);
    tt__wheel_start(&loop->wheel, &w->timer, tt__loop_deadline(loop, ms));
}

/* Send our close frame (once), then end the stream as the server does first
 * (7.1.1), bounded by close_timeout_ms. */
static void send_close(ws_t *w, uint16_t code, const char *reason, size_t rlen)
{
    tt_conn_t *c = w->conn;
    uint8_t p[TT__WS_MAX_CONTROL];
    size_t n = 0;

    if (w->close_sent)
        return;
    w->close_sent = true;
    w->local_code = code == TT__WS_NO_STATUS ? 0 : code;
    if (code != TT__WS_NO_STATUS) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
        if (rlen > 0)
            memcpy(p + 2, reason, rlen);
        n += rlen;
    }
    (void)send_control(c, TT__WS_CLOSE, p, n);
    timer_start(w, w->cfg->o.close_timeout_ms);
}

/* The stream ends after our close: at once when the peer's close came too (the
 * handshake is done), else after its answer. */
static void end_stream(ws_t *w)
{
    if (!tt__conn_is_closing(w->conn))
        (void)tt_end(w->conn, NULL, 0);
}

static void drop_message(ws_t *w)
{
    w->cfg->used -= w->charged;
    w->charged = 0;
    free(w->msg.p);
    w->msg = (tt__zbuf_t){0};
    w->checked = 0;
    w->utf8 = (tt__utf8_t){0};
    if (w->infl != NULL) {
        tt__ws_inflate_end(w->infl);
        free(w->infl);
        w->infl = NULL;
    }
}

/* Fail the WebSocket connection (7.1.7) with `code`: our close frame, then the
 * end of the stream; on_close reports the matching kind. */
static void fail(ws_t *w, int code)
{
    tt_conn_t *c = w->conn;

    if (code == -ENOMEM) {
        tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM);
        return;
    }
    if (code < 0)
        code = -code;
    w->fail_kind = code == TT__WS_TOO_BIG ? TT_CLOSE_FRAME_TOO_LARGE : TT_CLOSE_PROTOCOL_ERROR;
    w->fail_err = w->over_budget ? -ENOBUFS : code == TT__WS_TOO_BIG ? TT_EFRAMESIZE : TT_EPROTOCOL;
    c->ext->close_detail = code;
    drop_message(w);
    send_close(w, (uint16_t)code, NULL, 0);
    w->state = S_CLOSED;
    end_stream(w);
}

static void timer_cb(tt__wnode_t *node)
{
    ws_t *w = tt__container_of(node, ws_t, timer);
    tt_conn_t *c = w->conn;
    static const char resp[] = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                               "Content-Length: 0\r\n\r\n";

    if (w->state == S_ANSWER) {
        /* The whole opening took too long: the lookup, the connect or the 101. */
        w->fail_kind = TT_CLOSE_CONNECT_TIMEOUT;
        w->fail_err = -ETIMEDOUT;
        w->why = tt_conn_state(c) == TT_STATE_CONNECTING
                     ? "websocket handshake timeout (still connecting)"
                     : "websocket handshake timeout (no answer to the upgrade request)";
        tt__conn_close(c, TT_CLOSE_CONNECT_TIMEOUT, -ETIMEDOUT);
        return;
    }

    if (w->state == S_HTTP) {
        /* A request that takes too long holds its buffer: answer and end. */
        free(w->head);
        w->head = NULL;
        w->head_len = 0;
        w->state = S_HTTP_DONE;
        w->fail_kind = TT_CLOSE_PROTOCOL_ERROR;
        w->fail_err = -ETIMEDOUT;
        c->ext->close_detail = 408;
        (void)tt_send(c, resp, sizeof(resp) - 1);
        end_stream(w);
        timer_start(w, w->cfg->o.close_timeout_ms);
        return;
    }
    tt__conn_close(c, TT_CLOSE_LINGER_TIMEOUT, -ETIMEDOUT);
}

/* ---- the HTTP request ------------------------------------------------------------- */

typedef struct req_view {
    const tt__http_req_t *req;
} req_view_t;

/* NUL-terminate the request's strings in place: each is followed by a byte the
 * parser no longer needs (a space, ':', '?', CR or LF). */
static void terminate(tt__http_req_t *r, tt_http_request_t *out, const tt_addr_t *peer)
{
    static const char empty[] = "";
    ((char *)r->method.p)[r->method.len] = '\0';
    ((char *)r->path.p)[r->path.len] = '\0';
    if (r->query.len > 0)
        ((char *)r->query.p)[r->query.len] = '\0';
    for (size_t i = 0; i < r->nfields; i++) {
        ((char *)r->fields[i].name.p)[r->fields[i].name.len] = '\0';
        ((char *)r->fields[i].value.p)[r->fields[i].value.len] = '\0';
    }
    memset(out, 0, sizeof(*out));
    out->method = r->method.p;
    out->path = r->path.p;
    out->query = r->query.len > 0 ? r->query.p : empty;
    const tt__str_t *o = tt__http_get(r, "origin");
    out->origin = o != NULL ? o->p : NULL;
    if (peer != NULL)
        out->peer = *peer;
    out->impl = r;
}

const char *tt_http_header(const tt_http_request_t *req, const char *name)
{
    if (req == NULL || req->impl == NULL || name == NULL)
        return NULL;
    const tt__str_t *v = tt__http_get(req->impl, name);
    return v != NULL ? v->p : NULL;
}

int tt_http_header_at(const tt_http_request_t *req, size_t i, const char **name,
                      const char **value)
{
    const tt__http_req_t *r;

    if (req == NULL || req->impl == NULL || name == NULL || value == NULL)
        return -EINVAL;
    r = req->impl;
    if (i >= r->nfields)
        return -ENOENT;
    *name = r->fields[i].name.p;
    *value = r->fields[i].value.p;
    return 0;
}

/* Answer a request we do not upgrade, then end the stream. `refused`: a
 * refusal (on_close says TT_CLOSE_PROTOCOL_ERROR), not a page served. */
static void respond(ws_t *w, int status, const char *ctype, const char *extra,
                    const void *body, size_t blen, bool head_only, bool refused)
{
    tt_conn_t *c = w->conn;
    char h[512];
    int n;

    if (status < 200 || status > 599)
        status = 500; /* a final answer: no 1xx */
    const char *reason = tt__http_reason(status);
    n = snprintf(h, sizeof(h), "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %zu\r\n"
                 "Connection: close\r\n",
                 status, *reason != '\0' ? reason : "Status", ctype != NULL ? "Content-Type: " : "",
                 ctype != NULL ? ctype : "", ctype != NULL ? "\r\n" : "", blen);
    if (n < 0 || (size_t)n >= sizeof(h))
        n = snprintf(h, sizeof(h), "HTTP/1.1 %d Status\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n", status, blen);
    struct iovec v[4] = {{h, (size_t)n},
                         {(void *)(extra != NULL ? extra : ""), extra != NULL ? strlen(extra) : 0},
                         {"\r\n", 2},
                         {(void *)body, head_only ? 0 : blen}};
    free(w->head);
    w->head = NULL;
    w->head_len = 0;
    w->state = S_HTTP_DONE;
    c->ext->close_detail = status;
    if (refused) {
        w->fail_kind = TT_CLOSE_PROTOCOL_ERROR;
        w->fail_err = TT_EPROTOCOL;
    }
    (void)tt_sendv(c, v, body != NULL && blen > 0 && !head_only ? 4 : 3);
    end_stream(w);
    if (!tt__conn_is_closing(c))
        timer_start(w, w->cfg->o.close_timeout_ms);
}

static void refuse(ws_t *w, int status)
{
    respond(w, status, NULL, status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL, NULL, 0,
            false, true);
}

static void feed_frames(ws_t *w, const char *buf, size_t n);

/* The upgrade: 101, on_open, then any bytes the client sent behind its request. */
static void upgrade(ws_t *w, tt__http_req_t *req, const tt_http_request_t *view)
{
    tt_conn_t *c = w->conn;
    const tt__str_t *key = tt__http_get(req, "sec-websocket-key");
    char accept[TT__WS_ACCEPT_LEN + 1], ext[128], resp[512];
    int n;

    (void)view;
    tt__ws_accept_for(key->p, key->len, accept);
    if (w->cfg->o.subprotocols != NULL)
        tt__ws_pick_protocol(req, w->cfg->o.subprotocols, w->proto, sizeof(w->proto));
    ext[0] = '\0';
    if (w->cfg->o.deflate) {
        tt__ws_pmd_accept(req, &w->pmd);
        if (w->pmd.on && tt__ws_pmd_format(&w->pmd, true, ext, sizeof(ext)) == 0)
            w->pmd.on = false;
    }
    n = snprintf(resp, sizeof(resp),
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s%s%s%s\r\n",
                 accept, w->proto[0] ? "Sec-WebSocket-Protocol: " : "", w->proto,
                 w->proto[0] ? "\r\n" : "", w->pmd.on ? "Sec-WebSocket-Extensions: " : "",
                 w->pmd.on ? ext : "", w->pmd.on ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(resp)) {
        refuse(w, 500);
        return;
    }
    /* Keep what followed the head: it is the first WebSocket input. */
    char *rest = NULL;
    size_t rest_len = w->head_len - req->head_len;
    if (rest_len > 0) {
        if ((rest = malloc(rest_len)) == NULL) {
            tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM);
            return;
        }
        memcpy(rest, w->head + req->head_len, rest_len);
    }
    free(w->head);
    w->head = NULL;
    w->head_len = 0;
    tt__wheel_stop(&tt__conn_loop(c)->wheel, &w->timer);
    w->state = S_OPEN;
    if (tt_send(c, resp, (size_t)n) < 0) {
        free(rest);
        return;
    }
    tt__conn_layer_opened(c); /* on_open */
    if (rest != NULL && !tt__conn_is_closing(c))
        feed_frames(w, rest, rest_len);
    free(rest);
}

static void handle_request(ws_t *w, tt__http_req_t *req)
{
    tt_conn_t *c = w->conn;
    tt_http_request_t view;
    tt_addr_t peer;
    bool have_peer = tt_conn_peer_addr(c, &peer) == 0;

    if (tt__ws_is_upgrade(req)) {
        int st = tt__ws_check_upgrade(req);
        if (st != 0) {
            refuse(w, st);
            return;
        }
        terminate(req, &view, have_peer ? &peer : NULL);
        if (w->cfg->o.accept != NULL) {
            st = w->cfg->o.accept(c, &view, w->cfg->o.arg);
            if (tt__conn_is_closing(c))
                return;
            if (st != 0) {
                refuse(w, st >= 400 && st <= 599 ? st : 403);
                return;
            }
        }
        upgrade(w, req, &view);
        return;
    }
    if (w->cfg->o.http == NULL) {
        refuse(w, 404);
        return;
    }
    terminate(req, &view, have_peer ? &peer : NULL);
    tt_http_response_t res = {0};
    w->cfg->o.http(c, &view, &res, w->cfg->o.arg);
    if (tt__conn_is_closing(c) || w->state != S_HTTP)
        return;
    bool head_only = strcmp(view.method, "HEAD") == 0;
    /* The strings the handler gave may point into the request: send before the
     * head buffer goes (respond copies what it queues). */
    char *keep = w->head;
    w->head = NULL;
    respond(w, res.status == 0 ? 200 : res.status, res.content_type, res.headers, res.body,
            res.body != NULL ? res.body_len : 0, head_only, false);
    free(keep);
}

static void http_input(ws_t *w, const char *buf, size_t n)
{
    tt__http_limits_t lim = {w->cfg->o.max_header_bytes, w->cfg->o.max_headers};
    tt__http_req_t req;
    char *nb;

    /* A read's worth at most past the limit: the parser says 431 then. */
    nb = realloc(w->head, w->head_len + n + 1);
    if (nb == NULL) {
        tt__conn_close(w->conn, TT_CLOSE_IO_ERROR, -ENOMEM);
        return;
    }
    memcpy(nb + w->head_len, buf, n);
    w->head = nb;
    w->head_len += n;
    w->head[w->head_len] = '\0';
    int r = tt__http_parse(w->head, w->head_len, &lim, &req);
    if (r == TT__HTTP_MORE)
        return;
    if (r != TT__HTTP_OK) {
        refuse(w, r);
        return;
    }
    handle_request(w, &req);
}

/* ---- the answer to a client's request ------------------------------------------------- */

/* The server did not upgrade, or answered in a way we may not accept (4.1: the
 * client fails the connection, with no close frame: WebSocket never began).
 * `status` goes to info.detail (0: no status line), `why` to info.reason. */
static void client_refused(ws_t *w, int status, const char *why)
{
    tt_conn_t *c = w->conn;

    free(w->head);
    w->head = NULL;
    w->head_len = 0;
    w->fail_kind = TT_CLOSE_PROTOCOL_ERROR;
    w->fail_err = TT_EPROTOCOL;
    w->why = why;
    c->ext->close_detail = status;
    tt__conn_close(c, TT_CLOSE_PROTOCOL_ERROR, TT_EPROTOCOL);
}

static void answer_input(ws_t *w, const char *buf, size_t n)
{
    tt__http_limits_t lim = {w->cfg->o.max_header_bytes, w->cfg->o.max_headers};
    tt_conn_t *c = w->conn;
    tt__http_req_t resp;
    const char *why = NULL;
    char *nb;

    nb = realloc(w->head, w->head_len + n + 1);
    if (nb == NULL) {
        tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM);
        return;
    }
    memcpy(nb + w->head_len, buf, n);
    w->head = nb;
    w->head_len += n;
    w->head[w->head_len] = '\0';
    int r = tt__http_parse_response(w->head, w->head_len, &lim, &resp);
    if (r == TT__HTTP_MORE)
        return;
    if (r != TT__HTTP_OK) {
        client_refused(w, 0, r == 431 ? "the upgrade answer is over the header limits"
                             : r == 505 ? "the upgrade answer is not HTTP/1.x"
                                        : "malformed HTTP answer to the upgrade request");
        return;
    }
    if (tt__ws_check_answer(&resp, w->key, w->cfg->o.subprotocols, w->cfg->o.deflate, &w->pmd,
                            w->proto, sizeof(w->proto), &why) < 0) {
        client_refused(w, resp.status, why);
        return;
    }
    /* What followed the head is the server's first frames. */
    char *rest = NULL;
    size_t rest_len = w->head_len - resp.head_len;
    if (rest_len > 0) {
        if ((rest = malloc(rest_len)) == NULL) {
            tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM);
            return;
        }
        memcpy(rest, w->head + resp.head_len, rest_len);
    }
    free(w->head);
    w->head = NULL;
    w->head_len = 0;
    tt__wheel_stop(&tt__conn_loop(c)->wheel, &w->timer);
    w->state = S_OPEN;
    tt__conn_layer_opened(c); /* on_open */
    if (rest != NULL && !tt__conn_is_closing(c))
        feed_frames(w, rest, rest_len);
    free(rest);
}

/* ---- frames ---------------------------------------------------------------------- */

/* Room for `add` more payload bytes in the message (never past max_message, which
 * tt__ws_seq_frame and the inflater enforce). 0 or -ENOMEM. */
static int msg_reserve(ws_t *w, size_t add)
{
    tt__zbuf_t *m = &w->msg;
    size_t need = m->len + add, cap = m->cap;

    if (need <= cap)
        return 0;
    if (cap == 0 && w->fh.fin)
        cap = m->len + (size_t)(w->fh.len - w->fpos); /* one frame: exactly its size */
    while (cap < need)
        cap = cap < 4096 ? 4096 : cap * 2;
    if (cap > w->cfg->o.max_message && need <= w->cfg->o.max_message)
        cap = w->cfg->o.max_message;
    uint8_t *p = realloc(m->p, cap);
    if (p == NULL)
        return -ENOMEM;
    m->p = p;
    m->cap = cap;
    return 0;
}

/* Count the message buffer's growth against the server-wide budget. 0, or -1009
 * when this growth would pass it. */
static int charge(ws_t *w)
{
    ws_cfg_t *cfg = w->cfg;
    size_t cap = w->msg.cap;
    bool grew = cap > w->charged;

    cfg->used = cfg->used - w->charged + cap;
    w->charged = cap;
    if (grew && cfg->o.budget != SIZE_MAX && cfg->used > cfg->o.budget) {
        w->over_budget = true;
        return -TT__WS_TOO_BIG;
    }
    return 0;
}

/* Validate what was added to a text message since the last check. */
static int check_text(ws_t *w)
{
    if (w->kind != TT__WS_TEXT)
        return 0;
    if (!tt__utf8_feed(&w->utf8, w->msg.p + w->checked, w->msg.len - w->checked))
        return -TT__WS_INVALID_DATA;
    w->checked = w->msg.len;
    return 0;
}

static int start_frame(ws_t *w)
{
    tt__ws_hdr_t *h = &w->fh;
    bool opening = h->opcode == TT__WS_TEXT || h->opcode == TT__WS_BINARY;
    int r = tt__ws_seq_frame(&w->seq, h, w->cfg->o.max_message);

    if (r < 0)
        return r;
    w->fpos = 0;
    if (opening) {
        w->kind = h->opcode;
        if (h->rsv1) {
            if ((w->infl = malloc(sizeof(*w->infl))) == NULL)
                return -ENOMEM;
            if (tt__ws_inflate_init(w->infl) < 0) {
                free(w->infl);
                w->infl = NULL;
                return -ENOMEM;
            }
        }
    }
    return 0;
}

static int payload(ws_t *w, const uint8_t *p, size_t n)
{
    tt__ws_hdr_t *h = &w->fh;
    int r;

    if (h->opcode & 0x8) { /* control: at most 125 bytes, kept in the object */
        memcpy(w->ctl + w->fpos, p, n);
        if (h->masked)
            tt__ws_mask(w->ctl + w->fpos, n, h->mask, w->fpos);
        return 0;
    }
    if (w->state != S_OPEN || (w->close_sent && !w->cfg->read_after_close))
        return 0; /* after our close frame: read and dropped */
    if (w->infl == NULL) {
        if ((r = msg_reserve(w, n)) < 0 || (r = charge(w)) < 0)
            return r;
        memcpy(w->msg.p + w->msg.len, p, n);
        if (h->masked) /* a server's frames to a client are not */
            tt__ws_mask(w->msg.p + w->msg.len, n, h->mask, w->fpos);
        w->msg.len += n;
        return check_text(w);
    }
    /* Compressed: unmask a chunk at a time and inflate it. */
    for (size_t off = 0; off < n;) {
        uint8_t chunk[UNMASK_CHUNK];
        size_t k = n - off < sizeof(chunk) ? n - off : sizeof(chunk);
        memcpy(chunk, p + off, k);
        if (h->masked)
            tt__ws_mask(chunk, k, h->mask, w->fpos + off);
        r = tt__ws_inflate_feed(w->infl, chunk, k, false, w->cfg->o.max_message, true, &w->msg);
        if (r < 0 || (r = charge(w)) < 0)
            return r;
        if ((r = check_text(w)) < 0)
            return r;
        off += k;
    }
    return 0;
}

/* `more`: the bytes of the same read behind this message. A broadcast from
 * on_message then queues on every recipient, so that the read's messages reach
 * each one in a single write at the end of the round (loop->more_input, as
 * proto/frame.c sets it; ops/broadcast.c). */
static void deliver(ws_t *w, size_t more)
{
    tt_conn_t *c = w->conn;

    c->ext->msgs_in++;
    if (c->h->h.on_message != NULL) { /* w->kind tells tt_conn_message_kind */
        size_t outer = tt__conn_loop(c)->more_input;
        tt__conn_loop(c)->more_input = more;
        c->h->h.on_message(c, w->msg.p != NULL ? (const void *)w->msg.p : "", w->msg.len);
        tt__conn_loop(c)->more_input = outer;
    }
    w->kind = 0;
    drop_message(w);
}

static void handle_close(ws_t *w, size_t n)
{
    uint16_t code;
    int r = tt__ws_close_parse(w->ctl, n, &code);

    if (r < 0) {
        fail(w, r);
        return;
    }
    w->close_rcvd = true;
    w->peer_code = code;
    w->reason_len = n > 2 ? (uint8_t)(n - 2) : 0;
    memcpy(w->reason, w->ctl + 2, w->reason_len);
    w->reason[w->reason_len] = '\0';
    drop_message(w);
    /* Answer with the same code (5.5.1), then end the stream: the server closes
     * the TCP connection first (7.1.1). */
    send_close(w, code, NULL, 0);
    w->state = S_CLOSED;
    end_stream(w);
}

/* A frame's payload is complete; `more`: the bytes of the same read behind it. */
static int end_frame(ws_t *w, size_t more)
{
    tt__ws_hdr_t *h = &w->fh;
    int r;

    w->in_frame = false;
    switch (h->opcode) {
    case TT__WS_PING:
        if (!w->close_sent)
            (void)send_control(w->conn, TT__WS_PONG, w->ctl, (size_t)h->len);
        return 0;
    case TT__WS_PONG:
        return 0; /* a sign of life: already counted by the read */
    case TT__WS_CLOSE:
        handle_close(w, (size_t)h->len);
        return 0;
    default:
        break;
    }
    if (!h->fin)
        return 0;
    if (w->state != S_OPEN || (w->close_sent && !w->cfg->read_after_close)) {
        drop_message(w);
        return 0;
    }
    if (w->infl != NULL) {
        r = tt__ws_inflate_feed(w->infl, NULL, 0, true, w->cfg->o.max_message, true, &w->msg);
        if (r < 0 || (r = charge(w)) < 0)
            return r;
        if ((r = check_text(w)) < 0)
            return r;
    }
    if (w->kind == TT__WS_TEXT && !tt__utf8_done(&w->utf8))
        return -TT__WS_INVALID_DATA;
    deliver(w, more);
    return 0;
}

/* Stop between frames when the callback closed the connection, ended the
 * WebSocket, or paused reading. */
static bool must_stop(ws_t *w)
{
    tt_conn_t *c = w->conn;
    return tt__conn_is_closing(c) || w->state == S_CLOSED || !tt_conn_is_reading(c);
}

/* Feed frames; returns the bytes consumed (all of them unless it stopped). */
static size_t frames(ws_t *w, const uint8_t *p, size_t n)
{
    tt__ws_rules_t rules = {.server = !w->client, .allow_rsv1 = w->pmd.on};
    size_t i = 0;
    int r;

    while (i < n) {
        if (!w->in_frame) {
            if (w->hlen > 0 || n - i < TT__WS_MAX_HEADER) {
                size_t take = TT__WS_MAX_HEADER - w->hlen;
                if (take > n - i)
                    take = n - i;
                memcpy(w->hbuf + w->hlen, p + i, take);
                r = tt__ws_hdr_parse(w->hbuf, w->hlen + take, &rules, &w->fh);
                if (r == 0) {
                    w->hlen = (uint8_t)(w->hlen + take);
                    return n;
                }
                if (r < 0) {
                    fail(w, r);
                    return n;
                }
                i += (size_t)r - w->hlen;
                w->hlen = 0;
            } else {
                r = tt__ws_hdr_parse(p + i, n - i, &rules, &w->fh);
                if (r < 0) {
                    fail(w, r);
                    return n;
                }
                i += (size_t)r;
            }
            if ((r = start_frame(w)) < 0) {
                fail(w, r);
                return n;
            }
            w->in_frame = true;
        }
        size_t take = w->fh.len - w->fpos < n - i ? (size_t)(w->fh.len - w->fpos) : n - i;
        if (take > 0 && (r = payload(w, p + i, take)) < 0) {
            fail(w, r);
            return n;
        }
        w->fpos += take;
        i += take;
        if (w->fpos == w->fh.len) {
            if ((r = end_frame(w, n - i)) < 0) {
                fail(w, r);
                return n;
            }
            if (must_stop(w))
                return tt__conn_is_closing(w->conn) || w->state == S_CLOSED ? n : i;
        }
    }
    return n;
}

static int hold(ws_t *w, const char *buf, size_t n)
{
    char *nb = realloc(w->held, w->held_len + n);
    if (nb == NULL)
        return -ENOMEM;
    memcpy(nb + w->held_len, buf, n);
    w->held = nb;
    w->held_len += n;
    return 0;
}

static void feed_frames(ws_t *w, const char *buf, size_t n)
{
    /* Reading paused already (in on_open, before the pipelined frames): all held. */
    size_t used = tt_conn_is_reading(w->conn) ? frames(w, (const uint8_t *)buf, n) : 0;
    if (used < n && !tt__conn_is_closing(w->conn) && hold(w, buf + used, n - used) < 0)
        tt__conn_close(w->conn, TT_CLOSE_IO_ERROR, -ENOMEM);
}

/* ---- connection hooks ------------------------------------------------------------- */

static void ws_input(tt_conn_t *c, const char *buf, size_t n)
{
    ws_t *w = c->ext->ws;

    switch (w->state) {
    case S_HTTP:
        http_input(w, buf, n);
        return;
    case S_ANSWER:
        answer_input(w, buf, n);
        return;
    case S_OPEN:
        if (w->held != NULL) { /* earlier input still waits: keep the order */
            if (hold(w, buf, n) < 0)
                tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM);
            return;
        }
        feed_frames(w, buf, n);
        return;
    default:
        return; /* answered, or closed: nothing more is read into anything */
    }
}

static void feed_held(ws_t *w)
{
    if (w->held == NULL || !tt_conn_is_reading(w->conn))
        return;
    char *buf = w->held;
    size_t len = w->held_len;
    w->held = NULL;
    w->held_len = 0;
    if (w->state == S_OPEN)
        feed_frames(w, buf, len);
    free(buf);
}

static void ws_read_resumed(tt_conn_t *c)
{
    ws_t *w = ws_of(c);

    if (w == NULL)
        return;
    feed_held(w);
    if (!tt__conn_is_closing(c) && tt__conn_eof_held(c) && w->held == NULL)
        tt__conn_peer_ended(c);
}

static int ws_eof(tt_conn_t *c)
{
    ws_t *w = ws_of(c);

    if (w == NULL)
        return 0;
    feed_held(w);
    if (tt__conn_is_closing(c))
        return 0;
    if (w->held != NULL)
        return 1; /* paused: the end waits for tt_conn_read_start */
    switch (w->state) {
    case S_ANSWER:
        client_refused(w, 0, w->head_len > 0 ? "the server closed the connection in the "
                                               "middle of its answer to the upgrade"
                                             : "the server closed the connection without "
                                               "answering the upgrade");
        return 0;
    case S_HTTP:
        /* Gone before its request was complete: nothing to answer. */
        tt__conn_close(c, w->head_len > 0 ? TT_CLOSE_PROTOCOL_ERROR : TT_CLOSE_PEER_CLOSED,
                       w->head_len > 0 ? TT_EPROTOCOL : 0);
        return 0;
    case S_OPEN:
        if (!w->close_rcvd) {
            /* The stream ended without a close frame: abnormal (1006). */
            tt__conn_close(c, TT_CLOSE_WS_ABNORMAL, TT_EOF);
            return 0;
        }
        return 0;
    default:
        if (tt_conn_state(c) == TT_STATE_WRITE_CLOSED)
            tt__conn_close(c, TT_CLOSE_LOCAL_END, 0); /* our FIN went first */
        return 0;
    }
}

static int ws_ping(tt_conn_t *c)
{
    ws_t *w = ws_of(c);
    if (w == NULL || w->state != S_OPEN || w->close_sent)
        return -ENOTCONN;
    return send_control(c, TT__WS_PING, NULL, 0);
}

static _Thread_local char reason_out[TT__WS_MAX_CONTROL];

static void ws_close_info(tt_conn_t *c, tt_close_info_t *info)
{
    ws_t *w = ws_of(c);

    if (w == NULL)
        return;
    if (w->fail_kind != 0) {
        info->kind = (tt_close_kind_t)w->fail_kind;
        info->error = w->fail_err;
    } else if (w->close_sent && w->close_rcvd &&
               (info->kind == TT_CLOSE_PEER_CLOSED || info->kind == TT_CLOSE_LOCAL_END ||
                info->kind == TT_CLOSE_PEER_RESET)) {
        info->kind = TT_CLOSE_WS_CLOSED; /* the closing handshake is what counts */
        info->error = 0;
    }
    if (w->why != NULL)
        info->reason = w->why;
    if (w->state == S_HTTP || w->state == S_HTTP_DONE || w->state == S_ANSWER)
        return; /* never WebSocket: no codes */
    info->ws_code = w->close_rcvd ? w->peer_code : TT__WS_ABNORMAL;
    info->ws_local_code = w->local_code;
    memcpy(reason_out, w->reason, (size_t)w->reason_len + 1);
    info->ws_reason = reason_out;
}

/* tt_end on an open WebSocket: the last bytes as a message, then a close frame
 * with 1000 (unless one went already), then the end of the stream. */
static int ws_end(tt_conn_t *c, const void *buf, size_t len)
{
    ws_t *w = ws_of(c);
    int err;

    if (w == NULL || w->state == S_HTTP || w->state == S_HTTP_DONE || w->state == S_ANSWER)
        return 0;
    if (w->state != S_OPEN || w->close_sent)
        return len > 0 ? -EPIPE : 0; /* raw bytes after a close frame: never */
    if (len > 0 && (err = tt_ws_send(c, w->cfg->o.default_kind, buf, len)) < 0)
        return err;
    if (!w->cfg->read_after_close)
        drop_message(w);
    send_close(w, TT__WS_NORMAL, NULL, 0);
    return 1;
}

static void ws_free(tt_conn_t *c)
{
    ws_t *w = c->ext->ws;

    c->ext->ws = NULL;
    c->ext->frame_input = NULL;
    c->ext->frame_free = NULL;
    c->ext->frame_ping = NULL;
    c->ext->read_resumed = NULL;
    c->ext->frame_eof = NULL;
    c->ext->close_info = NULL;
    c->ext->end_hook = NULL;
    if (w == NULL)
        return;
    tt__wheel_stop(&tt__conn_loop(c)->wheel, &w->timer);
    drop_message(w);
    free(w->head);
    free(w->held);
    cfg_unref(w->cfg);
    free(w);
}

/* The layer's hooks on the connection, either role; on_open waits for the
 * handshake. */
static void install(tt_conn_t *c, ws_t *w)
{
    tt__wnode_init(&w->timer, timer_cb);
    c->ext->ws = w;
    c->ext->frame_input = ws_input;
    c->ext->frame_free = ws_free;
    c->ext->read_resumed = ws_read_resumed;
    c->ext->frame_eof = ws_eof;
    c->ext->frame_ping = ws_ping;
    c->ext->close_info = ws_close_info;
    c->ext->end_hook = ws_end;
    c->ext->open_waits++;
}

int tt__ws_apply(tt_conn_t *c, struct tt__ws_cfg *cfg)
{
    ws_t *w;

    if (tt__conn_ext(c) == NULL || (w = calloc(1, sizeof(*w))) == NULL)
        return -ENOMEM;
    w->conn = c;
    w->cfg = cfg;
    cfg->refs++;
    w->state = S_HTTP;
    install(c, w);
    timer_start(w, cfg->o.handshake_timeout_ms);
    return 0;
}

int tt__ws_client_cfg_new(struct tt__ws_cfg **out, const char *url,
                          const tt_ws_client_opts_t *co)
{
    tt_ws_client_opts_t z = {0};
    tt_ws_opts_t o = {0};
    ws_cfg_t *cfg;
    int err;

    *out = NULL;
    if (co == NULL)
        co = &z;
    if (url == NULL || strlen(url) > TT_WS_MAX_URL || !tt__ws_headers_ok(co->headers) ||
        !tt__ws_protocols_ok(co->subprotocols) ||
        (co->headers != NULL && strlen(co->headers) > TT_WS_DEFAULT_MAX_HEADER_BYTES))
        return -EINVAL;
    o.subprotocols = co->subprotocols;
    o.max_message = co->max_message;
    o.max_header_bytes = co->max_header_bytes;
    o.max_headers = co->max_headers;
    o.handshake_timeout_ms = co->handshake_timeout_ms;
    o.close_timeout_ms = co->close_timeout_ms;
    o.deflate = co->deflate;
    o.default_kind = co->default_kind;
    if ((err = tt__ws_cfg_new(&cfg, &o)) < 0)
        return err;
    cfg->client = true;
    cfg->read_after_close = co->read_after_close;
    if ((cfg->url_text = strdup(url)) == NULL ||
        (co->headers != NULL && (cfg->headers = strdup(co->headers)) == NULL)) {
        cfg_unref(cfg);
        return -ENOMEM;
    }
    if (tt__ws_url_parse(cfg->url_text, &cfg->url) < 0) {
        cfg_unref(cfg);
        return -EINVAL;
    }
    *out = cfg;
    return 0;
}

const char *tt__ws_cfg_host(const struct tt__ws_cfg *cfg, uint16_t *port, bool *secure)
{
    *port = cfg->url.port;
    *secure = cfg->url.secure;
    return cfg->url.host;
}

int tt__ws_client_apply(tt_conn_t *c, struct tt__ws_cfg *cfg)
{
    char *req;
    size_t len;
    ws_t *w;
    int err;

    if (tt__conn_ext(c) == NULL || (w = calloc(1, sizeof(*w))) == NULL)
        return -ENOMEM;
    if ((err = tt__ws_key_new(w->key)) < 0) {
        free(w);
        return err;
    }
    req = tt__ws_request(&cfg->url, w->key, cfg->o.subprotocols, cfg->o.deflate, cfg->headers,
                         &len);
    if (req == NULL) {
        free(w);
        return -ENOMEM;
    }
    /* Queued while connecting: the stream writes it as soon as it opens (over
     * TLS, once that handshake is done), before anything else. */
    err = tt_send(c, req, len);
    free(req);
    if (err < 0) {
        free(w);
        return err;
    }
    w->conn = c;
    w->cfg = cfg;
    w->client = true;
    cfg->refs++;
    w->state = S_ANSWER;
    install(c, w);
    /* From the call: the lookup and the connect count against it too. */
    timer_start(w, cfg->o.handshake_timeout_ms);
    return 0;
}

/* ---- public ------------------------------------------------------------------------ */

int tt_conn_set_websocket(tt_conn_t *c, const tt_ws_opts_t *opts)
{
    ws_cfg_t *cfg;
    int err;

    if (c == NULL || opts == NULL || tt__ws_check(opts) < 0 || tt__conn_server(c) == NULL)
        return -EINVAL; /* server side only: a client would speak first */
    if (tt__conn_is_closing(c))
        return -ENOTCONN;
    if (c->bytes_in > 0 || ws_of(c) != NULL || tt_conn_is_framed(c))
        return -EBUSY;
    if ((err = tt__ws_cfg_new(&cfg, opts)) < 0)
        return err;
    err = tt__ws_apply(c, cfg);
    cfg_unref(cfg); /* the connection holds its own reference */
    return err;
}

bool tt_conn_is_websocket(const tt_conn_t *c)
{
    ws_t *w = ws_of(c);
    return w != NULL && (w->state == S_OPEN || w->state == S_CLOSED);
}

tt_ws_kind_t tt_conn_message_kind(const tt_conn_t *c)
{
    ws_t *w = ws_of(c);
    return w != NULL ? (tt_ws_kind_t)w->kind : 0;
}

const char *tt_ws_protocol(const tt_conn_t *c)
{
    return tt_conn_is_websocket(c) ? ws_of(c)->proto : NULL;
}

bool tt_ws_deflated(const tt_conn_t *c)
{
    return tt_conn_is_websocket(c) && ws_of(c)->pmd.on;
}

static int sendable(ws_t *w)
{
    if (w == NULL || (w->state != S_OPEN && w->state != S_CLOSED))
        return -ENOTCONN;
    if (w->close_sent || w->state != S_OPEN)
        return -EPIPE;
    return 0;
}

static z_stream *deflater(ws_t *w)
{
    /* Our compressor's window: the server's, or as a client the one it allowed us. */
    unsigned want = w->client ? w->pmd.client_bits : w->pmd.server_bits;
    unsigned bits = want >= 9 && want <= 15 ? want : 15;
    z_stream **z = &w->cfg->defl[bits];

    if (*z == NULL) {
        z_stream *n = malloc(sizeof(*n));
        if (n == NULL || tt__ws_deflate_init(n, (int)bits) < 0) {
            free(n);
            return NULL;
        }
        *z = n;
    }
    return *z;
}

int tt_ws_send(tt_conn_t *c, tt_ws_kind_t kind, const void *buf, size_t len)
{
    ws_t *w;
    uint8_t hdr[TT__WS_MAX_HEADER];
    tt__zbuf_t z = {0};
    bool rsv1 = false;
    int err;

    if (c == NULL || (buf == NULL && len > 0) || (kind != TT_WS_TEXT && kind != TT_WS_BINARY))
        return -EINVAL;
    w = ws_of(c);
    if ((err = sendable(w)) < 0)
        return err;
    if (kind == TT_WS_TEXT) {
        tt__utf8_t u = {0};
        if (!tt__utf8_feed(&u, buf, len) || !tt__utf8_done(&u))
            return -EINVAL;
    }
    if (w->pmd.on && len >= DEFLATE_MIN) {
        z_stream *d = deflater(w);
        if (d != NULL && tt__ws_deflate_msg(d, buf, len, true, &z) == 0 && z.len < len) {
            buf = z.p;
            len = z.len;
            rsv1 = true;
        }
    }
    uint8_t key[4], small[2048], *masked = NULL;
    if (w->client) {
        /* A client masks every frame with a key of its own (5.3): the payload
         * is masked in a copy (the compressed one is ours already). */
        tt__ws_mask_key(key);
        if (rsv1)
            masked = z.p;
        else if (len <= sizeof(small))
            masked = small;
        else if ((masked = malloc(len)) == NULL)
            return -ENOMEM;
        if (masked != buf && len > 0)
            memcpy(masked, buf, len);
        tt__ws_mask(masked, len, key, 0);
        buf = masked;
    }
    size_t h = tt__ws_hdr_write(hdr, true, (uint8_t)kind, rsv1, len, w->client ? key : NULL);
    struct iovec v[2] = {{hdr, h}, {(void *)buf, len}};
    err = tt_sendv(c, v, len > 0 ? 2 : 1);
    if (masked != NULL && masked != small && masked != z.p)
        free(masked);
    free(z.p);
    if (err >= 0)
        c->ext->msgs_out++;
    return err;
}

int tt_ws_send_text(tt_conn_t *c, const char *text)
{
    if (c == NULL || text == NULL)
        return -EINVAL;
    return tt_ws_send(c, TT_WS_TEXT, text, strlen(text));
}

int tt__ws_send_messagev(tt_conn_t *c, const struct iovec *iov, int iovcnt)
{
    ws_t *w = ws_of(c);
    size_t len = 0;
    int err;

    if (iovcnt == 1)
        return tt_ws_send(c, w->cfg->o.default_kind, iov[0].iov_base, iov[0].iov_len);
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    char *p = malloc(len > 0 ? len : 1);
    if (p == NULL)
        return -ENOMEM;
    len = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > 0)
            memcpy(p + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    err = tt_ws_send(c, w->cfg->o.default_kind, p, len);
    free(p);
    return err;
}

int tt__ws_send_ping(tt_conn_t *c)
{
    int err = sendable(ws_of(c));
    return err < 0 ? err : send_control(c, TT__WS_PING, NULL, 0);
}

int tt_ws_close(tt_conn_t *c, int code, const char *reason)
{
    ws_t *w;
    size_t rlen = reason != NULL ? strlen(reason) : 0;
    int err;

    if (c == NULL || code < 1000 || code > 4999 || !tt__ws_close_code_ok((unsigned)code) ||
        rlen > TT__WS_MAX_CONTROL - 2)
        return -EINVAL;
    if (rlen > 0) {
        tt__utf8_t u = {0};
        if (!tt__utf8_feed(&u, (const uint8_t *)reason, rlen) || !tt__utf8_done(&u))
            return -EINVAL;
    }
    w = ws_of(c);
    if ((err = sendable(w)) < 0)
        return err;
    if (tt__conn_is_closing(c))
        return -ENOTCONN;
    if (!w->cfg->read_after_close) /* else what is under way still comes */
        drop_message(w);
    send_close(w, (uint16_t)code, reason, rlen);
    return 0;
}

/* ---- broadcast ---------------------------------------------------------------------- */

/* One key per way of framing a broadcast: the kind, and when deflate was agreed
 * the compressor's window (a message compressed with a window of N bits is for
 * every connection that agreed to that window). */
static const char keys[2][16];

const void *tt__ws_shared_key(const tt_conn_t *c)
{
    ws_t *w = ws_of(c);
    if (sendable(w) < 0 || w->client)
        return NULL; /* a client's frames are masked each its own way: never shared */
    int k = w->cfg->o.default_kind == TT_WS_TEXT ? 0 : 1;
    unsigned bits = w->pmd.on ? (w->pmd.server_bits >= 9 && w->pmd.server_bits <= 15
                                     ? w->pmd.server_bits : 15)
                              : 0;
    return &keys[k][bits];
}

int tt__ws_wrap(const tt_conn_t *c, size_t len, unsigned char *hdr, size_t *hlen)
{
    ws_t *w = ws_of(c);
    int err = sendable(w);
    if (err < 0)
        return err;
    if (w->client)
        return -EOPNOTSUPP; /* the payload would have to be masked: tt_ws_send copies */
    *hlen = tt__ws_hdr_write(hdr, true, (uint8_t)w->cfg->o.default_kind, false, len, NULL);
    return 0;
}

int tt__ws_wrap_msg(const tt_conn_t *c, const void *msg, size_t len, unsigned char *hdr,
                    size_t *hlen, void **zout, size_t *zlen)
{
    ws_t *w = ws_of(c);
    tt__zbuf_t z = {0};
    bool rsv1 = false;
    int err = sendable(w);

    *zout = NULL;
    *zlen = 0;
    if (err < 0)
        return err;
    if (w->client)
        return -EOPNOTSUPP;
    if (w->pmd.on && len >= DEFLATE_MIN) {
        z_stream *d = deflater(w);
        if (d != NULL && tt__ws_deflate_msg(d, msg, len, true, &z) == 0 && z.len < len) {
            *zout = z.p;
            *zlen = z.len;
            len = z.len;
            rsv1 = true;
        } else {
            free(z.p);
        }
    }
    *hlen = tt__ws_hdr_write(hdr, true, (uint8_t)w->cfg->o.default_kind, rsv1, len, NULL);
    return 0;
}
