// Pod events with counts for repeats (see events.h).
#include "events.h"

#include "vmlet/kube_api.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <czmq.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *name; // the Event object's name
    char *ns;
    int count;
} posted_t;

struct _events_t {
    vmlet_kube_t *kube;
    char *node;
    vmlet_log_t *log;
    zhashx_t *posted; // "<uid>\n<container>\n<reason>\n<message>" -> posted_t
    vmlet_metric_t *created, *repeated, *failed;
};

static void s_posted_free(void **item)
{
    posted_t *p = *item;
    if (p) {
        free(p->name);
        free(p->ns);
        free(p);
        *item = NULL;
    }
}

events_t *events_new(vmlet_kube_t *kube, const char *node, vmlet_metrics_t *metrics,
                     vmlet_log_t *log)
{
    events_t *self = vmlet_xcalloc(1, sizeof *self);
    self->kube = kube;
    self->node = vmlet_xstrdup(node);
    self->log = log;
    self->posted = zhashx_new();
    zhashx_set_destructor(self->posted, s_posted_free);
    self->created = vmlet_metrics_counter(metrics, "vmlet_status_reporter_events_created_total",
                                          "Kubernetes Events created.", NULL);
    self->repeated = vmlet_metrics_counter(metrics, "vmlet_status_reporter_events_repeated_total",
                                           "Repeats counted on an existing Event.", NULL);
    self->failed = vmlet_metrics_counter(metrics, "vmlet_status_reporter_events_failed_total",
                                         "Events the API server did not take.", NULL);
    return self;
}

void events_destroy(events_t **self_p)
{
    if (self_p && *self_p) {
        zhashx_destroy(&(*self_p)->posted);
        free((*self_p)->node);
        free(*self_p);
        *self_p = NULL;
    }
}

static cJSON *s_event(events_t *self, const Vmlet__PodRef *pod, const char *container,
                      const char *type, const char *reason, const char *message, const char *name)
{
    char now[40], field[300];
    vmlet_format_rfc3339(vmlet_unix_ms() / 1000, now, sizeof now);
    cJSON *e = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(e, "metadata");
    cJSON_AddStringToObject(meta, "name", name);
    cJSON_AddStringToObject(meta, "namespace", pod->namespace_);
    cJSON *obj = cJSON_AddObjectToObject(e, "involvedObject");
    cJSON_AddStringToObject(obj, "kind", "Pod");
    cJSON_AddStringToObject(obj, "apiVersion", "v1");
    cJSON_AddStringToObject(obj, "namespace", pod->namespace_);
    cJSON_AddStringToObject(obj, "name", pod->name);
    cJSON_AddStringToObject(obj, "uid", pod->uid);
    if (container) {
        snprintf(field, sizeof field, "spec.containers{%s}", container);
        cJSON_AddStringToObject(obj, "fieldPath", field);
    }
    cJSON_AddStringToObject(e, "reason", reason);
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    cJSON *source = cJSON_AddObjectToObject(e, "source");
    cJSON_AddStringToObject(source, "component", "kubelet");
    cJSON_AddStringToObject(source, "host", self->node);
    cJSON_AddStringToObject(e, "firstTimestamp", now);
    cJSON_AddStringToObject(e, "lastTimestamp", now);
    cJSON_AddNumberToObject(e, "count", 1);
    cJSON_AddStringToObject(e, "reportingComponent", "vmlet");
    cJSON_AddStringToObject(e, "reportingInstance", self->node);
    return e;
}

// Raises the count of an event posted before. Returns 0, or -1 if it is
// gone (events expire) and must be created again.
static int s_repeat(events_t *self, posted_t *p)
{
    char path[600], now[40];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/events/%s", p->ns, p->name);
    cJSON *patch = cJSON_CreateObject();
    cJSON_AddNumberToObject(patch, "count", p->count + 1);
    cJSON_AddStringToObject(patch, "lastTimestamp",
                            vmlet_format_rfc3339(vmlet_unix_ms() / 1000, now, sizeof now));
    vmlet_err_t err = {0};
    int rc = vmlet_kube_call(self->kube, "PATCH", path, VMLET_MERGE_PATCH, patch, NULL, NULL, &err);
    cJSON_Delete(patch);
    if (rc != 0)
        return -1;
    p->count++;
    vmlet_counter_inc(self->repeated);
    return 0;
}

void events_post(events_t *self, const Vmlet__PodRef *pod, const char *container,
                 const char *type, const char *reason, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    char *key = NULL;
    if (asprintf(&key, "%s\n%s\n%s\n%s", pod->uid, container ? container : "", reason, message) < 0)
        return;
    posted_t *p = zhashx_lookup(self->posted, key);
    if (p && s_repeat(self, p) == 0) {
        free(key);
        return;
    }
    char name[400], suffix[17];
    vmlet_random_hex(suffix, 8);
    snprintf(name, sizeof name, "%s.%s", pod->name, suffix);
    cJSON *event = s_event(self, pod, container, type, reason, message, name);
    char path[400];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/events", pod->namespace_);
    vmlet_err_t err = {0};
    int rc = vmlet_kube_call(self->kube, "POST", path, "application/json", event, NULL, NULL, &err);
    cJSON_Delete(event);
    if (rc != 0) {
        vmlet_counter_inc(self->failed);
        vmlet_log_warn(self->log, VMLET_KV({"pod", pod->uid}, {"reason", reason}), "%s", err.msg);
        free(key);
        return;
    }
    vmlet_counter_inc(self->created);
    p = vmlet_xcalloc(1, sizeof *p);
    p->name = vmlet_xstrdup(name);
    p->ns = vmlet_xstrdup(pod->namespace_);
    p->count = 1;
    zhashx_update(self->posted, key, p);
    free(key);
}

void events_forget(events_t *self, const char *uid)
{
    size_t n = strlen(uid);
    zlistx_t *keys = zhashx_keys(self->posted);
    for (const char *k = zlistx_first(keys); k; k = zlistx_next(keys))
        if (strncmp(k, uid, n) == 0 && k[n] == '\n')
            zhashx_delete(self->posted, k);
    zlistx_destroy(&keys);
}
