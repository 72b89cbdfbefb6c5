// A deliberately minimal "raw QEMU boot" for tests and for the boot
// benchmark's baseline: qemu-system-x86_64 -M microvm under TCG with a
// kernel, an initramfs, raw disks, an optional tap, the agent's
// virtio-serial port on a unix socket and the console in a file. No QMP,
// no adoption, nothing of vm-launcher: what a boot costs without vmlet.
#ifndef VMLET_RAW_VM_H
#define VMLET_RAW_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
    const char *path;
    bool read_only;
    const char *serial; // NULL: none
} raw_vm_disk_t;

typedef struct {
    const char *kernel;  // vmlinuz
    const char *initrd;  // the initramfs
    const char *cmdline; // extra kernel arguments (the TCG and console ones are added)
    int memory_mib;      // 0: 256
    const raw_vm_disk_t *disks;
    size_t n_disks;
    const char *tap;   // NULL: no NIC
    const char *mac;   // with tap
    const char *netns; // run QEMU inside this network namespace (ip netns exec), or NULL
    const char *dir;   // where the agent socket and console.log go
} raw_vm_opts_t;

typedef struct {
    pid_t pid;
    char agent_sock[300];
    char console_log[300];
    long long started_ms; // monotonic, when QEMU was spawned
} raw_vm_t;

// Spawns QEMU (its own process group). Returns 0 or -1 (message on stderr).
int raw_vm_start(const raw_vm_opts_t *opts, raw_vm_t *vm);
// Connects to the agent socket, polling until QEMU has made it. Returns a
// connected blocking fd, or -1 after timeout_ms.
int raw_vm_connect(const raw_vm_t *vm, int timeout_ms);
// Waits up to timeout_ms for QEMU to exit. 0 and *status, or -1.
int raw_vm_wait(raw_vm_t *vm, int timeout_ms, int *status);
// SIGKILL and reap (no-op once it has exited).
void raw_vm_kill(raw_vm_t *vm);

#endif
