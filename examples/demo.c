/* A narrated tour of tether on loopback, in one loop and one thread:
 *
 *   1. a server listens on 127.0.0.1 (a free port);
 *   2. four clients connect and introduce themselves; the server welcomes each;
 *   3. both ways: each client sends a block of data and the server acknowledges it,
 *      then the server sends every client a message of its own;
 *   4. the server's per-connection table (tt_server_foreach + tt_conn_get_stats);
 *   5. alice ends gracefully (tt_end): "local end" on her side, "peer closed" on the
 *      server's;
 *   6. bob is destroyed with a reset (tt_destroy, TT_DESTROY_RESET): "local destroy"
 *      on his side, "peer reset" on the server's;
 *   7. a file is sent with send-then-close (tt_send_file, TT_FILE_CLOSE_FD |
 *      TT_FILE_THEN_END); the server checks its length and checksum;
 *   8. the table again, then carol and dave end and the server closes.
 *
 * A repeating timer drives the script: each step starts, and the next one begins
 * when the events it waits for have happened (or the step fails after 5 s). Every
 * expectation is checked; the exit status is 0 only if all of them held.
 *
 *   ./demo            (takes well under a second)
 *
 * Protocol, one line per request: "HELLO name", "DATA n" + n bytes, "FILE n hash"
 * + n bytes; the server answers each with one line. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tether.h"

#define NCHAT 4
#define NCLIENTS (NCHAT + 1) /* + the file sender */
#define FILE_BYTES ((size_t)4 << 20)
#define TICK_MS 20
#define STEP_TIMEOUT_MS 5000
#define LINE_MAX_LEN 200

/* ---- the two sides' records ---------------------------------------------------- */

typedef struct srv_rec { /* the server's view of one connection */
    uint64_t id;
    char name[32];
    enum { IN_LINE, IN_DATA, IN_FILE } mode;
    char line[LINE_MAX_LEN + 1];
    size_t linelen;
    uint64_t remain, size, want_hash, hash;
    bool file_ok;
    bool closed;
    tt_close_info_t info;
} srv_rec_t;

typedef struct client {
    const char *name;
    tt_conn_t *conn; /* until on_close */
    char line[LINE_MAX_LEN + 1];
    size_t linelen;
    bool welcomed, data_acked, heard_server, file_ok;
    bool closed;
    tt_close_info_t info;
} client_t;

typedef struct demo {
    tt_loop_t *loop;
    tt_server_t *srv;
    tt_addr_t addr;
    tt_timer_t *tick;
    srv_rec_t recs[NCLIENTS];
    int nrecs;
    client_t clients[NCLIENTS];
    int file_fd;
    uint64_t file_hash;
    int step;
    bool step_started;
    uint64_t step_t0;
    int checks, failures;
} demo_t;

static demo_t demo;

enum { ALICE, BOB, CAROL, DAVE, FILER };

/* ---- small helpers ------------------------------------------------------------- */

static void check(bool ok, const char *fmt, ...)
{
    va_list ap;
    demo.checks++;
    if (!ok)
        demo.failures++;
    printf("  %s ", ok ? "ok  " : "FAIL");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ULL

static const char *addr_str(const tt_addr_t *a, char *buf)
{
    if (a->len == 0 || tt_addr_format(a, buf, TT_ADDR_STRLEN) < 0)
        strcpy(buf, "-");
    return buf;
}

static void say_close(const char *who, const tt_close_info_t *info)
{
    printf("  [%s] closed: %s", who, tt_close_kind_name(info->kind));
    if (info->error != 0)
        printf(" (%s)", tt_strerror(info->error));
    printf("; %" PRIu64 " bytes written, %" PRIu64 " never sent\n", info->bytes_written,
           info->bytes_unsent);
}

/* ---- server side --------------------------------------------------------------- */

static void srv_reply(tt_conn_t *c, const char *fmt, ...)
{
    char buf[LINE_MAX_LEN + 2];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf) - 1)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    tt_send(c, buf, (size_t)n);
}

static void srv_line(tt_conn_t *c, srv_rec_t *r)
{
    uint64_t n, h;
    char name[32];

    if (sscanf(r->line, "HELLO %31s", name) == 1) {
        snprintf(r->name, sizeof(r->name), "%s", name);
        printf("  [server] #%" PRIu64 " says hello: %s\n", r->id, r->name);
        srv_reply(c, "welcome %s, you are connection #%" PRIu64, r->name, r->id);
    } else if (sscanf(r->line, "DATA %" SCNu64, &n) == 1) {
        r->mode = IN_DATA;
        r->remain = r->size = n;
    } else if (sscanf(r->line, "FILE %" SCNu64 " %" SCNx64, &n, &h) == 2) {
        snprintf(r->name, sizeof(r->name), "filer");
        printf("  [server] #%" PRIu64 " announces a file: %" PRIu64 " bytes, FNV-1a %016" PRIx64
               "\n", r->id, n, h);
        r->mode = IN_FILE;
        r->remain = r->size = n;
        r->want_hash = h;
        r->hash = FNV_INIT;
    } else {
        printf("  [server] #%" PRIu64 " sent nonsense; destroying it\n", r->id);
        tt_destroy(c, 0);
    }
}

static void srv_payload_done(tt_conn_t *c, srv_rec_t *r)
{
    if (r->mode == IN_DATA) {
        printf("  [server] got %" PRIu64 " bytes from %s\n", r->size, r->name);
        srv_reply(c, "got %" PRIu64 " bytes, thanks %s", r->size, r->name);
    } else {
        r->file_ok = r->hash == r->want_hash;
        printf("  [server] file complete: %" PRIu64 " bytes, FNV-1a %016" PRIx64 " %s\n", r->size,
               r->hash, r->file_ok ? "matches" : "DOES NOT MATCH");
        srv_reply(c, "%s %" PRIu64 " bytes %016" PRIx64, r->file_ok ? "OK" : "BAD", r->size,
                  r->hash);
    }
    r->mode = IN_LINE;
}

static void srv_open(tt_conn_t *c)
{
    srv_rec_t *r;

    if (demo.nrecs == NCLIENTS) { /* not part of the script */
        tt_destroy(c, TT_DESTROY_RESET);
        return;
    }
    r = &demo.recs[demo.nrecs++];
    r->id = tt_conn_id(c);
    snprintf(r->name, sizeof(r->name), "?");
    tt_conn_set_data(c, r);
}

static void srv_data(tt_conn_t *c, const void *data, size_t len, size_t pending)
{
    srv_rec_t *r = tt_conn_get_data(c);
    const char *p = data, *end = p + len;
    (void)pending;

    /* TCP delivers bytes, not requests: a read may hold part of a line, several
     * lines, or a line followed by payload. */
    while (p < end && r != NULL && tt_conn_state(c) < TT_STATE_CLOSING) {
        if (r->mode == IN_LINE) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t take = (size_t)((nl != NULL ? nl : end) - p);
            if (r->linelen + take > LINE_MAX_LEN) {
                tt_destroy(c, 0);
                return;
            }
            memcpy(r->line + r->linelen, p, take);
            r->linelen += take;
            p += take;
            if (nl != NULL) {
                p++;
                r->line[r->linelen] = '\0';
                r->linelen = 0;
                srv_line(c, r);
            }
        } else {
            size_t take = (size_t)(end - p) < r->remain ? (size_t)(end - p) : r->remain;
            if (r->mode == IN_FILE)
                r->hash = fnv1a(r->hash, p, take);
            r->remain -= take;
            p += take;
            if (r->remain == 0)
                srv_payload_done(c, r);
        }
    }
}

static void srv_close(tt_conn_t *c, const tt_close_info_t *info)
{
    srv_rec_t *r = tt_conn_get_data(c);
    char who[64];

    if (r == NULL)
        return;
    r->closed = true;
    r->info = *info;
    snprintf(who, sizeof(who), "server #%" PRIu64 " %s", r->id, r->name);
    say_close(who, info);
}

/* ---- client side --------------------------------------------------------------- */

static void cli_line(client_t *cl, const char *line)
{
    printf("  [%s] <- %s\n", cl->name, line);
    if (strncmp(line, "welcome ", 8) == 0)
        cl->welcomed = true;
    else if (strncmp(line, "got ", 4) == 0)
        cl->data_acked = true;
    else if (strncmp(line, "server: ", 8) == 0)
        cl->heard_server = true;
    else if (strncmp(line, "OK ", 3) == 0)
        cl->file_ok = true;
}

static void cli_open(tt_conn_t *c)
{
    client_t *cl = tt_conn_get_data(c);
    char hello[64];

    if (cl == &demo.clients[FILER]) {
        char header[64];
        int n = snprintf(header, sizeof(header), "FILE %zu %016" PRIx64 "\n", FILE_BYTES,
                         demo.file_hash);
        int fd = demo.file_fd, err;
        demo.file_fd = -1; /* the connection owns it from the call on */
        printf("  [filer] -> %.*s", n, header);
        printf("  [filer] -> %zu bytes with tt_send_file(TT_FILE_CLOSE_FD | TT_FILE_THEN_END)\n",
               FILE_BYTES);
        tt_send(c, header, (size_t)n);
        err = tt_send_file(c, fd, 0, TT_FILE_TO_EOF, TT_FILE_CLOSE_FD | TT_FILE_THEN_END);
        check(err >= 0, "tt_send_file queued the file (%s)", err < 0 ? tt_strerror(err) : "0");
        return;
    }
    snprintf(hello, sizeof(hello), "HELLO %s\n", cl->name);
    printf("  [%s] connected; -> HELLO %s\n", cl->name, cl->name);
    tt_send_text(c, hello);
}

static void cli_data(tt_conn_t *c, const void *data, size_t len, size_t pending)
{
    client_t *cl = tt_conn_get_data(c);
    const char *p = data, *end = p + len;
    (void)pending;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t take = (size_t)((nl != NULL ? nl : end) - p);
        if (cl->linelen + take > LINE_MAX_LEN)
            take = LINE_MAX_LEN - cl->linelen; /* truncate an over-long line */
        memcpy(cl->line + cl->linelen, p, take);
        cl->linelen += take;
        if (nl == NULL)
            break;
        p = nl + 1;
        cl->line[cl->linelen] = '\0';
        cl->linelen = 0;
        cli_line(cl, cl->line);
    }
}

static void cli_close(tt_conn_t *c, const tt_close_info_t *info)
{
    client_t *cl = tt_conn_get_data(c);
    cl->conn = NULL;
    cl->closed = true;
    cl->info = *info;
    say_close(cl->name, info);
}

static void connect_client(int i)
{
    const tt_conn_handlers_t h = {
        .on_open = cli_open, .on_data = cli_data, .on_close = cli_close};
    const tt_connect_opts_t opts = {.timeout_ms = 2000};
    client_t *cl = &demo.clients[i];
    int err = tt_connect(demo.loop, &demo.addr, &opts, &h, cl, &cl->conn);
    if (err < 0) {
        check(false, "connect %s: %s", cl->name, tt_strerror(err));
        cl->closed = true;
    }
}

/* ---- the table ----------------------------------------------------------------- */

static int table_row(tt_conn_t *c, void *arg)
{
    srv_rec_t *r = tt_conn_get_data(c);
    char local[TT_ADDR_STRLEN], peer[TT_ADDR_STRLEN];
    tt_conn_stats_t st;
    (void)arg;

    if (tt_conn_get_stats(c, &st) < 0)
        return 0;
    printf("  %4" PRIu64 "  %-6s %-16s %-16s %-13s %9" PRIu64 " %9" PRIu64 " %7" PRIu64
           " %8" PRIu64 " %7" PRIu64 "\n",
           st.id, r != NULL ? r->name : "?", addr_str(&st.local, local), addr_str(&st.peer, peer),
           tt_conn_state_name(st.state), st.bytes_in, st.bytes_out, st.packets_in,
           st.packets_out, st.age_ms);
    return 0;
}

static void print_table(void)
{
    printf("  %4s  %-6s %-16s %-16s %-13s %9s %9s %7s %8s %7s\n", "id", "name", "local", "peer",
           "state", "bytes in", "bytes out", "pkts in", "pkts out", "age ms");
    int n = tt_server_foreach(demo.srv, table_row, NULL);
    printf("  (%d live, %" PRIu64 " accepted in total)\n", n, tt_server_accepted_total(demo.srv));
}

/* ---- the file ------------------------------------------------------------------ */

/* FILE_BYTES of pseudo-random data in an unlinked temporary file: nothing to clean
 * up, and the descriptor is all tt_send_file needs. */
static int make_file(void)
{
    char path[] = "/tmp/tether-demo-XXXXXX";
    static char block[64 * 1024];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    int fd = mkstemp(path);

    if (fd < 0)
        return -errno;
    unlink(path);
    demo.file_hash = FNV_INIT;
    for (size_t done = 0; done < FILE_BYTES; done += sizeof(block)) {
        for (size_t i = 0; i < sizeof(block); i += 8) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
            memcpy(block + i, &x, 8);
        }
        demo.file_hash = fnv1a(demo.file_hash, block, sizeof(block));
        if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block)) {
            int err = errno ? -errno : -EIO;
            close(fd);
            return err;
        }
    }
    return fd;
}

/* ---- the script ---------------------------------------------------------------- */

static srv_rec_t *rec_named(const char *name)
{
    for (int i = 0; i < demo.nrecs; i++)
        if (strcmp(demo.recs[i].name, name) == 0)
            return &demo.recs[i];
    return NULL;
}

static bool both_closed(int i)
{
    srv_rec_t *r = rec_named(demo.clients[i].name);
    return demo.clients[i].closed && r != NULL && r->closed;
}

static void s_listen(void)
{
    const tt_conn_handlers_t h = {.on_open = srv_open, .on_data = srv_data, .on_close = srv_close};
    char buf[TT_ADDR_STRLEN];
    tt_addr_t any;

    tt_addr_parse(&any, "127.0.0.1", 0);
    int err = tt_server_listen(demo.loop, &any, NULL, &h, NULL, &demo.srv);
    check(err == 0, "tt_server_listen: %s", tt_strerror(err));
    if (err == 0) {
        tt_server_addr(demo.srv, &demo.addr);
        printf("  [server] listening on %s\n", addr_str(&demo.addr, buf));
    }
}

static void s_connect(void)
{
    for (int i = 0; i < NCHAT; i++)
        connect_client(i);
}
static bool d_connect(void)
{
    for (int i = 0; i < NCHAT; i++)
        if (!demo.clients[i].welcomed)
            return false;
    return true;
}
static void v_connect(void)
{
    check(demo.nrecs == NCHAT, "the server accepted %d connections (expected %d)", demo.nrecs,
          NCHAT);
}

static void s_data(void)
{
    static char payload[NCHAT * 1000];
    memset(payload, 'x', sizeof(payload));
    for (int i = 0; i < NCHAT; i++) {
        char head[32];
        size_t n = (size_t)(i + 1) * 1000; /* different sizes: different byte counts */
        snprintf(head, sizeof(head), "DATA %zu\n", n);
        printf("  [%s] -> DATA %zu (+ %zu bytes)\n", demo.clients[i].name, n, n);
        tt_send_text(demo.clients[i].conn, head);
        tt_send(demo.clients[i].conn, payload, n);
    }
}
static bool d_data(void)
{
    for (int i = 0; i < NCHAT; i++)
        if (!demo.clients[i].data_acked)
            return false;
    return true;
}

static int broadcast_one(tt_conn_t *c, void *arg)
{
    srv_rec_t *r = tt_conn_get_data(c);
    srv_reply(c, "server: hello %s, %d of you are here", r->name, *(int *)arg);
    return 0;
}
static void s_broadcast(void)
{
    int n = (int)tt_server_conn_count(demo.srv);
    printf("  [server] -> a message to each of its %d connections\n", n);
    tt_server_foreach(demo.srv, broadcast_one, &n);
}
static bool d_broadcast(void)
{
    for (int i = 0; i < NCHAT; i++)
        if (!demo.clients[i].heard_server)
            return false;
    return true;
}

static void s_table(void) { print_table(); }

static void s_end_alice(void)
{
    printf("  [alice] tt_end(): FIN after anything queued; reading goes on until the "
           "server's FIN\n");
    tt_end(demo.clients[ALICE].conn, NULL, 0);
}
static bool d_alice(void) { return both_closed(ALICE); }
static void v_alice(void)
{
    tt_close_kind_t c = demo.clients[ALICE].info.kind, s = rec_named("alice")->info.kind;
    check(c == TT_CLOSE_LOCAL_END, "alice's side: %s (expected %s)", tt_close_kind_name(c),
          tt_close_kind_name(TT_CLOSE_LOCAL_END));
    check(s == TT_CLOSE_PEER_CLOSED, "server's side: %s (expected %s)", tt_close_kind_name(s),
          tt_close_kind_name(TT_CLOSE_PEER_CLOSED));
}

static void s_reset_bob(void)
{
    printf("  [bob] tt_destroy(TT_DESTROY_RESET): SO_LINGER 0, the kernel sends RST\n");
    tt_destroy(demo.clients[BOB].conn, TT_DESTROY_RESET);
}
static bool d_bob(void) { return both_closed(BOB); }
static void v_bob(void)
{
    tt_close_kind_t c = demo.clients[BOB].info.kind, s = rec_named("bob")->info.kind;
    check(c == TT_CLOSE_LOCAL_DESTROY, "bob's side: %s (expected %s)", tt_close_kind_name(c),
          tt_close_kind_name(TT_CLOSE_LOCAL_DESTROY));
    check(s == TT_CLOSE_PEER_RESET, "server's side: %s (expected %s)", tt_close_kind_name(s),
          tt_close_kind_name(TT_CLOSE_PEER_RESET));
}

static void s_file(void)
{
    demo.file_fd = make_file();
    check(demo.file_fd >= 0, "made a %zu-byte file (FNV-1a %016" PRIx64 ")", FILE_BYTES,
          demo.file_hash);
    if (demo.file_fd >= 0)
        connect_client(FILER);
    else
        demo.clients[FILER].closed = true;
}
static bool d_file(void) { return both_closed(FILER); }
static void v_file(void)
{
    srv_rec_t *r = rec_named("filer");
    const tt_close_info_t *ci = &demo.clients[FILER].info;
    uint64_t header = (uint64_t)snprintf(NULL, 0, "FILE %zu %016" PRIx64 "\n", FILE_BYTES,
                                         demo.file_hash);

    check(r->size == FILE_BYTES && r->remain == 0, "the server received %" PRIu64
          " file bytes (expected %zu)", r->size - r->remain, FILE_BYTES);
    check(r->file_ok, "checksum on the receiving side: %016" PRIx64 " (expected %016" PRIx64 ")",
          r->hash, demo.file_hash);
    check(demo.clients[FILER].file_ok, "the sender got the server's OK");
    check(ci->kind == TT_CLOSE_LOCAL_END, "sender's side: %s (expected %s)",
          tt_close_kind_name(ci->kind), tt_close_kind_name(TT_CLOSE_LOCAL_END));
    check(ci->bytes_written == header + FILE_BYTES && ci->bytes_unsent == 0,
          "sender wrote %" PRIu64 " bytes, %" PRIu64 " unsent (expected %" PRIu64 ", 0)",
          ci->bytes_written, ci->bytes_unsent, header + FILE_BYTES);
    check(r->info.kind == TT_CLOSE_PEER_CLOSED, "server's side: %s (expected %s)",
          tt_close_kind_name(r->info.kind), tt_close_kind_name(TT_CLOSE_PEER_CLOSED));
}

static void s_shutdown(void)
{
    printf("  [carol] [dave] tt_end(); [server] tt_server_close(): no more accepts, the\n"
           "  accepted connections live on until their own close\n");
    tt_end(demo.clients[CAROL].conn, NULL, 0);
    tt_end(demo.clients[DAVE].conn, NULL, 0);
    tt_server_close(demo.srv);
    demo.srv = NULL;
}
static bool d_shutdown(void) { return both_closed(CAROL) && both_closed(DAVE); }
static void v_shutdown(void)
{
    for (int i = CAROL; i <= DAVE; i++) {
        tt_close_kind_t c = demo.clients[i].info.kind;
        tt_close_kind_t s = rec_named(demo.clients[i].name)->info.kind;
        check(c == TT_CLOSE_LOCAL_END && s == TT_CLOSE_PEER_CLOSED,
              "%s: %s / server: %s (expected %s / %s)", demo.clients[i].name,
              tt_close_kind_name(c), tt_close_kind_name(s), tt_close_kind_name(TT_CLOSE_LOCAL_END),
              tt_close_kind_name(TT_CLOSE_PEER_CLOSED));
    }
}

static const struct step {
    const char *title;
    void (*start)(void);
    bool (*done)(void);   /* NULL: done once started */
    void (*verify)(void); /* checks once done */
} steps[] = {
    {"A server listens", s_listen, NULL, NULL},
    {"Four clients connect and say hello", s_connect, d_connect, v_connect},
    {"Both ways: each client sends data, the server acknowledges", s_data, d_data, NULL},
    {"Both ways: the server sends unprompted", s_broadcast, d_broadcast, NULL},
    {"The server's connection table", s_table, NULL, NULL},
    {"alice ends gracefully", s_end_alice, d_alice, v_alice},
    {"bob is destroyed with a reset", s_reset_bob, d_bob, v_bob},
    {"A file sent with send-then-close", s_file, d_file, v_file},
    {"The table again", s_table, NULL, NULL},
    {"Shutdown: carol and dave end, the server closes", s_shutdown, d_shutdown, v_shutdown},
};
#define NSTEPS ((int)(sizeof(steps) / sizeof(steps[0])))

typedef struct conn_list {
    tt_conn_t *conns[2 * NCLIENTS];
    int n;
} conn_list_t;

static int collect(tt_conn_t *c, void *arg)
{
    conn_list_t *l = arg;
    l->conns[l->n++] = c;
    return l->n == (int)(sizeof(l->conns) / sizeof(l->conns[0])); /* full: stop */
}

/* A step failed: close everything so the loop ends and main reports it.
 * tt_server_foreach may not close connections, hence collect first. */
static void abandon(void)
{
    conn_list_t l = {.n = 0};

    if (demo.srv != NULL) {
        tt_server_foreach(demo.srv, collect, &l);
        tt_server_close(demo.srv);
        demo.srv = NULL;
    }
    for (int i = 0; i < l.n; i++)
        tt_destroy(l.conns[i], 0);
    for (int i = 0; i < NCLIENTS; i++)
        if (demo.clients[i].conn != NULL)
            tt_destroy(demo.clients[i].conn, 0);
    tt_timer_close(demo.tick);
}

static void tick(tt_timer_t *t, void *data)
{
    const struct step *s = &steps[demo.step];
    uint64_t now = tt_loop_now(demo.loop);
    (void)t, (void)data;

    if (!demo.step_started) {
        printf("\n-- %d. %s\n", demo.step + 1, s->title);
        demo.step_started = true;
        demo.step_t0 = now;
        s->start();
        if (demo.failures > 0) {
            abandon();
            return;
        }
    }
    if (s->done == NULL || s->done()) {
        if (s->verify != NULL)
            s->verify();
        demo.step++;
        demo.step_started = false;
        if (demo.step == NSTEPS || demo.failures > 0) {
            if (demo.failures > 0)
                abandon();
            else
                tt_timer_close(demo.tick); /* nothing else is open: the loop ends */
        }
        return;
    }
    if (now - demo.step_t0 > STEP_TIMEOUT_MS) {
        check(false, "step %d did not complete within %d ms", demo.step + 1, STEP_TIMEOUT_MS);
        abandon();
    }
}

int main(void)
{
    static const char *const names[NCLIENTS] = {"alice", "bob", "carol", "dave", "filer"};
    int err;

    setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order, even through a pipe */
    demo.file_fd = -1;
    for (int i = 0; i < NCLIENTS; i++)
        demo.clients[i].name = names[i];
    if ((err = tt_loop_init(&demo.loop)) < 0 ||
        (err = tt_timer_init(demo.loop, &demo.tick, tick, NULL)) < 0 ||
        (err = tt_timer_start(demo.tick, 0, TICK_MS)) < 0) {
        fprintf(stderr, "demo: %s\n", tt_strerror(err));
        return 1;
    }
    tt_loop_run(demo.loop, TT_RUN_DEFAULT); /* until every handle is closed */
    if (demo.file_fd >= 0)
        close(demo.file_fd);
    err = tt_loop_close(demo.loop);
    check(err == 0, "every handle closed (tt_loop_close: %s)", tt_strerror(err));
    printf("\n%d checks, %d failed\n", demo.checks, demo.failures);
    return demo.failures == 0 ? 0 : 1;
}
