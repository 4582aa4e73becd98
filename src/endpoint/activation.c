/* systemd socket activation: the LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES protocol
 * of sd_listen_fds(3), without linking libsystemd for a ten-line job. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tether.h"

static int parse_uint(const char *s, unsigned long *out)
{
    char *end;
    if (s == NULL || *s == '\0' || *s == '-' || *s == '+')
        return -EINVAL;
    errno = 0;
    *out = strtoul(s, &end, 10);
    return errno != 0 || *end != '\0' ? -EINVAL : 0;
}

int tt_listen_fds(bool unset_env, char *names, size_t names_size)
{
    const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
    const char *names_s = getenv("LISTEN_FDNAMES");
    unsigned long pid, n;

    if (names != NULL && names_size == 0)
        return -EINVAL;
    if (names != NULL)
        names[0] = '\0';
    if (pid_s == NULL || fds_s == NULL)
        return 0;
    if (parse_uint(pid_s, &pid) < 0 || parse_uint(fds_s, &n) < 0 || n > 4096)
        return -EINVAL;
    if (pid != (unsigned long)getpid())
        return 0; /* meant for another process (we are a child that inherited it) */
    if (names != NULL && names_s != NULL) {
        if (strlen(names_s) >= names_size)
            return -ENOSPC;
        strcpy(names, names_s);
    }
    for (unsigned long i = 0; i < n; i++) {
        int fd = TT_LISTEN_FDS_START + (int)i;
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
            return -errno; /* EBADF: the variables promised a descriptor that is not there */
    }
    if (unset_env) {
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
    }
    return (int)n;
}
