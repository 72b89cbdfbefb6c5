// The VMM backends behind one ops table: QEMU `-M microvm` driven over QMP
// and Firecracker driven over its REST API socket. The launcher picks one
// with vmm_new (by name, after checking the host can run it), then
// describes each VM with a vmm_spec_t and drives it through the vmm_*
// calls below, which dispatch through vmm_ops_t.
//
// Every call is bounded in time (the launcher runs one event loop), and a
// started VMM outlives the launcher: it runs in its own session, is not
// the launcher's child, and leaves a state file in its state directory
// from which vmm_adopt finds it again after a launcher restart.
//
// What the guest must do for vmm_shutdown to power it off:
//  - QEMU: system_powerdown raises the ACPI power button (microvm's GED
//    device; acpi must stay on). PID 1 loads the `button` and `evdev`
//    modules and powers off (reboot(RB_POWER_OFF)) on KEY_POWER from the
//    /dev/input/event* whose name is "Power Button" (busybox `acpid` with
//    /etc/acpi/PWRF/00000080 does exactly that).
//  - Firecracker: SendCtrlAltDel presses Ctrl+Alt+Del on the i8042
//    keyboard; the kernel sends SIGINT to PID 1, which powers off (the
//    cmdline has reboot=k, so Firecracker exits).
// Either way a guest that ignores it keeps running; the caller follows up
// with vmm_kill after its grace period.
#ifndef VMLET_LAUNCHER_VMM_H
#define VMLET_LAUNCHER_VMM_H

#include "kvm_probe.h"
#include "vmlet/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VMM_ID_MAX 64
#define VMM_MAX_DISKS 16
#define VMM_DISK_SERIAL_MAX 20 // virtio-blk's ID field

// --- the VM description (all strings borrowed; vmm_start copies what it keeps)

typedef struct {
    const char *path; // a raw image (both VMMs take raw)
    bool read_only;
    const char *serial; // up to 20 bytes, shown as /sys/block/vdX/serial; NULL for none.
                        // Firecracker has no drive serials: its guest sees disks in order.
} vmm_disk_t;

typedef struct {
    const char *tap; // host tap device, in the VM's network namespace; NULL: a NIC
                     // with nothing behind it (a template VM, whose guest never
                     // drives it: the pod restored from it gets its own tap)
    const char *mac; // guest MAC, "52:54:00:xx:xx:xx"
} vmm_nic_t;

typedef struct {
    const char *id;      // the pod UID: [A-Za-z0-9._-], up to 64 bytes
    const char *kernel;  // vmlinuz for QEMU, the uncompressed vmlinux for Firecracker
    const char *initrd;  // NULL for none
    const char *cmdline; // appended to the backend's kernel arguments; NULL for none
    int vcpus;           // >= 1
    int mem_mib;         // >= 16
    const vmm_disk_t *disks;
    size_t n_disks;        // <= VMM_MAX_DISKS
    const vmm_nic_t *nic;  // NULL: no network
    const char *netns;     // e.g. /run/netns/vmlet: the VMM runs there; NULL/"": ours
    const char *state_dir; // exists; per VM; short enough for socket paths (~90 bytes)
    // Non-NULL: boot this VM to become a template (docs/templates.md). Its
    // guest memory lives in a file in this directory (exists), so that
    // template_save need only write the device state next to it.
    const char *template_dir;
} vmm_spec_t;

// --- choosing a backend

typedef struct {
    const char *backend;            // "qemu" or "firecracker"
    const char *qemu_binary;        // NULL: "qemu-system-x86_64" from PATH
    const char *firecracker_binary; // NULL: "firecracker" from PATH
    const char *accel;              // QEMU: "auto" (KVM if the probe passes), "kvm", "tcg"
    int tcg_tb_size_mib;            // QEMU under TCG: translation cache size; 0: 32
    const char *qemu_cpu;           // QEMU -cpu; NULL: QEMU's default (not "host": MSR 0x10a)
    int start_timeout_ms;           // how long vmm_start may take; 0: 10000
    int control_timeout_ms;         // one QMP/API exchange; 0: 3000
    unsigned agent_vsock_port;      // Firecracker: the guest agent's vsock port; 0: 1024
    const kvm_probe_t *kvm;         // a verdict already made; NULL: vmm_new probes
    const char *vmm_host;           // a vmlet-vmm-host socket that starts the VMMs; NULL/"": we do
} vmm_settings_t;

typedef struct _vmm_t vmm_t;       // a selected backend with its settings
typedef struct _vmm_vm_t vmm_vm_t; // one VM: its process, sockets and state dir

// The ops table each backend fills. Timeouts are in milliseconds.
typedef struct {
    const char *name;
    // Can this host run the backend? (binary version, KVM). Fills err with
    // what is missing and how to fix it.
    int (*check)(vmm_t *vmm, vmlet_err_t *err);
    // Launches the VMM for spec; returns once it runs and its control
    // socket answers (the guest is still booting).
    vmm_vm_t *(*start)(vmm_t *vmm, const vmm_spec_t *spec, vmlet_err_t *err);
    // Finds the VM whose state is in state_dir again: its pid is alive and
    // really this VM, and its control socket answers.
    vmm_vm_t *(*adopt)(vmm_t *vmm, const char *state_dir, vmlet_err_t *err);
    // A connected stream to the guest agent (O_NONBLOCK|O_CLOEXEC, the
    // caller's to close). Fails while the guest cannot take it yet
    // (Firecracker: nobody listens on the vsock port).
    int (*agent_connect)(vmm_vm_t *vm, int timeout_ms, vmlet_err_t *err);
    // Asks the guest to power off (see the top of this file) and returns.
    int (*shutdown)(vmm_vm_t *vm, vmlet_err_t *err);
    // Hard stop: SIGKILL, then wait up to timeout_ms until it is gone.
    int (*kill)(vmm_vm_t *vm, int timeout_ms, vmlet_err_t *err);
    bool (*alive)(vmm_vm_t *vm);
    int64_t (*rss_bytes)(vmm_vm_t *vm); // VmRSS of the VMM process; -1 if gone
    // Frees the handle only; the VM keeps running (adopt finds it again).
    void (*release)(vmm_vm_t **vm_p);
    // Templates (docs/templates.md). template_save pauses a VM started
    // with spec.template_dir and writes what restore needs into that
    // directory (the guest memory and the device state); the VM stays
    // paused and the caller kills it. restore starts a VM for spec from the
    // template in template_dir: spec has the template's vCPUs, memory and
    // device set (as many disks, a NIC if it had one) but its own disk
    // files, tap and state dir; guest memory is mapped from the template's
    // file, private, not read. Returns once the guest runs again.
    int (*template_save)(vmm_vm_t *vm, const char *template_dir, int timeout_ms,
                         vmlet_err_t *err);
    vmm_vm_t *(*restore)(vmm_t *vmm, const vmm_spec_t *spec, const char *template_dir,
                         vmlet_err_t *err);
} vmm_ops_t;

extern const vmm_ops_t vmm_qemu_ops;
extern const vmm_ops_t vmm_firecracker_ops;

// Selects settings->backend and checks this host can run it (KVM probe
// unless settings->kvm is given, binary version). NULL + err when not:
// e.g. "backend firecracker: no working KVM (...); use backend qemu".
vmm_t *vmm_new(const vmm_settings_t *settings, vmlet_err_t *err);
void vmm_destroy(vmm_t **self_p);
const vmm_ops_t *vmm_ops(const vmm_t *self);
// "qemu (tcg, tb-size 32 MiB)" etc., for the launcher's start-up log line.
const char *vmm_describe(const vmm_t *self, char *buf, size_t cap);
const kvm_probe_t *vmm_kvm(const vmm_t *self);
// What a template made with this VMM depends on (backend, binary,
// accelerator, the guest's TSC rate...), one line, for its key.
const char *vmm_template_inputs(const vmm_t *self, char *buf, size_t cap);

// Dispatching wrappers: vmm_start(v, ...) is vmm_ops(v)->start(v, ...).
vmm_vm_t *vmm_start(vmm_t *vmm, const vmm_spec_t *spec, vmlet_err_t *err);
vmm_vm_t *vmm_adopt(vmm_t *vmm, const char *state_dir, vmlet_err_t *err);
int vmm_agent_connect(vmm_vm_t *vm, int timeout_ms, vmlet_err_t *err);
int vmm_shutdown(vmm_vm_t *vm, vmlet_err_t *err);
int vmm_kill(vmm_vm_t *vm, int timeout_ms, vmlet_err_t *err);
bool vmm_alive(vmm_vm_t *vm);
int64_t vmm_rss_bytes(vmm_vm_t *vm);
// CPU time (user + system, ms) the VMM process has used so far; -1 if gone.
int64_t vmm_cpu_ms(const vmm_vm_t *vm);
void vmm_release(vmm_vm_t **vm_p);
int vmm_template_save(vmm_vm_t *vm, const char *template_dir, int timeout_ms, vmlet_err_t *err);
vmm_vm_t *vmm_restore(vmm_t *vmm, const vmm_spec_t *spec, const char *template_dir,
                      vmlet_err_t *err);

// Accessors shared by every backend.
pid_t vmm_vm_pid(const vmm_vm_t *vm);
const char *vmm_vm_id(const vmm_vm_t *vm);
const char *vmm_vm_state_dir(const vmm_vm_t *vm);
// A pidfd that polls readable when the VMM exits (owned by the handle),
// for the launcher's event loop; -1 if the kernel has none.
int vmm_vm_exit_fd(const vmm_vm_t *vm);
// Waits up to timeout_ms for the VMM to exit. 0 when gone, -1 if still running.
int vmm_wait_exit(vmm_vm_t *vm, int timeout_ms);
// Once the VMM is gone: removes its sockets, pid and state files (not the
// console log). Refuses while it runs.
int vmm_remove_files(vmm_vm_t *vm, vmlet_err_t *err);

#endif
