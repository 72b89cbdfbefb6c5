// What PID 1 does before it can talk to the host: the kernel's file
// systems, a console for logs, the command line, the modules the VM's
// devices need (from the initramfs's load-order file), and a move out of
// the initramfs onto a tmpfs root, since the initramfs itself can never be
// pivot_root'ed away from (and containers need pivot_root).
#include "boot.h"

#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MODULES_LIST "/lib/modules/load-order"
#define VIRTIO_AUTOPROBE "/sys/bus/virtio/drivers_autoprobe"
#define NEWROOT "/.vmlet-root"

static void s_console(void)
{
    int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return; // no console: logs are lost, everything else works
    for (int i = 0; i <= 2; i++)
        dup2(fd, i);
    if (fd > 2)
        close(fd);
}

int boot_mounts(vmlet_err_t *err)
{
    umask(022);
    mkdir("/dev", 0755);
    if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0 && errno != EBUSY)
        return vmlet_err_errno(err, errno, "mount devtmpfs on /dev");
    s_console();
    mkdir("/proc", 0555);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 &&
        errno != EBUSY)
        return vmlet_err_errno(err, errno, "mount proc on /proc");
    mkdir("/sys", 0555);
    if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 &&
        errno != EBUSY)
        return vmlet_err_errno(err, errno, "mount sysfs on /sys");
    return 0;
}

void boot_cmdline(agent_t *a)
{
    a->transport_kind = TRANSPORT_SERIAL;
    a->vsock_port = AGENT_VSOCK_PORT;
    char line[4096];
    if (read_small_file("/proc/cmdline", line, sizeof line) < 0)
        return;
    char *save = NULL;
    for (char *w = strtok_r(line, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
        if (strcmp(w, "vmlet.transport=vsock") == 0)
            a->transport_kind = TRANSPORT_VSOCK;
        else if (strcmp(w, "vmlet.transport=serial") == 0)
            a->transport_kind = TRANSPORT_SERIAL;
        else if (strncmp(w, "vmlet.transport=", 16) == 0)
            alog("unknown %s; using the serial port", w);
        else if (strncmp(w, "vmlet.vsock_port=", 17) == 0)
            a->vsock_port = (unsigned)strtoul(w + 17, NULL, 10);
        else if (strcmp(w, "vmlet.debug=1") == 0)
            a->debug = true;
        else if (strncmp(w, "vmlet.misbehave=", 16) == 0)
            snprintf(a->misbehave, sizeof a->misbehave, "%s", w + 16);
    }
}

// Whether the VM has a virtio device of each ID (1 net, 2 block, 3
// console, 19 vsock...), once the virtio-mmio transport has found them.
static void s_virtio_devices(bool present[64])
{
    memset(present, 0, 64 * sizeof *present);
    DIR *d = opendir("/sys/bus/virtio/devices");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], id[32];
        snprintf(path, sizeof path, "/sys/bus/virtio/devices/%s/device", e->d_name);
        if (e->d_name[0] == '.' || read_small_file(path, id, sizeof id) <= 0)
            continue;
        unsigned long n = strtoul(id, NULL, 0);
        if (n < 64)
            present[n] = true;
    }
    if (d)
        closedir(d);
}

// "always", or "virtio:N[,virtio:M...]": whether a module is needed here.
static bool s_wanted(const char *cond, bool present[64], bool *scanned)
{
    if (strcmp(cond, "always") == 0)
        return true;
    if (!*scanned) {
        s_virtio_devices(present);
        *scanned = true;
    }
    for (const char *p = cond; (p = strstr(p, "virtio:")); p += 7) {
        unsigned long n = strtoul(p + 7, NULL, 10);
        if (n < 64 && present[n])
            return true;
    }
    return false;
}

// Whether a condition names only the pod's own devices: NICs (virtio 1)
// and disks (virtio 2), whose drivers wait for the pod.
static bool s_pod_device_driver(const char *cond)
{
    if (strcmp(cond, "always") == 0)
        return false;
    for (const char *p = cond; (p = strstr(p, "virtio:")); p += 7) {
        unsigned long n = strtoul(p + 7, NULL, 10);
        if (n != 1 && n != 2)
            return false;
    }
    return true;
}

static void s_load_module(int fd, const char *name, int *loaded)
{
    int64_t t = uptime_ms();
    if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
        alog("module %s: %s", name, strerror(errno));
    else
        (*loaded)++;
    alog_debug("module %s: %lld ms", name, (long long)(uptime_ms() - t));
}

// Loads the modules named in the load-order file ("CONDITION PATH" lines,
// paths under /lib/modules, dependencies first, as build.sh wrote them),
// the drivers only for devices this VM has. The drivers of the pod's disks
// and NIC are loaded last with the virtio bus's autoprobe off: they do not
// bind until boot_pod_modules, at the pod's setup. A template VM is saved
// before that, so a VM restored from it probes the pod's own disks (their
// sizes, their serials), not what the template VM had; and the restored
// VM pays only for the probe, not for loading the modules.
void boot_modules(agent_t *a)
{
    FILE *list = fopen(MODULES_LIST, "re");
    if (!list) {
        alog("no %s: loading no modules", MODULES_LIST);
        return;
    }
    char line[512];
    int loaded = 0;
    bool present[64], scanned = false;
    int later_fds[AGENT_POD_MODULES_MAX], n_later = 0;
    char later_names[AGENT_POD_MODULES_MAX][96];
    int64_t t0 = uptime_ms();
    while (fgets(line, sizeof line, list)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#')
            continue;
        char *rel = strchr(line, ' ');
        bool later = false;
        if (rel) {
            *rel++ = '\0';
            if (!s_wanted(line, present, &scanned))
                continue;
            later = s_pod_device_driver(line);
        } else {
            rel = line;
        }
        char path[600];
        snprintf(path, sizeof path, "/lib/modules/%s", rel);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            alog("module %s: %s", path, strerror(errno));
            continue;
        }
        if (later && n_later < AGENT_POD_MODULES_MAX) {
            later_fds[n_later] = fd;
            snprintf(later_names[n_later++], sizeof later_names[0], "%s", rel);
            continue;
        }
        s_load_module(fd, rel, &loaded);
        close(fd);
    }
    fclose(list);
    if (n_later && write_knob(VIRTIO_AUTOPROBE, "0") == 0)
        a->pod_devices_unbound = true;
    else if (n_later)
        alog("%s: %s: the disks and NIC bind now", VIRTIO_AUTOPROBE, strerror(errno));
    for (int i = 0; i < n_later; i++) {
        s_load_module(later_fds[i], later_names[i], &loaded);
        close(later_fds[i]);
    }
    alog_debug("%d modules loaded in %lld ms", loaded, (long long)(uptime_ms() - t0));
}

// The serial of the disk a bound virtio block device became, or "".
static void s_block_serial(const char *dev, char *out, size_t cap)
{
    out[0] = '\0';
    char dir[300];
    snprintf(dir, sizeof dir, "/sys/bus/virtio/devices/%s/block", dev);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s/serial", dir, e->d_name);
        if (read_small_file(path, out, cap) > 0)
            out[strcspn(out, "\n")] = '\0';
        break;
    }
    if (d)
        closedir(d);
}

static bool s_is_one_of(const char *serial, char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(serial, list[i]) == 0)
            return true;
    return false;
}

// "virtio12" -> 12, for probing in the VMM's order.
static int s_virtio_index(const struct dirent **a, const struct dirent **b)
{
    return atoi((*a)->d_name + 6) - atoi((*b)->d_name + 6);
}

static int s_virtio_only(const struct dirent *e)
{
    return strncmp(e->d_name, "virtio", 6) == 0;
}

// Binds the virtio devices that have no driver yet: the NIC, and disks
// until every serial in `serials` has appeared (all when n is 0, or where
// disks have no serials). A VM restored from a template has more disk
// slots than the pod has disks: the rest stay unbound, unprobed.
void boot_pod_modules(agent_t *a, char **serials, size_t n)
{
    if (!a->pod_devices_unbound)
        return;
    int64_t t0 = uptime_ms();
    if (write_knob(VIRTIO_AUTOPROBE, "1") < 0)
        alog("%s: %s", VIRTIO_AUTOPROBE, strerror(errno));
    struct dirent **devs = NULL;
    int n_devs = scandir("/sys/bus/virtio/devices", &devs, s_virtio_only, s_virtio_index);
    size_t found = 0;
    int bound = 0, left = 0;
    for (int i = 0; i < n_devs; i++) {
        const char *dev = devs[i]->d_name;
        char path[300], id[32];
        struct stat st;
        snprintf(path, sizeof path, "/sys/bus/virtio/devices/%s/driver", dev);
        if (lstat(path, &st) == 0)
            continue; // bound already (the console)
        snprintf(path, sizeof path, "/sys/bus/virtio/devices/%s/device", dev);
        bool block = read_small_file(path, id, sizeof id) > 0 && strtoul(id, NULL, 0) == 2;
        if (block && n && found == n) {
            left++;
            continue;
        }
        if (write_knob("/sys/bus/virtio/drivers_probe", dev) < 0) {
            alog("probing %s: %s", dev, strerror(errno));
            continue;
        }
        bound++;
        if (block) {
            char serial[64];
            s_block_serial(dev, serial, sizeof serial);
            found += !serial[0] || s_is_one_of(serial, serials, n);
        }
    }
    for (int i = 0; i < n_devs; i++)
        free(devs[i]);
    free(devs);
    a->pod_devices_unbound = false;
    alog_debug("%d disks and NICs probed in %lld ms (%d unused disk slots left alone)", bound,
               (long long)(uptime_ms() - t0), left);
}

// Moves the root from the initramfs to a tmpfs: the initramfs's files are
// deleted first (they are only the agent and modules, now in memory), the
// kernel file systems move along, and the agent chroots into the tmpfs.
int boot_switch_root(vmlet_err_t *err)
{
    if (mkdir(NEWROOT, 0755) < 0 && errno != EEXIST)
        return vmlet_err_errno(err, errno, "mkdir %s", NEWROOT);
    if (mount("tmpfs", NEWROOT, "tmpfs", 0, "mode=0755") < 0)
        return vmlet_err_errno(err, errno, "mount tmpfs on %s", NEWROOT);
    static const char *const moved[] = {"/dev", "/proc", "/sys"};
    for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++) {
        char to[64];
        snprintf(to, sizeof to, NEWROOT "%s", moved[i]);
        mkdir(to, 0755);
        if (mount(moved[i], to, NULL, MS_MOVE, NULL) < 0)
            return vmlet_err_errno(err, errno, "move %s to %s", moved[i], to);
    }
    // What is left on the initramfs is ours to free.
    static const char *const gone[] = {"/init", "/lib", "/etc", "/bin", "/sbin"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        rm_rf(gone[i]);
    if (chdir(NEWROOT) < 0)
        return vmlet_err_errno(err, errno, "chdir %s", NEWROOT);
    if (mount(NEWROOT, "/", NULL, MS_MOVE, NULL) < 0)
        return vmlet_err_errno(err, errno, "move %s to /", NEWROOT);
    if (chroot(".") < 0)
        return vmlet_err_errno(err, errno, "chroot into the new root");
    if (chdir("/") < 0)
        return vmlet_err_errno(err, errno, "chdir /");
    static const char *const dirs[] = {"/run",      "/tmp",      RUN_DIR,        IMAGES_DIR,
                                       VOLUMES_DIR, POD_ETC_DIR, CONTAINERS_DIR, SCRATCH_DIR};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        if (mkdir_p(dirs[i], 0755, err) < 0)
            return -1;
    chmod("/tmp", 01777);
    return 0;
}

void boot_misc(void)
{
    // Ctrl-Alt-Del (Firecracker's SendCtrlAltDel) becomes SIGINT to PID 1,
    // a graceful power-off, instead of an instant reboot.
    reboot(RB_DISABLE_CAD);
}

bool boot_cgroups(void)
{
    if (mount("cgroup2", CGROUP_DIR, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        alog("cgroup2 on " CGROUP_DIR ": %s (no OOMKilled reasons)", strerror(errno));
        return false;
    }
    if (write_knob(CGROUP_DIR "/cgroup.subtree_control", "+memory +pids") < 0) {
        alog("cgroup controllers: %s (no OOMKilled reasons)", strerror(errno));
        return false;
    }
    return true;
}
