/* Send queue: the connection's outgoing data in call order.
 *
 * Memory rules (DESIGN.md): copied bytes live in queue-owned chunks, packed so a
 * stream of small sends costs one allocation per chunk, not per send; handed-over
 * bytes are read in place and released through their free callback; file segments
 * hold only (fd, offset, length). `bytes` and `mem` are always exact, so
 * backpressure, the hard cap, statistics and close reports never walk the list. */
#include "stream/sendq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK_FIRST 4096  /* first chunk: most queues never hold more */
#define CHUNK_NEXT 16384  /* later chunks while a slow reader backs up */

void tt__sendq_init(tt__sendq_t *q, tt__freelist_t *nodes)
{
    q->head = q->tail = NULL;
    q->bytes = q->mem = q->total = q->alloc = 0;
    q->nodes = nodes;
}

/* A node for an entry other than a chunk: every one is sizeof(tt__sqe_t), so the
 * loop keeps those given back (a broadcast queues one per recipient per message,
 * freed when it is written) instead of a malloc and a free for each. */
static tt__sqe_t *node_new(tt__sendq_t *q)
{
    return q->nodes != NULL ? tt__freelist_get(q->nodes, sizeof(tt__sqe_t))
                            : malloc(sizeof(tt__sqe_t));
}

static void node_free(tt__sendq_t *q, tt__sqe_t *e)
{
    if (q->nodes != NULL)
        tt__freelist_put(q->nodes, e);
    else
        free(e);
}

static void link_tail(tt__sendq_t *q, tt__sqe_t *e)
{
    e->next = NULL;
    if (q->tail != NULL)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
}

/* What an entry costs in q->alloc, from its kind and size. */
static uint64_t entry_cost(const tt__sqe_t *e)
{
    switch (e->kind) {
    case TT__SQ_COPY:
        return TT__SQ_CHUNK_COST(e->u.copy.cap);
    case TT__SQ_OWNED:
        return TT__SQ_NODE_COST + e->u.owned.len + e->pin;
    case TT__SQ_FDS:
        return TT__SQ_NODE_COST + e->u.fds.n * sizeof(int) + TT__SQ_MALLOC_SLOP;
    default:
        return TT__SQ_NODE_COST;
    }
}

static tt__sqe_t *new_chunk(size_t need, size_t min_cap)
{
    size_t cap = need > min_cap ? need : min_cap;
    if (cap > UINT32_MAX)
        return NULL;
    tt__sqe_t *e = malloc(offsetof(tt__sqe_t, data) + cap);
    if (e == NULL)
        return NULL;
    e->kind = TT__SQ_COPY;
    e->own_fd = 0;
    e->flags = 0;
    e->pin = 0;
    e->u.copy.cap = (uint32_t)cap;
    e->u.copy.head = e->u.copy.tail = 0;
    return e;
}

int tt__sendq_push_copy(tt__sendq_t *q, const struct iovec *iov, int iovcnt, size_t len)
{
    return tt__sendq_push_copy_hint(q, iov, iovcnt, len, 0);
}

int tt__sendq_push_copy_hint(tt__sendq_t *q, const struct iovec *iov, int iovcnt, size_t len,
                               size_t hint)
{
    tt__sqe_t *t = q->tail;
    size_t room = 0, first;

    if (len == 0)
        return 0;
    if (t != NULL && t->kind == TT__SQ_COPY)
        room = t->u.copy.cap - t->u.copy.tail;
    first = len < room ? len : room;

    /* Allocate before copying anything, so failure leaves the queue untouched. */
    tt__sqe_t *fresh = NULL;
    if (first < len) {
        size_t min_cap = q->head == NULL ? CHUNK_FIRST : CHUNK_NEXT;
        if (hint > 0) {
            /* What is known to come, not a default; a run of copies that outgrew
             * its estimate (the tail chunk is full) doubles, so it takes a few
             * chunks, never one per copy. */
            size_t want = hint > len ? hint : len;
            if (t != NULL && t->kind == TT__SQ_COPY && want < 2 * (size_t)t->u.copy.cap)
                want = 2 * (size_t)t->u.copy.cap;
            if (want < min_cap)
                min_cap = want;
        }
        fresh = new_chunk(len - first, min_cap);
        if (fresh == NULL)
            return -ENOMEM;
    }

    size_t done = 0;
    for (int i = 0; i < iovcnt; i++) {
        const char *p = iov[i].iov_base;
        size_t n = iov[i].iov_len;
        while (n > 0) {
            tt__sqe_t *dst = done < first ? t : fresh;
            size_t limit = done < first ? first - done : n;
            size_t k = n < limit ? n : limit;
            memcpy(dst->data + dst->u.copy.tail, p, k);
            dst->u.copy.tail += (uint32_t)k;
            p += k;
            n -= k;
            done += k;
        }
    }
    if (fresh != NULL) {
        if (first > 0)
            fresh->flags |= TT__SQE_CONT; /* the send began in the chunk before */
        link_tail(q, fresh);
        q->alloc += entry_cost(fresh);
    }
    tt__sendq_count_mem(q, len);
    return 0;
}

static void close_fds(int *fds, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
}

int tt__sendq_push_fds(tt__sendq_t *q, int *fds, uint32_t n, const void *buf, size_t len)
{
    tt__sqe_t *e = node_new(q);
    tt__sqe_t *d = new_chunk(len, CHUNK_NEXT);

    if (e == NULL || d == NULL || len == 0) {
        if (e != NULL)
            node_free(q, e);
        free(d);
        close_fds(fds, n);
        return -ENOMEM;
    }
    e->kind = TT__SQ_FDS;
    e->own_fd = 0;
    e->flags = 0;
    e->pin = 0;
    e->u.fds.fds = fds;
    e->u.fds.n = n;
    memcpy(d->data, buf, len);
    d->u.copy.tail = (uint32_t)len;
    d->flags |= TT__SQE_CONT; /* the send began with the descriptors */
    link_tail(q, e);
    link_tail(q, d);
    q->alloc += entry_cost(e) + entry_cost(d);
    tt__sendq_count_mem(q, len);
    return 0;
}

int tt__sendq_push_front_copy(tt__sendq_t *q, const void *buf, size_t len)
{
    if (len == 0)
        return 0; /* as push_copy: an empty entry would only stall the writer */
    tt__sqe_t *e = new_chunk(len, len);
    if (e == NULL)
        return -ENOMEM;
    memcpy(e->data, buf, len);
    e->u.copy.tail = (uint32_t)len;
    e->next = q->head;
    q->head = e;
    if (q->tail == NULL)
        q->tail = e;
    q->alloc += entry_cost(e);
    tt__sendq_count_mem(q, len);
    return 0;
}

int tt__sendq_push_shared(tt__sendq_t *q, void *buf, size_t len, uint32_t pin,
                          tt_free_cb free_cb, void *arg)
{
    tt__sqe_t *e = node_new(q);
    if (e == NULL)
        return -ENOMEM;
    e->kind = TT__SQ_OWNED;
    e->own_fd = 0;
    e->flags = 0;
    e->pin = pin;
    e->u.owned.buf = buf;
    e->u.owned.off = 0;
    e->u.owned.len = len;
    e->u.owned.free_cb = free_cb;
    e->u.owned.arg = arg;
    link_tail(q, e);
    q->alloc += entry_cost(e);
    tt__sendq_count_mem(q, len);
    return 0;
}

int tt__sendq_extend_owned(tt__sendq_t *q, const void *buf, size_t len, tt_free_cb free_cb,
                           void *arg)
{
    tt__sqe_t *t = q->tail;
    if (t == NULL || t->kind != TT__SQ_OWNED || t->u.owned.free_cb != free_cb ||
        t->u.owned.arg != arg || t->u.owned.buf + t->u.owned.len != (const char *)buf)
        return 0;
    uint32_t had = len < t->pin ? (uint32_t)len : t->pin; /* pinned already: charged */
    t->pin -= had;
    t->u.owned.len += len;
    q->alloc += len - had;
    tt__sendq_count_mem(q, len);
    return 1;
}

int tt__sendq_push_file(tt__sendq_t *q, int kind, int fd, uint64_t off, uint64_t len, int own_fd)
{
    tt__sqe_t *e = node_new(q);
    if (e == NULL)
        return -ENOMEM;
    e->kind = (uint8_t)kind;
    e->own_fd = (uint8_t)(own_fd != 0);
    e->flags = 0;
    e->pin = 0;
    e->u.file.fd = fd;
    e->u.file.off = off;
    e->u.file.remain = len;
    e->u.file.watch = NULL;
    link_tail(q, e);
    q->alloc += entry_cost(e);
    if (len != TT_FILE_TO_EOF) {
        q->bytes += len;
        if (kind == TT__SQ_FILE)
            q->total += len; /* streams count as they are read */
    }
    return 0;
}

int tt__sendq_fill_iov(const tt__sendq_t *q, struct iovec *iov, int max, size_t *bytes)
{
    int n = 0;
    size_t sum = 0;
    for (tt__sqe_t *e = q->head; e != NULL && n < max; e = e->next) {
        if (e->kind == TT__SQ_COPY) {
            iov[n].iov_base = e->data + e->u.copy.head;
            iov[n].iov_len = e->u.copy.tail - e->u.copy.head;
        } else if (e->kind == TT__SQ_OWNED) {
            iov[n].iov_base = e->u.owned.buf + e->u.owned.off;
            iov[n].iov_len = e->u.owned.len - e->u.owned.off;
        } else {
            break;
        }
        sum += iov[n].iov_len;
        n++;
    }
    *bytes = sum;
    return n;
}

static void release(tt__sendq_t *q, tt__sqe_t *e)
{
    q->alloc -= entry_cost(e);
    if (e->kind == TT__SQ_OWNED && e->u.owned.free_cb != NULL)
        e->u.owned.free_cb(e->u.owned.buf, e->u.owned.arg);
    else if ((e->kind == TT__SQ_FILE || e->kind == TT__SQ_STREAM) && e->own_fd)
        close(e->u.file.fd);
    else if (e->kind == TT__SQ_FDS)
        close_fds(e->u.fds.fds, e->u.fds.n);
    if (e->kind == TT__SQ_COPY)
        free(e);
    else
        node_free(q, e);
}

static void unlink_head(tt__sendq_t *q)
{
    q->head = q->head->next;
    if (q->head == NULL)
        q->tail = NULL;
}

/* Bytes of the head entry still to write (file: remaining length). */
static uint64_t head_left(const tt__sqe_t *e)
{
    switch (e->kind) {
    case TT__SQ_COPY:
        return e->u.copy.tail - e->u.copy.head;
    case TT__SQ_OWNED:
        return e->u.owned.len - e->u.owned.off;
    case TT__SQ_FDS:
        return 0;
    default:
        return e->u.file.remain;
    }
}

void tt__sendq_consume(tt__sendq_t *q, uint64_t n)
{
    /* Also runs with n == 0, so an entry that is already empty (a zero-length owned
     * buffer) is released when the writer passes it instead of stalling the queue. */
    while (q->head != NULL) {
        tt__sqe_t *e = q->head;
        if (e->kind == TT__SQ_FDS)
            break; /* goes only with its bytes, by tt__sendq_pop after the send */
        uint64_t left = head_left(e);
        uint64_t k = n < left ? n : left;
        switch (e->kind) {
        case TT__SQ_COPY:
            e->u.copy.head += (uint32_t)k;
            q->mem -= k;
            q->bytes -= k;
            break;
        case TT__SQ_OWNED:
            e->u.owned.off += k;
            q->mem -= k;
            q->bytes -= k;
            break;
        default:
            e->u.file.off += k;
            if (e->u.file.remain != TT_FILE_TO_EOF) {
                e->u.file.remain -= k;
                q->bytes -= k;
            } else {
                q->total += k; /* an unbounded file counts as it is sent */
            }
            break;
        }
        n -= k;
        if (k > 0 && k < left)
            e->flags |= TT__SQE_STARTED;
        if (k < left || e->kind == TT__SQ_STREAM)
            break; /* n is used up, or a stream waits for its owner's pop */
        unlink_head(q);
        release(q, e);
    }
}

void tt__sendq_stream_took(tt__sendq_t *q, uint64_t n)
{
    tt__sqe_t *e = q->head;
    if (e == NULL || e->kind != TT__SQ_STREAM || e->u.file.remain == TT_FILE_TO_EOF)
        return;
    e->u.file.remain -= n;
    q->bytes -= n;
}

void tt__sendq_file_took(tt__sendq_t *q, uint64_t n)
{
    tt__sqe_t *e = q->head;
    if (e == NULL || e->kind != TT__SQ_FILE)
        return;
    e->u.file.off += n;
    if (e->u.file.remain != TT_FILE_TO_EOF) {
        e->u.file.remain -= n;
        q->bytes -= n;
        q->total -= n; /* counted again by the copy that carries them */
    }
}

void tt__sendq_file_ended(tt__sendq_t *q)
{
    tt__sqe_t *e = q->head;
    if (e == NULL || e->kind != TT__SQ_FILE)
        return;
    if (e->u.file.remain != TT_FILE_TO_EOF) {
        q->bytes -= e->u.file.remain;
        q->total -= e->u.file.remain;
    }
    unlink_head(q);
    release(q, e);
}

void *tt__sendq_pop(tt__sendq_t *q)
{
    tt__sqe_t *e = q->head;
    void *watch = NULL;
    if (e == NULL)
        return NULL;
    uint64_t left = head_left(e);
    if (e->kind == TT__SQ_COPY || e->kind == TT__SQ_OWNED) {
        q->mem -= left;
        q->bytes -= left;
    } else if (e->kind == TT__SQ_FDS) {
        /* no bytes, no watch */
    } else {
        if (left != TT_FILE_TO_EOF)
            q->bytes -= left;
        watch = e->u.file.watch;
    }
    unlink_head(q);
    release(q, e);
    return watch;
}

uint64_t tt__sendq_clear(tt__sendq_t *q, void (*on_watch)(void *watch, void *arg), void *arg)
{
    uint64_t dropped = q->bytes;
    while (q->head != NULL) {
        void *watch = tt__sendq_pop(q);
        if (watch != NULL && on_watch != NULL)
            on_watch(watch, arg);
    }
    return dropped;
}
