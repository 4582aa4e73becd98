/* TCP clients: non-blocking connect with a timeout. Name resolution sits above
 * this (resolver); here the address is numeric. */
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stream/conn.h"
#include "endpoint/connector.h"
#include "proto/proxy_conn.h"
#include "proto/tls.h"

int tt__connect_tls_check(const tt_connect_opts_t *o, const char *host, const tt_addr_t *addr)
{
    if (o->tls == NULL)
        return 0;
    if (tt__tls_ctx_is_server(o->tls) || o->tls_handshake_timeout_ms > TT_TIMEOUT_MAX)
        return -EINVAL;
    /* A certificate that can be matched to nothing proves nothing. */
    if (o->tls_servername == NULL && host == NULL && (addr == NULL || tt_addr_is_unix(addr)) &&
        !tt__tls_ctx_insecure(o->tls))
        return -EINVAL;
    return 0;
}

int tt__connect_tls(tt_conn_t *c, const tt_connect_opts_t *o, const char *host,
                    const tt_addr_t *addr)
{
    char ip[TT_ADDR_STRLEN];
    const char *name = o->tls_servername != NULL ? o->tls_servername : host;

    if (o->tls == NULL)
        return 0;
    ip[0] = '\0';
    if (name == NULL && addr != NULL && !tt_addr_is_unix(addr))
        tt_addr_format_host(addr, ip, sizeof(ip));
    return tt__tls_apply(c, o->tls, name, ip[0] != '\0' ? ip : NULL, o->tls_handshake_timeout_ms);
}

int tt_connect(tt_loop_t *loop, const tt_addr_t *addr, const tt_connect_opts_t *opts,
               const tt_conn_handlers_t *h, void *data, tt_conn_t **out)
{
    tt_connect_opts_t o = {0};
    tt__handlers_t *hs;
    tt_conn_t *c;
    int fd, err;

    if (loop == NULL || addr == NULL || out == NULL || addr->len == 0)
        return -EINVAL;
    if (addr->u.sa.sa_family != AF_INET && addr->u.sa.sa_family != AF_INET6 &&
        addr->u.sa.sa_family != AF_UNIX)
        return -EAFNOSUPPORT;
    if (opts != NULL)
        o = *opts;
    if (tt_addr_is_unix(addr) && (o.bind_addr != NULL || o.bind_device != NULL))
        return -EOPNOTSUPP; /* a Unix client binds no address and no device */
    if (o.timeout_ms > TT_TIMEOUT_MAX ||
        (o.bind_addr != NULL && o.bind_addr->u.sa.sa_family != addr->u.sa.sa_family))
        return -EINVAL;
    err = tt__connect_check_local(&o, addr->u.sa.sa_family); /* -ENODEV: no such device */
    if (err == 0)
        err = tt__connect_tls_check(&o, NULL, addr);
    if (err < 0)
        return err;
    err = tt__proxy_client_check(&o, addr);
    if (err < 0)
        return err;

    fd = tt__connect_socket(loop, addr, &o);
    if (fd < 0)
        return fd; /* vetoed or failed: no connection was made */
    hs = tt__handlers_new(h);
    if (hs == NULL) {
        err = -ENOMEM;
        goto fail_fd;
    }
    c = tt__conn_new(loop, fd, hs);
    tt__handlers_unref(hs); /* the connection holds the only reference now */
    if (c == NULL) {
        err = -ENOMEM;
        goto fail_fd;
    }
    c->data = data;
    *out = c;
    err = tt__connect_tls(c, &o, NULL, addr);
    if (err == 0 && tt__proxy_client_apply(c, &o) < 0)
        err = -ENOMEM;
    if (err < 0) { /* -ENOMEM: the connection exists, so it closes through the loop */
        c->state = TT_STATE_CONNECTING;
        tt__conn_close(c, TT_CLOSE_CONNECT_FAILED, err);
        return 0;
    }

    if (connect(fd, &addr->u.sa, addr->len) == 0) {
        /* A Unix connect is done or failed at once (EAGAIN: the backlog is full). */
        if (tt_addr_is_unix(addr))
            tt__conn_mark_unix(c, NULL); /* -ENOMEM: no credentials kept, that is all */
        tt__conn_connecting(c, true, 0);
    } else if (errno == EINPROGRESS) {
        tt__conn_connecting(c, false, o.timeout_ms);
    } else {
        /* Refused or unreachable at once: still reported from the loop. */
        err = -errno;
        c->state = TT_STATE_CONNECTING;
        tt__conn_close(c, TT_CLOSE_CONNECT_FAILED, err);
    }
    return 0;

fail_fd:
    close(fd);
    return err;
}
