/* The TLS tests' common set-up: a loop, the certificate set (certs.h), a tether
 * TLS server whose connections echo, sink or send, tether TLS clients, and a
 * record per connection (what arrived, its SHA-256, its TLS info at open, its
 * close) so each test is its scenario and its assertions, no preamble. Peers
 * outside tether (openssl, python3 tests/tls/peer.py, node tests/tls/peer.js)
 * are child processes (proc.h) on free loopback ports. */
#ifndef TT_TEST_TLS_ENV_H
#define TT_TEST_TLS_ENV_H

#include <stdbool.h>
#include <stdint.h>

#include "certs.h"
#include "proc.h"
#include "tether.h"

/* What a connection does. */
typedef struct te_plan {
    bool echo;              /* send back what arrives (reading paused while full) */
    uint64_t send;          /* send this many pattern bytes (uneven chunks) at open */
    bool end_after_send;    /* then tt_end */
    uint64_t end_after_got; /* tt_end once this many bytes arrived (0: never) */
    bool check_pattern;     /* what arrives must be the pattern from offset 0 */
    const char *file;       /* tt_send_file this file at open, then end */
    bool starttls;          /* server: "hello plain\n" -> "plain too\n", "STARTTLS\n" ->
                               "GO\n", upgrade with TE.starttls_ctx, "server secret 1\n",
                               then echo. client: sends "hello plain\nSTARTTLS\n", at
                               "GO\n" upgrades with TE.starttls_cctx (name localhost)
                               and sends "client secret 1\n" */
    bool starttls_late;     /* server, with starttls: "GO\n" goes by tt_server_broadcast
                               and the upgrade waits for te_start_tls_late(), called
                               between runs of the loop */
    const tt_frame_opts_t *frame; /* client: framing set at connect */
    int send_msgs;          /* framed: send this many messages (sizes vary) at open */
    int end_after_msgs;     /* framed: tt_end once this many messages arrived */
    uint64_t detect_within_ms; /* set at open */
    bool flood;             /* at open: send 64 KiB pieces, ignoring TT_SEND_FULL, until
                               a send fails (or 256 MiB); the failure in flood_rc */
} te_plan_t;

#define TE_HEAD 4096
typedef struct te_rec {
    tt_conn_t *conn;     /* NULL once closed */
    bool client;
    te_plan_t plan;
    bool opened, ended, closed;
    int errors, last_error;
    int info_rc;         /* tt_conn_tls_info at open */
    tt_tls_info_t info;
    uint64_t sent, got;
    long bad_at;         /* first offset off the pattern, -1 */
    char head[TE_HEAD];  /* the first bytes received, NUL-terminated */
    void *sha;           /* EVP_MD_CTX of everything received */
    char sha_hex[65];    /* its digest, filled at close */
    tt_close_info_t close;
    char reason[256];    /* close.reason, copied (close.reason is cleared) */
    tt_conn_stats_t stats; /* at close */
    size_t max_queued;   /* the highest tt_conn_queued_bytes seen after a send */
    bool upgraded;       /* STARTTLS: on_done came */
    bool said_plain;
    int msgs;            /* framed: messages received */
    long bad_msg;        /* framed: index of the first message not as sent, -1 */
    uint64_t open_ms, close_ms;
    int flood_rc;
} te_rec_t;

#define TE_MAX_RECS 64
typedef struct te_env {
    tt_loop_t *loop;
    th_certs_t certs;
    tt_server_t *srv;
    tt_addr_t addr;
    uint16_t port;
    tt_tls_ctx_t *sctx;    /* the server's context (freed at the end) */
    te_plan_t srv_plan;    /* what accepted connections do */
    te_rec_t recs[TE_MAX_RECS];
    int nrecs;
    int srv_opens, srv_closes, cli_opens, cli_closes;
    tt_tls_ctx_t *ctxs[16]; /* contexts made by the helpers, freed at the end */
    int nctxs;
    tt_tls_ctx_t *starttls_ctx;  /* STARTTLS server side */
    tt_tls_ctx_t *starttls_cctx; /* STARTTLS client side */
    tt_conn_t *late_conn;        /* starttls_late: the connection waiting to upgrade */
} te_env_t;

extern te_env_t TE;

/* Criterion .init / .fini: certificates, loop; everything closed and freed. */
void te_setup(void);
void te_teardown(void);

/* Contexts (freed by te_teardown). Fail the test when refused. */
tt_tls_ctx_t *te_server_ctx(const th_pair_t *p, const char *ca_file, bool verify_client,
                            const char *alpn, int min_version);
tt_tls_ctx_t *te_client_ctx(const char *ca_file, const th_pair_t *cert, const char *alpn,
                            int min_version);
/* Listen on 127.0.0.1 (ephemeral port) with `ctx` (NULL: plain) and `opts` as the
 * base; connections follow TE.srv_plan (set it first). */
void te_listen(tt_tls_ctx_t *ctx, const tt_server_opts_t *opts);
/* A tether client to 127.0.0.1:port following `plan`. */
te_rec_t *te_connect(uint16_t port, tt_tls_ctx_t *ctx, const char *servername,
                     const te_plan_t *plan, uint64_t hs_timeout_ms);
/* The server-side record of the n-th accepted connection (in accept order), or NULL. */
te_rec_t *te_srv_rec(int n);

/* The usual pieces: the server certificate's context, a client trusting the CA,
 * an echo server, and a round trip (n pattern bytes sent in uneven pieces, all
 * echoed back and checked, then tt_end: the client's close must be LOCAL_END). */
tt_tls_ctx_t *te_srv_ctx(void);
tt_tls_ctx_t *te_cli_ctx(void);
void te_echo_server(tt_tls_ctx_t *ctx, const tt_server_opts_t *opts);
te_rec_t *te_round_trip(uint16_t port, tt_tls_ctx_t *cctx, const char *name, uint64_t n,
                        uint64_t ms);

/* Run the loop until pred() holds, at most `ms`; false on time out. pred NULL:
 * until no handles remain. */
bool te_run_until(bool (*pred)(void), uint64_t ms);
/* starttls_late: upgrade TE.late_conn now, as the plan's STARTTLS does inside
 * on_data, and queue "server secret 1\n". *in_flight says whether a send request
 * of its plain bytes was in the kernel at the call (io_uring). 0 or -errno. */
int te_start_tls_late(bool *in_flight);
/* Run until `n` server connections / client connections have closed. */
bool te_run_srv_closes(int n, uint64_t ms);
bool te_run_cli_closes(int n, uint64_t ms);
/* Run until r opened (or closed) / has received n bytes (or closed). */
bool te_run_open(te_rec_t *r, uint64_t ms);
bool te_run_got(te_rec_t *r, uint64_t n, uint64_t ms);
/* Run for ms, or until a connection closes (returns true when none did). */
bool te_run_idle(uint64_t ms);
/* Run until the child exited (the loop keeps serving meanwhile). */
bool te_run_proc(th_proc_t *p, uint64_t ms);

/* Peers. Paths: tests/tls/peer.py and peer.js. argv lists end with NULL. */
const char *te_src(const char *rel);
/* python3 tests/tls/peer.py <args...> */
void te_python(th_proc_t *p, const char *tag, const char *const *args);
void te_node(th_proc_t *p, const char *tag, const char *const *args);
void te_openssl(th_proc_t *p, const char *tag, const char *const *args);
/* A peer of that kind with the arguments that follow (a NULL ends them; empty
 * strings are left out, for optional ones). */
enum { TE_PY, TE_NODE, TE_OPENSSL };
void te_peer(th_proc_t *p, int kind, const char *tag, ...);
/* A free port on 127.0.0.1, as text too. */
uint16_t te_port(char *text, size_t size);
/* "port" of the server as text (static buffer per call site: copy it). */
const char *te_srv_port(void);
/* SHA-256 of a file, hex. */
void te_sha256_file(const char *path, char hex[65]);
/* A value "key=value" from a peer's RESULT line ("" when absent; static). */
const char *te_result(const th_proc_t *p, const char *key);
/* Resident memory of this process, KiB. */
long te_rss_kib(void);

/* Size of the framed test message number i, and its content. */
size_t te_msg_size(int i);
void te_msg_fill(void *buf, int i);

/* Copy of the assertion helpers: the close kind's name for messages. */
#define TE_KIND(r) tt_close_kind_name((r)->close.kind)

#endif
