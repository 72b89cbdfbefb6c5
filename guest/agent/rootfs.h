// A container's mounts and pivot_root, in its new mount namespace (see rootfs.c).
#ifndef VMLET_AGENT_ROOTFS_H
#define VMLET_AGENT_ROOTFS_H

#include "agent.h"

// Called in the container's first process, before it drops privileges.
int rootfs_enter(const agent_t *a, const container_t *c, vmlet_err_t *err);

#endif
