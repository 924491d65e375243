/*
 * android_omadm.c - Company Portal OMADM.log (samples README 3.1).
 *
 * A line is six whitespace-separated fields (ts, level, kind, logger, pid,
 * tid) and a message.  Only four loggers matter; the logger is compared
 * before anything else is looked at, so the ~80% of lines that are
 * SyncML, policy or app chatter cost one short scan each.
 */
#include <string.h>

#include "parser.h"
#include "sw_time.h"

#define CERTMGR "com.microsoft.omadm.platforms.android.certmgr."

struct android_state {
    struct agent_scratch scratch;
};

/* The install state machine's states, in the order DESIGN names them. */
static const struct {
    const char *name;
    enum sw_stage stage;
} states[] = {
    { "CERT_ENROLLED", SW_STAGE_ENROLL_ISSUED },
    { "CERT_INSTALL_REQUESTED", SW_STAGE_INSTALL_REQUESTED },
    { "CERT_INSTALLING", SW_STAGE_INSTALLING },
    { "CERT_INSTALL_SUCCESS", SW_STAGE_INSTALLED },
    { "CERT_ACCESS_REQUESTED", SW_STAGE_ACCESS_REQUESTED },
    { "CERT_ACCESS_GRANTED", SW_STAGE_ACCESS_GRANTED },
};

static enum sw_stage
known_state(const char *p, size_t n)
{
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        if (strlen(states[i].name) == n && memcmp(states[i].name, p, n) == 0)
            return states[i].stage;
    return SW_STAGE_UNKNOWN;
}

static int
is_failure_name(const char *p, size_t n)
{
    return agent_find(p, n, "FAIL") || agent_find(p, n, "ERROR") ||
           agent_find(p, n, "DENIED") || agent_find(p, n, "REJECT");
}

static inline int
is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Table S: the stage for a state-machine line's to-state Y, with from-state X. */
static enum sw_stage
state_stage(struct agent_parse_ctx *ctx, struct sw_slice x, struct sw_slice y, int *with_detail)
{
    enum sw_stage st = known_state(y.ptr, y.len);
    *with_detail = 0;
    if (st != SW_STAGE_UNKNOWN)
        return st;
    *with_detail = 1;
    if (is_failure_name(y.ptr, y.len))
        return SW_STAGE_INSTALL_FAILED;
    ctx->counts[AGENT_COUNT_UNKNOWN_STATE]++;
    st = known_state(x.ptr, x.len);
    if (st != SW_STAGE_UNKNOWN)
        return st;
    return is_failure_name(x.ptr, x.len) ? SW_STAGE_INSTALL_FAILED : SW_STAGE_INSTALL_REQUESTED;
}

/* "<kind> cert '<key>' state changed from X to Y" */
static void
state_line(struct agent_parse_ctx *ctx, struct sw_event *ev, const char *m, size_t n,
           const char *prefix)
{
    struct android_state *st = ctx->state;
    const char *end = m + n, *q, *key;
    struct sw_slice x, y;
    int with_detail;

    if (!agent_starts_with(m, n, prefix))
        goto noise;
    key = m + strlen(prefix);
    q = agent_find(key, (size_t)(end - key), "' state changed from ");
    if (!q)
        goto malformed;
    x.ptr = q + 21;
    q = agent_find(x.ptr, (size_t)(end - x.ptr), " to ");
    if (!q)
        goto malformed;
    x.len = (size_t)(q - x.ptr);
    y = agent_trim(q + 4, (size_t)(end - (q + 4)));
    x = agent_trim(x.ptr, x.len);
    if (!y.len || !x.len)
        goto malformed;
    ev->stage = state_stage(ctx, x, y, &with_detail);
    ev->profile = agent_profile_from(&st->scratch, key, (size_t)(x.ptr - key));
    if (with_detail)
        ev->detail = y;
    agent_parse_emit(ctx, ev);
    return;
malformed:
    ctx->counts[AGENT_COUNT_MALFORMED]++;
    return;
noise:
    ctx->counts[AGENT_COUNT_NOISE]++;
}

/* The value of key= inside a jscep "[k=v,k=v]" block, up to ',' or ']'. */
static struct sw_slice
jscep_value(const char *m, size_t n, const char *key)
{
    const char *end = m + n, *p = m;
    size_t kl = strlen(key);

    while ((p = agent_find(p, (size_t)(end - p), key)) != NULL) {
        /* must start a pair: preceded by '[' or ',' (or ' ') */
        if (p > m && (p[-1] == '[' || p[-1] == ',' || p[-1] == ' ') &&
            p + kl < end && p[kl] == '=') {
            const char *v = p + kl + 1, *e = v;
            while (e < end && *e != ',' && *e != ']')
                e++;
            return (struct sw_slice){ v, (size_t)(e - v) };
        }
        p += kl;
    }
    return SW_SLICE_NONE;
}

static void
set_txn(struct agent_parse_ctx *ctx, struct sw_event *ev, const char *m, size_t n)
{
    struct android_state *st = ctx->state;
    struct sw_slice t = jscep_value(m, n, "transId");
    if (t.len)
        ev->txn = agent_hex_upper(&st->scratch, t.ptr, t.len);
}

static int
url_op(const char *m, size_t n, enum sw_stage req, enum sw_stage cacert,
       enum sw_stage cacaps, enum sw_stage pki, enum sw_stage *out)
{
    /* one scan for "operation="; GetCACert, then GetCACaps, then PKIOperation win */
    const char *end = m + n, *p = m;
    int best = 0;
    while (best < 3 && (p = agent_find(p, (size_t)(end - p), "operation=")) != NULL) {
        p += sizeof "operation=" - 1;
        size_t rest = (size_t)(end - p);
        if (agent_starts_with(p, rest, "GetCACert"))
            best = 3;
        else if (agent_starts_with(p, rest, "GetCACaps") && best < 2)
            best = 2;
        else if (agent_starts_with(p, rest, "PKIOperation") && best < 1)
            best = 1;
    }
    *out = best == 3 ? cacert : best == 2 ? cacaps : best == 1 ? pki : req;
    return *out != SW_STAGE_UNKNOWN;
}

static void
transport_line(struct agent_parse_ctx *ctx, struct sw_event *ev, const char *m, size_t n)
{
    enum sw_stage stage;

    if (agent_starts_with(m, n, "Sending ")) {
        if (!url_op(m, n, SW_STAGE_UNKNOWN, SW_STAGE_CACERT_REQUESTED,
                    SW_STAGE_CACAPS_REQUESTED, SW_STAGE_UNKNOWN, &stage))
            goto noise;
    } else if (agent_starts_with(m, n, "Received '")) {
        const char *q = memchr(m + 10, '\'', n - 10);
        if (!q)
            goto malformed;
        struct sw_slice code = { m + 10, (size_t)(q - (m + 10)) };
        if (code.len >= 3 && memcmp(code.ptr, "200", 3) == 0 &&
            (code.len == 3 || code.ptr[3] == ' ')) {
            if (!url_op(m, n, SW_STAGE_UNKNOWN, SW_STAGE_CACERT_RECEIVED,
                        SW_STAGE_CACAPS_RECEIVED, SW_STAGE_UNKNOWN, &stage))
                goto noise;
        } else {
            stage = SW_STAGE_ENROLL_FAILED;
            ev->detail = code;
        }
    } else {
        goto noise;
    }
    ev->stage = stage;
    agent_parse_emit(ctx, ev);
    return;
malformed:
    ctx->counts[AGENT_COUNT_MALFORMED]++;
    return;
noise:
    ctx->counts[AGENT_COUNT_NOISE]++;
}

static void
transaction_line(struct agent_parse_ctx *ctx, struct sw_event *ev, const char *m, size_t n)
{
    struct sw_slice status, fail;

    if (!agent_starts_with(m, n, "Response: ")) {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    status = jscep_value(m, n, "pkiStatus");
    if (status.len == 7 && memcmp(status.ptr, "SUCCESS", 7) == 0) {
        ev->stage = SW_STAGE_ENROLL_ISSUED;
    } else if (status.len == 7 && memcmp(status.ptr, "PENDING", 7) == 0) {
        ev->stage = SW_STAGE_ENROLL_PENDING;
    } else if (status.len == 7 && memcmp(status.ptr, "FAILURE", 7) == 0) {
        struct android_state *st = ctx->state;
        ev->stage = SW_STAGE_ENROLL_FAILED;
        fail = jscep_value(m, n, "failInfo");
        if (fail.len && !(fail.len == 6 && memcmp(fail.ptr, "<null>", 6) == 0)) {
            struct sw_slice a = agent_scratch_copy(&st->scratch, "failInfo=", 9);
            struct sw_slice b = agent_scratch_copy(&st->scratch, fail.ptr, fail.len);
            if (a.len && b.len)
                ev->detail = (struct sw_slice){ a.ptr, a.len + b.len };
        } else {
            ev->detail = sw_slice_cstr("pkiStatus=FAILURE");
        }
    } else {
        ctx->counts[AGENT_COUNT_MALFORMED]++;
        return;
    }
    set_txn(ctx, ev, m, n);
    agent_parse_emit(ctx, ev);
}

static void
encoder_line(struct agent_parse_ctx *ctx, struct sw_event *ev, const char *m, size_t n)
{
    struct sw_slice type;

    if (!agent_starts_with(m, n, "Encoding message:")) {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    type = jscep_value(m, n, "messageType");
    if (!(type.len == 8 && memcmp(type.ptr, "PKCS_REQ", 8) == 0)) {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    ev->stage = SW_STAGE_ENROLL_REQUESTED;
    set_txn(ctx, ev, m, n);
    agent_parse_emit(ctx, ev);
}

static inline int
logger_is(struct sw_slice lg, const char *name)
{
    size_t k = strlen(name);
    return lg.len == k && memcmp(lg.ptr, name, k) == 0;
}

static void
android_line(struct agent_parse_ctx *ctx, const char *line, size_t len)
{
    struct android_state *st = ctx->state;
    const char *p = line, *end = line + len;
    struct sw_slice ts, level, kind, logger, pid, tid;
    struct sw_event ev;

    if (!agent_next_field(&p, end, &ts) || !agent_next_field(&p, end, &level) ||
        !agent_next_field(&p, end, &kind)) {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    /*
     * Prefilter: only certmgr and jscep loggers matter, and most lines are
     * other loggers.  Their prefixes hold no separator, so the logger field
     * starts with one exactly when what follows the separators does: a
     * line is turned away before its logger's end is looked for.
     */
    p = agent_skip_seps(p, end);
    size_t rest = (size_t)(end - p);
    if (!(agent_starts_with(p, rest, "org.jscep.") || agent_starts_with(p, rest, CERTMGR)) ||
        !agent_next_field(&p, end, &logger) || logger.len <= 10) {
        ctx->counts[AGENT_COUNT_NOISE]++;
        return;
    }
    if (!agent_next_field(&p, end, &pid) || !agent_next_field(&p, end, &tid)) {
        ctx->counts[AGENT_COUNT_MALFORMED]++;
        return;
    }
    while (p < end && is_space(*p))
        p++;
    const char *m = p;
    size_t n = (size_t)(end - p);

    memset(&ev, 0, sizeof ev);
    agent_scratch_reset(&st->scratch);
    if (sw_time_parse(ts.ptr, ts.len, ctx->opts.tz_off_min, &ev.ts_us) != 0) {
        ctx->counts[AGENT_COUNT_BAD_TIME]++;
        return;
    }
    ev.platform = SW_PLATFORM_ANDROID;
    ev.cert = SW_CERT_SCEP;

    if (logger_is(logger, CERTMGR "CertificateEnrollmentManager")) {
        static const char pre[] = "Trying to enroll certificate request:";
        if (!agent_starts_with(m, n, pre)) {
            ctx->counts[AGENT_COUNT_NOISE]++;
            return;
        }
        ev.stage = SW_STAGE_PROFILE_RECEIVED;
        ev.profile = agent_profile_from(&st->scratch, m + sizeof pre - 1, n - (sizeof pre - 1));
        agent_parse_emit(ctx, &ev);
    } else if (logger_is(logger, CERTMGR "state.NativeScepCertInstallStateMachine")) {
        state_line(ctx, &ev, m, n, "SCEP cert '");
    } else if (logger_is(logger, CERTMGR "state.NativeRootCertInstallStateMachine")) {
        ev.cert = SW_CERT_ROOT;
        state_line(ctx, &ev, m, n, "Root cert '");
    } else if (logger_is(logger, "org.jscep.transport.UrlConnectionGetTransport") ||
               logger_is(logger, "org.jscep.transport.UrlConnectionPostTransport")) {
        transport_line(ctx, &ev, m, n);
    } else if (logger_is(logger, "org.jscep.transaction.EnrollmentTransaction")) {
        transaction_line(ctx, &ev, m, n);
    } else if (logger_is(logger, "org.jscep.message.PkiMessageEncoder")) {
        encoder_line(ctx, &ev, m, n);
    } else {
        ctx->counts[AGENT_COUNT_NOISE]++;
    }
}

/* An OMADM line: ISO timestamp, level, "Event"-like kind, dotted logger. */
static int
android_probe(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    int hits = 0, lines = 0;

    while (p < end && lines < 200) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *q = p;
        struct sw_slice ts, level, kind, logger;
        int64_t t;
        if (agent_next_field(&q, le, &ts) && agent_next_field(&q, le, &level) &&
            agent_next_field(&q, le, &kind) && agent_next_field(&q, le, &logger) &&
            sw_time_parse(ts.ptr, ts.len, 0, &t) == 0 && memchr(logger.ptr, '.', logger.len) &&
            (agent_starts_with(logger.ptr, logger.len, "com.microsoft.omadm") ||
             agent_starts_with(logger.ptr, logger.len, "org.jscep.")))
            hits++;
        lines++;
        if (!nl)
            break;
        p = nl + 1;
    }
    return hits ? 90 : 0;
}

const struct agent_parser agent_parser_android_omadm = {
    .name = "android_omadm",
    .source = SW_SOURCE_ANDROID_OMADM,
    .probe = android_probe,
    .state_size = sizeof(struct android_state),
    .stateless = 1,
    .line = android_line,
};
