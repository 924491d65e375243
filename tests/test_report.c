/*
 * test_report.c - correlation through the real store: the sample corpus
 * gives the statuses its stories imply (tests/data/samples-report.csv),
 * the report is identical for any arrival order and batching (shuffled
 * many times, with duplicates), every link method, paging and --as-of.
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

#include <sqlite3.h>

#include "store.h"
#include "sw_time.h"
#include "sw_wire.h"
#include "th.h"

/* ---- collecting the sample corpus as events ---- */

struct corpus {
    struct sw_wire_builder *b;
    struct sw_buf packed;       /* the decoded events point into it */
    struct sw_wire_decoded d;
    struct sw_event *ev;
    size_t n;
};

static void
add_event(void *arg, const struct sw_event *ev)
{
    assert_int_equal(sw_wire_builder_add(arg, ev), SW_OK);
}

static void
parse_into(struct sw_wire_builder *b, const char *rel, const char *format, const char *device,
           int ios_date)
{
    char path[1024];
    struct agent_parse_opts o = { 0 };
    struct agent_reader r;

    snprintf(path, sizeof path, "%s/tests/data/samples/%s", TH_SOURCE_DIR, rel);
    o.device = device;
    if (ios_date) {
        o.has_date = 1;
        o.date_y = 2024;
        o.date_m = 3;
        o.date_d = 14;
    }
    assert_int_equal(agent_reader_init(&r, AGENT_MAX_LINE), SW_OK);
    assert_int_equal(agent_parse_file(path, agent_parser_find(format), &o, &r, add_event, b,
                                      NULL, NULL), SW_OK);
    agent_reader_fini(&r);
}

/* The demo's shipment: device files with a device name, server files without. */
static void
load_samples(struct corpus *c)
{
    char why[128];

    c->b = sw_wire_builder_new();
    parse_into(c->b, "android_omadm/OMADM.log", "android_omadm", "android-jdoe-pixel", 0);
    parse_into(c->b, "android_omadm/OMADM-scenarios.log", "android_omadm", "android-asmith-galaxy", 0);
    parse_into(c->b, "ios_console/console-pending.txt", "ios_console", "iphone-jdoe", 1);
    parse_into(c->b, "ios_console/console-success.rtf", "ios_console", "iphone-jdoe", 1);
    parse_into(c->b, "ios_console/console-failure.txt", "ios_console", "iphone-bwong", 1);
    parse_into(c->b, "windows_event_xml/DeviceManagement-Admin.xml", "windows_event_xml", NULL, 0);
    parse_into(c->b, "windows_event_xml/DeviceManagement-Admin.utf16.xml", "windows_event_xml", NULL, 0);
    parse_into(c->b, "windows_event_xml/Security-CA.xml", "windows_event_xml", NULL, 0);
    parse_into(c->b, "windows_event_xml/Security-lab-4887v1.xml", "windows_event_xml", NULL, 0);
    parse_into(c->b, "ca_certutil_csv/certutil-view.csv", "ca_certutil_csv", NULL, 0);
    parse_into(c->b, "ndes_iis/u_ex240314.log", "ndes_iis", NULL, 0);
    parse_into(c->b, "ndes_iis/u_ex240820.log", "ndes_iis", NULL, 0);
    parse_into(c->b, "ndes_iis/u_ex170808.log", "ndes_iis", NULL, 0);
    sw_buf_init(&c->packed);
    assert_int_equal(sw_wire_builder_pack_batch(c->b, "t", "h", 1, &c->packed), SW_OK);
    assert_int_equal(sw_wire_decode_batch(c->packed.data, c->packed.len, 64u << 20, &c->d, why,
                                          sizeof why), SW_OK);
    c->n = c->d.count;
    c->ev = calloc(c->n, sizeof *c->ev);
    for (size_t i = 0; i < c->n; i++)
        sw_wire_decoded_event(&c->d, i, &c->ev[i]);
}

static void
free_corpus(struct corpus *c)
{
    free(c->ev);
    sw_wire_decoded_fini(&c->d);
    sw_buf_fini(&c->packed);
    sw_wire_builder_free(c->b);
}

/* ---- a store in a temp file ---- */

static struct agg_store *
new_store(char *path)
{
    struct agg_store *st;
    char why[256];
    int fd;
    strcpy(path, "/tmp/sw-report-XXXXXX");
    fd = mkstemp(path);
    close(fd);
    unlink(path);
    assert_int_equal(agg_store_sqlite.open(&st, path, why, sizeof why), SW_OK);
    return st;
}

static void
drop_store(struct agg_store *st, const char *path)
{
    st->ops->close(st);
    th_unlink_db(path);
}

static void
ingest(struct agg_store *st, struct sw_event *evs, size_t n)
{
    uint32_t stored, dups;
    assert_int_equal(st->ops->ingest(st, evs, n, "test", &stored, &dups), SW_OK);
}

/*
 * The funnel's counts, kept by triggers as the correlator writes rows, are
 * the counts of the rows themselves: no key counted twice or missed, none
 * below zero.
 */
static void
assert_counts_match(const char *path)
{
    char derived[160];
    sqlite3 *db;
    sqlite3_stmt *s;
    snprintf(derived, sizeof derived, "%s-derived", path);
    assert_int_equal(sqlite3_open_v2(derived, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    static const char q[] =
        "WITH rows(platform, status, req, iss, dlv, n) AS (SELECT platform, status,"
        " request_us IS NOT NULL AND kind = 0, ca_issued OR device_issued_us IS NOT NULL,"
        " device_issued_us IS NOT NULL, COUNT(*) FROM enrollments GROUP BY 1, 2, 3, 4, 5),"
        " kept AS (SELECT platform, status, req, iss, dlv, n FROM funnel_counts WHERE n != 0)"
        " SELECT (SELECT COUNT(*) FROM (SELECT * FROM rows EXCEPT SELECT * FROM kept))"
        " + (SELECT COUNT(*) FROM (SELECT * FROM kept EXCEPT SELECT * FROM rows))"
        " + (SELECT COUNT(*) FROM funnel_counts WHERE n < 0),"
        " (SELECT COUNT(*) FROM enrollments)";
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 0);
    assert_true(sqlite3_column_int(s, 1) > 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* ---- the report as text ---- */

static struct agg_policy
policy_at(const char *as_of)
{
    struct agg_policy p;
    assert_int_equal(sw_time_parse(as_of, strlen(as_of), 0, &p.as_of_us), 0);
    for (int i = 0; i < AGG_STATUS_COUNT; i++)
        p.threshold_us[i] = 3600LL * 1000000;
    return p;
}

static void
row_text(void *arg, const struct agg_enr_row *r)
{
    struct sw_buf *b = arg;
    sw_buf_printf(b, "%s|%d|%s|%s|%lld|%lld|%d|%lld|%lld|%lld|%lld|%lld|%s|%s|%s|%s|%s|%s\n",
                  r->device ? r->device : "", r->platform, r->profile ? r->profile : "",
                  agg_status_name(r->status), (long long)r->since_us, (long long)r->stuck_since_us,
                  r->last_stage, (long long)r->last_event_us, (long long)r->first_us,
                  (long long)r->requested_us, (long long)r->issued_us, (long long)r->installed_us,
                  r->request_id ? r->request_id : "", r->serial ? r->serial : "",
                  r->thumbprint ? r->thumbprint : "", r->txn ? r->txn : "",
                  agg_link_name(r->link), r->detail ? r->detail : "");
}

/* What a table shows of a row; absent is whatever a brief row leaves out. */
struct shown {
    struct sw_buf *out;
    int brief;                  /* the rows were asked for brief: check the rest is absent */
};

static void
shown_row(void *arg, const struct agg_enr_row *r)
{
    struct shown *s = arg;
    sw_buf_printf(s->out, "%s|%s|%d|%s|%s|%lld|%lld|%d|%s|%s|%s\n", r->rowkey,
                  r->device ? r->device : "", r->platform, r->profile ? r->profile : "",
                  agg_status_name(r->status), (long long)r->since_us, (long long)r->stuck_since_us,
                  r->last_stage, r->request_id ? r->request_id : "", agg_link_name(r->link),
                  r->detail ? r->detail : "");
    if (s->brief) {
        assert_null(r->serial);
        assert_null(r->thumbprint);
        assert_null(r->txn);
        assert_null(r->subject);
        assert_null(r->template_name);
        assert_true(r->last_event_us == 0 && r->first_us == 0 && r->requested_us == 0 &&
                    r->issued_us == 0 && r->installed_us == 0);
    }
}

/* Paged listing that tracks rowkeys itself. */
struct paged {
    struct sw_buf *out;
    char last[512];
    size_t rows;
};

static void
paged_row(void *arg, const struct agg_enr_row *r)
{
    struct paged *p = arg;
    row_text(p->out, r);
    snprintf(p->last, sizeof p->last, "%s", r->rowkey);
    p->rows++;
}

static size_t
report_paged(struct agg_store *st, const struct agg_enr_filter *f, const struct agg_policy *pol,
             size_t page_size, struct sw_buf *out)
{
    struct agg_store_reader *r;
    struct paged p = { out, "", 0 };
    size_t pages = 0;
    int more = 1;

    assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
    while (more) {
        char cursor[512];
        snprintf(cursor, sizeof cursor, "%s", p.last);
        assert_int_equal(r->ops->list_enrollments(r, f, pol, cursor, page_size, &more,
                                                  paged_row, &p), SW_OK);
        pages++;
    }
    r->ops->reader_close(r);
    return pages;
}

/* ---- tests ---- */

static void
test_samples_give_their_stories(void **state)
{
    struct corpus c;
    char path[64];
    struct agg_store *st;
    struct agg_enr_filter f = { 0 };
    struct agg_policy pol = policy_at("2024-03-15T12:00:00Z");
    struct sw_buf got;
    char exp_path[1024];

    (void)state;
    load_samples(&c);
    st = new_store(path);
    ingest(st, c.ev, c.n);
    sw_buf_init(&got);
    report_paged(st, &f, &pol, 1000, &got);
    /* compare device, platform, profile, status, request id, link */
    snprintf(exp_path, sizeof exp_path, "%s/tests/data/samples-report.csv", TH_SOURCE_DIR);
    char *expected = th_read_file(exp_path, NULL);
    assert_non_null(expected);
    struct sw_buf mine;
    sw_buf_init(&mine);
    sw_buf_puts(&mine, "device,platform,profile,status,request_id,link\n");
    for (char *line = strtok(got.data, "\n"); line; line = strtok(NULL, "\n")) {
        char *fld[18];
        int k = 0;
        for (char *p = line; k < 18; k++) {
            fld[k] = p;
            char *bar = strchr(p, '|');
            if (!bar) {
                k++;
                break;
            }
            *bar = '\0';
            p = bar + 1;
        }
        sw_buf_printf(&mine, "%s,%s,%.8s,%s,%s,%s\n", fld[0],
                      sw_platform_name((enum sw_platform)atoi(fld[1])), fld[2], fld[3], fld[12],
                      fld[16]);
    }
    if (strcmp(mine.data, expected) != 0) {
        fprintf(stderr, "report differs.\n--- got\n%s--- expected\n%s", mine.data, expected);
        fail();
    }
    /* brief rows: what a table shows is the same, the rest absent; stuck only too */
    for (int stuck = 0; stuck < 2; stuck++) {
        struct sw_buf full, brief;
        struct shown sf = { &full, 0 }, sb = { &brief, 1 };
        struct agg_store_reader *r;
        int more;
        sw_buf_init(&full);
        sw_buf_init(&brief);
        f.stuck_only = stuck;
        assert_int_equal(st->ops->reader_open(st, &r), SW_OK);
        f.brief = 0;
        assert_int_equal(r->ops->list_enrollments(r, &f, &pol, "", 1000, &more, shown_row, &sf),
                         SW_OK);
        f.brief = 1;
        assert_int_equal(r->ops->list_enrollments(r, &f, &pol, "", 1000, &more, shown_row, &sb),
                         SW_OK);
        r->ops->reader_close(r);
        assert_true(th_count_lines(full.data) >= (stuck ? 3 : 15));
        assert_string_equal(brief.data, full.data);
        sw_buf_fini(&full);
        sw_buf_fini(&brief);
    }
    f.stuck_only = f.brief = 0;
    free(expected);
    sw_buf_fini(&mine);
    sw_buf_fini(&got);
    drop_store(st, path);
    free_corpus(&c);
}

static void
test_any_arrival_order_gives_the_same_report(void **state)
{
    struct corpus c;
    struct agg_enr_filter f = { 0 };
    struct agg_policy pol = policy_at("2024-03-15T12:00:00Z");
    struct sw_buf first;

    (void)state;
    load_samples(&c);
    sw_buf_init(&first);
    srand(12345);
    for (int round = 0; round < 12; round++) {
        char path[64];
        struct agg_store *st = new_store(path);
        struct sw_event *ev = malloc(c.n * sizeof *ev);
        struct sw_buf got;

        memcpy(ev, c.ev, c.n * sizeof *ev);
        if (round > 0) {
            for (size_t i = c.n - 1; i > 0; i--) { /* Fisher-Yates */
                size_t j = (size_t)rand() % (i + 1);
                struct sw_event t = ev[i];
                ev[i] = ev[j];
                ev[j] = t;
            }
        }
        /* random batch sizes, and every third round some batches sent twice */
        for (size_t i = 0; i < c.n;) {
            size_t k = 1 + (size_t)rand() % (round % 2 ? 3 : 40);
            if (i + k > c.n)
                k = c.n - i;
            ingest(st, ev + i, k);
            if (round % 3 == 2 && rand() % 2)
                ingest(st, ev + i, k);
            i += k;
        }
        sw_buf_init(&got);
        sw_buf_puts(&got, "");
        report_paged(st, &f, &pol, 7, &got);
        assert_counts_match(path);
        if (round == 0) {
            sw_buf_puts(&first, got.data);
            assert_true(th_count_lines(first.data) >= 15);
        } else if (strcmp(first.data, got.data) != 0) {
            fprintf(stderr, "round %d differs:\n--- in order\n%s--- shuffled\n%s", round,
                    first.data, got.data);
            fail();
        }
        sw_buf_fini(&got);
        free(ev);
        drop_store(st, path);
    }
    sw_buf_fini(&first);
    free_corpus(&c);
}

static void
test_paging_and_filters(void **state)
{
    struct corpus c;
    char path[64];
    struct agg_store *st;
    struct agg_policy pol = policy_at("2024-03-15T12:00:00Z");
    struct sw_buf all, paged, stuck;
    struct agg_enr_filter f = { 0 };

    (void)state;
    load_samples(&c);
    st = new_store(path);
    ingest(st, c.ev, c.n);
    sw_buf_init(&all);
    sw_buf_init(&paged);
    sw_buf_init(&stuck);
    assert_int_equal(report_paged(st, &f, &pol, 10000, &all), 1);
    size_t pages = report_paged(st, &f, &pol, 2, &paged);
    assert_true(pages >= 8);
    assert_string_equal(all.data, paged.data);
    /* stuck as of the next noon: the Android user who dismissed the prompt,
     * two orphan issuances and the pending CA request */
    f.stuck_only = 1;
    report_paged(st, &f, &pol, 100, &stuck);
    assert_int_equal(th_count_lines(stuck.data), 4);
    assert_non_null(strstr(stuck.data, "android-asmith-galaxy|1|8e2f4a6c"));
    /* as of a moment before any of it: nothing is stuck */
    struct agg_policy early = policy_at("2024-03-14T16:00:00Z");
    sw_buf_reset(&stuck);
    report_paged(st, &f, &early, 100, &stuck);
    assert_int_equal(th_count_lines(stuck.data), 2); /* the 2024-03-13 orphans */
    /* a per-status threshold longer than the wait: not stuck */
    pol.threshold_us[AGG_STATUS_WAITING_USER_ACCESS] = 48 * 3600LL * 1000000;
    sw_buf_reset(&stuck);
    report_paged(st, &f, &pol, 100, &stuck);
    assert_int_equal(th_count_lines(stuck.data), 3);
    /* by status and device */
    struct agg_enr_filter g = { 0 };
    g.status_mask = 1u << AGG_STATUS_FAILED;
    sw_buf_reset(&stuck);
    report_paged(st, &g, &pol, 100, &stuck);
    assert_int_equal(th_count_lines(stuck.data), 6);
    g.device = "iphone-bwong";
    sw_buf_reset(&stuck);
    report_paged(st, &g, &pol, 100, &stuck);
    assert_int_equal(th_count_lines(stuck.data), 2);
    /* by certificate: thumbprint with any case, serial, request id */
    struct agg_enr_filter h = { 0 };
    h.cert_key = "3C9A5E71B2D04F8E6A1C7B9D2E4F60A8B1C3D5E7";
    sw_buf_reset(&stuck);
    report_paged(st, &h, &pol, 100, &stuck);
    assert_int_equal(th_count_lines(stuck.data), 1);
    assert_non_null(strstr(stuck.data, "DESKTOP-7QK2M1A.contoso.com|3|6b3a1c2d"));
    h.cert_key = "4713";
    sw_buf_reset(&stuck);
    report_paged(st, &h, &pol, 100, &stuck);
    assert_non_null(strstr(stuck.data, "waiting_user_access"));
    sw_buf_fini(&all);
    sw_buf_fini(&paged);
    sw_buf_fini(&stuck);
    drop_store(st, path);
    free_corpus(&c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples_give_their_stories),
        cmocka_unit_test(test_any_arrival_order_gives_the_same_report),
        cmocka_unit_test(test_paging_and_filters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
