/* Hierarchical timing wheel (Varghese & Lauck), four levels of 256 slots.
 *
 * A node lives at the level of the highest byte in which its expiry differs from
 * `now`, in the slot given by that byte of the expiry. When `now` crosses a
 * boundary of level L, the slot of level L it enters is emptied and its nodes are
 * re-inserted, falling to lower levels; level 0 slots fire. Start and stop are O(1)
 * list operations: what makes per-connection idle timers restarted on every read
 * affordable. */
#include "core/timer_wheel.h"

#include <stddef.h>

static void list_init(tt__wnode_t *head) { head->next = head->prev = head; }

static bool list_empty(const tt__wnode_t *head) { return head->next == head; }

static void list_unlink(tt__wnode_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

/* Move every node of `from` to the empty list `to` (a private list to walk while
 * callbacks or re-placement change the wheel). */
static void list_take(tt__wnode_t *from, tt__wnode_t *to)
{
    list_init(to);
    if (list_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    list_init(from);
}

static void list_append(tt__wnode_t *head, tt__wnode_t *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

void tt__wheel_init(tt__wheel_t *w, uint64_t now)
{
    w->now = now;
    w->count = 0;
    for (int l = 0; l < TT__WHEEL_LEVELS; l++) {
        for (unsigned s = 0; s < TT__WHEEL_SLOTS; s++)
            list_init(&w->slot[l][s]);
        for (unsigned i = 0; i < TT__WHEEL_SLOTS / 64; i++)
            w->occupied[l][i] = 0;
    }
}

static void place(tt__wheel_t *w, tt__wnode_t *n)
{
    /* Expired (or due now): the next tick's level-0 slot, which advance() reaches
     * first. Its level is computed like any other so a block boundary is honoured. */
    uint64_t when = n->expiry > w->now ? n->expiry : w->now + 1;
    uint64_t diff = when ^ w->now;
    int level = (63 - __builtin_clzll(diff)) / TT__WHEEL_BITS;
    if (level >= TT__WHEEL_LEVELS)
        level = TT__WHEEL_LEVELS - 1; /* beyond the span: cascades early, re-placed */
    unsigned s = (unsigned)(when >> (level * TT__WHEEL_BITS)) & (TT__WHEEL_SLOTS - 1);
    list_append(&w->slot[level][s], n);
    w->occupied[level][s / 64] |= (uint64_t)1 << (s % 64);
}

void tt__wheel_start(tt__wheel_t *w, tt__wnode_t *n, uint64_t expiry)
{
    if (n->next != NULL)
        list_unlink(n);
    else
        w->count++;
    n->expiry = expiry;
    place(w, n);
}

void tt__wheel_stop(tt__wheel_t *w, tt__wnode_t *n)
{
    if (n->next == NULL)
        return;
    list_unlink(n);
    w->count--;
}

/* First slot index >= from at `level` whose list is non-empty, or -1. Clears stale
 * occupancy bits on the way. */
static int next_occupied(tt__wheel_t *w, int level, unsigned from)
{
    for (unsigned word = from / 64; word < TT__WHEEL_SLOTS / 64; word++) {
        uint64_t bits = w->occupied[level][word];
        if (word == from / 64)
            bits &= ~(uint64_t)0 << (from % 64);
        while (bits != 0) {
            unsigned s = word * 64 + (unsigned)__builtin_ctzll(bits);
            if (!list_empty(&w->slot[level][s]))
                return (int)s;
            w->occupied[level][word] &= ~((uint64_t)1 << (s % 64));
            bits &= bits - 1;
        }
    }
    return -1;
}

uint64_t tt__wheel_next_expiry(tt__wheel_t *w)
{
    if (w->count == 0)
        return UINT64_MAX;
    for (int l = 0; l < TT__WHEEL_LEVELS; l++) {
        unsigned shift = (unsigned)l * TT__WHEEL_BITS;
        unsigned digit = (unsigned)(w->now >> shift) & (TT__WHEEL_SLOTS - 1);
        int s = next_occupied(w, l, digit + 1);
        if (s >= 0) {
            uint64_t span = (uint64_t)1 << (shift + TT__WHEEL_BITS);
            return (w->now & ~(span - 1)) + ((uint64_t)s << shift);
        }
    }
    /* Only nodes placed beyond the span (or in slots at or below the current digit
     * of the top level): the next top-level boundary is a safe lower bound. */
    uint64_t top = (uint64_t)1 << ((TT__WHEEL_LEVELS - 1) * TT__WHEEL_BITS);
    return (w->now | (top - 1)) + 1;
}

/* Re-place every node of one slot against the current `now`. */
static void cascade(tt__wheel_t *w, int level, unsigned s)
{
    tt__wnode_t tmp;
    list_take(&w->slot[level][s], &tmp);
    while (!list_empty(&tmp)) {
        tt__wnode_t *n = tmp.next;
        list_unlink(n);
        if (n->expiry <= w->now) {
            /* Due exactly at this boundary: the level-0 slot fired next. */
            unsigned due = (unsigned)w->now & (TT__WHEEL_SLOTS - 1);
            list_append(&w->slot[0][due], n);
            w->occupied[0][due / 64] |= (uint64_t)1 << (due % 64);
        } else {
            place(w, n);
        }
    }
}

/* Fire level-0 slot of tick w->now. Nodes are moved to a private list first so
 * callbacks can start/stop anything, including nodes still waiting in it. */
static uint64_t fire(tt__wheel_t *w)
{
    unsigned s = (unsigned)w->now & (TT__WHEEL_SLOTS - 1);
    tt__wnode_t tmp;
    uint64_t fired = 0;

    list_take(&w->slot[0][s], &tmp);
    while (!list_empty(&tmp)) {
        tt__wnode_t *n = tmp.next;
        list_unlink(n);
        if (n->expiry > w->now) { /* placed early (beyond the span): not yet due */
            place(w, n);
            continue;
        }
        w->count--;
        fired++;
        n->cb(n);
    }
    return fired;
}

static void enter_tick(tt__wheel_t *w, uint64_t t)
{
    w->now = t;
    if ((t & (TT__WHEEL_SLOTS - 1)) != 0)
        return;
    /* Crossing a boundary: cascade from the highest level whose lower digits are
     * all zero down to level 1, so nodes can fall several levels at once. */
    int top = 1;
    while (top < TT__WHEEL_LEVELS - 1 &&
           ((t >> (top * TT__WHEEL_BITS)) & (TT__WHEEL_SLOTS - 1)) == 0)
        top++;
    for (int l = top; l >= 1; l--)
        cascade(w, l, (unsigned)(t >> (l * TT__WHEEL_BITS)) & (TT__WHEEL_SLOTS - 1));
}

uint64_t tt__wheel_advance(tt__wheel_t *w, uint64_t now)
{
    uint64_t fired = 0;

    while (w->now < now) {
        if (w->count == 0) {
            w->now = now;
            break;
        }
        /* Skip empty level-0 slots within this block using the bitmap. */
        unsigned digit = (unsigned)w->now & (TT__WHEEL_SLOTS - 1);
        int s = digit == TT__WHEEL_SLOTS - 1 ? -1 : next_occupied(w, 0, digit + 1);
        uint64_t block = w->now & ~(uint64_t)(TT__WHEEL_SLOTS - 1);
        uint64_t t = s >= 0 ? block + (uint64_t)s : block + TT__WHEEL_SLOTS;
        if (t > now) {
            w->now = now;
            break;
        }
        enter_tick(w, t);
        fired += fire(w);
    }
    return fired;
}
