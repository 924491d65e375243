/*
 * sw_wire.c - event batches on the wire.
 */
#include "sw_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scepwatch.pb-c.h"
#include "sw_arena.h"

/* sw_event field -> generated field (protoc-c renames C++ keywords). */
#define WIRE_FIELDS(X) \
    X(device, device) X(profile, profile) X(txn, txn) X(thumbprint, thumbprint) \
    X(serial, serial) X(request_id, request_id) X(subject, subject) \
    X(template, template_) X(requester, requester) X(detail, detail)

/* ---- builder ---- */

struct sw_wire_builder {
    struct sw_arena arena;      /* reset keeps its blocks: the next batch reuses them */
    Scepwatch__Event **events;
    size_t n, cap;
    char **files;
    size_t nfiles, files_cap;
    char **devices;     /* Batch.devices, filled by pack_batch */
    size_t ndevices, devices_cap;
    int compacted;      /* pack_batch rewrote the events to their batch form */
    size_t bytes;
};

struct sw_wire_builder *
sw_wire_builder_new(void)
{
    return calloc(1, sizeof(struct sw_wire_builder));
}

void
sw_wire_builder_reset(struct sw_wire_builder *b)
{
    sw_arena_reset(&b->arena);
    b->n = 0;
    b->nfiles = 0;
    b->ndevices = 0;
    b->compacted = 0;
    b->bytes = 0;
}

void
sw_wire_builder_free(struct sw_wire_builder *b)
{
    if (!b)
        return;
    sw_arena_release(&b->arena);
    free(b->events);
    free(b->files);
    free(b->devices);
    free(b);
}

static char *
dup_slice(struct sw_wire_builder *b, struct sw_slice s)
{
    if (!s.len)
        return NULL;
    char *p = sw_arena_get(&b->arena, s.len + 1);
    if (!p)
        return NULL;
    memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    b->bytes += s.len + 2;
    return p;
}

static int
intern_file(struct sw_wire_builder *b, struct sw_slice f, uint32_t *idx)
{
    /* files repeat in long runs: check the last one first */
    for (size_t i = b->nfiles; i-- > 0;)
        if (strlen(b->files[i]) == f.len && memcmp(b->files[i], f.ptr, f.len) == 0) {
            *idx = (uint32_t)i;
            return 0;
        }
    if (b->nfiles == b->files_cap) {
        size_t cap = b->files_cap ? b->files_cap * 2 : 8;
        char **nf = realloc(b->files, cap * sizeof *nf);
        if (!nf)
            return -1;
        b->files = nf;
        b->files_cap = cap;
    }
    char *s = dup_slice(b, f);
    if (!s)
        return -1;
    b->files[b->nfiles] = s;
    *idx = (uint32_t)b->nfiles++;
    return 0;
}

sw_err
sw_wire_builder_add(struct sw_wire_builder *b, const struct sw_event *ev)
{
    Scepwatch__Event *pe;

    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        Scepwatch__Event **ne = realloc(b->events, cap * sizeof *ne);
        if (!ne)
            return SW_ENOMEM;
        b->events = ne;
        b->cap = cap;
    }
    pe = sw_arena_get(&b->arena, sizeof *pe);
    if (!pe)
        return SW_ENOMEM;
    scepwatch__event__init(pe);
    pe->has_source = pe->has_platform = pe->has_ts_us = pe->has_stage = 1;
    pe->source = (Scepwatch__Source)ev->source;
    pe->platform = (Scepwatch__Platform)ev->platform;
    pe->ts_us = ev->ts_us;
    pe->stage = (Scepwatch__Stage)ev->stage;
    if (ev->cert != SW_CERT_NONE) {
        pe->has_cert = 1;
        pe->cert = (Scepwatch__Cert)ev->cert;
    }
#define X(f, pf) if (ev->f.len && !(pe->pf = dup_slice(b, ev->f))) return SW_ENOMEM;
    WIRE_FIELDS(X)
#undef X
    if (ev->file.len) {
        uint32_t idx;
        if (intern_file(b, ev->file, &idx) != 0)
            return SW_ENOMEM;
        pe->has_file_idx = 1;
        pe->file_idx = idx;
    }
    if (ev->has_offset) {
        pe->has_offset = 1;
        pe->offset = ev->offset;
    }
    pe->has_line_hash = 1;
    pe->line_hash = ev->line_hash;
    if (ev->host.len && !(pe->host = dup_slice(b, ev->host)))
        return SW_ENOMEM;
    b->events[b->n++] = pe;
    b->bytes += 24;
    return SW_OK;
}

size_t
sw_wire_builder_count(const struct sw_wire_builder *b)
{
    return b->n;
}

size_t
sw_wire_builder_bytes(const struct sw_wire_builder *b)
{
    return b->bytes;
}

static sw_err
pack(const ProtobufCMessage *m, struct sw_buf *out)
{
    size_t sz = protobuf_c_message_get_packed_size(m);
    sw_buf_reset(out);
    if (sw_buf_reserve(out, sz) != SW_OK)
        return SW_ENOMEM;
    out->len = protobuf_c_message_pack(m, (uint8_t *)out->data);
    return SW_OK;
}

/*
 * The batch form of the events: devices by index, times and offsets as
 * differences from the previous event (see the proto).  Done once: a
 * resend packs the same events again.
 */
static sw_err
compact(struct sw_wire_builder *b)
{
    int64_t prev_ts = 0;
    uint64_t prev_off = 0;

    if (b->compacted)
        return SW_OK;
    for (size_t i = 0; i < b->n; i++) {
        Scepwatch__Event *pe = b->events[i];
        if (pe->device) {
            size_t k = b->ndevices;
            /* one device's events come in runs: the last one first */
            while (k > 0 && strcmp(b->devices[k - 1], pe->device) != 0)
                k--;
            if (k == 0) {
                if (b->ndevices == b->devices_cap) {
                    size_t cap = b->devices_cap ? b->devices_cap * 2 : 8;
                    char **nd = realloc(b->devices, cap * sizeof *nd);
                    if (!nd)
                        return SW_ENOMEM;
                    b->devices = nd;
                    b->devices_cap = cap;
                }
                b->devices[b->ndevices++] = pe->device;
                k = b->ndevices;
            }
            pe->has_device_idx = 1;
            pe->device_idx = (uint32_t)k;
            pe->device = NULL;
        }
        pe->has_ts_delta_us = 1;
        pe->ts_delta_us = (int64_t)((uint64_t)pe->ts_us - (uint64_t)prev_ts);
        prev_ts = pe->ts_us;
        pe->has_ts_us = 0;
        if (pe->has_offset) {
            pe->has_offset_delta = 1;
            pe->offset_delta = (int64_t)(pe->offset - prev_off);
            prev_off = pe->offset;
            pe->has_offset = 0;
        }
    }
    b->compacted = 1;
    return SW_OK;
}

sw_err
sw_wire_builder_pack_batch(struct sw_wire_builder *b, const char *agent_id, const char *host,
                           uint64_t batch_id, struct sw_buf *out)
{
    Scepwatch__Batch pb = SCEPWATCH__BATCH__INIT;
    if (compact(b) != SW_OK)
        return SW_ENOMEM;
    pb.n_devices = b->ndevices;
    pb.devices = b->devices;
    pb.agent_id = (char *)agent_id;
    pb.host = (char *)host;
    pb.has_batch_id = 1;
    pb.batch_id = batch_id;
    pb.n_files = b->nfiles;
    pb.files = b->files;
    pb.n_events = b->n;
    pb.events = b->events;
    return pack(&pb.base, out);
}

sw_err
sw_wire_builder_pack_list(struct sw_wire_builder *b, const void *cursor, size_t cursor_len,
                          struct sw_buf *out)
{
    Scepwatch__ListEventsReply r = SCEPWATCH__LIST_EVENTS_REPLY__INIT;
    /* list replies carry the file name itself */
    for (size_t i = 0; i < b->n; i++) {
        Scepwatch__Event *pe = b->events[i];
        if (pe->has_file_idx) {
            pe->file = b->files[pe->file_idx];
            pe->has_file_idx = 0;
        }
    }
    r.n_events = b->n;
    r.events = b->events;
    if (cursor_len) {
        r.has_next_cursor = 1;
        r.next_cursor.data = (uint8_t *)cursor;
        r.next_cursor.len = cursor_len;
    }
    return pack(&r.base, out);
}

/* ---- decoding ---- */

static int
str_too_long(struct sw_slice s, const char *name, char *why, size_t cap)
{
    if (s.len > SW_WIRE_MAX_FIELD) {
        snprintf(why, cap, "field %s longer than %d bytes", name, SW_WIRE_MAX_FIELD);
        return 1;
    }
    return 0;
}

static int
check_str(const char *s, const char *name, char *why, size_t cap)
{
    return str_too_long(sw_slice_cstr(s), name, why, cap) ? -1 : 0;
}

static int
check_event(const Scepwatch__Event *e, size_t nfiles, size_t i, char *why, size_t cap)
{
    if (!e->has_stage || (int)e->stage <= 0 || (int)e->stage >= SW_STAGE_COUNT) {
        snprintf(why, cap, "event %zu: missing or unknown stage", i);
        return -1;
    }
    if (!e->has_source || (int)e->source <= 0 || (int)e->source >= SW_SOURCE_COUNT) {
        snprintf(why, cap, "event %zu: missing or unknown source", i);
        return -1;
    }
    if (!e->has_platform || (int)e->platform <= 0 || (int)e->platform >= SW_PLATFORM_COUNT) {
        snprintf(why, cap, "event %zu: missing or unknown platform", i);
        return -1;
    }
    if (e->has_cert && ((int)e->cert < 0 || (int)e->cert >= SW_CERT_COUNT)) {
        snprintf(why, cap, "event %zu: unknown cert", i);
        return -1;
    }
    if (!e->has_ts_us) {
        snprintf(why, cap, "event %zu: missing ts", i);
        return -1;
    }
    /* years 1970..9999 */
    if (e->ts_us < 0 || e->ts_us > (int64_t)253402300799 * 1000000) {
        snprintf(why, cap, "event %zu: ts out of range", i);
        return -1;
    }
    if (e->has_file_idx && e->file_idx >= nfiles) {
        snprintf(why, cap, "event %zu: file index out of range", i);
        return -1;
    }
#define X(f, pf) if (check_str(e->pf, #f, why, cap)) return -1;
    WIRE_FIELDS(X) X(host, host) X(file, file)
#undef X
    return 0;
}

/*
 * Turns a batch's compact fields (device_idx, ts_delta_us, offset_delta)
 * back into device, ts_us and offset, refusing what cannot be resolved:
 * an index out of range, a field given both ways, a sum that overflows.
 */
static int
resolve_batch(Scepwatch__Batch *bt, char *why, size_t cap)
{
    int64_t prev_ts = 0;
    uint64_t prev_off = 0;

    for (size_t i = 0; i < bt->n_devices; i++)
        if (check_str(bt->devices[i], "devices", why, cap))
            return -1;
    for (size_t i = 0; i < bt->n_events; i++) {
        Scepwatch__Event *e = bt->events[i];
        if (e->has_device_idx) {
            if (e->device || e->device_idx == 0 || e->device_idx > bt->n_devices) {
                snprintf(why, cap, "event %zu: bad device index", i);
                return -1;
            }
            e->device = bt->devices[e->device_idx - 1];
        }
        if (e->has_ts_delta_us) {
            int64_t t;
            if (e->has_ts_us || __builtin_add_overflow(prev_ts, e->ts_delta_us, &t)) {
                snprintf(why, cap, "event %zu: bad time difference", i);
                return -1;
            }
            e->has_ts_us = 1;
            e->ts_us = t;
        }
        if (e->has_ts_us)
            prev_ts = e->ts_us;
        if (e->has_offset_delta) {
            uint64_t o = prev_off + (uint64_t)e->offset_delta;
            if (e->has_offset || (e->offset_delta < 0 && (uint64_t)-(e->offset_delta + 1) >= prev_off) ||
                (e->offset_delta > 0 && o < prev_off)) {
                snprintf(why, cap, "event %zu: bad offset difference", i);
                return -1;
            }
            e->has_offset = 1;
            e->offset = o;
        }
        if (e->has_offset)
            prev_off = e->offset;
    }
    return 0;
}

/*
 * out emptied and given its arena: the caller's, reset, or one of its own;
 * bounded by max_mem.  NULL when out of memory.
 */
static struct sw_arena *
decoded_begin(struct sw_wire_decoded *out, struct sw_arena *reuse, size_t max_mem)
{
    struct sw_arena *a = reuse ? reuse : calloc(1, sizeof *a);

    memset(out, 0, sizeof *out);
    if (!a)
        return NULL;
    sw_arena_reset(a);
    a->limit = max_mem;
    out->arena = a;
    out->own_arena = !reuse;
    return a;
}

static sw_err
decode(const void *p, size_t n, size_t max_mem, int list, struct sw_arena *reuse,
       struct sw_wire_decoded *out, char *why, size_t cap)
{
    struct sw_arena *a = decoded_begin(out, reuse, max_mem);
    Scepwatch__Event **events;
    size_t nev, nfiles = 0;

    if (!a)
        return SW_ENOMEM;
    out->is_list = list;
    ProtobufCAllocator alloc = sw_arena_allocator(a);
    if (list) {
        Scepwatch__ListEventsReply *r = scepwatch__list_events_reply__unpack(&alloc, n, p);
        if (!r)
            goto fail;
        out->msg = r;
        events = r->events;
        nev = r->n_events;
        if (r->has_next_cursor) {
            out->cursor = r->next_cursor.data;
            out->cursor_len = r->next_cursor.len;
        }
    } else {
        Scepwatch__Batch *bt = scepwatch__batch__unpack(&alloc, n, p);
        if (!bt)
            goto fail;
        out->msg = bt;
        events = bt->events;
        nev = bt->n_events;
        nfiles = bt->n_files;
        out->batch_id = bt->batch_id;
        out->agent_id = bt->agent_id ? bt->agent_id : "";
        out->host = bt->host ? bt->host : "";
        if (check_str(bt->agent_id, "agent_id", why, cap) || check_str(bt->host, "host", why, cap)) {
            sw_wire_decoded_fini(out);
            return SW_EPROTO;
        }
        for (size_t i = 0; i < nfiles; i++)
            if (check_str(bt->files[i], "files", why, cap)) {
                sw_wire_decoded_fini(out);
                return SW_EPROTO;
            }
        if (resolve_batch(bt, why, cap) != 0) {
            sw_wire_decoded_fini(out);
            return SW_EPROTO;
        }
    }
    for (size_t i = 0; i < nev; i++)
        if (check_event(events[i], nfiles, i, why, cap) != 0) {
            sw_wire_decoded_fini(out);
            return SW_EPROTO;
        }
    out->count = nev;
    return SW_OK;
fail:
    {
        int over = a->limit && a->total + 4096 >= a->limit;
        sw_wire_decoded_fini(out);
        if (over) {
            snprintf(why, cap, "message expands beyond %zu bytes", max_mem);
            return SW_ETOOBIG;
        }
        snprintf(why, cap, "malformed protobuf message");
        return SW_EPROTO;
    }
}

sw_err
sw_wire_decode_batch_ref(const void *p, size_t n, size_t max_mem, struct sw_wire_decoded *out,
                         char *why, size_t cap)
{
    return decode(p, n, max_mem, 0, NULL, out, why, cap);
}

/*
 * ---- the batch decoder the aggregator ingests with ----
 *
 * protobuf-c's unpacker copies every string of every event into memory of
 * its own (a struct and a dozen allocations an event), and the store then
 * wants slices of them.  This one reads a Batch in place: each event
 * becomes an sw_event whose slices point into the caller's bytes, with no
 * allocation but the event array.  It accepts and refuses what the
 * generated unpacker followed by the same checks does (test_wire and
 * fuzz_wire hold it to sw_wire_decode_batch_ref):
 *   - wire types 0, 1, 2 and 5; groups (3, 4) and 6, 7 are malformed;
 *   - a varint of at most 10 bytes, a tag or a length of at most 5;
 *   - a one-byte tag of field number 0 is malformed (a longer encoding of
 *     it passes as an unknown field: protobuf-c tests the first byte);
 *   - a known field with another wire type than its own is malformed;
 *     unknown fields are skipped;
 *   - a scalar or string given twice: the last one counts;
 *   - a string ends at its first NUL byte (as a C string copy of it does);
 *   - a refusal gives the reference's reason, chosen in its order (see
 *     struct refusal).
 * The memory bound counts what this decoder allocates (the event array,
 * the lists, the batch's strings), not protobuf-c's structures, so the two
 * differ on which batches are too large; a batch past the bound is still
 * read and checked, and refused for size only when it is valid.
 */

struct pb_rd {
    const uint8_t *p, *end;
};

/* A varint of at most max bytes (protobuf-c's limits: 10, or 5 for tags
 * and lengths); 0 when it does not end within them or the input. */
static inline int
rd_varint(struct pb_rd *r, int max, uint64_t *v)
{
    const uint8_t *p = r->p;
    uint64_t x = 0;

    if (p < r->end && !(*p & 0x80)) {       /* the common case: one byte */
        *v = *p;
        r->p = p + 1;
        return 1;
    }
    for (int i = 0; i < max && p < r->end; i++) {
        uint8_t b = *p++;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            r->p = p;
            return 1;
        }
    }
    return 0;
}

/* A field's header; 0 at a malformed one (see field number 0 above). */
static inline int
rd_tag(struct pb_rd *r, uint32_t *field, int *wire)
{
    uint64_t t;
    if (r->p < r->end && (*r->p & 0xf8) == 0)
        return 0;
    if (!rd_varint(r, 5, &t))
        return 0;
    *field = (uint32_t)(t >> 3);
    *wire = (int)(t & 7);
    return 1;
}

/* A length-delimited field's bytes; 0 when they run past the input. */
static inline int
rd_bytes(struct pb_rd *r, const uint8_t **b, size_t *len)
{
    uint64_t l;
    if (!rd_varint(r, 5, &l) || l > (uint64_t)(r->end - r->p))
        return 0;
    *b = r->p;
    *len = (size_t)l;
    r->p += l;
    return 1;
}

/* Skips a field of an unknown number; 0 at a malformed one. */
static int
rd_skip(struct pb_rd *r, int wire)
{
    uint64_t v;
    const uint8_t *b;
    size_t len;

    switch (wire) {
    case 0:
        return rd_varint(r, 10, &v);
    case 1:
    case 5: {
        size_t w = wire == 1 ? 8 : 4;
        if ((size_t)(r->end - r->p) < w)
            return 0;
        r->p += w;
        return 1;
    }
    case 2:
        return rd_bytes(r, &b, &len);
    default:
        return 0;
    }
}

/* A string field as a slice that ends at its first NUL. */
static inline int
rd_str(struct pb_rd *r, struct sw_slice *s)
{
    const uint8_t *b;
    size_t len;
    if (!rd_bytes(r, &b, &len))
        return 0;
    const uint8_t *z = len ? memchr(b, 0, len) : NULL;
    s->ptr = (const char *)b;
    s->len = z ? (size_t)(z - b) : len;
    return 1;
}

static inline int64_t
unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* What an event carries besides its sw_event: presence, and the batch form. */
struct ev_extra {
    int32_t stage, source, platform, cert;
    unsigned has_stage : 1, has_source : 1, has_platform : 1, has_cert : 1, has_ts : 1,
        has_file_idx : 1, has_dev_idx : 1, has_ts_delta : 1, has_off_delta : 1;
    uint32_t file_idx, dev_idx;
    int64_t ts_delta, off_delta;
    struct sw_slice host;       /* the event's own host and file, when given */
    struct sw_slice file;
};

/* One Event message into ev and x; 0 when malformed. */
static int
read_event(const uint8_t *b, size_t len, struct sw_event *ev, struct ev_extra *x)
{
    struct pb_rd r = { b, b + len };

    while (r.p < r.end) {
        uint32_t field;
        int wire;
        uint64_t v;
        struct sw_slice *str = NULL;

        if (!rd_tag(&r, &field, &wire))
            return 0;
        switch (field) {
        case 3: str = &ev->device; break;
        case 7: str = &ev->profile; break;
        case 8: str = &ev->txn; break;
        case 9: str = &ev->thumbprint; break;
        case 10: str = &ev->serial; break;
        case 11: str = &ev->request_id; break;
        case 12: str = &ev->subject; break;
        case 13: str = &ev->template; break;
        case 14: str = &ev->requester; break;
        case 15: str = &ev->detail; break;
        case 19: str = &x->host; break;
        case 20: str = &x->file; break;
        case 18:                                /* line_hash, fixed32 */
            if (wire != 5 || r.end - r.p < 4)
                return 0;
            ev->line_hash = (uint32_t)r.p[0] | (uint32_t)r.p[1] << 8 |
                            (uint32_t)r.p[2] << 16 | (uint32_t)r.p[3] << 24;
            r.p += 4;
            continue;
        case 1: case 2: case 4: case 5: case 6: case 16: case 17: case 21: case 22: case 23:
            if (wire != 0 || !rd_varint(&r, 10, &v))
                return 0;
            switch (field) {
            case 1: x->source = (int32_t)(uint32_t)v; x->has_source = 1; break;
            case 2: x->platform = (int32_t)(uint32_t)v; x->has_platform = 1; break;
            case 4: ev->ts_us = unzigzag(v); x->has_ts = 1; break;
            case 5: x->stage = (int32_t)(uint32_t)v; x->has_stage = 1; break;
            case 6: x->cert = (int32_t)(uint32_t)v; x->has_cert = 1; break;
            case 16: x->file_idx = (uint32_t)v; x->has_file_idx = 1; break;
            case 17: ev->offset = v; ev->has_offset = 1; break;
            case 21: x->dev_idx = (uint32_t)v; x->has_dev_idx = 1; break;
            case 22: x->ts_delta = unzigzag(v); x->has_ts_delta = 1; break;
            case 23: x->off_delta = unzigzag(v); x->has_off_delta = 1; break;
            }
            continue;
        default:
            if (!rd_skip(&r, wire))
                return 0;
            continue;
        }
        if (wire != 2 || !rd_str(&r, str))
            return 0;
    }
    return 1;
}

/* The batch form back to a whole event, as resolve_batch; 0 with why set when it cannot be. */
static int
resolve_event(struct sw_event *ev, struct ev_extra *x, size_t i, const struct sw_slice *devs,
              size_t ndevs, int64_t *prev_ts, uint64_t *prev_off, char *why, size_t cap)
{
    if (x->has_dev_idx) {
        if (ev->device.ptr || x->dev_idx == 0 || x->dev_idx > ndevs) {
            snprintf(why, cap, "event %zu: bad device index", i);
            return 0;
        }
        ev->device = devs[x->dev_idx - 1];
    }
    if (x->has_ts_delta) {
        int64_t t;
        if (x->has_ts || __builtin_add_overflow(*prev_ts, x->ts_delta, &t)) {
            snprintf(why, cap, "event %zu: bad time difference", i);
            return 0;
        }
        x->has_ts = 1;
        ev->ts_us = t;
    }
    if (x->has_ts)
        *prev_ts = ev->ts_us;
    if (x->has_off_delta) {
        uint64_t o = *prev_off + (uint64_t)x->off_delta;
        if (ev->has_offset ||
            (x->off_delta < 0 && (uint64_t)-(x->off_delta + 1) >= *prev_off) ||
            (x->off_delta > 0 && o < *prev_off)) {
            snprintf(why, cap, "event %zu: bad offset difference", i);
            return 0;
        }
        ev->has_offset = 1;
        ev->offset = o;
    }
    if (ev->has_offset)
        *prev_off = ev->offset;
    return 1;
}

/* check_event's checks, then the event's final form; 0 with why set when refused. */
static int
finish_event(struct sw_event *ev, const struct ev_extra *x, size_t i, size_t nfiles,
             const struct sw_slice *files, struct sw_slice host, char *why, size_t cap)
{
    if (!x->has_stage || x->stage <= 0 || x->stage >= SW_STAGE_COUNT) {
        snprintf(why, cap, "event %zu: missing or unknown stage", i);
        return 0;
    }
    if (!x->has_source || x->source <= 0 || x->source >= SW_SOURCE_COUNT) {
        snprintf(why, cap, "event %zu: missing or unknown source", i);
        return 0;
    }
    if (!x->has_platform || x->platform <= 0 || x->platform >= SW_PLATFORM_COUNT) {
        snprintf(why, cap, "event %zu: missing or unknown platform", i);
        return 0;
    }
    if (x->has_cert && (x->cert < 0 || x->cert >= SW_CERT_COUNT)) {
        snprintf(why, cap, "event %zu: unknown cert", i);
        return 0;
    }
    if (!x->has_ts) {
        snprintf(why, cap, "event %zu: missing ts", i);
        return 0;
    }
    if (ev->ts_us < 0 || ev->ts_us > (int64_t)253402300799 * 1000000) {
        snprintf(why, cap, "event %zu: ts out of range", i);
        return 0;
    }
    if (x->has_file_idx && x->file_idx >= nfiles) {
        snprintf(why, cap, "event %zu: file index out of range", i);
        return 0;
    }
#define X(f, pf) if (str_too_long(ev->f, #f, why, cap)) return 0;
    WIRE_FIELDS(X)
#undef X
    if (str_too_long(x->host, "host", why, cap) || str_too_long(x->file, "file", why, cap))
        return 0;
    ev->source = (enum sw_source)x->source;
    ev->platform = (enum sw_platform)x->platform;
    ev->stage = (enum sw_stage)x->stage;
    ev->cert = x->has_cert ? (enum sw_cert)x->cert : SW_CERT_NONE;
    if (x->file.ptr)
        ev->file = x->file;
    else if (x->has_file_idx)
        ev->file = files[x->file_idx];
    ev->host = x->host.ptr ? x->host : host;
    return 1;
}

/* Bytes from the arena within its limit; *e says why not. */
static void *
take(struct sw_arena *a, size_t n, sw_err *e)
{
    if (!sw_arena_fits(a, n)) {
        *e = SW_ETOOBIG;
        return NULL;
    }
    void *p = sw_arena_get(a, n);
    if (!p)
        *e = SW_ENOMEM;
    return p;
}

/* n elements of size sz from the arena; SW_ETOOBIG when n * sz does not fit a size_t. */
static void *
take_array(struct sw_arena *a, size_t n, size_t sz, sw_err *e)
{
    if (n > SIZE_MAX / sz) {
        *e = SW_ETOOBIG;
        return NULL;
    }
    return take(a, n * sz, e);
}

/* A NUL-terminated copy of s in the arena. */
static const char *
take_cstr(struct sw_arena *a, struct sw_slice s, sw_err *e)
{
    char *c = take(a, s.len + 1, e);
    if (c) {
        if (s.len)
            memcpy(c, s.ptr, s.len);
        c[s.len] = '\0';
    }
    return c;
}

/*
 * The refusal the reference gives: a malformed message first (protobuf-c
 * unpacks everything before anything is checked), then the batch's own
 * strings, then the first event that cannot be resolved (resolve_batch),
 * then the first that fails check_event.  The events are read in one pass;
 * the first refusal of each kind is kept until the pass shows the message
 * well-formed.
 */
struct refusal {
    int resolve, check;         /* one of each kind kept */
    char why_resolve[160], why_check[160];
};

static sw_err
decode_batch_fast(const void *p, size_t n, size_t max_mem, struct sw_arena *reuse,
                  struct sw_wire_decoded *out, char *why, size_t cap)
{
    struct sw_arena *a = decoded_begin(out, reuse, max_mem);
    struct pb_rd r = { p, (const uint8_t *)p + n };
    struct sw_slice agent = SW_SLICE_NONE, host = SW_SLICE_NONE;
    struct sw_slice *files = NULL, *devs = NULL;
    struct sw_event *evs = NULL, one;
    struct refusal ref = { 0, 0, "", "" };
    size_t nev = 0, nfiles = 0, ndevs = 0;
    int too_big = 0;
    sw_err e = SW_EPROTO;

    if (!a)
        return SW_ENOMEM;
    out->host = out->agent_id = "";

    /* first pass: the batch's own fields, and how many of each list */
    while (r.p < r.end) {
        uint32_t field;
        int wire;
        uint64_t v;

        if (!rd_tag(&r, &field, &wire))
            goto malformed;
        if (field >= 1 && field <= 6 && wire != (field == 3 ? 0 : 2))
            goto malformed;
        switch (field) {
        case 1: if (!rd_str(&r, &agent)) goto malformed; break;
        case 2: if (!rd_str(&r, &host)) goto malformed; break;
        case 3:
            if (!rd_varint(&r, 10, &v))
                goto malformed;
            out->batch_id = v;
            break;
        case 4: case 5: case 6: {
            const uint8_t *b;
            size_t len;
            if (!rd_bytes(&r, &b, &len))
                goto malformed;
            if (field == 4)
                nfiles++;
            else if (field == 5)
                nev++;
            else
                ndevs++;
            break;
        }
        default:
            if (!rd_skip(&r, wire))
                goto malformed;
        }
    }
    /* the lists, then the events, read where they lie */
    if ((nfiles && !(files = take_array(a, nfiles, sizeof *files, &e))) ||
        (ndevs && !(devs = take_array(a, ndevs, sizeof *devs, &e))) ||
        (agent.ptr && !(out->agent_id = take_cstr(a, agent, &e))) ||
        (host.ptr && !(out->host = take_cstr(a, host, &e))))
        goto fail;
    /*
     * More events than the bound holds: each is still read and checked
     * (into one of its own), so that a batch refused for what it says is
     * refused as such, and only a valid one as too large.
     */
    if (nev && !(evs = take_array(a, nev, sizeof *evs, &e))) {
        if (e != SW_ETOOBIG)
            goto fail;
        too_big = 1;
    }
    {
        size_t fi = 0, di = 0;
        for (r.p = p; r.p < r.end;) {
            uint32_t field;
            int wire;
            struct sw_slice s;
            rd_tag(&r, &field, &wire);
            if (field == 4 || field == 6) {
                rd_str(&r, &s);
                if (field == 4)
                    files[fi++] = s;
                else
                    devs[di++] = s;
            } else {
                rd_skip(&r, wire);
            }
        }
    }
    {
        struct sw_slice hs = { out->host, host.len };
        int64_t prev_ts = 0;
        uint64_t prev_off = 0;
        size_t i = 0;
        for (r.p = p; r.p < r.end;) {
            uint32_t field;
            int wire;
            const uint8_t *b;
            size_t len;
            struct ev_extra x;
            rd_tag(&r, &field, &wire);
            if (field != 5) {
                rd_skip(&r, wire);
                continue;
            }
            rd_bytes(&r, &b, &len);
            struct sw_event *ev = evs ? &evs[i] : &one;
            memset(ev, 0, sizeof *ev);
            memset(&x, 0, sizeof x);
            if (!read_event(b, len, ev, &x))
                goto malformed;
            /* resolving goes on past a failed check (its refusal comes first);
             * past a failed resolution, only the form of the rest counts */
            if (!ref.resolve) {
                if (!resolve_event(ev, &x, i, devs, ndevs, &prev_ts, &prev_off,
                                   ref.why_resolve, sizeof ref.why_resolve))
                    ref.resolve = 1;
                else if (!ref.check && !finish_event(ev, &x, i, nfiles, files, hs,
                                                     ref.why_check, sizeof ref.why_check))
                    ref.check = 1;
            }
            i++;
        }
    }
    if (str_too_long(agent, "agent_id", why, cap) || str_too_long(host, "host", why, cap))
        goto refused;
    for (size_t i = 0; i < nfiles; i++)
        if (str_too_long(files[i], "files", why, cap))
            goto refused;
    for (size_t i = 0; i < ndevs; i++)
        if (str_too_long(devs[i], "devices", why, cap))
            goto refused;
    if (ref.resolve || ref.check) {
        snprintf(why, cap, "%s", ref.resolve ? ref.why_resolve : ref.why_check);
        goto refused;
    }
    if (too_big) {
        e = SW_ETOOBIG;
        goto fail;
    }
    out->events = evs;
    out->count = nev;
    return SW_OK;
malformed:
    snprintf(why, cap, "malformed protobuf message");
refused:
    e = SW_EPROTO;
fail:
    if (e == SW_ETOOBIG)
        snprintf(why, cap, "message expands beyond %zu bytes", max_mem);
    else if (e == SW_ENOMEM)
        snprintf(why, cap, "out of memory");
    sw_wire_decoded_fini(out);
    return e;
}

sw_err
sw_wire_decode_batch(const void *p, size_t n, size_t max_mem, struct sw_wire_decoded *out,
                     char *why, size_t cap)
{
    return decode_batch_fast(p, n, max_mem, NULL, out, why, cap);
}

sw_err
sw_wire_decode_batch_reuse(struct sw_arena *a, const void *p, size_t n, size_t max_mem,
                           struct sw_wire_decoded *out, char *why, size_t cap)
{
    return decode_batch_fast(p, n, max_mem, a, out, why, cap);
}

sw_err
sw_wire_decode_list(const void *p, size_t n, size_t max_mem, struct sw_wire_decoded *out,
                    char *why, size_t cap)
{
    return decode(p, n, max_mem, 1, NULL, out, why, cap);
}

sw_err
sw_wire_decode_list_reuse(struct sw_arena *a, const void *p, size_t n, size_t max_mem,
                          struct sw_wire_decoded *out, char *why, size_t cap)
{
    return decode(p, n, max_mem, 1, a, out, why, cap);
}

void
sw_wire_decoded_fini(struct sw_wire_decoded *d)
{
    if (d->arena && d->own_arena) {
        sw_arena_release(d->arena);
        free(d->arena);
    } else if (d->arena) {
        sw_arena_reset(d->arena);
    }
    memset(d, 0, sizeof *d);
}

static struct sw_slice
sl(const char *s)
{
    return s ? sw_slice_cstr(s) : SW_SLICE_NONE;
}

void
sw_wire_decoded_event(const struct sw_wire_decoded *d, size_t i, struct sw_event *ev)
{
    const Scepwatch__Event *e;
    const char *const *files = NULL;

    if (d->events) {
        *ev = d->events[i];
        return;
    }
    if (d->is_list) {
        e = ((Scepwatch__ListEventsReply *)d->msg)->events[i];
    } else {
        Scepwatch__Batch *b = d->msg;
        e = b->events[i];
        files = (const char *const *)b->files;
    }
    memset(ev, 0, sizeof *ev);
    ev->source = (enum sw_source)e->source;
    ev->platform = (enum sw_platform)e->platform;
    ev->stage = (enum sw_stage)e->stage;
    ev->cert = e->has_cert ? (enum sw_cert)e->cert : SW_CERT_NONE;
    ev->ts_us = e->ts_us;
#define X(f, pf) ev->f = sl(e->pf);
    WIRE_FIELDS(X)
#undef X
    if (e->file)
        ev->file = sl(e->file);
    else if (files && e->has_file_idx)
        ev->file = sl(files[e->file_idx]);
    ev->host = e->host ? sl(e->host) : (!d->is_list ? sl(d->host) : SW_SLICE_NONE);
    ev->has_offset = e->has_offset;
    ev->offset = e->offset;
    ev->line_hash = e->line_hash;
}

/* A base-128 varint at *p; 0 when it runs past end or past 64 bits. */
static int
get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift <= 63; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 1;
    }
    return 0;
}

int
sw_wire_find_bytes(const void *msg, size_t n, uint32_t field, const uint8_t **out,
                   size_t *out_len)
{
    const uint8_t *p = msg, *end = p + n;
    int found = 0;

    while (p < end) {
        uint64_t tag, v;
        if (!get_varint(&p, end, &tag))
            return -1;
        switch (tag & 7) {
        case 0:                                 /* varint */
            if (!get_varint(&p, end, &v))
                return -1;
            break;
        case 1:                                 /* fixed 64 */
        case 5:                                 /* fixed 32 */
            v = (tag & 7) == 1 ? 8 : 4;
            if (v > (uint64_t)(end - p))
                return -1;
            p += v;
            break;
        case 2:                                 /* length-delimited */
            if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return -1;
            if ((tag >> 3) == field) {
                *out = p;
                *out_len = (size_t)v;
                found = 1;
            }
            p += v;
            break;
        default:
            return -1;
        }
    }
    return found;
}
