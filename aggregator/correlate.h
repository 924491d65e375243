/*
 * correlate.h - the correlation engine's pure logic: turning one device's
 * events into enrollments, one CA request's events into an issuance,
 * matching enrollments to issuances, and the status rules of DESIGN
 * § Correlation.  No I/O: the store feeds it sorted events and keeps what
 * it returns, so every rule here is a deterministic function of the set
 * of events (arrival order cannot change an answer).
 */
#ifndef AGG_CORRELATE_H
#define AGG_CORRELATE_H

#include <stddef.h>
#include <stdint.h>

#include "sw_event.h"

#define AGG_STATUS_MAP(X)                                       \
    X(AGG_STATUS_NONE, "none")                                  \
    X(AGG_STATUS_INSTALLED, "installed")                        \
    X(AGG_STATUS_FAILED, "failed")                              \
    X(AGG_STATUS_WAITING_USER_ACCESS, "waiting_user_access")    \
    X(AGG_STATUS_WAITING_USER_INSTALL, "waiting_user_install")  \
    X(AGG_STATUS_ISSUED_NOT_DELIVERED, "issued_not_delivered")  \
    X(AGG_STATUS_PENDING, "pending")                            \
    X(AGG_STATUS_REQUESTED_NOT_ISSUED, "requested_not_issued")  \
    X(AGG_STATUS_ORPHAN_ISSUANCE, "orphan_issuance")

enum agg_status {
#define X(c, n) c,
    AGG_STATUS_MAP(X)
#undef X
    AGG_STATUS_COUNT
};

const char *agg_status_name(enum agg_status s);
enum agg_status agg_status_from_name(const char *s);
/* installed and failed are final: never stuck. */
int agg_status_is_final(enum agg_status s);

#define AGG_LINK_MAP(X)                 \
    X(AGG_LINK_NONE, "")                \
    X(AGG_LINK_THUMBPRINT, "thumbprint")\
    X(AGG_LINK_TXN, "txn")              \
    X(AGG_LINK_SERIAL, "serial")        \
    X(AGG_LINK_TIME, "time")

enum agg_link {
#define X(c, n) c,
    AGG_LINK_MAP(X)
#undef X
    AGG_LINK_COUNT
};

const char *agg_link_name(enum agg_link l);

#define AGG_ID_MAX 96
#define AGG_DETAIL_MAX 256

/* One device asking for one certificate for one profile. */
struct agg_enrollment {
    char device[256];
    enum sw_platform platform;
    int seq;                        /* 1.. per device, in time order */
    char profile[AGG_ID_MAX];
    int profile_guessed;            /* carried over from a failed attempt, not logged */
    int64_t first_us;               /* first event */
    int64_t request_us;             /* first CSR / enroll request; 0 = never reached the CA */
    int64_t device_issued_us;       /* device logged receiving the cert; 0 = never */
    int64_t installed_us;           /* final install stage; 0 = not reached */
    int64_t last_us;                /* last device event */
    enum sw_stage last_stage;
    int pending;                    /* latest SCEP answer was PENDING */
    int failed;                     /* latest outcome is a failure */
    enum sw_stage install_state;    /* Android's last install state, or UNKNOWN */
    char txn[AGG_ID_MAX];
    char thumbprint[AGG_ID_MAX];
    char serial[AGG_ID_MAX];
    char detail[AGG_DETAIL_MAX];
};

/* One CA request (by request id), folded from its CA events. */
struct agg_issuance {
    char request_id[32];
    enum sw_stage state;            /* ca_received/pending/issued/denied/revoked: the latest in precedence */
    int64_t recv_lo, recv_hi;       /* when the CA received it (interval: certutil has minutes) */
    int64_t issued_lo, issued_hi;   /* when it issued it; 0 = not issued */
    int64_t last_us;                /* latest CA event */
    char serial[AGG_ID_MAX];
    char thumbprint[AGG_ID_MAX];
    char txn[AGG_ID_MAX];
    char subject[256];
    char template_name[128];
    char detail[AGG_DETAIL_MAX];
};

/* Receives each finished enrollment of agg_segment_device. */
typedef void (*agg_enrollment_fn)(void *arg, const struct agg_enrollment *e);

/*
 * Splits one device's SCEP events (cert = scep; sorted by ts, ties in a
 * fixed order) into enrollments.  A new enrollment starts when a request
 * stage (profile_received, cacert/cacaps_requested, csr_generated,
 * enroll_requested) follows a finished one (installed or failed), when a
 * different profile appears, or when a profile is received after a request
 * that named none went out.  Events without a profile join the device's
 * open enrollment (Android jscep, most iOS lines).
 */
void agg_segment_device(const struct sw_event *evs, size_t n, agg_enrollment_fn fn, void *arg);

/* Folds one request id's CA events (any order) into an issuance. */
void agg_fold_issuance(const struct sw_event *evs, size_t n, struct agg_issuance *out);

/*
 * The status of an enrollment given its linked issuance (NULL = none),
 * and the time it has been in that status since (for stuck).
 */
enum agg_status agg_enrollment_status(const struct agg_enrollment *e,
                                      const struct agg_issuance *iss, int64_t *since_us);

/* The status of an issuance no enrollment matched. */
enum agg_status agg_orphan_status(const struct agg_issuance *iss, int64_t *since_us);

/* ---- time-window matching ---- */

struct agg_cand_enr {
    int64_t request_us;             /* > 0 */
    int64_t device_issued_us;       /* 0 = none */
    const char *tiebreak;           /* a stable unique key (device + seq) */
    int match;                      /* out: index into issuances, or -1 */
    const char *profile;            /* NULL = unknown */
};

struct agg_cand_iss {
    int64_t recv_lo, recv_hi;       /* 0 = unknown */
    int64_t issued_lo, issued_hi;   /* 0 = unknown */
    const char *tiebreak;           /* request id */
    int match;                      /* out: index into enrollments, or -1 */
    const char *template_name;      /* NULL = unknown */
};

/*
 * Whether an enrollment of this profile may be issued under this template
 * (both known); NULL callback = always.  The store answers from the pairs
 * that thumbprint/txn/serial links have shown.
 */
typedef int (*agg_compat_fn)(void *arg, const char *profile, const char *template_name);

/*
 * Pairs enrollments with issuances whose times agree within window_us:
 * the enrollment's first request against the CA's receipt, or the
 * device's receipt of the certificate against the CA's issue time.  All
 * candidate pairs are taken in order of distance (to the middle of a
 * rounded interval, so exact times win; ties by the keys), each side used
 * once: a deterministic function of the two sets.
 * Returns 0, or -1 when out of memory.
 */
int agg_match_time(struct agg_cand_enr *enr, size_t ne, struct agg_cand_iss *iss, size_t ni,
                   int64_t window_us, agg_compat_fn compat, void *compat_arg);

#endif
