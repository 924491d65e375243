/*
 * ios_console.c - the iOS `profiled` SCEP lines (samples README 3.2) from
 * three shapes of the same log:
 *
 *   Console.app text:  <type> <HH:MM:SS.ffffff>[ ]<±HHMM> <process> <message>
 *   the same pasted through TextEdit as RTF ({\rtf header, \'93 escapes,
 *   a trailing "\" per line, control words);
 *   `log show`:        <date> <time±HHMM> <thread> <Type> <activity> <pid>
 *                      <ttl> profiled: [subsystem:category] <message>
 *                      and its compact and syslog styles.
 *
 * Only `profiled` matters and most lines of an export belong to other
 * processes, so a line is first checked for the word with one memmem; only
 * then is it decoded (RTF), split and mapped.
 *
 * Time: Console lines carry a time and an offset but no date.  The date
 * comes from opts (--date, else the file's mtime) and is the local calendar
 * date in the line's own offset.  When a date-less line's local clock reads
 * more than an hour before the previous line's, in the same offset, the
 * clock has wrapped past midnight and the local date moves on by a day;
 * smaller steps back are lines logged out of order, and a change of offset
 * (daylight saving, travel) is not a wrap.  Only profiled lines are timed (the prefilter skips the
 * rest), so a wrap is seen as long as profiled lines less than a day apart
 * straddle it.  `log show` lines carry their own date and ignore opts.
 */
#include <stdlib.h>
#include <string.h>

#include "parser.h"
#include "sw_time.h"

#define MIN_US  ((int64_t)60 * 1000000)
#define HOUR_US (60 * MIN_US)
#define DAY_US  (24 * HOUR_US)

#define DETAIL_MAX 1024         /* bytes of a free-text failure kept in detail */
#define SCEP_KEY "www.windowsintune.com.SCEP."

struct ios_state {
    struct agent_scratch scratch;   /* normalised values, reset per line */
    char *rtf_buf;                  /* decoded RTF line; grown, never shrunk */
    size_t rtf_cap;                 /* bytes at rtf_buf */
    int rtf;                        /* a {\rtf line was seen: decode lines */
    int rtf_ended;                  /* a lone "}" closed that document */
    int have_last;                  /* last_us holds a date-less line's time */
    int64_t last_us;                /* that time on the local clock, microseconds */
    int last_off;                   /* its offset, minutes east of UTC */
    int64_t day_shift;              /* days the local date is past opts' */
};

/* What the first columns of a line say. */
struct head {
    int typed;                      /* a type word (debug, default, ...) led */
    int dated;                      /* the line carries its own date */
    int y, mo, d;                   /* that date */
    int h, mi, s, usec;             /* local time of day */
    int has_off;                    /* an offset was given */
    int off_min;                    /* that offset, minutes east of UTC */
    int bad;                        /* a date, time or offset is impossible */
};

static inline int
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static inline int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline int
is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int
is_type(struct sw_slice t)
{
    return agent_slice_eq_ci(t, "default") || agent_slice_eq_ci(t, "debug") || agent_slice_eq_ci(t, "info") ||
           agent_slice_eq_ci(t, "error") || agent_slice_eq_ci(t, "fault");
}

/* "YYYY-MM-DD" at the start of t. */
static int
is_date(struct sw_slice t)
{
    static const char shape[] = "dddd-dd-dd";

    if (t.len < 10)
        return 0;
    for (int i = 0; i < 10; i++)
        if (shape[i] == 'd' ? !is_digit(t.ptr[i]) : t.ptr[i] != '-')
            return 0;
    return 1;
}

/*
 * Reads "H[H]:MM:SS[.frac]" and an offset glued to it ("-0700", "+05:30",
 * "Z").  Returns 1; 0 when t does not start like a time; -1 when it does
 * but a value or the rest of the token is impossible.
 */
static int
read_clock(struct sw_slice t, struct head *h)
{
    const char *s = t.ptr;
    size_t n = t.len, i;
    int k;

    k = sw_parse_digits(s, n, 2, &h->h);
    if (k == 0 || (size_t)k >= n || s[k] != ':')
        return 0;
    i = (size_t)k + 1;
    if (sw_parse_digits(s + i, n - i, 2, &h->mi) != 2)
        return -1;
    i += 2;
    if (i >= n || s[i] != ':' || sw_parse_digits(s + i + 1, n - i - 1, 2, &h->s) != 2)
        return -1;
    i += 3;
    if (i < n && (s[i] == '.' || s[i] == ',')) {
        k = sw_parse_fraction(s + i + 1, n - i - 1, &h->usec);
        if (k == 0)
            return -1;
        i += 1 + (size_t)k;
    }
    if (i < n) {
        k = sw_parse_tz(s + i, n - i, &h->off_min);
        if (k == 0 || i + (size_t)k != n)
            return -1;
        h->has_off = 1;
    }
    if (h->h > 23 || h->mi > 59 || h->s > 60)
        return -1;
    return 1;
}

/* A separate offset token ("-0500", "+05:30"): 1; 0 when not one; -1 impossible. */
static int
read_offset(struct sw_slice t, int *off_min)
{
    if (t.len < 5 || t.len > 6 || (t.ptr[0] != '+' && t.ptr[0] != '-') || !is_digit(t.ptr[1]))
        return 0;
    return sw_parse_tz(t.ptr, t.len, off_min) == (int)t.len ? 1 : -1;
}

/*
 * Reads [type] [date] time [offset] from the start of a line and leaves *p
 * after them.  Returns 0 when the line does not start like a log line;
 * impossible values set h->bad but still return 1, so the caller can tell
 * a profiled line with a bad time from noise.
 */
static int
read_head(const char **p, const char *end, struct head *h)
{
    struct sw_slice t;
    const char *q;
    int r;

    memset(h, 0, sizeof *h);
    if (!agent_next_field(p, end, &t))
        return 0;
    if (is_type(t)) {
        h->typed = 1;
        if (!agent_next_field(p, end, &t))
            return 0;
    }
    if (is_date(t)) {
        h->dated = 1;
        sw_parse_digits(t.ptr, 4, 4, &h->y);
        sw_parse_digits(t.ptr + 5, 2, 2, &h->mo);
        sw_parse_digits(t.ptr + 8, 2, 2, &h->d);
        if (t.len > 10) {
            if (t.ptr[10] != 'T' && t.ptr[10] != 't')
                return 0;
            t.ptr += 11;
            t.len -= 11;
        } else if (!agent_next_field(p, end, &t)) {
            return 0;
        }
    }
    r = read_clock(t, h);
    if (r == 0)
        return 0;
    if (r < 0)
        h->bad = 1;
    if (!h->has_off) {
        q = *p;
        if (agent_next_field(&q, end, &t)) {
            r = read_offset(t, &h->off_min);
            if (r != 0)
                *p = q;
            if (r > 0)
                h->has_off = 1;
            else if (r < 0)
                h->bad = 1;
        }
    }
    return 1;
}

/* "profiled", "profiled:", "profiled[312]:", "profiled[312:2f1a]", "profiled(...)" */
static int
is_profiled(struct sw_slice t)
{
    return t.len >= 8 && memcmp(t.ptr, "profiled", 8) == 0 &&
           (t.len == 8 || t.ptr[8] == ':' || t.ptr[8] == '[' || t.ptr[8] == '(');
}

/* `log show` columns before the process: thread/activity ids, pids, types. */
static int
is_meta(struct sw_slice t)
{
    size_t i = 0;

    if (is_type(t))
        return 1;
    if (t.len > 2 && t.ptr[0] == '0' && (t.ptr[1] == 'x' || t.ptr[1] == 'X'))
        i = 2;
    if (i < t.len) {
        size_t j = i;
        while (j < t.len && (i ? hex_val(t.ptr[j]) >= 0 : is_digit(t.ptr[j])))
            j++;
        if (j == t.len)
            return 1;
    }
    /* compact style's type codes: Df, Db, I, E, F, A */
    if (t.len <= 2) {
        for (i = 0; i < t.len; i++)
            if (!is_alpha(t.ptr[i]))
                return 0;
        return 1;
    }
    return 0;
}

/* A token that is a process column in `log show`: "name:" or "name[pid...]". */
static int
names_process(struct sw_slice t)
{
    return memchr(t.ptr, '[', t.len) != NULL || t.ptr[t.len - 1] == ':';
}

/*
 * Finds the process column after the head.  A Console line has it next;
 * `log show` puts thread, type, activity, pid and ttl (default style), a
 * type code (compact) or a host name (syslog) before it.  Returns 1 with
 * *proc set, 0 when the line has no recognisable process column.
 */
static int
find_process(const char **p, const char *end, const struct head *h, struct sw_slice *proc)
{
    struct sw_slice t;
    int host = 0;

    if (!h->dated)
        return agent_next_field(p, end, proc);
    for (int i = 0; i < 8 && agent_next_field(p, end, &t); i++) {
        if (is_profiled(t) || names_process(t)) {
            *proc = t;
            return 1;
        }
        if (is_meta(t))
            continue;
        if (host)
            return 0;
        host = 1;
    }
    return 0;
}

/* The message: what follows the process, past `log show`'s (library) and [subsystem:category]. */
static struct sw_slice
message_of(const char *p, const char *end)
{
    static const char groups[][2] = { { '(', ')' }, { '[', ']' } };

    for (int g = 0; g < 2; g++) {
        while (p < end && is_blank(*p))
            p++;
        if (p < end && *p == groups[g][0]) {
            const char *q = p + 1;
            while (q < end && *q != groups[g][1] && !is_blank(*q))
                q++;
            if (q < end && *q == groups[g][1])
                p = q + 1;
        }
    }
    return agent_trim(p, (size_t)(end - p));
}

/* "profiled" as a column of its own somewhere in a line that did not split. */
static int
profiled_word(const char *l, size_t n)
{
    const char *p = l, *end = l + n;

    while ((p = memmem(p, (size_t)(end - p), "profiled", 8)) != NULL) {
        const char *e = p + 8;
        if ((p == l || is_blank(p[-1])) &&
            (e == end || is_blank(*e) || *e == ':' || *e == '['))
            return 1;
        p = e;
    }
    return 0;
}

/* ---- RTF ---- */

/* Windows-1252 0x80..0x9f; the rest of the code page is Latin-1. */
static const uint16_t cp1252_hi[32] = {
    0x20ac, 0xfffd, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
    0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0xfffd, 0x017d, 0xfffd,
    0xfffd, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
    0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0xfffd, 0x017e, 0x0178,
};

/* Control words that stand for a character; all others are dropped. */
static const struct {
    const char *word;
    uint32_t cp;
} rtf_chars[] = {
    { "tab", '\t' },        { "par", ' ' },         { "line", ' ' },
    { "emspace", ' ' },     { "enspace", ' ' },     { "lquote", 0x2018 },
    { "rquote", 0x2019 },   { "ldblquote", 0x201c }, { "rdblquote", 0x201d },
    { "emdash", 0x2014 },   { "endash", 0x2013 },   { "bullet", 0x2022 },
};

/* Output of the decoder: a bounded buffer and a pending UTF-16 high surrogate. */
struct rtf_out {
    char *buf;
    size_t cap, len;
    uint32_t hi;                    /* high surrogate from \uN, 0 = none */
};

static void
put_utf8(struct rtf_out *o, uint32_t cp)
{
    unsigned char b[4];
    size_t k;

    if (cp == 0)
        return; /* a NUL would cut the line for every later consumer */
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        k = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | cp >> 6);
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        b[0] = (unsigned char)(0xf0 | cp >> 18);
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    if (o->cap - o->len < k)
        return;
    memcpy(o->buf + o->len, b, k);
    o->len += k;
}

/* One decoded character; pairs \uN surrogates, replaces lone ones. */
static void
put_char(struct rtf_out *o, uint32_t cp)
{
    if (o->hi) {
        uint32_t hi = o->hi;
        o->hi = 0;
        if (cp >= 0xdc00 && cp <= 0xdfff) {
            put_utf8(o, 0x10000 + ((hi - 0xd800) << 10) + (cp - 0xdc00));
            return;
        }
        put_utf8(o, 0xfffd);
    }
    if (cp >= 0xd800 && cp <= 0xdbff)
        o->hi = cp;
    else if (cp >= 0xdc00 && cp <= 0xdfff)
        put_utf8(o, 0xfffd);
    else
        put_utf8(o, cp);
}

/* A byte of the line as it is (RTF is 7-bit; anything else passes through). */
static void
put_byte(struct rtf_out *o, char c)
{
    if (o->hi) {
        o->hi = 0;
        put_utf8(o, 0xfffd);
    }
    if (c != '\0' && o->len < o->cap)
        o->buf[o->len++] = c;
}

static uint32_t
cp1252(unsigned b)
{
    return b >= 0x80 && b < 0xa0 ? cp1252_hi[b - 0x80] : b;
}

/* Length of the paragraph text: a trailing unescaped "\" goes, with the blanks around it. */
static size_t
rtf_text_len(const char *s, size_t n)
{
    size_t bs = 0;

    while (n && is_blank(s[n - 1]))
        n--;
    while (bs < n && s[n - 1 - bs] == '\\')
        bs++;
    if (bs % 2) {
        n--;
        while (n && is_blank(s[n - 1]))
            n--;
    }
    return n;
}

/*
 * Decodes one line of RTF body text: control words dropped (\tab and a few
 * others become their character, \uN its character), \'hh read as
 * Windows-1252, \\ \{ \} unescaped, group braces dropped, the trailing
 * paragraph "\" removed.  The result is never longer than the input.
 */
static size_t
rtf_decode(const char *s, size_t n, char *out, size_t cap)
{
    struct rtf_out o = { out, cap, 0, 0 };
    size_t i = 0;
    int uc = 1;                     /* stand-in characters after each \uN */

    n = rtf_text_len(s, n);
    while (i < n) {
        char c = s[i];
        if (c == '{' || c == '}') {
            i++;
            continue;
        }
        if (c != '\\') {
            put_byte(&o, c);
            i++;
            continue;
        }
        if (i + 1 == n)
            break;
        c = s[i + 1];
        if (c == '\'') {
            if (i + 3 < n && hex_val(s[i + 2]) >= 0 && hex_val(s[i + 3]) >= 0) {
                put_char(&o, cp1252((unsigned)(hex_val(s[i + 2]) * 16 + hex_val(s[i + 3]))));
                i += 4;
            } else {
                i += 2;
            }
        } else if (is_alpha(c)) {
            const char *w = s + i + 1;
            size_t j = i + 1, wl;
            long param = 0;
            int has_param = 0, neg = 0;

            while (j < n && is_alpha(s[j]))
                j++;
            wl = (size_t)(s + j - w);
            if (j + 1 < n && s[j] == '-' && is_digit(s[j + 1])) {
                neg = 1;
                j++;
            }
            for (int d = 0; j < n && is_digit(s[j]); j++, d++) {
                if (d < 9)
                    param = param * 10 + (s[j] - '0');
                has_param = 1;
            }
            if (neg)
                param = -param;
            if (j < n && s[j] == ' ')
                j++; /* the delimiter belongs to the word */
            i = j;
            if (wl == 1 && *w == 'u' && has_param) {
                put_char(&o, (uint32_t)(param < 0 ? param + 65536 : param) & 0xffff);
                /* skip the stand-ins for readers without Unicode */
                for (int k = 0; k < uc && i < n; k++) {
                    if (s[i] == '\\' && i + 3 < n && s[i + 1] == '\'')
                        i += 4;
                    else if (s[i] != '\\' && s[i] != '{' && s[i] != '}')
                        i++;
                    else
                        break;
                }
            } else if (wl == 2 && memcmp(w, "uc", 2) == 0 && has_param) {
                uc = param < 0 ? 0 : param > 4 ? 4 : (int)param;
            } else {
                for (size_t k = 0; k < sizeof rtf_chars / sizeof rtf_chars[0]; k++)
                    if (strlen(rtf_chars[k].word) == wl &&
                        memcmp(rtf_chars[k].word, w, wl) == 0) {
                        put_char(&o, rtf_chars[k].cp);
                        break;
                    }
            }
        } else {
            i += 2;
            if (c == '\\' || c == '{' || c == '}')
                put_char(&o, (unsigned char)c);
            else if (c == '~')
                put_char(&o, ' ');
            else if (c == '_')
                put_char(&o, '-');
        }
    }
    if (o.hi)
        put_utf8(&o, 0xfffd);
    return o.len;
}

/* RTF text outside an RTF document: a tailer resuming mid-file, or a paste. */
static int
looks_rtf(const char *l, size_t n)
{
    struct sw_slice t = agent_trim(l, n);

    if (t.len > 1 && t.ptr[0] == '\\' && is_alpha(t.ptr[1]))
        return 1;
    return rtf_text_len(t.ptr, t.len) != t.len;
}

/* Decodes line into the state's buffer; NULL when it cannot be had. */
static const char *
rtf_line(struct ios_state *st, const char *line, size_t *len)
{
    size_t need = *len + 8;

    if (need > st->rtf_cap) {
        size_t cap = st->rtf_cap ? st->rtf_cap : 4096;
        char *b;
        while (cap < need)
            cap *= 2;
        b = realloc(st->rtf_buf, cap);
        if (!b)
            return NULL;
        st->rtf_buf = b;
        st->rtf_cap = cap;
    }
    *len = rtf_decode(line, *len, st->rtf_buf, st->rtf_cap);
    return st->rtf_buf;
}

/* ---- mapping ---- */

/*
 * The UTC time of a line.  A date-less line takes opts' date, advanced by
 * the days its clock has wrapped past midnight.  Returns 0 or -1.
 */
static int
line_time(struct agent_parse_ctx *ctx, const struct head *h, int64_t *out)
{
    struct ios_state *st = ctx->state;
    const struct agent_parse_opts *o = &ctx->opts;
    int off = h->has_off ? h->off_min : o->tz_off_min;
    int64_t t;

    if (h->bad)
        return -1;
    if (h->dated) {
        if (sw_time_make(h->y, h->mo, h->d, h->h, h->mi, h->s, h->usec, &t) != 0)
            return -1;
        *out = t - off * MIN_US;
        return 0;
    }
    if (!o->has_date ||
        sw_time_make(o->date_y, o->date_m, o->date_d, h->h, h->mi, h->s, h->usec, &t) != 0)
        return -1;
    t += st->day_shift * DAY_US;
    if (st->have_last && off == st->last_off && t < st->last_us - HOUR_US) {
        st->day_shift++;
        t += DAY_US;
    }
    st->last_us = t;
    st->last_off = off;
    st->have_last = 1;
    *out = t - off * MIN_US;
    return 0;
}

/* The stage for a request URL's operation= value. */
static enum sw_stage
url_stage(const char *m, size_t n)
{
    const char *p = m, *end = m + n;

    while ((p = memmem(p, (size_t)(end - p), "operation=", 10)) != NULL) {
        if (p > m && (p[-1] == '?' || p[-1] == '&')) {
            struct sw_slice op = { p + 10, 0 };
            while (op.ptr + op.len < end && op.ptr[op.len] != '&' && op.ptr[op.len] != '#' &&
                   !is_blank(op.ptr[op.len]))
                op.len++;
            if (agent_slice_eq_ci(op, "GetCACert"))
                return SW_STAGE_CACERT_REQUESTED;
            if (agent_slice_eq_ci(op, "GetCACaps"))
                return SW_STAGE_CACAPS_REQUESTED;
            if (agent_slice_eq_ci(op, "PKIOperation"))
                return SW_STAGE_ENROLL_REQUESTED;
            return SW_STAGE_UNKNOWN;
        }
        p += 10;
    }
    return SW_STAGE_UNKNOWN;
}

/* The value after "<key> :" or "<key>=" in an NSError text; the key must start a word. */
static struct sw_slice
nserror_value(const char *m, size_t n, const char *key)
{
    const char *p = m, *end = m + n;
    size_t kl = strlen(key);

    while ((p = memmem(p, (size_t)(end - p), key, kl)) != NULL) {
        const char *v = p + kl, *e;
        if (p == m || is_blank(p[-1]) || p[-1] == '{') {
            while (v < end && is_blank(*v))
                v++;
            if (v < end && (*v == ':' || *v == '=')) {
                v++;
                while (v < end && is_blank(*v))
                    v++;
                e = v;
                while (e < end && !is_blank(*e) && *e != ',' && *e != ';' && *e != '"' &&
                       *e != ')' && *e != '}')
                    e++;
                if (e > v)
                    return (struct sw_slice){ v, (size_t)(e - v) };
            }
        }
        p += kl;
    }
    return SW_SLICE_NONE;
}

/* Cuts a free-text value to DETAIL_MAX bytes without splitting a UTF-8 sequence. */
static struct sw_slice
cap_text(struct sw_slice t)
{
    if (t.len > DETAIL_MAX) {
        t.len = DETAIL_MAX;
        while (t.len && ((unsigned char)t.ptr[t.len] & 0xc0) == 0x80)
            t.len--;
    }
    return t;
}

/* detail for I8-I10: "<Domain> <Code>", else the text after the colon. */
static struct sw_slice
nserror_detail(struct ios_state *st, const char *m, size_t n)
{
    struct sw_slice dom = nserror_value(m, n, "Domain");
    struct sw_slice code = nserror_value(m, n, "Code");
    struct sw_slice a, b;

    if (dom.len && code.len) {
        a = agent_scratch_copy(&st->scratch, dom.ptr, dom.len);
        b = agent_scratch_copy(&st->scratch, " ", 1);
        if (a.len && b.len && agent_scratch_copy(&st->scratch, code.ptr, code.len).len)
            return (struct sw_slice){ a.ptr, dom.len + 1 + code.len };
        return cap_text(dom);
    }
    if (dom.len)
        return cap_text(dom);
    if (code.len)
        return cap_text(code);
    return cap_text(agent_trim(m, n));
}

/* I11, I12: "Adding dependent <A> to parent <B> in domain <D> ..." */
static void
dependent_line(struct agent_parse_ctx *ctx, struct sw_event *ev, const char *m, size_t n)
{
    struct ios_state *st = ctx->state;
    const char *end = m + n, *a = m + 17, *to, *in, *dp;
    struct sw_slice dom = SW_SLICE_NONE, pa, pb;

    to = agent_find(a, (size_t)(end - a), " to parent ");
    in = to ? agent_find(to + 11, (size_t)(end - (to + 11)), " in domain ") : NULL;
    if (!in) {
        ctx->counts[AGENT_COUNT_MALFORMED]++;
        return;
    }
    pa = (struct sw_slice){ a, (size_t)(to - a) };
    pb = (struct sw_slice){ to + 11, (size_t)(in - (to + 11)) };
    dp = in + 11;
    agent_next_field(&dp, end, &dom);
    if (dom.len == 31 && memcmp(dom.ptr, "ManagedProfileToManagingProfile", 31) == 0) {
        if (!agent_starts_with_ci(pb.ptr, pb.len, SCEP_KEY)) {
            ctx->counts[AGENT_COUNT_NOISE]++;
            return;
        }
        ev->stage = SW_STAGE_INSTALLING;
        ev->profile = agent_profile_from(&st->scratch, pb.ptr, pb.len);
    } else if (agent_find(pa.ptr, pa.len, "LogicalName_")) {
        ev->stage = SW_STAGE_PROFILE_RECEIVED;
        ev->profile = agent_profile_from(&st->scratch, pa.ptr, pa.len);
    } else if (agent_find(pb.ptr, pb.len, "LogicalName_")) {
        ev->stage = SW_STAGE_PROFILE_RECEIVED;
        ev->profile = agent_profile_from(&st->scratch, pb.ptr, pb.len);
    } else {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    agent_parse_emit(ctx, ev);
}

/*
 * Length of a quote mark at p: “ ” (UTF-8), \'93 \'94 (RTF escapes left
 * in a line that was not decoded), Windows-1252 0x93 0x94, or ".
 */
static size_t
quote_at(const char *p, const char *end)
{
    size_t n = (size_t)(end - p);

    if (n >= 3 && memcmp(p, "\xe2\x80", 2) == 0 && (p[2] == '\x9c' || p[2] == '\x9d'))
        return 3;
    if (n >= 4 && (memcmp(p, "\\'93", 4) == 0 || memcmp(p, "\\'94", 4) == 0))
        return 4;
    if (n >= 1 && (*p == '"' || *p == '\x93' || *p == '\x94'))
        return 1;
    return 0;
}

/* I13, I14: "Profile “<id>” installed." */
static void
profile_line(struct agent_parse_ctx *ctx, struct sw_event *ev, const char *m, size_t n)
{
    struct ios_state *st = ctx->state;
    const char *end = m + n, *id = m + 8, *q;
    size_t ql = quote_at(id, end), cl = 0;
    struct sw_slice rest;

    if (!ql)
        goto noise;
    id += ql;
    for (q = id; q < end && !(cl = quote_at(q, end)); q++)
        ;
    if (!cl)
        goto noise;
    rest = agent_trim(q + cl, (size_t)(end - (q + cl)));
    if (!agent_starts_with(rest.ptr, rest.len, "installed") ||
        !agent_starts_with_ci(id, (size_t)(q - id), SCEP_KEY))
        goto noise;
    ev->stage = SW_STAGE_INSTALLED;
    ev->profile = agent_profile_from(&st->scratch, id, (size_t)(q - id));
    agent_parse_emit(ctx, ev);
    return;
noise:
    ctx->counts[AGENT_COUNT_NOISE]++;
}

/* Messages mapped by their start alone (I4-I10). */
static const struct {
    const char *prefix;
    enum sw_stage stage;
    int nserror;                    /* the rest is an NSError: detail */
} simple_msgs[] = {
    { "GetCACert returned ", SW_STAGE_CACERT_RECEIVED, 0 },
    { "Sending CSR via ", SW_STAGE_CSR_GENERATED, 0 },
    { "Sleeping before polling SCEP server again", SW_STAGE_ENROLL_PENDING, 0 },
    { "Issued certificate received", SW_STAGE_ENROLL_ISSUED, 0 },
    { "Could not retrieve issued certificate:", SW_STAGE_ENROLL_FAILED, 1 },
    { "Cannot retrieve SCEP identity:", SW_STAGE_ENROLL_FAILED, 1 },
    { "Could not generate public/private key pair:", SW_STAGE_ENROLL_FAILED, 1 },
};

static void
map_message(struct agent_parse_ctx *ctx, struct sw_event *ev, struct sw_slice msg)
{
    static const char url_req[] = "Performing synchronous URL request:";
    const char *m = msg.ptr;
    size_t n = msg.len;

    if (agent_starts_with(m, n, url_req)) {
        ev->stage = url_stage(m + sizeof url_req - 1, n - (sizeof url_req - 1));
        if (ev->stage == SW_STAGE_UNKNOWN) {
            ctx->counts[AGENT_COUNT_NOISE]++;
            return;
        }
        agent_parse_emit(ctx, ev);
        return;
    }
    for (size_t i = 0; i < sizeof simple_msgs / sizeof simple_msgs[0]; i++) {
        size_t k = strlen(simple_msgs[i].prefix);
        if (agent_starts_with(m, n, simple_msgs[i].prefix)) {
            ev->stage = simple_msgs[i].stage;
            if (simple_msgs[i].nserror)
                ev->detail = nserror_detail(ctx->state, m + k, n - k);
            agent_parse_emit(ctx, ev);
            return;
        }
    }
    if (agent_starts_with(m, n, "Adding dependent "))
        dependent_line(ctx, ev, m, n);
    else if (agent_starts_with(m, n, "Profile "))
        profile_line(ctx, ev, m, n);
    else
        ctx->counts[AGENT_COUNT_NOISE]++;
}

/* A line holding only "}" (the end of an RTF document). */
static int
is_rtf_end(const char *l, size_t n)
{
    struct sw_slice t = agent_trim(l, n);
    return t.len == 1 && t.ptr[0] == '}';
}

static void
ios_line(struct agent_parse_ctx *ctx, const char *line, size_t len)
{
    struct ios_state *st = ctx->state;
    const char *p, *end;
    struct head h;
    struct sw_slice proc;
    struct sw_event ev;

    if (agent_starts_with(line, len, "{\\rtf")) {
        st->rtf = 1;
        st->rtf_ended = 0;
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    /* prefilter: most lines of an export are other processes */
    if (!memmem(line, len, "profiled", 8)) {
        if (st->rtf && is_rtf_end(line, len))
            st->rtf_ended = 1;
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    if (st->rtf_ended) {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    if (st->rtf || looks_rtf(line, len)) {
        line = rtf_line(st, line, &len);
        if (!line) {
            ctx->counts[AGENT_COUNT_MALFORMED]++;
            return;
        }
    }
    p = line;
    end = line + len;
    if (!read_head(&p, end, &h)) {
        ctx->counts[profiled_word(line, len) ? AGENT_COUNT_MALFORMED : AGENT_COUNT_NOISE]++;
        return;
    }
    if (!find_process(&p, end, &h, &proc) || !is_profiled(proc)) {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    memset(&ev, 0, sizeof ev);
    agent_scratch_reset(&st->scratch);
    if (line_time(ctx, &h, &ev.ts_us) != 0) {
        ctx->counts[AGENT_COUNT_BAD_TIME]++;
        return;
    }
    ev.platform = SW_PLATFORM_IOS;
    ev.cert = SW_CERT_SCEP;
    map_message(ctx, &ev, message_of(p, end));
}

static void
ios_fini(struct agent_parse_ctx *ctx)
{
    struct ios_state *st = ctx->state;

    if (st) {
        free(st->rtf_buf);
        st->rtf_buf = NULL;
        st->rtf_cap = 0;
    }
}

/* Skips RTF control words at the start of a line ("\f0\fs24 \cf0 "). */
static const char *
skip_control_words(const char *p, const char *end)
{
    while (p + 1 < end && *p == '\\' && is_alpha(p[1])) {
        p++;
        while (p < end && is_alpha(*p))
            p++;
        if (p < end && *p == '-')
            p++;
        while (p < end && is_digit(*p))
            p++;
        if (p < end && *p == ' ')
            p++;
    }
    return p;
}

/*
 * Console lines (type, time with offset, process), `log show` lines (a
 * date, then a "name:" or "name[pid]" process column) or a `log show`
 * header.  A Console export can run for pages of other processes before
 * its first profiled line, so the whole buffer is scanned; a profiled line
 * decides at once.
 */
static int
ios_probe(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    int rtf = agent_starts_with(buf, len, "{\\rtf");
    int shaped = 0, header = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end, *q = p;
        size_t n = (size_t)(le - p);
        struct head h;
        struct sw_slice proc;

        if (agent_starts_with(p, n, "Timestamp ") &&
            ((agent_find(p, n, " Thread ") && agent_find(p, n, " Type ")) ||
             agent_find(p, n, " Process[PID:TID]")))
            header = 1;
        if (rtf)
            q = skip_control_words(q, le);
        if (read_head(&q, le, &h) && !h.bad &&
            ((h.typed && !h.dated && h.has_off) || h.dated) &&
            find_process(&q, le, &h, &proc) &&
            (!h.dated || names_process(proc) || (h.typed && is_profiled(proc)))) {
            if (is_profiled(proc))
                return 90;
            shaped++;
        }
        if (!nl)
            break;
        p = nl + 1;
    }
    if (header)
        return 80;
    return shaped >= 2 ? 40 : 0;
}

const struct agent_parser agent_parser_ios_console = {
    .name = "ios_console",
    .source = SW_SOURCE_IOS_CONSOLE,
    .probe = ios_probe,
    .state_size = sizeof(struct ios_state),
    .line = ios_line,
    .fini = ios_fini,
};
