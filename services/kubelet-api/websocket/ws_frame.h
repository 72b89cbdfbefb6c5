// RFC 6455 framing as pure functions: a frame header read from the bytes
// a client sent, a header for the frames a server sends, masking, and the
// checks on close frames and text. ws_conn.c drives these over a stream.
#ifndef VMLET_WS_FRAME_H
#define VMLET_WS_FRAME_H

#include "vmlet/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    VMLET_WS_OP_CONT = 0x0,
    VMLET_WS_OP_TEXT = 0x1,
    VMLET_WS_OP_BINARY = 0x2,
    VMLET_WS_OP_CLOSE = 0x8,
    VMLET_WS_OP_PING = 0x9,
    VMLET_WS_OP_PONG = 0xA,
};

// Close status codes (RFC 6455 7.4.1) this codec sends or reports.
enum {
    VMLET_WS_CLOSE_NORMAL = 1000,
    VMLET_WS_CLOSE_GOING_AWAY = 1001,
    VMLET_WS_CLOSE_PROTOCOL = 1002,
    VMLET_WS_CLOSE_NO_STATUS = 1005, // reported only: the peer's close had no code
    VMLET_WS_CLOSE_INVALID_DATA = 1007,
    VMLET_WS_CLOSE_TOO_BIG = 1009,
    VMLET_WS_CLOSE_INTERNAL = 1011,
};

// The largest header: 2 bytes, a 64-bit length and a mask.
#define VMLET_WS_HEADER_MAX 14
// Control frames carry at most this much (RFC 6455 5.5).
#define VMLET_WS_CONTROL_MAX 125

typedef struct {
    bool fin;
    uint8_t opcode;
    uint8_t mask[4];
    uint64_t len;      // payload length
    size_t header_len; // bytes the header took
} vmlet_ws_frame_t;

// Reads one client frame header from the n bytes at buf. Returns 1 with *f
// filled when the header is complete, 0 when more bytes are needed, and -1
// when the header breaks RFC 6455 for a client (reserved bits set, unknown
// opcode, unmasked, a fragmented or over-long control frame, a length not
// in its shortest form): err says why and *close_code is the code to fail
// the connection with (1002).
int vmlet_ws_frame_parse(const uint8_t *buf, size_t n, vmlet_ws_frame_t *f, int *close_code,
                         vmlet_err_t *err);

// Writes the header of an unmasked server frame into out; returns its
// length (2, 4 or 10).
size_t vmlet_ws_frame_header(uint8_t out[10], bool fin, uint8_t opcode, uint64_t len);

// XORs n bytes at p with the mask, p being at `offset` into the payload
// (so a payload can be unmasked in pieces as it arrives).
void vmlet_ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);

// True when the n bytes are well-formed UTF-8 (RFC 3629: no overlongs, no
// surrogates, nothing past U+10FFFF), as text frames must be.
bool vmlet_ws_utf8_valid(const uint8_t *p, size_t n);

// True for a code a peer may put on the wire (RFC 6455 7.4, IANA registry).
bool vmlet_ws_close_code_ok(int code);

// Reads a close frame's payload: *code is its status (1005 when empty) and
// the reason, UTF-8, starts at p + 2. Returns 0, or -1 with err set for a
// 1-byte payload, a code not allowed on the wire, or a reason not UTF-8.
int vmlet_ws_close_parse(const uint8_t *p, size_t n, int *code, vmlet_err_t *err);

#endif
