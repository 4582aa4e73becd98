/* Numeric address parsing and formatting: every accepted form, every rejected
 * form, buffer limits, and round trips. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "tether.h"

/* Parse "HOST:PORT" text, format it back and compare with `want`. */
static void round_trip(const char *text, const char *want)
{
    tt_addr_t a;
    char buf[TT_ADDR_STRLEN];
    int r = tt_addr_parse_hostport(&a, text);
    cr_assert_eq(r, 0, "parse \"%s\": %d (%s)", text, r, tt_err_name(r));
    int n = tt_addr_format(&a, buf, sizeof(buf));
    cr_assert_eq(n, (int)strlen(want), "format \"%s\": returned %d, text \"%s\"", text, n, buf);
    cr_assert_str_eq(buf, want, "\"%s\" formatted as \"%s\", want \"%s\"", text, buf, want);
}

static void rejects(const char *text)
{
    tt_addr_t a;
    memset(&a, 0xab, sizeof(a));
    tt_addr_t before = a;
    int r = tt_addr_parse_hostport(&a, text);
    cr_assert_eq(r, -EINVAL, "\"%s\" gave %d (%s), want -EINVAL", text, r, tt_err_name(r));
    cr_assert_eq(memcmp(&a, &before, sizeof(a)), 0, "\"%s\" changed the output on failure",
                 text);
}

Test(addr, parses_ipv4_with_port)
{
    tt_addr_t a;
    cr_assert_eq(tt_addr_parse_hostport(&a, "192.168.1.20:8080"), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_INET);
    cr_assert_eq(a.len, sizeof(struct sockaddr_in));
    cr_assert_eq(ntohl(a.u.in4.sin_addr.s_addr), 0xc0a80114u, "addr %08x",
                 ntohl(a.u.in4.sin_addr.s_addr));
    cr_assert_eq(tt_addr_port(&a), 8080);
}

Test(addr, parses_bracketed_ipv6_with_port)
{
    tt_addr_t a;
    cr_assert_eq(tt_addr_parse_hostport(&a, "[::1]:443"), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_INET6);
    cr_assert_eq(a.len, sizeof(struct sockaddr_in6));
    cr_assert(IN6_IS_ADDR_LOOPBACK(&a.u.in6.sin6_addr));
    cr_assert_eq(a.u.in6.sin6_scope_id, 0);
    cr_assert_eq(tt_addr_port(&a), 443);
}

Test(addr, parses_scope_by_number_and_by_interface_name)
{
    tt_addr_t a;
    cr_assert_eq(tt_addr_parse_hostport(&a, "[fe80::1%1]:80"), 0);
    cr_assert_eq(a.u.in6.sin6_scope_id, 1);

    unsigned lo = if_nametoindex("lo");
    cr_assert_neq(lo, 0, "no loopback interface");
    cr_assert_eq(tt_addr_parse_hostport(&a, "[fe80::1%lo]:80"), 0);
    cr_assert_eq(a.u.in6.sin6_scope_id, lo, "scope %u, lo is %u", a.u.in6.sin6_scope_id, lo);
    cr_assert_eq(tt_addr_parse(&a, "fe80::1%lo", 9), 0);
    cr_assert_eq(a.u.in6.sin6_scope_id, lo);
    cr_assert_eq(tt_addr_port(&a), 9);
}

Test(addr, rejects_unknown_or_empty_scope)
{
    tt_addr_t a;
    cr_assert_eq(tt_addr_parse(&a, "fe80::1%", 1), -EINVAL);
    cr_assert_eq(tt_addr_parse(&a, "fe80::1%no-such-if0", 1), -EINVAL);
    cr_assert_eq(tt_addr_parse(&a, "fe80::1%4294967296", 1), -EINVAL); /* > 32 bits */
    cr_assert_eq(tt_addr_parse(&a, "1.2.3.4%1", 1), -EINVAL); /* IPv4 has no scope */
}

Test(addr, empty_star_and_bare_port_mean_the_ipv6_wildcard)
{
    static const char *forms[] = {":8000", "*:8000"};
    tt_addr_t a;
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(tt_addr_parse_hostport(&a, forms[i]), 0, "%s", forms[i]);
        cr_assert_eq(a.u.sa.sa_family, AF_INET6, "%s", forms[i]);
        cr_assert(IN6_IS_ADDR_UNSPECIFIED(&a.u.in6.sin6_addr), "%s", forms[i]);
        cr_assert_eq(tt_addr_port(&a), 8000, "%s", forms[i]);
    }
    cr_assert_eq(tt_addr_parse(&a, "", 1), 0);
    cr_assert(IN6_IS_ADDR_UNSPECIFIED(&a.u.in6.sin6_addr));
    cr_assert_eq(tt_addr_parse(&a, "*", 2), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_INET6);
    cr_assert_eq(tt_addr_port(&a), 2);
    cr_assert_eq(tt_addr_parse(&a, "0.0.0.0", 3), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_INET);
    cr_assert_eq(a.u.in4.sin_addr.s_addr, htonl(INADDR_ANY));
}

Test(addr, accepts_port_0_and_65535)
{
    tt_addr_t a;
    cr_assert_eq(tt_addr_parse_hostport(&a, "127.0.0.1:0"), 0);
    cr_assert_eq(tt_addr_port(&a), 0);
    cr_assert_eq(tt_addr_parse_hostport(&a, "[::1]:65535"), 0);
    cr_assert_eq(tt_addr_port(&a), 65535);
    cr_assert_eq(tt_addr_parse(&a, "::1", 65535), 0);
    cr_assert_eq(tt_addr_port(&a), 65535);
}

Test(addr, rejects_ports_out_of_range_or_malformed)
{
    rejects("1.2.3.4:65536");
    rejects("1.2.3.4:99999999999999999999999");
    rejects("1.2.3.4:-1");
    rejects("1.2.3.4:+80");
    rejects("1.2.3.4: 80"); /* leading blank: strtoul would skip it */
    rejects("1.2.3.4:\t80");
    rejects("1.2.3.4:");
    rejects("[::1]:");
    rejects("1.2.3.4:80x");
    rejects("1.2.3.4:80 ");
    rejects("1.2.3.4:0x50");
    rejects("[::1]:80]");
}

Test(addr, rejects_malformed_host_text)
{
    rejects("1.2.3.4");         /* no port */
    rejects("::1:80");          /* unbracketed IPv6 */
    rejects("::1");
    rejects("[1.2.3.4]:80");    /* brackets are for IPv6 */
    rejects("[]:80");
    rejects("[::1]80");
    rejects("[::1]");
    rejects("[::1:80");
    rejects("");
    rejects(":");
    rejects("localhost:80");    /* no name lookup */
    rejects("256.1.1.1:80");
    rejects("1.2.3.4 :80");
    rejects(" 1.2.3.4:80");
    rejects("[::1%]:80");
    /* Longer than any numeric host with a scope can be. */
    rejects("[1111:2222:3333:4444:5555:6666:7777:8888%aaaaaaaaaaaaaaaaaaaaaaaaaaaaa]:80");
}

Test(addr, null_arguments_are_einval)
{
    tt_addr_t a;
    char buf[TT_ADDR_STRLEN];
    struct sockaddr_in sin = {.sin_family = AF_INET};

    cr_assert_eq(tt_addr_parse(NULL, "1.2.3.4", 1), -EINVAL);
    cr_assert_eq(tt_addr_parse(&a, NULL, 1), -EINVAL);
    cr_assert_eq(tt_addr_parse_hostport(NULL, "1.2.3.4:1"), -EINVAL);
    cr_assert_eq(tt_addr_parse_hostport(&a, NULL), -EINVAL);
    cr_assert_eq(tt_addr_parse(&a, "1.2.3.4", 1), 0);
    cr_assert_eq(tt_addr_format(NULL, buf, sizeof(buf)), -EINVAL);
    cr_assert_eq(tt_addr_format(&a, NULL, 0), -EINVAL);
    cr_assert_eq(tt_addr_format(&a, NULL, 64), -EINVAL);
    cr_assert_eq(tt_addr_format_host(NULL, buf, sizeof(buf)), -EINVAL);
    cr_assert_eq(tt_addr_format_host(&a, NULL, 64), -EINVAL);
    cr_assert_eq(tt_addr_from_sockaddr(NULL, (struct sockaddr *)&sin, sizeof(sin)), -EINVAL);
    cr_assert_eq(tt_addr_from_sockaddr(&a, NULL, sizeof(sin)), -EINVAL);
    cr_assert_eq(tt_addr_port(NULL), 0);
}

Test(addr, format_with_size_zero_writes_nothing)
{
    tt_addr_t a;
    char buf[4] = "xyz";
    cr_assert_eq(tt_addr_parse(&a, "1.2.3.4", 80), 0);
    cr_assert_eq(tt_addr_format(&a, buf, 0), -EINVAL);
    cr_assert_eq(tt_addr_format_host(&a, buf, 0), -EINVAL);
    cr_assert_str_eq(buf, "xyz");
}

Test(addr, format_reports_enospc_and_empties_a_short_buffer)
{
    tt_addr_t a;
    char buf[TT_ADDR_STRLEN];

    cr_assert_eq(tt_addr_parse(&a, "1.2.3.4", 80), 0);
    /* "1.2.3.4:80" is 10 characters: 11 bytes fit, 10 do not. */
    cr_assert_eq(tt_addr_format(&a, buf, 11), 10);
    cr_assert_str_eq(buf, "1.2.3.4:80");
    memset(buf, 'x', sizeof(buf));
    cr_assert_eq(tt_addr_format(&a, buf, 10), -ENOSPC);
    cr_assert_str_eq(buf, "");
    memset(buf, 'x', sizeof(buf));
    cr_assert_eq(tt_addr_format(&a, buf, 1), -ENOSPC);
    cr_assert_eq(buf[0], '\0');
    cr_assert_eq(buf[1], 'x', "wrote past the given size");

    cr_assert_eq(tt_addr_format_host(&a, buf, 8), 7);
    cr_assert_str_eq(buf, "1.2.3.4");
    memset(buf, 'x', sizeof(buf));
    cr_assert_eq(tt_addr_format_host(&a, buf, 7), -ENOSPC);
    cr_assert_str_eq(buf, "");

    cr_assert_eq(tt_addr_parse(&a, "::1", 80), 0);
    cr_assert_eq(tt_addr_format(&a, buf, 9), 8); /* "[::1]:80" */
    cr_assert_eq(tt_addr_format(&a, buf, 8), -ENOSPC);
    cr_assert_str_eq(buf, "");
}

Test(addr, longest_address_fits_tt_addr_strlen)
{
    const char *text = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535";
    char buf[TT_ADDR_STRLEN];
    tt_addr_t a;

    cr_assert_eq(tt_addr_parse_hostport(&a, text), 0);
    cr_assert_eq(a.u.in6.sin6_scope_id, 4294967295u);
    int n = tt_addr_format(&a, buf, sizeof(buf));
    cr_assert_eq(n, (int)strlen(text), "returned %d: \"%s\"", n, buf);
    cr_assert_lt(n, TT_ADDR_STRLEN);
    cr_assert_str_eq(buf, text);
}

Test(addr, round_trips_parse_then_format)
{
    round_trip("1.2.3.4:80", "1.2.3.4:80");
    round_trip("0.0.0.0:0", "0.0.0.0:0");
    round_trip("255.255.255.255:65535", "255.255.255.255:65535");
    round_trip("[::1]:80", "[::1]:80");
    round_trip("[2001:db8::1]:443", "[2001:db8::1]:443");
    round_trip("[2001:0db8:0000:0000:0000:0000:0000:0001]:1", "[2001:db8::1]:1"); /* canonical */
    round_trip("[::ffff:10.0.0.1]:22", "[::ffff:10.0.0.1]:22");
    round_trip("[fe80::1%3]:80", "[fe80::1%3]:80");
    round_trip(":5000", "[::]:5000");
    round_trip("*:5000", "[::]:5000");

    char want[64];
    snprintf(want, sizeof(want), "[fe80::1%%%u]:80", if_nametoindex("lo"));
    round_trip("[fe80::1%lo]:80", want); /* names come back as numbers */
}

Test(addr, format_host_writes_only_the_host)
{
    tt_addr_t a;
    char buf[TT_ADDR_STRLEN];
    cr_assert_eq(tt_addr_parse_hostport(&a, "[fe80::2%7]:99"), 0);
    cr_assert_eq(tt_addr_format_host(&a, buf, sizeof(buf)), 9);
    cr_assert_str_eq(buf, "fe80::2%7");
}

Test(addr, from_sockaddr_copies_ipv4_and_ipv6)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    tt_addr_t a;
    char buf[TT_ADDR_STRLEN];

    memset(&ss, 0, sizeof(ss));
    sin->sin_family = AF_INET;
    sin->sin_port = htons(1234);
    sin->sin_addr.s_addr = htonl(0x7f000001);
    cr_assert_eq(tt_addr_from_sockaddr(&a, (struct sockaddr *)&ss, sizeof(ss)), 0);
    cr_assert_eq(a.len, sizeof(struct sockaddr_in));
    cr_assert_eq(tt_addr_format(&a, buf, sizeof(buf)), 14);
    cr_assert_str_eq(buf, "127.0.0.1:1234");

    memset(&ss, 0, sizeof(ss));
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(65535);
    sin6->sin6_addr = in6addr_loopback;
    sin6->sin6_scope_id = 2;
    cr_assert_eq(tt_addr_from_sockaddr(&a, (struct sockaddr *)sin6, sizeof(*sin6)), 0);
    cr_assert_eq(a.len, sizeof(struct sockaddr_in6));
    cr_assert_eq(tt_addr_port(&a), 65535);
    cr_assert_eq(tt_addr_format(&a, buf, sizeof(buf)), 13);
    cr_assert_str_eq(buf, "[::1%2]:65535");
}

Test(addr, from_sockaddr_rejects_short_lengths_and_other_families_unchanged)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    struct sockaddr_storage other = {.ss_family = AF_PACKET};
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    tt_addr_t a, before;

    memset(sun.sun_path, 'p', sizeof(sun.sun_path)); /* a path with no room for its NUL */

    memset(&a, 0x5a, sizeof(a));
    before = a;
    cr_assert_eq(tt_addr_from_sockaddr(&a, (struct sockaddr *)&sin, sizeof(sin) - 1), -EINVAL);
    cr_assert_eq(tt_addr_from_sockaddr(&a, (struct sockaddr *)&sin6, sizeof(sin6) - 1), -EINVAL);
    cr_assert_eq(tt_addr_from_sockaddr(&a, (struct sockaddr *)&other, sizeof(other)), -EINVAL);
    cr_assert_eq(tt_addr_from_sockaddr(&a, (struct sockaddr *)&sun, sizeof(sun)), -EINVAL);
    cr_assert_eq(tt_addr_from_sockaddr(&a, (struct sockaddr *)&sun, 1), -EINVAL);
    cr_assert_eq(memcmp(&a, &before, sizeof(a)), 0, "output changed on failure");
}

Test(addr, unknown_family_has_port_0_and_cannot_be_formatted)
{
    tt_addr_t a;
    char buf[TT_ADDR_STRLEN] = "keep";
    memset(&a, 0, sizeof(a));
    a.u.sa.sa_family = AF_UNIX;
    cr_assert_eq(tt_addr_port(&a), 0);
    cr_assert_eq(tt_addr_format_host(&a, buf, sizeof(buf)), -EINVAL);
    cr_assert_eq(tt_addr_format(&a, buf, sizeof(buf)), -EINVAL);
}

/* ---- Unix domain addresses ---------------------------------------------------- */

static void unix_round_trip(const char *text)
{
    tt_addr_t a, b;
    char buf[TT_ADDR_STRLEN];
    int r = tt_addr_parse_hostport(&a, text);
    cr_assert_eq(r, 0, "parse \"%s\": %d (%s)", text, r, tt_err_name(r));
    cr_assert(tt_addr_is_unix(&a));
    cr_assert_eq(tt_addr_port(&a), 0);
    r = tt_addr_format(&a, buf, sizeof(buf));
    cr_assert_eq(r, (int)strlen(text), "format \"%s\": %d \"%s\"", text, r, buf);
    cr_assert_str_eq(buf, text);
    cr_assert_eq(tt_addr_parse(&b, text, 1234), 0, "tt_addr_parse takes it too");
    cr_assert_eq(a.len, b.len);
    cr_assert_eq(memcmp(&a.u.un, &b.u.un, a.len), 0);
    cr_assert_eq(tt_addr_format_host(&a, buf, sizeof(buf)), (int)strlen(text));
    cr_assert_str_eq(buf, text);
}

Test(addr, unix_paths_and_abstract_names_round_trip)
{
    unix_round_trip("unix:/run/x.sock");
    unix_round_trip("unix:relative/x.sock");
    unix_round_trip("unix:@name");
    unix_round_trip("unix:@with:colons:80");
    unix_round_trip("unix:@tab\\x09and\\x00nul\\x5c");
}

Test(addr, unix_lengths_match_the_kernel_convention)
{
    tt_addr_t a;
    cr_assert_eq(tt_addr_parse_hostport(&a, "unix:/tmp/s"), 0);
    /* A path: family, the bytes and the NUL. */
    cr_assert_eq(a.len, offsetof(struct sockaddr_un, sun_path) + strlen("/tmp/s") + 1);
    cr_assert_str_eq(tt_addr_unix_path(&a), "/tmp/s");
    cr_assert_eq(tt_addr_parse_hostport(&a, "unix:@ab"), 0);
    /* Abstract: a leading NUL and exactly the name, no terminator. */
    cr_assert_eq(a.len, offsetof(struct sockaddr_un, sun_path) + 3);
    cr_assert_eq(a.u.un.sun_path[0], '\0');
    cr_assert_eq(memcmp(a.u.un.sun_path + 1, "ab", 2), 0);
    cr_assert_null(tt_addr_unix_path(&a));
    cr_assert_eq(tt_addr_parse_hostport(&a, "unix:@\\x00"), 0);
    cr_assert_eq(a.len, offsetof(struct sockaddr_un, sun_path) + 2);
}

Test(addr, unix_rejects_empty_and_too_long)
{
    char text[256];
    tt_addr_t a;

    cr_assert_eq(tt_addr_parse_hostport(&a, "unix:"), -EINVAL);
    cr_assert_eq(tt_addr_parse_hostport(&a, "unix:@"), -EINVAL);
    cr_assert_eq(tt_addr_parse(&a, "unix:", 0), -EINVAL);
    /* 107 path bytes fit with the NUL; 108 do not. */
    snprintf(text, sizeof(text), "unix:/%0106d", 0);
    cr_assert_eq(tt_addr_parse_hostport(&a, text), 0);
    snprintf(text, sizeof(text), "unix:/%0107d", 0);
    cr_assert_eq(tt_addr_parse_hostport(&a, text), -ENAMETOOLONG);
    snprintf(text, sizeof(text), "unix:@%0107d", 0);
    cr_assert_eq(tt_addr_parse_hostport(&a, text), 0);
    snprintf(text, sizeof(text), "unix:@%0108d", 0);
    cr_assert_eq(tt_addr_parse_hostport(&a, text), -ENAMETOOLONG);
}

Test(addr, unix_from_sockaddr_keeps_unnamed_and_formats_it)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    tt_addr_t a;
    char buf[TT_ADDR_STRLEN], small[8];

    cr_assert_eq(tt_addr_from_sockaddr(&a, (struct sockaddr *)&sun, sizeof(sa_family_t)), 0);
    cr_assert(tt_addr_is_unix(&a));
    cr_assert_eq(tt_addr_format(&a, buf, sizeof(buf)), 5);
    cr_assert_str_eq(buf, "unix:");
    strcpy(sun.sun_path, "/a/long/path");
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 13);
    cr_assert_eq(tt_addr_from_sockaddr(&a, (struct sockaddr *)&sun, len), 0);
    cr_assert_eq(a.len, len);
    cr_assert_eq(tt_addr_format(&a, small, sizeof(small)), -ENOSPC);
    cr_assert_str_eq(small, "");
}

Test(addr, unix_long_escaped_name_needs_a_bigger_buffer)
{
    tt_addr_t a;
    char text[8 + 4 * 107], big[8 + 4 * 107], buf[TT_ADDR_STRLEN];

    strcpy(text, "unix:@");
    for (int i = 0; i < 100; i++)
        strcat(text, "\\x01");
    cr_assert_eq(tt_addr_parse_hostport(&a, text), 0);
    cr_assert_eq(tt_addr_format(&a, buf, sizeof(buf)), -ENOSPC);
    cr_assert_eq(tt_addr_format(&a, big, sizeof(big)), (int)strlen(text));
    cr_assert_str_eq(big, text);
}
