// The kubelet's probe rules as tables: sequences of attempts (S success,
// F failure, U unknown) and what the verdict and actions are after each;
// initial delay; startup gating; a new run resetting; the defaults and
// validation of the timing.
#include "testsupport.h"

#include "probe_state.h"

#include "vmlet/pb.h"

#include <string.h>

typedef struct {
    probe_kind_t kind;
    int success_threshold, failure_threshold;
    const char *attempts; // "SSFFU..."
    const char *verdicts; // after each attempt: s (success), f (failure), u (unknown)
    const char *restarts; // after each attempt: 'R' when a restart is asked, '.' else
} table_t;

static verdict_t s_verdict(char c)
{
    return c == 'S' || c == 's' ? VERDICT_SUCCESS : c == 'F' || c == 'f' ? VERDICT_FAILURE
                                                                        : VERDICT_UNKNOWN;
}

static void test_thresholds(void **state)
{
    (void)state;
    const table_t cases[] = {
        // readiness starts unready; one success makes it ready
        {PROBE_READINESS, 1, 3, "SFFFS", "sssfs", "....."},
        // two successes needed; unknown neither helps nor breaks a run
        {PROBE_READINESS, 2, 1, "SUSFSS", "ffsffs", "......"},
        // unknown changes nothing, however many
        {PROBE_READINESS, 1, 1, "SUUUU", "sssss", "....."},
        // a failure run interrupted by a success starts over
        {PROBE_READINESS, 1, 3, "SFFSFFF", "ssssssf", "......."},
        // liveness starts alive; three failures restart, then it holds
        {PROBE_LIVENESS, 1, 3, "FFFFF", "ssfff", "..R.."},
        {PROBE_LIVENESS, 1, 1, "SFS", "sfs", ".R."},
        // startup: unknown until it succeeds; failures restart
        {PROBE_STARTUP, 1, 2, "FF", "uf", ".R"},
        {PROBE_STARTUP, 1, 2, "FS", "us", ".."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const table_t *t = &cases[i];
        Vmlet__Probe p = VMLET__PROBE__INIT;
        PB_SET(&p, success_threshold, t->success_threshold);
        PB_SET(&p, failure_threshold, t->failure_threshold);
        probe_timing_t timing;
        assert_int_equal(probe_timing_of(&p, t->kind, &timing, NULL), 0);
        probe_state_t s;
        probe_state_init(&s, t->kind, &timing);
        for (size_t a = 0; t->attempts[a]; a++) {
            probe_effect_t e = probe_state_attempt(&s, s_verdict(t->attempts[a]));
            if (s.verdict != s_verdict(t->verdicts[a]) || e.restart != (t->restarts[a] == 'R'))
                fail_msg("case %zu (%s %s): after attempt %zu verdict %d restart %d, want %c %c", i,
                         probe_kind_name(t->kind), t->attempts, a + 1, s.verdict, e.restart,
                         t->verdicts[a], t->restarts[a]);
        }
    }
}

static void test_when_to_probe(void **state)
{
    (void)state;
    Vmlet__Probe p = VMLET__PROBE__INIT;
    PB_SET(&p, initial_delay_seconds, 5);
    probe_timing_t timing;
    assert_int_equal(probe_timing_of(&p, PROBE_LIVENESS, &timing, NULL), 0);
    probe_state_t s;
    probe_state_init(&s, PROBE_LIVENESS, &timing);
    probe_container_t c = {.running = true, .started_unix_ms = 1000000, .container_id = "run0",
                           .started = true};
    assert_false(probe_state_due(&s, &c, 1000000 + 4999)); // the initial delay
    assert_true(probe_state_due(&s, &c, 1000000 + 5000));
    c.started = false; // a startup probe has not succeeded: liveness waits
    assert_false(probe_state_due(&s, &c, 1000000 + 9000));
    c.started = true;
    c.running = false;
    assert_false(probe_state_due(&s, &c, 1000000 + 9000));
    c.running = true;
    // Failing into a restart holds the probe until the next run...
    for (int i = 0; i < 3; i++)
        probe_state_attempt(&s, VERDICT_FAILURE);
    assert_true(s.on_hold);
    assert_false(probe_state_due(&s, &c, 1000000 + 9000));
    // ...which starts over: alive again, the delay counted from its start.
    c.container_id = "run1", c.started_unix_ms = 2000000;
    assert_false(probe_state_due(&s, &c, 2000000 + 100));
    assert_false(s.on_hold);
    assert_int_equal(s.verdict, VERDICT_SUCCESS);
    assert_true(probe_state_due(&s, &c, 2000000 + 5000));
    // A startup probe stops once the container has started.
    probe_state_t st;
    probe_state_init(&st, PROBE_STARTUP, &timing);
    c.started = false;
    assert_true(probe_state_due(&st, &c, 2000000 + 5000));
    probe_state_attempt(&st, VERDICT_SUCCESS);
    assert_false(probe_state_due(&st, &c, 2000000 + 6000));
}

static void test_timing_defaults_and_validation(void **state)
{
    (void)state;
    Vmlet__Probe p = VMLET__PROBE__INIT;
    probe_timing_t t;
    assert_int_equal(probe_timing_of(&p, PROBE_READINESS, &t, NULL), 0);
    assert_int_equal(t.period_s, 10);
    assert_int_equal(t.timeout_s, 1);
    assert_int_equal(t.success_threshold, 1);
    assert_int_equal(t.failure_threshold, 3);
    assert_int_equal(t.initial_delay_s, 0);
    vmlet_err_t err = {0};
    PB_SET(&p, success_threshold, 2);
    assert_int_equal(probe_timing_of(&p, PROBE_READINESS, &t, &err), 0);
    assert_int_equal(probe_timing_of(&p, PROBE_LIVENESS, &t, &err), -1);
    assert_non_null(strstr(err.msg, "livenessProbe.successThreshold: must be 1"));
    assert_int_equal(probe_timing_of(&p, PROBE_STARTUP, &t, &err), -1);
    p = (Vmlet__Probe)VMLET__PROBE__INIT;
    PB_SET(&p, period_seconds, -1);
    assert_int_equal(probe_timing_of(&p, PROBE_READINESS, &t, &err), -1);
    assert_non_null(strstr(err.msg, "periodSeconds"));
    p = (Vmlet__Probe)VMLET__PROBE__INIT;
    PB_SET(&p, initial_delay_seconds, -3);
    assert_int_equal(probe_timing_of(&p, PROBE_READINESS, &t, &err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thresholds),
        cmocka_unit_test(test_when_to_probe),
        cmocka_unit_test(test_timing_defaults_and_validation),
    };
    return TS_RUN(tests);
}
