// The front's end of a session (proto/session.proto): find the launcher
// that holds the pod's VM, connect, open, and exchange frames. Blocking,
// for the connection's own thread.
#ifndef VMLET_KAPI_SESSION_CLIENT_H
#define VMLET_KAPI_SESSION_CLIENT_H

#include "vmlet/err.h"
#include "vmlet/proto/session.pb-c.h"
#include "vmlet/store.h"

#define SESSION_FRAME_MAX (1u << 20) // larger frames are a broken peer

// Opens a session for open->pod_uid (the token is filled in here). Returns
// the connected socket; SESSION_NO_VM when the pod has no VM (yet); or -1
// with err and *http_status (503: its launcher cannot be reached; else the
// launcher's own answer, err holding its words).
#define SESSION_NO_VM (-2)
int session_connect(vmlet_store_t *store, Vmlet__SessionOpen *open, int *http_status,
                    vmlet_err_t *err);

// Sends one frame; 0 or -1 (the launcher is gone).
int session_send(int fd, const Vmlet__SessionFrame *frame);

// Frames to the launcher wait here and go out only as its socket takes
// them: a thread that blocked writing stdin to a launcher that waits for
// the thread to read the process's output (a `cat` of 100 MiB) would
// deadlock both. Callers read from the client only while the outbox is
// below SESSION_OUTBOX_MAX, which carries the back-pressure on.
#define SESSION_OUTBOX_MAX (256u << 10)

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} session_outbox_t;

void session_outbox_frame(session_outbox_t *o, const Vmlet__SessionFrame *frame);
void session_outbox_data(session_outbox_t *o, Vmlet__SessionChannel channel, const void *data,
                         size_t len);
// Writes what the socket takes now without waiting; 0, or -1 when the
// launcher is gone.
int session_outbox_flush(int fd, session_outbox_t *o);
void session_outbox_free(session_outbox_t *o);

// Reads one frame (free with vmlet__session_frame__free_unpacked); NULL
// when the launcher closed the connection or sent garbage.
Vmlet__SessionFrame *session_recv(int fd);

#endif
