#include "dnsmasq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define DNSMASQ "/usr/sbin/dnsmasq"

/* A port on 127.0.0.1 free for both UDP and TCP (dnsmasq binds both), released
 * again: dnsmasq binds it a moment later, and th_dns_start retries if someone else
 * was quicker. */
static int free_port(uint16_t *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int err = 0, one = 1;

    /* dnsmasq sets SO_REUSEADDR on its TCP listener, so connections of earlier
     * tests left in TIME_WAIT on this port do not stop it; probe the same way, or
     * after a long run most ephemeral ports look taken. */
    if (t >= 0)
        setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (u < 0 || t < 0 || bind(u, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(u, (struct sockaddr *)&sin, &len) < 0 ||
        bind(t, (struct sockaddr *)&sin, sizeof(sin)) < 0)
        err = -errno;
    else
        *port = ntohs(sin.sin_port);
    if (u >= 0)
        close(u);
    if (t >= 0)
        close(t);
    return err;
}

/* Send one query for "probe.test" A and wait up to 100 ms for any answer. */
static int probe(uint16_t port)
{
    static const unsigned char q[] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
                                      5,    'p',  'r',  'o',  'b', 'e', 4, 't', 'e', 's', 't', 0,
                                      0,    1,    0,    1};
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {0, 100000};
    unsigned char buf[512];
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ssize_t n = -1;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&sin, sizeof(sin)) == (ssize_t)sizeof(q))
        n = recv(fd, buf, sizeof(buf), 0);
    close(fd);
    return n >= 12 && buf[0] == 0x12 && buf[1] == 0x34 ? 0 : -1;
}

static int start_once(th_dns_t *d, const char *const *extra)
{
    char port_opt[32];
    const char *argv[64];
    int argc = 0, err;
    pid_t pid;

    memset(d, 0, sizeof(*d));
    if (access(DNSMASQ, X_OK) != 0)
        return -ENOENT;
    err = free_port(&d->port);
    if (err < 0)
        return err;
    snprintf(port_opt, sizeof(port_opt), "--port=%u", (unsigned)d->port);
    snprintf(d->servers, sizeof(d->servers), "127.0.0.1:%u", (unsigned)d->port);
    argv[argc++] = DNSMASQ;
    argv[argc++] = "--keep-in-foreground";
    argv[argc++] = "--conf-file=/dev/null";
    argv[argc++] = "--pid-file=";
    argv[argc++] = port_opt;
    argv[argc++] = "--listen-address=127.0.0.1";
    argv[argc++] = "--bind-interfaces";
    argv[argc++] = "--no-resolv";
    argv[argc++] = "--no-hosts";
    argv[argc++] = "--local=/test/";
    argv[argc++] = "--local=/127.in-addr.arpa/";
    argv[argc++] = "--user=root";
    for (int i = 0; extra != NULL && extra[i] != NULL && argc < 62; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;

    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        if (getenv("TT_TEST_VERBOSE") == NULL) {
            int nul = open("/dev/null", O_RDWR);
            dup2(nul, 1);
            dup2(nul, 2);
        }
        execv(DNSMASQ, (char *const *)argv);
        _exit(127);
    }
    d->pid = pid;
    for (uint64_t end = th_now_ms() + 5000; th_now_ms() < end;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = 0;
            return -ECHILD; /* it exited: bad option or port taken */
        }
        if (probe(d->port) == 0)
            return 0;
        usleep(20000);
    }
    th_dns_stop(d);
    return -ETIMEDOUT;
}

int th_dns_start(th_dns_t *d, const char *const *extra)
{
    int err = -EADDRINUSE;
    /* A port taken between free_port() and dnsmasq's bind makes it exit: retry. */
    for (int i = 0; i < 20 && err != 0 && err != -ENOENT && err != -ETIMEDOUT; i++)
        err = start_once(d, extra);
    return err;
}

void th_dns_stop(th_dns_t *d)
{
    int st;

    if (d->pid <= 0)
        return;
    kill(d->pid, SIGTERM);
    for (uint64_t end = th_now_ms() + 2000; th_now_ms() < end;) {
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            d->pid = 0;
            return;
        }
        usleep(10000);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &st, 0);
    d->pid = 0;
}

int th_dns_silent(uint16_t *port, char *servers, size_t size)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    *port = ntohs(sin.sin_port);
    snprintf(servers, size, "127.0.0.1:%u", (unsigned)*port);
    return fd;
}

int th_dns_silent_count(int fd)
{
    char buf[1500];
    int n = 0;

    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
        n++;
    return n;
}
