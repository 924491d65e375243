/*
 * parser.h - the interface every log format implements, and the helpers
 * parsers share.
 *
 * A parser sees one file as a sequence of complete lines: UTF-8 (the
 * reader has decoded UTF-16LE and dropped any BOM), without the line
 * terminator (LF, and a CR before it, removed), possibly holding NULs or
 * invalid UTF-8, and at most AGENT_MAX_LINE bytes (a longer line arrives
 * cut, with ctx->line_truncated set).  For each line the parser may call
 * agent_parse_emit() any number of times.  It never stops on bad input: it
 * counts what it skips in ctx->counts and goes on.
 *
 * Parsers must not allocate per line; state that outlives a line lives in
 * ctx->state (state_size zeroed bytes, allocated by the driver).
 *
 * Thread: a ctx belongs to one thread; parsers keep no global state.
 */
#ifndef AGENT_PARSER_H
#define AGENT_PARSER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sw_err.h"
#include "sw_event.h"

#define AGENT_MAX_LINE (1u << 20)   /* longer lines are cut and counted */

/* What parsing counts; printed by `parse --stats`. */
#define AGENT_COUNT_MAP(X)                                                   \
    X(AGENT_COUNT_LINES,      "lines")      /* complete lines read */        \
    X(AGENT_COUNT_EVENTS,     "events")     /* events emitted */             \
    X(AGENT_COUNT_NOISE,      "noise")      /* lines of no SCEP interest */  \
    X(AGENT_COUNT_MALFORMED,  "malformed")  /* relevant-looking, unusable */ \
    X(AGENT_COUNT_OVERLONG,   "overlong")   /* lines cut at AGENT_MAX_LINE */\
    X(AGENT_COUNT_BINARY,     "binary")     /* lines holding NUL bytes */    \
    X(AGENT_COUNT_BAD_TIME,   "bad_time")   /* unusable timestamps */        \
    X(AGENT_COUNT_UNKNOWN_STATE, "unknown_state") /* state names not known */\
    X(AGENT_COUNT_PARTIAL,    "partial")    /* records cut by end of input */

enum agent_count {
#define X(code, name) code,
    AGENT_COUNT_MAP(X)
#undef X
    AGENT_COUNT_MAX
};

const char *agent_count_name(enum agent_count c);

/* Per-run options from the command line or the config. */
struct agent_parse_opts {
    const char *device;     /* --device or a {device} capture; NULL = none */
    int tz_off_min;         /* --tz, minutes east of UTC, for zone-less stamps */
    int has_date;           /* date for date-less lines (iOS): --date or mtime */
    int date_y, date_m, date_d;
};

struct agent_parse_ctx;
typedef void (*agent_emit_fn)(void *arg, const struct sw_event *ev);

struct agent_parser {
    const char *name;               /* DESIGN parser name */
    enum sw_source source;
    /*
     * Scores the start of a file (UTF-8, up to 1 MiB, cut anywhere) for
     * --format auto: 0 = not this format, 100 = certain.
     */
    int (*probe)(const char *buf, size_t len);
    size_t state_size;              /* zeroed bytes at ctx->state */
    /*
     * Lines carry no context from earlier lines: a tailer may resume at any
     * line start without replaying the file, and keeps no state between reads.
     */
    int stateless;
    sw_err (*init)(struct agent_parse_ctx *ctx);        /* optional */
    void (*line)(struct agent_parse_ctx *ctx, const char *line, size_t len);
    void (*finish)(struct agent_parse_ctx *ctx);        /* end of input; optional */
    void (*fini)(struct agent_parse_ctx *ctx);          /* free state; optional */
};

struct agent_parse_ctx {
    const struct agent_parser *parser;
    struct agent_parse_opts opts;
    struct sw_slice file;           /* path as given */
    void *state;

    /* The line being parsed, set by the driver. */
    uint64_t line_offset;           /* byte offset of its first byte in the file */
    int line_truncated;

    /*
     * The record that events come from: the driver sets it to the current
     * line; a parser whose records span lines (XML) points it at the whole
     * record before emitting.  Its hash goes into the event's identity.
     */
    const char *rec;
    size_t rec_len;
    uint64_t rec_offset;

    /*
     * Offset of the first byte of a record still being assembled, or
     * UINT64_MAX when none: a tailer never checkpoints past it.
     */
    uint64_t hold_offset;

    uint64_t counts[AGENT_COUNT_MAX];
    agent_emit_fn emit;
    void *emit_arg;
};

/*
 * Called by parsers.  Fills file, offset and line_hash from the current
 * record, the device from opts when the log named none, the source from
 * the parser, then hands ev to the consumer.
 */
void agent_parse_emit(struct agent_parse_ctx *ctx, struct sw_event *ev);

/* The registry (registry.c). */
extern const struct agent_parser agent_parser_android_omadm;
extern const struct agent_parser agent_parser_ios_console;
extern const struct agent_parser agent_parser_windows_event_xml;
extern const struct agent_parser agent_parser_ca_certutil_csv;
extern const struct agent_parser agent_parser_ndes_iis;

/* NULL-terminated list of all parsers, in auto-detection tie-break order. */
extern const struct agent_parser *const agent_parsers[];

const struct agent_parser *agent_parser_find(const char *name);

/* Best parser for the start of a file, or NULL if none scores above 0. */
const struct agent_parser *agent_parser_detect(const char *buf, size_t len);

/* ---- helpers shared by parsers (util.c) ---- */

/* A small fixed arena for normalised field values, reset per line. */
struct agent_scratch {
    char buf[4096];
    size_t used;
};

static inline void
agent_scratch_reset(struct agent_scratch *s)
{
    s->used = 0;
}

/* Copies p[0..n) into the arena; returns the slice, or SW_SLICE_NONE when full. */
struct sw_slice agent_scratch_copy(struct agent_scratch *s, const char *p, size_t n);

/*
 * Removes spaces (and any other non-hex separators ':' '-') and lower-cases;
 * returns SW_SLICE_NONE if the result is empty or not all hex.
 */
struct sw_slice agent_hex_lower(struct agent_scratch *s, const char *p, size_t n);

/* Upper-case hex, all digits must be hex; else SW_SLICE_NONE. */
struct sw_slice agent_hex_upper(struct agent_scratch *s, const char *p, size_t n);

/*
 * The profile id from text that contains "LogicalName_" (samples README
 * "profile"): GUID-shaped hex groups with '_' or '-' between, cut at the
 * first character that does not fit, trailing separator dropped, '_' -> '-',
 * lower-cased.  SW_SLICE_NONE if no LogicalName_ or nothing after it.
 */
struct sw_slice agent_profile_from(struct agent_scratch *s, const char *p, size_t n);

/*
 * memmem for a NUL-terminated needle.  Inline: the needles are literals,
 * so their lengths fold away.  The scan is memchr (vectorized) for one
 * byte of the needle, then a compare: the first byte that is not a
 * lower-case letter or a space (rarer in log text: fewer false stops), or
 * the first byte.  glibc's memmem spent about 360 instructions a call on
 * these short needles.
 */
static inline const char *
agent_find(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle), r = 0;
    if (!hay || n == 0 || n < k)
        return NULL;
    if (k == 0)
        return hay;
    while (r < k && ((needle[r] >= 'a' && needle[r] <= 'z') || needle[r] == ' '))
        r++;
    if (r == k)
        r = 0;
    const char *p = hay + r, *last = hay + (n - k) + r;    /* where needle[r] may sit */
    while (p <= last) {
        p = memchr(p, (unsigned char)needle[r], (size_t)(last - p) + 1);
        if (!p)
            return NULL;
        if (memcmp(p - r, needle, k) == 0)
            return p - r;
        p++;
    }
    return NULL;
}

/* True if p[0..n) starts with the NUL-terminated prefix (inline, as agent_find). */
static inline int
agent_starts_with(const char *p, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(p, prefix, k) == 0;
}

/* Case-insensitive ASCII variant of agent_starts_with. */
int agent_starts_with_ci(const char *p, size_t n, const char *prefix);

/* Trims ASCII spaces/tabs on both ends. */
struct sw_slice agent_trim(const char *p, size_t n);

/*
 * Splits off the next field separated by runs of spaces, TABs or CRs;
 * advances *p.  Returns 0 when the line ends first.
 */
int agent_next_field(const char **p, const char *end, struct sw_slice *f);
/* Past a run of the separators agent_next_field splits on. */
const char *agent_skip_seps(const char *p, const char *end);

/* Whole-slice case-insensitive ASCII comparison with a word. */
int agent_slice_eq_ci(struct sw_slice s, const char *word);

/*
 * A record that spans lines (an XML event, a quoted CSV field), assembled
 * in a buffer of AGENT_MAX_LINE bytes that the parser allocates.  While a
 * record is open, ctx->hold_offset pins its first line so a tailer never
 * checkpoints past it; one that outgrows the buffer is marked broken and
 * releases the pin (it is dropped when it closes).
 */
struct agent_record {
    char *buf;
    size_t len;
    uint64_t offset;            /* offset of the line it began on */
    int open;
    int broken;                 /* over the cap or cut by an overlong line */
};

/* Opens a record at the current line with its first n bytes. */
void agent_record_begin(struct agent_record *r, struct agent_parse_ctx *ctx,
                        const char *p, size_t n);
/* Appends n bytes, preceded by a newline when 'newline' (a new line of the record). */
void agent_record_append(struct agent_record *r, struct agent_parse_ctx *ctx,
                         const char *p, size_t n, int newline);
/* Closes (or abandons) the record and releases the pin. */
void agent_record_end(struct agent_record *r, struct agent_parse_ctx *ctx);

#endif
