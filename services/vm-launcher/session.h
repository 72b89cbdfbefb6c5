// The launcher's session endpoint (proto/session.proto): the far end of
// kubectl logs, exec, attach and port-forward. The kubelet API front opens
// one TCP connection per session to --session-listen; frames are a 4-byte
// big-endian length and a SessionFrame. Everything runs on the launcher's
// zloop; each session has a small output buffer and acknowledges the guest
// agent's stream window only for bytes written to its connection, so a
// slow client slows the guest, never grows the launcher.
//
//   session_server.c  listening, presence and token in Redis, framing,
//                     back-pressure, the kinds' table, metrics
//   session_stream.c  exec and port-forward: agent streams
//   session_attach.c  attach: the container's own output and stdin
//   session_logs.c    logs from the CRI files, follow
#ifndef VMLET_LAUNCHER_SESSION_H
#define VMLET_LAUNCHER_SESSION_H

#include "launcher_internal.h"

#include "vmlet/proto/session.pb-c.h"

#define SESSION_FRAME_MAX (1u << 20)   // a larger frame from the front is an error
#define SESSION_OUT_CAP (256u << 10)   // bytes a session keeps for a slow client
#define SESSION_CLOSE_MS 10000         // a client that does not read its SessionEnd
#define SESSION_DATA_CHUNK (32u << 10) // logs: bytes per SessionData

typedef struct session session_t;

// --- the server (launcher.c uses these) --------------------------------------------

// Listens on --session-listen (a failure is logged and retried at each
// announce, so a taken port does not stop the VMs' launcher) and makes
// sure the shared token exists. Never NULL.
session_server_t *session_server_new(launcher_t *l);
// Ends every session (their agent streams are closed) and stops listening.
void session_server_destroy(session_server_t **self_p);
// Presence (vmlet:session:<launcher-id>, expiring like the capacity
// record) and the token, refreshed; listening retried if it failed.
void session_server_announce(session_server_t *self);

// The hooks the pods call (session_on_agent, session_on_output,
// session_on_container_exit, session_on_pod_gone) are declared in
// launcher_internal.h, next to the other pod functions.

// --- shared by the session files -------------------------------------------------------

typedef enum { SS_OPEN, SS_CLOSING } session_state_t;

// One kind's actions. open returns 0 (accepted) or fills *status and
// error and returns -1; input takes a frame of the front (data, close
// input, resize); writable is called when the output buffer has room
// again; release frees the kind's state and agent stream (once).
typedef struct {
    Vmlet__SessionKind kind;
    const char *name;
    int (*open)(session_t *s, const Vmlet__SessionOpen *o, int *status, char *error, size_t cap);
    void (*input)(session_t *s, const Vmlet__SessionFrame *f);
    void (*writable)(session_t *s);
    void (*release)(session_t *s);
} session_kind_t;

typedef struct {
    uint64_t end;   // out_queued at the end of the frame
    uint32_t bytes; // guest bytes in it, acknowledged once written
} session_mark_t;

struct session {
    session_server_t *srv;
    launcher_t *l;
    int fd;
    bool polled;
    short events;
    session_state_t state;
    const session_kind_t *kind;
    bool opened, released, broken;
    const char *result; // for vmlet_launcher_sessions_total
    int64_t close_deadline_ms;
    char peer[64];
    // the target
    char pod_uid[64];
    char container[64];
    size_t ctr;        // index in the pod's containers
    unsigned instance; // attach: the run attached to
    // from the front
    uint8_t *in;
    size_t in_len, in_cap;
    // to the front
    uint8_t *out;
    size_t out_len, out_cap;
    uint64_t out_queued, out_written; // bytes ever queued / written
    session_mark_t *marks;
    size_t n_marks, marks_head, marks_cap;
    // the agent stream (exec, port-forward, attach)
    uint32_t stream_id;
    bool stream_open;
    uint64_t credit;  // bytes the agent still takes on the stream
    uint8_t *pending; // stdin the agent's window has no room for yet
    size_t pending_len, pending_off;
    bool stdin, stdout, stderr, tty, stdin_once, input_closed;
    void *kind_state; // logs
};

// The pod the session is for, or NULL once it is gone.
pod_vm_t *session_pod(session_t *s);
// Queues a SessionData (or, with guest_bytes, data from an agent stream,
// acknowledged to the agent once written). Returns -1 if the session is
// past its output cap (attach) or closing.
int session_send_data(session_t *s, Vmlet__SessionChannel ch, const uint8_t *data, size_t len,
                      uint32_t guest_bytes);
// Ends the session: SessionEnd queued (error may be NULL; status 0 for
// none; exit_code < 0 for none), the kind released; the connection closes
// once it is written.
void session_end(session_t *s, const char *result, const char *error, int status, int exit_code,
                 int signal);
// Bytes queued for the client.
size_t session_out_len(const session_t *s);
// Sends a message to the session's agent; false (and the session ended)
// if the agent cannot take it.
bool session_agent_send(session_t *s, Vmlet__GuestMessage *msg);
// StreamClose to the agent (write_side_only: the input ends; else the stream).
void session_stream_close(session_t *s, bool write_side_only);
// Passes stdin to the agent under the stream window; what does not fit
// waits and the connection is not read meanwhile.
void session_stream_input(session_t *s, const uint8_t *data, size_t len);
// A window update or StreamClose from the agent for the session's stream.
void session_stream_agent_data(session_t *s, const Vmlet__StreamData *d);
// Container lookup shared by the kinds: the named one, or the pod's first
// (not init) container; fills s->container and s->ctr. NULL if none.
ctr_t *session_container(session_t *s, pod_vm_t *pod, const char *name);
// A new agent stream for the session (id, window).
void session_stream_start(session_t *s);
// SessionResize -> TerminalResize (tty sessions).
void session_stream_resize(session_t *s, const Vmlet__SessionResize *r);
// The pod's "name" for messages.
const char *session_pod_name(const pod_vm_t *pod);

extern const session_kind_t session_exec_kind, session_forward_kind, session_attach_kind,
    session_logs_kind;

// session_attach.c / session_logs.c hooks, called by the server's hooks.
void session_attach_output(session_t *s, const Vmlet__OutputChunk *m);
void session_attach_exit(session_t *s, int exit_code, int signal);
void session_logs_exit(session_t *s);

#endif
