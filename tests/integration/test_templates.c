// Pods restored from a template (docs/templates.md), end to end on VMs
// (QEMU under TCG) behind the real API server:
//  - two pods restored from one template have their own hostnames, MACs
//    and IPs, different bytes from /dev/urandom (read by the container:
//    the seed reached the kernel's pool), and clocks within 1 s of ours;
//  - a template whose state file is damaged: the next pod boots cold, runs,
//    and has a TemplateRestoreFailed Event; the template is made again;
//  - the launcher restarted with another kernel path makes a new template
//    (its inputs name the new path) and removes the old one.
// VMs: the template (unless an earlier test made it), "one", "two",
// "after-damage" (cold), the template again, and the new kernel's template.
#include "stack.h"
#include "testsupport.h"
#include "ts_node.h"

#include "vmlet/proto/vm.pb-c.h"
#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_MS 240000        // a first boot under TCG, images pulled
#define TEMPLATE_WAIT_MS 180000

typedef ts_node_t fixture_t;

static fixture_t *g;

#define KUBECTL "%s --kubeconfig %s -n %s "
#define KARGS g->kubectl, g->kubeconfig, g->ns

// --- helpers ------------------------------------------------------------------------------

static bool s_template_ready(void *arg)
{
    (void)arg;
    return ts_service_metric(&g->stack.launcher, "vmlet_launcher_templates_ready") >= 1;
}

static void s_expect_template_ready(const char *when)
{
    if (!ts_poll(s_template_ready, NULL, TEMPLATE_WAIT_MS)) {
        char *out = NULL;
        ts_sh(&out, "grep -i template %s | tail -20", g->stack.launcher.log);
        fail_msg("no template ready %s:\n%s", when, out);
    }
}

static char *s_out(const char *fmt, const char *pod)
{
    char *out = NULL;
    char cmd[600];
    snprintf(cmd, sizeof cmd, fmt, pod);
    if (ts_sh(&out, KUBECTL "exec %s -- sh -c '%s'", KARGS, pod, cmd) != 0)
        fail_msg("exec in %s (%s): %s", pod, cmd, out);
    out[strcspn(out, "\n")] = '\0';
    return out;
}

static char *s_pod_field(const char *pod, const char *jsonpath)
{
    char *out = NULL;
    ts_sh(&out, KUBECTL "get pod %s -o jsonpath='%s'", KARGS, pod, jsonpath);
    return out;
}

// The launcher's record of the pod (VmRecord in Redis).
static Vmlet__VmRecord *s_record(const char *pod)
{
    char *uid = s_pod_field(pod, "{.metadata.uid}");
    redisContext *c = redisConnect("127.0.0.1", g->stack.redis.port);
    redisReply *r = redisCommand(c, "AUTH %s", g->stack.redis.password);
    freeReplyObject(r);
    r = redisCommand(c, "GET vmlet:vm:%s", uid);
    Vmlet__VmRecord *rec = NULL;
    if (r && r->type == REDIS_REPLY_STRING)
        rec = vmlet__vm_record__unpack(NULL, r->len, (const uint8_t *)r->str);
    freeReplyObject(r);
    redisFree(c);
    free(uid);
    return rec;
}

static const char *s_started_by(const Vmlet__VmRecord *rec)
{
    return rec && rec->start && rec->start->vm_start ? rec->start->vm_start : "(none)";
}

static void s_run(const char *name)
{
    char manifest[1000];
    snprintf(manifest, sizeof manifest,
             "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s}\n"
             "spec:\n  nodeName: %s\n  terminationGracePeriodSeconds: 1\n"
             "  containers:\n  - name: app\n    image: %s\n    command: [sleep, '100000']\n",
             name, g->ns, g->stack.node, g->busybox);
    assert_int_equal(ts_node_run_pod(g, name, 1, WAIT_MS, manifest), 0);
}

// The one template's directory under the launcher's template dir.
static bool s_template_dir(char *out, size_t cap)
{
    char *dir = ts_bed_value("BED_DIR");
    char *found = NULL;
    ts_sh(&found, "ls -d %s/templates/???????????????? 2>/dev/null | head -1", dir);
    free(dir);
    found[strcspn(found, "\n")] = '\0';
    snprintf(out, cap, "%s", found);
    bool ok = found[0] != '\0';
    free(found);
    return ok;
}

// --- tests --------------------------------------------------------------------------------

static void test_restored_pods_have_their_own_identity(void **state)
{
    (void)state;
    s_expect_template_ready("for the first pods");
    s_run("one");
    s_run("two");
    const char *pods[] = {"one", "two"};
    char *host[2], *mac[2], *ip[2], *random[2];
    for (int i = 0; i < 2; i++) {
        Vmlet__VmRecord *rec = s_record(pods[i]);
        if (strcmp(s_started_by(rec), "template") != 0)
            fail_msg("pod %s started %s, not from the template (%s)", pods[i], s_started_by(rec),
                     rec && rec->start && rec->start->template_skipped
                         ? rec->start->template_skipped
                         : "");
        host[i] = s_out("hostname", pods[i]);
        mac[i] = s_out("cat /sys/class/net/eth0/address", pods[i]);
        ip[i] = s_pod_field(pods[i], "{.status.podIP}");
        random[i] = s_out("head -c 32 /dev/urandom | od -An -tx1 | tr -d \" \\n\"", pods[i]);
        // The guest's wall clock against ours, bracketing the exec.
        int64_t before = vmlet_unix_ms();
        char *guest = s_out("date +%%s", pods[i]);
        int64_t after = vmlet_unix_ms();
        long long t = atoll(guest);
        print_message("%s: host %s mac %s ip %s urandom %.16s... clock %lld (host %lld..%lld)\n",
                      pods[i], host[i], mac[i], ip[i], random[i], t, (long long)before / 1000,
                      (long long)after / 1000);
        // `date +%s` truncates: within 1 s means t in [before-1, after+1].
        if (t < before / 1000 - 1 || t > after / 1000 + 1)
            fail_msg("pod %s's clock says %lld, the host's %lld..%lld", pods[i], t,
                     (long long)before / 1000, (long long)after / 1000);
        free(guest);
        vmlet__vm_record__free_unpacked(rec, NULL);
    }
    assert_string_equal(host[0], "one");
    assert_string_equal(host[1], "two");
    assert_string_not_equal(mac[0], mac[1]);
    assert_string_not_equal(ip[0], ip[1]);
    assert_true(strlen(random[0]) == 64 && strlen(random[1]) == 64);
    assert_string_not_equal(random[0], random[1]);
    // Each pod's MAC is the one the launcher gave it, not the template's.
    for (int i = 0; i < 2; i++) {
        Vmlet__VmRecord *rec = s_record(pods[i]);
        assert_non_null(rec);
        assert_string_equal(mac[i], rec->mac);
        vmlet__vm_record__free_unpacked(rec, NULL);
        free(host[i]), free(mac[i]), free(ip[i]), free(random[i]);
    }
    assert_int_equal(ts_sh(NULL, KUBECTL "delete pod one two --wait=false", KARGS), 0);
}

static bool s_restore_event(void *arg)
{
    char *out = NULL;
    ts_sh(&out, KUBECTL "get events --field-selector involvedObject.name=%s", KARGS,
          (const char *)arg);
    bool seen = strstr(out, "TemplateRestoreFailed") != NULL;
    free(out);
    return seen;
}

static void test_damaged_template_boots_cold_with_an_event(void **state)
{
    (void)state;
    s_expect_template_ready("before damaging it");
    char dir[1024], path[1100];
    assert_true(s_template_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/state", dir);
    // Bytes in the middle of the device state: QEMU might even load it,
    // the checksum will not.
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(pwrite(fd, "damaged!", 8, st.st_size / 2), 8);
    close(fd);
    double builds = ts_service_metric(&g->stack.launcher,
                                      "vmlet_launcher_template_builds_total{result=\"ok\"}");
    s_run("after-damage");
    Vmlet__VmRecord *rec = s_record("after-damage");
    assert_non_null(rec);
    print_message("after-damage started %s: %s\n", s_started_by(rec),
                  rec->start && rec->start->template_skipped ? rec->start->template_skipped : "");
    assert_string_equal(s_started_by(rec), "cold");
    assert_non_null(strstr(rec->start->template_skipped, "checksum"));
    vmlet__vm_record__free_unpacked(rec, NULL);
    if (!ts_poll(s_restore_event, "after-damage", 30000)) {
        char *out = NULL;
        ts_sh(&out, KUBECTL "get events", KARGS);
        fail_msg("no TemplateRestoreFailed event:\n%s", out);
    }
    // And the template is made again.
    s_expect_template_ready("after the damaged one was dropped");
    assert_true(ts_service_metric(&g->stack.launcher,
                                  "vmlet_launcher_template_builds_total{result=\"ok\"}") >
                builds);
    assert_int_equal(ts_sh(NULL, KUBECTL "delete pod after-damage --wait=false", KARGS), 0);
}

static void test_new_kernel_path_makes_a_new_template(void **state)
{
    (void)state;
    char old_dir[1024], new_dir[1024], kernel[600], flag[700];
    assert_true(s_template_dir(old_dir, sizeof old_dir));
    // The same kernel at another path: an input of the template.
    snprintf(kernel, sizeof kernel, "%s/vmlinuz-copy", g->stack.dir);
    assert_int_equal(ts_sh(NULL, "cp %s/vmlinuz %s", VMLET_KERNEL_DIR, kernel), 0);
    snprintf(flag, sizeof flag, "--kernel=%s", kernel);
    ts_stack_service_stop(&g->stack.launcher);
    const char *extra[] = {flag, NULL};
    assert_int_equal(ts_stack_service(&g->stack, "vm-launcher", &g->stack.launcher, extra), 0);
    s_expect_template_ready("with the new kernel");
    assert_true(s_template_dir(new_dir, sizeof new_dir));
    print_message("template %s -> %s\n", old_dir, new_dir);
    assert_string_not_equal(old_dir, new_dir);
    struct stat st;
    assert_int_not_equal(stat(old_dir, &st), 0); // the old one is gone
    char *inputs = NULL;
    assert_int_equal(ts_sh(&inputs, "cat %s/inputs", new_dir), 0);
    assert_non_null(strstr(inputs, kernel));
    free(inputs);
    assert_true(ts_service_metric(&g->stack.launcher,
                                  "vmlet_launcher_template_builds_total{result=\"ok\"}") >= 1);
}

// --- setup -----------------------------------------------------------------------------

static int setup(void **state)
{
    (void)state;
    g = calloc(1, sizeof *g);
    assert_int_equal(ts_node_start(g, "templates", NULL), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_node_stop(g);
    free(g);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restored_pods_have_their_own_identity),
        cmocka_unit_test(test_damaged_template_boots_cold_with_an_event),
        cmocka_unit_test(test_new_kernel_path_makes_a_new_template),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
