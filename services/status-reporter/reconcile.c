// One pod's status, Events and deletion (see reporter.h).
#include "pod_status.h"
#include "records.h"
#include "reporter_internal.h"

#include "vmlet/kube_api.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>

static const vmlet_backoff_policy_t write_policy = {200, 30000, 2, 0.3};

static const Vmlet__Container *s_container(const Vmlet__PodSpec *spec, size_t i)
{
    return i < spec->n_init_containers ? spec->init_containers[i]
                                       : spec->containers[i - spec->n_init_containers];
}

static size_t s_n_containers(const Vmlet__PodSpec *spec)
{
    return spec->n_init_containers + spec->n_containers;
}

static int s_probe(const pod_records_t *r, const char *container, const char *kind)
{
    char field[300];
    snprintf(field, sizeof field, "probe:%s:%s", container ? container : "", kind);
    const char *v = records_get(r, field);
    return v ? (strcmp(v, "1") == 0) : -1;
}

// Per container: its image's failure and its probes, from the records.
static container_facts_t *s_facts(const Vmlet__PodSpec *spec, const pod_records_t *r,
                                  char **to_free)
{
    size_t n = s_n_containers(spec);
    container_facts_t *facts = vmlet_xcalloc(n, sizeof *facts);
    for (size_t i = 0; i < n; i++) {
        const Vmlet__Container *c = s_container(spec, i);
        char field[600];
        snprintf(field, sizeof field, "image:%s", c->image ? c->image : "");
        const char *failure = records_get(r, field);
        if (failure) { // "<reason>\t<message>"
            char *copy = to_free[i] = vmlet_xstrdup(failure);
            char *tab = strchr(copy, '\t');
            if (tab)
                *tab++ = '\0';
            facts[i].image_reason = copy;
            facts[i].image_message = tab ? tab : "";
        }
        facts[i].readiness = s_probe(r, c->name, "readiness");
        facts[i].startup = s_probe(r, c->name, "startup");
    }
    return facts;
}

// --- Events for what changed -------------------------------------------------------

static const cJSON *s_status_of(const cJSON *status, const char *name)
{
    const char *lists[] = {"initContainerStatuses", "containerStatuses"};
    for (int l = 0; l < 2; l++) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(status, lists[l]))
        {
            const char *n = vmlet_json_str(c, "name", NULL);
            if (n && name && strcmp(n, name) == 0)
                return c;
        }
    }
    return NULL;
}

static const char *s_waiting_reason(const cJSON *c)
{
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(c, "state");
    return vmlet_json_str(cJSON_GetObjectItemCaseSensitive(state, "waiting"), "reason", NULL);
}

static const char *s_started_at(const cJSON *c)
{
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(c, "state");
    return vmlet_json_str(cJSON_GetObjectItemCaseSensitive(state, "running"), "startedAt", NULL);
}

static bool s_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void s_waiting_events(reporter_t *self, const Vmlet__PodSpec *spec,
                             const Vmlet__Container *c, const cJSON *now)
{
    const char *reason = s_waiting_reason(now);
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(now, "state");
    const char *message =
        vmlet_json_str(cJSON_GetObjectItemCaseSensitive(state, "waiting"), "message", NULL);
    const char *image = c->image ? c->image : "";
    if (strcmp(reason, "ErrImagePull") == 0) {
        events_post(self->events, spec->pod, c->name, "Warning", "Failed",
                    "Failed to pull image \"%s\": %s", image, message ? message : "");
        events_post(self->events, spec->pod, c->name, "Warning", "Failed", "Error: ErrImagePull");
    } else if (strcmp(reason, "ImagePullBackOff") == 0) {
        events_post(self->events, spec->pod, c->name, "Normal", "BackOff",
                    "Back-off pulling image \"%s\"", image);
        events_post(self->events, spec->pod, c->name, "Warning", "Failed",
                    "Error: ImagePullBackOff");
    } else if (strcmp(reason, "InvalidImageName") == 0) {
        events_post(self->events, spec->pod, c->name, "Warning", "InspectFailed", "%s",
                    message ? message : "");
        events_post(self->events, spec->pod, c->name, "Warning", "Failed",
                    "Error: InvalidImageName");
    } else if (strcmp(reason, "CreateContainerConfigError") == 0) {
        events_post(self->events, spec->pod, c->name, "Warning", "Failed", "Error: %s",
                    message ? message : "");
    } else if (strcmp(reason, "CrashLoopBackOff") == 0) {
        events_post(self->events, spec->pod, c->name, "Warning", "BackOff",
                    "Back-off restarting failed container");
    }
}

// The pod-level reasons the kubelet announces when the pod fails with them
// (activeDeadlineHandler: a Normal DeadlineExceeded with the message).
static const char *const pod_failure_events[] = {"DeadlineExceeded"};

static void s_pod_events(reporter_t *self, pod_t *pod, const cJSON *status)
{
    const char *reason = vmlet_json_str(status, "reason", NULL);
    const char *live = vmlet_json_str(cJSON_GetObjectItemCaseSensitive(pod->live, "status"),
                                      "reason", NULL);
    // Told once: not again for a status computed or written before (a
    // restarted reporter finds it in the live status).
    if (!reason || s_same(reason, vmlet_json_str(pod->computed, "reason", NULL)) ||
        s_same(reason, live))
        return;
    const char *message = vmlet_json_str(status, "message", NULL);
    for (size_t i = 0; i < sizeof pod_failure_events / sizeof pod_failure_events[0]; i++)
        if (strcmp(reason, pod_failure_events[i]) == 0)
            events_post(self->events, pod->spec->pod, NULL, "Normal", reason, "%s",
                        message ? message : "");
}

// Events for the changes between the last computed status and this one.
static void s_events(reporter_t *self, pod_t *pod, const cJSON *status)
{
    const Vmlet__PodSpec *spec = pod->spec;
    s_pod_events(self, pod, status);
    for (size_t i = 0; i < s_n_containers(spec); i++) {
        const Vmlet__Container *c = s_container(spec, i);
        const cJSON *now = s_status_of(status, c->name);
        const cJSON *before = s_status_of(pod->computed, c->name);
        const char *reason = s_waiting_reason(now);
        if (reason && !s_same(reason, s_waiting_reason(before)))
            s_waiting_events(self, spec, c, now);
        if (!pod->pulling_posted && reason &&
            (!strcmp(reason, "ContainerCreating") || !strcmp(reason, "PodInitializing")))
            events_post(self->events, spec->pod, c->name, "Normal", "Pulling",
                        "Pulling image \"%s\"", c->image ? c->image : "");
        const char *started = s_started_at(now);
        if (started && !s_same(started, s_started_at(before))) {
            events_post(self->events, spec->pod, c->name, "Normal", "Created",
                        "Created container %s", c->name);
            events_post(self->events, spec->pod, c->name, "Normal", "Started",
                        "Started container %s", c->name);
        }
    }
    pod->pulling_posted = true;
    cJSON_Delete(pod->computed);
    pod->computed = cJSON_Duplicate(status, true);
}

// --- writing the status ---------------------------------------------------------------

static void s_write(reporter_t *self, pod_t *pod, cJSON *status)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(pod->live, "metadata");
    char path[600];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods/%s/status",
             vmlet_json_str(meta, "namespace", NULL), vmlet_json_str(meta, "name", NULL));
    cJSON *patch = cJSON_CreateObject();
    cJSON *body = cJSON_Duplicate(status, true);
    // podIPs merges by "ip" in a strategic merge patch: a VM booted again
    // with a new address would add it next to the old one, which the API
    // server refuses (one IP per family). The list is replaced instead.
    cJSON *ips = cJSON_GetObjectItemCaseSensitive(body, "podIPs");
    if (cJSON_IsArray(ips)) {
        cJSON *replace = cJSON_CreateObject();
        cJSON_AddStringToObject(replace, "$patch", "replace");
        cJSON_InsertItemInArray(ips, 0, replace);
    }
    cJSON_AddItemToObject(patch, "status", body);
    cJSON *updated = NULL;
    long code = 0;
    vmlet_err_t err = {0};
    int rc = vmlet_kube_call(self->kube, "PATCH", path, VMLET_STRATEGIC_MERGE_PATCH, patch, &code,
                             &updated, &err);
    cJSON_Delete(patch);
    if (rc == 0) {
        vmlet_counter_inc(self->writes);
        vmlet_backoff_succeeded(&pod->backoff);
        cJSON_Delete(pod->live); // what we wrote is what the API server has now
        pod->live = updated;
        return;
    }
    vmlet_counter_inc(self->write_failures);
    if (code == 404)
        return; // gone; the watch will say so
    int64_t delay = vmlet_backoff_failed(&pod->backoff, vmlet_now_ms(), vmlet_random01());
    pod->dirty = true; // 409, 5xx, no answer: again after the back-off
    vmlet_log_warn(self->log, VMLET_KV({"pod", pod->uid}), "%s; retrying in %lld ms", err.msg,
                   (long long)delay);
}

// --- deletion ---------------------------------------------------------------------------

static bool s_vm_gone(const pod_t *pod, const pod_records_t *r)
{
    if (r->vm)
        return r->vm->state == VMLET__VM_STATE__VM_STATE_STOPPED ||
               r->vm->state == VMLET__VM_STATE__VM_STATE_FAILED;
    // Never had a VM: nothing to wait for once the grace period is over.
    return vmlet_now_ms() - pod->deleting_since_ms >= pod->grace_s * 1000;
}

static void s_finish_deletion(reporter_t *self, pod_t *pod)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(pod->live, "metadata");
    char path[600];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods/%s",
             vmlet_json_str(meta, "namespace", NULL), vmlet_json_str(meta, "name", NULL));
    cJSON *options = cJSON_CreateObject();
    cJSON_AddStringToObject(options, "kind", "DeleteOptions");
    cJSON_AddStringToObject(options, "apiVersion", "v1");
    cJSON_AddNumberToObject(options, "gracePeriodSeconds", 0);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(options, "preconditions"), "uid", pod->uid);
    long code = 0;
    vmlet_err_t err = {0};
    int rc =
        vmlet_kube_call(self->kube, "DELETE", path, "application/json", options, &code, NULL, &err);
    cJSON_Delete(options);
    if (rc == 0 || code == 404 || code == 409) { // done, gone, or another pod now
        vmlet_counter_inc(self->deletes);
        return;
    }
    pod->dirty = true;
    vmlet_backoff_failed(&pod->backoff, vmlet_now_ms(), vmlet_random01());
    vmlet_log_warn(self->log, VMLET_KV({"pod", pod->uid}), "%s", err.msg);
}

// --- the whole of it -----------------------------------------------------------------

void reconcile_pod(reporter_t *self, pod_t *pod)
{
    if (!pod->spec || !pod->live)
        return; // the watcher has not stored it yet, or the watch has not shown it
    pod_records_t records;
    vmlet_err_t err = {0};
    if (records_load(self->store, pod->uid, &records, &err) < 0) {
        pod->dirty = true;
        vmlet_backoff_failed(&pod->backoff, vmlet_now_ms(), vmlet_random01());
        vmlet_log_warn(self->log, VMLET_KV({"pod", pod->uid}), "%s", err.msg);
        return;
    }
    size_t n = s_n_containers(pod->spec);
    char **to_free = vmlet_xcalloc(n ? n : 1, sizeof *to_free);
    container_facts_t *facts = s_facts(pod->spec, &records, to_free);
    pod_status_inputs_t in = {
        .spec = pod->spec,
        .vm = records.vm,
        .facts = facts,
        .host_ip = self->settings->internal_ip,
        .live = cJSON_GetObjectItemCaseSensitive(pod->live, "status"),
        .now_unix = vmlet_unix_ms() / 1000,
        .node_ready = self->node_ready,
    };
    cJSON *status = pod_status_compute(&in);
    s_events(self, pod, status);
    if (pod_status_differs(status, in.live))
        s_write(self, pod, status);
    else
        vmlet_counter_inc(self->skipped);
    if (pod->deleting_since_ms && s_vm_gone(pod, &records))
        s_finish_deletion(self, pod);
    cJSON_Delete(status);
    for (size_t i = 0; i < n; i++)
        free(to_free[i]);
    free(to_free);
    free(facts);
    records_clear(&records);
}

void reconcile_init_backoff(pod_t *pod)
{
    vmlet_backoff_init(&pod->backoff, &write_policy);
}
