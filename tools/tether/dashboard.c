/* The dashboard (see dashboard.h). One listener of the library's WebSocket server
 * layer: GET / (non-upgrade) is the page, an upgrade on any path is the feed.
 * The feed is JSON text messages:
 *   {"t":"open","id":N,"peer":"A"}                       a connection came
 *   {"t":"close","id":N,"kind":"K","reason":"R","bytes_in":N,"bytes_out":N}
 *   {"t":"tick","ms":N,"totals":{...},"rows":[{...},...]} once a second
 * opens and closes pushed as they happen (tt_follow_start), the tick with the
 * whole table (at most MAX_ROWS rows) and the totals; the page works out rates
 * from consecutive ticks. A viewer further behind than VIEWER_CAP is dropped:
 * the watched server never waits for it. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dashboard.h"
#include "dashboard_page.h"

#define MAX_VIEWERS 16
#define MAX_ROWS 500
#define VIEWER_CAP ((size_t)1 << 20)
#define TICK_MS 1000

struct cli_dash {
    tt_loop_t *loop;
    tt_server_t *watched, *srv;
    tt_follow_t *follow;
    tt_timer_t *tick;
    char *token;
};

typedef struct buf {
    char *p;
    size_t len, cap;
    bool err;
} buf_t;

static void put(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        if (b->err)
            return;
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap != 0 ? b->cap * 2 : 1024;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->err = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

/* A JSON string: quotes, backslashes and control bytes escaped; bytes >= 0x80
 * become '?' (the text is ours or a layer's ASCII words: keeps it valid UTF-8). */
static void put_str(buf_t *b, const char *s)
{
    put(b, "\"");
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            put(b, "\\%c", ch);
        else if (ch < 0x20)
            put(b, "\\u%04x", ch);
        else
            put(b, "%c", ch >= 0x80 ? '?' : ch);
    }
    put(b, "\"");
}

static bool token_ok(const cli_dash_t *d, const char *query)
{
    if (d->token == NULL)
        return true;
    size_t tl = strlen(d->token);
    for (const char *p = query; p != NULL && *p != '\0';) {
        const char *amp = strchr(p, '&');
        size_t n = amp != NULL ? (size_t)(amp - p) : strlen(p);
        if (n == 6 + tl && memcmp(p, "token=", 6) == 0 && memcmp(p + 6, d->token, tl) == 0)
            return true;
        p = amp != NULL ? amp + 1 : NULL;
    }
    return false;
}

/* ---- pushing ------------------------------------------------------------------------ */

typedef struct msg {
    const char *p;
    size_t len;
} msg_t;

static int send_one(tt_conn_t *c, void *arg)
{
    const msg_t *m = arg;
    tt_conn_stats_t st;

    if (!tt_conn_is_websocket(c) || tt_conn_get_data(c) == NULL)
        return 0; /* an HTTP request, or a viewer still shaking hands */
    tt_conn_get_stats(c, &st);
    if (st.queued_bytes + m->len > VIEWER_CAP || tt_ws_send(c, TT_WS_TEXT, m->p, m->len) < 0)
        tt_destroy(c, 0);
    return 0;
}

static void broadcast(cli_dash_t *d, buf_t *b)
{
    msg_t m = {b->p, b->len};
    if (!b->err && b->len > 0)
        tt_server_foreach(d->srv, send_one, &m);
    free(b->p);
}

static void put_row(buf_t *b, tt_conn_t *c)
{
    tt_conn_stats_t st;
    char peer[TT_ADDR_STRLEN] = "-";

    tt_conn_get_stats(c, &st);
    if (st.peer.len > 0)
        tt_addr_format(&st.peer, peer, sizeof(peer));
    put(b, "{\"id\":%" PRIu64 ",\"peer\":", st.id);
    put_str(b, peer);
    put(b,
        ",\"state\":\"%s\",\"age_ms\":%" PRIu64 ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
        ",\"pkts_in\":%" PRIu64 ",\"pkts_out\":%" PRIu64 "}",
        tt_conn_state_name(st.state), st.age_ms, st.bytes_in, st.bytes_out, st.packets_in,
        st.packets_out);
}

static void on_follow(const tt_follow_event_t *ev, void *arg)
{
    cli_dash_t *d = arg;
    buf_t b = {0};
    tt_conn_stats_t st;

    if (ev->open) {
        put(&b, "{\"t\":\"open\",\"row\":");
        put_row(&b, ev->conn);
        put(&b, "}");
    } else {
        tt_conn_get_stats(ev->conn, &st);
        put(&b, "{\"t\":\"close\",\"id\":%" PRIu64 ",\"kind\":", st.id);
        put_str(&b, tt_close_kind_name(ev->kind));
        put(&b, ",\"reason\":");
        put_str(&b, ev->reason);
        put(&b, ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64 "}", st.bytes_in,
            st.bytes_out);
    }
    broadcast(d, &b);
}

typedef struct rows_ctx {
    buf_t *b;
    size_t n;
} rows_ctx_t;

static int add_row(tt_conn_t *c, void *arg)
{
    rows_ctx_t *r = arg;
    if (r->n >= MAX_ROWS)
        return 1;
    put(r->b, "%s", r->n++ > 0 ? "," : "");
    put_row(r->b, c);
    return 0;
}

static void tick_text(cli_dash_t *d, buf_t *b)
{
    tt_server_totals_t t;
    rows_ctx_t r = {b, 0};

    tt_server_get_totals(d->watched, &t);
    put(b,
        "{\"t\":\"tick\",\"ms\":%" PRIu64 ",\"totals\":{\"open\":%" PRIu64 ",\"accepted\":%" PRIu64
        ",\"refused\":%" PRIu64 ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
        ",\"pkts_in\":%" PRIu64 ",\"pkts_out\":%" PRIu64 "},\"rows\":[",
        tt_loop_now(d->loop), t.open, t.accepted, t.refused, t.bytes_in, t.bytes_out,
        t.packets_in, t.packets_out);
    tt_server_foreach(d->watched, add_row, &r);
    put(b, "]}");
}

static void on_tick(tt_timer_t *timer, void *arg)
{
    cli_dash_t *d = arg;
    buf_t b = {0};
    (void)timer;
    if (tt_server_conn_count(d->srv) == 0)
        return;
    tick_text(d, &b);
    broadcast(d, &b);
}

/* ---- the listener ------------------------------------------------------------------- */

static int ws_accept(tt_conn_t *c, const tt_http_request_t *req, void *arg)
{
    (void)c;
    return token_ok(arg, req->query) ? 0 : 403;
}

static void serve_http(tt_conn_t *c, const tt_http_request_t *req, tt_http_response_t *res,
                       void *arg)
{
    static const char forbidden[] = "forbidden: add ?token=... to the URL\n";
    cli_dash_t *d = arg;
    (void)c;

    if (cli_http_one_page(req, res))
        return;
    if (!token_ok(d, req->query)) {
        res->status = 403;
        res->body = forbidden;
        res->body_len = sizeof(forbidden) - 1;
    } else {
        res->status = 200;
        res->content_type = "text/html; charset=utf-8";
        res->headers = "Cache-Control: no-store\r\n"
                       "X-Content-Type-Options: nosniff\r\n"
                       "Referrer-Policy: no-referrer\r\n"
                       "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
                       "style-src 'unsafe-inline'; connect-src 'self'; img-src data:\r\n";
        res->body = cli_dashboard_page;
        res->body_len = cli_dashboard_page_len;
    }
}

static void viewer_open(tt_conn_t *c)
{
    cli_dash_t *d = tt_server_get_data(tt_conn_server(c));
    buf_t b = {0};

    if (d == NULL || !tt_conn_is_websocket(c))
        return;
    tt_conn_set_data(c, d); /* a viewer: gets the feed from now on */
    tick_text(d, &b);       /* the table at once, not a second from now */
    if (!b.err)
        tt_ws_send(c, TT_WS_TEXT, b.p, b.len);
    free(b.p);
}

int cli_dash_parse(const char *cmd, const char *text, tt_addr_t *out)
{
    char buf[300];
    bool digits = text[0] != '\0' && strspn(text, "0123456789") == strlen(text);

    if (text[0] == ':' || digits) {
        snprintf(buf, sizeof(buf), "127.0.0.1%s%s", digits ? ":" : "", text);
        return cli_parse_addr(cmd, buf, false, out);
    }
    return cli_parse_addr(cmd, text, false, out);
}

int cli_dash_start(tt_loop_t *loop, tt_server_t *watched, const char *cmd, const tt_addr_t *addr,
                   const char *token, cli_dash_t **out)
{
    cli_dash_t *d = calloc(1, sizeof(*d));
    tt_conn_handlers_t h = {.on_open = viewer_open};
    tt_addr_t bound;
    char suffix[] = " (dashboard)";
    int err;

    if (d == NULL)
        return -ENOMEM;
    d->loop = loop;
    d->watched = watched;
    if (token != NULL && (d->token = strdup(token)) == NULL) {
        free(d);
        return -ENOMEM;
    }
    tt_ws_opts_t wso = {.max_message = 4096,
                        .default_kind = TT_WS_TEXT,
                        .accept = ws_accept,
                        .http = serve_http,
                        .arg = d};
    tt_server_opts_t so = {.websocket = &wso, .max_conns = MAX_VIEWERS, .limit_close = true};
    err = tt_server_listen(loop, addr, &so, &h, d, &d->srv);
    if (err < 0) {
        char text[TT_ADDR_STRLEN];
        tt_addr_format(addr, text, sizeof(text));
        cli_error("%s: --dashboard %s: %s", cmd, text, tt_strerror(err));
        goto fail;
    }
    if ((err = tt_follow_start(watched, on_follow, d, &d->follow)) < 0 ||
        (err = tt_timer_init(loop, &d->tick, on_tick, d)) < 0 ||
        (err = tt_timer_start(d->tick, TICK_MS, TICK_MS)) < 0) {
        cli_error("%s: --dashboard: %s", cmd, tt_strerror(err));
        goto fail;
    }
    tt_server_addr(d->srv, &bound);
    if (cli_print_listening(stdout, &bound, suffix) < 0) {
        err = -EPIPE;
        goto fail;
    }
    *out = d;
    return 0;
fail:
    cli_dash_close(d);
    return err;
}

static int destroy_viewer(tt_conn_t *c, void *arg)
{
    (void)arg;
    tt_destroy(c, 0);
    return 0;
}

void cli_dash_close(cli_dash_t *d)
{
    if (d == NULL)
        return;
    if (d->follow != NULL)
        tt_follow_stop(d->follow);
    if (d->tick != NULL)
        tt_timer_close(d->tick);
    if (d->srv != NULL) {
        tt_server_foreach(d->srv, destroy_viewer, NULL);
        tt_server_close(d->srv);
    }
    free(d->token);
    free(d);
}
