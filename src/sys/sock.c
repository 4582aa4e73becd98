/* Socket options and small helpers. Every function returns 0 or -errno captured
 * right where the call failed. */
#include "sys/sock.h"

#include <errno.h>
#include <string.h>
#include <linux/sockios.h>
#include <linux/tcp.h> /* the kernel's struct tcp_info: glibc's lacks newer fields */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int tt__sock_open(int family, int type)
{
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

int tt__sock_set_bool(int fd, int level, int opt, bool on)
{
    return tt__sock_set_int(fd, level, opt, on ? 1 : 0);
}

int tt__sock_set_int(int fd, int level, int opt, int value)
{
    if (setsockopt(fd, level, opt, &value, sizeof(value)) < 0)
        return -errno;
    return 0;
}

int tt__sock_get_int(int fd, int level, int opt, int *out)
{
    socklen_t len = sizeof(*out);
    if (getsockopt(fd, level, opt, out, &len) < 0)
        return -errno;
    return 0;
}

int tt__sock_set_reset_on_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
        return -errno;
    return 0;
}

int tt__sock_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

static int get_name(int fd, tt_addr_t *out, int peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int r = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                 : getsockname(fd, (struct sockaddr *)&ss, &len);
    if (r < 0)
        return -errno;
    return tt_addr_from_sockaddr(out, (struct sockaddr *)&ss, len);
}

int tt__sock_local(int fd, tt_addr_t *out) { return get_name(fd, out, 0); }

int tt__sock_peer(int fd, tt_addr_t *out) { return get_name(fd, out, 1); }

int tt__sock_outq(int fd, uint32_t *out)
{
    int v = 0;
    if (ioctl(fd, SIOCOUTQ, &v) < 0)
        return -errno;
    *out = v > 0 ? (uint32_t)v : 0;
    return 0;
}

int tt__sock_tcp_heard(int fd, uint32_t *ms_ago)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -errno;
    /* As the kernel's keepalive timer counts: from the newer of the last data
     * segment and the last acknowledgement (a keepalive probe's answer is one). */
    *ms_ago = ti.tcpi_last_data_recv < ti.tcpi_last_ack_recv ? ti.tcpi_last_data_recv
                                                             : ti.tcpi_last_ack_recv;
    return 0;
}

int tt__sock_tcp_info(int fd, tt_tcp_info_t *out)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    int v;

    memset(&ti, 0, sizeof(ti)); /* an older kernel fills less: the rest reads 0 */
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -errno;
    memset(out, 0, sizeof(*out));
    out->rtt_us = ti.tcpi_rtt;
    out->rttvar_us = ti.tcpi_rttvar;
    out->retransmits_total = ti.tcpi_total_retrans;
    out->unacked_segs = ti.tcpi_unacked;
    out->segs_in = ti.tcpi_segs_in;
    out->segs_out = ti.tcpi_segs_out;
    out->bytes_acked = ti.tcpi_bytes_acked;
    out->bytes_received = ti.tcpi_bytes_received;
    out->snd_cwnd = ti.tcpi_snd_cwnd;
    if (ioctl(fd, SIOCOUTQ, &v) == 0 && v > 0)
        out->outq_bytes = (uint32_t)v;
    if (ioctl(fd, SIOCOUTQNSD, &v) == 0 && v > 0)
        out->notsent_bytes = (uint32_t)v;
    return 0;
}
