// status-reporter's domain object: keeps each pod's status in Kubernetes
// equal to what vmlet knows, posts its Events, and finishes deletions.
//
// A pod is "dirty" when anything about it changed: its object in the API
// server (watched), its spec (PodDesired), its VM (VmEvent), its images
// (ImageReady, ImageFailed) or probes (ProbeResult). Dirty pods are
// reconciled together a moment later, so a burst of events costs one
// write; a write happens only when the computed status differs from the
// live object's, whoever changed that. Every pod is reconciled again on a
// timer, so nothing depends on a single event arriving.
//
// A pod being deleted is deleted for good (grace 0, UID precondition) once
// its VM is gone: the VM reported stopped (or failed), or never reported
// at all within the grace period.
#ifndef VMLET_REPORTER_H
#define VMLET_REPORTER_H

#include "vmlet/service.h"

#include <stdint.h>

typedef struct {
    char *kubeconfig;
    char *node_name;
    char *internal_ip;
    int64_t coalesce_ms;
    int64_t resync_ms;
} reporter_settings_t;

extern const vmlet_cfg_option_t reporter_options[];

void *reporter_start(vmlet_service_t *service, vmlet_err_t *err);
void reporter_stop(void **self_p);

int reporter_on_pod_desired(void *self, const vmlet_envelope_t *env);
int reporter_on_pod_deleted(void *self, const vmlet_envelope_t *env);
int reporter_on_vm_event(void *self, const vmlet_envelope_t *env);
int reporter_on_image_ready(void *self, const vmlet_envelope_t *env);
int reporter_on_image_failed(void *self, const vmlet_envelope_t *env);
int reporter_on_probe_result(void *self, const vmlet_envelope_t *env);
int reporter_on_pod_event(void *self, const vmlet_envelope_t *env);

#endif
