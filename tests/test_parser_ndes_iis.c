/*
 * test_parser_ndes_iis.c - the ndes_iis parser beyond the golden samples:
 * #Fields redefined and reordered, missing columns, "-" values, the
 * default field list, case-insensitive stems, status classes, detail F,
 * garbage, CRLF, an overlong line, the probe.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "th.h"

#define VARIANTS TH_SOURCE_DIR "/tests/data/variants/ndes_iis/"

#define EV(ts, platform, stage)                                                      \
    "{\"source\":\"ndes_iis\",\"platform\":\"" platform "\",\"ts\":\"" ts "\",\"stage\":\"" \
    stage "\"}\n"
#define EVD(ts, platform, stage, detail)                                             \
    "{\"source\":\"ndes_iis\",\"platform\":\"" platform "\",\"ts\":\"" ts "\",\"stage\":\"" \
    stage "\",\"detail\":\"" detail "\"}\n"

#define FIELDS "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username " \
               "c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken\n"

/* Parses in and asserts the exact events; counts may be NULL. */
static void
expect_fmt(const char *format, const char *in, size_t n, const char *want,
           uint64_t counts[AGENT_COUNT_MAX])
{
    struct sw_buf out;
    int e, eq;

    sw_buf_init(&out);
    sw_buf_puts(&out, "");
    e = th_parse_string(format, in, n, NULL, &out, counts);
    eq = th_jsonl_equal(out.data, want);
    sw_buf_fini(&out);
    assert_int_equal(e, SW_OK);
    if (eq != 0)
        fail_msg("%s output differs (see above)", format);
}

static void
expect(const char *in, const char *want, uint64_t counts[AGENT_COUNT_MAX])
{
    expect_fmt("ndes_iis", in, strlen(in), want, counts);
}

/*
 * The variant file: a line before any #Fields (default list), a reordered
 * field list with a case-insensitive stem and operation, one without the
 * query and win32 columns, one without the date column (#Date: supplies it).
 */
static void
iis_fields_redefined_reordered_and_missing(void **state)
{
    char *in = th_read_file(VARIANTS "u_ex_custom.log", NULL);
    char *want = th_read_file(VARIANTS "u_ex_custom.log.expected.jsonl", NULL);
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    assert_non_null(in);
    assert_non_null(want);
    expect(in, want, c);
    /* the mscep line under a field list without cs-uri-query */
    assert_int_equal(c[AGENT_COUNT_MALFORMED], 1);
    assert_int_equal(c[AGENT_COUNT_EVENTS], 8);
    expect_fmt("auto", in, strlen(in), want, NULL);
    free(in);
    free(want);
}

/* The sample's second block: sc-bytes inserted before time-taken. */
static void
iis_fields_change_mid_file(void **state)
{
    (void)state;

    expect(FIELDS
           "2024-08-20 16:49:41 ::1 GET /certsrv/mscep/mscep.dll op=x 443 - ::1 UA - 500 0 5 15\n"
           "#Fields: sc-status date sc-win32-status time cs-uri-stem cs-uri-query sc-substatus\n"
           "500 2024-08-20 1346 16:49:42 /certsrv/mscep/mscep.dll operation=GetCACert 0\n"
           "#Fields: date time cs-uri-stem cs-uri-query sc-status sc-substatus sc-win32-status\n"
           "2024-08-20 16:49:43 /certsrv/mscep/mscep.dll operation=GetCACaps 404 3 50\n",
           EVD("2024-08-20T16:49:42.000000Z", "ndes", "ndes_error", "GetCACert 500.0 win32=1346")
           EVD("2024-08-20T16:49:43.000000Z", "ndes", "ndes_error", "GetCACaps 404.3 win32=50"),
           NULL);
}

static void
iis_lines_before_fields_use_the_default_list(void **state)
{
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    expect("2024-03-14 14:58:04 10.20.0.15 GET /certsrv/mscep/mscep.dll "
           "operation=GetCACert&message=ca 443 - 10.20.0.21 Dalvik/2.1.0 - 500 0 1346 15\n",
           EVD("2024-03-14T14:58:04.000000Z", "ndes", "ndes_error", "GetCACert 500.0 win32=1346"),
           c);
    assert_int_equal(c[AGENT_COUNT_MALFORMED], 0);
    assert_int_equal(c[AGENT_COUNT_NOISE], 0);
}

/* A 2xx keeps only the operation, whatever sc-win32-status says. */
static void
iis_2xx_ignores_win32_status(void **state)
{
    (void)state;

    expect(FIELDS
           "2024-03-14 21:07:02 10.20.0.15 GET /certsrv/mscep/mscep.dll "
           "operation=GetCACaps&message=x 443 - 10.20.0.21 profiled/1.0 - 200 0 64 60014\n"
           "2024-03-14 21:07:03 10.20.0.15 POST /CertificateRegistrationSvc/Certificate/VerifyRequest"
           " - 443 - 10.20.0.21 NDES_Plugin - 201 0 1236 5\n"
           "2024-03-14 21:07:04 10.20.0.15 POST /CertificateRegistrationSvc/Certificate/Notify"
           " - 443 - 10.20.0.21 NDES_Plugin - 299 0 64 5\n",
           EVD("2024-03-14T21:07:02.000000Z", "ndes", "ndes_request", "GetCACaps")
           EV("2024-03-14T21:07:03.000000Z", "connector", "challenge_verified")
           EV("2024-03-14T21:07:04.000000Z", "connector", "reported"),
           NULL);
}

static void
iis_dash_values(void **state)
{
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    expect(FIELDS
           /* substatus and win32 "-": F stops after the status */
           "2024-03-14 10:00:01 - POST /certsrv/mscep/mscep.dll operation=PKIOperation - - - - - "
           "500 - - -\n"
           /* win32 "0" and "000" are not shown */
           "2024-03-14 10:00:02 - POST /certsrv/mscep/mscep.dll operation=PKIOperation - - - - - "
           "502 3 000 -\n"
           /* a "-" status cannot be mapped */
           "2024-03-14 10:00:03 - POST /certsrv/mscep/mscep.dll operation=PKIOperation - - - - - "
           "- - - -\n"
           /* a "-" query has no operation */
           "2024-03-14 10:00:04 - GET /certsrv/mscep/mscep.dll - - - - - - 200 0 0 -\n"
           /* a "-" time */
           "2024-03-14 - - GET /certsrv/mscep/mscep.dll operation=GetCACert - - - - - 200 0 0 -\n"
           /* a "-" stem: the path the prefilter saw is the referer */
           "2024-03-14 10:00:05 - GET - - - - - - https://x/certsrv/mscep/mscep.dll 500 0 0 -\n",
           EVD("2024-03-14T10:00:01.000000Z", "ndes", "ndes_error", "PKIOperation 500")
           EVD("2024-03-14T10:00:02.000000Z", "ndes", "ndes_error", "PKIOperation 502.3"),
           c);
    assert_int_equal(c[AGENT_COUNT_MALFORMED], 1);
    assert_int_equal(c[AGENT_COUNT_BAD_TIME], 1);
    /* the directive, the query-less line and the stem-less line */
    assert_int_equal(c[AGENT_COUNT_NOISE], 3);
}

static void
iis_stem_and_operation_compare_case_insensitively(void **state)
{
    (void)state;

    expect("2024-03-14 10:00:01 s GET /CERTSRV/MSCEP/MSCEP.DLL OPERATION=pkioperation&message=x "
           "443 - c UA - 200 0 0 1\n"
           "2024-03-14 10:00:02 s GET /CertSrv/mscep/Mscep.dll/PKICLIENT.EXE operation=GetCaCert "
           "443 - c UA - 200 0 0 1\n"
           "2024-03-14 10:00:03 s POST /certificateregistrationsvc/CERTIFICATE/verifyREQUEST - "
           "443 - c UA - 500 19 13 1\n"
           "2024-03-14 10:00:04 s POST /CERTIFICATEREGISTRATIONSVC/Certificate/NOTIFY - "
           "443 - c UA - 204 0 0 1\n",
           EVD("2024-03-14T10:00:01.000000Z", "ndes", "ndes_request", "PKIOperation")
           EVD("2024-03-14T10:00:02.000000Z", "ndes", "ndes_request", "GetCACert")
           EVD("2024-03-14T10:00:03.000000Z", "connector", "challenge_failed",
               "VerifyRequest 500.19 win32=13")
           EV("2024-03-14T10:00:04.000000Z", "connector", "reported"),
           NULL);
}

/* Every row of the README table, and the status classes that map to nothing. */
static void
iis_verify_notify_and_status_classes(void **state)
{
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    expect("2024-03-14 11:00:01 s POST /CertificateRegistrationSvc/Certificate/VerifyRequest - "
           "443 - c NDES_Plugin - 201 0 0 1\n"
           "2024-03-14 11:00:02 s POST /CertificateRegistrationSvc/Certificate/VerifyRequest - "
           "443 - c NDES_Plugin - 403 16 2148204809 1\n"
           "2024-03-14 11:00:03 s POST /CertificateRegistrationSvc/Certificate/Notify - "
           "443 - c NDES_Plugin - 204 0 0 1\n"
           "2024-03-14 11:00:04 s POST /CertificateRegistrationSvc/Certificate/Notify - "
           "443 - c NDES_Plugin - 500 0 64 1\n"
           "2024-03-14 11:00:05 s GET /certsrv/mscep/mscep.dll operation=GetCACert "
           "443 - c UA - 404 0 2 1\n"
           /* 1xx and 3xx are neither success nor failure */
           "2024-03-14 11:00:06 s GET /certsrv/mscep/mscep.dll operation=GetCACert "
           "443 - c UA - 304 0 0 1\n"
           "2024-03-14 11:00:07 s POST /CertificateRegistrationSvc/Certificate/Notify - "
           "443 - c NDES_Plugin - 100 0 0 1\n"
           /* not a three-digit status */
           "2024-03-14 11:00:08 s POST /CertificateRegistrationSvc/Certificate/Notify - "
           "443 - c NDES_Plugin - 2000 0 0 1\n",
           EV("2024-03-14T11:00:01.000000Z", "connector", "challenge_verified")
           EVD("2024-03-14T11:00:02.000000Z", "connector", "challenge_failed",
               "VerifyRequest 403.16 win32=2148204809")
           EV("2024-03-14T11:00:03.000000Z", "connector", "reported")
           EVD("2024-03-14T11:00:04.000000Z", "connector", "report_failed",
               "Notify 500.0 win32=64")
           EVD("2024-03-14T11:00:05.000000Z", "ndes", "ndes_error", "GetCACert 404.0 win32=2"),
           c);
    assert_int_equal(c[AGENT_COUNT_NOISE], 2);
    assert_int_equal(c[AGENT_COUNT_MALFORMED], 1);
}

static void
iis_unrelated_urls_are_noise(void **state)
{
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    expect("2024-03-14 12:00:01 s GET / - 443 - c UA - 200 0 0 1\n"
           "2024-03-14 12:00:02 s GET /certsrv/ - 443 - c UA - 401 2 5 1\n"
           "2024-03-14 12:00:03 s GET /certsrv/mscep_admin/ - 443 - c UA - 500 0 0 1\n"
           "2024-03-14 12:00:04 s GET /favicon.ico - 443 - c UA - 404 0 2 1\n"
           "2024-03-14 12:00:05 s GET /certsrv/mscep/mscep.dll operation=GetNextCACert "
           "443 - c UA - 200 0 0 1\n"
           "2024-03-14 12:00:06 s GET /certsrv/mscep/mscep.dllx operation=GetCACert "
           "443 - c UA - 200 0 0 1\n"
           "2024-03-14 12:00:07 s POST /CertificateRegistrationSvc/Certificate/Other - "
           "443 - c UA - 500 0 0 1\n"
           /* the path only in the query or the referer */
           "2024-03-14 12:00:08 s GET /login next=/certsrv/mscep/mscep.dll "
           "443 - c UA https://x/certsrv/mscep/mscep.dll 500 0 0 1\n"
           "2024-03-14 12:00:09 s GET /certsrv/mscep/mscep.dll operation=GetCACertX "
           "443 - c UA - 200 0 0 1\n",
           "", c);
    assert_int_equal(c[AGENT_COUNT_NOISE], 9);
    assert_int_equal(c[AGENT_COUNT_EVENTS], 0);
}

static void
iis_garbage_short_lines_crlf_and_no_final_newline(void **state)
{
    static const char in[] =
        "#Software: Microsoft Internet Information Services 10.0\r\n"
        "#Fields: date time cs-uri-stem cs-uri-query sc-status sc-substatus sc-win32-status\r\n"
        "\r\n"
        "garbage /mscep \xff\xfe\r\n"                                   /* malformed: 3 fields */
        "2024-03-14 10:00:01 /certsrv/mscep/mscep.dll\r\n"              /* malformed: cut */
        "2024-13-14 10:00:02 /certsrv/mscep/mscep.dll operation=GetCACert 200 0 0\r\n" /* bad_time */
        "2024-03-14 25:00:03 /certsrv/mscep/mscep.dll operation=GetCACert 200 0 0\r\n" /* bad_time */
        "\x01\x02\x03 \x04 /CertificateRegistrationSvc/ \x7f \x80 \xc3 \xa9\r\n" /* noise: stem */
        "2024-03-14 10:00:04 /certsrv/mscep/mscep.dll operation=GetCACert 200 0 0\t\r\n"
        "2024-03-14 10:00:05 /certsrv/mscep/mscep.dll operation=GetCACaps 500 0 0";
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    expect_fmt("ndes_iis", in, sizeof in - 1,
               EVD("2024-03-14T10:00:04.000000Z", "ndes", "ndes_request", "GetCACert")
               EVD("2024-03-14T10:00:05.000000Z", "ndes", "ndes_error", "GetCACaps 500.0"),
               c);
    assert_int_equal(c[AGENT_COUNT_LINES], 10);
    assert_int_equal(c[AGENT_COUNT_MALFORMED], 2);
    assert_int_equal(c[AGENT_COUNT_BAD_TIME], 2);
    assert_int_equal(c[AGENT_COUNT_NOISE], 4);
    assert_int_equal(c[AGENT_COUNT_EVENTS], 2);
}

/* More columns than the table holds: the directive counts, later columns are unaddressable. */
static void
iis_too_many_fields(void **state)
{
    struct sw_buf in;
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    sw_buf_init(&in);
    sw_buf_puts(&in, "#Fields: date time cs-uri-stem cs-uri-query");
    for (int i = 0; i < 70; i++)
        sw_buf_printf(&in, " x-%d", i);
    sw_buf_puts(&in, " sc-status\n2024-03-14 10:00:01 /certsrv/mscep/mscep.dll operation=GetCACert");
    for (int i = 0; i < 70; i++)
        sw_buf_puts(&in, " v");
    sw_buf_puts(&in, " 200\n");
    expect_fmt("ndes_iis", in.data, in.len, "", c);
    assert_int_equal(c[AGENT_COUNT_MALFORMED], 2);
    sw_buf_fini(&in);
}

/* A PKIOperation GET whose message runs past AGENT_MAX_LINE loses its status columns. */
static void
iis_overlong_line_is_counted(void **state)
{
    static const char head[] = "2024-03-14 21:07:03 s GET /certsrv/mscep/mscep.dll "
                               "operation=PKIOperation&message=";
    static const char tail[] = " 443 - c UA - 500 0 0 1\n"
                               "2024-03-14 21:07:04 s GET /certsrv/mscep/mscep.dll "
                               "operation=GetCACert 443 - c UA - 200 0 0 1\n";
    size_t body = AGENT_MAX_LINE + 1000;
    size_t n = sizeof head - 1 + body + sizeof tail - 1;
    char *in = malloc(n);
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    assert_non_null(in);
    memcpy(in, head, sizeof head - 1);
    memset(in + sizeof head - 1, 'M', body);
    memcpy(in + sizeof head - 1 + body, tail, sizeof tail - 1);
    expect_fmt("ndes_iis", in, n, EVD("2024-03-14T21:07:04.000000Z", "ndes", "ndes_request",
                                      "GetCACert"), c);
    assert_int_equal(c[AGENT_COUNT_OVERLONG], 1);
    assert_int_equal(c[AGENT_COUNT_MALFORMED], 1);
    free(in);
}

static void
iis_probe_scores(void **state)
{
    const struct agent_parser *p = agent_parser_find("ndes_iis");
    static const char sw[] = "#Software: Microsoft Internet Information Services 10.0\n";
    static const char fields[] = "#Version: 1.0\n#Fields: date time cs-uri-stem sc-status\n";
    static const char no_stem[] = "#Fields: date time s-ip sc-status\n";
    static const char data[] = "2024-03-14 21:07:04 s GET /certsrv/mscep/mscep.dll "
                               "operation=GetCACert 443 - c UA - 200 0 0 1\n";
    static const char other[] = "2024-03-14 21:07:04 s GET /index.html - 443 - c UA - 200 0 0 1\n";
    (void)state;

    assert_int_equal(p->probe(sw, sizeof sw - 1), 100);
    assert_int_equal(p->probe(fields, sizeof fields - 1), 95);
    assert_int_equal(p->probe(no_stem, sizeof no_stem - 1), 0);
    assert_int_equal(p->probe(data, sizeof data - 1), 50);
    assert_int_equal(p->probe(other, sizeof other - 1), 0);
    assert_int_equal(p->probe(sw, 20), 0); /* cut before the product name */
    assert_int_equal(p->probe("", 0), 0);
}

/* No sample of another format is claimed; our own samples all are. */
static void
iis_probe_leaves_other_formats_alone(void **state)
{
    static const char *const folders[] = { "android_omadm", "ios_console", "windows_event_xml",
                                           "ca_certutil_csv", "ndes_iis" };
    const struct agent_parser *p = agent_parser_find("ndes_iis");
    int seen = 0;
    (void)state;

    for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
        char dir[1024];
        struct dirent *de;
        DIR *d;
        snprintf(dir, sizeof dir, "%s/tests/data/samples/%s", TH_SOURCE_DIR, folders[i]);
        d = opendir(dir);
        assert_non_null(d);
        while ((de = readdir(d)) != NULL) {
            char path[2048];
            size_t n;
            char *buf;
            if (de->d_name[0] == '.' || strstr(de->d_name, ".expected.jsonl"))
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            buf = th_read_file(path, &n);
            assert_non_null(buf);
            int score = p->probe(buf, n);
            print_message("%s: %d\n", path, score);
            if (strcmp(folders[i], "ndes_iis") == 0)
                assert_int_equal(score, 100);
            else
                assert_int_equal(score, 0);
            free(buf);
            seen++;
        }
        closedir(d);
    }
    assert_true(seen >= 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(iis_fields_redefined_reordered_and_missing),
        cmocka_unit_test(iis_fields_change_mid_file),
        cmocka_unit_test(iis_lines_before_fields_use_the_default_list),
        cmocka_unit_test(iis_2xx_ignores_win32_status),
        cmocka_unit_test(iis_dash_values),
        cmocka_unit_test(iis_stem_and_operation_compare_case_insensitively),
        cmocka_unit_test(iis_verify_notify_and_status_classes),
        cmocka_unit_test(iis_unrelated_urls_are_noise),
        cmocka_unit_test(iis_garbage_short_lines_crlf_and_no_final_newline),
        cmocka_unit_test(iis_too_many_fields),
        cmocka_unit_test(iis_overlong_line_is_counted),
        cmocka_unit_test(iis_probe_scores),
        cmocka_unit_test(iis_probe_leaves_other_formats_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
