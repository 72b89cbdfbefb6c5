// channel.k8s.io payloads: the channel byte or digit, base64 both ways,
// the error channel's Status as Kubernetes writes it, and resize objects.
#include "testsupport.h"

#include "ws_channel.h"

#include <string.h>

static const vmlet_ws_proto_t *s_p(const char *name)
{
    const vmlet_ws_proto_t *p = vmlet_ws_proto_find(name);
    assert_non_null(p);
    return p;
}

static void test_encode(void **state)
{
    (void)state;
    size_t n;
    uint8_t *m = vmlet_ws_channel_encode(s_p("v4.channel.k8s.io"), 1, "\n", 1, &n);
    assert_int_equal(n, 2);
    assert_memory_equal(m, "\x01\n", 2);
    free(m);
    // wsstream's own example: "\n" on stdout reads "1Cg==".
    m = vmlet_ws_channel_encode(s_p("base64.channel.k8s.io"), 1, "\n", 1, &n);
    assert_int_equal(n, 5);
    assert_memory_equal(m, "1Cg==", 5);
    free(m);
    m = vmlet_ws_channel_encode(s_p("v4.base64.channel.k8s.io"), 2, "foo\n", 4, &n);
    assert_int_equal(n, 9);
    assert_memory_equal(m, "2Zm9vCg==", 9);
    free(m);
    // The empty "session is up" message is just the channel.
    m = vmlet_ws_channel_encode(s_p("base64.channel.k8s.io"), 1, NULL, 0, &n);
    assert_int_equal(n, 1);
    assert_int_equal(m[0], '1');
    free(m);
    // A digit names channels 0..9 only.
    assert_null(vmlet_ws_channel_encode(s_p("base64.channel.k8s.io"), 10, "x", 1, &n));
}

static void test_decode(void **state)
{
    (void)state;
    static const struct {
        const char *proto, *msg;
        size_t len;
        int rc;
        uint8_t ch;
        const char *data;
        size_t data_len;
    } cases[] = {
        {"channel.k8s.io",
         "\x00"
         "foo\n",
         5, 0, 0, "foo\n", 4},
        {"v4.channel.k8s.io", "\x04{}", 3, 0, 4, "{}", 2},
        {"v5.channel.k8s.io", "\xff\x00", 2, 0, 255, "\x00", 1},
        {"base64.channel.k8s.io", "0Zm9vCg==", 9, 0, 0, "foo\n", 4},
        {"base64.channel.k8s.io", "0Zm9v\r\nCg==", 11, 0, 0, "foo\n", 4},
        {"v4.base64.channel.k8s.io", "0AAEC/w==", 9, 0, 0, "\x00\x01\x02\xff", 4},
        {"v4.base64.channel.k8s.io", "0", 1, 0, 0, "", 0},
        {"v4.base64.channel.k8s.io", "0YWJj", 5, 0, 0, "abc", 3},
        {"base64.channel.k8s.io", "0Zm9vCg", 7, -1, 0, NULL, 0},     // unpadded
        {"base64.channel.k8s.io", "0Zm9v Cg==", 10, -1, 0, NULL, 0}, // a blank
        {"base64.channel.k8s.io", "0Zm9vCg==AA==", 13, -1, 0, NULL, 0},
        {"base64.channel.k8s.io", "0Zg=a", 5, -1, 0, NULL, 0},
        {"base64.channel.k8s.io", "0Z===", 5, -1, 0, NULL, 0},
        {"base64.channel.k8s.io", "0Zm9-Cg==", 9, -1, 0, NULL, 0}, // URL alphabet
        {"base64.channel.k8s.io", "xZm9v", 5, -1, 0, NULL, 0},
        {"channel.k8s.io", "", 0, -1, 0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[32];
        memcpy(buf, cases[i].msg, cases[i].len);
        uint8_t ch = 0xAA, *data = NULL;
        size_t n = 0;
        vmlet_err_t err = {0};
        int rc =
            vmlet_ws_channel_decode(s_p(cases[i].proto), buf, cases[i].len, &ch, &data, &n, &err);
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): rc %d, want %d", i, cases[i].msg + 1, rc, cases[i].rc);
        if (rc < 0) {
            assert_true(err.msg[0]);
            continue;
        }
        assert_int_equal(ch, cases[i].ch);
        assert_int_equal(n, cases[i].data_len);
        assert_memory_equal(data, cases[i].data, n);
    }
}

static void test_roundtrip_all_bytes(void **state)
{
    (void)state;
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    const char *protos[] = {"channel.k8s.io", "base64.channel.k8s.io", "v4.base64.channel.k8s.io"};
    for (size_t p = 0; p < 3; p++) {
        for (size_t len = 0; len <= sizeof all; len += 37) {
            size_t n;
            uint8_t *m = vmlet_ws_channel_encode(s_p(protos[p]), 2, all, len, &n);
            uint8_t ch, *data;
            size_t dn;
            assert_int_equal(vmlet_ws_channel_decode(s_p(protos[p]), m, n, &ch, &data, &dn, NULL),
                             0);
            assert_int_equal(ch, 2);
            assert_int_equal(dn, len);
            assert_memory_equal(data, all, len);
            free(m);
        }
    }
}

static void test_status(void **state)
{
    (void)state;
    size_t n;
    char *s = vmlet_ws_status_exit(s_p("v4.channel.k8s.io"), 0, &n);
    // json.Marshal(metav1.Status{Status: "Success"}): ListMeta is a
    // struct, so omitempty keeps "metadata":{}.
    assert_string_equal(s, "{\"metadata\":{},\"status\":\"Success\"}");
    assert_int_equal(n, strlen(s));
    free(s);
    s = vmlet_ws_status_exit(s_p("v4.base64.channel.k8s.io"), 3, &n);
    assert_string_equal(s,
                        "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"command terminated "
                        "with non-zero exit code: exit status 3\",\"reason\":"
                        "\"NonZeroExitCode\",\"details\":{\"causes\":[{\"reason\":\"ExitCode\","
                        "\"message\":\"3\"}]}}");
    free(s);
    // Before v4 the error channel carries only a failure's message.
    assert_null(vmlet_ws_status_exit(s_p("channel.k8s.io"), 0, &n));
    s = vmlet_ws_status_exit(s_p("v3.channel.k8s.io"), 127, &n);
    assert_string_equal(s, "command terminated with non-zero exit code: exit status 127");
    free(s);
    s = vmlet_ws_status_internal(s_p("v4.channel.k8s.io"), "no \"vm\" <here>\n", &n);
    assert_string_equal(s, "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"Internal error "
                           "occurred: no \\\"vm\\\" \\u003chere\\u003e\\n\",\"reason\":"
                           "\"InternalError\",\"details\":{\"causes\":[{\"message\":\"no "
                           "\\\"vm\\\" \\u003chere\\u003e\\n\"}]},\"code\":500}");
    free(s);
}

static void test_resize(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int rc;
        uint16_t w, h;
    } cases[] = {
        {"{\"Width\":80,\"Height\":24}", 0, 80, 24},
        {" { \"height\" : 50 , \"width\":200 } \n", 0, 200, 50},
        {"{\"Width\":65535}", 0, 65535, 0},
        {"{}", 0, 0, 0},
        {"{\"Width\":65536,\"Height\":1}", -1, 0, 0},
        {"{\"Width\":-1,\"Height\":1}", -1, 0, 0},
        {"{\"Width\":\"80\"}", -1, 0, 0},
        {"{\"Depth\":1}", -1, 0, 0},
        {"{\"Width\":80,}", -1, 0, 0},
        {"{\"Width\":80", -1, 0, 0},
        {"[80,24]", -1, 0, 0},
        {"{\"Width\":80} x", -1, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t w = 1, h = 1;
        vmlet_err_t err = {0};
        int rc = vmlet_ws_parse_resize(cases[i].json, strlen(cases[i].json), &w, &h, &err);
        if (rc != cases[i].rc)
            fail_msg("%s: rc %d (%s)", cases[i].json, rc, err.msg);
        if (rc == 0) {
            assert_int_equal(w, cases[i].w);
            assert_int_equal(h, cases[i].h);
        }
    }
}

static void test_resize_split(void **state)
{
    (void)state;
    const char *two = " {\"Width\":1,\"Height\":2}{\"Width\":3}";
    assert_int_equal(vmlet_ws_resize_split(two, strlen(two)), 23);
    assert_int_equal(vmlet_ws_resize_split(two + 23, strlen(two + 23)), 11);
    assert_int_equal(vmlet_ws_resize_split("{\"Width\":1", 10), 0);
    assert_int_equal(vmlet_ws_resize_split("  ", 2), 0);
    assert_int_equal(vmlet_ws_resize_split("{\"a}\":1}", 8), 8); // a brace in a string
    assert_int_equal(vmlet_ws_resize_split("x{}", 3), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_roundtrip_all_bytes),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_resize_split),
    };
    return TS_RUN(tests);
}
