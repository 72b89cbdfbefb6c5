// A pod's VM size (see vm_size.h).
#include "vm_size.h"

#include <stdbool.h>

typedef struct {
    int64_t cpu_limit, mem_limit, cpu_request, mem_request;
    bool cpu_unset, mem_unset; // some container has no limit
} sums_t;

static void s_sum(Vmlet__Container **cs, size_t n, bool init, sums_t *out)
{
    for (size_t i = 0; i < n; i++) {
        const Vmlet__Resources *r = cs[i]->resources;
        int64_t cpu = r && r->has_cpu_limit_millis ? r->cpu_limit_millis : 0;
        int64_t mem = r && r->has_memory_limit_bytes ? r->memory_limit_bytes : 0;
        int64_t cpu_req = r && r->has_cpu_request_millis ? r->cpu_request_millis : 0;
        int64_t mem_req = r && r->has_memory_request_bytes ? r->memory_request_bytes : 0;
        if (!(r && r->has_cpu_limit_millis))
            out->cpu_unset = true;
        if (!(r && r->has_memory_limit_bytes))
            out->mem_unset = true;
        if (init) { // one at a time: the largest counts
            out->cpu_limit = cpu > out->cpu_limit ? cpu : out->cpu_limit;
            out->mem_limit = mem > out->mem_limit ? mem : out->mem_limit;
            out->cpu_request = cpu_req > out->cpu_request ? cpu_req : out->cpu_request;
            out->mem_request = mem_req > out->mem_request ? mem_req : out->mem_request;
        } else {
            out->cpu_limit += cpu, out->mem_limit += mem;
            out->cpu_request += cpu_req, out->mem_request += mem_req;
        }
    }
}

static int64_t s_max(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

void vm_size_of(const Vmlet__PodSpec *pod, const vm_size_settings_t *s, vm_size_t *out)
{
    sums_t regular = {0}, init = {0};
    s_sum(pod->containers, pod->n_containers, false, &regular);
    s_sum(pod->init_containers, pod->n_init_containers, true, &init);
    int64_t cpu = s_max(regular.cpu_limit, init.cpu_limit);
    int64_t mem = s_max(regular.mem_limit, init.mem_limit);
    // A container without a limit may use what the defaults give the pod.
    if (regular.cpu_unset || cpu == 0)
        cpu = s_max(cpu, (int64_t)s->default_vcpus * 1000);
    if (regular.mem_unset || mem == 0)
        mem = s_max(mem, s->default_memory_bytes);
    int vcpus = (int)((cpu + 999) / 1000);
    if (vcpus < 1)
        vcpus = 1;
    if (s->max_vcpus > 0 && vcpus > s->max_vcpus)
        vcpus = s->max_vcpus;
    out->vcpus = vcpus;
    out->cpu_millis_limit = cpu < (int64_t)vcpus * 1000 ? cpu : (int64_t)vcpus * 1000;
    out->memory_bytes_limit = mem;
    // Whole MiB: VMMs take memory in MiB.
    int64_t guest = mem + s->guest_overhead_bytes;
    out->memory_bytes = (guest + (1 << 20) - 1) / (1 << 20) * (1 << 20);
    out->cpu_millis_request = s_max(regular.cpu_request, init.cpu_request);
    out->memory_bytes_request = s_max(regular.mem_request, init.mem_request);
    out->host_memory_bytes = out->memory_bytes + s->vmm_overhead_bytes;
}
