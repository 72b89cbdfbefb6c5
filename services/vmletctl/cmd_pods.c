// `vmletctl pods` (the pods bound to the node, as vmlet sees them) and
// `vmletctl vms` (every VM record the launchers keep).
#include "ctl.h"

#include <string.h>

static int s_by_pod(const void *a, const void *b)
{
    const cJSON *x = *(cJSON *const *)a, *y = *(cJSON *const *)b;
    return strcmp(cJSON_GetObjectItem(x, "pod")->valuestring,
                  cJSON_GetObjectItem(y, "pod")->valuestring);
}

// Rows sorted by namespace/name (uids say nothing to an operator).
static cJSON *s_sorted(cJSON **rows, size_t n)
{
    if (n)
        qsort(rows, n, sizeof *rows, s_by_pod);
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(list, rows[i]);
    free(rows);
    return list;
}

static cJSON *s_pod_row(ctl_t *c, const char *uid)
{
    cJSON *row = cJSON_CreateObject();
    redisReply *r = vmlet_store_command(c->store, NULL, "HMGET vmlet:pod:%s namespace name", uid);
    const char *ns = r && r->elements == 2 && r->element[0]->str ? r->element[0]->str : "?";
    const char *name = r && r->elements == 2 && r->element[1]->str ? r->element[1]->str : "?";
    char pod[600];
    snprintf(pod, sizeof pod, "%s/%s", ns, name);
    ctl_add_str(row, "pod", pod);
    ctl_add_str(row, "namespace", ns);
    ctl_add_str(row, "name", name);
    freeReplyObject(r);
    ctl_add_str(row, "uid", uid);
    Vmlet__VmRecord *rec = ctl_vm_record(c, uid, NULL);
    // No record: no launcher took the pod yet (none alive, or all drained).
    ctl_add_str(row, "phase", rec ? ctl_vm_state(rec->state) : "NoVM");
    if (rec) {
        ctl_add_str(row, "reason", rec->reason);
        ctl_add_str(row, "ip", rec->pod_ip);
        ctl_add_str(row, "launcher", rec->launcher_id);
        cJSON_AddNumberToObject(row, "restarts", ctl_restarts(rec));
        vmlet__vm_record__free_unpacked(rec, NULL);
    }
    return row;
}

int cmd_pods(ctl_t *c, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(c->err, "vmletctl: pods takes no arguments\n");
        return CTL_USAGE;
    }
    vmlet_err_t err = {0};
    char **uids;
    size_t n;
    if (ctl_smembers(c, "vmlet:pods", &uids, &n, &err) < 0)
        return ctl_fail(c, "listing the pods", &err);
    cJSON **rows = calloc(n + 1, sizeof *rows);
    for (size_t i = 0; i < n; i++)
        rows[i] = s_pod_row(c, uids[i]);
    ctl_keys_free(uids, n);
    cJSON *list = s_sorted(rows, n);
    static const ctl_column_t cols[] = {
        {"POD", "pod", COL_TEXT},           {"UID", "uid", COL_TEXT},
        {"PHASE", "phase", COL_TEXT},       {"IP", "ip", COL_TEXT},
        {"LAUNCHER", "launcher", COL_TEXT}, {"RESTARTS", "restarts", COL_TEXT},
    };
    if (c->json)
        ctl_print_json(c->out, list);
    else
        ctl_table(c->out, list, cols, 6, "pods bound to this node");
    cJSON_Delete(list);
    return CTL_OK;
}

// The VMM's pid, when its state directory is on this host and readable.
static void s_pid(cJSON *row, const char *state_dir)
{
    if (!state_dir || !state_dir[0])
        return;
    char path[4200];
    snprintf(path, sizeof path, "%s/vmm.pid", state_dir);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f && fscanf(f, "%ld", &pid) == 1 && pid > 0)
        cJSON_AddNumberToObject(row, "pid", (double)pid);
    if (f)
        fclose(f);
}

static cJSON *s_vm_row(const Vmlet__VmRecord *rec, const char *uid)
{
    cJSON *row = cJSON_CreateObject();
    char pod[600];
    snprintf(pod, sizeof pod, "%s/%s",
             rec->pod && rec->pod->namespace_ ? rec->pod->namespace_ : "?",
             rec->pod && rec->pod->name ? rec->pod->name : "?");
    ctl_add_str(row, "pod", pod);
    ctl_add_str(row, "uid", uid);
    ctl_add_str(row, "launcher", rec->launcher_id);
    ctl_add_str(row, "state", ctl_vm_state(rec->state));
    ctl_add_str(row, "reason", rec->reason);
    ctl_add_str(row, "ip", rec->pod_ip);
    ctl_add_int(row, "vcpus", rec->has_vcpus, rec->vcpus);
    ctl_add_int(row, "memory_bytes", rec->has_memory_bytes, rec->memory_bytes);
    ctl_add_int(row, "boots", rec->has_boots, rec->boots);
    s_pid(row, rec->state_dir);
    ctl_add_str(row, "state_dir", rec->state_dir);
    ctl_add_int(row, "created_unix_ms", rec->has_created_unix_ms, rec->created_unix_ms);
    return row;
}

int cmd_vms(ctl_t *c, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(c->err, "vmletctl: vms takes no arguments\n");
        return CTL_USAGE;
    }
    vmlet_err_t err = {0};
    char **keys;
    size_t n;
    if (ctl_scan(c, "vmlet:vm:*", &keys, &n, &err) < 0)
        return ctl_fail(c, "listing the VMs", &err);
    cJSON **rows = calloc(n + 1, sizeof *rows);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *uid = keys[i] + strlen("vmlet:vm:");
        Vmlet__VmRecord *rec = ctl_vm_record(c, uid, NULL);
        if (!rec)
            continue;
        rows[k++] = s_vm_row(rec, uid);
        vmlet__vm_record__free_unpacked(rec, NULL);
    }
    ctl_keys_free(keys, n);
    cJSON *list = s_sorted(rows, k);
    static const ctl_column_t cols[] = {
        {"POD", "pod", COL_TEXT},     {"LAUNCHER", "launcher", COL_TEXT},
        {"STATE", "state", COL_TEXT}, {"IP", "ip", COL_TEXT},
        {"VCPUS", "vcpus", COL_TEXT}, {"MEMORY", "memory_bytes", COL_BYTES},
        {"PID", "pid", COL_TEXT},     {"AGE", "created_unix_ms", COL_AGE},
    };
    if (c->json)
        ctl_print_json(c->out, list);
    else
        ctl_table(c->out, list, cols, 8, "VMs");
    cJSON_Delete(list);
    return CTL_OK;
}
