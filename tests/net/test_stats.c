/* Statistics and introspection: byte and packet counts, addresses, state names,
 * TCP_INFO, the server's list of live connections. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "harness.h"
#include "peer.h"

typedef struct rec {
    int opens, ends, closes, datas;
    tt_close_info_t info;
    uint64_t got;
    tt_conn_stats_t at_open, at_close;
    tt_conn_state_t state_at_close;
    int stats_r_at_close, tcpi_r_at_close;
    tt_conn_t *conn;
} rec_t;

static rec_t cli, srv;
static tt_loop_t *loop;
static tt_server_t *server;
static void (*cli_data_hook)(tt_conn_t *c, const void *d, size_t n);
static void (*srv_data_hook)(tt_conn_t *c, const void *d, size_t n);
static void (*srv_open_hook)(tt_conn_t *c);
static void (*srv_close_hook)(tt_conn_t *c);

static void on_open(tt_conn_t *c)
{
    rec_t *r = tt_conn_get_data(c);
    if (r == NULL) {
        r = &srv;
        tt_conn_set_data(c, r);
    }
    r->opens++;
    r->conn = c;
    cr_assert_eq(tt_conn_get_stats(c, &r->at_open), 0);
    if (r == &srv && srv_open_hook)
        srv_open_hook(c);
}
static void on_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    rec_t *r = tt_conn_get_data(c);
    (void)pending;
    r->datas++;
    r->got += n;
    if (r == &cli && cli_data_hook)
        cli_data_hook(c, d, n);
    if (r == &srv && srv_data_hook)
        srv_data_hook(c, d, n);
}
static void on_end(tt_conn_t *c)
{
    rec_t *r = tt_conn_get_data(c);
    r->ends++;
}
static void on_close(tt_conn_t *c, const tt_close_info_t *info)
{
    rec_t *r = tt_conn_get_data(c);
    tt_tcp_info_t ti;
    r->closes++;
    r->info = *info;
    r->state_at_close = tt_conn_state(c);
    r->stats_r_at_close = tt_conn_get_stats(c, &r->at_close);
    r->tcpi_r_at_close = tt_conn_get_tcp_info(c, &ti);
    if (r == &srv && srv_close_hook)
        srv_close_hook(c);
    r->conn = NULL;
    if (r == &srv && server != NULL) {
        tt_server_close(server);
        server = NULL;
    }
}

static tt_conn_handlers_t H = {.on_open = on_open, .on_data = on_data, .on_end = on_end,
                               .on_close = on_close};

static tt_addr_t start_server(const tt_server_opts_t *o)
{
    tt_addr_t any = th_loopback(0), addr;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, o, &H, NULL, &server), 0);
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    return addr;
}

static const char *fmt(const tt_addr_t *a, char *buf)
{
    if (tt_addr_format(a, buf, TT_ADDR_STRLEN) < 0)
        strcpy(buf, "?");
    return buf;
}

/* ---- bytes, packets, addresses ----------------------------------------------- */

/* Three rounds: the client sends 100, 200 and 300 bytes, each only after the echo
 * of the previous one came back, so every send finds an empty queue and is one
 * write, and every echo is one write of what one read brought. */
static tt_conn_stats_t cli_live, srv_live;
static char big[300];

static void srv_echo(tt_conn_t *c, const void *d, size_t n)
{
    cr_assert_eq(tt_send(c, d, n), 0);
    cr_assert_eq(tt_conn_get_stats(c, &srv_live), 0);
}

static void cli_next_round(tt_conn_t *c, const void *d, size_t n)
{
    (void)d, (void)n;
    if (cli.got == 100) {
        cr_assert_eq(tt_send(c, big, 200), 0);
    } else if (cli.got == 300) {
        cr_assert_eq(tt_send(c, big, 300), 0);
    } else if (cli.got == 600) {
        cr_assert_eq(tt_conn_get_stats(c, &cli_live), 0);
        cr_assert_eq(tt_end(c, NULL, 0), 0);
    }
}

Test(stats, bytes_packets_and_addresses_match_the_traffic)
{
    tt_conn_t *c;
    char a[TT_ADDR_STRLEN], b[TT_ADDR_STRLEN];
    tt_addr_t addr = start_server(NULL);
    memset(big, 's', sizeof(big));
    srv_data_hook = srv_echo;
    cli_data_hook = cli_next_round;
    cr_assert_eq(tt_connect(loop, &addr, NULL, &H, &cli, &c), 0);
    cr_assert_eq(tt_send(c, big, 100), 0);
    th_run(loop, 5000);

    cr_expect_eq(cli.got, 600);
    /* Client: three writes out; what came in was read in cli.datas reads. */
    cr_expect_eq(cli_live.bytes_out, 600, "client bytes_out %llu",
                 (unsigned long long)cli_live.bytes_out);
    cr_expect_eq(cli_live.bytes_in, 600);
    cr_expect_eq(cli_live.packets_out, 3, "client packets_out %llu",
                 (unsigned long long)cli_live.packets_out);
    cr_expect_eq(cli_live.packets_in, (uint64_t)cli.datas, "client packets_in %llu, reads %d",
                 (unsigned long long)cli_live.packets_in, cli.datas);
    cr_expect_eq(cli_live.bytes_queued_total, 600);
    cr_expect_eq(cli_live.queued_bytes, 0);
    cr_expect_eq(cli_live.id, tt_conn_id(c));
    /* Server: one echo write per read. */
    cr_expect_eq(srv_live.bytes_in, 600);
    cr_expect_eq(srv_live.bytes_out, 600);
    cr_expect_eq(srv_live.packets_in, (uint64_t)srv.datas);
    cr_expect_eq(srv_live.packets_out, (uint64_t)srv.datas, "server packets_out %llu, reads %d",
                 (unsigned long long)srv_live.packets_out, srv.datas);
    cr_expect_neq(srv_live.id, cli_live.id);
    /* Addresses: each side's local is the other's peer; the server's is the listener. */
    cr_expect_eq(cli_live.local.u.sa.sa_family, AF_INET);
    cr_expect_eq(tt_addr_port(&srv_live.peer), tt_addr_port(&cli_live.local),
                 "server sees peer %s, client is %s", fmt(&srv_live.peer, a),
                 fmt(&cli_live.local, b));
    cr_expect_str_eq(fmt(&srv_live.peer, a), fmt(&cli_live.local, b));
    cr_expect_str_eq(fmt(&cli_live.peer, a), fmt(&addr, b));
    cr_expect_str_eq(fmt(&srv_live.local, a), fmt(&addr, b));
    /* Once closing, addresses are unknown but counters stay readable. */
    cr_expect_eq(cli.stats_r_at_close, 0);
    cr_expect_eq(cli.at_close.local.len, 0);
    cr_expect_eq(cli.at_close.bytes_out, 600);
    cr_expect_eq(cli.tcpi_r_at_close, -ENOTCONN);
    cr_expect_eq(tt_conn_get_stats(NULL, &cli_live), -EINVAL);
    cr_expect_eq(tt_conn_get_stats(c, NULL), -EINVAL);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- state names ------------------------------------------------------------- */

static const char *seen[8];
static int nseen;

static void see(tt_conn_t *c)
{
    tt_conn_stats_t st;
    cr_assert_eq(tt_conn_get_stats(c, &st), 0);
    cr_assert_eq(st.state, tt_conn_state(c));
    if (nseen < 8)
        seen[nseen++] = tt_conn_state_name(st.state);
}

static void end_after_echo(tt_conn_t *c, const void *d, size_t n)
{
    (void)d, (void)n;
    see(c); /* open */
    cr_assert_eq(tt_end(c, NULL, 0), 0);
    see(c); /* write-closing: the FIN waits for the flush */
}

static void look_then_end_server(tt_timer_t *t, void *data)
{
    (void)data;
    see(cli.conn); /* write-closed: the FIN went, the peer (half-open) holds its own */
    cr_assert_not_null(srv.conn);
    cr_assert_eq(tt_conn_state(srv.conn), TT_STATE_READ_CLOSED, "server state %s",
                 tt_conn_state_name(tt_conn_state(srv.conn)));
    cr_assert_eq(tt_end(srv.conn, NULL, 0), 0);
    tt_timer_close(t);
}

static void cli_close_state(tt_conn_t *c, const tt_close_info_t *info)
{
    see(c);
    on_close(c, info);
}

Test(stats, state_names_move_from_open_through_write_closed_to_closing)
{
    tt_conn_t *c;
    tt_timer_t *t;
    tt_server_opts_t o = {.half_open = true};
    tt_addr_t addr = start_server(&o);
    tt_conn_handlers_t ch = H;
    ch.on_close = cli_close_state;
    srv_data_hook = srv_echo;
    cli_data_hook = end_after_echo;
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, &cli, &c), 0);
    see(c); /* connecting */
    cr_assert_eq(tt_send(c, "hi", 2), 0);
    cr_assert_eq(tt_timer_init(loop, &t, look_then_end_server, NULL), 0);
    cr_assert_eq(tt_timer_start(t, 200, 0), 0);
    th_run(loop, 5000);

    const char *want[] = {"connecting", "open", "write-closing", "write-closed", "closing"};
    cr_assert_eq(nseen, 5, "saw %d states", nseen);
    for (int i = 0; i < 5; i++)
        cr_expect_str_eq(seen[i], want[i], "state %d: %s, expected %s", i, seen[i], want[i]);
    cr_expect_str_eq(tt_conn_state_name(TT_STATE_READ_CLOSED), "read-closed");
    cr_expect_str_eq(tt_conn_state_name(TT_STATE_CLOSED), "closed");
    cr_expect_str_eq(tt_conn_state_name((tt_conn_state_t)99), "unknown");
    cr_expect_eq(cli.info.kind, TT_CLOSE_LOCAL_END);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- TCP_INFO ------------------------------------------------------------------- */

#define XFER ((size_t)256 * 1024)
static tt_tcp_info_t cli_ti;
static int tcpi_r;

static void srv_ack_when_all_in(tt_conn_t *c, const void *d, size_t n)
{
    (void)d, (void)n;
    if (srv.got == XFER)
        cr_assert_eq(tt_send(c, "ok", 2), 0);
}

static void cli_look_at_tcp_info(tt_conn_t *c, const void *d, size_t n)
{
    (void)d, (void)n;
    tcpi_r = tt_conn_get_tcp_info(c, &cli_ti);
    cr_assert_eq(tt_end(c, NULL, 0), 0);
}

Test(stats, tcp_info_reports_sane_rtt_segments_and_bytes)
{
    tt_conn_t *c;
    static char buf[XFER];
    tt_addr_t addr = start_server(NULL);
    srv_data_hook = srv_ack_when_all_in;
    cli_data_hook = cli_look_at_tcp_info;
    cr_assert_eq(tt_connect(loop, &addr, NULL, &H, &cli, &c), 0);
    cr_assert_eq(tt_send(c, buf, XFER), TT_SEND_FULL);
    th_run(loop, 5000);

    cr_assert_eq(tcpi_r, 0, "tt_conn_get_tcp_info: %s", tt_strerror(tcpi_r));
    cr_expect(cli_ti.rtt_us > 0 && cli_ti.rtt_us < 1000000, "rtt %u us on loopback",
              cli_ti.rtt_us);
    cr_expect_gt(cli_ti.segs_out, 1);
    cr_expect_gt(cli_ti.segs_in, 1);
    cr_expect_geq(cli_ti.bytes_acked, XFER, "bytes_acked %llu",
                  (unsigned long long)cli_ti.bytes_acked);
    cr_expect_eq(cli_ti.bytes_received, 2, "bytes_received %llu",
                 (unsigned long long)cli_ti.bytes_received);
    cr_expect_gt(cli_ti.snd_cwnd, 0);
    cr_expect_eq(cli_ti.outq_bytes, 0);
    cr_expect_eq(tt_conn_get_tcp_info(NULL, &cli_ti), -EINVAL);
    cr_assert_eq(tt_loop_close(loop), 0);
}

/* ---- the server's live connections --------------------------------------------- */

#define NCLI 3
static rec_t clis[NCLI];
static struct {
    uint64_t ids[NCLI];
    int naccepted;
    uint64_t listed[NCLI];
    int nlisted, visited, visited_early, visited_null, visited_nofn;
    size_t count_at_third;
    uint64_t accepted_total;
    size_t counts_at_close[NCLI];
    int ncloses;
    tt_conn_t *conns[NCLI];
} fe;

static int collect(tt_conn_t *c, void *arg)
{
    (void)arg;
    if (fe.nlisted < NCLI)
        fe.listed[fe.nlisted++] = tt_conn_id(c);
    return 0;
}

static int stop_at_first(tt_conn_t *c, void *arg)
{
    (void)c, (void)arg;
    return 1;
}

static void srv_open_list(tt_conn_t *c)
{
    tt_server_t *s = tt_conn_server(c);
    fe.conns[fe.naccepted] = c;
    fe.ids[fe.naccepted++] = tt_conn_id(c);
    if (fe.naccepted < NCLI)
        return;
    fe.count_at_third = tt_server_conn_count(s);
    fe.accepted_total = tt_server_accepted_total(s);
    fe.visited = tt_server_foreach(s, collect, NULL);
    fe.visited_early = tt_server_foreach(s, stop_at_first, NULL);
    fe.visited_null = tt_server_foreach(NULL, collect, NULL);
    fe.visited_nofn = tt_server_foreach(s, NULL, NULL);
    for (int i = 0; i < NCLI; i++)
        cr_assert_eq(tt_end(fe.conns[i], NULL, 0), 0);
}

static void srv_close_count(tt_conn_t *c)
{
    (void)c;
    fe.counts_at_close[fe.ncloses++] = tt_server_conn_count(server);
}

static void srv_close_multi(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)info;
    srv_close_count(c);
    if (fe.ncloses == NCLI) {
        tt_server_close(server);
        server = NULL;
    }
}

Test(stats, server_foreach_lists_live_connections_oldest_first)
{
    tt_addr_t any = th_loopback(0), addr;
    tt_conn_handlers_t sh = {.on_open = srv_open_list, .on_close = srv_close_multi};
    tt_conn_handlers_t ch = {.on_open = NULL, .on_end = NULL};
    tt_conn_t *c;
    cr_assert_eq(tt_loop_init(&loop), 0);
    cr_assert_eq(tt_server_listen(loop, &any, NULL, &sh, NULL, &server), 0);
    cr_assert_eq(tt_server_addr(server, &addr), 0);
    cr_expect_eq(tt_server_conn_count(server), 0);
    cr_expect_eq(tt_server_foreach(server, collect, NULL), 0);
    for (int i = 0; i < NCLI; i++)
        cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, &clis[i], &c), 0);
    th_run(loop, 5000);

    cr_expect_eq(fe.count_at_third, NCLI, "conn_count %zu", fe.count_at_third);
    cr_expect_eq(fe.accepted_total, NCLI);
    cr_expect_eq(fe.visited, NCLI, "foreach visited %d", fe.visited);
    cr_assert_eq(fe.nlisted, NCLI);
    for (int i = 0; i < NCLI; i++)
        cr_expect_eq(fe.listed[i], fe.ids[i], "entry %d: id %llu, accepted #%d was %llu", i,
                     (unsigned long long)fe.listed[i], i, (unsigned long long)fe.ids[i]);
    cr_expect_eq(fe.visited_early, 1);
    cr_expect_eq(fe.visited_null, -EINVAL);
    cr_expect_eq(fe.visited_nofn, -EINVAL);
    cr_assert_eq(fe.ncloses, NCLI);
    /* Each on_close sees the connection already gone from the list. */
    for (int i = 0; i < NCLI; i++)
        cr_expect_eq(fe.counts_at_close[i], (size_t)(NCLI - 1 - i), "close %d: count %zu", i,
                     fe.counts_at_close[i]);
    cr_assert_eq(tt_loop_close(loop), 0);
}
