/* Network namespaces for fault tests: two namespaces joined by a veth pair, with
 * addresses, firewall drop rules and netem, created by the test and always removed.
 *
 * Names carry the creating process id, so runs never collide and a later run can
 * sweep what a crashed one left behind. Sockets are put into a namespace by
 * entering it on the calling thread (setns(2)) while they are created: a socket
 * stays in the namespace it was made in, whatever the thread does afterwards. */
#ifndef TT_TEST_NETNS_H
#define TT_TEST_NETNS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct th_netns {
    char ns_a[32], ns_b[32];   /* namespace names (ip netns) */
    char dev_a[16], dev_b[16]; /* the veth ends, one in each namespace */
    char addr_a[16], addr_b[16]; /* "10.77.0.1" in A, "10.77.0.2" in B (/24) */
    bool created;
} th_netns_t;

/* Create namespaces A and B, a veth pair between them, addresses, links up (lo too).
 * Returns 0, or a negative errno when namespaces cannot be made here (not root, no
 * CONFIG_NET_NS, no `ip`): the caller should cr_skip. Whatever was made is removed
 * on failure, and at process exit if th_netns_destroy is never reached. */
int th_netns_create(th_netns_t *ns);
/* Remove both namespaces (and so the veth pair). Safe to call twice. */
void th_netns_destroy(th_netns_t *ns);

/* Run a shell command inside namespace `name` (printf-style). Returns its exit
 * status, or -1 when it could not be run. Output goes to /dev/null unless
 * TT_TEST_VERBOSE is set in the environment. */
int th_netns_exec(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Switch this thread into namespace `name`. Returns a descriptor of the previous
 * namespace for th_netns_leave, or a negative errno. */
int th_netns_enter(const char *name);
/* Return to the namespace saved by th_netns_enter and close the descriptor.
 * Returns 0 or a negative errno. */
int th_netns_leave(int saved);

/* nft: drop incoming TCP to `port` in namespace `name` (SYNs included). 0 or -1. */
int th_netns_drop_tcp_port(const char *name, uint16_t port);
/* nft: drop every incoming packet in namespace `name`. 0 or -1. */
int th_netns_drop_all(const char *name);
/* nft: remove the rules added above. 0 or -1. */
int th_netns_flush_rules(const char *name);
/* tc netem on `dev` in `name`, e.g. args "delay 100ms loss 5%". 0, or -1 when the
 * kernel lacks netem (callers skip then). */
int th_netns_netem(const char *name, const char *dev, const char *args);

#endif
