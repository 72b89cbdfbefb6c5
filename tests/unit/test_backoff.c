// Back-off arithmetic: growth, cap, jitter bounds, and the running state.
#include "testsupport.h"

#include "vmlet/backoff.h"

static const vmlet_backoff_policy_t policy = {
    .initial_ms = 100, .max_ms = 5000, .multiplier = 2, .jitter = 0.5};

static void test_delays_grow_then_cap(void **state)
{
    (void)state;
    static const struct {
        unsigned attempt;
        int64_t want;
    } cases[] = {{0, 100}, {1, 200}, {2, 400}, {5, 3200}, {6, 5000}, {7, 5000}, {1000, 5000}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(vmlet_backoff_delay_ms(&policy, cases[i].attempt, 0), cases[i].want);
}

static void test_jitter_only_shortens_within_bound(void **state)
{
    (void)state;
    assert_int_equal(vmlet_backoff_delay_ms(&policy, 3, 0.5), 800 - 200);
    assert_int_equal(vmlet_backoff_delay_ms(&policy, 3, 0.0), 800);
    int64_t nearly_one = vmlet_backoff_delay_ms(&policy, 3, 0.999999);
    assert_true(nearly_one >= 400 && nearly_one <= 401);
    // Out-of-range random values are clamped, not trusted.
    assert_int_equal(vmlet_backoff_delay_ms(&policy, 3, -1), 800);
    assert_true(vmlet_backoff_delay_ms(&policy, 3, 7) >= 400);
}

static void test_multiplier_one_is_constant(void **state)
{
    (void)state;
    vmlet_backoff_policy_t flat = {.initial_ms = 250, .max_ms = 1000, .multiplier = 1};
    for (unsigned a = 0; a < 50; a++)
        assert_int_equal(vmlet_backoff_delay_ms(&flat, a, 0.3), 250);
}

static void test_state_tracks_failures_and_success(void **state)
{
    (void)state;
    vmlet_backoff_t b;
    vmlet_backoff_init(&b, &policy);
    assert_true(vmlet_backoff_may_try(&b, 0));
    assert_int_equal(vmlet_backoff_failed(&b, 1000, 0), 100);
    assert_false(vmlet_backoff_may_try(&b, 1099));
    assert_true(vmlet_backoff_may_try(&b, 1100));
    assert_int_equal(vmlet_backoff_failed(&b, 1100, 0), 200);
    assert_int_equal(b.attempt, 2);
    vmlet_backoff_succeeded(&b);
    assert_int_equal(b.attempt, 0);
    assert_true(vmlet_backoff_may_try(&b, 0));
    assert_int_equal(vmlet_backoff_failed(&b, 0, 0), 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delays_grow_then_cap),
        cmocka_unit_test(test_jitter_only_shortens_within_bound),
        cmocka_unit_test(test_multiplier_one_is_constant),
        cmocka_unit_test(test_state_tracks_failures_and_success),
    };
    return TS_RUN(tests);
}
