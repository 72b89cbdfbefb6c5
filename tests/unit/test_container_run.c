// What a container's process is: argv from command/args over the image's
// entrypoint/cmd, the environment in the kubelet's order with $(VAR)
// expansion, downward-API fields, Secret values (from a table standing in
// for the API server's answers), the user and working directory, and the
// kubelet's reasons when something is missing.
#include "testsupport.h"

#include "container_run.h"

#include "vmlet/pb.h"

#include <string.h>

// --- a small pod builder -----------------------------------------------------------

typedef struct {
    Vmlet__PodRef ref;
    Vmlet__PodSpec pod;
    Vmlet__Container c;
    Vmlet__Container *cs[1];
    Vmlet__ImageConfig img;
    Vmlet__EnvVar vars[8];
    Vmlet__EnvVar *var_ptrs[8];
    Vmlet__EnvFromSource from[2];
    Vmlet__EnvFromSource *from_ptrs[2];
    Vmlet__KeyRef keys[8];
    Vmlet__FieldRef fields[2];
    Vmlet__ResourceFieldRef res[2];
    Vmlet__Resources resources;
    Vmlet__PodSpec__LabelsEntry label;
    Vmlet__PodSpec__LabelsEntry *labels[1];
    run_inputs_t in;
} pod_t;

static int s_fetch(void *ctx, const char *ns, const char *name, cJSON **data, vmlet_err_t *err)
{
    (void)ctx;
    if (strcmp(name, "unreachable") == 0)
        return vmlet_err_set(err, "GET secrets/%s: connection refused", name);
    if (strcmp(ns, "shop") != 0 || strcmp(name, "db") != 0)
        return 1;
    *data = cJSON_Parse("{\"password\":\"s3cret\",\"user\":\"admin\",\"bad name\":\"x\"}");
    return 0;
}

static void s_pod(pod_t *p)
{
    memset(p, 0, sizeof *p);
    p->ref = (Vmlet__PodRef)VMLET__POD_REF__INIT;
    p->ref.uid = "uid-1", p->ref.namespace_ = "shop", p->ref.name = "web-0";
    p->pod = (Vmlet__PodSpec)VMLET__POD_SPEC__INIT;
    p->pod.pod = &p->ref;
    p->pod.node_name = "vmlet";
    p->label = (Vmlet__PodSpec__LabelsEntry)VMLET__POD_SPEC__LABELS_ENTRY__INIT;
    p->label.key = "app", p->label.value = "web";
    p->labels[0] = &p->label;
    p->pod.labels = p->labels, p->pod.n_labels = 1;
    p->c = (Vmlet__Container)VMLET__CONTAINER__INIT;
    p->c.name = "app";
    p->cs[0] = &p->c;
    p->pod.containers = p->cs, p->pod.n_containers = 1;
    p->img = (Vmlet__ImageConfig)VMLET__IMAGE_CONFIG__INIT;
    for (int i = 0; i < 8; i++)
        p->var_ptrs[i] = &p->vars[i];
    for (int i = 0; i < 2; i++)
        p->from_ptrs[i] = &p->from[i];
    p->in = (run_inputs_t){.pod = &p->pod, .container = &p->c, .image = &p->img,
                           .pod_ip = "10.88.0.7", .host_ip = "127.0.0.1", .hostname = "web-0",
                           .vm_cpu_millis = 2000, .vm_memory_bytes = 512LL << 20,
                           .fetch_secret = s_fetch};
}

static Vmlet__EnvVar *s_var(pod_t *p, const char *name)
{
    Vmlet__EnvVar *v = &p->vars[p->c.n_env];
    *v = (Vmlet__EnvVar)VMLET__ENV_VAR__INIT;
    v->name = (char *)name;
    p->c.env = p->var_ptrs;
    p->c.n_env++;
    return v;
}

static void s_value(pod_t *p, const char *name, const char *value)
{
    Vmlet__EnvVar *v = s_var(p, name);
    v->source_case = VMLET__ENV_VAR__SOURCE_VALUE;
    v->value = (char *)value;
}

static Vmlet__KeyRef *s_key(pod_t *p, const char *name, const char *key, bool optional)
{
    static int next;
    Vmlet__KeyRef *k = &p->keys[next++ % 8];
    *k = (Vmlet__KeyRef)VMLET__KEY_REF__INIT;
    k->name = (char *)name, k->key = (char *)key;
    PB_SET(k, optional, optional);
    return k;
}

static void s_secret_var(pod_t *p, const char *name, const char *secret, const char *key,
                         bool optional)
{
    Vmlet__EnvVar *v = s_var(p, name);
    v->source_case = VMLET__ENV_VAR__SOURCE_SECRET_KEY;
    v->secret_key = s_key(p, secret, key, optional);
}

// The value of NAME in the built environment, or NULL.
static const char *s_env(const Vmlet__StartContainer *s, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < s->n_env; i++)
        if (strncmp(s->env[i], name, n) == 0 && s->env[i][n] == '=')
            return s->env[i] + n + 1;
    return NULL;
}

static Vmlet__StartContainer *s_build_ok(pod_t *p)
{
    run_problem_t problem;
    vmlet_err_t err = {0};
    Vmlet__StartContainer *s = container_run_build(&p->in, &problem, &err);
    if (!s)
        fail_msg("build failed: %s %s %s", problem.reason, problem.message, err.msg);
    return s;
}

static void s_argv_is(const Vmlet__StartContainer *s, const char *const *want, size_t n)
{
    assert_int_equal(s->n_argv, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(s->argv[i], want[i]);
}

// --- tests ---------------------------------------------------------------------------

static void test_argv_rules(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p);
    char *entry[] = {"/entry", "-x"}, *cmd[] = {"serve", "--port=80"};
    p.img.entrypoint = entry, p.img.n_entrypoint = 2;
    p.img.cmd = cmd, p.img.n_cmd = 2;
    // Neither command nor args: the image's entrypoint and cmd.
    Vmlet__StartContainer *s = s_build_ok(&p);
    s_argv_is(s, (const char *const[]){"/entry", "-x", "serve", "--port=80"}, 4);
    vmlet__start_container__free_unpacked(s, NULL);
    // args only: entrypoint + args, expanded.
    s_value(&p, "PORT", "8080");
    char *args[] = {"serve", "--port=$(PORT)", "$$(PORT)", "$(NOPE)"};
    p.c.args = args, p.c.n_args = 4;
    s = s_build_ok(&p);
    s_argv_is(s, (const char *const[]){"/entry", "-x", "serve", "--port=8080", "$(PORT)", "$(NOPE)"},
              6);
    vmlet__start_container__free_unpacked(s, NULL);
    // command replaces the entrypoint and drops cmd.
    char *command[] = {"/bin/sh", "-c"};
    p.c.command = command, p.c.n_command = 2;
    p.c.n_args = 0;
    s = s_build_ok(&p);
    s_argv_is(s, (const char *const[]){"/bin/sh", "-c"}, 2);
    vmlet__start_container__free_unpacked(s, NULL);
    // Nothing at all to run.
    p.c.n_command = 0;
    p.img.n_entrypoint = p.img.n_cmd = 0;
    run_problem_t problem;
    assert_null(container_run_build(&p.in, &problem, NULL));
    assert_string_equal(problem.reason, "CreateContainerError");
    assert_non_null(strstr(problem.message, "no command specified"));
}

static void test_environment_order_and_expansion(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p);
    char *image_env[] = {"PATH=/image/bin", "LANG=C", "MODE=image"}, *cmd[] = {"env"};
    p.img.env = image_env, p.img.n_env = 3;
    p.img.cmd = cmd, p.img.n_cmd = 1;
    // envFrom: a ConfigMap (resolved), then a Secret (fetched now).
    Vmlet__EnvVar cm_vars[2] = {VMLET__ENV_VAR__INIT, VMLET__ENV_VAR__INIT};
    Vmlet__EnvVar *cm_ptrs[2] = {&cm_vars[0], &cm_vars[1]};
    cm_vars[0].name = "MODE", cm_vars[0].source_case = VMLET__ENV_VAR__SOURCE_VALUE;
    cm_vars[0].value = "fast";
    cm_vars[1].name = "user", cm_vars[1].source_case = VMLET__ENV_VAR__SOURCE_VALUE;
    cm_vars[1].value = "from-configmap";
    p.from[0] = (Vmlet__EnvFromSource)VMLET__ENV_FROM_SOURCE__INIT;
    p.from[0].source_case = VMLET__ENV_FROM_SOURCE__SOURCE_CONFIG_MAP;
    p.from[0].config_map = s_key(&p, "cfg", NULL, false);
    p.from[0].values = cm_ptrs, p.from[0].n_values = 2;
    p.from[1] = (Vmlet__EnvFromSource)VMLET__ENV_FROM_SOURCE__INIT;
    p.from[1].source_case = VMLET__ENV_FROM_SOURCE__SOURCE_SECRET;
    p.from[1].secret = s_key(&p, "db", NULL, false);
    p.c.env_from = p.from_ptrs, p.c.n_env_from = 2;
    // env: expansion sees what came before; a later name wins.
    s_value(&p, "GREETING", "mode=$(MODE) user=$(user) later=$(LATER)");
    s_value(&p, "LATER", "x");
    s_secret_var(&p, "DB_PASSWORD", "db", "password", false);
    Vmlet__EnvVar *ip = s_var(&p, "POD_IP");
    ip->source_case = VMLET__ENV_VAR__SOURCE_FIELD;
    p.fields[0] = (Vmlet__FieldRef)VMLET__FIELD_REF__INIT;
    p.fields[0].field_path = "status.podIP";
    ip->field = &p.fields[0];
    Vmlet__EnvVar *app = s_var(&p, "APP");
    app->source_case = VMLET__ENV_VAR__SOURCE_FIELD;
    p.fields[1] = (Vmlet__FieldRef)VMLET__FIELD_REF__INIT;
    p.fields[1].field_path = "metadata.labels['app']";
    app->field = &p.fields[1];
    s_value(&p, "PATH", "/pod/bin:$(PATH)"); // the image's PATH is not a Kubernetes variable
    Vmlet__StartContainer *s = s_build_ok(&p);
    assert_string_equal(s_env(s, "LANG"), "C");
    assert_string_equal(s_env(s, "MODE"), "fast");
    assert_string_equal(s_env(s, "user"), "admin"); // the Secret came later than the ConfigMap
    assert_null(s_env(s, "bad name"));
    assert_string_equal(s_env(s, "GREETING"), "mode=fast user=admin later=$(LATER)");
    assert_string_equal(s_env(s, "DB_PASSWORD"), "s3cret");
    assert_string_equal(s_env(s, "POD_IP"), "10.88.0.7");
    assert_string_equal(s_env(s, "APP"), "web");
    assert_string_equal(s_env(s, "PATH"), "/pod/bin:$(PATH)");
    assert_string_equal(s_env(s, "HOSTNAME"), "web-0");
    vmlet__start_container__free_unpacked(s, NULL);
}

static void test_default_path_and_resources(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p);
    char *cmd[] = {"true"};
    p.img.cmd = cmd, p.img.n_cmd = 1;
    const char *resources[][3] = {
        {"limits.memory", "1Mi", "512"}, // unset: the VM's memory
        {"limits.cpu", "1m", "2000"},    // unset: the VM's CPUs
        {"requests.cpu", "", "0"},
    };
    for (size_t i = 0; i < 3; i++) {
        Vmlet__EnvVar *v = s_var(&p, resources[i][0]);
        v->source_case = VMLET__ENV_VAR__SOURCE_RESOURCE_FIELD;
        p.res[i % 2] = (Vmlet__ResourceFieldRef)VMLET__RESOURCE_FIELD_REF__INIT;
        v->resource_field = vmlet_xdup(&p.res[i % 2], sizeof p.res[0]);
        v->resource_field->resource = (char *)resources[i][0];
        v->resource_field->divisor = (char *)resources[i][1];
    }
    Vmlet__StartContainer *s = s_build_ok(&p);
    assert_string_equal(s_env(s, "PATH"), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(s_env(s, resources[i][0]), resources[i][2]);
    vmlet__start_container__free_unpacked(s, NULL);
    // A limit that is set, rounded up by the divisor, as the kubelet does.
    p.resources = (Vmlet__Resources)VMLET__RESOURCES__INIT;
    PB_SET(&p.resources, memory_limit_bytes, (64LL << 20) + 1);
    PB_SET(&p.resources, cpu_limit_millis, 250);
    p.c.resources = &p.resources;
    s = s_build_ok(&p);
    assert_string_equal(s_env(s, "limits.memory"), "65");
    assert_string_equal(s_env(s, "limits.cpu"), "250");
    vmlet__start_container__free_unpacked(s, NULL);
    for (size_t i = 0; i < 3; i++)
        free(p.vars[i].resource_field);
}

static void test_missing_secrets_are_config_errors(void **state)
{
    (void)state;
    char *cmd[] = {"true"};
    struct {
        const char *secret, *key;
        bool optional;
        const char *message; // NULL: the variable is simply left out
    } cases[] = {
        {"db", "nope", false, "couldn't find key nope in Secret shop/db"},
        {"absent", "password", false, "secret \"absent\" not found"},
        {"db", "nope", true, NULL},
        {"absent", "x", true, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pod_t p;
        s_pod(&p);
        p.img.cmd = cmd, p.img.n_cmd = 1;
        s_secret_var(&p, "V", cases[i].secret, cases[i].key, cases[i].optional);
        run_problem_t problem;
        vmlet_err_t err = {0};
        Vmlet__StartContainer *s = container_run_build(&p.in, &problem, &err);
        if (!cases[i].message) {
            assert_non_null(s);
            assert_null(s_env(s, "V"));
            vmlet__start_container__free_unpacked(s, NULL);
            continue;
        }
        assert_null(s);
        assert_string_equal(problem.reason, "CreateContainerConfigError");
        assert_string_equal(problem.message, cases[i].message);
        assert_true(problem.retryable);
    }
    // The API server not answering is not the pod's fault: an error to retry.
    pod_t p;
    s_pod(&p);
    s_secret_var(&p, "V", "unreachable", "k", false);
    run_problem_t problem;
    vmlet_err_t err = {0};
    assert_null(container_run_build(&p.in, &problem, &err));
    assert_string_equal(problem.reason, "");
    assert_non_null(strstr(err.msg, "connection refused"));
}

static void test_user_and_working_dir(void **state)
{
    (void)state;
    char *cmd[] = {"true"};
    struct {
        const char *image_user;
        int64_t run_as_user, run_as_group; // -1: unset
        const char *want_user;            // NULL: numeric uid/gid below
        int64_t uid, gid;
    } cases[] = {
        {"", -1, -1, "0", 0, 0},              // root; group from /etc/passwd
        {"nginx", -1, -1, "nginx", 0, 0},
        {"www:staff", -1, -1, "www:staff", 0, 0},
        {"1000:1000", -1, -1, NULL, 1000, 1000},
        {"nginx", 1001, -1, "1001", 0, 0},     // the group comes from the container's files
        {"nginx", 1001, 2002, NULL, 1001, 2002},
        {"0:0", 1001, -1, NULL, 1001, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pod_t p;
        s_pod(&p);
        p.img.cmd = cmd, p.img.n_cmd = 1;
        p.img.user = (char *)cases[i].image_user;
        Vmlet__SecurityContext sc = VMLET__SECURITY_CONTEXT__INIT;
        if (cases[i].run_as_user >= 0)
            PB_SET(&sc, run_as_user, cases[i].run_as_user);
        if (cases[i].run_as_group >= 0)
            PB_SET(&sc, run_as_group, cases[i].run_as_group);
        p.c.security_context = &sc;
        Vmlet__StartContainer *s = s_build_ok(&p);
        if (cases[i].want_user) {
            assert_non_null(s->user);
            assert_string_equal(s->user, cases[i].want_user);
        } else {
            assert_true(s->user == NULL || !*s->user);
            assert_true(s->has_uid && s->has_gid);
            assert_int_equal(s->uid, cases[i].uid);
            assert_int_equal(s->gid, cases[i].gid);
        }
        assert_string_equal(s->working_dir, "/");
        vmlet__start_container__free_unpacked(s, NULL);
    }
    pod_t p;
    s_pod(&p);
    p.img.cmd = cmd, p.img.n_cmd = 1;
    p.img.working_dir = "/srv";
    Vmlet__StartContainer *s = s_build_ok(&p);
    assert_string_equal(s->working_dir, "/srv");
    vmlet__start_container__free_unpacked(s, NULL);
    p.c.working_dir = "/data";
    s = s_build_ok(&p);
    assert_string_equal(s->working_dir, "/data");
    vmlet__start_container__free_unpacked(s, NULL);
}

static void test_fields(void **state)
{
    (void)state;
    pod_t p;
    s_pod(&p);
    const char *cases[][2] = {
        {"metadata.name", "web-0"},       {"metadata.namespace", "shop"},
        {"metadata.uid", "uid-1"},        {"spec.nodeName", "vmlet"},
        {"status.hostIP", "127.0.0.1"},   {"metadata.labels", "app=\"web\""},
        {"metadata.labels['none']", ""},  {"metadata.annotations", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *v = container_run_field(&p.in, cases[i][0]);
        assert_non_null(v);
        assert_string_equal(v, cases[i][1]);
        free(v);
    }
    assert_null(container_run_field(&p.in, "spec.containers[0].image"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argv_rules),
        cmocka_unit_test(test_environment_order_and_expansion),
        cmocka_unit_test(test_default_path_and_resources),
        cmocka_unit_test(test_missing_secrets_are_config_errors),
        cmocka_unit_test(test_user_and_working_dir),
        cmocka_unit_test(test_fields),
    };
    return TS_RUN(tests);
}
