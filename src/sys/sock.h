/* Socket options and small socket helpers (system layer). */
#ifndef TT_SOCK_H
#define TT_SOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tether.h"

/* A non-blocking, close-on-exec socket. Returns the fd or -errno. */
int tt__sock_open(int family, int type);
int tt__sock_set_bool(int fd, int level, int opt, bool on);
int tt__sock_set_int(int fd, int level, int opt, int value);
int tt__sock_get_int(int fd, int level, int opt, int *out);
/* SO_LINGER {1, 0}: close() then sends RST instead of FIN (socket(7)). */
int tt__sock_set_reset_on_close(int fd);
/* Pending socket error (SO_ERROR) as -errno, or 0. */
int tt__sock_error(int fd);
/* SIOCOUTQ: bytes in the send queue not yet acknowledged (tcp(7)). 0 or -errno. */
int tt__sock_outq(int fd, uint32_t *out);
/* TCP_INFO plus SIOCOUTQ/SIOCOUTQNSD. 0 or -errno. */
int tt__sock_tcp_info(int fd, tt_tcp_info_t *out);
/* How long ago (ms, TCP_INFO) the peer's kernel last sent us anything: data or an
 * acknowledgement, a keepalive probe's answer included. 0 or -errno. */
int tt__sock_tcp_heard(int fd, uint32_t *ms_ago);
int tt__sock_local(int fd, tt_addr_t *out);
int tt__sock_peer(int fd, tt_addr_t *out);

/* ---- Unix stream listeners on a path (unixpath.c) ---------------------------- */

/* The socket file a listener bound: removed at close only if the path still names
 * this inode. ino 0: nothing to remove (abstract name, or not bound). */
typedef struct tt__unix_file {
    dev_t dev;
    ino_t ino;
} tt__unix_file_t;

/* Does a server answer at the Unix address? 0 when nothing listens there (a stale
 * file, or none), -EADDRINUSE when something does, or the errno that kept us from
 * finding out. */
int tt__unix_in_use(const tt_addr_t *addr);
/* A listening, non-blocking, close-on-exec Unix stream socket bound at `addr`. A
 * stale socket file is replaced; a live one gives -EADDRINUSE, any other file at
 * the path (regular, directory, symlink: never followed) -EEXIST, untouched. `mode`
 * (permission bits; 0: as the kernel makes it, 0777 less the umask) is the file's
 * from the moment it exists. Fills *file. Returns the fd or -errno. */
int tt__unix_listen(const tt_addr_t *addr, unsigned mode, int backlog, tt__unix_file_t *file);
/* Remove the file at `path` if it is still the socket *file names; clears it. */
void tt__unix_unlink_ours(const char *path, tt__unix_file_t *file);
/* SO_PEERCRED of a connected Unix socket. 0 or -errno. */
int tt__sock_peer_cred(int fd, tt_peer_cred_t *out);

#endif
