// Asking the vm-launchers to run a pod: one LaunchRequest work item per
// pod (item id "launch/<uid>", so the broker keeps one however often it is
// asked). Asked when a pod's spec is stored and again, every retry
// interval, while no live launcher has a record of the pod (the item was
// lost with a broker, or its launcher died), as Redis is the truth and the
// bus only the doorbell.
#ifndef VMLET_WATCHER_LAUNCH_REQUESTS_H
#define VMLET_WATCHER_LAUNCH_REQUESTS_H

#include "vmlet/bus.h"
#include "vmlet/log.h"
#include "vmlet/proto/envelope.pb-c.h"
#include "vmlet/store.h"

#include <stdbool.h>

// True when no launcher that is alive holds the pod (vmlet:vm:<uid> names
// a launcher whose vmlet:launcher:<id> record has not expired).
bool launch_needed(vmlet_store_t *store, const char *uid);

void launch_request_send(vmlet_bus_client_t *client, const Vmlet__PodSpec *spec,
                         const char *spec_hash, vmlet_log_t *log);

#endif
