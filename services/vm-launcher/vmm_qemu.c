// The QEMU backend: `qemu-system-x86_64 -M microvm`, detached with
// -daemonize and driven over QMP. The guest agent channel is a
// virtserialport named "vmlet.agent" whose host end is a unix socket QEMU
// listens on.
#include "qmp.h"
#include "vmm_backend.h"

#include "host_tsc.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <unistd.h>

#define QEMU_ARGV_MAX 96
#define TSC_SAMPLE_MS 200 // the TSC rate to 1 in 10^4 or better: the guest clock's error
#define KERNEL_CMDLINE_MAX 2048 // x86 boot protocol's COMMAND_LINE_SIZE

// Kernel arguments every QEMU guest gets:
//  console=ttyS0  the microvm's one ISA serial port, into console.log;
//  reboot=t       reboot by triple fault, the one way that works on microvm
//                 (docs/system/i386/microvm.rst); with -no-reboot QEMU exits;
//  panic=-1       a panicking guest reboots at once, so QEMU exits too;
//  quiet          keeps the console log (and boot time under TCG) small.
#define QEMU_BASE_CMDLINE "console=ttyS0 reboot=t panic=-1 quiet"
// Under TCG the kernel cannot calibrate the TSC against the (absent) PIT
// and, about 1 boot in 12 and more often under CPU load, hangs after
// "Marking TSC unstable"; telling it the rate made 15 of 15 boots work
// (DESIGN.md §4). The rate must be the host's (TCG's rdtsc reads the
// host's counter): a fixed 2 GHz made the guest clock run 1.3 times fast on
// this 2.6 GHz host (26 s of guest time per 20 s). Not under KVM, where the
// guest has kvm-clock.
char *vmm_kernel_cmdline(const char *base, long tcg_tsc_khz, const char *extra)
{
    char tcg[96] = "";
    if (tcg_tsc_khz > 0)
        snprintf(tcg, sizeof tcg, " tsc_early_khz=%ld tsc=reliable", tcg_tsc_khz);
    size_t cap = strlen(base) + strlen(tcg) + (extra ? strlen(extra) : 0) + 2;
    char *out = vmlet_xmalloc(cap);
    snprintf(out, cap, "%s%s%s%s", base, tcg, extra && *extra ? " " : "",
             extra && *extra ? extra : "");
    return out;
}

// QEMU's option syntax: a comma inside a value is written twice.
static char *s_opt_escape(const char *value)
{
    size_t n = 0;
    for (const char *p = value; *p; p++)
        n += *p == ',' ? 2 : 1;
    char *out = vmlet_xmalloc(n + 1), *q = out;
    for (const char *p = value; *p; p++) {
        *q++ = *p;
        if (*p == ',')
            *q++ = ',';
    }
    *q = '\0';
    return out;
}

typedef struct {
    char **argv;
    size_t n;
} s_argv_t;

static void s_add(s_argv_t *a, const char *arg)
{
    if (a->n + 1 < QEMU_ARGV_MAX)
        a->argv[a->n++] = vmlet_xstrdup(arg);
}

static void s_addf(s_argv_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_addf(s_argv_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *arg = NULL;
    if (vasprintf(&arg, fmt, ap) < 0)
        abort(); // out of memory, as vmlet_xmalloc would
    va_end(ap);
    if (a->n + 1 < QEMU_ARGV_MAX)
        a->argv[a->n++] = arg;
    else
        free(arg);
}

static bool s_valid_mac(const char *mac)
{
    if (!mac || strlen(mac) != 17)
        return false;
    for (int i = 0; i < 17; i++)
        if (i % 3 == 2 ? mac[i] != ':' : !isxdigit((unsigned char)mac[i]))
            return false;
    return true;
}

// Checks the parts of a spec both backends need, before anything starts.
int vmm_spec_check(const vmm_spec_t *spec, vmlet_err_t *err)
{
    if (spec->vcpus < 1 || spec->mem_mib < 16)
        return vmlet_err_set(err, "VM %s: %d vCPUs, %d MiB: want at least 1 vCPU and 16 MiB",
                             spec->id, spec->vcpus, spec->mem_mib);
    if (!spec->kernel || !*spec->kernel)
        return vmlet_err_set(err, "VM %s: no kernel", spec->id);
    if (spec->n_disks > VMM_MAX_DISKS)
        return vmlet_err_set(err, "VM %s: %zu disks, at most %d", spec->id, spec->n_disks,
                             VMM_MAX_DISKS);
    for (size_t i = 0; i < spec->n_disks; i++) {
        const vmm_disk_t *d = &spec->disks[i];
        if (!d->path || !*d->path)
            return vmlet_err_set(err, "VM %s: disk %zu has no path", spec->id, i);
        if (d->serial) {
            size_t len = strlen(d->serial);
            bool printable = true;
            for (const char *p = d->serial; *p; p++)
                printable = printable && isgraph((unsigned char)*p);
            if (len == 0 || len > VMM_DISK_SERIAL_MAX || !printable)
                return vmlet_err_set(err,
                                     "VM %s: disk serial \"%s\": want 1 to %d printable bytes "
                                     "without spaces",
                                     spec->id, d->serial, VMM_DISK_SERIAL_MAX);
        }
    }
    if (spec->nic) {
        if (spec->nic->tap && (!*spec->nic->tap || strlen(spec->nic->tap) > 15))
            return vmlet_err_set(err, "VM %s: tap name \"%s\": want 1 to 15 bytes", spec->id,
                                 spec->nic->tap ? spec->nic->tap : "");
        if (!s_valid_mac(spec->nic->mac))
            return vmlet_err_set(err, "VM %s: MAC \"%s\": want xx:xx:xx:xx:xx:xx", spec->id,
                                 spec->nic->mac ? spec->nic->mac : "");
    }
    return 0;
}

// The value of -name; adopt looks for exactly this argument in
// /proc/<pid>/cmdline to know a process is this VM's QEMU. The process
// name (15 bytes at most) makes `ps`/`top` show which pod it is.
static char *s_name_arg(const char *id)
{
    char *arg = NULL;
    if (asprintf(&arg, "guest=vmlet-%s,process=vm-%.12s", id, id) < 0)
        abort();
    return arg;
}

char **vmm_qemu_argv(const vmm_qemu_argv_opts_t *opts, const vmm_spec_t *spec, vmlet_err_t *err)
{
    if (vmm_spec_check(spec, err) < 0)
        return NULL;
    char *cmdline =
        vmm_kernel_cmdline(QEMU_BASE_CMDLINE, opts->kvm ? 0 : opts->tsc_khz, spec->cmdline);
    if (strlen(cmdline) >= KERNEL_CMDLINE_MAX) {
        free(cmdline);
        vmlet_err_set(err, "VM %s: kernel command line over %d bytes", spec->id,
                      KERNEL_CMDLINE_MAX);
        return NULL;
    }
    s_argv_t a = {.argv = vmlet_xcalloc(QEMU_ARGV_MAX, sizeof(char *))};
    char *esc;
    s_add(&a, opts->binary);
    char *name = s_name_arg(spec->id);
    s_add(&a, "-name");
    s_add(&a, name);
    free(name);
    // microvm: no PCI, virtio-mmio devices, boots a kernel directly.
    //  x-option-roms=off  nothing to load: saves boot time;
    //  isa-serial=on      the console (ttyS0);
    //  acpi=on            the power button for system_powerdown: with
    //                     acpi=off the guest halts instead of powering off
    //                     and QEMU never exits (DESIGN.md §4);
    //  rtc, pit, pic      left on auto: QEMU picks per accelerator (TCG: an
    //                     RTC for the wall clock and no PIT; KVM: kvmclock).
    //                     pit=on made TCG boots hang more often (3 in 15).
    //  memory-backend   a template's file (vmm_backend.h), when given.
    s_add(&a, "-M");
    s_addf(&a, "microvm,x-option-roms=off,isa-serial=on,acpi=on%s",
           opts->memory_file ? ",memory-backend=mem" : "");
    if (opts->memory_file) {
        esc = s_opt_escape(opts->memory_file);
        s_add(&a, "-object");
        s_addf(&a, "memory-backend-file,id=mem,size=%dM,mem-path=%s,share=%s", spec->mem_mib, esc,
               opts->memory_shared ? "on" : "off");
        free(esc);
    }
    s_add(&a, "-accel");
    if (opts->kvm)
        s_add(&a, "kvm");
    else
        // tb-size bounds the translated-code cache (QEMU reserves up to
        // 1 GiB by default and touches it as it goes), which is most of
        // what TCG adds to the RSS beyond guest memory.
        s_addf(&a, "tcg,tb-size=%d", opts->tb_size_mib > 0 ? opts->tb_size_mib : 32);
    if (opts->cpu && *opts->cpu) {
        s_add(&a, "-cpu");
        s_add(&a, opts->cpu);
    }
    s_add(&a, "-m");
    s_addf(&a, "%d", spec->mem_mib);
    s_add(&a, "-smp");
    s_addf(&a, "%d", spec->vcpus);
    s_add(&a, "-nodefaults");
    s_add(&a, "-no-user-config");
    s_add(&a, "-nographic");
    s_add(&a, "-no-reboot");
    s_add(&a, "-kernel");
    s_add(&a, spec->kernel);
    if (spec->initrd && *spec->initrd) {
        s_add(&a, "-initrd");
        s_add(&a, spec->initrd);
    }
    s_add(&a, "-append");
    s_add(&a, cmdline);
    free(cmdline);

    s_add(&a, "-chardev");
    esc = s_opt_escape(opts->console);
    s_addf(&a, "file,id=console,path=%s", esc);
    free(esc);
    s_add(&a, "-serial");
    s_add(&a, "chardev:console");

    for (size_t i = 0; i < spec->n_disks; i++) {
        const vmm_disk_t *d = &spec->disks[i];
        esc = s_opt_escape(d->path);
        s_add(&a, "-drive");
        s_addf(&a, "id=disk%zu,if=none,format=raw,file=%s%s", i, esc,
               d->read_only ? ",readonly=on" : "");
        free(esc);
        s_add(&a, "-device");
        if (d->serial) {
            esc = s_opt_escape(d->serial);
            s_addf(&a, "virtio-blk-device,drive=disk%zu,serial=%s", i, esc);
            free(esc);
        } else {
            s_addf(&a, "virtio-blk-device,drive=disk%zu", i);
        }
    }
    if (spec->nic && !spec->nic->tap) {
        // A template's NIC: a hub port alone goes nowhere. Its guest never
        // drives it (the agent loads virtio_net for a pod only), and the
        // VMs restored from it have a tap in its place.
        s_add(&a, "-netdev");
        s_add(&a, "hubport,id=net0,hubid=0");
        s_add(&a, "-device");
        s_addf(&a, "virtio-net-device,netdev=net0,mac=%s", spec->nic->mac);
    } else if (spec->nic) {
        // The tap is opened by name in QEMU's network namespace (the
        // spawner setns()es there first), so no fd passing is needed.
        esc = s_opt_escape(spec->nic->tap);
        s_add(&a, "-netdev");
        s_addf(&a, "tap,id=net0,ifname=%s,script=no,downscript=no", esc);
        free(esc);
        s_add(&a, "-device");
        s_addf(&a, "virtio-net-device,netdev=net0,mac=%s", spec->nic->mac);
    }
    // The agent channel. server=on,wait=off: QEMU listens and boots without
    // waiting for us, and keeps listening when we go away (a launcher
    // restart), so the next launcher simply connects again.
    s_add(&a, "-device");
    s_add(&a, "virtio-serial-device");
    esc = s_opt_escape(opts->agent);
    s_add(&a, "-chardev");
    s_addf(&a, "socket,id=agent,path=%s,server=on,wait=off", esc);
    free(esc);
    s_add(&a, "-device");
    s_add(&a, "virtserialport,chardev=agent,name=vmlet.agent");
    esc = s_opt_escape(opts->control);
    s_add(&a, "-chardev");
    s_addf(&a, "socket,id=qmp,path=%s,server=on,wait=off", esc);
    free(esc);
    s_add(&a, "-mon");
    s_add(&a, "chardev=qmp,mode=control");
    if (opts->incoming) {
        s_add(&a, "-incoming");
        s_add(&a, "defer");
    }
    // -daemonize: QEMU forks, its parent exits once the VM is set up (or
    // with an error), and the VM runs in its own session, not our child.
    s_add(&a, "-pidfile");
    s_add(&a, opts->pidfile);
    s_add(&a, "-daemonize");
    a.argv[a.n] = NULL;
    return a.argv;
}

// --- the ops --------------------------------------------------------------

static int s_check(vmm_t *vmm, vmlet_err_t *err)
{
    const char *accel = vmm->settings.accel;
    if (strcmp(accel, "tcg") == 0) {
        vmm->use_kvm = false;
    } else if (strcmp(accel, "kvm") == 0) {
        if (vmm->kvm.reason[0] && !vmm->kvm.usable && strncmp(vmm->kvm.reason, "not probed", 10))
            return vmlet_err_set(err, "accel kvm: no working KVM (%s); use accel auto or tcg",
                                 vmm->kvm.reason);
        vmm->use_kvm = true;
    } else {
        vmm->use_kvm = vmm->kvm.usable;
    }
    if (!vmm->use_kvm) {
        vmm->tsc_khz = host_tsc_khz(TSC_SAMPLE_MS);
        if (vmm->tsc_khz <= 0)
            return vmlet_err_set(err, "backend qemu under TCG: cannot measure this host's TSC "
                                      "rate, which the guest kernel must be told");
    }
    char out[256];
    char *argv[] = {(char *)vmm->settings.qemu_binary, "--version", NULL};
    int rc = vmm_run_capture(argv, 5000, out, sizeof out, err);
    if (rc != 0) {
        if (rc > 0)
            vmlet_err_set(err, "%s --version: exit status %d", argv[0], rc);
        return vmlet_err_wrap(err, "backend qemu: install qemu-system-x86 or set the QEMU binary");
    }
    return 0;
}

static int s_query_running(vmm_vm_t *vm, int timeout_ms, vmlet_err_t *err)
{
    qmp_t *qmp = qmp_connect(vm->control, timeout_ms, err);
    if (!qmp)
        return -1;
    cJSON *status = NULL;
    int rc = qmp_execute(qmp, "query-status", NULL, &status, timeout_ms, err);
    qmp_destroy(&qmp);
    if (rc < 0)
        return -1;
    const char *state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(status, "status"));
    rc = state ? 0 : vmlet_err_set(err, "QMP query-status: no status in the reply");
    cJSON_Delete(status);
    return rc;
}

// Starts QEMU for spec: with opts' memory and incoming settings (the rest
// of opts is filled here). Returns once QMP answers.
vmm_vm_t *vmm_qemu_launch(vmm_t *vmm, const vmm_spec_t *spec, vmm_qemu_argv_opts_t opts,
                          vmlet_err_t *err)
{
    if (!spec->state_dir || spec->state_dir[0] != '/') {
        vmlet_err_set(err, "VM %s: state dir \"%s\" must be an absolute path", spec->id,
                      spec->state_dir ? spec->state_dir : "");
        return NULL;
    }
    vmm_vm_t *vm = vmm_vm_alloc(vmm, spec->id, spec->state_dir, err);
    if (!vm)
        return NULL;
    char console[VMM_SUN_PATH_MAX + 16], pidfile[VMM_SUN_PATH_MAX + 16], log[VMM_SUN_PATH_MAX + 16];
    snprintf(console, sizeof console, "%s/%s", vm->state_dir, VMM_FILE_CONSOLE);
    snprintf(pidfile, sizeof pidfile, "%s/%s", vm->state_dir, VMM_FILE_PID);
    snprintf(log, sizeof log, "%s/%s", vm->state_dir, VMM_FILE_LOG);
    // A QEMU of this VM may still run (a launcher that lost track of it):
    // starting a second one on the same disks must not happen.
    vmlet_err_t ignored;
    vmm_vm_t *old = vmm_adopt_common(vmm, vm->state_dir, &ignored);
    if (old) {
        vmlet_err_set(err, "VM %s already runs (pid %d); adopt it instead", spec->id, old->pid);
        vmm_vm_free(&old);
        vmm_vm_free(&vm);
        return NULL;
    }
    unlink(vm->control);
    unlink(vm->agent);
    unlink(pidfile);
    opts.binary = vmm->settings.qemu_binary;
    opts.kvm = vmm->use_kvm;
    opts.tb_size_mib = vmm->settings.tcg_tb_size_mib;
    opts.tsc_khz = vmm->tsc_khz;
    opts.cpu = vmm->settings.qemu_cpu;
    opts.control = vm->control;
    opts.agent = vm->agent;
    opts.console = console;
    opts.pidfile = pidfile;
    char **argv = vmm_qemu_argv(&opts, spec, err);
    if (!argv) {
        vmm_vm_free(&vm);
        return NULL;
    }
    int64_t t0 = vmlet_now_ms();
    int rc = vmm_spawn(vmm, argv, spec->netns, log, VMM_SPAWN_WAIT, vmm->settings.start_timeout_ms, NULL,
                       err);
    vmm_argv_free(&argv);
    pid_t pid = -1;
    if (rc == 0)
        rc = vmm_read_pidfile(pidfile, &pid, err);
    if (rc == 0)
        rc = vmm_vm_attach_pid(vm, pid, err);
    if (rc == 0)
        rc = vmm_state_write(vm, err);
    if (rc == 0) {
        int left = vmm->settings.start_timeout_ms - (int)(vmlet_now_ms() - t0);
        rc = s_query_running(vm, left > 100 ? left : 100, err);
    }
    if (rc < 0) {
        vmlet_err_wrap(err, "VM %s: qemu", spec->id);
        if (vm->pid > 0)
            vmm_common_kill(vm, 2000, NULL);
        vmm_vm_free(&vm);
        return NULL;
    }
    return vm;
}

static vmm_vm_t *s_start(vmm_t *vmm, const vmm_spec_t *spec, vmlet_err_t *err)
{
    vmm_qemu_argv_opts_t opts = {0};
    char memory[PATH_MAX];
    if (spec->template_dir) {
        // A template VM writes its memory into the template's file.
        if (vmm_path(memory, sizeof memory, spec->template_dir, VMM_TEMPLATE_MEMORY, err) < 0)
            return NULL;
        opts.memory_file = memory;
        opts.memory_shared = true;
    }
    return vmm_qemu_launch(vmm, spec, opts, err);
}

static vmm_vm_t *s_adopt(vmm_t *vmm, const char *state_dir, vmlet_err_t *err)
{
    vmm_vm_t *vm = vmm_adopt_common(vmm, state_dir, err);
    if (!vm)
        return NULL;
    char *name = s_name_arg(vm->id);
    bool ours = vmm_cmdline_has(vm->pid, name);
    free(name);
    if (!ours) {
        vmlet_err_set(err, "VM %s: process %d is not its QEMU (no -name for it)", vm->id, vm->pid);
        vmm_vm_free(&vm);
        return NULL;
    }
    if (s_query_running(vm, vmm->settings.control_timeout_ms, err) < 0) {
        vmlet_err_wrap(err, "VM %s: adopting pid %d", vm->id, vm->pid);
        vmm_vm_free(&vm);
        return NULL;
    }
    return vm;
}

// QEMU's chardev serves one client at a time: a second connection is
// accepted by the kernel but served only after the first closes.
static int s_agent_connect(vmm_vm_t *vm, int timeout_ms, vmlet_err_t *err)
{
    int fd = vmm_unix_connect(vm->agent, timeout_ms, err);
    if (fd < 0)
        return vmlet_err_wrap(err, "VM %s: agent channel", vm->id);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static int s_shutdown(vmm_vm_t *vm, vmlet_err_t *err)
{
    int timeout = vm->vmm->settings.control_timeout_ms;
    qmp_t *qmp = qmp_connect(vm->control, timeout, err);
    if (!qmp)
        return vmlet_err_wrap(err, "VM %s: shutdown", vm->id);
    int rc = qmp_execute(qmp, "system_powerdown", NULL, NULL, timeout, err);
    qmp_destroy(&qmp);
    return rc < 0 ? vmlet_err_wrap(err, "VM %s: shutdown", vm->id) : 0;
}

const vmm_ops_t vmm_qemu_ops = {
    .name = "qemu",
    .check = s_check,
    .start = s_start,
    .adopt = s_adopt,
    .agent_connect = s_agent_connect,
    .shutdown = s_shutdown,
    .kill = vmm_common_kill,
    .alive = vmm_common_alive,
    .rss_bytes = vmm_common_rss_bytes,
    .release = vmm_common_release,
    .template_save = vmm_qemu_template_save,
    .restore = vmm_qemu_restore,
};
