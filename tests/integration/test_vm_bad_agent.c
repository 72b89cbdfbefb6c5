// A guest that breaks the protocol: a launcher whose VMs run the
// misbehaving test build of the agent (vmlet-agent-misbehave: after its
// Hello it sends a frame that does not unpack, an absurd length, then
// random bytes). The launcher cuts the guest off each time and stays up;
// after five times the pod fails with AgentProtocolError and its VM is
// stopped. The pod comes to the launcher as k8s-watcher hands pods over
// (its spec in Redis and a LaunchRequest), with its image built by the
// real image-builder from a registry of the test's own.
#include "stack.h"
#include "ts_registry.h"

#include "vmlet/pb.h"
#include "vmlet/pod_store.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    ts_stack_t stack;
    ts_registry_t registry;
    vmlet_store_t *store;
    vmlet_metrics_t *metrics;
    vmlet_bus_client_t *client;
    char image[200];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_int_equal(ts_stack_start(&f->stack, "vmlet-bad-agent"), 0);
    // This launcher's VMs run the misbehaving agent.
    for (int i = 0; f->stack.launcher_flags[i]; i++)
        if (strncmp(f->stack.launcher_flags[i], "--initramfs=", 12) == 0) {
            free(f->stack.launcher_flags[i]);
            f->stack.launcher_flags[i] = vmlet_xasprintf("--initramfs=%s", VMLET_INITRAMFS_MISBEHAVE);
        }
    ts_registry_options_t opts = {0};
    assert_int_equal(ts_registry_start(&f->registry, &opts), 0);
    char layout[400];
    snprintf(layout, sizeof layout, "%s/layout", f->stack.dir);
    assert_int_equal(ts_registry_push(&f->registry, layout, "busybox", "bad/busybox:1", NULL, NULL), 0);
    snprintf(f->image, sizeof f->image, "%s/bad/busybox:1", f->registry.host);
    char cache[400], insecure[300];
    snprintf(cache, sizeof cache, "--cache-dir=%s/images", f->stack.dir);
    snprintf(insecure, sizeof insecure, "--insecure-registries=%s", f->registry.host);
    const char *const builder[] = {cache, insecure, NULL};
    assert_int_equal(ts_stack_service(&f->stack, "image-builder", &f->stack.builder, builder), 0);
    assert_int_equal(ts_stack_service(&f->stack, "vm-launcher", &f->stack.launcher, NULL), 0);
    char url[200];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", f->stack.redis.password,
             f->stack.redis.port);
    f->store = vmlet_store_new(url, NULL, NULL, NULL, NULL);
    f->metrics = vmlet_metrics_new();
    vmlet_bus_options_t bus = {.work_endpoint = f->stack.broker.work, .source = "test"};
    f->client = vmlet_bus_client_new(&bus, f->metrics, NULL, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    vmlet_bus_client_destroy(&f->client);
    vmlet_metrics_destroy(&f->metrics);
    vmlet_store_destroy(&f->store);
    ts_stack_stop(&f->stack);
    ts_registry_stop(&f->registry);
    free(f);
    return 0;
}

static void s_submit(fixture_t *f, vmlet_envelope_t *env, const char *queue, const char *item)
{
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_bus_submit(f->client, queue, env, item, &err), 0);
    assert_int_equal(vmlet_bus_client_flush(f->client, 10000, &err), 0);
}

static bool s_image_built(void *arg)
{
    fixture_t *f = arg;
    redisReply *r = vmlet_store_command(f->store, NULL, "HEXISTS vmlet:image:%s digest", f->image);
    bool ok = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ok;
}

typedef struct {
    fixture_t *f;
    const char *uid;
    Vmlet__VmState state;
} record_wait_t;

static bool s_record_is(void *arg)
{
    record_wait_t *w = arg;
    redisReply *r = vmlet_store_command(w->f->store, NULL, "GET vmlet:vm:%s", w->uid);
    Vmlet__VmRecord *rec = r && r->type == REDIS_REPLY_STRING
                               ? vmlet__vm_record__unpack(NULL, r->len, (const uint8_t *)r->str)
                               : NULL;
    freeReplyObject(r);
    bool ok = rec && rec->state == w->state && rec->reason &&
              strcmp(rec->reason, "AgentProtocolError") == 0;
    if (rec)
        vmlet__vm_record__free_unpacked(rec, NULL);
    return ok;
}

static bool s_errors_seen(void *arg)
{
    fixture_t *f = arg;
    return ts_service_metric(&f->stack.launcher, "vmlet_launcher_agent_protocol_errors_total") >= 5;
}

static void test_garbage_from_the_guest_is_cut_off(void **state)
{
    fixture_t *f = *state;
    // The image first, as k8s-watcher would ask for it.
    Vmlet__ImageRequest img = VMLET__IMAGE_REQUEST__INIT;
    img.image = f->image;
    img.pull_policy = "IfNotPresent";
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_IMAGE_REQUEST;
    env.image_request = &img;
    s_submit(f, &env, VMLET_QUEUE_IMAGE_BUILDER, "image/bad");
    assert_true(ts_poll(s_image_built, f, 120000));
    // The pod, as k8s-watcher hands it over.
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = "bad-agent-0001", ref.namespace_ = "default", ref.name = "bad";
    Vmlet__Container c = VMLET__CONTAINER__INIT, *cs[] = {&c};
    char *cmd[] = {"sleep", "1000"};
    c.name = "main", c.image = f->image, c.image_normalized = f->image;
    c.command = cmd, c.n_command = 2;
    Vmlet__PodSpec spec = VMLET__POD_SPEC__INIT;
    spec.pod = &ref, spec.containers = cs, spec.n_containers = 1;
    spec.restart_policy = "Always";
    char hash[VMLET_POD_HASH_LEN];
    vmlet_pod_spec_hash(&spec, hash);
    assert_int_equal(vmlet_pod_store_put(f->store, &spec, hash, NULL), 0);
    Vmlet__LaunchRequest launch = VMLET__LAUNCH_REQUEST__INIT;
    launch.pod = &ref, launch.spec_hash = hash;
    env = (vmlet_envelope_t)VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_LAUNCH_REQUEST;
    env.launch_request = &launch;
    s_submit(f, &env, VMLET_QUEUE_VM_LAUNCHER, "launch/bad-agent-0001");
    // Cut off, again and again; never down itself.
    if (!ts_poll(s_errors_seen, f, 240000)) {
        char tail[600];
        snprintf(tail, sizeof tail, "tail -n 20 %s", f->stack.launcher.log);
        if (system(tail) != 0) { /* diagnostics only */ }
        fail_msg("the launcher did not cut the guest off five times");
    }
    // The pod failed with the reason (its status will say so) and stays
    // failed: it is not deleted, so nothing of it is forgotten.
    record_wait_t w = {f, ref.uid, VMLET__VM_STATE__VM_STATE_FAILED};
    assert_true(ts_poll(s_record_is, &w, 30000));
    assert_int_equal(kill(f->stack.launcher.pid, 0), 0);
    char url[128];
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", f->stack.launcher.http_port);
    assert_int_equal(ts_http_get(url, &status, NULL), 0);
    assert_int_equal(status, 200);
    // Its VM is gone.
    char *pg = vmlet_xasprintf("pgrep -f '[q]emu-system.*%s' >/dev/null", ref.uid);
    assert_int_not_equal(system(pg), 0);
    free(pg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_garbage_from_the_guest_is_cut_off, setup, teardown),
    };
    return TS_RUN(tests);
}
