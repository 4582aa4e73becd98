/* `tether chat` and `tether stat`, as a user runs them: real processes, plain
 * sockets for the chatters, the admin socket read by the stat command. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

typedef struct {
    pid_t pid;
    FILE *out; /* the server's stdout */
    tt_addr_t addr;
} proc_t;

/* Start `tether chat` on port 0 and learn its port from the first line. */
static void start_chat(proc_t *p, const char *extra)
{
    char cmd[512];
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    snprintf(cmd, sizeof(cmd), "exec %s chat --listen 127.0.0.1:0 --quiet %s", th_build_path("tether"),
             extra);
    p->pid = fork();
    cr_assert_geq(p->pid, 0);
    if (p->pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        close(pipefd[0]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    p->out = fdopen(pipefd[0], "r");
    char line[256];
    struct pollfd pfd = {pipefd[0], POLLIN, 0};
    cr_assert_eq(poll(&pfd, 1, 5000), 1, "the chat server did not start");
    cr_assert_not_null(fgets(line, sizeof(line), p->out));
    char *at = strstr(line, "listening on ");
    cr_assert_not_null(at, "first line: %s", line);
    char hostport[128];
    cr_assert_eq(sscanf(at + 13, "%127s", hostport), 1);
    cr_assert_eq(tt_addr_parse_hostport(&p->addr, hostport), 0, "%s", hostport);
}

static int stop(proc_t *p)
{
    int status = 0;
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 100 && waitpid(p->pid, &status, WNOHANG) == 0; i++)
        usleep(50000);
    if (waitpid(p->pid, &status, WNOHANG) == 0) { /* still there after 5 s */
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &status, 0);
        return -1;
    }
    fclose(p->out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int chatter(const tt_addr_t *addr)
{
    int fd = th_tcp_connect_blocking(addr);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Read until `want` appears in what came, or the time is up; returns what came. */
static const char *read_until(int fd, const char *want, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    while (strstr(buf, want) == NULL && len + 1 < size) {
        ssize_t n = recv(fd, buf + len, size - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
    }
    return buf;
}

static void local_name(int fd, char *out)
{
    tt_addr_t a;
    socklen_t len = sizeof(a.u);
    cr_assert_eq(getsockname(fd, &a.u.sa, &len), 0);
    a.len = len;
    tt_addr_format(&a, out, TT_ADDR_STRLEN);
}

static void chat_round(const char *extra)
{
    proc_t p;
    char buf[4096], name_a[TT_ADDR_STRLEN], want[256];

    start_chat(&p, extra);
    int a = chatter(&p.addr), b = chatter(&p.addr), c = chatter(&p.addr);
    local_name(a, name_a);

    /* b and c hear that a... joined before them; c's join reaches a and b. */
    snprintf(want, sizeof(want), "joined\n");
    read_until(a, want, buf, sizeof(buf));
    cr_expect_neq(strstr(buf, "joined"), NULL, "a saw: %s", buf);

    cr_assert_eq(send(a, "hello there\r\n", 13, 0), 13); /* telnet-style line end */
    snprintf(want, sizeof(want), "[%s] hello there\n", name_a);
    read_until(b, want, buf, sizeof(buf));
    cr_expect_neq(strstr(buf, want), NULL, "b wanted %s got: %s", want, buf);
    read_until(c, want, buf, sizeof(buf));
    cr_expect_neq(strstr(buf, want), NULL, "c wanted %s got: %s", want, buf);

    /* The sender never hears its own line: a marker line from b arrives, and
     * nothing of a's line came before it. */
    cr_assert_eq(send(b, "marker\n", 7, 0), 7);
    read_until(a, "marker\n", buf, sizeof(buf));
    cr_expect_neq(strstr(buf, "marker"), NULL, "a got: %s", buf);
    cr_expect_eq(strstr(buf, "hello there"), NULL, "the sender got its own line: %s", buf);

    /* Leaving is announced. */
    close(c);
    read_until(a, "left\n", buf, sizeof(buf));
    cr_expect_neq(strstr(buf, "left"), NULL, "a got: %s", buf);

    /* SIGTERM: everyone is told, ended, and the process exits 0. */
    int code = stop(&p);
    cr_expect_eq(code, 0, "exit status %d", code);
    read_until(a, "shutting down\n", buf, sizeof(buf));
    cr_expect_neq(strstr(buf, "* server shutting down"), NULL, "a got: %s", buf);
    cr_expect_eq(recv(a, buf, sizeof(buf), 0), 0, "then EOF");
    close(a);
    close(b);
}

Test(chat_cli, lines_reach_every_other_client_with_the_sender_address)
{
    chat_round("");
}

Test(chat_cli, the_same_over_two_worker_loops)
{
    chat_round("--workers 2");
}

Test(chat_cli, stat_prints_one_row_per_connection_with_totals_sorted)
{
    proc_t p;
    char path[64], cmd[256], out[8192], buf[1024];
    snprintf(path, sizeof(path), "/tmp/tether-chat-%d.sock", (int)getpid());
    snprintf(cmd, sizeof(cmd), "--admin %s", path);
    start_chat(&p, cmd);

    int a = chatter(&p.addr), b = chatter(&p.addr);
    cr_assert_eq(send(a, "0123456789\n", 11, 0), 11);
    read_until(b, "0123456789\n", buf, sizeof(buf));
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0600, "admin socket mode %o", st.st_mode & 0777);

    snprintf(cmd, sizeof(cmd), "%s stat %s --sort bytes_in --reverse", th_build_path("tether"),
             path);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t len = fread(out, 1, sizeof(out) - 1, f);
    out[len] = '\0';
    cr_assert_eq(pclose(f), 0, "stat failed: %s", out);

    /* Header, two rows, a totals line. */
    int lines = 0;
    for (char *q = out; *q; q++)
        lines += *q == '\n';
    cr_expect_eq(lines, 4, "output:\n%s", out);
    cr_expect_eq(strncmp(out, "id", 2), 0);
    char *row1 = strchr(out, '\n') + 1;
    cr_expect_neq(strstr(row1, "open"), NULL, "%s", out);
    /* Sorted by bytes_in, largest first: a's row (11 bytes in) comes first. */
    char name_a[TT_ADDR_STRLEN];
    local_name(a, name_a);
    char *row2 = strchr(row1, '\n') + 1;
    cr_expect(strstr(row1, name_a) != NULL && strstr(row1, name_a) < row2,
              "a's row first:\n%s", out);
    cr_expect_neq(strstr(out, "total"), NULL);
    cr_expect_neq(strstr(out, "2 conns"), NULL, "%s", out);

    /* Bad column: a usage error. */
    snprintf(cmd, sizeof(cmd), "%s stat %s --sort nope >/dev/null 2>&1", th_build_path("tether"),
             path);
    int rc = system(cmd);
    cr_expect_eq(WEXITSTATUS(rc), 2);
    close(a);
    close(b);
    cr_expect_eq(stop(&p), 0);
    cr_expect_neq(stat(path, &st), 0, "admin socket removed at exit");
}

/* ---- tether echo --workers --max-conns --admin ------------------------------------ */

static int count_rows(const char *path)
{
    char cmd[256], out[8192];
    snprintf(cmd, sizeof(cmd), "%s stat %s", th_build_path("tether"), path);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t len = fread(out, 1, sizeof(out) - 1, f);
    out[len] = '\0';
    cr_assert_eq(pclose(f), 0, "stat failed: %s", out);
    int lines = 0;
    for (char *q = out; *q; q++)
        lines += *q == '\n';
    return lines - 2; /* header and totals */
}

static bool echoes(int fd, const char *text)
{
    char buf[64];
    size_t n = strlen(text);
    if (send(fd, text, n, 0) != (ssize_t)n)
        return false;
    read_until(fd, text, buf, sizeof(buf));
    return strcmp(buf, text) == 0;
}

Test(chat_cli, echo_workers_with_max_conns_keep_the_extra_client_waiting_and_list_all)
{
    char path[64], extra[4352], line[256];
    int pipefd[2];
    snprintf(path, sizeof(path), "/tmp/tether-echo-%d.sock", (int)getpid());
    snprintf(extra, sizeof(extra), "exec %s echo --listen 127.0.0.1:0 --workers 2 --max-conns 1 "
             "--admin %s", th_build_path("tether"), path);
    cr_assert_eq(pipe(pipefd), 0);
    proc_t p;
    p.pid = fork();
    if (p.pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        close(pipefd[0]);
        execl("/bin/sh", "sh", "-c", extra, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    p.out = fdopen(pipefd[0], "r");
    struct pollfd pfd = {pipefd[0], POLLIN, 0};
    cr_assert_eq(poll(&pfd, 1, 5000), 1);
    cr_assert_not_null(fgets(line, sizeof(line), p.out));
    char hostport[128];
    cr_assert_eq(sscanf(strstr(line, "listening on ") + 13, "%127s", hostport), 1, "%s", line);
    cr_assert_eq(tt_addr_parse_hostport(&p.addr, hostport), 0);

    /* Two workers, one connection each: the kernel's reuseport hash decides which
     * listener gets a client, so open clients until both workers are full. Each
     * client after the first reaches the idle worker with probability 1/2: 8 tries
     * missed it once in about 128 runs (seen in a make test run), 24 once in 8 M. */
    int fds[24], n = 0, served = 0;
    for (; n < 24 && served < 2; n++) {
        fds[n] = chatter(&p.addr);
        if (echoes(fds[n], "x"))
            served++;
    }
    cr_assert_eq(served, 2, "both workers serve one client each (%d clients opened)", n);
    cr_expect_eq(count_rows(path), 2, "rows in the live table");
    /* Any further client waits in a backlog: it connects but gets no echo. */
    int extra_fd = chatter(&p.addr);
    struct timeval tv = {0, 300000};
    setsockopt(extra_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_expect(!echoes(extra_fd, "y"), "the extra client waits");
    /* Everyone leaves; then the waiting ones are served (their bytes were queued). */
    for (int i = 0; i < n; i++)
        close(fds[i]);
    tv.tv_sec = 3;
    tv.tv_usec = 0;
    setsockopt(extra_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[16];
    read_until(extra_fd, "y", buf, sizeof(buf));
    cr_expect_str_eq(buf, "y", "the waiting client was served once a slot freed");
    close(extra_fd);
    cr_expect_eq(stop(&p), 0);
}

Test(chat_cli, stat_watch_refreshes_the_table_count_times)
{
    proc_t p;
    char path[64], cmd[4400], out[16384];
    snprintf(path, sizeof(path), "/tmp/tether-watch-%d.sock", (int)getpid());
    snprintf(cmd, sizeof(cmd), "--admin %s", path);
    start_chat(&p, cmd);
    int a = chatter(&p.addr);

    snprintf(cmd, sizeof(cmd), "%s stat %s --watch 0.2 --count 3", th_build_path("tether"),
             path);
    uint64_t t0 = th_now_ms();
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t len = fread(out, 1, sizeof(out) - 1, f);
    out[len] = '\0';
    cr_assert_eq(pclose(f), 0, "stat --watch failed: %s", out);
    uint64_t took = th_now_ms() - t0;

    int headers = 0;
    for (char *q = out; (q = strstr(q, "id ")) != NULL; q++)
        headers += q == out || q[-1] == '\n';
    cr_expect_eq(headers, 3, "tables printed: %d\n%s", headers, out);
    cr_expect(took >= 400 && took < 3000, "three refreshes 0.2 s apart took %llu ms",
              (unsigned long long)took);
    close(a);
    cr_expect_eq(stop(&p), 0);
}

/* A client that never answers the goodbye keeps the graceful shutdown waiting for
 * its deadline; a second SIGTERM meanwhile (timeout(1) passes signals on) must not
 * turn a clean stop into exit 1. */
Test(chat_cli, a_second_sigterm_during_shutdown_still_exits_0)
{
    proc_t p;
    int status = 0;

    start_chat(&p, "");
    int a = chatter(&p.addr); /* never reads, never closes */
    kill(p.pid, SIGTERM);
    usleep(200 * 1000);
    kill(p.pid, SIGTERM);
    uint64_t t0 = th_now_ms();
    for (int i = 0; i < 100 && waitpid(p.pid, &status, WNOHANG) == 0; i++)
        usleep(50000);
    cr_assert(WIFEXITED(status), "still running, or killed, after 5 s");
    cr_expect_eq(WEXITSTATUS(status), 0, "exit %d", WEXITSTATUS(status));
    cr_expect_lt(th_now_ms() - t0, 4000);
    close(a);
    fclose(p.out);
}
