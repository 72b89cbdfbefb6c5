// Paths resolved inside an untrusted directory (see inroot.h).
#include "inroot.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int s_openat2(int dirfd, const char *path, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

const char *fd_path(int fd, char *buf, size_t cap)
{
    snprintf(buf, cap, "/proc/self/fd/%d", fd);
    return buf;
}

int inroot_mkdirs(int rootfd, const char *rel, mode_t mode, vmlet_err_t *err)
{
    while (*rel == '/')
        rel++;
    int cur = s_openat2(rootfd, ".", O_PATH | O_DIRECTORY);
    if (cur < 0)
        return vmlet_err_errno(err, errno, "open root");
    char prefix[4096];
    size_t plen = 0;
    const char *p = rel;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n && !(n == 1 && p[0] == '.')) {
            if (plen + n + 2 > sizeof prefix) {
                close(cur);
                return vmlet_err_set(err, "/%s: path too long", rel);
            }
            if (plen)
                prefix[plen++] = '/';
            memcpy(prefix + plen, p, n);
            prefix[plen += n] = '\0';
            int fd = s_openat2(rootfd, prefix, O_PATH | O_DIRECTORY);
            if (fd < 0 && errno == ENOENT) {
                char name[256];
                snprintf(name, sizeof name, "%.*s", (int)n, p);
                // The parent is `cur`, already resolved inside the root.
                if (mkdirat(cur, name, mode) < 0 && errno != EEXIST) {
                    int e = errno;
                    close(cur);
                    return vmlet_err_errno(err, e, "mkdir /%s", prefix);
                }
                fd = s_openat2(rootfd, prefix, O_PATH | O_DIRECTORY);
            }
            if (fd < 0) {
                int e = errno;
                close(cur);
                return vmlet_err_errno(err, e, "/%s", prefix);
            }
            close(cur);
            cur = fd;
        }
        p += n;
        while (*p == '/')
            p++;
    }
    return cur;
}

// Splits rel into its directory (into dir) and last component.
static const char *s_split(const char *rel, char *dir, size_t cap)
{
    const char *slash = strrchr(rel, '/');
    if (!slash) {
        snprintf(dir, cap, ".");
        return rel;
    }
    snprintf(dir, cap, "%.*s", (int)(slash - rel), rel);
    return slash + 1;
}

int inroot_file(int rootfd, const char *rel, vmlet_err_t *err)
{
    while (*rel == '/')
        rel++;
    int fd = s_openat2(rootfd, rel, O_PATH);
    if (fd >= 0)
        return fd;
    char dir[4096];
    const char *base = s_split(rel, dir, sizeof dir);
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return vmlet_err_set(err, "/%s: not a file name", rel);
    int parent = inroot_mkdirs(rootfd, dir, 0755, err);
    if (parent < 0)
        return -1;
    struct stat st;
    // A dangling symlink (e.g. /etc/resolv.conf -> ../run/...): replaced
    // in this container's own writable layer.
    if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        unlinkat(parent, base, 0);
    int w = openat(parent, base, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (w < 0) {
        int e = errno;
        close(parent);
        return vmlet_err_errno(err, e, "create /%s", rel);
    }
    close(w);
    fd = openat(parent, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(parent);
    if (fd < 0)
        return vmlet_err_errno(err, e, "open /%s", rel);
    return fd;
}

int inroot_write(int rootfd, const char *rel, const void *data, size_t len, mode_t mode,
                 vmlet_err_t *err)
{
    while (*rel == '/')
        rel++;
    char dir[4096], tmp[300];
    const char *base = s_split(rel, dir, sizeof dir);
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strlen(base) > 250)
        return vmlet_err_set(err, "%s: not a file name", rel);
    int parent = inroot_mkdirs(rootfd, dir, 0755, err);
    if (parent < 0)
        return -1;
    // O_PATH fds cannot be written through; reopen the directory for real.
    char pp[64];
    int pdir = open(fd_path(parent, pp, sizeof pp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(parent);
    if (pdir < 0)
        return vmlet_err_errno(err, errno, "open the directory of %s", rel);
    snprintf(tmp, sizeof tmp, ".vmlet-tmp-%s", base);
    int fd = openat(pdir, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        close(pdir);
        return vmlet_err_errno(err, e, "create %s", rel);
    }
    int rc = 0;
    if (write_all(fd, data, len) < 0)
        rc = vmlet_err_errno(err, errno, "write %s", rel);
    else if (fchmod(fd, mode) < 0)
        rc = vmlet_err_errno(err, errno, "chmod %s", rel);
    close(fd);
    if (rc == 0 && renameat(pdir, tmp, pdir, base) < 0)
        rc = vmlet_err_errno(err, errno, "rename into %s", rel);
    if (rc < 0)
        unlinkat(pdir, tmp, 0);
    close(pdir);
    return rc;
}
