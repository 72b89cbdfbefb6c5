// A minimal raw QEMU boot (see raw_vm.h).
#include "raw_vm.h"

#include "host_tsc.h"

#include "testsupport.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARGV_MAX 64

// The flags the launcher uses too: microvm without option ROMs, the ISA
// serial console, ACPI for the power button; the kernel told the host's
// TSC rate (TCG boots hang now and then otherwise, DESIGN.md §4, and a
// wrong rate makes the guest clock run fast or slow).
#define BASE_CMDLINE "console=ttyS0 reboot=t panic=-1 quiet tsc=reliable"

int raw_vm_start(const raw_vm_opts_t *o, raw_vm_t *vm)
{
    memset(vm, 0, sizeof *vm);
    snprintf(vm->agent_sock, sizeof vm->agent_sock, "%s/agent.sock", o->dir);
    snprintf(vm->console_log, sizeof vm->console_log, "%s/console.log", o->dir);
    unlink(vm->agent_sock);
    char *argv[ARGV_MAX + 1];
    char *owned[ARGV_MAX];
    size_t n = 0, n_owned = 0;
#define ADD(s) (argv[n++] = (char *)(s))
#define ADDF(...)                                                                                  \
    do {                                                                                           \
        char *s_ = NULL;                                                                           \
        if (asprintf(&s_, __VA_ARGS__) < 0)                                                        \
            abort();                                                                               \
        owned[n_owned++] = s_;                                                                     \
        ADD(s_);                                                                                   \
    } while (0)
    if (o->netns) {
        ADD("ip");
        ADD("netns");
        ADD("exec");
        ADD(o->netns);
    }
    ADD("qemu-system-x86_64");
    ADD("-M");
    ADD("microvm,x-option-roms=off,isa-serial=on,acpi=on");
    ADD("-accel");
    ADD("tcg,tb-size=32");
    ADD("-m");
    ADDF("%d", o->memory_mib > 0 ? o->memory_mib : 256);
    ADD("-smp");
    ADD("1");
    ADD("-nodefaults");
    ADD("-no-user-config");
    ADD("-nographic");
    ADD("-no-reboot");
    ADD("-kernel");
    ADD(o->kernel);
    ADD("-initrd");
    ADD(o->initrd);
    ADD("-append");
    ADDF("%s tsc_early_khz=%ld%s%s", BASE_CMDLINE, host_tsc_khz(100), o->cmdline ? " " : "",
         o->cmdline ? o->cmdline : "");
    ADD("-chardev");
    ADDF("file,id=console,path=%s", vm->console_log);
    ADD("-serial");
    ADD("chardev:console");
    for (size_t i = 0; i < o->n_disks && n + 8 < ARGV_MAX; i++) {
        ADD("-drive");
        ADDF("id=disk%zu,if=none,format=raw,file=%s%s", i, o->disks[i].path,
             o->disks[i].read_only ? ",readonly=on" : "");
        ADD("-device");
        if (o->disks[i].serial)
            ADDF("virtio-blk-device,drive=disk%zu,serial=%s", i, o->disks[i].serial);
        else
            ADDF("virtio-blk-device,drive=disk%zu", i);
    }
    if (o->tap) {
        ADD("-netdev");
        ADDF("tap,id=net0,ifname=%s,script=no,downscript=no", o->tap);
        ADD("-device");
        ADDF("virtio-net-device,netdev=net0%s%s", o->mac ? ",mac=" : "", o->mac ? o->mac : "");
    }
    ADD("-device");
    ADD("virtio-serial-device");
    ADD("-chardev");
    ADDF("socket,id=agent,path=%s,server=on,wait=off", vm->agent_sock);
    ADD("-device");
    ADD("virtserialport,chardev=agent,name=vmlet.agent");
    argv[n] = NULL;
#undef ADD
#undef ADDF
    char log[400];
    snprintf(log, sizeof log, "%s/qemu.log", o->dir);
    vm->started_ms = (long long)ts_now_ms();
    vm->pid = ts_spawn(log, argv);
    for (size_t i = 0; i < n_owned; i++)
        free(owned[i]);
    if (vm->pid < 0) {
        fprintf(stderr, "raw_vm: could not start qemu-system-x86_64\n");
        return -1;
    }
    return 0;
}

int raw_vm_connect(const raw_vm_t *vm, int timeout_ms)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(vm->agent_sock) >= sizeof addr.sun_path) {
        fprintf(stderr, "raw_vm: socket path %s is too long\n", vm->agent_sock);
        return -1;
    }
    memcpy(addr.sun_path, vm->agent_sock, strlen(vm->agent_sock) + 1);
    int64_t deadline = ts_now_ms() + timeout_ms;
    while (ts_now_ms() < deadline) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0)
            return fd;
        close(fd);
        siginfo_t info = {0};
        // WNOWAIT: a dead QEMU stays to be reaped by raw_vm_wait.
        if (vm->pid > 0 && waitid(P_PID, (id_t)vm->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == vm->pid) {
            fprintf(stderr, "raw_vm: QEMU exited before its agent socket took a connection\n");
            return -1;
        }
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

int raw_vm_wait(raw_vm_t *vm, int timeout_ms, int *status)
{
    if (vm->pid <= 0)
        return -1;
    if (ts_wait_exit(vm->pid, timeout_ms, status) < 0)
        return -1;
    vm->pid = 0;
    return 0;
}

void raw_vm_kill(raw_vm_t *vm)
{
    if (vm->pid <= 0)
        return;
    ts_kill(vm->pid, SIGKILL);
    int status;
    ts_wait_exit(vm->pid, 10000, &status);
    vm->pid = 0;
}
