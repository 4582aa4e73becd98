/* Open, data both ways, graceful end, and exactly one close per connection. */
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"

typedef struct {
    int opens, closes, ends;
    size_t got;
    char buf[256];
    tt_close_kind_t kind;
    tt_server_t *srv;
} counts_t;

static counts_t server_side, client_side;

static void srv_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)pending;
    cr_assert_geq(tt_send(c, d, n), 0);
}
static void srv_open(tt_conn_t *c) { (void)c; server_side.opens++; }
static void srv_end(tt_conn_t *c) { (void)c; server_side.ends++; }
static void srv_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    server_side.closes++;
    server_side.kind = info->kind;
    tt_server_close(server_side.srv); /* from inside a callback: allowed */
}

static void cli_open(tt_conn_t *c)
{
    client_side.opens++;
    cr_assert_eq(tt_send_text(c, "hello, tether"), 0);
}
static void cli_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)pending;
    memcpy(client_side.buf + client_side.got, d, n);
    client_side.got += n;
    if (client_side.got == strlen("hello, tether"))
        cr_assert_eq(tt_end(c, NULL, 0), 0);
}
static void cli_end(tt_conn_t *c) { (void)c; client_side.ends++; }
static void cli_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    client_side.closes++;
    client_side.kind = info->kind;
}

Test(echo, round_trip_then_graceful_end_closes_each_side_once)
{
    tt_loop_t *loop;
    tt_addr_t addr;
    tt_conn_t *c;
    tt_conn_handlers_t sh = {.on_open = srv_open, .on_data = srv_data, .on_end = srv_end,
                             .on_close = srv_close};
    tt_conn_handlers_t ch = {.on_open = cli_open, .on_data = cli_data, .on_end = cli_end,
                             .on_close = cli_close};

    cr_assert_eq(tt_loop_init(&loop), 0);
    server_side.srv = th_listen(loop, &sh, NULL, &addr);
    cr_assert_eq(tt_connect(loop, &addr, NULL, &ch, NULL, &c), 0);
    th_run(loop, 5000);

    cr_expect_eq(client_side.got, 13, "got %zu", client_side.got);
    cr_expect_eq(memcmp(client_side.buf, "hello, tether", 13), 0);
    cr_expect_eq(server_side.opens, 1);
    cr_expect_eq(client_side.opens, 1);
    cr_expect_eq(server_side.closes, 1, "server closes %d", server_side.closes);
    cr_expect_eq(client_side.closes, 1, "client closes %d", client_side.closes);
    cr_expect_eq(server_side.ends, 1);
    cr_expect_eq(client_side.ends, 1);
    cr_expect_eq(client_side.kind, TT_CLOSE_LOCAL_END, "client kind %s",
                 tt_close_kind_name(client_side.kind));
    cr_expect_eq(server_side.kind, TT_CLOSE_PEER_CLOSED, "server kind %s",
                 tt_close_kind_name(server_side.kind));
    cr_assert_eq(tt_loop_close(loop), 0);
}
