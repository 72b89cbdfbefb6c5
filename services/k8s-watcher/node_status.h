// The Node object vmlet presents: labels, taint, addresses, daemon
// endpoint, nodeInfo, capacity and conditions, built as JSON without I/O
// so tests can check every field.
#ifndef VMLET_WATCHER_NODE_STATUS_H
#define VMLET_WATCHER_NODE_STATUS_H

#include "capacity.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

// Who the node is. Strings are borrowed.
typedef struct {
    const char *name;
    const char *internal_ip;
    int kubelet_port;
    const char *kubelet_version;  // "v1.20.2-vmlet-0.1.0"
    const char *runtime_version;  // "vmlet://0.1.0"
    const char *os_image;         // the host's PRETTY_NAME
    const char *kernel_version;
    const char *architecture;     // "amd64"
    const char *machine_id;
    const char *boot_id;
    const char *taint;            // "key=value:Effect", or "" for none
    const char *extra_labels;     // "k=v,k2=v2", or ""
} node_identity_t;

typedef enum {
    NODE_READY,
    NODE_MEMORY_PRESSURE,
    NODE_DISK_PRESSURE,
    NODE_PID_PRESSURE,
    NODE_NETWORK_UNAVAILABLE,
    NODE_CONDITIONS
} node_condition_kind_t;

typedef struct {
    const char *status; // "True", "False", "Unknown" (static strings)
    const char *reason;
    char message[160];
    int64_t last_transition_unix;
    int64_t last_heartbeat_unix;
} node_condition_t;

typedef struct {
    node_condition_t c[NODE_CONDITIONS];
} node_conditions_t;

// Brings the conditions to what `launchers_alive` means at now_unix:
// Ready is True with launchers, False (reason NoLauncher) without; the
// pressures and NetworkUnavailable are False. A condition's transition
// time moves only when its status does. Returns true if a status, reason
// or message changed (heartbeat times always move).
bool node_conditions_update(node_conditions_t *conds, size_t launchers_alive, int64_t now_unix);

// Takes the transition times of an existing Node's status.conditions,
// so a restarted watcher does not pretend the node just became Ready.
void node_conditions_adopt(node_conditions_t *conds, const cJSON *status);

// Checks the taint and extra labels. Returns NULL when fine, else a
// message naming the bad part (static or in buf).
const char *node_identity_check(const node_identity_t *id, char *buf, size_t cap);

// metadata.labels with our labels merged over `existing` (may be NULL).
cJSON *node_labels(const node_identity_t *id, const cJSON *existing);
// spec.taints: `existing` (may be NULL) plus our taint if missing.
cJSON *node_taints(const node_identity_t *id, const cJSON *existing);
// A whole Node for POST.
cJSON *node_object(const node_identity_t *id, const capacity_sum_t *cap,
                   const node_conditions_t *conds);
// The status for PATCH nodes/<name>/status.
cJSON *node_status(const node_identity_t *id, const capacity_sum_t *cap,
                   const node_conditions_t *conds);

#endif
