/* The liveness options of `tether echo` and `tether cat`. */
#include "cli_liveness.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Lines, so a human reading a plain `nc` session sees what they are. Both ends
 * answer pings and hide both, so two tether tools heartbeat each other. */
static const char ping[] = "tether: ping\n";
static const char pong[] = "tether: pong\n";

static int parse_ms(const char *cmd, const char *opt, const char *arg, uint64_t min,
                    uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-' || v < min ||
        v > TT_TIMEOUT_MAX) {
        cli_usage_error(cmd, "bad %s '%s': expected milliseconds, %llu..%llu", opt, arg,
                        (unsigned long long)min, (unsigned long long)TT_TIMEOUT_MAX);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int cli_liveness_option(const char *cmd, int ch, const char *arg, cli_liveness_t *lv)
{
    uint64_t ms;

    switch (ch) {
    case CLI_OPT_IDLE_TIMEOUT:
        if (parse_ms(cmd, "--idle-timeout", arg, 1, &ms) < 0)
            return CLI_EXIT_USAGE;
        lv->o.idle_all_ms = ms;
        break;
    case CLI_OPT_HEARTBEAT:
        if (parse_ms(cmd, "--heartbeat", arg, 1, &ms) < 0)
            return CLI_EXIT_USAGE;
        if (ms * 18 / 5 > TT_TIMEOUT_MAX)
            return cli_usage_error(cmd, "bad --heartbeat '%s': 3.6 x MS is over the maximum",
                                   arg);
        lv->o.heartbeat_ms = ms;
        lv->o.dead_after_ms = ms * 18 / 5; /* the ratio --detect-within uses */
        break;
    case CLI_OPT_DETECT_WITHIN:
        if (parse_ms(cmd, "--detect-within", arg, TT_DETECT_MIN_MS, &ms) < 0)
            return CLI_EXIT_USAGE;
        lv->o.detect_within_ms = ms;
        break;
    default:
        return cli_usage_error(cmd, "unknown liveness option");
    }
    lv->o.ping = ping;
    lv->o.ping_len = strlen(ping);
    lv->o.pong = pong;
    lv->o.pong_len = strlen(pong);
    lv->any = true;
    return 0;
}

const tt_liveness_opts_t *cli_liveness_opts(const cli_liveness_t *lv)
{
    return lv->any ? &lv->o : NULL;
}
