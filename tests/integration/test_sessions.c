// The launcher's session endpoint (proto/session.proto) against real VMs:
// a client of the protocol (tests/support/ts_session.c) plays the kubelet
// API front. One pod, booted once, serves every case: exec (output, 1 MiB
// of stdin, exit codes, tty size, a client that vanishes, a client that
// does not read), port-forward to busybox httpd in the pod, attach (output
// after attaching, stdin of a `stdin: true` container), logs (tail, since,
// limit, timestamps, follow, previous after a restart) and the token.
#include "stack.h"
#include "ts_registry.h"
#include "ts_session.h"

#include "vmlet/kube_api.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 240000 // a pod's first boot under TCG

typedef struct {
    ts_stack_t stack;
    ts_registry_t registry;
    char ns[64];
    char busybox[200];
    char addr[80];  // the launcher's session endpoint, from Redis
    char token[80]; // from Redis
    char uid[64];   // the pod's
} fixture_t;

static fixture_t *g;

// --- helpers ------------------------------------------------------------------------------

static char *s_redis_get(const char *key)
{
    char *cmd = vmlet_xasprintf("redis-cli -p %d -a %s --no-auth-warning GET %s",
                                g->stack.redis.port, g->stack.redis.password, key);
    FILE *p = popen(cmd, "r");
    free(cmd);
    char buf[256] = "";
    if (p && !fgets(buf, sizeof buf, p))
        buf[0] = '\0';
    if (p)
        pclose(p);
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf[0] ? strdup(buf) : NULL;
}

static double s_metric(const char *series)
{
    return ts_service_metric(&g->stack.launcher, series);
}

// A SessionOpen for the shared pod.
static Vmlet__SessionOpen s_open(Vmlet__SessionKind kind, const char *container)
{
    Vmlet__SessionOpen o = VMLET__SESSION_OPEN__INIT;
    o.token = g->token;
    o.has_kind = 1;
    o.kind = kind;
    o.pod_uid = g->uid;
    o.container = (char *)container;
    return o;
}

// Runs argv in container main; the session is the caller's to close.
static void s_exec(ts_session_t *s, char **argv, size_t argc, bool stdin_, bool tty)
{
    Vmlet__SessionOpen o = s_open(VMLET__SESSION_KIND__SESSION_EXEC, "main");
    o.command = argv;
    o.n_command = argc;
    o.has_stdin = o.has_tty = o.has_stdout = o.has_stderr = 1;
    o.stdin = stdin_, o.tty = tty, o.stdout = true, o.stderr = !tty;
    if (tty) {
        o.has_rows = o.has_cols = 1;
        o.rows = 40, o.cols = 100;
    }
    assert_int_equal(ts_session_open(s, g->addr, &o), 0);
}

// sh -c script in main; returns stdout (caller frees), *code its exit.
static char *s_sh(const char *script, int *code)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script};
    ts_session_t s;
    s_exec(&s, argv, 3, false, false);
    assert_true(ts_session_wait(&s, 60000, NULL));
    if (code)
        *code = s.exit_code;
    char *out = strdup(s.out);
    ts_session_close(&s);
    return out;
}

// The logs of main, with the options set by the caller.
static void s_logs(ts_session_t *s, Vmlet__SessionOpen *o)
{
    assert_int_equal(ts_session_open(s, g->addr, o), 0);
}

static char *s_logs_text(Vmlet__SessionOpen *o)
{
    ts_session_t s;
    s_logs(&s, o);
    assert_true(ts_session_wait(&s, 30000, NULL));
    assert_int_equal(s.http_status, -1);
    char *out = strdup(s.out);
    ts_session_close(&s);
    return out;
}

static int s_count_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n;
}

static bool s_no_sessions(void *arg)
{
    (void)arg;
    return s_metric("vmlet_launcher_sessions{kind=\"exec\"}") == 0 &&
           s_metric("vmlet_launcher_sessions{kind=\"port-forward\"}") == 0 &&
           s_metric("vmlet_launcher_sessions{kind=\"logs\"}") == 0 &&
           s_metric("vmlet_launcher_sessions{kind=\"attach\"}") == 0;
}

static long s_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static bool s_all_running(void *arg)
{
    (void)arg;
    cJSON *pod = ts_kubectl_json("get pod -n %s box -o json", g->ns);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(pod, "status"), "containerStatuses");
    bool ok = cJSON_GetArraySize(list) == 2;
    const cJSON *c;
    cJSON_ArrayForEach(c, list) ok =
        ok &&
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "state"), "running");
    cJSON_Delete(pod);
    return ok;
}

// --- setup --------------------------------------------------------------------------------

// main: serves /www on 8080, prints a line a second until /tmp/restart
// appears, then exits 3 (restartPolicy Always runs it again: previous).
// echo: stdin (stdinOnce), answers each line, says when stdin closes.
static const char *const pod_yaml =
    "apiVersion: v1\nkind: Pod\nmetadata: {name: box, namespace: %s}\n"
    "spec:\n  nodeName: %s\n  terminationGracePeriodSeconds: 1\n  restartPolicy: Always\n"
    "  containers:\n"
    "  - name: main\n    image: %s\n    command: [/bin/sh, -c]\n"
    "    args: ['mkdir -p /www; echo hello-from-box > /www/index.html; httpd -p 8080 -h /www; "
    "echo first-line; sleep 1; echo to-stderr >&2; sleep 1; i=0; while [ ! -f /tmp/restart ]; do "
    "i=$((i+1)); "
    "echo tick $i; sleep 1; done; echo bye; exit 3']\n"
    "  - name: echo\n    image: %s\n    stdin: true\n    stdinOnce: true\n"
    "    command: [/bin/sh, -c]\n"
    "    args: ['while read line; do echo \"got: $line\"; done; echo stdin-closed; "
    "sleep 100000']\n";

static int setup(void **state)
{
    g = calloc(1, sizeof *g);
    char suffix[9];
    vmlet_random_hex(suffix, 4);
    char node[64];
    snprintf(node, sizeof node, "vmlet-sess-%s", suffix);
    snprintf(g->ns, sizeof g->ns, "sess-%s", suffix);
    assert_int_equal(ts_stack_start(&g->stack, node), 0);
    ts_registry_options_t opts = {0};
    assert_int_equal(ts_registry_start(&g->registry, &opts), 0);
    char layout[300];
    snprintf(layout, sizeof layout, "%s/layout", g->stack.dir);
    assert_int_equal(
        ts_registry_push(&g->registry, layout, "busybox", "demo/busybox:1", NULL, NULL), 0);
    snprintf(g->busybox, sizeof g->busybox, "%s/demo/busybox:1", g->registry.host);
    char cache[400], insecure[300];
    snprintf(cache, sizeof cache, "--cache-dir=%s/images", g->stack.dir);
    snprintf(insecure, sizeof insecure, "--insecure-registries=%s", g->registry.host);
    const char *const builder[] = {cache, insecure, NULL};
    const char *const fast[] = {"--resync-interval=2s", NULL};
    const char *const retry[] = {"--retry-interval=1s", NULL};
    // Port 0: tests running at once each get their own.
    const char *const launcher[] = {"--boot-timeout=120s", "--session-listen=127.0.0.1:0",
                                    "--announce-interval=1s", NULL};
    assert_int_equal(ts_stack_service(&g->stack, "image-builder", &g->stack.builder, builder), 0);
    assert_int_equal(ts_stack_service(&g->stack, "vm-launcher", &g->stack.launcher, launcher), 0);
    assert_int_equal(ts_stack_service(&g->stack, "k8s-watcher", &g->stack.watcher, retry), 0);
    assert_int_equal(ts_stack_service(&g->stack, "status-reporter", &g->stack.reporter, fast), 0);
    assert_int_equal(ts_kubectl_namespace(g->ns), 0);
    char manifest[2048];
    snprintf(manifest, sizeof manifest, pod_yaml, g->ns, g->stack.node, g->busybox, g->busybox);
    assert_int_equal(ts_kubectl_apply(manifest), 0);
    const char *id = strchr(g->stack.launcher_flags[0], '=') + 1; // --launcher-id=...
    char key[200];
    snprintf(key, sizeof key, "vmlet:session:%s", id);
    char *addr = s_redis_get(key);
    char *token = s_redis_get("vmlet:session-token");
    assert_non_null(addr);
    assert_non_null(token);
    assert_int_equal(strlen(token), 64);
    snprintf(g->addr, sizeof g->addr, "%s", addr);
    snprintf(g->token, sizeof g->token, "%s", token);
    free(addr);
    free(token);
    if (!ts_poll(s_all_running, NULL, WAIT_MS)) {
        char *out = NULL;
        ts_kubectl(&out, "get pod -n %s box -o yaml", g->ns);
        print_message("%s\n", out ? out : "");
        free(out);
        fail_msg("pod box did not run");
    }
    cJSON *pod = ts_kubectl_json("get pod -n %s box -o json", g->ns);
    snprintf(g->uid, sizeof g->uid, "%s", vmlet_json_str(pod, "metadata", "uid"));
    cJSON_Delete(pod);
    *state = g;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "grep -i session %s/vm-launcher.log | tail -n 40", g->stack.dir);
    if (system(cmd) != 0) { /* diagnostics only */
    }
    ts_kubectl(NULL, "delete namespace %s --wait=false", g->ns);
    ts_kubectl(NULL, "delete node %s --wait=false", g->stack.node);
    ts_stack_stop(&g->stack);
    ts_registry_stop(&g->registry);
    free(g);
    return 0;
}

// --- cases --------------------------------------------------------------------------------

static void test_refusals(void **state)
{
    (void)state;
    ts_session_t s;
    Vmlet__SessionOpen o = s_open(VMLET__SESSION_KIND__SESSION_LOGS, "main");
    o.token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_int_equal(ts_session_open(&s, g->addr, &o), 0);
    assert_true(ts_session_wait(&s, 10000, NULL));
    assert_false(s.accepted);
    assert_int_equal(s.http_status, 401);
    ts_session_close(&s);
    o = s_open(VMLET__SESSION_KIND__SESSION_EXEC, "main");
    o.pod_uid = "no-such-uid";
    assert_int_equal(ts_session_open(&s, g->addr, &o), 0);
    assert_true(ts_session_wait(&s, 10000, NULL));
    assert_int_equal(s.http_status, 404);
    ts_session_close(&s);
    o = s_open(VMLET__SESSION_KIND__SESSION_EXEC, "nope");
    char *argv[] = {"true"};
    o.command = argv, o.n_command = 1;
    assert_int_equal(ts_session_open(&s, g->addr, &o), 0);
    assert_true(ts_session_wait(&s, 10000, NULL));
    assert_int_equal(s.http_status, 404);
    print_message("unknown container: %d %s\n", s.http_status, s.error);
    ts_session_close(&s);
    assert_true(s_metric("vmlet_launcher_sessions_total{kind=\"logs\",result=\"unauthorized\"}") >=
                1);
}

static void test_exec(void **state)
{
    (void)state;
    int code = -1;
    char *out = s_sh("cat /etc/hostname", &code);
    assert_int_equal(code, 0);
    assert_string_equal(out, "box\n");
    free(out);
    out = s_sh("exit 7", &code);
    assert_int_equal(code, 7);
    free(out);
    // 1 MiB through stdin, under the agent's window.
    char *argv[] = {"wc", "-c"};
    ts_session_t s;
    s_exec(&s, argv, 2, true, false);
    size_t total = 1 << 20;
    char *data = malloc(total);
    memset(data, 'x', total);
    int64_t t0 = vmlet_now_ms();
    for (size_t off = 0; off < total; off += 65536)
        assert_int_equal(ts_session_send_stdin(&s, data + off, 65536), 0);
    assert_int_equal(ts_session_close_input(&s), 0);
    assert_true(ts_session_wait(&s, 120000, NULL));
    print_message("1 MiB of stdin to wc -c: %lld ms\n", (long long)(vmlet_now_ms() - t0));
    assert_int_equal(s.exit_code, 0);
    assert_int_equal(atoi(s.out), 1048576);
    ts_session_close(&s);
    free(data);
}

static void test_exec_tty_resize(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c", "stty size; sleep 2; stty size"};
    ts_session_t s;
    s_exec(&s, argv, 3, false, true);
    assert_true(ts_session_wait(&s, 30000, "40 100"));
    assert_int_equal(ts_session_resize(&s, 50, 120), 0);
    assert_true(ts_session_wait(&s, 30000, NULL));
    assert_non_null(strstr(s.out, "50 120"));
    assert_int_equal(s.exit_code, 0);
    ts_session_close(&s);
}

static void test_exec_client_vanishes(void **state)
{
    (void)state;
    char *argv[] = {"sleep", "7777"};
    ts_session_t s;
    s_exec(&s, argv, 2, true, false);
    assert_false(ts_session_wait(&s, 1500, NULL)); // running
    assert_true(s.accepted);
    assert_true(s_metric("vmlet_launcher_sessions{kind=\"exec\"}") == 1);
    ts_session_close(&s); // as a killed kubectl would
    assert_true(ts_poll(s_no_sessions, NULL, 10000));
    char *out = s_sh("ps", NULL);
    assert_null(strstr(out, "sleep 7777")); // the agent killed it
    free(out);
    assert_true(s_metric("vmlet_launcher_sessions_total{kind=\"exec\",result=\"disconnected\"}") >=
                1);
}

// A client that does not read while the guest prints as fast as it can:
// the agent waits for window updates, the launcher stays small.
static void test_exec_backpressure(void **state)
{
    (void)state;
    pid_t pid = g->stack.launcher.pid;
    long before = s_rss_kib(pid);
    char *argv[] = {"yes", "0123456789012345678901234567890123456789"};
    ts_session_t s;
    s_exec(&s, argv, 2, false, false);
    long peak = before;
    for (int i = 0; i < 16; i++) { // 8 s of not reading
        usleep(500000);
        long now = s_rss_kib(pid);
        peak = now > peak ? now : peak;
    }
    // Now read a while: it flows (so the test shows output was there).
    assert_true(ts_session_wait(&s, 30000, "0123456789\n0123"));
    assert_true(s.accepted);
    assert_false(s.ended);
    size_t got = s.out_len;
    print_message("launcher RSS %ld KiB before, peak %ld KiB while the client did not read "
                  "(%zu bytes read afterwards)\n",
                  before, peak, got);
    assert_true(peak - before < 16 * 1024);
    ts_session_close(&s);
    assert_true(ts_poll(s_no_sessions, NULL, 10000));
    char *out = s_sh("ps", NULL);
    assert_null(strstr(out, "yes 0123"));
    free(out);
}

static void test_port_forward(void **state)
{
    (void)state;
    enum { N = 4 };
    ts_session_t s[N];
    for (int i = 0; i < N; i++) {
        Vmlet__SessionOpen o = s_open(VMLET__SESSION_KIND__SESSION_PORT_FORWARD, NULL);
        o.has_port = 1;
        o.port = 8080;
        assert_int_equal(ts_session_open(&s[i], g->addr, &o), 0);
    }
    const char req[] = "GET /index.html HTTP/1.0\r\nHost: box\r\n\r\n";
    for (int i = 0; i < N; i++)
        assert_int_equal(ts_session_send_stdin(&s[i], req, sizeof req - 1), 0);
    for (int i = 0; i < N; i++) {
        assert_true(ts_session_wait(&s[i], 30000, NULL));
        assert_true(s[i].accepted);
        assert_non_null(strstr(s[i].out, "200 OK"));
        assert_non_null(strstr(s[i].out, "\r\n\r\nhello-from-box\n"));
        assert_string_equal(s[i].error, "");
        ts_session_close(&s[i]);
    }
    // Nothing listens on 9: refused, said so.
    Vmlet__SessionOpen o = s_open(VMLET__SESSION_KIND__SESSION_PORT_FORWARD, NULL);
    o.has_port = 1;
    o.port = 9;
    assert_int_equal(ts_session_open(&s[0], g->addr, &o), 0);
    assert_true(ts_session_wait(&s[0], 30000, NULL));
    print_message("port 9: %s\n", s[0].error);
    assert_non_null(strstr(s[0].error, "refused"));
    ts_session_close(&s[0]);
}

static void test_attach(void **state)
{
    (void)state;
    // Output printed after attaching, and not before.
    ts_session_t s;
    Vmlet__SessionOpen o = s_open(VMLET__SESSION_KIND__SESSION_ATTACH, "main");
    o.has_stdout = o.has_stderr = 1;
    o.stdout = o.stderr = true;
    assert_int_equal(ts_session_open(&s, g->addr, &o), 0);
    assert_true(ts_session_wait(&s, 20000, "tick"));
    assert_true(s.accepted);
    assert_null(strstr(s.out, "first-line"));
    ts_session_close(&s);
    // stdin of a stdin: true container; stdinOnce closes it at the end.
    o = s_open(VMLET__SESSION_KIND__SESSION_ATTACH, "echo");
    o.has_stdin = o.has_stdout = 1;
    o.stdin = o.stdout = true;
    assert_int_equal(ts_session_open(&s, g->addr, &o), 0);
    assert_int_equal(ts_session_send_stdin(&s, "ping\n", 5), 0);
    assert_true(ts_session_wait(&s, 20000, "got: ping"));
    assert_int_equal(ts_session_close_input(&s), 0);
    assert_true(ts_session_wait(&s, 20000, "stdin-closed"));
    ts_session_close(&s);
    assert_true(ts_poll(s_no_sessions, NULL, 10000));
}

static void test_logs(void **state)
{
    (void)state;
    Vmlet__SessionOpen o = s_open(VMLET__SESSION_KIND__SESSION_LOGS, "main");
    char *all = s_logs_text(&o);
    assert_true(strncmp(all, "first-line\nto-stderr\ntick 1\n", 28) == 0);
    // tail
    o.has_tail_lines = 1;
    o.tail_lines = 2;
    char *tail = s_logs_text(&o);
    assert_int_equal(s_count_lines(tail), 2);
    assert_true(strncmp(tail, "tick ", 5) == 0);
    o.has_tail_lines = 0;
    // limit
    o.has_limit_bytes = 1;
    o.limit_bytes = 5;
    char *limited = s_logs_text(&o);
    assert_string_equal(limited, "first");
    o.has_limit_bytes = 0;
    // timestamps, and since the third entry's time
    o.has_timestamps = 1;
    o.timestamps = true;
    char *stamped = s_logs_text(&o);
    assert_true(strlen(stamped) > 31 && stamped[4] == '-' && stamped[29] == 'Z');
    assert_true(strncmp(stamped + 30, " first-line\n", 12) == 0);
    const char *third = strchr(strchr(stamped, '\n') + 1, '\n') + 1;
    char ts[40];
    snprintf(ts, sizeof ts, "%.30s", third);
    int64_t sec;
    assert_int_equal(vmlet_parse_rfc3339(ts, &sec), 0);
    o.has_timestamps = 0;
    o.has_since_unix_ns = 1;
    o.since_unix_ns = sec * 1000000000LL + atoll(ts + 20);
    char *since = s_logs_text(&o);
    assert_true(strncmp(since, "tick 1\n", 7) == 0);
    o.has_since_unix_ns = 0;
    // previous: none yet
    o.has_previous = 1;
    o.previous = true;
    ts_session_t s;
    s_logs(&s, &o);
    assert_true(ts_session_wait(&s, 10000, NULL));
    assert_int_equal(s.http_status, 400);
    assert_non_null(strstr(s.error, "previous terminated container \"main\""));
    ts_session_close(&s);
    // follow: a line printed after it started
    int last = 0;
    for (const char *p = strstr(all, "tick "); p; p = strstr(p + 1, "tick "))
        last = atoi(p + 5);
    o = s_open(VMLET__SESSION_KIND__SESSION_LOGS, "main");
    o.has_follow = 1;
    o.follow = true;
    s_logs(&s, &o);
    char want[32];
    snprintf(want, sizeof want, "tick %d\n", last + 3);
    assert_true(ts_session_wait(&s, 30000, want));
    assert_false(s.ended);
    ts_session_close(&s);
    assert_true(ts_poll(s_no_sessions, NULL, 10000));
    free(all), free(tail), free(limited), free(stamped), free(since);
}

// Last: it restarts main. A follow ends with the run; previous has it.
// main runs again after its restart: the status says so only once the
// exit is recorded (restartCount), not merely "running" (the old run's
// status can still say that just after it ended).
static bool s_main_restarted(void *arg)
{
    (void)arg;
    cJSON *pod = ts_kubectl_json("get pod -n %s box -o json", g->ns);
    const cJSON *c, *list = cJSON_GetObjectItemCaseSensitive(
                        cJSON_GetObjectItemCaseSensitive(pod, "status"), "containerStatuses");
    bool ok = false;
    cJSON_ArrayForEach(c, list)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
        const cJSON *restarts = cJSON_GetObjectItemCaseSensitive(c, "restartCount");
        if (cJSON_IsString(name) && strcmp(name->valuestring, "main") == 0)
            ok = cJSON_IsNumber(restarts) && restarts->valueint >= 1 &&
                 cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "state"),
                                                  "running");
    }
    cJSON_Delete(pod);
    return ok;
}

static void test_logs_previous_after_restart(void **state)
{
    (void)state;
    ts_session_t follow;
    Vmlet__SessionOpen o = s_open(VMLET__SESSION_KIND__SESSION_LOGS, "main");
    o.has_follow = 1;
    o.follow = true;
    s_logs(&follow, &o);
    assert_true(ts_session_wait(&follow, 10000, "tick"));
    char *out = s_sh("touch /tmp/restart", NULL);
    free(out);
    assert_true(ts_session_wait(&follow, 30000, NULL)); // the run ended: so does follow
    assert_non_null(strstr(follow.out, "bye\n"));
    assert_int_equal(follow.http_status, -1);
    ts_session_close(&follow);
    assert_true(ts_poll(s_main_restarted, NULL, 60000));
    o = s_open(VMLET__SESSION_KIND__SESSION_LOGS, "main");
    o.has_previous = 1;
    o.previous = true;
    char *prev = s_logs_text(&o);
    assert_non_null(strstr(prev, "bye\n"));
    o.previous = false;
    char *cur = NULL;
    for (int i = 0; i < 50; i++) { // the new run's first line
        free(cur);
        cur = s_logs_text(&o);
        if (strstr(cur, "first-line"))
            break;
        usleep(200000);
    }
    assert_non_null(strstr(cur, "first-line"));
    assert_null(strstr(cur, "bye"));
    free(prev);
    free(cur);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_exec),
        cmocka_unit_test(test_exec_tty_resize),
        cmocka_unit_test(test_exec_client_vanishes),
        cmocka_unit_test(test_exec_backpressure),
        cmocka_unit_test(test_port_forward),
        cmocka_unit_test(test_attach),
        cmocka_unit_test(test_logs),
        cmocka_unit_test(test_logs_previous_after_restart),
    };
    if (getenv("VMLET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMLET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
