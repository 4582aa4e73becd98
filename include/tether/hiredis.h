/* hiredis' asynchronous API on a tether loop.
 *
 *     redisAsyncContext *ac = redisAsyncConnect("127.0.0.1", 6379);
 *     if (ac == NULL || ac->err || tt_redis_attach(loop, ac) < 0) ...
 *     redisAsyncSetDisconnectCallback(ac, on_disconnect);
 *     redisAsyncCommand(ac, on_reply, NULL, "SUBSCRIBE %s", "news");
 *
 * The shape of hiredis' own adapters (adapters/libuv.h and friends): hiredis asks
 * for read and write interest on its socket, this header turns that into one
 * tether descriptor watch, and readiness into redisAsyncHandleRead/Write. Header
 * only, like them; link with hiredis yourself (pkg-config hiredis). Uses only the
 * public tether API.
 *
 * Lifetime: the adapter lives as long as the context. hiredis calls its cleanup
 * when the context is freed (redisAsyncFree, redisAsyncDisconnect, or a
 * connection error), which closes the watch; nothing is left on the loop. The loop
 * must not be closed while a context is attached (tt_loop_close says -EBUSY).
 * Command timeouts (hiredis 1.x's scheduleTimer) are not wired: Debian's hiredis
 * (0.14) has none. */
#ifndef TETHER_HIREDIS_H
#define TETHER_HIREDIS_H

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "tether.h"

typedef struct tt__redis {
    redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
    tt_watch_t *watch;
    unsigned events;       /* TT_WATCH_READ / TT_WATCH_WRITE hiredis asked for */
    bool in_cb, dead;      /* freed after the callback when cleaned up inside it */
} tt__redis_t;

static void tt__redis_ready(tt_watch_t *w, int fd, unsigned events, void *data)
{
    tt__redis_t *r = (tt__redis_t *)data;

    (void)w, (void)fd;
    r->in_cb = true;
    /* An error or hang-up is for the read to find (hiredis then disconnects). */
    if (r->ac != NULL && (events & (TT_WATCH_READ | TT_WATCH_ERROR)))
        redisAsyncHandleRead(r->ac);
    if (r->ac != NULL && (events & TT_WATCH_WRITE))
        redisAsyncHandleWrite(r->ac);
    r->in_cb = false;
    if (r->dead) /* hiredis freed the context inside one of the calls above */
        free(r);
}

static void tt__redis_interest(tt__redis_t *r, unsigned events)
{
    r->events = events;
    /* Errors here cannot be reported to hiredis (its hooks return nothing); the
     * watch was started on this fd before, so only a closed fd could fail. */
    (void)tt_watch_start(r->watch, events);
}

static void tt__redis_add_read(void *p)
{
    tt__redis_t *r = (tt__redis_t *)p;
    tt__redis_interest(r, r->events | TT_WATCH_READ);
}

static void tt__redis_del_read(void *p)
{
    tt__redis_t *r = (tt__redis_t *)p;
    tt__redis_interest(r, r->events & ~(unsigned)TT_WATCH_READ);
}

static void tt__redis_add_write(void *p)
{
    tt__redis_t *r = (tt__redis_t *)p;
    tt__redis_interest(r, r->events | TT_WATCH_WRITE);
}

static void tt__redis_del_write(void *p)
{
    tt__redis_t *r = (tt__redis_t *)p;
    tt__redis_interest(r, r->events & ~(unsigned)TT_WATCH_WRITE);
}

static void tt__redis_cleanup(void *p)
{
    tt__redis_t *r = (tt__redis_t *)p;

    r->ac = NULL;
    tt_watch_close(r->watch); /* before hiredis closes the fd */
    if (r->in_cb)
        r->dead = true;
    else
        free(r);
}

/* Run `ac` on `loop`. Call once, right after redisAsyncConnect (the context must
 * not be attached to another loop). Returns 0, -EINVAL (NULL, a context already
 * attached, or one whose connect failed at once: see ac->errstr), -ENOMEM, or the
 * error of tt_watch_init. */
static inline int tt_redis_attach(tt_loop_t *loop, redisAsyncContext *ac)
{
    tt__redis_t *r;
    int err;

    if (loop == NULL || ac == NULL || ac->ev.data != NULL || ac->err != 0 || ac->c.fd < 0)
        return -EINVAL;
    r = (tt__redis_t *)calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    err = tt_watch_init(loop, &r->watch, ac->c.fd, tt__redis_ready, r);
    if (err < 0) {
        free(r);
        return err;
    }
    r->ac = ac;
    ac->ev.data = r;
    ac->ev.addRead = tt__redis_add_read;
    ac->ev.delRead = tt__redis_del_read;
    ac->ev.addWrite = tt__redis_add_write;
    ac->ev.delWrite = tt__redis_del_write;
    ac->ev.cleanup = tt__redis_cleanup;
    return 0;
}

#endif
