// tests/bench/probes: 2,000 HTTP probes a second for 30 s against a
// loopback server, run by a real vmlet-prober (pods in Redis, leases, the
// bus, its schedule), against the bare probe runner firing the same
// schedule from a loop of its own: the baseline, measured in the same run
// because this machine is shared and noisy.
//
//   CPU seconds per 1,000 probes: the prober process (all its threads,
//       from /proc/<pid>/stat) against the baseline's thread CPU clock.
//   Start lateness p99: the prober's own histogram of how late each probe
//       started against its schedule (the bucket holding the 99th
//       percentile), against the baseline's exact figure.
//   Spacing p99: at the server, how far each pod's probe interval strays
//       from the period (an outside view of the same thing).
//   Burst: the busiest 100 ms at the server against the mean 100 ms, so
//       that pods with one period are seen not to fire together.
//
// Targets (issue 6): under 0.2 CPU-s per 1,000 probes; p99 lateness under 50 ms.
#include "stack.h"
#include "testsupport.h"
#include "ts_http_target.h"

#include "probe_runner.h"
#include "vmlet/pb.h"
#include "vmlet/pod_store.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PODS 2000        // one readiness probe each
#define PERIOD_S 1       // so 2,000 probes a second
#define WINDOW_S 30      // measured
#define TICK_MS 5        // the baseline looks for due probes as often as the prober does
#define BUCKET_US 100000 // for the burst figure

typedef struct {
    double cpu_s;
    long probes;
    double lateness_p99_ms; // the prober: upper bound of the histogram bucket
    double spacing_p99_ms;  // at the server
    double burst;           // busiest 100 ms / mean 100 ms
} figures_t;

static int s_compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double s_p99(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, s_compare_doubles);
    return v[(size_t)((double)(n - 1) * 0.99)];
}

// Spacing and burst from what the server saw in the window.
static void s_server_view(ts_http_target_t *target, int64_t from_us, int64_t to_us, figures_t *out)
{
    ts_http_request_t *reqs = NULL;
    size_t n = ts_http_target_requests(target, NULL, &reqs);
    int64_t *last = vmlet_xcalloc(PODS, sizeof *last);
    double *stray = vmlet_xcalloc(n + 1, sizeof *stray);
    size_t n_buckets = (size_t)((to_us - from_us) / BUCKET_US) + 1, n_stray = 0;
    long *buckets = vmlet_xcalloc(n_buckets, sizeof *buckets);
    out->probes = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t at = reqs[i].arrival_us;
        int pod = atoi(reqs[i].path + 3); // "/p/<n>"
        if (at < from_us || at >= to_us || pod < 0 || pod >= PODS)
            continue;
        out->probes++;
        buckets[(at - from_us) / BUCKET_US]++;
        if (last[pod]) {
            double interval_ms = (double)(at - last[pod]) / 1000.0;
            stray[n_stray++] = interval_ms > PERIOD_S * 1000.0 ? interval_ms - PERIOD_S * 1000.0
                                                               : PERIOD_S * 1000.0 - interval_ms;
        }
        last[pod] = at;
    }
    long busiest = 0;
    for (size_t b = 0; b + 1 < n_buckets; b++) // the last bucket is partial
        busiest = buckets[b] > busiest ? buckets[b] : busiest;
    double mean = (double)out->probes / ((double)(to_us - from_us) / BUCKET_US);
    out->burst = mean > 0 ? (double)busiest / mean : 0;
    out->spacing_p99_ms = s_p99(stray, n_stray);
    free(buckets);
    free(stray);
    free(last);
    ts_http_requests_free(reqs, n);
}

// --- the baseline: the bare runner on the same schedule ----------------------------------

typedef struct {
    int port;
    volatile int stop;
    probe_runner_t *runner;
    int64_t due_ms[PODS]; // all with one period, so their order never changes
    int order[PODS];
    size_t next; // into order
    char paths[PODS][16];
    double *lateness_ms;
    size_t n_lateness, cap_lateness;
    volatile int measuring; // set and cleared by the main thread
    long done, failed;      // read once the thread has ended
} baseline_t;

static double s_clock_s(clockid_t clock)
{
    struct timespec ts;
    if (clock_gettime(clock, &ts) < 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void s_baseline_done(void *arg, const probe_outcome_t *outcome)
{
    baseline_t *b = arg;
    b->done++;
    b->failed += outcome->result != PROBE_RESULT_SUCCESS;
}

static int s_baseline_tick(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    baseline_t *b = arg;
    int64_t now = vmlet_now_ms();
    for (;;) {
        int pod = b->order[b->next];
        if (b->due_ms[pod] > now)
            break;
        if (b->measuring && b->n_lateness < b->cap_lateness)
            b->lateness_ms[b->n_lateness++] = (double)(now - b->due_ms[pod]);
        probe_target_t t = {.kind = PROBE_TARGET_HTTP,
                            .host = "127.0.0.1",
                            .port = b->port,
                            .path = b->paths[pod],
                            .timeout_ms = 1000};
        probe_runner_start(b->runner, &t, s_baseline_done, b, NULL);
        b->due_ms[pod] += PERIOD_S * 1000;
        b->next = (b->next + 1) % PODS;
    }
    return b->stop ? -1 : 0;
}

static int s_by_due(const void *x, const void *y, void *arg)
{
    const int64_t *due = arg;
    int64_t a = due[*(const int *)x], c = due[*(const int *)y];
    return (a > c) - (a < c);
}

static void *s_baseline_thread(void *arg)
{
    baseline_t *b = arg;
    zloop_t *loop = zloop_new();
    b->runner = probe_runner_new(loop, NULL, NULL);
    int64_t now = vmlet_now_ms();
    for (int i = 0; i < PODS; i++) {
        b->due_ms[i] = now + (int64_t)(vmlet_random01() * PERIOD_S * 1000); // as the prober spreads
        b->order[i] = i;
        snprintf(b->paths[i], sizeof b->paths[i], "/p/%d", i);
    }
    qsort_r(b->order, PODS, sizeof b->order[0], s_by_due, b->due_ms);
    zloop_timer(loop, TICK_MS, 0, s_baseline_tick, b);
    zloop_start(loop);
    probe_runner_destroy(&b->runner);
    zloop_destroy(&loop);
    return NULL;
}

static int s_run_baseline(ts_http_target_t *target, figures_t *out)
{
    baseline_t *b = vmlet_xcalloc(1, sizeof *b);
    b->port = ts_http_target_port(target);
    b->cap_lateness = (size_t)PODS * (WINDOW_S + 2) / PERIOD_S;
    b->lateness_ms = vmlet_xcalloc(b->cap_lateness, sizeof *b->lateness_ms);
    pthread_t thread;
    if (pthread_create(&thread, NULL, s_baseline_thread, b) != 0) {
        fprintf(stderr, "bench: cannot start the baseline thread\n");
        return -1;
    }
    sleep(2 * PERIOD_S); // every pod probed once: steady state
    ts_http_target_clear(target);
    clockid_t clock; // the baseline thread's CPU clock, read from here
    if (pthread_getcpuclockid(thread, &clock) != 0) {
        fprintf(stderr, "bench: no CPU clock for the baseline thread\n");
        return -1;
    }
    int64_t from_us = ts_mono_us();
    double cpu_before = s_clock_s(clock);
    b->measuring = 1;
    sleep(WINDOW_S);
    b->measuring = 0;
    double cpu_after = s_clock_s(clock);
    int64_t to_us = ts_mono_us();
    b->stop = 1;
    pthread_join(thread, NULL);
    s_server_view(target, from_us, to_us, out);
    out->cpu_s = cpu_after - cpu_before;
    out->lateness_p99_ms = s_p99(b->lateness_ms, b->n_lateness);
    if (b->failed)
        fprintf(stderr, "bench: the baseline saw %ld failed probes of %ld\n", b->failed, b->done);
    free(b->lateness_ms);
    free(b);
    return 0;
}

// --- the prober ---------------------------------------------------------------------------

// The pod as k8s-watcher stores it and its VM as vm-launcher records it.
static int s_store_pod(vmlet_store_t *store, int i, int port)
{
    char uid[32], path[16], container_id[64];
    snprintf(uid, sizeof uid, "bench-%d", i);
    snprintf(path, sizeof path, "/p/%d", i);
    snprintf(container_id, sizeof container_id, "vmlet://%s/app/0", uid);
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = uid, ref.namespace_ = "default", ref.name = uid;
    Vmlet__PortRef port_ref = VMLET__PORT_REF__INIT;
    port_ref.port_case = VMLET__PORT_REF__PORT_NUMBER;
    port_ref.number = port;
    Vmlet__HttpGetAction get = VMLET__HTTP_GET_ACTION__INIT;
    get.path = path, get.port = &port_ref;
    Vmlet__Probe probe = VMLET__PROBE__INIT;
    probe.handler_case = VMLET__PROBE__HANDLER_HTTP_GET;
    probe.http_get = &get;
    PB_SET(&probe, period_seconds, PERIOD_S);
    Vmlet__Container c = VMLET__CONTAINER__INIT, *cs[] = {&c};
    c.name = "app", c.image = "busybox", c.readiness_probe = &probe;
    Vmlet__PodSpec spec = VMLET__POD_SPEC__INIT;
    spec.pod = &ref, spec.containers = cs, spec.n_containers = 1;
    char hash[VMLET_POD_HASH_LEN];
    vmlet_pod_spec_hash(&spec, hash);
    if (vmlet_pod_store_put(store, &spec, hash, NULL) < 0)
        return -1;
    Vmlet__ContainerStateRunning running = VMLET__CONTAINER_STATE_RUNNING__INIT;
    PB_SET(&running, started_unix_ms, vmlet_unix_ms() - 60000);
    Vmlet__ContainerState state = VMLET__CONTAINER_STATE__INIT;
    state.state_case = VMLET__CONTAINER_STATE__STATE_RUNNING, state.running = &running;
    Vmlet__ContainerStatus st = VMLET__CONTAINER_STATUS__INIT;
    st.name = "app", st.container_id = container_id, st.state = &state;
    Vmlet__ContainerRecord cr = VMLET__CONTAINER_RECORD__INIT, *crs[] = {&cr};
    cr.status = &st;
    Vmlet__VmRecord rec = VMLET__VM_RECORD__INIT;
    rec.pod = &ref, rec.launcher_id = "bench", rec.pod_ip = "127.0.0.1";
    PB_SET(&rec, state, VMLET__VM_STATE__VM_STATE_RUNNING);
    PB_SET(&rec, generation, 1);
    rec.containers = crs, rec.n_containers = 1;
    size_t len = vmlet__vm_record__get_packed_size(&rec);
    uint8_t *bytes = vmlet_xmalloc(len);
    vmlet__vm_record__pack(&rec, bytes);
    redisReply *r = vmlet_store_command(store, NULL, "SET vmlet:vm:%s %b", uid, bytes, len);
    free(bytes);
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static char *s_metrics(const ts_service_t *svc)
{
    char url[96], *body = NULL;
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", svc->http_port);
    if (ts_http_get(url, &status, &body) < 0 || status != 200) {
        free(body);
        return NULL;
    }
    return body;
}

// The lateness histogram's cumulative counts: le[i] seconds -> count[i].
typedef struct {
    double le[32];
    double count[32];
    size_t n;
} buckets_t;

static void s_lateness_buckets(const char *metrics, buckets_t *out)
{
    static const char prefix[] = "vmlet_prober_start_lateness_seconds_bucket{le=\"";
    out->n = 0;
    for (const char *line = metrics; line && *line && out->n < 32;) {
        if (strncmp(line, prefix, sizeof prefix - 1) == 0) {
            const char *le = line + sizeof prefix - 1;
            out->le[out->n] = strncmp(le, "+Inf", 4) == 0 ? 1e9 : strtod(le, NULL);
            const char *value = strchr(le, ' ');
            out->count[out->n++] = value ? strtod(value + 1, NULL) : 0;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
}

// The upper bound (ms) of the bucket holding the 99th percentile of what
// was observed between two readings.
static double s_bucket_p99_ms(const buckets_t *before, const buckets_t *after)
{
    if (after->n == 0 || after->n != before->n)
        return -1;
    double total = after->count[after->n - 1] - before->count[before->n - 1];
    for (size_t i = 0; i < after->n; i++)
        if (after->count[i] - before->count[i] >= 0.99 * total)
            return after->le[i] * 1000.0;
    return -1;
}

static double s_process_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); // the command may hold spaces
    unsigned long utime = 0, stime = 0;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static bool s_all_owned(void *arg)
{
    char *metrics = s_metrics(arg);
    bool all = metrics && ts_metric_value(metrics, "vmlet_prober_pods_owned") >= PODS;
    free(metrics);
    return all;
}

static int s_run_prober(ts_stack_t *stack, ts_http_target_t *target, figures_t *out)
{
    char url[200];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", stack->redis.password, stack->redis.port);
    vmlet_store_t *store = vmlet_store_new(url, NULL, NULL, NULL, NULL);
    fprintf(stderr, "bench: storing %d pods with a 1 s readiness probe each\n", PODS);
    for (int i = 0; i < PODS; i++)
        if (!store || s_store_pod(store, i, ts_http_target_port(target)) < 0) {
            fprintf(stderr, "bench: cannot store pod %d in Redis\n", i);
            vmlet_store_destroy(&store);
            return -1;
        }
    vmlet_store_destroy(&store);
    ts_service_t prober = {0};
    const char *const args[] = {"--lease-period=10s", "--log-level=warn", NULL};
    if (ts_stack_service(stack, "prober", &prober, args) < 0) {
        fprintf(stderr, "bench: vmlet-prober did not start (see %s)\n", prober.log);
        return -1;
    }
    fprintf(stderr, "bench: waiting for the prober to own all %d pods\n", PODS);
    if (!ts_poll(s_all_owned, &prober, 60000)) {
        fprintf(stderr, "bench: the prober never owned all pods (see %s)\n", prober.log);
        ts_stack_service_stop(&prober);
        return -1;
    }
    sleep(2 * PERIOD_S); // every pod probed once: steady state
    fprintf(stderr, "bench: measuring the prober for %d s\n", WINDOW_S);
    ts_http_target_clear(target);
    char *m0 = s_metrics(&prober);
    double cpu0 = s_process_cpu_s(prober.pid);
    int64_t from_us = ts_mono_us();
    sleep(WINDOW_S);
    double cpu1 = s_process_cpu_s(prober.pid);
    int64_t to_us = ts_mono_us();
    char *m1 = s_metrics(&prober);
    buckets_t b0, b1;
    s_lateness_buckets(m0 ? m0 : "", &b0);
    s_lateness_buckets(m1 ? m1 : "", &b1);
    out->lateness_p99_ms = s_bucket_p99_ms(&b0, &b1);
    out->cpu_s = cpu1 - cpu0;
    double skipped = m1 ? ts_metric_value(m1, "vmlet_prober_ticks_skipped_total") : -1;
    free(m0);
    free(m1);
    ts_stack_service_stop(&prober);
    s_server_view(target, from_us, to_us, out);
    if (skipped > 0)
        fprintf(stderr, "bench: the prober skipped %.0f due probes\n", skipped);
    return 0;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ts_http_target_t *target = ts_http_target_start();
    if (!target)
        return 1;
    figures_t base = {0}, prober = {0};
    fprintf(stderr, "bench: the bare probe runner, %d probes/s for %d s\n", PODS / PERIOD_S,
            WINDOW_S);
    if (s_run_baseline(target, &base) < 0)
        return 1;
    ts_stack_t stack;
    if (ts_stack_start(&stack, "vmlet-bench-probes") < 0) {
        fprintf(stderr, "bench: cannot start Redis and the broker\n");
        return 1;
    }
    int rc = s_run_prober(&stack, target, &prober);
    ts_stack_stop(&stack);
    ts_http_target_stop(&target);
    if (rc < 0)
        return 1;
    double base_per_k = base.probes ? base.cpu_s / (double)base.probes * 1000 : 0;
    double prober_per_k = prober.probes ? prober.cpu_s / (double)prober.probes * 1000 : 0;
    printf("probe benchmark: %d pods, one HTTP readiness probe each every %d s, %d s measured\n",
           PODS, PERIOD_S, WINDOW_S);
    printf("%-30s %14s %14s\n", "", "bare runner", "vmlet-prober");
    printf("%-30s %14.0f %14.0f\n", "probes/s at the server", base.probes / (double)WINDOW_S,
           prober.probes / (double)WINDOW_S);
    printf("%-30s %14.3f %14.3f   ratio %.2f (target < 0.2)\n", "CPU-s per 1,000 probes",
           base_per_k, prober_per_k, base_per_k > 0 ? prober_per_k / base_per_k : 0);
    printf("%-30s %14.1f %13s%.0f   (target < 50; the prober's: a histogram bucket)\n",
           "start lateness p99 ms", base.lateness_p99_ms, "<= ", prober.lateness_p99_ms);
    printf("%-30s %14.1f %14.1f\n", "interval spacing p99 ms", base.spacing_p99_ms,
           prober.spacing_p99_ms);
    printf("%-30s %14.2f %14.2f   (1.00 = perfectly even)\n", "busiest 100 ms / mean", base.burst,
           prober.burst);
    curl_global_cleanup();
    return 0;
}
