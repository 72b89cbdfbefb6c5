// activeDeadlineSeconds, as the kubelet's activeDeadlineHandler: counted
// from the pod's status.startTime (when the node first took it); once past
// it, the pod fails as a whole (reason DeadlineExceeded, the kubelet's
// message) and is killed where it stands: nothing starts again, running
// containers get their preStop hook and stop signal, SIGKILL after the
// grace period, and the VM powers off, while the pod stays (Failed) until
// it is deleted. A deadline set or lowered on a running pod takes effect
// at once.
#ifndef VMLET_LAUNCHER_POD_DEADLINE_H
#define VMLET_LAUNCHER_POD_DEADLINE_H

#include "vmlet/proto/envelope.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

#define POD_DEADLINE_REASON "DeadlineExceeded"
#define POD_DEADLINE_MESSAGE "Pod was active on the node longer than the specified deadline"

// What a pod's VM keeps for its deadline.
typedef struct {
    // status.startTime as the API server has it (0 until read): the
    // kubelet counts from it; until then, from when the launcher took the
    // pod (the two are the same moment give or take a second).
    int64_t api_start_unix_ms;
    int64_t next_read_ms; // monotonic: when to ask the API server again
} pod_deadline_t;

// Pure: whether a pod whose spec says activeDeadlineSeconds (has, seconds)
// and that started at start_unix_ms (0: not started) is past its deadline
// at now_unix_ms (pastActiveDeadline).
bool pod_deadline_passed(bool has_deadline, int64_t seconds, int64_t start_unix_ms,
                         int64_t now_unix_ms);

typedef struct pod_vm pod_vm_t;

// From the launcher's tick: fails the pod when it is past its deadline.
void pod_deadline_tick(pod_vm_t *pod);

// The pod's spec changed while it runs (PodDesired): its deadline is the
// new one (set, or lowered; the API server allows nothing else).
void pod_deadline_spec_changed(pod_vm_t *pod, const Vmlet__PodSpec *spec);

#endif
