/* The reconnecting client against a server that goes away and comes back on the
 * same port: growing delays, reconnection, and what happens to unsent bytes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "peer.h"

#define MAX_EVENTS 32
#define STREAM ((size_t)32 * 1024 * 1024) /* far more than the socket buffers hold */
#define PIECE ((size_t)64 * 1024)           /* the stream goes as sends of this size */

typedef struct {
    tt_loop_t *loop;
    tt_addr_t addr; /* the server's port, kept across restarts */
    tt_server_t *srv;
    int attempts, connects, disconnects, give_ups, give_up_err;
    uint64_t delays[MAX_EVENTS], attempt_at[MAX_EVENTS];
    uint64_t lost_at;
    tt_close_info_t lost[MAX_EVENTS];
    int restart_at;  /* restart the server when this attempt starts */
    int srv_opens;
    tt_conn_t *srv_conn;
    uint64_t srv_got[4]; /* bytes received per server connection */
    long pattern_bad;    /* first mismatching offset on the second connection, or -1 */
    uint64_t resume_at;  /* stream offset the second connection starts from */
    bool done;
} state_t;

static state_t s;

static void srv_open(tt_conn_t *c)
{
    s.srv_conn = c;
    s.srv_opens++;
}
static void srv_data(tt_conn_t *c, const void *d, size_t n, size_t pending)
{
    (void)c, (void)pending;
    int i = s.srv_opens - 1;
    if (i == 1 && s.pattern_bad < 0) {
        /* The second connection carries the first one's unsent tail. */
        uint64_t off = s.resume_at + s.srv_got[1];
        long bad = th_pattern_check(d, n, off);
        if (bad >= 0)
            s.pattern_bad = (long)(s.srv_got[1] + (uint64_t)bad);
    }
    s.srv_got[i] += n;
}

static const tt_conn_handlers_t sh = {.on_open = srv_open, .on_data = srv_data};

static void listen_again(void)
{
    int r = tt_server_listen(s.loop, &s.addr, NULL, &sh, NULL, &s.srv);
    cr_assert_eq(r, 0, "listen on the same port again: %s", tt_strerror(r));
}

static void on_attempt(tt_client_t *cl, unsigned attempt, uint64_t delay_ms)
{
    (void)cl;
    cr_assert_eq(attempt, (unsigned)s.attempts + 1, "attempt %u after %d", attempt, s.attempts);
    s.delays[s.attempts] = delay_ms;
    s.attempt_at[s.attempts] = th_now_ms();
    s.attempts++;
    if (s.attempts == s.restart_at)
        listen_again(); /* the attempt starts right after this returns */
}
static void on_connected(tt_client_t *cl, tt_conn_t *c)
{
    (void)cl, (void)c;
    s.connects++;
    s.attempts = 0;
}
static void on_disconnected(tt_client_t *cl, const tt_close_info_t *info)
{
    (void)cl;
    if (s.disconnects < MAX_EVENTS)
        s.lost[s.disconnects] = *info;
    /* Whole sends only are kept: a send the kernel took part of is dropped, so
     * the next connection starts at the next send boundary. */
    if (s.disconnects == 0)
        s.resume_at = (info->bytes_written + PIECE - 1) / PIECE * PIECE;
    s.disconnects++;
    s.lost_at = th_now_ms();
}
static void on_give_up(tt_client_t *cl, int err)
{
    s.give_ups++;
    s.give_up_err = err;
    tt_client_close(cl);
}

static const tt_client_handlers_t events = {.on_attempt = on_attempt,
                                            .on_connected = on_connected,
                                            .on_disconnected = on_disconnected,
                                            .on_give_up = on_give_up};

static void setup(void)
{
    memset(&s, 0, sizeof(s));
    s.pattern_bad = -1;
    cr_assert_eq(tt_loop_init(&s.loop), 0);
    s.srv = th_listen(s.loop, &sh, NULL, &s.addr);
}

static bool run_until(bool (*cond)(void), uint64_t ms)
{
    uint64_t end = th_now_ms() + ms;
    while (!cond() && th_now_ms() < end)
        tt_loop_run(s.loop, TT_RUN_ONCE);
    return cond();
}

static bool connected_once(void) { return s.connects == 1; }
static bool connected_twice(void) { return s.connects == 2; }

/* Stop the server: no listener, and its connection gone. */
static void stop_server(void)
{
    tt_server_close(s.srv);
    s.srv = NULL;
    tt_destroy(s.srv_conn, 0);
}

Test(reconnect, attempts_back_off_then_reconnect_when_the_server_returns)
{
    tt_client_t *cl;
    tt_client_opts_t o = {.min_delay_ms = 50, .max_delay_ms = 400};

    setup();
    s.restart_at = 5; /* four refused attempts, the fifth finds the server back */
    cr_assert_eq(tt_client_start(s.loop, "127.0.0.1", tt_addr_port(&s.addr), &o, &events, NULL,
                                 NULL, &cl),
                 0);
    cr_assert_eq(s.attempts, 0, "on_attempt ran inside tt_client_start");
    cr_assert(run_until(connected_once, 2000));
    cr_assert_eq(s.delays[0], 0, "the first attempt waits %llu ms",
                 (unsigned long long)s.delays[0]);

    stop_server();
    cr_assert(run_until(connected_twice, 5000), "attempts %d, connects %d", s.attempts,
              s.connects);
    cr_assert_eq(s.lost[0].kind, TT_CLOSE_PEER_CLOSED, "%s", tt_close_kind_name(s.lost[0].kind));
    static const uint64_t want[] = {50, 100, 200, 400, 400};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(s.lost[1 + i].error, -ECONNREFUSED, "attempt %d: %s", i + 1,
                     tt_err_name(s.lost[1 + i].error));
    /* on_connected reset the count; delays of the five attempts were recorded first. */
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(s.delays[i], want[i], "attempt %d waited %llu ms, want %llu", i + 1,
                     (unsigned long long)s.delays[i], (unsigned long long)want[i]);
    }
    for (int i = 1; i < 5; i++) {
        uint64_t gap = s.attempt_at[i] - s.attempt_at[i - 1];
        cr_assert_geq(gap, want[i], "measured gap before attempt %d: %llu ms", i + 1,
                      (unsigned long long)gap);
        cr_assert_lt(gap, want[i] + 60, "measured gap before attempt %d: %llu ms", i + 1,
                     (unsigned long long)gap);
    }
    cr_assert_eq(s.disconnects, 5, "disconnects %d", s.disconnects);
    cr_assert_eq(tt_client_attempts(cl), 0);
    cr_assert_eq(tt_client_close(cl), 0);
    tt_server_close(s.srv);
    th_run(s.loop, 2000);
    cr_assert_eq(tt_loop_close(s.loop), 0);
}

static tt_client_t *stream_client(bool keep)
{
    tt_client_t *cl;
    tt_client_opts_t o = {.min_delay_ms = 50, .keep_unsent = keep};
    char *buf = malloc(STREAM);

    cr_assert_eq(tt_client_start(s.loop, "localhost", tt_addr_port(&s.addr), &o, &events, NULL,
                                 NULL, &cl),
                 0);
    cr_assert(run_until(connected_once, 2000));
    /* The server does not read: most of the stream stays in tether's queue. */
    tt_conn_read_stop(s.srv_conn);
    th_pattern(buf, STREAM, 0);
    for (size_t off = 0; off < STREAM; off += PIECE)
        cr_assert_geq(tt_client_send(cl, buf + off, PIECE), 0);
    free(buf);
    for (uint64_t end = th_now_ms() + 300; th_now_ms() < end;)
        tt_loop_run(s.loop, TT_RUN_NOWAIT);
    /* The server resets the connection with the client's bytes unread. */
    tt_destroy(s.srv_conn, TT_DESTROY_RESET);
    return cl;
}

static bool second_got_tail(void)
{
    return s.connects == 2 && s.srv_got[1] >= STREAM - s.resume_at;
}

Test(reconnect, kept_bytes_go_out_on_the_next_connection)
{
    setup();
    tt_client_t *cl = stream_client(true);
    cr_assert(run_until(second_got_tail, 10000), "connects %d, got %llu", s.connects,
              (unsigned long long)s.srv_got[1]);
    const tt_close_info_t *l = &s.lost[0];
    cr_assert_eq(l->kind, TT_CLOSE_PEER_RESET, "kind %s", tt_close_kind_name(l->kind));
    cr_assert_gt(l->bytes_unsent, 0);
    cr_assert_eq(l->bytes_written + l->bytes_unsent, STREAM, "written %llu + unsent %llu",
                 (unsigned long long)l->bytes_written, (unsigned long long)l->bytes_unsent);
    for (uint64_t end = th_now_ms() + 100; th_now_ms() < end;)
        tt_loop_run(s.loop, TT_RUN_NOWAIT);
    /* The second connection starts at a send boundary: the part of the send the
     * kernel had started on is not re-sent (it would be half a message there). */
    cr_assert_eq(s.srv_got[1], STREAM - s.resume_at, "second connection got %llu, from %llu",
                 (unsigned long long)s.srv_got[1], (unsigned long long)s.resume_at);
    cr_assert_lt(l->bytes_unsent - s.srv_got[1], PIECE, "dropped %llu bytes of unsent %llu",
                 (unsigned long long)(l->bytes_unsent - s.srv_got[1]),
                 (unsigned long long)l->bytes_unsent);
    cr_assert_eq(s.pattern_bad, -1, "byte %ld of the second connection is wrong", s.pattern_bad);
    cr_assert_eq(tt_client_close(cl), 0);
    tt_server_close(s.srv);
    th_run(s.loop, 2000);
    cr_assert_eq(tt_loop_close(s.loop), 0);
}

Test(reconnect, dropped_bytes_are_reported_and_not_resent)
{
    setup();
    tt_client_t *cl = stream_client(false);
    cr_assert(run_until(connected_twice, 5000));
    for (uint64_t end = th_now_ms() + 200; th_now_ms() < end;)
        tt_loop_run(s.loop, TT_RUN_NOWAIT);
    const tt_close_info_t *l = &s.lost[0];
    cr_assert_gt(l->bytes_unsent, 0);
    cr_assert_eq(l->bytes_written + l->bytes_unsent, STREAM);
    cr_assert_eq(s.srv_got[1], 0, "the second connection got %llu bytes",
                 (unsigned long long)s.srv_got[1]);
    cr_assert_eq(tt_client_close(cl), 0);
    tt_server_close(s.srv);
    th_run(s.loop, 2000);
    cr_assert_eq(tt_loop_close(s.loop), 0);
}

static bool gave_up(void) { return s.give_ups == 1; }

Test(reconnect, gives_up_after_max_attempts)
{
    tt_client_t *cl;
    tt_client_opts_t o = {.min_delay_ms = 20, .max_attempts = 3};

    setup();
    tt_server_close(s.srv); /* nobody listens */
    cr_assert_eq(tt_client_start(s.loop, "127.0.0.1", tt_addr_port(&s.addr), &o, &events, NULL,
                                 NULL, &cl),
                 0);
    cr_assert(run_until(gave_up, 3000));
    cr_assert_eq(s.attempts, 3, "attempts %d", s.attempts);
    cr_assert_eq(s.disconnects, 3);
    cr_assert_eq(s.give_up_err, -ECONNREFUSED, "%s", tt_err_name(s.give_up_err));
    cr_assert_eq(s.delays[1], 20);
    cr_assert_eq(s.delays[2], 40);
    th_run(s.loop, 1000); /* the client closed itself in on_give_up */
    cr_assert_eq(tt_loop_close(s.loop), 0);
}

Test(reconnect, jitter_keeps_each_delay_within_its_band)
{
    tt_client_t *cl;
    tt_client_opts_t o = {.min_delay_ms = 40, .max_delay_ms = 160, .jitter_pct = 50,
                          .max_attempts = 5};

    setup();
    tt_server_close(s.srv);
    cr_assert_eq(tt_client_start(s.loop, "127.0.0.1", tt_addr_port(&s.addr), &o, &events, NULL,
                                 NULL, &cl),
                 0);
    cr_assert(run_until(gave_up, 3000));
    static const uint64_t full[] = {0, 40, 80, 160, 160};
    for (int i = 1; i < 5; i++) {
        cr_assert_leq(s.delays[i], full[i], "attempt %d: %llu", i + 1,
                      (unsigned long long)s.delays[i]);
        cr_assert_geq(s.delays[i], full[i] / 2, "attempt %d: %llu", i + 1,
                      (unsigned long long)s.delays[i]);
    }
    th_run(s.loop, 1000);
    cr_assert_eq(tt_loop_close(s.loop), 0);
}

Test(reconnect, sends_between_connections_are_held_when_keeping)
{
    tt_client_t *cl;
    tt_client_opts_t keep = {.min_delay_ms = 30, .keep_unsent = true};
    tt_client_opts_t drop = {.min_delay_ms = 30};

    setup();
    s.restart_at = 2;
    cr_assert_eq(tt_client_start(s.loop, "127.0.0.1", tt_addr_port(&s.addr), &drop, &events,
                                 NULL, NULL, &cl),
                 0);
    cr_assert(run_until(connected_once, 2000));
    stop_server();
    for (uint64_t end = th_now_ms() + 10; th_now_ms() < end;)
        tt_loop_run(s.loop, TT_RUN_NOWAIT);
    cr_assert_null(tt_client_conn(cl));
    cr_assert_eq(tt_client_send(cl, "x", 1), -ENOTCONN);
    cr_assert_eq(tt_client_close(cl), 0);
    th_run(s.loop, 1000);

    memset(&s.attempts, 0, sizeof(s) - offsetof(state_t, attempts));
    s.pattern_bad = -1;
    s.restart_at = 2;
    s.srv = th_listen(s.loop, &sh, NULL, &s.addr);
    cr_assert_eq(tt_client_start(s.loop, "127.0.0.1", tt_addr_port(&s.addr), &keep, &events,
                                 NULL, NULL, &cl),
                 0);
    cr_assert(run_until(connected_once, 2000));
    stop_server();
    for (uint64_t end = th_now_ms() + 10; th_now_ms() < end;)
        tt_loop_run(s.loop, TT_RUN_NOWAIT);
    cr_assert_null(tt_client_conn(cl));
    cr_assert_eq(tt_client_send(cl, "held", 4), 0);
    s.attempts = 0;
    s.restart_at = 1;
    cr_assert(run_until(connected_twice, 2000));
    for (uint64_t end = th_now_ms() + 50; th_now_ms() < end;)
        tt_loop_run(s.loop, TT_RUN_NOWAIT);
    cr_assert_eq(s.srv_got[1], 4, "the next connection got %llu bytes",
                 (unsigned long long)s.srv_got[1]);
    cr_assert_eq(tt_client_close(cl), 0);
    tt_server_close(s.srv);
    th_run(s.loop, 1000);
    cr_assert_eq(tt_loop_close(s.loop), 0);
}
