// A test's own vmlet against the shared bed (see stack.h).
#include "stack.h"

#include "vmlet/pb.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

// Flags that give the stack's vm-launcher a network, directories and
// identity of its own, so stacks never meet: a namespace, bridge, veth,
// pod CIDR (10.<200-249>.<0-255>.0/24; traffic to it cannot leave the
// machine: the launcher routes it to the namespace, with an unreachable
// fallback) and link addresses picked at random; NAT off (tests never talk
// to the outside); VMs stopped and the network removed on SIGTERM; a free
// port for its sessions.
void ts_stack_launcher_flags(ts_stack_t *stack)
{
    char suffix[9];
    vmlet_random_hex(suffix, 4);
    unsigned r = (unsigned)strtoul(suffix, NULL, 16);
    snprintf(stack->netns, sizeof stack->netns, "vmlt-%s", suffix);
    snprintf(stack->pod_cidr, sizeof stack->pod_cidr, "10.%u.%u.0/24", 200 + r % 50,
             (r >> 8) & 0xff);
    // Templates are shared by the whole run (the bed's directory): each is
    // one VM boot, and every test's launcher wants the same one.
    char *bed_dir = ts_bed_value("BED_DIR");
    char *templates = vmlet_xasprintf("--template-dir=%s/templates", bed_dir ? bed_dir : stack->dir);
    free(bed_dir);
    char *flags[] = {
        vmlet_xasprintf("--launcher-id=launcher-%s", suffix),
        vmlet_xasprintf("--net-netns=%s", stack->netns),
        vmlet_xasprintf("--net-bridge=vb%s", suffix),
        vmlet_xasprintf("--net-host-veth=vh%s", suffix),
        vmlet_xasprintf("--pod-cidr=%s", stack->pod_cidr),
        vmlet_xasprintf("--net-link-cidr=169.254.%u.%u/30", (r >> 16) & 0xff,
                        ((r >> 24) & 0x3f) * 4),
        vmlet_xstrdup("--net-nat=false"),
        vmlet_xasprintf("--state-dir=%s/vms", stack->dir),
        vmlet_xasprintf("--log-dir=%s/pods", stack->dir),
        vmlet_xasprintf("--kernel=%s/vmlinuz", VMLET_KERNEL_DIR),
        vmlet_xasprintf("--initramfs=%s", VMLET_INITRAMFS),
        vmlet_xstrdup("--stop-vms-on-exit=true"),
        vmlet_xstrdup("--reserve-memory=512Mi"),
        // Each stack's sessions (the kubelet API's way in) on a port of its own.
        vmlet_xasprintf("--session-listen=127.0.0.1:%d", ts_free_port()),
        templates,
        NULL,
    };
    _Static_assert(sizeof flags / sizeof flags[0] <= sizeof stack->launcher_flags /
                                                          sizeof stack->launcher_flags[0],
                   "launcher_flags is too small");
    memcpy(stack->launcher_flags, flags, sizeof flags);
}

int ts_stack_start(ts_stack_t *stack, const char *node)
{
    memset(stack, 0, sizeof *stack);
    snprintf(stack->node, sizeof stack->node, "%s", node);
    stack->dir = ts_tempdir("vmlet-stack");
    ts_stack_launcher_flags(stack);
    if (ts_redis_start(&stack->redis, "stack-pw") < 0)
        return -1;
    static const char *const broker_args[] = {"--heartbeat=200ms", NULL};
    return ts_broker_start(&stack->broker, stack->dir, broker_args);
}

static bool s_ready(void *arg)
{
    ts_service_t *svc = arg;
    char url[128];
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/readyz", svc->http_port);
    return ts_http_get(url, &status, NULL) == 0 && status == 200;
}

int ts_stack_service(ts_stack_t *stack, const char *name, ts_service_t *svc,
                     const char *const extra[])
{
    return ts_stack_service_as(stack, name, svc, extra, 0);
}

int ts_stack_service_as(ts_stack_t *stack, const char *name, ts_service_t *svc,
                        const char *const extra[], int uid)
{
    char bin_name[64], http[64], redis[160], pub[96], sub[96], work[96], node[96], kubeconfig[400];
    snprintf(bin_name, sizeof bin_name, "vmlet-%s", name);
    char *bin = ts_bin_path(bin_name);
    char *kc = ts_bed_value("BED_VMLET_KUBECONFIG");
    svc->http_port = ts_free_port();
    snprintf(svc->log, sizeof svc->log, "%s/%s.log", stack->dir, name);
    snprintf(http, sizeof http, "--http-listen=127.0.0.1:%d", svc->http_port);
    snprintf(redis, sizeof redis, "--redis-url=redis://:%s@127.0.0.1:%d", stack->redis.password,
             stack->redis.port);
    snprintf(pub, sizeof pub, "--bus-publish=%s", stack->broker.publish);
    snprintf(sub, sizeof sub, "--bus-subscribe=%s", stack->broker.subscribe);
    snprintf(work, sizeof work, "--bus-work=%s", stack->broker.work);
    snprintf(node, sizeof node, "--node-name=%s", stack->node);
    snprintf(kubeconfig, sizeof kubeconfig, "--kubeconfig=%s", kc ? kc : "");
    char reuid[32], regid[32];
    snprintf(reuid, sizeof reuid, "--reuid=%d", uid);
    snprintf(regid, sizeof regid, "--regid=%d", uid);
    char *argv[64];
    int n = 0;
    if (uid) { // as an unprivileged user, as an operator may run it
        char *prefix[] = {"setpriv", reuid, regid, "--clear-groups", "--"};
        for (int i = 0; i < 5; i++)
            argv[n++] = prefix[i];
    }
    char *common[] = {bin, http, redis, pub, sub, work, "--bus-heartbeat=200ms"};
    for (int i = 0; i < 7; i++)
        argv[n++] = common[i];
    if (strcmp(name, "k8s-watcher") == 0 || strcmp(name, "status-reporter") == 0) {
        argv[n++] = node;
        argv[n++] = kubeconfig;
    } else if (strcmp(name, "vm-launcher") == 0) {
        argv[n++] = kubeconfig; // Secrets and ConfigMaps of the pods
        for (int i = 0; stack->launcher_flags[i] && n < 39; i++)
            argv[n++] = stack->launcher_flags[i];
    }
    for (int i = 0; extra && extra[i] && n < 63; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    svc->pid = ts_spawn(svc->log, argv);
    free(bin);
    free(kc);
    return svc->pid > 0 && ts_poll(s_ready, svc, 20000) ? 0 : -1;
}

void ts_stack_service_stop(ts_service_t *svc)
{
    if (svc->pid > 0) {
        ts_kill(svc->pid, SIGTERM);
        if (ts_wait_exit(svc->pid, 5000, NULL) < 0) {
            ts_kill(svc->pid, SIGKILL);
            ts_wait_exit(svc->pid, 5000, NULL);
        }
        svc->pid = 0;
    }
}

void ts_stack_stop(ts_stack_t *stack)
{
    vmlet_bus_publisher_destroy(&stack->publisher);
    vmlet_metrics_destroy(&stack->metrics);
    ts_stack_service_stop(&stack->watcher);
    ts_stack_service_stop(&stack->reporter);
    ts_stack_service_stop(&stack->launcher);
    ts_stack_service_stop(&stack->builder);
    ts_broker_stop(&stack->broker);
    ts_redis_stop(&stack->redis);
    for (int i = 0; stack->launcher_flags[i]; i++)
        free(stack->launcher_flags[i]);
    memset(stack->launcher_flags, 0, sizeof stack->launcher_flags);
    if (stack->dir) {
        ts_remove_dir(stack->dir);
        free(stack->dir);
        stack->dir = NULL;
    }
}

double ts_service_metric(const ts_service_t *svc, const char *series)
{
    char url[128], *body = NULL;
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", svc->http_port);
    if (ts_http_get(url, &status, &body) < 0)
        return -1;
    double v = ts_metric_value(body, series);
    free(body);
    return v;
}

static int s_run(char **out, const char *input, const char *args)
{
    char *kubectl = ts_bed_value("BED_KUBECTL"), *kubeconfig = ts_bed_value("BED_KUBECONFIG");
    char *cmd = NULL;
    char *dir = ts_tempdir("vmlet-kubectl");
    if (asprintf(&cmd, "%s --kubeconfig %s %s >%s/out 2>&1 %s%s%s", kubectl, kubeconfig, args, dir,
                 input ? "<" : "", input ? dir : "", input ? "/in" : "") < 0)
        return -1;
    if (input) {
        char path[300];
        snprintf(path, sizeof path, "%s/in", dir);
        FILE *f = fopen(path, "w");
        fputs(input, f);
        fclose(f);
    }
    int rc = system(cmd);
    if (out) {
        char path[300];
        snprintf(path, sizeof path, "%s/out", dir);
        FILE *f = fopen(path, "r");
        size_t cap = 8 << 20, n = 0;
        *out = calloc(1, cap + 1);
        if (f) {
            n = fread(*out, 1, cap, f);
            fclose(f);
        }
        (*out)[n] = '\0';
    }
    char rm[400];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir); // scratch, never worth keeping
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
    free(cmd);
    free(kubectl);
    free(kubeconfig);
    return WEXITSTATUS(rc);
}

int ts_kubectl(char **out, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return s_run(out, NULL, args);
}

cJSON *ts_kubectl_json(const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char full[4200], *out = NULL;
    snprintf(full, sizeof full, "%s -o json", args);
    cJSON *json = s_run(&out, NULL, full) == 0 ? cJSON_Parse(out) : NULL;
    free(out);
    return json;
}

int ts_kubectl_apply(const char *manifest)
{
    char *out = NULL;
    int rc = s_run(&out, manifest, "apply -f -");
    if (rc != 0)
        fprintf(stderr, "kubectl apply failed: %s\n", out);
    free(out);
    return rc;
}

static vmlet_bus_publisher_t *s_publisher(ts_stack_t *stack)
{
    if (stack->publisher)
        return stack->publisher;
    vmlet_bus_options_t bus = {.publish_endpoint = stack->broker.publish,
                               .subscribe_endpoint = stack->broker.subscribe,
                               .work_endpoint = stack->broker.work,
                               .hwm = 10000,
                               .heartbeat_ms = 200,
                               .source = "test/stack"};
    stack->metrics = vmlet_metrics_new();
    stack->publisher = vmlet_bus_publisher_new(&bus, stack->metrics, NULL, NULL);
    if (stack->publisher && vmlet_bus_publisher_wait_ready(stack->publisher, 10000, NULL) < 0)
        vmlet_bus_publisher_destroy(&stack->publisher);
    return stack->publisher;
}

static int s_publish(ts_stack_t *stack, vmlet_envelope_t *env)
{
    vmlet_bus_publisher_t *pub = s_publisher(stack);
    return pub ? vmlet_bus_publish(pub, env, NULL) : -1;
}

// Fills a container state from "waiting:R", "running" or "exited:N".
static void s_state(const char *text, Vmlet__ContainerState *st, Vmlet__ContainerStateWaiting *w,
                    Vmlet__ContainerStateRunning *r, Vmlet__ContainerStateTerminated *t)
{
    *st = (Vmlet__ContainerState)VMLET__CONTAINER_STATE__INIT;
    if (strncmp(text, "waiting:", 8) == 0) {
        *w = (Vmlet__ContainerStateWaiting)VMLET__CONTAINER_STATE_WAITING__INIT;
        w->reason = (char *)text + 8;
        st->state_case = VMLET__CONTAINER_STATE__STATE_WAITING;
        st->waiting = w;
    } else if (strcmp(text, "running") == 0) {
        *r = (Vmlet__ContainerStateRunning)VMLET__CONTAINER_STATE_RUNNING__INIT;
        PB_SET(r, started_unix_ms, (int64_t)time(NULL) * 1000);
        st->state_case = VMLET__CONTAINER_STATE__STATE_RUNNING;
        st->running = r;
    } else {
        *t = (Vmlet__ContainerStateTerminated)VMLET__CONTAINER_STATE_TERMINATED__INIT;
        PB_SET(t, exit_code, atoi(text + strlen("exited:")));
        PB_SET(t, started_unix_ms, ((int64_t)time(NULL) - 5) * 1000);
        PB_SET(t, finished_unix_ms, (int64_t)time(NULL) * 1000);
        st->state_case = VMLET__CONTAINER_STATE__STATE_TERMINATED;
        st->terminated = t;
    }
}

int ts_stack_report_vm(ts_stack_t *stack, const char *uid, Vmlet__VmState state, const char *pod_ip,
                       const ts_container_report_t *containers, size_t n)
{
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = (char *)uid;
    Vmlet__VmEvent vm = VMLET__VM_EVENT__INIT;
    vm.pod = &ref;
    vm.launcher_id = "test";
    vm.has_state = 1, vm.state = state;
    vm.pod_ip = (char *)pod_ip;
    vm.has_generation = 1, vm.generation = ++stack->vm_generation;
    Vmlet__ContainerStatus st[8], *list[8];
    Vmlet__ContainerState states[8], lasts[8];
    Vmlet__ContainerStateWaiting w[8];
    Vmlet__ContainerStateRunning r[8];
    Vmlet__ContainerStateTerminated t[8], lt[8];
    char ids[8][128];
    for (size_t i = 0; i < n && i < 8; i++) {
        st[i] = (Vmlet__ContainerStatus)VMLET__CONTAINER_STATUS__INIT;
        st[i].name = (char *)containers[i].name;
        s_state(containers[i].state, &states[i], &w[i], &r[i], &t[i]);
        st[i].state = &states[i];
        if (containers[i].last_exit >= 0) {
            s_state("exited:0", &lasts[i], &w[i], &r[i], &lt[i]);
            PB_SET(&lt[i], exit_code, containers[i].last_exit);
            st[i].last_state = &lasts[i];
        }
        st[i].has_restart_count = 1, st[i].restart_count = containers[i].restarts;
        st[i].image_id = "sha256:0123456789abcdef";
        snprintf(ids[i], sizeof ids[i], "vmlet://vm-%.8s/%s", uid, containers[i].name);
        st[i].container_id = ids[i];
        list[i] = &st[i];
    }
    vm.n_containers = n < 8 ? n : 8;
    vm.containers = list;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_VM_EVENT;
    env.vm_event = &vm;
    return s_publish(stack, &env);
}

static int s_report_probe(ts_stack_t *stack, const char *uid, const char *container,
                          const char *kind, bool ok, bool warning, const char *output)
{
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = (char *)uid;
    Vmlet__ProbeResult r = VMLET__PROBE_RESULT__INIT;
    r.pod = &ref;
    r.container = (char *)container;
    r.has_kind = 1;
    r.kind = strcmp(kind, "readiness") == 0  ? VMLET__PROBE_KIND__PROBE_KIND_READINESS
             : strcmp(kind, "liveness") == 0 ? VMLET__PROBE_KIND__PROBE_KIND_LIVENESS
                                             : VMLET__PROBE_KIND__PROBE_KIND_STARTUP;
    r.has_outcome = !warning;
    r.outcome = ok ? VMLET__PROBE_OUTCOME__PROBE_OUTCOME_SUCCESS
                   : VMLET__PROBE_OUTCOME__PROBE_OUTCOME_FAILURE;
    r.has_attempt = 1; // the attempt that brought the verdict
    r.attempt = r.outcome;
    PB_SET(&r, warning, warning);
    r.output = (char *)output;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_PROBE_RESULT;
    env.probe_result = &r;
    return s_publish(stack, &env);
}

int ts_stack_report_probe(ts_stack_t *stack, const char *uid, const char *container,
                          const char *kind, bool ok, const char *output)
{
    return s_report_probe(stack, uid, container, kind, ok, false, output);
}

int ts_stack_report_probe_warning(ts_stack_t *stack, const char *uid, const char *container,
                                  const char *kind, const char *output)
{
    return s_report_probe(stack, uid, container, kind, true, true, output);
}

int ts_stack_report_image_failed(ts_stack_t *stack, const char *image, const char *uid,
                                 const char *reason, const char *message)
{
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = (char *)uid;
    Vmlet__ImageFailed f = VMLET__IMAGE_FAILED__INIT;
    f.image = (char *)image;
    f.reason = (char *)reason;
    f.message = (char *)message;
    f.requested_by = uid ? &ref : NULL;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_IMAGE_FAILED;
    env.image_failed = &f;
    return s_publish(stack, &env);
}

static bool s_token_ready(void *arg)
{
    char *out = NULL;
    int rc = ts_kubectl(&out, "get serviceaccount default -n %s -o jsonpath={.secrets[0].name}",
                        (const char *)arg);
    bool ready = rc == 0 && out && out[0];
    free(out);
    return ready;
}

int ts_kubectl_namespace(const char *name)
{
    char manifest[256];
    snprintf(manifest, sizeof manifest, "apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n",
             name);
    if (ts_kubectl_apply(manifest) != 0)
        return -1;
    return ts_poll(s_token_ready, (void *)name, 30000) ? 0 : -1;
}
