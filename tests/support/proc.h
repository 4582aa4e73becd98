/* Child processes for tests that talk to real peers (openssl, python3, node): each
 * one started with its own stdin pipe and its stdout and stderr in a file, stopped
 * by its PID, and killed with the test process if that dies first. */
#ifndef TT_TEST_PROC_H
#define TT_TEST_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct th_proc {
    pid_t pid;         /* 0 once reaped */
    int in;            /* write end of the child's stdin, -1 when closed */
    char out[256];     /* the file holding its stdout */
    char err[256];     /* and its stderr */
    int status;        /* exit code once reaped (128+signal when killed) */
} th_proc_t;

/* Start argv[0] (looked up in PATH) with argv. The output file is made in `dir`
 * (name: `tag`.out). Fails the test when the child cannot start. */
void th_proc_start(th_proc_t *p, const char *dir, const char *tag, char *const argv[]);
/* Has it exited? Reaps it when it has (without blocking). */
bool th_proc_exited(th_proc_t *p);
/* Wait up to `ms` for the exit; kills it after that. Returns the exit code, or -1
 * when it had to be killed. */
int th_proc_wait(th_proc_t *p, uint64_t ms);
/* SIGTERM, then SIGKILL after 2 s; reaps it. Safe on a reaped child. */
void th_proc_stop(th_proc_t *p);
/* Write to its stdin (all of it; blocking); close it. */
void th_proc_write(th_proc_t *p, const void *buf, size_t len);
void th_proc_close_stdin(th_proc_t *p);
/* Everything it printed so far on stdout, NUL-terminated (static buffer, 4 MiB
 * max); with `len`, its length (the output may hold NUL bytes). */
const char *th_proc_output(const th_proc_t *p);
const char *th_proc_output_len(const th_proc_t *p, size_t *len);
/* Its stderr so far (another static buffer, 64 KiB max). */
const char *th_proc_stderr(const th_proc_t *p);
/* Wait until `text` appears in its output, up to `ms`. */
bool th_proc_wait_output(th_proc_t *p, const char *text, uint64_t ms);
/* Wait until something listens on 127.0.0.1:port (read from /proc/net/tcp, so
 * nothing connects to it). */
bool th_wait_listening(uint16_t port, uint64_t ms);

#endif
