// The server side of one WebSocket connection: a frame reader fed in
// pieces, message reassembly, the closing handshake and an output buffer
// (see ws_conn.h).
#include "ws_conn.h"

#include "ws_channel.h"
#include "ws_frame.h"

#include "vmlet/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The resize channel holds small objects; more than this without one
// complete is not a terminal size.
#define RESIZE_MAX 256

struct vmlet_ws_conn {
    const vmlet_ws_proto_t *proto;
    vmlet_ws_callbacks_t cb;
    void *arg;
    size_t max_message;
    vmlet_ws_state_t state;
    bool paused;
    vmlet_err_t err;

    // The frame being read: its header while incomplete, then its payload.
    uint8_t hdr[VMLET_WS_HEADER_MAX];
    size_t hdr_len;
    bool in_frame;
    vmlet_ws_frame_t frame;
    uint64_t frame_got;
    uint8_t ctrl[VMLET_WS_CONTROL_MAX];

    // The data message being reassembled from its fragments.
    bool in_message;
    uint8_t msg_opcode;
    uint8_t *msg;
    size_t msg_len, msg_cap;

    char resize[RESIZE_MAX];
    size_t resize_len;

    // Bytes for the socket: out[out_off .. out_len).
    uint8_t *out;
    size_t out_off, out_len, out_cap;
};

vmlet_ws_conn_t *vmlet_ws_conn_new(const vmlet_ws_proto_t *proto, size_t max_message,
                                   const vmlet_ws_callbacks_t *cb, void *arg)
{
    vmlet_ws_conn_t *self = vmlet_xcalloc(1, sizeof *self);
    self->proto = proto;
    self->cb = *cb;
    self->arg = arg;
    self->max_message = max_message ? max_message : VMLET_WS_MAX_MESSAGE_DEFAULT;
    return self;
}

void vmlet_ws_conn_destroy(vmlet_ws_conn_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmlet_ws_conn_t *self = *self_p;
    free(self->msg);
    free(self->out);
    free(self);
    *self_p = NULL;
}

// --- output ---

static void s_out_add(vmlet_ws_conn_t *self, const void *p, size_t n)
{
    if (self->out_off && self->out_off == self->out_len)
        self->out_off = self->out_len = 0;
    if (self->out_len + n > self->out_cap) {
        // Reclaim what was written before growing.
        if (self->out_off) {
            memmove(self->out, self->out + self->out_off, self->out_len - self->out_off);
            self->out_len -= self->out_off;
            self->out_off = 0;
        }
        size_t cap = self->out_cap ? self->out_cap : 4096;
        while (cap < self->out_len + n)
            cap *= 2;
        self->out = vmlet_xrealloc(self->out, cap);
        self->out_cap = cap;
    }
    if (n)
        memcpy(self->out + self->out_len, p, n);
    self->out_len += n;
}

static void s_out_frame(vmlet_ws_conn_t *self, uint8_t opcode, const void *p, size_t n)
{
    uint8_t hdr[10];
    s_out_add(self, hdr, vmlet_ws_frame_header(hdr, true, opcode, n));
    s_out_add(self, p, n);
}

static void s_out_close(vmlet_ws_conn_t *self, int code, const char *reason)
{
    uint8_t p[VMLET_WS_CONTROL_MAX];
    size_t n = 0;
    if (code != VMLET_WS_CLOSE_NO_STATUS) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        size_t r = reason ? strlen(reason) : 0;
        if (r > sizeof p - 2)
            r = sizeof p - 2; // a cut may split a UTF-8 sequence; our reasons are ASCII
        memcpy(p + 2, reason, r);
        n = 2 + r;
    }
    s_out_frame(self, VMLET_WS_OP_CLOSE, p, n);
}

const uint8_t *vmlet_ws_conn_pending(const vmlet_ws_conn_t *self, size_t *len)
{
    *len = self->out_len - self->out_off;
    return self->out + self->out_off;
}

void vmlet_ws_conn_written(vmlet_ws_conn_t *self, size_t n)
{
    if (n > self->out_len - self->out_off)
        n = self->out_len - self->out_off;
    self->out_off += n;
}

// --- ending ---

static void s_closed(vmlet_ws_conn_t *self, int code, const char *reason)
{
    self->state = VMLET_WS_CLOSED;
    if (self->cb.closed)
        self->cb.closed(self->arg, code, reason);
}

// Fails the connection (RFC 6455 7.1.7): a close with code, unless one
// went out already, and no more reading.
static void s_fail(vmlet_ws_conn_t *self, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_fail(vmlet_ws_conn_t *self, int code, const char *fmt, ...)
{
    if (self->state == VMLET_WS_CLOSED)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->err.msg, sizeof self->err.msg, fmt, ap);
    va_end(ap);
    if (self->state == VMLET_WS_OPEN)
        s_out_close(self, code, self->err.msg);
    s_closed(self, code, self->err.msg);
}

// --- input: messages ---

static void s_resize_bytes(vmlet_ws_conn_t *self, const uint8_t *p, size_t n)
{
    if (n > RESIZE_MAX - self->resize_len)
        return s_fail(self, VMLET_WS_CLOSE_INVALID_DATA, "resize channel: %zu bytes, no object",
                      self->resize_len + n);
    memcpy(self->resize + self->resize_len, p, n);
    self->resize_len += n;
    size_t used;
    while ((used = vmlet_ws_resize_split(self->resize, self->resize_len)) > 0) {
        uint16_t w, h;
        vmlet_err_t err = {0};
        if (vmlet_ws_parse_resize(self->resize, used, &w, &h, &err) < 0)
            return s_fail(self, VMLET_WS_CLOSE_INVALID_DATA, "%s", err.msg);
        memmove(self->resize, self->resize + used, self->resize_len - used);
        self->resize_len -= used;
        if (self->cb.resize)
            self->cb.resize(self->arg, w, h);
    }
}

static void s_dispatch(vmlet_ws_conn_t *self)
{
    if (self->msg_opcode == VMLET_WS_OP_TEXT && !vmlet_ws_utf8_valid(self->msg, self->msg_len))
        return s_fail(self, VMLET_WS_CLOSE_INVALID_DATA, "text message is not UTF-8");
    // Kubernetes skips empty messages; after our close, data is moot.
    if (self->msg_len == 0 || self->state != VMLET_WS_OPEN)
        return;
    uint8_t ch, *data;
    size_t n;
    vmlet_err_t err = {0};
    if (vmlet_ws_channel_decode(self->proto, self->msg, self->msg_len, &ch, &data, &n, &err) < 0)
        return s_fail(self, VMLET_WS_CLOSE_INVALID_DATA, "%s", err.msg);
    if (ch == VMLET_WS_CLOSE_STREAM && self->proto->version >= 5) {
        if (n != 1)
            return s_fail(self, VMLET_WS_CLOSE_INVALID_DATA,
                          "close-stream message has %zu bytes, want 1 (the channel)", n);
        if (self->cb.stream_closed)
            self->cb.stream_closed(self->arg, data[0]);
    } else if (ch == VMLET_WS_RESIZE) {
        s_resize_bytes(self, data, n);
    } else if (n > 0 && self->cb.data && self->cb.data(self->arg, ch, data, n) < 0) {
        s_fail(self, VMLET_WS_CLOSE_INTERNAL, "channel %u: the receiver failed", ch);
    }
}

static void s_control(vmlet_ws_conn_t *self)
{
    const vmlet_ws_frame_t *f = &self->frame;
    size_t n = (size_t)f->len;
    if (f->opcode == VMLET_WS_OP_PING) {
        // No frame may follow our close, not even a pong (RFC 6455 5.5.1).
        if (self->state == VMLET_WS_OPEN)
            s_out_frame(self, VMLET_WS_OP_PONG, self->ctrl, n);
        return;
    }
    if (f->opcode != VMLET_WS_OP_CLOSE)
        return; // an unsolicited pong is a heartbeat; nothing to do
    int code;
    vmlet_err_t err = {0};
    if (vmlet_ws_close_parse(self->ctrl, n, &code, &err) < 0)
        return s_fail(self, VMLET_WS_CLOSE_PROTOCOL, "%s", err.msg);
    char reason[VMLET_WS_CONTROL_MAX];
    size_t r = n > 2 ? n - 2 : 0;
    memcpy(reason, self->ctrl + 2, r);
    reason[r] = '\0';
    // Echo the client's code, as RFC 6455 5.5.1 suggests, unless our own
    // close went out first.
    if (self->state == VMLET_WS_OPEN)
        s_out_close(self, code, "");
    s_closed(self, code, reason);
}

// --- input: frames ---

// Checks a new frame against the message state; false if it failed the
// connection.
static bool s_frame_start(vmlet_ws_conn_t *self)
{
    const vmlet_ws_frame_t *f = &self->frame;
    if (f->opcode & 0x8)
        return true;
    if (f->opcode == VMLET_WS_OP_CONT && !self->in_message) {
        s_fail(self, VMLET_WS_CLOSE_PROTOCOL, "continuation frame without a message");
        return false;
    }
    if (f->opcode != VMLET_WS_OP_CONT && self->in_message) {
        s_fail(self, VMLET_WS_CLOSE_PROTOCOL, "new message before the last one's final frame");
        return false;
    }
    if (f->len > self->max_message - self->msg_len) {
        s_fail(self, VMLET_WS_CLOSE_TOO_BIG, "message over %zu bytes", self->max_message);
        return false;
    }
    if (f->opcode != VMLET_WS_OP_CONT) {
        self->in_message = true;
        self->msg_opcode = f->opcode;
        self->msg_len = 0;
    }
    size_t need = self->msg_len + (size_t)f->len;
    if (need > self->msg_cap) {
        size_t cap = self->msg_cap ? self->msg_cap : 1024;
        while (cap < need)
            cap *= 2;
        if (cap > self->max_message)
            cap = self->max_message;
        // Sized by the client, so checked rather than xrealloc'd.
        uint8_t *p = realloc(self->msg, cap);
        if (!p) {
            s_fail(self, VMLET_WS_CLOSE_INTERNAL, "no memory for a %zu-byte message", need);
            return false;
        }
        self->msg = p;
        self->msg_cap = cap;
    }
    return true;
}

static void s_frame_end(vmlet_ws_conn_t *self)
{
    self->in_frame = false;
    if (self->frame.opcode & 0x8)
        return s_control(self);
    self->msg_len += (size_t)self->frame.len;
    if (self->frame.fin) {
        self->in_message = false;
        s_dispatch(self);
        self->msg_len = 0;
    }
}

// Consumes header bytes; returns how many.
static size_t s_read_header(vmlet_ws_conn_t *self, const uint8_t *p, size_t n)
{
    size_t take = sizeof self->hdr - self->hdr_len;
    if (take > n)
        take = n;
    memcpy(self->hdr + self->hdr_len, p, take);
    int code = 0;
    vmlet_err_t err = {0};
    int r = vmlet_ws_frame_parse(self->hdr, self->hdr_len + take, &self->frame, &code, &err);
    if (r < 0) {
        s_fail(self, code, "%s", err.msg);
        return n;
    }
    if (r == 0) {
        self->hdr_len += take;
        return take;
    }
    size_t used = self->frame.header_len - self->hdr_len;
    self->hdr_len = 0;
    self->in_frame = true;
    self->frame_got = 0;
    if (!s_frame_start(self))
        return n;
    if (self->frame.len == 0)
        s_frame_end(self);
    return used;
}

static size_t s_read_payload(vmlet_ws_conn_t *self, const uint8_t *p, size_t n)
{
    uint64_t left = self->frame.len - self->frame_got;
    size_t take = left < n ? (size_t)left : n;
    uint8_t *dst = (self->frame.opcode & 0x8) ? self->ctrl + self->frame_got
                                              : self->msg + self->msg_len + self->frame_got;
    memcpy(dst, p, take);
    vmlet_ws_mask(dst, take, self->frame.mask, self->frame_got);
    self->frame_got += take;
    if (self->frame_got == self->frame.len)
        s_frame_end(self);
    return take;
}

size_t vmlet_ws_conn_feed(vmlet_ws_conn_t *self, const void *bytes, size_t len)
{
    const uint8_t *p = bytes;
    size_t used = 0;
    while (used < len && self->state != VMLET_WS_CLOSED && !self->paused) {
        if (self->in_frame)
            used += s_read_payload(self, p + used, len - used);
        else
            used += s_read_header(self, p + used, len - used);
    }
    // After the end nothing the client sends matters.
    return self->state == VMLET_WS_CLOSED ? len : used;
}

void vmlet_ws_conn_pause(vmlet_ws_conn_t *self, bool paused)
{
    self->paused = paused;
}

// --- sending ---

static int s_can_send(const vmlet_ws_conn_t *self, vmlet_err_t *err)
{
    if (self->state != VMLET_WS_OPEN)
        return vmlet_err_set(err, "websocket: connection is %s; nothing more may be sent",
                             self->state == VMLET_WS_CLOSING ? "closing" : "closed");
    return 0;
}

int vmlet_ws_conn_send(vmlet_ws_conn_t *self, uint8_t ch, const void *bytes, size_t len,
                       vmlet_err_t *err)
{
    if (s_can_send(self, err) < 0)
        return -1;
    const uint8_t *p = bytes;
    uint8_t op = self->proto->base64 ? VMLET_WS_OP_TEXT : VMLET_WS_OP_BINARY;
    size_t off = 0;
    do {
        size_t n = len - off < VMLET_WS_WRITE_CHUNK ? len - off : VMLET_WS_WRITE_CHUNK;
        size_t mlen;
        cleanup_free uint8_t *m = vmlet_ws_channel_encode(self->proto, ch, p + off, n, &mlen);
        if (!m)
            return vmlet_err_set(err, "websocket: %s cannot carry channel %u", self->proto->name,
                                 ch);
        s_out_frame(self, op, m, mlen);
        off += n;
    } while (off < len);
    return 0;
}

int vmlet_ws_conn_close_stream(vmlet_ws_conn_t *self, uint8_t ch, vmlet_err_t *err)
{
    if (s_can_send(self, err) < 0)
        return -1;
    if (self->proto->version < 5)
        return vmlet_err_set(err, "websocket: %s has no close-stream signal (v5 only)",
                             self->proto->name);
    uint8_t m[2] = {VMLET_WS_CLOSE_STREAM, ch};
    s_out_frame(self, VMLET_WS_OP_BINARY, m, sizeof m);
    return 0;
}

int vmlet_ws_conn_ping(vmlet_ws_conn_t *self, const void *payload, size_t len, vmlet_err_t *err)
{
    if (s_can_send(self, err) < 0)
        return -1;
    if (len > VMLET_WS_CONTROL_MAX)
        return vmlet_err_set(err, "websocket: ping payload %zu bytes, at most 125", len);
    s_out_frame(self, VMLET_WS_OP_PING, payload, len);
    return 0;
}

int vmlet_ws_conn_send_close(vmlet_ws_conn_t *self, int code, const char *reason, vmlet_err_t *err)
{
    if (s_can_send(self, err) < 0)
        return -1;
    if (!vmlet_ws_close_code_ok(code))
        return vmlet_err_set(err, "websocket: close code %d may not be sent", code);
    s_out_close(self, code, reason);
    self->state = VMLET_WS_CLOSING;
    return 0;
}

vmlet_ws_state_t vmlet_ws_conn_state(const vmlet_ws_conn_t *self)
{
    return self->state;
}

const char *vmlet_ws_conn_error(const vmlet_ws_conn_t *self)
{
    return self->err.msg;
}
