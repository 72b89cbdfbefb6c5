// The guest's resource figures for StatsReply: parsers of the kernel's
// texts (pure, so unit tests feed them tables of texts) and the sampler
// that reads them. The agent's side of `kubectl top`.
#ifndef VMLET_AGENT_STATS_H
#define VMLET_AGENT_STATS_H

#include "vmlet/proto/guest.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

// USER_HZ: the unit of /proc/stat and /proc/<pid>/stat times on Linux
// (fixed at 100 for user space whatever the kernel's HZ).
#define STATS_NS_PER_TICK 10000000ull

typedef struct {
    uint64_t total, free, available, inactive_file, anon;
} stats_meminfo_t;

typedef struct {
    uint64_t ticks; // utime + stime + cutime + cstime
} stats_proc_t;

// /proc/stat: CPU time used by all cores (user, nice, system, irq,
// softirq; not idle, iowait or steal) in ns, and the number of cpuN lines.
// Returns 0, or -1 when the text has no aggregate "cpu" line.
int stats_parse_proc_stat(const char *text, uint64_t *used_ns, uint32_t *cpus);
// /proc/meminfo in bytes. Returns 0, or -1 without MemTotal and MemFree.
int stats_parse_meminfo(const char *text, stats_meminfo_t *m);
// /proc/vmstat pgfault and pgmajfault. Returns 0, or -1 without pgfault.
int stats_parse_vmstat(const char *text, uint64_t *pgfault, uint64_t *pgmajfault);
// /proc/<pid>/stat (a comm may hold spaces and parentheses). Returns 0 or -1.
int stats_parse_pid_stat(const char *text, stats_proc_t *p);
// /proc/<pid>/statm: resident and shared (file-backed and shmem) pages.
// Returns 0 or -1.
int stats_parse_statm(const char *text, uint64_t *resident, uint64_t *shared);

// The whole guest's figures: usage = total - free, working set = usage -
// inactive file cache (never below 0), rss = anon.
void stats_memory_figures(const stats_meminfo_t *m, uint64_t *usage, uint64_t *working_set,
                          uint64_t *rss);

// A running container for the sampler.
typedef struct {
    const char *name;
    uint32_t instance;
    int pid; // its first process (PID 1 of its namespace)
} stats_container_t;

// Fills r (which must be __INIT'd; free with stats_reply_clear) from /proc,
// /sys and statvfs(scratch_dir) (NULL: not mounted yet). Never fails:
// what cannot be read is left unset.
void stats_sample(Vmlet__StatsReply *r, const stats_container_t *containers, size_t n,
                  const char *scratch_dir);
void stats_reply_clear(Vmlet__StatsReply *r);

#endif
