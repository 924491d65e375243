/*
 * sw_rpc.h - gRPC-style calls over nng REQ/REP.
 *
 * A request is an RpcRequest envelope (method, request id, deadline,
 * compression, payload); the answer an RpcReply (gRPC status code,
 * message, payload).  Payloads over SW_RPC_COMPRESS_MIN bytes travel
 * zstd-compressed.  Decompression is bounded by the receiver's limit and
 * by the size the envelope declares, so a zstd bomb or a lying frame is
 * refused with a status before anything the sender controls is allocated.
 *
 * REQ resends unanswered requests: every method a server offers must be
 * safe to receive twice.
 *
 * Thread: a client belongs to one thread.  The codec functions are
 * reentrant given their own ZSTD contexts.
 */
#ifndef SW_RPC_H
#define SW_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "sw_buf.h"
#include "sw_err.h"

/* gRPC status codes (same numbers as proto StatusCode). */
#define SW_STATUS_MAP(X)                    \
    X(SW_STATUS_OK, 0, "OK")                \
    X(SW_STATUS_CANCELLED, 1, "CANCELLED")  \
    X(SW_STATUS_UNKNOWN, 2, "UNKNOWN")      \
    X(SW_STATUS_INVALID_ARGUMENT, 3, "INVALID_ARGUMENT") \
    X(SW_STATUS_DEADLINE_EXCEEDED, 4, "DEADLINE_EXCEEDED") \
    X(SW_STATUS_NOT_FOUND, 5, "NOT_FOUND")  \
    X(SW_STATUS_ALREADY_EXISTS, 6, "ALREADY_EXISTS") \
    X(SW_STATUS_PERMISSION_DENIED, 7, "PERMISSION_DENIED") \
    X(SW_STATUS_RESOURCE_EXHAUSTED, 8, "RESOURCE_EXHAUSTED") \
    X(SW_STATUS_FAILED_PRECONDITION, 9, "FAILED_PRECONDITION") \
    X(SW_STATUS_ABORTED, 10, "ABORTED")     \
    X(SW_STATUS_OUT_OF_RANGE, 11, "OUT_OF_RANGE") \
    X(SW_STATUS_UNIMPLEMENTED, 12, "UNIMPLEMENTED") \
    X(SW_STATUS_INTERNAL, 13, "INTERNAL")   \
    X(SW_STATUS_UNAVAILABLE, 14, "UNAVAILABLE") \
    X(SW_STATUS_DATA_LOSS, 15, "DATA_LOSS") \
    X(SW_STATUS_UNAUTHENTICATED, 16, "UNAUTHENTICATED")

enum sw_status {
#define X(code, num, name) code = num,
    SW_STATUS_MAP(X)
#undef X
};

const char *sw_status_name(int status);

#define SW_RPC_COMPRESS_MIN 256          /* smaller payloads go uncompressed */
#define SW_RPC_MAX_MSG (16u << 20)        /* nng receive limit, compressed */
#define SW_RPC_MAX_RAW (64u << 20)        /* payload limit, decompressed */

/* "scepwatch.ScepWatch/" + name */
#define SW_METHOD(name) "scepwatch.ScepWatch/" name

/* A decoded request; payload points into the caller's buffer. */
struct sw_rpc_request {
    char method[64];
    uint64_t request_id;
    uint64_t deadline_ms;       /* absolute, ms since epoch; 0 = none */
    int reply_plain;            /* the caller asks for an uncompressed reply */
    const unsigned char *payload;
    size_t payload_len;
};

/* A decoded reply. */
struct sw_rpc_reply {
    uint64_t request_id;
    int status;
    char message[512];
    const unsigned char *payload;
    size_t payload_len;
};

/*
 * Decompresses one zstd frame of 'n' bytes into out (replacing its
 * content).  declared is the size the envelope announced; max_raw the
 * receiver's limit.  Errors: SW_ETOOBIG (over max_raw, or more than
 * declared), SW_EPROTO (not a single valid frame, or size mismatch),
 * SW_ENOMEM.
 */
sw_err sw_zstd_decompress_bounded(void *dctx, const void *src, size_t n,
                                  uint64_t declared, size_t max_raw, struct sw_buf *out);

/* One-shot compression at 'level' into out (replacing its content). */
sw_err sw_zstd_compress(void *cctx, const void *src, size_t n, int level, struct sw_buf *out);

/*
 * Encodes an envelope around payload into out.  cctx may be NULL
 * (no compression).  flags: SW_RPC_REPLY_PLAIN asks for an uncompressed
 * reply (a caller on a local socket).
 */
#define SW_RPC_REPLY_PLAIN 1u
sw_err sw_rpc_encode_request(void *cctx, const char *method, uint64_t request_id,
                             uint64_t deadline_ms, const void *payload, size_t len,
                             unsigned flags, struct sw_buf *out);
sw_err sw_rpc_encode_reply(void *cctx, uint64_t request_id, int status, const char *message,
                           const void *payload, size_t len, struct sw_buf *out);

/*
 * Decodes an envelope of 'n' bytes into env (about n bytes; an
 * uncompressed payload is used where it lies there); a compressed payload
 * is inflated into scratch (bounded by max_raw).  The payload lives until
 * the next decode with the same buffers: keep them from call to call, and
 * each message reuses the memory of the one before.  On failure, *status
 * says what to answer (INVALID_ARGUMENT or RESOURCE_EXHAUSTED) and msg
 * (cap bytes) why.
 */
sw_err sw_rpc_decode_request(void *dctx, const void *msg, size_t n, size_t max_raw,
                             struct sw_buf *env, struct sw_buf *scratch,
                             struct sw_rpc_request *out, int *status, char *why, size_t why_cap);
sw_err sw_rpc_decode_reply(void *dctx, const void *msg, size_t n, size_t max_raw,
                           struct sw_buf *env, struct sw_buf *scratch, struct sw_rpc_reply *out);

/* ---- client ---- */

struct sw_rpc_client;

/*
 * Connects to url (nng address).  Fails with SW_EUNAVAIL at once when
 * nothing listens there.  timeout_ms bounds each call.
 */
sw_err sw_rpc_client_open(struct sw_rpc_client **out, const char *url, int timeout_ms);
void sw_rpc_client_close(struct sw_rpc_client *c);

/*
 * Calls method with payload; on SW_OK, *reply holds the server's status,
 * message and payload (valid until the next call).  Errors: SW_ETIMEDOUT,
 * SW_EUNAVAIL, SW_EPROTO (bad reply), SW_ENOMEM.
 */
sw_err sw_rpc_call(struct sw_rpc_client *c, const char *method, const void *payload,
                   size_t len, struct sw_rpc_reply *reply);

/*
 * sw_rpc_call in two halves, so a caller can work while the server does
 * (a pager asks for the next page, then prints this one).  One request is
 * outstanding at a time; the reply's payload lives until the next recv.
 */
sw_err sw_rpc_send(struct sw_rpc_client *c, const char *method, const void *payload, size_t len);
sw_err sw_rpc_recv(struct sw_rpc_client *c, struct sw_rpc_reply *reply);

/* Bytes of the last request as sent (envelope and compressed payload). */
size_t sw_rpc_client_last_request_bytes(const struct sw_rpc_client *c);

/* Human-readable text for the last transport failure, for messages. */
const char *sw_rpc_client_error(const struct sw_rpc_client *c);

#endif
