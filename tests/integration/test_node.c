// The virtual node against the real control plane: it appears Ready with
// the launcher's real capacity, labels, taint, addresses and Lease; with
// the watcher stopped past the node grace period the controller-manager
// marks it NotReady and its pods not Ready; restarted, the same Node is
// Ready again and so are its running pods; with no launcher it is NotReady
// with a reason.
#include "stack.h"

#include "vmlet/quantity.h"
#include "vmlet/timeutil.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    ts_stack_t stack;
} fixture_t;

// The test speaks for the VMs itself (as issue 3 has it); the real
// launcher reports its capacity and takes no pods.
static const char *const launcher_args[] = {"--accept-pods=false", "--reserve-cpu=500m", "--reserve-memory=1Gi",
                                            "--announce-interval=1s", NULL};
static const char *const reporter_args[] = {"--resync-interval=1s", NULL};

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    char node[64], suffix[9];
    vmlet_random_hex(suffix, 4);
    snprintf(node, sizeof node, "vmlet-node-%s", suffix);
    assert_int_equal(ts_stack_start(&f->stack, node), 0);
    assert_int_equal(ts_stack_service(&f->stack, "vm-launcher", &f->stack.launcher, launcher_args), 0);
    assert_int_equal(ts_stack_service(&f->stack, "k8s-watcher", &f->stack.watcher, NULL), 0);
    assert_int_equal(ts_stack_service(&f->stack, "status-reporter", &f->stack.reporter, reporter_args), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ts_kubectl(NULL, "delete node %s --wait=false", f->stack.node);
    ts_kubectl(NULL, "delete pod -n default -l vmlet-test=%s --grace-period=0 --force --wait=false",
               f->stack.node);
    ts_stack_stop(&f->stack);
    free(f);
    return 0;
}

// --- reading the Node ------------------------------------------------------------

static const char *s_path(const cJSON *o, const char *a, const char *b, const char *c)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    if (c)
        x = cJSON_GetObjectItemCaseSensitive(x, c);
    return cJSON_GetStringValue(x);
}

static const cJSON *s_condition(const cJSON *obj, const char *type)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(
                              cJSON_GetObjectItemCaseSensitive(obj, "status"), "conditions"))
    {
        const char *t = s_path(c, "type", NULL, NULL);
        if (t && strcmp(t, type) == 0)
            return c;
    }
    return NULL;
}

typedef struct {
    const char *what; // "node" or "pod/<name>"
    const char *name;
    const char *condition;
    const char *status; // wanted
} wait_t;

static bool s_condition_is(void *arg)
{
    wait_t *w = arg;
    cJSON *obj = strcmp(w->what, "node") == 0 ? ts_kubectl_json("get node %s", w->name)
                                               : ts_kubectl_json("get pod -n default %s", w->name);
    const char *st = s_path(s_condition(obj, w->condition), "status", NULL, NULL);
    bool ok = st && strcmp(st, w->status) == 0;
    cJSON_Delete(obj);
    return ok;
}

static void s_wait_condition(const char *what, const char *name, const char *condition,
                             const char *status, int timeout_ms)
{
    wait_t w = {what, name, condition, status};
    if (!ts_poll(s_condition_is, &w, timeout_ms)) {
        char *out = NULL;
        ts_kubectl(&out, "get %s %s -n default -o yaml", strcmp(what, "node") ? "pod" : "node",
                   name);
        fail_msg("%s %s: %s never became %s in %d ms:\n%s", what, name, condition, status,
                 timeout_ms, out);
    }
}

// --- cases -----------------------------------------------------------------------------

static void test_ready_with_real_capacity(void **state)
{
    fixture_t *f = *state;
    const char *node = f->stack.node;
    s_wait_condition("node", node, "Ready", "True", 30000);
    cJSON *n = ts_kubectl_json("get node %s", node);
    // Capacity: this host's CPUs and memory less the reserve.
    char want_cpu[32], want_mem[32];
    vmlet_quantity_format_milli(sysconf(_SC_NPROCESSORS_ONLN) * 1000 - 500, want_cpu,
                                sizeof want_cpu);
    FILE *mi = fopen("/proc/meminfo", "r");
    long long kib = 0;
    assert_int_equal(fscanf(mi, "MemTotal: %lld kB", &kib), 1);
    fclose(mi);
    vmlet_quantity_format_bytes(kib * 1024 - (1LL << 30), want_mem, sizeof want_mem);
    assert_string_equal(s_path(n, "status", "capacity", "cpu"), want_cpu);
    assert_string_equal(s_path(n, "status", "capacity", "memory"), want_mem);
    assert_string_equal(s_path(n, "status", "capacity", "pods"), "110");
    assert_string_equal(s_path(n, "status", "allocatable", "cpu"), want_cpu);
    const cJSON *labels = cJSON_GetObjectItem(cJSON_GetObjectItem(n, "metadata"), "labels");
    assert_string_equal(s_path(labels, "type", NULL, NULL), "virtual-kubelet");
    assert_string_equal(s_path(labels, "kubernetes.io/role", NULL, NULL), "agent");
    assert_string_equal(s_path(labels, "kubernetes.io/hostname", NULL, NULL), node);
    assert_string_equal(s_path(labels, "beta.kubernetes.io/arch", NULL, NULL), "amd64");
    char *text = cJSON_PrintUnformatted(n);
    assert_non_null(strstr(text, "{\"effect\":\"NoSchedule\",\"key\":\"virtual-kubelet.io/provider\","
                                 "\"value\":\"vmlet\"}"));
    assert_non_null(strstr(text, "{\"address\":\"127.0.0.1\",\"type\":\"InternalIP\"}"));
    assert_non_null(strstr(text, "\"kubeletEndpoint\":{\"Port\":10250}"));
    assert_non_null(strstr(text, "\"containerRuntimeVersion\":\"vmlet://"));
    free(text);
    // The heartbeat: a Lease owned by the Node.
    cJSON *lease = ts_kubectl_json("get lease -n kube-node-lease %s", node);
    assert_string_equal(s_path(lease, "spec", "holderIdentity", NULL), node);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(lease, "spec"), "leaseDurationSeconds")
                         ->valueint,
                     40);
    const cJSON *owner = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(lease, "metadata"), "ownerReferences"), 0);
    assert_string_equal(s_path(owner, "uid", NULL, NULL), s_path(n, "metadata", "uid", NULL));
    cJSON_Delete(lease);
    cJSON_Delete(n);
}

static void s_create_pod(const char *node, const char *name)
{
    char manifest[2048];
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: default, labels: "
             "{vmlet-test: %s}}\nspec:\n  nodeName: %s\n  tolerations: [{key: "
             "virtual-kubelet.io/provider, operator: Exists}]\n  containers:\n  - {name: app, "
             "image: busybox}\n",
             name, node, node);
    assert_int_equal(ts_kubectl_apply(manifest), 0);
}

static char *s_uid(const char *pod)
{
    cJSON *p = ts_kubectl_json("get pod -n default %s", pod);
    char *uid = p ? strdup(s_path(p, "metadata", "uid", NULL)) : NULL;
    cJSON_Delete(p);
    return uid;
}

static void test_not_ready_while_watcher_away_then_back(void **state)
{
    fixture_t *f = *state;
    const char *node = f->stack.node;
    s_wait_condition("node", node, "Ready", "True", 30000);
    char pod[96];
    snprintf(pod, sizeof pod, "%s-p", node);
    s_create_pod(node, pod);
    char *uid = s_uid(pod);
    assert_non_null(uid);
    // As vm-launcher will: the VM runs the container (no probes: ready).
    ts_container_report_t app = {"app", "running", 0, -1};
    assert_int_equal(
        ts_stack_report_vm(&f->stack, uid, VMLET__VM_STATE__VM_STATE_RUNNING, "10.88.0.9", &app, 1),
        0);
    s_wait_condition("pod", pod, "Ready", "True", 20000);
    cJSON *before = ts_kubectl_json("get node %s", node);
    char *node_uid = strdup(s_path(before, "metadata", "uid", NULL));
    cJSON_Delete(before);
    // No heartbeat past the grace period (20 s in the bed): NotReady.
    ts_stack_service_stop(&f->stack.watcher);
    s_wait_condition("node", node, "Ready", "Unknown", 60000);
    s_wait_condition("pod", pod, "Ready", "False", 30000);
    // Back: the same Node object, Ready, and its pod Ready again.
    assert_int_equal(ts_stack_service(&f->stack, "k8s-watcher", &f->stack.watcher, NULL), 0);
    s_wait_condition("node", node, "Ready", "True", 30000);
    cJSON *after = ts_kubectl_json("get node %s", node);
    assert_string_equal(s_path(after, "metadata", "uid", NULL), node_uid);
    cJSON_Delete(after);
    s_wait_condition("pod", pod, "Ready", "True", 30000);
    free(node_uid);
    free(uid);
}

static void test_no_launcher_means_not_ready(void **state)
{
    fixture_t *f = *state;
    s_wait_condition("node", f->stack.node, "Ready", "True", 30000);
    ts_stack_service_stop(&f->stack.launcher);
    s_wait_condition("node", f->stack.node, "Ready", "False", 30000);
    cJSON *n = ts_kubectl_json("get node %s", f->stack.node);
    assert_string_equal(s_path(s_condition(n, "Ready"), "reason", NULL, NULL), "NoLauncher");
    assert_string_equal(s_path(n, "status", "capacity", "cpu"), "0");
    cJSON_Delete(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ready_with_real_capacity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_ready_while_watcher_away_then_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_launcher_means_not_ready, setup, teardown),
    };
    return TS_RUN(tests);
}
