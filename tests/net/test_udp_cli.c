/* UDP from the command line (tether udp-echo, tether cat --udp) and the audit hook
 * on UDP binds, connects and sends. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Start `tether udp-echo` on port 0; learn its address from its first line. */
static pid_t start_udp_echo(tt_addr_t *addr, FILE **out)
{
    char cmd[4200], line[256], hostport[128];
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    snprintf(cmd, sizeof(cmd), "exec %s udp-echo --listen 127.0.0.1:0", th_build_path("tether"));
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        close(pipefd[0]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    *out = fdopen(pipefd[0], "r");
    struct pollfd pfd = {pipefd[0], POLLIN, 0};
    cr_assert_eq(poll(&pfd, 1, 5000), 1, "udp-echo did not start");
    cr_assert_not_null(fgets(line, sizeof(line), *out));
    char *at = strstr(line, "listening on ");
    cr_assert_not_null(at, "first line: %s", line);
    cr_assert_eq(sscanf(at + 13, "%127s", hostport), 1);
    cr_assert_eq(tt_addr_parse_hostport(addr, hostport), 0);
    return pid;
}

static int stop(pid_t pid, FILE *out)
{
    int status = 0;
    kill(pid, SIGTERM);
    for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; i++)
        usleep(50000);
    if (waitpid(pid, &status, WNOHANG) == 0 && kill(pid, 0) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    fclose(out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Test(udp_cli, udp_echo_returns_each_datagram_whole_to_its_sender)
{
    tt_addr_t addr;
    FILE *out;
    pid_t pid = start_udp_echo(&addr, &out);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {2, 0};
    char buf[2048];

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (int i = 0; i < 3; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof(msg), "datagram %d", i);
        cr_assert_eq(sendto(fd, msg, (size_t)n, 0, &addr.u.sa, addr.len), n);
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        cr_expect_eq(r, n, "echo of %d: %zd bytes", i, r);
        cr_expect_eq(memcmp(buf, msg, (size_t)n), 0);
    }
    /* Boundaries are kept: a 1200-byte datagram comes back as one. */
    memset(buf, 'z', 1200);
    cr_assert_eq(sendto(fd, buf, 1200, 0, &addr.u.sa, addr.len), 1200);
    cr_expect_eq(recv(fd, buf, sizeof(buf), 0), 1200);
    close(fd);
    cr_expect_eq(stop(pid, out), 0);
}

Test(udp_cli, cat_udp_sends_stdin_and_prints_the_reply)
{
    tt_addr_t addr;
    FILE *out;
    char cmd[4400], hostport[TT_ADDR_STRLEN], reply[256] = "";
    pid_t pid = start_udp_echo(&addr, &out);

    tt_addr_format(&addr, hostport, sizeof(hostport));
    snprintf(cmd, sizeof(cmd), "printf 'over udp\\n' | %s cat --udp --timeout 1 %s",
             th_build_path("tether"), hostport);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(reply, 1, sizeof(reply) - 1, p);
    reply[n] = '\0';
    int st = pclose(p);
    cr_expect_eq(WEXITSTATUS(st), 0, "cat --udp exit %d", WEXITSTATUS(st));
    cr_expect_str_eq(reply, "over udp\n");
    cr_expect_eq(stop(pid, out), 0);
}

Test(udp_cli, cat_udp_to_a_closed_port_reports_the_refusal_and_exits_1)
{
    /* Bind a port and release it: nothing listens there, ICMP says so. */
    int probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    tt_addr_t a = th_loopback(0);
    socklen_t len = sizeof(a.u.in4);
    cr_assert_eq(bind(probe, &a.u.sa, a.len), 0);
    cr_assert_eq(getsockname(probe, &a.u.sa, &len), 0);
    close(probe);
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "printf 'x' | %s cat --udp --timeout 1 127.0.0.1:%u 2>&1",
             th_build_path("tether"), ntohs(a.u.in4.sin_port));
    FILE *p = popen(cmd, "r");
    char msg[512] = "";
    size_t n = fread(msg, 1, sizeof(msg) - 1, p);
    msg[n] = '\0';
    int st = pclose(p);
    cr_expect_eq(WEXITSTATUS(st), 1, "exit %d: %s", WEXITSTATUS(st), msg);
    cr_expect_neq(strstr(msg, "refused"), NULL, "message: %s", msg);
}

/* ---- the audit hook on UDP ---------------------------------------------------------- */

static int udp_audit_calls[5];

static int veto_port_9(tt_loop_t *loop, tt_audit_event_t ev, const tt_addr_t *a, void *arg)
{
    (void)loop, (void)arg;
    udp_audit_calls[ev]++;
    return tt_addr_port(a) == 9 ? -EPERM : 0;
}

Test(udp_cli, audit_hook_sees_udp_bind_connect_and_send_to_and_can_refuse)
{
    tt_loop_t *loop;
    tt_udp_t *u = NULL, *none = NULL;
    tt_addr_t any = th_loopback(0), blocked_bind = th_loopback(9), blocked = th_loopback(9);
    tt_udp_handlers_t h = {0};

    memset(udp_audit_calls, 0, sizeof(udp_audit_calls));
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_loop_set_audit(loop, veto_port_9, NULL), 0);
    cr_expect_eq(tt_udp_open(loop, &blocked_bind, NULL, &h, NULL, &none), -EPERM);
    cr_expect_null(none);
    cr_assert_eq(tt_udp_open(loop, &any, NULL, &h, NULL, &u), 0);
    cr_expect_eq(udp_audit_calls[TT_AUDIT_BIND], 2);

    cr_expect_eq(tt_udp_send(u, "x", 1, &blocked), -EPERM, "a vetoed send-to");
    tt_addr_t self;
    cr_assert_eq(tt_udp_addr(u, &self), 0);
    cr_expect_eq(tt_udp_send(u, "x", 1, &self), 0, "an allowed send-to");
    cr_expect_eq(udp_audit_calls[TT_AUDIT_SENDTO], 2);
    cr_expect_eq(tt_udp_connect(u, &blocked), -EPERM, "a vetoed connect");
    cr_expect_eq(udp_audit_calls[TT_AUDIT_CONNECT], 1);

    cr_assert_eq(tt_udp_close(u), 0);
    th_run(loop, 2000);
    cr_assert_eq(tt_loop_close(loop), 0);
}
