/* `tether chat --listen ADDR --ws ADDR` as a user runs it: line clients (plain
 * sockets) and WebSocket clients (Python's websockets, tests/net/ws/chat_peer.py)
 * in one room; the page on GET /; the limits applied to WebSocket clients. */
#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

typedef struct {
    pid_t pid;
    FILE *out; /* the server's stdout */
    unsigned tcp_port, ws_port;
} chat_t;

/* The server of the running test, killed by its .fini when an assertion ended the
 * test early (a chat left running would hold ctest's output open). */
static pid_t running;

static void reap(void)
{
    if (running > 0 && waitpid(running, NULL, WNOHANG) == 0) {
        kill(running, SIGKILL);
        waitpid(running, NULL, 0);
    }
    running = 0;
}

static void read_line(chat_t *p, char *line, size_t size)
{
    struct pollfd pfd = {fileno(p->out), POLLIN, 0};
    cr_assert_eq(poll(&pfd, 1, 5000), 1, "no listening line within 5 s");
    cr_assert_not_null(fgets(line, (int)size, p->out), "the chat server printed nothing");
}

/* Start the chat on two free ports and learn them from its two listening lines. */
static void start_chat(chat_t *p, const char *extra)
{
    char cmd[512], line[256];
    int fds[2];
    snprintf(cmd, sizeof(cmd), "exec %s chat --listen 127.0.0.1:0 --ws 127.0.0.1:0 --quiet %s",
             th_build_path("tether"), extra);
    cr_assert_eq(pipe(fds), 0);
    p->pid = fork();
    cr_assert_geq(p->pid, 0);
    if (p->pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    running = p->pid;
    p->out = fdopen(fds[0], "r");
    setvbuf(p->out, NULL, _IONBF, 0); /* poll() sees each line still in the pipe */
    read_line(p, line, sizeof(line));
    cr_assert_eq(sscanf(line, "tether chat: listening on 127.0.0.1:%u", &p->tcp_port), 1, "%s",
                 line);
    cr_expect_null(strstr(line, "websocket"), "the line listener comes first: %s", line);
    read_line(p, line, sizeof(line));
    cr_assert_eq(sscanf(line, "tether chat: listening on 127.0.0.1:%u", &p->ws_port), 1, "%s",
                 line);
    cr_expect_not_null(strstr(line, " (websocket)\n"), "%s", line);
    cr_expect_neq(p->ws_port, p->tcp_port);
}

/* Wait up to 5 s for the process to end (after a SIGTERM unless it was sent
 * already); its exit status, or -1 if it had to be killed. */
static int wait_exit(chat_t *p, bool term)
{
    int st = 0;
    if (term)
        kill(p->pid, SIGTERM);
    for (int i = 0; i < 100 && waitpid(p->pid, &st, WNOHANG) == 0; i++)
        usleep(50000);
    if (waitpid(p->pid, &st, WNOHANG) == 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
        running = 0;
        fclose(p->out);
        return -1;
    }
    running = 0;
    fclose(p->out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Run a scenario of chat_peer.py; every check it prints must be "ok". */
static void peer(const chat_t *p, const char *scenario, int min_ok)
{
    char cmd[1024];
    static char got[65536];
    snprintf(cmd, sizeof(cmd), "timeout 40 /usr/bin/python3 %s/tests/net/ws/chat_peer.py %u %u %d %s 2>&1",
             TT_SOURCE_DIR, p->tcp_port, p->ws_port, (int)p->pid, scenario);
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

/* One plain HTTP/1.1 request; the whole answer (the server closes after it). */
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

Test(chat_ws, lines_and_messages_cross_between_tcp_and_websocket_clients, .timeout = 60, .fini = reap)
{
    chat_t p;
    start_chat(&p, "--max-line 64");
    /* 34 checks: join, line, message, not-to-the-sender, newlines, UTF-8,
     * leave, 1009 for the oversized one alone, and the shutdown (the peer sends
     * SIGTERM and sees 1001 and EOF). */
    peer(&p, "room", 34);
    int code = wait_exit(&p, false);
    cr_expect_eq(code, 0, "tether chat exit status %d after SIGTERM", code);
}

Test(chat_ws, get_root_serves_the_page_other_paths_404, .timeout = 30, .fini = reap)
{
    chat_t p;
    static char got[16384];
    start_chat(&p, "");

    http(p.ws_port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", got, sizeof(got));
    cr_expect_eq(strncmp(got, "HTTP/1.1 200 ", 13), 0, "%.200s", got);
    cr_expect_not_null(strstr(got, "\r\nContent-Type: text/html; charset=utf-8\r\n"), "%.400s",
                       got);
    cr_expect_not_null(strstr(got, "\r\nContent-Security-Policy: default-src 'none'"), "%.400s",
                       got);
    const char *body = strstr(got, "\r\n\r\n");
    cr_assert_not_null(body);
    body += 4;
    unsigned long clen = 0;
    const char *cl = strstr(got, "Content-Length: ");
    cr_assert_not_null(cl);
    clen = strtoul(cl + 16, NULL, 10);
    cr_expect_eq(strlen(body), clen, "body %zu bytes, Content-Length %lu", strlen(body), clen);
    cr_expect_eq(strncmp(body, "<!doctype html>", 15), 0, "%.100s", body);
    cr_expect_not_null(strstr(body, "new WebSocket("), "the page joins over a WebSocket");
    cr_expect_not_null(strstr(body, "</html>"));
    /* Self-contained: nothing is loaded from anywhere else. */
    cr_expect_null(strstr(body, "http://"));
    cr_expect_null(strstr(body, "https://"));
    cr_expect_null(strstr(body, " src="));

    http(p.ws_port, "HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", got, sizeof(got));
    cr_expect_eq(strncmp(got, "HTTP/1.1 200 ", 13), 0, "%.200s", got);
    body = strstr(got, "\r\n\r\n");
    cr_expect(body != NULL && body[4] == '\0', "HEAD has no body: %.300s", got);

    http(p.ws_port, "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", got, sizeof(got));
    cr_expect_eq(strncmp(got, "HTTP/1.1 404 ", 13), 0, "%.200s", got);
    http(p.ws_port, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", got,
         sizeof(got));
    cr_expect_eq(strncmp(got, "HTTP/1.1 405 ", 13), 0, "%.200s", got);
    cr_expect_not_null(strstr(got, "\r\nAllow: GET, HEAD\r\n"), "%.300s", got);

    int code = wait_exit(&p, true);
    cr_expect_eq(code, 0, "exit status %d", code);
}

Test(chat_ws, a_websocket_client_that_stops_reading_is_dropped_alone, .timeout = 60, .fini = reap)
{
    chat_t p;
    start_chat(&p, "--max-queue 1M");
    peer(&p, "slow", 3);
    int code = wait_exit(&p, true);
    cr_expect_eq(code, 0, "exit status %d", code);
}

Test(chat_ws, ws_with_workers_is_a_usage_error)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s chat --listen 127.0.0.1:0 --ws 127.0.0.1:0 --workers 2 "
             ">/dev/null 2>&1", th_build_path("tether"));
    int rc = system(cmd);
    cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "exit status %d", WEXITSTATUS(rc));
    snprintf(cmd, sizeof(cmd), "%s chat --listen 127.0.0.1:0 --ws nowhere >/dev/null 2>&1",
             th_build_path("tether"));
    rc = system(cmd);
    cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "a bad --ws address: exit %d",
              WEXITSTATUS(rc));
}

Test(chat_ws, a_taken_websocket_port_fails_with_exit_1, .timeout = 30, .fini = reap)
{
    chat_t p;
    char cmd[512];
    start_chat(&p, "");
    snprintf(cmd, sizeof(cmd), "%s chat --listen 127.0.0.1:0 --ws 127.0.0.1:%u >/dev/null 2>&1",
             th_build_path("tether"), p.ws_port);
    int rc = system(cmd);
    cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "exit status %d", WEXITSTATUS(rc));
    cr_expect_eq(wait_exit(&p, true), 0);
}
