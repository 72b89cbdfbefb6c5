// The Node and its Lease in the API server: create or adopt the Node,
// patch its status, renew the Lease that is its heartbeat.
#ifndef VMLET_WATCHER_NODE_H
#define VMLET_WATCHER_NODE_H

#include "node_status.h"

#include "vmlet/kube.h"

// Creates the Node, or adopts the one that exists: our labels and taint
// are merged into it (its other labels and taints, such as the node
// controller's, stay) and its conditions' transition times are kept in
// conds. Sets uid (cap 64). Returns 0, or -1 with err.
int node_register(vmlet_kube_t *kube, const node_identity_t *id, const capacity_sum_t *cap,
                  node_conditions_t *conds, char *uid, size_t uid_cap, vmlet_err_t *err);

// PATCHes nodes/<name>/status. Returns 0, 1 if the Node is gone (register
// again), or -1 with err.
int node_patch_status(vmlet_kube_t *kube, const node_identity_t *id, const capacity_sum_t *cap,
                      const node_conditions_t *conds, vmlet_err_t *err);

// Renews (or creates) the Lease kube-node-lease/<name>: holder the node,
// duration_s, renewTime now, owned by the Node (uid) so it goes with it.
int node_lease_renew(vmlet_kube_t *kube, const char *name, const char *uid, int duration_s,
                     vmlet_err_t *err);

#endif
