// Layer tars into one read-only raw ext4 image, written straight from the
// layer streams with libext2fs (no extraction to a directory), so
// ownership, modes, setuid bits, device nodes, hard links and xattrs
// survive whoever runs the builder.
//
// Two passes over the layers, in order:
//   1. index: every entry's final fate, with OCI whiteouts (.wh.<name>
//      removes <name> from lower layers; .wh..wh..opq empties a directory
//      of lower layers' entries), and the image's size;
//   2. write: each surviving entry from the layer that provides it.
//
// Safety: entries with ".." components or absolute paths are refused; a
// path whose parent resolves, through symlinks inside the image, to
// outside the root is refused; hard links must name an entry of the
// image; totals and single files beyond the limits (decompression bombs)
// are refused. Layers may be tar, gzip or zstd (libarchive detects them).
// Failures name the layer and the entry:
//   "layer 2 (sha256:ab12...): entry '../../etc/passwd': path leaves the root"
#ifndef VMLET_IMAGE_ROOTFS_H
#define VMLET_IMAGE_ROOTFS_H

#include "vmlet/err.h"

#include <stddef.h>
#include <stdint.h>

// Zero (or passing NULL limits) means no limit of that kind.
typedef struct {
    uint64_t max_total_bytes; // all file contents together
    uint64_t max_file_bytes;  // one file
    uint64_t max_entries;     // files, directories, links...
} rootfs_limits_t;

typedef struct {
    uint64_t entries;     // in the finished image
    uint64_t bytes;       // file contents in it
    uint64_t image_bytes; // size of the ext4 image file
} rootfs_stats_t;

// A layer: its blob file, and a name for messages (its digest).
typedef struct {
    const char *path;
    const char *name;
} rootfs_layer_t;

// Builds out_path (written to out_path.tmp, then renamed). stats may be NULL.
// On failure neither out_path nor out_path.tmp is left behind. Builds of
// different out_paths may run on parallel threads; one out_path is built by
// one caller at a time.
int rootfs_build(const rootfs_layer_t *layers, size_t n, const char *out_path,
                 const rootfs_limits_t *limits, rootfs_stats_t *stats, vmlet_err_t *err);

#endif
