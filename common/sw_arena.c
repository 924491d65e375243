/*
 * sw_arena.c - a block arena (see sw_arena.h).
 */
#include "sw_arena.h"

#include <stdint.h>
#include <stdlib.h>

struct sw_arena_block {
    struct sw_arena_block *next;
    size_t used, cap;
    char mem[];
};

#define BLOCK_BYTES 65536
#define BIG (BLOCK_BYTES - 4096)    /* larger requests get a block of their own */

static struct sw_arena_block *
take_spare(struct sw_arena *a, size_t n)
{
    for (struct sw_arena_block **pp = &a->spare; *pp; pp = &(*pp)->next) {
        struct sw_arena_block *b = *pp;
        if (b->cap >= n) {
            *pp = b->next;
            return b;
        }
    }
    return NULL;
}

/* n as handed out: 16-byte multiples, at least 16 (SIZE_MAX when that overflows) */
static size_t
rounded(size_t n)
{
    return n > SIZE_MAX - 15 ? SIZE_MAX : n ? (n + 15) & ~(size_t)15 : 16;
}

int
sw_arena_fits(const struct sw_arena *a, size_t n)
{
    return !a->limit || (a->total <= a->limit && rounded(n) <= a->limit - a->total);
}

void *
sw_arena_get(struct sw_arena *a, size_t n)
{
    if (!sw_arena_fits(a, n))
        return NULL;
    n = rounded(n);
    if (n == SIZE_MAX)
        return NULL;
    struct sw_arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > BIG ? n : BLOCK_BYTES - sizeof *b;
        if (!(b = take_spare(a, cap))) {
            if (!(b = malloc(sizeof *b + cap)))
                return NULL;
            b->cap = cap;
        }
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->mem + b->used;
    b->used += n;
    a->total += n;
    return p;
}

void
sw_arena_reset(struct sw_arena *a)
{
    while (a->head) {
        struct sw_arena_block *b = a->head;
        a->head = b->next;
        b->next = a->spare;
        a->spare = b;
    }
    a->total = 0;
}

static void
free_list(struct sw_arena_block *b)
{
    while (b) {
        struct sw_arena_block *nx = b->next;
        free(b);
        b = nx;
    }
}

void
sw_arena_release(struct sw_arena *a)
{
    free_list(a->head);
    free_list(a->spare);
    a->head = a->spare = NULL;
    a->total = 0;
}

static void *
pb_alloc(void *ad, size_t n)
{
    return sw_arena_get(ad, n);
}

static void
pb_free(void *ad, void *p)
{
    (void)ad;
    (void)p;
}

ProtobufCAllocator
sw_arena_allocator(struct sw_arena *a)
{
    ProtobufCAllocator al = { pb_alloc, pb_free, a };
    return al;
}
