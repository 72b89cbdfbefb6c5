// activeDeadlineSeconds (see pod_deadline.h).
#include "pod_deadline.h"

#include "launcher_internal.h"

#include "vmlet/kube_api.h"
#include "vmlet/timeutil.h"

#include <stdio.h>
#include <string.h>

#define READ_AGAIN_MS 5000 // status.startTime not written yet, or the API server away

bool pod_deadline_passed(bool has_deadline, int64_t seconds, int64_t start_unix_ms,
                         int64_t now_unix_ms)
{
    if (!has_deadline || start_unix_ms <= 0)
        return false;
    return now_unix_ms - start_unix_ms >= seconds * 1000;
}

// status.startTime from the API server, read once it is there: a list by
// name (the verb the ClusterRole grants on pods), this pod's uid.
static void s_read_start(pod_vm_t *pod)
{
    launcher_t *l = pod->l;
    int64_t now = vmlet_now_ms();
    if (pod->deadline.api_start_unix_ms || !l->kube || now < pod->deadline.next_read_ms)
        return;
    pod->deadline.next_read_ms = now + READ_AGAIN_MS;
    const Vmlet__PodRef *ref = pod->spec->pod;
    char selector[400], escaped[600], path[900];
    snprintf(selector, sizeof selector, "metadata.name=%s", ref->name);
    if (!vmlet_kube_escape(selector, escaped, sizeof escaped))
        return;
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods?fieldSelector=%s", ref->namespace_,
             escaped);
    cJSON *list = NULL;
    vmlet_err_t err = {0};
    if (vmlet_kube_call(l->kube, "GET", path, NULL, NULL, NULL, &list, &err) != 0) {
        vmlet_log_debug(l->log, VMLET_KV({"pod", pod->desc}), "reading its startTime: %s",
                        err.msg);
        return;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(list, "items"))
    {
        const char *uid = vmlet_json_str(item, "metadata", "uid");
        int64_t start;
        if (uid && strcmp(uid, pod->uid) == 0 &&
            vmlet_parse_rfc3339(vmlet_json_str(item, "status", "startTime"), &start) == 0)
            pod->deadline.api_start_unix_ms = start * 1000;
    }
    cJSON_Delete(list);
}

// The kubelet's killPod for an evicted pod: no container starts again;
// each running one gets its preStop hook and stop signal, and SIGKILL
// after the pod's grace period (the VM then powers off, as for a pod whose
// containers are all done). With nothing running yet (images, boot,
// setup) the VM, if any, simply goes.
static void s_fail(pod_vm_t *pod)
{
    const Vmlet__PodSpec *spec = pod->spec;
    vmlet_log_info(pod->l->log, VMLET_KV({"pod", pod->desc}, {"reason", POD_DEADLINE_REASON}),
                   "past its activeDeadlineSeconds (%llds): killing it",
                   (long long)spec->active_deadline_seconds);
    snprintf(pod->failure_reason, sizeof pod->failure_reason, "%s", POD_DEADLINE_REASON);
    snprintf(pod->failure_message, sizeof pod->failure_message, "%s", POD_DEADLINE_MESSAGE);
    if (pod->state != PV_RUNNING) {
        pod_vm_fail(pod, POD_DEADLINE_REASON, POD_DEADLINE_MESSAGE);
        return;
    }
    int64_t grace =
        spec->has_deletion_grace_period_seconds ? spec->deletion_grace_period_seconds : -1;
    for (size_t i = 0; i < pod->n_ctrs; i++) {
        ctr_t *c = &pod->ctrs[i];
        if (c->phase == CTR_RUNNING)
            pod_vm_restart_container(pod, c->name, POD_DEADLINE_REASON, POD_DEADLINE_MESSAGE,
                                     grace);
        c->done = true; // and it does not run again
    }
    pod_record_changed(pod);
}

void pod_deadline_tick(pod_vm_t *pod)
{
    const Vmlet__PodSpec *spec = pod->spec;
    if (!spec || !spec->has_active_deadline_seconds || pod->failure_reason[0] ||
        pod->stop_requested || pod->state == PV_STOPPING || pod->state == PV_STOPPED ||
        pod->state == PV_FAILED || (pod->state == PV_RUNNING && pod_vm_all_done(pod)))
        return; // no deadline, failed already, or ending anyway
    s_read_start(pod);
    int64_t start = pod->deadline.api_start_unix_ms ? pod->deadline.api_start_unix_ms
                                                    : pod->created_unix_ms;
    if (pod_deadline_passed(true, spec->active_deadline_seconds, start, vmlet_unix_ms()))
        s_fail(pod);
}

void pod_deadline_spec_changed(pod_vm_t *pod, const Vmlet__PodSpec *spec)
{
    Vmlet__PodSpec *mine = pod->spec;
    if (!mine || !spec ||
        (mine->has_active_deadline_seconds == spec->has_active_deadline_seconds &&
         mine->active_deadline_seconds == spec->active_deadline_seconds))
        return;
    vmlet_log_info(pod->l->log, VMLET_KV({"pod", pod->desc}), "activeDeadlineSeconds now %lld",
                   (long long)spec->active_deadline_seconds);
    mine->has_active_deadline_seconds = spec->has_active_deadline_seconds;
    mine->active_deadline_seconds = spec->active_deadline_seconds;
}
