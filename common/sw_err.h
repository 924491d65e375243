/*
 * sw_err.h - the one error type of scepwatch.
 *
 * SW_ERR_MAP is the single source of truth: the enum and the message table
 * are both generated from it.  Functions return sw_err; they do not log,
 * their caller decides (log once, at the level that knows the context).
 */
#ifndef SW_ERR_H
#define SW_ERR_H

#define SW_ERR_MAP(X)                                              \
    X(SW_OK,        "success")                                     \
    X(SW_ENOMEM,    "out of memory")                               \
    X(SW_EINVAL,    "invalid argument")                            \
    X(SW_EIO,       "I/O error")                                   \
    X(SW_ENOENT,    "no such file")                                \
    X(SW_EFULL,     "full")                                        \
    X(SW_EPARSE,    "input does not match the expected format")    \
    X(SW_EPROTO,    "malformed message on the wire")               \
    X(SW_ETOOBIG,   "message exceeds the size limit")              \
    X(SW_ETIMEDOUT, "timed out")                                   \
    X(SW_ECLOSED,   "object closed")                               \
    X(SW_EUNAVAIL,  "service unavailable")                         \
    X(SW_EDB,       "database error")                              \
    X(SW_EREMOTE,   "the peer answered with an error status")

typedef enum sw_err {
#define X(code, msg) code,
    SW_ERR_MAP(X)
#undef X
    SW_ERR_COUNT
} sw_err;

/* Static text for e; never NULL. */
const char *sw_strerror(sw_err e);

/* Maps an errno value to the closest sw_err. */
sw_err sw_err_from_errno(int e);

#endif
