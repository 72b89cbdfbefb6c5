// The Node as vmlet presents it: labels, taint, addresses, nodeInfo,
// capacity summed from live launchers, and conditions with honest times.
#include "testsupport.h"

#include "capacity.h"
#include "node_status.h"

#include "vmlet/timeutil.h"

#include <string.h>

static const node_identity_t identity = {
    .name = "vmlet",
    .internal_ip = "127.0.0.1",
    .kubelet_port = 10250,
    .kubelet_version = "v1.20.2-vmlet-0.1.0",
    .runtime_version = "vmlet://0.1.0",
    .os_image = "Debian GNU/Linux 12 (bookworm)",
    .kernel_version = "6.1.0",
    .architecture = "amd64",
    .machine_id = "m",
    .boot_id = "b",
    .taint = "virtual-kubelet.io/provider=vmlet:NoSchedule",
    .extra_labels = "zone=a,tier=vm",
};

static const char *s_label(const cJSON *labels, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(labels, key));
}

static void test_labels_merge_over_existing(void **state)
{
    (void)state;
    cJSON *existing = cJSON_Parse("{\"keep\":\"me\",\"type\":\"old\"}");
    cJSON *labels = node_labels(&identity, existing);
    assert_string_equal(s_label(labels, "type"), "virtual-kubelet");
    assert_string_equal(s_label(labels, "kubernetes.io/role"), "agent");
    assert_string_equal(s_label(labels, "kubernetes.io/hostname"), "vmlet");
    assert_string_equal(s_label(labels, "kubernetes.io/os"), "linux");
    assert_string_equal(s_label(labels, "kubernetes.io/arch"), "amd64");
    assert_string_equal(s_label(labels, "beta.kubernetes.io/os"), "linux");
    assert_string_equal(s_label(labels, "beta.kubernetes.io/arch"), "amd64");
    assert_string_equal(s_label(labels, "zone"), "a");
    assert_string_equal(s_label(labels, "tier"), "vm");
    assert_string_equal(s_label(labels, "keep"), "me");
    cJSON_Delete(labels);
    cJSON_Delete(existing);
}

static void test_taint_added_once_and_others_kept(void **state)
{
    (void)state;
    cJSON *existing = cJSON_Parse(
        "[{\"key\":\"node.kubernetes.io/unreachable\",\"effect\":\"NoExecute\"}]");
    cJSON *taints = node_taints(&identity, existing);
    assert_int_equal(cJSON_GetArraySize(taints), 2);
    cJSON *again = node_taints(&identity, taints);
    assert_int_equal(cJSON_GetArraySize(again), 2);
    cJSON *ours = cJSON_GetArrayItem(again, 1);
    assert_string_equal(cJSON_GetObjectItem(ours, "key")->valuestring,
                        "virtual-kubelet.io/provider");
    assert_string_equal(cJSON_GetObjectItem(ours, "value")->valuestring, "vmlet");
    assert_string_equal(cJSON_GetObjectItem(ours, "effect")->valuestring, "NoSchedule");
    node_identity_t no_taint = identity;
    no_taint.taint = "";
    cJSON *none = node_taints(&no_taint, NULL);
    assert_int_equal(cJSON_GetArraySize(none), 0);
    cJSON_Delete(none);
    cJSON_Delete(again);
    cJSON_Delete(taints);
    cJSON_Delete(existing);
}

static void test_bad_taint_and_labels_are_refused(void **state)
{
    (void)state;
    char buf[300];
    node_identity_t id = identity;
    assert_null(node_identity_check(&id, buf, sizeof buf));
    id.taint = "k=v:Sometimes";
    assert_non_null(strstr(node_identity_check(&id, buf, sizeof buf), "NoSchedule"));
    id = identity;
    id.extra_labels = "good=1,bad";
    assert_non_null(strstr(node_identity_check(&id, buf, sizeof buf), "'bad'"));
}

static void test_conditions_and_times(void **state)
{
    (void)state;
    node_conditions_t c = {0};
    assert_true(node_conditions_update(&c, 1, 1000));
    assert_string_equal(c.c[NODE_READY].status, "True");
    assert_string_equal(c.c[NODE_READY].reason, "KubeletReady");
    assert_string_equal(c.c[NODE_MEMORY_PRESSURE].status, "False");
    assert_string_equal(c.c[NODE_NETWORK_UNAVAILABLE].status, "False");
    assert_int_equal(c.c[NODE_READY].last_transition_unix, 1000);
    // Nothing changes: only the heartbeat moves.
    assert_false(node_conditions_update(&c, 1, 1010));
    assert_int_equal(c.c[NODE_READY].last_transition_unix, 1000);
    assert_int_equal(c.c[NODE_READY].last_heartbeat_unix, 1010);
    // The last launcher goes: NotReady, with a reason.
    assert_true(node_conditions_update(&c, 0, 1020));
    assert_string_equal(c.c[NODE_READY].status, "False");
    assert_string_equal(c.c[NODE_READY].reason, "NoLauncher");
    assert_int_equal(c.c[NODE_READY].last_transition_unix, 1020);
    assert_int_equal(c.c[NODE_DISK_PRESSURE].last_transition_unix, 1000);
}

static void test_adopted_transition_times_survive_a_restart(void **state)
{
    (void)state;
    cJSON *status = cJSON_Parse(
        "{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\","
        "\"lastTransitionTime\":\"2026-11-26T10:00:00Z\"},{\"type\":\"MemoryPressure\","
        "\"status\":\"Unknown\",\"lastTransitionTime\":\"2026-11-26T10:00:00Z\"}]}");
    node_conditions_t c = {0};
    node_conditions_adopt(&c, status);
    int64_t adopted;
    vmlet_parse_rfc3339("2026-11-26T10:00:00Z", &adopted);
    assert_true(node_conditions_update(&c, 1, adopted + 600)); // reasons are new to us
    assert_int_equal(c.c[NODE_READY].last_transition_unix, adopted);
    // MemoryPressure was Unknown (the controller marked it); now False: it transitions.
    assert_int_equal(c.c[NODE_MEMORY_PRESSURE].last_transition_unix, adopted + 600);
    cJSON_Delete(status);
}

static void test_status_object(void **state)
{
    (void)state;
    node_conditions_t c = {0};
    node_conditions_update(&c, 1, 1000);
    capacity_sum_t cap = {.cpu_millis = 1500, .memory_bytes = 22LL << 30, .pods = 110};
    cJSON *s = node_status(&identity, &cap, &c);
    char *text = cJSON_PrintUnformatted(s);
    assert_non_null(strstr(text, "\"capacity\":{\"cpu\":\"1500m\",\"memory\":\"23068672Ki\","
                                 "\"pods\":\"110\"}"));
    assert_non_null(strstr(text, "\"allocatable\":{\"cpu\":\"1500m\""));
    assert_non_null(strstr(text, "{\"type\":\"InternalIP\",\"address\":\"127.0.0.1\"}"));
    assert_non_null(strstr(text, "\"daemonEndpoints\":{\"kubeletEndpoint\":{\"Port\":10250}}"));
    assert_non_null(strstr(text, "\"containerRuntimeVersion\":\"vmlet://0.1.0\""));
    assert_non_null(strstr(text, "\"kubeletVersion\":\"v1.20.2-vmlet-0.1.0\""));
    assert_non_null(strstr(text, "\"operatingSystem\":\"linux\",\"architecture\":\"amd64\""));
    assert_non_null(strstr(text, "\"type\":\"Ready\",\"status\":\"True\","
                                 "\"lastHeartbeatTime\":\"1970-01-01T00:16:40Z\""));
    free(text);
    cJSON_Delete(s);
}

static void test_capacity_sums_live_launchers(void **state)
{
    (void)state;
    capacity_t *cap = capacity_new();
    Vmlet__LauncherCapacity a = VMLET__LAUNCHER_CAPACITY__INIT, b = VMLET__LAUNCHER_CAPACITY__INIT;
    a.launcher_id = "a", a.cpu_millis = 1500, a.memory_bytes = 1000, a.pods = 110;
    a.has_valid_until_unix_ms = 1, a.valid_until_unix_ms = 10000;
    b.launcher_id = "b", b.cpu_millis = 2000, b.memory_bytes = 500, b.pods = 10;
    b.has_valid_until_unix_ms = 1, b.valid_until_unix_ms = 20000;
    assert_true(capacity_update(cap, &a, 0));
    assert_true(capacity_update(cap, &b, 0));
    capacity_sum_t s = capacity_sum(cap, 5000);
    assert_int_equal(s.launchers, 2);
    assert_int_equal(s.cpu_millis, 3500);
    assert_int_equal(s.memory_bytes, 1500);
    assert_int_equal(s.pods, 120);
    // a's announcement ran out: only b counts.
    s = capacity_sum(cap, 15000);
    assert_int_equal(s.launchers, 1);
    assert_int_equal(s.cpu_millis, 2000);
    // An announcement replaces the launcher's previous one.
    b.cpu_millis = 4000;
    capacity_update(cap, &b, 15000);
    assert_int_equal(capacity_sum(cap, 16000).cpu_millis, 4000);
    assert_int_equal(capacity_sum(cap, 30000).launchers, 0);
    Vmlet__LauncherCapacity nameless = VMLET__LAUNCHER_CAPACITY__INIT;
    assert_false(capacity_update(cap, &nameless, 0));
    capacity_destroy(&cap);
    capacity_destroy(&cap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels_merge_over_existing),
        cmocka_unit_test(test_taint_added_once_and_others_kept),
        cmocka_unit_test(test_bad_taint_and_labels_are_refused),
        cmocka_unit_test(test_conditions_and_times),
        cmocka_unit_test(test_adopted_transition_times_survive_a_restart),
        cmocka_unit_test(test_status_object),
        cmocka_unit_test(test_capacity_sums_live_launchers),
    };
    return TS_RUN(tests);
}
