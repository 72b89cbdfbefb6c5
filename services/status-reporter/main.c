// vmlet-status-reporter: makes every pod's status in Kubernetes tell the
// truth, from all the other services' events and Redis.
#include "vmlet/service.h"

static const vmlet_body_case_t subscriptions[] = {
    VMLET__ENVELOPE__BODY_POD_DESIRED,  VMLET__ENVELOPE__BODY_POD_DELETED,
    VMLET__ENVELOPE__BODY_IMAGE_READY,  VMLET__ENVELOPE__BODY_IMAGE_FAILED,
    VMLET__ENVELOPE__BODY_VM_EVENT,     VMLET__ENVELOPE__BODY_PROBE_RESULT};

int main(int argc, char *argv[])
{
    const vmlet_service_def_t def = {
        .name = "status-reporter",
        .summary = "writes pod status and events to the Kubernetes API",
        .default_http_listen = "127.0.0.1:9105",
        .uses_redis = true,
        .subscribe = subscriptions,
        .n_subscribe = sizeof subscriptions / sizeof subscriptions[0],
    };
    return vmlet_service_main(&def, argc, argv);
}
