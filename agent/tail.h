/*
 * tail.h - follows the files that globs name, through rotation, truncation
 * and restarts, parses what they gain and commits the events, with the
 * offsets they were read up to, to the spool.
 *
 * The one idea: an offset only moves in the same spool transaction as the
 * events read before it (spool.h), so a crash anywhere re-reads at most
 * what was not yet durable, and never skips a line.  Re-reading is safe
 * because the aggregator stores an event once by its content identity.
 *
 * Files are known by identity (checkpoint.h: st_dev, st_ino and a
 * fingerprint of the first bytes), not by name:
 * - renamed (OMADM.log -> OMADM.1.log, still matching a glob or not): the
 *   same entry is read on from its offset through the fd it holds; a file
 *   that left every glob is finished, then forgotten after a grace period;
 * - copytruncate: the copy is a new inode, read from 0 (its events are
 *   already stored, the aggregator drops them); the original is seen to
 *   shrink below its offset and is read from 0, once;
 * - truncated in place, or a checkpoint past the end: read from 0;
 * - deleted and recreated on a reused inode: the fingerprint differs, so a
 *   new file, read from 0;
 * - gone while the agent was down: its checkpoint is deleted after the
 *   first scan; rotated while down: found again by identity under its new
 *   name.
 * Files never seen before are read from their start.
 *
 * Parser state across reads and restarts: a file's parse context stays
 * live between reads while a memory budget allows (least recently used
 * ones are released).  A context is rebuilt by replaying the file from 0
 * up to the checkpoint with emit disabled (ndes_iis' #Fields, ios_console's
 * date, a CSV header); parsers whose lines carry no context (android_omadm)
 * skip the replay and keep no context at all.  The checkpoint never passes
 * ctx->hold_offset (a record still being assembled), and an unterminated
 * last line is left for a later read.
 *
 * Memory: one reader buffer and one batch builder shared by all files; per
 * file a small fixed record; parser contexts within ctx_budget_bytes.
 * When the spool is full, reading pauses (no event is dropped, nothing
 * accumulates in memory) until the sender frees room.
 *
 * inotify (when available) only wakes the caller early; every cycle
 * rescans the globs and stats the files, so polling alone is correct.
 *
 * Thread: an agent_tail belongs to one thread (the agent's main loop).
 * The spool it commits to may be shared with a sender thread.
 */
#ifndef AGENT_TAIL_H
#define AGENT_TAIL_H

#include <stddef.h>
#include <stdint.h>

#include "parsers/parser.h"
#include "spool.h"
#include "sw_err.h"

struct agent_tail_conf {
    const char *const *patterns;    /* globs; one path component may hold
                                       "{device}", which names the device */
    size_t n_patterns;
    const struct agent_parser *format; /* NULL = decided per file (auto) */
    const char *device;             /* for files whose path names none; NULL */
    int tz_off_min;                 /* zone of time stamps that carry none */
    const char *agent_id;           /* stamped into batches; NULL = host name */
    const char *host;               /* collection host; NULL = host name */
    size_t batch_events;            /* events per spool record; 0 = 2000 */
    size_t batch_bytes;             /* bytes per spool record, approx.;
                                       0 = 512 KiB (at most 1/8 of the spool) */
    size_t ctx_budget_bytes;        /* parser contexts kept live; 0 = 4 MiB */
    int no_inotify;                 /* 1 = polling only */
    int orphan_grace_ms;            /* a file gone from the globs is followed
                                       (through its fd) while it grows, and
                                       dropped once it has been gone this
                                       long and stopped growing; 0 = 5000 */
    void (*on_commit)(void *arg);   /* called after a batch is committed
                                       (wake the sender); may be NULL */
    void *on_commit_arg;
};

struct agent_tail_status {
    int more;                       /* unread data is left (per-cycle budget):
                                       cycle again without waiting */
    int paused;                     /* the spool is full: reading waits */
    size_t files;                   /* files followed */
    uint64_t events;                /* events committed this cycle */
};

struct agent_tail;

/*
 * Sets up a tailer committing to sp (borrowed; must outlive it).  cf is
 * copied, its strings are borrowed.  Reads nothing yet.  Errors:
 * SW_EINVAL (no pattern, or a pattern with two {device}), SW_ENOMEM,
 * SW_EDB (reading the checkpoints failed).
 */
sw_err agent_tail_open(struct agent_tail **out, const struct agent_tail_conf *cf,
                       struct agent_spool *sp);

/*
 * One cycle: rescans the globs, reads what every file gained (up to a
 * per-cycle budget), and commits.  Problems with single files are logged
 * and retried next cycle; st (may be NULL) says what to do next.
 * Returns SW_OK, or SW_EDB when the spool cannot be written at all.
 */
sw_err agent_tail_cycle(struct agent_tail *t, struct agent_tail_status *st);

/* The inotify descriptor to poll for readability, or -1 (polling only). */
int agent_tail_fd(const struct agent_tail *t);

/* Consumes pending inotify events; returns how many there were. */
int agent_tail_drain(struct agent_tail *t);

/*
 * Commits what is read but not yet committed (offsets of lines without
 * events).  For a clean stop.  Errors as agent_spool_commit.
 */
sw_err agent_tail_flush(struct agent_tail *t);

/* Frees everything; uncommitted progress is dropped (it is re-read at
 * the next start).  Accepts NULL. */
void agent_tail_close(struct agent_tail *t);

#endif
