// RFC 6455 frame headers, masking and the close/UTF-8 checks (see
// ws_frame.h).
#include "ws_frame.h"

static bool s_known_opcode(uint8_t op)
{
    return op <= VMLET_WS_OP_BINARY || (op >= VMLET_WS_OP_CLOSE && op <= VMLET_WS_OP_PONG);
}

static int s_bad(int *close_code, vmlet_err_t *err, const char *what)
{
    *close_code = VMLET_WS_CLOSE_PROTOCOL;
    return vmlet_err_set(err, "websocket frame: %s", what);
}

int vmlet_ws_frame_parse(const uint8_t *buf, size_t n, vmlet_ws_frame_t *f, int *close_code,
                         vmlet_err_t *err)
{
    if (n < 2)
        return 0;
    f->fin = buf[0] & 0x80;
    f->opcode = buf[0] & 0x0F;
    // No extension is ever negotiated, so a reserved bit means a broken or
    // hostile client (RFC 6455 5.2).
    if (buf[0] & 0x70)
        return s_bad(close_code, err, "reserved bits set without an extension");
    if (!s_known_opcode(f->opcode))
        return s_bad(close_code, err, "reserved opcode");
    // A server must close on an unmasked client frame (RFC 6455 5.1): the
    // mask is what keeps intermediaries from being poisoned.
    if (!(buf[1] & 0x80))
        return s_bad(close_code, err, "client frame not masked");
    uint8_t len7 = buf[1] & 0x7F;
    bool control = f->opcode & 0x8;
    if (control && (!f->fin || len7 > VMLET_WS_CONTROL_MAX))
        return s_bad(close_code, err, "control frame fragmented or longer than 125 bytes");
    size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    f->header_len = 2 + ext + 4;
    if (n < f->header_len)
        return 0;
    if (ext == 0) {
        f->len = len7;
    } else if (ext == 2) {
        f->len = (uint64_t)buf[2] << 8 | buf[3];
        if (f->len < 126)
            return s_bad(close_code, err, "16-bit length not in its shortest form");
    } else {
        f->len = 0;
        for (int i = 0; i < 8; i++)
            f->len = f->len << 8 | buf[2 + i];
        if (f->len >> 63)
            return s_bad(close_code, err, "64-bit length with its top bit set");
        if (f->len <= 0xFFFF)
            return s_bad(close_code, err, "64-bit length not in its shortest form");
    }
    for (int i = 0; i < 4; i++)
        f->mask[i] = buf[2 + ext + i];
    return 1;
}

size_t vmlet_ws_frame_header(uint8_t out[10], bool fin, uint8_t opcode, uint64_t len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

void vmlet_ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= mask[(offset + i) & 3];
}

bool vmlet_ws_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t more;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            more = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            more = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            more = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < more)
            return false;
        for (size_t k = 1; k <= more; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += more + 1;
    }
    return true;
}

bool vmlet_ws_close_code_ok(int code)
{
    // 1004, 1005, 1006 and 1015 are reserved for reporting, never sent.
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int vmlet_ws_close_parse(const uint8_t *p, size_t n, int *code, vmlet_err_t *err)
{
    if (n == 0) {
        *code = VMLET_WS_CLOSE_NO_STATUS;
        return 0;
    }
    if (n == 1)
        return vmlet_err_set(err, "websocket close: 1-byte payload has no room for a code");
    *code = p[0] << 8 | p[1];
    if (!vmlet_ws_close_code_ok(*code))
        return vmlet_err_set(err, "websocket close: code %d may not be sent", *code);
    if (!vmlet_ws_utf8_valid(p + 2, n - 2))
        return vmlet_err_set(err, "websocket close: reason is not UTF-8");
    return 0;
}
