// The Kubernetes client against the real kube-apiserver of the test bed
// (tests/bed/start.sh): token, client certificate (files and *-data),
// kubeconfig file, token-file rotation, and the errors a wrong token, a
// wrong CA or a missing permission must give.
#include "testsupport.h"

#include "vmlet/kube.h"

#include <string.h>
#include <unistd.h>

typedef struct {
    char *url, *token, *ca, *admin_cert, *admin_key, *kubeconfig, *node_token, *node_cert;
} bed_t;

static bed_t s_bed;

static int s_setup(void **state)
{
    (void)state;
    s_bed.url = ts_bed_value("BED_APISERVER_URL");
    s_bed.token = ts_bed_value("BED_ADMIN_TOKEN");
    s_bed.ca = ts_bed_value("BED_CA");
    s_bed.admin_cert = ts_bed_value("BED_ADMIN_CERT");
    s_bed.admin_key = ts_bed_value("BED_ADMIN_KEY");
    s_bed.kubeconfig = ts_bed_value("BED_KUBECONFIG");
    s_bed.node_token = ts_bed_value("BED_NODE_TOKEN");
    s_bed.node_cert = ts_bed_value("BED_NODE_CERT");
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    char **all[] = {&s_bed.url,       &s_bed.token,      &s_bed.ca,         &s_bed.admin_cert,
                    &s_bed.admin_key, &s_bed.kubeconfig, &s_bed.node_token, &s_bed.node_cert};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(*all[i]);
    return 0;
}

// Skips (with the reason printed) when the bed is not up.
static void s_need_bed(void)
{
    if (!s_bed.url || !s_bed.token || !s_bed.ca || !s_bed.admin_cert || !s_bed.admin_key ||
        !s_bed.kubeconfig) {
        print_message("skipped: no test bed (run tests/bed/start.sh DIR and set "
                      "VMLET_BED_DIR=DIR; ctest does both)\n");
        skip();
    }
}

static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *text = calloc(1, 65536);
    assert_non_null(text);
    size_t n = fread(text, 1, 65535, f);
    assert_true(n > 0);
    fclose(f);
    return text;
}

// GET /api/v1/namespaces must list default and kube-system.
static void s_assert_lists_namespaces(const vmlet_kube_config_t *config)
{
    vmlet_err_t err = {0};
    vmlet_kube_t *kube = vmlet_kube_new(config, &err);
    if (!kube)
        fail_msg("vmlet_kube_new: %s", err.msg);
    cJSON *list = NULL;
    if (vmlet_kube_get(kube, "/api/v1/namespaces", &list, &err) < 0)
        fail_msg("%s", err.msg);
    bool seen_default = false, seen_system = false;
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(list, "items"))
    {
        const cJSON *name =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(item, "metadata"), "name");
        seen_default |= cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0;
        seen_system |= cJSON_IsString(name) && strcmp(name->valuestring, "kube-system") == 0;
    }
    assert_true(seen_default);
    assert_true(seen_system);
    cJSON_Delete(list);
    vmlet_kube_destroy(&kube);
}

static void test_token(void **state)
{
    (void)state;
    s_need_bed();
    vmlet_kube_config_t config = {.server = s_bed.url, .ca_file = s_bed.ca, .token = s_bed.token};
    s_assert_lists_namespaces(&config);
}

static void test_client_certificate(void **state)
{
    (void)state;
    s_need_bed();
    vmlet_kube_config_t files = {.server = s_bed.url,
                                 .ca_file = s_bed.ca,
                                 .client_cert_file = s_bed.admin_cert,
                                 .client_key_file = s_bed.admin_key};
    s_assert_lists_namespaces(&files);

    // The same material as PEM text (kubeconfig *-data), through curl blobs.
    char *ca = s_slurp(s_bed.ca), *cert = s_slurp(s_bed.admin_cert),
         *key = s_slurp(s_bed.admin_key);
    vmlet_kube_config_t blobs = {
        .server = s_bed.url, .ca_data = ca, .client_cert_data = cert, .client_key_data = key};
    s_assert_lists_namespaces(&blobs);
    free(ca);
    free(cert);
    free(key);
}

static void test_kubeconfig_file(void **state)
{
    (void)state;
    s_need_bed();
    vmlet_kube_config_t config;
    vmlet_err_t err = {0};
    if (vmlet_kube_config_from_file(s_bed.kubeconfig, NULL, &config, &err) < 0)
        fail_msg("%s", err.msg);
    assert_string_equal(config.server, s_bed.url);
    s_assert_lists_namespaces(&config);
    vmlet_kube_config_clear(&config);
}

static void test_wrong_token(void **state)
{
    (void)state;
    s_need_bed();
    vmlet_kube_config_t config = {.server = s_bed.url, .ca_file = s_bed.ca, .token = "wrong"};
    vmlet_err_t err = {0};
    vmlet_kube_t *kube = vmlet_kube_new(&config, &err);
    assert_non_null(kube);
    cJSON *out = NULL;
    assert_int_equal(vmlet_kube_get(kube, "/api/v1/namespaces", &out, &err), -1);
    assert_null(out);
    char want[512];
    snprintf(want, sizeof want,
             "GET %s/api/v1/namespaces: 401 Unauthorized: Unauthorized (check the token: the "
             "API server does not know it)",
             s_bed.url);
    assert_string_equal(err.msg, want);

    // The raw request completes: the caller sees the status and the Status object.
    long status = 0;
    assert_int_equal(
        vmlet_kube_request(kube, "GET", "/api/v1/namespaces", NULL, NULL, &status, &out, &err), 0);
    assert_int_equal(status, 401);
    assert_string_equal(cJSON_GetObjectItem(out, "kind")->valuestring, "Status");
    cJSON_Delete(out);
    vmlet_kube_destroy(&kube);
}

static void test_wrong_ca(void **state)
{
    (void)state;
    s_need_bed();
    // The node's serving certificate is valid PEM but did not sign the apiserver's.
    vmlet_kube_config_t config = {
        .server = s_bed.url, .ca_file = s_bed.node_cert, .token = s_bed.token};
    vmlet_err_t err = {0};
    vmlet_kube_t *kube = vmlet_kube_new(&config, &err);
    assert_non_null(kube);
    cJSON *out = NULL;
    assert_int_equal(vmlet_kube_get(kube, "/api/v1/namespaces", &out, &err), -1);
    char want[512];
    snprintf(want, sizeof want,
             "GET %s/api/v1/namespaces: TLS: server certificate not signed by the CA in %s: ",
             s_bed.url, s_bed.node_cert);
    if (strncmp(err.msg, want, strlen(want)) != 0)
        fail_msg("expected \"%s...\", got \"%s\"", want, err.msg);
    assert_non_null(strstr(err.msg, "(check certificate-authority in the kubeconfig)"));
    print_message("wrong CA: %s\n", err.msg);
    vmlet_kube_destroy(&kube);

    // The same through certificate-authority-data: only that CA is trusted.
    char *pem = s_slurp(s_bed.node_cert);
    vmlet_kube_config_t blob = {.server = s_bed.url, .ca_data = pem, .token = s_bed.token};
    kube = vmlet_kube_new(&blob, &err);
    assert_non_null(kube);
    assert_int_equal(vmlet_kube_get(kube, "/api/v1/namespaces", &out, &err), -1);
    assert_non_null(strstr(err.msg, "TLS: server certificate not signed by the CA in "
                                    "certificate-authority-data: "));
    vmlet_kube_destroy(&kube);
    free(pem);

    // Insecure mode skips verification, as the kubeconfig flag asks.
    vmlet_kube_config_t insecure = {
        .server = s_bed.url, .token = s_bed.token, .insecure_skip_tls_verify = true};
    s_assert_lists_namespaces(&insecure);
}

static void test_forbidden(void **state)
{
    (void)state;
    s_need_bed();
    if (!s_bed.node_token)
        skip();
    vmlet_kube_config_t config = {
        .server = s_bed.url, .ca_file = s_bed.ca, .token = s_bed.node_token};
    vmlet_err_t err = {0};
    vmlet_kube_t *kube = vmlet_kube_new(&config, &err);
    assert_non_null(kube);
    cJSON *out = NULL;
    assert_int_equal(vmlet_kube_get(kube, "/api/v1/secrets", &out, &err), -1);
    assert_non_null(strstr(err.msg, "/api/v1/secrets: 403 Forbidden: secrets is forbidden: "));
    assert_non_null(strstr(err.msg, "(authenticated, but RBAC does not allow this request"));
    vmlet_kube_destroy(&kube);
}

static void s_write_token(const char *path, const char *token)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", token);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0); // as the kubelet rotates projected tokens
}

static void test_token_file_rotation(void **state)
{
    (void)state;
    s_need_bed();
    char *dir = ts_tempdir("vmlet-kube-token");
    char path[512];
    snprintf(path, sizeof path, "%s/token", dir);
    s_write_token(path, "stale-token");
    vmlet_kube_config_t config = {.server = s_bed.url, .ca_file = s_bed.ca, .token_file = path};
    vmlet_err_t err = {0};
    vmlet_kube_t *kube = vmlet_kube_new(&config, &err);
    assert_non_null(kube);
    cJSON *out = NULL;
    assert_int_equal(vmlet_kube_get(kube, "/api/v1/namespaces/default", &out, &err), -1);
    assert_non_null(strstr(err.msg, "401 Unauthorized: Unauthorized (check the token in the "
                                    "tokenFile"));
    s_write_token(path, s_bed.token);
    if (vmlet_kube_get(kube, "/api/v1/namespaces/default", &out, &err) < 0)
        fail_msg("after rotating the token file: %s", err.msg);
    cJSON_Delete(out);
    vmlet_kube_destroy(&kube);
    unlink(path);
    rmdir(dir);
    free(dir);
}

// POST, GET, PATCH and DELETE on one client: each request resets the last one's method and body.
static void test_write_requests(void **state)
{
    (void)state;
    s_need_bed();
    vmlet_kube_config_t config = {.server = s_bed.url, .ca_file = s_bed.ca, .token = s_bed.token};
    vmlet_err_t err = {0};
    vmlet_kube_t *kube = vmlet_kube_new(&config, &err);
    assert_non_null(kube);
    char name[64], path[160], body[256];
    snprintf(name, sizeof name, "vmlet-test-%d", (int)getpid());
    snprintf(path, sizeof path, "/api/v1/namespaces/default/configmaps/%s", name);
    snprintf(body, sizeof body,
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\"},"
             "\"data\":{\"k\":\"v1\"}}",
             name);
    long status = 0;
    cJSON *out = NULL;
    assert_int_equal(vmlet_kube_request(kube, "POST", "/api/v1/namespaces/default/configmaps",
                                        "application/json", body, &status, &out, &err),
                     0);
    assert_int_equal(status, 201);
    cJSON_Delete(out);
    assert_int_equal(vmlet_kube_request(kube, "PATCH", path, "application/merge-patch+json",
                                        "{\"data\":{\"k\":\"v2\"}}", &status, &out, &err),
                     0);
    assert_int_equal(status, 200);
    cJSON_Delete(out);
    assert_int_equal(vmlet_kube_get(kube, path, &out, &err), 0);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(out, "data"), "k")->valuestring,
                        "v2");
    cJSON_Delete(out);
    assert_int_equal(vmlet_kube_request(kube, "DELETE", path, NULL, NULL, &status, &out, &err), 0);
    assert_int_equal(status, 200);
    cJSON_Delete(out);
    assert_int_equal(vmlet_kube_get(kube, path, &out, &err), -1);
    assert_non_null(strstr(err.msg, ": 404 Not Found: configmaps \""));
    vmlet_kube_destroy(&kube);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_client_certificate),
        cmocka_unit_test(test_kubeconfig_file),
        cmocka_unit_test(test_wrong_token),
        cmocka_unit_test(test_wrong_ca),
        cmocka_unit_test(test_forbidden),
        cmocka_unit_test(test_token_file_rotation),
        cmocka_unit_test(test_write_requests),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
