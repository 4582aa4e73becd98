/* Subscribe to a Redis channel with hiredis on a tether loop, print each message,
 * stop cleanly on Ctrl-C or SIGTERM (a signal watch, on the same loop).
 *
 *     redis_subscribe [HOST:PORT] [CHANNEL]      (default 127.0.0.1:6379 news)
 *     redis-cli publish news hello               (from another terminal)
 *
 * Build: cc redis_subscribe.c $(pkg-config --cflags --libs tether hiredis) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tether.h"
#include "tether/hiredis.h"

static redisAsyncContext *ac;
static tt_signal_t *sig;
static int exit_status = 0; /* the exit status: 1 once Redis went away on its own */

static void on_message(redisAsyncContext *c, void *r, void *priv)
{
    redisReply *reply = r;
    (void)c, (void)priv;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    if (strcmp(reply->element[0]->str, "subscribe") == 0)
        printf("subscribed to %s\n", reply->element[1]->str);
    else if (strcmp(reply->element[0]->str, "message") == 0)
        printf("%s: %s\n", reply->element[1]->str, reply->element[2]->str);
    fflush(stdout);
}

/* Either way the context ends (our disconnect, or Redis going away), hiredis frees
 * it and its watch; the signal watch goes too, and the loop has nothing left. */
static void on_disconnect(const redisAsyncContext *c, int status)
{
    if (status != REDIS_OK) {
        fprintf(stderr, "redis: %s\n", c->errstr);
        exit_status = 1;
    }
    ac = NULL;
    tt_signal_close(sig);
}

static void on_signal(tt_signal_t *s, int signum, void *data)
{
    (void)s, (void)data;
    fprintf(stderr, "signal %d: unsubscribing\n", signum);
    redisAsyncDisconnect(ac); /* on_disconnect follows */
}

int main(int argc, char **argv)
{
    const char *hostport = argc > 1 ? argv[1] : "127.0.0.1:6379";
    const char *channel = argc > 2 ? argv[2] : "news";
    char host[256];
    const char *colon = strrchr(hostport, ':');
    tt_loop_t *loop;
    int err;

    if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host)) {
        fprintf(stderr, "usage: %s [HOST:PORT] [CHANNEL]\n", argv[0]);
        return 2;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    if ((err = tt_loop_init(&loop)) < 0) {
        fprintf(stderr, "loop: %s\n", tt_strerror(err));
        return 1;
    }
    ac = redisAsyncConnect(host, atoi(colon + 1));
    if (ac == NULL || ac->err) {
        fprintf(stderr, "redis %s: %s\n", hostport, ac != NULL ? ac->errstr : "out of memory");
        return 1;
    }
    if ((err = tt_redis_attach(loop, ac)) < 0 ||
        (err = tt_signal_init(loop, &sig, on_signal, NULL)) < 0 ||
        (err = tt_signal_start(sig, SIGINT)) < 0 || (err = tt_signal_start(sig, SIGTERM)) < 0) {
        fprintf(stderr, "tether: %s\n", tt_strerror(err));
        return 1;
    }
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncCommand(ac, on_message, NULL, "SUBSCRIBE %s", channel);
    tt_loop_run(loop, TT_RUN_DEFAULT); /* until the signal, or Redis goes away */
    return tt_loop_close(loop) == 0 ? exit_status : 1;
}
