/*
 * spool.c - the state database: spool records and checkpoints in SQLite.
 *
 * Why SQLite rather than segment files: a batch and the offsets it
 * covers must become durable together, and SQLite's WAL gives that
 * atomicity, torn-write detection (frame checksums) and recovery, all
 * tested far beyond what a hand-rolled format would be.  The SQL stays
 * in the constants below and goes through prepared statements only.
 */
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "sw_log.h"

#define SPOOL_SCHEMA_VERSION 1

/* ---- SQL ---- */

/* auto_vacuum must be set before the first table exists. */
static const char sql_pragmas_new[] = "PRAGMA auto_vacuum=INCREMENTAL;";
static const char sql_pragmas[] =
    "PRAGMA synchronous=FULL;"
    "PRAGMA cache_size=-256;"               /* KiB of page cache */
    "PRAGMA journal_size_limit=4194304;"    /* trim the WAL after checkpoints */
    "PRAGMA foreign_keys=OFF;";
static const char sql_schema[] =
    "CREATE TABLE IF NOT EXISTS spool("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  batch_id INTEGER NOT NULL,"
    "  events INTEGER NOT NULL,"
    "  crc INTEGER NOT NULL,"               /* XXH32 of data */
    "  data BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ckpt("
    "  dev INTEGER NOT NULL,"
    "  ino INTEGER NOT NULL,"
    "  fp_len INTEGER NOT NULL,"
    "  fp_hash INTEGER NOT NULL,"
    "  offset INTEGER NOT NULL,"
    "  date INTEGER NOT NULL,"
    "  enc INTEGER NOT NULL,"
    "  parser TEXT NOT NULL,"
    "  device TEXT NOT NULL,"
    "  path TEXT,"
    "  PRIMARY KEY(dev, ino));"
    "PRAGMA user_version=1;";
static const char sql_totals[] = "SELECT COALESCE(SUM(length(data)),0), COUNT(*) FROM spool";
static const char sql_append[] =
    "INSERT INTO spool(batch_id, events, crc, data) VALUES(?1, ?2, ?3, ?4)";
static const char sql_peek[] =
    "SELECT seq, batch_id, events, crc, data FROM spool ORDER BY seq LIMIT 1";
static const char sql_ack[] = "DELETE FROM spool WHERE seq = ?1";
static const char sql_len[] = "SELECT length(data) FROM spool WHERE seq = ?1";
static const char sql_put[] =
    "INSERT OR REPLACE INTO ckpt(dev, ino, fp_len, fp_hash, offset, date, enc, parser,"
    " device, path) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
static const char sql_del[] = "DELETE FROM ckpt WHERE dev = ?1 AND ino = ?2";
static const char sql_get[] =
    "SELECT fp_len, fp_hash, offset, date, enc, parser, device FROM ckpt"
    " WHERE dev = ?1 AND ino = ?2";
static const char sql_keys[] = "SELECT dev, ino FROM ckpt";
static const char sql_begin[] = "BEGIN IMMEDIATE";
static const char sql_commit[] = "COMMIT";
static const char sql_rollback[] = "ROLLBACK";

enum {
    ST_TOTALS, ST_APPEND, ST_PEEK, ST_ACK, ST_LEN, ST_PUT, ST_DEL, ST_GET, ST_KEYS,
    ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_TOTALS] = sql_totals, [ST_APPEND] = sql_append, [ST_PEEK] = sql_peek,
    [ST_ACK] = sql_ack, [ST_LEN] = sql_len, [ST_PUT] = sql_put, [ST_DEL] = sql_del, [ST_GET] = sql_get,
    [ST_KEYS] = sql_keys, [ST_BEGIN] = sql_begin, [ST_COMMIT] = sql_commit,
    [ST_ROLLBACK] = sql_rollback,
};

struct agent_spool {
    pthread_mutex_t mu;             /* serialises every call */
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    int lock_fd;                    /* flock'd <dir>/lock; -1 = none */
    char *path;                     /* <dir>/state.db */
    uint64_t max_bytes;             /* bound on bytes */
    uint64_t bytes;                 /* sum of queued record sizes */
    uint64_t count;                 /* queued records */
};

/* ---- opening ---- */

static void
db_close(struct agent_spool *sp)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(sp->st[i]);
        sp->st[i] = NULL;
    }
    if (sp->db)
        sqlite3_close(sp->db);
    sp->db = NULL;
}

/* True for errors that mean "this file is damaged", not "cannot open". */
static int
is_corruption(int rc)
{
    rc &= 0xff;
    return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB || rc == SQLITE_SCHEMA ||
           rc == SQLITE_ERROR || rc == SQLITE_FORMAT || rc == SQLITE_MISMATCH;
}

/*
 * Opens and checks the database.  Returns an SQLite code: SQLITE_OK, a
 * corruption code (the caller sets the file aside) or another failure.
 */
static int
db_open(struct agent_spool *sp, char *why, size_t cap)
{
    sqlite3_stmt *q = NULL;
    int rc, version = 0, fresh;
    struct stat st;

    fresh = stat(sp->path, &st) != 0 || st.st_size == 0;
    rc = sqlite3_open_v2(sp->path, &sp->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_extended_result_codes(sp->db, 1);
    sqlite3_busy_timeout(sp->db, 5000);
    if (fresh && (rc = sqlite3_exec(sp->db, sql_pragmas_new, NULL, NULL, NULL)) != SQLITE_OK)
        goto fail;
    rc = sqlite3_prepare_v2(sp->db, "PRAGMA journal_mode=WAL", -1, &q, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        goto fail;
    }
    if (strcmp((const char *)sqlite3_column_text(q, 0), "wal") != 0) {
        snprintf(why, cap, "%s: cannot switch to WAL journal", sp->path);
        sqlite3_finalize(q);
        return SQLITE_CANTOPEN;
    }
    sqlite3_finalize(q);
    q = NULL;
    if ((rc = sqlite3_exec(sp->db, sql_pragmas, NULL, NULL, NULL)) != SQLITE_OK)
        goto fail;
    /* quick_check reads every page once: a damaged file is caught here, at start-up */
    rc = sqlite3_prepare_v2(sp->db, "PRAGMA quick_check", -1, &q, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    rc = sqlite3_step(q);
    if (rc != SQLITE_ROW)
        goto fail;
    if (strcmp((const char *)sqlite3_column_text(q, 0), "ok") != 0) {
        snprintf(why, cap, "%s: quick_check: %.200s", sp->path,
                 (const char *)sqlite3_column_text(q, 0));
        sqlite3_finalize(q);
        return SQLITE_CORRUPT;
    }
    sqlite3_finalize(q);
    q = NULL;
    rc = sqlite3_prepare_v2(sp->db, "PRAGMA user_version", -1, &q, NULL);
    if (rc != SQLITE_OK || (rc = sqlite3_step(q)) != SQLITE_ROW)
        goto fail;
    version = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    q = NULL;
    if (version > SPOOL_SCHEMA_VERSION) {
        snprintf(why, cap, "%s: schema version %d is newer than this agent's %d",
                 sp->path, version, SPOOL_SCHEMA_VERSION);
        return SQLITE_CANTOPEN;
    }
    if ((rc = sqlite3_exec(sp->db, sql_schema, NULL, NULL, NULL)) != SQLITE_OK)
        goto fail;
    for (int i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(sp->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &sp->st[i],
                                NULL);
        if (rc != SQLITE_OK)
            goto fail;
    }
    rc = sqlite3_step(sp->st[ST_TOTALS]);
    if (rc != SQLITE_ROW)
        goto fail;
    sp->bytes = (uint64_t)sqlite3_column_int64(sp->st[ST_TOTALS], 0);
    sp->count = (uint64_t)sqlite3_column_int64(sp->st[ST_TOTALS], 1);
    sqlite3_reset(sp->st[ST_TOTALS]);
    return SQLITE_OK;

fail:
    snprintf(why, cap, "%s: %s", sp->path,
             sp->db ? sqlite3_errmsg(sp->db) : sqlite3_errstr(rc));
    sqlite3_finalize(q);
    return rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_ERROR : rc;
}

/* Renames a damaged database (and its WAL) aside. */
static void
set_aside(struct agent_spool *sp)
{
    char dst[4200], src[4200];
    long now = (long)time(NULL);

    snprintf(dst, sizeof dst, "%s.corrupt-%ld", sp->path, now);
    if (rename(sp->path, dst) != 0 && errno != ENOENT)
        unlink(sp->path);
    snprintf(src, sizeof src, "%s-wal", sp->path);
    snprintf(dst, sizeof dst, "%s.corrupt-%ld-wal", sp->path, now);
    if (rename(src, dst) != 0 && errno != ENOENT)
        unlink(src);
    snprintf(src, sizeof src, "%s-shm", sp->path);
    unlink(src);
}

sw_err
agent_spool_open(struct agent_spool **out, const char *dir, uint64_t max_bytes, char *why,
                 size_t why_cap)
{
    struct agent_spool *sp;
    char lock_path[4200];
    sw_err rv = SW_ENOMEM;
    int rc;

    *out = NULL;
    snprintf(why, why_cap, "out of memory");
    if (max_bytes < AGENT_SPOOL_MIN_BYTES) {
        snprintf(why, why_cap, "spool bound %llu is below the minimum %u bytes",
                 (unsigned long long)max_bytes, AGENT_SPOOL_MIN_BYTES);
        return SW_EINVAL;
    }
    sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return SW_ENOMEM;
    sp->lock_fd = -1;
    sp->max_bytes = max_bytes;
    pthread_mutex_init(&sp->mu, NULL);
    if (strlen(dir) > 4000) {
        snprintf(why, why_cap, "state directory path too long");
        rv = SW_EINVAL;
        goto fail;
    }
    size_t plen = strlen(dir) + sizeof "/" AGENT_SPOOL_DB;
    sp->path = malloc(plen);
    if (sp->path == NULL)
        goto fail;
    snprintf(sp->path, plen, "%s/%s", dir, AGENT_SPOOL_DB);
    snprintf(lock_path, sizeof lock_path, "%s/lock", dir);
    sp->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sp->lock_fd < 0) {
        snprintf(why, why_cap, "%s: %s", lock_path, strerror(errno));
        rv = SW_EINVAL;
        goto fail;
    }
    if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(why, why_cap, "%s: %s", lock_path,
                 errno == EWOULDBLOCK ? "another agent uses this state directory"
                                      : strerror(errno));
        rv = SW_EINVAL;
        goto fail;
    }
    rc = db_open(sp, why, why_cap);
    if (rc != SQLITE_OK && is_corruption(rc)) {
        sw_warn("state database unusable (%s): moved aside to %s.corrupt-*; starting a new "
                "one, every file will be read again from its start", why, sp->path);
        db_close(sp);
        set_aside(sp);
        rc = db_open(sp, why, why_cap);
    }
    if (rc != SQLITE_OK) {
        rv = SW_EDB;
        goto fail;
    }
    *out = sp;
    return SW_OK;

fail:
    agent_spool_close(sp);
    return rv;
}

void
agent_spool_close(struct agent_spool *sp)
{
    if (sp == NULL)
        return;
    db_close(sp);
    if (sp->lock_fd >= 0)
        close(sp->lock_fd);             /* releases the flock */
    pthread_mutex_destroy(&sp->mu);
    free(sp->path);
    free(sp);
}

/* ---- statements ---- */

/* Runs a statement that returns no rows; resets it.  Returns the SQLite code. */
static int
step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static sw_err
db_err(int rc)
{
    rc &= 0xff;
    if (rc == SQLITE_FULL)
        return SW_EFULL;
    if (rc == SQLITE_NOMEM)
        return SW_ENOMEM;
    return SW_EDB;
}

static int
bind_ckpt(sqlite3_stmt *s, const struct agent_ckpt *ck)
{
    int rc = SQLITE_OK;
    rc |= sqlite3_bind_int64(s, 1, (sqlite3_int64)ck->key.dev);
    rc |= sqlite3_bind_int64(s, 2, (sqlite3_int64)ck->key.ino);
    rc |= sqlite3_bind_int64(s, 3, (sqlite3_int64)ck->fp_len);
    rc |= sqlite3_bind_int64(s, 4, (sqlite3_int64)ck->fp_hash);
    rc |= sqlite3_bind_int64(s, 5, (sqlite3_int64)ck->offset);
    rc |= sqlite3_bind_int(s, 6, ck->date);
    rc |= sqlite3_bind_int(s, 7, ck->enc);
    rc |= sqlite3_bind_text(s, 8, ck->parser, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(s, 9, ck->device, -1, SQLITE_STATIC);
    if (ck->path)
        rc |= sqlite3_bind_text(s, 10, ck->path, -1, SQLITE_STATIC);
    else
        rc |= sqlite3_bind_null(s, 10);
    return rc;
}

sw_err
agent_spool_commit(struct agent_spool *sp, const struct agent_spool_batch *b,
                   const struct agent_ckpt *put, size_t nput, const struct agent_ckpt_key *del,
                   size_t ndel)
{
    int rc;

    pthread_mutex_lock(&sp->mu);
    if (b && sp->bytes + b->len > sp->max_bytes) {
        pthread_mutex_unlock(&sp->mu);
        return SW_EFULL;
    }
    rc = step_done(sp->st[ST_BEGIN]);
    if (rc != SQLITE_OK)
        goto fail_unlock;
    if (b) {
        sqlite3_stmt *s = sp->st[ST_APPEND];
        sqlite3_bind_int64(s, 1, (sqlite3_int64)b->batch_id);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)b->events);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)XXH32(b->data, b->len, 0));
        sqlite3_bind_blob64(s, 4, b->data, b->len, SQLITE_STATIC);
        if ((rc = step_done(s)) != SQLITE_OK)
            goto fail_rollback;
    }
    for (size_t i = 0; i < nput; i++) {
        if (bind_ckpt(sp->st[ST_PUT], &put[i]) != SQLITE_OK) {
            rc = SQLITE_ERROR;
            goto fail_rollback;
        }
        if ((rc = step_done(sp->st[ST_PUT])) != SQLITE_OK)
            goto fail_rollback;
    }
    for (size_t i = 0; i < ndel; i++) {
        sqlite3_bind_int64(sp->st[ST_DEL], 1, (sqlite3_int64)del[i].dev);
        sqlite3_bind_int64(sp->st[ST_DEL], 2, (sqlite3_int64)del[i].ino);
        if ((rc = step_done(sp->st[ST_DEL])) != SQLITE_OK)
            goto fail_rollback;
    }
    if ((rc = step_done(sp->st[ST_COMMIT])) != SQLITE_OK)
        goto fail_rollback;
    if (b) {
        sp->bytes += b->len;
        sp->count++;
    }
    pthread_mutex_unlock(&sp->mu);
    return SW_OK;

fail_rollback:
    step_done(sp->st[ST_ROLLBACK]);
fail_unlock:
    pthread_mutex_unlock(&sp->mu);
    return db_err(rc);
}

sw_err
agent_spool_append(struct agent_spool *sp, uint64_t batch_id, uint32_t events, const void *data,
                   size_t len)
{
    struct agent_spool_batch b = { batch_id, events, data, len };
    return agent_spool_commit(sp, &b, NULL, 0, NULL, 0);
}

/* Deletes seq and updates the totals; mutex held. */
static int
delete_locked(struct agent_spool *sp, uint64_t seq, size_t len)
{
    int rc;

    sqlite3_bind_int64(sp->st[ST_ACK], 1, (sqlite3_int64)seq);
    rc = step_done(sp->st[ST_ACK]);
    if (rc != SQLITE_OK)
        return rc;
    if (sqlite3_changes(sp->db) > 0) {
        sp->bytes = sp->bytes >= len ? sp->bytes - len : 0;
        sp->count = sp->count ? sp->count - 1 : 0;
    }
    if (sp->count == 0) {
        /* give the pages of a drained outage back to the file system */
        sqlite3_exec(sp->db, "PRAGMA incremental_vacuum", NULL, NULL, NULL);
        sp->bytes = 0;
    }
    return SQLITE_OK;
}

sw_err
agent_spool_peek(struct agent_spool *sp, struct sw_buf *data, struct agent_spool_rec *rec)
{
    sqlite3_stmt *s = sp->st[ST_PEEK];
    sw_err rv = SW_OK;
    int rc;

    pthread_mutex_lock(&sp->mu);
    for (;;) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE) {
            rv = SW_ENOENT;
            break;
        }
        if (rc != SQLITE_ROW) {
            rv = db_err(rc);
            break;
        }
        uint64_t seq = (uint64_t)sqlite3_column_int64(s, 0);
        uint64_t batch_id = (uint64_t)sqlite3_column_int64(s, 1);
        uint32_t events = (uint32_t)sqlite3_column_int64(s, 2);
        uint32_t crc = (uint32_t)sqlite3_column_int64(s, 3);
        const void *p = sqlite3_column_blob(s, 4);
        size_t len = (size_t)sqlite3_column_bytes(s, 4);

        if ((p == NULL && len) || XXH32(p, len, 0) != crc) {
            sqlite3_reset(s);
            sw_warn("spool record %llu (batch %llu, %u events): checksum mismatch; "
                    "dropped (its lines were read before the corruption)",
                    (unsigned long long)seq, (unsigned long long)batch_id, events);
            rc = delete_locked(sp, seq, len);
            if (rc != SQLITE_OK) {
                rv = db_err(rc);
                break;
            }
            continue;
        }
        sw_buf_reset(data);
        if (len)
            sw_buf_append(data, p, len);
        if (data->oom) {
            data->oom = 0;
            rv = SW_ENOMEM;
            break;
        }
        rec->seq = seq;
        rec->batch_id = batch_id;
        rec->events = events;
        rec->len = len;
        break;
    }
    sqlite3_reset(s);
    pthread_mutex_unlock(&sp->mu);
    return rv;
}

sw_err
agent_spool_ack(struct agent_spool *sp, uint64_t seq)
{
    sqlite3_stmt *q = sp->st[ST_LEN];
    size_t len = 0;
    int rc;

    pthread_mutex_lock(&sp->mu);
    /* the record's size, for the totals */
    sqlite3_bind_int64(q, 1, (sqlite3_int64)seq);
    if (sqlite3_step(q) == SQLITE_ROW)
        len = (size_t)sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    rc = delete_locked(sp, seq, len);
    pthread_mutex_unlock(&sp->mu);
    return rc == SQLITE_OK ? SW_OK : db_err(rc);
}

uint64_t
agent_spool_bytes(struct agent_spool *sp)
{
    uint64_t v;
    pthread_mutex_lock(&sp->mu);
    v = sp->bytes;
    pthread_mutex_unlock(&sp->mu);
    return v;
}

uint64_t
agent_spool_count(struct agent_spool *sp)
{
    uint64_t v;
    pthread_mutex_lock(&sp->mu);
    v = sp->count;
    pthread_mutex_unlock(&sp->mu);
    return v;
}

uint64_t
agent_spool_max(const struct agent_spool *sp)
{
    return sp->max_bytes;
}

/* Copies column i's text into dst (cap bytes, NUL-terminated, cut if longer). */
static void
column_str(sqlite3_stmt *s, int i, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

sw_err
agent_spool_ckpt_get(struct agent_spool *sp, const struct agent_ckpt_key *key,
                     struct agent_ckpt *out)
{
    sqlite3_stmt *s = sp->st[ST_GET];
    sw_err rv = SW_OK;
    int rc;

    pthread_mutex_lock(&sp->mu);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)key->dev);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)key->ino);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        out->key = *key;
        out->fp_len = (uint32_t)sqlite3_column_int64(s, 0);
        out->fp_hash = (uint64_t)sqlite3_column_int64(s, 1);
        out->offset = (uint64_t)sqlite3_column_int64(s, 2);
        out->date = sqlite3_column_int(s, 3);
        out->enc = sqlite3_column_int(s, 4);
        column_str(s, 5, out->parser, sizeof out->parser);
        column_str(s, 6, out->device, sizeof out->device);
        out->path = NULL;
        if (out->fp_len > AGENT_FP_MAX)
            rv = SW_ENOENT;             /* not a row this agent wrote: ignore it */
    } else {
        rv = rc == SQLITE_DONE ? SW_ENOENT : db_err(rc);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    pthread_mutex_unlock(&sp->mu);
    return rv;
}

sw_err
agent_spool_ckpt_keys(struct agent_spool *sp, struct agent_ckpt_key **keys, size_t *n)
{
    sqlite3_stmt *s = sp->st[ST_KEYS];
    struct agent_ckpt_key *k = NULL;
    size_t len = 0, cap = 0;
    sw_err rv = SW_OK;
    int rc;

    pthread_mutex_lock(&sp->mu);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct agent_ckpt_key *nk = realloc(k, ncap * sizeof(*nk));
            if (nk == NULL) {
                rv = SW_ENOMEM;
                break;
            }
            k = nk;
            cap = ncap;
        }
        k[len].dev = (uint64_t)sqlite3_column_int64(s, 0);
        k[len].ino = (uint64_t)sqlite3_column_int64(s, 1);
        len++;
    }
    if (rv == SW_OK && rc != SQLITE_DONE)
        rv = db_err(rc);
    sqlite3_reset(s);
    pthread_mutex_unlock(&sp->mu);
    if (rv != SW_OK) {
        free(k);
        return rv;
    }
    *keys = k;
    *n = len;
    return SW_OK;
}
