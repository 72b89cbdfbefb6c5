// What a container's process is, decided when it starts, as the kubelet and
// a CRI runtime decide it together: argv (Kubernetes command/args over the
// image's entrypoint/cmd), environment (image env, then the Services'
// variables, then envFrom in turn, then env, each value's $(VAR) expanded
// against the variables before it; downward-API fields and Secret values
// resolved now and never stored),
// working directory and user. The result is a StartContainer for the
// guest agent.
#ifndef VMLET_LAUNCHER_CONTAINER_RUN_H
#define VMLET_LAUNCHER_CONTAINER_RUN_H

#include "service_env.h"

#include "vmlet/err.h"
#include "vmlet/proto/envelope.pb-c.h"
#include "vmlet/proto/guest.pb-c.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

// Reads a Secret's data (base64-decoded values by key) for the pod's
// namespace. Returns 0 with *data (caller deletes) when found, 1 when the
// Secret does not exist, -1 with err when it could not be read.
typedef int (*secret_fetch_fn)(void *ctx, const char *namespace_, const char *name,
                               cJSON **data, vmlet_err_t *err);

// The Services' variables for a pod in namespace_ (service_env.h), links
// as its enableServiceLinks. Returns 0 with *env filled, or -1 with err.
typedef int (*service_env_fn)(void *ctx, const char *namespace_, bool links, service_env_t *env,
                              vmlet_err_t *err);

typedef struct {
    const Vmlet__PodSpec *pod;
    const Vmlet__Container *container;
    const Vmlet__ImageConfig *image; // may be NULL
    const char *pod_ip;
    const char *host_ip;
    const char *hostname;
    // What an unset limit means inside the VM (the kubelet uses the node's
    // allocatable; a pod's VM has exactly this).
    int64_t vm_cpu_millis;
    int64_t vm_memory_bytes;
    secret_fetch_fn fetch_secret;
    service_env_fn service_env; // NULL: no Service variables (no API server)
    void *fetch_ctx;
    unsigned instance; // which run of the container
    bool fresh_root;
} run_inputs_t;

// Why a container cannot start, in the kubelet's words: reason
// CreateContainerConfigError (a missing Secret or key, a bad field path) or
// CreateContainerError (nothing to run); retryable when waiting may help.
typedef struct {
    char reason[64];
    char message[512];
    bool retryable;
} run_problem_t;

// Builds the StartContainer (free with vmlet__start_container__free_unpacked
// (msg, NULL)). Returns NULL with *problem filled when the container cannot
// start as specified, or with err (problem->reason empty) when a Secret
// could not be read for a reason worth retrying.
Vmlet__StartContainer *container_run_build(const run_inputs_t *in, run_problem_t *problem,
                                           vmlet_err_t *err);

// The value of a downward-API field path for the pod ("metadata.name",
// "metadata.labels['app']", "status.podIP"...). Returns a malloc'd string,
// or NULL if the path is not one the kubelet supports.
char *container_run_field(const run_inputs_t *in, const char *field_path);

// The value of a resourceFieldRef ("limits.memory" with its divisor) as
// the kubelet gives it, an unset limit meaning the VM's size. NULL with
// problem->message when the reference is bad.
char *container_run_resource(const run_inputs_t *in, const Vmlet__ResourceFieldRef *ref,
                             run_problem_t *problem);

#endif
