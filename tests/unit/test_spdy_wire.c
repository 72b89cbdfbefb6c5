// The SPDY/3 wire format checked from outside the library: frames against
// bytes written out by hand from the spec, the dictionary against the
// checksum of kubectl 1.20's own copy, and header compression against an
// independent zlib: this test runs python3 (zlib.compressobj/decompressobj
// with zdict=) to make header blocks the session must decode and to decode
// the blocks the session made. Without python3 that test is skipped.
#include "testsupport.h"

#include "spdy_frame.h"
#include "spdy_headers.h"
#include "vmlet_spdy.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

// --- frames ---

static void expect_bytes(spdy_buf_t *b, const uint8_t *want, size_t n)
{
    assert_int_equal(b->len, n);
    assert_memory_equal(b->p, want, n);
    b->off = b->len = 0;
}

static void test_frames(void **state)
{
    (void)state;
    spdy_buf_t b = {0};
    uint32_t a, c;
    spdy_head_t h;
    spdy_put_ping(&b, 0x01020304); // spec §2.6.5: 80 03 00 06, length 4
    expect_bytes(&b, (const uint8_t[]){0x80, 3, 0, 6, 0, 0, 0, 4, 1, 2, 3, 4}, 12);
    spdy_put_rst(&b, 5, SPDY_REFUSED_STREAM);
    spdy_head_parse(b.p, &h);
    assert_true(h.control && h.version == 3 && h.type == SPDY_RST_STREAM && h.length == 8);
    assert_int_equal(spdy_parse_rst(b.p + 8, h.length, &a, &c), 0);
    assert_true(a == 5 && c == SPDY_REFUSED_STREAM);
    b.off = b.len = 0;
    spdy_put_goaway(&b, 7, SPDY_GOAWAY_INTERNAL_ERROR);
    expect_bytes(&b, (const uint8_t[]){0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 2}, 16);
    spdy_put_window_update(&b, 3, 0x10000);
    expect_bytes(&b, (const uint8_t[]){0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 3, 0, 1, 0, 0}, 16);
    spdy_put_data(&b, 0x12345, SPDY_FLAG_FIN, (const uint8_t *)"hi", 2);
    expect_bytes(&b, (const uint8_t[]){0, 1, 0x23, 0x45, 1, 0, 0, 2, 'h', 'i'}, 10);
    spdy_setting_t set[2] = {{1, SPDY_SETTINGS_INITIAL_WINDOW_SIZE, 1000}, {0, 4, 9}};
    spdy_put_settings(&b, 0, set, 2);
    spdy_head_parse(b.p, &h);
    assert_int_equal(h.length, 20);
    assert_int_equal(spdy_parse_settings(b.p + 8, h.length), 2);
    spdy_setting_t e;
    spdy_settings_entry(b.p + 8, 0, &e);
    assert_true(e.flags == 1 && e.id == 7 && e.value == 1000);
    spdy_settings_entry(b.p + 8, 1, &e);
    assert_true(e.flags == 0 && e.id == 4 && e.value == 9);
    b.off = b.len = 0;
    spdy_put_syn_stream(&b, 1, 0, 7, SPDY_FLAG_FIN, (const uint8_t *)"zz", 2);
    expect_bytes(&b, (const uint8_t[]){0x80, 3, 0, 1, 1, 0, 0,    12, 0,   0,
                                       0,    1, 0, 0, 0, 0, 0xe0, 0,  'z', 'z'},
                 20);
    spdy_put_syn_reply(&b, 1, 0, (const uint8_t *)"z", 1);
    expect_bytes(&b, (const uint8_t[]){0x80, 3, 0, 2, 0, 0, 0, 5, 0, 0, 0, 1, 'z'}, 13);
    spdy_put_headers(&b, 3, SPDY_FLAG_FIN, NULL, 0);
    expect_bytes(&b, (const uint8_t[]){0x80, 3, 0, 8, 1, 0, 0, 4, 0, 0, 0, 3}, 12);
    spdy_buf_free(&b);
}

static void test_dictionary(void **state)
{
    (void)state;
    // adler32 of the headerDictionary in kubectl 1.20's vendored
    // github.com/docker/spdystream/spdy/dictionary.go; zlib sends it as
    // the dictionary id, so a single wrong byte breaks every header block.
    assert_int_equal(adler32(1, spdy_dictionary, SPDY_DICTIONARY_LEN), 0xe3c6a7c2);
}

// --- python3's zlib ---

static const char s_py[] =
    "import sys, zlib, struct\n"
    "mode, d = sys.argv[1], bytes.fromhex(sys.argv[2])\n"
    "def nv(hs):\n"
    "    out = struct.pack('>I', len(hs))\n"
    "    for n, v in hs:\n"
    "        out += struct.pack('>I', len(n)) + n + struct.pack('>I', len(v)) + v\n"
    "    return out\n"
    "if mode == 'compress':\n"
    "    c = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=d)\n"
    "    for hs in ([(b'streamtype', b'data'), (b'port', b'8080'), (b'requestid', b'0')],\n"
    "               [(b'streamtype', b'error'), (b'x-multi', b'a\\0b')]):\n"
    "        print((c.compress(nv(hs)) + c.flush(zlib.Z_SYNC_FLUSH)).hex())\n"
    "else:\n"
    "    o = zlib.decompressobj(zdict=d)\n"
    "    for blk in sys.argv[3:]:\n"
    "        b, p, out = o.decompress(bytes.fromhex(blk)), 4, []\n"
    "        for _ in range(struct.unpack_from('>I', b, 0)[0]):\n"
    "            n = struct.unpack_from('>I', b, p)[0]; name = b[p + 4:p + 4 + n]; p += 4 + n\n"
    "            n = struct.unpack_from('>I', b, p)[0]; val = b[p + 4:p + 4 + n]; p += 4 + n\n"
    "            out.append(name.decode() + '=' + val.replace(b'\\0', b'|').decode())\n"
    "        assert p == len(b), 'trailing bytes'\n"
    "        print(';'.join(out))\n";

static char *s_hex(const uint8_t *p, size_t n)
{
    char *s = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++)
        sprintf(s + 2 * i, "%02x", p[i]);
    s[2 * n] = '\0';
    return s;
}

// Runs the script; returns its stdout (caller frees) or NULL if python3
// cannot run.
static char *s_python(const char *mode, const char *args)
{
    char path[] = "/tmp/test_spdy_wire_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, s_py, sizeof s_py - 1), (ssize_t)(sizeof s_py - 1));
    close(fd);
    char *dict = s_hex(spdy_dictionary, SPDY_DICTIONARY_LEN);
    size_t cap = strlen(dict) + strlen(args) + 256;
    char *cmd = malloc(cap);
    snprintf(cmd, cap, "python3 %s %s %s %s 2>&1", path, mode, dict, args);
    FILE *p = popen(cmd, "r");
    char *out = calloc(1, 65536);
    size_t n = p ? fread(out, 1, 65535, p) : 0;
    int rc = p ? pclose(p) : -1;
    unlink(path);
    free(dict);
    free(cmd);
    if (rc != 0) {
        fprintf(stderr, "python3 failed (%d): %.*s\n", rc, (int)n, out);
        free(out);
        return NULL;
    }
    return out;
}

typedef struct {
    char got[2][256];
    int n;
} heard_t;

static void on_stream(void *ctx, uint32_t id, const vmlet_spdy_header_t *h, size_t n, bool fin)
{
    (void)id;
    (void)fin;
    heard_t *r = ctx;
    char *at = r->got[r->n++];
    for (size_t i = 0; i < n; i++) {
        at += sprintf(at, "%s%s=", i ? ";" : "", h[i].name);
        for (size_t k = 0; k < h[i].value_len; k++)
            *at++ = h[i].value[k] ? h[i].value[k] : '|';
        *at = '\0';
    }
}

static void test_python_zlib(void **state)
{
    (void)state;
    if (system("python3 -c 'import zlib' >/dev/null 2>&1") != 0)
        skip(); // reason: no python3 with zlib on this machine
    // Python compresses two blocks in one context; the session decodes both.
    char *blocks = s_python("compress", "");
    assert_non_null(blocks);
    heard_t r = {0};
    vmlet_spdy_callbacks_t cb = {.on_stream = on_stream, .ctx = &r};
    vmlet_spdy_t *s = vmlet_spdy_new(NULL, &cb, NULL);
    spdy_buf_t in = {0};
    char *line = strtok(blocks, "\n");
    for (uint32_t id = 1; line && id <= 3; id += 2, line = strtok(NULL, "\n")) {
        size_t n = strlen(line) / 2;
        uint8_t *bin = malloc(n);
        for (size_t i = 0; i < n; i++)
            sscanf(line + 2 * i, "%2hhx", &bin[i]);
        spdy_put_syn_stream(&in, id, 0, 0, 0, bin, n);
        free(bin);
    }
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_spdy_feed(s, in.p, in.len, &err), (ssize_t)in.len);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.got[0], "streamtype=data;port=8080;requestid=0");
    assert_string_equal(r.got[1], "streamtype=error;x-multi=a|b");
    free(blocks);

    // The session's replies, decoded by Python in one context.
    size_t len;
    vmlet_spdy_written(s, (vmlet_spdy_pending(s, &len), len));
    vmlet_spdy_header_t h1[] = {{"status", "200", 3}, {"version", "HTTP/1.1", 8}};
    vmlet_spdy_header_t h2[] = {{"x-multi", "one\0two", 7}};
    assert_int_equal(vmlet_spdy_reply(s, 1, h1, 2, false, NULL), 0);
    assert_int_equal(vmlet_spdy_reply(s, 3, h2, 1, false, NULL), 0);
    const uint8_t *p = vmlet_spdy_pending(s, &len);
    char args[8192] = "";
    for (size_t off = 0; off < len;) {
        spdy_head_t h;
        spdy_head_parse(p + off, &h);
        assert_true(h.control && h.type == SPDY_SYN_REPLY);
        char *hex = s_hex(p + off + 12, h.length - 4);
        strcat(strcat(args, " "), hex);
        free(hex);
        off += 8 + h.length;
    }
    char *decoded = s_python("decompress", args);
    assert_non_null(decoded);
    assert_string_equal(decoded, "status=200;version=HTTP/1.1\nx-multi=one|two\n");
    free(decoded);
    spdy_buf_free(&in);
    vmlet_spdy_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_dictionary),
        cmocka_unit_test(test_python_zlib),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
