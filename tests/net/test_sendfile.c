/* tt_send_file: regular files by sendfile(2) (whole, segments, past the end), pipes
 * as stream sources, descriptor ownership, and no SIGPIPE from a reset peer. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

typedef struct rec {
    int opens, ends, errors, closes;
    int error_arg;
    char log[8];
    size_t nlog;
    tt_close_info_t info;
    int file_fd_flags_at_close; /* fcntl(F_GETFD) of the file in on_close */
    int file_fd_errno_at_close;
    tt_conn_t *conn;
} rec_t;

static rec_t srv;
static tt_loop_t *loop;
static tt_server_t *server;
static int file_fd = -1;
static void (*on_open_hook)(tt_conn_t *c);
static void (*on_end_hook)(tt_conn_t *c);

static void s_open(tt_conn_t *c)
{
    srv.opens++;
    srv.conn = c;
    if (on_open_hook)
        on_open_hook(c);
}
static void s_end(tt_conn_t *c)
{
    srv.ends++;
    if (on_end_hook)
        on_end_hook(c);
}
static void s_error(tt_conn_t *c, int err)
{
    (void)c;
    srv.errors++;
    srv.error_arg = err;
    srv.log[srv.nlog++] = 'E';
}
static void s_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    srv.closes++;
    srv.info = *info;
    srv.log[srv.nlog++] = 'C';
    errno = 0;
    srv.file_fd_flags_at_close = fcntl(file_fd, F_GETFD);
    srv.file_fd_errno_at_close = errno;
    srv.conn = NULL;
    if (server != NULL) {
        tt_server_close(server);
        server = NULL;
    }
}

static tt_addr_t start_server(bool half_open)
{
    tt_server_opts_t o = {.half_open = half_open};
    tt_conn_handlers_t h = {.on_open = s_open, .on_end = s_end, .on_error = s_error,
                            .on_close = s_close};
    tt_addr_t any = th_loopback(0), addr;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, &o, &h, NULL, &server), 0);
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    return addr;
}

/* An unlinked temporary file holding `len` bytes of the pattern; its FNV in *fnv. */
static int pattern_file(uint64_t len, uint64_t *fnv)
{
    char path[] = "/tmp/tt-sendfile-XXXXXX";
    static char buf[1 << 20];
    int fd = mkstemp(path);
    uint64_t h = TH_FNV_INIT;

    cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
    unlink(path);
    for (uint64_t off = 0; off < len;) {
        size_t n = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
        th_pattern(buf, n, off);
        h = th_fnv1a64(h, buf, n);
        cr_assert_eq(write(fd, buf, n), (ssize_t)n);
        off += n;
    }
    if (fnv != NULL)
        *fnv = h;
    return fd;
}

static bool fd_is_closed(int fd)
{
    errno = 0;
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

/* ---- a whole file, then close ---------------------------------------------------- */

#define HUNDRED_MB ((uint64_t)100 << 20)
static struct {
    int r;
    bool open_after_call;
} call;

static void send_whole_file_then_end(tt_conn_t *c)
{
    call.r = tt_send_file(c, file_fd, 0, TT_FILE_TO_EOF, TT_FILE_CLOSE_FD | TT_FILE_THEN_END);
    call.open_after_call = !fd_is_closed(file_fd);
}

Test(sendfile, send_then_close_100mb_file_arrives_whole_and_fd_is_closed, .timeout = 120)
{
    uint64_t fnv;
    tt_addr_t addr = start_server(false);
    th_sink_t sink = {0};
    file_fd = pattern_file(HUNDRED_MB, &fnv);
    on_open_hook = send_whole_file_then_end;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 60000);
    th_run(loop, 60000);
    th_sink_join(&sink);
    close(fd);

    cr_expect_eq(call.r, 0, "tt_send_file: %d %s", call.r, tt_strerror(call.r));
    cr_expect(call.open_after_call, "the fd was closed before it was sent");
    cr_expect_eq(sink.got, HUNDRED_MB, "peer got %llu of %llu", (unsigned long long)sink.got,
                 (unsigned long long)HUNDRED_MB);
    cr_expect_eq(sink.fnv, fnv, "checksum %016llx, file %016llx", (unsigned long long)sink.fnv,
                 (unsigned long long)fnv);
    cr_expect(sink.eof, "peer saw no FIN (recv error %s)", strerror(sink.err));
    cr_expect_eq(srv.info.kind, TT_CLOSE_LOCAL_END, "kind '%s'",
                 tt_close_kind_name(srv.info.kind));
    cr_expect_eq(srv.info.bytes_written, HUNDRED_MB);
    cr_expect_eq(srv.info.bytes_queued, HUNDRED_MB);
    cr_expect_eq(srv.info.bytes_unsent, 0);
    cr_expect_eq(srv.file_fd_flags_at_close, -1, "file fd still open at on_close");
    cr_expect_eq(srv.file_fd_errno_at_close, EBADF);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- segments ------------------------------------------------------------------- */

#define SEG_FILE ((uint64_t)1 << 20)
static const struct {
    uint64_t off, len, real;
} segs[] = {
    {4096, 10000, 10000},
    {0, 1, 1},
    {500000, 0, 0}, /* empty: nothing is sent */
    {1000000, TT_FILE_TO_EOF, SEG_FILE - 1000000},
    {SEG_FILE - 7, 7, 7},
    {123457, 65537, 65537},
};
#define NSEGS (sizeof(segs) / sizeof(segs[0]))

static void send_segments(tt_conn_t *c)
{
    for (size_t i = 0; i < NSEGS; i++) {
        int r = tt_send_file(c, file_fd, segs[i].off, segs[i].len, 0);
        cr_assert_geq(r, 0, "segment %zu: %s", i, tt_strerror(r));
    }
    cr_assert_eq(tt_end(c, NULL, 0), 0);
}

Test(sendfile, offset_and_length_segments_arrive_exactly)
{
    tt_addr_t addr = start_server(false);
    th_sink_t sink = {0};
    uint64_t want = 0, fnv = TH_FNV_INIT;
    static char buf[SEG_FILE];

    file_fd = pattern_file(SEG_FILE, NULL);
    on_open_hook = send_segments;
    for (size_t i = 0; i < NSEGS; i++) {
        th_pattern(buf, (size_t)segs[i].real, segs[i].off);
        fnv = th_fnv1a64(fnv, buf, (size_t)segs[i].real);
        want += segs[i].real;
    }

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 10000);
    th_run(loop, 10000);
    th_sink_join(&sink);
    close(fd);

    cr_expect_eq(sink.got, want, "peer got %llu of %llu", (unsigned long long)sink.got,
                 (unsigned long long)want);
    cr_expect_eq(sink.fnv, fnv, "segments arrived wrong or out of order");
    cr_expect_eq(srv.info.kind, TT_CLOSE_LOCAL_END);
    cr_expect_eq(srv.info.bytes_written, want);
    /* Not handed over: the library must leave the descriptor open. */
    cr_expect(!fd_is_closed(file_fd), "an fd sent without TT_FILE_CLOSE_FD was closed");
    close(file_fd);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- a length past the end of the file ------------------------------------------ */

static void send_past_eof(tt_conn_t *c)
{
    call.r = tt_send_file(c, file_fd, 0, 20000, TT_FILE_CLOSE_FD);
}

Test(sendfile, length_past_eof_closes_with_io_error_after_the_real_bytes)
{
    tt_addr_t addr = start_server(false);
    th_sink_t sink = {.check_pattern = true};
    file_fd = pattern_file(10000, NULL);
    on_open_hook = send_past_eof;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 5000);
    th_run(loop, 5000);
    th_sink_join(&sink);
    close(fd);

    cr_expect_geq(call.r, 0, "tt_send_file refused at once: %d", call.r);
    cr_expect_eq(sink.got, 10000, "peer got %llu", (unsigned long long)sink.got);
    cr_expect_eq(sink.bad_at, -1);
    cr_expect_eq(srv.closes, 1);
    cr_expect_eq(srv.info.kind, TT_CLOSE_IO_ERROR, "kind '%s'",
                 tt_close_kind_name(srv.info.kind));
    cr_expect_lt(srv.info.error, 0, "error %d", srv.info.error);
    cr_expect_str_eq(srv.log, "EC");
    cr_expect_eq(srv.error_arg, srv.info.error);
    cr_expect_eq(srv.info.bytes_written, 10000);
    cr_expect_eq(srv.info.bytes_unsent, 10000, "unsent %llu: the length the file lacked",
                 (unsigned long long)srv.info.bytes_unsent);
    cr_expect(fd_is_closed(file_fd), "owned fd left open after the error");
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- refused calls -------------------------------------------------------------- */

static struct {
    int past_end, bad_flags, closed_fd, neg_fd, pipe_offset;
    bool past_end_closed, pipe_closed;
    uint64_t queued_total;
} bad;

static void refused_calls(tt_conn_t *c)
{
    tt_conn_stats_t st;
    int p[2];
    int f = pattern_file(100, NULL);

    bad.past_end = tt_send_file(c, f, 101, 1, TT_FILE_CLOSE_FD);
    bad.past_end_closed = fd_is_closed(f);
    f = pattern_file(100, NULL);
    bad.bad_flags = tt_send_file(c, f, 0, 1, 0x100);
    close(f);
    bad.closed_fd = tt_send_file(c, f, 0, 1, 0);
    bad.neg_fd = tt_send_file(c, -1, 0, 1, 0);
    cr_assert_eq(pipe(p), 0);
    bad.pipe_offset = tt_send_file(c, p[0], 5, 1, TT_FILE_CLOSE_FD);
    bad.pipe_closed = fd_is_closed(p[0]);
    close(p[1]);
    cr_assert_eq(tt_conn_get_stats(c, &st), 0);
    bad.queued_total = st.bytes_queued_total;
    cr_assert_eq(tt_end(c, NULL, 0), 0);
}

Test(sendfile, bad_calls_are_refused_and_owned_fds_still_closed)
{
    tt_addr_t addr = start_server(false);
    th_sink_t sink = {0};
    on_open_hook = refused_calls;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 5000);
    th_run(loop, 5000);
    th_sink_join(&sink);
    close(fd);

    cr_expect_eq(bad.past_end, -EINVAL, "offset past EOF: %d", bad.past_end);
    cr_expect(bad.past_end_closed, "owned fd not closed on failure");
    cr_expect_eq(bad.bad_flags, -EINVAL, "unknown flag: %d", bad.bad_flags);
    cr_expect_eq(bad.closed_fd, -EBADF, "closed fd: %d", bad.closed_fd);
    cr_expect_eq(bad.neg_fd, -EINVAL, "fd -1: %d", bad.neg_fd);
    cr_expect_eq(bad.pipe_offset, -ESPIPE, "offset on a pipe: %d", bad.pipe_offset);
    cr_expect(bad.pipe_closed, "owned pipe not closed on failure");
    cr_expect_eq(bad.queued_total, 0);
    cr_expect_eq(sink.got, 0);
    cr_expect_eq(srv.info.kind, TT_CLOSE_LOCAL_END);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- a pipe as the source ------------------------------------------------------- */

#define PIPE_TOTAL ((uint64_t)300 * 1000)

typedef struct writer {
    int fd;
    uint64_t total;
    bool close_after;
    pthread_t th;
} writer_t;

/* Writes the pattern in uneven pieces with pauses, so the library finds the pipe
 * empty many times and has to wait for it. */
static void *writer_main(void *arg)
{
    writer_t *w = arg;
    static char buf[9000];
    uint64_t off = 0;
    unsigned step = 1;

    while (off < w->total) {
        size_t n = 1 + (step * 7919) % sizeof(buf);
        if (n > w->total - off)
            n = (size_t)(w->total - off);
        th_pattern(buf, n, off);
        for (size_t done = 0; done < n;) {
            ssize_t r = write(w->fd, buf + done, n - done);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return NULL;
            done += (size_t)r;
        }
        off += n;
        if (step++ % 4 == 0)
            usleep(2000);
    }
    if (w->close_after)
        close(w->fd);
    return NULL;
}

static int pipe_rd;

static void send_pipe_then_end(tt_conn_t *c)
{
    call.r = tt_send_file(c, pipe_rd, 0, TT_FILE_TO_EOF, TT_FILE_CLOSE_FD | TT_FILE_THEN_END);
}

Test(sendfile, pipe_source_with_slow_writer_delivers_every_byte_in_order)
{
    tt_addr_t addr = start_server(false);
    th_sink_t sink = {.check_pattern = true};
    int p[2];
    writer_t w;

    cr_assert_eq(pipe(p), 0);
    pipe_rd = p[0];
    file_fd = p[0];
    w = (writer_t){.fd = p[1], .total = PIPE_TOTAL, .close_after = true};
    on_open_hook = send_pipe_then_end;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 20000);
    pthread_create(&w.th, NULL, writer_main, &w);
    th_run(loop, 20000);
    pthread_join(w.th, NULL);
    th_sink_join(&sink);
    close(fd);

    cr_expect_eq(call.r, 0, "tt_send_file(pipe): %d", call.r);
    cr_expect_eq(sink.got, PIPE_TOTAL, "peer got %llu of %llu", (unsigned long long)sink.got,
                 (unsigned long long)PIPE_TOTAL);
    cr_expect_eq(sink.bad_at, -1, "stream broken at %ld", sink.bad_at);
    cr_expect(sink.eof);
    cr_expect_eq(srv.info.kind, TT_CLOSE_LOCAL_END, "kind '%s' (%s)",
                 tt_close_kind_name(srv.info.kind), tt_err_name(srv.info.error));
    cr_expect_eq(srv.info.bytes_written, PIPE_TOTAL);
    cr_expect_eq(srv.info.bytes_queued, PIPE_TOTAL);
    cr_expect_eq(srv.file_fd_flags_at_close, -1, "pipe still open at on_close");
    cr_assert_eq(tt_loop_close(loop), 0);
}

#define PIPE_LEN 60000

static void send_pipe_length(tt_conn_t *c)
{
    call.r = tt_send_file(c, pipe_rd, 0, PIPE_LEN, TT_FILE_THEN_END);
}

Test(sendfile, pipe_source_with_length_sends_exactly_that_many)
{
    tt_addr_t addr = start_server(false);
    th_sink_t sink = {.check_pattern = true};
    int p[2];
    static char buf[65536];

    cr_assert_eq(pipe(p), 0);
    pipe_rd = p[0];
    file_fd = p[0];
    /* One pipe's worth (64 KiB) is written up front and the writer stays open. */
    th_pattern(buf, sizeof(buf), 0);
    cr_assert_eq(write(p[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
    on_open_hook = send_pipe_length;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 5000);
    th_run(loop, 5000);
    th_sink_join(&sink);
    close(fd);

    cr_expect_eq(call.r, 0);
    cr_expect_eq(sink.got, PIPE_LEN, "peer got %llu", (unsigned long long)sink.got);
    cr_expect_eq(sink.bad_at, -1);
    cr_expect_eq(srv.info.kind, TT_CLOSE_LOCAL_END);
    /* The rest is still in the pipe, and the pipe (not handed over) is still open. */
    ssize_t left = read(p[0], buf, sizeof(buf));
    cr_expect_eq(left, (ssize_t)(sizeof(buf) - PIPE_LEN), "left in the pipe: %zd", left);
    close(p[0]);
    close(p[1]);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- SIGPIPE from sendfile ------------------------------------------------------ */

/* As in test_send.c: the peer closes at once, our half-open side keeps sending
 * file segments, the peer's RST arrives in CLOSE_WAIT and the next sendfile(2)
 * fails with EPIPE, which raises SIGPIPE: sendfile has no MSG_NOSIGNAL. */
static int sends;

static void send_file_every_20ms(tt_timer_t *t, void *data)
{
    (void)data;
    if (srv.conn == NULL || sends >= 64) {
        tt_timer_close(t);
        return;
    }
    int r = tt_send_file(srv.conn, file_fd, 0, 1000, 0);
    cr_assert(r == 0 || r == -EPIPE, "send_file: %d", r);
    sends++;
}

static void start_file_sends(tt_conn_t *c)
{
    tt_timer_t *t;
    cr_assert_eq(tt_send_file(c, file_fd, 0, 1000, 0), 0);
    cr_assert_eq(tt_timer_init(loop, &t, send_file_every_20ms, NULL), 0);
    cr_assert_eq(tt_timer_start(t, 20, 20), 0);
}

Test(sendfile, send_file_to_a_peer_that_reset_raises_no_sigpipe)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigset_t mask, pending;
    cr_assert_eq(sigaction(SIGPIPE, &dfl, NULL), 0);
    tt_addr_t addr = start_server(true);
    file_fd = pattern_file(1000, NULL);
    on_end_hook = start_file_sends;

    int fd = th_tcp_connect_blocking(&addr);
    close(fd);
    th_run(loop, 5000);

    cr_expect_eq(srv.ends, 1);
    cr_expect_geq(sends, 1);
    cr_expect_eq(srv.info.kind, TT_CLOSE_PEER_RESET, "kind '%s'",
                 tt_close_kind_name(srv.info.kind));
    cr_expect_eq(srv.info.error, -EPIPE, "error %s", tt_err_name(srv.info.error));
    /* The library blocked SIGPIPE only around its call and left none pending. */
    cr_assert_eq(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
    cr_expect(!sigismember(&mask, SIGPIPE), "SIGPIPE left blocked");
    cr_assert_eq(sigpending(&pending), 0);
    cr_expect(!sigismember(&pending, SIGPIPE), "a SIGPIPE left pending");
    close(file_fd);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- files whose st_size is not their length (procfs, sysfs) -------------------- */

/* What a plain read(2) of the file gives, for comparison. */
static size_t read_whole(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t got = 0;
    ssize_t n;
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    while (got < cap && (n = read(fd, buf + got, cap - got)) > 0)
        got += (size_t)n;
    close(fd);
    return got;
}

static const char *special_path;

static void send_special_then_end(tt_conn_t *c)
{
    int fd = open(special_path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "%s: %s", special_path, strerror(errno));
    call.r = tt_send_file(c, fd, 0, TT_FILE_TO_EOF, TT_FILE_CLOSE_FD | TT_FILE_THEN_END);
}

static void check_special_file_arrives(const char *path, const char *first_bytes)
{
    char want[TH_SINK_HEAD];
    tt_addr_t addr = start_server(false);
    th_sink_t sink = {0};
    special_path = path;
    on_open_hook = send_special_then_end;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 5000);
    th_run(loop, 5000);
    th_sink_join(&sink);
    close(fd);

    size_t wn = read_whole(path, want, sizeof(want));
    cr_expect_eq(call.r, 0, "tt_send_file: %s", tt_strerror(call.r));
    cr_expect_gt(sink.got, 0, "%s: nothing arrived", path);
    cr_expect_eq(strncmp(sink.head, first_bytes, strlen(first_bytes)), 0,
                 "%s: got '%.40s'", path, sink.head);
    /* /proc/self/status describes the reader: compare lengths only loosely there. */
    if (strcmp(path, "/proc/self/status") != 0) {
        cr_expect_eq(sink.got, wn, "%s: got %llu bytes, read(2) gives %zu", path,
                     (unsigned long long)sink.got, wn);
        cr_expect_eq(memcmp(sink.head, want, wn), 0, "%s: contents differ", path);
    }
    cr_expect(sink.eof, "no FIN after the file");
    cr_expect_eq(srv.info.kind, TT_CLOSE_LOCAL_END, "kind '%s' (%s)",
                 tt_close_kind_name(srv.info.kind), tt_strerror(srv.info.error));
    cr_expect_eq(srv.info.bytes_written, sink.got);
    cr_expect_eq(srv.info.bytes_queued, sink.got, "queued %llu, sent %llu",
                 (unsigned long long)srv.info.bytes_queued, (unsigned long long)sink.got);
    cr_expect_eq(srv.info.bytes_unsent, 0);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* st_size 0, and sendfile(2) works. */
Test(sendfile, to_eof_of_a_proc_file_with_size_zero_sends_its_contents)
{
    check_special_file_arrives("/proc/version", "Linux");
}

/* st_size 0, and sendfile(2) says EINVAL (a seq file): read(2) takes over. */
Test(sendfile, to_eof_of_a_proc_file_sendfile_refuses_falls_back_to_read)
{
    check_special_file_arrives("/proc/self/status", "Name:");
}

/* st_size 4096, contents a few bytes: the early end of file is the end. */
Test(sendfile, to_eof_of_a_sysfs_file_ends_at_its_real_end)
{
    cr_assert_eq(access("/sys/devices/system/cpu/online", R_OK), 0);
    check_special_file_arrives("/sys/devices/system/cpu/online", "0");
}

/* ---- destroy from a free callback stops the writer ------------------------------ */

static char owned_buf[1000];
static int owned_frees;

static void owned_free_destroys(void *buf, void *arg)
{
    (void)buf;
    owned_frees++;
    cr_assert_eq(tt_destroy(arg, 0), 0);
}

static void send_owned_then_file(tt_conn_t *c)
{
    th_pattern(owned_buf, sizeof(owned_buf), 0);
    cr_assert_geq(tt_send_owned(c, owned_buf, sizeof(owned_buf), owned_free_destroys, c), 0);
    cr_assert_geq(tt_send_file(c, file_fd, 0, TT_FILE_TO_EOF, 0), 0);
}

Test(sendfile, destroy_in_a_free_callback_stops_the_file_behind_it)
{
    tt_addr_t addr = start_server(false);
    th_sink_t sink = {.check_pattern = true};
    file_fd = pattern_file(5000, NULL);
    on_open_hook = send_owned_then_file;

    int fd = th_tcp_connect_blocking(&addr);
    th_sink_start(&sink, fd, false, 5000);
    th_run(loop, 5000);
    th_sink_join(&sink);
    close(fd);
    close(file_fd);

    cr_expect_eq(owned_frees, 1);
    cr_expect_eq(sink.got, sizeof(owned_buf), "peer got %llu bytes: the file went after destroy",
                 (unsigned long long)sink.got);
    cr_expect_eq(srv.info.kind, TT_CLOSE_LOCAL_DESTROY, "kind '%s'",
                 tt_close_kind_name(srv.info.kind));
    cr_expect_eq(srv.info.bytes_written, sizeof(owned_buf));
    cr_expect_eq(srv.info.bytes_unsent, 5000, "unsent %llu",
                 (unsigned long long)srv.info.bytes_unsent);
    cr_assert_eq(tt_loop_close(loop), 0);
}
