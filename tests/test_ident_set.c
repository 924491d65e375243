/*
 * The events writer's identity set: every id under a fingerprint is found,
 * however the table grew and whatever else shares the slots; nothing is
 * found that was not added.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "ident_set.h"

/* The ids under fp, as a bit set of the first 64 ids; -1 past them. */
static int64_t
ids_under(const struct ident_set *s, uint64_t fp, int *count)
{
    struct ident_probe p;
    int64_t id, bits = 0;
    *count = 0;
    ident_set_probe(s, fp, &p);
    while (ident_set_next(s, &p, &id)) {
        assert_true(id >= 0 && id < 63);
        bits |= (int64_t)1 << id;
        (*count)++;
    }
    return bits;
}

static void
test_empty_set_finds_nothing(void **state)
{
    struct ident_set s;
    struct ident_probe p;
    int64_t id;
    (void)state;
    ident_set_init(&s);
    ident_set_probe(&s, 42, &p);
    assert_false(ident_set_next(&s, &p, &id));
    ident_set_fini(&s);
}

/* Ids sharing a fingerprint are all given back, and no other. */
static void
test_shared_fingerprints(void **state)
{
    struct ident_set s;
    int n;
    (void)state;
    ident_set_init(&s);
    assert_int_equal(ident_set_add(&s, 7, 1, NULL), SW_OK);
    assert_int_equal(ident_set_add(&s, 7, 5, NULL), SW_OK);
    /* another fingerprint in the same home slot, and one next to it */
    assert_int_equal(ident_set_add(&s, 7 + 1024 * 3, 9, NULL), SW_OK);
    assert_int_equal(ident_set_add(&s, 8, 11, NULL), SW_OK);
    assert_int_equal(ident_set_add(&s, 7, 12, NULL), SW_OK);
    assert_int_equal(ids_under(&s, 7, &n), (1 << 1) | (1 << 5) | (1 << 12));
    assert_int_equal(n, 3);
    assert_int_equal(ids_under(&s, 8, &n), 1 << 11);
    assert_int_equal(ids_under(&s, 7 + 1024 * 3, &n), 1 << 9);
    assert_int_equal(ids_under(&s, 6, &n), 0);
    assert_int_equal(n, 0);
    /* fingerprint 0 marks an empty slot: it is kept as 1 */
    assert_int_equal(ident_set_add(&s, 0, 20, NULL), SW_OK);
    assert_int_equal(ids_under(&s, 0, &n), 1 << 20);
    assert_int_equal(ids_under(&s, 1, &n), 1 << 20);
    ident_set_fini(&s);
    ident_set_init(&s);
    assert_int_equal(ids_under(&s, 7, &n), 0);
    assert_int_equal(s.n, 0);
    ident_set_fini(&s);
}

/* Growing past the huge-page size keeps every entry findable. */
static void
test_growth_keeps_everything(void **state)
{
    struct ident_set s;
    const size_t n = 400000;    /* 1M slots: a 16 MiB mapped table */
    (void)state;
    ident_set_init(&s);
    for (size_t i = 0; i < n; i++) {
        unsigned char ident[24];
        memset(ident, 0, sizeof ident);
        memcpy(ident, &i, sizeof i);
        uint64_t fp = ident_set_fp(&s, ident, sizeof ident);
        assert_int_equal(ident_set_add(&s, fp, (int64_t)i + 1, NULL), SW_OK);
    }
    assert_int_equal(s.n, n);
    assert_true(s.cap >= n + n / 3);
    assert_true(ident_set_bytes(&s) >= (size_t)16 << 20);
    for (size_t i = 0; i < n; i += 997) {
        unsigned char ident[24];
        struct ident_probe p;
        int64_t id;
        int found = 0;
        memset(ident, 0, sizeof ident);
        memcpy(ident, &i, sizeof i);
        ident_set_probe(&s, ident_set_fp(&s, ident, sizeof ident), &p);
        while (ident_set_next(&s, &p, &id))
            found += id == (int64_t)i + 1;
        assert_int_equal(found, 1);
    }
    /* reserve: room for more without moving the table */
    assert_int_equal(ident_set_reserve(&s, 1000), SW_OK);
    const struct ident_slot *before = s.slots;
    for (size_t i = 0; i < 1000; i++)
        assert_int_equal(ident_set_add(&s, (uint64_t)i * 31 + 5, 1, NULL), SW_OK);
    assert_ptr_equal(s.slots, before);
    assert_int_equal(ident_set_reserve(&s, SIZE_MAX), SW_ENOMEM);
    ident_set_fini(&s);
}

/*
 * A batch's adds taken back newest first leave the table as it was, chains
 * through the batch's slots included; a finished set starts over cleanly.
 */
static void
test_undo_restores_the_table(void **state)
{
    struct ident_set s;
    size_t slots[8];
    int n;
    (void)state;
    ident_set_init(&s);
    assert_int_equal(ident_set_add(&s, 7, 1, NULL), SW_OK);
    assert_int_equal(ident_set_reserve(&s, 8), SW_OK);
    /* the batch: two more in slot 7's chain, and one where the chain ran on to */
    assert_int_equal(ident_set_add(&s, 7, 2, &slots[0]), SW_OK);
    assert_int_equal(ident_set_add(&s, 7 + 1024, 3, &slots[1]), SW_OK);
    assert_int_equal(ident_set_add(&s, 9, 4, &slots[2]), SW_OK);
    assert_int_equal(slots[0], 8);
    assert_int_equal(slots[1], 9);
    assert_int_equal(slots[2], 10);
    assert_int_equal(s.n, 4);
    ident_set_undo(&s, slots, 3);
    assert_int_equal(s.n, 1);
    assert_int_equal(ids_under(&s, 7, &n), 1 << 1);
    assert_int_equal(n, 1);
    assert_int_equal(ids_under(&s, 9, &n), 0);
    assert_int_equal(ids_under(&s, 7 + 1024, &n), 0);
    /* the freed slots serve again */
    assert_int_equal(ident_set_add(&s, 9, 5, &slots[0]), SW_OK);
    assert_int_equal(slots[0], 9);
    assert_int_equal(ids_under(&s, 9, &n), 1 << 5);

    ident_set_fini(&s);
    ident_set_init(&s);
    assert_int_equal(ids_under(&s, 7, &n), 0);
    assert_int_equal(ident_set_add(&s, 7, 6, NULL), SW_OK);
    assert_int_equal(ids_under(&s, 7, &n), 1 << 6);
    ident_set_fini(&s);

    /* from empty straight to a mapped (huge-page) table, then back to nothing */
    ident_set_init(&s);
    assert_int_equal(ident_set_reserve(&s, 300000), SW_OK);
    assert_true(ident_set_bytes(&s) >= (size_t)4 << 20);
    assert_int_equal(ident_set_add(&s, 12345, 7, NULL), SW_OK);
    assert_int_equal(ids_under(&s, 12345, &n), 1 << 7);
    ident_set_fini(&s);
    assert_int_equal(ident_set_bytes(&s), 0);
}

/*
 * Fingerprints: never 0, different for identities that differ in any byte,
 * the same within a set, and another set's differ (its own random key).
 */
static void
test_fingerprints(void **state)
{
    struct ident_set s, t;
    unsigned char a[24] = { 0 }, b[24];
    (void)state;
    ident_set_init(&s);
    ident_set_init(&t);
    assert_int_not_equal(s.key, t.key);
    assert_int_not_equal(ident_set_fp(&s, a, sizeof a), 0);
    assert_int_equal(ident_set_fp(&s, a, sizeof a), ident_set_fp(&s, a, sizeof a));
    assert_int_not_equal(ident_set_fp(&s, a, sizeof a), ident_set_fp(&t, a, sizeof a));
    for (size_t i = 0; i < sizeof a; i++) {
        memcpy(b, a, sizeof a);
        b[i] ^= 1;
        assert_int_not_equal(ident_set_fp(&s, a, sizeof a), ident_set_fp(&s, b, sizeof b));
    }
    assert_int_not_equal(ident_set_fp(&s, a, 23), ident_set_fp(&s, a, 24));
    ident_set_fini(&s);
    ident_set_fini(&t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_set_finds_nothing),
        cmocka_unit_test(test_shared_fingerprints),
        cmocka_unit_test(test_growth_keeps_everything),
        cmocka_unit_test(test_undo_restores_the_table),
        cmocka_unit_test(test_fingerprints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
