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
#include <pthread.h>
#include <time.h>
#include <sqlite3.h>

#include "store.h"
#include "store_correlate.h"
#include "th.h"

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
    (void)state;
    if (st)
        st->ops->close(st);
    th_unlink_db(db_path);
    return 0;
}

/* Runs SQL on a database of its own connection; returns the first column of the last row. */
static int64_t
sql_on(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    const char *tail = sql;
    int64_t v = -1;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    while (tail && *tail) {
        assert_int_equal(sqlite3_prepare_v2(db, tail, -1, &s, &tail), SQLITE_OK);
        if (!s)
            break;
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            v = sqlite3_column_int64(s, 0);
        assert_int_equal(rc, SQLITE_DONE);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return v;
}

/* An event's identity as SQL blob hex (X'...'), for rows written behind the store's back. */
static void
ident_hex(const struct sw_event *e, char hex[2 * SW_EVENT_IDENT_LEN + 1])
{
    unsigned char ident[SW_EVENT_IDENT_LEN];
    sw_event_identity(e, ident);
    for (int i = 0; i < SW_EVENT_IDENT_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", ident[i]);
}

/* Ingests n events and checks how many were stored and how many were duplicates. */
static void
ingest_expect(struct agg_store *to, struct sw_event *evs, size_t n, uint32_t want_stored,
              uint32_t want_dups)
{
    uint32_t stored, dups;
    assert_int_equal(to->ops->ingest(to, evs, n, "agent", &stored, &dups), SW_OK);
    assert_int_equal(stored, want_stored);
    assert_int_equal(dups, want_dups);
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
    char why[256], sql[640], hex[2 * SW_EVENT_IDENT_LEN + 1];
    (void)state;
    for (int i = 0; i < AGG_STATUS_COUNT; i++)
        pol.threshold_us[i] = 100;
    /* the state a stop leaves when it comes between a batch's commit and its
     * correlation: an event and its mark, and nothing derived from them */
    st->ops->close(st);
    st = NULL;
    ident_hex(&e, hex);
    snprintf(sql, sizeof sql,
             "INSERT INTO events(ident, device, source, platform, stage, cert, ts_us, line_hash,"
             " received_us) VALUES(X'%s', 'D', %d, %d, %d, %d, 1500, 91, 0);"
             "INSERT INTO dirty_dev(device, gen) VALUES('D', 7);"
             "SELECT COUNT(*) FROM dirty_dev;", hex, SW_SOURCE_ANDROID_OMADM, SW_PLATFORM_ANDROID,
             SW_STAGE_ENROLL_REQUESTED, SW_CERT_SCEP);
    assert_int_equal(sql_on(db_path, sql), 1);
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->funnel(r, &pol, funnel_row, &row), SW_OK);
    assert_int_equal(r->ops->backlog(r), 0);
    assert_int_equal(row.enrollments, 4);
    assert_int_equal(row.requested, 1);
    r->ops->reader_close(r);
}

/*
 * A device marked again by a batch that commits while a correlation step
 * works on it stays marked (that step read its events before the batch):
 * the step removes only marks of batches it had seen.
 */
static void
test_mark_made_during_a_step_stays(void **state)
{
    char derived[128], why[256];
    sqlite3 *wdb, *cdb;
    struct agg_corr *c;
    int idle = 0;
    (void)state;
    st->ops->close(st);     /* its correlator must not take the marks */
    st = NULL;
    snprintf(derived, sizeof derived, "%s-derived", db_path);
    assert_int_equal(sqlite3_open(db_path, &wdb), SQLITE_OK);
    assert_int_equal(sqlite3_open(derived, &cdb), SQLITE_OK);
    sqlite3_busy_timeout(wdb, 5000);
    sqlite3_busy_timeout(cdb, 5000);
    char attach[200];
    snprintf(attach, sizeof attach, "ATTACH '%s' AS ev", db_path);
    assert_int_equal(sqlite3_exec(cdb, attach, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(agg_corr_open(cdb, wdb, 1000, &c), SW_OK);

    assert_int_equal(sqlite3_exec(wdb, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    agg_corr_batch_begin(c, 100);
    assert_int_equal(agg_corr_mark_device(c, "E", 1), SW_OK);
    assert_int_equal(sqlite3_exec(wdb, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    /* a step reads the mark ... */
    assert_int_equal(sqlite3_exec(cdb, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(agg_corr_step(c, &idle), SW_OK);
    assert_false(idle);
    assert_true(agg_corr_finish_pending(c));
    /* ... a batch marks the device again before the step commits ... */
    assert_int_equal(sqlite3_exec(wdb, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    agg_corr_batch_begin(c, 101);
    assert_int_equal(agg_corr_mark_device(c, "E", 1), SW_OK);
    assert_int_equal(sqlite3_exec(wdb, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(cdb, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(agg_corr_finish(c), SW_OK);
    /* ... so the mark stays, for the next step */
    assert_int_equal(sql_on(db_path, "SELECT gen FROM dirty_dev WHERE device = 'E'"), 101);
    assert_int_equal(sqlite3_exec(cdb, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(agg_corr_step(c, &idle), SW_OK);
    assert_int_equal(sqlite3_exec(cdb, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(agg_corr_finish(c), SW_OK);
    assert_int_equal(sql_on(db_path, "SELECT COUNT(*) FROM dirty_dev WHERE device = 'E'"), 0);
    agg_corr_close(c);
    sqlite3_close(cdb);
    sqlite3_close(wdb);
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
}

/* The derived database is what the events say: deleted, it is rebuilt the same. */
static void
test_derived_database_rebuilt(void **state)
{
    struct agg_store_reader *r;
    struct agg_funnel_row before = { 0 }, after = { 0 };
    struct agg_policy pol = { .as_of_us = 2000 };
    char derived[128], why[256];
    (void)state;
    for (int i = 0; i < AGG_STATUS_COUNT; i++)
        pol.threshold_us[i] = 100;
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->funnel(r, &pol, funnel_row, &before), SW_OK);
    r->ops->reader_close(r);
    assert_true(before.enrollments > 0);
    st->ops->close(st);
    st = NULL;
    snprintf(derived, sizeof derived, "%s-derived", db_path);
    th_unlink_db(derived);
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->funnel(r, &pol, funnel_row, &after), SW_OK);
    assert_int_equal(r->ops->backlog(r), 0);
    r->ops->reader_close(r);
    assert_int_equal(after.platform, before.platform);
    assert_int_equal(after.enrollments, before.enrollments);
    assert_int_equal(after.requested, before.requested);
    assert_int_equal(after.issued, before.issued);
    assert_int_equal(after.delivered, before.delivered);
    assert_int_equal(after.installed, before.installed);
    assert_int_equal(after.stuck, before.stuck);
    assert_int_equal(after.failed, before.failed);
}

/*
 * A database of this version written before the derived tables moved to a
 * file of their own: its marks gain their batch number, its derived tables
 * go, and the derived database is built from its events.
 */
static void
test_pre_split_layout_migrated(void **state)
{
    struct agg_store_reader *r;
    struct agg_funnel_row row = { 0 };
    struct agg_policy pol = { .as_of_us = 2000 };
    char derived[128], why[256];
    (void)state;
    for (int i = 0; i < AGG_STATUS_COUNT; i++)
        pol.threshold_us[i] = 100;
    st->ops->close(st);
    st = NULL;
    snprintf(derived, sizeof derived, "%s-derived", db_path);
    th_unlink_db(derived);
    sql_on(db_path, "ALTER TABLE dirty_dev DROP COLUMN gen; ALTER TABLE dirty_req DROP COLUMN gen;"
                    "CREATE TABLE enrollments(id INTEGER PRIMARY KEY, stale TEXT);"
                    "INSERT INTO meta VALUES('corr_version', '3');");
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
    assert_int_equal(sql_on(db_path, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'enrollments'"), 0);
    assert_int_equal(sql_on(db_path, "SELECT COUNT(*) FROM pragma_table_info('dirty_dev')"
                                     " WHERE name = 'gen'"), 1);
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->funnel(r, &pol, funnel_row, &row), SW_OK);
    r->ops->reader_close(r);
    assert_int_equal(row.enrollments, 4);
}

/*
 * A new events database has 16 KiB pages (fewer WAL frames a commit); one
 * an older version made keeps its 4 KiB pages, and works as before.
 */
static void
test_events_page_size(void **state)
{
    struct agg_store *old;
    struct agg_store_reader *r;
    struct sw_event evs[2];
    uint32_t stored, dups;
    uint64_t count;
    char path[128], why[256];
    (void)state;
    assert_int_equal(sql_on(db_path, "PRAGMA page_size"), 16384);
    snprintf(path, sizeof path, "%s-old", db_path);
    sql_on(path, "PRAGMA page_size=4096; CREATE TABLE made_earlier(x);");
    assert_int_equal(agg_store_sqlite.open(&old, path, why, sizeof why), SW_OK);
    evs[0] = ev_at(1000, "P", SW_STAGE_ENROLL_REQUESTED, 1);
    evs[1] = ev_at(1010, "P", SW_STAGE_INSTALLED, 2);
    assert_int_equal(old->ops->ingest(old, evs, 2, "a", &stored, &dups), SW_OK);
    assert_int_equal(stored, 2);
    assert_int_equal(old->ops->reader_open(old, &r), SW_OK);
    assert_int_equal(r->ops->count_events(r, &count), SW_OK);
    assert_int_equal(count, 2);
    r->ops->reader_close(r);
    old->ops->close(old);
    assert_int_equal(sql_on(path, "PRAGMA page_size"), 4096);
    th_unlink_db(path);
}

/*
 * The fleet's events in time order come from the derived time index and,
 * past its mark, from the events themselves: the two halves merge into one
 * order, each event once, across pages.
 */
static void
test_listing_merges_the_unindexed_tail(void **state)
{
    struct agg_store_reader *r;
    struct agg_funnel_row row = { 0 };
    struct agg_policy pol = { .as_of_us = 2000 };
    struct sw_event evs[8];
    uint32_t stored, dups;
    uint64_t total;
    char why[256];
    (void)state;
    /* indexed: the correlator has caught up when the funnel answers */
    for (int i = 0; i < 4; i++)
        evs[i] = ev_at(3000 + i * 20, "M", SW_STAGE_INSTALLED, 500 + (uint32_t)i);
    assert_int_equal(st->ops->ingest(st, evs, 4, "agent", &stored, &dups), SW_OK);
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->funnel(r, &pol, funnel_row, &row), SW_OK);
    assert_int_equal(r->ops->backlog(r), 0);
    r->ops->reader_close(r);
    st->ops->close(st);
    /* not indexed: no correlator; times interleave with the indexed ones */
    setenv("SCEPWATCH_TEST_NO_CORRELATOR", "1", 1);
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
    unsetenv("SCEPWATCH_TEST_NO_CORRELATOR");
    for (int i = 0; i < 4; i++)
        evs[i] = ev_at(3010 + i * 20, "N", SW_STAGE_INSTALLED, 600 + (uint32_t)i);
    evs[3].ts_us = 3000;    /* the same time as an indexed one: id decides */
    assert_int_equal(st->ops->ingest(st, evs, 4, "agent", &stored, &dups), SW_OK);
    assert_int_equal(stored, 4);
    char derived[128];
    snprintf(derived, sizeof derived, "%s-derived", db_path);
    assert_int_equal(sql_on(derived, "SELECT COUNT(*) FROM event_time WHERE ts_us >= 2990"), 4);
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->count_events(r, &total), SW_OK);
    struct agg_event_filter f = { .since_us = 2990 };
    struct agg_event_cursor cur = { 0 };
    struct collected c = { 0 };
    int more = 1;
    while (more)
        assert_int_equal(r->ops->list_events(r, &f, &cur, 3, &more, collect, &c), SW_OK);
    assert_int_equal(c.n, 8);
    static const int64_t want[8] = { 3000, 3000, 3010, 3020, 3030, 3040, 3050, 3060 };
    for (int i = 0; i < 8; i++)
        assert_int_equal(c.ts[i], want[i]);
    assert_string_equal(c.device[0], "M");     /* indexed first: the smaller id */
    assert_string_equal(c.device[1], "N");
    /* and with no filter: every stored event once */
    memset(&c, 0, sizeof c);
    memset(&cur, 0, sizeof cur);
    memset(&f, 0, sizeof f);
    more = 1;
    int n = 0;
    while (more) {
        c.n = 0;
        assert_int_equal(r->ops->list_events(r, &f, &cur, 5, &more, collect, &c), SW_OK);
        n += c.n;
    }
    assert_int_equal((uint64_t)n, total);
    /* one device: its indexed events (event_dev) merged with its unindexed ones */
    struct sw_event more_m[2] = { ev_at(3005, "M", SW_STAGE_INSTALLED, 700),
                                  ev_at(3100, "M", SW_STAGE_INSTALLED, 701) };
    assert_int_equal(st->ops->ingest(st, more_m, 2, "agent", &stored, &dups), SW_OK);
    assert_int_equal(stored, 2);
    static const int64_t want_m[6] = { 3000, 3005, 3020, 3040, 3060, 3100 };
    static const int64_t want_n[4] = { 3000, 3010, 3030, 3050 };
    for (int k = 0; k < 2; k++) {
        memset(&c, 0, sizeof c);
        memset(&cur, 0, sizeof cur);
        memset(&f, 0, sizeof f);
        f.device = k ? "N" : "M";
        more = 1;
        while (more)
            assert_int_equal(r->ops->list_events(r, &f, &cur, 4, &more, collect, &c), SW_OK);
        assert_int_equal(c.n, k ? 4 : 6);
        for (int i = 0; i < c.n; i++) {
            assert_int_equal(c.ts[i], k ? want_n[i] : want_m[i]);
            assert_string_equal(c.device[i], f.device);
        }
    }
    r->ops->reader_close(r);
    st->ops->close(st);
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
}

/*
 * Identities are remembered across a restart (read back from the table),
 * and a batch that rolled back forgets those it had added (ident_set_undo;
 * were one left, seen would still confirm it against its row): its events
 * are stored when they come again.
 */
static void
test_identities_survive_restart_and_rollback(void **state)
{
    struct sw_event evs[3], later[3];
    struct agg_store_reader *r;
    struct agg_funnel_row row = { 0 };
    struct agg_policy pol = { .as_of_us = 8000 };
    uint32_t stored, dups;
    char why[256], derived[128];
    (void)state;
    for (int i = 0; i < 3; i++) {
        evs[i] = ev_at(7000 + i, "R", SW_STAGE_INSTALLED, 900 + (uint32_t)i);
        later[i] = ev_at(7050 + i, "R", SW_STAGE_INSTALLED, 920 + (uint32_t)i);
    }
    assert_int_equal(st->ops->ingest(st, evs, 3, "agent", &stored, &dups), SW_OK);
    assert_int_equal(stored, 3);
    /* the correlator indexes them (event_dev) before the funnel answers */
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->funnel(r, &pol, funnel_row, &row), SW_OK);
    r->ops->reader_close(r);
    st->ops->close(st);
    /* more, which no correlator indexes: read back from the events table */
    setenv("SCEPWATCH_TEST_NO_CORRELATOR", "1", 1);
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
    assert_int_equal(st->ops->ingest(st, later, 3, "agent", &stored, &dups), SW_OK);
    assert_int_equal(stored, 3);
    st->ops->close(st);
    snprintf(derived, sizeof derived, "%s-derived", db_path);
    /* the first three indexed, the later three not */
    assert_int_equal(sql_on(derived, "SELECT MAX(id) FROM event_dev"),
                     sql_on(db_path, "SELECT MAX(id) FROM events") - 3);
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
    unsetenv("SCEPWATCH_TEST_NO_CORRELATOR");
    ingest_expect(st, evs, 3, 0, 3);
    ingest_expect(st, later, 3, 0, 3);

    /* a batch whose second row fails is rolled back whole */
    sql_on(db_path, "CREATE TRIGGER fail_once BEFORE INSERT ON events WHEN NEW.line_hash = 999"
                    " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
    struct sw_event b[2] = { ev_at(7100, "R", SW_STAGE_INSTALLED, 950),
                             ev_at(7101, "R", SW_STAGE_INSTALLED, 999) };
    assert_int_equal(st->ops->ingest(st, b, 2, "agent", &stored, &dups), SW_EDB);
    assert_int_equal(stored, 0);
    sql_on(db_path, "DROP TRIGGER fail_once");
    ingest_expect(st, b, 1, 1, 0);
    ingest_expect(st, b, 2, 1, 1);
    assert_int_equal(sql_on(db_path, "SELECT COUNT(*) FROM events WHERE device = 'R'"), 8);
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


/*
 * A CA row marked dirty by an older build (which marked every CA row at
 * ingest) and already passed by the time index: this build finds new CA
 * rows through the time index, so it must still work that mark off.  (The
 * mark here names no event identity, as an older build's did not: the
 * derived tables are rebuilt, and the request with them.)
 */
static void
test_old_request_mark_worked_off(void **state)
{
    struct agg_store_reader *r;
    struct agg_funnel_row row = { 0 };
    struct agg_policy pol = { .as_of_us = 2000 };
    struct sw_event e;
    char why[256], sql[800], hex[2 * SW_EVENT_IDENT_LEN + 1], derived[128];
    (void)state;
    for (int i = 0; i < AGG_STATUS_COUNT; i++)
        pol.threshold_us[i] = 100;
    st->ops->close(st);
    st = NULL;
    memset(&e, 0, sizeof e);
    e.source = SW_SOURCE_CA_CERTUTIL_CSV;
    e.platform = SW_PLATFORM_CA;
    e.stage = SW_STAGE_CA_PENDING;
    e.ts_us = 1200;
    e.request_id = sw_slice_cstr("77001");
    e.line_hash = 4242;
    ident_hex(&e, hex);
    snprintf(sql, sizeof sql,
             "INSERT INTO events(ident, source, platform, stage, cert, ts_us, request_id,"
             " line_hash, received_us) VALUES(X'%s', %d, %d, %d, 0, 1200, '77001', 4242, 0);"
             "INSERT INTO dirty_req(request_id, gen) VALUES('77001', 9);"
             "SELECT max(id) FROM events;", hex, SW_SOURCE_CA_CERTUTIL_CSV, SW_PLATFORM_CA,
             SW_STAGE_CA_PENDING);
    int64_t last = sql_on(db_path, sql);
    assert_true(last > 0);
    /* the older build's time index had passed the row already */
    snprintf(derived, sizeof derived, "%s-derived", db_path);
    snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO corr_meta(key, value)"
             " VALUES('time_upto', %lld); SELECT COUNT(*) FROM new_req;", (long long)last);
    assert_int_equal(sql_on(derived, sql), 0);
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    /* a reader waits for the backlog, so what follows is worked off */
    assert_int_equal(r->ops->funnel(r, &pol, funnel_row, &row), SW_OK);
    assert_int_equal(r->ops->backlog(r), 0);
    r->ops->reader_close(r);
    /* the request is derived: its issuance, and the row of a CA request no device matched */
    assert_int_equal(sql_on(derived, "SELECT COUNT(*) FROM issuances WHERE request_id = '77001'"), 1);
    assert_int_equal(sql_on(derived, "SELECT COUNT(*) FROM enrollments WHERE request_id = '77001'"),
                     1);
    assert_int_equal(sql_on(db_path, "SELECT COUNT(*) FROM dirty_req"), 0);
}

/*
 * The events database cut short behind the derived one (restored apart
 * from it, or its last commits lost while the derived file kept its own):
 * the indexes' mark names an event the events no longer hold.  The derived
 * tables are rebuilt, so the events stored since under the freed ids are
 * indexed, listed with their device, and known as duplicates after a
 * restart.
 */
static void
test_derived_ahead_of_events_rebuilt(void **state)
{
    struct agg_store_reader *r;
    struct agg_funnel_row row = { 0 };
    struct agg_policy pol = { .as_of_us = 20000 };
    struct sw_event evs[3], later[2];
    uint32_t stored, dups;
    char why[256];
    (void)state;
    for (int i = 0; i < 3; i++)
        evs[i] = ev_at(9000 + i, "X", SW_STAGE_INSTALLED, 1000 + (uint32_t)i);
    for (int i = 0; i < 2; i++)
        later[i] = ev_at(9500 + i, "X", SW_STAGE_INSTALLED, 1100 + (uint32_t)i);
    assert_int_equal(st->ops->ingest(st, evs, 3, "agent", &stored, &dups), SW_OK);
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->funnel(r, &pol, funnel_row, &row), SW_OK);   /* indexed */
    r->ops->reader_close(r);
    st->ops->close(st);
    st = NULL;
    sql_on(db_path, "DELETE FROM events WHERE device = 'X' AND line_hash >= 1001");
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
    assert_int_equal(st->ops->ingest(st, later, 2, "agent", &stored, &dups), SW_OK);
    assert_int_equal(stored, 2);
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->funnel(r, &pol, funnel_row, &row), SW_OK);
    struct agg_event_filter f = { .device = "X" };
    struct agg_event_cursor cur = { 0 };
    struct collected c = { 0 };
    int more = 1;
    while (more)
        assert_int_equal(r->ops->list_events(r, &f, &cur, 10, &more, collect, &c), SW_OK);
    r->ops->reader_close(r);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.ts[0], 9000);
    assert_int_equal(c.ts[1], 9500);
    assert_int_equal(c.ts[2], 9501);
    st->ops->close(st);
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
    ingest_expect(st, later, 2, 0, 2);
}

/*
 * A version 2 database (a unique index on the identity) is written as it
 * is; a row the identity set does not know of (written behind the store's
 * back here) is counted a duplicate by that index, not a failed batch.
 */
static void
test_version_2_database_written(void **state)
{
    struct agg_store *v2 = NULL;
    struct sw_event e[4];
    uint32_t stored, dups;
    char why[256], path[96], sql[600], hex[2 * SW_EVENT_IDENT_LEN + 1];
    (void)state;
    snprintf(path, sizeof path, "%s-v2", db_path);
    assert_int_equal(agg_store_sqlite.open(&v2, path, why, sizeof why), SW_OK);
    v2->ops->close(v2);
    sql_on(path, "CREATE UNIQUE INDEX v2_ident ON events(ident);"
                 " UPDATE meta SET value = '2' WHERE key = 'schema_version'");
    assert_int_equal(agg_store_sqlite.open(&v2, path, why, sizeof why), SW_OK);
    for (int i = 0; i < 4; i++)
        e[i] = ev_at(11000 + i, "V", SW_STAGE_INSTALLED, 1200 + (uint32_t)i);
    assert_int_equal(v2->ops->ingest(v2, e, 2, "agent", &stored, &dups), SW_OK);
    assert_int_equal(stored, 2);
    ident_hex(&e[2], hex);
    snprintf(sql, sizeof sql,
             "INSERT INTO events(ident, device, source, platform, stage, cert, ts_us, line_hash,"
             " received_us) VALUES(X'%s', 'V', %d, %d, %d, 1, 11002, 1202, 0)", hex,
             SW_SOURCE_ANDROID_OMADM, SW_PLATFORM_ANDROID, SW_STAGE_INSTALLED);
    sql_on(path, sql);
    struct sw_event batch[4] = { e[0], e[2], e[3], e[3] };
    ingest_expect(v2, batch, 4, 1, 3);
    assert_int_equal(sql_on(path, "SELECT value FROM meta WHERE key = 'schema_version'"), 2);
    assert_int_equal(sql_on(path, "SELECT COUNT(*) FROM events"), 4);
    v2->ops->close(v2);
    th_unlink_db(path);
}

/* ---- the correlator and a stream of batches ---- */

/* Batches of one event, each marking a device of its own, every_ms apart until stopped. */
struct stream {
    struct agg_store *st;
    const char *prefix;         /* of the devices' names */
    int every_ms;               /* below the correlator's quiet time (250 ms) */
    volatile int stop;
    int batches;
    sw_err err;
};

static void
sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *
stream_main(void *arg)
{
    struct stream *s = arg;
    char dev[32];
    while (!s->stop) {
        uint32_t stored, dups;
        snprintf(dev, sizeof dev, "%s%d", s->prefix, s->batches);
        struct sw_event e = ev_at(1000 + s->batches, dev, SW_STAGE_ENROLL_REQUESTED,
                                  5000u + (uint32_t)s->batches);
        if ((s->err = s->st->ops->ingest(s->st, &e, 1, "t", &stored, &dups)) != SW_OK)
            break;
        s->batches++;
        sleep_ms(s->every_ms);
    }
    return NULL;
}

/*
 * While batches stream in, the correlator waits for them to stop, but not
 * for a reader: once one asks in the middle of the stream, the devices
 * marked before the call are worked off while the stream goes on.  (The
 * whole answer is current too on an idle machine; on a loaded one the
 * correlator, at a lower priority, may still trail a stream that never
 * stops when the reader's wait runs out, and the answer says so.)
 */
static void
test_reader_not_kept_waiting_by_a_stream(void **state)
{
    /* below the quiet time: without the reader, the correlator would wait 30 s */
    struct stream s = { .st = st, .prefix = "R", .every_ms = 100 };
    struct agg_store_reader *r;
    struct agg_funnel_row row = { 0 };
    struct agg_policy pol = { .as_of_us = 2000 };
    pthread_t t;
    (void)state;
    for (int i = 0; i < AGG_STATUS_COUNT; i++)
        pol.threshold_us[i] = 100;
    assert_int_equal(pthread_create(&t, NULL, stream_main, &s), 0);
    while (s.batches < 5)
        sleep_ms(5);
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->funnel(r, &pol, funnel_row, &row), SW_OK);
    r->ops->reader_close(r);
    int64_t early_marks = sql_on(db_path, "SELECT COUNT(*) FROM dirty_dev"
                                          " WHERE device IN ('R0', 'R1', 'R2', 'R3', 'R4')");
    int still_streaming = !s.stop && s.err == SW_OK;
    s.stop = 1;
    pthread_join(t, NULL);
    assert_int_equal(s.err, SW_OK);
    assert_true(still_streaming);
    assert_int_equal(early_marks, 0);
}

/*
 * The wait has a bound: a stream that never stops does not keep the
 * correlator out for good (30 s in the aggregator; 200 ms here).
 */
static void
test_correlator_deferral_is_bounded(void **state)
{
    struct stream s;
    pthread_t t;
    char why[256];
    int worked_off = 0;
    (void)state;
    st->ops->close(st);
    setenv("SCEPWATCH_TEST_CORR_DEFER_MS", "200", 1);
    assert_int_equal(agg_store_sqlite.open(&st, db_path, why, sizeof why), SW_OK);
    unsetenv("SCEPWATCH_TEST_CORR_DEFER_MS");
    memset(&s, 0, sizeof s);
    s.st = st;
    s.prefix = "B";
    s.every_ms = 50;
    assert_int_equal(pthread_create(&t, NULL, stream_main, &s), 0);
    int64_t t0 = mono_ms();
    while (!worked_off && mono_ms() - t0 < 8000 && s.err == SW_OK) {
        sleep_ms(20);
        worked_off = s.batches > 0 &&
                     sql_on(db_path, "SELECT COUNT(*) FROM dirty_dev WHERE device = 'B0'") == 0;
    }
    s.stop = 1;
    pthread_join(t, NULL);
    assert_int_equal(s.err, SW_OK);
    assert_true(worked_off);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedup_and_paging),
        cmocka_unit_test(test_funnel),
        cmocka_unit_test(test_marks_survive_a_stop),
        cmocka_unit_test(test_mark_made_during_a_step_stays),
        cmocka_unit_test(test_derived_database_rebuilt),
        cmocka_unit_test(test_pre_split_layout_migrated),
        cmocka_unit_test(test_events_page_size),
        cmocka_unit_test(test_listing_merges_the_unindexed_tail),
        cmocka_unit_test(test_identities_survive_restart_and_rollback),
        cmocka_unit_test(test_old_schema_refused),
        cmocka_unit_test(test_open_failure_is_reported),
        cmocka_unit_test(test_old_request_mark_worked_off),
        cmocka_unit_test(test_derived_ahead_of_events_rebuilt),
        cmocka_unit_test(test_version_2_database_written),
        cmocka_unit_test(test_reader_not_kept_waiting_by_a_stream),
        cmocka_unit_test(test_correlator_deferral_is_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
