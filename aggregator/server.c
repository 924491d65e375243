/*
 * server.c - nng REP server with worker contexts, and the method table.
 */
#include "server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "scepwatch.pb-c.h"
#include "sw_arena.h"
#include "sw_buf.h"
#include "sw_log.h"
#include "sw_rpc.h"
#include "sw_time.h"
#include "sw_wire.h"

#define MAX_PAGE 10000
#define DEFAULT_PAGE 1000
#define INGEST_MAX_MEM (128u << 20)
#define BATCH_KEEP (32u << 20)  /* a larger decoded batch's memory is given back */

struct worker {
    pthread_t thread;
    struct agg_server *srv;
    nng_ctx ctx;
    nng_aio *aio;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    struct sw_buf env;          /* request envelope (and an uncompressed payload) */
    struct sw_buf scratch;      /* decompressed request payload */
    struct sw_buf payload;      /* reply payload */
    struct sw_buf reply;        /* encoded reply envelope */
    struct agg_store_reader *reader;
    struct sw_arena batch;      /* the decoded ingest batch; its blocks serve the next */
    int started;
};

struct agg_server {
    struct agg_server_opts opts;
    struct agg_store *store;
    nng_socket sock;
    struct worker *workers;
    int nworkers;
    atomic_int stopping;        /* workers finish what they hold, then leave */
};

/* How often an idle worker looks at 'stopping'. */
#define WORKER_POLL_MS 200

/* A handler fills w->payload; returns a status and, on error, a message. */
typedef int (*handler_fn)(struct worker *w, const unsigned char *req, size_t n,
                          char *msg, size_t cap);

static int handle_ingest(struct worker *, const unsigned char *, size_t, char *, size_t);
static int handle_health(struct worker *, const unsigned char *, size_t, char *, size_t);
static int handle_list_events(struct worker *, const unsigned char *, size_t, char *, size_t);
static int handle_summary(struct worker *, const unsigned char *, size_t, char *, size_t);
static int handle_list_enrollments(struct worker *, const unsigned char *, size_t, char *, size_t);

static const struct method {
    const char *name;
    handler_fn fn;
    unsigned roles;             /* listeners that may call it */
} methods[] = {
    { SW_METHOD("Ingest"), handle_ingest, AGG_ROLE_INGEST },
    { SW_METHOD("Health"), handle_health, AGG_ROLE_ALL },
    { SW_METHOD("ListEvents"), handle_list_events, AGG_ROLE_ADMIN },
    { SW_METHOD("ListEnrollments"), handle_list_enrollments, AGG_ROLE_ADMIN },
    { SW_METHOD("Summary"), handle_summary, AGG_ROLE_ADMIN },
};

static sw_err
pack_msg(const ProtobufCMessage *m, struct sw_buf *out)
{
    size_t sz = protobuf_c_message_get_packed_size(m);
    sw_buf_reset(out);
    if (sw_buf_reserve(out, sz) != SW_OK)
        return SW_ENOMEM;
    out->len = protobuf_c_message_pack(m, (uint8_t *)out->data);
    return SW_OK;
}

static struct agg_store_reader *
reader(struct worker *w)
{
    if (!w->reader && w->srv->store->ops->reader_open(w->srv->store, &w->reader) != SW_OK)
        w->reader = NULL;
    return w->reader;
}

/* ---- methods ---- */

static int
handle_ingest(struct worker *w, const unsigned char *req, size_t n, char *msg, size_t cap)
{
    struct sw_wire_decoded d;
    Scepwatch__Ack ack = SCEPWATCH__ACK__INIT;
    uint32_t stored = 0, dups = 0;
    sw_err e;

    e = sw_wire_decode_batch_reuse(&w->batch, req, n, INGEST_MAX_MEM, &d, msg, cap);
    if (e != SW_OK)
        sw_arena_release(&w->batch);    /* a hostile batch may have filled it */
    if (e == SW_ETOOBIG || e == SW_ENOMEM)
        return SW_STATUS_RESOURCE_EXHAUSTED;
    if (e != SW_OK)
        return SW_STATUS_INVALID_ARGUMENT;
    /* the events point into req, which lives until the reply is sent */
    e = w->srv->store->ops->ingest(w->srv->store, d.events, d.count, d.agent_id, &stored, &dups);
    ack.has_batch_id = 1;
    ack.batch_id = d.batch_id;
    size_t used = w->batch.total;
    sw_wire_decoded_fini(&d);
    if (used > BATCH_KEEP)
        sw_arena_release(&w->batch);
    if (e != SW_OK) {
        /* not committed: the agent keeps the batch and retries */
        snprintf(msg, cap, "store: %s", sw_strerror(e));
        return SW_STATUS_UNAVAILABLE;
    }
    ack.has_stored = ack.has_duplicates = 1;
    ack.stored = stored;
    ack.duplicates = dups;
    if (pack_msg(&ack.base, &w->payload) != SW_OK)
        return SW_STATUS_RESOURCE_EXHAUSTED;
    return SW_STATUS_OK;
}

static int
handle_health(struct worker *w, const unsigned char *req, size_t n, char *msg, size_t cap)
{
    Scepwatch__HealthReply r = SCEPWATCH__HEALTH_REPLY__INIT;
    struct agg_store_reader *rd = reader(w);
    uint64_t count = 0;

    (void)req;
    (void)n;
    r.version = (char *)SW_VERSION;
    if (!rd || rd->ops->count_events(rd, &count) != SW_OK) {
        snprintf(msg, cap, "store unavailable");
        return SW_STATUS_UNAVAILABLE;
    }
    r.has_events = 1;
    r.events = count;
    return pack_msg(&r.base, &w->payload) == SW_OK ? SW_STATUS_OK : SW_STATUS_RESOURCE_EXHAUSTED;
}

struct list_acc {
    struct sw_wire_builder *b;
    sw_err err;
};

static void
list_add(void *arg, const struct sw_event *ev)
{
    struct list_acc *a = arg;
    if (a->err == SW_OK)
        a->err = sw_wire_builder_add(a->b, ev);
}

static int
handle_list_events(struct worker *w, const unsigned char *req, size_t n, char *msg, size_t cap)
{
    Scepwatch__ListEventsRequest *rq = scepwatch__list_events_request__unpack(NULL, n, req);
    struct agg_store_reader *rd = reader(w);
    struct agg_event_filter f = { 0 };
    struct agg_event_cursor cur = { 0 };
    struct list_acc acc = { NULL, SW_OK };
    size_t limit = DEFAULT_PAGE;
    unsigned char cbuf[16];
    int more = 0, status = SW_STATUS_OK;
    sw_err e;

    if (!rq) {
        snprintf(msg, cap, "malformed ListEventsRequest");
        return SW_STATUS_INVALID_ARGUMENT;
    }
    if (rq->has_page_size && rq->page_size)
        limit = rq->page_size > MAX_PAGE ? MAX_PAGE : rq->page_size;
    if (rq->has_cursor && rq->cursor.len) {
        if (rq->cursor.len != 16) {
            snprintf(msg, cap, "bad cursor");
            status = SW_STATUS_INVALID_ARGUMENT;
            goto out;
        }
        memcpy(&cur.ts_us, rq->cursor.data, 8);
        memcpy(&cur.id, rq->cursor.data + 8, 8);
        cur.valid = 1;
    }
    if (rq->filter) {
        f.device = rq->filter->device && *rq->filter->device ? rq->filter->device : NULL;
        f.since_us = rq->filter->has_since_us ? rq->filter->since_us : 0;
        f.platform = rq->filter->has_platform ? (enum sw_platform)rq->filter->platform
                                              : SW_PLATFORM_UNKNOWN;
        f.until_us = rq->filter->has_until_us ? rq->filter->until_us : 0;
        f.request_id = rq->filter->request_id && *rq->filter->request_id ? rq->filter->request_id
                                                                          : NULL;
    }
    if (!rd) {
        snprintf(msg, cap, "store unavailable");
        status = SW_STATUS_UNAVAILABLE;
        goto out;
    }
    if (!(acc.b = sw_wire_builder_new())) {
        status = SW_STATUS_RESOURCE_EXHAUSTED;
        goto out;
    }
    e = rd->ops->list_events(rd, &f, &cur, limit, &more, list_add, &acc);
    if (e != SW_OK || acc.err != SW_OK) {
        snprintf(msg, cap, "store: %s", sw_strerror(e != SW_OK ? e : acc.err));
        status = SW_STATUS_INTERNAL;
        goto out;
    }
    memcpy(cbuf, &cur.ts_us, 8);
    memcpy(cbuf + 8, &cur.id, 8);
    if (sw_wire_builder_pack_list(acc.b, cbuf, more ? 16 : 0, &w->payload) != SW_OK)
        status = SW_STATUS_RESOURCE_EXHAUSTED;
out:
    sw_wire_builder_free(acc.b);
    scepwatch__list_events_request__free_unpacked(rq, NULL);
    return status;
}

/*
 * The request's stuck policy over the configured one: as-of defaults to
 * now; older_than replaces every threshold; listed statuses override.
 */
static int
resolve_policy(struct worker *w, const Scepwatch__StuckPolicy *p, struct agg_policy *out,
               char *msg, size_t cap)
{
    out->as_of_us = p && p->has_as_of_us ? p->as_of_us : sw_now_us();
    for (int st = 0; st < AGG_STATUS_COUNT; st++) {
        int64_t t = w->srv->opts.threshold_us[st];
        if (p && p->has_older_than_us)
            t = p->older_than_us;
        out->threshold_us[st] = t > 0 ? t : (p && p->has_older_than_us ? 0 : 3600LL * 1000000);
    }
    for (size_t i = 0; p && i < p->n_thresholds; i++) {
        const Scepwatch__StuckThreshold *t = p->thresholds[i];
        enum agg_status st = t->status ? agg_status_from_name(t->status) : AGG_STATUS_NONE;
        if (st == AGG_STATUS_NONE || !t->has_threshold_us || t->threshold_us < 0) {
            snprintf(msg, cap, "bad threshold for status '%.100s'", t->status ? t->status : "");
            return -1;
        }
        out->threshold_us[st] = t->threshold_us;
    }
    return 0;
}

/*
 * Report rows packed as the store hands them over: each one is field 1 of
 * ListEnrollmentsReply (a length-delimited Enrollment), so the rows go
 * into the reply's bytes one by one, pointing at the store's strings, with
 * no copy and no allocation a row; the reply's other fields follow them.
 */
struct enr_acc {
    struct sw_buf *out;
    size_t n;
    char last_key[512];
    int oom;
};

#define ENR_ROWS_TAG 0x0a      /* ListEnrollmentsReply.rows: field 1, wire type 2 */

static void
enr_add(void *arg, const struct agg_enr_row *r)
{
    struct enr_acc *a = arg;
    Scepwatch__Enrollment e = SCEPWATCH__ENROLLMENT__INIT;

    if (a->oom)
        return;
    e.device = (char *)r->device;
    e.has_platform = 1;
    e.platform = (Scepwatch__Platform)r->platform;
    e.profile = (char *)r->profile;
    e.status = (char *)agg_status_name(r->status);
#define T(f, v) if (v) { e.has_##f = 1; e.f = v; }
    T(stuck_since_us, r->stuck_since_us)
    T(last_event_us, r->last_event_us)
    T(requested_us, r->requested_us)
    T(issued_us, r->issued_us)
    T(installed_us, r->installed_us)
    T(since_us, r->since_us)
    T(first_us, r->first_us)
#undef T
    if (r->last_stage) {
        e.has_last_stage = 1;
        e.last_stage = (Scepwatch__Stage)r->last_stage;
    }
    e.request_id = (char *)r->request_id;
    e.serial = (char *)r->serial;
    e.thumbprint = (char *)r->thumbprint;
    e.txn = (char *)r->txn;
    e.link = r->link ? (char *)agg_link_name(r->link) : NULL;
    e.detail = (char *)r->detail;
    e.subject = (char *)r->subject;
    e.template_ = (char *)r->template_name;

    size_t sz = scepwatch__enrollment__get_packed_size(&e), k = 0;
    if (sw_buf_reserve(a->out, sz + 11) != SW_OK) {
        a->oom = 1;
        return;
    }
    uint8_t *p = (uint8_t *)a->out->data + a->out->len;
    p[k++] = ENR_ROWS_TAG;
    for (uint64_t v = sz;; v >>= 7) {
        if (v < 0x80) {
            p[k++] = (uint8_t)v;
            break;
        }
        p[k++] = (uint8_t)(v | 0x80);
    }
    k += scepwatch__enrollment__pack(&e, p + k);
    a->out->len += k;
    a->n++;
    snprintf(a->last_key, sizeof a->last_key, "%s", r->rowkey ? r->rowkey : "");
}

static int
handle_list_enrollments(struct worker *w, const unsigned char *req, size_t n, char *msg,
                        size_t cap)
{
    Scepwatch__ListEnrollmentsRequest *rq = scepwatch__list_enrollments_request__unpack(NULL, n, req);
    Scepwatch__ListEnrollmentsReply rp = SCEPWATCH__LIST_ENROLLMENTS_REPLY__INIT;
    struct agg_store_reader *rd = reader(w);
    struct agg_enr_filter f = { 0 };
    struct agg_policy pol;
    struct enr_acc acc = { &w->payload, 0, "", 0 };
    char cursor[512] = "";
    size_t limit = DEFAULT_PAGE;
    int more = 0, status = SW_STATUS_OK;

    if (!rq) {
        snprintf(msg, cap, "malformed ListEnrollmentsRequest");
        return SW_STATUS_INVALID_ARGUMENT;
    }
    if (resolve_policy(w, rq->policy, &pol, msg, cap) != 0) {
        status = SW_STATUS_INVALID_ARGUMENT;
        goto out;
    }
    for (size_t i = 0; i < rq->n_status; i++) {
        enum agg_status st = agg_status_from_name(rq->status[i]);
        if (st == AGG_STATUS_NONE) {
            snprintf(msg, cap, "unknown status '%.100s'", rq->status[i]);
            status = SW_STATUS_INVALID_ARGUMENT;
            goto out;
        }
        f.status_mask |= 1u << st;
    }
    f.stuck_only = rq->has_stuck_only && rq->stuck_only;
    f.platform = rq->has_platform ? (enum sw_platform)rq->platform : SW_PLATFORM_UNKNOWN;
    f.device = rq->device;
    f.cert_key = rq->cert_key && *rq->cert_key ? rq->cert_key : NULL;
    f.brief = rq->has_brief && rq->brief;
    if (rq->has_page_size && rq->page_size)
        limit = rq->page_size > MAX_PAGE ? MAX_PAGE : rq->page_size;
    if (rq->has_cursor && rq->cursor.len) {
        if (rq->cursor.len >= sizeof cursor || memchr(rq->cursor.data, 0, rq->cursor.len)) {
            snprintf(msg, cap, "bad cursor");
            status = SW_STATUS_INVALID_ARGUMENT;
            goto out;
        }
        memcpy(cursor, rq->cursor.data, rq->cursor.len);
    }
    sw_buf_reset(&w->payload);
    if (!rd || rd->ops->list_enrollments(rd, &f, &pol, cursor, limit, &more, enr_add, &acc) != SW_OK) {
        snprintf(msg, cap, "store unavailable");
        status = SW_STATUS_UNAVAILABLE;
        goto out;
    }
    if (acc.oom) {
        status = SW_STATUS_RESOURCE_EXHAUSTED;
        goto out;
    }
    /* the rows are packed; the other fields after them */
    rp.has_as_of_us = 1;
    rp.as_of_us = pol.as_of_us;
    if ((rp.correlation_backlog = rd->ops->backlog(rd)) != 0)
        rp.has_correlation_backlog = 1;
    if (more) {
        rp.has_next_cursor = 1;
        rp.next_cursor.data = (uint8_t *)acc.last_key;
        rp.next_cursor.len = strlen(acc.last_key);
    }
    size_t tail = protobuf_c_message_get_packed_size(&rp.base);
    if (sw_buf_reserve(&w->payload, tail) != SW_OK) {
        status = SW_STATUS_RESOURCE_EXHAUSTED;
        goto out;
    }
    w->payload.len += protobuf_c_message_pack(&rp.base,
                                              (uint8_t *)w->payload.data + w->payload.len);
out:
    scepwatch__list_enrollments_request__free_unpacked(rq, NULL);
    return status;
}

struct funnel_acc {
    Scepwatch__FunnelRow rows[SW_PLATFORM_COUNT];
    Scepwatch__FunnelRow *ptrs[SW_PLATFORM_COUNT];
    size_t n;
};

static void
funnel_add(void *arg, const struct agg_funnel_row *r)
{
    struct funnel_acc *a = arg;
    if (a->n == SW_PLATFORM_COUNT)
        return;
    Scepwatch__FunnelRow *f = &a->rows[a->n];
    scepwatch__funnel_row__init(f);
    f->has_platform = f->has_enrollments = f->has_requested = f->has_issued = 1;
    f->has_delivered = f->has_installed = f->has_stuck = f->has_failed = 1;
    f->platform = (Scepwatch__Platform)r->platform;
    f->enrollments = r->enrollments;
    f->requested = r->requested;
    f->issued = r->issued;
    f->delivered = r->delivered;
    f->installed = r->installed;
    f->stuck = r->stuck;
    f->failed = r->failed;
    a->ptrs[a->n] = f;
    a->n++;
}

static int
handle_summary(struct worker *w, const unsigned char *req, size_t n, char *msg, size_t cap)
{
    Scepwatch__SummaryRequest *rq = scepwatch__summary_request__unpack(NULL, n, req);
    Scepwatch__SummaryReply rp = SCEPWATCH__SUMMARY_REPLY__INIT;
    struct agg_store_reader *rd = reader(w);
    struct funnel_acc acc = { .n = 0 };
    struct agg_policy pol;
    int status = SW_STATUS_OK;

    if (!rq) {
        snprintf(msg, cap, "malformed SummaryRequest");
        return SW_STATUS_INVALID_ARGUMENT;
    }
    if (resolve_policy(w, rq->policy, &pol, msg, cap) != 0) {
        status = SW_STATUS_INVALID_ARGUMENT;
    } else if (!rd || rd->ops->funnel(rd, &pol, funnel_add, &acc) != SW_OK) {
        snprintf(msg, cap, "store unavailable");
        status = SW_STATUS_UNAVAILABLE;
    } else {
        rp.n_rows = acc.n;
        rp.rows = acc.ptrs;
        rp.has_as_of_us = 1;
        rp.as_of_us = pol.as_of_us;
        if ((rp.correlation_backlog = rd->ops->backlog(rd)) != 0)
            rp.has_correlation_backlog = 1;
        if (pack_msg(&rp.base, &w->payload) != SW_OK)
            status = SW_STATUS_RESOURCE_EXHAUSTED;
    }
    scepwatch__summary_request__free_unpacked(rq, NULL);
    return status;
}

/* ---- dispatch ---- */

static void
handle(struct worker *w, const void *body, size_t len)
{
    struct sw_rpc_request rq;
    char msg[512] = "";
    int status;
    const struct method *m = NULL;

    sw_buf_reset(&w->payload);
    if (sw_rpc_decode_request(w->dctx, body, len, w->srv->opts.max_raw, &w->env, &w->scratch, &rq,
                              &status, msg, sizeof msg) != SW_OK)
        goto answer;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(methods[i].name, rq.method) == 0)
            m = &methods[i];
    if (!m) {
        status = SW_STATUS_UNIMPLEMENTED;
        snprintf(msg, sizeof msg, "unknown method '%.200s'", rq.method);
    } else if (!(m->roles & w->srv->opts.roles)) {
        status = SW_STATUS_PERMISSION_DENIED;
        snprintf(msg, sizeof msg, "%s is not served on this listener", m->name);
    } else if (rq.deadline_ms && (uint64_t)(sw_now_us() / 1000) > rq.deadline_ms) {
        status = SW_STATUS_DEADLINE_EXCEEDED;
        snprintf(msg, sizeof msg, "deadline passed before the request was served");
    } else {
        status = m->fn(w, rq.payload, rq.payload_len, msg, sizeof msg);
    }
    if (status != SW_STATUS_OK)
        sw_buf_reset(&w->payload);
answer:
    if (status != SW_STATUS_OK && status != SW_STATUS_UNIMPLEMENTED)
        sw_debug("%s: %s %s", rq.method[0] ? rq.method : "?", sw_status_name(status), msg);
    if (sw_rpc_encode_reply(rq.reply_plain ? NULL : w->cctx, rq.request_id, status, msg,
                            w->payload.data,
                            w->payload.len, &w->reply) != SW_OK) {
        sw_buf_reset(&w->reply);
        sw_rpc_encode_reply(NULL, rq.request_id, SW_STATUS_RESOURCE_EXHAUSTED,
                            "reply too large", NULL, 0, &w->reply);
    }
    /* keep big buffers from pinning memory between requests */
    if (w->env.cap > (8u << 20))
        sw_buf_fini(&w->env);
    if (w->scratch.cap > (8u << 20))
        sw_buf_fini(&w->scratch);
    if (w->payload.cap > (8u << 20))
        sw_buf_fini(&w->payload);
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;

    for (;;) {
        nng_msg *m;
        int rv;

        if (atomic_load(&w->srv->stopping))
            break;
        nng_aio_set_timeout(w->aio, WORKER_POLL_MS);
        nng_ctx_recv(w->ctx, w->aio);
        nng_aio_wait(w->aio);
        rv = nng_aio_result(w->aio);
        if (rv == NNG_ECLOSED)
            break;
        if (rv != 0)
            continue;
        m = nng_aio_get_msg(w->aio);
        handle(w, nng_msg_body(m), nng_msg_len(m));
        nng_msg_clear(m);
        if (nng_msg_append(m, w->reply.data, w->reply.len) != 0) {
            nng_msg_free(m);
            continue;
        }
        if (w->reply.cap > (8u << 20))
            sw_buf_fini(&w->reply);
        nng_aio_set_msg(w->aio, m);
        nng_aio_set_timeout(w->aio, NNG_DURATION_DEFAULT);
        nng_ctx_send(w->ctx, w->aio);
        nng_aio_wait(w->aio);
        rv = nng_aio_result(w->aio);
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(w->aio)); /* still ours on failure */
            if (rv == NNG_ECLOSED)
                break;
        }
    }
    return NULL;
}

static void
worker_fini(struct worker *w)
{
    if (w->aio)
        nng_aio_free(w->aio);
    ZSTD_freeCCtx(w->cctx);
    ZSTD_freeDCtx(w->dctx);
    sw_buf_fini(&w->env);
    sw_buf_fini(&w->scratch);
    sw_buf_fini(&w->payload);
    sw_buf_fini(&w->reply);
    if (w->reader)
        w->reader->ops->reader_close(w->reader);
    sw_arena_release(&w->batch);
}

void
agg_server_stop(struct agg_server *srv)
{
    if (!srv)
        return;
    /*
     * Workers first: one may be deep in a handler (an ingest waiting for
     * the writer, a query for correlation) and send its reply after; nng
     * 1.5 must not see a send on a context of a closed socket.
     */
    atomic_store(&srv->stopping, 1);
    for (int i = 0; i < srv->nworkers; i++) {
        struct worker *w = &srv->workers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
    }
    nng_close(srv->sock);
    for (int i = 0; i < srv->nworkers; i++)
        worker_fini(&srv->workers[i]);
    free(srv->workers);
    free(srv);
}

sw_err
agg_server_start(struct agg_server **out, const struct agg_server_opts *opts,
                 struct agg_store *store, char *why, size_t cap)
{
    struct agg_server *srv = calloc(1, sizeof *srv);
    int rv;

    *out = NULL;
    if (!srv) {
        snprintf(why, cap, "out of memory");
        return SW_ENOMEM;
    }
    srv->opts = *opts;
    if (srv->opts.workers <= 0)
        srv->opts.workers = 4;
    if (!srv->opts.max_msg)
        srv->opts.max_msg = SW_RPC_MAX_MSG;
    if (!srv->opts.max_raw)
        srv->opts.max_raw = SW_RPC_MAX_RAW;
    srv->store = store;
    if ((rv = nng_rep0_open(&srv->sock)) != 0) {
        snprintf(why, cap, "cannot open socket: %s", nng_strerror(rv));
        free(srv);
        return SW_EIO;
    }
    /* nng 1.5 accepts any size by default: cap what a peer can make us buffer */
    nng_socket_set_size(srv->sock, NNG_OPT_RECVMAXSZ, srv->opts.max_msg);
    srv->workers = calloc((size_t)srv->opts.workers, sizeof *srv->workers);
    if (!srv->workers) {
        nng_close(srv->sock);
        free(srv);
        snprintf(why, cap, "out of memory");
        return SW_ENOMEM;
    }
    srv->nworkers = srv->opts.workers;
    for (int i = 0; i < srv->nworkers; i++) {
        struct worker *w = &srv->workers[i];
        w->srv = srv;
        w->cctx = ZSTD_createCCtx();
        w->dctx = ZSTD_createDCtx();
        sw_buf_init(&w->env);
        sw_buf_init(&w->scratch);
        sw_buf_init(&w->payload);
        sw_buf_init(&w->reply);
        if (!w->cctx || !w->dctx || nng_aio_alloc(&w->aio, NULL, NULL) != 0 ||
            nng_ctx_open(&w->ctx, srv->sock) != 0) {
            snprintf(why, cap, "out of memory");
            agg_server_stop(srv);
            return SW_ENOMEM;
        }
    }
    if ((rv = nng_listen(srv->sock, srv->opts.url, NULL, 0)) != 0) {
        snprintf(why, cap, "cannot listen on %s: %s", srv->opts.url, nng_strerror(rv));
        agg_server_stop(srv);
        return rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP || rv == NNG_EINVAL ? SW_EINVAL
                                                                          : SW_EUNAVAIL;
    }
    for (int i = 0; i < srv->nworkers; i++) {
        if (pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]) != 0) {
            snprintf(why, cap, "cannot start worker thread");
            agg_server_stop(srv);
            return SW_ENOMEM;
        }
        srv->workers[i].started = 1;
    }
    *out = srv;
    return SW_OK;
}
