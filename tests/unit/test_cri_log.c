// CRI log files: whole lines, pieces of long lines (P), lines split across
// chunks, both streams, the end of output without a newline, and rotation.
#include "testsupport.h"

#include "cri_log.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static char *s_read(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[256 * 1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

#define T0 1795000000123456789LL // 2026-11-18T...: a time with every digit used

static void test_lines_and_pieces(void **state)
{
    (void)state;
    char *dir = ts_tempdir("vmlet-cri");
    char path[512];
    cri_log_path_for(path, sizeof path, dir, "default", "web", "u-1", "app", 0);
    assert_non_null(strstr(path, "/default_web_u-1/app/0.log"));
    cri_log_limits_t limits = {0, 1};
    vmlet_err_t err = {0};
    cri_log_t *log = cri_log_open(path, &limits, &err);
    assert_non_null(log);
    const char *a = "one\ntw";
    assert_int_equal(cri_log_write(log, CRI_STDOUT, (const uint8_t *)a, strlen(a), T0, &err), 0);
    assert_int_equal(cri_log_write(log, CRI_STDERR, (const uint8_t *)"oops\n", 5, T0, &err), 0);
    assert_int_equal(cri_log_write(log, CRI_STDOUT, (const uint8_t *)"o\nend", 5, T0, &err), 0);
    assert_int_equal(cri_log_finish(log, T0, &err), 0);
    char ts[40];
    cri_log_timestamp(T0, ts, sizeof ts);
    assert_string_equal(ts, "2026-11-18T11:06:40.123456789Z");
    char want[512];
    snprintf(want, sizeof want, "%s stdout F one\n%s stderr F oops\n%s stdout F two\n%s stdout F end\n",
             ts, ts, ts, ts);
    assert_string_equal(s_read(path), want);
    cri_log_close(&log);
    assert_null(log);
    ts_remove_dir(dir);
    free(dir);
}

static void test_long_line_is_written_in_pieces(void **state)
{
    (void)state;
    char *dir = ts_tempdir("vmlet-cri");
    char path[512];
    snprintf(path, sizeof path, "%s/x/0.log", dir);
    cri_log_limits_t limits = {0, 1};
    cri_log_t *log = cri_log_open(path, &limits, NULL);
    size_t n = CRI_LOG_MAX_LINE * 2 + 10;
    uint8_t *line = malloc(n + 1);
    memset(line, 'x', n);
    line[n] = '\n';
    assert_int_equal(cri_log_write(log, CRI_STDOUT, line, n + 1, T0, NULL), 0);
    cri_log_close(&log);
    const char *text = s_read(path);
    // Two pieces of the maximum, then the last 10 bytes ending the line.
    const char *p1 = strstr(text, " stdout P ");
    assert_non_null(p1);
    const char *p2 = strstr(p1 + 1, " stdout P ");
    assert_non_null(p2);
    const char *f = strstr(p2 + 1, " stdout F xxxxxxxxxx\n");
    assert_non_null(f);
    assert_null(strstr(f + 1, " stdout "));
    free(line);
    ts_remove_dir(dir);
    free(dir);
}

static void test_rotation_keeps_max_files(void **state)
{
    (void)state;
    char *dir = ts_tempdir("vmlet-cri");
    char path[512], rotated[600];
    snprintf(path, sizeof path, "%s/0.log", dir);
    cri_log_limits_t limits = {1000, 3};
    cri_log_t *log = cri_log_open(path, &limits, NULL);
    char line[101];
    memset(line, 'y', 99);
    line[99] = '\n';
    for (int i = 0; i < 100; i++) // ~14 KB in all: several rotations
        assert_int_equal(cri_log_write(log, CRI_STDOUT, (uint8_t *)line, 100, T0, NULL), 0);
    cri_log_close(&log);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size < 1000);
    snprintf(rotated, sizeof rotated, "%s.1", path);
    assert_int_equal(stat(rotated, &st), 0);
    assert_true(st.st_size >= 1000);
    snprintf(rotated, sizeof rotated, "%s.2", path);
    assert_int_equal(stat(rotated, &st), 0);
    snprintf(rotated, sizeof rotated, "%s.3", path);
    assert_int_equal(stat(rotated, &st), -1); // only max_files in all
    ts_remove_dir(dir);
    free(dir);
}

static void test_unwritable_directory_is_an_error(void **state)
{
    (void)state;
    cri_log_limits_t limits = {0, 1};
    vmlet_err_t err = {0};
    assert_null(cri_log_open("/proc/vmlet-no/0.log", &limits, &err));
    assert_non_null(strstr(err.msg, "/proc/vmlet-no"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_and_pieces),
        cmocka_unit_test(test_long_line_is_written_in_pieces),
        cmocka_unit_test(test_rotation_keeps_max_files),
        cmocka_unit_test(test_unwritable_directory_is_an_error),
    };
    return TS_RUN(tests);
}
