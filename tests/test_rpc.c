/*
 * test_rpc.c - the RPC envelope: status codes, round trips, compression,
 * and every way a peer's message can be refused (bomb, lying size,
 * truncated frame, garbage, missing method).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "scepwatch.pb-c.h"
#include "sw_rpc.h"

static ZSTD_CCtx *cctx;
static ZSTD_DCtx *dctx;

static int
setup(void **state)
{
    (void)state;
    cctx = ZSTD_createCCtx();
    dctx = ZSTD_createDCtx();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    ZSTD_freeCCtx(cctx);
    ZSTD_freeDCtx(dctx);
    return 0;
}

static void
test_status_codes_match_grpc(void **state)
{
    (void)state;
    assert_int_equal(SW_STATUS_OK, SCEPWATCH__STATUS_CODE__OK);
    assert_int_equal(SW_STATUS_INVALID_ARGUMENT, SCEPWATCH__STATUS_CODE__INVALID_ARGUMENT);
    assert_int_equal(SW_STATUS_DEADLINE_EXCEEDED, 4);
    assert_int_equal(SW_STATUS_PERMISSION_DENIED, 7);
    assert_int_equal(SW_STATUS_RESOURCE_EXHAUSTED, SCEPWATCH__STATUS_CODE__RESOURCE_EXHAUSTED);
    assert_int_equal(SW_STATUS_UNIMPLEMENTED, 12);
    assert_int_equal(SW_STATUS_INTERNAL, 13);
    assert_int_equal(SW_STATUS_UNAVAILABLE, 14);
    assert_int_equal(SW_STATUS_UNAUTHENTICATED, SCEPWATCH__STATUS_CODE__UNAUTHENTICATED);
    assert_string_equal(sw_status_name(SW_STATUS_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    assert_string_equal(sw_status_name(99), "UNKNOWN");
}

static void
test_request_round_trip_compressed(void **state)
{
    struct sw_buf env, denv, scratch;
    struct sw_rpc_request rq;
    char payload[20000], why[128];
    int status;

    (void)state;
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (char)('a' + i % 7);
    sw_buf_init(&env);
    sw_buf_init(&denv);
    sw_buf_init(&scratch);
    assert_int_equal(sw_rpc_encode_request(cctx, SW_METHOD("Ingest"), 42, 1234, payload,
                                           sizeof payload, 0, &env), SW_OK);
    assert_true(env.len < sizeof payload / 4); /* it was compressed */
    assert_int_equal(sw_rpc_decode_request(dctx, env.data, env.len, 1 << 20, &denv, &scratch, &rq,
                                           &status, why, sizeof why), SW_OK);
    assert_int_equal(status, SW_STATUS_OK);
    assert_string_equal(rq.method, "scepwatch.ScepWatch/Ingest");
    assert_int_equal(rq.request_id, 42);
    assert_int_equal(rq.deadline_ms, 1234);
    assert_int_equal(rq.payload_len, sizeof payload);
    assert_memory_equal(rq.payload, payload, sizeof payload);
    assert_int_equal(rq.reply_plain, 0);   /* the server's choice */
    /* a caller on a local socket asks for its replies uncompressed */
    assert_int_equal(sw_rpc_encode_request(cctx, SW_METHOD("Summary"), 43, 0, payload,
                                           sizeof payload, SW_RPC_REPLY_PLAIN, &env), SW_OK);
    assert_int_equal(sw_rpc_decode_request(dctx, env.data, env.len, 1 << 20, &denv, &scratch, &rq,
                                           &status, why, sizeof why), SW_OK);
    assert_int_equal(rq.reply_plain, 1);
    assert_int_equal(rq.request_id, 43);
    sw_buf_fini(&env);
    sw_buf_fini(&denv);
    sw_buf_fini(&scratch);
}

static void
test_small_payload_uncompressed(void **state)
{
    struct sw_buf env, denv, scratch;
    struct sw_rpc_reply rp;

    (void)state;
    sw_buf_init(&env);
    sw_buf_init(&denv);
    sw_buf_init(&scratch);
    assert_int_equal(sw_rpc_encode_reply(cctx, 7, SW_STATUS_NOT_FOUND, "no such device", "xy", 2,
                                         &env), SW_OK);
    assert_int_equal(sw_rpc_decode_reply(dctx, env.data, env.len, 1 << 20, &denv, &scratch, &rp), SW_OK);
    assert_int_equal(rp.request_id, 7);
    assert_int_equal(rp.status, SW_STATUS_NOT_FOUND);
    assert_string_equal(rp.message, "no such device");
    assert_int_equal(rp.payload_len, 2);
    assert_memory_equal(rp.payload, "xy", 2);
    /* the same buffers again, as a client decodes reply after reply: a plain
     * payload is read where it lies, in the reused envelope buffer */
    char page[3000];
    memset(page, 'p', sizeof page);
    assert_int_equal(sw_rpc_encode_reply(NULL, 8, SW_STATUS_OK, NULL, page, sizeof page, &env),
                     SW_OK);
    assert_int_equal(sw_rpc_decode_reply(dctx, env.data, env.len, 1 << 20, &denv, &scratch, &rp),
                     SW_OK);
    assert_int_equal(rp.request_id, 8);
    assert_int_equal(rp.payload_len, sizeof page);
    assert_memory_equal(rp.payload, page, sizeof page);
    assert_true(rp.payload >= (const unsigned char *)denv.data &&
                rp.payload + rp.payload_len <= (const unsigned char *)denv.data + denv.cap);
    assert_int_equal(sw_rpc_decode_reply(dctx, "\x08", 1, 1 << 20, &denv, &scratch, &rp),
                     SW_EPROTO);
    sw_buf_fini(&env);
    sw_buf_fini(&denv);
    sw_buf_fini(&scratch);
}

/* Builds an envelope whose payload is the given (already compressed) bytes. */
static void
raw_envelope(const void *frame, size_t n, uint64_t declared, const char *method, struct sw_buf *out)
{
    Scepwatch__RpcRequest rq = SCEPWATCH__RPC_REQUEST__INIT;
    rq.method = (char *)method;
    rq.has_compression = rq.has_raw_size = rq.has_payload = 1;
    rq.compression = SCEPWATCH__COMPRESSION__ZSTD;
    rq.raw_size = declared;
    rq.payload.data = (uint8_t *)frame;
    rq.payload.len = n;
    sw_buf_reset(out);
    sw_buf_reserve(out, protobuf_c_message_get_packed_size(&rq.base));
    out->len = protobuf_c_message_pack(&rq.base, (uint8_t *)out->data);
}

static int
decode_status(struct sw_buf *env, size_t max_raw, sw_err *err)
{
    struct sw_buf denv, scratch;
    struct sw_rpc_request rq;
    char why[128];
    int status;

    sw_buf_init(&denv);
    sw_buf_init(&scratch);
    *err = sw_rpc_decode_request(dctx, env->data, env->len, max_raw, &denv, &scratch, &rq, &status,
                                 why, sizeof why);
    /* a refused request never leaves a buffer bigger than the limit, and the
     * envelope's memory follows the message's size */
    assert_true(scratch.cap <= max_raw + 1);
    assert_true(denv.cap <= 2 * (env->len + 8192));
    sw_buf_fini(&denv);
    sw_buf_fini(&scratch);
    return status;
}

static void
test_zstd_bomb_refused(void **state)
{
    size_t big = 64u << 20; /* 64 MiB of zeros compresses to a few KiB */
    char *zeros = calloc(1, big);
    struct sw_buf frame, env;
    sw_err e;

    (void)state;
    sw_buf_init(&frame);
    sw_buf_init(&env);
    assert_int_equal(sw_zstd_compress(cctx, zeros, big, 1, &frame), SW_OK);
    assert_true(frame.len < 64 * 1024);
    /* honest size, over the limit */
    raw_envelope(frame.data, frame.len, big, SW_METHOD("Ingest"), &env);
    assert_int_equal(decode_status(&env, 1 << 20, &e), SW_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(e, SW_ETOOBIG);
    /* lying: claims 100 bytes, frame says 64 MiB */
    raw_envelope(frame.data, frame.len, 100, SW_METHOD("Ingest"), &env);
    assert_int_not_equal(decode_status(&env, 1 << 20, &e), SW_STATUS_OK);
    sw_buf_fini(&frame);
    sw_buf_fini(&env);
    free(zeros);
}

static void
test_streamed_frame_without_size_is_bounded(void **state)
{
    size_t big = 4u << 20;
    char *zeros = calloc(1, big);
    size_t cap = ZSTD_compressBound(big);
    char *out = malloc(cap);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_inBuffer in = { zeros, big, 0 };
    ZSTD_outBuffer ob = { out, cap, 0 };
    struct sw_buf env, denv, scratch;
    sw_err e;

    (void)state;
    /* streaming without a pledged size: the frame has no content size */
    while (in.pos < in.size)
        ZSTD_compressStream2(cc, &ob, &in, ZSTD_e_continue);
    while (ZSTD_compressStream2(cc, &ob, &in, ZSTD_e_end) != 0)
        ;
    assert_int_equal(ZSTD_getFrameContentSize(out, ob.pos), ZSTD_CONTENTSIZE_UNKNOWN);
    sw_buf_init(&env);
    sw_buf_init(&denv);
    sw_buf_init(&scratch);
    /* declares 1000 bytes but inflates to 4 MiB: refused, nothing big allocated */
    raw_envelope(out, ob.pos, 1000, SW_METHOD("Ingest"), &env);
    assert_int_not_equal(decode_status(&env, 8u << 20, &e), SW_STATUS_OK);
    assert_int_equal(e, SW_ETOOBIG);
    /* declared honestly and within the limit: accepted */
    raw_envelope(out, ob.pos, big, SW_METHOD("Ingest"), &env);
    assert_int_equal(decode_status(&env, 8u << 20, &e), SW_STATUS_OK);
    sw_buf_fini(&env);
    sw_buf_fini(&denv);
    sw_buf_fini(&scratch);
    ZSTD_freeCCtx(cc);
    free(out);
    free(zeros);
}

static void
test_truncated_and_corrupt_frames(void **state)
{
    char payload[5000];
    struct sw_buf frame, env;
    sw_err e;

    (void)state;
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (char)(i * 31);
    sw_buf_init(&frame);
    sw_buf_init(&env);
    assert_int_equal(sw_zstd_compress(cctx, payload, sizeof payload, 3, &frame), SW_OK);
    raw_envelope(frame.data, frame.len - 7, sizeof payload, SW_METHOD("Ingest"), &env);
    assert_int_equal(decode_status(&env, 1 << 20, &e), SW_STATUS_INVALID_ARGUMENT);
    assert_int_equal(e, SW_EPROTO);
    frame.data[frame.len / 2] ^= 0x5a;
    raw_envelope(frame.data, frame.len, sizeof payload, SW_METHOD("Ingest"), &env);
    assert_int_not_equal(decode_status(&env, 1 << 20, &e), SW_STATUS_OK);
    raw_envelope("garbage!", 8, 8, SW_METHOD("Ingest"), &env);
    assert_int_equal(decode_status(&env, 1 << 20, &e), SW_STATUS_INVALID_ARGUMENT);
    sw_buf_fini(&frame);
    sw_buf_fini(&env);
}

static void
test_garbage_envelope_and_missing_method(void **state)
{
    struct sw_buf env, denv, scratch;
    struct sw_rpc_request rq;
    char why[128];
    int status;
    unsigned char junk[64];

    (void)state;
    sw_buf_init(&env);
    sw_buf_init(&denv);
    sw_buf_init(&scratch);
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(0xff - i);
    assert_int_equal(sw_rpc_decode_request(dctx, junk, sizeof junk, 1 << 20, &denv, &scratch, &rq,
                                           &status, why, sizeof why), SW_EPROTO);
    assert_int_equal(status, SW_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(why, "malformed"));
    /* an envelope without a method */
    assert_int_equal(sw_rpc_encode_request(NULL, NULL, 1, 0, "x", 1, 0, &env), SW_OK);
    assert_int_equal(sw_rpc_decode_request(dctx, env.data, env.len, 1 << 20, &denv, &scratch, &rq,
                                           &status, why, sizeof why), SW_EPROTO);
    assert_int_equal(status, SW_STATUS_INVALID_ARGUMENT);
    /* an uncompressed payload over the limit */
    char big[4096] = { 0 };
    assert_int_equal(sw_rpc_encode_request(NULL, "m", 1, 0, big, sizeof big, 0, &env), SW_OK);
    assert_int_equal(sw_rpc_decode_request(dctx, env.data, env.len, 1024, &denv, &scratch, &rq,
                                           &status, why, sizeof why), SW_ETOOBIG);
    assert_int_equal(status, SW_STATUS_RESOURCE_EXHAUSTED);
    sw_buf_fini(&env);
    sw_buf_fini(&denv);
    sw_buf_fini(&scratch);
}

static void
test_client_unreachable(void **state)
{
    struct sw_rpc_client *c = NULL;
    (void)state;
    assert_int_equal(sw_rpc_client_open(&c, "tcp://127.0.0.1:1", 1000), SW_EUNAVAIL);
    assert_non_null(strstr(sw_rpc_client_error(c), "cannot reach the aggregator"));
    sw_rpc_client_close(c);
    c = NULL;
    assert_int_equal(sw_rpc_client_open(&c, "bogus://x", 1000), SW_EINVAL);
    sw_rpc_client_close(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_codes_match_grpc),
        cmocka_unit_test(test_request_round_trip_compressed),
        cmocka_unit_test(test_small_payload_uncompressed),
        cmocka_unit_test(test_zstd_bomb_refused),
        cmocka_unit_test(test_streamed_frame_without_size_is_bounded),
        cmocka_unit_test(test_truncated_and_corrupt_frames),
        cmocka_unit_test(test_garbage_envelope_and_missing_method),
        cmocka_unit_test(test_client_unreachable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
