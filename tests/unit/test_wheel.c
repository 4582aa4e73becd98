/* The hierarchical timing wheel (src/core/timer_wheel.h), driven directly with
 * synthetic ticks: exact firing tick at every level and block boundary, the
 * next_expiry lower bound, re-entrant callbacks, large jumps and the full span.
 * A randomized run checks it against a brute-force model. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h" /* tt__container_of */
#include "core/timer_wheel.h"

typedef struct tnode {
    tt__wnode_t node;
    int id;
    int fires;
    uint64_t fired_at; /* wheel tick seen by the callback */
} tnode_t;

/* One wheel per test (the wheel is 16 KiB of list heads: keep it off the stack). */
static tt__wheel_t *W;

/* Every fire in order, for tests that check ordering. */
#define LOG_MAX 4096
static int fire_log[LOG_MAX];
static uint64_t fire_tick[LOG_MAX];
static size_t nlog;

static void wheel_setup(void)
{
    W = malloc(sizeof(*W));
    cr_assert_not_null(W);
    nlog = 0;
}

static void wheel_teardown(void) { free(W); }

TestSuite(wheel, .init = wheel_setup, .fini = wheel_teardown);

static void record(tt__wnode_t *n)
{
    tnode_t *t = tt__container_of(n, tnode_t, node);
    t->fires++;
    t->fired_at = W->now;
    if (nlog < LOG_MAX) {
        fire_log[nlog] = t->id;
        fire_tick[nlog] = W->now;
    }
    nlog++;
}

static void tnode_init(tnode_t *t, int id, tt__wnode_cb cb)
{
    memset(t, 0, sizeof(*t));
    t->id = id;
    tt__wnode_init(&t->node, cb);
}

Test(wheel, empty_wheel_has_no_next_expiry_and_advances_without_firing)
{
    tt__wheel_init(W, 1000);
    cr_assert_eq(W->count, 0);
    cr_assert_eq(tt__wheel_next_expiry(W), UINT64_MAX);
    cr_assert_eq(tt__wheel_advance(W, 5000), 0);
    cr_assert_eq(W->now, 5000, "now %llu", (unsigned long long)W->now);
    /* Advancing to the past or the present is a no-op. */
    cr_assert_eq(tt__wheel_advance(W, 10), 0);
    cr_assert_eq(W->now, 5000);
}

Test(wheel, start_stop_restart_keep_count_and_active_flag)
{
    tnode_t a, b;
    tnode_init(&a, 1, record);
    tnode_init(&b, 2, record);
    tt__wheel_init(W, 0);

    cr_assert(!tt__wnode_active(&a.node));
    tt__wheel_stop(W, &a.node); /* stopping an inactive node does nothing */
    cr_assert_eq(W->count, 0);

    tt__wheel_start(W, &a.node, 100);
    cr_assert(tt__wnode_active(&a.node));
    cr_assert_eq(W->count, 1);
    tt__wheel_start(W, &a.node, 70000); /* restart moves it, does not add it twice */
    cr_assert_eq(W->count, 1, "count %llu", (unsigned long long)W->count);
    cr_assert_eq(a.node.expiry, 70000);
    tt__wheel_start(W, &b.node, 100);
    cr_assert_eq(W->count, 2);

    tt__wheel_stop(W, &a.node);
    cr_assert(!tt__wnode_active(&a.node));
    cr_assert_eq(W->count, 1);
    tt__wheel_stop(W, &a.node);
    cr_assert_eq(W->count, 1);

    /* Only b fires; a, restarted away from 100 and then stopped, never does. */
    cr_assert_eq(tt__wheel_advance(W, 200000), 1);
    cr_assert_eq(a.fires, 0);
    cr_assert_eq(b.fires, 1);
    cr_assert_eq(b.fired_at, 100, "fired at %llu", (unsigned long long)b.fired_at);
    cr_assert_eq(W->count, 0);
    cr_assert_eq(tt__wheel_next_expiry(W), UINT64_MAX);
}

/* Start one node `delta` ticks after `now0`; one tick early nothing fires, at the
 * expiry tick it fires exactly once, and next_expiry never points past it. */
static void check_exact(uint64_t now0, uint64_t delta)
{
    tnode_t t;
    uint64_t exp = now0 + delta;

    tnode_init(&t, 1, record);
    tt__wheel_init(W, now0);
    tt__wheel_start(W, &t.node, exp);

    uint64_t next = tt__wheel_next_expiry(W);
    cr_assert(next <= exp && next > now0,
              "now0 %llu delta %llu: next_expiry %llu outside (now0, %llu]",
              (unsigned long long)now0, (unsigned long long)delta, (unsigned long long)next,
              (unsigned long long)exp);
    if ((exp >> 8) == (now0 >> 8))
        cr_assert_eq(next, exp, "now0 %llu delta %llu: same block but next %llu",
                     (unsigned long long)now0, (unsigned long long)delta,
                     (unsigned long long)next);

    uint64_t early = tt__wheel_advance(W, exp - 1);
    cr_assert_eq(early, 0, "now0 %llu delta %llu: %llu fired one tick early",
                 (unsigned long long)now0, (unsigned long long)delta,
                 (unsigned long long)early);
    cr_assert(tt__wnode_active(&t.node));
    next = tt__wheel_next_expiry(W);
    cr_assert_eq(next, exp, "now0 %llu delta %llu: one tick before, next %llu != %llu",
                 (unsigned long long)now0, (unsigned long long)delta, (unsigned long long)next,
                 (unsigned long long)exp);

    uint64_t fired = tt__wheel_advance(W, exp);
    cr_assert_eq(fired, 1, "now0 %llu delta %llu: fired %llu", (unsigned long long)now0,
                 (unsigned long long)delta, (unsigned long long)fired);
    cr_assert_eq(t.fires, 1);
    cr_assert_eq(t.fired_at, exp, "now0 %llu delta %llu: fired at %llu, expiry %llu",
                 (unsigned long long)now0, (unsigned long long)delta,
                 (unsigned long long)t.fired_at, (unsigned long long)exp);
    cr_assert(!tt__wnode_active(&t.node));
    cr_assert_eq(W->count, 0);
}

static const uint64_t start_points[] = {
    0,     1,     250,   255,   256,   257,   65530, 65535, 65536,
    (1u << 24) - 3, (1u << 24), ((uint64_t)1 << 32) - 7, 0x123456789aULL,
};

Test(wheel, fires_exactly_at_expiry_at_level_0)
{
    static const uint64_t deltas[] = {1, 2, 5, 6, 100, 254, 255};
    for (size_t i = 0; i < sizeof(start_points) / sizeof(start_points[0]); i++)
        for (size_t j = 0; j < sizeof(deltas) / sizeof(deltas[0]); j++)
            check_exact(start_points[i], deltas[j]);
}

Test(wheel, fires_exactly_at_expiry_across_level_1_and_2_boundaries)
{
    static const uint64_t deltas[] = {256, 257, 300, 511, 512, 65535, 65536, 65537, 1000000};
    for (size_t i = 0; i < sizeof(start_points) / sizeof(start_points[0]); i++)
        for (size_t j = 0; j < sizeof(deltas) / sizeof(deltas[0]); j++)
            check_exact(start_points[i], deltas[j]);
}

Test(wheel, fires_exactly_at_expiry_across_level_3_boundaries)
{
    static const uint64_t deltas[] = {(1u << 24) - 1, 1u << 24, (1u << 24) + 1,
                                      (1u << 24) + 65536 + 256 + 1};
    static const uint64_t starts[] = {0, 250, 65530, (1u << 24) - 3, 0x123456789aULL};
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
        for (size_t j = 0; j < sizeof(deltas) / sizeof(deltas[0]); j++)
            check_exact(starts[i], deltas[j]);
}

Test(wheel, fires_exactly_at_the_end_of_the_full_span)
{
    /* TT_TIMEOUT_MAX (2^32) reaches past the top level: the top digit wraps round
     * to the current one, so the node is cascaded early and re-placed.
     * Each case walks 2^24 blocks, so three representative starts: aligned, near a
     * level-1 boundary, and an arbitrary large time. */
    check_exact(0, (uint64_t)1 << 32);
    check_exact(65530, ((uint64_t)1 << 32) - 1);
    check_exact(0x123456789aULL, (uint64_t)1 << 32);
}

Test(wheel, expiry_beyond_the_span_still_fires_at_its_tick)
{
    /* Not reachable through the public API (timeouts stop at 2^32), but the wheel
     * documents that such nodes are re-placed until due. */
    check_exact(12345, ((uint64_t)1 << 32) + ((uint64_t)5 << 24) + 77);
}

Test(wheel, expiry_not_after_now_fires_on_the_next_tick)
{
    static const uint64_t nows[] = {100, 255, 65535, (1u << 24) - 1};
    for (size_t i = 0; i < sizeof(nows) / sizeof(nows[0]); i++) {
        uint64_t now = nows[i];
        tnode_t due, past, zero;
        tnode_init(&due, 1, record);
        tnode_init(&past, 2, record);
        tnode_init(&zero, 3, record);
        tt__wheel_init(W, now);
        tt__wheel_start(W, &due.node, now);
        tt__wheel_start(W, &past.node, now - 50);
        tt__wheel_start(W, &zero.node, 0);
        cr_assert_eq(tt__wheel_next_expiry(W), now + 1, "now %llu: next %llu",
                     (unsigned long long)now, (unsigned long long)tt__wheel_next_expiry(W));
        cr_assert_eq(tt__wheel_advance(W, now), 0); /* no tick passed */
        uint64_t fired = tt__wheel_advance(W, now + 1);
        cr_assert_eq(fired, 3, "now %llu: fired %llu", (unsigned long long)now,
                     (unsigned long long)fired);
        cr_assert_eq(due.fired_at, now + 1, "now %llu: due fired at %llu",
                     (unsigned long long)now, (unsigned long long)due.fired_at);
        cr_assert_eq(past.fired_at, now + 1);
        cr_assert_eq(zero.fired_at, now + 1);
        cr_assert_eq(W->count, 0);
    }
}

Test(wheel, next_expiry_is_exact_within_the_block_and_a_lower_bound_beyond)
{
    tnode_t near, far;
    tnode_init(&near, 1, record);
    tnode_init(&far, 2, record);
    tt__wheel_init(W, 1000); /* block 768..1023 */

    tt__wheel_start(W, &far.node, 1000 + 70000);
    uint64_t next = tt__wheel_next_expiry(W);
    cr_assert(next > 1000 && next <= 71000, "far only: next %llu", (unsigned long long)next);

    tt__wheel_start(W, &near.node, 1010);
    cr_assert_eq(tt__wheel_next_expiry(W), 1010, "next %llu",
                 (unsigned long long)tt__wheel_next_expiry(W));
    tt__wheel_stop(W, &near.node);
    next = tt__wheel_next_expiry(W);
    cr_assert(next > 1000 && next <= 71000, "after stop: next %llu", (unsigned long long)next);
    tt__wheel_stop(W, &far.node);
    cr_assert_eq(tt__wheel_next_expiry(W), UINT64_MAX);
}

Test(wheel, nodes_in_one_slot_fire_in_start_order)
{
    tnode_t n[8];
    tt__wheel_init(W, 0);
    for (int i = 0; i < 8; i++) {
        tnode_init(&n[i], i, record);
        tt__wheel_start(W, &n[i].node, 300);
    }
    cr_assert_eq(tt__wheel_advance(W, 300), 8);
    cr_assert_eq(nlog, 8, "log %zu", nlog);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(fire_log[i], i, "position %d holds node %d", i, fire_log[i]);
}

/* ---- callbacks that change the wheel ------------------------------------------ */

static tnode_t *victims[4];
static int nvictims;

static void stop_victims(tt__wnode_t *n)
{
    record(n);
    for (int i = 0; i < nvictims; i++)
        tt__wheel_stop(W, &victims[i]->node);
}

Test(wheel, callback_stopping_nodes_pending_in_the_same_slot_prevents_their_firing)
{
    tnode_t killer, a, b, c, later;
    tnode_init(&killer, 0, stop_victims);
    tnode_init(&a, 1, record);
    tnode_init(&b, 2, record);
    tnode_init(&c, 3, record);
    tnode_init(&later, 4, record);
    tt__wheel_init(W, 250);

    /* All five at 260 (across the 256 boundary: cascaded together); the killer
     * fires first and stops a and c in the same slot, and `later` in another. */
    tt__wheel_start(W, &killer.node, 260);
    tt__wheel_start(W, &a.node, 260);
    tt__wheel_start(W, &b.node, 260);
    tt__wheel_start(W, &c.node, 260);
    tt__wheel_start(W, &later.node, 5000);
    victims[0] = &a;
    victims[1] = &c;
    victims[2] = &later;
    nvictims = 3;

    uint64_t fired = tt__wheel_advance(W, 10000);
    cr_assert_eq(fired, 2, "fired %llu", (unsigned long long)fired);
    cr_assert_eq(killer.fires, 1);
    cr_assert_eq(b.fires, 1);
    cr_assert_eq(b.fired_at, 260);
    cr_assert_eq(a.fires + c.fires + later.fires, 0, "a %d c %d later %d", a.fires, c.fires,
                 later.fires);
    cr_assert_eq(W->count, 0, "count %llu", (unsigned long long)W->count);
}

static int self_restarts;
static uint64_t self_step;

static void restart_self(tt__wnode_t *n)
{
    record(n);
    if (self_restarts > 0) {
        self_restarts--;
        tt__wheel_start(W, n, W->now + self_step);
    }
}

Test(wheel, callback_restarting_itself_fires_again_at_each_new_expiry)
{
    tnode_t t;
    tnode_init(&t, 7, restart_self);
    tt__wheel_init(W, 200);
    self_restarts = 5;
    self_step = 30; /* 230, 260 (crosses 256), 290, ... */
    tt__wheel_start(W, &t.node, 230);

    uint64_t fired = tt__wheel_advance(W, 100000);
    cr_assert_eq(fired, 6, "fired %llu", (unsigned long long)fired);
    cr_assert_eq(nlog, 6);
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(fire_tick[i], 230 + 30 * i, "fire %zu at %llu", i,
                     (unsigned long long)fire_tick[i]);
    cr_assert(!tt__wnode_active(&t.node));
    cr_assert_eq(W->count, 0);
}

Test(wheel, callback_restarting_itself_with_zero_delay_fires_on_each_following_tick)
{
    tnode_t t;
    tnode_init(&t, 7, restart_self);
    tt__wheel_init(W, 250);
    self_restarts = 10;
    self_step = 0; /* due "now": the next tick, within the same advance */
    tt__wheel_start(W, &t.node, 252);

    uint64_t fired = tt__wheel_advance(W, 258);
    /* Ticks 252..258: seven fires; the rest wait for the next advance. */
    cr_assert_eq(fired, 7, "fired %llu", (unsigned long long)fired);
    for (size_t i = 0; i < 7; i++)
        cr_assert_eq(fire_tick[i], 252 + i, "fire %zu at %llu", i,
                     (unsigned long long)fire_tick[i]);
    cr_assert(tt__wnode_active(&t.node));
    cr_assert_eq(tt__wheel_advance(W, 1000), 4);
    cr_assert_eq(W->count, 0);
}

static tnode_t *chained;

static void start_chained(tt__wnode_t *n)
{
    record(n);
    tt__wheel_start(W, &chained->node, W->now + 1000);
}

Test(wheel, callback_starting_another_node_gets_it_fired_in_the_same_advance)
{
    tnode_t first, second;
    tnode_init(&first, 1, start_chained);
    tnode_init(&second, 2, record);
    chained = &second;
    tt__wheel_init(W, 65000);
    tt__wheel_start(W, &first.node, 65530);
    cr_assert_eq(tt__wheel_advance(W, 70000), 2);
    cr_assert_eq(second.fired_at, 66530, "second at %llu", (unsigned long long)second.fired_at);
}

/* ---- large jumps ------------------------------------------------------------- */

Test(wheel, jump_of_hours_fires_every_spread_timer_once_at_its_tick_in_order)
{
    enum { N = 2000 };
    static tnode_t n[N];
    const uint64_t base = 987654321, span = 3 * 3600 * 1000; /* three hours */

    tt__wheel_init(W, base);
    for (int i = 0; i < N; i++) {
        tnode_init(&n[i], i, record);
        /* A scrambled but deterministic spread over the span, some sharing ticks. */
        uint64_t off = 1 + ((uint64_t)i * 2654435761u) % span;
        tt__wheel_start(W, &n[i].node, base + off);
    }
    uint64_t fired = tt__wheel_advance(W, base + 4 * 3600 * 1000);
    cr_assert_eq(fired, N, "fired %llu of %d", (unsigned long long)fired, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(n[i].fires, 1, "node %d fired %d times", i, n[i].fires);
        cr_assert_eq(n[i].fired_at, n[i].node.expiry, "node %d at %llu, expiry %llu", i,
                     (unsigned long long)n[i].fired_at, (unsigned long long)n[i].node.expiry);
    }
    for (size_t i = 1; i < N; i++)
        cr_assert(fire_tick[i - 1] <= fire_tick[i], "fire %zu at %llu after %llu", i,
                  (unsigned long long)fire_tick[i], (unsigned long long)fire_tick[i - 1]);
    cr_assert_eq(W->count, 0);
}

Test(wheel, many_nodes_started_and_half_stopped_leave_exact_counts)
{
    enum { N = 1 << 20 };
    tnode_t *n = malloc(sizeof(*n) * N);
    cr_assert_not_null(n);
    tt__wheel_init(W, 42);
    for (int i = 0; i < N; i++) {
        tnode_init(&n[i], i, record);
        tt__wheel_start(W, &n[i].node, 43 + ((uint64_t)i * 40503u) % N);
    }
    cr_assert_eq(W->count, N, "count %llu", (unsigned long long)W->count);
    for (int i = 0; i < N; i += 2)
        tt__wheel_stop(W, &n[i].node);
    cr_assert_eq(W->count, N / 2, "count %llu", (unsigned long long)W->count);
    uint64_t fired = tt__wheel_advance(W, 43 + N);
    cr_assert_eq(fired, N / 2, "fired %llu", (unsigned long long)fired);
    int wrong = 0;
    for (int i = 0; i < N; i++)
        if (n[i].fires != (i % 2) || (n[i].fires && n[i].fired_at != n[i].node.expiry))
            wrong++;
    cr_assert_eq(wrong, 0, "%d nodes fired wrongly", wrong);
    cr_assert_eq(W->count, 0);
    free(n);
}

/* ---- randomized comparison with a brute-force model --------------------------- */

static uint64_t rng_state;
static uint64_t rng(void)
{
    /* xorshift64*: deterministic for a given seed. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

enum { MODEL_N = 512 };
static tnode_t mnodes[MODEL_N];
static struct {
    int active;
    uint64_t due; /* the tick it must fire at */
} model[MODEL_N];

static void model_fire(tt__wnode_t *n)
{
    tnode_t *t = tt__container_of(n, tnode_t, node);
    t->fires++;
    t->fired_at = W->now;
}

static uint64_t random_delta(void)
{
    switch (rng() % 10) {
    case 0:
        return 0; /* due now: next tick */
    case 1:
    case 2:
    case 3:
        return rng() % 300;
    case 4:
    case 5:
        return rng() % 70000;
    case 6:
        return rng() % (1u << 25);
    case 7:
        return rng() % ((uint64_t)1 << 33) > ((uint64_t)1 << 32) ? (uint64_t)1 << 32
                                                                   : rng() % 600000;
    default:
        return 1 + rng() % 1000;
    }
}

static uint64_t random_step(void)
{
    switch (rng() % 20) {
    case 0:
        return 100000 + rng() % 5000000; /* a jump of minutes to an hour */
    case 1:
    case 2:
        return rng() % 70000;
    case 3:
        return 0;
    default:
        return 1 + rng() % 400;
    }
}

static void run_model(uint64_t seed, uint64_t now0, int ops)
{
    rng_state = seed;
    tt__wheel_init(W, now0);
    for (int i = 0; i < MODEL_N; i++) {
        tnode_init(&mnodes[i], i, model_fire);
        model[i].active = 0;
    }

    for (int op = 0; op < ops; op++) {
        uint64_t r = rng() % 10;
        int i = (int)(rng() % MODEL_N);
        if (r < 5) {
            uint64_t d = random_delta();
            /* Sometimes in the past: it must then fire on the next tick. */
            uint64_t exp = (r == 0 && W->now > 100) ? W->now - rng() % 100 : W->now + d;
            tt__wheel_start(W, &mnodes[i].node, exp);
            model[i].active = 1;
            model[i].due = exp > W->now ? exp : W->now + 1;
        } else if (r < 7) {
            tt__wheel_stop(W, &mnodes[i].node);
            model[i].active = 0;
        } else {
            uint64_t target = W->now + random_step();
            uint64_t min_due = UINT64_MAX, expect = 0, active = 0;
            for (int k = 0; k < MODEL_N; k++) {
                mnodes[k].fires = 0;
                if (!model[k].active)
                    continue;
                active++;
                if (model[k].due < min_due)
                    min_due = model[k].due;
                if (model[k].due <= target)
                    expect++;
            }
            cr_assert_eq(W->count, active, "seed %llu op %d: count %llu, model %llu",
                         (unsigned long long)seed, op, (unsigned long long)W->count,
                         (unsigned long long)active);
            uint64_t next = tt__wheel_next_expiry(W);
            cr_assert(next <= min_due, "seed %llu op %d: next_expiry %llu after earliest %llu",
                      (unsigned long long)seed, op, (unsigned long long)next,
                      (unsigned long long)min_due);
            if (active > 0) {
                cr_assert(next > W->now, "seed %llu op %d: next_expiry %llu not after now %llu",
                          (unsigned long long)seed, op, (unsigned long long)next,
                          (unsigned long long)W->now);
                if ((min_due >> 8) == (W->now >> 8))
                    cr_assert_eq(next, min_due, "seed %llu op %d: in-block next %llu != %llu",
                                 (unsigned long long)seed, op, (unsigned long long)next,
                                 (unsigned long long)min_due);
            }
            uint64_t fired = tt__wheel_advance(W, target);
            cr_assert_eq(fired, expect, "seed %llu op %d: fired %llu, model %llu",
                         (unsigned long long)seed, op, (unsigned long long)fired,
                         (unsigned long long)expect);
            for (int k = 0; k < MODEL_N; k++) {
                int should = model[k].active && model[k].due <= target;
                cr_assert_eq(mnodes[k].fires, should, "seed %llu op %d: node %d fired %d, want %d",
                             (unsigned long long)seed, op, k, mnodes[k].fires, should);
                if (should) {
                    cr_assert_eq(mnodes[k].fired_at, model[k].due,
                                 "seed %llu op %d: node %d fired at %llu, due %llu",
                                 (unsigned long long)seed, op, k,
                                 (unsigned long long)mnodes[k].fired_at,
                                 (unsigned long long)model[k].due);
                    model[k].active = 0;
                }
                cr_assert_eq(tt__wnode_active(&mnodes[k].node), model[k].active != 0,
                             "seed %llu op %d: node %d active flag", (unsigned long long)seed,
                             op, k);
            }
        }
    }
}

Test(wheel, random_operations_match_a_brute_force_model)
{
    static const uint64_t starts[] = {0, 250, 65530, (1u << 24) - 100, 0x7fffffff00ULL};
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
        run_model(0x9e3779b97f4a7c15ULL + i, starts[i], 8000);
}
