// Keeping the image cache under its disk budget (see builder_internal.h).
// Runs on the loop, only while no pull is under way (a pull's blobs are
// not in the index until it ends).
#include "builder_internal.h"

#include "vmlet/pod_store.h"
#include "vmlet/xalloc.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char digest[160];
    char rootfs[PATH_MAX];
    int64_t last_used;
    char *blobs;
} image_t;

// Bytes used by the files directly in dir and its subdirectories (one level).
static int64_t s_usage(const char *dir)
{
    int64_t total = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) < 0)
            continue;
        total += S_ISDIR(st.st_mode) ? s_usage(path) : (int64_t)st.st_blocks * 512;
    }
    if (d)
        closedir(d);
    return total;
}

// The digests of the images pods stored in Redis use.
static zhashx_t *s_in_use(vmlet_store_t *store, vmlet_err_t *err)
{
    char **uids;
    size_t n;
    if (vmlet_pod_store_uids(store, &uids, &n, err) < 0)
        return NULL;
    zhashx_t *used = zhashx_new();
    for (size_t i = 0; i < n; i++) {
        Vmlet__PodSpec *spec = vmlet_pod_store_get(store, uids[i], NULL);
        for (size_t c = 0; spec && c < spec->n_init_containers + spec->n_containers; c++) {
            const Vmlet__Container *k = c < spec->n_init_containers
                                            ? spec->init_containers[c]
                                            : spec->containers[c - spec->n_init_containers];
            redisReply *r = k->image_normalized
                                ? vmlet_store_command(store, NULL, "HGET vmlet:image:%s digest",
                                                      k->image_normalized)
                                : NULL;
            if (r && r->type == REDIS_REPLY_STRING)
                zhashx_update(used, r->str, "");
            freeReplyObject(r);
        }
        if (spec)
            vmlet__pod_spec__free_unpacked(spec, NULL);
    }
    vmlet_pod_store_free_uids(uids, n);
    return used;
}

static int s_by_last_use(const void *a, const void *b)
{
    const image_t *x = a, *y = b;
    return (x->last_used > y->last_used) - (x->last_used < y->last_used);
}

// Every image in the index, least recently used first.
static image_t *s_images(vmlet_store_t *store, size_t *n, vmlet_err_t *err)
{
    redisReply *all = vmlet_store_command(store, err, "SMEMBERS vmlet:images");
    if (!all)
        return NULL;
    image_t *images = vmlet_xcalloc(all->elements + 1, sizeof *images);
    *n = 0;
    for (size_t i = 0; i < all->elements; i++) {
        redisReply *r = vmlet_store_command(store, NULL, "HMGET vmlet:image-digest:%s rootfs "
                                                         "last_used_unix_ms blobs",
                                            all->element[i]->str);
        if (r && r->elements == 3 && r->element[0]->type == REDIS_REPLY_STRING) {
            image_t *img = &images[(*n)++];
            snprintf(img->digest, sizeof img->digest, "%s", all->element[i]->str);
            snprintf(img->rootfs, sizeof img->rootfs, "%s", r->element[0]->str);
            img->last_used = r->element[1]->str ? atoll(r->element[1]->str) : 0;
            img->blobs = vmlet_xstrdup(r->element[2]->str ? r->element[2]->str : "");
        }
        freeReplyObject(r);
    }
    freeReplyObject(all);
    qsort(images, *n, sizeof *images, s_by_last_use);
    return images;
}

static void s_drop(vmlet_store_t *store, image_t *img, vmlet_log_t *log)
{
    unlink(img->rootfs);
    freeReplyObject(vmlet_store_command(store, NULL, "DEL vmlet:image-digest:%s", img->digest));
    freeReplyObject(vmlet_store_command(store, NULL, "SREM vmlet:images %s", img->digest));
    vmlet_log_info(log, VMLET_KV({"digest", img->digest}), "removed an image no pod uses");
    img->digest[0] = '\0'; // gone: its blobs no longer count as used
}

// Removes blob files no remaining image names.
static void s_sweep_blobs(const char *blob_dir, const image_t *images, size_t n)
{
    DIR *algs = opendir(blob_dir);
    struct dirent *a, *b;
    while (algs && (a = readdir(algs))) {
        char dir[PATH_MAX + 256];
        snprintf(dir, sizeof dir, "%s/%s", blob_dir, a->d_name);
        DIR *d = a->d_name[0] == '.' ? NULL : opendir(dir);
        while (d && (b = readdir(d))) {
            char digest[600];
            snprintf(digest, sizeof digest, "%s:%s", a->d_name, b->d_name);
            bool used = b->d_name[0] == '.' || strchr(b->d_name, '.'); // partials, . and ..
            for (size_t i = 0; !used && i < n; i++)
                used = images[i].digest[0] && strstr(images[i].blobs, digest);
            if (!used) {
                char path[PATH_MAX + 600];
                snprintf(path, sizeof path, "%s/%s", dir, b->d_name);
                unlink(path);
            }
        }
        if (d)
            closedir(d);
    }
    if (algs)
        closedir(algs);
}

int64_t gc_run(vmlet_store_t *store, const char *cache_dir, int64_t budget_bytes,
               vmlet_log_t *log, vmlet_err_t *err)
{
    int64_t before = s_usage(cache_dir);
    if (before <= budget_bytes)
        return 0;
    zhashx_t *used = s_in_use(store, err);
    size_t n = 0;
    image_t *images = used ? s_images(store, &n, err) : NULL;
    if (!images) {
        zhashx_destroy(&used);
        return -1;
    }
    char blob_dir[PATH_MAX];
    snprintf(blob_dir, sizeof blob_dir, "%s/blobs", cache_dir);
    int64_t usage = before;
    for (size_t i = 0; i < n && usage > budget_bytes; i++) {
        if (zhashx_lookup(used, images[i].digest))
            continue;
        s_drop(store, &images[i], log);
        s_sweep_blobs(blob_dir, images, n);
        usage = s_usage(cache_dir);
    }
    for (size_t i = 0; i < n; i++)
        free(images[i].blobs);
    free(images);
    zhashx_destroy(&used);
    if (usage > budget_bytes)
        vmlet_log_warn(log, NULL, "image cache is %lld bytes, over its budget of %lld: every "
                                  "image left is used by a pod",
                       (long long)usage, (long long)budget_bytes);
    return before - usage;
}
