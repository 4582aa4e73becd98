/* Runner for the ThreadSanitizer build of the cross-thread tests (see
 * criterion/criterion.h beside this file): each test runs in a child process with a
 * time limit; a failed check, a crash or a TSan report (halt_on_error) fails it. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#define TIME_LIMIT_S 120

static tt_shim_test_t *tests, **tail = &tests;
static int failures; /* in the child: non-fatal failures so far */

void tt_shim_register(tt_shim_test_t *t)
{
    *tail = t;
    tail = &t->next;
}

void tt_shim_fail(const char *file, int line, bool fatal, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[----] %s:%d: Assertion Failed: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    failures++;
    if (fatal)
        exit(1);
}

int main(void)
{
    int passed = 0, failed = 0, skipped = 0;

    for (tt_shim_test_t *t = tests; t != NULL; t = t->next) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(TIME_LIMIT_S);
            t->fn();
            exit(failures == 0 ? 0 : 1);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
            skipped++;
            fprintf(stderr, "[SKIP] %s::%s\n", t->suite, t->name);
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            passed++;
            fprintf(stderr, "[PASS] %s::%s\n", t->suite, t->name);
        } else {
            failed++;
            fprintf(stderr, "[FAIL] %s::%s (%s %d)\n", t->suite, t->name,
                    WIFEXITED(status) ? "exit" : "signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        }
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed == 0 ? 0 : 1;
}
