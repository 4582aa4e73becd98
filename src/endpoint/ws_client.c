/* WebSocket clients: a ws:// URL connected by name (connector.c) and upgraded by
 * the WebSocket layer in its client role (proto/ws.c). The reconnecting client
 * (reconnect.c) comes through here too, once per attempt, with options compiled
 * once. */
#include <errno.h>

#include "endpoint/connector.h"
#include "proto/ws.h"
#include "stream/conn.h"

/* TLS under the WebSocket layer, decided here and nowhere else: wss:// runs over
 * the caller's client context (connect.tls), or one made for this connection
 * that trusts the system's store (*made: the caller drops it once the connection
 * holds its own reference). The name verified and sent is the URL's host unless
 * connect.tls_servername says otherwise (tt_connect_host's rule); the upgrade
 * request waits in the queue until the handshake is done. */
int tt__ws_transport(const struct tt__ws_cfg *cfg, tt_connect_opts_t *co, tt_tls_ctx_t **made)
{
    uint16_t port;
    bool secure;
    (void)tt__ws_cfg_host(cfg, &port, &secure);

    *made = NULL;
    if (!secure)
        return co->tls != NULL ? -EINVAL : 0; /* ws:// is plain: TLS is asked for with wss:// */
    if (co->tls == NULL) {
        tt_tls_client_opts_t to = {0};
        int err = tt_tls_client_ctx(&to, made);
        if (err < 0)
            return err;
        co->tls = *made;
    }
    return 0;
}

int tt__ws_connect_cfg(tt_loop_t *loop, struct tt__ws_cfg *cfg, const tt_connect_opts_t *copts,
                       const tt_conn_handlers_t *h, void *data, tt_conn_t **out)
{
    tt_connect_opts_t co = copts != NULL ? *copts : (tt_connect_opts_t){0};
    uint16_t port;
    bool secure;
    const char *host = tt__ws_cfg_host(cfg, &port, &secure);
    tt_conn_t *c;
    int err;

    tt_tls_ctx_t *made;
    if ((err = tt__ws_transport(cfg, &co, &made)) < 0)
        return err;
    err = tt_connect_host(loop, host, port, &co, h, data, &c);
    tt_tls_ctx_free(made); /* the connection keeps its own reference */
    if (err < 0)
        return err;
    *out = c;
    err = tt__ws_client_apply(c, cfg);
    if (err < 0)
        tt__conn_close(c, TT_CLOSE_IO_ERROR, err); /* it exists: it closes through the loop */
    return 0;
}

int tt_ws_connect(tt_loop_t *loop, const char *url, const tt_ws_client_opts_t *opts,
                  const tt_conn_handlers_t *h, void *data, tt_conn_t **out)
{
    struct tt__ws_cfg *cfg;
    int err;

    if (loop == NULL || url == NULL || out == NULL)
        return -EINVAL;
    if ((err = tt__ws_client_cfg_new(&cfg, url, opts)) < 0)
        return err;
    err = tt__ws_connect_cfg(loop, cfg, opts != NULL ? &opts->connect : NULL, h, data, out);
    tt__ws_cfg_free(cfg); /* the connection holds its own reference */
    return err;
}
