#include "peer.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

uint64_t th_fnv1a64(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static unsigned char pattern_at(uint64_t i)
{
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ULL;
    return (unsigned char)(x >> 56);
}

void th_pattern(void *buf, size_t len, uint64_t off)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = pattern_at(off + i);
}

long th_pattern_check(const void *buf, size_t len, uint64_t off)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i] != pattern_at(off + i))
            return (long)i;
    return -1;
}

#define SINK_BUF (256 * 1024)

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *sink_main(void *arg)
{
    th_sink_t *s = arg;
    char *buf = malloc(SINK_BUF);
    uint64_t end = mono_ms() + s->limit_ms;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100 * 1000};

    setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (s->wait_go && !atomic_load(&s->go) && mono_ms() < end)
        usleep(1000);
    for (;;) {
        ssize_t n = buf != NULL ? recv(s->fd, buf, SINK_BUF, 0) : -1;
        if (n > 0) {
            if (s->check_pattern && s->bad_at < 0) {
                long bad = th_pattern_check(buf, (size_t)n, s->got);
                if (bad >= 0)
                    s->bad_at = (long)s->got + bad;
            }
            if (s->got < TH_SINK_HEAD) {
                size_t k = TH_SINK_HEAD - (size_t)s->got;
                memcpy(s->head + s->got, buf, (size_t)n < k ? (size_t)n : k);
            }
            s->fnv = th_fnv1a64(s->fnv, buf, (size_t)n);
            s->got += (uint64_t)n;
            continue;
        }
        if (n == 0) {
            s->eof = true;
            shutdown(s->fd, SHUT_WR);
            break;
        }
        if ((errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) && mono_ms() < end)
            continue;
        s->err = errno;
        break;
    }
    free(buf);
    atomic_store(&s->done, true);
    return NULL;
}

void th_sink_start(th_sink_t *s, int fd, bool wait_go, uint64_t limit_ms)
{
    bool check = s->check_pattern;
    memset(s, 0, sizeof(*s));
    s->check_pattern = check;
    s->fd = fd;
    s->wait_go = wait_go;
    s->limit_ms = limit_ms;
    s->fnv = TH_FNV_INIT;
    s->bad_at = -1;
    atomic_init(&s->go, false);
    atomic_init(&s->done, false);
    pthread_create(&s->th, NULL, sink_main, s);
}

void th_sink_go(th_sink_t *s) { atomic_store(&s->go, true); }

void th_sink_join(th_sink_t *s) { pthread_join(s->th, NULL); }

uint16_t th_unused_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    uint16_t port = 0;

    if (fd < 0)
        return 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd); /* never listened: connecting to it is refused */
    return port;
}

int th_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}
