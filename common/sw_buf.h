/*
 * sw_buf.h - a growable byte buffer.
 *
 * Append functions grow the buffer geometrically; on allocation failure
 * they set buf->oom and drop the data, so a caller can append a whole
 * record and check once.  The data is always NUL-terminated when cap > 0.
 */
#ifndef SW_BUF_H
#define SW_BUF_H

#include <stddef.h>
#include <string.h>

#include "sw_err.h"

struct sw_buf {
    char *data;
    size_t len;
    size_t cap;
    int oom;
};

void sw_buf_init(struct sw_buf *b);
void sw_buf_fini(struct sw_buf *b);
void sw_buf_reset(struct sw_buf *b);   /* len = 0, keeps memory */
sw_err sw_buf_reserve(struct sw_buf *b, size_t extra);
void sw_buf_append_slow(struct sw_buf *b, const void *p, size_t n);
void sw_buf_puts(struct sw_buf *b, const char *s);
/* Appends the decimal digits of v. */
void sw_buf_put_u64(struct sw_buf *b, unsigned long long v);
void sw_buf_printf(struct sw_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The hot path (room left) inline: the JSON writer calls these a dozen
 * times per event.  The buffer stays NUL-terminated.
 */
static inline void
sw_buf_append(struct sw_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len > n) {
        if (n)
            memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return;
    }
    sw_buf_append_slow(b, p, n);
}

static inline void
sw_buf_putc(struct sw_buf *b, char c)
{
    if (b->cap - b->len > 1) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return;
    }
    sw_buf_append_slow(b, &c, 1);
}

#endif
