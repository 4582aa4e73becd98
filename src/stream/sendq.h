/* Ordered queue of outgoing byte chunks and file segments.
 * Pure data structure: no system calls except close() of fds it was handed. */
#ifndef TT_SENDQ_H
#define TT_SENDQ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "core/freelist.h"
#include "tether.h"

enum {
    TT__SQ_COPY,   /* bytes copied into a queue-owned chunk; small sends are packed */
    TT__SQ_OWNED,  /* bytes handed over with a free callback */
    TT__SQ_FILE,   /* regular file segment: fd, offset, length (sendfile) */
    TT__SQ_STREAM, /* pipe/socket/other fd read as it becomes readable */
    TT__SQ_FDS     /* descriptors (SCM_RIGHTS) for the first byte of the entry after
                      it; no bytes of its own, written only by the flush that sends
                      them (never consumed in passing) */
};

/* Entry flags. */
#define TT__SQE_TO_EOF 0x1      /* FILE: length is st_size at the call; an earlier EOF ends it */
#define TT__SQE_NO_SENDFILE 0x2 /* FILE: sendfile(2) refused the file: read(2) it into copies */
#define TT__SQE_STARTED 0x4     /* the kernel took part of this entry (not all of it) */
#define TT__SQE_CONT 0x8        /* begins inside a send whose start is in the entry before
                                   (a copy split over two chunks, the payload and trailer
                                   of a framed owned message): not a send boundary */

typedef struct tt__sqe tt__sqe_t;
struct tt__sqe {
    tt__sqe_t *next;
    uint8_t kind;
    uint8_t own_fd; /* FILE/STREAM: close fd when the entry is released */
    uint8_t flags;  /* TT__SQE_* */
    uint32_t pin;   /* OWNED: bytes of the buffer beyond its own that the entry keeps
                       alive (a shared payload's other messages and room), charged
                       to `alloc` with it */
    union {
        struct {
            uint32_t cap, head, tail; /* valid bytes are data[head, tail) */
        } copy;
        struct {
            char *buf;
            size_t off, len;
            tt_free_cb free_cb;
            void *arg;
        } owned;
        struct {
            int fd;
            uint64_t off;
            uint64_t remain; /* STREAM: TT_FILE_TO_EOF when unbounded */
            void *watch;     /* STREAM: the owner's readiness watch, if any */
        } file;
        struct {
            int *fds; /* the queue's own copies, closed when the entry goes */
            uint32_t n;
        } fds;
    } u;
    char data[]; /* COPY only */
};

typedef struct tt__sendq {
    tt__sqe_t *head, *tail;
    uint64_t bytes; /* known bytes waiting (memory + bounded file/stream lengths) */
    uint64_t mem;   /* payload bytes held in memory (COPY + OWNED) */
    uint64_t alloc; /* heap the queue holds: chunks as allocated, a node per other
                       entry, owned buffers until released: what the hard cap limits */
    uint64_t total; /* bytes ever queued (streams counted as they are read) */
    tt__freelist_t *nodes; /* where entries other than chunks come from and go
                              back to (the loop's), or NULL: malloc and free */
} tt__sendq_t;

/* What one entry other than a chunk costs in `alloc` (the node and malloc's own
 * overhead); a chunk costs TT__SQ_CHUNK_COST(cap). */
#define TT__SQ_MALLOC_SLOP 16
#define TT__SQ_NODE_COST (sizeof(tt__sqe_t) + TT__SQ_MALLOC_SLOP)
#define TT__SQ_CHUNK_COST(cap) (offsetof(tt__sqe_t, data) + (cap) + TT__SQ_MALLOC_SLOP)

/* An empty queue taking its entry nodes from `nodes` (NULL: malloc). */
void tt__sendq_init(tt__sendq_t *q, tt__freelist_t *nodes);
/* `len` bytes held in memory were added to the queue: counted as waiting, as
 * held, and in the total ever queued. */
static inline void tt__sendq_count_mem(tt__sendq_t *q, size_t len)
{
    q->bytes += len;
    q->mem += len;
    q->total += len;
}
static inline int tt__sendq_empty(const tt__sendq_t *q) { return q->head == 0; }
/* Copy the buffers (total `len` bytes) to the tail. 0 or -ENOMEM (nothing queued). */
int tt__sendq_push_copy(tt__sendq_t *q, const struct iovec *iov, int iovcnt, size_t len);
/* The same, where about `hint` bytes, these included, are known to be queued
 * soon (0: not known): a new chunk is made for them, at least twice a full tail
 * chunk, instead of the default size (never larger than that default). */
int tt__sendq_push_copy_hint(tt__sendq_t *q, const struct iovec *iov, int iovcnt, size_t len,
                               size_t hint);
/* One buffer: copied into the tail chunk at once when it has room (a broadcast's
 * short lines, one after another), else as tt__sendq_push_copy_hint. Inline for
 * the broadcast's loop over recipients: 349 user-space instructions per delivery
 * against 392 through the call (callgrind, 100 receivers, 64 B lines, 16 in
 * flight). */
static inline int tt__sendq_push_bytes(tt__sendq_t *q, const void *buf, size_t len, size_t hint)
{
    tt__sqe_t *t = q->tail;
    if (t != NULL && t->kind == TT__SQ_COPY && len > 0 && t->u.copy.cap - t->u.copy.tail >= len) {
        memcpy(t->data + t->u.copy.tail, buf, len);
        t->u.copy.tail += (uint32_t)len;
        tt__sendq_count_mem(q, len);
        return 0;
    }
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return tt__sendq_push_copy_hint(q, &iov, 1, len, hint);
}
/* Put a copy at the front (stream data read but not yet written). 0 or -ENOMEM. */
int tt__sendq_push_front_copy(tt__sendq_t *q, const void *buf, size_t len);
/* Bytes handed over, read in place and released through free_cb(buf, arg); `pin`
 * is what else of the same allocation the entry keeps alive (0: none), charged
 * to `alloc` as if queued. */
int tt__sendq_push_shared(tt__sendq_t *q, void *buf, size_t len, uint32_t pin,
                          tt_free_cb free_cb, void *arg);
static inline int tt__sendq_push_owned(tt__sendq_t *q, void *buf, size_t len, tt_free_cb free_cb,
                                       void *arg)
{
    return tt__sendq_push_shared(q, buf, len, 0, free_cb, arg);
}
/* Lengthen the tail entry by `len` bytes when it is an owned buffer, released by
 * the same free_cb and arg, whose bytes end exactly at `buf` (the next part of
 * one buffer, queued after the part before it): bytes it pinned become its own,
 * so `alloc` grows only by what it did not pin. 1 done, 0 not that entry. */
int tt__sendq_extend_owned(tt__sendq_t *q, const void *buf, size_t len, tt_free_cb free_cb,
                           void *arg);
/* Queue the descriptors `fds` (n of them, malloc'd copies the queue takes over,
 * closing them and freeing the array when the entry goes) followed by a copy of
 * the `len` >= 1 bytes they go with. 0, or -ENOMEM (nothing queued, the fds closed
 * and the array freed). */
int tt__sendq_push_fds(tt__sendq_t *q, int *fds, uint32_t n, const void *buf, size_t len);
int tt__sendq_push_file(tt__sendq_t *q, int kind, int fd, uint64_t off, uint64_t len, int own_fd);
/* Describe up to `max` memory entries from the head as iovecs (stops at a file or
 * stream entry). Returns the count and sets *bytes. */
int tt__sendq_fill_iov(const tt__sendq_t *q, struct iovec *iov, int max, size_t *bytes);
/* `n` bytes of the head left for the kernel: advance, releasing finished entries
 * (free callbacks run, owned fds are closed). */
void tt__sendq_consume(tt__sendq_t *q, uint64_t n);
/* Release the head entry whatever is left of it (a stream at end of file). Returns
 * the entry's watch pointer (STREAM) so the owner can dispose of it, else NULL. */
void *tt__sendq_pop(tt__sendq_t *q);
/* The head STREAM entry produced `n` bytes (about to be pushed to the front as a
 * copy): shrink its remaining length. */
void tt__sendq_stream_took(tt__sendq_t *q, uint64_t n);
/* The head FILE entry was read (pread) for `n` bytes that are about to be pushed to
 * the front as a copy: advance its offset and shrink its remaining length. */
void tt__sendq_file_took(tt__sendq_t *q, uint64_t n);
/* The head FILE entry reached end of file before its length (a TT__SQE_TO_EOF or
 * unbounded entry): release it; what it never had is no longer counted as queued. */
void tt__sendq_file_ended(tt__sendq_t *q);
/* Drop everything (free callbacks run, fds closed). Returns the known bytes dropped.
 * `on_watch` is called for each stream watch still set. */
uint64_t tt__sendq_clear(tt__sendq_t *q, void (*on_watch)(void *watch, void *arg), void *arg);

#endif
