/*
 * store.h - where the aggregator keeps events, behind a small table of
 * operations so that a PostgreSQL store can join SQLite later.
 *
 * One store object is shared by all server workers.  Writes (ingest) are
 * serialised by the store; reads may run concurrently with each other and
 * with a write (SQLite in WAL mode: each reader thread gets its own
 * connection through agg_store_reader()).
 *
 * Event identity (sw_event_identity) is the store's uniqueness key: an
 * event received twice is stored once, whichever batch brought it.
 */
#ifndef AGG_STORE_H
#define AGG_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "sw_err.h"
#include "sw_event.h"

/* Time-link window: a device request and a CA receipt this close are one. */
#define AGG_LINK_WINDOW_US (120LL * 1000000)

struct agg_store_ops;

/* Implementations embed these as their first member. */
struct agg_store {
    const struct agg_store_ops *ops;
};

struct agg_store_reader {
    const struct agg_store_ops *ops;
};

struct agg_event_filter {
    const char *device;         /* NULL = any */
    int64_t since_us;           /* 0 = any */
    enum sw_platform platform;  /* UNKNOWN = any */
};

/* Paging position for events: (ts, id) of the last row returned. */
struct agg_event_cursor {
    int64_t ts_us;
    int64_t id;
    int valid;
};

typedef void (*agg_event_fn)(void *arg, const struct sw_event *ev);

struct agg_summary_row {
    enum sw_platform platform;
    enum sw_stage stage;
    uint64_t count;
};

typedef void (*agg_summary_fn)(void *arg, const struct agg_summary_row *row);

/* The operations a store implements. */
struct agg_store_ops {
    const char *name;
    sw_err (*open)(struct agg_store **out, const char *path, char *why, size_t cap);
    void (*close)(struct agg_store *st);
    /* Stores events not yet present, in one transaction; counts new and duplicate. */
    sw_err (*ingest)(struct agg_store *st, const struct sw_event *evs, size_t n,
                     const char *agent, uint32_t *stored, uint32_t *dups);
    sw_err (*reader_open)(struct agg_store *st, struct agg_store_reader **out);
    void (*reader_close)(struct agg_store_reader *r);
    /* Up to 'limit' events after cursor, ordered by (ts, id); *more set if others follow. */
    sw_err (*list_events)(struct agg_store_reader *r, const struct agg_event_filter *f,
                          struct agg_event_cursor *cursor, size_t limit, int *more,
                          agg_event_fn fn, void *arg);
    sw_err (*summary)(struct agg_store_reader *r, agg_summary_fn fn, void *arg);
    sw_err (*count_events)(struct agg_store_reader *r, uint64_t *n);
};

extern const struct agg_store_ops agg_store_sqlite;

#endif
