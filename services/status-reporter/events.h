// Kubernetes Events about pods, as the kubelet posts them (source
// component "kubelet", host the node): the first occurrence is created,
// repeats of the same reason and message raise its count and
// lastTimestamp instead of making another.
#ifndef VMLET_REPORTER_EVENTS_H
#define VMLET_REPORTER_EVENTS_H

#include "vmlet/kube.h"
#include "vmlet/log.h"
#include "vmlet/metrics.h"
#include "vmlet/proto/pod.pb-c.h"

typedef struct _events_t events_t;

// kube, log and metrics are borrowed; node names the source host.
events_t *events_new(vmlet_kube_t *kube, const char *node, vmlet_metrics_t *metrics,
                     vmlet_log_t *log);
void events_destroy(events_t **self_p);

// Posts (or counts again) an event. container may be NULL (the pod
// itself); type is "Normal" or "Warning".
void events_post(events_t *self, const Vmlet__PodRef *pod, const char *container,
                 const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

// Forgets the counts kept for a pod that is gone.
void events_forget(events_t *self, const char *uid);

#endif
