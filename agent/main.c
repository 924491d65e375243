/*
 * main.c - scepwatch-agent: argv, subcommands, wiring.  No parsing logic.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parse.h"
#include "send.h"
#include "sw_buf.h"
#include "sw_json.h"
#include "sw_log.h"
#include "sw_time.h"

#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: scepwatch-agent COMMAND [OPTIONS] FILE...\n"
    "\n"
    "Extracts SCEP certificate lifecycle events from device and server logs.\n"
    "\n"
    "commands:\n"
    "  parse   print the events of FILEs as JSON Lines on stdout (no network)\n"
    "  send    ship the events of FILEs to the aggregator once, wait for its ack\n"
    "  formats list the log formats this agent reads\n"
    "\n"
    "options (parse and send):\n"
    "  -f, --format NAME|auto  log format (default auto: decided per file)\n"
    "  -d, --device ID         device identity for logs that name none\n"
    "      --date YYYY-MM-DD   date for lines with a time but no date\n"
    "                          (iOS Console; default: the file's modification date)\n"
    "      --tz +HH:MM         zone of timestamps that carry none (default UTC)\n"
    "      --stats             print per-file counters to stderr\n"
    "options (send):\n"
    "  -a, --aggregator URL    aggregator address (default $SCEPWATCH_AGGREGATOR\n"
    "                          or tcp://127.0.0.1:7400)\n"
    "      --batch-events N    events per batch (default 5000)\n"
    "      --timeout-ms N      per call (default 30000)\n"
    "      --retries N         retries with backoff before giving up (default 6)\n"
    "\n"
    "  -h, --help              this text\n"
    "  -V, --version           version\n"
    "\n"
    "exit status: 0 success, 1 failure (unreadable file, aggregator unreachable),\n"
    "2 bad usage.\n";

static int
usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "scepwatch-agent: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'scepwatch-agent --help'.\n");
    return EXIT_USAGE;
}

struct common_opts {
    const struct agent_parser *format;   /* NULL = auto */
    struct agent_parse_opts popts;
    int stats;
    const char *url;
    size_t batch_events;
    int timeout_ms;
    int retries;
};

enum { OPT_DATE = 256, OPT_TZ, OPT_STATS, OPT_BATCH_EVENTS, OPT_TIMEOUT, OPT_RETRIES };

static const struct option long_opts[] = {
    { "format", required_argument, NULL, 'f' },
    { "device", required_argument, NULL, 'd' },
    { "date", required_argument, NULL, OPT_DATE },
    { "tz", required_argument, NULL, OPT_TZ },
    { "stats", no_argument, NULL, OPT_STATS },
    { "aggregator", required_argument, NULL, 'a' },
    { "batch-events", required_argument, NULL, OPT_BATCH_EVENTS },
    { "timeout-ms", required_argument, NULL, OPT_TIMEOUT },
    { "retries", required_argument, NULL, OPT_RETRIES },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};

static int
parse_uint(const char *s, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Returns -1 to continue, or an exit status. */
static int
parse_common(int argc, char **argv, struct common_opts *o, int network)
{
    int c;
    long v;

    memset(o, 0, sizeof *o);
    o->url = getenv("SCEPWATCH_AGGREGATOR");
    if (!o->url || !*o->url)
        o->url = "tcp://127.0.0.1:7400";
    o->retries = 6;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:d:a:hV", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (strcmp(optarg, "auto") == 0) {
                o->format = NULL;
            } else if (!(o->format = agent_parser_find(optarg))) {
                return usage_error("unknown format '%s' (see 'scepwatch-agent formats')", optarg);
            }
            break;
        case 'd':
            if (!*optarg)
                return usage_error("%s--device needs a value", "");
            o->popts.device = optarg;
            break;
        case OPT_DATE: {
            int64_t us;
            int y, m, d;
            if (strlen(optarg) != 10 || sw_time_parse(optarg, 10, 0, &us) != 0 ||
                sscanf(optarg, "%d-%d-%d", &y, &m, &d) != 3)
                return usage_error("bad --date '%s' (want YYYY-MM-DD)", optarg);
            o->popts.has_date = 1;
            o->popts.date_y = y;
            o->popts.date_m = m;
            o->popts.date_d = d;
            break;
        }
        case OPT_TZ: {
            int off;
            size_t n = strlen(optarg);
            if (sw_parse_tz(optarg, n, &off) != (int)n)
                return usage_error("bad --tz '%s' (want +HH:MM, -HHMM or Z)", optarg);
            o->popts.tz_off_min = off;
            break;
        }
        case OPT_STATS:
            o->stats = 1;
            break;
        case 'a':
            if (!network)
                return usage_error("%s--aggregator is for 'send' and 'run'", "");
            o->url = optarg;
            break;
        case OPT_BATCH_EVENTS:
            if (!network || parse_uint(optarg, 1000000, &v) || v == 0)
                return usage_error("bad --batch-events '%s'", optarg);
            o->batch_events = (size_t)v;
            break;
        case OPT_TIMEOUT:
            if (!network || parse_uint(optarg, 3600000, &v) || v == 0)
                return usage_error("bad --timeout-ms '%s'", optarg);
            o->timeout_ms = (int)v;
            break;
        case OPT_RETRIES:
            if (!network || parse_uint(optarg, 1000, &v))
                return usage_error("bad --retries '%s'", optarg);
            o->retries = (int)v;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case 'V':
            printf("scepwatch-agent %s\n", SW_VERSION);
            return 0;
        default:
            return usage_error("%sbad option", "");
        }
    }
    if (optind >= argc)
        return usage_error("%sno FILE given", "");
    return -1;
}

static void
print_stats(const char *file, const struct agent_parser *p, const uint64_t *counts)
{
    fprintf(stderr, "%s: format=%s", file, p ? p->name : "?");
    for (int i = 0; i < AGENT_COUNT_MAX; i++)
        fprintf(stderr, " %s=%llu", agent_count_name((enum agent_count)i),
                (unsigned long long)counts[i]);
    fputc('\n', stderr);
}

/* ---- parse ---- */

struct json_out {
    struct sw_buf buf;
    int failed;
};

static void
json_flush(struct json_out *o)
{
    if (o->buf.len && fwrite(o->buf.data, 1, o->buf.len, stdout) != o->buf.len)
        o->failed = 1;
    sw_buf_reset(&o->buf);
}

static void
emit_json(void *arg, const struct sw_event *ev)
{
    struct json_out *o = arg;
    sw_json_event(&o->buf, ev);
    sw_buf_putc(&o->buf, '\n');
    if (o->buf.len >= 64 * 1024)
        json_flush(o);
}

static int
report_file_error(const char *file, sw_err e)
{
    if (e == SW_EPARSE)
        fprintf(stderr, "scepwatch-agent: %s: cannot tell the log format; give --format\n", file);
    else if (e == SW_EINVAL)
        fprintf(stderr, "scepwatch-agent: %s: is a directory\n", file);
    else
        fprintf(stderr, "scepwatch-agent: %s: %s\n", file,
                e == SW_ENOENT ? "no such file" : strerror(errno ? errno : EIO));
    return 1;
}

static int
cmd_parse(int argc, char **argv)
{
    struct common_opts o;
    struct agent_reader r;
    struct json_out out;
    int rc = parse_common(argc, argv, &o, 0), status = 0;

    if (rc >= 0)
        return rc;
    if (agent_reader_init(&r, AGENT_MAX_LINE) != SW_OK) {
        fprintf(stderr, "scepwatch-agent: out of memory\n");
        return 1;
    }
    sw_buf_init(&out.buf);
    out.failed = 0;
    for (int i = optind; i < argc; i++) {
        uint64_t counts[AGENT_COUNT_MAX] = { 0 };
        const struct agent_parser *used = NULL;
        errno = 0;
        sw_err e = agent_parse_file(argv[i], o.format, &o.popts, &r, emit_json, &out, counts, &used);
        json_flush(&out);
        if (e != SW_OK)
            status = report_file_error(argv[i], e);
        else if (o.stats)
            print_stats(argv[i], used, counts);
    }
    json_flush(&out);
    sw_buf_fini(&out.buf);
    agent_reader_fini(&r);
    if (fflush(stdout) != 0 || out.failed) {
        fprintf(stderr, "scepwatch-agent: writing stdout: %s\n", strerror(errno));
        return 1;
    }
    return status;
}

/* ---- send ---- */

struct send_ctx {
    struct agent_sender *s;
    sw_err err;
};

static void
emit_send(void *arg, const struct sw_event *ev)
{
    struct send_ctx *c = arg;
    if (c->err == SW_OK)
        c->err = agent_send_add(c->s, ev);
}

static int
cmd_send(int argc, char **argv)
{
    struct common_opts o;
    struct agent_send_opts so;
    struct agent_reader r;
    struct send_ctx sc = { NULL, SW_OK };
    const char *why = NULL;
    int rc = parse_common(argc, argv, &o, 1), status = 0;
    sw_err e;

    if (rc >= 0)
        return rc;
    memset(&so, 0, sizeof so);
    so.url = o.url;
    so.batch_events = o.batch_events;
    so.timeout_ms = o.timeout_ms;
    so.retries = o.retries;
    e = agent_send_open(&sc.s, &so, &why);
    if (e != SW_OK) {
        fprintf(stderr, "scepwatch-agent: %s\n", why ? why : sw_strerror(e));
        return 1;
    }
    if (agent_reader_init(&r, AGENT_MAX_LINE) != SW_OK) {
        agent_send_close(sc.s);
        fprintf(stderr, "scepwatch-agent: out of memory\n");
        return 1;
    }
    for (int i = optind; i < argc && sc.err == SW_OK; i++) {
        uint64_t counts[AGENT_COUNT_MAX] = { 0 };
        const struct agent_parser *used = NULL;
        errno = 0;
        e = agent_parse_file(argv[i], o.format, &o.popts, &r, emit_send, &sc, counts, &used);
        if (e != SW_OK)
            status = report_file_error(argv[i], e);
        else if (o.stats)
            print_stats(argv[i], used, counts);
    }
    if (sc.err == SW_OK)
        sc.err = agent_send_flush(sc.s);
    if (sc.err != SW_OK) {
        fprintf(stderr, "scepwatch-agent: sending failed: %s\n",
                *agent_send_error(sc.s) ? agent_send_error(sc.s) : sw_strerror(sc.err));
        status = 1;
    } else {
        const struct agent_send_stats *st = agent_send_stats(sc.s);
        fprintf(stderr, "scepwatch-agent: sent %llu events in %llu batches: %llu stored, %llu already stored\n",
                (unsigned long long)st->events_sent, (unsigned long long)st->batches,
                (unsigned long long)st->events_stored, (unsigned long long)st->events_duplicate);
    }
    agent_reader_fini(&r);
    agent_send_close(sc.s);
    return status;
}

static int
cmd_formats(void)
{
    for (int i = 0; agent_parsers[i]; i++)
        printf("%s\n", agent_parsers[i]->name);
    return 0;
}

int
main(int argc, char **argv)
{
    sw_log_init("scepwatch-agent", SW_LOG_WARN);
    if (argc < 2)
        return usage_error("%smissing COMMAND", "");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("scepwatch-agent %s\n", SW_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "parse") == 0)
        return cmd_parse(argc - 1, argv + 1);
    if (strcmp(argv[1], "send") == 0)
        return cmd_send(argc - 1, argv + 1);
    if (strcmp(argv[1], "formats") == 0)
        return cmd_formats();
    return usage_error("unknown command '%s'", argv[1]);
}
