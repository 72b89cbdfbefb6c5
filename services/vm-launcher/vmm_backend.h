// What the VMM backends share (vmm.c implements it) and what tests reach
// into: the VM handle's layout, the per-VM file names, spawning a VMM
// outside the launcher's lifetime, the state file, process checks, and the
// QEMU command line builder. Not for the launcher: it uses vmm.h.
#ifndef VMLET_LAUNCHER_VMM_BACKEND_H
#define VMLET_LAUNCHER_VMM_BACKEND_H

#include "vmm.h"
#include "vmm_spawn.h"

#include <cjson/cJSON.h>
#include <sys/types.h>

#define VMM_SUN_PATH_MAX 108

// Files in a VM's state directory. Short names keep socket paths within
// sun_path (108 bytes) for state directories up to ~90 bytes.
#define VMM_FILE_CONTROL "ctl.sock"    // QMP / Firecracker API
#define VMM_FILE_AGENT "agent.sock"    // virtserialport chardev / Firecracker vsock UDS
#define VMM_FILE_CONSOLE "console.log" // the guest's serial console
#define VMM_FILE_LOG "vmm.log"         // the VMM's own stderr until it detaches
#define VMM_FILE_PID "vmm.pid"
#define VMM_FILE_STATE "vmm.json" // what adopt needs after a launcher restart

// Files in a template's directory (both backends).
#define VMM_TEMPLATE_MEMORY "mem"  // the guest memory
#define VMM_TEMPLATE_STATE "state" // the VMM's device state (QEMU: its migration stream)

struct _vmm_t {
    const vmm_ops_t *ops;
    vmm_settings_t settings; // strings owned (copied in vmm_new)
    kvm_probe_t kvm;
    bool use_kvm; // the accelerator the QEMU backend passes
    long tsc_khz; // QEMU under TCG: the host's TSC rate (host_tsc.h), measured once
};

struct _vmm_vm_t {
    vmm_t *vmm; // borrowed: outlives its VMs
    char id[VMM_ID_MAX + 1];
    char state_dir[VMM_SUN_PATH_MAX];
    char control[VMM_SUN_PATH_MAX];
    char agent[VMM_SUN_PATH_MAX];
    pid_t pid;
    unsigned long long start_time; // /proc/<pid>/stat field 22: tells pid reuse apart
    int pidfd;                     // pollable; -1 if the kernel has no pidfd_open
};

// A new handle for a VM in state_dir (paths filled, no process yet).
vmm_vm_t *vmm_vm_alloc(vmm_t *vmm, const char *id, const char *state_dir, vmlet_err_t *err);
// Forgets the process and closes the pidfd; the process keeps running.
void vmm_vm_free(vmm_vm_t **vm_p);
// Sets vm->pid and start_time, opens the pidfd. Fails if pid is not alive.
int vmm_vm_attach_pid(vmm_vm_t *vm, pid_t pid, vmlet_err_t *err);

// "<state_dir>/<name>" into buf; fails if it does not fit.
int vmm_path(char *buf, size_t cap, const char *state_dir, const char *name, vmlet_err_t *err);

// How a VMM is started so it outlives the launcher (vmm_spawn.h for the
// modes): by the launcher itself, or, when settings.vmm_host names a
// vmlet-vmm-host socket, by that process, so the VM is not in the
// launcher's container. netns is a path (NULL/"": ours); the VMM's
// stdout/stderr append to out_path.
int vmm_spawn(const vmm_t *vmm, char *const argv[], const char *netns, const char *out_path,
              vmm_spawn_mode_t mode, int timeout_ms, pid_t *pid_out, vmlet_err_t *err);

// Runs argv (no netns, no detaching), capturing up to cap-1 bytes of
// stdout+stderr, killed after timeout_ms. Returns the exit status or -1.
int vmm_run_capture(char *const argv[], int timeout_ms, char *out, size_t cap, vmlet_err_t *err);

// The state file (JSON: backend, id, pid, start time, sockets), written
// atomically; vmm_state_read returns the parsed object (caller deletes).
int vmm_state_write(const vmm_vm_t *vm, vmlet_err_t *err);
cJSON *vmm_state_read(const char *state_dir, vmlet_err_t *err);

// True if /proc/<pid>/cmdline has an argument equal to `arg`.
bool vmm_cmdline_has(pid_t pid, const char *arg);

// Connects a stream unix socket within timeout_ms (retrying while the
// listener is not there yet). Returns a blocking CLOEXEC fd or -1.
int vmm_unix_connect(const char *path, int timeout_ms, vmlet_err_t *err);

// The pid in a pid file.
int vmm_read_pidfile(const char *path, pid_t *pid, vmlet_err_t *err);

// Ops every backend shares (alive through the pidfd, SIGKILL, VmRSS).
bool vmm_common_alive(vmm_vm_t *vm);
int vmm_common_kill(vmm_vm_t *vm, int timeout_ms, vmlet_err_t *err);
int64_t vmm_common_rss_bytes(vmm_vm_t *vm);
void vmm_common_release(vmm_vm_t **vm_p);
// The shared half of adopt: reads the state file, checks it names this
// backend, and attaches the recorded pid if it is still the same process
// (same start time). The backend then checks the cmdline and the socket.
vmm_vm_t *vmm_adopt_common(vmm_t *vmm, const char *state_dir, vmlet_err_t *err);

// Checks what both backends need of a spec (sizes, disks, serials, NIC).
int vmm_spec_check(const vmm_spec_t *spec, vmlet_err_t *err);

// --- QEMU ---------------------------------------------------------------
typedef struct {
    const char *binary;
    bool kvm;                                        // -accel kvm, else tcg
    int tb_size_mib;                                 // TCG translation cache (bounds QEMU's RSS)
    long tsc_khz; // TCG: the host's TSC rate, told to the guest kernel (host_tsc.h); 0: not given
    const char *cpu;                                 // -cpu model, NULL for QEMU's default
    const char *control, *agent, *console, *pidfile; // files in the state dir
    // Guest memory in this file (a template's) instead of anonymous memory:
    // shared while the template VM writes it, private (copy on write, the
    // file never changes) for the VMs restored from it. NULL: anonymous.
    const char *memory_file;
    bool memory_shared;
    bool incoming; // -incoming defer: a restore, whose state comes over QMP
} vmm_qemu_argv_opts_t;

// Starts QEMU for spec with opts' memory and incoming settings (the
// backend fills in the rest); returns once QMP answers.
vmm_vm_t *vmm_qemu_launch(vmm_t *vmm, const vmm_spec_t *spec, vmm_qemu_argv_opts_t opts,
                          vmlet_err_t *err);
// Templates (vmm_qemu_template.c).
int vmm_qemu_template_save(vmm_vm_t *vm, const char *template_dir, int timeout_ms,
                           vmlet_err_t *err);
vmm_vm_t *vmm_qemu_restore(vmm_t *vmm, const vmm_spec_t *spec, const char *template_dir,
                           vmlet_err_t *err);

// The full QEMU command line for spec (NULL-terminated; free with
// vmm_argv_free). Pure: no I/O, so unit tests can check it.
char **vmm_qemu_argv(const vmm_qemu_argv_opts_t *opts, const vmm_spec_t *spec, vmlet_err_t *err);
// The kernel command line the backend gives the guest.
char *vmm_kernel_cmdline(const char *base, long tcg_tsc_khz, const char *extra);
void vmm_argv_free(char ***argv_p);

// --- Firecracker ------------------------------------------------------------
// Host side of Firecracker's vsock (docs/vsock.md): connects to the UDS,
// sends "CONNECT <port>\n" and reads "OK <host port>\n" without consuming
// anything after it. Returns an O_NONBLOCK|O_CLOEXEC fd or -1.
int vmm_vsock_connect(const char *uds, unsigned port, int timeout_ms, vmlet_err_t *err);

#endif
