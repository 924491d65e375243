/*
 * cli.c - scepwatch, the admin CLI: a table of commands, each one or a
 * paged series of RPCs to the aggregator, printed as an 80-column table,
 * RFC 4180 CSV, JSON (jansson) or JSON Lines.  Large answers are
 * streamed page by page; nothing holds a whole report in memory.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scepwatch.pb-c.h"
#include "sw_arena.h"
#include "sw_buf.h"
#include "sw_json.h"
#include "sw_rpc.h"
#include "sw_time.h"
#include "sw_wire.h"

#define EXIT_USAGE 2
/*
 * Rows a call.  A listing a person reads comes in pages of 1,000: the first
 * rows arrive at once, and a page unpacked (about 1.2 MB) reuses the
 * memory of the one before.  An export or an event listing takes 5,000 a
 * call: a fifth of the round trips (1M rows: 2.8 s against 3.1 s).
 */
#define PAGE_ROWS 1000
#define BULK_PAGE_ROWS 5000

static const char usage_text[] =
    "usage: scepwatch [--aggregator URL] COMMAND [OPTIONS]\n"
    "\n"
    "Asks the scepwatch aggregator which SCEP certificates are stuck, where and why.\n"
    "\n"
    "commands:\n"
    "  stuck     enrollments stuck in a non-final status longer than their threshold\n"
    "  device ID one device's enrollments and the timeline of its events\n"
    "  cert KEY  one certificate's path, by serial, thumbprint, txn or CA request id\n"
    "  summary   the fleet funnel per platform: requested, issued, delivered,\n"
    "            installed, stuck, failed\n"
    "  events    the stored events themselves\n"
    "  export    the fleet report, one row per enrollment: export --csv FILE\n"
    "  health    is the aggregator up, and how many events it holds\n"
    "Run 'scepwatch COMMAND --help' for a command's options.\n"
    "\n"
    "  -a, --aggregator URL  aggregator address (default $SCEPWATCH_AGGREGATOR,\n"
    "                        else tcp://127.0.0.1:7400)\n"
    "      --timeout-ms N    per call (default 30000)\n"
    "  -h, --help            this text\n"
    "  -V, --version         version\n"
    "\n"
    "Times are UTC.  TIME is RFC 3339 (2024-03-14T15:00:00Z); DUR is 90s, 15m, 4h, 2d.\n"
    "exit status: 0 success, 1 aggregator unreachable or not found, 2 bad usage.\n";

struct cli {
    const char *url;
    int timeout_ms;
    struct sw_rpc_client *client;
    struct sw_arena page;       /* one reply page unpacked; the next reuses its memory */
};

/* An unpacked page stays under this (a reply's payload is at most SW_RPC_MAX_RAW). */
#define PAGE_MAX_MEM (256u << 20)

static int
usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "scepwatch: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'scepwatch --help'.\n");
    return EXIT_USAGE;
}

static int
connect_agg(struct cli *c)
{
    sw_err e = sw_rpc_client_open(&c->client, c->url, c->timeout_ms);
    if (e != SW_OK) {
        fprintf(stderr, "scepwatch: %s\n", sw_rpc_client_error(c->client));
        sw_rpc_client_close(c->client);
        c->client = NULL;
        return e == SW_EINVAL ? EXIT_USAGE : 1;
    }
    return 0;
}

/* One call; returns 0 with reply filled, or prints why and returns 1. */
static int
call_send(struct cli *c, const char *method, const ProtobufCMessage *req)
{
    struct sw_buf b;
    sw_err e;

    sw_buf_init(&b);
    if (sw_buf_reserve(&b, protobuf_c_message_get_packed_size(req)) != SW_OK) {
        fprintf(stderr, "scepwatch: out of memory\n");
        return 1;
    }
    b.len = protobuf_c_message_pack(req, (uint8_t *)b.data);
    e = sw_rpc_send(c->client, method, b.data, b.len);
    sw_buf_fini(&b);
    if (e != SW_OK) {
        fprintf(stderr, "scepwatch: aggregator at %s: %s\n", c->url, sw_rpc_client_error(c->client));
        return 1;
    }
    return 0;
}

static int
call_recv(struct cli *c, struct sw_rpc_reply *reply)
{
    if (sw_rpc_recv(c->client, reply) != SW_OK) {
        fprintf(stderr, "scepwatch: aggregator at %s: %s\n", c->url, sw_rpc_client_error(c->client));
        return 1;
    }
    if (reply->status != SW_STATUS_OK) {
        fprintf(stderr, "scepwatch: aggregator answered %s: %s\n", sw_status_name(reply->status),
                reply->message);
        return 1;
    }
    return 0;
}

static int
call(struct cli *c, const char *method, const ProtobufCMessage *req, struct sw_rpc_reply *reply)
{
    return call_send(c, method, req) || call_recv(c, reply);
}

static int
parse_time_arg(const char *s, int64_t *out)
{
    int64_t d = sw_parse_duration_us(s);
    if (d >= 0) {
        *out = sw_now_us() - d;
        return 0;
    }
    return sw_time_parse(s, strlen(s), 0, out);
}

static int
pick(const char *s, const char *const *allowed, const char **out)
{
    for (int i = 0; allowed[i]; i++)
        if (strcmp(s, allowed[i]) == 0) {
            *out = allowed[i];
            return 0;
        }
    return -1;
}

/* ---- formatting ---- */

/* "2024-03-14 15:02:11" */
static const char *
fmt_time(int64_t us, char *buf)
{
    if (!us)
        return "-";
    sw_time_format(us, buf);
    buf[10] = ' ';
    buf[19] = '\0';
    return buf;
}

/* RFC 3339 for CSV and JSON; "" when absent. */
static const char *
fmt_rfc3339(int64_t us, char *buf)
{
    if (!us)
        return "";
    sw_time_format(us, buf);
    return buf;
}

/* ---- a line of a table, built by hand: printf's parsing is most of a row's cost ---- */

struct line {
    char b[512];
    size_t n;
};

/* At most max bytes of s; then spaces up to width (0: none). */
static void
lput(struct line *l, const char *s, size_t max, size_t width)
{
    size_t k = 0;
    while (k < max && s[k] && l->n < sizeof l->b)
        l->b[l->n++] = s[k++];
    while (k++ < width && l->n < sizeof l->b)
        l->b[l->n++] = ' ';
}

#define LPUT(l, s) lput((l), (s), (size_t)-1, 0)

static void
lnum(struct line *l, unsigned long long v, int min_digits)
{
    char d[24];
    int k = 0;
    do {
        d[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v || k < min_digits);
    while (k && l->n < sizeof l->b)
        l->b[l->n++] = d[--k];
}

/* "45s", "12m", "3h05m", "2d04h" */
static void
lage(struct line *l, int64_t us)
{
    long long s = us / 1000000;
    if (us <= 0) {
        LPUT(l, "-");
    } else if (s < 60) {
        lnum(l, (unsigned long long)s, 1);
        LPUT(l, "s");
    } else if (s < 3600) {
        lnum(l, (unsigned long long)(s / 60), 1);
        LPUT(l, "m");
    } else if (s < 86400) {
        lnum(l, (unsigned long long)(s / 3600), 1);
        LPUT(l, "h");
        lnum(l, (unsigned long long)(s / 60 % 60), 2);
        LPUT(l, "m");
    } else {
        lnum(l, (unsigned long long)(s / 86400), 1);
        LPUT(l, "d");
        lnum(l, (unsigned long long)(s / 3600 % 24), 2);
        LPUT(l, "h");
    }
}

/* One RFC 4180 field. */
static void
csv_field(FILE *f, const char *s, int first)
{
    if (!first)
        fputc(',', f);
    if (!s)
        return;
    if (strpbrk(s, ",\"\r\n") || (*s && (s[0] == ' ' || s[strlen(s) - 1] == ' '))) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
}

static const char csv_header[] =
    "device,platform,profile,status,stuck_since,last_stage,last_event_at,requested_at,"
    "issued_at,installed_at,request_id,serial,thumbprint,txn,link,detail";

static const char *
plat(Scepwatch__Platform p)
{
    const char *n = sw_platform_name((enum sw_platform)p);
    return n ? n : "unknown";
}

static const char *
stage(const Scepwatch__Enrollment *e)
{
    const char *n = e->has_last_stage ? sw_stage_name((enum sw_stage)e->last_stage) : NULL;
    return n ? n : "";
}

static void
enrollment_csv(FILE *f, const Scepwatch__Enrollment *e)
{
    char t[5][32];
    csv_field(f, e->device, 1);
    csv_field(f, plat(e->platform), 0);
    csv_field(f, e->profile, 0);
    csv_field(f, e->status, 0);
    csv_field(f, fmt_rfc3339(e->has_stuck_since_us ? e->stuck_since_us : 0, t[0]), 0);
    csv_field(f, stage(e), 0);
    csv_field(f, fmt_rfc3339(e->has_last_event_us ? e->last_event_us : 0, t[1]), 0);
    csv_field(f, fmt_rfc3339(e->has_requested_us ? e->requested_us : 0, t[2]), 0);
    csv_field(f, fmt_rfc3339(e->has_issued_us ? e->issued_us : 0, t[3]), 0);
    csv_field(f, fmt_rfc3339(e->has_installed_us ? e->installed_us : 0, t[4]), 0);
    csv_field(f, e->request_id, 0);
    csv_field(f, e->serial, 0);
    csv_field(f, e->thumbprint, 0);
    csv_field(f, e->txn, 0);
    csv_field(f, e->link, 0);
    csv_field(f, e->detail, 0);
    fputs("\r\n", f);
}

static void
json_set_str(json_t *o, const char *k, const char *v)
{
    if (v && *v)
        json_object_set_new(o, k, json_string(v));
}

static void
json_set_time(json_t *o, const char *k, int has, int64_t us)
{
    char t[32];
    if (has && us)
        json_object_set_new(o, k, json_string(fmt_rfc3339(us, t)));
}

static json_t *
enrollment_json(const Scepwatch__Enrollment *e)
{
    json_t *o = json_object();
    json_set_str(o, "device", e->device);
    json_set_str(o, "platform", plat(e->platform));
    json_set_str(o, "profile", e->profile);
    json_set_str(o, "status", e->status);
    json_set_time(o, "stuck_since", e->has_stuck_since_us, e->stuck_since_us);
    json_set_time(o, "status_since", e->has_since_us, e->since_us);
    json_set_str(o, "last_stage", stage(e));
    json_set_time(o, "last_event_at", e->has_last_event_us, e->last_event_us);
    json_set_time(o, "requested_at", e->has_requested_us, e->requested_us);
    json_set_time(o, "issued_at", e->has_issued_us, e->issued_us);
    json_set_time(o, "installed_at", e->has_installed_us, e->installed_us);
    json_set_str(o, "request_id", e->request_id);
    json_set_str(o, "serial", e->serial);
    json_set_str(o, "thumbprint", e->thumbprint);
    json_set_str(o, "txn", e->txn);
    json_set_str(o, "link", e->link);
    json_set_str(o, "subject", e->subject);
    json_set_str(o, "template", e->template_);
    json_set_str(o, "detail", e->detail);
    return o;
}

static void
json_print(json_t *o, int first)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    printf("%s%s", first ? "" : ",\n", s ? s : "null");
    free(s);
    json_decref(o);
}

/* The 80-column table: a line per row, and a line of particulars under it. */
static void
enrollment_table_header(void)
{
    printf("%-22s %-8s %-20s %-19s %s\n", "DEVICE", "PLATFORM", "STATUS", "SINCE (UTC)", "FOR");
}

static void
enrollment_table_row(const Scepwatch__Enrollment *e, int64_t as_of)
{
    char t[32];
    int64_t since = e->has_stuck_since_us ? e->stuck_since_us : e->has_since_us ? e->since_us : 0;
    struct line l = { .n = 0 }, m = { .n = 0 };

    /* DEVICE 22, PLATFORM 8, STATUS 20 (cut to fit), SINCE 19, FOR */
    lput(&l, e->device ? e->device : "(CA only)", 22, 22);
    LPUT(&l, " ");
    lput(&l, plat(e->platform), 8, 8);
    LPUT(&l, " ");
    lput(&l, e->status ? e->status : "?", 20, 20);
    LPUT(&l, " ");
    lput(&l, fmt_time(since, t), (size_t)-1, 19);
    LPUT(&l, " ");
    if (since)
        lage(&l, as_of - since);
    else
        LPUT(&l, "-");
    LPUT(&l, "\n");
    /* then what explains it, on a line of at most 76 */
    if (e->profile) {
        LPUT(&m, "profile ");
        lput(&m, e->profile, 8, 0);
        LPUT(&m, "  ");
    }
    if (e->has_last_stage) {
        LPUT(&m, "last ");
        LPUT(&m, stage(e));
        LPUT(&m, "  ");
    }
    if (e->request_id) {
        LPUT(&m, "CA req ");
        LPUT(&m, e->request_id);
        if (e->link) {
            LPUT(&m, " (");
            LPUT(&m, e->link);
            LPUT(&m, ")");
        }
        LPUT(&m, "  ");
    }
    if (e->detail)
        LPUT(&m, e->detail);
    if (m.n) {
        LPUT(&l, "  ");
        lput(&l, m.b, m.n < 76 ? m.n : 76, 0);
        LPUT(&l, "\n");
    }
    fwrite(l.b, 1, l.n, stdout);
}

/* A large upload is still being correlated: the answer is partial, and says so. */
static void
backlog_note(uint64_t n)
{
    fprintf(stderr, "scepwatch: note: the aggregator is still correlating recent uploads "
            "(%llu items waiting); this answer covers what is correlated so far\n",
            (unsigned long long)n);
}

/* ---- paged enrollments ---- */

typedef void (*row_fn)(void *arg, const Scepwatch__Enrollment *e, int64_t as_of, int first);

/* Pages through ListEnrollments; returns 0, or 1 after printing why. */
static int
each_enrollment(struct cli *c, Scepwatch__ListEnrollmentsRequest *rq, uint32_t page, row_fn fn,
                void *arg, size_t *count)
{
    /* the reply's cursor field, by name: its number is the proto file's */
    const ProtobufCFieldDescriptor *cursor_field = protobuf_c_message_descriptor_get_field_by_name(
        &scepwatch__list_enrollments_reply__descriptor, "next_cursor");
    unsigned char cursor[512];
    size_t cursor_len = 0;
    int first = 1;

    *count = 0;
    rq->has_page_size = 1;
    rq->page_size = page;
    rq->has_cursor = 0;
    if (call_send(c, SW_METHOD("ListEnrollments"), &rq->base) != 0)
        return 1;
    for (;;) {
        struct sw_rpc_reply reply;
        Scepwatch__ListEnrollmentsReply *rp;
        const uint8_t *peek = NULL;
        size_t peek_len = 0;

        if (call_recv(c, &reply) != 0)
            return 1;
        /*
         * Ask for the next page first, the cursor read straight from the
         * reply's bytes: the aggregator makes it while this one unpacks
         * and prints.  The unpacked reply must say the same.
         */
        if (sw_wire_find_bytes(reply.payload, reply.payload_len, cursor_field->id, &peek,
                               &peek_len) <= 0 || peek_len > sizeof cursor)
            peek_len = 0;
        if (peek_len) {
            memcpy(cursor, peek, peek_len);
            rq->has_cursor = 1;
            rq->cursor.data = cursor;
            rq->cursor.len = peek_len;
            if (call_send(c, SW_METHOD("ListEnrollments"), &rq->base) != 0)
                return 1;
        }
        sw_arena_reset(&c->page);
        c->page.limit = PAGE_MAX_MEM;
        ProtobufCAllocator alloc = sw_arena_allocator(&c->page);
        rp = scepwatch__list_enrollments_reply__unpack(&alloc, reply.payload_len, reply.payload);
        if (!rp) {
            fprintf(stderr, "scepwatch: malformed ListEnrollments reply\n");
            return 1;
        }
        if (rp->has_correlation_backlog && rp->correlation_backlog)
            backlog_note(rp->correlation_backlog);
        cursor_len = rp->has_next_cursor && rp->next_cursor.len <= sizeof cursor
                         ? rp->next_cursor.len : 0;
        if (cursor_len != peek_len ||
            (cursor_len && memcmp(cursor, rp->next_cursor.data, cursor_len) != 0)) {
            fprintf(stderr, "scepwatch: malformed ListEnrollments reply (cursor)\n");
            return 1;
        }
        for (size_t i = 0; i < rp->n_rows; i++) {
            fn(arg, rp->rows[i], rp->as_of_us, first);
            first = 0;
            (*count)++;
        }
        if (!cursor_len)
            return 0;
    }
}

struct out_ctx {
    const char *format;
    FILE *f;
};

static void
print_row(void *arg, const Scepwatch__Enrollment *e, int64_t as_of, int first)
{
    struct out_ctx *o = arg;
    if (strcmp(o->format, "csv") == 0) {
        enrollment_csv(o->f, e);
    } else if (strcmp(o->format, "json") == 0) {
        json_print(enrollment_json(e), first);
    } else {
        if (first)
            enrollment_table_header();
        enrollment_table_row(e, as_of);
    }
}

/* Options shared by stuck, summary and export. */
struct policy_opts {
    Scepwatch__StuckPolicy policy;
    char *statuses[16];
    size_t nstatus;
    Scepwatch__Platform platform;
    int has_platform;
};

static int
policy_opt(int ch, const char *arg, struct policy_opts *p)
{
    switch (ch) {
    case 'o': {
        int64_t d = sw_parse_duration_us(arg);
        if (d < 0)
            return usage_error("bad --older-than '%s' (e.g. 30m, 4h, 2d)", arg);
        p->policy.has_older_than_us = 1;
        p->policy.older_than_us = d;
        return -1;
    }
    case 't':
        if (sw_time_parse(arg, strlen(arg), 0, &p->policy.as_of_us) != 0)
            return usage_error("bad --as-of '%s' (RFC 3339, e.g. 2024-03-15T00:00:00Z)", arg);
        p->policy.has_as_of_us = 1;
        return -1;
    case 's': {
        static const char *const st[] = { "installed", "failed", "waiting_user_access",
            "waiting_user_install", "issued_not_delivered", "pending", "requested_not_issued",
            "orphan_issuance", NULL };
        const char *v;
        if (pick(arg, st, &v) != 0)
            return usage_error("unknown --status '%s'", arg);
        if (p->nstatus == sizeof p->statuses / sizeof p->statuses[0])
            return usage_error("%stoo many --status", "");
        p->statuses[p->nstatus++] = (char *)v;
        return -1;
    }
    case 'p': {
        enum sw_platform pl = sw_platform_from_name(arg, strlen(arg));
        if (!pl)
            return usage_error("unknown --platform '%s' (android, ios, windows, ca)", arg);
        p->has_platform = 1;
        p->platform = (Scepwatch__Platform)pl;
        return -1;
    }
    }
    return usage_error("%sbad option", "");
}

#define POLICY_LONGOPTS                                      \
    { "older-than", required_argument, NULL, 'o' },          \
    { "as-of", required_argument, NULL, 't' },               \
    { "status", required_argument, NULL, 's' },              \
    { "platform", required_argument, NULL, 'p' }

/* The policy, status and platform options into a ListEnrollments request. */
static void
set_filters(Scepwatch__ListEnrollmentsRequest *rq, struct policy_opts *p)
{
    rq->policy = &p->policy;
    rq->n_status = p->nstatus;
    rq->status = p->statuses;
    rq->has_platform = p->has_platform;
    rq->platform = p->platform;
}

static int
finish_output(void)
{
    if (fflush(stdout) != 0) {
        fprintf(stderr, "scepwatch: writing output: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}

/* ---- stuck ---- */

static int
cmd_stuck(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        POLICY_LONGOPTS,
        { "format", required_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const char *const formats[] = { "table", "csv", "json", NULL };
    Scepwatch__ListEnrollmentsRequest rq = SCEPWATCH__LIST_ENROLLMENTS_REQUEST__INIT;
    struct policy_opts p = { SCEPWATCH__STUCK_POLICY__INIT, { 0 }, 0, 0, 0 };
    struct out_ctx o = { "table", stdout };
    size_t n;
    int ch, rc;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
        if (ch == 'f') {
            if (pick(optarg, formats, &o.format) != 0)
                return usage_error("bad --format '%s' (table, csv or json)", optarg);
        } else if (ch == 'h') {
            printf("usage: scepwatch stuck [--older-than DUR] [--status S]... [--platform P]\n"
                   "                       [--as-of TIME] [--format table|csv|json]\n"
                   "Enrollments whose non-final status (waiting_user_install, waiting_user_access,\n"
                   "issued_not_delivered, pending, requested_not_issued, orphan_issuance) has\n"
                   "lasted longer than its threshold (the aggregator's --stuck-after, default 1h;\n"
                   "--older-than sets one for all), oldest device first.\n");
            return 0;
        } else if ((rc = policy_opt(ch, optarg, &p)) >= 0) {
            return rc;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if ((rc = connect_agg(c)) != 0)
        return rc;
    rq.has_stuck_only = 1;
    rq.stuck_only = 1;
    /* a table shows a few of the columns: the aggregator sends only those */
    rq.has_brief = 1;
    rq.brief = strcmp(o.format, "table") == 0;
    set_filters(&rq, &p);
    if (strcmp(o.format, "csv") == 0)
        printf("%s\r\n", csv_header);
    else if (strcmp(o.format, "json") == 0)
        printf("[");
    rc = each_enrollment(c, &rq, PAGE_ROWS, print_row, &o, &n);
    if (strcmp(o.format, "json") == 0)
        printf("]\n");
    else if (strcmp(o.format, "table") == 0 && rc == 0 && n == 0)
        printf("nothing is stuck\n");
    else if (strcmp(o.format, "table") == 0 && rc == 0)
        printf("%zu stuck\n", n);
    return rc | finish_output();
}

/* ---- export ---- */

static int
cmd_export(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        POLICY_LONGOPTS,
        { "csv", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    Scepwatch__ListEnrollmentsRequest rq = SCEPWATCH__LIST_ENROLLMENTS_REQUEST__INIT;
    struct policy_opts p = { SCEPWATCH__STUCK_POLICY__INIT, { 0 }, 0, 0, 0 };
    struct out_ctx o = { "csv", NULL };
    const char *path = NULL;
    char tmp[4096];
    size_t n;
    int ch, rc;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (ch == 'c') {
            path = optarg;
        } else if (ch == 'h') {
            printf("usage: scepwatch export --csv FILE [--as-of TIME] [--older-than DUR]\n"
                   "                        [--status S]... [--platform P]\n"
                   "Writes the fleet report, one row per enrollment (and per CA request no\n"
                   "device matched), as RFC 4180 CSV.  FILE '-' is standard output.\n"
                   "Columns: %s\n", csv_header);
            return 0;
        } else if ((rc = policy_opt(ch, optarg, &p)) >= 0) {
            return rc;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!path)
        return usage_error("%sexport needs --csv FILE", "");
    if ((rc = connect_agg(c)) != 0)
        return rc;
    if (strcmp(path, "-") == 0) {
        o.f = stdout;
    } else {
        /* write beside the target and rename: a reader never sees half a report */
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        if (!(o.f = fopen(tmp, "w"))) {
            fprintf(stderr, "scepwatch: %s: %s\n", tmp, strerror(errno));
            return 1;
        }
    }
    set_filters(&rq, &p);
    fprintf(o.f, "%s\r\n", csv_header);
    rc = each_enrollment(c, &rq, BULK_PAGE_ROWS, print_row, &o, &n);
    if (o.f != stdout) {
        if (fclose(o.f) != 0 && rc == 0) {
            fprintf(stderr, "scepwatch: %s: %s\n", tmp, strerror(errno));
            rc = 1;
        }
        if (rc == 0 && rename(tmp, path) != 0) {
            fprintf(stderr, "scepwatch: %s: %s\n", path, strerror(errno));
            rc = 1;
        }
        if (rc != 0)
            remove(tmp);
        else
            fprintf(stderr, "scepwatch: wrote %zu rows to %s\n", n, path);
        return rc;
    }
    return rc | finish_output();
}

/* ---- summary ---- */

static int
cmd_summary(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        POLICY_LONGOPTS,
        { "format", required_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const char *const formats[] = { "table", "csv", "json", NULL };
    Scepwatch__SummaryRequest rq = SCEPWATCH__SUMMARY_REQUEST__INIT;
    struct policy_opts p = { SCEPWATCH__STUCK_POLICY__INIT, { 0 }, 0, 0, 0 };
    struct sw_rpc_reply reply;
    Scepwatch__SummaryReply *rp;
    const char *format = "table";
    uint64_t tot[7] = { 0 };
    int ch, rc;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
        if (ch == 'f') {
            if (pick(optarg, formats, &format) != 0)
                return usage_error("bad --format '%s' (table, csv or json)", optarg);
        } else if (ch == 'h') {
            printf("usage: scepwatch summary [--as-of TIME] [--older-than DUR] [--format table|csv|json]\n"
                   "The funnel per platform: enrollments, requested (reached the CA), issued,\n"
                   "delivered (the device logged it), installed, stuck, failed.\n");
            return 0;
        } else if (ch == 's' || ch == 'p') {
            return usage_error("%s--status and --platform are for stuck and export", "");
        } else if ((rc = policy_opt(ch, optarg, &p)) >= 0) {
            return rc;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if ((rc = connect_agg(c)) != 0)
        return rc;
    rq.policy = &p.policy;
    if (call(c, SW_METHOD("Summary"), &rq.base, &reply) != 0)
        return 1;
    rp = scepwatch__summary_reply__unpack(NULL, reply.payload_len, reply.payload);
    if (!rp) {
        fprintf(stderr, "scepwatch: malformed Summary reply\n");
        return 1;
    }
    if (rp->has_correlation_backlog && rp->correlation_backlog)
        backlog_note(rp->correlation_backlog);
    if (strcmp(format, "csv") == 0)
        printf("platform,enrollments,requested,issued,delivered,installed,stuck,failed\r\n");
    else if (strcmp(format, "json") == 0)
        printf("[");
    else
        printf("%-10s %11s %9s %8s %9s %9s %7s %7s\n", "PLATFORM", "ENROLLMENTS", "REQUESTED",
               "ISSUED", "DELIVERED", "INSTALLED", "STUCK", "FAILED");
    for (size_t i = 0; i < rp->n_rows; i++) {
        const Scepwatch__FunnelRow *r = rp->rows[i];
        unsigned long long v[7] = { r->enrollments, r->requested, r->issued, r->delivered,
                                    r->installed, r->stuck, r->failed };
        for (int k = 0; k < 7; k++)
            tot[k] += v[k];
        if (strcmp(format, "csv") == 0) {
            printf("%s,%llu,%llu,%llu,%llu,%llu,%llu,%llu\r\n", plat(r->platform), v[0], v[1],
                   v[2], v[3], v[4], v[5], v[6]);
        } else if (strcmp(format, "json") == 0) {
            json_t *o = json_object();
            json_object_set_new(o, "platform", json_string(plat(r->platform)));
            const char *keys[7] = { "enrollments", "requested", "issued", "delivered",
                                    "installed", "stuck", "failed" };
            for (int k = 0; k < 7; k++)
                json_object_set_new(o, keys[k], json_integer((json_int_t)v[k]));
            json_print(o, i == 0);
        } else {
            printf("%-10s %11llu %9llu %8llu %9llu %9llu %7llu %7llu\n", plat(r->platform),
                   v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
        }
    }
    if (strcmp(format, "json") == 0) {
        printf("]\n");
    } else if (strcmp(format, "table") == 0) {
        char t[32];
        printf("%-10s %11llu %9llu %8llu %9llu %9llu %7llu %7llu\n", "total",
               (unsigned long long)tot[0], (unsigned long long)tot[1], (unsigned long long)tot[2],
               (unsigned long long)tot[3], (unsigned long long)tot[4], (unsigned long long)tot[5],
               (unsigned long long)tot[6]);
        printf("(as of %s UTC; ca = CA requests no device matched)\n", fmt_time(rp->as_of_us, t));
    }
    scepwatch__summary_reply__free_unpacked(rp, NULL);
    return finish_output();
}

/* ---- events ---- */

typedef void (*event_fn)(void *arg, const struct sw_event *ev);

/* Pages through ListEvents with filter f. */
static int
each_event(struct cli *c, Scepwatch__EventFilter *f, event_fn fn, void *arg)
{
    Scepwatch__ListEventsRequest rq = SCEPWATCH__LIST_EVENTS_REQUEST__INIT;
    unsigned char cursor[64];
    size_t cursor_len = 0;

    rq.filter = f;
    rq.has_page_size = 1;
    rq.page_size = BULK_PAGE_ROWS;
    for (;;) {
        struct sw_rpc_reply reply;
        struct sw_wire_decoded d;
        char why[256];

        rq.has_cursor = cursor_len > 0;
        rq.cursor.data = cursor;
        rq.cursor.len = cursor_len;
        if (call(c, SW_METHOD("ListEvents"), &rq.base, &reply) != 0)
            return 1;
        if (sw_wire_decode_list_reuse(&c->page, reply.payload, reply.payload_len, PAGE_MAX_MEM,
                                      &d, why, sizeof why) != SW_OK) {
            fprintf(stderr, "scepwatch: bad reply: %s\n", why);
            return 1;
        }
        for (size_t i = 0; i < d.count; i++) {
            struct sw_event ev;
            sw_wire_decoded_event(&d, i, &ev);
            fn(arg, &ev);
        }
        cursor_len = d.cursor_len <= sizeof cursor ? d.cursor_len : 0;
        if (cursor_len)
            memcpy(cursor, d.cursor, cursor_len);
        sw_wire_decoded_fini(&d);
        if (!cursor_len)
            return 0;
    }
}

struct ev_out {
    int jsonl;
    int rows;
    struct sw_buf line;
};

static void
print_event(void *arg, const struct sw_event *ev)
{
    struct ev_out *o = arg;
    char ts[32], keys[200];
    size_t k = 0;

    if (o->jsonl) {
        sw_buf_reset(&o->line);
        sw_json_event(&o->line, ev);
        sw_buf_putc(&o->line, '\n');
        fwrite(o->line.data, 1, o->line.len, stdout);
        o->rows++;
        return;
    }
    if (o->rows++ == 0)
        printf("%-19s  %-18s %-9s %-18s %s\n", "TIME (UTC)", "DEVICE", "PLATFORM", "STAGE", "KEYS");
    keys[0] = '\0';
#define KEY(f, label)                                                                        \
    if (ev->f.len && k < sizeof keys)                                                        \
        k += (size_t)snprintf(keys + k, sizeof keys - k, "%s%s=%.*s", k ? " " : "", label,    \
                              (int)ev->f.len, ev->f.ptr);
    KEY(profile, "profile") KEY(txn, "txn") KEY(thumbprint, "thumb") KEY(serial, "serial")
    KEY(request_id, "req") KEY(detail, "detail")
#undef KEY
    printf("%-19s  %-18.*s %-9s %-18s %.60s\n", fmt_time(ev->ts_us, ts),
           ev->device.len ? (int)(ev->device.len > 18 ? 18 : ev->device.len) : 1,
           ev->device.len ? ev->device.ptr : "-", sw_platform_name(ev->platform),
           sw_stage_name(ev->stage), keys);
}

static int
cmd_events(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "device", required_argument, NULL, 'd' },
        { "since", required_argument, NULL, 's' },
        { "platform", required_argument, NULL, 'p' },
        { "request-id", required_argument, NULL, 'r' },
        { "format", required_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const char *const formats[] = { "table", "jsonl", NULL };
    Scepwatch__EventFilter f = SCEPWATCH__EVENT_FILTER__INIT;
    const char *format = "table";
    struct ev_out o = { 0, 0, { 0 } };
    int ch, rc;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "d:s:p:r:f:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': f.device = optarg; break;
        case 'r': f.request_id = optarg; break;
        case 's':
            if (parse_time_arg(optarg, &f.since_us) != 0)
                return usage_error("bad --since '%s' (RFC 3339 time or duration like 24h)", optarg);
            f.has_since_us = 1;
            break;
        case 'p': {
            enum sw_platform p = sw_platform_from_name(optarg, strlen(optarg));
            if (!p)
                return usage_error("unknown platform '%s'", optarg);
            f.has_platform = 1;
            f.platform = (Scepwatch__Platform)p;
            break;
        }
        case 'f':
            if (pick(optarg, formats, &format) != 0)
                return usage_error("bad --format '%s' (table or jsonl)", optarg);
            break;
        case 'h':
            printf("usage: scepwatch events [--device ID] [--since TIME|DUR] [--platform P]\n"
                   "                        [--request-id N] [--format table|jsonl]\n"
                   "The stored events, each once, oldest first; jsonl is the shape of\n"
                   "'scepwatch-agent parse' plus file, offset and the sending agent's host.\n");
            return 0;
        default: return usage_error("%sbad option for 'events'", "");
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if ((rc = connect_agg(c)) != 0)
        return rc;
    o.jsonl = strcmp(format, "jsonl") == 0;
    sw_buf_init(&o.line);
    rc = each_event(c, &f, print_event, &o);
    sw_buf_fini(&o.line);
    return rc | finish_output();
}

/* ---- device and cert ---- */

static void
print_enrollment_brief(void *arg, const Scepwatch__Enrollment *e, int64_t as_of, int first)
{
    (void)arg;
    if (first)
        enrollment_table_header();
    enrollment_table_row(e, as_of);
}

static int
cmd_device(struct cli *c, int argc, char **argv)
{
    Scepwatch__ListEnrollmentsRequest rq = SCEPWATCH__LIST_ENROLLMENTS_REQUEST__INIT;
    Scepwatch__EventFilter f = SCEPWATCH__EVENT_FILTER__INIT;
    struct ev_out o = { 0, 0, { 0 } };
    size_t n;
    int rc;

    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: scepwatch device ID\n"
               "One device's enrollments with their status, then every event of the device\n"
               "with its time, stage and source.\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-')
        return usage_error("%susage: scepwatch device ID", "");
    if ((rc = connect_agg(c)) != 0)
        return rc;
    rq.device = argv[1];
    rq.has_brief = rq.brief = 1;
    printf("device %s\n\n", argv[1]);
    if ((rc = each_enrollment(c, &rq, PAGE_ROWS, print_enrollment_brief, NULL, &n)) != 0)
        return rc;
    f.device = argv[1];
    printf("\n");
    sw_buf_init(&o.line);
    rc = each_event(c, &f, print_event, &o);
    sw_buf_fini(&o.line);
    if (rc == 0 && n == 0 && o.rows == 0) {
        fprintf(stderr, "scepwatch: no events for device '%s'\n", argv[1]);
        return 1;
    }
    return rc | finish_output();
}

/* Merges a device's events and a CA request's events by time. */
struct path_ctx {
    struct cli *c;
    int rc;
};

static void
print_path(void *arg, const Scepwatch__Enrollment *e, int64_t as_of, int first)
{
    struct path_ctx *p = arg;
    Scepwatch__EventFilter f = SCEPWATCH__EVENT_FILTER__INIT;
    struct ev_out o = { 0, 0, { 0 } };

    if (!first)
        printf("\n");
    enrollment_table_header();
    enrollment_table_row(e, as_of);
    printf("\n");
    sw_buf_init(&o.line);
    if (e->device) {
        f.device = e->device;
        f.has_since_us = e->has_first_us;
        f.since_us = e->first_us;
        f.has_until_us = e->has_last_event_us;
        f.until_us = e->last_event_us;
        p->rc |= each_event(p->c, &f, print_event, &o);
    }
    if (e->request_id) {
        Scepwatch__EventFilter g = SCEPWATCH__EVENT_FILTER__INIT;
        g.request_id = e->request_id;
        if (o.rows)
            printf("  -- at the CA --\n");
        p->rc |= each_event(p->c, &g, print_event, &o);
    }
    sw_buf_fini(&o.line);
}

static int
cmd_cert(struct cli *c, int argc, char **argv)
{
    Scepwatch__ListEnrollmentsRequest rq = SCEPWATCH__LIST_ENROLLMENTS_REQUEST__INIT;
    struct path_ctx p = { c, 0 };
    size_t n;
    int rc;

    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: scepwatch cert SERIAL|THUMBPRINT|TXN|REQUEST_ID\n"
               "One certificate's path from the device's request through the CA to the\n"
               "install: the enrollment, its device events and the CA's events.\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-')
        return usage_error("%susage: scepwatch cert SERIAL|THUMBPRINT|TXN|REQUEST_ID", "");
    if ((rc = connect_agg(c)) != 0)
        return rc;
    /* people paste thumbprints with spaces or colons */
    char key[256];
    size_t k = 0;
    for (const char *s = argv[1]; *s && k < sizeof key - 1; s++)
        if (*s != ' ' && *s != ':')
            key[k++] = *s;
    key[k] = '\0';
    rq.cert_key = key;
    rc = each_enrollment(c, &rq, PAGE_ROWS, print_path, &p, &n);
    if (rc == 0 && n == 0) {
        fprintf(stderr, "scepwatch: no certificate or request matches '%s'\n", argv[1]);
        return 1;
    }
    return rc | p.rc | finish_output();
}

static int
cmd_health(struct cli *c, int argc, char **argv)
{
    Scepwatch__HealthRequest rq = SCEPWATCH__HEALTH_REQUEST__INIT;
    struct sw_rpc_reply reply;
    Scepwatch__HealthReply *rp;
    int rc;

    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: scepwatch health\nChecks that the aggregator answers.\n");
        return 0;
    }
    if (argc > 1)
        return usage_error("unexpected argument '%s'", argv[1]);
    if ((rc = connect_agg(c)) != 0)
        return rc;
    if (call(c, SW_METHOD("Health"), &rq.base, &reply) != 0)
        return 1;
    rp = scepwatch__health_reply__unpack(NULL, reply.payload_len, reply.payload);
    if (!rp) {
        fprintf(stderr, "scepwatch: malformed Health reply\n");
        return 1;
    }
    printf("ok: aggregator %s at %s holds %llu events\n", rp->version ? rp->version : "?",
           c->url, (unsigned long long)rp->events);
    scepwatch__health_reply__free_unpacked(rp, NULL);
    return 0;
}

static const struct command {
    const char *name;
    int (*fn)(struct cli *c, int argc, char **argv);
} commands[] = {
    { "stuck", cmd_stuck },
    { "device", cmd_device },
    { "cert", cmd_cert },
    { "summary", cmd_summary },
    { "events", cmd_events },
    { "export", cmd_export },
    { "health", cmd_health },
};

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "aggregator", required_argument, NULL, 'a' },
        { "timeout-ms", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    struct cli c = { 0 };
    int ch, rc;

    /*
     * Replies come a page at a time, each a buffer of a megabyte or two and
     * a little larger or smaller than the last: glibc would map each one
     * afresh and unmap it on free.  Kept on the heap instead, every page
     * reuses the memory of the one before (a fresh page of memory is a
     * page fault; this process lives for one command).
     */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    /* a report into a pipe or a file: 64 KiB writes, not one a 4 KiB block */
    static char outbuf[1 << 16];
    if (!isatty(STDOUT_FILENO))
        setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);

    c.url = getenv("SCEPWATCH_AGGREGATOR");
    if (!c.url || !*c.url)
        c.url = "tcp://127.0.0.1:7400";
    c.timeout_ms = 30000;
    /* "+": stop at the command; its options are its own */
    while ((ch = getopt_long(argc, argv, "+a:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'a': c.url = optarg; break;
        case 't': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v <= 0 || v > 3600000)
                return usage_error("bad --timeout-ms '%s'", optarg);
            c.timeout_ms = (int)v;
            break;
        }
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': printf("scepwatch %s\n", SW_VERSION); return 0;
        default: return usage_error("%sbad option", "");
        }
    }
    if (optind >= argc)
        return usage_error("%smissing COMMAND", "");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, argv[optind]) == 0) {
            rc = commands[i].fn(&c, argc - optind, argv + optind);
            sw_rpc_client_close(c.client);
            sw_arena_release(&c.page);
            return rc;
        }
    }
    return usage_error("unknown command '%s'", argv[optind]);
}
