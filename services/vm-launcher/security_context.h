// A container's securityContext as the kubelet and containerd decide it
// together, in pure functions (no I/O): the effective context (the
// container's runAsUser, runAsGroup and runAsNonRoot over the pod's), the
// runAsNonRoot check in the kubelet's words, and the capability set
// (containerd's default, add, drop, "ALL", privileged). docs/security.md.
#ifndef VMLET_LAUNCHER_SECURITY_CONTEXT_H
#define VMLET_LAUNCHER_SECURITY_CONTEXT_H

#include "vmlet/proto/guest.pb-c.h"
#include "vmlet/proto/pod.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// containerd's default set (its defaultUnixCaps, Docker's too): CHOWN
// DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP
// NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE.
#define SECURITY_DEFAULT_CAPS 0xa80425fbULL
// Every capability the guest kernel has (the agent masks by its own).
#define SECURITY_ALL_CAPS (~0ULL)

// The capability's number for a name as Kubernetes spells it
// ("NET_ADMIN", any case, without CAP_), or -1 when unknown.
int security_cap_number(const char *name);

// The process's capability set: privileged: all; else the default set,
// then "ALL" in add (all), then "ALL" in drop (none), then each add, then
// each drop, as containerd applies them. Names it does not know are
// skipped, as runc skips them; *unknown (may be NULL) counts them.
uint64_t security_capabilities(const Vmlet__SecurityContext *sc, size_t *unknown);

// The kubelet's verifyRunAsNonRoot: with runAsNonRoot (the container's,
// else the pod's), a runAsUser (same order) of 0, or no runAsUser and an
// image USER that is root (empty, "0", "0:x") or a name that cannot be
// checked, is refused. image_user: the image config's User (may be NULL).
// Returns true when the container may run; false with the kubelet's
// message in msg (reason CreateContainerConfigError).
bool security_non_root_ok(const Vmlet__PodSpec *pod, const Vmlet__Container *c,
                          const char *image_user, char *msg, size_t cap);

// Fills StartContainer's security fields (20-25 of guest.proto): the
// capabilities, no_new_privs (only when allowPrivilegeEscalation is
// false, as the kubelet's AddNoNewPrivileges), read_only_root, privileged,
// and fsGroup with the pod's emptyDirs. Allocations belong to out
// (freed by vmlet__start_container__free_unpacked).
void security_fill(const Vmlet__PodSpec *pod, const Vmlet__Container *c,
                   Vmlet__StartContainer *out);

#endif
