/*
 * test_spool.c - the agent's state database: spool records (append, peek,
 * ack, replay after reopen, the bound), checkpoints committed with them,
 * and what survives a crash: a torn WAL tail, a corrupt record, a
 * corrupt or truncated database file, a second agent on the same dir.
 * Also the file identity checks of checkpoint.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <glob.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "spool.h"
#include "th.h"

static char *dir;

static int
tmpdir_setup(void **state)
{
    (void)state;
    dir = th_temp_dir();
    return dir ? 0 : -1;
}

static int
tmpdir_teardown(void **state)
{
    char cmd[600];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return -1;
    free(dir);
    return 0;
}

static struct agent_spool *
open_spool(uint64_t max)
{
    struct agent_spool *sp = NULL;
    char why[600];
    sw_err e = agent_spool_open(&sp, dir, max, why, sizeof why);
    if (e != SW_OK)
        fprintf(stderr, "open: %s\n", why);
    assert_int_equal(e, SW_OK);
    return sp;
}

static void
fill(char *buf, size_t n, char c)
{
    memset(buf, c, n);
}

static struct agent_ckpt
ckpt(uint64_t ino, uint64_t offset)
{
    struct agent_ckpt c;
    memset(&c, 0, sizeof c);
    c.key.dev = 7;
    c.key.ino = ino;
    c.fp_len = 10;
    c.fp_hash = 0x1234567890abcdefULL ^ ino;
    c.offset = offset;
    c.date = 20240314;
    c.enc = 0;
    snprintf(c.parser, sizeof c.parser, "android_omadm");
    snprintf(c.device, sizeof c.device, "dev-%llu", (unsigned long long)ino);
    c.path = "/some/path";
    return c;
}

static void
spool_append_peek_ack_roundtrips(void **state)
{
    struct agent_spool *sp = open_spool(1 << 20);
    struct agent_spool_rec rec;
    struct sw_buf b;
    char data[1000];

    (void)state;
    sw_buf_init(&b);
    assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_ENOENT);
    fill(data, sizeof data, 'a');
    assert_int_equal(agent_spool_append(sp, 11, 5, data, sizeof data), SW_OK);
    fill(data, sizeof data, 'b');
    assert_int_equal(agent_spool_append(sp, 12, 6, data, 500), SW_OK);
    assert_int_equal(agent_spool_bytes(sp), 1500);
    assert_int_equal(agent_spool_count(sp), 2);

    assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_OK);
    assert_int_equal(rec.batch_id, 11);
    assert_int_equal(rec.events, 5);
    assert_int_equal(b.len, 1000);
    assert_int_equal(b.data[999], 'a');
    /* peeking again gives the same record: only an ack removes it */
    assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_OK);
    assert_int_equal(rec.batch_id, 11);
    assert_int_equal(agent_spool_ack(sp, rec.seq), SW_OK);
    assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_OK);
    assert_int_equal(rec.batch_id, 12);
    assert_int_equal(b.len, 500);
    assert_int_equal(agent_spool_ack(sp, rec.seq), SW_OK);
    assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_ENOENT);
    assert_int_equal(agent_spool_bytes(sp), 0);
    agent_spool_close(sp);
    sw_buf_fini(&b);
}

static void
spool_replays_unacked_after_reopen(void **state)
{
    struct agent_spool *sp = open_spool(1 << 20);
    struct agent_spool_rec rec;
    struct sw_buf b;
    char data[300];

    (void)state;
    sw_buf_init(&b);
    for (int i = 0; i < 5; i++) {
        fill(data, sizeof data, (char)('0' + i));
        assert_int_equal(agent_spool_append(sp, 100 + i, 1, data, sizeof data), SW_OK);
    }
    assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_OK);
    assert_int_equal(agent_spool_ack(sp, rec.seq), SW_OK);
    agent_spool_close(sp);

    sp = open_spool(1 << 20);
    assert_int_equal(agent_spool_count(sp), 4);
    assert_int_equal(agent_spool_bytes(sp), 1200);
    for (int i = 1; i < 5; i++) {
        assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_OK);
        assert_int_equal(rec.batch_id, 100 + i);
        assert_int_equal(b.data[0], '0' + i);
        assert_int_equal(agent_spool_ack(sp, rec.seq), SW_OK);
    }
    assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_ENOENT);
    agent_spool_close(sp);
    sw_buf_fini(&b);
}

static void
spool_full_returns_efull_and_writes_nothing(void **state)
{
    struct agent_spool *sp = open_spool(AGENT_SPOOL_MIN_BYTES);
    struct agent_spool_rec rec;
    struct agent_ckpt c = ckpt(1, 99);
    struct agent_ckpt got;
    struct agent_spool_batch batch;
    struct sw_buf b;
    static char data[AGENT_SPOOL_MIN_BYTES];
    int n = 0;

    (void)state;
    sw_buf_init(&b);
    fill(data, sizeof data, 'x');
    while (agent_spool_append(sp, (uint64_t)n, 1, data, 10000) == SW_OK)
        n++;
    assert_int_equal(n, AGENT_SPOOL_MIN_BYTES / 10000);
    assert_true(agent_spool_bytes(sp) <= AGENT_SPOOL_MIN_BYTES);
    /* a full spool refuses the batch and the offsets that go with it */
    batch = (struct agent_spool_batch){ 999, 1, data, 10000 };
    assert_int_equal(agent_spool_commit(sp, &batch, &c, 1, NULL, 0), SW_EFULL);
    assert_int_equal(agent_spool_ckpt_get(sp, &c.key, &got), SW_ENOENT);
    assert_int_equal(agent_spool_count(sp), (uint64_t)n);
    /* offsets alone still commit (lines without events) */
    assert_int_equal(agent_spool_commit(sp, NULL, &c, 1, NULL, 0), SW_OK);
    assert_int_equal(agent_spool_ckpt_get(sp, &c.key, &got), SW_OK);
    /* an ack makes room */
    assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_OK);
    assert_int_equal(agent_spool_ack(sp, rec.seq), SW_OK);
    assert_int_equal(agent_spool_commit(sp, &batch, &c, 1, NULL, 0), SW_OK);
    agent_spool_close(sp);
    sw_buf_fini(&b);
}

static void
spool_commits_batch_and_checkpoints_together(void **state)
{
    struct agent_spool *sp = open_spool(1 << 20);
    struct agent_ckpt c[3] = { ckpt(1, 100), ckpt(2, 200), ckpt(3, 300) };
    struct agent_ckpt got;
    struct agent_ckpt_key *keys = NULL;
    struct agent_spool_batch batch = { 5, 2, "payload", 7 };
    size_t n = 0;

    (void)state;
    assert_int_equal(agent_spool_commit(sp, &batch, c, 3, NULL, 0), SW_OK);
    agent_spool_close(sp);
    sp = open_spool(1 << 20);
    assert_int_equal(agent_spool_count(sp), 1);
    assert_int_equal(agent_spool_ckpt_get(sp, &c[1].key, &got), SW_OK);
    assert_int_equal(got.offset, 200);
    assert_int_equal(got.fp_len, 10);
    assert_true(got.fp_hash == c[1].fp_hash);
    assert_int_equal(got.date, 20240314);
    assert_string_equal(got.parser, "android_omadm");
    assert_string_equal(got.device, "dev-2");
    assert_null(got.path);
    /* update one, delete one */
    c[0].offset = 150;
    assert_int_equal(agent_spool_commit(sp, NULL, &c[0], 1, &c[2].key, 1), SW_OK);
    assert_int_equal(agent_spool_ckpt_get(sp, &c[0].key, &got), SW_OK);
    assert_int_equal(got.offset, 150);
    assert_int_equal(agent_spool_ckpt_get(sp, &c[2].key, &got), SW_ENOENT);
    assert_int_equal(agent_spool_ckpt_keys(sp, &keys, &n), SW_OK);
    assert_int_equal(n, 2);
    free(keys);
    agent_spool_close(sp);
}

static void
spool_second_agent_on_same_dir_is_refused(void **state)
{
    struct agent_spool *a = open_spool(1 << 20), *b = NULL;
    char why[600];

    (void)state;
    assert_int_equal(agent_spool_open(&b, dir, 1 << 20, why, sizeof why), SW_EINVAL);
    assert_null(b);
    assert_non_null(strstr(why, "another agent"));
    agent_spool_close(a);
    assert_int_equal(agent_spool_open(&b, dir, 1 << 20, why, sizeof why), SW_OK);
    agent_spool_close(b);
    /* a bound below the minimum is refused */
    assert_int_equal(agent_spool_open(&b, dir, 1000, why, sizeof why), SW_EINVAL);
}

/* Path of a file in the state dir. */
static void
state_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static off_t
file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/*
 * A crash in the middle of writing the last commit: a child commits A
 * (batch + checkpoint) and B, then dies without closing (the WAL keeps
 * both); B's last WAL frame is then torn.  The reopened spool holds A and
 * its checkpoint, and neither B nor B's checkpoint: B's lines would be
 * read again.
 */
static void
spool_torn_wal_tail_is_rolled_back_with_its_offsets(void **state)
{
    char wal[700];
    struct agent_ckpt ca = ckpt(1, 1000), cb = ckpt(1, 2000), got;
    struct agent_spool_rec rec;
    struct sw_buf b;
    off_t before, after;
    int status;

    (void)state;
    state_path(wal, sizeof wal, AGENT_SPOOL_DB "-wal");
    {   /* the database exists, checkpointed, before the crash */
        struct agent_spool *sp = open_spool(1 << 20);
        agent_spool_close(sp);
    }
    pid_t pid = fork();
    if (pid == 0) {
        struct agent_spool *sp = NULL;
        char why[600], data[3000];
        struct agent_spool_batch ba = { 1, 1, data, sizeof data };
        struct agent_spool_batch bb = { 2, 1, data, sizeof data };
        memset(data, 'q', sizeof data);
        if (agent_spool_open(&sp, dir, 1 << 20, why, sizeof why) != SW_OK ||
            agent_spool_commit(sp, &ba, &ca, 1, NULL, 0) != SW_OK)
            _exit(1);
        before = file_size(wal);
        if (agent_spool_commit(sp, &bb, &cb, 1, NULL, 0) != SW_OK)
            _exit(1);
        _exit(before > 0 ? 0 : 2);      /* no close: as if killed */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    after = file_size(wal);
    assert_true(after > 4096);
    /* tear the last frame: a power cut in the middle of B's commit */
    assert_int_equal(truncate(wal, after - 100), 0);

    sw_buf_init(&b);
    struct agent_spool *sp = open_spool(1 << 20);
    assert_int_equal(agent_spool_count(sp), 1);
    assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_OK);
    assert_int_equal(rec.batch_id, 1);
    assert_int_equal(b.len, 3000);
    assert_int_equal(agent_spool_ckpt_get(sp, &ca.key, &got), SW_OK);
    assert_int_equal(got.offset, 1000);     /* A's offset, not B's */
    agent_spool_close(sp);
    sw_buf_fini(&b);
}

/* Overwrites the payload of record seq behind the spool's back. */
static void
corrupt_record(uint64_t seq)
{
    char path[700], sql[200];
    sqlite3 *db;
    state_path(path, sizeof path, AGENT_SPOOL_DB);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    snprintf(sql, sizeof sql, "UPDATE spool SET data = zeroblob(length(data)) WHERE seq = %llu",
             (unsigned long long)seq);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void
spool_corrupt_record_is_dropped_not_sent(void **state)
{
    struct agent_spool *sp = open_spool(1 << 20);
    struct agent_spool_rec rec;
    struct sw_buf b;
    char data[200];

    (void)state;
    sw_buf_init(&b);
    fill(data, sizeof data, 'z');
    for (int i = 0; i < 3; i++)
        assert_int_equal(agent_spool_append(sp, (uint64_t)(50 + i), 1, data, sizeof data), SW_OK);
    assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_OK);
    uint64_t first = rec.seq;
    agent_spool_close(sp);
    corrupt_record(first + 1);              /* the middle one */

    sp = open_spool(1 << 20);
    assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_OK);
    assert_int_equal(rec.batch_id, 50);
    assert_int_equal(agent_spool_ack(sp, rec.seq), SW_OK);
    assert_int_equal(agent_spool_peek(sp, &b, &rec), SW_OK);
    assert_int_equal(rec.batch_id, 52);     /* 51 failed its checksum */
    assert_int_equal(b.data[0], 'z');
    assert_int_equal(agent_spool_count(sp), 1);
    assert_int_equal(agent_spool_bytes(sp), 200);
    agent_spool_close(sp);
    sw_buf_fini(&b);
}

static size_t
count_aside(void)
{
    char pat[700];
    glob_t g;
    size_t n = 0;
    snprintf(pat, sizeof pat, "%s/%s.corrupt-*", dir, AGENT_SPOOL_DB);
    if (glob(pat, 0, NULL, &g) == 0)
        n = g.gl_pathc;
    globfree(&g);
    return n;
}

static void
spool_garbage_database_is_set_aside_with_a_warning(void **state)
{
    char path[700], junk[8192];
    struct agent_ckpt c = ckpt(1, 10), got;

    (void)state;
    state_path(path, sizeof path, AGENT_SPOOL_DB);
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 131 + 7);
    assert_int_equal(th_append(path, junk, sizeof junk), 0);
    struct agent_spool *sp = open_spool(1 << 20);
    assert_int_equal(count_aside(), 1);
    assert_int_equal(agent_spool_count(sp), 0);
    assert_int_equal(agent_spool_ckpt_get(sp, &c.key, &got), SW_ENOENT);
    assert_int_equal(agent_spool_commit(sp, NULL, &c, 1, NULL, 0), SW_OK);
    agent_spool_close(sp);
    sp = open_spool(1 << 20);
    assert_int_equal(agent_spool_ckpt_get(sp, &c.key, &got), SW_OK);
    assert_int_equal(count_aside(), 1);
    agent_spool_close(sp);
}

static void
spool_truncated_database_is_set_aside(void **state)
{
    char path[700];
    static char data[200000];
    struct agent_ckpt c = ckpt(1, 10), got;

    (void)state;
    struct agent_spool *sp = open_spool(8 << 20);
    fill(data, sizeof data, 'd');
    for (int i = 0; i < 10; i++)
        assert_int_equal(agent_spool_append(sp, (uint64_t)i, 1, data, sizeof data), SW_OK);
    assert_int_equal(agent_spool_commit(sp, NULL, &c, 1, NULL, 0), SW_OK);
    agent_spool_close(sp);
    state_path(path, sizeof path, AGENT_SPOOL_DB);
    assert_true(file_size(path) > 1000000);
    assert_int_equal(truncate(path, file_size(path) / 2), 0);

    sp = open_spool(8 << 20);               /* never a crash: a fresh start */
    assert_int_equal(count_aside(), 1);
    assert_int_equal(agent_spool_count(sp), 0);
    assert_int_equal(agent_spool_ckpt_get(sp, &c.key, &got), SW_ENOENT);
    agent_spool_close(sp);
}

/* ---- checkpoint.c: identity ---- */

static int
temp_file(const char *content, size_t len)
{
    char path[700];
    snprintf(path, sizeof path, "%s/f-%zu", dir, len);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    return fd;
}

static void
ckpt_verdicts_for_same_truncated_and_other(void **state)
{
    char text[1000];
    struct agent_ckpt c;
    sw_err e;

    (void)state;
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + i % 26);
    int fd = temp_file(text, sizeof text);
    memset(&c, 0, sizeof c);
    assert_int_equal(agent_ckpt_fingerprint(&c, fd, sizeof text), SW_OK);
    assert_int_equal(c.fp_len, AGENT_FP_MAX);
    c.offset = 600;
    assert_int_equal(agent_ckpt_check(&c, fd, 1000, &e), AGENT_CKPT_SAME);
    assert_int_equal(e, SW_OK);
    /* the checkpoint points past the end */
    assert_int_equal(agent_ckpt_check(&c, fd, 500, &e), AGENT_CKPT_TRUNCATED);
    /* shorter than the fingerprint */
    assert_int_equal(agent_ckpt_check(&c, fd, 100, &e), AGENT_CKPT_TRUNCATED);
    /* other content under the same inode */
    text[10] = '#';
    assert_int_equal(pwrite(fd, text, sizeof text, 0), (ssize_t)sizeof text);
    assert_int_equal(agent_ckpt_check(&c, fd, 1000, &e), AGENT_CKPT_OTHER);
    /* a change past the fingerprint is not seen by it */
    text[10] = 'k';
    text[900] = '#';
    assert_int_equal(pwrite(fd, text, sizeof text, 0), (ssize_t)sizeof text);
    assert_int_equal(agent_ckpt_check(&c, fd, 1000, &e), AGENT_CKPT_SAME);
    close(fd);
}

static void
ckpt_short_fingerprint_grows_with_the_file(void **state)
{
    char text[600];
    struct agent_ckpt c;
    sw_err e;

    (void)state;
    memset(text, 'x', sizeof text);
    int fd = temp_file(text, 40);
    memset(&c, 0, sizeof c);
    assert_int_equal(agent_ckpt_fingerprint(&c, fd, 40), SW_OK);
    assert_int_equal(c.fp_len, 40);
    c.offset = 40;
    assert_int_equal(pwrite(fd, text, sizeof text, 0), (ssize_t)sizeof text);
    /* an append is the same file, not a new one */
    assert_int_equal(agent_ckpt_check(&c, fd, sizeof text, &e), AGENT_CKPT_SAME);
    assert_true(agent_ckpt_extend(&c, fd, sizeof text));
    assert_int_equal(c.fp_len, AGENT_FP_MAX);
    assert_false(agent_ckpt_extend(&c, fd, sizeof text));
    assert_int_equal(agent_ckpt_check(&c, fd, sizeof text, &e), AGENT_CKPT_SAME);
    /* an empty file matches an empty fingerprint */
    memset(&c, 0, sizeof c);
    assert_int_equal(agent_ckpt_fingerprint(&c, fd, 0), SW_OK);
    assert_int_equal(c.fp_len, 0);
    assert_int_equal(agent_ckpt_check(&c, fd, 0, &e), AGENT_CKPT_SAME);
    close(fd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(spool_append_peek_ack_roundtrips, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(spool_replays_unacked_after_reopen, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(spool_full_returns_efull_and_writes_nothing,
                                        tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(spool_commits_batch_and_checkpoints_together,
                                        tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(spool_second_agent_on_same_dir_is_refused,
                                        tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(spool_torn_wal_tail_is_rolled_back_with_its_offsets,
                                        tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(spool_corrupt_record_is_dropped_not_sent, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(spool_garbage_database_is_set_aside_with_a_warning,
                                        tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(spool_truncated_database_is_set_aside, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(ckpt_verdicts_for_same_truncated_and_other,
                                        tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(ckpt_short_fingerprint_grows_with_the_file,
                                        tmpdir_setup, tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
