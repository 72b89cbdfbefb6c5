// A guest's StatsReply as the PodStats the kubelet API serves (pure: no
// I/O, so unit tests call it with tables of samples).
#include "pod_stats.h"

#include "vmlet/pb.h"
#include "vmlet/xalloc.h"

#include <stdlib.h>
#include <string.h>

uint64_t pod_stats_nano_cores(uint64_t prev_cpu_ns, int64_t prev_t_ns, uint64_t cpu_ns,
                              int64_t t_ns)
{
    if (t_ns <= prev_t_ns || cpu_ns < prev_cpu_ns)
        return 0;
    // In double: CPU ns times 1e9 overflows 64 bits after 18 s of CPU.
    return (uint64_t)((double)(cpu_ns - prev_cpu_ns) * 1e9 / (double)(t_ns - prev_t_ns));
}

static const Vmlet__GuestContainerStats *s_prev_ctr(const Vmlet__StatsReply *prev,
                                                    const Vmlet__GuestContainerStats *c)
{
    for (size_t i = 0; prev && i < prev->n_containers; i++)
        if (prev->containers[i]->name && c->name &&
            strcmp(prev->containers[i]->name, c->name) == 0 &&
            prev->containers[i]->instance == c->instance)
            return prev->containers[i];
    return NULL; // a new run: no rate yet
}

static const pod_stats_ctr_t *s_host_ctr(const pod_stats_pod_t *pod, const char *name)
{
    for (size_t i = 0; name && i < pod->n_ctrs; i++)
        if (strcmp(pod->ctrs[i].name, name) == 0)
            return &pod->ctrs[i];
    return NULL;
}

uint8_t *pod_stats_pack(const pod_stats_pod_t *pod, const Vmlet__StatsReply *prev,
                        const Vmlet__StatsReply *cur, size_t *len)
{
    Vmlet__PodStats s = VMLET__POD_STATS__INIT;
    s.uid = (char *)pod->uid;
    s.namespace_ = (char *)pod->namespace_;
    s.name = (char *)pod->name;
    s.launcher_id = (char *)pod->launcher_id;
    PB_SET(&s, start_unix_ms, pod->start_unix_ms);
    PB_SET(&s, sampled_unix_ms, pod->sampled_unix_ms);
    PB_SET(&s, memory_limit_bytes, pod->memory_limit_bytes);

    Vmlet__CpuStats cpu = VMLET__CPU_STATS__INIT;
    if (cur->has_cpu_ns) {
        PB_SET(&cpu, usage_core_nanoseconds, cur->cpu_ns);
        if (prev && prev->has_cpu_ns)
            PB_SET(
                &cpu, usage_nano_cores,
                pod_stats_nano_cores(prev->cpu_ns, prev->uptime_ns, cur->cpu_ns, cur->uptime_ns));
        s.cpu = &cpu;
    }
    Vmlet__MemoryStats mem = VMLET__MEMORY_STATS__INIT;
    if (cur->has_memory_total_bytes) {
        PB_SET(&mem, available_bytes, cur->memory_available_bytes);
        PB_SET(&mem, usage_bytes, cur->memory_usage_bytes);
        PB_SET(&mem, working_set_bytes, cur->memory_working_set_bytes);
        PB_SET(&mem, rss_bytes, cur->memory_rss_bytes);
        PB_SET(&mem, page_faults, cur->page_faults);
        PB_SET(&mem, major_page_faults, cur->major_page_faults);
        s.memory = &mem;
    }
    Vmlet__NetworkInterfaceStats net = VMLET__NETWORK_INTERFACE_STATS__INIT;
    if (cur->network) {
        net.name = cur->network->name;
        PB_SET(&net, rx_bytes, cur->network->rx_bytes);
        PB_SET(&net, rx_errors, cur->network->rx_errors);
        PB_SET(&net, tx_bytes, cur->network->tx_bytes);
        PB_SET(&net, tx_errors, cur->network->tx_errors);
        s.network = &net;
    }
    Vmlet__FsStats eph = VMLET__FS_STATS__INIT;
    if (cur->scratch) {
        const Vmlet__GuestFsStats *f = cur->scratch;
        PB_SET(&eph, available_bytes, f->available_bytes);
        PB_SET(&eph, capacity_bytes, f->capacity_bytes);
        PB_SET(&eph, used_bytes, f->used_bytes);
        PB_SET(&eph, inodes_free, f->inodes_free);
        PB_SET(&eph, inodes, f->inodes);
        PB_SET(&eph, inodes_used, f->inodes_used);
        s.ephemeral_storage = &eph;
    }

    size_t n = cur->n_containers;
    Vmlet__ContainerStats *cs = vmlet_xcalloc(n + 1, sizeof *cs);
    Vmlet__ContainerStats **list = vmlet_xcalloc(n + 1, sizeof *list);
    Vmlet__CpuStats *ccpu = vmlet_xcalloc(n + 1, sizeof *ccpu);
    Vmlet__MemoryStats *cmem = vmlet_xcalloc(n + 1, sizeof *cmem);
    for (size_t i = 0; i < n; i++) {
        const Vmlet__GuestContainerStats *g = cur->containers[i];
        const pod_stats_ctr_t *h = s_host_ctr(pod, g->name);
        if (!h)
            continue; // not one of the pod's (a guest that says odd things)
        Vmlet__ContainerStats *c = &cs[s.n_containers];
        vmlet__container_stats__init(c);
        c->name = (char *)h->name;
        PB_SET(c, start_unix_ms, h->start_unix_ms);
        Vmlet__CpuStats *cc = &ccpu[s.n_containers];
        vmlet__cpu_stats__init(cc);
        PB_SET(cc, usage_core_nanoseconds, g->cpu_ns);
        const Vmlet__GuestContainerStats *p = s_prev_ctr(prev, g);
        if (p)
            PB_SET(cc, usage_nano_cores,
                   pod_stats_nano_cores(p->cpu_ns, prev->uptime_ns, g->cpu_ns, cur->uptime_ns));
        c->cpu = cc;
        Vmlet__MemoryStats *cm = &cmem[s.n_containers];
        vmlet__memory_stats__init(cm);
        // As the kubelet does for a container with a limit: what is left of
        // it; here the VM is the limit.
        if (pod->memory_limit_bytes)
            PB_SET(cm, available_bytes,
                   pod->memory_limit_bytes > g->working_set_bytes
                       ? pod->memory_limit_bytes - g->working_set_bytes
                       : 0);
        PB_SET(cm, usage_bytes, g->working_set_bytes);
        PB_SET(cm, working_set_bytes, g->working_set_bytes);
        PB_SET(cm, rss_bytes, g->rss_bytes);
        c->memory = cm;
        c->logs = (Vmlet__FsStats *)h->logs;
        list[s.n_containers++] = c;
    }
    s.containers = list;
    *len = vmlet__pod_stats__get_packed_size(&s);
    uint8_t *bytes = vmlet_xmalloc(*len + 1);
    vmlet__pod_stats__pack(&s, bytes);
    free(cs);
    free(list);
    free(ccpu);
    free(cmem);
    return bytes;
}
