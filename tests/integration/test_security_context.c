// securityContext on a VM pod, end to end: the real control plane, the
// whole vmlet node and one VM (QEMU under TCG here) whose containers each
// carry a case. runAsNonRoot over the root busybox image (and runAsUser 0)
// leaves a container waiting with CreateContainerConfigError in the
// kubelet's words and a Failed Event; runAsUser 65534 holds for the
// process and for kubectl exec; fsGroup and supplementalGroups are
// supplementary groups, and fsGroup owns the emptyDir (setgid, group
// read-write: what the user writes there is the group's) and the
// ConfigMap's files (0400 becomes 0440, readable by uid 65534 in the group);
// readOnlyRootFilesystem fails writes to / but not to an emptyDir at /tmp;
// allowPrivilegeEscalation: false sets NoNewPrivs; capabilities drop ALL
// + add NET_BIND_SERVICE leave exactly that in CapEff, CapPrm and CapBnd,
// a plain container has containerd's default set, a non-root user none
// in effect, and a privileged one all the guest kernel has and its disks.
#include "stack.h"
#include "testsupport.h"
#include "ts_node.h"

#include "vmlet/xalloc.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 300000 // a first boot under TCG, eight containers
#define KUBECTL "%s --kubeconfig %s -n %s "
#define KARGS g->kubectl, g->kubeconfig, g->ns
#define DEFAULT_CAPS "00000000a80425fb" // containerd's default set
#define NBS_ONLY "0000000000000400"     // CAP_NET_BIND_SERVICE alone

static ts_node_t *g;

// Each running container prints its view once, then sleeps.
#define REPORT                                                                                     \
    "      echo uid=$(id -u) gid=$(id -g) groups=\"$(id -G)\"\n"                                   \
    "      grep -E '^(Cap(Eff|Prm|Bnd)|NoNewPrivs):' /proc/self/status\n"                          \
    "      echo report-done\n"

static const char *s_manifest =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: secctx-conf, namespace: %s}\n"
    "data: {key: conf-value}\n"
    "---\n"
    "apiVersion: v1\nkind: Pod\nmetadata: {name: secctx, namespace: %s}\n"
    "spec:\n  nodeName: %s\n  terminationGracePeriodSeconds: 1\n"
    "  securityContext: {fsGroup: 2000, supplementalGroups: [3000]}\n"
    "  volumes:\n"
    "  - {name: data, emptyDir: {}}\n"
    "  - {name: tmp, emptyDir: {}}\n"
    "  - {name: conf, configMap: {name: secctx-conf, defaultMode: 0400}}\n"
    "  containers:\n"
    "  - name: nonroot\n    image: %s\n    securityContext: {runAsNonRoot: true}\n"
    "    command: [sleep, '100000']\n"
    "  - name: rootuid\n    image: %s\n    securityContext: {runAsNonRoot: true, runAsUser: 0}\n"
    "    command: [sleep, '100000']\n"
    "  - name: user\n    image: %s\n    securityContext: {runAsUser: 65534}\n"
    "    volumeMounts: [{name: data, mountPath: /data}, {name: conf, mountPath: /conf}]\n"
    "    command:\n    - /bin/sh\n    - -c\n    - |\n" REPORT "      exec sleep 100000\n"
    "  - name: ro\n    image: %s\n    securityContext: {readOnlyRootFilesystem: true}\n"
    "    volumeMounts: [{name: tmp, mountPath: /tmp}]\n"
    "    command:\n    - /bin/sh\n    - -c\n    - |\n"
    "      if echo x >/rootfile; then echo root-write-ok; else echo root-write-failed; fi\n"
    "      echo x >/tmp/file && echo tmp-write-ok\n" REPORT "      exec sleep 100000\n"
    "  - name: nnp\n    image: %s\n    securityContext: {allowPrivilegeEscalation: false}\n"
    "    command:\n    - /bin/sh\n    - -c\n    - |\n" REPORT "      exec sleep 100000\n"
    "  - name: caps\n    image: %s\n"
    "    securityContext: {capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}\n"
    "    command:\n    - /bin/sh\n    - -c\n    - |\n" REPORT "      exec sleep 100000\n"
    "  - name: plain\n    image: %s\n"
    "    command:\n    - /bin/sh\n    - -c\n    - |\n" REPORT "      exec sleep 100000\n"
    "  - name: priv\n    image: %s\n    securityContext: {privileged: true}\n"
    "    command:\n    - /bin/sh\n    - -c\n    - |\n" REPORT "      exec sleep 100000\n";

// --- helpers --------------------------------------------------------------------------

static cJSON *s_pod(void)
{
    char *out = NULL;
    ts_sh(&out, KUBECTL "get pod secctx -o json", KARGS);
    cJSON *pod = cJSON_Parse(out ? out : "");
    free(out);
    return pod;
}

static const cJSON *s_status(const cJSON *pod, const char *name)
{
    const cJSON *c;
    cJSON_ArrayForEach(c,
                       cJSON_GetObjectItem(cJSON_GetObjectItem(pod, "status"), "containerStatuses"))
    {
        const char *n = cJSON_GetStringValue(cJSON_GetObjectItem(c, "name"));
        if (n && strcmp(n, name) == 0)
            return c;
    }
    return NULL;
}

static const char *s_waiting(const cJSON *pod, const char *name, const char *what)
{
    const cJSON *state = cJSON_GetObjectItem(s_status(pod, name), "state");
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(state, "waiting"), what));
}

static bool s_running(const cJSON *pod, const char *name)
{
    const cJSON *state = cJSON_GetObjectItem(s_status(pod, name), "state");
    return cJSON_GetObjectItem(state, "running") != NULL;
}

static const char *const s_runners[] = {"user", "ro", "nnp", "caps", "plain", "priv"};

// The six run, have printed their report, and the two refused wait.
static bool s_settled(void *arg)
{
    (void)arg;
    cJSON *pod = s_pod();
    bool ok = pod != NULL;
    for (size_t i = 0; ok && i < sizeof s_runners / sizeof s_runners[0]; i++)
        ok = s_running(pod, s_runners[i]);
    const char *r1 = s_waiting(pod, "nonroot", "reason"), *r2 = s_waiting(pod, "rootuid", "reason");
    ok = ok && r1 && r2 && strcmp(r1, "CreateContainerConfigError") == 0 &&
         strcmp(r2, "CreateContainerConfigError") == 0;
    cJSON_Delete(pod);
    for (size_t i = 0; ok && i < sizeof s_runners / sizeof s_runners[0]; i++) {
        char *out = NULL;
        ts_sh(&out, KUBECTL "logs secctx -c %s", KARGS, s_runners[i]);
        ok = out && strstr(out, "report-done");
        free(out);
    }
    return ok;
}

// The container's log (its report), malloc'd.
static char *s_log(const char *container)
{
    char *out = NULL;
    int rc = ts_sh(&out, KUBECTL "logs secctx -c %s", KARGS, container);
    if (rc != 0)
        fail_msg("kubectl logs -c %s: %s", container, out ? out : "");
    return out;
}

// kubectl exec's output (stdout and stderr); *rc its exit code.
static char *s_exec(const char *container, const char *cmd, int *rc)
{
    char *out = NULL;
    int code = ts_sh(&out, KUBECTL "exec secctx -c %s -- sh -c '%s'", KARGS, container, cmd);
    if (rc)
        *rc = code;
    return out;
}

static void s_expect_line(const char *text, const char *line, const char *where)
{
    char want[256];
    snprintf(want, sizeof want, "%s\n", line);
    bool found = strncmp(text, want, strlen(want)) == 0;
    char nl_want[260];
    snprintf(nl_want, sizeof nl_want, "\n%s", want);
    found = found || strstr(text, nl_want);
    if (!found)
        fail_msg("%s: no line \"%s\" in:\n%s", where, line, text);
}

// --- setup -------------------------------------------------------------------------------

static int setup(void **state)
{
    (void)state;
    g = calloc(1, sizeof *g);
    assert_int_equal(ts_node_start(g, "secctx", NULL), 0);
    char manifest[8192];
    const char *b = g->busybox;
    snprintf(manifest, sizeof manifest, s_manifest, g->ns, g->ns, g->stack.node, b, b, b, b, b, b,
             b, b);
    assert_int_equal(ts_kubectl_apply(manifest), 0);
    if (!ts_poll(s_settled, NULL, WAIT_MS)) {
        char *out = NULL;
        ts_sh(&out, KUBECTL "get pod secctx -o yaml", KARGS);
        fail_msg("the pod did not settle:\n%s", out);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_node_stop(g);
    free(g);
    return 0;
}

// --- runAsNonRoot --------------------------------------------------------------------------

static bool s_event_seen(void *arg)
{
    char *out = NULL;
    ts_sh(&out,
          KUBECTL "get events --field-selector involvedObject.name=secctx -o "
                  "jsonpath='{range .items[*]}{.reason}|{.message}{\"\\n\"}{end}'",
          KARGS);
    bool seen = out && strstr(out, (const char *)arg);
    free(out);
    return seen;
}

static void test_run_as_non_root_refused(void **state)
{
    (void)state;
    cJSON *pod = s_pod();
    const char *uid =
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(pod, "metadata"), "uid"));
    assert_non_null(uid);
    char want[512];
    snprintf(want, sizeof want,
             "container has runAsNonRoot and image will run as root (pod: \"secctx_%s(%s)\", "
             "container: nonroot)",
             g->ns, uid);
    assert_string_equal(s_waiting(pod, "nonroot", "message"), want);
    char want_uid[512];
    snprintf(want_uid, sizeof want_uid,
             "container's runAsUser breaks non-root policy (pod: \"secctx_%s(%s)\", "
             "container: rootuid)",
             g->ns, uid);
    assert_string_equal(s_waiting(pod, "rootuid", "message"), want_uid);
    // Never started: no container ID, no restarts.
    assert_null(cJSON_GetObjectItem(s_status(pod, "nonroot"), "containerID"));
    cJSON_Delete(pod);
    // The kubelet's Event: Failed, "Error: <message>".
    char event[600];
    snprintf(event, sizeof event, "Failed|Error: %s", want);
    if (!ts_poll(s_event_seen, event, 30000))
        fail_msg("no Event \"%s\"", event);
    // A kubectl exec into it has nothing to run in.
    int rc;
    char *out = s_exec("nonroot", "true", &rc);
    assert_int_not_equal(rc, 0);
    free(out);
}

// --- runAsUser, groups, fsGroup ---------------------------------------------------------------

static void test_run_as_user(void **state)
{
    (void)state;
    char *log = s_log("user");
    s_expect_line(log, "uid=65534 gid=0 groups=0 2000 3000", "user's process");
    free(log);
    int rc;
    char *out = s_exec("user", "id -u; id -G", &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "65534\n0 2000 3000\n");
    free(out);
    // A container without runAsUser runs as the image's root, with the
    // pod's groups too.
    out = s_exec("plain", "id -u; id -G", &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "0\n0 2000 3000\n");
    free(out);
}

static void test_fs_group_owns_volumes(void **state)
{
    (void)state;
    int rc;
    // The emptyDir: group 2000, setgid, group-writable; what the user
    // writes there is the group's.
    char *out =
        s_exec("user", "stat -c \"%a %g\" /data; touch /data/mine && stat -c %g /data/mine", &rc);
    if (rc != 0 || strcmp(out, "2777 2000\n2000\n") != 0)
        fail_msg("emptyDir ownership (exit %d):\n%s", rc, out);
    free(out);
    // The ConfigMap's 0400 file: 0440 and group 2000, so uid 65534 reads it.
    out = s_exec("user", "stat -L -c \"%a %g\" /conf/key; cat /conf/key", &rc);
    if (rc != 0 || strcmp(out, "440 2000\nconf-value") != 0)
        fail_msg("ConfigMap file ownership (exit %d):\n%s", rc, out);
    free(out);
}

// --- readOnlyRootFilesystem --------------------------------------------------------------------

static void test_read_only_root(void **state)
{
    (void)state;
    char *log = s_log("ro");
    s_expect_line(log, "root-write-failed", "ro's process");
    s_expect_line(log, "tmp-write-ok", "ro's process");
    free(log);
    int rc;
    char *out = s_exec("ro", "touch /etc/new 2>&1", &rc);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "Read-only file system"));
    free(out);
    out = s_exec("ro", "echo y >/tmp/other && cat /tmp/file /tmp/other", &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "x\ny\n");
    free(out);
    // Without the field the root is writable.
    out = s_exec("plain", "echo z >/rootfile && cat /rootfile", &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "z\n");
    free(out);
}

// --- allowPrivilegeEscalation ---------------------------------------------------------------

static void test_no_new_privs(void **state)
{
    (void)state;
    char *log = s_log("nnp");
    s_expect_line(log, "NoNewPrivs:\t1", "nnp's process");
    free(log);
    int rc;
    char *out = s_exec("nnp", "grep NoNewPrivs /proc/self/status", &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "NoNewPrivs:\t1\n");
    free(out);
    log = s_log("plain"); // unset means allowed (the field defaults to true)
    s_expect_line(log, "NoNewPrivs:\t0", "plain's process");
    free(log);
}

// --- capabilities ----------------------------------------------------------------------------

static void s_expect_caps(const char *container, const char *eff, const char *prm, const char *bnd)
{
    char *log = s_log(container);
    char line[64];
    snprintf(line, sizeof line, "CapPrm:\t%s", prm);
    s_expect_line(log, line, container);
    snprintf(line, sizeof line, "CapEff:\t%s", eff);
    s_expect_line(log, line, container);
    snprintf(line, sizeof line, "CapBnd:\t%s", bnd);
    s_expect_line(log, line, container);
    free(log);
}

static void test_capabilities(void **state)
{
    (void)state;
    s_expect_caps("caps", NBS_ONLY, NBS_ONLY, NBS_ONLY);
    s_expect_caps("plain", DEFAULT_CAPS, DEFAULT_CAPS, DEFAULT_CAPS);
    // Non-root: the bounding set, but nothing in effect after execve.
    s_expect_caps("user", "0000000000000000", "0000000000000000", DEFAULT_CAPS);
    // An exec session gets the container's set.
    int rc;
    char *out = s_exec("caps", "grep -E \"^Cap(Eff|Bnd):\" /proc/self/status", &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "CapEff:\t" NBS_ONLY "\nCapBnd:\t" NBS_ONLY "\n");
    free(out);
    // Without CAP_CHOWN, root cannot give a file away.
    out = s_exec("caps", "touch /f && chown 1 /f", &rc);
    assert_int_not_equal(rc, 0);
    free(out);
    out = s_exec("plain", "touch /f && chown 1 /f", &rc);
    assert_int_equal(rc, 0);
    free(out);
}

static void test_privileged(void **state)
{
    (void)state;
    // Every capability the guest kernel has.
    int rc;
    char *out = s_exec("priv", "cat /proc/sys/kernel/cap_last_cap", &rc);
    assert_int_equal(rc, 0);
    int last = atoi(out);
    free(out);
    assert_true(last >= 40);
    char all[32];
    snprintf(all, sizeof all, "%016llx", (unsigned long long)((2ULL << last) - 1));
    s_expect_caps("priv", all, all, all);
    // The guest's devices (its own disks) and a writable /sys; not so for
    // a plain container.
    const char *look = "test -b /dev/vda && echo has-vda || echo no-vda; "
                       "awk \"\\$2 == \\\"/sys\\\" { print substr(\\$4, 1, 2) }\" /proc/mounts";
    out = s_exec("priv", look, &rc);
    assert_string_equal(out, "has-vda\nrw\n");
    free(out);
    out = s_exec("plain", look, &rc);
    assert_string_equal(out, "no-vda\nro\n");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_as_non_root_refused),
        cmocka_unit_test(test_run_as_user),
        cmocka_unit_test(test_fs_group_owns_volumes),
        cmocka_unit_test(test_read_only_root),
        cmocka_unit_test(test_no_new_privs),
        cmocka_unit_test(test_capabilities),
        cmocka_unit_test(test_privileged),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
