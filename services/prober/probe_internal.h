// The probe runner's insides, shared by its files:
//
//   probe_runner.c  the runner: slots, libcurl's multi interface on one
//                   epoll set polled by the zloop, completion and callbacks
//   probe_slot.c    a probe's slot: its copy of the target, the options and
//                   response callbacks every transfer shares
//   probe_http.c    httpGet and tcpSocket probes: requests, redirects,
//                   verdicts in the kubelet's words
//   probe_grpc.c    grpc probes: the Health/Check call and its verdict
//   probe_words.c   pure functions: Go's spellings (durations, URLs,
//                   errors, header names), the health protobuf messages
#ifndef VMLET_PROBER_PROBE_INTERNAL_H
#define VMLET_PROBER_PROBE_INTERNAL_H

#include "probe_runner.h"
#include "probe_words.h"

#include <curl/curl.h>
#include <time.h>

// The kubelet reads at most this much of a body (pkg/probe/http).
#define PROBE_HTTP_BODY_MAX (10 * 1024)
// A health response is a few bytes; anything much larger is not one.
#define PROBE_GRPC_BODY_MAX (64 * 1024)

typedef struct probe_slot probe_slot_t;

// One probe in flight, or a free slot keeping its easy handle and buffers
// for the next probe (steady state allocates nothing).
struct probe_slot {
    probe_runner_t *runner;
    probe_slot_t *prev, *next;   // the runner's active list, or (next) its free list
    probe_slot_t *next_finished; // the queue of outcomes waiting for their callback
    CURL *easy;                  // created on first use, reset between probes
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    bool active, in_multi, finished;
    CURLcode code; // of the transfer just ended, between reaping and its kind's verdict

    // The probe, copied from its target (strings live in `strings`).
    probe_target_kind_t kind;
    probe_done_fn done;
    void *arg;
    char *scheme, *host, *path, *grpc_service; // scheme in lower case
    int port;
    int timeout_ms;
    size_t n_headers;
    probe_header_t *headers_copy; // in `strings` too
    int64_t start_us, deadline_us;

    // The request in progress.
    probe_buf_t url;      // of the current request (changes with redirects)
    probe_buf_t hostport; // "host:port" as Go joins them
    int n_requests;       // HTTP requests made so far (1 + redirects followed)
    bool keep_host;       // the Host header still applies (not after an absolute redirect)
    probe_buf_t grpc_req; // the framed HealthCheckRequest (POST body)

    // The response in progress (reset with each request).
    bool got_status; // a final status line arrived
    bool saw_read;   // curl waited to read: the TCP connection was up
    long status;
    probe_buf_t location;
    int grpc_status; // -1: none seen
    probe_buf_t grpc_message;
    probe_buf_t body;
    size_t body_max;
    bool body_truncated;

    // The outcome.
    probe_result_t result;
    bool warning;
    probe_buf_t output;

    probe_buf_t strings;           // storage for the copied target
    probe_buf_t scratch, scratch2; // for building words and lines
};

static inline int64_t probe_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

// --- slots (probe_slot.c, probe_runner.c) ---

// Copies the target into the slot (strings into its own storage) and
// lower-cases the scheme.
void probe_slot_copy_target(probe_slot_t *slot, const probe_target_t *target);

// Resets the slot's easy handle and sets what every probe shares: the
// slot as PRIVATE, no signals, no proxy, no reuse of connections, the
// response callbacks, the error buffer and the time left until the
// probe's deadline (at least 1 ms: past it, the transfer times out through
// the usual path). Clears the response state. Returns the handle, or NULL
// when libcurl cannot make one (the probe is then finished as unknown).
CURL *probe_slot_prepare(probe_slot_t *slot);

// Hands the prepared handle to the multi. <0: it refused (the probe is
// finished as unknown; the caller returns).
int probe_slot_submit(probe_slot_t *slot);

// Sets the outcome and queues the callback (delivered from the loop, never
// from inside probe_runner_start).
void probe_slot_finish(probe_slot_t *slot, probe_result_t result, bool warning, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

// The user agent to send.
const char *probe_slot_user_agent(const probe_slot_t *slot);

// Whether the transfer had a TCP connection established.
bool probe_slot_connected(const probe_slot_t *slot);

// Go's words for the OS error of a failed connect ("connect: connection
// refused"), from the handle's saved errno.
void probe_slot_connect_error(const probe_slot_t *slot, probe_buf_t *out);

// "host:port" of the peer, as Go prints a dial address (the resolved IP
// when there is one).
void probe_slot_peer(const probe_slot_t *slot, probe_buf_t *out);

// --- the kinds ---

// Start a probe of the slot's kind (target already copied). They finish
// the slot themselves on any error.
void probe_http_begin(probe_slot_t *slot);
void probe_tcp_begin(probe_slot_t *slot);
void probe_grpc_begin(probe_slot_t *slot);

// A transfer of the slot ended with code (already out of the multi).
void probe_http_done(probe_slot_t *slot, CURLcode code);
void probe_tcp_done(probe_slot_t *slot, CURLcode code);
void probe_grpc_done(probe_slot_t *slot, CURLcode code);

#endif
