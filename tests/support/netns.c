#include "netns.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PREFIX "ttn"
#define MAX_LIVE 8

/* Names of namespaces this process made and has not removed yet: removed at exit
 * if the test never got to th_netns_destroy (an assertion failed first). Copies,
 * not pointers: the th_netns_t may live on a stack that is gone by then. */
static char live[MAX_LIVE][32];
static bool atexit_done;
static unsigned seq;

static bool verbose(void) { return getenv("TT_TEST_VERBOSE") != NULL; }

static int run(const char *cmd)
{
    char full[1024];
    int st;

    if (snprintf(full, sizeof(full), "%s%s", cmd, verbose() ? "" : " >/dev/null 2>&1") >=
        (int)sizeof(full))
        return -1; /* cut short, it would run something else */
    st = system(full);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static int runf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int runf(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return run(cmd);
}

static void forget(const char *name)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (strcmp(live[i], name) == 0)
            live[i][0] = '\0';
}

static void remember(const char *name)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i][0] == '\0') {
            snprintf(live[i], sizeof(live[i]), "%s", name);
            return;
        }
    }
}

static void delete_ns(const char *name)
{
    runf("ip netns del %s", name);
    forget(name);
}

static void cleanup_at_exit(void)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i][0] != '\0')
            delete_ns(live[i]);
}

/* A run that crashed (no exit handlers) leaves its namespaces behind: remove the
 * ones whose creating process no longer exists. */
static void sweep_stale(void)
{
    DIR *d = opendir("/run/netns");
    struct dirent *de;
    char stale[16][300];
    int n = 0;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL && n < 16) {
        int pid;
        if (sscanf(de->d_name, PREFIX "%d-", &pid) != 1 || pid <= 0)
            continue;
        if (kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        snprintf(stale[n++], sizeof(stale[0]), "%s", de->d_name);
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        runf("ip netns del %s", stale[i]);
}

int th_netns_create(th_netns_t *ns)
{
    unsigned id = seq++;
    int pid = (int)getpid();

    memset(ns, 0, sizeof(*ns));
    if (geteuid() != 0)
        return -EPERM;
    if (access("/sbin/ip", X_OK) != 0 && access("/usr/sbin/ip", X_OK) != 0 &&
        access("/bin/ip", X_OK) != 0 && access("/usr/bin/ip", X_OK) != 0)
        return -ENOENT;
    if (!atexit_done) {
        atexit(cleanup_at_exit);
        atexit_done = true;
    }
    sweep_stale();

    snprintf(ns->ns_a, sizeof(ns->ns_a), PREFIX "%d-%ua", pid, id);
    snprintf(ns->ns_b, sizeof(ns->ns_b), PREFIX "%d-%ub", pid, id);
    /* The devices are created directly inside the namespaces, so these names only
     * need to be unique there; the host's interfaces are never touched. */
    snprintf(ns->dev_a, sizeof(ns->dev_a), "ttv%ua", id);
    snprintf(ns->dev_b, sizeof(ns->dev_b), "ttv%ub", id);
    snprintf(ns->addr_a, sizeof(ns->addr_a), "10.77.0.1");
    snprintf(ns->addr_b, sizeof(ns->addr_b), "10.77.0.2");

    if (runf("ip netns add %s", ns->ns_a) != 0)
        return -EPERM;
    remember(ns->ns_a);
    if (runf("ip netns add %s", ns->ns_b) != 0)
        goto fail;
    remember(ns->ns_b);
    ns->created = true;
    if (runf("ip link add %s netns %s type veth peer name %s netns %s", ns->dev_a, ns->ns_a,
             ns->dev_b, ns->ns_b) != 0 ||
        runf("ip -n %s addr add %s/24 dev %s", ns->ns_a, ns->addr_a, ns->dev_a) != 0 ||
        runf("ip -n %s addr add %s/24 dev %s", ns->ns_b, ns->addr_b, ns->dev_b) != 0 ||
        runf("ip -n %s link set lo up", ns->ns_a) != 0 ||
        runf("ip -n %s link set lo up", ns->ns_b) != 0 ||
        runf("ip -n %s link set %s up", ns->ns_a, ns->dev_a) != 0 ||
        runf("ip -n %s link set %s up", ns->ns_b, ns->dev_b) != 0)
        goto fail;
    /* "up" is asynchronous: a SYN sent before the carrier is on is lost, and its
     * retransmission comes a second later. Wait (bounded) until both ends say UP. */
    for (int i = 0; i < 200; i++) {
        if (runf("ip -n %s -o link show dev %s | grep -q 'state UP'", ns->ns_a, ns->dev_a) == 0 &&
            runf("ip -n %s -o link show dev %s | grep -q 'state UP'", ns->ns_b, ns->dev_b) == 0)
            return 0;
        usleep(10 * 1000);
    }
    goto fail;

fail:
    th_netns_destroy(ns);
    return -ENODEV;
}

void th_netns_destroy(th_netns_t *ns)
{
    if (ns->ns_a[0] != '\0')
        delete_ns(ns->ns_a);
    if (ns->ns_b[0] != '\0')
        delete_ns(ns->ns_b);
    ns->ns_a[0] = ns->ns_b[0] = '\0';
    ns->created = false;
}

int th_netns_exec(const char *name, const char *fmt, ...)
{
    char cmd[768], full[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    snprintf(full, sizeof(full), "ip netns exec %s %s", name, cmd);
    return run(full);
}

int th_netns_enter(const char *name)
{
    char path[128];
    int saved, fd, err;

    saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (saved < 0)
        return -errno;
    snprintf(path, sizeof(path), "/run/netns/%s", name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = -errno;
        close(saved);
        return err;
    }
    if (setns(fd, CLONE_NEWNET) < 0) {
        err = -errno;
        close(fd);
        close(saved);
        return err;
    }
    close(fd);
    return saved;
}

int th_netns_leave(int saved)
{
    int err = 0;

    if (setns(saved, CLONE_NEWNET) < 0)
        err = -errno;
    close(saved);
    return err;
}

static int ensure_table(const char *name)
{
    if (th_netns_exec(name, "nft add table inet ttfault") != 0)
        return -1;
    return th_netns_exec(name, "nft add chain inet ttfault input "
                               "'{ type filter hook input priority 0; policy accept; }'") == 0
               ? 0
               : -1;
}

int th_netns_drop_tcp_port(const char *name, uint16_t port)
{
    if (ensure_table(name) != 0)
        return -1;
    return th_netns_exec(name, "nft add rule inet ttfault input tcp dport %u drop",
                         (unsigned)port) == 0
               ? 0
               : -1;
}

int th_netns_drop_all(const char *name)
{
    if (ensure_table(name) != 0)
        return -1;
    return th_netns_exec(name, "nft add rule inet ttfault input drop") == 0 ? 0 : -1;
}

int th_netns_flush_rules(const char *name)
{
    return th_netns_exec(name, "nft delete table inet ttfault") == 0 ? 0 : -1;
}

int th_netns_netem(const char *name, const char *dev, const char *args)
{
    return th_netns_exec(name, "tc qdisc replace dev %s root netem %s", dev, args) == 0 ? 0
                                                                                       : -1;
}
