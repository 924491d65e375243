/*
 * store_correlate.c - the SQL side of correlation (see store_correlate.h).
 *
 * Divisions: schema and statements; loading events; rebuilding devices and
 * issuances; strong links; time links over an expanding region; derived
 * status and CA-only rows.
 */
#include "store_correlate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "correlate.h"
#include "sw_log.h"
#include "sw_time.h"

#define CERTUTIL_SPAN_US (60LL * 1000000)

const char agg_corr_schema[] =
    "CREATE TABLE IF NOT EXISTS issuances(\n"
    "  request_id TEXT PRIMARY KEY,\n"
    "  state INTEGER NOT NULL,           -- the deciding ca_* stage\n"
    "  recv_lo INTEGER, recv_hi INTEGER, -- receipt time interval, us\n"
    "  issued_lo INTEGER, issued_hi INTEGER,\n"
    "  last_us INTEGER,\n"
    "  serial TEXT, thumbprint TEXT, txn TEXT, subject TEXT, template TEXT, detail TEXT);\n"
    "-- partial indexes: a key a row lacks costs no index entry (every lookup is by a value)\n"
    "CREATE INDEX IF NOT EXISTS iss_thumb ON issuances(thumbprint) WHERE thumbprint IS NOT NULL;\n"
    "CREATE INDEX IF NOT EXISTS iss_txn ON issuances(txn) WHERE txn IS NOT NULL;\n"
    "CREATE INDEX IF NOT EXISTS iss_serial ON issuances(serial) WHERE serial IS NOT NULL;\n"
    "CREATE INDEX IF NOT EXISTS iss_recv ON issuances(recv_lo) WHERE recv_lo IS NOT NULL;\n"
    "CREATE INDEX IF NOT EXISTS iss_issued ON issuances(issued_lo) WHERE issued_lo IS NOT NULL;\n"
    "CREATE TABLE IF NOT EXISTS enrollments(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  rowkey TEXT NOT NULL UNIQUE,      -- report order and paging key\n"
    "  kind INTEGER NOT NULL,            -- 0 device enrollment, 1 CA request no device matched\n"
    "  device TEXT, platform INTEGER NOT NULL, seq INTEGER, profile TEXT,\n"
    "  first_us INTEGER, request_us INTEGER, device_issued_us INTEGER, installed_us INTEGER,\n"
    "  last_us INTEGER, last_stage INTEGER, pending INTEGER, failed INTEGER,\n"
    "  install_state INTEGER,\n"
    "  txn TEXT, thumbprint TEXT, serial TEXT, detail TEXT,\n"
    "  request_id TEXT,                  -- the linked issuance\n"
    "  link INTEGER NOT NULL DEFAULT 0,  -- enum agg_link\n"
    "  status INTEGER NOT NULL DEFAULT 0,-- enum agg_status\n"
    "  since_us INTEGER,                 -- in this status since\n"
    "  ca_issued INTEGER NOT NULL DEFAULT 0, -- its CA request was issued (for the funnel)\n"
    "  -- the report's view of the row and its issuance, kept by each status refresh so a\n"
    "  -- report reads one table in order instead of joining a random issuance a row\n"
    "  rep_stage INTEGER, rep_last_us INTEGER, rep_issued_us INTEGER, rep_serial TEXT,\n"
    "  rep_thumbprint TEXT, rep_txn TEXT, rep_detail TEXT, rep_subject TEXT, rep_template TEXT);\n"
    "CREATE INDEX IF NOT EXISTS enr_device ON enrollments(device);\n"
    "CREATE INDEX IF NOT EXISTS enr_req ON enrollments(request_id) WHERE request_id IS NOT NULL;\n"
    "-- stuck pages through the open rows only\n"
    "-- (covering: the few open rows are read from the index alone, in report order; rows\n"
    "-- not yet refreshed, status 0, stay out: the links step rewrites them all)\n"
    "CREATE INDEX IF NOT EXISTS enr_open ON enrollments(rowkey, status, since_us, device, platform,\n"
    "  profile, rep_stage, rep_last_us, first_us, request_us, rep_issued_us, installed_us,\n"
    "  request_id, rep_serial, rep_thumbprint, rep_txn, rep_detail, rep_subject, rep_template,\n"
    "  link) WHERE status NOT IN (0, 1, 2);\n"
    "-- the funnel reads funnel_counts (below), not an index of every row\n"
    "DROP INDEX IF EXISTS enr_funnel;\n"
    "CREATE INDEX IF NOT EXISTS enr_thumb ON enrollments(thumbprint) WHERE thumbprint IS NOT NULL;\n"
    "CREATE INDEX IF NOT EXISTS enr_txn ON enrollments(txn) WHERE txn IS NOT NULL;\n"
    "CREATE INDEX IF NOT EXISTS enr_serial ON enrollments(serial) WHERE serial IS NOT NULL;\n"
    "CREATE INDEX IF NOT EXISTS enr_request_us ON enrollments(request_us)"
    " WHERE request_us IS NOT NULL;\n"
    "CREATE INDEX IF NOT EXISTS enr_dev_issued_us ON enrollments(device_issued_us)"
    " WHERE device_issued_us IS NOT NULL;\n"
    "-- which template each profile's certificates were issued under, as strong links showed\n"
    "CREATE TABLE IF NOT EXISTS profile_templates(profile TEXT NOT NULL, template TEXT NOT NULL,\n"
    "  PRIMARY KEY(profile, template));\n"
    "CREATE TABLE IF NOT EXISTS corr_meta(key TEXT PRIMARY KEY, value TEXT);\n"
    "-- the events in time order, for listing the fleet's events: kept here by the\n"
    "-- correlator, so the events writer appends without a time index (corr_meta\n"
    "-- 'time_upto': the last event id indexed; later ones are read from events)\n"
    "CREATE TABLE IF NOT EXISTS event_time(ts_us INTEGER NOT NULL, id INTEGER NOT NULL,\n"
    "  PRIMARY KEY(ts_us, id)) WITHOUT ROWID;\n"
    "-- the events by identity (device hash, time, content hash): one device's events\n"
    "-- are a range of it; kept with event_time, up to the same mark\n"
    "CREATE TABLE IF NOT EXISTS event_dev(ident BLOB NOT NULL PRIMARY KEY, id INTEGER NOT NULL)\n"
    "  WITHOUT ROWID;\n"
    "-- rebuilt rows whose links are to be re-decided, then rows whose status is to be\n"
    "-- refreshed: the pass runs in steps, each its own transaction, and resumes after a crash\n"
    "CREATE TABLE IF NOT EXISTS touched_enr(id INTEGER PRIMARY KEY);\n"
    "CREATE TABLE IF NOT EXISTS touched_req(request_id TEXT PRIMARY KEY);\n"
    "CREATE TABLE IF NOT EXISTS refresh_enr(id INTEGER PRIMARY KEY);\n"
    "CREATE TABLE IF NOT EXISTS refresh_req(request_id TEXT PRIMARY KEY);\n"
    "-- request ids of CA events the time index has passed and no step has rebuilt yet:\n"
    "-- the correlator finds new CA rows by id, so ingest writes no mark a row for them\n"
    "CREATE TABLE IF NOT EXISTS new_req(request_id TEXT PRIMARY KEY) WITHOUT ROWID;\n";

/*
 * The derived tables' version: a database whose derived tables are older
 * (or absent) has them dropped and rebuilt from its events by the next
 * pass, so a change of derivation needs no migration code.
 */
#define AGG_CORR_VERSION "8"     /* 4: partial indexes; 6: enr_open covering; 8: event_dev */

static sw_err
corr_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        sw_error("correlate: schema: %s", err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return SW_EDB;
    }
    return SW_OK;
}

/*
 * The funnel's counts, kept by triggers as enrollments are written: a
 * summary reads a few dozen rows instead of an index of every enrollment.
 * Key: platform, status, and the three funnel flags of a row (reached the
 * CA as a device enrollment; issued; delivered).  A REPLACE deletes the
 * row it replaces, which fires the delete trigger only with
 * recursive_triggers on: agg_corr_prepare_schema turns it on.
 */
#define COUNT_KEY(r)                                                                    \
    r ".platform, " r ".status, (" r ".request_us IS NOT NULL AND " r ".kind = 0), ("   \
    r ".ca_issued OR " r ".device_issued_us IS NOT NULL), (" r ".device_issued_us IS NOT NULL)"

static const char counts_table[] =
    "CREATE TABLE main.funnel_counts(platform INTEGER NOT NULL, status INTEGER NOT NULL,\n"
    "  req INTEGER NOT NULL, iss INTEGER NOT NULL, dlv INTEGER NOT NULL, n INTEGER NOT NULL,\n"
    "  PRIMARY KEY(platform, status, req, iss, dlv)) WITHOUT ROWID;\n"
    "INSERT INTO main.funnel_counts SELECT " COUNT_KEY("e") ", COUNT(*)"
    " FROM main.enrollments e GROUP BY 1, 2, 3, 4, 5;\n";

/* Adds d to the count of row r's key. */
#define COUNT_ADD(r, d)                                                                 \
    "  INSERT INTO funnel_counts VALUES(" COUNT_KEY(r) ", " d ")"                       \
    " ON CONFLICT DO UPDATE SET n = n + excluded.n;\n"

static const char counts_triggers[] =
    "CREATE TRIGGER IF NOT EXISTS main.enr_count_ins AFTER INSERT ON enrollments BEGIN\n"
    COUNT_ADD("NEW", "1")
    "END;\n"
    "CREATE TRIGGER IF NOT EXISTS main.enr_count_del AFTER DELETE ON enrollments BEGIN\n"
    COUNT_ADD("OLD", "-1")
    "END;\n"
    "CREATE TRIGGER IF NOT EXISTS main.enr_count_upd AFTER UPDATE OF platform, status, kind,\n"
    "  request_us, ca_issued, device_issued_us ON enrollments\n"
    "  WHEN (" COUNT_KEY("OLD") ") != (" COUNT_KEY("NEW") ") BEGIN\n"
    COUNT_ADD("OLD", "-1")
    COUNT_ADD("NEW", "1")
    "END;\n";

/* Creates and fills the counts where they are missing (a database of an older build). */
static sw_err
prepare_counts(sqlite3 *cdb)
{
    sqlite3_stmt *s;
    int have = 0;
    sw_err e;

    if (sqlite3_prepare_v2(cdb, "SELECT 1 FROM main.sqlite_schema WHERE type = 'table'"
                           " AND name = 'funnel_counts'", -1, &s, NULL) != SQLITE_OK) {
        sw_error("correlate: %s", sqlite3_errmsg(cdb));
        return SW_EDB;
    }
    have = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    if (!have && (e = corr_exec(cdb, counts_table)) != SW_OK)
        return e;
    return corr_exec(cdb, counts_triggers);
}

/*
 * Whether the indexes' mark names the event the events database holds
 * under that id: the identity of the last indexed event is kept with the
 * mark.  The two files are synced apart, and one may be restored without
 * the other; a mark past the events or on another event would leave the
 * events under it unindexed for good, so the derived tables are rebuilt.
 */
static int
mark_matches(sqlite3 *cdb)
{
    static const char q[] =
        "SELECT u.value, (SELECT value FROM main.corr_meta WHERE key = 'time_upto_ident'),"
        " (SELECT ident FROM events WHERE id = CAST(u.value AS INTEGER))"
        " FROM main.corr_meta u WHERE u.key = 'time_upto'";
    sqlite3_stmt *s;
    int ok = 0;

    if (sqlite3_prepare_v2(cdb, q, -1, &s, NULL) != SQLITE_OK)
        return 0;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        ok = 1;     /* nothing indexed yet */
    } else if (rc == SQLITE_ROW) {
        int n = sqlite3_column_bytes(s, 1);
        ok = sqlite3_column_int64(s, 0) == 0 ||
             (sqlite3_column_type(s, 1) == SQLITE_BLOB &&
              sqlite3_column_type(s, 2) == SQLITE_BLOB &&
              n == sqlite3_column_bytes(s, 2) &&
              memcmp(sqlite3_column_blob(s, 1), sqlite3_column_blob(s, 2), (size_t)n) == 0);
    }
    sqlite3_finalize(s);
    return ok;
}

sw_err
agg_corr_prepare_schema(sqlite3 *cdb, sqlite3 *wdb)
{
    sqlite3_stmt *s;
    int current = 0;
    sw_err e;

    /* before any write: a REPLACE's deletion must reach the counts' trigger */
    if ((e = corr_exec(cdb, "PRAGMA recursive_triggers = ON")) != SW_OK)
        return e;
    if ((e = corr_exec(cdb, "BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS main.corr_meta("
                            "key TEXT PRIMARY KEY, value TEXT);")) != SW_OK)
        return e;
    if (sqlite3_prepare_v2(cdb, "SELECT value FROM main.corr_meta WHERE key = 'corr_version'",
                           -1, &s, NULL) != SQLITE_OK) {
        sw_error("correlate: %s", sqlite3_errmsg(cdb));
        corr_exec(cdb, "ROLLBACK");
        return SW_EDB;
    }
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
        current = strcmp((const char *)sqlite3_column_text(s, 0), AGG_CORR_VERSION) == 0;
    sqlite3_finalize(s);
    if (current && !mark_matches(cdb)) {
        sw_warn("correlate: the derived database does not match the events (restored or"
                " cut short apart from it): rebuilding it from the events");
        current = 0;
    }
    if ((!current &&
         (e = corr_exec(cdb, "DROP TABLE IF EXISTS main.funnel_counts;"
                             " DROP TABLE IF EXISTS main.enrollments;"
                             " DROP TABLE IF EXISTS main.issuances;"
                             " DROP TABLE IF EXISTS main.profile_templates;"
                             " DROP TABLE IF EXISTS main.touched_enr;"
                             " DROP TABLE IF EXISTS main.touched_req;"
                             " DROP TABLE IF EXISTS main.refresh_enr;"
                             " DROP TABLE IF EXISTS main.refresh_req;"
                             " DROP TABLE IF EXISTS main.event_time;"
                             " DROP TABLE IF EXISTS main.event_dev;"
                             " DROP TABLE IF EXISTS main.new_req;"
                             " DELETE FROM main.corr_meta;")) != SW_OK) ||
        (e = corr_exec(cdb, agg_corr_schema)) != SW_OK ||
        (e = prepare_counts(cdb)) != SW_OK ||
        (e = corr_exec(cdb, "COMMIT")) != SW_OK) {
        corr_exec(cdb, "ROLLBACK");
        return e;
    }
    if (current)
        return SW_OK;
    /*
     * Every device and request dirty, committed with the events, before the
     * version is written: a crash in between only repeats this.
     */
    if ((e = corr_exec(wdb, "BEGIN IMMEDIATE;"
                            "INSERT OR IGNORE INTO dirty_dev(device) SELECT DISTINCT"
                            " ifnull(device, '') FROM events"
                            " WHERE cert = 1 AND platform IN (1, 2, 3);"
                            "INSERT OR IGNORE INTO dirty_req(request_id) SELECT DISTINCT request_id"
                            " FROM events WHERE request_id IS NOT NULL AND platform = 4;"
                            "COMMIT;")) != SW_OK) {
        corr_exec(wdb, "ROLLBACK");
        return e;
    }
    return corr_exec(cdb, "INSERT OR REPLACE INTO main.corr_meta(key, value)"
                          " VALUES('corr_version', '" AGG_CORR_VERSION "')");
}


enum {
    S_MARK_DEV, S_DEV_LIST, S_REQ_LIST, S_OLD_ENR, S_DEL_ENR, S_DEV_EVENTS, S_INS_ENR, S_TOUCH_ENR, S_TOUCH_REQ, S_REQ_EVENTS, S_PUT_ISS,
    S_CAND_ENR, S_CAND_ISS, S_SET_LINK, S_ENR_ROW, S_ISS_ROW, S_SET_STATUS,
    S_REQ_LINKED, S_DEL_CA_ROW, S_PUT_CA_ROW, S_LEARN, S_MAP,
    S_DEV_DONE, S_REQ_DONE, S_REFRESH_ENR_LIST, S_REFRESH_ENR_DONE, S_REFRESH_REQ_LIST,
    S_REFRESH_REQ_DONE, S_WORK, S_REFRESH_ENR, S_REFRESH_REQ, S_TIME_NEW, S_TIME_PUT, S_DEV_PUT,
    S_TIME_UPTO, S_NEW_REQ_PUT, S_NEW_REQ_LIST, S_NEW_REQ_DONE, S_COUNT
};

static const char *const sql[S_COUNT] = {
    /* on the events writer: a mark names the batch that made it */
    [S_MARK_DEV] = "INSERT INTO dirty_dev(device, gen) VALUES(?1, ?2)"
                   " ON CONFLICT(device) DO UPDATE SET gen = excluded.gen",
    /* a mark made again after the step read it (a later batch) stays */
    [S_DEV_DONE] = "DELETE FROM dirty_dev WHERE device <= ?1 AND gen <= ?2",
    [S_REQ_DONE] = "DELETE FROM dirty_req WHERE request_id <= ?1 AND gen <= ?2",
    /* the rest on the correlation connection: the derived database, events attached */
    [S_DEV_LIST] = "SELECT device, gen FROM dirty_dev ORDER BY device LIMIT ?1",
    [S_REQ_LIST] = "SELECT request_id, gen FROM dirty_req ORDER BY request_id LIMIT ?1",
    [S_REFRESH_ENR_LIST] = "SELECT id FROM refresh_enr ORDER BY id LIMIT ?1",
    [S_REFRESH_ENR_DONE] = "DELETE FROM refresh_enr WHERE id <= ?1",
    [S_REFRESH_REQ_LIST] = "SELECT request_id FROM refresh_req ORDER BY request_id LIMIT ?1",
    [S_REFRESH_REQ_DONE] = "DELETE FROM refresh_req WHERE request_id <= ?1",
    [S_WORK] = "SELECT EXISTS(SELECT 1 FROM dirty_dev), EXISTS(SELECT 1 FROM dirty_req),"
               " EXISTS(SELECT 1 FROM touched_enr) OR EXISTS(SELECT 1 FROM touched_req),"
               " EXISTS(SELECT 1 FROM refresh_enr), EXISTS(SELECT 1 FROM refresh_req),"
               " " AGG_CORR_TIME_UPTO_SQL ", EXISTS(SELECT 1 FROM new_req)",
    [S_TIME_NEW] = "SELECT id, ts_us, CASE WHEN platform = 4 THEN request_id END, ident"
                   " FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
    [S_TIME_PUT] = "INSERT OR IGNORE INTO event_time(ts_us, id) VALUES(?1, ?2)",
    [S_DEV_PUT] = "INSERT OR IGNORE INTO event_dev(ident, id) VALUES(?1, ?2)",
    [S_TIME_UPTO] = "INSERT OR REPLACE INTO corr_meta(key, value) VALUES('time_upto', ?1),"
                    " ('time_upto_ident', ?2)",
    [S_NEW_REQ_PUT] = "INSERT OR IGNORE INTO new_req(request_id) VALUES(?1)",
    [S_NEW_REQ_LIST] = "SELECT request_id FROM new_req ORDER BY request_id LIMIT ?1",
    [S_NEW_REQ_DONE] = "DELETE FROM new_req WHERE request_id <= ?1",
    [S_OLD_ENR] = "SELECT request_id FROM enrollments WHERE kind = 0 AND device IS ?1",
    [S_DEL_ENR] = "DELETE FROM enrollments WHERE kind = 0 AND device IS ?1",
    /*
     * A step runs after the index has caught up (agg_corr_step): event_dev
     * holds them all.  ?1 NULL: the events without a device.
     */
    [S_DEV_EVENTS] = "SELECT e.source, e.platform, e.stage, e.cert, e.ts_us, e.profile, e.txn,"
                     " e.thumbprint, e.serial, e.detail, e.device"
                     " FROM main.event_dev d JOIN events e ON e.id = d.id"
                     " WHERE d.ident BETWEEN ?2 AND ?3 AND e.device IS ?1 AND e.cert = 1"
                     " AND e.platform IN (1, 2, 3) ORDER BY d.ident",
    [S_INS_ENR] = "INSERT INTO enrollments(rowkey, kind, device, platform, seq, profile, first_us,"
                  " request_us, device_issued_us, installed_us, last_us, last_stage, pending,"
                  " failed, install_state, txn, thumbprint, serial, detail)"
                  " VALUES(?1, 0, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
                  " ?16, ?17, ?18)",
    [S_TOUCH_ENR] = "INSERT OR IGNORE INTO touched_enr(id) VALUES(?1)",
    [S_REFRESH_ENR] = "INSERT OR IGNORE INTO refresh_enr(id) VALUES(?1)",
    [S_REFRESH_REQ] = "INSERT OR IGNORE INTO refresh_req(request_id) VALUES(?1)",
    [S_TOUCH_REQ] = "INSERT OR IGNORE INTO touched_req(request_id) VALUES(?1)",
    [S_REQ_EVENTS] = "SELECT source, platform, stage, cert, ts_us, profile, txn, thumbprint,"
                     " serial, detail, device, request_id, subject, template FROM events"
                     " WHERE request_id = ?1 AND platform = 4",
    [S_PUT_ISS] = "INSERT OR REPLACE INTO issuances(request_id, state, recv_lo, recv_hi,"
                  " issued_lo, issued_hi, last_us, serial, thumbprint, txn, subject, template,"
                  " detail) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [S_CAND_ENR] = "SELECT id, rowkey, request_us, device_issued_us, profile, request_id, link"
                   " FROM enrollments"
                   " WHERE kind = 0 AND link IN (0, 4) AND request_us > 0 AND"
                   " (request_us BETWEEN ?1 AND ?2 OR device_issued_us BETWEEN ?1 AND ?2)",
    [S_CAND_ISS] = "SELECT i.request_id, i.recv_lo, i.recv_hi, i.issued_lo, i.issued_hi, i.template"
                   " FROM issuances i WHERE (i.recv_lo BETWEEN ?1 AND ?2 OR"
                   " i.issued_lo BETWEEN ?1 AND ?2) AND NOT EXISTS (SELECT 1 FROM enrollments e"
                   " WHERE e.request_id = i.request_id AND e.link IN (1, 2, 3))",
    [S_SET_LINK] = "UPDATE enrollments SET request_id = ?2, link = ?3 WHERE id = ?1",
    [S_ENR_ROW] = "SELECT device, platform, seq, profile, first_us, request_us, device_issued_us,"
                  " installed_us, last_us, last_stage, pending, failed, install_state, txn,"
                  " thumbprint, serial, detail, request_id FROM enrollments WHERE id = ?1",
    [S_ISS_ROW] = "SELECT request_id, state, recv_lo, recv_hi, issued_lo, issued_hi, last_us,"
                  " serial, thumbprint, txn, subject, template, detail FROM issuances"
                  " WHERE request_id = ?1",
    [S_SET_STATUS] = "UPDATE enrollments SET status = ?2, since_us = ?3, ca_issued = ?4,"
                     " rep_stage = ?5, rep_last_us = ?6, rep_issued_us = ?7, rep_serial = ?8,"
                     " rep_thumbprint = ?9, rep_txn = ?10, rep_detail = ?11, rep_subject = ?12,"
                     " rep_template = ?13 WHERE id = ?1",
    [S_REQ_LINKED] = "SELECT 1 FROM enrollments WHERE kind = 0 AND request_id = ?1 LIMIT 1",
    [S_DEL_CA_ROW] = "DELETE FROM enrollments WHERE kind = 1 AND request_id = ?1",
    [S_PUT_CA_ROW] = "INSERT OR REPLACE INTO enrollments(rowkey, kind, device, platform, seq,"
                     " profile, first_us, request_us, device_issued_us, installed_us, last_us,"
                     " last_stage, pending, failed, install_state, txn, thumbprint, serial,"
                     " detail, request_id, link, status, since_us, ca_issued, rep_stage,"
                     " rep_last_us, rep_issued_us, rep_serial, rep_thumbprint, rep_txn,"
                     " rep_detail, rep_subject, rep_template)"
                     " VALUES(?1, 1, NULL, 4, 0, NULL, ?2, ?2, NULL, NULL, ?3, ?4, 0, 0, 0, ?5,"
                     " ?6, ?7, ?8, ?9, 0, ?10, ?11, ?12, ?4, ?3, ?13, ?7, ?6, ?5, ?8, ?14, ?15)",
    [S_LEARN] = "INSERT OR IGNORE INTO profile_templates(profile, template)"
                " SELECT e.profile, i.template FROM enrollments e"
                " JOIN issuances i ON i.request_id = e.request_id"
                " WHERE e.id IN (SELECT id FROM touched_enr) AND e.link IN (1, 2, 3)"
                " AND e.profile IS NOT NULL AND i.template IS NOT NULL",
    [S_MAP] = "SELECT profile, template FROM profile_templates ORDER BY profile, template",
};

struct agg_corr {
    sqlite3 *db;                /* derived database, events attached as "ev" */
    sqlite3 *wdb;               /* events writer: marks and their removal */
    sqlite3_stmt *st[S_COUNT];
    /* dirty marks a committed step has worked off, for agg_corr_finish */
    int fin_which;              /* S_DEV_DONE / S_REQ_DONE, 0 none */
    char *fin_key;
    int64_t fin_gen;
    int64_t gen;                /* the ingest batch marking now */
    int64_t window_us;
    int64_t lo, hi;             /* the time region the change reaches */
    /* this ingest transaction's marks: the last device, to skip repeats */
    int marked;
    int last_set;               /* last[] holds the last device marked */
    size_t last_len;
    char last[256];
};

static sw_err
db_err(struct agg_corr *c, const char *what)
{
    sw_error("correlate: %s: %s", what, sqlite3_errmsg(c->db));
    return SW_EDB;
}

static sqlite3_stmt *
stmt(struct agg_corr *c, int which)
{
    sqlite3_stmt *s = c->st[which];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

sw_err
agg_corr_open(sqlite3 *cdb, sqlite3 *wdb, int64_t window_us, struct agg_corr **out)
{
    struct agg_corr *c = calloc(1, sizeof *c);

    *out = NULL;
    if (!c)
        return SW_ENOMEM;
    c->db = cdb;
    c->wdb = wdb;
    c->window_us = window_us;
    for (int i = 0; i < S_COUNT; i++) {
        sqlite3 *db = i == S_MARK_DEV || i == S_DEV_DONE || i == S_REQ_DONE
                          ? wdb : cdb;
        if (sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i], NULL) != SQLITE_OK) {
            sw_error("correlate: prepare %d: %s", i, sqlite3_errmsg(db));
            agg_corr_close(c);
            return SW_EDB;
        }
    }
    *out = c;
    return SW_OK;
}

void
agg_corr_close(struct agg_corr *c)
{
    if (!c)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    free(c->fin_key);
    free(c);
}

static sw_err
step_done(struct agg_corr *c, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SW_OK : db_err(c, what);
}

/* A statement of the events writer connection. */
static sw_err
step_wdb(struct agg_corr *c, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return SW_OK;
    sw_error("correlate: %s: %s", what, sqlite3_errmsg(c->wdb));
    return SW_EDB;
}

int
agg_corr_finish_pending(const struct agg_corr *c)
{
    return c->fin_which != 0;
}

void
agg_corr_discard(struct agg_corr *c)
{
    c->fin_which = 0;
    free(c->fin_key);
    c->fin_key = NULL;
}

sw_err
agg_corr_finish(struct agg_corr *c)
{
    sw_err e = SW_OK;
    if (c->fin_which) {
        sqlite3_stmt *s = stmt(c, c->fin_which);
        sqlite3_bind_text(s, 1, c->fin_key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, c->fin_gen);
        e = step_wdb(c, s, "marks done");
    }
    agg_corr_discard(c);
    return e;
}

void
agg_corr_batch_begin(struct agg_corr *c, int64_t gen)
{
    c->marked = 0;
    c->last_set = 0;
    c->gen = gen;
}

int
agg_corr_batch_marked(const struct agg_corr *c)
{
    return c->marked;
}

uint64_t
agg_corr_backlog(sqlite3 *db)
{
    static const char q[] =
        "SELECT (SELECT COUNT(*) FROM dirty_dev) + (SELECT COUNT(*) FROM dirty_req) +"
        " (SELECT COUNT(*) FROM new_req) +"
        " (SELECT COUNT(*) FROM touched_enr) + (SELECT COUNT(*) FROM touched_req) +"
        " (SELECT COUNT(*) FROM refresh_enr) + (SELECT COUNT(*) FROM refresh_req) +"
        " (SELECT n - u FROM (SELECT " AGG_CORR_TIME_UPTO_SQL "))";
    sqlite3_stmt *s;
    uint64_t n = 1;     /* cannot tell: assume work */

    if (sqlite3_prepare_v2(db, q, -1, &s, NULL) != SQLITE_OK)
        return n;
    if (sqlite3_step(s) == SQLITE_ROW)
        n = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

/* A batch holds runs of one device's events: one INSERT a run, not a row. */
static int
repeat(struct agg_corr *c, const char *p, size_t len)
{
    if (c->last_set && c->last_len == len && (!len || memcmp(c->last, p, len) == 0))
        return 1;
    c->last_set = len < sizeof c->last;
    if (c->last_set) {
        c->last_len = len;
        if (len)
            memcpy(c->last, p, len);
    }
    return 0;
}

sw_err
agg_corr_mark_device(struct agg_corr *c, const char *device, size_t len)
{
    if (!device)
        len = 0;
    if (repeat(c, device, len))
        return SW_OK;
    c->marked = 1;
    sqlite3_stmt *s = stmt(c, S_MARK_DEV);
    sqlite3_bind_text(s, 1, device ? device : "", (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, c->gen);
    return step_wdb(c, s, "mark device");
}

static void
extend(struct agg_corr *c, int64_t t)
{
    if (t <= 0)
        return;
    if (t < c->lo)
        c->lo = t;
    if (t > c->hi)
        c->hi = t;
}

/* ---- loading events into sw_event arrays (strings copied) ---- */

struct evlist {
    struct sw_event *ev;
    size_t n, cap;
    char *strings;              /* offsets are stored in the slices until fixup */
    size_t slen, scap;
};

static void
evlist_free(struct evlist *l)
{
    free(l->ev);
    free(l->strings);
    memset(l, 0, sizeof *l);
}

static int
evlist_str(struct evlist *l, sqlite3_stmt *s, int col, struct sw_slice *out)
{
    const char *p = (const char *)sqlite3_column_text(s, col);
    size_t n = (size_t)sqlite3_column_bytes(s, col);
    *out = SW_SLICE_NONE;
    if (!p || !n)
        return 0;
    if (l->slen + n > l->scap) {
        size_t cap = l->scap ? l->scap * 2 : 4096;
        while (cap < l->slen + n)
            cap *= 2;
        char *ns = realloc(l->strings, cap);
        if (!ns)
            return -1;
        l->strings = ns;
        l->scap = cap;
    }
    memcpy(l->strings + l->slen, p, n);
    out->ptr = (const char *)(uintptr_t)(l->slen + 1); /* offset + 1; fixed up later */
    out->len = n;
    l->slen += n;
    return 0;
}

static void
evlist_fixup(struct evlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        struct sw_event *e = &l->ev[i];
#define X(f) if (e->f.len) e->f.ptr = l->strings + ((uintptr_t)e->f.ptr - 1);
        SW_EVENT_STR_FIELDS(X)
#undef X
    }
}

/* Columns: source platform stage cert ts profile txn thumbprint serial detail device
 * [request_id subject template]. */
static sw_err
evlist_load(struct agg_corr *c, sqlite3_stmt *s, struct evlist *l, int with_ca)
{
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 64;
            struct sw_event *ne = realloc(l->ev, cap * sizeof *ne);
            if (!ne)
                return SW_ENOMEM;
            l->ev = ne;
            l->cap = cap;
        }
        struct sw_event *e = &l->ev[l->n++];
        memset(e, 0, sizeof *e);
        e->source = (enum sw_source)sqlite3_column_int(s, 0);
        e->platform = (enum sw_platform)sqlite3_column_int(s, 1);
        e->stage = (enum sw_stage)sqlite3_column_int(s, 2);
        e->cert = (enum sw_cert)sqlite3_column_int(s, 3);
        e->ts_us = sqlite3_column_int64(s, 4);
        if (evlist_str(l, s, 5, &e->profile) || evlist_str(l, s, 6, &e->txn) ||
            evlist_str(l, s, 7, &e->thumbprint) || evlist_str(l, s, 8, &e->serial) ||
            evlist_str(l, s, 9, &e->detail) || evlist_str(l, s, 10, &e->device))
            return SW_ENOMEM;
        if (with_ca && (evlist_str(l, s, 11, &e->request_id) || evlist_str(l, s, 12, &e->subject) ||
                        evlist_str(l, s, 13, &e->template)))
            return SW_ENOMEM;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_err(c, "load events");
    evlist_fixup(l);
    return SW_OK;
}

/* ---- rebuilding ---- */

static void
bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
    if (v && *v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static void
bind_time(sqlite3_stmt *s, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

struct seg_ctx {
    struct agg_corr *c;
    sw_err err;
};

static void
store_enrollment(void *arg, const struct agg_enrollment *e)
{
    struct seg_ctx *sc = arg;
    struct agg_corr *c = sc->c;
    char rowkey[400];
    sqlite3_stmt *s;

    if (sc->err != SW_OK)
        return;
    snprintf(rowkey, sizeof rowkey, "1|%s|%020lld|%06d", e->device, (long long)e->first_us, e->seq);
    s = stmt(c, S_INS_ENR);
    sqlite3_bind_text(s, 1, rowkey, -1, SQLITE_TRANSIENT);
    bind_text_or_null(s, 2, e->device);
    sqlite3_bind_int(s, 3, e->platform);
    sqlite3_bind_int(s, 4, e->seq);
    bind_text_or_null(s, 5, e->profile);
    sqlite3_bind_int64(s, 6, e->first_us);
    bind_time(s, 7, e->request_us);
    bind_time(s, 8, e->device_issued_us);
    bind_time(s, 9, e->installed_us);
    sqlite3_bind_int64(s, 10, e->last_us);
    sqlite3_bind_int(s, 11, e->last_stage);
    sqlite3_bind_int(s, 12, e->pending);
    sqlite3_bind_int(s, 13, e->failed);
    sqlite3_bind_int(s, 14, e->install_state);
    bind_text_or_null(s, 15, e->txn);
    bind_text_or_null(s, 16, e->thumbprint);
    bind_text_or_null(s, 17, e->serial);
    bind_text_or_null(s, 18, e->detail);
    if ((sc->err = step_done(c, s, "insert enrollment")) != SW_OK)
        return;
    s = stmt(c, S_TOUCH_ENR);
    sqlite3_bind_int64(s, 1, sqlite3_last_insert_rowid(c->db));
    sc->err = step_done(c, s, "touch enrollment");
}

static sw_err
touch_req(struct agg_corr *c, const char *rid)
{
    sqlite3_stmt *s;
    if (!rid || !*rid)
        return SW_OK;
    s = stmt(c, S_TOUCH_REQ);
    sqlite3_bind_text(s, 1, rid, -1, SQLITE_TRANSIENT);
    return step_done(c, s, "touch request");
}

static sw_err
rebuild_device(struct agg_corr *c, const char *device)
{
    struct evlist l = { 0 };
    struct seg_ctx sc = { c, SW_OK };
    sqlite3_stmt *s;
    int rc;
    sw_err e;

    /* what the old enrollments held is freed: their issuances need relinking */
    s = stmt(c, S_OLD_ENR);
    if (*device)
        sqlite3_bind_text(s, 1, device, -1, SQLITE_TRANSIENT);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *rid = (const char *)sqlite3_column_text(s, 0);
        if (rid && (e = touch_req(c, rid)) != SW_OK) {
            sqlite3_reset(s);
            return e;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_err(c, "old enrollments");
    s = stmt(c, S_DEL_ENR);
    if (*device)
        sqlite3_bind_text(s, 1, device, -1, SQLITE_TRANSIENT);
    if ((e = step_done(c, s, "delete enrollments")) != SW_OK)
        return e;
    /* a device's events are a range of identities (device hash, time, content) */
    unsigned char lo[SW_EVENT_IDENT_LEN], hi[SW_EVENT_IDENT_LEN];
    sw_event_ident_range(device, strlen(device), lo, hi);
    s = stmt(c, S_DEV_EVENTS);
    if (*device)
        sqlite3_bind_text(s, 1, device, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 2, lo, sizeof lo, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 3, hi, sizeof hi, SQLITE_TRANSIENT);
    if ((e = evlist_load(c, s, &l, 0)) != SW_OK) {
        evlist_free(&l);
        return e;
    }
    agg_segment_device(l.ev, l.n, store_enrollment, &sc);
    evlist_free(&l);
    return sc.err;
}

static sw_err
rebuild_issuance(struct agg_corr *c, const char *rid)
{
    struct evlist l = { 0 };
    struct agg_issuance iss;
    sqlite3_stmt *s = stmt(c, S_REQ_EVENTS);
    sw_err e;

    sqlite3_bind_text(s, 1, rid, -1, SQLITE_TRANSIENT);
    if ((e = evlist_load(c, s, &l, 1)) != SW_OK) {
        evlist_free(&l);
        return e;
    }
    agg_fold_issuance(l.ev, l.n, &iss);
    evlist_free(&l);
    if (!iss.request_id[0])
        return SW_OK;
    s = stmt(c, S_PUT_ISS);
    sqlite3_bind_text(s, 1, iss.request_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, iss.state);
    bind_time(s, 3, iss.recv_lo);
    bind_time(s, 4, iss.recv_hi);
    bind_time(s, 5, iss.issued_lo);
    bind_time(s, 6, iss.issued_hi);
    sqlite3_bind_int64(s, 7, iss.last_us);
    bind_text_or_null(s, 8, iss.serial);
    bind_text_or_null(s, 9, iss.thumbprint);
    bind_text_or_null(s, 10, iss.txn);
    bind_text_or_null(s, 11, iss.subject);
    bind_text_or_null(s, 12, iss.template_name);
    bind_text_or_null(s, 13, iss.detail);
    if ((e = step_done(c, s, "put issuance")) != SW_OK)
        return e;
    return touch_req(c, rid);
}

/*
 * Runs fn(c, text) for the first 'limit' rows of a query bound to ?1 =
 * limit (rows copied first), then deletes them with 'done' (?1 = the last
 * one, the list being ordered).  The dirty marks live in the events
 * database: their 'done' is left for agg_corr_finish, with ?2 = the latest
 * batch (column 1) among the rows read.
 */
static sw_err
for_each_text(struct agg_corr *c, int which, int done, int64_t limit,
              sw_err (*fn)(struct agg_corr *, const char *))
{
    char **items = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *s = stmt(c, which);
    sw_err e = SW_OK;
    int deferred = done == S_DEV_DONE || done == S_REQ_DONE;
    int64_t gen = 0;
    int rc;

    sqlite3_bind_int64(s, 1, limit);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (deferred && sqlite3_column_int64(s, 1) > gen)
            gen = sqlite3_column_int64(s, 1);
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **ni = realloc(items, cap * sizeof *ni);
            if (!ni) {
                e = SW_ENOMEM;
                break;
            }
            items = ni;
        }
        if (!(items[n] = strdup(t ? t : ""))) {
            e = SW_ENOMEM;
            break;
        }
        n++;
    }
    sqlite3_reset(s);
    if (e == SW_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        e = db_err(c, "list");
    for (size_t i = 0; i < n; i++)
        if (e == SW_OK)
            e = fn(c, items[i]);
    if (e == SW_OK && n && deferred) {
        agg_corr_discard(c);
        c->fin_which = done;
        c->fin_key = items[--n];
        c->fin_gen = gen;
    } else if (e == SW_OK && n) {
        s = stmt(c, done);
        sqlite3_bind_text(s, 1, items[n - 1], -1, SQLITE_TRANSIENT);
        e = step_done(c, s, "done");
    }
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
    return e;
}
/* ---- links ---- */

static sw_err
exec(struct agg_corr *c, const char *q)
{
    char *err = NULL;
    if (sqlite3_exec(c->db, q, NULL, NULL, &err) != SQLITE_OK) {
        sw_error("correlate: %s", err ? err : q);
        sqlite3_free(err);
        return SW_EDB;
    }
    return SW_OK;
}

static const char strong_links[] =
    /* enrollments holding or matching a touched issuance are re-decided (CROSS JOIN: from
     * the few touched rows out, never a scan of every issuance with a key) */
    "INSERT OR IGNORE INTO touched_enr(id) SELECT e.id FROM touched_req t"
    " CROSS JOIN enrollments e ON e.request_id = t.request_id WHERE e.kind = 0;\n"
    "INSERT OR IGNORE INTO touched_enr(id) SELECT e.id FROM touched_req t"
    " CROSS JOIN issuances i ON i.request_id = t.request_id"
    " CROSS JOIN enrollments e ON e.thumbprint = i.thumbprint WHERE e.kind = 0;\n"
    "INSERT OR IGNORE INTO touched_enr(id) SELECT e.id FROM touched_req t"
    " CROSS JOIN issuances i ON i.request_id = t.request_id"
    " CROSS JOIN enrollments e ON e.txn = i.txn WHERE e.kind = 0;\n"
    "INSERT OR IGNORE INTO touched_enr(id) SELECT e.id FROM touched_req t"
    " CROSS JOIN issuances i ON i.request_id = t.request_id"
    " CROSS JOIN enrollments e ON e.serial = i.serial WHERE e.kind = 0;\n"
    "UPDATE enrollments SET request_id = NULL, link = 0"
    " WHERE id IN (SELECT id FROM touched_enr) AND link IN (1, 2, 3);\n"
    /* strongest key first; several matches: the lowest request id */
    "UPDATE enrollments SET link = 1, request_id = (SELECT MIN(i.request_id) FROM issuances i"
    " WHERE i.thumbprint = enrollments.thumbprint)"
    " WHERE id IN (SELECT id FROM touched_enr) AND thumbprint IS NOT NULL AND link IN (0, 4)"
    " AND EXISTS (SELECT 1 FROM issuances i WHERE i.thumbprint = enrollments.thumbprint);\n"
    "UPDATE enrollments SET link = 2, request_id = (SELECT MIN(i.request_id) FROM issuances i"
    " WHERE i.txn = enrollments.txn)"
    " WHERE id IN (SELECT id FROM touched_enr) AND txn IS NOT NULL AND link IN (0, 4)"
    " AND EXISTS (SELECT 1 FROM issuances i WHERE i.txn = enrollments.txn);\n"
    "UPDATE enrollments SET link = 3, request_id = (SELECT MIN(i.request_id) FROM issuances i"
    " WHERE i.serial = enrollments.serial)"
    " WHERE id IN (SELECT id FROM touched_enr) AND serial IS NOT NULL AND link IN (0, 4)"
    " AND EXISTS (SELECT 1 FROM issuances i WHERE i.serial = enrollments.serial);\n"
    /* an issuance taken by a strong link is no longer free for time links */
    "INSERT OR IGNORE INTO touched_req(request_id) SELECT request_id FROM enrollments"
    " WHERE id IN (SELECT id FROM touched_enr) AND link IN (1, 2, 3);\n";

struct cands {
    struct agg_cand_enr *enr;
    int64_t *enr_id;
    char **enr_key;
    char **enr_profile;
    char **enr_old_rid;         /* the time link it had (NULL = none) */
    int *enr_old_link;
    size_t ne, ecap;
    struct agg_cand_iss *iss;
    char **iss_key;
    char **iss_template;
    size_t ni, icap;
};

static void
cands_clear(struct cands *k)
{
    for (size_t i = 0; i < k->ne; i++) {
        free(k->enr_key[i]);
        free(k->enr_profile[i]);
        free(k->enr_old_rid[i]);
    }
    for (size_t i = 0; i < k->ni; i++) {
        free(k->iss_key[i]);
        free(k->iss_template[i]);
    }
    k->ne = k->ni = 0;
}

static void
cands_free(struct cands *k)
{
    cands_clear(k);
    free(k->enr);
    free(k->enr_id);
    free(k->enr_key);
    free(k->enr_profile);
    free(k->enr_old_rid);
    free(k->enr_old_link);
    free(k->iss);
    free(k->iss_key);
    free(k->iss_template);
}

static int
grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 64;
    void *q = realloc(*p, nc * size);
    if (!q)
        return -1;
    *p = q;
    *cap = nc;
    return 0;
}

static sw_err
load_candidates(struct agg_corr *c, int64_t lo, int64_t hi, struct cands *k,
                int64_t *min_t, int64_t *max_t)
{
    sqlite3_stmt *s;
    int rc;

    cands_clear(k);
    *min_t = INT64_MAX;
    *max_t = INT64_MIN;
#define SEE(t) do { if ((t) > 0) { if ((t) < *min_t) *min_t = (t); if ((t) > *max_t) *max_t = (t); } } while (0)
    s = stmt(c, S_CAND_ENR);
    sqlite3_bind_int64(s, 1, lo);
    sqlite3_bind_int64(s, 2, hi);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t cap = k->ecap;
        if (grow((void **)&k->enr, &cap, k->ne, sizeof *k->enr) ||
            grow((void **)&k->enr_id, &(size_t){ k->ecap }, k->ne, sizeof *k->enr_id) ||
            grow((void **)&k->enr_key, &(size_t){ k->ecap }, k->ne, sizeof *k->enr_key) ||
            grow((void **)&k->enr_profile, &(size_t){ k->ecap }, k->ne, sizeof *k->enr_profile) ||
            grow((void **)&k->enr_old_rid, &(size_t){ k->ecap }, k->ne, sizeof *k->enr_old_rid) ||
            grow((void **)&k->enr_old_link, &(size_t){ k->ecap }, k->ne, sizeof *k->enr_old_link))
            goto oom;
        k->ecap = cap;
        const char *key = (const char *)sqlite3_column_text(s, 1);
        k->enr_id[k->ne] = sqlite3_column_int64(s, 0);
        if (!(k->enr_key[k->ne] = strdup(key ? key : "")))
            goto oom;
        const char *prof = (const char *)sqlite3_column_text(s, 4);
        k->enr_profile[k->ne] = prof ? strdup(prof) : NULL;
        const char *old = (const char *)sqlite3_column_text(s, 5);
        k->enr_old_rid[k->ne] = old ? strdup(old) : NULL;
        k->enr_old_link[k->ne] = sqlite3_column_int(s, 6);
        k->enr[k->ne] = (struct agg_cand_enr){ sqlite3_column_int64(s, 2),
                                               sqlite3_column_int64(s, 3), k->enr_key[k->ne], -1,
                                               k->enr_profile[k->ne] };
        SEE(k->enr[k->ne].request_us);
        SEE(k->enr[k->ne].device_issued_us);
        k->ne++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_err(c, "candidate enrollments");
    s = stmt(c, S_CAND_ISS);
    sqlite3_bind_int64(s, 1, lo);
    sqlite3_bind_int64(s, 2, hi);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t cap = k->icap;
        if (grow((void **)&k->iss, &cap, k->ni, sizeof *k->iss) ||
            grow((void **)&k->iss_key, &(size_t){ k->icap }, k->ni, sizeof *k->iss_key) ||
            grow((void **)&k->iss_template, &(size_t){ k->icap }, k->ni, sizeof *k->iss_template))
            goto oom;
        k->icap = cap;
        const char *key = (const char *)sqlite3_column_text(s, 0);
        if (!(k->iss_key[k->ni] = strdup(key ? key : "")))
            goto oom;
        const char *tpl = (const char *)sqlite3_column_text(s, 5);
        k->iss_template[k->ni] = tpl ? strdup(tpl) : NULL;
        k->iss[k->ni] = (struct agg_cand_iss){ sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2),
                                               sqlite3_column_int64(s, 3), sqlite3_column_int64(s, 4),
                                               k->iss_key[k->ni], -1, k->iss_template[k->ni] };
        SEE(k->iss[k->ni].recv_lo);
        SEE(k->iss[k->ni].recv_hi);
        SEE(k->iss[k->ni].issued_lo);
        SEE(k->iss[k->ni].issued_hi);
        k->ni++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_err(c, "candidate issuances");
#undef SEE
    return SW_OK;
oom:
    sqlite3_reset(s);
    return SW_ENOMEM;
}

/* The learned profile -> template pairs, sorted. */
struct tmap {
    char **profile, **tpl;
    size_t n, cap;
};

static void
tmap_free(struct tmap *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->profile[i]);
        free(m->tpl[i]);
    }
    free(m->profile);
    free(m->tpl);
}

static sw_err
tmap_load(struct agg_corr *c, struct tmap *m)
{
    sqlite3_stmt *s = stmt(c, S_MAP);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t cap = m->cap;
        if (grow((void **)&m->profile, &cap, m->n, sizeof *m->profile) ||
            grow((void **)&m->tpl, &(size_t){ m->cap }, m->n, sizeof *m->tpl)) {
            sqlite3_reset(s);
            return SW_ENOMEM;
        }
        m->cap = cap;
        m->profile[m->n] = strdup((const char *)sqlite3_column_text(s, 0));
        m->tpl[m->n] = strdup((const char *)sqlite3_column_text(s, 1));
        if (!m->profile[m->n] || !m->tpl[m->n]) {
            sqlite3_reset(s);
            return SW_ENOMEM;
        }
        m->n++;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SW_OK : db_err(c, "template map");
}

/* A profile no strong link has shown yet may use any template. */
static int
tmap_compat(void *arg, const char *profile, const char *tpl)
{
    const struct tmap *m = arg;
    int known = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->profile[i], profile) != 0)
            continue;
        known = 1;
        if (strcmp(m->tpl[i], tpl) == 0)
            return 1;
    }
    return !known;
}

static sw_err
queue_req(struct agg_corr *c, const char *rid)
{
    sqlite3_stmt *s = stmt(c, S_REFRESH_REQ);
    sqlite3_bind_text(s, 1, rid, -1, SQLITE_TRANSIENT);
    return step_done(c, s, "queue refresh");
}

static int
key_cmp(const void *a, const void *b, void *arg)
{
    char **keys = arg;
    return strcmp(keys[*(const uint32_t *)a], keys[*(const uint32_t *)b]);
}

/* The candidate issuance with this request id, or -1 (ord: indices sorted by key). */
static int
iss_find(const struct cands *k, const uint32_t *ord, const char *rid)
{
    size_t lo = 0, hi = k->ni;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = strcmp(k->iss_key[ord[mid]], rid);
        if (d == 0)
            return (int)ord[mid];
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static int
same_rid(const char *a, const char *b)
{
    return a ? b && strcmp(a, b) == 0 : !b;
}

/*
 * Re-decides the time links of the region the change reaches, and writes
 * (and marks for a status refresh) only what changed.  The region grows
 * until no candidate lies within reach of its edges, so it holds whole
 * chains of candidates; it grows geometrically, so a fleet whose requests
 * chain across a year costs a few loads, not one per window.
 */
static sw_err
time_links(struct agg_corr *c)
{
    struct cands k = { 0 };
    struct tmap map = { 0 };
    int64_t reach = c->window_us + CERTUTIL_SPAN_US;
    int64_t lo = c->lo, hi = c->hi, min_t, max_t;
    uint32_t *ord = NULL;
    unsigned char *was = NULL;
    sw_err e;

    int loads = 0;
    int64_t t_load = sw_mono_us();

    if (lo > hi)
        return SW_OK;
    /*
     * Start with a margin: a request's own later points (its issuance, the
     * device receiving it) lie minutes past its start, and without one a
     * whole-timeline region is loaded twice.
     */
    lo -= 4 * reach;
    hi += 4 * reach;
    for (;;) {
        loads++;
        if ((e = load_candidates(c, lo - reach, hi + reach, &k, &min_t, &max_t)) != SW_OK)
            goto out;
        if (min_t >= lo && max_t <= hi)
            break;
        int64_t grow_by = (hi - lo) + reach;
        if (min_t < lo)
            lo = min_t < lo - grow_by ? min_t : lo - grow_by;
        if (max_t > hi)
            hi = max_t > hi + grow_by ? max_t : hi + grow_by;
    }
    int64_t tl = sw_mono_us();
    if ((e = tmap_load(c, &map)) != SW_OK)
        goto out;
    if (agg_match_time(k.enr, k.ne, k.iss, k.ni, c->window_us, tmap_compat, &map) != 0) {
        e = SW_ENOMEM;
        goto out;
    }
    /* which candidate issuances were time-linked before */
    ord = malloc((k.ni ? k.ni : 1) * sizeof *ord);
    was = calloc(k.ni ? k.ni : 1, 1);
    if (!ord || !was) {
        e = SW_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < k.ni; i++)
        ord[i] = (uint32_t)i;
    if (k.ni > 1)
        qsort_r(ord, k.ni, sizeof *ord, key_cmp, k.iss_key);
    for (size_t i = 0; i < k.ne; i++) {
        if (k.enr_old_link[i] != AGG_LINK_TIME || !k.enr_old_rid[i])
            continue;
        int x = iss_find(&k, ord, k.enr_old_rid[i]);
        if (x >= 0)
            was[x] = 1;
        else if ((e = queue_req(c, k.enr_old_rid[i])) != SW_OK)
            goto out;
    }
    for (size_t i = 0; i < k.ne; i++) {
        int m = k.enr[i].match;
        const char *rid = m >= 0 ? k.iss_key[m] : NULL;
        int link = m >= 0 ? AGG_LINK_TIME : AGG_LINK_NONE;
        if (k.enr_old_link[i] == link && same_rid(k.enr_old_rid[i], rid))
            continue;
        sqlite3_stmt *s = stmt(c, S_SET_LINK);
        sqlite3_bind_int64(s, 1, k.enr_id[i]);
        if (rid)
            sqlite3_bind_text(s, 2, rid, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(s, 2);
        sqlite3_bind_int(s, 3, link);
        if ((e = step_done(c, s, "set link")) != SW_OK)
            goto out;
        /* links are decided: what changed goes straight to the status refresh */
        s = stmt(c, S_REFRESH_ENR);
        sqlite3_bind_int64(s, 1, k.enr_id[i]);
        if ((e = step_done(c, s, "queue refresh")) != SW_OK)
            goto out;
    }
    for (size_t i = 0; i < k.ni; i++)
        if (was[i] != (k.iss[i].match >= 0) && (e = queue_req(c, k.iss_key[i])) != SW_OK)
            goto out;
    sw_debug("time links: %zu enrollments, %zu issuances (%d loads, %.0f ms); matched and"
             " written in %.0f ms", k.ne, k.ni, loads, (double)(tl - t_load) / 1000,
             (double)(sw_mono_us() - tl) / 1000);
    e = SW_OK;
out:
    free(ord);
    free(was);
    cands_free(&k);
    tmap_free(&map);
    return e;
}

/* ---- derived status ---- */

static void
col_copy(sqlite3_stmt *s, int col, char *dst, size_t cap)
{
    const char *p = (const char *)sqlite3_column_text(s, col);
    snprintf(dst, cap, "%s", p ? p : "");
}

static int
load_issuance(struct agg_corr *c, const char *rid, struct agg_issuance *iss)
{
    sqlite3_stmt *s = stmt(c, S_ISS_ROW);
    int found = 0;
    sqlite3_bind_text(s, 1, rid, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s) == SQLITE_ROW) {
        memset(iss, 0, sizeof *iss);
        col_copy(s, 0, iss->request_id, sizeof iss->request_id);
        iss->state = (enum sw_stage)sqlite3_column_int(s, 1);
        iss->recv_lo = sqlite3_column_int64(s, 2);
        iss->recv_hi = sqlite3_column_int64(s, 3);
        iss->issued_lo = sqlite3_column_int64(s, 4);
        iss->issued_hi = sqlite3_column_int64(s, 5);
        iss->last_us = sqlite3_column_int64(s, 6);
        col_copy(s, 7, iss->serial, sizeof iss->serial);
        col_copy(s, 8, iss->thumbprint, sizeof iss->thumbprint);
        col_copy(s, 9, iss->txn, sizeof iss->txn);
        col_copy(s, 10, iss->subject, sizeof iss->subject);
        col_copy(s, 11, iss->template_name, sizeof iss->template_name);
        col_copy(s, 12, iss->detail, sizeof iss->detail);
        found = 1;
    }
    sqlite3_reset(s);
    return found;
}

static int
ca_issued_state(enum sw_stage s)
{
    return s == SW_STAGE_CA_ISSUED || s == SW_STAGE_CA_REVOKED;
}

static sw_err
refresh_enrollment(struct agg_corr *c, int64_t id)
{
    struct agg_enrollment e;
    struct agg_issuance iss;
    char rid[64] = "";
    int64_t since = 0;
    sqlite3_stmt *s = stmt(c, S_ENR_ROW);
    int has_iss = 0;

    sqlite3_bind_int64(s, 1, id);
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_reset(s);
        return SW_OK; /* deleted by a rebuild */
    }
    memset(&e, 0, sizeof e);
    col_copy(s, 0, e.device, sizeof e.device);
    e.platform = (enum sw_platform)sqlite3_column_int(s, 1);
    e.seq = sqlite3_column_int(s, 2);
    col_copy(s, 3, e.profile, sizeof e.profile);
    e.first_us = sqlite3_column_int64(s, 4);
    e.request_us = sqlite3_column_int64(s, 5);
    e.device_issued_us = sqlite3_column_int64(s, 6);
    e.installed_us = sqlite3_column_int64(s, 7);
    e.last_us = sqlite3_column_int64(s, 8);
    e.last_stage = (enum sw_stage)sqlite3_column_int(s, 9);
    e.pending = sqlite3_column_int(s, 10);
    e.failed = sqlite3_column_int(s, 11);
    e.install_state = (enum sw_stage)sqlite3_column_int(s, 12);
    col_copy(s, 13, e.txn, sizeof e.txn);
    col_copy(s, 14, e.thumbprint, sizeof e.thumbprint);
    col_copy(s, 15, e.serial, sizeof e.serial);
    col_copy(s, 16, e.detail, sizeof e.detail);
    col_copy(s, 17, rid, sizeof rid);
    sqlite3_reset(s);
    if (rid[0])
        has_iss = load_issuance(c, rid, &iss);
    enum agg_status st = agg_enrollment_status(&e, has_iss ? &iss : NULL, &since);
    const struct agg_issuance *i = has_iss ? &iss : NULL;
    s = stmt(c, S_SET_STATUS);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int(s, 2, st);
    bind_time(s, 3, since);
    sqlite3_bind_int(s, 4, i && ca_issued_state(i->state));
    /* what the report shows: the later of the device's and the CA's news */
    sqlite3_bind_int(s, 5, i && i->last_us > e.last_us ? (int)i->state : (int)e.last_stage);
    sqlite3_bind_int64(s, 6, i && i->last_us > e.last_us ? i->last_us : e.last_us);
    bind_time(s, 7, i && i->issued_lo ? i->issued_lo : e.device_issued_us);
    bind_text_or_null(s, 8, i && i->serial[0] ? i->serial : e.serial);
    bind_text_or_null(s, 9, i && i->thumbprint[0] ? i->thumbprint : e.thumbprint);
    bind_text_or_null(s, 10, e.txn[0] || !i ? e.txn : i->txn);
    bind_text_or_null(s, 11, e.detail[0] || !i ? e.detail : i->detail);
    bind_text_or_null(s, 12, i ? i->subject : NULL);
    bind_text_or_null(s, 13, i ? i->template_name : NULL);
    return step_done(c, s, "set status");
}

static sw_err
refresh_request(struct agg_corr *c, const char *rid)
{
    struct agg_issuance iss;
    sqlite3_stmt *s = stmt(c, S_REQ_LINKED);
    int linked;
    char rowkey[64];
    int64_t since = 0;

    sqlite3_bind_text(s, 1, rid, -1, SQLITE_TRANSIENT);
    linked = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    if (linked || !load_issuance(c, rid, &iss)) {
        s = stmt(c, S_DEL_CA_ROW);
        sqlite3_bind_text(s, 1, rid, -1, SQLITE_TRANSIENT);
        return step_done(c, s, "delete CA row");
    }
    enum agg_status st = agg_orphan_status(&iss, &since);
    /* numeric ids sort numerically */
    if (strspn(rid, "0123456789") == strlen(rid) && strlen(rid) <= 20)
        snprintf(rowkey, sizeof rowkey, "2|%020llu", strtoull(rid, NULL, 10));
    else
        snprintf(rowkey, sizeof rowkey, "2|%s", rid);
    s = stmt(c, S_PUT_CA_ROW);
    sqlite3_bind_text(s, 1, rowkey, -1, SQLITE_TRANSIENT);
    bind_time(s, 2, iss.recv_lo ? iss.recv_lo : iss.last_us);
    sqlite3_bind_int64(s, 3, iss.last_us);
    sqlite3_bind_int(s, 4, iss.state);
    bind_text_or_null(s, 5, iss.txn);
    bind_text_or_null(s, 6, iss.thumbprint);
    bind_text_or_null(s, 7, iss.serial);
    bind_text_or_null(s, 8, iss.state == SW_STAGE_CA_REVOKED ? "revoked" : iss.detail);
    sqlite3_bind_text(s, 9, rid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 10, st);
    bind_time(s, 11, since);
    sqlite3_bind_int(s, 12, ca_issued_state(iss.state));
    bind_time(s, 13, iss.issued_lo);
    bind_text_or_null(s, 14, iss.subject);
    bind_text_or_null(s, 15, iss.template_name);
    return step_done(c, s, "put CA row");
}

/* The links step: strong links, learned templates, time links, for everything touched. */
static sw_err
links_step(struct agg_corr *c)
{
    sqlite3_stmt *s;
    sw_err e;
    int rc;

    int64_t t0 = sw_mono_us(), t1, t2;

    c->lo = INT64_MAX;
    c->hi = INT64_MIN;
    if ((e = exec(c, strong_links)) != SW_OK)
        return e;
    /*
     * A profile/template pair seen for the first time can change time links
     * anywhere: relink the whole timeline (rare: once per new pair), so the
     * answer stays independent of the order events came in.
     */
    s = stmt(c, S_LEARN);
    if (sqlite3_step(s) != SQLITE_DONE) {
        sqlite3_reset(s);
        return db_err(c, "learn templates");
    }
    sqlite3_reset(s);
    if (sqlite3_changes(c->db) > 0) {
        c->lo = 1;
        c->hi = INT64_MAX / 4;
    }
    /* the region: where touched enrollments and issuances sit */
    {
        static const char q[] =
            "SELECT MIN(t), MAX(t) FROM ("
            " SELECT request_us AS t FROM enrollments WHERE id IN (SELECT id FROM touched_enr)"
            " UNION ALL SELECT device_issued_us FROM enrollments WHERE id IN (SELECT id FROM touched_enr)"
            " UNION ALL SELECT recv_lo FROM issuances WHERE request_id IN (SELECT request_id FROM touched_req)"
            " UNION ALL SELECT issued_lo FROM issuances WHERE request_id IN (SELECT request_id FROM touched_req))"
            " WHERE t > 0";
        if (sqlite3_prepare_v2(c->db, q, -1, &s, NULL) != SQLITE_OK)
            return db_err(c, "region");
        if ((rc = sqlite3_step(s)) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
            extend(c, sqlite3_column_int64(s, 0));
            extend(c, sqlite3_column_int64(s, 1));
        }
        sqlite3_finalize(s);
    }
    t1 = sw_mono_us();
    if ((e = time_links(c)) != SW_OK)
        return e;
    t2 = sw_mono_us();
    sw_debug("links: strong %.0f ms, time %.0f ms", (double)(t1 - t0) / 1000,
             (double)(t2 - t1) / 1000);
    /* what was touched now waits for its status refresh */
    return exec(c, "INSERT OR IGNORE INTO refresh_enr(id) SELECT id FROM touched_enr;"
                   " INSERT OR IGNORE INTO refresh_req(request_id) SELECT request_id FROM touched_req;"
                   " DELETE FROM touched_enr; DELETE FROM touched_req;");
}

static sw_err
refresh_enrollments(struct agg_corr *c, int64_t limit)
{
    sqlite3_stmt *s = stmt(c, S_REFRESH_ENR_LIST);
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    sw_err e = SW_OK;
    int rc;

    sqlite3_bind_int64(s, 1, limit);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (grow((void **)&ids, &cap, n, sizeof *ids)) {
            sqlite3_reset(s);
            free(ids);
            return SW_ENOMEM;
        }
        ids[n++] = sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        e = db_err(c, "refresh list");
    for (size_t i = 0; i < n && e == SW_OK; i++)
        e = refresh_enrollment(c, ids[i]);
    if (e == SW_OK && n) {
        s = stmt(c, S_REFRESH_ENR_DONE);
        sqlite3_bind_int64(s, 1, ids[n - 1]);
        e = step_done(c, s, "refresh done");
    }
    free(ids);
    return e;
}

struct time_key {
    int64_t ts_us, id;
};

struct dev_key {
    unsigned char ident[SW_EVENT_IDENT_LEN];
    int64_t id;
};

static int
dev_key_cmp(const void *a, const void *b)
{
    const struct dev_key *x = a, *y = b;
    int c = memcmp(x->ident, y->ident, sizeof x->ident);
    return c ? c : (x->id < y->id ? -1 : x->id > y->id);
}

static int
time_key_cmp(const void *a, const void *b)
{
    const struct time_key *x = a, *y = b;
    if (x->ts_us != y->ts_us)
        return x->ts_us < y->ts_us ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * Adds events past the indexes' mark to them (event_time, event_dev),
 * AGG_CORR_STEP_TIME a step, in key order: a history upload's times are
 * scattered, and sorted they land on each index page once instead of once
 * a row.
 */
static sw_err
index_times(struct agg_corr *c, int64_t upto)
{
    sqlite3_stmt *s = stmt(c, S_TIME_NEW), *put = c->st[S_TIME_PUT];
    sqlite3_stmt *req = c->st[S_NEW_REQ_PUT], *dput = stmt(c, S_DEV_PUT);
    struct time_key *k = malloc(AGG_CORR_STEP_TIME * sizeof *k);
    struct dev_key *d = malloc(AGG_CORR_STEP_TIME * sizeof *d);
    size_t n = 0;
    sw_err e = SW_OK;
    int rc;

    if (!k || !d) {
        free(k);
        free(d);
        return SW_ENOMEM;
    }
    sqlite3_bind_int64(s, 1, upto);
    sqlite3_bind_int64(s, 2, AGG_CORR_STEP_TIME);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < AGG_CORR_STEP_TIME) {
        k[n].id = d[n].id = sqlite3_column_int64(s, 0);
        k[n].ts_us = sqlite3_column_int64(s, 1);
        memset(d[n].ident, 0, sizeof d[n].ident);
        if (sqlite3_column_bytes(s, 3) == SW_EVENT_IDENT_LEN)
            memcpy(d[n].ident, sqlite3_column_blob(s, 3), SW_EVENT_IDENT_LEN);
        n++;
        /* a CA row's request, to be rebuilt (committed with the index's mark) */
        if (sqlite3_column_type(s, 2) != SQLITE_NULL) {
            sqlite3_bind_text(req, 1, (const char *)sqlite3_column_text(s, 2),
                              sqlite3_column_bytes(s, 2), SQLITE_STATIC);
            if ((e = step_done(c, req, "new request")) != SW_OK)
                break;
        }
    }
    sqlite3_reset(s);
    if (e == SW_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        e = db_err(c, "new events");
    if (e != SW_OK || n == 0) {
        free(k);
        free(d);
        return e;
    }
    int64_t last = k[n - 1].id;     /* read in id order */
    unsigned char last_ident[SW_EVENT_IDENT_LEN];
    memcpy(last_ident, d[n - 1].ident, sizeof last_ident);
    qsort(k, n, sizeof *k, time_key_cmp);
    for (size_t i = 0; i < n && e == SW_OK; i++) {
        sqlite3_bind_int64(put, 1, k[i].ts_us);
        sqlite3_bind_int64(put, 2, k[i].id);
        e = step_done(c, put, "time index");
    }
    qsort(d, n, sizeof *d, dev_key_cmp);
    for (size_t i = 0; i < n && e == SW_OK; i++) {
        sqlite3_bind_blob(dput, 1, d[i].ident, SW_EVENT_IDENT_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(dput, 2, d[i].id);
        e = step_done(c, dput, "device index");
    }
    sqlite3_clear_bindings(dput);   /* d is freed below */
    free(k);
    free(d);
    if (e != SW_OK)
        return e;
    /* the mark and the identity of the event it names (mark_matches) */
    s = stmt(c, S_TIME_UPTO);
    sqlite3_bind_int64(s, 1, last);
    sqlite3_bind_blob(s, 2, last_ident, sizeof last_ident, SQLITE_TRANSIENT);
    return step_done(c, s, "time index mark");
}

sw_err
agg_corr_step(struct agg_corr *c, int *idle)
{
    sqlite3_stmt *s = stmt(c, S_WORK);
    int dev, req, new_req, touched, renr, rreq;
    int64_t upto, newest;

    *idle = 0;
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_reset(s);
        return db_err(c, "work");
    }
    dev = sqlite3_column_int(s, 0);
    req = sqlite3_column_int(s, 1);
    touched = sqlite3_column_int(s, 2);
    renr = sqlite3_column_int(s, 3);
    rreq = sqlite3_column_int(s, 4);
    upto = sqlite3_column_int64(s, 5);
    newest = sqlite3_column_int64(s, 6);
    new_req = sqlite3_column_int(s, 7);
    sqlite3_reset(s);
    /* first: a listing reads the events past the index without it, slowly */
    if (newest > upto)
        return index_times(c, upto);
    /* devices and requests first: links are decided once for all of them */
    if (dev)
        return for_each_text(c, S_DEV_LIST, S_DEV_DONE, AGG_CORR_STEP_DEVICES, rebuild_device);
    if (req)
        return for_each_text(c, S_REQ_LIST, S_REQ_DONE, AGG_CORR_STEP_ROWS, rebuild_issuance);
    if (new_req)
        return for_each_text(c, S_NEW_REQ_LIST, S_NEW_REQ_DONE, AGG_CORR_STEP_ROWS,
                             rebuild_issuance);
    if (touched)
        return links_step(c);
    if (renr)
        return refresh_enrollments(c, AGG_CORR_STEP_ROWS);
    if (rreq)
        return for_each_text(c, S_REFRESH_REQ_LIST, S_REFRESH_REQ_DONE, AGG_CORR_STEP_ROWS,
                             refresh_request);
    *idle = 1;
    return SW_OK;
}
