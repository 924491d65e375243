/*
 * ndes_iis.c - IIS W3C logs of the NDES server (samples README 3.5).
 *
 * The columns of a data line are named by the latest "#Fields:" directive,
 * which an admin may customise and IIS repeats (possibly changed) on every
 * restart; before any, IIS's default field list applies.  The directive's
 * mapping is kept in the state as a small index table, so a data line is
 * split once, into a fixed array, and only as far as the last column that
 * matters.  Only two URL families matter (mscep.dll and the connector's
 * CertificateRegistrationSvc), so a line is first checked for either with
 * a case-insensitive scan over its '/' characters.
 */
#include <string.h>

#include "parser.h"
#include "sw_time.h"

#define MAX_COLS 64             /* columns addressable in a data line */

/* The columns the mapping reads. */
enum col {
    COL_DATE,
    COL_TIME,
    COL_STEM,
    COL_QUERY,
    COL_STATUS,
    COL_SUBSTATUS,
    COL_WIN32,
    COL_COUNT
};

static const char *const col_names[COL_COUNT] = {
    [COL_DATE] = "date",
    [COL_TIME] = "time",
    [COL_STEM] = "cs-uri-stem",
    [COL_QUERY] = "cs-uri-query",
    [COL_STATUS] = "sc-status",
    [COL_SUBSTATUS] = "sc-substatus",
    [COL_WIN32] = "sc-win32-status",
};

/* What IIS logs when nobody changed the field list. */
static const char default_fields[] =
    "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
    "cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken";

struct iis_state {
    struct agent_scratch scratch;   /* the detail text, reset per line */
    int col[COL_COUNT];             /* index of each column in a data line, -1 = absent */
    int need;                       /* fields a data line must have: last used index + 1 */
    int has_dir_date;               /* dir_date holds a #Date: directive's date */
    char dir_date[10];              /* YYYY-MM-DD, for logs without a date column */
};

/* The request a line records. */
enum target {
    TARGET_NONE,
    TARGET_MSCEP,                   /* /certsrv/mscep/mscep.dll[/...] */
    TARGET_VERIFY,                  /* connector VerifyRequest */
    TARGET_NOTIFY,                  /* connector Notify */
};

static inline int
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* W3C writes "-" for an empty value. */
static struct sw_slice
value(struct sw_slice t)
{
    return t.len == 1 && t.ptr[0] == '-' ? SW_SLICE_NONE : t;
}

/* Sets the column table from a field list; returns 0 if it named more than MAX_COLS. */
static int
set_fields(struct iis_state *st, const char *p, const char *end)
{
    struct sw_slice t;
    int i = 0;

    for (int k = 0; k < COL_COUNT; k++)
        st->col[k] = -1;
    st->need = 0;
    while (agent_next_field(&p, end, &t)) {
        if (i == MAX_COLS)
            return 0;
        for (int k = 0; k < COL_COUNT; k++) {
            if (st->col[k] < 0 && agent_slice_eq_ci(t, col_names[k])) {
                st->col[k] = i;
                if (i + 1 > st->need)
                    st->need = i + 1;
            }
        }
        i++;
    }
    return 1;
}

static sw_err
iis_init(struct agent_parse_ctx *ctx)
{
    set_fields(ctx->state, default_fields, default_fields + sizeof default_fields - 1);
    return SW_OK;
}

static void
directive(struct agent_parse_ctx *ctx, const char *l, size_t n)
{
    struct iis_state *st = ctx->state;
    const char *end = l + n;

    if (agent_starts_with_ci(l, n, "#Fields:")) {
        if (!set_fields(st, l + 8, end))
            ctx->counts[AGENT_COUNT_MALFORMED]++;
        else
            ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    if (agent_starts_with_ci(l, n, "#Date:")) {
        const char *p = l + 6;
        struct sw_slice d;
        int64_t t;
        st->has_dir_date = 0;
        if (agent_next_field(&p, end, &d) && d.len >= 10 && sw_time_parse(d.ptr, 10, 0, &t) == 0) {
            memcpy(st->dir_date, d.ptr, 10);
            st->has_dir_date = 1;
        }
    }
    ctx->counts[AGENT_COUNT_NOISE]++;
}

/*
 * Prefilter: does the line name an mscep or connector path?  '/' has no
 * case, so memchr finds the candidates and only they are compared.
 */
static int
names_target(const char *l, size_t n)
{
    const char *p = l, *end = l + n;

    while ((p = memchr(p, '/', (size_t)(end - p))) != NULL) {
        size_t rest = (size_t)(end - p);
        if (agent_starts_with_ci(p, rest, "/mscep") ||
            agent_starts_with_ci(p, rest, "/CertificateRegistrationSvc/"))
            return 1;
        p++;
    }
    return 0;
}

static enum target
target_of(struct sw_slice stem)
{
    static const char mscep[] = "/certsrv/mscep/mscep.dll";
    static const char crs[] = "/CertificateRegistrationSvc/Certificate/";
    const size_t ml = sizeof mscep - 1, cl = sizeof crs - 1;

    if (agent_starts_with_ci(stem.ptr, stem.len, mscep) &&
        (stem.len == ml || stem.ptr[ml] == '/'))
        return TARGET_MSCEP;
    if (agent_starts_with_ci(stem.ptr, stem.len, crs)) {
        struct sw_slice r = { stem.ptr + cl, stem.len - cl };
        if (r.len && r.ptr[r.len - 1] == '/')
            r.len--;
        if (agent_slice_eq_ci(r, "VerifyRequest"))
            return TARGET_VERIFY;
        if (agent_slice_eq_ci(r, "Notify"))
            return TARGET_NOTIFY;
    }
    return TARGET_NONE;
}

/* The operation= value of a query, spelled as the README writes it; NULL if none of the three. */
static const char *
operation_of(struct sw_slice q)
{
    static const char *const ops[] = { "GetCACert", "GetCACaps", "PKIOperation" };
    const char *p = q.ptr, *end;

    if (!q.len)
        return NULL;
    end = q.ptr + q.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if (agent_starts_with_ci(p, (size_t)(e - p), "operation=")) {
            struct sw_slice v = { p + 10, (size_t)(e - (p + 10)) };
            for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
                if (agent_slice_eq_ci(v, ops[i]))
                    return ops[i];
            return NULL;
        }
        p = e + 1;
    }
    return NULL;
}

/* sc-status as a number, or -1 if it is not three digits. */
static int
status_of(struct sw_slice s)
{
    int v;

    if (s.len != 3 || sw_parse_digits(s.ptr, 3, 3, &v) != 3)
        return -1;
    return v;
}

/* Appends p[0..n) to *acc, which must end at the arena's end; 0 when full. */
static int
cat(struct agent_scratch *s, struct sw_slice *acc, const char *p, size_t n)
{
    struct sw_slice c;

    if (!n)
        return 1;
    c = agent_scratch_copy(s, p, n);
    if (!c.len)
        return 0;
    if (!acc->len)
        acc->ptr = c.ptr;
    acc->len += n;
    return 1;
}

/* F: "<Op> <sc-status>.<sc-substatus>[ win32=<sc-win32-status>]"; absent if it does not fit. */
static struct sw_slice
detail_f(struct iis_state *st, const char *op, struct sw_slice status, struct sw_slice sub,
         struct sw_slice win32)
{
    struct sw_slice d = SW_SLICE_NONE;
    size_t zeros = 0;
    int ok;

    while (zeros < win32.len && win32.ptr[zeros] == '0')
        zeros++;
    ok = cat(&st->scratch, &d, op, strlen(op)) && cat(&st->scratch, &d, " ", 1) &&
         cat(&st->scratch, &d, status.ptr, status.len);
    if (ok && sub.len)
        ok = cat(&st->scratch, &d, ".", 1) && cat(&st->scratch, &d, sub.ptr, sub.len);
    if (ok && win32.len && zeros != win32.len)
        ok = cat(&st->scratch, &d, " win32=", 7) && cat(&st->scratch, &d, win32.ptr, win32.len);
    return ok ? d : SW_SLICE_NONE;
}

/* date + time, UTC by definition; a log without a date column uses #Date:. */
static int
line_time(const struct iis_state *st, struct sw_slice date, struct sw_slice time, int64_t *out)
{
    char buf[64];

    if (!date.len && st->has_dir_date)
        date = (struct sw_slice){ st->dir_date, 10 };
    if (date.len != 10 || !time.len || time.len > sizeof buf - 11)
        return -1;
    memcpy(buf, date.ptr, 10);
    buf[10] = ' ';
    memcpy(buf + 11, time.ptr, time.len);
    return sw_time_parse(buf, 11 + time.len, 0, out);
}

static void
iis_line(struct agent_parse_ctx *ctx, const char *line, size_t len)
{
    struct iis_state *st = ctx->state;
    struct sw_slice f[MAX_COLS], c[COL_COUNT];
    const char *p = line, *end = line + len, *op = NULL;
    struct sw_event ev;
    enum target target;
    int got = 0, status;

    while (p < end && is_blank(*p))
        p++;
    if (p < end && *p == '#') {
        directive(ctx, p, (size_t)(end - p));
        return;
    }
    if (!names_target(p, (size_t)(end - p))) {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    while (got < st->need && agent_next_field(&p, end, &f[got]))
        got++;
    if (got < st->need) {
        ctx->counts[AGENT_COUNT_MALFORMED]++;
        return;
    }
    for (int k = 0; k < COL_COUNT; k++)
        c[k] = st->col[k] >= 0 ? value(f[st->col[k]]) : SW_SLICE_NONE;
    if (st->col[COL_STEM] < 0) {
        /* the path named by the prefilter may be the stem: no way to tell */
        ctx->counts[AGENT_COUNT_MALFORMED]++;
        return;
    }
    target = c[COL_STEM].len ? target_of(c[COL_STEM]) : TARGET_NONE;
    if (target == TARGET_NONE) {
        /* the path was in the query, the referer or the user agent */
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    status = status_of(c[COL_STATUS]);
    if (status < 0) {
        ctx->counts[AGENT_COUNT_MALFORMED]++;
        return;
    }
    if (status / 100 != 2 && status / 100 != 4 && status / 100 != 5) {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    memset(&ev, 0, sizeof ev);
    agent_scratch_reset(&st->scratch);
    switch (target) {
    case TARGET_MSCEP:
        if (st->col[COL_QUERY] < 0) {
            /* the field list has no cs-uri-query: the operation is unknowable */
            ctx->counts[AGENT_COUNT_MALFORMED]++;
            return;
        }
        op = operation_of(c[COL_QUERY]);
        if (!op) {
            ctx->counts[AGENT_COUNT_NOISE]++;
            return;
        }
        ev.platform = SW_PLATFORM_NDES;
        ev.stage = status / 100 == 2 ? SW_STAGE_NDES_REQUEST : SW_STAGE_NDES_ERROR;
        break;
    case TARGET_VERIFY:
        op = "VerifyRequest";
        ev.platform = SW_PLATFORM_CONNECTOR;
        ev.stage = status / 100 == 2 ? SW_STAGE_CHALLENGE_VERIFIED : SW_STAGE_CHALLENGE_FAILED;
        break;
    default:
        op = "Notify";
        ev.platform = SW_PLATFORM_CONNECTOR;
        ev.stage = status / 100 == 2 ? SW_STAGE_REPORTED : SW_STAGE_REPORT_FAILED;
        break;
    }
    if (line_time(st, c[COL_DATE], c[COL_TIME], &ev.ts_us) != 0) {
        ctx->counts[AGENT_COUNT_BAD_TIME]++;
        return;
    }
    if (status / 100 != 2)
        ev.detail = detail_f(st, op, c[COL_STATUS], c[COL_SUBSTATUS], c[COL_WIN32]);
    else if (target == TARGET_MSCEP)
        ev.detail = sw_slice_cstr(op); /* a 2xx keeps the operation; win32 is ignored */
    agent_parse_emit(ctx, &ev);
}

/* An IIS header, a #Fields: line naming time and cs-uri-stem, or default-shaped mscep lines. */
static int
iis_probe(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    int data = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);

        if (agent_starts_with(p, n, "#Software: Microsoft Internet Information Services"))
            return 100;
        if (agent_starts_with_ci(p, n, "#Fields:")) {
            struct iis_state st;
            if (set_fields(&st, p + 8, le) && st.col[COL_TIME] >= 0 && st.col[COL_STEM] >= 0)
                return 95;
        }
        /* "YYYY-MM-DD HH:MM:SS " then an mscep or connector stem as a field of its own */
        if (n > 20 && p[4] == '-' && p[7] == '-' && p[10] == ' ' && p[13] == ':' &&
            p[16] == ':' && p[19] == ' ') {
            const char *q = p + 20;
            struct sw_slice t;
            while (agent_next_field(&q, le, &t))
                if (target_of(t) != TARGET_NONE) {
                    data++;
                    break;
                }
        }
        if (!nl)
            break;
        p = nl + 1;
    }
    return data ? 50 : 0;
}

const struct agent_parser agent_parser_ndes_iis = {
    .name = "ndes_iis",
    .source = SW_SOURCE_NDES_IIS,
    .probe = iis_probe,
    .state_size = sizeof(struct iis_state),
    .init = iis_init,
    .line = iis_line,
};
