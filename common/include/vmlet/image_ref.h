// Image references, parsed and normalised as Docker does
// (distribution/reference): "alpine" is docker.io/library/alpine:latest,
// "127.0.0.1:5000/demo:1" keeps its registry, digests are kept, and a bad
// reference is refused with a message (a pod's InvalidImageName).
#ifndef VMLET_IMAGE_REF_H
#define VMLET_IMAGE_REF_H

#include "vmlet/err.h"

typedef struct {
    char *domain;     // "docker.io", "127.0.0.1:5000", "localhost:5000", "ghcr.io"
    char *path;       // "library/alpine", "org/app"
    char *tag;        // "latest" by default; NULL when only a digest was given
    char *digest;     // "sha256:<64 hex>" or NULL
    char *normalized; // "docker.io/library/alpine:latest", "...@sha256:...", "...:tag@sha256:..."
} vmlet_image_ref_t;

// Parses `text`. Returns 0 and fills out (malloc'd strings; free with
// vmlet_image_ref_clear), or -1 with err saying what is wrong, e.g.
// "image 'Alpine': repository name must be lowercase".
int vmlet_image_ref_parse(const char *text, vmlet_image_ref_t *out, vmlet_err_t *err);

void vmlet_image_ref_clear(vmlet_image_ref_t *ref);

#endif
