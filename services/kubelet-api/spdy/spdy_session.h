// The session's private state, shared by the feed loop (spdy_session.c),
// the control frame handlers (spdy_control.c) and the stream table
// (spdy_stream.c).
#ifndef VMLET_SPDY_SESSION_H
#define VMLET_SPDY_SESSION_H

#include "spdy_frame.h"
#include "spdy_headers.h"
#include "vmlet_spdy.h"

typedef struct {
    uint32_t id;
    // int64_t: a SETTINGS change may drive a window negative (SPDY/3
    // §2.6.8) and lenient mode lets it go lower still.
    int64_t send_window, recv_window;
    bool replied, local_fin, remote_fin;
} spdy_stream_t;

// DATA frames we build stay small so one stream cannot hog the output.
#define MAX_DATA_FRAME (16 * 1024)

enum spdy_in_state { S_HEAD, S_BODY, S_DATA, S_SKIP };

struct vmlet_spdy {
    vmlet_spdy_config_t cfg;
    vmlet_spdy_callbacks_t cb;
    spdy_zctx_t *z;
    spdy_buf_t out;  // frames to write
    spdy_buf_t body; // the control frame being assembled
    spdy_buf_t raw;  // an inflated header block
    // DATA frames we build stay small so one stream cannot hog the output.
#define MAX_DATA_FRAME (16 * 1024)

    enum spdy_in_state state;
    uint8_t head_bytes[SPDY_HEAD_LEN];
    size_t head_got;
    spdy_head_t head; // of the frame being read
    size_t left;      // DATA or skipped bytes still to come
    spdy_stream_t *streams;
    size_t n_streams, cap_streams;
    uint32_t last_peer_id; // highest stream id the client opened
    int64_t send_session_window, recv_session_window;
    int64_t peer_initial_window; // send window of new streams
    bool goaway_sent, goaway_received, failed;
};

// --- streams (spdy_stream.c); pointers are valid until the next add/remove ---
spdy_stream_t *spdy_stream_find(const vmlet_spdy_t *s, uint32_t id);
spdy_stream_t *spdy_stream_add(vmlet_spdy_t *s, uint32_t id);
void spdy_stream_remove(vmlet_spdy_t *s, uint32_t id);
// Forgets the stream once both sides have sent FIN.
void spdy_stream_settle(vmlet_spdy_t *s, uint32_t id);

// Queues GOAWAY (once), marks the session failed and sets err. Returns -1.
int spdy_fail(vmlet_spdy_t *s, uint32_t status, vmlet_err_t *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// A stream error: RST_STREAM, forget the stream, tell the application if
// it knew the stream.
void spdy_stream_error(vmlet_spdy_t *s, uint32_t id, uint32_t status);

// Handles the control frame whose head is s->head and payload s->body.
// -1 on a session error (spdy_fail called).
int spdy_control(vmlet_spdy_t *s, vmlet_err_t *err);

#endif
