// vmlet-prober: liveness, readiness and startup probes with the kubelet's
// semantics.
#include "vmlet/service.h"

static const vmlet_body_case_t subscriptions[] = {VMLET__ENVELOPE__BODY_POD_DESIRED,
                                                  VMLET__ENVELOPE__BODY_POD_DELETED,
                                                  VMLET__ENVELOPE__BODY_VM_EVENT};

int main(int argc, char *argv[])
{
    const vmlet_service_def_t def = {
        .name = "prober",
        .summary = "probes containers and asks for restarts when liveness fails",
        .default_http_listen = "127.0.0.1:9104",
        .uses_redis = true,
        .publishes = true,
        .submits_work = true,
        .subscribe = subscriptions,
        .n_subscribe = sizeof subscriptions / sizeof subscriptions[0],
    };
    return vmlet_service_main(&def, argc, argv);
}
