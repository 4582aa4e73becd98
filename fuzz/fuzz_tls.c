/* FUZZ_WHOLE_LIBRARY: run.sh links every source of src/ (and the test
 * certificate factory) into this target.
 *
 * The TLS glue under hostile input: a tether loop with a TLS server on loopback;
 * each input is fed by a plain client socket as the bytes a TLS client would
 * send (ClientHello, records, anything), cut at fuzz-chosen points, each piece
 * read by the server on its own, then ended by a FIN or an RST (or, with the
 * server ending first, a close_notify from tether). Invariants: no crash, no
 * leak (LeakSanitizer at exit, and the loop's handle count back to where it
 * was), exactly one on_close per accepted connection, on_open never after
 * on_close, and a close kind that is one of the kinds a stream can end with.
 *
 * Input layout: byte 0 flags (bit 0: RST instead of FIN; bit 1: the server calls
 * tt_end at on_open; bit 2: the server destroys the connection after its first
 * read; bit 3: the server echoes what it reads), bytes 1..8 the piece sizes
 * (0 = 1 byte .. 255; cycled), the rest the stream. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../tests/support/certs.h"
#include "fuzz_check.h"
#include "tether.h"

static tt_loop_t *L;
static tt_server_t *SRV;
static tt_addr_t ADDR;
static size_t BASE_HANDLES;

typedef struct fz_conn {
    int opens, closes, reads;
} fz_conn_t;

static int accepted, closed;
static unsigned flags;

static fz_conn_t *state(tt_conn_t *c)
{
    fz_conn_t *s = tt_conn_get_data(c);
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        FZ_CHECK(s != NULL);
        tt_conn_set_data(c, s);
        accepted++;
    }
    return s;
}

static void on_open(tt_conn_t *c)
{
    fz_conn_t *s = state(c);
    FZ_CHECK(s->closes == 0);
    s->opens++;
    FZ_CHECK(s->opens == 1);
    tt_tls_info_t info;
    FZ_CHECK(tt_conn_tls_info(c, &info) == 0 && info.done && info.server);
    if (flags & 2)
        tt_end(c, "bye", 3);
}

static void on_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    fz_conn_t *s = state(c);
    (void)pending;
    FZ_CHECK(s->opens == 1 && s->closes == 0);
    s->reads++;
    if (flags & 8)
        tt_send(c, d, n);
    if ((flags & 4) && s->reads == 1)
        tt_destroy(c, 0);
}

static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    fz_conn_t *s = state(c);
    s->closes++;
    FZ_CHECK(s->closes == 1);
    FZ_CHECK(info->reason != NULL);
    FZ_CHECK(info->kind <= TT_CLOSE_TLS_ERROR);
    FZ_CHECK(info->bytes_written + info->bytes_unsent <= info->bytes_queued);
    /* Not opened: only a handshake ending, a reset, our own destroy or a timeout. */
    if (s->opens == 0)
        FZ_CHECK(info->kind == TT_CLOSE_TLS_HANDSHAKE_FAILED ||
                 info->kind == TT_CLOSE_TLS_HANDSHAKE_TIMEOUT ||
                 info->kind == TT_CLOSE_PEER_RESET || info->kind == TT_CLOSE_IO_ERROR ||
                 info->kind == TT_CLOSE_LOCAL_DESTROY);
    closed++;
    free(s);
    tt_conn_set_data(c, NULL);
}

static const tt_conn_handlers_t H = {.on_open = on_open, .on_data = on_data,
                                     .on_close = on_close};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static th_certs_t certs;
    tt_tls_ctx_t *ctx = NULL;
    (void)argc;
    (void)argv;
    FZ_CHECK(th_certs_make(&certs) == 0);
    tt_tls_server_opts_t o = {.cert_file = certs.server.cert, .key_file = certs.server.key,
                              .alpn = "h2,http/1.1"};
    FZ_CHECK(tt_tls_server_ctx(&o, &ctx) == 0);
    FZ_CHECK(tt_tls_ctx_add_cert(ctx, certs.other.cert, certs.other.key) == 0);
    th_certs_remove(&certs); /* loaded: the files are no longer needed */
    FZ_CHECK(tt_loop_init(&L) == 0);
    tt_addr_t any;
    FZ_CHECK(tt_addr_parse(&any, "127.0.0.1", 0) == 0);
    tt_server_opts_t so = {.tls = ctx, .tls_handshake_timeout_ms = 300};
    FZ_CHECK(tt_server_listen(L, &any, &so, &H, NULL, &SRV) == 0);
    tt_tls_ctx_free(ctx); /* the server holds its own reference */
    FZ_CHECK(tt_server_addr(SRV, &ADDR) == 0);
    BASE_HANDLES = tt_loop_handle_count(L);
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Let the server take what is there: a few non-blocking rounds. */
static void turn(int fd)
{
    char sink[65536];
    for (int i = 0; i < 4; i++) {
        tt_loop_run(L, TT_RUN_NOWAIT);
        while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    flags = data[0];
    const uint8_t *cuts = data + 1;
    const uint8_t *stream = data + 9;
    size_t len = size - 9;
    accepted = closed = 0;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FZ_CHECK(fd >= 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    FZ_CHECK(connect(fd, &ADDR.u.sa, ADDR.len) == 0);
    turn(fd); /* accepted */
    for (size_t off = 0, i = 0; off < len; i++) {
        size_t n = (size_t)cuts[i % 8] + 1;
        if (n > len - off)
            n = len - off;
        if (send(fd, stream + off, n, MSG_NOSIGNAL) < 0)
            break; /* the server is gone already */
        off += n;
        turn(fd);
    }
    if (flags & 1) {
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
        fd = -1;
    } else {
        shutdown(fd, SHUT_WR);
    }
    /* Whatever it was, the connection ends: by our FIN/RST, a failure, or the
     * handshake timeout. */
    uint64_t end = now_ms() + 3000;
    while ((accepted == 0 || closed < accepted) && now_ms() < end) {
        tt_loop_run(L, TT_RUN_ONCE);
        if (fd >= 0) {
            char sink[65536];
            while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
            }
        }
    }
    FZ_CHECK(accepted == 1);
    FZ_CHECK(closed == 1);
    for (int i = 0; i < 4; i++)
        tt_loop_run(L, TT_RUN_NOWAIT);
    FZ_CHECK(tt_server_conn_count(SRV) == 0);
    FZ_CHECK(tt_loop_handle_count(L) == BASE_HANDLES);
    if (fd >= 0)
        close(fd);
    return 0;
}
