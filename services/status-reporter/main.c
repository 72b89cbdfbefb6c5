// vmlet-status-reporter: makes every pod's status in Kubernetes tell the
// truth, from all the other services' events and Redis.
#include "reporter.h"

static const vmlet_body_case_t subscriptions[] = {
    VMLET__ENVELOPE__BODY_POD_DESIRED,  VMLET__ENVELOPE__BODY_POD_DELETED,
    VMLET__ENVELOPE__BODY_IMAGE_READY,  VMLET__ENVELOPE__BODY_IMAGE_FAILED,
    VMLET__ENVELOPE__BODY_VM_EVENT,     VMLET__ENVELOPE__BODY_PROBE_RESULT,
    VMLET__ENVELOPE__BODY_POD_EVENT};

static const vmlet_route_t routes[] = {
    {VMLET__ENVELOPE__BODY_POD_DESIRED, reporter_on_pod_desired},
    {VMLET__ENVELOPE__BODY_POD_DELETED, reporter_on_pod_deleted},
    {VMLET__ENVELOPE__BODY_IMAGE_READY, reporter_on_image_ready},
    {VMLET__ENVELOPE__BODY_IMAGE_FAILED, reporter_on_image_failed},
    {VMLET__ENVELOPE__BODY_VM_EVENT, reporter_on_vm_event},
    {VMLET__ENVELOPE__BODY_PROBE_RESULT, reporter_on_probe_result},
    {VMLET__ENVELOPE__BODY_POD_EVENT, reporter_on_pod_event},
    VMLET_ROUTES_END,
};

int main(int argc, char *argv[])
{
    reporter_settings_t settings = {0};
    const vmlet_service_def_t def = {
        .name = "status-reporter",
        .summary = "writes pod status and events to the Kubernetes API",
        .default_http_listen = "127.0.0.1:9105",
        .options = reporter_options,
        .settings = &settings,
        .uses_redis = true,
        .subscribe = subscriptions,
        .n_subscribe = sizeof subscriptions / sizeof subscriptions[0],
        .routes = routes,
        .start = reporter_start,
        .stop = reporter_stop,
    };
    return vmlet_service_main(&def, argc, argv);
}
