// A Kubernetes Pod (JSON) into vmlet's normalised PodSpec (proto/pod.proto).
//
// What vmlet acts on is taken, defaulted and checked. ConfigMap values
// used by env and envFrom are resolved into plain values; Secret
// references stay references (no secret value may reach Redis, which
// persists to disk), but their existence is checked. fieldRef and
// resourceFieldRef, and $(VAR) expansion, are left to vm-launcher, which
// knows the pod IP and its limits when a container starts.
//
// A pod vmlet cannot run as written is still normalised: the reason goes
// into a ConfigProblem on the container (or the pod), in the kubelet's
// words (CreateContainerConfigError, InvalidImageName), retryable when it
// may go away by itself (a missing ConfigMap key appears).
#ifndef VMLET_WATCHER_NORMALIZE_H
#define VMLET_WATCHER_NORMALIZE_H

#include "vmlet/err.h"
#include "vmlet/proto/pod.pb-c.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

typedef enum {
    RESOLVE_FOUND,
    RESOLVE_MISSING, // the object does not exist
    RESOLVE_ERROR,   // could not tell (API server unreachable): try later
} resolve_result_t;

// Looks up ConfigMaps and Secrets in the pod's namespace. On FOUND, *data
// is the object's "data" map (NULL when it has none), borrowed for the
// rest of the normalisation.
typedef struct {
    resolve_result_t (*configmap)(void *arg, const char *ns, const char *name,
                                  const cJSON **data, vmlet_err_t *err);
    resolve_result_t (*secret)(void *arg, const char *ns, const char *name, const cJSON **data,
                               vmlet_err_t *err);
    void *arg;
} pod_resolver_t;

// Limits on what a container's process can be given (Linux refuses an
// exec whose strings are larger).
#define NORMALIZE_MAX_STRING 131072 // MAX_ARG_STRLEN: one argument or "K=V"
#define NORMALIZE_MAX_ENV 1048576   // all of argv and the environment

// Returns the spec (free with pod_spec_free), or NULL with err when the
// object is not a pod (no uid, name or namespace), or when a reference
// could not be checked for now (*transient set: try again later).
Vmlet__PodSpec *pod_normalize(const cJSON *pod, const pod_resolver_t *resolver, bool *transient,
                              vmlet_err_t *err);

void pod_spec_free(Vmlet__PodSpec **spec_p);

// True if the spec or any container has a retryable problem.
bool pod_spec_retryable(const Vmlet__PodSpec *spec);

// The pod's problem, or else the first container's that has one; NULL if none.
const Vmlet__ConfigProblem *pod_spec_problem(const Vmlet__PodSpec *spec);

#endif
