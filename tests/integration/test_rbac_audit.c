// The ClusterRole in deploy/kubernetes/01-rbac.yaml is exactly what the
// services need: the services run as a ServiceAccount bound to a copy of
// it and nothing else, through a pod's whole life (a VM with a ConfigMap,
// a Secret and a projected token; a crash loop for repeated Events; its
// deletion), and the API server's audit log (the bed logs the
// vmlet-audit ServiceAccounts' requests) must show no request refused
// and every (resource, verb) the role grants used. A failing readiness
// probe repeats an Event, so its count is patched.
#include "testsupport.h"
#include "ts_node.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 240000
#define AUDIT_NS "vmlet-audit" // the bed's audit policy logs this namespace's ServiceAccounts

typedef struct {
    char resource[96];
    char verb[32];
} grant_t;

static ts_node_t *g;
static ts_service_t prober;
static char sa[64], role[64], kubeconfig[400];
static grant_t grants[64];
static size_t n_grants;

#define KUBECTL "%s --kubeconfig %s "
#define KARGS g->kubectl, g->kubeconfig

// The rules of the ClusterRole in deploy/, as the API server reads them.
static void s_load_grants(const char *kubectl, const char *admin)
{
    char *out = NULL;
    // One JSON object per document (or a List): jq picks the ClusterRole's rules.
    assert_int_equal(ts_sh(&out,
                           "%s --kubeconfig %s create --dry-run=client -o json -f "
                           "%s/deploy/kubernetes/01-rbac.yaml 2>/dev/null | jq -s -c "
                           "'[.[] | if .kind == \"List\" then .items[] else . end | "
                           "select(.kind == \"ClusterRole\")][0].rules'",
                           kubectl, admin, VMLET_SOURCE_DIR),
                     0);
    cJSON *rules = cJSON_Parse(out);
    free(out);
    assert_true(cJSON_IsArray(rules));
    const cJSON *rule;
    cJSON_ArrayForEach(rule, rules)
    {
        const cJSON *res, *verb;
        cJSON_ArrayForEach(res, cJSON_GetObjectItem(rule, "resources"))
            cJSON_ArrayForEach(verb, cJSON_GetObjectItem(rule, "verbs"))
        {
            assert_true(n_grants < 64);
            snprintf(grants[n_grants].resource, sizeof grants[0].resource, "%s", res->valuestring);
            snprintf(grants[n_grants].verb, sizeof grants[0].verb, "%s", verb->valuestring);
            n_grants++;
        }
    }
    cJSON_Delete(rules);
    assert_true(n_grants > 5);
}

// A ServiceAccount in the audited namespace bound to a copy of the role,
// and a kubeconfig with its token.
static void s_identity(const char *kubectl, const char *admin, const char *suffix)
{
    snprintf(sa, sizeof sa, "svc-%s", suffix);
    snprintf(role, sizeof role, "vmlet-audit-%s", suffix);
    char *cmd = vmlet_xasprintf(
        "%s --kubeconfig %s create namespace " AUDIT_NS " 2>/dev/null; "
        "%s --kubeconfig %s -n " AUDIT_NS " create serviceaccount %s && "
        "%s --kubeconfig %s create --dry-run=client -o json -f %s/deploy/kubernetes/01-rbac.yaml | "
        "jq -s '[.[] | if .kind == \"List\" then .items[] else . end | "
        "select(.kind == \"ClusterRole\")][0] | .metadata.name = \"%s\"' | "
        "%s --kubeconfig %s apply -f - && "
        "%s --kubeconfig %s create clusterrolebinding %s --clusterrole=%s "
        "--serviceaccount=" AUDIT_NS ":%s",
        kubectl, admin, kubectl, admin, sa, kubectl, admin, VMLET_SOURCE_DIR, role, kubectl, admin,
        kubectl, admin, role, role, sa);
    char *out = NULL;
    int rc = ts_sh(&out, "%s", cmd);
    free(cmd);
    if (rc != 0)
        fail_msg("making the audited identity: %s", out);
    free(out);
    // 1.20's token controller makes the ServiceAccount's token Secret.
    char *token = NULL;
    for (int i = 0; i < 100; i++) {
        free(token);
        ts_sh(&token,
              "%s --kubeconfig %s -n " AUDIT_NS " get secret -o json | jq -r '.items[] | "
              "select(.metadata.annotations[\"kubernetes.io/service-account.name\"]==\"%s\") | "
              ".data.token' | head -1 | base64 -d",
              kubectl, admin, sa);
        if (token[0])
            break;
        usleep(100 * 1000);
    }
    assert_true(token && token[0]);
    char *url = ts_bed_value("BED_APISERVER_URL"), *ca = ts_bed_value("BED_CA");
    char *dir = ts_tempdir("vmlet-audit-kc");
    snprintf(kubeconfig, sizeof kubeconfig, "%s/kubeconfig", dir);
    FILE *f = fopen(kubeconfig, "w");
    fprintf(f,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: bed\n  cluster: {server: '%s', "
            "certificate-authority: '%s'}\nusers:\n- name: sa\n  user: {token: '%s'}\n"
            "contexts:\n- name: sa\n  context: {cluster: bed, user: sa}\ncurrent-context: sa\n",
            url, ca, token);
    fclose(f);
    free(token);
    free(url);
    free(ca);
    free(dir); // kept until the process ends: the services read it
}

static int setup(void **state)
{
    (void)state;
    g = calloc(1, sizeof *g);
    char *kubectl = ts_bed_value("BED_KUBECTL"), *admin = ts_bed_value("BED_KUBECONFIG");
    char suffix[9];
    vmlet_random_hex(suffix, 4);
    s_load_grants(kubectl, admin);
    s_identity(kubectl, admin, suffix);
    free(kubectl);
    free(admin);
    g->service_kubeconfig = kubeconfig;
    // Node status written every 2 s (not once a minute): the run is short.
    setenv("VMLET_STATUS_INTERVAL", "2s", 1);
    assert_int_equal(ts_node_start(g, "audit", NULL), 0);
    assert_int_equal(ts_stack_service(&g->stack, "prober", &prober, NULL), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_kubectl(NULL, "delete clusterrolebinding %s --wait=false", role);
    ts_kubectl(NULL, "delete clusterrole %s --wait=false", role);
    ts_kubectl(NULL, "-n " AUDIT_NS " delete serviceaccount %s --wait=false", sa);
    ts_stack_service_stop(&prober);
    ts_node_stop(g);
    free(g);
    return 0;
}

static bool s_pod_gone(void *arg)
{
    (void)arg;
    return ts_sh(NULL, KUBECTL "-n %s get pod audited", KARGS, g->ns) != 0;
}

static void test_role_is_exactly_what_is_used(void **state)
{
    (void)state;
    char manifest[3000];
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: %s}\n"
             "data: {mode: audited}\n---\n"
             "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: %s}\n"
             "stringData: {password: s3cret}\n---\n"
             "apiVersion: v1\nkind: Pod\nmetadata: {name: audited, namespace: %s}\nspec:\n"
             "  nodeName: %s\n  terminationGracePeriodSeconds: 1\n"
             "  containers:\n"
             "  - name: app\n    image: %s\n    command: [sleep, '100000']\n"
             "    env:\n    - {name: MODE, valueFrom: {configMapKeyRef: {name: cfg, key: mode}}}\n"
             "    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}\n"
             "    volumeMounts: [{name: token, mountPath: /var/run/audit-token}]\n"
             "    readinessProbe: {exec: {command: [/bin/false]}, periodSeconds: 1}\n"
             "  volumes:\n  - name: token\n    projected:\n      sources:\n"
             "      - serviceAccountToken: {path: token, expirationSeconds: 3600}\n",
             g->ns, g->ns, g->ns, g->stack.node, g->busybox);
    assert_int_equal(ts_node_run_pod(g, "audited", 1, WAIT_MS, manifest), 0);
    // The failing probe repeats its Unhealthy Event: the reporter patches its count.
    double repeated = 0;
    for (int i = 0; i < 900 && repeated < 1; i++) {
        repeated =
            ts_service_metric(&g->stack.reporter, "vmlet_status_reporter_events_repeated_total");
        if (repeated < 1)
            usleep(100 * 1000);
    }
    assert_true(repeated >= 1);
    sleep(11); // one node lease renewal (every 10 s): an update
    // A restarted watcher adopts its Node: a patch of its labels and taints.
    // And watches are logged when they end: restarting both ends theirs.
    assert_int_equal(ts_node_restart_watcher(g), 0);
    assert_int_equal(ts_node_restart_reporter(g), 0);
    sleep(3);
    assert_int_equal(ts_sh(NULL, KUBECTL "-n %s delete pod audited --wait=false", KARGS, g->ns), 0);
    assert_true(ts_poll(s_pod_gone, NULL, 60000)); // the reporter's final delete
    // What the API server logged for this identity.
    char *log = ts_bed_value("BED_AUDIT_LOG"), *out = NULL;
    char user[160];
    snprintf(user, sizeof user, "system:serviceaccount:" AUDIT_NS ":%s", sa);
    assert_int_equal(
        ts_sh(&out,
              // A watch still open has only reached ResponseStarted.
              "jq -r 'select(.user.username==\"%s\" and (.stage==\"ResponseComplete\" or "
              ".stage==\"ResponseStarted\")) | "
              "[(.objectRef.resource + (if .objectRef.subresource then \"/\" + "
              ".objectRef.subresource else \"\" end)), .verb, (.responseStatus.code|tostring)] "
              "| join(\" \")' %s | sort | uniq -c",
              user, log),
        0);
    print_message("requests by resource, verb and code:\n%s", out);
    // Nothing refused.
    for (const char *line = out; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strstr(line, " 403") && strstr(line, " 403") < strchr(line, '\n'))
            fail_msg("a request was refused: %.*s", (int)(strchr(line, '\n') - line), line);
    // Every grant used.
    for (size_t i = 0; i < n_grants; i++) {
        char *want = vmlet_xasprintf(" %s %s ", grants[i].resource, grants[i].verb);
        bool used = strstr(out, want) != NULL;
        free(want);
        if (!used)
            fail_msg("the role grants %s %s, which no service used", grants[i].verb,
                     grants[i].resource);
    }
    free(out);
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_role_is_exactly_what_is_used),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
