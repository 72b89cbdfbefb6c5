// The pod's volumes inside the VM. emptyDir: a directory on the scratch
// disk (tmpfs when medium is Memory). Files volumes (configMap, secret,
// downwardAPI, projected), whose contents the host sends at setup and
// again when they change (WriteFiles): laid out as the kubelet's
// AtomicWriter does (atomic_write.h), with their modes and fsGroup, on
// tmpfs when the host says so (secrets never touch a disk), else on the
// scratch disk. Containers bind-mount these directories (rootfs.c).
#include "agent.h"
#include "atomic_write.h"
#include "util.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_MODE_DEFAULT 0644
// How long an updated volume's old data directory outlives the swap: a
// reader that resolved ..data to it just before still finds its files.
#define OLD_DATA_GRACE_MS 2000

const volume_t *volume_find(const agent_t *a, const char *name)
{
    for (size_t i = 0; name && i < a->n_volumes; i++)
        if (strcmp(a->volumes[i].name, name) == 0)
            return &a->volumes[i];
    return NULL;
}

// A setup that failed half-way is retried from a clean slate.
static void s_reset(agent_t *a)
{
    for (size_t i = 0; i < a->n_volumes; i++) {
        if (a->volumes[i].tmpfs)
            umount2(a->volumes[i].dir, MNT_DETACH);
        free(a->volumes[i].name);
        free(a->volumes[i].dir);
    }
    free(a->volumes);
    a->volumes = NULL;
    a->n_volumes = 0;
}

static int s_tmpfs(const char *dir, const char *opts, vmlet_err_t *err)
{
    if (mkdir_p(dir, 0755, err) < 0)
        return -1;
    if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        return vmlet_err_errno(err, errno, "mount tmpfs on %s", dir);
    return 0;
}

static int s_volume(const Vmlet__GuestVolume *v, volume_t *out, vmlet_err_t *err)
{
    char dir[512];
    switch (v->source_case) {
    case VMLET__GUEST_VOLUME__SOURCE_EMPTY_DIR:
        if (v->empty_dir->memory) {
            snprintf(dir, sizeof dir, VOLUMES_DIR "/%s", v->name);
            char opts[64] = "mode=0777";
            if (v->empty_dir->has_size_limit_bytes && v->empty_dir->size_limit_bytes > 0)
                snprintf(opts, sizeof opts, "mode=0777,size=%" PRId64,
                         v->empty_dir->size_limit_bytes);
            if (s_tmpfs(dir, opts, err) < 0)
                return -1;
            out->tmpfs = true;
        } else {
            // Kept across a setup retried after a failure (its data is the pod's).
            snprintf(dir, sizeof dir, SCRATCH_DIR "/volumes/%s", v->name);
            if (mkdir_p(dir, 0777, err) < 0)
                return -1;
            chmod(dir, 0777); // as the kubelet makes emptyDir: any user may write
        }
        break;
    case VMLET__GUEST_VOLUME__SOURCE_FILES: {
        const Vmlet__FilesSource *f = v->files;
        uint32_t def = f->has_default_mode && f->default_mode ? f->default_mode : FILE_MODE_DEFAULT;
        if (f->tmpfs) {
            snprintf(dir, sizeof dir, VOLUMES_DIR "/%s", v->name);
            if (s_tmpfs(dir, "mode=0755", err) < 0)
                return -1;
            out->tmpfs = true;
        } else {
            snprintf(dir, sizeof dir, SCRATCH_DIR "/volumes/%s", v->name);
            rm_rf(dir); // the host's contents, fresh
            if (mkdir_p(dir, 0755, err) < 0)
                return -1;
        }
        out->dir = vmlet_xstrdup(dir);
        out->files = true;
        out->default_mode = def;
        out->fs_group = f->has_fs_group && f->fs_group >= 0 ? f->fs_group : -1;
        char old[64];
        if (atomic_write(dir, f->files, f->n_files, def, out->fs_group, old, sizeof old, err) < 0)
            return -1;
        break;
    }
    default:
        return vmlet_err_set(err, "no source (emptyDir or files)");
    }
    if (!out->dir)
        out->dir = vmlet_xstrdup(dir);
    return 0;
}

int volumes_setup(agent_t *a, const Vmlet__PodSetup *setup, vmlet_err_t *err)
{
    s_reset(a);
    a->volumes = vmlet_xcalloc(setup->n_volumes + 1, sizeof *a->volumes);
    for (size_t i = 0; i < setup->n_volumes; i++) {
        const Vmlet__GuestVolume *v = setup->volumes[i];
        if (!name_ok(v->name))
            return vmlet_err_set(err, "volume \"%s\": not a valid name", v->name ? v->name : "");
        if (volume_find(a, v->name))
            return vmlet_err_set(err, "volume %s: given twice", v->name);
        volume_t *out = &a->volumes[a->n_volumes];
        out->name = vmlet_xstrdup(v->name);
        a->n_volumes++;
        if (s_volume(v, out, err) < 0)
            return vmlet_err_wrap(err, "volume %s", v->name);
    }
    return 0;
}

// Removes the data directory an update replaced, once readers that were
// resolving a path through it have had time to open what they wanted.
static void s_drop_old(volume_t *v)
{
    if (v->old_data[0])
        atomic_write_drop(v->dir, v->old_data);
    v->old_data[0] = '\0';
}

// The volume's whole new content: swapped in at once; subPath binds of
// its files keep what they had, as on a kubelet.
int volumes_write_files(agent_t *a, const Vmlet__WriteFiles *w, vmlet_err_t *err)
{
    volume_t *v = NULL;
    for (size_t i = 0; w->volume && i < a->n_volumes; i++)
        if (strcmp(a->volumes[i].name, w->volume) == 0)
            v = &a->volumes[i];
    if (!v || !v->files)
        return vmlet_err_set(err, "WriteFiles: no files volume \"%s\"", w->volume ? w->volume : "");
    int64_t t0 = now_ms();
    s_drop_old(v); // two versions back by now
    if (atomic_write(v->dir, w->files, w->n_files, v->default_mode, v->fs_group, v->old_data,
                     sizeof v->old_data, err) < 0)
        return vmlet_err_wrap(err, "WriteFiles %s", w->volume);
    v->old_data_until_ms = now_ms() + OLD_DATA_GRACE_MS;
    alog("volume %s: new content, %zu files (%lld ms)", v->name, w->n_files,
         (long long)(now_ms() - t0));
    return 0;
}

void volumes_tick(agent_t *a, int64_t now)
{
    for (size_t i = 0; i < a->n_volumes; i++) {
        volume_t *v = &a->volumes[i];
        if (!v->old_data[0])
            continue;
        if (now >= v->old_data_until_ms)
            s_drop_old(v);
        else
            loop_deadline(a, v->old_data_until_ms);
    }
}
