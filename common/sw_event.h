/*
 * sw_event.h - the in-memory SCEP lifecycle event every parser produces.
 *
 * String fields are slices: they point into memory owned by whoever
 * produced the event (a parser's line buffer or scratch area) and stay
 * valid only for the duration of the callback that receives the event.
 * A consumer that keeps an event copies it (sw_event_copy).
 *
 * The enums use the numbers of proto/scepwatch.proto, so converting
 * to and from the wire is a cast.  Names are the DESIGN contract.
 */
#ifndef SW_EVENT_H
#define SW_EVENT_H

#include <stddef.h>
#include <stdint.h>

#define SW_SOURCE_MAP(X)                        \
    X(SW_SOURCE_UNKNOWN, "unknown")             \
    X(SW_SOURCE_ANDROID_OMADM, "android_omadm") \
    X(SW_SOURCE_IOS_CONSOLE, "ios_console")     \
    X(SW_SOURCE_WINDOWS_EVENT_XML, "windows_event_xml") \
    X(SW_SOURCE_CA_CERTUTIL_CSV, "ca_certutil_csv") \
    X(SW_SOURCE_NDES_IIS, "ndes_iis")

#define SW_PLATFORM_MAP(X)                  \
    X(SW_PLATFORM_UNKNOWN, "unknown")       \
    X(SW_PLATFORM_ANDROID, "android")       \
    X(SW_PLATFORM_IOS, "ios")               \
    X(SW_PLATFORM_WINDOWS, "windows")       \
    X(SW_PLATFORM_CA, "ca")                 \
    X(SW_PLATFORM_NDES, "ndes")             \
    X(SW_PLATFORM_CONNECTOR, "connector")

/* Lifecycle order: device stages, then server stages. */
#define SW_STAGE_MAP(X)                                 \
    X(SW_STAGE_UNKNOWN, "unknown")                      \
    X(SW_STAGE_PROFILE_RECEIVED, "profile_received")    \
    X(SW_STAGE_CSR_GENERATED, "csr_generated")          \
    X(SW_STAGE_CACERT_REQUESTED, "cacert_requested")    \
    X(SW_STAGE_CACERT_RECEIVED, "cacert_received")      \
    X(SW_STAGE_CACAPS_REQUESTED, "cacaps_requested")    \
    X(SW_STAGE_CACAPS_RECEIVED, "cacaps_received")      \
    X(SW_STAGE_ENROLL_REQUESTED, "enroll_requested")    \
    X(SW_STAGE_ENROLL_PENDING, "enroll_pending")        \
    X(SW_STAGE_ENROLL_ISSUED, "enroll_issued")          \
    X(SW_STAGE_ENROLL_FAILED, "enroll_failed")          \
    X(SW_STAGE_INSTALL_REQUESTED, "install_requested")  \
    X(SW_STAGE_INSTALLING, "installing")                \
    X(SW_STAGE_ACCESS_REQUESTED, "access_requested")    \
    X(SW_STAGE_ACCESS_GRANTED, "access_granted")        \
    X(SW_STAGE_INSTALLED, "installed")                  \
    X(SW_STAGE_INSTALL_FAILED, "install_failed")        \
    X(SW_STAGE_NDES_REQUEST, "ndes_request")            \
    X(SW_STAGE_NDES_ERROR, "ndes_error")                \
    X(SW_STAGE_CHALLENGE_VERIFIED, "challenge_verified")\
    X(SW_STAGE_CHALLENGE_FAILED, "challenge_failed")    \
    X(SW_STAGE_CA_RECEIVED, "ca_received")              \
    X(SW_STAGE_CA_PENDING, "ca_pending")                \
    X(SW_STAGE_CA_ISSUED, "ca_issued")                  \
    X(SW_STAGE_CA_DENIED, "ca_denied")                  \
    X(SW_STAGE_CA_REVOKED, "ca_revoked")                \
    X(SW_STAGE_REPORTED, "reported")                    \
    X(SW_STAGE_REPORT_FAILED, "report_failed")

#define SW_CERT_MAP(X)              \
    X(SW_CERT_NONE, "none")         \
    X(SW_CERT_SCEP, "scep")         \
    X(SW_CERT_ROOT, "root")

#define SW_ENUM_ITEM(code, name) code,
enum sw_source { SW_SOURCE_MAP(SW_ENUM_ITEM) SW_SOURCE_COUNT };
enum sw_platform { SW_PLATFORM_MAP(SW_ENUM_ITEM) SW_PLATFORM_COUNT };
enum sw_stage { SW_STAGE_MAP(SW_ENUM_ITEM) SW_STAGE_COUNT };
enum sw_cert { SW_CERT_MAP(SW_ENUM_ITEM) SW_CERT_COUNT };
#undef SW_ENUM_ITEM

/* A byte range; not NUL-terminated.  len == 0 means absent. */
struct sw_slice {
    const char *ptr;
    size_t len;
};

#define SW_SLICE_NONE ((struct sw_slice){ NULL, 0 })

/* The string fields, in DESIGN order; used to iterate generically. */
#define SW_EVENT_STR_FIELDS(X) \
    X(device) X(profile) X(txn) X(thumbprint) X(serial) X(request_id) \
    X(subject) X(template) X(requester) X(detail)

struct sw_event {
    enum sw_source source;
    enum sw_platform platform;
    enum sw_stage stage;
    enum sw_cert cert;          /* SW_CERT_NONE = absent */
    int64_t ts_us;              /* microseconds since the epoch, UTC */
#define X(f) struct sw_slice f;
    SW_EVENT_STR_FIELDS(X)
#undef X
    struct sw_slice file;       /* where it was read; absent = unknown */
    struct sw_slice host;       /* sending agent's host (aggregator side) */
    uint64_t offset;            /* byte offset of the line in file */
    int has_offset;
    uint32_t line_hash;         /* hash of the raw line, part of identity */
};

/* Names; NULL for an out-of-range value. */
const char *sw_source_name(enum sw_source s);
const char *sw_platform_name(enum sw_platform p);
const char *sw_stage_name(enum sw_stage s);
const char *sw_cert_name(enum sw_cert c);

/* Reverse lookups; return the *_UNKNOWN/NONE value (0) when not found. */
enum sw_source sw_source_from_name(const char *s, size_t n);
enum sw_platform sw_platform_from_name(const char *s, size_t n);
enum sw_stage sw_stage_from_name(const char *s, size_t n);

/* The 32-bit hash of a raw line that goes into Event.line_hash. */
uint32_t sw_line_hash(const void *line, size_t len);

/*
 * The event's identity (DESIGN): device plus a hash of its content
 * (source, stage, time, keys, detail and the raw line's hash), not where
 * it was read.  Laid out to keep the store's unique index local: 4 bytes
 * of the device's hash, the time (8 bytes, big-endian, order-preserving),
 * then 12 bytes of the content hash, so a batch holding runs of a few
 * devices' events inserts into a few neighbouring index pages, not one
 * random page an event.
 */
#define SW_EVENT_IDENT_LEN 24
void sw_event_identity(const struct sw_event *ev, unsigned char out[SW_EVENT_IDENT_LEN]);

/*
 * The identities a device's events can have: [lo, hi] (inclusive, as
 * blobs) holds every one of them, in time order, and only events of
 * devices sharing the 32-bit device hash besides (filter by device).  An
 * empty device is the device of events that name none.
 */
void sw_event_ident_range(const char *device, size_t len, unsigned char lo[SW_EVENT_IDENT_LEN],
                          unsigned char hi[SW_EVENT_IDENT_LEN]);

static inline struct sw_slice
sw_slice_cstr(const char *s)
{
    struct sw_slice sl = { s, 0 };
    if (s)
        while (s[sl.len])
            sl.len++;
    return sl;
}

#endif
