/*
 * registry.c - the table of parsers and --format auto.
 */
#include <string.h>

#include "parser.h"

const struct agent_parser *const agent_parsers[] = {
    &agent_parser_android_omadm,
    &agent_parser_ios_console,
    &agent_parser_windows_event_xml,
    &agent_parser_ca_certutil_csv,
    &agent_parser_ndes_iis,
    NULL,
};

const struct agent_parser *
agent_parser_find(const char *name)
{
    for (int i = 0; agent_parsers[i]; i++)
        if (strcmp(agent_parsers[i]->name, name) == 0)
            return agent_parsers[i];
    return NULL;
}

const struct agent_parser *
agent_parser_detect(const char *buf, size_t len)
{
    const struct agent_parser *best = NULL;
    int best_score = 0;

    for (int i = 0; agent_parsers[i]; i++) {
        int s = agent_parsers[i]->probe ? agent_parsers[i]->probe(buf, len) : 0;
        if (s > best_score) {
            best_score = s;
            best = agent_parsers[i];
        }
    }
    return best;
}
