// Kubernetes client configuration: kubeconfig parsing (a table of files and
// what they must yield, or the error they must give) and the in-cluster
// service-account config.
#include "testsupport.h"

#include "vmlet/kube.h"

#include <string.h>
#include <sys/stat.h>

#define CA_PEM "-----BEGIN CERTIFICATE-----\nQ0EgY2VydA==\n-----END CERTIFICATE-----\n"
#define CERT_PEM "-----BEGIN CERTIFICATE-----\nY2xpZW50\n-----END CERTIFICATE-----\n"
#define KEY_PEM "-----BEGIN PRIVATE KEY-----\na2V5\n-----END PRIVATE KEY-----\n"

// The directory every case's kubeconfig and files live in.
static char *s_dir;

static char *s_base64(const char *text)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(text);
    char *out = calloc(1, n / 3 * 4 + 8);
    assert_non_null(out);
    const unsigned char *in = (const unsigned char *)text;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? abc[v & 63] : '=';
    }
    return out;
}

// Replaces {DIR}, {CA64}, {CERT64}, {KEY64} in text. Caller frees.
static char *s_expand(const char *text)
{
    char *ca = s_base64(CA_PEM), *cert = s_base64(CERT_PEM), *key = s_base64(KEY_PEM);
    const char *tokens[][2] = {
        {"{DIR}", s_dir}, {"{CA64}", ca}, {"{CERT64}", cert}, {"{KEY64}", key}};
    char *out = calloc(1, strlen(text) * 4 + 4096);
    assert_non_null(out);
    for (char *o = out; *text;) {
        size_t i = 0;
        for (; i < 4; i++) {
            size_t len = strlen(tokens[i][0]);
            if (strncmp(text, tokens[i][0], len) == 0) {
                o = stpcpy(o, tokens[i][1]);
                text += len;
                break;
            }
        }
        if (i == 4)
            *o++ = *text++;
    }
    free(ca);
    free(cert);
    free(key);
    return out;
}

static void s_write(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int s_setup(void **state)
{
    (void)state;
    s_dir = ts_tempdir("vmlet-kube-config");
    assert_non_null(s_dir);
    char sub[512];
    snprintf(sub, sizeof sub, "%s/certs", s_dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    s_write("ca.crt", CA_PEM);
    s_write("certs/client.crt", CERT_PEM);
    s_write("certs/client.key", KEY_PEM);
    s_write("token", "file-token\n");
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    const char *files[] = {"ca.crt", "certs/client.crt", "certs/client.key", "token", "kc", "certs",
                           ""};
    char path[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", s_dir, files[i]);
        remove(path);
    }
    free(s_dir);
    return 0;
}

// --- the table -----------------------------------------------------------------

#define HEAD "apiVersion: v1\nkind: Config\n"
#define CLUSTER(body) "clusters:\n- name: c1\n  cluster:\n    server: https://127.0.0.1:6443\n" body
#define USER(body) "users:\n- name: u1\n  user:\n" body
#define CONTEXTS                                                                                   \
    "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n"                                   \
    "- name: b\n  context: {cluster: c1, user: u2}\n"

typedef struct {
    const char *name;
    const char *yaml;    // {DIR} and {CA64}/{CERT64}/{KEY64} are expanded
    const char *context; // NULL: current-context
    const char *error;   // expected error substring; NULL: must succeed
    // Expected fields on success (NULL: must be NULL); {DIR} expanded.
    const char *server, *ca_file, *ca_data, *token, *token_file;
    const char *cert_file, *cert_data, *key_file, *key_data;
    bool insecure;
} kc_case_t;

static const kc_case_t cases[] = {
    {.name = "*-data fields are base64-decoded into PEM",
     .yaml = HEAD CLUSTER("    certificate-authority-data: {CA64}\n")
         USER("    client-certificate-data: {CERT64}\n    client-key-data: {KEY64}\n") CONTEXTS
     "current-context: a\n",
     .server = "https://127.0.0.1:6443",
     .ca_data = CA_PEM,
     .cert_data = CERT_PEM,
     .key_data = KEY_PEM},
    {.name = "relative paths are resolved against the kubeconfig's directory",
     .yaml = HEAD CLUSTER("    certificate-authority: ca.crt\n") USER(
         "    client-certificate: ./certs/client.crt\n    client-key: {DIR}/certs/client.key\n")
         CONTEXTS "current-context: a\n",
     .server = "https://127.0.0.1:6443",
     .ca_file = "{DIR}/ca.crt",
     .cert_file = "{DIR}/./certs/client.crt",
     .key_file = "{DIR}/certs/client.key"},
    {.name = "-data wins over a file path; trailing slash of server dropped",
     .yaml =
         HEAD "clusters:\n- name: c1\n  cluster:\n    server: https://localhost:6443/\n"
              "    certificate-authority: ca.crt\n    certificate-authority-data: {CA64}\n" USER(
                  "    token: tok\n") CONTEXTS "current-context: a\n",
     .server = "https://localhost:6443",
     .ca_data = CA_PEM,
     .token = "tok"},
    {.name = "an explicit context beats current-context",
     .yaml = HEAD CLUSTER("    insecure-skip-tls-verify: true\n")
         USER("    token: one\n") "- name: u2\n  user:\n    tokenFile: token\n" CONTEXTS
                                  "current-context: a\n",
     .context = "b",
     .server = "https://127.0.0.1:6443",
     .token_file = "{DIR}/token",
     .insecure = true},
    {.name = "a context without user is anonymous",
     .yaml = HEAD CLUSTER("") "contexts:\n- name: a\n  context:\n    cluster: c1\n"
                              "current-context: a\n",
     .server = "https://127.0.0.1:6443"},
    {.name = "JSON is YAML too",
     .yaml = "{\"clusters\":[{\"name\":\"c1\",\"cluster\":{\"server\":\"http://127.0.0.1:8080\"}}],"
             "\"users\":[{\"name\":\"u1\",\"user\":{\"token\":\"t\"}}],"
             "\"contexts\":[{\"name\":\"a\",\"context\":{\"cluster\":\"c1\",\"user\":\"u1\"}}],"
             "\"current-context\":\"a\"}",
     .server = "http://127.0.0.1:8080",
     .token = "t"},
    {.name = "missing current-context",
     .yaml = HEAD CLUSTER("") USER("    token: t\n") CONTEXTS,
     .error = "kubeconfig {DIR}/kc: no current-context set and no context named (contexts in "
              "the file: a, b; pick one with `kubectl config use-context`)"},
    {.name = "unknown context",
     .yaml = HEAD CLUSTER("") USER("    token: t\n") CONTEXTS "current-context: a\n",
     .context = "nope",
     .error = "kubeconfig {DIR}/kc: context \"nope\" not found (contexts in the file: a, b)"},
    {.name = "unknown user",
     .yaml = HEAD CLUSTER("") USER("    token: t\n") CONTEXTS "current-context: b\n",
     .error = "kubeconfig {DIR}/kc: context \"b\" uses user \"u2\", which is not in the file "
              "(users: u1)"},
    {.name = "unknown cluster",
     .yaml = HEAD CLUSTER("") USER("    token: t\n") "contexts:\n- name: a\n  context: {cluster: "
                                                     "c9, user: u1}\ncurrent-context: a\n",
     .error = "kubeconfig {DIR}/kc: context \"a\" uses cluster \"c9\", which is not in the file "
              "(clusters: c1)"},
    {.name = "malformed YAML",
     .yaml = HEAD "clusters:\n- name: c1\n  cluster: {server: [\n",
     .error = "kubeconfig {DIR}/kc: not valid YAML: line 6 column 1"},
    {.name = "bad base64",
     .yaml = HEAD CLUSTER("    certificate-authority-data: not*base64\n") USER("    token: t\n")
         CONTEXTS "current-context: a\n",
     .error = "kubeconfig {DIR}/kc: cluster \"c1\": certificate-authority-data is not valid "
              "base64 (encode the PEM file with `base64 -w0 FILE`)"},
    {.name = "base64 that is not PEM",
     .yaml = HEAD CLUSTER("") USER("    client-certificate-data: aGVsbG8=\n    client-key: "
                                   "certs/client.key\n") CONTEXTS "current-context: a\n",
     .error = "kubeconfig {DIR}/kc: user \"u1\": client-certificate-data does not decode to PEM "
              "text"},
    {.name = "missing certificate file",
     .yaml = HEAD CLUSTER("    certificate-authority: nope.crt\n") USER("    token: t\n") CONTEXTS
     "current-context: a\n",
     .error = "kubeconfig {DIR}/kc: cluster \"c1\": certificate-authority {DIR}/nope.crt: No "
              "such file or directory"},
    {.name = "certificate without key",
     .yaml = HEAD CLUSTER("") USER("    client-certificate: certs/client.crt\n") CONTEXTS
     "current-context: a\n",
     .error = "user \"u1\": client-certificate is set but client-key is not"},
    {.name = "insecure together with a CA",
     .yaml = HEAD CLUSTER("    insecure-skip-tls-verify: true\n    certificate-authority: ca.crt\n")
         USER("    token: t\n") CONTEXTS "current-context: a\n",
     .error = "cluster \"c1\": both insecure-skip-tls-verify and a certificate-authority are set"},
    {.name = "insecure flag that is not a boolean",
     .yaml = HEAD CLUSTER("    insecure-skip-tls-verify: maybe\n") USER("    token: t\n") CONTEXTS
     "current-context: a\n",
     .error = "insecure-skip-tls-verify is 'maybe', not true or false"},
    {.name = "cluster without server",
     .yaml = HEAD "clusters:\n- name: c1\n  cluster: {}\n" USER("    token: t\n") CONTEXTS
     "current-context: a\n",
     .error = "cluster \"c1\": no server (set clusters[].cluster.server"},
    {.name = "exec credentials are refused clearly",
     .yaml = HEAD CLUSTER("") USER("    exec: {command: aws}\n") CONTEXTS "current-context: a\n",
     .error = "user \"u1\": uses exec, auth-provider or basic credentials, which vmlet does not "
              "support"},
    {.name = "empty file", .yaml = "", .error = "kubeconfig {DIR}/kc: empty file"},
    {.name = "not a map",
     .yaml = "- just\n- a list\n",
     .error = "not a kubeconfig (top level is not a map)"},
};

static void s_assert_field(const char *label, const char *want, const char *got)
{
    if (!want) {
        if (got)
            fail_msg("%s: expected NULL, got \"%s\"", label, got);
        return;
    }
    char *expanded = s_expand(want);
    if (!got || strcmp(expanded, got) != 0)
        fail_msg("%s: expected \"%s\", got \"%s\"", label, expanded, got ? got : "(null)");
    free(expanded);
}

static void s_check_case(const kc_case_t *c)
{
    char *yaml = s_expand(c->yaml);
    s_write("kc", yaml);
    free(yaml);
    char path[512];
    snprintf(path, sizeof path, "%s/kc", s_dir);
    vmlet_kube_config_t config;
    vmlet_err_t err = {0};
    int rc = vmlet_kube_config_from_file(path, c->context, &config, &err);
    if (c->error) {
        char *want = s_expand(c->error);
        if (rc == 0 || !strstr(err.msg, want))
            fail_msg("case '%s': expected error containing\n  %s\ngot rc=%d\n  %s", c->name, want,
                     rc, err.msg);
        free(want);
        print_message("             -> %s\n", err.msg);
        assert_null(config.server); // nothing left behind on failure
        return;
    }
    if (rc != 0)
        fail_msg("case '%s': unexpected error: %s", c->name, err.msg);
    s_assert_field("server", c->server, config.server);
    s_assert_field("ca_file", c->ca_file, config.ca_file);
    s_assert_field("ca_data", c->ca_data, config.ca_data);
    s_assert_field("token", c->token, config.token);
    s_assert_field("token_file", c->token_file, config.token_file);
    s_assert_field("client_cert_file", c->cert_file, config.client_cert_file);
    s_assert_field("client_cert_data", c->cert_data, config.client_cert_data);
    s_assert_field("client_key_file", c->key_file, config.client_key_file);
    s_assert_field("client_key_data", c->key_data, config.client_key_data);
    assert_int_equal(config.insecure_skip_tls_verify, c->insecure);
    vmlet_kube_config_clear(&config);
    assert_null(config.server);
}

static void test_kubeconfig_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("[ CASE     ] %s\n", cases[i].name);
        s_check_case(&cases[i]);
    }
}

static void test_kubeconfig_missing_file(void **state)
{
    (void)state;
    vmlet_kube_config_t config;
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_kube_config_from_file("/nonexistent/kc", NULL, &config, &err), -1);
    assert_string_equal(err.msg, "kubeconfig: /nonexistent/kc: No such file or directory");
}

// --- in-cluster --------------------------------------------------------------------

static void test_in_cluster(void **state)
{
    (void)state;
    vmlet_kube_config_t config;
    vmlet_err_t err = {0};
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    s_write("ca.crt", CA_PEM); // the sa dir holds token + ca.crt, as s_dir does
    assert_int_equal(vmlet_kube_config_in_cluster(s_dir, &config, &err), 0);
    s_assert_field("server", "https://127.0.0.1:6443", config.server);
    s_assert_field("token_file", "{DIR}/token", config.token_file);
    s_assert_field("ca_file", "{DIR}/ca.crt", config.ca_file);
    assert_null(config.token);
    vmlet_kube_config_clear(&config);

    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(vmlet_kube_config_in_cluster(s_dir, &config, &err), 0);
    assert_string_equal(config.server, "https://[fd00::1]:443");
    vmlet_kube_config_clear(&config);

    assert_int_equal(vmlet_kube_config_in_cluster("/nonexistent/sa", &config, &err), -1);
    assert_string_equal(err.msg, "in-cluster config: /nonexistent/sa/token: No such file or "
                                 "directory (is the service account token mounted? check "
                                 "automountServiceAccountToken)");
    assert_null(config.server);

    unsetenv("KUBERNETES_SERVICE_HOST");
    assert_int_equal(vmlet_kube_config_in_cluster(s_dir, &config, &err), -1);
    assert_string_equal(err.msg, "in-cluster config: KUBERNETES_SERVICE_HOST and "
                                 "KUBERNETES_SERVICE_PORT are not set (not running in a Pod?)");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

static void test_load_chooses(void **state)
{
    (void)state;
    vmlet_kube_config_t config;
    vmlet_err_t err = {0};
    unsetenv("KUBERNETES_SERVICE_HOST");
    assert_int_equal(vmlet_kube_config_load("", &config, &err), -1);
    assert_string_equal(err.msg, "no kubeconfig given, and in-cluster config: "
                                 "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not "
                                 "set (not running in a Pod?); set a kubeconfig file or run in "
                                 "a Pod with a service account");

    char *yaml = s_expand(HEAD CLUSTER("") USER("    token: t\n") CONTEXTS "current-context: a\n");
    s_write("kc", yaml);
    free(yaml);
    char path[512];
    snprintf(path, sizeof path, "%s/kc", s_dir);
    assert_int_equal(vmlet_kube_config_load(path, &config, &err), 0);
    assert_string_equal(config.token, "t");
    vmlet_kube_config_clear(&config);
    vmlet_kube_config_clear(&config); // safe twice
}

// --- the client's own checks (no server needed) ---------------------------------

static void test_client_errors(void **state)
{
    (void)state;
    vmlet_err_t err = {0};
    vmlet_kube_config_t config = {0};
    assert_null(vmlet_kube_new(&config, &err));
    assert_string_equal(err.msg, "Kubernetes client: no API server URL configured");

    char server[64];
    snprintf(server, sizeof server, "https://127.0.0.1:%d", ts_free_port());
    config.server = server;
    config.token_file = "/nonexistent/token";
    assert_null(vmlet_kube_new(&config, &err));
    char want[256];
    snprintf(want, sizeof want,
             "Kubernetes client for %s: token file /nonexistent/token: No such file or directory",
             server);
    assert_string_equal(err.msg, want);

    // Nothing listens on the port: a transport error that names the server.
    config.token_file = NULL;
    config.token = "t";
    vmlet_kube_t *kube = vmlet_kube_new(&config, &err);
    assert_non_null(kube);
    cJSON *out = (cJSON *)&out;
    assert_int_equal(vmlet_kube_get(kube, "/api/v1/namespaces", &out, &err), -1);
    assert_null(out);
    snprintf(want, sizeof want, "GET %s/api/v1/namespaces: cannot connect: ", server);
    assert_memory_equal(err.msg, want, strlen(want));
    snprintf(want, sizeof want, "(is the API server running at %s?)", server);
    assert_non_null(strstr(err.msg, want));
    assert_int_equal(vmlet_kube_get(kube, "api", &out, &err), -1);
    assert_string_equal(err.msg, "GET api: path must start with \"/\"");
    vmlet_kube_destroy(&kube);
    assert_null(kube);
    vmlet_kube_destroy(&kube); // safe twice
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kubeconfig_table), cmocka_unit_test(test_kubeconfig_missing_file),
        cmocka_unit_test(test_in_cluster),       cmocka_unit_test(test_load_chooses),
        cmocka_unit_test(test_client_errors),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
