/*
 * fuzz_parser.c - libFuzzer target: one log format (FUZZ_FORMAT, set at
 * build time) over arbitrary bytes, through the real reader (so encoding
 * detection, line splitting and the overlong-line path are fuzzed too).
 * Every emitted event is serialised to JSON, so the fields a parser sets
 * are touched by ASan as well.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "parse.h"
#include "sw_json.h"

static struct sw_buf out;

static void
emit(void *arg, const struct sw_event *ev)
{
    (void)arg;
    sw_buf_reset(&out);
    sw_json_event(&out, ev);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct agent_reader r;
    static int ready;
    const struct agent_parser *p = agent_parser_find(FUZZ_FORMAT);
    struct agent_parse_opts o = { .has_date = 1, .date_y = 2024, .date_m = 3, .date_d = 14 };
    struct agent_parse_ctx ctx;
    uint64_t next;
    int fd;

    if (!ready) {
        /* a small line cap so the overlong path is reachable */
        if (agent_reader_init(&r, 4096) != SW_OK)
            abort();
        sw_buf_init(&out);
        ready = 1;
    }
    if (!p)
        abort();
    fd = memfd_create("fuzz", 0);
    if (fd < 0)
        return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    enum agent_encoding enc = agent_parse_encoding_fd(fd);
    /* auto detection must never crash either */
    (void)agent_parse_detect_fd(&r, fd, enc);
    if (agent_parse_ctx_init(&ctx, p, &o, "fuzz", emit, NULL) == SW_OK) {
        /* first pass as a tailer would (partial last line held back), then final */
        agent_parse_run(&ctx, &r, fd, enc, 0, 0, &next);
        agent_parse_run(&ctx, &r, fd, enc, next, 1, &next);
        agent_parse_ctx_fini(&ctx);
    }
    close(fd);
    return 0;
}
