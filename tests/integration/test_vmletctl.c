// vmletctl against a real Redis holding a known state, written the way the
// services write it (pod specs through vmlet_pod_store_put, VmRecords and
// capacity records packed as vm-launcher packs them, presence keys, the
// image index): its exact tables and JSON, its exit codes; then drain
// against a real vm-launcher and gc against a real image-builder.
#include "stack.h"

#include "vmlet/pb.h"
#include "vmlet/pod_store.h"
#include "vmlet/proto/stats.pb-c.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define H3 (3 * 3600 * 1000LL + 30000) // "3h" in every age column, however slow the run
#define DIGEST "sha256:aaaa000000000000000000000000000000000000000000000000000000000001"

typedef struct {
    ts_stack_t stack;
    vmlet_store_t *store;
    char url[200];
    char dir[300];
    int64_t now;
} fixture_t;

static fixture_t *g;

// --- helpers ----------------------------------------------------------------------

// Runs vmletctl with args (shell words); returns its exit code, *out its
// stdout (stderr too when with_err). Caller frees.
static int s_ctl(char **out, bool with_err, const char *fmt, ...)
{
    char args[1000], cmd[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *bin = ts_bin_path("vmletctl");
    snprintf(cmd, sizeof cmd, "VMLET_REDIS_URL='%s' %s %s %s", g->url, bin, args,
             with_err ? "2>&1" : "");
    free(bin);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0;
    char *buf = vmlet_xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0)
        n += got;
    buf[n] = '\0';
    int status = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void s_set_bytes(const char *key, const void *bytes, size_t len)
{
    redisReply *r = vmlet_store_command(g->store, NULL, "SET %s %b", key, bytes, len);
    assert_non_null(r);
    freeReplyObject(r);
}

static void s_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_run(const char *fmt, ...)
{
    char cmd[2000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    // Split on spaces into argv: the values here have none.
    const char *argv[32];
    size_t lens[32];
    int argc = 0;
    for (char *save = NULL, *w = strtok_r(cmd, " ", &save); w && argc < 32;
         w = strtok_r(NULL, " ", &save)) {
        argv[argc] = w;
        lens[argc++] = strlen(w);
    }
    redisReply *r = vmlet_store_commandv(g->store, NULL, argc, argv, lens);
    assert_non_null(r);
    freeReplyObject(r);
}

// --- the known state -----------------------------------------------------------------

static void s_presence(void)
{
    char v[400];
    snprintf(v, sizeof v,
             "{\"service\":\"prober\",\"instance\":\"host-a-1\",\"version\":\"1.2.3\","
             "\"http\":\"127.0.0.1:9104\",\"started_unix_ms\":%lld}",
             (long long)(g->now - H3));
    s_set_bytes("vmlet:instances:prober:host-a-1", v, strlen(v));
}

static void s_launcher(void)
{
    Vmlet__LauncherCapacity cap = VMLET__LAUNCHER_CAPACITY__INIT;
    cap.launcher_id = "launcher-a";
    cap.host = "host-a";
    cap.version = "1.2.3";
    PB_SET(&cap, cpu_millis, 3500);
    PB_SET(&cap, memory_bytes, 8LL << 30);
    PB_SET(&cap, pods, 110);
    PB_SET(&cap, cpu_millis_used, 1500);
    PB_SET(&cap, memory_bytes_used, 1LL << 30);
    PB_SET(&cap, pods_used, 1);
    PB_SET(&cap, valid_until_unix_ms, 4102444800000LL);
    uint8_t buf[256];
    size_t len = vmlet__launcher_capacity__pack(&cap, buf);
    s_set_bytes("vmlet:launcher:launcher-a", buf, len);
    // launcher-gone announced once and stopped: its record expired.
    s_run("SADD vmlet:launchers launcher-a launcher-gone");
}

static void s_pod(const char *uid, const char *name, bool full)
{
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = (char *)uid, ref.namespace_ = "shop", ref.name = (char *)name;
    Vmlet__PodSpec spec = VMLET__POD_SPEC__INIT;
    spec.pod = &ref;
    spec.restart_policy = "Always";
    Vmlet__Container app = VMLET__CONTAINER__INIT, init = VMLET__CONTAINER__INIT;
    Vmlet__Container *apps[] = {&app}, *inits[] = {&init};
    app.name = "app", app.image = "nginx:1.25",
    app.image_normalized = "docker.io/library/nginx:1.25";
    init.name = "setup", init.image = "busybox";
    init.image_normalized = "docker.io/library/busybox:latest";
    Vmlet__Probe ready = VMLET__PROBE__INIT, live = VMLET__PROBE__INIT;
    app.readiness_probe = &ready, app.liveness_probe = &live;
    Vmlet__EmptyDirVolume ed = VMLET__EMPTY_DIR_VOLUME__INIT;
    Vmlet__Volume vol = VMLET__VOLUME__INIT, *vols[] = {&vol};
    vol.name = "data", vol.source_case = VMLET__VOLUME__SOURCE_EMPTY_DIR, vol.empty_dir = &ed;
    spec.containers = apps, spec.n_containers = 1;
    if (full)
        spec.init_containers = inits, spec.n_init_containers = 1, spec.volumes = vols,
        spec.n_volumes = 1;
    char hash[VMLET_POD_HASH_LEN];
    vmlet_pod_spec_hash(&spec, hash);
    assert_int_equal(vmlet_pod_store_put(g->store, &spec, hash, NULL), 0);
}

static Vmlet__ContainerRecord *s_container(const char *name, bool init, int restarts)
{
    Vmlet__ContainerRecord *cr = PB_NEW(Vmlet__ContainerRecord, VMLET__CONTAINER_RECORD__INIT);
    Vmlet__ContainerStatus *st = PB_NEW(Vmlet__ContainerStatus, VMLET__CONTAINER_STATUS__INIT);
    Vmlet__ContainerState *now = PB_NEW(Vmlet__ContainerState, VMLET__CONTAINER_STATE__INIT);
    Vmlet__ContainerState *last = PB_NEW(Vmlet__ContainerState, VMLET__CONTAINER_STATE__INIT);
    Vmlet__ContainerStateTerminated *t =
        PB_NEW(Vmlet__ContainerStateTerminated, VMLET__CONTAINER_STATE_TERMINATED__INIT);
    st->name = vmlet_xstrdup(name);
    PB_SET(st, restart_count, restarts);
    cr->status = st;
    PB_SET(cr, init, init);
    st->state = now;
    if (init) { // done, exit 0
        PB_SET(t, exit_code, 0);
        t->reason = vmlet_xstrdup("Completed");
        now->state_case = VMLET__CONTAINER_STATE__STATE_TERMINATED, now->terminated = t;
        free(last);
        return cr;
    }
    Vmlet__ContainerStateRunning *run =
        PB_NEW(Vmlet__ContainerStateRunning, VMLET__CONTAINER_STATE_RUNNING__INIT);
    now->state_case = VMLET__CONTAINER_STATE__STATE_RUNNING, now->running = run;
    PB_SET(t, exit_code, 137);
    t->reason = vmlet_xstrdup("Error");
    last->state_case = VMLET__CONTAINER_STATE__STATE_TERMINATED, last->terminated = t;
    st->last_state = last;
    return cr;
}

static void s_vm(void)
{
    Vmlet__PodRef *ref = PB_NEW(Vmlet__PodRef, VMLET__POD_REF__INIT);
    ref->uid = vmlet_xstrdup("uid-web"), ref->namespace_ = vmlet_xstrdup("shop");
    ref->name = vmlet_xstrdup("web");
    Vmlet__VmRecord *rec = PB_NEW(Vmlet__VmRecord, VMLET__VM_RECORD__INIT);
    rec->pod = ref;
    rec->launcher_id = vmlet_xstrdup("launcher-a");
    PB_SET(rec, state, VMLET__VM_STATE__VM_STATE_RUNNING);
    rec->pod_ip = vmlet_xstrdup("10.1.0.5");
    PB_SET(rec, vcpus, 1);
    PB_SET(rec, memory_bytes, 320LL << 20);
    PB_SET(rec, boots, 1);
    PB_SET(rec, created_unix_ms, g->now - H3);
    rec->state_dir = vmlet_xasprintf("%s/uid-web", g->dir);
    mkdir(rec->state_dir, 0755);
    char pid[400];
    snprintf(pid, sizeof pid, "%s/vmm.pid", rec->state_dir);
    FILE *f = fopen(pid, "w");
    fprintf(f, "4242\n");
    fclose(f);
    rec->init_containers = vmlet_xcalloc(1, sizeof *rec->init_containers);
    rec->init_containers[0] = s_container("setup", true, 0), rec->n_init_containers = 1;
    rec->containers = vmlet_xcalloc(1, sizeof *rec->containers);
    rec->containers[0] = s_container("app", false, 2), rec->n_containers = 1;
    size_t len = vmlet__vm_record__get_packed_size(rec);
    uint8_t *buf = vmlet_xmalloc(len);
    vmlet__vm_record__pack(rec, buf);
    s_set_bytes("vmlet:vm:uid-web", buf, len);
    free(buf);
    // Packed and unpacked messages free alike: every part was malloc'd.
    vmlet__vm_record__free_unpacked(rec, NULL);
    s_run("SADD vmlet:vms:launcher-a uid-web");
}

static void s_images_and_status(void)
{
    s_run("HSET vmlet:image:docker.io/library/nginx:1.25 digest %s updated_unix_ms %lld", DIGEST,
          (long long)(g->now - H3));
    s_run("HSET vmlet:image-digest:%s rootfs /var/cache/vmlet/rootfs/aaaa.ext4 size 52428800 "
          "last_used_unix_ms %lld blobs x",
          DIGEST, (long long)(g->now - H3));
    s_run("SADD vmlet:images %s", DIGEST);
    s_run("HSET vmlet:image-backoff:docker.io/library/busybox:latest attempts 3 until_unix_ms "
          "%lld error manifest_unknown",
          (long long)(g->now + H3));
    s_run("HSET vmlet:status:uid-web probe:app:readiness 1 probe:app:liveness 0");
    Vmlet__CpuStats cpu = VMLET__CPU_STATS__INIT;
    PB_SET(&cpu, usage_nano_cores, 150000000ULL);
    Vmlet__MemoryStats mem = VMLET__MEMORY_STATS__INIT;
    PB_SET(&mem, working_set_bytes, 64ULL << 20);
    PB_SET(&mem, usage_bytes, 80ULL << 20);
    Vmlet__PodStats s = VMLET__POD_STATS__INIT;
    s.uid = "uid-web", s.cpu = &cpu, s.memory = &mem;
    PB_SET(&s, sampled_unix_ms, g->now - H3);
    uint8_t buf[256];
    size_t len = vmlet__pod_stats__pack(&s, buf);
    s_set_bytes("vmlet:stats:uid-web", buf, len);
}

// --- fixture --------------------------------------------------------------------------

static int setup(void **state)
{
    g = calloc(1, sizeof *g);
    assert_int_equal(ts_stack_start(&g->stack, "vmlet-ctl"), 0);
    snprintf(g->url, sizeof g->url, "redis://:%s@127.0.0.1:%d", g->stack.redis.password,
             g->stack.redis.port);
    g->store = vmlet_store_new(g->url, NULL, NULL, NULL, NULL);
    snprintf(g->dir, sizeof g->dir, "%s", g->stack.dir);
    g->now = vmlet_unix_ms();
    s_presence();
    s_launcher();
    s_pod("uid-web", "web", true);
    s_pod("uid-batch", "batch", false);
    s_vm();
    s_images_and_status();
    *state = g;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_stack_service_stop(&g->stack.launcher);
    ts_stack_service_stop(&g->stack.builder);
    vmlet_store_destroy(&g->store);
    ts_stack_stop(&g->stack);
    free(g);
    return 0;
}

// --- reading ------------------------------------------------------------------------

static void s_expect(const char *args, const char *want)
{
    char *out;
    assert_int_equal(s_ctl(&out, false, "%s", args), 0);
    assert_string_equal(out, want);
    free(out);
}

// -o json, compared as JSON (key order and spacing aside).
static void s_expect_json(const char *args, const char *want_text)
{
    char *out;
    assert_int_equal(s_ctl(&out, false, "-o json %s", args), 0);
    cJSON *got = cJSON_Parse(out), *want = cJSON_Parse(want_text);
    assert_non_null(want);
    if (!cJSON_Compare(got, want, true))
        fail_msg("vmletctl -o json %s:\n%s\nwanted:\n%s", args, out, want_text);
    cJSON_Delete(got);
    cJSON_Delete(want);
    free(out);
}

static void test_status(void **state)
{
    (void)state;
    s_expect("status",
             "Services:\n"
             "SERVICE   INSTANCE   VERSION   ADDRESS          AGE\n"
             "prober    host-a-1   1.2.3     127.0.0.1:9104   3h\n"
             "\n"
             "Launchers:\n"
             "LAUNCHER        STATE   HOST     CPU     CPU-USED   MEMORY   MEMORY-USED   PODS   "
             "PODS-USED\n"
             "launcher-a      Ready   host-a   3500m   1500m      8Gi      1Gi           110    1\n"
             "launcher-gone   Gone    -        -       -          -        -             -      -\n"
             "\n"
             "Node:\n"
             "  launchers alive: 1\n"
             "  pods bound: 2\n"
             "  cpu: 1500m of 3500m\n"
             "  memory: 1Gi of 8Gi\n"
             "  pods: 1 of 110\n"
             "  Ready: not kept in Redis: kubectl get node <node-name>\n");
    char want[2000];
    snprintf(want, sizeof want,
             "{\"services\":[{\"service\":\"prober\",\"instance\":\"host-a-1\",\"version\":"
             "\"1.2.3\",\"address\":\"127.0.0.1:9104\",\"started_unix_ms\":%lld}],"
             "\"launchers\":[{\"launcher\":\"launcher-a\",\"state\":\"Ready\",\"draining\":false,"
             "\"host\":\"host-a\",\"version\":\"1.2.3\",\"cpu_millis\":3500,\"cpu_millis_used\":"
             "1500,\"memory_bytes\":8589934592,\"memory_bytes_used\":1073741824,\"pods\":110,"
             "\"pods_used\":1,\"valid_until_unix_ms\":4102444800000},"
             "{\"launcher\":\"launcher-gone\",\"state\":\"Gone\",\"draining\":false}],"
             "\"node\":{\"ready\":null,\"ready_note\":\"not kept in Redis: kubectl get node "
             "<node-name>\",\"launchers_alive\":1,\"pods_bound\":2,\"cpu_millis\":3500,"
             "\"cpu_millis_used\":1500,\"memory_bytes\":8589934592,\"memory_bytes_used\":"
             "1073741824,\"pods\":110,\"pods_used\":1}}",
             (long long)(g->now - H3));
    s_expect_json("status", want);
}

static void test_pods_and_vms(void **state)
{
    (void)state;
    s_expect("pods", "POD          UID         PHASE     IP         LAUNCHER     RESTARTS\n"
                     "shop/batch   uid-batch   NoVM      -          -            -\n"
                     "shop/web     uid-web     Running   10.1.0.5   launcher-a   2\n");
    s_expect_json("pods",
                  "[{\"pod\":\"shop/batch\",\"namespace\":\"shop\",\"name\":\"batch\",\"uid\":"
                  "\"uid-batch\",\"phase\":\"NoVM\"},"
                  "{\"pod\":\"shop/web\",\"namespace\":\"shop\",\"name\":\"web\",\"uid\":"
                  "\"uid-web\",\"phase\":\"Running\",\"ip\":\"10.1.0.5\",\"launcher\":"
                  "\"launcher-a\",\"restarts\":2}]");
    s_expect("vms", "POD        LAUNCHER     STATE     IP         VCPUS   MEMORY   PID    AGE\n"
                    "shop/web   launcher-a   Running   10.1.0.5   1       320Mi    4242   3h\n");
    char want[1000];
    snprintf(want, sizeof want,
             "[{\"pod\":\"shop/web\",\"uid\":\"uid-web\",\"launcher\":\"launcher-a\",\"state\":"
             "\"Running\",\"ip\":\"10.1.0.5\",\"vcpus\":1,\"memory_bytes\":335544320,\"boots\":1,"
             "\"pid\":4242,\"state_dir\":\"%s/uid-web\",\"created_unix_ms\":%lld}]",
             g->dir, (long long)(g->now - H3));
    s_expect_json("vms", want);
}

static void test_images(void **state)
{
    (void)state;
    s_expect("images",
             "REFERENCE                      DIGEST                                            "
             "                        SIZE   LAST-USED   ROOTFS\n"
             "docker.io/library/nginx:1.25   " DIGEST "   50Mi   3h          "
             "/var/cache/vmlet/rootfs/aaaa.ext4\n"
             "\n"
             "Pulls backing off:\n"
             "REFERENCE                          ATTEMPTS   RETRY-IN   ERROR\n"
             "docker.io/library/busybox:latest   3          3h         manifest_unknown\n");
    char want[1500];
    snprintf(want, sizeof want,
             "{\"images\":[{\"reference\":\"docker.io/library/nginx:1.25\",\"digest\":\"" DIGEST
             "\",\"updated_unix_ms\":%lld,\"size_bytes\":52428800,\"last_used_unix_ms\":%lld,"
             "\"rootfs\":\"/var/cache/vmlet/rootfs/aaaa.ext4\"}],"
             "\"backoff\":[{\"reference\":\"docker.io/library/busybox:latest\",\"attempts\":3,"
             "\"until_unix_ms\":%lld,\"error\":\"manifest_unknown\"}]}",
             (long long)(g->now - H3), (long long)(g->now - H3), (long long)(g->now + H3));
    s_expect_json("images", want);
}

static void test_describe(void **state)
{
    (void)state;
    s_expect(
        "describe pod shop/web",
        "Name:         shop/web\n"
        "UID:          uid-web\n"
        "Restart:      Always\n"
        "VM:           Running on launcher-a, IP 10.1.0.5, 1 vCPU, 320Mi, 1 boots, age 3h\n"
        "Containers:\n"
        "  setup (init):\n"
        "    Image:     busybox (docker.io/library/busybox:latest): backoff: manifest_unknown\n"
        "    State:     terminated exit 0 (Completed)\n"
        "    Restarts:  0\n"
        "  app:\n"
        "    Image:     nginx:1.25 (docker.io/library/nginx:1.25): ready " DIGEST "\n"
        "    Probes:    liveness failing, readiness passing\n"
        "    State:     running\n"
        "    Last:      terminated exit 137 (Error)\n"
        "    Restarts:  2\n"
        "Volumes:\n"
        "  data: emptyDir\n"
        "Stats:        cpu 150m, memory working set 64Mi (usage 80Mi), sampled 3h ago\n"
        "Events:       not kept in Redis: kubectl get events -n shop --field-selector "
        "involvedObject.name=web\n");
    char *out;
    assert_int_equal(s_ctl(&out, false, "-o json describe pod shop/web"), 0);
    cJSON *doc = cJSON_Parse(out);
    assert_non_null(doc);
    const cJSON *app = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "containers"), 1);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(app, "probes"), "readiness")->valuestring,
        "passing");
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(app, "last_state"), "exit_code")->valueint, 137);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "vm"), "ip")->valuestring,
                        "10.1.0.5");
    assert_true(
        cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "stats"), "cpu_nano_cores")->valuedouble ==
        150000000.0);
    cJSON_Delete(doc);
    free(out);
}

static void test_exit_codes(void **state)
{
    (void)state;
    char *out;
    assert_int_equal(s_ctl(&out, true, "describe pod shop/nothere"), 1);
    assert_non_null(strstr(out, "pod shop/nothere is not in Redis"));
    free(out);
    assert_int_equal(s_ctl(NULL, true, "describe pod nothere"), 2);
    assert_int_equal(s_ctl(NULL, true, "describe"), 2);
    assert_int_equal(s_ctl(NULL, true, "frobnicate"), 2);
    assert_int_equal(s_ctl(NULL, true, "pods extra"), 2);
    assert_int_equal(s_ctl(NULL, true, "-o yaml pods"), 2);
    assert_int_equal(s_ctl(&out, true, "--redis-url=redis://127.0.0.1:1 pods"), 3);
    assert_non_null(strstr(out, "redis://127.0.0.1:1"));
    free(out);
    assert_int_equal(s_ctl(&out, true, "drain no-such-launcher"), 1);
    free(out);
    // Two launchers known: which one to drain must be said.
    assert_int_equal(s_ctl(NULL, true, "drain"), 2);
}

// --- drain and gc, against the real services -------------------------------------------

static void s_launch(vmlet_bus_client_t *client, const char *uid, const char *item)
{
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = (char *)uid, ref.namespace_ = "shop", ref.name = "web";
    Vmlet__LaunchRequest req = VMLET__LAUNCH_REQUEST__INIT;
    req.pod = &ref;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_LAUNCH_REQUEST;
    env.launch_request = &req;
    assert_int_equal(vmlet_bus_submit(client, VMLET_QUEUE_VM_LAUNCHER, &env, item, NULL), 0);
    vmlet_bus_client_flush(client, 5000, NULL);
}

static bool s_metric_is(const char *series, double want)
{
    for (int i = 0; i < 100; i++) {
        if (ts_service_metric(&g->stack.launcher, series) == want)
            return true;
        usleep(100 * 1000);
    }
    return false;
}

static bool s_vm_recorded(void *arg)
{
    redisReply *r = vmlet_store_command(g->store, NULL, "EXISTS vmlet:vm:%s", (char *)arg);
    bool yes = r && r->integer == 1;
    freeReplyObject(r);
    return yes;
}

// A drained launcher takes no new pod (the pod's image is missing, so even
// undrained no VM boots: it waits Pending); undrained, it takes it.
static void test_drain(void **state)
{
    (void)state;
    static const char *const fast[] = {"--announce-interval=1s", NULL};
    assert_int_equal(ts_stack_service(&g->stack, "vm-launcher", &g->stack.launcher, fast), 0);
    const char *id = g->stack.launcher_flags[0] + strlen("--launcher-id=");
    assert_true(s_metric_is("vmlet_launcher_draining", 0));
    char *out;
    assert_int_equal(s_ctl(&out, true, "drain %s", id), 0);
    assert_non_null(strstr(out, "drained"));
    free(out);
    assert_true(s_metric_is("vmlet_launcher_draining", 1));
    assert_int_equal(s_ctl(&out, false, "status"), 0);
    assert_non_null(strstr(out, "Draining"));
    free(out);

    s_pod("uid-drain", "drain", false);
    vmlet_metrics_t *metrics = vmlet_metrics_new();
    vmlet_bus_options_t bus = {.work_endpoint = g->stack.broker.work, .source = "test"};
    vmlet_bus_client_t *client = vmlet_bus_client_new(&bus, metrics, NULL, NULL);
    s_launch(client, "uid-drain", "launch/uid-drain/1");
    assert_true(s_metric_is("vmlet_launcher_launches_declined_total", 1));
    assert_false(s_vm_recorded("uid-drain"));

    assert_int_equal(s_ctl(&out, true, "-o json undrain %s", id), 0);
    assert_non_null(strstr(out, "\"draining\":\tfalse"));
    free(out);
    assert_true(s_metric_is("vmlet_launcher_draining", 0));
    s_launch(client, "uid-drain", "launch/uid-drain/2");
    assert_true(ts_poll(s_vm_recorded, "uid-drain", 10000));
    assert_int_equal(s_ctl(&out, false, "pods"), 0);
    char want[200];
    snprintf(want, sizeof want, "shop/drain   uid-drain   Pending   -          %s", id);
    assert_non_null(strstr(out, want));
    free(out);
    vmlet_bus_client_destroy(&client);
    vmlet_metrics_destroy(&metrics);
}

static bool s_gone(void *arg)
{
    return access(arg, F_OK) != 0;
}

// An image no pod uses goes at once, whatever the disk budget.
static void test_gc(void **state)
{
    (void)state;
    char cache[400], flag[420], rootfs[500];
    snprintf(cache, sizeof cache, "%s/cache", g->dir);
    snprintf(flag, sizeof flag, "--cache-dir=%s", cache);
    const char *args[] = {flag, NULL};
    assert_int_equal(ts_stack_service(&g->stack, "image-builder", &g->stack.builder, args), 0);
    snprintf(rootfs, sizeof rootfs, "%s/rootfs/bbbb.ext4", cache);
    FILE *f = fopen(rootfs, "w");
    assert_non_null(f);
    for (int i = 0; i < 256; i++)
        fprintf(f, "%4096s", "x");
    fclose(f);
    s_run("HSET vmlet:image-digest:sha256:bbbb rootfs %s size 1048576 last_used_unix_ms 1 "
          "blobs x",
          rootfs);
    s_run("SADD vmlet:images sha256:bbbb");
    char *out;
    assert_int_equal(s_ctl(&out, true, "-o json gc --wait=20s"), 0);
    cJSON *doc = cJSON_Parse(out);
    assert_non_null(doc);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(doc, "answered")));
    // nginx stays: shop/web uses it.
    assert_int_equal(cJSON_GetObjectItem(doc, "images_removed")->valueint, 1);
    assert_true(cJSON_GetObjectItem(doc, "freed_bytes")->valuedouble >= 1048576);
    cJSON_Delete(doc);
    free(out);
    assert_true(ts_poll(s_gone, rootfs, 1000));
    assert_int_equal(s_ctl(&out, false, "gc --wait=1s"), 0); // nothing left: freed 0
    assert_non_null(strstr(out, "removed 0 unused images"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status),     cmocka_unit_test(test_pods_and_vms),
        cmocka_unit_test(test_images),     cmocka_unit_test(test_describe),
        cmocka_unit_test(test_exit_codes), cmocka_unit_test(test_drain),
        cmocka_unit_test(test_gc),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
