// The KVM_RUN probe (see kvm_probe.h). A guest that only executes a few
// instructions is not enough: on these nested machines such a guest runs,
// but at about 1 microsecond per instruction, so a Linux boot "hangs"
// (DESIGN.md §4). The probe guest therefore starts in 64-bit long mode (as
// Linux runs), spins through PROBE_LOOPS iterations (a few milliseconds on
// real hardware virtualisation), then does `out 0x10, 0x42; hlt`. The
// verdict needs KVM_EXIT_IO with that byte, then KVM_EXIT_HLT, all before
// the deadline.
#include "kvm_probe.h"

#include "vmlet/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define GUEST_MEM 0x200000 // 2 MiB, identity-mapped by one large page
#define PML4_ADDR 0x2000
#define PDPT_ADDR 0x3000
#define PD_ADDR 0x4000
#define CODE_ADDR 0x10000
#define PROBE_PORT 0x10
#define PROBE_BYTE 0x42
#ifndef PROBE_LOOPS
#define PROBE_LOOPS 20000000ULL
#endif

// clang-format off
static const uint8_t s_guest_code[] = {
    0x48, 0xb9, 0, 0, 0, 0, 0, 0, 0, 0, // mov rcx, PROBE_LOOPS (patched in)
    0x48, 0xff, 0xc9,                   // 1: dec rcx
    0x75, 0xfb,                         //    jnz 1b
    0xb0, PROBE_BYTE,                   // mov al, 0x42
    0xe6, PROBE_PORT,                   // out 0x10, al
    0xf4,                               // hlt
};
// clang-format on

// Child side: writes "ok <text>" or "no <text>" to fd.
static int s_say(int fd, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int s_say(int fd, bool ok, const char *fmt, ...)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%s ", ok ? "ok" : "no");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    ssize_t rc = write(fd, buf, strlen(buf));
    (void)rc;
    return 0;
}

static const char *s_exit_name(uint32_t reason)
{
    switch (reason) {
    case KVM_EXIT_UNKNOWN:
        return "UNKNOWN";
    case KVM_EXIT_EXCEPTION:
        return "EXCEPTION";
    case KVM_EXIT_IO:
        return "IO";
    case KVM_EXIT_HLT:
        return "HLT";
    case KVM_EXIT_MMIO:
        return "MMIO";
    case KVM_EXIT_SHUTDOWN:
        return "SHUTDOWN";
    case KVM_EXIT_FAIL_ENTRY:
        return "FAIL_ENTRY";
    case KVM_EXIT_INTERNAL_ERROR:
        return "INTERNAL_ERROR";
    default:
        return "other";
    }
}

// The probe proper, in the child. Resources die with the child.
static int s_probe(const char *dev, int out)
{
    int kvm = open(dev, O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        return s_say(out, false, "open %s: %s", dev, strerror(errno));
    int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION)
        return s_say(out, false, "%s: KVM_GET_API_VERSION is %d, want %d", dev, api,
                     KVM_API_VERSION);
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        return s_say(out, false, "KVM_CREATE_VM: %s", strerror(errno));
    uint8_t *mem = mmap(NULL, GUEST_MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return s_say(out, false, "mmap guest memory: %s", strerror(errno));
    memcpy(mem + CODE_ADDR, s_guest_code, sizeof s_guest_code);
    uint64_t loops = PROBE_LOOPS;
    memcpy(mem + CODE_ADDR + 2, &loops, sizeof loops);
    uint64_t entry;
    entry = PDPT_ADDR | 3; // present, writable
    memcpy(mem + PML4_ADDR, &entry, sizeof entry);
    entry = PD_ADDR | 3;
    memcpy(mem + PDPT_ADDR, &entry, sizeof entry);
    entry = 0x83; // present, writable, 2 MiB page at 0
    memcpy(mem + PD_ADDR, &entry, sizeof entry);
    struct kvm_userspace_memory_region region = {.slot = 0,
                                                 .guest_phys_addr = 0,
                                                 .memory_size = GUEST_MEM,
                                                 .userspace_addr = (uint64_t)(uintptr_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        return s_say(out, false, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        return s_say(out, false, "KVM_CREATE_VCPU: %s", strerror(errno));
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run))
        return s_say(out, false, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        return s_say(out, false, "mmap kvm_run: %s", strerror(errno));
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
        return s_say(out, false, "KVM_GET_SREGS: %s", strerror(errno));
    // Long mode straight away: paging on, PAE, EFER.LME|LMA, a 64-bit code segment.
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 = 1u << 5;                 // PAE
    sregs.cr0 = 0x80050033;              // PG, AM, WP, NE, ET, MP, PE
    sregs.efer = (1u << 8) | (1u << 10); // LME, LMA
    struct kvm_segment seg = {.base = 0,
                              .limit = 0xffffffff,
                              .selector = 8,
                              .present = 1,
                              .type = 11,
                              .s = 1,
                              .l = 1,
                              .g = 1};
    sregs.cs = seg;
    seg.type = 3;
    seg.selector = 16;
    seg.l = 0;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
        return s_say(out, false, "KVM_SET_SREGS (long mode): %s", strerror(errno));
    struct kvm_regs regs = {.rip = CODE_ADDR, .rflags = 0x2, .rsp = GUEST_MEM - 0x1000};
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
        return s_say(out, false, "KVM_SET_REGS: %s", strerror(errno));

    int64_t t0 = vmlet_now_ms();
    if (ioctl(vcpu, KVM_RUN, 0) < 0)
        return s_say(out, false, "first KVM_RUN: %s", strerror(errno));
    if (run->exit_reason != KVM_EXIT_IO)
        return s_say(out, false, "first KVM_RUN exited with %s (%u), want IO%s",
                     s_exit_name(run->exit_reason), run->exit_reason,
                     run->exit_reason == KVM_EXIT_FAIL_ENTRY ? " (hardware entry failure)" : "");
    uint8_t byte = *((uint8_t *)run + run->io.data_offset);
    if (run->io.direction != KVM_EXIT_IO_OUT || run->io.port != PROBE_PORT || byte != PROBE_BYTE)
        return s_say(out, false, "KVM_EXIT_IO carried port 0x%x byte 0x%x, want 0x%x 0x%x",
                     run->io.port, byte, PROBE_PORT, PROBE_BYTE);
    if (ioctl(vcpu, KVM_RUN, 0) < 0)
        return s_say(out, false, "second KVM_RUN: %s", strerror(errno));
    if (run->exit_reason != KVM_EXIT_HLT)
        return s_say(out, false, "second KVM_RUN exited with %s (%u), want HLT",
                     s_exit_name(run->exit_reason), run->exit_reason);
    return s_say(out, true,
                 "KVM_RUN ran a 64-bit test guest (%llu-iteration loop) to its hlt in %lld ms",
                 (unsigned long long)PROBE_LOOPS, (long long)(vmlet_now_ms() - t0));
}

void kvm_probe_run(const char *dev, int timeout_ms, kvm_probe_t *out)
{
    if (!dev)
        dev = "/dev/kvm";
    if (timeout_ms <= 0)
        timeout_ms = 2000;
    memset(out, 0, sizeof *out);
    if (access(dev, F_OK) != 0) {
        snprintf(out->reason, sizeof out->reason, "%s: %s", dev, strerror(errno));
        return;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(out->reason, sizeof out->reason, "probe pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(out->reason, sizeof out->reason, "probe fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return;
    }
    if (pid == 0) {
        close(fds[0]);
        s_probe(dev, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    char buf[sizeof out->reason + 4] = "";
    size_t n = 0;
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    bool timed_out = false;
    for (;;) {
        int left = (int)(deadline - vmlet_now_ms());
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int rc = poll(&p, 1, left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0) {
            timed_out = rc == 0;
            break;
        }
        ssize_t got = read(fds[0], buf + n, sizeof buf - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(fds[0]);
    // SIGKILL is the only way out of a KVM_RUN that never returns.
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    buf[n] = '\0';
    if (timed_out && n == 0) {
        snprintf(
            out->reason, sizeof out->reason,
            "%s: KVM_RUN did not finish a 64-bit test guest's %lluM-iteration loop within %d ms "
            "(real hardware virtualisation takes a few ms; this KVM is too slow or hangs, "
            "e.g. nested without acceleration)",
            dev, (unsigned long long)(PROBE_LOOPS / 1000000), timeout_ms);
    } else if (n < 3) {
        snprintf(out->reason, sizeof out->reason, "%s: the probe process died without a verdict",
                 dev);
    } else {
        out->usable = strncmp(buf, "ok ", 3) == 0;
        size_t len = strnlen(buf + 3, sizeof out->reason - 1);
        memcpy(out->reason, buf + 3, len);
        out->reason[len] = '\0';
    }
}
