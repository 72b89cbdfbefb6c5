// k8s-watcher: the Node, its Lease, capacity and pods (see watcher.h).
#include "watcher.h"
#include "capacity.h"
#include "node.h"
#include "pods.h"

#include "vmlet/backoff.h"
#include "vmlet/kube_watch.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#define OPT(field) offsetof(watcher_settings_t, field)
const vmlet_cfg_option_t watcher_options[] = {
    {"kubeconfig", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(kubeconfig),
     "kubeconfig to reach the API server; empty: the in-cluster service account"},
    {"node-name", VMLET_CFG_STRING, "vmlet", 0, 0, NULL, OPT(node_name), "the Node's name"},
    {"internal-ip", VMLET_CFG_STRING, "127.0.0.1", 0, 0, NULL, OPT(internal_ip),
     "the node's InternalIP: where the API server reaches the kubelet API"},
    {"kubelet-port", VMLET_CFG_INT, "10250", 1, 65535, NULL, OPT(kubelet_port),
     "the kubelet API's port, published in the Node"},
    {"node-taint", VMLET_CFG_STRING, "virtual-kubelet.io/provider=vmlet:NoSchedule", 0, 0, NULL,
     OPT(node_taint), "taint key=value:Effect put on the Node; empty for none"},
    {"node-labels", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(node_labels),
     "extra labels k=v,k2=v2 for the Node"},
    {"kubelet-version", VMLET_CFG_STRING, "v1.20.2-vmlet-" VMLET_VERSION, 0, 0, NULL,
     OPT(kubelet_version), "the kubelet version the Node reports"},
    {"lease-duration", VMLET_CFG_DURATION, "40s", 1000, 3600000, NULL, OPT(lease_duration_ms),
     "the node Lease's duration"},
    {"lease-renew-interval", VMLET_CFG_DURATION, "10s", 100, 3600000, NULL, OPT(lease_renew_ms),
     "how often the Lease is renewed"},
    {"status-interval", VMLET_CFG_DURATION, "1m", 1000, 3600000, NULL, OPT(status_interval_ms),
     "the Node status is patched when it changes and at least this often"},
    {"resync-interval", VMLET_CFG_DURATION, "5m", 1000, 86400000, NULL, OPT(resync_interval_ms),
     "how often pods are listed again and compared with Redis"},
    {"retry-interval", VMLET_CFG_DURATION, "5s", 100, 3600000, NULL, OPT(retry_interval_ms),
     "how often pods waiting for a ConfigMap or Secret key are looked at again"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static const vmlet_backoff_policy_t register_policy = {500, 30000, 2, 0.3};

struct _watcher_t {
    vmlet_service_t *service;
    const watcher_settings_t *settings;
    vmlet_log_t *log;
    zloop_t *loop;
    vmlet_kube_config_t kube_config;
    vmlet_kube_t *kube;
    node_identity_t identity;
    char os_image[256], kernel[256], machine_id[64], boot_id[64];
    char node_uid[64]; // empty while unregistered
    node_conditions_t conditions;
    capacity_t *capacity;
    capacity_sum_t last_sum;
    int64_t last_status_ms;
    vmlet_backoff_t register_backoff;
    pods_t *pods;
    vmlet_kube_watch_t *watch;
    int timers[4];
    vmlet_metric_t *ready_gauge, *launchers_gauge, *lease_failures, *status_failures;
};

// --- who the node is ----------------------------------------------------------

static void s_read_line(const char *path, const char *prefix, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    char line[512];
    size_t n = prefix ? strlen(prefix) : 0;
    while (f && fgets(line, sizeof line, f)) {
        if (prefix && strncmp(line, prefix, n) != 0)
            continue;
        char *value = line + n;
        value[strcspn(value, "\n")] = '\0';
        if (*value == '"') {
            value++;
            value[strcspn(value, "\"")] = '\0';
        }
        snprintf(out, cap, "%s", value);
        break;
    }
    if (f)
        fclose(f);
}

static void s_identity(watcher_t *self)
{
    const watcher_settings_t *s = self->settings;
    struct utsname u;
    uname(&u);
    snprintf(self->kernel, sizeof self->kernel, "%s", u.release);
    snprintf(self->os_image, sizeof self->os_image, "Linux");
    s_read_line("/etc/os-release", "PRETTY_NAME=", self->os_image, sizeof self->os_image);
    s_read_line("/etc/machine-id", NULL, self->machine_id, sizeof self->machine_id);
    s_read_line("/proc/sys/kernel/random/boot_id", NULL, self->boot_id, sizeof self->boot_id);
    self->identity = (node_identity_t){
        .name = s->node_name,
        .internal_ip = s->internal_ip,
        .kubelet_port = (int)s->kubelet_port,
        .kubelet_version = s->kubelet_version,
        .runtime_version = "vmlet://" VMLET_VERSION,
        .os_image = self->os_image,
        .kernel_version = self->kernel,
        .architecture = strcmp(u.machine, "aarch64") == 0 ? "arm64" : "amd64",
        .machine_id = self->machine_id,
        .boot_id = self->boot_id,
        .taint = s->node_taint,
        .extra_labels = s->node_labels,
    };
}

// --- the node -------------------------------------------------------------------

static int s_on_lease_tick(zloop_t *loop, int timer_id, void *arg);

static void s_register(watcher_t *self, const capacity_sum_t *sum)
{
    if (!vmlet_backoff_may_try(&self->register_backoff, vmlet_now_ms()))
        return;
    vmlet_err_t err = {0};
    if (node_register(self->kube, &self->identity, sum, &self->conditions, self->node_uid,
                      sizeof self->node_uid, &err) < 0) {
        self->node_uid[0] = '\0';
        int64_t delay = vmlet_backoff_failed(&self->register_backoff, vmlet_now_ms(),
                                             vmlet_random01());
        vmlet_log_warn(self->log, VMLET_KV({"node", self->identity.name}),
                       "%s; retrying in %lld ms", err.msg, (long long)delay);
        return;
    }
    vmlet_backoff_succeeded(&self->register_backoff);
    self->last_status_ms = vmlet_now_ms();
    vmlet_log_info(self->log, VMLET_KV({"node", self->identity.name}, {"uid", self->node_uid}),
                   "node registered");
    s_on_lease_tick(self->loop, 0, self); // the heartbeat starts now, not a period later
}

static bool s_sum_changed(const capacity_sum_t *a, const capacity_sum_t *b)
{
    return a->cpu_millis != b->cpu_millis || a->memory_bytes != b->memory_bytes ||
           a->pods != b->pods || a->launchers != b->launchers;
}

// Reads the launchers' announcements kept in Redis (a watcher that just
// started has heard none on the bus yet).
static void s_load_launchers(watcher_t *self)
{
    vmlet_store_t *store = vmlet_service_store(self->service);
    vmlet_err_t err = {0};
    redisReply *ids = vmlet_store_command(store, &err, "SMEMBERS vmlet:launchers");
    for (size_t i = 0; ids && i < ids->elements; i++) {
        const char *id = ids->element[i]->str;
        redisReply *r = vmlet_store_command(store, &err, "GET vmlet:launcher:%s", id);
        Vmlet__LauncherCapacity *cap =
            r && r->type == REDIS_REPLY_STRING
                ? vmlet__launcher_capacity__unpack(NULL, r->len, (const uint8_t *)r->str)
                : NULL;
        if (cap) {
            capacity_update(self->capacity, cap, vmlet_unix_ms());
            vmlet__launcher_capacity__free_unpacked(cap, NULL);
        } else if (r && r->type == REDIS_REPLY_NIL) { // expired: gone for good
            freeReplyObject(vmlet_store_command(store, &err, "SREM vmlet:launchers %s", id));
        }
        freeReplyObject(r);
    }
    freeReplyObject(ids);
}

// Once a second: capacity and conditions; the Node patched when they
// changed, or when the status interval has passed.
static int s_on_node_tick(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    watcher_t *self = arg;
    capacity_sum_t sum = capacity_sum(self->capacity, vmlet_unix_ms());
    if (sum.launchers == 0) { // none heard: perhaps we only just started
        s_load_launchers(self);
        sum = capacity_sum(self->capacity, vmlet_unix_ms());
    }
    vmlet_gauge_set(self->launchers_gauge, (double)sum.launchers);
    bool changed = node_conditions_update(&self->conditions, sum.launchers, vmlet_unix_ms() / 1000);
    changed |= s_sum_changed(&sum, &self->last_sum);
    vmlet_gauge_set(self->ready_gauge, sum.launchers > 0);
    if (!self->node_uid[0]) {
        s_register(self, &sum);
        self->last_sum = sum;
        return 0;
    }
    if (!changed && vmlet_now_ms() - self->last_status_ms < self->settings->status_interval_ms)
        return 0;
    vmlet_err_t err = {0};
    int rc = node_patch_status(self->kube, &self->identity, &sum, &self->conditions, &err);
    if (rc == 1) {
        vmlet_log_warn(self->log, VMLET_KV({"node", self->identity.name}),
                       "the Node was deleted; registering it again");
        self->node_uid[0] = '\0';
    } else if (rc < 0) {
        vmlet_counter_inc(self->status_failures);
        vmlet_log_warn(self->log, VMLET_KV({"node", self->identity.name}), "%s", err.msg);
        return 0; // tried again next tick
    }
    self->last_sum = sum;
    self->last_status_ms = vmlet_now_ms();
    return 0;
}

static int s_on_lease_tick(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    watcher_t *self = arg;
    if (!self->node_uid[0])
        return 0;
    vmlet_err_t err = {0};
    if (node_lease_renew(self->kube, self->identity.name, self->node_uid,
                         (int)(self->settings->lease_duration_ms / 1000), &err) < 0) {
        vmlet_counter_inc(self->lease_failures);
        vmlet_log_warn(self->log, VMLET_KV({"node", self->identity.name}), "%s", err.msg);
    }
    return 0;
}

static int s_on_resync(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    vmlet_kube_watch_relist(((watcher_t *)arg)->watch);
    return 0;
}

static int s_on_retry(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    pods_retry(((watcher_t *)arg)->pods);
    return 0;
}

int watcher_on_capacity(void *arg, const vmlet_envelope_t *env)
{
    watcher_t *self = arg;
    return capacity_update(self->capacity, env->launcher_capacity, vmlet_unix_ms()) ? 0 : -1;
}

// --- life -----------------------------------------------------------------------

static int s_start_pods(watcher_t *self, vmlet_err_t *err)
{
    self->pods = pods_new(self->kube, vmlet_service_store(self->service),
                          vmlet_service_publisher(self->service),
                          vmlet_service_client(self->service),
                          vmlet_service_metrics(self->service), self->log);
    char selector[300];
    snprintf(selector, sizeof selector, "spec.nodeName=%s", self->identity.name);
    self->watch = vmlet_kube_watch_new(&self->kube_config, "/api/v1/pods", selector, NULL,
                                       pods_on_watch, self->pods, self->log,
                                       vmlet_service_metrics(self->service), err);
    if (!self->watch || vmlet_kube_watch_attach(self->watch, self->loop, err) < 0)
        return -1;
    return 0;
}

static int s_start_timers(watcher_t *self)
{
    const watcher_settings_t *s = self->settings;
    self->timers[0] = zloop_timer(self->loop, 1000, 0, s_on_node_tick, self);
    self->timers[1] = zloop_timer(self->loop, (size_t)s->lease_renew_ms, 0, s_on_lease_tick, self);
    self->timers[2] = zloop_timer(self->loop, (size_t)s->resync_interval_ms, 0, s_on_resync, self);
    self->timers[3] = zloop_timer(self->loop, (size_t)s->retry_interval_ms, 0, s_on_retry, self);
    for (int i = 0; i < 4; i++)
        if (self->timers[i] < 0)
            return -1;
    return 0;
}

static void s_metrics(watcher_t *self)
{
    vmlet_metrics_t *m = vmlet_service_metrics(self->service);
    self->ready_gauge = vmlet_metrics_gauge(m, "vmlet_k8s_watcher_node_ready",
                                            "1 while the node reports Ready.", NULL);
    self->launchers_gauge = vmlet_metrics_gauge(m, "vmlet_k8s_watcher_launchers",
                                                "vm-launchers whose capacity is counted.", NULL);
    self->lease_failures = vmlet_metrics_counter(m, "vmlet_k8s_watcher_lease_failures_total",
                                                 "Failed renewals of the node Lease.", NULL);
    self->status_failures = vmlet_metrics_counter(
        m, "vmlet_k8s_watcher_status_failures_total", "Failed patches of the Node status.", NULL);
}

void *watcher_start(vmlet_service_t *service, vmlet_err_t *err)
{
    watcher_t *self = vmlet_xcalloc(1, sizeof *self);
    self->service = service;
    self->settings = vmlet_service_def(service)->settings;
    self->log = vmlet_service_log(service);
    self->loop = vmlet_service_loop(service);
    s_identity(self);
    char why[300];
    const char *bad = node_identity_check(&self->identity, why, sizeof why);
    if (bad) {
        vmlet_err_set(err, "%s", bad);
        watcher_stop((void **)&self);
        return NULL;
    }
    vmlet_backoff_init(&self->register_backoff, &register_policy);
    self->capacity = capacity_new();
    s_metrics(self);
    if (vmlet_kube_config_load(self->settings->kubeconfig, &self->kube_config, err) < 0 ||
        !(self->kube = vmlet_kube_new(&self->kube_config, err)) ||
        (vmlet_kube_set_metrics(self->kube, vmlet_service_metrics(self->service)), false) ||
        s_start_pods(self, err) < 0 ||
        s_start_timers(self) < 0) {
        watcher_stop((void **)&self);
        return NULL;
    }
    vmlet_log_info(self->log,
                   VMLET_KV({"node", self->identity.name}, {"server", self->kube_config.server}),
                   "watching pods bound to the node");
    return self;
}

void watcher_stop(void **self_p)
{
    watcher_t *self = *self_p;
    if (!self)
        return;
    for (int i = 0; i < 4; i++)
        if (self->timers[i] > 0)
            zloop_timer_end(self->loop, self->timers[i]);
    vmlet_kube_watch_destroy(&self->watch);
    pods_destroy(&self->pods);
    vmlet_kube_destroy(&self->kube);
    vmlet_kube_config_clear(&self->kube_config);
    capacity_destroy(&self->capacity);
    free(self);
    *self_p = NULL;
}
