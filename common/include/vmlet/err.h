// Errors that carry context across modules, in the style of crun: a failing
// function returns < 0 and fills a vmlet_err_t; each caller may prefix it
// with its own context, so the final message reads outermost first:
//   "pull 127.0.0.1:5000/demo:1: manifest: 404 MANIFEST_UNKNOWN"
#ifndef VMLET_ERR_H
#define VMLET_ERR_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define VMLET_ERR_MAX 1024

typedef struct {
    int code;                // an errno value when one applies, else 0
    char msg[VMLET_ERR_MAX]; // empty when no error was set
} vmlet_err_t;

// Sets err (may be NULL) to the formatted message; always returns -1 so a
// caller can write `return vmlet_err_set(err, ...)`.
int vmlet_err_set(vmlet_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Like vmlet_err_set, with code = errnum and ": strerror(errnum)" appended.
int vmlet_err_errno(vmlet_err_t *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Prefixes the existing message with "<context>: ". Returns -1.
int vmlet_err_wrap(vmlet_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void vmlet_err_clear(vmlet_err_t *err);

// Cleanup helpers (crun's style): the variable is released when it leaves
// scope, so early returns cannot leak.
static inline void vmlet_freep(void *p)
{
    free(*(void **)p);
}
static inline void vmlet_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
static inline void vmlet_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}
#define cleanup_free __attribute__((cleanup(vmlet_freep)))
#define cleanup_close __attribute__((cleanup(vmlet_closep)))
#define cleanup_fclose __attribute__((cleanup(vmlet_fclosep)))

#endif
