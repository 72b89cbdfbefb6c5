// What the status-reporter has heard about each pod, kept in Redis so a
// restarted reporter knows it too:
//
//   vmlet:status:<uid>   HASH  vm                       the VM's last report (VmEvent)
//                              image:<image>            "<reason>\t<message>" of a failed pull
//                              probe:<container>:<kind> "1" success, "0" failure
//                              deleting                 grace seconds, once deletion began
//
// The VM report is whole (not a delta) and numbered: an older one never
// replaces a newer one.
#ifndef VMLET_REPORTER_RECORDS_H
#define VMLET_REPORTER_RECORDS_H

#include "vmlet/proto/envelope.pb-c.h"
#include "vmlet/store.h"

typedef struct {
    redisReply *all; // HGETALL reply (owned)
    Vmlet__VmEvent *vm;
} pod_records_t;

// Loads a pod's records. Returns 0 (possibly empty) or -1 with err.
int records_load(vmlet_store_t *store, const char *uid, pod_records_t *out, vmlet_err_t *err);
void records_clear(pod_records_t *records);
// A field's value (borrowed), or NULL.
const char *records_get(const pod_records_t *records, const char *field);

// Keeps the VM report unless the stored one has a higher generation.
// Returns 1 if stored, 0 if it was older, -1 on error.
int records_put_vm(vmlet_store_t *store, const Vmlet__VmEvent *event, vmlet_err_t *err);
int records_set(vmlet_store_t *store, const char *uid, const char *field, const char *value,
                vmlet_err_t *err);
int records_unset(vmlet_store_t *store, const char *uid, const char *field, vmlet_err_t *err);
// Forgets a pod entirely (it is gone from Kubernetes).
int records_drop(vmlet_store_t *store, const char *uid, vmlet_err_t *err);

#endif
