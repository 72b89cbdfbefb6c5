// A container's view of the world, built in its own mount namespace by
// its first process before it execs: the overlay root from PodSetup, then
// /proc, a read-only /sys, a minimal /dev (null zero full random urandom
// tty, ptmx and a devpts instance of its own, shm, the fd links), /tmp,
// its volume mounts, the pod's resolv.conf / hosts / hostname and its
// termination log, and finally pivot_root into it. readOnlyRootFilesystem
// remounts the root read-only in this namespace only (volume mounts, the
// /etc files and the termination log stay writable); privileged gets the
// guest's devices and a writable /sys.
//
// Every target is resolved inside the root (inroot.h): an image's symlink
// cannot point a mount at the VM's own files. /tmp is the image's own
// directory on the writable layer, as on a kubelet (no tmpfs: it would
// count against the VM's memory instead of the pod's disk).
#include "rootfs.h"

#include "inroot.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

// Opens the mount now at rel (crossing any mount made on it since an
// older fd was taken: such an fd still sees the covered directory).
static int s_reopen(int rootfd, const char *rel, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    return (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
}

static int s_mount_at(int rootfd, const char *rel, const char *src, const char *type,
                      unsigned long flags, const char *data, mode_t mode, vmlet_err_t *err)
{
    int fd = inroot_mkdirs(rootfd, rel, mode, err);
    if (fd < 0)
        return -1;
    char p[64];
    int rc = mount(src, fd_path(fd, p, sizeof p), type, flags, data);
    int e = errno;
    close(fd);
    if (rc < 0)
        return vmlet_err_errno(err, e, "mount %s on /%s", type ? type : src, rel);
    return 0;
}

// privileged: the guest's device nodes (not its links or mounts), under
// the same names, as containerd gives a privileged container the host's.
// The agent's own channel stays out: the pod's link to the host is not
// the container's to hold.
static void s_copy_devices(const agent_t *a, int from, int to, int depth)
{
    DIR *d = fdopendir(from);
    if (!d) {
        close(from);
        return;
    }
    const char *channel = strrchr(a->t.path, '/');
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        struct stat st;
        if (n[0] == '.' || (channel && strcmp(n, channel + 1) == 0 && depth == 0) ||
            fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
            mknodat(to, n, st.st_mode, st.st_rdev); // EEXIST: the container's own
            fchownat(to, n, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW);
        } else if (S_ISDIR(st.st_mode) && depth < 2 && strcmp(n, "pts") && strcmp(n, "shm") &&
                   strcmp(n, "mqueue")) {
            mkdirat(to, n, st.st_mode & 07777);
            int sub_from = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            int sub_to = openat(to, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub_from >= 0 && sub_to >= 0)
                s_copy_devices(a, sub_from, sub_to, depth + 1);
            else if (sub_from >= 0)
                close(sub_from);
            if (sub_to >= 0)
                close(sub_to);
        }
    }
    closedir(d);
}

static int s_dev(const agent_t *a, int rootfd, bool privileged, vmlet_err_t *err)
{
    if (s_mount_at(rootfd, "dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME,
                   "mode=755,size=65536k", 0755, err) < 0)
        return -1;
    int dev = s_reopen(rootfd, "dev", O_RDONLY | O_DIRECTORY);
    if (dev < 0)
        return vmlet_err_errno(err, errno, "open /dev");
    static const struct {
        const char *name;
        unsigned major, minor;
    } nodes[] = {{"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
                 {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
    mode_t old = umask(0);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof nodes / sizeof nodes[0]; i++)
        if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) <
            0)
            rc = vmlet_err_errno(err, errno, "mknod /dev/%s", nodes[i].name);
    static const char *const links[][2] = {
        {"pts/ptmx", "ptmx"},          {"/proc/self/fd", "fd"},       {"/proc/self/fd/0", "stdin"},
        {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"}};
    for (size_t i = 0; rc == 0 && i < sizeof links / sizeof links[0]; i++)
        if (symlinkat(links[i][0], dev, links[i][1]) < 0)
            rc = vmlet_err_errno(err, errno, "symlink /dev/%s", links[i][1]);
    if (rc == 0 && (mkdirat(dev, "pts", 0755) < 0 || mkdirat(dev, "shm", 01777) < 0 ||
                    mkdirat(dev, "mqueue", 0755) < 0))
        rc = vmlet_err_errno(err, errno, "mkdir in /dev");
    if (rc == 0 && privileged) {
        int guest = open("/dev", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (guest >= 0)
            s_copy_devices(a, guest, dev, 0);
    }
    umask(old);
    close(dev);
    if (rc < 0)
        return -1;
    // A devpts of its own: its ptys are numbered and visible only here.
    if (s_mount_at(rootfd, "dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
                   "newinstance,ptmxmode=0666,mode=0620,gid=5", 0755, err) < 0 ||
        s_mount_at(rootfd, "dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   "mode=1777,size=65536k", 01777, err) < 0)
        return -1;
    // POSIX message queues are a nicety: a kernel without them still runs pods.
    vmlet_err_t ignored = {0};
    s_mount_at(rootfd, "dev/mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL,
               0755, &ignored);
    return 0;
}

// Bind-mounts src (an fd in the agent's view) at rel in the root.
static int s_bind(int rootfd, int src, const char *rel, bool read_only, vmlet_err_t *err)
{
    struct stat st;
    if (fstat(src, &st) < 0)
        return vmlet_err_errno(err, errno, "stat the source of /%s", rel);
    int dst =
        S_ISDIR(st.st_mode) ? inroot_mkdirs(rootfd, rel, 0755, err) : inroot_file(rootfd, rel, err);
    if (dst < 0)
        return -1;
    char ps[64], pd[64];
    int rc = mount(fd_path(src, ps, sizeof ps), fd_path(dst, pd, sizeof pd), NULL, MS_BIND | MS_REC,
                   NULL);
    int e = errno;
    close(dst);
    if (rc < 0)
        return vmlet_err_errno(err, e, "bind mount on /%s", rel);
    if (!read_only)
        return 0;
    dst = s_reopen(rootfd, rel, O_PATH);
    if (dst < 0)
        return vmlet_err_errno(err, errno, "open /%s", rel);
    rc = mount(NULL, fd_path(dst, pd, sizeof pd), NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
    e = errno;
    close(dst);
    if (rc < 0)
        return vmlet_err_errno(err, e, "make /%s read-only", rel);
    return 0;
}

static int s_volume_mount(const agent_t *a, int rootfd, const mount_spec_t *m, vmlet_err_t *err)
{
    const volume_t *v = volume_find(a, m->volume);
    if (!v)
        return vmlet_err_set(err, "no volume %s", m->volume);
    int vol = open(v->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (vol < 0)
        return vmlet_err_errno(err, errno, "open volume %s", m->volume);
    int src = vol;
    if (m->sub_path) {
        // A missing subPath is made as a directory, as the kubelet does.
        src = s_reopen(vol, m->sub_path, O_PATH);
        if (src < 0)
            src = inroot_mkdirs(vol, m->sub_path, 0755, err);
        close(vol);
        if (src < 0)
            return vmlet_err_wrap(err, "volume %s subPath %s", m->volume, m->sub_path);
    }
    int rc = s_bind(rootfd, src, m->path, m->read_only, err);
    close(src);
    return rc < 0 ? vmlet_err_wrap(err, "volume %s", m->volume) : 0;
}

static int s_file_bind(int rootfd, const char *src_path, const char *rel, vmlet_err_t *err)
{
    int src = open(src_path, O_PATH | O_CLOEXEC);
    if (src < 0)
        return errno == ENOENT ? 0 : vmlet_err_errno(err, errno, "open %s", src_path);
    int rc = s_bind(rootfd, src, rel, false, err);
    close(src);
    return rc;
}

// The root read-only, its other flags kept (runc remounts it so, last).
// A missing working directory is made first: afterwards nothing can.
static int s_read_only_root(int rootfd, const container_t *c, vmlet_err_t *err)
{
    const char *wd = c->run && c->run->working_dir ? c->run->working_dir : "/";
    while (*wd == '/')
        wd++;
    if (*wd) {
        int fd = inroot_mkdirs(rootfd, wd, 0755, err);
        if (fd < 0)
            return vmlet_err_wrap(err, "working directory");
        close(fd);
    }
    struct statvfs vfs;
    unsigned long keep = 0;
    if (statvfs(c->root, &vfs) == 0)
        keep = (vfs.f_flag & ST_NOSUID ? MS_NOSUID : 0) | (vfs.f_flag & ST_NODEV ? MS_NODEV : 0) |
               (vfs.f_flag & ST_NOEXEC ? MS_NOEXEC : 0) |
               (vfs.f_flag & ST_NOATIME ? MS_NOATIME : 0) |
               (vfs.f_flag & ST_RELATIME ? MS_RELATIME : 0);
    if (mount(NULL, c->root, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, NULL) < 0)
        return vmlet_err_errno(err, errno, "make the root file system read-only");
    return 0;
}

// Whether one of the container's volume mounts is at rel ("etc/hosts"):
// then it keeps its own, as the kubelet and containerd leave a mount the
// pod made at /etc/hosts, /etc/resolv.conf or /etc/hostname alone.
static bool s_mounted_by_container(const container_t *c, const char *rel)
{
    for (size_t i = 0; i < c->n_mounts; i++) {
        const char *p = c->mounts[i].path, *r = rel;
        while (p && *p) { // compared as filepath.Clean would: repeated and trailing '/' aside
            while (*p == '/')
                p++;
            size_t n = strcspn(p, "/"), m = strcspn(r, "/");
            if (n != m || strncmp(p, r, n) != 0)
                break;
            p += n, r += m;
            while (*r == '/')
                r++;
            while (*p == '/')
                p++;
            if (!*p && !*r)
                return true;
        }
    }
    return false;
}

int rootfs_enter(const agent_t *a, const container_t *c, vmlet_err_t *err)
{
    const Vmlet__StartContainer *run = c->run;
    bool privileged = run && run->privileged;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return vmlet_err_errno(err, errno, "make mounts private");
    int rootfd = open(c->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return vmlet_err_errno(err, errno, "open %s", c->root);
    // Modes as given (a made /tmp is 1777); the program gets 022 back.
    umask(0);
    int rc = -1;
    if (s_mount_at(rootfd, "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555,
                   err) < 0 ||
        s_mount_at(rootfd, "sys", "sysfs", "sysfs",
                   (privileged ? 0 : MS_RDONLY) | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555,
                   err) < 0 ||
        s_dev(a, rootfd, privileged, err) < 0)
        goto out;
    int tmp = inroot_mkdirs(rootfd, "tmp", 01777, err);
    if (tmp < 0)
        goto out;
    close(tmp);
    for (size_t i = 0; i < c->n_mounts; i++)
        if (s_volume_mount(a, rootfd, &c->mounts[i], err) < 0)
            goto out;
    static const char *const etc[] = {"resolv.conf", "hosts", "hostname"};
    for (size_t i = 0; i < sizeof etc / sizeof etc[0]; i++) {
        char src[128], dst[64];
        snprintf(src, sizeof src, POD_ETC_DIR "/%s", etc[i]);
        snprintf(dst, sizeof dst, "etc/%s", etc[i]);
        if (!s_mounted_by_container(c, dst) && s_file_bind(rootfd, src, dst, err) < 0)
            goto out;
    }
    if (c->term_path && s_file_bind(rootfd, c->termlog, c->term_path, err) < 0)
        goto out;
    if (run && run->read_only_root && s_read_only_root(rootfd, c, err) < 0)
        goto out;
    // pivot_root(".", "."): the old root ends up under the new one, and is
    // detached at once (runc's way; no directory needed in the image).
    if (chdir(c->root) < 0) {
        vmlet_err_errno(err, errno, "chdir %s", c->root);
        goto out;
    }
    if (syscall(SYS_pivot_root, ".", ".") < 0) {
        vmlet_err_errno(err, errno, "pivot_root");
        goto out;
    }
    if (umount2(".", MNT_DETACH) < 0) {
        vmlet_err_errno(err, errno, "detach the old root");
        goto out;
    }
    if (chdir("/") < 0) {
        vmlet_err_errno(err, errno, "chdir /");
        goto out;
    }
    rc = 0;
out:
    umask(022);
    close(rootfd);
    return rc;
}
