// The pods bound to the node: from the API server's list and watch to
// normalised specs in Redis, with PodDesired when a spec changes and
// PodDeleted when a pod is being deleted or is gone.
//
// Level-triggered: each (re)list is compared with Redis both ways, so a
// pod the watcher missed, or one Redis lost, is repaired; an unchanged pod
// is never announced twice. Pods whose spec names a ConfigMap or Secret
// key that does not exist yet are normalised again every few seconds
// until it does.
#ifndef VMLET_WATCHER_PODS_H
#define VMLET_WATCHER_PODS_H

#include "vmlet/bus.h"
#include "vmlet/kube.h"
#include "vmlet/kube_watch.h"
#include "vmlet/log.h"
#include "vmlet/metrics.h"
#include "vmlet/store.h"

typedef struct _pods_t pods_t;

// kube (for ConfigMaps and Secrets), store, publisher, client (for image
// requests), metrics and log are borrowed.
pods_t *pods_new(vmlet_kube_t *kube, vmlet_store_t *store, vmlet_bus_publisher_t *publisher,
                 vmlet_bus_client_t *client, vmlet_metrics_t *metrics, vmlet_log_t *log);
void pods_destroy(pods_t **self_p);

// The watch's callback (vmlet_watch_fn) with a pods_t as arg.
void pods_on_watch(void *arg, vmlet_watch_event_t event, const cJSON *pod);

// Normalises again the pods waiting for a ConfigMap/Secret key, or whose
// last attempt could not reach the API server or Redis, and asks again for
// images still missing.
void pods_retry(pods_t *self);

// How many pods are known.
size_t pods_count(const pods_t *self);

#endif
