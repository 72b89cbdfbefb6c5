// Probe leases in Redis (see ownership.h).
#include "ownership.h"

#include "vmlet/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Keys per script call: one round trip for many pods, without holding
// Redis for long.
#define BATCH 256

// Runs `script` over the lease keys of uids[from, from+n) and, when
// with_held, their held keys after them (KEYS[n+i]); ARGV are extra.
// Writes the integer answers into out. Returns 0 or -1 with err.
static int s_batch(vmlet_store_t *store, const char *script, const char *const *uids, size_t n,
                   bool with_held, const char *const *extra, size_t n_extra, int *out,
                   vmlet_err_t *err)
{
    size_t n_keys = with_held ? 2 * n : n;
    size_t argc = 3 + n_keys + n_extra;
    const char **argv = vmlet_xcalloc(argc, sizeof *argv);
    char **owned = vmlet_xcalloc(n_keys, sizeof *owned);
    char count[24];
    snprintf(count, sizeof count, "%zu", n_keys);
    argv[0] = "EVAL", argv[1] = script, argv[2] = count;
    for (size_t i = 0; i < n; i++) {
        owned[i] = vmlet_xasprintf("vmlet:probe-lease:%s", uids[i]);
        if (with_held)
            owned[n + i] = vmlet_xasprintf("vmlet:probe-held:%s", uids[i]);
    }
    for (size_t i = 0; i < n_keys; i++)
        argv[3 + i] = owned[i];
    for (size_t i = 0; i < n_extra; i++)
        argv[3 + n_keys + i] = extra[i];
    redisReply *r = vmlet_store_commandv(store, err, (int)argc, argv, NULL);
    int rc = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == n) {
        for (size_t i = 0; i < n; i++)
            out[i] = r->element[i]->type == REDIS_REPLY_INTEGER ? (int)r->element[i]->integer : -1;
        rc = 0;
    } else if (r) {
        vmlet_err_set(err, "probe leases: unexpected answer from Redis");
    }
    freeReplyObject(r);
    for (size_t i = 0; i < n_keys; i++)
        free(owned[i]);
    free(owned);
    free(argv);
    return rc;
}

int ownership_renew_many(vmlet_store_t *store, const char *const *uids, size_t n, const char *me,
                         int64_t lease_ms, int *ours, vmlet_err_t *err)
{
    static const char script[] =
        "local out = {} for i, k in ipairs(KEYS) do "
        "if redis.call('GET', k) == ARGV[1] then out[i] = redis.call('PEXPIRE', k, ARGV[2]) "
        "else out[i] = 0 end end return out";
    char lease[24];
    snprintf(lease, sizeof lease, "%lld", (long long)lease_ms);
    const char *extra[] = {me, lease};
    for (size_t at = 0; at < n; at += BATCH) {
        size_t k = n - at < BATCH ? n - at : BATCH;
        if (s_batch(store, script, uids + at, k, false, extra, 2, ours + at, err) < 0)
            return -1;
    }
    return 0;
}

int ownership_states(vmlet_store_t *store, const char *const *uids, size_t n,
                     ownership_state_t *states, vmlet_err_t *err)
{
    // KEYS[i] the lease, KEYS[n+i] the held marker.
    static const char script[] = "local n = #KEYS / 2 local out = {} for i = 1, n do "
                                 "if redis.call('EXISTS', KEYS[i]) == 1 then out[i] = 1 "
                                 "elseif redis.call('EXISTS', KEYS[n + i]) == 1 then out[i] = 2 "
                                 "else out[i] = 0 end end return out";
    int *answers = vmlet_xcalloc(n ? n : 1, sizeof *answers);
    int rc = 0;
    for (size_t at = 0; at < n && rc == 0; at += BATCH) {
        size_t k = n - at < BATCH ? n - at : BATCH;
        rc = s_batch(store, script, uids + at, k, true, NULL, 0, answers + at, err);
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        states[i] = answers[i] == 1   ? OWNERSHIP_LEASED
                    : answers[i] == 2 ? OWNERSHIP_ORPHANED
                                      : OWNERSHIP_FREE;
    free(answers);
    return rc;
}

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
        redisReply *r = vmlet_store_command(
            store, NULL, "SCAN %s MATCH vmlet:instances:prober:* COUNT 1000", cursor);
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
