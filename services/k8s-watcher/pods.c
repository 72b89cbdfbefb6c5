// Pods bound to the node into Redis and onto the bus (see pods.h).
#include "pods.h"
#include "image_requests.h"
#include "launch_requests.h"
#include "normalize.h"

#include "vmlet/kube_api.h"
#include "vmlet/pod_store.h"
#include "vmlet/xalloc.h"

#include <string.h>

typedef struct {
    char *uid;
    char *ns, *name;
    char hash[VMLET_POD_HASH_LEN]; // of the spec in Redis; "" when not stored
    cJSON *last;                   // the pod as last seen, for retries
    bool seen;                     // in the current relist
    bool retry;                    // normalise again later
    bool deleting;                 // PodDeleted sent for its deletionTimestamp
    bool images_pending;           // some image is not in the index yet
    Vmlet__PodSpec *spec;          // the spec last stored
} pod_entry_t;

struct _pods_t {
    vmlet_kube_t *kube;
    vmlet_store_t *store;
    vmlet_bus_publisher_t *publisher;
    vmlet_bus_client_t *client;
    vmlet_log_t *log;
    zhashx_t *pods;     // uid -> pod_entry_t
    zhashx_t *resolved; // "cm/ns/name" -> cJSON (the object), for one normalisation
    bool listing;
    vmlet_metric_t *desired, *deleted, *problems, *errors;
};

static void s_entry_free(void **item)
{
    pod_entry_t *e = *item;
    if (e) {
        free(e->uid);
        free(e->ns);
        free(e->name);
        cJSON_Delete(e->last);
        pod_spec_free(&e->spec);
        free(e);
        *item = NULL;
    }
}

static void s_json_free(void **item)
{
    cJSON_Delete(*item);
    *item = NULL;
}

pods_t *pods_new(vmlet_kube_t *kube, vmlet_store_t *store, vmlet_bus_publisher_t *publisher,
                 vmlet_bus_client_t *client, vmlet_metrics_t *metrics, vmlet_log_t *log)
{
    pods_t *self = vmlet_xcalloc(1, sizeof *self);
    self->kube = kube;
    self->store = store;
    self->publisher = publisher;
    self->client = client;
    self->log = log;
    self->pods = zhashx_new();
    self->resolved = zhashx_new();
    zhashx_set_destructor(self->pods, s_entry_free);
    zhashx_set_destructor(self->resolved, s_json_free);
    self->desired = vmlet_metrics_counter(metrics, "vmlet_k8s_watcher_pods_desired_total",
                                          "PodDesired events sent (new or changed specs).", NULL);
    self->deleted = vmlet_metrics_counter(metrics, "vmlet_k8s_watcher_pods_deleted_total",
                                          "PodDeleted events sent.", NULL);
    self->problems = vmlet_metrics_counter(
        metrics, "vmlet_k8s_watcher_pod_problems_total",
        "Pods normalised with a configuration problem (reason in their status).", NULL);
    self->errors = vmlet_metrics_counter(
        metrics, "vmlet_k8s_watcher_pod_errors_total",
        "Pods that could not be handled for now (API server or Redis away); retried.", NULL);
    return self;
}

void pods_destroy(pods_t **self_p)
{
    if (self_p && *self_p) {
        zhashx_destroy(&(*self_p)->pods);
        zhashx_destroy(&(*self_p)->resolved);
        free(*self_p);
        *self_p = NULL;
    }
}

size_t pods_count(const pods_t *self)
{
    return zhashx_size(self->pods);
}

// --- resolving ConfigMaps and Secrets -------------------------------------------

static resolve_result_t s_resolve(pods_t *self, const char *kind, const char *ns,
                                  const char *name, const cJSON **data, vmlet_err_t *err)
{
    char key[600];
    snprintf(key, sizeof key, "%s/%s/%s", kind, ns, name);
    cJSON *object = zhashx_lookup(self->resolved, key);
    if (!object) {
        char path[600];
        snprintf(path, sizeof path, "/api/v1/namespaces/%s/%s/%s", ns, kind, name);
        long status = 0;
        int rc = vmlet_kube_call(self->kube, "GET", path, NULL, NULL, &status, &object, err);
        if (rc == 1 && status == 404)
            object = cJSON_CreateObject(); // remembered as missing for this pass
        else if (rc != 0)
            return RESOLVE_ERROR;
        cJSON_AddBoolToObject(object, "vmletFound", rc == 0);
        zhashx_insert(self->resolved, key, object);
    }
    *data = cJSON_GetObjectItemCaseSensitive(object, "data");
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(object, "vmletFound")) ? RESOLVE_FOUND
                                                                               : RESOLVE_MISSING;
}

static resolve_result_t s_configmap(void *arg, const char *ns, const char *name,
                                    const cJSON **data, vmlet_err_t *err)
{
    return s_resolve(arg, "configmaps", ns, name, data, err);
}

// Secret values are looked at (does the key exist?) and forgotten at once:
// they never leave this process.
static resolve_result_t s_secret(void *arg, const char *ns, const char *name, const cJSON **data,
                                 vmlet_err_t *err)
{
    return s_resolve(arg, "secrets", ns, name, data, err);
}

// --- announcing -------------------------------------------------------------------

static void s_publish(pods_t *self, pod_entry_t *e, bool deleted, int64_t grace)
{
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = e->uid, ref.namespace_ = e->ns, ref.name = e->name;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    Vmlet__PodDesired desired = VMLET__POD_DESIRED__INIT;
    Vmlet__PodDeleted gone = VMLET__POD_DELETED__INIT;
    if (deleted) {
        gone.pod = &ref;
        gone.has_grace_period_seconds = 1;
        gone.grace_period_seconds = grace;
        env.body_case = VMLET__ENVELOPE__BODY_POD_DELETED;
        env.pod_deleted = &gone;
    } else {
        desired.pod = &ref;
        desired.spec_hash = e->hash;
        env.body_case = VMLET__ENVELOPE__BODY_POD_DESIRED;
        env.pod_desired = &desired;
    }
    vmlet_err_t err = {0};
    if (vmlet_bus_publish(self->publisher, &env, &err) < 0) // Redis has it; others reconcile
        vmlet_log_warn(self->log, VMLET_KV({"pod", e->uid}), "%s", err.msg);
    vmlet_counter_inc(deleted ? self->deleted : self->desired);
}

static pod_entry_t *s_entry(pods_t *self, const cJSON *meta)
{
    const char *uid = vmlet_json_str(meta, "uid", NULL);
    pod_entry_t *e = zhashx_lookup(self->pods, uid);
    if (!e) {
        e = vmlet_xcalloc(1, sizeof *e);
        e->uid = vmlet_xstrdup(uid);
        e->ns = vmlet_xstrdup(vmlet_json_str(meta, "namespace", NULL));
        e->name = vmlet_xstrdup(vmlet_json_str(meta, "name", NULL));
        zhashx_insert(self->pods, uid, e);
        vmlet_err_t err = {0};
        if (vmlet_pod_store_hash(self->store, uid, e->hash, &err) < 0) // known from before?
            e->hash[0] = '\0';
    }
    return e;
}

static void s_request_images(pods_t *self, pod_entry_t *e, bool new_spec);

// Normalises the entry's last pod and stores and announces it if changed.
static void s_sync(pods_t *self, pod_entry_t *e)
{
    pod_resolver_t resolver = {s_configmap, s_secret, self};
    bool transient = false;
    vmlet_err_t err = {0};
    Vmlet__PodSpec *spec = pod_normalize(e->last, &resolver, &transient, &err);
    zhashx_purge(self->resolved);
    e->retry = transient;
    if (!spec) {
        vmlet_counter_inc(self->errors);
        vmlet_log_warn(self->log, VMLET_KV({"pod", e->uid}), "%s", err.msg);
        return;
    }
    char hash[VMLET_POD_HASH_LEN];
    vmlet_pod_spec_hash(spec, hash);
    e->retry = pod_spec_retryable(spec);
    bool changed = strcmp(hash, e->hash) != 0;
    if (changed) {
        if (vmlet_pod_store_put(self->store, spec, hash, &err) < 0) {
            e->retry = true;
            vmlet_counter_inc(self->errors);
            vmlet_log_warn(self->log, VMLET_KV({"pod", e->uid}), "%s", err.msg);
        } else {
            memcpy(e->hash, hash, sizeof hash);
            const Vmlet__ConfigProblem *problem = pod_spec_problem(spec);
            if (problem) {
                vmlet_counter_inc(self->problems);
                vmlet_log_info(self->log, VMLET_KV({"pod", e->uid}, {"reason", problem->reason}),
                               "%s", problem->message);
            }
            s_publish(self, e, false, 0);
        }
    }
    if (!spec->has_deletion_unix_ms && launch_needed(self->store, e->uid))
        launch_request_send(self->client, spec, e->hash, self->log);
    if (spec->has_deletion_unix_ms && !e->deleting) {
        e->deleting = true;
        s_publish(self, e, true, spec->deletion_grace_period_seconds);
    }
    pod_spec_free(&e->spec);
    e->spec = spec;
    s_request_images(self, e, changed);
}

// Asks image-builder for what the pod's containers still lack.
static void s_request_images(pods_t *self, pod_entry_t *e, bool new_spec)
{
    if (!e->spec || e->deleting) {
        e->images_pending = false;
        return;
    }
    pod_resolver_t resolver = {s_configmap, s_secret, self};
    e->images_pending =
        !image_requests_send(self->client, self->store, e->spec, &resolver, new_spec, self->log);
    zhashx_purge(self->resolved);
}

static void s_upsert(pods_t *self, const cJSON *pod)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(pod, "metadata");
    if (!vmlet_json_str(meta, "uid", NULL)) {
        vmlet_log_warn(self->log, NULL, "ignored a watch object without metadata.uid");
        return;
    }
    pod_entry_t *e = s_entry(self, meta);
    e->seen = true;
    cJSON_Delete(e->last);
    e->last = cJSON_Duplicate(pod, true);
    s_sync(self, e);
}

static void s_remove(pods_t *self, const char *uid)
{
    pod_entry_t *e = zhashx_lookup(self->pods, uid);
    if (!e)
        return;
    vmlet_err_t err = {0};
    if (vmlet_pod_store_delete(self->store, uid, &err) < 0)
        vmlet_log_warn(self->log, VMLET_KV({"pod", uid}), "%s (the next relist repairs it)",
                       err.msg);
    s_publish(self, e, true, 0);
    zhashx_delete(self->pods, uid);
}

// After a relist: pods gone meanwhile leave, and Redis loses what
// Kubernetes no longer has.
static void s_after_list(pods_t *self)
{
    zlistx_t *uids = zhashx_keys(self->pods);
    for (const char *uid = zlistx_first(uids); uid; uid = zlistx_next(uids)) {
        pod_entry_t *e = zhashx_lookup(self->pods, uid);
        if (!e->seen)
            s_remove(self, uid);
    }
    zlistx_destroy(&uids);
    char **stored;
    size_t n;
    vmlet_err_t err = {0};
    if (vmlet_pod_store_uids(self->store, &stored, &n, &err) < 0) {
        vmlet_log_warn(self->log, NULL, "%s (the next relist repairs it)", err.msg);
        return;
    }
    zhashx_t *in_redis = zhashx_new();
    for (size_t i = 0; i < n; i++) {
        zhashx_insert(in_redis, stored[i], "");
        if (!zhashx_lookup(self->pods, stored[i])) {
            vmlet_log_info(self->log, VMLET_KV({"pod", stored[i]}),
                           "stored pod no longer in Kubernetes; removing it");
            vmlet_pod_store_delete(self->store, stored[i], &err);
        }
    }
    // And Redis gets back what it lost (it may have restarted without its data).
    for (pod_entry_t *e = zhashx_first(self->pods); e; e = zhashx_next(self->pods))
        if (!zhashx_lookup(in_redis, e->uid) && e->last) {
            vmlet_log_info(self->log, VMLET_KV({"pod", e->uid}), "pod missing in Redis; storing it");
            e->hash[0] = '\0';
            s_sync(self, e);
        }
    zhashx_destroy(&in_redis);
    vmlet_pod_store_free_uids(stored, n);
}

void pods_on_watch(void *arg, vmlet_watch_event_t event, const cJSON *pod)
{
    pods_t *self = arg;
    switch (event) {
    case VMLET_WATCH_LIST_BEGIN:
        for (pod_entry_t *e = zhashx_first(self->pods); e; e = zhashx_next(self->pods))
            e->seen = false;
        self->listing = true;
        break;
    case VMLET_WATCH_LIST_END:
        self->listing = false;
        s_after_list(self);
        break;
    case VMLET_WATCH_LISTED:
    case VMLET_WATCH_ADDED:
    case VMLET_WATCH_MODIFIED:
        s_upsert(self, pod);
        break;
    case VMLET_WATCH_DELETED: {
        const char *uid =
            vmlet_json_str(cJSON_GetObjectItemCaseSensitive(pod, "metadata"), "uid", NULL);
        if (uid)
            s_remove(self, uid);
        break;
    }
    }
}

void pods_retry(pods_t *self)
{
    for (pod_entry_t *e = zhashx_first(self->pods); e; e = zhashx_next(self->pods)) {
        if (e->retry && e->last)
            s_sync(self, e);
        else if (e->images_pending)
            s_request_images(self, e, false);
        if (e->spec && !e->deleting && !(e->retry && e->last) && launch_needed(self->store, e->uid))
            launch_request_send(self->client, e->spec, e->hash, self->log);
    }
}
