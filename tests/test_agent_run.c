/*
 * test_agent_run.c - `scepwatch-agent run` as a process: its config file
 * (errors as FILE:LINE: reason, flags and keys from one table), a clean
 * stop on SIGTERM that flushes the spool when the aggregator answers and
 * keeps it when it does not, and an aggregator outage long enough to fill
 * the spool: the spool stops at its bound, reading pauses and resumes, and
 * every event arrives exactly once when the aggregator is back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th.h"

#define PER_DEV 4000

static char agent_bin[512], cli_bin[512];
static char *dir;
static char url[700], db[700], logs[700], state[700], log_file[700];
static uint32_t counts[2 * PER_DEV];
static pid_t kids[32];                  /* spawned here: killed at teardown */
static int nkids;

static pid_t
track(pid_t pid)
{
    if (pid > 0 && nkids < 32)
        kids[nkids++] = pid;
    return pid;
}

static int
setup(void **st)
{
    (void)st;
    snprintf(agent_bin, sizeof agent_bin, "%s/scepwatch-agent", TH_BIN_DIR);
    snprintf(cli_bin, sizeof cli_bin, "%s/scepwatch", TH_BIN_DIR);
    signal(SIGPIPE, SIG_IGN);
    dir = th_temp_dir();
    if (!dir)
        return -1;
    snprintf(url, sizeof url, "ipc://%s/agg.sock", dir);
    snprintf(db, sizeof db, "%s/agg.db", dir);
    snprintf(logs, sizeof logs, "%s/logs", dir);
    snprintf(state, sizeof state, "%s/state", dir);
    snprintf(log_file, sizeof log_file, "%s/agent.log", dir);
    mkdir(logs, 0755);
    return 0;
}

static int
teardown(void **st)
{
    char cmd[800];
    (void)st;
    for (int i = 0; i < nkids; i++) {
        if (waitpid(kids[i], NULL, WNOHANG) == 0) {
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, 0);
        }
    }
    nkids = 0;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return -1;
    free(dir);
    return 0;
}

/* Appends lines dev/from .. dev/to-1 to logs/<device>/OMADM.log. */
static void
lines(unsigned dev, uint64_t from, uint64_t to)
{
    char d[800], path[900], line[400];
    struct sw_buf b;
    snprintf(d, sizeof d, "%s/dev%u", logs, dev);
    mkdir(d, 0755);
    snprintf(path, sizeof path, "%s/OMADM.log", d);
    sw_buf_init(&b);
    for (uint64_t n = from; n < to; n++) {
        size_t len = th_omadm_line(line, sizeof line, dev, n);
        sw_buf_append(&b, line, len);
    }
    assert_int_equal(th_append(path, b.data, b.len), 0);
    sw_buf_fini(&b);
}

static pid_t
start_agent(const char *spool_max)
{
    char pat[800];
    snprintf(pat, sizeof pat, "%s/{device}/OMADM*.log", logs);
    char *argv[] = { agent_bin, "run", "--aggregator", url, "--state-dir", state, "--format",
                     "android_omadm", "--poll-ms", "100", "--spool-max-bytes", (char *)spool_max,
                     "--timeout-ms", "2000", pat, NULL };
    pid_t pid = track(th_spawn(argv, log_file));
    assert_true(pid > 0);
    return pid;
}

/* Events stored per marker; returns the number of events. */
static size_t
stored(void)
{
    struct sw_buf out;
    char *argv[] = { cli_bin, "--aggregator", url, "events", "--format", "jsonl", NULL };
    size_t n = 0;
    sw_buf_init(&out);
    memset(counts, 0, sizeof counts);
    if (th_run(argv, &out, NULL) == 0 && out.len) {
        assert_int_equal(th_marker_counts(out.data, counts, 2, PER_DEV), 0);
        n = th_count_lines(out.data);
    }
    sw_buf_fini(&out);
    return n;
}

/* Waits (up to secs) for want events in the aggregator. */
static size_t
wait_stored(size_t want, int secs)
{
    size_t n = 0;
    for (int64_t end = th_now_ms() + secs * 1000; th_now_ms() < end;) {
        n = stored();
        if (n >= want)
            break;
        th_sleep_ms(300);
    }
    return n;
}

static void
expect_once(unsigned dev, uint64_t from, uint64_t to)
{
    for (uint64_t n = from; n < to; n++) {
        if (counts[dev * PER_DEV + n] != 1)
            fprintf(stderr, "marker %u/%llu stored %u times\n", dev, (unsigned long long)n,
                    counts[dev * PER_DEV + n]);
        assert_int_equal(counts[dev * PER_DEV + n], 1);
    }
}

/* Bytes queued in the agent's spool, read from its database (-1: none yet). */
static long long
spool_bytes(void)
{
    char path[800];
    sqlite3 *h = NULL;
    sqlite3_stmt *q = NULL;
    long long v = -1;
    snprintf(path, sizeof path, "%s/state.db", state);
    if (access(path, F_OK) != 0)
        return -1;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(h, 2000);
        if (sqlite3_prepare_v2(h, "SELECT COALESCE(SUM(length(data)),0) FROM spool", -1, &q,
                               NULL) == SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW)
            v = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
    }
    sqlite3_close(h);
    return v;
}

static int
wait_exit(pid_t pid, int secs)
{
    int status;
    for (int64_t end = th_now_ms() + secs * 1000; th_now_ms() < end; th_sleep_ms(50)) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static void
print_log(void)
{
    char *text = th_read_file(log_file, NULL);
    if (text)
        fprintf(stderr, "--- agent log ---\n%s-----------------\n", text);
    free(text);
}

/* Runs the agent with a config file; returns its exit status, stderr in err. */
static int
run_config(const char *text, struct sw_buf *err)
{
    char conf[800];
    snprintf(conf, sizeof conf, "%s/agent.conf", dir);
    unlink(conf);
    assert_int_equal(th_append(conf, text, strlen(text)), 0);
    char *argv[] = { agent_bin, "--config", conf, NULL };
    sw_buf_reset(err);
    return th_run(argv, NULL, err);
}

static void
run_config_errors_name_the_file_and_line(void **st)
{
    struct sw_buf err;
    char want[900];
    (void)st;
    sw_buf_init(&err);

    assert_int_equal(run_config("state_dir = /tmp/x\npaths = /a/*.log\nbogus = 1\n", &err), 2);
    snprintf(want, sizeof want, "%s/agent.conf:3: unknown key 'bogus'", dir);
    assert_non_null(strstr(err.data, want));

    assert_int_equal(run_config("state_dir = /tmp/x\nspool_max_bytes = 12Q\n", &err), 2);
    snprintf(want, sizeof want, "%s/agent.conf:2: spool_max_bytes: bad size '12Q'", dir);
    assert_non_null(strstr(err.data, want));

    assert_int_equal(run_config("# comment\n\n[agent]\npoll_ms = -5\n", &err), 2);
    snprintf(want, sizeof want, "%s/agent.conf:4: poll_ms: bad value", dir);
    assert_non_null(strstr(err.data, want));

    assert_int_equal(run_config("[elsewhere]\nstate_dir = /x\n", &err), 2);
    snprintf(want, sizeof want, "%s/agent.conf:2: unknown section [elsewhere]", dir);
    assert_non_null(strstr(err.data, want));

    assert_int_equal(run_config("format = no_such_format\n", &err), 2);
    snprintf(want, sizeof want, "%s/agent.conf:1: format: unknown format", dir);
    assert_non_null(strstr(err.data, want));

    assert_int_equal(run_config("state_dir = /x\njust words\n", &err), 2);
    snprintf(want, sizeof want, "%s/agent.conf:2: syntax error", dir);
    assert_non_null(strstr(err.data, want));

    char longline[400];
    memset(longline, 'a', sizeof longline);
    memcpy(longline, "paths = /", 9);
    longline[sizeof longline - 2] = '\n';
    longline[sizeof longline - 1] = '\0';
    char text[600];
    snprintf(text, sizeof text, "state_dir = /x\n%s", longline);
    assert_int_equal(run_config(text, &err), 2);
    snprintf(want, sizeof want, "%s/agent.conf:2: line too long", dir);
    assert_non_null(strstr(err.data, want));

    assert_int_equal(run_config("paths = /a/*.log\n", &err), 2);
    assert_non_null(strstr(err.data, "state_dir"));

    char *missing[] = { agent_bin, "run", "--config", "/nonexistent/agent.conf", NULL };
    sw_buf_reset(&err);
    assert_int_equal(th_run(missing, NULL, &err), 2);
    assert_non_null(strstr(err.data, "/nonexistent/agent.conf: cannot open"));

    char *badflag[] = { agent_bin, "run", "--spool-max-bytes", "1", "--state-dir", "/x", "a",
                        NULL };
    sw_buf_reset(&err);
    assert_int_equal(th_run(badflag, NULL, &err), 2);
    assert_non_null(strstr(err.data, "spool_max_bytes"));

    struct sw_buf out;
    sw_buf_init(&out);
    char *help[] = { agent_bin, "run", "--help", NULL };
    assert_int_equal(th_run(help, &out, NULL), 0);
    assert_non_null(strstr(out.data, "usage:"));
    assert_non_null(strstr(out.data, "--spool-max-bytes"));
    assert_non_null(strstr(out.data, "--poll-ms"));
    sw_buf_fini(&out);
    sw_buf_fini(&err);
}

static void
run_from_config_file_delivers_and_stops_cleanly(void **st)
{
    char conf[800], text[3000];
    (void)st;
    pid_t agg = track(th_start_aggregator(db, url, NULL));
    assert_true(agg > 0);
    lines(0, 0, 50);
    snprintf(conf, sizeof conf, "%s/agent.conf", dir);
    /* paths over two lines (a continuation), and the [agent] section */
    snprintf(text, sizeof text,
             "; scepwatch agent\n[agent]\naggregator = %s\nstate_dir = %s\n"
             "format = android_omadm\npaths = %s/{device}/OMADM*.log\n"
             "        %s/none/*.log\npoll_ms = 100\nspool_max_bytes = 1M\ninotify = yes\n",
             url, state, logs, logs);
    assert_int_equal(th_append(conf, text, strlen(text)), 0);
    char *argv[] = { agent_bin, "--config", conf, NULL };
    pid_t ag = track(th_spawn(argv, log_file));
    assert_int_equal(wait_stored(50, 30), 50);
    lines(1, 0, 30);
    assert_int_equal(wait_stored(80, 30), 80);
    expect_once(0, 0, 50);
    expect_once(1, 0, 30);
    kill(ag, SIGTERM);
    int rc = wait_exit(ag, 20);
    if (rc != 0)
        print_log();
    assert_int_equal(rc, 0);
    assert_int_equal(th_stop(agg), 0);
}

static void
run_stop_keeps_the_spool_when_the_aggregator_is_away(void **st)
{
    (void)st;
    lines(0, 0, 200);
    pid_t ag = start_agent("1M");
    for (int i = 0; i < 100 && spool_bytes() <= 0; i++)
        th_sleep_ms(100);
    assert_true(spool_bytes() > 0);
    int64_t t0 = th_now_ms();
    kill(ag, SIGTERM);
    int rc = wait_exit(ag, 30);
    if (rc != 0)
        print_log();
    assert_int_equal(rc, 0);
    /* prompt: at most one call's timeout (2 s here) plus a little */
    assert_true(th_now_ms() - t0 < 8000);
    assert_true(spool_bytes() > 0);

    pid_t agg = track(th_start_aggregator(db, url, NULL));
    assert_true(agg > 0);
    ag = start_agent("1M");
    assert_int_equal(wait_stored(200, 30), 200);
    expect_once(0, 0, 200);
    /* stop while the aggregator answers: the spool is flushed */
    lines(0, 200, 260);
    th_sleep_ms(50);
    kill(ag, SIGTERM);
    assert_int_equal(wait_exit(ag, 30), 0);
    size_t n = stored();
    assert_true(n >= 200);
    if (n < 260) {
        /* whatever was read is spooled; the next start sends it */
        ag = start_agent("1M");
        assert_int_equal(wait_stored(260, 30), 260);
        kill(ag, SIGTERM);
        assert_int_equal(wait_exit(ag, 30), 0);
    }
    stored();
    expect_once(0, 0, 260);
    assert_int_equal(th_stop(agg), 0);
}

static void
run_outage_fills_the_spool_to_its_bound_then_delivers_everything(void **st)
{
    const long long max = 256 * 1024;
    long long peak = 0, rss_max = 0;
    uint64_t written[2] = { 0, 0 };
    (void)st;

    pid_t ag = start_agent("256K");
    /* steady writes with no aggregator: ~2.4 MB of lines, far more than the spool holds */
    int64_t full_at = 0;
    for (int round = 0; round < 80; round++) {
        for (unsigned d = 0; d < 2; d++) {
            lines(d, written[d], written[d] + 50);
            written[d] += 50;
        }
        th_sleep_ms(50);
        long long b = spool_bytes();
        assert_true(b <= max);              /* never past the bound */
        if (b > peak)
            peak = b;
        long rss = th_rss_kb(ag);
        if (rss > rss_max)
            rss_max = rss;
        if (!full_at && b > max - max / 8)
            full_at = th_now_ms();
    }
    fprintf(stderr, "outage: spool peak %lld of %lld bytes; agent VmRSS max %ld KiB "
            "(sanitizer build)\n", peak, max, (long)rss_max);
    assert_true(full_at != 0);              /* it reached its bound ... */
    assert_int_equal(waitpid(ag, NULL, WNOHANG), 0);    /* ... and the agent waits */

    pid_t agg = track(th_start_aggregator(db, url, NULL));
    assert_true(agg > 0);
    size_t want = (size_t)(written[0] + written[1]);
    size_t n = wait_stored(want, 120);
    if (n != want)
        print_log();
    assert_int_equal(n, want);
    expect_once(0, 0, written[0]);
    expect_once(1, 0, written[1]);
    kill(ag, SIGTERM);
    assert_int_equal(wait_exit(ag, 30), 0);
    assert_int_equal(th_stop(agg), 0);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(run_config_errors_name_the_file_and_line),
        T(run_from_config_file_delivers_and_stops_cleanly),
        T(run_stop_keeps_the_spool_when_the_aggregator_is_away),
        T(run_outage_fills_the_spool_to_its_bound_then_delivers_everything),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
