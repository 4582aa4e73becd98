/* A peer that vanishes without FIN or RST, stops (SIGSTOP), or is killed, detected
 * within the deadline given to the one knob, with the right close reason.
 *
 * Layout: two network namespaces joined by a veth pair, made by the test
 * (tests/support/netns.c) and removed also on failure. Tether runs in this process,
 * its thread switched into namespace A with setns(2); the peer is a small python3
 * program started in namespace B with `ip netns exec`, connecting to a tether server
 * that has tt_server_opts_t.detect_within_ms set. A vanish is nft dropping every
 * packet in and out of B: nothing is ever answered again, not even with a reset.
 *
 * Each case prints its measured detection time ("dead-peer: ...") and asserts it is
 * within the deadline plus 10%. To see a case fail without its fault, run with
 * TT_FAULT_ABSENT=1: the fault is skipped and every case but none must fail. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "netns.h"

static const char peer_py[] =
    "import socket, sys, time\n"
    "mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
    "s = socket.create_connection((host, port), timeout=5)\n"
    "s.settimeout(None)\n"
    "if mode == 'idle':\n"          /* connects, then only sleeps: never reads or sends */
    "    while True: time.sleep(3600)\n"
    "elif mode == 'echo':\n"        /* answers heartbeats: it echoes them */
    "    while True:\n"
    "        d = s.recv(65536)\n"
    "        if not d: break\n"
    "        s.sendall(d)\n"
    "elif mode == 'sink':\n"        /* reads everything, says nothing */
    "    while True:\n"
    "        if not s.recv(1 << 20): break\n"
    "elif mode == 'source':\n"      /* sends 1 KiB every 10 ms, ignores what comes */
    "    s.setblocking(False)\n"
    "    chunk = b'x' * 1024\n"
    "    while True:\n"
    "        try: s.send(chunk)\n"
    "        except BlockingIOError: pass\n"
    "        try:\n"
    "            if s.recv(65536) == b'': break\n"
    "        except BlockingIOError: pass\n"
    "        time.sleep(0.01)\n";

typedef enum fault { VANISH, STOP, KILL } fault_t;

typedef struct state {
    th_netns_t ns;
    int saved_ns;
    pid_t peer;
    bool stopped;
    char script[64];
    tt_loop_t *loop;
    tt_server_t *server;
    tt_conn_t *conn;
    int opens, closes;
    uint64_t got;
    bool closed;
    uint64_t closed_at;
    tt_close_info_t info;
    bool pump;
    bool paused; /* reading stopped from on_open */
    /* Group cases: several peers at once, each its own process. */
    pid_t pids[8];
    int npids;
    tt_server_t *server2;
} state_t;

static state_t st = {.saved_ns = -1, .peer = -1};
static char bulk[64 * 1024];

static void pump(tt_conn_t *c)
{
    if (st.pump)
        while (tt_send(c, bulk, sizeof(bulk)) == 0)
            ;
}

static void on_open(tt_conn_t *c)
{
    st.opens++;
    st.conn = c;
    if (st.paused)
        cr_assert_eq(tt_conn_read_stop(c), 0);
    pump(c);
}

static void on_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)c, (void)d, (void)pending;
    st.got += n;
}

static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    st.closes++;
    st.closed = true;
    st.closed_at = th_now_ms();
    st.info = *info;
    st.conn = NULL;
}

static void cleanup(void)
{
    if (st.peer > 0) {
        kill(st.peer, SIGKILL);
        if (st.stopped)
            kill(st.peer, SIGCONT);
        waitpid(st.peer, NULL, 0);
        st.peer = -1;
    }
    for (int i = 0; i < st.npids; i++) {
        kill(st.pids[i], SIGKILL);
        kill(st.pids[i], SIGCONT); /* a stopped process dies once continued */
        waitpid(st.pids[i], NULL, 0);
    }
    st.npids = 0;
    if (st.loop != NULL) {
        if (st.server != NULL)
            tt_server_close(st.server);
        if (st.server2 != NULL)
            tt_server_close(st.server2);
        if (st.conn != NULL)
            tt_destroy(st.conn, TT_DESTROY_RESET);
        for (int i = 0; i < 20 && tt_loop_handle_count(st.loop) > 0; i++)
            tt_loop_run(st.loop, TT_RUN_NOWAIT);
    }
    if (st.saved_ns >= 0)
        th_netns_leave(st.saved_ns);
    st.saved_ns = -1;
    th_netns_destroy(&st.ns);
    if (st.script[0] != '\0')
        unlink(st.script);
}

TestSuite(dead_peer, .fini = cleanup, .timeout = 90);

static void run_for(uint64_t ms)
{
    bool never = false;
    th_run_until(st.loop, &never, ms);
}

static pid_t spawn_peer(const char *mode, uint16_t port)
{
    char portbuf[8];
    FILE *f;
    pid_t pid;

    if (st.script[0] == '\0') {
        snprintf(st.script, sizeof(st.script), "/tmp/tt-dead-peer-%d.py", (int)getpid());
        f = fopen(st.script, "w");
        cr_assert_not_null(f);
        fputs(peer_py, f);
        fclose(f);
    }
    snprintf(portbuf, sizeof(portbuf), "%u", (unsigned)port);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* `ip netns exec` execs python3 in place: this pid is the peer's. */
        execlp("ip", "ip", "netns", "exec", st.ns.ns_b, "python3", st.script, mode,
               st.ns.addr_a, portbuf, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void start_peer(const char *mode, uint16_t port) { st.peer = spawn_peer(mode, port); }

/* Drop every packet into and out of B, in one nft transaction. */
static int vanish(void)
{
    return th_netns_exec(st.ns.ns_b,
                         "nft 'add table inet ttlive; "
                         "add chain inet ttlive in { type filter hook input priority 0; "
                         "policy drop; }; "
                         "add chain inet ttlive out { type filter hook output priority 0; "
                         "policy drop; }'");
}

static const char *fault_name(fault_t f)
{
    return f == VANISH ? "vanish" : f == STOP ? "SIGSTOP" : "SIGKILL";
}

/* One case: a tether server with detect-within `n` ms, a python3 peer in `mode`,
 * then `f`. Returns the measured detection time; the close info is in st.info. */
static uint64_t run_case(const char *mode, fault_t f, uint64_t n)
{
    tt_liveness_opts_t lv = {.ping = "PING\n", .ping_len = 5};
    tt_server_opts_t o = {.detect_within_ms = n, .liveness = &lv};
    tt_conn_handlers_t h = {.on_open = on_open, .on_data = on_data, .on_close = on_close,
                            .on_drain = pump};
    tt_addr_t addr;
    uint64_t t0, took, warm = n / 2 > 600 ? n / 2 : 600;
    int r;

    r = th_netns_create(&st.ns);
    if (r < 0)
        cr_skip("cannot create network namespaces here (%s): run as root with ip(8) and "
                "CONFIG_NET_NS", strerror(-r));
    st.saved_ns = th_netns_enter(st.ns.ns_a);
    cr_assert_geq(st.saved_ns, 0, "setns: %s", strerror(-st.saved_ns));
    st.pump = strcmp(mode, "sink") == 0;

    cr_assert_eq(tt_loop_init(&st.loop), 0);
    cr_assert_eq(tt_addr_parse(&addr, st.ns.addr_a, 0), 0);
    r = tt_server_listen(st.loop, &addr, &o, &h, NULL, &st.server);
    cr_assert_eq(r, 0, "listen: %s", tt_strerror(r));
    cr_assert_eq(tt_server_addr(st.server, &addr), 0);
    start_peer(mode, tt_addr_port(&addr));
    for (uint64_t end = th_now_ms() + 5000; st.opens == 0 && th_now_ms() < end;)
        tt_loop_run(st.loop, TT_RUN_ONCE);
    cr_assert_eq(st.opens, 1, "the python3 peer never connected");

    /* Healthy first: no false alarm, and the traffic of the mode is flowing. */
    run_for(warm);
    cr_assert_eq(st.closes, 0, "closed before any fault: %s after %llu ms",
                 tt_close_kind_name(st.info.kind), (unsigned long long)warm);
    if (strcmp(mode, "echo") == 0 && st.paused) {
        tt_tcp_info_t ti;
        cr_assert_eq(tt_conn_get_tcp_info(st.conn, &ti), 0);
        cr_assert_eq(st.got, 0, "read %llu bytes while paused", (unsigned long long)st.got);
        cr_assert_geq(ti.bytes_received, 5, "no heartbeat echoed in %llu ms",
                      (unsigned long long)warm);
    } else if (strcmp(mode, "echo") == 0)
        cr_assert_geq(st.got, 5, "no heartbeat echoed in %llu ms", (unsigned long long)warm);
    else if (strcmp(mode, "source") == 0)
        cr_assert_gt(st.got, 10 * 1024, "only %llu bytes received", (unsigned long long)st.got);
    else
        cr_assert_gt(tt_conn_written_bytes(st.conn), 1024 * 1024, "only %llu bytes sent",
                     (unsigned long long)tt_conn_written_bytes(st.conn));

    t0 = th_now_ms(); /* before the fault is in place: the measure can only be longer */
    if (getenv("TT_FAULT_ABSENT") == NULL) {
        if (f == VANISH)
            cr_assert_eq(vanish(), 0, "nft failed in %s", st.ns.ns_b);
        else if (f == STOP) {
            cr_assert_eq(kill(st.peer, SIGSTOP), 0);
            st.stopped = true;
        } else {
            cr_assert_eq(kill(st.peer, SIGKILL), 0);
        }
    }
    th_run_until(st.loop, &st.closed, n * 2 + 2000);
    cr_assert(st.closed, "%s peer, %s: not detected within %llu ms", mode, fault_name(f),
              (unsigned long long)(n * 2 + 2000));
    took = st.closed_at - t0;
    fprintf(stderr, "dead-peer: detect-within %5llu ms, %-6s peer, %-7s: detected in %5llu ms "
            "(%s)\n", (unsigned long long)n, mode, fault_name(f), (unsigned long long)took,
            tt_close_kind_name(st.info.kind));
    cr_expect_eq(st.closes, 1, "closes %d", st.closes);
    return took;
}

static void expect_within(uint64_t took, uint64_t n)
{
    cr_expect_leq(took, n + n / 10, "detected after %llu ms, deadline %llu ms + 10%%",
                  (unsigned long long)took, (unsigned long long)n);
}

static void expect_liveness_reason(void)
{
    cr_expect(st.info.kind == TT_CLOSE_HEARTBEAT_TIMEOUT ||
                  st.info.kind == TT_CLOSE_KERNEL_TIMEOUT,
              "reason %s (%s), want heartbeat timeout or kernel timeout",
              tt_close_kind_name(st.info.kind), tt_err_name(st.info.error));
    if (st.info.kind == TT_CLOSE_HEARTBEAT_TIMEOUT)
        cr_expect_eq(st.info.error, TT_EHEARTBEAT, "error %s", tt_err_name(st.info.error));
    else
        cr_expect_eq(st.info.error, -ETIMEDOUT, "error %s", tt_err_name(st.info.error));
}

static void idle_vanish(uint64_t n)
{
    uint64_t took = run_case("echo", VANISH, n);
    expect_within(took, n);
    expect_liveness_reason();
}

static void bulk_send_vanish(uint64_t n)
{
    uint64_t took = run_case("sink", VANISH, n);
    const tt_close_info_t *i = &st.info;

    expect_within(took, n);
    /* Data in flight: the kernel's user timeout and the dead-after time (which saw
     * the acknowledgements stop) race; both are the right answer. */
    expect_liveness_reason();
    /* Delivery: what was handed to the kernel but never acknowledged is reported. */
    fprintf(stderr, "dead-peer:   queued %llu written %llu unsent %llu acked %llu unacked %llu\n",
            (unsigned long long)i->bytes_queued, (unsigned long long)i->bytes_written,
            (unsigned long long)i->bytes_unsent, (unsigned long long)i->bytes_acked,
            (unsigned long long)i->bytes_unacked);
    cr_expect_lt(i->bytes_acked, i->bytes_written, "acked %llu, written %llu",
                 (unsigned long long)i->bytes_acked, (unsigned long long)i->bytes_written);
    cr_expect_gt(i->bytes_unacked, 0);
    cr_expect_eq(i->bytes_acked + i->bytes_unacked, i->bytes_written,
                 "acked %llu + unacked %llu != written %llu", (unsigned long long)i->bytes_acked,
                 (unsigned long long)i->bytes_unacked, (unsigned long long)i->bytes_written);
    cr_expect_eq(i->bytes_written + i->bytes_unsent, i->bytes_queued,
                 "written %llu + unsent %llu != queued %llu",
                 (unsigned long long)i->bytes_written, (unsigned long long)i->bytes_unsent,
                 (unsigned long long)i->bytes_queued);
    cr_expect_gt(i->bytes_unsent, 0, "the queue was full: some bytes never left");
}

/* Reading paused and nothing to write: the socket is out of the poller, so only
 * the liveness timer (kernel counters, SO_ERROR) can notice anything. */
static void paused_idle_vanish(uint64_t n)
{
    st.paused = true;
    uint64_t took = run_case("echo", VANISH, n);
    expect_within(took, n);
    expect_liveness_reason();
}

static void receiving_vanish(uint64_t n)
{
    uint64_t took = run_case("source", VANISH, n);
    expect_within(took, n);
    expect_liveness_reason();
}

static void stopped_peer(uint64_t n)
{
    uint64_t took = run_case("echo", STOP, n);
    expect_within(took, n);
    /* Its kernel still acknowledges everything: only the heartbeat can tell. */
    cr_expect_eq(st.info.kind, TT_CLOSE_HEARTBEAT_TIMEOUT, "reason %s (%s)",
                 tt_close_kind_name(st.info.kind), tt_err_name(st.info.error));
    cr_expect_eq(st.info.error, TT_EHEARTBEAT, "error %s", tt_err_name(st.info.error));
}

static void killed_peer(uint64_t n)
{
    uint64_t took = run_case("echo", KILL, n);
    /* The kernel closes for the dead process (FIN, or RST if our ping was unread):
     * that is seen at once, not after the deadline. */
    cr_expect_leq(took, 200, "detected after %llu ms; a FIN/RST should show at once",
                  (unsigned long long)took);
    cr_expect(st.info.kind == TT_CLOSE_PEER_CLOSED || st.info.kind == TT_CLOSE_PEER_RESET,
              "reason %s, want peer closed or peer reset", tt_close_kind_name(st.info.kind));
}

Test(dead_peer, vanish_while_idle_is_detected_within_1s) { idle_vanish(1000); }
Test(dead_peer, vanish_while_idle_is_detected_within_3s) { idle_vanish(3000); }
Test(dead_peer, vanish_while_bulk_sending_is_detected_within_1s) { bulk_send_vanish(1000); }
Test(dead_peer, vanish_while_bulk_sending_is_detected_within_3s) { bulk_send_vanish(3000); }
Test(dead_peer, vanish_while_only_receiving_is_detected_within_1s) { receiving_vanish(1000); }
Test(dead_peer, vanish_while_only_receiving_is_detected_within_3s) { receiving_vanish(3000); }
Test(dead_peer, vanish_while_reading_is_paused_is_detected_within_1s)
{
    paused_idle_vanish(1000);
}
Test(dead_peer, stopped_peer_process_is_detected_within_1s) { stopped_peer(1000); }
Test(dead_peer, stopped_peer_process_is_detected_within_3s) { stopped_peer(3000); }
Test(dead_peer, killed_peer_process_is_detected_at_once_with_1s_knob) { killed_peer(1000); }
Test(dead_peer, killed_peer_process_is_detected_at_once_with_3s_knob) { killed_peer(3000); }

/* ---- peers that are silent but alive ----------------------------------------------
 *
 * The knob alone (no ping bytes, no framing): nothing tells tether that the peer
 * answers pings, so a peer whose TCP stack answers is alive, however long it says
 * nothing; proof of life comes from its kernel (keepalive answers, acknowledgements,
 * TCP_USER_TIMEOUT). Four peers at once on one server: idle (connects, then only
 * sleeps: never reads or sends), one we send to (it reads, never talks), one that
 * sends to us, and an idle one SIGSTOPped as soon as it is connected. A fifth, idle,
 * is on a second server set up as `tether echo --detect-within` is (ping and pong
 * lines: tether's answering), which it never answers. Each is held for three
 * windows and must survive; then B vanishes and each must be detected within the
 * window + 10%. */

enum { G_IDLE, G_SINK, G_SOURCE, G_STOPPED, G_PINGED, G_N };
static const char *const g_mode[G_N] = {"idle", "sink", "source", "idle", "idle"};
static const char *const g_name[G_N] = {"idle", "we send", "it sends", "SIGSTOP", "pinged"};

typedef struct gpeer {
    tt_conn_t *conn;
    bool closed;
    uint64_t closed_at, got;
    tt_close_info_t info;
} gpeer_t;

static gpeer_t g[G_N];
static int g_opens, g_closes;
static bool g_all_closed;

static gpeer_t *g_of(tt_conn_t *c)
{
    for (int i = 0; i < G_N; i++)
        if (g[i].conn == c)
            return &g[i];
    return NULL;
}

static void g_open(tt_conn_t *c)
{
    if (g_opens < G_N)
        g[g_opens].conn = c; /* peers are started one at a time: the order is theirs */
    g_opens++;
}

static void g_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    gpeer_t *p = g_of(c);
    (void)d, (void)pending;
    if (p != NULL)
        p->got += n;
}

static void g_close(tt_conn_t *c, const tt_close_info_t *info)
{
    gpeer_t *p = g_of(c);
    if (p == NULL)
        return;
    p->closed = true;
    p->closed_at = th_now_ms();
    p->info = *info;
    p->conn = NULL;
    g_all_closed = ++g_closes == G_N;
}

/* 1 KiB every 10 ms to the peer that reads: a steady send, bounded in rate. */
static void g_tick(tt_timer_t *t, void *data)
{
    (void)t, (void)data;
    if (g[G_SINK].conn != NULL)
        tt_send(g[G_SINK].conn, bulk, 1024);
}

static void silent_alive_peers_then_vanish(uint64_t n)
{
    tt_server_opts_t o = {.detect_within_ms = n}; /* the knob alone */
    tt_liveness_opts_t lv = {.ping = "tether: ping\n", .ping_len = 13,
                             .pong = "tether: pong\n", .pong_len = 13};
    tt_server_opts_t o2 = {.detect_within_ms = n, .liveness = &lv};
    tt_conn_handlers_t h = {.on_open = g_open, .on_data = g_data, .on_close = g_close};
    tt_timer_t *tick;
    tt_addr_t addr, addr2;
    uint64_t t0, held, hold = 3 * n;
    int r;

    r = th_netns_create(&st.ns);
    if (r < 0)
        cr_skip("cannot create network namespaces here (%s): run as root with ip(8) and "
                "CONFIG_NET_NS", strerror(-r));
    st.saved_ns = th_netns_enter(st.ns.ns_a);
    cr_assert_geq(st.saved_ns, 0, "setns: %s", strerror(-st.saved_ns));
    cr_assert_eq(tt_loop_init(&st.loop), 0);
    cr_assert_eq(tt_addr_parse(&addr, st.ns.addr_a, 0), 0);
    r = tt_server_listen(st.loop, &addr, &o, &h, NULL, &st.server);
    cr_assert_eq(r, 0, "listen: %s", tt_strerror(r));
    cr_assert_eq(tt_server_addr(st.server, &addr), 0);
    cr_assert_eq(tt_addr_parse(&addr2, st.ns.addr_a, 0), 0);
    r = tt_server_listen(st.loop, &addr2, &o2, &h, NULL, &st.server2);
    cr_assert_eq(r, 0, "listen: %s", tt_strerror(r));
    cr_assert_eq(tt_server_addr(st.server2, &addr2), 0);
    for (int i = 0; i < G_N; i++) {
        st.pids[st.npids++] =
            spawn_peer(g_mode[i], tt_addr_port(i == G_PINGED ? &addr2 : &addr));
        for (uint64_t end = th_now_ms() + 5000; g_opens == i && th_now_ms() < end;)
            tt_loop_run(st.loop, TT_RUN_ONCE);
        cr_assert_eq(g_opens, i + 1, "the %s peer never connected", g_name[i]);
    }
    cr_assert_eq(kill(st.pids[G_STOPPED], SIGSTOP), 0);
    cr_assert_eq(tt_timer_init(st.loop, &tick, g_tick, NULL), 0);
    cr_assert_eq(tt_timer_start(tick, 10, 10), 0);

    /* Alive for TCP, silent for the application: three windows, nobody closed. */
    held = th_now_ms();
    run_for(hold);
    for (int i = 0; i < G_N; i++)
        cr_assert(!g[i].closed, "%s peer closed after %llu ms of a %llu ms hold: %s (%s)",
                  g_name[i], (unsigned long long)(g[i].closed_at - held),
                  (unsigned long long)hold, tt_close_kind_name(g[i].info.kind),
                  tt_strerror(g[i].info.error));
    cr_assert_gt(tt_conn_written_bytes(g[G_SINK].conn), hold * 50, "only %llu bytes sent",
                 (unsigned long long)tt_conn_written_bytes(g[G_SINK].conn));
    cr_assert_gt(g[G_SOURCE].got, hold * 50, "only %llu bytes received",
                 (unsigned long long)g[G_SOURCE].got);
    cr_assert_eq(g[G_IDLE].got + g[G_STOPPED].got + g[G_PINGED].got, 0);
    cr_assert_geq(tt_conn_written_bytes(g[G_PINGED].conn), 13 * 4, "no pings were sent");

    t0 = th_now_ms(); /* before the fault is in place: the measure can only be longer */
    if (getenv("TT_FAULT_ABSENT") == NULL)
        cr_assert_eq(vanish(), 0, "nft failed in %s", st.ns.ns_b);
    th_run_until(st.loop, &g_all_closed, n * 2 + 2000);
    tt_timer_close(tick);
    for (int i = 0; i < G_N; i++) {
        if (!g[i].closed) {
            cr_expect(g[i].closed, "%s peer: vanish not detected within %llu ms", g_name[i],
                      (unsigned long long)(n * 2 + 2000));
            continue;
        }
        uint64_t took = g[i].closed_at - t0;
        fprintf(stderr, "dead-peer: detect-within %5llu ms, silent %-8s peer alive %llu ms, "
                "vanish: detected in %5llu ms (%s)\n", (unsigned long long)n, g_name[i],
                (unsigned long long)hold, (unsigned long long)took,
                tt_close_kind_name(g[i].info.kind));
        cr_expect_leq(took, n + n / 10, "%s peer: detected after %llu ms, deadline %llu ms + 10%%",
                      g_name[i], (unsigned long long)took, (unsigned long long)n);
        st.info = g[i].info;
        expect_liveness_reason();
    }
}

Test(dead_peer, silent_live_peers_survive_3x_2s_then_vanish_is_detected_within_2s)
{
    silent_alive_peers_then_vanish(2000);
}
Test(dead_peer, silent_live_peers_survive_3x_8s_then_vanish_is_detected_within_8s)
{
    silent_alive_peers_then_vanish(8000);
}
