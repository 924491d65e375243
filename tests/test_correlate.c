/*
 * test_correlate.c - the correlation rules on crafted events: every
 * status, where one enrollment ends and the next begins, issuance
 * folding, and each link method through the store (thumbprint, txn,
 * serial, time, and no link when the times are too far apart).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "correlate.h"
#include "store.h"
#include "store_correlate.h"
#include "th.h"

#define SEC 1000000LL
#define T0 1710428400000000LL  /* 2024-03-14T15:00:00Z */

static struct sw_event
dev(enum sw_platform p, int64_t t, enum sw_stage s)
{
    struct sw_event e;
    memset(&e, 0, sizeof e);
    e.source = p == SW_PLATFORM_ANDROID ? SW_SOURCE_ANDROID_OMADM
             : p == SW_PLATFORM_IOS ? SW_SOURCE_IOS_CONSOLE : SW_SOURCE_WINDOWS_EVENT_XML;
    e.platform = p;
    e.cert = SW_CERT_SCEP;
    e.device = sw_slice_cstr("dev1");
    e.ts_us = T0 + t * SEC;
    e.stage = s;
    e.line_hash = (uint32_t)(t * 31 + s);
    return e;
}

static struct sw_event
ca(int64_t t, enum sw_stage s, const char *rid)
{
    struct sw_event e;
    memset(&e, 0, sizeof e);
    e.source = SW_SOURCE_WINDOWS_EVENT_XML;
    e.platform = SW_PLATFORM_CA;
    e.ts_us = T0 + t * SEC;
    e.stage = s;
    e.request_id = sw_slice_cstr(rid);
    e.line_hash = (uint32_t)(t * 17 + s);
    return e;
}

struct segs {
    struct agg_enrollment e[8];
    int n;
};

static void
collect(void *arg, const struct agg_enrollment *e)
{
    struct segs *s = arg;
    assert_true(s->n < 8);
    s->e[s->n++] = *e;
}

static enum agg_status
status_of(const struct sw_event *evs, size_t n, const struct agg_issuance *iss, int which)
{
    struct segs s = { .n = 0 };
    int64_t since;
    agg_segment_device(evs, n, collect, &s);
    assert_true(which < s.n);
    return agg_enrollment_status(&s.e[which], iss, &since);
}

static void
test_android_statuses(void **state)
{
    (void)state;
    enum sw_platform A = SW_PLATFORM_ANDROID;
    struct sw_event granted[] = { dev(A, 0, SW_STAGE_PROFILE_RECEIVED), dev(A, 1, SW_STAGE_ENROLL_REQUESTED),
                                  dev(A, 2, SW_STAGE_ENROLL_ISSUED), dev(A, 3, SW_STAGE_INSTALL_REQUESTED),
                                  dev(A, 4, SW_STAGE_INSTALLING), dev(A, 5, SW_STAGE_ACCESS_REQUESTED),
                                  dev(A, 6, SW_STAGE_ACCESS_GRANTED) };
    assert_int_equal(status_of(granted, 7, NULL, 0), AGG_STATUS_INSTALLED);
    assert_int_equal(status_of(granted, 6, NULL, 0), AGG_STATUS_WAITING_USER_ACCESS);
    assert_int_equal(status_of(granted, 4, NULL, 0), AGG_STATUS_WAITING_USER_INSTALL);
    assert_int_equal(status_of(granted, 5, NULL, 0), AGG_STATUS_WAITING_USER_INSTALL);
    assert_int_equal(status_of(granted, 2, NULL, 0), AGG_STATUS_REQUESTED_NOT_ISSUED);
    /* an install failure that the state machine retried is not the last word */
    struct sw_event retried[] = { dev(A, 0, SW_STAGE_ENROLL_REQUESTED), dev(A, 1, SW_STAGE_ENROLL_ISSUED),
                                  dev(A, 2, SW_STAGE_INSTALL_FAILED), dev(A, 3, SW_STAGE_INSTALL_REQUESTED) };
    assert_int_equal(status_of(retried, 3, NULL, 0), AGG_STATUS_FAILED);
    assert_int_equal(status_of(retried, 4, NULL, 0), AGG_STATUS_WAITING_USER_INSTALL);
    /* pending, then nothing */
    struct sw_event pend[] = { dev(A, 0, SW_STAGE_ENROLL_REQUESTED), dev(A, 1, SW_STAGE_ENROLL_PENDING) };
    assert_int_equal(status_of(pend, 2, NULL, 0), AGG_STATUS_PENDING);
}

static void
test_statuses_with_the_ca(void **state)
{
    (void)state;
    enum sw_platform I = SW_PLATFORM_IOS;
    struct sw_event req[] = { dev(I, 0, SW_STAGE_CSR_GENERATED), dev(I, 1, SW_STAGE_ENROLL_REQUESTED) };
    struct agg_issuance iss;
    struct sw_event issued[] = { ca(2, SW_STAGE_CA_RECEIVED, "7"), ca(3, SW_STAGE_CA_ISSUED, "7") };
    agg_fold_issuance(issued, 2, &iss);
    assert_int_equal(iss.state, SW_STAGE_CA_ISSUED);
    assert_string_equal(iss.request_id, "7");
    assert_int_equal(status_of(req, 2, &iss, 0), AGG_STATUS_ISSUED_NOT_DELIVERED);
    struct sw_event denied[] = { ca(2, SW_STAGE_CA_RECEIVED, "8"), ca(3, SW_STAGE_CA_DENIED, "8") };
    agg_fold_issuance(denied, 2, &iss);
    assert_int_equal(status_of(req, 2, &iss, 0), AGG_STATUS_FAILED);
    assert_string_equal(iss.detail, "denied by the CA");
    struct sw_event pending[] = { ca(2, SW_STAGE_CA_PENDING, "9") };
    agg_fold_issuance(pending, 1, &iss);
    assert_int_equal(status_of(req, 2, &iss, 0), AGG_STATUS_PENDING);
    assert_int_equal(status_of(req, 2, NULL, 0), AGG_STATUS_REQUESTED_NOT_ISSUED);
    /* the CA's order does not matter: issued outranks the earlier pending */
    struct sw_event later[] = { ca(90, SW_STAGE_CA_ISSUED, "9"), ca(2, SW_STAGE_CA_PENDING, "9") };
    agg_fold_issuance(later, 2, &iss);
    assert_int_equal(iss.state, SW_STAGE_CA_ISSUED);
    assert_int_equal(iss.recv_lo, T0 + 2 * SEC);
    /* orphans */
    int64_t since;
    assert_int_equal(agg_orphan_status(&iss, &since), AGG_STATUS_ORPHAN_ISSUANCE);
    assert_int_equal(since, T0 + 90 * SEC);
    struct sw_event revoked[] = { ca(5, SW_STAGE_CA_REVOKED, "10") };
    agg_fold_issuance(revoked, 1, &iss);
    assert_int_equal(agg_orphan_status(&iss, &since), AGG_STATUS_ORPHAN_ISSUANCE);
    assert_int_equal(since, 0); /* never stuck */
    agg_fold_issuance(denied, 2, &iss);
    assert_int_equal(agg_orphan_status(&iss, &since), AGG_STATUS_FAILED);
}

static void
test_where_enrollments_begin(void **state)
{
    (void)state;
    enum sw_platform A = SW_PLATFORM_ANDROID;
    struct segs s = { .n = 0 };
    struct sw_event evs[] = {
        dev(A, 0, SW_STAGE_PROFILE_RECEIVED), dev(A, 1, SW_STAGE_CACERT_REQUESTED),
        dev(A, 2, SW_STAGE_ENROLL_FAILED),                 /* 1: failed */
        dev(A, 60, SW_STAGE_PROFILE_RECEIVED),             /* 2: the retry */
        dev(A, 61, SW_STAGE_ENROLL_REQUESTED), dev(A, 62, SW_STAGE_ENROLL_ISSUED),
        dev(A, 63, SW_STAGE_ACCESS_GRANTED),
        dev(A, 100, SW_STAGE_ENROLL_REQUESTED),            /* 3: a renewal with no profile line */
        dev(A, 101, SW_STAGE_ENROLL_PENDING),
        dev(A, 200, SW_STAGE_PROFILE_RECEIVED),            /* 4: another profile */
    };
    evs[0].profile = evs[3].profile = sw_slice_cstr("aaaa1111-0000-4000-8000-000000000001");
    evs[9].profile = sw_slice_cstr("bbbb2222");
    evs[4].txn = sw_slice_cstr("ABCD");
    agg_segment_device(evs, 10, collect, &s);
    assert_int_equal(s.n, 4);
    int64_t since;
    assert_int_equal(agg_enrollment_status(&s.e[0], NULL, &since), AGG_STATUS_FAILED);
    assert_int_equal(agg_enrollment_status(&s.e[1], NULL, &since), AGG_STATUS_INSTALLED);
    assert_string_equal(s.e[1].txn, "ABCD");
    assert_int_equal(s.e[1].request_us, T0 + 61 * SEC);
    assert_int_equal(agg_enrollment_status(&s.e[2], NULL, &since), AGG_STATUS_PENDING);
    assert_string_equal(s.e[3].profile, "bbbb2222");
    assert_int_equal(s.e[3].seq, 4);
    /* a cut-short id is the same profile as the full one */
    struct segs t = { .n = 0 };
    struct sw_event cut[] = { dev(A, 0, SW_STAGE_PROFILE_RECEIVED), dev(A, 5, SW_STAGE_INSTALL_REQUESTED) };
    cut[0].profile = sw_slice_cstr("39907");
    cut[1].profile = sw_slice_cstr("39907e78-e61b-4730-b9fa-d44a53e4111c");
    agg_segment_device(cut, 2, collect, &t);
    assert_int_equal(t.n, 1);
    assert_string_equal(t.e[0].profile, "39907e78-e61b-4730-b9fa-d44a53e4111c");
}

static int
only_wifi(void *arg, const char *profile, const char *template_name)
{
    (void)arg;
    (void)profile;
    return strcmp(template_name, "WiFiTemplate") == 0;
}

static void
test_time_matching_is_nearest_first(void **state)
{
    (void)state;
    struct agg_cand_enr e[3] = {
        { T0 + 10 * SEC, 0, "a", -1, NULL },
        { T0 + 12 * SEC, 0, "b", -1, NULL },
        { T0 + 900 * SEC, 0, "c", -1, NULL },    /* nothing near */
    };
    struct agg_cand_iss i[2] = {
        { T0 + 11 * SEC + 500000, T0 + 11 * SEC + 500000, 0, 0, "1", -1, NULL }, /* 0.5 s from b */
        { T0 + 9 * SEC, T0 + 9 * SEC, 0, 0, "2", -1, NULL },                     /* 1 s from a */
    };
    assert_int_equal(agg_match_time(e, 3, i, 2, 120 * SEC, NULL, NULL), 0);
    assert_int_equal(e[0].match, 1);
    assert_int_equal(e[1].match, 0);
    assert_int_equal(e[2].match, -1);
    /* certutil minutes: a request at :40 s matches a row stamped at :00 of that minute */
    struct agg_cand_enr e2 = { T0 + 40 * SEC, 0, "x", -1, NULL };
    struct agg_cand_iss i2 = { T0, T0 + 59 * SEC, 0, 0, "3", -1, NULL };
    assert_int_equal(agg_match_time(&e2, 1, &i2, 1, 1 * SEC, NULL, NULL), 0);
    assert_int_equal(e2.match, 0);
    /* the device's receipt against the CA's issue time (a pending request) */
    struct agg_cand_enr e3 = { T0, T0 + 600 * SEC, "y", -1, NULL };
    struct agg_cand_iss i3 = { 0, 0, T0 + 598 * SEC, T0 + 598 * SEC, "4", -1, NULL };
    assert_int_equal(agg_match_time(&e3, 1, &i3, 1, 120 * SEC, NULL, NULL), 0);
    assert_int_equal(e3.match, 0);
    /* a template the profile is known not to use is no match, however close */
    struct agg_cand_enr e4 = { T0, 0, "z", -1, "wifi-profile" };
    struct agg_cand_iss i4[2] = { { T0, T0, 0, 0, "5", -1, "VPNTemplate" },
                                  { T0 + 5 * SEC, T0 + 5 * SEC, 0, 0, "6", -1, "WiFiTemplate" } };
    assert_int_equal(agg_match_time(&e4, 1, i4, 2, 30 * SEC, only_wifi, NULL), 0);
    assert_int_equal(e4.match, 1);
}

/* ---- link methods through the store ---- */

static char db[64];

static struct agg_store *
open_store(void)
{
    struct agg_store *st;
    char why[256];
    int fd;
    strcpy(db, "/tmp/sw-corr-XXXXXX");
    fd = mkstemp(db);
    close(fd);
    unlink(db);
    assert_int_equal(agg_store_sqlite.open(&st, db, why, sizeof why), SW_OK);
    return st;
}

static void
close_store(struct agg_store *st)
{
    st->ops->close(st);
    th_unlink_db(db);
}

struct one {
    char device[64], request_id[32], status[32], link[16];
    int n;
};

static void
grab(void *arg, const struct agg_enr_row *r)
{
    struct one *o = arg;
    if (r->device && o->n++ == 0) {
        snprintf(o->device, sizeof o->device, "%s", r->device);
        snprintf(o->request_id, sizeof o->request_id, "%s", r->request_id ? r->request_id : "");
        snprintf(o->status, sizeof o->status, "%s", agg_status_name(r->status));
        snprintf(o->link, sizeof o->link, "%s", agg_link_name(r->link));
    }
}

static struct one
link_of(struct sw_event *evs, size_t n)
{
    struct agg_store *st = open_store();
    struct agg_store_reader *r;
    struct agg_enr_filter f = { 0 };
    struct agg_policy pol = { .as_of_us = T0 };
    struct one o = { .n = 0 };
    uint32_t stored, dups;
    int more;

    assert_int_equal(st->ops->ingest(st, evs, n, "t", &stored, &dups), SW_OK);
    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    assert_int_equal(r->ops->list_enrollments(r, &f, &pol, "", 100, &more, grab, &o), SW_OK);
    r->ops->reader_close(r);
    close_store(st);
    return o;
}

/*
 * A device whose events lie more than one indexing step apart: its rebuild
 * waits until the device index (event_dev) holds all of them, and then sees
 * both ends.  The events between are another device's root certificates,
 * which mark nothing.
 */
static void
test_device_rebuilt_after_the_whole_index(void **state)
{
    size_t n = AGG_CORR_STEP_TIME + 100;
    struct sw_event *evs = calloc(n, sizeof *evs);
    (void)state;
    assert_non_null(evs);
    evs[0] = dev(SW_PLATFORM_WINDOWS, 0, SW_STAGE_CSR_GENERATED);
    for (size_t i = 1; i + 1 < n; i++) {
        evs[i] = dev(SW_PLATFORM_ANDROID, 1, SW_STAGE_INSTALLED);
        evs[i].device = sw_slice_cstr("filler");
        evs[i].cert = SW_CERT_ROOT;
        evs[i].line_hash = (uint32_t)i;
    }
    evs[n - 1] = dev(SW_PLATFORM_WINDOWS, 5, SW_STAGE_INSTALLED);
    struct one o = link_of(evs, n);
    free(evs);
    assert_string_equal(o.device, "dev1");
    assert_string_equal(o.status, "installed");
    assert_int_equal(o.n, 1);
}

static void
test_link_methods(void **state)
{
    (void)state;
    enum sw_platform W = SW_PLATFORM_WINDOWS, A = SW_PLATFORM_ANDROID;
    /* thumbprint, even hours apart */
    struct sw_event th[] = { dev(W, 0, SW_STAGE_CSR_GENERATED), dev(W, 5, SW_STAGE_INSTALLED),
                             ca(7200, SW_STAGE_CA_ISSUED, "41") };
    th[1].thumbprint = th[2].thumbprint = sw_slice_cstr("aa11");
    struct one o = link_of(th, 3);
    assert_string_equal(o.link, "thumbprint");
    assert_string_equal(o.request_id, "41");
    assert_string_equal(o.status, "installed");
    /* txn: the CA computed it from the binary certificate */
    struct sw_event tx[] = { dev(A, 0, SW_STAGE_ENROLL_REQUESTED), dev(A, 1, SW_STAGE_ENROLL_ISSUED),
                             ca(9000, SW_STAGE_CA_ISSUED, "42") };
    tx[0].txn = tx[1].txn = tx[2].txn = sw_slice_cstr("ABCDEF01");
    o = link_of(tx, 3);
    assert_string_equal(o.link, "txn");
    assert_string_equal(o.request_id, "42");
    assert_string_equal(o.status, "waiting_user_install");
    /* serial */
    struct sw_event se[] = { dev(W, 0, SW_STAGE_CSR_GENERATED), ca(9000, SW_STAGE_CA_ISSUED, "43") };
    se[0].serial = se[1].serial = sw_slice_cstr("2b00ff");
    o = link_of(se, 2);
    assert_string_equal(o.link, "serial");
    assert_string_equal(o.status, "issued_not_delivered");
    /* time: within the window */
    struct sw_event ti[] = { dev(A, 0, SW_STAGE_ENROLL_REQUESTED), ca(1, SW_STAGE_CA_RECEIVED, "44"),
                             ca(1, SW_STAGE_CA_DENIED, "44") };
    o = link_of(ti, 3);
    assert_string_equal(o.link, "time");
    assert_string_equal(o.status, "failed");
    /* too far apart: no link, and the CA request stands alone */
    struct sw_event far[] = { dev(A, 0, SW_STAGE_ENROLL_REQUESTED), ca(600, SW_STAGE_CA_ISSUED, "45") };
    o = link_of(far, 2);
    assert_string_equal(o.link, "");
    assert_string_equal(o.status, "requested_not_issued");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_android_statuses),
        cmocka_unit_test(test_statuses_with_the_ca),
        cmocka_unit_test(test_where_enrollments_begin),
        cmocka_unit_test(test_time_matching_is_nearest_first),
        cmocka_unit_test(test_link_methods),
        cmocka_unit_test(test_device_rebuilt_after_the_whole_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
