// Early boot of PID 1 (see boot.c).
#ifndef VMLET_AGENT_BOOT_H
#define VMLET_AGENT_BOOT_H

#include "agent.h"

// devtmpfs, proc, sysfs, and /dev/console as stdin/stdout/stderr.
int boot_mounts(vmlet_err_t *err);
// vmlet.transport=serial|vsock, vmlet.vsock_port=N, vmlet.debug=1,
// vmlet.misbehave=garbage|flood (the test build only).
void boot_cmdline(agent_t *a);
// finit_module for each line of /lib/modules/load-order; the drivers of
// the pod's disks and NIC load with the virtio bus's autoprobe off, and
// boot_pod_modules binds them when the pod's PodSetup arrives: the NIC
// and the disks until all of `serials` (n of them) have appeared.
void boot_modules(agent_t *a);
void boot_pod_modules(agent_t *a, char **serials, size_t n);
// From the initramfs to a tmpfs root, so containers can pivot_root.
int boot_switch_root(vmlet_err_t *err);
void boot_misc(void);
// cgroup2 on /sys/fs/cgroup with the memory and pids controllers for the
// containers' groups. Returns false (and the agent goes on) if it cannot.
bool boot_cgroups(void);

#endif
