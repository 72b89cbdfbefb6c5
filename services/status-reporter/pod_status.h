// A pod's status as the kubelet would write it, from what vmlet knows:
// the normalised spec, the VM's last report, image failures, probe
// results, and the status the API server holds now (for transition times
// and startTime). Pure: no I/O, no clock; table-tested.
#ifndef VMLET_REPORTER_POD_STATUS_H
#define VMLET_REPORTER_POD_STATUS_H

#include "vmlet/proto/envelope.pb-c.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

// What is known of one container beyond the VM's report.
typedef struct {
    const char *image_reason;  // ErrImagePull, ImagePullBackOff, InvalidImageName; NULL if fine
    const char *image_message;
    int readiness; // last readiness probe: -1 none yet, 0 failed, 1 succeeded
    int startup;   // last startup probe: the same
} container_facts_t;

typedef struct {
    const Vmlet__PodSpec *spec;     // required
    const Vmlet__VmEvent *vm;       // the VM's last report; NULL before the first
    const container_facts_t *facts; // one per container, init containers first; may be NULL
    const char *host_ip;
    const cJSON *live;   // the pod's status in the API server now; may be NULL
    int64_t now_unix;
    // False while the Node is not Ready: the node controller has marked the
    // pods not Ready, and vmlet agrees until its node is back.
    bool node_ready;
} pod_status_inputs_t;

// The status to write (caller frees): phase, conditions, initContainerStatuses,
// containerStatuses, hostIP, podIP(s), startTime, and reason/message when
// the VM failed or the pod failed as a whole (VmEvent.pod_failure_reason:
// DeadlineExceeded), which makes it Failed whatever its containers say.
cJSON *pod_status_compute(const pod_status_inputs_t *in);

// The kubelet's phase from the spec and container statuses (JSON, as
// computed above). Exposed for tests.
const char *pod_status_phase(const Vmlet__PodSpec *spec, const cJSON *init_statuses,
                             const cJSON *statuses);

// True if writing `desired` would change `live`: every field of desired is
// compared; conditions by type (status, reason, message, transition time).
bool pod_status_differs(const cJSON *desired, const cJSON *live);

#endif
