// exec and attach (Kubernetes' "remotecommand"): the client's streams,
// over SPDY/3.1 or WebSocket, joined to a session with the launcher that
// runs the process. Both transports share this state and its pieces.
#ifndef VMLET_KAPI_REMOTECOMMAND_H
#define VMLET_KAPI_REMOTECOMMAND_H

#include "kapi_internal.h"
#include "session_client.h"
#include "ws_handshake.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    conn_t *c;
    int session;             // the launcher's end
    session_outbox_t outbox; // frames to it, written as its socket takes them
    int version;             // remotecommand protocol: 1 (channel.k8s.io) .. 5
    const char *protocol_name;
    bool stdin_, stdout_, stderr_, tty;
    char command_text[512]; // for the Failure's message, as the kubelet words it
    // Partial JSON of the resize stream (objects may arrive in pieces).
    char resize_buf[512];
    size_t resize_len;
    bool input_closed;
    int64_t last_traffic_ms; // monotonic: when bytes last moved either way
    bool ended;              // the launcher sent SessionEnd
    bool client_gone;        // the client closed or reset
    int exit_code;
    char error[512]; // the session failed after it started: why
} remotecommand_t;

// Runs exec/attach on an upgraded SPDY connection until it ends.
void remotecommand_spdy(remotecommand_t *rc);
// The same on a WebSocket connection, after the 101 was sent.
void remotecommand_ws(remotecommand_t *rc, const vmlet_ws_proto_t *proto);

// How long the stream may stay quiet from now (ms), counting from the last
// bytes that moved either way; 0 once it has been idle past the limit.
// Protocol chatter (pings, window updates) does not count, as for the
// kubelet's streaming idle timeout.
int remotecommand_idle_left(const remotecommand_t *rc);

// stdin for the process, and its end (both queued in order in the outbox).
void remotecommand_stdin(remotecommand_t *rc, const void *data, size_t len);
void remotecommand_close_input(remotecommand_t *rc);
// Whether to read more from the client now (the outbox has room).
bool remotecommand_may_read_client(const remotecommand_t *rc);
// The session's poll events: readable always, writable while frames wait.
short remotecommand_session_events(const remotecommand_t *rc);

// Resize bytes from the client: complete {"Width":..,"Height":..} objects
// go to the launcher as SessionResize.
void remotecommand_resize_bytes(remotecommand_t *rc, const uint8_t *data, size_t len);
// What the error stream says at the end (v4+: a metav1.Status JSON; before:
// text, or nothing for success). Caller frees; NULL for nothing.
char *remotecommand_status(const remotecommand_t *rc, size_t *len);
// Reads the session's next frame into the state: output bytes are passed to
// out(arg, channel, bytes, len); false when the session is over or broken.
bool remotecommand_pump_session(remotecommand_t *rc,
                                bool (*out)(void *arg, int channel, const uint8_t *d, size_t n),
                                void *arg);

#endif
