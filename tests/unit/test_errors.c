/* Error codes to text: tether's own codes, system errnos, success and unknown
 * values. Callers print these unconditionally, so NULL is never acceptable. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "tether.h"

#define OWN(code) {code, #code}
static const struct {
    int code;
    const char *name;
} own_codes[] = {
    OWN(TT_EOF),        OWN(TT_EFRAMESIZE), OWN(TT_EPROTOCOL), OWN(TT_EOVERFLOW),
    OWN(TT_EIDLE),      OWN(TT_EHEARTBEAT), OWN(TT_ENOTFOUND), OWN(TT_ETEMPFAIL),
    OWN(TT_EDNSTIMEOUT), OWN(TT_ESHUTDOWN), OWN(TT_EVETO), OWN(TT_ETLS), OWN(TT_ETRUNCATED),
};
#define NOWN (sizeof(own_codes) / sizeof(own_codes[0]))

static const char *unknown_text;

static void setup(void) { unknown_text = tt_strerror(INT_MIN); }
TestSuite(errors, .init = setup);

Test(errors, own_codes_sit_below_minus_4000)
{
    for (size_t i = 0; i < NOWN; i++)
        cr_assert_lt(own_codes[i].code, -4000, "%s is %d", own_codes[i].name, own_codes[i].code);
}

Test(errors, every_own_code_has_its_symbolic_name)
{
    for (size_t i = 0; i < NOWN; i++) {
        const char *n = tt_err_name(own_codes[i].code);
        cr_assert_not_null(n, "%s: NULL name", own_codes[i].name);
        cr_assert_str_eq(n, own_codes[i].name, "code %d named \"%s\", want \"%s\"",
                         own_codes[i].code, n, own_codes[i].name);
    }
}

Test(errors, every_own_code_has_its_own_text)
{
    cr_assert_str_eq(unknown_text, "unknown error");
    for (size_t i = 0; i < NOWN; i++) {
        const char *t = tt_strerror(own_codes[i].code);
        cr_assert_not_null(t, "%s: NULL text", own_codes[i].name);
        cr_assert_gt(strlen(t), 0, "%s: empty text", own_codes[i].name);
        cr_assert_str_neq(t, unknown_text, "%s has the unknown-code text", own_codes[i].name);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(t, tt_strerror(own_codes[j].code), "%s and %s share \"%s\"",
                              own_codes[i].name, own_codes[j].name, t);
    }
}

/* A close carries a kind and an error, printed together ("kind: error text"): the
 * text of the error that goes with a kind must add to its name, not repeat it. */
Test(errors, own_code_texts_complement_the_close_kind_they_come_with)
{
    static const struct {
        tt_close_kind_t kind;
        int code;
    } pairs[] = {{TT_CLOSE_IDLE_TIMEOUT, TT_EIDLE},
                 {TT_CLOSE_HEARTBEAT_TIMEOUT, TT_EHEARTBEAT},
                 {TT_CLOSE_FRAME_TOO_LARGE, TT_EFRAMESIZE},
                 {TT_CLOSE_PROTOCOL_ERROR, TT_EPROTOCOL},
                 {TT_CLOSE_SEND_OVERFLOW, TT_EOVERFLOW},
                 {TT_CLOSE_SHUTDOWN, TT_ESHUTDOWN},
                 {TT_CLOSE_WS_ABNORMAL, TT_EOF}};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        const char *k = tt_close_kind_name(pairs[i].kind), *t = tt_strerror(pairs[i].code);
        cr_expect_null(strcasestr(t, k), "%s: \"%s: %s\" says it twice", tt_err_name(pairs[i].code),
                       k, t);
        cr_expect_null(strcasestr(k, t), "%s: \"%s: %s\" says it twice", tt_err_name(pairs[i].code),
                       k, t);
    }
}

Test(errors, system_errors_use_errno_names_and_c_library_text)
{
    static const struct {
        int err;
        const char *name;
    } sys[] = {{ECONNREFUSED, "ECONNREFUSED"}, {ETIMEDOUT, "ETIMEDOUT"},
               {EINVAL, "EINVAL"},             {ENOMEM, "ENOMEM"},
               {EBUSY, "EBUSY"},               {EPIPE, "EPIPE"},
               {ECONNRESET, "ECONNRESET"},     {ENOBUFS, "ENOBUFS"},
               {EAGAIN, "EAGAIN"},             {EADDRINUSE, "EADDRINUSE"}};
    for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
        const char *n = tt_err_name(-sys[i].err);
        cr_assert_not_null(n);
        cr_assert_str_eq(n, sys[i].name, "-%d named \"%s\"", sys[i].err, n);
        /* Criterion runs in the C locale, where strerror(3) is the plain text. */
        cr_assert_str_eq(tt_strerror(-sys[i].err), strerror(sys[i].err), "%s: \"%s\"",
                         sys[i].name, tt_strerror(-sys[i].err));
    }
}

Test(errors, success_has_a_name_and_a_text)
{
    const char *n = tt_err_name(0), *t = tt_strerror(0);
    cr_assert_not_null(n);
    cr_assert_not_null(t);
    cr_assert_gt(strlen(n), 0);
    cr_assert_gt(strlen(t), 0);
    cr_assert_str_neq(t, unknown_text, "0 reported as unknown: \"%s\"", t);
}

Test(errors, unknown_codes_give_unknown_text_never_null)
{
    /* Positive values are not error codes; -4000 and -4014.. are unassigned; 41 is
     * a hole in Linux's errno numbering; and the extremes. */
    static const int unknown[] = {INT_MIN, INT_MIN + 1, -100000, -5000, -4014, -4000,
                                  -3999,   -41,         1,       ECONNREFUSED, INT_MAX};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        const char *t = tt_strerror(unknown[i]), *n = tt_err_name(unknown[i]);
        cr_assert_not_null(t, "%d: NULL text", unknown[i]);
        cr_assert_not_null(n, "%d: NULL name", unknown[i]);
        cr_assert_gt(strlen(n), 0, "%d: empty name", unknown[i]);
        cr_assert_str_eq(t, unknown_text, "%d: text \"%s\"", unknown[i], t);
    }
}

Test(errors, no_code_from_minus_4100_to_100_gives_null)
{
    for (int e = -4100; e <= 100; e++) {
        const char *t = tt_strerror(e), *n = tt_err_name(e);
        cr_assert(t != NULL && t[0] != '\0', "tt_strerror(%d)", e);
        cr_assert(n != NULL && n[0] != '\0', "tt_err_name(%d)", e);
    }
}
