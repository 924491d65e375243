/*
 * th.h - test helpers: temporary files, parsing a string through a parser,
 * comparing JSON Lines as objects.
 */
#ifndef TH_H
#define TH_H

#include <stddef.h>
#include <stdint.h>

#include "parse.h"
#include "sw_buf.h"

/* Source tree root (tests/data lives under it); set by CMake. */
#ifndef TH_SOURCE_DIR
#define TH_SOURCE_DIR "."
#endif

/* Writes content to a new temp file; returns its malloc'd path. */
char *th_write_temp(const void *content, size_t len);

/*
 * Parses content with the named format ("auto" for detection) and appends
 * each event's JSON line to out.  counts may be NULL.  Returns the sw_err
 * of agent_parse_file.
 */
int th_parse_string(const char *format, const void *content, size_t len,
                    const struct agent_parse_opts *opts, struct sw_buf *out,
                    uint64_t counts[AGENT_COUNT_MAX]);

/* Same for a file path. */
int th_parse_path(const char *format, const char *path, const struct agent_parse_opts *opts,
                  struct sw_buf *out, uint64_t counts[AGENT_COUNT_MAX]);

/*
 * Compares two JSON Lines texts object by object (in order), ignoring
 * the keys "file", "offset" and "host".  Returns 0 when equal; otherwise
 * prints the first difference to stderr and returns -1.
 */
int th_jsonl_equal(const char *got, const char *expected);

/* Reads a whole file into a malloc'd NUL-terminated buffer (NULL on error). */
char *th_read_file(const char *path, size_t *len);

/* Number of lines in a JSON Lines text. */
size_t th_count_lines(const char *s);

#endif

/* ---- processes (end-to-end tests) ---- */

#include <sys/types.h>

/*
 * Runs argv (argv[0] a path), waits, returns the exit status (or 128+signal).
 * out/err (may be NULL) receive stdout/stderr.  stdin is /dev/null.
 */
int th_run(char *const argv[], struct sw_buf *out, struct sw_buf *err);

/*
 * Starts scepwatch-aggregator --db db --listen url [extra...] and waits (up
 * to 10 s) for its readiness line.  Returns the pid, or -1.
 */
pid_t th_start_aggregator(const char *db, const char *url, char *const extra[]);

/* SIGTERM, then waits; returns the exit status (0 = clean stop). */
int th_stop(pid_t pid);

/* A fresh temp directory (malloc'd path). */
char *th_temp_dir(void);
