/*
 * sw_rpc.c - envelope codec, bounded zstd, and the blocking client.
 */
#include "sw_rpc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "scepwatch.pb-c.h"
#include "sw_time.h"

static const char *
status_name_of(int s)
{
    switch (s) {
#define X(code, num, name) case num: return name;
    SW_STATUS_MAP(X)
#undef X
    default: return "UNKNOWN";
    }
}

const char *
sw_status_name(int status)
{
    return status_name_of(status);
}

sw_err
sw_zstd_decompress_bounded(void *dctx, const void *src, size_t n, uint64_t declared,
                           size_t max_raw, struct sw_buf *out)
{
    unsigned long long fsz;
    size_t r;

    sw_buf_reset(out);
    if (ZSTD_findFrameCompressedSize(src, n) != n)
        return SW_EPROTO;  /* not exactly one complete frame */
    fsz = ZSTD_getFrameContentSize(src, n);
    if (fsz == ZSTD_CONTENTSIZE_ERROR)
        return SW_EPROTO;
    if (declared > max_raw)
        return SW_ETOOBIG;
    if (fsz != ZSTD_CONTENTSIZE_UNKNOWN) {
        if (fsz > max_raw)
            return SW_ETOOBIG;
        if (fsz != declared)
            return SW_EPROTO;
    }
    /* Never allocate more than the declared (already bounded) size. */
    if (sw_buf_reserve(out, (size_t)declared) != SW_OK)
        return SW_ENOMEM;
    if (fsz != ZSTD_CONTENTSIZE_UNKNOWN) {
        r = ZSTD_decompressDCtx(dctx, out->data, (size_t)declared, src, n);
        if (ZSTD_isError(r) || r != declared)
            return SW_EPROTO;
    } else {
        ZSTD_inBuffer in = { src, n, 0 };
        ZSTD_outBuffer ob = { out->data, (size_t)declared, 0 };
        ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
        for (;;) {
            r = ZSTD_decompressStream(dctx, &ob, &in);
            if (ZSTD_isError(r))
                return SW_EPROTO;
            if (r == 0)
                break;          /* frame complete */
            if (ob.pos == ob.size) {
                /* output full but the frame wants more: larger than declared */
                char probe;
                ZSTD_outBuffer pb = { &probe, 1, 0 };
                r = ZSTD_decompressStream(dctx, &pb, &in);
                if (ZSTD_isError(r) || pb.pos)
                    return SW_ETOOBIG;
                if (r == 0)
                    break;
                return SW_EPROTO;
            }
            if (in.pos == in.size)
                return SW_EPROTO; /* truncated */
        }
        if (ob.pos != declared)
            return SW_EPROTO;
    }
    out->len = (size_t)declared;
    return SW_OK;
}

sw_err
sw_zstd_compress(void *cctx, const void *src, size_t n, int level, struct sw_buf *out)
{
    size_t bound = ZSTD_compressBound(n), r;

    sw_buf_reset(out);
    if (sw_buf_reserve(out, bound) != SW_OK)
        return SW_ENOMEM;
    /* a checksum lets the receiver tell a corrupted frame from a valid one */
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    r = ZSTD_compress2(cctx, out->data, bound, src, n);
    if (ZSTD_isError(r))
        return SW_EIO;
    out->len = r;
    return SW_OK;
}

/* Packs a protobuf message into out. */
static sw_err
pack_into(const ProtobufCMessage *m, struct sw_buf *out)
{
    size_t sz = protobuf_c_message_get_packed_size(m);
    sw_buf_reset(out);
    if (sw_buf_reserve(out, sz) != SW_OK)
        return SW_ENOMEM;
    out->len = protobuf_c_message_pack(m, (uint8_t *)out->data);
    return SW_OK;
}

/*
 * zstd levels: an agent's batch crosses the network once and is worth
 * squeezing; a reply page (a report of a million rows) is made while the
 * admin waits, so speed wins.
 */
#define SW_RPC_LEVEL_REQUEST 3
#define SW_RPC_LEVEL_REPLY 1

static sw_err
maybe_compress(void *cctx, const void *payload, size_t len, int level, struct sw_buf *tmp,
               ProtobufCBinaryData *bd, Scepwatch__Compression *comp, uint64_t *raw)
{
    *raw = len;
    *comp = SCEPWATCH__COMPRESSION__COMPRESSION_NONE;
    bd->data = (uint8_t *)payload;
    bd->len = len;
    if (cctx && len >= SW_RPC_COMPRESS_MIN) {
        sw_err e = sw_zstd_compress(cctx, payload, len, level, tmp);
        if (e != SW_OK)
            return e;
        if (tmp->len < len) {
            *comp = SCEPWATCH__COMPRESSION__ZSTD;
            bd->data = (uint8_t *)tmp->data;
            bd->len = tmp->len;
        }
    }
    return SW_OK;
}

sw_err
sw_rpc_encode_request(void *cctx, const char *method, uint64_t request_id,
                      uint64_t deadline_ms, const void *payload, size_t len,
                      unsigned flags, struct sw_buf *out)
{
    Scepwatch__RpcRequest rq = SCEPWATCH__RPC_REQUEST__INIT;
    struct sw_buf tmp;
    sw_err e;

    sw_buf_init(&tmp);
    rq.method = (char *)method;
    rq.has_request_id = 1;
    rq.request_id = request_id;
    rq.has_deadline_ms = deadline_ms != 0;
    rq.deadline_ms = deadline_ms;
    rq.has_compression = rq.has_raw_size = rq.has_payload = 1;
    if (flags & SW_RPC_REPLY_PLAIN) {
        rq.has_reply_compression = 1;
        rq.reply_compression = SCEPWATCH__COMPRESSION__COMPRESSION_NONE;
    }
    e = maybe_compress(cctx, payload, len, SW_RPC_LEVEL_REQUEST, &tmp, &rq.payload,
                       &rq.compression, &rq.raw_size);
    if (e == SW_OK)
        e = pack_into(&rq.base, out);
    sw_buf_fini(&tmp);
    return e;
}

sw_err
sw_rpc_encode_reply(void *cctx, uint64_t request_id, int status, const char *message,
                    const void *payload, size_t len, struct sw_buf *out)
{
    Scepwatch__RpcReply rp = SCEPWATCH__RPC_REPLY__INIT;
    struct sw_buf tmp;
    sw_err e;

    sw_buf_init(&tmp);
    rp.has_request_id = 1;
    rp.request_id = request_id;
    rp.has_status = 1;
    rp.status = (Scepwatch__StatusCode)status;
    rp.message = message && *message ? (char *)message : NULL;
    rp.has_compression = rp.has_raw_size = rp.has_payload = 1;
    e = maybe_compress(cctx, payload, len, SW_RPC_LEVEL_REPLY, &tmp, &rp.payload,
                       &rp.compression, &rp.raw_size);
    if (e == SW_OK)
        e = pack_into(&rp.base, out);
    sw_buf_fini(&tmp);
    return e;
}

/*
 * Envelopes unpack into one arena sized from the message (protobuf-c copies
 * bytes fields), so the envelope parser cannot be made to allocate more
 * than the message it was given plus a constant.  The arena is the
 * caller's env buffer, kept from one message to the next: its memory is
 * reused instead of allocated afresh (a reply page is megabytes), and an
 * uncompressed payload is used where it lies.
 */
struct arena {
    char *mem;
    size_t cap;
    size_t used;
};

static int
arena_open(struct arena *a, struct sw_buf *env, size_t n)
{
    sw_buf_reset(env);
    if (n > SIZE_MAX / 2 || sw_buf_reserve(env, n + 4096 + 16) != SW_OK)
        return -1;
    uintptr_t p = ((uintptr_t)env->data + 15) & ~(uintptr_t)15;
    a->mem = (char *)p;
    a->cap = n + 4096;
    a->used = 0;
    return 0;
}

static void *
arena_alloc(void *ad, size_t size)
{
    struct arena *a = ad;
    size = (size + 15) & ~(size_t)15;
    if (size > a->cap - a->used)
        return NULL;
    void *p = a->mem + a->used;
    a->used += size;
    return p;
}

static void
arena_free(void *ad, void *p)
{
    (void)ad;
    (void)p;
}

static sw_err
inflate_payload(void *dctx, Scepwatch__Compression comp, const ProtobufCBinaryData *bd,
                uint64_t raw, size_t max_raw, struct sw_buf *scratch,
                const unsigned char **pp, size_t *pl)
{
    if (comp == SCEPWATCH__COMPRESSION__COMPRESSION_NONE) {
        if (bd->len > max_raw)
            return SW_ETOOBIG;
        /* where it lies: in the envelope arena, the caller's env buffer */
        *pp = bd->len ? bd->data : (const unsigned char *)"";
        *pl = bd->len;
        return SW_OK;
    }
    if (comp != SCEPWATCH__COMPRESSION__ZSTD)
        return SW_EPROTO;
    sw_err e = sw_zstd_decompress_bounded(dctx, bd->data, bd->len, raw, max_raw, scratch);
    if (e != SW_OK)
        return e;
    *pp = (const unsigned char *)scratch->data;
    *pl = scratch->len;
    return SW_OK;
}

sw_err
sw_rpc_decode_request(void *dctx, const void *msg, size_t n, size_t max_raw,
                      struct sw_buf *env, struct sw_buf *scratch, struct sw_rpc_request *out,
                      int *status, char *why, size_t why_cap)
{
    /* The payload is bytes inside the envelope, so the envelope arena
     * only holds the struct and the method string: bound method length. */
    struct arena a;
    ProtobufCAllocator alloc = { arena_alloc, arena_free, &a };
    Scepwatch__RpcRequest *rq;
    sw_err e;

    memset(out, 0, sizeof *out);
    *status = SW_STATUS_INVALID_ARGUMENT;
    if (arena_open(&a, env, n) != 0) {
        *status = SW_STATUS_RESOURCE_EXHAUSTED;
        snprintf(why, why_cap, "out of memory");
        return SW_ENOMEM;
    }
    rq = scepwatch__rpc_request__unpack(&alloc, n, msg);
    if (!rq) {
        snprintf(why, why_cap, "malformed request envelope");
        return SW_EPROTO;
    }
    if (!rq->method || strlen(rq->method) >= sizeof out->method) {
        snprintf(why, why_cap, "missing or overlong method");
        return SW_EPROTO;
    }
    strcpy(out->method, rq->method);
    out->request_id = rq->request_id;
    out->deadline_ms = rq->has_deadline_ms ? rq->deadline_ms : 0;
    out->reply_plain = rq->has_reply_compression &&
                       rq->reply_compression == SCEPWATCH__COMPRESSION__COMPRESSION_NONE;
    e = inflate_payload(dctx, rq->compression, &rq->payload, rq->raw_size, max_raw, scratch,
                        &out->payload, &out->payload_len);
    if (e == SW_ETOOBIG) {
        *status = SW_STATUS_RESOURCE_EXHAUSTED;
        snprintf(why, why_cap, "payload exceeds %zu bytes", max_raw);
    } else if (e == SW_ENOMEM) {
        *status = SW_STATUS_RESOURCE_EXHAUSTED;
        snprintf(why, why_cap, "out of memory");
    } else if (e != SW_OK) {
        snprintf(why, why_cap, "corrupt compressed payload");
    } else {
        *status = SW_STATUS_OK;
    }
    return e;
}

sw_err
sw_rpc_decode_reply(void *dctx, const void *msg, size_t n, size_t max_raw,
                    struct sw_buf *env, struct sw_buf *scratch, struct sw_rpc_reply *out)
{
    struct arena a;
    ProtobufCAllocator alloc = { arena_alloc, arena_free, &a };
    Scepwatch__RpcReply *rp;

    memset(out, 0, sizeof *out);
    if (arena_open(&a, env, n) != 0)
        return SW_ENOMEM;
    rp = scepwatch__rpc_reply__unpack(&alloc, n, msg);
    if (!rp)
        return SW_EPROTO;
    out->request_id = rp->request_id;
    out->status = rp->has_status ? (int)rp->status : SW_STATUS_UNKNOWN;
    if (rp->message)
        snprintf(out->message, sizeof out->message, "%s", rp->message);
    return inflate_payload(dctx, rp->compression, &rp->payload, rp->raw_size, max_raw,
                           scratch, &out->payload, &out->payload_len);
}

/* ---- client ---- */

struct sw_rpc_client {
    nng_socket sock;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    struct sw_buf req;
    struct sw_buf env;          /* the last reply's envelope (and plain payload) */
    struct sw_buf payload;      /* the last reply's inflated payload */
    uint64_t next_id;
    uint64_t sent_id;           /* the request a reply must answer */
    unsigned flags;             /* SW_RPC_REPLY_PLAIN on a local socket */
    int timeout_ms;
    char error[256];
};

sw_err
sw_rpc_client_open(struct sw_rpc_client **out, const char *url, int timeout_ms)
{
    struct sw_rpc_client *c = calloc(1, sizeof *c);
    int rv;

    *out = NULL;
    if (!c)
        return SW_ENOMEM;
    c->cctx = ZSTD_createCCtx();
    c->dctx = ZSTD_createDCtx();
    c->timeout_ms = timeout_ms;
    /* a local socket: replies uncompressed (bytes are free, zstd is not) */
    if (strncmp(url, "ipc://", 6) == 0 || strncmp(url, "inproc://", 9) == 0)
        c->flags |= SW_RPC_REPLY_PLAIN;
    c->next_id = ((uint64_t)sw_now_us() << 16) ^ (uint64_t)(uintptr_t)c;
    sw_buf_init(&c->req);
    sw_buf_init(&c->env);
    sw_buf_init(&c->payload);
    if (!c->cctx || !c->dctx) {
        sw_rpc_client_close(c);
        return SW_ENOMEM;
    }
    if ((rv = nng_req0_open(&c->sock)) != 0) {
        snprintf(c->error, sizeof c->error, "%s", nng_strerror(rv));
        free(c);
        return SW_EIO;
    }
    nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, timeout_ms);
    nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO, timeout_ms);
    nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, SW_RPC_MAX_MSG);
    /* resend well after a normal call's time; handlers are idempotent anyway */
    nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, timeout_ms > 0 ? timeout_ms : 60000);
    if ((rv = nng_dial(c->sock, url, NULL, 0)) != 0) {
        *out = c;
        snprintf(c->error, sizeof c->error, "cannot reach the aggregator at %s: %s",
                 url, nng_strerror(rv));
        return rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP || rv == NNG_EINVAL ? SW_EINVAL
                                                                          : SW_EUNAVAIL;
    }
    *out = c;
    return SW_OK;
}

void
sw_rpc_client_close(struct sw_rpc_client *c)
{
    if (!c)
        return;
    nng_close(c->sock);
    ZSTD_freeCCtx(c->cctx);
    ZSTD_freeDCtx(c->dctx);
    sw_buf_fini(&c->req);
    sw_buf_fini(&c->env);
    sw_buf_fini(&c->payload);
    free(c);
}

size_t
sw_rpc_client_last_request_bytes(const struct sw_rpc_client *c)
{
    return c->req.len;
}

const char *
sw_rpc_client_error(const struct sw_rpc_client *c)
{
    return c ? c->error : "out of memory";
}

sw_err
sw_rpc_send(struct sw_rpc_client *c, const char *method, const void *payload, size_t len)
{
    uint64_t id = ++c->next_id;
    uint64_t deadline = c->timeout_ms > 0
                            ? (uint64_t)(sw_now_us() / 1000) + (uint64_t)c->timeout_ms : 0;
    nng_msg *m = NULL;
    sw_err e;
    int rv;

    e = sw_rpc_encode_request(c->cctx, method, id, deadline, payload, len, c->flags, &c->req);
    if (e != SW_OK)
        return e;
    if ((rv = nng_msg_alloc(&m, 0)) != 0 || (rv = nng_msg_append(m, c->req.data, c->req.len)) != 0) {
        nng_msg_free(m);
        return SW_ENOMEM;
    }
    if ((rv = nng_sendmsg(c->sock, m, 0)) != 0) {
        nng_msg_free(m);
        snprintf(c->error, sizeof c->error, "send failed: %s", nng_strerror(rv));
        return rv == NNG_ETIMEDOUT ? SW_ETIMEDOUT : SW_EUNAVAIL;
    }
    c->sent_id = id;
    return SW_OK;
}

sw_err
sw_rpc_recv(struct sw_rpc_client *c, struct sw_rpc_reply *reply)
{
    nng_msg *m = NULL;
    sw_err e;
    int rv;

    for (;;) {
        if ((rv = nng_recvmsg(c->sock, &m, 0)) != 0) {
            snprintf(c->error, sizeof c->error, "no answer: %s", nng_strerror(rv));
            return rv == NNG_ETIMEDOUT ? SW_ETIMEDOUT : SW_EUNAVAIL;
        }
        e = sw_rpc_decode_reply(c->dctx, nng_msg_body(m), nng_msg_len(m), SW_RPC_MAX_RAW,
                                &c->env, &c->payload, reply);
        nng_msg_free(m);
        if (e != SW_OK) {
            snprintf(c->error, sizeof c->error, "malformed reply: %s", sw_strerror(e));
            return SW_EPROTO;
        }
        if (reply->request_id == c->sent_id)
            return SW_OK;
        /* a late answer to an earlier attempt: REQ drops those, but be safe */
    }
}

sw_err
sw_rpc_call(struct sw_rpc_client *c, const char *method, const void *payload, size_t len,
            struct sw_rpc_reply *reply)
{
    sw_err e = sw_rpc_send(c, method, payload, len);
    return e != SW_OK ? e : sw_rpc_recv(c, reply);
}
