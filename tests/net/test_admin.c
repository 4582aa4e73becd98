/* The operations endpoints on a single server's loop: the connection table on a
 * Unix socket and the metrics over HTTP. What they answer, how long a client may
 * hold them, how many at once, what they do to a socket path that is not theirs,
 * and how they behave when descriptors run out. Plain sockets are the clients. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

static int opens;
static void s_open(tt_conn_t *c)
{
    (void)c;
    opens++;
}
static const tt_conn_handlers_t srv_h = {.on_open = s_open};

typedef struct fixture {
    tt_loop_t *loop;
    tt_server_t *srv;
    tt_admin_t *admin;
    tt_addr_t maddr; /* the metrics endpoint, port chosen by the kernel */
    char path[108];
} fixture_t;

static void setup(fixture_t *f, const tt_admin_opts_t *extra)
{
    tt_addr_t any = th_loopback(0), mreq = th_loopback(0);
    tt_admin_opts_t ao = {0};

    if (extra != NULL)
        ao = *extra;
    snprintf(f->path, sizeof(f->path), "/tmp/tether-admin-test-%d.sock", (int)getpid());
    unlink(f->path);
    if (ao.unix_path == NULL)
        ao.unix_path = f->path;
    ao.metrics_addr = &mreq;
    opens = 0;
    cr_assert_eq(tt_loop_init(&f->loop), 0);
    cr_assert_eq(tt_server_listen(f->loop, &any, NULL, &srv_h, NULL, &f->srv), 0);
    cr_assert_eq(tt_admin_start(f->srv, &ao, &f->admin), 0);
    cr_assert_eq(tt_admin_metrics_addr(f->admin, &f->maddr), 0);
    cr_assert_neq(tt_addr_port(&f->maddr), 0, "the port the kernel chose");
}

static void teardown(fixture_t *f)
{
    if (f->admin != NULL)
        cr_assert_eq(tt_admin_close(f->admin), 0);
    tt_server_close(f->srv);
    th_run(f->loop, 3000);
    cr_assert_eq(tt_loop_close(f->loop), 0);
}

static int unix_connect(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    strcpy(sun.sun_path, path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0, "connect %s: %s", path,
                 strerror(errno));
    return fd;
}

/* Run the loop and read fd (non-blocking) until EOF, an error, or `ms`. Returns
 * the bytes read (buf NUL-terminated); *eof_ms says when the end came (0: never). */
static size_t drive_read(tt_loop_t *loop, int fd, char *buf, size_t cap, uint64_t ms,
                         uint64_t *eof_ms)
{
    size_t len = 0;
    uint64_t t0 = th_now_ms();

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (eof_ms != NULL)
        *eof_ms = 0;
    while (th_now_ms() - t0 < ms) {
        bool never = false;
        th_run_until(loop, &never, 5);
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        if (n == 0 || errno != EAGAIN) {
            if (eof_ms != NULL)
                *eof_ms = th_now_ms() - t0 + 1;
            break;
        }
    }
    buf[len] = '\0';
    return len;
}

static const char *http(fixture_t *f, const char *request)
{
    static char buf[1 << 16];
    int fd = th_tcp_connect_blocking(&f->maddr);
    cr_assert_eq(write(fd, request, strlen(request)), (ssize_t)strlen(request));
    drive_read(f->loop, fd, buf, sizeof(buf), 3000, NULL);
    close(fd);
    return buf;
}

/* ---- metrics: what is answered -------------------------------------------------------- */

Test(admin, metrics_answer_get_metrics_only_and_say_why_otherwise)
{
    fixture_t f;
    setup(&f, NULL);

    const char *r = http(&f, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_expect_eq(strncmp(r, "HTTP/1.0 200 OK\r\n", 17), 0, "GET /metrics: %.40s", r);
    cr_expect_neq(strstr(r, "tether_connections_open 0\n"), NULL);
    r = http(&f, "GET /metrics?name[]=x HTTP/1.0\r\n\r\n");
    cr_expect_eq(strncmp(r, "HTTP/1.0 200 OK\r\n", 17), 0, "with a query: %.40s", r);
    /* A request that comes in pieces is answered once it is whole. */
    /* The project's one HTTP parser is strict: lines end with CRLF (RFC 9112 2.2
     * lets a recipient take a bare LF; it need not, and does not). */
    r = http(&f, "GET /metrics HTTP/1.0\n\n");
    cr_expect_eq(strncmp(r, "HTTP/1.0 400 ", 13), 0, "bare LF: %.40s", r);
    r = http(&f, "GET /metrics HTTP/1.1\r\n\r\n");
    cr_expect_eq(strncmp(r, "HTTP/1.0 400 ", 13), 0, "HTTP/1.1 without Host: %.40s", r);
    r = http(&f, "GET /metrics HTTP/2.0\r\n\r\n");
    cr_expect_eq(strncmp(r, "HTTP/1.0 505 ", 13), 0, "HTTP/2.0: %.40s", r);
    r = http(&f, "get /metrics HTTP/1.0\r\n\r\n");
    cr_expect_eq(strncmp(r, "HTTP/1.0 405 ", 13), 0, "methods are case-sensitive: %.40s", r);

    r = http(&f, "GET / HTTP/1.0\r\n\r\n");
    cr_expect_eq(strncmp(r, "HTTP/1.0 404 ", 13), 0, "GET /: %.40s", r);
    cr_expect_null(strstr(r, "tether_"), "no metrics outside /metrics");
    r = http(&f, "GET /metricsx HTTP/1.0\r\n\r\n");
    cr_expect_eq(strncmp(r, "HTTP/1.0 404 ", 13), 0, "GET /metricsx: %.40s", r);
    r = http(&f, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    cr_expect_eq(strncmp(r, "HTTP/1.0 405 ", 13), 0, "POST: %.40s", r);
    cr_expect_neq(strstr(r, "\r\nAllow: GET\r\n"), NULL, "405 names the method allowed");
    r = http(&f, "DELETE / HTTP/1.0\r\n\r\n");
    cr_expect_eq(strncmp(r, "HTTP/1.0 405 ", 13), 0, "DELETE: %.40s", r);
    r = http(&f, "hello\r\n\r\n");
    cr_expect_eq(strncmp(r, "HTTP/1.0 400 ", 13), 0, "garbage: %.40s", r);
    r = http(&f, "GET /metrics SMTP/1.0\r\n\r\n");
    cr_expect_eq(strncmp(r, "HTTP/1.0 400 ", 13), 0, "not HTTP: %.40s", r);

    /* A head that never ends is cut at 2 KiB. */
    static char big[4096];
    memset(big, 'a', sizeof(big) - 1);
    memcpy(big, "GET /metrics HTTP/1.0\r\nX: ", 26);
    r = http(&f, big);
    cr_expect_eq(strncmp(r, "HTTP/1.0 431 ", 13), 0, "oversized head: %.40s", r);
    teardown(&f);
}

Test(admin, a_request_cut_short_by_the_clients_fin_gets_400)
{
    fixture_t f;
    static char buf[4096];
    setup(&f, NULL);

    int fd = th_tcp_connect_blocking(&f.maddr);
    cr_assert_eq(write(fd, "GET /metr", 9), 9);
    shutdown(fd, SHUT_WR);
    drive_read(f.loop, fd, buf, sizeof(buf), 3000, NULL);
    cr_expect_eq(strncmp(buf, "HTTP/1.0 400 ", 13), 0, "got: %.40s", buf);
    close(fd);
    teardown(&f);
}

/* ---- metrics and table: how long and how many ------------------------------------------ */

Test(admin, a_client_that_sends_nothing_is_closed_at_the_timeout)
{
    fixture_t f;
    tt_admin_opts_t ao = {.timeout_ms = 300};
    char buf[256];
    uint64_t eof_ms;
    setup(&f, &ao);

    int fd = th_tcp_connect_blocking(&f.maddr);
    drive_read(f.loop, fd, buf, sizeof(buf), 5000, &eof_ms);
    cr_expect_neq(eof_ms, 0, "the silent client is still connected after 5 s");
    cr_expect(eof_ms >= 250 && eof_ms < 3000, "closed after %llu ms (timeout 300)",
              (unsigned long long)eof_ms);
    close(fd);
    teardown(&f);
}

Test(admin, metrics_clients_over_the_limit_are_told_503)
{
    fixture_t f;
    tt_admin_opts_t ao = {.max_conns = 2};
    char buf[256];
    setup(&f, &ao);

    int idle[2];
    for (int i = 0; i < 2; i++)
        idle[i] = th_tcp_connect_blocking(&f.maddr);
    bool never = false;
    th_run_until(f.loop, &never, 100);
    int fd = th_tcp_connect_blocking(&f.maddr);
    drive_read(f.loop, fd, buf, sizeof(buf), 3000, NULL);
    cr_expect_eq(strncmp(buf, "HTTP/1.0 503 ", 13), 0, "third client: '%.40s'", buf);
    close(fd);
    for (int i = 0; i < 2; i++)
        close(idle[i]);
    teardown(&f);
}

/* The table's limit pauses instead: the extra client waits in the backlog and is
 * served once the slot frees (here when the first reader, who never closes, is
 * cut off at the timeout). */
Test(admin, table_clients_over_the_limit_wait_and_are_served_when_a_slot_frees)
{
    fixture_t f;
    tt_admin_opts_t ao = {.max_conns = 1, .timeout_ms = 400};
    static char buf[1 << 12];
    setup(&f, &ao);

    int hog = unix_connect(f.path); /* reads nothing, never closes */
    bool never = false;
    th_run_until(f.loop, &never, 50);
    uint64_t t0 = th_now_ms();
    int u = unix_connect(f.path); /* into the backlog */
    uint64_t eof_ms;
    drive_read(f.loop, u, buf, sizeof(buf), 5000, &eof_ms);
    uint64_t took = th_now_ms() - t0;
    cr_expect_eq(strncmp(buf, "id\t", 3), 0, "the waiting client got the table: '%.20s'", buf);
    cr_expect_neq(eof_ms, 0);
    cr_expect(took >= 250 && took < 3000, "served after %llu ms (the slot frees at ~400)",
              (unsigned long long)took);
    close(u);
    close(hog);
    teardown(&f);
}

/* tt_admin_close destroys what is open: a client that sends nothing must not keep
 * the loop (a server's process) alive after the endpoint closed. */
Test(admin, close_destroys_open_clients_so_the_loop_ends)
{
    fixture_t f;
    char buf[64];
    setup(&f, NULL);

    int m = th_tcp_connect_blocking(&f.maddr);
    int t = unix_connect(f.path);
    int rcv = 1024;
    setsockopt(t, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    bool never = false;
    th_run_until(f.loop, &never, 100);
    cr_assert_eq(tt_admin_close(f.admin), 0);
    f.admin = NULL;
    tt_server_close(f.srv);
    uint64_t t0 = th_now_ms();
    th_run(f.loop, 3000); /* fails if anything is still open by then */
    cr_expect_lt(th_now_ms() - t0, 1000, "the loop ran %llu ms after the close",
                 (unsigned long long)(th_now_ms() - t0));
    fcntl(m, F_SETFL, O_NONBLOCK);
    cr_expect_geq(read(m, buf, sizeof(buf)), 0, "the metrics client was closed");
    close(m);
    close(t);
    cr_assert_eq(tt_loop_close(f.loop), 0);
}

/* ---- closing inside a callback with the Unix listener's event in the same batch ------- */

static tt_admin_t *close_me;
static void close_admin_on_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)d, (void)n, (void)pending;
    if (close_me != NULL) {
        cr_assert_eq(tt_admin_close(close_me), 0);
        close_me = NULL;
    }
    tt_destroy(c, 0);
}

Test(admin, close_inside_a_callback_while_the_unix_listener_has_an_event_pending)
{
    tt_loop_t *loop;
    tt_server_t *srv;
    tt_addr_t any = th_loopback(0), addr;
    tt_conn_handlers_t h = {.on_data = close_admin_on_data};
    char path[108];
    bool never = false;

    snprintf(path, sizeof(path), "/tmp/tether-admin-test-%d.sock", (int)getpid());
    unlink(path);
    tt_admin_opts_t ao = {.unix_path = path};
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, NULL, &h, NULL, &srv), 0);
    cr_assert_eq(tt_server_addr(srv, &addr), 0);
    cr_assert_eq(tt_admin_start(srv, &ao, &close_me), 0);
    int fd = th_tcp_connect_blocking(&addr);
    th_run_until(loop, &never, 100); /* accepted */
    /* Both ready before the loop looks, the connection first: its callback frees
     * the endpoint while the listener's event is still in the batch. */
    cr_assert_eq(write(fd, "x", 1), 1);
    int u = unix_connect(path);
    th_run_until(loop, &never, 100);
    cr_expect_null(close_me, "the endpoint was closed in the callback");
    close(u);
    close(fd);
    tt_server_close(srv);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- the socket path ---------------------------------------------------------------------- */

Test(admin, a_live_socket_is_not_taken_over_and_a_stale_one_is_replaced)
{
    fixture_t f;
    tt_admin_t *second;
    struct stat st;
    setup(&f, NULL);

    /* Another endpoint on the same path: the first one answers there, so no. */
    tt_admin_opts_t ao = {.unix_path = f.path};
    cr_expect_eq(tt_admin_start(f.srv, &ao, &second), -EADDRINUSE);
    cr_assert_eq(stat(f.path, &st), 0, "the first endpoint's socket is still there");
    int fd = unix_connect(f.path);
    static char buf[1 << 12];
    drive_read(f.loop, fd, buf, sizeof(buf), 3000, NULL);
    cr_expect_eq(strncmp(buf, "id\t", 3), 0, "the first endpoint still serves: '%.20s'", buf);
    close(fd);
    cr_expect_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);

    /* A stale socket (nobody listening) is replaced. */
    cr_assert_eq(tt_admin_close(f.admin), 0);
    f.admin = NULL;
    int stale = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, f.path);
    cr_assert_eq(bind(stale, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(stale);
    cr_assert_eq(tt_admin_start(f.srv, &ao, &f.admin), 0);

    /* The path is given to someone else meanwhile: closing leaves their file. */
    cr_assert_eq(unlink(f.path), 0);
    int other = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(other, (struct sockaddr *)&sun, sizeof(sun)), 0);
    cr_assert_eq(tt_admin_close(f.admin), 0);
    f.admin = NULL;
    cr_expect_eq(stat(f.path, &st), 0, "the other socket at the path was left alone");
    close(other);
    unlink(f.path);
    teardown(&f);
}

/* ---- out of descriptors -------------------------------------------------------------------- */

Test(admin, the_unix_listener_backs_off_when_out_of_descriptors)
{
    tt_loop_t *loop;
    tt_server_t *srv;
    tt_admin_t *admin;
    tt_addr_t any = th_loopback(0);
    char path[108];
    struct rlimit rl, low;
    int fds[64], nfd = 0, fd;

    snprintf(path, sizeof(path), "/tmp/tether-admin-test-%d.sock", (int)getpid());
    unlink(path);
    tt_admin_opts_t ao = {.unix_path = path};
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, NULL, &srv_h, NULL, &srv), 0);
    cr_assert_eq(tt_admin_start(srv, &ao, &admin), 0);

    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    low = (struct rlimit){64, rl.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (nfd < 64 && (fd = dup(0)) >= 0)
        fds[nfd++] = fd;
    cr_assert_eq(errno, EMFILE);
    close(fds[--nfd]); /* room for the client's own socket */
    int u = unix_connect(path);

    /* The readable listener must not wake the loop again and again: over half a
     * second the loop may use a little CPU, not all it can get. */
    struct rusage r0, r1;
    bool never = false;
    cr_assert_eq(getrusage(RUSAGE_SELF, &r0), 0);
    th_run_until(loop, &never, 500);
    cr_assert_eq(getrusage(RUSAGE_SELF, &r1), 0);
    long cpu_ms = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec -
                   r0.ru_stime.tv_sec) * 1000L +
                  (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec -
                   r0.ru_stime.tv_usec) / 1000L;
    cr_expect_lt(cpu_ms, 100, "CPU time in 500 ms while out of descriptors: %ld ms", cpu_ms);
    close(u);
    for (int i = 0; i < nfd; i++)
        close(fds[i]);
    setrlimit(RLIMIT_NOFILE, &rl);

    /* Descriptors back: the table is served again. */
    u = unix_connect(path);
    static char buf[1 << 12];
    drive_read(loop, u, buf, sizeof(buf), 3000, NULL);
    cr_expect_eq(strncmp(buf, "id\t", 3), 0, "served after recovery: '%.20s'", buf);
    close(u);
    cr_assert_eq(tt_admin_close(admin), 0);
    tt_server_close(srv);
    th_run(loop, 3000);
    cr_assert_eq(tt_loop_close(loop), 0);
}
