// Lifecycle hooks and termination messages on a real node, one VM: a pod
// of five containers, each a case, under restartPolicy Always:
//  - post: its postStart exec hook waits for a file the test makes
//    through kubectl exec, then writes one the container reads; until the
//    hook is done the container is Waiting (ContainerCreating), not
//    Running; its log then shows what the hook wrote;
//  - failing: a postStart hook that exits 7: FailedPostStartHook event
//    with the hook's output, the container killed and started again;
//  - term: writes /dev/termination-log and exits 1: the message is in its
//    terminated state (lastState once it runs again);
//  - fallback: FallbackToLogsOnError, no file, 100 lines then exit 2: the
//    message is the log's last 80 lines;
//  - pre: a preStop httpGet hook to a server of the test's own on
//    127.0.0.1 that answers after 2 s; on `kubectl delete` the request
//    comes first and SIGTERM reaches the container only after the answer.
#include "testsupport.h"
#include "ts_http_target.h"
#include "ts_node.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 240000 // a first boot under TCG, on a shared machine
#define PRESTOP_DELAY_MS 2000

typedef struct {
    ts_node_t node;
    ts_http_target_t *target;
    char uid[64];
} fixture_t;

static fixture_t *g;

#define KUBECTL "%s --kubeconfig %s -n %s "
#define KARGS g->node.kubectl, g->node.kubeconfig, g->node.ns

// jsonpath of the pod, trimmed; NULL when kubectl fails.
static char *s_get(const char *jsonpath)
{
    char *out = NULL;
    if (ts_sh(&out, KUBECTL "get pod hooks -o jsonpath='%s'", KARGS, jsonpath) != 0) {
        free(out);
        return NULL;
    }
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    return out;
}

// A container's status field, e.g. ("post", "state.running.startedAt").
static char *s_ctr(const char *container, const char *field)
{
    char path[300];
    snprintf(path, sizeof path, "{.status.containerStatuses[?(@.name==\"%s\")].%s}", container,
             field);
    return s_get(path);
}

typedef struct {
    const char *container;
    const char *field;
    const char *want; // substring; "" = any non-empty value
} field_wait_t;

static bool s_field_has(void *arg)
{
    const field_wait_t *w = arg;
    char *v = s_ctr(w->container, w->field);
    bool ok = v && *v && strstr(v, w->want);
    free(v);
    return ok;
}

static bool s_wait_field(const char *container, const char *field, const char *want, int ms)
{
    field_wait_t w = {container, field, want};
    if (ts_poll(s_field_has, &w, ms))
        return true;
    char *v = s_get("{.status.containerStatuses}");
    print_message("timed out waiting for %s's %s to have \"%s\"; statuses: %s\n", container, field,
                  want, v ? v : "?");
    free(v);
    return false;
}

static char *s_log_path(const char *container, int run)
{
    return vmlet_xasprintf("%s/pods/%s_hooks_%s/%s/%d.log", g->node.stack.dir, g->node.ns, g->uid,
                           container, run);
}

static char *s_read(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = vmlet_xcalloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static bool s_event(const char *reason, const char *container, const char *needle)
{
    char *out = NULL;
    ts_sh(&out,
          KUBECTL "get events --field-selector involvedObject.name=hooks,reason=%s "
                  "-o jsonpath='{range .items[*]}{.involvedObject.fieldPath} {.message}{\"\\n\"}{end}'",
          KARGS, reason);
    char field[128];
    snprintf(field, sizeof field, "spec.containers{%s} ", container);
    bool ok = out && strstr(out, field) && strstr(out, needle);
    if (!ok)
        print_message("%s events: %s\n", reason, out ? out : "?");
    free(out);
    return ok;
}

// --- setup -------------------------------------------------------------------------------

static int setup(void **state)
{
    (void)state;
    g = vmlet_xcalloc(1, sizeof *g);
    g->target = ts_http_target_start();
    assert_non_null(g->target);
    ts_http_route_t slow = {.delay_ms = PRESTOP_DELAY_MS, .body = "stopping"};
    ts_http_target_route(g->target, "/prestop", &slow);
    assert_int_equal(ts_node_start(&g->node, "hooks", NULL), 0);
    char manifest[8192];
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: Pod\nmetadata: {name: hooks, namespace: %s}\n"
             "spec:\n  nodeName: %s\n  terminationGracePeriodSeconds: 30\n"
             "  containers:\n"
             "  - name: post\n    image: %s\n"
             "    command: [sh, -c, 'while [ ! -f /tmp/hooked ]; do sleep 0.2; done; "
             "echo \"read: $(cat /tmp/hooked)\"; exec sleep 100000']\n"
             "    lifecycle:\n      postStart:\n        exec:\n          command: [sh, -c, "
             "'while [ ! -f /tmp/release ]; do sleep 0.2; done; echo from-post-start >/tmp/hooked']\n"
             "  - name: failing\n    image: %s\n    command: [sleep, '100000']\n"
             "    lifecycle:\n      postStart:\n        exec:\n          command: [sh, -c, "
             "'echo no luck; exit 7']\n"
             "  - name: term\n    image: %s\n"
             "    command: [sh, -c, 'echo bye from term >/dev/termination-log; exit 1']\n"
             "  - name: fallback\n    image: %s\n    terminationMessagePolicy: FallbackToLogsOnError\n"
             "    command: [sh, -c, 'i=1; while [ $i -le 100 ]; do echo line $i; i=$((i+1)); done; "
             "exit 2']\n"
             "  - name: pre\n    image: %s\n"
             "    command: [sh, -c, 'trap \"echo got TERM; exit 0\" TERM; echo up; "
             "while :; do sleep 0.2; done']\n"
             "    lifecycle:\n      preStop:\n        httpGet:\n          host: 127.0.0.1\n"
             "          port: %d\n          path: /prestop\n",
             g->node.ns, g->node.stack.node, g->node.busybox, g->node.busybox, g->node.busybox,
             g->node.busybox, g->node.busybox, ts_http_target_port(g->target));
    char *path = vmlet_xasprintf("%s/hooks.yaml", g->node.stack.dir);
    FILE *f = fopen(path, "we");
    assert_non_null(f);
    fputs(manifest, f);
    fclose(f);
    assert_int_equal(ts_sh(NULL, KUBECTL "apply -f %s", KARGS, path), 0);
    free(path);
    // The VM is up once "pre" runs.
    assert_true(s_wait_field("pre", "state.running.startedAt", "", WAIT_MS));
    char *uid = s_get("{.metadata.uid}");
    assert_non_null(uid);
    snprintf(g->uid, sizeof g->uid, "%s", uid);
    free(uid);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_node_stop(&g->node);
    ts_http_target_stop(&g->target);
    free(g);
    return 0;
}

// --- the cases ---------------------------------------------------------------------------

static void test_post_start_holds_running(void **state)
{
    (void)state;
    // The hook waits for /tmp/release: the container started in the guest
    // but is not Running yet.
    assert_true(s_wait_field("post", "state.waiting.reason", "ContainerCreating", 90000));
    sleep(2); // and stays so while the hook runs
    char *reason = s_ctr("post", "state.waiting.reason");
    assert_non_null(reason);
    assert_string_equal(reason, "ContainerCreating");
    free(reason);
    char *ready = s_ctr("post", "started");
    assert_string_equal(ready, "false");
    free(ready);
    // Let the hook go (exec reaches the process already running in the guest).
    assert_int_equal(ts_sh(NULL, KUBECTL "exec hooks -c post -- touch /tmp/release", KARGS), 0);
    assert_true(s_wait_field("post", "state.running.startedAt", "", 90000));
    char *path = s_log_path("post", 0);
    char *log = NULL;
    for (int i = 0; i < 100 && !(log && strstr(log, "read: from-post-start")); i++) {
        free(log);
        usleep(200 * 1000);
        log = s_read(path);
    }
    assert_non_null(log);
    assert_non_null(strstr(log, "stdout F read: from-post-start"));
    print_message("post: Waiting until its postStart hook finished, then Running; it read "
                  "what the hook wrote\n");
    free(log);
    free(path);
}

static void test_failed_post_start_restarts(void **state)
{
    (void)state;
    assert_true(s_wait_field("failing", "restartCount", "1", 90000) ||
                s_wait_field("failing", "restartCount", "2", 1000));
    assert_true(s_event("FailedPostStartHook", "failing", "exited with 7"));
    assert_true(s_event("FailedPostStartHook", "failing", "no luck"));
    print_message("failing: FailedPostStartHook with the hook's output, container restarted\n");
}

static void test_termination_message(void **state)
{
    (void)state;
    // The first run's end: in state.terminated, or in lastState once it waits or runs again.
    assert_true(s_wait_field("term", "lastState.terminated.message", "bye from term", 90000));
    char *code = s_ctr("term", "lastState.terminated.exitCode");
    assert_string_equal(code, "1");
    free(code);
}

static void test_fallback_to_logs(void **state)
{
    (void)state;
    assert_true(s_wait_field("fallback", "lastState.terminated.message", "line 100", 90000));
    char *msg = s_ctr("fallback", "lastState.terminated.message");
    assert_non_null(msg);
    // The last 80 lines: 21 to 100, nothing before.
    assert_true(strncmp(msg, "line 21\n", 8) == 0);
    assert_null(strstr(msg, "line 20\n"));
    int lines = 0;
    for (const char *p = msg; *p; p++)
        lines += *p == '\n';
    assert_true(lines == 79 || lines == 80); // jsonpath may drop the final newline
    print_message("fallback: message is the log's last 80 lines (%zu bytes)\n", strlen(msg));
    free(msg);
}

// The guest's clock keeps time with the host's (container logs' timestamps
// and every sleep in the pod depend on it). Under TCG the kernel is told
// the TSC rate; a wrong one drifted about 6 s a minute. By now the VM has
// run for a minute or more.
static void test_guest_clock_keeps_time(void **state)
{
    (void)state;
    char *out = NULL;
    int64_t before = vmlet_unix_ms();
    assert_int_equal(ts_sh(&out, KUBECTL "exec hooks -c pre -- date +%%s", KARGS), 0);
    int64_t after = vmlet_unix_ms();
    long long guest_s = atoll(out);
    free(out);
    double host_s = (double)(before + after) / 2000.0;
    print_message("guest clock - host clock: %+.1f s (the guest's date has whole seconds)\n",
                  (double)guest_s - host_s);
    assert_true(fabs((double)guest_s - host_s) < 2.5);
}

static void test_pre_stop_before_sigterm(void **state)
{
    (void)state;
    ts_http_target_clear(g->target);
    assert_int_equal(ts_sh(NULL, KUBECTL "delete pod hooks --wait=false", KARGS), 0);
    // When the container's answer to SIGTERM reaches its log, by this
    // host's clock (the guest's own timestamps may drift under TCG).
    char *path = s_log_path("pre", 0);
    int64_t term_ms = -1;
    int64_t deadline = ts_now_ms() + 60000;
    while (term_ms < 0 && ts_now_ms() < deadline) {
        char *log = s_read(path);
        if (log && strstr(log, "stdout F got TERM"))
            term_ms = ts_now_ms();
        free(log);
        if (term_ms < 0)
            usleep(100 * 1000);
    }
    free(path);
    assert_true(term_ms > 0);
    ts_http_request_t *reqs = NULL;
    size_t n = ts_http_target_requests(g->target, "/prestop", &reqs);
    assert_int_equal(n, 1);
    int64_t hook_ms = reqs[0].arrival_us / 1000;
    ts_http_requests_free(reqs, n);
    print_message("pre: preStop request at +0 ms, the container's SIGTERM in its log at +%lld ms "
                  "(the hook's server answered after %d ms)\n",
                  (long long)(term_ms - hook_ms), PRESTOP_DELAY_MS);
    // SIGTERM only after the hook's answer.
    assert_true(term_ms - hook_ms >= PRESTOP_DELAY_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_start_holds_running),
        cmocka_unit_test(test_failed_post_start_restarts),
        cmocka_unit_test(test_termination_message),
        cmocka_unit_test(test_fallback_to_logs),
        cmocka_unit_test(test_guest_clock_keeps_time),
        cmocka_unit_test(test_pre_stop_before_sigterm),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
