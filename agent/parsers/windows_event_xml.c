/*
 * windows_event_xml.c - `wevtutil qe ... /f:xml` exports (samples README 3.3).
 *
 * The input is a stream of <Event> elements with no root: usually one per
 * line, but a Data value may hold newlines, an event may start mid-line and
 * two may share a line.  Lines are cut into records from "<Event" to
 * "</Event>"; a record that spans lines is assembled in a bounded buffer
 * (ctx->hold_offset pins its first line meanwhile).  Before any XML work a
 * record's Provider Name and EventID are read by a plain text scan and
 * looked up in the dispatch table, so the bulk of a Security or System log
 * (4624, 4672, ...) costs two memmem calls.  Records that may matter are
 * parsed by one expat parser, reset per record, into a flat list of
 * (Data Name, value) pairs, and the table row for (provider, EventID) maps
 * them to an event.
 */
#include <expat.h>
#include <stdlib.h>
#include <string.h>

#include "parser.h"
#include "sw_time.h"

#define REC_CAP AGENT_MAX_LINE      /* longest record kept, bytes */
#define ARENA_CAP (REC_CAP + 64)    /* decoded text never outgrows its record */
#define MAX_FIELDS 128              /* Data values kept per event; the rest ignored */

/* Providers the table knows; matched by name (see providers[]). */
enum provider {
    PROV_NONE,
    PROV_DM,            /* DeviceManagement-Enterprise-Diagnostics-Provider */
    PROV_CERTENROLL,    /* CertificateServicesClient-CertEnroll */
    PROV_SECURITY,      /* Security-Auditing, on the CA */
    PROV_CONNECTOR,     /* Certificate Connector for Microsoft Intune */
    PROV_NDES,          /* Network Device Enrollment Service */
};

static const struct {
    const char *name;
    int exact;                  /* 1: whole name; 0: name contains it */
    enum provider prov;
} providers[] = {
    { "Microsoft-Windows-DeviceManagement-Enterprise-Diagnostics-Provider", 1, PROV_DM },
    { "Microsoft-Windows-CertificateServicesClient-CertEnroll", 1, PROV_CERTENROLL },
    { "Microsoft-Windows-Security-Auditing", 1, PROV_SECURITY },
    /* No samples: be liberal (Microsoft-Intune-CertificateConnectors, ...) */
    { "CertificateConnector", 0, PROV_CONNECTOR },
    { "NetworkDeviceEnrollment", 0, PROV_NDES },
    { "MSCEP", 0, PROV_NDES },
};

/* One Data value: <Data Name='n'>v</Data>, or a UserData leaf <n>v</n>. */
struct field {
    struct sw_slice name;
    struct sw_slice value;
};

/* What the expat callbacks collect from one record. */
struct xml_event {
    struct sw_slice provider;   /* System/Provider/@Name */
    struct sw_slice event_id;   /* System/EventID text */
    struct sw_slice time;       /* System/TimeCreated/@SystemTime */
    struct sw_slice computer;   /* System/Computer text */
    struct field fields[MAX_FIELDS];
    size_t nfields;

    int depth;                  /* element depth, root = 1 */
    int section;                /* SEC_* of the depth-2 element we are in */
    struct sw_slice *capture;   /* slice that character data extends, or NULL */
    int capture_depth;          /* depth of the element being captured */
    int bad;                    /* root is not <Event>, or the arena ran out */
    char *arena;                /* decoded names and values; ARENA_CAP bytes */
    size_t arena_used;
};

enum { SEC_OTHER, SEC_SYSTEM, SEC_EVENTDATA, SEC_USERDATA };

struct winxml_state {
    XML_Parser xp;              /* reused for every record */
    struct agent_record rec;    /* a record spanning lines */
    struct xml_event xe;
    struct agent_scratch scratch;
};

struct row;
typedef int (*map_fn)(struct agent_parse_ctx *ctx, const struct xml_event *xe,
                      const struct row *r, struct sw_event *ev);

/* Row flags. */
#define F_SUBJECT 0x1           /* Security: emit Subject */
#define F_SERIAL 0x2            /* Security: emit SerialNumber */
#define F_DETAIL 0x4            /* server-side failure: detail from the error fields */

/* The dispatch table: one row per (provider, EventID) that yields an event. */
struct row {
    enum provider prov;
    unsigned event_id;
    enum sw_stage stage;        /* UNKNOWN: the map function decides */
    map_fn map;
    const char *arg;            /* Data name the map function reads; may be NULL */
    unsigned flags;             /* F_* */
};

static int map_dm(struct agent_parse_ctx *, const struct xml_event *, const struct row *,
                  struct sw_event *);
static int map_dm_306(struct agent_parse_ctx *, const struct xml_event *, const struct row *,
                      struct sw_event *);
static int map_dm_309(struct agent_parse_ctx *, const struct xml_event *, const struct row *,
                      struct sw_event *);
static int map_certenroll(struct agent_parse_ctx *, const struct xml_event *,
                          const struct row *, struct sw_event *);
static int map_security(struct agent_parse_ctx *, const struct xml_event *,
                        const struct row *, struct sw_event *);
static int map_server(struct agent_parse_ctx *, const struct xml_event *, const struct row *,
                      struct sw_event *);

static const struct row rows[] = {
    { PROV_DM, 306, SW_STAGE_PROFILE_RECEIVED, map_dm_306, "Message1", 0 },
    { PROV_DM, 36, SW_STAGE_CSR_GENERATED, map_dm, NULL, 0 },
    { PROV_DM, 309, SW_STAGE_UNKNOWN, map_dm_309, NULL, 0 },
    { PROV_DM, 39, SW_STAGE_INSTALLED, map_dm, NULL, 0 },
    { PROV_DM, 32, SW_STAGE_ENROLL_FAILED, map_dm, "HRESULT", 0 },
    /* Message1 names the CA cert thumbprint: kept in detail, never as thumbprint */
    { PROV_DM, 307, SW_STAGE_ENROLL_FAILED, map_dm, "Message1", 0 },
    /* 86 "enrollment initialization ... failed", 87 "enrollment ... failed" */
    { PROV_CERTENROLL, 86, SW_STAGE_ENROLL_FAILED, map_certenroll, NULL, 0 },
    { PROV_CERTENROLL, 87, SW_STAGE_ENROLL_FAILED, map_certenroll, NULL, 0 },
    { PROV_SECURITY, 4886, SW_STAGE_CA_RECEIVED, map_security, NULL, 0 },
    { PROV_SECURITY, 4887, SW_STAGE_CA_ISSUED, map_security, NULL, F_SUBJECT | F_SERIAL },
    { PROV_SECURITY, 4888, SW_STAGE_CA_DENIED, map_security, NULL, F_SUBJECT },
    { PROV_SECURITY, 4889, SW_STAGE_CA_PENDING, map_security, NULL, F_SUBJECT },
    /* Connector: README 3.3 "suggested mapping"; 4003 (request received) is not mapped */
    { PROV_CONNECTOR, 4000, SW_STAGE_REPORTED, map_server, NULL, 0 },
    { PROV_CONNECTOR, 4001, SW_STAGE_CA_DENIED, map_server, NULL, F_DETAIL },
    { PROV_CONNECTOR, 4002, SW_STAGE_REPORT_FAILED, map_server, NULL, F_DETAIL },
    { PROV_CONNECTOR, 4004, SW_STAGE_CHALLENGE_VERIFIED, map_server, NULL, 0 },
    { PROV_CONNECTOR, 4005, SW_STAGE_CHALLENGE_FAILED, map_server, NULL, F_DETAIL },
    { PROV_CONNECTOR, 4006, SW_STAGE_CA_ISSUED, map_server, NULL, 0 },
    { PROV_CONNECTOR, 4007, SW_STAGE_CA_DENIED, map_server, NULL, F_DETAIL },
    { PROV_CONNECTOR, 4008, SW_STAGE_REPORTED, map_server, NULL, 0 },
    { PROV_CONNECTOR, 4009, SW_STAGE_REPORT_FAILED, map_server, NULL, F_DETAIL },
    { PROV_CONNECTOR, 4010, SW_STAGE_REPORT_FAILED, map_server, NULL, F_DETAIL },
    { PROV_NDES, 2, SW_STAGE_NDES_ERROR, map_server, NULL, F_DETAIL },
    { PROV_NDES, 10, SW_STAGE_NDES_ERROR, map_server, NULL, F_DETAIL },
    { PROV_NDES, 16, SW_STAGE_NDES_ERROR, map_server, NULL, F_DETAIL },
    { PROV_NDES, 17, SW_STAGE_NDES_ERROR, map_server, NULL, F_DETAIL },
    { PROV_NDES, 18, SW_STAGE_NDES_ERROR, map_server, NULL, F_DETAIL },
    { PROV_NDES, 31, SW_STAGE_NDES_ERROR, map_server, NULL, F_DETAIL },
};

/* How a server-side Data value becomes an event field. */
enum alias_kind { AK_RAW, AK_HEX_LOWER, AK_HEX_UPPER, AK_DIGITS, AK_PROFILE };

/*
 * Data names read from connector and NDES events, best first per field.
 * Their EventData is unverified (README 3.3), so several spellings are
 * accepted; names compare case-insensitively.
 */
static const struct {
    const char *name;
    size_t off;                 /* offsetof the sw_slice in struct sw_event */
    enum alias_kind kind;
} aliases[] = {
    { "DeviceId", offsetof(struct sw_event, device), AK_RAW },
    { "IntuneDeviceId", offsetof(struct sw_event, device), AK_RAW },
    { "PolicyId", offsetof(struct sw_event, profile), AK_PROFILE },
    { "ProfileId", offsetof(struct sw_event, profile), AK_PROFILE },
    { "ScepPolicyId", offsetof(struct sw_event, profile), AK_PROFILE },
    { "UniqueId", offsetof(struct sw_event, profile), AK_PROFILE },
    { "TransactionId", offsetof(struct sw_event, txn), AK_HEX_UPPER },
    { "TransId", offsetof(struct sw_event, txn), AK_HEX_UPPER },
    { "Thumbprint", offsetof(struct sw_event, thumbprint), AK_HEX_LOWER },
    { "CertificateThumbprint", offsetof(struct sw_event, thumbprint), AK_HEX_LOWER },
    { "CertThumbprint", offsetof(struct sw_event, thumbprint), AK_HEX_LOWER },
    { "SerialNumber", offsetof(struct sw_event, serial), AK_HEX_LOWER },
    { "CertificateSerialNumber", offsetof(struct sw_event, serial), AK_HEX_LOWER },
    { "RequestId", offsetof(struct sw_event, request_id), AK_DIGITS },
    { "CARequestId", offsetof(struct sw_event, request_id), AK_DIGITS },
    { "Subject", offsetof(struct sw_event, subject), AK_RAW },
    { "SubjectName", offsetof(struct sw_event, subject), AK_RAW },
    { "CertificateSubject", offsetof(struct sw_event, subject), AK_RAW },
    { "TemplateName", offsetof(struct sw_event, template), AK_RAW },
    { "CertificateTemplate", offsetof(struct sw_event, template), AK_RAW },
    { "Template", offsetof(struct sw_event, template), AK_RAW },
    { "Requester", offsetof(struct sw_event, requester), AK_RAW },
};

/* Data names that may carry a failure reason, best first. */
static const char *const error_names[] = {
    "ErrorCode", "HResult", "Error", "ErrorMessage", "Message", "MessageText",
    "FailureReason", "Reason", "Exception",
};

/* ---- small text helpers ---- */

static inline int
is_xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static inline char
lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

static int
eq_ci(struct sw_slice s, const char *name)
{
    size_t k = strlen(name);
    if (s.len != k)
        return 0;
    for (size_t i = 0; i < k; i++)
        if (lower(s.ptr[i]) != lower(name[i]))
            return 0;
    return 1;
}

static int
contains_ci(struct sw_slice s, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= s.len; i++) {
        size_t j = 0;
        while (j < k && lower(s.ptr[i + j]) == lower(needle[j]))
            j++;
        if (j == k)
            return 1;
    }
    return 0;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static struct sw_slice
trim_ws(struct sw_slice s)
{
    while (s.len && is_xml_space(*s.ptr)) {
        s.ptr++;
        s.len--;
    }
    while (s.len && is_xml_space(s.ptr[s.len - 1]))
        s.len--;
    return s;
}

/* "0x1", "0X10" or "16" (read as hex); 0 on success. */
static int
hex_number(struct sw_slice s, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;

    s = trim_ws(s);
    if (s.len >= 2 && s.ptr[0] == '0' && lower(s.ptr[1]) == 'x')
        i = 2;
    if (i == s.len || s.len - i > 16)
        return -1;
    for (; i < s.len; i++) {
        int d = hexval(s.ptr[i]);
        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

/* A decimal id: digits only (after trimming), else absent. */
static struct sw_slice
digits_only(struct sw_slice s)
{
    s = trim_ws(s);
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return SW_SLICE_NONE;
    return s;
}

/* The first "0x" + exactly 8 hex digits (an HRESULT) in s, or absent. */
static struct sw_slice
find_hresult(struct sw_slice s)
{
    for (size_t i = 0; i + 10 <= s.len; i++) {
        size_t j;
        if (s.ptr[i] != '0' || lower(s.ptr[i + 1]) != 'x')
            continue;
        if (i > 0 && (hexval(s.ptr[i - 1]) >= 0 || s.ptr[i - 1] == '_'))
            continue;
        for (j = 0; j < 8 && hexval(s.ptr[i + 2 + j]) >= 0; j++)
            ;
        if (j == 8 && (i + 10 == s.len || hexval(s.ptr[i + 10]) < 0))
            return (struct sw_slice){ s.ptr + i, 10 };
    }
    return SW_SLICE_NONE;
}

/* a followed by b in the scratch arena; absent if it is full. */
static struct sw_slice
scratch_join(struct agent_scratch *s, const char *a, struct sw_slice b)
{
    size_t used = s->used;
    struct sw_slice x = agent_scratch_copy(s, a, strlen(a));
    struct sw_slice y = agent_scratch_copy(s, b.ptr, b.len);
    if (!x.len || !y.len) {
        s->used = used;
        return SW_SLICE_NONE;
    }
    return (struct sw_slice){ x.ptr, x.len + y.len };
}

/*
 * A profile id from a Data value: the LogicalName_ rule when the value
 * holds one, else a bare GUID ("{...}" allowed), lower-cased; else absent.
 */
static struct sw_slice
profile_value(struct agent_scratch *sc, struct sw_slice v)
{
    static const int groups[] = { 8, 4, 4, 4, 12 };
    char *out;
    size_t i = 0, k = 0;

    if (agent_find(v.ptr, v.len, "LogicalName_"))
        return agent_profile_from(sc, v.ptr, v.len);
    v = trim_ws(v);
    if (v.len == 38 && v.ptr[0] == '{' && v.ptr[37] == '}') {
        v.ptr++;
        v.len -= 2;
    }
    if (v.len != 36 || sizeof sc->buf - sc->used < 36)
        return SW_SLICE_NONE;
    out = sc->buf + sc->used;
    for (int g = 0; g < 5; g++) {
        for (int n = 0; n < groups[g]; n++, i++) {
            if (hexval(v.ptr[i]) < 0)
                return SW_SLICE_NONE;
            out[k++] = lower(v.ptr[i]);
        }
        if (g < 4) {
            if (v.ptr[i++] != '-')
                return SW_SLICE_NONE;
            out[k++] = '-';
        }
    }
    sc->used += k;
    return (struct sw_slice){ out, k };
}

/* agent_profile_from for a value that may be absent. */
static struct sw_slice
profile_of(struct agent_scratch *sc, struct sw_slice v)
{
    return v.len ? agent_profile_from(sc, v.ptr, v.len) : SW_SLICE_NONE;
}

/* ---- record boundaries ---- */

/* "<Event" as a whole tag name (not <EventData>, <EventID>, ...). */
static const char *
find_open(const char *p, const char *end)
{
    while (p < end && (p = memmem(p, (size_t)(end - p), "<Event", 6)) != NULL) {
        if (p + 6 == end || is_xml_space(p[6]) || p[6] == '>' || p[6] == '/')
            return p;
        p += 6;
    }
    return NULL;
}

/* "</Event>" (whitespace allowed before '>'); *after = the byte past '>'. */
static const char *
find_close(const char *p, const char *end, const char **after)
{
    while (p < end && (p = memmem(p, (size_t)(end - p), "</Event", 7)) != NULL) {
        const char *q = p + 7;
        while (q < end && is_xml_space(*q))
            q++;
        if (q < end && *q == '>') {
            *after = q + 1;
            return p;
        }
        p += 7;
    }
    return NULL;
}

/*
 * Offset of the first byte expat would reject (invalid UTF-8, a C0
 * control other than TAB/LF/CR, U+FFFE/U+FFFF), or n if there is none.
 */
static size_t
first_bad_byte(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = p[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;

        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                return i;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return i;
        }
        if (k >= n - i)
            return i; /* cut short */
        if (p[i + 1] < lo || p[i + 1] > hi)
            return i;
        for (size_t j = 2; j <= k; j++)
            if (p[i + j] < 0x80 || p[i + j] > 0xbf)
                return i;
        if (c == 0xef && p[i + 1] == 0xbf && (p[i + 2] == 0xbe || p[i + 2] == 0xbf))
            return i;
        i += k + 1;
    }
    return n;
}

/* Replaces every byte expat would reject with '?', in place. */
static void
sanitize(char *p, size_t n)
{
    size_t i = 0;
    while ((i += first_bad_byte((unsigned char *)p + i, n - i)) < n)
        p[i++] = '?';
}

/* ---- prefilter: provider and EventID by text scan ---- */

static enum provider
classify(struct sw_slice name)
{
    for (size_t i = 0; i < sizeof providers / sizeof providers[0]; i++) {
        if (providers[i].exact ? eq_ci(name, providers[i].name)
                               : contains_ci(name, providers[i].name))
            return providers[i].prov;
    }
    return PROV_NONE;
}

static const struct row *
find_row(enum provider prov, unsigned id)
{
    if (prov == PROV_NONE)
        return NULL;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].prov == prov && rows[i].event_id == id)
            return &rows[i];
    return NULL;
}

static int
parse_event_id(struct sw_slice s, unsigned *id)
{
    unsigned v = 0;
    s = trim_ws(s);
    if (s.len == 0 || s.len > 9)
        return -1;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s.ptr[i] - '0');
    }
    *id = v;
    return 0;
}

/*
 * 1 if the record may be in the table, 0 if it surely is not.  Reads the
 * raw text: <Provider ... Name='x'> and <EventID ...>n<.  Anything it cannot
 * read plainly (entities, odd layout) is left to the XML parse.
 */
static int
prefilter(const char *p, size_t n)
{
    const char *end = p + n, *q, *tag_end, *v;
    struct sw_slice name;
    unsigned id;

    q = agent_find(p, n, "<Provider");
    if (!q)
        return 1;
    tag_end = memchr(q, '>', (size_t)(end - q));
    if (!tag_end)
        return 1;
    for (v = q + 9; (v = memmem(v, (size_t)(tag_end - v), "Name=", 5)) != NULL; v += 5)
        if (is_xml_space(v[-1]))
            break;
    if (!v || v + 6 >= tag_end || (v[5] != '\'' && v[5] != '"'))
        return 1;
    name.ptr = v + 6;
    q = memchr(name.ptr, v[5], (size_t)(tag_end - name.ptr));
    if (!q || memchr(name.ptr, '&', (size_t)(q - name.ptr)))
        return 1;
    name.len = (size_t)(q - name.ptr);

    q = agent_find(p, n, "<EventID");
    if (!q || q + 8 >= end || !(q[8] == '>' || is_xml_space(q[8])))
        return 1;
    q = memchr(q, '>', (size_t)(end - q));
    if (!q)
        return 1;
    v = memchr(q, '<', (size_t)(end - q));
    if (!v || parse_event_id((struct sw_slice){ q + 1, (size_t)(v - q - 1) }, &id) != 0)
        return 1;
    return find_row(classify(name), id) != NULL;
}

/* ---- expat callbacks ---- */

/* Copies a NUL-terminated string into the arena; absent when it does not fit. */
static struct sw_slice
arena_str(struct xml_event *xe, const char *s)
{
    size_t n = strlen(s);
    struct sw_slice r;
    if (n > ARENA_CAP - xe->arena_used) {
        xe->bad = 1;
        return SW_SLICE_NONE;
    }
    memcpy(xe->arena + xe->arena_used, s, n);
    r.ptr = xe->arena + xe->arena_used;
    r.len = n;
    xe->arena_used += n;
    return r;
}

static const char *
attr(const XML_Char **atts, const char *name)
{
    for (int i = 0; atts[i] && atts[i + 1]; i += 2)
        if (strcmp(atts[i], name) == 0)
            return atts[i + 1];
    return NULL;
}

static void
capture(struct xml_event *xe, struct sw_slice *into)
{
    into->ptr = xe->arena + xe->arena_used;
    into->len = 0;
    xe->capture = into;
    xe->capture_depth = xe->depth;
}

static struct field *
new_field(struct xml_event *xe)
{
    if (xe->nfields == MAX_FIELDS)
        return NULL;
    memset(&xe->fields[xe->nfields], 0, sizeof xe->fields[0]);
    return &xe->fields[xe->nfields++];
}

static void XMLCALL
on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    struct xml_event *xe = ud;
    const char *a;
    struct field *f;

    xe->depth++;
    if (xe->capture)
        return; /* an element inside a value: its text joins the value */
    switch (xe->depth) {
    case 1:
        if (strcmp(name, "Event") != 0)
            xe->bad = 1;
        break;
    case 2:
        xe->section = strcmp(name, "System") == 0      ? SEC_SYSTEM
                      : strcmp(name, "EventData") == 0 ? SEC_EVENTDATA
                      : strcmp(name, "UserData") == 0  ? SEC_USERDATA
                                                       : SEC_OTHER;
        break;
    case 3:
        if (xe->section == SEC_SYSTEM) {
            if (strcmp(name, "Provider") == 0 && (a = attr(atts, "Name")) != NULL)
                xe->provider = arena_str(xe, a);
            else if (strcmp(name, "TimeCreated") == 0 && (a = attr(atts, "SystemTime")) != NULL)
                xe->time = arena_str(xe, a);
            else if (strcmp(name, "EventID") == 0)
                capture(xe, &xe->event_id);
            else if (strcmp(name, "Computer") == 0)
                capture(xe, &xe->computer);
        } else if (xe->section == SEC_EVENTDATA && strcmp(name, "Data") == 0 &&
                   (f = new_field(xe)) != NULL) {
            if ((a = attr(atts, "Name")) != NULL)
                f->name = arena_str(xe, a);
            capture(xe, &f->value);
        }
        break;
    case 4:
        /* UserData/<Wrapper>/<Name>value</Name> */
        if (xe->section == SEC_USERDATA && (f = new_field(xe)) != NULL) {
            f->name = arena_str(xe, name);
            capture(xe, &f->value);
        }
        break;
    default:
        break;
    }
}

static void XMLCALL
on_end(void *ud, const XML_Char *name)
{
    struct xml_event *xe = ud;
    (void)name;
    if (xe->capture && xe->depth == xe->capture_depth)
        xe->capture = NULL;
    if (xe->depth == 2)
        xe->section = SEC_OTHER;
    xe->depth--;
}

static void XMLCALL
on_text(void *ud, const XML_Char *s, int len)
{
    struct xml_event *xe = ud;
    if (!xe->capture || len <= 0)
        return;
    if ((size_t)len > ARENA_CAP - xe->arena_used) {
        xe->bad = 1;
        return;
    }
    /* only text is appended while capturing, so the value stays contiguous */
    memcpy(xe->arena + xe->arena_used, s, (size_t)len);
    xe->arena_used += (size_t)len;
    xe->capture->len += (size_t)len;
}

/* ---- mapping ---- */

static struct sw_slice
field_get(const struct xml_event *xe, const char *name)
{
    for (size_t i = 0; i < xe->nfields; i++)
        if (eq_ci(xe->fields[i].name, name))
            return xe->fields[i].value;
    return SW_SLICE_NONE;
}

/* DeviceManagement events: the device is <Computer>, the cert is SCEP. */
static void
dm_common(const struct xml_event *xe, struct sw_event *ev)
{
    ev->platform = SW_PLATFORM_WINDOWS;
    ev->cert = SW_CERT_SCEP;
    ev->device = trim_ws(xe->computer);
}

/* 36, 39, 32, 307: a fixed stage; r->arg names the detail value, verbatim. */
static int
map_dm(struct agent_parse_ctx *ctx, const struct xml_event *xe, const struct row *r,
       struct sw_event *ev)
{
    (void)ctx;
    dm_common(xe, ev);
    ev->stage = r->stage;
    if (r->arg)
        ev->detail = field_get(xe, r->arg);
    return 1;
}

/* 306: profile from Message1; a failing Result (HexInt3, high bit) is enroll_failed. */
static int
map_dm_306(struct agent_parse_ctx *ctx, const struct xml_event *xe, const struct row *r,
           struct sw_event *ev)
{
    struct winxml_state *st = ctx->state;
    struct sw_slice res = field_get(xe, "HexInt3");
    struct sw_slice key = field_get(xe, r->arg);
    uint64_t v;

    dm_common(xe, ev);
    ev->stage = r->stage;
    ev->profile = profile_of(&st->scratch, key);
    if (hex_number(res, &v) == 0 && (v & 0x80000000u)) {
        ev->stage = SW_STAGE_ENROLL_FAILED;
        ev->detail = trim_ws(res);
    }
    return 1;
}

/* 309: the stage from Install Status (HexInt1), read as the CSP Status. */
static int
map_dm_309(struct agent_parse_ctx *ctx, const struct xml_event *xe, const struct row *r,
           struct sw_event *ev)
{
    struct winxml_state *st = ctx->state;
    struct sw_slice status = trim_ws(field_get(xe, "HexInt1"));
    struct sw_slice key = field_get(xe, "Message2");
    struct sw_slice tp = field_get(xe, "Message3");
    uint64_t v;
    int known = hex_number(status, &v) == 0;

    (void)r;
    dm_common(xe, ev);
    ev->profile = profile_of(&st->scratch, key);
    if (tp.len)
        ev->thumbprint = agent_hex_lower(&st->scratch, tp.ptr, tp.len);
    if (known && v == 0x1) {
        ev->stage = SW_STAGE_INSTALLED;
    } else if (known && v == 0x2) {
        ev->stage = SW_STAGE_ENROLL_PENDING;
    } else if (known && v == 0x10) {
        ev->stage = SW_STAGE_INSTALL_FAILED;
        ev->detail = trim_ws(field_get(xe, "HexInt3"));
    } else {
        ev->stage = SW_STAGE_INSTALLING;
        if (status.len)
            ev->detail = scratch_join(&st->scratch, "InstallStatus=", status);
        ctx->counts[AGENT_COUNT_UNKNOWN_STATE]++;
    }
    return 1;
}

/*
 * The failure reason of a server-side or CertEnroll event: the HRESULT in
 * the first error value present, else that value as logged; with no error
 * value, the first HRESULT in any value.
 */
static struct sw_slice
error_detail(const struct xml_event *xe)
{
    struct sw_slice v, h;

    for (size_t i = 0; i < sizeof error_names / sizeof error_names[0]; i++) {
        v = trim_ws(field_get(xe, error_names[i]));
        if (v.len) {
            h = find_hresult(v);
            return h.len ? h : v;
        }
    }
    for (size_t i = 0; i < xe->nfields; i++) {
        h = find_hresult(xe->fields[i].value);
        if (h.len)
            return h;
    }
    return SW_SLICE_NONE;
}

/* CertEnroll 86/87: the Windows SCEP client failed; no device (README "device"). */
static int
map_certenroll(struct agent_parse_ctx *ctx, const struct xml_event *xe, const struct row *r,
               struct sw_event *ev)
{
    (void)ctx;
    ev->platform = SW_PLATFORM_WINDOWS;
    ev->cert = SW_CERT_SCEP;
    ev->stage = r->stage;
    ev->detail = error_detail(xe);
    return 1;
}

/* Template from Attributes: "CertificateTemplate:<name>" up to line end or space. */
static struct sw_slice
template_from_attributes(struct sw_slice a)
{
    const char *end, *p = a.ptr, *q;

    if (!a.len)
        return SW_SLICE_NONE; /* absent: ptr may be NULL */
    end = a.ptr + a.len;
    while ((q = agent_find(p, (size_t)(end - p), "CertificateTemplate:")) != NULL) {
        if (q == a.ptr || is_xml_space(q[-1])) {
            const char *v = q + 20, *e = v;
            while (e < end && !is_xml_space(*e))
                e++;
            return (struct sw_slice){ v, (size_t)(e - v) };
        }
        p = q + 20;
    }
    return SW_SLICE_NONE;
}

/* Security-Auditing 4886-4889 on the CA, read by Data name (v0 and v1). */
static int
map_security(struct agent_parse_ctx *ctx, const struct xml_event *xe, const struct row *r,
             struct sw_event *ev)
{
    struct winxml_state *st = ctx->state;
    struct sw_slice t;

    ev->platform = SW_PLATFORM_CA;
    ev->stage = r->stage;
    ev->request_id = digits_only(field_get(xe, "RequestId"));
    ev->requester = field_get(xe, "Requester");
    ev->template = template_from_attributes(field_get(xe, "Attributes"));
    t = trim_ws(field_get(xe, "CertificateTemplate")); /* v1 */
    if (t.len)
        ev->template = t;
    if (r->flags & F_SUBJECT)
        ev->subject = field_get(xe, "Subject");
    if (r->flags & F_SERIAL) {
        struct sw_slice s = field_get(xe, "SerialNumber");
        if (s.len)
            ev->serial = agent_hex_lower(&st->scratch, s.ptr, s.len);
    }
    return 1;
}

/* Connector and NDES events: fields by the alias table, detail on failures. */
static int
map_server(struct agent_parse_ctx *ctx, const struct xml_event *xe, const struct row *r,
           struct sw_event *ev)
{
    struct winxml_state *st = ctx->state;

    ev->platform = r->prov == PROV_NDES ? SW_PLATFORM_NDES : SW_PLATFORM_CONNECTOR;
    ev->stage = r->stage;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
        struct sw_slice *dst = (struct sw_slice *)((char *)ev + aliases[i].off);
        struct sw_slice v;
        if (dst->len)
            continue;
        v = trim_ws(field_get(xe, aliases[i].name));
        if (!v.len)
            continue;
        switch (aliases[i].kind) {
        case AK_RAW: *dst = v; break;
        case AK_HEX_LOWER: *dst = agent_hex_lower(&st->scratch, v.ptr, v.len); break;
        case AK_HEX_UPPER: *dst = agent_hex_upper(&st->scratch, v.ptr, v.len); break;
        case AK_DIGITS: *dst = digits_only(v); break;
        case AK_PROFILE: *dst = profile_value(&st->scratch, v); break;
        }
    }
    if (r->flags & F_DETAIL)
        ev->detail = error_detail(xe);
    return 1;
}

/* ---- records ---- */

/*
 * One complete record p[0..n) ("<Event" .. "</Event>"), first seen on the
 * line at offset.  p may be the current line or st->rec.buf; if it holds bytes
 * expat rejects, a sanitised copy in st->rec.buf is parsed instead.
 */
static void
record(struct agent_parse_ctx *ctx, const char *p, size_t n, uint64_t offset)
{
    struct winxml_state *st = ctx->state;
    struct xml_event *xe = &st->xe;
    const struct row *r;
    struct sw_event ev;
    unsigned id;

    if (!prefilter(p, n)) {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    if (first_bad_byte((const unsigned char *)p, n) < n) {
        if (n > REC_CAP) {
            ctx->counts[AGENT_COUNT_MALFORMED]++;
            return;
        }
        if (p != st->rec.buf)
            memcpy(st->rec.buf, p, n);
        p = st->rec.buf;
        sanitize(st->rec.buf, n);
    }

    memset(xe, 0, offsetof(struct xml_event, arena));
    xe->arena_used = 0;
    XML_ParserReset(st->xp, "UTF-8");
    XML_SetUserData(st->xp, xe);
    XML_SetElementHandler(st->xp, on_start, on_end);
    XML_SetCharacterDataHandler(st->xp, on_text);
    if (XML_Parse(st->xp, p, (int)n, 1) != XML_STATUS_OK || xe->bad) {
        ctx->counts[AGENT_COUNT_MALFORMED]++;
        return;
    }
    if (parse_event_id(xe->event_id, &id) != 0) {
        ctx->counts[AGENT_COUNT_MALFORMED]++;
        return;
    }
    r = find_row(classify(trim_ws(xe->provider)), id);
    if (!r) {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }

    memset(&ev, 0, sizeof ev);
    agent_scratch_reset(&st->scratch);
    if (!xe->time.len || sw_time_parse(xe->time.ptr, xe->time.len, 0, &ev.ts_us) != 0) {
        ctx->counts[AGENT_COUNT_BAD_TIME]++;
        return;
    }
    if (!r->map(ctx, xe, r, &ev))
        return;
    ctx->rec = p;
    ctx->rec_len = n;
    ctx->rec_offset = offset;
    agent_parse_emit(ctx, &ev);
}

static void
winxml_line(struct agent_parse_ctx *ctx, const char *line, size_t len)
{
    struct winxml_state *st = ctx->state;
    const char *p = line, *end = line + len;
    int touched = st->rec.open;

    while (p < end) {
        const char *open, *close, *after = NULL;

        if (!st->rec.open) {
            open = find_open(p, end);
            if (!open)
                break; /* text between events: ignored */
            touched = 1;
            close = find_close(open + 6, end, &after);
            /* only up to the close: each byte is scanned a bounded number of times */
            const char *next = find_open(open + 6, close ? close : end);
            if (next) {
                /* an event opened again before this one closed */
                ctx->counts[AGENT_COUNT_MALFORMED]++;
                p = next;
                continue;
            }
            if (!close) {
                agent_record_begin(&st->rec, ctx, open, (size_t)(end - open));
                break;
            }
            record(ctx, open, (size_t)(after - open), ctx->line_offset);
            p = after;
            continue;
        }

        /* continuing a record from earlier lines */
        close = find_close(p, end, &after);
        open = find_open(p, close ? close : end);
        if (open) {
            ctx->counts[AGENT_COUNT_MALFORMED]++;
            agent_record_end(&st->rec, ctx);
            p = open;
            continue;
        }
        if (!close) {
            agent_record_append(&st->rec, ctx, p, (size_t)(end - p), 1);
            break;
        }
        agent_record_append(&st->rec, ctx, p, (size_t)(after - p), 1);
        if (st->rec.broken)
            ctx->counts[AGENT_COUNT_MALFORMED]++;
        else
            record(ctx, st->rec.buf, st->rec.len, st->rec.offset);
        agent_record_end(&st->rec, ctx);
        p = after;
    }
    /* the reader dropped the rest of an overlong line: an open record has a hole */
    if (ctx->line_truncated && st->rec.open && !st->rec.broken) {
        st->rec.broken = 1;
        ctx->hold_offset = UINT64_MAX;
    }
    if (!touched)
        ctx->counts[AGENT_COUNT_NOISE]++;
}

static void
winxml_finish(struct agent_parse_ctx *ctx)
{
    struct winxml_state *st = ctx->state;
    if (st->rec.open) {
        ctx->counts[AGENT_COUNT_PARTIAL]++;
        agent_record_end(&st->rec, ctx);
    }
}

static sw_err
winxml_init(struct agent_parse_ctx *ctx)
{
    struct winxml_state *st = ctx->state;

    st->rec.buf = malloc(REC_CAP);
    st->xe.arena = malloc(ARENA_CAP);
    st->xp = XML_ParserCreate("UTF-8");
    if (!st->rec.buf || !st->xe.arena || !st->xp) {
        free(st->rec.buf);
        free(st->xe.arena);
        if (st->xp)
            XML_ParserFree(st->xp);
        st->rec.buf = NULL;
        st->xe.arena = NULL;
        st->xp = NULL;
        return SW_ENOMEM;
    }
    return SW_OK;
}

static void
winxml_fini(struct agent_parse_ctx *ctx)
{
    struct winxml_state *st = ctx->state;
    if (!st)
        return;
    if (st->xp)
        XML_ParserFree(st->xp);
    free(st->rec.buf);
    free(st->xe.arena);
}

/* wevtutil output: an <Event> element in the Windows event namespace. */
static int
winxml_probe(const char *buf, size_t len)
{
    const char *open = find_open(buf, buf + len);

    if (!open)
        return 0;
    if (agent_find(open, (size_t)(buf + len - open),
                   "schemas.microsoft.com/win/2004/08/events/event"))
        return 95;
    if (agent_find(open, (size_t)(buf + len - open), "<System>") &&
        agent_find(open, (size_t)(buf + len - open), "<EventID"))
        return 60;
    return 0;
}

const struct agent_parser agent_parser_windows_event_xml = {
    .name = "windows_event_xml",
    .source = SW_SOURCE_WINDOWS_EVENT_XML,
    .probe = winxml_probe,
    .state_size = sizeof(struct winxml_state),
    .init = winxml_init,
    .line = winxml_line,
    .finish = winxml_finish,
    .fini = winxml_fini,
};
