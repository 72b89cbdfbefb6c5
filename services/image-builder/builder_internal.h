// Shared by builder.c (the loop side: requests, answers, index), the pull
// thread (builder_pull.c), the Redis image index (builder_index.c) and the
// garbage collector (builder_gc.c).
#ifndef VMLET_IMAGE_BUILDER_INTERNAL_H
#define VMLET_IMAGE_BUILDER_INTERNAL_H

#include "builder.h"
#include "registry.h"
#include "rootfs.h"

#include "vmlet/image_index.h"
#include "vmlet/image_ref.h"
#include "vmlet/proto/image.pb-c.h"

#include <czmq.h>
#include <limits.h>
#include <pthread.h>

// What a pull needs that never changes while the builder runs.
typedef struct {
    registry_options_t registry;
    rootfs_limits_t limits;
    const char *blob_dir;   // <cache>/blobs
    const char *rootfs_dir; // <cache>/rootfs
    int pipe_fd;            // write end of the pipe the threads report to
} pull_config_t;

// What a pull thread writes to the pipe (one write(2), under PIPE_BUF, so
// records from several threads never interleave).
typedef enum { PULL_PROGRESS, PULL_DONE } pull_report_kind_t;
typedef struct pull pull_t;
typedef struct {
    pull_report_kind_t kind;
    pull_t *pull;
    int64_t done, total;
} pull_report_t;

// One pull, owned by the loop; its thread writes only the out part and
// reports over the pipe.
struct pull {
    const pull_config_t *config;
    pthread_t thread;
    // in
    char *image; // as requested
    vmlet_image_ref_t ref;
    char *username, *password, *identity_token;
    Vmlet__PodRef *requested_by; // for progress events; may be NULL
    zlistx_t *items;             // work item ids waiting for this pull
    // out
    int rc;
    vmlet_err_t err;
    char digest[160];
    char rootfs[PATH_MAX];
    int64_t size;
    registry_image_config_t image_config;
    char *blobs; // the config's and layers' digests, space-separated
    registry_stats_t stats;
    int64_t started_ms, ended_ms;
};

// Starts the pull's thread. Returns 0 or -1 with err.
int pull_start(pull_t *pull, vmlet_err_t *err);
// Joins the thread (after its PULL_DONE) and frees the pull.
void pull_destroy(pull_t **pull_p);
// Lets a running pull's thread go (the process is ending).
void pull_abandon(pull_t *pull);

// --- the image index in Redis (docs/redis.md) -------------------------------------

typedef vmlet_image_index_entry_t index_entry_t;

// The image a normalised reference names, if built and its file exists,
// marking it used now (for the cache's clean-up). Returns 1 found, 0 not,
// -1 on error.
int index_lookup(vmlet_store_t *store, const char *reference, index_entry_t *out,
                 vmlet_err_t *err);
// Records a finished pull under its reference and digest.
int index_record(vmlet_store_t *store, const pull_t *pull, const Vmlet__ImageConfig *config,
                 vmlet_err_t *err);
#define index_entry_clear vmlet_image_index_entry_clear

// The kubelet's image pull back-off, per reference.
typedef struct {
    long attempts;
    int64_t until_unix_ms;
    char error[1024];
} backoff_state_t;
int index_backoff_get(vmlet_store_t *store, const char *reference, backoff_state_t *out,
                      vmlet_err_t *err); // 1 if backing off now
int index_backoff_failed(vmlet_store_t *store, const char *reference, const char *error,
                         vmlet_err_t *err);
int index_backoff_clear(vmlet_store_t *store, const char *reference, vmlet_err_t *err);

// Drops images no pod uses, least recently used first, until the cache
// (blobs and root filesystems) is under budget_bytes; then blobs no image
// references. Returns bytes freed, or -1 with err.
int64_t gc_run(vmlet_store_t *store, const char *cache_dir, int64_t budget_bytes,
               vmlet_log_t *log, vmlet_err_t *err);
// builder_gc_request.c: serves a `vmletctl gc` waiting in Redis (removes every
// image no pod uses, answers in vmlet:image-gc-result); call between pulls.
void gc_request_serve(vmlet_store_t *store, const char *cache_dir, const char *builder,
                      vmlet_log_t *log, vmlet_metric_t *freed_total);

#endif
