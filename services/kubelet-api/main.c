// vmlet-kubelet-api: the node's kubelet port, for kubectl logs, exec,
// attach and port-forward on VM pods (see kapi.h).
#include "kapi.h"

int main(int argc, char *argv[])
{
    kapi_settings_t settings = {0};
    const vmlet_service_def_t def = {
        .name = "kubelet-api",
        .summary = "serves the kubelet API (logs, exec, attach, port-forward) for VM pods",
        .default_http_listen = "127.0.0.1:9106",
        .options = kapi_options,
        .settings = &settings,
        .uses_redis = true,
        .start = kapi_start,
        .stop = kapi_stop,
    };
    return vmlet_service_main(&def, argc, argv);
}
