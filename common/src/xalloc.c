// Allocation that ends the process when memory runs out (see xalloc.h).
#include "vmlet/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *s_check(void *p, size_t size)
{
    if (!p && size) {
        fprintf(stderr, "vmlet: out of memory allocating %zu bytes\n", size);
        abort();
    }
    return p;
}

void *vmlet_xmalloc(size_t size)
{
    return s_check(malloc(size ? size : 1), size);
}

void *vmlet_xcalloc(size_t n, size_t size)
{
    return s_check(calloc(n ? n : 1, size ? size : 1), n * size);
}

void *vmlet_xrealloc(void *p, size_t size)
{
    return s_check(realloc(p, size ? size : 1), size);
}

char *vmlet_xstrdup(const char *s)
{
    return s ? s_check(strdup(s), strlen(s) + 1) : NULL;
}

char *vmlet_xstrndup(const char *s, size_t n)
{
    return s ? s_check(strndup(s, n), n + 1) : NULL;
}

void *vmlet_xdup(const void *init, size_t size)
{
    return memcpy(vmlet_xmalloc(size), init, size);
}

char *vmlet_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    return s_check(n < 0 ? NULL : out, 1);
}
