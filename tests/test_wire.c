/*
 * test_wire.c - event batches on the wire: round trip of every field,
 * validation of hostile batches, the decode memory bound, and event
 * identity (what makes a resend harmless).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "scepwatch.pb-c.h"
#include "sw_wire.h"

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
                                               spoil_off_neg, spoil_off_both };
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_round_trip),
        cmocka_unit_test(test_invalid_events_refused),
        cmocka_unit_test(test_decode_memory_bound),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_find_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
