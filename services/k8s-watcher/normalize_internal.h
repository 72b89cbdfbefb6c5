// Shared between normalize.c (the pod) and normalize_container.c (its
// containers): JSON getters, protobuf builders, and problem recording.
#ifndef VMLET_WATCHER_NORMALIZE_INTERNAL_H
#define VMLET_WATCHER_NORMALIZE_INTERNAL_H

#include "normalize.h"

#include "vmlet/pb.h"

#include <stdint.h>

// The state of one normalisation.
typedef struct {
    const pod_resolver_t *resolver;
    const char *ns;
    bool transient; // a reference could not be checked
    vmlet_err_t *err;
} norm_t;

const cJSON *j_get(const cJSON *obj, const char *key);
const char *j_str(const cJSON *obj, const char *key);    // NULL if absent or not a string
char *j_dup(const cJSON *obj, const char *key);          // malloc'd copy or NULL
bool j_int(const cJSON *obj, const char *key, int64_t *out);
bool j_bool(const cJSON *obj, const char *key, bool *out);
// A JSON array of strings into a malloc'd char** (n set).
char **j_strings(const cJSON *array, size_t *n);

// Records a problem unless one is there already (the first one tells).
void problem_set(Vmlet__ConfigProblem **slot, const char *reason, bool retryable,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define CONFIG_ERROR "CreateContainerConfigError"

// Looks up a ConfigMap or Secret key. Returns FOUND with *value (borrowed)
// or MISSING with a problem-ready description in `why`; ERROR sets
// n->transient.
resolve_result_t resolve_key(norm_t *n, bool secret, const char *name, const char *key,
                             const char **value, char *why, size_t why_cap);
// Looks up a whole ConfigMap or Secret (for envFrom and volumes).
resolve_result_t resolve_object(norm_t *n, bool secret, const char *name, const cJSON **data);

Vmlet__Container *normalize_container(norm_t *n, const cJSON *c);
Vmlet__FieldRef *normalize_field_ref(const cJSON *j);
Vmlet__ResourceFieldRef *normalize_resource_ref(const cJSON *j, const char *container);

#endif
