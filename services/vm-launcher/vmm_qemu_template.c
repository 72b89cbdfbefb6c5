// QEMU templates (docs/templates.md): a template VM runs with its guest
// memory in a file mapped shared, so saving it writes only the device
// state (QMP `stop`, then `migrate` with x-ignore-shared: RAM that is
// shared with a file is left out of the stream). A restore maps that file
// private (copy on write: the file never changes, and no VM sees another's
// writes) and loads the device state with `migrate-incoming`. Nothing is
// copied up front, so a restore costs the same for any guest memory size:
// the guest faults in the pages it touches from the page cache.
//
// QEMU 7.2 has no file: migration URI; exec: runs `cat` through /bin/sh,
// so paths are quoted, and a path with a quote in it is refused.
#include "qmp.h"
#include "vmm_backend.h"

#include "vmlet/timeutil.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 10

static void s_sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000};
    nanosleep(&ts, NULL);
}

static int s_exec_uri(char *buf, size_t cap, const char *command, const char *path,
                      vmlet_err_t *err)
{
    if (strchr(path, '\''))
        return vmlet_err_set(err, "template path %s: a quote cannot pass through exec:", path);
    if ((size_t)snprintf(buf, cap, "exec:%s '%s'", command, path) >= cap)
        return vmlet_err_set(err, "template path %s: too long", path);
    return 0;
}

// x-ignore-shared: RAM backed by a shared file (the template's) stays out
// of the migration stream, on both sides.
static int s_ignore_shared(qmp_t *qmp, int timeout_ms, vmlet_err_t *err)
{
    cJSON *args = cJSON_CreateObject();
    cJSON *caps = cJSON_AddArrayToObject(args, "capabilities");
    cJSON *cap = cJSON_CreateObject();
    cJSON_AddStringToObject(cap, "capability", "x-ignore-shared");
    cJSON_AddBoolToObject(cap, "state", 1);
    cJSON_AddItemToArray(caps, cap);
    int rc = qmp_execute(qmp, "migrate-set-capabilities", args, NULL, timeout_ms, err);
    cJSON_Delete(args);
    return rc;
}

static int s_execute_uri(qmp_t *qmp, const char *command, const char *uri, int timeout_ms,
                         vmlet_err_t *err)
{
    cJSON *args = cJSON_CreateObject();
    cJSON_AddStringToObject(args, "uri", uri);
    int rc = qmp_execute(qmp, command, args, NULL, timeout_ms, err);
    cJSON_Delete(args);
    return rc;
}

// A string member of what `command` returns ("status" of query-migrate or
// query-status) into out.
static int s_query(qmp_t *qmp, const char *command, char *out, size_t cap, int timeout_ms,
                   vmlet_err_t *err)
{
    cJSON *ret = NULL;
    if (qmp_execute(qmp, command, NULL, &ret, timeout_ms, err) < 0)
        return -1;
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ret, "status"));
    snprintf(out, cap, "%s", status ? status : "");
    cJSON_Delete(ret);
    return 0;
}

int vmm_qemu_template_save(vmm_vm_t *vm, const char *template_dir, int timeout_ms,
                           vmlet_err_t *err)
{
    char state[PATH_MAX], tmp[PATH_MAX + 8], uri[PATH_MAX + 32];
    if (vmm_path(state, sizeof state, template_dir, VMM_TEMPLATE_STATE, err) < 0)
        return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp", state);
    if (s_exec_uri(uri, sizeof uri, "cat >", tmp, err) < 0)
        return -1;
    int64_t deadline = vmlet_now_ms() + timeout_ms;
    qmp_t *qmp = qmp_connect(vm->control, timeout_ms, err);
    if (!qmp)
        return vmlet_err_wrap(err, "template of VM %s", vm->id);
    char status[64] = "";
    int rc = s_ignore_shared(qmp, timeout_ms, err);
    if (rc == 0)
        rc = qmp_execute(qmp, "stop", NULL, NULL, timeout_ms, err);
    if (rc == 0)
        rc = s_execute_uri(qmp, "migrate", uri, timeout_ms, err);
    while (rc == 0) {
        rc = s_query(qmp, "query-migrate", status, sizeof status, timeout_ms, err);
        if (rc < 0 || strcmp(status, "completed") == 0)
            break;
        if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0)
            rc = vmlet_err_set(err, "migrate to %s: %s", tmp, status);
        else if (vmlet_now_ms() > deadline)
            rc = vmlet_err_set(err, "migrate to %s: still %s after %d ms", tmp, status,
                               timeout_ms);
        else
            s_sleep_ms(POLL_MS);
    }
    qmp_destroy(&qmp);
    if (rc == 0 && rename(tmp, state) < 0)
        rc = vmlet_err_errno(err, errno, "rename %s", tmp);
    if (rc < 0) {
        unlink(tmp);
        return vmlet_err_wrap(err, "saving VM %s as a template", vm->id);
    }
    return 0;
}

// The template's files are there, and its memory is the size spec asks.
static int s_check_template(const vmm_spec_t *spec, const char *memory, const char *state,
                            vmlet_err_t *err)
{
    struct stat st;
    if (stat(state, &st) < 0)
        return vmlet_err_errno(err, errno, "%s", state);
    if (stat(memory, &st) < 0)
        return vmlet_err_errno(err, errno, "%s", memory);
    if (st.st_size != (off_t)spec->mem_mib << 20)
        return vmlet_err_set(err, "%s: %lld bytes, the VM has %d MiB", memory,
                             (long long)st.st_size, spec->mem_mib);
    return 0;
}

// Loads the device state, then runs the guest: it was saved stopped, and
// QEMU restores that run state (paused) whatever -S says.
static int s_load(vmm_vm_t *vm, const char *state, vmlet_err_t *err)
{
    int timeout = vm->vmm->settings.start_timeout_ms;
    char uri[PATH_MAX + 32];
    if (s_exec_uri(uri, sizeof uri, "cat", state, err) < 0)
        return -1;
    int64_t deadline = vmlet_now_ms() + timeout;
    qmp_t *qmp = qmp_connect(vm->control, timeout, err);
    if (!qmp)
        return -1;
    char status[64] = "";
    int rc = s_ignore_shared(qmp, timeout, err);
    if (rc == 0)
        rc = s_execute_uri(qmp, "migrate-incoming", uri, timeout, err);
    bool continued = false;
    while (rc == 0) {
        rc = s_query(qmp, "query-status", status, sizeof status, timeout, err);
        if (rc < 0 || strcmp(status, "running") == 0)
            break;
        if (strcmp(status, "paused") == 0 && !continued) {
            rc = qmp_execute(qmp, "cont", NULL, NULL, timeout, err);
            continued = true;
        } else if (strcmp(status, "inmigrate") != 0 && strcmp(status, "paused") != 0)
            rc = vmlet_err_set(err, "loading %s: the VM is %s, not running", state, status);
        else if (vmlet_now_ms() > deadline)
            rc = vmlet_err_set(err, "loading %s: still in migration after %d ms", state, timeout);
        else
            s_sleep_ms(POLL_MS);
    }
    qmp_destroy(&qmp);
    if (rc < 0 && !vmm_common_alive(vm))
        vmlet_err_wrap(err, "QEMU exited (a state it could not load?)");
    return rc;
}

vmm_vm_t *vmm_qemu_restore(vmm_t *vmm, const vmm_spec_t *spec, const char *template_dir,
                           vmlet_err_t *err)
{
    char memory[PATH_MAX], state[PATH_MAX];
    if (vmm_path(memory, sizeof memory, template_dir, VMM_TEMPLATE_MEMORY, err) < 0 ||
        vmm_path(state, sizeof state, template_dir, VMM_TEMPLATE_STATE, err) < 0 ||
        s_check_template(spec, memory, state, err) < 0) {
        vmlet_err_wrap(err, "VM %s: template %s", spec->id, template_dir);
        return NULL;
    }
    vmm_qemu_argv_opts_t opts = {.memory_file = memory, .memory_shared = false, .incoming = true};
    vmm_vm_t *vm = vmm_qemu_launch(vmm, spec, opts, err);
    if (!vm)
        return NULL;
    if (s_load(vm, state, err) < 0) {
        vmlet_err_wrap(err, "VM %s: restoring template %s", spec->id, template_dir);
        vmm_common_kill(vm, 2000, NULL);
        vmm_remove_files(vm, NULL);
        vmm_vm_free(&vm);
        return NULL;
    }
    return vm;
}
