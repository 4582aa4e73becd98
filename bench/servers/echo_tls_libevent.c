/* libevent TLS echo server: bufferevent_openssl over each accepted socket, the read
 * callback moving the input buffer to the output buffer, as echo_libevent.c does
 * in plain. The SSL_CTX is set up the way the bench pins every server: TLS 1.3
 * only, the cipher suite TLS_AES_128_GCM_SHA256, the group X25519, OpenSSL's
 * default session tickets (stateless, two per handshake), and
 * SSL_MODE_RELEASE_BUFFERS so an idle connection gives its record buffers back
 * (the peer at its leanest, as Node runs by default).
 *
 * usage: echo_tls_libevent PORT CERT KEY   listens on 127.0.0.1:PORT; SIGINT/SIGTERM
 * end it. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static SSL_CTX *ctx;

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        ERR_clear_error(); /* one connection's failure is not the next one's */
        bufferevent_free(bev); /* BEV_OPT_CLOSE_ON_FREE: the SSL and the socket too */
    }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct event_base *base = evconnlistener_get_base(l);
    struct bufferevent *bev;
    SSL *ssl;
    int one = 1;

    (void)sa;
    (void)salen;
    (void)arg;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ssl = SSL_new(ctx);
    if (ssl == NULL) {
        evutil_closesocket(fd);
        return;
    }
    bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        return;
    }
    /* A client that closes without close_notify is an EOF here, not an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    bufferevent_setcb(bev, read_cb, NULL, event_cb, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct event_base *base;
    struct evconnlistener *l;
    struct event *si, *st;
    int port;

    if (argc != 4 || (port = atoi(argv[1])) <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT CERT KEY\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") ||
        !SSL_CTX_set1_groups_list(ctx, "X25519") ||
        SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    base = event_base_new();
    if (base == NULL)
        return 1;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l = evconnlistener_new_bind(base, accept_cb, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE,
                                -1, (struct sockaddr *)&sin, sizeof(sin));
    if (l == NULL) {
        perror("echo_tls_libevent: listen");
        return 1;
    }
    si = evsignal_new(base, SIGINT, signal_cb, base);
    st = evsignal_new(base, SIGTERM, signal_cb, base);
    event_add(si, NULL);
    event_add(st, NULL);
    event_base_dispatch(base);
    /* Bufferevents still open at shutdown are reclaimed with the process. */
    evconnlistener_free(l);
    event_free(si);
    event_free(st);
    event_base_free(base);
    SSL_CTX_free(ctx);
    return 0;
}
