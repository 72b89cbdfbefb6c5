// The kubelet's container rules: states and lastState through restarts,
// restartPolicy, CrashLoopBackOff delays (0, 10, 20, 40 ... 300 s, starting
// over after a long quiet), and the status that goes into a VmEvent.
#include "testsupport.h"

#include "ctr.h"
#include "vm_size.h"

#include "vmlet/pb.h"

#include <stdio.h>
#include <string.h>

static const ctr_backoff_settings_t backoff = {10000, 300000};

static void s_run_and_exit(ctr_t *c, unsigned instance, int64_t start, int64_t end, int code)
{
    ctr_started(c, instance, start);
    ctr_exit_t e = {.exit_code = code, .started_unix_ms = start, .finished_unix_ms = end};
    ctr_exited(c, &e);
}

static void test_restart_policy(void **state)
{
    (void)state;
    struct {
        const char *policy;
        bool init;
        int code;
        bool restart;
    } cases[] = {
        {"Always", false, 0, true},     {"Always", false, 3, true},
        {"OnFailure", false, 0, false}, {"OnFailure", false, 3, true},
        {"Never", false, 0, false},     {"Never", false, 3, false},
        {"Always", true, 0, false},     {"Always", true, 1, true},
        {"OnFailure", true, 1, true},   {"Never", true, 1, false},
        {NULL, false, 0, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (ctr_should_restart(cases[i].policy, cases[i].init, cases[i].code) != cases[i].restart)
            fail_msg("case %zu: %s init=%d exit %d", i, cases[i].policy, cases[i].init,
                     cases[i].code);
}

static void test_crash_loop_back_off(void **state)
{
    (void)state;
    ctr_t c;
    ctr_init(&c, "app", false);
    assert_string_equal(c.reason, "ContainerCreating");
    int64_t t = 1000000;
    int64_t want_delays[] = {0, 10000, 20000, 40000, 80000, 160000, 300000, 300000};
    for (unsigned run = 0; run < 8; run++) {
        s_run_and_exit(&c, run, t, t + 1000, 3);
        int64_t at = ctr_schedule_restart(&c, &backoff, "web_default(u1)");
        if (at - (t + 1000) != want_delays[run])
            fail_msg("run %u: restart after %lld ms, want %lld", run, (long long)(at - t - 1000),
                     (long long)want_delays[run]);
        if (want_delays[run]) {
            assert_int_equal(c.phase, CTR_WAITING);
            assert_string_equal(c.reason, "CrashLoopBackOff");
            char want[128];
            snprintf(want, sizeof want, "back-off %llds restarting failed container=app pod=web_default(u1)",
                     (long long)(want_delays[run] / 1000));
            assert_string_equal(c.message, want);
            assert_true(c.has_last);
            assert_int_equal(c.last.exit_code, 3);
        } else {
            assert_int_equal(c.phase, CTR_TERMINATED); // restarts at once
        }
        t = at;
    }
    // After a long quiet (it ran for more than twice the maximum) it starts over.
    s_run_and_exit(&c, 8, t, t + 11 * 60 * 1000, 3);
    int64_t at = ctr_schedule_restart(&c, &backoff, "p");
    assert_int_equal(at, t + 11 * 60 * 1000);
    s_run_and_exit(&c, 9, at, at + 500, 3);
    assert_int_equal(ctr_schedule_restart(&c, &backoff, "p") - (at + 500), 10000);
}

static void test_status_fields(void **state)
{
    (void)state;
    ctr_t c;
    ctr_init(&c, "app", false);
    Vmlet__ContainerStatus *st = ctr_status(&c, "busybox", NULL, "uid-1");
    assert_int_equal(st->state->state_case, VMLET__CONTAINER_STATE__STATE_WAITING);
    assert_string_equal(st->state->waiting->reason, "ContainerCreating");
    assert_null(st->container_id); // nothing ran yet
    assert_null(st->last_state);
    vmlet__container_status__free_unpacked(st, NULL);

    s_run_and_exit(&c, 0, 1000, 2000, 0);
    ctr_started(&c, 1, 3000);
    st = ctr_status(&c, "busybox", "sha256:aa", "uid-1");
    assert_int_equal(st->state->state_case, VMLET__CONTAINER_STATE__STATE_RUNNING);
    assert_int_equal(st->state->running->started_unix_ms, 3000);
    assert_int_equal(st->last_state->terminated->exit_code, 0);
    assert_string_equal(st->last_state->terminated->reason, "Completed");
    assert_int_equal(st->restart_count, 1);
    assert_true(st->started);
    assert_string_equal(st->container_id, "vmlet://uid-1/app/1");
    assert_string_equal(st->image_id, "sha256:aa");
    vmlet__container_status__free_unpacked(st, NULL);

    ctr_exit_t e = {.exit_code = 137, .signal = 9, .started_unix_ms = 3000, .finished_unix_ms = 4000};
    ctr_exited(&c, &e);
    st = ctr_status(&c, NULL, NULL, "uid-1");
    assert_int_equal(st->state->terminated->exit_code, 137);
    assert_int_equal(st->state->terminated->signal, 9);
    assert_string_equal(st->state->terminated->reason, "Error");
    assert_int_equal(st->last_state->terminated->finished_unix_ms, 2000); // the run before
    vmlet__container_status__free_unpacked(st, NULL);
}

static void test_vm_size(void **state)
{
    (void)state;
    vm_size_settings_t s = {.default_vcpus = 1, .max_vcpus = 2,
                            .default_memory_bytes = 256LL << 20,
                            .guest_overhead_bytes = 64LL << 20,
                            .vmm_overhead_bytes = 160LL << 20};
    Vmlet__Resources ra = VMLET__RESOURCES__INIT, rb = VMLET__RESOURCES__INIT,
                     ri = VMLET__RESOURCES__INIT;
    PB_SET(&ra, cpu_limit_millis, 500);
    PB_SET(&ra, memory_limit_bytes, 100LL << 20);
    PB_SET(&ra, cpu_request_millis, 250);
    PB_SET(&rb, cpu_limit_millis, 600);
    PB_SET(&rb, memory_limit_bytes, (100LL << 20) + 1);
    PB_SET(&ri, cpu_limit_millis, 1800); // bigger, but alone
    PB_SET(&ri, memory_limit_bytes, 50LL << 20);
    Vmlet__Container a = VMLET__CONTAINER__INIT, b = VMLET__CONTAINER__INIT,
                     i = VMLET__CONTAINER__INIT;
    a.resources = &ra, b.resources = &rb, i.resources = &ri;
    Vmlet__Container *regular[] = {&a, &b}, *inits[] = {&i};
    Vmlet__PodSpec pod = VMLET__POD_SPEC__INIT;
    pod.containers = regular, pod.n_containers = 2;
    vm_size_t v;
    vm_size_of(&pod, &s, &v);
    assert_int_equal(v.vcpus, 2);                    // 1.1 CPUs rounded up
    assert_int_equal(v.memory_bytes, 265LL << 20);   // 200 MiB + 1 byte + 64 MiB, whole MiB
    assert_int_equal(v.cpu_millis_request, 250);
    assert_int_equal(v.host_memory_bytes, (265LL + 160) << 20);
    pod.init_containers = inits, pod.n_init_containers = 1;
    vm_size_of(&pod, &s, &v);
    assert_int_equal(v.vcpus, 2);                    // 1.8 from the init container
    assert_int_equal(v.cpu_millis_limit, 1800);
    // No limits: the defaults; more than the host has: capped.
    Vmlet__Container plain = VMLET__CONTAINER__INIT;
    Vmlet__Container *one[] = {&plain};
    Vmlet__PodSpec bare = VMLET__POD_SPEC__INIT;
    bare.containers = one, bare.n_containers = 1;
    vm_size_of(&bare, &s, &v);
    assert_int_equal(v.vcpus, 1);
    assert_int_equal(v.memory_bytes, 320LL << 20);
    assert_int_equal(v.memory_bytes_limit, 256LL << 20);
    PB_SET(&ra, cpu_limit_millis, 8000);
    one[0] = &a;
    vm_size_of(&bare, &s, &v);
    assert_int_equal(v.vcpus, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_policy),
        cmocka_unit_test(test_crash_loop_back_off),
        cmocka_unit_test(test_status_fields),
        cmocka_unit_test(test_vm_size),
    };
    return TS_RUN(tests);
}
