/*
 * test_crash.c - kill -9 the agent and the aggregator at random moments
 * while lines are appended to three device folders, each rotated its own
 * way (rename OMADM.log -> OMADM.N.log; copytruncate; truncation in
 * place), then check that every line's event is stored exactly once.
 *
 * The truncated-in-place folder is truncated only once the aggregator has
 * stored everything written to it so far: lines truncated before anyone
 * read them are lost by any tailer, so the test does not ask for them.
 *
 * SW_CRASH_SECONDS (default 15) sets the duration, SW_CRASH_SEED the
 * random seed (printed, to replay a failure).  deploy/crash-test.sh is
 * the long version.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "th.h"

#define NDEV 3
#define PER_DEV 200000

enum rot { ROT_RENAME, ROT_COPYTRUNCATE, ROT_TRUNCATE };
static const char *const dev_names[NDEV] = { "devR", "devC", "devT" };

static char agent_bin[512], cli_bin[512];
static char *dir;
static char url[700], db[700], logs[700], state[700], agent_log[700], agg_log[700];
static pid_t agent_pid = -1, agg_pid = -1;
static uint64_t written[NDEV];
static unsigned rot_n[NDEV];

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
    snprintf(agent_log, sizeof agent_log, "%s/agent.log", dir);
    snprintf(agg_log, sizeof agg_log, "%s/agg.log", dir);
    mkdir(logs, 0755);
    for (int d = 0; d < NDEV; d++) {
        char p[800];
        snprintf(p, sizeof p, "%s/%s", logs, dev_names[d]);
        mkdir(p, 0755);
    }
    return 0;
}

static int
teardown(void **st)
{
    char cmd[800];
    (void)st;
    if (agent_pid > 0)
        kill(agent_pid, SIGKILL);
    if (agg_pid > 0)
        kill(agg_pid, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0)
        ;
    if (getenv("SW_CRASH_KEEP")) {
        fprintf(stderr, "kept %s\n", dir);
    } else {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            return -1;
    }
    free(dir);
    return 0;
}

static void
start_agent(void)
{
    char pat[800];
    snprintf(pat, sizeof pat, "%s/{device}/OMADM*.log", logs);
    char *argv[] = { agent_bin, "run", "--aggregator", url, "--state-dir", state, "--format",
                     "android_omadm", "--poll-ms", "200", "--timeout-ms", "2000", pat, NULL };
    agent_pid = th_spawn(argv, agent_log);
    assert_true(agent_pid > 0);
}

static void
start_agg(void)
{
    agg_pid = th_start_aggregator(db, url, NULL);
    assert_true(agg_pid > 0);
}

static void
kill9(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
    }
    *pid = -1;
}

static void
dev_path(char *out, size_t cap, int d, const char *name)
{
    snprintf(out, cap, "%s/%s/%s", logs, dev_names[d], name);
}

static void
append_lines(int d, int k)
{
    char path[900], line[400];
    struct sw_buf b;
    sw_buf_init(&b);
    for (int i = 0; i < k; i++) {
        size_t len = th_omadm_line(line, sizeof line, (unsigned)d, written[d]++);
        sw_buf_append(&b, line, len);
    }
    dev_path(path, sizeof path, d, "OMADM.log");
    assert_int_equal(th_append(path, b.data, b.len), 0);
    sw_buf_fini(&b);
}

/* Events stored for a device (or all, dev < 0); counts filled when given. */
static long
stored(int dev, uint32_t *counts)
{
    struct sw_buf out;
    char *argv[] = { cli_bin, "--aggregator", url, "events", "--format", "jsonl", NULL, NULL,
                     NULL };
    long n = -1;
    if (dev >= 0) {
        argv[6] = "--device";
        argv[7] = (char *)dev_names[dev];
    }
    sw_buf_init(&out);
    if (th_run(argv, &out, NULL) == 0) {
        n = out.len ? (long)th_count_lines(out.data) : 0;
        if (counts && out.len)
            assert_int_equal(th_marker_counts(out.data, counts, NDEV, PER_DEV), 0);
    }
    sw_buf_fini(&out);
    return n;
}

static void
rotate(int d)
{
    char cur[900], old[900], name[64];
    snprintf(name, sizeof name, "OMADM.%u.log", ++rot_n[d]);
    dev_path(cur, sizeof cur, d, "OMADM.log");
    dev_path(old, sizeof old, d, name);
    if (d == ROT_RENAME) {
        assert_int_equal(rename(cur, old), 0);      /* next append creates a new one */
    } else if (d == ROT_COPYTRUNCATE) {
        size_t len = 0;
        char *text = th_read_file(cur, &len);
        assert_non_null(text);
        assert_int_equal(th_append(old, text, len), 0);
        free(text);
        assert_int_equal(truncate(cur, 0), 0);
    } else {
        assert_int_equal(truncate(cur, 0), 0);
    }
}

static void
crash_kill9_agent_and_aggregator_while_rotating(void **st)
{
    const char *env = getenv("SW_CRASH_SECONDS");
    int secs = env ? (int)strtol(env, NULL, 10) : 15;
    if (secs <= 0)
        secs = 15;
    env = getenv("SW_CRASH_SEED");
    unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
    unsigned kills_agent = 0, kills_agg = 0, rotations[NDEV] = { 0 };
    (void)st;

    fprintf(stderr, "crash test: %d s, seed %u (SW_CRASH_SEED to replay)\n", secs, seed);
    srand(seed);
    start_agg();
    start_agent();
    int64_t end = th_now_ms() + secs * 1000;
    int64_t next_kill = th_now_ms() + 500 + rand() % 1500;
    int64_t next_rot[NDEV], next_check = th_now_ms() + 1000;
    int64_t agent_back = 0, agg_back = 0;
    int64_t quiet_until = 0, quiet_poll = 0;   /* devT paused for a confirmation */
    for (int d = 0; d < NDEV; d++)
        next_rot[d] = th_now_ms() + 300 + rand() % 1200;

    while (th_now_ms() < end) {
        int64_t now = th_now_ms();
        for (int d = 0; d < NDEV; d++)
            if (d != ROT_TRUNCATE || !quiet_until)
                append_lines(d, 1 + rand() % 4);
        for (int d = 0; d < NDEV - 1; d++) {
            if (now >= next_rot[d]) {
                rotate(d);
                rotations[d]++;
                next_rot[d] = now + 300 + rand() % 1200;
            }
        }
        /* in place: only what is stored may be cut away, so devT pauses
           (up to 3 s) until the aggregator has all of it */
        if (!quiet_until && now >= next_check) {
            quiet_until = now + 3000;
            quiet_poll = now;
        }
        if (quiet_until && now >= quiet_poll) {
            if (agg_pid > 0 && stored(ROT_TRUNCATE, NULL) == (long)written[ROT_TRUNCATE]) {
                rotate(ROT_TRUNCATE);
                rotations[ROT_TRUNCATE]++;
                quiet_until = 0;
            } else if (now >= quiet_until) {
                quiet_until = 0;
            }
            quiet_poll = th_now_ms() + 200;
            if (!quiet_until)
                next_check = th_now_ms() + 300 + rand() % 1200;
        }
        if (now >= next_kill) {
            int what = rand() % 3;
            if ((what == 0 || what == 2) && agent_pid > 0) {
                kill9(&agent_pid);
                kills_agent++;
                agent_back = now + rand() % 600;
            }
            if ((what == 1 || what == 2) && agg_pid > 0) {
                kill9(&agg_pid);
                kills_agg++;
                agg_back = now + rand() % 1200;
            }
            next_kill = now + 400 + rand() % 1600;
        }
        if (agent_pid < 0 && th_now_ms() >= agent_back)
            start_agent();
        if (agg_pid < 0 && th_now_ms() >= agg_back)
            start_agg();
        th_sleep_ms(10 + rand() % 30);
    }
    if (agent_pid < 0)
        start_agent();
    if (agg_pid < 0)
        start_agg();

    uint64_t total = 0;
    for (int d = 0; d < NDEV; d++)
        total += written[d];
    long n = 0;
    for (int64_t until = th_now_ms() + 120000; th_now_ms() < until; th_sleep_ms(500)) {
        n = stored(-1, NULL);
        if (n >= (long)total)
            break;
    }
    uint32_t *counts = calloc((size_t)NDEV * PER_DEV, sizeof *counts);
    assert_non_null(counts);
    n = stored(-1, counts);
    uint64_t dup = 0, lost = 0;
    for (int d = 0; d < NDEV; d++) {
        for (uint64_t i = 0; i < written[d]; i++) {
            uint32_t c = counts[(uint64_t)d * PER_DEV + i];
            if (c == 0) {
                if (lost++ < 10)
                    fprintf(stderr, "lost: %s line %llu\n", dev_names[d], (unsigned long long)i);
            } else if (c > 1) {
                dup += c - 1;
            }
        }
    }
    fprintf(stderr,
            "crash test: lines written %llu (rename %llu, copytruncate %llu, truncate %llu); "
            "stored %ld; duplicates %llu; lost %llu; agent kills %u, aggregator kills %u; "
            "rotations %u/%u/%u\n",
            (unsigned long long)total, (unsigned long long)written[0],
            (unsigned long long)written[1], (unsigned long long)written[2], n,
            (unsigned long long)dup, (unsigned long long)lost, kills_agent, kills_agg,
            rotations[0], rotations[1], rotations[2]);
    if (lost || dup || n != (long)total) {
        char *log = th_read_file(agent_log, NULL);
        fprintf(stderr, "--- agent log (tail) ---\n%s\n", log ? log + (strlen(log) > 6000 ? strlen(log) - 6000 : 0) : "");
        free(log);
    }
    free(counts);
    assert_int_equal(lost, 0);
    assert_int_equal(dup, 0);
    assert_int_equal(n, (long)total);
    assert_true(kills_agent + kills_agg > 0);
    assert_true(rotations[ROT_RENAME] > 0 && rotations[ROT_COPYTRUNCATE] > 0);

    kill(agent_pid, SIGTERM);
    int status;
    waitpid(agent_pid, &status, 0);
    agent_pid = -1;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(th_stop(agg_pid), 0);
    agg_pid = -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(crash_kill9_agent_and_aggregator_while_rotating, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
