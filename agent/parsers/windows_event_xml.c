/*
 * windows_event_xml.c - placeholder until the parser lands (issue 3): recognises nothing.
 */
#include "parser.h"

static void
line(struct agent_parse_ctx *ctx, const char *l, size_t n)
{
    (void)l;
    (void)n;
    ctx->counts[AGENT_COUNT_NOISE]++;
}

const struct agent_parser agent_parser_windows_event_xml = {
    .name = "windows_event_xml",
    .source = SW_SOURCE_WINDOWS_EVENT_XML,
    .line = line,
};
