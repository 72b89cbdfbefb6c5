// List-then-watch of one Kubernetes collection, run on its own thread so
// the owner's loop never blocks on the API server, with the client-go
// reflector's semantics:
//
//   - LIST (paged), then WATCH from the list's resourceVersion with
//     allowWatchBookmarks, resuming from the last resourceVersion seen
//     (objects and bookmarks) after the stream ends or breaks;
//   - "410 Gone" in either form (an HTTP 410 answer to the WATCH, or an
//     ERROR event whose Status has code 410) leads to a fresh LIST;
//   - failures retry with exponential back-off, logged, never fatal.
//
// Each (re)list is delivered as LIST_BEGIN, one LISTED per object, then
// LIST_END, so the owner can compute what vanished while it was not
// watching (known minus listed). Watch events arrive as ADDED, MODIFIED,
// DELETED. Bookmarks are not delivered; they only move the resume point.
#ifndef VMLET_KUBE_WATCH_H
#define VMLET_KUBE_WATCH_H

#include "vmlet/err.h"
#include "vmlet/kube.h"
#include "vmlet/log.h"
#include "vmlet/metrics.h"

#include <cjson/cJSON.h>
#include <czmq.h>

typedef enum {
    VMLET_WATCH_LIST_BEGIN,
    VMLET_WATCH_LISTED,
    VMLET_WATCH_LIST_END,
    VMLET_WATCH_ADDED,
    VMLET_WATCH_MODIFIED,
    VMLET_WATCH_DELETED,
} vmlet_watch_event_t;

// Called on the owner's loop thread. `object` (NULL for LIST_BEGIN and
// LIST_END) is borrowed for the call.
typedef void(vmlet_watch_fn)(void *arg, vmlet_watch_event_t event, const cJSON *object);
// (fn may call vmlet_kube_watch_relist, but must not destroy the watch.
// LISTED objects that come without kind and apiVersion, as the API server
// sends list items, get the list's, so they look like watched objects.)

typedef struct _vmlet_kube_watch_t vmlet_kube_watch_t;

// Watches `collection` ("/api/v1/pods", "/api/v1/namespaces/x/configmaps")
// filtered by field_selector and label_selector (either may be NULL). The
// config is copied; log and metrics are borrowed; fn runs with arg on the
// loop the watch is attached to. Metrics: vmlet_kube_watch_events_total
// {resource,type}, vmlet_kube_watch_lists_total{resource},
// vmlet_kube_watch_reconnects_total{resource}, and
// vmlet_kube_watch_synced{resource} (1 after a LIST_END until the next error).
vmlet_kube_watch_t *vmlet_kube_watch_new(const vmlet_kube_config_t *config,
                                         const char *collection, const char *field_selector,
                                         const char *label_selector, vmlet_watch_fn *fn,
                                         void *arg, vmlet_log_t *log, vmlet_metrics_t *metrics,
                                         vmlet_err_t *err);

// Starts the thread and delivers its events through `loop`.
int vmlet_kube_watch_attach(vmlet_kube_watch_t *self, zloop_t *loop, vmlet_err_t *err);

// Forces a fresh LIST now (the owner's periodic resync).
void vmlet_kube_watch_relist(vmlet_kube_watch_t *self);

// True between a LIST_END and the next failure.
bool vmlet_kube_watch_synced(const vmlet_kube_watch_t *self);

// Stops the thread (within 200 ms, even mid-request) and frees everything.
void vmlet_kube_watch_destroy(vmlet_kube_watch_t **self_p);

#endif
