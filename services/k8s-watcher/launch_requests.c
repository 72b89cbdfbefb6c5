// LaunchRequests for pods no live launcher holds (see launch_requests.h).
#include "launch_requests.h"

#include <stdio.h>
#include <string.h>

bool launch_needed(vmlet_store_t *store, const char *uid)
{
    redisReply *r = vmlet_store_command(store, NULL, "GET vmlet:vm:%s", uid);
    if (!r)
        return false; // Redis is away: ask again when it is back
    Vmlet__VmRecord *rec = r->type == REDIS_REPLY_STRING
                               ? vmlet__vm_record__unpack(NULL, r->len, (const uint8_t *)r->str)
                               : NULL;
    freeReplyObject(r);
    if (!rec)
        return true;
    bool needed = true;
    if (rec->launcher_id) {
        redisReply *alive = vmlet_store_command(store, NULL, "EXISTS vmlet:launcher:%s",
                                                rec->launcher_id);
        needed = !(alive && alive->type == REDIS_REPLY_INTEGER && alive->integer == 1);
        freeReplyObject(alive);
    }
    vmlet__vm_record__free_unpacked(rec, NULL);
    return needed;
}

void launch_request_send(vmlet_bus_client_t *client, const Vmlet__PodSpec *spec,
                         const char *spec_hash, vmlet_log_t *log)
{
    Vmlet__LaunchRequest req = VMLET__LAUNCH_REQUEST__INIT;
    req.pod = spec->pod;
    req.spec_hash = (char *)spec_hash;
    vmlet_envelope_t env = VMLET__ENVELOPE__INIT;
    env.body_case = VMLET__ENVELOPE__BODY_LAUNCH_REQUEST;
    env.launch_request = &req;
    char item[200];
    snprintf(item, sizeof item, "launch/%s", spec->pod->uid);
    vmlet_err_t err = {0};
    if (vmlet_bus_submit(client, VMLET_QUEUE_VM_LAUNCHER, &env, item, &err) < 0)
        vmlet_log_warn(log, VMLET_KV({"pod", spec->pod->uid}), "%s", err.msg);
}
