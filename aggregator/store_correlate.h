/*
 * store_correlate.h - keeps the SQLite store's enrollments and issuances
 * up to date with its events.
 *
 * The derived tables (enrollments, issuances and their work lists) live
 * in a database of their own, written by the correlation connection while
 * the events writer ingests: the two run side by side, on two cores.
 *
 * The ingest loop marks what a batch touched (devices with new SCEP
 * events, CA request ids with new events) in tables of the events
 * database, committed with the events and tagged with the batch's number.
 * agg_corr_step then, a bounded step at a time, rebuilds those
 * devices' enrollments and those requests' issuances from their events,
 * relinks by thumbprint, txn and serial, re-runs the time-window matching
 * over every stretch of time the change can reach (expanded until no
 * candidate lies within the window of its edge), and refreshes statuses,
 * so the result depends only on the set of stored events, never on the
 * order they came in.
 *
 * Threads: marks are made by the ingest thread on the events writer
 * connection; steps run on the correlation connection (the derived
 * database with the events database attached as "ev"), each in a
 * transaction of its own; agg_corr_finish then removes the marks a step
 * worked off, on the events writer, under the writer's lock.
 */
#ifndef AGG_STORE_CORRELATE_H
#define AGG_STORE_CORRELATE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "sw_err.h"

/* Schema of the correlation tables. */
extern const char agg_corr_schema[];

/*
 * Creates the correlation tables in cdb's main database, or drops and
 * recreates them (marking every device and request dirty through wdb)
 * when they are of an older derivation or absent.  Run at open, before
 * any thread, after the events schema; not inside a transaction.
 */
sw_err agg_corr_prepare_schema(sqlite3 *cdb, sqlite3 *wdb);

struct agg_corr;

/* Prepares the statements: on cdb (derived, events attached) and wdb (events writer). */
sw_err agg_corr_open(sqlite3 *cdb, sqlite3 *wdb, int64_t window_us, struct agg_corr **out);
void agg_corr_close(struct agg_corr *c);

/*
 * Marks a device dirty (from the ingest loop), in a table of the events
 * database: marks commit with the events, and a pass may come later.
 * batch_begin starts an ingest transaction's bookkeeping (gen: the batch's
 * number, increasing; a repeat of the last mark is skipped); batch_marked
 * says whether it marked anything.  CA rows need no mark: the time index
 * step reads every new event by id, and records their request ids then.
 */
void agg_corr_batch_begin(struct agg_corr *c, int64_t gen);
int agg_corr_batch_marked(const struct agg_corr *c);
sw_err agg_corr_mark_device(struct agg_corr *c, const char *device, size_t len);

/*
 * Correlation runs in steps, each meant to be a transaction of its own so
 * a big backlog (a fleet's history sent at once) never holds the writer
 * for long: first index the times of up to AGG_CORR_STEP_TIME new events;
 * then rebuild up to AGG_CORR_STEP_DEVICES dirty devices, or up to
 * AGG_CORR_STEP_ROWS dirty requests; once none is dirty, decide the links
 * of everything touched; then refresh statuses, AGG_CORR_STEP_ROWS a step.
 * The work lists are tables, so a crash resumes where it stopped.  *idle
 * is set when there was nothing to do.  SW_EDB / SW_ENOMEM.
 */
#define AGG_CORR_STEP_DEVICES 2000
#define AGG_CORR_STEP_ROWS 20000
#define AGG_CORR_STEP_TIME 50000

/*
 * Two columns: the last event id in the time index (event_time), and the
 * newest event id; events past the first are not in the index yet.
 */
#define AGG_CORR_TIME_UPTO_SQL                                                           \
    "ifnull((SELECT CAST(value AS INTEGER) FROM main.corr_meta WHERE key = 'time_upto'), 0)" \
    " AS u, ifnull((SELECT max(id) FROM events), 0) AS n"
sw_err agg_corr_step(struct agg_corr *c, int *idle);

/*
 * After a step's commit: removes the dirty marks it worked off (those not
 * marked again since), on the events writer.  After a rollback: discard.
 * A crash between the two only repeats work (a rebuild is idempotent).
 */
int agg_corr_finish_pending(const struct agg_corr *c);
sw_err agg_corr_finish(struct agg_corr *c);
void agg_corr_discard(struct agg_corr *c);

/* Rows waiting in the work lists, on a connection to the derived database
 * with the events attached (0 = all correlated). */
uint64_t agg_corr_backlog(sqlite3 *db);

#endif
