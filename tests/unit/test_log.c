// Log lines: text and JSON shapes, escaping, level filtering, bad settings.
#include "testsupport.h"

#include "vmlet/log.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static char *s_capture(vmlet_log_t *log, void (*write_some)(vmlet_log_t *))
{
    int fds[2];
    assert_int_equal(pipe2(fds, O_NONBLOCK), 0);
    vmlet_log_set_fd(log, fds[1]);
    write_some(log);
    static char buf[16384];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    close(fds[1]);
    return buf;
}

static void s_write_pod_line(vmlet_log_t *log)
{
    vmlet_log_info(log, VMLET_KV({"pod", "default/web-0"}, {"reason", "needs \"quotes\" = yes"}),
                   "started in %d ms", 42);
    vmlet_log_debug(log, NULL, "hidden at info level");
}

static void test_text_line(void **state)
{
    (void)state;
    vmlet_log_t *log = vmlet_log_new("k8s-watcher", "text", "info", NULL);
    char *out = s_capture(log, s_write_pod_line);
    // 2026-11-26T18:00:00.123Z info k8s-watcher pod=default/web-0 reason="..." msg="started in 42 ms"
    assert_non_null(strstr(out, "Z info k8s-watcher pod=default/web-0 "
                                "reason=\"needs \\\"quotes\\\" = yes\" msg=\"started in 42 ms\"\n"));
    assert_null(strstr(out, "hidden"));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out)); // exactly one line
    vmlet_log_destroy(&log);
    vmlet_log_destroy(&log);
}

static void s_write_json_line(vmlet_log_t *log)
{
    vmlet_log_warn(log, VMLET_KV({"path", "a\\b"}), "line one\nline two\t%s", "end");
}

static void test_json_line(void **state)
{
    (void)state;
    vmlet_log_t *log = vmlet_log_new("bus", "json", "debug", NULL);
    char *out = s_capture(log, s_write_json_line);
    assert_true(strncmp(out, "{\"ts\":\"", 7) == 0);
    assert_non_null(strstr(out, "\"level\":\"warn\",\"service\":\"bus\",\"path\":\"a\\\\b\","
                                "\"msg\":\"line one\\nline two\\u0009end\"}\n"));
    vmlet_log_destroy(&log);
}

static void test_bad_settings(void **state)
{
    (void)state;
    vmlet_err_t err = {0};
    assert_null(vmlet_log_new("x", "xml", "info", &err));
    assert_non_null(strstr(err.msg, "log format 'xml'"));
    assert_null(vmlet_log_new("x", "text", "loud", &err));
    assert_non_null(strstr(err.msg, "log level 'loud'"));
}

static void s_write_long_line(vmlet_log_t *log)
{
    char big[10000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    vmlet_log_error(log, VMLET_KV({"big", big}), "%s", big);
}

static void test_long_line_is_cut_but_whole(void **state)
{
    (void)state;
    vmlet_log_t *log = vmlet_log_new("x", "text", "info", NULL);
    char *out = s_capture(log, s_write_long_line);
    size_t n = strlen(out);
    assert_true(n > 4000 && n < 5000);
    assert_int_equal(out[n - 1], '\n');
    vmlet_log_destroy(&log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_line),
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_bad_settings),
        cmocka_unit_test(test_long_line_is_cut_but_whole),
    };
    return TS_RUN(tests);
}
