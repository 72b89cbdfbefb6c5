// Reading the image index image-builder keeps in Redis (docs/redis.md):
//
//   vmlet:image:<reference>      HASH digest, updated_unix_ms
//   vmlet:image-digest:<digest>  HASH rootfs, size, config (ImageConfig), blobs, last_used_unix_ms
//
// The builder writes it; the builder and vm-launcher read it through here.
#ifndef VMLET_IMAGE_INDEX_H
#define VMLET_IMAGE_INDEX_H

#include "vmlet/proto/envelope.pb-c.h"
#include "vmlet/store.h"

#include <limits.h>
#include <stdint.h>

typedef struct {
    char digest[160];
    char rootfs[PATH_MAX];
    int64_t size;
    Vmlet__ImageConfig *config; // free with vmlet_image_index_entry_clear
} vmlet_image_index_entry_t;

// The image a normalised reference names, if built and its root
// filesystem file exists. Returns 1 found, 0 not, -1 on error.
int vmlet_image_index_lookup(vmlet_store_t *store, const char *reference,
                             vmlet_image_index_entry_t *out, vmlet_err_t *err);

void vmlet_image_index_entry_clear(vmlet_image_index_entry_t *entry);

#endif
