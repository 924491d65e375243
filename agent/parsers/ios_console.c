/*
 * ios_console.c - placeholder until the parser lands (issue 3): recognises nothing.
 */
#include "parser.h"

static void
line(struct agent_parse_ctx *ctx, const char *l, size_t n)
{
    (void)l;
    (void)n;
    ctx->counts[AGENT_COUNT_NOISE]++;
}

const struct agent_parser agent_parser_ios_console = {
    .name = "ios_console",
    .source = SW_SOURCE_IOS_CONSOLE,
    .line = line,
};
