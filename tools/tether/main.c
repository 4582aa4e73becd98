/* tether: the command-line tool. One file per subcommand; this one dispatches. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"echo", cmd_echo, "echo server"},
    {"cat", cmd_cat, "stdin to a socket, the socket to stdout"},
    {"send", cmd_send, "send a file with sendfile, then close"},
    {"bench", cmd_bench, "load generator: throughput and latency"},
    {"chat", cmd_chat, "line-based chat server: every line to every other client"},
    {"stat", cmd_stat, "print a server's live connection table (its --admin socket)"},
    {"udp-echo", cmd_udp_echo, "UDP echo server (multicast with --join)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: tether COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'tether COMMAND --help' describes each one.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("tether %s\n", TETHER_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "tether: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
