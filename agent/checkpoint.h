/*
 * checkpoint.h - where the agent stopped reading a file, and how it tells
 * that a file on disk is still the one a checkpoint was taken of.
 *
 * A file's identity is its st_dev and st_ino plus a fingerprint: the
 * XXH64 of its first fp_len bytes (up to AGENT_FP_MAX; a shorter file is
 * fingerprinted as far as it goes and the fingerprint is extended as it
 * grows).  An inode number alone is not enough: a deleted log's inode is
 * handed to the next file created, and a checkpoint applied to that file
 * would skip its start.  The fingerprint also catches a file truncated
 * and rewritten past the old offset between two looks.
 *
 * The records themselves are stored by the spool (spool.h), in the same
 * transaction as the batch of events read up to 'offset'.
 *
 * Thread: plain data and pure functions (they read the given fd with
 * pread and keep no state); any thread.
 */
#ifndef AGENT_CHECKPOINT_H
#define AGENT_CHECKPOINT_H

#include <stdint.h>

#include "sw_err.h"

#define AGENT_FP_MAX 256            /* bytes of a file's start fingerprinted */
#define AGENT_CKPT_PARSER_MAX 32    /* parser name, with its NUL */
#define AGENT_CKPT_DEVICE_MAX 256   /* device id, with its NUL */

/* What identifies a file across restarts: the database key. */
struct agent_ckpt_key {
    uint64_t dev;                   /* st_dev of its file system */
    uint64_t ino;                   /* st_ino */
};

struct agent_ckpt {
    struct agent_ckpt_key key;
    uint32_t fp_len;                /* bytes fingerprinted from offset 0 */
    uint64_t fp_hash;               /* XXH64 (seed 0) of those bytes */
    uint64_t offset;                /* resume here: a line start, never past a
                                       record the parser still holds */
    int32_t date;                   /* YYYYMMDD given to date-less lines
                                       (the file's mtime when first seen);
                                       0 = none */
    int32_t enc;                    /* enum agent_encoding; -1 = not decided */
    char parser[AGENT_CKPT_PARSER_MAX]; /* parser name; "" = not decided */
    char device[AGENT_CKPT_DEVICE_MAX]; /* device the events name; "" = none */
    const char *path;               /* where it was last seen, for people
                                       reading the database; borrowed when
                                       written, NULL when read back */
};

enum agent_ckpt_verdict {
    AGENT_CKPT_SAME,                /* same file: resume at offset */
    AGENT_CKPT_TRUNCATED,           /* same start, but shorter than offset
                                       (truncated in place, or a checkpoint
                                       past the end): read from 0 */
    AGENT_CKPT_OTHER,               /* another file's content (inode reused,
                                       truncated and rewritten): read from 0 */
};

/*
 * Fingerprints fd: the first min(size, AGENT_FP_MAX) bytes.  Fills
 * ck->fp_len and ck->fp_hash.  Errors: SW_EIO (read failed; ck untouched).
 */
sw_err agent_ckpt_fingerprint(struct agent_ckpt *ck, int fd, uint64_t size);

/*
 * Compares ck with the open file fd of 'size' bytes (whose dev/ino the
 * caller has matched to ck->key).  A file shorter than the fingerprint is
 * TRUNCATED; a fingerprint mismatch is OTHER; a file shorter than
 * ck->offset is TRUNCATED.  On a read error *err is set and OTHER is
 * returned (reading from 0 again is always safe: the aggregator
 * deduplicates events by content).
 */
enum agent_ckpt_verdict agent_ckpt_check(const struct agent_ckpt *ck, int fd, uint64_t size,
                                         sw_err *err);

/*
 * After a SAME verdict: extends a short fingerprint to cover what the
 * file now holds (up to AGENT_FP_MAX).  Returns true if ck changed.
 */
int agent_ckpt_extend(struct agent_ckpt *ck, int fd, uint64_t size);

/* Text for a verdict, for logs. */
const char *agent_ckpt_verdict_name(enum agent_ckpt_verdict v);

#endif
