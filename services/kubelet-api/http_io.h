// HTTP/1.1 over one blocking TLS connection: the request head, query
// parameters, and the answers the kubelet gives (plain-text errors, chunked
// streams).
#ifndef VMLET_KAPI_HTTP_IO_H
#define VMLET_KAPI_HTTP_IO_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#define HTTP_HEAD_MAX 16384
#define HTTP_FIELDS_MAX 64

typedef struct {
    char *name, *value;
} http_field_t;

typedef struct {
    char raw[HTTP_HEAD_MAX + 1]; // the head, cut into the strings below
    char *method, *path, *query; // path percent-decoded; query raw ("" if none)
    http_field_t headers[HTTP_FIELDS_MAX];
    size_t n_headers;
    // Bytes read past the head (the start of a body or of an upgraded stream).
    char extra[HTTP_HEAD_MAX];
    size_t n_extra;
} http_request_t;

// Reads and parses a request head within timeout_ms. Returns 0; -1 when the
// client went away or sent nothing usable (then *status says what to
// answer, 0 for nothing).
int http_read_request(SSL *ssl, int fd, int timeout_ms, http_request_t *req, int *status);

// A header's value (case-insensitive name), or NULL.
const char *http_header(const http_request_t *req, const char *name);
// Whether a comma-separated header contains token (case-insensitive).
bool http_header_has(const http_request_t *req, const char *name, const char *token);

// A query parameter's decoded value into out, the n-th with that name
// (0-based); false if absent. Repeated names are how `command` comes.
bool http_query(const http_request_t *req, const char *name, int n, char *out, size_t cap);
// Booleans as the kubelet parses them ("true", "1"); absent = false.
bool http_query_bool(const http_request_t *req, const char *name);

// Writes all of data; false when the client is gone.
bool http_write(SSL *ssl, const void *data, size_t len);
// A complete answer with a text body (the kubelet's errors are text).
bool http_respond(SSL *ssl, int status, const char *content_type, const char *body);
bool http_respondf(SSL *ssl, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// A streamed answer: the head with Transfer-Encoding: chunked, then chunks,
// then the end.
bool http_chunked_start(SSL *ssl, int status, const char *content_type);
bool http_chunk(SSL *ssl, const void *data, size_t len);
bool http_chunked_end(SSL *ssl);

#endif
