// grpc probes: one grpc.health.v1.Health/Check call over HTTP/2 cleartext
// with prior knowledge (libcurl's nghttp2), and its verdict in the words
// of the kubelet's pkg/probe/grpc (see probe_runner.h).
#include "probe_internal.h"

#include "vmlet/http_status.h"

#include <string.h>

#define GRPC_CODE_DEADLINE_EXCEEDED 4
#define GRPC_CODE_UNIMPLEMENTED 12
#define GRPC_CODE_INTERNAL 13
#define GRPC_CODE_UNAVAILABLE 14

void probe_grpc_begin(probe_slot_t *slot)
{
    CURL *e = probe_slot_prepare(slot);
    if (!e)
        return;
    probe_buf_reset(&slot->url);
    probe_format_url(&slot->url, "http", slot->host, slot->port, "/grpc.health.v1.Health/Check");
    probe_grpc_frame_request(&slot->grpc_req, slot->grpc_service);
    curl_slist_free_all(slot->headers);
    slot->headers = NULL;
    probe_buf_t *line = &slot->scratch;
    const char *fixed[] = {"Content-Type: application/grpc", "TE: trailers", "Accept:", "Expect:"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        slot->headers = curl_slist_append(slot->headers, fixed[i]);
    probe_buf_reset(line);
    probe_buf_printf(line, "User-Agent: %s", probe_slot_user_agent(slot));
    slot->headers = curl_slist_append(slot->headers, probe_buf_str(line));
    // The deadline travels with the call, as grpc-go sends it, so the
    // server can give up too.
    probe_buf_reset(line);
    probe_buf_printf(line, "grpc-timeout: %dm", slot->timeout_ms);
    slot->headers = curl_slist_append(slot->headers, probe_buf_str(line));
    curl_easy_setopt(e, CURLOPT_URL, probe_buf_str(&slot->url));
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, slot->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, slot->grpc_req.p);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)slot->grpc_req.len);
    slot->body_max = PROBE_GRPC_BODY_MAX;
    probe_slot_submit(slot);
}

// The kubelet's words for a call that ended with a non-OK status.
static void s_rpc_error(probe_slot_t *slot, int code, const char *desc)
{
    probe_buf_t *t = &slot->scratch;
    probe_buf_reset(t);
    if (code == GRPC_CODE_UNIMPLEMENTED) {
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                          "error: this server does not implement the grpc health protocol "
                          "(grpc.health.v1.Health): %s",
                          desc);
        return;
    }
    if (code == GRPC_CODE_DEADLINE_EXCEEDED) {
        probe_go_duration(t, slot->timeout_ms);
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                          "timeout: health rpc did not complete within %s", probe_buf_str(t));
        return;
    }
    probe_grpc_code_name(t, code);
    probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                      "error: health rpc probe failed: rpc error: code = %s desc = %s",
                      probe_buf_str(t), desc);
}

// grpc-go's status for a response without grpc-status (gRPC's
// http-grpc-status-mapping).
static int s_code_for_http(long status)
{
    switch (status) {
    case 400:
        return GRPC_CODE_INTERNAL;
    case 401:
        return 16; // Unauthenticated
    case 403:
        return 7; // PermissionDenied
    case 404:
        return GRPC_CODE_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return GRPC_CODE_UNAVAILABLE;
    default:
        return 2; // Unknown
    }
}

static void s_response(probe_slot_t *slot)
{
    long http = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &http);
    probe_buf_t *desc = &slot->scratch2;
    probe_buf_reset(desc);
    if (slot->grpc_status < 0) {
        if (http != 200) {
            const char *text = vmlet_http_reason(http, NULL);
            probe_buf_printf(desc, "unexpected HTTP status code received from server: %ld", http);
            if (text)
                probe_buf_printf(desc, " (%s)", text);
            s_rpc_error(slot, s_code_for_http(http), probe_buf_str(desc));
        } else {
            s_rpc_error(slot, GRPC_CODE_INTERNAL,
                        "server closed the stream without sending trailers");
        }
        return;
    }
    if (slot->grpc_status != 0) {
        s_rpc_error(slot, slot->grpc_status, probe_buf_str(&slot->grpc_message));
        return;
    }
    long status = 0;
    const char *why = NULL;
    if (slot->body_truncated) {
        probe_buf_printf(desc, "grpc: received message larger than max (%d)", PROBE_GRPC_BODY_MAX);
        s_rpc_error(slot, 8, probe_buf_str(desc)); // ResourceExhausted
        return;
    }
    if (probe_grpc_parse_response((const uint8_t *)slot->body.p, slot->body.len, &status, &why) <
        0) {
        s_rpc_error(slot, GRPC_CODE_INTERNAL, why);
        return;
    }
    if (status != 1) { // SERVING
        probe_health_status_name(desc, status);
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                          "service unhealthy (responded with \"%s\")", probe_buf_str(desc));
        return;
    }
    probe_slot_finish(slot, PROBE_RESULT_SUCCESS, false, "service healthy");
}

void probe_grpc_done(probe_slot_t *slot, CURLcode code)
{
    if (code == CURLE_OK || (code == CURLE_WRITE_ERROR && slot->body_truncated)) {
        s_response(slot);
        return;
    }
    probe_buf_t *t = &slot->scratch, *peer = &slot->scratch2;
    probe_buf_reset(t);
    probe_buf_reset(peer);
    const char *addr = probe_buf_str(&slot->hostport);
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        probe_go_duration(t, slot->timeout_ms);
        if (probe_slot_connected(slot))
            probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                              "timeout: health rpc did not complete within %s", probe_buf_str(t));
        else
            probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                              "timeout: failed to connect service \"%s\" within %s: context "
                              "deadline exceeded",
                              addr, probe_buf_str(t));
        return;
    case CURLE_COULDNT_CONNECT:
        // The kubelet's dialer would retry until the timeout; the verdict is
        // the same, sooner.
        probe_slot_peer(slot, peer);
        probe_slot_connect_error(slot, t);
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                          "error: failed to connect service at \"%s\": dial tcp %s: %s", addr,
                          probe_buf_str(peer), probe_buf_str(t));
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
        probe_slot_finish(slot, PROBE_RESULT_FAILURE, false,
                          "error: failed to connect service at \"%s\": dial tcp: lookup %s: no "
                          "such host",
                          addr, slot->host);
        return;
    default:
        // The connection broke (reset, not HTTP/2, a protocol error): grpc-go
        // reports such a call as Unavailable.
        s_rpc_error(slot, GRPC_CODE_UNAVAILABLE,
                    slot->errbuf[0] ? slot->errbuf : curl_easy_strerror(code));
        return;
    }
}
