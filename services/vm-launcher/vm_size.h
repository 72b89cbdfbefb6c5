// How big a pod's VM is. The pod's CPU is the larger of its containers'
// limits summed and its largest init container's limit (they run one at a
// time, before the rest), as Kubernetes computes a pod's effective
// resources; vCPUs are that rounded up to whole CPUs. Memory likewise, plus
// the guest's own overhead (its kernel, page cache and agent), so that the
// containers get their whole limit. Unset limits take the defaults.
//
// What the VM costs its host: its vCPUs and its guest memory, plus the
// VMM's own memory (QEMU's code, TCG's translation cache): the launcher
// counts these against its allocatable capacity.
#ifndef VMLET_LAUNCHER_VM_SIZE_H
#define VMLET_LAUNCHER_VM_SIZE_H

#include "vmlet/proto/envelope.pb-c.h"

#include <stdint.h>

typedef struct {
    int default_vcpus;
    int max_vcpus;
    int64_t default_memory_bytes;  // the containers' memory when no limit is set
    int64_t guest_overhead_bytes;  // added to what the containers may use
    int64_t vmm_overhead_bytes;    // the VMM's own memory on the host
} vm_size_settings_t;

typedef struct {
    int vcpus;
    int64_t memory_bytes;      // the guest's RAM
    int64_t cpu_millis_limit;  // what the containers may use (unset limits: the VM's)
    int64_t memory_bytes_limit;
    // For admission, as the kubelet counts it: the pod's requests.
    int64_t cpu_millis_request;
    int64_t memory_bytes_request;
    // What the host gives up for this VM.
    int64_t host_memory_bytes;
} vm_size_t;

void vm_size_of(const Vmlet__PodSpec *pod, const vm_size_settings_t *settings, vm_size_t *out);

#endif
