/* The tether command-line tool, run as a user runs it: the built binary, real peers
 * (python3, nc, socat, plain sockets) on loopback, ephemeral ports only. Every child
 * is started with a parent-death signal, waited for with a timeout and killed if it
 * overstays; every read from a child is bounded in time. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define TETHER TT_BUILD_DIR "/tether"
#define WAIT_MS 10000 /* any one child or read; generous for sanitizer builds */

#define PIPE_FD (-1)    /* spawn: connect this stream to a pipe */
#define DEVNULL_FD (-2) /* spawn: connect this stream to /dev/null */

/* ---- children ------------------------------------------------------------------ */

typedef struct child {
    pid_t pid;
    int in;  /* write end of the child's stdin, or -1 */
    int out; /* read end of its stdout, or -1 */
    int err; /* read end of its stderr, or -1 */
} child_t;

/* Everything spawned and not yet reaped, killed by the suite's fini if a failed
 * assertion ended the test early. Each test runs in its own process. */
static pid_t live[32];
static int nlive;
static char tmpdir[64];

static void forget(pid_t pid)
{
    for (int i = 0; i < nlive; i++)
        if (live[i] == pid)
            live[i] = live[--nlive];
}

static void suite_init(void)
{
    signal(SIGPIPE, SIG_IGN); /* a child that exits early must not kill the test */
    strcpy(tmpdir, "/tmp/tether-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void suite_fini(void)
{
    for (int i = 0; i < nlive; i++) {
        kill(live[i], SIGKILL);
        waitpid(live[i], NULL, 0);
    }
    nlive = 0;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

TestSuite(cli, .init = suite_init, .fini = suite_fini);

static const char *tmp_path(const char *name)
{
    static char bufs[4][256];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "%s/%s", tmpdir, name);
    return b;
}

static int stream_fd(int want, int *parent_end, bool child_reads)
{
    int p[2];
    if (want == DEVNULL_FD) {
        int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        return fd;
    }
    if (want != PIPE_FD)
        return want;
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    *parent_end = child_reads ? p[1] : p[0];
    return child_reads ? p[0] : p[1];
}

/* Start argv with stdin/stdout/stderr from the given descriptors (PIPE_FD for a
 * pipe the test holds, DEVNULL_FD, or a descriptor of ours). */
static child_t spawn(const char *const argv[], int in, int out, int err)
{
    child_t c = {.in = -1, .out = -1, .err = -1};
    int fds[3] = {stream_fd(in, &c.in, true), stream_fd(out, &c.out, false),
                  stream_fd(err, &c.err, false)};

    cr_assert_lt(nlive, (int)(sizeof(live) / sizeof(live[0])));
    c.pid = fork();
    cr_assert_geq(c.pid, 0, "fork: %s", strerror(errno));
    if (c.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        for (int i = 0; i < 3; i++)
            if (dup2(fds[i], i) < 0)
                _exit(126);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    live[nlive++] = c.pid;
    for (int i = 0; i < 3; i++) /* the child's ends; descriptors passed in stay ours */
        if ((i == 0 ? in : i == 1 ? out : err) < 0)
            close(fds[i]);
    return c;
}

/* Wait up to ms for the child to exit; returns its exit status (128 + N when killed
 * by signal N). On timeout the child is killed and the test fails. */
static int wait_exit(child_t *c, int ms)
{
    uint64_t end = th_now_ms() + (uint64_t)ms;
    int st;

    for (;;) {
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        if (r == c->pid)
            break;
        cr_assert_eq(r, 0, "waitpid: %s", strerror(errno));
        if (th_now_ms() > end) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &st, 0);
            forget(c->pid);
            cr_assert_fail("child %d still running after %d ms", (int)c->pid, ms);
        }
        usleep(5000);
    }
    forget(c->pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Read one line (without the newline) within ms; the test fails on EOF/timeout. */
static void read_line(int fd, char *buf, size_t cap, int ms)
{
    uint64_t end = th_now_ms() + (uint64_t)ms;
    size_t n = 0;

    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)(end - th_now_ms());
        cr_assert_gt(left, 0, "no whole line within %d ms (have '%.*s')", ms, (int)n, buf);
        if (poll(&p, 1, left) <= 0)
            continue;
        char ch;
        ssize_t r = read(fd, &ch, 1);
        cr_assert_eq(r, 1, "EOF before a whole line (have '%.*s')", (int)n, buf);
        if (ch == '\n')
            break;
        cr_assert_lt(n + 1, cap);
        buf[n++] = ch;
    }
    buf[n] = '\0';
}

/* Read until EOF within ms into a malloc'd buffer (NUL-terminated); *len its size. */
static char *read_all(int fd, size_t *len, int ms)
{
    uint64_t end = th_now_ms() + (uint64_t)ms;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);

    cr_assert_not_null(buf);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)(end - th_now_ms());
        cr_assert_gt(left, 0, "no EOF within %d ms (%zu bytes so far)", ms, n);
        if (poll(&p, 1, left) <= 0)
            continue;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            cr_assert_not_null(buf);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        cr_assert_geq(r, 0, "read: %s", strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Write all of buf to a pipe within ms (the pipe is made non-blocking). */
static void write_all(int fd, const void *buf, size_t len, int ms)
{
    uint64_t end = th_now_ms() + (uint64_t)ms;
    const char *p = buf;

    cr_assert_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    while (len > 0) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int left = (int)(end - th_now_ms());
        cr_assert_gt(left, 0, "could not write within %d ms (%zu bytes left)", ms, len);
        if (poll(&pf, 1, left) <= 0)
            continue;
        ssize_t r = write(fd, p, len);
        if (r < 0 && errno == EAGAIN)
            continue;
        cr_assert_gt(r, 0, "write: %s", strerror(errno));
        p += r;
        len -= (size_t)r;
    }
}

/* The port at the end of "... listening on 127.0.0.1:PORT". */
static unsigned port_of(const char *line)
{
    const char *colon = strrchr(line, ':');
    cr_assert_not_null(colon, "no port in '%s'", line);
    unsigned port = (unsigned)strtoul(colon + 1, NULL, 10);
    cr_assert(port > 0 && port < 65536, "bad port in '%s'", line);
    return port;
}

static char *file_of(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    char *b = read_all(fd, len, WAIT_MS);
    close(fd);
    return b;
}

/* A file of `len` bytes from /dev/urandom. */
static void make_random_file(const char *path, size_t len)
{
    char buf[65536];
    int in = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    cr_assert(in >= 0 && out >= 0);
    for (size_t done = 0; done < len;) {
        size_t want = len - done < sizeof(buf) ? len - done : sizeof(buf);
        ssize_t r = read(in, buf, want);
        cr_assert_gt(r, 0);
        cr_assert_eq(write(out, buf, (size_t)r), r);
        done += (size_t)r;
    }
    close(in);
    close(out);
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* sha256 of a file by sha256sum (coreutils): 64 hex digits into out[65]. */
static void sha256_file(const char *path, char *out)
{
    const char *argv[] = {"sha256sum", path, NULL};
    child_t c = spawn(argv, DEVNULL_FD, PIPE_FD, DEVNULL_FD);
    char line[512];

    read_line(c.out, line, sizeof(line), WAIT_MS);
    close_fd(&c.out);
    cr_assert_eq(wait_exit(&c, WAIT_MS), 0);
    memcpy(out, line, 64);
    out[64] = '\0';
}

/* Start `tether echo --listen 127.0.0.1:0` and return its port. */
static unsigned start_echo(child_t *echo)
{
    const char *argv[] = {TETHER, "echo", "--listen", "127.0.0.1:0", NULL};
    char line[256];

    *echo = spawn(argv, DEVNULL_FD, PIPE_FD, DEVNULL_FD);
    read_line(echo->out, line, sizeof(line), WAIT_MS);
    cr_assert(strncmp(line, "tether echo: listening on 127.0.0.1:", 36) == 0, "got '%s'", line);
    return port_of(line);
}

/* Start `tether cat --listen 127.0.0.1:0 [--verbose]` with the given stdin/stdout;
 * its stderr is a pipe. Returns the port from its first stderr line. */
static unsigned start_cat_listen(child_t *cat, int in, int out, bool verbose)
{
    const char *argv[] = {TETHER, "cat", "--listen", "127.0.0.1:0",
                          verbose ? "--verbose" : NULL, NULL};
    char line[256];

    *cat = spawn(argv, in, out, PIPE_FD);
    read_line(cat->err, line, sizeof(line), WAIT_MS);
    cr_assert(strncmp(line, "tether cat: listening on 127.0.0.1:", 35) == 0, "got '%s'", line);
    return port_of(line);
}

/* A python3 program; its first stdout line is returned in line. */
static child_t start_python(const char *prog, const char *arg, int in, char *line, size_t cap)
{
    const char *argv[] = {"python3", "-c", prog, arg, NULL};
    child_t c = spawn(argv, in, PIPE_FD, DEVNULL_FD);
    if (line != NULL)
        read_line(c.out, line, cap, WAIT_MS);
    return c;
}

/* ---- usage --------------------------------------------------------------------- */

Test(cli, help_on_every_subcommand_prints_usage_to_stdout_and_exits_0)
{
    static const char *const cmds[] = {"echo", "cat", "send"};

    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        const char *argv[] = {TETHER, cmds[i], "--help", NULL};
        child_t c = spawn(argv, DEVNULL_FD, PIPE_FD, PIPE_FD);
        size_t n, en;
        char *out = read_all(c.out, &n, WAIT_MS);
        char *err = read_all(c.err, &en, WAIT_MS);
        char want[64];

        snprintf(want, sizeof(want), "usage: tether %s", cmds[i]);
        cr_expect_eq(wait_exit(&c, WAIT_MS), 0, "tether %s --help: non-zero exit", cmds[i]);
        cr_expect(strncmp(out, want, strlen(want)) == 0, "tether %s --help printed '%s'", cmds[i],
                  out);
        cr_expect(strstr(out, "Exit status") != NULL, "tether %s --help: no exit statuses",
                  cmds[i]);
        cr_expect_eq(en, 0, "tether %s --help wrote to stderr: '%s'", cmds[i], err);
        free(out);
        free(err);
        close_fd(&c.out);
        close_fd(&c.err);
    }
}

static void expect_usage_error(const char *const argv[], const char *must_say)
{
    child_t c = spawn(argv, DEVNULL_FD, PIPE_FD, PIPE_FD);
    size_t n, en;
    char *out = read_all(c.out, &n, WAIT_MS);
    char *err = read_all(c.err, &en, WAIT_MS);
    int st = wait_exit(&c, WAIT_MS);

    cr_expect_eq(st, 2, "%s %s %s: exit %d, expected 2", argv[1], argv[2], argv[3] ? argv[3] : "",
                 st);
    cr_expect(strstr(err, must_say) != NULL, "stderr '%s' does not name '%s'", err, must_say);
    cr_expect(strstr(err, "--help") != NULL, "stderr '%s' has no usage hint", err);
    cr_expect_eq(n, 0, "stdout not empty: '%s'", out);
    free(out);
    free(err);
    close_fd(&c.out);
    close_fd(&c.err);
}

Test(cli, bad_address_or_port_exits_2_naming_it_with_a_usage_hint)
{
    const char *a1[] = {TETHER, "cat", "nonsense", NULL};
    const char *a2[] = {TETHER, "cat", "127.0.0.1:99999", NULL};
    const char *a4[] = {TETHER, "send", "localhost:0", "/etc/hostname", NULL};
    const char *a5[] = {TETHER, "echo", "--listen", "300.1.1.1:7", NULL};
    const char *a6[] = {TETHER, "cat", "--listen", "127.0.0.1", NULL};
    const char *a7[] = {TETHER, "cat", "--no-such-option", "127.0.0.1:1", NULL};
    const char *a8[] = {TETHER, "send", "127.0.0.1:1", NULL};

    expect_usage_error(a1, "'nonsense'");
    expect_usage_error(a2, "'99999'");
    expect_usage_error(a4, "'localhost:0'");
    expect_usage_error(a5, "'300.1.1.1:7'");
    expect_usage_error(a6, "'127.0.0.1'");
    expect_usage_error(a7, "'--no-such-option'");
    expect_usage_error(a8, "missing FILE");
}

/* A port that refuses: bound (so nobody else takes it) but not listening, so a SYN
 * to it is answered with RST. */
static int refusing_port(unsigned *port)
{
    tt_addr_t a = th_loopback(0);
    socklen_t len = sizeof(a.u.in4);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, &a.u.sa, a.len), 0);
    cr_assert_eq(getsockname(fd, &a.u.sa, &len), 0);
    *port = tt_addr_port(&a);
    return fd;
}

Test(cli, connect_refused_exits_1_with_one_line_naming_address_and_errno_text)
{
    unsigned port;
    int hold = refusing_port(&port);
    char target[64], want[128];
    const char *cat_argv[] = {TETHER, "cat", target, NULL};
    const char *send_argv[] = {TETHER, "send", target, "/etc/hostname", NULL};
    const char *const *argvs[] = {cat_argv, send_argv};

    snprintf(target, sizeof(target), "127.0.0.1:%u", port);
    for (int i = 0; i < 2; i++) {
        child_t c = spawn(argvs[i], DEVNULL_FD, PIPE_FD, PIPE_FD);
        size_t n, en;
        char *out = read_all(c.out, &n, WAIT_MS);
        char *err = read_all(c.err, &en, WAIT_MS);
        int st = wait_exit(&c, WAIT_MS);

        snprintf(want, sizeof(want), "tether %s: connect 127.0.0.1:%u: Connection refused\n",
                 argvs[i][1], port);
        cr_expect_eq(st, 1, "tether %s: exit %d, expected 1", argvs[i][1], st);
        cr_expect_str_eq(err, want, "tether %s: stderr '%s', expected '%s'", argvs[i][1], err,
                         want);
        cr_expect_eq(n, 0, "tether %s: stdout '%s'", argvs[i][1], out);
        free(out);
        free(err);
        close_fd(&c.out);
        close_fd(&c.err);
    }
    close(hold);
}

/* ---- echo ---------------------------------------------------------------------- */

/* Client: sends three pieces (one of 1 MiB), half-closes, reads to EOF, and prints
 * "<bytes sent> <bytes received> <same|different>". */
static const char py_echo_client[] =
    "import os, socket, sys\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n"
    "data = b'first\\n' + os.urandom(1 << 20) + b'last\\n'\n"
    "s.sendall(data)\n"
    "s.shutdown(socket.SHUT_WR)\n"
    "got = bytearray()\n"
    "while True:\n"
    "    b = s.recv(65536)\n"
    "    if not b: break\n"
    "    got += b\n"
    "print(len(data), len(got), 'same' if bytes(got) == data else 'different', flush=True)\n";

Test(cli, echo_server_answers_nc_and_python_then_exits_0_on_sigint)
{
    child_t echo, nc, py;
    unsigned port = start_echo(&echo);
    char portstr[16], line[256];
    size_t n;

    snprintf(portstr, sizeof(portstr), "%u", port);
    const char *nc_argv[] = {"nc", "-N", "127.0.0.1", portstr, NULL};
    nc = spawn(nc_argv, PIPE_FD, PIPE_FD, DEVNULL_FD);
    cr_assert_eq(write(nc.in, "ping\n", 5), 5);
    close_fd(&nc.in); /* nc -N: shutdown(SHUT_WR) at stdin EOF */
    char *got = read_all(nc.out, &n, WAIT_MS);
    cr_expect_str_eq(got, "ping\n", "nc got '%s'", got);
    cr_expect_eq(wait_exit(&nc, WAIT_MS), 0);
    free(got);
    close_fd(&nc.out);

    py = start_python(py_echo_client, portstr, DEVNULL_FD, line, sizeof(line));
    cr_expect_str_eq(line, "1048587 1048587 same", "python client: '%s'", line);
    cr_expect_eq(wait_exit(&py, WAIT_MS), 0);
    close_fd(&py.out);

    kill(echo.pid, SIGINT);
    int st = wait_exit(&echo, WAIT_MS);
    cr_expect_eq(st, 0, "tether echo after SIGINT: exit %d", st);
    close_fd(&echo.out);
}

/* Client: connects, sends "x", gets "x" back, prints "ready", then waits for the
 * server to close and prints "eof" (orderly FIN) or the error. */
static const char py_idle_client[] =
    "import socket, sys\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n"
    "s.sendall(b'x')\n"
    "assert s.recv(1) == b'x'\n"
    "print('ready', flush=True)\n"
    "try:\n"
    "    b = s.recv(1)\n"
    "    print('eof' if b == b'' else 'data', flush=True)\n"
    "except Exception as e:\n"
    "    print(type(e).__name__, flush=True)\n";

Test(cli, echo_sigterm_closes_listener_and_open_connections_and_exits_0)
{
    child_t echo, py;
    unsigned port = start_echo(&echo);
    char portstr[16], line[256];

    snprintf(portstr, sizeof(portstr), "%u", port);
    py = start_python(py_idle_client, portstr, DEVNULL_FD, line, sizeof(line));
    cr_assert_str_eq(line, "ready");

    kill(echo.pid, SIGTERM);
    int st = wait_exit(&echo, WAIT_MS);
    cr_expect_eq(st, 0, "tether echo after SIGTERM: exit %d", st);
    read_line(py.out, line, sizeof(line), WAIT_MS);
    cr_expect_str_eq(line, "eof", "the open connection saw '%s', expected an orderly close",
                     line);
    cr_expect_eq(wait_exit(&py, WAIT_MS), 0);
    close_fd(&py.out);
    close_fd(&echo.out);

    /* The listener is gone too: a new connection is refused. */
    tt_addr_t a = th_loopback((uint16_t)port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_expect_eq(connect(fd, &a.u.sa, a.len), -1);
    cr_expect_eq(errno, ECONNREFUSED, "connect after shutdown: %s", strerror(errno));
    close(fd);
}

/* ---- cat, client --------------------------------------------------------------- */

/* Listener: prints its port; greets the client at once; reads to EOF (the client's
 * FIN); then sends back what it received, reversed, and closes. The answer comes
 * after the client's FIN, so it only arrives if the half-close is a half-close. */
static const char py_reverse_server[] =
    "import socket\n"
    "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)\n"
    "print(l.getsockname()[1], flush=True)\n"
    "l.settimeout(10)\n"
    "c, _ = l.accept(); c.settimeout(10)\n"
    "c.sendall(b'hello from python\\n')\n"
    "got = bytearray()\n"
    "while True:\n"
    "    b = c.recv(65536)\n"
    "    if not b: break\n"
    "    got += b\n"
    "c.sendall(bytes(reversed(got)))\n"
    "c.close()\n"
    "print(len(got), flush=True)\n";

static void cat_client_half_close(bool stdin_is_file)
{
    const size_t len = 300 * 1024; /* more than a pipe holds */
    const char *path = tmp_path("cat-in.bin");
    char line[256], target[300];
    size_t n, inlen;
    child_t py, cat;
    int in_fd = PIPE_FD;

    make_random_file(path, len);
    char *data = file_of(path, &inlen);
    py = start_python(py_reverse_server, NULL, DEVNULL_FD, line, sizeof(line));
    snprintf(target, sizeof(target), "127.0.0.1:%s", line);
    const char *argv[] = {TETHER, "cat", target, NULL};

    if (stdin_is_file) {
        in_fd = open(path, O_RDONLY | O_CLOEXEC); /* sendfile(2) path */
        cr_assert_geq(in_fd, 0);
    }
    cat = spawn(argv, in_fd, PIPE_FD, PIPE_FD);
    if (stdin_is_file) {
        close(in_fd);
    } else {
        /* tether reads its stdin whatever its stdout does, so this completes. */
        write_all(cat.in, data, len, WAIT_MS);
        close_fd(&cat.in);
    }
    char *out = read_all(cat.out, &n, WAIT_MS);
    int st = wait_exit(&cat, WAIT_MS);
    size_t en;
    char *err = read_all(cat.err, &en, WAIT_MS);

    cr_expect_eq(st, 0, "tether cat: exit %d, stderr '%s'", st, err);
    const char *greet = "hello from python\n";
    size_t glen = strlen(greet);
    cr_assert_eq(n, glen + len, "stdout has %zu bytes, expected %zu", n, glen + len);
    cr_expect(memcmp(out, greet, glen) == 0, "greeting missing");
    size_t bad = len;
    for (size_t i = 0; i < len && bad == len; i++)
        if ((unsigned char)out[glen + i] != (unsigned char)data[len - 1 - i])
            bad = i;
    cr_expect_eq(bad, len, "reversed data differs at offset %zu", bad);
    read_line(py.out, line, sizeof(line), WAIT_MS);
    cr_expect_eq(strtoul(line, NULL, 10), len, "python received %s bytes, expected %zu", line,
                 len);
    cr_expect_eq(wait_exit(&py, WAIT_MS), 0);
    free(out);
    free(err);
    free(data);
    close_fd(&cat.out);
    close_fd(&cat.err);
    close_fd(&py.out);
}

Test(cli, cat_client_pipe_stdin_eof_half_closes_and_prints_what_arrives_after)
{
    cat_client_half_close(false);
}

Test(cli, cat_client_file_stdin_goes_by_sendfile_and_half_closes)
{
    cat_client_half_close(true);
}

Test(cli, cat_client_through_echo_loses_nothing_when_stdout_is_slow)
{
    const size_t len = 8u << 20; /* far more than the socket, pipe and writer buffers */
    const char *path = tmp_path("slow.bin");
    char target[64];
    child_t echo, cat;
    size_t n, inlen;

    make_random_file(path, len);
    char *data = file_of(path, &inlen);
    snprintf(target, sizeof(target), "127.0.0.1:%u", start_echo(&echo));
    const char *argv[] = {TETHER, "cat", target, NULL};
    int in = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(in, 0);
    cat = spawn(argv, in, PIPE_FD, DEVNULL_FD);
    close(in);

    usleep(500 * 1000); /* nobody reads stdout: tether must pause, not drop or fail */
    char *out = read_all(cat.out, &n, WAIT_MS);
    cr_expect_eq(wait_exit(&cat, WAIT_MS), 0);
    cr_assert_eq(n, len, "got %zu bytes back, expected %zu", n, len);
    cr_expect(memcmp(out, data, len) == 0, "the echoed bytes differ");
    kill(echo.pid, SIGTERM);
    cr_expect_eq(wait_exit(&echo, WAIT_MS), 0);
    free(out);
    free(data);
    close_fd(&cat.out);
    close_fd(&echo.out);
}

/* Fill a pipe until the reader has stopped taking bytes for `quiet_ms`; returns the
 * bytes written. Bounded: at most `max` bytes and WAIT_MS. */
static size_t fill_until_stalled(int fd, size_t max, int quiet_ms)
{
    static char chunk[65536];
    uint64_t end = th_now_ms() + WAIT_MS;
    size_t total = 0;

    cr_assert_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    while (total < max && th_now_ms() < end) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        if (poll(&pf, 1, quiet_ms) == 0)
            return total; /* no room for quiet_ms: the reader is stalled */
        ssize_t r = write(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EAGAIN)
            continue;
        cr_assert_gt(r, 0, "write: %s", strerror(errno));
        total += (size_t)r;
    }
    cr_assert_fail("the reader never stalled (%zu bytes written)", total);
    return total;
}

Test(cli, cat_sigint_while_every_buffer_is_full_exits_130_promptly)
{
    char target[64];
    child_t echo, cat;

    snprintf(target, sizeof(target), "127.0.0.1:%u", start_echo(&echo));
    const char *argv[] = {TETHER, "cat", target, NULL};
    cat = spawn(argv, PIPE_FD, PIPE_FD, DEVNULL_FD);
    /* Nothing on stdin at first: tether waits for the pipe to become readable. Then
     * stdin data, the socket, the echo server and stdout all back up, because this
     * test never reads tether's stdout. A SIGINT must still end it, with nothing
     * leaked (the sanitizer build checks) and no wait for the stuck stdout beyond
     * the documented 2 s. */
    usleep(200 * 1000);
    size_t n = fill_until_stalled(cat.in, (size_t)256 << 20, 300);
    cr_assert_gt(n, 0);
    uint64_t t0 = th_now_ms();
    kill(cat.pid, SIGINT);
    int st = wait_exit(&cat, WAIT_MS);
    uint64_t took = th_now_ms() - t0;
    cr_expect_eq(st, 130, "tether cat after SIGINT: exit %d, expected 130", st);
    cr_expect_lt(took, 5000, "took %llu ms to exit", (unsigned long long)took);
    close_fd(&cat.in);
    close_fd(&cat.out);
    kill(echo.pid, SIGTERM);
    cr_expect_eq(wait_exit(&echo, WAIT_MS), 0);
    close_fd(&echo.out);
}

/* ---- cat --listen -------------------------------------------------------------- */

Test(cli, cat_listen_exchanges_both_ways_with_socat)
{
    const char *in_path = tmp_path("listen-in.txt");
    char portstr[16], target[64];
    child_t cat, socat;
    size_t n, sn;

    write_file(in_path, "from tether\n");
    int in = open(in_path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(in, 0);
    snprintf(portstr, sizeof(portstr), "%u", start_cat_listen(&cat, in, PIPE_FD, false));
    close(in);
    snprintf(target, sizeof(target), "TCP:127.0.0.1:%s", portstr);
    const char *argv[] = {"socat", "-t", "5", "-", target, NULL};
    socat = spawn(argv, PIPE_FD, PIPE_FD, DEVNULL_FD);
    cr_assert_eq(write(socat.in, "from socat\n", 11), 11);
    close_fd(&socat.in);

    char *got = read_all(cat.out, &n, WAIT_MS);
    char *sgot = read_all(socat.out, &sn, WAIT_MS);
    cr_expect_str_eq(got, "from socat\n", "tether cat --listen printed '%s'", got);
    cr_expect_str_eq(sgot, "from tether\n", "socat printed '%s'", sgot);
    cr_expect_eq(wait_exit(&cat, WAIT_MS), 0);
    cr_expect_eq(wait_exit(&socat, WAIT_MS), 0);
    free(got);
    free(sgot);
    close_fd(&cat.out);
    close_fd(&cat.err);
    close_fd(&socat.out);
}

Test(cli, cat_listen_receives_a_file_from_nc)
{
    const size_t len = 1u << 20;
    const char *path = tmp_path("nc-in.bin");
    char portstr[16];
    child_t cat, nc;
    size_t n, inlen;

    make_random_file(path, len);
    char *data = file_of(path, &inlen);
    snprintf(portstr, sizeof(portstr), "%u", start_cat_listen(&cat, DEVNULL_FD, PIPE_FD, false));
    int in = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(in, 0);
    const char *argv[] = {"nc", "-N", "127.0.0.1", portstr, NULL};
    nc = spawn(argv, in, DEVNULL_FD, DEVNULL_FD);
    close(in);

    char *got = read_all(cat.out, &n, WAIT_MS);
    cr_expect_eq(wait_exit(&cat, WAIT_MS), 0);
    cr_expect_eq(wait_exit(&nc, WAIT_MS), 0);
    cr_assert_eq(n, len, "received %zu bytes, expected %zu", n, len);
    cr_expect(memcmp(got, data, len) == 0, "received bytes differ");
    free(got);
    free(data);
    close_fd(&cat.out);
    close_fd(&cat.err);
}

Test(cli, cat_listen_stops_listening_after_the_first_connection)
{
    char line[256];
    child_t cat;
    unsigned port = start_cat_listen(&cat, PIPE_FD, PIPE_FD, true);
    tt_addr_t a = th_loopback((uint16_t)port);
    int first = th_tcp_connect_blocking(&a);

    read_line(cat.err, line, sizeof(line), WAIT_MS);
    cr_assert(strncmp(line, "tether cat: connection from 127.0.0.1:", 38) == 0, "got '%s'",
              line);
    int second = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(second, 0);
    cr_expect_eq(connect(second, &a.u.sa, a.len), -1, "a second connection was accepted");
    cr_expect_eq(errno, ECONNREFUSED, "second connect: %s", strerror(errno));
    close(second);

    /* Both sides finish: the test's FIN, then tether's stdin EOF. */
    cr_assert_eq(write(first, "bye\n", 4), 4);
    shutdown(first, SHUT_WR);
    close_fd(&cat.in);
    size_t n;
    char *got = read_all(cat.out, &n, WAIT_MS);
    cr_expect_str_eq(got, "bye\n");
    cr_expect_eq(wait_exit(&cat, WAIT_MS), 0);
    char b;
    cr_expect_eq(recv(first, &b, 1, 0), 0, "expected tether's FIN");
    close(first);
    free(got);
    close_fd(&cat.out);
    close_fd(&cat.err);
}

/* ---- send ---------------------------------------------------------------------- */

/* Receiver: prints its port; reads to EOF; prints "<bytes> <sha256>"; closes. */
static const char py_sha_server[] =
    "import hashlib, socket\n"
    "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)\n"
    "print(l.getsockname()[1], flush=True)\n"
    "l.settimeout(10)\n"
    "c, _ = l.accept(); c.settimeout(10)\n"
    "h = hashlib.sha256(); n = 0\n"
    "while True:\n"
    "    b = c.recv(1 << 16)\n"
    "    if not b: break\n"
    "    h.update(b); n += len(b)\n"
    "c.close()\n"
    "print(n, h.hexdigest(), flush=True)\n";

Test(cli, send_5mb_file_arrives_whole_checksum_verified_by_the_receiver)
{
    const size_t len = 5u << 20;
    const char *path = tmp_path("send.bin");
    char line[256], target[300], sha[65], want[400];
    child_t py, snd;
    size_t n, en;

    make_random_file(path, len);
    sha256_file(path, sha);
    py = start_python(py_sha_server, NULL, DEVNULL_FD, line, sizeof(line));
    snprintf(target, sizeof(target), "127.0.0.1:%s", line);
    const char *argv[] = {TETHER, "send", target, path, NULL};
    snd = spawn(argv, DEVNULL_FD, PIPE_FD, PIPE_FD);
    char *out = read_all(snd.out, &n, WAIT_MS);
    char *err = read_all(snd.err, &en, WAIT_MS);
    int st = wait_exit(&snd, WAIT_MS);

    cr_expect_eq(st, 0, "tether send: exit %d, stderr '%s'", st, err);
    snprintf(want, sizeof(want), "%zu bytes sent to %s in ", len, target);
    cr_expect(strncmp(out, want, strlen(want)) == 0, "stdout '%s', expected '%s...'", out, want);
    read_line(py.out, line, sizeof(line), WAIT_MS);
    snprintf(want, sizeof(want), "%zu %s", len, sha);
    cr_expect_str_eq(line, want, "receiver: '%s', expected '%s'", line, want);
    cr_expect_eq(wait_exit(&py, WAIT_MS), 0);
    free(out);
    free(err);
    close_fd(&snd.out);
    close_fd(&snd.err);
    close_fd(&py.out);
}

/* Receiver that reads a little, then aborts the connection with RST. */
static const char py_reset_server[] =
    "import socket, struct\n"
    "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)\n"
    "print(l.getsockname()[1], flush=True)\n"
    "l.settimeout(10)\n"
    "c, _ = l.accept(); c.settimeout(10)\n"
    "c.recv(1000)\n"
    "c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n"
    "c.close()\n";

Test(cli, send_exits_1_when_the_receiver_resets_before_the_end)
{
    const size_t len = 32u << 20; /* far more than fits in the socket buffers */
    const char *path = tmp_path("reset.bin");
    char line[256], target[300];
    child_t py, snd;
    size_t n, en;

    make_random_file(path, len);
    py = start_python(py_reset_server, NULL, DEVNULL_FD, line, sizeof(line));
    snprintf(target, sizeof(target), "127.0.0.1:%s", line);
    const char *argv[] = {TETHER, "send", target, path, NULL};
    snd = spawn(argv, DEVNULL_FD, PIPE_FD, PIPE_FD);
    char *out = read_all(snd.out, &n, WAIT_MS);
    char *err = read_all(snd.err, &en, WAIT_MS);
    int st = wait_exit(&snd, WAIT_MS);

    cr_expect_eq(st, 1, "tether send: exit %d, expected 1", st);
    cr_expect_eq(n, 0, "nothing should be reported sent: '%s'", out);
    cr_expect(strstr(err, target) != NULL && strstr(err, "bytes written") != NULL,
              "stderr '%s' should name the address and the bytes written", err);
    cr_expect_eq(wait_exit(&py, WAIT_MS), 0);
    free(out);
    free(err);
    close_fd(&snd.out);
    close_fd(&snd.err);
    close_fd(&py.out);
}

Test(cli, send_of_a_missing_file_exits_1_before_connecting)
{
    unsigned port;
    int hold = refusing_port(&port); /* would say "refused" if it got that far */
    char target[64];
    const char *argv[] = {TETHER, "send", target, "/nonexistent/file", NULL};
    size_t n, en;

    snprintf(target, sizeof(target), "127.0.0.1:%u", port);
    child_t c = spawn(argv, DEVNULL_FD, PIPE_FD, PIPE_FD);
    char *out = read_all(c.out, &n, WAIT_MS);
    char *err = read_all(c.err, &en, WAIT_MS);
    cr_expect_eq(wait_exit(&c, WAIT_MS), 1);
    cr_expect_str_eq(err, "tether send: /nonexistent/file: No such file or directory\n", "stderr '%s'",
                     err);
    free(out);
    free(err);
    close_fd(&c.out);
    close_fd(&c.err);
    close(hold);
}

/* ---- one shape for every command's lines ---------------------------------------- */

/* Start a server command; return the first line of the stream it announces on. */
static child_t start_server(const char *const argv[], bool on_stderr, char *line, size_t cap)
{
    child_t c = spawn(argv, on_stderr ? PIPE_FD : DEVNULL_FD, on_stderr ? PIPE_FD : PIPE_FD,
                      on_stderr ? PIPE_FD : DEVNULL_FD);
    read_line(on_stderr ? c.err : c.out, line, cap, WAIT_MS);
    return c;
}

static void stop_child(child_t *c, int sig)
{
    kill(c->pid, sig);
    wait_exit(c, WAIT_MS);
    close_fd(&c->in);
    close_fd(&c->out);
    close_fd(&c->err);
}

Test(cli, every_server_says_listening_on_in_one_shape)
{
    static const struct {
        const char *argv[8];
        const char *cmd;
        bool on_stderr;
    } servers[] = {
        {{TETHER, "echo", "--listen", "127.0.0.1:0", NULL}, "echo", false},
        {{TETHER, "echo", "--listen", "127.0.0.1:0", "--workers", "2", NULL}, "echo", false},
        {{TETHER, "chat", "--listen", "127.0.0.1:0", "--quiet", NULL}, "chat", false},
        {{TETHER, "chat", "--listen", "127.0.0.1:0", "--quiet", "--workers", "2", NULL}, "chat",
         false},
        {{TETHER, "udp-echo", "--listen", "127.0.0.1:0", NULL}, "udp-echo", false},
        {{TETHER, "cat", "--listen", "127.0.0.1:0", NULL}, "cat", true},
        {{TETHER, "cat", "--udp", "--listen", "127.0.0.1:0", NULL}, "cat", true},
    };

    for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++) {
        char line[256], want[64];
        child_t c = start_server(servers[i].argv, servers[i].on_stderr, line, sizeof(line));

        snprintf(want, sizeof(want), "tether %s: listening on 127.0.0.1:", servers[i].cmd);
        cr_expect(strncmp(line, want, strlen(want)) == 0, "%s %s: '%s', expected '%s...'",
                  servers[i].argv[1], servers[i].argv[4] ? servers[i].argv[4] : "", line, want);
        stop_child(&c, SIGTERM);
    }
}

Test(cli, a_server_that_cannot_listen_says_so_in_one_shape_and_exits_1)
{
    tt_addr_t a = th_loopback(0);
    socklen_t len = sizeof(a.u.in4);
    int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    char where[64];

    /* One port taken for TCP (listening) and UDP alike. */
    cr_assert_eq(bind(tcp, &a.u.sa, a.len), 0);
    cr_assert_eq(listen(tcp, 1), 0);
    cr_assert_eq(getsockname(tcp, &a.u.sa, &len), 0);
    cr_assert_eq(bind(udp, &a.u.sa, a.len), 0);
    snprintf(where, sizeof(where), "127.0.0.1:%u", tt_addr_port(&a));
    const char *const argvs[][6] = {
        {TETHER, "echo", "--listen", where, NULL},
        {TETHER, "chat", "--listen", where, NULL},
        {TETHER, "cat", "--listen", where, NULL},
        {TETHER, "udp-echo", "--listen", where, NULL},
    };
    const char *what[] = {"listen", "listen", "listen", "bind"};

    for (size_t i = 0; i < sizeof(argvs) / sizeof(argvs[0]); i++) {
        char want[160];
        size_t n, en;
        child_t c = spawn(argvs[i], DEVNULL_FD, PIPE_FD, PIPE_FD);
        char *out = read_all(c.out, &n, WAIT_MS);
        char *err = read_all(c.err, &en, WAIT_MS);
        int st = wait_exit(&c, WAIT_MS);

        snprintf(want, sizeof(want), "tether %s: %s %s: Address already in use\n", argvs[i][1],
                 what[i], where);
        cr_expect_eq(st, 1, "tether %s: exit %d", argvs[i][1], st);
        cr_expect_str_eq(err, want, "tether %s: stderr '%s', expected '%s'", argvs[i][1], err,
                         want);
        free(out);
        free(err);
        close_fd(&c.out);
        close_fd(&c.err);
    }
    close(tcp);
    close(udp);
}

/* ---- SIGPIPE ------------------------------------------------------------------------ */

Test(cli, no_server_dies_of_sigpipe_when_stdout_is_a_closed_pipe)
{
    static const char *const argvs[][8] = {
        {TETHER, "echo", "--listen", "127.0.0.1:0", NULL},
        {TETHER, "echo", "--listen", "127.0.0.1:0", "--workers", "2", NULL},
        {TETHER, "chat", "--listen", "127.0.0.1:0", NULL},
        {TETHER, "chat", "--listen", "127.0.0.1:0", "--workers", "2", NULL},
        {TETHER, "udp-echo", "--listen", "127.0.0.1:0", NULL},
    };

    for (size_t i = 0; i < sizeof(argvs) / sizeof(argvs[0]); i++) {
        int p[2];
        size_t en;
        char want[96];

        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        close(p[0]); /* nobody will ever read: the first write is EPIPE (or SIGPIPE) */
        child_t c = spawn(argvs[i], DEVNULL_FD, p[1], PIPE_FD);
        close(p[1]);
        char *err = read_all(c.err, &en, WAIT_MS);
        int st = wait_exit(&c, WAIT_MS);

        snprintf(want, sizeof(want), "tether %s: write stdout: Broken pipe\n", argvs[i][1]);
        cr_expect_eq(st, 1, "tether %s %s: exit %d (141 is death by SIGPIPE)", argvs[i][1],
                     argvs[i][4] ? argvs[i][4] : "", st);
        cr_expect_str_eq(err, want, "tether %s: stderr '%s'", argvs[i][1], err);
        free(err);
        close_fd(&c.err);
    }
}

/* ---- help ------------------------------------------------------------------------- */

Test(cli, help_of_the_servers_and_bench_has_exit_statuses_and_chat_shows_its_defaults)
{
    static const char *const cmds[] = {"bench", "chat", "udp-echo"};

    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        const char *argv[] = {TETHER, cmds[i], "--help", NULL};
        child_t c = spawn(argv, DEVNULL_FD, PIPE_FD, DEVNULL_FD);
        size_t n;
        char *out = read_all(c.out, &n, WAIT_MS);
        char want[64];

        snprintf(want, sizeof(want), "usage: tether %s", cmds[i]);
        cr_expect_eq(wait_exit(&c, WAIT_MS), 0);
        cr_expect(strncmp(out, want, strlen(want)) == 0, "tether %s --help: '%s'", cmds[i], out);
        cr_expect(strstr(out, "Exit status") != NULL, "tether %s --help: no exit statuses",
                  cmds[i]);
        if (strcmp(cmds[i], "chat") == 0) {
            static const char *const defaults[] = {"(default 127.0.0.1:7001)", "(default 4096)",
                                                   "(default 1)", "(default: no limit)"};
            for (size_t k = 0; k < sizeof(defaults) / sizeof(defaults[0]); k++)
                cr_expect(strstr(out, defaults[k]) != NULL, "chat --help does not say '%s'",
                          defaults[k]);
        }
        free(out);
        close_fd(&c.out);
    }
}

/* ---- send - ----------------------------------------------------------------------- */

Test(cli, send_dash_sends_stdin_from_a_pipe)
{
    const size_t len = 1u << 20;
    const char *path = tmp_path("send-stdin.bin");
    char line[256], target[300], sha[65], want[400];
    size_t n, inlen;

    make_random_file(path, len);
    sha256_file(path, sha);
    char *data = file_of(path, &inlen);
    child_t py = start_python(py_sha_server, NULL, DEVNULL_FD, line, sizeof(line));
    snprintf(target, sizeof(target), "127.0.0.1:%s", line);
    const char *argv[] = {TETHER, "send", target, "-", NULL};
    child_t snd = spawn(argv, PIPE_FD, PIPE_FD, DEVNULL_FD);
    write_all(snd.in, data, len, WAIT_MS);
    close_fd(&snd.in);
    char *out = read_all(snd.out, &n, WAIT_MS);
    int st = wait_exit(&snd, WAIT_MS);

    cr_expect_eq(st, 0, "tether send - : exit %d", st);
    snprintf(want, sizeof(want), "%zu bytes sent to %s in ", len, target);
    cr_expect(strncmp(out, want, strlen(want)) == 0, "stdout '%s', expected '%s...'", out, want);
    read_line(py.out, line, sizeof(line), WAIT_MS);
    snprintf(want, sizeof(want), "%zu %s", len, sha);
    cr_expect_str_eq(line, want, "receiver: '%s', expected '%s'", line, want);
    cr_expect_eq(wait_exit(&py, WAIT_MS), 0);
    free(out);
    free(data);
    close_fd(&snd.out);
    close_fd(&py.out);
}

/* ---- udp-echo --join ---------------------------------------------------------------- */

Test(cli, udp_echo_join_of_a_bad_group_is_a_usage_error)
{
    const char *a1[] = {TETHER, "udp-echo", "--join", "10.0.0.1", "--listen", ":0", NULL};
    const char *a2[] = {TETHER, "udp-echo", "--join", "not-a-group", NULL};
    const char *a3[] = {TETHER, "cat", "--udp", "--join", "10.0.0.1", "--listen", ":0", NULL};

    expect_usage_error(a1, "'10.0.0.1'");
    expect_usage_error(a2, "'not-a-group'");
    expect_usage_error(a3, "'10.0.0.1'");
}

/* ---- cat --udp ---------------------------------------------------------------------- */

/* UDP receiver on the family of argv[1] ("4" or "6"): prints its port, then the bytes
 * and datagrams received until 1.5 s pass without one. */
static const char py_udp_count[] =
    "import socket, sys\n"
    "fam = socket.AF_INET6 if sys.argv[1] == '6' else socket.AF_INET\n"
    "s = socket.socket(fam, socket.SOCK_DGRAM)\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)\n"
    "s.bind(('::1' if sys.argv[1] == '6' else '127.0.0.1', 0))\n"
    "print(s.getsockname()[1], flush=True)\n"
    "s.settimeout(1.5); n = d = 0\n"
    "try:\n"
    "    while True:\n"
    "        n += len(s.recv(70000)); d += 1\n"
    "except socket.timeout:\n"
    "    pass\n"
    "print(n, d, flush=True)\n";

static void cat_udp_sends_whole_file(const char *family, const char *host)
{
    const size_t len = 70000; /* more than one datagram of either family */
    const char *path = tmp_path("udp-in.bin");
    char line[256], target[300];
    size_t en;

    make_random_file(path, len);
    child_t py = start_python(py_udp_count, family, DEVNULL_FD, line, sizeof(line));
    snprintf(target, sizeof(target), "%s:%s", host, line);
    const char *argv[] = {TETHER, "cat", "--udp", "--timeout", "0.2", target, NULL};
    int in = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(in, 0);
    child_t cat = spawn(argv, in, DEVNULL_FD, PIPE_FD);
    close(in);
    char *err = read_all(cat.err, &en, WAIT_MS);
    int st = wait_exit(&cat, WAIT_MS);

    cr_expect_eq(st, 0, "cat --udp to %s: exit %d, stderr '%s'", target, st, err);
    cr_expect_eq(en, 0, "cat --udp to %s: stderr '%s'", target, err);
    read_line(py.out, line, sizeof(line), WAIT_MS);
    unsigned long got = strtoul(line, NULL, 10);
    cr_expect_eq(got, len, "the receiver got %lu of %zu bytes ('%s')", got, len, line);
    cr_expect_eq(wait_exit(&py, WAIT_MS), 0);
    free(err);
    close_fd(&cat.err);
    close_fd(&py.out);
}

Test(cli, cat_udp_cuts_stdin_into_datagrams_ipv4_can_carry)
{
    cat_udp_sends_whole_file("4", "127.0.0.1");
}

Test(cli, cat_udp_cuts_stdin_into_datagrams_ipv6_can_carry)
{
    cat_udp_sends_whole_file("6", "[::1]");
}

/* ---- bench ------------------------------------------------------------------------ */

Test(cli, bench_option_errors_name_the_option_with_a_usage_hint)
{
    const char *a1[] = {TETHER, "bench", "--connections", "lots", "127.0.0.1:1", NULL};
    const char *a2[] = {TETHER, "bench", "--duration", "-1", "127.0.0.1:1", NULL};
    const char *a3[] = {TETHER, "bench", "--no-such-option", "127.0.0.1:1", NULL};
    const char *a4[] = {TETHER, "bench", "127.0.0.1:99999", NULL};
    const char *a5[] = {TETHER, "bench", NULL, NULL};

    expect_usage_error(a1, "--connections 'lots'");
    expect_usage_error(a2, "--duration '-1'");
    expect_usage_error(a3, "'--no-such-option'");
    expect_usage_error(a4, "'99999'");
    expect_usage_error(a5, "missing HOST:PORT");
}

Test(cli, bench_refused_target_is_reported_at_once_and_exits_1)
{
    unsigned port;
    int hold = refusing_port(&port);
    char target[64], want[128];
    const char *argv[] = {TETHER, "bench", "--duration", "5", "--connections", "4", target, NULL};
    size_t n, en;

    snprintf(target, sizeof(target), "127.0.0.1:%u", port);
    uint64_t t0 = th_now_ms();
    child_t c = spawn(argv, DEVNULL_FD, PIPE_FD, PIPE_FD);
    char *out = read_all(c.out, &n, WAIT_MS);
    char *err = read_all(c.err, &en, WAIT_MS);
    int st = wait_exit(&c, WAIT_MS);
    uint64_t took = th_now_ms() - t0;

    snprintf(want, sizeof(want), "tether bench: connect %s: Connection refused\n", target);
    cr_expect_eq(st, 1, "exit %d", st);
    cr_expect_str_eq(err, want, "stderr '%s', expected '%s'", err, want);
    cr_expect_eq(n, 0, "a report of nothing: '%s'", out);
    cr_expect_lt(took, 2500, "took %llu ms: the refusal waited for the 5 s run",
                 (unsigned long long)took);
    free(out);
    free(err);
    close_fd(&c.out);
    close_fd(&c.err);
    close(hold);
}

Test(cli, bench_takes_a_host_name_for_its_target)
{
    child_t echo;
    char target[64];
    size_t n, en;

    snprintf(target, sizeof(target), "localhost:%u", start_echo(&echo));
    const char *argv[] = {TETHER, "bench", "--duration", "0.3", target, NULL};
    child_t c = spawn(argv, DEVNULL_FD, PIPE_FD, PIPE_FD);
    char *out = read_all(c.out, &n, WAIT_MS);
    char *err = read_all(c.err, &en, WAIT_MS);
    int st = wait_exit(&c, WAIT_MS);

    cr_expect_eq(st, 0, "bench %s: exit %d, stderr '%s'", target, st, err);
    cr_expect(strstr(out, "opened      1, connect errors 0, errors 0") != NULL, "report '%s'",
              out);
    free(out);
    free(err);
    close_fd(&c.out);
    close_fd(&c.err);
    stop_child(&echo, SIGTERM);
}

/* Echoes, but after 0.3 s adds 64 bytes nobody sent: not an echo server. */
static const char py_bad_echo[] =
    "import socket, time\n"
    "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(8)\n"
    "print(l.getsockname()[1], flush=True)\n"
    "l.settimeout(10)\n"
    "c, _ = l.accept()\n"          /* the probe: closes at once */
    "c.close()\n"
    "c, _ = l.accept(); c.settimeout(10)\n"
    "t0 = time.time(); extra = False\n"
    "while True:\n"
    "    b = c.recv(65536)\n"
    "    if not b: break\n"
    "    c.sendall(b)\n"
    "    if not extra and time.time() - t0 > 0.3:\n"
    "        c.sendall(b'y' * 64); extra = True\n";

Test(cli, bench_errors_against_a_server_that_is_not_an_echo_exit_1)
{
    char line[64], target[128];
    size_t n, en;
    child_t py = start_python(py_bad_echo, NULL, DEVNULL_FD, line, sizeof(line));

    snprintf(target, sizeof(target), "127.0.0.1:%s", line);
    const char *argv[] = {TETHER, "bench", "--duration", "1", target, NULL};
    child_t c = spawn(argv, DEVNULL_FD, PIPE_FD, PIPE_FD);
    char *out = read_all(c.out, &n, WAIT_MS);
    char *err = read_all(c.err, &en, WAIT_MS);
    int st = wait_exit(&c, WAIT_MS);

    cr_expect_eq(st, 1, "exit %d (stdout '%s')", st, out);
    cr_expect(strstr(out, "first: TT_EPROTOCOL") != NULL, "report '%s'", out);
    cr_expect(strncmp(err, "tether bench: ", 14) == 0 && strstr(err, target) != NULL &&
                  strstr(err, "not an echo server") != NULL,
              "stderr '%s'", err);
    free(out);
    free(err);
    close_fd(&c.out);
    close_fd(&c.err);
    wait_exit(&py, WAIT_MS);
    close_fd(&py.out);
}

/* Lines "tether bench: N s: ..." in text. */
static int progress_lines(const char *text)
{
    int count = 0;
    for (const char *p = text; (p = strstr(p, "tether bench: ")) != NULL; p++) {
        unsigned s;
        char rest[8];
        if (sscanf(p, "tether bench: %u s: %7s", &s, rest) == 2)
            count++;
    }
    return count;
}

Test(cli, bench_progress_prints_a_line_a_second_on_stderr_when_asked)
{
    child_t echo;
    char target[64];
    size_t n, en;

    snprintf(target, sizeof(target), "127.0.0.1:%u", start_echo(&echo));
    for (int asked = 0; asked < 2; asked++) {
        const char *argv[] = {TETHER, "bench", "--duration", "2.5", target,
                              asked ? "--progress" : NULL, NULL};
        child_t c = spawn(argv, DEVNULL_FD, PIPE_FD, PIPE_FD); /* stderr: a pipe, no tty */
        char *out = read_all(c.out, &n, WAIT_MS);
        char *err = read_all(c.err, &en, WAIT_MS);
        int st = wait_exit(&c, WAIT_MS);
        int lines = progress_lines(err);

        cr_expect_eq(st, 0, "exit %d, stderr '%s'", st, err);
        if (asked)
            cr_expect(lines >= 2 && lines <= 3, "%d progress lines in 2.5 s: '%s'", lines, err);
        else
            cr_expect_eq(lines, 0, "progress without --progress on a pipe: '%s'", err);
        free(out);
        free(err);
        close_fd(&c.out);
        close_fd(&c.err);
    }
    stop_child(&echo, SIGTERM);
}

/* ---- udp-echo is never a reflector nor one end of a loop ----------------------------- */

/* One IPv4 UDP datagram with any source address and port, by a raw socket (root).
 * Returns 0, or -errno (-EPERM without CAP_NET_RAW). */
static int send_forged_udp(const tt_addr_t *from, const tt_addr_t *to, const char *payload)
{
    size_t len = strlen(payload);
    unsigned char pkt[20 + 8 + 256];
    struct sockaddr_in dst = to->u.in4;
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW); /* IP_HDRINCL implied */

    if (fd < 0)
        return -errno;
    cr_assert_lt(len, 256u);
    memset(pkt, 0, 28);
    pkt[0] = 0x45; /* IPv4, 5 words of header */
    pkt[2] = (unsigned char)((28 + len) >> 8);
    pkt[3] = (unsigned char)(28 + len);
    pkt[8] = 64;          /* TTL */
    pkt[9] = IPPROTO_UDP; /* the header checksum is the kernel's to fill in */
    memcpy(pkt + 12, &from->u.in4.sin_addr, 4);
    memcpy(pkt + 16, &to->u.in4.sin_addr, 4);
    memcpy(pkt + 20, &from->u.in4.sin_port, 2);
    memcpy(pkt + 22, &to->u.in4.sin_port, 2);
    pkt[24] = (unsigned char)((8 + len) >> 8);
    pkt[25] = (unsigned char)(8 + len); /* UDP checksum 0: none (IPv4 allows it) */
    memcpy(pkt + 28, payload, len);
    dst.sin_port = 0;
    ssize_t r = sendto(fd, pkt, 28 + len, 0, (struct sockaddr *)&dst, sizeof(dst));
    int err = r < 0 ? -errno : 0;
    close(fd);
    return err;
}

typedef struct uecho_child {
    child_t c;
    tt_addr_t addr;
    const char *log;
} uecho_child_t;

/* `tether udp-echo --verbose` on 127.0.0.1:0, its stderr to a file (so that its
 * lines never block it, however many there are). */
static void start_uecho(uecho_child_t *u, const char *log)
{
    const char *argv[] = {TETHER, "udp-echo", "--listen", "127.0.0.1:0", "--verbose", NULL};
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    char line[256];

    cr_assert_geq(fd, 0);
    u->log = log;
    u->c = spawn(argv, DEVNULL_FD, PIPE_FD, fd);
    close(fd);
    read_line(u->c.out, line, sizeof(line), WAIT_MS);
    u->addr = th_loopback((uint16_t)port_of(line));
}

/* CPU seconds (user + system) the process has used so far. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long ut, stime;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    cr_assert_gt(n, 0);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* after the command name */
    cr_assert_not_null(p);
    cr_assert_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                        &stime),
                 2);
    return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Stop it with SIGINT; the datagrams it answered, from its totals line. */
static unsigned long stop_uecho(uecho_child_t *u)
{
    size_t n;
    unsigned long in = 0, out = 0;

    kill(u->c.pid, SIGINT);
    cr_expect_eq(wait_exit(&u->c, WAIT_MS), 0);
    close_fd(&u->c.out);
    char *log = file_of(u->log, &n);
    const char *t = strstr(log, " datagrams in (");
    cr_assert_not_null(t, "no totals in the log (%zu bytes)", n);
    while (t > log && t[-1] != '\n')
        t--;
    cr_assert_eq(sscanf(t, "tether udp-echo: %lu datagrams in (%*u bytes, %*u truncated, %*u "
                           "dropped by the kernel), %lu out",
                        &in, &out),
                 2, "totals '%.200s'", t);
    free(log);
    return out;
}

Test(cli, udp_echo_does_not_answer_a_datagram_forged_from_its_own_address_or_port_0)
{
    uecho_child_t a;
    start_uecho(&a, tmp_path("uecho-self.log"));
    tt_addr_t zero = th_loopback(0);

    int err = send_forged_udp(&a.addr, &a.addr, "from myself");
    if (err == -EPERM)
        cr_skip_test("raw sockets need CAP_NET_RAW");
    cr_assert_eq(err, 0, "raw send: %s", strerror(-err));
    cr_assert_eq(send_forged_udp(&zero, &a.addr, "from port 0"), 0);
    double cpu0 = cpu_seconds(a.c.pid);
    usleep(1000 * 1000);
    double cpu = cpu_seconds(a.c.pid) - cpu0;
    unsigned long out = stop_uecho(&a);

    /* Answered, the first datagram comes back to the server itself, forever. */
    cr_expect_eq(out, 0, "%lu datagrams sent to itself or to port 0", out);
    cr_expect_lt(cpu, 0.3, "%.2f s of CPU in 1 s", cpu);
}

Test(cli, two_udp_echo_servers_set_against_each_other_stop_within_a_budget)
{
    uecho_child_t a, b;
    start_uecho(&a, tmp_path("uecho-a.log"));
    start_uecho(&b, tmp_path("uecho-b.log"));

    /* "From" b to a: a answers b, b answers a, ... */
    int err = send_forged_udp(&b.addr, &a.addr, "ping-pong");
    if (err == -EPERM)
        cr_skip_test("raw sockets need CAP_NET_RAW");
    cr_assert_eq(err, 0, "raw send: %s", strerror(-err));
    usleep(1500 * 1000);
    double cpu_a = cpu_seconds(a.c.pid), cpu_b = cpu_seconds(b.c.pid);
    usleep(500 * 1000); /* by now the loop is over: neither spends CPU */
    cpu_a = cpu_seconds(a.c.pid) - cpu_a;
    cpu_b = cpu_seconds(b.c.pid) - cpu_b;
    unsigned long out = stop_uecho(&a) + stop_uecho(&b);

    /* Each answers the other at most its budget (1000 a second by default, a
     * second's worth at once): unchecked, loopback carries ~50 000 round trips a
     * second. */
    cr_expect_lt(out, 4000, "%lu datagrams went back and forth in 1.5 s", out);
    cr_expect_lt(cpu_a + cpu_b, 0.2, "still spending CPU: %.2f + %.2f s in 0.5 s", cpu_a, cpu_b);
}

Test(cli, stat_watch_ends_when_its_reader_has_gone)
{
    const char *sock = tmp_path("stat-watch.sock");
    const char *eargv[] = {TETHER, "echo", "--listen", "127.0.0.1:0", "--admin", sock, NULL};
    char line[256];
    child_t echo = start_server(eargv, false, line, sizeof(line));
    const char *argv[] = {TETHER, "stat", sock, "--watch", "0.1", NULL};
    int p[2];

    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    close(p[0]); /* like `| head` once head is done */
    child_t c = spawn(argv, DEVNULL_FD, p[1], PIPE_FD);
    close(p[1]);
    size_t n;
    char *err = read_all(c.err, &n, 5000);
    int st = wait_exit(&c, 5000); /* fails the test if it refreshes for ever */
    /* Said and exit 1, as every other command: not a silent death by SIGPIPE. */
    cr_expect_eq(st, 1, "stat --watch into a closed pipe: exit %d", st);
    cr_expect_neq(strstr(err, "tether stat: write stdout: "), NULL, "stderr '%s'", err);
    free(err);
    close_fd(&c.err);
    stop_child(&echo, SIGTERM);
}

/* ---- liveness ------------------------------------------------------------------ */

/* Client: connects, prints "ready", then only sleeps (never reads, never sends) for
 * argv[2] seconds; then reports whether the connection is still there: "alive"
 * (bytes waiting, or none), "eof" or the error. */
static const char py_sleeping_client[] =
    "import socket, sys, time\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n"
    "print('ready', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "try:\n"
    "    b = s.recv(65536, socket.MSG_DONTWAIT | socket.MSG_PEEK)\n"
    "    print('alive' if b else 'eof', flush=True)\n"
    "except BlockingIOError:\n"
    "    print('alive', flush=True)\n"
    "except Exception as e:\n"
    "    print(type(e).__name__, flush=True)\n";

/* The next line of `tether echo --verbose` that reports a close. */
static void read_close_line(int fd, char *buf, size_t cap)
{
    do
        read_line(fd, buf, cap, WAIT_MS);
    while (strstr(buf, " closed: ") == NULL);
}

/* The issue as reported: `tether echo --detect-within 2000` dropped a client that
 * connects and then only sleeps. Its TCP stack answers, it never showed it answers
 * heartbeats: it is alive. A tether peer that does answer them, then is stopped,
 * is held to the heartbeat and is closed within the window. */
Test(cli, echo_detect_within_keeps_a_silent_client_and_drops_a_stopped_tether_peer)
{
    const char *argv[] = {TETHER, "echo", "--detect-within", "2000", "--verbose",
                          "--listen", "127.0.0.1:0", NULL};
    char line[256], portstr[16];
    child_t echo, py, cat;

    echo = spawn(argv, DEVNULL_FD, PIPE_FD, PIPE_FD);
    read_line(echo.out, line, sizeof(line), WAIT_MS);
    cr_assert(strncmp(line, "tether echo: listening on 127.0.0.1:", 36) == 0, "got '%s'", line);
    snprintf(portstr, sizeof(portstr), "%u", port_of(line));

    const char *py_argv[] = {"python3", "-c", py_sleeping_client, portstr, "6", NULL};
    py = spawn(py_argv, DEVNULL_FD, PIPE_FD, DEVNULL_FD);
    read_line(py.out, line, sizeof(line), WAIT_MS);
    cr_assert_str_eq(line, "ready");
    read_line(py.out, line, sizeof(line), WAIT_MS); /* after 6 s: 3 windows */
    cr_expect_str_eq(line, "alive", "a sleeping client after 3 windows: %s", line);
    cr_expect_eq(wait_exit(&py, WAIT_MS), 0);
    close_fd(&py.out);
    /* Its close, when it exits (a reset: our pings were left unread). */
    read_close_line(echo.err, line, sizeof(line));
    cr_expect(strstr(line, "closed: peer reset") != NULL || strstr(line, "closed: peer closed"),
              "echo: '%s'", line);

    char where[32];
    snprintf(where, sizeof(where), "127.0.0.1:%s", portstr);
    const char *cat_argv[] = {TETHER, "cat", "--detect-within", "2000", where, NULL};
    cat = spawn(cat_argv, PIPE_FD, DEVNULL_FD, DEVNULL_FD);
    usleep(1500 * 1000); /* pings both ways at 500 ms: each end has seen the other answer */
    cr_assert_eq(kill(cat.pid, SIGSTOP), 0);
    uint64_t t0 = th_now_ms();
    read_close_line(echo.err, line, sizeof(line));
    uint64_t took = th_now_ms() - t0;
    cr_expect(strstr(line, "closed: heartbeat timeout: no sign of life from the peer") != NULL,
              "echo: '%s'", line);
    cr_expect_leq(took, 2200, "stopped tether peer closed after %llu ms",
                  (unsigned long long)took);
    kill(cat.pid, SIGKILL);
    kill(cat.pid, SIGCONT);
    wait_exit(&cat, WAIT_MS);
    close_fd(&cat.in);
    kill(echo.pid, SIGINT);
    cr_expect_eq(wait_exit(&echo, WAIT_MS), 0);
    close_fd(&echo.out);
    close_fd(&echo.err);
}

/* ---- admin and metrics options, tether stat ------------------------------------ */

/* --metrics ADDR:0 says which port it got; a metrics client that connects and
 * sends nothing does not keep the server alive after SIGTERM. */
Test(cli, echo_metrics_on_port_0_prints_the_port_and_a_silent_client_does_not_delay_sigterm)
{
    const char *argv[] = {TETHER, "echo", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                          NULL};
    char line[256];
    child_t echo = spawn(argv, DEVNULL_FD, PIPE_FD, DEVNULL_FD);

    read_line(echo.out, line, sizeof(line), WAIT_MS);
    cr_assert(strncmp(line, "tether echo: listening on ", 26) == 0, "got '%s'", line);
    read_line(echo.out, line, sizeof(line), WAIT_MS);
    cr_assert(strncmp(line, "tether echo: metrics on 127.0.0.1:", 34) == 0, "got '%s'", line);
    tt_addr_t m = th_loopback((uint16_t)port_of(line));
    int silent = th_tcp_connect_blocking(&m);
    usleep(100000); /* accepted */

    uint64_t t0 = th_now_ms();
    kill(echo.pid, SIGTERM);
    int st = wait_exit(&echo, 3000);
    cr_expect_eq(st, 0, "exit %d", st);
    cr_expect_lt(th_now_ms() - t0, 2000, "exited %llu ms after SIGTERM",
                 (unsigned long long)(th_now_ms() - t0));
    close(silent);
    close_fd(&echo.out);
}

/* A second server asked for the same admin socket fails, naming the path, and
 * leaves the first one's socket working. */
Test(cli, a_second_echo_on_a_live_admin_socket_fails_naming_it_and_the_first_keeps_it)
{
    const char *sock = tmp_path("admin.sock");
    const char *a1[] = {TETHER, "echo", "--listen", "127.0.0.1:0", "--admin", sock, NULL};
    char line[256];
    size_t len;
    child_t first = spawn(a1, DEVNULL_FD, PIPE_FD, DEVNULL_FD);

    read_line(first.out, line, sizeof(line), WAIT_MS);
    cr_assert(strncmp(line, "tether echo: listening on ", 26) == 0, "got '%s'", line);
    child_t second = spawn(a1, DEVNULL_FD, DEVNULL_FD, PIPE_FD);
    char *err = read_all(second.err, &len, WAIT_MS);
    cr_expect_eq(wait_exit(&second, WAIT_MS), 1);
    cr_expect_neq(strstr(err, sock), NULL, "the message names the path: '%s'", err);
    cr_expect_neq(strstr(err, "in use"), NULL, "and says why: '%s'", err);
    free(err);
    close_fd(&second.err);

    const char *st[] = {TETHER, "stat", sock, NULL};
    child_t stat_c = spawn(st, DEVNULL_FD, PIPE_FD, DEVNULL_FD);
    char *out = read_all(stat_c.out, &len, WAIT_MS);
    cr_expect_eq(wait_exit(&stat_c, WAIT_MS), 0);
    cr_expect_eq(strncmp(out, "id ", 3), 0, "the first server still answers: '%.40s'", out);
    free(out);
    close_fd(&stat_c.out);
    kill(first.pid, SIGTERM);
    cr_expect_eq(wait_exit(&first, WAIT_MS), 0);
    close_fd(&first.out);
    struct stat sb;
    cr_expect_neq(stat(sock, &sb), 0, "the first server removed its own socket at exit");
}

static int unix_listen_at(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    strcpy(sun.sun_path, path);
    unlink(path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    cr_assert_eq(listen(fd, 4), 0);
    return fd;
}

/* A socket that accepts (in the backlog) and never answers: stat gives up. */
Test(cli, stat_gives_up_on_a_socket_that_never_answers)
{
    const char *sock = tmp_path("silent.sock");
    int lfd = unix_listen_at(sock);
    const char *argv[] = {TETHER, "stat", "--timeout", "0.5", sock, NULL};
    size_t len;
    uint64_t t0 = th_now_ms();
    child_t c = spawn(argv, DEVNULL_FD, DEVNULL_FD, PIPE_FD);
    char *err = read_all(c.err, &len, 5000);
    cr_expect_eq(wait_exit(&c, 5000), 1);
    cr_expect_lt(th_now_ms() - t0, 3000, "took %llu ms", (unsigned long long)(th_now_ms() - t0));
    cr_expect_neq(strstr(err, "no complete table"), NULL, "says why: '%s'", err);
    free(err);
    close_fd(&c.err);
    close(lfd);
}

/* A socket that sends far more than any table: stat stops at its limit. */
static void *flood_reply(void *arg)
{
    int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
    static char chunk[1 << 16];
    memset(chunk, 'a', sizeof(chunk));
    for (size_t sent = 0; fd >= 0 && sent < ((size_t)80 << 20);) {
        ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
        if (n <= 0)
            break; /* stat hung up */
        sent += (size_t)n;
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

Test(cli, stat_refuses_a_reply_larger_than_any_table)
{
    const char *sock = tmp_path("flood.sock");
    int lfd = unix_listen_at(sock);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, flood_reply, &lfd), 0);
    const char *argv[] = {TETHER, "stat", sock, NULL};
    size_t len;
    child_t c = spawn(argv, DEVNULL_FD, DEVNULL_FD, PIPE_FD);
    char *err = read_all(c.err, &len, WAIT_MS);
    cr_expect_eq(wait_exit(&c, WAIT_MS), 1);
    cr_expect_neq(strstr(err, "larger than 64 MiB"), NULL, "says why: '%s'", err);
    free(err);
    close_fd(&c.err);
    pthread_join(th, NULL);
    close(lfd);
}
