// The host's resources (see host.h).
#include "host.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int64_t host_parse_memtotal(const char *meminfo)
{
    const char *line = strstr(meminfo, "MemTotal:");
    if (!line || (line != meminfo && line[-1] != '\n'))
        return -1;
    char *end;
    long long kib = strtoll(line + strlen("MemTotal:"), &end, 10);
    while (*end == ' ')
        end++;
    if (kib <= 0 || strncmp(end, "kB", 2) != 0)
        return -1;
    return (int64_t)kib * 1024;
}

int host_read(host_resources_t *out, vmlet_err_t *err)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        return vmlet_err_errno(err, errno, "counting online CPUs");
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return vmlet_err_errno(err, errno, "reading /proc/meminfo");
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    int64_t memory = host_parse_memtotal(text);
    if (memory < 0)
        return vmlet_err_set(err, "/proc/meminfo has no MemTotal line");
    out->cpu_millis = (int64_t)cpus * 1000;
    out->memory_bytes = memory;
    return 0;
}

host_resources_t host_allocatable(const host_resources_t *total, const host_resources_t *reserve)
{
    host_resources_t a = {total->cpu_millis - reserve->cpu_millis,
                          total->memory_bytes - reserve->memory_bytes};
    if (a.cpu_millis < 0)
        a.cpu_millis = 0;
    if (a.memory_bytes < 0)
        a.memory_bytes = 0;
    return a;
}
