// The pod's volumes inside the VM. emptyDir: a directory on the scratch
// disk (tmpfs when medium is Memory). Files volumes (configMap, secret,
// downwardAPI, projected), whose contents the host sends: written with
// their modes, on tmpfs when the host says so (secrets never touch a
// disk), else on the scratch disk. Containers bind-mount these
// directories (rootfs.c).
#include "agent.h"
#include "inroot.h"
#include "util.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_MODE_DEFAULT 0644

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

static int s_write_files(const char *dir, Vmlet__GuestFile **files, size_t n, uint32_t default_mode,
                         vmlet_err_t *err)
{
    int root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return vmlet_err_errno(err, errno, "open %s", dir);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const Vmlet__GuestFile *f = files[i];
        if (!relpath_ok(f->path)) {
            rc = vmlet_err_set(err, "file \"%s\": not a relative path inside the volume",
                               f->path ? f->path : "");
            break;
        }
        uint32_t mode = f->has_mode && f->mode ? f->mode : default_mode;
        rc = inroot_write(root, f->path, f->has_content ? f->content.data : NULL,
                          f->has_content ? f->content.len : 0, mode & 07777, err);
    }
    close(root);
    return rc;
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
        if (s_write_files(dir, f->files, f->n_files, def, err) < 0)
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

int volumes_write_files(agent_t *a, const Vmlet__WriteFiles *w, vmlet_err_t *err)
{
    const volume_t *v = volume_find(a, w->volume);
    if (!v)
        return vmlet_err_set(err, "WriteFiles: no volume \"%s\"", w->volume ? w->volume : "");
    if (s_write_files(v->dir, w->files, w->n_files, FILE_MODE_DEFAULT, err) < 0)
        return vmlet_err_wrap(err, "WriteFiles %s", w->volume);
    return 0;
}
