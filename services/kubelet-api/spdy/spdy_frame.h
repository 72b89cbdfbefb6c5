// SPDY/3 wire format: frame heads, the fixed-size control frames and frame
// builders, as pure functions over byte buffers (no zlib, no state).
#ifndef VMLET_SPDY_FRAME_H
#define VMLET_SPDY_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPDY_VERSION 3
#define SPDY_HEAD_LEN 8
#define SPDY_MAX_LENGTH 0xffffffu // 24-bit length field
#define SPDY_MAX_STREAM_ID 0x7fffffffu
#define SPDY_MAX_WINDOW 0x7fffffff // windows are 31-bit
#define SPDY_DEFAULT_WINDOW 65536

enum spdy_type {
    SPDY_SYN_STREAM = 1,
    SPDY_SYN_REPLY = 2,
    SPDY_RST_STREAM = 3,
    SPDY_SETTINGS = 4,
    SPDY_PING = 6,
    SPDY_GOAWAY = 7,
    SPDY_HEADERS = 8,
    SPDY_WINDOW_UPDATE = 9,
};

#define SPDY_FLAG_FIN 0x01
#define SPDY_FLAG_UNIDIRECTIONAL 0x02
#define SPDY_SETTINGS_INITIAL_WINDOW_SIZE 7
#define SPDY_SETTINGS_MAX_CONCURRENT_STREAMS 4

// RST_STREAM status codes (SPDY/3 §2.6.3).
enum spdy_rst_status {
    SPDY_PROTOCOL_ERROR = 1,
    SPDY_INVALID_STREAM = 2,
    SPDY_REFUSED_STREAM = 3,
    SPDY_UNSUPPORTED_VERSION = 4,
    SPDY_CANCEL = 5,
    SPDY_INTERNAL_ERROR = 6,
    SPDY_FLOW_CONTROL_ERROR = 7,
    SPDY_STREAM_IN_USE = 8,
    SPDY_STREAM_ALREADY_CLOSED = 9,
    SPDY_FRAME_TOO_LARGE = 11,
};

// GOAWAY status codes (SPDY/3 §2.6.6).
enum spdy_goaway_status {
    SPDY_GOAWAY_OK = 0,
    SPDY_GOAWAY_PROTOCOL_ERROR = 1,
    SPDY_GOAWAY_INTERNAL_ERROR = 2,
};

// A growable byte buffer with a read offset, so output can be drained from
// the front without moving bytes on every write.
typedef struct {
    uint8_t *p;
    size_t off, len, cap; // pending bytes are p[off .. len)
} spdy_buf_t;

void spdy_buf_add(spdy_buf_t *b, const void *data, size_t n);
// Room for n more bytes at the end; the caller fills them and adds n to len.
uint8_t *spdy_buf_reserve(spdy_buf_t *b, size_t n);
void spdy_buf_drop(spdy_buf_t *b, size_t n); // n <= pending
size_t spdy_buf_pending(const spdy_buf_t *b);
void spdy_buf_free(spdy_buf_t *b);

// The 8 bytes every frame starts with.
typedef struct {
    bool control;
    uint16_t version;   // control frames only
    uint16_t type;      // control frames only
    uint32_t stream_id; // data frames only
    uint8_t flags;
    uint32_t length; // of the payload after the head
} spdy_head_t;

void spdy_head_parse(const uint8_t p[SPDY_HEAD_LEN], spdy_head_t *h);
uint32_t spdy_get32(const uint8_t *p);

// One SETTINGS entry.
typedef struct {
    uint8_t flags;
    uint32_t id; // 24 bits
    uint32_t value;
} spdy_setting_t;

// Payload parsers for the fixed-layout control frames: 0, or -1 when the
// length is wrong for the type (the caller turns that into a session error).
int spdy_parse_rst(const uint8_t *p, size_t len, uint32_t *stream_id, uint32_t *status);
int spdy_parse_ping(const uint8_t *p, size_t len, uint32_t *id);
int spdy_parse_goaway(const uint8_t *p, size_t len, uint32_t *last_id, uint32_t *status);
int spdy_parse_window_update(const uint8_t *p, size_t len, uint32_t *stream_id, uint32_t *delta);
// The number of entries, or -1 when the count does not match the length.
// Entry i (< count) is read with spdy_settings_entry.
long spdy_parse_settings(const uint8_t *p, size_t len);
void spdy_settings_entry(const uint8_t *p, size_t i, spdy_setting_t *s);

// Builders: each appends one whole frame to b. Header blocks are already
// compressed (spdy_headers.h); data longer than SPDY_MAX_LENGTH is the
// caller's bug and is asserted.
void spdy_put_syn_stream(spdy_buf_t *b, uint32_t id, uint32_t assoc_id, uint8_t pri, uint8_t flags,
                         const uint8_t *block, size_t block_len);
void spdy_put_syn_reply(spdy_buf_t *b, uint32_t id, uint8_t flags, const uint8_t *block,
                        size_t block_len);
void spdy_put_headers(spdy_buf_t *b, uint32_t id, uint8_t flags, const uint8_t *block,
                      size_t block_len);
void spdy_put_rst(spdy_buf_t *b, uint32_t id, uint32_t status);
void spdy_put_settings(spdy_buf_t *b, uint8_t flags, const spdy_setting_t *s, size_t n);
void spdy_put_ping(spdy_buf_t *b, uint32_t id);
void spdy_put_goaway(spdy_buf_t *b, uint32_t last_id, uint32_t status);
void spdy_put_window_update(spdy_buf_t *b, uint32_t id, uint32_t delta);
void spdy_put_data(spdy_buf_t *b, uint32_t id, uint8_t flags, const uint8_t *data, size_t len);

#endif
