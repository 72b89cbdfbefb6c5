// The Services' environment variables a kubelet gives every container
// (pkg/kubelet/envvars and getServiceEnvVarMap): for each Service with a
// cluster IP, <NAME>_SERVICE_HOST, <NAME>_SERVICE_PORT, one
// <NAME>_SERVICE_PORT_<PORTNAME> per named port, and the Docker-link
// variables <NAME>_PORT (the first port) and <NAME>_PORT_<port>_<PROTO>
// with _PROTO, _PORT and _ADDR; NAME is the Service's name upper-cased
// with '-' as '_'. The master Service `kubernetes` of `default` is always
// there; the Services of the pod's namespace only with enableServiceLinks.
#ifndef VMLET_LAUNCHER_SERVICE_ENV_H
#define VMLET_LAUNCHER_SERVICE_ENV_H

#include "vmlet/err.h"
#include "vmlet/kube.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

// Variables in order; a later name replaces an earlier one.
typedef struct {
    char **names, **values;
    size_t n;
} service_env_t;

// Adds one Service's (the API object) variables, as envvars.FromServices
// does. A Service without a cluster IP ("None" or "") or ports adds none.
void service_env_add_service(service_env_t *env, const cJSON *service);

// The kubelet's map for a pod: the master Services (the `kubernetes` one
// among `master_items`, a ServiceList's items of `default`), then with
// links every Service among `ns_items` (the pod's namespace: one there
// named `kubernetes` replaces the master's, as on a kubelet). Services in
// name order, for a stable environment. Either list may be NULL.
void service_env_build(service_env_t *env, const cJSON *master_items, const cJSON *ns_items,
                       bool links);

// Lists the Services from the API server (the pod's namespace when links;
// `kubernetes` in `default`) and builds the map. Returns 0, or -1 with err
// (the container must not start without them, as on a kubelet).
int service_env_fetch(vmlet_kube_t *kube, const char *namespace_, bool links, service_env_t *env,
                      vmlet_err_t *err);

// Frees the variables (the struct itself is the caller's) and empties it.
void service_env_clear(service_env_t *env);

#endif
