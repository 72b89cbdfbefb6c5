// Pods as real micro-VMs (QEMU microvm under TCG), end to end through
// every service: kubectl creates pods on the test's node; k8s-watcher,
// image-builder (pulling from a registry of the test's own), vm-launcher
// and status-reporter make them run, and the test looks at what a user
// would see: kubectl's pod status, the containers' logs, the pods' IPs
// from inside the launcher's network namespace.
//
// VM boots are slow here, so the cases share their pods: they run in
// order, and later cases use pods earlier ones started.
#include "stack.h"
#include "ts_registry.h"

#include "vmlet/kube_api.h"
#include "vmlet/pb.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SECRET_VALUE "hunter2-e4b1c9"
#define WAIT_MS 240000 // a pod's first boot under TCG, with others booting

typedef struct {
    ts_stack_t stack;
    ts_registry_t registry;
    ts_service_t prober;
    vmlet_metrics_t *metrics;
    vmlet_dispatch_t *dispatch;
    vmlet_bus_subscriber_t *sub;
    char exec_id[64];       // the exec this test waits for
    Vmlet__ExecResult *exec; // its answer
    char layout[300];
    char ns[64];
    char busybox[200], sidecar[200]; // image references
} fixture_t;

static fixture_t *g; // the shared fixture (cmocka's group state)

// --- helpers --------------------------------------------------------------------------

static cJSON *s_pod(const char *name)
{
    return ts_kubectl_json("get pod -n %s %s -o json", g->ns, name);
}

static const char *s_str(const cJSON *o, const char *a, const char *b)
{
    return vmlet_json_str(b ? cJSON_GetObjectItemCaseSensitive(o, a) : o, b ? b : a, NULL);
}

static const cJSON *s_get(const cJSON *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save)) {
        if (cJSON_IsArray(o))
            o = cJSON_GetArrayItem(o, atoi(k));
        else
            o = cJSON_GetObjectItemCaseSensitive(o, k);
    }
    return o;
}

typedef struct {
    const char *name;
    const char *phase;
} phase_wait_t;

static bool s_phase_is(void *arg)
{
    phase_wait_t *w = arg;
    cJSON *pod = s_pod(w->name);
    const char *phase = s_str(pod, "status", "phase");
    bool ok = phase && strcmp(phase, w->phase) == 0;
    cJSON_Delete(pod);
    return ok;
}

static void s_dump_pod(const char *name)
{
    char *out = NULL;
    ts_kubectl(&out, "get pod -n %s %s -o yaml", g->ns, name);
    print_message("%s\n", out ? out : "");
    free(out);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tail -n 30 %s/vm-launcher.log", g->stack.dir);
    if (system(cmd) != 0) { /* diagnostics only */ }
}

static void s_wait_phase(const char *name, const char *phase)
{
    phase_wait_t w = {name, phase};
    if (!ts_poll(s_phase_is, &w, WAIT_MS)) {
        s_dump_pod(name);
        fail_msg("pod %s did not reach phase %s", name, phase);
    }
}

typedef struct {
    const char *name;
    const char *container;
} ready_wait_t;

// Running, with every container running.
static bool s_all_running(void *arg)
{
    const char *name = arg;
    cJSON *pod = s_pod(name);
    const cJSON *list = s_get(pod, "status.containerStatuses");
    bool ok = cJSON_GetArraySize(list) > 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, list) ok = ok && s_get(c, "state.running") != NULL;
    cJSON_Delete(pod);
    return ok;
}

static void s_wait_running(const char *name)
{
    if (!ts_poll(s_all_running, (void *)name, WAIT_MS)) {
        s_dump_pod(name);
        fail_msg("pod %s's containers did not all run", name);
    }
}

static char *s_pod_field(const char *name, const char *path)
{
    cJSON *pod = s_pod(name);
    const cJSON *v = s_get(pod, path);
    char *out = cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
    cJSON_Delete(pod);
    return out;
}

// The container's log file for run n, as the kubelet lays it out.
static char *s_log_path(const char *pod, const char *container, int n)
{
    char *uid = s_pod_field(pod, "metadata.uid");
    char *path = NULL;
    if (uid)
        path = vmlet_xasprintf("%s/pods/%s_%s_%s/%s/%d.log", g->stack.dir, g->ns, pod, uid,
                               container, n);
    free(uid);
    return path;
}

static char *s_read_file(const char *path)
{
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

typedef struct {
    char *path;
    const char *text;
} log_wait_t;

static bool s_log_has(void *arg)
{
    log_wait_t *w = arg;
    char *text = s_read_file(w->path);
    bool ok = text && strstr(text, w->text);
    free(text);
    return ok;
}

static void s_expect_log(const char *pod, const char *container, int run, const char *text)
{
    log_wait_t w = {s_log_path(pod, container, run), text};
    if (!ts_poll(s_log_has, &w, 60000)) {
        char *all = s_read_file(w.path);
        print_message("%s:\n%s\n", w.path ? w.path : "(no uid)", all ? all : "(no file)");
        free(all);
        fail_msg("%s/%s log run %d lacks \"%s\"", pod, container, run, text);
    }
    free(w.path);
}

// Runs a shell command inside the launcher's network namespace (where the
// pods are reachable). Returns its exit code; *out gets its stdout.
static int s_in_netns(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_in_netns(char **out, const char *fmt, ...)
{
    char inner[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(inner, sizeof inner, fmt, ap);
    va_end(ap);
    char *cmd = vmlet_xasprintf("ip netns exec %s sh -c '%s' 2>&1", g->stack.netns, inner);
    FILE *p = popen(cmd, "r");
    free(cmd);
    if (!p)
        return -1;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    int status = pclose(p);
    if (out)
        *out = strdup(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void s_apply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_apply(const char *fmt, ...)
{
    char manifest[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(manifest, sizeof manifest, fmt, ap);
    va_end(ap);
    assert_int_equal(ts_kubectl_apply(manifest), 0);
}

// A pod's header: on the test's node (no scheduling needed here; the
// scheduler's part is test_pods'), in the test's namespace.
#define POD_HEAD                                                                        \
    "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s}\n"                  \
    "spec:\n  nodeName: %s\n  terminationGracePeriodSeconds: %d\n  restartPolicy: %s\n"

static long s_redis_count(const char *cmd)
{
    char *full = vmlet_xasprintf("redis-cli -p %d -a %s --no-auth-warning %s",
                                 g->stack.redis.port, g->stack.redis.password, cmd);
    FILE *p = popen(full, "r");
    free(full);
    long n = -1;
    if (p && fscanf(p, "%ld", &n) != 1)
        n = -1;
    if (p)
        pclose(p);
    return n;
}

static bool s_redis_zero(void *cmd)
{
    return s_redis_count(cmd) == 0;
}

static int s_on_exec_result(void *ctx, const vmlet_envelope_t *env)
{
    (void)ctx;
    const Vmlet__ExecResult *r = env->exec_result;
    if (!r->request_id || strcmp(r->request_id, g->exec_id) != 0)
        return 0;
    size_t len = vmlet__exec_result__get_packed_size(r);
    uint8_t *bytes = malloc(len + 1);
    vmlet__exec_result__pack(r, bytes);
    if (g->exec)
        vmlet__exec_result__free_unpacked(g->exec, NULL);
    g->exec = vmlet__exec_result__unpack(NULL, len, bytes);
    free(bytes);
    return 0;
}

// Runs a command in a pod's container over the bus (ExecRequest, as probes
// and tools do) and returns its exit code (-1: no answer, or it could not run).
static int s_exec(const char *pod, const char *container, const char *command)
{
    char *uid = s_pod_field(pod, "metadata.uid");
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = uid, ref.namespace_ = g->ns, ref.name = (char *)pod;
    char *argv[] = {"/bin/sh", "-c", (char *)command};
    Vmlet__ExecRequest req = VMLET__EXEC_REQUEST__INIT;
    vmlet_random_hex(g->exec_id, 8);
    req.request_id = g->exec_id;
    req.pod = &ref;
    req.container = (char *)container;
    req.command = argv, req.n_command = 3;
    PB_SET(&req, timeout_ms, 20000);
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_EXEC_REQUEST;
    env.exec_request = &req;
    if (g->exec)
        vmlet__exec_result__free_unpacked(g->exec, NULL);
    g->exec = NULL;
    if (!g->stack.publisher) {
        vmlet_bus_options_t bus = {.publish_endpoint = g->stack.broker.publish, .source = "test"};
        g->stack.metrics = vmlet_metrics_new();
        g->stack.publisher = vmlet_bus_publisher_new(&bus, g->stack.metrics, NULL, NULL);
        vmlet_bus_publisher_wait_ready(g->stack.publisher, 10000, NULL);
    }
    vmlet_bus_publish(g->stack.publisher, &env, NULL);
    int64_t deadline = ts_now_ms() + 30000;
    while (!g->exec && ts_now_ms() < deadline)
        vmlet_bus_subscriber_receive(g->sub, 10, 50);
    free(uid);
    if (!g->exec || g->exec->error) {
        print_message("exec %s in %s/%s: %s\n", command, pod, container,
                      g->exec ? g->exec->error : "no answer");
        return -1;
    }
    return g->exec->exit_code;
}

// The pod's Ready condition: 1 True, 0 False, -1 none yet.
static int s_ready(const char *name)
{
    cJSON *pod = s_pod(name);
    const cJSON *c;
    int ready = -1;
    cJSON_ArrayForEach(c, s_get(pod, "status.conditions"))
    {
        const char *type = s_str(c, "type", NULL), *status = s_str(c, "status", NULL);
        if (type && status && strcmp(type, "Ready") == 0)
            ready = strcmp(status, "True") == 0;
    }
    cJSON_Delete(pod);
    return ready;
}

typedef struct {
    const char *name;
    int want;
} ready_want_t;

static bool s_ready_is(void *arg)
{
    ready_want_t *w = arg;
    return s_ready(w->name) == w->want;
}

static void s_wait_ready(const char *name, int want, int timeout_ms)
{
    ready_want_t w = {name, want};
    if (!ts_poll(s_ready_is, &w, timeout_ms)) {
        s_dump_pod(name);
        fail_msg("pod %s's Ready did not become %s", name, want ? "True" : "False");
    }
}

// The events of a pod with this reason, as `kubectl get events` shows them.
static bool s_has_event(const char *pod, const char *reason, const char *message_part)
{
    cJSON *list = ts_kubectl_json("get events -n %s --field-selector involvedObject.name=%s -o json",
                                  g->ns, pod);
    bool found = false;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(list, "items"))
    {
        const char *r = s_str(e, "reason", NULL), *m = s_str(e, "message", NULL);
        if (r && strcmp(r, reason) == 0 && (!message_part || (m && strstr(m, message_part))))
            found = true;
    }
    cJSON_Delete(list);
    return found;
}

// --- setup -------------------------------------------------------------------------------

static int setup(void **state)
{
    g = calloc(1, sizeof *g);
    char suffix[9];
    vmlet_random_hex(suffix, 4);
    char node[64];
    snprintf(node, sizeof node, "vmlet-vms-%s", suffix);
    snprintf(g->ns, sizeof g->ns, "vms-%s", suffix);
    assert_int_equal(ts_stack_start(&g->stack, node), 0);
    ts_registry_options_t opts = {0};
    assert_int_equal(ts_registry_start(&g->registry, &opts), 0);
    snprintf(g->layout, sizeof g->layout, "%s/layout", g->stack.dir);
    assert_int_equal(ts_registry_push(&g->registry, g->layout, "busybox", "demo/busybox:1", NULL, NULL), 0);
    assert_int_equal(ts_registry_push(&g->registry, g->layout, "sidecar", "demo/sidecar:1", NULL, NULL), 0);
    snprintf(g->busybox, sizeof g->busybox, "%s/demo/busybox:1", g->registry.host);
    snprintf(g->sidecar, sizeof g->sidecar, "%s/demo/sidecar:1", g->registry.host);
    char cache[400], insecure[300];
    snprintf(cache, sizeof cache, "--cache-dir=%s/images", g->stack.dir);
    snprintf(insecure, sizeof insecure, "--insecure-registries=%s", g->registry.host);
    const char *const builder[] = {cache, insecure, NULL};
    const char *const fast[] = {"--resync-interval=2s", NULL};
    const char *const retry[] = {"--retry-interval=1s", NULL};
    const char *const launcher[] = {"--boot-timeout=120s", NULL};
    assert_int_equal(ts_stack_service(&g->stack, "image-builder", &g->stack.builder, builder), 0);
    assert_int_equal(ts_stack_service(&g->stack, "vm-launcher", &g->stack.launcher, launcher), 0);
    assert_int_equal(ts_stack_service(&g->stack, "k8s-watcher", &g->stack.watcher, retry), 0);
    assert_int_equal(ts_stack_service(&g->stack, "status-reporter", &g->stack.reporter, fast), 0);
    const char *const prober[] = {"--lease-period=3s", NULL};
    assert_int_equal(ts_stack_service(&g->stack, "prober", &g->prober, prober), 0);
    g->metrics = vmlet_metrics_new();
    static const vmlet_route_t routes[] = {{VMLET__ENVELOPE__BODY_EXEC_RESULT, s_on_exec_result},
                                           VMLET_ROUTES_END};
    g->dispatch = vmlet_dispatch_new(routes, g, g->metrics, NULL);
    vmlet_bus_options_t bus = {.subscribe_endpoint = g->stack.broker.subscribe, .hwm = 10000};
    vmlet_body_case_t topics[] = {VMLET__ENVELOPE__BODY_EXEC_RESULT};
    g->sub = vmlet_bus_subscriber_new(&bus, topics, 1, g->dispatch, g->metrics, NULL, NULL);
    while (!vmlet_bus_subscriber_ready(g->sub))
        vmlet_bus_subscriber_receive(g->sub, 10, 50);
    assert_int_equal(ts_kubectl_namespace(g->ns), 0);
    char manifest[2048];
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: %s}\n"
             "data: {mode: fast, app.conf: \"port=8080\\n\"}\n---\n"
             "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: %s}\n"
             "stringData: {password: %s}\n",
             g->ns, g->ns, SECRET_VALUE);
    assert_int_equal(ts_kubectl_apply(manifest), 0);
    *state = g;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_kubectl(NULL, "delete namespace %s --wait=false", g->ns);
    ts_kubectl(NULL, "delete node %s --wait=false", g->stack.node);
    vmlet_bus_subscriber_destroy(&g->sub);
    vmlet_dispatch_destroy(&g->dispatch);
    vmlet_metrics_destroy(&g->metrics);
    if (g->exec)
        vmlet__exec_result__free_unpacked(g->exec, NULL);
    ts_stack_service_stop(&g->prober);
    ts_stack_stop(&g->stack); // the launcher kills its VMs and removes its network
    ts_registry_stop(&g->registry);
    free(g);
    return 0;
}

// --- cases --------------------------------------------------------------------------

// A container that prints its argv, env and volumes and exits 0: the pod
// Succeeds; its log holds the Kubernetes command/args, $(VAR) expanded,
// status.podIP, the Secret's value, the ConfigMap's; the volumes have
// their content and modes, the Secret on tmpfs; the Secret's value is
// nowhere in Redis or its append-only file.
static void test_env_args_volumes_succeed(void **state)
{
    (void)state;
    s_apply(POD_HEAD
            "  containers:\n  - name: main\n    image: %s\n"
            "    command: [/bin/sh, -c]\n"
            "    args:\n"
            "    - 'echo \"args: $0 $1\"; echo GREETING=$GREETING; echo POD_IP=$POD_IP; "
            "echo SECRET=$SECRET; echo MODE=$MODE; stat -L -c \"%%a %%n\" /cfg/app.conf "
            "/sec/password; cat /cfg/app.conf; grep \" /sec \" /proc/mounts; echo host=$(hostname); "
            "grep -v \"^#\" /etc/hosts | grep env; echo done'\n"
            "    - first-$(NAME)\n    - second\n"
            "    env:\n"
            "    - {name: NAME, value: vmlet}\n"
            "    - {name: GREETING, value: 'hello $(NAME)'}\n"
            "    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}\n"
            "    - {name: SECRET, valueFrom: {secretKeyRef: {name: creds, key: password}}}\n"
            "    - {name: MODE, valueFrom: {configMapKeyRef: {name: cfg, key: mode}}}\n"
            "    volumeMounts: [{name: cfg, mountPath: /cfg}, {name: sec, mountPath: /sec}]\n"
            "  volumes:\n"
            "  - {name: cfg, configMap: {name: cfg, items: [{key: app.conf, path: app.conf, mode: 0600}]}}\n"
            "  - {name: sec, secret: {secretName: creds, defaultMode: 0400}}\n",
            "env", g->ns, g->stack.node, 30, "Never", g->busybox);
    s_wait_phase("env", "Succeeded");
    char *ip = s_pod_field("env", "status.podIP");
    assert_non_null(ip);
    char want[128];
    snprintf(want, sizeof want, "POD_IP=%s\n", ip);
    s_expect_log("env", "main", 0, "stdout F args: first-vmlet second\n");
    s_expect_log("env", "main", 0, "GREETING=hello vmlet\n");
    s_expect_log("env", "main", 0, want);
    s_expect_log("env", "main", 0, "SECRET=" SECRET_VALUE "\n");
    s_expect_log("env", "main", 0, "MODE=fast\n");
    s_expect_log("env", "main", 0, "600 /cfg/app.conf\n");
    s_expect_log("env", "main", 0, "400 /sec/password\n");
    s_expect_log("env", "main", 0, "port=8080\n");
    s_expect_log("env", "main", 0, " /sec tmpfs ");
    s_expect_log("env", "main", 0, "stdout F host=env\n");
    snprintf(want, sizeof want, "stdout F %s\tenv\n", ip); // the kubelet's /etc/hosts line
    s_expect_log("env", "main", 0, want);
    s_expect_log("env", "main", 0, "stdout F done\n");
    cJSON *pod = s_pod("env");
    const cJSON *term = s_get(pod, "status.containerStatuses.0.state.terminated");
    assert_non_null(term);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(term, "exitCode")->valueint, 0);
    assert_string_equal(s_str(term, "reason", NULL), "Completed");
    const char *cid = s_str(s_get(pod, "status.containerStatuses.0"), "containerID", NULL);
    assert_non_null(cid);
    assert_true(strncmp(cid, "vmlet://", 8) == 0);
    cJSON_Delete(pod);
    free(ip);
    // Redis, in memory and on disk: not a trace of the Secret's value (and
    // the files are really there: the grep would pass vacuously otherwise).
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d -a %s --no-auth-warning BGREWRITEAOF >/dev/null",
             g->stack.redis.port, g->stack.redis.password);
    assert_int_equal(system(cmd), 0);
    sleep(2);
    snprintf(cmd, sizeof cmd,
             "{ redis-cli -p %d -a %s --no-auth-warning --scan | while read k; do redis-cli -p %d "
             "-a %s --no-auth-warning --raw DUMP \"$k\"; done; cat -v %s/* %s/*/* 2>/dev/null; } "
             "| grep -aqF '%s'",
             g->stack.redis.port, g->stack.redis.password, g->stack.redis.port,
             g->stack.redis.password, g->stack.redis.dir, g->stack.redis.dir, SECRET_VALUE);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "grep -rlaF 'vmlet:vm:' '%s' >/dev/null", g->stack.redis.dir);
    assert_int_equal(system(cmd), 0);
}

// Exit 3 under restartPolicy Always: restarts, with CrashLoopBackOff
// between them and the delays growing; under Never: Failed, exit code 3.
static void test_crash_loop_and_never(void **state)
{
    (void)state;
    const char *body = "  containers:\n  - name: main\n    image: %s\n"
                       "    command: [/bin/sh, -c, 'echo run; exit 3']\n";
    char head[512], full[2048];
    snprintf(head, sizeof head, POD_HEAD, "crash", g->ns, g->stack.node, 1, "Always");
    snprintf(full, sizeof full, "%s%s", head, body);
    s_apply(full, g->busybox);
    snprintf(head, sizeof head, POD_HEAD, "fail", g->ns, g->stack.node, 1, "Never");
    snprintf(full, sizeof full, "%s%s", head, body);
    s_apply(full, g->busybox);
    // Watch "crash" until it has restarted twice, noting what it waited with.
    int64_t deadline = ts_now_ms() + WAIT_MS;
    bool saw_backoff = false;
    int restarts = 0;
    int64_t restart_at[4] = {0};
    while (ts_now_ms() < deadline && restarts < 3) {
        cJSON *pod = s_pod("crash");
        const cJSON *st = s_get(pod, "status.containerStatuses.0");
        const cJSON *rc = cJSON_GetObjectItemCaseSensitive(st, "restartCount");
        int n = cJSON_IsNumber(rc) ? rc->valueint : 0;
        const char *waiting = s_str(s_get(st, "state.waiting"), "reason", NULL);
        if (waiting && strcmp(waiting, "CrashLoopBackOff") == 0) {
            saw_backoff = true;
            const cJSON *last = s_get(st, "lastState.terminated.exitCode");
            assert_true(cJSON_IsNumber(last) && last->valueint == 3);
        }
        if (n > restarts && n < 4) {
            restart_at[n] = ts_now_ms();
            restarts = n;
        }
        cJSON_Delete(pod);
        usleep(250 * 1000);
    }
    if (restarts < 3)
        s_dump_pod("crash");
    assert_true(restarts >= 3);
    assert_true(saw_backoff);
    // The kubelet's delays: none for the first restart, then 10 s, then 20 s.
    int64_t second = restart_at[2] - restart_at[1], third = restart_at[3] - restart_at[2];
    print_message("restart gaps: %lld ms, %lld ms\n", (long long)second, (long long)third);
    assert_true(second >= 9000);
    assert_true(third >= 19000);
    s_expect_log("crash", "main", 2, "stdout F run\n");
    s_wait_phase("fail", "Failed");
    cJSON *pod = s_pod("fail");
    const cJSON *st = s_get(pod, "status.containerStatuses.0");
    assert_int_equal(s_get(st, "state.terminated.exitCode")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(st, "restartCount")->valueint, 0);
    cJSON_Delete(pod);
    ts_kubectl(NULL, "delete pod -n %s crash fail --wait=true --timeout=120s", g->ns);
}

// Two pods up at once: "web" (an httpd and a ticker, one image) and
// "multi" (an init container filling an emptyDir, an httpd and a sidecar
// of another image fetching from localhost). Each is reachable at its own
// IP; the app does not see the sidecar image's file; the init
// container's file is there.
static void test_two_pods_network_and_images(void **state)
{
    (void)state;
    s_apply(POD_HEAD
            "  containers:\n"
            "  - name: httpd\n    image: %s\n"
            "    command: [/bin/sh, -c, 'trap \"echo got TERM; exit 0\" TERM; httpd -f -p 8080 -h /www & wait']\n"
            "  - name: ticker\n    image: %s\n"
            "    command: [/bin/sh, -c, 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done']\n",
            "web", g->ns, g->stack.node, 20, "Always", g->busybox, g->busybox);
    s_apply(POD_HEAD
            "  initContainers:\n"
            "  - name: init\n    image: %s\n"
            "    command: [/bin/sh, -c, 'echo from-init > /shared/init.txt']\n"
            "    volumeMounts: [{name: shared, mountPath: /shared}]\n"
            "  containers:\n"
            "  - name: app\n    image: %s\n"
            "    command: [/bin/sh, -c, 'test -e /sidecar-only && echo SEES-SIDECAR || echo no-sidecar-file; "
            "cat /shared/init.txt; exec httpd -f -p 80 -h /www']\n"
            "    volumeMounts: [{name: shared, mountPath: /shared}]\n"
            "  - name: sidecar\n    image: %s\n"
            "    command: [/bin/sh, -c, 'cat /sidecar-only; until wget -q -O - http://127.0.0.1/; do sleep 1; done; "
            "exec sleep 100000']\n"
            "  volumes: [{name: shared, emptyDir: {}}]\n",
            "multi", g->ns, g->stack.node, 5, "Always", g->busybox, g->busybox, g->sidecar);
    s_wait_running("web");
    s_wait_running("multi");
    char *ip_web = s_pod_field("web", "status.podIP");
    char *ip_multi = s_pod_field("multi", "status.podIP");
    assert_non_null(ip_web);
    assert_non_null(ip_multi);
    assert_string_not_equal(ip_web, ip_multi);
    char *out = NULL;
    int rc = s_in_netns(&out, "curl -s -m 10 http://%s:8080/", ip_web);
    if (rc != 0 || !strstr(out, "hello from a vmlet pod"))
        fail_msg("curl web at %s: rc %d: %s", ip_web, rc, out);
    free(out);
    rc = s_in_netns(&out, "curl -s -m 10 http://%s/", ip_multi);
    if (rc != 0 || !strstr(out, "hello from a vmlet pod"))
        fail_msg("curl multi at %s: rc %d: %s", ip_multi, rc, out);
    free(out);
    s_expect_log("multi", "app", 0, "stdout F no-sidecar-file\n");
    s_expect_log("multi", "app", 0, "stdout F from-init\n");
    s_expect_log("multi", "sidecar", 0, "stdout F only in the sidecar image\n");
    s_expect_log("multi", "sidecar", 0, "stdout F hello from a vmlet pod\n");
    cJSON *pod = s_pod("multi");
    assert_non_null(s_get(pod, "status.initContainerStatuses.0.state.terminated"));
    cJSON_Delete(pod);
    free(ip_web);
    free(ip_multi);
}

// A pod that adds web's address to its own interface can neither receive
// as it (the host still reaches web there, and nothing the spoofer serves
// on that address) nor send as it (what it sends from there never
// arrives, while what it sends from its own address does). It is
// privileged (every capability in its VM, NET_ADMIN among them): the
// filters outside the VM must hold against the worst a pod can ask for.
static void test_no_spoofing(void **state)
{
    (void)state;
    char *victim = s_pod_field("web", "status.podIP");
    assert_non_null(victim);
    char gw[32];
    snprintf(gw, sizeof gw, "%s", g->stack.pod_cidr);
    *strrchr(gw, '.') = '\0';
    strcat(gw, ".1"); // the pods' gateway: the bridge, in the launcher's namespace
    // Listeners on the gateway, in the namespace: one for the forged
    // datagram, one for the honest one.
    char *forged = vmlet_xasprintf("%s/forged.out", g->stack.dir);
    char *honest = vmlet_xasprintf("%s/honest.out", g->stack.dir);
    char *listen = vmlet_xasprintf(
        "ip netns exec %s timeout 120 busybox nc -l -p 9999 >%s 2>&1 & "
        "ip netns exec %s timeout 120 busybox nc -l -p 9998 >%s 2>&1 &",
        g->stack.netns, forged, g->stack.netns, honest);
    assert_int_equal(system(listen), 0);
    free(listen);
    s_apply(POD_HEAD
            "  containers:\n  - name: spoof\n    image: %s\n"
            "    securityContext: {privileged: true}\n"
            "    env: [{name: VICTIM, value: '%s'}, {name: GW, value: '%s'}]\n"
            "    command:\n    - /bin/sh\n    - -c\n"
            "    - |\n"
            "      echo honest | nc -w 3 $GW 9998\n"
            "      ip addr add $VICTIM/32 dev eth0 && echo took-address\n"
            "      arping -c 2 -U -I eth0 -s $VICTIM $GW\n"
            "      mkdir -p /tmp/stolen && echo STOLEN > /tmp/stolen/index.html\n"
            "      httpd -p $VICTIM:8080 -h /tmp/stolen && echo serving-as-victim\n"
            "      echo forged | nc -w 3 -s $VICTIM $GW 9999\n"
            "      echo spoof-done\n"
            "      exec sleep 100000\n",
            "spoof", g->ns, g->stack.node, 1, "Always", g->busybox, victim, gw);
    s_expect_log("spoof", "spoof", 0, "stdout F took-address\n");
    s_expect_log("spoof", "spoof", 0, "stdout F spoof-done\n");
    // Receiving as web: the host reaches web, never the spoofer's page.
    for (int i = 0; i < 3; i++) {
        char *out = NULL;
        int rc = s_in_netns(&out, "ip neigh flush all; curl -s -m 5 http://%s:8080/", victim);
        if (rc != 0 || !strstr(out, "hello from a vmlet pod") || strstr(out, "STOLEN"))
            fail_msg("curl %s:8080 (web's address): rc %d: %s", victim, rc, out);
        free(out);
    }
    // Sending as web: the honest datagram came, the forged one never does.
    log_wait_t w = {honest, "honest"};
    assert_true(ts_poll(s_log_has, &w, 30000));
    sleep(3);
    char *text = s_read_file(forged);
    if (text && strstr(text, "forged"))
        fail_msg("a datagram sent as %s from the spoofing pod arrived", victim);
    free(text);
    free(forged);
    free(honest);
    free(victim);
    ts_kubectl(NULL, "delete pod -n %s spoof --wait=false", g->ns);
}

static long s_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

#define FLOOD_RSS_BOUND_KB (64 * 1024) // the launcher may grow by at most this while a guest floods

// A guest writing stdout as fast as it can: the launcher's memory stays
// within a bound (output goes to a rotated file, not to memory), and the
// other VM's events are not held up (web's ticker lines keep their pace).
static void test_flood_is_contained(void **state)
{
    (void)state;
    long base = s_rss_kb(g->stack.launcher.pid);
    double bytes0 = ts_service_metric(&g->stack.launcher, "vmlet_launcher_output_bytes_total");
    s_apply(POD_HEAD
            "  containers:\n  - name: flood\n    image: %s\n"
            "    command: [/bin/sh, -c, 'timeout 25 yes \"flood flood flood flood flood flood flood\"; "
            "echo flood-over; exec sleep 100000']\n",
            "flood", g->ns, g->stack.node, 1, "Always", g->busybox);
    s_wait_running("flood");
    int64_t start = vmlet_unix_ms();
    long peak = base;
    while (vmlet_unix_ms() - start < 30000) {
        long rss = s_rss_kb(g->stack.launcher.pid);
        if (rss > peak)
            peak = rss;
        usleep(200 * 1000);
    }
    s_expect_log("flood", "flood", 0, "flood-over\n"); // after yes's last, cut, line
    double bytes = ts_service_metric(&g->stack.launcher, "vmlet_launcher_output_bytes_total") - bytes0;
    print_message("flood: %.1f MB logged; launcher RSS %ld kB before, %ld kB at most (bound +%d kB)\n",
                  bytes / 1e6, base, peak, FLOOD_RSS_BOUND_KB);
    assert_true(bytes > 10e6); // it really flooded
    assert_true(peak - base < FLOOD_RSS_BOUND_KB);
    // web's ticker during the flood: no gap of more than 5 s between ticks.
    char *path = s_log_path("web", "ticker", 0);
    char *text = s_read_file(path);
    assert_non_null(text);
    int64_t prev = 0, worst = 0;
    for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (!strstr(line, " stdout F tick "))
            continue;
        struct tm tm = {0};
        char *rest = strptime(line, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!rest)
            continue;
        int64_t ms = (int64_t)timegm(&tm) * 1000 + (rest[0] == '.' ? atol(rest + 1) / 1000000 : 0);
        if (ms >= start && prev && ms - prev > worst)
            worst = ms - prev;
        prev = ms;
    }
    print_message("web's ticker during the flood: longest gap %lld ms\n", (long long)worst);
    assert_true(worst > 0 && worst < 5000);
    free(text);
    free(path);
    ts_kubectl(NULL, "delete pod -n %s flood --wait=false", g->ns);
}

// Probes against a real VM: busybox httpd's readiness (a CGI answering
// 500 while /tmp/fail exists) takes the pod's Ready to False after
// failureThreshold periods and back after recovery; a liveness exec probe
// failing restarts the container (restartCount rises; Unhealthy and
// Killing events); exec readiness probes exiting 0, 1, and hanging past
// their timeout.
static void test_probes_in_a_vm(void **state)
{
    (void)state;
    s_apply(POD_HEAD
            "  containers:\n  - name: web\n    image: %s\n"
            "    command:\n    - /bin/sh\n    - -c\n"
            "    - |\n"
            "      mkdir -p /tmp/www/cgi-bin\n"
            "      echo '#!/bin/sh' > /tmp/www/cgi-bin/ready\n"
            "      echo 'if [ -e /tmp/fail ]; then echo \"Status: 500 Failing\"; echo; echo failing; "
            "else echo \"Content-Type: text/plain\"; echo; echo ok; fi' >> /tmp/www/cgi-bin/ready\n"
            "      chmod +x /tmp/www/cgi-bin/ready\n"
            "      exec httpd -f -p 8080 -h /tmp/www\n"
            "    ports: [{name: http, containerPort: 8080}]\n"
            "    readinessProbe:\n"
            "      httpGet: {path: /cgi-bin/ready, port: http}\n"
            "      periodSeconds: 2\n      failureThreshold: 2\n"
            "    livenessProbe:\n"
            "      exec: {command: [/bin/sh, -c, 'test ! -e /tmp/dead']}\n"
            "      periodSeconds: 2\n      failureThreshold: 2\n      timeoutSeconds: 5\n",
            "probed", g->ns, g->stack.node, 2, "Always", g->busybox);
    s_apply(POD_HEAD
            "  containers:\n"
            "  - name: good\n    image: %s\n    command: [sleep, '100000']\n"
            "    readinessProbe: {exec: {command: ['true']}, periodSeconds: 2}\n"
            "  - name: bad\n    image: %s\n    command: [sleep, '100000']\n"
            "    readinessProbe: {exec: {command: [/bin/sh, -c, 'echo nope; exit 1']}, periodSeconds: 2}\n"
            "  - name: hang\n    image: %s\n    command: [sleep, '100000']\n"
            "    readinessProbe: {exec: {command: [sleep, '30']}, periodSeconds: 3, timeoutSeconds: 1}\n",
            "execs", g->ns, g->stack.node, 1, "Always", g->busybox, g->busybox, g->busybox);
    s_wait_ready("probed", 1, WAIT_MS);
    // Readiness: failing, then recovered, as kubectl shows it.
    assert_int_equal(s_exec("probed", "web", "touch /tmp/fail"), 0);
    int64_t t0 = ts_now_ms();
    s_wait_ready("probed", 0, 60000);
    print_message("Ready went False %lld ms after the path started failing (2 x 2 s)\n",
                  (long long)(ts_now_ms() - t0));
    assert_true(s_has_event("probed", "Unhealthy", "HTTP probe failed with statuscode: 500"));
    assert_int_equal(s_exec("probed", "web", "rm /tmp/fail"), 0);
    s_wait_ready("probed", 1, 60000);
    // Liveness: the container restarts, counted, with the events.
    assert_int_equal(s_exec("probed", "web", "touch /tmp/dead"), 0);
    int64_t deadline = ts_now_ms() + 120000;
    int restarts = 0;
    while (ts_now_ms() < deadline && restarts < 1) {
        cJSON *pod = s_pod("probed");
        const cJSON *rc = s_get(pod, "status.containerStatuses.0.restartCount");
        restarts = cJSON_IsNumber(rc) ? rc->valueint : 0;
        cJSON_Delete(pod);
        usleep(500 * 1000);
    }
    assert_int_equal(restarts, 1);
    assert_true(s_has_event("probed", "Unhealthy", "Liveness probe failed"));
    assert_true(s_has_event("probed", "Killing", "failed liveness probe, will be restarted"));
    s_wait_ready("probed", 1, 120000); // the new run has no /tmp/dead and passes
    // Exec readiness: 0 ready, 1 not (with its output), a hang not (timed out).
    s_wait_running("execs");
    typedef struct {
        const char *name;
        bool ready;
    } want_t;
    const want_t want[] = {{"good", true}, {"bad", false}, {"hang", false}};
    deadline = ts_now_ms() + 60000;
    bool ok = false;
    while (!ok && ts_now_ms() < deadline) {
        cJSON *pod = s_pod("execs");
        ok = true;
        const cJSON *c;
        cJSON_ArrayForEach(c, s_get(pod, "status.containerStatuses"))
        {
            const char *name = s_str(c, "name", NULL);
            bool ready = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "ready"));
            for (size_t i = 0; i < 3; i++)
                if (name && strcmp(name, want[i].name) == 0 && ready != want[i].ready)
                    ok = false;
        }
        cJSON_Delete(pod);
        ok = ok && s_has_event("execs", "Unhealthy", "nope") &&
             s_has_event("execs", "Unhealthy", "timed out");
        if (!ok)
            usleep(500 * 1000);
    }
    if (!ok) {
        char *out = NULL;
        ts_kubectl(&out, "get pod -n %s execs -o jsonpath='{.status.containerStatuses}'", g->ns);
        fprintf(stderr, "execs: %s\n", out ? out : "");
        free(out);
        out = NULL;
        ts_kubectl(&out, "get events -n %s --field-selector involvedObject.name=execs "
                         "-o custom-columns=REASON:.reason,MSG:.message --no-headers", g->ns);
        fprintf(stderr, "events:\n%s\n", out ? out : "");
        free(out);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "grep -a execs %s/status-reporter.log %s/prober.log | tail -n 40 >&2",
                 g->stack.dir, g->stack.dir);
        if (system(cmd) != 0) { /* diagnostics only */ }
    }
    assert_true(ok);
    ts_kubectl(NULL, "delete pod -n %s probed execs --wait=false", g->ns);
}

// The launcher SIGKILLed with both VMs running, then started again: the
// VMs ran on (same processes), are reported again, and what the ticker
// printed meanwhile is in its log, every line once.
static void test_launcher_killed_and_back(void **state)
{
    (void)state;
    char *cmd = vmlet_xasprintf("pgrep -f '[q]emu-system.*%s/vms' | sort", g->stack.dir);
    FILE *p = popen(cmd, "r");
    char before[512] = "";
    size_t n = fread(before, 1, sizeof before - 1, p);
    before[n] = '\0';
    pclose(p);
    assert_true(strchr(before, '\n') && strchr(strchr(before, '\n') + 1, '\n')); // two VMs
    ts_kill(g->stack.launcher.pid, SIGKILL);
    ts_wait_exit(g->stack.launcher.pid, 5000, NULL);
    sleep(4); // the ticker goes on printing with nobody listening
    const char *const launcher[] = {"--boot-timeout=120s", NULL};
    assert_int_equal(ts_stack_service(&g->stack, "vm-launcher", &g->stack.launcher, launcher), 0);
    s_wait_running("web");
    s_wait_running("multi");
    p = popen(cmd, "r");
    char after[512] = "";
    n = fread(after, 1, sizeof after - 1, p);
    after[n] = '\0';
    pclose(p);
    free(cmd);
    assert_string_equal(before, after); // neither killed nor launched twice
    assert_true(ts_service_metric(&g->stack.launcher, "vmlet_launcher_vms_adopted_total") >= 2);
    // Wait for a few ticks after the restart, then check there is no gap.
    sleep(3);
    char *path = s_log_path("web", "ticker", 0);
    char *text = s_read_file(path);
    assert_non_null(text);
    int expect = 1, last = 0;
    for (char *line = strstr(text, "stdout F tick "); line; line = strstr(line + 1, "stdout F tick ")) {
        int v = atoi(line + strlen("stdout F tick "));
        if (v != expect)
            fail_msg("ticker log: tick %d where %d was due (a gap or a repeat)", v, expect);
        expect = v + 1;
        last = v;
    }
    print_message("ticker: %d ticks, in order, none missing\n", last);
    assert_true(last >= 8);
    free(text);
    free(path);
}

// `kubectl delete`: SIGTERM reaches the process, which exits within the
// grace period; the pod goes, and so do its VM, tap and IP.
static void test_delete_cleans_up(void **state)
{
    (void)state;
    char *uid = s_pod_field("web", "metadata.uid");
    char *ip = s_pod_field("web", "status.podIP");
    assert_non_null(uid);
    int64_t start = ts_now_ms();
    assert_int_equal(ts_kubectl(NULL, "delete pod -n %s web --wait=true --timeout=120s", g->ns), 0);
    print_message("delete took %lld ms\n", (long long)(ts_now_ms() - start));
    char path[600];
    snprintf(path, sizeof path, "%s/pods/%s_web_%s/httpd/0.log", g->stack.dir, g->ns, uid);
    log_wait_t w = {path, "stdout F got TERM\n"};
    assert_true(s_log_has(&w));
    // No VM, no tap, no address left for the pod.
    char *out = NULL;
    s_in_netns(&out, "ip -o link show");
    assert_null(strstr(out, "vmlet pod=") ? strstr(out, uid) : NULL);
    free(out);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "EXISTS vmlet:ipam-pod:%s", uid);
    assert_int_equal(s_redis_count(cmd), 0);
    snprintf(cmd, sizeof cmd, "EXISTS vmlet:vm:%s", uid);
    assert_true(ts_poll(s_redis_zero, cmd, 5000)); // dropped once the stop was reported
    char *pg = vmlet_xasprintf("pgrep -f '[q]emu-system.*%s' >/dev/null", uid);
    assert_int_not_equal(system(pg), 0);
    free(pg);
    // The last pod goes too: every address is free again.
    assert_int_equal(ts_kubectl(NULL, "delete pod -n %s multi env spoof flood probed execs --ignore-not-found --wait=true --timeout=120s",
                                g->ns), 0);
    char key[100];
    snprintf(key, sizeof key, "HLEN vmlet:ipam:%s", g->stack.pod_cidr);
    assert_int_equal(s_redis_count(key), 0);
    free(uid);
    free(ip);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_args_volumes_succeed),
        cmocka_unit_test(test_crash_loop_and_never),
        cmocka_unit_test(test_two_pods_network_and_images),
        cmocka_unit_test(test_no_spoofing),
        cmocka_unit_test(test_flood_is_contained),
        cmocka_unit_test(test_probes_in_a_vm),
        cmocka_unit_test(test_launcher_killed_and_back),
        cmocka_unit_test(test_delete_cleans_up),
    };
    if (getenv("VMLET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMLET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
