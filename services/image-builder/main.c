// vmlet-image-builder: pulls OCI images and builds one read-only root
// filesystem per image digest.
#include "builder.h"

static const vmlet_route_t routes[] = {
    {VMLET__ENVELOPE__BODY_IMAGE_REQUEST, builder_on_request},
    VMLET_ROUTES_END,
};

int main(int argc, char *argv[])
{
    builder_settings_t settings = {0};
    const vmlet_service_def_t def = {
        .name = "image-builder",
        .summary = "pulls images and builds their root filesystems",
        .default_http_listen = "127.0.0.1:9102",
        .options = builder_options,
        .settings = &settings,
        .uses_redis = true,
        .publishes = true,
        .work_queue = VMLET_QUEUE_IMAGE_BUILDER,
        .work_capacity = 16, // requests; pulls run on threads and share blob fetches
        .routes = routes,
        .start = builder_start,
        .stop = builder_stop,
    };
    return vmlet_service_main(&def, argc, argv);
}
