// The WebSocket opening handshake: RFC 6455's own key vector, the
// subprotocol choice, and each refusal with its HTTP status.
#include "testsupport.h"

#include "ws_handshake.h"

#include <string.h>

static vmlet_ws_request_t s_good(const char *protocols)
{
    return (vmlet_ws_request_t){.method = "GET",
                                .upgrade = "websocket",
                                .connection = "Upgrade",
                                .key = "dGhlIHNhbXBsZSBub25jZQ==",
                                .version = "13",
                                .protocols = protocols};
}

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    // RFC 6455 1.3's sample.
    assert_int_equal(vmlet_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    // RFC 6455 4.2.1's other sample key, checked with Python's hashlib.
    assert_int_equal(vmlet_ws_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", out), 0);
    assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void test_accept_response(void **state)
{
    (void)state;
    vmlet_ws_request_t req = s_good("v4.channel.k8s.io");
    req.upgrade = "WebSocket";
    req.connection = "keep-alive, Upgrade";
    vmlet_ws_handshake_t hs = {0};
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_ws_handshake(&req, &hs, &err), 0);
    assert_int_equal(hs.status, 101);
    assert_string_equal(hs.proto->name, "v4.channel.k8s.io");
    assert_string_equal(hs.response, "HTTP/1.1 101 Switching Protocols\r\n"
                                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                     "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n");
    free(hs.response);
}

static void test_protocol_choice(void **state)
{
    (void)state;
    static const struct {
        const char *offer, *want;
        int version;
        bool base64;
    } cases[] = {
        {"channel.k8s.io", "channel.k8s.io", 1, false},
        {"base64.channel.k8s.io", "base64.channel.k8s.io", 1, true},
        {"channel.k8s.io, v4.channel.k8s.io", "v4.channel.k8s.io", 4, false},
        {"v4.base64.channel.k8s.io,base64.channel.k8s.io", "v4.base64.channel.k8s.io", 4, true},
        {"v4.base64.channel.k8s.io, v4.channel.k8s.io", "v4.channel.k8s.io", 4, false},
        {"v2.channel.k8s.io, v3.channel.k8s.io", "v3.channel.k8s.io", 3, false},
        {"bogus,  v5.channel.k8s.io ,v4.channel.k8s.io", "v5.channel.k8s.io", 5, false},
        {NULL, "", 1, false}, // no header: binary v1, answered without one
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vmlet_ws_request_t req = s_good(cases[i].offer);
        vmlet_ws_handshake_t hs = {0};
        assert_int_equal(vmlet_ws_handshake(&req, &hs, NULL), 0);
        assert_string_equal(hs.proto->name, cases[i].want);
        assert_int_equal(hs.proto->version, cases[i].version);
        assert_int_equal(hs.proto->base64, cases[i].base64);
        assert_int_equal(strstr(hs.response, "Sec-WebSocket-Protocol") != NULL,
                         cases[i].offer != NULL);
        free(hs.response);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *field, *value;
        int status;
        const char *in_msg;
    } cases[] = {
        {"method", "POST", 405, "must be a GET"},
        {"upgrade", NULL, 400, "Upgrade"},
        {"upgrade", "h2c", 400, "want \"websocket\""},
        {"connection", "keep-alive", 400, "Upgrade"},
        {"connection", "upgraded", 400, "Upgrade"},
        {"version", "8", 426, "use 13"},
        {"version", NULL, 426, "use 13"},
        {"key", NULL, 400, "Sec-WebSocket-Key"},
        {"key", "c2hvcnQ=", 400, "16 bytes"},
        {"key", "dGhlIHNhbXBsZSBub25jZQ=!", 400, "16 bytes"},
        {"key", "dGhlIHNhbXBsZSBub25j*Q==", 400, "16 bytes"},
        {"protocols", "v4.channel.k8s.io.evil, CHANNEL.K8S.IO", 403, "no supported"},
        {"protocols", "", 403, "no supported"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vmlet_ws_request_t req = s_good("channel.k8s.io");
        const char **slot = strcmp(cases[i].field, "method") == 0       ? &req.method
                            : strcmp(cases[i].field, "upgrade") == 0    ? &req.upgrade
                            : strcmp(cases[i].field, "connection") == 0 ? &req.connection
                            : strcmp(cases[i].field, "version") == 0    ? &req.version
                            : strcmp(cases[i].field, "key") == 0        ? &req.key
                                                                        : &req.protocols;
        *slot = cases[i].value;
        vmlet_ws_handshake_t hs = {0};
        vmlet_err_t err = {0};
        assert_int_equal(vmlet_ws_handshake(&req, &hs, &err), -1);
        assert_int_equal(hs.status, cases[i].status);
        assert_null(hs.proto);
        assert_non_null(strstr(err.msg, cases[i].in_msg));
        char line[64];
        snprintf(line, sizeof line, "HTTP/1.1 %d ", cases[i].status);
        assert_memory_equal(hs.response, line, strlen(line));
        assert_int_equal(strstr(hs.response, "Sec-WebSocket-Version: 13\r\n") != NULL,
                         cases[i].status == 426);
        assert_non_null(strstr(hs.response, "\r\n\r\n"));
        free(hs.response);
    }
}

static void test_proto_find(void **state)
{
    (void)state;
    assert_non_null(vmlet_ws_proto_find("v4.base64.channel.k8s.io"));
    assert_true(vmlet_ws_proto_find("v4.base64.channel.k8s.io")->base64);
    assert_null(vmlet_ws_proto_find("v5.base64.channel.k8s.io")); // v5 is binary only
    assert_null(vmlet_ws_proto_find(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),      cmocka_unit_test(test_accept_response),
        cmocka_unit_test(test_protocol_choice), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_proto_find),
    };
    return TS_RUN(tests);
}
