/* An output descriptor written by its own thread, so a slow reader of stdout never
 * blocks the event loop. The loop thread pushes bytes; when more than `high` are
 * waiting, push says so and the caller pauses its source (tt_conn_read_stop); once
 * the backlog is down to `high / 4`, on_low is posted to the loop (tt_loop_post), and
 * the caller resumes. A write error is posted once as on_error; later bytes are
 * dropped. Callbacks run on the loop's thread, from tt_loop_run. */
#ifndef TT_TOOL_WRITER_H
#define TT_TOOL_WRITER_H

#include <stdbool.h>
#include <stddef.h>

#include "tether.h"

typedef struct cli_writer cli_writer_t;

typedef struct cli_writer_cbs {
    void (*on_low)(void *arg);
    void (*on_error)(void *arg, int err); /* err: negative errno of the failed write */
    void *arg;
} cli_writer_cbs_t;

/* Start the thread writing to fd (left in its blocking mode; not closed). Signals
 * are blocked in the thread so SIGINT/SIGTERM reach the loop's thread. Returns 0 and
 * *out, -EINVAL, -ENOMEM, or the pthread_create error. */
int cli_writer_start(cli_writer_t **out, tt_loop_t *loop, int fd, size_t high,
                     const cli_writer_cbs_t *cbs);
/* Queue a copy of `len` bytes. Returns 0, 1 when the backlog is above the high mark
 * (pause the source: on_low follows), -ENOMEM, or the write error already seen. */
int cli_writer_push(cli_writer_t *w, const void *buf, size_t len);
/* Finish: write what is queued (or drop it, with discard), stop the thread and free
 * the writer. Waits at most timeout_ms for a write stuck on a reader that does not
 * read; then the thread is abandoned to process exit and -ETIMEDOUT returned;
 * timeout_ms 0 waits as long as it takes. Call before tt_loop_close(). Returns 0 or
 * the first write error. */
int cli_writer_finish(cli_writer_t *w, bool discard, unsigned timeout_ms);

#endif
