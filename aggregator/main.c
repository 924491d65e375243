/*
 * main.c - scepwatch-aggregator: flags and config, store, listeners,
 * signals.  No request logic (server.c) and no SQL (store_sqlite.c).
 */
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "correlate.h"
#include "server.h"
#include "store.h"
#include "sw_log.h"
#include "sw_time.h"

#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: scepwatch-aggregator --db PATH --listen URL [OPTIONS]\n"
    "\n"
    "Stores SCEP lifecycle events sent by agents and answers the scepwatch CLI.\n"
    "Runs in the foreground; prints one line when ready; stops on SIGTERM/SIGINT.\n"
    "\n"
    "  -c, --config FILE        INI file; keys are the long option names\n"
    "                           (db, listen, admin_listen, workers, verbose)\n"
    "  -d, --db PATH            SQLite database file (created if missing)\n"
    "  -l, --listen URL         nng address, e.g. tcp://127.0.0.1:7400\n"
    "                           (serves every method unless --admin-listen is given)\n"
    "      --admin-listen URL   serve admin queries here only (e.g. ipc:///run/scepwatch/admin);\n"
    "                           --listen then serves agents (Ingest, Health) only\n"
    "  -w, --workers N          concurrent requests per listener (default 4)\n"
    "  -s, --stuck-after DUR    a non-final status older than DUR is stuck (default 1h);\n"
    "                           STATUS=DUR sets one status (e.g. pending=4h); repeatable.\n"
    "                           Config: stuck_after = 1h, stuck_after = pending=4h\n"
    "  -v, --verbose            log every refused request\n"
    "  -h, --help               this text\n"
    "  -V, --version            version\n"
    "\n"
    "exit status: 0 clean stop, 1 cannot start (database, address), 2 bad usage.\n";

struct config {
    char *db;
    char *listen;
    char *admin_listen;
    int workers;
    int verbose;
    int64_t threshold_us[AGG_STATUS_COUNT]; /* 0 = default (1 h) */
};

/* "1h" for every status, or "pending=4h" for one. Returns 0 or -1. */
static int
set_threshold(struct config *c, const char *v)
{
    const char *eq = strchr(v, '=');
    if (!eq) {
        int64_t d = sw_parse_duration_us(v);
        if (d < 0)
            return -1;
        for (int i = 0; i < AGG_STATUS_COUNT; i++)
            c->threshold_us[i] = d;
        return 0;
    }
    char name[64];
    size_t n = (size_t)(eq - v);
    if (n >= sizeof name)
        return -1;
    memcpy(name, v, n);
    name[n] = '\0';
    enum agg_status st = agg_status_from_name(name);
    int64_t d = sw_parse_duration_us(eq + 1);
    if (st == AGG_STATUS_NONE || agg_status_is_final(st) || d < 0)
        return -1;
    c->threshold_us[st] = d;
    return 0;
}

static int
usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "scepwatch-aggregator: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'scepwatch-aggregator --help'.\n");
    return EXIT_USAGE;
}

static int
parse_workers(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 256)
        return -1;
    *out = (int)v;
    return 0;
}

static int
set_str(char **slot, const char *v)
{
    char *d = strdup(v);
    if (!d)
        return -1;
    free(*slot);
    *slot = d;
    return 0;
}

/* inih callback: returns 0 on error so ini_parse reports the line. */
static int
config_key(void *user, const char *section, const char *name, const char *value)
{
    struct config *c = user;
    (void)section;
    if (strcmp(name, "db") == 0)
        return set_str(&c->db, value) == 0;
    if (strcmp(name, "listen") == 0)
        return set_str(&c->listen, value) == 0;
    if (strcmp(name, "admin_listen") == 0)
        return set_str(&c->admin_listen, value) == 0;
    if (strcmp(name, "workers") == 0)
        return parse_workers(value, &c->workers) == 0;
    if (strcmp(name, "stuck_after") == 0) {
        if (set_threshold(c, value) != 0) {
            fprintf(stderr, "scepwatch-aggregator: bad stuck_after '%s'\n", value);
            return 0;
        }
        return 1;
    }
    if (strcmp(name, "verbose") == 0) {
        c->verbose = strcmp(value, "1") == 0 || strcmp(value, "true") == 0 ||
                     strcmp(value, "yes") == 0;
        return 1;
    }
    fprintf(stderr, "scepwatch-aggregator: unknown config key '%s'\n", name);
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "db", required_argument, NULL, 'd' },
        { "listen", required_argument, NULL, 'l' },
        { "admin-listen", required_argument, NULL, 'A' },
        { "workers", required_argument, NULL, 'w' },
        { "verbose", no_argument, NULL, 'v' },
        { "stuck-after", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    struct config cfg = { .workers = 4 };
    struct agg_store *store = NULL;
    struct agg_server *main_srv = NULL, *admin_srv = NULL;
    const char *config_file = NULL;
    char why[512];
    sigset_t sigs;
    int c, sig, rc = 1;

    /* the config file first, so flags override it */
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc)
            config_file = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            config_file = argv[i] + 9;
    }
    if (config_file) {
        int line = ini_parse(config_file, config_key, &cfg);
        if (line < 0) {
            fprintf(stderr, "scepwatch-aggregator: cannot read config %s\n", config_file);
            goto out;
        }
        if (line > 0) {
            fprintf(stderr, "scepwatch-aggregator: %s:%d: bad config line\n", config_file, line);
            rc = EXIT_USAGE;
            goto out;
        }
    }
    while ((c = getopt_long(argc, argv, "c:d:l:w:s:vhV", long_opts, NULL)) != -1) {
        switch (c) {
        case 'c': break;
        case 'd': set_str(&cfg.db, optarg); break;
        case 'l': set_str(&cfg.listen, optarg); break;
        case 'A': set_str(&cfg.admin_listen, optarg); break;
        case 'w':
            if (parse_workers(optarg, &cfg.workers) != 0) {
                rc = usage_error("bad --workers '%s' (1..256)", optarg);
                goto out;
            }
            break;
        case 'v': cfg.verbose = 1; break;
        case 's':
            if (set_threshold(&cfg, optarg) != 0) {
                rc = usage_error("bad --stuck-after '%s' (DUR or STATUS=DUR)", optarg);
                goto out;
            }
            break;
        case 'h': fputs(usage_text, stdout); rc = 0; goto out;
        case 'V': printf("scepwatch-aggregator %s\n", SW_VERSION); rc = 0; goto out;
        default: rc = usage_error("%sbad option", ""); goto out;
        }
    }
    if (optind < argc)
        rc = usage_error("unexpected argument '%s'", argv[optind]);
    else if (!cfg.db)
        rc = usage_error("%s--db PATH is required", "");
    else if (!cfg.listen)
        rc = usage_error("%s--listen URL is required", "");
    if (rc == EXIT_USAGE)
        goto out;
    rc = 1;
    sw_log_init("scepwatch-aggregator", cfg.verbose ? SW_LOG_DEBUG : SW_LOG_INFO);

    /* Block the stop signals in every thread; main waits for them below. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (agg_store_sqlite.open(&store, cfg.db, why, sizeof why) != SW_OK) {
        fprintf(stderr, "scepwatch-aggregator: cannot open database: %s\n", why);
        goto out;
    }
    struct agg_server_opts so = {
        .url = cfg.listen,
        .roles = cfg.admin_listen ? AGG_ROLE_INGEST : AGG_ROLE_ALL,
        .workers = cfg.workers,
    };
    memcpy(so.threshold_us, cfg.threshold_us, sizeof so.threshold_us);
    if (agg_server_start(&main_srv, &so, store, why, sizeof why) != SW_OK) {
        fprintf(stderr, "scepwatch-aggregator: %s\n", why);
        goto out;
    }
    if (cfg.admin_listen) {
        so.url = cfg.admin_listen;
        so.roles = AGG_ROLE_ADMIN;
        if (agg_server_start(&admin_srv, &so, store, why, sizeof why) != SW_OK) {
            fprintf(stderr, "scepwatch-aggregator: %s\n", why);
            goto out;
        }
    }
    printf("scepwatch-aggregator: ready on %s%s%s (db %s)\n", cfg.listen,
           cfg.admin_listen ? ", admin on " : "", cfg.admin_listen ? cfg.admin_listen : "",
           cfg.db);
    fflush(stdout);
    if (sigwait(&sigs, &sig) == 0)
        sw_info("signal %d: stopping", sig);
    rc = 0;
out:
    agg_server_stop(admin_srv);
    agg_server_stop(main_srv);
    if (store)
        store->ops->close(store);
    free(cfg.db);
    free(cfg.listen);
    free(cfg.admin_listen);
    return rc;
}
