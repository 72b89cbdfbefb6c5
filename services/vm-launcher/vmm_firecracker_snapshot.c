// Firecracker's side of VM templates (docs/templates.md): a VM booted until
// its agent waits is paused and snapshotted into the template directory; a
// pod starts by loading that snapshot into a fresh Firecracker, pointing
// each drive at the pod's own disk and resuming it. The contract followed is
// Firecracker's docs/snapshotting/snapshot-support.md and the /vm,
// /snapshot/create, /snapshot/load and PATCH /drives/{drive_id} paths of
// its swagger file, as of the API vmlet pins (v1.8, firecracker_api.h).
//
// A template directory holds:
//   state             the microVM state (devices, vCPUs), from /snapshot/create
//   mem               the guest memory, written in full (see fc_template_save)
//   firecracker.json  what the snapshot baked in: sizes, drives, the vsock UDS
// state, mem and firecracker.json are written under a ".part" name and
// renamed once the snapshot is complete, manifest last: restored VMs map
// `mem` for their whole life, so a template is never rewritten in place.
//
// The snapshot bakes in absolute paths: the drives' files and the vsock
// UDS. Nothing baked may point into the template directory, because the
// launcher builds a template in one directory and renames it into place.
// So the template VM's vsock UDS is <parent>/.fc-<hash>.vsock, next to the
// template directory (<hash>: of the directory it was built in). Every
// restore binds that path again and moves the socket into the pod's state
// directory (s_move_uds), so it only exists while a template VM runs or a
// restore is between its load and that move.
#include "firecracker_api.h"
#include "vmm_backend.h"

#include "vmlet/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define TPL_STATE "state"
#define TPL_MEM "mem"
#define TPL_MANIFEST "firecracker.json"
#define TPL_PART ".part"
#define TPL_MANIFEST_MAX (64 * 1024)

// "<dir>/<name><suffix>" into buf; fails if it does not fit.
static int s_tpl_path(char *buf, size_t cap, const char *dir, const char *name, const char *suffix,
                      vmlet_err_t *err)
{
    int n = snprintf(buf, cap, "%s/%s%s", dir, name, suffix);
    if (n < 0 || (size_t)n >= cap)
        return vmlet_err_set(err, "%s/%s%s: path too long", dir, name, suffix);
    return 0;
}

static int s_write_json(const char *path, const cJSON *obj, vmlet_err_t *err)
{
    char *text = cJSON_Print(obj);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    size_t len = text ? strlen(text) : 0;
    bool ok = text && fd >= 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    int e = errno;
    if (fd >= 0)
        close(fd);
    free(text);
    return ok ? 0 : vmlet_err_errno(err, e, "writing %s", path);
}

static cJSON *s_read_json(const char *path, vmlet_err_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vmlet_err_errno(err, errno, "reading %s", path);
        return NULL;
    }
    char *buf = malloc(TPL_MANIFEST_MAX);
    ssize_t n = buf ? read(fd, buf, TPL_MANIFEST_MAX) : -1;
    close(fd);
    cJSON *obj = n > 0 && n < TPL_MANIFEST_MAX ? cJSON_ParseWithLength(buf, (size_t)n) : NULL;
    free(buf);
    if (!cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        vmlet_err_set(err, "%s: not a Firecracker template manifest", path);
        return NULL;
    }
    return obj;
}

// --- saving ------------------------------------------------------------------

// <parent of dir>/.fc-<FNV-1a 64 of dir>.vsock: short (sun_path has 108
// bytes), outside dir, and distinct for templates built at the same time.
static int s_template_uds(const char *dir, char *uds, size_t cap, vmlet_err_t *err)
{
    uint64_t hash = 14695981039346656037ULL;
    for (const char *p = dir; *p; p++)
        hash = (hash ^ (unsigned char)*p) * 1099511628211ULL;
    const char *slash = strrchr(dir, '/');
    int parent = slash && slash > dir ? (int)(slash - dir) : 0;
    int n = snprintf(uds, cap, "%.*s/.fc-%016llx.vsock", parent, dir, (unsigned long long)hash);
    if (n < 0 || (size_t)n >= cap)
        return vmlet_err_set(err, "%.*s: too long a directory for the template's vsock socket",
                             parent, dir);
    return 0;
}

int fc_template_begin(const vmm_spec_t *spec, char *uds, size_t cap, vmlet_err_t *err)
{
    // Paths baked into the snapshot are resolved by the restoring
    // Firecracker, whose working directory is not ours.
    if (spec->template_dir[0] != '/')
        return vmlet_err_set(err, "template dir \"%s\" must be an absolute path",
                             spec->template_dir);
    if (s_template_uds(spec->template_dir, uds, cap, err) < 0)
        return -1;
    cJSON *manifest = cJSON_CreateObject();
    cJSON_AddNumberToObject(manifest, "vcpus", spec->vcpus);
    cJSON_AddNumberToObject(manifest, "mem_mib", spec->mem_mib);
    cJSON *drives = cJSON_AddArrayToObject(manifest, "drives");
    for (size_t i = 0; i < spec->n_disks; i++) {
        char drive_id[32];
        snprintf(drive_id, sizeof drive_id, FC_DRIVE_ID_FMT, i);
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "drive_id", drive_id);
        cJSON_AddStringToObject(d, "path_on_host", spec->disks[i].path);
        cJSON_AddBoolToObject(d, "is_read_only", spec->disks[i].read_only);
        cJSON_AddItemToArray(drives, d);
    }
    cJSON_AddStringToObject(manifest, "vsock_uds", uds);
    char path[PATH_MAX];
    int rc = s_tpl_path(path, sizeof path, spec->template_dir, TPL_MANIFEST, TPL_PART, err);
    if (rc == 0)
        rc = s_write_json(path, manifest, err);
    cJSON_Delete(manifest);
    return rc;
}

static int s_set_vm_state(fc_api_t *api, const char *state, vmlet_err_t *err)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "state", state);
    int rc = fc_api_patch(api, "/vm", body, err);
    cJSON_Delete(body);
    return rc;
}

// Firecracker backs guest memory with anonymous private memory (memfd only
// with vhost-user block devices: CHANGELOG 1.7.0, #4498), so unlike QEMU's
// file-backed template memory there is nothing to link: a Full snapshot of
// a VM without dirty-page tracking writes the whole guest memory to
// mem_file_path (snapshot-support.md, "Snapshotting characteristics").
static int s_snapshot_create(fc_api_t *api, const char *dir, vmlet_err_t *err)
{
    char state[PATH_MAX], mem[PATH_MAX];
    if (s_tpl_path(state, sizeof state, dir, TPL_STATE, TPL_PART, err) < 0 ||
        s_tpl_path(mem, sizeof mem, dir, TPL_MEM, TPL_PART, err) < 0)
        return -1;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "snapshot_type", "Full");
    cJSON_AddStringToObject(body, "snapshot_path", state);
    cJSON_AddStringToObject(body, "mem_file_path", mem);
    int rc = fc_api_put(api, "/snapshot/create", body, err);
    cJSON_Delete(body);
    return rc;
}

// Renames the ".part" files into place, the manifest last: restore trusts
// a template only once its manifest is there.
static int s_commit(const char *dir, vmlet_err_t *err)
{
    const char *names[] = {TPL_STATE, TPL_MEM, TPL_MANIFEST};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char from[PATH_MAX], to[PATH_MAX];
        if (s_tpl_path(from, sizeof from, dir, names[i], TPL_PART, err) < 0 ||
            s_tpl_path(to, sizeof to, dir, names[i], "", err) < 0)
            return -1;
        if (rename(from, to) < 0)
            return vmlet_err_errno(err, errno, "renaming %s", from);
    }
    return 0;
}

int fc_template_save(vmm_vm_t *vm, const char *template_dir, int timeout_ms, vmlet_err_t *err)
{
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    char manifest[PATH_MAX];
    if (s_tpl_path(manifest, sizeof manifest, template_dir, TPL_MANIFEST, TPL_PART, err) < 0)
        return vmlet_err_wrap(err, "VM %s: firecracker template save", vm->id);
    if (access(manifest, F_OK) < 0)
        return vmlet_err_set(err,
                             "VM %s: firecracker template save: it was not started as a template "
                             "in %s (no %s; set spec.template_dir when starting it)",
                             vm->id, template_dir, manifest);
    int control = vm->vmm->settings.control_timeout_ms;
    fc_api_t *api = fc_api_new(vm->control, control < timeout_ms ? control : timeout_ms);
    if (!api)
        return vmlet_err_set(err, "VM %s: firecracker template save: curl_easy_init failed",
                             vm->id);
    // /snapshot/create needs a paused VM (its Prerequisites); the VM stays
    // paused afterwards, and the caller kills it.
    int rc = s_set_vm_state(api, "Paused", err);
    if (rc == 0) {
        fc_api_set_timeout(api, (int)(deadline - vmlet_now_ms()));
        rc = s_snapshot_create(api, template_dir, err);
    }
    fc_api_destroy(&api);
    if (rc == 0)
        rc = s_commit(template_dir, err);
    if (rc < 0)
        return vmlet_err_wrap(err, "VM %s: firecracker template save to %s", vm->id, template_dir);
    // Nothing will connect to the template VM again (the snapshot reset
    // its vsock connections, and the caller kills it): free the path the
    // restores bind.
    unlink(vm->agent);
    return 0;
}

// --- restoring ---------------------------------------------------------------

// Checks the template is complete and that spec matches what its snapshot
// baked in: vCPUs, memory and each drive's read-only flag cannot change at
// restore (PartialDrive has only path_on_host and a rate limiter). Fills
// uds with the vsock UDS path the snapshot names.
static int s_match_template(const vmm_spec_t *spec, const cJSON *manifest, char *uds, size_t cap,
                            vmlet_err_t *err)
{
    int vcpus = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(manifest, "vcpus"));
    int mem = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(manifest, "mem_mib"));
    if (vcpus != spec->vcpus || mem != spec->mem_mib)
        return vmlet_err_set(err,
                             "the template has %d vCPUs and %d MiB, the pod %d and %d: a snapshot "
                             "cannot be resized",
                             vcpus, mem, spec->vcpus, spec->mem_mib);
    const cJSON *drives = cJSON_GetObjectItemCaseSensitive(manifest, "drives");
    if (!cJSON_IsArray(drives) || (size_t)cJSON_GetArraySize(drives) != spec->n_disks)
        return vmlet_err_set(err, "the template has %d drives, the pod %zu",
                             cJSON_GetArraySize(drives), spec->n_disks);
    for (size_t i = 0; i < spec->n_disks; i++) {
        const cJSON *d = cJSON_GetArrayItem(drives, (int)i);
        bool ro = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "is_read_only"));
        if (!spec->disks[i].path || !*spec->disks[i].path)
            return vmlet_err_set(err, "disk %zu has no path", i);
        if (ro != spec->disks[i].read_only)
            return vmlet_err_set(err,
                                 "disk %zu is %s in the template and %s for the pod: the flag is "
                                 "in the snapshot and PATCH /drives cannot change it",
                                 i, ro ? "read-only" : "writable",
                                 spec->disks[i].read_only ? "read-only" : "writable");
    }
    const char *path =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(manifest, "vsock_uds"));
    if (!path || path[0] != '/' || strlen(path) >= cap)
        return vmlet_err_set(err, "the manifest names no usable vsock UDS");
    snprintf(uds, cap, "%s", path);
    return 0;
}

static int s_restore_check(const vmm_spec_t *spec, const char *dir, char *uds, size_t cap,
                           vmlet_err_t *err)
{
    if (!spec->state_dir || spec->state_dir[0] != '/')
        return vmlet_err_set(err, "state dir \"%s\" must be an absolute path",
                             spec->state_dir ? spec->state_dir : "");
    // The snapshot names the template's tap; the pinned API (v1.8) cannot
    // point it at another one (network_overrides came in a later release)
    // and the pods of one launcher share a network namespace, so their taps
    // cannot all carry the template's name.
    if (spec->nic)
        return vmlet_err_set(err,
                             "a restored Firecracker VM cannot have a network interface: "
                             "snapshot/load reopens the template's tap and the API vmlet pins "
                             "(v%d.%d) has no network_overrides; cold-boot pods with network",
                             FC_API_MIN_MAJOR, FC_API_MIN_MINOR);
    if (spec->n_disks > VMM_MAX_DISKS)
        return vmlet_err_set(err, "%zu disks, at most %d", spec->n_disks, VMM_MAX_DISKS);
    char path[PATH_MAX];
    const char *files[] = {TPL_STATE, TPL_MEM};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (s_tpl_path(path, sizeof path, dir, files[i], "", err) < 0)
            return -1;
        if (access(path, R_OK) < 0)
            return vmlet_err_errno(err, errno, "%s (was template_save run?)", path);
    }
    if (s_tpl_path(path, sizeof path, dir, TPL_MANIFEST, "", err) < 0)
        return -1;
    cJSON *manifest = s_read_json(path, err);
    if (!manifest)
        return -1;
    int rc = s_match_template(spec, manifest, uds, cap, err);
    cJSON_Delete(manifest);
    return rc;
}

// Firecracker binds the vsock UDS the snapshot names when it loads it, and
// fails if the path exists. A socket left by a dead Firecracker is removed;
// one that accepts belongs to a live VM (the template VM still running, or
// another restore between its load and its rename) and is not touched.
static int s_free_uds(const char *uds, vmlet_err_t *err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", uds);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vmlet_err_errno(err, errno, "socket");
    int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    int e = errno;
    close(fd);
    if (rc == 0)
        return vmlet_err_set(err,
                             "%s is in use (is the template VM still running, or another restore "
                             "from this template under way?)",
                             uds);
    if (e != ENOENT && unlink(uds) < 0 && errno != ENOENT)
        return vmlet_err_errno(err, errno, "removing the stale %s", uds);
    return 0;
}

// mem_backend File: Firecracker maps the memory file MAP_PRIVATE, so pages
// load on demand and the guest's writes go to copy-on-write anonymous
// memory; the file must stay unchanged while any restored VM runs. The VM
// stays paused (resume_vm false) until its drives point at the pod's files.
static int s_snapshot_load(fc_api_t *api, const char *dir, vmlet_err_t *err)
{
    char state[PATH_MAX], mem[PATH_MAX];
    if (s_tpl_path(state, sizeof state, dir, TPL_STATE, "", err) < 0 ||
        s_tpl_path(mem, sizeof mem, dir, TPL_MEM, "", err) < 0)
        return -1;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "snapshot_path", state);
    cJSON *backend = cJSON_AddObjectToObject(body, "mem_backend");
    cJSON_AddStringToObject(backend, "backend_type", "File");
    cJSON_AddStringToObject(backend, "backend_path", mem);
    cJSON_AddBoolToObject(body, "resume_vm", false);
    int rc = fc_api_put(api, "/snapshot/load", body, err);
    cJSON_Delete(body);
    return rc;
}

// The loaded vsock device listens on the template's UDS path (the v1.8 API
// has no vsock_override). Host-initiated connections only need the bound
// socket, not its name, so renaming it frees the template's path for the
// next restore and gives the pod its <state_dir>/agent.sock. Guest-initiated
// connections (to "<uds>_<port>") would still use the template's path;
// vmlet's agent makes none.
static int s_move_uds(const char *from, const char *to, vmlet_err_t *err)
{
    if (rename(from, to) == 0)
        return 0;
    if (errno == EXDEV)
        return vmlet_err_set(err,
                             "moving the vsock UDS %s to %s: the template and state directories "
                             "must be on one filesystem",
                             from, to);
    return vmlet_err_errno(err, errno, "moving the vsock UDS %s to %s", from, to);
}

// The drives still name the template's files (opened by the load); PATCH
// /drives is a post-boot request, which a loaded VM accepts, and done
// before the resume the guest never sees the template's disks.
static int s_point_drives(fc_api_t *api, const vmm_spec_t *spec, vmlet_err_t *err)
{
    for (size_t i = 0; i < spec->n_disks; i++) {
        char drive_id[32], path[64];
        snprintf(drive_id, sizeof drive_id, FC_DRIVE_ID_FMT, i);
        snprintf(path, sizeof path, "/drives/%s", drive_id);
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "drive_id", drive_id);
        cJSON_AddStringToObject(body, "path_on_host", spec->disks[i].path);
        int rc = fc_api_patch(api, path, body, err);
        cJSON_Delete(body);
        if (rc < 0)
            return -1;
    }
    return 0;
}

// Load, move the vsock UDS, point the drives, resume. *moved tells the
// caller whether the socket left the template's UDS path.
static int s_restore_steps(vmm_vm_t *vm, const vmm_spec_t *spec, const char *dir, const char *uds,
                           bool *moved, vmlet_err_t *err)
{
    fc_api_t *api = fc_api_new(vm->control, vm->vmm->settings.control_timeout_ms);
    if (!api)
        return vmlet_err_set(err, "curl_easy_init failed");
    int rc = s_snapshot_load(api, dir, err);
    if (rc == 0) {
        rc = s_move_uds(uds, vm->agent, err);
        *moved = rc == 0;
    }
    if (rc == 0)
        rc = s_point_drives(api, spec, err);
    if (rc == 0)
        rc = s_set_vm_state(api, "Resumed", err);
    fc_api_destroy(&api);
    return rc;
}

vmm_vm_t *fc_restore(vmm_t *vmm, const vmm_spec_t *spec, const char *template_dir, vmlet_err_t *err)
{
    char uds[VMM_SUN_PATH_MAX];
    if (s_restore_check(spec, template_dir, uds, sizeof uds, err) < 0 || s_free_uds(uds, err) < 0) {
        vmlet_err_wrap(err, "VM %s: firecracker restore from %s", spec->id, template_dir);
        return NULL;
    }
    // A fresh process: /snapshot/load is refused once anything but the
    // logger and metrics is configured. Its state file is written before
    // the load, so a launcher restart can adopt (or kill) it.
    int64_t deadline = vmlet_now_ms() + vmm->settings.start_timeout_ms;
    vmm_vm_t *vm = fc_vm_launch(vmm, spec, NULL, deadline, err);
    bool moved = false;
    if (vm && s_restore_steps(vm, spec, template_dir, uds, &moved, err) == 0)
        return vm;
    vmlet_err_wrap(err, "VM %s: firecracker restore from %s", spec->id, template_dir);
    fc_vm_abort(&vm);
    if (!moved) // the killed process's socket, if it got that far
        unlink(uds);
    return NULL;
}
