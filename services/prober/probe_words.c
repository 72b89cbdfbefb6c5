// Pure functions of the probe runner: Go's spellings and the health
// protobuf messages (see probe_words.h).
#include "probe_words.h"

#include "vmlet/xalloc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- the growable string ---

static void s_reserve(probe_buf_t *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->p = vmlet_xrealloc(b->p, cap);
    b->cap = cap;
}

void probe_buf_reset(probe_buf_t *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

void probe_buf_add(probe_buf_t *b, const void *data, size_t n)
{
    s_reserve(b, n);
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

char *probe_buf_grow(probe_buf_t *b, size_t n)
{
    s_reserve(b, n);
    char *start = b->p + b->len;
    b->len += n;
    b->p[b->len] = '\0';
    return start;
}

void probe_buf_puts(probe_buf_t *b, const char *s)
{
    probe_buf_add(b, s, strlen(s));
}

void probe_buf_vprintf(probe_buf_t *b, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    s_reserve(b, 128);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    if (n > 0 && (size_t)n >= b->cap - b->len) {
        s_reserve(b, (size_t)n);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, again);
    }
    va_end(again);
    if (n > 0)
        b->len += (size_t)n;
    b->p[b->len] = '\0';
}

void probe_buf_printf(probe_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    probe_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

const char *probe_buf_str(const probe_buf_t *b)
{
    return b->p ? b->p : "";
}

void probe_buf_free(probe_buf_t *b)
{
    free(b->p);
    *b = (probe_buf_t){0};
}

// --- Go's spellings ---

void probe_go_duration(probe_buf_t *out, int64_t ms)
{
    if (ms < 0) {
        probe_buf_puts(out, "-");
        ms = -ms;
    }
    if (ms == 0) {
        probe_buf_puts(out, "0s");
        return;
    }
    if (ms < 1000) {
        probe_buf_printf(out, "%lldms", (long long)ms);
        return;
    }
    int64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    if (h)
        probe_buf_printf(out, "%lldh", (long long)h);
    if (h || m)
        probe_buf_printf(out, "%lldm", (long long)m);
    probe_buf_printf(out, "%lld", (long long)s);
    if (frac) {
        char digits[8];
        snprintf(digits, sizeof digits, ".%03lld", (long long)frac);
        size_t n = strlen(digits);
        while (digits[n - 1] == '0') // Go trims trailing zeros: 1.5s, not 1.500s
            digits[--n] = '\0';
        probe_buf_puts(out, digits);
    }
    probe_buf_puts(out, "s");
}

void probe_join_host_port(probe_buf_t *out, const char *host, int port)
{
    if (strchr(host, ':'))
        probe_buf_printf(out, "[%s]:%d", host, port);
    else
        probe_buf_printf(out, "%s:%d", host, port);
}

static bool s_is_hex(char c)
{
    return isxdigit((unsigned char)c);
}

// Appends s, %-escaping what a URL cannot carry. In the path (before '?')
// also the characters Go's url.URL escapes there.
static void s_escape(probe_buf_t *out, const char *s, bool in_path)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const char *c = s; *c; c++) {
        unsigned char u = (unsigned char)*c;
        bool esc = u <= 0x20 || u >= 0x7f || (*c == '%' && !(s_is_hex(c[1]) && s_is_hex(c[2]))) ||
                   (in_path && strchr("\"<>\\^`{|}", *c));
        if (*c == '?')
            in_path = false;
        if (esc) {
            char e[3] = {'%', hex[u >> 4], hex[u & 15]};
            probe_buf_add(out, e, 3);
        } else {
            probe_buf_add(out, c, 1);
        }
    }
}

void probe_format_url(probe_buf_t *out, const char *scheme, const char *host, int port,
                      const char *path)
{
    probe_buf_printf(out, "%s://", scheme);
    if (strchr(host, ':')) { // an IPv6 literal; a zone's '%' is escaped in a URL
        probe_buf_puts(out, "[");
        for (const char *c = host; *c; c++)
            probe_buf_puts(out, *c == '%' ? "%25" : (char[]){*c, '\0'});
        probe_buf_printf(out, "]:%d", port);
    } else {
        probe_buf_printf(out, "%s:%d", host, port);
    }
    if (!path || !*path)
        return;
    if (path[0] != '/' && path[0] != '?')
        probe_buf_puts(out, "/");
    s_escape(out, path, true);
}

static bool s_token_char(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

bool probe_header_name_valid(const char *name)
{
    if (!name || !*name)
        return false;
    for (const char *c = name; *c; c++)
        if (!s_token_char((unsigned char)*c))
            return false;
    return true;
}

bool probe_header_value_valid(const char *value)
{
    for (const char *c = value; c && *c; c++) {
        unsigned char u = (unsigned char)*c;
        if ((u < 0x20 && u != '\t') || u == 0x7f)
            return false;
    }
    return true;
}

void probe_canonical_header(probe_buf_t *out, const char *name)
{
    bool upper = true;
    for (const char *c = name; *c; c++) {
        char ch = upper ? (char)toupper((unsigned char)*c) : (char)tolower((unsigned char)*c);
        probe_buf_add(out, &ch, 1);
        upper = *c == '-';
    }
}

void probe_errno_words(probe_buf_t *out, int errnum)
{
    // glibc's messages are Go's with a capital first letter.
    const char *text = strerrordesc_np(errnum);
    if (!text) {
        probe_buf_printf(out, "errno %d", errnum);
        return;
    }
    size_t start = out->len;
    probe_buf_puts(out, text);
    out->p[start] = (char)tolower((unsigned char)out->p[start]);
}

void probe_grpc_code_name(probe_buf_t *out, int code)
{
    static const char *const names[] = {
        "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
        "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
        "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
        "DataLoss", "Unauthenticated"};
    if (code >= 0 && (size_t)code < sizeof names / sizeof names[0])
        probe_buf_puts(out, names[code]);
    else
        probe_buf_printf(out, "Code(%d)", code);
}

void probe_health_status_name(probe_buf_t *out, long status)
{
    static const char *const names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
    if (status >= 0 && (size_t)status < sizeof names / sizeof names[0])
        probe_buf_puts(out, names[status]);
    else
        probe_buf_printf(out, "%ld", status);
}

static int s_hex_value(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

void probe_percent_decode(probe_buf_t *b)
{
    if (!b->p)
        return;
    size_t w = 0;
    for (size_t r = 0; r < b->len; r++) {
        if (b->p[r] == '%' && r + 2 < b->len && s_is_hex(b->p[r + 1]) && s_is_hex(b->p[r + 2])) {
            b->p[w++] = (char)(s_hex_value(b->p[r + 1]) * 16 + s_hex_value(b->p[r + 2]));
            r += 2;
        } else {
            b->p[w++] = b->p[r];
        }
    }
    b->len = w;
    b->p[w] = '\0';
}

// --- the health messages (grpc.health.v1, proto3) ---

static void s_varint(probe_buf_t *out, uint64_t v)
{
    do {
        uint8_t byte = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            byte |= 0x80;
        probe_buf_add(out, &byte, 1);
    } while (v);
}

void probe_grpc_frame_request(probe_buf_t *out, const char *service)
{
    // HealthCheckRequest { string service = 1; }: an empty string is the
    // default and is not written.
    probe_buf_reset(out);
    uint8_t prefix[5] = {0}; // uncompressed, length filled in below
    probe_buf_add(out, prefix, sizeof prefix);
    size_t n = service ? strlen(service) : 0;
    if (n) {
        uint8_t tag = 1 << 3 | 2; // field 1, length-delimited
        probe_buf_add(out, &tag, 1);
        s_varint(out, n);
        probe_buf_add(out, service, n);
    }
    uint32_t len = (uint32_t)(out->len - 5);
    out->p[1] = (char)(len >> 24);
    out->p[2] = (char)(len >> 16);
    out->p[3] = (char)(len >> 8);
    out->p[4] = (char)len;
}

// Reads a varint at *pos; -1 when it runs past end or past 64 bits.
static int s_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len)
            return -1;
        uint8_t byte = p[(*pos)++];
        *v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80))
            return 0;
    }
    return -1;
}

int probe_grpc_parse_response(const uint8_t *body, size_t len, long *status, const char **why)
{
    if (len < 5) {
        *why = len ? "grpc: truncated message header" : "no response message";
        return -1;
    }
    if (body[0] != 0) {
        *why = "grpc: compressed message, and none was asked for";
        return -1;
    }
    size_t msg_len = (size_t)body[1] << 24 | (size_t)body[2] << 16 | (size_t)body[3] << 8 | body[4];
    if (msg_len != len - 5) {
        *why =
            msg_len > len - 5 ? "grpc: truncated message" : "grpc: more than one response message";
        return -1;
    }
    const uint8_t *m = body + 5;
    size_t pos = 0;
    *status = 0;
    while (pos < msg_len) {
        uint64_t key, v;
        if (s_read_varint(m, msg_len, &pos, &key) < 0)
            goto bad;
        switch (key & 7) {
        case 0: // varint
            if (s_read_varint(m, msg_len, &pos, &v) < 0)
                goto bad;
            if (key >> 3 == 1)
                *status = (long)(int32_t)v; // an enum is an int32
            break;
        case 1: // 64-bit
            if (msg_len - pos < 8)
                goto bad;
            pos += 8;
            break;
        case 2: // length-delimited
            if (s_read_varint(m, msg_len, &pos, &v) < 0 || v > msg_len - pos)
                goto bad;
            pos += v;
            break;
        case 5: // 32-bit
            if (msg_len - pos < 4)
                goto bad;
            pos += 4;
            break;
        default:
            goto bad;
        }
    }
    return 0;
bad:
    *why = "grpc: failed to unmarshal the received message: not a HealthCheckResponse";
    return -1;
}
