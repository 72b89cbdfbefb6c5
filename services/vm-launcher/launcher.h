// vm-launcher's domain object. This issue: the host's capacity, announced
// on the bus so k8s-watcher can report it in the Node. VMs come with the
// vm-launcher issue.
#ifndef VMLET_LAUNCHER_H
#define VMLET_LAUNCHER_H

#include "vmlet/service.h"

typedef struct {
    char *launcher_id;
    char *reserve_cpu;
    char *reserve_memory;
    long max_pods;
    int64_t announce_interval_ms;
} launcher_settings_t;

extern const vmlet_cfg_option_t launcher_options[];

void *launcher_start(vmlet_service_t *service, vmlet_err_t *err);
void launcher_stop(void **self_p);

#endif
