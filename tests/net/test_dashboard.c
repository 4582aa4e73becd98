/* The follow feed and the dashboard as a user runs them: `tether stat --follow`
 * against `tether echo --admin`, a follower that never reads, and `tether echo
 * --dashboard` read over HTTP and by Python's websockets (tests/net/ws/dash_peer.py). */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MAX_PROCS 4

/* Processes of the running test, killed by its .fini when an assertion ended it early. */
static pid_t procs[MAX_PROCS];

static void reap(void)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        if (procs[i] > 0 && waitpid(procs[i], NULL, WNOHANG) == 0) {
            kill(procs[i], SIGKILL);
            waitpid(procs[i], NULL, 0);
        }
        procs[i] = 0;
    }
}

typedef struct proc {
    pid_t pid;
    FILE *out; /* stdout and stderr */
} proc_t;

static void spawn(proc_t *p, const char *cmd)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    p->pid = fork();
    cr_assert_geq(p->pid, 0);
    if (p->pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i] == 0) {
            procs[i] = p->pid;
            break;
        }
    p->out = fdopen(fds[0], "r");
    setvbuf(p->out, NULL, _IONBF, 0);
}

static void read_line(proc_t *p, char *line, size_t size, const char *what)
{
    struct pollfd pfd = {fileno(p->out), POLLIN, 0};
    cr_assert_eq(poll(&pfd, 1, 5000), 1, "no %s within 5 s", what);
    cr_assert_not_null(fgets(line, (int)size, p->out), "no %s: the process ended", what);
}

static int stop(proc_t *p)
{
    int st = 0;
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 100 && waitpid(p->pid, &st, WNOHANG) == 0; i++)
        usleep(50000);
    if (waitpid(p->pid, &st, WNOHANG) == 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
        st = -1;
    }
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i] == p->pid)
            procs[i] = 0;
    fclose(p->out);
    return st < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* tether echo on a free port with `extra`; its port (and the dashboard's). */
static void start_echo(proc_t *p, const char *extra, unsigned *port, unsigned *dash_port)
{
    char cmd[512], line[256];
    snprintf(cmd, sizeof(cmd), "exec %s echo --listen 127.0.0.1:0 %s", th_build_path("tether"),
             extra);
    spawn(p, cmd);
    read_line(p, line, sizeof(line), "listening line");
    cr_assert_eq(sscanf(line, "tether echo: listening on 127.0.0.1:%u", port), 1, "%s", line);
    if (dash_port != NULL) {
        read_line(p, line, sizeof(line), "dashboard line");
        cr_assert_eq(sscanf(line, "tether echo: listening on 127.0.0.1:%u", dash_port), 1, "%s",
                     line);
        cr_assert_not_null(strstr(line, " (dashboard)\n"), "%s", line);
    }
}

static void sock_path(char *buf, size_t size)
{
    snprintf(buf, size, "/tmp/tt-dash-%d-%ld.sock", (int)getpid(), (long)time(NULL));
    unlink(buf);
}

static int unix_connect(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    strcpy(sun.sun_path, path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0, "connect %s", path);
    return fd;
}

/* A short-lived echo client: connect, send, read the echo, close. Its local port. */
static unsigned echo_once(unsigned port, const char *msg)
{
    tt_addr_t a = th_loopback((uint16_t)port);
    int fd = th_tcp_connect_blocking(&a);
    char buf[256];
    size_t n = strlen(msg), got = 0;
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    struct timeval tv = {5, 0};

    cr_assert_geq(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    getsockname(fd, (struct sockaddr *)&sin, &sl);
    cr_assert_eq(send(fd, msg, n, MSG_NOSIGNAL), (ssize_t)n);
    while (got < n) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        cr_assert_gt(r, 0, "no echo");
        got += (size_t)r;
    }
    close(fd);
    return ntohs(sin.sin_port);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

Test(dashboard, stat_follow_sees_a_short_lived_connection_open_and_close, .timeout = 30,
     .fini = reap)
{
    char path[108], cmd[512], extra[200], line[512], want[64];
    proc_t echo, fol;
    unsigned port;

    sock_path(path, sizeof(path));
    snprintf(extra, sizeof(extra), "--admin %s", path);
    start_echo(&echo, extra, &port, NULL);
    snprintf(cmd, sizeof(cmd), "exec %s stat --follow %s", th_build_path("tether"), path);
    spawn(&fol, cmd);
    read_line(&fol, line, sizeof(line), "following line");
    cr_assert_not_null(strstr(line, "tether stat: following"), "%s", line);

    /* Opened and closed well within any polling interval: pushed, not sampled. */
    unsigned me = echo_once(port, "hi\n");
    snprintf(want, sizeof(want), "127.0.0.1:%u", me);
    read_line(&fol, line, sizeof(line), "open line");
    cr_expect_eq(strncmp(line, "open\t", 5), 0, "%s", line);
    cr_expect_not_null(strstr(line, want), "open line without the peer %s: %s", want, line);
    unsigned long id = 0;
    cr_expect_eq(sscanf(line, "open\t%lu\t", &id), 1, "%s", line);
    read_line(&fol, line, sizeof(line), "close line");
    char idtext[32];
    snprintf(idtext, sizeof(idtext), "close\t%lu\t", id);
    cr_expect_eq(strncmp(line, idtext, strlen(idtext)), 0, "want '%s...': %s", idtext, line);
    cr_expect_not_null(strstr(line, "\t3\t3\n"), "bytes in and out are 3: %s", line);
    cr_expect_not_null(strstr(line, want), "close line without the peer %s: %s", want, line);

    /* The table still answers a plain `tether stat`, without the follower in it. */
    snprintf(cmd, sizeof(cmd), "%s stat %s 2>&1", th_build_path("tether"), path);
    FILE *f = popen(cmd, "r");
    char tbl[4096];
    size_t n = fread(tbl, 1, sizeof(tbl) - 1, f);
    tbl[n] = '\0';
    cr_expect_eq(pclose(f), 0, "%s", tbl);
    cr_expect_not_null(strstr(tbl, "0 conns"), "%s", tbl);

    cr_expect_eq(stop(&fol), 0);
    cr_expect_eq(stop(&echo), 0);
}

Test(dashboard, a_follower_that_never_reads_is_dropped_and_the_echo_goes_on, .timeout = 60,
     .fini = reap)
{
    char path[108], extra[200], buf[4096];
    proc_t echo;
    unsigned port;
    int small = 4096;

    sock_path(path, sizeof(path));
    snprintf(extra, sizeof(extra), "--admin %s", path);
    start_echo(&echo, extra, &port, NULL);
    int hog = unix_connect(path);
    setsockopt(hog, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    cr_assert_eq(send(hog, "FOLLOW\n", 7, MSG_NOSIGNAL), 7);
    struct timeval tv = {5, 0};
    setsockopt(hog, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_assert_eq(recv(hog, buf, 10, 0), 10);
    cr_assert_eq(memcmp(buf, "following\n", 10), 0);

    /* The limit: eight followers; a ninth is told so. */
    int more[8];
    for (int i = 0; i < 7; i++) {
        more[i] = unix_connect(path);
        cr_assert_eq(send(more[i], "FOLLOW\n", 7, MSG_NOSIGNAL), 7);
        setsockopt(more[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        cr_assert_eq(recv(more[i], buf, 10, 0), 10);
    }
    int ninth = unix_connect(path);
    setsockopt(ninth, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_assert_eq(send(ninth, "FOLLOW\n", 7, MSG_NOSIGNAL), 7);
    ssize_t r = recv(ninth, buf, sizeof(buf) - 1, 0);
    cr_assert_gt(r, 0);
    buf[r] = '\0';
    cr_expect_not_null(strstr(buf, "too many followers"), "%s", buf);
    close(ninth);
    for (int i = 0; i < 7; i++)
        close(more[i]);

    /* Thousands of short connections: far more lines than the follower's queue
     * cap and the socket buffers hold. The echo must not wait for it. */
    uint64_t t0 = now_ms(), worst = 0;
    for (int i = 0; i < 4000; i++) {
        uint64_t a = now_ms();
        echo_once(port, "ping\n");
        uint64_t d = now_ms() - a;
        worst = d > worst ? d : worst;
    }
    uint64_t took = now_ms() - t0;
    cr_expect_lt(worst, 1000, "one echo took %llu ms", (unsigned long long)worst);
    cr_expect_lt(took, 30000, "4000 echoes took %llu ms", (unsigned long long)took);

    /* Dropped: what the kernel holds, then EOF (or a reset), not a live feed. */
    size_t total = 0;
    bool ended = false;
    for (;;) {
        r = recv(hog, buf, sizeof(buf), 0);
        if (r <= 0) {
            ended = r == 0 || errno == ECONNRESET;
            break;
        }
        total += (size_t)r;
    }
    cr_expect(ended, "the follower was not dropped (read %zu bytes, then %s)", total,
              strerror(errno));
    cr_expect_lt(total, (size_t)4000 * 2 * 40, "it got every line: %zu bytes", total);
    close(hog);
    cr_expect_eq(stop(&echo), 0);
}

static void http(unsigned port, const char *request, char *out, size_t size)
{
    tt_addr_t a = th_loopback((uint16_t)port);
    int fd = th_tcp_connect_blocking(&a);
    cr_assert_geq(fd, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t n = strlen(request), len = 0;
    cr_assert_eq(send(fd, request, n, MSG_NOSIGNAL), (ssize_t)n);
    ssize_t r;
    while (len + 1 < size && (r = recv(fd, out + len, size - 1 - len, 0)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    close(fd);
}

static void peer(unsigned port, unsigned dash, const char *token, int min_ok)
{
    char cmd[1024];
    static char got[65536];
    snprintf(cmd, sizeof(cmd),
             "timeout 30 /usr/bin/python3 %s/tests/net/ws/dash_peer.py %u %u %s 2>&1",
             TT_SOURCE_DIR, port, dash, token);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t len = fread(got, 1, sizeof(got) - 1, f);
    got[len] = '\0';
    int rc = pclose(f);
    cr_expect_eq(rc, 0, "the peer exited with %d:\n%s", rc, got);
    cr_expect_null(strstr(got, "bad "), "a failed check:\n%s", got);
    cr_expect_null(strstr(got, "Traceback"), "the peer failed:\n%s", got);
    cr_expect_not_null(strstr(got, "\ndone\n"), "the peer did not finish:\n%s", got);
    int oks = 0;
    for (const char *q = got; (q = strstr(q, "ok ")) != NULL; q++)
        oks += q == got || q[-1] == '\n';
    cr_expect_geq(oks, min_ok, "%d checks passed, want %d:\n%s", oks, min_ok, got);
}

Test(dashboard, get_root_serves_the_page_and_the_feed_has_rows_that_go_on_close, .timeout = 40,
     .fini = reap)
{
    static char got[65536];
    proc_t echo;
    unsigned port, dash;

    start_echo(&echo, "--dashboard 127.0.0.1:0", &port, &dash);
    http(dash, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", got, sizeof(got));
    cr_expect_eq(strncmp(got, "HTTP/1.1 200", 12), 0, "%.200s", got);
    cr_expect_not_null(strstr(got, "Content-Type: text/html"), "%.400s", got);
    cr_expect_not_null(strstr(got, "Content-Security-Policy: default-src 'none'"), "%.600s", got);
    cr_expect_not_null(strstr(got, "<title>tether dashboard</title>"));
    cr_expect_null(strstr(got, "src=\"http"), "an external resource in the page");
    http(dash, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", got, sizeof(got));
    cr_expect_eq(strncmp(got, "HTTP/1.1 404", 12), 0, "%.200s", got);
    peer(port, dash, "-", 6);
    cr_expect_eq(stop(&echo), 0);
}

Test(dashboard, the_token_is_required_on_the_page_and_the_feed, .timeout = 40, .fini = reap)
{
    static char got[65536];
    proc_t echo;
    unsigned port, dash;

    start_echo(&echo, "--dashboard :0 --dashboard-token s3cret", &port, &dash);
    http(dash, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", got, sizeof(got));
    cr_expect_eq(strncmp(got, "HTTP/1.1 403", 12), 0, "%.200s", got);
    http(dash, "GET /?token=wrong HTTP/1.1\r\nHost: x\r\n\r\n", got, sizeof(got));
    cr_expect_eq(strncmp(got, "HTTP/1.1 403", 12), 0, "%.200s", got);
    http(dash, "GET /?token=s3cret HTTP/1.1\r\nHost: x\r\n\r\n", got, sizeof(got));
    cr_expect_eq(strncmp(got, "HTTP/1.1 200", 12), 0, "%.200s", got);
    peer(port, dash, "s3cret", 8);
    cr_expect_eq(stop(&echo), 0);
}

Test(dashboard, workers_are_refused_as_a_usage_error, .timeout = 10)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s echo --workers 2 --dashboard :0 2>/dev/null",
             th_build_path("tether"));
    int st = system(cmd);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d", st);
}

/* ---- the library call under both: tt_follow_start ---------------------------------- */

typedef struct fev {
    int n;
    bool open[8];
    uint64_t id[8];
    tt_close_kind_t kind[8];
    uint16_t port[8];
    uint64_t bytes_in[8];
    bool done;
} fev_t;

static fev_t fevs;

static void on_fev(const tt_follow_event_t *ev, void *arg)
{
    fev_t *f = arg;
    tt_conn_stats_t st;
    if (f->n >= 8)
        return;
    tt_conn_get_stats(ev->conn, &st);
    f->open[f->n] = ev->open;
    f->id[f->n] = st.id;
    f->kind[f->n] = ev->kind;
    f->port[f->n] = ev->peer.len > 0 ? tt_addr_port(&ev->peer) : 0;
    f->bytes_in[f->n] = st.bytes_in;
    f->n++;
    f->done = f->n >= 4;
}

/* The second client is destroyed by the server when it says "kill". */
static void fol_data(tt_conn_t *c, const void *data, size_t len, size_t pending)
{
    (void)pending;
    if (len >= 4 && memcmp(data, "kill", 4) == 0)
        tt_destroy(c, 0);
}

Test(dashboard, tt_follow_start_reports_each_open_and_close_with_its_kind, .timeout = 20)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_follow_t *fol;
    const tt_conn_handlers_t h = {.on_data = fol_data};
    memset(&fevs, 0, sizeof(fevs));

    cr_assert_eq(tt_loop_init(&loop), 0);
    tt_server_t *srv = th_listen(loop, &h, NULL, &addr);
    cr_assert_not_null(srv);
    cr_assert_eq(tt_follow_start(NULL, on_fev, &fevs, &fol), -EINVAL);
    cr_assert_eq(tt_follow_start(srv, NULL, &fevs, &fol), -EINVAL);
    cr_assert_eq(tt_follow_stop(NULL), -EINVAL);
    cr_assert_eq(tt_follow_start(srv, on_fev, &fevs, &fol), 0);

    int a = th_tcp_connect_blocking(&addr), b = th_tcp_connect_blocking(&addr);
    struct sockaddr_in sa, sb;
    socklen_t la = sizeof(sa), lb = sizeof(sb);
    getsockname(a, (struct sockaddr *)&sa, &la);
    getsockname(b, (struct sockaddr *)&sb, &lb);
    cr_assert_eq(send(a, "bye", 3, MSG_NOSIGNAL), 3);
    usleep(20000);
    close(a); /* an orderly end from the peer */
    cr_assert_eq(send(b, "kill", 4, MSG_NOSIGNAL), 4);
    cr_assert(th_run_until(loop, &fevs.done, 5000), "%d events", fevs.n);

    cr_expect_eq(fevs.n, 4);
    int opens = 0, closes = 0;
    for (int i = 0; i < fevs.n; i++) {
        bool is_a = fevs.port[i] == ntohs(sa.sin_port), is_b = fevs.port[i] == ntohs(sb.sin_port);
        cr_expect(is_a || is_b, "event %d: peer port %u is neither client", i, fevs.port[i]);
        if (fevs.open[i]) {
            opens++;
            continue;
        }
        closes++;
        if (is_a) {
            cr_expect_eq(fevs.kind[i], TT_CLOSE_PEER_CLOSED, "a: %s",
                         tt_close_kind_name(fevs.kind[i]));
            cr_expect_eq(fevs.bytes_in[i], 3);
        } else {
            cr_expect_eq(fevs.kind[i], TT_CLOSE_LOCAL_DESTROY, "b: %s",
                         tt_close_kind_name(fevs.kind[i]));
            cr_expect_eq(fevs.bytes_in[i], 4);
        }
    }
    cr_expect_eq(opens, 2);
    cr_expect_eq(closes, 2);

    /* Stopped: a third client is not reported. */
    cr_assert_eq(tt_follow_stop(fol), 0);
    int c = th_tcp_connect_blocking(&addr);
    close(c);
    close(b);
    tt_server_close(srv);
    th_run(loop, 3000);
    cr_expect_eq(fevs.n, 4);
    cr_assert_eq(tt_loop_close(loop), 0);
}

Test(dashboard, follow_on_a_worker_set_says_it_needs_one_loop, .timeout = 20, .fini = reap)
{
    char path[108], extra[200], cmd[512], got[1024];
    proc_t echo;
    unsigned port;

    sock_path(path, sizeof(path));
    snprintf(extra, sizeof(extra), "--workers 2 --admin %s", path);
    start_echo(&echo, extra, &port, NULL);
    snprintf(cmd, sizeof(cmd), "%s stat --follow %s 2>&1", th_build_path("tether"), path);
    FILE *f = popen(cmd, "r");
    size_t n = fread(got, 1, sizeof(got) - 1, f);
    got[n] = '\0';
    int st = pclose(f);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d: %s", st, got);
    cr_expect_not_null(strstr(got, "follow needs a single-loop server"), "%s", got);
    cr_expect_eq(stop(&echo), 0);
}

Test(dashboard, chat_serves_a_dashboard_of_its_line_clients, .timeout = 30, .fini = reap)
{
    static char got[65536];
    char cmd[512], line[256];
    proc_t chat;
    unsigned port, dash;

    snprintf(cmd, sizeof(cmd), "exec %s chat --listen 127.0.0.1:0 --quiet --dashboard :0",
             th_build_path("tether"));
    spawn(&chat, cmd);
    read_line(&chat, line, sizeof(line), "listening line");
    cr_assert_eq(sscanf(line, "tether chat: listening on 127.0.0.1:%u", &port), 1, "%s", line);
    read_line(&chat, line, sizeof(line), "dashboard line");
    cr_assert_eq(sscanf(line, "tether chat: listening on 127.0.0.1:%u", &dash), 1, "%s", line);
    cr_assert_not_null(strstr(line, " (dashboard)\n"), "%s", line);
    http(dash, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", got, sizeof(got));
    cr_expect_eq(strncmp(got, "HTTP/1.1 200", 12), 0, "%.200s", got);
    cr_expect_not_null(strstr(got, "<title>tether dashboard</title>"));
    cr_expect_eq(stop(&chat), 0);
}
