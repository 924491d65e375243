/*
 * ca_certutil_csv.c - placeholder until the parser lands (issue 3): recognises nothing.
 */
#include "parser.h"

static void
line(struct agent_parse_ctx *ctx, const char *l, size_t n)
{
    (void)l;
    (void)n;
    ctx->counts[AGENT_COUNT_NOISE]++;
}

const struct agent_parser agent_parser_ca_certutil_csv = {
    .name = "ca_certutil_csv",
    .source = SW_SOURCE_CA_CERTUTIL_CSV,
    .line = line,
};
