/* A real Redis for the tests: redis-server on 127.0.0.1 and a free port, no
 * persistence, started by the test and stopped by its pid. */
#ifndef TT_TEST_REDIS_H
#define TT_TEST_REDIS_H

#include <stdint.h>
#include <sys/types.h>

typedef struct th_redis {
    pid_t pid;
    uint16_t port;
} th_redis_t;

/* Start redis-server on `port` (0: a free one) and wait, at most 5 s, until it
 * answers PING. Returns 0, -ENOENT (no redis-server: callers skip), or -ETIMEDOUT. */
int th_redis_start(th_redis_t *r, uint16_t port);
/* Kill it at once (SIGKILL: a crash, no goodbye to clients) and reap it. */
void th_redis_kill(th_redis_t *r);
/* Stop it (SIGTERM, SIGKILL after 2 s) and reap it. Safe to call twice. */
void th_redis_stop(th_redis_t *r);

#endif
