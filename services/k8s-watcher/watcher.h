// k8s-watcher's domain object: the Node, its heartbeat, the launchers'
// capacity, and the pods bound to the node.
//
// States of the node, as the watcher sees it:
//   unregistered --(Node created or adopted)--> registered
//   registered: Lease renewed every --lease-renew-interval; status patched
//   when it changes and every --status-interval; Ready while a launcher is
//   alive, NotReady (reason NoLauncher) otherwise; back to unregistered if
//   someone deletes the Node.
#ifndef VMLET_WATCHER_H
#define VMLET_WATCHER_H

#include "vmlet/service.h"

#include <stdint.h>

typedef struct {
    char *kubeconfig;
    char *node_name;
    char *internal_ip;
    long kubelet_port;
    char *node_taint;
    char *node_labels;
    char *kubelet_version;
    int64_t lease_duration_ms;
    int64_t lease_renew_ms;
    int64_t status_interval_ms;
    int64_t resync_interval_ms;
    int64_t retry_interval_ms;
} watcher_settings_t;

extern const vmlet_cfg_option_t watcher_options[];

typedef struct _watcher_t watcher_t;

// The service's start hook: reads the settings from the service's def.
void *watcher_start(vmlet_service_t *service, vmlet_err_t *err);
void watcher_stop(void **self_p);

// Route for LauncherCapacity events.
int watcher_on_capacity(void *self, const vmlet_envelope_t *env);

#endif
