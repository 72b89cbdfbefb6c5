// Live files volumes on a VM pod, end to end: the real control plane and
// one VM (QEMU under TCG) whose pod mounts a ConfigMap twice (with items,
// defaultMode and a per-item mode; and whole, plus one key by subPath), a
// downwardAPI volume of its labels and an optional ConfigMap that does not
// exist yet, with fsGroup. A reader loop in the guest reads a 256 KiB value
// that carries the SHA-256 of the rest, checks every read, and checks that
// two files of one data directory are of one version. The test replaces
// the ConfigMap five times, labels the pod, creates the optional ConfigMap
// and deletes the first: each change shows in the guest within 60 s (the
// deletion leaves the last content), the layout is the kubelet's
// (..data -> ..<timestamp>, top-level links, modes, group), the subPath
// file keeps its first content, an unchanged volume costs the guest
// nothing, and the reader saw no torn, missing or mixed read.
#include "stack.h"
#include "testsupport.h"
#include "ts_node.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <openssl/evp.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 240000  // a first boot under TCG
#define CHANGE_MS 60000 // a change shows in the guest by then
#define BIG_BYTES (256 << 10)
#define FS_GROUP "2000"

typedef ts_node_t fixture_t;

static fixture_t *g;

#define KUBECTL "%s --kubeconfig %s -n %s "
#define KARGS g->kubectl, g->kubeconfig, g->ns

// --- helpers --------------------------------------------------------------------------

// Runs a shell command in the reader container; its output, trailing
// newlines cut (caller frees), and exit code in *rc.
static char *s_exec(int *rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *s_exec(int *rc, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *out = NULL;
    int code = ts_sh(&out, KUBECTL "exec live -c reader -- sh -c '%s'", KARGS, cmd);
    if (rc)
        *rc = code;
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    return out;
}

// Polls the command until its output is want; the milliseconds it took, or
// fails the test after timeout_ms with the last output.
static int64_t s_wait_output(const char *cmd, const char *want, int timeout_ms)
{
    int64_t t0 = ts_now_ms();
    char *out = NULL;
    for (;;) {
        free(out);
        out = s_exec(NULL, "%s", cmd);
        if (strcmp(out, want) == 0)
            break;
        if (ts_now_ms() - t0 > timeout_ms)
            fail_msg("`%s` gave \"%s\" for %d ms, never \"%s\"", cmd, out, timeout_ms, want);
        usleep(300 * 1000); // each try is a kubectl exec: no need to hammer
    }
    free(out);
    return ts_now_ms() - t0;
}

// The 256 KiB value of version v: the SHA-256 (hex) of the rest on the
// first line, then lines that start with "v<N>" (the reader compares that
// with the `version` key of the same data directory).
static void s_big_file(int v, char *path, size_t cap)
{
    size_t len = 0;
    char *body = vmlet_xmalloc(BIG_BYTES + 128);
    for (int line = 0; len < BIG_BYTES; line++)
        len += (size_t)snprintf(body + len, BIG_BYTES + 128 - len,
                                "v%d line %06d of a value swapped whole or not at all\n", v, line);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    assert_true(EVP_Digest(body, len, md, &md_len, EVP_sha256(), NULL));
    snprintf(path, cap, "%s/big-v%d", g->stack.dir, v);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (unsigned int i = 0; i < md_len; i++)
        fprintf(f, "%02x", md[i]);
    fputc('\n', f);
    assert_int_equal(fwrite(body, 1, len, f), len);
    fclose(f);
    free(body);
}

// ConfigMap cfg at version v (create the first time, replace after): big,
// version, small; `gone` in version 1 only, `added` from version 2 on.
static void s_config(int v)
{
    char big[512];
    s_big_file(v, big, sizeof big);
    char *out = NULL;
    int rc = ts_sh(&out,
                   KUBECTL "create configmap cfg --from-file=big=%s --from-literal=version=v%d "
                           "--from-literal=small=s%d --from-literal=%s --dry-run=client -o yaml "
                           "| " KUBECTL "%s -f -",
                   KARGS, big, v, v, v == 1 ? "gone=bye" : "added=new", KARGS,
                   v == 1 ? "create" : "replace");
    if (rc != 0)
        fail_msg("configmap cfg v%d: %s", v, out);
    free(out);
}

static double s_updates(const char *kind)
{
    char series[96];
    snprintf(series, sizeof series, "vmlet_launcher_volume_updates_total{kind=\"%s\"}", kind);
    return ts_service_metric(&g->stack.launcher, series);
}

static double s_gets(void)
{
    return ts_service_metric(&g->stack.launcher,
                             "vmlet_kube_requests_total{verb=\"GET\",code=\"200\"}");
}

// --- setup ----------------------------------------------------------------------------

// The reader: reads /cfg/big through its path over and over, checking the
// checksum it carries; checks that `version` and big's version in one data
// directory of /all agree; counts into /tmp/stats (renamed into place).
static const char reader[] =
    "      n=0; torn=0; miss=0; mixed=0\n"
    "      while :; do\n"
    "        if cat /cfg/big > /tmp/r 2>/dev/null; then\n"
    "          n=$((n+1))\n"
    "          [ \"$(head -n 1 /tmp/r)\" = \"$(tail -n +2 /tmp/r | sha256sum | cut -c1-64)\" ]"
    " || torn=$((torn+1))\n"
    "        else\n"
    "          miss=$((miss+1))\n"
    "        fi\n"
    "        d=$(readlink /all/..data)\n"
    "        v=$(cat /all/$d/version 2>/dev/null)\n"
    "        b=$(sed -n 2p /all/$d/big 2>/dev/null | cut -d\" \" -f1)\n"
    "        [ \"$v\" = \"$b\" ] || mixed=$((mixed+1))\n"
    "        echo \"RESULT reads=$n torn=$torn missing=$miss mixed=$mixed\" > /tmp/stats.new\n"
    "        mv /tmp/stats.new /tmp/stats\n"
    "      done\n";

static int setup(void **state)
{
    (void)state;
    g = calloc(1, sizeof *g);
    assert_int_equal(ts_node_start(g, "livevol", NULL), 0);
    s_config(1);
    char *manifest = vmlet_xasprintf(
        "apiVersion: v1\nkind: Pod\n"
        "metadata: {name: live, namespace: %s, labels: {app: live}}\n"
        "spec:\n  nodeName: %s\n  terminationGracePeriodSeconds: 1\n"
        "  securityContext: {fsGroup: " FS_GROUP "}\n"
        "  containers:\n"
        "  - name: reader\n    image: %s\n    command:\n    - /bin/sh\n    - -c\n    - |\n%s"
        "    volumeMounts:\n"
        "    - {name: cfg, mountPath: /cfg}\n"
        "    - {name: all, mountPath: /all}\n"
        "    - {name: all, mountPath: /etc/small-sub, subPath: small}\n"
        "    - {name: labels, mountPath: /labels}\n"
        "    - {name: opt, mountPath: /opt}\n"
        "  volumes:\n"
        // defaultMode 0440 and an item's mode 0600, in decimal (JSON has no octal)
        "  - name: cfg\n    configMap:\n      name: cfg\n      defaultMode: 288\n"
        "      items: [{key: big, path: big}, {key: small, path: conf/small, mode: 384}]\n"
        "  - name: all\n    configMap: {name: cfg}\n"
        "  - name: labels\n    downwardAPI:\n"
        "      items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]\n"
        "  - name: opt\n    configMap: {name: later, optional: true}\n",
        g->ns, g->stack.node, g->busybox, reader);
    int rc = ts_node_run_pod(g, "live", 1, WAIT_MS, manifest);
    free(manifest);
    assert_int_equal(rc, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_node_stop(g);
    free(g);
    return 0;
}

// --- the cases, in order, on the one pod ----------------------------------------------

static void s_expect_match(const char *text, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("\"%s\" does not match %s", text, pattern);
}

#define DATA_DIR "\\.\\.[0-9]{4}_[0-9]{2}_[0-9]{2}_[0-9]{2}_[0-9]{2}_[0-9]{2}\\.[0-9]{9}"

// The kubelet's layout from the first write: ..data -> ..<timestamp>, each
// top-level name a link into ..data, the modes asked for, fsGroup's group.
static void s_expect_layout(const char *version)
{
    int rc;
    char *out = s_exec(&rc, "for f in /cfg/..data /all/..data /cfg/big /cfg/conf /all/small; do "
                            "readlink $f; done; ls -a /cfg | grep -c \"^\\.\\.2\"");
    assert_int_equal(rc, 0);
    s_expect_match(out, "^" DATA_DIR "\n" DATA_DIR "\n\\.\\.data/big\n\\.\\.data/conf\n"
                        "\\.\\.data/small\n[12]$");
    free(out);
    // 0440 | fsGroup's group read; 0600 | group read; directories setgid.
    out = s_exec(&rc, "stat -L -c \"%%a %%g\" /cfg/big /cfg/conf/small /cfg/conf /all/version");
    assert_int_equal(rc, 0);
    assert_string_equal(out,
                        "440 " FS_GROUP "\n640 " FS_GROUP "\n2755 " FS_GROUP "\n644 " FS_GROUP);
    free(out);
    out = s_exec(&rc, "cat /all/version; echo; sed -n 2p /cfg/big | cut -d\" \" -f1");
    char want[32];
    snprintf(want, sizeof want, "%s\n%s", version, version);
    assert_string_equal(out, want);
    free(out);
}

static void test_first_content(void **state)
{
    (void)state;
    s_expect_layout("v1");
    int rc;
    // The optional ConfigMap is missing: an empty volume (its data
    // directory only, no name a program sees).
    char *out = s_exec(&rc, "cat /all/gone /etc/small-sub /labels/labels; ls /opt | wc -l;"
                            " readlink /opt/..data");
    assert_int_equal(rc, 0);
    s_expect_match(out, "^byes1app=\"live\"0\n" DATA_DIR "$");
    free(out);
}

static void test_configmap_updates(void **state)
{
    (void)state;
    for (int v = 2; v <= 6; v++) {
        int64_t t0 = ts_now_ms();
        s_config(v);
        char want[16];
        snprintf(want, sizeof want, "v%d v%d", v, v);
        s_wait_output("echo $(cat /all/version) $(sed -n 2p /cfg/big | cut -d\" \" -f1)", want,
                      CHANGE_MS);
        print_message("ConfigMap version %d in the guest after %.1f s\n", v,
                      (double)(ts_now_ms() - t0) / 1000.0);
    }
    s_expect_layout("v6");
    int rc;
    char *out = s_exec(&rc, "cat /all/added /all/small /cfg/conf/small; ls /all");
    assert_string_equal(out, "news6s6added\nbig\nsmall\nversion"); // `gone` went
    free(out);
    // The replaced data directories go once readers are through them.
    s_wait_output("ls -a /all | grep -c \"^\\.\\.2\"", "1", 10000);
}

static void test_subpath_keeps_first(void **state)
{
    (void)state;
    int rc;
    char *out = s_exec(&rc, "cat /etc/small-sub; echo; cat /all/small");
    assert_string_equal(out, "s1\ns6");
    free(out);
}

// As on a kubelet, API data volumes are read-only in the container
// whatever the volumeMount says (these mounts do not say readOnly).
static void test_api_volumes_read_only(void **state)
{
    (void)state;
    int rc;
    char *out = s_exec(&rc, "touch /cfg/x 2>&1; touch /labels/x 2>&1; touch /tmp/x && echo tmp ok");
    print_message("writes: %s\n", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "touch: /cfg/x: Read-only file system"));
    assert_non_null(strstr(out, "touch: /labels/x: Read-only file system"));
    assert_non_null(strstr(out, "tmp ok"));
    free(out);
}

static void test_labels(void **state)
{
    (void)state;
    int64_t t0 = ts_now_ms();
    char *out = NULL;
    assert_int_equal(ts_sh(&out, KUBECTL "label pod live tier=gold", KARGS), 0);
    free(out);
    s_wait_output("cat /labels/labels", "app=\"live\"\ntier=\"gold\"", CHANGE_MS);
    print_message("new labels in the guest after %.1f s\n", (double)(ts_now_ms() - t0) / 1000.0);
}

static void test_optional_appears(void **state)
{
    (void)state;
    int64_t t0 = ts_now_ms();
    char *out = NULL;
    assert_int_equal(
        ts_sh(&out, KUBECTL "create configmap later --from-literal=hello=world", KARGS), 0);
    free(out);
    s_wait_output("cat /opt/hello; echo; readlink /opt/hello", "world\n..data/hello", CHANGE_MS);
    print_message("the optional ConfigMap in the guest after %.1f s\n",
                  (double)(ts_now_ms() - t0) / 1000.0);
}

typedef struct {
    double gets;
} gets_t;

static bool s_more_gets(void *arg)
{
    usleep(200 * 1000);
    return s_gets() >= ((gets_t *)arg)->gets;
}

// Nothing changed: the launcher reads the sources again (GETs) and sends
// the guest nothing; the projected token volume every pod has is not sent
// again either (its token is renewed at 80 % of its life, not each time).
static void test_unchanged_costs_nothing(void **state)
{
    (void)state;
    double cm = s_updates("configMap"), dw = s_updates("downwardAPI");
    assert_true(cm >= 10); // two volumes of cfg, five times
    assert_true(dw >= 1);
    assert_true(s_updates("projected") == 0);
    // Two refreshes' worth: cfg twice and later, each round.
    gets_t want = {s_gets() + 8};
    assert_true(ts_poll(s_more_gets, &want, 60000));
    assert_true(s_updates("configMap") == cm);
    assert_true(s_updates("downwardAPI") == dw);
    assert_true(s_updates("projected") == 0);
}

typedef struct {
    const char *path, *text;
} log_t;

static bool s_logged(void *arg)
{
    log_t *l = arg;
    usleep(100 * 1000);
    FILE *f = fopen(l->path, "r");
    char line[2048];
    bool seen = false;
    while (f && !seen && fgets(line, sizeof line, f))
        seen = strstr(line, l->text) && strstr(line, "not found");
    if (f)
        fclose(f);
    return seen;
}

// A source deleted later: the launcher keeps the last content, as the
// kubelet does.
static void test_deleted_source_keeps_content(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(ts_sh(&out, KUBECTL "delete configmap cfg", KARGS), 0);
    free(out);
    log_t l = {g->stack.launcher.log, "keeping the last content"};
    assert_true(ts_poll(s_logged, &l, CHANGE_MS));
    s_expect_layout("v6");
}

// The reader's verdict, after all of it.
static void test_reader_saw_no_torn_read(void **state)
{
    (void)state;
    int rc;
    char *out = s_exec(&rc, "cat /tmp/stats");
    assert_int_equal(rc, 0);
    print_message("reader: %s\n", out);
    long reads = ts_kv(out, "reads");
    assert_true(reads > 20);
    assert_int_equal(ts_kv(out, "torn"), 0);
    assert_int_equal(ts_kv(out, "missing"), 0);
    assert_int_equal(ts_kv(out, "mixed"), 0);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_content),
        cmocka_unit_test(test_configmap_updates),
        cmocka_unit_test(test_subpath_keeps_first),
        cmocka_unit_test(test_api_volumes_read_only),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_optional_appears),
        cmocka_unit_test(test_unchanged_costs_nothing),
        cmocka_unit_test(test_deleted_source_keeps_content),
        cmocka_unit_test(test_reader_saw_no_torn_read),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
