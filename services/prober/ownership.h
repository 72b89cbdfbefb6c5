// Which prober probes which pod: a Redis lease per pod,
//
//   vmlet:probe-lease:<uid>   STRING  the prober instance that holds it, PX lease
//   vmlet:probe-held:<uid>    STRING  the last holder (no expiry): a pod with
//                                     this and no lease lost its prober
//
// taken with SET NX, renewed (only by its holder, by a Lua check, many
// pods a round trip) every quarter of the lease, and deleted by its holder when it stops. A prober
// that dies loses its pods when their leases run out; the others take
// them at their next scan. A prober that cannot renew a lease (another
// holds it) stops probing that pod at once, so two instances never probe
// one pod for longer than a renewal interval.
#ifndef VMLET_PROBER_OWNERSHIP_H
#define VMLET_PROBER_OWNERSHIP_H

#include "vmlet/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    OWNERSHIP_FREE,     // nobody holds it, nobody did
    OWNERSHIP_LEASED,   // a prober holds its lease
    OWNERSHIP_ORPHANED, // it had a prober that let its lease run out (it died)
} ownership_state_t;

// The state of each of n pods, a few round trips for all. 0, or -1 with err.
int ownership_states(vmlet_store_t *store, const char *const *uids, size_t n,
                     ownership_state_t *states, vmlet_err_t *err);
// 1 taken (or already ours), 0 another holds it, -1 error.
int ownership_take(vmlet_store_t *store, const char *uid, const char *me, int64_t lease_ms,
                   vmlet_err_t *err);
// Extends the leases of n pods that are still ours: ours[i] 1 extended,
// 0 lost. Returns 0, or -1 with err (keep going: nobody else can take them
// while Redis does not answer either).
int ownership_renew_many(vmlet_store_t *store, const char *const *uids, size_t n, const char *me,
                         int64_t lease_ms, int *ours, vmlet_err_t *err);
void ownership_release(vmlet_store_t *store, const char *uid, const char *me);
// The pod is gone: its lease and the memory of its holder go too.
void ownership_forget(vmlet_store_t *store, const char *uid, const char *me);
// Prober instances alive (their presence keys), at least 1.
int ownership_probers_alive(vmlet_store_t *store);

#endif
