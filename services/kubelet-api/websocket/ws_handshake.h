// The RFC 6455 opening handshake on the server side, with the
// channel.k8s.io subprotocols Kubernetes' exec/attach speak: the caller
// parses the HTTP request, this checks the upgrade headers and writes the
// response head.
#ifndef VMLET_WS_HANDSHAKE_H
#define VMLET_WS_HANDSHAKE_H

#include "vmlet/err.h"

#include <stdbool.h>
#include <stddef.h>

// One channel subprotocol. `version` is the remotecommand protocol the
// name stands for: 1 for channel.k8s.io (and no subprotocol at all), 2..5
// for vN.channel.k8s.io. It decides what goes on the error channel (plain
// text before 4, a metav1.Status from 4) and whether channel 255 closes a
// stream (5).
typedef struct {
    const char *name; // "" when the client offered none (answered without the header)
    int version;
    bool base64; // text frames, '0'+channel then base64 (else binary, channel byte)
} vmlet_ws_proto_t;

// The request headers the handshake reads; NULL for an absent header.
// Repeated headers are joined with ", " by the caller (RFC 9110 5.3).
typedef struct {
    const char *method;
    const char *upgrade;    // Upgrade
    const char *connection; // Connection
    const char *key;        // Sec-WebSocket-Key
    const char *version;    // Sec-WebSocket-Version
    const char *protocols;  // Sec-WebSocket-Protocol
} vmlet_ws_request_t;

typedef struct {
    int status;                    // 101 accepted; else 400, 403, 405 or 426
    const vmlet_ws_proto_t *proto; // the chosen subprotocol (static), NULL when refused
    char *response;                // the whole response head (and a refusal's body); caller frees
} vmlet_ws_handshake_t;

// Checks the upgrade request and picks the best subprotocol the client
// offers (v5 > v4 > v3 > v2 > v1; binary before base64 within a version).
// Always fills *out: on acceptance returns 0 with status 101 and the
// "101 Switching Protocols" head; on refusal returns -1, sets err to why,
// and out->response holds the refusal to send before closing (426 carries
// "Sec-WebSocket-Version: 13"). Free out->response with free().
int vmlet_ws_handshake(const vmlet_ws_request_t *req, vmlet_ws_handshake_t *out, vmlet_err_t *err);

// Sec-WebSocket-Accept for a key: base64(SHA-1(key + the RFC 6455 GUID)),
// written NUL-terminated into out (29 bytes needed). Returns 0, or -1 if
// libcrypto failed (out of memory).
int vmlet_ws_accept_key(const char *key, char out[29]);

// The supported subprotocol of that name, or NULL.
const vmlet_ws_proto_t *vmlet_ws_proto_find(const char *name);

#endif
