// The Node object as JSON (see node_status.h).
#include "node_status.h"

#include "vmlet/quantity.h"
#include "vmlet/timeutil.h"

#include <stdio.h>
#include <string.h>

static const char *const condition_types[NODE_CONDITIONS] = {
    "Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable"};

// What each condition says when all is well: status, reason, message.
static const char *const healthy[NODE_CONDITIONS][3] = {
    {"True", "KubeletReady", "vmlet is ready: %zu vm-launcher(s) report in"},
    {"False", "KubeletHasSufficientMemory", "every pod has a VM of its own"},
    {"False", "KubeletHasNoDiskPressure", "vmlet has no disk pressure"},
    {"False", "KubeletHasSufficientPID", "vmlet has sufficient PID available"},
    {"False", "RouteCreated", "pod networking is set up by vm-launcher"},
};

static bool s_set(node_condition_t *c, const char *status, const char *reason,
                  const char *message, int64_t now)
{
    bool status_changed = !c->status || strcmp(c->status, status) != 0;
    bool changed = status_changed || !c->reason || strcmp(c->reason, reason) != 0 ||
                   strcmp(c->message, message) != 0;
    if (status_changed || !c->last_transition_unix)
        c->last_transition_unix = now;
    c->status = status;
    c->reason = reason;
    snprintf(c->message, sizeof c->message, "%s", message);
    c->last_heartbeat_unix = now;
    return changed;
}

bool node_conditions_update(node_conditions_t *conds, size_t launchers_alive, int64_t now_unix)
{
    bool changed = false;
    char message[160];
    for (int k = 0; k < NODE_CONDITIONS; k++) {
        snprintf(message, sizeof message, healthy[k][2], launchers_alive);
        if (k == NODE_READY && launchers_alive == 0)
            changed |= s_set(&conds->c[k], "False", "NoLauncher",
                             "no vm-launcher is alive: pods cannot run here", now_unix);
        else
            changed |= s_set(&conds->c[k], healthy[k][0], healthy[k][1], message, now_unix);
    }
    return changed;
}

void node_conditions_adopt(node_conditions_t *conds, const cJSON *status)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(status, "conditions");
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "type"));
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "status"));
        const char *when =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "lastTransitionTime"));
        int64_t t;
        for (int k = 0; type && st && k < NODE_CONDITIONS; k++)
            if (strcmp(type, condition_types[k]) == 0 && vmlet_parse_rfc3339(when, &t) == 0) {
                // Kept only if we would say the same: otherwise it transitions now.
                conds->c[k].status = strcmp(st, "True") == 0    ? "True"
                                     : strcmp(st, "False") == 0 ? "False"
                                                                : "Unknown";
                conds->c[k].reason = "";
                conds->c[k].last_transition_unix = t;
            }
    }
}

// Splits "key=value:Effect" into its parts; false if malformed.
static bool s_parse_taint(const char *taint, char *key, char *value, char *effect, size_t cap)
{
    const char *eq = strchr(taint, '='), *colon = strrchr(taint, ':');
    if (!colon || colon == taint)
        return false;
    const char *key_end = eq && eq < colon ? eq : colon;
    snprintf(key, cap, "%.*s", (int)(key_end - taint), taint);
    snprintf(value, cap, "%.*s", eq && eq < colon ? (int)(colon - eq - 1) : 0,
             eq && eq < colon ? eq + 1 : "");
    snprintf(effect, cap, "%s", colon + 1);
    return key[0] && (strcmp(effect, "NoSchedule") == 0 || strcmp(effect, "PreferNoSchedule") == 0 ||
                      strcmp(effect, "NoExecute") == 0);
}

const char *node_identity_check(const node_identity_t *id, char *buf, size_t cap)
{
    char k[256], v[256], e[64];
    if (id->taint[0] && !s_parse_taint(id->taint, k, v, e, sizeof k))
        return snprintf(buf, cap,
                        "node taint '%s': expected key=value:Effect with Effect NoSchedule, "
                        "PreferNoSchedule or NoExecute",
                        id->taint),
               buf;
    for (const char *p = id->extra_labels; *p;) {
        size_t n = strcspn(p, ",");
        const char *eq = memchr(p, '=', n);
        if (!eq || eq == p)
            return snprintf(buf, cap, "node label '%.*s': expected key=value", (int)n, p), buf;
        p += n + (p[n] == ',');
    }
    return NULL;
}

cJSON *node_labels(const node_identity_t *id, const cJSON *existing)
{
    cJSON *labels = existing ? cJSON_Duplicate(existing, true) : cJSON_CreateObject();
    const char *ours[][2] = {
        {"type", "virtual-kubelet"},
        {"kubernetes.io/role", "agent"},
        {"kubernetes.io/hostname", id->name},
        {"kubernetes.io/os", "linux"},
        {"kubernetes.io/arch", id->architecture},
        {"beta.kubernetes.io/os", "linux"},
        {"beta.kubernetes.io/arch", id->architecture},
    };
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(labels, ours[i][0]);
        cJSON_AddStringToObject(labels, ours[i][0], ours[i][1]);
    }
    for (const char *p = id->extra_labels; *p;) {
        size_t n = strcspn(p, ",");
        const char *eq = memchr(p, '=', n);
        if (eq) {
            char key[256], value[256];
            snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
            snprintf(value, sizeof value, "%.*s", (int)(n - (size_t)(eq - p) - 1), eq + 1);
            cJSON_DeleteItemFromObjectCaseSensitive(labels, key);
            cJSON_AddStringToObject(labels, key, value);
        }
        p += n + (p[n] == ',');
    }
    return labels;
}

cJSON *node_taints(const node_identity_t *id, const cJSON *existing)
{
    cJSON *taints = existing ? cJSON_Duplicate(existing, true) : cJSON_CreateArray();
    char key[256], value[256], effect[64];
    if (!id->taint[0] || !s_parse_taint(id->taint, key, value, effect, sizeof key))
        return taints;
    const cJSON *t;
    cJSON_ArrayForEach(t, taints)
    {
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "key"));
        const char *e = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "effect"));
        if (k && e && strcmp(k, key) == 0 && strcmp(e, effect) == 0)
            return taints;
    }
    cJSON *ours = cJSON_CreateObject();
    cJSON_AddStringToObject(ours, "key", key);
    if (value[0])
        cJSON_AddStringToObject(ours, "value", value);
    cJSON_AddStringToObject(ours, "effect", effect);
    cJSON_AddItemToArray(taints, ours);
    return taints;
}

static cJSON *s_resources(const capacity_sum_t *cap)
{
    char buf[64];
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "cpu", vmlet_quantity_format_milli(cap->cpu_millis, buf, sizeof buf));
    cJSON_AddStringToObject(r, "memory",
                            vmlet_quantity_format_bytes(cap->memory_bytes, buf, sizeof buf));
    snprintf(buf, sizeof buf, "%lld", (long long)cap->pods);
    cJSON_AddStringToObject(r, "pods", buf);
    return r;
}

static cJSON *s_conditions(const node_conditions_t *conds)
{
    cJSON *list = cJSON_CreateArray();
    char t[32];
    for (int k = 0; k < NODE_CONDITIONS; k++) {
        const node_condition_t *c = &conds->c[k];
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "type", condition_types[k]);
        cJSON_AddStringToObject(item, "status", c->status ? c->status : "Unknown");
        cJSON_AddStringToObject(item, "lastHeartbeatTime",
                                vmlet_format_rfc3339(c->last_heartbeat_unix, t, sizeof t));
        cJSON_AddStringToObject(item, "lastTransitionTime",
                                vmlet_format_rfc3339(c->last_transition_unix, t, sizeof t));
        cJSON_AddStringToObject(item, "reason", c->reason ? c->reason : "");
        cJSON_AddStringToObject(item, "message", c->message);
        cJSON_AddItemToArray(list, item);
    }
    return list;
}

static cJSON *s_node_info(const node_identity_t *id)
{
    cJSON *info = cJSON_CreateObject();
    cJSON_AddStringToObject(info, "machineID", id->machine_id);
    cJSON_AddStringToObject(info, "systemUUID", id->machine_id);
    cJSON_AddStringToObject(info, "bootID", id->boot_id);
    cJSON_AddStringToObject(info, "kernelVersion", id->kernel_version);
    cJSON_AddStringToObject(info, "osImage", id->os_image);
    cJSON_AddStringToObject(info, "containerRuntimeVersion", id->runtime_version);
    cJSON_AddStringToObject(info, "kubeletVersion", id->kubelet_version);
    cJSON_AddStringToObject(info, "kubeProxyVersion", "");
    cJSON_AddStringToObject(info, "operatingSystem", "linux");
    cJSON_AddStringToObject(info, "architecture", id->architecture);
    return info;
}

cJSON *node_status(const node_identity_t *id, const capacity_sum_t *cap,
                   const node_conditions_t *conds)
{
    cJSON *status = cJSON_CreateObject();
    cJSON_AddItemToObject(status, "capacity", s_resources(cap));
    cJSON_AddItemToObject(status, "allocatable", s_resources(cap));
    cJSON_AddItemToObject(status, "conditions", s_conditions(conds));
    cJSON *addresses = cJSON_AddArrayToObject(status, "addresses");
    cJSON *ip = cJSON_CreateObject(), *host = cJSON_CreateObject();
    cJSON_AddStringToObject(ip, "type", "InternalIP");
    cJSON_AddStringToObject(ip, "address", id->internal_ip);
    cJSON_AddStringToObject(host, "type", "Hostname");
    cJSON_AddStringToObject(host, "address", id->name);
    cJSON_AddItemToArray(addresses, ip);
    cJSON_AddItemToArray(addresses, host);
    cJSON *endpoint = cJSON_AddObjectToObject(
        cJSON_AddObjectToObject(status, "daemonEndpoints"), "kubeletEndpoint");
    cJSON_AddNumberToObject(endpoint, "Port", id->kubelet_port);
    cJSON_AddItemToObject(status, "nodeInfo", s_node_info(id));
    return status;
}

cJSON *node_object(const node_identity_t *id, const capacity_sum_t *cap,
                   const node_conditions_t *conds)
{
    cJSON *node = cJSON_CreateObject();
    cJSON_AddStringToObject(node, "apiVersion", "v1");
    cJSON_AddStringToObject(node, "kind", "Node");
    cJSON *meta = cJSON_AddObjectToObject(node, "metadata");
    cJSON_AddStringToObject(meta, "name", id->name);
    cJSON_AddItemToObject(meta, "labels", node_labels(id, NULL));
    cJSON_AddItemToObject(cJSON_AddObjectToObject(node, "spec"), "taints", node_taints(id, NULL));
    cJSON_AddItemToObject(node, "status", node_status(id, cap, conds));
    return node;
}
