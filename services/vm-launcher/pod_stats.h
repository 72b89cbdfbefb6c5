// Resource figures of a pod's VM for `kubectl top`: every --stats-interval
// the launcher asks the guest agent (StatsRequest), and turns its
// StatsReply into a PodStats (proto/stats.proto) kept in Redis as
// vmlet:stats:<uid>, which the kubelet API serves as /stats/summary and
// /metrics/resource. The pure part (rates, the PodStats itself) is here
// for unit tests; pod_stats.c holds the I/O.
#ifndef VMLET_POD_STATS_H
#define VMLET_POD_STATS_H

#include "vmlet/proto/guest.pb-c.h"
#include "vmlet/proto/stats.pb-c.h"

#include <stddef.h>
#include <stdint.h>

// The rate of a CPU-time counter between two samples (guest times in ns)
// in nanocores. 0 when there is no interval or the counter went down (a
// new VM, or an exec session whose time left a container's sum).
uint64_t pod_stats_nano_cores(uint64_t prev_cpu_ns, int64_t prev_t_ns, uint64_t cpu_ns,
                              int64_t t_ns);

// What the host knows of one container, by name.
typedef struct {
    const char *name;
    int64_t start_unix_ms;
    const Vmlet__FsStats *logs; // its CRI logs' figures, or NULL
} pod_stats_ctr_t;

typedef struct {
    const char *uid, *namespace_, *name, *launcher_id;
    int64_t start_unix_ms, sampled_unix_ms;
    uint64_t memory_limit_bytes; // the VM's size
    const pod_stats_ctr_t *ctrs;
    size_t n_ctrs;
} pod_stats_pod_t;

// The PodStats of sample cur (prev: the one before, or NULL), packed.
// Returns the malloc'd bytes (caller frees) and their length in *len.
uint8_t *pod_stats_pack(const pod_stats_pod_t *pod, const Vmlet__StatsReply *prev,
                        const Vmlet__StatsReply *cur, size_t *len);

#endif
