/* Socket options and small socket helpers (system layer). */
#ifndef TT_SOCK_H
#define TT_SOCK_H

#include <stdbool.h>
#include <stdint.h>

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

#endif
