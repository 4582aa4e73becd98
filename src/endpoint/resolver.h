/* The loop's name resolver (c-ares on the poller and the timing wheel), as seen by
 * the layers above it: the Happy Eyeballs connector and the reconnecting client. */
#ifndef TT_RESOLVER_H
#define TT_RESOLVER_H

#include "tether.h"

/* Called by tt_loop_close() once no lookup is left: destroys the c-ares channel
 * and its watches. Installed on the loop when the resolver is first created. */
void tt__resolver_free(tt_loop_t *loop);

#endif
