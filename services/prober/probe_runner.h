// The probe runner: runs one httpGet, tcpSocket or grpc probe at a time,
// asynchronously on the caller's zloop, with the kubelet's semantics and
// its words for the outcome, and calls back exactly once.
//
//   probe_runner_t *r = probe_runner_new(loop, log, &err);
//   probe_target_t t = {.kind = PROBE_TARGET_HTTP, .host = "10.0.0.5", .port = 8080,
//                       .scheme = "HTTP", .path = "/healthz", .timeout_ms = 1000};
//   probe_runner_start(r, &t, on_done, ctx, &err);   // on_done(ctx, &outcome) later
//
// Everything happens on the loop's thread: libcurl's multi interface with
// its sockets and timer in one epoll set, which is the runner's only
// registration with the loop (one poller, no zloop timers). Each probe
// opens its own connection and closes it, as the kubelet does (keep-alive
// off); easy handles are reused from a free list. Names are resolved by
// libcurl's threaded resolver; IP literals need no resolver at all.
//
// Outcomes as the kubelet's pkg/probe and pkg/kubelet/prober give them:
//   HTTP  GET with "User-Agent: kube-probe/1.20", "Accept: */*" unless the
//         probe's headers set them (an empty value removes the header), the
//         probe's headers (names canonicalised as Go does; "Host" sets the
//         host), "Connection: close", no proxy, no compression; HTTPS
//         without certificate verification (HTTP/2 when the server offers
//         it through ALPN, as Go's transport does).
//         200 <= code < 300: success, output = the body (at most 10 KiB
//         read). 300 <= code < 400: success with `warning` set and output
//         "Probe terminated redirects, Response body: <body>" (the kubelet
//         posts a ProbeWarning event for it). Others: failure,
//         "HTTP probe failed with statuscode: N" (never the body: the
//         kubelet keeps bodies out of events, kubernetes issue 99425).
//         Redirects (301, 302, 303, 307, 308 with a Location) are followed
//         to the same host name only, up to the kubelet's limit: the 10th
//         redirect in a row fails ("stopped after 10 redirects"); one to
//         another host ends the probe with that 3xx response (warning).
//         Transport errors are failures in Go's words, e.g.
//           Get "http://10.0.0.5:8080/healthz": dial tcp 10.0.0.5:8080: connect: connection refused
//           Get "http://10.0.0.5:8080/healthz": context deadline exceeded (Client.Timeout exceeded
//           while awaiting headers)
//         An error while reading the body after the status arrived (a
//         timeout mid-body, a short body) is the kubelet's probe *error*,
//         whose result it throws away: PROBE_RESULT_UNKNOWN here.
//   TCP   success when the connection is established within the timeout
//         (output ""); else failure "dial tcp 10.0.0.5:81: connect:
//         connection refused" or "dial tcp 10.0.0.5:81: i/o timeout".
//   gRPC  grpc.health.v1.Health/Check over HTTP/2 cleartext with prior
//         knowledge. SERVING: success "service healthy"; any other status:
//         failure `service unhealthy (responded with "NOT_SERVING")`; a
//         non-zero grpc-status: failure "error: health rpc probe failed:
//         rpc error: code = NotFound desc = unknown service" (Unimplemented
//         and DeadlineExceeded have the kubelet's own sentences); past the
//         timeout: "timeout: health rpc did not complete within 1s". One
//         difference: the kubelet's gRPC dialer retries a refused
//         connection until the timeout; here the refusal fails the probe at
//         once (same verdict, sooner): `error: failed to connect service at
//         "10.0.0.5:81": dial tcp 10.0.0.5:81: connect: connection refused`.
// PROBE_RESULT_UNKNOWN otherwise only for errors of the prober itself: too
// many probes in flight, a target it cannot express (bad port, bad
// timeout), libcurl refusing a handle.
#ifndef VMLET_PROBER_PROBE_RUNNER_H
#define VMLET_PROBER_PROBE_RUNNER_H

#include "vmlet/err.h"
#include "vmlet/log.h"

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _probe_runner_t probe_runner_t;

typedef enum {
    PROBE_RESULT_SUCCESS,
    PROBE_RESULT_FAILURE,
    PROBE_RESULT_UNKNOWN, // the prober could not tell: the kubelet takes no action
} probe_result_t;

typedef enum {
    PROBE_TARGET_HTTP,
    PROBE_TARGET_TCP,
    PROBE_TARGET_GRPC,
} probe_target_kind_t;

typedef struct {
    const char *name;
    const char *value;
} probe_header_t;

// What to probe. Everything is copied by probe_runner_start.
typedef struct {
    probe_target_kind_t kind;
    const char *host; // IP or host name, already defaulted to the pod IP by the caller
    int port;         // 1..65535
    // HTTP only:
    const char *scheme; // "HTTP" or "HTTPS" (any case); NULL or "" = HTTP
    const char *path;   // "/healthz", may carry a query; NULL or "" = "/"
    const probe_header_t *headers;
    size_t n_headers;
    // gRPC only:
    const char *grpc_service; // NULL or "" = the server's overall health
    int timeout_ms;           // > 0: for the whole probe, redirects included
} probe_target_t;

typedef struct {
    probe_result_t result;
    // Success the kubelet reports with a ProbeWarning event ("<kind> probe
    // warning: <output>"): an HTTP 3xx it did not follow.
    bool warning;
    // The kubelet's words (see above); never NULL. Borrowed: valid only
    // during the callback.
    const char *output;
    // HTTP: the last response's body as read (at most 10 KiB), whatever the
    // verdict; "" otherwise. The kubelet logs a failing probe's body at
    // debug level only: keep it out of events and info logs. Borrowed, as
    // output.
    const char *body;
    int64_t latency_us; // from probe_runner_start to the outcome
} probe_outcome_t;

typedef void (*probe_done_fn)(void *arg, const probe_outcome_t *outcome);

// A runner on `loop` (borrowed; must outlive the runner). log may be NULL.
// Returns NULL and fills err if libcurl or the kernel refuse.
probe_runner_t *probe_runner_new(zloop_t *loop, vmlet_log_t *log, vmlet_err_t *err);

// Cancels the probes in flight without calling back, and frees all. Call
// it from outside the loop or from any handler of the loop, but not from
// inside a probe's done callback. Safe with *self_p == NULL.
void probe_runner_destroy(probe_runner_t **self_p);

// Starts one probe. `done(arg, outcome)` is called exactly once, from the
// loop, never from inside this call (unless the probe is cancelled first).
// done may start and cancel probes. Returns 0; -1 with err only for a call
// that cannot be a probe (NULL target, host or done; unknown kind): then
// done is never called. Everything about the target itself (a bad port,
// too many in flight...) is reported through done.
int probe_runner_start(probe_runner_t *self, const probe_target_t *target, probe_done_fn done,
                       void *arg, vmlet_err_t *err);

// Probes started and not yet called back or cancelled.
size_t probe_runner_in_flight(const probe_runner_t *self);

// Cancels every probe in flight started with this arg, without calling
// back (for a caller about to free arg). Returns how many. O(in flight).
size_t probe_runner_cancel(probe_runner_t *self, const void *arg);

// More than this many in flight: the next ones end at once as unknown
// ("too many probes in flight"). Default: half the process's open-files
// limit, at most 16384 (each probe holds one socket).
void probe_runner_set_max_in_flight(probe_runner_t *self, size_t max);

// The User-Agent sent when the probe's headers have none (HTTP and gRPC).
// Default "kube-probe/1.20"; the string is copied.
void probe_runner_set_user_agent(probe_runner_t *self, const char *user_agent);

// "success", "failure", "unknown" (metric labels, logs).
const char *probe_result_name(probe_result_t result);
// "http", "tcp", "grpc".
const char *probe_target_kind_name(probe_target_kind_t kind);

#endif
