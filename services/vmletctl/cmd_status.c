// `vmletctl status`: the services alive (their presence keys), the
// launchers and their capacity, and the node's totals.
#include "ctl.h"

#include <string.h>

static int s_services(ctl_t *c, cJSON *doc, vmlet_err_t *err)
{
    char **keys;
    size_t n;
    if (ctl_scan(c, "vmlet:instances:*", &keys, &n, err) < 0)
        return -1;
    cJSON *list = cJSON_AddArrayToObject(doc, "services");
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        char *value = (char *)ctl_get(c, keys[i], &len, NULL);
        cJSON *p = value ? cJSON_Parse(value) : NULL;
        free(value);
        if (!p) // expired between SCAN and GET, or not ours
            continue;
        cJSON *row = cJSON_CreateObject();
        const char *fields[][2] = {{"service", "service"},
                                   {"instance", "instance"},
                                   {"version", "version"},
                                   {"address", "http"}};
        for (size_t f = 0; f < 4; f++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, fields[f][1]);
            ctl_add_str(row, fields[f][0], cJSON_IsString(v) ? v->valuestring : "");
        }
        const cJSON *started = cJSON_GetObjectItemCaseSensitive(p, "started_unix_ms");
        ctl_add_int(row, "started_unix_ms", cJSON_IsNumber(started),
                    cJSON_IsNumber(started) ? (int64_t)started->valuedouble : 0);
        cJSON_AddItemToArray(list, row);
        cJSON_Delete(p);
    }
    ctl_keys_free(keys, n);
    return 0;
}

typedef struct {
    int64_t cpu, memory, pods, cpu_used, memory_used, pods_used, alive;
} totals_t;

static cJSON *s_launcher(ctl_t *c, const char *id, totals_t *t)
{
    cJSON *row = cJSON_CreateObject();
    ctl_add_str(row, "launcher", id);
    Vmlet__LauncherCapacity *cap = ctl_launcher_capacity(c, id, NULL);
    bool drained = ctl_drained(c, id);
    // Gone: its capacity record expired (the launcher stopped announcing).
    ctl_add_str(row, "state", !cap ? "Gone" : drained ? "Draining" : "Ready");
    cJSON_AddBoolToObject(row, "draining", drained);
    if (!cap)
        return row;
    ctl_add_str(row, "host", cap->host);
    ctl_add_str(row, "version", cap->version);
    ctl_add_int(row, "cpu_millis", cap->has_cpu_millis, cap->cpu_millis);
    ctl_add_int(row, "cpu_millis_used", cap->has_cpu_millis_used, cap->cpu_millis_used);
    ctl_add_int(row, "memory_bytes", cap->has_memory_bytes, cap->memory_bytes);
    ctl_add_int(row, "memory_bytes_used", cap->has_memory_bytes_used, cap->memory_bytes_used);
    ctl_add_int(row, "pods", cap->has_pods, cap->pods);
    ctl_add_int(row, "pods_used", cap->has_pods_used, cap->pods_used);
    ctl_add_int(row, "valid_until_unix_ms", cap->has_valid_until_unix_ms, cap->valid_until_unix_ms);
    *t = (totals_t){t->cpu + cap->cpu_millis,
                    t->memory + cap->memory_bytes,
                    t->pods + cap->pods,
                    t->cpu_used + cap->cpu_millis_used,
                    t->memory_used + cap->memory_bytes_used,
                    t->pods_used + cap->pods_used,
                    t->alive + 1};
    vmlet__launcher_capacity__free_unpacked(cap, NULL);
    return row;
}

static int s_node(ctl_t *c, cJSON *doc, vmlet_err_t *err)
{
    char **ids;
    size_t n;
    if (ctl_smembers(c, "vmlet:launchers", &ids, &n, err) < 0)
        return -1;
    totals_t t = {0};
    cJSON *list = cJSON_AddArrayToObject(doc, "launchers");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(list, s_launcher(c, ids[i], &t));
    ctl_keys_free(ids, n);
    redisReply *bound = vmlet_store_command(c->store, err, "SCARD vmlet:pods");
    if (!bound)
        return vmlet_err_wrap(err, "SCARD vmlet:pods");
    cJSON *node = cJSON_AddObjectToObject(doc, "node");
    // k8s-watcher writes the Node's conditions to the API server only.
    cJSON_AddNullToObject(node, "ready");
    ctl_add_str(node, "ready_note", "not kept in Redis: kubectl get node <node-name>");
    cJSON_AddNumberToObject(node, "launchers_alive", (double)t.alive);
    cJSON_AddNumberToObject(node, "pods_bound", (double)bound->integer);
    freeReplyObject(bound);
    cJSON_AddNumberToObject(node, "cpu_millis", (double)t.cpu);
    cJSON_AddNumberToObject(node, "cpu_millis_used", (double)t.cpu_used);
    cJSON_AddNumberToObject(node, "memory_bytes", (double)t.memory);
    cJSON_AddNumberToObject(node, "memory_bytes_used", (double)t.memory_used);
    cJSON_AddNumberToObject(node, "pods", (double)t.pods);
    cJSON_AddNumberToObject(node, "pods_used", (double)t.pods_used);
    return 0;
}

static void s_print(ctl_t *c, const cJSON *doc)
{
    static const ctl_column_t svc[] = {
        {"SERVICE", "service", COL_TEXT},    {"INSTANCE", "instance", COL_TEXT},
        {"VERSION", "version", COL_TEXT},    {"ADDRESS", "address", COL_TEXT},
        {"AGE", "started_unix_ms", COL_AGE},
    };
    static const ctl_column_t launchers[] = {
        {"LAUNCHER", "launcher", COL_TEXT},
        {"STATE", "state", COL_TEXT},
        {"HOST", "host", COL_TEXT},
        {"CPU", "cpu_millis", COL_MILLI},
        {"CPU-USED", "cpu_millis_used", COL_MILLI},
        {"MEMORY", "memory_bytes", COL_BYTES},
        {"MEMORY-USED", "memory_bytes_used", COL_BYTES},
        {"PODS", "pods", COL_TEXT},
        {"PODS-USED", "pods_used", COL_TEXT},
    };
    fprintf(c->out, "Services:\n");
    ctl_table(c->out, cJSON_GetObjectItem(doc, "services"), svc, 5, "services alive");
    fprintf(c->out, "\nLaunchers:\n");
    ctl_table(c->out, cJSON_GetObjectItem(doc, "launchers"), launchers, 9, "launchers");
    const cJSON *node = cJSON_GetObjectItem(doc, "node");
    char b[6][64];
    const char *keys[] = {"cpu_millis_used", "cpu_millis", "memory_bytes_used",
                          "memory_bytes",    "pods_used",  "pods"};
    const ctl_col_fmt_t fmts[] = {COL_MILLI, COL_MILLI, COL_BYTES, COL_BYTES, COL_TEXT, COL_TEXT};
    for (int i = 0; i < 6; i++)
        ctl_cell(cJSON_GetObjectItem(node, keys[i]), fmts[i], b[i], sizeof b[i]);
    fprintf(c->out,
            "\nNode:\n  launchers alive: %d\n  pods bound: %d\n"
            "  cpu: %s of %s\n  memory: %s of %s\n  pods: %s of %s\n"
            "  Ready: %s\n",
            cJSON_GetObjectItem(node, "launchers_alive")->valueint,
            cJSON_GetObjectItem(node, "pods_bound")->valueint, b[0], b[1], b[2], b[3], b[4], b[5],
            cJSON_GetObjectItem(node, "ready_note")->valuestring);
}

int cmd_status(ctl_t *c, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(c->err, "vmletctl: status takes no arguments\n");
        return CTL_USAGE;
    }
    vmlet_err_t err = {0};
    cJSON *doc = cJSON_CreateObject();
    if (s_services(c, doc, &err) < 0 || s_node(c, doc, &err) < 0) {
        cJSON_Delete(doc);
        return ctl_fail(c, "reading the services and launchers", &err);
    }
    if (c->json)
        ctl_print_json(c->out, doc);
    else
        s_print(c, doc);
    cJSON_Delete(doc);
    return CTL_OK;
}
