// The prober's domain object: it takes a share of the node's pods through
// Redis leases (ownership.h), runs their liveness, readiness and startup
// probes on schedule with the kubelet's semantics (probe_state.h), and
// reports: ProbeResult events (each failed attempt, each verdict change)
// for the status-reporter, RestartRequest work items for vm-launcher when
// a liveness or startup probe fails. HTTP, TCP and gRPC probes run on the
// service's loop (probe_runner.h); exec probes go to the launcher that
// owns the pod's VM as ExecRequest events.
#ifndef VMLET_PROBER_H
#define VMLET_PROBER_H

#include "vmlet/service.h"

typedef struct {
    char *prober_id;
    int64_t lease_ms;
    long max_in_flight;
} prober_settings_t;

extern const vmlet_cfg_option_t prober_options[];

void *prober_start(vmlet_service_t *service, vmlet_err_t *err);
void prober_stop(void **self_p);

int prober_on_vm_event(void *self, const vmlet_envelope_t *env);
int prober_on_pod_desired(void *self, const vmlet_envelope_t *env);
int prober_on_pod_deleted(void *self, const vmlet_envelope_t *env);
int prober_on_exec_result(void *self, const vmlet_envelope_t *env);

#endif
