// tests/bench/startup: pod creation to container running, through the
// real Kubernetes path, with the launcher's templates off and on.
//
// A whole vmlet node (ts_node: k8s-watcher, image-builder, vm-launcher,
// status-reporter, kubelet-api, a registry holding busybox) behind the test
// bed's API server; busybox `sleep 3600` pods with the default VM size, the
// image already built (a warm-up pod first). Per pod:
//
//   created    wall clock just before the pod's POST to the API server (the
//              round's pods are POSTed back to back on one connection, so 30
//              are created "at once" within ~0.1 s; not through kubectl, whose
//              own start-up, ~0.1 s of Go runtime and kubeconfig, is no part
//              of the node's start-up)
//   watch      created -> the launcher first hears of the pod
//   image      -> its images are ready (cached: a look-up)
//   prepare    -> the VM starts (admission, writable disk, network)
//   VM         -> the guest agent's first message: a cold boot, or a
//              restore from the launcher's template VM
//   agent      -> the guest has set the pod up (identity, disks)
//   container  -> the first container runs
//   total      created -> running; and as a cross-check, created -> the pod
//              seen Running on a watch of the API server
//
// The steps are the launcher's own (VmRecord.start in Redis, wall-clock
// ms), so observing them costs the node nothing. Rounds, each on a node of
// its own per mode (VMLET_TEMPLATES=false, then true): 1 pod, 3 times one
// after another, then 30 pods at once. With templates on, a round starts
// once the launcher reports a template ready (or said it has none).
//
// Targets (issue 10): with templates, the 1-pod total <= 0.25x of without;
// the VM step <= 0.1x of a cold boot; 30 pods at once p99 <= 5 s (the
// Kubernetes pod-startup SLO).
// Baseline, in the same run: the raw QEMU boot (raw_vm.h: QEMU spawned ->
// the agent's first frame) of the same kernel and initramfs, with the same
// guest memory and disks, 3 times, p50.
//
// Needs the test bed: run it with ./vmlet bench startup.
#include "raw_vm.h"
#include "ts_node.h"

#include "vmlet/image_index.h"
#include "vmlet/kube_api.h"
#include "vmlet/kube_watch.h"
#include "vmlet/proto/vm.pb-c.h"
#include "vmlet/kube.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BURST 30        // pods created at once
#define SINGLE_ROUNDS 3 // 1-pod rounds per mode
// Templates on: 1-pod rounds of a pod this much bigger (a VM of ~3 GiB, not
// 320 MiB): a restore maps guest memory, it does not read it, so its VM
// phase should not grow with the memory.
#define BIG_MEMORY "3Gi"
#define RAW_BOOTS 3
#define GUEST_MIB 320 // the launcher's default VM: 256 MiB for the pod + 64 MiB for the guest
// How long a round may take to start its n pods: 30 cold boots at once
// under TCG on 2 cores take minutes.
#define START_TIMEOUT_MS(n) (120000 + (n)*25000)
#define GONE_TIMEOUT_MS (5 * 60000)
#define RECORD_TIMEOUT_MS 30000
#define TEMPLATE_TIMEOUT_MS 120000
// A launcher with templates has the gauge from its start (0 until one is
// ready); one that still lacks it after this long has no templates.
#define TEMPLATE_METRIC_GRACE_MS 20000
#define PROGRESS_MS 10000

typedef enum {
    PH_WATCH,
    PH_IMAGE,
    PH_PREPARE,
    PH_VM,
    PH_AGENT,
    PH_CONTAINER,
    PH_TOTAL,
    PH_K8S,
    PH_COUNT
} phase_t;

static const char *const phase_names[PH_COUNT] = {
    "watch (created -> launcher)", "image (cached)",
    "prepare (disk, network)",     "VM (boot/restore -> hello)",
    "agent (pod set up)",          "container (-> running)",
    "total (created -> running)",  "cross-check: Running in k8s",
};

// Where the launcher says how many templates are ready.
#define TEMPLATES_READY_METRIC "vmlet_launcher_templates_ready"

typedef struct {
    char name[64];
    char uid[64];
    int64_t created;     // Unix ms, just before its POST
    int64_t k8s_running; // Unix ms the watch saw it Running
    bool deleted;        // the watch saw it go
    bool recorded;       // the steps below come from the launcher's record
    int64_t launch, images_ready, vm_start, agent_hello, setup_done, running;
    char vm_start_kind[16];
    char template_skipped[200];
    int64_t vmm_cpu_ms; // CPU its VMM used up to the container running; -1: unknown
} pod_t;

typedef struct {
    pod_t pods[BURST];
    int n;
} result_t;

typedef struct {
    bool templates;
    bool no_templates; // the launcher has no template metric
    char note[200];    // how templates fared, for the report
    result_t single, burst;
    result_t big; // templates on: 1-pod rounds of BIG_MEMORY pods
} run_mode_t;

typedef struct {
    ts_node_t *node;
    vmlet_store_t *store;
    vmlet_kube_config_t config;
    vmlet_kube_t *kube; // creates the pods
    vmlet_metrics_t *metrics;
    zloop_t *loop;
    vmlet_kube_watch_t *watch;
    pod_t *active; // the round's pods, which the watch fills in
    int n_active;
    const char *label;
    int64_t round_start_ms, next_progress_ms; // monotonic
    int64_t create_ms; // how long the POSTs took: the last pod was created up to this late
    const char *memory_limit; // the pods' memory limit; NULL: none (the default VM size)
    double templates_ready; // the last reading, -1: no metric
} bench_t;

// --- waiting on the loop (the watch delivers through it) ---------------------------

typedef bool(check_fn)(bench_t *b);

typedef struct {
    bench_t *b;
    check_fn *check;
    int64_t deadline;
    bool met;
} wait_t;

static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    wait_t *w = arg;
    w->met = w->check(w->b);
    return w->met || vmlet_now_ms() >= w->deadline ? -1 : 0;
}

// Runs the loop until check says yes (true) or timeout_ms pass (false).
static bool s_wait(bench_t *b, check_fn *check, int interval_ms, int timeout_ms)
{
    wait_t w = {b, check, vmlet_now_ms() + timeout_ms, check(b)};
    if (w.met)
        return true;
    int id = zloop_timer(b->loop, (size_t)interval_ms, 0, s_on_tick, &w);
    zloop_start(b->loop);
    zloop_timer_end(b->loop, id);
    return w.met;
}

// --- the watch ----------------------------------------------------------------------

static pod_t *s_active_pod(bench_t *b, const char *name)
{
    for (int i = 0; name && i < b->n_active; i++)
        if (strcmp(b->active[i].name, name) == 0)
            return &b->active[i];
    return NULL;
}

// Running as a user sees it: the phase, and the container started.
static bool s_pod_running(const cJSON *pod)
{
    const char *phase = vmlet_json_str(pod, "status", "phase");
    const cJSON *status = cJSON_GetObjectItem(pod, "status");
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(status, "containerStatuses"), 0);
    return phase && strcmp(phase, "Running") == 0 &&
           cJSON_GetObjectItem(cJSON_GetObjectItem(first, "state"), "running");
}

static void s_on_pod(void *arg, vmlet_watch_event_t event, const cJSON *pod)
{
    bench_t *b = arg;
    pod_t *p = pod ? s_active_pod(b, vmlet_json_str(pod, "metadata", "name")) : NULL;
    if (!p)
        return;
    const char *uid = vmlet_json_str(pod, "metadata", "uid");
    if (uid && !p->uid[0])
        snprintf(p->uid, sizeof p->uid, "%s", uid);
    if (event == VMLET_WATCH_DELETED)
        p->deleted = true;
    else if (!p->k8s_running && s_pod_running(pod))
        p->k8s_running = vmlet_unix_ms();
}

static bool s_synced(bench_t *b)
{
    return vmlet_kube_watch_synced(b->watch);
}

// --- the node -----------------------------------------------------------------------

static int s_node_up(bench_t *b, bool templates)
{
    // The services inherit the environment (ts_spawn execs with it), and
    // the launcher reads each setting from VMLET_<NAME> too.
    setenv("VMLET_TEMPLATES", templates ? "true" : "false", 1);
    b->node = calloc(1, sizeof *b->node);
    if (ts_node_start(b->node, templates ? "bench-tpl" : "bench-cold", NULL) < 0) {
        fprintf(stderr, "bench: the node did not start (logs in %s)\n", b->node->stack.dir);
        return -1;
    }
    char url[200], selector[160];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", b->node->stack.redis.password,
             b->node->stack.redis.port);
    snprintf(selector, sizeof selector, "spec.nodeName=%s", b->node->stack.node);
    vmlet_err_t err = {0};
    b->store = vmlet_store_new(url, NULL, NULL, NULL, &err);
    b->metrics = vmlet_metrics_new();
    b->loop = zloop_new();
    if (!b->store || vmlet_kube_config_from_file(b->node->kubeconfig, NULL, &b->config, &err) < 0 ||
        !(b->watch = vmlet_kube_watch_new(&b->config, "/api/v1/pods", selector, NULL, s_on_pod, b,
                                          NULL, b->metrics, &err)) ||
        vmlet_kube_watch_attach(b->watch, b->loop, &err) < 0 ||
        !(b->kube = vmlet_kube_new(&b->config, &err))) {
        fprintf(stderr, "bench: watching the node's pods: %s\n", err.msg);
        return -1;
    }
    if (!s_wait(b, s_synced, 100, 30000)) {
        fprintf(stderr, "bench: the pod watch did not sync within 30 s\n");
        return -1;
    }
    char *vmm = NULL;
    ts_sh(&vmm, "grep -o -m1 'VMM: [^\"]*' %s", b->node->stack.launcher.log);
    printf("node %s up (templates %s); launcher's %s", b->node->stack.node,
           templates ? "on" : "off", vmm && vmm[0] ? vmm : "VMM: ?\n");
    free(vmm);
    fflush(stdout);
    return 0;
}

static void s_node_down(bench_t *b)
{
    vmlet_kube_watch_destroy(&b->watch);
    vmlet_kube_destroy(&b->kube);
    zloop_destroy(&b->loop);
    vmlet_metrics_destroy(&b->metrics);
    vmlet_store_destroy(&b->store);
    vmlet_kube_config_clear(&b->config);
    if (b->node) {
        ts_node_stop(b->node); // the launcher stops its VMs
        free(b->node);
        b->node = NULL;
    }
}

// --- a round ------------------------------------------------------------------------

// One pod of the round as the API's JSON.
static char *s_pod_json(const bench_t *b, const pod_t *p)
{
    char *resources = b->memory_limit ? vmlet_xasprintf(",\"resources\":{\"limits\":{"
                                                         "\"memory\":\"%s\"}}",
                                                         b->memory_limit)
                                      : vmlet_xstrdup("");
    char *json = vmlet_xasprintf(
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
        "\"namespace\":\"%s\"},\"spec\":{\"nodeName\":\"%s\",\"restartPolicy\":\"Never\","
        "\"terminationGracePeriodSeconds\":1,\"tolerations\":[{\"key\":"
        "\"virtual-kubelet.io/provider\",\"operator\":\"Exists\"}],\"containers\":[{"
        "\"name\":\"app\",\"image\":\"%s\",\"command\":[\"sleep\",\"3600\"]%s}]}}",
        p->name, b->node->ns, b->node->stack.node, b->node->busybox, resources);
    free(resources);
    return json;
}

// POSTs the round's pods back to back, each timed from just before its
// own request.
static int s_create(bench_t *b)
{
    char path[200];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods", b->node->ns);
    int64_t start = vmlet_unix_ms();
    for (int i = 0; i < b->n_active; i++) {
        char *body = s_pod_json(b, &b->active[i]);
        long status = 0;
        cJSON *reply = NULL;
        vmlet_err_t err = {0};
        b->active[i].created = vmlet_unix_ms();
        int rc = vmlet_kube_request(b->kube, "POST", path, "application/json", body, &status,
                                    &reply, &err);
        free(body);
        cJSON_Delete(reply);
        if (rc < 0 || status != 201) {
            fprintf(stderr, "bench: POST %s (%s): %s\n", path, b->active[i].name,
                    rc < 0 ? err.msg : "not 201 Created");
            return -1;
        }
    }
    b->create_ms = vmlet_unix_ms() - start;
    return 0;
}

static bool s_all_running(bench_t *b)
{
    int up = 0;
    for (int i = 0; i < b->n_active; i++)
        up += b->active[i].k8s_running != 0;
    int64_t now = vmlet_now_ms();
    if (up < b->n_active && now >= b->next_progress_ms) {
        printf("  %s: %d/%d running after %.0f s\n", b->label, up, b->n_active,
               (double)(now - b->round_start_ms) / 1000.0);
        fflush(stdout);
        b->next_progress_ms = now + PROGRESS_MS;
    }
    return up == b->n_active;
}

// Copies the pod's start steps from the launcher's record once its
// container has run. True when they are there.
static bool s_read_steps(bench_t *b, pod_t *p)
{
    if (p->recorded || !p->uid[0])
        return p->recorded;
    redisReply *r = vmlet_store_command(b->store, NULL, "GET vmlet:vm:%s", p->uid);
    Vmlet__VmRecord *rec = r && r->type == REDIS_REPLY_STRING
                               ? vmlet__vm_record__unpack(NULL, r->len, (const uint8_t *)r->str)
                               : NULL;
    freeReplyObject(r);
    const Vmlet__StartTimings *t = rec ? rec->start : NULL;
    if (t && t->running_unix_ms > 0) {
        p->launch = t->launch_unix_ms, p->images_ready = t->images_ready_unix_ms;
        p->vm_start = t->vm_start_unix_ms, p->agent_hello = t->agent_hello_unix_ms;
        p->setup_done = t->setup_done_unix_ms, p->running = t->running_unix_ms;
        snprintf(p->vm_start_kind, sizeof p->vm_start_kind, "%s", t->vm_start ? t->vm_start : "?");
        snprintf(p->template_skipped, sizeof p->template_skipped, "%s",
                 t->template_skipped ? t->template_skipped : "");
        p->vmm_cpu_ms = t->has_vmm_cpu_ms ? t->vmm_cpu_ms : -1;
        p->recorded = true;
    }
    if (rec)
        vmlet__vm_record__free_unpacked(rec, NULL);
    return p->recorded;
}

static bool s_all_recorded(bench_t *b)
{
    bool all = true;
    for (int i = 0; i < b->n_active; i++)
        all = s_read_steps(b, &b->active[i]) && all;
    return all;
}

// Gone: deleted in Kubernetes, and the launcher has dropped the VM's record
// (it does once the VM is stopped), so the next round does not overlap.
static bool s_all_gone(bench_t *b)
{
    for (int i = 0; i < b->n_active; i++) {
        const pod_t *p = &b->active[i];
        if (!p->deleted)
            return false;
        redisReply *r = vmlet_store_command(b->store, NULL, "EXISTS vmlet:vm:%s", p->uid);
        bool there = !r || (r->type == REDIS_REPLY_INTEGER && r->integer != 0);
        freeReplyObject(r);
        if (there)
            return false;
    }
    return true;
}

static void s_show_pods(bench_t *b)
{
    char *out = NULL;
    ts_sh(&out, "%s --kubeconfig %s -n %s get pods -o wide", b->node->kubectl, b->node->kubeconfig,
          b->node->ns);
    fprintf(stderr, "%s(the node's logs: %s)\n", out, b->node->stack.dir);
    free(out);
}

static void s_delete_all(bench_t *b)
{
    ts_sh(NULL, "%s --kubeconfig %s -n %s delete pods --all --wait=false", b->node->kubectl,
          b->node->kubeconfig, b->node->ns);
    if (!s_wait(b, s_all_gone, 250, GONE_TIMEOUT_MS) && !zsys_interrupted)
        printf("  %s: the pods or their VMs were not all gone after %d s: the next round may "
               "overlap\n",
               b->label, GONE_TIMEOUT_MS / 1000);
}

// Creates n pods named prefix-NN at once, waits until all run, reads their
// steps, deletes them and waits until their VMs are gone. 0, or -1 after
// saying why.
static int s_round(bench_t *b, const char *label, const char *prefix, pod_t *pods, int n)
{
    memset(pods, 0, (size_t)n * sizeof *pods);
    for (int i = 0; i < n; i++)
        snprintf(pods[i].name, sizeof pods[i].name, "%s-%02d", prefix, i);
    b->active = pods, b->n_active = n, b->label = label;
    printf("%s: creating %d pod%s\n", label, n, n == 1 ? "" : "s at once (POSTed back to back)");
    fflush(stdout);
    b->round_start_ms = vmlet_now_ms();
    b->next_progress_ms = b->round_start_ms + PROGRESS_MS;
    int rc = s_create(b);
    bool up = rc == 0 && s_wait(b, s_all_running, 100, START_TIMEOUT_MS(n));
    bool recorded = up && s_wait(b, s_all_recorded, 200, RECORD_TIMEOUT_MS);
    if (rc == 0 && !up && zsys_interrupted) {
        fprintf(stderr, "bench: %s: interrupted\n", label);
    } else if (rc == 0 && !up) {
        fprintf(stderr, "bench: %s: not all pods ran within %d s\n", label,
                START_TIMEOUT_MS(n) / 1000);
        s_show_pods(b);
    } else if (up && !recorded) {
        fprintf(stderr, "bench: %s: the launcher's records lack the start steps of some pods\n",
                label);
    } else if (up) {
        printf("  %s: all %d running after %.1f s (the POSTs took %lld ms)\n", label, n,
               (double)(vmlet_now_ms() - b->round_start_ms) / 1000.0, (long long)b->create_ms);
    }
    s_delete_all(b);
    b->active = NULL, b->n_active = 0;
    return up && recorded ? 0 : -1;
}

// --- templates ----------------------------------------------------------------------

static bool s_template_metric(bench_t *b)
{
    b->templates_ready = ts_service_metric(&b->node->stack.launcher, TEMPLATES_READY_METRIC);
    return b->templates_ready >= 0;
}

static bool s_template_ready(bench_t *b)
{
    return s_template_metric(b) && b->templates_ready >= 1;
}

// Waits until the launcher has a template ready; notes in m what happened.
static void s_wait_template(bench_t *b, run_mode_t *m)
{
    if (!m->templates || m->no_templates)
        return;
    int64_t start = vmlet_now_ms();
    if (!s_wait(b, s_template_metric, 500, TEMPLATE_METRIC_GRACE_MS)) {
        m->no_templates = true;
        snprintf(m->note, sizeof m->note,
                 "templates not available: the launcher has no %s metric (measured "
                 "anyway: these are cold boots)",
                 TEMPLATES_READY_METRIC);
        printf("  %s\n", m->note);
        return;
    }
    if (s_wait(b, s_template_ready, 500, TEMPLATE_TIMEOUT_MS)) {
        printf("  template ready (%.0f) after %.1f s\n", b->templates_ready,
               (double)(vmlet_now_ms() - start) / 1000.0);
        return;
    }
    snprintf(m->note, sizeof m->note,
             "no template was ready within %d s before a round (measured anyway)",
             TEMPLATE_TIMEOUT_MS / 1000);
    printf("  %s\n", m->note);
}

// --- the raw QEMU baseline ------------------------------------------------------------

// The busybox root filesystem image-builder made, so the raw VM gets the
// same disks as a pod's. 0, or -1 (not built).
static int s_rootfs(bench_t *b, char *out, size_t cap)
{
    redisReply *keys = vmlet_store_command(b->store, NULL, "KEYS vmlet:image:*");
    vmlet_image_index_entry_t entry = {0};
    int found = 0;
    if (keys && keys->type == REDIS_REPLY_ARRAY && keys->elements > 0)
        found = vmlet_image_index_lookup(b->store, keys->element[0]->str + strlen("vmlet:image:"),
                                         &entry, NULL);
    freeReplyObject(keys);
    if (found == 1)
        snprintf(out, cap, "%s", entry.rootfs);
    vmlet_image_index_entry_clear(&entry);
    return found == 1 ? 0 : -1;
}

// ms from spawning QEMU to the agent's first frame header (its hello on
// the way); -1 if none within 2 minutes.
static int64_t s_raw_boot(const char *dir, const char *rootfs)
{
    char scratch[450];
    snprintf(scratch, sizeof scratch, "%s/scratch.img", dir);
    if (ts_sh(NULL,
              "mkdir -p %s && truncate -s 2G %s && mkfs.ext4 -q -F -m 0 -O ^has_journal "
              "-E lazy_itable_init=1 %s",
              dir, scratch, scratch) != 0)
        return -1;
    raw_vm_disk_t disks[] = {{scratch, false, "scratch"}, {rootfs, true, "img-bench"}};
    char kernel[400];
    snprintf(kernel, sizeof kernel, "%s/vmlinuz", VMLET_KERNEL_DIR);
    raw_vm_opts_t o = {.kernel = kernel,
                       .initrd = VMLET_INITRAMFS,
                       .memory_mib = GUEST_MIB,
                       .disks = disks,
                       .n_disks = 2,
                       .dir = dir};
    raw_vm_t vm;
    if (raw_vm_start(&o, &vm) < 0)
        return -1;
    int fd = raw_vm_connect(&vm, 120000);
    uint8_t head[4];
    size_t got = 0;
    while (fd >= 0 && got < sizeof head) {
        ssize_t r = recv(fd, head + got, sizeof head - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    int64_t took = got == sizeof head ? ts_now_ms() - vm.started_ms : -1;
    if (fd >= 0)
        close(fd);
    raw_vm_kill(&vm);
    ts_sh(NULL, "rm -rf %s", dir);
    return took;
}

// RAW_BOOTS raw boots one after another into ms[]; how many worked.
static int s_raw_boots(bench_t *b, int64_t *ms)
{
    char rootfs[4096];
    if (s_rootfs(b, rootfs, sizeof rootfs) < 0) {
        printf("raw QEMU baseline: busybox's root filesystem is not in the image index; "
               "no baseline\n");
        return 0;
    }
    int ok = 0;
    for (int i = 0; i < RAW_BOOTS; i++) {
        char dir[300];
        snprintf(dir, sizeof dir, "%s/raw%d", b->node->stack.dir, i);
        int64_t took = s_raw_boot(dir, rootfs);
        printf("raw QEMU boot %d/%d: %lld ms\n", i + 1, RAW_BOOTS, (long long)took);
        fflush(stdout);
        if (took >= 0)
            ms[ok++] = took;
    }
    return ok;
}

// --- figures ------------------------------------------------------------------------

static int s_cmp(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, c = *(const int64_t *)y;
    return (a > c) - (a < c);
}

// The q-quantile (nearest rank) of v[0..n), sorted in place; -1 if n == 0.
static int64_t s_quantile(int64_t *v, int n, double q)
{
    if (n == 0)
        return -1;
    qsort(v, (size_t)n, sizeof *v, s_cmp);
    int rank = (int)(q * n + 0.999999);
    return v[rank < 1 ? 0 : rank - 1];
}

static int64_t s_phase(const pod_t *p, phase_t ph)
{
    switch (ph) {
    case PH_WATCH:
        return p->launch - p->created;
    case PH_IMAGE:
        return p->images_ready - p->launch;
    case PH_PREPARE:
        return p->vm_start - p->images_ready;
    case PH_VM:
        return p->agent_hello - p->vm_start;
    case PH_AGENT:
        return p->setup_done - p->agent_hello;
    case PH_CONTAINER:
        return p->running - p->setup_done;
    case PH_TOTAL:
        return p->running - p->created;
    default:
        return p->k8s_running - p->created;
    }
}

// The q-quantile of a phase over the result's pods; -1 without any.
static int64_t s_stat(const result_t *r, phase_t ph, double q)
{
    int64_t v[BURST];
    int n = 0;
    for (int i = 0; i < r->n; i++)
        if (r->pods[i].recorded)
            v[n++] = s_phase(&r->pods[i], ph);
    return s_quantile(v, n, q);
}

// Each distinct reason a pod booted cold although templates were on, once,
// with how many pods gave it.
static void s_print_skipped(const result_t *r)
{
    for (int i = 0; i < r->n; i++) {
        const char *why = r->pods[i].template_skipped;
        bool seen = false;
        int count = 0;
        for (int j = 0; why[0] && j < r->n; j++) {
            bool same = strcmp(r->pods[j].template_skipped, why) == 0;
            seen = seen || (same && j < i);
            count += same;
        }
        if (why[0] && !seen)
            printf("  template skipped (%d pod%s): %s\n", count, count == 1 ? "" : "s", why);
    }
}

// The CPU the pods' starts cost (their VMMs': the guests run in them under
// TCG), and what that means for the burst: with this many cores, the last
// pod cannot run before all that CPU was spent.
static void s_print_cpu(const result_t *r)
{
    int64_t v[BURST], sum = 0;
    int n = 0;
    for (int i = 0; i < r->n; i++)
        if (r->pods[i].recorded && r->pods[i].vmm_cpu_ms >= 0) {
            v[n++] = r->pods[i].vmm_cpu_ms;
            sum += r->pods[i].vmm_cpu_ms;
        }
    if (n == 0)
        return;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("  VMM CPU to running, per pod: p50 %lld ms, max %lld ms; all %d: %.1f CPU-s, "
           "%.1f s on %ld cores at best\n",
           (long long)s_quantile(v, n, 0.5), (long long)s_quantile(v, n, 1.0), n,
           (double)sum / 1000.0, (double)sum / 1000.0 / (double)(cores > 0 ? cores : 1), cores);
}

static void s_print_result(const run_mode_t *m, const char *what, const result_t *r)
{
    printf("\ntemplates %s, %s; created = wall clock just before the pod's POST\n",
           m->templates ? "on" : "off", what);
    printf("  %-30s %8s %8s %8s   (ms, n=%d)\n", "phase", "p50", "p99", "max", r->n);
    for (int ph = 0; ph < PH_COUNT; ph++)
        printf("  %-30s %8lld %8lld %8lld\n", phase_names[ph],
               (long long)s_stat(r, (phase_t)ph, 0.5), (long long)s_stat(r, (phase_t)ph, 0.99),
               (long long)s_stat(r, (phase_t)ph, 1.0));
    int from_template = 0, cold = 0;
    for (int i = 0; i < r->n; i++) {
        from_template += strcmp(r->pods[i].vm_start_kind, "template") == 0;
        cold += strcmp(r->pods[i].vm_start_kind, "cold") == 0;
    }
    printf("  VM start: %d from a template, %d cold, %d other/unknown\n", from_template, cold,
           r->n - from_template - cold);
    s_print_cpu(r);
    s_print_skipped(r);
    if (m->note[0])
        printf("  note: %s\n", m->note);
}

static double s_ratio(int64_t a, int64_t b)
{
    return a >= 0 && b > 0 ? (double)a / (double)b : -1;
}

static void s_print_summary(const run_mode_t *off, const run_mode_t *on, int64_t *raw, int n_raw)
{
    int64_t raw_p50 = s_quantile(raw, n_raw, 0.5);
    int64_t tot_off = s_stat(&off->single, PH_TOTAL, 0.5),
            tot_on = s_stat(&on->single, PH_TOTAL, 0.5);
    int64_t vm_off = s_stat(&off->single, PH_VM, 0.5), vm_on = s_stat(&on->single, PH_VM, 0.5);
    int64_t burst_p99 = s_stat(&on->burst, PH_TOTAL, 0.99);
    int64_t vm_big = s_stat(&on->big, PH_VM, 0.5);
    printf("\nsummary (p50 over the 1-pod rounds unless said; -1: not measured)\n");
    printf("  raw QEMU boot to the agent's first frame, p50 of %d: %lld ms\n", n_raw,
           (long long)raw_p50);
    printf("  1 pod total, templates on/off: %lld / %lld ms = %.3f (target <= 0.25)\n",
           (long long)tot_on, (long long)tot_off, s_ratio(tot_on, tot_off));
    printf("  VM phase, templates on/off: %lld / %lld ms = %.3f (target <= 0.1)\n",
           (long long)vm_on, (long long)vm_off, s_ratio(vm_on, vm_off));
    printf("  VM phase, 30 at once p50, templates on/off: %lld / %lld ms = %.3f\n",
           (long long)s_stat(&on->burst, PH_VM, 0.5), (long long)s_stat(&off->burst, PH_VM, 0.5),
           s_ratio(s_stat(&on->burst, PH_VM, 0.5), s_stat(&off->burst, PH_VM, 0.5)));
    printf("  30 pods at once, templates on, p99 total: %lld ms (target <= 5000: %s)\n",
           (long long)burst_p99,
           burst_p99 < 0       ? "not measured"
           : burst_p99 <= 5000 ? "met"
                               : "not met");
    printf("  VM phase (templates off) / raw boot: %.3f\n", s_ratio(vm_off, raw_p50));
    printf("  VM phase (templates on) / raw boot: %.3f\n", s_ratio(vm_on, raw_p50));
    printf("  VM phase (templates on), %s pods / default pods: %lld / %lld ms = %.3f (a restore "
           "maps memory: ~1 expected)\n",
           BIG_MEMORY, (long long)vm_big, (long long)vm_on, s_ratio(vm_big, vm_on));
    if (on->note[0])
        printf("  note: templates on: %s\n", on->note);
}

// --- one mode -------------------------------------------------------------------------

// A node with templates on or off: warm-up, (raw boots,) the 1-pod rounds,
// the burst. 0, or -1 when it could not run.
static int s_run_mode(bench_t *b, run_mode_t *m, int64_t *raw, int *n_raw)
{
    const char *mode = m->templates ? "on" : "off";
    printf("\n== templates %s ==\n", mode);
    fflush(stdout);
    if (s_node_up(b, m->templates) < 0)
        return -1;
    char label[80], prefix[40];
    pod_t warm;
    snprintf(label, sizeof label, "[templates %s] warm-up (builds the image)", mode);
    snprintf(prefix, sizeof prefix, "%s-warmup", mode);
    if (s_round(b, label, prefix, &warm, 1) < 0)
        return -1;
    if (raw && *n_raw == 0) // here: the image is built and no VM runs
        *n_raw = s_raw_boots(b, raw);
    for (int i = 0; i < SINGLE_ROUNDS; i++) {
        s_wait_template(b, m);
        snprintf(label, sizeof label, "[templates %s] 1 pod, round %d/%d", mode, i + 1,
                 SINGLE_ROUNDS);
        snprintf(prefix, sizeof prefix, "%s-one%d", mode, i + 1);
        if (s_round(b, label, prefix, &m->single.pods[m->single.n], 1) < 0)
            return -1;
        m->single.n++;
    }
    s_wait_template(b, m);
    snprintf(label, sizeof label, "[templates %s] %d pods at once", mode, BURST);
    snprintf(prefix, sizeof prefix, "%s-burst", mode);
    if (s_round(b, label, prefix, m->burst.pods, BURST) < 0)
        return -1;
    m->burst.n = BURST;
    if (!m->templates)
        return 0;
    // Bigger VMs: the first round waits for their template (made on demand).
    b->memory_limit = BIG_MEMORY;
    for (int i = 0; i <= SINGLE_ROUNDS; i++) {
        pod_t warm_big;
        snprintf(label, sizeof label, "[templates on] 1 pod of %s, %s", BIG_MEMORY,
                 i == 0 ? "its template made on demand" : "measured");
        snprintf(prefix, sizeof prefix, "on-big%d", i);
        if (s_round(b, label, prefix, i == 0 ? &warm_big : &m->big.pods[m->big.n], 1) < 0)
            break;
        if (i > 0)
            m->big.n++;
    }
    b->memory_limit = NULL;
    return 0;
}

int main(void)
{
    zsys_set_linger(0);
    if (!getenv("VMLET_BED_DIR")) {
        fprintf(stderr, "bench: VMLET_BED_DIR is not set: run it with ./vmlet bench startup\n");
        return 2;
    }
    printf("start-up benchmark: pod created -> container running on a vmlet node, templates off "
           "then on; %d x 1 pod and %d pods at once per mode; %d raw QEMU boots as the "
           "baseline\n",
           SINGLE_ROUNDS, BURST, RAW_BOOTS);
    bench_t b = {0};
    run_mode_t off = {.templates = false}, on = {.templates = true};
    int64_t raw[RAW_BOOTS];
    int n_raw = 0;
    int rc = s_run_mode(&b, &off, raw, &n_raw);
    s_node_down(&b);
    if (rc == 0) {
        rc = s_run_mode(&b, &on, NULL, NULL);
        s_node_down(&b);
    }
    // Whatever finished is worth printing, even when a later round failed.
    const run_mode_t *modes[] = {&off, &on};
    for (int i = 0; i < 2; i++) {
        if (modes[i]->single.n > 0)
            s_print_result(modes[i], "1 pod (one round after another)", &modes[i]->single);
        if (modes[i]->burst.n > 0)
            s_print_result(modes[i], "30 pods at once", &modes[i]->burst);
        if (modes[i]->big.n > 0)
            s_print_result(modes[i], "1 pod of " BIG_MEMORY " (one round after another)",
                           &modes[i]->big);
    }
    if (off.single.n > 0 || on.single.n > 0)
        s_print_summary(&off, &on, raw, n_raw);
    if (rc < 0) {
        fprintf(stderr, "bench: could not finish the rounds (see above)\n");
        return 1;
    }
    return 0;
}
