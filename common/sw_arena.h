/*
 * sw_arena.h - a block arena: many small allocations, freed all at once.
 *
 * Unpacked protobuf messages are thousands of small objects (an event or
 * an enrollment row is a struct and up to a dozen strings) that live and
 * die together.  An arena hands them out by bumping a pointer in 64 KiB
 * blocks and drops them in one call.
 *
 * sw_arena_reset keeps the blocks for the next round: a loop that unpacks
 * page after page, or batch after batch, touches the same memory again
 * instead of fresh pages (a page fault each, a dear one on some virtual
 * machines).  sw_arena_release gives the memory back.
 *
 * limit (0 = none) caps the bytes handed out between resets: a hostile
 * message cannot make the unpacker allocate past it.
 */
#ifndef SW_ARENA_H
#define SW_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

struct sw_arena_block;

struct sw_arena {
    struct sw_arena_block *head;    /* in use, newest first */
    struct sw_arena_block *spare;   /* kept by reset */
    size_t total;                   /* bytes handed out since the last reset */
    size_t limit;                   /* 0 = none */
};

#define SW_ARENA_INIT { NULL, NULL, 0, 0 }

/* 16-byte aligned; NULL past the limit or out of memory. */
void *sw_arena_get(struct sw_arena *a, size_t n);
/* Whether n more bytes stay within the limit (tells the limit from no memory). */
int sw_arena_fits(const struct sw_arena *a, size_t n);
/* Everything handed out is dropped; the blocks stay for reuse. */
void sw_arena_reset(struct sw_arena *a);
/* Everything handed out is dropped and the memory freed. */
void sw_arena_release(struct sw_arena *a);
/* protobuf-c's allocator interface over an arena (free does nothing). */
ProtobufCAllocator sw_arena_allocator(struct sw_arena *a);

#endif
