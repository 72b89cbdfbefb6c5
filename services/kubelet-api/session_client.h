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
int session_send_data(int fd, Vmlet__SessionChannel channel, const void *data, size_t len);

// Reads one frame (free with vmlet__session_frame__free_unpacked); NULL
// when the launcher closed the connection or sent garbage.
Vmlet__SessionFrame *session_recv(int fd);

#endif
