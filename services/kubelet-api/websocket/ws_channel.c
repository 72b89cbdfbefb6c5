// channel.k8s.io message payloads, the error channel's Status and the
// resize channel's objects (see ws_channel.h).
#include "ws_channel.h"

#include "vmlet/xalloc.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

uint8_t *vmlet_ws_channel_encode(const vmlet_ws_proto_t *proto, uint8_t ch, const void *data,
                                 size_t len, size_t *out_len)
{
    if (!proto->base64) {
        uint8_t *out = vmlet_xmalloc(len + 1);
        out[0] = ch;
        if (len)
            memcpy(out + 1, data, len);
        *out_len = len + 1;
        return out;
    }
    // EVP_EncodeBlock takes an int length; callers split writes far below.
    if (ch > VMLET_WS_BASE64_CHANNEL_MAX || len > (1u << 30))
        return NULL;
    size_t enc = (len + 2) / 3 * 4;
    uint8_t *out = vmlet_xmalloc(1 + enc + 1); // EVP_EncodeBlock adds a NUL
    out[0] = (uint8_t)('0' + ch);
    EVP_EncodeBlock(out + 1, data, (int)len);
    *out_len = 1 + enc;
    return out;
}

static int s_b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

// Go's base64.StdEncoding.Decode: padded standard alphabet, CR and LF
// skipped. Writes to out, which may be in (out never passes in's reader).
static int s_b64_decode(const uint8_t *in, size_t n, uint8_t *out, size_t *out_len)
{
    uint32_t acc = 0;
    size_t digits = 0, pad = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = in[i];
        if (c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            // Padding only in the last two places of a quad.
            if (digits % 4 < 2)
                return -1;
            pad++;
            digits++;
            acc <<= 6;
        } else {
            int v = s_b64_value(c);
            if (v < 0 || pad)
                return -1;
            acc = acc << 6 | (uint32_t)v;
            digits++;
        }
        if (digits % 4 == 0) {
            uint8_t b[3] = {(uint8_t)(acc >> 16), (uint8_t)(acc >> 8), (uint8_t)acc};
            for (size_t k = 0; k < 3 - pad; k++)
                out[w++] = b[k];
            acc = 0;
        }
    }
    if (digits % 4 != 0)
        return -1;
    *out_len = w;
    return 0;
}

int vmlet_ws_channel_decode(const vmlet_ws_proto_t *proto, uint8_t *msg, size_t len, uint8_t *ch,
                            uint8_t **data, size_t *data_len, vmlet_err_t *err)
{
    if (len == 0)
        return vmlet_err_set(err, "channel message: empty, no channel");
    *data = msg + 1;
    if (!proto->base64) {
        *ch = msg[0];
        *data_len = len - 1;
        return 0;
    }
    if (msg[0] < '0' || msg[0] > '0' + VMLET_WS_BASE64_CHANNEL_MAX)
        return vmlet_err_set(err, "channel message (%s): first byte 0x%02x is not a digit",
                             proto->name, msg[0]);
    *ch = (uint8_t)(msg[0] - '0');
    if (s_b64_decode(msg + 1, len - 1, msg + 1, data_len) < 0)
        return vmlet_err_set(err, "channel message (%s) for channel %u: payload is not base64",
                             proto->name, *ch);
    return 0;
}

// --- the error channel ---

// A JSON string body as Go's encoding/json writes it (HTML-safe escapes
// included, since that is what Marshal does).
static void s_json_escape(char *out, size_t cap, const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && w + 7 < cap; p++) {
        switch (*p) {
        case '"':
            w += (size_t)snprintf(out + w, cap - w, "\\\"");
            break;
        case '\\':
            w += (size_t)snprintf(out + w, cap - w, "\\\\");
            break;
        case '\n':
            w += (size_t)snprintf(out + w, cap - w, "\\n");
            break;
        case '\r':
            w += (size_t)snprintf(out + w, cap - w, "\\r");
            break;
        case '\t':
            w += (size_t)snprintf(out + w, cap - w, "\\t");
            break;
        default:
            if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&')
                w += (size_t)snprintf(out + w, cap - w, "\\u%04x", *p);
            else
                out[w++] = (char)*p;
        }
    }
    out[w] = '\0';
}

char *vmlet_ws_status_exit(const vmlet_ws_proto_t *proto, int exit_code, size_t *len)
{
    char *s;
    if (exit_code == 0) {
        if (proto->version < 4)
            return NULL; // v1 sends nothing for success
        s = vmlet_xstrdup("{\"metadata\":{},\"status\":\"Success\"}");
    } else if (proto->version < 4) {
        s = vmlet_xasprintf("command terminated with non-zero exit code: exit status %d",
                            exit_code);
    } else {
        // Go's os/exec ExitError reads "exit status N"; kubectl reads only
        // the ExitCode cause.
        s = vmlet_xasprintf("{\"metadata\":{},\"status\":\"Failure\","
                            "\"message\":\"command terminated with non-zero exit code: "
                            "exit status %d\",\"reason\":\"NonZeroExitCode\","
                            "\"details\":{\"causes\":[{\"reason\":\"ExitCode\","
                            "\"message\":\"%d\"}]}}",
                            exit_code, exit_code);
    }
    *len = strlen(s);
    return s;
}

char *vmlet_ws_status_internal(const vmlet_ws_proto_t *proto, const char *message, size_t *len)
{
    char *s;
    if (proto->version < 4) {
        s = vmlet_xasprintf("Internal error occurred: %s", message);
    } else {
        char esc[1024];
        s_json_escape(esc, sizeof esc, message);
        s = vmlet_xasprintf("{\"metadata\":{},\"status\":\"Failure\","
                            "\"message\":\"Internal error occurred: %s\","
                            "\"reason\":\"InternalError\","
                            "\"details\":{\"causes\":[{\"message\":\"%s\"}]},\"code\":500}",
                            esc, esc);
    }
    *len = strlen(s);
    return s;
}

// --- the resize channel ---

typedef struct {
    const char *p, *end;
} s_cursor_t;

static void s_blank(s_cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool s_eat(s_cursor_t *c, char ch)
{
    s_blank(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

// A string without escapes (keys here are plain words); *s/*n its body.
static bool s_string(s_cursor_t *c, const char **s, size_t *n)
{
    if (!s_eat(c, '"'))
        return false;
    *s = c->p;
    while (c->p < c->end && *c->p != '"' && *c->p != '\\')
        c->p++;
    if (c->p >= c->end || *c->p != '"')
        return false;
    *n = (size_t)(c->p - *s);
    c->p++;
    return true;
}

static bool s_uint16(s_cursor_t *c, uint16_t *v)
{
    s_blank(c);
    uint32_t n = 0;
    const char *start = c->p;
    while (c->p < c->end && isdigit((unsigned char)*c->p) && n <= 0xFFFF)
        n = n * 10 + (uint32_t)(*c->p++ - '0');
    if (c->p == start || n > 0xFFFF)
        return false;
    *v = (uint16_t)n;
    return true;
}

int vmlet_ws_parse_resize(const char *json, size_t len, uint16_t *width, uint16_t *height,
                          vmlet_err_t *err)
{
    s_cursor_t c = {json, json + len};
    *width = *height = 0;
    if (!s_eat(&c, '{'))
        return vmlet_err_set(err, "resize: not a JSON object");
    if (!s_eat(&c, '}')) {
        do {
            const char *key;
            size_t n;
            uint16_t v;
            if (!s_string(&c, &key, &n) || !s_eat(&c, ':'))
                return vmlet_err_set(err, "resize: want {\"Width\":N,\"Height\":N}");
            bool w = n == 5 && strncasecmp(key, "width", 5) == 0;
            bool h = n == 6 && strncasecmp(key, "height", 6) == 0;
            if (!(w || h))
                return vmlet_err_set(err, "resize: unknown key \"%.*s\"", (int)n, key);
            if (!s_uint16(&c, &v))
                return vmlet_err_set(err, "resize: %.*s is not an integer 0..65535", (int)n, key);
            *(w ? width : height) = v;
        } while (s_eat(&c, ','));
        if (!s_eat(&c, '}'))
            return vmlet_err_set(err, "resize: object not closed");
    }
    s_blank(&c);
    if (c.p != c.end)
        return vmlet_err_set(err, "resize: bytes after the object");
    return 0;
}

size_t vmlet_ws_resize_split(const char *buf, size_t len)
{
    int depth = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (ch == '\\')
                escaped = true;
            else if (ch == '"')
                in_string = false;
        } else if (ch == '"') {
            in_string = true;
        } else if (ch == '{') {
            depth++;
        } else if (ch == '}') {
            // A stray '}' ends an "object" the parser will then refuse.
            if (--depth <= 0)
                return i + 1;
        } else if (depth == 0 && ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            // Garbage before any '{': hand it over alone to be refused.
            return i + 1;
        }
    }
    return 0;
}
