// SPDY/3 wire format (see spdy_frame.h): big-endian fields, 8-byte heads.
#include "spdy_frame.h"

#include "vmlet/xalloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

// --- the buffer ---

uint8_t *spdy_buf_reserve(spdy_buf_t *b, size_t n)
{
    if (b->off && b->off == b->len)
        b->off = b->len = 0; // drained: reuse from the start
    if (b->len + n > b->cap) {
        if (b->off) { // slide pending bytes down before growing
            memmove(b->p, b->p + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        if (cap != b->cap) {
            b->p = vmlet_xrealloc(b->p, cap);
            b->cap = cap;
        }
    }
    return b->p + b->len;
}

void spdy_buf_add(spdy_buf_t *b, const void *data, size_t n)
{
    uint8_t *at = spdy_buf_reserve(b, n);
    if (n)
        memcpy(at, data, n);
    b->len += n;
}

void spdy_buf_drop(spdy_buf_t *b, size_t n)
{
    assert(n <= b->len - b->off);
    b->off += n;
    if (b->off == b->len)
        b->off = b->len = 0;
}

size_t spdy_buf_pending(const spdy_buf_t *b)
{
    return b->len - b->off;
}

void spdy_buf_free(spdy_buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

// --- parsing ---

uint32_t spdy_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void spdy_head_parse(const uint8_t p[SPDY_HEAD_LEN], spdy_head_t *h)
{
    memset(h, 0, sizeof *h);
    h->control = p[0] & 0x80;
    if (h->control) {
        h->version = (uint16_t)((p[0] & 0x7f) << 8 | p[1]);
        h->type = (uint16_t)(p[2] << 8 | p[3]);
    } else {
        h->stream_id = spdy_get32(p) & SPDY_MAX_STREAM_ID;
    }
    h->flags = p[4];
    h->length = spdy_get32(p + 4) & SPDY_MAX_LENGTH;
}

int spdy_parse_rst(const uint8_t *p, size_t len, uint32_t *stream_id, uint32_t *status)
{
    if (len != 8)
        return -1;
    *stream_id = spdy_get32(p) & SPDY_MAX_STREAM_ID;
    *status = spdy_get32(p + 4);
    return 0;
}

int spdy_parse_ping(const uint8_t *p, size_t len, uint32_t *id)
{
    if (len != 4)
        return -1;
    *id = spdy_get32(p);
    return 0;
}

int spdy_parse_goaway(const uint8_t *p, size_t len, uint32_t *last_id, uint32_t *status)
{
    if (len != 8)
        return -1;
    *last_id = spdy_get32(p) & SPDY_MAX_STREAM_ID;
    *status = spdy_get32(p + 4);
    return 0;
}

int spdy_parse_window_update(const uint8_t *p, size_t len, uint32_t *stream_id, uint32_t *delta)
{
    if (len != 8)
        return -1;
    *stream_id = spdy_get32(p) & SPDY_MAX_STREAM_ID;
    *delta = spdy_get32(p + 4) & 0x7fffffffu; // the top bit is reserved
    return 0;
}

long spdy_parse_settings(const uint8_t *p, size_t len)
{
    if (len < 4)
        return -1;
    uint32_t n = spdy_get32(p);
    // Compare without multiplying: n * 8 could overflow on a hostile count.
    if ((len - 4) % 8 != 0 || n != (len - 4) / 8)
        return -1;
    return (long)n;
}

void spdy_settings_entry(const uint8_t *p, size_t i, spdy_setting_t *s)
{
    const uint8_t *e = p + 4 + 8 * i;
    s->flags = e[0];
    s->id = spdy_get32(e) & 0xffffffu;
    s->value = spdy_get32(e + 4);
}

// --- building ---

static uint8_t *s_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

// Appends a control frame head plus room for `len` payload bytes; returns
// where the payload goes.
static uint8_t *s_control(spdy_buf_t *b, uint16_t type, uint8_t flags, size_t len)
{
    assert(len <= SPDY_MAX_LENGTH);
    uint8_t *p = spdy_buf_reserve(b, SPDY_HEAD_LEN + len);
    s_put32(p, 0x80000000u | (uint32_t)SPDY_VERSION << 16 | type);
    s_put32(p + 4, (uint32_t)flags << 24 | (uint32_t)len);
    b->len += SPDY_HEAD_LEN + len;
    return p + SPDY_HEAD_LEN;
}

void spdy_put_syn_stream(spdy_buf_t *b, uint32_t id, uint32_t assoc_id, uint8_t pri, uint8_t flags,
                         const uint8_t *block, size_t block_len)
{
    uint8_t *p = s_control(b, SPDY_SYN_STREAM, flags, 10 + block_len);
    p = s_put32(p, id & SPDY_MAX_STREAM_ID);
    p = s_put32(p, assoc_id & SPDY_MAX_STREAM_ID);
    *p++ = (uint8_t)(pri << 5);
    *p++ = 0; // credential slot: unused since SPDY/3.1 dropped CREDENTIAL
    if (block_len)
        memcpy(p, block, block_len);
}

static void s_id_block(spdy_buf_t *b, uint16_t type, uint32_t id, uint8_t flags,
                       const uint8_t *block, size_t block_len)
{
    uint8_t *p = s_control(b, type, flags, 4 + block_len);
    p = s_put32(p, id & SPDY_MAX_STREAM_ID);
    if (block_len)
        memcpy(p, block, block_len);
}

void spdy_put_syn_reply(spdy_buf_t *b, uint32_t id, uint8_t flags, const uint8_t *block,
                        size_t block_len)
{
    s_id_block(b, SPDY_SYN_REPLY, id, flags, block, block_len);
}

void spdy_put_headers(spdy_buf_t *b, uint32_t id, uint8_t flags, const uint8_t *block,
                      size_t block_len)
{
    s_id_block(b, SPDY_HEADERS, id, flags, block, block_len);
}

static void s_two_words(spdy_buf_t *b, uint16_t type, uint32_t a, uint32_t c)
{
    uint8_t *p = s_control(b, type, 0, 8);
    s_put32(s_put32(p, a), c);
}

void spdy_put_rst(spdy_buf_t *b, uint32_t id, uint32_t status)
{
    s_two_words(b, SPDY_RST_STREAM, id & SPDY_MAX_STREAM_ID, status);
}

void spdy_put_goaway(spdy_buf_t *b, uint32_t last_id, uint32_t status)
{
    s_two_words(b, SPDY_GOAWAY, last_id & SPDY_MAX_STREAM_ID, status);
}

void spdy_put_window_update(spdy_buf_t *b, uint32_t id, uint32_t delta)
{
    s_two_words(b, SPDY_WINDOW_UPDATE, id & SPDY_MAX_STREAM_ID, delta & 0x7fffffffu);
}

void spdy_put_ping(spdy_buf_t *b, uint32_t id)
{
    s_put32(s_control(b, SPDY_PING, 0, 4), id);
}

void spdy_put_settings(spdy_buf_t *b, uint8_t flags, const spdy_setting_t *s, size_t n)
{
    uint8_t *p = s_control(b, SPDY_SETTINGS, flags, 4 + 8 * n);
    p = s_put32(p, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        p = s_put32(p, (uint32_t)s[i].flags << 24 | (s[i].id & 0xffffffu));
        p = s_put32(p, s[i].value);
    }
}

void spdy_put_data(spdy_buf_t *b, uint32_t id, uint8_t flags, const uint8_t *data, size_t len)
{
    assert(len <= SPDY_MAX_LENGTH);
    uint8_t *p = spdy_buf_reserve(b, SPDY_HEAD_LEN + len);
    s_put32(p, id & SPDY_MAX_STREAM_ID);
    s_put32(p + 4, (uint32_t)flags << 24 | (uint32_t)len);
    if (len)
        memcpy(p + SPDY_HEAD_LEN, data, len);
    b->len += SPDY_HEAD_LEN + len;
}
