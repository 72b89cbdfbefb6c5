// deploy/kubernetes/ as an operator applies it: every object is accepted
// by the real API server (kubectl apply --dry-run=server runs admission and
// validation without storing anything), and the ClusterRole grants nothing
// wider than named verbs on named resources.
#include "stack.h"

#include <stdio.h>
#include <string.h>

#define MANIFESTS VMLET_SOURCE_DIR "/deploy/kubernetes/"

// Objects in the manifests: each must be reported by the dry run.
static const char *const objects[] = {
    "namespace/vmlet",
    "serviceaccount/vmlet",
    "clusterrole.rbac.authorization.k8s.io/vmlet",
    "clusterrolebinding.rbac.authorization.k8s.io/vmlet",
    "configmap/vmlet-settings",
    "persistentvolumeclaim/vmlet-redis",
    "deployment.apps/vmlet-redis",
    "service/vmlet-redis",
    "deployment.apps/vmlet-bus",
    "service/vmlet-bus",
    "deployment.apps/vmlet-k8s-watcher",
    "deployment.apps/vmlet-status-reporter",
    "deployment.apps/vmlet-prober",
    "daemonset.apps/vmlet-vm-launcher",
    "daemonset.apps/vmlet-image-builder",
    "daemonset.apps/vmlet-kubelet-api",
};

static void test_server_dry_run_accepts_every_object(void **state)
{
    (void)state;
    // Namespaced objects are checked against their namespace, which a dry
    // run of the Namespace does not make: it must exist for real.
    assert_int_equal(ts_kubectl_namespace("vmlet"), 0);
    char *out = NULL;
    int rc = ts_kubectl(&out, "apply --dry-run=server -f %s", MANIFESTS);
    if (rc != 0)
        fail_msg("kubectl apply --dry-run=server -f deploy/kubernetes/ failed:\n%s", out);
    for (size_t i = 0; i < sizeof objects / sizeof objects[0]; i++) {
        char want[200];
        snprintf(want, sizeof want, "%s ", objects[i]);
        if (!strstr(out, want) || !strstr(strstr(out, want), "(server dry run)"))
            fail_msg("%s not in the dry run's output:\n%s", objects[i], out);
    }
    free(out);
}

// Least privilege: no "*" anywhere, and no verb that lets vmlet change
// what it only reads (secrets and configmaps are get-only).
static void test_cluster_role_is_narrow(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(
        ts_kubectl(&out, "create --dry-run=client -o json -f %s01-rbac.yaml", MANIFESTS), 0);
    // kubectl prints one JSON document per object, one after the other.
    cJSON *list = cJSON_CreateArray();
    const char *next = out;
    while (*next) {
        const char *end = NULL;
        cJSON *doc = cJSON_ParseWithOpts(next, &end, false);
        if (!doc)
            break;
        cJSON_AddItemToArray(list, doc);
        next = end + strspn(end, " \t\r\n");
    }
    free(out);
    const cJSON *item, *rule, *s;
    int roles = 0;
    cJSON_ArrayForEach(item, list)
    {
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(item, "kind");
        if (!cJSON_IsString(kind) || strcmp(kind->valuestring, "ClusterRole") != 0)
            continue;
        roles++;
        cJSON_ArrayForEach(rule, cJSON_GetObjectItemCaseSensitive(item, "rules"))
        {
            const char *fields[] = {"apiGroups", "resources", "verbs"};
            for (int f = 0; f < 3; f++)
                cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(
                                          rule, fields[f])) if (!cJSON_IsString(s) ||
                                                                strchr(s->valuestring, '*'))
                    fail_msg("ClusterRole rule with a wildcard in %s", fields[f]);
            bool secret = false, writes = false;
            cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(rule, "resources")) secret |=
                strcmp(s->valuestring, "secrets") == 0;
            cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(rule, "verbs")) writes |=
                strcmp(s->valuestring, "get") != 0;
            if (secret && writes)
                fail_msg("the ClusterRole lets vmlet do more than get Secrets");
        }
    }
    assert_int_equal(roles, 1);
    cJSON_Delete(list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_dry_run_accepts_every_object),
        cmocka_unit_test(test_cluster_role_is_narrow),
    };
    return TS_RUN(tests);
}
