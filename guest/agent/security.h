// A container's securityContext inside the guest, as runc applies it:
// capabilities (bounding set, then the user, then permitted and
// effective), no_new_privs, and fsGroup's ownership of the pod's emptyDirs
// (the kubelet's SetVolumeOwnership). What is decided comes from the host
// in StartContainer (docs/security.md).
#ifndef VMLET_AGENT_SECURITY_H
#define VMLET_AGENT_SECURITY_H

#include "agent.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

// --- in the child, around setgroups/setgid/setuid ---------------------------------------
// Sets no_new_privs if asked, drops what the bounding set must not hold,
// and keeps the permitted set across the change of user. Returns 0, or -1
// with the reason in msg. A run without capabilities leaves them as they are.
int security_child_before_user(const Vmlet__StartContainer *run, char *msg, size_t cap);
// Sets permitted and effective to the container's set, inheritable and
// ambient empty (as containerd): a non-root user keeps none after execve.
int security_child_after_user(const Vmlet__StartContainer *run, char *msg, size_t cap);

// --- in the agent -------------------------------------------------------------------------
// Gives fsGroup the pod's emptyDirs run lists, before its process starts:
// group, setgid directories, group read-write added to each mode. Once per
// boot: what a container makes there afterwards keeps its group (the
// setgid directory gives it fsGroup anyway). Logs what fails; the
// container starts all the same, as with the kubelet.
void security_own_empty_dirs(agent_t *a, const Vmlet__StartContainer *run);
// Changes dir and everything under it (not crossing mounts, not following
// symlinks) to group gid with the kubelet's read-write masks. 0 or -1.
int security_own_tree(const char *dir, gid_t gid, vmlet_err_t *err);

#endif
