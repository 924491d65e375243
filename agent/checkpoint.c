/*
 * checkpoint.c - file identity: fingerprints and the resume decision.
 */
#include "checkpoint.h"

#include <errno.h>
#include <unistd.h>
#include <xxhash.h>

/* Hash of fd's first n bytes (n <= AGENT_FP_MAX).  -1 on a short read. */
static int
hash_prefix(int fd, uint32_t n, uint64_t *out)
{
    unsigned char buf[AGENT_FP_MAX];
    size_t got = 0;

    while (got < n) {
        ssize_t k = pread(fd, buf + got, n - got, (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    *out = XXH64(buf, n, 0);
    return 0;
}

sw_err
agent_ckpt_fingerprint(struct agent_ckpt *ck, int fd, uint64_t size)
{
    uint32_t n = size < AGENT_FP_MAX ? (uint32_t)size : AGENT_FP_MAX;
    uint64_t h;

    if (hash_prefix(fd, n, &h) != 0)
        return SW_EIO;
    ck->fp_len = n;
    ck->fp_hash = h;
    return SW_OK;
}

enum agent_ckpt_verdict
agent_ckpt_check(const struct agent_ckpt *ck, int fd, uint64_t size, sw_err *err)
{
    uint64_t h;

    *err = SW_OK;
    if (size < ck->fp_len)
        return AGENT_CKPT_TRUNCATED;
    if (hash_prefix(fd, ck->fp_len, &h) != 0) {
        *err = SW_EIO;
        return AGENT_CKPT_OTHER;
    }
    if (h != ck->fp_hash)
        return AGENT_CKPT_OTHER;
    if (size < ck->offset)
        return AGENT_CKPT_TRUNCATED;
    return AGENT_CKPT_SAME;
}

int
agent_ckpt_extend(struct agent_ckpt *ck, int fd, uint64_t size)
{
    struct agent_ckpt tmp = *ck;

    if (ck->fp_len >= AGENT_FP_MAX || size <= ck->fp_len)
        return 0;
    if (agent_ckpt_fingerprint(&tmp, fd, size) != SW_OK)
        return 0;
    ck->fp_len = tmp.fp_len;
    ck->fp_hash = tmp.fp_hash;
    return 1;
}

const char *
agent_ckpt_verdict_name(enum agent_ckpt_verdict v)
{
    switch (v) {
    case AGENT_CKPT_SAME: return "same file";
    case AGENT_CKPT_TRUNCATED: return "truncated";
    case AGENT_CKPT_OTHER: return "different content (inode reused or rewritten)";
    }
    return "?";
}
