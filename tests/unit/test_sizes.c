/* Object sizes that the design depends on (DESIGN.md: "Small handles ... Measure
 * sizeof and keep it in a test"). A million idle connections cost a million of
 * these, so growth must be a deliberate decision, not an accident.
 *
 * Measured on x86-64 Linux (LP64):
 *   struct tt_conn   128 bytes, two cache lines: what a connection needs while
 *                    idle (its socket, handlers, server links, every per-connection
 *                    total, id and age, state). What it needs only while busy (the
 *                    send queue, the connect or linger deadline, limits of its own)
 *                    is a tt__conn_out_t from the loop's pool; layers (framing,
 *                    liveness, TLS, ...) live in the tt__conn_ext_t.
 *   tt__io_t           8 bytes: a stream keeps no callback (the poller has one for
 *                    all streams).
 *   tt__wnode_t       32 bytes: two list links, the expiry and the callback.
 *   tt__sqe_t         56 bytes of header before a copy chunk's data. */
#include <criterion/criterion.h>

#include "stream/conn.h"
#include "core/timer_wheel.h"

Test(sizes, connection_fits_in_two_cache_lines)
{
    size_t n = sizeof(struct tt_conn);
    cr_assert_leq(n, 128, "sizeof(struct tt_conn) is %zu bytes, over the 128-byte budget", n);
    cr_log_info("sizeof(struct tt_conn) = %zu", n);
}

Test(sizes, busy_state_stays_small)
{
    /* Taken for every connection with bytes queued: a broadcast to a slow
     * audience holds one per slow reader. */
    size_t n = sizeof(tt__conn_out_t);
    cr_assert_leq(n, 128, "sizeof(tt__conn_out_t) is %zu bytes, over two cache lines", n);
    cr_log_info("sizeof(tt__conn_out_t) = %zu", n);
}

Test(sizes, wheel_node_is_32_bytes)
{
    size_t n = sizeof(tt__wnode_t);
    cr_assert_eq(n, 32, "sizeof(tt__wnode_t) is %zu bytes, want 32", n);
}

Test(sizes, send_queue_entry_header_stays_small)
{
    /* Each handed-over buffer or file segment costs one header; a copy chunk's
     * header is overhead on every 4 KiB chunk. */
    size_t n = sizeof(tt__sqe_t);
    cr_assert_leq(n, 64, "sizeof(tt__sqe_t) is %zu bytes, over one cache line", n);
}

Test(sizes, poller_entry_is_8_bytes)
{
    size_t n = sizeof(tt__io_t);
    cr_assert_eq(n, 8, "sizeof(tt__io_t) is %zu bytes, want 8", n);
}
