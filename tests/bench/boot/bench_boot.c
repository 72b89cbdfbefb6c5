// tests/bench/boot: how long vmlet takes from "run this pod" to its
// container running, against a raw QEMU boot of the same kernel and
// initramfs to the agent's first message, measured in the same run
// (alternating, so both see the same machine load: each boot happens
// with as many idle VMs around as the other kind's).
//
//   vmlet: LaunchRequest submitted -> VmEvent with the container running
//          (the image cached): bus, Redis, network, writable disk, VMM
//          start, boot, pod setup in the guest, container start
//   raw:   qemu-system-x86_64 spawned -> the agent's first frame, with the
//          same memory and the same two disks, nothing of vmlet
//
// Then the VMM's memory per idle VM, and 20 idle VMs at once.
// Targets (issue 5): vmlet's overhead over the raw boot under 15 %;
// 20 concurrent idle VMs on this 24 GiB machine.
#include "raw_vm.h"
#include "stack.h"
#include "ts_registry.h"

#include "vmlet/image_index.h"
#include "vmlet/proto/guest.pb-c.h"
#include "vmlet/pod_store.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PODS 10
#define IDLE_TOTAL 20
#define GUEST_MIB 320 // the launcher's default: 256 MiB for the pod plus 64 MiB for the guest

typedef struct {
    ts_stack_t stack;
    ts_registry_t registry;
    vmlet_store_t *store;
    vmlet_metrics_t *metrics;
    vmlet_bus_client_t *client;
    vmlet_bus_subscriber_t *sub;
    char image[200];
    char rootfs[4096];
    // uid -> monotonic ms when its container ran (0: not yet)
    zhashx_t *running;
} bench_t;

static int s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int s_on_vm(void *ctx, const vmlet_envelope_t *env)
{
    bench_t *b = ctx;
    const Vmlet__VmEvent *ev = env->vm_event;
    if (!ev->pod || !ev->pod->uid || ev->n_containers == 0 || !ev->containers[0]->state)
        return 0;
    if (ev->containers[0]->state->state_case != VMLET__CONTAINER_STATE__STATE_RUNNING)
        return 0;
    int64_t *at = zhashx_lookup(b->running, ev->pod->uid);
    if (at && *at == 0)
        *at = vmlet_now_ms();
    return 0;
}

static void s_pump(bench_t *b, int ms)
{
    vmlet_bus_client_flush(b->client, 0, NULL);
    vmlet_bus_subscriber_receive(b->sub, 100, ms);
}

static void s_launch(bench_t *b, const char *uid)
{
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = (char *)uid, ref.namespace_ = "bench", ref.name = (char *)uid;
    Vmlet__Container c = VMLET__CONTAINER__INIT, *cs[] = {&c};
    char *cmd[] = {"sleep", "100000"};
    c.name = "idle", c.image = b->image, c.image_normalized = b->image;
    c.command = cmd, c.n_command = 2;
    Vmlet__PodSpec spec = VMLET__POD_SPEC__INIT;
    spec.pod = &ref, spec.containers = cs, spec.n_containers = 1;
    spec.restart_policy = "Always";
    char hash[VMLET_POD_HASH_LEN];
    vmlet_pod_spec_hash(&spec, hash);
    vmlet_pod_store_put(b->store, &spec, hash, NULL);
    int64_t *at = vmlet_xcalloc(1, sizeof *at);
    zhashx_insert(b->running, uid, at);
    Vmlet__LaunchRequest req = VMLET__LAUNCH_REQUEST__INIT;
    req.pod = &ref, req.spec_hash = hash;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_LAUNCH_REQUEST;
    env.launch_request = &req;
    char item[100];
    snprintf(item, sizeof item, "launch/%s", uid);
    vmlet_bus_submit(b->client, VMLET_QUEUE_VM_LAUNCHER, &env, item, NULL);
}

// ms from LaunchRequest to the container running; -1 after 5 minutes.
static int64_t s_vmlet_once(bench_t *b, const char *uid)
{
    int64_t start = vmlet_now_ms();
    s_launch(b, uid);
    int64_t *at = zhashx_lookup(b->running, uid);
    while (*at == 0 && vmlet_now_ms() - start < 300000)
        s_pump(b, 20);
    return *at ? *at - start : -1;
}

// ms from spawning QEMU to the agent's first frame; -1 if none in 2 minutes.
static int64_t s_raw_once(bench_t *b, int i, int64_t *uptime_ms)
{
    char dir[300], scratch[400], cmd[1400];
    snprintf(dir, sizeof dir, "%s/raw%d", b->stack.dir, i);
    snprintf(scratch, sizeof scratch, "%s/scratch.img", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && truncate -s 2G %s && mkfs.ext4 -q -F -m 0 -O ^has_journal -E lazy_itable_init=1 %s",
             dir, scratch, scratch);
    if (system(cmd) != 0)
        return -1;
    raw_vm_disk_t disks[] = {{scratch, false, "scratch"}, {b->rootfs, true, "img-bench"}};
    char kernel[400];
    snprintf(kernel, sizeof kernel, "%s/vmlinuz", VMLET_KERNEL_DIR);
    raw_vm_opts_t o = {.kernel = kernel, .initrd = VMLET_INITRAMFS, .memory_mib = GUEST_MIB,
                       .disks = disks, .n_disks = 2, .dir = dir};
    raw_vm_t vm;
    if (raw_vm_start(&o, &vm) < 0)
        return -1;
    int fd = raw_vm_connect(&vm, 120000);
    int64_t took = -1;
    uint8_t head[4];
    size_t got = 0;
    while (fd >= 0 && got < sizeof head) { // a whole frame header: the Hello is on its way
        ssize_t n = recv(fd, head + got, sizeof head - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got == sizeof head)
        took = vmlet_now_ms() - vm.started_ms;
    // The Hello itself: the guest's own uptime when it spoke.
    uint32_t len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
    uint8_t body[4096];
    got = 0;
    while (fd >= 0 && len <= sizeof body && got < len) {
        ssize_t n = recv(fd, body + got, len - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    Vmlet__GuestMessage *msg = got == len ? vmlet__guest_message__unpack(NULL, len, body) : NULL;
    if (msg && msg->body_case == VMLET__GUEST_MESSAGE__BODY_HELLO)
        *uptime_ms = msg->hello->uptime_ms;
    if (msg)
        vmlet__guest_message__free_unpacked(msg, NULL);
    if (fd >= 0)
        close(fd);
    raw_vm_kill(&vm);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) { /* best effort */ }
    return took;
}

static long s_rss_kb(const char *pidfile)
{
    FILE *f = fopen(pidfile, "r");
    int pid = 0;
    if (!f || fscanf(f, "%d", &pid) != 1)
        pid = 0;
    if (f)
        fclose(f);
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    f = pid ? fopen(path, "r") : NULL;
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

static long s_mem_available_mb(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "MemAvailable:", 13) == 0)
            kb = atol(line + 13);
    if (f)
        fclose(f);
    return kb / 1024;
}

static int s_setup(bench_t *b)
{
    if (ts_stack_start(&b->stack, "bench-boot") < 0 || ts_registry_start(&b->registry, NULL) < 0)
        return -1;
    char layout[400], cache[400], insecure[300];
    snprintf(layout, sizeof layout, "%s/layout", b->stack.dir);
    if (ts_registry_push(&b->registry, layout, "busybox", "bench/busybox:1", NULL, NULL) < 0)
        return -1;
    snprintf(b->image, sizeof b->image, "%s/bench/busybox:1", b->registry.host);
    snprintf(cache, sizeof cache, "--cache-dir=%s/images", b->stack.dir);
    snprintf(insecure, sizeof insecure, "--insecure-registries=%s", b->registry.host);
    const char *const builder[] = {cache, insecure, NULL};
    const char *const launcher[] = {"--boot-timeout=300s", "--reserve-memory=2Gi", NULL};
    if (ts_stack_service(&b->stack, "image-builder", &b->stack.builder, builder) < 0 ||
        ts_stack_service(&b->stack, "vm-launcher", &b->stack.launcher, launcher) < 0)
        return -1;
    char url[200];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", b->stack.redis.password,
             b->stack.redis.port);
    b->store = vmlet_store_new(url, NULL, NULL, NULL, NULL);
    b->metrics = vmlet_metrics_new();
    b->running = zhashx_new();
    zhashx_set_destructor(b->running, (zhashx_destructor_fn *)zstr_free);
    static vmlet_route_t routes[] = {{VMLET__ENVELOPE__BODY_VM_EVENT, s_on_vm}, VMLET_ROUTES_END};
    vmlet_dispatch_t *dispatch = vmlet_dispatch_new(routes, b, b->metrics, NULL);
    vmlet_bus_options_t bus = {.subscribe_endpoint = b->stack.broker.subscribe,
                               .work_endpoint = b->stack.broker.work, .hwm = 10000,
                               .source = "bench"};
    vmlet_body_case_t topics[] = {VMLET__ENVELOPE__BODY_VM_EVENT};
    b->sub = vmlet_bus_subscriber_new(&bus, topics, 1, dispatch, b->metrics, NULL, NULL);
    b->client = vmlet_bus_client_new(&bus, b->metrics, NULL, NULL);
    while (!vmlet_bus_subscriber_ready(b->sub))
        vmlet_bus_subscriber_receive(b->sub, 10, 50);
    // The image, built once (the benchmark is about boots, not pulls).
    Vmlet__ImageRequest img = VMLET__IMAGE_REQUEST__INIT;
    img.image = b->image;
    img.pull_policy = "IfNotPresent";
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_IMAGE_REQUEST;
    env.image_request = &img;
    vmlet_bus_submit(b->client, VMLET_QUEUE_IMAGE_BUILDER, &env, "image/bench", NULL);
    vmlet_image_index_entry_t entry = {0};
    for (int i = 0; i < 1200 && vmlet_image_index_lookup(b->store, b->image, &entry, NULL) != 1; i++)
        s_pump(b, 100);
    if (!entry.rootfs[0])
        return -1;
    snprintf(b->rootfs, sizeof b->rootfs, "%s", entry.rootfs);
    vmlet_image_index_entry_clear(&entry);
    return 0;
}

static void s_print_series(const char *what, int64_t *ms, int n)
{
    qsort(ms, (size_t)n, sizeof *ms, s_cmp);
    printf("  %-44s p50 %5lld ms   p99 %5lld ms   min %5lld   max %5lld   (n=%d)\n", what,
           (long long)ms[n / 2], (long long)ms[n - 1 - (n >= 100 ? n / 100 : 0)],
           (long long)ms[0], (long long)ms[n - 1], n);
}

int main(void)
{
    zsys_set_linger(0);
    bench_t b = {0};
    printf("boot benchmark: starting Redis, the broker, a registry, image-builder, vm-launcher...\n");
    fflush(stdout);
    if (s_setup(&b) < 0) {
        fprintf(stderr, "bench: setup failed (logs in %s)\n", b.stack.dir);
        return 1;
    }
    int64_t vm_ms[PODS], raw_ms[PODS], uptime[PODS];
    for (int i = 0; i < PODS; i++) {
        char uid[32];
        snprintf(uid, sizeof uid, "bench-%02d", i);
        uptime[i] = -1;
        raw_ms[i] = s_raw_once(&b, i, &uptime[i]);
        vm_ms[i] = s_vmlet_once(&b, uid);
        printf("  boot %2d: raw %5lld ms, vmlet %5lld ms\n", i + 1, (long long)raw_ms[i],
               (long long)vm_ms[i]);
        fflush(stdout);
        if (raw_ms[i] < 0 || vm_ms[i] < 0) {
            fprintf(stderr, "bench: a boot did not finish (logs in %s)\n", b.stack.dir);
            return 1;
        }
    }
    printf("\nlaunch to container start, %d pods one after another (image cached):\n", PODS);
    s_print_series("raw QEMU boot to the agent's first frame", raw_ms, PODS);
    s_print_series("vmlet LaunchRequest to container running", vm_ms, PODS);
    s_print_series("  of which the raw guest's uptime at its hello", uptime, PODS);
    double hello = ts_service_metric(&b.stack.launcher, "vmlet_launcher_boot_seconds_sum") /
                   ts_service_metric(&b.stack.launcher, "vmlet_launcher_boot_seconds_count");
    printf("  vmlet: VMM start to the agent's hello, mean %.0f ms (launcher's histogram)\n",
           hello * 1000);
    double ratio = (double)vm_ms[PODS / 2] / (double)raw_ms[PODS / 2];
    printf("  ratio vmlet/raw (p50): %.3f -> overhead %+.1f %% (target < 15 %%)\n", ratio,
           (ratio - 1) * 100);

    // The VMM's memory per idle VM.
    long rss_sum = 0, rss_max = 0;
    int counted = 0;
    for (int i = 0; i < PODS; i++) {
        char pidfile[400];
        snprintf(pidfile, sizeof pidfile, "%s/vms/bench-%02d/vmm.pid", b.stack.dir, i);
        long kb = s_rss_kb(pidfile);
        if (kb > 0)
            rss_sum += kb, counted++, rss_max = kb > rss_max ? kb : rss_max;
    }
    printf("\nidle VMs (guest %d MiB each): VMM RSS mean %ld MiB, max %ld MiB over %d VMs\n",
           GUEST_MIB, counted ? rss_sum / counted / 1024 : 0, rss_max / 1024, counted);

    // Twenty at once.
    long before = s_mem_available_mb();
    int64_t start = vmlet_now_ms();
    for (int i = PODS; i < IDLE_TOTAL; i++) {
        char uid[32];
        snprintf(uid, sizeof uid, "bench-%02d", i);
        s_launch(&b, uid);
    }
    int up = 0;
    while (vmlet_now_ms() - start < 600000) {
        s_pump(&b, 50);
        up = 0;
        for (int64_t *at = zhashx_first(b.running); at; at = zhashx_next(b.running))
            up += *at != 0;
        if (up == IDLE_TOTAL)
            break;
    }
    printf("%d VMs idle at once: %d running (10 more booted together in %.1f s); "
           "MemAvailable %ld MiB -> %ld MiB (target: %d)\n",
           IDLE_TOTAL, up, (double)(vmlet_now_ms() - start) / 1000.0, before,
           s_mem_available_mb(), IDLE_TOTAL);
    vmlet_bus_subscriber_destroy(&b.sub);
    vmlet_bus_client_destroy(&b.client);
    vmlet_store_destroy(&b.store);
    zhashx_destroy(&b.running);
    ts_stack_stop(&b.stack); // the launcher kills its VMs
    ts_registry_stop(&b.registry);
    return up == IDLE_TOTAL ? 0 : 1;
}
