// vm-launcher's PodStats from the guest's samples (pod_stats_build.c):
// rates between two samples, and what goes where.
#include "pod_stats.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define S 1000000000LL

static void test_nano_cores(void **state)
{
    (void)state;
    static const struct {
        uint64_t prev_cpu, cpu;
        int64_t prev_t, t;
        uint64_t want;
    } cases[] = {
        {0, 0, 0, 10 * S, 0},
        {0, 10 * S, 0, 10 * S, 1000000000},          // one core busy
        {5 * S, 6 * S, 100 * S, 110 * S, 100000000}, // a tenth
        {0, 20 * S, 0, 10 * S, 2000000000},          // two cores
        {100 * S, 50 * S, 0, 10 * S, 0},             // the counter went down: a new VM
        {0, 10 * S, 10 * S, 10 * S, 0},              // no interval
        {0, 10 * S, 20 * S, 10 * S, 0},              // time went back
        // far past 2^64 / 1e9 ns of CPU, no overflow
        {30000 * S, 30010 * S, 0, 10 * S, 1000000000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t got =
            pod_stats_nano_cores(cases[i].prev_cpu, cases[i].prev_t, cases[i].cpu, cases[i].t);
        if (got != cases[i].want)
            fail_msg("case %zu: %llu, want %llu", i, (unsigned long long)got,
                     (unsigned long long)cases[i].want);
    }
}

static Vmlet__GuestContainerStats s_gc(const char *name, uint32_t instance, uint64_t cpu,
                                       uint64_t ws)
{
    Vmlet__GuestContainerStats c = VMLET__GUEST_CONTAINER_STATS__INIT;
    c.name = (char *)name;
    c.has_instance = c.has_cpu_ns = c.has_working_set_bytes = c.has_rss_bytes = 1;
    c.instance = instance, c.cpu_ns = cpu, c.working_set_bytes = ws, c.rss_bytes = ws / 2;
    return c;
}

static void test_pack(void **state)
{
    (void)state;
    Vmlet__GuestContainerStats p_app = s_gc("app", 0, 1 * S, 10 << 20);
    Vmlet__GuestContainerStats p_side = s_gc("side", 0, 1 * S, 1 << 20);
    Vmlet__GuestContainerStats *pl[] = {&p_app, &p_side};
    Vmlet__StatsReply prev = VMLET__STATS_REPLY__INIT;
    prev.has_cpu_ns = 1, prev.cpu_ns = 10 * S, prev.uptime_ns = 100 * S;
    prev.containers = pl, prev.n_containers = 2;

    // app used half a core; side restarted (instance 1): no rate yet; a
    // container the host does not know is left out.
    Vmlet__GuestContainerStats c_app = s_gc("app", 0, 3 * S, 74 << 20);
    Vmlet__GuestContainerStats c_side = s_gc("side", 1, 0, 2 << 20);
    Vmlet__GuestContainerStats c_odd = s_gc("odd", 0, 0, 0);
    Vmlet__GuestContainerStats *cl[] = {&c_app, &c_side, &c_odd};
    Vmlet__GuestNetStats net = VMLET__GUEST_NET_STATS__INIT;
    net.name = "eth0", net.has_rx_bytes = 1, net.rx_bytes = 12345;
    Vmlet__GuestFsStats fs = VMLET__GUEST_FS_STATS__INIT;
    fs.has_capacity_bytes = fs.has_used_bytes = 1, fs.capacity_bytes = 2u << 30, fs.used_bytes = 5;
    Vmlet__StatsReply cur = VMLET__STATS_REPLY__INIT;
    cur.has_cpu_ns = 1, cur.cpu_ns = 15 * S, cur.uptime_ns = 104 * S;
    cur.has_memory_total_bytes = 1, cur.memory_total_bytes = 320u << 20;
    cur.memory_working_set_bytes = 100u << 20, cur.memory_available_bytes = 200u << 20;
    cur.network = &net, cur.scratch = &fs;
    cur.containers = cl, cur.n_containers = 3;

    Vmlet__FsStats logs = VMLET__FS_STATS__INIT;
    logs.has_used_bytes = 1, logs.used_bytes = 4096;
    pod_stats_ctr_t ctrs[] = {{"app", 1111, &logs}, {"side", 2222, NULL}};
    pod_stats_pod_t pod = {"uid-1", "ns", "p", "l1", 1000, 5000, 320u << 20, ctrs, 2};
    size_t len;
    uint8_t *bytes = pod_stats_pack(&pod, &prev, &cur, &len);
    Vmlet__PodStats *s = vmlet__pod_stats__unpack(NULL, len, bytes);
    free(bytes);
    assert_non_null(s);
    assert_string_equal(s->uid, "uid-1");
    assert_string_equal(s->launcher_id, "l1");
    assert_int_equal(s->memory_limit_bytes, 320u << 20);
    assert_int_equal(s->cpu->usage_core_nanoseconds, 15 * S);
    assert_int_equal(s->cpu->usage_nano_cores, 1250000000); // 5 s over 4 s
    assert_int_equal(s->memory->working_set_bytes, 100u << 20);
    assert_int_equal(s->memory->available_bytes, 200u << 20);
    assert_int_equal(s->network->rx_bytes, 12345);
    assert_int_equal(s->ephemeral_storage->capacity_bytes, 2u << 30);
    assert_int_equal(s->n_containers, 2);
    assert_string_equal(s->containers[0]->name, "app");
    assert_int_equal(s->containers[0]->start_unix_ms, 1111);
    assert_int_equal(s->containers[0]->cpu->usage_nano_cores, 500000000);
    assert_int_equal(s->containers[0]->memory->working_set_bytes, 74 << 20);
    assert_int_equal(s->containers[0]->memory->available_bytes, (320u - 74) << 20);
    assert_int_equal(s->containers[0]->logs->used_bytes, 4096);
    assert_string_equal(s->containers[1]->name, "side");
    assert_false(s->containers[1]->cpu->has_usage_nano_cores);
    assert_null(s->containers[1]->logs);
    vmlet__pod_stats__free_unpacked(s, NULL);

    // The first sample: figures without rates.
    bytes = pod_stats_pack(&pod, NULL, &cur, &len);
    s = vmlet__pod_stats__unpack(NULL, len, bytes);
    free(bytes);
    assert_false(s->cpu->has_usage_nano_cores);
    assert_false(s->containers[0]->cpu->has_usage_nano_cores);
    vmlet__pod_stats__free_unpacked(s, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nano_cores),
        cmocka_unit_test(test_pack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
