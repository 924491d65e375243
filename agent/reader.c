/*
 * reader.c - line splitting over a file, with UTF-16 decoding.
 */
#include "reader.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK (256u * 1024)

sw_err
agent_reader_init(struct agent_reader *r, size_t max_line)
{
    memset(r, 0, sizeof *r);
    r->max_line = max_line;
    r->cap = READ_CHUNK + max_line;
    r->buf = malloc(r->cap);
    r->line_cap = max_line + 4;
    r->line = malloc(r->line_cap);
    if (!r->buf || !r->line) {
        agent_reader_fini(r);
        return SW_ENOMEM;
    }
    return SW_OK;
}

void
agent_reader_fini(struct agent_reader *r)
{
    free(r->buf);
    free(r->line);
    memset(r, 0, sizeof *r);
}

enum agent_encoding
agent_reader_detect(const unsigned char *p, size_t n)
{
    if (n >= 2 && p[0] == 0xff && p[1] == 0xfe)
        return AGENT_ENC_UTF16LE;
    if (n >= 2 && p[0] == 0xfe && p[1] == 0xff)
        return AGENT_ENC_UTF16BE;
    if (n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
        return AGENT_ENC_UTF8_BOM;
    /* BOM-less UTF-16LE: ASCII text with every odd byte NUL */
    if (n >= 8 && p[0] && !p[1] && p[2] && !p[3] && p[4] && !p[5] && p[6] && !p[7])
        return AGENT_ENC_UTF16LE;
    return AGENT_ENC_UTF8;
}

uint64_t
agent_reader_content_start(enum agent_encoding enc)
{
    switch (enc) {
    case AGENT_ENC_UTF8_BOM: return 3;
    case AGENT_ENC_UTF16LE:
    case AGENT_ENC_UTF16BE: return 0; /* BOM decodes to U+FEFF, dropped below */
    default: return 0;
    }
}

static ssize_t
read_full(int fd, char *p, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, p + got, n - got, (off_t)(off + got));
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

static void
put_utf8(char **o, unsigned cp)
{
    unsigned char *q = (unsigned char *)*o;
    if (cp < 0x80) {
        *q++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *q++ = (unsigned char)(0xc0 | (cp >> 6));
        *q++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *q++ = (unsigned char)(0xe0 | (cp >> 12));
        *q++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        *q++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else {
        *q++ = (unsigned char)(0xf0 | (cp >> 18));
        *q++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        *q++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        *q++ = (unsigned char)(0x80 | (cp & 0x3f));
    }
    *o = (char *)q;
}

size_t
agent_utf16_to_utf8(const unsigned char *in, size_t n, int be, char *out)
{
    char *o = out;
    size_t i = 0;

    while (i + 1 < n) {
        unsigned u = be ? (unsigned)(in[i] << 8 | in[i + 1]) : (unsigned)(in[i] | in[i + 1] << 8);
        i += 2;
        if (u >= 0xd800 && u <= 0xdbff && i + 1 < n) {
            unsigned v = be ? (unsigned)(in[i] << 8 | in[i + 1]) : (unsigned)(in[i] | in[i + 1] << 8);
            if (v >= 0xdc00 && v <= 0xdfff) {
                i += 2;
                put_utf8(&o, 0x10000 + ((u - 0xd800) << 10) + (v - 0xdc00));
                continue;
            }
            u = 0xfffd;
        } else if (u >= 0xd800 && u <= 0xdfff) {
            u = 0xfffd;
        }
        put_utf8(&o, u);
    }
    return (size_t)(o - out);
}

/* Strips the CR of a CRLF and hands the line over. */
static int
deliver(agent_line_fn fn, void *arg, const char *p, size_t len, uint64_t off, int flags)
{
    if (!(flags & AGENT_LINE_TRUNCATED) && len && p[len - 1] == '\r')
        len--;
    return fn(arg, p, len, off, flags);
}

/* Index of the first NUL in buf[i, have), or SIZE_MAX: one scan a buffer, not one a line. */
static size_t
next_nul(const char *buf, size_t i, size_t have)
{
    const char *z = memchr(buf + i, '\0', have - i);
    return z ? (size_t)(z - buf) : SIZE_MAX;
}

static int
text_flag(size_t *nul, const char *buf, size_t i, size_t len, size_t have)
{
    if (*nul != SIZE_MAX && *nul < i)
        *nul = next_nul(buf, i, have);
    return *nul >= i + len ? AGENT_LINE_TEXT : 0;
}

static sw_err
run_utf8(struct agent_reader *r, int fd, uint64_t start, uint64_t limit, int final_line,
         agent_line_fn fn, void *arg, uint64_t *next)
{
    uint64_t pos = start;        /* file offset of buf[0] */
    size_t have = 0;             /* bytes in buf */
    size_t skip_to_nl = 0;       /* inside an overlong line being skipped */
    uint64_t skip_start = 0;
    int eof = 0;

    *next = start;
    for (;;) {
        size_t want = r->cap - have;
        if (limit && pos + have + want > start + limit)
            want = (size_t)(start + limit - pos - have);
        ssize_t k = want ? read_full(fd, r->buf + have, want, pos + have) : 0;
        if (k < 0)
            return SW_EIO;
        if ((size_t)k < want || want == 0)
            eof = 1;
        have += (size_t)k;

        size_t i = 0;
        size_t nul = next_nul(r->buf, 0, have);
        while (i < have) {
            char *nl = memchr(r->buf + i, '\n', have - i);
            if (skip_to_nl) {
                if (!nl) {
                    i = have;
                    break;
                }
                i = (size_t)(nl - r->buf) + 1;
                skip_to_nl = 0;
                *next = pos + i;
                (void)skip_start;
                continue;
            }
            if (!nl) {
                if (have - i > r->max_line) {
                    /* overlong: deliver the head now, skip the rest */
                    if (deliver(fn, arg, r->buf + i, r->max_line, pos + i,
                                AGENT_LINE_TRUNCATED | text_flag(&nul, r->buf, i, r->max_line, have)))
                        return SW_OK;
                    skip_to_nl = 1;
                    skip_start = pos + i;
                    i = have;
                }
                break;
            }
            size_t len = (size_t)(nl - (r->buf + i));
            int flags = 0;
            if (len > r->max_line) {
                len = r->max_line;
                flags = AGENT_LINE_TRUNCATED;
            }
            flags |= text_flag(&nul, r->buf, i, len, have);
            if (deliver(fn, arg, r->buf + i, len, pos + i, flags)) {
                *next = pos + (size_t)(nl - r->buf) + 1;
                return SW_OK;
            }
            i = (size_t)(nl - r->buf) + 1;
            *next = pos + i;
        }
        if (eof) {
            if (!skip_to_nl && i < have && final_line) {
                size_t len = have - i;
                if (len > r->max_line)
                    deliver(fn, arg, r->buf + i, r->max_line, pos + i, AGENT_LINE_TRUNCATED);
                else
                    deliver(fn, arg, r->buf + i, len, pos + i, 0);
                *next = pos + have;
            } else if (skip_to_nl && final_line) {
                *next = pos + have;
            }
            return SW_OK;
        }
        /* keep the unfinished tail at the front */
        memmove(r->buf, r->buf + i, have - i);
        pos += i;
        have -= i;
    }
}

static sw_err
run_utf16(struct agent_reader *r, int fd, int be, uint64_t start, uint64_t limit,
          int final_line, agent_line_fn fn, void *arg, uint64_t *next)
{
    uint64_t pos = start & ~(uint64_t)1;
    uint64_t line_start = pos;
    size_t llen = 0;
    int trunc = 0, eof = 0;
    size_t chunk = READ_CHUNK & ~(size_t)1;

    *next = pos;
    while (!eof) {
        size_t want = chunk;
        if (limit && pos + want > start + limit)
            want = (size_t)(start + limit - pos) & ~(size_t)1;
        ssize_t k = want ? read_full(fd, r->buf, want, pos) : 0;
        if (k < 0)
            return SW_EIO;
        if ((size_t)k < want || want == 0)
            eof = 1;
        size_t n = (size_t)k & ~(size_t)1;
        for (size_t i = 0; i < n; i += 2) {
            unsigned u = be ? (unsigned)((unsigned char)r->buf[i] << 8 | (unsigned char)r->buf[i + 1])
                            : (unsigned)((unsigned char)r->buf[i] | (unsigned char)r->buf[i + 1] << 8);
            if (u == '\n') {
                if (deliver(fn, arg, r->line, llen, line_start, trunc ? AGENT_LINE_TRUNCATED : 0)) {
                    *next = pos + i + 2;
                    return SW_OK;
                }
                llen = 0;
                trunc = 0;
                line_start = pos + i + 2;
                *next = line_start;
                continue;
            }
            if (u == 0xfeff && pos + i == 0)
                continue; /* BOM */
            if (llen + 4 > r->max_line) {
                trunc = 1;
                continue;
            }
            if (u >= 0xd800 && u <= 0xdbff && i + 3 < n) {
                unsigned v = be ? (unsigned)((unsigned char)r->buf[i + 2] << 8 | (unsigned char)r->buf[i + 3])
                                : (unsigned)((unsigned char)r->buf[i + 2] | (unsigned char)r->buf[i + 3] << 8);
                if (v >= 0xdc00 && v <= 0xdfff) {
                    u = 0x10000 + ((u - 0xd800) << 10) + (v - 0xdc00);
                    i += 2;
                } else {
                    u = 0xfffd;
                }
            } else if (u >= 0xd800 && u <= 0xdfff) {
                u = 0xfffd;
            }
            char *o = r->line + llen;
            put_utf8(&o, u);
            llen = (size_t)(o - r->line);
        }
        pos += n;
    }
    if (final_line && llen) {
        deliver(fn, arg, r->line, llen, line_start, trunc ? AGENT_LINE_TRUNCATED : 0);
        *next = pos;
    }
    return SW_OK;
}

sw_err
agent_reader_run(struct agent_reader *r, int fd, enum agent_encoding enc,
                 uint64_t start, uint64_t limit, int final_line,
                 agent_line_fn fn, void *arg, uint64_t *next)
{
    uint64_t cs = agent_reader_content_start(enc);
    if (start < cs)
        start = cs;
    if (enc == AGENT_ENC_UTF16LE || enc == AGENT_ENC_UTF16BE)
        return run_utf16(r, fd, enc == AGENT_ENC_UTF16BE, start, limit, final_line, fn, arg, next);
    return run_utf8(r, fd, start, limit, final_line, fn, arg, next);
}
