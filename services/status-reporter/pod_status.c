// A pod's status as the kubelet computes it (see pod_status.h).
#include "pod_status.h"

#include "vmlet/timeutil.h"

#include <stdio.h>
#include <string.h>

// --- small JSON helpers ------------------------------------------------------------

static const cJSON *s_get(const cJSON *o, const char *k)
{
    return o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *s_str(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(s_get(o, k));
}

static void s_add_time(cJSON *o, const char *key, int64_t unix_s)
{
    char t[40];
    cJSON_AddStringToObject(o, key, vmlet_format_rfc3339(unix_s, t, sizeof t));
}

// Adds key only when text is not empty (the API server omits empty strings).
static void s_add_text(cJSON *o, const char *key, const char *text)
{
    if (text && *text)
        cJSON_AddStringToObject(o, key, text);
}

// --- container states ------------------------------------------------------------

static cJSON *s_waiting(const char *reason, const char *message)
{
    cJSON *state = cJSON_CreateObject();
    cJSON *w = cJSON_AddObjectToObject(state, "waiting");
    s_add_text(w, "reason", reason);
    s_add_text(w, "message", message);
    return state;
}

// A VM-reported state in the API's form; an empty object if none.
static cJSON *s_state(const Vmlet__ContainerState *s)
{
    cJSON *state = cJSON_CreateObject();
    if (!s)
        return state;
    if (s->state_case == VMLET__CONTAINER_STATE__STATE_WAITING) {
        cJSON *w = cJSON_AddObjectToObject(state, "waiting");
        s_add_text(w, "reason", s->waiting->reason);
        s_add_text(w, "message", s->waiting->message);
    } else if (s->state_case == VMLET__CONTAINER_STATE__STATE_RUNNING) {
        cJSON *r = cJSON_AddObjectToObject(state, "running");
        s_add_time(r, "startedAt", s->running->started_unix_ms / 1000);
    } else if (s->state_case == VMLET__CONTAINER_STATE__STATE_TERMINATED) {
        const Vmlet__ContainerStateTerminated *t = s->terminated;
        cJSON *o = cJSON_AddObjectToObject(state, "terminated");
        cJSON_AddNumberToObject(o, "exitCode", t->exit_code);
        if (t->signal)
            cJSON_AddNumberToObject(o, "signal", t->signal);
        s_add_text(o, "reason", t->reason ? t->reason : (t->exit_code ? "Error" : "Completed"));
        s_add_text(o, "message", t->message);
        s_add_time(o, "startedAt", t->started_unix_ms / 1000);
        s_add_time(o, "finishedAt", t->finished_unix_ms / 1000);
    }
    return state;
}

static const Vmlet__ContainerStatus *s_vm_status(const Vmlet__VmEvent *vm, bool init,
                                                 const char *name)
{
    if (!vm || !name)
        return NULL;
    size_t n = init ? vm->n_init_containers : vm->n_containers;
    Vmlet__ContainerStatus **list = init ? vm->init_containers : vm->containers;
    for (size_t i = 0; i < n; i++)
        if (list[i]->name && strcmp(list[i]->name, name) == 0)
            return list[i];
    return NULL;
}

typedef struct {
    const pod_status_inputs_t *in;
    const Vmlet__Container *c;
    const container_facts_t *facts;
    bool init;
    const char *default_reason; // ContainerCreating, or PodInitializing with init containers
} container_ctx_t;

// Running and passed its probes (none means passed).
static void s_ready_and_started(const container_ctx_t *x, bool running, bool *ready, bool *started)
{
    int startup = x->facts ? x->facts->startup : -1;
    int readiness = x->facts ? x->facts->readiness : -1;
    *started = running && (!x->c->startup_probe || startup == 1);
    *ready = *started && (!x->c->readiness_probe || readiness == 1);
    if (x->init) // init containers are never "ready" while they run
        *ready = false;
}

static cJSON *s_container(const container_ctx_t *x)
{
    const Vmlet__Container *c = x->c;
    const Vmlet__ConfigProblem *problem = c->problem ? c->problem : x->in->spec->problem;
    const Vmlet__ContainerStatus *vm = s_vm_status(x->in->vm, x->init, c->name);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "name", c->name ? c->name : "");
    cJSON *state;
    bool running = false;
    if (problem)
        state = s_waiting(problem->reason, problem->message);
    else if (x->facts && x->facts->image_reason && !vm)
        state = s_waiting(x->facts->image_reason, x->facts->image_message);
    else if (vm && vm->state) {
        state = s_state(vm->state);
        running = vm->state->state_case == VMLET__CONTAINER_STATE__STATE_RUNNING;
    } else
        state = s_waiting(x->default_reason, NULL);
    cJSON_AddItemToObject(out, "state", state);
    cJSON_AddItemToObject(out, "lastState", s_state(vm ? vm->last_state : NULL));
    bool ready, started;
    s_ready_and_started(x, running, &ready, &started);
    cJSON_AddBoolToObject(out, "ready", ready);
    cJSON_AddNumberToObject(out, "restartCount", vm ? vm->restart_count : 0);
    cJSON_AddStringToObject(out, "image", c->image ? c->image : "");
    cJSON_AddStringToObject(out, "imageID", vm && vm->image_id ? vm->image_id : "");
    s_add_text(out, "containerID", vm ? vm->container_id : NULL);
    if (!x->init)
        cJSON_AddBoolToObject(out, "started", started);
    return out;
}

static cJSON *s_statuses(const pod_status_inputs_t *in, bool init)
{
    const Vmlet__PodSpec *spec = in->spec;
    size_t n = init ? spec->n_init_containers : spec->n_containers;
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
        size_t at = init ? i : spec->n_init_containers + i;
        container_ctx_t x = {
            .in = in,
            .c = init ? spec->init_containers[i] : spec->containers[i],
            .facts = in->facts ? &in->facts[at] : NULL,
            .init = init,
            .default_reason = spec->n_init_containers ? "PodInitializing" : "ContainerCreating",
        };
        cJSON_AddItemToArray(list, s_container(&x));
    }
    return list;
}

// --- phase ------------------------------------------------------------------------

static bool s_has(const cJSON *status, const char *which, const char *state)
{
    return s_get(s_get(status, which), state) != NULL;
}

static int s_exit_code(const cJSON *status, const char *which)
{
    const cJSON *code = s_get(s_get(s_get(status, which), "terminated"), "exitCode");
    return cJSON_IsNumber(code) ? code->valueint : 0;
}

// kubelet's getPhase (pkg/kubelet/kubelet_pods.go), from the same counts.
const char *pod_status_phase(const Vmlet__PodSpec *spec, const cJSON *init_statuses,
                             const cJSON *statuses)
{
    int pending_init = 0, failed_init = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, init_statuses)
    {
        if (s_has(s, "state", "running"))
            pending_init++;
        else if (s_has(s, "state", "terminated"))
            failed_init += s_exit_code(s, "state") != 0;
        else if (s_has(s, "lastState", "terminated"))
            failed_init += s_exit_code(s, "lastState") != 0;
        else
            pending_init++;
    }
    int running = 0, waiting = 0, stopped = 0, succeeded = 0;
    cJSON_ArrayForEach(s, statuses)
    {
        if (s_has(s, "state", "running"))
            running++;
        else if (s_has(s, "state", "terminated")) {
            stopped++;
            succeeded += s_exit_code(s, "state") == 0;
        } else if (s_has(s, "lastState", "terminated"))
            stopped++;
        else
            waiting++;
    }
    const char *policy = spec->restart_policy ? spec->restart_policy : "Always";
    if (failed_init > 0 && strcmp(policy, "Never") == 0)
        return "Failed";
    if (pending_init > 0 || waiting > 0)
        return "Pending";
    if (running > 0)
        return "Running";
    if (stopped > 0) {
        if (strcmp(policy, "Always") == 0)
            return "Running";
        if (stopped == succeeded)
            return "Succeeded";
        if (strcmp(policy, "Never") == 0)
            return "Failed";
        return "Running";
    }
    return "Pending";
}

// --- conditions ---------------------------------------------------------------------

// Lists the names of the containers in `statuses` for which `bad` holds.
static bool s_names(const cJSON *statuses, bool (*bad)(const cJSON *), char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    const cJSON *s;
    cJSON_ArrayForEach(s, statuses)
    {
        if (bad(s) && n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? " " : "", s_str(s, "name"));
    }
    return n > 0;
}

static bool s_unready(const cJSON *s)
{
    return !cJSON_IsTrue(s_get(s, "ready"));
}

static bool s_uninitialized(const cJSON *s)
{
    return !s_has(s, "state", "terminated") || s_exit_code(s, "state") != 0;
}

static void s_condition(cJSON *list, const pod_status_inputs_t *in, const char *type, bool ok,
                        const char *reason, const char *message)
{
    const char *status = ok ? "True" : "False";
    int64_t since = in->now_unix;
    const cJSON *c;
    cJSON_ArrayForEach(c, s_get(in->live, "conditions"))
    {
        const char *t = s_str(c, "type"), *st = s_str(c, "status");
        int64_t when;
        if (t && st && strcmp(t, type) == 0 && strcmp(st, status) == 0 &&
            vmlet_parse_rfc3339(s_str(c, "lastTransitionTime"), &when) == 0)
            since = when; // unchanged: keep its time
    }
    cJSON *cond = cJSON_CreateObject();
    cJSON_AddStringToObject(cond, "type", type);
    cJSON_AddStringToObject(cond, "status", status);
    cJSON_AddNullToObject(cond, "lastProbeTime");
    s_add_time(cond, "lastTransitionTime", since);
    // A strategic merge keeps what is not mentioned: absent ones are null.
    const char *texts[2][2] = {{"reason", ok ? NULL : reason}, {"message", ok ? NULL : message}};
    for (int i = 0; i < 2; i++) {
        if (texts[i][1] && *texts[i][1])
            cJSON_AddStringToObject(cond, texts[i][0], texts[i][1]);
        else
            cJSON_AddNullToObject(cond, texts[i][0]);
    }
    cJSON_AddItemToArray(list, cond);
}

static cJSON *s_conditions(const pod_status_inputs_t *in, const cJSON *init, const cJSON *regular,
                           const char *phase)
{
    cJSON *list = cJSON_CreateArray();
    char names[1024], message[1100];
    bool uninitialized = s_names(init, s_uninitialized, names, sizeof names);
    snprintf(message, sizeof message, "containers with incomplete status: [%s]", names);
    s_condition(list, in, "Initialized", !uninitialized, "ContainersNotInitialized", message);
    bool completed = strcmp(phase, "Succeeded") == 0;
    bool unready = s_names(regular, s_unready, names, sizeof names);
    snprintf(message, sizeof message, "containers with unready status: [%s]", names);
    const char *reason = completed ? "PodCompleted" : "ContainersNotReady";
    if (!in->node_ready && !completed && !unready)
        s_condition(list, in, "Ready", false, NULL, NULL); // as the node controller left it
    else
        s_condition(list, in, "Ready", !unready && !completed, reason, completed ? NULL : message);
    s_condition(list, in, "ContainersReady", !unready && !completed, reason,
                completed ? NULL : message);
    s_condition(list, in, "PodScheduled", true, NULL, NULL);
    return list;
}

// --- the whole status -----------------------------------------------------------------

cJSON *pod_status_compute(const pod_status_inputs_t *in)
{
    cJSON *status = cJSON_CreateObject();
    cJSON *init = s_statuses(in, true), *regular = s_statuses(in, false);
    const char *phase = pod_status_phase(in->spec, init, regular);
    const Vmlet__VmEvent *vm = in->vm;
    bool vm_failed = vm && vm->state == VMLET__VM_STATE__VM_STATE_FAILED;
    // A pod-level failure (DeadlineExceeded) is Failed at once, while its
    // containers are still being stopped, as the kubelet's evicted pods.
    bool pod_failed = vm && vm->pod_failure_reason && *vm->pod_failure_reason;
    if (vm_failed || pod_failed) {
        phase = "Failed";
        // A failed pod's containers are not ready, though the last may
        // still be stopping (its grace period): Ready goes False with the
        // phase, not when they are gone, as the kubelet does for a
        // terminal pod.
        cJSON *c;
        cJSON_ArrayForEach(c, regular)
        {
            if (cJSON_GetObjectItemCaseSensitive(c, "ready"))
                cJSON_ReplaceItemInObjectCaseSensitive(c, "ready", cJSON_CreateFalse());
            else
                cJSON_AddFalseToObject(c, "ready");
        }
    }
    cJSON_AddStringToObject(status, "phase", phase);
    cJSON_AddItemToObject(status, "conditions", s_conditions(in, init, regular, phase));
    if (pod_failed) {
        s_add_text(status, "reason", vm->pod_failure_reason);
        s_add_text(status, "message", vm->pod_failure_message);
    } else if (vm_failed) {
        s_add_text(status, "reason", vm->reason);
        s_add_text(status, "message", vm->message);
    }
    s_add_text(status, "hostIP", in->host_ip);
    if (vm && vm->pod_ip && *vm->pod_ip) {
        cJSON_AddStringToObject(status, "podIP", vm->pod_ip);
        cJSON *ip = cJSON_CreateObject();
        cJSON_AddStringToObject(ip, "ip", vm->pod_ip);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(status, "podIPs"), ip);
    }
    int64_t started = in->now_unix;
    vmlet_parse_rfc3339(s_str(in->live, "startTime"), &started);
    s_add_time(status, "startTime", started);
    if (in->spec->n_init_containers)
        cJSON_AddItemToObject(status, "initContainerStatuses", init);
    else
        cJSON_Delete(init);
    cJSON_AddItemToObject(status, "containerStatuses", regular);
    return status;
}

static const cJSON *s_condition_of_type(const cJSON *list, const char *type)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, list)
    {
        const char *t = s_str(c, "type");
        if (t && type && strcmp(t, type) == 0)
            return c;
    }
    return NULL;
}

static bool s_same_text(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

// Conditions compared by type on what we set; lastProbeTime is ignored.
static bool s_conditions_differ(const cJSON *desired, const cJSON *live)
{
    static const char *const keys[] = {"status", "reason", "message", "lastTransitionTime"};
    const cJSON *d;
    cJSON_ArrayForEach(d, desired)
    {
        const cJSON *l = s_condition_of_type(live, s_str(d, "type"));
        if (!l)
            return true;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            if (!s_same_text(s_str(d, keys[k]), s_str(l, keys[k])))
                return true;
    }
    return false;
}

bool pod_status_differs(const cJSON *desired, const cJSON *live)
{
    const cJSON *d;
    cJSON_ArrayForEach(d, desired)
    {
        const cJSON *l = s_get(live, d->string);
        if (strcmp(d->string, "conditions") == 0) {
            if (s_conditions_differ(d, l))
                return true;
        } else if (!l || !cJSON_Compare(d, l, true)) {
            return true;
        }
    }
    return false;
}
