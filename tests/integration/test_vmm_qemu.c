// The QEMU backend against real QEMU under TCG (no working KVM here),
// booting the project's guest kernel with a tiny initramfs made here from
// Debian's busybox-static. Two boots in all:
//  1. started by a child process that then exits; adopted from the state
//     dir by a new vmm object; the agent channel carries lines both ways
//     and survives the host side going away; a disk's serial is visible in
//     the guest; system_powerdown powers it off and QEMU exits.
//  2. started directly; a second start of the same VM is refused; kill.
// It reports start -> first byte from the guest and QEMU's idle RSS.
#include "testsupport.h"

#include "vmm_backend.h"

#include "vmlet/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BOOT_TIMEOUT_MS 90000 // TCG on 2 shared cores: a boot takes 2-3 s, give slack
#define TB_SIZE_MIB 32

// Modules the test guest loads, in dependency order: the virtio core
// (virtio before virtio_ring fails), the console and block drivers, then
// the ACPI power button and evdev for system_powerdown.
static const char *const s_modules[] = {"virtio_ring", "virtio", "virtio_mmio", "virtio_console",
                                        "virtio_blk",  "button", "evdev"};

// PID 1 of the test guest. It powers off on the ACPI power button (busybox
// acpid runs /etc/acpi/PWRF/00000080), finds the vmlet.agent port by name,
// then says "ready <uptime>" each time a host connects (the write blocks
// until one does) and answers: ping X -> pong X; disks -> one line per
// /sys/block/vd* with its serial and ro flag, then "end".
static const char s_init[] =
    "#!/bin/busybox sh\n"
    "/bin/busybox --install -s /bin\n"
    "mount -t devtmpfs dev /dev; mount -t proc proc /proc; mount -t sysfs sys /sys\n"
    "for m in MODULES; do insmod /lib/modules/$m.ko || echo \"vmlet-test: insmod $m failed\"; "
    "done\n"
    "mkdir -p /etc/acpi/PWRF\n"
    "printf '#!/bin/sh\\necho vmlet-test: power button\\npoweroff -f\\n' "
    "> /etc/acpi/PWRF/00000080\n"
    "chmod +x /etc/acpi/PWRF/00000080\n"
    // acpid scans /dev/input once: wait for the button's node first.
    "for e in /sys/class/input/event*; do\n"
    "  [ \"$(cat $e/device/name)\" = 'Power Button' ] && button=/dev/input/${e##*/}\n"
    "done\n"
    "i=0; while [ -n \"$button\" ] && [ ! -e \"$button\" ] && [ $i -lt 50 ]; do "
    "sleep 0.1; i=$((i+1)); done\n"
    "echo \"vmlet-test: power button ${button:-missing}\"\n"
    "acpid -d -c /etc/acpi >/dev/console 2>&1 &\n"
    "port=\n"
    "for p in /sys/class/virtio-ports/*; do\n"
    "  [ \"$(cat $p/name)\" = vmlet.agent ] && port=/dev/${p##*/}\n"
    "done\n"
    "echo \"vmlet-test: agent port $port\"\n"
    "exec 3<>\"$port\"\n"
    "while :; do\n"
    "  echo \"ready $(cut -d' ' -f1 /proc/uptime)\" >&3\n"
    "  while read -r cmd arg <&3; do\n"
    "    case \"$cmd\" in\n"
    "    ping) echo \"pong $arg\" >&3 ;;\n"
    "    disks) for b in /sys/block/vd*; do\n"
    "             echo \"disk ${b##*/} $(cat $b/serial) ro=$(cat $b/ro)\" >&3; done\n"
    "           echo end >&3 ;;\n"
    "    esac\n"
    "  done\n"
    "done\n";

static struct {
    bool ready;
    char skip_reason[256];
    char *dir; // the test's temporary directory
    char kernel[512];
    char initrd[600];
    char disk_ro[600], disk_rw[600];
    kvm_probe_t no_kvm;
} g;

// --- a newc cpio archive, written here so the test needs no cpio tool ----

static void s_cpio_entry(FILE *out, const char *name, unsigned mode, const void *data, size_t size)
{
    static unsigned ino = 1;
    size_t name_len = strlen(name) + 1;
    fprintf(out, "070701%08X%08X%08X%08X%08X%08X%08zX%08X%08X%08X%08X%08zX%08X", ino++, mode, 0, 0,
            1, 0, size, 0, 0, 0, 0, name_len, 0);
    fwrite(name, 1, name_len, out);
    static const char zeros[4] = {0};
    fwrite(zeros, 1, (4 - (110 + name_len) % 4) % 4, out);
    if (size) {
        fwrite(data, 1, size, out);
        fwrite(zeros, 1, (4 - size % 4) % 4, out);
    }
}

static char *s_slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    } else {
        buf[n] = '\0';
        *size = (size_t)n;
    }
    fclose(f);
    return buf;
}

// The path of `name`.ko under modules/<release>/ from modules.dep.
static bool s_module_path(const char *moddir, const char *name, char *out, size_t cap)
{
    char dep_path[1024];
    snprintf(dep_path, sizeof dep_path, "%s/modules.dep", moddir);
    size_t size;
    char *dep = s_slurp(dep_path, &size);
    if (!dep)
        return false;
    char want[64];
    snprintf(want, sizeof want, "/%s.ko:", name);
    bool found = false;
    for (char *line = strtok(dep, "\n"); line && !found; line = strtok(NULL, "\n")) {
        char *hit = strstr(line, want);
        if (hit && hit < strchr(line, ':') + 1) {
            *strchr(line, ':') = '\0';
            snprintf(out, cap, "%s/%s", moddir, line);
            found = true;
        }
    }
    free(dep);
    return found;
}

static bool s_build_initrd(const char *kdir, const char *path)
{
    char release[128] = "", rel_path[600];
    snprintf(rel_path, sizeof rel_path, "%s/release", kdir);
    size_t size;
    char *rel = s_slurp(rel_path, &size);
    if (!rel)
        return false;
    sscanf(rel, "%127s", release);
    free(rel);
    char moddir[700];
    snprintf(moddir, sizeof moddir, "%s/modules/%s", kdir, release);
    FILE *out = fopen(path, "wb");
    if (!out)
        return false;
    const char *dirs[] = {"bin", "dev", "proc", "sys", "etc", "lib", "lib/modules", "tmp"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        s_cpio_entry(out, dirs[i], 040755, NULL, 0);
    char *busybox = s_slurp("/bin/busybox", &size);
    if (!busybox) {
        fclose(out);
        return false;
    }
    s_cpio_entry(out, "bin/busybox", 0100755, busybox, size);
    free(busybox);
    char list[256] = "";
    for (size_t i = 0; i < sizeof s_modules / sizeof s_modules[0]; i++) {
        char mpath[1024], name[128];
        if (!s_module_path(moddir, s_modules[i], mpath, sizeof mpath)) {
            fclose(out);
            return false;
        }
        char *ko = s_slurp(mpath, &size);
        snprintf(name, sizeof name, "lib/modules/%s.ko", s_modules[i]);
        s_cpio_entry(out, name, 0100644, ko, size);
        free(ko);
        strcat(list, i ? " " : "");
        strcat(list, s_modules[i]);
    }
    // The init script with the module list filled in.
    char init[sizeof s_init + 256];
    const char *mark = strstr(s_init, "MODULES");
    snprintf(init, sizeof init, "%.*s%s%s", (int)(mark - s_init), s_init, list,
             mark + strlen("MODULES"));
    s_cpio_entry(out, "init", 0100755, init, strlen(init));
    s_cpio_entry(out, "TRAILER!!!", 0, NULL, 0);
    return fclose(out) == 0;
}

static bool s_make_disk(const char *path, off_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    bool ok = fd >= 0 && ftruncate(fd, size) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int group_setup(void **state)
{
    (void)state;
    g.no_kvm = (kvm_probe_t){.usable = false, .reason = "not wanted by this test (TCG)"};
    char *qemu_argv[] = {"qemu-system-x86_64", "--version", NULL};
    char out[256];
    if (vmm_run_capture(qemu_argv, 5000, out, sizeof out, NULL) != 0) {
        snprintf(g.skip_reason, sizeof g.skip_reason, "qemu-system-x86_64 is not installed");
        return 0;
    }
    FILE *p = popen(VMLET_SOURCE_DIR "/guest/kernel/fetch.sh 2>/dev/null", "r");
    if (!p || !fgets(g.kernel, sizeof g.kernel, p) || pclose(p) != 0) {
        snprintf(g.skip_reason, sizeof g.skip_reason,
                 "guest/kernel/fetch.sh found no guest kernel (run ./vmlet deps)");
        return 0;
    }
    g.kernel[strcspn(g.kernel, "\n")] = '\0';
    char kdir[400];
    snprintf(kdir, sizeof kdir, "%.399s", g.kernel);
    snprintf(g.kernel, sizeof g.kernel, "%s/vmlinuz", kdir);
    g.dir = ts_tempdir("vmlet-vmm");
    snprintf(g.initrd, sizeof g.initrd, "%s/initrd.cpio", g.dir);
    snprintf(g.disk_ro, sizeof g.disk_ro, "%s/ro.img", g.dir);
    snprintf(g.disk_rw, sizeof g.disk_rw, "%s/rw.img", g.dir);
    if (access("/bin/busybox", R_OK) != 0 || !s_build_initrd(kdir, g.initrd)) {
        snprintf(g.skip_reason, sizeof g.skip_reason,
                 "could not build the test initramfs (busybox-static, kernel modules)");
        return 0;
    }
    if (!s_make_disk(g.disk_ro, 4 << 20) || !s_make_disk(g.disk_rw, 8 << 20))
        return -1;
    g.ready = true;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    // A failed test may have left its VM running: stop it.
    vmm_settings_t s = {.backend = "qemu", .accel = "tcg"};
    vmm_t *vmm = g.dir ? vmm_new(&s, NULL) : NULL;
    for (int i = 1; vmm && i <= 3; i++) {
        char state_dir[600];
        snprintf(state_dir, sizeof state_dir, "%s/vm%d", g.dir, i);
        vmm_vm_t *vm = vmm_adopt(vmm, state_dir, NULL);
        if (vm) {
            print_message("stopping VM %s left running\n", vmm_vm_id(vm));
            vmm_kill(vm, 5000, NULL);
            vmm_release(&vm);
        }
    }
    vmm_destroy(&vmm);
    if (g.dir)
        ts_remove_dir(g.dir);
    free(g.dir);
    return 0;
}

#define REQUIRE_READY()                                                                            \
    do {                                                                                           \
        if (!g.ready) {                                                                            \
            print_message("SKIP: %s\n", g.skip_reason);                                            \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static vmm_t *s_vmm(int tb_size)
{
    vmm_settings_t s = {.backend = "qemu",
                        .accel = "auto",
                        .kvm = &g.no_kvm,
                        .tcg_tb_size_mib = tb_size,
                        .start_timeout_ms = 30000};
    vmlet_err_t err = {0};
    vmm_t *vmm = vmm_new(&s, &err);
    if (!vmm)
        fail_msg("vmm_new: %s", err.msg);
    return vmm;
}

static void s_spec(vmm_spec_t *spec, const char *id, const char *state_dir, vmm_disk_t disks[2])
{
    disks[0] = (vmm_disk_t){.path = g.disk_ro, .read_only = true, .serial = "vmlet-ro-disk"};
    disks[1] = (vmm_disk_t){.path = g.disk_rw, .read_only = false, .serial = "rw,serial"};
    *spec = (vmm_spec_t){.id = id,
                         .kernel = g.kernel,
                         .initrd = g.initrd,
                         .vcpus = 1,
                         .mem_mib = 256,
                         .disks = disks,
                         .n_disks = 2,
                         .state_dir = state_dir};
}

// One line from a non-blocking fd within the deadline (NULL on EOF/timeout).
static char *s_read_line(int fd, char *buf, size_t cap, int64_t deadline)
{
    size_t n = 0;
    while (n + 1 < cap) {
        int left = (int)(deadline - ts_now_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            return NULL;
        ssize_t got = read(fd, buf + n, 1);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (got <= 0)
            return NULL;
        if (buf[n] == '\n') {
            buf[n] = '\0';
            return buf;
        }
        n++;
    }
    return NULL;
}

static void s_send(int fd, const char *line)
{
    size_t len = strlen(line);
    assert_int_equal(write(fd, line, len), (ssize_t)len);
}

// /proc/<pid>/stat fields 4 (ppid) and 6 (session).
static void s_parent_and_session(pid_t pid, pid_t *ppid, pid_t *sid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    int p, pg, s;
    assert_int_equal(sscanf(strrchr(buf, ')') + 2, "%*c %d %d %d", &p, &pg, &s), 3);
    *ppid = p;
    *sid = s;
}

// No such process, or a zombie nobody reaped yet (PID 1 here may not reap).
static bool s_gone(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    bool zombie = fgets(buf, sizeof buf, f) && strrchr(buf, ')') && strrchr(buf, ')')[2] == 'Z';
    fclose(f);
    return zombie;
}

// Boot 1: start from a child that exits, adopt, agent both ways, disk
// serials, host reconnect, system_powerdown.
static void test_start_adopt_agent_powerdown(void **state)
{
    (void)state;
    REQUIRE_READY();
    char state_dir[512];
    snprintf(state_dir, sizeof state_dir, "%s/vm1", g.dir);
    assert_int_equal(mkdir(state_dir, 0750), 0);

    // The starter: a process of its own that starts the VM and exits.
    int report[2];
    assert_int_equal(pipe(report), 0);
    int64_t t_start = ts_now_ms(); // CLOCK_MONOTONIC is shared with the child
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(report[0]);
        vmm_t *vmm = s_vmm(TB_SIZE_MIB);
        vmm_disk_t disks[2];
        vmm_spec_t spec;
        s_spec(&spec, "vm-one", state_dir, disks);
        vmlet_err_t err = {0};
        vmm_vm_t *vm = vmm_start(vmm, &spec, &err);
        char msg[VMLET_ERR_MAX + 16];
        int n = vm ? snprintf(msg, sizeof msg, "ok %d", (int)vmm_vm_pid(vm))
                   : snprintf(msg, sizeof msg, "error %s", err.msg);
        ssize_t rc = write(report[1], msg, (size_t)n);
        (void)rc;
        _exit(0); // no release, no kill: the VM must outlive its starter
    }
    close(report[1]);
    char msg[VMLET_ERR_MAX + 16] = "";
    ssize_t n = read(report[0], msg, sizeof msg - 1);
    close(report[0]);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    msg[n > 0 ? n : 0] = '\0';
    int64_t t_started = ts_now_ms();
    if (strncmp(msg, "ok ", 3) != 0)
        fail_msg("start: %s", msg);
    pid_t qemu_pid = (pid_t)atoi(msg + 3);

    // The starter is gone; QEMU is neither our child nor in our session.
    vmm_t *vmm = s_vmm(TB_SIZE_MIB);
    vmlet_err_t err = {0};
    vmm_vm_t *vm = vmm_adopt(vmm, state_dir, &err);
    if (!vm)
        fail_msg("adopt: %s", err.msg);
    assert_int_equal(vmm_vm_pid(vm), qemu_pid);
    assert_true(vmm_alive(vm));
    pid_t ppid, sid;
    s_parent_and_session(qemu_pid, &ppid, &sid);
    assert_int_not_equal(ppid, getpid());
    assert_int_not_equal(sid, getsid(0));
    assert_true(vmm_vm_exit_fd(vm) >= 0);

    // The agent channel: the guest's first line, then both ways.
    int fd = vmm_agent_connect(vm, 5000, &err);
    if (fd < 0)
        fail_msg("agent_connect: %s", err.msg);
    char line[256];
    int64_t deadline = ts_now_ms() + BOOT_TIMEOUT_MS;
    char *got = s_read_line(fd, line, sizeof line, deadline);
    int64_t t_first_byte = ts_now_ms();
    if (!got) {
        char console[600];
        snprintf(console, sizeof console, "%s/console.log", state_dir);
        char *tail = ts_wait_line(console, "vmlet-test", 1);
        fail_msg("no line from the guest within %d ms (console: %s)", BOOT_TIMEOUT_MS,
                 tail ? tail : "nothing from the init");
    }
    assert_memory_equal(line, "ready ", 6);
    s_send(fd, "ping 42\n");
    assert_non_null(s_read_line(fd, line, sizeof line, ts_now_ms() + 10000));
    assert_string_equal(line, "pong 42");

    // Disks: serials and read-only flags as the guest sees them.
    s_send(fd, "disks\n");
    char disks_seen[512] = "";
    while (s_read_line(fd, line, sizeof line, ts_now_ms() + 10000) && strcmp(line, "end") != 0) {
        strcat(disks_seen, line);
        strcat(disks_seen, ";");
    }
    assert_string_equal(disks_seen, "disk vda vmlet-ro-disk ro=1;disk vdb rw,serial ro=0;");

    // The host side goes away (a launcher restart): QEMU keeps running and
    // the next connection reaches the same guest. (Whether the guest's read
    // sees EOF in between depends on timing, so it may or may not say
    // "ready" again: an agent must not rely on noticing the reconnect.)
    close(fd);
    assert_true(vmm_alive(vm));
    fd = vmm_agent_connect(vm, 5000, &err);
    assert_true(fd >= 0);
    s_send(fd, "ping again\n");
    do {
        assert_non_null(s_read_line(fd, line, sizeof line, ts_now_ms() + 20000));
    } while (strncmp(line, "ready ", 6) == 0);
    assert_string_equal(line, "pong again");

    // Idle RSS once the guest sits waiting for input.
    int64_t rss = vmm_rss_bytes(vm);
    assert_true(rss > 0);
    print_message("RESULT start_to_first_byte_ms=%lld start_call_ms=%lld rss_idle_mib=%lld "
                  "tb_size_mib=%d mem_mib=256 accel=tcg\n",
                  (long long)(t_first_byte - t_start), (long long)(t_started - t_start),
                  (long long)(rss >> 20), TB_SIZE_MIB);

    // A release forgets the handle only.
    vmm_release(&vm);
    assert_null(vm);
    vm = vmm_adopt(vmm, state_dir, &err);
    assert_non_null(vm);

    // Graceful stop: the ACPI power button, the guest powers off, QEMU exits.
    int64_t t_down = ts_now_ms();
    if (vmm_shutdown(vm, &err) < 0)
        fail_msg("shutdown: %s", err.msg);
    if (vmm_wait_exit(vm, 30000) < 0)
        fail_msg("QEMU still runs 30 s after system_powerdown");
    print_message("RESULT powerdown_ms=%lld\n", (long long)(ts_now_ms() - t_down));
    assert_false(vmm_alive(vm));
    assert_int_equal(vmm_rss_bytes(vm), -1);
    close(fd);
    assert_int_equal(vmm_remove_files(vm, &err), 0);
    assert_null(vmm_adopt(vmm, state_dir, &err));
    vmm_release(&vm);
    vmm_destroy(&vmm);
}

// Boot 2: a second start of a running VM is refused; kill is a hard stop.
static void test_refuse_twice_and_kill(void **state)
{
    (void)state;
    REQUIRE_READY();
    char state_dir[512];
    snprintf(state_dir, sizeof state_dir, "%s/vm2", g.dir);
    assert_int_equal(mkdir(state_dir, 0750), 0);
    vmm_t *vmm = s_vmm(TB_SIZE_MIB);
    vmm_disk_t disks[2];
    vmm_spec_t spec;
    s_spec(&spec, "vm-two", state_dir, disks);
    spec.n_disks = 1;
    vmlet_err_t err = {0};
    vmm_vm_t *vm = vmm_start(vmm, &spec, &err);
    if (!vm)
        fail_msg("start: %s", err.msg);
    assert_null(vmm_start(vmm, &spec, &err));
    assert_non_null(strstr(err.msg, "already runs"));

    pid_t pid = vmm_vm_pid(vm);
    assert_true(vmm_alive(vm));
    int64_t t0 = ts_now_ms();
    if (vmm_kill(vm, 10000, &err) < 0)
        fail_msg("kill: %s", err.msg);
    print_message("RESULT kill_ms=%lld\n", (long long)(ts_now_ms() - t0));
    assert_false(vmm_alive(vm));
    assert_true(s_gone(pid));
    assert_null(vmm_adopt(vmm, state_dir, &err));
    print_message("adopt after kill: %s\n", err.msg);
    assert_int_equal(vmm_remove_files(vm, &err), 0);
    vmm_release(&vm);
    vmm_destroy(&vmm);
}

// No boot: what a failing start says.
static void test_start_errors(void **state)
{
    (void)state;
    REQUIRE_READY();
    char state_dir[512];
    snprintf(state_dir, sizeof state_dir, "%s/vm3", g.dir);
    assert_int_equal(mkdir(state_dir, 0750), 0);
    vmm_t *vmm = s_vmm(TB_SIZE_MIB);
    vmm_disk_t disks[2];
    vmm_spec_t spec;
    s_spec(&spec, "vm-three", state_dir, disks);
    vmm_disk_t missing = {.path = "/nonexistent/disk.img", .serial = "x"};
    spec.disks = &missing;
    spec.n_disks = 1;
    vmlet_err_t err = {0};
    assert_null(vmm_start(vmm, &spec, &err));
    print_message("start with a missing disk: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "/nonexistent/disk.img"));
    spec.n_disks = 0;
    spec.netns = "/nonexistent/netns";
    assert_null(vmm_start(vmm, &spec, &err));
    assert_non_null(strstr(err.msg, "/nonexistent/netns"));
    spec.netns = NULL;
    spec.state_dir = "relative/dir";
    assert_null(vmm_start(vmm, &spec, &err));
    assert_non_null(strstr(err.msg, "absolute"));
    assert_null(vmm_adopt(vmm, state_dir, &err));
    assert_non_null(strstr(err.msg, "vmm.json"));
    vmm_destroy(&vmm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_start_adopt_agent_powerdown),
        cmocka_unit_test(test_refuse_twice_and_kill),
    };
    if (getenv("VMLET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMLET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
