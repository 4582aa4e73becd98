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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tether.h"

static tt_loop_t *loop;

static void on_data(tt_conn_t *conn, const void *data, size_t len, size_t pending)
{
    (void)pending;
    /* TT_SEND_FULL is fine for an echo: the peer bounds what it has in flight. */
    if (tt_send(conn, data, len) < 0)
        tt_destroy(conn, 0);
}

static void on_signal(int sig)
{
    (void)sig;
    tt_loop_stop(loop); /* async-signal-safe: a flag and an eventfd write */
}

struct conn_list {
    tt_conn_t **v;
    size_t n, cap;
};

static int collect(tt_conn_t *conn, void *arg)
{
    struct conn_list *l = arg;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        tt_conn_t **v = realloc(l->v, cap * sizeof(*v));

        if (v == NULL)
            return 1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = conn;
    return 0;
}

int main(int argc, char **argv)
{
    tt_conn_handlers_t h = {.on_data = on_data};
    tt_tls_server_opts_t tls_opts;
    struct conn_list conns = {0};
    tt_server_opts_t opts;
    struct sigaction sa;
    tt_tls_ctx_t *ctx = NULL;
    tt_server_t *srv;
    tt_addr_t addr;
    int port, err;

    if (argc != 4 || (port = atoi(argv[1])) <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT CERT KEY\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    memset(&tls_opts, 0, sizeof(tls_opts));
    tls_opts.cert_file = argv[2];
    tls_opts.key_file = argv[3];
    tls_opts.min_version = TT_TLS_1_3;
    memset(&opts, 0, sizeof(opts));
    err = tt_tls_server_ctx(&tls_opts, &ctx);
    if (err == 0)
        err = tt_loop_init(&loop);
    if (err == 0)
        err = tt_addr_parse(&addr, "127.0.0.1", (uint16_t)port);
    opts.tls = ctx;
    if (err == 0)
        err = tt_server_listen(loop, &addr, &opts, &h, NULL, &srv);
    if (err < 0) {
        fprintf(stderr, "echo_tls_tether: %s\n", tt_strerror(err));
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    tt_loop_run(loop, TT_RUN_DEFAULT);

    /* Orderly shutdown: drop every connection, then let the loop deliver their
     * on_close and release them, so tt_loop_close() finds nothing open. */
    tt_server_foreach(srv, collect, &conns);
    for (size_t i = 0; i < conns.n; i++)
        tt_destroy(conns.v[i], 0);
    free(conns.v);
    tt_server_close(srv);
    tt_loop_run(loop, TT_RUN_DEFAULT);
    tt_tls_ctx_free(ctx); /* the connections held references until they closed */
    err = tt_loop_close(loop);
    if (err < 0) {
        fprintf(stderr, "echo_tls_tether: close: %s\n", tt_strerror(err));
        return 1;
    }
    return 0;
}
