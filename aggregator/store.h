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

#include "correlate.h"
#include "sw_err.h"
#include "sw_event.h"

/* Time-link window: a device request and a CA receipt this close are one. */
#define AGG_LINK_WINDOW_US (30LL * 1000000)

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
    int64_t until_us;           /* 0 = any; inclusive */
    enum sw_platform platform;  /* UNKNOWN = any */
    const char *request_id;     /* NULL = any */
};

/* When a non-final status counts as stuck, resolved for one query. */
struct agg_policy {
    int64_t as_of_us;
    int64_t threshold_us[AGG_STATUS_COUNT];
};

struct agg_enr_filter {
    int stuck_only;
    unsigned status_mask;       /* 1 << enum agg_status; 0 = any */
    enum sw_platform platform;  /* UNKNOWN = any */
    const char *device;         /* NULL = any; "" = rows without a device */
    const char *cert_key;       /* serial, thumbprint, txn or request id */
    int brief;                  /* only the columns a table shows (the others absent) */
};

/* One report row; strings valid during the callback only, NULL = absent. */
struct agg_enr_row {
    const char *rowkey;
    const char *device;
    enum sw_platform platform;
    const char *profile;
    enum agg_status status;
    int64_t since_us, stuck_since_us;   /* 0 = none */
    enum sw_stage last_stage;
    int64_t last_event_us, first_us, requested_us, issued_us, installed_us;
    const char *request_id, *serial, *thumbprint, *txn, *detail, *subject, *template_name;
    enum agg_link link;
};

typedef void (*agg_enr_fn)(void *arg, const struct agg_enr_row *row);

struct agg_funnel_row {
    enum sw_platform platform;
    uint64_t enrollments, requested, issued, delivered, installed, stuck, failed;
};

typedef void (*agg_funnel_fn)(void *arg, const struct agg_funnel_row *row);

/* Paging position for events: (ts, id) of the last row returned. */
struct agg_event_cursor {
    int64_t ts_us;
    int64_t id;
    int valid;
};

typedef void (*agg_event_fn)(void *arg, const struct sw_event *ev);


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
    /* Report rows after cursor (rowkey; "" = start), in rowkey order; *more if others follow. */
    sw_err (*list_enrollments)(struct agg_store_reader *r, const struct agg_enr_filter *f,
                               const struct agg_policy *pol, const char *cursor, size_t limit,
                               int *more, agg_enr_fn fn, void *arg);
    /* The funnel per platform. */
    sw_err (*funnel)(struct agg_store_reader *r, const struct agg_policy *pol,
                     agg_funnel_fn fn, void *arg);
    sw_err (*count_events)(struct agg_store_reader *r, uint64_t *n);
    /*
     * Correlation work still waiting when the last list_enrollments (first
     * page) or funnel gave up waiting for it: 0 = that answer was current.
     */
    uint64_t (*backlog)(struct agg_store_reader *r);
};

extern const struct agg_store_ops agg_store_sqlite;

#endif
