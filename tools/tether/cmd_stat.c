/* tether stat SOCKET: the live connection table of a server, like ss(8).
 *
 * Reads the admin endpoint's tab-separated table (a header line, then one row per
 * connection), sorts it by any column and prints aligned columns with a totals
 * line. --watch refreshes until interrupted; --follow prints each open and close
 * the server pushes, as it happens. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_COLS 32
/* Largest table we take: 64 MiB is some 400 000 connections' rows. */
#define MAX_REPLY ((size_t)64 << 20)
#define DEFAULT_TIMEOUT_MS 5000

typedef struct table {
    char *text;          /* owns every cell */
    char *head[MAX_COLS];
    int ncols;
    char ***rows;        /* rows[r][c] */
    size_t nrows;
} table_t;

static int sort_col = -1;
static bool sort_reverse;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tether stat SOCKET [--sort COLUMN] [--reverse] [--watch SECONDS] "
            "[--count N]\n"
            "                   [--timeout SECONDS]\n"
            "       tether stat SOCKET --follow\n\n"
            "Print the live connection table a server serves on its admin socket\n"
            "(tether echo/chat --admin SOCKET): one row per connection, with totals.\n\n"
            "  -s, --sort COLUMN     sort by this column (id, worker, local, peer, state,\n"
            "                        age_ms, bytes_in, bytes_out, pkts_in, pkts_out, msgs_in,\n"
            "                        msgs_out, queued, rtt_us, retrans, tls, cipher, pid,\n"
            "                        uid, gid); default id\n"
            "  -r, --reverse         largest first\n"
            "  -w, --watch SECONDS   refresh every SECONDS until interrupted\n"
            "  -n, --count N         with --watch: stop after N refreshes\n"
            "  -f, --follow          print each open and close as it happens, one line each\n"
            "                        (open ID PEER; close ID PEER KIND REASON BYTES_IN\n"
            "                        BYTES_OUT), until interrupted or the server goes\n"
            "  -t, --timeout SECONDS give up on a table not complete by then; default 5\n"
            "  -h, --help            this text\n");
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Read everything the endpoint sends until it closes, within timeout_ms and at
 * most MAX_REPLY bytes: a socket planted at the path that never answers, or one
 * that never stops, must not hold or exhaust us. 0, -ETIMEDOUT, -EFBIG, -errno. */
/* Connect to the endpoint and say what we want ("TABLE\n" or "FOLLOW\n"). A
 * non-blocking connect on a Unix socket is done at once, or EAGAIN while the
 * server's backlog is full (it is busy): try again until the deadline. The fd,
 * or -errno, -ETIMEDOUT. */
static int open_endpoint(const char *path, uint64_t end, const char *request)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd, err;

    if (strlen(path) >= sizeof(sun.sun_path))
        return -ENAMETOOLONG;
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        err = -errno;
        if (err != -EAGAIN || now_ms() >= end) {
            close(fd);
            return err != -EAGAIN ? err : -ETIMEDOUT;
        }
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    /* A few bytes into an empty socket buffer: never short. MSG_NOSIGNAL: an
     * endpoint that already closed gives EPIPE, not a signal. */
    if (send(fd, request, strlen(request), MSG_NOSIGNAL) < 0) {
        err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static int fetch(const char *path, uint64_t timeout_ms, char **out)
{
    size_t len = 0, cap = 1 << 16;
    uint64_t end = now_ms() + timeout_ms;
    char *buf = NULL;
    int fd, err;

    fd = open_endpoint(path, end, "TABLE\n");
    if (fd < 0)
        return fd;
    buf = malloc(cap);
    if (buf == NULL) {
        err = -ENOMEM;
        goto fail;
    }
    for (;;) {
        uint64_t now = now_ms();
        struct pollfd p = {fd, POLLIN, 0};
        if (now >= end) {
            err = -ETIMEDOUT;
            goto fail;
        }
        int r = poll(&p, 1, (int)(end - now < 1000000 ? end - now : 1000000));
        if (r < 0 && errno != EINTR) {
            err = -errno;
            goto fail;
        }
        if (r <= 0)
            continue;
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            err = -errno;
            goto fail;
        }
        len += (size_t)n;
        if (len > MAX_REPLY) {
            err = -EFBIG;
            goto fail;
        }
        if (cap - len < 4096 && cap < MAX_REPLY + 4096) {
            /* Grow no further than the limit needs: memory stays near MAX_REPLY. */
            size_t ncap = cap * 2 < MAX_REPLY + 4096 ? cap * 2 : MAX_REPLY + 4096;
            char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                err = -ENOMEM;
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
    }
    close(fd);
    buf[len] = '\0';
    *out = buf;
    return 0;

fail:
    free(buf);
    close(fd);
    return err;
}

static int split(char *line, char **cells, int max)
{
    int n = 0;
    for (char *p = line; n < max;) {
        cells[n++] = p;
        p = strchr(p, '\t');
        if (p == NULL)
            break;
        *p++ = '\0';
    }
    return n;
}

static int parse(char *text, table_t *t)
{
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    memset(t, 0, sizeof(*t));
    t->text = text;
    if (line == NULL)
        return -EPROTO;
    t->ncols = split(line, t->head, MAX_COLS);
    if (t->ncols < 2 || strcmp(t->head[0], "id") != 0)
        return -EPROTO;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char ***rows = realloc(t->rows, (t->nrows + 1) * sizeof(char **));
        if (rows == NULL)
            return -ENOMEM; /* t->rows is still valid and freed by table_free */
        t->rows = rows;     /* kept at once: the old block may be gone already */
        char **cells = calloc((size_t)t->ncols, sizeof(char *));
        if (cells == NULL)
            return -ENOMEM;
        if (split(line, cells, t->ncols) != t->ncols) {
            free(cells);
            return -EPROTO;
        }
        t->rows[t->nrows++] = cells;
    }
    return 0;
}

static void table_free(table_t *t)
{
    for (size_t r = 0; r < t->nrows; r++)
        free(t->rows[r]);
    free(t->rows);
    free(t->text);
}

static bool numeric(const char *s)
{
    char *end;
    if (*s == '\0')
        return false;
    strtoull(s, &end, 10);
    return *end == '\0';
}

static int cmp_rows(const void *a, const void *b)
{
    const char *x = (*(char ***const)a)[sort_col], *y = (*(char ***const)b)[sort_col];
    int r;
    if (numeric(x) && numeric(y)) {
        unsigned long long u = strtoull(x, NULL, 10), v = strtoull(y, NULL, 10);
        r = u < v ? -1 : u > v;
    } else {
        r = strcmp(x, y);
    }
    return sort_reverse ? -r : r;
}

static void print_table(const table_t *t)
{
    size_t width[MAX_COLS];
    unsigned long long total[MAX_COLS] = {0};
    bool summable[MAX_COLS];

    for (int c = 0; c < t->ncols; c++) {
        width[c] = strlen(t->head[c]);
        /* Counters add up; ids, ages, rtts and addresses do not. */
        summable[c] = strstr(t->head[c], "bytes") || strstr(t->head[c], "pkts") ||
                      strstr(t->head[c], "msgs") || strcmp(t->head[c], "queued") == 0 ||
                      strcmp(t->head[c], "retrans") == 0;
    }
    for (size_t r = 0; r < t->nrows; r++)
        for (int c = 0; c < t->ncols; c++) {
            size_t w = strlen(t->rows[r][c]);
            if (w > width[c])
                width[c] = w;
            if (summable[c])
                total[c] += strtoull(t->rows[r][c], NULL, 10);
        }
    char tot[MAX_COLS][24];
    for (int c = 0; c < t->ncols; c++) {
        if (c == 0)
            snprintf(tot[c], sizeof(tot[c]), "total");
        else if (summable[c])
            snprintf(tot[c], sizeof(tot[c]), "%llu", total[c]);
        else if (strcmp(t->head[c], "state") == 0)
            snprintf(tot[c], sizeof(tot[c]), "%zu conns", t->nrows);
        else
            tot[c][0] = '\0';
        if (strlen(tot[c]) > width[c])
            width[c] = strlen(tot[c]);
    }
    for (int c = 0; c < t->ncols; c++)
        printf("%-*s%s", (int)width[c], t->head[c], c + 1 < t->ncols ? "  " : "\n");
    for (size_t r = 0; r < t->nrows; r++)
        for (int c = 0; c < t->ncols; c++)
            printf("%-*s%s", (int)width[c], t->rows[r][c], c + 1 < t->ncols ? "  " : "\n");
    for (int c = 0; c < t->ncols; c++)
        printf("%-*s%s", (int)width[c], tot[c], c + 1 < t->ncols ? "  " : "\n");
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int show(const char *path, const char *sort_name, uint64_t timeout_ms)
{
    char *text = NULL;
    table_t t;
    int err = fetch(path, timeout_ms, &text);

    if (err == -ETIMEDOUT) {
        cli_error("stat %s: no complete table within %.1f s", path, (double)timeout_ms / 1000);
        return CLI_EXIT_FAIL;
    }
    if (err == -EFBIG) {
        cli_error("stat %s: the reply is larger than %zu MiB; not a table", path,
                  MAX_REPLY >> 20);
        return CLI_EXIT_FAIL;
    }
    if (err < 0) {
        cli_error("stat %s: %s", path, tt_strerror(err));
        return CLI_EXIT_FAIL;
    }
    err = parse(text, &t);
    if (err < 0) {
        cli_error("stat %s: not a connection table (%s)", path, tt_strerror(err));
        table_free(&t);
        return CLI_EXIT_FAIL;
    }
    sort_col = 0;
    if (sort_name != NULL) {
        sort_col = -1;
        for (int c = 0; c < t.ncols; c++)
            if (strcmp(t.head[c], sort_name) == 0)
                sort_col = c;
        if (sort_col < 0) {
            table_free(&t);
            return cli_usage_error("stat", "no column '%s' to sort by", sort_name);
        }
    }
    if (t.nrows > 1) /* rows is NULL for an empty table: qsort must not see it */
        qsort(t.rows, t.nrows, sizeof(char **), cmp_rows);
    print_table(&t);
    table_free(&t);
    /* A reader that went away (`| head`) ends a --watch loop here, with an error
     * and exit 1, rather than refreshes written into a closed pipe for ever. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int werr = errno != 0 ? -errno : -EIO;
        clearerr(stdout); /* said here, not again when main.c flushes at exit */
        cli_error("write stdout: %s", tt_strerror(werr));
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

/* --follow: one line per open and close, as the server pushes them, until the
 * server goes or we are interrupted. The lines are the server's, tab-separated
 * (docs/cli.md); an "error" line is a refusal and goes to stderr. */
static int follow(const char *path, uint64_t timeout_ms)
{
    char buf[8192];
    size_t len = 0;
    int fd = open_endpoint(path, now_ms() + timeout_ms, "FOLLOW\n");

    if (fd < 0) {
        cli_error("stat %s: %s", path, tt_strerror(fd));
        return CLI_EXIT_FAIL;
    }
    while (!interrupted) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, -1) < 0)
            continue; /* EINTR: look at the flag */
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        char *start = buf, *nl;
        while ((nl = memchr(start, '\n', len - (size_t)(start - buf))) != NULL) {
            *nl = '\0';
            if (strncmp(start, "error\t", 6) == 0) {
                cli_error("stat %s: %s", path, start + 6);
                close(fd);
                return CLI_EXIT_FAIL;
            }
            if (strcmp(start, "following") == 0)
                fprintf(stderr, "tether stat: following %s\n", path);
            else
                printf("%s\n", start);
            start = nl + 1;
        }
        len -= (size_t)(start - buf);
        memmove(buf, start, len);
        if (len == sizeof(buf))
            len = 0; /* a line this long is not ours: drop it */
        if (fflush(stdout) != 0 || ferror(stdout)) {
            clearerr(stdout);
            cli_error("write stdout: %s", tt_strerror(-EPIPE));
            close(fd);
            return CLI_EXIT_FAIL;
        }
    }
    close(fd);
    return CLI_EXIT_OK;
}

int cmd_stat(int argc, char **argv)
{
    static const struct option opts[] = {{"sort", required_argument, NULL, 's'},
                                         {"reverse", no_argument, NULL, 'r'},
                                         {"watch", required_argument, NULL, 'w'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"follow", no_argument, NULL, 'f'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *sort_name = NULL;
    uint64_t watch_ms = 0, timeout_ms = DEFAULT_TIMEOUT_MS;
    long count = -1;
    bool first = true, follow_mode = false;
    int c;

    while ((c = cli_getopt("stat", argc, argv, ":s:rw:n:t:fh", opts, &first)) != -1) {
        switch (c) {
        case 'f':
            follow_mode = true;
            break;
        case 's':
            sort_name = optarg;
            break;
        case 'r':
            sort_reverse = true;
            break;
        case 'w':
            if (cli_parse_seconds(optarg, &watch_ms) < 0 || watch_ms == 0)
                return cli_usage_error("stat", "bad --watch interval '%s'", optarg);
            break;
        case 't':
            if (cli_parse_seconds(optarg, &timeout_ms) < 0 || timeout_ms == 0)
                return cli_usage_error("stat", "bad --timeout '%s'", optarg);
            break;
        case 'n': {
            unsigned long n;
            if (cli_parse_count("stat", "--count", optarg, 1000000, &n) != 0)
                return CLI_EXIT_USAGE;
            count = (long)n;
            break;
        }
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error("stat", "expected one SOCKET path");
    if (follow_mode) {
        if (watch_ms != 0 || sort_name != NULL)
            return cli_usage_error("stat", "--follow takes no --watch or --sort");
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        return follow(argv[optind], timeout_ms);
    }
    if (watch_ms == 0)
        return show(argv[optind], sort_name, timeout_ms);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    for (long i = 0; !interrupted && (count < 0 || i < count); i++) {
        if (i > 0) {
            struct timespec ts = {(time_t)(watch_ms / 1000), (long)(watch_ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
            if (interrupted)
                break;
        }
        if (isatty(STDOUT_FILENO))
            printf("\033[H\033[2J"); /* clear the screen between refreshes */
        int r = show(argv[optind], sort_name, timeout_ms);
        if (r != CLI_EXIT_OK)
            return r;
    }
    return CLI_EXIT_OK;
}
