// Allocation that cannot fail, as Redis's zmalloc: running out of memory
// ends the process with a message instead of threading NULL checks
// through every builder. Use it for small, bounded allocations (building a
// spec, a status); input-sized buffers keep checking and refusing.
#ifndef VMLET_XALLOC_H
#define VMLET_XALLOC_H

#include <stddef.h>

void *vmlet_xmalloc(size_t size);
void *vmlet_xcalloc(size_t n, size_t size);
void *vmlet_xrealloc(void *p, size_t size);
char *vmlet_xstrdup(const char *s);           // NULL stays NULL
char *vmlet_xstrndup(const char *s, size_t n);
// A malloc'd copy of `size` bytes of init (protobuf-c messages from their INIT).
void *vmlet_xdup(const void *init, size_t size);
// A malloc'd formatted string.
char *vmlet_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
