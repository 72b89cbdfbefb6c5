// vmlet-prober: liveness, readiness and startup probes with the kubelet's
// semantics, the node's pods shared between instances by Redis leases.
#include "prober.h"

static const vmlet_body_case_t subscriptions[] = {
    VMLET__ENVELOPE__BODY_POD_DESIRED, VMLET__ENVELOPE__BODY_POD_DELETED,
    VMLET__ENVELOPE__BODY_VM_EVENT, VMLET__ENVELOPE__BODY_EXEC_RESULT};

static const vmlet_route_t routes[] = {
    {VMLET__ENVELOPE__BODY_POD_DESIRED, prober_on_pod_desired},
    {VMLET__ENVELOPE__BODY_POD_DELETED, prober_on_pod_deleted},
    {VMLET__ENVELOPE__BODY_VM_EVENT, prober_on_vm_event},
    {VMLET__ENVELOPE__BODY_EXEC_RESULT, prober_on_exec_result},
    VMLET_ROUTES_END,
};

int main(int argc, char *argv[])
{
    prober_settings_t settings = {0};
    const vmlet_service_def_t def = {
        .name = "prober",
        .summary = "probes containers and asks for restarts when liveness fails",
        .default_http_listen = "127.0.0.1:9104",
        .options = prober_options,
        .settings = &settings,
        .uses_redis = true,
        .publishes = true,
        .submits_work = true,
        .subscribe = subscriptions,
        .n_subscribe = sizeof subscriptions / sizeof subscriptions[0],
        .routes = routes,
        .start = prober_start,
        .stop = prober_stop,
    };
    return vmlet_service_main(&def, argc, argv);
}
