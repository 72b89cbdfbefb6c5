#include "vmlet/fsutil.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

static int s_mkdir_one(const char *path, mode_t mode, vmlet_err_t *err)
{
    if (mkdir(path, mode) == 0)
        return 0;
    struct stat st;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    return vmlet_err_errno(err, errno == EEXIST ? ENOTDIR : errno, "making %s", path);
}

int vmlet_mkdirs(const char *path, mode_t mode, vmlet_err_t *err)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return vmlet_err_set(err, "making directory: bad path \"%s\"", path);
    memcpy(buf, path, n + 1);
    // Each '/' after the first character ends a parent to make first.
    for (size_t i = 1; i < n; i++) {
        if (buf[i] != '/')
            continue;
        buf[i] = '\0';
        int rc = s_mkdir_one(buf, mode, err);
        buf[i] = '/';
        if (rc < 0)
            return -1;
    }
    return s_mkdir_one(buf, mode, err);
}
