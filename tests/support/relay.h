/* A line relay for the broadcast tests: a tether server that passes every framed
 * line (or WebSocket message) to every other connection with tt_server_broadcast,
 * its accepted connections in order, and how each one closed; plain-socket
 * receivers and a non-blocking reader for them. One relay per test process. */
#ifndef TT_TEST_RELAY_H
#define TT_TEST_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include "tether.h"

#define RELAY_MAX 260

typedef struct {
    tt_server_t *srv;
    tt_conn_t *peers[RELAY_MAX]; /* the server side of the clients, in accept order;
                                    NULL once closed */
    int npeers;
    int closes_overflow, closes_other, closes_total;
    int close_count[RELAY_MAX];
    tt_close_info_t last_close[RELAY_MAX];
    void (*after_broadcast)(tt_conn_t *from); /* called after each relayed line, if set */
    bool (*keep)(const void *msg, size_t len); /* if set: false drops the line */
} relay_t;

extern relay_t relay;
extern const tt_conn_handlers_t relay_handlers;

void relay_reset(void);
/* Listen on 127.0.0.1 (ephemeral port) with `so` and the relay's handlers. */
tt_server_t *relay_listen(tt_loop_t *loop, tt_server_opts_t *so, tt_addr_t *addr);
/* n plain clients, each accepted before the next connects (relay.peers[i] is the
 * server side of fds[i]); SO_RCVBUF `rcvbuf` when > 0; each sends `hello` first
 * when not NULL (what the server wants before on_open). */
void relay_connect(tt_loop_t *loop, const tt_addr_t *addr, int *fds, int n, int rcvbuf,
                   const char *hello);

typedef struct {
    char *buf;
    size_t len, cap;
    bool eof; /* FIN or RST seen */
} relay_sink_t;

/* Read what fd has without blocking. */
void relay_drain(int fd, relay_sink_t *s);
/* Receiver `who` got `msgs` messages of `size` bytes, each starting "m%06d" with
 * its number, in order, and the server's side of it counted them all as sent. */
void relay_expect_msgs(const relay_sink_t *s, int who, int msgs, size_t size);
/* Close the clients still open (fds[i] >= 0), free the sinks, close the server
 * and the loop. */
void relay_finish(tt_loop_t *loop, const int *fds, relay_sink_t *sink, int n);

#endif
