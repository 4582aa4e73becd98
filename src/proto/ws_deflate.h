/* permessage-deflate (RFC 7692) message compression with zlib: raw DEFLATE, each
 * message ended with an empty sync block whose four-byte tail (00 00 ff ff) is
 * left off the wire and put back before inflating (7.2.1, 7.2.2).
 *
 * Inflating is bounded: a message whose output would pass the limit stops with
 * 1009 as soon as it passes, whatever its compressed size, so a few kilobytes that
 * would inflate to gigabytes (a decompression bomb) cost at most the limit plus
 * one step of output. Without context takeover the stream is reset after each
 * message, so one zlib stream can serve many connections one message at a time
 * (the deflater a loop shares for broadcasts). */
#ifndef TT_WS_DEFLATE_H
#define TT_WS_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/* A growing output buffer; free(p) when done. */
typedef struct tt__zbuf {
    uint8_t *p;
    size_t len, cap;
} tt__zbuf_t;

/* Set up z for compressing with a window of `bits` (9..15) / decompressing
 * (window 15: reads any window). 0 or -ENOMEM. tt__ws_z_end frees it. */
int tt__ws_deflate_init(z_stream *z, int bits);
int tt__ws_inflate_init(z_stream *z);
void tt__ws_deflate_end(z_stream *z);
void tt__ws_inflate_end(z_stream *z);

/* Compress one whole message, appending the payload for the wire to `out`.
 * `reset`: without context takeover, forget the message afterwards. Returns 0,
 * -ENOMEM, or -EIO (zlib refused). */
int tt__ws_deflate_msg(z_stream *z, const uint8_t *in, size_t n, bool reset, tt__zbuf_t *out);

/* Decompress the next piece (a frame's payload) of a compressed message,
 * appending to `out`, which holds this message only (empty at its first piece);
 * `fin` on the last piece (the sync tail is added then). `max`: most bytes the
 * message may inflate to (0: no limit). `reset` as above,
 * applied after the last piece. Returns 0, -1009 (past max), -1007 (not valid
 * DEFLATE data, or more data after the end of the stream), or -ENOMEM. */
int tt__ws_inflate_feed(z_stream *z, const uint8_t *in, size_t n, bool fin, size_t max, bool reset,
                        tt__zbuf_t *out);

#endif
