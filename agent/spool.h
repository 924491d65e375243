/*
 * spool.h - the agent's durable state: the FIFO of packed batches waiting
 * for the aggregator's ack, and the checkpoint of every tailed file.
 *
 * Both live in one SQLite database, <state_dir>/state.db (WAL journal,
 * synchronous=FULL), so that a batch and the file offsets it covers are
 * committed by one transaction: after a kill -9 or a power cut either
 * both are there or neither is.  A write torn by a crash fails SQLite's
 * WAL frame checksums and is rolled back at the next open, taking its
 * offsets with it, so the lines are read again; acknowledged-safe data
 * (every earlier commit) is untouched.  Each record also carries an
 * XXH32 of its bytes: a record that no longer matches is dropped (with
 * a warning) rather than sent or allowed to block the queue.
 *
 * A record leaves the spool only through agent_spool_ack, which the
 * sender calls after the aggregator acknowledged the batch (it acks after
 * its own commit).  A crash between the ack and agent_spool_ack resends
 * the batch, which the aggregator's identity dedup makes harmless.
 *
 * The spool is bounded: the sum of record sizes never exceeds max_bytes
 * (agent_spool_commit answers SW_EFULL and writes nothing instead).
 *
 * A database SQLite cannot use (not a database, failed quick_check,
 * missing tables) is renamed to state.db.corrupt-<unix time> with a
 * warning and a new one is started: every file is then read again from
 * its start, which the aggregator's dedup makes harmless.  A lock file
 * (<state_dir>/lock, flock) keeps a second agent off the same directory.
 *
 * Thread: every function may be called from any thread; calls are
 * serialised by one mutex (the tailer commits, the sender peeks and
 * acks).  Logs (sw_log) only when it drops or sets aside data.
 */
#ifndef AGENT_SPOOL_H
#define AGENT_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "sw_buf.h"
#include "sw_err.h"

#define AGENT_SPOOL_DB "state.db"
#define AGENT_SPOOL_MIN_BYTES (64u * 1024)  /* smallest max_bytes accepted */

struct agent_spool;

/* A batch to append: an already-packed Batch (sw_wire_builder_pack_batch). */
struct agent_spool_batch {
    uint64_t batch_id;              /* the Batch's id, echoed by the Ack */
    uint32_t events;                /* events in it (for stats and logs) */
    const void *data;               /* packed bytes; borrowed for the call */
    size_t len;                     /* bytes at data */
};

/* A record read back by agent_spool_peek. */
struct agent_spool_rec {
    uint64_t seq;                   /* queue position, increasing */
    uint64_t batch_id;
    uint32_t events;
    size_t len;                     /* bytes */
};

/*
 * Opens (creating if needed) <dir>/state.db; dir must exist.  max_bytes
 * bounds the queued bytes (>= AGENT_SPOOL_MIN_BYTES).  On error, why
 * (why_cap bytes) says what failed.  Errors: SW_EINVAL (bad max_bytes,
 * dir unusable, or another agent holds the lock), SW_EDB (SQLite failed
 * even on a fresh database), SW_ENOMEM.
 */
sw_err agent_spool_open(struct agent_spool **out, const char *dir, uint64_t max_bytes,
                        char *why, size_t why_cap);

/* Closes the database and releases the lock.  Accepts NULL. */
void agent_spool_close(struct agent_spool *sp);

/*
 * One transaction: appends batch b (NULL = none), writes (insert or
 * replace) the nput checkpoints and deletes the ndel keys.  Nothing is
 * written on error.  Errors: SW_EFULL (b would take the queue past
 * max_bytes, or the disk is full), SW_EDB.
 */
sw_err agent_spool_commit(struct agent_spool *sp, const struct agent_spool_batch *b,
                          const struct agent_ckpt *put, size_t nput,
                          const struct agent_ckpt_key *del, size_t ndel);

/* agent_spool_commit with a batch and no checkpoints. */
sw_err agent_spool_append(struct agent_spool *sp, uint64_t batch_id, uint32_t events,
                          const void *data, size_t len);

/*
 * Copies the oldest record into data (replacing its content) and its
 * metadata into *rec.  A record whose checksum fails is deleted with a
 * warning and the next one is tried.  Errors: SW_ENOENT (empty),
 * SW_ENOMEM, SW_EDB.
 */
sw_err agent_spool_peek(struct agent_spool *sp, struct sw_buf *data,
                        struct agent_spool_rec *rec);

/* Deletes record seq (after the aggregator acked it).  SW_EDB. */
sw_err agent_spool_ack(struct agent_spool *sp, uint64_t seq);

/* Queued bytes and records, and the bound. */
uint64_t agent_spool_bytes(struct agent_spool *sp);
uint64_t agent_spool_count(struct agent_spool *sp);
uint64_t agent_spool_max(const struct agent_spool *sp);

/*
 * Reads the checkpoint of key.  out->path is set to NULL.
 * Errors: SW_ENOENT (none), SW_EDB.
 */
sw_err agent_spool_ckpt_get(struct agent_spool *sp, const struct agent_ckpt_key *key,
                            struct agent_ckpt *out);

/*
 * Every checkpointed key, in a malloc'd array the caller frees (NULL
 * when *n is 0).  Errors: SW_ENOMEM, SW_EDB.
 */
sw_err agent_spool_ckpt_keys(struct agent_spool *sp, struct agent_ckpt_key **keys,
                             size_t *n);

#endif
