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

/*
 * Removes an aggregator database and what the store keeps beside it: the
 * WAL files and the correlator's derived database with its own.
 */
void th_unlink_db(const char *path);

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

/* Kills every aggregator th_start_aggregator started and th_stop did not
 * (a failed assertion skips th_stop; a live child would keep ctest waiting). */
void th_kill_all(void);

/* A fresh temp directory (malloc'd path). */
char *th_temp_dir(void);

/* ---- tailing, spool and crash tests ---- */

#include <stdint.h>

/*
 * Writes one android_omadm SCEP state-change line (with its '\n') whose
 * profile GUID encodes dev and n: "<dev:%08x>-0000-0000-0000-<n:%012x>".
 * Returns its length (buf needs about 320 bytes).
 */
size_t th_omadm_line(char *buf, size_t cap, unsigned dev, uint64_t n);

/* The dev and n a th_omadm_line profile encodes; 0, or -1 if not one. */
int th_omadm_marker(const char *profile, unsigned *dev, uint64_t *n);

/*
 * Counts, per marker, the events of a JSON Lines text: counts[dev * per_dev
 * + n] for dev < ndev and n < per_dev.  Returns how many events carried no
 * such marker.
 */
size_t th_marker_counts(const char *jsonl, uint32_t *counts, unsigned ndev, uint64_t per_dev);

/* Appends len bytes to path (created if missing).  0, or -1. */
int th_append(const char *path, const void *p, size_t len);

/*
 * Starts argv (argv[0] a path) in the background, stdin /dev/null, stdout
 * and stderr appended to log (NULL = /dev/null).  Returns the pid, or -1.
 */
pid_t th_spawn(char *const argv[], const char *log);

/* VmRSS of pid in KiB (from /proc/PID/status), or -1. */
long th_rss_kb(pid_t pid);

/* Milliseconds of a monotonic clock. */
int64_t th_now_ms(void);

/* Sleeps ms milliseconds. */
void th_sleep_ms(int ms);
