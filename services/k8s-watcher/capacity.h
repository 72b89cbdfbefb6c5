// The node's capacity: what the live vm-launchers announce, summed. A
// launcher counts while its last announcement is valid; one that stops
// announcing drops out when its validity ends. No I/O: the watcher feeds
// it announcements and the time.
#ifndef VMLET_WATCHER_CAPACITY_H
#define VMLET_WATCHER_CAPACITY_H

#include "vmlet/proto/vm.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t cpu_millis;
    int64_t memory_bytes;
    int64_t pods;
    int64_t cpu_millis_used;
    int64_t memory_bytes_used;
    int64_t pods_used;
    size_t launchers; // how many are alive
} capacity_sum_t;

typedef struct _capacity_t capacity_t;

capacity_t *capacity_new(void);
void capacity_destroy(capacity_t **self_p);

// Records an announcement received at now_unix_ms. Returns false for one
// without a launcher id (ignored).
bool capacity_update(capacity_t *self, const Vmlet__LauncherCapacity *announcement,
                     int64_t now_unix_ms);

// Sums the launchers whose announcement is still valid at now_unix_ms and
// forgets the others.
capacity_sum_t capacity_sum(capacity_t *self, int64_t now_unix_ms);

#endif
