// A pod's volumes for the guest (see volumes.h).
#include "volumes.h"

#include "vmlet/pb.h"
#include "vmlet/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_MODE 0644

typedef struct {
    Vmlet__GuestFile **files;
    size_t n;
} files_t;

static void s_file(files_t *f, const char *path, const uint8_t *data, size_t len, uint32_t mode)
{
    for (size_t i = 0; i < f->n; i++) // a later source wins a path (projected volumes)
        if (strcmp(f->files[i]->path, path) == 0) {
            vmlet__guest_file__free_unpacked(f->files[i], NULL);
            f->files[i] = f->files[--f->n];
            break;
        }
    Vmlet__GuestFile *file = PB_NEW(Vmlet__GuestFile, VMLET__GUEST_FILE__INIT);
    file->path = vmlet_xstrdup(path);
    file->has_content = 1;
    file->content.data = vmlet_xmalloc(len + 1);
    memcpy(file->content.data, data, len);
    file->content.len = len;
    PB_SET(file, mode, mode);
    f->files = vmlet_xrealloc(f->files, (f->n + 1) * sizeof *f->files);
    f->files[f->n++] = file;
}

static int s_problem(run_problem_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_problem(run_problem_t *p, const char *fmt, ...)
{
    // The kubelet keeps such a pod ContainerCreating and retries the mount.
    snprintf(p->reason, sizeof p->reason, "ContainerCreating");
    p->retryable = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof p->message, fmt, ap);
    va_end(ap);
    return -1;
}

static uint32_t s_mode(int32_t item_mode, bool has_item_mode, int32_t default_mode,
                       bool has_default)
{
    if (has_item_mode)
        return (uint32_t)item_mode & 07777;
    return has_default ? (uint32_t)default_mode & 07777 : DEFAULT_MODE;
}

// configMap and secret: every key, or the listed items.
static int s_object_files(const volume_inputs_t *in, const char *volume, bool secret,
                          const char *name, Vmlet__KeyToPath **items, size_t n_items,
                          int32_t default_mode, bool has_default, bool optional, files_t *files,
                          run_problem_t *problem, vmlet_err_t *err)
{
    const char *kind = secret ? "secret" : "configmap";
    object_data_t data;
    int rc = in->fetch(in->ctx, secret ? "secrets" : "configmaps", in->run->pod->pod->namespace_,
                       name, &data, err);
    if (rc < 0)
        return vmlet_err_wrap(err, "volume %s", volume);
    if (rc == 1)
        return optional ? 0
                        : s_problem(problem,
                                    "MountVolume.SetUp failed for volume \"%s\" : %s \"%s\" not "
                                    "found",
                                    volume, kind, name);
    if (n_items == 0) {
        for (size_t i = 0; i < data.n; i++)
            s_file(files, data.items[i].key, data.items[i].value, data.items[i].len,
                   s_mode(0, false, default_mode, has_default));
    }
    for (size_t i = 0; i < n_items; i++) {
        const object_item_t *item = object_data_find(&data, items[i]->key);
        if (!item) {
            if (optional)
                continue;
            object_data_clear(&data);
            return s_problem(problem,
                             "MountVolume.SetUp failed for volume \"%s\" : %s references "
                             "non-existent config key: %s",
                             volume, kind, items[i]->key);
        }
        s_file(files, items[i]->path, item->value, item->len,
               s_mode(items[i]->mode, items[i]->has_mode, default_mode, has_default));
    }
    object_data_clear(&data);
    return 0;
}

static int s_downward_files(const volume_inputs_t *in, const char *volume,
                            const Vmlet__DownwardApiVolume *d, int32_t default_mode,
                            bool has_default, files_t *files, run_problem_t *problem)
{
    for (size_t i = 0; i < d->n_items; i++) {
        const Vmlet__DownwardApiFile *item = d->items[i];
        char *value = NULL;
        if (item->field)
            value = container_run_field(in->run, item->field->field_path);
        else if (item->resource_field)
            value = container_run_resource(in->run, item->resource_field, problem);
        if (!value)
            return s_problem(problem, "MountVolume.SetUp failed for volume \"%s\" : item %s: %s",
                             volume, item->path,
                             item->field ? "unsupported fieldRef" : problem->message);
        s_file(files, item->path, (const uint8_t *)value, strlen(value),
               s_mode(item->mode, item->has_mode, default_mode, has_default));
        free(value);
    }
    return 0;
}

static int s_token_file(const volume_inputs_t *in, const char *volume,
                        const Vmlet__ServiceAccountTokenProjection *t, int32_t mode,
                        bool has_mode, files_t *files, run_problem_t *problem, vmlet_err_t *err)
{
    const Vmlet__PodSpec *pod = in->run->pod;
    const char *sa = pod->service_account_name && *pod->service_account_name
                         ? pod->service_account_name
                         : "default";
    char *token = NULL;
    if (!in->token)
        return s_problem(problem, "volume %s: service account tokens are not available", volume);
    if (in->token(in->ctx, pod->pod->namespace_, sa, t->audience,
                  t->has_expiration_seconds ? t->expiration_seconds : 3600, &token, err) < 0)
        return vmlet_err_wrap(err, "volume %s: token for service account %s", volume, sa);
    s_file(files, t->path, (const uint8_t *)token, strlen(token), s_mode(0, false, mode, has_mode));
    explicit_bzero(token, strlen(token));
    free(token);
    return 0;
}

static Vmlet__GuestVolume *s_files_volume(const volume_inputs_t *in, const char *name,
                                          files_t *files, bool tmpfs)
{
    Vmlet__GuestVolume *v = PB_NEW(Vmlet__GuestVolume, VMLET__GUEST_VOLUME__INIT);
    v->name = vmlet_xstrdup(name);
    v->source_case = VMLET__GUEST_VOLUME__SOURCE_FILES;
    v->files = PB_NEW(Vmlet__FilesSource, VMLET__FILES_SOURCE__INIT);
    v->files->files = files->files;
    v->files->n_files = files->n;
    PB_SET(v->files, tmpfs, tmpfs);
    // The kubelet gives these volumes the pod's fsGroup (SetVolumeOwnership).
    const Vmlet__PodSecurityContext *psc = in->run->pod->security_context;
    if (psc && psc->has_fs_group)
        PB_SET(v->files, fs_group, psc->fs_group);
    return v;
}

int volumes_build_one(const volume_inputs_t *in, const Vmlet__Volume *vol, Vmlet__GuestVolume **out,
                      run_problem_t *problem, vmlet_err_t *err)
{
    files_t files = {0};
    int rc = 0;
    bool tmpfs = false;
    switch (vol->source_case) {
    case VMLET__VOLUME__SOURCE_EMPTY_DIR: {
        Vmlet__GuestVolume *v = PB_NEW(Vmlet__GuestVolume, VMLET__GUEST_VOLUME__INIT);
        v->name = vmlet_xstrdup(vol->name);
        v->source_case = VMLET__GUEST_VOLUME__SOURCE_EMPTY_DIR;
        v->empty_dir = PB_NEW(Vmlet__EmptyDirSource, VMLET__EMPTY_DIR_SOURCE__INIT);
        PB_SET(v->empty_dir, memory,
               vol->empty_dir->medium && strcmp(vol->empty_dir->medium, "Memory") == 0);
        if (vol->empty_dir->has_size_limit_bytes)
            PB_SET(v->empty_dir, size_limit_bytes, vol->empty_dir->size_limit_bytes);
        *out = v;
        return 0;
    }
    case VMLET__VOLUME__SOURCE_CONFIG_MAP: {
        const Vmlet__ConfigMapVolume *c = vol->config_map;
        rc = s_object_files(in, vol->name, false, c->name, c->items, c->n_items, c->default_mode,
                            c->has_default_mode, c->optional, &files, problem, err);
        break;
    }
    case VMLET__VOLUME__SOURCE_SECRET: {
        const Vmlet__SecretVolume *s = vol->secret;
        tmpfs = true;
        rc = s_object_files(in, vol->name, true, s->secret_name, s->items, s->n_items,
                            s->default_mode, s->has_default_mode, s->optional, &files, problem,
                            err);
        break;
    }
    case VMLET__VOLUME__SOURCE_DOWNWARD_API:
        rc = s_downward_files(in, vol->name, vol->downward_api, vol->downward_api->default_mode,
                              vol->downward_api->has_default_mode, &files, problem);
        break;
    case VMLET__VOLUME__SOURCE_PROJECTED: {
        const Vmlet__ProjectedVolume *p = vol->projected;
        for (size_t i = 0; i < p->n_sources && rc == 0; i++) {
            const Vmlet__VolumeProjection *src = p->sources[i];
            if (src->source_case == VMLET__VOLUME_PROJECTION__SOURCE_CONFIG_MAP) {
                const Vmlet__ConfigMapVolume *c = src->config_map;
                rc = s_object_files(in, vol->name, false, c->name, c->items, c->n_items,
                                    p->default_mode, p->has_default_mode, c->optional, &files,
                                    problem, err);
            } else if (src->source_case == VMLET__VOLUME_PROJECTION__SOURCE_SECRET) {
                const Vmlet__SecretVolume *s = src->secret;
                tmpfs = true;
                rc = s_object_files(in, vol->name, true, s->secret_name, s->items, s->n_items,
                                    p->default_mode, p->has_default_mode, s->optional, &files,
                                    problem, err);
            } else if (src->source_case == VMLET__VOLUME_PROJECTION__SOURCE_DOWNWARD_API) {
                rc = s_downward_files(in, vol->name, src->downward_api, p->default_mode,
                                      p->has_default_mode, &files, problem);
            } else if (src->source_case ==
                       VMLET__VOLUME_PROJECTION__SOURCE_SERVICE_ACCOUNT_TOKEN) {
                tmpfs = true;
                rc = s_token_file(in, vol->name, src->service_account_token, p->default_mode,
                                  p->has_default_mode, &files, problem, err);
            }
        }
        break;
    }
    default:
        // k8s-watcher turns unsupported volumes into a pod problem first.
        return s_problem(problem, "volume %s: unsupported volume type", vol->name);
    }
    Vmlet__GuestVolume *v = s_files_volume(in, vol->name, &files, tmpfs);
    if (rc < 0) {
        vmlet__guest_volume__free_unpacked(v, NULL);
        return -1;
    }
    *out = v;
    return 0;
}

int volumes_build(const volume_inputs_t *in, Vmlet__GuestVolume ***out, size_t *n,
                  run_problem_t *problem, vmlet_err_t *err)
{
    memset(problem, 0, sizeof *problem);
    const Vmlet__PodSpec *pod = in->run->pod;
    Vmlet__GuestVolume **list = vmlet_xcalloc(pod->n_volumes + 1, sizeof *list);
    for (size_t i = 0; i < pod->n_volumes; i++) {
        if (volumes_build_one(in, pod->volumes[i], &list[i], problem, err) < 0) {
            volumes_free(list, i);
            return -1;
        }
    }
    *out = list;
    *n = pod->n_volumes;
    return 0;
}

const char *volumes_kind(const Vmlet__Volume *vol)
{
    switch (vol->source_case) {
    case VMLET__VOLUME__SOURCE_CONFIG_MAP:
        return "configMap";
    case VMLET__VOLUME__SOURCE_SECRET:
        return "secret";
    case VMLET__VOLUME__SOURCE_DOWNWARD_API:
        return "downwardAPI";
    case VMLET__VOLUME__SOURCE_PROJECTED:
        return "projected";
    default:
        return NULL;
    }
}

bool volumes_from_metadata(const Vmlet__Volume *vol)
{
    if (vol->source_case == VMLET__VOLUME__SOURCE_DOWNWARD_API)
        return true;
    if (vol->source_case != VMLET__VOLUME__SOURCE_PROJECTED)
        return false;
    for (size_t i = 0; i < vol->projected->n_sources; i++)
        if (vol->projected->sources[i]->source_case ==
            VMLET__VOLUME_PROJECTION__SOURCE_DOWNWARD_API)
            return true;
    return false;
}

void volumes_free_one(Vmlet__GuestVolume *v)
{
    if (!v)
        return;
    if (v->source_case == VMLET__GUEST_VOLUME__SOURCE_FILES)
        for (size_t f = 0; f < v->files->n_files; f++) // secrets among them: wipe
            explicit_bzero(v->files->files[f]->content.data, v->files->files[f]->content.len);
    vmlet__guest_volume__free_unpacked(v, NULL);
}

void volumes_free(Vmlet__GuestVolume **volumes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        volumes_free_one(volumes[i]);
    free(volumes);
}
