// The reporter's records in Redis (see records.h).
#include "records.h"

#include "vmlet/xalloc.h"

#include <stdio.h>
#include <string.h>

int records_load(vmlet_store_t *store, const char *uid, pod_records_t *out, vmlet_err_t *err)
{
    *out = (pod_records_t){0};
    out->all = vmlet_store_command(store, err, "HGETALL vmlet:status:%s", uid);
    if (!out->all)
        return vmlet_err_wrap(err, "reading records of pod %s", uid);
    for (size_t i = 0; i + 1 < out->all->elements; i += 2) {
        redisReply *k = out->all->element[i], *v = out->all->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, "vm") == 0 &&
            v->type == REDIS_REPLY_STRING)
            out->vm = vmlet__vm_event__unpack(NULL, v->len, (const uint8_t *)v->str);
    }
    return 0;
}

void records_clear(pod_records_t *records)
{
    if (records->vm)
        vmlet__vm_event__free_unpacked(records->vm, NULL);
    freeReplyObject(records->all);
    *records = (pod_records_t){0};
}

const char *records_get(const pod_records_t *records, const char *field)
{
    for (size_t i = 0; records->all && i + 1 < records->all->elements; i += 2)
        if (strcmp(records->all->element[i]->str, field) == 0 &&
            records->all->element[i + 1]->type == REDIS_REPLY_STRING)
            return records->all->element[i + 1]->str;
    return NULL;
}

int records_put_vm(vmlet_store_t *store, const Vmlet__VmEvent *event, vmlet_err_t *err)
{
    const char *uid = event->pod->uid;
    size_t len = vmlet__vm_event__get_packed_size(event);
    uint8_t *bytes = vmlet_xmalloc(len);
    vmlet__vm_event__pack(event, bytes);
    char key[128], generation[32];
    snprintf(key, sizeof key, "vmlet:status:%s", uid);
    snprintf(generation, sizeof generation, "%llu", (unsigned long long)event->generation);
    static const char script[] =
        "local g = tonumber(redis.call('HGET', KEYS[1], 'vm_generation') or '-1') "
        "if g > tonumber(ARGV[2]) then return 0 end "
        "redis.call('HSET', KEYS[1], 'vm', ARGV[1], 'vm_generation', ARGV[2]) return 1";
    const char *argv[] = {"EVAL", script, "1", key, (const char *)bytes, generation};
    size_t lens[] = {4, strlen(script), 1, strlen(key), len, strlen(generation)};
    redisReply *r = vmlet_store_commandv(store, err, 6, argv, lens);
    free(bytes);
    if (!r)
        return vmlet_err_wrap(err, "storing the VM report of pod %s", uid);
    int stored = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return stored;
}

static int s_done(redisReply *r, vmlet_err_t *err, const char *uid)
{
    if (!r)
        return vmlet_err_wrap(err, "records of pod %s", uid);
    freeReplyObject(r);
    return 0;
}

int records_set(vmlet_store_t *store, const char *uid, const char *field, const char *value,
                vmlet_err_t *err)
{
    return s_done(vmlet_store_command(store, err, "HSET vmlet:status:%s %s %s", uid, field, value),
                  err, uid);
}

int records_unset(vmlet_store_t *store, const char *uid, const char *field, vmlet_err_t *err)
{
    return s_done(vmlet_store_command(store, err, "HDEL vmlet:status:%s %s", uid, field), err, uid);
}

int records_drop(vmlet_store_t *store, const char *uid, vmlet_err_t *err)
{
    return s_done(vmlet_store_command(store, err, "DEL vmlet:status:%s", uid), err, uid);
}
