// PodSetup: everything the pod needs, once per boot. Nothing touches a
// disk before it arrives (a template VM waits here). In order: wall
// clock, randomness, hostname, network, sysctls, the pod-wide resolv.conf /
// hosts / hostname, the disks (scratch read-write, each image read-only
// once), volumes, then each container's overlay root.
#include "agent.h"
#include "boot.h"
#include "util.h"

#include "vmlet/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DISK_WAIT_MS 3000
#define SEED_MAX 4096

static int s_clock(const Vmlet__PodSetup *s, vmlet_err_t *err)
{
    if (!s->has_unix_time_ns || s->unix_time_ns <= 0)
        return 0;
    struct timespec ts = {.tv_sec = s->unix_time_ns / 1000000000,
                          .tv_nsec = s->unix_time_ns % 1000000000};
    if (clock_settime(CLOCK_REALTIME, &ts) < 0)
        return vmlet_err_errno(err, errno, "clock_settime");
    return 0;
}

// The host's seed, credited: a fresh VM (or a restored template) has
// little entropy of its own.
static int s_random(const Vmlet__PodSetup *s, vmlet_err_t *err)
{
    if (!s->has_random_seed || s->random_seed.len == 0)
        return 0;
    size_t n = s->random_seed.len < SEED_MAX ? s->random_seed.len : SEED_MAX;
    struct rand_pool_info *info = vmlet_xcalloc(1, sizeof *info + n + 4);
    info->entropy_count = (int)(n * 8);
    info->buf_size = (int)n;
    memcpy(info->buf, s->random_seed.data, n);
    int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0 || ioctl(fd, RNDADDENTROPY, info) < 0)
        rc = vmlet_err_errno(err, errno, "RNDADDENTROPY");
    // Mixing into the input pool does not change what /dev/urandom gives
    // until the kernel next reseeds its CRNG (up to a minute away): every
    // VM restored from one template would read the same bytes until then.
    // RNDRESEEDCRNG reseeds now, from the pool that holds our seed.
    else if (ioctl(fd, RNDRESEEDCRNG) < 0)
        rc = vmlet_err_errno(err, errno, "RNDRESEEDCRNG");
    if (fd >= 0)
        close(fd);
    explicit_bzero(info, sizeof *info + n);
    free(info);
    return rc;
}

static int s_hostname(agent_t *a, const Vmlet__PodSetup *s, vmlet_err_t *err)
{
    const char *name = s->hostname && *s->hostname ? s->hostname : "localhost";
    if (strlen(name) > 64)
        return vmlet_err_set(err, "hostname %s: longer than 64 characters", name);
    if (sethostname(name, strlen(name)) < 0)
        return vmlet_err_errno(err, errno, "sethostname %s", name);
    free(a->hostname);
    a->hostname = vmlet_xstrdup(name);
    return 0;
}

static int s_sysctls(const Vmlet__PodSetup *s, vmlet_err_t *err)
{
    for (size_t i = 0; i < s->n_sysctls; i++) {
        const char *kv = s->sysctls[i];
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv || (size_t)(eq - kv) > 200)
            return vmlet_err_set(err, "sysctl \"%s\": not name=value", kv);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - kv), kv);
        bool slashes = strchr(name, '/') != NULL;
        for (char *p = name; *p; p++) {
            if (*p == '.' && !slashes)
                *p = '/';
            else if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                       (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '/' ||
                       *p == '.'))
                return vmlet_err_set(err, "sysctl \"%s\": bad name", kv);
        }
        if (!relpath_ok(name))
            return vmlet_err_set(err, "sysctl \"%s\": bad name", kv);
        char path[300];
        snprintf(path, sizeof path, "/proc/sys/%s", name);
        if (write_knob(path, eq + 1) < 0)
            return vmlet_err_errno(err, errno, "sysctl %s", kv);
    }
    return 0;
}

static int s_etc_files(agent_t *a, const Vmlet__PodSetup *s, vmlet_err_t *err)
{
    char line[80];
    snprintf(line, sizeof line, "%s\n", a->hostname);
    if (write_file(POD_ETC_DIR "/hostname", line, strlen(line), 0644, err) < 0)
        return -1;
    if (s->resolv_conf && write_file(POD_ETC_DIR "/resolv.conf", s->resolv_conf,
                                     strlen(s->resolv_conf), 0644, err) < 0)
        return -1;
    if (s->hosts && write_file(POD_ETC_DIR "/hosts", s->hosts, strlen(s->hosts), 0644, err) < 0)
        return -1;
    return 0;
}

// "vda" for 0, "vdz" for 25, "vdaa" for 26, as the kernel names them.
static void s_vd_name(size_t i, char *out, size_t cap)
{
    char suffix[8];
    int n = 0;
    size_t v = i;
    do {
        suffix[n++] = (char)('a' + v % 26);
        v = v / 26;
    } while (v-- > 0 && n < 7);
    int o = snprintf(out, cap, "vd");
    while (n > 0 && (size_t)o + 1 < cap)
        out[o++] = suffix[--n];
    out[o] = '\0';
}

// The device of the disk with this serial: by /sys/block/vd*/serial, or
// (a VMM without serials) by its place in disk_serials.
static int s_find_disk(const Vmlet__PodSetup *s, const char *serial, char *dev, size_t cap,
                       vmlet_err_t *err)
{
    int64_t deadline = now_ms() + DISK_WAIT_MS;
    for (;;) {
        char seen[512] = "";
        DIR *d = opendir("/sys/block");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (strncmp(e->d_name, "vd", 2) != 0)
                continue;
            char path[300], value[128];
            snprintf(path, sizeof path, "/sys/block/%s/serial", e->d_name);
            ssize_t n = read_small_file(path, value, sizeof value);
            value[n > 0 ? strcspn(value, "\n") : 0] = '\0';
            size_t used = strlen(seen);
            snprintf(seen + used, sizeof seen - used, "%s%s=%s", used ? ", " : "", e->d_name,
                     value[0] ? value : "(no serial)");
            if (value[0] && strcmp(value, serial) == 0) {
                snprintf(dev, cap, "/dev/%.*s", (int)cap - 6, e->d_name);
                closedir(d);
                return 0;
            }
        }
        if (d)
            closedir(d);
        for (size_t i = 0; i < s->n_disk_serials; i++) {
            if (strcmp(s->disk_serials[i], serial) != 0)
                continue;
            char name[16], path[64], value[128];
            s_vd_name(i, name, sizeof name);
            snprintf(path, sizeof path, "/sys/block/%s", name);
            if (access(path, F_OK) != 0)
                break; // not probed yet
            snprintf(path, sizeof path, "/sys/block/%s/serial", name);
            // Only a disk without a serial of its own goes by its place.
            ssize_t n = read_small_file(path, value, sizeof value);
            if (n <= 0 || value[0] == '\n') {
                snprintf(dev, cap, "/dev/%s", name);
                return 0;
            }
            break;
        }
        if (now_ms() > deadline)
            return vmlet_err_set(err, "no disk with serial %s (disks: %s)", serial,
                                 seen[0] ? seen : "none");
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static int s_scratch(agent_t *a, const Vmlet__PodSetup *s, vmlet_err_t *err)
{
    if (a->scratch_mounted)
        return 0;
    if (!s->scratch_disk || !*s->scratch_disk) {
        // No writable disk: container layers and emptyDirs live in memory.
        alog("no scratch disk: writable layers on tmpfs");
        if (mount("tmpfs", SCRATCH_DIR, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
            return vmlet_err_errno(err, errno, "mount tmpfs on " SCRATCH_DIR);
    } else {
        char dev[64];
        if (s_find_disk(s, s->scratch_disk, dev, sizeof dev, err) < 0)
            return vmlet_err_wrap(err, "scratch disk");
        if (mount(dev, SCRATCH_DIR, "ext4", MS_NOSUID | MS_NODEV, NULL) < 0)
            return vmlet_err_errno(err, errno, "mount the scratch disk %s (%s) on " SCRATCH_DIR,
                                   s->scratch_disk, dev);
    }
    a->scratch_mounted = true;
    return 0;
}

static int s_image(agent_t *a, const Vmlet__PodSetup *s, const char *serial, vmlet_err_t *err)
{
    for (size_t i = 0; i < a->n_images; i++)
        if (strcmp(a->image_serials[i], serial) == 0)
            return 0; // mounted once, shared by the containers using it
    char dev[64], dir[300];
    if (s_find_disk(s, serial, dev, sizeof dev, err) < 0)
        return -1;
    snprintf(dir, sizeof dir, IMAGES_DIR "/%s", serial);
    if (mkdir_p(dir, 0755, err) < 0)
        return -1;
    if (mount(dev, dir, "ext4", MS_RDONLY | MS_NODEV, NULL) < 0)
        return vmlet_err_errno(err, errno, "mount image disk %s (%s) read-only", serial, dev);
    a->image_serials = vmlet_xrealloc(a->image_serials, (a->n_images + 1) * sizeof(char *));
    a->image_serials[a->n_images++] = vmlet_xstrdup(serial);
    return 0;
}

int container_root_mount(container_t *c, bool fresh, vmlet_err_t *err)
{
    if (c->root_mounted) {
        if (!fresh)
            return 0;
        umount2(c->root, MNT_DETACH);
        c->root_mounted = false;
    }
    rm_rf(c->upper);
    rm_rf(c->work);
    if (mkdir_p(c->upper, 0755, err) < 0 || mkdir_p(c->work, 0700, err) < 0 ||
        mkdir_p(c->root, 0755, err) < 0)
        return -1;
    char opts[600];
    snprintf(opts, sizeof opts, "lowerdir=" IMAGES_DIR "/%s,upperdir=%s,workdir=%s", c->image,
             c->upper, c->work);
    if (mount("overlay", c->root, "overlay", 0, opts) < 0)
        return vmlet_err_errno(err, errno, "mount the overlay root of %s", c->name);
    c->root_mounted = true;
    return 0;
}

static int s_containers(agent_t *a, const Vmlet__PodSetup *s, vmlet_err_t *err)
{
    for (size_t i = 0; i < a->n_containers; i++)
        container_free(&a->containers[i]);
    free(a->containers);
    a->containers = vmlet_xcalloc(s->n_containers + 1, sizeof *a->containers);
    a->n_containers = 0;
    for (size_t i = 0; i < s->n_containers; i++) {
        const Vmlet__GuestContainer *g = s->containers[i];
        if (!name_ok(g->name))
            return vmlet_err_set(err, "container \"%s\": not a valid name", g->name ? g->name : "");
        if (container_find(a, g->name))
            return vmlet_err_set(err, "container %s: given twice", g->name);
        if (!name_ok(g->image_disk))
            return vmlet_err_set(err, "container %s: image disk serial \"%s\" is not valid",
                                 g->name, g->image_disk ? g->image_disk : "");
        container_t *c = &a->containers[a->n_containers++];
        c->name = vmlet_xstrdup(g->name);
        c->image = vmlet_xstrdup(g->image_disk);
        c->tty = g->tty;
        c->stdin_open = g->stdin;
        c->pid = -1;
        c->out_fd[0] = c->out_fd[1] = c->stdin_fd = -1;
        c->reported = true;
        if (g->termination_message_path && *g->termination_message_path) {
            if (g->termination_message_path[0] != '/')
                return vmlet_err_set(err, "container %s: terminationMessagePath %s is not absolute",
                                     g->name, g->termination_message_path);
            c->term_path = vmlet_xstrdup(g->termination_message_path);
        }
        c->mounts = vmlet_xcalloc(g->n_mounts + 1, sizeof *c->mounts);
        for (size_t m = 0; m < g->n_mounts; m++) {
            const Vmlet__GuestMount *gm = g->mounts[m];
            if (!volume_find(a, gm->volume))
                return vmlet_err_set(err, "container %s: mount of unknown volume \"%s\"", g->name,
                                     gm->volume ? gm->volume : "");
            if (!gm->path || gm->path[0] != '/')
                return vmlet_err_set(err, "container %s: mount path \"%s\" is not absolute",
                                     g->name, gm->path ? gm->path : "");
            if (gm->sub_path && *gm->sub_path && !relpath_ok(gm->sub_path))
                return vmlet_err_set(err, "container %s: subPath \"%s\" leaves the volume", g->name,
                                     gm->sub_path);
            mount_spec_t *ms = &c->mounts[c->n_mounts++];
            ms->volume = vmlet_xstrdup(gm->volume);
            ms->path = vmlet_xstrdup(gm->path);
            ms->sub_path = gm->sub_path && *gm->sub_path ? vmlet_xstrdup(gm->sub_path) : NULL;
            ms->read_only = gm->read_only;
        }
        snprintf(c->root, sizeof c->root, CONTAINERS_DIR "/%s/root", c->name);
        snprintf(c->termlog, sizeof c->termlog, CONTAINERS_DIR "/%s/termination-log", c->name);
        snprintf(c->upper, sizeof c->upper, SCRATCH_DIR "/containers/%s/upper", c->name);
        snprintf(c->work, sizeof c->work, SCRATCH_DIR "/containers/%s/work", c->name);
        if (s_image(a, s, c->image, err) < 0)
            return vmlet_err_wrap(err, "container %s", c->name);
        // A new boot's containers start from their images, whatever the
        // disk kept from an earlier one.
        if (container_root_mount(c, true, err) < 0)
            return -1;
    }
    return 0;
}

int setup_apply(agent_t *a, const Vmlet__PodSetup *s, vmlet_err_t *err)
{
    // The disks' and NIC's drivers probe now (boot.h).
    boot_pod_modules(a, s->disk_serials, s->n_disk_serials);
    if (s_clock(s, err) < 0 || s_random(s, err) < 0 || s_hostname(a, s, err) < 0 ||
        net_setup(s, err) < 0 || s_sysctls(s, err) < 0 || s_etc_files(a, s, err) < 0 ||
        s_scratch(a, s, err) < 0 || volumes_setup(a, s, err) < 0 || s_containers(a, s, err) < 0)
        return -1;
    return 0;
}
