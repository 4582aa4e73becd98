#include "tls_env.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "harness.h"
#include "peer.h"
#include "stream/conn.h" /* te_start_tls_late: is a send in flight */

te_env_t TE;

/* Sizes of the pieces a plan sends, in turn: odd ones, record-sized ones and ones
 * just past a record, so records and reads never line up with sends. */
static const size_t CHUNKS[] = {1, 7, 100, 1000, 4093, 16384, 16385, 65536, 3, 200000, 513};
#define NCHUNKS (sizeof(CHUNKS) / sizeof(CHUNKS[0]))
static unsigned char PAT[200000];

static void hex(const unsigned char *d, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
    out[2 * n] = '\0';
}

void te_setup(void)
{
    memset(&TE, 0, sizeof(TE));
    cr_assert_eq(th_certs_make(&TE.certs), 0, "certificates");
    cr_assert_eq(tt_loop_init(&TE.loop), 0);
}

static bool nothing_open(void)
{
    return tt_loop_handle_count(TE.loop) == 0;
}

void te_teardown(void)
{
    if (TE.loop == NULL)
        return;
    if (TE.srv != NULL)
        tt_server_close(TE.srv);
    TE.srv = NULL;
    for (int i = 0; i < TE.nrecs; i++)
        if (TE.recs[i].conn != NULL)
            tt_destroy(TE.recs[i].conn, 0);
    te_run_until(nothing_open, 5000);
    tt_tls_ctx_free(TE.sctx);
    for (int i = 0; i < TE.nctxs; i++)
        tt_tls_ctx_free(TE.ctxs[i]);
    for (int i = 0; i < TE.nrecs; i++)
        EVP_MD_CTX_free(TE.recs[i].sha);
    tt_loop_close(TE.loop);
    TE.loop = NULL;
    th_certs_remove(&TE.certs);
}

static tt_tls_ctx_t *keep(tt_tls_ctx_t *c)
{
    cr_assert_lt(TE.nctxs, 16);
    TE.ctxs[TE.nctxs++] = c;
    return c;
}

tt_tls_ctx_t *te_server_ctx(const th_pair_t *p, const char *ca_file, bool verify_client,
                            const char *alpn, int min_version)
{
    tt_tls_server_opts_t o = {.cert_file = p->cert, .key_file = p->key, .ca_file = ca_file,
                              .verify_client = verify_client, .alpn = alpn,
                              .min_version = min_version};
    tt_tls_ctx_t *c = NULL;
    int r = tt_tls_server_ctx(&o, &c);
    cr_assert_eq(r, 0, "tt_tls_server_ctx: %s", tt_strerror(r));
    return keep(c);
}

tt_tls_ctx_t *te_client_ctx(const char *ca_file, const th_pair_t *cert, const char *alpn,
                            int min_version)
{
    tt_tls_client_opts_t o = {.ca_file = ca_file, .alpn = alpn, .min_version = min_version,
                              .cert_file = cert != NULL ? cert->cert : NULL,
                              .key_file = cert != NULL ? cert->key : NULL};
    tt_tls_ctx_t *c = NULL;
    int r = tt_tls_client_ctx(&o, &c);
    cr_assert_eq(r, 0, "tt_tls_client_ctx: %s", tt_strerror(r));
    return keep(c);
}

/* ---- connection records ---------------------------------------------------------- */

static te_rec_t *rec_new(tt_conn_t *c, bool client, const te_plan_t *plan)
{
    cr_assert_lt(TE.nrecs, TE_MAX_RECS, "too many connections");
    te_rec_t *r = &TE.recs[TE.nrecs++];
    memset(r, 0, sizeof(*r));
    r->conn = c;
    r->client = client;
    r->plan = *plan;
    r->bad_at = -1;
    r->bad_msg = -1;
    r->sha = EVP_MD_CTX_new();
    cr_assert(r->sha != NULL);
    EVP_DigestInit_ex(r->sha, EVP_sha256(), NULL);
    if (c != NULL)
        tt_conn_set_data(c, r);
    return r;
}

static te_rec_t *rec_of(tt_conn_t *c)
{
    te_rec_t *r = tt_conn_get_data(c);
    if (r == NULL) /* an accepted connection: its first event (open, or a close) */
        r = rec_new(c, false, &TE.srv_plan);
    return r;
}

static void note_queue(te_rec_t *r)
{
    size_t q = tt_conn_queued_bytes(r->conn);
    if (q > r->max_queued)
        r->max_queued = q;
}

/* Send the plan's pattern bytes until the queue is full (on_drain goes on). */
static void pump(te_rec_t *r)
{
    static bool pat_ready;
    if (!pat_ready) {
        th_pattern(PAT, sizeof(PAT), 0);
        pat_ready = true;
    }
    while (r->sent < r->plan.send && r->conn != NULL) {
        size_t n = CHUNKS[(r->sent / 7 + r->sent) % NCHUNKS];
        if (n > r->plan.send - r->sent)
            n = (size_t)(r->plan.send - r->sent);
        /* The pattern at any offset: generate it there. */
        unsigned char *buf = malloc(n);
        cr_assert(buf != NULL);
        th_pattern(buf, n, r->sent);
        int rc = tt_send(r->conn, buf, n);
        free(buf);
        cr_assert_geq(rc, 0, "send: %s", tt_strerror(rc));
        r->sent += n;
        note_queue(r);
        if (rc == TT_SEND_FULL)
            return;
    }
    if (r->sent == r->plan.send && r->plan.end_after_send && r->plan.send > 0 &&
        r->conn != NULL) {
        r->plan.end_after_send = false;
        int rc = tt_end(r->conn, NULL, 0);
        cr_expect_eq(rc, 0, "tt_end: %s", tt_strerror(rc));
    }
}

static void on_open(tt_conn_t *c)
{
    te_rec_t *r = rec_of(c);
    r->opened = true;
    r->open_ms = th_now_ms();
    r->info_rc = tt_conn_tls_info(c, &r->info);
    if (r->client)
        TE.cli_opens++;
    else
        TE.srv_opens++;
    if (r->plan.file != NULL) {
        int fd = open(r->plan.file, O_RDONLY | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        int rc = tt_send_file(c, fd, 0, TT_FILE_TO_EOF, TT_FILE_CLOSE_FD | TT_FILE_THEN_END);
        cr_assert_geq(rc, 0, "tt_send_file: %s", tt_strerror(rc));
    }
    if (r->plan.detect_within_ms > 0)
        cr_assert_eq(tt_conn_set_detect_within(c, r->plan.detect_within_ms), 0);
    if (r->client && r->plan.starttls)
        cr_assert_eq(tt_send_text(c, "hello plain\nSTARTTLS\n"), 0);
    if (r->plan.flood) {
        static unsigned char piece[65536];
        int rc = 0;
        while (rc >= 0 && r->sent < (256u << 20)) {
            rc = tt_send(c, piece, sizeof(piece));
            if (rc >= 0) {
                r->sent += sizeof(piece);
                note_queue(r);
            }
        }
        r->flood_rc = rc;
        return;
    }
    for (int i = 0; i < r->plan.send_msgs; i++) {
        size_t n = te_msg_size(i);
        unsigned char *m = malloc(n + 1);
        cr_assert(m != NULL);
        te_msg_fill(m, i);
        int rc = tt_send_message(c, m, n);
        free(m);
        cr_assert_geq(rc, 0, "send_message: %s", tt_strerror(rc));
    }
    pump(r);
}

size_t te_msg_size(int i)
{
    static const size_t sizes[] = {0, 1, 17, 16383, 16384, 16385, 100, 70000, 3};
    return sizes[i % 9] + (size_t)(i / 9);
}

void te_msg_fill(void *buf, int i)
{
    th_pattern(buf, te_msg_size(i), (uint64_t)i * 1000);
}

static void on_message(tt_conn_t *c, const void *msg, size_t len)
{
    te_rec_t *r = rec_of(c);
    if (r->plan.echo) {
        int rc = tt_send_message(c, msg, len);
        cr_assert_geq(rc, 0, "echo message: %s", tt_strerror(rc));
        return;
    }
    if (r->bad_msg < 0 && (len != te_msg_size(r->msgs) ||
                           th_pattern_check(msg, len, (uint64_t)r->msgs * 1000) >= 0))
        r->bad_msg = r->msgs;
    r->msgs++;
    r->got += len;
    if (r->plan.end_after_msgs > 0 && r->msgs == r->plan.end_after_msgs)
        cr_expect_eq(tt_end(c, NULL, 0), 0);
}

static void starttls_done(tt_conn_t *c)
{
    te_rec_t *r = rec_of(c);
    r->upgraded = true;
    r->info_rc = tt_conn_tls_info(c, &r->info);
}

int te_start_tls_late(bool *in_flight)
{
    tt_conn_t *c = TE.late_conn;
    te_rec_t *r = rec_of(c);
    tt_tls_start_opts_t so = {.ctx = TE.starttls_ctx, .on_done = starttls_done};
    int rc;

    *in_flight = c->io.send_out != 0;
    if ((rc = tt_conn_start_tls(c, &so)) < 0)
        return rc;
    if ((rc = tt_send_text(c, "server secret 1\n")) < 0)
        return rc;
    r->plan.echo = true;
    TE.late_conn = NULL;
    return 0;
}

static void on_data(tt_conn_t *c, const void *data, size_t len, size_t pending)
{
    te_rec_t *r = rec_of(c);
    (void)pending;
    if (r->plan.check_pattern && r->bad_at < 0) {
        long at = th_pattern_check(data, len, r->got);
        if (at >= 0)
            r->bad_at = (long)r->got + at;
    }
    size_t room = sizeof(r->head) - 1 - (r->got < sizeof(r->head) ? r->got : sizeof(r->head) - 1);
    if (room > 0) {
        size_t n = len < room ? len : room;
        memcpy(r->head + r->got, data, n);
        r->head[r->got + n] = '\0';
    }
    EVP_DigestUpdate(r->sha, data, len);
    r->got += len;
    if (r->client && r->plan.starttls && strstr(r->head, "GO\n") != NULL) {
        tt_tls_start_opts_t so = {.ctx = TE.starttls_cctx, .servername = "localhost",
                                  .on_done = starttls_done};
        int rc = tt_conn_start_tls(c, &so);
        cr_assert_eq(rc, 0, "tt_conn_start_tls: %s", tt_strerror(rc));
        cr_assert_geq(tt_send_text(c, "client secret 1\n"), 0);
        r->plan.starttls = false;
        return;
    }
    if (!r->client && r->plan.starttls && !r->said_plain &&
        strstr(r->head, "hello plain\n") != NULL) {
        cr_assert_eq(tt_send_text(c, "plain too\n"), 0);
        r->said_plain = true;
    }
    if (!r->client && r->plan.starttls && TE.starttls_ctx != NULL &&
        strstr(r->head, "STARTTLS\n") != NULL) {
        if (r->plan.starttls_late) {
            /* The answer as a broadcast: on io_uring, a send request the loop hands
             * to the kernel as its run ends; the upgrade comes after that. */
            cr_assert_eq(tt_server_broadcast(TE.srv, "GO\n", 3, NULL), 1);
            TE.late_conn = c;
            r->plan.starttls = false;
            return;
        }
        /* Plain until here: answer in plain, upgrade, and queue a first secret at
         * once (it must wait for the handshake and go encrypted). */
        cr_assert_eq(tt_send_text(c, "GO\n"), 0);
        tt_tls_start_opts_t so = {.ctx = TE.starttls_ctx, .on_done = starttls_done};
        int rc = tt_conn_start_tls(c, &so);
        cr_assert_eq(rc, 0, "tt_conn_start_tls: %s", tt_strerror(rc));
        cr_assert_geq(tt_send_text(c, "server secret 1\n"), 0);
        r->plan.starttls = false;
        r->plan.echo = true;
        return;
    }
    if (r->plan.echo) {
        int rc = tt_send(c, data, len);
        cr_assert_geq(rc, 0, "echo: %s", tt_strerror(rc));
        note_queue(r);
        if (rc == TT_SEND_FULL)
            tt_conn_read_stop(c);
    }
    if (r->plan.end_after_got > 0 && r->got >= r->plan.end_after_got) {
        r->plan.end_after_got = 0;
        cr_expect_eq(tt_end(c, NULL, 0), 0);
    }
}

static void on_drain(tt_conn_t *c)
{
    te_rec_t *r = rec_of(c);
    if (r->plan.echo && !tt_conn_is_reading(c))
        tt_conn_read_start(c);
    pump(r);
}

static void on_end(tt_conn_t *c)
{
    rec_of(c)->ended = true;
}

static void on_error(tt_conn_t *c, int err)
{
    te_rec_t *r = rec_of(c);
    r->errors++;
    r->last_error = err;
}

static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    te_rec_t *r = rec_of(c);
    unsigned char d[32];
    unsigned n = 0;
    r->closed = true;
    r->close_ms = th_now_ms();
    r->close = *info;
    cr_expect(info->reason != NULL, "reason is never NULL");
    snprintf(r->reason, sizeof(r->reason), "%s", info->reason != NULL ? info->reason : "(null)");
    r->close.reason = NULL;
    r->close.ws_reason = NULL;
    cr_expect_eq(tt_conn_get_stats(c, &r->stats), 0);
    EVP_DigestFinal_ex(r->sha, d, &n);
    hex(d, n, r->sha_hex);
    r->conn = NULL;
    if (r->client)
        TE.cli_closes++;
    else
        TE.srv_closes++;
}

static const tt_conn_handlers_t H = {.on_open = on_open, .on_data = on_data,
                                     .on_drain = on_drain, .on_end = on_end,
                                     .on_error = on_error, .on_close = on_close,
                                     .on_message = on_message};

void te_listen(tt_tls_ctx_t *ctx, const tt_server_opts_t *opts)
{
    tt_server_opts_t so = opts != NULL ? *opts : (tt_server_opts_t){0};
    tt_addr_t any = th_loopback(0);
    so.tls = ctx;
    int r = tt_server_listen(TE.loop, &any, &so, &H, NULL, &TE.srv);
    cr_assert_eq(r, 0, "listen: %s", tt_strerror(r));
    cr_assert_eq(tt_server_addr(TE.srv, &TE.addr), 0);
    TE.port = tt_addr_port(&TE.addr);
}

te_rec_t *te_connect(uint16_t port, tt_tls_ctx_t *ctx, const char *servername,
                     const te_plan_t *plan, uint64_t hs_timeout_ms)
{
    tt_addr_t a = th_loopback(port);
    tt_connect_opts_t o = {.timeout_ms = 5000, .tls = ctx, .tls_servername = servername,
                           .tls_handshake_timeout_ms = hs_timeout_ms};
    te_plan_t none = {0};
    te_rec_t *r = rec_new(NULL, true, plan != NULL ? plan : &none);
    tt_conn_t *c = NULL;
    int rc = tt_connect(TE.loop, &a, &o, &H, r, &c);
    cr_assert_eq(rc, 0, "tt_connect: %s", tt_strerror(rc));
    r->conn = c;
    if (r->plan.frame != NULL)
        cr_assert_eq(tt_conn_set_framing(c, r->plan.frame), 0);
    return r;
}

te_rec_t *te_srv_rec(int n)
{
    for (int i = 0; i < TE.nrecs; i++)
        if (!TE.recs[i].client && n-- == 0)
            return &TE.recs[i];
    return NULL;
}

/* ---- running ---------------------------------------------------------------------- */

typedef struct {
    bool (*pred)(void);
    uint64_t end;
    bool met;
} guard_t;

static void guard_cb(tt_timer_t *t, void *data)
{
    guard_t *g = data;
    (void)t;
    if (g->pred()) {
        g->met = true;
        tt_loop_stop(TE.loop);
    } else if (th_now_ms() >= g->end) {
        tt_loop_stop(TE.loop);
    }
}

static bool only_guard(void)
{
    return tt_loop_handle_count(TE.loop) <= 1;
}

bool te_run_until(bool (*pred)(void), uint64_t ms)
{
    guard_t g = {.pred = pred != NULL ? pred : only_guard, .end = th_now_ms() + ms};
    tt_timer_t *t;
    if (pred == nothing_open)
        g.pred = only_guard;
    if (g.pred())
        return true;
    cr_assert_eq(tt_timer_init(TE.loop, &t, guard_cb, &g), 0);
    cr_assert_eq(tt_timer_start(t, 0, 2), 0);
    while (!g.met && th_now_ms() < g.end)
        tt_loop_run(TE.loop, TT_RUN_DEFAULT);
    tt_timer_close(t);
    tt_loop_run(TE.loop, TT_RUN_NOWAIT);
    return g.met || g.pred();
}

static int want_n;
static bool srv_closes_reached(void) { return TE.srv_closes >= want_n; }
static bool cli_closes_reached(void) { return TE.cli_closes >= want_n; }
static th_proc_t *want_proc;
static bool proc_gone(void) { return th_proc_exited(want_proc); }

bool te_run_srv_closes(int n, uint64_t ms)
{
    want_n = n;
    return te_run_until(srv_closes_reached, ms);
}

bool te_run_cli_closes(int n, uint64_t ms)
{
    want_n = n;
    return te_run_until(cli_closes_reached, ms);
}

static te_rec_t *want_rec;
static uint64_t want_got, idle_until;
static int idle_closes;
static bool rec_open(void) { return want_rec->opened || want_rec->closed; }
static bool rec_got(void) { return want_rec->got >= want_got || want_rec->closed; }
static bool idle_over(void)
{
    return th_now_ms() >= idle_until || TE.srv_closes + TE.cli_closes != idle_closes;
}

bool te_run_open(te_rec_t *r, uint64_t ms)
{
    want_rec = r;
    return te_run_until(rec_open, ms) && r->opened;
}

bool te_run_got(te_rec_t *r, uint64_t n, uint64_t ms)
{
    want_rec = r;
    want_got = n;
    return te_run_until(rec_got, ms) && r->got >= n;
}

bool te_run_idle(uint64_t ms)
{
    idle_until = th_now_ms() + ms;
    idle_closes = TE.srv_closes + TE.cli_closes;
    te_run_until(idle_over, ms + 1000);
    return TE.srv_closes + TE.cli_closes == idle_closes;
}

bool te_run_proc(th_proc_t *p, uint64_t ms)
{
    want_proc = p;
    return te_run_until(proc_gone, ms);
}

/* ---- peers -------------------------------------------------------------------------- */

const char *te_src(const char *rel)
{
    static char buf[8][512];
    static int i;
    char *b = buf[i++ % 8];
    snprintf(b, 512, "%s/%s", TT_SOURCE_DIR, rel);
    return b;
}

static void spawn(th_proc_t *p, const char *tag, const char *const *pre, const char *const *args)
{
    const char *argv[64];
    int n = 0;
    for (int i = 0; pre[i] != NULL; i++)
        argv[n++] = pre[i];
    for (int i = 0; args[i] != NULL && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    th_proc_start(p, TE.certs.dir, tag, (char *const *)argv);
}

void te_python(th_proc_t *p, const char *tag, const char *const *args)
{
    const char *pre[] = {"python3", "-u", te_src("tests/tls/peer.py"), NULL};
    spawn(p, tag, pre, args);
}

void te_node(th_proc_t *p, const char *tag, const char *const *args)
{
    const char *pre[] = {"node", te_src("tests/tls/peer.js"), NULL};
    spawn(p, tag, pre, args);
}

void te_openssl(th_proc_t *p, const char *tag, const char *const *args)
{
    const char *pre[] = {"openssl", NULL};
    spawn(p, tag, pre, args);
}

uint16_t te_port(char *text, size_t size)
{
    uint16_t port = th_unused_port();
    if (text != NULL)
        snprintf(text, size, "%u", port);
    return port;
}

const char *te_srv_port(void)
{
    static char buf[16];
    snprintf(buf, sizeof(buf), "%u", TE.port);
    return buf;
}

void te_sha256_file(const char *path, char out[65])
{
    unsigned char d[32], buf[65536];
    unsigned n = 0;
    size_t got;
    FILE *f = fopen(path, "rb");
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    cr_assert(f != NULL && x != NULL);
    EVP_DigestInit_ex(x, EVP_sha256(), NULL);
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
        EVP_DigestUpdate(x, buf, got);
    fclose(f);
    EVP_DigestFinal_ex(x, d, &n);
    EVP_MD_CTX_free(x);
    hex(d, n, out);
}

const char *te_result(const th_proc_t *p, const char *key)
{
    static char val[256];
    char pat[64];
    const char *out = th_proc_output(p);
    const char *line = strstr(out, "RESULT ");
    val[0] = '\0';
    if (line == NULL)
        return val;
    snprintf(pat, sizeof(pat), " %s=", key);
    const char *at = strstr(line, pat);
    const char *eol = strchr(line, '\n');
    if (at == NULL || (eol != NULL && at > eol))
        return val;
    at += strlen(pat);
    size_t n = strcspn(at, " \n");
    if (n >= sizeof(val))
        n = sizeof(val) - 1;
    memcpy(val, at, n);
    val[n] = '\0';
    return val;
}

long te_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kib;
}

tt_tls_ctx_t *te_srv_ctx(void)
{
    return te_server_ctx(&TE.certs.server, NULL, false, NULL, 0);
}

tt_tls_ctx_t *te_cli_ctx(void)
{
    return te_client_ctx(TE.certs.ca.cert, NULL, NULL, 0);
}

void te_echo_server(tt_tls_ctx_t *ctx, const tt_server_opts_t *opts)
{
    TE.srv_plan = (te_plan_t){.echo = true};
    te_listen(ctx, opts);
}

te_rec_t *te_round_trip(uint16_t port, tt_tls_ctx_t *cctx, const char *name, uint64_t n,
                        uint64_t ms)
{
    te_plan_t p = {.send = n, .check_pattern = true, .end_after_got = n};
    int before = TE.cli_closes;
    te_rec_t *c = te_connect(port, cctx, name, &p, 0);
    cr_assert(te_run_cli_closes(before + 1, ms), "round trip of %llu bytes not done in %llu ms",
              (unsigned long long)n, (unsigned long long)ms);
    cr_assert(c->opened, "never opened: %s (%s)", TE_KIND(c), c->reason);
    cr_assert_eq(c->got, n, "got %llu of %llu", (unsigned long long)c->got,
                 (unsigned long long)n);
    cr_assert_eq(c->bad_at, -1, "stream broken at offset %ld", c->bad_at);
    cr_assert_eq(c->close.kind, TT_CLOSE_LOCAL_END, "client close: %s (%s)", TE_KIND(c),
                 c->reason);
    return c;
}

void te_peer(th_proc_t *p, int kind, const char *tag, ...)
{
    const char *args[48];
    int n = 0;
    va_list ap;
    va_start(ap, tag);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;)
        if (a[0] != '\0' && n < 47)
            args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    if (kind == TE_PY)
        te_python(p, tag, args);
    else if (kind == TE_NODE)
        te_node(p, tag, args);
    else
        te_openssl(p, tag, args);
}
