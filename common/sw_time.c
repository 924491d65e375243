#include "sw_time.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t
sw_days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153u * (unsigned)(m > 2 ? m - 3 : m + 9) + 2) / 5 + (unsigned)d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void
sw_civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t yy = (int64_t)yoe + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yy + (*m <= 2));
}

static int
days_in_month(int y, int m)
{
    static const int dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

int
sw_time_make(int y, int mo, int d, int h, int mi, int s, int usec, int64_t *out_us)
{
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 ||
        d > days_in_month(y, mo) || h < 0 || h > 23 || mi < 0 || mi > 59 ||
        s < 0 || s > 60 || usec < 0 || usec > 999999)
        return -1;
    if (s == 60)
        s = 59; /* leap second: clamp rather than roll the minute */
    *out_us = ((sw_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s)
               * 1000000) + usec;
    return 0;
}

static void
put_digits(char *o, int v, int n)
{
    while (n--) {
        o[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

size_t
sw_time_format(int64_t us, char *out)
{
    int64_t secs = us >= 0 ? us / 1000000 : (us - 999999) / 1000000;
    int64_t frac = us - secs * 1000000;
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    int64_t sod = secs - days * 86400;
    int y, m, d;

    sw_civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999)
        return (size_t)snprintf(out, 28, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
                                y, m, d, (int)(sod / 3600), (int)(sod / 60 % 60),
                                (int)(sod % 60), (int)frac);
    /* "YYYY-MM-DDTHH:MM:SS.ffffffZ" by hand: this runs once per event */
    put_digits(out, y, 4);
    out[4] = '-';
    put_digits(out + 5, m, 2);
    out[7] = '-';
    put_digits(out + 8, d, 2);
    out[10] = 'T';
    put_digits(out + 11, (int)(sod / 3600), 2);
    out[13] = ':';
    put_digits(out + 14, (int)(sod / 60 % 60), 2);
    out[16] = ':';
    put_digits(out + 17, (int)(sod % 60), 2);
    out[19] = '.';
    put_digits(out + 20, (int)frac, 6);
    out[26] = 'Z';
    out[27] = '\0';
    return 27;
}

int
sw_parse_digits(const char *s, size_t n, int max, int *out)
{
    int i = 0, v = 0;
    while ((size_t)i < n && i < max && s[i] >= '0' && s[i] <= '9')
        v = v * 10 + (s[i++] - '0');
    *out = v;
    return i;
}

int
sw_parse_fraction(const char *s, size_t n, int *usec)
{
    int i = 0, v = 0;
    while ((size_t)i < n && s[i] >= '0' && s[i] <= '9') {
        if (i < 6)
            v = v * 10 + (s[i] - '0');
        i++;
    }
    for (int k = i; k < 6; k++)
        v *= 10;
    *usec = v;
    return i;
}

int
sw_parse_tz(const char *s, size_t n, int *off_min)
{
    int h, m, i;
    if (n >= 1 && (s[0] == 'Z' || s[0] == 'z')) {
        *off_min = 0;
        return 1;
    }
    if (n < 3 || (s[0] != '+' && s[0] != '-'))
        return 0;
    if (sw_parse_digits(s + 1, n - 1, 2, &h) != 2)
        return 0;
    i = 3;
    if ((size_t)i < n && s[i] == ':')
        i++;
    if (sw_parse_digits(s + i, n - (size_t)i, 2, &m) != 2) {
        if (s[i - 1] == ':')
            return 0;
        m = 0; /* "+05" */
    } else {
        i += 2;
    }
    if (h > 23 || m > 59)
        return 0;
    *off_min = (s[0] == '-' ? -1 : 1) * (h * 60 + m);
    return i;
}

int
sw_time_parse(const char *s, size_t n, int default_off_min, int64_t *out_us)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, usec = 0, off = default_off_min;
    size_t i = 0;

    if (sw_parse_digits(s, n, 4, &y) != 4 || n < 10 || s[4] != '-' ||
        sw_parse_digits(s + 5, n - 5, 2, &mo) != 2 || s[7] != '-' ||
        sw_parse_digits(s + 8, n - 8, 2, &d) != 2)
        return -1;
    i = 10;
    if (i < n && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
        i++;
        if (n - i < 5 || sw_parse_digits(s + i, n - i, 2, &h) != 2 ||
            s[i + 2] != ':' || sw_parse_digits(s + i + 3, n - i - 3, 2, &mi) != 2)
            return -1;
        i += 5;
        if (i < n && s[i] == ':') {
            if (sw_parse_digits(s + i + 1, n - i - 1, 2, &sec) != 2)
                return -1;
            i += 3;
            if (i < n && (s[i] == '.' || s[i] == ',')) {
                int k = sw_parse_fraction(s + i + 1, n - i - 1, &usec);
                if (k == 0)
                    return -1;
                i += 1 + (size_t)k;
            }
        }
        if (i < n) {
            int k = sw_parse_tz(s + i, n - i, &off);
            if (k == 0)
                return -1;
            i += (size_t)k;
        }
    }
    if (i != n)
        return -1;
    if (sw_time_make(y, mo, d, h, mi, sec, usec, out_us) != 0)
        return -1;
    *out_us -= (int64_t)off * 60 * 1000000;
    return 0;
}

static int64_t
clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
sw_now_us(void)
{
    return clock_us(CLOCK_REALTIME);
}

int64_t
sw_parse_duration_us(const char *s)
{
    int64_t total = 0;
    int any = 0;

    while (*s) {
        int64_t v = 0;
        int digits = 0;
        while (*s >= '0' && *s <= '9') {
            if (v > (int64_t)1e12)
                return -1;
            v = v * 10 + (*s++ - '0');
            digits++;
        }
        if (!digits)
            return -1;
        switch (*s) {
        case '\0': total += v * 1000000; return total;
        case 's': total += v * 1000000; break;
        case 'm': total += v * 60 * 1000000; break;
        case 'h': total += v * 3600 * (int64_t)1000000; break;
        case 'd': total += v * 86400 * (int64_t)1000000; break;
        case 'w': total += v * 7 * 86400 * (int64_t)1000000; break;
        default: return -1;
        }
        s++;
        any = 1;
    }
    return any ? total : -1;
}

int64_t
sw_mono_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}

void
sw_mono_deadline(struct timespec *ts, int64_t us)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += us / 1000000;
    ts->tv_nsec += (long)(us % 1000000) * 1000;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}
