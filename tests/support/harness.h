/* Helpers shared by the tests: bounded loop runs, loopback addresses, peers. */
#ifndef TT_TEST_HARNESS_H
#define TT_TEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "tether.h"

/* Run the loop until it has no work, failing the test (and stopping the loop) if
 * that takes longer than `ms`. Returns tt_loop_run's result. */
int th_run(tt_loop_t *loop, uint64_t ms);
/* Run until *flag becomes true or `ms` passes; returns true if the flag was set. */
bool th_run_until(tt_loop_t *loop, volatile bool *flag, uint64_t ms);
/* 127.0.0.1:port */
tt_addr_t th_loopback(uint16_t port);
/* A listening server on 127.0.0.1, ephemeral port; its address in *addr. */
tt_server_t *th_listen(tt_loop_t *loop, const tt_conn_handlers_t *h, void *data, tt_addr_t *addr);
/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t th_now_ms(void);
/* A blocking plain-socket peer, for tests that want a non-tether end. */
int th_tcp_connect_blocking(const tt_addr_t *addr);
int th_tcp_listen_blocking(tt_addr_t *addr_out);
/* Path of a file in the build tree (tether binary etc.). */
const char *th_build_path(const char *rel);

#endif
