#include "sw_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
sw_buf_init(struct sw_buf *b)
{
    memset(b, 0, sizeof *b);
}

void
sw_buf_fini(struct sw_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void
sw_buf_reset(struct sw_buf *b)
{
    b->len = 0;
    b->oom = 0;
    if (b->cap)
        b->data[0] = '\0';
}

sw_err
sw_buf_reserve(struct sw_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > ((size_t)-1 >> 2) - b->len)
        return SW_ENOMEM;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return SW_OK;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return SW_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return SW_OK;
}

void
sw_buf_append_slow(struct sw_buf *b, const void *p, size_t n)
{
    if (sw_buf_reserve(b, n) != SW_OK)
        return;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void
sw_buf_put_u64(struct sw_buf *b, unsigned long long v)
{
    char d[20];
    size_t i = sizeof d;

    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sw_buf_append(b, d + i, sizeof d - i);
}

void
sw_buf_puts(struct sw_buf *b, const char *s)
{
    sw_buf_append(b, s, strlen(s));
}

void
sw_buf_printf(struct sw_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || sw_buf_reserve(b, (size_t)n) != SW_OK)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}
