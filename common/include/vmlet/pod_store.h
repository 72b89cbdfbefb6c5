// Where the normalised pods live in Redis, for every service to read:
//
//   vmlet:pods              SET of the uids of pods bound to the node
//   vmlet:pod:<uid>         HASH  spec       PodSpec (protobuf)
//                                 hash       spec_hash of that spec
//                                 namespace, name
//
// k8s-watcher writes them; the others only read. No secret value is ever
// in a spec: Secrets appear as references.
#ifndef VMLET_POD_STORE_H
#define VMLET_POD_STORE_H

#include "vmlet/err.h"
#include "vmlet/proto/pod.pb-c.h"
#include "vmlet/store.h"

#define VMLET_POD_HASH_LEN 17 // 16 hex digits and a NUL

// The hash that says whether a spec changed: FNV-1a over its packed bytes
// with the resourceVersion left out (it moves with every status write).
void vmlet_pod_spec_hash(const Vmlet__PodSpec *spec, char out[VMLET_POD_HASH_LEN]);

// Stores the spec under its uid (atomically with the index). Returns 0 or -1.
int vmlet_pod_store_put(vmlet_store_t *store, const Vmlet__PodSpec *spec, const char *hash,
                        vmlet_err_t *err);

// The stored hash of a pod into out; returns 1 if stored, 0 if not, -1 on error.
int vmlet_pod_store_hash(vmlet_store_t *store, const char *uid, char out[VMLET_POD_HASH_LEN],
                         vmlet_err_t *err);

// The stored spec (free with vmlet__pod_spec__free_unpacked), or NULL:
// with err->code ENOENT when there is none, else another error.
Vmlet__PodSpec *vmlet_pod_store_get(vmlet_store_t *store, const char *uid, vmlet_err_t *err);

// The uid of the pod stored under namespace/name into uid (cap bytes);
// returns 1 if there is one, 0 if not, -1 on error.
int vmlet_pod_store_uid_of(vmlet_store_t *store, const char *namespace_, const char *name,
                           char *uid, size_t cap, vmlet_err_t *err);

// Removes a pod and its index entries.
int vmlet_pod_store_delete(vmlet_store_t *store, const char *uid, vmlet_err_t *err);

// Every uid in the index (caller frees with vmlet_pod_store_free_uids).
int vmlet_pod_store_uids(vmlet_store_t *store, char ***uids, size_t *n, vmlet_err_t *err);
void vmlet_pod_store_free_uids(char **uids, size_t n);

#endif
