// Envelope round trips for every body type, and topic names.
#include "testsupport.h"

#include "vmlet/envelope.h"

#include <string.h>

// One filled example per body case, built on the stack.
typedef struct {
    Vmlet__PodRef pod;
    Vmlet__PodDesired pod_desired;
    Vmlet__PodDeleted pod_deleted;
    Vmlet__ImageRequest image_request;
    Vmlet__ImageReady image_ready;
    Vmlet__ImageConfig image_config;
    Vmlet__ImageFailed image_failed;
    Vmlet__LaunchRequest launch_request;
    Vmlet__StopRequest stop_request;
    Vmlet__RestartRequest restart_request;
    Vmlet__VmEvent vm_event;
    Vmlet__ContainerStatus status;
    Vmlet__ContainerStatus *statuses[1];
    Vmlet__LauncherCapacity capacity;
    Vmlet__ProbeResult probe_result;
    Vmlet__ImagePullProgress progress;
    Vmlet__ExecRequest exec_request;
    Vmlet__ExecResult exec_result;
    Vmlet__PodEvent pod_event;
    Vmlet__PodSpec pod_spec;
    Vmlet__Container container;
    Vmlet__Container *containers[1];
    char *args[2];
} examples_t;

static void s_fill_examples(examples_t *x)
{
    x->pod = (Vmlet__PodRef)VMLET__POD_REF__INIT;
    x->pod.uid = "0b6f1c8e-uid", x->pod.namespace_ = "default", x->pod.name = "web-0";
    x->pod_desired = (Vmlet__PodDesired)VMLET__POD_DESIRED__INIT;
    x->pod_desired.pod = &x->pod, x->pod_desired.spec_hash = "abc123";
    x->pod_deleted = (Vmlet__PodDeleted)VMLET__POD_DELETED__INIT;
    x->pod_deleted.pod = &x->pod;
    x->pod_deleted.has_grace_period_seconds = 1, x->pod_deleted.grace_period_seconds = 30;
    x->image_request = (Vmlet__ImageRequest)VMLET__IMAGE_REQUEST__INIT;
    x->image_request.image = "alpine", x->image_request.requested_by = &x->pod;
    x->image_config = (Vmlet__ImageConfig)VMLET__IMAGE_CONFIG__INIT;
    x->image_config.working_dir = "/srv";
    x->image_ready = (Vmlet__ImageReady)VMLET__IMAGE_READY__INIT;
    x->image_ready.image = "alpine", x->image_ready.digest = "sha256:00ff";
    x->image_ready.config = &x->image_config;
    x->image_failed = (Vmlet__ImageFailed)VMLET__IMAGE_FAILED__INIT;
    x->image_failed.reason = "InvalidImageName", x->image_failed.message = "bad: ::";
    x->launch_request = (Vmlet__LaunchRequest)VMLET__LAUNCH_REQUEST__INIT;
    x->launch_request.pod = &x->pod, x->launch_request.spec_hash = "abc123";
    x->stop_request = (Vmlet__StopRequest)VMLET__STOP_REQUEST__INIT;
    x->stop_request.pod = &x->pod, x->stop_request.reason = "deleted";
    x->restart_request = (Vmlet__RestartRequest)VMLET__RESTART_REQUEST__INIT;
    x->restart_request.pod = &x->pod, x->restart_request.container = "app";
    x->status = (Vmlet__ContainerStatus)VMLET__CONTAINER_STATUS__INIT;
    x->status.name = "app", x->status.has_restart_count = 1, x->status.restart_count = 2;
    x->statuses[0] = &x->status;
    x->vm_event = (Vmlet__VmEvent)VMLET__VM_EVENT__INIT;
    x->vm_event.pod = &x->pod, x->vm_event.has_state = 1;
    x->vm_event.state = VMLET__VM_STATE__VM_STATE_RUNNING;
    x->vm_event.n_containers = 1, x->vm_event.containers = x->statuses;
    x->capacity = (Vmlet__LauncherCapacity)VMLET__LAUNCHER_CAPACITY__INIT;
    x->capacity.launcher_id = "host-a", x->capacity.has_pods = 1, x->capacity.pods = 110;
    x->probe_result = (Vmlet__ProbeResult)VMLET__PROBE_RESULT__INIT;
    x->probe_result.pod = &x->pod, x->probe_result.has_outcome = 1;
    x->probe_result.outcome = VMLET__PROBE_OUTCOME__PROBE_OUTCOME_FAILURE;
    x->progress = (Vmlet__ImagePullProgress)VMLET__IMAGE_PULL_PROGRESS__INIT;
    x->progress.image = "alpine", x->progress.has_bytes_done = 1, x->progress.bytes_done = 42;
    x->exec_request = (Vmlet__ExecRequest)VMLET__EXEC_REQUEST__INIT;
    x->exec_request.request_id = "r-1", x->exec_request.pod = &x->pod;
    x->exec_request.container = "app";
    x->exec_result = (Vmlet__ExecResult)VMLET__EXEC_RESULT__INIT;
    x->exec_result.request_id = "r-1", x->exec_result.has_exit_code = 1;
    x->exec_result.exit_code = 3;
    x->pod_event = (Vmlet__PodEvent)VMLET__POD_EVENT__INIT;
    x->pod_event.pod = &x->pod, x->pod_event.reason = "FailedPostStartHook";
    x->container = (Vmlet__Container)VMLET__CONTAINER__INIT;
    x->container.name = "app", x->container.image = "alpine";
    x->args[0] = "sleep", x->args[1] = "3600";
    x->container.n_args = 2, x->container.args = x->args;
    x->containers[0] = &x->container;
    x->pod_spec = (Vmlet__PodSpec)VMLET__POD_SPEC__INIT;
    x->pod_spec.pod = &x->pod, x->pod_spec.n_containers = 1;
    x->pod_spec.containers = x->containers;
}

// Points env's body at the example for `c`; false if the test lacks one.
static bool s_set_body(vmlet_envelope_t *env, examples_t *x, vmlet_body_case_t c)
{
    env->body_case = c;
    switch (c) {
    case VMLET__ENVELOPE__BODY_POD_DESIRED: env->pod_desired = &x->pod_desired; return true;
    case VMLET__ENVELOPE__BODY_POD_DELETED: env->pod_deleted = &x->pod_deleted; return true;
    case VMLET__ENVELOPE__BODY_IMAGE_REQUEST: env->image_request = &x->image_request; return true;
    case VMLET__ENVELOPE__BODY_IMAGE_READY: env->image_ready = &x->image_ready; return true;
    case VMLET__ENVELOPE__BODY_IMAGE_FAILED: env->image_failed = &x->image_failed; return true;
    case VMLET__ENVELOPE__BODY_LAUNCH_REQUEST: env->launch_request = &x->launch_request; return true;
    case VMLET__ENVELOPE__BODY_STOP_REQUEST: env->stop_request = &x->stop_request; return true;
    case VMLET__ENVELOPE__BODY_RESTART_REQUEST: env->restart_request = &x->restart_request; return true;
    case VMLET__ENVELOPE__BODY_VM_EVENT: env->vm_event = &x->vm_event; return true;
    case VMLET__ENVELOPE__BODY_LAUNCHER_CAPACITY: env->launcher_capacity = &x->capacity; return true;
    case VMLET__ENVELOPE__BODY_PROBE_RESULT: env->probe_result = &x->probe_result; return true;
    case VMLET__ENVELOPE__BODY_POD_SPEC: env->pod_spec = &x->pod_spec; return true;
    case VMLET__ENVELOPE__BODY_IMAGE_PULL_PROGRESS: env->image_pull_progress = &x->progress; return true;
    case VMLET__ENVELOPE__BODY_EXEC_REQUEST: env->exec_request = &x->exec_request; return true;
    case VMLET__ENVELOPE__BODY_EXEC_RESULT: env->exec_result = &x->exec_result; return true;
    case VMLET__ENVELOPE__BODY_POD_EVENT: env->pod_event = &x->pod_event; return true;
    default: return false;
    }
}

static void test_every_body_round_trips(void **state)
{
    (void)state;
    examples_t x;
    s_fill_examples(&x);
    vmlet_body_case_t cases[VMLET_ENVELOPE_MAX_BODIES];
    size_t n = vmlet_envelope_body_cases(cases, VMLET_ENVELOPE_MAX_BODIES);
    assert_true(n >= 12 && n <= VMLET_ENVELOPE_MAX_BODIES);
    for (size_t i = 0; i < n; i++) {
        Vmlet__Header header = VMLET__HEADER__INIT;
        header.message_id = "m-1", header.has_seq = 1, header.seq = 42;
        vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
        env.header = &header;
        if (!s_set_body(&env, &x, cases[i]))
            fail_msg("no example for body case %d (%s): add one", cases[i],
                     vmlet_envelope_topic(cases[i]));
        size_t len;
        uint8_t *bytes = vmlet_envelope_pack(&env, &len);
        assert_non_null(bytes);
        vmlet_envelope_t *back = vmlet_envelope_unpack(bytes, len, NULL);
        assert_non_null(back);
        assert_int_equal(back->body_case, cases[i]);
        assert_string_equal(back->header->message_id, "m-1");
        assert_int_equal(back->header->seq, 42);
        // Packing the copy gives the same bytes: nothing lost or invented.
        size_t len2;
        uint8_t *bytes2 = vmlet_envelope_pack(back, &len2);
        assert_int_equal(len, len2);
        assert_memory_equal(bytes, bytes2, len);
        free(bytes);
        free(bytes2);
        vmlet_envelope_free(&back);
        assert_null(back);
    }
}

static void test_fields_survive(void **state)
{
    (void)state;
    examples_t x;
    s_fill_examples(&x);
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    s_set_body(&env, &x, VMLET__ENVELOPE__BODY_POD_SPEC);
    size_t len;
    uint8_t *bytes = vmlet_envelope_pack(&env, &len);
    vmlet_envelope_t *back = vmlet_envelope_unpack(bytes, len, NULL);
    assert_string_equal(back->pod_spec->pod->namespace_, "default");
    assert_int_equal(back->pod_spec->n_containers, 1);
    assert_string_equal(back->pod_spec->containers[0]->args[1], "3600");
    assert_false(back->pod_spec->has_active_deadline_seconds); // absent stays absent
    free(bytes);
    vmlet_envelope_free(&back);
}

static void test_topics(void **state)
{
    (void)state;
    assert_string_equal(vmlet_envelope_topic(VMLET__ENVELOPE__BODY_POD_DESIRED), "PodDesired");
    assert_string_equal(vmlet_envelope_topic(VMLET__ENVELOPE__BODY_VM_EVENT), "VmEvent");
    assert_null(vmlet_envelope_topic(VMLET__ENVELOPE__BODY__NOT_SET));
    assert_null(vmlet_envelope_topic((vmlet_body_case_t)999));
    assert_int_equal(vmlet_envelope_case_for_topic("ProbeResult"),
                     VMLET__ENVELOPE__BODY_PROBE_RESULT);
    assert_int_equal(vmlet_envelope_case_for_topic("Nope"), VMLET__ENVELOPE__BODY__NOT_SET);
    // Every case has a distinct topic that maps back to it.
    vmlet_body_case_t cases[VMLET_ENVELOPE_MAX_BODIES];
    size_t n = vmlet_envelope_body_cases(cases, VMLET_ENVELOPE_MAX_BODIES);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(vmlet_envelope_case_for_topic(vmlet_envelope_topic(cases[i])),
                         cases[i]);
}

static void test_garbage_is_rejected_with_message(void **state)
{
    (void)state;
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    vmlet_err_t err = {0};
    assert_null(vmlet_envelope_unpack(garbage, sizeof garbage, &err));
    assert_non_null(strstr(err.msg, "malformed envelope (5 bytes)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_body_round_trips),
        cmocka_unit_test(test_fields_survive),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_garbage_is_rejected_with_message),
    };
    return TS_RUN(tests);
}
