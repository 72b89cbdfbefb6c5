// Dispatch through the route table: handled, failed, unrouted, and unknown
// or malformed input counted, logged once, and dropped.
#include "testsupport.h"

#include "vmlet/dispatch.h"
#include "vmlet/timeutil.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    int desired;
    int deleted;
    char last_uid[64];
} seen_t;

static int s_on_desired(void *ctx, const vmlet_envelope_t *env)
{
    seen_t *seen = ctx;
    seen->desired++;
    snprintf(seen->last_uid, sizeof seen->last_uid, "%s", env->pod_desired->pod->uid);
    return 0;
}

static int s_on_deleted(void *ctx, const vmlet_envelope_t *env)
{
    (void)env;
    ((seen_t *)ctx)->deleted++;
    return -1; // this handler fails
}

static const vmlet_route_t routes[] = {
    {VMLET__ENVELOPE__BODY_POD_DESIRED, s_on_desired},
    {VMLET__ENVELOPE__BODY_POD_DELETED, s_on_deleted},
    VMLET_ROUTES_END,
};

typedef struct {
    seen_t seen;
    vmlet_metrics_t *metrics;
    vmlet_log_t *log;
    vmlet_dispatch_t *dispatch;
    int log_pipe[2];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->metrics = vmlet_metrics_new();
    f->log = vmlet_log_new("test", "text", "debug", NULL);
    assert_int_equal(pipe2(f->log_pipe, O_NONBLOCK), 0);
    vmlet_log_set_fd(f->log, f->log_pipe[1]);
    f->dispatch = vmlet_dispatch_new(routes, &f->seen, f->metrics, f->log);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    vmlet_dispatch_destroy(&f->dispatch);
    vmlet_dispatch_destroy(&f->dispatch); // safe twice
    vmlet_log_destroy(&f->log);
    vmlet_metrics_destroy(&f->metrics);
    close(f->log_pipe[0]);
    close(f->log_pipe[1]);
    free(f);
    return 0;
}

static uint8_t *s_pack_desired(const char *uid, size_t *len)
{
    Vmlet__PodRef pod = VMLET__POD_REF__INIT;
    pod.uid = (char *)uid;
    Vmlet__PodDesired desired = VMLET__POD_DESIRED__INIT;
    desired.pod = &pod;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_POD_DESIRED;
    env.pod_desired = &desired;
    return vmlet_envelope_pack(&env, len);
}

static int s_log_lines(fixture_t *f)
{
    char buf[65536];
    ssize_t n = read(f->log_pipe[0], buf, sizeof buf);
    int lines = 0;
    for (ssize_t i = 0; i < n; i++)
        lines += buf[i] == '\n';
    return lines;
}

static double s_metric(fixture_t *f, const char *series)
{
    char *text = vmlet_metrics_render(f->metrics);
    double v = ts_metric_value(text, series);
    free(text);
    return v;
}

static void test_routes_by_body_case(void **state)
{
    fixture_t *f = *state;
    size_t len;
    uint8_t *bytes = s_pack_desired("uid-1", &len);
    int rc = -5;
    assert_int_equal(vmlet_dispatch_bytes(f->dispatch, bytes, len, &rc), VMLET_DISPATCH_HANDLED);
    assert_int_equal(rc, 0);
    assert_int_equal(f->seen.desired, 1);
    assert_string_equal(f->seen.last_uid, "uid-1");
    assert_int_equal(s_log_lines(f), 0); // success is not logged per message
    assert_true(s_metric(f, "vmlet_bus_messages_total{type=\"PodDesired\",result=\"handled\"}") ==
                1);
    free(bytes);
}

static void test_failed_handler_is_counted(void **state)
{
    fixture_t *f = *state;
    Vmlet__PodDeleted deleted = VMLET__POD_DELETED__INIT;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_POD_DELETED;
    env.pod_deleted = &deleted;
    int rc = 0;
    assert_int_equal(vmlet_dispatch_envelope(f->dispatch, &env, &rc), VMLET_DISPATCH_FAILED);
    assert_int_equal(rc, -1);
    assert_int_equal(f->seen.deleted, 1);
    assert_int_equal(vmlet_dispatch_count(f->dispatch, VMLET_DISPATCH_FAILED), 1);
}

static void test_unrouted_known_type_is_dropped(void **state)
{
    fixture_t *f = *state;
    Vmlet__ProbeResult probe = VMLET__PROBE_RESULT__INIT;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_PROBE_RESULT;
    env.probe_result = &probe;
    for (int i = 0; i < 3; i++)
        assert_int_equal(vmlet_dispatch_envelope(f->dispatch, &env, NULL),
                         VMLET_DISPATCH_UNROUTED);
    assert_int_equal(s_log_lines(f), 1); // logged once, counted thrice
    assert_true(s_metric(f, "vmlet_bus_messages_total{type=\"ProbeResult\",result=\"unrouted\"}") ==
                3);
}

static void test_unknown_body_from_a_newer_sender(void **state)
{
    fixture_t *f = *state;
    // Field 200, length-delimited, 2 bytes: a body type this build lacks.
    const uint8_t newer[] = {0xc2, 0x0c, 0x02, 0x08, 0x01};
    for (int i = 0; i < 5; i++)
        assert_int_equal(vmlet_dispatch_bytes(f->dispatch, newer, sizeof newer, NULL),
                         VMLET_DISPATCH_UNKNOWN);
    // An envelope with no body at all is unknown too.
    vmlet_envelope_t empty = VMLET__ENVELOPE__INIT;
    assert_int_equal(vmlet_dispatch_envelope(f->dispatch, &empty, NULL), VMLET_DISPATCH_UNKNOWN);
    assert_int_equal(vmlet_dispatch_count(f->dispatch, VMLET_DISPATCH_UNKNOWN), 6);
    assert_int_equal(s_log_lines(f), 1);
    assert_int_equal(f->seen.desired + f->seen.deleted, 0);
}

static void test_malformed_random_and_truncated(void **state)
{
    fixture_t *f = *state;
    size_t len;
    uint8_t *bytes = s_pack_desired("uid-truncated", &len);
    unsigned long malformed = 0;
    // Every proper prefix of a valid message: none may reach a handler.
    for (size_t cut = 1; cut < len; cut++) {
        vmlet_dispatch_result_t r = vmlet_dispatch_bytes(f->dispatch, bytes, cut, NULL);
        assert_int_not_equal(r, VMLET_DISPATCH_FAILED);
        if (r == VMLET_DISPATCH_HANDLED)
            fail_msg("a %zu-byte prefix of a %zu-byte message was handled", cut, len);
        malformed += r == VMLET_DISPATCH_MALFORMED;
    }
    assert_true(malformed > 0);
    // Random bytes: counted, never crash, handler sees only well-formed input.
    for (int i = 0; i < 20000; i++) {
        uint8_t noise[64];
        size_t n = 1 + (size_t)(vmlet_random_u64() % sizeof noise);
        vmlet_random_bytes(noise, n);
        vmlet_dispatch_bytes(f->dispatch, noise, n, NULL);
    }
    unsigned long total = 0;
    for (int r = 0; r < VMLET_DISPATCH_RESULTS; r++)
        total += vmlet_dispatch_count(f->dispatch, r);
    assert_int_equal(total, (len - 1) + 20000);
    assert_true(vmlet_dispatch_count(f->dispatch, VMLET_DISPATCH_MALFORMED) > 10000);
    assert_true(s_metric(f, "vmlet_bus_messages_total{type=\"unknown\",result=\"malformed\"}") ==
                (double)vmlet_dispatch_count(f->dispatch, VMLET_DISPATCH_MALFORMED));
    // Logged once per kind, not once per message.
    assert_true(s_log_lines(f) <= 5);
    free(bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routes_by_body_case, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_handler_is_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unrouted_known_type_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_body_from_a_newer_sender, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_random_and_truncated, setup, teardown),
    };
    return TS_RUN(tests);
}
