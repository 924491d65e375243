#include "sw_log.h"

#include <stdarg.h>
#include <stdio.h>

static const char *log_prog = "scepwatch";
static enum sw_log_level log_level = SW_LOG_INFO;

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void
sw_log_init(const char *prog, enum sw_log_level level)
{
    log_prog = prog;
    log_level = level;
}

void
sw_log(enum sw_log_level level, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    int n;

    if (level > log_level)
        return;
    n = snprintf(line, sizeof line, "%s: %s: ", log_prog, level_names[level]);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
