// The Redis store: one hiredis connection that reconnects with back-off,
// authenticates (AUTH password, or user and password), and turns every
// failure into an error with context instead of a dead service. Commands
// are never retried here: after a lost connection a command may or may not
// have run, and only the caller knows whether repeating it is harmless.
#ifndef VMLET_STORE_H
#define VMLET_STORE_H

#include "vmlet/err.h"
#include "vmlet/log.h"
#include "vmlet/metrics.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>

typedef struct _vmlet_store_t vmlet_store_t;

// url: redis://[[user]:password@]host[:port][/db]. `password`, when not
// empty, overrides the URL's (so it can come from a file or secret rather
// than a command line). Does not connect yet; the first command does.
vmlet_store_t *vmlet_store_new(const char *url, const char *password, vmlet_log_t *log,
                               vmlet_metrics_t *metrics, vmlet_err_t *err);
void vmlet_store_destroy(vmlet_store_t **self_p);

// Runs one command (hiredis format string). Returns the reply (caller
// frees with freeReplyObject) or NULL with err: not connected (and the
// back-off says not yet), I/O failure, or an error reply from Redis.
redisReply *vmlet_store_command(vmlet_store_t *self, vmlet_err_t *err, const char *fmt, ...);
redisReply *vmlet_store_commandv(vmlet_store_t *self, vmlet_err_t *err, int argc,
                                 const char **argv, const size_t *argvlen);

// The value of field `name` in an HGETALL reply (borrowed; *len its
// length when len is not NULL), or NULL.
const char *vmlet_store_reply_field(const redisReply *r, const char *name, size_t *len);

// Connects now if disconnected and the back-off allows. Returns 0 when connected.
int vmlet_store_ensure(vmlet_store_t *self, vmlet_err_t *err);
bool vmlet_store_connected(const vmlet_store_t *self);

// "host:port/db" for logs (never the password).
const char *vmlet_store_describe(const vmlet_store_t *self);

#endif
