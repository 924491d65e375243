/*
 * reader.h - splits a file into lines from a byte offset, decoding
 * UTF-16LE (BOM at offset 0) to UTF-8 on the way.
 *
 * The reader owns one buffer (reused across files: a tailer with a
 * thousand files keeps one).  Lines are delivered without their
 * terminator; a line longer than max_line is delivered cut to max_line
 * with AGENT_LINE_TRUNCATED and the rest skipped.  An incomplete final line
 * is not delivered unless final_line is set: a tailer will see it again
 * once it is complete.
 *
 * Offsets are in the file's own bytes (UTF-16 offsets count two bytes
 * per code unit), so a checkpoint can resume anywhere a line starts.
 */
#ifndef AGENT_READER_H
#define AGENT_READER_H

#include <stddef.h>
#include <stdint.h>

#include "sw_err.h"

enum agent_encoding { AGENT_ENC_UTF8, AGENT_ENC_UTF8_BOM, AGENT_ENC_UTF16LE, AGENT_ENC_UTF16BE };

struct agent_reader {
    char *buf;          /* raw bytes read */
    size_t cap;
    char *line;         /* assembled/decoded line */
    size_t line_cap;
    size_t max_line;
};

/* Line flags. */
#define AGENT_LINE_TRUNCATED 1  /* cut to max_line, the rest skipped */
#define AGENT_LINE_TEXT 2       /* the reader vouches the line holds no NUL byte */

/* Called for each line; return non-zero to stop early. */
typedef int (*agent_line_fn)(void *arg, const char *line, size_t len,
                             uint64_t offset, int flags);

sw_err agent_reader_init(struct agent_reader *r, size_t max_line);
void agent_reader_fini(struct agent_reader *r);

/* Detects the encoding from a file's first bytes (BOM or NUL pattern). */
enum agent_encoding agent_reader_detect(const unsigned char *p, size_t n);

/* Where content starts for an encoding (past the BOM). */
uint64_t agent_reader_content_start(enum agent_encoding enc);

/*
 * Reads fd from 'start' to EOF (or 'limit' bytes, 0 = no limit), calling fn
 * per line.  *next receives the offset just past the last line delivered
 * (where to resume).  Returns SW_OK or SW_EIO.
 */
sw_err agent_reader_run(struct agent_reader *r, int fd, enum agent_encoding enc,
                        uint64_t start, uint64_t limit, int final_line,
                        agent_line_fn fn, void *arg, uint64_t *next);

/*
 * Decodes UTF-16 (LE or BE) to UTF-8.  Unpaired surrogates become U+FFFD.
 * out must hold 3 bytes per input code unit (n/2*3).  Returns bytes written.
 */
size_t agent_utf16_to_utf8(const unsigned char *in, size_t n, int big_endian, char *out);

#endif
