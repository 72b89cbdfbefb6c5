// A fast loopback HTTP/1.1 server for tests and the probe benchmark: one
// epoll thread inside the test process (thousands of requests a second on
// one core). The test says per path how to answer (status, delay,
// Location, body, never, or hang up) and reads back every request it got
// (method, path, headers, arrival time), to count probes per path and
// their spacing. Each connection serves one request and is closed, as a
// probe's is. Test code only.
#ifndef VMLET_TS_HTTP_TARGET_H
#define VMLET_TS_HTTP_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _ts_http_target_t ts_http_target_t;

// How to answer requests to one path. Zero is "200, body ok".
typedef struct {
    int status;           // 0 = 200
    int delay_ms;         // wait this long before answering
    const char *location; // a Location header, for redirects (copied)
    const char *body;     // NULL = "ok" (copied)
    size_t body_size;     // > 0: a body of this many 'x' bytes instead
    bool never_answer;    // read the request, keep the connection, never answer
    bool hang_up;         // read the request and close without an answer
    bool stall_body;      // send the head and half the body, then nothing more
} ts_http_route_t;

// One request as it arrived.
typedef struct {
    char *method;
    char *path;         // as sent, query included
    char *headers;      // the raw header lines, "Name: value\r\n" each
    int64_t arrival_us; // CLOCK_MONOTONIC (ts_mono_us) when its header was complete
} ts_http_request_t;

// Starts it on 127.0.0.1 and a kernel-chosen port. NULL on failure (it
// says why on stderr).
ts_http_target_t *ts_http_target_start(void);
int ts_http_target_port(const ts_http_target_t *self);
// Stops the thread, closes every connection, frees all. Safe with NULL.
void ts_http_target_stop(ts_http_target_t **self_p);

// Sets how path (without query) is answered from now on; NULL route goes
// back to the default.
void ts_http_target_route(ts_http_target_t *self, const char *path, const ts_http_route_t *route);

// Requests received for path (compared without the query; NULL = all).
size_t ts_http_target_count(ts_http_target_t *self, const char *path);
// Copies of those requests in arrival order into *out (free with
// ts_http_requests_free); returns how many.
size_t ts_http_target_requests(ts_http_target_t *self, const char *path, ts_http_request_t **out);
void ts_http_requests_free(ts_http_request_t *reqs, size_t n);
// Forgets the requests received so far.
void ts_http_target_clear(ts_http_target_t *self);
// Connections open now (never-answered ones included).
size_t ts_http_target_open_connections(ts_http_target_t *self);

// The value of header `name` (any case) in a request; malloc'd, or NULL.
// With several, the n-th (0-based) with ts_http_request_header_n.
char *ts_http_request_header(const ts_http_request_t *req, const char *name);
char *ts_http_request_header_n(const ts_http_request_t *req, const char *name, int n);

// Monotonic microseconds, the clock of arrival_us.
int64_t ts_mono_us(void);

#endif
