// A pod's volumes as the guest agent makes them (GuestVolume in
// guest.proto): emptyDir as a directory (tmpfs for medium Memory), and
// configMap, secret, downwardAPI and projected volumes as files whose
// contents the launcher reads at setup, and again while the pod runs
// (volume_refresh.h), with the modes the pod asked for (default 0644, the
// kubelet's for every kind) and its fsGroup. Secret and token files go to
// tmpfs in the guest, never to a disk.
#ifndef VMLET_LAUNCHER_VOLUMES_H
#define VMLET_LAUNCHER_VOLUMES_H

#include "container_run.h"
#include "kube_objects.h"

// Reads a ConfigMap or Secret ("configmaps" / "secrets"): as
// kube_objects_get.
typedef int (*object_fetch_fn)(void *ctx, const char *kind, const char *namespace_,
                               const char *name, object_data_t *out, vmlet_err_t *err);

// A service account token for a projected volume (TokenRequest). Returns 0
// with *token (malloc'd), or -1 with err.
typedef int (*token_fetch_fn)(void *ctx, const char *namespace_, const char *service_account,
                              const char *audience, int64_t expiration_seconds, char **token,
                              vmlet_err_t *err);

typedef struct {
    const run_inputs_t *run; // the pod, its IPs and VM size (for downward-API files)
    object_fetch_fn fetch;
    token_fetch_fn token;
    void *ctx;
} volume_inputs_t;

// Builds every volume of the pod. Returns 0 with *out (n entries; free
// with volumes_free), or -1 with problem (the kubelet's FailedMount
// message, e.g. `configmap "x" not found`, retryable) or with err (the API
// server could not be asked; problem->reason empty).
int volumes_build(const volume_inputs_t *in, Vmlet__GuestVolume ***out, size_t *n,
                  run_problem_t *problem, vmlet_err_t *err);

// One volume of the pod, as volumes_build makes each: 0 with *out (free
// with volumes_free_one), or -1 with problem (zeroed first by the caller)
// or err, the same way.
int volumes_build_one(const volume_inputs_t *in, const Vmlet__Volume *vol, Vmlet__GuestVolume **out,
                      run_problem_t *problem, vmlet_err_t *err);

// Free, wiping the files' contents first (they may be secrets).
void volumes_free(Vmlet__GuestVolume **volumes, size_t n);
void volumes_free_one(Vmlet__GuestVolume *volume);

// The volume's kind as the API names it ("configMap", "secret",
// "downwardAPI", "projected"), or NULL for one that is not made of files
// (emptyDir): the kinds live updates cover.
const char *volumes_kind(const Vmlet__Volume *vol);

// Whether the volume's files come from the pod's metadata (a downwardAPI
// volume or projection: labels, annotations), which a PodDesired changes.
bool volumes_from_metadata(const Vmlet__Volume *vol);

#endif
