/* Hierarchical timing wheel: millisecond ticks, O(1) start/restart/stop.
 * Pure data structure: it knows nothing of loops, clocks or connections. */
#ifndef TT_TIMER_WHEEL_H
#define TT_TIMER_WHEEL_H

#include <stdbool.h>
#include <stdint.h>

#define TT__WHEEL_LEVELS 4
#define TT__WHEEL_BITS 8
#define TT__WHEEL_SLOTS (1u << TT__WHEEL_BITS)

typedef struct tt__wnode tt__wnode_t;
typedef void (*tt__wnode_cb)(tt__wnode_t *node);

/* Embedded in the object that owns the timer; next == NULL means inactive. */
struct tt__wnode {
    tt__wnode_t *next, *prev;
    uint64_t expiry; /* absolute tick (ms) */
    tt__wnode_cb cb;
};

typedef struct tt__wheel {
    uint64_t now;   /* last tick processed */
    uint64_t count; /* active nodes */
    tt__wnode_t slot[TT__WHEEL_LEVELS][TT__WHEEL_SLOTS]; /* list heads (sentinels) */
    /* A set bit means "may be non-empty": bits are cleared lazily when a scan
     * finds the slot empty, so stop() need not know where a node lives. */
    uint64_t occupied[TT__WHEEL_LEVELS][TT__WHEEL_SLOTS / 64];
} tt__wheel_t;

void tt__wheel_init(tt__wheel_t *w, uint64_t now);
static inline void tt__wnode_init(tt__wnode_t *n, tt__wnode_cb cb)
{
    n->next = n->prev = 0;
    n->expiry = 0;
    n->cb = cb;
}
static inline bool tt__wnode_active(const tt__wnode_t *n) { return n->next != 0; }
/* Arm (or re-arm) `n` to fire at absolute tick `expiry`; a tick not after the
 * current one fires on the next advance. */
void tt__wheel_start(tt__wheel_t *w, tt__wnode_t *n, uint64_t expiry);
void tt__wheel_stop(tt__wheel_t *w, tt__wnode_t *n);
/* Earliest tick at which advance() may have work: exact for timers due within
 * the current 256 ms block, otherwise the next cascade point (never later than the
 * real expiry). UINT64_MAX when no timer is active. */
uint64_t tt__wheel_next_expiry(tt__wheel_t *w);
/* Process every tick up to `now`, calling the callback of each expired node
 * (deactivated first, so a callback may restart it). Callbacks may start and stop
 * any node. Returns the number fired. */
uint64_t tt__wheel_advance(tt__wheel_t *w, uint64_t now);

#endif
