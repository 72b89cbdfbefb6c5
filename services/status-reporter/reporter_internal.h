// Shared by reporter.c (state, events in, timers) and reconcile.c (status
// out, Events, deletion).
#ifndef VMLET_REPORTER_INTERNAL_H
#define VMLET_REPORTER_INTERNAL_H

#include "events.h"
#include "reporter.h"

#include "vmlet/backoff.h"
#include "vmlet/kube.h"
#include "vmlet/kube_watch.h"
#include "vmlet/pod_store.h"

typedef struct {
    char *uid;
    cJSON *live;            // the pod as the API server has it now
    Vmlet__PodSpec *spec;   // from Redis; NULL until the watcher stored it
    char spec_hash[VMLET_POD_HASH_LEN];
    cJSON *computed;        // the status computed last, for Event transitions
    bool dirty;
    bool pulling_posted;
    bool killing_posted;
    int64_t deleting_since_ms; // when deletion was first seen; 0 if not deleting
    int64_t grace_s;
    vmlet_backoff_t backoff; // after a failed write
} pod_t;

typedef struct {
    vmlet_service_t *service;
    const reporter_settings_t *settings;
    vmlet_log_t *log;
    zloop_t *loop;
    vmlet_store_t *store;
    vmlet_kube_config_t kube_config;
    vmlet_kube_t *kube;
    vmlet_kube_watch_t *watch;      // the pods bound to the node
    vmlet_kube_watch_t *node_watch; // the Node itself: is it Ready?
    bool node_ready;
    events_t *events;
    zhashx_t *pods; // uid -> pod_t
    int timers[2];
    vmlet_metric_t *writes, *write_failures, *skipped, *deletes;
    vmlet_metric_t *phases[5]; // pods by status.phase, in s_phases order (reporter.c)
} reporter_t;

// Computes, compares, writes the status of one pod, posts the Events its
// changes call for, and finishes its deletion when due.
void reconcile_pod(reporter_t *self, pod_t *pod);

// Sets up a new pod's write back-off.
void reconcile_init_backoff(pod_t *pod);

// Looks a pod up; NULL if the watch has not shown it.
pod_t *reporter_pod(reporter_t *self, const char *uid);

#endif
