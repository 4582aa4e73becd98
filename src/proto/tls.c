/* TLS under a stream connection, with OpenSSL 3.
 *
 * The transform sits between the socket and everything above it (framing,
 * liveness, WebSocket, the app), through the stream layer's wire hooks:
 *
 *   read:  the loop's shared buffer (ciphertext) -> a BIO that reads from that
 *          view -> SSL_read into the loop's plaintext buffer -> the layers above.
 *          OpenSSL keeps a partial record in its own buffer only while the record
 *          is incomplete (SSL_MODE_RELEASE_BUFFERS), so an idle connection holds
 *          no buffer; ciphertext the app did not want yet (reading stopped) is
 *          copied aside and fed again when reading resumes.
 *   write: the send queue (application bytes) -> SSL_write, small sends gathered
 *          into one record -> a BIO that writes the socket. A record the socket
 *          did not take stays in OpenSSL's buffer and the same bytes, still at
 *          the head of the queue, are offered again (partial writes and a moving
 *          buffer are allowed), so the queue counts application bytes exactly.
 *
 * The handshake holds the queue (tt__conn_wire_hold) and on_open (open_waits);
 * its own timer bounds it. Close kinds: the peer's close_notify is the orderly
 * end, a FIN without it is truncation, an RST stays a reset. The OpenSSL error
 * queue is cleared before every call into OpenSSL and after every failure, so no
 * connection sees another's error. */
#include "proto/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GATHER 16384 /* one full record: small sends are gathered up to this */
#define CACHE_SLOTS 32

/* ---- contexts ------------------------------------------------------------------- */

typedef struct cached {
    char key[300]; /* "name|port" */
    SSL_SESSION *sess;
} cached_t;

struct tt_tls_ctx {
    SSL_CTX *ssl;
    atomic_uint refs;
    bool server;
    bool insecure;
    unsigned char *alpn; /* wire format: length-prefixed names */
    size_t alpn_len;
    SSL_CTX **extra; /* server: further certificates, chosen by SNI */
    size_t nextra;
    /* client: the latest session per server, for resumption (workers may share
     * a context across threads: hence the lock) */
    pthread_mutex_t mu;
    cached_t cache[CACHE_SLOTS];
    unsigned cache_next;
};

tt_tls_ctx_t *tt__tls_ctx_ref(tt_tls_ctx_t *ctx)
{
    if (ctx != NULL)
        atomic_fetch_add(&ctx->refs, 1);
    return ctx;
}

bool tt__tls_ctx_is_server(const tt_tls_ctx_t *ctx) { return ctx != NULL && ctx->server; }

bool tt__tls_ctx_insecure(const tt_tls_ctx_t *ctx) { return ctx != NULL && ctx->insecure; }

void tt_tls_ctx_free(tt_tls_ctx_t *ctx)
{
    if (ctx == NULL || atomic_fetch_sub(&ctx->refs, 1) != 1)
        return;
    for (size_t i = 0; i < ctx->nextra; i++)
        SSL_CTX_free(ctx->extra[i]);
    free(ctx->extra);
    for (unsigned i = 0; i < CACHE_SLOTS; i++)
        SSL_SESSION_free(ctx->cache[i].sess);
    pthread_mutex_destroy(&ctx->mu);
    SSL_CTX_free(ctx->ssl);
    free(ctx->alpn);
    free(ctx);
}

/* "h2,http/1.1" -> "\x02h2\x08http/1.1". 0, -EINVAL (an empty or > 255 name). */
static int alpn_wire(const char *list, unsigned char **out, size_t *out_len)
{
    size_t n = strlen(list), o = 0;
    unsigned char *w = malloc(n + 1);

    if (w == NULL)
        return -ENOMEM;
    for (const char *p = list;;) {
        const char *e = strchr(p, ',');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if (len == 0 || len > 255) {
            free(w);
            return -EINVAL;
        }
        w[o++] = (unsigned char)len;
        memcpy(w + o, p, len);
        o += len;
        if (e == NULL)
            break;
        p = e + 1;
    }
    *out = w;
    *out_len = o;
    return 0;
}

static int readable(const char *path)
{
    return access(path, R_OK) == 0 ? 0 : -errno;
}

/* The server picks the first of its protocols the client offered. No overlap:
 * the handshake goes on without ALPN (the app sees "" and decides). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    tt_tls_ctx_t *ctx = arg;
    unsigned char *sel = NULL;

    (void)ssl;
    if (SSL_select_next_proto(&sel, outlen, ctx->alpn, (unsigned)ctx->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int load_pem_pair(SSL_CTX *s, const char *cert_pem, const char *key_pem)
{
    BIO *b = BIO_new_mem_buf(cert_pem, -1);
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    int ok = x != NULL && SSL_CTX_use_certificate(s, x) == 1;

    X509_free(x);
    while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(s, x) != 1) {
            X509_free(x);
            ok = 0;
        }
    }
    BIO_free(b);
    if (!ok)
        return -EINVAL;
    b = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    ok = k != NULL && SSL_CTX_use_PrivateKey(s, k) == 1;
    EVP_PKEY_free(k);
    BIO_free(b);
    return ok ? 0 : -EINVAL;
}

static int load_file_pair(SSL_CTX *s, const char *cert_file, const char *key_file)
{
    int err;

    if ((err = readable(cert_file)) < 0 || (err = readable(key_file)) < 0)
        return err;
    if (SSL_CTX_use_certificate_chain_file(s, cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(s, key_file, SSL_FILETYPE_PEM) != 1)
        return -EINVAL;
    return 0;
}

static int min_version(int v)
{
    if (v == 0 || v == TT_TLS_1_2)
        return TLS1_2_VERSION;
    if (v == TT_TLS_1_3)
        return TLS1_3_VERSION;
    return -1;
}

/* What every SSL_CTX of ours has: partial writes from a buffer that may move
 * (the queue's head is offered again after EAGAIN), buffers released while
 * idle, no renegotiation. */
static SSL_CTX *base_ctx(bool server, int minv)
{
    SSL_CTX *s = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (s == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(s, minv);
    SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
    return s;
}

/* The restrictions a deployment may want: -EINVAL when OpenSSL takes none of them. */
static int set_algorithms(SSL_CTX *s, const char *ciphers, const char *suites, const char *groups)
{
    if ((ciphers != NULL && SSL_CTX_set_cipher_list(s, ciphers) != 1) ||
        (suites != NULL && SSL_CTX_set_ciphersuites(s, suites) != 1) ||
        (groups != NULL && SSL_CTX_set1_groups_list(s, groups) != 1)) {
        ERR_clear_error();
        return -EINVAL;
    }
    return 0;
}

static tt_tls_ctx_t *ctx_alloc(void)
{
    tt_tls_ctx_t *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    atomic_init(&ctx->refs, 1);
    pthread_mutex_init(&ctx->mu, NULL);
    return ctx;
}

static int sni_select(SSL *ssl, int *alert, void *arg);

/* One server SSL_CTX: the certificate pair and what the options say. */
static int server_ssl_ctx(tt_tls_ctx_t *ctx, const tt_tls_server_opts_t *o, const char *cert_file,
                          const char *key_file, SSL_CTX **out)
{
    SSL_CTX *s = base_ctx(true, min_version(o->min_version));
    int err;

    if (s == NULL)
        return -ENOMEM;
    if (cert_file != NULL)
        err = load_file_pair(s, cert_file, key_file);
    else
        err = load_pem_pair(s, o->cert_pem, o->key_pem);
    if (err == 0 && SSL_CTX_check_private_key(s) != 1)
        err = -EINVAL;
    if (err == 0)
        err = set_algorithms(s, o->ciphers, o->ciphersuites, o->groups);
    if (err == 0 && o->ca_file != NULL) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
        if ((err = readable(o->ca_file)) == 0 &&
            SSL_CTX_load_verify_locations(s, o->ca_file, NULL) != 1)
            err = -EINVAL;
        if (names != NULL)
            SSL_CTX_set_client_CA_list(s, names);
        SSL_CTX_set_verify(s, SSL_VERIFY_PEER | (o->verify_client ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
    }
    if (o->no_tickets) {
        SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(s, 0);
    } else {
        /* Tickets carry the session to the client: no server-side cache of
         * every session (about 1 KiB each for 5 minutes) is needed. */
        SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    }
    /* Resumption with client certificates needs an id context. */
    SSL_CTX_set_session_id_context(s, (const unsigned char *)"tether", 6);
    if (ctx->alpn != NULL)
        SSL_CTX_set_alpn_select_cb(s, alpn_select, ctx);
    SSL_CTX_set_tlsext_servername_callback(s, sni_select);
    SSL_CTX_set_tlsext_servername_arg(s, ctx);
    if (err < 0) {
        SSL_CTX_free(s);
        ERR_clear_error();
        return err;
    }
    *out = s;
    return 0;
}

int tt_tls_server_ctx(const tt_tls_server_opts_t *o, tt_tls_ctx_t **out)
{
    tt_tls_ctx_t *ctx;
    int err;

    if (o == NULL || out == NULL || min_version(o->min_version) < 0)
        return -EINVAL;
    bool files = o->cert_file != NULL && o->key_file != NULL;
    bool mem = o->cert_pem != NULL && o->key_pem != NULL;
    if (files == mem || (o->cert_file != NULL) != (o->key_file != NULL) ||
        (o->cert_pem != NULL) != (o->key_pem != NULL) || (o->verify_client && o->ca_file == NULL))
        return -EINVAL;
    if ((ctx = ctx_alloc()) == NULL)
        return -ENOMEM;
    ctx->server = true;
    err = o->alpn != NULL ? alpn_wire(o->alpn, &ctx->alpn, &ctx->alpn_len) : 0;
    if (err == 0)
        err = server_ssl_ctx(ctx, o, o->cert_file, o->key_file, &ctx->ssl);
    if (err < 0) {
        tt_tls_ctx_free(ctx);
        return err;
    }
    *out = ctx;
    return 0;
}

int tt_tls_ctx_add_cert(tt_tls_ctx_t *ctx, const char *cert_file, const char *key_file)
{
    tt_tls_server_opts_t o;
    SSL_CTX *s, **grown;
    int err;

    if (ctx == NULL || !ctx->server || cert_file == NULL || key_file == NULL)
        return -EINVAL;
    /* The same settings as the context's own certificate. */
    memset(&o, 0, sizeof(o));
    o.min_version = SSL_CTX_get_min_proto_version(ctx->ssl) == TLS1_3_VERSION ? TT_TLS_1_3 : 0;
    o.no_tickets = (SSL_CTX_get_options(ctx->ssl) & SSL_OP_NO_TICKET) != 0;
    err = server_ssl_ctx(ctx, &o, cert_file, key_file, &s);
    if (err < 0)
        return err;
    /* Client-certificate checks follow the context's own. */
    SSL_CTX_set_verify(s, SSL_CTX_get_verify_mode(ctx->ssl), NULL);
    X509_STORE *st = SSL_CTX_get_cert_store(ctx->ssl);
    if (st != NULL && X509_STORE_up_ref(st))
        SSL_CTX_set_cert_store(s, st);
    grown = realloc(ctx->extra, (ctx->nextra + 1) * sizeof(*grown));
    if (grown == NULL) {
        SSL_CTX_free(s);
        return -ENOMEM;
    }
    ctx->extra = grown;
    ctx->extra[ctx->nextra++] = s;
    return 0;
}

/* SNI: the first further certificate that covers the asked-for name. */
static int sni_select(SSL *ssl, int *alert, void *arg)
{
    tt_tls_ctx_t *ctx = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    (void)alert;
    if (name == NULL)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < ctx->nextra; i++) {
        X509 *x = SSL_CTX_get0_certificate(ctx->extra[i]);
        if (x != NULL && X509_check_host(x, name, 0, 0, NULL) == 1) {
            SSL_set_SSL_CTX(ssl, ctx->extra[i]);
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

static int remember_session(SSL *ssl, SSL_SESSION *sess);

int tt_tls_client_ctx(const tt_tls_client_opts_t *o, tt_tls_ctx_t **out)
{
    tt_tls_ctx_t *ctx;
    int err = 0;

    if (o == NULL || out == NULL || min_version(o->min_version) < 0 ||
        (o->cert_file != NULL) != (o->key_file != NULL))
        return -EINVAL;
    if ((ctx = ctx_alloc()) == NULL)
        return -ENOMEM;
    ctx->insecure = o->insecure;
    if ((ctx->ssl = base_ctx(false, min_version(o->min_version))) == NULL) {
        tt_tls_ctx_free(ctx);
        return -ENOMEM;
    }
    SSL_CTX *s = ctx->ssl;
    err = set_algorithms(s, o->ciphers, o->ciphersuites, o->groups);
    if (err == 0 && o->alpn != NULL && (err = alpn_wire(o->alpn, &ctx->alpn, &ctx->alpn_len)) == 0 &&
        SSL_CTX_set_alpn_protos(s, ctx->alpn, (unsigned)ctx->alpn_len) != 0)
        err = -ENOMEM;
    if (err == 0 && !o->insecure) {
        SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
        if (o->ca_file != NULL && (err = readable(o->ca_file)) < 0) {
        } else if (o->ca_dir != NULL && (err = readable(o->ca_dir)) < 0) {
        } else if (o->ca_file != NULL || o->ca_dir != NULL) {
            if (SSL_CTX_load_verify_locations(s, o->ca_file, o->ca_dir) != 1)
                err = -EINVAL;
        } else if (SSL_CTX_set_default_verify_paths(s) != 1) {
            err = -EINVAL;
        }
    }
    if (err == 0 && o->cert_file != NULL) {
        err = load_file_pair(s, o->cert_file, o->key_file);
        if (err == 0 && SSL_CTX_check_private_key(s) != 1)
            err = -EINVAL;
    }
    /* Sessions are kept by us, per server, for the next connection to it. */
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(s, remember_session);
    if (err < 0) {
        ERR_clear_error();
        tt_tls_ctx_free(ctx);
        return err;
    }
    *out = ctx;
    return 0;
}

/* ---- per loop: the plaintext buffer and the gather buffer ------------------------ */

/* Plaintext of one read: at most the ciphertext read plus one record OpenSSL
 * held from the read before. */
#define PBUF_SIZE (TT__READ_BUF_SIZE + 17 * 1024)

typedef struct loop_bufs {
    char pbuf[PBUF_SIZE];
    char gather[GATHER];
} loop_bufs_t;

static void loop_bufs_free(tt_loop_t *loop)
{
    free(loop->tls);
    loop->tls = NULL;
}

static loop_bufs_t *loop_bufs(tt_loop_t *loop)
{
    if (loop->tls == NULL) {
        loop->tls = malloc(sizeof(loop_bufs_t));
        loop->tls_free = loop_bufs_free;
    }
    return loop->tls;
}

/* ---- per connection ---------------------------------------------------------------- */

typedef struct tls {
    tt_conn_t *conn;
    SSL *ssl;
    tt_tls_ctx_t *ctx;
    const char *in; /* ciphertext the BIO reads from: this read's view, or `held` */
    size_t in_len;
    char *held; /* ciphertext kept while reading is stopped */
    size_t held_len;
    tt__wnode_t timer; /* the handshake deadline */
    uint64_t timeout_ms;
    uint64_t plain_left; /* STARTTLS: bytes queued before the switch, written plain */
    void (*on_done)(tt_conn_t *c);
    char *servername;
    int wr_err;      /* the socket error a BIO write met */
    int peer_alert;  /* the last alert the peer sent, -1: none */
    bool done;       /* handshake finished */
    bool renego;     /* the peer tried to renegotiate */
    bool read_wants_write;
    bool waits_open; /* counted in open_waits */
    bool started;    /* the handshake may begin (a STARTTLS client waits for its plain bytes) */
    bool eof_held;   /* the peer's FIN came behind ciphertext still held */
    char reason[160];
} tls_t;

static const tt__wire_ops_t wire_ops;

static tls_t *tls_of(const tt_conn_t *c)
{
    return c->ext != NULL && c->ext->wire_ops == &wire_ops ? c->ext->wire : NULL;
}

/* ---- the BIO: reads from the current view, writes the socket ----------------------- */

static int bio_write(BIO *b, const char *buf, size_t len, size_t *put)
{
    tls_t *t = BIO_get_data(b);
    ssize_t r;

    BIO_clear_retry_flags(b);
    if (tt__conn_is_closing(t->conn)) {
        t->wr_err = -EPIPE;
        return 0;
    }
    r = tt__conn_wire_write(t->conn, buf, len);
    if (r == -EAGAIN) {
        BIO_set_retry_write(b);
        return 0;
    }
    if (r < 0) {
        t->wr_err = (int)r;
        return 0;
    }
    t->conn->ext->wire_out += (uint64_t)r;
    *put = (size_t)r;
    return 1;
}

static int bio_read(BIO *b, char *out, size_t len, size_t *got)
{
    tls_t *t = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    if (t->in_len == 0) {
        BIO_set_retry_read(b);
        return 0;
    }
    size_t k = len < t->in_len ? len : t->in_len;
    memcpy(out, t->in, k);
    t->in += k;
    t->in_len -= k;
    *got = k;
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tether");
    if (m == NULL)
        return;
    BIO_meth_set_write_ex(m, bio_write);
    BIO_meth_set_read_ex(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    bio_method = m;
}

/* ---- reasons ------------------------------------------------------------------------- */

static const char *verify_reason(long v)
{
    switch (v) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
        return "hostname mismatch";
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return "IP address mismatch";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        return "unknown CA";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "certificate not yet valid";
    case X509_V_ERR_CERT_REVOKED:
        return "certificate revoked";
    default:
        return X509_verify_cert_error_string(v);
    }
}

/* Say why, in this order: our check of the peer's certificate, the alert the peer
 * sent, OpenSSL's own reason, the socket. Then the error queue is emptied. */
static void set_reason(tls_t *t, const char *fallback)
{
    long v = SSL_get_verify_result(t->ssl);
    unsigned long e = ERR_peek_last_error();

    if (t->renego)
        snprintf(t->reason, sizeof(t->reason), "renegotiation refused");
    else if (v != X509_V_OK && !t->ctx->insecure)
        snprintf(t->reason, sizeof(t->reason), "%s", verify_reason(v));
    else if (t->peer_alert == 116) /* certificate_required: OpenSSL 3.0 has no name */
        snprintf(t->reason, sizeof(t->reason), "peer sent alert: certificate required");
    else if (t->peer_alert >= 0)
        snprintf(t->reason, sizeof(t->reason), "peer sent alert: %s",
                 SSL_alert_desc_string_long(t->peer_alert));
    else if (e != 0 && ERR_reason_error_string(e) != NULL)
        snprintf(t->reason, sizeof(t->reason), "%s", ERR_reason_error_string(e));
    else
        snprintf(t->reason, sizeof(t->reason), "%s", fallback);
    ERR_clear_error();
}

/* Alerts (both ways) and a renegotiation attempt, from OpenSSL's info callback. */
static void info_cb(const SSL *ssl, int where, int ret)
{
    tls_t *t = SSL_get_app_data(ssl);

    if (t == NULL)
        return;
    if ((where & SSL_CB_READ_ALERT) == SSL_CB_READ_ALERT && (ret & 0xff) != SSL_AD_CLOSE_NOTIFY)
        t->peer_alert = ret & 0xff;
    /* SSL_OP_NO_RENEGOTIATION answers a renegotiation with a no_renegotiation
     * warning; we close instead: a peer that tries is not one to keep. */
    if ((where & SSL_CB_WRITE_ALERT) == SSL_CB_WRITE_ALERT && (ret & 0xff) == SSL_AD_NO_RENEGOTIATION)
        t->renego = true;
    if ((where & SSL_CB_HANDSHAKE_START) && t->done &&
        SSL_version(ssl) < TLS1_3_VERSION)
        t->renego = true;
}

static void fail(tls_t *t, tt_close_kind_t kind, int err, const char *fallback)
{
    set_reason(t, fallback);
    tt__conn_close(t->conn, kind, err);
}

/* ---- handshake ------------------------------------------------------------------------ */

static void timer_cb(tt__wnode_t *node)
{
    tls_t *t = tt__container_of(node, tls_t, timer);
    snprintf(t->reason, sizeof(t->reason), "no handshake within %llu ms",
             (unsigned long long)t->timeout_ms);
    tt__conn_close(t->conn, TT_CLOSE_TLS_HANDSHAKE_TIMEOUT, -ETIMEDOUT);
}

/* Client sessions are kept per server name (or address) and port. */
static void cache_key(tls_t *t, char *out, size_t n)
{
    tt_addr_t a;
    uint16_t port = tt_conn_peer_addr(t->conn, &a) == 0 ? tt_addr_port(&a) : 0;
    char ip[TT_ADDR_STRLEN] = "";

    if (t->servername == NULL && tt_conn_peer_addr(t->conn, &a) == 0)
        tt_addr_format(&a, ip, sizeof(ip));
    snprintf(out, n, "%s|%u", t->servername != NULL ? t->servername : ip, port);
}

static int remember_session(SSL *ssl, SSL_SESSION *sess)
{
    tls_t *t = SSL_get_app_data(ssl);
    char key[300];
    cached_t *slot = NULL;

    if (t == NULL)
        return 0;
    cache_key(t, key, sizeof(key));
    pthread_mutex_lock(&t->ctx->mu);
    for (unsigned i = 0; i < CACHE_SLOTS && slot == NULL; i++)
        if (t->ctx->cache[i].sess != NULL && strcmp(t->ctx->cache[i].key, key) == 0)
            slot = &t->ctx->cache[i];
    if (slot == NULL) /* the oldest goes */
        slot = &t->ctx->cache[t->ctx->cache_next++ % CACHE_SLOTS];
    SSL_SESSION_free(slot->sess);
    slot->sess = sess;
    snprintf(slot->key, sizeof(slot->key), "%s", key);
    pthread_mutex_unlock(&t->ctx->mu);
    return 1; /* the reference is ours */
}

static void resume_session(tls_t *t)
{
    char key[300];

    cache_key(t, key, sizeof(key));
    pthread_mutex_lock(&t->ctx->mu);
    for (unsigned i = 0; i < CACHE_SLOTS; i++) {
        cached_t *s = &t->ctx->cache[i];
        if (s->sess != NULL && strcmp(s->key, key) == 0) {
            if (SSL_SESSION_is_resumable(s->sess))
                SSL_set_session(t->ssl, s->sess);
            break;
        }
    }
    pthread_mutex_unlock(&t->ctx->mu);
}

static void handshake_done(tls_t *t)
{
    tt_conn_t *c = t->conn;

    t->done = true;
    tt__wheel_stop(&tt__conn_loop(c)->wheel, &t->timer);
    tt__conn_wire_hold(c, false); /* what the app queued meanwhile goes now */
    if (t->on_done != NULL)
        t->on_done(c);
    if (t->waits_open && !tt__conn_is_closing(c)) {
        t->waits_open = false;
        tt__conn_layer_opened(c); /* on_open (or the next layer's opening) */
    }
}

static void handshake(tls_t *t)
{
    int r, e;

    ERR_clear_error();
    r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        handshake_done(t);
        return;
    }
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return;
    if (e == SSL_ERROR_WANT_WRITE) {
        tt__conn_want_write(t->conn, true);
        return;
    }
    if (t->wr_err != 0 && t->peer_alert < 0) {
        snprintf(t->reason, sizeof(t->reason), "%s during the handshake", strerror(-t->wr_err));
        ERR_clear_error();
        tt__conn_close(t->conn, TT_CLOSE_TLS_HANDSHAKE_FAILED, TT_ETLS);
        return;
    }
    fail(t, TT_CLOSE_TLS_HANDSHAKE_FAILED, TT_ETLS, "handshake failed");
}

/* ---- reading ---------------------------------------------------------------------------- */

/* Keep what the BIO did not read (reading stopped under it) for read_start. */
static int hold_rest(tls_t *t)
{
    if (t->in_len == 0) {
        free(t->held);
        t->held = NULL;
        t->held_len = 0;
        return 0;
    }
    if (t->held != NULL && t->in >= t->held && t->in < t->held + t->held_len) {
        memmove(t->held, t->in, t->in_len); /* the rest of what was held */
    } else {
        char *h = realloc(t->held, t->held_len + t->in_len);
        if (h == NULL)
            return -ENOMEM;
        memcpy(h + t->held_len, t->in, t->in_len); /* behind what is held already */
        t->in_len += t->held_len;
        t->held = h;
    }
    t->held_len = t->in_len;
    return 0;
}

static void deliver(tls_t *t, const char *p, size_t n, size_t pending)
{
    if (n > 0 && !tt__conn_is_closing(t->conn))
        tt__conn_plain_input(t->conn, p, n, pending);
}

/* Decrypt what the BIO can read and hand it up while the app wants it. */
static void pump(tls_t *t, size_t pending)
{
    tt_conn_t *c = t->conn;
    loop_bufs_t *lb;
    size_t got = 0;

    if (!t->done) {
        if (!t->started)
            return; /* a STARTTLS client's plain bytes are still going out */
        handshake(t);
        if (!t->done || tt__conn_is_closing(c))
            return;
    }
    if ((lb = loop_bufs(tt__conn_loop(c))) == NULL) {
        tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM);
        return;
    }
    /* Only while there is something to read: an SSL_read that finds nothing
     * makes OpenSSL allocate a record buffer (17 KiB) that an idle connection
     * would then keep. */
    while (!tt__conn_is_closing(c) && tt__conn_wants_input(c) &&
           (t->in_len > 0 || SSL_pending(t->ssl) > 0)) {
        size_t k = 0;
        int r, e;

        ERR_clear_error();
        r = SSL_read_ex(t->ssl, lb->pbuf + got, PBUF_SIZE - got, &k);
        if (t->renego) {
            deliver(t, lb->pbuf, got, pending);
            if (!tt__conn_is_closing(c))
                fail(t, TT_CLOSE_TLS_ERROR, TT_ETLS, "renegotiation refused");
            return;
        }
        if (r == 1) {
            got += k;
            if (got == PBUF_SIZE) {
                deliver(t, lb->pbuf, got, pending + t->in_len);
                got = 0;
            }
            continue;
        }
        e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            break;
        /* What came before the end or the failure goes up first. */
        deliver(t, lb->pbuf, got, pending);
        got = 0;
        if (tt__conn_is_closing(c))
            return;
        if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: the orderly end */
            ERR_clear_error();
            tt__conn_peer_ended(c);
            return;
        }
        if (e == SSL_ERROR_WANT_WRITE) { /* a reply (key update) met a full socket */
            t->read_wants_write = true;
            tt__conn_want_write(c, true);
            return;
        }
        if (t->wr_err != 0) {
            ERR_clear_error();
            tt__conn_fail(c, t->wr_err);
            return;
        }
        /* TLS 1.3: a client's handshake is done before the server has judged its
         * certificate; a refusal is an alert right after. Before any application
         * byte came, that is the handshake failing, not the records. */
        fail(t, t->peer_alert >= 0 && c->bytes_in == 0 ? TT_CLOSE_TLS_HANDSHAKE_FAILED
                                                       : TT_CLOSE_TLS_ERROR,
             TT_ETLS, "record error");
        return;
    }
    deliver(t, lb->pbuf, got, pending);
}

static void feed(tls_t *t, const char *buf, size_t n, size_t pending)
{
    t->in = buf;
    t->in_len = n;
    pump(t, pending);
    if (!tt__conn_is_closing(t->conn) && hold_rest(t) < 0)
        tt__conn_close(t->conn, TT_CLOSE_IO_ERROR, -ENOMEM);
    t->in = NULL;
    t->in_len = 0;
}

/* The peer's FIN, once every byte before it has been through: after its
 * close_notify the stream layer has ended the read side already (no FIN is read
 * then); without one, what it sent may be cut short. */
static void peer_fin(tls_t *t)
{
    tt_conn_t *c = t->conn;

    if (t->held_len > 0) { /* older ciphertext first: it may hold the close_notify */
        t->eof_held = true;
        if (tt__conn_wants_input(c) || !t->done)
            feed(t, t->held, t->held_len, 0);
        if (tt__conn_is_closing(c) || !tt__conn_wants_input(c) || t->held_len > 0)
            return; /* ended, or the app stopped reading: tls_resumed goes on */
    }
    t->eof_held = false;
    {
        if (!t->done) {
            snprintf(t->reason, sizeof(t->reason), "connection closed during the handshake");
            tt__conn_close(c, TT_CLOSE_TLS_HANDSHAKE_FAILED, TT_ETLS);
        } else {
            snprintf(t->reason, sizeof(t->reason), "the peer closed without close_notify");
            tt__conn_close(c, TT_CLOSE_TLS_TRUNCATED, TT_ETRUNCATED);
        }
    }
}

static void tls_input(tt_conn_t *c, const char *buf, ssize_t n, size_t pending)
{
    tls_t *t = tls_of(c);

    if (n < 0) {
        tt__conn_fail(c, (int)n); /* a reset stays a reset */
        return;
    }
    if (n == 0) {
        peer_fin(t);
        return;
    }
    c->ext->wire_in += (uint64_t)n;
    if (t->held_len > 0) { /* older ciphertext first (io_uring may still deliver) */
        t->in = buf;
        t->in_len = (size_t)n;
        if (hold_rest(t) < 0) {
            tt__conn_close(c, TT_CLOSE_IO_ERROR, -ENOMEM);
            return;
        }
        if (!tt__conn_wants_input(c) && t->done)
            return;
        feed(t, t->held, t->held_len, pending);
        return;
    }
    feed(t, buf, (size_t)n, pending);
}

static void tls_resumed(tt_conn_t *c)
{
    tls_t *t = tls_of(c);

    if (t->held_len > 0)
        feed(t, t->held, t->held_len, 0);
    if (t->eof_held && !tt__conn_is_closing(c) && tt__conn_wants_input(c))
        peer_fin(t);
}

/* ---- writing ------------------------------------------------------------------------------ */

/* The handshake may begin: a STARTTLS client's plain bytes are all out. */
static void start(tls_t *t)
{
    t->started = true;
    tt__conn_wire_hold(t->conn, true); /* what the app sends now waits for the handshake */
    if (!SSL_is_server(t->ssl) || t->held_len > 0)
        tt__conn_want_write(t->conn, true); /* from the loop: tls_writable */
}

static ssize_t write_plain(tls_t *t, const struct iovec *iov)
{
    size_t len = iov[0].iov_len < t->plain_left ? iov[0].iov_len : (size_t)t->plain_left;
    ssize_t r = tt__conn_wire_write(t->conn, iov[0].iov_base, len);

    if (r > 0) {
        t->conn->ext->wire_out += (uint64_t)r;
        if ((t->plain_left -= (uint64_t)r) == 0)
            start(t);
    }
    return r;
}

/* STARTTLS while a send of the plain bytes was in flight (io_uring): they count as
 * written plain, as write_plain's own would. */
static void tls_plain_sent(tt_conn_t *c, uint64_t n)
{
    tls_t *t = tls_of(c);

    if (t == NULL || t->plain_left == 0)
        return;
    if (n > t->plain_left)
        n = t->plain_left;
    c->ext->wire_out += n;
    if ((t->plain_left -= n) == 0)
        start(t);
}

static ssize_t tls_writev(tt_conn_t *c, const struct iovec *iov, int iovcnt)
{
    tls_t *t = tls_of(c);
    loop_bufs_t *lb = NULL;
    size_t total = 0, off = 0;
    int i = 0;

    if (t->plain_left > 0)
        return write_plain(t, iov);
    if (!t->done) {
        tt__conn_wire_hold(c, true);
        return -EINPROGRESS;
    }
    while (i < iovcnt) {
        const char *p = (const char *)iov[i].iov_base + off;
        size_t len = iov[i].iov_len - off, k = 0;
        int r, e;

        if (len == 0) {
            i++, off = 0;
            continue;
        }
        /* Small pieces are gathered into one record; a large one goes as it is. */
        if (len < GATHER && i + 1 < iovcnt) {
            if (lb == NULL && (lb = loop_bufs(tt__conn_loop(c))) == NULL)
                return total > 0 ? (ssize_t)total : -ENOMEM;
            size_t g = 0;
            for (int j = i; j < iovcnt && g < GATHER; j++) {
                size_t from = j == i ? off : 0;
                size_t take = iov[j].iov_len - from;
                if (take > GATHER - g)
                    take = GATHER - g;
                memcpy(lb->gather + g, (const char *)iov[j].iov_base + from, take);
                g += take;
            }
            p = lb->gather;
            len = g;
        }
        ERR_clear_error();
        r = SSL_write_ex(t->ssl, p, len, &k);
        if (r == 1) {
            total += k;
            while (k > 0 && i < iovcnt) { /* advance over what the record took */
                size_t left = iov[i].iov_len - off;
                if (k < left) {
                    off += k;
                    k = 0;
                } else {
                    k -= left;
                    i++, off = 0;
                }
            }
            continue;
        }
        e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE)
            return total > 0 ? (ssize_t)total : -EAGAIN;
        if (t->wr_err != 0) {
            ERR_clear_error();
            return t->wr_err; /* the stream layer closes with what it means */
        }
        fail(t, TT_CLOSE_TLS_ERROR, TT_ETLS, "write failed");
        return TT_ETLS;
    }
    return (ssize_t)total;
}

static bool tls_writable(tt_conn_t *c)
{
    tls_t *t = tls_of(c);

    if (!t->done) {
        tt__conn_want_write(c, false);
        if (t->started) {
            if (t->held_len > 0)
                feed(t, t->held, t->held_len, 0);
            else
                handshake(t);
        }
        return true;
    }
    if (t->read_wants_write) {
        t->read_wants_write = false;
        tt__conn_want_write(c, false);
        feed(t, t->held, t->held_len, 0);
    }
    return tt__conn_is_closing(c);
}

static int tls_end(tt_conn_t *c)
{
    tls_t *t = tls_of(c);
    int r, e;

    if (!t->done)
        return 0; /* no session: nothing to close but the stream */
    ERR_clear_error();
    r = SSL_shutdown(t->ssl); /* close_notify */
    if (r >= 0)
        return 0;
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE)
        return -EAGAIN;
    ERR_clear_error();
    if (t->wr_err != 0)
        return t->wr_err;
    return 0; /* the peer's close_notify came and went: ours is moot */
}

static void tls_opened(tt_conn_t *c)
{
    tls_t *t = tls_of(c);

    if (t->timeout_ms > 0)
        tt__wheel_start(&tt__conn_loop(c)->wheel, &t->timer,
                        tt__loop_deadline(tt__conn_loop(c), t->timeout_ms));
    if (!SSL_is_server(t->ssl)) {
        resume_session(t);
        handshake(t); /* the ClientHello */
    }
}

static void tls_close_info(tt_conn_t *c, tt_close_info_t *info)
{
    tls_t *t = tls_of(c);
    if (t->reason[0] != '\0')
        info->reason = t->reason;
}

static void tls_free(tt_conn_t *c)
{
    tls_t *t = tls_of(c);

    tt__wheel_stop(&tt__conn_loop(c)->wheel, &t->timer);
    SSL_free(t->ssl);
    ERR_clear_error();
    tt_tls_ctx_free(t->ctx);
    free(t->held);
    free(t->servername);
    free(t);
    c->ext->wire = NULL;
    c->ext->wire_ops = NULL;
}

static const tt__wire_ops_t wire_ops = {
    .opened = tls_opened,
    .input = tls_input,
    .writev = tls_writev,
    .writable = tls_writable,
    .end = tls_end,
    .resumed = tls_resumed,
    .close_info = tls_close_info,
    .free = tls_free,
    .plain_sent = tls_plain_sent,
};

/* ---- putting it on a connection -------------------------------------------------------------- */

static tls_t *tls_new(tt_conn_t *c, tt_tls_ctx_t *ctx, const char *servername, const char *ip,
                      uint64_t timeout_ms, int *err)
{
    tls_t *t;
    BIO *bio;

    pthread_once(&bio_once, bio_method_init);
    *err = -ENOMEM;
    if (bio_method == NULL || tt__conn_ext(c) == NULL || (t = calloc(1, sizeof(*t))) == NULL)
        return NULL;
    t->conn = c;
    t->peer_alert = -1;
    t->timeout_ms = timeout_ms > 0 ? timeout_ms : TT_DEFAULT_TLS_HANDSHAKE_MS;
    t->started = true;
    tt__wnode_init(&t->timer, timer_cb);
    ERR_clear_error();
    if ((t->ssl = SSL_new(ctx->ssl)) == NULL || (bio = BIO_new(bio_method)) == NULL)
        goto fail;
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio);
    SSL_set_app_data(t->ssl, t);
    SSL_set_info_callback(t->ssl, info_cb);
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (servername != NULL) {
            if ((t->servername = strdup(servername)) == NULL)
                goto fail;
            SSL_set_tlsext_host_name(t->ssl, servername);
            if (!ctx->insecure && SSL_set1_host(t->ssl, servername) != 1)
                goto bad;
        } else if (ip != NULL && !ctx->insecure) {
            if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), ip) != 1)
                goto bad;
        } else if (!ctx->insecure) {
            goto bad; /* a certificate we cannot match to anything proves nothing */
        }
    }
    t->ctx = tt__tls_ctx_ref(ctx);
    *err = 0;
    return t;
bad:
    *err = -EINVAL;
fail:
    SSL_free(t->ssl);
    ERR_clear_error();
    free(t->servername);
    free(t);
    return NULL;
}

int tt__tls_apply(tt_conn_t *c, tt_tls_ctx_t *ctx, const char *servername, const char *ip,
                  uint64_t handshake_timeout_ms)
{
    int err;
    tls_t *t = tls_new(c, ctx, servername, ip, handshake_timeout_ms, &err);

    if (t == NULL)
        return err;
    c->ext->wire = t;
    c->ext->wire_ops = &wire_ops;
    t->waits_open = true;
    c->ext->open_waits++;
    tt__conn_wire_hold(c, true);
    return 0;
}

int tt_conn_start_tls(tt_conn_t *c, const tt_tls_start_opts_t *o)
{
    tls_t *t;
    int err;

    if (c == NULL || o == NULL || o->ctx == NULL)
        return -EINVAL;
    if (tt__conn_is_closing(c) || c->state != TT_STATE_OPEN)
        return -ENOTCONN;
    if (tls_of(c) != NULL || tt_conn_is_framed(c) || (c->ext != NULL && c->ext->ws != NULL) ||
        (c->io.fdpass))
        return -EINVAL;
    if (!o->ctx->server && o->servername == NULL && !o->ctx->insecure)
        return -EINVAL;
    t = tls_new(c, o->ctx, o->servername, NULL, o->handshake_timeout_ms, &err);
    if (t == NULL)
        return err;
    t->on_done = o->on_done;
    t->plain_left = tt__conn_queue_bytes(c); /* queued before the switch: plain, first */
    c->ext->wire = t;
    c->ext->wire_ops = &wire_ops;
    tt__wheel_start(&tt__conn_loop(c)->wheel, &t->timer,
                    tt__loop_deadline(tt__conn_loop(c), t->timeout_ms));
    if (t->plain_left > 0)
        t->started = false; /* write_plain starts it once they are out */
    else
        start(t);
    return 0;
}

/* ---- what it is --------------------------------------------------------------------------------- */

int tt_conn_tls_info(const tt_conn_t *c, tt_tls_info_t *out)
{
    tls_t *t;
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    const char *sni;
    X509 *peer;

    if (c == NULL || out == NULL)
        return -EINVAL;
    if ((t = tls_of(c)) == NULL)
        return -EOPNOTSUPP;
    memset(out, 0, sizeof(*out));
    out->done = t->done;
    out->server = SSL_is_server(t->ssl) != 0;
    if (!t->done)
        return 0;
    out->resumed = SSL_session_reused(t->ssl) != 0;
    snprintf(out->version, sizeof(out->version), "%s", SSL_get_version(t->ssl));
    snprintf(out->cipher, sizeof(out->cipher), "%s", SSL_get_cipher_name(t->ssl));
    SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
    if (alpn != NULL && alpn_len < sizeof(out->alpn)) {
        memcpy(out->alpn, alpn, alpn_len);
        out->alpn[alpn_len] = '\0';
    }
    sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
    if (sni != NULL)
        snprintf(out->sni, sizeof(out->sni), "%s", sni);
    if ((peer = SSL_get0_peer_certificate(t->ssl)) != NULL)
        X509_NAME_oneline(X509_get_subject_name(peer), out->peer_subject,
                          (int)sizeof(out->peer_subject));
    /* Records are made here, in user space: the BIO is ours, not a socket BIO,
     * so the kernel's TLS offload is never switched on (docs/tls.md). */
    out->ktls_tx = BIO_get_ktls_send(SSL_get_wbio(t->ssl)) != 0;
    out->ktls_rx = BIO_get_ktls_recv(SSL_get_rbio(t->ssl)) != 0;
    ERR_clear_error();
    return 0;
}
