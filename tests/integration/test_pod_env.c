// The pod's environment and names as a kubelet gives them, and its
// activeDeadlineSeconds, end to end on VMs (QEMU under TCG) behind the real
// API server: the Services' variables (<SVC>_SERVICE_HOST... of the
// namespace with enableServiceLinks, the master `kubernetes` Service's
// always; env overrides them and $(VAR) sees them); the kubelet-managed
// /etc/hosts (pod IP, hostname, hostname.subdomain FQDN, hostAliases; a
// container that mounts its own keeps it), resolv.conf from dnsPolicy None
// and dnsConfig, the hostname; a pod with activeDeadlineSeconds 20 ending
// Failed/DeadlineExceeded with the Event and its VM gone, and a deadline
// patched into a running pod ending it when due. Two VMs: "links" and
// "nolinks".
#include "stack.h"
#include "testsupport.h"
#include "ts_node.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 240000 // a first boot under TCG, images pulled
#define DEADLINE_S 20  // nolinks' activeDeadlineSeconds
#define OWN_HOSTS "# the container's own\n192.0.2.77\tmine.local\n"

typedef ts_node_t fixture_t;

static fixture_t *g;
static char *links_env, *nolinks_env; // each pod's environment as its container printed it

#define KUBECTL "%s --kubeconfig %s -n %s "
#define KARGS g->kubectl, g->kubeconfig, g->ns

// --- helpers ------------------------------------------------------------------------------

// One field of an object by path ("status.phase"; "[n]" an array element).
static const char *s_at(const cJSON *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = o;
    for (char *part = strtok(buf, "."); part && cur; part = strtok(NULL, "."))
        cur = part[0] == '[' ? cJSON_GetArrayItem(cur, atoi(part + 1))
                             : cJSON_GetObjectItemCaseSensitive(cur, part);
    static char text[64];
    if (cJSON_IsNumber(cur))
        return snprintf(text, sizeof text, "%d", cur->valueint), text;
    return cJSON_GetStringValue(cur);
}

// A pod field, or "" (malloc'd).
static char *s_pod_field(const char *pod, const char *path)
{
    cJSON *p = ts_kubectl_json("get pod -n %s %s", g->ns, pod);
    char *v = vmlet_xstrdup(p && s_at(p, path) ? s_at(p, path) : "");
    cJSON_Delete(p);
    return v;
}

static char *s_svc_ip(const char *ns, const char *name)
{
    cJSON *s = ts_kubectl_json("get service -n %s %s", ns, name);
    char *v = vmlet_xstrdup(s && s_at(s, "spec.clusterIP") ? s_at(s, "spec.clusterIP") : "");
    cJSON_Delete(s);
    return v;
}

typedef struct {
    const char *pod, *container;
    char **out;
} logs_t;

// The container printed its environment through to END-ENV.
static bool s_env_printed(void *arg)
{
    logs_t *l = arg;
    char *out = NULL;
    ts_sh(&out, KUBECTL "logs %s -c %s", KARGS, l->pod, l->container);
    if (strstr(out, "END-ENV\n")) {
        *l->out = out;
        return true;
    }
    free(out);
    return false;
}

// NAME's value in `env` output, or NULL (malloc'd).
static char *s_var(const char *env, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = env; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, name, n) == 0 && line[n] == '=')
            return vmlet_xstrndup(line + n + 1, strcspn(line + n + 1, "\n"));
    return NULL;
}

#define EXPECT_VAR(env, name, want)                                                           \
    do {                                                                                      \
        char *got_ = s_var((env), (name));                                                    \
        if (!got_ || strcmp(got_, (want)) != 0)                                               \
            fail_msg("%s=%s, want %s; the environment:\n%s", (name), got_ ? got_ : "(unset)", \
                     (want), (env));                                                          \
        free(got_);                                                                           \
    } while (0)

#define EXPECT_UNSET(env, name)                                                               \
    do {                                                                                      \
        char *got_ = s_var((env), (name));                                                    \
        if (got_)                                                                             \
            fail_msg("%s=%s, want it unset", (name), got_);                                   \
    } while (0)

typedef struct {
    const char *pod;
    const char *phase;
} phase_t;

static bool s_phase_is(void *arg)
{
    phase_t *w = arg;
    char *phase = s_pod_field(w->pod, "status.phase");
    bool ok = strcmp(phase, w->phase) == 0;
    free(phase);
    return ok;
}

static bool s_vm_gone(void *arg)
{
    char *cmd = vmlet_xasprintf("pgrep -f '[q]emu-system.*%s' >/dev/null", (const char *)arg);
    bool gone = system(cmd) != 0;
    free(cmd);
    return gone;
}

static bool s_all_terminated(void *arg)
{
    cJSON *p = ts_kubectl_json("get pod -n %s %s", g->ns, (const char *)arg);
    const cJSON *c;
    int n = 0, terminated = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cJSON_GetObjectItem(p, "status"), "containerStatuses"))
    {
        n++;
        terminated += cJSON_GetObjectItem(cJSON_GetObjectItem(c, "state"), "terminated") != NULL;
    }
    cJSON_Delete(p);
    return n > 0 && terminated == n;
}

// The pod's DeadlineExceeded Event (NULL if none yet); caller frees.
static cJSON *s_deadline_event(const char *pod)
{
    cJSON *list = ts_kubectl_json(
        "get events -n %s --field-selector involvedObject.name=%s,reason=DeadlineExceeded",
        g->ns, pod);
    cJSON *first = list ? cJSON_DetachItemFromArray(cJSON_GetObjectItem(list, "items"), 0) : NULL;
    cJSON_Delete(list);
    return first;
}

static bool s_has_deadline_event(void *arg)
{
    cJSON *e = s_deadline_event(arg);
    cJSON_Delete(e);
    return e != NULL;
}

// The pod ended as the kubelet ends it past its deadline: Failed with the
// reason and message, the Event (not before startTime + deadline), every
// container terminated, the VM gone.
static void s_expect_deadline_end(const char *pod, int64_t deadline_s, int timeout_ms)
{
    phase_t failed = {pod, "Failed"};
    if (!ts_poll(s_phase_is, &failed, timeout_ms)) {
        char *out = NULL;
        ts_sh(&out, KUBECTL "get pod %s -o yaml", KARGS, pod);
        fail_msg("pod %s never failed:\n%s", pod, out);
    }
    char *reason = s_pod_field(pod, "status.reason"), *message = s_pod_field(pod, "status.message");
    assert_string_equal(reason, "DeadlineExceeded");
    assert_string_equal(message, "Pod was active on the node longer than the specified deadline");
    free(reason);
    free(message);
    assert_true(ts_poll(s_has_deadline_event, (void *)pod, 30000));
    cJSON *e = s_deadline_event(pod);
    assert_string_equal(s_at(e, "type"), "Normal");
    assert_string_equal(s_at(e, "message"),
                        "Pod was active on the node longer than the specified deadline");
    char *start_text = s_pod_field(pod, "status.startTime");
    int64_t start, when;
    assert_int_equal(vmlet_parse_rfc3339(start_text, &start), 0);
    assert_int_equal(vmlet_parse_rfc3339(s_at(e, "firstTimestamp"), &when), 0);
    print_message("%s: started %s, DeadlineExceeded %lld s later (deadline %lld s)\n", pod,
                  start_text, (long long)(when - start), (long long)deadline_s);
    assert_true(when - start >= deadline_s); // not early
    assert_true(when - start <= deadline_s + 10);
    free(start_text);
    cJSON_Delete(e);
    // Its containers are killed (Failed came first, as on a kubelet; the
    // grace period is 1 s and sleep as PID 1 ignores SIGTERM: SIGKILL) and
    // its VM goes, while the pod stays.
    if (!ts_poll(s_all_terminated, (void *)pod, 30000)) {
        char *out = NULL;
        ts_sh(&out, KUBECTL "get pod %s -o yaml", KARGS, pod);
        fail_msg("pod %s: containers not all terminated:\n%s", pod, out);
    }
    char *uid = s_pod_field(pod, "metadata.uid");
    assert_true(ts_poll(s_vm_gone, uid, 30000));
    char *code = s_pod_field(pod, "status.containerStatuses.[0].state.terminated.exitCode");
    assert_string_equal(code, "137");
    free(code);
    free(uid);
}

// --- setup -----------------------------------------------------------------------------

static int setup(void **state)
{
    (void)state;
    g = calloc(1, sizeof *g);
    assert_int_equal(ts_node_start(g, "podenv", NULL), 0);
    char manifest[6000];
    // Services of the namespace: one with a cluster IP and two named ports,
    // one headless (no variables); a ConfigMap with a hosts file of its own.
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: Service\nmetadata: {name: my-front-end, namespace: %s}\n"
             "spec:\n  ports:\n  - {name: http, port: 8080, protocol: TCP}\n"
             "  - {name: dns-udp, port: 53, protocol: UDP}\n---\n"
             "apiVersion: v1\nkind: Service\nmetadata: {name: headless, namespace: %s}\n"
             "spec: {clusterIP: None, ports: [{port: 80}]}\n---\n"
             "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: own-hosts, namespace: %s}\n"
             "data:\n  hosts: |\n    # the container's own\n    192.0.2.77\tmine.local\n",
             g->ns, g->ns, g->ns);
    assert_int_equal(ts_kubectl_apply(manifest), 0);
    // links: service links on, its own names and DNS; "own" mounts /etc/hosts.
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: Pod\nmetadata: {name: links, namespace: %s}\n"
             "spec:\n  nodeName: %s\n  terminationGracePeriodSeconds: 1\n"
             "  hostname: db\n  subdomain: backend\n"
             "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [192.0.2.53]\n"
             "    searches: [a.example, b.example]\n"
             "    options: [{name: ndots, value: '2'}, {name: edns0}]\n"
             "  hostAliases: [{ip: 192.0.2.10, hostnames: [foo.local, bar.local]}]\n"
             "  containers:\n"
             "  - name: app\n    image: %s\n"
             "    command: [sh, -c, 'env; echo END-ENV; exec sleep 100000']\n"
             "    env:\n    - {name: MY_FRONT_END_SERVICE_PORT, value: '9999'}\n"
             "    - {name: FRONT_URL, value: "
             "'http://$(MY_FRONT_END_SERVICE_HOST):$(MY_FRONT_END_SERVICE_PORT_HTTP)/'}\n"
             "  - name: own\n    image: %s\n    command: [sleep, '100000']\n"
             "    volumeMounts: [{name: hosts, mountPath: /etc/hosts, subPath: hosts}]\n"
             "  volumes: [{name: hosts, configMap: {name: own-hosts}}]\n",
             g->ns, g->stack.node, g->busybox, g->busybox);
    assert_int_equal(ts_node_run_pod(g, "links", 2, WAIT_MS, manifest), 0);
    logs_t l = {"links", "app", &links_env};
    assert_true(ts_poll(s_env_printed, &l, 30000));
    // nolinks: no service links, and 20 s to live. Its image is in place
    // by now, so it runs well within them.
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: Pod\nmetadata: {name: nolinks, namespace: %s}\n"
             "spec:\n  nodeName: %s\n  terminationGracePeriodSeconds: 1\n"
             "  enableServiceLinks: false\n  activeDeadlineSeconds: %d\n"
             "  containers:\n  - name: app\n    image: %s\n"
             "    command: [sh, -c, 'env; echo END-ENV; exec sleep 100000']\n",
             g->ns, g->stack.node, DEADLINE_S, g->busybox);
    assert_int_equal(ts_kubectl_apply(manifest), 0);
    l = (logs_t){"nolinks", "app", &nolinks_env};
    if (!ts_poll(s_env_printed, &l, DEADLINE_S * 1000)) {
        char *out = NULL;
        ts_sh(&out, KUBECTL "get pod nolinks -o yaml", KARGS);
        fail_msg("nolinks did not run within its %d s:\n%s", DEADLINE_S, out);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_node_stop(g);
    free(g);
    free(links_env);
    free(nolinks_env);
    return 0;
}

// --- the Services' variables -----------------------------------------------------------------

static void test_service_links(void **state)
{
    (void)state;
    char *ip = s_svc_ip(g->ns, "my-front-end"), *master = s_svc_ip("default", "kubernetes");
    assert_true(*ip && *master);
    char url[100], url53[100], front[120];
    snprintf(url, sizeof url, "tcp://%s:8080", ip);
    snprintf(url53, sizeof url53, "udp://%s:53", ip);
    snprintf(front, sizeof front, "http://%s:8080/", ip);
    const char *env = links_env;
    EXPECT_VAR(env, "MY_FRONT_END_SERVICE_HOST", ip);
    EXPECT_VAR(env, "MY_FRONT_END_SERVICE_PORT", "9999"); // the container's env wins
    EXPECT_VAR(env, "MY_FRONT_END_SERVICE_PORT_HTTP", "8080");
    EXPECT_VAR(env, "MY_FRONT_END_SERVICE_PORT_DNS_UDP", "53");
    EXPECT_VAR(env, "MY_FRONT_END_PORT", url);
    EXPECT_VAR(env, "MY_FRONT_END_PORT_8080_TCP", url);
    EXPECT_VAR(env, "MY_FRONT_END_PORT_8080_TCP_PROTO", "tcp");
    EXPECT_VAR(env, "MY_FRONT_END_PORT_8080_TCP_PORT", "8080");
    EXPECT_VAR(env, "MY_FRONT_END_PORT_8080_TCP_ADDR", ip);
    EXPECT_VAR(env, "MY_FRONT_END_PORT_53_UDP", url53);
    EXPECT_VAR(env, "MY_FRONT_END_PORT_53_UDP_PROTO", "udp");
    EXPECT_VAR(env, "FRONT_URL", front); // $(VAR) sees them
    EXPECT_UNSET(env, "HEADLESS_SERVICE_HOST");
    // The master's, always.
    EXPECT_VAR(env, "KUBERNETES_SERVICE_HOST", master);
    EXPECT_VAR(env, "KUBERNETES_SERVICE_PORT", "443");
    EXPECT_VAR(env, "KUBERNETES_SERVICE_PORT_HTTPS", "443");
    snprintf(url, sizeof url, "tcp://%s:443", master);
    EXPECT_VAR(env, "KUBERNETES_PORT", url);
    EXPECT_VAR(env, "HOSTNAME", "db");
    // enableServiceLinks: false: the master's only.
    env = nolinks_env;
    EXPECT_VAR(env, "KUBERNETES_SERVICE_HOST", master);
    EXPECT_VAR(env, "KUBERNETES_PORT_443_TCP_ADDR", master);
    EXPECT_UNSET(env, "MY_FRONT_END_SERVICE_HOST");
    EXPECT_UNSET(env, "MY_FRONT_END_PORT");
    free(ip);
    free(master);
}

// --- names: /etc/hosts, resolv.conf, the hostname ---------------------------------------

static void test_hosts_dns_and_hostname(void **state)
{
    (void)state;
    char *ip = s_pod_field("links", "status.podIP"), *out = NULL;
    assert_true(*ip);
    assert_int_equal(ts_sh(&out, KUBECTL "exec links -c app -- cat /etc/hosts", KARGS), 0);
    char want[400];
    snprintf(want, sizeof want, "\n%s\tdb.backend.%s.svc.cluster.local\tdb\n", ip, g->ns);
    if (!strstr(out, want) || strncmp(out, "# Kubernetes-managed hosts file.\n", 33) != 0 ||
        !strstr(out, "\n# Entries added by HostAliases.\n192.0.2.10\tfoo.local\tbar.local\n"))
        fail_msg("/etc/hosts:\n%s\nwant the pod's line%s and the hostAliases", out, want);
    free(out);
    assert_int_equal(ts_sh(&out, KUBECTL "exec links -c app -- cat /etc/resolv.conf", KARGS), 0);
    assert_string_equal(out, "search a.example b.example\nnameserver 192.0.2.53\n"
                             "options ndots:2 edns0\n");
    free(out);
    assert_int_equal(ts_sh(&out, KUBECTL "exec links -c app -- hostname", KARGS), 0);
    assert_string_equal(out, "db\n");
    free(out);
    // A container that mounts its own /etc/hosts keeps it (the rest as usual).
    assert_int_equal(ts_sh(&out, KUBECTL "exec links -c own -- cat /etc/hosts", KARGS), 0);
    assert_string_equal(out, OWN_HOSTS);
    free(out);
    assert_int_equal(ts_sh(&out, KUBECTL "exec links -c own -- cat /etc/resolv.conf", KARGS), 0);
    assert_non_null(strstr(out, "nameserver 192.0.2.53\n"));
    free(out);
    free(ip);
}

// --- activeDeadlineSeconds ---------------------------------------------------------------

static void test_deadline_from_the_start(void **state)
{
    (void)state;
    s_expect_deadline_end("nolinks", DEADLINE_S, 120000);
    // Killed, not restarted (restartPolicy Always would have).
    char *restarts = s_pod_field("nolinks", "status.containerStatuses.[0].restartCount");
    assert_string_equal(restarts, "0");
    free(restarts);
}

static void test_deadline_patched_into_a_running_pod(void **state)
{
    (void)state;
    phase_t running = {"links", "Running"};
    assert_true(s_phase_is(&running));
    char *start_text = s_pod_field("links", "status.startTime");
    int64_t start;
    assert_int_equal(vmlet_parse_rfc3339(start_text, &start), 0);
    free(start_text);
    // Due 12 s from now: counted from startTime, as on a kubelet.
    int64_t deadline = vmlet_unix_ms() / 1000 - start + 12;
    assert_int_equal(ts_sh(NULL,
                           KUBECTL "patch pod links -p '{\"spec\":{\"activeDeadlineSeconds\":%lld}}'",
                           KARGS, (long long)deadline),
                     0);
    s_expect_deadline_end("links", deadline, 120000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_service_links),
        cmocka_unit_test(test_hosts_dns_and_hostname),
        cmocka_unit_test(test_deadline_from_the_start),
        cmocka_unit_test(test_deadline_patched_into_a_running_pod),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
