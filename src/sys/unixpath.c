/* Unix stream listeners on a path: the one place that decides when a file at the
 * path may be replaced, gives the socket its mode, and removes it again. Both the
 * servers (tt_server_listen on "unix:/path") and the admin endpoint use it.
 *
 * The rules: a socket file nothing answers on (left by a process that died) is
 * replaced; a live socket (-EADDRINUSE) and any other kind of file (-EEXIST: a
 * regular file, a directory, a symlink, which is never followed) are left alone.
 * At close only the inode we bound is removed: if another server replaced the
 * file meanwhile, its file stays. Abstract names have no file: nothing to check,
 * nothing to remove. */
#include "sys/sock.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int tt__unix_in_use(const tt_addr_t *addr)
{
    int fd = tt__sock_open(AF_UNIX, SOCK_STREAM), err = 0;
    if (fd < 0)
        return fd;
    /* Non-blocking connect on a Unix socket completes or fails at once; EAGAIN is
     * a listener whose backlog is full: alive. */
    if (connect(fd, &addr->u.sa, addr->len) == 0 || errno == EAGAIN)
        err = -EADDRINUSE;
    else if (errno != ECONNREFUSED && errno != ENOENT)
        err = -errno;
    close(fd);
    return err;
}

int tt__unix_listen(const tt_addr_t *addr, unsigned mode, int backlog, tt__unix_file_t *file)
{
    const char *path = tt_addr_unix_path(addr);
    struct stat st;
    int fd, err;

    memset(file, 0, sizeof(*file));
    if (!tt_addr_is_unix(addr) || addr->len <= sizeof(sa_family_t) || (mode & ~07777u) != 0)
        return -EINVAL;
    if (path != NULL && lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST; /* lstat: a symlink is a symlink, whatever it points to */
        if ((err = tt__unix_in_use(addr)) < 0)
            return err;
        /* Nothing answers: the file of a process that is gone. */
        if (unlink(path) < 0 && errno != ENOENT)
            return -errno;
    }
    fd = tt__sock_open(AF_UNIX, SOCK_STREAM);
    if (fd < 0)
        return fd;
    /* The mode of the socket's inode becomes the file's at bind (unix(7): Linux
     * creates it with that mode, less the umask), so the file has it from its first
     * instant, and no chmod(path) can be led down a symlink. */
    if (mode != 0 && fchmod(fd, mode) < 0)
        goto fail;
    if (bind(fd, &addr->u.sa, addr->len) < 0)
        goto fail;
    if (path != NULL) {
        if (lstat(path, &st) < 0)
            goto fail_unlink;
        if (!S_ISSOCK(st.st_mode)) { /* replaced between bind and lstat: not ours */
            close(fd);
            return -EEXIST;
        }
        file->dev = st.st_dev;
        file->ino = st.st_ino;
        /* The umask took bits off: put the asked mode back. Until listen() no
         * client can connect, so this comes in time. */
        if (mode != 0 && (st.st_mode & 07777) != mode &&
            fchmodat(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW) < 0)
            goto fail_unlink;
    }
    if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0)
        goto fail_unlink;
    return fd;

fail_unlink:
    err = -errno;
    tt__unix_unlink_ours(path, file);
    close(fd);
    return err;
fail:
    err = -errno;
    close(fd);
    return err;
}

void tt__unix_unlink_ours(const char *path, tt__unix_file_t *file)
{
    struct stat st;

    if (path != NULL && file->ino != 0 && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == file->dev && st.st_ino == file->ino)
        unlink(path);
    file->ino = 0;
}

int tt__sock_peer_cred(int fd, tt_peer_cred_t *out)
{
    struct ucred uc;
    socklen_t len = sizeof(uc);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
        return -errno;
    out->pid = uc.pid;
    out->uid = uc.uid;
    out->gid = uc.gid;
    return 0;
}
