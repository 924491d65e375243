/*
 * send.h - batches events, ships them to the aggregator, waits for acks.
 *
 * Events are copied into a batch bounded by count and bytes; a full batch
 * is packed, zstd-compressed (sw_rpc) and sent as one Ingest call.  A
 * batch is done only when the aggregator acknowledges it (it acks after
 * its commit); transport failures retry with exponential backoff and the
 * same batch id, which is harmless because ingest is idempotent.
 *
 * The pump (below) is the run-mode consumer: a thread of its own that
 * ships an on-disk spool record by record.
 *
 * Thread: one sender per thread; agent_pump_* from any thread.
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
    size_t batch_events;        /* flush after this many events (default 10000) */
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
    uint64_t wire_bytes;        /* request bytes sent for acknowledged batches (last attempt) */
};

struct agent_sender;

/*
 * Connects (retrying per opts).  Errors: SW_EUNAVAIL (nothing listening
 * after the retries), SW_EINVAL (bad address), SW_ENOMEM.  On error,
 * *err_text (static per sender, may be NULL) says why.
 */
sw_err agent_send_open(struct agent_sender **out, const struct agent_send_opts *opts,
                       const char **err_text);

/*
 * Adds an event.  A full batch is sent without waiting for its ack, on
 * the first of two connections free: the events of the next one are read
 * while the aggregator works, and a full batch waits for the ack of the
 * batch sent two before it, so two batches at most are unacknowledged.
 * Errors as agent_send_flush (of this batch or of one before it).
 */
sw_err agent_send_add(struct agent_sender *s, const struct sw_event *ev);

/*
 * Sends the pending batch and waits for its ack and for any batch still
 * unacknowledged.  Errors: SW_EUNAVAIL /
 * SW_ETIMEDOUT (retries exhausted), SW_EREMOTE (the aggregator refused
 * the batch: agent_send_error says why).
 */
sw_err agent_send_flush(struct agent_sender *s);

/*
 * Sends one already-packed Batch (sw_wire_builder_pack_batch) whose id is
 * batch_id and which holds 'events' events, and waits for the
 * aggregator's Ack of that id (sent after its commit).  Transport
 * failures are retried per opts with the same bytes.  The caller keeps
 * data.  Errors: SW_EUNAVAIL / SW_ETIMEDOUT (retries exhausted), SW_EPROTO
 * (no valid ack), SW_EREMOTE (refused: agent_send_error says why,
 * agent_send_status gives the status).
 */
sw_err agent_send_batch(struct agent_sender *s, uint64_t batch_id, const void *data,
                        size_t len, size_t events);

/* gRPC status of the last SW_EREMOTE refusal; SW_STATUS_OK (0) when none. */
int agent_send_status(const struct agent_sender *s);

const char *agent_send_error(const struct agent_sender *s);
const struct agent_send_stats *agent_send_stats(const struct agent_sender *s);
void agent_send_close(struct agent_sender *s);

/* ---- the pump: spool -> aggregator ---- */

struct agent_spool;
struct agent_pump;

struct agent_pump_stats {
    uint64_t batches;           /* acknowledged and removed from the spool */
    uint64_t events;            /* events in those batches */
    uint64_t stored;            /* of which new to the aggregator */
    uint64_t dropped;           /* batches the aggregator refused as invalid */
    int connected;              /* the last call was answered */
};

/*
 * Starts a thread that sends the spool's records oldest first, one at a
 * time, each with agent_send_batch, and acks (deletes) a record only
 * after the aggregator acknowledged it.  While the aggregator is away it
 * retries with backoff (200 ms doubling to 5 s), logging once per outage;
 * records stay on disk meanwhile.  A batch refused as INVALID_ARGUMENT
 * can never be accepted: it is dropped with an error rather than block
 * the queue.  Other refusals are retried.
 *
 * The thread inherits the caller's signal mask: block SIGINT/SIGTERM
 * first.  opts is copied (its strings must outlive the pump); retries and
 * backoff in it are ignored.  sp is borrowed until agent_pump_stop.
 * Errors: SW_ENOMEM, SW_EIO (thread creation failed).
 */
sw_err agent_pump_start(struct agent_pump **out, struct agent_spool *sp,
                        const struct agent_send_opts *opts);

/* Wakes the pump: a record was appended.  Any thread. */
void agent_pump_kick(struct agent_pump *p);

void agent_pump_stats(struct agent_pump *p, struct agent_pump_stats *out);

/*
 * Stops the thread and frees p (accepts NULL); returns 0, with the final
 * counters in *final (may be NULL).  With drain_ms
 * > 0 it first goes on sending while the aggregator answers, until the
 * spool is empty or drain_ms have passed; what is left stays in the spool
 * for the next start.  If a call is still in flight 2 s after that (a hung
 * aggregator; calls last up to twice opts->timeout_ms), returns -1 and
 * leaves the thread running: p and the spool must then stay allocated and
 * the process should exit (the unacknowledged batch stays in the spool).
 */
int agent_pump_stop(struct agent_pump *p, int drain_ms, struct agent_pump_stats *final);

#endif
