// Bad input to the SPDY/3.1 server session: each case gets the error the
// spec names (GOAWAY for session errors, RST_STREAM for stream errors),
// and random bytes never crash or over-read (run under ASan too).
#include "testsupport.h"

#include "spdy_frame.h"
#include "spdy_headers.h"
#include "vmlet_spdy.h"

#include <string.h>

typedef struct {
    vmlet_spdy_t *s;
    spdy_zctx_t *cz; // the client's compression
    spdy_buf_t in;   // frames to feed
    uint32_t resets;
} fix_t;

static void on_reset(void *ctx, uint32_t id, uint32_t status)
{
    (void)id;
    (void)status;
    ((fix_t *)ctx)->resets++;
}

static fix_t *fix_new(const vmlet_spdy_config_t *cfg)
{
    fix_t *f = calloc(1, sizeof *f);
    vmlet_spdy_callbacks_t cb = {.on_reset = on_reset, .ctx = f};
    f->s = vmlet_spdy_new(cfg, &cb, NULL);
    f->cz = spdy_z_new(NULL);
    assert_true(f->s && f->cz);
    size_t n;
    vmlet_spdy_pending(f->s, &n);
    vmlet_spdy_written(f->s, n); // drop the opening SETTINGS
    return f;
}

static void fix_free(fix_t *f)
{
    vmlet_spdy_destroy(&f->s);
    spdy_z_destroy(&f->cz);
    spdy_buf_free(&f->in);
    free(f);
}

static void syn(fix_t *f, uint32_t id)
{
    vmlet_spdy_header_t h[] = {{"streamtype", "error", 5}};
    spdy_buf_t block = {0};
    assert_int_equal(spdy_z_encode(f->cz, h, 1, &block, NULL), 0);
    spdy_put_syn_stream(&f->in, id, 0, 0, 0, block.p, block.len);
    spdy_buf_free(&block);
}

// Feeds f->in; asserts the feed result (-1 or all taken) and that the last
// control frame written has `type` with status `status` in its second word.
static void expect(fix_t *f, bool session_error, uint16_t type, uint32_t status)
{
    vmlet_err_t err = {0};
    ssize_t n = vmlet_spdy_feed(f->s, f->in.p, f->in.len, &err);
    if (session_error) {
        assert_int_equal(n, -1);
        assert_true(err.msg[0] != '\0');
        assert_true(vmlet_spdy_feed(f->s, f->in.p, 1, NULL) < 0); // stays failed
    } else {
        assert_int_equal(n, (ssize_t)f->in.len);
    }
    size_t len, off = 0;
    const uint8_t *p = vmlet_spdy_pending(f->s, &len);
    bool found = false;
    while (off + SPDY_HEAD_LEN <= len) {
        spdy_head_t h;
        spdy_head_parse(p + off, &h);
        if (h.control && h.type == type && h.length == 8) {
            assert_int_equal(spdy_get32(p + off + 12), status);
            found = true;
        }
        off += SPDY_HEAD_LEN + h.length;
    }
    assert_true(found);
    vmlet_spdy_written(f->s, len);
    f->in.off = f->in.len = 0;
}

static void test_wrong_version(void **state)
{
    (void)state;
    fix_t *f = fix_new(NULL);
    syn(f, 1);
    f->in.p[1] = 2; // SPDY/2
    expect(f, true, SPDY_GOAWAY, SPDY_GOAWAY_PROTOCOL_ERROR);
    fix_free(f);
    f = fix_new(NULL);
    syn(f, 1);
    f->in.p[1] = 2;
    expect(f, true, SPDY_RST_STREAM, SPDY_UNSUPPORTED_VERSION);
    fix_free(f);
}

static void test_impossible_lengths(void **state)
{
    (void)state;
    static const struct {
        uint16_t type;
        uint32_t len;
    } cases[] = {
        {SPDY_PING, 8},       {SPDY_PING, 0},          {SPDY_RST_STREAM, 4},
        {SPDY_GOAWAY, 12},    {SPDY_WINDOW_UPDATE, 4}, {SPDY_SETTINGS, 12},
        {SPDY_SYN_STREAM, 6}, {SPDY_HEADERS, 2},       {SPDY_SYN_STREAM, 0xffffff},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fix_t *f = fix_new(NULL);
        uint8_t head[SPDY_HEAD_LEN] = {0x80,
                                       3,
                                       0,
                                       (uint8_t)cases[i].type,
                                       0,
                                       (uint8_t)(cases[i].len >> 16),
                                       (uint8_t)(cases[i].len >> 8),
                                       (uint8_t)cases[i].len};
        spdy_buf_add(&f->in, head, sizeof head);
        static uint8_t zeros[16];
        // A huge length is refused from the head alone, before any body.
        if (cases[i].len <= sizeof zeros)
            spdy_buf_add(&f->in, zeros, cases[i].len);
        if (cases[i].type == SPDY_SETTINGS) // count 5 in a 12-byte body
            f->in.p[SPDY_HEAD_LEN + 3] = 5;
        expect(f, true, SPDY_GOAWAY, SPDY_GOAWAY_PROTOCOL_ERROR);
        fix_free(f);
    }
}

static void test_stream_errors(void **state)
{
    (void)state;
    fix_t *f = fix_new(NULL);
    spdy_put_data(&f->in, 5, 0, (const uint8_t *)"x", 1); // never opened
    expect(f, false, SPDY_RST_STREAM, SPDY_INVALID_STREAM);
    syn(f, 1);
    syn(f, 1); // the same id again
    expect(f, false, SPDY_RST_STREAM, SPDY_STREAM_IN_USE);
    spdy_put_window_update(&f->in, 3, 0); // unknown stream: ignored
    syn(f, 3);
    spdy_put_window_update(&f->in, 3, 0x7fffffff); // overflows 64 KiB + 2^31-1
    expect(f, false, SPDY_RST_STREAM, SPDY_FLOW_CONTROL_ERROR);
    // Upper-case and duplicate names are the stream's PROTOCOL_ERROR.
    vmlet_spdy_header_t bad[][2] = {{{"Port", "1", 1}, {"a", "b", 1}},
                                    {{"port", "1", 1}, {"port", "2", 1}},
                                    {{"port",
                                      "\0"
                                      "1",
                                      2},
                                     {"a", "b", 1}}};
    for (size_t i = 0; i < 3; i++) {
        spdy_buf_t raw = {0}, block = {0};
        // Built by hand: spdy_nv_build refuses upper case itself.
        uint8_t cnt[4] = {0, 0, 0, 2};
        spdy_buf_add(&raw, cnt, 4);
        for (int k = 0; k < 2; k++) {
            uint8_t l[4] = {0, 0, 0, (uint8_t)strlen(bad[i][k].name)};
            spdy_buf_add(&raw, l, 4);
            spdy_buf_add(&raw, bad[i][k].name, l[3]);
            l[3] = (uint8_t)bad[i][k].value_len;
            spdy_buf_add(&raw, l, 4);
            spdy_buf_add(&raw, bad[i][k].value, l[3]);
        }
        assert_int_equal(spdy_z_deflate(f->cz, raw.p, raw.len, &block, NULL), 0);
        syn(f, 7 + 4 * (uint32_t)i); // a good stream first: zlib state carries on
        spdy_put_syn_stream(&f->in, 9 + 4 * (uint32_t)i, 0, 0, 0, block.p, block.len);
        expect(f, false, SPDY_RST_STREAM, SPDY_PROTOCOL_ERROR);
        spdy_buf_free(&block);
        spdy_buf_free(&raw);
    }
    fix_free(f);
}

static void test_bad_header_block(void **state)
{
    (void)state;
    fix_t *f = fix_new(NULL);
    static const uint8_t junk[] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc};
    spdy_put_syn_stream(&f->in, 1, 0, 0, 0, junk, sizeof junk);
    expect(f, true, SPDY_GOAWAY, SPDY_GOAWAY_PROTOCOL_ERROR);
    fix_free(f);
    // An even (server-side) id from the client is a session error.
    f = fix_new(NULL);
    syn(f, 2);
    expect(f, true, SPDY_GOAWAY, SPDY_GOAWAY_PROTOCOL_ERROR);
    fix_free(f);
    // Ids must increase.
    f = fix_new(NULL);
    syn(f, 5);
    syn(f, 3);
    expect(f, true, SPDY_GOAWAY, SPDY_GOAWAY_PROTOCOL_ERROR);
    fix_free(f);
}

static void test_limits(void **state)
{
    (void)state;
    vmlet_spdy_config_t cfg = {.max_streams = 2, .max_header_bytes = 200};
    fix_t *f = fix_new(&cfg);
    syn(f, 1);
    syn(f, 3);
    syn(f, 5);
    expect(f, false, SPDY_RST_STREAM, SPDY_REFUSED_STREAM);
    // A block that inflates past the cap (a small zip bomb) ends the session.
    vmlet_spdy_header_t h[] = {{"big", NULL, 5000}};
    char *v = calloc(1, 5000);
    memset(v, 'a', 4999);
    h[0].value = v;
    spdy_buf_t block = {0};
    assert_int_equal(spdy_z_encode(f->cz, h, 1, &block, NULL), 0);
    assert_true(block.len < 200); // compresses well: only inflating shows it
    spdy_put_syn_stream(&f->in, 7, 0, 0, 0, block.p, block.len);
    expect(f, true, SPDY_GOAWAY, SPDY_GOAWAY_PROTOCOL_ERROR);
    free(v);
    spdy_buf_free(&block);
    fix_free(f);
}

static void test_random_bytes(void **state)
{
    (void)state;
    unsigned seed = 42;
    for (int round = 0; round < 3000; round++) {
        fix_t *f = fix_new(NULL);
        syn(f, 1); // a valid start, so later garbage reaches deeper states
        size_t n = (size_t)(rand_r(&seed) % 64);
        uint8_t *r = spdy_buf_reserve(&f->in, n);
        for (size_t i = 0; i < n; i++)
            r[i] = (uint8_t)rand_r(&seed);
        if (n > 0 && round % 2) // make some of it look like control frames
            r[0] = 0x80, r[1 % n] = 3;
        f->in.len += n;
        for (size_t i = 0; i < f->in.len; i++) {
            if (vmlet_spdy_feed(f->s, f->in.p + i, 1, NULL) < 0)
                break;
        }
        fix_free(f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrong_version), cmocka_unit_test(test_impossible_lengths),
        cmocka_unit_test(test_stream_errors), cmocka_unit_test(test_bad_header_block),
        cmocka_unit_test(test_limits),        cmocka_unit_test(test_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
