/* A real DNS server for the tests: dnsmasq on 127.0.0.1 and a free port, serving
 * only the records the test gives it, and a "server" that never answers.
 *
 * dnsmasq is started from the calling thread, so it runs in whatever network
 * namespace that thread is in (enter one first with th_netns_enter to serve a
 * namespace). It is authoritative for "test." and "127.in-addr.arpa." (names there
 * that it does not hold get NXDOMAIN) and has no upstream: nothing it is asked ever
 * leaves the machine. */
#ifndef TT_TEST_DNSMASQ_H
#define TT_TEST_DNSMASQ_H

#include <stdint.h>
#include <sys/types.h>

typedef struct th_dns {
    pid_t pid;
    uint16_t port;
    char servers[32]; /* "127.0.0.1:PORT", for tt_resolver_opts_t.servers */
} th_dns_t;

/* Start dnsmasq with these extra options (NULL-terminated, e.g.
 * "--host-record=both.test,127.0.0.1,::1") and wait, at most 5 s, until it answers.
 * Returns 0, -ENOENT (no /usr/sbin/dnsmasq: callers skip), or -ETIMEDOUT. */
int th_dns_start(th_dns_t *d, const char *const *extra);
/* Stop it (SIGTERM, SIGKILL after 2 s) and reap it. Safe to call twice. */
void th_dns_stop(th_dns_t *d);

/* A UDP socket bound to 127.0.0.1 and a free port that never answers: queries
 * stay unread in its buffer. Returns the fd (port in *port, "127.0.0.1:PORT" in
 * servers) or -errno. */
int th_dns_silent(uint16_t *port, char *servers, size_t size);
/* Count (and drop) the datagrams waiting on a silent socket. */
int th_dns_silent_count(int fd);

#endif
