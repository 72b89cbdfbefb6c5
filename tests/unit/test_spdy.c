// The SPDY/3.1 server session driven as the kubelet API drives it: bytes
// in through vmlet_spdy_feed, frames out through vmlet_spdy_pending, with
// a client side made of the library's own frame builders and a separate
// zlib context (test_spdy_wire.c checks those against Python's zlib).
#include "testsupport.h"

#include "spdy_frame.h"
#include "spdy_headers.h"
#include "vmlet_spdy.h"

#include <string.h>

// --- a recording client ---

typedef struct {
    uint32_t stream_id, stream_count;
    bool stream_fin;
    char first_name[64], first_value[64];
    uint8_t data[200000];
    size_t data_len, data_calls;
    bool data_fin;
    uint32_t reset_id, reset_status, resets;
    uint32_t goaway_status, goaways;
    vmlet_spdy_t *s;    // for callbacks that act on the session
    bool reset_in_data; // on_data resets the stream
} rec_t;

static void on_stream(void *ctx, uint32_t id, const vmlet_spdy_header_t *h, size_t n, bool fin)
{
    rec_t *r = ctx;
    r->stream_id = id;
    r->stream_count++;
    r->stream_fin = fin;
    if (n) {
        snprintf(r->first_name, sizeof r->first_name, "%s", h[0].name);
        snprintf(r->first_value, sizeof r->first_value, "%s", h[0].value);
    }
}

static void on_data(void *ctx, uint32_t id, const uint8_t *d, size_t len, bool fin)
{
    rec_t *r = ctx;
    assert_true(r->data_len + len <= sizeof r->data);
    if (len)
        memcpy(r->data + r->data_len, d, len);
    r->data_len += len;
    r->data_calls++;
    r->data_fin = fin;
    if (r->reset_in_data)
        vmlet_spdy_reset(r->s, id, SPDY_CANCEL);
}

static void on_reset(void *ctx, uint32_t id, uint32_t status)
{
    rec_t *r = ctx;
    r->reset_id = id;
    r->reset_status = status;
    r->resets++;
}

static void on_goaway(void *ctx, uint32_t last, uint32_t status)
{
    (void)last;
    rec_t *r = ctx;
    r->goaway_status = status;
    r->goaways++;
}

typedef struct {
    rec_t rec;
    vmlet_spdy_t *s;
    spdy_zctx_t *client_z; // the client's own compression contexts
    spdy_buf_t out;        // what the server wrote, drained
} fix_t;

static fix_t *fix_new(const vmlet_spdy_config_t *cfg)
{
    fix_t *f = calloc(1, sizeof *f);
    vmlet_spdy_callbacks_t cb = {on_stream, on_data, on_reset, on_goaway, &f->rec};
    vmlet_err_t err = {0};
    f->s = vmlet_spdy_new(cfg, &cb, &err);
    assert_non_null(f->s);
    f->rec.s = f->s;
    f->client_z = spdy_z_new(&err);
    assert_non_null(f->client_z);
    return f;
}

static void fix_free(fix_t *f)
{
    vmlet_spdy_destroy(&f->s);
    vmlet_spdy_destroy(&f->s); // safe twice
    spdy_z_destroy(&f->client_z);
    spdy_buf_free(&f->out);
    free(f);
}

// Moves everything pending into f->out.
static void drain(fix_t *f)
{
    size_t n;
    const uint8_t *p = vmlet_spdy_pending(f->s, &n);
    spdy_buf_add(&f->out, p, n);
    vmlet_spdy_written(f->s, n);
}

// Feeds a whole buffer; returns feed's result.
static ssize_t feed(fix_t *f, const spdy_buf_t *b)
{
    vmlet_err_t err = {0};
    ssize_t n = vmlet_spdy_feed(f->s, b->p + b->off, spdy_buf_pending(b), &err);
    drain(f);
    return n;
}

// The next frame the server wrote, removed from f->out; false if none.
static bool next_frame(fix_t *f, spdy_head_t *h, uint8_t *body, size_t cap)
{
    if (spdy_buf_pending(&f->out) < SPDY_HEAD_LEN)
        return false;
    spdy_head_parse(f->out.p + f->out.off, h);
    assert_true(spdy_buf_pending(&f->out) >= SPDY_HEAD_LEN + h->length);
    assert_true(h->length <= cap);
    memcpy(body, f->out.p + f->out.off + SPDY_HEAD_LEN, h->length);
    spdy_buf_drop(&f->out, SPDY_HEAD_LEN + h->length);
    return true;
}

// Skips frames until one of control type `type`; fails the test if none.
static void expect_control(fix_t *f, uint16_t type, uint8_t *body, spdy_head_t *h)
{
    static uint8_t big[100000];
    while (next_frame(f, h, big, sizeof big)) {
        if (h->control && h->type == type) {
            memcpy(body, big, h->length < 64 ? h->length : 64);
            return;
        }
    }
    fail_msg("no control frame of type %u in the output", type);
}

static void syn_stream(fix_t *f, spdy_buf_t *b, uint32_t id, bool fin)
{
    vmlet_spdy_header_t h[] = {{"streamtype", "stdout", 6}, {"port", "80", 2}};
    spdy_buf_t block = {0};
    assert_int_equal(spdy_z_encode(f->client_z, h, 2, &block, NULL), 0);
    spdy_put_syn_stream(b, id, 0, 0, fin ? SPDY_FLAG_FIN : 0, block.p, block.len);
    spdy_buf_free(&block);
}

// A stream the server has opened and answered.
static void open_stream(fix_t *f, uint32_t id)
{
    spdy_buf_t b = {0};
    syn_stream(f, &b, id, false);
    assert_int_equal(feed(f, &b), (ssize_t)b.len);
    spdy_buf_free(&b);
    assert_int_equal(f->rec.stream_id, id);
    assert_int_equal(vmlet_spdy_reply(f->s, id, NULL, 0, false, NULL), 0);
    drain(f);
    f->out.off = f->out.len = 0; // the SETTINGS and SYN_REPLY are checked elsewhere
}

// --- tests ---

static void test_open_reply_data(void **state)
{
    (void)state;
    fix_t *f = fix_new(NULL);
    drain(f);
    spdy_head_t h;
    uint8_t body[64];
    // The session opens with SETTINGS announcing max concurrent streams.
    expect_control(f, SPDY_SETTINGS, body, &h);
    assert_int_equal(spdy_parse_settings(body, h.length), 1);

    spdy_buf_t b = {0};
    syn_stream(f, &b, 1, false);
    spdy_put_data(&b, 1, SPDY_FLAG_FIN, (const uint8_t *)"hello", 5);
    assert_int_equal(feed(f, &b), (ssize_t)b.len);
    assert_int_equal(f->rec.stream_id, 1);
    assert_string_equal(f->rec.first_name, "streamtype");
    assert_string_equal(f->rec.first_value, "stdout");
    assert_int_equal(f->rec.data_len, 5);
    assert_memory_equal(f->rec.data, "hello", 5);
    assert_true(f->rec.data_fin);

    vmlet_spdy_header_t rh[] = {{"status", "200", 3}, {"multi", "a\0b", 3}};
    assert_int_equal(vmlet_spdy_reply(f->s, 1, rh, 2, false, NULL), 0);
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_spdy_reply(f->s, 1, rh, 2, false, &err), -1); // only once
    assert_int_equal(vmlet_spdy_send(f->s, 1, (const uint8_t *)"out", 3, true, NULL), 3);
    drain(f);
    static uint8_t big[1000];
    assert_true(next_frame(f, &h, big, sizeof big));
    assert_true(h.control && h.type == SPDY_SYN_REPLY);
    assert_int_equal(spdy_get32(big), 1);
    spdy_buf_t raw = {0};
    assert_int_equal(spdy_z_inflate(f->client_z, big + 4, h.length - 4, 4096, &raw, NULL), 0);
    spdy_hdrs_t hd;
    assert_int_equal(spdy_nv_parse(raw.p, raw.len, 16, &hd, NULL), 0);
    assert_int_equal(hd.n, 2);
    assert_string_equal(hd.v[0].name, "status");
    assert_memory_equal(hd.v[1].value, "a\0b", 3);
    spdy_hdrs_free(&hd);
    spdy_buf_free(&raw);
    assert_true(next_frame(f, &h, big, sizeof big));
    assert_false(h.control);
    assert_int_equal(h.stream_id, 1);
    assert_int_equal(h.flags, SPDY_FLAG_FIN);
    assert_memory_equal(big, "out", 3);
    // Both sides finished: the stream is gone, sending again is refused.
    assert_int_equal(vmlet_spdy_send(f->s, 1, (const uint8_t *)"x", 1, false, &err), -1);
    spdy_buf_free(&b);
    fix_free(f);
}

static void test_byte_by_byte(void **state)
{
    (void)state;
    fix_t *f = fix_new(NULL);
    spdy_buf_t b = {0};
    syn_stream(f, &b, 1, false);
    spdy_put_ping(&b, 7);
    spdy_put_data(&b, 1, 0, (const uint8_t *)"abcdef", 6);
    spdy_put_data(&b, 1, SPDY_FLAG_FIN, NULL, 0);
    for (size_t i = 0; i < b.len; i++) {
        assert_int_equal(vmlet_spdy_feed(f->s, b.p + i, 1, NULL), 1);
        if (i + 1 < b.len)
            assert_false(f->rec.data_fin);
    }
    drain(f);
    assert_int_equal(f->rec.stream_count, 1);
    assert_int_equal(f->rec.data_len, 6);
    assert_memory_equal(f->rec.data, "abcdef", 6);
    assert_true(f->rec.data_fin);
    spdy_head_t h;
    uint8_t body[64];
    expect_control(f, SPDY_PING, body, &h); // answered by the session itself
    assert_int_equal(spdy_get32(body), 7);
    spdy_buf_free(&b);
    fix_free(f);
}

static void test_send_window(void **state)
{
    (void)state;
    fix_t *f = fix_new(NULL);
    open_stream(f, 1);
    static uint8_t data[100000];
    memset(data, 'x', sizeof data);
    // The peer's windows (64 KiB each) cut the send: back-pressure.
    assert_int_equal(vmlet_spdy_send(f->s, 1, data, sizeof data, true, NULL), 65536);
    assert_int_equal(vmlet_spdy_send(f->s, 1, data, 10, true, NULL), 0);
    drain(f);
    spdy_head_t h;
    static uint8_t body[70000];
    size_t total = 0;
    while (next_frame(f, &h, body, sizeof body)) {
        assert_false(h.control);
        assert_int_equal(h.flags, 0); // FIN waits for the rest
        total += h.length;
    }
    assert_int_equal(total, 65536);
    // The stream's window alone is not enough: the session's is empty too.
    spdy_buf_t b = {0};
    spdy_put_window_update(&b, 1, 10000);
    feed(f, &b);
    assert_int_equal(vmlet_spdy_send_window(f->s, 1), 0);
    b.off = b.len = 0;
    spdy_put_window_update(&b, 0, 5000);
    feed(f, &b);
    assert_int_equal(vmlet_spdy_send_window(f->s, 1), 5000);
    assert_int_equal(vmlet_spdy_send(f->s, 1, data, 8000, true, NULL), 5000);
    spdy_buf_free(&b);
    fix_free(f);
}

static void test_settings_initial_window(void **state)
{
    (void)state;
    fix_t *f = fix_new(NULL);
    open_stream(f, 1);
    static uint8_t data[5000];
    assert_int_equal(vmlet_spdy_send(f->s, 1, data, 500, false, NULL), 500);
    // Lowering the initial window shifts the open stream: 1000 - 500.
    spdy_buf_t b = {0};
    spdy_setting_t set = {0, SPDY_SETTINGS_INITIAL_WINDOW_SIZE, 1000};
    spdy_put_settings(&b, 0, &set, 1);
    feed(f, &b);
    assert_int_equal(vmlet_spdy_send_window(f->s, 1), 500);
    // A new stream starts with the new window.
    open_stream(f, 3);
    assert_int_equal(vmlet_spdy_send(f->s, 3, data, sizeof data, false, NULL), 1000);
    spdy_buf_free(&b);
    fix_free(f);
}

static void test_consumed(void **state)
{
    (void)state;
    fix_t *f = fix_new(NULL);
    open_stream(f, 1);
    static uint8_t data[3000];
    spdy_buf_t b = {0};
    spdy_put_data(&b, 1, 0, data, sizeof data);
    feed(f, &b);
    assert_int_equal(f->rec.data_len, 3000);
    assert_int_equal(spdy_buf_pending(&f->out), 0); // no update until consumed
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_spdy_consumed(f->s, 1, 4000, &err), -1); // more than received
    assert_int_equal(vmlet_spdy_consumed(f->s, 1, 3000, &err), 0);
    drain(f);
    spdy_head_t h;
    uint8_t body[64];
    uint32_t id, delta;
    expect_control(f, SPDY_WINDOW_UPDATE, body, &h);
    assert_int_equal(spdy_parse_window_update(body, h.length, &id, &delta), 0);
    assert_int_equal(id, 0);
    assert_int_equal(delta, 3000);
    expect_control(f, SPDY_WINDOW_UPDATE, body, &h);
    assert_int_equal(spdy_parse_window_update(body, h.length, &id, &delta), 0);
    assert_int_equal(id, 1);
    assert_int_equal(delta, 3000);
    spdy_buf_free(&b);
    fix_free(f);
}

static void test_recv_window_exceeded(void **state)
{
    (void)state;
    vmlet_spdy_config_t cfg = {.recv_window = 1000};
    fix_t *f = fix_new(&cfg);
    open_stream(f, 1);
    static uint8_t data[1500];
    spdy_buf_t b = {0};
    spdy_put_data(&b, 1, 0, data, sizeof data);
    assert_int_equal(feed(f, &b), (ssize_t)b.len);
    assert_int_equal(f->rec.data_len, 0);
    assert_int_equal(f->rec.reset_status, SPDY_FLOW_CONTROL_ERROR);
    spdy_head_t h;
    uint8_t body[64];
    expect_control(f, SPDY_RST_STREAM, body, &h);
    assert_int_equal(spdy_get32(body + 4), SPDY_FLOW_CONTROL_ERROR);
    fix_free(f);

    // kubectl 1.20 ignores windows: lenient mode takes the data.
    cfg.lenient_flow_control = true;
    f = fix_new(&cfg);
    open_stream(f, 1);
    assert_int_equal(feed(f, &b), (ssize_t)b.len);
    assert_int_equal(f->rec.data_len, 1500);
    assert_int_equal(f->rec.resets, 0);
    static uint8_t out[200000];
    assert_int_equal(vmlet_spdy_send(f->s, 1, out, sizeof out, false, NULL), sizeof out);
    spdy_buf_free(&b);
    fix_free(f);
}

static void test_reset_in_callback(void **state)
{
    (void)state;
    fix_t *f = fix_new(NULL);
    open_stream(f, 1);
    f->rec.reset_in_data = true;
    static uint8_t data[100];
    spdy_buf_t b = {0};
    spdy_put_data(&b, 1, 0, data, sizeof data);
    // Split so the rest of the frame arrives after the stream is gone.
    assert_int_equal(vmlet_spdy_feed(f->s, b.p, 20, NULL), 20);
    assert_int_equal(vmlet_spdy_feed(f->s, b.p + 20, b.len - 20, NULL), (ssize_t)b.len - 20);
    assert_int_equal(f->rec.data_calls, 1);
    spdy_buf_free(&b);
    fix_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_reply_data),   cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_send_window),       cmocka_unit_test(test_settings_initial_window),
        cmocka_unit_test(test_consumed),          cmocka_unit_test(test_recv_window_exceeded),
        cmocka_unit_test(test_reset_in_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
