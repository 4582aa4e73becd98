/* The send queue (src/stream/sendq.h) on its own: packing of copies, exact byte/memory
 * accounting, ownership of handed-over buffers and fds, ordering, iovec export. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "stream/sendq.h"

#define U(x) ((unsigned long long)(x))

static void expect_acct(const tt__sendq_t *q, uint64_t bytes, uint64_t mem, uint64_t total)
{
    cr_assert_eq(q->bytes, bytes, "bytes %llu, want %llu", U(q->bytes), U(bytes));
    cr_assert_eq(q->mem, mem, "mem %llu, want %llu", U(q->mem), U(mem));
    cr_assert_eq(q->total, total, "total %llu, want %llu", U(q->total), U(total));
}

static int push_str(tt__sendq_t *q, const char *s)
{
    struct iovec iov = {.iov_base = (void *)s, .iov_len = strlen(s)};
    return tt__sendq_push_copy(q, &iov, 1, iov.iov_len);
}

/* Concatenate what fill_iov exports into out (NUL-terminated); returns iov count. */
static int export_text(const tt__sendq_t *q, char *out, size_t cap, int max)
{
    struct iovec iov[64];
    size_t bytes = 12345, sum = 0;
    int n = tt__sendq_fill_iov(q, iov, max, &bytes);
    for (int i = 0; i < n; i++) {
        cr_assert(sum + iov[i].iov_len < cap);
        memcpy(out + sum, iov[i].iov_base, iov[i].iov_len);
        sum += iov[i].iov_len;
    }
    out[sum] = '\0';
    cr_assert_eq(bytes, sum, "fill_iov bytes %zu, iov sum %zu", bytes, sum);
    return n;
}

/* A free callback that records what it was handed. */
typedef struct {
    int calls;
    void *buf;
    void *arg;
} freed_t;

static void free_rec(void *buf, void *arg)
{
    freed_t *f = arg;
    f->calls++;
    f->buf = buf;
    f->arg = arg;
    free(buf);
}

static int temp_file(size_t len)
{
    int fd = memfd_create("sendq-test", MFD_CLOEXEC);
    cr_assert_geq(fd, 0, "memfd_create: %s", strerror(errno));
    cr_assert_eq(ftruncate(fd, (off_t)len), 0);
    return fd;
}

static bool fd_is_closed(int fd)
{
    errno = 0;
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

Test(sendq, empty_queue_exports_nothing_and_clears_to_zero)
{
    tt__sendq_t q;
    struct iovec iov[4];
    size_t bytes = 99;

    tt__sendq_init(&q, NULL);
    cr_assert(tt__sendq_empty(&q));
    expect_acct(&q, 0, 0, 0);
    cr_assert_eq(tt__sendq_fill_iov(&q, iov, 4, &bytes), 0);
    cr_assert_eq(bytes, 0);
    tt__sendq_consume(&q, 100); /* nothing to consume: no effect */
    cr_assert_null(tt__sendq_pop(&q));
    cr_assert_eq(tt__sendq_clear(&q, NULL, NULL), 0);
    expect_acct(&q, 0, 0, 0);
}

Test(sendq, many_small_copies_pack_into_few_iovecs_in_order)
{
    tt__sendq_t q;
    char expect[10001], got[10001];

    tt__sendq_init(&q, NULL);
    for (int i = 0; i < 1000; i++) {
        char piece[12];
        snprintf(piece, sizeof(piece), "%010d", i);
        memcpy(expect + i * 10, piece, 10);
        cr_assert_eq(push_str(&q, piece), 0);
    }
    expect[10000] = '\0';
    expect_acct(&q, 10000, 10000, 10000);
    int n = export_text(&q, got, sizeof(got), 64);
    /* One entry per send would be 1000 iovecs; packed chunks give a handful. */
    cr_assert(n >= 1 && n <= 3, "1000 sends of 10 bytes exported as %d iovecs", n);
    cr_assert_str_eq(got, expect);
    tt__sendq_clear(&q, NULL, NULL);
}

Test(sendq, copy_of_several_buffers_is_one_contiguous_send)
{
    tt__sendq_t q;
    char got[64];
    struct iovec iov[3] = {{"abc", 3}, {"", 0}, {"defgh", 5}};

    tt__sendq_init(&q, NULL);
    cr_assert_eq(tt__sendq_push_copy(&q, iov, 3, 8), 0);
    expect_acct(&q, 8, 8, 8);
    cr_assert_eq(export_text(&q, got, sizeof(got), 8), 1);
    cr_assert_str_eq(got, "abcdefgh");
    cr_assert_eq(tt__sendq_clear(&q, NULL, NULL), 8);
}

Test(sendq, copy_larger_than_a_chunk_is_kept_whole)
{
    tt__sendq_t q;
    size_t len = 100000;
    char *big = malloc(len);
    cr_assert_not_null(big);
    for (size_t i = 0; i < len; i++)
        big[i] = (char)(i * 7);

    tt__sendq_init(&q, NULL);
    cr_assert_eq(push_str(&q, "x"), 0);
    struct iovec iov = {big, len};
    cr_assert_eq(tt__sendq_push_copy(&q, &iov, 1, len), 0);
    expect_acct(&q, len + 1, len + 1, len + 1);

    struct iovec out[8];
    size_t bytes;
    int n = tt__sendq_fill_iov(&q, out, 8, &bytes);
    cr_assert_eq(bytes, len + 1, "bytes %zu", bytes);
    size_t off = 0;
    char *joined = malloc(len + 1);
    for (int i = 0; i < n; i++) {
        memcpy(joined + off, out[i].iov_base, out[i].iov_len);
        off += out[i].iov_len;
    }
    cr_assert_eq(joined[0], 'x');
    cr_assert_eq(memcmp(joined + 1, big, len), 0);
    free(joined);
    free(big);
    tt__sendq_clear(&q, NULL, NULL);
}

Test(sendq, copy_too_large_for_a_chunk_is_refused_and_changes_nothing)
{
    tt__sendq_t q;
    char one = 'a';
    /* A chunk's size is 32-bit: a longer copy fails before anything is read from
     * the (deliberately short) buffer. */
    struct iovec iov = {&one, (size_t)1 << 33};

    tt__sendq_init(&q, NULL);
    cr_assert_eq(tt__sendq_push_copy(&q, &iov, 1, iov.iov_len), -ENOMEM);
    cr_assert(tt__sendq_empty(&q));
    expect_acct(&q, 0, 0, 0);
}

Test(sendq, consume_of_copied_bytes_advances_accounting_exactly)
{
    tt__sendq_t q;
    char got[64];

    tt__sendq_init(&q, NULL);
    cr_assert_eq(push_str(&q, "0123456789"), 0);
    tt__sendq_consume(&q, 4);
    expect_acct(&q, 6, 6, 10);
    export_text(&q, got, sizeof(got), 8);
    cr_assert_str_eq(got, "456789");
    cr_assert_eq(push_str(&q, "ab"), 0); /* appended behind the partly sent bytes */
    expect_acct(&q, 8, 8, 12);
    export_text(&q, got, sizeof(got), 8);
    cr_assert_str_eq(got, "456789ab");
    tt__sendq_consume(&q, 8);
    cr_assert(tt__sendq_empty(&q));
    expect_acct(&q, 0, 0, 12);
    /* Consuming more than is queued stops at the end. */
    cr_assert_eq(push_str(&q, "z"), 0);
    tt__sendq_consume(&q, 1000);
    cr_assert(tt__sendq_empty(&q));
    expect_acct(&q, 0, 0, 13);
}

Test(sendq, owned_buffer_is_freed_once_with_its_pointer_when_fully_consumed)
{
    tt__sendq_t q;
    freed_t f = {0};
    char *buf = strdup("handed over");

    tt__sendq_init(&q, NULL);
    cr_assert_eq(tt__sendq_push_owned(&q, buf, 11, free_rec, &f), 0);
    expect_acct(&q, 11, 11, 11);
    char got[64];
    cr_assert_eq(export_text(&q, got, sizeof(got), 8), 1);
    cr_assert_str_eq(got, "handed over");
    /* Read in place, not copied. */
    struct iovec iov;
    size_t bytes;
    tt__sendq_fill_iov(&q, &iov, 1, &bytes);
    cr_assert_eq(iov.iov_base, buf);

    tt__sendq_consume(&q, 10);
    cr_assert_eq(f.calls, 0, "freed after a partial consume");
    expect_acct(&q, 1, 1, 11);
    tt__sendq_fill_iov(&q, &iov, 1, &bytes);
    cr_assert_eq(iov.iov_base, buf + 10);
    cr_assert_eq(bytes, 1);

    tt__sendq_consume(&q, 1);
    cr_assert_eq(f.calls, 1, "free calls %d", f.calls);
    cr_assert_eq(f.buf, buf);
    cr_assert_eq(f.arg, &f);
    cr_assert(tt__sendq_empty(&q));
    expect_acct(&q, 0, 0, 11);
}

Test(sendq, owned_buffer_is_freed_once_when_the_queue_is_cleared)
{
    tt__sendq_t q;
    freed_t f = {0};
    char *buf = malloc(1000);

    tt__sendq_init(&q, NULL);
    cr_assert_eq(push_str(&q, "head"), 0);
    cr_assert_eq(tt__sendq_push_owned(&q, buf, 1000, free_rec, &f), 0);
    tt__sendq_consume(&q, 6); /* "head" and 2 owned bytes gone */
    expect_acct(&q, 998, 998, 1004);
    cr_assert_eq(tt__sendq_clear(&q, NULL, NULL), 998);
    cr_assert_eq(f.calls, 1, "free calls %d", f.calls);
    cr_assert_eq(f.buf, buf);
    expect_acct(&q, 0, 0, 1004);
    cr_assert_eq(tt__sendq_clear(&q, NULL, NULL), 0);
    cr_assert_eq(f.calls, 1);
}

Test(sendq, owned_buffer_without_free_callback_is_just_dropped)
{
    tt__sendq_t q;
    static char stat_buf[] = "static";

    tt__sendq_init(&q, NULL);
    cr_assert_eq(tt__sendq_push_owned(&q, stat_buf, 6, NULL, NULL), 0);
    tt__sendq_consume(&q, 6);
    cr_assert(tt__sendq_empty(&q));
    expect_acct(&q, 0, 0, 6);
}

Test(sendq, zero_length_copies_queue_nothing)
{
    tt__sendq_t q;

    tt__sendq_init(&q, NULL);
    cr_assert_eq(tt__sendq_push_copy(&q, NULL, 0, 0), 0);
    cr_assert_eq(tt__sendq_push_front_copy(&q, NULL, 0), 0);
    cr_assert(tt__sendq_empty(&q), "a zero-length copy left an entry");
    expect_acct(&q, 0, 0, 0);
}

Test(sendq, zero_length_owned_buffer_is_released_by_the_next_consume)
{
    tt__sendq_t q;
    freed_t f = {0};
    char *buf = malloc(1);

    tt__sendq_init(&q, NULL);
    cr_assert_eq(tt__sendq_push_owned(&q, buf, 0, free_rec, &f), 0);
    expect_acct(&q, 0, 0, 0);
    cr_assert(!tt__sendq_empty(&q));
    /* A writer that got 0 bytes out of a 0-byte export must still make progress:
     * otherwise the entry (and its free callback) would wait forever. */
    struct iovec iov[2];
    size_t bytes = 7;
    int n = tt__sendq_fill_iov(&q, iov, 2, &bytes);
    cr_assert_eq(bytes, 0);
    cr_assert(n <= 1, "n %d", n);
    tt__sendq_consume(&q, 0);
    cr_assert_eq(f.calls, 1, "free calls %d", f.calls);
    cr_assert_eq(f.buf, buf);
    cr_assert(tt__sendq_empty(&q));
}

Test(sendq, consume_crosses_entry_boundaries_in_order)
{
    tt__sendq_t q;
    freed_t f = {0};
    char got[64];
    char *owned = strdup("BBBBBBBBBBBBBBBBBBBB"); /* 20 */

    tt__sendq_init(&q, NULL);
    cr_assert_eq(push_str(&q, "AAAAAAAAAA"), 0); /* 10 */
    cr_assert_eq(tt__sendq_push_owned(&q, owned, 20, free_rec, &f), 0);
    cr_assert_eq(push_str(&q, "CCCCC"), 0); /* a new chunk: behind the owned entry */
    expect_acct(&q, 35, 35, 35);
    cr_assert_eq(export_text(&q, got, sizeof(got), 8), 3);

    tt__sendq_consume(&q, 25); /* all of A, 15 of B */
    expect_acct(&q, 10, 10, 35);
    cr_assert_eq(f.calls, 0);
    cr_assert_eq(export_text(&q, got, sizeof(got), 8), 2);
    cr_assert_str_eq(got, "BBBBBCCCCC");

    tt__sendq_consume(&q, 5); /* exactly the end of B */
    cr_assert_eq(f.calls, 1);
    cr_assert_eq(export_text(&q, got, sizeof(got), 8), 1);
    cr_assert_str_eq(got, "CCCCC");
    tt__sendq_consume(&q, 5);
    cr_assert(tt__sendq_empty(&q));
    expect_acct(&q, 0, 0, 35);
}

Test(sendq, fill_iov_stops_at_max_count)
{
    tt__sendq_t q;
    static char bufs[5][4] = {"aaa", "bbb", "ccc", "ddd", "eee"};
    struct iovec iov[8];
    size_t bytes;

    tt__sendq_init(&q, NULL);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(tt__sendq_push_owned(&q, bufs[i], 3, NULL, NULL), 0);
    cr_assert_eq(tt__sendq_fill_iov(&q, iov, 3, &bytes), 3);
    cr_assert_eq(bytes, 9, "bytes %zu", bytes);
    cr_assert_eq(iov[2].iov_base, bufs[2]);
    cr_assert_eq(tt__sendq_fill_iov(&q, iov, 1, &bytes), 1);
    cr_assert_eq(bytes, 3);
    cr_assert_eq(tt__sendq_fill_iov(&q, iov, 0, &bytes), 0);
    cr_assert_eq(bytes, 0);
    cr_assert_eq(tt__sendq_fill_iov(&q, iov, 8, &bytes), 5);
    cr_assert_eq(bytes, 15);
    tt__sendq_clear(&q, NULL, NULL);
}

Test(sendq, fill_iov_stops_at_a_file_entry)
{
    tt__sendq_t q;
    struct iovec iov[8];
    size_t bytes;
    int fd = temp_file(100);

    tt__sendq_init(&q, NULL);
    cr_assert_eq(push_str(&q, "before"), 0);
    cr_assert_eq(tt__sendq_push_file(&q, TT__SQ_FILE, fd, 0, 100, 0), 0);
    cr_assert_eq(push_str(&q, "after"), 0);
    cr_assert_eq(tt__sendq_fill_iov(&q, iov, 8, &bytes), 1);
    cr_assert_eq(bytes, 6);
    tt__sendq_consume(&q, 6);
    /* The file is at the head now: nothing to export as memory. */
    cr_assert_eq(tt__sendq_fill_iov(&q, iov, 8, &bytes), 0);
    cr_assert_eq(bytes, 0);
    cr_assert_eq(tt__sendq_clear(&q, NULL, NULL), 105);
    cr_assert(!fd_is_closed(fd), "a borrowed fd was closed");
    close(fd);
}

Test(sendq, file_segment_counts_bytes_not_memory_and_closes_owned_fd_at_its_end)
{
    tt__sendq_t q;
    int fd = temp_file(1000);

    tt__sendq_init(&q, NULL);
    cr_assert_eq(tt__sendq_push_file(&q, TT__SQ_FILE, fd, 200, 500, 1), 0);
    expect_acct(&q, 500, 0, 500);
    cr_assert_eq(q.head->u.file.off, 200);

    tt__sendq_consume(&q, 300);
    expect_acct(&q, 200, 0, 500);
    cr_assert_eq(q.head->u.file.off, 500, "offset %llu", U(q.head->u.file.off));
    cr_assert_eq(q.head->u.file.remain, 200);
    cr_assert(!fd_is_closed(fd), "closed before the segment was sent");

    tt__sendq_consume(&q, 200);
    cr_assert(tt__sendq_empty(&q));
    expect_acct(&q, 0, 0, 500);
    cr_assert(fd_is_closed(fd), "owned fd %d still open after its segment was sent", fd);
}

Test(sendq, owned_file_fd_is_closed_when_the_queue_is_cleared)
{
    tt__sendq_t q;
    int fd = temp_file(64);

    tt__sendq_init(&q, NULL);
    cr_assert_eq(tt__sendq_push_file(&q, TT__SQ_FILE, fd, 0, 64, 1), 0);
    tt__sendq_consume(&q, 10);
    cr_assert_eq(tt__sendq_clear(&q, NULL, NULL), 54);
    cr_assert(fd_is_closed(fd), "owned fd %d still open after clear", fd);
    expect_acct(&q, 0, 0, 64);
}

Test(sendq, unbounded_stream_counts_only_what_was_read)
{
    tt__sendq_t q;
    int p[2];
    char got[64];

    cr_assert_eq(pipe(p), 0);
    tt__sendq_init(&q, NULL);
    cr_assert_eq(push_str(&q, "hdr:"), 0);
    cr_assert_eq(tt__sendq_push_file(&q, TT__SQ_STREAM, p[0], 0, TT_FILE_TO_EOF, 1), 0);
    expect_acct(&q, 4, 4, 4); /* an unbounded stream's length is unknown */
    tt__sendq_consume(&q, 4);
    cr_assert_eq(q.head->kind, TT__SQ_STREAM);

    /* The owner read 5 bytes from the stream and puts them in front of it. */
    tt__sendq_stream_took(&q, 5);
    expect_acct(&q, 0, 0, 4);
    cr_assert_eq(tt__sendq_push_front_copy(&q, "hello", 5), 0);
    expect_acct(&q, 5, 5, 9);
    cr_assert_eq(export_text(&q, got, sizeof(got), 8), 1);
    cr_assert_str_eq(got, "hello");
    tt__sendq_consume(&q, 5);
    cr_assert_eq(q.head->kind, TT__SQ_STREAM, "the stream entry stays until popped");
    expect_acct(&q, 0, 0, 9);

    /* End of stream: the owner pops it; the owned fd is closed. */
    cr_assert_null(tt__sendq_pop(&q));
    cr_assert(tt__sendq_empty(&q));
    expect_acct(&q, 0, 0, 9);
    cr_assert(fd_is_closed(p[0]), "owned stream fd still open");
    close(p[1]);
}

Test(sendq, bounded_stream_counts_its_remaining_length)
{
    tt__sendq_t q;
    int p[2];

    cr_assert_eq(pipe(p), 0);
    tt__sendq_init(&q, NULL);
    cr_assert_eq(tt__sendq_push_file(&q, TT__SQ_STREAM, p[0], 0, 100, 0), 0);
    expect_acct(&q, 100, 0, 0); /* known length, but counted in total as read */
    tt__sendq_stream_took(&q, 30);
    expect_acct(&q, 70, 0, 0);
    cr_assert_eq(q.head->u.file.remain, 70);
    cr_assert_eq(tt__sendq_push_front_copy(&q, "0123456789012345678901234567890", 30), 0);
    expect_acct(&q, 100, 30, 30);
    tt__sendq_consume(&q, 30);
    expect_acct(&q, 70, 0, 30);
    cr_assert_null(tt__sendq_pop(&q)); /* ended early: the rest is dropped */
    expect_acct(&q, 0, 0, 30);
    cr_assert(!fd_is_closed(p[0]), "a borrowed stream fd was closed");
    close(p[0]);
    close(p[1]);
}

typedef struct {
    int calls;
    void *watch;
    void *arg;
} watch_rec_t;

static void on_watch(void *watch, void *arg)
{
    watch_rec_t *r = arg;
    r->calls++;
    r->watch = watch;
    r->arg = arg;
}

Test(sendq, clear_hands_back_each_stream_watch_once)
{
    tt__sendq_t q;
    watch_rec_t r = {0};
    int p[2], marker;

    cr_assert_eq(pipe(p), 0);
    tt__sendq_init(&q, NULL);
    cr_assert_eq(push_str(&q, "x"), 0);
    cr_assert_eq(tt__sendq_push_file(&q, TT__SQ_STREAM, p[0], 0, 50, 1), 0);
    q.tail->u.file.watch = &marker; /* what the connection layer sets when it waits */
    cr_assert_eq(tt__sendq_clear(&q, on_watch, &r), 51);
    cr_assert_eq(r.calls, 1, "on_watch calls %d", r.calls);
    cr_assert_eq(r.watch, &marker);
    cr_assert_eq(r.arg, &r);
    cr_assert(fd_is_closed(p[0]));
    close(p[1]);
}

Test(sendq, pop_returns_the_stream_watch)
{
    tt__sendq_t q;
    int p[2], marker;

    cr_assert_eq(pipe(p), 0);
    tt__sendq_init(&q, NULL);
    cr_assert_eq(tt__sendq_push_file(&q, TT__SQ_STREAM, p[0], 0, TT_FILE_TO_EOF, 0), 0);
    q.head->u.file.watch = &marker;
    cr_assert_eq(tt__sendq_pop(&q), &marker);
    cr_assert(tt__sendq_empty(&q));
    close(p[0]);
    close(p[1]);
}

Test(sendq, pop_of_memory_entries_drops_their_bytes)
{
    tt__sendq_t q;
    freed_t f = {0};

    tt__sendq_init(&q, NULL);
    cr_assert_eq(push_str(&q, "abcdef"), 0);
    cr_assert_eq(tt__sendq_push_owned(&q, malloc(8), 8, free_rec, &f), 0);
    tt__sendq_consume(&q, 2);
    cr_assert_null(tt__sendq_pop(&q));
    expect_acct(&q, 8, 8, 14);
    cr_assert_null(tt__sendq_pop(&q));
    cr_assert_eq(f.calls, 1);
    expect_acct(&q, 0, 0, 14);
    cr_assert(tt__sendq_empty(&q));
}

Test(sendq, push_front_copy_goes_before_everything_queued)
{
    tt__sendq_t q;
    char got[64];

    tt__sendq_init(&q, NULL);
    /* Into an empty queue: it becomes head and tail. */
    cr_assert_eq(tt__sendq_push_front_copy(&q, "one ", 4), 0);
    cr_assert_eq(q.head, q.tail);
    cr_assert_eq(push_str(&q, "two "), 0);
    cr_assert_eq(push_str(&q, "three"), 0);
    cr_assert_eq(tt__sendq_push_front_copy(&q, "zero ", 5), 0);
    expect_acct(&q, 18, 18, 18);
    export_text(&q, got, sizeof(got), 8);
    cr_assert_str_eq(got, "zero one two three");
    tt__sendq_consume(&q, 9);
    export_text(&q, got, sizeof(got), 8);
    cr_assert_str_eq(got, "two three");
    cr_assert_eq(tt__sendq_clear(&q, NULL, NULL), 9);
}

/* alloc: the heap the queue holds, what the hard cap limits. */
Test(sendq, alloc_counts_chunks_as_allocated_and_a_node_per_other_entry)
{
    tt__sendq_t q;
    static char one = 'x';
    tt__sendq_init(&q, NULL);
    cr_assert_eq(q.alloc, 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tt__sendq_push_owned(&q, &one, 1, NULL, NULL), 0);
    cr_expect_eq(q.alloc, 3 * (TT__SQ_NODE_COST + 1), "alloc %llu", U(q.alloc));
    struct iovec iov = {.iov_base = "abc", .iov_len = 3};
    cr_assert_eq(tt__sendq_push_copy(&q, &iov, 1, 3), 0); /* a later chunk: 16 KiB */
    cr_expect_eq(q.alloc, 3 * (TT__SQ_NODE_COST + 1) + TT__SQ_CHUNK_COST(16384), "alloc %llu",
                 U(q.alloc));
    cr_assert_eq(tt__sendq_push_copy(&q, &iov, 1, 3), 0); /* packed: no more heap */
    cr_expect_eq(q.alloc, 3 * (TT__SQ_NODE_COST + 1) + TT__SQ_CHUNK_COST(16384));
    tt__sendq_consume(&q, 2);
    cr_expect_eq(q.alloc, 1 * (TT__SQ_NODE_COST + 1) + TT__SQ_CHUNK_COST(16384));
    tt__sendq_consume(&q, 4); /* the chunk is held until its last byte goes */
    cr_expect_eq(q.alloc, TT__SQ_CHUNK_COST(16384), "alloc %llu", U(q.alloc));
    tt__sendq_consume(&q, 3);
    cr_expect_eq(q.alloc, 0, "alloc %llu after everything went", U(q.alloc));
    cr_assert_eq(tt__sendq_push_owned(&q, &one, 1, NULL, NULL), 0);
    tt__sendq_clear(&q, NULL, NULL);
    cr_expect_eq(q.alloc, 0);
}

/* The marks keep_unsent relies on: which entries do not start at a send boundary. */
Test(sendq, entries_mark_a_partly_taken_send_and_a_copy_split_over_chunks)
{
    tt__sendq_t q;
    static char big[20000];
    tt__sendq_init(&q, NULL);
    struct iovec a = {.iov_base = big, .iov_len = 4000};
    cr_assert_eq(tt__sendq_push_copy(&q, &a, 1, 4000), 0); /* first chunk: 4096 bytes */
    struct iovec b = {.iov_base = big, .iov_len = 20000};
    cr_assert_eq(tt__sendq_push_copy(&q, &b, 1, 20000), 0); /* 96 bytes fit, the rest splits */
    cr_assert_neq(q.head, q.tail);
    cr_expect_eq(q.head->flags & (TT__SQE_STARTED | TT__SQE_CONT), 0);
    cr_expect(q.tail->flags & TT__SQE_CONT, "the chunk holding the rest of a split send");
    tt__sendq_consume(&q, 10);
    cr_expect(q.head->flags & TT__SQE_STARTED, "the head after a partial write");
    tt__sendq_clear(&q, NULL, NULL);
    static char one = '1';
    cr_assert_eq(tt__sendq_push_owned(&q, &one, 1, NULL, NULL), 0);
    cr_expect_eq(q.head->flags & (TT__SQE_STARTED | TT__SQE_CONT), 0);
    tt__sendq_consume(&q, 1); /* whole: released, never marked */
    cr_expect(tt__sendq_empty(&q));
}

/* A broadcast's short lines of one read: the first copy's chunk is sized for the
 * bytes known to follow, and the rest pack into it, one contiguous buffer. */
Test(sendq, a_size_hint_makes_the_chunk_and_an_outgrown_one_doubles)
{
    tt__sendq_t q;
    char line[82], want[16 * 82 + 1], got[16 * 82 + 1];

    tt__sendq_init(&q, NULL);
    for (int i = 0; i < 16; i++) {
        memset(line, 'a' + i, 64);
        memcpy(want + i * 64, line, 64);
        /* these 64 bytes and the 15 - i lines behind them */
        cr_assert_eq(tt__sendq_push_bytes(&q, line, 64, (size_t)(16 - i) * 64), 0);
        cr_assert_eq(q.alloc, TT__SQ_CHUNK_COST(16 * 64), "alloc %llu after line %d",
                     U(q.alloc), i);
    }
    want[16 * 64] = '\0';
    expect_acct(&q, 16 * 64, 16 * 64, 16 * 64);
    cr_assert_eq(q.head, q.tail, "16 lines in one chunk");
    cr_assert_eq(export_text(&q, got, sizeof(got), 64), 1);
    cr_assert_str_eq(got, want);
    /* Nothing known to follow: the next line goes to a default-size chunk. */
    cr_assert_eq(tt__sendq_push_bytes(&q, "z", 1, 0), 0);
    cr_expect_eq(q.alloc, TT__SQ_CHUNK_COST(16 * 64) + TT__SQ_CHUNK_COST(16384));
    cr_assert_eq(tt__sendq_clear(&q, NULL, NULL), 16 * 64 + 1);

    /* The estimate falls short (each queued line is longer than the read's lines
     * it was counted from, as a chat's prefixed lines are): the chunk after a
     * full one is twice its size, so 16 lines of 82 bytes take two chunks, not a
     * default block for the last ones. */
    for (int i = 0; i < 16; i++) {
        memset(line, 'A' + i, sizeof(line));
        memcpy(want + i * 82, line, 82);
        cr_assert_eq(tt__sendq_push_bytes(&q, line, 82, 82 + (size_t)(15 - i) * 64), 0);
    }
    want[16 * 82] = '\0';
    cr_assert_eq(q.head->next, q.tail, "two chunks");
    cr_expect_eq(q.alloc, TT__SQ_CHUNK_COST(82 + 15 * 64) + TT__SQ_CHUNK_COST(2 * (82 + 15 * 64)),
                 "alloc %llu", U(q.alloc));
    cr_assert_eq(export_text(&q, got, sizeof(got), 82), 2);
    cr_assert_str_eq(got, want);
    tt__sendq_clear(&q, NULL, NULL);

    /* Nothing known, or more than a first chunk holds: the default. */
    cr_assert_eq(tt__sendq_push_bytes(&q, "abc", 3, 0), 0);
    cr_expect_eq(q.alloc, TT__SQ_CHUNK_COST(4096), "alloc %llu", U(q.alloc));
    tt__sendq_clear(&q, NULL, NULL);
    cr_assert_eq(tt__sendq_push_bytes(&q, "abc", 3, 1 << 20), 0);
    cr_expect_eq(q.alloc, TT__SQ_CHUNK_COST(4096), "alloc %llu", U(q.alloc));
    tt__sendq_clear(&q, NULL, NULL);
    /* Zero bytes queue nothing, whatever the hint. */
    cr_assert_eq(tt__sendq_push_bytes(&q, "", 0, 100), 0);
    cr_assert(tt__sendq_empty(&q));
    cr_assert_eq(q.alloc, 0);
}

Test(sendq, an_owned_entry_grows_only_by_the_next_bytes_of_its_own_buffer)
{
    tt__sendq_t q;
    freed_t f = {0}, g = {0};
    char *buf = malloc(64);
    memcpy(buf, "one two three", 13);

    tt__sendq_init(&q, NULL);
    cr_assert_eq(tt__sendq_push_owned(&q, buf, 4, free_rec, &f), 0);
    uint64_t alloc = q.alloc;
    /* Not the bytes right after it, nor released the same way: refused, untouched. */
    cr_assert_eq(tt__sendq_extend_owned(&q, buf + 5, 4, free_rec, &f), 0);
    cr_assert_eq(tt__sendq_extend_owned(&q, buf + 4, 4, free_rec, &g), 0);
    cr_assert_eq(tt__sendq_extend_owned(&q, buf + 4, 4, NULL, &f), 0);
    expect_acct(&q, 4, 4, 4);
    /* The next bytes: the one entry grows, counted exactly. */
    cr_assert_eq(tt__sendq_extend_owned(&q, buf + 4, 4, free_rec, &f), 1);
    cr_assert_eq(tt__sendq_extend_owned(&q, buf + 8, 5, free_rec, &f), 1);
    expect_acct(&q, 13, 13, 13);
    cr_assert_eq(q.alloc, alloc + 9);
    char got[64];
    cr_assert_eq(export_text(&q, got, sizeof(got), 8), 1, "one iovec for the grown entry");
    cr_assert_str_eq(got, "one two three");
    /* A copy behind it: the owned entry is no longer the tail. */
    cr_assert_eq(push_str(&q, "!"), 0);
    cr_assert_eq(tt__sendq_extend_owned(&q, buf + 13, 1, free_rec, &f), 0);
    tt__sendq_consume(&q, 12);
    cr_assert_eq(f.calls, 0, "freed with a byte left");
    tt__sendq_consume(&q, 2);
    cr_assert_eq(f.calls, 1, "free calls %d", f.calls);
    cr_assert(tt__sendq_empty(&q));
    cr_assert_eq(q.alloc, 0);
    expect_acct(&q, 0, 0, 14);
}

Test(sendq, a_shared_entry_is_charged_for_what_it_pins_and_growing_into_it_costs_nothing)
{
    tt__sendq_t q;
    freed_t f = {0};
    char *buf = malloc(100);
    memset(buf, 'p', 100);

    tt__sendq_init(&q, NULL);
    /* 10 bytes of a 100-byte buffer: the other 90 are charged with them. */
    cr_assert_eq(tt__sendq_push_shared(&q, buf, 10, 90, free_rec, &f), 0);
    uint64_t alloc = q.alloc;
    cr_assert_eq(alloc, TT__SQ_NODE_COST + 100);
    expect_acct(&q, 10, 10, 10);
    /* Growing over pinned bytes moves them from pinned to queued. */
    cr_assert_eq(tt__sendq_extend_owned(&q, buf + 10, 60, free_rec, &f), 1);
    cr_assert_eq(q.alloc, alloc);
    expect_acct(&q, 70, 70, 70);
    tt__sendq_consume(&q, 70);
    cr_assert_eq(f.calls, 1);
    cr_assert_eq(q.alloc, 0, "alloc %llu after the release", U(q.alloc));
}
