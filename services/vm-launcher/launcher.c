// vm-launcher: capacity announcements (see launcher.h).
#include "launcher.h"
#include "host.h"

#include "vmlet/quantity.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdlib.h>

#include <stdio.h>
#include <unistd.h>

#define OPT(field) offsetof(launcher_settings_t, field)
const vmlet_cfg_option_t launcher_options[] = {
    {"launcher-id", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(launcher_id),
     "this launcher's name in capacity announcements (default: the host name)"},
    {"reserve-cpu", VMLET_CFG_STRING, "500m", 0, 0, NULL, OPT(reserve_cpu),
     "CPU kept for the host and vmlet itself (a Kubernetes quantity)"},
    {"reserve-memory", VMLET_CFG_STRING, "1Gi", 0, 0, NULL, OPT(reserve_memory),
     "memory kept for the host and vmlet itself (a Kubernetes quantity)"},
    {"max-pods", VMLET_CFG_INT, "110", 1, 100000, NULL, OPT(max_pods),
     "pods (VMs) this launcher takes at most"},
    {"announce-interval", VMLET_CFG_DURATION, "5s", 100, 600000, NULL,
     OPT(announce_interval_ms), "how often the capacity is announced (valid for 3 intervals)"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct {
    vmlet_service_t *service;
    const launcher_settings_t *settings;
    char id[256];
    host_resources_t allocatable;
    int timer;
    int first_timer;
} launcher_t;

static void s_announce(launcher_t *self)
{
    Vmlet__LauncherCapacity cap = VMLET__LAUNCHER_CAPACITY__INIT;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    cap.launcher_id = self->id;
    cap.host = host;
    cap.has_cpu_millis = cap.has_memory_bytes = cap.has_pods = 1;
    cap.cpu_millis = self->allocatable.cpu_millis;
    cap.memory_bytes = self->allocatable.memory_bytes;
    cap.pods = (int32_t)self->settings->max_pods;
    cap.has_cpu_millis_used = cap.has_memory_bytes_used = cap.has_pods_used = 1; // no VMs yet
    cap.has_valid_until_unix_ms = 1;
    cap.valid_until_unix_ms = vmlet_unix_ms() + 3 * self->settings->announce_interval_ms;
    cap.version = VMLET_VERSION;
    vmlet_err_t err = {0};
    // Redis first: a k8s-watcher that starts later finds it there at once.
    size_t len = vmlet__launcher_capacity__get_packed_size(&cap);
    uint8_t *bytes = vmlet_xmalloc(len);
    vmlet__launcher_capacity__pack(&cap, bytes);
    char key[300];
    snprintf(key, sizeof key, "vmlet:launcher:%s", self->id);
    redisReply *r = vmlet_store_command(
        vmlet_service_store(self->service), &err,
        "EVAL %s 1 %s %b %s %lld", // the record expires with its validity; the index names it
        "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) "
        "redis.call('SADD', 'vmlet:launchers', ARGV[2]) return 1",
        key, bytes, len, self->id, (long long)(3 * self->settings->announce_interval_ms));
    if (!r)
        vmlet_log_warn(vmlet_service_log(self->service), NULL, "%s", err.msg);
    freeReplyObject(r);
    free(bytes);
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_LAUNCHER_CAPACITY;
    env.launcher_capacity = &cap;
    if (vmlet_bus_publish(vmlet_service_publisher(self->service), &env, &err) < 0)
        vmlet_log_warn(vmlet_service_log(self->service), NULL, "%s", err.msg);
}

static int s_on_announce(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    s_announce(arg);
    return 0;
}

// Announces once as soon as the broker hears us, so the node need not wait
// a whole interval to count this launcher; then this timer ends.
static int s_on_first_announce(zloop_t *loop, int timer_id, void *arg)
{
    launcher_t *self = arg;
    if (!vmlet_bus_publisher_ready(vmlet_service_publisher(self->service)))
        return 0;
    s_announce(self);
    zloop_timer_end(loop, timer_id);
    self->first_timer = 0;
    return 0;
}

static int s_allocatable(launcher_t *self, vmlet_err_t *err)
{
    host_resources_t total, reserve;
    if (host_read(&total, err) < 0)
        return -1;
    if (vmlet_quantity_milli(self->settings->reserve_cpu, &reserve.cpu_millis, err) < 0)
        return vmlet_err_wrap(err, "setting --reserve-cpu");
    if (vmlet_quantity_value(self->settings->reserve_memory, &reserve.memory_bytes, err) < 0)
        return vmlet_err_wrap(err, "setting --reserve-memory");
    self->allocatable = host_allocatable(&total, &reserve);
    char cpu[32], mem[32];
    vmlet_log_info(vmlet_service_log(self->service),
                   VMLET_KV({"cpu", vmlet_quantity_format_milli(self->allocatable.cpu_millis, cpu,
                                                                sizeof cpu)},
                            {"memory", vmlet_quantity_format_bytes(self->allocatable.memory_bytes,
                                                                   mem, sizeof mem)}),
                   "capacity for pods (host less reserve)");
    return 0;
}

void *launcher_start(vmlet_service_t *service, vmlet_err_t *err)
{
    launcher_t *self = vmlet_xcalloc(1, sizeof *self);
    self->service = service;
    self->settings = vmlet_service_def(service)->settings;
    if (self->settings->launcher_id[0])
        snprintf(self->id, sizeof self->id, "%s", self->settings->launcher_id);
    else
        gethostname(self->id, sizeof self->id - 1);
    if (s_allocatable(self, err) < 0) {
        free(self);
        return NULL;
    }
    self->timer = zloop_timer(vmlet_service_loop(service),
                              (size_t)self->settings->announce_interval_ms, 0, s_on_announce, self);
    self->first_timer =
        zloop_timer(vmlet_service_loop(service), 50, 0, s_on_first_announce, self);
    return self;
}

void launcher_stop(void **self_p)
{
    launcher_t *self = *self_p;
    if (!self)
        return;
    zloop_timer_end(vmlet_service_loop(self->service), self->timer);
    if (self->first_timer > 0)
        zloop_timer_end(vmlet_service_loop(self->service), self->first_timer);
    free(self);
    *self_p = NULL;
}
