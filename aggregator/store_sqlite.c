/*
 * store_sqlite.c - the embedded default store: SQLite in WAL mode.
 *
 * Two database files: PATH holds the events (the record: what agents
 * sent) and the correlation work marks; PATH-derived holds what is
 * computed from them (enrollments, issuances, their work lists), so the
 * events writer and the correlator write side by side instead of taking
 * turns.  Deleting PATH-derived makes the next start rebuild it.
 *
 * One events writer connection guarded by a mutex; one correlation
 * connection (the derived database, the events attached) owned by the
 * correlator thread; one connection per reader (the same shape, read
 * only).  Ingest is one transaction per batch with prepared statements,
 * so a batch is either wholly committed (and then acknowledged) or not.
 *
 * An event's identity is unique without an index on it: the writer keeps
 * the identities it stored in memory (ident_set: 16 bytes an event, loaded
 * from the table at open), and an event whose identity is there is a
 * duplicate.  The unique index it replaces cost more than the row: the
 * 100k-enrollment upload wrote 390 MB to the WAL with it and 104 MB
 * without, and took 1.61-1.88 s against 1.18-1.21 s.  One device's events
 * are found through the correlator's event_dev index (derived database)
 * and, past its mark, by reading the newest events.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ident_set.h"
#include "store.h"
#include "store_correlate.h"
#include "sw_log.h"
#include "sw_time.h"

/*
 * Correlation is deferred and runs in steps (agg_corr_step), on the
 * correlator thread: an ingest commits its events and their dirty marks
 * (persistent, in the same transaction) and returns; the correlator then
 * works the backlog off a step at a time, each step a transaction of the
 * derived database, while ingest goes on.  Only removing the marks a step
 * worked off takes the events writer, briefly.
 * A reader of enrollments or the funnel waits up to CORR_READ_WAIT_US for
 * the backlog it can see to be worked off (so an admin reads what was just
 * sent, correlated); past that it answers from what is correlated so far
 * and says how much is still waiting.
 */
#define CORR_READ_WAIT_US (10 * 1000 * 1000)
#define CORR_NICE 10
/*
 * Ingest first: while batches keep arriving (one committed within the last
 * CORR_QUIET_US), the correlator waits, for at most CORR_DEFER_MAX_US from
 * the first mark it has not worked off, and never while a reader waits.
 * A lower priority alone did not keep it out of the writer's way: on two
 * cores, the 100k upload's writer held its lock 1.45 s of 1.82 s, and the
 * correlator running beside it cost 7% of the upload's time (1.86 s
 * deferred, 1.97 to 2.11 s not; three interleaved pairs).  What it defers it
 * works off as soon as the batches stop, devices marked by several batches
 * once.
 */
#define CORR_QUIET_US (250 * 1000)
#define CORR_DEFER_MAX_US (30 * 1000 * 1000)
#define EVENTS_CACHE_KIB "32768"       /* the events writer's page cache (see sqlite_open) */
/*
 * Pages of a new events database (an existing one keeps its own): an
 * ingest commit writes a quarter of the WAL frames, each a write call or
 * two.  Measured, interleaved runs: 100k upload 209k -> 235k events/s
 * (medians of 4), 1M 180k/218k -> 221k/277k (two pairs).
 */
#define EVENTS_PAGE_SIZE "16384"
/*
 * The events WAL is checkpointed by the correlator thread (passive: it
 * never blocks the writer) once it holds CKPT_SOFT pages, so the ingest
 * thread does not copy pages at commit; past CKPT_HARD (the correlator
 * busy with a long step) the writer checkpoints itself, as SQLite would.
 * With 16 KiB pages: 128 MiB and 1 GiB of WAL (the same counts in bytes,
 * 32 and 256 MiB, ingested as fast); journal_size_limit trims it after.
 */
#define CKPT_SOFT 8192
#define CKPT_HARD 65536

struct sqlite_store {
    struct agg_store base;
    char *path;                 /* events */
    char *dpath;                /* derived: path + "-derived" */
    sqlite3 *db;                /* events writer */
    sqlite3 *cdb;               /* correlation: derived, events attached */
    sqlite3_stmt *insert;
    sqlite3_stmt *ident_of;     /* an event's identity by id */
    struct ident_set ids;       /* the identities stored, under lock */
    struct agg_corr *corr;
    int64_t batch_gen;          /* the last ingest batch's number, under lock */
    pthread_mutex_t lock;       /* the events writer connection */
    /* correlation state, under cmu (never held while waiting for lock) */
    pthread_mutex_t cmu;
    pthread_cond_t cv;          /* wakes the correlator */
    pthread_cond_t done_cv;     /* a step finished */
    pthread_t corr_thread;
    int corr_thread_started;
    int stopping;
    int pending;                /* the work lists may hold rows */
    uint64_t mark_gen;          /* ingests that marked something */
    uint64_t done_gen;          /* mark_gen the last idle step had seen */
    int waiters;                /* readers waiting for the backlog */
    int64_t last_batch_us;      /* monotonic time of the last marking commit */
    int64_t pending_since_us;   /* ... of the first mark not yet worked off */
    int64_t defer_max_us;       /* CORR_DEFER_MAX_US, or the test's */
    int ckpt_wanted;            /* the events WAL has grown past CKPT_SOFT */
    uint64_t steps, step_us;    /* for the log */
    uint64_t batches, write_us; /* ingest transactions, and the writer's time in them */
};

struct sqlite_reader {
    struct agg_store_reader base;
    struct sqlite_store *st;
    uint64_t backlog;           /* correlation rows waiting at the last catch-up */
    sqlite3 *db;
    sqlite3_stmt *list[32];     /* by filter shape */
    sqlite3_stmt *tail[32];     /* the fleet's events past the time index, by shape */
    sqlite3_stmt *count;
    sqlite3_stmt *enr[128];     /* by filter shape */
    sqlite3_stmt *funnel;
    sqlite3_stmt *funnel_stuck;
};

/*
 * 2: 24-byte identities (sw_event_identity), which 1's 16-byte ones cannot
 * dedupe against; 3: no unique index on them (ident_set).  A version 2
 * database is written as it is: its index only costs time.
 */
#define SCHEMA_VERSION "3"
#define SCHEMA_COMPAT "2"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);\n"
    "CREATE TABLE IF NOT EXISTS events(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  ident BLOB NOT NULL,          -- sw_event_identity: device hash, time, content hash\n"
    "  device TEXT,\n"
    "  source INTEGER NOT NULL,\n"
    "  platform INTEGER NOT NULL,\n"
    "  stage INTEGER NOT NULL,\n"
    "  cert INTEGER NOT NULL,\n"
    "  ts_us INTEGER NOT NULL,       -- microseconds since the epoch, UTC\n"
    "  profile TEXT, txn TEXT, thumbprint TEXT, serial TEXT, request_id TEXT,\n"
    "  subject TEXT, template TEXT, requester TEXT, detail TEXT,\n"
    "  file TEXT, line_offset INTEGER, host TEXT, agent TEXT,\n"
    "  line_hash INTEGER NOT NULL,\n"
    "  received_us INTEGER NOT NULL\n"
    ");\n"
    "-- no index on the ident (unique by the writer's ident_set) nor on time: a\n"
    "-- device's events (event_dev) and the fleet's time order (event_time) are\n"
    "-- indexed in the derived database by the correlator, so inserts here stay appends\n"
    "DROP INDEX IF EXISTS events_ts;\n"
    "DROP INDEX IF EXISTS events_device_ts;\n"
    "-- CA events only: device events carry no request id\n"
    "CREATE INDEX IF NOT EXISTS events_request ON events(request_id) WHERE request_id IS NOT NULL;\n"
    "-- what correlation must revisit, committed with the events; gen: the batch that\n"
    "-- marked it last (a mark made again while a step works stays for the next one)\n"
    "-- (without rowid: a mark is one b-tree insert, not a row and its key's index)\n"
    "CREATE TABLE IF NOT EXISTS dirty_dev(device TEXT PRIMARY KEY, gen INTEGER NOT NULL DEFAULT 0)"
    " WITHOUT ROWID;\n"
    "CREATE TABLE IF NOT EXISTS dirty_req(request_id TEXT PRIMARY KEY,"
    " gen INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;\n"
    "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '" SCHEMA_VERSION "');\n";

static const char insert_sql[] =
    "INSERT OR IGNORE INTO events(ident, device, source, platform, stage, cert, ts_us, profile,"
    " txn, thumbprint, serial, request_id, subject, template, requester, detail, file,"
    " line_offset, host, agent, line_hash, received_us)"
    " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22)";
/*
 * INSERT OR IGNORE above: a version 2 table still has its unique index, and
 * should the identity set ever miss an event stored there, the row is
 * counted a duplicate instead of failing the batch on every retry.
 */

#define EVENT_COLS                                                                      \
    "e.id, e.device, e.source, e.platform, e.stage, e.cert, e.ts_us, e.profile, e.txn,"  \
    " e.thumbprint, e.serial, e.request_id, e.subject, e.template, e.requester, e.detail," \
    " e.file, e.line_offset, e.host"

static void
set_why(char *why, size_t cap, sqlite3 *db, const char *what)
{
    snprintf(why, cap, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

static sw_err
open_conn(const char *path, int readonly, sqlite3 **out, char *why, size_t cap)
{
    int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX;
    sqlite3 *db = NULL;

    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        set_why(why, cap, db, path);
        sqlite3_close(db);
        return SW_EDB;
    }
    sqlite3_busy_timeout(db, 10000);
    if (readonly)
        sqlite3_exec(db, "PRAGMA cache_size=-32768; PRAGMA mmap_size=1073741824;", NULL, NULL, NULL);
    *out = db;
    return SW_OK;
}

static sw_err
exec(sqlite3 *db, const char *sql, char *why, size_t cap)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        snprintf(why, cap, "%s", err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return SW_EDB;
    }
    return SW_OK;
}

/* An events table of another layout is refused, not silently mixed with. */
static sw_err
check_version(sqlite3 *db, char *why, size_t cap)
{
    sqlite3_stmt *s;
    sw_err e = SW_OK;

    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &s,
                           NULL) != SQLITE_OK) {
        set_why(why, cap, db, "schema version");
        return SW_EDB;
    }
    if (sqlite3_step(s) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(s, 0);
        if (!v || (strcmp(v, SCHEMA_VERSION) != 0 && strcmp(v, SCHEMA_COMPAT) != 0)) {
            snprintf(why, cap, "the database has schema version %s; this aggregator writes "
                     "version " SCHEMA_VERSION ": give a new --db and send the logs again",
                     v ? v : "?");
            e = SW_EDB;
        }
    }
    sqlite3_finalize(s);
    return e;
}

/*
 * A database of the same version written before the derived tables moved
 * out: marks gain their batch number; the derived tables left here go
 * (the derived database is rebuilt from the events).
 */
static sw_err
migrate(sqlite3 *db, char *why, size_t cap)
{
    static const char *const tables[] = { "dirty_dev", "dirty_req" };
    char sql[160];
    sw_err e;

    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        sqlite3_stmt *s = NULL;
        snprintf(sql, sizeof sql, "SELECT gen FROM %s LIMIT 0", tables[i]);
        if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
            sqlite3_finalize(s);
            continue;
        }
        snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN gen INTEGER NOT NULL DEFAULT 0",
                 tables[i]);
        if ((e = exec(db, sql, why, cap)) != SW_OK)
            return e;
    }
    return exec(db, "DROP TABLE IF EXISTS enrollments; DROP TABLE IF EXISTS issuances;"
                    " DROP TABLE IF EXISTS profile_templates; DROP TABLE IF EXISTS touched_enr;"
                    " DROP TABLE IF EXISTS touched_req; DROP TABLE IF EXISTS refresh_enr;"
                    " DROP TABLE IF EXISTS refresh_req;"
                    " DELETE FROM meta WHERE key = 'corr_version';", why, cap);
}

/* The latest batch number among the marks (batch numbers go on from it). */
static int64_t
last_gen(sqlite3 *db)
{
    sqlite3_stmt *s;
    int64_t g = 0;
    if (sqlite3_prepare_v2(db, "SELECT max(ifnull((SELECT max(gen) FROM dirty_dev), 0),"
                               " ifnull((SELECT max(gen) FROM dirty_req), 0))", -1, &s,
                           NULL) != SQLITE_OK)
        return 0;
    if (sqlite3_step(s) == SQLITE_ROW)
        g = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return g;
}

/*
 * The derived database on a connection: main, with the events attached as
 * "ev", given cache_kib of page cache and the same mmap as main.
 */
static sw_err
attach_events(sqlite3 *db, const char *events_path, int cache_kib, char *why, size_t cap)
{
    sqlite3_stmt *s;
    char pragmas[128];
    int rc;

    if (sqlite3_prepare_v2(db, "ATTACH DATABASE ?1 AS ev", -1, &s, NULL) != SQLITE_OK) {
        set_why(why, cap, db, "attach");
        return SW_EDB;
    }
    sqlite3_bind_text(s, 1, events_path, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        set_why(why, cap, db, events_path);
        return SW_EDB;
    }
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA ev.cache_size=-%d; PRAGMA ev.mmap_size=1073741824;", cache_kib);
    return exec(db, pragmas, why, cap);
}

static void
sqlite_close(struct agg_store *base)
{
    struct sqlite_store *st = (struct sqlite_store *)base;
    if (!st)
        return;
    if (st->corr_thread_started) {
        pthread_mutex_lock(&st->cmu);
        st->stopping = 1;
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->cmu);
        pthread_join(st->corr_thread, NULL);
        if (st->steps)
            sw_info("correlation: %llu steps, %.1f s in all", (unsigned long long)st->steps,
                    (double)st->step_us / 1e6);
        /* what is still dirty stays marked in the database for the next start */
    }
    if (st->batches)
        sw_info("ingest: %llu batches, the writer busy %.2f s in all",
                (unsigned long long)st->batches, (double)st->write_us / 1e6);
    sqlite3_finalize(st->insert);
    sqlite3_finalize(st->ident_of);
    ident_set_fini(&st->ids);
    agg_corr_close(st->corr);
    sqlite3_close(st->cdb);
    sqlite3_close(st->db);
    pthread_cond_destroy(&st->cv);
    pthread_cond_destroy(&st->done_cv);
    pthread_mutex_destroy(&st->cmu);
    pthread_mutex_destroy(&st->lock);
    free(st->path);
    free(st->dpath);
    free(st);
}

/*
 * One correlation step in a transaction of the derived database (deferred:
 * the events are only read, so the events writer is never blocked), then
 * the removal of the marks it worked off, on the events writer.
 */
static sw_err
corr_step(struct sqlite_store *st, int *idle)
{
    char why[256];
    sw_err e;

    *idle = 0;
    if (exec(st->cdb, "BEGIN", why, sizeof why) != SW_OK) {
        sw_error("store: correlate: %s", why);
        return SW_EDB;
    }
    e = agg_corr_step(st->corr, idle);
    if (e == SW_OK && exec(st->cdb, "COMMIT", why, sizeof why) != SW_OK) {
        sw_error("store: correlate: commit: %s", why);
        e = SW_EDB;
    }
    if (e != SW_OK) {
        exec(st->cdb, "ROLLBACK", why, sizeof why);
        agg_corr_discard(st->corr);
        return e;
    }
    if (agg_corr_finish_pending(st->corr)) {
        pthread_mutex_lock(&st->lock);
        e = agg_corr_finish(st->corr);
        pthread_mutex_unlock(&st->lock);
    }
    return e;
}

/*
 * Readers call this first.  Returns the rows still waiting when it gave up
 * waiting (0: what the reader sees is correlated up to its call).
 */
static uint64_t
corr_catch_up(struct sqlite_store *st, sqlite3 *db)
{
    int64_t until = sw_mono_us() + CORR_READ_WAIT_US;
    uint64_t target, left = 0;

    pthread_mutex_lock(&st->cmu);
    target = st->mark_gen;
    st->waiters++;
    pthread_cond_signal(&st->cv);
    while (st->pending && st->done_gen < target && !st->stopping) {
        int64_t now = sw_mono_us();
        struct timespec ts;
        if (now >= until)
            break;
        sw_mono_deadline(&ts, until - now);
        pthread_cond_timedwait(&st->done_cv, &st->cmu, &ts);
    }
    st->waiters--;
    int behind = st->pending && st->done_gen < target;
    pthread_mutex_unlock(&st->cmu);
    if (behind) {
        /* counted on the reader's own connection: a step may hold the writer for long */
        left = agg_corr_backlog(db);
        if (!left)
            left = 1;
    }
    return left;
}

static void *
correlator_main(void *arg)
{
    struct sqlite_store *st = arg;

    /*
     * Ingest first: an agent waits for its acknowledgement, a report waits
     * for correlation only when asked.  On Linux, nice is per thread; where
     * it is not, this lowers nothing that matters.
     */
#ifdef SYS_gettid
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), CORR_NICE);
#endif
    pthread_mutex_lock(&st->cmu);
    while (!st->stopping) {
        int64_t wait_us = 1000 * 1000;
        if (st->ckpt_wanted) {
            st->ckpt_wanted = 0;
            pthread_mutex_unlock(&st->cmu);
            int rc = sqlite3_wal_checkpoint_v2(st->cdb, "ev", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
            if (rc != SQLITE_OK && rc != SQLITE_BUSY)
                sw_warn("store: checkpoint: %s", sqlite3_errmsg(st->cdb));
            pthread_mutex_lock(&st->cmu);
            continue;
        }
        if (st->pending && !st->waiters) {
            /* batches streaming in: the writer first (see CORR_QUIET_US) */
            int64_t now = sw_mono_us();
            int64_t until = st->last_batch_us + CORR_QUIET_US;
            if (until > st->pending_since_us + st->defer_max_us)
                until = st->pending_since_us + st->defer_max_us;
            if (now < until) {
                struct timespec ts;
                sw_mono_deadline(&ts, until - now);
                pthread_cond_timedwait(&st->cv, &st->cmu, &ts);
                continue;
            }
        }
        if (st->pending) {
            int idle = 0;
            /* marks committed before this point are seen by this step */
            uint64_t gen = st->mark_gen;
            pthread_mutex_unlock(&st->cmu);
            int64_t t0 = sw_mono_us();
            sw_err e = corr_step(st, &idle);
            int64_t t1 = sw_mono_us();
            pthread_mutex_lock(&st->cmu);
            st->steps++;
            st->step_us += (uint64_t)(t1 - t0);
            sw_debug("correlation step %llu: %.1f ms (%d waiting)", (unsigned long long)st->steps,
                     (double)(t1 - t0) / 1000, st->waiters);
            if (e == SW_OK && idle) {
                st->done_gen = gen;
                if (st->mark_gen == gen)
                    st->pending = 0;
            }
            pthread_cond_broadcast(&st->done_cv);
            if (e == SW_OK)
                continue;
            /* logged; retried later */
        }
        struct timespec ts;
        sw_mono_deadline(&ts, wait_us);
        pthread_cond_timedwait(&st->cv, &st->cmu, &ts);
    }
    pthread_cond_broadcast(&st->done_cv);
    pthread_mutex_unlock(&st->cmu);
    return NULL;
}

/* After each commit of the events writer (SQLite's WAL hook). */
static int
events_wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct sqlite_store *st = arg;
    if (pages >= CKPT_HARD || !st->corr_thread_started) {
        if (pages >= CKPT_SOFT)
            sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    } else if (pages >= CKPT_SOFT) {
        pthread_mutex_lock(&st->cmu);
        st->ckpt_wanted = 1;
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->cmu);
    }
    return SQLITE_OK;
}

/* No global allocation statistics: they cost a mutex on every malloc. */
static void
sqlite_global_config(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/*
 * The identities of the stored events, into st->ids, at open: those the
 * correlator indexed from event_dev (compact), the rest from the events
 * past its mark, in one read.  The 1M-enrollment database (4.9M events):
 * 3.9 s reading them all from the events table.
 */
static sw_err
load_idents(struct sqlite_store *st, char *why, size_t cap)
{
    int64_t t0 = sw_mono_us(), max_id = 0;
    sqlite3_stmt *s;
    sw_err e = SW_OK;
    int rc;

    if (sqlite3_prepare_v2(st->db, "SELECT COALESCE(MAX(id), 0) FROM events", -1, &s, NULL) !=
        SQLITE_OK) {
        set_why(why, cap, st->db, "identities");
        return SW_EDB;
    }
    if (sqlite3_step(s) == SQLITE_ROW)
        max_id = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (max_id > 0 && ident_set_reserve(&st->ids, (size_t)max_id) != SW_OK) {
        snprintf(why, cap, "identities: out of memory for %lld events", (long long)max_id);
        return SW_ENOMEM;
    }
    if (sqlite3_prepare_v2(st->cdb, "SELECT id, ident FROM main.event_dev UNION ALL"
                           " SELECT id, ident FROM events WHERE id > ifnull((SELECT"
                           " CAST(value AS INTEGER) FROM main.corr_meta WHERE key = 'time_upto'),"
                           " 0)", -1, &s, NULL) != SQLITE_OK) {
        set_why(why, cap, st->cdb, "identities");
        return SW_EDB;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const void *b = sqlite3_column_blob(s, 1);
        size_t len = (size_t)sqlite3_column_bytes(s, 1);
        uint64_t fp = ident_set_fp(&st->ids, b, len);
        if (ident_set_add(&st->ids, fp, sqlite3_column_int64(s, 0), NULL) != SW_OK) {
            snprintf(why, cap, "identities: out of memory");
            e = SW_ENOMEM;
            break;
        }
    }
    if (e == SW_OK && rc != SQLITE_DONE) {
        set_why(why, cap, st->cdb, "identities");
        e = SW_EDB;
    }
    sqlite3_finalize(s);
    if (e != SW_OK)
        return e;   /* the open fails; close frees the set */
    if (st->ids.n >= 100000)
        sw_info("store: %zu event identities loaded in %.1f s (%.0f MiB)", st->ids.n,
                (double)(sw_mono_us() - t0) / 1e6, (double)ident_set_bytes(&st->ids) / 1048576.0);
    return SW_OK;
}

/* 1: event id holds this identity; 0: another; -1: a database error. */
static int
stored_ident_is(struct sqlite_store *st, int64_t id, const unsigned char *ident)
{
    sqlite3_stmt *s = st->ident_of;
    int r = -1;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        r = sqlite3_column_bytes(s, 0) == SW_EVENT_IDENT_LEN &&
            memcmp(sqlite3_column_blob(s, 0), ident, SW_EVENT_IDENT_LEN) == 0;
    else if (rc == SQLITE_DONE)
        r = 0;
    sqlite3_reset(s);
    return r;
}

/*
 * 1: an event of this identity is stored (or came earlier in this batch);
 * 0: not; -1: error.  Each id under the fingerprint is confirmed against
 * its row, so entries a rolled-back batch left behind are harmless: they
 * name a row that is absent or (its rowid taken again) holds another
 * identity.
 */
static int
seen(struct sqlite_store *st, const unsigned char *ident, uint64_t fp)
{
    struct ident_probe p;
    int64_t id;
    ident_set_probe(&st->ids, fp, &p);
    while (ident_set_next(&st->ids, &p, &id)) {
        int r = stored_ident_is(st, id, ident);
        if (r)
            return r;
    }
    return 0;
}

static sw_err
sqlite_open(struct agg_store **out, const char *path, char *why, size_t cap)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    if (cap)
        *why = '\0';
    struct sqlite_store *st = calloc(1, sizeof *st);
    sw_err e;

    *out = NULL;
    if (!st || !(st->path = strdup(path)) ||
        !(st->dpath = malloc(strlen(path) + sizeof "-derived"))) {
        if (st)
            free(st->path);
        free(st);
        snprintf(why, cap, "out of memory");
        return SW_ENOMEM;
    }
    strcpy(st->dpath, path);
    strcat(st->dpath, "-derived");
    pthread_once(&once, sqlite_global_config);
    st->base.ops = &agg_store_sqlite;
    ident_set_init(&st->ids);
    pthread_mutex_init(&st->lock, NULL);
    pthread_mutex_init(&st->cmu, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&st->cv, &ca);
        pthread_cond_init(&st->done_cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if ((e = open_conn(path, 0, &st->db, why, cap)) != SW_OK)
        goto fail;
    /*
     * WAL: readers never block the writer; NORMAL sync is durable in WAL
     * against process crashes, and the commit is what the ack promises.
     * The page cache holds the hot index pages (without it every index
     * insert is a pread); mmap serves the rest without copies; a larger
     * WAL between checkpoints writes each hot page once, not per batch;
     * SQLite's own sort scratch stays in memory.
     *
     * The derived database's writer keeps 128 MiB of cache; the events
     * writer 32 MiB (below): its inserts touch the table's last pages and
     * the identity index, and every fresh cache page costs a page fault.
     * Ingest measured with 16, 32 and 64 MiB alike, and 128 MiB slower
     * (1M-enrollment upload: 237k events/s at 32 MiB, 145k at 128 MiB).
     */
    static const char pragmas[] =
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
        "PRAGMA foreign_keys=ON; PRAGMA cache_size=-131072;"
        "PRAGMA mmap_size=1073741824; PRAGMA wal_autocheckpoint=8192;"
        "PRAGMA journal_size_limit=67108864;"
        "PRAGMA temp_store=MEMORY;";
    if ((e = exec(st->db, "PRAGMA page_size=" EVENTS_PAGE_SIZE, why, cap)) != SW_OK ||
        (e = exec(st->db, pragmas, why, cap)) != SW_OK ||
        (e = exec(st->db, "PRAGMA cache_size=-" EVENTS_CACHE_KIB, why, cap)) != SW_OK ||
        (e = exec(st->db, "BEGIN IMMEDIATE", why, cap)) != SW_OK)
        goto fail;
    if ((e = exec(st->db, schema, why, cap)) != SW_OK ||
        (e = check_version(st->db, why, cap)) != SW_OK ||
        (e = migrate(st->db, why, cap)) != SW_OK ||
        (e = exec(st->db, "COMMIT", why, cap)) != SW_OK) {
        char ignore[256];
        if (!*why)
            set_why(why, cap, st->db, "schema");
        exec(st->db, "ROLLBACK", ignore, sizeof ignore);
        goto fail;
    }
    /* the derived database, its own writer; the events read through "ev" */
    if ((e = open_conn(st->dpath, 0, &st->cdb, why, cap)) != SW_OK ||
        (e = exec(st->cdb, pragmas, why, cap)) != SW_OK ||
        (e = attach_events(st->cdb, path, 65536, why, cap)) != SW_OK)
        goto fail;
    if ((e = agg_corr_prepare_schema(st->cdb, st->db)) != SW_OK) {
        snprintf(why, cap, "%s: cannot prepare the derived tables (see the log)", st->dpath);
        goto fail;
    }
    if ((e = agg_corr_open(st->cdb, st->db, AGG_LINK_WINDOW_US, &st->corr)) != SW_OK) {
        set_why(why, cap, st->cdb, "correlation");
        goto fail;
    }
    if ((e = load_idents(st, why, cap)) != SW_OK)
        goto fail;
    if (sqlite3_prepare_v2(st->db, insert_sql, -1, &st->insert, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "SELECT ident FROM events WHERE id = ?1", -1, &st->ident_of,
                           NULL) != SQLITE_OK) {
        set_why(why, cap, st->db, "prepare");
        e = SW_EDB;
        goto fail;
    }
    sqlite3_wal_hook(st->db, events_wal_hook, st);
    /* marks a crash left behind are worked off by the first pass */
    st->pending = agg_corr_backlog(st->cdb) > 0;
    st->pending_since_us = sw_mono_us();
    st->defer_max_us = CORR_DEFER_MAX_US;
    {
        /* tests bound the deferral with this, so that they need not wait 30 s */
        const char *v = getenv("SCEPWATCH_TEST_CORR_DEFER_MS");
        if (v && *v)
            st->defer_max_us = strtoll(v, NULL, 10) * 1000;
    }
    st->mark_gen = st->pending;
    st->batch_gen = last_gen(st->db);
    /* tests freeze the derived state with this (what a stopped correlator leaves) */
    if (getenv("SCEPWATCH_TEST_NO_CORRELATOR")) {
        sw_warn("store: SCEPWATCH_TEST_NO_CORRELATOR is set: nothing is correlated");
    } else if (pthread_create(&st->corr_thread, NULL, correlator_main, st) != 0) {
        snprintf(why, cap, "cannot start the correlator thread");
        e = SW_ENOMEM;
        goto fail;
    } else {
        st->corr_thread_started = 1;
    }
    *out = &st->base;
    return SW_OK;
fail:
    sqlite_close(&st->base);
    return e;
}

static void
bind_slice(sqlite3_stmt *s, int i, struct sw_slice v)
{
    if (v.len)
        sqlite3_bind_text(s, i, v.ptr, (int)v.len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

static sw_err
sqlite_ingest(struct agg_store *base, const struct sw_event *evs, size_t n, const char *agent,
              uint32_t *stored, uint32_t *dups)
{
    struct sqlite_store *st = (struct sqlite_store *)base;
    sqlite3_stmt *s = st->insert;
    int64_t now = sw_now_us();
    int new_requests = 0;
    sw_err e = SW_OK;
    char why[256];

    *stored = *dups = 0;
    /* identities before the writer's lock: batches of several agents hash side by side */
    struct {
        unsigned char id[SW_EVENT_IDENT_LEN];
        uint64_t fp;
    } *ids = n ? malloc(n * sizeof *ids) : NULL;
    /* the slots this batch's identities took, undone if it rolls back */
    size_t *added = n ? malloc(n * sizeof *added) : NULL, nadded = 0;
    if (n && (!ids || !added)) {
        free(ids);
        free(added);
        return SW_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        sw_event_identity(&evs[i], ids[i].id);
        ids[i].fp = ident_set_fp(&st->ids, ids[i].id, SW_EVENT_IDENT_LEN);    /* key: fixed */
    }
    pthread_mutex_lock(&st->lock);
    int64_t t_lock = sw_mono_us();
    agg_corr_batch_begin(st->corr, ++st->batch_gen);
    if (ident_set_reserve(&st->ids, n) != SW_OK) {
        e = SW_ENOMEM;
        n = 0;
    } else if (exec(st->db, "BEGIN IMMEDIATE", why, sizeof why) != SW_OK) {
        sw_error("store: %s", why);
        e = SW_EDB;
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        const struct sw_event *ev = &evs[i];
        if (i + 1 < n)
            ident_set_prefetch(&st->ids, ids[i + 1].fp);
        int r = seen(st, ids[i].id, ids[i].fp);

        if (r < 0) {
            sw_error("store: identity: %s", sqlite3_errmsg(st->db));
            e = SW_EDB;
            break;
        }
        if (r) {
            (*dups)++;
            continue;
        }
        sqlite3_reset(s);
        sqlite3_bind_blob(s, 1, ids[i].id, SW_EVENT_IDENT_LEN, SQLITE_STATIC);
        bind_slice(s, 2, ev->device);
        sqlite3_bind_int(s, 3, ev->source);
        sqlite3_bind_int(s, 4, ev->platform);
        sqlite3_bind_int(s, 5, ev->stage);
        sqlite3_bind_int(s, 6, ev->cert);
        sqlite3_bind_int64(s, 7, ev->ts_us);
        bind_slice(s, 8, ev->profile);
        bind_slice(s, 9, ev->txn);
        bind_slice(s, 10, ev->thumbprint);
        bind_slice(s, 11, ev->serial);
        bind_slice(s, 12, ev->request_id);
        bind_slice(s, 13, ev->subject);
        bind_slice(s, 14, ev->template);
        bind_slice(s, 15, ev->requester);
        bind_slice(s, 16, ev->detail);
        bind_slice(s, 17, ev->file);
        if (ev->has_offset)
            sqlite3_bind_int64(s, 18, (sqlite3_int64)ev->offset);
        else
            sqlite3_bind_null(s, 18);
        bind_slice(s, 19, ev->host);
        if (agent && *agent)
            sqlite3_bind_text(s, 20, agent, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 20);
        sqlite3_bind_int64(s, 21, ev->line_hash);
        sqlite3_bind_int64(s, 22, now);
        if (sqlite3_step(s) != SQLITE_DONE) {
            sw_error("store: insert: %s", sqlite3_errmsg(st->db));
            e = SW_EDB;
            break;
        }
        if (!sqlite3_changes(st->db)) {
            (*dups)++;      /* a version 2 table's unique index caught it */
            continue;
        }
        /* reserved above: neither fails nor moves the table */
        ident_set_add(&st->ids, ids[i].fp, sqlite3_last_insert_rowid(st->db), &added[nadded++]);
        (*stored)++;
        /* what the correlation must revisit (a CA row is found by its id) */
        if (ev->cert == SW_CERT_SCEP && (ev->platform == SW_PLATFORM_ANDROID ||
            ev->platform == SW_PLATFORM_IOS || ev->platform == SW_PLATFORM_WINDOWS))
            e = agg_corr_mark_device(st->corr, ev->device.ptr, ev->device.len);
        else if (ev->platform == SW_PLATFORM_CA && ev->request_id.len)
            new_requests = 1;
        if (e != SW_OK)
            break;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    int marked = agg_corr_batch_marked(st->corr) || new_requests;
    int committed_maybe = 0;
    if (e == SW_OK && exec(st->db, "COMMIT", why, sizeof why) != SW_OK) {
        sw_error("store: commit: %s", why);
        e = SW_EDB;
        committed_maybe = 1;    /* an I/O error may leave the commit in the WAL */
    }
    if (e != SW_OK) {
        /*
         * The batch's identities go with its rows.  A failed commit whose
         * transaction is gone may yet be durable: its identities stay
         * (seen confirms every entry against its row, so they are harmless).
         */
        int rolled_back = exec(st->db, "ROLLBACK", why, sizeof why) == SW_OK;
        if (!committed_maybe || rolled_back)
            ident_set_undo(&st->ids, added, nadded);
        *stored = *dups = 0;
        marked = 0;
    }
    pthread_mutex_lock(&st->cmu);
    if (marked) {
        st->last_batch_us = sw_mono_us();
        if (!st->pending)
            st->pending_since_us = st->last_batch_us;
        st->mark_gen++;
        st->pending = 1;
        pthread_cond_signal(&st->cv);
    }
    pthread_mutex_unlock(&st->cmu);
    st->batches++;
    st->write_us += (uint64_t)(sw_mono_us() - t_lock);
    pthread_mutex_unlock(&st->lock);
    free(ids);
    free(added);
    return e;
}

/* ---- readers ---- */

static void
sqlite_reader_close(struct agg_store_reader *base)
{
    struct sqlite_reader *r = (struct sqlite_reader *)base;
    if (!r)
        return;
    for (size_t i = 0; i < sizeof r->list / sizeof r->list[0]; i++) {
        sqlite3_finalize(r->list[i]);
        sqlite3_finalize(r->tail[i]);
    }
    for (size_t i = 0; i < sizeof r->enr / sizeof r->enr[0]; i++)
        sqlite3_finalize(r->enr[i]);
    sqlite3_finalize(r->funnel);
    sqlite3_finalize(r->funnel_stuck);
    sqlite3_finalize(r->count);
    sqlite3_close(r->db);
    free(r);
}

static sw_err
sqlite_reader_open(struct agg_store *base, struct agg_store_reader **out)
{
    struct sqlite_store *st = (struct sqlite_store *)base;
    struct sqlite_reader *r = calloc(1, sizeof *r);
    char why[256];

    *out = NULL;
    if (!r)
        return SW_ENOMEM;
    r->base.ops = &agg_store_sqlite;
    r->st = st;
    if (open_conn(st->dpath, 1, &r->db, why, sizeof why) != SW_OK ||
        attach_events(r->db, st->path, 32768, why, sizeof why) != SW_OK) {
        sqlite3_close(r->db);
        sw_error("store: reader: %s", why);
        free(r);
        return SW_EDB;
    }
    *out = &r->base;
    return SW_OK;
}

static sqlite3_stmt *
prepare_cached(struct sqlite_reader *r, sqlite3_stmt **slot, const char *sql)
{
    if (!*slot && sqlite3_prepare_v3(r->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK) {
        sw_error("store: prepare: %s", sqlite3_errmsg(r->db));
        return NULL;
    }
    sqlite3_reset(*slot);
    sqlite3_clear_bindings(*slot);
    return *slot;
}

static struct sw_slice
col_slice(sqlite3_stmt *s, int i)
{
    const char *p = (const char *)sqlite3_column_text(s, i);
    int n = sqlite3_column_bytes(s, i);
    return p && n > 0 ? (struct sw_slice){ p, (size_t)n } : SW_SLICE_NONE;
}

/* One row of EVENT_COLS to the caller; the cursor moves past it. */
static void
emit_event(sqlite3_stmt *s, struct agg_event_cursor *cur, agg_event_fn fn, void *arg)
{
    struct sw_event ev;

    memset(&ev, 0, sizeof ev);
    ev.device = col_slice(s, 1);
    ev.source = (enum sw_source)sqlite3_column_int(s, 2);
    ev.platform = (enum sw_platform)sqlite3_column_int(s, 3);
    ev.stage = (enum sw_stage)sqlite3_column_int(s, 4);
    ev.cert = (enum sw_cert)sqlite3_column_int(s, 5);
    ev.ts_us = sqlite3_column_int64(s, 6);
    ev.profile = col_slice(s, 7);
    ev.txn = col_slice(s, 8);
    ev.thumbprint = col_slice(s, 9);
    ev.serial = col_slice(s, 10);
    ev.request_id = col_slice(s, 11);
    ev.subject = col_slice(s, 12);
    ev.template = col_slice(s, 13);
    ev.requester = col_slice(s, 14);
    ev.detail = col_slice(s, 15);
    ev.file = col_slice(s, 16);
    ev.has_offset = sqlite3_column_type(s, 17) != SQLITE_NULL;
    ev.offset = (uint64_t)sqlite3_column_int64(s, 17);
    ev.host = col_slice(s, 18);
    cur->ts_us = ev.ts_us;
    cur->id = sqlite3_column_int64(s, 0);
    cur->valid = 1;
    fn(arg, &ev);
}

/* Does row a come before row b in (ts_us, id) order? */
static int
event_before(sqlite3_stmt *a, sqlite3_stmt *b)
{
    int64_t ta = sqlite3_column_int64(a, 6), tb = sqlite3_column_int64(b, 6);
    return ta < tb || (ta == tb && sqlite3_column_int64(a, 0) < sqlite3_column_int64(b, 0));
}

/*
 * Events in (ts_us, id) order after the cursor.  A request id has its
 * index; one device's events come from the derived identity index
 * (event_dev: a device is a range of identities), the fleet's from the
 * derived time index (event_time), each merged with the events past the
 * indexes' mark, read in one transaction so the two halves meet exactly.
 */
static sw_err
sqlite_list_events(struct agg_store_reader *base, const struct agg_event_filter *f,
                   struct agg_event_cursor *cur, size_t limit, int *more,
                   agg_event_fn fn, void *arg)
{
    struct sqlite_reader *r = (struct sqlite_reader *)base;
    int shape = (f->device ? 1 : 0) | (f->platform ? 2 : 0) | (f->since_us ? 4 : 0) |
                (f->until_us ? 8 : 0) | (f->request_id ? 16 : 0);
    int fleet = !(shape & (1 | 16)), by_dev = (shape & 1) && !(shape & 16);
    char sql[1024], filters[256];
    sqlite3_stmt *a = NULL, *b = NULL;
    unsigned char lo[SW_EVENT_IDENT_LEN], hi[SW_EVENT_IDENT_LEN];
    int64_t upto = 0;
    size_t rows = 0;
    int ra = SQLITE_DONE, rb = SQLITE_DONE;
    char why[256];
    sw_err e = SW_OK;

    snprintf(filters, sizeof filters, "%s%s%s%s%s",
             (shape & 1) ? " AND e.device = ?3" : "",
             (shape & 2) ? " AND e.platform = ?4" : "",
             (shape & 4) ? " AND e.ts_us >= ?5" : "", (shape & 8) ? " AND e.ts_us <= ?7" : "",
             (shape & 16) ? " AND e.request_id = ?8" : "");
    if (fleet || by_dev) {
        if (fleet)
            snprintf(sql, sizeof sql,
                     "SELECT " EVENT_COLS " FROM main.event_time t JOIN events e ON e.id = t.id"
                     " WHERE (t.ts_us, t.id) > (?1, ?2)%s%s%s ORDER BY t.ts_us, t.id LIMIT ?6",
                     (shape & 4) ? " AND t.ts_us >= ?5" : "",
                     (shape & 8) ? " AND t.ts_us <= ?7" : "", filters);
        else
            snprintf(sql, sizeof sql,
                     "SELECT " EVENT_COLS " FROM main.event_dev d JOIN events e ON e.id = d.id"
                     " WHERE d.ident BETWEEN ?9 AND ?10 AND (e.ts_us, e.id) > (?1, ?2)%s"
                     " ORDER BY e.ts_us, e.id LIMIT ?6", filters);
        if (!(a = prepare_cached(r, &r->list[shape], sql)))
            return SW_EDB;
        snprintf(sql, sizeof sql,
                 "SELECT " EVENT_COLS " FROM events e WHERE e.id > ?11 AND (e.ts_us, e.id) > (?1, ?2)"
                 "%s ORDER BY e.ts_us, e.id LIMIT ?6", filters);
        if (!(b = prepare_cached(r, &r->tail[shape], sql)))
            return SW_EDB;
    } else {
        snprintf(sql, sizeof sql,
                 "SELECT " EVENT_COLS " FROM events e WHERE (e.ts_us, e.id) > (?1, ?2)%s"
                 " ORDER BY e.ts_us, e.id LIMIT ?6", filters);
        if (!(a = prepare_cached(r, &r->list[shape], sql)))
            return SW_EDB;
    }
    if (f->device)
        sw_event_ident_range(f->device, strlen(f->device), lo, hi);
    for (sqlite3_stmt *s = a; s; s = s == a ? b : NULL) {
        sqlite3_bind_int64(s, 1, cur->valid ? cur->ts_us : INT64_MIN);
        sqlite3_bind_int64(s, 2, cur->valid ? cur->id : INT64_MIN);
        if (shape & 1)
            sqlite3_bind_text(s, 3, f->device, -1, SQLITE_STATIC);
        if (by_dev && s == a) {
            sqlite3_bind_blob(s, 9, lo, sizeof lo, SQLITE_STATIC);
            sqlite3_bind_blob(s, 10, hi, sizeof hi, SQLITE_STATIC);
        }
        if (shape & 2)
            sqlite3_bind_int(s, 4, f->platform);
        if (shape & 4)
            sqlite3_bind_int64(s, 5, f->since_us);
        sqlite3_bind_int64(s, 6, (sqlite3_int64)limit + 1);
        if (shape & 8)
            sqlite3_bind_int64(s, 7, f->until_us);
        if (shape & 16)
            sqlite3_bind_text(s, 8, f->request_id, -1, SQLITE_STATIC);
    }
    if (exec(r->db, "BEGIN", why, sizeof why) != SW_OK) {
        sw_error("store: list: %s", why);
        return SW_EDB;
    }
    if (b) {
        sqlite3_stmt *u;
        if (sqlite3_prepare_v2(r->db, "SELECT " AGG_CORR_TIME_UPTO_SQL, -1, &u, NULL) != SQLITE_OK) {
            e = SW_EDB;
            goto out;
        }
        if (sqlite3_step(u) == SQLITE_ROW)
            upto = sqlite3_column_int64(u, 0);
        sqlite3_finalize(u);
        sqlite3_bind_int64(b, 11, upto);
        rb = sqlite3_step(b);
    }
    ra = sqlite3_step(a);
    *more = 0;
    while (ra == SQLITE_ROW || rb == SQLITE_ROW) {
        if (rows == limit) {
            *more = 1;
            break;
        }
        if (ra == SQLITE_ROW && (rb != SQLITE_ROW || event_before(a, b))) {
            emit_event(a, cur, fn, arg);
            ra = sqlite3_step(a);
        } else {
            emit_event(b, cur, fn, arg);
            rb = sqlite3_step(b);
        }
        rows++;
    }
    if ((ra != SQLITE_ROW && ra != SQLITE_DONE) || (rb != SQLITE_ROW && rb != SQLITE_DONE))
        e = SW_EDB;
out:
    if (e != SW_OK)
        sw_error("store: list: %s", sqlite3_errmsg(r->db));
    sqlite3_reset(a);
    if (b)
        sqlite3_reset(b);
    exec(r->db, "COMMIT", why, sizeof why);
    return e;
}

static sw_err
sqlite_count_events(struct agg_store_reader *base, uint64_t *n)
{
    struct sqlite_reader *r = (struct sqlite_reader *)base;
    /*
     * Events are only ever appended, each under the next rowid (a duplicate
     * takes none, a batch rolled back gives its rowids back), so the largest
     * id is the count: a seek, where COUNT(*) reads the whole identity index
     * (3.9 s cold, 0.6 s warm on the 1M-enrollment database).
     */
    sqlite3_stmt *s = prepare_cached(r, &r->count, "SELECT COALESCE(MAX(id), 0) FROM events");
    if (!s)
        return SW_EDB;
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_reset(s);
        return SW_EDB;
    }
    *n = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return SW_OK;
}

/* ---- report rows ---- */

/*
 * The row's columns: the enrollment, with the linked issuance filling in
 * what the device never logged (serial, thumbprint, CA issue time), and the
 * later of the two as the last stage.
 */
/* The report columns the status refresh keeps on the row (store_correlate.c). */
/*
 * A row's columns: first what a table shows (all a brief row has), then
 * the rest.  Fewer columns, not NULLs in their place: each one read costs
 * SQLite's column calls, a third of a brief page's time when they were
 * NULLs (measured in a C loop over the 48,681 stuck rows of 1M: 44 ms
 * with 21 columns, 30 ms with 11).
 */
#define ENR_COLS_BRIEF                                                                  \
    "e.rowkey, e.device, e.platform, e.profile, e.status, e.since_us, e.rep_stage,"     \
    " e.request_id, e.rep_detail, e.link"
#define ENR_NCOLS_BRIEF 10
#define ENR_COLS                                                                        \
    ENR_COLS_BRIEF ", e.rep_last_us, e.first_us, COALESCE(e.request_us, e.first_us),"   \
    " e.rep_issued_us, e.installed_us, e.rep_serial, e.rep_thumbprint, e.rep_txn,"      \
    " e.rep_subject, e.rep_template"
#define ENR_NCOLS 20

/* ?1 as_of; ?2..?9 the thresholds of statuses 2..9 (status n uses ?n). */
#define STUCK_EXPR                                                                      \
    "(e.status NOT IN (0, 1, 2) AND e.since_us IS NOT NULL AND e.since_us <= ?1 - CASE e.status" \
    " WHEN 3 THEN ?3 WHEN 4 THEN ?4 WHEN 5 THEN ?5 WHEN 6 THEN ?6 WHEN 7 THEN ?7"       \
    " WHEN 8 THEN ?8 ELSE ?9 END)"

static void
bind_policy(sqlite3_stmt *s, const struct agg_policy *pol)
{
    sqlite3_bind_int64(s, 1, pol->as_of_us);
    for (int st = 2; st <= 9 && st < AGG_STATUS_COUNT; st++)
        sqlite3_bind_int64(s, st, pol->threshold_us[st]);
}

static const char *
col_str(sqlite3_stmt *s, int i)
{
    const char *p = (const char *)sqlite3_column_text(s, i);
    return p && *p ? p : NULL;
}

static sw_err
sqlite_list_enrollments(struct agg_store_reader *base, const struct agg_enr_filter *f,
                        const struct agg_policy *pol, const char *cursor, size_t limit,
                        int *more, agg_enr_fn fn, void *arg)
{
    struct sqlite_reader *r = (struct sqlite_reader *)base;
    /* the first page waits for correlation; later pages read on */
    r->backlog = !cursor || !*cursor ? corr_catch_up(r->st, r->db) : 0;
    int shape = (f->stuck_only ? 1 : 0) | (f->status_mask ? 2 : 0) | (f->platform ? 4 : 0) |
                (f->device ? 8 : 0) | (f->cert_key ? 16 : 0) | (f->device && !*f->device ? 32 : 0) |
                (f->brief ? 64 : 0);
    char sql[2048];
    sqlite3_stmt *s;
    size_t rows = 0;
    int rc;

    snprintf(sql, sizeof sql,
             "SELECT %s, %s FROM enrollments e%s"
             " WHERE e.rowkey > ?10%s%s%s%s%s ORDER BY e.rowkey LIMIT ?11",
             (shape & 64) ? ENR_COLS_BRIEF : ENR_COLS,
             /* the stuck flag: known already when only stuck rows are asked for */
             (shape & 1) ? "1" : STUCK_EXPR,
             /* only a search by certificate key looks at the issuance itself */
             (shape & 16) ? " LEFT JOIN issuances i ON i.request_id = e.request_id" : "",
             (shape & 1) ? " AND " STUCK_EXPR : "",
             (shape & 2) ? " AND ((1 << e.status) & ?12) != 0" : "",
             (shape & 4) ? " AND e.platform = ?13" : "",
             /* by value, so enr_device serves it; "" is the rows of no device */
             (shape & 32) ? " AND e.device IS NULL AND ?14 = ''" :
             (shape & 8) ? " AND e.device = ?14" : "",
             (shape & 16) ? " AND (e.request_id = ?15 OR lower(e.serial) = lower(?15) OR"
                            " lower(e.thumbprint) = lower(?15) OR upper(e.txn) = upper(?15) OR"
                            " lower(i.serial) = lower(?15) OR lower(i.thumbprint) = lower(?15) OR"
                            " upper(i.txn) = upper(?15))" : "");
    if (!(s = prepare_cached(r, &r->enr[shape], sql)))
        return SW_EDB;
    bind_policy(s, pol);
    sqlite3_bind_text(s, 10, cursor ? cursor : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 11, (sqlite3_int64)limit + 1);
    if (shape & 2)
        sqlite3_bind_int64(s, 12, f->status_mask);
    if (shape & 4)
        sqlite3_bind_int(s, 13, f->platform);
    if (shape & 8)
        sqlite3_bind_text(s, 14, f->device, -1, SQLITE_STATIC);
    if (shape & 16)
        sqlite3_bind_text(s, 15, f->cert_key, -1, SQLITE_STATIC);
    *more = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct agg_enr_row row;
        if (rows == limit) {
            *more = 1;
            break;
        }
        memset(&row, 0, sizeof row);
        row.rowkey = col_str(s, 0);
        row.device = col_str(s, 1);
        row.platform = (enum sw_platform)sqlite3_column_int(s, 2);
        row.profile = col_str(s, 3);
        row.status = (enum agg_status)sqlite3_column_int(s, 4);
        row.since_us = sqlite3_column_int64(s, 5);
        row.last_stage = (enum sw_stage)sqlite3_column_int(s, 6);
        row.request_id = col_str(s, 7);
        row.detail = col_str(s, 8);
        row.link = (enum agg_link)sqlite3_column_int(s, 9);
        if (!f->brief) {
            row.last_event_us = sqlite3_column_int64(s, 10);
            row.first_us = sqlite3_column_int64(s, 11);
            row.requested_us = sqlite3_column_int64(s, 12);
            row.issued_us = sqlite3_column_int64(s, 13);
            row.installed_us = sqlite3_column_int64(s, 14);
            row.serial = col_str(s, 15);
            row.thumbprint = col_str(s, 16);
            row.txn = col_str(s, 17);
            row.subject = col_str(s, 18);
            row.template_name = col_str(s, 19);
        }
        if (sqlite3_column_int(s, f->brief ? ENR_NCOLS_BRIEF : ENR_NCOLS))
            row.stuck_since_us = row.since_us;
        fn(arg, &row);
        rows++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sw_error("store: enrollments: %s", sqlite3_errmsg(r->db));
        return SW_EDB;
    }
    return SW_OK;
}

static sw_err
sqlite_funnel(struct agg_store_reader *base, const struct agg_policy *pol, agg_funnel_fn fn,
              void *arg)
{
    struct sqlite_reader *r = (struct sqlite_reader *)base;
    r->backlog = corr_catch_up(r->st, r->db);
    /* stuck depends on the moment and the policy: counted over the open rows' index */
    sqlite3_stmt *sq = prepare_cached(r, &r->funnel_stuck,
        "SELECT e.platform, SUM(" STUCK_EXPR ") FROM enrollments e INDEXED BY enr_open"
        " WHERE e.status NOT IN (0, 1, 2) GROUP BY e.platform");
    /* the rest from the counts the correlator keeps (store_correlate.c) */
    sqlite3_stmt *s = prepare_cached(r, &r->funnel,
        "SELECT platform, SUM(n), SUM(n * req), SUM(n * iss), SUM(n * dlv),"
        " SUM(n * (status = 1)), SUM(n * (status = 2))"
        " FROM funnel_counts GROUP BY platform HAVING SUM(n) > 0 ORDER BY platform");
    uint64_t stuck[SW_PLATFORM_COUNT] = { 0 };
    char why[256];
    int rc;

    if (!sq || !s)
        return SW_EDB;
    /* one snapshot for both */
    if (exec(r->db, "BEGIN", why, sizeof why) != SW_OK)
        return SW_EDB;
    bind_policy(sq, pol);
    while ((rc = sqlite3_step(sq)) == SQLITE_ROW) {
        int platform = sqlite3_column_int(sq, 0);
        if (platform >= 0 && platform < SW_PLATFORM_COUNT)
            stuck[platform] = (uint64_t)sqlite3_column_int64(sq, 1);
    }
    sqlite3_reset(sq);
    if (rc != SQLITE_DONE) {
        exec(r->db, "COMMIT", why, sizeof why);
        return SW_EDB;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct agg_funnel_row row = {
            (enum sw_platform)sqlite3_column_int(s, 0),
            (uint64_t)sqlite3_column_int64(s, 1), (uint64_t)sqlite3_column_int64(s, 2),
            (uint64_t)sqlite3_column_int64(s, 3), (uint64_t)sqlite3_column_int64(s, 4),
            (uint64_t)sqlite3_column_int64(s, 5), 0,
            (uint64_t)sqlite3_column_int64(s, 6),
        };
        if ((unsigned)row.platform < SW_PLATFORM_COUNT)
            row.stuck = stuck[row.platform];
        fn(arg, &row);
    }
    sqlite3_reset(s);
    exec(r->db, "COMMIT", why, sizeof why);
    return rc == SQLITE_DONE ? SW_OK : SW_EDB;
}

static uint64_t
sqlite_backlog(struct agg_store_reader *base)
{
    return ((struct sqlite_reader *)base)->backlog;
}

const struct agg_store_ops agg_store_sqlite = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .ingest = sqlite_ingest,
    .reader_open = sqlite_reader_open,
    .reader_close = sqlite_reader_close,
    .list_events = sqlite_list_events,
    .list_enrollments = sqlite_list_enrollments,
    .funnel = sqlite_funnel,
    .count_events = sqlite_count_events,
    .backlog = sqlite_backlog,
};
