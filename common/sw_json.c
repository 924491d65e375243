#include "sw_json.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sw_time.h"

/* Length of the valid UTF-8 sequence at s, or 0 if it is not valid. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t need;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2; cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3; cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4; cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (need == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return need;
}

void
sw_json_string(struct sw_buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;

    sw_buf_putc(b, '"');
    while (i < n) {
        /*
         * Eight bytes a step while none needs a look: no byte below 0x20 or
         * from 0x80, no quote, no backslash (the tests have no false
         * negatives; a flagged word goes byte by byte).
         */
        while (n - i >= 8) {
            uint64_t w, q, bs;
            memcpy(&w, s + i, 8);
            q = w ^ 0x2222222222222222ull;
            bs = w ^ 0x5c5c5c5c5c5c5c5cull;
            if (((w - 0x2020202020202020ull) | w | (q - 0x0101010101010101ull) |
                 (bs - 0x0101010101010101ull)) & 0x8080808080808080ull)
                break;
            i += 8;
            run += 8;
        }
        if (i >= n)
            break;
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            run++;
            continue;
        }
        sw_buf_append(b, s + i - run, run);
        run = 0;
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            sw_buf_append(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            char esc[8];
            switch (c) {
            case '\n': sw_buf_append(b, "\\n", 2); break;
            case '\r': sw_buf_append(b, "\\r", 2); break;
            case '\t': sw_buf_append(b, "\\t", 2); break;
            default:
                snprintf(esc, sizeof esc, "\\u%04x", c);
                sw_buf_append(b, esc, 6);
            }
            i++;
        } else {
            size_t k = utf8_seq(s + i, n - i);
            if (k == 0) {
                sw_buf_append(b, "\xef\xbf\xbd", 3);
                i++;
            } else {
                sw_buf_append(b, s + i, k);
                i += k;
            }
        }
    }
    sw_buf_append(b, s + i - run, run);
    sw_buf_putc(b, '"');
}

/* ,"name": then the value; the name's quotes and colon come with it. */
static inline void
field_n(struct sw_buf *b, const char *key, size_t kn, const char *v, size_t n)
{
    sw_buf_append(b, key, kn);
    sw_json_string(b, v, n);
}
#define field(b, name, v, n) field_n(b, ",\"" name "\":", sizeof(",\"" name "\":") - 1, v, n)

void
sw_json_event(struct sw_buf *b, const struct sw_event *ev)
{
    char ts[32];
    size_t tn = sw_time_format(ev->ts_us, ts);
    const char *s;

    sw_buf_append(b, "{\"source\":", 10);
    s = sw_source_name(ev->source);
    sw_json_string(b, s ? s : "unknown", strlen(s ? s : "unknown"));
    s = sw_platform_name(ev->platform);
    field(b, "platform", s ? s : "unknown", strlen(s ? s : "unknown"));
    if (ev->device.len)
        field(b, "device", ev->device.ptr, ev->device.len);
    field(b, "ts", ts, tn);
    s = sw_stage_name(ev->stage);
    field(b, "stage", s ? s : "unknown", strlen(s ? s : "unknown"));
    if (ev->cert != SW_CERT_NONE && sw_cert_name(ev->cert))
        field(b, "cert", sw_cert_name(ev->cert), strlen(sw_cert_name(ev->cert)));
#define X(f) if (ev->f.len && strcmp(#f, "device") != 0) field(b, #f, ev->f.ptr, ev->f.len);
    SW_EVENT_STR_FIELDS(X)
#undef X
    if (ev->file.len)
        field(b, "file", ev->file.ptr, ev->file.len);
    if (ev->has_offset) {
        sw_buf_append(b, ",\"offset\":", 10);
        sw_buf_put_u64(b, (unsigned long long)ev->offset);
    }
    if (ev->host.len)
        field(b, "host", ev->host.ptr, ev->host.len);
    sw_buf_putc(b, '}');
}
