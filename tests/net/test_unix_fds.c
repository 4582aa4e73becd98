/* Passing descriptors over Unix stream connections (SCM_RIGHTS): received ones
 * are close-on-exec and handed to on_fds just before the bytes they came with;
 * every one is either the app's or closed (counted in /proc/self/fd); sent ones
 * go in order with the bytes queued around them. A real sender and receiver in
 * Python (socket.send_fds / recv_fds), and tether at both ends. Both backends. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

static tt_loop_t *loop;
static char dir[64], path[128], text[160];

static void setup(void)
{
    strcpy(dir, "/tmp/tt-fds-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    snprintf(text, sizeof(text), "unix:%s", path);
    cr_assert_eq(tt_loop_init(&loop), 0);
}

static void teardown(void)
{
    char cmd[128];
    if (loop != NULL) {
        th_run(loop, 5000);
        tt_loop_close(loop);
        loop = NULL;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", dir);
}

TestSuite(unixfds, .init = setup, .fini = teardown, .timeout = 60);

typedef struct rx {
    size_t fds, not_cloexec, bad;
    char log[4096]; /* 'F' per on_fds, then the bytes as they came */
    size_t nlog;
    int destroy_after; /* destroy the connection after this many on_fds (0: never) */
    int batches;
    int keep_fd;       /* the first descriptor received, kept open; -1 none */
    volatile bool closed;
} rx_t;

static rx_t R;

static void logc(char ch)
{
    if (R.nlog + 1 < sizeof(R.log))
        R.log[R.nlog++] = ch;
}

static void r_fds(tt_conn_t *c, const int *fds, size_t n)
{
    R.batches++;
    logc('F');
    for (size_t i = 0; i < n; i++) {
        int fl = fcntl(fds[i], F_GETFD);
        if (fl < 0)
            R.bad++;
        else if (!(fl & FD_CLOEXEC))
            R.not_cloexec++;
        if (R.keep_fd < 0)
            R.keep_fd = fds[i];
        else
            close(fds[i]);
    }
    R.fds += n;
    if (R.destroy_after != 0 && R.batches == R.destroy_after)
        tt_destroy(c, 0);
}
static void r_data(tt_conn_t *c, const void *d, size_t n, size_t p)
{
    (void)c, (void)p;
    for (size_t i = 0; i < n; i++)
        logc(((const char *)d)[i]);
}
static void r_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c, (void)info;
    R.closed = true;
}

static const tt_conn_handlers_t RX = {.on_data = r_data, .on_fds = r_fds, .on_close = r_close};
static const tt_conn_handlers_t RX_NO_FDS = {.on_data = r_data, .on_close = r_close};

static tt_server_t *listen_rx(const tt_conn_handlers_t *h)
{
    tt_addr_t a;
    tt_server_t *srv;
    memset(&R, 0, sizeof(R));
    R.keep_fd = -1;
    cr_assert_eq(tt_addr_parse_hostport(&a, text), 0);
    cr_assert_eq(tt_server_listen(loop, &a, NULL, h, NULL, &srv), 0);
    return srv;
}

/* Python sends `batches` messages of 250 descriptors (/dev/null), each with the
 * bytes "<i>", and "." between them. */
static void python_sender(int batches, char *out, size_t size)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import socket,os,sys\n"
             "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); fd=os.open(\"/dev/null\", os.O_RDONLY)\n"
             "try:\n"
             "  for i in range(%d):\n"
             "    socket.send_fds(s, [b\"<%%d>\" %% i], [fd]*250); s.sendall(b\".\")\n"
             "  s.shutdown(socket.SHUT_WR); s.recv(1); print(\"done\")\n"
             "except (BrokenPipeError, ConnectionResetError): print(\"cut\")' %s",
             batches, path);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    cr_assert(th_run_until(loop, &R.closed, 20000), "no close");
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    cr_assert_eq(pclose(f), 0, "python: %s", out);
}

Test(unixfds, a_thousand_descriptors_in_a_burst_in_order_and_none_leaked)
{
    char out[64], want[16];
    int before = th_fd_count();
    tt_server_t *srv = listen_rx(&RX);

    python_sender(4, out, sizeof(out));
    R.log[R.nlog] = '\0';
    cr_expect_str_eq(out, "done\n");
    cr_expect_eq(R.fds, 1000, "received %zu descriptors", R.fds);
    cr_expect_eq(R.batches, 4);
    cr_expect_eq(R.not_cloexec, 0, "received descriptors must be close-on-exec");
    cr_expect_eq(R.bad, 0);
    /* Each batch came before the bytes it was sent with, and after every byte of
     * the batches before it. */
    const char *p = R.log;
    for (int i = 0; i < 4; i++) {
        snprintf(want, sizeof(want), "<%d>", i);
        const char *f = strchr(p, 'F');
        const char *b = strstr(p, want);
        cr_assert_not_null(f, "batch %d: no descriptors (log %s)", i, R.log);
        cr_assert_not_null(b, "batch %d: no bytes (log %s)", i, R.log);
        cr_expect_lt(f, b, "batch %d: descriptors after their bytes (log %s)", i, R.log);
        p = f + 1;
    }
    close(R.keep_fd);
    tt_server_close(srv);
    th_run(loop, 2000);
    cr_expect_eq(th_fd_count(), before, "descriptors leaked");
}

Test(unixfds, a_receiver_that_closes_mid_stream_leaks_nothing)
{
    char out[64];
    int before = th_fd_count();
    tt_server_t *srv = listen_rx(&RX);

    R.destroy_after = 1;
    python_sender(8, out, sizeof(out));
    cr_expect_eq(R.batches, 1);
    cr_expect_eq(R.fds, 250);
    close(R.keep_fd);
    tt_server_close(srv);
    th_run(loop, 2000);
    cr_expect_eq(th_fd_count(), before, "descriptors leaked");
}

Test(unixfds, without_on_fds_arriving_descriptors_are_closed_by_the_kernel)
{
    char out[64];
    int before = th_fd_count();
    tt_server_t *srv = listen_rx(&RX_NO_FDS);

    python_sender(4, out, sizeof(out));
    R.log[R.nlog] = '\0';
    cr_expect_str_eq(out, "done\n");
    cr_expect_eq(R.fds, 0);
    cr_expect_str_eq(R.log, "<0>.<1>.<2>.<3>.", "the bytes all came");
    tt_server_close(srv);
    th_run(loop, 2000);
    cr_expect_eq(th_fd_count(), before, "descriptors leaked");
}

/* ---- tether sends ------------------------------------------------------------- */

static tt_conn_t *client;
static volatile bool c_opened;
static void c_open(tt_conn_t *c)
{
    (void)c;
    c_opened = true;
}

Test(unixfds, tether_to_tether_a_pipe_in_order_with_the_bytes)
{
    int pfd[2];
    int before = th_fd_count();
    tt_conn_handlers_t ch = {.on_open = c_open};
    tt_server_t *srv = listen_rx(&RX);

    cr_assert_eq(pipe(pfd), 0);
    cr_assert_eq(tt_connect_host(loop, text, 0, NULL, &ch, NULL, &client), 0);
    /* Queued before the connection opens, in this order. */
    cr_assert_geq(tt_send(client, "a", 1), 0);
    cr_assert_geq(tt_send_fds(client, &pfd[1], 1, "b", 1), 0);
    close(pfd[1]); /* ours: tether sent a copy */
    cr_assert_geq(tt_send(client, "c", 1), 0);
    cr_expect_eq(tt_send_fds(client, &pfd[1], 1, "x", 1), -EBADF, "a closed descriptor");
    cr_expect_eq(tt_send_fds(client, pfd, 0, "x", 1), -EINVAL);
    cr_expect_eq(tt_send_fds(client, pfd, 1, "x", 0), -EINVAL);
    cr_expect_eq(tt_send_fds(client, pfd, TT_SEND_FDS_MAX + 1, "x", 1), -EINVAL);
    uint64_t until = th_now_ms() + 5000;
    while (R.fds == 0 && th_now_ms() < until)
        tt_loop_run(loop, TT_RUN_ONCE);
    while (R.nlog < 4 && th_now_ms() < until)
        tt_loop_run(loop, TT_RUN_ONCE);
    R.log[R.nlog] = '\0';
    cr_assert_eq(R.fds, 1);
    /* "a" may share the read that carries the descriptor (the kernel glues bytes
     * before a message with descriptors into one read): F comes before b, after
     * nothing sent later. */
    cr_expect(strcmp(R.log, "aFbc") == 0 || strcmp(R.log, "Fabc") == 0, "log %s", R.log);
    /* The received descriptor is the pipe's write end. */
    cr_assert_eq(write(R.keep_fd, "hello", 5), 5);
    close(R.keep_fd);
    char buf[8] = "";
    cr_assert_eq(read(pfd[0], buf, sizeof(buf)), 5);
    cr_expect_eq(memcmp(buf, "hello", 5), 0);
    close(pfd[0]);
    tt_destroy(client, 0);
    tt_server_close(srv);
    th_run(loop, 2000);
    cr_expect_eq(th_fd_count(), before, "descriptors leaked");
}

Test(unixfds, queued_descriptors_are_closed_when_the_connection_closes_first)
{
    tt_conn_handlers_t ch = {.on_open = c_open};
    tt_server_t *srv = listen_rx(&RX); /* its listener and reserve descriptors first */
    int before = th_fd_count();
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    tt_conn_t *tcp = NULL;

    cr_assert_eq(tt_connect_host(loop, text, 0, NULL, &ch, NULL, &client), 0);
    for (int i = 0; i < 50; i++)
        cr_assert_geq(tt_send_fds(client, &fd, 1, "q", 1), 0);
    tt_destroy(client, 0); /* before any flush: 50 copies queued */
    close(fd);
    for (int i = 0; i < 10; i++)
        tt_loop_run(loop, TT_RUN_NOWAIT); /* the close is delivered */
    /* The server's side of the connection may still be open: one descriptor. */
    int now = th_fd_count();
    cr_expect_leq(now, before + 1, "queued descriptors leaked: %d open, %d before", now, before);
    /* Not a Unix connection: refused. */
    tt_addr_t lo = th_loopback(th_unused_port());
    cr_assert_eq(tt_connect(loop, &lo, NULL, &ch, NULL, &tcp), 0);
    int one = 0;
    cr_expect_eq(tt_send_fds(tcp, &one, 1, "x", 1), -EOPNOTSUPP);
    tt_destroy(tcp, 0);
    tt_server_close(srv);
}

Test(unixfds, python_receives_descriptors_tether_sent)
{
    char cmd[1024], out[128];
    int fds[3];
    tt_conn_handlers_t ch = {.on_open = c_open};

    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import socket,os,sys\n"
             "l=socket.socket(socket.AF_UNIX); l.bind(sys.argv[1]); l.listen(1); print(\"up\", flush=True)\n"
             "c,_=l.accept(); got=b\"\"; n=0\n"
             "while len(got) < 4:\n"
             "  m,f,fl,a=socket.recv_fds(c, 100, 10)\n"
             "  if not m: break\n"
             "  got+=m; n+=len(f)\n"
             "  for x in f: os.close(x)\n"
             "print(got.decode(), n)' %s",
             path);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(out, sizeof(out), f));
    cr_assert_str_eq(out, "up\n");
    cr_assert_eq(tt_connect_host(loop, text, 0, NULL, &ch, NULL, &client), 0);
    for (int i = 0; i < 3; i++)
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    cr_assert_geq(tt_send(client, "ab", 2), 0);
    cr_assert_geq(tt_send_fds(client, fds, 3, "cd", 2), 0);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    uint64_t until = th_now_ms() + 5000;
    while (tt_conn_queued_bytes(client) > 0 && th_now_ms() < until)
        tt_loop_run(loop, TT_RUN_ONCE);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    cr_expect_eq(pclose(f), 0);
    cr_expect_str_eq(out, "abcd 3\n");
    tt_destroy(client, 0);
}
