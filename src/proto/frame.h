/* Framing on a connection (frame.c): what the layers and tests inside the library
 * may ask beyond the public API. The codecs themselves are in frame_codec.h. */
#ifndef TT_FRAME_H
#define TT_FRAME_H

#include <stddef.h>

#include "tether.h"

struct tt__codec;

/* Servers keep compiled options and apply them to every accepted connection. */
/* 0 when `o` is NULL or valid; -EINVAL otherwise. Changes nothing. */
int tt__frame_check(const tt_frame_opts_t *o);
/* Compile `o` into *out (NULL when o is NULL). 0, -EINVAL or -ENOMEM. */
int tt__frame_cfg_new(struct tt__codec **out, const tt_frame_opts_t *o);
void tt__frame_cfg_free(struct tt__codec *fc);
/* Turn framing on for a connection with compiled options. 0 or -ENOMEM. */
int tt__frame_apply(tt_conn_t *c, const struct tt__codec *fc);

/* For sends framed once and shared (broadcast): what identifies the connection's
 * framing. Connections framed by the same server options share it; NULL when the
 * connection is not framed that way (tt_conn_set_framing, or no framing). */
const void *tt__frame_shared_key(const tt_conn_t *c);
/* The header and trailer one message of `len` bytes needs on `c` (its bytes
 * `msg` checked against a delimiter). 0, -ENOTCONN (not framed), -EMSGSIZE or
 * -EINVAL, as tt_send_message. */
int tt__frame_wrap(const tt_conn_t *c, const void *msg, size_t len, unsigned char *hdr,
                   size_t *hlen, const void **trailer, size_t *tlen);
/* Count one message sent on `c` (a framed send made outside tt_send_message). */
void tt__frame_count_out(tt_conn_t *c);

/* Bytes allocated for the connection's partial frame (0 when none is held). */
size_t tt__frame_buf_cap(const tt_conn_t *c);

#endif
