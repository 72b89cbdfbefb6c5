// Does this host have a KVM that really runs guests? /dev/kvm existing
// proves nothing (DESIGN.md §4: on nested micro-VMs it opens, but guests
// hang or exit at once), so the probe runs a real 3-instruction guest
// through KVM_RUN and checks each exit. It runs in a child process that is
// killed at a deadline, so a KVM_RUN that never returns cannot hang the
// caller.
#ifndef VMLET_LAUNCHER_KVM_PROBE_H
#define VMLET_LAUNCHER_KVM_PROBE_H

#include <stdbool.h>

typedef struct {
    bool usable;      // a guest ran to its hlt through KVM_RUN
    char reason[256]; // why not (or what worked), for logs and errors
} kvm_probe_t;

// Probes `dev` (NULL: "/dev/kvm") within timeout_ms (<= 0: 2000). Always
// fills *out; never fails otherwise.
void kvm_probe_run(const char *dev, int timeout_ms, kvm_probe_t *out);

#endif
