#include "th.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sw_json.h"
#include "sw_time.h"

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

/* ---- processes ---- */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

int
th_run(char *const argv[], struct sw_buf *out, struct sw_buf *err)
{
    int po[2], pe[2], status;
    pid_t pid;

    if (pipe(po) != 0 || pipe(pe) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    /* read both pipes without deadlock */
    struct pollfd fds[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
    int open_fds = 2;
    while (open_fds) {
        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP))) {
                char tmp[8192];
                ssize_t n = read(fds[i].fd, tmp, sizeof tmp);
                if (n <= 0) {
                    close(fds[i].fd);
                    fds[i].fd = -1;
                    open_fds--;
                } else if (i == 0 ? out != NULL : err != NULL) {
                    sw_buf_append(i == 0 ? out : err, tmp, (size_t)n);
                }
            }
        }
    }
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

static pid_t started[64];

static void
remember(pid_t pid)
{
    for (size_t i = 0; i < sizeof started / sizeof started[0]; i++)
        if (!started[i]) {
            started[i] = pid;
            return;
        }
}

static void
forget(pid_t pid)
{
    for (size_t i = 0; i < sizeof started / sizeof started[0]; i++)
        if (started[i] == pid)
            started[i] = 0;
}

void
th_kill_all(void)
{
    for (size_t i = 0; i < sizeof started / sizeof started[0]; i++)
        if (started[i]) {
            kill(started[i], SIGKILL);
            waitpid(started[i], NULL, 0);
            started[i] = 0;
        }
}

pid_t
th_start_aggregator(const char *db, const char *url, char *const extra[])
{
    char *argv[32];
    int n = 0, p[2];
    pid_t pid;
    char agg[512];

    snprintf(agg, sizeof agg, "%s/scepwatch-aggregator", TH_BIN_DIR);
    argv[n++] = agg;
    argv[n++] = "--db";
    argv[n++] = (char *)db;
    argv[n++] = "--listen";
    argv[n++] = (char *)url;
    for (int i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    if (pipe(p) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    struct sw_buf b;
    sw_buf_init(&b);
    for (int waited = 0; waited < 10000;) {
        struct pollfd fd = { p[0], POLLIN, 0 };
        int r = poll(&fd, 1, 100);
        waited += 100;
        if (r > 0) {
            char tmp[512];
            ssize_t k = read(p[0], tmp, sizeof tmp);
            if (k <= 0)
                break;
            sw_buf_append(&b, tmp, (size_t)k);
            if (b.len && strstr(b.data, "ready on")) {
                sw_buf_fini(&b);
                close(p[0]);
                remember(pid);
                return pid;
            }
        }
    }
    sw_buf_fini(&b);
    close(p[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

int
th_stop(pid_t pid)
{
    int status;
    forget(pid);
    kill(pid, SIGTERM);
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

char *
th_temp_dir(void)
{
    char tmpl[] = "/tmp/sw-e2e-XXXXXX";
    return mkdtemp(tmpl) ? strdup(tmpl) : NULL;
}

/* ---- tailing, spool and crash tests ---- */

#include <time.h>

size_t
th_omadm_line(char *buf, size_t cap, unsigned dev, uint64_t n)
{
    int k = snprintf(buf, cap,
                     "2018-02-27T05:%02u:%02u.%07u    INFO    Event     "
                     "com.microsoft.omadm.platforms.android.certmgr.state."
                     "NativeScepCertInstallStateMachine    18327        0    SCEP cert "
                     "'ModelName=AC_51%%2FLogicalName_%08x_0000_0000_0000_%012llx;Hash=1' "
                     "state changed from CERT_INSTALL_REQUESTED to CERT_INSTALLING\n",
                     (unsigned)(n / 60 % 60), (unsigned)(n % 60), (unsigned)(n % 10000000),
                     dev, (unsigned long long)n);
    return k > 0 && (size_t)k < cap ? (size_t)k : 0;
}

int
th_omadm_marker(const char *profile, unsigned *dev, uint64_t *n)
{
    unsigned d;
    unsigned long long v;
    char tail;
    if (!profile || strlen(profile) != 36 ||
        sscanf(profile, "%8x-0000-0000-0000-%12llx%c", &d, &v, &tail) != 2)
        return -1;
    *dev = d;
    *n = v;
    return 0;
}

size_t
th_marker_counts(const char *jsonl, uint32_t *counts, unsigned ndev, uint64_t per_dev)
{
    size_t other = 0;
    const char *p = jsonl;

    while (p && *p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len) {
            json_error_t err;
            json_t *o = json_loadb(p, len, 0, &err);
            const char *prof = o ? json_string_value(json_object_get(o, "profile")) : NULL;
            unsigned d;
            uint64_t n;
            if (th_omadm_marker(prof, &d, &n) == 0 && d < ndev && n < per_dev)
                counts[(uint64_t)d * per_dev + n]++;
            else
                other++;
            json_decref(o);
        }
        p = e ? e + 1 : NULL;
    }
    return other;
}

int
th_append(const char *path, const void *p, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    ssize_t k = write(fd, p, len);
    close(fd);
    return k == (ssize_t)len ? 0 : -1;
}

pid_t
th_spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = log ? open(log, O_WRONLY | O_APPEND | O_CREAT, 0644) : open("/dev/null", O_WRONLY);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

long
th_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

int64_t
th_now_ms(void)
{
    return sw_mono_us() / 1000;
}

void
th_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

void
th_unlink_db(const char *path)
{
    static const char *const tails[] = { "", "-wal", "-shm", "-derived", "-derived-wal",
                                         "-derived-shm" };
    char p[512];
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        snprintf(p, sizeof p, "%s%s", path, tails[i]);
        unlink(p);
    }
}
