/*
 * test_parser_windows_event_xml.c - windows_event_xml edge cases beyond the
 * golden samples: encodings, quoting, entities, records across and within
 * lines, truncation, the dispatch table's rows, garbage, the probe.
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

#define NS "xmlns='http://schemas.microsoft.com/win/2004/08/events/event'"
#define DM "Microsoft-Windows-DeviceManagement-Enterprise-Diagnostics-Provider"
#define SEC "Microsoft-Windows-Security-Auditing"
#define CONN "Microsoft-Intune-CertificateConnectors"
#define NDES "Microsoft-Windows-NetworkDeviceEnrollmentService"
#define CENR "Microsoft-Windows-CertificateServicesClient-CertEnroll"

#define SYS(prov, id, ts) \
    "<System><Provider Name='" prov "' Guid='{3da494e4-0fe2-415c-b895-fb5265c5c83b}'/>" \
    "<EventID>" id "</EventID><Version>0</Version><Level>4</Level>" \
    "<TimeCreated SystemTime='" ts "'/><EventRecordID>1</EventRecordID>" \
    "<Channel>X</Channel><Computer>PC1.contoso.com</Computer><Security/></System>"
#define EV(prov, id, ts, data) \
    "<Event " NS ">" SYS(prov, id, ts) "<EventData>" data "</EventData></Event>"
#define D(n, v) "<Data Name='" n "'>" v "</Data>"

#define KEY "ModelName_AC_fd19e485-e013-44c2-b74d-633899d2861d_LogicalName_6b3a1c2d_9e4f_4a5b_8c7d_0e1f2a3b4c5d_Hash_1349872106"
#define PROFILE "6b3a1c2d-9e4f-4a5b-8c7d-0e1f2a3b4c5d"
#define TS "2024-03-14T15:02:10.4418237Z"
#define TS_OUT "2024-03-14T15:02:10.441823Z"

#define OUT_DM(stage, rest) \
    "{\"source\":\"windows_event_xml\",\"platform\":\"windows\",\"device\":\"PC1.contoso.com\"," \
    "\"ts\":\"" TS_OUT "\",\"stage\":\"" stage "\",\"cert\":\"scep\"" rest "}\n"
#define OUT_CA(stage, rest) \
    "{\"source\":\"windows_event_xml\",\"platform\":\"ca\",\"ts\":\"" TS_OUT "\"," \
    "\"stage\":\"" stage "\"" rest "}\n"

/* Parses input with the named format; the JSON Lines land in out (caller frees). */
static void
run(const char *format, const void *input, size_t len, struct sw_buf *out,
    uint64_t counts[AGENT_COUNT_MAX])
{
    sw_buf_init(out);
    sw_buf_puts(out, "");
    if (counts)
        memset(counts, 0, sizeof(uint64_t) * AGENT_COUNT_MAX);
    assert_int_equal(th_parse_string(format, input, len, NULL, out, counts), SW_OK);
}

/* Exact output, with --format windows_event_xml and --format auto. */
static void
expect_both(const char *input, const char *expected, uint64_t counts[AGENT_COUNT_MAX])
{
    const char *fmts[] = { "windows_event_xml", "auto" };
    for (int i = 0; i < 2; i++) {
        struct sw_buf out;
        run(fmts[i], input, strlen(input), &out, counts);
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
    struct sw_buf out;
    run("windows_event_xml", input, strlen(input), &out, counts);
    assert_int_equal(th_jsonl_equal(out.data, expected), 0);
    sw_buf_fini(&out);
}

/* The "offset" of the n-th (0-based) event in a JSON Lines text, or -1. */
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
utf16_bom_crlf_decodes_like_utf8(void **state)
{
    (void)state;
    const char *utf8 =
        EV(DM, "306", TS, D("Message1", KEY) D("HexInt3", "0x2ab0003")) "\n"
        EV(SEC, "4886", TS, D("RequestId", "4711") D("Requester", "CONTOSO\\svc-ndes")
           D("Attributes", "CertificateTemplate:IntuneSCEPUser\nccm:NDES01.contoso.com")) "\n";
    const char *expected =
        OUT_DM("profile_received", ",\"profile\":\"" PROFILE "\"")
        OUT_CA("ca_received", ",\"request_id\":\"4711\",\"template\":\"IntuneSCEPUser\","
                              "\"requester\":\"CONTOSO\\\\svc-ndes\"");
    size_t n = strlen(utf8), k = 0;
    unsigned char *u16 = malloc(4 * n + 2);
    struct sw_buf out;
    uint64_t counts[AGENT_COUNT_MAX];

    u16[k++] = 0xff;
    u16[k++] = 0xfe;
    for (size_t i = 0; i < n; i++) {
        if (utf8[i] == '\n') {
            u16[k++] = '\r';
            u16[k++] = 0;
        }
        u16[k++] = (unsigned char)utf8[i];
        u16[k++] = 0;
    }
    for (int f = 0; f < 2; f++) {
        run(f ? "auto" : "windows_event_xml", u16, k, &out, counts);
        assert_int_equal(th_jsonl_equal(out.data, expected), 0);
        /* the second record starts on line 2: BOM + 2 * (line 1 + CR LF) */
        size_t line1 = (size_t)(strchr(utf8, '\n') - utf8);
        assert_int_equal(offset_of(out.data, 1), (long)(2 + 2 * (line1 + 2)));
        sw_buf_fini(&out);
    }
    assert_int_equal(counts[AGENT_COUNT_EVENTS], 2);
    free(u16);
}

static void
double_quoted_attributes_work(void **state)
{
    (void)state;
    const char *in =
        "<Event xmlns=\"http://schemas.microsoft.com/win/2004/08/events/event\"><System>"
        "<Provider Name=\"" DM "\" Guid=\"{x}\"/><EventID>309</EventID>"
        "<TimeCreated SystemTime=\"" TS "\"/><Computer>PC1.contoso.com</Computer></System>"
        "<EventData><Data Name=\"Message2\">" KEY "</Data>"
        "<Data Name=\"Message3\">3C9A5E71B2D04F8E6A1C7B9D2E4F60A8B1C3D5E7</Data>"
        "<Data Name=\"HexInt1\">0x1</Data></EventData></Event>\n";
    expect_both(in,
                OUT_DM("installed", ",\"profile\":\"" PROFILE "\","
                                    "\"thumbprint\":\"3c9a5e71b2d04f8e6a1c7b9d2e4f60a8b1c3d5e7\""),
                NULL);
}

static void
entities_are_decoded(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    /* an entity in the provider name defeats the text prefilter: the XML decides */
    const char *in =
        EV("Microsoft&#x2D;Windows-Security-Auditing", "4887", TS,
           D("RequestId", "12") D("Requester", "A&amp;B &lt;x&gt; &#x41;&#66;")
           D("Attributes", "") D("Subject", "CN=o&apos;brien, O=&quot;Q&quot;")
           D("CertificateTemplate", "T&amp;1") D("SerialNumber", "0A&#x20;0b")) "\n";
    expect(in,
           OUT_CA("ca_issued", ",\"serial\":\"0a0b\",\"request_id\":\"12\","
                               "\"subject\":\"CN=o'brien, O=\\\"Q\\\"\",\"template\":\"T&1\","
                               "\"requester\":\"A&B <x> AB\""),
           counts);
    assert_int_equal(counts[AGENT_COUNT_EVENTS], 1);
}

static void
event_split_across_lines_and_two_on_one_line(void **state)
{
    (void)state;
    /* line 1: junk, then a whole event, then the start of another (mid-line) */
    const char *l1 = "junk before " EV(DM, "36", TS, D("Message1", "1.3.6.1.5.5.7.3.2"))
                     "  <Event " NS "><System><Provider\n";
    /* lines 2-3: the rest of it, broken between attributes and inside a value */
    const char *l2 = "  Name='" DM "'/><EventID>307</EventID><TimeCreated SystemTime='" TS
                     "'/><Computer>PC1.contoso.com</Computer></System><EventData>"
                     "<Data Name='Message1'>first line\n";
    const char *l3 = "second line</Data></EventData></Event>"
                     EV(DM, "39", TS, "") EV(DM, "32", TS, D("HRESULT", "0x80091007")) "\n";
    char in[8192];
    struct sw_buf out;
    uint64_t counts[AGENT_COUNT_MAX];

    snprintf(in, sizeof in, "%s%s%s", l1, l2, l3);
    run("windows_event_xml", in, strlen(in), &out, counts);
    assert_int_equal(th_jsonl_equal(out.data,
                                    OUT_DM("csr_generated", "")
                                    OUT_DM("enroll_failed", ",\"detail\":\"first line\\nsecond line\"")
                                    OUT_DM("installed", "")
                                    OUT_DM("enroll_failed", ",\"detail\":\"0x80091007\"")), 0);
    /* a record's offset is that of the line where "<Event" began */
    assert_int_equal(offset_of(out.data, 0), 0);
    assert_int_equal(offset_of(out.data, 1), 0);
    assert_int_equal(offset_of(out.data, 2), (long)(strlen(l1) + strlen(l2)));
    assert_int_equal(offset_of(out.data, 3), (long)(strlen(l1) + strlen(l2)));
    assert_int_equal(counts[AGENT_COUNT_MALFORMED], 0);
    assert_int_equal(counts[AGENT_COUNT_PARTIAL], 0);
    sw_buf_fini(&out);
}

static void
truncated_final_event_is_partial(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    const char *in = EV(DM, "39", TS, "") "\n"
                     "<Event " NS "><System><Provider Name='" DM "'/><EventID>36</EventID>\n"
                     "<TimeCreated SystemTime='" TS "'/><Computer>PC1</Comp";
    expect(in, OUT_DM("installed", ""), counts);
    assert_int_equal(counts[AGENT_COUNT_PARTIAL], 1);
    assert_int_equal(counts[AGENT_COUNT_EVENTS], 1);

    /* cut inside the first line, no newline at all */
    expect("<Event " NS "><System><Provider Na", "", counts);
    assert_int_equal(counts[AGENT_COUNT_PARTIAL], 1);
    assert_int_equal(counts[AGENT_COUNT_EVENTS], 0);
}

static void
event_reopened_before_close_is_dropped(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    /* an export cut mid-event, then a fresh one, on the same and on the next line */
    const char *in = "<Event " NS "><System><Provider Name='" DM "'/><EventID>36" EV(DM, "39", TS, "") "\n"
                     "<Event " NS "><System><Provider Name='" DM "'/>\n"
                     EV(DM, "39", TS, "") "\n";
    expect(in, OUT_DM("installed", "") OUT_DM("installed", ""), counts);
    assert_int_equal(counts[AGENT_COUNT_MALFORMED], 2);
    assert_int_equal(counts[AGENT_COUNT_PARTIAL], 0);
}

static void
unknown_provider_or_event_is_ignored(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    const char *in =
        EV(SEC, "4624", TS, D("RequestId", "1")) "\n"
        EV(DM, "208", TS, D("Message1", KEY)) "\n"
        EV("Microsoft-Windows-Kernel-General", "306", TS, D("Message1", KEY)) "\n"
        EV(CONN, "4003", TS, D("DeviceId", "d1")) "\n"
        EV(SEC, "4886x", TS, D("RequestId", "1")) "\n"
        /* not well-formed, but the prefilter drops it unparsed: noise, not malformed */
        EV(SEC, "4672", TS, D("PrivilegeList", "a<b")) "\n";
    expect(in, "", counts);
    assert_int_equal(counts[AGENT_COUNT_EVENTS], 0);
    assert_int_equal(counts[AGENT_COUNT_NOISE], 5);
    assert_int_equal(counts[AGENT_COUNT_MALFORMED], 1); /* EventID "4886x" */
}

static void
dm_309_maps_each_install_status(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
#define E309(status) \
    EV(DM, "309", TS, D("Message2", KEY) D("Message3", "61327876024DFF695E233DC0D1DEA4A9D4340AA8") \
       status D("HexInt3", "0x80070005")) "\n"
#define O309(stage, detail)                                                           \
    OUT_DM(stage, ",\"profile\":\"" PROFILE "\","                                      \
                  "\"thumbprint\":\"61327876024dff695e233dc0d1dea4a9d4340aa8\"" detail)
    const char *in = E309(D("HexInt1", "0x1")) E309(D("HexInt1", "0x2"))
                     E309(D("HexInt1", "0x10")) E309(D("HexInt1", "0x20"))
                     E309(D("HexInt1", "bogus")) E309("");
    expect(in,
           O309("installed", "") O309("enroll_pending", "")
           O309("install_failed", ",\"detail\":\"0x80070005\"")
           O309("installing", ",\"detail\":\"InstallStatus=0x20\"")
           O309("installing", ",\"detail\":\"InstallStatus=bogus\"")
           O309("installing", ""),
           counts);
    assert_int_equal(counts[AGENT_COUNT_UNKNOWN_STATE], 3);
#undef E309
#undef O309
}

static void
dm_306_failing_result_is_enroll_failed(void **state)
{
    (void)state;
    const char *in = EV(DM, "306", TS, D("Message1", KEY) D("HexInt3", "0x80094001")) "\n"
                     EV(DM, "307", TS, D("Message1", "CA cert thumbprint 8A1F3C5E7B9D2F4A6C8E0B1D3F5A7C9E1B3D5F70")) "\n";
    expect(in,
           OUT_DM("enroll_failed", ",\"profile\":\"" PROFILE "\",\"detail\":\"0x80094001\"")
           OUT_DM("enroll_failed", ",\"detail\":\"CA cert thumbprint 8A1F3C5E7B9D2F4A6C8E0B1D3F5A7C9E1B3D5F70\""),
           NULL);
}

static void
security_4887_v0_and_v1_read_by_name(void **state)
{
    (void)state;
    /* v0: template from Attributes; v1: reordered, SerialNumber, its template wins */
    const char *in =
        EV(SEC, "4887", TS, D("RequestId", "4702") D("Requester", "CONTOSO\\svc-ndes")
           D("Attributes", "ccm:NDES01\nCertificateTemplate:IntuneSCEPUser extra\nx:y")
           D("Disposition", "3") D("SubjectKeyIdentifier", "5d 8a") D("Subject", "CN=a")) "\n"
        EV(SEC, "4887", TS, D("SerialNumber", "2B 00 00 12 67") D("Subject", "CN=b")
           D("CertificateTemplate", "IntuneSCEPVPN") D("Requester", "CONTOSO\\svc-ndes")
           D("Attributes", "CertificateTemplate:Other") D("RequestId", "4711")) "\n"
        EV(SEC, "4888", TS, D("RequestId", "4712") D("Subject", "CN=c")
           D("SerialNumber", "99") D("Attributes", "")) "\n"
        EV(SEC, "4889", TS, D("RequestId", "4713") D("Subject", "CN=d")) "\n"
        EV(SEC, "4886", TS, D("RequestId", "47x") D("Subject", "CN=e")) "\n";
    expect(in,
           OUT_CA("ca_issued", ",\"request_id\":\"4702\",\"subject\":\"CN=a\","
                               "\"template\":\"IntuneSCEPUser\",\"requester\":\"CONTOSO\\\\svc-ndes\"")
           OUT_CA("ca_issued", ",\"serial\":\"2b00001267\",\"request_id\":\"4711\",\"subject\":\"CN=b\","
                               "\"template\":\"IntuneSCEPVPN\",\"requester\":\"CONTOSO\\\\svc-ndes\"")
           OUT_CA("ca_denied", ",\"request_id\":\"4712\",\"subject\":\"CN=c\"")
           OUT_CA("ca_pending", ",\"request_id\":\"4713\",\"subject\":\"CN=d\"")
           OUT_CA("ca_received", ""),
           NULL);
}

static void
connector_events_map_per_table(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
#define OUT_CONN(stage, rest) \
    "{\"source\":\"windows_event_xml\",\"platform\":\"connector\",\"ts\":\"" TS_OUT "\"," \
    "\"stage\":\"" stage "\"" rest "}\n"
    const char *in =
        EV(CONN, "4004", TS, D("DeviceId", "a1b2c3d4-0000-4000-8000-00000000000a")
           D("PolicyId", "{39907E78-E61B-4730-B9FA-D44A53E4111C}") D("TemplateName", "IntuneSCEPUser")) "\n"
        EV(CONN, "4005", TS, D("DeviceId", "dev2") D("ErrorCode", "0x80070005 (E_ACCESSDENIED)")) "\n"
        EV(CONN, "4006", TS, D("deviceid", "dev3") D("ProfileId", KEY)
           D("Thumbprint", "3C 9A 5E 71 B2 D0 4F 8E 6A 1C 7B 9D 2E 4F 60 A8 B1 C3 D5 E7")
           D("SerialNumber", "2b00001267") D("RequestId", "4711") D("SubjectName", "CN=jdoe")
           D("TransactionId", "9f86d081")) "\n"
        EV(CONN, "4007", TS, D("Message", "CA said no")) "\n"
        EV(CONN, "4001", TS, D("Whatever", "failed with 0x80094012 at CA")) "\n"
        EV(CONN, "4000", TS, "") "\n"
        EV(CONN, "4008", TS, D("RequestId", "not-a-number")) "\n"
        EV(CONN, "4002", TS, "") "\n"
        EV(CONN, "4009", TS, D("Error", "timeout")) "\n"
        EV(CONN, "4010", TS, D("HResult", "0x80070070")) "\n";
    expect(in,
           OUT_CONN("challenge_verified", ",\"device\":\"a1b2c3d4-0000-4000-8000-00000000000a\","
                                          "\"profile\":\"39907e78-e61b-4730-b9fa-d44a53e4111c\","
                                          "\"template\":\"IntuneSCEPUser\"")
           OUT_CONN("challenge_failed", ",\"device\":\"dev2\",\"detail\":\"0x80070005\"")
           OUT_CONN("ca_issued", ",\"device\":\"dev3\",\"profile\":\"" PROFILE "\","
                                 "\"txn\":\"9F86D081\","
                                 "\"thumbprint\":\"3c9a5e71b2d04f8e6a1c7b9d2e4f60a8b1c3d5e7\","
                                 "\"serial\":\"2b00001267\",\"request_id\":\"4711\","
                                 "\"subject\":\"CN=jdoe\"")
           OUT_CONN("ca_denied", ",\"detail\":\"CA said no\"")
           OUT_CONN("ca_denied", ",\"detail\":\"0x80094012\"")
           OUT_CONN("reported", "")
           OUT_CONN("reported", "")
           OUT_CONN("report_failed", "")
           OUT_CONN("report_failed", ",\"detail\":\"timeout\"")
           OUT_CONN("report_failed", ",\"detail\":\"0x80070070\""),
           counts);
    assert_int_equal(counts[AGENT_COUNT_EVENTS], 10);
#undef OUT_CONN
}

static void
ndes_and_certenroll_events_map(void **state)
{
    (void)state;
#define OUT_NDES(rest) \
    "{\"source\":\"windows_event_xml\",\"platform\":\"ndes\",\"ts\":\"" TS_OUT "\"," \
    "\"stage\":\"ndes_error\"" rest "}\n"
    const char *in =
        EV(NDES, "10", TS, D("ErrorCode", "0x80070057") D("ErrorMessage", "The parameter is incorrect.")) "\n"
        EV("NetworkDeviceEnrollmentService", "2", TS, D("ErrorCode", "0x80070002")) "\n"
        EV("MSCEP", "16", TS, "") "\n"
        EV(NDES, "17", TS, D("ErrorCode", "(0x8009200d)")) "\n"
        EV(NDES, "18", TS, D("ErrorCode", "-2146889714")) "\n"
        EV(NDES, "31", TS, "") "\n"
        EV(NDES, "1", TS, "") "\n"
        "<Event " NS "><System><Provider Name='" CENR "'/><EventID Qualifiers='49754'>86</EventID>"
        "<TimeCreated SystemTime='" TS "'/><Computer>PC1.contoso.com</Computer></System><EventData>"
        D("Context", "INTRA\\rudi") D("Url", "https://ndes/certsrv/mscep/mscep.dll/pkiclient.exe")
        D("MessageText", "GetCACaps") D("Method", "GET(47ms)") D("Stage", "GetCACaps")
        D("ErrorCode", "A security error occurred 0x80072f8f (WinHttp: 12175)") "</EventData></Event>\n";
    expect(in,
           OUT_NDES(",\"detail\":\"0x80070057\"") OUT_NDES(",\"detail\":\"0x80070002\"")
           OUT_NDES("") OUT_NDES(",\"detail\":\"0x8009200d\"")
           OUT_NDES(",\"detail\":\"-2146889714\"") OUT_NDES("")
           "{\"source\":\"windows_event_xml\",\"platform\":\"windows\",\"ts\":\"" TS_OUT "\","
           "\"stage\":\"enroll_failed\",\"cert\":\"scep\",\"detail\":\"0x80072f8f\"}\n",
           NULL);
#undef OUT_NDES
}

static void
garbage_between_events_is_skipped(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    char in[8192];
    /* random text, a stray close, binary-ish bytes, invalid UTF-8 inside a value */
    snprintf(in, sizeof in,
             "this is not xml\n"
             "</Event> <Eventual> <EventData>\n"
             "\x01\x02\xff\xfe garbage \xc3\x28\n"
             "<Event " NS "><not closed properly></Event>\n"
             "%s\n"
             "\n"
             "%s\n",
             EV(DM, "32", TS, D("HRESULT", "0x80091007 \xff\xc3\x28 caf\xc3\xa9")),
             EV(DM, "39", TS, ""));
    expect(in,
           OUT_DM("enroll_failed", ",\"detail\":\"0x80091007 ?\?( caf\xc3\xa9\"")
           OUT_DM("installed", ""),
           counts);
    assert_int_equal(counts[AGENT_COUNT_EVENTS], 2);
    assert_int_equal(counts[AGENT_COUNT_MALFORMED], 1); /* the badly nested event */
    assert_int_equal(counts[AGENT_COUNT_NOISE], 4);
}

static void
bad_timestamp_is_counted(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    expect(EV(DM, "39", "yesterday", "") "\n", "", counts);
    assert_int_equal(counts[AGENT_COUNT_BAD_TIME], 1);
}

static void
record_over_cap_is_malformed(void **state)
{
    (void)state;
    /* a Data value of 1.5 MiB over lines of 64 KiB, then a normal event */
    const char *head = "<Event " NS "><System><Provider Name='" DM "'/><EventID>307</EventID>"
                       "<TimeCreated SystemTime='" TS "'/></System><EventData><Data Name='Message1'>";
    const char *tail = "</Data></EventData></Event>\n" EV(DM, "39", TS, "") "\n";
    size_t big = 3u << 19, n = 0;
    char *in = malloc(strlen(head) + big + big / 65536 + strlen(tail) + 1);
    uint64_t counts[AGENT_COUNT_MAX];
    struct sw_buf out;

    n += (size_t)sprintf(in, "%s", head);
    for (size_t i = 0; i < big; i++)
        in[n++] = (i % 65536 == 65535) ? '\n' : 'x';
    n += (size_t)sprintf(in + n, "%s", tail);
    run("windows_event_xml", in, n, &out, counts);
    assert_int_equal(th_jsonl_equal(out.data, OUT_DM("installed", "")), 0);
    assert_int_equal(counts[AGENT_COUNT_MALFORMED], 1);
    sw_buf_fini(&out);

    /* one line over the reader's 1 MiB cut: the event it holds is lost, the next is kept */
    n = (size_t)sprintf(in, "%s", head);
    for (size_t i = 0; i < (size_t)AGENT_MAX_LINE + 100; i++)
        in[n++] = 'y';
    n += (size_t)sprintf(in + n, "%s", tail);
    run("windows_event_xml", in, n, &out, counts);
    assert_int_equal(th_jsonl_equal(out.data, OUT_DM("installed", "")), 0);
    assert_int_equal(counts[AGENT_COUNT_OVERLONG], 1);
    assert_int_equal(counts[AGENT_COUNT_PARTIAL] + counts[AGENT_COUNT_MALFORMED], 1);
    sw_buf_fini(&out);
    free(in);
}

/*
 * Fuzz regression: a 4886 without Attributes did pointer arithmetic on the
 * absent (NULL) value (clang UBSan: "applying zero offset to null pointer");
 * so may an event without TimeCreated.  Run under clang's sanitizers to bite.
 */
static void
absent_values_are_not_dereferenced(void **state)
{
    (void)state;
    uint64_t counts[AGENT_COUNT_MAX];
    const char *in =
        EV(SEC, "4886", TS, D("RequestId", "4712")) "\n"
        EV(SEC, "4887", TS, "<Data Name='Attributes'/><Data/><Data Name='Subject'></Data>") "\n"
        EV(DM, "306", TS, "") "\n"
        EV(DM, "309", TS, "") "\n"
        "<Event " NS "><System><Provider Name='" DM "'/><EventID>39</EventID></System></Event>\n";
    expect(in,
           OUT_CA("ca_received", ",\"request_id\":\"4712\"")
           OUT_CA("ca_issued", "")
           OUT_DM("profile_received", "")
           OUT_DM("installing", ""),
           counts);
    assert_int_equal(counts[AGENT_COUNT_BAD_TIME], 1);
}

struct feed {
    struct agent_parse_ctx ctx;
    int events;
};

static void
count_event(void *arg, const struct sw_event *ev)
{
    (void)ev;
    ((struct feed *)arg)->events++;
}

/* Feeds one line as the driver does (parse.c on_line). */
static void
feed_line(struct feed *f, const char *line, uint64_t offset)
{
    f->ctx.line_offset = offset;
    f->ctx.line_truncated = 0;
    f->ctx.rec = line;
    f->ctx.rec_len = strlen(line);
    f->ctx.rec_offset = offset;
    f->ctx.parser->line(&f->ctx, line, strlen(line));
}

static void
hold_offset_pins_an_open_record(void **state)
{
    (void)state;
    struct feed f = { 0 };
    const char *l1 = EV(SEC, "4886", TS, D("RequestId", "1")) " <Event " NS "><System>";
    const char *l2 = "<Provider Name='" SEC "'/><EventID>4886</EventID>";
    const char *l3 = "<TimeCreated SystemTime='" TS "'/></System></Event>";

    assert_int_equal(agent_parse_ctx_init(&f.ctx, &agent_parser_windows_event_xml, NULL, "t",
                                          count_event, &f), SW_OK);
    assert_int_equal(f.ctx.hold_offset, UINT64_MAX);
    feed_line(&f, l1, 100);
    assert_int_equal(f.events, 1);
    assert_int_equal(f.ctx.hold_offset, 100);
    feed_line(&f, l2, 200);
    assert_int_equal(f.ctx.hold_offset, 100);
    feed_line(&f, l3, 300);
    assert_int_equal(f.events, 2);
    assert_int_equal(f.ctx.rec_offset, 100);
    assert_non_null(strstr(f.ctx.rec, "<EventID>4886</EventID>\n<TimeCreated"));
    assert_int_equal(f.ctx.hold_offset, UINT64_MAX);
    agent_parse_ctx_fini(&f.ctx);
    assert_int_equal(f.ctx.counts[AGENT_COUNT_PARTIAL], 0);
}

/* The probe claims no sample of another folder, and every one of its own. */
static void
probe_claims_only_event_xml(void **state)
{
    (void)state;
    const char *folders[] = { "android_omadm", "ios_console", "windows_event_xml",
                              "ca_certutil_csv", "ndes_iis" };
    for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
        char dir[1024];
        DIR *d;
        struct dirent *de;
        int mine = strcmp(folders[i], "windows_event_xml") == 0;

        snprintf(dir, sizeof dir, "%s/tests/data/samples/%s", TH_SOURCE_DIR, folders[i]);
        d = opendir(dir);
        assert_non_null(d);
        while ((de = readdir(d)) != NULL) {
            char path[2048];
            size_t len;
            char *buf;
            if (de->d_name[0] == '.' || strstr(de->d_name, ".expected.jsonl") ||
                strstr(de->d_name, "utf16"))
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            buf = th_read_file(path, &len);
            assert_non_null(buf);
            int score = agent_parser_windows_event_xml.probe(buf, len);
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
        cmocka_unit_test(utf16_bom_crlf_decodes_like_utf8),
        cmocka_unit_test(double_quoted_attributes_work),
        cmocka_unit_test(entities_are_decoded),
        cmocka_unit_test(event_split_across_lines_and_two_on_one_line),
        cmocka_unit_test(truncated_final_event_is_partial),
        cmocka_unit_test(event_reopened_before_close_is_dropped),
        cmocka_unit_test(unknown_provider_or_event_is_ignored),
        cmocka_unit_test(dm_309_maps_each_install_status),
        cmocka_unit_test(dm_306_failing_result_is_enroll_failed),
        cmocka_unit_test(security_4887_v0_and_v1_read_by_name),
        cmocka_unit_test(connector_events_map_per_table),
        cmocka_unit_test(ndes_and_certenroll_events_map),
        cmocka_unit_test(garbage_between_events_is_skipped),
        cmocka_unit_test(bad_timestamp_is_counted),
        cmocka_unit_test(record_over_cap_is_malformed),
        cmocka_unit_test(absent_values_are_not_dereferenced),
        cmocka_unit_test(hold_offset_pins_an_open_record),
        cmocka_unit_test(probe_claims_only_event_xml),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
