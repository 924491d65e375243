/*
 * sw_wire.h - sw_event <-> protobuf: building and reading event batches
 * and event lists.
 *
 * A builder copies each added event into its own arena, so callers may
 * hand it events whose slices die right after the call.  Decoding unpacks
 * into an arena bounded by max_mem: a hostile batch that would expand past
 * it is refused (SW_ETOOBIG), and every event is validated (enums in
 * range, stage and time present, file index valid) before any is used.
 *
 * Thread: a builder or decoded batch belongs to one thread.
 */
#ifndef SW_WIRE_H
#define SW_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "sw_buf.h"
#include "sw_err.h"
#include "sw_event.h"

#define SW_WIRE_MAX_FIELD 65536     /* longest string field accepted */

struct sw_wire_builder;

struct sw_wire_builder *sw_wire_builder_new(void);
void sw_wire_builder_free(struct sw_wire_builder *b);
void sw_wire_builder_reset(struct sw_wire_builder *b);

/* Copies ev in (file names are interned per batch). SW_ENOMEM. */
sw_err sw_wire_builder_add(struct sw_wire_builder *b, const struct sw_event *ev);

size_t sw_wire_builder_count(const struct sw_wire_builder *b);
size_t sw_wire_builder_bytes(const struct sw_wire_builder *b);  /* approx. packed size */

/* Packs a Batch into out. */
sw_err sw_wire_builder_pack_batch(struct sw_wire_builder *b, const char *agent_id,
                                  const char *host, uint64_t batch_id, struct sw_buf *out);

/* Packs a ListEventsReply (events carry file and host) into out. */
sw_err sw_wire_builder_pack_list(struct sw_wire_builder *b, const void *cursor,
                                 size_t cursor_len, struct sw_buf *out);

struct sw_arena;

/* A decoded Batch or ListEventsReply. */
struct sw_wire_decoded {
    void *msg;                  /* the unpacked protobuf message (a list, the reference) */
    struct sw_event *events;    /* a batch: its events, their slices into the input */
    struct sw_arena *arena;     /* where it lives */
    int own_arena;              /* freed by fini (else only reset) */
    int is_list;
    size_t count;
    uint64_t batch_id;
    const char *agent_id;       /* "" when absent */
    const char *host;
    const unsigned char *cursor;
    size_t cursor_len;
};

/*
 * Unpacks and validates.  Errors: SW_EPROTO (malformed or invalid event;
 * why says which), SW_ETOOBIG (would exceed max_mem), SW_ENOMEM.
 *
 * A batch is read in place: its events' slices point into p, which must
 * outlive d (only the event array is allocated, within max_mem).  A list
 * is unpacked by protobuf-c into memory of its own.
 */
sw_err sw_wire_decode_batch(const void *p, size_t n, size_t max_mem,
                            struct sw_wire_decoded *out, char *why, size_t why_cap);
/*
 * A batch unpacked by protobuf-c's generated code and checked the same
 * way: the reference the in-place decoder is tested against.
 */
sw_err sw_wire_decode_batch_ref(const void *p, size_t n, size_t max_mem,
                                struct sw_wire_decoded *out, char *why, size_t why_cap);
sw_err sw_wire_decode_list(const void *p, size_t n, size_t max_mem,
                           struct sw_wire_decoded *out, char *why, size_t why_cap);
/*
 * The same into the caller's arena, which fini resets but keeps: a loop
 * decoding batch after batch reuses the same memory.
 */
sw_err sw_wire_decode_batch_reuse(struct sw_arena *a, const void *p, size_t n, size_t max_mem,
                                  struct sw_wire_decoded *out, char *why, size_t why_cap);
sw_err sw_wire_decode_list_reuse(struct sw_arena *a, const void *p, size_t n, size_t max_mem,
                                 struct sw_wire_decoded *out, char *why, size_t why_cap);
void sw_wire_decoded_fini(struct sw_wire_decoded *d);

/*
 * The last occurrence of length-delimited field 'field' in a protobuf
 * message, found by walking its fields without unpacking them (a CLI reads
 * a reply page's cursor this way to ask for the next page at once).
 * Returns 1 with *out set, 0 when the field is absent, -1 when the bytes
 * are not a well-formed message.
 */
int sw_wire_find_bytes(const void *msg, size_t n, uint32_t field, const uint8_t **out,
                       size_t *out_len);

/* Event i as an sw_event whose slices point into d. */
void sw_wire_decoded_event(const struct sw_wire_decoded *d, size_t i, struct sw_event *ev);

#endif
