// The guest agent's stats parsers (guest/agent/stats.c): kernel texts in,
// figures out, as tables; and one real sample of this host's /proc.
#include "stats.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define MS 1000000ull // ns

static void test_proc_stat(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint64_t used_ns;
        uint32_t cpus;
    } cases[] = {
        // user nice system idle iowait irq softirq steal guest guest_nice
        {"cpu  100 20 30 5000 70 4 6 9 50 0\ncpu0 50 10 15 2500 35 2 3 4 25 0\n"
         "cpu1 50 10 15 2500 35 2 3 5 25 0\nintr 1 2 3\n",
         0, (100 + 20 + 30 + 4 + 6) * 10 * MS, 2},
        // old kernels: only four fields
        {"cpu 1 2 3 4\ncpu0 1 2 3 4\n", 0, 6 * 10 * MS, 1},
        // idle and iowait alone are no use
        {"cpu  0 0 0 99999 500 0 0 0 0 0\n", 0, 0, 0},
        // cpuN lines only, or nothing: no aggregate line
        {"cpu0 1 2 3 4\n", -1, 0, 1},
        {"", -1, 0, 0},
        {"cpu  x\n", -1, 0, 0},
        // a text cut off after the aggregate line still counts
        {"cpu  5 0 5 10 0 0 0 0 0 0\ncpu0 5 0 5", 0, 10 * 10 * MS, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t used = 1;
        uint32_t cpus = 99;
        int rc = stats_parse_proc_stat(cases[i].text, &used, &cpus);
        if (rc != cases[i].rc || (rc == 0 && (used != cases[i].used_ns || cpus != cases[i].cpus)))
            fail_msg("case %zu: rc %d used %llu cpus %u", i, rc, (unsigned long long)used, cpus);
    }
}

static void test_meminfo(void **state)
{
    (void)state;
    const char *text = "MemTotal:         320000 kB\nMemFree:          200000 kB\n"
                       "MemAvailable:     250000 kB\nBuffers:            1000 kB\n"
                       "Cached:            40000 kB\nActive(file):      10000 kB\n"
                       "Inactive(file):    30000 kB\nAnonPages:         65536 kB\n";
    stats_meminfo_t m;
    assert_int_equal(stats_parse_meminfo(text, &m), 0);
    assert_int_equal(m.total, 320000ull * 1024);
    assert_int_equal(m.free, 200000ull * 1024);
    assert_int_equal(m.available, 250000ull * 1024);
    assert_int_equal(m.inactive_file, 30000ull * 1024);
    assert_int_equal(m.anon, 65536ull * 1024);
    uint64_t usage, ws, rss;
    stats_memory_figures(&m, &usage, &ws, &rss);
    assert_int_equal(usage, 120000ull * 1024);
    assert_int_equal(ws, 90000ull * 1024); // usage less inactive file cache
    assert_int_equal(rss, 65536ull * 1024);

    // No MemAvailable (before 3.14): free is what surely is.
    assert_int_equal(stats_parse_meminfo("MemTotal: 100 kB\nMemFree: 40 kB\n", &m), 0);
    assert_int_equal(m.available, 40ull * 1024);
    // A working set never goes below zero, whatever the kernel says.
    m = (stats_meminfo_t){.total = 100, .free = 90, .inactive_file = 50};
    stats_memory_figures(&m, &usage, &ws, &rss);
    assert_int_equal(usage, 10);
    assert_int_equal(ws, 0);
    // Keys must start a line: "SwapFree" is not "MemFree".
    assert_int_equal(stats_parse_meminfo("MemTotal: 100 kB\nSwapFree: 4 kB\n", &m), -1);
    assert_int_equal(stats_parse_meminfo("", &m), -1);
    assert_int_equal(stats_parse_meminfo("MemTotal: kB\nMemFree: 1 kB\n", &m), -1);
}

static void test_vmstat(void **state)
{
    (void)state;
    uint64_t f, mj;
    assert_int_equal(stats_parse_vmstat("nr_free_pages 100\npgpgin 5\npgfault 123456\n"
                                        "pgmajfault 78\npgfault_x 1\n",
                                        &f, &mj),
                     0);
    assert_int_equal(f, 123456);
    assert_int_equal(mj, 78);
    // pgmajfault alone does not pass for pgfault (the key has its space).
    assert_int_equal(stats_parse_vmstat("pgmajfault 78\n", &f, &mj), -1);
    assert_int_equal(stats_parse_vmstat("pgfault 9\n", &f, &mj), 0);
    assert_int_equal(mj, 0);
}

static void test_pid_stat(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint64_t ticks;
    } cases[] = {
        {"42 (sh) S 1 42 42 0 -1 4194560 300 0 0 0 150 25 7 3 20 0 1 0 100 1000 200 "
         "18446744073709551615\n",
         0, 150 + 25 + 7 + 3},
        // a comm with spaces and parentheses of its own
        {"7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 5 0 0\n", 0, 30},
        {"7 (yes) R 1 7 7 0 -1 0 0 0 0 0 1000 2\n", -1, 0},        // cut short
        {"7 yes R 1 7 7 0 -1 0 0 0 0 0 1 2 3 4 20\n", -1, 0},      // no comm
        {"7 (x) R 1 7 7 0 -1 0 0 0 0 0 1 2 -3 4 20 0 1\n", -1, 0}, // negative
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        stats_proc_t p = {0};
        int rc = stats_parse_pid_stat(cases[i].text, &p);
        if (rc != cases[i].rc || (rc == 0 && p.ticks != cases[i].ticks))
            fail_msg("case %zu: rc %d ticks %llu", i, rc, (unsigned long long)p.ticks);
    }
}

static void test_statm(void **state)
{
    (void)state;
    uint64_t res, shr;
    assert_int_equal(stats_parse_statm("4000 16700 300 20 0 16500 0\n", &res, &shr), 0);
    assert_int_equal(res, 16700);
    assert_int_equal(shr, 300);
    assert_int_equal(stats_parse_statm("4000 16700\n", &res, &shr), -1);
    assert_int_equal(stats_parse_statm("1 10 20 0 0 0 0\n", &res, &shr), -1); // shared > resident
}

// The sampler on this host's own /proc, with this process as a
// "container": the figures are there and plausible, and a sample is cheap.
static void test_sample_here(void **state)
{
    (void)state;
    stats_container_t self = {"me", 3, (int)getpid()};
    Vmlet__StatsReply r = VMLET__STATS_REPLY__INIT;
    stats_sample(&r, &self, 1, "/");
    assert_true(r.has_cpu_ns && r.cpu_ns > 0 && r.cpus >= 1);
    assert_true(r.memory_total_bytes > r.memory_working_set_bytes);
    assert_true(r.memory_working_set_bytes > 0 && r.has_page_faults && r.page_faults > 0);
    assert_non_null(r.scratch);
    assert_true(r.scratch->capacity_bytes >= r.scratch->used_bytes);
    assert_int_equal(r.n_containers, 1);
    assert_string_equal(r.containers[0]->name, "me");
    assert_int_equal(r.containers[0]->instance, 3);
    // This test's process shares the host's PID namespace with everything
    // else, so "its" processes are all of them: at least itself.
    assert_true(r.containers[0]->processes >= 1);
    assert_true(r.containers[0]->working_set_bytes >= r.containers[0]->rss_bytes);
    assert_true(r.containers[0]->rss_bytes > 0);
    print_message("one sample here: %llu us of CPU (%u processes)\n",
                  (unsigned long long)r.sample_cpu_ns / 1000, r.containers[0]->processes);
    stats_reply_clear(&r);

    // A container whose process is gone matches nothing.
    stats_container_t gone = {"gone", 0, 0};
    Vmlet__StatsReply r2 = VMLET__STATS_REPLY__INIT;
    stats_sample(&r2, &gone, 1, NULL);
    assert_null(r2.scratch);
    assert_int_equal(r2.containers[0]->processes, 0);
    assert_int_equal(r2.containers[0]->cpu_ns, 0);
    stats_reply_clear(&r2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proc_stat), cmocka_unit_test(test_meminfo),
        cmocka_unit_test(test_vmstat),    cmocka_unit_test(test_pid_stat),
        cmocka_unit_test(test_statm),     cmocka_unit_test(test_sample_here),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
