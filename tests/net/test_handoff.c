/* Listener hand-over between processes: a chain of servers, each taking the
 * listening sockets of the one before (tt_handoff_take / tt_handoff_ready) and
 * offering them to the next (tt_handoff_offer), while a client keeps opening
 * connections that each echo and close. Not one attempt may be refused or reset,
 * every echo must complete, and every predecessor must exit 0 once it has let
 * go. Real processes (fork), real sockets, both backends. */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define HANDOVERS 5
#define MAX_FDS 8

/* ---- one node: a process serving echo, taking over and offering --------------- */

typedef struct node {
    tt_loop_t *loop;
    tt_server_t *srv;        /* single loop */
    tt_workers_t *workers;   /* --workers */
    tt_handoff_t *offer;
} node_t;

static node_t g_node;

static void echo(tt_conn_t *c, const void *d, size_t n, size_t p)
{
    (void)p;
    tt_send(c, d, n);
}

static void drained(tt_timer_t *t, void *arg)
{
    node_t *nd = arg;
    tt_timer_close(t);
    if (nd->srv != NULL) {
        tt_server_shutdown(nd->srv, 2000, NULL, NULL);
        nd->srv = NULL;
    }
    if (nd->workers != NULL) {
        tt_workers_stop(nd->workers, 2000);
        nd->workers = NULL;
    }
}

static void stop_accepting(tt_workers_t *set, unsigned i, tt_loop_t *loop, tt_server_t *srv,
                           void *arg)
{
    (void)set, (void)i, (void)loop, (void)arg;
    if (srv != NULL)
        tt_server_stop_accepting(srv);
}

/* The successor serves: accept no more, give what is in flight a moment (a
 * connection accepted just now may not have been read yet), then end gracefully. */
static void taken(tt_handoff_t *h, int status, void *arg)
{
    node_t *nd = arg;
    tt_timer_t *t;
    if (status != 0)
        return; /* a successor failed: keep serving */
    tt_handoff_close(h);
    nd->offer = NULL;
    if (nd->srv != NULL)
        tt_server_stop_accepting(nd->srv);
    if (nd->workers != NULL)
        tt_workers_visit(nd->workers, stop_accepting, NULL);
    cr_assert_eq(tt_timer_init(nd->loop, &t, drained, nd), 0);
    cr_assert_eq(tt_timer_start(t, 250, 0), 0);
}

/* Serve (on inherited sockets when `take`), report the port on `out`, offer the
 * sockets at `path`, and exit 0 once a successor took over and every connection
 * is done. Runs in a child process. */
static void node_main(const char *path, bool take, unsigned workers, int out)
{
    int fds[MAX_FDS], link = -1, err;
    size_t n = 0;
    tt_conn_handlers_t h = {.on_data = echo};
    node_t *nd = &g_node;
    tt_addr_t a;

    if (take && tt_handoff_take(path, 5000, fds, MAX_FDS, &n, &link) < 0)
        _exit(10);
    if (tt_loop_init(&nd->loop) < 0)
        _exit(11);
    if (workers > 0) {
        tt_workers_opts_t wo = {.count = workers, .listen_fds = take ? fds : NULL,
                                .nfds = take ? (unsigned)n : 0};
        a = th_loopback(0);
        if (take && n != workers)
            _exit(12); /* every worker had its own listener */
        err = tt_workers_start(take ? NULL : &a, &wo, NULL, &h, NULL, &nd->workers);
        if (err < 0)
            _exit(13);
        tt_workers_addr(nd->workers, &a);
        n = (size_t)tt_workers_listen_fds(nd->workers, fds, MAX_FDS);
    } else {
        a = th_loopback(0);
        err = take ? tt_server_listen_fd(nd->loop, fds[0], NULL, &h, NULL, &nd->srv)
                   : tt_server_listen(nd->loop, &a, NULL, &h, NULL, &nd->srv);
        if (err < 0)
            _exit(14);
        tt_server_addr(nd->srv, &a);
        fds[0] = tt_server_fd(nd->srv);
        n = 1;
    }
    /* Serving: now the predecessor may let go, and only then is the path free. */
    if (take && tt_handoff_ready(link, 5000) < 0)
        _exit(15);
    if (tt_handoff_offer(nd->loop, path, fds, n, taken, nd, &nd->offer) < 0)
        _exit(16);
    uint16_t port = tt_addr_port(&a);
    if (write(out, &port, sizeof(port)) != sizeof(port))
        _exit(17);
    close(out);
    tt_loop_run(nd->loop, TT_RUN_DEFAULT); /* until handed over and drained */
    if (nd->offer != NULL)
        _exit(18);
    _exit(tt_loop_close(nd->loop) == 0 ? 0 : 19);
}

static pid_t start_node(const char *path, bool take, unsigned workers, uint16_t *port)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        node_main(path, take, workers, p[1]);
    }
    close(p[1]);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    cr_assert_eq(poll(&pf, 1, 10000), 1, "node %d never reported its port", (int)pid);
    cr_assert_eq(read(p[0], port, sizeof(*port)), (ssize_t)sizeof(*port),
                 "node %d failed before serving", (int)pid);
    close(p[0]);
    return pid;
}

/* ---- the same with the command line: tether echo --handoff / --takeover -------- */

static pid_t start_cli(const char *path, bool take, unsigned workers, uint16_t *port)
{
    char cmd[512], line[256], wk[32] = "";
    int p[2];

    if (workers > 0)
        snprintf(wk, sizeof(wk), " --workers %u", workers);
    snprintf(cmd, sizeof(cmd), "exec %s echo %s%s --handoff %s%s%s", th_build_path("tether"),
             take ? "" : "--listen 127.0.0.1:0", take ? "" : wk, path, take ? " --takeover " : "",
             take ? path : "");
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        close(p[0]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    FILE *out = fdopen(p[0], "r");
    setvbuf(out, NULL, _IONBF, 0);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    cr_assert_eq(poll(&pf, 1, 10000), 1, "%s: no listening line", cmd);
    cr_assert_not_null(fgets(line, sizeof(line), out), "%s: died before listening", cmd);
    fclose(out);
    char *at = strstr(line, "listening on 127.0.0.1:");
    cr_assert_not_null(at, "%s", line);
    *port = (uint16_t)atoi(at + strlen("listening on 127.0.0.1:"));
    return pid;
}

/* ---- the client: connections that echo and close, all the time ---------------- */

typedef struct load {
    uint16_t port;
    atomic_bool stop;
    atomic_int ok, refused, reset, other;
} load_t;

static int one_echo(uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[16];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), err = 0;
    struct timeval tv = {.tv_sec = 5};

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        err = -errno;
    } else if (send(fd, "ping\n", 5, MSG_NOSIGNAL) != 5) {
        err = -errno;
    } else {
        size_t got = 0;
        while (got < 5) {
            ssize_t r = recv(fd, buf + got, sizeof(buf) - got, 0);
            if (r <= 0) {
                err = r == 0 ? -EPIPE : -errno;
                break;
            }
            got += (size_t)r;
        }
        if (err == 0 && memcmp(buf, "ping\n", 5) != 0)
            err = -EPROTO;
    }
    close(fd);
    return err;
}

static void *load_main(void *arg)
{
    load_t *l = arg;
    while (!atomic_load(&l->stop)) {
        int err = one_echo(l->port);
        if (err == 0)
            atomic_fetch_add(&l->ok, 1);
        else if (err == -ECONNREFUSED)
            atomic_fetch_add(&l->refused, 1);
        else if (err == -ECONNRESET || err == -EPIPE)
            atomic_fetch_add(&l->reset, 1);
        else
            atomic_fetch_add(&l->other, 1);
        usleep(5000); /* about 200 connections per second */
    }
    return NULL;
}

static void exits_zero(pid_t pid)
{
    int status = -1;
    for (int i = 0; i < 1500 && waitpid(pid, &status, WNOHANG) == 0; i++)
        usleep(10000);
    if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        cr_assert_fail("predecessor %d did not exit within 15 s of the hand-over", (int)pid);
    }
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "predecessor %d: status %d (exit %d)", (int)pid, status,
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static void chain_with(pid_t (*start)(const char *, bool, unsigned, uint16_t *), unsigned workers)
{
    char path[64];
    uint16_t port, p2;
    load_t l = {0};
    pthread_t th;

    snprintf(path, sizeof(path), "unix:@tether-handoff-%d", (int)getpid());
    pid_t pid = start(path, false, workers, &port);
    l.port = port;
    cr_assert_eq(pthread_create(&th, NULL, load_main, &l), 0);
    usleep(200000);
    for (int i = 0; i < HANDOVERS; i++) {
        pid_t next = start(path, true, workers, &p2);
        cr_assert_eq(p2, port, "the successor serves another port");
        exits_zero(pid); /* let go, drained, gone */
        pid = next;
        usleep(150000);
    }
    usleep(200000);
    atomic_store(&l.stop, true);
    pthread_join(th, NULL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* The fault the hand-over avoids, seen by the same client: nobody holds the
     * sockets any more, and the port refuses (an io_uring instance lets go of its
     * files a moment after its process died). */
    int last = 0;
    for (int i = 0; i < 100 && (last = one_echo(port)) != -ECONNREFUSED; i++)
        usleep(20000);
    cr_assert_eq(last, -ECONNREFUSED, "the port still answers: %s", tt_strerror(last));
    cr_expect_eq(atomic_load(&l.refused), 0, "%d connection attempts refused",
                 atomic_load(&l.refused));
    cr_expect_eq(atomic_load(&l.reset), 0, "%d connections reset", atomic_load(&l.reset));
    cr_expect_eq(atomic_load(&l.other), 0, "%d other failures", atomic_load(&l.other));
    cr_expect_gt(atomic_load(&l.ok), 100, "only %d echoes completed", atomic_load(&l.ok));
}

Test(handoff, five_handovers_refuse_and_reset_nothing, .timeout = 60)
{
    chain_with(start_node, 0);
}

Test(handoff, five_handovers_with_two_workers, .timeout = 60)
{
    chain_with(start_node, 2);
}

Test(handoff, cli_echo_five_handovers, .timeout = 60)
{
    chain_with(start_cli, 0);
}

Test(handoff, cli_echo_five_handovers_with_two_workers, .timeout = 60)
{
    chain_with(start_cli, 2);
}

Test(handoff, cli_takeover_with_listen_is_a_usage_error)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "%s echo --listen 127.0.0.1:0 --takeover unix:@x 2>/dev/null",
             th_build_path("tether"));
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d", st);
    snprintf(cmd, sizeof(cmd), "%s echo --takeover unix:@tether-nobody-%d 2>/dev/null",
             th_build_path("tether"), (int)getpid());
    st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "nobody offering: status %d", st);
}

/* A successor that takes the sockets and dies before it serves changes nothing:
 * the old server keeps serving and its offer stands for the next one. */
Test(handoff, successor_dying_before_ready_leaves_the_old_one_serving, .timeout = 30)
{
    char path[64];
    uint16_t port;
    int fds[MAX_FDS], link;
    size_t n;

    snprintf(path, sizeof(path), "unix:@tether-handoff-die-%d", (int)getpid());
    pid_t pid = start_node(path, false, 0, &port);
    cr_assert_eq(tt_handoff_take(path, 5000, fds, MAX_FDS, &n, &link), 0);
    cr_assert_eq(n, 1);
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
    close(link); /* "died" before READY */
    usleep(100000);
    cr_assert_eq(one_echo(port), 0, "the old server stopped serving");
    /* The offer stands: a real successor takes over. */
    uint16_t p2;
    pid_t next = start_node(path, true, 0, &p2);
    cr_assert_eq(p2, port);
    exits_zero(pid);
    cr_assert_eq(one_echo(port), 0);
    kill(next, SIGKILL);
    waitpid(next, NULL, 0);
}

Test(handoff, bad_arguments_and_nobody_offering)
{
    int fds[2], link;
    size_t n;
    tt_loop_t *loop;
    tt_handoff_t *h;

    cr_assert_eq(tt_handoff_take("unix:@tether-nobody-here", 1000, fds, 2, &n, &link),
                 -ECONNREFUSED);
    cr_assert_eq(tt_handoff_take(NULL, 1000, fds, 2, &n, &link), -EINVAL);
    cr_assert_eq(tt_handoff_ready(-1, 1000), -EINVAL);
    cr_assert_eq(tt_loop_init(&loop), 0);
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    cr_assert_eq(tt_handoff_offer(loop, "unix:@x", pfd, 1, NULL, NULL, &h), -EOPNOTSUPP,
                 "a pipe is no listening socket");
    cr_assert_eq(tt_handoff_offer(loop, "unix:@x", pfd, 0, NULL, NULL, &h), -EINVAL);
    close(pfd[0]);
    close(pfd[1]);
    cr_assert_eq(tt_loop_close(loop), 0);
}
