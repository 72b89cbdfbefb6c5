// `vmletctl gc`: an operator's request (vmlet:image-gc-request in Redis)
// to remove now every image no pod uses, whatever the disk budget; the
// answer goes to vmlet:image-gc-result for vmletctl to print. GETDEL takes
// the request, so of several builders exactly one serves it.
#include "builder_internal.h"

#include "vmlet/timeutil.h"

static long long s_count(vmlet_store_t *store)
{
    redisReply *r = vmlet_store_command(store, NULL, "SCARD vmlet:images");
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return n;
}

void gc_request_serve(vmlet_store_t *store, const char *cache_dir, const char *builder,
                      vmlet_log_t *log, vmlet_metric_t *freed_total)
{
    redisReply *req = vmlet_store_command(store, NULL, "GETDEL vmlet:image-gc-request");
    if (!req || req->type != REDIS_REPLY_STRING) {
        freeReplyObject(req);
        return;
    }
    vmlet_err_t err = {0};
    long long before = s_count(store);
    int64_t freed = gc_run(store, cache_dir, 0, log, &err); // budget 0: all that is unused
    if (freed < 0)
        vmlet_log_warn(log, NULL, "cache clean-up asked by vmletctl: %s", err.msg);
    vmlet_counter_add(freed_total, freed > 0 ? (double)freed : 0);
    long long removed = before - s_count(store);
    vmlet_log_info(log, VMLET_KV({"request", req->str}),
                   "clean-up asked by vmletctl: %lld images, %lld bytes", removed,
                   (long long)(freed > 0 ? freed : 0));
    freeReplyObject(vmlet_store_command(
        store, NULL,
        "HSET vmlet:image-gc-result request %s builder %s freed_bytes %lld images_removed %lld "
        "error %s finished_unix_ms %lld",
        req->str, builder, (long long)(freed > 0 ? freed : 0), removed, freed < 0 ? err.msg : "",
        (long long)vmlet_unix_ms()));
    freeReplyObject(req);
}
