// vmlet-vmm-host's work: a unix socket where vm-launcher asks for VMMs to
// be started (proto/vmm_host.proto), so each VM is this process's child
// and lives in this container, not the launcher's; and the reaping of the
// VMMs that exit (this process is its container's PID 1).
#ifndef VMLET_LAUNCHER_VMM_HOST_SERVER_H
#define VMLET_LAUNCHER_VMM_HOST_SERVER_H

#include "vmlet/err.h"
#include "vmlet/log.h"
#include "vmlet/metrics.h"

#include <czmq.h>

typedef struct {
    const char *socket_path; // created 0600; a stale file there is replaced
    const char *allow;       // comma-separated commands argv[0] may be, exactly
} vmm_host_settings_t;

typedef struct _vmm_host_server_t vmm_host_server_t;

vmm_host_server_t *vmm_host_server_new(const vmm_host_settings_t *settings,
                                       vmlet_metrics_t *metrics, vmlet_log_t *log,
                                       vmlet_err_t *err);
// Serves on loop: one request at a time (a start takes the VMM's set-up
// time, well under a second), and reaps exited children every second.
int vmm_host_server_attach(vmm_host_server_t *self, zloop_t *loop, vmlet_err_t *err);
// Stops listening and removes the socket. The VMMs run on until this
// process exits: as PID 1, its exit ends them.
void vmm_host_server_destroy(vmm_host_server_t **self_p);

#endif
