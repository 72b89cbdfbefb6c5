// The channel.k8s.io message formats on top of WebSocket messages: which
// channel a message is for and its bytes (a channel byte, or a '0'+channel
// digit and base64), the v4 error channel's metav1.Status, and the
// resize channel's {"Width":..,"Height":..} objects.
#ifndef VMLET_WS_CHANNEL_H
#define VMLET_WS_CHANNEL_H

#include "ws_handshake.h"

#include "vmlet/err.h"

#include <stddef.h>
#include <stdint.h>

// Channel numbers of remotecommand (exec/attach).
enum {
    VMLET_WS_STDIN = 0,
    VMLET_WS_STDOUT = 1,
    VMLET_WS_STDERR = 2,
    VMLET_WS_ERROR = 3,
    VMLET_WS_RESIZE = 4,
    VMLET_WS_CLOSE_STREAM = 255, // v5: [255, channel] ends that stream's client side
};

// The highest channel a base64 protocol can name with one ASCII digit.
#define VMLET_WS_BASE64_CHANNEL_MAX 9

// The payload of one message carrying len bytes on channel ch, as proto
// spells it. Returns a malloc'd buffer (caller frees) of *out_len bytes,
// or NULL when ch cannot be written in proto (above 9 for base64).
uint8_t *vmlet_ws_channel_encode(const vmlet_ws_proto_t *proto, uint8_t ch, const void *data,
                                 size_t len, size_t *out_len);

// Splits a received message of len >= 1 bytes into its channel and data,
// decoding base64 in place (the data ends up inside msg). Returns 0, or -1
// with err set when the channel digit or the base64 is malformed.
int vmlet_ws_channel_decode(const vmlet_ws_proto_t *proto, uint8_t *msg, size_t len, uint8_t *ch,
                            uint8_t **data, size_t *data_len, vmlet_err_t *err);

// What to write on the error channel when the command ended with
// exit_code, as Kubernetes' kubelet writes it: from v4 a metav1.Status
// JSON ({"metadata":{},"status":"Success"}, or Failure with reason
// NonZeroExitCode and a cause {"reason":"ExitCode","message":"<n>"});
// before v4 the Failure's message as text, and nothing for success.
// Returns a malloc'd NUL-terminated string (caller frees; *len excludes the
// NUL), or NULL when there is nothing to send.
char *vmlet_ws_status_exit(const vmlet_ws_proto_t *proto, int exit_code, size_t *len);

// The same for a failure to run the command at all (apierrors'
// NewInternalError: reason InternalError, code 500), message being what
// went wrong. Never NULL; caller frees.
char *vmlet_ws_status_internal(const vmlet_ws_proto_t *proto, const char *message, size_t *len);

// Parses one terminal size object, {"Width":80,"Height":24} (keys matched
// case-insensitively as Go's encoding/json does; a missing key reads 0).
// Returns 0, or -1 with err set for anything else.
int vmlet_ws_parse_resize(const char *json, size_t len, uint16_t *width, uint16_t *height,
                          vmlet_err_t *err);

// The resize channel is a byte stream of JSON objects (Kubernetes reads it
// with a json.Decoder), so one message may hold a part of an object or
// several. Returns the length of the first complete object in buf, leading
// blanks included, or 0 while it is incomplete.
size_t vmlet_ws_resize_split(const char *buf, size_t len);

#endif
