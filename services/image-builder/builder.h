// image-builder's domain object: takes ImageRequest work items and answers
// each with ImageReady or ImageFailed.
//
// A request is answered from the image index in Redis when it can be (the
// warm path: no registry, no disk), else by a pull on a thread of its own:
// manifest, blobs into the shared content-addressed cache, the image
// config, and the read-only ext4 root filesystem. Requests for an image
// already being pulled wait for that pull. A failed pull backs off as the
// kubelet's does (ImagePullBackOff, 10 s doubling to 5 min); requests
// during the back-off are answered at once. The cache stays under a disk
// budget by dropping the least recently used images no pod uses.
//
// States of an image: absent -> pulling -> ready; pulling -> failed
// (backing off) -> pulling again when asked after the back-off.
#ifndef VMLET_IMAGE_BUILDER_H
#define VMLET_IMAGE_BUILDER_H

#include "vmlet/service.h"

typedef struct {
    char *cache_dir;
    char *insecure_registries;
    char *ca_file;
    long parallel_blobs;
    long retries;
    char *max_download_rate;
    char *disk_budget;
    char *max_image_size;
    char *max_file_size;
    long max_entries;
    int64_t progress_interval_ms;
    int64_t gc_interval_ms;
} builder_settings_t;

extern const vmlet_cfg_option_t builder_options[];

void *builder_start(vmlet_service_t *service, vmlet_err_t *err);
void builder_stop(void **self_p);

// Work route for ImageRequest.
int builder_on_request(void *self, const vmlet_envelope_t *env);

#endif
