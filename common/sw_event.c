#include "sw_event.h"

#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#define NAME_ITEM(code, name) [code] = name,
static const char *const source_names[] = { SW_SOURCE_MAP(NAME_ITEM) };
static const char *const platform_names[] = { SW_PLATFORM_MAP(NAME_ITEM) };
static const char *const stage_names[] = { SW_STAGE_MAP(NAME_ITEM) };
static const char *const cert_names[] = { SW_CERT_MAP(NAME_ITEM) };
#undef NAME_ITEM

const char *
sw_source_name(enum sw_source s)
{
    return (unsigned)s < SW_SOURCE_COUNT ? source_names[s] : NULL;
}

const char *
sw_platform_name(enum sw_platform p)
{
    return (unsigned)p < SW_PLATFORM_COUNT ? platform_names[p] : NULL;
}

const char *
sw_stage_name(enum sw_stage s)
{
    return (unsigned)s < SW_STAGE_COUNT ? stage_names[s] : NULL;
}

const char *
sw_cert_name(enum sw_cert c)
{
    return (unsigned)c < SW_CERT_COUNT ? cert_names[c] : NULL;
}

static int
lookup(const char *const *names, int count, const char *s, size_t n)
{
    for (int i = 1; i < count; i++)
        if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0)
            return i;
    return 0;
}

enum sw_source
sw_source_from_name(const char *s, size_t n)
{
    return (enum sw_source)lookup(source_names, SW_SOURCE_COUNT, s, n);
}

enum sw_platform
sw_platform_from_name(const char *s, size_t n)
{
    return (enum sw_platform)lookup(platform_names, SW_PLATFORM_COUNT, s, n);
}

enum sw_stage
sw_stage_from_name(const char *s, size_t n)
{
    return (enum sw_stage)lookup(stage_names, SW_STAGE_COUNT, s, n);
}

uint32_t
sw_line_hash(const void *line, size_t len)
{
    return (uint32_t)XXH3_64bits(line, len);
}

/* Each field is fed as tag, length, bytes, so ("ab","c") != ("a","bc"). */
static void
feed(XXH3_state_t *st, unsigned char tag, const void *p, size_t n)
{
    uint32_t len = (uint32_t)n;
    XXH3_128bits_update(st, &tag, 1);
    XXH3_128bits_update(st, &len, sizeof len);
    if (n)
        XXH3_128bits_update(st, p, n);
}

static uint32_t
device_hash(const char *p, size_t len)
{
    return (uint32_t)XXH3_64bits(len ? p : "", len);
}

void
sw_event_ident_range(const char *device, size_t len, unsigned char lo[SW_EVENT_IDENT_LEN],
                     unsigned char hi[SW_EVENT_IDENT_LEN])
{
    uint32_t dh = device_hash(device, device ? len : 0);
    for (int i = 0; i < 4; i++)
        lo[i] = hi[i] = (unsigned char)(dh >> (24 - 8 * i));
    memset(lo + 4, 0x00, SW_EVENT_IDENT_LEN - 4);
    memset(hi + 4, 0xff, SW_EVENT_IDENT_LEN - 4);
}

void
sw_event_identity(const struct sw_event *ev, unsigned char out[SW_EVENT_IDENT_LEN])
{
    XXH3_state_t st;
    uint32_t v[4] = { (uint32_t)ev->source, (uint32_t)ev->platform,
                      (uint32_t)ev->stage, (uint32_t)ev->cert };
    unsigned char tag = 0;

    XXH3_128bits_reset(&st);
    feed(&st, tag++, v, sizeof v);
    feed(&st, tag++, &ev->ts_us, sizeof ev->ts_us);
    feed(&st, tag++, &ev->line_hash, sizeof ev->line_hash);
#define X(f) feed(&st, tag++, ev->f.ptr, ev->f.len);
    SW_EVENT_STR_FIELDS(X)
#undef X
    XXH128_hash_t h = XXH3_128bits_digest(&st);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);

    uint32_t dh = device_hash(ev->device.ptr, ev->device.len);
    uint64_t t = (uint64_t)ev->ts_us ^ (UINT64_C(1) << 63);   /* signed order as bytes */
    for (int i = 0; i < 4; i++)
        out[i] = (unsigned char)(dh >> (24 - 8 * i));
    for (int i = 0; i < 8; i++)
        out[4 + i] = (unsigned char)(t >> (56 - 8 * i));
    memcpy(out + 12, c.digest, 12);
}
