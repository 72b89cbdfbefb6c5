// vmlet-vm-launcher: boots each pod as its own micro-VM and reports what
// its containers do.
#include "launcher.h"

static const vmlet_body_case_t subscriptions[] = {
    VMLET__ENVELOPE__BODY_POD_DESIRED, VMLET__ENVELOPE__BODY_POD_DELETED,
    VMLET__ENVELOPE__BODY_IMAGE_READY, VMLET__ENVELOPE__BODY_EXEC_REQUEST};

static const vmlet_route_t routes[] = {
    {VMLET__ENVELOPE__BODY_LAUNCH_REQUEST, launcher_on_launch},
    {VMLET__ENVELOPE__BODY_STOP_REQUEST, launcher_on_stop},
    {VMLET__ENVELOPE__BODY_RESTART_REQUEST, launcher_on_restart},
    {VMLET__ENVELOPE__BODY_POD_DESIRED, launcher_on_pod_desired},
    {VMLET__ENVELOPE__BODY_POD_DELETED, launcher_on_pod_deleted},
    {VMLET__ENVELOPE__BODY_IMAGE_READY, launcher_on_image},
    {VMLET__ENVELOPE__BODY_EXEC_REQUEST, launcher_on_exec},
    VMLET_ROUTES_END,
};

int main(int argc, char *argv[])
{
    launcher_settings_t settings = {0};
    const vmlet_service_def_t def = {
        .name = "vm-launcher",
        .summary = "runs every pod as its own micro-VM",
        .default_http_listen = "127.0.0.1:9103",
        .uses_redis = true,
        .publishes = true,
        .subscribe = subscriptions,
        .n_subscribe = sizeof subscriptions / sizeof subscriptions[0],
        .work_queue = VMLET_QUEUE_VM_LAUNCHER,
        .work_capacity = 8,
        .routes = routes,
        .options = launcher_options,
        .settings = &settings,
        .start = launcher_start,
        .stop = launcher_stop,
    };
    return vmlet_service_main(&def, argc, argv);
}
