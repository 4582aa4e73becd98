/* Error codes to text. System errors use the C library's text; tether's own codes
 * (below -4000) have theirs here. A close reports a kind and an error, and the tools
 * print both ("heartbeat timeout: no sign of life ..."): a code that goes with a
 * close kind says what happened in other words than the kind's name. */
#include <errno.h>
#include <string.h>

#include "tether.h"

static const struct {
    int code;
    const char *name;
    const char *text;
} own[] = {
    {TT_EOF, "TT_EOF", "end of stream"},
    {TT_EFRAMESIZE, "TT_EFRAMESIZE", "frame longer than the size limit"},
    {TT_EPROTOCOL, "TT_EPROTOCOL", "malformed frame, or the stream ended inside one"},
    {TT_EOVERFLOW, "TT_EOVERFLOW", "queued bytes past the queue's hard cap"},
    {TT_EIDLE, "TT_EIDLE", "no traffic within the idle time"},
    {TT_EHEARTBEAT, "TT_EHEARTBEAT", "no sign of life from the peer within the dead-after time"},
    {TT_ENOTFOUND, "TT_ENOTFOUND", "no such host"},
    {TT_ETEMPFAIL, "TT_ETEMPFAIL", "temporary failure in name resolution"},
    {TT_EDNSTIMEOUT, "TT_EDNSTIMEOUT", "name resolution timed out"},
    {TT_ESHUTDOWN, "TT_ESHUTDOWN", "not ended within the shutdown deadline"},
    {TT_EVETO, "TT_EVETO", "refused by admission hook"},
    {TT_ETLS, "TT_ETLS", "TLS failure"},
    {TT_ETRUNCATED, "TT_ETRUNCATED", "TLS stream ended without close_notify"},
};

const char *tt_strerror(int err)
{
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (own[i].code == err)
            return own[i].text;
    if (err < 0 && err > -4000) {
        const char *d = strerrordesc_np(-err);
        if (d != NULL)
            return d;
    }
    if (err == 0)
        return "success";
    return "unknown error";
}

const char *tt_err_name(int err)
{
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (own[i].code == err)
            return own[i].name;
    if (err < 0 && err > -4000) {
        const char *n = strerrorname_np(-err);
        if (n != NULL)
            return n;
    }
    if (err == 0)
        return "OK";
    return "UNKNOWN";
}
