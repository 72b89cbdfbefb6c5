// Draining at run time (`vmletctl drain`): while vmlet:launcher-drain:<id>
// exists in Redis, or --accept-pods=false, this launcher takes no new pods;
// the VMs it holds run on. k8s-watcher keeps asking for an unheld pod, so
// another launcher (or this one, once undrained) takes it.
#include "launcher_internal.h"

bool launcher_drained(launcher_t *l)
{
    bool drained = !l->settings->accept_pods;
    if (!drained) {
        // Redis unreachable: as configured (no pod can be recorded then anyway).
        redisReply *r =
            vmlet_store_command(l->store, NULL, "EXISTS vmlet:launcher-drain:%s", l->id);
        drained = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
    }
    vmlet_gauge_set(vmlet_metrics_gauge(vmlet_service_metrics(l->service),
                                        "vmlet_launcher_draining",
                                        "1 while this launcher takes no new pods (drained).", NULL),
                    drained ? 1 : 0);
    return drained;
}

bool launcher_drain_declines(launcher_t *l, const char *uid)
{
    if (zhashx_lookup(l->pods, uid) || !launcher_drained(l))
        return false; // a pod of ours is never refused: it is running here
    vmlet_counter_inc(vmlet_metrics_counter(vmlet_service_metrics(l->service),
                                            "vmlet_launcher_launches_declined_total",
                                            "LaunchRequests not taken because drained.", NULL));
    return true;
}
