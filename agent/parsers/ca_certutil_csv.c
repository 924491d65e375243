/*
 * ca_certutil_csv.c - `certutil -view -out "..." csv` exports (samples
 * README 3.4).
 *
 * RFC 4180: quoted fields may hold commas, doubled quotes and newlines, so
 * a record may span lines; it is assembled in a bounded buffer while
 * ctx->hold_offset pins its first line.  A line costs one scan for quotes
 * and a split into fields; the header (a record naming "Request
 * Disposition") maps display names to columns, since -out reorders them.
 * A row's Disposition picks its stage and its timestamp columns from a
 * table.  When a "Binary Certificate" column holds a certificate, mbedTLS
 * decodes it to give the thumbprint, the serial and the jscep transaction
 * id (SHA-1 of the DER SubjectPublicKeyInfo) that links CA and device.
 */
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>
#include <mbedtls/x509_crt.h>

#include "parser.h"
#include "sw_time.h"

#define REC_CAP AGENT_MAX_LINE      /* longest record kept, bytes */
#define MAX_COLS 512                /* fields per record; a wider one is malformed */
#define B64_CAP (96u * 1024)        /* base64 text of one certificate */
#define DER_CAP (72u * 1024)        /* decoded certificate */

/* The columns used, by certutil display name (README 3.4). */
enum col {
    C_ISSUED_REQUEST_ID,
    C_REQUEST_ID,
    C_REQUESTER,
    C_SUBMITTED,
    C_RESOLVED,
    C_REVOKED,
    C_DISPOSITION,
    C_DISPOSITION_MSG,
    C_STATUS_CODE,
    C_SERIAL,
    C_HASH,
    C_TEMPLATE,
    C_COMMON_NAME,
    C_DN,
    C_BINARY_CERT,
    C_COUNT
};

static const struct {
    const char *name;
    enum col col;
} columns[] = {
    { "Issued Request ID", C_ISSUED_REQUEST_ID },
    { "Request ID", C_REQUEST_ID },
    { "Requester Name", C_REQUESTER },
    { "Request Submission Date", C_SUBMITTED },
    { "Request Resolution Date", C_RESOLVED },
    { "Revocation Date", C_REVOKED },
    { "Request Disposition", C_DISPOSITION },
    { "Request Disposition Message", C_DISPOSITION_MSG },
    { "Request Status Code", C_STATUS_CODE },
    { "Serial Number", C_SERIAL },
    { "Certificate Hash", C_HASH },
    { "Certificate Template", C_TEMPLATE },
    { "Issued Common Name", C_COMMON_NAME },
    { "Issued Distinguished Name", C_DN },
    { "Binary Certificate", C_BINARY_CERT },
};

/* Disposition -> stage, and where its time comes from (first present wins). */
static const struct {
    int code;
    enum sw_stage stage;
    enum col ts[3];             /* C_COUNT ends the list */
    int detail;                 /* failure: detail from status code / message */
} dispositions[] = {
    { 20, SW_STAGE_CA_ISSUED, { C_RESOLVED, C_SUBMITTED, C_COUNT }, 0 },
    { 9, SW_STAGE_CA_PENDING, { C_SUBMITTED, C_COUNT, C_COUNT }, 0 },
    { 21, SW_STAGE_CA_REVOKED, { C_REVOKED, C_RESOLVED, C_SUBMITTED }, 0 },
    { 30, SW_STAGE_CA_DENIED, { C_RESOLVED, C_SUBMITTED, C_COUNT }, 1 },
    { 31, SW_STAGE_CA_DENIED, { C_RESOLVED, C_SUBMITTED, C_COUNT }, 1 },
};

struct csv_state {
    struct agent_record rec;    /* a record spanning lines */
    char *vals;                 /* unquoted field text; REC_CAP bytes */
    struct sw_slice fields[MAX_COLS];
    int ncols;                  /* header's field count; 0 = no header yet */
    int col[C_COUNT];           /* field index + 1 per column; 0 = absent */
    char *b64;                  /* Binary Certificate, whitespace removed */
    unsigned char *der;         /* ... decoded */
    struct agent_scratch scratch;
};

/* ---- splitting ---- */

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

static inline int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static struct sw_slice
trim(struct sw_slice s)
{
    while (s.len && is_space(*s.ptr)) {
        s.ptr++;
        s.len--;
    }
    while (s.len && is_space(s.ptr[s.len - 1]))
        s.len--;
    return s;
}

/* 1 if p[0..n) holds an odd number of '"': a quoted field stays open. */
static int
quote_parity(const char *p, size_t n)
{
    const char *end = p + n;
    int odd = 0;
    while ((p = memchr(p, '"', (size_t)(end - p))) != NULL) {
        odd ^= 1;
        p++;
    }
    return odd;
}

/*
 * Splits one record into st->fields, unquoting into st->vals ("" -> ").
 * Lenient: text after a closing quote is kept.  Returns the field count,
 * or -1 for more than MAX_COLS fields.
 */
static int
split(struct csv_state *st, const char *p, size_t n)
{
    char *out = st->vals;
    size_t i = 0;
    int nf = 0;

    for (;;) {
        char *start = out;
        if (nf == MAX_COLS)
            return -1;
        if (i < n && p[i] == '"') {
            i++;
            while (i < n) {
                if (p[i] == '"') {
                    if (i + 1 < n && p[i + 1] == '"') {
                        *out++ = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                *out++ = p[i++];
            }
        }
        while (i < n && p[i] != ',')
            *out++ = p[i++];
        st->fields[nf].ptr = start;
        st->fields[nf].len = (size_t)(out - start);
        nf++;
        if (i < n && p[i] == ',') {
            i++;
            continue;
        }
        return nf;
    }
}

/* A column's value, trimmed; absent when the column is missing, empty or EMPTY. */
static struct sw_slice
value(const struct csv_state *st, enum col c)
{
    struct sw_slice v;
    if (!st->col[c])
        return SW_SLICE_NONE;
    v = trim(st->fields[st->col[c] - 1]);
    if (v.len == 5 && memcmp(v.ptr, "EMPTY", 5) == 0)
        return SW_SLICE_NONE;
    return v;
}

/* A header is a record with a "Request Disposition" field; it (re)maps the columns. */
static int
try_header(struct csv_state *st, int nf)
{
    int found = 0;

    for (int i = 0; i < nf && !found; i++)
        found = eq_ci(trim(st->fields[i]), "Request Disposition");
    if (!found)
        return 0;
    memset(st->col, 0, sizeof st->col);
    st->ncols = nf;
    for (int i = 0; i < nf; i++) {
        struct sw_slice name = trim(st->fields[i]);
        for (size_t k = 0; k < sizeof columns / sizeof columns[0]; k++)
            if (!st->col[columns[k].col] && eq_ci(name, columns[k].name))
                st->col[columns[k].col] = i + 1;
    }
    return 1;
}

/* ---- field values ---- */

/*
 * en-US "M/D/YYYY h:mm[:ss] AM|PM" (12 AM = 00); without AM/PM, a 24-hour
 * clock.  Local time of the CA, taken as UTC unless --tz.  0 or -1.
 */
static int
parse_date(struct sw_slice s, int tz_off_min, int64_t *out_us)
{
    const char *p = s.ptr, *end = s.ptr + s.len;
    int mo, d, y, h, mi, sec = 0, k;
    int64_t us;

#define DIGITS(max, var)                                            \
    do {                                                            \
        k = sw_parse_digits(p, (size_t)(end - p), (max), &(var));   \
        if (k == 0)                                                 \
            return -1;                                              \
        p += k;                                                     \
    } while (0)
#define EXPECT(ch)                      \
    do {                                \
        if (p == end || *p != (ch))     \
            return -1;                  \
        p++;                            \
    } while (0)

    DIGITS(2, mo);
    EXPECT('/');
    DIGITS(2, d);
    EXPECT('/');
    DIGITS(4, y);
    if (k != 4 || p == end || !is_space(*p))
        return -1;
    while (p < end && is_space(*p))
        p++;
    DIGITS(2, h);
    EXPECT(':');
    DIGITS(2, mi);
    if (k != 2)
        return -1;
    if (p < end && *p == ':') {
        p++;
        DIGITS(2, sec);
    }
    /* spaces, NBSP (C2 A0) or narrow NBSP (E2 80 AF) before AM/PM */
    for (;;) {
        if (p < end && is_space(*p))
            p++;
        else if (end - p >= 2 && (unsigned char)p[0] == 0xc2 && (unsigned char)p[1] == 0xa0)
            p += 2;
        else if (end - p >= 3 && (unsigned char)p[0] == 0xe2 && (unsigned char)p[1] == 0x80 &&
                 (unsigned char)p[2] == 0xaf)
            p += 3;
        else
            break;
    }
    if (end - p >= 2 && (lower(p[0]) == 'a' || lower(p[0]) == 'p') && lower(p[1]) == 'm') {
        if (h < 1 || h > 12)
            return -1;
        h = (h % 12) + (lower(p[0]) == 'p' ? 12 : 0);
        p += 2;
    }
    if (p != end)
        return -1;
#undef DIGITS
#undef EXPECT
    if (sw_time_make(y, mo, d, h, mi, sec, 0, &us) != 0)
        return -1;
    *out_us = us - (int64_t)tz_off_min * 60 * 1000000;
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

/* The first "0x" + exactly 8 hex digits (an HRESULT) in s, or absent. */
static struct sw_slice
find_hresult(struct sw_slice s)
{
    for (size_t i = 0; i + 10 <= s.len; i++) {
        size_t j;
        if (s.ptr[i] != '0' || lower(s.ptr[i + 1]) != 'x')
            continue;
        if (i > 0 && hexval(s.ptr[i - 1]) >= 0)
            continue;
        for (j = 0; j < 8 && hexval(s.ptr[i + 2 + j]) >= 0; j++)
            ;
        if (j == 8 && (i + 10 == s.len || hexval(s.ptr[i + 10]) < 0))
            return (struct sw_slice){ s.ptr + i, 10 };
    }
    return SW_SLICE_NONE;
}

static struct sw_slice
digits_only(struct sw_slice s)
{
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return SW_SLICE_NONE;
    return s;
}

/* The leading integer of "20 -- Issued"; -1 if none. */
static int
leading_int(struct sw_slice s)
{
    int v;
    int k = sw_parse_digits(s.ptr, s.len, 6, &v);
    return k ? v : -1;
}

/* Bytes as hex into the scratch arena. */
static struct sw_slice
hex_bytes(struct agent_scratch *sc, const unsigned char *p, size_t n, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char *out = sc->buf + sc->used;

    if (n == 0 || 2 * n > sizeof sc->buf - sc->used)
        return SW_SLICE_NONE;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    sc->used += 2 * n;
    return (struct sw_slice){ out, 2 * n };
}

/*
 * The Binary Certificate column: PEM ("-----BEGIN CERTIFICATE-----", lines
 * of base64, "-----END ...") or bare base64.  Fills the thumbprint (SHA-1
 * of the DER, if the hash column gave none), the serial (if none) and txn
 * (upper hex SHA-1 of the DER SubjectPublicKeyInfo, as jscep's transId).
 * Returns 0, or -1 if the value is not a certificate.
 */
static int
cert_fields(struct csv_state *st, struct sw_slice v, struct sw_event *ev)
{
    const char *p = v.ptr, *end = v.ptr + v.len, *q;
    unsigned char hash[20];
    mbedtls_x509_crt crt;
    size_t n = 0, der_len;

    if ((q = agent_find(p, v.len, "-----BEGIN")) != NULL) {
        q = memmem(q + 10, (size_t)(end - (q + 10)), "-----", 5);
        if (!q)
            return -1;
        p = q + 5;
        q = memmem(p, (size_t)(end - p), "-----END", 8);
        if (q)
            end = q;
    }
    for (; p < end; p++) {
        if (is_space(*p))
            continue;
        if (n == B64_CAP)
            return -1;
        st->b64[n++] = *p;
    }
    if (mbedtls_base64_decode(st->der, DER_CAP, &der_len, (const unsigned char *)st->b64, n) != 0 ||
        der_len == 0)
        return -1;

    mbedtls_x509_crt_init(&crt);
    if (mbedtls_x509_crt_parse_der_nocopy(&crt, st->der, der_len) != 0) {
        mbedtls_x509_crt_free(&crt);
        return -1;
    }
    if (!ev->thumbprint.len && mbedtls_sha1_ret(crt.raw.p, crt.raw.len, hash) == 0)
        ev->thumbprint = hex_bytes(&st->scratch, hash, sizeof hash, 0);
    if (crt.pk_raw.len && mbedtls_sha1_ret(crt.pk_raw.p, crt.pk_raw.len, hash) == 0)
        ev->txn = hex_bytes(&st->scratch, hash, sizeof hash, 1);
    if (!ev->serial.len && crt.serial.len) {
        /* the integer's value: DER's sign-padding zero bytes dropped */
        const unsigned char *s = crt.serial.p;
        size_t sl = crt.serial.len;
        while (sl > 1 && s[0] == 0) {
            s++;
            sl--;
        }
        ev->serial = hex_bytes(&st->scratch, s, sl, 0);
    }
    mbedtls_x509_crt_free(&crt);
    return 0;
}

/* ---- records ---- */

/* One complete record p[0..n), read from the line at offset. */
static void
record(struct agent_parse_ctx *ctx, const char *p, size_t n, uint64_t offset)
{
    struct csv_state *st = ctx->state;
    struct sw_event ev;
    struct sw_slice v;
    size_t k;
    int nf, code;

    nf = n <= REC_CAP ? split(st, p, n) : -1; /* st->vals holds REC_CAP bytes */
    if (nf < 0) {
        ctx->counts[AGENT_COUNT_MALFORMED]++;
        return;
    }
    if (try_header(st, nf)) {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    if (!st->ncols || nf != st->ncols) {
        ctx->counts[AGENT_COUNT_MALFORMED]++;
        return;
    }
    code = leading_int(value(st, C_DISPOSITION));
    for (k = 0; k < sizeof dispositions / sizeof dispositions[0]; k++)
        if (dispositions[k].code == code)
            break;
    if (code < 0) {
        ctx->counts[AGENT_COUNT_MALFORMED]++;
        return;
    }
    if (k == sizeof dispositions / sizeof dispositions[0]) {
        ctx->counts[AGENT_COUNT_NOISE]++; /* 8, 12, 15 (CA cert), 16, 17, ... */
        return;
    }

    memset(&ev, 0, sizeof ev);
    agent_scratch_reset(&st->scratch);
    v = SW_SLICE_NONE;
    for (int t = 0; t < 3 && dispositions[k].ts[t] != C_COUNT && !v.len; t++)
        v = value(st, dispositions[k].ts[t]);
    if (!v.len || parse_date(v, ctx->opts.tz_off_min, &ev.ts_us) != 0) {
        ctx->counts[AGENT_COUNT_BAD_TIME]++;
        return;
    }
    ev.platform = SW_PLATFORM_CA;
    ev.stage = dispositions[k].stage;

    v = value(st, C_ISSUED_REQUEST_ID);
    ev.request_id = digits_only(v.len ? v : value(st, C_REQUEST_ID));
    ev.requester = value(st, C_REQUESTER);
    ev.template = value(st, C_TEMPLATE);
    v = value(st, C_DN);
    ev.subject = v.len ? v : value(st, C_COMMON_NAME);
    v = value(st, C_SERIAL);
    if (v.len)
        ev.serial = agent_hex_lower(&st->scratch, v.ptr, v.len);
    v = value(st, C_HASH);
    if (v.len)
        ev.thumbprint = agent_hex_lower(&st->scratch, v.ptr, v.len);
    if (dispositions[k].detail) {
        v = value(st, C_STATUS_CODE);
        if (!v.len)
            v = value(st, C_DISPOSITION_MSG);
        if (v.len) {
            struct sw_slice h = find_hresult(v);
            ev.detail = h.len ? h : v;
        }
    }
    v = value(st, C_BINARY_CERT);
    if (v.len && cert_fields(st, v, &ev) != 0)
        ctx->counts[AGENT_COUNT_MALFORMED]++; /* the row is still used */

    ctx->rec = p;
    ctx->rec_len = n;
    ctx->rec_offset = offset;
    agent_parse_emit(ctx, &ev);
}

/* certutil's own lines: "11 Rows", "CertUtil: -view command completed ..." */
static int
is_footer(const char *p, size_t n)
{
    struct sw_slice s = trim((struct sw_slice){ p, n });
    size_t i = 0;

    if (agent_starts_with(s.ptr, s.len, "CertUtil:"))
        return 1;
    while (i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9')
        i++;
    return i > 0 && s.len - i == 5 && memcmp(s.ptr + i, " Rows", 5) == 0;
}

static void
csv_line(struct agent_parse_ctx *ctx, const char *line, size_t len)
{
    struct csv_state *st = ctx->state;

    if (!st->rec.open) {
        if (trim((struct sw_slice){ line, len }).len == 0 || is_footer(line, len)) {
            ctx->counts[AGENT_COUNT_NOISE]++;
            return;
        }
        if (!quote_parity(line, len)) {
            if (ctx->line_truncated)
                ctx->counts[AGENT_COUNT_MALFORMED]++;
            else
                record(ctx, line, len, ctx->line_offset);
            return;
        }
        /* a quoted field runs on into the next line */
        agent_record_begin(&st->rec, ctx, line, len);
    } else {
        agent_record_append(&st->rec, ctx, line, len, 1);
        if (quote_parity(line, len)) {
            /* the open field closes on this line: the record is complete */
            if (st->rec.broken || ctx->line_truncated)
                ctx->counts[AGENT_COUNT_MALFORMED]++;
            else
                record(ctx, st->rec.buf, st->rec.len, st->rec.offset);
            agent_record_end(&st->rec, ctx);
            return;
        }
    }
    /* the reader dropped the rest of an overlong line: the record has a hole */
    if (ctx->line_truncated && !st->rec.broken) {
        st->rec.broken = 1;
        ctx->hold_offset = UINT64_MAX;
    }
}

static void
csv_finish(struct agent_parse_ctx *ctx)
{
    struct csv_state *st = ctx->state;
    if (st->rec.open) {
        ctx->counts[AGENT_COUNT_PARTIAL]++;
        agent_record_end(&st->rec, ctx);
    }
}

static void
csv_fini(struct agent_parse_ctx *ctx)
{
    struct csv_state *st = ctx->state;
    if (!st)
        return;
    free(st->rec.buf);
    free(st->vals);
    free(st->b64);
    free(st->der);
    st->rec.buf = st->vals = st->b64 = NULL;
    st->der = NULL;
}

static sw_err
csv_init(struct agent_parse_ctx *ctx)
{
    struct csv_state *st = ctx->state;

    st->rec.buf = malloc(REC_CAP);
    st->vals = malloc(REC_CAP);
    st->b64 = malloc(B64_CAP);
    st->der = malloc(DER_CAP);
    if (!st->rec.buf || !st->vals || !st->b64 || !st->der) {
        csv_fini(ctx);
        return SW_ENOMEM;
    }
    return SW_OK;
}

/* The first non-blank line is certutil's header of quoted display names. */
static int
csv_probe(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len, *nl;
    size_t n = 0;

    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        n = (size_t)((nl ? nl : end) - p);
        if (trim((struct sw_slice){ p, n }).len)
            break;
        p = nl ? nl + 1 : end;
    }
    if (p == end)
        return 0;
    if (agent_find(p, n, "\"Request Disposition\"")) {
        if (agent_find(p, n, "\"Issued Request ID\"") || agent_find(p, n, "\"Request ID\""))
            return 95;
        return 70;
    }
    if (agent_find(p, n, "Request Disposition") && memchr(p, ',', n))
        return 50;
    return 0;
}

const struct agent_parser agent_parser_ca_certutil_csv = {
    .name = "ca_certutil_csv",
    .source = SW_SOURCE_CA_CERTUTIL_CSV,
    .probe = csv_probe,
    .state_size = sizeof(struct csv_state),
    .init = csv_init,
    .line = csv_line,
    .finish = csv_finish,
    .fini = csv_fini,
};
