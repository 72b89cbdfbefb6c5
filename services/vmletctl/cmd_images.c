// `vmletctl images`: image-builder's index (reference -> digest -> root
// filesystem) and the pulls backing off after a failure.
#include "ctl.h"

#include <string.h>

static void s_copy_field(cJSON *row, const redisReply *h, const char *field, const char *as,
                         bool number)
{
    const char *v = vmlet_store_reply_field(h, field, NULL);
    if (!v)
        return;
    if (number)
        cJSON_AddNumberToObject(row, as, (double)atoll(v));
    else
        cJSON_AddStringToObject(row, as, v);
}

static int s_images(ctl_t *c, cJSON *list, vmlet_err_t *err)
{
    char **keys;
    size_t n;
    if (ctl_scan(c, "vmlet:image:*", &keys, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        redisReply *ref = ctl_hgetall(c, keys[i], NULL);
        const char *digest = ref ? vmlet_store_reply_field(ref, "digest", NULL) : NULL;
        cJSON *row = cJSON_CreateObject();
        ctl_add_str(row, "reference", keys[i] + strlen("vmlet:image:"));
        ctl_add_str(row, "digest", digest);
        if (ref)
            s_copy_field(row, ref, "updated_unix_ms", "updated_unix_ms", true);
        char key[400];
        snprintf(key, sizeof key, "vmlet:image-digest:%s", digest ? digest : "");
        redisReply *img = digest ? ctl_hgetall(c, key, NULL) : NULL;
        if (img) {
            s_copy_field(row, img, "size", "size_bytes", true);
            s_copy_field(row, img, "last_used_unix_ms", "last_used_unix_ms", true);
            s_copy_field(row, img, "rootfs", "rootfs", false);
        }
        freeReplyObject(img);
        freeReplyObject(ref);
        cJSON_AddItemToArray(list, row);
    }
    ctl_keys_free(keys, n);
    return 0;
}

static int s_backoff(ctl_t *c, cJSON *list, vmlet_err_t *err)
{
    char **keys;
    size_t n;
    if (ctl_scan(c, "vmlet:image-backoff:*", &keys, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        redisReply *h = ctl_hgetall(c, keys[i], NULL);
        if (!h)
            continue;
        cJSON *row = cJSON_CreateObject();
        ctl_add_str(row, "reference", keys[i] + strlen("vmlet:image-backoff:"));
        s_copy_field(row, h, "attempts", "attempts", true);
        s_copy_field(row, h, "until_unix_ms", "until_unix_ms", true);
        s_copy_field(row, h, "error", "error", false);
        freeReplyObject(h);
        cJSON_AddItemToArray(list, row);
    }
    ctl_keys_free(keys, n);
    return 0;
}

int cmd_images(ctl_t *c, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(c->err, "vmletctl: images takes no arguments\n");
        return CTL_USAGE;
    }
    vmlet_err_t err = {0};
    cJSON *doc = cJSON_CreateObject();
    if (s_images(c, cJSON_AddArrayToObject(doc, "images"), &err) < 0 ||
        s_backoff(c, cJSON_AddArrayToObject(doc, "backoff"), &err) < 0) {
        cJSON_Delete(doc);
        return ctl_fail(c, "reading the image index", &err);
    }
    static const ctl_column_t images[] = {
        {"REFERENCE", "reference", COL_TEXT}, {"DIGEST", "digest", COL_TEXT},
        {"SIZE", "size_bytes", COL_BYTES},    {"LAST-USED", "last_used_unix_ms", COL_AGE},
        {"ROOTFS", "rootfs", COL_TEXT},
    };
    static const ctl_column_t backoff[] = {
        {"REFERENCE", "reference", COL_TEXT},
        {"ATTEMPTS", "attempts", COL_TEXT},
        {"RETRY-IN", "until_unix_ms", COL_UNTIL},
        {"ERROR", "error", COL_TEXT},
    };
    if (c->json) {
        ctl_print_json(c->out, doc);
    } else {
        ctl_table(c->out, cJSON_GetObjectItem(doc, "images"), images, 5, "images built");
        fprintf(c->out, "\nPulls backing off:\n");
        ctl_table(c->out, cJSON_GetObjectItem(doc, "backoff"), backoff, 4, "failed pulls");
    }
    cJSON_Delete(doc);
    return CTL_OK;
}
