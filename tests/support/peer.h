/* Plain blocking peers on threads, and the checksums and byte patterns tests use to
 * prove every byte arrived in order. The peers are ordinary sockets, not tether:
 * what they see is what any other TCP stack would see. */
#ifndef TT_TEST_PEER_H
#define TT_TEST_PEER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TH_FNV_INIT 0xcbf29ce484222325ULL

/* FNV-1a 64 over `len` bytes, continuing from `h` (start with TH_FNV_INIT). */
uint64_t th_fnv1a64(uint64_t h, const void *data, size_t len);
/* Fill buf with the test pattern for stream offsets [off, off + len): a byte
 * sequence with no short period, so a dropped, repeated or reordered piece shows. */
void th_pattern(void *buf, size_t len, uint64_t off);
/* Index of the first byte of buf that differs from the pattern at `off`, or -1. */
long th_pattern_check(const void *buf, size_t len, uint64_t off);

/* A reader on its own thread: reads a connected blocking socket until EOF or an
 * error, hashing everything and keeping the first bytes. At EOF it shuts its own
 * side (as a well-behaved peer does). With wait_go it reads nothing until
 * th_sink_go() (so the sender's buffers fill). All reading ends by limit_ms. */
#define TH_SINK_HEAD 16384
typedef struct th_sink {
    int fd;
    bool wait_go;
    uint64_t limit_ms;
    atomic_bool go;
    atomic_bool done;
    pthread_t th;
    /* Results, valid after th_sink_join. */
    uint64_t got;
    uint64_t fnv;
    long bad_at;  /* first offset that broke the pattern (when checked), else -1 */
    bool check_pattern;
    bool eof;     /* recv returned 0 */
    char head[TH_SINK_HEAD]; /* the first bytes received */
    int err;      /* errno of the recv that failed (ECONNRESET, EAGAIN on timeout) */
} th_sink_t;

void th_sink_start(th_sink_t *s, int fd, bool wait_go, uint64_t limit_ms);
void th_sink_go(th_sink_t *s);
/* Join the thread; the socket stays open (the caller closes it). */
void th_sink_join(th_sink_t *s);

/* A port on 127.0.0.1 with no listener (bound once and released). */
uint16_t th_unused_port(void);
/* Number of open descriptors of this process. */
int th_fd_count(void);

#endif
