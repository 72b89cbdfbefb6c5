// Normalised pods in Redis (see pod_store.h).
#include "vmlet/pod_store.h"
#include "vmlet/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void vmlet_pod_spec_hash(const Vmlet__PodSpec *spec, char out[VMLET_POD_HASH_LEN])
{
    Vmlet__PodSpec copy = *spec;
    copy.resource_version = NULL;
    size_t len = vmlet__pod_spec__get_packed_size(&copy);
    uint8_t *bytes = vmlet_xmalloc(len);
    vmlet__pod_spec__pack(&copy, bytes);
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= bytes[i];
        h *= 1099511628211ULL;
    }
    free(bytes);
    snprintf(out, VMLET_POD_HASH_LEN, "%016llx", (unsigned long long)h);
}

static int s_ok(redisReply *r, vmlet_err_t *err, const char *what)
{
    if (!r)
        return vmlet_err_wrap(err, "%s", what);
    freeReplyObject(r);
    return 0;
}

int vmlet_pod_store_put(vmlet_store_t *store, const Vmlet__PodSpec *spec, const char *hash,
                        vmlet_err_t *err)
{
    const char *uid = spec->pod->uid;
    size_t len = vmlet__pod_spec__get_packed_size(spec);
    uint8_t *bytes = vmlet_xmalloc(len);
    vmlet__pod_spec__pack(spec, bytes);
    char key[128];
    snprintf(key, sizeof key, "vmlet:pod:%s", uid);
    // One script: the hash and the indexes change together or not at all.
    static const char script[] =
        "redis.call('HSET', KEYS[1], 'spec', ARGV[1], 'hash', ARGV[2], 'namespace', ARGV[3], "
        "'name', ARGV[4]) redis.call('SADD', 'vmlet:pods', ARGV[5]) "
        "redis.call('SET', 'vmlet:pod-name:' .. ARGV[3] .. '/' .. ARGV[4], ARGV[5]) return 1";
    const char *argv[] = {
        "EVAL",          script, "1", key, (const char *)bytes, hash, spec->pod->namespace_,
        spec->pod->name, uid};
    size_t lens[] = {4,
                     strlen(script),
                     1,
                     strlen(key),
                     len,
                     strlen(hash),
                     strlen(spec->pod->namespace_),
                     strlen(spec->pod->name),
                     strlen(uid)};
    redisReply *r = vmlet_store_commandv(store, err, 9, argv, lens);
    free(bytes);
    char what[200];
    snprintf(what, sizeof what, "storing pod %s", uid);
    return s_ok(r, err, what);
}

int vmlet_pod_store_hash(vmlet_store_t *store, const char *uid, char out[VMLET_POD_HASH_LEN],
                         vmlet_err_t *err)
{
    redisReply *r = vmlet_store_command(store, err, "HGET vmlet:pod:%s hash", uid);
    if (!r)
        return vmlet_err_wrap(err, "reading pod %s", uid);
    int found = r->type == REDIS_REPLY_STRING;
    if (found)
        snprintf(out, VMLET_POD_HASH_LEN, "%s", r->str);
    freeReplyObject(r);
    return found;
}

Vmlet__PodSpec *vmlet_pod_store_get(vmlet_store_t *store, const char *uid, vmlet_err_t *err)
{
    redisReply *r = vmlet_store_command(store, err, "HGET vmlet:pod:%s spec", uid);
    if (!r) {
        vmlet_err_wrap(err, "reading pod %s", uid);
        return NULL;
    }
    Vmlet__PodSpec *spec = NULL;
    if (r->type != REDIS_REPLY_STRING) {
        vmlet_err_set(err, "pod %s is not stored", uid);
        if (err)
            err->code = ENOENT;
    } else if (!(spec = vmlet__pod_spec__unpack(NULL, r->len, (const uint8_t *)r->str))) {
        vmlet_err_set(err, "pod %s: stored spec is not a PodSpec", uid);
    }
    freeReplyObject(r);
    return spec;
}

int vmlet_pod_store_delete(vmlet_store_t *store, const char *uid, vmlet_err_t *err)
{
    char key[128];
    snprintf(key, sizeof key, "vmlet:pod:%s", uid);
    // The name index goes only if it still names this pod: a pod deleted
    // and made again under its name has a new uid that owns the name now.
    redisReply *r = vmlet_store_command(
        store, err, "EVAL %s 1 %s %s",
        "local ns = redis.call('HGET', KEYS[1], 'namespace') "
        "local name = redis.call('HGET', KEYS[1], 'name') "
        "if ns and name then local k = 'vmlet:pod-name:' .. ns .. '/' .. name "
        "if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end end "
        "redis.call('DEL', KEYS[1]) redis.call('SREM', 'vmlet:pods', ARGV[1]) return 1",
        key, uid);
    char what[200];
    snprintf(what, sizeof what, "deleting pod %s", uid);
    return s_ok(r, err, what);
}

// Without the name index (a pod stored by a vmlet from before it, whose
// spec has not changed since): look through the pods, and write the index
// for next time.
static int s_uid_by_scan(vmlet_store_t *store, const char *namespace_, const char *name, char *uid,
                         size_t cap, vmlet_err_t *err)
{
    char **uids;
    size_t n;
    if (vmlet_pod_store_uids(store, &uids, &n, err) < 0)
        return -1;
    int found = 0;
    for (size_t i = 0; i < n && !found; i++) {
        redisReply *r =
            vmlet_store_command(store, NULL, "HMGET vmlet:pod:%s namespace name", uids[i]);
        found = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                r->element[0]->type == REDIS_REPLY_STRING &&
                r->element[1]->type == REDIS_REPLY_STRING &&
                strcmp(r->element[0]->str, namespace_) == 0 &&
                strcmp(r->element[1]->str, name) == 0 && strlen(uids[i]) < cap;
        freeReplyObject(r);
        if (found) {
            snprintf(uid, cap, "%s", uids[i]);
            freeReplyObject(vmlet_store_command(store, NULL, "SET vmlet:pod-name:%s/%s %s",
                                                namespace_, name, uid));
        }
    }
    vmlet_pod_store_free_uids(uids, n);
    return found;
}

int vmlet_pod_store_uid_of(vmlet_store_t *store, const char *namespace_, const char *name,
                           char *uid, size_t cap, vmlet_err_t *err)
{
    redisReply *r = vmlet_store_command(store, err, "GET vmlet:pod-name:%s/%s", namespace_, name);
    if (!r)
        return vmlet_err_wrap(err, "looking up pod %s/%s", namespace_, name);
    int found = r->type == REDIS_REPLY_STRING && r->len < cap;
    if (found)
        snprintf(uid, cap, "%s", r->str);
    freeReplyObject(r);
    return found ? 1 : s_uid_by_scan(store, namespace_, name, uid, cap, err);
}

int vmlet_pod_store_uids(vmlet_store_t *store, char ***uids, size_t *n, vmlet_err_t *err)
{
    *uids = NULL;
    *n = 0;
    redisReply *r = vmlet_store_command(store, err, "SMEMBERS vmlet:pods");
    if (!r)
        return vmlet_err_wrap(err, "listing pods");
    *uids = vmlet_xcalloc(r->elements, sizeof **uids);
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            (*uids)[(*n)++] = vmlet_xstrdup(r->element[i]->str);
    freeReplyObject(r);
    return 0;
}

void vmlet_pod_store_free_uids(char **uids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(uids[i]);
    free(uids);
}
