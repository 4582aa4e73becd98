/* Rooms across nodes: groups bound to Redis pub/sub channels (hiredis, on the loop
 * through the adapter of include/tether/hiredis.h).
 *
 * Two links per node: one subscribed to every bound channel (a subscribed
 * connection can do nothing else), one that publishes. A broadcast on a bound
 * group is delivered locally first, then published once as
 *
 *   "tt1:<node>:<sender id>:" payload
 *
 * Every node delivers what arrives on a channel to its local members, except the
 * node it came from (it delivered already): so each member gets each message
 * once, and the sender, a member of its own node only, never gets its own.
 * Nothing is queued while a link is down: what cannot be published now is
 * counted lost. The links come back with doubling delays, and the subscribed one
 * subscribes to every channel again. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "ops/broadcast.h"
#include "tether.h"
#include "tether/hiredis.h"

#define MAX_CHANNEL 200
#define DEFAULT_PORT 6379
#define DEFAULT_MIN_DELAY 100
#define DEFAULT_MAX_DELAY 5000
#define DEFAULT_IN_FLIGHT 10000

typedef struct binding binding_t;

struct tt_cluster {
    tt_loop_t *loop;
    tt_cluster_opts_t o;
    char host[64];
    char node[17];
    redisAsyncContext *pub, *sub;
    bool pub_up, sub_up;
    bool closing;
    bool in_close; /* inside tt_cluster_close: not freed under it */
    size_t in_flight;
    uint64_t delay_ms; /* the next reconnect's wait */
    tt_timer_t *timer; /* reconnects */
    binding_t *bindings;
    tt_cluster_stats_t st;
};

struct binding {
    binding_t *next;
    tt_cluster_t *cl;
    tt_group_t *g;
    tt_cluster_remote_cb on_remote; /* NULL: deliver to the members */
    void *arg;
    size_t chan_len;
    char chan[MAX_CHANNEL + 1];
};

static void connect_links(tt_cluster_t *cl);

/* ---- lifetime ------------------------------------------------------------------------ */

static void maybe_free(tt_cluster_t *cl)
{
    if (cl->closing && !cl->in_close && cl->pub == NULL && cl->sub == NULL)
        free(cl);
}

static void schedule_reconnect(tt_cluster_t *cl)
{
    if (cl->closing || tt_timer_is_active(cl->timer))
        return;
    tt_timer_start(cl->timer, cl->delay_ms, 0);
    cl->delay_ms *= 2;
    if (cl->delay_ms > cl->o.max_delay_ms)
        cl->delay_ms = cl->o.max_delay_ms;
}

static void timer_cb(tt_timer_t *t, void *data)
{
    (void)t;
    connect_links(data);
}

/* ---- the subscribed link ------------------------------------------------------------- */

static void deliver(tt_cluster_t *cl, const char *chan, size_t chan_len, const char *msg,
                    size_t len)
{
    /* "tt1:<node>:<sender>:" then the payload. */
    const char *p = msg, *end = msg + len;
    if (len < 4 + 16 + 1 || memcmp(p, "tt1:", 4) != 0 || p[4 + 16] != ':')
        return; /* not ours: someone else publishes on the channel */
    if (memcmp(p + 4, cl->node, 16) == 0)
        return; /* our own: delivered here already */
    p += 4 + 16 + 1;
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (colon == NULL)
        return;
    p = colon + 1;
    for (binding_t *b = cl->bindings; b != NULL; b = b->next) {
        if (b->chan_len == chan_len && memcmp(b->chan, chan, chan_len) == 0) {
            if (b->on_remote != NULL)
                b->on_remote(b->g, p, (size_t)(end - p), b->arg);
            else
                tt__group_deliver(b->g, p, (size_t)(end - p), NULL);
            cl->st.received++;
            if (cl->closing)
                return; /* the callback closed the cluster */
        }
    }
}

static void sub_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    tt_cluster_t *cl = privdata;
    redisReply *reply = r;

    (void)ac;
    if (reply == NULL || cl->closing || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    redisReply *kind = reply->element[0], *chan = reply->element[1], *msg = reply->element[2];
    if (kind->type == REDIS_REPLY_STRING && strcmp(kind->str, "message") == 0 &&
        chan->type == REDIS_REPLY_STRING && msg->type == REDIS_REPLY_STRING)
        deliver(cl, chan->str, chan->len, msg->str, msg->len);
}

static void subscribe(tt_cluster_t *cl, binding_t *b)
{
    if (cl->sub != NULL)
        redisAsyncCommand(cl->sub, sub_cb, cl, "SUBSCRIBE %b", b->chan, b->chan_len);
}

/* ---- connecting ------------------------------------------------------------------------ */

static void on_connect(const redisAsyncContext *ac, int status)
{
    tt_cluster_t *cl = ac->data;
    bool is_pub = ac == cl->pub;

    if (status != REDIS_OK) { /* hiredis frees the context after this */
        if (is_pub)
            cl->pub = NULL;
        else
            cl->sub = NULL;
        if (cl->closing)
            maybe_free(cl);
        else
            schedule_reconnect(cl);
        return;
    }
    if (is_pub)
        cl->pub_up = true;
    else
        cl->sub_up = true;
    cl->st.reconnects++;
    if (cl->pub_up && cl->sub_up)
        cl->delay_ms = cl->o.min_delay_ms; /* both back: the backoff starts over */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    tt_cluster_t *cl = ac->data;

    (void)status;
    if (ac == cl->pub) {
        cl->pub = NULL;
        cl->pub_up = false;
        cl->in_flight = 0; /* their replies came as NULL: counted then */
    } else {
        cl->sub = NULL;
        cl->sub_up = false;
    }
    if (cl->closing)
        maybe_free(cl);
    else
        schedule_reconnect(cl);
}

static redisAsyncContext *open_link(tt_cluster_t *cl)
{
    redisAsyncContext *ac = redisAsyncConnect(cl->host, cl->o.port);

    if (ac == NULL)
        return NULL;
    if (ac->err != 0 || tt_redis_attach(cl->loop, ac) < 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = cl;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

static void connect_links(tt_cluster_t *cl)
{
    if (cl->closing)
        return;
    if (cl->pub == NULL)
        cl->pub = open_link(cl);
    if (cl->sub == NULL && (cl->sub = open_link(cl)) != NULL)
        for (binding_t *b = cl->bindings; b != NULL; b = b->next)
            subscribe(cl, b); /* queued until connected: sent first */
    if (cl->pub == NULL || cl->sub == NULL)
        schedule_reconnect(cl);
}

/* ---- publishing -------------------------------------------------------------------------- */

static void pub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    tt_cluster_t *cl = privdata;

    (void)ac;
    if (cl->in_flight > 0)
        cl->in_flight--;
    if (r == NULL) { /* the link went before Redis answered: it may not have gone out */
        cl->st.lost++;
        if (cl->st.published > 0)
            cl->st.published--;
    }
    maybe_free(cl);
}

static void publish(void *arg, const void *buf, size_t len, const tt_conn_t *except)
{
    binding_t *b = arg;
    tt_cluster_t *cl = b->cl;
    char head[64];
    int hl;

    if (!cl->pub_up || cl->in_flight >= cl->o.max_in_flight) {
        cl->st.lost++;
        return;
    }
    hl = snprintf(head, sizeof(head), "tt1:%s:%" PRIu64 ":", cl->node,
                  except != NULL ? tt_conn_id(except) : 0);
    char *msg = malloc((size_t)hl + len);
    if (msg == NULL) {
        cl->st.lost++;
        return;
    }
    memcpy(msg, head, (size_t)hl);
    if (len > 0)
        memcpy(msg + hl, buf, len);
    if (redisAsyncCommand(cl->pub, pub_reply, cl, "PUBLISH %b %b", b->chan, b->chan_len, msg,
                          (size_t)hl + len) == REDIS_OK) {
        cl->in_flight++;
        cl->st.published++;
    } else {
        cl->st.lost++;
    }
    free(msg);
}

static void unbind(void *arg)
{
    binding_t *b = arg, **pp;
    tt_cluster_t *cl = b->cl;

    for (pp = &cl->bindings; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    /* Other groups may share the channel: the subscription stays while any does. */
    bool shared = false;
    for (binding_t *o = cl->bindings; o != NULL; o = o->next)
        shared |= o->chan_len == b->chan_len && memcmp(o->chan, b->chan, b->chan_len) == 0;
    if (!shared && cl->sub != NULL && !cl->closing)
        redisAsyncCommand(cl->sub, NULL, NULL, "UNSUBSCRIBE %b", b->chan, b->chan_len);
    free(b);
}

/* ---- public ------------------------------------------------------------------------------- */

int tt_cluster_start(tt_loop_t *loop, const tt_cluster_opts_t *o, tt_cluster_t **out)
{
    tt_cluster_t *cl;
    uint8_t rnd[8];

    if (loop == NULL || out == NULL)
        return -EINVAL;
    if (o != NULL && ((o->host != NULL && strlen(o->host) >= sizeof(cl->host)) ||
                      o->min_delay_ms > TT_TIMEOUT_MAX || o->max_delay_ms > TT_TIMEOUT_MAX))
        return -EINVAL;
    if ((cl = calloc(1, sizeof(*cl))) == NULL)
        return -ENOMEM;
    if (o != NULL)
        cl->o = *o;
    snprintf(cl->host, sizeof(cl->host), "%s", cl->o.host != NULL ? cl->o.host : "127.0.0.1");
    cl->o.host = cl->host;
    if (cl->o.port == 0)
        cl->o.port = DEFAULT_PORT;
    if (cl->o.min_delay_ms == 0)
        cl->o.min_delay_ms = DEFAULT_MIN_DELAY;
    if (cl->o.max_delay_ms == 0)
        cl->o.max_delay_ms = DEFAULT_MAX_DELAY;
    if (cl->o.max_delay_ms < cl->o.min_delay_ms)
        cl->o.max_delay_ms = cl->o.min_delay_ms;
    if (cl->o.max_in_flight == 0)
        cl->o.max_in_flight = DEFAULT_IN_FLIGHT;
    cl->delay_ms = cl->o.min_delay_ms;
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        free(cl);
        return -EIO;
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(cl->node + 2 * i, 3, "%02x", rnd[i]);
    memcpy(cl->st.node, cl->node, sizeof(cl->node));
    cl->loop = loop;
    int err = tt_timer_init(loop, &cl->timer, timer_cb, cl);
    if (err < 0) {
        free(cl);
        return err;
    }
    connect_links(cl);
    *out = cl;
    return 0;
}

int tt_group_bind(tt_group_t *g, tt_cluster_t *cl, const char *channel)
{
    return tt_group_bind_cb(g, cl, channel, NULL, NULL);
}

int tt_group_bind_cb(tt_group_t *g, tt_cluster_t *cl, const char *channel,
                     tt_cluster_remote_cb on_remote, void *arg)
{
    binding_t *b;
    size_t len;
    int err;

    if (g == NULL || cl == NULL || channel == NULL || cl->closing)
        return -EINVAL;
    len = strlen(channel);
    if (len == 0 || len > MAX_CHANNEL)
        return -EINVAL;
    if ((b = calloc(1, sizeof(*b))) == NULL)
        return -ENOMEM;
    b->cl = cl;
    b->g = g;
    b->on_remote = on_remote;
    b->arg = arg;
    b->chan_len = len;
    memcpy(b->chan, channel, len);
    tt__group_remote_t r = {.publish = publish, .unbind = unbind, .arg = b};
    if ((err = tt__group_set_remote(g, &r)) < 0) {
        free(b);
        return err;
    }
    b->next = cl->bindings;
    cl->bindings = b;
    subscribe(cl, b);
    return 0;
}

int tt_cluster_close(tt_cluster_t *cl)
{
    if (cl == NULL || cl->closing)
        return -EINVAL;
    cl->closing = true;
    while (cl->bindings != NULL) {
        binding_t *b = cl->bindings;
        cl->bindings = b->next;
        tt__group_set_remote(b->g, NULL);
        free(b);
    }
    tt_timer_close(cl->timer);
    /* Freed at once, unless we are inside one of its callbacks: then hiredis
     * frees it when the callback returns, and its disconnect callback clears the
     * pointer; the last one gone frees us. */
    cl->in_close = true;
    redisAsyncContext **links[2] = {&cl->pub, &cl->sub};
    for (int i = 0; i < 2; i++) {
        redisAsyncContext *ac = *links[i];
        if (ac == NULL)
            continue;
        bool deferred = (ac->c.flags & REDIS_IN_CALLBACK) != 0;
        redisAsyncFree(ac);
        if (!deferred)
            *links[i] = NULL;
    }
    cl->in_close = false;
    maybe_free(cl);
    return 0;
}

int tt_cluster_get_stats(const tt_cluster_t *cl, tt_cluster_stats_t *out)
{
    if (cl == NULL || out == NULL)
        return -EINVAL;
    *out = cl->st;
    out->pub_up = cl->pub_up;
    out->sub_up = cl->sub_up;
    return 0;
}
