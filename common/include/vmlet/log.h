// One log line per event, as text or JSON, to stderr:
//   text: 2026-11-26T18:00:00.123Z info bus endpoint=tcp://127.0.0.1:5555 msg="broker ready"
//   json: {"ts":"2026-...","level":"info","service":"bus","endpoint":"tcp://...","msg":"broker ready"}
// Each line is written with a single write(2) so lines from concurrent
// processes sharing a file do not interleave. Never log a secret's value.
#ifndef VMLET_LOG_H
#define VMLET_LOG_H

#include "vmlet/err.h"

typedef enum {
    VMLET_LOG_DEBUG = 0,
    VMLET_LOG_INFO,
    VMLET_LOG_WARN,
    VMLET_LOG_ERROR,
} vmlet_log_level_t;

typedef struct _vmlet_log_t vmlet_log_t;

// A structured field; lists end with {NULL, NULL}. Build one in place with
// VMLET_KV({"pod", uid}, {"phase", phase}); pass NULL for no fields.
typedef struct {
    const char *key;
    const char *value;
} vmlet_kv_t;
#define VMLET_KV(...) ((const vmlet_kv_t[]){__VA_ARGS__, {NULL, NULL}})

// format is "text" or "json"; level is "debug", "info", "warn" or "error".
// Returns NULL and fills err on a bad format or level.
vmlet_log_t *vmlet_log_new(const char *service, const char *format, const char *level,
                           vmlet_err_t *err);
void vmlet_log_destroy(vmlet_log_t **self_p);

// Writes one line to the log's fd (stderr unless changed). NULL log: no-op.
void vmlet_log_write(vmlet_log_t *self, vmlet_log_level_t level, const vmlet_kv_t *fields,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

// Redirects output, for tests. The fd stays the caller's.
void vmlet_log_set_fd(vmlet_log_t *self, int fd);

#define vmlet_log_debug(log, kv, ...) vmlet_log_write((log), VMLET_LOG_DEBUG, (kv), __VA_ARGS__)
#define vmlet_log_info(log, kv, ...) vmlet_log_write((log), VMLET_LOG_INFO, (kv), __VA_ARGS__)
#define vmlet_log_warn(log, kv, ...) vmlet_log_write((log), VMLET_LOG_WARN, (kv), __VA_ARGS__)
#define vmlet_log_error(log, kv, ...) vmlet_log_write((log), VMLET_LOG_ERROR, (kv), __VA_ARGS__)

#endif
