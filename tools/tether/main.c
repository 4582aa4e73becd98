/* tether: the command-line tool. One file per subcommand; this one dispatches. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
    /* The command checks its writes to stdout, so SIGPIPE is ignored for it (a
     * closed pipe becomes an error message and exit 1, never a silent death). */
    bool checks_stdout;
} commands[] = {
    {"echo", cmd_echo, "echo server", true},
    {"cat", cmd_cat, "stdin to a socket, the socket to stdout", true},
    {"send", cmd_send, "send a file with sendfile, then close", true},
    {"bench", cmd_bench, "load generator: throughput and latency", true},
    {"chat", cmd_chat, "line-based chat server: every line to every other client", true},
    {"stat", cmd_stat, "print a server's live connection table (its --admin socket)", true},
    {"udp-echo", cmd_udp_echo, "UDP echo server (multicast with --join)", true},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: tether COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'tether COMMAND --help' describes each one.\n");
}

/* A command's output that never reached stdout is an error too (a closed pipe, a
 * full disk): say so and exit 1, as coreutils' close_stdout does. */
static int finish_stdout(int rc)
{
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int err = errno != 0 ? errno : EIO;
        cli_error("write stdout: %s", strerror(err));
        if (rc == 0)
            rc = 1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    /* Before anything is printed: a closed stdout or stderr must show up as EPIPE
     * from a write, never as a silent death by SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return finish_stdout(0);
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("tether %s\n", TETHER_VERSION_STRING);
        return finish_stdout(0);
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            if (!commands[i].checks_stdout)
                signal(SIGPIPE, SIG_DFL);
            cli_set_command(commands[i].name);
            int rc = finish_stdout(commands[i].fn(argc - 1, argv + 1));
            /* A command that reported an error does not exit 0. */
            return rc == 0 && cli_errors_reported() > 0 ? 1 : rc;
        }
    fprintf(stderr, "tether: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
