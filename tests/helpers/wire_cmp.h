/*
 * wire_cmp.h - holds the in-place batch decoder to the reference one
 * (protobuf-c's generated unpacker and the same checks): test_wire and
 * fuzz_wire decode the same bytes both ways and compare.
 */
#ifndef WIRE_CMP_H
#define WIRE_CMP_H

#include <string.h>

#include "sw_wire.h"

/* Both absent, or both present with the same bytes. */
static inline int
wire_cmp_slice(struct sw_slice a, struct sw_slice b)
{
    if (!a.ptr || !b.ptr)
        return !a.ptr && !b.ptr;
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* 0 when the two decoded batches hold the same; else the first difference. */
static inline const char *
wire_cmp_decoded(const struct sw_wire_decoded *a, const struct sw_wire_decoded *b)
{
    if (a->count != b->count)
        return "count";
    if (a->batch_id != b->batch_id)
        return "batch_id";
    if (strcmp(a->agent_id, b->agent_id) != 0)
        return "agent_id";
    if (strcmp(a->host, b->host) != 0)
        return "host";
    for (size_t i = 0; i < a->count; i++) {
        struct sw_event x, y;
        sw_wire_decoded_event(a, i, &x);
        sw_wire_decoded_event(b, i, &y);
        if (x.source != y.source || x.platform != y.platform || x.stage != y.stage ||
            x.cert != y.cert)
            return "enums";
        if (x.ts_us != y.ts_us)
            return "ts_us";
        if (x.has_offset != y.has_offset || (x.has_offset && x.offset != y.offset))
            return "offset";
        if (x.line_hash != y.line_hash)
            return "line_hash";
#define X(f) if (!wire_cmp_slice(x.f, y.f)) return #f;
        SW_EVENT_STR_FIELDS(X)
#undef X
        if (!wire_cmp_slice(x.file, y.file))
            return "file";
        if (!wire_cmp_slice(x.host, y.host))
            return "event host";
    }
    return NULL;
}

/*
 * 0 when every slice of an in-place decoded batch points into its input
 * [p, p + n) (an event's host may be the batch's own, d->host); else the
 * first that does not.
 */
static inline const char *
wire_check_bounds(const struct sw_wire_decoded *d, const void *p, size_t n)
{
    const char *lo = p, *hi = lo + n;
    for (size_t i = 0; i < d->count; i++) {
        const struct sw_event *e = &d->events[i];
#define X(f) if (e->f.ptr && (e->f.ptr < lo || e->f.ptr + e->f.len > hi)) return #f;
        SW_EVENT_STR_FIELDS(X)
        X(file)
#undef X
        if (e->host.ptr != d->host &&
            (!e->host.ptr || e->host.ptr < lo || e->host.ptr + e->host.len > hi))
            return "event host";
    }
    return NULL;
}

#endif
