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
void sw_buf_append(struct sw_buf *b, const void *p, size_t n);
void sw_buf_putc(struct sw_buf *b, char c);
void sw_buf_puts(struct sw_buf *b, const char *s);
void sw_buf_printf(struct sw_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
