// A small client of the launcher's session protocol (proto/session.proto),
// as the kubelet API front speaks it: one blocking TCP connection per
// session, frames of a 4-byte big-endian length and a SessionFrame.
#ifndef VMLET_TS_SESSION_H
#define VMLET_TS_SESSION_H

#include "vmlet/proto/session.pb-c.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    int fd;
    unsigned char *buf; // bytes read, not yet a whole frame
    size_t len, cap;
    // What came so far.
    bool accepted, ended;
    char *out, *err; // NUL-terminated
    size_t out_len, err_len;
    int exit_code, signal, http_status; // -1 when not sent
    char error[1024];
} ts_session_t;

// Connects to "HOST:PORT" and sends open. Returns 0 or -1.
int ts_session_open(ts_session_t *s, const char *addr, const Vmlet__SessionOpen *open);
int ts_session_send_stdin(ts_session_t *s, const void *data, size_t len);
int ts_session_close_input(ts_session_t *s);
int ts_session_resize(ts_session_t *s, unsigned rows, unsigned cols);
// Reads frames for up to timeout_ms, until the session ends or (until
// non-NULL) stdout holds that text. Returns true if that happened.
bool ts_session_wait(ts_session_t *s, int timeout_ms, const char *until);
// Closes the connection (abruptly, as a killed client would) and frees.
void ts_session_close(ts_session_t *s);

#endif
