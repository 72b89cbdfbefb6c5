// Reading what the services keep in Redis (docs/redis.md): keys by
// pattern, set members, values and the protobuf records they hold.
#include "ctl.h"

#include "vmlet/xalloc.h"

#include <errno.h>
#include <string.h>

static int s_by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void s_take(redisReply *r, char ***out, size_t *n, size_t *cap)
{
    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *out = vmlet_xrealloc(*out, *cap * sizeof **out);
        }
        (*out)[(*n)++] = vmlet_xstrdup(r->element[i]->str);
    }
}

// SCAN, not KEYS: a node's Redis is shared with the services, and KEYS
// would stop them all while it walks every key.
int ctl_scan(ctl_t *c, const char *pattern, char ***keys, size_t *n, vmlet_err_t *err)
{
    char cursor[32] = "0";
    size_t cap = 0;
    *keys = NULL;
    *n = 0;
    do {
        redisReply *r =
            vmlet_store_command(c->store, err, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            ctl_keys_free(*keys, *n);
            return vmlet_err_wrap(err, "SCAN %s", pattern);
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        s_take(r->element[1], keys, n, &cap);
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    if (*n)
        qsort(*keys, *n, sizeof **keys, s_by_name);
    return 0;
}

int ctl_smembers(ctl_t *c, const char *key, char ***members, size_t *n, vmlet_err_t *err)
{
    size_t cap = 0;
    *members = NULL;
    *n = 0;
    redisReply *r = vmlet_store_command(c->store, err, "SMEMBERS %s", key);
    if (!r)
        return vmlet_err_wrap(err, "SMEMBERS %s", key);
    if (r->type == REDIS_REPLY_ARRAY)
        s_take(r, members, n, &cap);
    freeReplyObject(r);
    if (*n)
        qsort(*members, *n, sizeof **members, s_by_name);
    return 0;
}

void ctl_keys_free(char **keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

uint8_t *ctl_get(ctl_t *c, const char *key, size_t *len, vmlet_err_t *err)
{
    redisReply *r = vmlet_store_command(c->store, err, "GET %s", key);
    if (!r) {
        vmlet_err_wrap(err, "GET %s", key);
        return NULL;
    }
    uint8_t *bytes = NULL;
    if (r->type == REDIS_REPLY_STRING) {
        bytes = vmlet_xmalloc(r->len + 1);
        memcpy(bytes, r->str, r->len);
        bytes[r->len] = '\0';
        *len = r->len;
    } else {
        vmlet_err_set(err, "%s: not there", key);
        if (err)
            err->code = ENOENT;
    }
    freeReplyObject(r);
    return bytes;
}

redisReply *ctl_hgetall(ctl_t *c, const char *key, vmlet_err_t *err)
{
    redisReply *r = vmlet_store_command(c->store, err, "HGETALL %s", key);
    if (!r)
        vmlet_err_wrap(err, "HGETALL %s", key);
    return r;
}

Vmlet__VmRecord *ctl_vm_record(ctl_t *c, const char *uid, vmlet_err_t *err)
{
    char key[300];
    snprintf(key, sizeof key, "vmlet:vm:%s", uid);
    size_t len = 0;
    uint8_t *bytes = ctl_get(c, key, &len, err);
    Vmlet__VmRecord *rec = bytes ? vmlet__vm_record__unpack(NULL, len, bytes) : NULL;
    free(bytes);
    return rec;
}

Vmlet__LauncherCapacity *ctl_launcher_capacity(ctl_t *c, const char *id, vmlet_err_t *err)
{
    char key[300];
    snprintf(key, sizeof key, "vmlet:launcher:%s", id);
    size_t len = 0;
    uint8_t *bytes = ctl_get(c, key, &len, err);
    Vmlet__LauncherCapacity *cap =
        bytes ? vmlet__launcher_capacity__unpack(NULL, len, bytes) : NULL;
    free(bytes);
    return cap;
}

const char *ctl_vm_state(Vmlet__VmState state)
{
    switch (state) {
    case VMLET__VM_STATE__VM_STATE_PENDING:
        return "Pending";
    case VMLET__VM_STATE__VM_STATE_BOOTING:
        return "Booting";
    case VMLET__VM_STATE__VM_STATE_RUNNING:
        return "Running";
    case VMLET__VM_STATE__VM_STATE_STOPPING:
        return "Stopping";
    case VMLET__VM_STATE__VM_STATE_STOPPED:
        return "Stopped";
    case VMLET__VM_STATE__VM_STATE_FAILED:
        return "Failed";
    default:
        return "Unknown";
    }
}

int ctl_restarts(const Vmlet__VmRecord *rec)
{
    int n = 0;
    for (size_t i = 0; i < rec->n_init_containers; i++)
        if (rec->init_containers[i]->status)
            n += rec->init_containers[i]->status->restart_count;
    for (size_t i = 0; i < rec->n_containers; i++)
        if (rec->containers[i]->status)
            n += rec->containers[i]->status->restart_count;
    return n;
}

bool ctl_drained(ctl_t *c, const char *id)
{
    redisReply *r = vmlet_store_command(c->store, NULL, "EXISTS vmlet:launcher-drain:%s", id);
    bool drained = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return drained;
}
