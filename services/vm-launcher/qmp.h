// A small blocking QMP client (QEMU Machine Protocol, docs/interop/qmp-spec)
// over QEMU's unix control socket. Every call has a deadline, so the
// launcher's single-threaded loop is never held longer than it says.
//
// A session: connect, read the greeting, `qmp_capabilities` to leave
// negotiation mode, then commands. Replies are matched by "id"; events
// ({"event": ...}) that arrive in between are remembered by name only
// (qmp_saw_event), which is all the VMM backend needs (e.g. SHUTDOWN).
#ifndef VMLET_LAUNCHER_QMP_H
#define VMLET_LAUNCHER_QMP_H

#include "vmlet/err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

typedef struct _qmp_t qmp_t;

// Connects to the socket at path and negotiates capabilities, all within
// timeout_ms. Returns NULL and fills err on failure.
qmp_t *qmp_connect(const char *path, int timeout_ms, vmlet_err_t *err);
void qmp_destroy(qmp_t **self_p);

// Runs `command` with `args` (borrowed, may be NULL) and waits up to
// timeout_ms for its reply. On success returns 0 and, if ret is not NULL,
// hands over the "return" value (caller deletes). A QMP error reply fills
// err with its class and description ("query-foo: CommandNotFound: ...").
// The connection closing right after `quit` counts as success.
int qmp_execute(qmp_t *self, const char *command, const cJSON *args, cJSON **ret, int timeout_ms,
                vmlet_err_t *err);

// True if an event named `name` arrived on this connection so far.
bool qmp_saw_event(const qmp_t *self, const char *name);

#endif
