// vmlet-k8s-watcher: the Kubernetes side of the node (Node object, lease,
// pod list and watch) turned into normalised pod specs in Redis and events.
#include "watcher.h"

// Launchers announce their capacity; the Node's capacity is their sum.
static const vmlet_body_case_t subscriptions[] = {VMLET__ENVELOPE__BODY_LAUNCHER_CAPACITY};

static const vmlet_route_t routes[] = {
    {VMLET__ENVELOPE__BODY_LAUNCHER_CAPACITY, watcher_on_capacity},
    VMLET_ROUTES_END,
};

int main(int argc, char *argv[])
{
    watcher_settings_t settings = {0};
    const vmlet_service_def_t def = {
        .name = "k8s-watcher",
        .summary = "registers the virtual node and turns pods bound to it into work",
        .default_http_listen = "127.0.0.1:9101",
        .options = watcher_options,
        .settings = &settings,
        .uses_redis = true,
        .publishes = true,
        .submits_work = true, // image requests
        .subscribe = subscriptions,
        .n_subscribe = sizeof subscriptions / sizeof subscriptions[0],
        .routes = routes,
        .start = watcher_start,
        .stop = watcher_stop,
    };
    return vmlet_service_main(&def, argc, argv);
}
