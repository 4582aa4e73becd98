/* Public timers: a thin handle over a timing-wheel node. */
#include <errno.h>
#include <stdlib.h>

#include "core/loop.h"

struct tt_timer {
    tt__wnode_t node;
    tt_loop_t *loop;
    tt_timer_cb cb;
    void *data;
    uint64_t repeat;
    uint8_t closed;
    uint8_t in_cb;
};

static void fire(tt__wnode_t *node)
{
    tt_timer_t *t = tt__container_of(node, tt_timer_t, node);

    /* Re-arm before the callback, so the callback may stop or restart it. */
    if (t->repeat > 0)
        tt__wheel_start(&t->loop->wheel, &t->node, t->loop->now + t->repeat);
    t->in_cb = 1;
    t->cb(t, t->data);
    t->in_cb = 0;
    if (t->closed)
        free(t);
}

int tt_timer_init(tt_loop_t *loop, tt_timer_t **out, tt_timer_cb cb, void *data)
{
    tt_timer_t *t;

    if (loop == NULL || out == NULL || cb == NULL)
        return -EINVAL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    tt__wnode_init(&t->node, fire);
    t->loop = loop;
    t->cb = cb;
    t->data = data;
    loop->handles++;
    *out = t;
    return 0;
}

int tt_timer_start(tt_timer_t *t, uint64_t timeout_ms, uint64_t repeat_ms)
{
    if (t == NULL || t->closed || timeout_ms > TT_TIMEOUT_MAX || repeat_ms > TT_TIMEOUT_MAX)
        return -EINVAL;
    t->repeat = repeat_ms;
    tt__wheel_start(&t->loop->wheel, &t->node, t->loop->now + timeout_ms);
    return 0;
}

int tt_timer_stop(tt_timer_t *t)
{
    if (t == NULL || t->closed)
        return -EINVAL;
    tt__wheel_stop(&t->loop->wheel, &t->node);
    return 0;
}

int tt_timer_close(tt_timer_t *t)
{
    if (t == NULL || t->closed)
        return -EINVAL;
    tt__wheel_stop(&t->loop->wheel, &t->node);
    t->closed = 1;
    t->loop->handles--;
    if (!t->in_cb)
        free(t);
    return 0;
}

bool tt_timer_is_active(const tt_timer_t *t) { return t != NULL && tt__wnode_active(&t->node); }

void *tt_timer_get_data(const tt_timer_t *t) { return t != NULL ? t->data : NULL; }
