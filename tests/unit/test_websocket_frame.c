// RFC 6455 framing and the connection state machine, driven the way the
// kubelet API service drives it: client bytes in (whole, split, one at a
// time), callbacks and server frames out.
#include "testsupport.h"

#include "ws_channel.h"
#include "ws_conn.h"
#include "ws_frame.h"

#include <string.h>

static const uint8_t s_mask[4] = {0x37, 0xfa, 0x21, 0x3d};

// A masked client frame; rsv goes into bits 4..6 of the first byte.
static size_t s_frame(uint8_t *out, bool fin, uint8_t rsv, uint8_t op, const void *p, size_t n)
{
    size_t h = vmlet_ws_frame_header(out, fin, op, n);
    out[0] |= (uint8_t)(rsv << 4);
    out[1] |= 0x80;
    memcpy(out + h, s_mask, 4);
    memcpy(out + h + 4, p, n);
    vmlet_ws_mask(out + h + 4, n, s_mask, 0);
    return h + 4 + n;
}

typedef struct {
    uint8_t data[1 << 17];
    size_t data_len;
    int messages;
    uint8_t last_ch;
    int resizes;
    uint16_t w, h;
    int stream_closed;
    int closed;
    int close_code;
    char close_reason[128];
    bool pause_on_data;
    vmlet_ws_conn_t *conn;
} rec_t;

static int s_on_data(void *arg, uint8_t ch, const uint8_t *p, size_t n)
{
    rec_t *r = arg;
    assert_true(r->data_len + n <= sizeof r->data);
    memcpy(r->data + r->data_len, p, n);
    r->data_len += n;
    r->messages++;
    r->last_ch = ch;
    if (r->pause_on_data)
        vmlet_ws_conn_pause(r->conn, true);
    return ch == 9 ? -1 : 0; // channel 9: the receiver fails
}
static void s_on_resize(void *arg, uint16_t w, uint16_t h)
{
    rec_t *r = arg;
    r->resizes++;
    r->w = w;
    r->h = h;
}
static void s_on_stream_closed(void *arg, uint8_t ch)
{
    ((rec_t *)arg)->stream_closed = 100 + ch;
}
static void s_on_closed(void *arg, int code, const char *reason)
{
    rec_t *r = arg;
    r->closed++;
    r->close_code = code;
    snprintf(r->close_reason, sizeof r->close_reason, "%s", reason);
}

static const vmlet_ws_callbacks_t s_cb = {s_on_data, s_on_resize, s_on_stream_closed, s_on_closed};

static vmlet_ws_conn_t *s_conn(const char *proto, size_t max, rec_t *r)
{
    memset(r, 0, sizeof *r);
    r->conn = vmlet_ws_conn_new(vmlet_ws_proto_find(proto), max, &s_cb, r);
    return r->conn;
}

// The next server frame from the output (unmasked), drained.
static uint8_t s_out(vmlet_ws_conn_t *c, uint8_t *payload, size_t *n, bool *fin)
{
    size_t len;
    const uint8_t *p = vmlet_ws_conn_pending(c, &len);
    assert_true(len >= 2);
    assert_int_equal(p[1] & 0x80, 0); // servers never mask
    uint64_t plen = p[1] & 0x7f;
    size_t h = 2;
    if (plen == 126) {
        plen = (uint64_t)p[2] << 8 | p[3];
        h = 4;
    } else if (plen == 127) {
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | p[2 + i];
        h = 10;
    }
    assert_true(len >= h + plen);
    memcpy(payload, p + h, plen);
    *n = plen;
    if (fin)
        *fin = p[0] & 0x80;
    uint8_t op = p[0] & 0x0f;
    vmlet_ws_conn_written(c, h + plen);
    return op;
}

static size_t s_pending(vmlet_ws_conn_t *c)
{
    size_t n;
    vmlet_ws_conn_pending(c, &n);
    return n;
}

static void test_header_build(void **state)
{
    (void)state;
    uint8_t h[10];
    assert_int_equal(vmlet_ws_frame_header(h, true, VMLET_WS_OP_BINARY, 125), 2);
    assert_memory_equal(h, "\x82\x7d", 2);
    assert_int_equal(vmlet_ws_frame_header(h, false, VMLET_WS_OP_TEXT, 126), 4);
    assert_memory_equal(h, "\x01\x7e\x00\x7e", 4);
    assert_int_equal(vmlet_ws_frame_header(h, true, VMLET_WS_OP_BINARY, 65535), 4);
    assert_memory_equal(h, "\x82\x7e\xff\xff", 4);
    assert_int_equal(vmlet_ws_frame_header(h, true, VMLET_WS_OP_BINARY, 65536), 10);
    assert_memory_equal(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
}

static void test_header_parse(void **state)
{
    (void)state;
    // RFC 6455 5.7: a masked "Hello".
    const uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    vmlet_ws_frame_t f;
    int code = 0;
    for (size_t n = 0; n < 6; n++)
        assert_int_equal(vmlet_ws_frame_parse(hello, n, &f, &code, NULL), 0);
    assert_int_equal(vmlet_ws_frame_parse(hello, 6, &f, &code, NULL), 1);
    assert_true(f.fin);
    assert_int_equal(f.opcode, VMLET_WS_OP_TEXT);
    assert_int_equal(f.len, 5);
    assert_int_equal(f.header_len, 6);
    uint8_t p[5];
    memcpy(p, hello + 6, 5);
    vmlet_ws_mask(p, 2, f.mask, 0); // in two pieces, as it may arrive
    vmlet_ws_mask(p + 2, 3, f.mask, 2);
    assert_memory_equal(p, "Hello", 5);

    static const struct {
        uint8_t b[14];
        size_t n;
        const char *why;
    } bad[] = {
        {{0x81, 0x05}, 2, "not masked"},
        {{0xC1, 0x85}, 2, "reserved bits"},
        {{0x83, 0x80}, 2, "reserved opcode"},
        {{0x8B, 0x80}, 2, "reserved opcode"},
        {{0x09, 0x80}, 2, "control frame"},
        {{0x89, 0xFE}, 2, "control frame"},
        {{0x82, 0xFE, 0x00, 0x7D, 1, 2, 3, 4}, 8, "shortest"},
        {{0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2, 3, 4}, 14, "shortest"},
        {{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 14, "top bit"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vmlet_err_t err = {0};
        code = 0;
        assert_int_equal(vmlet_ws_frame_parse(bad[i].b, bad[i].n, &f, &code, &err), -1);
        assert_int_equal(code, VMLET_WS_CLOSE_PROTOCOL);
        if (!strstr(err.msg, bad[i].why))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, bad[i].why);
    }
}

static void test_utf8_and_close_payload(void **state)
{
    (void)state;
    assert_true(vmlet_ws_utf8_valid((const uint8_t *)"h\xc3\xa9llo \xf0\x9f\x98\x80", 11));
    assert_false(vmlet_ws_utf8_valid((const uint8_t *)"\xc0\xaf", 2));         // overlong
    assert_false(vmlet_ws_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));     // surrogate
    assert_false(vmlet_ws_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); // > U+10FFFF
    assert_false(vmlet_ws_utf8_valid((const uint8_t *)"\xe2\x82", 2));         // cut short
    int code;
    assert_int_equal(vmlet_ws_close_parse(NULL, 0, &code, NULL), 0);
    assert_int_equal(code, 1005);
    assert_int_equal(vmlet_ws_close_parse((const uint8_t *)"\x03\xe8ok", 4, &code, NULL), 0);
    assert_int_equal(code, 1000);
    assert_int_equal(vmlet_ws_close_parse((const uint8_t *)"\x03", 1, &code, NULL), -1);
    assert_int_equal(vmlet_ws_close_parse((const uint8_t *)"\x03\xed", 2, &code, NULL), -1);
    assert_int_equal(vmlet_ws_close_parse((const uint8_t *)"\x03\xe8\xff", 3, &code, NULL), -1);
    assert_true(vmlet_ws_close_code_ok(4000));
    assert_false(vmlet_ws_close_code_ok(1006));
    assert_false(vmlet_ws_close_code_ok(999));
}

// stdin on channel 0, fed whole, split at every point, and a byte at a time.
static void test_feed_pieces(void **state)
{
    (void)state;
    uint8_t wire[512];
    size_t n = s_frame(wire, true, 0, VMLET_WS_OP_BINARY, "\x00hello", 6);
    n += s_frame(wire + n, true, 0, VMLET_WS_OP_BINARY, "\x00 world", 7);
    for (size_t cut = 0; cut <= n; cut++) {
        rec_t r;
        vmlet_ws_conn_t *c = s_conn("v4.channel.k8s.io", 0, &r);
        assert_int_equal(vmlet_ws_conn_feed(c, wire, cut), cut);
        assert_int_equal(vmlet_ws_conn_feed(c, wire + cut, n - cut), n - cut);
        assert_int_equal(r.messages, 2);
        assert_int_equal(r.data_len, 11);
        assert_memory_equal(r.data, "hello world", 11);
        vmlet_ws_conn_destroy(&c);
        assert_null(c);
        vmlet_ws_conn_destroy(&c);
    }
    rec_t r;
    vmlet_ws_conn_t *c = s_conn("v4.channel.k8s.io", 0, &r);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(vmlet_ws_conn_feed(c, wire + i, 1), 1);
    assert_memory_equal(r.data, "hello world", 11);
    assert_int_equal(r.last_ch, 0);
    assert_int_equal(s_pending(c), 0);
    vmlet_ws_conn_destroy(&c);
}

// 16- and 64-bit lengths, fragments, and a ping between fragments.
static void test_lengths_and_fragments(void **state)
{
    (void)state;
    static uint8_t big[70000 + 1], wire[3 * 70100];
    big[0] = 1;
    for (size_t i = 1; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7);
    rec_t r;
    vmlet_ws_conn_t *c = s_conn("v4.channel.k8s.io", 0, &r);
    size_t n = s_frame(wire, true, 0, VMLET_WS_OP_BINARY, big, 300);      // 16-bit
    n += s_frame(wire + n, true, 0, VMLET_WS_OP_BINARY, big, sizeof big); // 64-bit
    assert_int_equal(vmlet_ws_conn_feed(c, wire, n), n);
    assert_int_equal(r.messages, 2);
    assert_int_equal(r.data_len, 299 + 70000);
    assert_memory_equal(r.data + 299, big + 1, 70000);

    // "\x00" "abc" "def" "ghi" in three fragments with a ping in between.
    r.data_len = 0;
    n = s_frame(wire, false, 0, VMLET_WS_OP_BINARY,
                "\x00"
                "abc",
                4);
    n += s_frame(wire + n, false, 0, VMLET_WS_OP_CONT, "def", 3);
    n += s_frame(wire + n, true, 0, VMLET_WS_OP_PING, "hb", 2);
    n += s_frame(wire + n, true, 0, VMLET_WS_OP_CONT, "ghi", 3);
    n += s_frame(wire + n, true, 0, VMLET_WS_OP_PONG, "x", 1); // unsolicited: ignored
    assert_int_equal(vmlet_ws_conn_feed(c, wire, n), n);
    assert_int_equal(r.messages, 3);
    assert_int_equal(r.data_len, 9);
    assert_memory_equal(r.data, "abcdefghi", 9);
    uint8_t p[200];
    size_t pn;
    assert_int_equal(s_out(c, p, &pn, NULL), VMLET_WS_OP_PONG);
    assert_int_equal(pn, 2);
    assert_memory_equal(p, "hb", 2);
    assert_int_equal(s_pending(c), 0);
    assert_int_equal(vmlet_ws_conn_state(c), VMLET_WS_OPEN);
    vmlet_ws_conn_destroy(&c);
}

static void test_client_close(void **state)
{
    (void)state;
    uint8_t wire[64], p[200];
    size_t pn;
    rec_t r;
    vmlet_ws_conn_t *c = s_conn("channel.k8s.io", 0, &r);
    size_t n = s_frame(wire, true, 0, VMLET_WS_OP_CLOSE,
                       "\x03\xe9"
                       "bye",
                       5);
    n += s_frame(wire + n, true, 0, VMLET_WS_OP_BINARY, "\x00late", 5);
    assert_int_equal(vmlet_ws_conn_feed(c, wire, n), n);
    assert_int_equal(r.closed, 1);
    assert_int_equal(r.close_code, 1001);
    assert_string_equal(r.close_reason, "bye");
    assert_int_equal(r.messages, 0); // nothing after the close
    assert_int_equal(vmlet_ws_conn_state(c), VMLET_WS_CLOSED);
    assert_int_equal(s_out(c, p, &pn, NULL), VMLET_WS_OP_CLOSE);
    assert_int_equal(pn, 2);
    assert_memory_equal(p, "\x03\xe9", 2); // the code echoed
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_ws_conn_send(c, 1, "x", 1, &err), -1);
    assert_non_null(strstr(err.msg, "closed"));
    vmlet_ws_conn_destroy(&c);

    // An empty close is echoed empty and reported as 1005.
    c = s_conn("channel.k8s.io", 0, &r);
    n = s_frame(wire, true, 0, VMLET_WS_OP_CLOSE, "", 0);
    vmlet_ws_conn_feed(c, wire, n);
    assert_int_equal(r.close_code, 1005);
    assert_int_equal(s_out(c, p, &pn, NULL), VMLET_WS_OP_CLOSE);
    assert_int_equal(pn, 0);
    vmlet_ws_conn_destroy(&c);
}

static void test_server_close(void **state)
{
    (void)state;
    uint8_t wire[64], p[200];
    size_t pn;
    rec_t r;
    vmlet_ws_conn_t *c = s_conn("v4.channel.k8s.io", 0, &r);
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_ws_conn_send_close(c, 1006, "", &err), -1); // not sendable
    assert_int_equal(vmlet_ws_conn_send_close(c, 1000, "done", &err), 0);
    assert_int_equal(vmlet_ws_conn_state(c), VMLET_WS_CLOSING);
    assert_int_equal(s_out(c, p, &pn, NULL), VMLET_WS_OP_CLOSE);
    assert_memory_equal(p,
                        "\x03\xe8"
                        "done",
                        6);
    assert_int_equal(vmlet_ws_conn_send_close(c, 1000, "", &err), -1);
    // Data and pings still arriving are dropped, unanswered; the client's
    // close ends it without a second close from us.
    size_t n = s_frame(wire, true, 0, VMLET_WS_OP_BINARY, "\x00x", 2);
    n += s_frame(wire + n, true, 0, VMLET_WS_OP_PING, "", 0);
    n += s_frame(wire + n, true, 0, VMLET_WS_OP_CLOSE, "\x03\xe8", 2);
    assert_int_equal(vmlet_ws_conn_feed(c, wire, n), n);
    assert_int_equal(r.messages, 0);
    assert_int_equal(r.closed, 1);
    assert_int_equal(r.close_code, 1000);
    assert_int_equal(vmlet_ws_conn_state(c), VMLET_WS_CLOSED);
    assert_int_equal(s_pending(c), 0);
    vmlet_ws_conn_destroy(&c);
}

// Each bad input fails the connection with its code and a close frame.
static void test_bad_input(void **state)
{
    (void)state;
    static const char big[200] = {0};
    uint8_t wire[512];
    static const struct {
        bool fin;
        uint8_t rsv, op;
        const char *p;
        size_t n;
        int code;
        const char *why;
    } cases[] = {
        {true, 4, VMLET_WS_OP_BINARY, "\x00x", 2, 1002, "reserved bits"},
        {true, 0, 3, "\x00x", 2, 1002, "reserved opcode"},
        {true, 0, VMLET_WS_OP_CONT, "\x00x", 2, 1002, "continuation"},
        {true, 0, VMLET_WS_OP_CLOSE, "\x03", 1, 1002, "1-byte"},
        {true, 0, VMLET_WS_OP_CLOSE, "\x03\xed", 2, 1002, "may not be sent"},
        {true, 0, VMLET_WS_OP_TEXT, "0\xff", 2, 1007, "UTF-8"},
        {true, 0, VMLET_WS_OP_TEXT, "0Zm9v!", 6, 1007, "not base64"},
        {true, 0, VMLET_WS_OP_BINARY, "\x09x", 2, 1011, "receiver failed"},
        {true, 0, VMLET_WS_OP_BINARY, "\x04{\"Width\":-3}", 13, 1007, "resize"},
        {true, 0, VMLET_WS_OP_BINARY, big, 101, 1009, "over 100 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rec_t r;
        bool b64 = cases[i].op == VMLET_WS_OP_TEXT;
        vmlet_ws_conn_t *c = s_conn(b64 ? "base64.channel.k8s.io" : "v4.channel.k8s.io", 100, &r);
        size_t n = s_frame(wire, cases[i].fin, cases[i].rsv, cases[i].op, cases[i].p, cases[i].n);
        assert_int_equal(vmlet_ws_conn_feed(c, wire, n), n);
        if (r.close_code != cases[i].code || !strstr(vmlet_ws_conn_error(c), cases[i].why))
            fail_msg("case %zu: code %d \"%s\", want %d \"%s\"", i, r.close_code,
                     vmlet_ws_conn_error(c), cases[i].code, cases[i].why);
        assert_int_equal(r.closed, 1);
        assert_int_equal(vmlet_ws_conn_state(c), VMLET_WS_CLOSED);
        uint8_t p[200];
        size_t pn;
        assert_int_equal(s_out(c, p, &pn, NULL), VMLET_WS_OP_CLOSE);
        assert_int_equal(p[0] << 8 | p[1], cases[i].code);
        vmlet_ws_conn_destroy(&c);
    }

    // Unmasked, and a new message inside a fragmented one.
    rec_t r;
    vmlet_ws_conn_t *c = s_conn("v4.channel.k8s.io", 0, &r);
    assert_int_equal(vmlet_ws_conn_feed(c, "\x82\x02\x00x", 4), 4);
    assert_int_equal(r.close_code, 1002);
    vmlet_ws_conn_destroy(&c);
    c = s_conn("v4.channel.k8s.io", 0, &r);
    size_t n = s_frame(wire, false, 0, VMLET_WS_OP_BINARY,
                       "\x00"
                       "a",
                       2);
    n += s_frame(wire + n, true, 0, VMLET_WS_OP_BINARY,
                 "\x00"
                 "b",
                 2);
    vmlet_ws_conn_feed(c, wire, n);
    assert_int_equal(r.close_code, 1002);
    assert_int_equal(r.messages, 0);
    vmlet_ws_conn_destroy(&c);

    // A hostile length is refused from the header, before any buffering.
    c = s_conn("v4.channel.k8s.io", 0, &r);
    const uint8_t huge[] = {0x82, 0xFF, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    assert_int_equal(vmlet_ws_conn_feed(c, huge, sizeof huge), sizeof huge);
    assert_int_equal(r.close_code, 1009);
    vmlet_ws_conn_destroy(&c);
}

static void test_resize_and_v5_close(void **state)
{
    (void)state;
    uint8_t wire[256];
    rec_t r;
    vmlet_ws_conn_t *c = s_conn("v5.channel.k8s.io", 0, &r);
    // One object split over two messages, then two in one.
    size_t n = s_frame(wire, true, 0, VMLET_WS_OP_BINARY, "\x04{\"Width\":1", 11);
    n += s_frame(wire + n, true, 0, VMLET_WS_OP_BINARY,
                 "\x04"
                 "20,\"Height\":40}",
                 16);
    assert_int_equal(vmlet_ws_conn_feed(c, wire, n), n);
    assert_int_equal(r.resizes, 1);
    assert_int_equal(r.w, 120);
    assert_int_equal(r.h, 40);
    const char two[] = "\x04{\"Width\":1,\"Height\":2}\n{\"Width\":3,\"Height\":4}";
    n = s_frame(wire, true, 0, VMLET_WS_OP_BINARY, two, sizeof two - 1);
    vmlet_ws_conn_feed(c, wire, n);
    assert_int_equal(r.resizes, 3);
    assert_int_equal(r.w, 3);
    assert_int_equal(r.h, 4);
    n = s_frame(wire, true, 0, VMLET_WS_OP_BINARY, "\xff\x00", 2);
    vmlet_ws_conn_feed(c, wire, n);
    assert_int_equal(r.stream_closed, 100);
    assert_int_equal(r.messages, 0);
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_ws_conn_close_stream(c, 1, &err), 0);
    uint8_t p[16];
    size_t pn;
    assert_int_equal(s_out(c, p, &pn, NULL), VMLET_WS_OP_BINARY);
    assert_int_equal(pn, 2);
    assert_memory_equal(p, "\xff\x01", 2);
    vmlet_ws_conn_destroy(&c);

    // Before v5, channel 255 is plain data, and there is no close signal.
    c = s_conn("v4.channel.k8s.io", 0, &r);
    n = s_frame(wire, true, 0, VMLET_WS_OP_BINARY, "\xff\x00", 2);
    vmlet_ws_conn_feed(c, wire, n);
    assert_int_equal(r.stream_closed, 0);
    assert_int_equal(r.last_ch, 255);
    assert_int_equal(vmlet_ws_conn_close_stream(c, 1, &err), -1);
    assert_non_null(strstr(err.msg, "v5 only"));
    vmlet_ws_conn_destroy(&c);
}

static void test_pause(void **state)
{
    (void)state;
    uint8_t wire[256];
    size_t n = s_frame(wire, true, 0, VMLET_WS_OP_BINARY, "\x00one", 4);
    size_t first = n;
    n += s_frame(wire + n, true, 0, VMLET_WS_OP_BINARY, "\x00two", 4);
    rec_t r;
    vmlet_ws_conn_t *c = s_conn("v4.channel.k8s.io", 0, &r);
    r.pause_on_data = true;
    assert_int_equal(vmlet_ws_conn_feed(c, wire, n), first);
    assert_int_equal(r.messages, 1);
    assert_int_equal(vmlet_ws_conn_feed(c, wire + first, n - first), 0); // still paused
    r.pause_on_data = false;
    vmlet_ws_conn_pause(c, false);
    assert_int_equal(vmlet_ws_conn_feed(c, wire + first, n - first), n - first);
    assert_int_equal(r.messages, 2);
    assert_memory_equal(r.data, "onetwo", 6);
    vmlet_ws_conn_destroy(&c);
}

static void test_send(void **state)
{
    (void)state;
    static uint8_t big[VMLET_WS_WRITE_CHUNK + 10];
    static uint8_t p[VMLET_WS_WRITE_CHUNK * 2];
    memset(big, 'z', sizeof big);
    size_t pn;
    bool fin;
    rec_t r;
    vmlet_err_t err = {0};
    vmlet_ws_conn_t *c = s_conn("v4.channel.k8s.io", 0, &r);
    assert_int_equal(vmlet_ws_conn_send(c, 1, NULL, 0, &err), 0);
    assert_int_equal(vmlet_ws_conn_send(c, 1, big, sizeof big, &err), 0);
    assert_int_equal(vmlet_ws_conn_ping(c, "k", 1, &err), 0);
    assert_int_equal(vmlet_ws_conn_ping(c, big, 126, &err), -1);
    assert_int_equal(s_out(c, p, &pn, &fin), VMLET_WS_OP_BINARY);
    assert_true(fin);
    assert_int_equal(pn, 1);
    assert_int_equal(p[0], 1);
    assert_int_equal(s_out(c, p, &pn, NULL), VMLET_WS_OP_BINARY);
    assert_int_equal(pn, 1 + VMLET_WS_WRITE_CHUNK);
    assert_int_equal(s_out(c, p, &pn, NULL), VMLET_WS_OP_BINARY);
    assert_int_equal(pn, 11);
    assert_memory_equal(p, "\x01zzzzzzzzzz", 11);
    assert_int_equal(s_out(c, p, &pn, NULL), VMLET_WS_OP_PING);
    assert_int_equal(s_pending(c), 0);
    vmlet_ws_conn_destroy(&c);

    // base64 protocols write text frames; a partial write leaves the rest.
    c = s_conn("base64.channel.k8s.io", 0, &r);
    assert_int_equal(vmlet_ws_conn_send(c, 3, "oops", 4, &err), 0);
    assert_int_equal(vmlet_ws_conn_send(c, 12, "x", 1, &err), -1);
    size_t len;
    vmlet_ws_conn_pending(c, &len);
    assert_int_equal(len, 2 + 9);
    vmlet_ws_conn_written(c, 3);
    assert_int_equal(s_pending(c), 8);
    const uint8_t *rest = vmlet_ws_conn_pending(c, &len);
    assert_memory_equal(rest, "b29wcw==", 8);
    vmlet_ws_conn_written(c, 100);
    assert_int_equal(s_pending(c), 0);
    vmlet_ws_conn_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_build),
        cmocka_unit_test(test_header_parse),
        cmocka_unit_test(test_utf8_and_close_payload),
        cmocka_unit_test(test_feed_pieces),
        cmocka_unit_test(test_lengths_and_fragments),
        cmocka_unit_test(test_client_close),
        cmocka_unit_test(test_server_close),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_resize_and_v5_close),
        cmocka_unit_test(test_pause),
        cmocka_unit_test(test_send),
    };
    return TS_RUN(tests);
}
