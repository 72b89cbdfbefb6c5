// base64, as Kubernetes writes it (Secret data, kubeconfig *-data).
#ifndef VMLET_BASE64_H
#define VMLET_BASE64_H

#include <stddef.h>

// Decodes standard (or URL-safe) base64, skipping whitespace. Returns a
// NUL-terminated malloc'd buffer (caller frees), or NULL if the text is
// not base64.
char *vmlet_base64_decode(const char *text);

// The same, with the decoded length in *len (the bytes may hold NULs).
char *vmlet_base64_decode_len(const char *text, size_t *len);

#endif
