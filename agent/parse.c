/*
 * parse.c - file -> lines -> parser -> events.
 */
#include "parse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DETECT_BYTES (1u << 20)

sw_err
agent_parse_ctx_init(struct agent_parse_ctx *ctx, const struct agent_parser *p,
                     const struct agent_parse_opts *opts, const char *file,
                     agent_emit_fn emit, void *emit_arg)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->parser = p;
    if (opts)
        ctx->opts = *opts;
    ctx->file = sw_slice_cstr(file);
    ctx->hold_offset = UINT64_MAX;
    ctx->emit = emit;
    ctx->emit_arg = emit_arg;
    if (p->state_size) {
        ctx->state = calloc(1, p->state_size);
        if (!ctx->state)
            return SW_ENOMEM;
    }
    if (p->init) {
        sw_err e = p->init(ctx);
        if (e != SW_OK) {
            free(ctx->state);
            ctx->state = NULL;
            return e;
        }
    }
    return SW_OK;
}

void
agent_parse_ctx_fini(struct agent_parse_ctx *ctx)
{
    if (ctx->parser && ctx->parser->finish)
        ctx->parser->finish(ctx);
    if (ctx->parser && ctx->parser->fini)
        ctx->parser->fini(ctx);
    free(ctx->state);
    ctx->state = NULL;
}

void
agent_parse_line(struct agent_parse_ctx *ctx, const char *line, size_t len, uint64_t offset,
                 int flags)
{
    int truncated = (flags & AGENT_LINE_TRUNCATED) != 0;

    ctx->counts[AGENT_COUNT_LINES]++;
    if (truncated)
        ctx->counts[AGENT_COUNT_OVERLONG]++;
    if (!(flags & AGENT_LINE_TEXT) && memchr(line, '\0', len)) {
        ctx->counts[AGENT_COUNT_BINARY]++;
        return;
    }
    ctx->line_offset = offset;
    ctx->line_truncated = truncated;
    ctx->rec = line;
    ctx->rec_len = len;
    ctx->rec_offset = offset;
    ctx->parser->line(ctx, line, len);
}

static int
on_line(void *arg, const char *line, size_t len, uint64_t offset, int flags)
{
    agent_parse_line(arg, line, len, offset, flags);
    return 0;
}

sw_err
agent_parse_run(struct agent_parse_ctx *ctx, struct agent_reader *r, int fd,
                enum agent_encoding enc, uint64_t start, int final_line, uint64_t *next)
{
    return agent_reader_run(r, fd, enc, start, 0, final_line, on_line, ctx, next);
}

enum agent_encoding
agent_parse_encoding_fd(int fd)
{
    unsigned char head[8];
    ssize_t n = pread(fd, head, sizeof head, 0);
    return agent_reader_detect(head, n > 0 ? (size_t)n : 0);
}

struct detect_acc {
    char *buf;
    size_t len;
};

static int
detect_line(void *arg, const char *line, size_t len, uint64_t offset, int flags)
{
    struct detect_acc *a = arg;
    (void)offset;
    (void)flags;
    if (a->len + len + 1 > DETECT_BYTES)
        return 1;
    memcpy(a->buf + a->len, line, len);
    a->len += len;
    a->buf[a->len++] = '\n';
    return 0;
}

const struct agent_parser *
agent_parse_detect_fd(struct agent_reader *r, int fd, enum agent_encoding enc)
{
    struct detect_acc a = { malloc(DETECT_BYTES), 0 };
    const struct agent_parser *p;
    uint64_t next;

    if (!a.buf)
        return NULL;
    agent_reader_run(r, fd, enc, 0, DETECT_BYTES * 2, 1, detect_line, &a, &next);
    p = agent_parser_detect(a.buf, a.len);
    free(a.buf);
    return p;
}

sw_err
agent_parse_file(const char *path, const struct agent_parser *fmt,
                 const struct agent_parse_opts *opts, struct agent_reader *r,
                 agent_emit_fn emit, void *emit_arg,
                 uint64_t counts[AGENT_COUNT_MAX], const struct agent_parser **used)
{
    struct agent_parse_opts o = *opts;
    struct agent_parse_ctx ctx;
    struct stat st;
    enum agent_encoding enc;
    uint64_t next;
    sw_err e;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sw_err_from_errno(errno);
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? SW_EINVAL : SW_EIO;
    }
    enc = agent_parse_encoding_fd(fd);
    if (!fmt) {
        fmt = agent_parse_detect_fd(r, fd, enc);
        if (!fmt) {
            close(fd);
            return SW_EPARSE;
        }
    }
    if (used)
        *used = fmt;
    if (!o.has_date) {
        struct tm tm;
        time_t t = st.st_mtime;
        if (localtime_r(&t, &tm)) {
            o.has_date = 1;
            o.date_y = tm.tm_year + 1900;
            o.date_m = tm.tm_mon + 1;
            o.date_d = tm.tm_mday;
        }
    }
    e = agent_parse_ctx_init(&ctx, fmt, &o, path, emit, emit_arg);
    if (e != SW_OK) {
        close(fd);
        return e;
    }
    e = agent_parse_run(&ctx, r, fd, enc, 0, 1, &next);
    agent_parse_ctx_fini(&ctx);
    if (counts)
        for (int i = 0; i < AGENT_COUNT_MAX; i++)
            counts[i] += ctx.counts[i];
    close(fd);
    return e;
}
