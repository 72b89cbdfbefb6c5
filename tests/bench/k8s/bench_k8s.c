// tests/bench/k8s: 200 pods created at once on a vmlet node.
//
//   create -> PodDesired  per pod (k8s-watcher: watch, normalise, Redis, bus)
//   baseline: create -> the API server's own watch event for the same pod,
//             measured in the same run by a plain watch in this process
//   status writes per pod, against the distinct states each pod went
//             through (target: at most one write per state)
//
// Needs the test bed (./vmlet bench starts it).
#include "stack.h"

#include "vmlet/kube_api.h"
#include "vmlet/kube_watch.h"
#include "vmlet/timeutil.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define PODS 200

typedef struct {
    char name[64];
    char uid[64];
    int64_t created_ms;    // POST answered
    int64_t watched_ms;    // the plain watch saw it
    int64_t desired_ms;    // PodDesired arrived
} pod_times_t;

typedef struct {
    ts_stack_t stack;
    char ns[64];
    pod_times_t pods[PODS];
    int created, watched, desired;
    zhashx_t *by_uid; // uid -> pod_times_t*
    zhashx_t *by_name;
    vmlet_kube_config_t config;
    pthread_mutex_t lock;
} bench_t;

static pod_times_t *s_find(bench_t *b, const char *name)
{
    pthread_mutex_lock(&b->lock);
    pod_times_t *p = zhashx_lookup(b->by_name, name);
    pthread_mutex_unlock(&b->lock);
    return p;
}

static void s_on_watch(void *arg, vmlet_watch_event_t event, const cJSON *pod)
{
    bench_t *b = arg;
    if (event != VMLET_WATCH_ADDED && event != VMLET_WATCH_LISTED)
        return;
    const cJSON *meta = cJSON_GetObjectItem(pod, "metadata");
    pod_times_t *p = s_find(b, vmlet_json_str(meta, "name", NULL));
    if (p && !p->watched_ms) {
        p->watched_ms = vmlet_now_ms();
        b->watched++;
    }
}

static int s_on_desired(void *arg, const vmlet_envelope_t *env)
{
    bench_t *b = arg;
    pod_times_t *p = s_find(b, env->pod_desired->pod->name);
    if (p && !p->desired_ms) {
        p->desired_ms = vmlet_now_ms();
        snprintf(p->uid, sizeof p->uid, "%s", env->pod_desired->pod->uid);
        b->desired++;
    }
    return 0;
}

// Creates the pods one after another as fast as the API server takes them.
static void *s_creator(void *arg)
{
    bench_t *b = arg;
    vmlet_kube_t *kube = vmlet_kube_new(&b->config, NULL);
    char path[200];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods", b->ns);
    for (int i = 0; i < PODS; i++) {
        pod_times_t *p = &b->pods[i];
        snprintf(p->name, sizeof p->name, "bench-%03d", i);
        pthread_mutex_lock(&b->lock);
        zhashx_insert(b->by_name, p->name, p);
        pthread_mutex_unlock(&b->lock);
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\"},"
                 "\"spec\":{\"nodeName\":\"%s\",\"tolerations\":[{\"key\":"
                 "\"virtual-kubelet.io/provider\",\"operator\":\"Exists\"}],\"containers\":[{"
                 "\"name\":\"app\",\"image\":\"busybox\",\"env\":[{\"name\":\"N\",\"value\":"
                 "\"%d\"}]}]}}",
                 p->name, b->stack.node, i);
        cJSON *body = cJSON_Parse(json);
        vmlet_err_t err = {0};
        if (vmlet_kube_call(kube, "POST", path, "application/json", body, NULL, NULL, &err) != 0)
            fprintf(stderr, "bench: %s\n", err.msg);
        cJSON_Delete(body);
        p->created_ms = vmlet_now_ms();
        __atomic_add_fetch(&b->created, 1, __ATOMIC_SEQ_CST);
    }
    vmlet_kube_destroy(&kube);
    return NULL;
}

static int s_cmp(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, c = *(const int64_t *)y;
    return (a > c) - (a < c);
}

// p50, p99 and max of (to - created) over the pods.
static void s_latency(bench_t *b, bool desired, int64_t out[3])
{
    int64_t d[PODS];
    for (int i = 0; i < PODS; i++)
        d[i] = (desired ? b->pods[i].desired_ms : b->pods[i].watched_ms) - b->pods[i].created_ms;
    qsort(d, PODS, sizeof d[0], s_cmp);
    out[0] = d[PODS / 2], out[1] = d[PODS * 99 / 100], out[2] = d[PODS - 1];
}

typedef struct {
    bench_t *b;
    vmlet_bus_subscriber_t *sub;
    int64_t deadline;
} loop_ctx_t;

static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    loop_ctx_t *x = arg;
    bool done = x->b->desired == PODS && x->b->watched == PODS;
    return done || vmlet_now_ms() > x->deadline ? -1 : 0;
}

static double s_writes(bench_t *b)
{
    return ts_service_metric(&b->stack.reporter, "vmlet_status_reporter_status_writes_total");
}

// Waits until the reporter's write count has been still for a while.
static double s_settled_writes(bench_t *b)
{
    double last = -1, now;
    int still = 0;
    while (still < 20) {
        usleep(100000);
        now = s_writes(b);
        still = now == last ? still + 1 : 0;
        last = now;
    }
    return last;
}

int main(void)
{
    zsys_set_linger(0);
    if (!getenv("VMLET_BED_DIR")) {
        fprintf(stderr, "bench: VMLET_BED_DIR is not set: run it with ./vmlet bench\n");
        return 2;
    }
    bench_t b = {0};
    pthread_mutex_init(&b.lock, NULL);
    char suffix[9];
    vmlet_random_hex(suffix, 4);
    snprintf(b.ns, sizeof b.ns, "bench-%s", suffix);
    char node[64];
    snprintf(node, sizeof node, "vmlet-bench-%s", suffix);
    char *kubeconfig = ts_bed_value("BED_KUBECONFIG");
    if (ts_stack_start(&b.stack, node) < 0 ||
        vmlet_kube_config_from_file(kubeconfig, NULL, &b.config, NULL) < 0) {
        fprintf(stderr, "bench: cannot start the stack or read %s\n", kubeconfig);
        return 1;
    }
    // The benchmark measures the watcher and the reporter: no VMs.
    static const char *const launcher[] = {"--announce-interval=1s", "--accept-pods=false", NULL};
    ts_stack_service(&b.stack, "vm-launcher", &b.stack.launcher, launcher);
    ts_stack_service(&b.stack, "k8s-watcher", &b.stack.watcher, NULL);
    ts_stack_service(&b.stack, "status-reporter", &b.stack.reporter, NULL);
    if (ts_kubectl_namespace(b.ns) < 0) {
        fprintf(stderr, "bench: cannot make namespace %s\n", b.ns);
        return 1;
    }
    b.by_name = zhashx_new();

    zloop_t *loop = zloop_new();
    char selector[128];
    snprintf(selector, sizeof selector, "spec.nodeName=%s", node);
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    vmlet_kube_watch_t *watch = vmlet_kube_watch_new(&b.config, "/api/v1/pods", selector, NULL,
                                                     s_on_watch, &b, NULL, metrics, NULL);
    vmlet_kube_watch_attach(watch, loop, NULL);
    vmlet_route_t routes[] = {{VMLET__ENVELOPE__BODY_POD_DESIRED, s_on_desired}, VMLET_ROUTES_END};
    vmlet_dispatch_t *dispatch = vmlet_dispatch_new(routes, &b, metrics, NULL);
    vmlet_bus_options_t bus = {.subscribe_endpoint = b.stack.broker.subscribe, .hwm = 100000};
    vmlet_body_case_t topics[] = {VMLET__ENVELOPE__BODY_POD_DESIRED};
    vmlet_bus_subscriber_t *sub = vmlet_bus_subscriber_new(&bus, topics, 1, dispatch, metrics,
                                                           NULL, NULL);
    while (!vmlet_bus_subscriber_ready(sub))
        vmlet_bus_subscriber_receive(sub, 10, 50);
    vmlet_bus_subscriber_attach(sub, loop, NULL);
    double writes_before = s_writes(&b);

    printf("k8s benchmark: %d pods created at once on node %s\n", PODS, node);
    int64_t start = vmlet_now_ms();
    pthread_t creator;
    pthread_create(&creator, NULL, s_creator, &b);
    loop_ctx_t ctx = {&b, sub, vmlet_now_ms() + 120000};
    zloop_timer(loop, 20, 0, s_on_tick, &ctx);
    zloop_start(loop);
    pthread_join(creator, NULL);
    int64_t created_all = 0, desired_all = 0, watched_all = 0;
    for (int i = 0; i < PODS; i++) {
        created_all = b.pods[i].created_ms > created_all ? b.pods[i].created_ms : created_all;
        desired_all = b.pods[i].desired_ms > desired_all ? b.pods[i].desired_ms : desired_all;
        watched_all = b.pods[i].watched_ms > watched_all ? b.pods[i].watched_ms : watched_all;
    }
    if (b.desired < PODS || b.watched < PODS) {
        printf("only %d PodDesired and %d watch events of %d pods within 2 minutes\n", b.desired,
               b.watched, PODS);
        ts_stack_stop(&b.stack);
        return 1;
    }
    int64_t lat_watch[3], lat_desired[3];
    s_latency(&b, false, lat_watch);
    s_latency(&b, true, lat_desired);
    printf("%-34s %12s %12s\n", "", "API watch", "PodDesired");
    printf("%-34s %12lld %12lld   ratio %.2f\n", "all pods seen, ms after first POST",
           (long long)(watched_all - start), (long long)(desired_all - start),
           (double)(desired_all - start) / (double)(watched_all - start));
    printf("%-34s %12lld %12lld\n", "per pod after its POST, p50 ms", (long long)lat_watch[0],
           (long long)lat_desired[0]);
    printf("%-34s %12lld %12lld\n", "per pod after its POST, p99 ms", (long long)lat_watch[1],
           (long long)lat_desired[1]);
    printf("%-34s %12lld\n", "creating all took, ms", (long long)(created_all - start));

    // Status writes: one state (Pending, ContainerCreating), then a second
    // (Running) once every VM reports in.
    double after_pending = s_settled_writes(&b) - writes_before;
    for (int i = 0; i < PODS; i++) {
        ts_container_report_t app = {"app", "running", 0, -1};
        ts_stack_report_vm(&b.stack, b.pods[i].uid, VMLET__VM_STATE__VM_STATE_RUNNING, "10.88.1.1",
                           &app, 1);
    }
    double after_running = s_settled_writes(&b) - writes_before;
    printf("status writes per pod: %.2f for 1 state (Pending), %.2f for 2 states (+Running); "
           "target <= 1 per state\n",
           after_pending / PODS, after_running / PODS);

    vmlet_kube_watch_destroy(&watch);
    vmlet_bus_subscriber_destroy(&sub);
    vmlet_dispatch_destroy(&dispatch);
    zloop_destroy(&loop);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "delete namespace %s --wait=false", b.ns);
    ts_kubectl(NULL, "%s", cmd);
    ts_kubectl(NULL, "delete node %s --wait=false", node);
    ts_stack_stop(&b.stack);
    vmlet_metrics_destroy(&metrics);
    vmlet_kube_config_clear(&b.config);
    zhashx_destroy(&b.by_name);
    free(kubeconfig);
    return 0;
}
