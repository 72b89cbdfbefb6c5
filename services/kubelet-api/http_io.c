// HTTP/1.1 over a blocking TLS connection (see http_io.h).
#include "http_io.h"

#include "vmlet/http_status.h"
#include "vmlet/timeutil.h"

#include <ctype.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int s_hex(int c)
{
    return isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1;
}

// Percent-decodes (and, for queries, '+' as space) in place; false on a bad escape.
static bool s_decode(char *s, bool plus_is_space)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '%') {
            int hi = s_hex((unsigned char)r[1]), lo = hi < 0 ? -1 : s_hex((unsigned char)r[2]);
            if (hi < 0 || lo < 0)
                return false;
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = plus_is_space && *r == '+' ? ' ' : *r;
        }
    }
    *w = '\0';
    return true;
}

static int s_parse(http_request_t *req, size_t head_len)
{
    req->raw[head_len] = '\0';
    char *save = NULL, *line = strtok_r(req->raw, "\r\n", &save);
    if (!line)
        return 400;
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return 400;
    *sp1 = *sp2 = '\0';
    req->method = line;
    req->path = sp1 + 1;
    char *q = strchr(req->path, '?');
    req->query = q ? q + 1 : "";
    if (q)
        *q = '\0';
    if (req->path[0] != '/' || !s_decode(req->path, false))
        return 400;
    while ((line = strtok_r(NULL, "\r\n", &save))) {
        char *colon = strchr(line, ':');
        if (!colon || req->n_headers == HTTP_FIELDS_MAX)
            return colon ? 431 : 400;
        *colon = '\0';
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        for (char *end = value + strlen(value); end > value && (end[-1] == ' ' || end[-1] == '\t');)
            *--end = '\0';
        req->headers[req->n_headers++] = (http_field_t){line, value};
    }
    return 0;
}

int http_read_request(SSL *ssl, int fd, int timeout_ms, http_request_t *req, int *status)
{
    memset(req, 0, sizeof *req);
    *status = 0;
    size_t len = 0;
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    for (;;) {
        char *end = len >= 4 ? memmem(req->raw, len, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t head = (size_t)(end - req->raw) + 4;
            req->n_extra = len - head;
            memcpy(req->extra, req->raw + head, req->n_extra);
            *status = s_parse(req, head - 2);
            return *status ? -1 : 0;
        }
        if (len == HTTP_HEAD_MAX) {
            *status = 431;
            return -1;
        }
        if (SSL_pending(ssl) == 0) {
            int left = (int)(deadline - vmlet_now_ms());
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (left <= 0 || poll(&p, 1, left) <= 0) {
                *status = len ? 408 : 0;
                return -1;
            }
        }
        int n = SSL_read(ssl, req->raw + len, (int)(HTTP_HEAD_MAX - len));
        if (n <= 0)
            return -1;
        len += (size_t)n;
    }
}

const char *http_header(const http_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

bool http_header_has(const http_request_t *req, const char *name, const char *token)
{
    size_t n = strlen(token);
    for (size_t i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) != 0)
            continue;
        for (const char *p = req->headers[i].value; *p;) {
            while (*p == ' ' || *p == ',')
                p++;
            const char *end = p + strcspn(p, ",");
            const char *trim = end;
            while (trim > p && trim[-1] == ' ')
                trim--;
            if ((size_t)(trim - p) == n && strncasecmp(p, token, n) == 0)
                return true;
            p = end;
        }
    }
    return false;
}

bool http_query(const http_request_t *req, const char *name, int n, char *out, size_t cap)
{
    size_t name_len = strlen(name);
    for (const char *p = req->query; *p;) {
        const char *end = p + strcspn(p, "&");
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *key_end = eq ? eq : end;
        if ((size_t)(key_end - p) == name_len && strncmp(p, name, name_len) == 0 && n-- == 0) {
            const char *v = eq ? eq + 1 : end;
            size_t vlen = (size_t)(end - v);
            if (vlen >= cap)
                return false;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return s_decode(out, true);
        }
        p = *end ? end + 1 : end;
    }
    return false;
}

bool http_query_bool(const http_request_t *req, const char *name)
{
    char v[16];
    return http_query(req, name, 0, v, sizeof v) && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

bool http_write(SSL *ssl, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        int n = SSL_write(ssl, p, len > (1 << 30) ? 1 << 30 : (int)len);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool http_respond(SSL *ssl, int status, const char *content_type, const char *body)
{
    char head[512];
    size_t n = strlen(body);
    int len = snprintf(head, sizeof head,
                       "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                       "Cache-Control: no-cache, private\r\nConnection: close\r\n\r\n",
                       status, vmlet_http_reason(status, "Status"), content_type, n);
    return http_write(ssl, head, (size_t)len) && http_write(ssl, body, n);
}

bool http_respondf(SSL *ssl, int status, const char *fmt, ...)
{
    char body[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    return http_respond(ssl, status, "text/plain; charset=utf-8", body);
}

bool http_chunked_start(SSL *ssl, int status, const char *content_type)
{
    char head[512];
    int len = snprintf(head, sizeof head,
                       "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n"
                       "Cache-Control: no-cache, private\r\nConnection: close\r\n\r\n",
                       status, vmlet_http_reason(status, "Status"), content_type);
    return http_write(ssl, head, (size_t)len);
}

bool http_chunk(SSL *ssl, const void *data, size_t len)
{
    if (len == 0)
        return true; // an empty chunk would end the body
    char size[24];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    return http_write(ssl, size, (size_t)n) && http_write(ssl, data, len) &&
           http_write(ssl, "\r\n", 2);
}

bool http_chunked_end(SSL *ssl)
{
    return http_write(ssl, "0\r\n\r\n", 5);
}
