/*
 * sw_time.h - civil time <-> microseconds since the epoch, all UTC.
 *
 * No locale, no TZ environment, no libc time zone state: parsers call these
 * on the hot path.
 */
#ifndef SW_TIME_H
#define SW_TIME_H

#include <stddef.h>
#include <stdint.h>

/* Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant). */
int64_t sw_days_from_civil(int y, int m, int d);
void sw_civil_from_days(int64_t z, int *y, int *m, int *d);

/* Validates and converts; returns 0, or -1 for an impossible date/time. */
int sw_time_make(int y, int mo, int d, int h, int mi, int s, int usec,
                 int64_t *out_us);

/* "2018-02-27T05:16:28.244000Z" into out (at least 28 bytes). Returns length. */
size_t sw_time_format(int64_t us, char *out);

/*
 * Parses RFC 3339 / ISO 8601: "YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z|±HH[:]MM]"
 * or a bare date "YYYY-MM-DD" (midnight).  Without a zone, default_off_min
 * applies.  Fractions beyond 6 digits are truncated.  Returns 0 or -1.
 */
int sw_time_parse(const char *s, size_t n, int default_off_min, int64_t *out_us);

/* Reads up to 'max' digits; returns the count read (0 = none). */
int sw_parse_digits(const char *s, size_t n, int max, int *out);

/* Fraction of a second: reads all digits, keeps the first 6 (truncates). */
int sw_parse_fraction(const char *s, size_t n, int *usec);

/* "+05:30", "-0700", "Z": minutes east of UTC. Returns chars used, 0 = none. */
int sw_parse_tz(const char *s, size_t n, int *off_min);

/* Wall clock now in microseconds. */
int64_t sw_now_us(void);
/* Monotonic microseconds (durations, deadlines). */
int64_t sw_mono_us(void);
/* The CLOCK_MONOTONIC time us from now, for a condition variable set to that clock. */
struct timespec;
void sw_mono_deadline(struct timespec *ts, int64_t us);

/* Durations "90s", "15m", "1h", "2d", "1h30m"; plain number = seconds. -1 on error. */
int64_t sw_parse_duration_us(const char *s);

#endif
