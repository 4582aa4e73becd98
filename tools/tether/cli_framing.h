/* --framing and --max-frame, shared by `tether echo` and `tether cat`
 * (cli_framing.c). */
#ifndef TT_CLI_FRAMING_H
#define TT_CLI_FRAMING_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include "tether.h"

/* Option codes above any short option character (and the liveness ones). */
#define CLI_OPT_FRAMING 0x1200
#define CLI_OPT_MAX_FRAME 0x1201

/* The two entries for a struct option array. */
#define CLI_FRAMING_LONGOPTS                                                                    \
    {"framing", required_argument, NULL, CLI_OPT_FRAMING},                                      \
        {"max-frame", required_argument, NULL, CLI_OPT_MAX_FRAME}

/* Usage lines for `tether echo` (every codec) and `tether cat` (lines only). */
#define CLI_FRAMING_USAGE_ECHO                                                                  \
    "      --framing F         echo whole messages instead of bytes: none (default),\n"        \
    "                          line, crlf, u16be, u32be, u32le, varint or fixed:N\n"           \
    "                          (docs/framing.md); a frame over --max-frame or a\n"             \
    "                          malformed one closes that client only\n"                        \
    "      --max-frame BYTES   largest message (default 1M; suffixes K, M)\n"
#define CLI_FRAMING_USAGE_CAT                                                                   \
    "      --framing F         none (default), line or crlf: read the peer's bytes as\n"      \
    "                          lines, one per output line; a line over --max-frame\n"          \
    "                          closes the connection; an unterminated last line is\n"        \
    "                          dropped (stdin is sent as it is)\n"                              \
    "      --max-frame BYTES   longest line (default 1M; suffixes K, M)\n"

typedef struct cli_framing {
    tt_frame_opts_t o;
    bool on;         /* a framing other than none was chosen */
    size_t max;      /* --max-frame; 0: the default */
} cli_framing_t;

/* Parse one of the two options (`ch` is its code) into *f. With lines_only, only
 * none, line and crlf are accepted. Returns 0, or CLI_EXIT_USAGE after printing
 * why. */
int cli_framing_option(const char *cmd, int ch, const char *arg, bool lines_only,
                       cli_framing_t *f);
/* The options to apply (max_frame filled in), or NULL for no framing. */
const tt_frame_opts_t *cli_framing_opts(cli_framing_t *f);

#endif
