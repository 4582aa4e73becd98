/* Self-describing messages over TCP: a client and a server in one program.
 *
 *   message_client_server server 127.0.0.1:7070
 *   message_client_server client 127.0.0.1:7070 3 morpheus ring "\U0001f436"
 *
 * The wire format is the one of the well-known Python "selectors" socket tutorial
 * (realpython.com/python-sockets, libclient.py / libserver.py), so either side
 * talks to that tutorial's programs too:
 *
 *   +--------+---------------------------+--------------------------+
 *   | u16 BE | JSON header (that length) | body (content-length)    |
 *   +--------+---------------------------+--------------------------+
 *   header: {"byteorder": "little", "content-type": "text/json",
 *            "content-encoding": "utf-8", "content-length": 41}
 *
 * tether finds the message boundaries with a custom decoder (TT_FRAME_CUSTOM):
 * it reads the 2-byte length, then the JSON header for content-length, and says
 * "need more", "a frame of N bytes" or "malformed". Every size is bounded, so a
 * hostile peer can only get its own connection closed. The client opens N
 * connections (one request each, search values from the command line, cycled)
 * and exits 0 once every answer arrived. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tether.h>

#define MAX_HEADER 1024       /* JSON header bytes */
#define MAX_CONTENT 65536     /* body bytes */
#define MAX_STR 256           /* any one JSON string value, decoded */
#define MAX_FRAME (2 + MAX_HEADER + MAX_CONTENT)

/* ---- a minimal, bounded JSON reader: one flat object of strings and integers ---- */

typedef struct field {
    char key[64];
    char str[MAX_STR]; /* string value, UTF-8, NUL-terminated */
    long long num;     /* integer value */
    bool is_num;
} field_t;

#define MAX_FIELDS 8

typedef struct jobj {
    field_t f[MAX_FIELDS];
    int n;
} jobj_t;

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static const char *read_hex4(const char *p, const char *end, unsigned *out)
{
    unsigned v = 0;
    if (end - p < 4)
        return NULL;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return NULL;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return p + 4;
}

/* Append code point cp as UTF-8; false when it does not fit. */
static bool put_utf8(char *out, size_t cap, size_t *len, unsigned cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80)
        b[0] = (char)cp, n = 1;
    else if (cp < 0x800)
        b[0] = (char)(0xc0 | cp >> 6), b[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    else if (cp < 0x10000)
        b[0] = (char)(0xe0 | cp >> 12), b[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
        b[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    else
        b[0] = (char)(0xf0 | cp >> 18), b[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), b[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    if (*len + n >= cap)
        return false;
    memcpy(out + *len, b, n);
    *len += n;
    return true;
}

/* A JSON string starting at the opening quote; decoded into out (cap bytes, NUL
 * terminated). Returns the position after the closing quote, or NULL. */
static const char *read_string(const char *p, const char *end, char *out, size_t cap)
{
    size_t len = 0;
    if (p >= end || *p++ != '"')
        return NULL;
    while (p < end && *p != '"') {
        unsigned char c = (unsigned char)*p++;
        unsigned cp;
        if (c < 0x20)
            return NULL; /* control characters must be escaped */
        if (c != '\\') {
            if (len + 1 >= cap)
                return NULL;
            out[len++] = (char)c;
            continue;
        }
        if (p >= end)
            return NULL;
        switch (*p++) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if ((p = read_hex4(p, end, &cp)) == NULL)
                return NULL;
            if (cp >= 0xd800 && cp < 0xdc00) { /* a surrogate pair (RFC 8259 s7) */
                unsigned lo;
                if (end - p < 2 || p[0] != '\\' || p[1] != 'u' ||
                    (p = read_hex4(p + 2, end, &lo)) == NULL || lo < 0xdc00 || lo > 0xdfff)
                    return NULL;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                return NULL;
            }
            if (cp == 0)
                return NULL; /* would truncate the C string */
            break;
        default:
            return NULL;
        }
        if (!put_utf8(out, cap, &len, cp))
            return NULL;
    }
    if (p >= end)
        return NULL;
    out[len] = 0;
    return p + 1;
}

/* Parse `{"k": "v" | 123, ...}` filling *o. 0 or -1 (malformed or too big). */
static int json_parse(const char *p, size_t n, jobj_t *o)
{
    const char *end = p + n;
    o->n = 0;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{')
        return -1;
    p = skip_ws(p, end);
    if (p < end && *p == '}')
        return skip_ws(p + 1, end) == end ? 0 : -1;
    for (;;) {
        if (o->n == MAX_FIELDS)
            return -1;
        field_t *f = &o->f[o->n++];
        memset(f, 0, sizeof(*f));
        if ((p = read_string(skip_ws(p, end), end, f->key, sizeof(f->key))) == NULL)
            return -1;
        p = skip_ws(p, end);
        if (p >= end || *p++ != ':')
            return -1;
        p = skip_ws(p, end);
        if (p < end && *p == '"') {
            if ((p = read_string(p, end, f->str, sizeof(f->str))) == NULL)
                return -1;
        } else {
            /* Non-negative integers only, bounded (all this protocol needs). */
            int digits = 0;
            while (p < end && *p >= '0' && *p <= '9' && digits < 12)
                f->num = f->num * 10 + (*p++ - '0'), digits++;
            if (digits == 0 || (p < end && *p >= '0' && *p <= '9'))
                return -1;
            f->is_num = true;
        }
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p < end && *p == '}')
            return skip_ws(p + 1, end) == end ? 0 : -1;
        return -1;
    }
}

static const field_t *json_get(const jobj_t *o, const char *key)
{
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->f[i].key, key) == 0)
            return &o->f[i];
    return NULL;
}

/* Append s as a JSON string literal. Returns the new length, or -1 if it does not
 * fit in cap. */
static int json_put_string(char *out, size_t cap, size_t len, const char *s)
{
    if (len + 1 >= cap)
        return -1;
    out[len++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        size_t n;
        if (c == '"' || c == '\\')
            esc[0] = '\\', esc[1] = (char)c, n = 2;
        else if (c < 0x20)
            n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
        else
            esc[0] = (char)c, n = 1;
        if (len + n + 1 >= cap)
            return -1;
        memcpy(out + len, esc, n);
        len += n;
    }
    out[len++] = '"';
    return (int)len;
}

/* ---- the message: u16 header length, JSON header, body --------------------------- */

typedef struct message {
    char type[MAX_STR];     /* content-type */
    char encoding[MAX_STR]; /* content-encoding */
    const char *body;
    size_t body_len;
} message_t;

/* Parse the JSON header at buf (hlen bytes) for the fields the protocol requires.
 * Returns content-length, or -1. */
static long header_fields(const char *buf, size_t hlen, message_t *m)
{
    jobj_t o;
    const field_t *len, *type, *enc, *order;
    if (json_parse(buf, hlen, &o) < 0)
        return -1;
    len = json_get(&o, "content-length");
    type = json_get(&o, "content-type");
    enc = json_get(&o, "content-encoding");
    order = json_get(&o, "byteorder");
    if (len == NULL || !len->is_num || len->num > MAX_CONTENT || type == NULL ||
        type->is_num || enc == NULL || enc->is_num || order == NULL || order->is_num)
        return -1;
    if (m != NULL) {
        snprintf(m->type, sizeof(m->type), "%s", type->str);
        snprintf(m->encoding, sizeof(m->encoding), "%s", enc->str);
    }
    return (long)len->num;
}

/* The custom decoder: tether calls it with the bytes buffered at a frame start. */
static ssize_t decode(const void *buf, size_t len, size_t *skip, void *arg)
{
    const unsigned char *p = buf;
    (void)skip, (void)arg;
    if (len < 2)
        return 0;
    size_t hlen = (size_t)p[0] << 8 | p[1];
    if (hlen == 0 || hlen > MAX_HEADER)
        return TT_EPROTOCOL;
    if (len < 2 + hlen)
        return 0;
    long clen = header_fields((const char *)p + 2, hlen, NULL);
    if (clen < 0)
        return TT_EPROTOCOL;
    size_t total = 2 + hlen + (size_t)clen;
    return len >= total ? (ssize_t)total : 0; /* the whole frame, header included */
}

/* Split a frame the decoder accepted. */
static int parse_message(const void *frame, size_t len, message_t *m)
{
    const unsigned char *p = frame;
    size_t hlen = (size_t)p[0] << 8 | p[1];
    long clen = header_fields((const char *)p + 2, hlen, m);
    if (clen < 0 || 2 + hlen + (size_t)clen != len)
        return -1;
    m->body = (const char *)p + 2 + hlen;
    m->body_len = (size_t)clen;
    return 0;
}

/* Send header and body as one message: tether writes the three pieces with one
 * writev when it can (a custom codec sends what it is given as it is). */
static int send_message(tt_conn_t *c, const char *type, const char *body, size_t body_len)
{
    char hdr[MAX_HEADER];
    unsigned char prefix[2];
    int n = snprintf(hdr, sizeof(hdr),
                     "{\"byteorder\": \"little\", \"content-type\": \"%s\", "
                     "\"content-encoding\": \"utf-8\", \"content-length\": %zu}",
                     type, body_len);
    if (n < 0 || (size_t)n >= sizeof(hdr) || body_len > MAX_CONTENT)
        return -EMSGSIZE;
    prefix[0] = (unsigned char)(n >> 8);
    prefix[1] = (unsigned char)n;
    struct iovec iov[3] = {{prefix, 2}, {hdr, (size_t)n}, {(void *)body, body_len}};
    return tt_send_messagev(c, iov, 3);
}

/* ---- server ------------------------------------------------------------------------ */

static const char *lookup(const char *value)
{
    static const char *const table[][2] = {
        {"morpheus", "Follow the white rabbit. \xf0\x9f\x90\xb0"},
        {"ring", "In the caves beneath the Misty Mountains. \xf0\x9f\x92\x8d"},
        {"\xf0\x9f\x90\xb6", "\xf0\x9f\x90\xbe Playing ball! \xf0\x9f\x8f\x90"},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(value, table[i][0]) == 0)
            return table[i][1];
    return NULL;
}

static void server_message(tt_conn_t *c, const void *frame, size_t len)
{
    message_t m;
    jobj_t req;
    char body[1024];
    int n;

    if (parse_message(frame, len, &m) < 0) {
        tt_destroy(c, 0);
        return;
    }
    if (strcmp(m.type, "text/json") == 0) {
        const field_t *action, *value;
        if (json_parse(m.body, m.body_len, &req) < 0 || (action = json_get(&req, "action")) ==
                NULL || (value = json_get(&req, "value")) == NULL || value->is_num) {
            tt_destroy(c, 0);
            return;
        }
        char answer[MAX_STR + 64];
        if (strcmp(action->str, "search") == 0) {
            const char *r = lookup(value->str);
            snprintf(answer, sizeof(answer), "%s", r != NULL ? r : "No match for that.");
        } else {
            snprintf(answer, sizeof(answer), "Error: invalid action \"%s\".", action->str);
        }
        memcpy(body, "{\"result\": ", 11);
        n = json_put_string(body, sizeof(body) - 1, 11, answer);
        if (n < 0) {
            tt_destroy(c, 0);
            return;
        }
        body[n++] = '}';
        send_message(c, "text/json", body, (size_t)n);
    } else {
        /* Binary: answer with the first bytes, as the tutorial does. */
        n = snprintf(body, sizeof(body), "First 10 bytes of request: %.*s",
                     (int)(m.body_len < 10 ? m.body_len : 10), m.body);
        send_message(c, "binary/custom-server-binary-type", body, (size_t)n);
    }
    tt_end(c, NULL, 0); /* one request per connection, like the tutorial */
}

static void server_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    if (info->error != 0)
        fprintf(stderr, "server: a connection closed: %s (%s)\n",
                tt_close_kind_name(info->kind), tt_strerror(info->error));
}

static tt_loop_t *g_loop;
static void on_signal(int sig)
{
    (void)sig;
    tt_loop_stop(g_loop); /* async-signal-safe */
}

static int run_server(tt_loop_t *loop, const tt_addr_t *addr)
{
    tt_frame_opts_t fo = tt_frame_custom(decode, NULL, MAX_FRAME);
    tt_server_opts_t so = {.frame = &fo};
    tt_conn_handlers_t h = {.on_message = server_message, .on_close = server_close};
    tt_server_t *srv;
    tt_addr_t bound;
    char buf[TT_ADDR_STRLEN];
    int err = tt_server_listen(loop, addr, &so, &h, NULL, &srv);
    if (err < 0) {
        fprintf(stderr, "listen: %s\n", tt_strerror(err));
        return 1;
    }
    tt_server_addr(srv, &bound);
    tt_addr_format(&bound, buf, sizeof(buf));
    printf("listening on %s\n", buf);
    fflush(stdout);
    g_loop = loop;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    tt_loop_run(loop, TT_RUN_DEFAULT); /* until a signal */
    tt_server_close(srv);
    tt_loop_run(loop, TT_RUN_NOWAIT);
    return 0;
}

/* ---- client ------------------------------------------------------------------------ */

static int answers, failures;

static void client_open(tt_conn_t *c)
{
    const char *value = tt_conn_get_data(c);
    char body[MAX_STR * 6 + 64];
    int n = json_put_string(body, sizeof(body), 0, "search");
    /* {"action": "search", "value": "..."}, the tutorial's text/json request. */
    char req[sizeof(body) + 64];
    int m = snprintf(req, sizeof(req), "{\"action\": %.*s, \"value\": ", n, body);
    int k = json_put_string(req, sizeof(req) - 1, (size_t)m, value);
    if (n < 0 || k < 0) {
        tt_destroy(c, 0);
        return;
    }
    req[k++] = '}';
    if (send_message(c, "text/json", req, (size_t)k) < 0)
        tt_destroy(c, 0);
}

static void client_message(tt_conn_t *c, const void *frame, size_t len)
{
    message_t m;
    jobj_t res;
    const field_t *r;
    if (parse_message(frame, len, &m) < 0 || strcmp(m.type, "text/json") != 0 ||
        json_parse(m.body, m.body_len, &res) < 0 || (r = json_get(&res, "result")) == NULL) {
        tt_destroy(c, 0);
        return;
    }
    printf("#%llu %s -> %s\n", (unsigned long long)tt_conn_id(c),
           (const char *)tt_conn_get_data(c), r->str);
    answers++;
    tt_end(c, NULL, 0);
}

static void client_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    if (info->error != 0) {
        fprintf(stderr, "client: %s (%s)\n", tt_close_kind_name(info->kind),
                tt_strerror(info->error));
        failures++;
    }
}

static int run_client(tt_loop_t *loop, const tt_addr_t *addr, int n, char **values, int nvalues)
{
    static char *defaults[] = {"morpheus", "ring", "\xf0\x9f\x90\xb6"};
    tt_frame_opts_t fo = tt_frame_custom(decode, NULL, MAX_FRAME);
    tt_conn_handlers_t h = {.on_open = client_open, .on_message = client_message,
                            .on_close = client_close};
    tt_connect_opts_t co = {.timeout_ms = 5000};
    if (nvalues == 0)
        values = defaults, nvalues = 3;
    for (int i = 0; i < n; i++) {
        tt_conn_t *c;
        int err = tt_connect(loop, addr, &co, &h, values[i % nvalues], &c);
        if (err < 0) {
            fprintf(stderr, "connect: %s\n", tt_strerror(err));
            failures++;
            continue;
        }
        tt_conn_set_framing(c, &fo); /* before on_open: nothing read yet */
    }
    tt_loop_run(loop, TT_RUN_DEFAULT); /* until every connection closed */
    printf("%d of %d answered\n", answers, n);
    return answers == n && failures == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    int rc;

    if (argc < 3 || (strcmp(argv[1], "server") != 0 && strcmp(argv[1], "client") != 0) ||
        (strcmp(argv[1], "client") == 0 && argc < 4)) {
        fprintf(stderr, "usage: %s server HOST:PORT\n"
                        "       %s client HOST:PORT CONNECTIONS [VALUE...]\n",
                argv[0], argv[0]);
        return 2;
    }
    if (tt_addr_parse_hostport(&addr, argv[2]) < 0) {
        fprintf(stderr, "bad address '%s'\n", argv[2]);
        return 2;
    }
    if (tt_loop_init(&loop) < 0)
        return 1;
    if (strcmp(argv[1], "server") == 0) {
        rc = run_server(loop, &addr);
    } else {
        int n = atoi(argv[3]);
        if (n <= 0 || n > 10000) {
            fprintf(stderr, "CONNECTIONS must be 1..10000\n");
            tt_loop_close(loop);
            return 2;
        }
        rc = run_client(loop, &addr, n, argv + 4, argc - 4);
    }
    tt_loop_close(loop);
    return rc;
}
