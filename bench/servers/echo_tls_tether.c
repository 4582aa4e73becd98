/* tether TLS echo server, using only the public header: a server context from the
 * PEM files, tt_server_opts_t.tls, and on_data handing the decrypted bytes straight
 * to tt_send(), as echo_tether.c does in plain.
 *
 * tether's server context takes no cipher list: the bench pins TLS 1.3 here
 * (min_version) and the client offers only TLS_AES_128_GCM_SHA256 and X25519,
 * which a TLS 1.3 server must choose from; bench/tlsload reports what was agreed.
 * Session tickets are tether's default (on).
 *
 * usage: echo_tls_tether PORT CERT KEY   listens on 127.0.0.1:PORT; SIGINT/SIGTERM
 *   end it. TETHER_BACKEND=io_uring runs it on the io_uring backend. */
#include "tether_main.h"

static void on_data(tt_conn_t *conn, const void *data, size_t len, size_t pending)
{
    (void)pending;
    /* TT_SEND_FULL is fine for an echo: the peer bounds what it has in flight. */
    if (tt_send(conn, data, len) < 0)
        tt_destroy(conn, 0);
}

int main(int argc, char **argv)
{
    tt_conn_handlers_t h = {.on_data = on_data};
    tt_tls_server_opts_t tls_opts;
    tt_server_opts_t opts;
    tt_tls_ctx_t *ctx = NULL;
    int err;

    if (argc != 4 || serve_port(argv[1]) == 0) {
        fprintf(stderr, "usage: %s PORT CERT KEY\n", argv[0]);
        return 2;
    }
    memset(&tls_opts, 0, sizeof(tls_opts));
    tls_opts.cert_file = argv[2];
    tls_opts.key_file = argv[3];
    tls_opts.min_version = TT_TLS_1_3;
    err = tt_tls_server_ctx(&tls_opts, &ctx);
    if (err < 0) {
        fprintf(stderr, "echo_tls_tether: %s\n", tt_strerror(err));
        return 1;
    }
    memset(&opts, 0, sizeof(opts));
    opts.tls = ctx;
    if (serve_start("echo_tls_tether", argv[1], &opts, &h) < 0)
        return 1;
    serve_run();
    tt_tls_ctx_free(ctx); /* the connections held references until they closed */
    return serve_close("echo_tls_tether");
}
