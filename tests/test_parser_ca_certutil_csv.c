/*
 * test_parser_ca_certutil_csv.c - ca_certutil_csv edge cases beyond the
 * golden sample: column order, RFC 4180 quoting across lines, EMPTY,
 * footers, field counts, every disposition, en-US dates, the Binary
 * Certificate (checked against the openssl CLI), header-less input, probe.
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

#define VARIANTS TH_SOURCE_DIR "/tests/data/variants/ca_certutil_csv"

#define HDR "\"Issued Request ID\",\"Requester Name\",\"Request Submission Date\"," \
            "\"Request Resolution Date\",\"Request Disposition\",\"Request Disposition Message\"," \
            "\"Request Status Code\",\"Serial Number\",\"Certificate Hash\",\"Certificate Template\"," \
            "\"Issued Common Name\",\"Issued Distinguished Name\",\"Revocation Date\"\n"
/* A row in HDR's column order. */
#define ROW(id, sub, res, disp, msg, status, serial, hash, tmpl, cn, dn, rev) \
    id "," "\"CONTOSO\\svc-ndes\"," sub "," res "," disp "," msg "," status "," serial "," \
    hash "," tmpl "," cn "," dn "," rev "\n"

#define OUT(ts, stage, rest) \
    "{\"source\":\"ca_certutil_csv\",\"platform\":\"ca\",\"ts\":\"" ts "\",\"stage\":\"" stage "\"," \
    "\"requester\":\"CONTOSO\\\\svc-ndes\"" rest "}\n"

static void
run(const char *format, const void *input, size_t len, const struct agent_parse_opts *o,
    struct sw_buf *out, uint64_t counts[AGENT_COUNT_MAX])
{
    sw_buf_init(out);
    sw_buf_puts(out, "");
    if (counts)
        memset(counts, 0, sizeof(uint64_t) * AGENT_COUNT_MAX);
    assert_int_equal(th_parse_string(format, input, len, o, out, counts), SW_OK);
}

/* Exact output with --format ca_certutil_csv (and auto when asked). */
static void
expect_fmt(const char *input, const char *expected, uint64_t counts[AGENT_COUNT_MAX], int with_auto)
{
    const char *fmts[] = { "ca_certutil_csv", "auto" };
    for (int i = 0; i < 1 + with_auto; i++) {
        struct sw_buf out;
        run(fmts[i], input, strlen(input), NULL, &out, counts);
        if (th_jsonl_equal(out.data, expected) != 0) {
            fprintf(stderr, "with --format %s\n", fmts[i]);
            fail();
        }
        sw_buf_fini(&out);
    }
}

static void
expect(const char *input, const char *expected, uint64_t counts[AGENT_COUNT_MAX])
{
    expect_fmt(input, expected, counts, 1);
}

static long
offset_of(const char *jsonl, int n)
{
    const char *p = jsonl;
    for (int i = 0; i < n && p; i++) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    if (!p || !(p = strstr(p, "\"offset\":")))
        return -1;
    return strtol(p + 9, NULL, 10);
}

static void
reordered_columns_map_by_name(void **state)
{
    (void)state;
    const char *in =
        "\"Certificate Hash\",\"Request Disposition\",\"Issued Common Name\",\"Request ID\","
        "\"Request Resolution Date\",\"Serial Number\",\"Certificate Template\",\"Requester Name\","
        "\"Unknown Column\"\n"
        "\"3c 9a 5e 71\",\"20 -- Issued\",\"jdoe@contoso.com\",\"4711\",\"3/14/2024 3:02 PM\","
        "\"2b 00 00 12\",\"IntuneSCEPUser\",\"CONTOSO\\svc-ndes\",\"x\"\n";
    expect(in,
           OUT("2024-03-14T15:02:00.000000Z", "ca_issued",
               ",\"thumbprint\":\"3c9a5e71\",\"serial\":\"2b000012\",\"request_id\":\"4711\","
               "\"subject\":\"jdoe@contoso.com\",\"template\":\"IntuneSCEPUser\""),
           NULL);
}

static void
quoted_commas_quotes_and_newlines(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    struct sw_buf out;
    const char *l1 = HDR;
    const char *l2 = "\"4712\",\"CONTOSO\\svc-ndes\",\"3/14/2024 3:28 PM\",\"3/14/2024 3:28 PM\","
                     "\"31 -- Denied\",\"Denied by \"\"Policy\"\", see\n";
    const char *l3 = "\n";
    const char *l4 = "the log, twice\",\"the \"\"status\"\"\n";
    const char *l5 = "is, unknown\",EMPTY,EMPTY,\"Intune,SCEP\",EMPTY,\"CN=\"\"x, y\"\"\",EMPTY\n";
    const char *l6 = ROW("\"4713\"", "\"3/14/2024 3:40 PM\"", "EMPTY", "\"9 -- Pending\"",
                         "\"a,b\"", "\"0x0\"", "EMPTY", "EMPTY", "\"\"", "\"\"", "\"\"", "EMPTY");
    char in[4096];

    snprintf(in, sizeof in, "%s%s%s%s%s%s", l1, l2, l3, l4, l5, l6);
    run("ca_certutil_csv", in, strlen(in), NULL, &out, counts);
    assert_int_equal(
        th_jsonl_equal(out.data,
                       OUT("2024-03-14T15:28:00.000000Z", "ca_denied",
                           ",\"request_id\":\"4712\",\"subject\":\"CN=\\\"x, y\\\"\","
                           "\"template\":\"Intune,SCEP\","
                           "\"detail\":\"the \\\"status\\\"\\nis, unknown\"")
                       OUT("2024-03-14T15:40:00.000000Z", "ca_pending", ",\"request_id\":\"4713\"")),
        0);
    /* a record's offset is its first line's */
    assert_int_equal(offset_of(out.data, 0), (long)strlen(l1));
    assert_int_equal(offset_of(out.data, 1), (long)(strlen(l1) + strlen(l2) + strlen(l3) +
                                                    strlen(l4) + strlen(l5)));
    assert_int_equal(counts[AGENT_COUNT_MALFORMED], 0);
    sw_buf_fini(&out);
}

static void
empty_means_absent(void **state)
{
    (void)state;
    const char *in = HDR ROW("\"4714\"", "\"3/14/2024 4:10 PM\"", "EMPTY", "\"20 -- Issued\"",
                             "\"EMPTY\"", "EMPTY", "\"EMPTY\"", " EMPTY ", "EMPTY", "\"EMPTY\"",
                             "\"\"", "EMPTY");
    /* resolution EMPTY: the submission date; DN and CN EMPTY/blank: no subject */
    expect(in, OUT("2024-03-14T16:10:00.000000Z", "ca_issued", ",\"request_id\":\"4714\""), NULL);
}

static void
footer_and_blank_lines_are_noise(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    const char *in = "\n   \n" HDR "\n"
                     ROW("\"4711\"", "\"3/14/2024 3:02 PM\"", "\"3/14/2024 3:02 PM\"",
                         "\"20 -- Issued\"", "\"Issued\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY",
                         "EMPTY", "EMPTY", "EMPTY")
                     "\n1 Rows\n"
                     "CertUtil: -view command completed successfully.\n";
    expect(in, OUT("2024-03-14T15:02:00.000000Z", "ca_issued", ",\"request_id\":\"4711\""), counts);
    assert_int_equal(counts[AGENT_COUNT_MALFORMED], 0);
    assert_int_equal(counts[AGENT_COUNT_NOISE], 7); /* 4 blank, header, 2 footer */
}

static void
wrong_field_count_is_malformed(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    const char *in = HDR "\"4711\",\"x\",\"3/14/2024 3:02 PM\",\"20 -- Issued\"\n"
                     ROW("\"4711\"", "\"3/14/2024 3:02 PM\"", "EMPTY", "\"20 -- Issued\"",
                         "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY,extra")
                     "12 Rowsx\n";
    expect(in, "", counts);
    assert_int_equal(counts[AGENT_COUNT_MALFORMED], 3);
}

static void
each_disposition_maps_per_table(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
#define S "\"3/1/2024 10:00 AM\""
#define R "\"3/1/2024 11:00 AM\""
#define V "\"3/2/2024 9:00 AM\""
    const char *in = HDR
        ROW("1", S, R, "\"20 -- Issued\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", V)
        ROW("2", S, R, "\"9 -- Pending\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", V)
        ROW("3", S, R, "\"21 -- Revoked\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", V)
        ROW("4", S, R, "\"21 -- Revoked\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY")
        ROW("5", S, "EMPTY", "\"21 -- Revoked\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY")
        ROW("6", S, R, "\"30 -- Failed\"", "\"Error 0x80094001 (x)\"",
            "\"0x80094800 (-2146875392 CERTSRV_E_UNSUPPORTED_CERT_TYPE) -- x\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY")
        ROW("7", S, R, "\"31 -- Denied\"", "\"Denied by Policy Module  0x80094012, no\"",
            "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY")
        ROW("8", S, R, "\"31 -- Denied\"", "\"Denied by Officer\"",
            "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY")
        ROW("9", S, "EMPTY", "\"30 -- Failed\"", "EMPTY",
            "\"0x0 (WIN32: 0 ERROR_SUCCESS)\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY")
        ROW("10", S, R, "\"15 -- CA Cert\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY")
        ROW("11", S, R, "\"8 -- Active\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY")
        ROW("12", S, R, "\"12 -- Foreign\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY")
        ROW("13", S, R, "\"Issued\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY");
#undef S
#undef R
#undef V
#define T_S "2024-03-01T10:00:00.000000Z"
#define T_R "2024-03-01T11:00:00.000000Z"
#define T_V "2024-03-02T09:00:00.000000Z"
    expect(in,
           OUT(T_R, "ca_issued", ",\"request_id\":\"1\"")
           OUT(T_S, "ca_pending", ",\"request_id\":\"2\"")
           OUT(T_V, "ca_revoked", ",\"request_id\":\"3\"")
           OUT(T_R, "ca_revoked", ",\"request_id\":\"4\"")
           OUT(T_S, "ca_revoked", ",\"request_id\":\"5\"")
           OUT(T_R, "ca_denied", ",\"request_id\":\"6\",\"detail\":\"0x80094800\"")
           OUT(T_R, "ca_denied", ",\"request_id\":\"7\",\"detail\":\"0x80094012\"")
           OUT(T_R, "ca_denied", ",\"request_id\":\"8\",\"detail\":\"Denied by Officer\"")
           OUT(T_S, "ca_denied", ",\"request_id\":\"9\",\"detail\":\"0x0 (WIN32: 0 ERROR_SUCCESS)\""),
           counts);
    assert_int_equal(counts[AGENT_COUNT_NOISE], 1 + 3); /* header, 15/8/12 */
    assert_int_equal(counts[AGENT_COUNT_MALFORMED], 1); /* no disposition number */
#undef T_S
#undef T_R
#undef T_V
}

static void
en_us_dates_and_twelve_oclock(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
#define D(sub) ROW("1", sub, "EMPTY", "\"9 -- Pending\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", \
                   "EMPTY", "EMPTY", "EMPTY", "EMPTY")
    const char *in = HDR D("\"3/15/2024 12:42 AM\"") D("\"3/15/2024 12:05 PM\"")
                     D("\"12/31/2024 11:59 PM\"") D("\"1/2/2024 1:00 am\"")
                     D("\"3/14/2024 3:02:45 PM\"") D("\"3/14/2024 15:02\"")
                     D("\"2024-03-14 15:02\"") D("\"3/14/2024 13:02 PM\"") D("\"2/30/2024 1:00 AM\"")
                     D("\"3/14/2024 3:02 PMx\"");
#undef D
#define O(ts) OUT(ts, "ca_pending", ",\"request_id\":\"1\"")
    expect(in,
           O("2024-03-15T00:42:00.000000Z") O("2024-03-15T12:05:00.000000Z")
           O("2024-12-31T23:59:00.000000Z") O("2024-01-02T01:00:00.000000Z")
           O("2024-03-14T15:02:45.000000Z") O("2024-03-14T15:02:00.000000Z"),
           counts);
    assert_int_equal(counts[AGENT_COUNT_BAD_TIME], 4);

    /* --tz: certutil prints the CA's local time */
    struct agent_parse_opts o = { .tz_off_min = 90 };
    struct sw_buf out;
    const char *one = HDR ROW("1", "\"3/15/2024 12:42 AM\"", "EMPTY", "\"9 -- Pending\"", "EMPTY",
                              "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY");
    run("ca_certutil_csv", one, strlen(one), &o, &out, NULL);
    assert_int_equal(th_jsonl_equal(out.data, O("2024-03-14T23:12:00.000000Z")), 0);
    sw_buf_fini(&out);
#undef O
}

/* Runs a shell pipeline and returns its first output line, trimmed; NULL if it failed. */
static char *
shell_line(const char *cmd)
{
    char buf[512];
    FILE *f = popen(cmd, "r");
    char *r = NULL;
    if (!f)
        return NULL;
    if (fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\r\n")] = '\0';
        r = strdup(buf);
    }
    if (pclose(f) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

/* The value of "key":"..." in a JSON line, copied into out. */
static void
json_str(const char *line, const char *key, char *out, size_t n)
{
    char pat[64];
    const char *p, *e;
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    p = strstr(line, pat);
    assert_non_null(p);
    p += strlen(pat);
    e = strchr(p, '"');
    assert_non_null(e);
    assert_true((size_t)(e - p) < n);
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
}

static void
binary_certificate_gives_thumbprint_serial_txn(void **state)
{
    (void)state;
    const char *pems[] = { VARIANTS "/scep-issued.pem", VARIANTS "/scep-issued-ec.pem" };
    char *expected = th_read_file(VARIANTS "/binary-cert.csv.expected.jsonl", NULL);
    struct sw_buf out;
    uint64_t counts[AGENT_COUNT_MAX];

    /* the committed expectations (made with openssl, see the folder's README) */
    assert_non_null(expected);
    for (int f = 0; f < 2; f++) {
        sw_buf_init(&out);
        sw_buf_puts(&out, "");
        assert_int_equal(th_parse_path(f ? "auto" : "ca_certutil_csv",
                                       VARIANTS "/binary-cert.csv", NULL, &out, counts), SW_OK);
        assert_int_equal(th_jsonl_equal(out.data, expected), 0);
        if (f == 1)
            break;
        sw_buf_fini(&out);
    }

    /* and again against the openssl CLI itself, when it is installed */
    const char *line = out.data;
    for (int i = 0; i < 2; i++, line = strchr(line, '\n') + 1) {
        char cmd[1024], got[128];
        char *fp, *serial, *spki;

        snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -noout -fingerprint -sha1 2>/dev/null", pems[i]);
        fp = shell_line(cmd);
        if (!fp) {
            fprintf(stderr, "openssl CLI not available: cross-check skipped\n");
            break;
        }
        snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -noout -serial", pems[i]);
        serial = shell_line(cmd);
        snprintf(cmd, sizeof cmd,
                 "openssl x509 -in '%s' -pubkey -noout | openssl pkey -pubin -outform DER | openssl sha1",
                 pems[i]);
        spki = shell_line(cmd);
        assert_non_null(serial);
        assert_non_null(spki);

        /* "SHA1 Fingerprint=C6:F8:..." -> c6f8... */
        char want[128];
        size_t k = 0;
        for (const char *p = strchr(fp, '=') + 1; *p; p++)
            if (*p != ':')
                want[k++] = (char)(*p >= 'A' && *p <= 'F' ? *p + 32 : *p);
        want[k] = '\0';
        json_str(line, "thumbprint", got, sizeof got);
        assert_string_equal(got, want);

        k = 0;
        for (const char *p = strchr(serial, '=') + 1; *p; p++)
            want[k++] = (char)(*p >= 'A' && *p <= 'F' ? *p + 32 : *p);
        want[k] = '\0';
        json_str(line, "serial", got, sizeof got);
        assert_string_equal(got, want);

        /* "SHA1(stdin)= 8150e8..." -> 8150E8... */
        k = 0;
        for (const char *p = strrchr(spki, ' ') + 1; *p; p++)
            want[k++] = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
        want[k] = '\0';
        json_str(line, "txn", got, sizeof got);
        assert_string_equal(got, want);
        free(fp);
        free(serial);
        free(spki);
    }
    sw_buf_fini(&out);
    free(expected);
}

static void
binary_certificate_hash_column_wins_bad_cert_counted(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    char *pem = th_read_file(VARIANTS "/scep-issued.pem", NULL);
    char *in = malloc(strlen(pem) + 1024);
    struct sw_buf out;

    assert_non_null(pem);
    sprintf(in,
            "\"Request ID\",\"Request Disposition\",\"Request Resolution Date\",\"Certificate Hash\","
            "\"Serial Number\",\"Binary Certificate\"\n"
            "\"1\",\"20 -- Issued\",\"3/1/2024 1:00 PM\",\"aa bb\",\"01\",\"%s\"\n"
            "\"2\",\"20 -- Issued\",\"3/1/2024 1:00 PM\",EMPTY,EMPTY,\"-----BEGIN CERTIFICATE-----\n"
            "bm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\"\n"
            "\"3\",\"20 -- Issued\",\"3/1/2024 1:00 PM\",EMPTY,EMPTY,\"%%%%not base64\"\n",
            pem);
    run("ca_certutil_csv", in, strlen(in), NULL, &out, counts);
#define O(id, rest) \
    "{\"source\":\"ca_certutil_csv\",\"platform\":\"ca\",\"ts\":\"2024-03-01T13:00:00.000000Z\"," \
    "\"stage\":\"ca_issued\",\"request_id\":\"" id "\"" rest "}\n"
    assert_int_equal(th_jsonl_equal(out.data,
                                    O("1", ",\"thumbprint\":\"aabb\",\"serial\":\"01\","
                                           "\"txn\":\"8150E8F3D27FB878AB63A001D0C9B2D53C1D3148\"")
                                    O("2", "") O("3", "")),
                     0);
#undef O
    assert_int_equal(counts[AGENT_COUNT_MALFORMED], 2);
    sw_buf_fini(&out);
    free(in);
    free(pem);
}

static void
headerless_file_emits_nothing(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    const char *rows =
        ROW("\"4711\"", "\"3/14/2024 3:02 PM\"", "\"3/14/2024 3:02 PM\"", "\"20 -- Issued\"",
            "\"Issued\"", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY")
        ROW("\"4715\"", "\"3/14/2024 8:15 PM\"", "EMPTY", "\"9 -- Pending\"",
            "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY")
        "2 Rows\n";

    expect_fmt(rows, "", counts, 0);
    assert_int_equal(counts[AGENT_COUNT_MALFORMED], 2);
    assert_int_equal(counts[AGENT_COUNT_EVENTS], 0);
    /* --format auto: the probe does not claim it */
    assert_int_equal(agent_parser_ca_certutil_csv.probe(rows, strlen(rows)), 0);
}

static void
unterminated_quote_at_end_is_partial(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    const char *in = HDR "\"4711\",\"CONTOSO\\svc-ndes\",\"3/14/2024 3:02 PM\",\"never closed\n"
                     "more text\n";
    expect(in, "", counts);
    assert_int_equal(counts[AGENT_COUNT_PARTIAL], 1);
}

static void
garbage_and_overlong_lines_are_survived(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    size_t big = (size_t)AGENT_MAX_LINE + 10;
    const char *good = ROW("\"4711\"", "\"3/14/2024 3:02 PM\"", "EMPTY", "\"20 -- Issued\"",
                           "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY");
    char *in = malloc(strlen(HDR) + big + 2 * strlen(good) + 64);
    struct sw_buf out;
    size_t n = 0;

    n += (size_t)sprintf(in, "%s%s\xff\xfe\x01 ,,,\"\"\"\"\n", HDR, good);
    for (size_t i = 0; i < big; i++)
        in[n++] = (i == 5) ? '"' : 'z'; /* an overlong line that opens a quote */
    in[n++] = '\n';
    n += (size_t)sprintf(in + n, "\"\n%s", good);
    run("ca_certutil_csv", in, n, NULL, &out, counts);
    assert_int_equal(th_jsonl_equal(out.data,
                                    OUT("2024-03-14T15:02:00.000000Z", "ca_issued", ",\"request_id\":\"4711\"")
                                    OUT("2024-03-14T15:02:00.000000Z", "ca_issued", ",\"request_id\":\"4711\"")),
                     0);
    assert_int_equal(counts[AGENT_COUNT_OVERLONG], 1);
    assert_int_equal(counts[AGENT_COUNT_MALFORMED], 2); /* the garbage row, the cut record */
    sw_buf_fini(&out);
    free(in);
}

static void
probe_claims_only_certutil_csv(void **state)
{
    (void)state;
    const char *folders[] = { "android_omadm", "ios_console", "windows_event_xml",
                              "ca_certutil_csv", "ndes_iis" };
    for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
        char dir[1024];
        DIR *d;
        struct dirent *de;
        int mine = strcmp(folders[i], "ca_certutil_csv") == 0;

        snprintf(dir, sizeof dir, "%s/tests/data/samples/%s", TH_SOURCE_DIR, folders[i]);
        d = opendir(dir);
        assert_non_null(d);
        while ((de = readdir(d)) != NULL) {
            char path[2048];
            size_t len;
            char *buf;
            if (de->d_name[0] == '.' || strstr(de->d_name, ".expected.jsonl"))
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            buf = th_read_file(path, &len);
            assert_non_null(buf);
            int score = agent_parser_ca_certutil_csv.probe(buf, len);
            if (mine ? score < 90 : score != 0) {
                fprintf(stderr, "%s: probe %d\n", path, score);
                fail();
            }
            free(buf);
        }
        closedir(d);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reordered_columns_map_by_name),
        cmocka_unit_test(quoted_commas_quotes_and_newlines),
        cmocka_unit_test(empty_means_absent),
        cmocka_unit_test(footer_and_blank_lines_are_noise),
        cmocka_unit_test(wrong_field_count_is_malformed),
        cmocka_unit_test(each_disposition_maps_per_table),
        cmocka_unit_test(en_us_dates_and_twelve_oclock),
        cmocka_unit_test(binary_certificate_gives_thumbprint_serial_txn),
        cmocka_unit_test(binary_certificate_hash_column_wins_bad_cert_counted),
        cmocka_unit_test(headerless_file_emits_nothing),
        cmocka_unit_test(unterminated_quote_at_end_is_partial),
        cmocka_unit_test(garbage_and_overlong_lines_are_survived),
        cmocka_unit_test(probe_claims_only_certutil_csv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
