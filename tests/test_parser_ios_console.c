/*
 * test_parser_ios_console.c - the ios_console parser beyond the golden
 * samples: the same flow as Console text, RTF and `log show`; offsets,
 * midnight wrap, the date from --date or mtime; separators, CRLF, garbage,
 * an overlong line; NSError details; RTF escapes; the probe.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "th.h"

#define VARIANTS TH_SOURCE_DIR "/tests/data/variants/ios_console/"

/* One event line as the README writes it; profile and detail may be NULL. */
#define EV(ts, stage) \
    "{\"source\":\"ios_console\",\"platform\":\"ios\",\"ts\":\"" ts "\",\"stage\":\"" stage \
    "\",\"cert\":\"scep\"}\n"
#define EVP(ts, stage, profile)                                                              \
    "{\"source\":\"ios_console\",\"platform\":\"ios\",\"ts\":\"" ts "\",\"stage\":\"" stage \
    "\",\"cert\":\"scep\",\"profile\":\"" profile "\"}\n"
#define EVD(ts, stage, detail)                                                               \
    "{\"source\":\"ios_console\",\"platform\":\"ios\",\"ts\":\"" ts "\",\"stage\":\"" stage \
    "\",\"cert\":\"scep\",\"detail\":\"" detail "\"}\n"

#define KEY "ModelName=AC_fd19e485-e013-44c2-b74d-633899d2861d/" \
            "LogicalName_7a4c2e19_5b3d_4f6a_8e21_c9d0b1a2f3e4;Hash=734400982"
#define PROFILE "7a4c2e19-5b3d-4f6a-8e21-c9d0b1a2f3e4"

static struct agent_parse_opts
on_date(int y, int m, int d)
{
    struct agent_parse_opts o = { 0 };
    o.has_date = 1;
    o.date_y = y;
    o.date_m = m;
    o.date_d = d;
    return o;
}

/* Parses in with format and asserts the exact events; counts may be NULL. */
static void
expect_len(const char *format, const char *in, size_t n, const struct agent_parse_opts *o,
           const char *want, uint64_t counts[AGENT_COUNT_MAX])
{
    struct sw_buf out;
    int e, eq;

    sw_buf_init(&out);
    sw_buf_puts(&out, "");
    e = th_parse_string(format, in, n, o, &out, counts);
    eq = th_jsonl_equal(out.data, want);
    sw_buf_fini(&out);
    assert_int_equal(e, SW_OK);
    if (eq != 0)
        fail_msg("%s output differs (see above)", format);
}

static void
expect(const char *in, const struct agent_parse_opts *o, const char *want,
       uint64_t counts[AGENT_COUNT_MAX])
{
    expect_len("ios_console", in, strlen(in), o, want, counts);
}

static char *
read_variant(const char *name)
{
    char path[1024];
    char *s;

    snprintf(path, sizeof path, "%s%s", VARIANTS, name);
    s = th_read_file(path, NULL);
    assert_non_null(s);
    return s;
}

/* One flow as Console text, TextEdit RTF, log show and log show --style compact. */
static void
ios_text_rtf_and_log_show_give_the_same_events(void **state)
{
    static const char *const files[] = { "flow.txt", "flow.rtf", "flow-logshow.txt",
                                         "flow-compact.txt" };
    char *want = read_variant("flow.expected.jsonl");
    (void)state;

    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *in = read_variant(files[i]);
        /* compact has no offset: the zone comes from --tz */
        struct agent_parse_opts o = on_date(2024, 3, 14);
        if (strcmp(files[i], "flow-compact.txt") == 0)
            o.tz_off_min = -300;
        print_message("%s\n", files[i]);
        expect_len("ios_console", in, strlen(in), &o, want, NULL);
        expect_len("auto", in, strlen(in), &o, want, NULL);
        free(in);
    }
    free(want);
}

static void
ios_crlf_lines_parse_like_lf(void **state)
{
    char *in = read_variant("flow.txt"), *want = read_variant("flow.expected.jsonl");
    size_t n = strlen(in), k = 0;
    char *crlf = malloc(2 * n + 1);
    struct agent_parse_opts o = on_date(2024, 3, 14);
    (void)state;

    assert_non_null(crlf);
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\n')
            crlf[k++] = '\r';
        crlf[k++] = in[i];
    }
    expect_len("ios_console", crlf, k, &o, want, NULL);
    free(crlf);
    free(in);
    free(want);
}

static void
ios_offset_with_or_without_space(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    (void)state;

    expect("debug 19:42:10.118204 -0500 profiled Sending CSR via GET.\n"
           "debug 19:42:10.118204-0500 profiled Sending CSR via GET.\n"
           "debug 19:42:10.118204 -05:00 profiled Sending CSR via GET.\n"
           "debug 19:42:10.118204+0530 profiled Sending CSR via GET.\n"
           "debug 19:42:10.118204Z profiled Sending CSR via GET.\n"
           "debug 19:42:10 -0500 profiled Sending CSR via GET.\n",
           &o,
           EV("2024-03-15T00:42:10.118204Z", "csr_generated")
           EV("2024-03-15T00:42:10.118204Z", "csr_generated")
           EV("2024-03-15T00:42:10.118204Z", "csr_generated")
           EV("2024-03-14T14:12:10.118204Z", "csr_generated")
           EV("2024-03-14T19:42:10.118204Z", "csr_generated")
           EV("2024-03-15T00:42:10.000000Z", "csr_generated"),
           NULL);
}

/* A line with no offset reads its time in --tz. */
static void
ios_missing_offset_uses_tz_option(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    (void)state;

    o.tz_off_min = 60;
    expect("default 19:42:10.5 profiled Issued certificate received.\n", &o,
           EV("2024-03-14T18:42:10.500000Z", "enroll_issued"), NULL);
}

static void
ios_midnight_wrap_advances_the_local_date(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    (void)state;

    expect("default 23:59:58.000000 -0500 profiled Sleeping before polling SCEP server again.\n"
           "default 23:59:59.500000 -0500 profiled Attempting to retrieve issued certificate...\n"
           /* wrapped: the local date is now 03-15 */
           "default 00:00:03.000000 -0500 profiled Issued certificate received.\n"
           /* a second out of order: the same day, no further advance */
           "default 00:00:02.500000 -0500 profiled Sending CSR via POST.\n"
           "default 23:40:00.000000 -0500 profiled Sending CSR via GET.\n"
           /* three hours back on another offset is travel, not a wrap */
           "default 20:40:00.000000 -0800 profiled Sending CSR via GET.\n"
           /* 40 minutes back is out of order too, not a new day */
           "default 23:00:00.000000 -0500 profiled Sending CSR via GET.\n"
           /* 22 hours back: the next day */
           "default 01:00:00.000000 -0500 profiled Sending CSR via GET.\n",
           &o,
           EV("2024-03-15T04:59:58.000000Z", "enroll_pending")
           EV("2024-03-15T05:00:03.000000Z", "enroll_issued")
           EV("2024-03-15T05:00:02.500000Z", "csr_generated")
           EV("2024-03-16T04:40:00.000000Z", "csr_generated")
           EV("2024-03-16T04:40:00.000000Z", "csr_generated")
           EV("2024-03-16T04:00:00.000000Z", "csr_generated")
           EV("2024-03-16T06:00:00.000000Z", "csr_generated"),
           NULL);
}

static void
ios_midnight_wrap_crosses_month_and_year(void **state)
{
    struct agent_parse_opts o = on_date(2024, 12, 31);
    (void)state;

    expect("default 23:59:59.000000 +0000 profiled Sending CSR via GET.\n"
           "default 00:00:01.000000 +0000 profiled Issued certificate received.\n",
           &o,
           EV("2024-12-31T23:59:59.000000Z", "csr_generated")
           EV("2025-01-01T00:00:01.000000Z", "enroll_issued"),
           NULL);
    o = on_date(2024, 2, 28);
    expect("default 23:59:59.000000 +0000 profiled Sending CSR via GET.\n"
           "default 00:00:01.000000 +0000 profiled Issued certificate received.\n",
           &o,
           EV("2024-02-28T23:59:59.000000Z", "csr_generated")
           EV("2024-02-29T00:00:01.000000Z", "enroll_issued"),
           NULL);
}

/* log show lines carry their own date; --date does not move them, nor wrap. */
static void
ios_dated_lines_ignore_the_date_option(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    (void)state;

    expect("2023-12-31 23:59:59.250000-0500 0x2f1a     Default     0x0     312    0    profiled: "
           "[com.apple.ManagedConfiguration:SCEP] Issued certificate received.\n"
           "2024-01-01 00:00:01.000000-0500 0x2f1a     Default     0x0     312    0    profiled: "
           "Sending CSR via POST.\n"
           /* syslog style: host, then process[pid]: */
           "2024-01-02 08:00:00.000000+0100  Johns-iPhone profiled[312]: (ManagedConfiguration) "
           "Sending CSR via GET.\n",
           &o,
           EV("2024-01-01T04:59:59.250000Z", "enroll_issued")
           EV("2024-01-01T05:00:01.000000Z", "csr_generated")
           EV("2024-01-02T07:00:00.000000Z", "csr_generated"),
           NULL);
}

/* Without --date the driver passes the file's modification date, in local time. */
static void
ios_date_defaults_to_file_mtime(void **state)
{
    static const char in[] = "default 10:00:00.000000 +0000 profiled Sending CSR via GET.\n";
    struct agent_parse_opts o = { 0 };
    struct timespec ts[2];
    struct sw_buf out;
    char *path = th_write_temp(in, sizeof in - 1);
    char *old_tz = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    (void)state;

    assert_non_null(path);
    /* 2024-06-01T23:30:00Z: the 1st in UTC, the 2nd nine hours east */
    ts[0].tv_sec = ts[1].tv_sec = 1717284600;
    ts[0].tv_nsec = ts[1].tv_nsec = 0;
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);

    setenv("TZ", "UTC0", 1);
    tzset();
    sw_buf_init(&out);
    sw_buf_puts(&out, "");
    assert_int_equal(th_parse_path("ios_console", path, &o, &out, NULL), SW_OK);
    assert_int_equal(th_jsonl_equal(out.data, EV("2024-06-01T10:00:00.000000Z", "csr_generated")), 0);
    sw_buf_reset(&out);
    sw_buf_puts(&out, "");
    setenv("TZ", "JST-9", 1);
    tzset();
    assert_int_equal(th_parse_path("ios_console", path, &o, &out, NULL), SW_OK);
    assert_int_equal(th_jsonl_equal(out.data, EV("2024-06-02T10:00:00.000000Z", "csr_generated")), 0);

    if (old_tz)
        setenv("TZ", old_tz, 1);
    else
        unsetenv("TZ");
    tzset();
    free(old_tz);
    sw_buf_fini(&out);
    unlink(path);
    free(path);
}

static void
ios_tabs_runs_of_blanks_and_mixed_case_types(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    expect("DeBuG\t19:42:10.000001\t-0500\tprofiled\tGetCACert returned a CA certificate.\n"
           "FAULT   19:42:10.000002  -0500    profiled      Issued certificate received.   \n"
           "Info\t\t19:42:10.000003 -0500 \t profiled\t\tSending CSR via GET.\n"
           "ERROR 19:42:10.000004 -0500 profiled Cannot retrieve SCEP identity: "
           "Domain : MCSCEPErrorDomain Code : 22005\n"
           "Default 19:42:10.000005 -0500 profiled Sleeping before polling SCEP server again.\n"
           /* not a type word: the line does not split */
           "notice 19:42:10.000006 -0500 profiled Sleeping before polling SCEP server again.\n",
           &o,
           EV("2024-03-15T00:42:10.000001Z", "cacert_received")
           EV("2024-03-15T00:42:10.000002Z", "enroll_issued")
           EV("2024-03-15T00:42:10.000003Z", "csr_generated")
           EVD("2024-03-15T00:42:10.000004Z", "enroll_failed", "MCSCEPErrorDomain 22005")
           EV("2024-03-15T00:42:10.000005Z", "enroll_pending"),
           c);
    assert_int_equal(c[AGENT_COUNT_EVENTS], 5);
    assert_int_equal(c[AGENT_COUNT_MALFORMED], 1);
}

static void
ios_other_processes_are_noise(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    expect("default 19:42:10.1 -0500 mdmd Issued certificate received.\n"
           "default 19:42:10.2 -0500 profiledx Issued certificate received.\n"
           "default 19:42:10.3 -0500 mdmd Told profiled to install: Issued certificate received.\n"
           "2024-03-14 19:42:10.4-0500 0x1 Default 0x0 90 0 mdmd: profiled Issued certificate received.\n"
           "2024-03-14 19:42:10.5 Df mdmd[90:1] profiled Issued certificate received.\n"
           "default 19:42:10.6 -0500 apsd Connection established\n",
           &o, "", c);
    assert_int_equal(c[AGENT_COUNT_EVENTS], 0);
    assert_int_equal(c[AGENT_COUNT_NOISE], 6);
    assert_int_equal(c[AGENT_COUNT_MALFORMED], 0);
}

/* profiled lines that are not mapped (I14, I15) or carry no usable operation. */
static void
ios_unmapped_profiled_messages_are_noise(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    expect("debug 19:42:10.1 -0500 profiled URL request succeeded.\n"
           "debug 19:42:10.2 -0500 profiled URL request failed. Status code: 500\n"
           "error 19:42:10.3 -0500 profiled Rolling back installation of profile\n"
           "debug 19:42:10.4 -0500 profiled Performing synchronous URL request: <private>\n"
           "debug 19:42:10.5 -0500 profiled Performing synchronous URL request: "
           "https://x/certsrv/mscep/mscep.dll?operation=GetNextCACert\n"
           "debug 19:42:10.6 -0500 profiled Performing synchronous URL request: "
           "https://x/certsrv/mscep/mscep.dll?xoperation=GetCACert\n"
           "default 19:42:10.7 -0500 profiled Profile \xe2\x80\x9c" "com.contoso.wifi\xe2\x80\x9d installed.\n"
           "default 19:42:10.8 -0500 profiled Profile \xe2\x80\x9cwww.windowsintune.com.SCEP." KEY
           "\xe2\x80\x9d removed.\n"
           "debug 19:42:10.9 -0500 profiled Adding dependent A to parent B in domain Other to system\n",
           &o, "", c);
    assert_int_equal(c[AGENT_COUNT_NOISE], 9);
    assert_int_equal(c[AGENT_COUNT_EVENTS], 0);
}

static void
ios_dependent_lines(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    expect("debug 19:42:10.1 -0500 profiled Adding dependent " KEY
           " to parent 6365 in domain PayloadDependencyDomainCertificate to system\n"
           /* the key on the parent side, any other domain */
           "debug 19:42:10.2 -0500 profiled Adding dependent 6365 to parent " KEY
           " in domain SomethingElse to system\n"
           "debug 19:42:10.3 -0500 profiled Adding dependent Microsoft.Profiles.MDM to parent "
           "www.windowsintune.com.SCEP." KEY " in domain ManagedProfileToManagingProfile to system\n"
           /* a SCEP parent whose key the log cut short: installing, no profile */
           "debug 19:42:10.4 -0500 profiled Adding dependent Microsoft.Profiles.MDM to parent "
           "www.windowsintune.com.SCEP.ModelName=AC_x in domain ManagedProfileToManagingProfile\n"
           /* not a SCEP parent */
           "debug 19:42:10.5 -0500 profiled Adding dependent Microsoft.Profiles.MDM to parent "
           "com.contoso.wifi in domain ManagedProfileToManagingProfile to system\n"
           /* the line breaks off */
           "debug 19:42:10.6 -0500 profiled Adding dependent " KEY " to parent\n",
           &o,
           EVP("2024-03-15T00:42:10.100000Z", "profile_received", PROFILE)
           EVP("2024-03-15T00:42:10.200000Z", "profile_received", PROFILE)
           EVP("2024-03-15T00:42:10.300000Z", "installing", PROFILE)
           EV("2024-03-15T00:42:10.400000Z", "installing"),
           c);
    assert_int_equal(c[AGENT_COUNT_NOISE], 1);
    assert_int_equal(c[AGENT_COUNT_MALFORMED], 1);
}

static void
ios_profile_quotes_of_every_kind(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    (void)state;

    expect("default 19:44:13.1 -0500 profiled Profile \xe2\x80\x9cwww.windowsintune.com.SCEP." KEY
           "\xe2\x80\x9d installed.\n"
           "default 19:44:13.2 -0500 profiled Profile \"www.windowsintune.com.SCEP." KEY "\" installed.\n"
           /* RTF escapes in a line outside an RTF document, and raw Windows-1252 */
           "default 19:44:13.3 -0500 profiled Profile \\'93www.windowsintune.com.SCEP." KEY
           "\\'94 installed.\n"
           "default 19:44:13.4 -0500 profiled Profile \x93www.windowsintune.com.SCEP." KEY
           "\x94 installed.\n",
           &o,
           EVP("2024-03-15T00:44:13.100000Z", "installed", PROFILE)
           EVP("2024-03-15T00:44:13.200000Z", "installed", PROFILE)
           EVP("2024-03-15T00:44:13.300000Z", "installed", PROFILE)
           EVP("2024-03-15T00:44:13.400000Z", "installed", PROFILE),
           NULL);
}

static void
ios_nserror_detail_forms(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    char *in, *want;
    size_t n;
    (void)state;

    expect("error 19:42:10.1 -0500 profiled Cannot retrieve SCEP identity: Error "
           "Domain=MCSCEPErrorDomain Code=22005 \"A network error occurred.\" "
           "UserInfo={NSUnderlyingError=0x1 {Error Domain=NSURLErrorDomain Code=-1001}}\n"
           "error 19:42:10.2 -0500 profiled Could not generate public/private key pair: "
           "The operation couldn\xe2\x80\x99t be completed.  \n"
           "error 19:42:10.3 -0500 profiled Could not retrieve issued certificate: NSError: "
           "Desc : bad. Domain : MCSCEPErrorDomain Type : MCFatalError\n"
           "error 19:42:10.4 -0500 profiled Could not retrieve issued certificate:\n",
           &o,
           EVD("2024-03-15T00:42:10.100000Z", "enroll_failed", "MCSCEPErrorDomain 22005")
           EVD("2024-03-15T00:42:10.200000Z", "enroll_failed",
               "The operation couldn\xe2\x80\x99t be completed.")
           EVD("2024-03-15T00:42:10.300000Z", "enroll_failed", "MCSCEPErrorDomain")
           EV("2024-03-15T00:42:10.400000Z", "enroll_failed"),
           NULL);

    /* a free-text reason is kept to 1024 bytes */
    n = 3000;
    in = malloc(n + 200);
    want = malloc(1200 + 200);
    assert_non_null(in);
    assert_non_null(want);
    int k = snprintf(in, 200, "error 19:42:10.5 -0500 profiled Cannot retrieve SCEP identity: ");
    memset(in + k, 'x', n);
    memcpy(in + k + n, "\n", 2);
    k = snprintf(want, 200, "{\"source\":\"ios_console\",\"platform\":\"ios\",\"ts\":"
                            "\"2024-03-15T00:42:10.500000Z\",\"stage\":\"enroll_failed\","
                            "\"cert\":\"scep\",\"detail\":\"");
    memset(want + k, 'x', 1024);
    memcpy(want + k + 1024, "\"}\n", 4);
    expect(in, &o, want, NULL);
    free(in);
    free(want);
}

static void
ios_rtf_escapes_and_unicode(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    (void)state;

    expect("{\\rtf1\\ansi\\ansicpg1252\\cocoartf2639\n"
           "{\\fonttbl\\f0\\fswiss\\fcharset0 Helvetica;}\n"
           "\\f0\\fs24 \\cf0 default\\tab 19:44:13.1 -0500\\tab profiled\\tab Profile "
           "\\uc0\\u8220 www.windowsintune.com.SCEP." KEY "\\u8221  installed.\\\n"
           "default 19:44:13.2 -0500 profiled Profile \\u8220?www.windowsintune.com.SCEP." KEY
           "\\u8221? installed.\\\n"
           "default 19:44:13.3 -0500 profiled Profile \\ldblquote www.windowsintune.com.SCEP." KEY
           "\\rdblquote  installed.\\\n"
           "\\cf2 error\\cf0  19:44:13.4 -0500 {\\b profiled} Could not retrieve issued "
           "certificate: \\{odd\\} \\\\path\\\\ \\'e9t\\'e9 \\u-10179?\\u-8704?\\  \n"
           "}\n",
           &o,
           EVP("2024-03-15T00:44:13.100000Z", "installed", PROFILE)
           EVP("2024-03-15T00:44:13.200000Z", "installed", PROFILE)
           EVP("2024-03-15T00:44:13.300000Z", "installed", PROFILE)
           EVD("2024-03-15T00:44:13.400000Z", "enroll_failed",
               "{odd} \\\\path\\\\ \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80"),
           NULL);
}

/* The samples' trailing "\" marks RTF text even when the header is not in view. */
static void
ios_rtf_line_without_header(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    (void)state;

    expect("Default 18:30:57.320616 -0500 profiled Profile \\'93www.windowsintune.com.SCEP."
           "ModelName=AC_51bad41f.../LogicalName_1892fe4c...;Hash=-912418295\\'94 installed.\\ \n",
           &o, EVP("2024-03-14T23:30:57.320616Z", "installed", "1892fe4c"), NULL);
}

static void
ios_garbage_is_counted_and_survived(void **state)
{
    static const char in[] =
        "profiled profiled profiled\n"                              /* malformed */
        "\xfe\xff\x00 binary \x00 profiled\n"                       /* dropped by the driver */
        "\xc3\x28 not utf-8 \xa0\xa1 profiled\n"                    /* malformed */
        "default 19:61:00.000 -0500 profiled Issued certificate received.\n" /* bad_time */
        "default 19:42:10.1 +9999 profiled Issued certificate received.\n"   /* bad_time */
        "default 24:00:00 -0500 profiled Issued certificate received.\n"     /* bad_time */
        "error 19:42:10.1 -0500 profiled \xff\xfe\xfd\n"              /* noise */
        "}\n"                                                       /* noise */
        "{\\}\\'\\u\n"                                               /* noise */
        "debug 1:2:3 -0500 profiled\n"                              /* bad_time */
        "debug 19:42:10.118204 -0500 profiled\n"                    /* noise: no message */
        "default 19:42:11.5 -0500 profiled Issued certificate received.\n";
    struct agent_parse_opts o = on_date(2024, 3, 14);
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    expect_len("ios_console", in, sizeof in - 1, &o,
               EV("2024-03-15T00:42:11.500000Z", "enroll_issued"), c);
    assert_int_equal(c[AGENT_COUNT_LINES], 12);
    assert_int_equal(c[AGENT_COUNT_BINARY], 1);
    assert_int_equal(c[AGENT_COUNT_MALFORMED], 2);
    assert_int_equal(c[AGENT_COUNT_BAD_TIME], 4);
    assert_int_equal(c[AGENT_COUNT_NOISE], 4);
    assert_int_equal(c[AGENT_COUNT_EVENTS], 1);
}

/* A line past AGENT_MAX_LINE arrives cut; what it starts with still counts. */
static void
ios_overlong_line_is_cut_not_lost(void **state)
{
    static const char head[] = "debug 19:42:10.702688 -0500 profiled Performing synchronous URL "
                               "request: https://x/certsrv/mscep/mscep.dll?operation=PKIOperation"
                               "&message=";
    static const char tail[] = "\ndefault 19:42:11.940876 -0500 profiled Sleeping before "
                               "polling SCEP server again.\n";
    size_t body = AGENT_MAX_LINE + AGENT_MAX_LINE / 2;
    size_t n = sizeof head - 1 + body + sizeof tail - 1;
    char *in = malloc(n);
    struct agent_parse_opts o = on_date(2024, 3, 14);
    uint64_t c[AGENT_COUNT_MAX] = { 0 };
    (void)state;

    assert_non_null(in);
    memcpy(in, head, sizeof head - 1);
    memset(in + sizeof head - 1, 'A', body);
    memcpy(in + sizeof head - 1 + body, tail, sizeof tail - 1);
    expect_len("ios_console", in, n, &o,
               EV("2024-03-15T00:42:10.702688Z", "enroll_requested")
               EV("2024-03-15T00:42:11.940876Z", "enroll_pending"),
               c);
    assert_int_equal(c[AGENT_COUNT_OVERLONG], 1);
    free(in);
}

static void
ios_final_line_without_newline(void **state)
{
    struct agent_parse_opts o = on_date(2024, 3, 14);
    (void)state;

    expect("debug 19:42:10.1 -0500 profiled Sending CSR via GET.\n"
           "default 19:42:11.2 -0500 profiled Issued certificate received.",
           &o,
           EV("2024-03-15T00:42:10.100000Z", "csr_generated")
           EV("2024-03-15T00:42:11.200000Z", "enroll_issued"),
           NULL);
}

/* A Console export can run for pages before its first profiled line. */
static void
ios_probe_scans_past_pages_of_other_processes(void **state)
{
    struct sw_buf in;
    struct agent_parse_opts o = on_date(2024, 3, 14);
    const struct agent_parser *p = agent_parser_find("ios_console");
    (void)state;

    sw_buf_init(&in);
    for (int i = 0; i < 5000; i++)
        sw_buf_printf(&in, "default 19:%02d:%02d.%06d -0500 SpringBoard Frame %d presented "
                           "for display 0x1 at 2024-03-14 19:00:00\n", i / 60 % 60, i % 60, i, i);
    sw_buf_puts(&in, "default 19:59:59.000001 -0500 profiled Issued certificate received.\n");
    assert_int_equal(p->probe(in.data, in.len), 90);
    expect_len("auto", in.data, in.len, &o, EV("2024-03-15T00:59:59.000001Z", "enroll_issued"),
               NULL);
    sw_buf_fini(&in);

    assert_int_equal(p->probe("Timestamp                       Thread     Type        "
                              "Activity             PID    TTL  \n", 72), 80);
    assert_int_equal(p->probe("Timestamp               Ty Process[PID:TID]\n", 44), 80);
    assert_int_equal(p->probe("", 0), 0);
    /* cut in the middle of a line */
    assert_int_equal(p->probe("default 19:42:10.1 -0500 prof", 29), 0);
}

/* No sample of another format is claimed; our own samples all are. */
static void
ios_probe_leaves_other_formats_alone(void **state)
{
    static const char *const folders[] = { "android_omadm", "ios_console", "windows_event_xml",
                                           "ca_certutil_csv", "ndes_iis" };
    const struct agent_parser *p = agent_parser_find("ios_console");
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
            if (strcmp(folders[i], "ios_console") == 0)
                assert_int_equal(score, 90);
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
        cmocka_unit_test(ios_text_rtf_and_log_show_give_the_same_events),
        cmocka_unit_test(ios_crlf_lines_parse_like_lf),
        cmocka_unit_test(ios_offset_with_or_without_space),
        cmocka_unit_test(ios_missing_offset_uses_tz_option),
        cmocka_unit_test(ios_midnight_wrap_advances_the_local_date),
        cmocka_unit_test(ios_midnight_wrap_crosses_month_and_year),
        cmocka_unit_test(ios_dated_lines_ignore_the_date_option),
        cmocka_unit_test(ios_date_defaults_to_file_mtime),
        cmocka_unit_test(ios_tabs_runs_of_blanks_and_mixed_case_types),
        cmocka_unit_test(ios_other_processes_are_noise),
        cmocka_unit_test(ios_unmapped_profiled_messages_are_noise),
        cmocka_unit_test(ios_dependent_lines),
        cmocka_unit_test(ios_profile_quotes_of_every_kind),
        cmocka_unit_test(ios_nserror_detail_forms),
        cmocka_unit_test(ios_rtf_escapes_and_unicode),
        cmocka_unit_test(ios_rtf_line_without_header),
        cmocka_unit_test(ios_garbage_is_counted_and_survived),
        cmocka_unit_test(ios_overlong_line_is_cut_not_lost),
        cmocka_unit_test(ios_final_line_without_newline),
        cmocka_unit_test(ios_probe_scans_past_pages_of_other_processes),
        cmocka_unit_test(ios_probe_leaves_other_formats_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
