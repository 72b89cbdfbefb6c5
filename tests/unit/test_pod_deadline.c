// activeDeadlineSeconds: when a pod is past it, with the cases of the
// kubelet's activeDeadlineHandler test (started 60 s ago).
#include "testsupport.h"

#include "pod_deadline.h"

static void test_past_deadline(void **state)
{
    (void)state;
    const int64_t now = 1800000000000, started = now - 60000;
    static const struct {
        bool has;
        int64_t seconds, start_offset_ms; // start = started + offset; -1: no start
        bool past;
    } cases[] = {
        {true, 30, 0, true},    // 60 s against 30
        {true, 120, 0, false},  // 60 s against 120
        {false, 0, 0, false},   // no deadline
        {true, 120, -1, false}, // no startTime yet
        {true, 60, 0, true},    // exactly at it: duration >= allowed
        {true, 60, 1, false},   // a millisecond before
        {true, 0, 0, true},     // lowered to nothing: at once
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t start = cases[i].start_offset_ms < 0 ? 0 : started + cases[i].start_offset_ms;
        bool got = pod_deadline_passed(cases[i].has, cases[i].seconds, start, now);
        if (got != cases[i].past)
            fail_msg("case %zu: past %d, want %d", i, got, cases[i].past);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_past_deadline),
    };
    return TS_RUN(tests);
}
