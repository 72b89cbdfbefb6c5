// Context-carrying errors (see err.h).
#include "vmlet/err.h"

#include <string.h>

// dst = a + ": " + b, cut to fit (a cut error message beats none).
static void s_join(char *dst, size_t cap, const char *a, const char *b)
{
    size_t n = 0;
    for (const char *parts[] = {a, ": ", b}, **p = parts; p < parts + 3; p++) {
        size_t len = strlen(*p);
        if (len > cap - 1 - n)
            len = cap - 1 - n;
        memcpy(dst + n, *p, len);
        n += len;
    }
    dst[n] = '\0';
}

int vmlet_err_set(vmlet_err_t *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = 0;
    return -1;
}

int vmlet_err_errno(vmlet_err_t *err, int errnum, const char *fmt, ...)
{
    if (!err)
        return -1;
    char head[VMLET_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    s_join(err->msg, sizeof err->msg, head, strerror(errnum));
    err->code = errnum;
    return -1;
}

int vmlet_err_wrap(vmlet_err_t *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char head[VMLET_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    char old[VMLET_ERR_MAX];
    memcpy(old, err->msg, sizeof old);
    if (old[0])
        s_join(err->msg, sizeof err->msg, head, old);
    else
        snprintf(err->msg, sizeof err->msg, "%s", head);
    return -1;
}

void vmlet_err_clear(vmlet_err_t *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}
