// Named network namespaces and stepping the calling thread in and out.
#include "netns.h"

#include "vmlet/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

bool netns_is_path(const char *name)
{
    return name && name[0] == '/';
}

static int s_path(const char *name, char *buf, size_t size, vmlet_err_t *err)
{
    if (netns_is_path(name)) {
        if ((size_t)snprintf(buf, size, "%s", name) >= size)
            return vmlet_err_set(err, "network namespace path \"%s\" is too long", name);
        return 0;
    }
    if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return vmlet_err_set(err, "network namespace name \"%s\" is not a plain file name",
                             name ? name : "");
    if ((size_t)snprintf(buf, size, "%s/%s", NETNS_RUN_DIR, name) >= size)
        return vmlet_err_set(err, "network namespace name \"%s\" is too long", name);
    return 0;
}

// A bind-mounted namespace answers NS_GET_NSTYPE; the plain file left
// behind by an interrupted creation does not.
static bool s_is_netns(int fd)
{
    return ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET;
}

int netns_open_current(vmlet_err_t *err)
{
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmlet_err_errno(err, errno, "opening /proc/thread-self/ns/net");
    return fd;
}

int netns_open(const char *name, vmlet_err_t *err)
{
    char path[PATH_MAX];
    if (s_path(name, path, sizeof path, err) < 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmlet_err_errno(err, errno, "network namespace %s", path);
    if (!s_is_netns(fd)) {
        close(fd);
        return vmlet_err_errno(err, ENOENT, "network namespace %s: not a namespace mount", path);
    }
    return fd;
}

// As iproute2 does: /run/netns becomes a shared mount point, so unmounting
// a namespace file in one mount namespace unmounts it in the others and
// the namespace can be freed.
static int s_make_run_dir(vmlet_err_t *err)
{
    if (vmlet_mkdirs(NETNS_RUN_DIR, 0755, err) < 0)
        return -1;
    bool bound = false;
    while (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) < 0) {
        if (errno != EINVAL || bound)
            return vmlet_err_errno(err, errno, "making %s a shared mount", NETNS_RUN_DIR);
        if (mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC, NULL) < 0)
            return vmlet_err_errno(err, errno, "bind-mounting %s on itself", NETNS_RUN_DIR);
        bound = true;
    }
    return 0;
}

// Creates the namespace file; the caller holds the directory lock.
static int s_create(const char *path, int home_fd, vmlet_err_t *err)
{
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    if (fd < 0)
        return vmlet_err_errno(err, errno, "creating %s", path);
    close(fd);
    if (unshare(CLONE_NEWNET) < 0) {
        int e = errno;
        unlink(path);
        return vmlet_err_errno(err, e, "unshare(CLONE_NEWNET) for %s", path);
    }
    int rc = mount("/proc/thread-self/ns/net", path, "none", MS_BIND, NULL);
    int e = errno;
    netns_return(home_fd);
    if (rc < 0) {
        unlink(path);
        return vmlet_err_errno(err, e, "bind-mounting the new namespace on %s", path);
    }
    return 0;
}

int netns_ensure(const char *name, int home_fd, bool *created, vmlet_err_t *err)
{
    char path[PATH_MAX];
    if (s_path(name, path, sizeof path, err) < 0)
        return -1;
    *created = false;
    if (netns_is_path(name))
        return netns_open(name, err); // someone else's: it must exist
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && s_is_netns(fd))
        return fd;
    if (fd >= 0)
        close(fd);
    if (s_make_run_dir(err) < 0)
        return -1;
    // Two launchers starting together must not both create it, nor take
    // the other's half-made file for a stale one: creation holds a lock on
    // the directory.
    cleanup_close int dir = open(NETNS_RUN_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0 || flock(dir, LOCK_EX) < 0)
        return vmlet_err_errno(err, errno, "locking %s", NETNS_RUN_DIR);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && s_is_netns(fd))
        return fd;
    if (fd >= 0) {
        close(fd);
        unlink(path); // left by a creation that died half-way
    }
    if (s_create(path, home_fd, err) < 0)
        return -1;
    *created = true;
    fd = netns_open(name, err);
    return fd;
}

int netns_delete(const char *name, vmlet_err_t *err)
{
    if (netns_is_path(name))
        return 0; // not ours to remove
    char path[PATH_MAX];
    if (s_path(name, path, sizeof path, err) < 0)
        return -1;
    if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        return vmlet_err_errno(err, errno, "unmounting %s", path);
    if (unlink(path) < 0 && errno != ENOENT)
        return vmlet_err_errno(err, errno, "removing %s", path);
    return 0;
}

int netns_enter(int ns_fd, const char *what, vmlet_err_t *err)
{
    if (setns(ns_fd, CLONE_NEWNET) < 0)
        return vmlet_err_errno(err, errno, "entering network namespace %s", what);
    return 0;
}

void netns_return(int home_fd)
{
    if (setns(home_fd, CLONE_NEWNET) < 0) {
        char msg[160];
        int n =
            snprintf(msg, sizeof msg, "vmlet: cannot return to the home network namespace: %s\n",
                     strerror(errno));
        if (n > 0 && write(STDERR_FILENO, msg, (size_t)n) < 0) {
            // nothing more to say
        }
        abort();
    }
}

int netns_sysctl_set(const char *key, const char *value, vmlet_err_t *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "/proc/sys/%s", key);
    cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return vmlet_err_errno(err, errno, "opening %s", path);
    size_t n = strlen(value);
    if (write(fd, value, n) != (ssize_t)n)
        return vmlet_err_errno(err, errno, "writing %s to %s", value, path);
    return 0;
}

int netns_sysctl_get(const char *key, char *buf, size_t size, vmlet_err_t *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "/proc/sys/%s", key);
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmlet_err_errno(err, errno, "opening %s", path);
    ssize_t n = read(fd, buf, size - 1);
    if (n < 0)
        return vmlet_err_errno(err, errno, "reading %s", path);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return 0;
}
