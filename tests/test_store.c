/*
 * test_store.c - the SQLite store: dedup by identity, atomic batches,
 * paging order and filters, summary counts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

static char db_path[64];
static struct agg_store *st;

static int
setup(void **state)
{
    char why[256];
    int fd;
    (void)state;
    strcpy(db_path, "/tmp/sw-store-XXXXXX");
    fd = mkstemp(db_path);
    close(fd);
    unlink(db_path);
    return agg_store_sqlite.open(&st, db_path, why, sizeof why) == SW_OK ? 0 : -1;
}

static int
teardown(void **state)
{
    char p[128];
    (void)state;
    st->ops->close(st);
    unlink(db_path);
    snprintf(p, sizeof p, "%s-wal", db_path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", db_path);
    unlink(p);
    return 0;
}

static struct sw_event
ev_at(int64_t ts, const char *device, enum sw_stage stage, uint32_t h)
{
    struct sw_event e;
    memset(&e, 0, sizeof e);
    e.source = SW_SOURCE_ANDROID_OMADM;
    e.platform = SW_PLATFORM_ANDROID;
    e.stage = stage;
    e.cert = SW_CERT_SCEP;
    e.ts_us = ts;
    e.device = sw_slice_cstr(device);
    e.line_hash = h;
    e.file = sw_slice_cstr("f.log");
    e.has_offset = 1;
    e.offset = h;
    return e;
}

struct collected {
    int n;
    int64_t ts[64];
    char device[64][16];
};

static void
collect(void *arg, const struct sw_event *ev)
{
    struct collected *c = arg;
    c->ts[c->n] = ev->ts_us;
    snprintf(c->device[c->n], sizeof c->device[0], "%.*s", (int)ev->device.len, ev->device.ptr);
    c->n++;
}

static void
test_dedup_and_paging(void **state)
{
    struct sw_event evs[6];
    struct agg_store_reader *r;
    uint32_t stored, dups;
    uint64_t count;

    (void)state;
    for (int i = 0; i < 6; i++)
        evs[i] = ev_at(1000 - i * 10, i % 2 ? "A" : "B", SW_STAGE_INSTALLED, (uint32_t)i);
    assert_int_equal(st->ops->ingest(st, evs, 6, "agent", &stored, &dups), SW_OK);
    assert_int_equal(stored, 6);
    assert_int_equal(dups, 0);
    /* the same events again, read from another file and offset: all duplicates */
    for (int i = 0; i < 6; i++) {
        evs[i].file = sw_slice_cstr("copy.log");
        evs[i].offset += 100;
    }
    assert_int_equal(st->ops->ingest(st, evs, 6, "agent2", &stored, &dups), SW_OK);
    assert_int_equal(stored, 0);
    assert_int_equal(dups, 6);
    /* a batch that repeats one event inside itself stores it once */
    struct sw_event twice[2] = { ev_at(5, "C", SW_STAGE_ENROLL_FAILED, 77),
                                 ev_at(5, "C", SW_STAGE_ENROLL_FAILED, 77) };
    assert_int_equal(st->ops->ingest(st, twice, 2, "agent", &stored, &dups), SW_OK);
    assert_int_equal(stored, 1);
    assert_int_equal(dups, 1);

    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->count_events(r, &count), SW_OK);
    assert_int_equal(count, 7);
    /* pages of 3, oldest first, each event once */
    struct agg_event_filter f = { 0 };
    struct agg_event_cursor cur = { 0 };
    struct collected c = { 0 };
    int more = 1, pages = 0;
    while (more) {
        assert_int_equal(r->ops->list_events(r, &f, &cur, 3, &more, collect, &c), SW_OK);
        pages++;
    }
    assert_int_equal(pages, 3);
    assert_int_equal(c.n, 7);
    for (int i = 1; i < c.n; i++)
        assert_true(c.ts[i - 1] <= c.ts[i]);
    assert_int_equal(c.ts[0], 5);
    /* filter by device and time */
    memset(&c, 0, sizeof c);
    memset(&cur, 0, sizeof cur);
    f.device = "A";
    f.since_us = 960;
    assert_int_equal(r->ops->list_events(r, &f, &cur, 100, &more, collect, &c), SW_OK);
    assert_int_equal(c.n, 2); /* ts 990 and 970 */
    assert_false(more);
    assert_string_equal(c.device[0], "A");
    r->ops->reader_close(r);
}

static void
funnel_row(void *arg, const struct agg_funnel_row *row)
{
    struct agg_funnel_row *out = arg;
    if (row->platform == SW_PLATFORM_ANDROID)
        *out = *row;
}

static void
test_funnel(void **state)
{
    struct agg_store_reader *r;
    struct agg_funnel_row row = { 0 };
    struct agg_policy pol = { .as_of_us = 2000 };
    (void)state;
    for (int i = 0; i < AGG_STATUS_COUNT; i++)
        pol.threshold_us[i] = 100;
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->funnel(r, &pol, funnel_row, &row), SW_OK);
    /* devices A, B and C: A and B installed (final stage without access: Android
     * counts access_granted), C failed */
    assert_int_equal(row.platform, SW_PLATFORM_ANDROID);
    assert_int_equal(row.enrollments, 3);
    assert_int_equal(row.failed, 1);
    assert_int_equal(row.installed, 0);
    assert_int_equal(row.stuck, 2);     /* waiting since ts < 2000 - 100 */
    r->ops->reader_close(r);
}

/* Correlation marks commit with the events: a store stopped before its correlator
 * got to them works them off after the next start. */
static void
test_marks_survive_a_stop(void **state)
{
    struct agg_store_reader *r;
    struct agg_funnel_row row = { 0 };
    struct agg_policy pol = { .as_of_us = 2000 };
    struct sw_event e = ev_at(1500, "D", SW_STAGE_ENROLL_REQUESTED, 91);
    uint32_t stored, dups;
    char why[256];
    (void)state;
    for (int i = 0; i < AGG_STATUS_COUNT; i++)
        pol.threshold_us[i] = 100;
    assert_int_equal(st->ops->ingest(st, &e, 1, "agent", &stored, &dups), SW_OK);
    assert_int_equal(stored, 1);
    /* at once: the correlator waits for 100 ms of quiet, so the mark is still waiting */
    st->ops->close(st);
    st = NULL;
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->funnel(r, &pol, funnel_row, &row), SW_OK);
    assert_int_equal(r->ops->backlog(r), 0);
    assert_int_equal(row.enrollments, 4);
    assert_int_equal(row.requested, 1);
    r->ops->reader_close(r);
}

/* A database written with another identity layout is refused with a reason. */
static void
test_old_schema_refused(void **state)
{
    struct agg_store *s2 = NULL;
    char why[256] = "", path[96], cmd[256];
    (void)state;
    snprintf(path, sizeof path, "%s-old", db_path);
    snprintf(cmd, sizeof cmd, "sqlite3 %s \"CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
             " INSERT INTO meta VALUES('schema_version', '1')\"", path);
    if (system(cmd) != 0) {
        unlink(path);
        skip();     /* no sqlite3 shell here */
    }
    assert_int_equal(agg_store_sqlite.open(&s2, path, why, sizeof why), SW_EDB);
    assert_null(s2);
    assert_non_null(strstr(why, "schema version 1"));
    unlink(path);
}

static void
test_open_failure_is_reported(void **state)
{
    struct agg_store *s2 = NULL;
    char why[256] = "";
    (void)state;
    assert_int_equal(agg_store_sqlite.open(&s2, "/nonexistent-dir/x/y.db", why, sizeof why), SW_EDB);
    assert_null(s2);
    assert_non_null(strstr(why, "/nonexistent-dir/x/y.db"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedup_and_paging),
        cmocka_unit_test(test_funnel),
        cmocka_unit_test(test_marks_survive_a_stop),
        cmocka_unit_test(test_old_schema_refused),
        cmocka_unit_test(test_open_failure_is_reported),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
