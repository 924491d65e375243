/*
 * test_e2e.c - the real binaries on loopback: the three programs' usage
 * contract, the pipe agent -> aggregator -> CLI against the Android
 * samples (and resending them), concurrent senders, hostile clients,
 * listener roles, and a clean stop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "scepwatch.pb-c.h"
#include "sw_rpc.h"
#include "th.h"

static char agent_bin[512], agg_bin[512], cli_bin[512];
static char *dir;

static int
setup(void **state)
{
    (void)state;
    snprintf(agent_bin, sizeof agent_bin, "%s/scepwatch-agent", TH_BIN_DIR);
    snprintf(agg_bin, sizeof agg_bin, "%s/scepwatch-aggregator", TH_BIN_DIR);
    snprintf(cli_bin, sizeof cli_bin, "%s/scepwatch", TH_BIN_DIR);
    dir = th_temp_dir();
    signal(SIGPIPE, SIG_IGN);
    return dir ? 0 : -1;
}

static int
teardown(void **state)
{
    char cmd[600];
    (void)state;
    th_kill_all();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return -1;
    free(dir);
    return 0;
}

/* A unique ipc:// address and db path per test. */
static void
addr(const char *name, char *url, size_t ucap, char *db, size_t dcap)
{
    snprintf(url, ucap, "ipc://%s/%s.sock", dir, name);
    snprintf(db, dcap, "%s/%s.db", dir, name);
}

static void
test_usage_contract(void **state)
{
    const char *bins[] = { agent_bin, agg_bin, cli_bin };
    struct sw_buf out, err;

    (void)state;
    sw_buf_init(&out);
    sw_buf_init(&err);
    for (int i = 0; i < 3; i++) {
        char *help[] = { (char *)bins[i], "--help", NULL };
        char *bad[] = { (char *)bins[i], "--no-such-flag", NULL };
        sw_buf_reset(&out);
        assert_int_equal(th_run(help, &out, NULL), 0);
        assert_non_null(strstr(out.data, "usage:"));
        sw_buf_reset(&err);
        assert_int_equal(th_run(bad, NULL, &err), 2);
        assert_non_null(strstr(err.data, "--help"));
    }
    /* the CLI where nothing listens: exit 1 with a message that says so */
    char *cli[] = { cli_bin, "--aggregator", "tcp://127.0.0.1:1", "summary", NULL };
    sw_buf_reset(&err);
    assert_int_equal(th_run(cli, NULL, &err), 1);
    assert_non_null(strstr(err.data, "cannot reach the aggregator"));
    /* send where nothing listens: exit 1 */
    char sample[600];
    snprintf(sample, sizeof sample, "%s/tests/data/samples/android_omadm/OMADM.log", TH_SOURCE_DIR);
    char *snd[] = { agent_bin, "send", "--aggregator", "tcp://127.0.0.1:1", "--retries", "1",
                    sample, NULL };
    sw_buf_reset(&err);
    assert_int_equal(th_run(snd, NULL, &err), 1);
    assert_non_null(strstr(err.data, "cannot reach"));
    /* aggregator without --db, and with an unwritable db */
    char *nodb[] = { agg_bin, "--listen", "tcp://127.0.0.1:1", NULL };
    assert_int_equal(th_run(nodb, NULL, NULL), 2);
    char *baddb[] = { agg_bin, "--db", "/nonexistent/x.db", "--listen", "tcp://127.0.0.1:1", NULL };
    sw_buf_reset(&err);
    assert_int_equal(th_run(baddb, NULL, &err), 1);
    assert_non_null(strstr(err.data, "cannot open database"));
    sw_buf_fini(&out);
    sw_buf_fini(&err);
}

/* The expected events of a sample file, with "device" added. */
static void
expected_with_device(const char *name, const char *device, struct sw_buf *out)
{
    char path[700];
    snprintf(path, sizeof path, "%s/tests/data/samples/android_omadm/%s.expected.jsonl",
             TH_SOURCE_DIR, name);
    char *text = th_read_file(path, NULL);
    assert_non_null(text);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        assert_non_null(o);
        json_object_set_new(o, "device", json_string(device));
        char *s = json_dumps(o, JSON_COMPACT);
        sw_buf_puts(out, s);
        sw_buf_putc(out, '\n');
        free(s);
        json_decref(o);
    }
    free(text);
}

static void
test_pipe_android_samples(void **state)
{
    char url[300], db[300], f1[600], f2[600];
    struct sw_buf out, err, expected;
    pid_t agg;

    (void)state;
    addr("pipe", url, sizeof url, db, sizeof db);
    snprintf(f1, sizeof f1, "%s/tests/data/samples/android_omadm/OMADM.log", TH_SOURCE_DIR);
    snprintf(f2, sizeof f2, "%s/tests/data/samples/android_omadm/OMADM-scenarios.log", TH_SOURCE_DIR);
    agg = th_start_aggregator(db, url, NULL);
    assert_true(agg > 0);
    sw_buf_init(&out);
    sw_buf_init(&err);
    sw_buf_init(&expected);

    char *snd[] = { agent_bin, "send", "--aggregator", url, "--format", "android_omadm",
                    "--device", "X", f1, f2, NULL };
    assert_int_equal(th_run(snd, NULL, &err), 0);
    assert_non_null(strstr(err.data, "45 stored, 0 already stored"));

    char *ev[] = { cli_bin, "--aggregator", url, "events", "--format", "jsonl", NULL };
    assert_int_equal(th_run(ev, &out, NULL), 0);
    expected_with_device("OMADM.log", "X", &expected);
    expected_with_device("OMADM-scenarios.log", "X", &expected);
    assert_int_equal(th_jsonl_equal(out.data, expected.data), 0);
    /* every event says where it was read and who sent it */
    assert_non_null(strstr(out.data, "\"file\":"));
    assert_non_null(strstr(out.data, "\"offset\":"));
    assert_non_null(strstr(out.data, "\"host\":"));

    /* again: nothing new is stored */
    sw_buf_reset(&err);
    assert_int_equal(th_run(snd, NULL, &err), 0);
    assert_non_null(strstr(err.data, "0 stored, 45 already stored"));
    sw_buf_reset(&out);
    assert_int_equal(th_run(ev, &out, NULL), 0);
    assert_int_equal(th_count_lines(out.data), 45);

    /* small batches and paging give the same answer */
    char *snd2[] = { agent_bin, "send", "--aggregator", url, "--batch-events", "7",
                     "--device", "X", f1, f2, NULL };
    sw_buf_reset(&err);
    assert_int_equal(th_run(snd2, NULL, &err), 0);
    assert_non_null(strstr(err.data, "in 7 batches: 0 stored"));

    /* filters */
    char *evd[] = { cli_bin, "--aggregator", url, "events", "--device", "nobody", "--format",
                    "jsonl", NULL };
    sw_buf_reset(&out);
    assert_int_equal(th_run(evd, &out, NULL), 0);
    assert_int_equal(out.len, 0);
    char *sum[] = { cli_bin, "--aggregator", url, "summary", "--format", "csv", NULL };
    sw_buf_reset(&out);
    assert_int_equal(th_run(sum, &out, NULL), 0);
    /* the funnel: 4 enrollments, 3 reached the CA, 2 got a certificate,
     * 1 installed (39907), 2 failed (5c0e7a91 twice) */
    assert_non_null(strstr(out.data, "platform,enrollments,requested,issued,delivered,installed,stuck,failed\r\n"));
    assert_non_null(strstr(out.data, "android,4,3,2,2,1,"));
    assert_non_null(strstr(out.data, ",2\r\n"));

    /* the stuck table: the prompt dismissed at 16:40:55, its age in each unit */
    static const char *const ages[][2] = {
        { "2024-03-14T16:41:40Z", "44s" }, { "2024-03-14T16:53:00Z", "12m" },
        { "2024-03-14T19:46:00Z", "3h05m" }, { "2024-03-16T20:41:00Z", "2d04h" },
    };
    for (size_t i = 0; i < sizeof ages / sizeof ages[0]; i++) {
        char *st[] = { cli_bin, "--aggregator", url, "stuck", "--as-of", (char *)ages[i][0],
                       "--older-than", "1s", NULL };
        char want[512];
        snprintf(want, sizeof want,
                 "DEVICE                 PLATFORM STATUS               SINCE (UTC)         FOR\n"
                 "X                      android  waiting_user_access  2024-03-14 16:40:55 %s\n"
                 "  profile 8e2f4a6c  last access_requested  CERT_ACCESS_PROMPT_DISMISSED\n"
                 "1 stuck\n", ages[i][1]);
        sw_buf_reset(&out);
        assert_int_equal(th_run(st, &out, NULL), 0);
        assert_string_equal(out.data, want);
    }

    assert_int_equal(th_stop(agg), 0);
    sw_buf_fini(&out);
    sw_buf_fini(&err);
    sw_buf_fini(&expected);
}

static void
test_concurrent_senders(void **state)
{
    char url[300], db[300], f2[600];
    const char *devices[] = { "d1", "d2", "d3", "d4", "d5", "d6" };
    pid_t kids[6], agg;
    struct sw_buf out;

    (void)state;
    addr("conc", url, sizeof url, db, sizeof db);
    snprintf(f2, sizeof f2, "%s/tests/data/samples/android_omadm/OMADM-scenarios.log", TH_SOURCE_DIR);
    agg = th_start_aggregator(db, url, NULL);
    assert_true(agg > 0);
    for (int i = 0; i < 6; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            char *snd[] = { agent_bin, "send", "--aggregator", url, "--batch-events", "3",
                            "--device", (char *)devices[i], f2, NULL };
            _exit(th_run(snd, NULL, NULL));
        }
    }
    for (int i = 0; i < 6; i++) {
        int st;
        assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    sw_buf_init(&out);
    char *ev[] = { cli_bin, "--aggregator", url, "events", "--format", "jsonl", NULL };
    assert_int_equal(th_run(ev, &out, NULL), 0);
    assert_int_equal(th_count_lines(out.data), 6 * 31);
    assert_int_equal(th_stop(agg), 0);
    sw_buf_fini(&out);
}

/*
 * send keeps one batch unacknowledged while it reads the next: an
 * aggregator that dies with that batch in flight (frozen, then killed) and
 * comes back gets it again, and every event is stored once.
 */
static void
test_send_survives_a_restart(void **state)
{
    char url[300], db[300], f2[600];
    pid_t kid, agg;
    int st;
    struct sw_buf out;

    (void)state;
    addr("restart", url, sizeof url, db, sizeof db);
    snprintf(f2, sizeof f2, "%s/tests/data/samples/android_omadm/OMADM-scenarios.log", TH_SOURCE_DIR);
    agg = th_start_aggregator(db, url, NULL);
    assert_true(agg > 0);
    assert_int_equal(kill(agg, SIGSTOP), 0);
    kid = fork();
    if (kid == 0) {
        char *snd[] = { agent_bin, "send", "--aggregator", url, "--batch-events", "2",
                        "--retries", "30", "--device", "R", f2, NULL };
        _exit(th_run(snd, NULL, NULL));
    }
    usleep(300 * 1000);     /* the first batch sent, unanswered; the second read */
    kill(agg, SIGKILL);
    th_stop(agg);
    agg = th_start_aggregator(db, url, NULL);
    assert_true(agg > 0);
    assert_int_equal(waitpid(kid, &st, 0), kid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    sw_buf_init(&out);
    char *ev[] = { cli_bin, "--aggregator", url, "events", "--device", "R", "--format", "jsonl",
                   NULL };
    assert_int_equal(th_run(ev, &out, NULL), 0);
    assert_int_equal(th_count_lines(out.data), 31);
    assert_int_equal(th_stop(agg), 0);
    sw_buf_fini(&out);
}

/* Sends raw bytes on a REQ socket; returns the reply's status or -1 on timeout. */
static int
raw_call(const char *url, const void *msg, size_t n, int timeout_ms)
{
    nng_socket s;
    char *buf = NULL;
    size_t len = 0;
    int status = -1;

    assert_int_equal(nng_req0_open(&s), 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, timeout_ms);
    /*
     * No redial: after the server drops a connection (a message over its
     * limit) the dialer would reconnect and resend, and nng 1.5.2's close can
     * hang when it meets that resend (found in ctest -j2 runs: 2 in 22).
     */
    nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 600000);
    nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 600000);
    assert_int_equal(nng_dial(s, url, NULL, 0), 0);
    assert_int_equal(nng_send(s, (void *)msg, n, 0), 0);
    if (nng_recv(s, &buf, &len, NNG_FLAG_ALLOC) == 0) {
        Scepwatch__RpcReply *r = scepwatch__rpc_reply__unpack(NULL, len, (uint8_t *)buf);
        assert_non_null(r);
        status = r->status;
        scepwatch__rpc_reply__free_unpacked(r, NULL);
        nng_free(buf, len);
    }
    nng_close(s);
    return status;
}

static int
envelope_call(const char *url, const char *method, const void *payload, size_t n)
{
    struct sw_buf env;
    ZSTD_CCtx *c = ZSTD_createCCtx();
    int st;
    sw_buf_init(&env);
    assert_int_equal(sw_rpc_encode_request(c, method, 1, 0, payload, n, 0, &env), SW_OK);
    st = raw_call(url, env.data, env.len, 5000);
    sw_buf_fini(&env);
    ZSTD_freeCCtx(c);
    return st;
}

static void
test_hostile_clients(void **state)
{
    char url[300], db[300];
    pid_t agg;

    (void)state;
    addr("hostile", url, sizeof url, db, sizeof db);
    agg = th_start_aggregator(db, url, NULL);
    assert_true(agg > 0);
    /* garbage instead of an envelope */
    assert_int_equal(raw_call(url, "\xff\x01garbage", 9, 5000), SW_STATUS_INVALID_ARGUMENT);
    /* an unknown method */
    assert_int_equal(envelope_call(url, "scepwatch.ScepWatch/Nope", "", 0), SW_STATUS_UNIMPLEMENTED);
    /* a zstd bomb: 512 MiB of zeros declared honestly */
    {
        size_t big = 512u << 20;
        ZSTD_CCtx *c = ZSTD_createCCtx();
        ZSTD_CCtx_setPledgedSrcSize(c, big);
        char *zeros = calloc(1, 1 << 20), out[65536];
        ZSTD_outBuffer ob = { out, sizeof out, 0 };
        for (size_t done = 0; done < big; done += 1 << 20) {
            ZSTD_inBuffer in = { zeros, 1 << 20, 0 };
            ZSTD_compressStream2(c, &ob, &in, done + (1 << 20) >= big ? ZSTD_e_end : ZSTD_e_continue);
        }
        Scepwatch__RpcRequest rq = SCEPWATCH__RPC_REQUEST__INIT;
        rq.method = SW_METHOD("Ingest");
        rq.has_compression = rq.has_raw_size = rq.has_payload = 1;
        rq.compression = SCEPWATCH__COMPRESSION__ZSTD;
        rq.raw_size = big;
        rq.payload.data = (uint8_t *)out;
        rq.payload.len = ob.pos;
        uint8_t env[70000];
        size_t n = protobuf_c_message_pack(&rq.base, env);
        assert_int_equal(raw_call(url, env, n, 5000), SW_STATUS_RESOURCE_EXHAUSTED);
        free(zeros);
        ZSTD_freeCCtx(c);
    }
    /* a batch with an invalid event: refused whole, nothing stored */
    {
        Scepwatch__Batch b = SCEPWATCH__BATCH__INIT;
        Scepwatch__Event e = SCEPWATCH__EVENT__INIT, *ep = &e;
        e.has_stage = 1;
        e.stage = (Scepwatch__Stage)4242;
        b.n_events = 1;
        b.events = &ep;
        uint8_t buf[256];
        size_t n = protobuf_c_message_pack(&b.base, buf);
        assert_int_equal(envelope_call(url, SW_METHOD("Ingest"), buf, n), SW_STATUS_INVALID_ARGUMENT);
    }
    /* an oversized message is dropped by nng: no answer, and the server lives on */
    {
        size_t big = SW_RPC_MAX_MSG + 1024;
        char *junk = calloc(1, big);
        assert_int_equal(raw_call(url, junk, big, 1500), -1);
        free(junk);
    }
    assert_int_equal(envelope_call(url, SW_METHOD("Health"), "", 0), SW_STATUS_OK);
    struct sw_buf out;
    sw_buf_init(&out);
    char *ev[] = { cli_bin, "--aggregator", url, "events", "--format", "jsonl", NULL };
    assert_int_equal(th_run(ev, &out, NULL), 0);
    assert_int_equal(out.len, 0);
    sw_buf_fini(&out);
    assert_int_equal(th_stop(agg), 0);
}

static void
test_listener_roles(void **state)
{
    char url[300], db[300], admin[300];
    (void)state;
    addr("roles", url, sizeof url, db, sizeof db);
    snprintf(admin, sizeof admin, "ipc://%s/roles-admin.sock", dir);
    char *extra[] = { "--admin-listen", admin, NULL };
    pid_t agg = th_start_aggregator(db, url, extra);
    assert_true(agg > 0);
    Scepwatch__ListEventsRequest rq = SCEPWATCH__LIST_EVENTS_REQUEST__INIT;
    uint8_t buf[64];
    size_t n = protobuf_c_message_pack(&rq.base, buf);
    assert_int_equal(envelope_call(url, SW_METHOD("ListEvents"), buf, n), SW_STATUS_PERMISSION_DENIED);
    assert_int_equal(envelope_call(admin, SW_METHOD("ListEvents"), buf, n), SW_STATUS_OK);
    Scepwatch__Batch b = SCEPWATCH__BATCH__INIT;
    n = protobuf_c_message_pack(&b.base, buf);
    assert_int_equal(envelope_call(admin, SW_METHOD("Ingest"), buf, n), SW_STATUS_PERMISSION_DENIED);
    assert_int_equal(envelope_call(url, SW_METHOD("Ingest"), buf, n), SW_STATUS_OK);
    assert_int_equal(envelope_call(url, SW_METHOD("Health"), "", 0), SW_STATUS_OK);
    assert_int_equal(envelope_call(admin, SW_METHOD("Health"), "", 0), SW_STATUS_OK);
    assert_int_equal(th_stop(agg), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_contract),
        cmocka_unit_test(test_pipe_android_samples),
        cmocka_unit_test(test_concurrent_senders),
        cmocka_unit_test(test_send_survives_a_restart),
        cmocka_unit_test(test_hostile_clients),
        cmocka_unit_test(test_listener_roles),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
