/* --framing and --max-frame (see cli_framing.h). */
#include "cli_framing.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* "4096", "64K", "1M": bytes, 1 to TT_FRAME_MAX_LIMIT. */
static int parse_size(const char *text, size_t *out)
{
    uint64_t v;
    if (cli_parse_size(text, &v) < 0 || v == 0 || v > TT_FRAME_MAX_LIMIT)
        return -EINVAL;
    *out = (size_t)v;
    return 0;
}

int cli_framing_option(const char *cmd, int ch, const char *arg, bool lines_only,
                       cli_framing_t *f)
{
    if (ch == CLI_OPT_MAX_FRAME) {
        if (parse_size(arg, &f->max) < 0)
            return cli_usage_error(cmd, "bad --max-frame '%s': expected 1..%zu bytes "
                                        "(suffixes K, M)", arg, (size_t)TT_FRAME_MAX_LIMIT);
        return 0;
    }
    f->on = true;
    if (strcmp(arg, "none") == 0) {
        f->on = false;
    } else if (strcmp(arg, "line") == 0) {
        f->o = tt_frame_line(0);
    } else if (strcmp(arg, "crlf") == 0) {
        f->o = tt_frame_crlf(true, 0); /* a bare "\n" ends a line too */
    } else if (lines_only) {
        return cli_usage_error(cmd, "bad --framing '%s': expected none, line or crlf", arg);
    } else if (strcmp(arg, "u16be") == 0) {
        f->o = tt_frame_u16be(0);
    } else if (strcmp(arg, "u32be") == 0) {
        f->o = tt_frame_u32be(0);
    } else if (strcmp(arg, "u32le") == 0) {
        f->o = tt_frame_u32le(0);
    } else if (strcmp(arg, "varint") == 0) {
        f->o = tt_frame_varint(0);
    } else if (strncmp(arg, "fixed:", 6) == 0) {
        size_t n;
        if (parse_size(arg + 6, &n) < 0)
            return cli_usage_error(cmd, "bad --framing '%s': fixed:N needs a size", arg);
        f->o = tt_frame_fixed(n);
    } else {
        return cli_usage_error(cmd, "bad --framing '%s': expected none, line, crlf, u16be, "
                                    "u32be, u32le, varint or fixed:N", arg);
    }
    return 0;
}

const tt_frame_opts_t *cli_framing_opts(cli_framing_t *f)
{
    if (!f->on)
        return NULL;
    /* A fixed size is its own limit; the others take --max-frame. */
    if (f->o.kind != TT_FRAME_FIXED)
        f->o.max_frame = f->max;
    return &f->o;
}
