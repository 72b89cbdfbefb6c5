// Pods on the virtual node, end to end against the real control plane,
// Redis and bus: a Deployment scheduled by the real scheduler becomes
// PodDesired with ConfigMap values and Secret references (the Secret's
// value nowhere in Redis or its AOF); VM and probe events (sent as
// vm-launcher and prober will send them) move the pod's status as the
// kubelet's would, with Events; deletion completes once the VM stops; bad
// pods get a clear reason and message; the watch survives an API server
// restart without announcing unchanged pods twice.
#include "stack.h"

#include "vmlet/pod_store.h"
#include "vmlet/timeutil.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SECRET_VALUE "s3cr3t-value-7f2a"
#define SECRET_B64 "czNjcjN0LXZhbHVlLTdmMmE="

typedef struct {
    ts_stack_t stack;
    char ns[64];
    vmlet_metrics_t *metrics;
    vmlet_dispatch_t *dispatch;
    vmlet_bus_subscriber_t *sub;
    zhashx_t *desired; // uid -> count of PodDesired (as a pointer-sized integer)
    zhashx_t *deleted; // uid -> count of PodDeleted
} fixture_t;

static void s_count(zhashx_t *h, const char *uid)
{
    uintptr_t n = (uintptr_t)zhashx_lookup(h, uid);
    zhashx_update(h, uid, (void *)(n + 1));
}

static int s_on_desired(void *ctx, const vmlet_envelope_t *env)
{
    s_count(((fixture_t *)ctx)->desired, env->pod_desired->pod->uid);
    return 0;
}

static int s_on_deleted(void *ctx, const vmlet_envelope_t *env)
{
    s_count(((fixture_t *)ctx)->deleted, env->pod_deleted->pod->uid);
    return 0;
}

static const vmlet_route_t routes[] = {{VMLET__ENVELOPE__BODY_POD_DESIRED, s_on_desired},
                                       {VMLET__ENVELOPE__BODY_POD_DELETED, s_on_deleted},
                                       VMLET_ROUTES_END};

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    char node[64], suffix[9];
    vmlet_random_hex(suffix, 4);
    snprintf(node, sizeof node, "vmlet-pods-%s", suffix);
    snprintf(f->ns, sizeof f->ns, "vmlet-%s", suffix);
    assert_int_equal(ts_stack_start(&f->stack, node), 0);
    f->desired = zhashx_new();
    f->deleted = zhashx_new();
    f->metrics = vmlet_metrics_new();
    f->dispatch = vmlet_dispatch_new(routes, f, f->metrics, NULL);
    vmlet_bus_options_t bus = {.subscribe_endpoint = f->stack.broker.subscribe, .hwm = 10000};
    vmlet_body_case_t topics[] = {VMLET__ENVELOPE__BODY_POD_DESIRED,
                                  VMLET__ENVELOPE__BODY_POD_DELETED};
    f->sub = vmlet_bus_subscriber_new(&bus, topics, 2, f->dispatch, f->metrics, NULL, NULL);
    while (!vmlet_bus_subscriber_ready(f->sub))
        vmlet_bus_subscriber_receive(f->sub, 10, 50);
    static const char *const fast[] = {"--resync-interval=2s", NULL};
    static const char *const retry[] = {"--retry-interval=1s", "--resync-interval=2s", NULL};
    // The test speaks for the VMs (VmEvents as vm-launcher sends them); the
    // real launcher reports capacity and takes no pods.
    static const char *const drained[] = {"--accept-pods=false", NULL};
    assert_int_equal(ts_stack_service(&f->stack, "vm-launcher", &f->stack.launcher, drained), 0);
    assert_int_equal(ts_stack_service(&f->stack, "k8s-watcher", &f->stack.watcher, retry), 0);
    assert_int_equal(ts_stack_service(&f->stack, "status-reporter", &f->stack.reporter, fast), 0);
    assert_int_equal(ts_kubectl_namespace(f->ns), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ts_kubectl(NULL, "delete namespace %s --wait=false", f->ns);
    ts_kubectl(NULL, "delete node %s --wait=false", f->stack.node);
    vmlet_bus_subscriber_destroy(&f->sub);
    vmlet_dispatch_destroy(&f->dispatch);
    vmlet_metrics_destroy(&f->metrics);
    zhashx_destroy(&f->desired);
    zhashx_destroy(&f->deleted);
    ts_stack_stop(&f->stack);
    free(f);
    return 0;
}

// --- helpers --------------------------------------------------------------------

static void s_pump(fixture_t *f)
{
    while (vmlet_bus_subscriber_receive(f->sub, 1000, 0) > 0)
        continue;
}

typedef struct {
    fixture_t *f;
    size_t want;
} count_t;

static bool s_enough_desired(void *arg)
{
    count_t *c = arg;
    s_pump(c->f);
    return zhashx_size(c->f->desired) >= c->want;
}

// A pod on our node (toleration and nodeName) from a YAML container list.
static void s_pod(fixture_t *f, const char *name, const char *restart, const char *grace,
                  const char *containers, const char *volumes)
{
    char *manifest = NULL;
    int rc =
        asprintf(&manifest,
                 "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s}\nspec:\n"
                 "  nodeName: %s\n  restartPolicy: %s\n  terminationGracePeriodSeconds: %s\n"
                 "  tolerations: [{key: virtual-kubelet.io/provider, operator: Exists}]\n"
                 "  containers:\n%s%s",
                 name, f->ns, f->stack.node, restart, grace, containers, volumes ? volumes : "");
    assert_true(rc > 0);
    assert_int_equal(ts_kubectl_apply(manifest), 0);
    free(manifest);
}

static cJSON *s_get_pod(fixture_t *f, const char *name)
{
    return ts_kubectl_json("get pod -n %s %s", f->ns, name);
}

static const char *s_at(const cJSON *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = o;
    for (char *part = strtok(buf, "."); part && cur; part = strtok(NULL, "."))
        cur = part[0] == '[' ? cJSON_GetArrayItem(cur, atoi(part + 1))
                             : cJSON_GetObjectItemCaseSensitive(cur, part);
    static char text[2048];
    if (cJSON_IsString(cur))
        return cur->valuestring;
    if (cJSON_IsBool(cur))
        return cJSON_IsTrue(cur) ? "true" : "false";
    if (cJSON_IsNumber(cur))
        return snprintf(text, sizeof text, "%g", cur->valuedouble), text;
    return NULL;
}

typedef struct {
    fixture_t *f;
    const char *pod, *path, *want;
} field_t;

static bool s_field_is(void *arg)
{
    field_t *w = arg;
    cJSON *p = s_get_pod(w->f, w->pod);
    const char *got = s_at(p, w->path);
    bool ok = got && strstr(got, w->want) != NULL;
    cJSON_Delete(p);
    return ok;
}

// Waits until a field of the pod contains `want`.
static void s_expect(fixture_t *f, const char *pod, const char *path, const char *want,
                     int timeout_ms)
{
    field_t w = {f, pod, path, want};
    if (ts_poll(s_field_is, &w, timeout_ms))
        return;
    cJSON *p = s_get_pod(f, pod);
    char *text = p ? cJSON_Print(cJSON_GetObjectItem(p, "status")) : NULL;
    fail_msg("pod %s: %s never contained '%s'; status:\n%s", pod, path, want,
             text ? text : "(no pod)");
}

typedef struct {
    fixture_t *f;
    const char *pod, *type, *status, *reason;
} condition_t;

static bool s_condition_is(void *arg);

// Waits until the pod's condition of a type has this status and reason
// (NULL: none).
static void s_expect_condition(fixture_t *f, const char *pod, const char *type, const char *status,
                               const char *reason)
{
    condition_t want = {f, pod, type, status, reason};
    if (!ts_poll(s_condition_is, &want, 20000))
        fail_msg("pod %s condition %s never became %s/%s", pod, type, status,
                 reason ? reason : "-");
}

static bool s_condition_is(void *arg)
{
    condition_t *w = arg;
    fixture_t *f = w->f;
    const char *pod = w->pod, *type = w->type, *status = w->status, *reason = w->reason;
    cJSON *p = s_get_pod(f, pod);
    const cJSON *c, *found = NULL;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cJSON_GetObjectItem(p, "status"), "conditions"))
    {
        if (strcmp(s_at(c, "type"), type) == 0)
            found = c;
    }
    const char *st = s_at(found, "status"), *why = s_at(found, "reason");
    bool ok = st && strcmp(st, status) == 0 && (reason ? why && !strcmp(why, reason) : !why);
    cJSON_Delete(p);
    return ok;
}

static char *s_uid(fixture_t *f, const char *pod)
{
    cJSON *p = s_get_pod(f, pod);
    const char *uid = s_at(p, "metadata.uid");
    char *copy = uid ? strdup(uid) : NULL;
    cJSON_Delete(p);
    return copy;
}

// --- cases ----------------------------------------------------------------------

// Every file Redis wrote (the AOF directory included).
static int s_secret_files(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "grep -rlaF -e '%s' -e '%s' '%s' >/dev/null", SECRET_VALUE,
             SECRET_B64, dir);
    return system(cmd) == 0;
}

static void test_deployment_config_and_secrets(void **state)
{
    fixture_t *f = *state;
    char manifest[4096];
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: %s}\n"
             "data: {MODE: fast, LEVEL: '3'}\n---\n"
             "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: %s}\n"
             "data: {password: %s}\n---\n"
             "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: %s}\n"
             "spec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n"
             "    metadata: {labels: {app: web}}\n    spec:\n"
             "      nodeSelector: {kubernetes.io/hostname: %s}\n"
             "      tolerations: [{key: virtual-kubelet.io/provider, operator: Exists, effect: "
             "NoSchedule}]\n"
             "      containers:\n      - name: app\n        image: busybox\n"
             "        env:\n        - {name: MODE, valueFrom: {configMapKeyRef: {name: cfg, key: "
             "MODE}}}\n        - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: "
             "password}}}\n        envFrom: [{configMapRef: {name: cfg}, prefix: CFG_}]\n",
             f->ns, f->ns, SECRET_B64, f->ns, f->stack.node);
    assert_int_equal(ts_kubectl_apply(manifest), 0);
    count_t three = {f, 3};
    if (!ts_poll(s_enough_desired, &three, 60000)) {
        char *out = NULL;
        ts_kubectl(&out, "get pods -n %s -o wide", f->ns);
        fail_msg("%zu PodDesired of 3; pods:\n%s", zhashx_size(f->desired), out);
    }
    // Each spec in Redis carries the ConfigMap's value and only a reference to the Secret.
    vmlet_store_t *store = NULL;
    char url[128];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", f->stack.redis.password,
             f->stack.redis.port);
    store = vmlet_store_new(url, NULL, NULL, NULL, NULL);
    zlistx_t *uids = zhashx_keys(f->desired);
    for (const char *uid = zlistx_first(uids); uid; uid = zlistx_next(uids)) {
        assert_int_equal((uintptr_t)zhashx_lookup(f->desired, uid), 1);
        Vmlet__PodSpec *spec = vmlet_pod_store_get(store, uid, NULL);
        assert_non_null(spec);
        const Vmlet__Container *c = spec->containers[0];
        assert_string_equal(c->env[0]->name, "MODE");
        assert_string_equal(c->env[0]->value, "fast");
        assert_int_equal(c->env[1]->source_case, VMLET__ENV_VAR__SOURCE_SECRET_KEY);
        assert_string_equal(c->env[1]->secret_key->name, "creds");
        assert_string_equal(c->env[1]->secret_key->key, "password");
        assert_int_equal(c->n_env, 2);      // MODE, PASSWORD
        assert_int_equal(c->n_env_from, 1); // the ConfigMap's CFG_MODE, CFG_LEVEL
        assert_int_equal(c->env_from[0]->n_values, 2);
        assert_string_equal(c->env_from[0]->values[0]->name, "CFG_LEVEL"); // the API sorts keys
        vmlet__pod_spec__free_unpacked(spec, NULL);
    }
    zlistx_destroy(&uids);
    vmlet_store_destroy(&store);
    // On disk: rewrite the AOF (plain text in the test's Redis) and look.
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d -a %s --no-auth-warning BGREWRITEAOF >/dev/null",
             f->stack.redis.port, f->stack.redis.password);
    assert_int_equal(system(cmd), 0);
    sleep(2);
    assert_false(s_secret_files(f->stack.redis.dir));
    snprintf(cmd, sizeof cmd,
             "redis-cli -p %d -a %s --no-auth-warning --scan | while read k; do redis-cli -p %d "
             "-a %s --no-auth-warning --raw DUMP \"$k\"; done | grep -aqF -e '%s' -e '%s'",
             f->stack.redis.port, f->stack.redis.password, f->stack.redis.port,
             f->stack.redis.password, SECRET_VALUE, SECRET_B64);
    assert_int_not_equal(system(cmd), 0);
    // And the files are really there to grep (the test would pass vacuously otherwise).
    char probe_cmd[400];
    snprintf(probe_cmd, sizeof probe_cmd, "grep -rlaF 'vmlet:pods' '%s' >/dev/null",
             f->stack.redis.dir);
    assert_int_equal(system(probe_cmd), 0);
}

static void test_status_follows_vm_and_probes(void **state)
{
    fixture_t *f = *state;
    s_pod(f, "job", "Never", "30",
          "  - name: app\n    image: busybox\n    readinessProbe: {exec: {command: ['true']}}\n",
          NULL);
    char *uid = s_uid(f, "job");
    s_expect(f, "job", "status.containerStatuses.[0].state.waiting.reason", "ContainerCreating",
             20000);
    s_expect(f, "job", "status.phase", "Pending", 1000);
    ts_container_report_t app = {"app", "running", 0, -1};
    ts_stack_report_vm(&f->stack, uid, VMLET__VM_STATE__VM_STATE_RUNNING, "10.88.0.7", &app, 1);
    s_expect(f, "job", "status.phase", "Running", 20000);
    s_expect(f, "job", "status.podIP", "10.88.0.7", 1000);
    s_expect(f, "job", "status.hostIP", "127.0.0.1", 1000);
    s_expect(f, "job", "status.containerStatuses.[0].ready", "false", 1000);
    s_expect(f, "job", "status.containerStatuses.[0].containerID", "vmlet://vm-", 1000);
    ts_stack_report_probe(&f->stack, uid, "app", "readiness", true, NULL);
    s_expect(f, "job", "status.containerStatuses.[0].ready", "true", 20000);
    s_expect_condition(f, "job", "Ready", "True", NULL);
    s_expect_condition(f, "job", "ContainersReady", "True", NULL);
    // Its VM booted again elsewhere with another address: podIPs is
    // replaced, not merged (two IPv4 addresses are refused by the API).
    ts_stack_report_vm(&f->stack, uid, VMLET__VM_STATE__VM_STATE_RUNNING, "10.88.0.70", &app, 1);
    s_expect(f, "job", "status.podIP", "10.88.0.70", 20000);
    char *ips = NULL;
    ts_kubectl(&ips, "get pod -n %s job -o jsonpath='{.status.podIPs}'", f->ns);
    if (!strstr(ips, "10.88.0.70") || strstr(ips, "10.88.0.7\""))
        fail_msg("podIPs: %s", ips);
    free(ips);
    app.state = "exited:0";
    ts_stack_report_vm(&f->stack, uid, VMLET__VM_STATE__VM_STATE_STOPPED, "10.88.0.7", &app, 1);
    s_expect(f, "job", "status.phase", "Succeeded", 20000);
    s_expect_condition(f, "job", "Ready", "False", "PodCompleted");
    s_expect(f, "job", "status.containerStatuses.[0].state.terminated.reason", "Completed", 1000);
    // A failing one.
    s_pod(f, "fails", "Never", "30", "  - {name: app, image: busybox}\n", NULL);
    char *uid2 = s_uid(f, "fails");
    app.state = "exited:3";
    s_expect(f, "fails", "status.phase", "Pending", 20000);
    ts_stack_report_vm(&f->stack, uid2, VMLET__VM_STATE__VM_STATE_STOPPED, "10.88.0.8", &app, 1);
    s_expect(f, "fails", "status.phase", "Failed", 20000);
    s_expect(f, "fails", "status.containerStatuses.[0].state.terminated.exitCode", "3", 1000);
    // The Events a kubelet would have posted.
    char *out = NULL;
    ts_kubectl(&out, "describe pod -n %s job", f->ns);
    assert_non_null(strstr(out, "Pulling"));
    assert_non_null(strstr(out, "Created container app"));
    assert_non_null(strstr(out, "Started container app"));
    free(out);
    free(uid);
    free(uid2);
}

static bool s_pod_gone(void *arg)
{
    field_t *w = arg;
    char *out = NULL;
    int rc = ts_kubectl(&out, "get pod -n %s %s", w->f->ns, w->pod);
    bool gone = rc != 0 && strstr(out, "NotFound");
    free(out);
    return gone;
}

static void test_delete_completes_when_the_vm_stops(void **state)
{
    fixture_t *f = *state;
    s_pod(f, "svc", "Always", "30", "  - {name: app, image: busybox}\n", NULL);
    char *uid = s_uid(f, "svc");
    ts_container_report_t app = {"app", "running", 0, -1};
    ts_stack_report_vm(&f->stack, uid, VMLET__VM_STATE__VM_STATE_RUNNING, "10.88.0.9", &app, 1);
    s_expect(f, "svc", "status.phase", "Running", 20000);
    assert_int_equal(ts_kubectl(NULL, "delete pod -n %s svc --wait=false", f->ns), 0);
    // The watcher says so on the bus; the pod waits for its VM.
    for (int i = 0; i < 200 && !zhashx_lookup(f->deleted, uid); i++) {
        s_pump(f);
        usleep(50000);
    }
    assert_non_null(zhashx_lookup(f->deleted, uid));
    field_t w = {f, "svc", NULL, NULL};
    sleep(2);
    assert_false(s_pod_gone(&w)); // still Terminating: the VM runs
    app.state = "exited:137";
    ts_stack_report_vm(&f->stack, uid, VMLET__VM_STATE__VM_STATE_STOPPED, "10.88.0.9", &app, 1);
    assert_true(ts_poll(s_pod_gone, &w, 20000));
    // A pod that never had a VM goes once its grace period is over.
    s_pod(f, "novm", "Always", "1", "  - {name: app, image: busybox}\n", NULL);
    s_expect(f, "novm", "status.phase", "Pending", 20000);
    assert_int_equal(ts_kubectl(NULL, "delete pod -n %s novm --wait=false", f->ns), 0);
    field_t w2 = {f, "novm", NULL, NULL};
    assert_true(ts_poll(s_pod_gone, &w2, 30000));
    char *out = NULL;
    ts_kubectl(&out, "get pods -n %s", f->ns);
    assert_null(strstr(out, "Terminating"));
    free(out);
    free(uid);
}

static void test_bad_input_gets_a_reason(void **state)
{
    fixture_t *f = *state;
    s_pod(f, "badimage", "Always", "30", "  - {name: app, image: 'busy box:latest'}\n", NULL);
    s_pod(f, "nosecret", "Always", "30",
          "  - name: app\n    image: busybox\n    env: [{name: X, valueFrom: {secretKeyRef: "
          "{name: nope, key: k}}}]\n",
          NULL);
    s_pod(f, "hostpath", "Always", "30", "  - {name: app, image: busybox}\n",
          "  volumes: [{name: h, hostPath: {path: /etc}}]\n");
    s_pod(f, "pvc", "Always", "30", "  - {name: app, image: busybox}\n",
          "  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]\n");
    s_pod(f, "badport", "Always", "30",
          "  - name: app\n    image: busybox\n    livenessProbe: {tcpSocket: {port: admin}}\n",
          NULL);
    // 1 MB of environment (kubectl create: apply would store it twice).
    size_t big = 1100000;
    char *manifest = malloc(big + 2048);
    int at = snprintf(manifest, 2048,
                      "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"bigenv\","
                      "\"namespace\":\"%s\"},\"spec\":{\"nodeName\":\"%s\",\"containers\":[{"
                      "\"name\":\"app\",\"image\":\"busybox\",\"env\":[",
                      f->ns, f->stack.node);
    for (int i = 0; i < 10; i++) {
        at += sprintf(manifest + at, "%s{\"name\":\"V%d\",\"value\":\"", i ? "," : "", i);
        memset(manifest + at, 'x', 110000);
        at += 110000;
        at += sprintf(manifest + at, "\"}");
    }
    sprintf(manifest + at, "]}]}}");
    char path[300];
    snprintf(path, sizeof path, "%s/bigenv.json", f->stack.dir);
    FILE *fp = fopen(path, "w");
    fputs(manifest, fp);
    fclose(fp);
    free(manifest);
    assert_int_equal(ts_kubectl(NULL, "create -f %s", path), 0);
    const char *reason = "status.containerStatuses.[0].state.waiting.reason";
    const char *message = "status.containerStatuses.[0].state.waiting.message";
    s_expect(f, "badimage", reason, "InvalidImageName", 20000);
    s_expect(f, "badimage", message, "couldn't parse image reference", 1000);
    s_expect(f, "nosecret", reason, "CreateContainerConfigError", 20000);
    s_expect(f, "nosecret", message, "secret \"nope\" not found", 1000);
    s_expect(f, "hostpath", message, "hostPath volumes are not supported", 20000);
    s_expect(f, "pvc", message, "persistentVolumeClaim volumes are not supported", 20000);
    s_expect(f, "badport", message, "port \"admin\" is not the name of a port", 20000);
    s_expect(f, "bigenv", reason, "CreateContainerConfigError", 20000);
    s_expect(f, "bigenv", message, "bytes in all", 1000);
    // The missing secret appears: the pod is fine again.
    char secret[300];
    snprintf(secret, sizeof secret,
             "apiVersion: v1\nkind: Secret\nmetadata: {name: nope, namespace: %s}\n"
             "stringData: {k: v}\n",
             f->ns);
    assert_int_equal(ts_kubectl_apply(secret), 0);
    s_expect(f, "nosecret", reason, "ContainerCreating", 20000);
    // Everybody is still up.
    assert_true(ts_service_metric(&f->stack.watcher, "vmlet_redis_connected") == 1);
    assert_true(ts_service_metric(&f->stack.reporter, "vmlet_redis_connected") == 1);
    char *out = NULL;
    ts_kubectl(&out, "describe pod -n %s hostpath", f->ns);
    assert_non_null(strstr(out, "hostPath volumes are not supported"));
    free(out);
}

static bool s_resynced(void *arg)
{
    fixture_t *f = arg;
    return ts_service_metric(&f->stack.watcher, "vmlet_kube_watch_synced{resource=\"pods\"}") == 1;
}

static void test_watch_survives_apiserver_restart(void **state)
{
    fixture_t *f = *state;
    s_pod(f, "steady", "Always", "30", "  - {name: app, image: busybox}\n", NULL);
    count_t one = {f, 1};
    assert_true(ts_poll(s_enough_desired, &one, 30000));
    double lists =
        ts_service_metric(&f->stack.watcher, "vmlet_kube_watch_lists_total{resource=\"pods\"}");
    char *bed = getenv("VMLET_BED_DIR"), cmd[600];
    snprintf(cmd, sizeof cmd,
             "%s/tests/bed/stop.sh %s --only apiserver >/dev/null 2>&1 && "
             "%s/tests/bed/start.sh %s >/dev/null 2>&1",
             VMLET_SOURCE_DIR, bed, VMLET_SOURCE_DIR, bed);
    assert_int_equal(system(cmd), 0);
    // The watch comes back (resuming or relisting), and a new pod is seen.
    assert_true(ts_poll(s_resynced, f, 60000));
    s_pod(f, "after", "Always", "30", "  - {name: app, image: busybox}\n", NULL);
    count_t two = {f, 2};
    assert_true(ts_poll(s_enough_desired, &two, 30000));
    double lists_after =
        ts_service_metric(&f->stack.watcher, "vmlet_kube_watch_lists_total{resource=\"pods\"}");
    print_message("pod lists before %.0f, after the restart %.0f\n", lists, lists_after);
    // The unchanged pod was not announced again.
    char *uid = s_uid(f, "steady");
    s_pump(f);
    assert_int_equal((uintptr_t)zhashx_lookup(f->desired, uid), 1);
    free(uid);
}

// Compacts etcd past every revision the watcher has seen, with the API
// server down, so its resume point is gone: the real "410 Gone".
static void s_expire_resource_versions(void)
{
    char *bed = getenv("VMLET_BED_DIR"), cmd[8192];
    char *url = ts_bed_value("BED_ETCD_URL"), *ca = ts_bed_value("BED_CA"),
         *cert = ts_bed_value("BED_ETCD_CERT"), *key = ts_bed_value("BED_ETCD_KEY");
    char etcdctl[1024];
    snprintf(etcdctl, sizeof etcdctl,
             "ETCDCTL_API=3 etcdctl --endpoints %s --cacert %s --cert %s --key %s", url, ca, cert,
             key);
    snprintf(cmd, sizeof cmd,
             "%s/tests/bed/stop.sh %s --only apiserver >/dev/null 2>&1 && "
             "%s put /vmlet-test/bump $$ >/dev/null && "
             "rev=$(%s endpoint status -w json | grep -o '\"revision\":[0-9]*' | cut -d: -f2) && "
             "%s compact $rev >/dev/null && %s/tests/bed/start.sh %s >/dev/null 2>&1",
             VMLET_SOURCE_DIR, bed, etcdctl, etcdctl, etcdctl, VMLET_SOURCE_DIR, bed);
    assert_int_equal(system(cmd), 0);
    free(url), free(ca), free(cert), free(key);
}

static bool s_relisted(void *arg)
{
    double *before = arg;
    return ts_service_metric((ts_service_t *)(uintptr_t)before[1],
                             "vmlet_kube_watch_lists_total{resource=\"pods\"}") > before[0];
}

static void test_expired_resource_version_relists_without_duplicates(void **state)
{
    fixture_t *f = *state;
    s_pod(f, "old", "Always", "30", "  - {name: app, image: busybox}\n", NULL);
    count_t one = {f, 1};
    assert_true(ts_poll(s_enough_desired, &one, 30000));
    double before[2] = {
        ts_service_metric(&f->stack.watcher, "vmlet_kube_watch_lists_total{resource=\"pods\"}"),
        (double)(uintptr_t)&f->stack.watcher};
    s_expire_resource_versions();
    assert_true(ts_poll(s_relisted, before, 60000));
    s_pod(f, "new", "Always", "30", "  - {name: app, image: busybox}\n", NULL);
    count_t two = {f, 2};
    assert_true(ts_poll(s_enough_desired, &two, 30000));
    char *uid = s_uid(f, "old");
    s_pump(f);
    assert_int_equal((uintptr_t)zhashx_lookup(f->desired, uid), 1);
    free(uid);
}

static bool s_spec_stored(void *arg)
{
    void **a = arg; // {store, uid}
    char hash[VMLET_POD_HASH_LEN];
    return vmlet_pod_store_hash(a[0], a[1], hash, NULL) == 1;
}

static bool s_spec_gone(void *arg)
{
    return !s_spec_stored(arg);
}

static void test_resync_repairs_drift_both_ways(void **state)
{
    fixture_t *f = *state;
    s_pod(f, "kept", "Always", "30", "  - {name: app, image: busybox}\n", NULL);
    count_t one = {f, 1};
    assert_true(ts_poll(s_enough_desired, &one, 30000));
    char *uid = s_uid(f, "kept");
    char url[128];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", f->stack.redis.password,
             f->stack.redis.port);
    vmlet_store_t *store = vmlet_store_new(url, NULL, NULL, NULL, NULL);
    // Redis lost a pod Kubernetes has, and holds one Kubernetes never had.
    redisReply *r = vmlet_store_command(store, NULL, "DEL vmlet:pod:%s", uid);
    freeReplyObject(r);
    r = vmlet_store_command(store, NULL, "SREM vmlet:pods %s", uid);
    freeReplyObject(r);
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = "ghost-uid", ref.namespace_ = f->ns, ref.name = "ghost";
    Vmlet__PodSpec ghost = VMLET__POD_SPEC__INIT;
    ghost.pod = &ref;
    assert_int_equal(vmlet_pod_store_put(store, &ghost, "0000", NULL), 0);
    // The watcher's next relist (every 2 s here) puts both right.
    void *lost[2] = {store, uid}, *stray[2] = {store, "ghost-uid"};
    assert_true(ts_poll(s_spec_stored, lost, 30000));
    assert_true(ts_poll(s_spec_gone, stray, 30000));
    vmlet_store_destroy(&store);
    free(uid);
}

// The COUNT column of a custom-columns line starting with `reason`, or 0.
static int s_event_count(const char *table, const char *reason)
{
    size_t n = strlen(reason);
    for (const char *line = table; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, reason, n) == 0 && line[n] == ' ')
            return atoi(line + n);
    return 0;
}

static void test_events_count_repeats(void **state)
{
    fixture_t *f = *state;
    s_pod(f, "flaky", "Always", "30",
          "  - name: app\n    image: busybox\n    livenessProbe: {exec: {command: ['true']}}\n",
          NULL);
    char *uid = s_uid(f, "flaky");
    ts_container_report_t app = {"app", "running", 0, -1};
    ts_stack_report_vm(&f->stack, uid, VMLET__VM_STATE__VM_STATE_RUNNING, "10.88.0.11", &app, 1);
    s_expect(f, "flaky", "status.phase", "Running", 20000);
    for (int i = 0; i < 3; i++)
        ts_stack_report_probe(&f->stack, uid, "app", "liveness", false, "exit status 1");
    ts_stack_report_probe_warning(&f->stack, uid, "app", "liveness",
                                  "Probe terminated redirects, Response body: moved");
    // A crash loop, as the launcher reports it after a restart.
    ts_container_report_t looping = {"app", "waiting:CrashLoopBackOff", 1, 1};
    ts_stack_report_vm(&f->stack, uid, VMLET__VM_STATE__VM_STATE_RUNNING, "10.88.0.11", &looping,
                       1);
    s_expect(f, "flaky", "status.containerStatuses.[0].state.waiting.reason", "CrashLoopBackOff",
             20000);
    s_expect(f, "flaky", "status.containerStatuses.[0].restartCount", "1", 1000);
    char *out = NULL;
    for (int i = 0; i < 100; i++) { // Events are written as they come; poll for the third
        free(out);
        ts_kubectl(&out,
                   "get events -n %s --field-selector involvedObject.name=flaky "
                   "-o custom-columns=REASON:.reason,COUNT:.count,MSG:.message --no-headers",
                   f->ns);
        if (s_event_count(out, "Unhealthy") == 3 && strstr(out, "BackOff") &&
            strstr(out, "ProbeWarning"))
            break;
        usleep(100000);
    }
    if (!strstr(out, "Liveness probe failed: exit status 1") ||
        s_event_count(out, "Unhealthy") != 3 ||
        !strstr(out, "Liveness probe warning: Probe terminated redirects, Response body: moved") ||
        !strstr(out, "Back-off restarting failed container"))
        fail_msg("events:\n%s", out);
    free(out);
    assert_int_equal(ts_kubectl(NULL, "delete pod -n %s flaky --wait=false", f->ns), 0);
    for (int i = 0; i < 100; i++) {
        ts_kubectl(&out,
                   "get events -n %s --field-selector involvedObject.name=flaky,reason=Killing "
                   "--no-headers",
                   f->ns);
        bool found = strstr(out, "Stopping container app") != NULL;
        free(out);
        out = NULL;
        if (found)
            break;
        assert_true(i < 99);
        usleep(100000);
    }
    free(uid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deployment_config_and_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_follows_vm_and_probes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_completes_when_the_vm_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_gets_a_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_survives_apiserver_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_resource_version_relists_without_duplicates,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_resync_repairs_drift_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_count_repeats, setup, teardown),
    };
    return TS_RUN(tests);
}
