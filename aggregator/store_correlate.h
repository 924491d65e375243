/*
 * store_correlate.h - keeps the SQLite store's enrollments and issuances
 * up to date with its events.
 *
 * The ingest loop marks what a batch touched (devices with new SCEP
 * events, CA request ids with new events) in tables committed with the
 * events.  agg_corr_step then, a bounded step at a time, rebuilds those
 * devices' enrollments and those requests' issuances from their events,
 * relinks by thumbprint, txn and serial, re-runs the time-window matching
 * over every stretch of time the change can reach (expanded until no
 * candidate lies within the window of its edge), and refreshes statuses,
 * so the result depends only on the set of stored events, never on the
 * order they came in.
 *
 * Thread: whoever holds the writer connection, inside its transaction.
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
 * Creates the correlation tables, or drops and recreates them (marking
 * every device and request dirty) when they are of an older derivation.
 * Run at open, inside a transaction, after the events schema.
 */
sw_err agg_corr_prepare_schema(sqlite3 *db);

struct agg_corr;

/* Prepares the temp tables and statements on the writer connection. */
sw_err agg_corr_open(sqlite3 *db, int64_t window_us, struct agg_corr **out);
void agg_corr_close(struct agg_corr *c);

/*
 * Marks a device / request id dirty (from the ingest loop), in tables of
 * the database: marks commit with the events, and a pass may come later.
 * batch_begin starts an ingest transaction's bookkeeping (a repeat of the
 * last mark is skipped); batch_marked says whether it marked anything.
 */
void agg_corr_batch_begin(struct agg_corr *c);
int agg_corr_batch_marked(const struct agg_corr *c);
sw_err agg_corr_mark_device(struct agg_corr *c, const char *device, size_t len);
sw_err agg_corr_mark_request(struct agg_corr *c, const char *request_id, size_t len);

/*
 * Correlation runs in steps, each meant to be a transaction of its own so
 * a big backlog (a fleet's history sent at once) never holds the writer
 * for long: rebuild up to AGG_CORR_STEP_DEVICES dirty devices, or up to
 * AGG_CORR_STEP_ROWS dirty requests; once none is dirty, decide the links
 * of everything touched; then refresh statuses, AGG_CORR_STEP_ROWS a step.
 * The work lists are tables, so a crash resumes where it stopped.  *idle
 * is set when there was nothing to do.  SW_EDB / SW_ENOMEM.
 */
#define AGG_CORR_STEP_DEVICES 2000
#define AGG_CORR_STEP_ROWS 20000
sw_err agg_corr_step(struct agg_corr *c, int *idle);

/* Rows waiting in the work lists of db, on any connection (0 = all correlated). */
uint64_t agg_corr_backlog(sqlite3 *db);

#endif
