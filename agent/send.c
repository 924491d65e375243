/*
 * send.c - batching, Ingest calls, acks, backoff.
 */
#include "send.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "scepwatch.pb-c.h"
#include "spool.h"
#include "sw_buf.h"
#include "sw_log.h"
#include "sw_rpc.h"
#include "sw_time.h"
#include "sw_wire.h"

#define SEND_SLOTS 2           /* batches in flight */

struct agent_sender {
    struct agent_send_opts opts;
    struct sw_rpc_client *client;
    struct sw_wire_builder *builder;
    struct sw_buf packed;
    /*
     * Batches sent and not yet acknowledged, each on a connection of its
     * own (a REQ socket has one request outstanding): the aggregator
     * decodes one while it commits the other, and the next one is read
     * and packed meanwhile.
     */
    struct inflight {
        struct sw_rpc_client *client;   /* slot 0's is s->client */
        struct sw_buf buf;
        uint64_t id;
        size_t n, wire;
        int busy;
    } slot[SEND_SLOTS];
    int next_slot;
    int slots;                  /* SEND_SLOTS, or 1 when a second connection failed */
    uint64_t next_batch_id;
    struct agent_send_stats stats;
    int status;                 /* gRPC status of the last refusal */
    char host[256];
    char error[512];
};

static sw_err push(struct agent_sender *s);

static void
sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static uint64_t
random_u64(void)
{
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&v, sizeof v, 1, f) != 1)
            v = 0;
        fclose(f);
    }
    return v ^ (uint64_t)sw_now_us() ^ ((uint64_t)getpid() << 32);
}

sw_err
agent_send_open(struct agent_sender **out, const struct agent_send_opts *opts,
                const char **err_text)
{
    struct agent_sender *s = calloc(1, sizeof *s);
    sw_err e = SW_EUNAVAIL;
    int delay;

    *out = NULL;
    if (err_text)
        *err_text = "out of memory";
    if (!s)
        return SW_ENOMEM;
    s->opts = *opts;
    if (!s->opts.batch_events) {
        /* the 100k-enrollment upload: 1.55-1.59 s at 10000, 1.59-1.68 s at 20000
         * (the aggregator starts on the first batch sooner), 1.54-1.62 s at 5000 */
        s->opts.batch_events = 10000;
    }
    if (!s->opts.batch_bytes)
        s->opts.batch_bytes = 4u << 20;
    if (!s->opts.timeout_ms)
        s->opts.timeout_ms = 30000;
    if (s->opts.retries < 0)
        s->opts.retries = 0;
    if (!s->opts.backoff_ms)
        s->opts.backoff_ms = 200;
    if (gethostname(s->host, sizeof s->host - 1) != 0)
        snprintf(s->host, sizeof s->host, "unknown");
    if (!s->opts.host)
        s->opts.host = s->host;
    if (!s->opts.agent_id)
        s->opts.agent_id = s->opts.host;
    s->next_batch_id = random_u64();
    sw_buf_init(&s->packed);
    for (int i = 0; i < SEND_SLOTS; i++)
        sw_buf_init(&s->slot[i].buf);
    s->builder = sw_wire_builder_new();
    if (!s->builder) {
        agent_send_close(s);
        return SW_ENOMEM;
    }
    delay = s->opts.backoff_ms;
    for (int attempt = 0; attempt <= s->opts.retries; attempt++) {
        if (attempt) {
            sleep_ms(delay);
            delay = delay * 2 > 5000 ? 5000 : delay * 2;
        }
        sw_rpc_client_close(s->client);
        s->client = NULL;
        e = sw_rpc_client_open(&s->client, s->opts.url, s->opts.timeout_ms);
        if (e == SW_OK)
            break;
        snprintf(s->error, sizeof s->error, "%s", sw_rpc_client_error(s->client));
        if (e != SW_EUNAVAIL)
            break;
    }
    if (e != SW_OK) {
        if (err_text) {
            static __thread char why[512];
            snprintf(why, sizeof why, "%s", s->error);
            *err_text = why;
        }
        agent_send_close(s);
        return e;
    }
    s->slot[0].client = s->client;
    s->slots = SEND_SLOTS;
    *out = s;
    return SW_OK;
}

sw_err
agent_send_add(struct agent_sender *s, const struct sw_event *ev)
{
    sw_err e = sw_wire_builder_add(s->builder, ev);
    if (e != SW_OK)
        return e;
    if (sw_wire_builder_count(s->builder) >= s->opts.batch_events ||
        sw_wire_builder_bytes(s->builder) >= s->opts.batch_bytes)
        return push(s);
    return SW_OK;
}

/*
 * One Ingest of already-packed bytes, with retries; on SW_OK the stats
 * count the batch.  The caller keeps data.
 */
/*
 * What an Ingest reply says: SW_OK (counted in the stats), SW_EUNAVAIL /
 * SW_EPROTO (worth a retry), SW_EREMOTE (refused).
 */
static sw_err
take_reply(struct agent_sender *s, const struct sw_rpc_reply *reply, uint64_t batch_id,
           size_t n, size_t len, size_t wire)
{
    if (reply->status == SW_STATUS_UNAVAILABLE || reply->status == SW_STATUS_DEADLINE_EXCEEDED ||
        reply->status == SW_STATUS_ABORTED) {
        snprintf(s->error, sizeof s->error, "aggregator answered %s: %.300s",
                 sw_status_name(reply->status), reply->message);
        return SW_EUNAVAIL;
    }
    if (reply->status != SW_STATUS_OK) {
        snprintf(s->error, sizeof s->error, "aggregator refused the batch: %s: %.300s",
                 sw_status_name(reply->status), reply->message);
        s->status = reply->status;
        return SW_EREMOTE;
    }
    Scepwatch__Ack *ack = scepwatch__ack__unpack(NULL, reply->payload_len, reply->payload);
    if (!ack || ack->batch_id != batch_id) {
        if (ack)
            scepwatch__ack__free_unpacked(ack, NULL);
        snprintf(s->error, sizeof s->error, "malformed acknowledgement");
        return SW_EPROTO;
    }
    s->stats.events_stored += ack->stored;
    s->stats.events_duplicate += ack->duplicates;
    scepwatch__ack__free_unpacked(ack, NULL);
    s->stats.events_sent += n;
    s->stats.batches++;
    s->stats.raw_bytes += len;
    s->stats.wire_bytes += wire;
    return SW_OK;
}

static sw_err
ingest(struct agent_sender *s, struct sw_rpc_client *client, uint64_t batch_id, const void *data,
       size_t len, size_t n)
{
    struct sw_rpc_reply reply;
    int delay = s->opts.backoff_ms;
    sw_err e = SW_EUNAVAIL;

    s->status = SW_STATUS_OK;
    for (int attempt = 0; attempt <= s->opts.retries; attempt++) {
        if (attempt) {
            s->stats.retries++;
            sw_warn("batch %llu: %s; retrying in %d ms", (unsigned long long)batch_id,
                    s->error, delay);
            sleep_ms(delay);
            delay = delay * 2 > 5000 ? 5000 : delay * 2;
        }
        e = sw_rpc_call(client, SW_METHOD("Ingest"), data, len, &reply);
        if (e == SW_OK)
            e = take_reply(s, &reply, batch_id, n, len,
                           sw_rpc_client_last_request_bytes(client));
        else
            snprintf(s->error, sizeof s->error, "%s", sw_rpc_client_error(client));
        if (e == SW_ETIMEDOUT || e == SW_EUNAVAIL || e == SW_EPROTO)
            continue;
        return e;
    }
    return e == SW_OK ? SW_EUNAVAIL : e;
}

/* A slot's ack; a failure is retried with the same bytes. */
static sw_err
await_slot(struct agent_sender *s, struct inflight *f)
{
    struct sw_rpc_reply reply;
    sw_err e;

    if (!f->busy)
        return SW_OK;
    f->busy = 0;
    e = sw_rpc_recv(f->client, &reply);
    if (e == SW_OK)
        e = take_reply(s, &reply, f->id, f->n, f->buf.len, f->wire);
    else
        snprintf(s->error, sizeof s->error, "%s", sw_rpc_client_error(f->client));
    if (e != SW_ETIMEDOUT && e != SW_EUNAVAIL && e != SW_EPROTO)
        return e;
    if (s->opts.retries < 1)
        return e;
    s->stats.retries++;
    sw_warn("batch %llu: %s; retrying", (unsigned long long)f->id, s->error);
    return ingest(s, f->client, f->id, f->buf.data, f->buf.len, f->n);
}

/* Every batch in flight acknowledged, oldest first. */
static sw_err
await_all(struct agent_sender *s)
{
    sw_err e = SW_OK;
    for (int i = 0; i < SEND_SLOTS; i++) {
        sw_err e2 = await_slot(s, &s->slot[(s->next_slot + i) % SEND_SLOTS]);
        if (e == SW_OK)
            e = e2;
    }
    return e;
}

/*
 * Packs the builder's batch, waits for the ack of the batch its slot held
 * (sent SEND_SLOTS batches ago), and sends this one without waiting: the
 * caller reads the next batch while the aggregator works on this one.
 */
static sw_err
push(struct agent_sender *s)
{
    size_t n = sw_wire_builder_count(s->builder);
    struct inflight *f = &s->slot[s->next_slot];
    uint64_t batch_id;
    sw_err e;

    if (n == 0)
        return SW_OK;
    batch_id = s->next_batch_id++;
    e = sw_wire_builder_pack_batch(s->builder, s->opts.agent_id, s->opts.host, batch_id,
                                   &s->packed);
    if (e != SW_OK || (e = await_slot(s, f)) != SW_OK)
        return e;
    /* a second connection on first use; without one, one slot does */
    if (!f->client && sw_rpc_client_open(&f->client, s->opts.url, s->opts.timeout_ms) != SW_OK) {
        sw_rpc_client_close(f->client);
        f->client = NULL;
        s->slots = 1;
        f = &s->slot[0];
        if ((e = await_slot(s, f)) != SW_OK)
            return e;
    }
    struct sw_buf t = f->buf;
    f->buf = s->packed;
    s->packed = t;
    f->id = batch_id;
    f->n = n;
    sw_wire_builder_reset(s->builder);
    s->next_slot = (int)(f - s->slot + 1) % s->slots;
    s->status = SW_STATUS_OK;
    if (sw_rpc_send(f->client, SW_METHOD("Ingest"), f->buf.data, f->buf.len) == SW_OK) {
        f->wire = sw_rpc_client_last_request_bytes(f->client);
        f->busy = 1;
        return SW_OK;
    }
    snprintf(s->error, sizeof s->error, "%s", sw_rpc_client_error(f->client));
    return ingest(s, f->client, batch_id, f->buf.data, f->buf.len, n);
}

sw_err
agent_send_flush(struct agent_sender *s)
{
    sw_err e = push(s);
    sw_err e2 = await_all(s);
    return e != SW_OK ? e : e2;
}

sw_err
agent_send_batch(struct agent_sender *s, uint64_t batch_id, const void *data, size_t len,
                 size_t events)
{
    sw_err e = await_all(s);
    return e == SW_OK ? ingest(s, s->client, batch_id, data, len, events) : e;
}

int
agent_send_status(const struct agent_sender *s)
{
    return s->status;
}

const char *
agent_send_error(const struct agent_sender *s)
{
    return s->error;
}

const struct agent_send_stats *
agent_send_stats(const struct agent_sender *s)
{
    return &s->stats;
}

void
agent_send_close(struct agent_sender *s)
{
    if (!s)
        return;
    sw_rpc_client_close(s->client);
    for (int i = 1; i < SEND_SLOTS; i++)
        sw_rpc_client_close(s->slot[i].client);
    for (int i = 0; i < SEND_SLOTS; i++)
        sw_buf_fini(&s->slot[i].buf);
    sw_wire_builder_free(s->builder);
    sw_buf_fini(&s->packed);
    free(s);
}

/* ---- the pump ---- */

#define PUMP_BACKOFF_MIN_MS 200
#define PUMP_BACKOFF_MAX_MS 5000
#define PUMP_IDLE_MS 1000       /* re-check an empty spool this often */
#define PUMP_STOP_GRACE_MS 2000 /* at a stop, wait this long past the drain */

struct agent_pump {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* kicks and stop, on CLOCK_MONOTONIC */
    struct agent_spool *sp;     /* borrowed */
    struct agent_send_opts opts;
    struct agent_sender *sender;    /* NULL until the aggregator answered a dial */
    int kicked;                 /* a record was appended since the last look */
    int stop;                   /* agent_pump_stop was called */
    int64_t drain_until_ms;     /* with stop: keep sending until then */
    struct agent_pump_stats stats;
};

static int64_t
mono_ms(void)
{
    return sw_mono_us() / 1000;
}

/* Waits up to ms for a kick or a stop; mutex held. */
static void
pump_wait_locked(struct agent_pump *p, int ms)
{
    struct timespec ts;

    if (p->kicked || p->stop)
        return;
    sw_mono_deadline(&ts, (int64_t)ms * 1000);
    while (!p->kicked && !p->stop)
        if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) != 0)
            break;
}

static int
next_delay(int delay)
{
    if (delay < PUMP_BACKOFF_MIN_MS)
        return PUMP_BACKOFF_MIN_MS;
    return delay * 2 > PUMP_BACKOFF_MAX_MS ? PUMP_BACKOFF_MAX_MS : delay * 2;
}

static void *
pump_main(void *arg)
{
    struct agent_pump *p = arg;
    struct agent_spool_rec rec;
    struct sw_buf buf;
    int delay = 0;              /* ms to wait before the next attempt */
    int down = 0;               /* the last attempt failed */
    int tried_after_stop = 0;   /* an attempt was made since the stop */
    sw_err e;

    sw_buf_init(&buf);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        if (delay && !p->stop)
            pump_wait_locked(p, delay);
        p->kicked = 0;
        int stop = p->stop;
        int64_t until = p->drain_until_ms;
        pthread_mutex_unlock(&p->mu);
        /* at a stop: flush what is spooled only while the aggregator answers */
        if (stop && (mono_ms() >= until || (down && tried_after_stop)))
            break;
        if (stop)
            tried_after_stop = 1;

        if (p->sender == NULL) {
            const char *why = NULL;
            e = agent_send_open(&p->sender, &p->opts, &why);
            if (e != SW_OK) {
                if (!down)
                    sw_warn("aggregator %s: %s; events stay in the spool until it answers",
                            p->opts.url, why ? why : sw_strerror(e));
                down = 1;
                delay = next_delay(delay);
                continue;
            }
        }
        e = agent_spool_peek(p->sp, &buf, &rec);
        if (e == SW_ENOENT) {
            if (stop)
                break;
            pthread_mutex_lock(&p->mu);
            pump_wait_locked(p, PUMP_IDLE_MS);
            pthread_mutex_unlock(&p->mu);
            delay = 0;
            continue;
        }
        if (e != SW_OK) {
            sw_error("spool: cannot read the next batch: %s", sw_strerror(e));
            delay = next_delay(delay);
            continue;
        }
        e = agent_send_batch(p->sender, rec.batch_id, buf.data, buf.len, rec.events);
        if (e == SW_EREMOTE && agent_send_status(p->sender) == SW_STATUS_INVALID_ARGUMENT) {
            sw_error("batch %llu (%u events) refused as invalid, dropped from the spool: %s",
                     (unsigned long long)rec.batch_id, rec.events, agent_send_error(p->sender));
            agent_spool_ack(p->sp, rec.seq);
            pthread_mutex_lock(&p->mu);
            p->stats.dropped++;
            pthread_mutex_unlock(&p->mu);
            continue;
        }
        if (e != SW_OK) {
            if (!down)
                sw_warn("aggregator %s: %s; events stay in the spool until it answers",
                        p->opts.url, agent_send_error(p->sender));
            down = 1;
            delay = next_delay(delay);
            pthread_mutex_lock(&p->mu);
            p->stats.connected = 0;
            pthread_mutex_unlock(&p->mu);
            continue;
        }
        /* acknowledged: committed by the aggregator; only now leave the spool */
        e = agent_spool_ack(p->sp, rec.seq);
        if (e != SW_OK)
            sw_error("spool: cannot delete acknowledged batch %llu: %s (it will be resent)",
                     (unsigned long long)rec.batch_id, sw_strerror(e));
        if (down)
            sw_info("aggregator %s answers again; sending the spool", p->opts.url);
        down = 0;
        delay = 0;
        tried_after_stop = 0;
        pthread_mutex_lock(&p->mu);
        p->stats.batches++;
        p->stats.events += rec.events;
        p->stats.stored = agent_send_stats(p->sender)->events_stored;
        p->stats.connected = 1;
        pthread_mutex_unlock(&p->mu);
    }
    sw_buf_fini(&buf);
    return NULL;
}

sw_err
agent_pump_start(struct agent_pump **out, struct agent_spool *sp,
                 const struct agent_send_opts *opts)
{
    struct agent_pump *p;
    pthread_condattr_t ca;

    *out = NULL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return SW_ENOMEM;
    p->sp = sp;
    p->opts = *opts;
    p->opts.retries = 0;            /* the pump's own loop retries */
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&p->thread, NULL, pump_main, p) != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return SW_EIO;
    }
    *out = p;
    return SW_OK;
}

void
agent_pump_kick(struct agent_pump *p)
{
    pthread_mutex_lock(&p->mu);
    p->kicked = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void
agent_pump_stats(struct agent_pump *p, struct agent_pump_stats *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->stats;
    pthread_mutex_unlock(&p->mu);
}

int
agent_pump_stop(struct agent_pump *p, int drain_ms, struct agent_pump_stats *final)
{
    struct timespec until;

    if (final)
        memset(final, 0, sizeof(*final));
    if (p == NULL)
        return 0;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    p->drain_until_ms = mono_ms() + (drain_ms > 0 ? drain_ms : 0);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    /* a call already in flight may outlast the drain: wait a little more, not for ever */
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (drain_ms > 0 ? drain_ms : 0) / 1000 + PUMP_STOP_GRACE_MS / 1000;
    if (pthread_timedjoin_np(p->thread, NULL, &until) != 0)
        return -1;
    if (final)
        *final = p->stats;
    agent_send_close(p->sender);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return 0;
}
