#include "proc.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void nap(void)
{
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

void th_proc_start(th_proc_t *p, const char *dir, const char *tag, char *const argv[])
{
    int in[2];
    pid_t parent = getpid();

    memset(p, 0, sizeof(*p));
    p->in = -1;
    snprintf(p->out, sizeof(p->out), "%.200s/%.40s.out", dir, tag);
    snprintf(p->err, sizeof(p->err), "%.200s/%.40s.err", dir, tag);
    int out = open(p->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int err = open(p->err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(out, 0, "open %s: %s", p->out, strerror(errno));
    cr_assert_geq(err, 0, "open %s: %s", p->err, strerror(errno));
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    signal(SIGPIPE, SIG_IGN);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Die with the test process, whatever ends it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(in[0], 0);
        dup2(out, 1);
        dup2(err, 2);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out);
    close(err);
    p->pid = pid;
    p->in = in[1];
}

static void reaped(th_proc_t *p, int st)
{
    p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    p->pid = 0;
}

bool th_proc_exited(th_proc_t *p)
{
    int st;
    if (p->pid == 0)
        return true;
    if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
        reaped(p, st);
        return true;
    }
    return false;
}

int th_proc_wait(th_proc_t *p, uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    while (!th_proc_exited(p)) {
        if (now_ms() >= end) {
            th_proc_stop(p);
            return -1;
        }
        nap();
    }
    th_proc_close_stdin(p);
    return p->status;
}

void th_proc_stop(th_proc_t *p)
{
    th_proc_close_stdin(p);
    if (p->pid == 0)
        return;
    kill(p->pid, SIGTERM);
    uint64_t end = now_ms() + 2000;
    while (!th_proc_exited(p)) {
        if (now_ms() >= end) {
            int st;
            kill(p->pid, SIGKILL);
            if (waitpid(p->pid, &st, 0) == p->pid)
                reaped(p, st);
            return;
        }
        nap();
    }
}

void th_proc_write(th_proc_t *p, const void *buf, size_t len)
{
    const char *b = buf;
    while (len > 0 && p->in >= 0) {
        ssize_t n = write(p->in, b, len);
        if (n < 0 && errno == EINTR)
            continue;
        cr_assert_gt(n, 0, "write to the child: %s", strerror(errno));
        b += n;
        len -= (size_t)n;
    }
}

void th_proc_close_stdin(th_proc_t *p)
{
    if (p->in >= 0)
        close(p->in);
    p->in = -1;
}

static const char *slurp(const char *path, char *buf, size_t size, size_t *len)
{
    size_t n = 0;
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        n = fread(buf, 1, size - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

const char *th_proc_output_len(const th_proc_t *p, size_t *len)
{
    static char buf[4 << 20];
    return slurp(p->out, buf, sizeof(buf), len);
}

const char *th_proc_output(const th_proc_t *p)
{
    return th_proc_output_len(p, NULL);
}

const char *th_proc_stderr(const th_proc_t *p)
{
    static char buf[1 << 16];
    return slurp(p->err, buf, sizeof(buf), NULL);
}

bool th_proc_wait_output(th_proc_t *p, const char *text, uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    for (;;) {
        if (strstr(th_proc_output(p), text) != NULL)
            return true;
        if (now_ms() >= end || th_proc_exited(p))
            return strstr(th_proc_output(p), text) != NULL;
        nap();
    }
}

bool th_wait_listening(uint16_t port, uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    char want[32];
    snprintf(want, sizeof(want), "0100007F:%04X", port);
    for (;;) {
        FILE *f = fopen("/proc/net/tcp", "r");
        char line[512];
        bool found = false;
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            /* "  sl  local_address rem_address   st ..." with st 0A = LISTEN */
            char local[64], remote[64], st[8];
            if (sscanf(line, "%*s %63s %63s %7s", local, remote, st) == 3 &&
                strcmp(st, "0A") == 0 &&
                (strcmp(local, want) == 0 ||
                 (strncmp(local, "00000000:", 9) == 0 && strcmp(local + 9, want + 9) == 0)))
                found = true;
        }
        if (f != NULL)
            fclose(f);
        if (found)
            return true;
        if (now_ms() >= end)
            return false;
        nap();
    }
}
