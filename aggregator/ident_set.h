/*
 * ident_set.h - the events writer's memory of which identities it stored.
 *
 * An open-addressing table of (fingerprint, event id) pairs, 16 bytes a
 * slot, at most three quarters full.  It answers "which stored events might
 * have this identity?": the ids under a fingerprint, which the caller
 * confirms against the stored identity (two identities may share a
 * fingerprint; the set never decides equality itself).
 *
 * It replaces a unique index on the events table: an index entry inserted
 * at a random place cost SQLite more than the row itself (and wrote most of
 * the WAL), where a probe here is a cache miss or two.
 *
 * Not thread-safe: the store calls it under the writer's lock.
 */
#ifndef AGG_IDENT_SET_H
#define AGG_IDENT_SET_H

#include <stddef.h>
#include <stdint.h>

#include "sw_err.h"

struct ident_slot {
    uint64_t fp;                /* 0: empty */
    int64_t id;
};

struct ident_set {
    uint64_t key;               /* random, per set: fingerprints unpredictable to senders */
    struct ident_slot *slots;
    size_t cap;                 /* a power of two, or 0 before the first add */
    size_t n;
};

/* A walk over the ids stored under one fingerprint. */
struct ident_probe {
    uint64_t fp;
    size_t i;
    size_t seen;
};

/*
 * An identity's fingerprint in this set: 64 bits, never 0, keyed by the
 * set's random key, so that an agent cannot craft events whose identities
 * pile up in one stretch of the table (the slot is the fingerprint's low
 * bits, and each probe past a full slot costs every later insert).
 */
uint64_t ident_set_fp(const struct ident_set *s, const unsigned char *ident, size_t len);

/* An empty set with a fresh key (the state a zeroed one lacks). */
void ident_set_init(struct ident_set *s);
void ident_set_fini(struct ident_set *s);

/* Makes room for n more entries without growing on the way (SW_ENOMEM). */
sw_err ident_set_reserve(struct ident_set *s, size_t n);

/*
 * Records event id under fp (fp as ident_set_fp gives it); *slot (may be
 * NULL) gets where, for ident_set_undo.  SW_ENOMEM.
 */
sw_err ident_set_add(struct ident_set *s, uint64_t fp, int64_t id, size_t *slot);

/*
 * Takes back the last k adds, given their slots in the order they were
 * made, when the table has not grown since (reserve first): each add
 * filled an empty slot, so clearing them newest first restores the table.
 */
void ident_set_undo(struct ident_set *s, const size_t *slots, size_t k);

/* Asks the CPU for fp's slot ahead of a probe (the writer does so an event ahead). */
void ident_set_prefetch(const struct ident_set *s, uint64_t fp);

/* Starts a walk; ident_set_next gives the next id under fp, 0 when none is left. */
void ident_set_probe(const struct ident_set *s, uint64_t fp, struct ident_probe *p);
int ident_set_next(const struct ident_set *s, struct ident_probe *p, int64_t *id);

/* Bytes held, for the log. */
size_t ident_set_bytes(const struct ident_set *s);

#endif
