// CURVE on the broker's sockets (docs/bus.md "Encryption and
// authentication"): the broker's own certificate, zauth's allow-list of
// client certificates read from a directory (and re-read when it
// changes), and a watch on each socket's failed handshakes so refusals are
// counted in vmlet_bus_broker_auth_refused_total and logged.
#ifndef VMLET_BUS_BROKER_AUTH_H
#define VMLET_BUS_BROKER_AUTH_H

#include "vmlet/err.h"
#include "vmlet/log.h"
#include "vmlet/metrics.h"

#include <czmq.h>

typedef struct _broker_auth_t broker_auth_t;

// cert: the broker's certificate (zcert's _secret file); authorized: a
// directory of the public certificates of allowed clients. metrics and
// log are borrowed. Returns NULL with err.
broker_auth_t *broker_auth_new(const char *cert, const char *authorized, vmlet_metrics_t *metrics,
                               vmlet_log_t *log, vmlet_err_t *err);
void broker_auth_destroy(broker_auth_t **self_p);

// Makes sock (not yet bound) a CURVE server and watches its handshakes;
// `name` ("publish", "subscribe", "work") labels its refusals. sock is
// borrowed and must outlive self's loop hooks. Returns 0 or -1 with err.
int broker_auth_secure(broker_auth_t *self, zsock_t *sock, const char *name, vmlet_err_t *err);
int broker_auth_attach(broker_auth_t *self, zloop_t *loop, vmlet_err_t *err);

// Writes a new certificate as `path` (public) and `path`_secret (mode
// 0600), as zcert does. Returns 0 or -1 with err.
int broker_auth_make_cert(const char *path, vmlet_err_t *err);

#endif
