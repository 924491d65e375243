#include "sw_err.h"

#include <errno.h>

static const char *const msgs[] = {
#define X(code, msg) [code] = msg,
    SW_ERR_MAP(X)
#undef X
};

const char *
sw_strerror(sw_err e)
{
    if ((unsigned)e >= SW_ERR_COUNT)
        return "unknown error";
    return msgs[e];
}

sw_err
sw_err_from_errno(int e)
{
    switch (e) {
    case 0: return SW_OK;
    case ENOMEM: return SW_ENOMEM;
    case ENOENT: return SW_ENOENT;
    case ENOSPC: case EDQUOT: return SW_EFULL;
    case EINVAL: return SW_EINVAL;
    case ETIMEDOUT: return SW_ETIMEDOUT;
    default: return SW_EIO;
    }
}
