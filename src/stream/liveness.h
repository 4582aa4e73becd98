/* Liveness layer, private side: the settings a server hands to every connection it
 * accepts. The per-connection state and the public calls are in liveness.c. */
#ifndef TT_LIVENESS_H
#define TT_LIVENESS_H

#include "tether.h"

/* A validated, self-contained copy of tt_liveness_opts_t (ping/pong bytes owned),
 * with detect_within already derived into the timing fields. */
typedef struct tt__live_cfg tt__live_cfg_t;

/* Check settings without keeping anything: 0 or -EINVAL. `o` may be NULL. A
 * non-zero `detect_within_ms` overrides o->detect_within_ms. */
int tt__live_check(const tt_liveness_opts_t *o, uint64_t detect_within_ms);
/* Make *out from the settings; *out is NULL when they turn nothing on.
 * Returns 0, -EINVAL, or -ENOMEM. */
int tt__live_cfg_new(tt__live_cfg_t **out, const tt_liveness_opts_t *o,
                     uint64_t detect_within_ms);
/* NULL is allowed. */
void tt__live_cfg_free(tt__live_cfg_t *cfg);
/* Apply to a freshly accepted connection. 0 or -errno (the connection stays as it
 * was for what failed; the server carries on). */
int tt__live_apply(tt_conn_t *c, const tt__live_cfg_t *cfg);

/* Settings a Unix domain connection cannot have: keepalive or a user timeout given
 * explicitly (derived ones are skipped). 0 or -EOPNOTSUPP. */
int tt__live_check_unix(const tt_liveness_opts_t *o);

#endif
