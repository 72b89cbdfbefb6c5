// Helpers the agent's files share (see util.h).
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int64_t s_clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_ms(void)
{
    return s_clock_ms(CLOCK_MONOTONIC);
}

int64_t uptime_ms(void)
{
    return s_clock_ms(CLOCK_BOOTTIME);
}

int64_t unix_ms(void)
{
    return s_clock_ms(CLOCK_REALTIME);
}

int64_t unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Debug logging is a property of the process (PID 1 runs one agent), set
// once at boot from the command line; a static keeps every call site short.
static bool s_debug;

void alog_set_debug(bool on)
{
    s_debug = on;
}

static void s_vlog(const char *fmt, va_list ap)
{
    char line[1200];
    int64_t up = uptime_ms();
    int n = snprintf(line, sizeof line, "vmlet-agent: [%4lld.%03lld] ", (long long)(up / 1000),
                     (long long)(up % 1000));
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    // One write per line, so lines from children do not interleave.
    ssize_t w = write(2, line, len);
    (void)w;
}

void alog(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vlog(fmt, ap);
    va_end(ap);
}

void alog_debug(const char *fmt, ...)
{
    if (!s_debug)
        return;
    va_list ap;
    va_start(ap, fmt);
    s_vlog(fmt, ap);
    va_end(ap);
}

int mkdir_p(const char *path, mode_t mode, vmlet_err_t *err)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return vmlet_err_set(err, "mkdir %s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return vmlet_err_errno(err, errno, "mkdir %s", buf);
        *p = c;
        if (c == '\0')
            break;
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return vmlet_err_errno(err, errno, "stat %s", path);
    if (!S_ISDIR(st.st_mode))
        return vmlet_err_set(err, "%s exists and is not a directory", path);
    return 0;
}

int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int write_file(const char *path, const void *data, size_t len, mode_t mode, vmlet_err_t *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return vmlet_err_errno(err, errno, "open %s", path);
    if (write_all(fd, data, len) < 0) {
        int e = errno;
        close(fd);
        return vmlet_err_errno(err, e, "write %s", path);
    }
    // open() applies the umask and leaves an existing file's mode alone.
    if (fchmod(fd, mode) < 0) {
        int e = errno;
        close(fd);
        return vmlet_err_errno(err, e, "chmod %s", path);
    }
    close(fd);
    return 0;
}

int write_knob(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = write_all(fd, s, strlen(s));
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

ssize_t read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

static int s_rm_at(int dirfd, const char *name, dev_t dev)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dirfd, name, 0);
    if (st.st_dev != dev)
        return 0; // a mount point: not ours to empty
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            s_rm_at(fd, e->d_name, dev) < 0)
            rc = -1;
    closedir(d);
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != EBUSY)
        rc = -1;
    return rc;
}

int rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    return s_rm_at(AT_FDCWD, path, st.st_dev);
}

bool name_ok(const char *name)
{
    if (!name || !*name || strlen(name) > 253 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.' || *p == '_'))
            return false;
    return true;
}

bool relpath_ok(const char *path)
{
    if (!path || !*path || path[0] == '/' || strlen(path) > 4000)
        return false;
    const char *p = path;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return false;
        p += n;
        while (*p == '/')
            p++;
    }
    return true;
}

void fd_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void fd_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}
