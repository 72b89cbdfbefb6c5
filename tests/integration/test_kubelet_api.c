// The kubelet API's front door, against the real control plane: TLS with
// the node's certificate, client certificates checked against the CA
// (none, or one from another CA: 401, as the kubelet answers), a
// self-signed certificate made and kept on first start, and the real
// kube-apiserver reaching it with its kubelet-client certificate for
// `kubectl logs` (answered here for a pod without a VM: no VMs boot in this
// test); /stats/summary and /metrics/resource rendered from the samples the
// launchers keep in Redis (written here as a launcher writes them).
#include "stack.h"
#include "testsupport.h"

#include "vmlet/pb.h"
#include "vmlet/pod_store.h"
#include "vmlet/proto/stats.pb-c.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    ts_stack_t stack;
    ts_service_t kapi;
    int port;
    char ns[64];
    char *ca, *client_cert, *client_key, *node_cert, *node_key;
} fixture_t;

static fixture_t *g;

static int s_start_kapi(ts_service_t *svc, int port, const char *const more[])
{
    char listen[64], cert[400], key[400], ca[400];
    snprintf(listen, sizeof listen, "--listen=127.0.0.1:%d", port);
    snprintf(cert, sizeof cert, "--tls-cert=%s", g->node_cert);
    snprintf(key, sizeof key, "--tls-key=%s", g->node_key);
    snprintf(ca, sizeof ca, "--client-ca=%s", g->ca);
    char node[120];
    snprintf(node, sizeof node, "--node-name=%s", g->stack.node);
    const char *args[12] = {listen, cert, key, ca, node};
    int n = 5;
    for (int i = 0; more && more[i] && n < 11; i++) {
        // A later --tls-cert= (even empty) wins over ours.
        args[n++] = more[i];
    }
    args[n] = NULL;
    return ts_stack_service(&g->stack, "kubelet-api", svc, args);
}

static int setup(void **state)
{
    (void)state;
    g = calloc(1, sizeof *g);
    char suffix[9];
    vmlet_random_hex(suffix, 4);
    char node[64];
    snprintf(node, sizeof node, "vmlet-kapi-%s", suffix);
    snprintf(g->ns, sizeof g->ns, "kapi-%s", suffix);
    g->ca = ts_bed_value("BED_CA");
    g->client_cert = ts_bed_value("BED_KUBELET_CLIENT_CERT");
    g->client_key = ts_bed_value("BED_KUBELET_CLIENT_KEY");
    g->node_cert = ts_bed_value("BED_NODE_CERT");
    g->node_key = ts_bed_value("BED_NODE_KEY");
    assert_non_null(g->ca);
    assert_int_equal(ts_stack_start(&g->stack, node), 0);
    g->port = ts_free_port();
    assert_int_equal(s_start_kapi(&g->kapi, g->port, NULL), 0);
    char kubelet_port[64];
    snprintf(kubelet_port, sizeof kubelet_port, "--kubelet-port=%d", g->port);
    const char *const watcher[] = {kubelet_port, NULL};
    assert_int_equal(ts_stack_service(&g->stack, "k8s-watcher", &g->stack.watcher, watcher), 0);
    // No launcher: the API server reaches a node's kubelet port whether the
    // node is Ready or not, and no VM boots here.
    assert_int_equal(ts_kubectl_namespace(g->ns), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_kubectl(NULL, "delete namespace %s --wait=false", g->ns);
    ts_kubectl(NULL, "delete node %s --wait=false", g->stack.node);
    ts_stack_service_stop(&g->kapi);
    ts_stack_stop(&g->stack);
    free(g->ca);
    free(g->client_cert);
    free(g->client_key);
    free(g->node_cert);
    free(g->node_key);
    free(g);
    return 0;
}

// curl's answer: "<status> <body>" into out. cert/key NULL: no client certificate.
static void s_curl(int port, const char *path, const char *cert, const char *key, bool verify,
                   char *out, size_t cap)
{
    char cmd[2000], client[900] = "";
    out[0] = '\0';
    if (cert)
        snprintf(client, sizeof client, "--cert %s --key %s", cert, key);
    snprintf(cmd, sizeof cmd,
             "curl -sS --max-time 10 %s %s %s -w ' %%{http_code}' 'https://127.0.0.1:%d%s' 2>&1",
             verify ? "--cacert" : "-k", verify ? g->ca : "", client, port, path);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    pclose(p);
}

static void test_client_certificates(void **state)
{
    (void)state;
    char out[4096];
    // The API server's kubelet-client certificate: in.
    s_curl(g->port, "/healthz", g->client_cert, g->client_key, true, out, sizeof out);
    assert_string_equal(out, "ok 200");
    // None: the kubelet's 401, on every path, before any routing.
    s_curl(g->port, "/healthz", NULL, NULL, true, out, sizeof out);
    assert_string_equal(out, "Unauthorized\n 401");
    s_curl(g->port, "/containerLogs/default/x/app", NULL, NULL, true, out, sizeof out);
    assert_non_null(strstr(out, " 401"));
    s_curl(g->port, "/exec/default/x/app?command=true&stdout=1", NULL, NULL, true, out, sizeof out);
    assert_non_null(strstr(out, " 401"));
    // One from another CA: refused too.
    char *dir = ts_tempdir("vmlet-kapi-ca"), cmd[2000];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt "
             "-days 1 -subj /CN=other-ca >/dev/null 2>&1 && openssl req -newkey rsa:2048 -nodes "
             "-keyout c.key -out c.csr -subj /CN=kube-apiserver-kubelet-client >/dev/null 2>&1 && "
             "openssl x509 -req -in c.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out c.crt "
             "-days 1 >/dev/null 2>&1",
             dir);
    assert_int_equal(system(cmd), 0);
    char cert[400], key[400];
    snprintf(cert, sizeof cert, "%s/c.crt", dir);
    snprintf(key, sizeof key, "%s/c.key", dir);
    s_curl(g->port, "/containerLogs/default/x/app", cert, key, true, out, sizeof out);
    assert_non_null(strstr(out, "Unauthorized"));
    assert_non_null(strstr(out, " 401"));
    double refused = ts_service_metric(&g->kapi, "vmlet_kubelet_api_unauthenticated_total");
    for (int i = 0; i < 30 && refused < 4; i++) { // published each second
        usleep(100 * 1000);
        refused = ts_service_metric(&g->kapi, "vmlet_kubelet_api_unauthenticated_total");
    }
    assert_true(refused >= 4);
    ts_remove_dir(dir);
    free(dir);
}

static void test_self_signed_on_first_start(void **state)
{
    (void)state;
    char dir_flag[400];
    char *dir = ts_tempdir("vmlet-kapi-state");
    snprintf(dir_flag, sizeof dir_flag, "--state-dir=%s/kapi", dir);
    const char *const own[] = {"--tls-cert=", "--tls-key=", dir_flag, NULL};
    ts_service_t second = {0};
    int port = ts_free_port();
    assert_int_equal(s_start_kapi(&second, port, own), 0);
    char out[4096], path[500];
    s_curl(port, "/healthz", g->client_cert, g->client_key, false, out, sizeof out);
    assert_string_equal(out, "ok 200");
    // The key is the service's alone, and kept for the next start.
    struct stat st;
    snprintf(path, sizeof path, "%s/kapi/kubelet-api.key", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path,
             "openssl x509 -in %s/kapi/kubelet-api.crt -noout -ext subjectAltName | grep -q "
             "127.0.0.1",
             dir);
    assert_int_equal(system(path), 0);
    ts_stack_service_stop(&second);
    ts_remove_dir(dir);
    free(dir);
}

// The real API server dials the node's advertised port with its
// kubelet-client certificate: what our server answers reaches kubectl.
static void test_the_api_server_reaches_it(void **state)
{
    (void)state;
    char manifest[1200];
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: Pod\nmetadata: {name: quiet, namespace: %s}\nspec:\n"
             "  nodeName: %s\n"
             "  tolerations: [{key: virtual-kubelet.io/provider, operator: Exists}]\n"
             "  containers: [{name: app, image: busybox}]\n",
             g->ns, g->stack.node);
    assert_int_equal(ts_kubectl_apply(manifest), 0);
    // Until the watcher has stored the pod, the answer is "does not exist"
    // (a 404, which the API server turns into its own NotFound); then the
    // pod is known and has no VM (there is no launcher here): the kubelet's
    // 400 for a container not started, passed on word for word.
    char *out = NULL;
    bool answered = false;
    for (int i = 0; i < 100 && !answered; i++) {
        free(out);
        out = NULL;
        ts_kubectl(&out, "logs -n %s quiet 2>&1", g->ns);
        answered = out && strstr(out, "container \"app\" in pod \"quiet\" is waiting to start: "
                                      "ContainerCreating");
        if (!answered)
            usleep(200 * 1000);
    }
    if (!answered)
        fail_msg("kubectl logs said: %s", out ? out : "(nothing)");
    free(out);
    double logs = ts_service_metric(&g->kapi, "vmlet_kubelet_api_requests_total{route=\"logs\"}");
    for (int i = 0; i < 30 && logs < 1; i++) {
        usleep(100 * 1000);
        logs = ts_service_metric(&g->kapi, "vmlet_kubelet_api_requests_total{route=\"logs\"}");
    }
    assert_true(logs >= 1);
}

// A pod and its VM's sample, as k8s-watcher and vm-launcher store them.
static void s_store_stats(const char *uid, const char *name, uint64_t working_set)
{
    char url[200];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", g->stack.redis.password,
             g->stack.redis.port);
    vmlet_store_t *store = vmlet_store_new(url, NULL, NULL, NULL, NULL);
    Vmlet__PodRef ref = VMLET__POD_REF__INIT;
    ref.uid = (char *)uid, ref.namespace_ = g->ns, ref.name = (char *)name;
    Vmlet__PodSpec spec = VMLET__POD_SPEC__INIT;
    spec.pod = &ref;
    char hash[VMLET_POD_HASH_LEN];
    vmlet_pod_spec_hash(&spec, hash);
    assert_int_equal(vmlet_pod_store_put(store, &spec, hash, NULL), 0);
    Vmlet__CpuStats cpu = VMLET__CPU_STATS__INIT;
    PB_SET(&cpu, usage_core_nanoseconds, 2500000000ULL);
    PB_SET(&cpu, usage_nano_cores, 150000000ULL);
    Vmlet__MemoryStats mem = VMLET__MEMORY_STATS__INIT;
    PB_SET(&mem, working_set_bytes, working_set);
    PB_SET(&mem, usage_bytes, working_set + 4096);
    Vmlet__ContainerStats app = VMLET__CONTAINER_STATS__INIT, *apps[] = {&app};
    app.name = "app", app.cpu = &cpu, app.memory = &mem;
    PB_SET(&app, start_unix_ms, vmlet_unix_ms() - 60000);
    Vmlet__NetworkInterfaceStats net = VMLET__NETWORK_INTERFACE_STATS__INIT;
    net.name = "eth0";
    PB_SET(&net, rx_bytes, 1234);
    Vmlet__PodStats s = VMLET__POD_STATS__INIT;
    s.uid = (char *)uid, s.namespace_ = g->ns, s.name = (char *)name;
    PB_SET(&s, sampled_unix_ms, vmlet_unix_ms());
    PB_SET(&s, start_unix_ms, vmlet_unix_ms() - 61000);
    s.cpu = &cpu, s.memory = &mem, s.network = &net;
    s.containers = apps, s.n_containers = 1;
    size_t len = vmlet__pod_stats__get_packed_size(&s);
    uint8_t *bytes = vmlet_xmalloc(len);
    vmlet__pod_stats__pack(&s, bytes);
    freeReplyObject(vmlet_store_command(store, NULL, "SET vmlet:stats:%s %b", uid, bytes, len));
    free(bytes);
    vmlet_store_destroy(&store);
}

static void test_stats_in_the_kubelets_shapes(void **state)
{
    (void)state;
    s_store_stats("uid-stats-a", "busy", 64ULL << 20);
    s_store_stats("uid-stats-b", "idle", 8ULL << 20);
    char *out = vmlet_xmalloc(1 << 20);
    s_curl(g->port, "/stats/summary", g->client_cert, g->client_key, true, out, 1 << 20);
    char *code = strrchr(out, ' ');
    assert_string_equal(code, " 200");
    *code = '\0';
    cJSON *summary = cJSON_Parse(out);
    assert_non_null(summary);
    const cJSON *node = cJSON_GetObjectItem(summary, "node");
    assert_string_equal(cJSON_GetObjectItem(node, "nodeName")->valuestring, g->stack.node);
    // The node's working set is its pods' sum.
    const cJSON *ws = cJSON_GetObjectItem(cJSON_GetObjectItem(node, "memory"), "workingSetBytes");
    assert_true(ws->valuedouble == (double)(72ULL << 20));
    int seen = 0;
    const cJSON *pod;
    cJSON_ArrayForEach(pod, cJSON_GetObjectItem(summary, "pods"))
    {
        const cJSON *ref = cJSON_GetObjectItem(pod, "podRef");
        if (strcmp(cJSON_GetObjectItem(ref, "name")->valuestring, "busy") != 0)
            continue;
        seen++;
        assert_string_equal(cJSON_GetObjectItem(ref, "namespace")->valuestring, g->ns);
        const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(pod, "containers"), 0);
        assert_string_equal(cJSON_GetObjectItem(c0, "name")->valuestring, "app");
        const cJSON *cpu = cJSON_GetObjectItem(c0, "cpu");
        assert_true(cJSON_GetObjectItem(cpu, "usageNanoCores")->valuedouble == 150000000.0);
        assert_true(
            cJSON_GetObjectItem(cJSON_GetObjectItem(pod, "network"), "rxBytes")->valuedouble ==
            1234.0);
    }
    assert_int_equal(seen, 1);
    cJSON_Delete(summary);
    s_curl(g->port, "/metrics/resource", g->client_cert, g->client_key, true, out, 1 << 20);
    char want[300];
    snprintf(want, sizeof want,
             "container_memory_working_set_bytes{container=\"app\",namespace=\"%s\",pod=\"busy\"} "
             "67108864 ",
             g->ns);
    if (!strstr(out, want) || !strstr(out, "container_cpu_usage_seconds_total{container=\"app\"") ||
        !strstr(out, "node_memory_working_set_bytes 75497472 ") || !strstr(out, "scrape_error 0"))
        fail_msg("/metrics/resource:\n%s", out);
    // /pods: the node's pods as a PodList.
    s_curl(g->port, "/pods", g->client_cert, g->client_key, true, out, 1 << 20);
    snprintf(want, sizeof want, "\"name\":\"busy\",\"namespace\":\"%s\",\"uid\":\"uid-stats-a\"",
             g->ns);
    if (!strstr(out, "\"kind\":\"PodList\"") || !strstr(out, want))
        fail_msg("/pods:\n%s", out);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_certificates),
        cmocka_unit_test(test_self_signed_on_first_start),
        cmocka_unit_test(test_the_api_server_reaches_it),
        cmocka_unit_test(test_stats_in_the_kubelets_shapes),
    };
    if (getenv("VMLET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMLET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
