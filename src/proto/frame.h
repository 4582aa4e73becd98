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

/* Bytes allocated for the connection's partial frame (0 when none is held). */
size_t tt__frame_buf_cap(const tt_conn_t *c);

#endif
