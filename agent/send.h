/*
 * send.h - batches events, ships them to the aggregator, waits for acks.
 *
 * Events are copied into a batch bounded by count and bytes; a full batch
 * is packed, zstd-compressed (sw_rpc) and sent as one Ingest call.  A
 * batch is done only when the aggregator acknowledges it (it acks after
 * its commit); transport failures retry with exponential backoff and the
 * same batch id, which is harmless because ingest is idempotent.
 *
 * Thread: one sender per thread.
 */
#ifndef AGENT_SEND_H
#define AGENT_SEND_H

#include <stddef.h>
#include <stdint.h>

#include "sw_err.h"
#include "sw_event.h"

struct agent_send_opts {
    const char *url;            /* aggregator address */
    const char *agent_id;       /* identity; default host name */
    const char *host;           /* collection host; default host name */
    size_t batch_events;        /* flush after this many events (default 5000) */
    size_t batch_bytes;         /* ... or this many raw bytes (default 4 MiB) */
    int timeout_ms;             /* per call (default 30000) */
    int retries;                /* attempts after the first (default 6) */
    int backoff_ms;             /* first retry delay, doubling (default 200) */
};

struct agent_send_stats {
    uint64_t events_sent;
    uint64_t events_stored;     /* new to the aggregator */
    uint64_t events_duplicate;  /* already there */
    uint64_t batches;
    uint64_t retries;
    uint64_t raw_bytes;         /* batch bytes before compression */
};

struct agent_sender;

/*
 * Connects (retrying per opts).  Errors: SW_EUNAVAIL (nothing listening
 * after the retries), SW_EINVAL (bad address), SW_ENOMEM.  On error,
 * *err_text (static per sender, may be NULL) says why.
 */
sw_err agent_send_open(struct agent_sender **out, const struct agent_send_opts *opts,
                       const char **err_text);

/* Adds an event; flushes a full batch.  Errors as agent_send_flush. */
sw_err agent_send_add(struct agent_sender *s, const struct sw_event *ev);

/*
 * Sends the pending batch and waits for its ack.  Errors: SW_EUNAVAIL /
 * SW_ETIMEDOUT (retries exhausted), SW_EREMOTE (the aggregator refused
 * the batch: agent_send_error says why).
 */
sw_err agent_send_flush(struct agent_sender *s);

const char *agent_send_error(const struct agent_sender *s);
const struct agent_send_stats *agent_send_stats(const struct agent_sender *s);
void agent_send_close(struct agent_sender *s);

#endif
