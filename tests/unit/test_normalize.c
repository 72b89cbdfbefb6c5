// Pods into normalised specs: defaults, every supported part, references
// resolved or kept, and each kind of bad input turned into a problem in
// the kubelet's words. ConfigMaps and Secrets come from a table standing
// in for the API server (the resolver is the normaliser's seam).
#include "testsupport.h"

#include "normalize.h"
#include "vmlet/pod_store.h"

#include <stdio.h>
#include <string.h>

// --- the resolver's table ---------------------------------------------------------

typedef struct {
    cJSON *objects; // {"configmaps/name": {...data}, "secrets/name": {...}}
    bool unreachable;
} fake_api_t;

static resolve_result_t s_lookup(fake_api_t *api, const char *kind, const char *name,
                                 const cJSON **data, vmlet_err_t *err)
{
    if (api->unreachable) {
        vmlet_err_set(err, "connection refused");
        return RESOLVE_ERROR;
    }
    char key[200];
    snprintf(key, sizeof key, "%s/%s", kind, name);
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(api->objects, key);
    *data = obj;
    return obj ? RESOLVE_FOUND : RESOLVE_MISSING;
}

static resolve_result_t s_cm(void *arg, const char *ns, const char *name, const cJSON **data,
                             vmlet_err_t *err)
{
    (void)ns;
    return s_lookup(arg, "configmaps", name, data, err);
}

static resolve_result_t s_secret(void *arg, const char *ns, const char *name, const cJSON **data,
                                 vmlet_err_t *err)
{
    (void)ns;
    return s_lookup(arg, "secrets", name, data, err);
}

static fake_api_t api;
static const pod_resolver_t resolver = {s_cm, s_secret, &api};

static int setup(void **state)
{
    (void)state;
    api.unreachable = false;
    api.objects = cJSON_Parse("{\"configmaps/settings\":{\"MODE\":\"fast\",\"LEVEL\":\"3\","
                              "\"bad name\":\"x\"},"
                              "\"secrets/db\":{\"password\":\"c2VjcmV0LXZhbHVlLTQy\"}}");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cJSON_Delete(api.objects);
    return 0;
}

// Normalises a pod written as JSON with single quotes (for readability).
static Vmlet__PodSpec *s_norm(const char *json_single_quoted, bool *transient, vmlet_err_t *err)
{
    char *json = strdup(json_single_quoted);
    for (char *p = json; *p; p++)
        if (*p == '\'')
            *p = '"';
    cJSON *pod = cJSON_Parse(json);
    if (!pod)
        fail_msg("bad test JSON: %s", json);
    Vmlet__PodSpec *spec = pod_normalize(pod, &resolver, transient, err);
    cJSON_Delete(pod);
    free(json);
    return spec;
}

#define META "'metadata':{'uid':'u1','name':'web','namespace':'default','resourceVersion':'7'," \
             "'labels':{'app':'web'},'annotations':{'a':'b'}}"

static Vmlet__PodSpec *s_ok(const char *spec_json)
{
    char pod[8192];
    snprintf(pod, sizeof pod, "{" META ",'spec':%s}", spec_json);
    bool transient;
    vmlet_err_t err = {0};
    Vmlet__PodSpec *spec = s_norm(pod, &transient, &err);
    if (!spec)
        fail_msg("normalise failed: %s", err.msg);
    return spec;
}

static const char *s_problem(const Vmlet__ConfigProblem *p)
{
    return p ? p->message : "(none)";
}

// --- cases ---------------------------------------------------------------------------

static void test_defaults_and_basics(void **state)
{
    (void)state;
    Vmlet__PodSpec *s = s_ok(
        "{'containers':[{'name':'app','image':'busybox','command':['sh','-c'],'args':['httpd -f'],"
        "'workingDir':'/srv','ports':[{'name':'http','containerPort':80}],"
        "'resources':{'requests':{'cpu':'250m','memory':'64Mi'},'limits':{'cpu':'1','memory':'128Mi'}},"
        "'securityContext':{'runAsUser':1000,'runAsGroup':2000},"
        "'readinessProbe':{'httpGet':{'path':'/','port':'http'},'periodSeconds':5}}],"
        "'hostname':'h','subdomain':'s'}");
    assert_string_equal(s->pod->uid, "u1");
    assert_string_equal(s->restart_policy, "Always");
    assert_int_equal(s->termination_grace_period_seconds, 30);
    assert_string_equal(s->hostname, "h");
    assert_string_equal(s->subdomain, "s");
    assert_int_equal(s->n_labels, 1);
    assert_string_equal(s->labels[0]->key, "app");
    assert_int_equal(s->n_annotations, 1);
    const Vmlet__Container *c = s->containers[0];
    assert_null(c->problem);
    assert_string_equal(c->image_normalized, "docker.io/library/busybox:latest");
    assert_int_equal(c->n_command, 2);
    assert_string_equal(c->args[0], "httpd -f");
    assert_string_equal(c->working_dir, "/srv");
    assert_string_equal(c->ports[0]->protocol, "TCP");
    assert_int_equal(c->resources->cpu_request_millis, 250);
    assert_int_equal(c->resources->cpu_limit_millis, 1000);
    assert_int_equal(c->resources->memory_request_bytes, 64 << 20);
    assert_int_equal(c->resources->memory_limit_bytes, 128 << 20);
    assert_int_equal(c->security_context->run_as_user, 1000);
    assert_int_equal(c->security_context->run_as_group, 2000);
    assert_int_equal(c->readiness_probe->period_seconds, 5);
    assert_int_equal(c->readiness_probe->failure_threshold, 3); // defaulted
    assert_string_equal(c->readiness_probe->http_get->port->name, "http");
    assert_string_equal(c->termination_message_path, "/dev/termination-log");
    pod_spec_free(&s);
    assert_null(s);
}

// What the launcher needs for the pod's names and environment: dnsConfig
// and hostAliases as given, enableServiceLinks defaulted to true.
static void test_dns_hosts_and_service_links(void **state)
{
    (void)state;
    Vmlet__PodSpec *s = s_ok(
        "{'containers':[{'name':'app','image':'busybox'}],'hostname':'db','subdomain':'back',"
        "'dnsPolicy':'None','dnsConfig':{'nameservers':['192.0.2.53'],'searches':['a.example'],"
        "'options':[{'name':'ndots','value':'2'},{'name':'edns0'}]},"
        "'hostAliases':[{'ip':'192.0.2.10','hostnames':['foo.local','bar.local']}]}");
    assert_string_equal(s->dns_policy, "None");
    assert_string_equal(s->hostname, "db");
    assert_string_equal(s->subdomain, "back");
    assert_int_equal(s->dns_config->n_nameservers, 1);
    assert_string_equal(s->dns_config->nameservers[0], "192.0.2.53");
    assert_string_equal(s->dns_config->searches[0], "a.example");
    assert_int_equal(s->dns_config->n_options, 2);
    assert_string_equal(s->dns_config->options[0]->value, "2");
    assert_null(s->dns_config->options[1]->value); // no value: "edns0", not "edns0:"
    assert_int_equal(s->n_host_aliases, 1);
    assert_string_equal(s->host_aliases[0]->ip, "192.0.2.10");
    assert_int_equal(s->host_aliases[0]->n_hostnames, 2);
    assert_string_equal(s->host_aliases[0]->hostnames[1], "bar.local");
    assert_true(s->has_enable_service_links && s->enable_service_links);
    pod_spec_free(&s);
    s = s_ok("{'containers':[{'name':'app','image':'busybox'}],'enableServiceLinks':false}");
    assert_true(s->has_enable_service_links && !s->enable_service_links);
    assert_null(s->dns_config);
    assert_int_equal(s->n_host_aliases, 0);
    pod_spec_free(&s);
}

static void test_env_resolution(void **state)
{
    (void)state;
    Vmlet__PodSpec *s = s_ok(
        "{'containers':[{'name':'app','image':'busybox','env':["
        "{'name':'PLAIN','value':'v'},"
        "{'name':'MODE','valueFrom':{'configMapKeyRef':{'name':'settings','key':'MODE'}}},"
        "{'name':'GONE','valueFrom':{'configMapKeyRef':{'name':'settings','key':'nope','optional':true}}},"
        "{'name':'PW','valueFrom':{'secretKeyRef':{'name':'db','key':'password'}}},"
        "{'name':'IP','valueFrom':{'fieldRef':{'fieldPath':'status.podIP'}}},"
        "{'name':'MEM','valueFrom':{'resourceFieldRef':{'resource':'limits.memory'}}}],"
        "'envFrom':[{'configMapRef':{'name':'settings'},'prefix':'CFG_'},{'secretRef':{'name':'db'}}]}]}");
    const Vmlet__Container *c = s->containers[0];
    assert_null(c->problem);
    // PLAIN, MODE, PW, IP, MEM; envFrom keeps its sources in order, the
    // ConfigMap's keys resolved: CFG_MODE and CFG_LEVEL ("bad name" is skipped).
    assert_int_equal(c->n_env, 5);
    assert_string_equal(c->env[1]->value, "fast");
    assert_int_equal(c->env[2]->source_case, VMLET__ENV_VAR__SOURCE_SECRET_KEY);
    assert_string_equal(c->env[2]->secret_key->name, "db");
    assert_string_equal(c->env[2]->secret_key->key, "password");
    assert_string_equal(c->env[3]->field->field_path, "status.podIP");
    assert_string_equal(c->env[4]->resource_field->container_name, "app");
    assert_int_equal(c->n_env_from, 2);
    assert_int_equal(c->env_from[0]->source_case, VMLET__ENV_FROM_SOURCE__SOURCE_CONFIG_MAP);
    assert_int_equal(c->env_from[0]->n_values, 2);
    assert_string_equal(c->env_from[0]->values[0]->name, "CFG_MODE");
    assert_string_equal(c->env_from[0]->values[1]->name, "CFG_LEVEL");
    assert_string_equal(c->env_from[1]->secret->name, "db");
    assert_int_equal(c->env_from[1]->n_values, 0);
    // The secret's value is nowhere in what goes to Redis.
    size_t len = vmlet__pod_spec__get_packed_size(s);
    uint8_t *bytes = malloc(len);
    vmlet__pod_spec__pack(s, bytes);
    assert_null(memmem(bytes, len, "c2VjcmV0LXZhbHVlLTQy", 20));
    free(bytes);
    pod_spec_free(&s);
}

static void test_problems(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        bool pod_level;
        const char *reason;
        bool retryable;
        const char *message;
    } cases[] = {
        {"{'containers':[{'name':'a','image':'busybox','env':[{'name':'X','valueFrom':"
         "{'configMapKeyRef':{'name':'settings','key':'nope'}}}]}]}",
         false, "CreateContainerConfigError", true,
         "couldn't find key nope in configmap default/settings"},
        {"{'containers':[{'name':'a','image':'busybox','env':[{'name':'X','valueFrom':"
         "{'secretKeyRef':{'name':'missing','key':'k'}}}]}]}",
         false, "CreateContainerConfigError", true, "secret \"missing\" not found"},
        {"{'containers':[{'name':'a','image':'Busy Box!'}]}", false, "InvalidImageName", false,
         "couldn't parse image reference \"Busy Box!\""},
        {"{'containers':[{'name':'a','image':'busybox'}],'volumes':[{'name':'h','hostPath':"
         "{'path':'/etc'}}]}",
         true, "CreateContainerConfigError", false,
         "volume \"h\": hostPath volumes are not supported by vmlet"},
        {"{'containers':[{'name':'a','image':'busybox'}],'volumes':[{'name':'d',"
         "'persistentVolumeClaim':{'claimName':'c'}}]}",
         true, "CreateContainerConfigError", false, "persistentVolumeClaim volumes are not supported"},
        {"{'containers':[{'name':'a','image':'busybox','livenessProbe':{'tcpSocket':{'port':'admin'}}}]}",
         false, "CreateContainerConfigError", false,
         "livenessProbe: port \"admin\" is not the name of a port of container \"a\""},
        {"{'containers':[{'name':'a','image':'busybox'}],'volumes':[{'name':'c','configMap':"
         "{'name':'absent'}}]}",
         true, "CreateContainerConfigError", true, "volume \"c\": configmap \"absent\" not found"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Vmlet__PodSpec *s = s_ok(cases[i].spec);
        const Vmlet__ConfigProblem *p = cases[i].pod_level ? s->problem : s->containers[0]->problem;
        if (!p || strcmp(p->reason, cases[i].reason) != 0 || p->retryable != cases[i].retryable ||
            !strstr(p->message, cases[i].message))
            fail_msg("case %zu: problem %s: %s (retryable %d)", i, p ? p->reason : "(none)",
                     s_problem(p), p ? p->retryable : -1);
        assert_true(pod_spec_problem(s) == p);
        assert_int_equal(pod_spec_retryable(s), cases[i].retryable);
        pod_spec_free(&s);
    }
}

static void test_optional_references_are_not_problems(void **state)
{
    (void)state;
    Vmlet__PodSpec *s = s_ok(
        "{'containers':[{'name':'a','image':'busybox','envFrom':[{'configMapRef':{'name':'absent',"
        "'optional':true}}]}],'volumes':[{'name':'s','secret':{'secretName':'absent','optional':true}}]}");
    assert_null(pod_spec_problem(s));
    pod_spec_free(&s);
}

static void test_a_megabyte_of_env(void **state)
{
    (void)state;
    size_t n = 1100000;
    char *pod = malloc(n + 1000);
    int at = snprintf(pod, 1000, "{" META ",'spec':{'containers':[{'name':'a','image':'busybox',"
                                        "'env':[");
    for (int i = 0; i < 10; i++) {
        at += sprintf(pod + at, "%s{'name':'V%d','value':'", i ? "," : "", i);
        memset(pod + at, 'x', 110000);
        at += 110000;
        at += sprintf(pod + at, "'}");
    }
    sprintf(pod + at, "]}]}}");
    bool transient;
    vmlet_err_t err = {0};
    Vmlet__PodSpec *s = s_norm(pod, &transient, &err);
    free(pod);
    assert_non_null(s);
    const Vmlet__ConfigProblem *p = s->containers[0]->problem;
    assert_non_null(p);
    assert_string_equal(p->reason, "CreateContainerConfigError");
    assert_non_null(strstr(p->message, "bytes in all"));
    pod_spec_free(&s);
}

static void test_unreachable_api_is_transient(void **state)
{
    (void)state;
    api.unreachable = true;
    bool transient = false;
    vmlet_err_t err = {0};
    Vmlet__PodSpec *s = s_norm("{" META ",'spec':{'containers':[{'name':'a','image':'busybox',"
                               "'envFrom':[{'configMapRef':{'name':'settings'}}]}]}}",
                               &transient, &err);
    assert_null(s);
    assert_true(transient);
    assert_non_null(strstr(err.msg, "connection refused"));
}

static void test_not_a_pod(void **state)
{
    (void)state;
    bool transient = true;
    vmlet_err_t err = {0};
    assert_null(s_norm("{'metadata':{'name':'x'}}", &transient, &err));
    assert_false(transient);
    assert_non_null(strstr(err.msg, "not a pod"));
}

static void test_hash_ignores_resource_version(void **state)
{
    (void)state;
    const char *spec = "{'containers':[{'name':'a','image':'busybox'}]}";
    Vmlet__PodSpec *a = s_ok(spec), *b = s_ok(spec);
    char ha[VMLET_POD_HASH_LEN], hb[VMLET_POD_HASH_LEN];
    free(b->resource_version);
    b->resource_version = strdup("8");
    vmlet_pod_spec_hash(a, ha);
    vmlet_pod_spec_hash(b, hb);
    assert_string_equal(ha, hb);
    b->containers[0]->image[0] = 'B';
    vmlet_pod_spec_hash(b, hb);
    assert_string_not_equal(ha, hb);
    pod_spec_free(&a);
    pod_spec_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_and_basics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_resolution, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dns_hosts_and_service_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_problems, setup, teardown),
        cmocka_unit_test_setup_teardown(test_optional_references_are_not_problems, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_megabyte_of_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_api_is_transient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_pod, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_ignores_resource_version, setup, teardown),
    };
    return TS_RUN(tests);
}
