// Starting a VMM process so it outlives its starter, given descriptors:
// what the launcher does itself, and what vmlet-vmm-host does for it when
// the launcher runs in a container of its own (vmm_host_server.c).
#ifndef VMLET_LAUNCHER_VMM_SPAWN_H
#define VMLET_LAUNCHER_VMM_SPAWN_H

#include "vmlet/err.h"

#include <sys/types.h>

//  - VMM_SPAWN_WAIT: the VMM daemonizes itself (QEMU -daemonize); wait up
//    to timeout_ms for the direct child to exit 0. *pid_out is unset.
//  - VMM_SPAWN_DETACH: double fork (the VMM is re-parented away from us);
//    *pid_out is the VMM's pid once its exec succeeded.
typedef enum { VMM_SPAWN_WAIT, VMM_SPAWN_DETACH } vmm_spawn_mode_t;

// Opens what a start needs: the network namespace at path `netns`
// (NULL/"": none, *ns_fd = -1) and out_path for appending (readable too).
// Both close-on-exec and the caller's to close.
int vmm_spawn_open(const char *netns, const char *out_path, int *ns_fd, int *out_fd,
                   vmlet_err_t *err);

// Forks; the child joins the network namespace ns_fd (-1: stays), starts a
// new session, points stdin at /dev/null and stdout/stderr at out_fd,
// marks every other descriptor close-on-exec and execs argv, in `mode`.
// Errors name the child's failing step or quote the tail of out_fd.
int vmm_spawn_fds(char *const argv[], int ns_fd, int out_fd, vmm_spawn_mode_t mode, int timeout_ms,
                  pid_t *pid_out, vmlet_err_t *err);

#endif
