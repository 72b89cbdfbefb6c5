// The probe runner's pure functions: Go's spellings the kubelet's outputs
// are made of, and the grpc.health.v1 messages, checked against tables.
#include "testsupport.h"

#include "vmlet/http_status.h"

#include "probe_words.h"

#include <errno.h>
#include <string.h>

static void test_go_duration(void **state)
{
    (void)state;
    static const struct {
        int64_t ms;
        const char *want;
    } cases[] = {
        {0, "0s"},           {1, "1ms"},          {500, "500ms"},   {999, "999ms"},
        {1000, "1s"},        {1500, "1.5s"},      {1250, "1.25s"},  {1001, "1.001s"},
        {10000, "10s"},      {60000, "1m0s"},     {90000, "1m30s"}, {61500, "1m1.5s"},
        {3600000, "1h0m0s"}, {3723000, "1h2m3s"}, {-2000, "-2s"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        probe_buf_t b = {0};
        probe_go_duration(&b, cases[i].ms);
        assert_string_equal(probe_buf_str(&b), cases[i].want);
        probe_buf_free(&b);
    }
}

static void test_url(void **state)
{
    (void)state;
    static const struct {
        const char *scheme, *host;
        int port;
        const char *path, *want;
    } cases[] = {
        {"http", "10.0.0.5", 8080, "/healthz", "http://10.0.0.5:8080/healthz"},
        {"https", "10.0.0.5", 443, "/healthz?verbose=1&x=2",
         "https://10.0.0.5:443/healthz?verbose=1&x=2"},
        {"http", "10.0.0.5", 80, "healthz", "http://10.0.0.5:80/healthz"},
        {"http", "10.0.0.5", 80, "", "http://10.0.0.5:80"},
        {"http", "10.0.0.5", 80, NULL, "http://10.0.0.5:80"},
        {"http", "fd00::5", 80, "/", "http://[fd00::5]:80/"},
        {"http", "fe80::1%eth0", 80, "/", "http://[fe80::1%25eth0]:80/"},
        {"http", "pod.local", 80, "/a b", "http://pod.local:80/a%20b"},
        {"http", "h", 80, "/a\"<>{}|^`\\", "http://h:80/a%22%3C%3E%7B%7D%7C%5E%60%5C"},
        {"http", "h", 80, "/ok%20/bad%zz", "http://h:80/ok%20/bad%25zz"},
        {"http", "h", 80, "/q?a=b c|d", "http://h:80/q?a=b%20c|d"},
        {"http", "h", 80, "/caf\xc3\xa9", "http://h:80/caf%C3%A9"},
        {"http", "h", 80, "?x=1", "http://h:80?x=1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        probe_buf_t b = {0};
        probe_format_url(&b, cases[i].scheme, cases[i].host, cases[i].port, cases[i].path);
        assert_string_equal(probe_buf_str(&b), cases[i].want);
        probe_buf_free(&b);
    }
}

static void test_join_host_port(void **state)
{
    (void)state;
    probe_buf_t b = {0};
    probe_join_host_port(&b, "127.0.0.1", 81);
    assert_string_equal(probe_buf_str(&b), "127.0.0.1:81");
    probe_buf_reset(&b);
    probe_join_host_port(&b, "::1", 81);
    assert_string_equal(probe_buf_str(&b), "[::1]:81");
    probe_buf_free(&b);
}

static void test_headers(void **state)
{
    (void)state;
    assert_true(probe_header_name_valid("X-Custom"));
    assert_true(probe_header_name_valid("x_custom.v2!#$%&'*+^`|~"));
    assert_false(probe_header_name_valid(""));
    assert_false(probe_header_name_valid(NULL));
    assert_false(probe_header_name_valid("bad name"));
    assert_false(probe_header_name_valid("bad:name"));
    assert_false(probe_header_name_valid("caf\xc3\xa9"));
    assert_true(probe_header_value_valid("a value\twith tab"));
    assert_true(probe_header_value_valid(""));
    assert_true(probe_header_value_valid("utf-8 \xc3\xa9"));
    assert_false(probe_header_value_valid("line\r\nInjected: yes"));
    assert_false(probe_header_value_valid("nul\x01"));
    assert_false(probe_header_value_valid("del\x7f"));
    static const char *const canon[][2] = {
        {"x-request-id", "X-Request-Id"},
        {"USER-AGENT", "User-Agent"},
        {"host", "Host"},
        {"x--y", "X--Y"},
        {"etag", "Etag"},
        {"a1-b2", "A1-B2"},
    };
    for (size_t i = 0; i < sizeof canon / sizeof canon[0]; i++) {
        probe_buf_t b = {0};
        probe_canonical_header(&b, canon[i][0]);
        assert_string_equal(probe_buf_str(&b), canon[i][1]);
        probe_buf_free(&b);
    }
}

static void test_names(void **state)
{
    (void)state;
    probe_buf_t b = {0};
    probe_errno_words(&b, ECONNREFUSED);
    assert_string_equal(probe_buf_str(&b), "connection refused");
    probe_buf_reset(&b);
    probe_errno_words(&b, EHOSTUNREACH);
    assert_string_equal(probe_buf_str(&b), "no route to host");
    probe_buf_reset(&b);
    probe_errno_words(&b, ECONNRESET);
    assert_string_equal(probe_buf_str(&b), "connection reset by peer");
    static const struct {
        int code;
        const char *want;
    } codes[] = {
        {0, "OK"},           {4, "DeadlineExceeded"}, {5, "NotFound"},  {12, "Unimplemented"},
        {14, "Unavailable"}, {16, "Unauthenticated"}, {17, "Code(17)"}, {-1, "Code(-1)"}};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        probe_buf_reset(&b);
        probe_grpc_code_name(&b, codes[i].code);
        assert_string_equal(probe_buf_str(&b), codes[i].want);
    }
    static const struct {
        long status;
        const char *want;
    } statuses[] = {
        {0, "UNKNOWN"}, {1, "SERVING"}, {2, "NOT_SERVING"}, {3, "SERVICE_UNKNOWN"}, {7, "7"}};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        probe_buf_reset(&b);
        probe_health_status_name(&b, statuses[i].status);
        assert_string_equal(probe_buf_str(&b), statuses[i].want);
    }
    assert_string_equal(vmlet_http_reason(404, NULL), "Not Found");
    assert_null(vmlet_http_reason(418, NULL));
    probe_buf_free(&b);
}

static void test_percent_decode(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"unknown service", "unknown service"},
        {"a%20b%25c", "a b%c"},
        {"bad%2", "bad%2"},
        {"bad%zz", "bad%zz"},
        {"%E2%9C%93", "\xe2\x9c\x93"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        probe_buf_t b = {0};
        probe_buf_puts(&b, cases[i][0]);
        probe_percent_decode(&b);
        assert_string_equal(probe_buf_str(&b), cases[i][1]);
        assert_int_equal(b.len, strlen(cases[i][1]));
        probe_buf_free(&b);
    }
}

static void test_grpc_request(void **state)
{
    (void)state;
    probe_buf_t b = {0};
    probe_grpc_frame_request(&b, "");
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.p, "\0\0\0\0\0", 5);
    probe_grpc_frame_request(&b, "liveness");
    assert_int_equal(b.len, 5 + 2 + 8);
    assert_memory_equal(b.p, "\0\0\0\0\x0a\x0a\x08liveness", 15);
    // A name of 200 bytes takes a two-byte length varint.
    char long_name[201];
    memset(long_name, 'n', 200);
    long_name[200] = '\0';
    probe_grpc_frame_request(&b, long_name);
    assert_int_equal(b.len, 5 + 1 + 2 + 200);
    assert_memory_equal(b.p, "\0\0\0\0\xcb\x0a\xc8\x01", 8);
    probe_buf_free(&b);
}

static void test_grpc_response(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
        int rc;
        long status;
    } cases[] = {
        {"\0\0\0\0\x02\x08\x01", 7, 0, 1},           // SERVING
        {"\0\0\0\0\x02\x08\x02", 7, 0, 2},           // NOT_SERVING
        {"\0\0\0\0\0", 5, 0, 0},                     // empty: UNKNOWN, proto3's default
        {"\0\0\0\0\x05\x12\x01x\x08\x01", 10, 0, 1}, // an unknown field skipped
        {"\0\0\0\0\x04\x08\x02\x08\x01", 9, 0, 1},   // the last value wins
        {"\0\0\0\0\x02\x08", 6, -1, 0},              // truncated message
        {"\0\0\0\0\x01\x08", 6, -1, 0},              // field without its value
        {"\x01\0\0\0\x02\x08\x01", 7, -1, 0},        // compressed
        {"\0\0\0", 3, -1, 0},                        // truncated header
        {"", 0, -1, 0},                              // no message
        {"\0\0\0\0\x02\x08\x01\0", 8, -1, 0},        // trailing bytes
        {"\0\0\0\0\x01\x0f", 6, -1, 0},              // wire type 7
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long status = -1;
        const char *why = NULL;
        int rc =
            probe_grpc_parse_response((const uint8_t *)cases[i].bytes, cases[i].len, &status, &why);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0)
            assert_int_equal(status, cases[i].status);
        else
            assert_non_null(why);
    }
}

static void test_buf(void **state)
{
    (void)state;
    probe_buf_t b = {0};
    assert_string_equal(probe_buf_str(&b), "");
    for (int i = 0; i < 1000; i++)
        probe_buf_printf(&b, "%04d", i);
    assert_int_equal(b.len, 4000);
    assert_int_equal(strlen(probe_buf_str(&b)), 4000);
    char big[3000];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    probe_buf_reset(&b);
    probe_buf_printf(&b, "<%s>", big);
    assert_int_equal(b.len, 3001);
    char *g = probe_buf_grow(&b, 3);
    memcpy(g, "abc", 3);
    assert_string_equal(probe_buf_str(&b) + 3001, "abc");
    probe_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_go_duration),
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_join_host_port),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_grpc_request),
        cmocka_unit_test(test_grpc_response),
        cmocka_unit_test(test_buf),
    };
    return TS_RUN(tests);
}
