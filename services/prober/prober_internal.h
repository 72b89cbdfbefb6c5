// The prober's insides, shared by its files:
//
//   prober.c      settings, start/stop, bus handlers, leases, the tick
//   pod_probes.c  one pod's probes: built from its spec, fed by its VM's
//                 reports, run on schedule, their results turned into
//                 events and restart requests
#ifndef VMLET_PROBER_INTERNAL_H
#define VMLET_PROBER_INTERNAL_H

#include "probe_runner.h"
#include "probe_state.h"
#include "prober.h"
#include "schedule.h"

#include <czmq.h>

typedef struct pod_probes pod_probes_t;

typedef struct {
    vmlet_service_t *service;
    const prober_settings_t *settings;
    vmlet_log_t *log;
    vmlet_store_t *store;
    zloop_t *loop;
    char id[256];
    probe_runner_t *runner;
    schedule_t schedule;
    zhashx_t *pods;      // uid -> pod_probes_t (the pods whose lease we hold)
    zhashx_t *execs;     // request id -> probe_t (exec probes waiting for their result)
    zlistx_t *tickets;   // network probes out (their callbacks' arguments; freed with them)
    zhashx_t *free_before; // uids nobody held at the last scan
    uint64_t next_exec;
    int tick_timer;
    int lease_timer;
    // metrics
    vmlet_metric_t *owned;
    vmlet_metric_t *latency;
    vmlet_metric_t *lateness;
    vmlet_metric_t *skipped;
} prober_t;

// One probe of one container.
typedef struct {
    schedule_entry_t when; // first: the schedule hands entries back
    pod_probes_t *pod;
    size_t container; // index into the pod's (regular) containers
    const Vmlet__Probe *spec;
    probe_state_t state;
    bool in_flight;
    uint64_t attempt;      // numbers attempts, so a late answer of an old one is ignored
    int tries;             // of this attempt, counting those that ended Unknown
    int64_t started_ms;    // monotonic, of the attempt in flight
    int64_t verdict_sent_ms; // monotonic: when the standing verdict was last published
    char exec_id[300];     // an exec probe's request id while in flight
} probe_t;

// What the VM says about one container.
typedef struct {
    bool running;
    int64_t started_unix_ms;
    char container_id[256];
} container_view_t;

struct pod_probes {
    prober_t *p;
    char uid[64];
    char spec_hash[32];
    Vmlet__PodSpec *spec;
    char pod_ip[64];
    uint64_t vm_generation;
    container_view_t *views; // per regular container
    probe_t *probes;
    size_t n_probes;
};

// pod_probes.c
// Loads the pod (spec and its VM's last record) from Redis and schedules
// its probes, each first within its period, or within max_jitter_ms when
// that is shorter (>= 0: a pod taken over from a dead prober). NULL when
// Redis has no spec for it.
pod_probes_t *pod_probes_new(prober_t *p, const char *uid, int64_t max_jitter_ms);
void pod_probes_destroy(pod_probes_t **self_p);
// A VM report for the pod.
void pod_probes_on_vm(pod_probes_t *self, const Vmlet__VmEvent *vm);
// The spec changed in Redis (a new hash): probes built again.
void pod_probes_reload(pod_probes_t *self, const char *spec_hash);
// A due probe: runs it if the container is ready for it.
void pod_probes_run(probe_t *probe);
// An exec probe's answer.
void pod_probes_on_exec(probe_t *probe, const Vmlet__ExecResult *r);
// Exec probes whose answer never came (no launcher holds the pod, or its
// answer was lost) end Unknown at their deadline.
void pod_probes_expire_execs(prober_t *p);

#endif
