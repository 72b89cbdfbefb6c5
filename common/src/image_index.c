// Reading the image index (see image_index.h).
#include "vmlet/image_index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int vmlet_image_index_lookup(vmlet_store_t *store, const char *reference,
                             vmlet_image_index_entry_t *out, vmlet_err_t *err)
{
    memset(out, 0, sizeof *out);
    redisReply *r = vmlet_store_command(store, err, "HGET vmlet:image:%s digest", reference);
    if (!r)
        return -1;
    int found = r->type == REDIS_REPLY_STRING;
    if (found)
        snprintf(out->digest, sizeof out->digest, "%s", r->str);
    freeReplyObject(r);
    if (!found)
        return 0;
    r = vmlet_store_command(store, err, "HGETALL vmlet:image-digest:%s", out->digest);
    if (!r)
        return -1;
    size_t config_len = 0;
    const char *rootfs = vmlet_store_reply_field(r, "rootfs", NULL), *size = vmlet_store_reply_field(r, "size", NULL);
    const char *config = vmlet_store_reply_field(r, "config", &config_len);
    struct stat st;
    found = rootfs && stat(rootfs, &st) == 0; // the record outlived its file: not there
    if (found) {
        snprintf(out->rootfs, sizeof out->rootfs, "%s", rootfs);
        out->size = size ? atoll(size) : 0;
        out->config = config ? vmlet__image_config__unpack(NULL, config_len,
                                                           (const uint8_t *)config)
                             : NULL;
    }
    freeReplyObject(r);
    return found;
}

void vmlet_image_index_entry_clear(vmlet_image_index_entry_t *entry)
{
    if (entry->config)
        vmlet__image_config__free_unpacked(entry->config, NULL);
    entry->config = NULL;
}
