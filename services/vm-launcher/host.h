// What this host can give to VMs: its CPUs and memory, less a reserve
// for itself. Parsing is split from reading so tests can feed it text.
#ifndef VMLET_LAUNCHER_HOST_H
#define VMLET_LAUNCHER_HOST_H

#include "vmlet/err.h"

#include <stdint.h>

typedef struct {
    int64_t cpu_millis;
    int64_t memory_bytes;
} host_resources_t;

// MemTotal from the text of /proc/meminfo, in bytes; -1 if absent.
int64_t host_parse_memtotal(const char *meminfo);

// The host's online CPUs and MemTotal.
int host_read(host_resources_t *out, vmlet_err_t *err);

// total less reserve, never below zero.
host_resources_t host_allocatable(const host_resources_t *total, const host_resources_t *reserve);

#endif
