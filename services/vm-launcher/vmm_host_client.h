// The launcher's side of vmlet-vmm-host: have it start a VMM (so the VM
// is its child, not ours) or check that it answers.
#ifndef VMLET_LAUNCHER_VMM_HOST_CLIENT_H
#define VMLET_LAUNCHER_VMM_HOST_CLIENT_H

#include "vmm_spawn.h"

#include "vmlet/err.h"

#include <sys/types.h>

// vmm_spawn_fds, done by the vmm-host listening on `socket_path`: the
// descriptors travel with the request. Errors say it was the vmm-host.
int vmm_host_spawn(const char *socket_path, char *const argv[], int ns_fd, int out_fd,
                   vmm_spawn_mode_t mode, int timeout_ms, pid_t *pid_out, vmlet_err_t *err);

// A request without a command: 0 when the vmm-host answers within timeout_ms.
int vmm_host_ping(const char *socket_path, int timeout_ms, vmlet_err_t *err);

#endif
