// The status-reporter's status computation, case by case against what the
// kubelet writes for the same situation.
#include "testsupport.h"

#include "pod_status.h"

#include <stdio.h>
#include <string.h>

// --- building inputs ------------------------------------------------------------

typedef struct {
    Vmlet__PodRef ref;
    Vmlet__PodSpec spec;
    Vmlet__Container c[3];
    Vmlet__Container *regular[3];
    Vmlet__Container *init[3];
    Vmlet__Probe probe;
    Vmlet__ConfigProblem problem;
    Vmlet__VmEvent vm;
    Vmlet__ContainerStatus st[3];
    Vmlet__ContainerStatus *vm_regular[3];
    Vmlet__ContainerStatus *vm_init[3];
    Vmlet__ContainerState state[3], last[3];
    Vmlet__ContainerStateRunning running[3];
    Vmlet__ContainerStateTerminated terminated[3], last_terminated[3];
    Vmlet__ContainerStateWaiting waiting[3];
    container_facts_t facts[3];
    pod_status_inputs_t in;
} pod_t;

// A pod with `n_init` init containers then `n` containers named i0.., c0..
static void s_pod(pod_t *p, size_t n_init, size_t n, const char *restart)
{
    memset(p, 0, sizeof *p);
    static const char *const names[] = {"c0", "c1", "c2"}, *const inits[] = {"i0", "i1", "i2"};
    p->ref = (Vmlet__PodRef)VMLET__POD_REF__INIT;
    p->ref.uid = "uid-1", p->ref.namespace_ = "default", p->ref.name = "web";
    p->spec = (Vmlet__PodSpec)VMLET__POD_SPEC__INIT;
    p->spec.pod = &p->ref;
    p->spec.restart_policy = (char *)restart;
    for (size_t i = 0; i < n_init + n; i++) {
        p->c[i] = (Vmlet__Container)VMLET__CONTAINER__INIT;
        p->c[i].name = (char *)(i < n_init ? inits[i] : names[i - n_init]);
        p->c[i].image = "busybox";
        if (i < n_init)
            p->init[i] = &p->c[i];
        else
            p->regular[i - n_init] = &p->c[i];
        p->facts[i] = (container_facts_t){NULL, NULL, -1, -1};
    }
    p->spec.n_init_containers = n_init, p->spec.init_containers = p->init;
    p->spec.n_containers = n, p->spec.containers = p->regular;
    p->in = (pod_status_inputs_t){&p->spec, NULL, p->facts, "127.0.0.1", NULL, 1800000000, true};
}

// Gives container i (init first) a VM-reported state.
static Vmlet__ContainerStatus *s_vm(pod_t *p, size_t i, bool init)
{
    if (!p->in.vm) {
        p->vm = (Vmlet__VmEvent)VMLET__VM_EVENT__INIT;
        p->vm.has_state = 1, p->vm.state = VMLET__VM_STATE__VM_STATE_RUNNING;
        p->vm.pod_ip = "10.88.0.5";
        p->vm.init_containers = p->vm_init, p->vm.containers = p->vm_regular;
        p->in.vm = &p->vm;
    }
    Vmlet__ContainerStatus *s = &p->st[i];
    *s = (Vmlet__ContainerStatus)VMLET__CONTAINER_STATUS__INIT;
    s->name = p->c[i].name;
    s->image_id = "sha256:abc";
    s->container_id = "vmlet://vm-1/c";
    p->state[i] = (Vmlet__ContainerState)VMLET__CONTAINER_STATE__INIT;
    s->state = &p->state[i];
    if (init)
        p->vm_init[p->vm.n_init_containers++] = s;
    else
        p->vm_regular[p->vm.n_containers++] = s;
    return s;
}

static void s_running(pod_t *p, size_t i, bool init)
{
    s_vm(p, i, init);
    p->running[i] = (Vmlet__ContainerStateRunning)VMLET__CONTAINER_STATE_RUNNING__INIT;
    p->running[i].started_unix_ms = 1700000000000;
    p->state[i].state_case = VMLET__CONTAINER_STATE__STATE_RUNNING;
    p->state[i].running = &p->running[i];
}

static void s_exited(pod_t *p, size_t i, bool init, int code)
{
    s_vm(p, i, init);
    p->terminated[i] = (Vmlet__ContainerStateTerminated)VMLET__CONTAINER_STATE_TERMINATED__INIT;
    p->terminated[i].exit_code = code;
    p->terminated[i].started_unix_ms = 1700000000000;
    p->terminated[i].finished_unix_ms = 1700000005000;
    p->state[i].state_case = VMLET__CONTAINER_STATE__STATE_TERMINATED;
    p->state[i].terminated = &p->terminated[i];
}

static void s_crash_looping(pod_t *p, size_t i)
{
    Vmlet__ContainerStatus *s = s_vm(p, i, false);
    p->waiting[i] = (Vmlet__ContainerStateWaiting)VMLET__CONTAINER_STATE_WAITING__INIT;
    p->waiting[i].reason = "CrashLoopBackOff";
    p->state[i].state_case = VMLET__CONTAINER_STATE__STATE_WAITING;
    p->state[i].waiting = &p->waiting[i];
    p->last_terminated[i] = (Vmlet__ContainerStateTerminated)VMLET__CONTAINER_STATE_TERMINATED__INIT;
    p->last_terminated[i].exit_code = 1;
    p->last[i] = (Vmlet__ContainerState)VMLET__CONTAINER_STATE__INIT;
    p->last[i].state_case = VMLET__CONTAINER_STATE__STATE_TERMINATED;
    p->last[i].terminated = &p->last_terminated[i];
    s->last_state = &p->last[i];
    s->restart_count = 3;
}

// --- reading the output -------------------------------------------------------

static const char *s_at(const cJSON *o, const char *path)
{
    // "a.b.c" through objects; "[n]" picks an array element.
    char buf[200];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = o;
    for (char *part = strtok(buf, "."); part && cur; part = strtok(NULL, ".")) {
        if (part[0] == '[')
            cur = cJSON_GetArrayItem(cur, atoi(part + 1));
        else
            cur = cJSON_GetObjectItemCaseSensitive(cur, part);
    }
    static char text[512];
    if (cJSON_IsString(cur))
        return cur->valuestring;
    if (cJSON_IsBool(cur))
        return cJSON_IsTrue(cur) ? "true" : "false";
    if (cJSON_IsNumber(cur)) {
        snprintf(text, sizeof text, "%g", cur->valuedouble);
        return text;
    }
    return cur ? "(object)" : NULL;
}

static const cJSON *s_condition(const cJSON *status, const char *type)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(status, "conditions")) if (
        strcmp(cJSON_GetObjectItemCaseSensitive(c, "type")->valuestring, type) == 0) return c;
    return NULL;
}

#define EXPECT(status, path, want)                                                               \
    do {                                                                                         \
        const char *got_ = s_at((status), (path));                                               \
        if (!got_ || strcmp(got_, (want)) != 0)                                                  \
            fail_msg("%s: want %s, got %s\n%s", (path), (want), got_ ? got_ : "(absent)",         \
                     cJSON_Print(status));                                                       \
    } while (0)

// --- cases ------------------------------------------------------------------------

static void test_no_vm_yet(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, 0, 2, "Always");
    cJSON *s = pod_status_compute(&p.in);
    EXPECT(s, "phase", "Pending");
    EXPECT(s, "containerStatuses.[0].state.waiting.reason", "ContainerCreating");
    EXPECT(s, "containerStatuses.[1].ready", "false");
    EXPECT(s, "containerStatuses.[0].restartCount", "0");
    EXPECT(s, "containerStatuses.[0].image", "busybox");
    EXPECT(s, "hostIP", "127.0.0.1");
    EXPECT(s, "startTime", "2027-01-15T08:00:00Z");
    assert_null(cJSON_GetObjectItem(s, "podIP"));
    EXPECT(s_condition(s, "Initialized"), "status", "True");
    EXPECT(s_condition(s, "Ready"), "status", "False");
    EXPECT(s_condition(s, "Ready"), "reason", "ContainersNotReady");
    EXPECT(s_condition(s, "Ready"), "message", "containers with unready status: [c0 c1]");
    EXPECT(s_condition(s, "ContainersReady"), "status", "False");
    EXPECT(s_condition(s, "PodScheduled"), "status", "True");
    cJSON_Delete(s);
}

static void test_init_containers_pending(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, 2, 1, "Always");
    s_exited(&p, 0, true, 0);
    s_running(&p, 1, true);
    cJSON *s = pod_status_compute(&p.in);
    EXPECT(s, "phase", "Pending");
    EXPECT(s, "initContainerStatuses.[0].state.terminated.reason", "Completed");
    EXPECT(s, "initContainerStatuses.[1].ready", "false"); // init containers are never ready
    EXPECT(s, "containerStatuses.[0].state.waiting.reason", "PodInitializing");
    EXPECT(s_condition(s, "Initialized"), "status", "False");
    EXPECT(s_condition(s, "Initialized"), "message", "containers with incomplete status: [i1]");
    cJSON_Delete(s);
}

static void test_failed_init_with_restart_never_fails_the_pod(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, 1, 1, "Never");
    s_exited(&p, 0, true, 2);
    cJSON *s = pod_status_compute(&p.in);
    EXPECT(s, "phase", "Failed");
    EXPECT(s, "initContainerStatuses.[0].state.terminated.exitCode", "2");
    EXPECT(s, "initContainerStatuses.[0].state.terminated.reason", "Error");
    cJSON_Delete(s);
}

static void test_image_and_config_problems(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, 0, 2, "Always");
    p.facts[0].image_reason = "ErrImagePull";
    p.facts[0].image_message = "manifest unknown";
    p.problem = (Vmlet__ConfigProblem)VMLET__CONFIG_PROBLEM__INIT;
    p.problem.reason = "CreateContainerConfigError";
    p.problem.message = "secret \"db\" not found";
    p.c[1].problem = &p.problem;
    cJSON *s = pod_status_compute(&p.in);
    EXPECT(s, "phase", "Pending");
    EXPECT(s, "containerStatuses.[0].state.waiting.reason", "ErrImagePull");
    EXPECT(s, "containerStatuses.[0].state.waiting.message", "manifest unknown");
    EXPECT(s, "containerStatuses.[1].state.waiting.reason", "CreateContainerConfigError");
    EXPECT(s, "containerStatuses.[1].state.waiting.message", "secret \"db\" not found");
    cJSON_Delete(s);
    // A pod-wide problem puts every container in waiting.
    p.c[1].problem = NULL;
    p.spec.problem = &p.problem;
    s = pod_status_compute(&p.in);
    EXPECT(s, "containerStatuses.[0].state.waiting.reason", "CreateContainerConfigError");
    cJSON_Delete(s);
}

static void test_running_and_readiness(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, 0, 2, "Always");
    s_running(&p, 0, false);
    s_running(&p, 1, false);
    p.probe = (Vmlet__Probe)VMLET__PROBE__INIT;
    p.c[1].readiness_probe = &p.probe;
    cJSON *s = pod_status_compute(&p.in);
    EXPECT(s, "phase", "Running");
    EXPECT(s, "podIP", "10.88.0.5");
    EXPECT(s, "podIPs.[0].ip", "10.88.0.5");
    EXPECT(s, "containerStatuses.[0].ready", "true"); // no probe: ready once running
    EXPECT(s, "containerStatuses.[0].started", "true");
    EXPECT(s, "containerStatuses.[0].state.running.startedAt", "2023-11-14T22:13:20Z");
    EXPECT(s, "containerStatuses.[0].containerID", "vmlet://vm-1/c");
    EXPECT(s, "containerStatuses.[0].imageID", "sha256:abc");
    EXPECT(s, "containerStatuses.[1].ready", "false"); // no readiness result yet
    EXPECT(s_condition(s, "Ready"), "message", "containers with unready status: [c1]");
    cJSON_Delete(s);
    p.facts[1].readiness = 1;
    s = pod_status_compute(&p.in);
    EXPECT(s, "containerStatuses.[1].ready", "true");
    EXPECT(s_condition(s, "Ready"), "status", "True");
    EXPECT(s_condition(s, "ContainersReady"), "status", "True");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(s_condition(s, "Ready"), "reason")));
    cJSON_Delete(s);
    // The node is not Ready: neither is the pod, though its containers are.
    p.in.node_ready = false;
    s = pod_status_compute(&p.in);
    EXPECT(s_condition(s, "Ready"), "status", "False");
    EXPECT(s_condition(s, "ContainersReady"), "status", "True");
    cJSON_Delete(s);
    p.in.node_ready = true;
    p.facts[1].readiness = 0;
    s = pod_status_compute(&p.in);
    EXPECT(s, "containerStatuses.[1].ready", "false");
    cJSON_Delete(s);
}

static void test_startup_probe_gates_ready_and_started(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, 0, 1, "Always");
    s_running(&p, 0, false);
    p.probe = (Vmlet__Probe)VMLET__PROBE__INIT;
    p.c[0].startup_probe = &p.probe;
    cJSON *s = pod_status_compute(&p.in);
    EXPECT(s, "containerStatuses.[0].started", "false");
    EXPECT(s, "containerStatuses.[0].ready", "false");
    cJSON_Delete(s);
    p.facts[0].startup = 1;
    s = pod_status_compute(&p.in);
    EXPECT(s, "containerStatuses.[0].started", "true");
    EXPECT(s, "containerStatuses.[0].ready", "true");
    cJSON_Delete(s);
}

static void test_phase_after_exit(void **state)
{
    (void)state;
    static const struct {
        const char *restart;
        int code0, code1;
        const char *phase;
    } cases[] = {
        {"Never", 0, 0, "Succeeded"}, {"Never", 0, 1, "Failed"},   {"OnFailure", 0, 0, "Succeeded"},
        {"OnFailure", 1, 0, "Running"}, {"Always", 0, 0, "Running"}, {"Always", 1, 1, "Running"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pod_t p;
        s_pod(&p, 0, 2, cases[i].restart);
        s_exited(&p, 0, false, cases[i].code0);
        s_exited(&p, 1, false, cases[i].code1);
        cJSON *s = pod_status_compute(&p.in);
        if (strcmp(s_at(s, "phase"), cases[i].phase) != 0)
            fail_msg("case %zu (%s, %d, %d): phase %s, want %s", i, cases[i].restart,
                     cases[i].code0, cases[i].code1, s_at(s, "phase"), cases[i].phase);
        if (strcmp(cases[i].phase, "Succeeded") == 0)
            EXPECT(s_condition(s, "Ready"), "reason", "PodCompleted");
        cJSON_Delete(s);
    }
}

static void test_crash_loop_is_running_with_last_state(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, 0, 1, "Always");
    s_crash_looping(&p, 0);
    cJSON *s = pod_status_compute(&p.in);
    EXPECT(s, "phase", "Running");
    EXPECT(s, "containerStatuses.[0].state.waiting.reason", "CrashLoopBackOff");
    EXPECT(s, "containerStatuses.[0].lastState.terminated.exitCode", "1");
    EXPECT(s, "containerStatuses.[0].restartCount", "3");
    EXPECT(s, "containerStatuses.[0].ready", "false");
    cJSON_Delete(s);
}

static void test_vm_failure(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, 0, 1, "Always");
    s_running(&p, 0, false);
    p.vm.state = VMLET__VM_STATE__VM_STATE_FAILED;
    p.vm.reason = "VMBootFailed";
    p.vm.message = "the guest did not answer within 60 s";
    cJSON *s = pod_status_compute(&p.in);
    EXPECT(s, "phase", "Failed");
    EXPECT(s, "reason", "VMBootFailed");
    EXPECT(s, "message", "the guest did not answer within 60 s");
    cJSON_Delete(s);
}

// activeDeadlineSeconds: Failed with the kubelet's reason at once, while
// the containers still run (Always would say Running), and after.
static void test_pod_failure_reason(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, 0, 2, "Always");
    s_running(&p, 0, false);
    s_exited(&p, 1, false, 143);
    p.vm.pod_failure_reason = "DeadlineExceeded";
    p.vm.pod_failure_message = "Pod was active on the node longer than the specified deadline";
    cJSON *s = pod_status_compute(&p.in);
    EXPECT(s, "phase", "Failed");
    EXPECT(s, "reason", "DeadlineExceeded");
    EXPECT(s, "message", "Pod was active on the node longer than the specified deadline");
    EXPECT(s, "containerStatuses.[0].state.running.startedAt", "2023-11-14T22:13:20Z");
    // Still stopping, yet not ready: Ready is False with the phase.
    EXPECT(s, "containerStatuses.[0].ready", "false");
    EXPECT(s_condition(s, "Ready"), "status", "False");
    EXPECT(s_condition(s, "Ready"), "message", "containers with unready status: [c0 c1]");
    cJSON_Delete(s);
    // The VM gone since: still that reason, not the stopped VM's.
    p.vm.state = VMLET__VM_STATE__VM_STATE_STOPPED;
    p.vm.reason = "Completed";
    s_exited(&p, 0, false, 137);
    s = pod_status_compute(&p.in);
    EXPECT(s, "phase", "Failed");
    EXPECT(s, "reason", "DeadlineExceeded");
    cJSON_Delete(s);
}

static void test_times_kept_while_unchanged(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, 0, 1, "Always");
    cJSON *live = cJSON_Parse(
        "{\"startTime\":\"2026-01-01T00:00:00Z\",\"conditions\":["
        "{\"type\":\"Ready\",\"status\":\"False\",\"lastTransitionTime\":\"2026-01-01T00:00:01Z\"},"
        "{\"type\":\"Initialized\",\"status\":\"False\",\"lastTransitionTime\":\"2026-01-01T00:00:02Z\"}]}");
    p.in.live = live;
    cJSON *s = pod_status_compute(&p.in);
    EXPECT(s, "startTime", "2026-01-01T00:00:00Z");
    EXPECT(s_condition(s, "Ready"), "lastTransitionTime", "2026-01-01T00:00:01Z"); // same status
    EXPECT(s_condition(s, "Initialized"), "lastTransitionTime", "2027-01-15T08:00:00Z"); // flipped
    cJSON_Delete(s);
    cJSON_Delete(live);
}

static void test_differs(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p, 0, 1, "Always");
    s_running(&p, 0, false);
    cJSON *desired = pod_status_compute(&p.in);
    cJSON *live = cJSON_Duplicate(desired, true);
    assert_false(pod_status_differs(desired, live));
    // The API server's extra fields and a lastProbeTime do not count.
    cJSON_AddStringToObject(live, "qosClass", "BestEffort");
    cJSON *cond = cJSON_GetArrayItem(cJSON_GetObjectItem(live, "conditions"), 0);
    cJSON_ReplaceItemInObject(cond, "lastProbeTime", cJSON_CreateString("2026-01-01T00:00:00Z"));
    assert_false(pod_status_differs(desired, live));
    // Another writer (the node controller) set Ready False: write again.
    cJSON *ready = (cJSON *)s_condition(live, "Ready");
    cJSON_ReplaceItemInObject(ready, "status", cJSON_CreateString("False"));
    assert_true(pod_status_differs(desired, live));
    cJSON_Delete(live);
    live = cJSON_Duplicate(desired, true);
    cJSON_ReplaceItemInObject(live, "phase", cJSON_CreateString("Pending"));
    assert_true(pod_status_differs(desired, live));
    assert_true(pod_status_differs(desired, NULL));
    cJSON_Delete(live);
    cJSON_Delete(desired);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_vm_yet),
        cmocka_unit_test(test_init_containers_pending),
        cmocka_unit_test(test_failed_init_with_restart_never_fails_the_pod),
        cmocka_unit_test(test_image_and_config_problems),
        cmocka_unit_test(test_running_and_readiness),
        cmocka_unit_test(test_startup_probe_gates_ready_and_started),
        cmocka_unit_test(test_phase_after_exit),
        cmocka_unit_test(test_crash_loop_is_running_with_last_state),
        cmocka_unit_test(test_vm_failure),
        cmocka_unit_test(test_pod_failure_reason),
        cmocka_unit_test(test_times_kept_while_unchanged),
        cmocka_unit_test(test_differs),
    };
    return TS_RUN(tests);
}
