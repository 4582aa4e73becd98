/* The PROXY protocol on a connection, server side and client side.
 *
 * Server: the header comes before any byte of the client's, so it is read through
 * the connection's pre_input hook, below every other layer (TLS included: the
 * balancer's header precedes the ClientHello). on_open waits for it (open_waits).
 * Memory: a header that arrives whole in one read is parsed where it lies; one
 * cut by a read is gathered in a buffer sized to what is known so far (16 bytes
 * until the version is known, then 107 for v1 or the length v2 announces, at most
 * TT_PROXY_V2_MAX), freed as soon as the header is done. What the header said
 * (addresses, a copy of the TLV block) lives until after on_close.
 *
 * Client: the header is written raw on the socket the moment it is connected,
 * before anything queued and before any transform (conn.c's proxy_send hook). */
#include "proto/proxy_conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proto/proxy.h"
#include "stream/conn.h"
#include "sys/sock.h"

typedef struct proxy {
    tt_conn_t *conn;
    tt_proxy_mode_t mode;
    tt__proxy_admit_fn admit;
    tt__wnode_t timer;
    uint8_t *buf; /* a header cut by reads, gathered; NULL when none is pending */
    size_t have, cap;
    bool got;     /* a header was read: info holds it */
    tt_proxy_info_t info;
    uint8_t *tlvs; /* info's TLV views point here */
    /* Client side. */
    int send_version;
    bool has_src, has_dst;
    tt_addr_t src, dst;
} proxy_t;

int tt__proxy_check_mode(tt_proxy_mode_t mode)
{
    return (unsigned)mode <= TT_PROXY_OPTIONAL ? 0 : -EINVAL;
}

const char *tt_proxy_mode_name(tt_proxy_mode_t mode)
{
    static const char *const names[] = {"off", "v1", "v2", "any", "optional"};
    return (unsigned)mode < sizeof(names) / sizeof(names[0]) ? names[mode] : "unknown";
}

static void proxy_free(tt_conn_t *c)
{
    proxy_t *p = c->ext->proxy;

    tt__wheel_stop(&tt__conn_loop(c)->wheel, &p->timer);
    c->ext->proxy = NULL;
    c->ext->proxy_free = NULL;
    c->ext->peer_override = NULL;
    free(p->buf);
    free(p->tlvs);
    free(p);
}

static void fail(proxy_t *p, int err, const char *why)
{
    tt_conn_t *c = p->conn;

    c->ext->close_reason = why;
    c->ext->pre_input = NULL;
    tt__conn_close(c, TT_CLOSE_PROXY_ERROR, err);
}

/* The header is done (or, optional, there is none): reading it ends here. */
static void done_reading(proxy_t *p)
{
    tt__wheel_stop(&tt__conn_loop(p->conn)->wheel, &p->timer);
    p->conn->ext->pre_input = NULL;
}

/* Admit the client, then on_open. false when the connection is closing. */
static bool open_now(proxy_t *p)
{
    tt_conn_t *c = p->conn;
    tt_addr_t peer;
    int err;

    if (p->admit != NULL) {
        if (c->ext->peer_override != NULL)
            peer = *c->ext->peer_override;
        else if (tt__sock_peer(c->io.fd, &peer) < 0)
            memset(&peer, 0, sizeof(peer));
        err = p->admit(c, &peer);
        if (err < 0) {
            tt_destroy(c, TT_DESTROY_RESET); /* as a refusal at accept: RST */
            c->close_err = err;
            return false;
        }
    }
    tt__conn_layer_opened(c); /* on_open */
    return !tt__conn_is_closing(c);
}

/* Bytes that turned out to be the client's own (optional mode) go up the way a
 * read would: through a transform if there is one. */
static void pass_up(tt_conn_t *c, const uint8_t *buf, ssize_t n)
{
    if (c->ext->wire_ops != NULL)
        c->ext->wire_ops->input(c, (const char *)buf, n, 0);
    else if (n > 0)
        tt__conn_plain_input(c, (const char *)buf, (size_t)n, 0);
    else if (n == 0)
        tt__conn_peer_ended(c);
}

/* Optional mode and no header: open with the socket's addresses, then hand up
 * what was held back while it was still undecided. */
static bool headerless(proxy_t *p)
{
    uint8_t held[TT__PROXY_V2_FIXED];
    size_t n = p->have < sizeof(held) ? p->have : sizeof(held);

    /* Undecided bytes are a prefix of a signature: never more than 12. */
    if (n > 0)
        memcpy(held, p->buf, n);
    free(p->buf);
    p->buf = NULL;
    p->have = p->cap = 0;
    done_reading(p);
    if (!open_now(p))
        return false;
    if (n > 0)
        pass_up(p->conn, held, (ssize_t)n);
    return !tt__conn_is_closing(p->conn);
}

static void set_tlv(tt_proxy_bytes_t *b, const uint8_t *v, size_t len)
{
    if (b->len == 0 && len > 0) { /* the first of a type counts */
        b->data = v;
        b->len = len;
    }
}

/* Fill info from a parsed header: its addresses and views of a copy of its TLVs.
 * 0 or -ENOMEM. */
static int record(proxy_t *p, const uint8_t *hdr, const tt__proxy_hdr_t *h)
{
    tt_conn_t *c = p->conn;
    tt_proxy_info_t *in = &p->info;
    tt_addr_t local;

    memset(in, 0, sizeof(*in));
    in->version = h->version;
    tt__sock_peer(c->io.fd, &in->balancer);
    if (h->has_addr) {
        in->source = h->src;
        in->dest = h->dst;
    } else {
        in->local = true;
        in->source = in->balancer;
        if (tt__sock_local(c->io.fd, &local) == 0)
            in->dest = local;
    }
    if (h->tlv_len > 0) {
        p->tlvs = malloc(h->tlv_len);
        if (p->tlvs == NULL)
            return -ENOMEM;
        memcpy(p->tlvs, hdr + h->tlv_off, h->tlv_len);
        in->tlvs.data = p->tlvs;
        in->tlvs.len = h->tlv_len;
        size_t off = 0, vlen;
        const uint8_t *v;
        uint8_t type;
        while (tt__proxy_tlv_next(p->tlvs, h->tlv_len, &off, &type, &v, &vlen) == 1) {
            switch (type) {
            case TT__PP2_ALPN:
                set_tlv(&in->alpn, v, vlen);
                break;
            case TT__PP2_AUTHORITY:
                set_tlv(&in->authority, v, vlen);
                break;
            case TT__PP2_UNIQUE_ID:
                set_tlv(&in->unique_id, v, vlen);
                break;
            case TT__PP2_AWS:
                set_tlv(&in->aws, v, vlen);
                break;
            case TT__PP2_AZURE:
                set_tlv(&in->azure, v, vlen);
                break;
            case TT__PP2_GCP:
                set_tlv(&in->gcp, v, vlen);
                break;
            case TT__PP2_SSL: {
                if (in->ssl) /* checked by the parser: at least 5 bytes */
                    break;
                in->ssl = true;
                in->ssl_client = v[0];
                in->ssl_verify = ((uint32_t)v[1] << 24) | ((uint32_t)v[2] << 16) |
                                 ((uint32_t)v[3] << 8) | v[4];
                size_t so = 0, sl;
                const uint8_t *sv;
                uint8_t st;
                while (tt__proxy_tlv_next(v + 5, vlen - 5, &so, &st, &sv, &sl) == 1) {
                    if (st == TT__PP2_SSL_VERSION)
                        set_tlv(&in->ssl_version, sv, sl);
                    else if (st == TT__PP2_SSL_CN)
                        set_tlv(&in->ssl_cn, sv, sl);
                    else if (st == TT__PP2_SSL_CIPHER)
                        set_tlv(&in->ssl_cipher, sv, sl);
                    else if (st == TT__PP2_SSL_SIG_ALG)
                        set_tlv(&in->ssl_sig_alg, sv, sl);
                    else if (st == TT__PP2_SSL_KEY_ALG)
                        set_tlv(&in->ssl_key_alg, sv, sl);
                }
                break;
            }
            default:
                break;
            }
        }
    }
    p->got = true;
    if (h->has_addr)
        c->ext->peer_override = &in->source;
    return 0;
}

static bool version_allowed(tt_proxy_mode_t mode, int version)
{
    return mode == TT_PROXY_ANY || mode == TT_PROXY_OPTIONAL ||
           (mode == TT_PROXY_V1 && version == 1) || (mode == TT_PROXY_V2 && version == 2);
}

/* A whole header of h->len bytes at hdr: record it, open. false when closing. */
static bool complete(proxy_t *p, const uint8_t *hdr, const tt__proxy_hdr_t *h)
{
    if (!version_allowed(p->mode, h->version)) {
        fail(p, -EPROTO, h->version == 1 ? "v1 header, v2 required" : "v2 header, v1 required");
        return false;
    }
    if (record(p, hdr, h) < 0) {
        p->conn->ext->pre_input = NULL;
        tt__conn_close(p->conn, TT_CLOSE_IO_ERROR, -ENOMEM);
        return false;
    }
    free(p->buf);
    p->buf = NULL;
    p->have = p->cap = 0;
    done_reading(p);
    return open_now(p);
}

/* How large the gathering buffer must be, from what it holds. */
static size_t want_cap(const uint8_t *b, size_t have)
{
    int v = tt__proxy_detect(b, have);
    if (v == 1)
        return TT__PROXY_V1_MAX;
    if (v == 2 && have >= TT__PROXY_V2_FIXED)
        return TT__PROXY_V2_FIXED + (((size_t)b[14] << 8) | b[15]);
    return TT__PROXY_V2_FIXED;
}

/* Optional mode: do these bytes, all that came so far, rule a header out? */
static bool not_a_header(proxy_t *p, const uint8_t *b, size_t n)
{
    return p->mode == TT_PROXY_OPTIONAL && tt__proxy_detect(b, n) == TT__PROXY_NONE;
}

static ssize_t pre_input(tt_conn_t *c, const char *data, ssize_t n)
{
    proxy_t *p = c->ext->proxy;
    const uint8_t *in = (const uint8_t *)data;
    tt__proxy_hdr_t h;
    const char *why;
    ssize_t r;

    if (n < 0) {
        c->ext->pre_input = NULL;
        tt__conn_fail(c, (int)n);
        return -1;
    }
    if (n == 0) {
        /* The stream ended: in optional mode what came is the client's; else the
         * header is missing or cut short. */
        if (p->mode == TT_PROXY_OPTIONAL) {
            if (headerless(p))
                pass_up(c, NULL, 0);
            return -1;
        }
        fail(p, TT_EOF, p->have == 0 ? "no header before the end of stream"
                                     : "end of stream inside the header");
        return -1;
    }
    if (p->have == 0) {
        /* The usual case: the whole header in the first read, parsed in place. */
        if (not_a_header(p, in, (size_t)n))
            return headerless(p) ? 0 : -1;
        r = tt__proxy_parse(in, (size_t)n, &h, &why);
        if (r > 0)
            return complete(p, in, &h) ? r : -1;
        if (r < 0) {
            fail(p, -EPROTO, why);
            return -1;
        }
    }
    /* Gather: take what this read has, growing the buffer as the header says. */
    size_t before = p->have, used = 0;
    for (;;) {
        if (p->have == p->cap) {
            size_t want = want_cap(p->buf, p->have);
            if (want <= p->cap) { /* the parser decides before this; never loop */
                fail(p, -EPROTO, "header too long");
                return -1;
            }
            uint8_t *nb = realloc(p->buf, want);
            if (nb == NULL) {
                c->ext->pre_input = NULL;
                tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM);
                return -1;
            }
            p->buf = nb;
            p->cap = want;
        }
        size_t take = (size_t)n - used;
        if (take > p->cap - p->have)
            take = p->cap - p->have;
        memcpy(p->buf + p->have, in + used, take);
        p->have += take;
        used += take;
        if (not_a_header(p, p->buf, p->have)) {
            /* The held bytes go up first, then this whole read (conn.c). */
            p->have = before;
            return headerless(p) ? 0 : -1;
        }
        r = tt__proxy_parse(p->buf, p->have, &h, &why);
        if (r > 0)
            return complete(p, p->buf, &h) ? r - (ssize_t)before : -1;
        if (r < 0) {
            fail(p, -EPROTO, why);
            return -1;
        }
        if (used == (size_t)n)
            return n; /* all of it is header so far: wait for more */
    }
}

static void timer_cb(tt__wnode_t *node)
{
    proxy_t *p = tt__container_of(node, proxy_t, timer);

    if (tt__conn_is_closing(p->conn) || p->conn->ext->pre_input == NULL)
        return;
    if (p->mode == TT_PROXY_OPTIONAL && p->have == 0) {
        headerless(p); /* a client that speaks last, or not at all: it is its turn */
        return;
    }
    /* Bytes that could still be a header's are not handed up as data: a header
     * that started and stalled is a slow header, in optional mode too. */
    fail(p, -ETIMEDOUT, p->have == 0 ? "no header in time" : "header not complete in time");
}

static proxy_t *proxy_new(tt_conn_t *c)
{
    tt__conn_ext_t *ext = tt__conn_ext(c);
    proxy_t *p;

    if (ext == NULL || (p = calloc(1, sizeof(*p))) == NULL)
        return NULL;
    p->conn = c;
    tt__wnode_init(&p->timer, timer_cb);
    ext->proxy = p;
    ext->proxy_free = proxy_free;
    return p;
}

int tt__proxy_apply(tt_conn_t *c, tt_proxy_mode_t mode, uint64_t timeout_ms,
                    tt__proxy_admit_fn admit)
{
    proxy_t *p = proxy_new(c);

    if (p == NULL)
        return -ENOMEM;
    p->mode = mode;
    p->admit = admit;
    c->ext->pre_input = pre_input;
    c->ext->open_waits++;
    uint64_t ms = timeout_ms > 0 ? timeout_ms : TT_DEFAULT_PROXY_TIMEOUT_MS;
    tt__wheel_start(&tt__conn_loop(c)->wheel, &p->timer, tt__loop_deadline(tt__conn_loop(c), ms));
    return 0;
}

int tt_conn_proxy_info(const tt_conn_t *c, tt_proxy_info_t *out)
{
    if (c == NULL || out == NULL)
        return -EINVAL;
    const proxy_t *p = c->ext != NULL ? c->ext->proxy : NULL;
    if (p == NULL || !p->got)
        return -ENOENT;
    *out = p->info;
    return 0;
}

int tt_proxy_tlv_find(const tt_proxy_info_t *info, uint8_t type, tt_proxy_bytes_t *out)
{
    size_t off = 0, vlen;
    const uint8_t *v;
    uint8_t t;

    if (info == NULL || out == NULL)
        return -EINVAL;
    while (tt__proxy_tlv_next(info->tlvs.data, info->tlvs.len, &off, &t, &v, &vlen) == 1) {
        if (t == type) {
            out->data = v;
            out->len = vlen;
            return 0;
        }
    }
    return -ENOENT;
}

/* ---- client side ---------------------------------------------------------------- */

static bool is_ip(const tt_addr_t *a)
{
    return a->len > 0 && (a->u.sa.sa_family == AF_INET || a->u.sa.sa_family == AF_INET6);
}

int tt__proxy_client_check(const tt_connect_opts_t *o, const tt_addr_t *to)
{
    if (o->send_proxy == 0)
        return o->proxy_source == NULL && o->proxy_dest == NULL ? 0 : -EINVAL;
    if (o->send_proxy != 1 && o->send_proxy != 2)
        return -EINVAL;
    if (to != NULL && tt_addr_is_unix(to))
        return -EOPNOTSUPP;
    if ((o->proxy_source != NULL && !is_ip(o->proxy_source)) ||
        (o->proxy_dest != NULL && !is_ip(o->proxy_dest)))
        return -EINVAL;
    if (o->proxy_source != NULL && o->proxy_dest != NULL &&
        o->proxy_source->u.sa.sa_family != o->proxy_dest->u.sa.sa_family)
        return -EINVAL;
    return 0;
}

static int proxy_send(tt_conn_t *c)
{
    proxy_t *p = c->ext->proxy;
    uint8_t hdr[TT__PROXY_V1_MAX + 1];
    tt_addr_t src, dst;
    int err;

    if (p->has_src)
        src = p->src;
    else if ((err = tt__sock_local(c->io.fd, &src)) < 0)
        return err;
    if (p->has_dst)
        dst = p->dst;
    else if ((err = tt__sock_peer(c->io.fd, &dst)) < 0)
        return err;
    ssize_t len = tt__proxy_build(p->send_version, &src, &dst, hdr, sizeof(hdr));
    if (len < 0)
        return (int)len;
    /* A socket just connected has its whole send buffer free: the header, at
     * most 107 bytes, goes in one call or the connection is of no use. */
    ssize_t k = send(c->io.fd, hdr, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0)
        return -errno;
    if (k != len)
        return -EIO;
    c->ext->wire_out += (uint64_t)k;
    return 0;
}

int tt__proxy_client_apply(tt_conn_t *c, const tt_connect_opts_t *o)
{
    proxy_t *p;

    if (o->send_proxy == 0)
        return 0;
    p = proxy_new(c);
    if (p == NULL)
        return -ENOMEM;
    p->send_version = o->send_proxy;
    if (o->proxy_source != NULL) {
        p->src = *o->proxy_source;
        p->has_src = true;
    }
    if (o->proxy_dest != NULL) {
        p->dst = *o->proxy_dest;
        p->has_dst = true;
    }
    c->ext->proxy_send = proxy_send;
    return 0;
}
