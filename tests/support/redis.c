#include "redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define REDIS_SERVER "/usr/bin/redis-server"

static int free_port(uint16_t *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, err = 0;

    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* as redis does */
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
        err = -errno;
    else
        *port = ntohs(sin.sin_port);
    close(fd);
    return err;
}

/* PING on a fresh connection, +PONG within 200 ms. */
static int ping(uint16_t port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {0, 200000};
    char buf[16] = {0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok = -1;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6 && recv(fd, buf, sizeof(buf) - 1, 0) > 0)
        ok = strncmp(buf, "+PONG", 5) == 0 ? 0 : -1;
    close(fd);
    return ok;
}

int th_redis_start(th_redis_t *r, uint16_t port)
{
    char port_s[16];
    pid_t pid;
    int err;

    memset(r, 0, sizeof(*r));
    if (access(REDIS_SERVER, X_OK) != 0)
        return -ENOENT;
    if (port == 0 && (err = free_port(&port)) < 0)
        return err;
    snprintf(port_s, sizeof(port_s), "%u", (unsigned)port);
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        if (getenv("TT_TEST_VERBOSE") == NULL) {
            int nul = open("/dev/null", O_RDWR);
            dup2(nul, 1);
            dup2(nul, 2);
        }
        execl(REDIS_SERVER, REDIS_SERVER, "--port", port_s, "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", "/tmp",
              "--protected-mode", "yes", (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    r->port = port;
    for (uint64_t end = th_now_ms() + 5000; th_now_ms() < end; usleep(20000)) {
        if (ping(port) == 0)
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) { /* exited: the port was taken */
            r->pid = 0;
            return -EADDRINUSE;
        }
    }
    th_redis_stop(r);
    return -ETIMEDOUT;
}

void th_redis_kill(th_redis_t *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

void th_redis_stop(th_redis_t *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGTERM);
    for (uint64_t end = th_now_ms() + 2000; th_now_ms() < end; usleep(10000))
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            r->pid = 0;
            return;
        }
    th_redis_kill(r);
}
