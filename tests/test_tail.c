/*
 * test_tail.c - the tailer in-process against a real spool: every rotation
 * case of tail.h (rename, rename out of the globs, copytruncate, truncation
 * in place, truncate-and-regrow, inode reuse, checkpoint past the end,
 * files vanished or rotated while the agent was down), restarts, partial
 * lines, parser state rebuilt by replay (ndes_iis #Fields, a Windows event
 * record spanning lines), {device} globs and new directories, auto format,
 * and the spool bound pausing reading.
 *
 * "Exactly once" is checked on what reaches the spool, per line marker
 * (th_omadm_line).  Where re-reading is expected and harmless (a
 * copytruncate copy, a restart from 0) the test says so.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool.h"
#include "sw_json.h"
#include "sw_wire.h"
#include "tail.h"
#include "th.h"

#define PER_DEV 1000

static char *dir;
static char logs[600], state[600];
static struct agent_spool *sp;
static struct agent_tail *tl;
static struct sw_buf got;               /* events drained from the spool, JSON Lines */
static uint32_t counts[4 * PER_DEV];

static int
setup(void **st)
{
    (void)st;
    dir = th_temp_dir();
    if (!dir)
        return -1;
    snprintf(logs, sizeof logs, "%s/logs", dir);
    snprintf(state, sizeof state, "%s/state", dir);
    mkdir(logs, 0755);
    mkdir(state, 0700);
    sw_buf_init(&got);
    sp = NULL;
    tl = NULL;
    return 0;
}

static int
teardown(void **st)
{
    char cmd[700];
    (void)st;
    agent_tail_close(tl);
    agent_spool_close(sp);
    tl = NULL;
    sp = NULL;
    sw_buf_fini(&got);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return -1;
    free(dir);
    return 0;
}

/* Starts the agent's state: spool and tailer on one glob. */
static void
start_fmt(const char *pattern, const char *format, uint64_t spool_max)
{
    static char pat[700];
    static const char *pats[1];
    struct agent_tail_conf cf;
    char why[600];

    snprintf(pat, sizeof pat, "%s/%s", logs, pattern);
    pats[0] = pat;
    assert_int_equal(agent_spool_open(&sp, state, spool_max, why, sizeof why), SW_OK);
    memset(&cf, 0, sizeof cf);
    cf.patterns = pats;
    cf.n_patterns = 1;
    cf.format = format ? agent_parser_find(format) : NULL;
    cf.orphan_grace_ms = 150;
    cf.no_inotify = 1;
    assert_int_equal(agent_tail_open(&tl, &cf, sp), SW_OK);
}

static void
start(const char *pattern)
{
    start_fmt(pattern, "android_omadm", 8 << 20);
}

/* As a kill -9 would: nothing more is committed. */
static void
stop(void)
{
    agent_tail_close(tl);
    agent_spool_close(sp);
    tl = NULL;
    sp = NULL;
}

static void
cycle(int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(agent_tail_cycle(tl, NULL), SW_OK);
}

/* Takes every spooled batch out (as acked), appending its events to got. */
static size_t
drain(void)
{
    struct agent_spool_rec rec;
    struct sw_buf b;
    size_t n = 0;

    sw_buf_init(&b);
    while (agent_spool_peek(sp, &b, &rec) == SW_OK) {
        struct sw_wire_decoded d;
        char why[200];
        assert_int_equal(sw_wire_decode_batch(b.data, b.len, 64 << 20, &d, why, sizeof why),
                         SW_OK);
        assert_int_equal(d.count, rec.events);
        for (size_t i = 0; i < d.count; i++) {
            struct sw_event ev;
            sw_wire_decoded_event(&d, i, &ev);
            sw_json_event(&got, &ev);
            sw_buf_putc(&got, '\n');
            n++;
        }
        sw_wire_decoded_fini(&d);
        assert_int_equal(agent_spool_ack(sp, rec.seq), SW_OK);
    }
    sw_buf_fini(&b);
    return n;
}

static void
recount(void)
{
    memset(counts, 0, sizeof counts);
    if (got.len)
        assert_int_equal(th_marker_counts(got.data, counts, 4, PER_DEV), 0);
}

static void
path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", logs, name);
}

/* Appends lines dev/from .. dev/to-1 to logs/name. */
static void
lines(const char *name, unsigned dev, uint64_t from, uint64_t to)
{
    char path[700], line[400];
    struct sw_buf b;
    sw_buf_init(&b);
    path_of(path, sizeof path, name);
    for (uint64_t n = from; n < to; n++) {
        size_t len = th_omadm_line(line, sizeof line, dev, n);
        sw_buf_append(&b, line, len);
        /* noise between events, as real logs have */
        sw_buf_puts(&b, "2018-02-27T05:18:44.9820000    INFO    Event     "
                        "com.microsoft.omadm.client.OMADMClient    1    1    chatter\n");
    }
    assert_int_equal(th_append(path, b.data, b.len), 0);
    sw_buf_fini(&b);
}

/* counts[dev][from..to) all equal want */
static void
expect(unsigned dev, uint64_t from, uint64_t to, uint32_t want)
{
    for (uint64_t n = from; n < to; n++) {
        if (counts[dev * PER_DEV + n] != want)
            fprintf(stderr, "marker %u/%llu: %u events, want %u\n", dev, (unsigned long long)n,
                    counts[dev * PER_DEV + n], want);
        assert_int_equal(counts[dev * PER_DEV + n], want);
    }
}

static size_t
total(void)
{
    size_t s = 0;
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        s += counts[i];
    return s;
}

static void
do_rename(const char *from, const char *to)
{
    char a[700], b[700];
    path_of(a, sizeof a, from);
    path_of(b, sizeof b, to);
    assert_int_equal(rename(a, b), 0);
}

static void
do_truncate(const char *name, off_t len)
{
    char a[700];
    path_of(a, sizeof a, name);
    assert_int_equal(truncate(a, len), 0);
}

static off_t
size_of(const char *name)
{
    char a[700];
    struct stat st;
    path_of(a, sizeof a, name);
    return stat(a, &st) == 0 ? st.st_size : -1;
}

static void
tail_reads_a_new_file_from_its_start_once(void **st)
{
    (void)st;
    lines("OMADM.log", 0, 0, 20);
    start("OMADM*.log");
    cycle(1);
    drain();
    cycle(3);
    drain();
    recount();
    expect(0, 0, 20, 1);
    lines("OMADM.log", 0, 20, 30);
    cycle(2);
    drain();
    recount();
    expect(0, 0, 30, 1);
    assert_int_equal(total(), 30);
}

static void
tail_restart_resumes_at_the_checkpoint(void **st)
{
    (void)st;
    lines("OMADM.log", 0, 0, 10);
    start("OMADM*.log");
    cycle(1);
    stop();
    lines("OMADM.log", 0, 10, 15);
    start("OMADM*.log");
    cycle(1);
    drain();
    recount();
    expect(0, 0, 15, 1);
    assert_int_equal(total(), 15);
}

static void
tail_rename_rotation_finishes_the_old_file_once(void **st)
{
    (void)st;
    lines("OMADM.log", 0, 0, 10);
    start("OMADM*.log");
    cycle(1);
    /* the writer logs more, then rotates; OMADM.1.log also matches the glob */
    lines("OMADM.log", 0, 10, 15);
    do_rename("OMADM.log", "OMADM.1.log");
    lines("OMADM.log", 0, 15, 20);
    cycle(2);
    /* again: .1 -> .2, new -> .1 */
    lines("OMADM.log", 0, 20, 22);
    do_rename("OMADM.1.log", "OMADM.2.log");
    do_rename("OMADM.log", "OMADM.1.log");
    lines("OMADM.log", 0, 22, 25);
    cycle(2);
    drain();
    recount();
    expect(0, 0, 25, 1);
    assert_int_equal(total(), 25);
    /* a restart finds every file at its checkpoint, whatever its name now */
    stop();
    start("OMADM*.log");
    cycle(2);
    drain();
    recount();
    assert_int_equal(total(), 25);
}

static void
tail_rename_out_of_the_glob_is_finished_then_forgotten(void **st)
{
    struct agent_ckpt_key *keys = NULL;
    size_t n = 0;

    (void)st;
    lines("OMADM.log", 0, 0, 5);
    start("OMADM*.log");
    cycle(1);
    lines("OMADM.log", 0, 5, 8);            /* not read yet */
    do_rename("OMADM.log", "OMADM.log.old");  /* leaves the glob */
    lines("OMADM.log", 0, 8, 10);
    cycle(1);
    lines("OMADM.log.old", 0, 10, 11);      /* a writer still on the old file */
    cycle(1);
    th_sleep_ms(200);
    cycle(2);
    drain();
    recount();
    expect(0, 0, 11, 1);
    assert_int_equal(agent_spool_ckpt_keys(sp, &keys, &n), SW_OK);
    assert_int_equal(n, 1);                 /* only the new OMADM.log */
    free(keys);
}

static void
tail_copytruncate_reads_the_copy_and_not_the_original_twice(void **st)
{
    char a[700], b[700];
    (void)st;
    lines("OMADM.log", 0, 0, 10);
    start("OMADM*.log");
    cycle(1);
    lines("OMADM.log", 0, 10, 12);          /* written before the copy, unread */
    /* logrotate copytruncate: copy, then truncate the original */
    path_of(a, sizeof a, "OMADM.log");
    path_of(b, sizeof b, "OMADM.1.log");
    char *text = th_read_file(a, NULL);
    assert_non_null(text);
    assert_int_equal(th_append(b, text, strlen(text)), 0);
    free(text);
    do_truncate("OMADM.log", 0);
    lines("OMADM.log", 0, 12, 15);
    cycle(3);
    drain();
    recount();
    /* 0..9: read from the original, and again from the copy (a new file):
       the aggregator keeps one.  10..11 only ever were in the copy. */
    expect(0, 0, 10, 2);
    expect(0, 10, 15, 1);
    /* nothing more, however often we look */
    cycle(3);
    assert_int_equal(drain(), 0);
    lines("OMADM.log", 0, 15, 17);
    cycle(2);
    drain();
    recount();
    expect(0, 15, 17, 1);
}

static void
tail_truncation_in_place_restarts_at_zero(void **st)
{
    (void)st;
    lines("OMADM.log", 0, 0, 10);
    start("OMADM*.log");
    cycle(1);
    do_truncate("OMADM.log", 0);
    lines("OMADM.log", 0, 10, 13);          /* shorter than what was read */
    cycle(2);
    drain();
    recount();
    expect(0, 0, 13, 1);
    /* truncated and regrown past the old offset between two looks: the
       fingerprint of the first bytes tells */
    off_t before = size_of("OMADM.log");
    do_truncate("OMADM.log", 0);
    lines("OMADM.log", 0, 100, 120);
    assert_true(size_of("OMADM.log") > before);
    cycle(2);
    drain();
    recount();
    expect(0, 0, 13, 1);
    expect(0, 100, 120, 1);
}

static void
tail_rewritten_inode_with_a_stale_checkpoint_is_a_new_file(void **st)
{
    char a[700];
    (void)st;
    lines("OMADM.log", 0, 0, 10);
    start("OMADM*.log");
    cycle(1);
    stop();
    /* while the agent is down the file is deleted and a new one written;
       here on the same inode for certain (rewritten in place) */
    path_of(a, sizeof a, "OMADM.log");
    do_truncate("OMADM.log", 0);
    lines("OMADM.log", 1, 0, 30);
    start("OMADM*.log");
    cycle(1);
    drain();
    recount();
    expect(0, 0, 10, 1);
    expect(1, 0, 30, 1);                    /* from 0, not from the old offset */
    /* and a real unlink + create, which may or may not reuse the inode */
    stop();
    unlink(a);
    lines("OMADM.log", 2, 0, 7);
    start("OMADM*.log");
    cycle(1);
    drain();
    recount();
    expect(2, 0, 7, 1);
}

static void
tail_checkpoint_past_the_end_restarts_at_zero(void **st)
{
    (void)st;
    lines("OMADM.log", 0, 0, 10);
    start("OMADM*.log");
    cycle(1);
    drain();
    stop();
    /* cut to its first 4 lines (8 physical lines) while the agent is down */
    off_t keep = size_of("OMADM.log") * 4 / 10;
    do_truncate("OMADM.log", keep);
    start("OMADM*.log");
    cycle(1);
    drain();
    recount();
    expect(0, 0, 4, 2);                     /* read again from 0: harmless */
    expect(0, 4, 10, 1);
    lines("OMADM.log", 0, 10, 12);
    cycle(1);
    drain();
    recount();
    expect(0, 10, 12, 1);
}

static void
tail_files_vanished_while_down_lose_their_checkpoints(void **st)
{
    struct agent_ckpt_key *keys = NULL;
    char a[700];
    size_t n = 0;

    (void)st;
    lines("OMADM.log", 0, 0, 3);
    lines("OMADM.1.log", 1, 0, 3);
    start("OMADM*.log");
    cycle(1);
    stop();
    path_of(a, sizeof a, "OMADM.1.log");
    unlink(a);
    start("OMADM*.log");
    cycle(1);
    assert_int_equal(agent_spool_ckpt_keys(sp, &keys, &n), SW_OK);
    assert_int_equal(n, 1);
    free(keys);
    drain();
    recount();
    expect(0, 0, 3, 1);
    expect(1, 0, 3, 1);
}

static void
tail_rotation_while_down_is_found_by_identity(void **st)
{
    (void)st;
    lines("OMADM.log", 0, 0, 10);
    start("OMADM*.log");
    cycle(1);
    stop();
    lines("OMADM.log", 0, 10, 14);
    do_rename("OMADM.log", "OMADM.1.log");
    lines("OMADM.log", 0, 14, 20);
    start("OMADM*.log");
    cycle(1);
    drain();
    recount();
    expect(0, 0, 20, 1);
    assert_int_equal(total(), 20);
}

static void
tail_partial_line_waits_for_its_newline(void **st)
{
    char path[700], line[400];
    (void)st;
    path_of(path, sizeof path, "OMADM.log");
    size_t len = th_omadm_line(line, sizeof line, 0, 1);
    assert_int_equal(th_append(path, line, 100), 0);
    start("OMADM*.log");
    cycle(2);
    assert_int_equal(drain(), 0);
    stop();                                 /* and across a restart */
    start("OMADM*.log");
    cycle(1);
    assert_int_equal(th_append(path, line + 100, len - 100), 0);
    cycle(1);
    drain();
    recount();
    expect(0, 1, 2, 1);
    assert_int_equal(total(), 1);
}

static void
tail_device_comes_from_the_glob_and_new_dirs_are_found(void **st)
{
    char d[700];
    (void)st;
    snprintf(d, sizeof d, "%s/alpha", logs);
    mkdir(d, 0755);
    lines("alpha/OMADM.log", 0, 0, 3);
    start("{device}/OMADM*.log");
    cycle(1);
    snprintf(d, sizeof d, "%s/beta", logs);
    mkdir(d, 0755);
    lines("beta/OMADM.log", 1, 0, 4);
    cycle(1);
    drain();
    recount();
    expect(0, 0, 3, 1);
    expect(1, 0, 4, 1);
    assert_non_null(strstr(got.data, "\"device\":\"alpha\""));
    assert_non_null(strstr(got.data, "\"device\":\"beta\""));
}

static void
tail_auto_format_decides_per_file(void **st)
{
    char path[700];
    (void)st;
    lines("a.log", 0, 0, 5);
    path_of(path, sizeof path, "junk.log");
    assert_int_equal(th_append(path, "nothing to see here\n", 20), 0);
    start_fmt("*.log", NULL, 8 << 20);
    cycle(2);
    drain();
    recount();
    expect(0, 0, 5, 1);
    assert_int_equal(total(), 5);
}

/*
 * ndes_iis needs the latest #Fields line: after a restart the parser state
 * is rebuilt by replaying up to the checkpoint, so rows still parse.
 */
static void
tail_replay_rebuilds_parser_state_after_restart(void **st)
{
    char path[700];
    static const char head[] =
        "#Fields: time date sc-status sc-substatus sc-win32-status cs-method cs-uri-stem "
        "cs-uri-query time-taken\n"
        "20:22:16 2017-08-08 500 0 1346 GET /certsrv/mscep/mscep.dll "
        "operation=GetCACert&message=X 31\n";
    static const char more[] =
        "20:22:17 2017-08-08 500 0 1346 GET /certsrv/mscep/mscep.dll "
        "operation=GetCACaps&message=X 31\n";
    (void)st;
    path_of(path, sizeof path, "u_ex170808.log");
    assert_int_equal(th_append(path, head, sizeof head - 1), 0);
    start_fmt("u_ex*.log", "ndes_iis", 8 << 20);
    cycle(1);
    stop();
    assert_int_equal(th_append(path, more, sizeof more - 1), 0);
    start_fmt("u_ex*.log", "ndes_iis", 8 << 20);
    cycle(1);
    drain();
    assert_int_equal(th_count_lines(got.data), 2);
    assert_non_null(strstr(got.data, "GetCACert 500.0 win32=1346"));
    assert_non_null(strstr(got.data, "GetCACaps 500.0 win32=1346"));
}

/*
 * A Windows event record spanning lines, cut by a crash in its middle:
 * the checkpoint stays at the record's first line (hold_offset), so the
 * record is parsed whole after the restart, once.
 */
static void
tail_never_checkpoints_past_a_held_record(void **st)
{
    char src[700], path[700];
    (void)st;
    snprintf(src, sizeof src, "%s/tests/data/samples/windows_event_xml/DeviceManagement-Admin.xml",
             TH_SOURCE_DIR);
    char *text = th_read_file(src, NULL);
    assert_non_null(text);
    /* one element per line: every record spans many lines */
    struct sw_buf split;
    sw_buf_init(&split);
    for (const char *p = text; *p; p++) {
        sw_buf_putc(&split, *p);
        if (p[0] == '>' && p[1] == '<')
            sw_buf_putc(&split, '\n');
    }
    free(text);
    /* what a one-shot parse gives */
    struct sw_buf once;
    sw_buf_init(&once);
    assert_int_equal(th_parse_string("windows_event_xml", split.data, split.len, NULL, &once,
                                     NULL), SW_OK);
    size_t want = th_count_lines(once.data);
    assert_true(want >= 5);

    path_of(path, sizeof path, "events.xml");
    size_t cut = split.len / 2;
    while (split.data[cut - 1] != '\n')
        cut--;
    assert_int_equal(th_append(path, split.data, cut), 0);
    start_fmt("*.xml", "windows_event_xml", 8 << 20);
    cycle(1);
    stop();                                 /* killed with a record half read */
    assert_int_equal(th_append(path, split.data + cut, split.len - cut), 0);
    start_fmt("*.xml", "windows_event_xml", 8 << 20);
    cycle(1);
    drain();
    assert_int_equal(th_count_lines(got.data), want);
    assert_int_equal(th_jsonl_equal(got.data, once.data), 0);
    sw_buf_fini(&split);
    sw_buf_fini(&once);
}

static void
tail_full_spool_pauses_reading_and_loses_nothing(void **st)
{
    struct agent_tail_status ts;
    (void)st;
    lines("OMADM.log", 0, 0, PER_DEV);      /* ~430 KiB */
    start_fmt("OMADM*.log", "android_omadm", AGENT_SPOOL_MIN_BYTES);
    int paused = 0;
    for (int i = 0; i < 400; i++) {
        assert_int_equal(agent_tail_cycle(tl, &ts), SW_OK);
        assert_true(agent_spool_bytes(sp) <= AGENT_SPOOL_MIN_BYTES);
        if (ts.paused) {
            paused++;
            /* the bound is reached, not just approached */
            assert_true(agent_spool_bytes(sp) + AGENT_SPOOL_MIN_BYTES / 8 >
                        AGENT_SPOOL_MIN_BYTES);
            drain();                        /* the aggregator came back */
        }
        if (i > 5 && !ts.paused && !ts.more) {
            drain();
            recount();
            if (total() == PER_DEV)
                break;
        }
    }
    assert_true(paused > 0);
    drain();
    recount();
    expect(0, 0, PER_DEV, 1);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(tail_reads_a_new_file_from_its_start_once),
        T(tail_restart_resumes_at_the_checkpoint),
        T(tail_rename_rotation_finishes_the_old_file_once),
        T(tail_rename_out_of_the_glob_is_finished_then_forgotten),
        T(tail_copytruncate_reads_the_copy_and_not_the_original_twice),
        T(tail_truncation_in_place_restarts_at_zero),
        T(tail_rewritten_inode_with_a_stale_checkpoint_is_a_new_file),
        T(tail_checkpoint_past_the_end_restarts_at_zero),
        T(tail_files_vanished_while_down_lose_their_checkpoints),
        T(tail_rotation_while_down_is_found_by_identity),
        T(tail_partial_line_waits_for_its_newline),
        T(tail_device_comes_from_the_glob_and_new_dirs_are_found),
        T(tail_auto_format_decides_per_file),
        T(tail_replay_rebuilds_parser_state_after_restart),
        T(tail_never_checkpoints_past_a_held_record),
        T(tail_full_spool_pauses_reading_and_loses_nothing),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
