/*
 * correlate.c - enrollments, issuances, statuses and time-window matching.
 */
#include "correlate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[] = {
#define X(c, n) [c] = n,
    AGG_STATUS_MAP(X)
#undef X
};

static const char *const link_names[] = {
#define X(c, n) [c] = n,
    AGG_LINK_MAP(X)
#undef X
};

const char *
agg_status_name(enum agg_status s)
{
    return (unsigned)s < AGG_STATUS_COUNT ? status_names[s] : "none";
}

enum agg_status
agg_status_from_name(const char *s)
{
    for (int i = 1; i < AGG_STATUS_COUNT; i++)
        if (strcmp(status_names[i], s) == 0)
            return (enum agg_status)i;
    return AGG_STATUS_NONE;
}

int
agg_status_is_final(enum agg_status s)
{
    return s == AGG_STATUS_INSTALLED || s == AGG_STATUS_FAILED;
}

const char *
agg_link_name(enum agg_link l)
{
    return (unsigned)l < AGG_LINK_COUNT ? link_names[l] : "";
}

static void
copy_slice(char *dst, size_t cap, struct sw_slice s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n)
        memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

/* Cut-short ids ("39907") are the same profile as the full GUID. */
static int
profile_compatible(const char *have, struct sw_slice p)
{
    size_t hl = strlen(have), n = hl < p.len ? hl : p.len;
    return memcmp(have, p.ptr, n) == 0;
}

static int
is_request_stage(enum sw_stage s)
{
    return s == SW_STAGE_PROFILE_RECEIVED || s == SW_STAGE_CACERT_REQUESTED ||
           s == SW_STAGE_CACAPS_REQUESTED || s == SW_STAGE_CSR_GENERATED ||
           s == SW_STAGE_ENROLL_REQUESTED;
}

/* The stage after which a platform's SCEP certificate is usable. */
static int
is_final_install(enum sw_platform p, enum sw_stage s)
{
    if (p == SW_PLATFORM_ANDROID)
        return s == SW_STAGE_ACCESS_GRANTED;
    return s == SW_STAGE_INSTALLED || s == SW_STAGE_ACCESS_GRANTED;
}

static void
start(struct agg_enrollment *e, const struct sw_event *ev, int seq)
{
    memset(e, 0, sizeof *e);
    copy_slice(e->device, sizeof e->device, ev->device);
    e->platform = ev->platform;
    e->seq = seq;
    e->first_us = ev->ts_us;
}

static void
apply(struct agg_enrollment *e, const struct sw_event *ev)
{
    if (ev->profile.len && (e->profile_guessed || strlen(e->profile) < ev->profile.len)) {
        copy_slice(e->profile, sizeof e->profile, ev->profile); /* the longest form seen */
        e->profile_guessed = 0;
    }
    if (ev->txn.len)
        copy_slice(e->txn, sizeof e->txn, ev->txn);
    if (ev->thumbprint.len)
        copy_slice(e->thumbprint, sizeof e->thumbprint, ev->thumbprint);
    if (ev->serial.len)
        copy_slice(e->serial, sizeof e->serial, ev->serial);
    e->last_us = ev->ts_us;
    e->last_stage = ev->stage;
    if (is_final_install(e->platform, ev->stage)) {
        if (!e->installed_us)
            e->installed_us = ev->ts_us;
        e->failed = 0;
        e->pending = 0;
        if (!e->device_issued_us)
            e->device_issued_us = ev->ts_us;
        return;
    }
    switch (ev->stage) {
    case SW_STAGE_CSR_GENERATED:
    case SW_STAGE_ENROLL_REQUESTED:
        if (!e->request_us)
            e->request_us = ev->ts_us;
        break;
    case SW_STAGE_ENROLL_PENDING:
        e->pending = 1;
        e->failed = 0;
        break;
    case SW_STAGE_ENROLL_ISSUED:
        if (!e->device_issued_us)
            e->device_issued_us = ev->ts_us;
        e->pending = 0;
        e->failed = 0;
        break;
    case SW_STAGE_ENROLL_FAILED:
    case SW_STAGE_INSTALL_FAILED:
        e->failed = 1;
        e->pending = 0;
        copy_slice(e->detail, sizeof e->detail, ev->detail.len ? ev->detail
                                                                 : sw_slice_cstr(sw_stage_name(ev->stage)));
        break;
    case SW_STAGE_INSTALL_REQUESTED:
    case SW_STAGE_INSTALLING:
    case SW_STAGE_ACCESS_REQUESTED:
    case SW_STAGE_INSTALLED:    /* Android: installed, but the app has no access yet */
        e->install_state = ev->stage;
        e->failed = 0;
        e->pending = 0;
        if (!e->device_issued_us)
            e->device_issued_us = ev->ts_us;
        if (ev->detail.len)
            copy_slice(e->detail, sizeof e->detail, ev->detail);
        else
            e->detail[0] = '\0';
        break;
    default:
        break;
    }
}

static int
finished(const struct agg_enrollment *e)
{
    return e->installed_us || e->failed;
}

/* The newest enrollment whose profile fits p (open ones first), or -1. */
static int
find_profile(const struct agg_enrollment *v, int n, struct sw_slice p)
{
    int best = -1;
    for (int i = n - 1; i >= 0; i--) {
        if (!v[i].profile[0] || !profile_compatible(v[i].profile, p))
            continue;
        if (!finished(&v[i]))
            return i;
        if (best < 0)
            best = i;
    }
    return best;
}

static int
find_txn(const struct agg_enrollment *v, int n, struct sw_slice t)
{
    for (int i = n - 1; i >= 0; i--)
        if (strlen(v[i].txn) == t.len && memcmp(v[i].txn, t.ptr, t.len) == 0)
            return i;
    return -1;
}

/*
 * A device may run several enrollments at once (Company Portal works
 * through "There are 3 requests" while an earlier one polls as pending,
 * and install state machines run side by side), so each event goes to
 * the enrollment it names: by profile, else by SCEP transaction id, else
 * to the request flow in progress ("current").
 */
void
agg_segment_device(const struct sw_event *evs, size_t n, agg_enrollment_fn fn, void *arg)
{
    struct agg_enrollment *v = NULL;
    int nv = 0, cap = 0, cur = -1;

    for (size_t i = 0; i < n; i++) {
        const struct sw_event *ev = &evs[i];
        int req = is_request_stage(ev->stage);
        int k = -1, fresh = 0;

        if (ev->profile.len) {
            k = find_profile(v, nv, ev->profile);
            if (k >= 0 && finished(&v[k]) && req)
                k = -1, fresh = 1;              /* a retry or a renewal */
            if (k < 0 && !fresh && cur >= 0 && (!v[cur].profile[0] || v[cur].profile_guessed) &&
                !finished(&v[cur]) &&
                !(ev->stage == SW_STAGE_PROFILE_RECEIVED && v[cur].request_us))
                k = cur;                        /* the flow in progress learns its profile */
        } else if (ev->txn.len && (k = find_txn(v, nv, ev->txn)) >= 0) {
            /* a later answer to a known transaction */
        } else if (cur >= 0 && !(finished(&v[cur]) && req)) {
            k = cur;
        } else if (cur < 0 && !req && nv > 0) {
            k = nv - 1;     /* no request seen yet: the latest enrollment */
        }
        if (k < 0) {
            if (nv == cap) {
                int nc = cap ? cap * 2 : 8;
                struct agg_enrollment *nvp = realloc(v, (size_t)nc * sizeof *nvp);
                if (!nvp)
                    break;  /* out of memory: report what we have */
                v = nvp;
                cap = nc;
            }
            k = nv++;
            start(&v[k], ev, k + 1);
            /* a retry after a failure, without a profile line, retries that profile */
            if (!ev->profile.len && cur >= 0 && v[cur].profile[0] && v[cur].failed) {
                memcpy(v[k].profile, v[cur].profile, sizeof v[k].profile);
                v[k].profile_guessed = 1;
            }
        }
        if (req || ev->txn.len)
            cur = k;
        apply(&v[k], ev);
    }
    for (int i = 0; i < nv; i++)
        fn(arg, &v[i]);
    free(v);
}

/* The stage that decides an issuance's state; higher wins. */
static int
ca_rank(enum sw_stage s)
{
    switch (s) {
    case SW_STAGE_CA_RECEIVED: return 1;
    case SW_STAGE_CA_PENDING: return 2;
    case SW_STAGE_CA_DENIED: return 3;
    case SW_STAGE_CA_ISSUED: return 4;
    case SW_STAGE_CA_REVOKED: return 5;
    default: return 0;
    }
}

static void
widen(int64_t *lo, int64_t *hi, int64_t a, int64_t b)
{
    if (!*lo || a < *lo)
        *lo = a;
    if (!*hi || b > *hi)
        *hi = b;
}

/* A time interval that keeps exact observations apart from minute-rounded ones. */
struct when {
    int64_t lo, hi;             /* exact observations */
    int64_t rlo, rhi;           /* rounded ones (certutil): [minute, minute + 59.999999 s] */
};

static void
observe(struct when *w, const struct sw_event *ev)
{
    if (ev->source == SW_SOURCE_CA_CERTUTIL_CSV)
        widen(&w->rlo, &w->rhi, ev->ts_us, ev->ts_us + 59999999);
    else
        widen(&w->lo, &w->hi, ev->ts_us, ev->ts_us);
}

/* Exact times win; rounded ones only stand in when nothing exact was seen. */
static void
settle(const struct when *w, int64_t *lo, int64_t *hi)
{
    *lo = w->lo ? w->lo : w->rlo;
    *hi = w->lo ? w->hi : w->rhi;
}

void
agg_fold_issuance(const struct sw_event *evs, size_t n, struct agg_issuance *out)
{
    struct when recv = { 0 }, issued = { 0 }, denied = { 0 };
    int rank = 0;

    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        const struct sw_event *ev = &evs[i];
        int r = ca_rank(ev->stage);
        if (!r)
            continue;
        if (!out->request_id[0])
            copy_slice(out->request_id, sizeof out->request_id, ev->request_id);
        if (r > rank) {
            rank = r;
            out->state = ev->stage;
        }
        if (ev->ts_us > out->last_us)
            out->last_us = ev->ts_us;
        switch (ev->stage) {
        case SW_STAGE_CA_RECEIVED:
        case SW_STAGE_CA_PENDING:
            observe(&recv, ev);
            break;
        case SW_STAGE_CA_ISSUED:
            observe(&issued, ev);
            break;
        case SW_STAGE_CA_DENIED:
            observe(&denied, ev);
            if (ev->detail.len)
                copy_slice(out->detail, sizeof out->detail, ev->detail);
            break;
        default:
            break;
        }
        if (ev->serial.len)
            copy_slice(out->serial, sizeof out->serial, ev->serial);
        if (ev->thumbprint.len)
            copy_slice(out->thumbprint, sizeof out->thumbprint, ev->thumbprint);
        if (ev->txn.len)
            copy_slice(out->txn, sizeof out->txn, ev->txn);
        if (ev->subject.len)
            copy_slice(out->subject, sizeof out->subject, ev->subject);
        if (ev->template.len)
            copy_slice(out->template_name, sizeof out->template_name, ev->template);
    }
    settle(&recv, &out->recv_lo, &out->recv_hi);
    settle(&issued, &out->issued_lo, &out->issued_hi);
    /* receipt unknown: an immediate answer happened when it was received */
    if (!out->recv_lo) {
        if (out->issued_lo) {
            out->recv_lo = out->issued_lo;
            out->recv_hi = out->issued_hi;
        } else {
            settle(&denied, &out->recv_lo, &out->recv_hi);
        }
    }
    if (out->state == SW_STAGE_CA_DENIED && !out->detail[0])
        snprintf(out->detail, sizeof out->detail, "denied by the CA");
}

static int
iss_issued(const struct agg_issuance *iss)
{
    return iss && (iss->state == SW_STAGE_CA_ISSUED || iss->state == SW_STAGE_CA_REVOKED);
}

enum agg_status
agg_enrollment_status(const struct agg_enrollment *e, const struct agg_issuance *iss,
                      int64_t *since_us)
{
    int64_t last = e->last_us;
    if (iss && iss->last_us > last)
        last = iss->last_us;
    if (e->installed_us) {
        *since_us = e->installed_us;
        return AGG_STATUS_INSTALLED;
    }
    if (e->failed || (iss && iss->state == SW_STAGE_CA_DENIED && !e->device_issued_us)) {
        *since_us = last;
        return AGG_STATUS_FAILED;
    }
    if (e->install_state == SW_STAGE_ACCESS_REQUESTED || e->install_state == SW_STAGE_INSTALLED) {
        *since_us = e->last_us;
        return AGG_STATUS_WAITING_USER_ACCESS;
    }
    if (e->install_state == SW_STAGE_INSTALL_REQUESTED || e->install_state == SW_STAGE_INSTALLING) {
        *since_us = e->last_us;
        return AGG_STATUS_WAITING_USER_INSTALL;
    }
    if (iss_issued(iss) && !e->device_issued_us) {
        *since_us = iss->issued_lo;
        return AGG_STATUS_ISSUED_NOT_DELIVERED;
    }
    if (e->device_issued_us) {
        /* the device has the certificate but never logged installing it */
        *since_us = e->device_issued_us;
        return AGG_STATUS_WAITING_USER_INSTALL;
    }
    if (e->pending || (iss && iss->state == SW_STAGE_CA_PENDING)) {
        *since_us = last;
        return AGG_STATUS_PENDING;
    }
    *since_us = last;
    return AGG_STATUS_REQUESTED_NOT_ISSUED;
}

enum agg_status
agg_orphan_status(const struct agg_issuance *iss, int64_t *since_us)
{
    switch (iss->state) {
    case SW_STAGE_CA_ISSUED:
        *since_us = iss->issued_lo;
        return AGG_STATUS_ORPHAN_ISSUANCE;
    case SW_STAGE_CA_REVOKED:
        *since_us = 0;          /* revoked: nothing to wait for, never stuck */
        return AGG_STATUS_ORPHAN_ISSUANCE;
    case SW_STAGE_CA_DENIED:
        *since_us = iss->last_us;
        return AGG_STATUS_FAILED;
    case SW_STAGE_CA_PENDING:
        *since_us = iss->last_us;
        return AGG_STATUS_PENDING;
    default:
        *since_us = iss->last_us;
        return AGG_STATUS_REQUESTED_NOT_ISSUED;
    }
}

/* ---- matching ---- */

struct pair {
    int64_t dist;
    uint32_t e, i;
};

struct sort_ctx {
    const struct agg_cand_enr *enr;
    const struct agg_cand_iss *iss;
};

static int
pair_cmp(const void *a, const void *b, void *arg)
{
    const struct sort_ctx *sc = arg;
    const struct pair *p = a, *q = b;
    int c;
    if (p->dist != q->dist)
        return p->dist < q->dist ? -1 : 1;
    if ((c = strcmp(sc->enr[p->e].tiebreak, sc->enr[q->e].tiebreak)) != 0)
        return c;
    return strcmp(sc->iss[p->i].tiebreak, sc->iss[q->i].tiebreak);
}

static int64_t
dist_to(int64_t t, int64_t lo, int64_t hi)
{
    if (!t || !lo)
        return INT64_MAX;
    if (t < lo)
        return lo - t;
    if (t > hi)
        return t - hi;
    return 0;
}

static int
iss_recv_cmp(const void *a, const void *b, void *arg)
{
    const struct agg_cand_iss *iss = ((const struct sort_ctx *)arg)->iss;
    const struct agg_cand_iss *x = &iss[*(const uint32_t *)a], *y = &iss[*(const uint32_t *)b];
    return x->recv_lo < y->recv_lo ? -1 : x->recv_lo > y->recv_lo;
}

static int
iss_issued_cmp(const void *a, const void *b, void *arg)
{
    const struct agg_cand_iss *iss = ((const struct sort_ctx *)arg)->iss;
    const struct agg_cand_iss *x = &iss[*(const uint32_t *)a], *y = &iss[*(const uint32_t *)b];
    return x->issued_lo < y->issued_lo ? -1 : x->issued_lo > y->issued_lo;
}

/* First index in ord (sorted by key) whose key >= v. */
static size_t
lower_bound(const uint32_t *ord, size_t n, const struct agg_cand_iss *iss, int by_issued, int64_t v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int64_t k = by_issued ? iss[ord[mid]].issued_lo : iss[ord[mid]].recv_lo;
        if (k < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

#define MAX_SPAN_US (60LL * 1000000)   /* widest interval (certutil minutes) */

int
agg_match_time(struct agg_cand_enr *enr, size_t ne, struct agg_cand_iss *iss, size_t ni,
               int64_t window_us, agg_compat_fn compat, void *compat_arg)
{
    uint32_t *by_recv = malloc((ni ? ni : 1) * sizeof *by_recv);
    uint32_t *by_issued = malloc((ni ? ni : 1) * sizeof *by_issued);
    struct pair *pairs = NULL;
    size_t np = 0, cap = 0;
    int rc = -1;

    for (size_t k = 0; k < ne; k++)
        enr[k].match = -1;
    for (size_t k = 0; k < ni; k++)
        iss[k].match = -1;
    if (!by_recv || !by_issued)
        goto out;
    for (size_t k = 0; k < ni; k++)
        by_recv[k] = by_issued[k] = (uint32_t)k;
    struct sort_ctx sc = { enr, iss };
    if (ni > 1) {
        qsort_r(by_recv, ni, sizeof *by_recv, iss_recv_cmp, &sc);
        qsort_r(by_issued, ni, sizeof *by_issued, iss_issued_cmp, &sc);
    }

    for (size_t e = 0; e < ne; e++) {
        for (int pass = 0; pass < 2; pass++) {
            int64_t t = pass == 0 ? enr[e].request_us : enr[e].device_issued_us;
            const uint32_t *ord = pass == 0 ? by_recv : by_issued;
            if (!t)
                continue;
            size_t k = lower_bound(ord, ni, iss, pass, t - window_us - MAX_SPAN_US);
            for (; k < ni; k++) {
                const struct agg_cand_iss *c = &iss[ord[k]];
                int64_t lo = pass == 0 ? c->recv_lo : c->issued_lo;
                int64_t hi = pass == 0 ? c->recv_hi : c->issued_hi;
                if (lo > t + window_us)
                    break;
                if (dist_to(t, lo, hi) > window_us)
                    continue;
                if (compat && enr[e].profile && c->template_name &&
                    !compat(compat_arg, enr[e].profile, c->template_name))
                    continue;
                /* rank a rounded interval by its middle, so an exact time
                 * seconds away beats "somewhere in that minute" */
                int64_t mid = lo + (hi - lo) / 2, d = t > mid ? t - mid : mid - t;
                if (np == cap) {
                    size_t nc = cap ? cap * 2 : 64;
                    struct pair *pp = realloc(pairs, nc * sizeof *pp);
                    if (!pp)
                        goto out;
                    pairs = pp;
                    cap = nc;
                }
                pairs[np++] = (struct pair){ d, (uint32_t)e, ord[k] };
            }
        }
    }
    if (np > 1)
        qsort_r(pairs, np, sizeof *pairs, pair_cmp, &sc);
    for (size_t k = 0; k < np; k++) {
        struct pair *p = &pairs[k];
        if (enr[p->e].match >= 0 || iss[p->i].match >= 0)
            continue;
        enr[p->e].match = (int)p->i;
        iss[p->i].match = (int)p->e;
    }
    rc = 0;
out:
    free(pairs);
    free(by_recv);
    free(by_issued);
    return rc;
}
