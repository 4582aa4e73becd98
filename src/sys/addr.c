/* Address parsing and formatting: numeric only; names are the resolver's job. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#include "tether.h"

#define SUN_OFF offsetof(struct sockaddr_un, sun_path)
#define PREFIX_LEN (sizeof(TT_UNIX_PREFIX) - 1)

bool tt_addr_is_unix(const tt_addr_t *addr)
{
    return addr != NULL && addr->len >= sizeof(sa_family_t) && addr->u.sa.sa_family == AF_UNIX;
}

const char *tt_addr_unix_path(const tt_addr_t *addr)
{
    if (!tt_addr_is_unix(addr) || addr->len <= SUN_OFF || addr->u.un.sun_path[0] == '\0')
        return NULL;
    return addr->u.un.sun_path;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "unix:/path", "unix:rel/path" or "unix:@name" (text past the prefix). */
static int parse_unix(tt_addr_t *out, const char *text)
{
    tt_addr_t a;
    size_t n = 0;

    memset(&a, 0, sizeof(a));
    a.u.un.sun_family = AF_UNIX;
    if (text[0] == '\0')
        return -EINVAL;
    if (text[0] == '@') {
        /* Abstract: sun_path[0] is NUL and the name is exactly the bytes after it,
         * counted by the length (no terminator: "@a" and "@a\0" are different). */
        const char *p = text + 1;
        if (*p == '\0')
            return -EINVAL;
        while (*p != '\0') {
            int hi, lo;
            char ch = *p++;
            if (ch == '\\' && p[0] == 'x' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0) {
                ch = (char)(hi << 4 | lo);
                p += 3;
            }
            if (n + 1 >= sizeof(a.u.un.sun_path))
                return -ENAMETOOLONG;
            a.u.un.sun_path[1 + n++] = ch;
        }
        a.len = (socklen_t)(SUN_OFF + 1 + n);
    } else {
        n = strlen(text);
        if (n >= sizeof(a.u.un.sun_path))
            return -ENAMETOOLONG; /* the NUL must fit: unix(7) portability */
        memcpy(a.u.un.sun_path, text, n);
        a.len = (socklen_t)(SUN_OFF + n + 1);
    }
    *out = a;
    return 0;
}

static bool is_unix_text(const char *text)
{
    return strncmp(text, TT_UNIX_PREFIX, PREFIX_LEN) == 0;
}

/* "unix:/path", "unix:@name" (escaped), or "unix:" for an unnamed socket. */
static int format_unix(const tt_addr_t *addr, char *buf, size_t size)
{
    size_t w = 0, plen;
    const char *p = addr->u.un.sun_path;
    char tmp[PREFIX_LEN + 1 + 4 * sizeof(addr->u.un.sun_path) + 1];

    if (addr->len > sizeof(struct sockaddr_un))
        return -EINVAL;
    plen = addr->len > SUN_OFF ? addr->len - SUN_OFF : 0;
    memcpy(tmp, TT_UNIX_PREFIX, PREFIX_LEN);
    w = PREFIX_LEN;
    if (plen > 0 && p[0] == '\0') {
        tmp[w++] = '@';
        for (size_t i = 1; i < plen; i++) {
            unsigned char ch = (unsigned char)p[i];
            if (ch > 0x20 && ch < 0x7f && ch != '\\')
                tmp[w++] = (char)ch;
            else
                w += (size_t)snprintf(tmp + w, sizeof(tmp) - w, "\\x%02x", ch);
        }
    } else if (plen > 0) {
        size_t n = strnlen(p, plen);
        memcpy(tmp + w, p, n);
        w += n;
    }
    tmp[w] = '\0';
    if (w + 1 > size)
        return -ENOSPC;
    memcpy(buf, tmp, w + 1);
    return (int)w;
}

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
    if (sa->sa_family == AF_UNIX && len >= sizeof(sa_family_t) &&
        len <= sizeof(struct sockaddr_un)) {
        const char *p = ((const struct sockaddr_un *)(const void *)sa)->sun_path;
        /* A path must end inside sun_path (tt_addr_unix_path lends it as a string). */
        if (len > SUN_OFF && p[0] != '\0' && strnlen(p, len - SUN_OFF) == sizeof(out->u.un.sun_path))
            return -EINVAL;
        memset(out, 0, sizeof(*out));
        memcpy(&out->u.un, sa, len);
        out->len = len;
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
    if (is_unix_text(host))
        return parse_unix(out, host + PREFIX_LEN);
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
    if (is_unix_text(text))
        return parse_unix(out, text + PREFIX_LEN);
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
    if (tt_addr_is_unix(addr))
        return format_unix(addr, buf, size);
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
    if (tt_addr_is_unix(addr)) {
        buf[0] = '\0';
        return format_unix(addr, buf, size); /* the whole address; no port */
    }
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
