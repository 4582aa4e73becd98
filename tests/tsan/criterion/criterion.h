/* A stand-in for the part of Criterion's API the cross-thread tests use, for the
 * ThreadSanitizer build only: Criterion itself cannot start under TSan (its
 * inheritable arena fails to map; Criterion issue #274). The same test sources
 * compile against this header; runner.c runs each test in a child process and
 * prints "N passed, N failed". Messages follow Criterion's format arguments. */
#ifndef TT_TSAN_CRITERION_SHIM_H
#define TT_TSAN_CRITERION_SHIM_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tt_shim_test {
    const char *suite, *name;
    void (*fn)(void);
    struct tt_shim_test *next;
} tt_shim_test_t;

void tt_shim_register(tt_shim_test_t *t);
/* Record a failed check; `fatal` ends the test (the child exits). */
void tt_shim_fail(const char *file, int line, bool fatal, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define Test(suite_, name_, ...)                                                                   \
    static void suite_##_##name_(void);                                                          \
    static tt_shim_test_t suite_##_##name_##_desc = {#suite_, #name_, suite_##_##name_, NULL};     \
    __attribute__((constructor)) static void suite_##_##name_##_reg(void)                        \
    {                                                                                              \
        tt_shim_register(&suite_##_##name_##_desc);                                              \
    }                                                                                              \
    static void suite_##_##name_(void)

/* The message arguments are optional, as in Criterion: "" "..." keeps a bare
 * condition valid as a format string. */
#define TT_SHIM_CHECK(fatal, cond, ...)                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            tt_shim_fail(__FILE__, __LINE__, fatal, "" __VA_ARGS__);                               \
    } while (0)

#define cr_assert(cond, ...) TT_SHIM_CHECK(true, (cond), __VA_ARGS__)
#define cr_expect(cond, ...) TT_SHIM_CHECK(false, (cond), __VA_ARGS__)
#define cr_assert_eq(a, b, ...) TT_SHIM_CHECK(true, (a) == (b), __VA_ARGS__)
#define cr_expect_eq(a, b, ...) TT_SHIM_CHECK(false, (a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) TT_SHIM_CHECK(true, (a) != (b), __VA_ARGS__)
#define cr_expect_neq(a, b, ...) TT_SHIM_CHECK(false, (a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) TT_SHIM_CHECK(true, (a) < (b), __VA_ARGS__)
#define cr_expect_lt(a, b, ...) TT_SHIM_CHECK(false, (a) < (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) TT_SHIM_CHECK(true, (a) > (b), __VA_ARGS__)
#define cr_expect_gt(a, b, ...) TT_SHIM_CHECK(false, (a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) TT_SHIM_CHECK(true, (a) >= (b), __VA_ARGS__)
#define cr_expect_geq(a, b, ...) TT_SHIM_CHECK(false, (a) >= (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) TT_SHIM_CHECK(true, (a) <= (b), __VA_ARGS__)
#define cr_expect_leq(a, b, ...) TT_SHIM_CHECK(false, (a) <= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) TT_SHIM_CHECK(true, (p) == NULL, __VA_ARGS__)
#define cr_expect_null(p, ...) TT_SHIM_CHECK(false, (p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) TT_SHIM_CHECK(true, (p) != NULL, __VA_ARGS__)
#define cr_expect_not_null(p, ...) TT_SHIM_CHECK(false, (p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) TT_SHIM_CHECK(true, strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) TT_SHIM_CHECK(false, strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_log_info(...) (fprintf(stderr, "[----] " __VA_ARGS__), fputc('\n', stderr))
#define cr_log_warn(...) cr_log_info(__VA_ARGS__)
#define cr_skip(...) (cr_log_info("skipped: " __VA_ARGS__), exit(77))
#define cr_skip_test(...) cr_skip(__VA_ARGS__)

#endif
