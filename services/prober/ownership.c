// Probe leases in Redis (see ownership.h).
#include "ownership.h"

#include <stdio.h>
#include <string.h>

int ownership_take(vmlet_store_t *store, const char *uid, const char *me, int64_t lease_ms,
                   vmlet_err_t *err)
{
    redisReply *r = vmlet_store_command(
        store, err, "EVAL %s 2 vmlet:probe-lease:%s vmlet:probe-held:%s %s %lld",
        "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then "
        "redis.call('SET', KEYS[2], ARGV[1]) return 1 end "
        "if redis.call('GET', KEYS[1]) == ARGV[1] then "
        "redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end return 0",
        uid, uid, me, (long long)lease_ms);
    if (!r)
        return -1;
    int taken = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return taken;
}

int ownership_renew(vmlet_store_t *store, const char *uid, const char *me, int64_t lease_ms,
                    vmlet_err_t *err)
{
    redisReply *r = vmlet_store_command(
        store, err, "EVAL %s 1 vmlet:probe-lease:%s %s %lld",
        "if redis.call('GET', KEYS[1]) == ARGV[1] then "
        "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0",
        uid, me, (long long)lease_ms);
    if (!r)
        return -1;
    int ours = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ours;
}

bool ownership_orphaned(vmlet_store_t *store, const char *uid)
{
    redisReply *r = vmlet_store_command(store, NULL,
                                        "EVAL %s 2 vmlet:probe-lease:%s vmlet:probe-held:%s",
                                        "return redis.call('EXISTS', KEYS[2]) == 1 and "
                                        "redis.call('EXISTS', KEYS[1]) == 0 and 1 or 0",
                                        uid, uid);
    bool orphaned = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return orphaned;
}

void ownership_forget(vmlet_store_t *store, const char *uid, const char *me)
{
    ownership_release(store, uid, me);
    freeReplyObject(vmlet_store_command(store, NULL, "DEL vmlet:probe-held:%s", uid));
}

void ownership_release(vmlet_store_t *store, const char *uid, const char *me)
{
    freeReplyObject(vmlet_store_command(
        store, NULL, "EVAL %s 1 vmlet:probe-lease:%s %s",
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
        "return 0",
        uid, me));
}

int ownership_probers_alive(vmlet_store_t *store)
{
    int n = 0;
    char cursor[32] = "0";
    do {
        redisReply *r = vmlet_store_command(store, NULL,
                                            "SCAN %s MATCH vmlet:instances:prober:* COUNT 1000",
                                            cursor);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        n += (int)r->element[1]->elements;
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return n > 0 ? n : 1;
}
