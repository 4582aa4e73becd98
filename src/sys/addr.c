/* Address parsing and formatting: numeric only; names are the resolver's job. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tether.h"

int tt_addr_from_sockaddr(tt_addr_t *out, const struct sockaddr *sa, socklen_t len)
{
    if (out == NULL || sa == NULL)
        return -EINVAL;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        memset(out, 0, sizeof(*out));
        memcpy(&out->u.in4, sa, sizeof(struct sockaddr_in));
        out->len = sizeof(struct sockaddr_in);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        memset(out, 0, sizeof(*out));
        memcpy(&out->u.in6, sa, sizeof(struct sockaddr_in6));
        out->len = sizeof(struct sockaddr_in6);
        return 0;
    }
    return -EINVAL;
}

int tt_addr_parse(tt_addr_t *out, const char *host, uint16_t port)
{
    tt_addr_t a;
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];

    if (out == NULL || host == NULL)
        return -EINVAL;
    memset(&a, 0, sizeof(a));
    if (host[0] == '\0' || strcmp(host, "*") == 0) {
        a.u.in6.sin6_family = AF_INET6;
        a.u.in6.sin6_addr = in6addr_any;
        a.u.in6.sin6_port = htons(port);
        a.len = sizeof(a.u.in6);
        *out = a;
        return 0;
    }
    if (inet_pton(AF_INET, host, &a.u.in4.sin_addr) == 1) {
        a.u.in4.sin_family = AF_INET;
        a.u.in4.sin_port = htons(port);
        a.len = sizeof(a.u.in4);
        *out = a;
        return 0;
    }
    if (strlen(host) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, host);
    char *scope = strchr(buf, '%');
    if (scope != NULL)
        *scope++ = '\0';
    if (inet_pton(AF_INET6, buf, &a.u.in6.sin6_addr) != 1)
        return -EINVAL;
    if (scope != NULL) {
        char *end;
        unsigned long idx = strtoul(scope, &end, 10);
        if (*scope == '\0')
            return -EINVAL;
        if (*end != '\0')
            idx = if_nametoindex(scope);
        if (idx == 0 || idx > UINT32_MAX)
            return -EINVAL;
        a.u.in6.sin6_scope_id = (uint32_t)idx;
    }
    a.u.in6.sin6_family = AF_INET6;
    a.u.in6.sin6_port = htons(port);
    a.len = sizeof(a.u.in6);
    *out = a;
    return 0;
}

static int parse_port(const char *s, uint16_t *port)
{
    char *end;
    unsigned long v;

    /* Digits only: strtoul(3) would also take leading blanks and a sign. */
    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

int tt_addr_parse_hostport(tt_addr_t *out, const char *text)
{
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    const char *colon, *hstart;
    size_t hlen;
    uint16_t port;

    if (out == NULL || text == NULL)
        return -EINVAL;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return -EINVAL;
        hstart = text + 1;
        hlen = (size_t)(close - hstart);
        colon = close + 1;
        if (hlen == 0)
            return -EINVAL;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL)
            return -EINVAL; /* no port, or a bare IPv6 address without brackets */
        hstart = text;
        hlen = (size_t)(colon - text);
    }
    if (hlen >= sizeof(host) || parse_port(colon + 1, &port) < 0)
        return -EINVAL;
    memcpy(host, hstart, hlen);
    host[hlen] = '\0';
    if (text[0] == '[' && strchr(host, ':') == NULL)
        return -EINVAL; /* brackets are for IPv6 only */
    return tt_addr_parse(out, host, port);
}

int tt_addr_format_host(const tt_addr_t *addr, char *buf, size_t size)
{
    char tmp[TT_ADDR_STRLEN];
    size_t n;

    if (addr == NULL || buf == NULL || size == 0)
        return -EINVAL;
    buf[0] = '\0';
    if (addr->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &addr->u.in4.sin_addr, tmp, sizeof(tmp));
    } else if (addr->u.sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &addr->u.in6.sin6_addr, tmp, sizeof(tmp));
        if (addr->u.in6.sin6_scope_id != 0) {
            n = strlen(tmp);
            snprintf(tmp + n, sizeof(tmp) - n, "%%%u", addr->u.in6.sin6_scope_id);
        }
    } else {
        return -EINVAL;
    }
    n = strlen(tmp);
    if (n + 1 > size)
        return -ENOSPC;
    memcpy(buf, tmp, n + 1);
    return (int)n;
}

int tt_addr_format(const tt_addr_t *addr, char *buf, size_t size)
{
    char host[TT_ADDR_STRLEN];
    int n;

    if (buf == NULL || size == 0)
        return -EINVAL; /* checked first: the error paths below write buf[0] */
    n = tt_addr_format_host(addr, host, sizeof(host));
    if (n < 0) {
        if (buf != NULL && size > 0)
            buf[0] = '\0';
        return n;
    }
    const char *fmt = addr->u.sa.sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u";
    int w = snprintf(buf, size, fmt, host, (unsigned)tt_addr_port(addr));
    if (w < 0 || (size_t)w >= size) {
        buf[0] = '\0';
        return -ENOSPC;
    }
    return w;
}

uint16_t tt_addr_port(const tt_addr_t *addr)
{
    if (addr == NULL)
        return 0;
    if (addr->u.sa.sa_family == AF_INET)
        return ntohs(addr->u.in4.sin_port);
    if (addr->u.sa.sa_family == AF_INET6)
        return ntohs(addr->u.in6.sin6_port);
    return 0;
}
