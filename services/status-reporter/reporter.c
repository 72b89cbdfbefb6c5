// status-reporter: pods, their inputs, and when to reconcile (see reporter.h).
#include "records.h"
#include "reporter_internal.h"

#include "vmlet/kube_api.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>

#define OPT(field) offsetof(reporter_settings_t, field)
const vmlet_cfg_option_t reporter_options[] = {
    {"kubeconfig", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(kubeconfig),
     "kubeconfig to reach the API server; empty: the in-cluster service account"},
    {"node-name", VMLET_CFG_STRING, "vmlet", 0, 0, NULL, OPT(node_name),
     "the Node whose pods this reporter writes"},
    {"internal-ip", VMLET_CFG_STRING, "127.0.0.1", 0, 0, NULL, OPT(internal_ip),
     "the node's InternalIP, reported as each pod's hostIP"},
    {"coalesce", VMLET_CFG_DURATION, "100ms", 0, 60000, NULL, OPT(coalesce_ms),
     "how long changes to a pod are gathered into one status write"},
    {"resync-interval", VMLET_CFG_DURATION, "10s", 100, 3600000, NULL, OPT(resync_ms),
     "how often every pod's status is checked again"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static void s_pod_free(void **item)
{
    pod_t *pod = *item;
    if (!pod)
        return;
    free(pod->uid);
    cJSON_Delete(pod->live);
    cJSON_Delete(pod->computed);
    if (pod->spec)
        vmlet__pod_spec__free_unpacked(pod->spec, NULL);
    free(pod);
    *item = NULL;
}

pod_t *reporter_pod(reporter_t *self, const char *uid)
{
    return uid ? zhashx_lookup(self->pods, uid) : NULL;
}

// Reads the pod's spec from Redis if it is new or changed.
static void s_load_spec(reporter_t *self, pod_t *pod)
{
    char hash[VMLET_POD_HASH_LEN];
    vmlet_err_t err = {0};
    if (vmlet_pod_store_hash(self->store, pod->uid, hash, &err) != 1 ||
        (pod->spec && strcmp(hash, pod->spec_hash) == 0))
        return;
    Vmlet__PodSpec *spec = vmlet_pod_store_get(self->store, pod->uid, &err);
    if (!spec)
        return;
    if (pod->spec)
        vmlet__pod_spec__free_unpacked(pod->spec, NULL);
    pod->spec = spec;
    memcpy(pod->spec_hash, hash, sizeof hash);
}

static void s_mark_deleting(pod_t *pod, int64_t grace_s)
{
    if (!pod->deleting_since_ms) {
        pod->deleting_since_ms = vmlet_now_ms();
        pod->grace_s = grace_s;
    }
}

// --- the watch ---------------------------------------------------------------------

static void s_seen(reporter_t *self, const cJSON *object)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(object, "metadata");
    const char *uid = vmlet_json_str(meta, "uid", NULL);
    if (!uid)
        return;
    pod_t *pod = zhashx_lookup(self->pods, uid);
    if (!pod) {
        pod = vmlet_xcalloc(1, sizeof *pod);
        pod->uid = vmlet_xstrdup(uid);
        reconcile_init_backoff(pod);
        zhashx_insert(self->pods, uid, pod);
    }
    cJSON_Delete(pod->live);
    pod->live = cJSON_Duplicate(object, true);
    if (vmlet_json_str(meta, "deletionTimestamp", NULL)) {
        const cJSON *grace = cJSON_GetObjectItemCaseSensitive(meta, "deletionGracePeriodSeconds");
        s_mark_deleting(pod, cJSON_IsNumber(grace) ? (int64_t)grace->valuedouble : 0);
    }
    pod->dirty = true;
}

static void s_gone(reporter_t *self, const char *uid)
{
    vmlet_err_t err = {0};
    records_drop(self->store, uid, &err);
    events_forget(self->events, uid);
    zhashx_delete(self->pods, uid);
}

static void s_on_watch(void *arg, vmlet_watch_event_t event, const cJSON *object)
{
    reporter_t *self = arg;
    if (event == VMLET_WATCH_DELETED) {
        const char *uid =
            vmlet_json_str(cJSON_GetObjectItemCaseSensitive(object, "metadata"), "uid", NULL);
        if (uid)
            s_gone(self, uid);
    } else if (object) {
        s_seen(self, object);
    }
}

// The Node's Ready condition; a change makes every pod dirty.
static void s_on_node(void *arg, vmlet_watch_event_t event, const cJSON *node)
{
    reporter_t *self = arg;
    if (event == VMLET_WATCH_LIST_BEGIN || event == VMLET_WATCH_LIST_END)
        return;
    bool ready = false;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(
                              cJSON_GetObjectItemCaseSensitive(node, "status"), "conditions"))
    {
        const char *type = vmlet_json_str(c, "type", NULL), *st = vmlet_json_str(c, "status", NULL);
        if (type && st && strcmp(type, "Ready") == 0)
            ready = event != VMLET_WATCH_DELETED && strcmp(st, "True") == 0;
    }
    if (ready == self->node_ready)
        return;
    self->node_ready = ready;
    vmlet_log_info(self->log, VMLET_KV({"node", self->settings->node_name}), "node is %s",
                   ready ? "Ready: pods may be Ready" : "not Ready: no pod is Ready");
    for (pod_t *pod = zhashx_first(self->pods); pod; pod = zhashx_next(self->pods))
        pod->dirty = true;
}

// --- the bus -----------------------------------------------------------------------

static pod_t *s_dirty(reporter_t *self, const Vmlet__PodRef *ref)
{
    pod_t *pod = ref ? reporter_pod(self, ref->uid) : NULL;
    if (pod)
        pod->dirty = true;
    return pod;
}

int reporter_on_pod_desired(void *arg, const vmlet_envelope_t *env)
{
    s_dirty(arg, env->pod_desired->pod); // the spec is read when it is reconciled
    return 0;
}

int reporter_on_pod_deleted(void *arg, const vmlet_envelope_t *env)
{
    reporter_t *self = arg;
    pod_t *pod = s_dirty(self, env->pod_deleted->pod);
    if (!pod)
        return 0;
    s_mark_deleting(pod, env->pod_deleted->grace_period_seconds);
    for (size_t i = 0; pod->spec && !pod->killing_posted && i < pod->spec->n_containers; i++)
        events_post(self->events, pod->spec->pod, pod->spec->containers[i]->name, "Normal",
                    "Killing", "Stopping container %s", pod->spec->containers[i]->name);
    pod->killing_posted = pod->spec != NULL;
    return 0;
}

int reporter_on_vm_event(void *arg, const vmlet_envelope_t *env)
{
    reporter_t *self = arg;
    const Vmlet__VmEvent *vm = env->vm_event;
    if (!vm->pod || !vm->pod->uid)
        return -1;
    vmlet_err_t err = {0};
    if (records_put_vm(self->store, vm, &err) < 0) {
        vmlet_log_warn(self->log, VMLET_KV({"pod", vm->pod->uid}), "%s", err.msg);
        return -1;
    }
    s_dirty(self, vm->pod);
    return 0;
}

// The pods whose containers use `image`: the requester, or all that do.
static void s_each_pod_using(reporter_t *self, const char *image, const Vmlet__PodRef *requester,
                             void (*fn)(reporter_t *, pod_t *, const char *, const void *),
                             const void *arg)
{
    for (pod_t *pod = zhashx_first(self->pods); pod; pod = zhashx_next(self->pods)) {
        if (requester && requester->uid && strcmp(requester->uid, pod->uid) != 0)
            continue;
        s_load_spec(self, pod);
        for (size_t i = 0; pod->spec && i < pod->spec->n_init_containers + pod->spec->n_containers;
             i++) {
            const Vmlet__Container *c = i < pod->spec->n_init_containers
                                            ? pod->spec->init_containers[i]
                                            : pod->spec->containers[i - pod->spec->n_init_containers];
            if (c->image && strcmp(c->image, image) == 0) {
                fn(self, pod, c->name, arg);
                pod->dirty = true;
            }
        }
    }
}

static void s_image_ok(reporter_t *self, pod_t *pod, const char *container, const void *arg)
{
    const Vmlet__ImageReady *ready = arg;
    char field[600];
    snprintf(field, sizeof field, "image:%s", ready->image);
    vmlet_err_t err = {0};
    records_unset(self->store, pod->uid, field, &err);
    events_post(self->events, pod->spec->pod, container, "Normal", "Pulled",
                "Successfully pulled image \"%s\"", ready->image);
}

static void s_image_bad(reporter_t *self, pod_t *pod, const char *container, const void *arg)
{
    (void)container;
    const Vmlet__ImageFailed *failed = arg;
    char field[600], value[1200];
    snprintf(field, sizeof field, "image:%s", failed->image);
    snprintf(value, sizeof value, "%s\t%s", failed->reason ? failed->reason : "ErrImagePull",
             failed->message ? failed->message : "");
    vmlet_err_t err = {0};
    records_set(self->store, pod->uid, field, value, &err);
}

int reporter_on_image_ready(void *arg, const vmlet_envelope_t *env)
{
    if (!env->image_ready->image)
        return -1;
    s_each_pod_using(arg, env->image_ready->image, NULL, s_image_ok, env->image_ready);
    return 0;
}

int reporter_on_image_failed(void *arg, const vmlet_envelope_t *env)
{
    const Vmlet__ImageFailed *failed = env->image_failed;
    if (!failed->image)
        return -1;
    s_each_pod_using(arg, failed->image, failed->requested_by, s_image_bad, failed);
    return 0;
}

static const char *s_kind(Vmlet__ProbeKind kind)
{
    switch (kind) {
    case VMLET__PROBE_KIND__PROBE_KIND_LIVENESS: return "liveness";
    case VMLET__PROBE_KIND__PROBE_KIND_READINESS: return "readiness";
    case VMLET__PROBE_KIND__PROBE_KIND_STARTUP: return "startup";
    default: return NULL;
    }
}

int reporter_on_probe_result(void *arg, const vmlet_envelope_t *env)
{
    reporter_t *self = arg;
    const Vmlet__ProbeResult *r = env->probe_result;
    const char *kind = s_kind(r->kind);
    if (!r->pod || !r->pod->uid || !r->container || !kind)
        return -1;
    pod_t *pod = NULL;
    bool verdict = r->outcome == VMLET__PROBE_OUTCOME__PROBE_OUTCOME_SUCCESS ||
                   r->outcome == VMLET__PROBE_OUTCOME__PROBE_OUTCOME_FAILURE;
    if (verdict) { // UNKNOWN or none: nothing changes
        bool ok = r->outcome == VMLET__PROBE_OUTCOME__PROBE_OUTCOME_SUCCESS;
        char field[300];
        snprintf(field, sizeof field, "probe:%s:%s", r->container, kind);
        vmlet_err_t err = {0};
        if (records_set(self->store, r->pod->uid, field, ok ? "1" : "0", &err) < 0)
            return -1;
        pod = s_dirty(self, r->pod);
    } else {
        pod = zhashx_lookup(self->pods, r->pod->uid);
    }
    if (!pod || !pod->spec)
        return 0;
    char title[16];
    snprintf(title, sizeof title, "%c%s", kind[0] - 'a' + 'A', kind + 1);
    if (r->attempt == VMLET__PROBE_OUTCOME__PROBE_OUTCOME_FAILURE)
        events_post(self->events, pod->spec->pod, r->container, "Warning", "Unhealthy",
                    "%s probe failed: %s", title, r->output ? r->output : "");
    if (r->warning)
        events_post(self->events, pod->spec->pod, r->container, "Warning", "ProbeWarning",
                    "%s probe warning: %s", title, r->output ? r->output : "");
    if (r->restart)
        events_post(self->events, pod->spec->pod, r->container, "Normal", "Killing",
                    "Container %s failed %s probe, will be restarted", r->container, kind);
    return 0;
}

// A service's word that something happened to a pod (a hook failed): an
// Event, as the kubelet's recorder posts it.
int reporter_on_pod_event(void *arg, const vmlet_envelope_t *env)
{
    reporter_t *self = arg;
    const Vmlet__PodEvent *e = env->pod_event;
    if (!e->pod || !e->pod->uid || !e->pod->name || !e->pod->namespace_ || !e->reason)
        return -1;
    events_post(self->events, e->pod, e->container && *e->container ? e->container : NULL,
                e->type && strcmp(e->type, "Warning") == 0 ? "Warning" : "Normal", e->reason,
                "%s", e->message ? e->message : "");
    return 0;
}

// --- timers --------------------------------------------------------------------------

static const char *const s_phases[5] = {"Pending", "Running", "Succeeded", "Failed", "Unknown"};

// Pods by the phase the API server has for them now: what `kubectl get
// pods` would show, counted where the live objects already are.
static void s_count_phases(reporter_t *self)
{
    double n[5] = {0};
    for (pod_t *pod = zhashx_first(self->pods); pod; pod = zhashx_next(self->pods)) {
        const char *phase = vmlet_json_str(pod->live, "status", "phase");
        size_t i = 0; // a pod without a status yet is Pending
        while (phase && i < 5 && strcmp(phase, s_phases[i]) != 0)
            i++;
        n[i < 5 ? i : 4]++;
    }
    for (size_t i = 0; i < 5; i++)
        vmlet_gauge_set(self->phases[i], n[i]);
}

static int s_on_flush(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    reporter_t *self = arg;
    int64_t now = vmlet_now_ms();
    for (pod_t *pod = zhashx_first(self->pods); pod; pod = zhashx_next(self->pods)) {
        if (!pod->dirty || !vmlet_backoff_may_try(&pod->backoff, now))
            continue;
        pod->dirty = false;
        s_load_spec(self, pod);
        reconcile_pod(self, pod);
    }
    s_count_phases(self);
    return 0;
}

static int s_on_resync(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    reporter_t *self = arg;
    for (pod_t *pod = zhashx_first(self->pods); pod; pod = zhashx_next(self->pods))
        pod->dirty = true;
    return 0;
}

// --- life ------------------------------------------------------------------------------

static void s_metrics(reporter_t *self)
{
    vmlet_metrics_t *m = vmlet_service_metrics(self->service);
    self->writes = vmlet_metrics_counter(m, "vmlet_status_reporter_status_writes_total",
                                         "Pod status patches written.", NULL);
    self->write_failures = vmlet_metrics_counter(
        m, "vmlet_status_reporter_status_write_failures_total", "Pod status patches refused.",
        NULL);
    self->skipped = vmlet_metrics_counter(
        m, "vmlet_status_reporter_status_unchanged_total",
        "Reconciliations that found the live status already right (no write).", NULL);
    self->deletes = vmlet_metrics_counter(m, "vmlet_status_reporter_pods_deleted_total",
                                          "Pods deleted for good once their VM was gone.", NULL);
    for (size_t i = 0; i < 5; i++) {
        char labels[40];
        snprintf(labels, sizeof labels, "phase=\"%s\"", s_phases[i]);
        self->phases[i] = vmlet_metrics_gauge(
            m, "vmlet_status_reporter_pods", "Pods bound to the node, by status.phase.", labels);
    }
}

void *reporter_start(vmlet_service_t *service, vmlet_err_t *err)
{
    reporter_t *self = vmlet_xcalloc(1, sizeof *self);
    self->service = service;
    self->settings = vmlet_service_def(service)->settings;
    self->log = vmlet_service_log(service);
    self->loop = vmlet_service_loop(service);
    self->store = vmlet_service_store(service);
    self->pods = zhashx_new();
    zhashx_set_destructor(self->pods, s_pod_free);
    s_metrics(self);
    char selector[300], node_selector[300];
    snprintf(selector, sizeof selector, "spec.nodeName=%s", self->settings->node_name);
    snprintf(node_selector, sizeof node_selector, "metadata.name=%s", self->settings->node_name);
    if (vmlet_kube_config_load(self->settings->kubeconfig, &self->kube_config, err) < 0 ||
        !(self->kube = vmlet_kube_new(&self->kube_config, err)) ||
        (vmlet_kube_set_metrics(self->kube, vmlet_service_metrics(service)), false) ||
        !(self->watch = vmlet_kube_watch_new(&self->kube_config, "/api/v1/pods", selector, NULL,
                                             s_on_watch, self, self->log,
                                             vmlet_service_metrics(service), err)) ||
        vmlet_kube_watch_attach(self->watch, self->loop, err) < 0 ||
        !(self->node_watch = vmlet_kube_watch_new(&self->kube_config, "/api/v1/nodes",
                                                  node_selector, NULL, s_on_node, self, self->log,
                                                  vmlet_service_metrics(service), err)) ||
        vmlet_kube_watch_attach(self->node_watch, self->loop, err) < 0) {
        reporter_stop((void **)&self);
        return NULL;
    }
    self->events = events_new(self->kube, self->settings->node_name,
                              vmlet_service_metrics(service), self->log);
    size_t coalesce = self->settings->coalesce_ms > 0 ? (size_t)self->settings->coalesce_ms : 1;
    self->timers[0] = zloop_timer(self->loop, coalesce, 0, s_on_flush, self);
    self->timers[1] = zloop_timer(self->loop, (size_t)self->settings->resync_ms, 0, s_on_resync, self);
    return self;
}

void reporter_stop(void **self_p)
{
    reporter_t *self = *self_p;
    if (!self)
        return;
    for (int i = 0; i < 2; i++)
        if (self->timers[i] > 0)
            zloop_timer_end(self->loop, self->timers[i]);
    vmlet_kube_watch_destroy(&self->watch);
    vmlet_kube_watch_destroy(&self->node_watch);
    events_destroy(&self->events);
    zhashx_destroy(&self->pods);
    vmlet_kube_destroy(&self->kube);
    vmlet_kube_config_clear(&self->kube_config);
    free(self);
    *self_p = NULL;
}
