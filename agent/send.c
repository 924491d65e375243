/*
 * send.c - batching, Ingest calls, acks, backoff.
 */
#include "send.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "scepwatch.pb-c.h"
#include "sw_buf.h"
#include "sw_log.h"
#include "sw_rpc.h"
#include "sw_time.h"
#include "sw_wire.h"

struct agent_sender {
    struct agent_send_opts opts;
    struct sw_rpc_client *client;
    struct sw_wire_builder *builder;
    struct sw_buf packed;
    uint64_t next_batch_id;
    struct agent_send_stats stats;
    char host[256];
    char error[512];
};

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
    if (!s->opts.batch_events)
        s->opts.batch_events = 5000;
    if (!s->opts.batch_bytes)
        s->opts.batch_bytes = 4u << 20;
    if (!s->opts.timeout_ms)
        s->opts.timeout_ms = 30000;
    if (s->opts.retries < 0)
        s->opts.retries = 0;
    if (!s->opts.backoff_ms)
        s->opts.backoff_ms = 200;
    if (gethostname(s->host, sizeof s->host - 1) != 0)
        strcpy(s->host, "unknown");
    if (!s->opts.host)
        s->opts.host = s->host;
    if (!s->opts.agent_id)
        s->opts.agent_id = s->opts.host;
    s->next_batch_id = random_u64();
    sw_buf_init(&s->packed);
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
        return agent_send_flush(s);
    return SW_OK;
}

sw_err
agent_send_flush(struct agent_sender *s)
{
    size_t n = sw_wire_builder_count(s->builder);
    struct sw_rpc_reply reply;
    uint64_t batch_id;
    int delay = s->opts.backoff_ms;
    sw_err e;

    if (n == 0)
        return SW_OK;
    batch_id = s->next_batch_id++;
    e = sw_wire_builder_pack_batch(s->builder, s->opts.agent_id, s->opts.host, batch_id,
                                   &s->packed);
    if (e != SW_OK)
        return e;
    for (int attempt = 0; attempt <= s->opts.retries; attempt++) {
        if (attempt) {
            s->stats.retries++;
            sw_warn("batch %llu: %s; retrying in %d ms", (unsigned long long)batch_id,
                    s->error, delay);
            sleep_ms(delay);
            delay = delay * 2 > 5000 ? 5000 : delay * 2;
        }
        e = sw_rpc_call(s->client, SW_METHOD("Ingest"), s->packed.data, s->packed.len, &reply);
        if (e != SW_OK) {
            snprintf(s->error, sizeof s->error, "%s", sw_rpc_client_error(s->client));
            if (e == SW_ETIMEDOUT || e == SW_EUNAVAIL || e == SW_EPROTO)
                continue;
            return e;
        }
        if (reply.status == SW_STATUS_UNAVAILABLE || reply.status == SW_STATUS_DEADLINE_EXCEEDED ||
            reply.status == SW_STATUS_ABORTED) {
            snprintf(s->error, sizeof s->error, "aggregator answered %s: %.300s",
                     sw_status_name(reply.status), reply.message);
            e = SW_EUNAVAIL;
            continue;
        }
        if (reply.status != SW_STATUS_OK) {
            snprintf(s->error, sizeof s->error, "aggregator refused the batch: %s: %.300s",
                     sw_status_name(reply.status), reply.message);
            return SW_EREMOTE;
        }
        Scepwatch__Ack *ack = scepwatch__ack__unpack(NULL, reply.payload_len, reply.payload);
        if (!ack || ack->batch_id != batch_id) {
            if (ack)
                scepwatch__ack__free_unpacked(ack, NULL);
            snprintf(s->error, sizeof s->error, "malformed acknowledgement");
            e = SW_EPROTO;
            continue;
        }
        s->stats.events_stored += ack->stored;
        s->stats.events_duplicate += ack->duplicates;
        scepwatch__ack__free_unpacked(ack, NULL);
        s->stats.events_sent += n;
        s->stats.batches++;
        s->stats.raw_bytes += s->packed.len;
        sw_wire_builder_reset(s->builder);
        return SW_OK;
    }
    return e == SW_OK ? SW_EUNAVAIL : e;
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
    sw_wire_builder_free(s->builder);
    sw_buf_fini(&s->packed);
    free(s);
}
