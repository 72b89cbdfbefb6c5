// Pull credentials from kubernetes.io/dockerconfigjson documents, matched
// to a registry as the kubelet matches them.
#include "testsupport.h"

#include "image_requests.h"

#include <string.h>

static void s_find(const char *json, const char *registry, int want, const char *user,
                   const char *pass, const char *token)
{
    char *u, *p, *t;
    int rc = dockercfg_find(json, registry, &u, &p, &t);
    if (rc != want)
        fail_msg("%s in %s: %d, want %d", registry, json, rc, want);
    if (rc == 1) {
        if (user)
            assert_string_equal(u, user);
        if (pass)
            assert_string_equal(p, pass);
        if (token)
            assert_string_equal(t, token);
        else
            assert_null(t);
    }
    free(u);
    free(p);
    free(t);
}

static void test_registry_keys_and_auth_forms(void **state)
{
    (void)state;
    // "auth" is base64 of user:pass; scheme and path of the key do not matter.
    const char *doc = "{\"auths\":{\"https://127.0.0.1:5000/v2/\":{\"auth\":\"YWxpY2U6czNjcjN0\"},"
                      "\"https://index.docker.io/v1/\":{\"username\":\"bob\",\"password\":\"pw\"},"
                      "\"ghcr.io\":{\"identitytoken\":\"tok\"}}}";
    s_find(doc, "127.0.0.1:5000", 1, "alice", "s3cr3t", NULL);
    s_find(doc, "docker.io", 1, "bob", "pw", NULL);
    s_find(doc, "ghcr.io", 1, NULL, NULL, "tok");
    s_find(doc, "quay.io", 0, NULL, NULL, NULL);
    s_find(doc, "127.0.0.1:5001", 0, NULL, NULL, NULL);
    // A password with colons survives the split at the first one.
    s_find("{\"auths\":{\"r:1\":{\"auth\":\"dTphOmI6Yw==\"}}}", "r:1", 1, "u", "a:b:c", NULL);
}

static void test_not_a_dockerconfigjson(void **state)
{
    (void)state;
    s_find("{\"r\":{}}", "r", -1, NULL, NULL, NULL);
    s_find("not json", "r", -1, NULL, NULL, NULL);
    s_find("{\"auths\":[]}", "r", -1, NULL, NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_keys_and_auth_forms),
        cmocka_unit_test(test_not_a_dockerconfigjson),
    };
    return TS_RUN(tests);
}
