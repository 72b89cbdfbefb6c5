// The image index and pull back-off in Redis (see builder_internal.h and
// docs/redis.md):
//
//   vmlet:image:<reference>         HASH digest, updated_unix_ms
//   vmlet:image-digest:<digest>     HASH rootfs, size, config (ImageConfig), blobs, last_used_unix_ms
//   vmlet:images                    SET of digests
//   vmlet:image-backoff:<reference> HASH attempts, until_unix_ms, error (expires)
#include "builder_internal.h"

#include "vmlet/timeutil.h"
#include "vmlet/xalloc.h"

#include <string.h>
#include <sys/stat.h>

#define BACKOFF_INITIAL_MS 10000 // the kubelet's image pull back-off
#define BACKOFF_MAX_MS 300000

int index_lookup(vmlet_store_t *store, const char *reference, index_entry_t *out,
                 vmlet_err_t *err)
{
    int found = vmlet_image_index_lookup(store, reference, out, err);
    if (found == 1)
        freeReplyObject(vmlet_store_command(store, err,
                                            "HSET vmlet:image-digest:%s last_used_unix_ms %lld",
                                            out->digest, (long long)vmlet_unix_ms()));
    return found;
}

int index_record(vmlet_store_t *store, const pull_t *pull, const Vmlet__ImageConfig *config,
                 vmlet_err_t *err)
{
    size_t len = vmlet__image_config__get_packed_size(config);
    uint8_t *bytes = vmlet_xmalloc(len ? len : 1);
    vmlet__image_config__pack(config, bytes);
    char now[32], size[32];
    snprintf(now, sizeof now, "%lld", (long long)vmlet_unix_ms());
    snprintf(size, sizeof size, "%lld", (long long)pull->size);
    static const char script[] =
        "redis.call('HSET', 'vmlet:image-digest:' .. ARGV[1], 'rootfs', ARGV[2], 'size', ARGV[3], "
        "'config', ARGV[4], 'blobs', ARGV[5], 'last_used_unix_ms', ARGV[6]) "
        "redis.call('SADD', 'vmlet:images', ARGV[1]) "
        "redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'updated_unix_ms', ARGV[6]) return 1";
    char key[1200];
    snprintf(key, sizeof key, "vmlet:image:%s", pull->ref.normalized);
    const char *argv[] = {"EVAL", script, "1", key, pull->digest, pull->rootfs, size,
                          (const char *)bytes, pull->blobs ? pull->blobs : "", now};
    size_t lens[10];
    for (int i = 0; i < 10; i++)
        lens[i] = argv[i] == (const char *)bytes ? len : strlen(argv[i]);
    redisReply *r = vmlet_store_commandv(store, err, 10, argv, lens);
    free(bytes);
    if (!r)
        return vmlet_err_wrap(err, "recording image %s", pull->ref.normalized);
    freeReplyObject(r);
    return 0;
}

int index_backoff_get(vmlet_store_t *store, const char *reference, backoff_state_t *out,
                      vmlet_err_t *err)
{
    memset(out, 0, sizeof *out);
    redisReply *r = vmlet_store_command(store, err, "HGETALL vmlet:image-backoff:%s", reference);
    if (!r)
        return -1;
    const char *attempts = vmlet_store_reply_field(r, "attempts", NULL), *until = vmlet_store_reply_field(r, "until_unix_ms", NULL);
    const char *error = vmlet_store_reply_field(r, "error", NULL);
    out->attempts = attempts ? atol(attempts) : 0;
    out->until_unix_ms = until ? atoll(until) : 0;
    snprintf(out->error, sizeof out->error, "%s", error ? error : "");
    freeReplyObject(r);
    return out->until_unix_ms > vmlet_unix_ms();
}

int index_backoff_failed(vmlet_store_t *store, const char *reference, const char *error,
                         vmlet_err_t *err)
{
    backoff_state_t st;
    if (index_backoff_get(store, reference, &st, err) < 0)
        return -1;
    int64_t delay = BACKOFF_INITIAL_MS;
    for (long i = 0; i < st.attempts && delay < BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    redisReply *r = vmlet_store_command(
        store, err,
        "EVAL %s 1 vmlet:image-backoff:%s %ld %lld %s",
        "redis.call('HSET', KEYS[1], 'attempts', ARGV[1], 'until_unix_ms', ARGV[2], 'error', "
        "ARGV[3]) redis.call('PEXPIRE', KEYS[1], 2 * 300000) return 1",
        reference, st.attempts + 1, (long long)(vmlet_unix_ms() + delay), error);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

int index_backoff_clear(vmlet_store_t *store, const char *reference, vmlet_err_t *err)
{
    redisReply *r = vmlet_store_command(store, err, "DEL vmlet:image-backoff:%s", reference);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}
