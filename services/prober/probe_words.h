// Pure functions of the probe runner: a growable string, Go's spellings the
// kubelet's probe outputs are made of (durations, URLs, dial errors,
// header names, gRPC codes) and the two grpc.health.v1 messages. No I/O,
// so tests/unit/test_probe_words.c can call each with a table.
#ifndef VMLET_PROBER_PROBE_WORDS_H
#define VMLET_PROBER_PROBE_WORDS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// A growable NUL-terminated string (also used for bytes). Zero is empty.
// Reset keeps the memory, so a buffer reused per probe stops allocating.
typedef struct {
    char *p;
    size_t len, cap;
} probe_buf_t;

void probe_buf_reset(probe_buf_t *b);
void probe_buf_add(probe_buf_t *b, const void *data, size_t n);
void probe_buf_puts(probe_buf_t *b, const char *s);
// Extends the string by n bytes (left for the caller to fill) and returns
// where they start.
char *probe_buf_grow(probe_buf_t *b, size_t n);
void probe_buf_printf(probe_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void probe_buf_vprintf(probe_buf_t *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
// The string ("" for a buffer never written).
const char *probe_buf_str(const probe_buf_t *b);
void probe_buf_free(probe_buf_t *b);

// Appends Go's time.Duration.String() of ms milliseconds: "500ms", "1s",
// "1.5s", "1m30s", "1h0m0s" (what the kubelet prints for a timeout).
void probe_go_duration(probe_buf_t *out, int64_t ms);

// Appends Go's net.JoinHostPort: "10.0.0.5:80", "[fd00::5]:80".
void probe_join_host_port(probe_buf_t *out, const char *host, int port);

// Appends the probe's URL as the kubelet forms and prints it
// (scheme://host:port + path, Go's url.URL.String()): a path without a
// leading '/' gets one; bytes a URL cannot carry (spaces, controls,
// non-ASCII, quotes...) and a '%' not starting an escape are %-escaped,
// which also makes it a URL libcurl takes. scheme is lower case.
void probe_format_url(probe_buf_t *out, const char *scheme, const char *host, int port,
                      const char *path);

// Go's httpguts.ValidHeaderFieldName (an RFC 7230 token) and
// ValidHeaderFieldValue (no control bytes but tab).
bool probe_header_name_valid(const char *name);
bool probe_header_value_valid(const char *value);
// Appends Go's textproto.CanonicalMIMEHeaderKey of a valid name
// ("x-request-id" -> "X-Request-Id").
void probe_canonical_header(probe_buf_t *out, const char *name);

// Appends Go's text for an errno ("connection refused").
void probe_errno_words(probe_buf_t *out, int errnum);

// Appends Go's codes.Code.String(): "NotFound", "Code(17)".
void probe_grpc_code_name(probe_buf_t *out, int code);
// Appends grpc.health.v1 ServingStatus names: "SERVING", "NOT_SERVING";
// an unknown value as its number, as protobuf-go prints it.
void probe_health_status_name(probe_buf_t *out, long status);

// Decodes %XX escapes in place (grpc-message is percent-encoded).
void probe_percent_decode(probe_buf_t *b);

// Sets out to a gRPC length-prefixed HealthCheckRequest{service}.
void probe_grpc_frame_request(probe_buf_t *out, const char *service);

// Parses a gRPC response body holding one uncompressed
// HealthCheckResponse. Returns 0 and sets *status (0 when the field is
// absent, as proto3 defaults it), or -1 and sets *why.
int probe_grpc_parse_response(const uint8_t *body, size_t len, long *status, const char **why);

#endif
