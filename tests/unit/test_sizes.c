/* Object sizes that the design depends on (DESIGN.md: "Small handles ... Measure
 * sizeof and keep it in a test"). A million idle connections cost a million of
 * these, so growth must be a deliberate decision, not an accident.
 *
 * Measured on x86-64 Linux (LP64) when this test was written:
 *   struct tt_conn   224 bytes (3.5 cache lines); the limit is 4 lines, 256 bytes.
 *                    Optional state (framing, liveness, message counters) lives in
 *                    the separately allocated tt__conn_ext_t, not here.
 *   tt__wnode_t       32 bytes: two list links, the expiry and the callback. Every
 *                    connection embeds one, so it must not grow.
 *   tt__sqe_t         56 bytes of header before a copy chunk's data. */
#include <criterion/criterion.h>

#include "stream/conn.h"
#include "core/timer_wheel.h"

Test(sizes, connection_fits_in_four_cache_lines)
{
    size_t n = sizeof(struct tt_conn);
    cr_assert_leq(n, 256, "sizeof(struct tt_conn) is %zu bytes, over the 256-byte budget", n);
    cr_log_info("sizeof(struct tt_conn) = %zu", n);
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

Test(sizes, poller_watch_is_16_bytes)
{
    size_t n = sizeof(tt__io_t);
    cr_assert_eq(n, 16, "sizeof(tt__io_t) is %zu bytes, want 16", n);
}
