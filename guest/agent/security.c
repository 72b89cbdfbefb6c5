// Capabilities, no_new_privs and fsGroup inside the guest (see security.h).
#include "security.h"

#include "util.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <ftw.h>
#include <linux/capability.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

// --- capabilities and no_new_privs ----------------------------------------------------------

// Every capability this kernel knows: PR_CAPBSET_READ fails past the last.
static uint64_t s_kernel_caps(void)
{
    uint64_t all = 0;
    for (int c = 0; c < 64 && prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0; c++)
        all |= 1ULL << c;
    return all;
}

int security_child_before_user(const Vmlet__StartContainer *run, char *msg, size_t cap)
{
    if (run && run->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        snprintf(msg, cap, "set no_new_privs: %s", strerror(errno));
        return -1;
    }
    if (!run || !run->has_capabilities)
        return 0;
    // runc's order: the bounding set first, while CAP_SETPCAP is still held.
    for (int c = 0; c < 64; c++) {
        int held = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
        if (held < 0)
            break;
        if (held && !(run->capabilities & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
            snprintf(msg, cap, "drop capability %d from the bounding set: %s", c, strerror(errno));
            return -1;
        }
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) {
        snprintf(msg, cap, "keep capabilities across setuid: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int security_child_after_user(const Vmlet__StartContainer *run, char *msg, size_t cap)
{
    if (!run || !run->has_capabilities)
        return 0;
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    uint64_t set = run->capabilities & s_kernel_caps();
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    d[0].effective = d[0].permitted = (uint32_t)set;
    d[1].effective = d[1].permitted = (uint32_t)(set >> 32);
    if (syscall(SYS_capset, &h, d) < 0) {
        snprintf(msg, cap, "set capabilities %#llx: %s", (unsigned long long)set, strerror(errno));
        return -1;
    }
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    return 0;
}

// --- fsGroup ------------------------------------------------------------------------------

// The kubelet's masks for a read-write volume (pkg/volume/volume_linux.go).
#define RW_MASK 0660
#define EXEC_MASK 0110

// nftw passes no context: the agent has one thread.
static gid_t s_gid;
static int s_errno;
static char s_failed[256];

static int s_own(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (lchown(path, (uid_t)-1, s_gid) < 0 && !s_errno) {
        s_errno = errno;
        snprintf(s_failed, sizeof s_failed, "chown %s", path);
    }
    if (type == FTW_SL || type == FTW_SLN || S_ISLNK(st->st_mode))
        return 0; // no mode on a symlink
    mode_t mask = RW_MASK;
    if (S_ISDIR(st->st_mode))
        mask |= S_ISGID | EXEC_MASK;
    if (chmod(path, (st->st_mode & 07777) | mask) < 0 && !s_errno) {
        s_errno = errno;
        snprintf(s_failed, sizeof s_failed, "chmod %s", path);
    }
    return 0;
}

int security_own_tree(const char *dir, gid_t gid, vmlet_err_t *err)
{
    s_gid = gid;
    s_errno = 0;
    s_failed[0] = '\0';
    if (nftw(dir, s_own, 16, FTW_PHYS | FTW_MOUNT) < 0)
        return vmlet_err_errno(err, errno, "walk %s", dir);
    if (s_errno)
        return vmlet_err_errno(err, s_errno, "%s", s_failed);
    return 0;
}

// emptyDirs given their group this boot, by directory.
static char **s_done;
static size_t s_n_done;

static bool s_is_done(const char *dir)
{
    for (size_t i = 0; i < s_n_done; i++)
        if (strcmp(s_done[i], dir) == 0)
            return true;
    return false;
}

void security_own_empty_dirs(agent_t *a, const Vmlet__StartContainer *run)
{
    if (!run->has_fs_group || run->fs_group < 0)
        return;
    for (size_t i = 0; i < run->n_fs_group_empty_dirs; i++) {
        const volume_t *v = volume_find(a, run->fs_group_empty_dirs[i]);
        if (!v || s_is_done(v->dir))
            continue;
        vmlet_err_t err = {0};
        if (security_own_tree(v->dir, (gid_t)run->fs_group, &err) < 0)
            alog("volume %s: fsGroup %lld: %s", run->fs_group_empty_dirs[i],
                 (long long)run->fs_group, err.msg);
        s_done = vmlet_xrealloc(s_done, (s_n_done + 1) * sizeof *s_done);
        s_done[s_n_done++] = vmlet_xstrdup(v->dir);
    }
}
