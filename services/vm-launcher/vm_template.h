// Templates: VMs booted once, up to the point where the guest agent waits
// for its pod, and saved, so that a pod's VM is restored instead of booted
// (docs/templates.md).
//
// One template per VM shape: (kernel, initramfs, kernel command line,
// vCPUs, memory, backend and accelerator, the guest's TSC rate, disk
// slots, and the host's boot). Its key is a hash of those inputs, so a
// change to any of them (a new kernel at the same path included: its size,
// mtime and inode are inputs) names another template, built afresh; the
// old one is removed at the next start.
//
//   missing -> building -> ready
//                 |          | (a restore from it failed: removed)
//                 v          v
//               failed     missing
//   (failed: tried again after a back-off)
//
// The template for the default pod size is built at start, in the
// background; others when a pod of that size first asks. All of it runs on
// the launcher's loop: the build is a state machine ticked by a timer.
#ifndef VMLET_LAUNCHER_VM_TEMPLATE_H
#define VMLET_LAUNCHER_VM_TEMPLATE_H

#include "vmm.h"

#include "vmlet/log.h"
#include "vmlet/metrics.h"

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct vm_templates vm_templates_t;

typedef struct {
    const char *dir; // the templates' directory (made if missing)
    int disk_slots;  // disks every template has: the scratch disk and images
    const char *kernel, *initramfs, *cmdline;
    vmm_t *vmm;
    int build_timeout_ms; // boot to the agent's Hello
    vmlet_log_t *log;
    vmlet_metrics_t *metrics;
    zloop_t *loop;
} vm_templates_config_t;

// The templates of one launcher. NULL + err if the directory cannot be
// made. Removes what is left of earlier templates that no longer match.
vm_templates_t *vm_templates_new(const vm_templates_config_t *cfg, vmlet_err_t *err);
void vm_templates_destroy(vm_templates_t **self_p);

typedef enum {
    TEMPLATE_READY,    // *dir is the template to restore
    TEMPLATE_BUILDING, // being made: worth waiting for (it takes about a boot)
    TEMPLATE_NONE,     // none to be had now: why says so
} template_lookup_t;

// The template for a VM of this shape, with n_disks disks; starts building
// it if there is none (and none failed lately).
template_lookup_t vm_templates_get(vm_templates_t *self, int vcpus, int mem_mib, size_t n_disks,
                                   const char **dir, char *why, size_t why_cap);
// Builds the template for this shape now if there is none (at start).
void vm_templates_prepare(vm_templates_t *self, int vcpus, int mem_mib);
// Checks the template's state file against the checksum taken when it was
// made (a damaged file is a failed restore, not a guest gone wrong).
int vm_templates_verify(vm_templates_t *self, const char *dir, vmlet_err_t *err);
// A restore from the template in dir failed: it is dropped (and removed),
// and made again.
void vm_templates_drop(vm_templates_t *self, const char *dir, const char *why);

int vm_templates_disk_slots(const vm_templates_t *self);
// A tiny read-only disk for the slots a pod does not use.
const char *vm_templates_placeholder(const vm_templates_t *self);

#endif
