/*
 * cli.c - scepwatch, the admin CLI: a table of commands, each a call (or a
 * paged series of calls) to the aggregator's RPC, printed as a table, CSV,
 * JSON or JSON Lines.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scepwatch.pb-c.h"
#include "sw_buf.h"
#include "sw_json.h"
#include "sw_rpc.h"
#include "sw_time.h"
#include "sw_wire.h"

#define EXIT_USAGE 2
#define PAGE_SIZE 1000

static const char usage_text[] =
    "usage: scepwatch [--aggregator URL] COMMAND [OPTIONS]\n"
    "\n"
    "Asks the scepwatch aggregator about SCEP certificate enrollments.\n"
    "\n"
    "commands:\n"
    "  events    the stored events: [--device ID] [--since TIME|DURATION]\n"
    "            [--platform P] [--format table|jsonl]\n"
    "  summary   events per platform and stage [--format table|csv|json]\n"
    "  health    is the aggregator up, and how many events it holds\n"
    "\n"
    "  -a, --aggregator URL  aggregator address (default $SCEPWATCH_AGGREGATOR,\n"
    "                        else tcp://127.0.0.1:7400)\n"
    "      --timeout-ms N    per call (default 10000)\n"
    "  -h, --help            this text (COMMAND --help for a command's)\n"
    "  -V, --version         version\n"
    "\n"
    "exit status: 0 success, 1 aggregator unreachable or error, 2 bad usage.\n";

struct cli {
    const char *url;
    int timeout_ms;
    struct sw_rpc_client *client;
};

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
call(struct cli *c, const char *method, const ProtobufCMessage *req, struct sw_rpc_reply *reply)
{
    struct sw_buf b;
    sw_err e;

    sw_buf_init(&b);
    size_t sz = protobuf_c_message_get_packed_size(req);
    if (sw_buf_reserve(&b, sz) != SW_OK) {
        fprintf(stderr, "scepwatch: out of memory\n");
        return 1;
    }
    b.len = protobuf_c_message_pack(req, (uint8_t *)b.data);
    e = sw_rpc_call(c->client, method, b.data, b.len, reply);
    sw_buf_fini(&b);
    if (e != SW_OK) {
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
parse_format(const char *s, const char *const *allowed, const char **out)
{
    for (int i = 0; allowed[i]; i++)
        if (strcmp(s, allowed[i]) == 0) {
            *out = allowed[i];
            return 0;
        }
    return -1;
}

/* ---- events ---- */

static void
print_event_row(const struct sw_event *ev)
{
    char ts[32];
    char keys[256];
    size_t k = 0;

    sw_time_format(ev->ts_us, ts);
    ts[19] = '\0'; /* seconds are enough in a table */
    keys[0] = '\0';
#define KEY(f, label)                                                              \
    if (ev->f.len && k < sizeof keys - 1)                                          \
        k += (size_t)snprintf(keys + k, sizeof keys - k, "%s%s=%.*s", k ? " " : "", \
                              label, (int)ev->f.len, ev->f.ptr);
    KEY(profile, "profile") KEY(txn, "txn") KEY(thumbprint, "thumb") KEY(serial, "serial")
    KEY(request_id, "req") KEY(detail, "detail")
#undef KEY
    if (k >= sizeof keys)
        k = sizeof keys - 1;
    printf("%-19s  %-16.*s %-9s %-18s %s\n", ts, ev->device.len ? (int)(ev->device.len > 16 ? 16 : ev->device.len) : 1,
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
        { "format", required_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const char *const formats[] = { "table", "jsonl", NULL };
    Scepwatch__ListEventsRequest rq = SCEPWATCH__LIST_EVENTS_REQUEST__INIT;
    Scepwatch__EventFilter f = SCEPWATCH__EVENT_FILTER__INIT;
    const char *format = "table";
    unsigned char cursor[64];
    size_t cursor_len = 0;
    struct sw_buf line;
    int ch, rc = 0, first = 1;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "d:s:p:f:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': f.device = optarg; break;
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
            if (parse_format(optarg, formats, &format) != 0)
                return usage_error("bad --format '%s' (table or jsonl)", optarg);
            break;
        case 'h':
            printf("usage: scepwatch events [--device ID] [--since TIME|DURATION] [--platform P]\n"
                   "                        [--format table|jsonl]\n"
                   "Prints the stored events, each once, oldest first.\n");
            return 0;
        default: return usage_error("%sbad option for 'events'", "");
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if ((rc = connect_agg(c)) != 0)
        return rc;
    rq.filter = &f;
    rq.has_page_size = 1;
    rq.page_size = PAGE_SIZE;
    sw_buf_init(&line);
    for (;;) {
        struct sw_rpc_reply reply;
        struct sw_wire_decoded d;
        char why[256];

        rq.has_cursor = cursor_len > 0;
        rq.cursor.data = cursor;
        rq.cursor.len = cursor_len;
        if (call(c, SW_METHOD("ListEvents"), &rq.base, &reply) != 0) {
            rc = 1;
            break;
        }
        if (sw_wire_decode_list(reply.payload, reply.payload_len, 256u << 20, &d, why, sizeof why) != SW_OK) {
            fprintf(stderr, "scepwatch: bad reply: %s\n", why);
            rc = 1;
            break;
        }
        if (first && strcmp(format, "table") == 0)
            printf("%-19s  %-16s %-9s %-18s %s\n", "TIME (UTC)", "DEVICE", "PLATFORM", "STAGE", "KEYS");
        first = 0;
        for (size_t i = 0; i < d.count; i++) {
            struct sw_event ev;
            sw_wire_decoded_event(&d, i, &ev);
            if (strcmp(format, "jsonl") == 0) {
                sw_buf_reset(&line);
                sw_json_event(&line, &ev);
                sw_buf_putc(&line, '\n');
                fwrite(line.data, 1, line.len, stdout);
            } else {
                print_event_row(&ev);
            }
        }
        cursor_len = d.cursor_len <= sizeof cursor ? d.cursor_len : 0;
        if (cursor_len)
            memcpy(cursor, d.cursor, cursor_len);
        sw_wire_decoded_fini(&d);
        if (!cursor_len)
            break;
    }
    sw_buf_fini(&line);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "scepwatch: writing stdout: %s\n", strerror(errno));
        rc = 1;
    }
    return rc;
}

/* ---- summary ---- */

static int
cmd_summary(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "format", required_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const char *const formats[] = { "table", "csv", "json", NULL };
    Scepwatch__SummaryRequest rq = SCEPWATCH__SUMMARY_REQUEST__INIT;
    struct sw_rpc_reply reply;
    Scepwatch__SummaryReply *rp;
    const char *format = "table";
    int ch, rc;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            if (parse_format(optarg, formats, &format) != 0)
                return usage_error("bad --format '%s' (table, csv or json)", optarg);
            break;
        case 'h':
            printf("usage: scepwatch summary [--format table|csv|json]\n"
                   "Counts the stored events per platform and stage.\n");
            return 0;
        default: return usage_error("%sbad option for 'summary'", "");
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if ((rc = connect_agg(c)) != 0)
        return rc;
    if (call(c, SW_METHOD("Summary"), &rq.base, &reply) != 0)
        return 1;
    rp = scepwatch__summary_reply__unpack(NULL, reply.payload_len, reply.payload);
    if (!rp) {
        fprintf(stderr, "scepwatch: malformed Summary reply\n");
        return 1;
    }
    if (strcmp(format, "csv") == 0)
        printf("platform,stage,events\r\n");
    else if (strcmp(format, "json") == 0)
        printf("[");
    else
        printf("%-10s %-20s %10s\n", "PLATFORM", "STAGE", "EVENTS");
    for (size_t i = 0; i < rp->n_rows; i++) {
        const char *p = sw_platform_name((enum sw_platform)rp->rows[i]->platform);
        const char *s = sw_stage_name((enum sw_stage)rp->rows[i]->stage);
        unsigned long long n = (unsigned long long)rp->rows[i]->count;
        p = p ? p : "unknown";
        s = s ? s : "unknown";
        if (strcmp(format, "csv") == 0)
            printf("%s,%s,%llu\r\n", p, s, n);
        else if (strcmp(format, "json") == 0)
            printf("%s{\"platform\":\"%s\",\"stage\":\"%s\",\"events\":%llu}", i ? "," : "", p, s, n);
        else
            printf("%-10s %-20s %10llu\n", p, s, n);
    }
    if (strcmp(format, "json") == 0)
        printf("]\n");
    scepwatch__summary_reply__free_unpacked(rp, NULL);
    return 0;
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
    { "events", cmd_events },
    { "summary", cmd_summary },
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

    c.url = getenv("SCEPWATCH_AGGREGATOR");
    if (!c.url || !*c.url)
        c.url = "tcp://127.0.0.1:7400";
    c.timeout_ms = 10000;
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
            return rc;
        }
    }
    return usage_error("unknown command '%s'", argv[optind]);
}
