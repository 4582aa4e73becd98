/* `tether bench --rate`: the open loop against a real `tether echo` on loopback.
 * The rate asked for is the rate achieved; a server stopped for 300 ms (SIGSTOP)
 * shows in the tail measured from the schedule, where the closed loop's p99 hides
 * it; messages that could not even be sent during the stall are charged from their
 * scheduled time (and counted late); a server that stops answering before the end
 * leaves its messages counted as missed. The backend is the environment's
 * (TETHER_BACKEND), inherited by both children. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "proc.h"

#define TETHER TT_BUILD_DIR "/tether"
#define WAIT_MS 20000

static char tmpdir[64];

static void suite_init(void)
{
    strcpy(tmpdir, "/tmp/tether-rate-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void suite_fini(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

TestSuite(bench_rate, .init = suite_init, .fini = suite_fini);

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* `tether echo --listen 127.0.0.1:0`; returns its port. */
static unsigned start_echo(th_proc_t *echo)
{
    char *argv[] = {TETHER, "echo", "--listen", "127.0.0.1:0", NULL};
    const char *want = "tether echo: listening on 127.0.0.1:", *line;

    th_proc_start(echo, tmpdir, "echo", argv);
    cr_assert(th_proc_wait_output(echo, "\n", WAIT_MS), "echo did not start: '%s'",
              th_proc_stderr(echo));
    line = strstr(th_proc_output(echo), want);
    cr_assert_not_null(line, "echo said '%s'", th_proc_output(echo));
    return (unsigned)strtoul(line + strlen(want), NULL, 10);
}

/* The number after "key": in one line of JSON; the test fails when it is absent. */
static double field(const char *json, const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(json, pat);
    cr_assert_not_null(p, "no %s in '%s'", key, json);
    return strtod(p + strlen(pat), NULL);
}

struct run {
    th_proc_t proc;
    char json[2048];
    int status;
};

/* Start `tether bench --json ARGS... 127.0.0.1:port` (args: NULL-terminated). */
static void bench_start(struct run *r, const char *tag, unsigned port, const char *const args[])
{
    static char target[64];
    char *argv[24] = {TETHER, "bench", "--json"};
    int n = 3;

    snprintf(target, sizeof(target), "127.0.0.1:%u", port);
    for (int i = 0; args[i] != NULL; i++) {
        cr_assert_lt(n, 22);
        argv[n++] = (char *)args[i];
    }
    argv[n++] = target;
    argv[n] = NULL;
    th_proc_start(&r->proc, tmpdir, tag, argv);
}

static void bench_wait(struct run *r)
{
    r->status = th_proc_wait(&r->proc, WAIT_MS);
    snprintf(r->json, sizeof(r->json), "%s", th_proc_output(&r->proc));
    cr_assert(strncmp(r->json, "{\"target\":", 10) == 0, "bench printed '%s', stderr '%s'",
              r->json, th_proc_stderr(&r->proc));
}

/* Run bench; `stall_at` ms after it starts stop the echo server (SIGSTOP) for
 * `stall_ms` (0: never resume it before bench has exited). stall_at 0: no stall. */
static void bench_run(struct run *r, const char *tag, th_proc_t *echo, unsigned port,
                      const char *const args[], unsigned stall_at, unsigned stall_ms)
{
    bench_start(r, tag, port, args);
    if (stall_at > 0) {
        sleep_ms(stall_at);
        cr_assert_eq(kill(echo->pid, SIGSTOP), 0);
        if (stall_ms > 0) {
            sleep_ms(stall_ms);
            cr_assert_eq(kill(echo->pid, SIGCONT), 0);
        }
    }
    bench_wait(r);
    if (stall_at > 0 && stall_ms == 0)
        cr_assert_eq(kill(echo->pid, SIGCONT), 0);
}

Test(bench_rate, the_rate_asked_for_is_the_rate_achieved)
{
    th_proc_t echo;
    unsigned port = start_echo(&echo);
    const char *const args[] = {"--rate", "2000", "--connections", "4", "--duration", "1.5",
                                "--warmup", "0.2", NULL};
    struct run r;

    bench_run(&r, "steady", &echo, port, args, 0, 0);
    double rate = field(r.json, "msgs_per_s"), due = field(r.json, "scheduled");

    cr_expect_eq(r.status, 0, "exit %d: %s", r.status, th_proc_stderr(&r.proc));
    cr_expect(strstr(r.json, "\"mode\":\"rate\"") != NULL, "%s", r.json);
    cr_expect(rate > 1800 && rate < 2200, "asked 2000/s, achieved %.1f/s: %s", rate, r.json);
    cr_expect(due >= 2950 && due <= 3050, "1.5 s at 2000/s: %.0f slots due: %s", due, r.json);
    cr_expect_lt(field(r.json, "missed"), 0.02 * due, "%s", r.json);
    /* Late is over 1 ms behind the slot: on two shared cores with other work the
     * generator itself is descheduled that long for a fifth of the slots or more
     * (seen: 10-25 % under a parallel build), so only a generator that fell
     * behind for good, not the machine's noise, fails this. The rate and the
     * missed slots above are what the open loop promises. */
    cr_expect_lt(field(r.json, "late"), 0.5 * due, "%s", r.json);
    cr_expect_gt(field(r.json, "p50"), 0, "%s", r.json);
    cr_expect_lt(field(r.json, "p50"), 20000, "an idle echo server: p50 under 20 ms: %s", r.json);
    th_proc_stop(&echo);
}

/* 2 s at 1000/s with a 300 ms stall: 15 % of the messages wait, up to 300 ms each,
 * so p99 (the worst 20) is over 250 ms from the schedule. The closed loop sends
 * nothing while it waits: 4 messages of its hundred thousand see the stall, its p99
 * stays small and only its max shows it. */
Test(bench_rate, a_server_stall_shows_in_p99_from_the_schedule_where_the_closed_loop_hides_it)
{
    th_proc_t echo;
    unsigned port = start_echo(&echo);
    const char *const open_args[] = {"--rate", "1000", "--connections", "4", "--duration", "2",
                                     NULL};
    const char *const closed_args[] = {"--connections", "4", "--duration", "2", NULL};
    struct run open, closed;

    bench_run(&open, "open", &echo, port, open_args, 700, 300);
    bench_run(&closed, "closed", &echo, port, closed_args, 700, 300);

    cr_expect_eq(open.status, 0, "exit %d: %s", open.status, th_proc_stderr(&open.proc));
    cr_expect_eq(closed.status, 0, "exit %d: %s", closed.status, th_proc_stderr(&closed.proc));
    cr_expect_geq(field(open.json, "p99"), 200000, "open loop: %s", open.json);
    cr_expect_geq(field(open.json, "max"), 250000, "open loop: %s", open.json);
    cr_expect_geq(field(open.json, "p90"), 20000, "open loop: %s", open.json);
    cr_expect_geq(field(closed.json, "max"), 250000, "closed loop: %s", closed.json);
    cr_expect_lt(field(closed.json, "p99"), 50000, "closed loop: %s", closed.json);
    th_proc_stop(&echo);
}

/* 256 KiB messages at 1000/s: the socket buffers fill within the stall, so most
 * of its messages cannot be sent until the server reads again. Timed from when
 * they were sent they would look fast (p90 near 10 ms); from their schedule they
 * waited up to 300 ms, and 20 % of the 1.5 s did, so p90 is over 100 ms. */
Test(bench_rate, messages_that_could_not_be_sent_are_charged_from_their_schedule)
{
    th_proc_t echo;
    unsigned port = start_echo(&echo);
    const char *const args[] = {"--rate",   "1000", "--connections", "2", "--size", "262144",
                                "--duration", "1.5", NULL};
    struct run r;

    bench_run(&r, "big", &echo, port, args, 600, 300);

    cr_expect_eq(r.status, 0, "exit %d: %s", r.status, th_proc_stderr(&r.proc));
    cr_expect_geq(field(r.json, "p90"), 60000, "%s", r.json);
    cr_expect_geq(field(r.json, "max"), 250000, "%s", r.json);
    cr_expect_geq(field(r.json, "late"), 100, "the stall kept messages from being sent: %s",
                  r.json);
    cr_expect_lt(field(r.json, "missed"), 50, "%s", r.json);
    th_proc_stop(&echo);
}

/* The server stops 1.5 s into a 2 s run and is not resumed before bench ends: the
 * last ~0.5 s of slots (about 500 at 1000/s) are never answered, so they are in no
 * latency at all: counted missed. */
Test(bench_rate, what_a_stopped_server_never_answered_is_counted_missed)
{
    th_proc_t echo;
    unsigned port = start_echo(&echo);
    const char *const args[] = {"--rate", "1000", "--connections", "4", "--duration", "2", NULL};
    struct run r;

    bench_run(&r, "stopped", &echo, port, args, 1500, 0);
    double missed = field(r.json, "missed"), done = field(r.json, "messages");

    cr_expect_eq(r.status, 0, "exit %d: %s", r.status, th_proc_stderr(&r.proc));
    cr_expect(missed >= 300 && missed <= 700, "missed %.0f: %s", missed, r.json);
    cr_expect(done + missed >= 1950 && done + missed <= 2050, "%s", r.json);
    th_proc_stop(&echo);
}

static void expect_rejected(const char *const args[], const char *must_say)
{
    struct run r;

    bench_start(&r, "bad", 1, args);
    r.status = th_proc_wait(&r.proc, WAIT_MS);
    cr_expect_eq(r.status, 2, "%s %s: exit %d", args[0], args[1], r.status);
    cr_expect(strstr(th_proc_stderr(&r.proc), must_say) != NULL, "stderr '%s' lacks '%s'",
              th_proc_stderr(&r.proc), must_say);
    cr_expect_str_eq(th_proc_output(&r.proc), "", "no report on bad usage");
}

Test(bench_rate, bad_rates_are_rejected_naming_the_range)
{
    static const char *const bad[] = {"0", "-5", "1e12", "nan", "inf", "lots", ""};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *const args[] = {"--rate", bad[i], NULL};
        char want[96];

        snprintf(want, sizeof(want), "bad --rate '%s': expected messages/s from 0.001 to 1e9",
                 bad[i]);
        expect_rejected(args, want);
    }
    const char *const churn[] = {"--rate", "100", "--churn", NULL};
    const char *const pipe[] = {"--rate", "100", "--pipeline", "4", NULL};

    expect_rejected(churn, "--churn and --rate do not mix");
    expect_rejected(pipe, "--pipeline is for the closed loop only");
}
