// The Node and its Lease in the API server (see node.h).
#include "node.h"

#include "vmlet/kube_api.h"
#include "vmlet/timeutil.h"

#include <stdio.h>
#include <string.h>

#define CONFLICT_RETRIES 5

static int s_create(vmlet_kube_t *kube, const node_identity_t *id, const capacity_sum_t *cap,
                    const node_conditions_t *conds, cJSON **created, vmlet_err_t *err)
{
    cJSON *node = node_object(id, cap, conds);
    int rc = vmlet_kube_call(kube, "POST", "/api/v1/nodes", "application/json", node, NULL,
                             created, err);
    cJSON_Delete(node);
    return rc == 0 ? 0 : -1;
}

// Merges our labels and taint into the existing Node, guarded by its
// resourceVersion. Returns 0, 1 on a conflict (read again), -1 on error.
static int s_adopt(vmlet_kube_t *kube, const node_identity_t *id, const cJSON *node,
                   vmlet_err_t *err)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(node, "metadata");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(node, "spec");
    cJSON *patch = cJSON_CreateObject();
    cJSON *pmeta = cJSON_AddObjectToObject(patch, "metadata");
    const char *version = vmlet_json_str(meta, "resourceVersion", NULL);
    cJSON_AddStringToObject(pmeta, "resourceVersion", version ? version : "");
    cJSON_AddItemToObject(pmeta, "labels",
                          node_labels(id, cJSON_GetObjectItemCaseSensitive(meta, "labels")));
    cJSON_AddItemToObject(cJSON_AddObjectToObject(patch, "spec"), "taints",
                          node_taints(id, cJSON_GetObjectItemCaseSensitive(spec, "taints")));
    char path[300];
    snprintf(path, sizeof path, "/api/v1/nodes/%s", id->name);
    long status = 0;
    int rc = vmlet_kube_call(kube, "PATCH", path, VMLET_MERGE_PATCH, patch, &status, NULL, err);
    cJSON_Delete(patch);
    return rc == 0 ? 0 : status == 409 ? 1 : -1;
}

int node_register(vmlet_kube_t *kube, const node_identity_t *id, const capacity_sum_t *cap,
                  node_conditions_t *conds, char *uid, size_t uid_cap, vmlet_err_t *err)
{
    char path[300];
    snprintf(path, sizeof path, "/api/v1/nodes/%s", id->name);
    for (int attempt = 0; attempt < CONFLICT_RETRIES; attempt++) {
        cJSON *node = NULL;
        long status = 0;
        int rc = vmlet_kube_call(kube, "GET", path, NULL, NULL, &status, &node, err);
        if (rc == 1 && status == 404)
            rc = s_create(kube, id, cap, conds, &node, err);
        else if (rc == 0) {
            node_conditions_adopt(conds, cJSON_GetObjectItemCaseSensitive(node, "status"));
            rc = s_adopt(kube, id, node, err);
        }
        const char *node_uid =
            vmlet_json_str(cJSON_GetObjectItemCaseSensitive(node, "metadata"), "uid", NULL);
        if (rc == 0)
            snprintf(uid, uid_cap, "%s", node_uid ? node_uid : "");
        cJSON_Delete(node);
        if (rc == 0)
            return 0;
        if (rc < 0)
            return vmlet_err_wrap(err, "registering node %s", id->name);
    }
    return vmlet_err_wrap(err, "registering node %s: still conflicting after %d tries", id->name,
                          CONFLICT_RETRIES);
}

int node_patch_status(vmlet_kube_t *kube, const node_identity_t *id, const capacity_sum_t *cap,
                      const node_conditions_t *conds, vmlet_err_t *err)
{
    char path[300];
    snprintf(path, sizeof path, "/api/v1/nodes/%s/status", id->name);
    cJSON *patch = cJSON_CreateObject();
    cJSON_AddItemToObject(patch, "status", node_status(id, cap, conds));
    long status = 0;
    int rc = vmlet_kube_call(kube, "PATCH", path, VMLET_STRATEGIC_MERGE_PATCH, patch, &status,
                             NULL, err);
    cJSON_Delete(patch);
    if (rc == 1 && status == 404)
        return 1;
    return rc == 0 ? 0 : -1;
}

static cJSON *s_lease(const char *name, const char *uid, int duration_s, const cJSON *current)
{
    cJSON *lease = current ? cJSON_Duplicate(current, true) : cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(lease, "apiVersion");
    cJSON_DeleteItemFromObjectCaseSensitive(lease, "kind");
    cJSON_AddStringToObject(lease, "apiVersion", "coordination.k8s.io/v1");
    cJSON_AddStringToObject(lease, "kind", "Lease");
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(lease, "metadata");
    if (!meta)
        meta = cJSON_AddObjectToObject(lease, "metadata");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "name");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "namespace");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "ownerReferences");
    cJSON_AddStringToObject(meta, "name", name);
    cJSON_AddStringToObject(meta, "namespace", "kube-node-lease");
    cJSON *owner = cJSON_CreateObject();
    cJSON_AddStringToObject(owner, "apiVersion", "v1");
    cJSON_AddStringToObject(owner, "kind", "Node");
    cJSON_AddStringToObject(owner, "name", name);
    cJSON_AddStringToObject(owner, "uid", uid);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(meta, "ownerReferences"), owner);
    cJSON_DeleteItemFromObjectCaseSensitive(lease, "spec");
    cJSON *spec = cJSON_AddObjectToObject(lease, "spec");
    char now[40];
    cJSON_AddStringToObject(spec, "holderIdentity", name);
    cJSON_AddNumberToObject(spec, "leaseDurationSeconds", duration_s);
    cJSON_AddStringToObject(spec, "renewTime",
                            vmlet_format_rfc3339_micro(vmlet_unix_ns() / 1000, now, sizeof now));
    return lease;
}

int node_lease_renew(vmlet_kube_t *kube, const char *name, const char *uid, int duration_s,
                     vmlet_err_t *err)
{
    char path[400];
    snprintf(path, sizeof path, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/%s",
             name);
    for (int attempt = 0; attempt < CONFLICT_RETRIES; attempt++) {
        cJSON *current = NULL;
        long status = 0;
        int rc = vmlet_kube_call(kube, "GET", path, NULL, NULL, &status, &current, err);
        if (rc < 0 || (rc == 1 && status != 404)) {
            cJSON_Delete(current);
            return vmlet_err_wrap(err, "renewing lease of node %s", name);
        }
        cJSON *lease = s_lease(name, uid, duration_s, current);
        if (current)
            rc = vmlet_kube_call(kube, "PUT", path, "application/json", lease, &status, NULL, err);
        else
            rc = vmlet_kube_call(kube, "POST",
                                 "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                                 "application/json", lease, &status, NULL, err);
        cJSON_Delete(lease);
        cJSON_Delete(current);
        if (rc == 0)
            return 0;
        if (status != 409)
            return vmlet_err_wrap(err, "renewing lease of node %s", name);
    }
    return vmlet_err_set(err, "renewing lease of node %s: still conflicting after %d tries", name,
                         CONFLICT_RETRIES);
}
