// A container's lifecycle hooks, with the kubelet's ordering:
//  - postStart runs right after the container started; until it is done
//    the container reports Waiting (ContainerCreating), not Running; if it
//    fails, a FailedPostStartHook event, and the container is killed
//    (preStop and grace period as for any kill) and restartPolicy decides.
//  - preStop runs before the stop signal, within the grace period (what
//    it takes counts against it; the signal then comes with what is left,
//    at least 2 s); if it fails, a FailedPreStopHook event, and the signal.
// exec hooks run in the container through the guest agent; httpGet hooks
// are sent from this host to the pod IP, or to the handler's host.
#ifndef VMLET_LAUNCHER_POD_HOOKS_H
#define VMLET_LAUNCHER_POD_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pod_vm pod_vm_t;

// Container i just started: runs its postStart hook, if it has one
// (true). Without one (false) it is Running at once.
bool pod_hooks_post_start(pod_vm_t *pod, size_t i);

// Container i is to stop by deadline_unix_ms (SIGKILL then): runs its
// preStop hook if it has one and there is time (true: the hook sends the
// stop signal when done). false: send the stop signal now.
bool pod_hooks_pre_stop(pod_vm_t *pod, size_t i, int64_t deadline_unix_ms);

#endif
