/*
 * test_parsers_golden.c - every sample under tests/data/samples/<format>/
 * parses to exactly its .expected.jsonl, with --format NAME and auto.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "th.h"

static void
check_folder(const char *format)
{
    char dir[1024];
    DIR *d;
    struct dirent *de;
    int files = 0;

    snprintf(dir, sizeof dir, "%s/tests/data/samples/%s", TH_SOURCE_DIR, format);
    d = opendir(dir);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        char path[2048], exp_path[2100];
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.' || (n > 15 && strcmp(de->d_name + n - 15, ".expected.jsonl") == 0))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        snprintf(exp_path, sizeof exp_path, "%s.expected.jsonl", path);
        char *expected = th_read_file(exp_path, NULL);
        if (!expected)
            continue;
        const char *fmts[] = { format, "auto" };
        for (int k = 0; k < 2; k++) {
            struct agent_parse_opts o = { 0 };
            struct sw_buf out;
            if (strcmp(format, "ios_console") == 0) {
                o.has_date = 1;
                o.date_y = 2024;
                o.date_m = 3;
                o.date_d = 14;
            }
            sw_buf_init(&out);
            sw_buf_puts(&out, "");
            int e = th_parse_path(fmts[k], path, &o, &out, NULL);
            if (e != SW_OK || th_jsonl_equal(out.data, expected) != 0) {
                fprintf(stderr, "%s with --format %s: err %d\n", path, fmts[k], e);
                fail();
            }
            sw_buf_fini(&out);
        }
        free(expected);
        files++;
    }
    closedir(d);
    assert_true(files > 0);
}

static void test_android_omadm(void **s) { (void)s; check_folder("android_omadm"); }
static void test_ios_console(void **s) { (void)s; check_folder("ios_console"); }
static void test_windows_event_xml(void **s) { (void)s; check_folder("windows_event_xml"); }
static void test_ca_certutil_csv(void **s) { (void)s; check_folder("ca_certutil_csv"); }
static void test_ndes_iis(void **s) { (void)s; check_folder("ndes_iis"); }

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_android_omadm),
        cmocka_unit_test(test_ios_console),
        cmocka_unit_test(test_windows_event_xml),
        cmocka_unit_test(test_ca_certutil_csv),
        cmocka_unit_test(test_ndes_iis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
