// Reading ConfigMaps and Secrets (see kube_objects.h).
#include "kube_objects.h"

#include "vmlet/base64.h"
#include "vmlet/kube_api.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>

static void s_add(object_data_t *out, const char *key, char *value, size_t len)
{
    out->items = vmlet_xrealloc(out->items, (out->n + 1) * sizeof *out->items);
    out->items[out->n++] = (object_item_t){vmlet_xstrdup(key), (uint8_t *)value, len};
}

// Adds every member of map; base64-decoded when encoded.
static int s_add_map(object_data_t *out, const cJSON *map, bool encoded, const char *what,
                     vmlet_err_t *err)
{
    const cJSON *kv;
    cJSON_ArrayForEach(kv, map)
    {
        if (!cJSON_IsString(kv))
            continue;
        size_t len = strlen(kv->valuestring);
        char *value = encoded ? vmlet_base64_decode_len(kv->valuestring, &len)
                              : vmlet_xstrdup(kv->valuestring);
        if (!value)
            return vmlet_err_set(err, "%s: key %s is not base64", what, kv->string);
        s_add(out, kv->string, value, len);
    }
    return 0;
}

int kube_objects_get(vmlet_kube_t *kube, const char *kind, const char *namespace_,
                     const char *name, object_data_t *out, vmlet_err_t *err)
{
    memset(out, 0, sizeof *out);
    char path[600];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/%s/%s", namespace_, kind, name);
    long status = 0;
    cJSON *obj = NULL;
    int rc = vmlet_kube_call(kube, "GET", path, NULL, NULL, &status, &obj, err);
    if (rc == 1 && status == 404)
        return 1;
    if (rc != 0)
        return -1;
    bool secret = strcmp(kind, "secrets") == 0;
    char what[300];
    snprintf(what, sizeof what, "%s %s/%s", secret ? "secret" : "configmap", namespace_, name);
    rc = s_add_map(out, cJSON_GetObjectItemCaseSensitive(obj, "data"), secret, what, err);
    if (rc == 0 && !secret)
        rc = s_add_map(out, cJSON_GetObjectItemCaseSensitive(obj, "binaryData"), true, what, err);
    cJSON_Delete(obj);
    if (rc < 0)
        object_data_clear(out);
    return rc;
}

int kube_objects_token(vmlet_kube_t *kube, const char *namespace_, const char *service_account,
                       const char *audience, int64_t expiration_seconds, const char *pod_name,
                       const char *pod_uid, char **token, vmlet_err_t *err)
{
    cJSON *req = cJSON_CreateObject(), *spec = cJSON_AddObjectToObject(req, "spec");
    cJSON_AddStringToObject(req, "apiVersion", "authentication.k8s.io/v1");
    cJSON_AddStringToObject(req, "kind", "TokenRequest");
    cJSON *auds = cJSON_AddArrayToObject(spec, "audiences");
    if (audience && *audience)
        cJSON_AddItemToArray(auds, cJSON_CreateString(audience));
    cJSON_AddNumberToObject(spec, "expirationSeconds", (double)expiration_seconds);
    cJSON *bound = cJSON_AddObjectToObject(spec, "boundObjectRef");
    cJSON_AddStringToObject(bound, "kind", "Pod");
    cJSON_AddStringToObject(bound, "apiVersion", "v1");
    cJSON_AddStringToObject(bound, "name", pod_name);
    cJSON_AddStringToObject(bound, "uid", pod_uid);
    char path[600];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/serviceaccounts/%s/token", namespace_,
             service_account);
    cJSON *out = NULL;
    int rc = vmlet_kube_call(kube, "POST", path, "application/json", req, NULL, &out, err);
    cJSON_Delete(req);
    const char *t = rc == 0 ? vmlet_json_str(out, "status", "token") : NULL;
    if (t)
        *token = vmlet_xstrdup(t);
    cJSON_Delete(out);
    if (!t)
        return rc == 0 ? vmlet_err_set(err, "TokenRequest: no token in the answer") : -1;
    return 0;
}

const object_item_t *object_data_find(const object_data_t *data, const char *key)
{
    for (size_t i = 0; i < data->n; i++)
        if (strcmp(data->items[i].key, key) == 0)
            return &data->items[i];
    return NULL;
}

void object_data_clear(object_data_t *data)
{
    for (size_t i = 0; i < data->n; i++) {
        explicit_bzero(data->items[i].value, data->items[i].len);
        free(data->items[i].key);
        free(data->items[i].value);
    }
    free(data->items);
    memset(data, 0, sizeof *data);
}

cJSON *object_data_to_json(const object_data_t *data)
{
    cJSON *out = cJSON_CreateObject();
    for (size_t i = 0; i < data->n; i++)
        cJSON_AddStringToObject(out, data->items[i].key, (const char *)data->items[i].value);
    return out;
}
