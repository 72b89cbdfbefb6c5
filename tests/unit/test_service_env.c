// The Services' environment variables as the kubelet makes them
// (envvars.FromServices, getServiceEnvVarMap), from Service objects as the
// API server returns them; and how container_run puts them in a
// container's environment: first, overridden by env, visible to $(VAR),
// and a failed list keeping the container from starting.
#include "testsupport.h"

#include "container_run.h"
#include "service_env.h"

#include "vmlet/pb.h"

#include <string.h>

static const char *s_get(const service_env_t *env, const char *name)
{
    for (size_t i = 0; i < env->n; i++)
        if (strcmp(env->names[i], name) == 0)
            return env->values[i];
    return NULL;
}

#define SVC_FRONTEND                                                                      \
    "{\"metadata\":{\"name\":\"my-front-end\",\"namespace\":\"shop\"},\"spec\":{"           \
    "\"clusterIP\":\"10.0.0.11\",\"ports\":[{\"name\":\"http\",\"port\":8080,"              \
    "\"protocol\":\"TCP\"},{\"name\":\"dns-udp\",\"port\":53,\"protocol\":\"UDP\"}]}}"

static void test_one_service(void **state)
{
    (void)state;
    cJSON *svc = cJSON_Parse(SVC_FRONTEND);
    service_env_t env = {0};
    service_env_add_service(&env, svc);
    static const char *const want[][2] = {
        {"MY_FRONT_END_SERVICE_HOST", "10.0.0.11"},
        {"MY_FRONT_END_SERVICE_PORT", "8080"},
        {"MY_FRONT_END_SERVICE_PORT_HTTP", "8080"},
        {"MY_FRONT_END_SERVICE_PORT_DNS_UDP", "53"},
        {"MY_FRONT_END_PORT", "tcp://10.0.0.11:8080"},
        {"MY_FRONT_END_PORT_8080_TCP", "tcp://10.0.0.11:8080"},
        {"MY_FRONT_END_PORT_8080_TCP_PROTO", "tcp"},
        {"MY_FRONT_END_PORT_8080_TCP_PORT", "8080"},
        {"MY_FRONT_END_PORT_8080_TCP_ADDR", "10.0.0.11"},
        {"MY_FRONT_END_PORT_53_UDP", "udp://10.0.0.11:53"},
        {"MY_FRONT_END_PORT_53_UDP_PROTO", "udp"},
        {"MY_FRONT_END_PORT_53_UDP_PORT", "53"},
        {"MY_FRONT_END_PORT_53_UDP_ADDR", "10.0.0.11"},
    };
    assert_int_equal(env.n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < env.n; i++) { // and in the kubelet's order
        assert_string_equal(env.names[i], want[i][0]);
        assert_string_equal(env.values[i], want[i][1]);
    }
    service_env_clear(&env);
    assert_int_equal(env.n, 0);
    cJSON_Delete(svc);
}

static void test_what_gets_no_variables(void **state)
{
    (void)state;
    static const char *const services[] = {
        // headless, ExternalName (no cluster IP), no ports
        "{\"metadata\":{\"name\":\"headless\"},\"spec\":{\"clusterIP\":\"None\","
        "\"ports\":[{\"port\":80}]}}",
        "{\"metadata\":{\"name\":\"ext\"},\"spec\":{\"type\":\"ExternalName\","
        "\"externalName\":\"example.com\"}}",
        "{\"metadata\":{\"name\":\"noports\"},\"spec\":{\"clusterIP\":\"10.0.0.9\"}}",
    };
    for (size_t i = 0; i < sizeof services / sizeof services[0]; i++) {
        cJSON *svc = cJSON_Parse(services[i]);
        service_env_t env = {0};
        service_env_add_service(&env, svc);
        assert_int_equal(env.n, 0);
        cJSON_Delete(svc);
    }
}

static void test_unnamed_port_and_ipv6(void **state)
{
    (void)state;
    cJSON *svc = cJSON_Parse("{\"metadata\":{\"name\":\"v6\"},\"spec\":{\"clusterIP\":"
                             "\"fd00::a\",\"ports\":[{\"port\":443}]}}");
    service_env_t env = {0};
    service_env_add_service(&env, svc);
    assert_string_equal(s_get(&env, "V6_SERVICE_PORT"), "443");
    assert_string_equal(s_get(&env, "V6_PORT"), "tcp://[fd00::a]:443"); // net.JoinHostPort
    assert_string_equal(s_get(&env, "V6_PORT_443_TCP_ADDR"), "fd00::a");
    assert_null(s_get(&env, "V6_SERVICE_PORT_")); // no named-port variable for an unnamed one
    assert_int_equal(env.n, 7);
    service_env_clear(&env);
    cJSON_Delete(svc);
}

#define MASTER                                                                             \
    "[{\"metadata\":{\"name\":\"kubernetes\",\"namespace\":\"default\"},\"spec\":{"          \
    "\"clusterIP\":\"10.0.0.1\",\"ports\":[{\"name\":\"https\",\"port\":443}]}}]"

static void test_the_pods_map(void **state)
{
    (void)state;
    cJSON *master = cJSON_Parse(MASTER);
    cJSON *local = cJSON_Parse("[" SVC_FRONTEND ",{\"metadata\":{\"name\":\"api\"},\"spec\":{"
                               "\"clusterIP\":\"10.0.0.12\",\"ports\":[{\"port\":80}]}}]");
    // Links on: the namespace's Services and the master's, in name order.
    service_env_t env = {0};
    service_env_build(&env, master, local, true);
    assert_string_equal(s_get(&env, "KUBERNETES_SERVICE_HOST"), "10.0.0.1");
    assert_string_equal(s_get(&env, "KUBERNETES_SERVICE_PORT_HTTPS"), "443");
    assert_string_equal(s_get(&env, "KUBERNETES_PORT"), "tcp://10.0.0.1:443");
    assert_string_equal(s_get(&env, "API_SERVICE_HOST"), "10.0.0.12");
    assert_string_equal(s_get(&env, "MY_FRONT_END_SERVICE_HOST"), "10.0.0.11");
    assert_string_equal(env.names[0], "API_SERVICE_HOST");
    service_env_clear(&env);
    // Links off: only the master's.
    service_env_build(&env, master, local, false);
    assert_string_equal(s_get(&env, "KUBERNETES_SERVICE_HOST"), "10.0.0.1");
    assert_null(s_get(&env, "API_SERVICE_HOST"));
    assert_null(s_get(&env, "MY_FRONT_END_SERVICE_HOST"));
    assert_int_equal(env.n, 8);
    service_env_clear(&env);
    // A `kubernetes` Service of the pod's own namespace replaces the master's
    // (with links), and only Services named kubernetes count from default.
    cJSON *own = cJSON_Parse("[{\"metadata\":{\"name\":\"kubernetes\"},\"spec\":{"
                             "\"clusterIP\":\"10.0.0.99\",\"ports\":[{\"port\":1}]}}]");
    cJSON *other_default = cJSON_Parse(MASTER);
    cJSON_AddItemToArray(other_default,
                         cJSON_Parse("{\"metadata\":{\"name\":\"dns\"},\"spec\":{\"clusterIP\":"
                                     "\"10.0.0.10\",\"ports\":[{\"port\":53}]}}"));
    service_env_build(&env, other_default, own, true);
    assert_string_equal(s_get(&env, "KUBERNETES_SERVICE_HOST"), "10.0.0.99");
    assert_null(s_get(&env, "DNS_SERVICE_HOST"));
    service_env_clear(&env);
    service_env_build(&env, other_default, own, false);
    assert_string_equal(s_get(&env, "KUBERNETES_SERVICE_HOST"), "10.0.0.1");
    service_env_clear(&env);
    cJSON_Delete(own);
    cJSON_Delete(other_default);
    cJSON_Delete(master);
    cJSON_Delete(local);
}

// --- in a container's environment ------------------------------------------------------

typedef struct {
    bool fail;
    bool links_seen;
    int calls;
} fake_api_t;

static int s_services(void *ctx, const char *ns, bool links, service_env_t *env, vmlet_err_t *err)
{
    fake_api_t *api = ctx;
    api->calls++;
    api->links_seen = links;
    if (api->fail)
        return vmlet_err_set(err, "GET /api/v1/namespaces/%s/services: 403 Forbidden", ns);
    cJSON *master = cJSON_Parse(MASTER), *local = cJSON_Parse("[" SVC_FRONTEND "]");
    service_env_build(env, master, local, links);
    cJSON_Delete(master);
    cJSON_Delete(local);
    return 0;
}

static const char *s_env(const Vmlet__StartContainer *s, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < s->n_env; i++)
        if (strncmp(s->env[i], name, n) == 0 && s->env[i][n] == '=')
            return s->env[i] + n + 1;
    return NULL;
}

typedef struct {
    Vmlet__PodRef ref;
    Vmlet__PodSpec pod;
    Vmlet__Container c;
    Vmlet__Container *cs[1];
    Vmlet__ImageConfig img;
    char *cmd[1];
    Vmlet__EnvVar vars[2];
    Vmlet__EnvVar *var_ptrs[2];
    fake_api_t api;
    run_inputs_t in;
} pod_t;

static void s_pod(pod_t *p)
{
    memset(p, 0, sizeof *p);
    p->ref = (Vmlet__PodRef)VMLET__POD_REF__INIT;
    p->ref.uid = "uid-1", p->ref.namespace_ = "shop", p->ref.name = "web-0";
    p->pod = (Vmlet__PodSpec)VMLET__POD_SPEC__INIT;
    p->pod.pod = &p->ref;
    p->c = (Vmlet__Container)VMLET__CONTAINER__INIT;
    p->c.name = "app";
    p->cmd[0] = "sleep";
    p->c.command = p->cmd, p->c.n_command = 1;
    p->cs[0] = &p->c;
    p->pod.containers = p->cs, p->pod.n_containers = 1;
    p->img = (Vmlet__ImageConfig)VMLET__IMAGE_CONFIG__INIT;
    // env: one override of a Service variable, one reference to another.
    for (int i = 0; i < 2; i++) {
        p->vars[i] = (Vmlet__EnvVar)VMLET__ENV_VAR__INIT;
        p->vars[i].source_case = VMLET__ENV_VAR__SOURCE_VALUE;
        p->var_ptrs[i] = &p->vars[i];
    }
    p->vars[0].name = "MY_FRONT_END_SERVICE_PORT", p->vars[0].value = "9999";
    p->vars[1].name = "FRONT_URL", p->vars[1].value = "http://$(MY_FRONT_END_SERVICE_HOST):80";
    p->c.env = p->var_ptrs, p->c.n_env = 2;
    p->in = (run_inputs_t){.pod = &p->pod, .container = &p->c, .image = &p->img,
                           .pod_ip = "10.88.0.7", .hostname = "web-0",
                           .service_env = s_services, .fetch_ctx = &p->api};
}

static void test_in_the_container(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p);
    run_problem_t problem;
    vmlet_err_t err = {0};
    Vmlet__StartContainer *s = container_run_build(&p.in, &problem, &err);
    assert_non_null(s);
    assert_true(p.api.links_seen); // enableServiceLinks unset: true, as defaulted
    assert_string_equal(s_env(s, "MY_FRONT_END_SERVICE_HOST"), "10.0.0.11");
    assert_string_equal(s_env(s, "MY_FRONT_END_SERVICE_PORT"), "9999"); // env wins
    assert_string_equal(s_env(s, "FRONT_URL"), "http://10.0.0.11:80");  // $(VAR) sees them
    assert_string_equal(s_env(s, "KUBERNETES_SERVICE_PORT"), "443");
    vmlet__start_container__free_unpacked(s, NULL);
    // enableServiceLinks: false: the master's only.
    PB_SET(&p.pod, enable_service_links, false);
    s = container_run_build(&p.in, &problem, &err);
    assert_non_null(s);
    assert_false(p.api.links_seen);
    assert_null(s_env(s, "MY_FRONT_END_SERVICE_HOST"));
    assert_string_equal(s_env(s, "FRONT_URL"), "http://$(MY_FRONT_END_SERVICE_HOST):80");
    assert_string_equal(s_env(s, "KUBERNETES_SERVICE_HOST"), "10.0.0.1");
    vmlet__start_container__free_unpacked(s, NULL);
}

static void test_a_failed_list(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p);
    p.api.fail = true;
    run_problem_t problem;
    vmlet_err_t err = {0};
    assert_null(container_run_build(&p.in, &problem, &err));
    assert_string_equal(problem.reason, "CreateContainerConfigError");
    assert_true(problem.retryable);
    assert_string_equal(problem.message,
                        "failed to list services when setting up env vars: GET "
                        "/api/v1/namespaces/shop/services: 403 Forbidden");
    // Without an API server (no callback) a container has none, and starts.
    p.in.service_env = NULL;
    Vmlet__StartContainer *s = container_run_build(&p.in, &problem, &err);
    assert_non_null(s);
    assert_null(s_env(s, "KUBERNETES_SERVICE_HOST"));
    vmlet__start_container__free_unpacked(s, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_service),
        cmocka_unit_test(test_what_gets_no_variables),
        cmocka_unit_test(test_unnamed_port_and_ipv6),
        cmocka_unit_test(test_the_pods_map),
        cmocka_unit_test(test_in_the_container),
        cmocka_unit_test(test_a_failed_list),
    };
    return TS_RUN(tests);
}
