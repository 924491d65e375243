/*
 * util.c - helpers shared by the parsers: the scratch arena, id
 * normalisation, the profile rule, and agent_parse_emit.
 */
#include <stdint.h>
#include <string.h>

#include "parser.h"

static const char *const count_names[] = {
#define X(code, name) [code] = name,
    AGENT_COUNT_MAP(X)
#undef X
};

const char *
agent_count_name(enum agent_count c)
{
    return (unsigned)c < AGENT_COUNT_MAX ? count_names[c] : "?";
}

void
agent_parse_emit(struct agent_parse_ctx *ctx, struct sw_event *ev)
{
    ev->source = ctx->parser->source;
    if (!ev->device.len && ctx->opts.device)
        ev->device = sw_slice_cstr(ctx->opts.device);
    ev->file = ctx->file;
    ev->offset = ctx->rec_offset;
    ev->has_offset = 1;
    ev->line_hash = sw_line_hash(ctx->rec, ctx->rec_len);
    ctx->counts[AGENT_COUNT_EVENTS]++;
    if (ctx->emit)
        ctx->emit(ctx->emit_arg, ev);
}

struct sw_slice
agent_scratch_copy(struct agent_scratch *s, const char *p, size_t n)
{
    struct sw_slice r;
    if (n == 0 || n > sizeof s->buf - s->used)
        return SW_SLICE_NONE;
    memcpy(s->buf + s->used, p, n);
    r.ptr = s->buf + s->used;
    r.len = n;
    s->used += n;
    return r;
}

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static struct sw_slice
hex_norm(struct agent_scratch *s, const char *p, size_t n, int upper, int allow_sep)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char *out = s->buf + s->used;
    size_t room = sizeof s->buf - s->used, k = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        int v = hexval(c);
        if (v < 0) {
            if (allow_sep && (c == ' ' || c == ':' || c == '-' || c == '\t'))
                continue;
            return SW_SLICE_NONE;
        }
        if (k == room)
            return SW_SLICE_NONE;
        out[k++] = digits[v];
    }
    if (k == 0)
        return SW_SLICE_NONE;
    s->used += k;
    return (struct sw_slice){ out, k };
}

struct sw_slice
agent_hex_lower(struct agent_scratch *s, const char *p, size_t n)
{
    return hex_norm(s, p, n, 0, 1);
}

struct sw_slice
agent_hex_upper(struct agent_scratch *s, const char *p, size_t n)
{
    return hex_norm(s, p, n, 1, 0);
}

struct sw_slice
agent_profile_from(struct agent_scratch *s, const char *p, size_t n)
{
    static const int groups[] = { 8, 4, 4, 4, 12 };
    const char *at = agent_find(p, n, "LogicalName_");
    char *out;
    size_t i, k = 0, room;

    if (!at)
        return SW_SLICE_NONE;
    i = (size_t)(at - p) + 12;
    out = s->buf + s->used;
    room = sizeof s->buf - s->used;
    if (room < 36)
        return SW_SLICE_NONE;
    for (int g = 0; g < 5; g++) {
        int got = 0;
        while (got < groups[g] && i < n && hexval((unsigned char)p[i]) >= 0) {
            char c = p[i++];
            out[k++] = (c >= 'A' && c <= 'F') ? (char)(c + 32) : c;
            got++;
        }
        if (got < groups[g] || g == 4)
            break;
        if (i < n && (p[i] == '_' || p[i] == '-') && i + 1 < n &&
            hexval((unsigned char)p[i + 1]) >= 0) {
            out[k++] = '-';
            i++;
        } else {
            break;
        }
    }
    if (k == 0)
        return SW_SLICE_NONE;
    s->used += k;
    return (struct sw_slice){ out, k };
}

int
agent_starts_with_ci(const char *p, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++) {
        char a = p[i], b = prefix[i];
        if (a >= 'A' && a <= 'Z') a = (char)(a + 32);
        if (b >= 'A' && b <= 'Z') b = (char)(b + 32);
        if (a != b)
            return 0;
    }
    return 1;
}

struct sw_slice
agent_trim(const char *p, size_t n)
{
    while (n && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    return (struct sw_slice){ p, n };
}

/* ' ', '\t' and '\r' as one table lookup: this scan runs over every line. */
static const unsigned char sep_table[256] = { [' '] = 1, ['\t'] = 1, ['\r'] = 1 };
#define is_sep(c) (sep_table[(unsigned char)(c)])

const char *
agent_skip_seps(const char *p, const char *end)
{
    while (p < end && is_sep(*p))
        p++;
    return p;
}

int
agent_next_field(const char **p, const char *end, struct sw_slice *f)
{
    const char *s = agent_skip_seps(*p, end);

    if (s == end)
        return 0;
    f->ptr = s;
    /*
     * Eight bytes a step: a word with no byte below 0x21 holds no
     * separator (the test has no false negatives; a word it flags is
     * looked at byte by byte).
     */
    while (end - s >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        uint64_t m = (w - 0x2121212121212121ull) & ~w & 0x8080808080808080ull;
        if (m) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            /* the lowest flagged byte is a true one: borrows only run upward */
            unsigned k = (unsigned)__builtin_ctzll(m) >> 3;
            if (is_sep(s[k])) {
                s += k;
                goto found;
            }
            s += k + 1;     /* a control byte, not a separator: on past it */
            continue;
#else
            for (int k = 0; k < 8; k++)
                if (is_sep(s[k])) {
                    s += k;
                    goto found;
                }
#endif
        }
        s += 8;
    }
    while (s < end && !is_sep(*s))
        s++;
found:
    f->len = (size_t)(s - f->ptr);
    *p = s;
    return 1;
}

int
agent_slice_eq_ci(struct sw_slice s, const char *word)
{
    return s.len == strlen(word) && agent_starts_with_ci(s.ptr, s.len, word);
}

void
agent_record_begin(struct agent_record *r, struct agent_parse_ctx *ctx, const char *p, size_t n)
{
    r->open = 1;
    r->broken = 0;
    r->len = 0;
    r->offset = ctx->line_offset;
    ctx->hold_offset = r->offset;
    agent_record_append(r, ctx, p, n, 0);
}

void
agent_record_append(struct agent_record *r, struct agent_parse_ctx *ctx, const char *p,
                    size_t n, int newline)
{
    if (r->broken)
        return;
    if (n + (size_t)newline > AGENT_MAX_LINE - r->len) {
        /* over the cap: dropped when it closes; nothing to hold back for */
        r->broken = 1;
        ctx->hold_offset = UINT64_MAX;
        return;
    }
    if (newline)
        r->buf[r->len++] = '\n';
    memcpy(r->buf + r->len, p, n);
    r->len += n;
}

void
agent_record_end(struct agent_record *r, struct agent_parse_ctx *ctx)
{
    r->open = 0;
    r->broken = 0;
    r->len = 0;
    ctx->hold_offset = UINT64_MAX;
}
