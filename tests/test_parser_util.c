/*
 * test_parser_util.c - the parsers' string helpers against the library
 * functions they stand in for: agent_find is memmem's answer for every
 * haystack and needle over a small alphabet (so matches, near misses,
 * overlaps and both ends come up often), agent_starts_with memcmp's.
 */
/* memmem, the reference: _GNU_SOURCE comes from the build */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "parser.h"

/* A generator of its own: the cases are the same on every run. */
static uint32_t
next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void
fill(char *buf, size_t n, uint32_t *s)
{
    /* lower case, space, and bytes agent_find may pick to scan for */
    static const char alphabet[] = "ab =A'";
    for (size_t i = 0; i < n; i++)
        buf[i] = alphabet[next_rand(s) % (sizeof alphabet - 1)];
}

static void
test_find_is_memmem(void **state)
{
    char hay[40], needle[8];
    uint32_t s = 2463534242u;
    int found = 0;
    (void)state;
    for (int i = 0; i < 200000; i++) {
        size_t n = next_rand(&s) % sizeof hay, k = 1 + next_rand(&s) % (sizeof needle - 1);
        fill(hay, n, &s);
        fill(needle, k, &s);
        needle[k] = '\0';
        /* a planted copy now and then: at the start, the end, or inside */
        if (n >= k && next_rand(&s) % 2)
            memcpy(hay + next_rand(&s) % (n - k + 1), needle, k);
        const char *want = n ? memmem(hay, n, needle, k) : NULL;
        const char *got = agent_find(hay, n, needle);
        if (got != want)
            fail_msg("case %d: hay '%.*s' needle '%s': offset %td, memmem %td", i, (int)n, hay,
                     needle, got ? got - hay : -1, want ? want - hay : -1);
        found += got != NULL;
    }
    assert_true(found > 50000);     /* the cases are not all misses */
}

static void
test_find_edges(void **state)
{
    static const char line[] = "GET /x?operation=GetCACert&message=y";
    (void)state;
    assert_null(agent_find(NULL, 0, "a"));
    assert_null(agent_find(line, 0, "G"));
    assert_ptr_equal(agent_find(line, sizeof line - 1, ""), line);
    assert_ptr_equal(agent_find(line, sizeof line - 1, "GET"), line);
    assert_ptr_equal(agent_find(line, sizeof line - 1, "operation="), line + 7);
    assert_ptr_equal(agent_find(line, sizeof line - 1, "=y"), line + sizeof line - 3);
    /* the needle's scan byte ('=') found, the rest not: on to the next */
    assert_null(agent_find(line, sizeof line - 1, "operation=PKIOperation"));
    /* a needle longer than the text */
    assert_null(agent_find("ab", 2, "abc"));
    /* the text ends inside a match */
    assert_null(agent_find(line, 15, "operation="));
}

static void
test_starts_with(void **state)
{
    (void)state;
    assert_true(agent_starts_with("SCEP cert 'x'", 13, "SCEP cert '"));
    assert_false(agent_starts_with("SCEP cer", 8, "SCEP cert '"));
    assert_false(agent_starts_with("Root cert 'x'", 13, "SCEP cert '"));
    assert_true(agent_starts_with("x", 1, ""));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_is_memmem),
        cmocka_unit_test(test_find_edges),
        cmocka_unit_test(test_starts_with),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
