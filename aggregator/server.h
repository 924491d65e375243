/*
 * server.h - the aggregator's RPC server: nng REP sockets, a pool of
 * worker threads each owning one nng context, and the method table.
 *
 * Each listener has a role; the method table says which roles may call
 * each method (DESIGN: agents' credentials never open admin methods).
 * Workers decode the envelope (bounded), check the deadline, dispatch,
 * and answer with a status.  Handlers are idempotent: nng REQ resends.
 */
#ifndef AGG_SERVER_H
#define AGG_SERVER_H

#include <stddef.h>

#include "store.h"
#include "sw_err.h"

enum agg_role {
    AGG_ROLE_INGEST = 1 << 0,   /* agents: Ingest, Health */
    AGG_ROLE_ADMIN = 1 << 1,    /* admins: queries, Health */
    AGG_ROLE_ALL = AGG_ROLE_INGEST | AGG_ROLE_ADMIN,
};

struct agg_server;

struct agg_server_opts {
    const char *url;            /* nng listen address */
    unsigned roles;             /* enum agg_role mask */
    int workers;                /* concurrent requests (default 4) */
    size_t max_msg;             /* nng receive limit, bytes */
    size_t max_raw;             /* decompressed payload limit, bytes */
    int64_t threshold_us[AGG_STATUS_COUNT]; /* stuck after, per status; 0 = 1 hour */
};

/*
 * Listens and starts the workers.  Errors: SW_EINVAL (bad address),
 * SW_EUNAVAIL (address in use / cannot listen: why says), SW_ENOMEM.
 */
sw_err agg_server_start(struct agg_server **out, const struct agg_server_opts *opts,
                        struct agg_store *store, char *why, size_t why_cap);

/* Closes the socket, waits for the workers, frees.  NULL is fine. */
void agg_server_stop(struct agg_server *srv);

#endif
