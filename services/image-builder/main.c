// vmlet-image-builder: pulls OCI images and builds one read-only root
// filesystem per image digest.
#include "vmlet/service.h"

static const vmlet_body_case_t subscriptions[] = {VMLET__ENVELOPE__BODY_POD_DESIRED};

int main(int argc, char *argv[])
{
    const vmlet_service_def_t def = {
        .name = "image-builder",
        .summary = "pulls images and builds their root filesystems",
        .default_http_listen = "127.0.0.1:9102",
        .uses_redis = true,
        .publishes = true,
        .subscribe = subscriptions,
        .n_subscribe = sizeof subscriptions / sizeof subscriptions[0],
        .work_queue = VMLET_QUEUE_IMAGE_BUILDER,
        .work_capacity = 4,
    };
    return vmlet_service_main(&def, argc, argv);
}
