/*
 * fuzz_wire.c - libFuzzer target for everything a network peer controls:
 * the RPC envelope (bounded zstd included) and the batch / event-list
 * decoders with their validation.  The input is tried both as an envelope
 * and as a bare batch, and every batch is decoded both in place and by
 * protobuf-c's generated code (the reference): the two must agree.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "sw_arena.h"
#include "sw_rpc.h"
#include "sw_wire.h"
#include "wire_cmp.h"

static void
try_batch(const void *p, size_t n)
{
    struct sw_wire_decoded d, ref;
    char why[256];

    /* the in-place decoder and protobuf-c's: the same verdict, the same reason for a
     * refusal and the same events, in the input (their memory bounds count
     * differently: a refusal for size is no verdict) */
    char why_ref[256];
    sw_err e = sw_wire_decode_batch(p, n, 8u << 20, &d, why, sizeof why);
    sw_err er = sw_wire_decode_batch_ref(p, n, 8u << 20, &ref, why_ref, sizeof why_ref);
    if (e != SW_ETOOBIG && er != SW_ETOOBIG &&
        (e != er || (e != SW_OK && strcmp(why, why_ref) != 0))) {
        fprintf(stderr, "in place: %s (%s); reference: %s (%s)\n", sw_strerror(e),
                e ? why : "", sw_strerror(er), er ? why_ref : "");
        abort();
    }
    const char *diff = e == SW_OK && er == SW_OK ? wire_cmp_decoded(&d, &ref) : NULL;
    if (!diff && e == SW_OK)
        diff = wire_check_bounds(&d, p, n);
    if (diff) {
        fprintf(stderr, "the decoders differ in %s, or it points outside\n", diff);
        abort();
    }
    if (er == SW_OK)
        sw_wire_decoded_fini(&ref);
    if (e == SW_OK) {
        for (size_t i = 0; i < d.count; i++) {
            struct sw_event ev;
            unsigned char id[SW_EVENT_IDENT_LEN];
            sw_wire_decoded_event(&d, i, &ev);
            sw_event_identity(&ev, id);
        }
        sw_wire_decoded_fini(&d);
    }
    if (sw_wire_decode_list(p, n, 8u << 20, &d, why, sizeof why) == SW_OK)
        sw_wire_decoded_fini(&d);
    /* as the aggregator's workers and the CLI decode: into an arena kept from
     * one input to the next, its blocks reused (released now and then, as a
     * worker does past its bound) */
    static struct sw_arena kept;
    static unsigned rounds;
    if (sw_wire_decode_batch_reuse(&kept, p, n, 8u << 20, &d, why, sizeof why) == SW_OK) {
        for (size_t i = 0; i < d.count; i++) {
            struct sw_event ev;
            sw_wire_decoded_event(&d, i, &ev);
        }
        sw_wire_decoded_fini(&d);
    }
    if (sw_wire_decode_list_reuse(&kept, p, n, 8u << 20, &d, why, sizeof why) == SW_OK)
        sw_wire_decoded_fini(&d);
    if (++rounds % 1024 == 0)
        sw_arena_release(&kept);
    /* the cursor walk a CLI does before unpacking a reply page */
    const uint8_t *cur;
    size_t cur_len;
    if (sw_wire_find_bytes(p, n, 2, &cur, &cur_len) == 1 &&
        (cur < (const uint8_t *)p || cur + cur_len > (const uint8_t *)p + n))
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ZSTD_DCtx *dctx;
    static struct sw_buf denv, scratch;
    struct sw_rpc_request rq;
    struct sw_rpc_reply rp;
    char why[256];
    int status;

    if (!dctx)
        dctx = ZSTD_createDCtx();
    /* a small raw limit keeps bombs cheap to detect */
    if (sw_rpc_decode_request(dctx, data, size, 1u << 20, &denv, &scratch, &rq, &status, why,
                              sizeof why) == SW_OK)
        try_batch(rq.payload, rq.payload_len);
    if (sw_rpc_decode_reply(dctx, data, size, 1u << 20, &denv, &scratch, &rp) == SW_OK)
        try_batch(rp.payload, rp.payload_len);
    try_batch(data, size);
    if (scratch.cap > (4u << 20))
        sw_buf_fini(&scratch);
    if (denv.cap > (4u << 20))
        sw_buf_fini(&denv);
    return 0;
}
