/* A bounded LIFO of free blocks of one size, owned by one loop (no locking):
 * a block given back is reused by the next allocation of that size instead of
 * going through malloc, and at most `max` are kept, so a burst does not pin its
 * memory after it is over. The link lives in the block's first bytes, which a
 * free block no longer needs. */
#ifndef TT_FREELIST_H
#define TT_FREELIST_H

#include <stdint.h>
#include <stdlib.h>

typedef struct tt__freelist {
    void *head;
    uint32_t n, max;
} tt__freelist_t;

/* A free block of `size` bytes: a kept one, else from malloc (NULL if that fails). */
static inline void *tt__freelist_get(tt__freelist_t *fl, size_t size)
{
    void *p = fl->head;
    if (p == NULL)
        return malloc(size);
    fl->head = *(void **)p;
    fl->n--;
    return p;
}

/* Give a block back: kept while fewer than `max` are, else freed. */
static inline void tt__freelist_put(tt__freelist_t *fl, void *p)
{
    if (fl->n >= fl->max) {
        free(p);
        return;
    }
    *(void **)p = fl->head;
    fl->head = p;
    fl->n++;
}

/* Free every kept block (the owner is going away). */
static inline void tt__freelist_drain(tt__freelist_t *fl)
{
    while (fl->head != NULL) {
        void *next = *(void **)fl->head;
        free(fl->head);
        fl->head = next;
    }
    fl->n = 0;
}

#endif
