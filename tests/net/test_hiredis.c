/* hiredis' asynchronous API on a tether loop (include/tether/hiredis.h), against a
 * real redis-server the test starts on a free loopback port: a pub/sub round trip,
 * a thousand pipelined commands, the server killed under a subscriber (an error
 * reported, nothing left on the loop) and started again. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "harness.h"
#include "redis.h"
#include "tether/hiredis.h"

static tt_loop_t *loop;
static th_redis_t redis;

static void setup(void)
{
    int err = th_redis_start(&redis, 0);
    if (err == -ENOENT)
        cr_skip_test("no redis-server");
    cr_assert_eq(err, 0, "redis-server did not start: %s", strerror(-err));
    cr_assert_eq(tt_loop_init(&loop), 0);
}

static void teardown(void)
{
    th_redis_stop(&redis);
    if (loop != NULL) {
        tt_loop_run(loop, TT_RUN_NOWAIT);
        cr_assert_eq(tt_loop_close(loop), 0, "left on the loop: %zu handles",
                     tt_loop_handle_count(loop));
    }
}

TestSuite(hiredis, .init = setup, .fini = teardown, .timeout = 60);

static redisAsyncContext *connect_attached(void)
{
    redisAsyncContext *ac = redisAsyncConnect("127.0.0.1", redis.port);
    cr_assert_not_null(ac);
    cr_assert_eq(ac->err, 0, "%s", ac->errstr);
    cr_assert_eq(tt_redis_attach(loop, ac), 0);
    return ac;
}

/* ---- pub/sub -------------------------------------------------------------------- */

static struct {
    redisAsyncContext *sub, *pub;
    char got[64];
    int subscribed, messages, disconnects, disconnect_status;
    char disconnect_err[128];
} P;

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    P.disconnects++;
    P.disconnect_status = status;
    snprintf(P.disconnect_err, sizeof(P.disconnect_err), "%s", ac->errstr);
}

static void on_published(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    (void)priv;
    cr_assert_not_null(reply);
    cr_assert_eq(reply->type, REDIS_REPLY_INTEGER);
    cr_assert_eq(reply->integer, 1, "receivers: %lld", reply->integer);
    redisAsyncDisconnect(ac);
}

static void on_sub(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    (void)priv;
    if (reply == NULL)
        return; /* the context is going away */
    cr_assert_eq(reply->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(reply->elements, 3);
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        P.subscribed++;
        redisAsyncCommand(P.pub, on_published, NULL, "PUBLISH news %s", "hello from tether");
    } else if (strcmp(reply->element[0]->str, "message") == 0) {
        P.messages++;
        snprintf(P.got, sizeof(P.got), "%s", reply->element[2]->str);
        redisAsyncDisconnect(ac);
    }
}

Test(hiredis, publish_subscribe_round_trip)
{
    memset(&P, 0, sizeof(P));
    P.sub = connect_attached();
    P.pub = connect_attached();
    redisAsyncSetDisconnectCallback(P.sub, on_disconnect);
    redisAsyncSetDisconnectCallback(P.pub, on_disconnect);
    cr_assert_eq(redisAsyncCommand(P.sub, on_sub, NULL, "SUBSCRIBE news"), REDIS_OK);
    /* Runs until both contexts are gone: then nothing of them is left on the loop. */
    th_run(loop, 10000);
    cr_assert_eq(P.subscribed, 1);
    cr_assert_eq(P.messages, 1);
    cr_assert_str_eq(P.got, "hello from tether");
    cr_assert_eq(P.disconnects, 2);
    cr_assert_eq(P.disconnect_status, REDIS_OK);
}

/* ---- a thousand commands in one go ------------------------------------------------ */

static int replies;
static long long last_value;

static void on_incr(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    (void)priv;
    cr_assert_not_null(reply);
    cr_assert_eq(reply->type, REDIS_REPLY_INTEGER);
    last_value = reply->integer;
    if (++replies == 1000)
        redisAsyncDisconnect(ac);
}

Test(hiredis, a_thousand_pipelined_commands)
{
    redisAsyncContext *ac = connect_attached();

    replies = 0;
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(redisAsyncCommand(ac, on_incr, NULL, "INCR counter"), REDIS_OK);
    th_run(loop, 10000);
    cr_assert_eq(replies, 1000);
    cr_assert_eq(last_value, 1000, "in order, none lost: the last INCR says %lld", last_value);
}

/* ---- the server dies under a subscriber --------------------------------------------- */

static void on_sub_then_kill(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    (void)ac, (void)priv;
    if (reply == NULL)
        return;
    if (reply->type == REDIS_REPLY_ARRAY && strcmp(reply->element[0]->str, "subscribe") == 0) {
        P.subscribed++;
        th_redis_kill(&redis); /* no goodbye: the socket just ends */
    }
}

static void on_pong(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    (void)priv;
    cr_assert_not_null(reply);
    cr_assert_str_eq(reply->str, "PONG");
    P.messages++;
    redisAsyncDisconnect(ac);
}

Test(hiredis, a_killed_server_is_reported_and_a_restarted_one_works)
{
    uint16_t port = redis.port;
    redisAsyncContext *ac;

    memset(&P, 0, sizeof(P));
    ac = connect_attached();
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    cr_assert_eq(redisAsyncCommand(ac, on_sub_then_kill, NULL, "SUBSCRIBE news"), REDIS_OK);
    th_run(loop, 10000);
    cr_assert_eq(P.subscribed, 1);
    cr_assert_eq(P.disconnects, 1, "the subscriber was not told");
    cr_assert_eq(P.disconnect_status, REDIS_ERR, "a crash reported as an orderly end");
    cr_assert_eq(tt_loop_handle_count(loop), 0, "the dead context left a watch behind");

    /* The same port again (the port is known to be free: the server just held it). */
    cr_assert_eq(th_redis_start(&redis, port), 0);
    ac = connect_attached();
    cr_assert_eq(redisAsyncCommand(ac, on_pong, NULL, "PING"), REDIS_OK);
    th_run(loop, 10000);
    cr_assert_eq(P.messages, 1);
}

Test(hiredis, attach_checks_its_arguments)
{
    redisAsyncContext *ac = redisAsyncConnect("127.0.0.1", redis.port);

    cr_assert_not_null(ac);
    cr_assert_eq(tt_redis_attach(NULL, ac), -EINVAL);
    cr_assert_eq(tt_redis_attach(loop, NULL), -EINVAL);
    cr_assert_eq(tt_redis_attach(loop, ac), 0);
    cr_assert_eq(tt_redis_attach(loop, ac), -EINVAL, "attached twice");
    redisAsyncFree(ac); /* cleanup closes the watch */
    cr_assert_eq(tt_loop_handle_count(loop), 0);
}
