// The kubelet's AtomicWriter for files volumes (see atomic_write.h).
#include "atomic_write.h"

#include "inroot.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FILE_MODE_DEFAULT 0644
#define NAME_MAX_LEN 255

// The first component of path (a top-level entry of the volume).
static void s_top(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%.*s", (int)strcspn(path, "/"), path);
}

static int s_check(Vmlet__GuestFile *const *files, size_t n, vmlet_err_t *err)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = files[i]->path;
        if (!relpath_ok(p))
            return vmlet_err_set(err, "file \"%s\": not a relative path inside the volume",
                                 p ? p : "");
        if (strcspn(p, "/") > NAME_MAX_LEN)
            return vmlet_err_set(err, "file \"%s\": a name longer than %d", p, NAME_MAX_LEN);
        // "..data" and the timestamped directories are the writer's own.
        if (strncmp(p, "..", 2) == 0 || strcmp(p, ".") == 0 || strncmp(p, "./", 2) == 0)
            return vmlet_err_set(err, "file \"%s\": must not start with '..' or '.'", p);
    }
    return 0;
}

static bool s_in_payload(const char *top, Vmlet__GuestFile *const *files, size_t n)
{
    char t[NAME_MAX_LEN + 1];
    for (size_t i = 0; i < n; i++) {
        s_top(files[i]->path, t, sizeof t);
        if (strcmp(t, top) == 0)
            return true;
    }
    return false;
}

// A timestamped data directory's name: "..<digit>...", one component.
// Anything else where ..data points was not made here (a container with
// the volume mounted read-write can change it): never followed or removed.
static bool s_data_name_ok(const char *name)
{
    return strncmp(name, "..", 2) == 0 && name[2] >= '0' && name[2] <= '9' && !strchr(name, '/');
}

// A fresh `..<UTC time>.<nanoseconds>` directory, mode 0755 whatever the umask.
static int s_new_dir(int dirfd, char *name, size_t cap, vmlet_err_t *err)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (int tries = 0; tries < 1000; tries++) {
        struct tm tm;
        time_t sec = ts.tv_sec;
        gmtime_r(&sec, &tm);
        char stamp[48];
        strftime(stamp, sizeof stamp, "..%Y_%m_%d_%H_%M_%S", &tm);
        snprintf(name, cap, "%s.%09ld", stamp, (long)ts.tv_nsec);
        if (mkdirat(dirfd, name, 0755) == 0)
            return fchmodat(dirfd, name, 0755, 0) < 0
                       ? vmlet_err_errno(err, errno, "chmod %s", name)
                       : 0;
        if (errno != EEXIST)
            return vmlet_err_errno(err, errno, "mkdir %s", name);
        if (++ts.tv_nsec >= 1000000000L) // taken (a clock set back): the next name
            ts.tv_nsec = 0, ts.tv_sec++;
    }
    return vmlet_err_set(err, "no free name for a new data directory");
}

static int s_payload(int dirfd, const char *name, Vmlet__GuestFile *const *files, size_t n,
                     uint32_t default_mode, vmlet_err_t *err)
{
    int ts = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (ts < 0)
        return vmlet_err_errno(err, errno, "open %s", name);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const Vmlet__GuestFile *f = files[i];
        uint32_t mode = f->has_mode && f->mode ? f->mode : default_mode;
        rc = inroot_write(ts, f->path, f->has_content ? f->content.data : NULL,
                          f->has_content ? f->content.len : 0, mode & 07777, err);
    }
    close(ts);
    return rc;
}

// fsGroup as the kubelet's SetVolumeOwnership for a read-only volume:
// group owner, files and directories group-readable, directories
// group-searchable and setgid; symlinks only change owner.
static int s_own(int dirfd, const char *name, gid_t gid, int depth)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        fchownat(dirfd, name, (uid_t)-1, gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -1;
    if (S_ISLNK(st.st_mode))
        return 0;
    mode_t mode = (st.st_mode & 07777) | 0440;
    if (S_ISDIR(st.st_mode))
        mode |= 02000 | 0110;
    if (fchmodat(dirfd, name, mode, 0) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode) || depth > 64)
        return 0;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            rc = s_own(fd, e->d_name, gid, depth + 1);
    closedir(d);
    return rc;
}

// `<name> -> ..data/<name>` for each new top-level entry (an existing one
// is left as it is: a link already, or something a subPath made).
static int s_visible(int dirfd, Vmlet__GuestFile *const *files, size_t n, int64_t fs_group,
                     vmlet_err_t *err)
{
    for (size_t i = 0; i < n; i++) {
        char top[NAME_MAX_LEN + 1], target[NAME_MAX_LEN + 16];
        s_top(files[i]->path, top, sizeof top);
        struct stat st;
        if (fstatat(dirfd, top, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
            continue;
        snprintf(target, sizeof target, ATOMIC_DATA_LINK "/%s", top);
        if (symlinkat(target, dirfd, top) < 0)
            return vmlet_err_errno(err, errno, "symlink %s", top);
        if (fs_group >= 0)
            fchownat(dirfd, top, (uid_t)-1, (gid_t)fs_group, AT_SYMLINK_NOFOLLOW);
    }
    return 0;
}

// `..data_tmp -> name`, renamed over `..data`: the one atomic step.
static int s_swap(int dirfd, const char *name, vmlet_err_t *err)
{
    unlinkat(dirfd, ATOMIC_DATA_TMP, 0); // left by a write that died half-way
    if (symlinkat(name, dirfd, ATOMIC_DATA_TMP) < 0)
        return vmlet_err_errno(err, errno, "symlink " ATOMIC_DATA_TMP);
    if (renameat(dirfd, ATOMIC_DATA_TMP, dirfd, ATOMIC_DATA_LINK) < 0) {
        int e = errno;
        unlinkat(dirfd, ATOMIC_DATA_TMP, 0);
        return vmlet_err_errno(err, e, "rename " ATOMIC_DATA_TMP " to " ATOMIC_DATA_LINK);
    }
    return 0;
}

// Top-level links of the old content that the new one lacks.
static void s_remove_gone(int dirfd, const char *old, Vmlet__GuestFile *const *files, size_t n)
{
    int fd = openat(dirfd, old, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    for (struct dirent *e; (e = readdir(d));) {
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            s_in_payload(e->d_name, files, n))
            continue;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode) &&
            unlinkat(dirfd, e->d_name, 0) < 0)
            alog("volume %s: remove %s: %s", old, e->d_name, strerror(errno));
    }
    closedir(d);
}

int atomic_write(const char *dir, Vmlet__GuestFile *const *files, size_t n, uint32_t default_mode,
                 int64_t fs_group, char *old, size_t cap, vmlet_err_t *err)
{
    if (cap)
        old[0] = '\0';
    if (s_check(files, n, err) < 0)
        return -1;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return vmlet_err_errno(err, errno, "open %s", dir);
    char prev[NAME_MAX_LEN + 1] = "", name[64] = "", path[4096];
    ssize_t len = readlinkat(dirfd, ATOMIC_DATA_LINK, prev, sizeof prev - 1);
    prev[len > 0 ? len : 0] = '\0';
    if (!s_data_name_ok(prev)) // none yet (or not the writer's)
        prev[0] = '\0';
    int rc = s_new_dir(dirfd, name, sizeof name, err);
    bool made = rc == 0;
    if (rc == 0)
        rc = s_payload(dirfd, name, files, n, default_mode ? default_mode : FILE_MODE_DEFAULT, err);
    if (rc == 0 && fs_group >= 0 && s_own(dirfd, name, (gid_t)fs_group, 0) < 0)
        rc = vmlet_err_errno(err, errno, "fsGroup %lld", (long long)fs_group);
    if (rc == 0)
        rc = s_visible(dirfd, files, n, fs_group, err);
    if (rc == 0)
        rc = s_swap(dirfd, name, err);
    if (rc < 0) {
        if (made) {
            snprintf(path, sizeof path, "%s/%s", dir, name);
            rm_rf(path);
        }
        close(dirfd);
        return -1;
    }
    if (prev[0]) {
        s_remove_gone(dirfd, prev, files, n);
        snprintf(old, cap, "%s", prev);
    }
    if (fs_group >= 0 &&
        (fchown(dirfd, (uid_t)-1, (gid_t)fs_group) < 0 || fchmod(dirfd, 02755) < 0))
        alog("volume %s: fsGroup %lld on the volume: %s", dir, (long long)fs_group,
             strerror(errno));
    close(dirfd);
    return 0;
}

void atomic_write_drop(const char *dir, const char *old)
{
    char path[4096], current[NAME_MAX_LEN + 1] = "";
    snprintf(path, sizeof path, "%s/" ATOMIC_DATA_LINK, dir);
    ssize_t len = readlink(path, current, sizeof current - 1);
    current[len > 0 ? len : 0] = '\0';
    if (!old || !s_data_name_ok(old) || strcmp(old, current) == 0)
        return;
    snprintf(path, sizeof path, "%s/%s", dir, old);
    if (rm_rf(path) < 0)
        alog("volume %s: remove the old data %s: %s", dir, old, strerror(errno));
}
