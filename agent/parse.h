/*
 * parse.h - drives a file through a parser: encoding, format detection,
 * line splitting, counters.  Used by `parse`, `send` and the tailer.
 */
#ifndef AGENT_PARSE_H
#define AGENT_PARSE_H

#include <stdint.h>

#include "parsers/parser.h"
#include "reader.h"

/* Sets up ctx for one file; allocates the parser's state. SW_ENOMEM or init's error. */
sw_err agent_parse_ctx_init(struct agent_parse_ctx *ctx, const struct agent_parser *p,
                            const struct agent_parse_opts *opts, const char *file,
                            agent_emit_fn emit, void *emit_arg);

/* Ends input (parser's finish) and frees the state. */
void agent_parse_ctx_fini(struct agent_parse_ctx *ctx);

/*
 * One line (as the reader delivers it) to ctx's parser: counts it, drops a
 * line holding NUL bytes, sets the current record.  For callers that run
 * the reader themselves (the tailer).  flags: AGENT_LINE_* as the reader
 * gives them (0 from callers that vouch for nothing).
 */
void agent_parse_line(struct agent_parse_ctx *ctx, const char *line, size_t len,
                      uint64_t offset, int flags);

/*
 * Feeds fd's lines from 'start' to ctx.  final_line: also parse an
 * unterminated last line (one-shot reads of finished files).  *next is
 * where a later run resumes.
 */
sw_err agent_parse_run(struct agent_parse_ctx *ctx, struct agent_reader *r, int fd,
                       enum agent_encoding enc, uint64_t start, int final_line,
                       uint64_t *next);

/*
 * Reads the start of fd (up to 1 MiB, decoded) and picks a parser.
 * Returns NULL when no parser recognises the content.
 */
const struct agent_parser *agent_parse_detect_fd(struct agent_reader *r, int fd,
                                                 enum agent_encoding enc);

/* Reads the encoding from fd's first bytes. */
enum agent_encoding agent_parse_encoding_fd(int fd);

/*
 * One-shot: opens path, detects encoding and (fmt == NULL) format, fills
 * the date from the file's mtime when opts has none, parses to the end.
 * counts (may be NULL) accumulates.  *used (may be NULL) gets the parser.
 * Errors: SW_ENOENT/SW_EIO (cannot read), SW_EPARSE (auto found no format).
 */
sw_err agent_parse_file(const char *path, const struct agent_parser *fmt,
                        const struct agent_parse_opts *opts, struct agent_reader *r,
                        agent_emit_fn emit, void *emit_arg,
                        uint64_t counts[AGENT_COUNT_MAX], const struct agent_parser **used);

#endif
