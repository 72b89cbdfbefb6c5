// The prober against real servers on loopback (an HTTP server and a gRPC
// health server of the test's own), real Redis and the real broker: the
// verdicts it publishes after thresholds, the restarts it asks for, startup
// gating and initial delay, tcpSocket and grpc probes, and three prober
// instances sharing pods through their leases when one is SIGKILLed.
//
// The pods' VMs: this test speaks for vm-launcher (their VmRecords in
// Redis and VmEvents on the bus, as the launcher writes them), since
// thirty VMs cannot boot here; test_vms probes real VMs.
#include "stack.h"
#include "ts_grpc_health.h"
#include "ts_http_target.h"

#include "vmlet/pb.h"
#include "vmlet/pod_store.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_PODS 40
#define MAX_RESULTS 4096

typedef struct {
    char uid[64];
    char container_id[64];
    int64_t started_unix_ms;
} test_pod_t;

typedef struct {
    char uid[64];
    char container[64];
    Vmlet__ProbeKind kind;
    Vmlet__ProbeOutcome outcome; // verdict, or UNSPECIFIED
    Vmlet__ProbeOutcome attempt;
    bool restart;
    char output[256];
    int32_t consecutive;
    bool warning;
} seen_result_t;

typedef struct {
    ts_stack_t stack;
    ts_http_target_t *http;
    ts_grpc_health_t *grpc;
    ts_service_t probers[3];
    vmlet_store_t *store;
    vmlet_metrics_t *metrics;
    vmlet_dispatch_t *dispatch;
    vmlet_bus_subscriber_t *sub;
    vmlet_bus_worker_t *worker;
    zloop_t *loop; // drives the subscriber and the worker while the test waits
    test_pod_t pods[MAX_PODS];
    size_t n_pods;
    seen_result_t results[MAX_RESULTS];
    size_t n_results;
    char restarts[64][128]; // "uid/container" of each RestartRequest
    size_t n_restarts;
} fixture_t;

// --- the test's ears ----------------------------------------------------------------

static int s_on_result(void *ctx, const vmlet_envelope_t *env)
{
    fixture_t *f = ctx;
    const Vmlet__ProbeResult *r = env->probe_result;
    if (f->n_results == MAX_RESULTS || !r->pod)
        return 0;
    seen_result_t *s = &f->results[f->n_results++];
    snprintf(s->uid, sizeof s->uid, "%s", r->pod->uid);
    snprintf(s->container, sizeof s->container, "%s", r->container ? r->container : "");
    s->kind = r->kind;
    s->outcome = r->has_outcome ? r->outcome : VMLET__PROBE_OUTCOME__PROBE_OUTCOME_UNSPECIFIED;
    s->attempt = r->has_attempt ? r->attempt : VMLET__PROBE_OUTCOME__PROBE_OUTCOME_UNSPECIFIED;
    s->restart = r->restart;
    s->warning = r->warning;
    s->consecutive = r->consecutive;
    snprintf(s->output, sizeof s->output, "%s", r->output ? r->output : "");
    return 0;
}

static int s_on_restart(void *ctx, const vmlet_envelope_t *env)
{
    fixture_t *f = ctx;
    const Vmlet__RestartRequest *r = env->restart_request;
    if (f->n_restarts < 64 && r->pod)
        snprintf(f->restarts[f->n_restarts++], sizeof f->restarts[0], "%s/%s", r->pod->uid,
                 r->container);
    return 0;
}

static int s_end_loop(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    (void)arg;
    return -1;
}

// Lets the bus work for ms: results arrive, restart requests are taken.
static void s_pump(fixture_t *f, int ms)
{
    zloop_timer(f->loop, (size_t)(ms > 0 ? ms : 1), 1, s_end_loop, NULL);
    zloop_start(f->loop);
}

// --- speaking for the launcher and the watcher ------------------------------------------

static Vmlet__ContainerStatus *s_running(const char *name, const test_pod_t *p)
{
    Vmlet__ContainerStatus *st = PB_NEW(Vmlet__ContainerStatus, VMLET__CONTAINER_STATUS__INIT);
    st->name = vmlet_xstrdup(name);
    st->container_id = vmlet_xstrdup(p->container_id);
    st->state = PB_NEW(Vmlet__ContainerState, VMLET__CONTAINER_STATE__INIT);
    st->state->state_case = VMLET__CONTAINER_STATE__STATE_RUNNING;
    st->state->running = PB_NEW(Vmlet__ContainerStateRunning, VMLET__CONTAINER_STATE_RUNNING__INIT);
    PB_SET(st->state->running, started_unix_ms, p->started_unix_ms);
    return st;
}

// The pod's VM as vm-launcher records and announces it: running, at 127.0.0.1.
static void s_report_vm(fixture_t *f, const test_pod_t *p)
{
    static uint64_t generation;
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = (char *)p->uid, ref.namespace_ = "default", ref.name = (char *)p->uid;
    Vmlet__ContainerStatus *st = s_running("app", p);
    Vmlet__ContainerRecord cr = VMLET__CONTAINER_RECORD__INIT, *crs[] = {&cr};
    cr.status = st;
    Vmlet__VmRecord rec = VMLET__VM_RECORD__INIT;
    rec.pod = &ref, rec.launcher_id = "test";
    PB_SET(&rec, state, VMLET__VM_STATE__VM_STATE_RUNNING);
    PB_SET(&rec, generation, ++generation);
    rec.pod_ip = "127.0.0.1";
    rec.containers = crs, rec.n_containers = 1;
    size_t len = vmlet__vm_record__get_packed_size(&rec);
    uint8_t *bytes = vmlet_xmalloc(len);
    vmlet__vm_record__pack(&rec, bytes);
    freeReplyObject(vmlet_store_command(f->store, NULL, "SET vmlet:vm:%s %b", p->uid, bytes, len));
    free(bytes);
    Vmlet__VmEvent ev = VMLET__VM_EVENT__INIT;
    ev.pod = &ref;
    PB_SET(&ev, state, VMLET__VM_STATE__VM_STATE_RUNNING);
    ev.pod_ip = "127.0.0.1";
    ev.containers = &st, ev.n_containers = 1;
    PB_SET(&ev, generation, generation);
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_VM_EVENT;
    env.vm_event = &ev;
    vmlet_bus_publish(f->stack.publisher, &env, NULL);
    vmlet__container_status__free_unpacked(st, NULL);
}

// A pod with one container "app" and the given probes, stored as
// k8s-watcher stores pods, its VM reported running since started_ago_ms.
static test_pod_t *s_pod(fixture_t *f, const char *uid, Vmlet__Probe *liveness,
                         Vmlet__Probe *readiness, Vmlet__Probe *startup, int64_t started_ago_ms)
{
    test_pod_t *p = &f->pods[f->n_pods++];
    snprintf(p->uid, sizeof p->uid, "%s", uid);
    snprintf(p->container_id, sizeof p->container_id, "vmlet://%s/app/0", uid);
    p->started_unix_ms = vmlet_unix_ms() - started_ago_ms;
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = (char *)uid, ref.namespace_ = "default", ref.name = (char *)uid;
    Vmlet__ContainerPort port = VMLET__CONTAINER_PORT__INIT, *ports[] = {&port};
    port.name = "http";
    PB_SET(&port, container_port, ts_http_target_port(f->http));
    Vmlet__Container c = VMLET__CONTAINER__INIT, *cs[] = {&c};
    c.name = "app", c.image = "busybox";
    c.ports = ports, c.n_ports = 1;
    c.liveness_probe = liveness, c.readiness_probe = readiness, c.startup_probe = startup;
    Vmlet__PodSpec spec = VMLET__POD_SPEC__INIT;
    spec.pod = &ref, spec.containers = cs, spec.n_containers = 1;
    char hash[VMLET_POD_HASH_LEN];
    vmlet_pod_spec_hash(&spec, hash);
    assert_int_equal(vmlet_pod_store_put(f->store, &spec, hash, NULL), 0);
    s_report_vm(f, p);
    return p;
}

// An httpGet probe on the test's HTTP server (by the port's name).
static Vmlet__Probe *s_http(const char *path, int period, int failures)
{
    Vmlet__Probe *p = PB_NEW(Vmlet__Probe, VMLET__PROBE__INIT);
    p->handler_case = VMLET__PROBE__HANDLER_HTTP_GET;
    p->http_get = PB_NEW(Vmlet__HttpGetAction, VMLET__HTTP_GET_ACTION__INIT);
    p->http_get->path = vmlet_xstrdup(path);
    p->http_get->port = PB_NEW(Vmlet__PortRef, VMLET__PORT_REF__INIT);
    p->http_get->port->port_case = VMLET__PORT_REF__PORT_NAME;
    p->http_get->port->name = vmlet_xstrdup("http");
    PB_SET(p, period_seconds, period);
    PB_SET(p, failure_threshold, failures);
    return p;
}

// --- counting what was seen -------------------------------------------------------------

// Index of the first result for uid matching the test, from `from` on; -1.
static long s_find(fixture_t *f, size_t from, const char *uid, Vmlet__ProbeKind kind,
                   Vmlet__ProbeOutcome outcome, Vmlet__ProbeOutcome attempt)
{
    for (size_t i = from; i < f->n_results; i++) {
        const seen_result_t *r = &f->results[i];
        if (strcmp(r->uid, uid) == 0 && r->kind == kind &&
            (!outcome || r->outcome == outcome) && (!attempt || r->attempt == attempt))
            return (long)i;
    }
    return -1;
}

static long s_wait_result(fixture_t *f, size_t from, const char *uid, Vmlet__ProbeKind kind,
                          Vmlet__ProbeOutcome outcome, Vmlet__ProbeOutcome attempt, int ms)
{
    int64_t deadline = vmlet_now_ms() + ms;
    long at;
    while ((at = s_find(f, from, uid, kind, outcome, attempt)) < 0 && vmlet_now_ms() < deadline)
        s_pump(f, 50);
    return at;
}

#define READINESS VMLET__PROBE_KIND__PROBE_KIND_READINESS
#define LIVENESS VMLET__PROBE_KIND__PROBE_KIND_LIVENESS
#define STARTUP VMLET__PROBE_KIND__PROBE_KIND_STARTUP
#define OK VMLET__PROBE_OUTCOME__PROBE_OUTCOME_SUCCESS
#define FAIL VMLET__PROBE_OUTCOME__PROBE_OUTCOME_FAILURE

// --- setup ------------------------------------------------------------------------------

static int s_start_prober(fixture_t *f, int i, const char *lease)
{
    char id[64], lease_flag[64];
    snprintf(id, sizeof id, "--prober-id=prober-%d", i);
    snprintf(lease_flag, sizeof lease_flag, "--lease-period=%s", lease);
    const char *const args[] = {id, lease_flag, NULL};
    return ts_stack_service(&f->stack, "prober", &f->probers[i], args);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_int_equal(ts_stack_start(&f->stack, "vmlet-prober-test"), 0);
    f->http = ts_http_target_start();
    f->grpc = ts_grpc_health_start();
    assert_non_null(f->http);
    assert_non_null(f->grpc);
    char url[200];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", f->stack.redis.password,
             f->stack.redis.port);
    f->store = vmlet_store_new(url, NULL, NULL, NULL, NULL);
    f->metrics = vmlet_metrics_new();
    static const vmlet_route_t routes[] = {{VMLET__ENVELOPE__BODY_PROBE_RESULT, s_on_result},
                                           {VMLET__ENVELOPE__BODY_RESTART_REQUEST, s_on_restart},
                                           VMLET_ROUTES_END};
    f->dispatch = vmlet_dispatch_new(routes, f, f->metrics, NULL);
    vmlet_bus_options_t bus = {.subscribe_endpoint = f->stack.broker.subscribe,
                               .publish_endpoint = f->stack.broker.publish,
                               .work_endpoint = f->stack.broker.work,
                               .heartbeat_ms = 200, .hwm = 100000, .source = "test"};
    vmlet_body_case_t topics[] = {VMLET__ENVELOPE__BODY_PROBE_RESULT};
    f->sub = vmlet_bus_subscriber_new(&bus, topics, 1, f->dispatch, f->metrics, NULL, NULL);
    // The test stands where vm-launcher's workers stand, to see restart requests.
    f->worker = vmlet_bus_worker_new(&bus, VMLET_QUEUE_VM_LAUNCHER, 16, f->dispatch, f->metrics,
                                     NULL, NULL);
    f->stack.publisher = vmlet_bus_publisher_new(&bus, f->metrics, NULL, NULL);
    f->loop = zloop_new();
    assert_int_equal(vmlet_bus_subscriber_attach(f->sub, f->loop, NULL), 0);
    assert_int_equal(vmlet_bus_worker_attach(f->worker, f->loop, NULL), 0);
    while (!vmlet_bus_subscriber_ready(f->sub))
        s_pump(f, 50);
    vmlet_bus_publisher_wait_ready(f->stack.publisher, 10000, NULL);
    assert_int_equal(s_start_prober(f, 0, "2s"), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < 3; i++)
        ts_stack_service_stop(&f->probers[i]);
    vmlet_bus_worker_destroy(&f->worker);
    vmlet_bus_subscriber_destroy(&f->sub);
    zloop_destroy(&f->loop);
    vmlet_dispatch_destroy(&f->dispatch);
    vmlet_store_destroy(&f->store);
    ts_http_target_stop(&f->http);
    ts_grpc_health_stop(&f->grpc);
    ts_stack_stop(&f->stack);
    vmlet_metrics_destroy(&f->metrics);
    free(f);
    return 0;
}

// --- cases ------------------------------------------------------------------------------

static void test_readiness_verdicts_follow_thresholds(void **state)
{
    fixture_t *f = *state;
    ts_http_route_t ok = {0}, bad = {.status = 500, .body = "broken"};
    ts_http_target_route(f->http, "/ready", &ok);
    s_pod(f, "pod-ready", NULL, s_http("/ready", 1, 3), NULL, 60000);
    // Ready after its first success.
    long at = s_wait_result(f, 0, "pod-ready", READINESS, OK, 0, 15000);
    assert_true(at >= 0);
    // Failing: three failed attempts (each an Unhealthy), the verdict on the third.
    ts_http_target_route(f->http, "/ready", &bad);
    long fail = s_wait_result(f, (size_t)at + 1, "pod-ready", READINESS, FAIL, 0, 15000);
    assert_true(fail >= 0);
    assert_int_equal(f->results[fail].consecutive, 3);
    assert_string_equal(f->results[fail].output, "HTTP probe failed with statuscode: 500");
    int attempts = 0;
    for (long i = at + 1; i <= fail; i++)
        attempts += strcmp(f->results[i].uid, "pod-ready") == 0 && f->results[i].attempt == FAIL;
    assert_int_equal(attempts, 3);
    // Recovered: ready again at the first success.
    ts_http_target_route(f->http, "/ready", &ok);
    long back = s_wait_result(f, (size_t)fail + 1, "pod-ready", READINESS, OK, 0, 15000);
    assert_true(back >= 0);
    // A redirect to another host is not followed: a success with a warning
    // (the ProbeWarning event), and the pod stays ready.
    ts_http_route_t away = {.status = 302, .location = "http://localhost:1/elsewhere"};
    ts_http_target_route(f->http, "/ready", &away);
    long warned = -1;
    for (int64_t end = vmlet_now_ms() + 15000; warned < 0 && vmlet_now_ms() < end; s_pump(f, 50))
        for (size_t i = (size_t)back + 1; warned < 0 && i < f->n_results; i++)
            if (strcmp(f->results[i].uid, "pod-ready") == 0 && f->results[i].warning)
                warned = (long)i;
    assert_true(warned >= 0);
    assert_int_equal(f->results[warned].attempt, OK);
    assert_non_null(strstr(f->results[warned].output, "Probe terminated redirects"));
    assert_int_equal(s_find(f, (size_t)back + 1, "pod-ready", READINESS, FAIL, 0), -1);
    ts_http_target_route(f->http, "/ready", &ok);
    // The server saw the kubelet's request.
    ts_http_request_t *reqs;
    size_t n = ts_http_target_requests(f->http, "/ready", &reqs);
    assert_true(n >= 5);
    char *ua = ts_http_request_header(&reqs[0], "User-Agent");
    assert_string_equal(ua, "kube-probe/1.20");
    free(ua);
    ts_http_requests_free(reqs, n);
}

static void test_liveness_failure_asks_for_a_restart(void **state)
{
    fixture_t *f = *state;
    ts_http_route_t bad = {.status = 503};
    ts_http_target_route(f->http, "/alive", &bad);
    test_pod_t *p = s_pod(f, "pod-live", s_http("/alive", 1, 2), NULL, NULL, 60000);
    long at = s_wait_result(f, 0, "pod-live", LIVENESS, FAIL, 0, 15000);
    assert_true(at >= 0);
    assert_true(f->results[at].restart);
    int64_t deadline = vmlet_now_ms() + 10000;
    while (f->n_restarts == 0 && vmlet_now_ms() < deadline)
        s_pump(f, 50);
    assert_int_equal(f->n_restarts, 1);
    assert_string_equal(f->restarts[0], "pod-live/app");
    // Held until the container runs again: no probes meanwhile.
    size_t before = ts_http_target_count(f->http, "/alive");
    for (int i = 0; i < 30; i++)
        s_pump(f, 100);
    assert_int_equal(ts_http_target_count(f->http, "/alive"), before);
    // A new run (as the launcher reports it): probed again, alive again.
    ts_http_route_t ok = {0};
    ts_http_target_route(f->http, "/alive", &ok);
    snprintf(p->container_id, sizeof p->container_id, "vmlet://pod-live/app/1");
    p->started_unix_ms = vmlet_unix_ms();
    s_report_vm(f, p);
    deadline = vmlet_now_ms() + 10000;
    while (ts_http_target_count(f->http, "/alive") == before && vmlet_now_ms() < deadline)
        s_pump(f, 50);
    assert_true(ts_http_target_count(f->http, "/alive") > before);
}

static Vmlet__Probe *s_tcp(int port)
{
    Vmlet__Probe *p = PB_NEW(Vmlet__Probe, VMLET__PROBE__INIT);
    p->handler_case = VMLET__PROBE__HANDLER_TCP_SOCKET;
    p->tcp_socket = PB_NEW(Vmlet__TcpSocketAction, VMLET__TCP_SOCKET_ACTION__INIT);
    p->tcp_socket->port = PB_NEW(Vmlet__PortRef, VMLET__PORT_REF__INIT);
    p->tcp_socket->port->port_case = VMLET__PORT_REF__PORT_NUMBER;
    p->tcp_socket->port->number = port;
    PB_SET(p, period_seconds, 1);
    PB_SET(p, failure_threshold, 1);
    return p;
}

static Vmlet__Probe *s_grpc(int port, const char *service)
{
    Vmlet__Probe *p = PB_NEW(Vmlet__Probe, VMLET__PROBE__INIT);
    p->handler_case = VMLET__PROBE__HANDLER_GRPC;
    p->grpc = PB_NEW(Vmlet__GrpcAction, VMLET__GRPC_ACTION__INIT);
    PB_SET(p->grpc, port, port);
    p->grpc->service = vmlet_xstrdup(service);
    PB_SET(p, period_seconds, 1);
    PB_SET(p, failure_threshold, 1);
    return p;
}

static void test_tcp_and_grpc(void **state)
{
    fixture_t *f = *state;
    int closed = ts_free_port();
    s_pod(f, "pod-tcp-open", NULL, s_tcp(ts_http_target_port(f->http)), NULL, 60000);
    s_pod(f, "pod-tcp-closed", NULL, s_tcp(closed), NULL, 60000);
    ts_grpc_health_set(f->grpc, "", TS_GRPC_SERVING);
    ts_grpc_health_set(f->grpc, "down", TS_GRPC_NOT_SERVING);
    s_pod(f, "pod-grpc-up", NULL, s_grpc(ts_grpc_health_port(f->grpc), ""), NULL, 60000);
    s_pod(f, "pod-grpc-down", NULL, s_grpc(ts_grpc_health_port(f->grpc), "down"), NULL, 60000);
    assert_true(s_wait_result(f, 0, "pod-tcp-open", READINESS, OK, 0, 15000) >= 0);
    long at = s_wait_result(f, 0, "pod-tcp-closed", READINESS, 0, FAIL, 15000);
    assert_true(at >= 0);
    assert_non_null(strstr(f->results[at].output, "connection refused"));
    assert_true(s_wait_result(f, 0, "pod-grpc-up", READINESS, OK, 0, 15000) >= 0);
    at = s_wait_result(f, 0, "pod-grpc-down", READINESS, 0, FAIL, 15000);
    assert_true(at >= 0);
    assert_non_null(strstr(f->results[at].output, "NOT_SERVING"));
    assert_true(ts_grpc_health_calls(f->grpc, "down") >= 1);
}

static void test_startup_gates_and_initial_delay_waits(void **state)
{
    fixture_t *f = *state;
    ts_http_route_t ok = {0}, bad = {.status = 500};
    ts_http_target_route(f->http, "/start", &bad);
    ts_http_target_route(f->http, "/gated-live", &ok);
    ts_http_target_route(f->http, "/gated-ready", &ok);
    ts_http_target_route(f->http, "/late", &ok);
    s_pod(f, "pod-gated", s_http("/gated-live", 1, 3), s_http("/gated-ready", 1, 3),
          s_http("/start", 1, 100), 60000);
    Vmlet__Probe *late = s_http("/late", 1, 3);
    PB_SET(late, initial_delay_seconds, 6);
    int64_t started = vmlet_unix_ms();
    s_pod(f, "pod-late", NULL, late, NULL, 0);
    for (int i = 0; i < 40; i++) // 4 s: the startup probe fails all along
        s_pump(f, 100);
    print_message("in 4 s: /start %zu, /gated-live %zu, /gated-ready %zu, /late %zu\n",
                  ts_http_target_count(f->http, "/start"), ts_http_target_count(f->http, "/gated-live"),
                  ts_http_target_count(f->http, "/gated-ready"), ts_http_target_count(f->http, "/late"));
    assert_true(ts_http_target_count(f->http, "/start") >= 2);
    assert_int_equal(ts_http_target_count(f->http, "/gated-live"), 0);
    assert_int_equal(ts_http_target_count(f->http, "/gated-ready"), 0);
    assert_int_equal(ts_http_target_count(f->http, "/late"), 0); // not before 6 s
    ts_http_target_route(f->http, "/start", &ok);
    assert_true(s_wait_result(f, 0, "pod-gated", STARTUP, OK, 0, 10000) >= 0);
    assert_true(s_wait_result(f, 0, "pod-gated", READINESS, OK, 0, 10000) >= 0);
    // Liveness runs on its own schedule: its first probe may come up to a
    // period after readiness's.
    for (int i = 0; i < 30 && ts_http_target_count(f->http, "/gated-live") == 0; i++)
        s_pump(f, 100);
    assert_true(ts_http_target_count(f->http, "/gated-live") >= 1);
    assert_true(s_wait_result(f, 0, "pod-late", READINESS, OK, 0, 10000) >= 0);
    ts_http_request_t *reqs;
    size_t n = ts_http_target_requests(f->http, "/late", &reqs);
    assert_true(n >= 1);
    // Its first probe came no sooner than the delay after the container started.
    int64_t first_unix_ms = vmlet_unix_ms() - (ts_mono_us() - reqs[0].arrival_us) / 1000;
    print_message("first /late probe %lld ms after the start (delay 6000)\n",
                  (long long)(first_unix_ms - started));
    assert_true(first_unix_ms - started >= 5900);
    ts_http_requests_free(reqs, n);
}

// Three probers share thirty pods; one is SIGKILLed. From one period after
// the kill on, no pod is probed twice within a period, and none goes
// unprobed for longer than two lease periods.
static void test_three_probers_one_killed(void **state)
{
    fixture_t *f = *state;
    ts_stack_service_stop(&f->probers[0]);
    const int lease_ms = 2000;
    for (int i = 0; i < 3; i++)
        assert_int_equal(s_start_prober(f, i, "2s"), 0);
    sleep(1); // every prober's presence is known before the pods come
    ts_http_route_t ok = {0};
    for (int i = 0; i < 30; i++) {
        char uid[32], path[32];
        snprintf(uid, sizeof uid, "shared-%02d", i);
        snprintf(path, sizeof path, "/shared-%02d", i);
        ts_http_target_route(f->http, path, &ok);
        s_pod(f, uid, NULL, s_http(path, 1, 3), NULL, 60000);
    }
    // Everyone probed, and the pods spread over the three.
    int64_t deadline = vmlet_now_ms() + 20000;
    bool all = false;
    while (!all && vmlet_now_ms() < deadline) {
        s_pump(f, 200);
        all = true;
        for (int i = 0; i < 30 && all; i++) {
            char path[32];
            snprintf(path, sizeof path, "/shared-%02d", i);
            all = ts_http_target_count(f->http, path) >= 2;
        }
    }
    assert_true(all);
    double owned[3];
    for (int i = 0; i < 3; i++)
        owned[i] = ts_service_metric(&f->probers[i], "vmlet_prober_pods_owned");
    print_message("pods owned: %.0f %.0f %.0f\n", owned[0], owned[1], owned[2]);
    assert_true(owned[0] + owned[1] + owned[2] >= 30);
    int victim = owned[0] > 0 ? 0 : owned[1] > 0 ? 1 : 2;
    int64_t killed_us = ts_mono_us();
    ts_kill(f->probers[victim].pid, SIGKILL);
    ts_wait_exit(f->probers[victim].pid, 5000, NULL);
    f->probers[victim].pid = 0;
    for (int i = 0; i < 60; i++) // 6 s: three lease periods
        s_pump(f, 100);
    // From the kill: each pod probed again within two lease periods (the
    // victim's pods once their leases ran out), and from one period after
    // it, never twice within a period.
    int64_t slowest = 0, tightest = INT64_MAX;
    for (int i = 0; i < 30; i++) {
        char path[32];
        snprintf(path, sizeof path, "/shared-%02d", i);
        ts_http_request_t *reqs;
        size_t n = ts_http_target_requests(f->http, path, &reqs);
        int64_t first_after = -1;
        for (size_t k = 0; k < n; k++) {
            if (first_after < 0 && reqs[k].arrival_us > killed_us)
                first_after = (reqs[k].arrival_us - killed_us) / 1000;
            if (k > 0 && reqs[k - 1].arrival_us >= killed_us + 1000000) {
                int64_t gap = (reqs[k].arrival_us - reqs[k - 1].arrival_us) / 1000;
                if (gap < tightest)
                    tightest = gap;
            }
        }
        if (first_after < 0 || first_after > slowest)
            slowest = first_after < 0 ? INT64_MAX : first_after;
        // And probed until the end.
        assert_true(n >= 2 && ts_mono_us() - reqs[n - 1].arrival_us < 2 * 1000000);
        ts_http_requests_free(reqs, n);
    }
    print_message("after the kill: every pod probed again within %lld ms (bound %d); closest "
                  "probes %lld ms apart (period 1000)\n",
                  (long long)slowest, 2 * lease_ms, (long long)tightest);
    assert_true(slowest <= 2 * lease_ms);
    assert_true(tightest >= 900); // one probe per period: only the 5 ms tick's jitter
    double after = 0;
    for (int i = 0; i < 3; i++)
        if (f->probers[i].pid)
            after += ts_service_metric(&f->probers[i], "vmlet_prober_pods_owned");
    assert_true(after >= 30);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readiness_verdicts_follow_thresholds),
        cmocka_unit_test(test_liveness_failure_asks_for_a_restart),
        cmocka_unit_test(test_tcp_and_grpc),
        cmocka_unit_test(test_startup_gates_and_initial_delay_waits),
        cmocka_unit_test(test_three_probers_one_killed),
    };
    if (getenv("VMLET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMLET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
