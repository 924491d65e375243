#include "ident_set.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#define MIN_CAP 1024
/*
 * Tables from 2 MiB up are mapped on their own, aligned, and asked for huge
 * pages: probes land anywhere in the table, and with 4 KiB pages each was
 * a TLB miss and each first touch a page fault (about 14 us on the VM
 * measured; growing to 16 MiB cost 7% of a 100k-enrollment upload).
 */
#define HUGE_BYTES ((size_t)2 << 20)

static struct ident_slot *
slots_alloc(size_t cap)
{
    size_t bytes = cap * sizeof(struct ident_slot), len = bytes + HUGE_BYTES;
    if (bytes < HUGE_BYTES)
        return calloc(cap, sizeof(struct ident_slot));
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    char *a = (char *)(((uintptr_t)p + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
    if (a > p)
        munmap(p, (size_t)(a - p));
    if (p + len > a + bytes)
        munmap(a + bytes, (size_t)(p + len - (a + bytes)));
#ifdef MADV_HUGEPAGE
    madvise(a, bytes, MADV_HUGEPAGE);   /* advice: without it, 4 KiB pages */
#endif
    return (struct ident_slot *)(void *)a;
}

static void
slots_free(struct ident_slot *slots, size_t cap)
{
    size_t bytes = cap * sizeof *slots;
    if (!slots)
        return;
    if (bytes < HUGE_BYTES)
        free(slots);
    else
        munmap(slots, bytes);
}

static uint64_t
mix(uint64_t x)
{
    /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

uint64_t
ident_set_fp(const struct ident_set *s, const unsigned char *ident, size_t len)
{
    uint64_t h = mix(s->key ^ UINT64_C(0x9e3779b97f4a7c15) ^ len);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, ident + i, 8);
        h = mix(h ^ w);
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, ident + i, len - i);
        h = mix(h ^ w);
    }
    return h ? h : 1;
}

void
ident_set_init(struct ident_set *s)
{
    uint64_t key;
    memset(s, 0, sizeof *s);
    if (getrandom(&key, sizeof key, GRND_NONBLOCK) != (ssize_t)sizeof key) {
        /* no entropy yet (early boot): still unlike any other process's */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        key = mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)s);
    }
    s->key = key;
}

void
ident_set_fini(struct ident_set *s)
{
    slots_free(s->slots, s->cap);
    s->slots = NULL;
    s->cap = s->n = 0;
}

static size_t
put(struct ident_slot *slots, size_t cap, uint64_t fp, int64_t id)
{
    size_t i = (size_t)fp & (cap - 1);
    while (slots[i].fp)
        i = (i + 1) & (cap - 1);
    slots[i].fp = fp;
    slots[i].id = id;
    return i;
}

sw_err
ident_set_reserve(struct ident_set *s, size_t n)
{
    size_t want = s->n + n, cap = s->cap ? s->cap : MIN_CAP;
    if (want < s->n)
        return SW_ENOMEM;
    /* at most three quarters full: a probe stays a slot or two long */
    while (want > cap / 4 * 3) {
        if (cap > SIZE_MAX / 2 / sizeof *s->slots)
            return SW_ENOMEM;
        cap *= 2;
    }
    if (cap == s->cap)
        return SW_OK;
    struct ident_slot *ns = slots_alloc(cap);
    if (!ns)
        return SW_ENOMEM;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i].fp)
            put(ns, cap, s->slots[i].fp, s->slots[i].id);
    slots_free(s->slots, s->cap);
    s->slots = ns;
    s->cap = cap;
    return SW_OK;
}

sw_err
ident_set_add(struct ident_set *s, uint64_t fp, int64_t id, size_t *slot)
{
    sw_err e = ident_set_reserve(s, 1);
    if (e != SW_OK)
        return e;
    size_t i = put(s->slots, s->cap, fp ? fp : 1, id);
    if (slot)
        *slot = i;
    s->n++;
    return SW_OK;
}

void
ident_set_undo(struct ident_set *s, const size_t *slots, size_t k)
{
    while (k--) {
        if (slots[k] < s->cap && s->slots[slots[k]].fp && s->n) {
            s->slots[slots[k]].fp = 0;
            s->n--;
        }
    }
}

void
ident_set_prefetch(const struct ident_set *s, uint64_t fp)
{
    if (s->cap)
        __builtin_prefetch(&s->slots[(size_t)(fp ? fp : 1) & (s->cap - 1)]);
}

void
ident_set_probe(const struct ident_set *s, uint64_t fp, struct ident_probe *p)
{
    p->fp = fp ? fp : 1;
    p->i = s->cap ? (size_t)p->fp & (s->cap - 1) : 0;
    p->seen = 0;
}

int
ident_set_next(const struct ident_set *s, struct ident_probe *p, int64_t *id)
{
    /* the table is never full, so an empty slot ends every walk */
    while (s->cap && p->seen < s->cap && s->slots[p->i].fp) {
        const struct ident_slot *sl = &s->slots[p->i];
        p->i = (p->i + 1) & (s->cap - 1);
        p->seen++;
        if (sl->fp == p->fp) {
            *id = sl->id;
            return 1;
        }
    }
    return 0;
}

size_t
ident_set_bytes(const struct ident_set *s)
{
    return s->cap * sizeof *s->slots;
}
