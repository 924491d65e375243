#include "th.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sw_json.h"

char *
th_write_temp(const void *content, size_t len)
{
    char tmpl[] = "/tmp/sw-test-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return NULL;
    if (len && write(fd, content, len) != (ssize_t)len) {
        close(fd);
        return NULL;
    }
    close(fd);
    return strdup(tmpl);
}

static void
collect(void *arg, const struct sw_event *ev)
{
    struct sw_buf *out = arg;
    sw_json_event(out, ev);
    sw_buf_putc(out, '\n');
}

int
th_parse_path(const char *format, const char *path, const struct agent_parse_opts *opts,
              struct sw_buf *out, uint64_t counts[AGENT_COUNT_MAX])
{
    struct agent_parse_opts o = { 0 };
    struct agent_reader r;
    const struct agent_parser *p = NULL;
    int e;

    if (opts)
        o = *opts;
    if (strcmp(format, "auto") != 0 && !(p = agent_parser_find(format)))
        return SW_EINVAL;
    if (agent_reader_init(&r, AGENT_MAX_LINE) != SW_OK)
        return SW_ENOMEM;
    e = agent_parse_file(path, p, &o, &r, collect, out, counts, NULL);
    agent_reader_fini(&r);
    return e;
}

int
th_parse_string(const char *format, const void *content, size_t len,
                const struct agent_parse_opts *opts, struct sw_buf *out,
                uint64_t counts[AGENT_COUNT_MAX])
{
    char *path = th_write_temp(content, len);
    int e;
    if (!path)
        return SW_EIO;
    e = th_parse_path(format, path, opts, out, counts);
    unlink(path);
    free(path);
    return e;
}

static json_t *
strip(json_t *o)
{
    json_object_del(o, "file");
    json_object_del(o, "offset");
    json_object_del(o, "host");
    return o;
}

int
th_jsonl_equal(const char *got, const char *expected)
{
    const char *g = got, *x = expected;
    size_t line = 0;

    for (;;) {
        while (*g == '\n') g++;
        while (*x == '\n') x++;
        if (!*g && !*x)
            return 0;
        line++;
        if (!*g || !*x) {
            fprintf(stderr, "event %zu: %s\n", line, *g ? "extra event" : "missing event");
            fprintf(stderr, "  got:      %.300s\n  expected: %.300s\n", g, x);
            return -1;
        }
        const char *ge = strchr(g, '\n'), *xe = strchr(x, '\n');
        size_t gl = ge ? (size_t)(ge - g) : strlen(g), xl = xe ? (size_t)(xe - x) : strlen(x);
        json_error_t err;
        json_t *a = json_loadb(g, gl, 0, &err), *b = json_loadb(x, xl, 0, &err);
        int eq = a && b && json_equal(strip(a), strip(b));
        if (!eq) {
            fprintf(stderr, "event %zu differs:\n  got:      %.*s\n  expected: %.*s\n", line,
                    (int)gl, g, (int)xl, x);
        }
        json_decref(a);
        json_decref(b);
        if (!eq)
            return -1;
        g += gl;
        x += xl;
    }
}

char *
th_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return buf;
}

size_t
th_count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (*s == '\n')
            n++;
    return n;
}
