/*
 * test_wire.c - event batches on the wire: round trip of every field,
 * validation of hostile batches, the decode memory bound, event identity
 * (what makes a resend harmless), and the in-place batch decoder held to
 * protobuf-c's on valid, truncated, mutated and hand-made batches.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scepwatch.pb-c.h"
#include "sw_arena.h"
#include "sw_wire.h"
#include "wire_cmp.h"

static struct sw_event
full_event(void)
{
    struct sw_event ev;
    memset(&ev, 0, sizeof ev);
    ev.source = SW_SOURCE_WINDOWS_EVENT_XML;
    ev.platform = SW_PLATFORM_WINDOWS;
    ev.stage = SW_STAGE_INSTALLED;
    ev.cert = SW_CERT_SCEP;
    ev.ts_us = 1710428532123456;
    ev.device = sw_slice_cstr("DESKTOP-1.contoso.com");
    ev.profile = sw_slice_cstr("6b3a1c2d-0000-4000-8000-000000000001");
    ev.txn = sw_slice_cstr("ABCDEF");
    ev.thumbprint = sw_slice_cstr("3c9a5e71");
    ev.serial = sw_slice_cstr("1a2b");
    ev.request_id = sw_slice_cstr("4711");
    ev.subject = sw_slice_cstr("CN=jdoe, O=\"Contoso, Inc\"");
    ev.template = sw_slice_cstr("IntuneSCEP");
    ev.requester = sw_slice_cstr("CONTOSO\\svc-ndes");
    ev.detail = sw_slice_cstr("0x80094001");
    ev.file = sw_slice_cstr("/logs/a.xml");
    ev.offset = 1234;
    ev.has_offset = 1;
    ev.line_hash = 0xdeadbeef;
    return ev;
}

static int
slice_eq(struct sw_slice a, struct sw_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void
test_batch_round_trip(void **state)
{
    struct sw_wire_builder *b = sw_wire_builder_new();
    struct sw_event ev = full_event(), e2 = full_event(), got;
    struct sw_wire_decoded d;
    struct sw_buf out;
    char why[128];

    (void)state;
    sw_buf_init(&out);
    e2.stage = SW_STAGE_ENROLL_PENDING;
    e2.cert = SW_CERT_NONE;
    e2.profile = SW_SLICE_NONE;
    e2.file = sw_slice_cstr("/logs/b.xml");
    /* earlier and at a smaller offset than the event before it: negative differences */
    e2.ts_us = ev.ts_us - 86400000000LL;
    e2.offset = 10;
    e2.device = sw_slice_cstr("other-device");
    assert_int_equal(sw_wire_builder_add(b, &ev), SW_OK);
    assert_int_equal(sw_wire_builder_add(b, &e2), SW_OK);
    assert_int_equal(sw_wire_builder_add(b, &ev), SW_OK);
    assert_int_equal(sw_wire_builder_count(b), 3);
    assert_int_equal(sw_wire_builder_pack_batch(b, "agent-1", "host-1", 99, &out), SW_OK);
    assert_int_equal(sw_wire_decode_batch(out.data, out.len, 1 << 20, &d, why, sizeof why), SW_OK);
    assert_int_equal(d.count, 3);
    assert_int_equal(d.batch_id, 99);
    assert_string_equal(d.agent_id, "agent-1");
    sw_wire_decoded_event(&d, 0, &got);
    assert_int_equal(got.stage, SW_STAGE_INSTALLED);
    assert_int_equal(got.cert, SW_CERT_SCEP);
    assert_int_equal(got.ts_us, ev.ts_us);
    assert_int_equal(got.offset, 1234);
    assert_int_equal(got.line_hash, 0xdeadbeef);
#define X(f) assert_true(slice_eq(got.f, ev.f));
    SW_EVENT_STR_FIELDS(X)
#undef X
    assert_true(slice_eq(got.file, ev.file));
    assert_true(slice_eq(got.host, sw_slice_cstr("host-1")));
    sw_wire_decoded_event(&d, 1, &got);
    assert_int_equal(got.cert, SW_CERT_NONE);
    assert_int_equal(got.profile.len, 0);
    assert_true(slice_eq(got.file, sw_slice_cstr("/logs/b.xml")));
    assert_int_equal(got.ts_us, e2.ts_us);
    assert_int_equal(got.offset, 10);
    assert_true(slice_eq(got.device, e2.device));
    sw_wire_decoded_event(&d, 2, &got);
    assert_int_equal(got.ts_us, ev.ts_us);
    assert_int_equal(got.offset, 1234);
    assert_true(slice_eq(got.device, ev.device));
    sw_wire_decoded_fini(&d);
    /* packing again (a resend) gives the same bytes */
    {
        struct sw_buf again;
        sw_buf_init(&again);
        assert_int_equal(sw_wire_builder_pack_batch(b, "agent-1", "host-1", 99, &again), SW_OK);
        assert_int_equal(again.len, out.len);
        assert_memory_equal(again.data, out.data, out.len);
        sw_buf_fini(&again);
    }
    sw_wire_builder_free(b);
    sw_buf_fini(&out);
}

/* Packs a Batch holding one event after letting the caller spoil it. */
static void
pack_spoiled(void (*spoil)(Scepwatch__Event *), struct sw_buf *out)
{
    Scepwatch__Batch b = SCEPWATCH__BATCH__INIT;
    Scepwatch__Event e = SCEPWATCH__EVENT__INIT, *ep = &e;
    e.has_source = e.has_platform = e.has_stage = e.has_ts_us = 1;
    e.source = SCEPWATCH__SOURCE__ANDROID_OMADM;
    e.platform = SCEPWATCH__PLATFORM__ANDROID;
    e.stage = SCEPWATCH__STAGE__INSTALLED;
    e.ts_us = 1000;
    spoil(&e);
    b.n_events = 1;
    b.events = &ep;
    sw_buf_reset(out);
    sw_buf_reserve(out, protobuf_c_message_get_packed_size(&b.base));
    out->len = protobuf_c_message_pack(&b.base, (uint8_t *)out->data);
}

static void spoil_none(Scepwatch__Event *e) { (void)e; }
static void spoil_stage(Scepwatch__Event *e) { e->stage = (Scepwatch__Stage)999; }
static void spoil_no_stage(Scepwatch__Event *e) { e->has_stage = 0; }
static void spoil_platform(Scepwatch__Event *e) { e->platform = (Scepwatch__Platform)77; }
/* past 2^31: negative as an int (the reference once let these through) */
static void spoil_platform_neg(Scepwatch__Event *e) { e->platform = (Scepwatch__Platform)0xffffffffu; }
static void spoil_stage_neg(Scepwatch__Event *e) { e->stage = (Scepwatch__Stage)0x80000000u; }
static void spoil_source_neg(Scepwatch__Event *e) { e->source = (Scepwatch__Source)0xfffffffeu; }
static void spoil_ts(Scepwatch__Event *e) { e->ts_us = -5; }
static void spoil_file(Scepwatch__Event *e) { e->has_file_idx = 1; e->file_idx = 3; }
/* the compact batch fields: an index past Batch.devices, a field given both ways, sums
 * that leave the range */
static void spoil_dev_idx(Scepwatch__Event *e) { e->has_device_idx = 1; e->device_idx = 1; }
static void spoil_dev_zero(Scepwatch__Event *e) { e->has_device_idx = 1; e->device_idx = 0; }
static void spoil_ts_both(Scepwatch__Event *e) { e->has_ts_delta_us = 1; e->ts_delta_us = 5; }
static void
spoil_ts_delta(Scepwatch__Event *e)
{
    e->has_ts_us = 0;
    e->has_ts_delta_us = 1;
    e->ts_delta_us = INT64_MIN;
}
static void
spoil_off_neg(Scepwatch__Event *e)
{
    e->has_offset_delta = 1;
    e->offset_delta = -1;
}
static void
spoil_off_both(Scepwatch__Event *e)
{
    e->has_offset = e->has_offset_delta = 1;
    e->offset_delta = 3;
}

static void
test_invalid_events_refused(void **state)
{
    void (*spoilers[])(Scepwatch__Event *) = { spoil_stage, spoil_no_stage, spoil_platform,
                                               spoil_ts, spoil_file, spoil_dev_idx,
                                               spoil_dev_zero, spoil_ts_both, spoil_ts_delta,
                                               spoil_off_neg, spoil_off_both,
                                               spoil_platform_neg, spoil_stage_neg,
                                               spoil_source_neg };
    struct sw_wire_decoded d;
    struct sw_buf out;
    char why[128];

    (void)state;
    sw_buf_init(&out);
    pack_spoiled(spoil_none, &out);
    assert_int_equal(sw_wire_decode_batch(out.data, out.len, 1 << 20, &d, why, sizeof why), SW_OK);
    sw_wire_decoded_fini(&d);
    for (size_t i = 0; i < sizeof spoilers / sizeof spoilers[0]; i++) {
        pack_spoiled(spoilers[i], &out);
        assert_int_equal(sw_wire_decode_batch(out.data, out.len, 1 << 20, &d, why, sizeof why),
                         SW_EPROTO);
        assert_non_null(strstr(why, "event 0"));
        assert_int_equal(sw_wire_decode_batch_ref(out.data, out.len, 1 << 20, &d, why,
                                                  sizeof why), SW_EPROTO);
        assert_non_null(strstr(why, "event 0"));
    }
    assert_int_equal(sw_wire_decode_batch("\xff\xff\xff", 3, 1 << 20, &d, why, sizeof why),
                     SW_EPROTO);
    sw_buf_fini(&out);
}

static void
test_decode_memory_bound(void **state)
{
    struct sw_wire_builder *b = sw_wire_builder_new();
    struct sw_event ev = full_event();
    struct sw_wire_decoded d;
    struct sw_buf out;
    char why[128];

    (void)state;
    sw_buf_init(&out);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(sw_wire_builder_add(b, &ev), SW_OK);
    assert_int_equal(sw_wire_builder_pack_batch(b, "a", "h", 1, &out), SW_OK);
    /* tens of MiB unpacked: refused under a 1 MiB bound, accepted under 64 MiB */
    assert_int_equal(sw_wire_decode_batch(out.data, out.len, 1 << 20, &d, why, sizeof why),
                     SW_ETOOBIG);
    assert_int_equal(sw_wire_decode_batch(out.data, out.len, 64u << 20, &d, why, sizeof why), SW_OK);
    assert_int_equal(d.count, 20000);
    sw_wire_decoded_fini(&d);
    sw_wire_builder_free(b);
    sw_buf_fini(&out);
}

static void
test_identity(void **state)
{
    struct sw_event a = full_event(), b = full_event();
    unsigned char ia[SW_EVENT_IDENT_LEN], ib[SW_EVENT_IDENT_LEN];

    (void)state;
    /* where it was read does not matter */
    b.file = sw_slice_cstr("/elsewhere.xml");
    b.offset = 9;
    b.host = sw_slice_cstr("other-host");
    sw_event_identity(&a, ia);
    sw_event_identity(&b, ib);
    assert_memory_equal(ia, ib, SW_EVENT_IDENT_LEN);
    /* content does */
    b.line_hash ^= 1;
    sw_event_identity(&b, ib);
    assert_memory_not_equal(ia, ib, SW_EVENT_IDENT_LEN);
    b = full_event();
    b.device = sw_slice_cstr("DESKTOP-2.contoso.com");
    sw_event_identity(&b, ib);
    assert_memory_not_equal(ia, ib, SW_EVENT_IDENT_LEN);
    /* field boundaries are part of the hash */
    b = full_event();
    a.txn = sw_slice_cstr("AB");
    a.thumbprint = sw_slice_cstr("C");
    b.txn = sw_slice_cstr("A");
    b.thumbprint = sw_slice_cstr("BC");
    sw_event_identity(&a, ia);
    sw_event_identity(&b, ib);
    assert_memory_not_equal(ia, ib, SW_EVENT_IDENT_LEN);
}

/* A reply page's cursor, found in its bytes without unpacking the rows. */
static void
test_find_bytes(void **state)
{
    Scepwatch__ListEnrollmentsReply rp = SCEPWATCH__LIST_ENROLLMENTS_REPLY__INIT;
    Scepwatch__Enrollment e1 = SCEPWATCH__ENROLLMENT__INIT, e2 = SCEPWATCH__ENROLLMENT__INIT;
    Scepwatch__Enrollment *rows[] = { &e1, &e2 };
    uint8_t buf[512];
    const uint8_t *cur = NULL;
    size_t len = 0, n;

    (void)state;
    e1.device = "dev-1";
    e1.status = "pending";
    e2.device = "dev-2";
    e2.has_since_us = 1;
    e2.since_us = -5;
    rp.n_rows = 2;
    rp.rows = rows;
    rp.has_as_of_us = 1;
    rp.as_of_us = 1234567;
    /* the last page: no cursor */
    n = scepwatch__list_enrollments_reply__pack(&rp, buf);
    assert_int_equal(sw_wire_find_bytes(buf, n, 2, &cur, &len), 0);
    /* a cursor after the rows, as the aggregator writes it */
    rp.has_next_cursor = 1;
    rp.next_cursor.data = (uint8_t *)"dev-2|7";
    rp.next_cursor.len = 7;
    rp.has_correlation_backlog = 1;
    rp.correlation_backlog = 300;
    n = scepwatch__list_enrollments_reply__pack(&rp, buf);
    assert_int_equal(sw_wire_find_bytes(buf, n, 2, &cur, &len), 1);
    assert_int_equal(len, 7);
    assert_memory_equal(cur, "dev-2|7", 7);
    /* cut anywhere inside a field: not a message (the end of a field is a message) */
    int refused = 0;
    for (size_t k = 1; k < n; k++) {
        int r = sw_wire_find_bytes(buf, k, 2, &cur, &len);
        assert_true(r >= -1 && r <= 1);
        refused += r == -1;
    }
    assert_true(refused > 0);
    /* fixed-width fields are stepped over; the last occurrence wins, as in an unpacker */
    static const uint8_t fixed[] = { 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 0x12, 1, 'a', 0x15, 1, 2, 3, 4,
                                     0x12, 2, 'b', 'c' };
    assert_int_equal(sw_wire_find_bytes(fixed, sizeof fixed, 2, &cur, &len), 1);
    assert_int_equal(len, 2);
    assert_memory_equal(cur, "bc", 2);
    /* a length past the end, a group wire type, a varint of eleven bytes */
    static const uint8_t past[] = { 0x12, 5, 'a' };
    static const uint8_t group[] = { 0x0b, 0x0c };
    static const uint8_t longvar[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0x01 };
    assert_int_equal(sw_wire_find_bytes(past, sizeof past, 2, &cur, &len), -1);
    assert_int_equal(sw_wire_find_bytes(group, sizeof group, 2, &cur, &len), -1);
    assert_int_equal(sw_wire_find_bytes(longvar, sizeof longvar, 2, &cur, &len), -1);
    assert_int_equal(sw_wire_find_bytes(buf, 0, 2, &cur, &len), 0);
}

/* ---- the in-place decoder against the reference ---- */

/*
 * Decodes p both ways, and in place a second time into an arena kept from
 * call to call (as the aggregator's workers do); all refuse with the same
 * reason, or all accept the same events, whose slices lie in p.  Returns
 * whether they accepted.
 */
static struct sw_arena kept_arena;

static int
both_ways(const void *p, size_t n)
{
    struct sw_wire_decoded fast, ref, again;
    char why[256], why_ref[256], why_again[256];
    sw_err ef = sw_wire_decode_batch(p, n, 64u << 20, &fast, why, sizeof why);
    sw_err er = sw_wire_decode_batch_ref(p, n, 64u << 20, &ref, why_ref, sizeof why_ref);
    sw_err ea = sw_wire_decode_batch_reuse(&kept_arena, p, n, 64u << 20, &again, why_again,
                                           sizeof why_again);

    if ((ef == SW_OK) != (er == SW_OK)) {
        char hex[3 * 64 + 1] = "";
        for (size_t i = 0; i < n && i < 64; i++)
            snprintf(hex + 3 * i, 4, "%02x ", ((const unsigned char *)p)[i]);
        fail_msg("fast %s (%s), reference %s (%s), on %zu bytes: %s", sw_strerror(ef),
                 ef ? why : "", sw_strerror(er), er ? why_ref : "", n, hex);
    }
    assert_int_equal(ea, ef);
    if (ef == SW_OK) {
        const char *diff = wire_cmp_decoded(&fast, &ref);
        if (!diff)
            diff = wire_cmp_decoded(&again, &ref);
        if (diff)
            fail_msg("decoders differ in %s", diff);
        if ((diff = wire_check_bounds(&fast, p, n)) || (diff = wire_check_bounds(&again, p, n)))
            fail_msg("%s points outside the input", diff);
        sw_wire_decoded_fini(&fast);
        sw_wire_decoded_fini(&ref);
        sw_wire_decoded_fini(&again);
    } else {
        /* a refusal says why, the same reason every way */
        assert_int_equal(ef, er);
        assert_true(why[0] != '\0');
        assert_string_equal(why, why_ref);
        assert_string_equal(why_again, why_ref);
    }
    return ef == SW_OK;
}

/* A batch of varied events: several devices and files, CA rows without a
 * device, fields absent and present, times and offsets up and down. */
static void
varied_batch(struct sw_buf *out, int nev)
{
    struct sw_wire_builder *b = sw_wire_builder_new();
    static const char *devs[] = { "DESKTOP-1", "android-2", "ipad-3", "" };
    static const char *files[] = { "/l/a.log", "/l/b.log", NULL };

    for (int i = 0; i < nev; i++) {
        struct sw_event ev = full_event();
        ev.stage = (enum sw_stage)(1 + i % (SW_STAGE_COUNT - 1));
        ev.ts_us += (i % 3 == 2 ? -1 : 1) * (int64_t)i * 1000003;
        ev.offset = (uint64_t)(i % 4 == 3 ? 5 : 1000 + 97 * i);
        ev.has_offset = i % 5 != 4;
        ev.device = devs[i % 4][0] ? sw_slice_cstr(devs[i % 4]) : SW_SLICE_NONE;
        ev.file = files[i % 3] ? sw_slice_cstr(files[i % 3]) : SW_SLICE_NONE;
        if (i % 2)
            ev.subject = ev.template = ev.requester = SW_SLICE_NONE;
        if (i % 3 == 1)
            ev.cert = SW_CERT_NONE;
        ev.line_hash = (uint32_t)i * 2654435761u;
        assert_int_equal(sw_wire_builder_add(b, &ev), SW_OK);
    }
    assert_int_equal(sw_wire_builder_pack_batch(b, "agent-7", "host-7", 4242, out), SW_OK);
    sw_wire_builder_free(b);
}

static void
test_fast_matches_reference(void **state)
{
    struct sw_buf out;
    struct sw_wire_decoded d;
    char why[128];

    (void)state;
    sw_buf_init(&out);
    varied_batch(&out, 40);
    assert_true(both_ways(out.data, out.len));
    assert_int_equal(sw_wire_decode_batch(out.data, out.len, 1 << 20, &d, why, sizeof why), SW_OK);
    assert_int_equal(d.count, 40);
    assert_int_equal(d.batch_id, 4242);
    assert_string_equal(d.agent_id, "agent-7");
    assert_string_equal(d.events[3].host.ptr, "host-7");
    assert_null(d.events[3].device.ptr);         /* absent stays absent */
    assert_true(slice_eq(d.events[1].device, sw_slice_cstr("android-2")));
    sw_wire_decoded_fini(&d);
    /* every truncation of it */
    size_t accepted = 0;
    for (size_t n = 0; n <= out.len; n++)
        accepted += (size_t)both_ways(out.data, n);
    assert_true(accepted >= 2);                 /* the empty batch and the whole one */
    /* mutations: bytes changed, dropped and doubled (a fixed seed) */
    uint64_t x = 0x9e3779b97f4a7c15u;
    accepted = 0;
    unsigned char *m = malloc(out.len + 1);
    assert_non_null(m);
    for (int round = 0; round < 20000; round++) {
        size_t n = out.len;
        memcpy(m, out.data, n);
        for (int k = 0; k < 1 + round % 3; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = (size_t)(x >> 8) % n;
            switch (x % 3) {
            case 0: m[at] = (unsigned char)(x >> 40); break;
            case 1: memmove(m + at, m + at + 1, n - at - 1); n--; break;
            default: memmove(m + at + 1, m + at, n - at); n++; break;
            }
            if (n < 2 || n > out.len)
                break;
        }
        accepted += (size_t)both_ways(m, n);
    }
    free(m);
    /* a tenth of them are accepted (a change inside a string), and compared */
    assert_true(accepted > 1000);
    sw_buf_fini(&out);
}

/* Appends a varint. */
static void
put_varint(struct sw_buf *b, uint64_t v)
{
    unsigned char c[10];
    size_t n = 0;
    do {
        c[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    sw_buf_append(b, c, n);
}

static void
put_raw(struct sw_buf *b, const char *p, size_t n)
{
    sw_buf_append(b, p, n);
}

/* A batch of one event whose bytes are a valid minimal event plus extra. */
static void
one_event(struct sw_buf *out, const char *extra, size_t n, const char *after, size_t an)
{
    static const char base[] = "\x08\x01\x10\x01\x28\x01\x20\x04"; /* source platform stage ts */
    sw_buf_reset(out);
    put_raw(out, "\x2a", 1);
    put_varint(out, sizeof base - 1 + n);
    put_raw(out, base, sizeof base - 1);
    put_raw(out, extra, n);
    put_raw(out, after, an);
}

#define ONE(out, extra, after) one_event(out, extra, sizeof extra - 1, after, sizeof after - 1)

static void
test_fast_wire_edges(void **state)
{
    struct sw_buf b;
    struct sw_wire_decoded d;
    char why[128];

    (void)state;
    sw_buf_init(&b);
    /* unknown fields of each wire type are skipped (field 0 too, in a tag of two bytes) */
    ONE(&b, "\xf0\x01\x05" "\xf9\x01" "12345678" "\xea\x01\x02" "ab" "\xe5\x01" "1234"
        "\x80\x00\x07", "\xf0\x01\x05");
    assert_true(both_ways(b.data, b.len));
    /* field 0, groups, wire types 6 and 7, a known field of another wire type: malformed */
    static const struct { const char *b; size_t n; } bad[] = {
#define B(s) { s, sizeof s - 1 }
        B("\x00\x07"), B("\x02\x01" "a"), B("\xf3\x01"), B("\xf6\x01\x01"), B("\xf7\x01\x01"),
        B("\x2d" "1234"), B("\x18\x01"), B("\x22\x01" "a"), B("\x92\x01\x01" "a"),
#undef B
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        one_event(&b, bad[i].b, bad[i].n, "", 0);
        assert_false(both_ways(b.data, b.len));
        assert_int_equal(sw_wire_decode_batch(b.data, b.len, 1 << 20, &d, why, sizeof why),
                         SW_EPROTO);
        assert_string_equal(why, "malformed protobuf message");
    }
    /* a string ends at its first NUL; the last of a scalar given twice counts */
    ONE(&b, "\x1a\x05" "ab\0cd" "\x28\x02", "");
    assert_true(both_ways(b.data, b.len));
    assert_int_equal(sw_wire_decode_batch(b.data, b.len, 1 << 20, &d, why, sizeof why), SW_OK);
    assert_true(slice_eq(d.events[0].device, sw_slice_cstr("ab")));
    assert_int_equal(d.events[0].stage, 2);
    sw_wire_decoded_fini(&d);
    /* the device list after the event that refers to it */
    ONE(&b, "\xa8\x01\x01", "\x32\x03" "dev");
    assert_true(both_ways(b.data, b.len));
    assert_int_equal(sw_wire_decode_batch(b.data, b.len, 1 << 20, &d, why, sizeof why), SW_OK);
    assert_true(slice_eq(d.events[0].device, sw_slice_cstr("dev")));
    sw_wire_decoded_fini(&d);
    /* a varint of 11 bytes, a length of 6 */
    ONE(&b, "\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "");
    assert_false(both_ways(b.data, b.len));
    ONE(&b, "\x1a\x81\x80\x80\x80\x80\x00", "");
    assert_false(both_ways(b.data, b.len));
    /* a length past the end, and past 4 GiB */
    ONE(&b, "\x1a\x09" "ab", "");
    assert_false(both_ways(b.data, b.len));
    sw_buf_reset(&b);
    put_raw(&b, "\x0a\xff\xff\xff\xff\x0f" "ab", 8);
    assert_false(both_ways(b.data, b.len));
    /* an event refused for what it says, not its form: the message names it */
    ONE(&b, "\x28\x00", "");
    assert_false(both_ways(b.data, b.len));
    assert_int_equal(sw_wire_decode_batch(b.data, b.len, 1 << 20, &d, why, sizeof why),
                     SW_EPROTO);
    assert_string_equal(why, "event 0: missing or unknown stage");

    /* the fields the builder never sends: device, ts_us and offset given whole, an event's
     * own host and file (the file beside a file index), then a difference from them */
    sw_buf_reset(&b);
    put_raw(&b, "\x12\x02" "HB" "\x22\x01" "X", 7);    /* batch host, files[0] */
    static const char e0[] = "\x08\x01\x10\x01\x28\x01\x20\x10" /* ts_us 8 */
                             "\x1a\x01" "d" "\x88\x01\x64"         /* device, offset 100 */
                             "\x9a\x01\x02" "H1" "\xa2\x01\x01" "F" "\x80\x01\x00";
    static const char e1[] = "\x08\x01\x10\x01\x28\x01\xb0\x01\x02" /* ts_delta 1 */
                             "\xb8\x01\x06" "\x80\x01\x00";          /* offset_delta 3 */
    put_raw(&b, "\x2a", 1);
    put_varint(&b, sizeof e0 - 1);
    put_raw(&b, e0, sizeof e0 - 1);
    put_raw(&b, "\x2a", 1);
    put_varint(&b, sizeof e1 - 1);
    put_raw(&b, e1, sizeof e1 - 1);
    assert_true(both_ways(b.data, b.len));
    assert_int_equal(sw_wire_decode_batch(b.data, b.len, 1 << 20, &d, why, sizeof why), SW_OK);
    assert_int_equal(d.events[0].ts_us, 8);
    assert_int_equal(d.events[1].ts_us, 9);
    assert_int_equal(d.events[1].offset, 103);
    assert_true(slice_eq(d.events[0].host, sw_slice_cstr("H1")));
    assert_true(slice_eq(d.events[1].host, sw_slice_cstr("HB")));
    assert_true(slice_eq(d.events[0].file, sw_slice_cstr("F")));
    assert_true(slice_eq(d.events[1].file, sw_slice_cstr("X")));
    sw_wire_decoded_fini(&d);

    /* a batch field of the wrong wire type (batch_id given as bytes) */
    assert_false(both_ways("\x1a\x01" "a", 3));
    /* NULs in the batch's own strings and lists */
    ONE(&b, "\xa8\x01\x01", "\x0a\x03" "a\0b" "\x12\x02" "\0h" "\x22\x02" "f\0" "\x32\x03" "d\0e");
    assert_true(both_ways(b.data, b.len));

    /* the longest string accepted, one byte more, and a longer one cut short by a NUL */
    for (size_t len = SW_WIRE_MAX_FIELD; len <= SW_WIRE_MAX_FIELD + 1; len++) {
        char *big = malloc(len);
        assert_non_null(big);
        memset(big, 'a', len);
        for (int nul = 0; nul < 2; nul++) {
            if (nul)
                big[10] = '\0';
            sw_buf_reset(&b);
            put_raw(&b, "\x2a", 1);
            put_varint(&b, 8 + 1 + 3 + len);
            put_raw(&b, "\x08\x01\x10\x01\x28\x01\x20\x04" "\x7a", 9); /* detail, field 15 */
            put_varint(&b, len);
            put_raw(&b, big, len);
            int ok = both_ways(b.data, b.len);
            assert_int_equal(ok, nul || len == SW_WIRE_MAX_FIELD);
        }
        free(big);
    }

    /* the reasons come in the reference's order: a malformed event before any refusal,
     * a device index that cannot resolve before an event that fails its checks */
    static const char bad_stage[] = "\x2a\x08\x08\x01\x10\x01\x28\x00\x20\x04";
    static const char bad_dev[] = "\x2a\x0b\x08\x01\x10\x01\x28\x01\x20\x04\xa8\x01\x05";
    sw_buf_reset(&b);
    put_raw(&b, bad_stage, sizeof bad_stage - 1);
    put_raw(&b, bad_dev, sizeof bad_dev - 1);
    assert_false(both_ways(b.data, b.len));
    assert_int_equal(sw_wire_decode_batch(b.data, b.len, 1 << 20, &d, why, sizeof why),
                     SW_EPROTO);
    assert_string_equal(why, "event 1: bad device index");
    put_raw(&b, "\x2a\x01\x00", 3);
    assert_false(both_ways(b.data, b.len));
    assert_int_equal(sw_wire_decode_batch(b.data, b.len, 1 << 20, &d, why, sizeof why),
                     SW_EPROTO);
    assert_string_equal(why, "malformed protobuf message");
    sw_buf_fini(&b);
    sw_arena_release(&kept_arena);
}

static void
test_fast_oversized_batches(void **state)
{
    struct sw_buf b;
    struct sw_wire_decoded d;
    char why[128];

    (void)state;
    sw_buf_init(&b);
    /* more events than the bound holds: valid ones are too large, a bad one is refused */
    for (int i = 0; i < 20000; i++)
        put_raw(&b, "\x2a\x08\x08\x01\x10\x01\x28\x01\x20\x04", 10);
    assert_int_equal(sw_wire_decode_batch(b.data, b.len, 1 << 20, &d, why, sizeof why),
                     SW_ETOOBIG);
    assert_string_equal(why, "message expands beyond 1048576 bytes");
    put_raw(&b, "\x2a\x02\x28\x00", 4);
    assert_int_equal(sw_wire_decode_batch(b.data, b.len, 1 << 20, &d, why, sizeof why),
                     SW_EPROTO);
    assert_string_equal(why, "event 20000: missing or unknown stage");
    put_raw(&b, "\x2a\x01\x00", 3);
    assert_int_equal(sw_wire_decode_batch(b.data, b.len, 1 << 20, &d, why, sizeof why),
                     SW_EPROTO);
    assert_string_equal(why, "malformed protobuf message");
    /* a bound that is not a multiple of 16 still says too large, not out of memory */
    sw_buf_reset(&b);
    put_raw(&b, "\x0a\x60", 2);
    for (int i = 0; i < 0x60; i++)
        put_raw(&b, "a", 1);
    assert_int_equal(sw_wire_decode_batch(b.data, b.len, 100, &d, why, sizeof why), SW_ETOOBIG);
    sw_buf_fini(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_round_trip),
        cmocka_unit_test(test_invalid_events_refused),
        cmocka_unit_test(test_decode_memory_bound),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_find_bytes),
        cmocka_unit_test(test_fast_matches_reference),
        cmocka_unit_test(test_fast_wire_edges),
        cmocka_unit_test(test_fast_oversized_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
