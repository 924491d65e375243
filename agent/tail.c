/*
 * tail.c - globs, file identity, rotation, reading, committing.
 *
 * A cycle: scan (glob every pattern, stat every match, find or create its
 * entry by dev/ino), then service every entry (detect truncation or a new
 * identity, decide encoding and format, read what it gained through the
 * shared reader into the shared batch builder, committing when the batch
 * is full), then commit the rest.  Entries are removed only between
 * cycles, after the commit that deletes their checkpoint.
 */
#include "tail.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "checkpoint.h"
#include "parse.h"
#include "reader.h"
#include "sw_log.h"
#include "sw_time.h"
#include "sw_wire.h"

#define TAIL_BATCH_EVENTS 2000
#define TAIL_BATCH_BYTES (512u * 1024)
#define TAIL_CTX_BUDGET (4u << 20)
#define TAIL_READ_BUDGET (8u << 20)     /* bytes per file per cycle */
#define TAIL_CYCLE_BUDGET (32u << 20)   /* bytes per cycle */
#define TAIL_ORPHAN_GRACE_MS 5000       /* follow a file gone from the globs */
#define TAIL_IDLE_CLOSE_MS (300 * 1000) /* close the fd of a finished, quiet file */
#define TAIL_CKPT_COMMIT_MS 1000        /* offsets without events: commit this often */
#define TAIL_WATCH_REFRESH_MS 5000
#define TAIL_DETECT_MAX (1u << 20)      /* auto: give up after this many bytes */
#define TAIL_WARNED 64                  /* paths remembered to warn once */

struct pattern {
    char *glob;                     /* the pattern, "{device}" -> "*" */
    char *dir_glob;                 /* its directory part; NULL = none ("." ) */
    char *static_dir;               /* leading directories without wildcards */
    int dev_comp;                   /* component naming the device; -1 = none */
    char *dev_prefix;               /* literal text before {device} in it */
    char *dev_suffix;               /* ... and after */
};

struct tail_file {
    struct agent_ckpt ck;           /* identity; offset = committed offset */
    char *path;                     /* where last seen */
    int fd;                         /* read-only, or -1 (closed while idle) */
    uint64_t pend;                  /* offset for the next commit:
                                       min(read_off, ctx->hold_offset) */
    uint64_t read_off;              /* where the live context goes on;
                                       == pend when ctx is NULL */
    uint64_t size_done;             /* size when last read to its end;
                                       UINT64_MAX = not read to the end */
    int64_t mtime_ns;               /* st_mtim then */
    uint64_t scan_size;             /* size at the last scan (fd closed) */
    int64_t scan_mtime_ns;          /* mtime at the last scan */
    const struct agent_parser *parser; /* NULL until decided */
    struct agent_parse_ctx *ctx;    /* live parser state, or NULL */
    size_t ctx_cost;                /* bytes charged to the budget */
    uint64_t ctx_tick;              /* last use (LRU) */
    uint64_t seen_gen;              /* last scan that found it */
    int64_t missing_ms;             /* when a scan first missed it; 0 = found */
    int64_t active_ms;              /* when it last grew */
    uint64_t detect_size;           /* size at the last failed detection */
    int touched;                    /* listed in t->touched */
    int dropping;                   /* delete its checkpoint at the commit */
    int gone;                       /* dropped: free at the end of the cycle */
    int ignored;                    /* no parser recognises it */
    struct tail_file *hnext;        /* hash chain */
};

struct watch {
    int wd;                         /* inotify watch descriptor */
    char *dir;
};

struct agent_tail {
    struct agent_tail_conf cf;      /* strings borrowed */
    struct agent_spool *sp;         /* borrowed */
    struct agent_reader reader;     /* the one read buffer */
    struct sw_wire_builder *builder;
    struct sw_buf packed;
    struct pattern *pats;
    size_t n_pats;
    struct tail_file **files;       /* every entry */
    size_t n_files, cap_files;
    struct tail_file **buckets;     /* by dev/ino */
    size_t n_buckets;
    struct tail_file **touched;     /* read or changed since the last commit */
    size_t n_touched, cap_touched;
    struct agent_ckpt *puts;        /* commit scratch */
    size_t cap_puts;
    struct agent_ckpt_key *dels;    /* checkpoints to delete at the commit */
    size_t n_dels, cap_dels;
    struct agent_ckpt_key *boot_keys; /* checkpoints at start, sorted; NULL after GC */
    unsigned char *boot_seen;       /* matched by a file */
    size_t n_boot;
    int scan_incomplete;            /* a match could not be opened: no GC */
    size_t ctx_bytes;               /* charged by live contexts */
    size_t batch_events;
    size_t batch_bytes;
    unsigned pack_pct;              /* packed size / builder estimate, percent
                                       (sw_wire_builder_bytes runs low) */
    uint64_t tick;
    uint64_t gen;                   /* scan generation */
    size_t rr;                      /* round-robin start of the service loop */
    uint64_t next_batch_id;
    int64_t last_commit_ms;
    int paused;                     /* the spool was full */
    int more;                       /* budget left data unread */
    uint64_t cycle_bytes;           /* read this cycle */
    uint64_t cycle_events;          /* committed this cycle */
    int ino_fd;                     /* inotify, -1 = none */
    struct watch *watches;
    size_t n_watches, cap_watches;
    int64_t watch_refresh_ms;
    int watch_warned;
    uint64_t warned[TAIL_WARNED];   /* hashes of paths warned about */
    size_t n_warned;
    /* the read in progress */
    struct tail_file *cur;
    int batch_full;
    int emit_err;
    char host[256];
};

static int64_t
now_ms(void)
{
    return sw_mono_us() / 1000;
}

static int64_t
mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

static uint64_t
random_u64(void)
{
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &v, sizeof v) != (ssize_t)sizeof v)
            v = 0;
        close(fd);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return v ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 48);
}

/* True once per path (up to TAIL_WARNED paths), to warn without flooding. */
static int
warn_once(struct agent_tail *t, const char *path)
{
    uint64_t h = XXH64(path, strlen(path), 1);
    for (size_t i = 0; i < t->n_warned && i < TAIL_WARNED; i++)
        if (t->warned[i] == h)
            return 0;
    t->warned[t->n_warned++ % TAIL_WARNED] = h;
    return 1;
}

/* ---- patterns ---- */

static int
has_wildcard(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '*' || s[i] == '?' || s[i] == '[')
            return 1;
    return 0;
}

static void
pattern_fini(struct pattern *p)
{
    free(p->glob);
    free(p->dir_glob);
    free(p->static_dir);
    free(p->dev_prefix);
    free(p->dev_suffix);
}

static char *
dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Splits a pattern: where {device} is, the glob, the directories to watch. */
static sw_err
pattern_init(struct pattern *p, const char *src)
{
    static const char tag[] = "{device}";
    const char *dev = strstr(src, tag);
    size_t n = strlen(src);
    char *g;

    memset(p, 0, sizeof(*p));
    p->dev_comp = -1;
    if (n == 0)
        return SW_EINVAL;
    if (dev && strstr(dev + 1, tag))
        return SW_EINVAL;
    g = malloc(n + 1);
    if (g == NULL)
        return SW_ENOMEM;
    if (dev) {
        size_t pre = (size_t)(dev - src);
        /* the component holding {device}: index and literal parts */
        const char *cs = dev, *ce = dev + sizeof tag - 1;
        while (cs > src && cs[-1] != '/')
            cs--;
        while (*ce && *ce != '/')
            ce++;
        int comp = 0;
        for (const char *q = src; q < cs; q++)
            if (*q != '/' && (q == src || q[-1] == '/'))
                comp++;
        p->dev_comp = comp;
        p->dev_prefix = dup_n(cs, (size_t)(dev - cs));
        p->dev_suffix = dup_n(dev + sizeof tag - 1, (size_t)(ce - (dev + sizeof tag - 1)));
        memcpy(g, src, pre);
        g[pre] = '*';
        memcpy(g + pre + 1, dev + sizeof tag - 1, n - pre - (sizeof tag - 1) + 1);
        if (!p->dev_prefix || !p->dev_suffix) {
            free(g);
            return SW_ENOMEM;
        }
    } else {
        memcpy(g, src, n + 1);
    }
    p->glob = g;
    /* directory part */
    const char *slash = strrchr(g, '/');
    if (slash) {
        p->dir_glob = dup_n(g, slash == g ? 1 : (size_t)(slash - g));
        if (!p->dir_glob)
            return SW_ENOMEM;
    }
    /* leading components free of wildcards */
    size_t last_ok = 0;
    for (const char *q = g; *q;) {
        const char *e = strchr(q, '/');
        if (!e)
            break;                      /* the file name part is never a dir */
        if (has_wildcard(q, (size_t)(e - q)))
            break;
        last_ok = (size_t)(e - g);
        q = e + 1;
    }
    if (g[0] == '/' && last_ok == 0)
        p->static_dir = dup_n("/", 1);
    else if (last_ok == 0)
        p->static_dir = dup_n(".", 1);
    else
        p->static_dir = dup_n(g, last_ok);
    return p->static_dir ? SW_OK : SW_ENOMEM;
}

/* The device a matched path names through the pattern's {device}, into out. */
static void
pattern_device(const struct pattern *p, const char *path, char *out, size_t cap)
{
    int comp = 0;
    out[0] = '\0';
    if (p->dev_comp < 0)
        return;
    for (const char *q = path; *q;) {
        while (*q == '/')
            q++;
        if (!*q)
            break;
        const char *e = strchr(q, '/');
        size_t len = e ? (size_t)(e - q) : strlen(q);
        if (comp++ == p->dev_comp) {
            size_t pl = strlen(p->dev_prefix), sl = strlen(p->dev_suffix);
            if (len > pl + sl) {
                size_t dl = len - pl - sl;
                if (dl >= cap)
                    dl = cap - 1;
                memcpy(out, q + pl, dl);
                out[dl] = '\0';
            }
            return;
        }
        q += len;
    }
}

/* ---- entries ---- */

static size_t
key_hash(const struct agent_ckpt_key *k, size_t nb)
{
    uint64_t h = k->ino * 0x9e3779b97f4a7c15ULL ^ k->dev * 0xc2b2ae3d27d4eb4fULL;
    return (size_t)(h >> 17) & (nb - 1);
}

static struct tail_file *
lookup(struct agent_tail *t, uint64_t dev, uint64_t ino)
{
    struct agent_ckpt_key k = { dev, ino };
    for (struct tail_file *f = t->buckets[key_hash(&k, t->n_buckets)]; f; f = f->hnext)
        if (f->ck.key.dev == dev && f->ck.key.ino == ino)
            return f;
    return NULL;
}

static void
hash_insert(struct agent_tail *t, struct tail_file *f)
{
    size_t b = key_hash(&f->ck.key, t->n_buckets);
    f->hnext = t->buckets[b];
    t->buckets[b] = f;
}

static void
hash_remove(struct agent_tail *t, struct tail_file *f)
{
    struct tail_file **pp = &t->buckets[key_hash(&f->ck.key, t->n_buckets)];
    while (*pp && *pp != f)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = f->hnext;
}

/* Doubles the bucket array when entries outnumber buckets. */
static void
hash_grow(struct agent_tail *t)
{
    size_t nb = t->n_buckets * 2;
    struct tail_file **b;

    if (t->n_files < t->n_buckets)
        return;
    b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return;                         /* longer chains, still correct */
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = nb;
    for (size_t i = 0; i < t->n_files; i++)
        hash_insert(t, t->files[i]);
}

static sw_err
touch(struct agent_tail *t, struct tail_file *f)
{
    if (f->touched)
        return SW_OK;
    if (t->n_touched == t->cap_touched) {
        size_t nc = t->cap_touched ? t->cap_touched * 2 : 64;
        struct tail_file **n = realloc(t->touched, nc * sizeof(*n));
        if (n == NULL)
            return SW_ENOMEM;
        t->touched = n;
        t->cap_touched = nc;
    }
    t->touched[t->n_touched++] = f;
    f->touched = 1;
    return SW_OK;
}

static sw_err
add_del(struct agent_tail *t, const struct agent_ckpt_key *k)
{
    if (t->n_dels == t->cap_dels) {
        size_t nc = t->cap_dels ? t->cap_dels * 2 : 16;
        struct agent_ckpt_key *n = realloc(t->dels, nc * sizeof(*n));
        if (n == NULL)
            return SW_ENOMEM;
        t->dels = n;
        t->cap_dels = nc;
    }
    t->dels[t->n_dels++] = *k;
    return SW_OK;
}

/* Releases f's parse context; the next read resumes at the checkpoint. */
static void
ctx_detach(struct agent_tail *t, struct tail_file *f)
{
    if (f->ctx == NULL)
        return;
    f->ctx->emit = NULL;                /* finish() must not emit into a batch */
    agent_parse_ctx_fini(f->ctx);
    free(f->ctx);
    f->ctx = NULL;
    t->ctx_bytes -= f->ctx_cost;
    f->ctx_cost = 0;
    f->read_off = f->pend;
}

static void
file_free(struct agent_tail *t, struct tail_file *f)
{
    ctx_detach(t, f);
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    free(f);
}

/* ---- parsing ---- */

static int
replay_line(void *arg, const char *line, size_t len, uint64_t offset, int flags)
{
    agent_parse_line(arg, line, len, offset, flags);
    return 0;
}

static int
tail_line(void *arg, const char *line, size_t len, uint64_t offset, int flags)
{
    struct agent_tail *t = arg;

    agent_parse_line(t->cur->ctx, line, len, offset, flags);
    if (t->emit_err)
        return 1;
    if (sw_wire_builder_count(t->builder) >= t->batch_events ||
        sw_wire_builder_bytes(t->builder) * t->pack_pct / 100 >= t->batch_bytes) {
        t->batch_full = 1;
        return 1;
    }
    return 0;
}

static void
tail_emit(void *arg, const struct sw_event *ev)
{
    struct agent_tail *t = arg;
    if (!t->emit_err && sw_wire_builder_add(t->builder, ev) != SW_OK)
        t->emit_err = 1;
}

/* Context cost: parsers with an init() allocate record buffers (XML, CSV). */
static size_t
ctx_cost(const struct agent_parser *p)
{
    return sizeof(struct agent_parse_ctx) + p->state_size +
           (p->init ? 2 * (size_t)AGENT_MAX_LINE + 256 * 1024 : 0);
}

/* Releases the least recently used context other than keep's. */
static int
evict_one(struct agent_tail *t, struct tail_file *keep)
{
    struct tail_file *lru = NULL;
    for (size_t i = 0; i < t->n_files; i++) {
        struct tail_file *f = t->files[i];
        if (f != keep && f->ctx && (!lru || f->ctx_tick < lru->ctx_tick))
            lru = f;
    }
    if (lru == NULL)
        return 0;
    ctx_detach(t, lru);
    return 1;
}

/*
 * Gives f a parse context positioned at f->pend: a new one, replayed
 * from 0 with emit disabled when the parser needs earlier lines.
 */
static sw_err
ctx_attach(struct agent_tail *t, struct tail_file *f)
{
    struct agent_parse_opts o;
    struct agent_parse_ctx *ctx;
    size_t cost = f->parser->stateless ? 0 : ctx_cost(f->parser);
    enum agent_encoding enc = (enum agent_encoding)f->ck.enc;
    sw_err e;

    while (cost && t->ctx_bytes + cost > t->cf.ctx_budget_bytes && evict_one(t, f))
        ;
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return SW_ENOMEM;
    memset(&o, 0, sizeof o);
    o.device = f->ck.device[0] ? f->ck.device : NULL;
    o.tz_off_min = t->cf.tz_off_min;
    if (f->ck.date) {
        o.has_date = 1;
        o.date_y = f->ck.date / 10000;
        o.date_m = f->ck.date / 100 % 100;
        o.date_d = f->ck.date % 100;
    }
    e = agent_parse_ctx_init(ctx, f->parser, &o, f->path, NULL, NULL);
    if (e != SW_OK) {
        free(ctx);
        return e;
    }
    uint64_t cs = agent_reader_content_start(enc);
    if (!f->parser->stateless && f->pend > cs) {
        uint64_t next;
        /* rebuild the parser's state from the lines before the checkpoint */
        e = agent_reader_run(&t->reader, f->fd, enc, 0, f->pend - cs, 0, replay_line, ctx,
                             &next);
        if (e != SW_OK) {
            agent_parse_ctx_fini(ctx);
            free(ctx);
            return e;
        }
    }
    ctx->emit = tail_emit;
    ctx->emit_arg = t;
    f->ctx = ctx;
    f->ctx_cost = cost;
    t->ctx_bytes += cost;
    f->read_off = f->pend;
    return SW_OK;
}

/* ---- commit ---- */

static void
rollback(struct agent_tail *t)
{
    for (size_t i = 0; i < t->n_touched; i++) {
        struct tail_file *f = t->touched[i];
        f->pend = f->ck.offset;
        ctx_detach(t, f);               /* its state ran ahead: rebuild later */
        f->read_off = f->pend;
        f->size_done = UINT64_MAX;
        f->dropping = 0;
        f->touched = 0;
    }
    t->n_touched = 0;
    sw_wire_builder_reset(t->builder);
}

/*
 * Commits the batch being built (if any) with every touched file's
 * offset, and the pending deletions.  On failure the touched files go
 * back to their committed offsets (their lines will be read again).
 */
static sw_err
tail_commit(struct agent_tail *t)
{
    size_t n = sw_wire_builder_count(t->builder), nput = 0, ndels = t->n_dels;
    struct agent_spool_batch b;
    sw_err e;

    if (n == 0 && t->n_touched == 0 && t->n_dels == 0)
        return SW_OK;
    if (t->n_touched > t->cap_puts) {
        struct agent_ckpt *np = realloc(t->puts, t->n_touched * sizeof(*np));
        if (np == NULL) {
            rollback(t);
            return SW_ENOMEM;
        }
        t->puts = np;
        t->cap_puts = t->n_touched;
    }
    for (size_t i = 0; i < t->n_touched; i++) {
        struct tail_file *f = t->touched[i];
        if (f->dropping) {
            if (add_del(t, &f->ck.key) != SW_OK) {
                t->n_dels = ndels;
                rollback(t);
                return SW_ENOMEM;
            }
            continue;
        }
        t->puts[nput] = f->ck;
        t->puts[nput].offset = f->pend;
        t->puts[nput].path = f->path;
        nput++;
    }
    if (n) {
        b.batch_id = t->next_batch_id;
        b.events = (uint32_t)n;
        e = sw_wire_builder_pack_batch(t->builder, t->cf.agent_id, t->cf.host, b.batch_id,
                                       &t->packed);
        if (e != SW_OK) {
            rollback(t);
            return e;
        }
        b.data = t->packed.data;
        b.len = t->packed.len;
        size_t est = sw_wire_builder_bytes(t->builder);
        if (est)
            t->pack_pct = (unsigned)(b.len * 110 / est) > 100 ? (unsigned)(b.len * 110 / est)
                                                              : 100;
    }
    e = agent_spool_commit(t->sp, n ? &b : NULL, t->puts, nput, t->dels, t->n_dels);
    if (e != SW_OK) {
        /* queued deletions stay; those of dropped files are re-added at the retry */
        t->n_dels = ndels;
        if (e == SW_EFULL) {
            if (!t->paused)
                sw_warn("spool full (%llu of %llu bytes): reading paused until the "
                        "aggregator acknowledges", (unsigned long long)agent_spool_bytes(t->sp),
                        (unsigned long long)agent_spool_max(t->sp));
            t->paused = 1;
        } else {
            sw_error("spool: cannot commit %zu events and %zu offsets: %s (they will be "
                     "read again)", n, nput, sw_strerror(e));
        }
        rollback(t);
        return e;
    }
    if (n) {
        t->next_batch_id++;
        t->cycle_events += n;
    }
    for (size_t i = 0; i < t->n_touched; i++) {
        struct tail_file *f = t->touched[i];
        f->ck.offset = f->pend;
        f->touched = 0;
        if (f->dropping) {
            f->gone = 1;
            f->dropping = 0;
        }
    }
    t->n_touched = 0;
    t->n_dels = 0;
    sw_wire_builder_reset(t->builder);
    t->last_commit_ms = now_ms();
    if (n && t->cf.on_commit)
        t->cf.on_commit(t->cf.on_commit_arg);
    return SW_OK;
}

/* Room for one more batch in the spool. */
static int
has_room(struct agent_tail *t)
{
    uint64_t used = agent_spool_bytes(t->sp), max = agent_spool_max(t->sp);
    int room = used + t->batch_bytes <= max;
    if (room && t->paused) {
        sw_info("spool has room again (%llu of %llu bytes): reading resumed",
                (unsigned long long)used, (unsigned long long)max);
        t->paused = 0;
    } else if (!room && !t->paused) {
        sw_warn("spool full (%llu of %llu bytes): reading paused until the aggregator "
                "acknowledges", (unsigned long long)used, (unsigned long long)max);
        t->paused = 1;
    }
    return room;
}

/* ---- reading ---- */

/*
 * Reads f from its read position to the end (or its budget), committing
 * each full batch.  final: also parse an unterminated last line (the file
 * is being dropped).  Returns SW_OK, SW_EFULL (paused) or an error (the
 * caller's commit path rolls back).
 */
static sw_err
tail_read(struct agent_tail *t, struct tail_file *f, const struct stat *st, int final)
{
    enum agent_encoding enc = (enum agent_encoding)f->ck.enc;
    uint64_t size = (uint64_t)st->st_size, used = 0;
    int unlimited = 0;
    sw_err e;

    for (;;) {
        if (!has_room(t))
            return SW_EFULL;
        if (f->ctx == NULL) {
            e = ctx_attach(t, f);
            if (e != SW_OK)
                return e;
        }
        f->ctx_tick = ++t->tick;
        uint64_t start = f->read_off, next = start;
        uint64_t left = TAIL_READ_BUDGET > used ? TAIL_READ_BUDGET - used : 0;
        if (t->cycle_bytes >= TAIL_CYCLE_BUDGET)
            left = 0;
        if (left == 0 && !unlimited) {
            f->size_done = UINT64_MAX;
            t->more = 1;
            return SW_OK;
        }
        t->cur = f;
        t->batch_full = 0;
        t->emit_err = 0;
        e = agent_reader_run(&t->reader, f->fd, enc, start, unlimited ? 0 : left, final,
                             tail_line, t, &next);
        t->cur = NULL;
        if (next < start)
            next = start;
        if (next != start) {
            sw_err te = touch(t, f);
            if (te != SW_OK)
                return te;
        }
        f->read_off = next;
        f->pend = next < f->ctx->hold_offset ? next : f->ctx->hold_offset;
        if (f->pend < f->ck.offset)
            f->pend = f->ck.offset;     /* a record held since before the commit */
        used += next - start;
        t->cycle_bytes += next - start;
        if (e != SW_OK) {
            sw_warn("tail %s (inode %llu) offset %llu: read failed: %s", f->path,
                    (unsigned long long)f->ck.key.ino, (unsigned long long)next,
                    sw_strerror(e));
            return e;
        }
        if (t->emit_err) {
            /* an event could not be kept: nothing read since the commit may count */
            sw_error("tail %s: out of memory building a batch; reading again from the "
                     "last commit", f->path);
            rollback(t);
            return SW_ENOMEM;
        }
        if (t->batch_full) {
            e = tail_commit(t);
            if (e != SW_OK)
                return e;
            continue;
        }
        if (unlimited || start + left >= size) {
            /* read to the end (an unterminated last line waits for its newline) */
            f->size_done = size;
            f->mtime_ns = mtime_ns(st);
            return SW_OK;
        }
        if (next == start) {
            /* one line longer than the budget: read it whole */
            unlimited = 1;
            continue;
        }
    }
}

/* Starts f over at offset 0 with a fresh identity (truncated or replaced). */
static void
reset_file(struct agent_tail *t, struct tail_file *f, const struct stat *st, const char *why)
{
    sw_warn("tail %s (inode %llu) offset %llu: %s (now %llu bytes): reading from the start",
            f->path, (unsigned long long)f->ck.key.ino, (unsigned long long)f->read_off, why,
            (unsigned long long)st->st_size);
    f->pend = 0;
    ctx_detach(t, f);
    f->ck.offset = 0;
    f->read_off = 0;
    f->size_done = UINT64_MAX;
    if (agent_ckpt_fingerprint(&f->ck, f->fd, (uint64_t)st->st_size) != SW_OK)
        f->ck.fp_len = 0;
    if (!t->cf.format) {
        f->parser = NULL;               /* new content: decide again */
        f->ck.parser[0] = '\0';
        f->ignored = 0;
        f->detect_size = 0;
    }
    f->ck.enc = -1;
    touch(t, f);
}

/* Sets the date given to date-less lines from the file's mtime. */
static void
set_date(struct agent_ckpt *ck, const struct stat *st)
{
    struct tm tm;
    time_t tt = st->st_mtime;
    if (localtime_r(&tt, &tm))
        ck->date = (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

/* Decides encoding and parser; returns 0 when f cannot be read yet. */
static int
decide_format(struct agent_tail *t, struct tail_file *f, const struct stat *st, int final)
{
    uint64_t size = (uint64_t)st->st_size;

    if (f->ck.enc < 0) {
        unsigned char head[8];
        ssize_t k = pread(f->fd, head, sizeof head, 0);
        if (k < 0)
            return 0;
        /* BOM-less UTF-16 needs 8 bytes to be told from UTF-8 */
        int bom = k >= 2 && ((head[0] == 0xff && head[1] == 0xfe) ||
                             (head[0] == 0xfe && head[1] == 0xff));
        if (k < 8 && !bom && !final)
            return 0;
        f->ck.enc = (int32_t)agent_reader_detect(head, (size_t)k);
        touch(t, f);
    }
    if (f->parser)
        return 1;
    if (t->cf.format) {
        f->parser = t->cf.format;
    } else if (f->ck.parser[0]) {
        f->parser = agent_parser_find(f->ck.parser);
    }
    if (f->parser == NULL) {
        if (f->ignored)
            return 0;
        if (f->detect_size && size < f->detect_size * 2 && size < f->detect_size + 65536 &&
            !final)
            return 0;                   /* retry once it has grown enough */
        f->parser = agent_parse_detect_fd(&t->reader, f->fd, (enum agent_encoding)f->ck.enc);
        if (f->parser == NULL) {
            f->detect_size = size ? size : 1;
            if (size >= TAIL_DETECT_MAX) {
                f->ignored = 1;
                sw_warn("tail %s: no known log format in its first %u bytes; ignored "
                        "(give --format to read it)", f->path, TAIL_DETECT_MAX);
            }
            return 0;
        }
    }
    if (strcmp(f->ck.parser, f->parser->name) != 0) {
        snprintf(f->ck.parser, sizeof f->ck.parser, "%s", f->parser->name);
        touch(t, f);
    }
    return 1;
}

/* ---- scanning ---- */

static int
key_cmp(const void *a, const void *b)
{
    const struct agent_ckpt_key *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return 0;
}

static void
boot_mark(struct agent_tail *t, const struct agent_ckpt_key *k)
{
    struct agent_ckpt_key *hit;
    if (t->boot_keys == NULL)
        return;
    hit = bsearch(k, t->boot_keys, t->n_boot, sizeof(*k), key_cmp);
    if (hit)
        t->boot_seen[hit - t->boot_keys] = 1;
}

/*
 * A path no entry knows: opens it, identifies it, and resumes from its
 * checkpoint when the checkpoint is of this very file.
 */
static void
add_file(struct agent_tail *t, const char *path, const char *device)
{
    struct agent_ckpt row;
    struct tail_file *f;
    struct stat st;
    sw_err e;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno != ENOENT) {
            t->scan_incomplete = 1;
            if (warn_once(t, path))
                sw_warn("tail %s: cannot open: %s", path, strerror(errno));
        }
        return;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return;
    }
    f = lookup(t, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
    if (f) {                            /* renamed between stat and open */
        close(fd);
        f->seen_gen = t->gen;
        f->missing_ms = 0;
        return;
    }
    if (t->n_files == t->cap_files) {
        size_t nc = t->cap_files ? t->cap_files * 2 : 64;
        struct tail_file **nf = realloc(t->files, nc * sizeof(*nf));
        if (nf == NULL) {
            close(fd);
            return;
        }
        t->files = nf;
        t->cap_files = nc;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL || (f->path = strdup(path)) == NULL) {
        free(f);
        close(fd);
        return;
    }
    f->fd = fd;
    f->ck.key.dev = (uint64_t)st.st_dev;
    f->ck.key.ino = (uint64_t)st.st_ino;
    f->ck.enc = -1;
    f->size_done = UINT64_MAX;
    f->seen_gen = t->gen;
    f->active_ms = now_ms();
    boot_mark(t, &f->ck.key);

    int fresh = 1, refingerprint = 1;
    e = agent_spool_ckpt_get(t->sp, &f->ck.key, &row);
    if (e == SW_OK) {
        sw_err ce;
        enum agent_ckpt_verdict v = agent_ckpt_check(&row, fd, (uint64_t)st.st_size, &ce);
        if (v == AGENT_CKPT_SAME) {
            f->ck = row;
            fresh = refingerprint = 0;
            sw_debug("tail %s (inode %llu): resuming at offset %llu", path,
                     (unsigned long long)row.key.ino, (unsigned long long)row.offset);
        } else if (v == AGENT_CKPT_TRUNCATED) {
            f->ck = row;                /* same start: keep format, date, device */
            f->ck.offset = 0;
            fresh = 0;
            sw_warn("tail %s (inode %llu): checkpoint at offset %llu but the file has %llu "
                    "bytes: reading from the start", path, (unsigned long long)row.key.ino,
                    (unsigned long long)row.offset, (unsigned long long)st.st_size);
        } else {
            sw_info("tail %s (inode %llu): not the file checkpointed under this inode "
                    "(%s): reading from the start", path, (unsigned long long)row.key.ino,
                    agent_ckpt_verdict_name(v));
        }
    } else if (e != SW_ENOENT) {
        sw_error("tail %s: reading its checkpoint: %s", path, sw_strerror(e));
        t->scan_incomplete = 1;
        free(f->path);
        free(f);
        close(fd);
        return;
    }
    if (fresh) {
        /* new to us: the device its path names, the date for date-less lines */
        snprintf(f->ck.device, sizeof f->ck.device, "%s",
                 device[0] ? device : (t->cf.device ? t->cf.device : ""));
        set_date(&f->ck, &st);
    }
    if (refingerprint && agent_ckpt_fingerprint(&f->ck, fd, (uint64_t)st.st_size) != SW_OK)
        f->ck.fp_len = 0;
    if (t->cf.format) {
        f->parser = t->cf.format;
    } else if (f->ck.parser[0]) {
        f->parser = agent_parser_find(f->ck.parser);
    }
    f->pend = f->read_off = f->ck.offset;
    t->files[t->n_files++] = f;
    hash_insert(t, f);
    hash_grow(t);
    touch(t, f);
}

/* Globs every pattern, matching paths to entries. */
static void
scan(struct agent_tail *t)
{
    int64_t now = now_ms();

    t->gen++;
    for (size_t i = 0; i < t->n_pats; i++) {
        const struct pattern *p = &t->pats[i];
        glob_t g;
        int rc = glob(p->glob, 0, NULL, &g);
        if (rc == GLOB_NOSPACE)
            t->scan_incomplete = 1;
        if (rc != 0) {
            globfree(&g);
            continue;
        }
        for (size_t j = 0; j < g.gl_pathc; j++) {
            const char *path = g.gl_pathv[j];
            struct stat st;
            if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            struct tail_file *f = lookup(t, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
            if (f == NULL) {
                char device[AGENT_CKPT_DEVICE_MAX];
                pattern_device(p, path, device, sizeof device);
                add_file(t, path, device);
                continue;
            }
            if (f->seen_gen == t->gen)
                continue;               /* a second name for the same file */
            f->seen_gen = t->gen;
            f->missing_ms = 0;
            f->scan_size = (uint64_t)st.st_size;
            f->scan_mtime_ns = mtime_ns(&st);
            if (strcmp(f->path, path) != 0) {
                char *np = strdup(path);
                if (np) {
                    sw_info("tail %s (inode %llu): renamed to %s; reading on from offset %llu",
                            f->path, (unsigned long long)f->ck.key.ino, path,
                            (unsigned long long)f->read_off);
                    if (f->ctx)
                        f->ctx->file = sw_slice_cstr(np);
                    free(f->path);
                    f->path = np;
                    touch(t, f);
                }
            }
        }
        globfree(&g);
    }
    for (size_t i = 0; i < t->n_files; i++) {
        struct tail_file *f = t->files[i];
        if (f->seen_gen != t->gen && f->missing_ms == 0)
            f->missing_ms = now;
    }
    if (t->boot_keys) {
        /* checkpoints of files that vanished while the agent was down */
        size_t forgotten = 0;
        if (!t->scan_incomplete) {
            for (size_t i = 0; i < t->n_boot; i++)
                if (!t->boot_seen[i] && add_del(t, &t->boot_keys[i]) == SW_OK)
                    forgotten++;
            if (forgotten)
                sw_info("forgetting the checkpoints of %zu files that are gone", forgotten);
        }
        free(t->boot_keys);
        free(t->boot_seen);
        t->boot_keys = NULL;
        t->boot_seen = NULL;
    }
}

/* ---- servicing one file ---- */

/* Marks f to be dropped at the next commit (its checkpoint deleted). */
static void
drop_file(struct agent_tail *t, struct tail_file *f, const char *why)
{
    sw_info("tail %s (inode %llu): %s; finished at offset %llu, forgetting it", f->path,
            (unsigned long long)f->ck.key.ino, why, (unsigned long long)f->read_off);
    f->dropping = 1;
    touch(t, f);
}

static void
service(struct agent_tail *t, struct tail_file *f, int64_t now)
{
    struct stat st;
    int missing = f->seen_gen != t->gen;
    int expired = missing && now - f->missing_ms >= t->cf.orphan_grace_ms;

    if (f->dropping || f->gone)
        return;
    if (f->fd < 0) {
        if (missing) {
            drop_file(t, f, "gone (it was read to its end)");
            return;
        }
        if (f->scan_size == f->size_done && f->scan_mtime_ns == f->mtime_ns)
            return;
        int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
            return;
        if (fstat(fd, &st) != 0 || (uint64_t)st.st_dev != f->ck.key.dev ||
            (uint64_t)st.st_ino != f->ck.key.ino) {
            close(fd);                  /* replaced since the scan: next cycle */
            return;
        }
        f->fd = fd;
        f->size_done = UINT64_MAX;      /* check its identity below */
    }
    if (fstat(f->fd, &st) != 0)
        return;
    uint64_t size = (uint64_t)st.st_size;
    int changed = size != f->size_done || mtime_ns(&st) != f->mtime_ns;
    if (!changed) {
        if (expired) {
            /* a last line without its newline will not get one now */
            if (f->parser && f->ck.enc >= 0 && tail_read(t, f, &st, 1) != SW_OK)
                return;                 /* spool full: try again next cycle */
            drop_file(t, f, st.st_nlink == 0 ? "deleted" : "gone from the globs");
        } else if (!missing && now - f->active_ms >= TAIL_IDLE_CLOSE_MS) {
            close(f->fd);               /* reopened by path when it changes */
            f->fd = -1;
            f->scan_size = size;
            f->scan_mtime_ns = mtime_ns(&st);
        }
        return;
    }
    f->active_ms = now;
    if (size < f->read_off || size < f->ck.fp_len) {
        reset_file(t, f, &st, "truncated");
    } else {
        struct agent_ckpt id = f->ck;
        sw_err ce;
        id.offset = 0;
        if (agent_ckpt_check(&id, f->fd, size, &ce) != AGENT_CKPT_SAME) {
            if (ce == SW_OK)
                reset_file(t, f, &st, "rewritten (its first bytes changed)");
            else
                return;
        } else if (agent_ckpt_extend(&f->ck, f->fd, size)) {
            touch(t, f);
        }
    }
    if (!decide_format(t, f, &st, expired)) {
        f->size_done = f->ignored ? size : UINT64_MAX;
        f->mtime_ns = mtime_ns(&st);
        return;
    }
    /* errors are logged where they happen; the file is tried again next cycle */
    sw_err e = tail_read(t, f, &st, 0);
    if (e == SW_OK && f->ctx && f->parser->stateless)
        ctx_detach(t, f);               /* nothing worth keeping between reads */
}

/* ---- inotify ---- */

static int
watch_has(const struct agent_tail *t, const char *dir)
{
    for (size_t i = 0; i < t->n_watches; i++)
        if (strcmp(t->watches[i].dir, dir) == 0)
            return 1;
    return 0;
}

static void
watch_add(struct agent_tail *t, const char *dir)
{
    const uint32_t mask = IN_CREATE | IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                          IN_CLOSE_WRITE | IN_ATTRIB | IN_ONLYDIR;
    int wd;

    if (watch_has(t, dir))
        return;
    wd = inotify_add_watch(t->ino_fd, dir, mask);
    if (wd < 0) {
        if (errno == ENOSPC && !t->watch_warned) {
            sw_warn("inotify watch limit reached (fs.inotify.max_user_watches): "
                    "relying on polling for the rest");
            t->watch_warned = 1;
        }
        return;
    }
    if (t->n_watches == t->cap_watches) {
        size_t nc = t->cap_watches ? t->cap_watches * 2 : 16;
        struct watch *nw = realloc(t->watches, nc * sizeof(*nw));
        if (nw == NULL)
            return;
        t->watches = nw;
        t->cap_watches = nc;
    }
    t->watches[t->n_watches].dir = strdup(dir);
    if (t->watches[t->n_watches].dir == NULL)
        return;
    t->watches[t->n_watches].wd = wd;
    t->n_watches++;
}

/* Watches each pattern's fixed leading directory and every directory its
 * directory part matches, so new device folders and new files wake us. */
static void
watch_refresh(struct agent_tail *t)
{
    if (t->ino_fd < 0)
        return;
    for (size_t i = 0; i < t->n_pats; i++) {
        const struct pattern *p = &t->pats[i];
        watch_add(t, p->static_dir);
        if (p->dir_glob == NULL)
            continue;
        glob_t g;
        if (glob(p->dir_glob, GLOB_ONLYDIR, NULL, &g) == 0)
            for (size_t j = 0; j < g.gl_pathc && j < 8192; j++)
                watch_add(t, g.gl_pathv[j]);
        globfree(&g);
    }
}

int
agent_tail_fd(const struct agent_tail *t)
{
    return t->ino_fd;
}

int
agent_tail_drain(struct agent_tail *t)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int count = 0;

    if (t->ino_fd < 0)
        return 0;
    for (;;) {
        ssize_t n = read(t->ino_fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if (ev->mask & IN_IGNORED) {
                /* the directory went away: forget the watch, re-add if it returns */
                for (size_t i = 0; i < t->n_watches; i++) {
                    if (t->watches[i].wd == ev->wd) {
                        free(t->watches[i].dir);
                        t->watches[i] = t->watches[--t->n_watches];
                        break;
                    }
                }
            }
            if (ev->mask & (IN_CREATE | IN_MOVED_TO))
                t->watch_refresh_ms = 0; /* maybe a new directory */
            count++;
            p += sizeof(*ev) + ev->len;
        }
    }
    return count;
}

/* ---- the cycle ---- */

/* Frees the entries dropped by the last commit. */
static void
sweep(struct agent_tail *t)
{
    size_t j = 0;
    for (size_t i = 0; i < t->n_files; i++) {
        struct tail_file *f = t->files[i];
        if (f->gone) {
            hash_remove(t, f);
            file_free(t, f);
        } else {
            t->files[j++] = f;
        }
    }
    t->n_files = j;
}

sw_err
agent_tail_cycle(struct agent_tail *t, struct agent_tail_status *st)
{
    int64_t now;
    sw_err rv = SW_OK;

    t->more = 0;
    t->cycle_bytes = 0;
    t->cycle_events = 0;
    scan(t);
    now = now_ms();
    if (t->n_files) {
        size_t n = t->n_files, start = t->rr++ % n;
        for (size_t k = 0; k < n; k++)
            service(t, t->files[(start + k) % n], now);
    }
    int need = sw_wire_builder_count(t->builder) || t->n_dels ||
               (t->n_touched && now - t->last_commit_ms >= TAIL_CKPT_COMMIT_MS);
    for (size_t i = 0; !need && i < t->n_touched; i++)
        need = t->touched[i]->dropping;
    if (need && tail_commit(t) == SW_EDB)
        rv = SW_EDB;
    sweep(t);
    if (t->ino_fd >= 0 && now >= t->watch_refresh_ms) {
        watch_refresh(t);
        t->watch_refresh_ms = now + TAIL_WATCH_REFRESH_MS;
    }
    if (st) {
        st->more = t->more && !t->paused;
        st->paused = t->paused;
        st->files = t->n_files;
        st->events = t->cycle_events;
    }
    return rv;
}

sw_err
agent_tail_flush(struct agent_tail *t)
{
    return tail_commit(t);
}

sw_err
agent_tail_open(struct agent_tail **out, const struct agent_tail_conf *cf, struct agent_spool *sp)
{
    struct agent_tail *t;
    sw_err rv = SW_ENOMEM;

    *out = NULL;
    if (cf->n_patterns == 0)
        return SW_EINVAL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return SW_ENOMEM;
    t->ino_fd = -1;
    t->cf = *cf;
    t->sp = sp;
    if (!t->cf.ctx_budget_bytes)
        t->cf.ctx_budget_bytes = TAIL_CTX_BUDGET;
    if (t->cf.orphan_grace_ms <= 0)
        t->cf.orphan_grace_ms = TAIL_ORPHAN_GRACE_MS;
    t->batch_events = cf->batch_events ? cf->batch_events : TAIL_BATCH_EVENTS;
    t->batch_bytes = cf->batch_bytes ? cf->batch_bytes : TAIL_BATCH_BYTES;
    if (t->batch_bytes > agent_spool_max(sp) / 8)
        t->batch_bytes = (size_t)(agent_spool_max(sp) / 8);
    if (gethostname(t->host, sizeof t->host - 1) != 0)
        snprintf(t->host, sizeof t->host, "unknown");
    if (!t->cf.host)
        t->cf.host = t->host;
    if (!t->cf.agent_id)
        t->cf.agent_id = t->cf.host;
    t->next_batch_id = random_u64();
    t->pack_pct = 200;
    t->last_commit_ms = now_ms();
    sw_buf_init(&t->packed);
    if (agent_reader_init(&t->reader, AGENT_MAX_LINE) != SW_OK)
        goto fail;
    t->builder = sw_wire_builder_new();
    t->n_buckets = 256;
    t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
    t->pats = calloc(cf->n_patterns, sizeof(*t->pats));
    if (!t->builder || !t->buckets || !t->pats)
        goto fail;
    for (size_t i = 0; i < cf->n_patterns; i++) {
        rv = pattern_init(&t->pats[i], cf->patterns[i]);
        t->n_pats++;
        if (rv != SW_OK)
            goto fail;
    }
    rv = agent_spool_ckpt_keys(sp, &t->boot_keys, &t->n_boot);
    if (rv != SW_OK)
        goto fail;
    if (t->n_boot) {
        qsort(t->boot_keys, t->n_boot, sizeof(*t->boot_keys), key_cmp);
        t->boot_seen = calloc(t->n_boot, 1);
        if (t->boot_seen == NULL) {
            rv = SW_ENOMEM;
            goto fail;
        }
    } else {
        /* nothing to forget: an empty array still marks "first scan pending" */
        free(t->boot_keys);
        t->boot_keys = NULL;
    }
    if (!cf->no_inotify) {
        t->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (t->ino_fd < 0)
            sw_warn("inotify unavailable (%s): polling only", strerror(errno));
    }
    *out = t;
    return SW_OK;

fail:
    agent_tail_close(t);
    return rv;
}

void
agent_tail_close(struct agent_tail *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_files; i++)
        file_free(t, t->files[i]);
    free(t->files);
    free(t->buckets);
    free(t->touched);
    free(t->puts);
    free(t->dels);
    free(t->boot_keys);
    free(t->boot_seen);
    for (size_t i = 0; i < t->n_pats; i++)
        pattern_fini(&t->pats[i]);
    free(t->pats);
    for (size_t i = 0; i < t->n_watches; i++)
        free(t->watches[i].dir);
    free(t->watches);
    if (t->ino_fd >= 0)
        close(t->ino_fd);
    sw_wire_builder_free(t->builder);
    sw_buf_fini(&t->packed);
    if (t->reader.buf)
        agent_reader_fini(&t->reader);
    free(t);
}
