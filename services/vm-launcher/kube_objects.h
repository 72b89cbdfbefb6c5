// The ConfigMaps and Secrets a pod's volumes and environment name, and its
// service account tokens, read from the API server when the pod starts and
// while it runs (never stored: DESIGN.md §2).
#ifndef VMLET_LAUNCHER_KUBE_OBJECTS_H
#define VMLET_LAUNCHER_KUBE_OBJECTS_H

#include "vmlet/kube.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *key;
    uint8_t *value; // NUL-terminated for convenience; may hold NULs
    size_t len;
} object_item_t;

// A ConfigMap's data and binaryData, or a Secret's data, decoded.
typedef struct {
    object_item_t *items;
    size_t n;
} object_data_t;

// kind: "configmaps" or "secrets". Returns 0 with *out filled, 1 when the
// object does not exist (404), -1 with err when it could not be read.
int kube_objects_get(vmlet_kube_t *kube, const char *kind, const char *namespace_,
                     const char *name, object_data_t *out, vmlet_err_t *err);

// A bound service account token for a pod (TokenRequest: audience may be
// empty; bound to the pod, so it dies with it). Returns 0 with *token
// (malloc'd: wipe before freeing), or -1 with err.
int kube_objects_token(vmlet_kube_t *kube, const char *namespace_, const char *service_account,
                       const char *audience, int64_t expiration_seconds, const char *pod_name,
                       const char *pod_uid, char **token, vmlet_err_t *err);

// The value for key, or NULL.
const object_item_t *object_data_find(const object_data_t *data, const char *key);

// Frees, wiping the values (they may be secrets).
void object_data_clear(object_data_t *data);

// The same data as a JSON object of strings (for container_run's Secret
// fetcher). Caller deletes.
cJSON *object_data_to_json(const object_data_t *data);

#endif
